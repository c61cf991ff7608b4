//! [`push`]: publishes Wasm bytes as a CNCF Wasm OCI artifact.

use oci_client::Reference;
use oci_client::manifest::{OciDescriptor, OciImageManifest};
use oci_client::secrets::RegistryAuth;

use crate::FetchError;
use crate::artifact::{
    MANIFEST_MEDIA_TYPE, WASM_CONFIG_MEDIA_TYPE, WASM_LAYER_MEDIA_TYPE, WasmConfig,
    check_wasm_magic, sha256_digest,
};
use crate::credentials::Credential;
use crate::reference::{client, parse};
use crate::tls::{TlsOptions, identity_token, uses_plain_http};

/// Pushes `wasm` (a core module or a component) to `image` as a Wasm OCI artifact: an OCI image
/// manifest with a `application/vnd.wasm.config.v0+json` config and one `application/wasm`
/// layer. Blobs the repository already has are not uploaded again. Registries in
/// `insecure_registries`, and loopback registries that do not answer a TLS handshake, are spoken to
/// over plain HTTP.
///
/// Returns the manifest digest (`sha256:<hex>`).
///
/// # Errors
///
/// [`FetchError::NotWasm`] if `wasm` does not start with `\0asm`; [`FetchError::InvalidReference`];
/// [`FetchError::Registry`] with what the registry said.
pub async fn push(
    wasm: &[u8],
    image: &str,
    insecure_registries: &[String],
) -> Result<String, FetchError> {
    push_with(
        wasm,
        image,
        insecure_registries,
        None,
        &TlsOptions::default(),
    )
    .await
}

/// [`push`] with credentials for the registry (basic, or traded for a bearer token where the
/// registry answers with a bearer challenge). Without them, a client identity in `tls` is presented
/// to the token endpoint of a registry that answers with a bearer challenge (herd's embedded
/// registry grants the admin's certificate push), else the push is anonymous. HTTPS trusts `tls`'s
/// extra roots besides the web roots.
///
/// # Errors
///
/// As [`push`]; [`FetchError::Unauthorized`] when the registry wants (other) credentials.
pub async fn push_with(
    wasm: &[u8],
    image: &str,
    insecure_registries: &[String],
    credential: Option<&Credential>,
    tls: &TlsOptions,
) -> Result<String, FetchError> {
    check_wasm_magic(wasm).map_err(|message| FetchError::NotWasm {
        image: image.to_string(),
        message,
    })?;
    let reference = parse(image)?;
    let plain_http = uses_plain_http(reference.resolve_registry(), insecure_registries).await;
    let client = client(plain_http, tls);
    let oci = |e| FetchError::from_oci(image, e);
    let auth = match credential {
        Some(c) => RegistryAuth::Basic(c.username.clone(), c.password.clone()),
        None if tls.identity.is_some() => {
            let scheme = if plain_http { "http" } else { "https" };
            identity_token(
                tls,
                scheme,
                reference.resolve_registry(),
                reference.repository(),
                image,
            )
            .await?
        }
        None => RegistryAuth::Anonymous,
    };
    client
        .store_auth_if_needed(reference.resolve_registry(), &auth)
        .await;

    let layer_digest = sha256_digest(wasm);
    let config = serde_json::to_vec(&WasmConfig::for_wasm(wasm, &layer_digest))
        .map_err(std::io::Error::other)?;
    let config_digest = sha256_digest(&config);

    upload_blob(&client, &reference, wasm.to_vec(), &layer_digest)
        .await
        .map_err(oci)?;
    upload_blob(&client, &reference, config.clone(), &config_digest)
        .await
        .map_err(oci)?;

    let manifest = OciImageManifest {
        schema_version: 2,
        media_type: Some(MANIFEST_MEDIA_TYPE.to_string()),
        config: descriptor(WASM_CONFIG_MEDIA_TYPE, &config_digest, config.len()),
        layers: vec![descriptor(WASM_LAYER_MEDIA_TYPE, &layer_digest, wasm.len())],
        ..OciImageManifest::default()
    };
    let body = serde_json::to_vec(&manifest).map_err(std::io::Error::other)?;
    let manifest_digest = sha256_digest(&body);
    client
        .push_manifest_raw(
            &reference,
            body,
            http::HeaderValue::from_static(MANIFEST_MEDIA_TYPE),
        )
        .await
        .map_err(oci)?;
    tracing::info!(image, digest = %manifest_digest, "pushed image");
    Ok(manifest_digest)
}

/// Uploads a blob unless the repository already has it.
async fn upload_blob(
    client: &oci_client::Client,
    reference: &Reference,
    data: Vec<u8>,
    digest: &str,
) -> Result<(), oci_client::errors::OciDistributionError> {
    if client.blob_exists(reference, digest).await? {
        return Ok(());
    }
    client.push_blob(reference, data, digest).await.map(drop)
}

fn descriptor(media_type: &str, digest: &str, size: usize) -> OciDescriptor {
    OciDescriptor {
        media_type: media_type.to_string(),
        digest: digest.to_string(),
        size: i64::try_from(size).unwrap_or(i64::MAX),
        ..OciDescriptor::default()
    }
}

/// Checks `credential` against `registry` (`host[:port]`) as `docker login` does: a registry that
/// answers with a bearer challenge must grant a token for them; one that asks for basic credentials
/// must not refuse them (a manifest request for a repository that need not exist: 401 is a refusal,
/// anything else means the credentials were accepted).
///
/// # Errors
/// [`FetchError::Unauthorized`] when the registry refuses the credentials; [`FetchError::Registry`]
/// when it cannot be reached.
pub async fn check_login(
    registry: &str,
    credential: &Credential,
    insecure_registries: &[String],
    tls: &TlsOptions,
) -> Result<(), FetchError> {
    let probe = format!("{registry}/herd-login-check:latest");
    let reference = parse(&probe)?;
    let plain_http = uses_plain_http(reference.resolve_registry(), insecure_registries).await;
    let client = client(plain_http, tls);
    let auth = RegistryAuth::Basic(credential.username.clone(), credential.password.clone());
    let refused = |e: oci_client::errors::OciDistributionError| {
        let unreachable = matches!(e, oci_client::errors::OciDistributionError::RequestError(_));
        match FetchError::from_oci(registry, e) {
            err @ FetchError::Unauthorized { .. } => Err(err),
            err if unreachable => Err(err),
            // Anything else (manifest unknown, name unknown, …) came after the credentials were taken.
            _ => Ok(()),
        }
    };
    match client
        .auth(&reference, &auth, oci_client::RegistryOperation::Pull)
        .await
    {
        // A bearer token was granted for these credentials.
        Ok(Some(_)) => Ok(()),
        Ok(None) => match client.fetch_manifest_digest(&reference, &auth).await {
            Ok(_) => Ok(()),
            Err(e) => refused(e),
        },
        Err(e) => refused(e),
    }
}
