//! The shape of a CNCF Wasm OCI artifact: media types, the config document, and the checks a
//! pulled manifest and blob must pass.

use oci_client::manifest::{OciDescriptor, OciImageManifest, OciManifest};
use serde::Serialize;

/// Media type of the single layer of a Wasm OCI artifact.
pub const WASM_LAYER_MEDIA_TYPE: &str = "application/wasm";
/// The older layer media type (wasm-to-oci, krustlet); accepted on pull.
pub const LEGACY_WASM_LAYER_MEDIA_TYPE: &str = "application/vnd.wasm.content.layer.v1+wasm";
/// Media type of the artifact's config document.
pub const WASM_CONFIG_MEDIA_TYPE: &str = "application/vnd.wasm.config.v0+json";
/// Media type of the manifest.
pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";

const WASM_MAGIC: &[u8; 4] = b"\0asm";

/// The config document of a Wasm OCI artifact (the required fields of the CNCF spec; the
/// optional `component` description is left out).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct WasmConfig {
    pub created: String,
    pub architecture: &'static str,
    pub os: &'static str,
    pub layer_digests: Vec<String>,
}

impl WasmConfig {
    /// The config for `wasm`, whose layer has digest `layer_digest`.
    pub fn for_wasm(wasm: &[u8], layer_digest: &str) -> Self {
        WasmConfig {
            created: jiff::Timestamp::now().to_string(),
            architecture: "wasm",
            os: if is_component(wasm) {
                "wasip2"
            } else {
                "wasip1"
            },
            layer_digests: vec![layer_digest.to_string()],
        }
    }
}

/// Checks that `bytes` start with the WebAssembly magic number; returns why not.
pub(crate) fn check_wasm_magic(bytes: &[u8]) -> Result<(), String> {
    if bytes.starts_with(WASM_MAGIC) {
        Ok(())
    } else {
        Err("content does not start with the WebAssembly magic number \\0asm".to_string())
    }
}

/// Whether a WebAssembly binary is a component (layer 1 in the header) rather than a core module.
fn is_component(wasm: &[u8]) -> bool {
    wasm.get(6..8) == Some(&[1, 0])
}

/// The one Wasm layer of `manifest`, or why the manifest is not a Wasm OCI artifact.
pub(crate) fn wasm_layer(manifest: &OciImageManifest) -> Result<&OciDescriptor, String> {
    let [layer] = manifest.layers.as_slice() else {
        return Err(format!(
            "expected exactly one layer, found {}",
            manifest.layers.len()
        ));
    };
    if layer.media_type != WASM_LAYER_MEDIA_TYPE && layer.media_type != LEGACY_WASM_LAYER_MEDIA_TYPE
    {
        return Err(format!(
            "layer media type is {:?}, expected {WASM_LAYER_MEDIA_TYPE:?}",
            layer.media_type
        ));
    }
    if parse_sha256(&layer.digest).is_none() {
        return Err(format!(
            "layer digest {:?} is not sha256:<64 hex>",
            layer.digest
        ));
    }
    Ok(layer)
}

/// Where a manifest body fetched from a registry leads a pull.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManifestTarget {
    /// An image manifest: the digest of its one Wasm layer.
    WasmLayer(String),
    /// An image index: the digest of its `wasm` platform entry, to be fetched next.
    IndexEntry(String),
}

/// Decodes a registry's manifest body as a pull does (oci-client's `OciManifest`: an image
/// manifest or an image index), then applies the pull's checks: the one Wasm layer of an image
/// manifest, the `wasm` platform entry of an index.
///
/// # Errors
/// Why the body is not JSON of either shape, or not a Wasm OCI artifact.
pub fn inspect_manifest(body: &[u8]) -> Result<ManifestTarget, String> {
    let manifest: OciManifest =
        serde_json::from_slice(body).map_err(|e| format!("invalid manifest: {e}"))?;
    match manifest {
        OciManifest::Image(image) => {
            wasm_layer(&image).map(|layer| ManifestTarget::WasmLayer(layer.digest.clone()))
        }
        OciManifest::ImageIndex(index) => {
            crate::reference::wasm_platform_resolver(&index.manifests)
                .map(ManifestTarget::IndexEntry)
                .ok_or_else(|| "the image index has no wasm platform entry".to_string())
        }
    }
}

/// The hex part of a `sha256:<64 lowercase hex>` digest.
pub(crate) fn parse_sha256(digest: &str) -> Option<&str> {
    let hex = digest.strip_prefix("sha256:")?;
    let valid = hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    valid.then_some(hex)
}

/// `sha256:<hex>` of `bytes`.
pub(crate) fn sha256_digest(bytes: &[u8]) -> String {
    use sha2::Digest;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(layers: Vec<(&str, String)>) -> OciImageManifest {
        OciImageManifest {
            layers: layers
                .into_iter()
                .map(|(media_type, digest)| OciDescriptor {
                    media_type: media_type.to_string(),
                    digest,
                    size: 8,
                    ..OciDescriptor::default()
                })
                .collect(),
            ..OciImageManifest::default()
        }
    }

    #[test]
    fn accepts_one_wasm_layer_of_either_media_type() {
        let d = sha256_digest(b"x");
        for mt in [WASM_LAYER_MEDIA_TYPE, LEGACY_WASM_LAYER_MEDIA_TYPE] {
            let m = manifest(vec![(mt, d.clone())]);
            assert_eq!(wasm_layer(&m).unwrap().digest, d);
        }
    }

    #[test]
    fn rejects_other_shapes() {
        let d = sha256_digest(b"x");
        let tar = "application/vnd.oci.image.layer.v1.tar+gzip";
        for m in [
            manifest(vec![]),
            manifest(vec![(tar, d.clone())]),
            manifest(vec![
                (WASM_LAYER_MEDIA_TYPE, d.clone()),
                (WASM_LAYER_MEDIA_TYPE, d),
            ]),
            manifest(vec![(
                WASM_LAYER_MEDIA_TYPE,
                "sha256:../../etc".to_string(),
            )]),
        ] {
            assert!(wasm_layer(&m).is_err());
        }
    }

    #[test]
    fn inspects_manifests_and_indexes_as_a_pull_does() {
        let d = sha256_digest(b"x");
        let image = serde_json::json!({"schemaVersion": 2, "config": {"mediaType": WASM_CONFIG_MEDIA_TYPE,
            "digest": d, "size": 1}, "layers": [{"mediaType": WASM_LAYER_MEDIA_TYPE, "digest": d, "size": 1}]});
        assert_eq!(
            inspect_manifest(image.to_string().as_bytes()),
            Ok(ManifestTarget::WasmLayer(d.clone()))
        );
        let index = serde_json::json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [{"mediaType": MANIFEST_MEDIA_TYPE, "digest": d, "size": 1,
                "platform": {"architecture": "wasm", "os": "wasip1"}}]});
        assert_eq!(
            inspect_manifest(index.to_string().as_bytes()),
            Ok(ManifestTarget::IndexEntry(d))
        );
        for bad in [&b"{"[..], b"[]", b"{\"layers\": 1}", b"\xff"] {
            assert!(inspect_manifest(bad).is_err());
        }
    }

    #[test]
    fn digests() {
        let d = sha256_digest(b"");
        assert_eq!(
            d,
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert!(parse_sha256(&d).is_some());
        assert!(parse_sha256("sha256:E3B0").is_none());
        assert!(
            parse_sha256("sha512:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
                .is_none()
        );
    }

    #[test]
    fn config_names_the_wasi_version() {
        let module = b"\0asm\x01\0\0\0";
        let component = b"\0asm\x0d\0\x01\0";
        let c = WasmConfig::for_wasm(module, "sha256:abc");
        assert_eq!((c.architecture, c.os), ("wasm", "wasip1"));
        assert_eq!(WasmConfig::for_wasm(component, "sha256:abc").os, "wasip2");
        let json = serde_json::to_value(&c).unwrap();
        assert_eq!(json["layerDigests"][0], "sha256:abc");
        assert!(json["created"].as_str().unwrap().ends_with('Z'));
        assert!(check_wasm_magic(module).is_ok());
        assert!(check_wasm_magic(b"\x7fELF").is_err());
    }
}
