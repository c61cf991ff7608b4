//! [`Fetcher`]: pulls Wasm OCI artifacts into the local cache, following a [`PullPolicy`].

use std::path::PathBuf;
use std::sync::Arc;

use futures::StreamExt;
use oci_client::Reference;
use oci_client::errors::DigestError;
use oci_client::manifest::OciDescriptor;
use oci_client::secrets::RegistryAuth;

use crate::FetchError;
use crate::artifact::{check_wasm_magic, wasm_layer};
use crate::cache::{Cache, RefEntry};
use crate::credentials::Credential;
use crate::reference::{client, parse};
use crate::tls::{TlsOptions, uses_plain_http};

/// The largest Wasm layer a pull accepts (the whole blob is held in memory).
pub const MAX_WASM_SIZE: u64 = 1 << 30;

/// When to ask the registry, following Kubernetes' `imagePullPolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PullPolicy {
    /// Resolve the reference in the registry on every pull (the blob still comes from the cache
    /// when it is there).
    Always,
    /// Use the local index if it knows the reference and the blob is cached; else like `Always`.
    IfNotPresent,
    /// Use only the local index and cache; never contact the registry.
    Never,
}

/// A pulled artifact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pulled {
    /// The reference as given to [`Fetcher::pull`].
    pub image: String,
    /// `<registry>/<repository>@sha256:<manifest digest>`.
    pub image_id: String,
    /// `sha256:<hex>` of the Wasm layer.
    pub layer_digest: String,
    /// The cached blob file holding the Wasm bytes.
    pub path: PathBuf,
    /// The Wasm bytes (shared: every container of the image gets the same copy).
    pub wasm: Arc<[u8]>,
}

/// Pulls Wasm OCI artifacts into a cache directory, anonymously or with credentials. Cheap to clone.
#[derive(Clone)]
pub struct Fetcher {
    cache: Cache,
    insecure_registries: Arc<[String]>,
    tls: TlsOptions,
    https: oci_client::Client,
    http: oci_client::Client,
    /// The image ID (`registry/repository@manifest-digest`) of each reference this fetcher has found
    /// present or pulled, as the kubelet's image manager keeps its image list in memory.
    known: Arc<std::sync::Mutex<std::collections::HashMap<String, String>>>,
}

impl std::fmt::Debug for Fetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fetcher")
            .field("cache", &self.cache)
            .field("insecure_registries", &self.insecure_registries)
            .finish_non_exhaustive()
    }
}

impl Fetcher {
    /// A fetcher caching under `cache_dir` (`blobs/sha256/<hex>`, `refs/`), trusting the web roots.
    /// Registries listed in `insecure_registries` (`host:port`) are spoken to over plain HTTP, and
    /// so are loopback registries that do not answer a TLS handshake; all others over HTTPS.
    pub fn new(cache_dir: PathBuf, insecure_registries: Vec<String>) -> Self {
        Self::with_tls(cache_dir, insecure_registries, TlsOptions::default())
    }

    /// [`Fetcher::new`] whose HTTPS also trusts `tls`'s extra roots (a node passes the cluster CA,
    /// so herd's embedded registry verifies). Pulls present no client certificate.
    pub fn with_tls(cache_dir: PathBuf, insecure_registries: Vec<String>, tls: TlsOptions) -> Self {
        Fetcher {
            cache: Cache::new(cache_dir),
            insecure_registries: insecure_registries.into(),
            https: client(false, &tls),
            http: client(true, &tls),
            tls,
            known: Arc::default(),
        }
    }

    /// The image ID of `image` if this fetcher has already found it present or pulled it: no disk or
    /// network access. A caller with policy `IfNotPresent` or `Never` may use it instead of [`Fetcher::pull`]
    /// when it needs the image's identity and not its bytes (the node's compiled workload is keyed by it).
    pub fn known_image_id(&self, image: &str) -> Option<String> {
        let key = parse(image).ok()?.whole();
        self.known.lock().ok()?.get(&key).cloned()
    }

    /// Pulls `image` following `policy`, anonymously.
    ///
    /// # Errors
    ///
    /// [`FetchError::NotPresent`] if the policy is `Never` and the image is not cached;
    /// [`FetchError::Unauthorized`] if the registry wants credentials;
    /// [`FetchError::Registry`] with the registry's message (e.g. `manifest unknown`);
    /// [`FetchError::NotWasm`] if the manifest does not have exactly one Wasm layer or the layer
    /// is not WebAssembly; [`FetchError::DigestMismatch`] if downloaded content (or, with policy
    /// `Never`, the cached blob) does not match its digest — nothing corrupt stays cached.
    pub async fn pull(&self, image: &str, policy: PullPolicy) -> Result<Pulled, FetchError> {
        self.pull_with(image, policy, &[]).await
    }

    /// [`Fetcher::pull`] with credentials for the registry, tried in turn as the kubelet tries the
    /// credentials its keyring found for an image (the first that pulls wins; if none does, the last
    /// error is returned); none means an anonymous pull. A registry that answers with a bearer
    /// challenge (`WWW-Authenticate: Bearer realm=…`, as Docker Hub, GHCR and Harbor do) gets the
    /// credentials at its token endpoint; one that asks for basic authentication gets them on each
    /// request. Each set of credentials has a client of its own, so a token obtained with one is
    /// never sent on behalf of another pull.
    ///
    /// An image already cached is used without asking the registry under `IfNotPresent` and `Never`,
    /// whatever the credentials (the kubelet's long-standing behaviour); `Always` asks the registry
    /// for the manifest with these credentials on every pull.
    ///
    /// # Errors
    ///
    /// As [`Fetcher::pull`].
    pub async fn pull_with(
        &self,
        image: &str,
        policy: PullPolicy,
        credentials: &[Credential],
    ) -> Result<Pulled, FetchError> {
        let reference = parse(image)?;
        let key = reference.whole();

        if policy != PullPolicy::Always {
            if let Some(entry) = self.cache.read_ref(&key).await? {
                match self.cache.read_blob(&entry.layer_digest).await {
                    Ok(Some(wasm)) => {
                        tracing::debug!(image, "using the cached image");
                        return Ok(self.pulled(image, &reference, &entry, wasm));
                    }
                    Ok(None) => {}
                    Err(err @ FetchError::DigestMismatch { .. }) if policy == PullPolicy::Never => {
                        return Err(err);
                    }
                    Err(FetchError::DigestMismatch { .. }) => {}
                    Err(err) => return Err(err),
                }
            }
            if policy == PullPolicy::Never {
                return Err(FetchError::NotPresent);
            }
        }

        let plain_http =
            uses_plain_http(reference.resolve_registry(), &self.insecure_registries).await;
        if credentials.is_empty() {
            let client = if plain_http { &self.http } else { &self.https };
            return self
                .resolve_and_download(client, &RegistryAuth::Anonymous, &reference, image)
                .await;
        }
        let mut last = None;
        for credential in credentials {
            let client = client(plain_http, &self.tls);
            let auth =
                RegistryAuth::Basic(credential.username.clone(), credential.password.clone());
            match self
                .resolve_and_download(&client, &auth, &reference, image)
                .await
            {
                Ok(pulled) => return Ok(pulled),
                Err(err) => {
                    tracing::debug!(image, username = %credential.username, %err, "pull with these credentials failed");
                    last = Some(err);
                }
            }
        }
        Err(last.unwrap_or(FetchError::NotPresent))
    }

    /// Resolves `reference` in its registry and downloads the layer unless the cache has it.
    async fn resolve_and_download(
        &self,
        client: &oci_client::Client,
        auth: &RegistryAuth,
        reference: &Reference,
        image: &str,
    ) -> Result<Pulled, FetchError> {
        let (manifest, manifest_digest) = client
            .pull_image_manifest(reference, auth)
            .await
            .map_err(|e| FetchError::from_oci(image, e))?;
        let layer = wasm_layer(&manifest).map_err(|message| FetchError::NotWasm {
            image: image.to_string(),
            message,
        })?;

        let wasm = match self.cache.read_blob(&layer.digest).await {
            Ok(Some(wasm)) => wasm,
            Ok(None) | Err(FetchError::DigestMismatch { .. }) => {
                let wasm = self.download(client, reference, image, layer).await?;
                self.cache.write_blob(&layer.digest, &wasm).await?;
                wasm
            }
            Err(err) => return Err(err),
        };

        let entry = RefEntry {
            image: reference.whole(),
            manifest_digest,
            layer_digest: layer.digest.clone(),
        };
        self.cache.write_ref(&entry).await?;
        tracing::info!(image, digest = %entry.manifest_digest, "pulled image");
        Ok(self.pulled(image, reference, &entry, wasm))
    }

    /// Downloads the layer blob, verified against its digest and checked to be WebAssembly.
    async fn download(
        &self,
        client: &oci_client::Client,
        reference: &Reference,
        image: &str,
        layer: &OciDescriptor,
    ) -> Result<Vec<u8>, FetchError> {
        let too_large = || FetchError::NotWasm {
            image: image.to_string(),
            message: format!("the layer is larger than {MAX_WASM_SIZE} bytes"),
        };
        if u64::try_from(layer.size).unwrap_or(0) > MAX_WASM_SIZE {
            return Err(too_large());
        }
        let mut stream = client
            .pull_blob_stream(reference, layer)
            .await
            .map_err(|e| FetchError::from_oci(image, e))?;
        let mut wasm = Vec::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| blob_stream_error(image, e))?;
            if (wasm.len() + chunk.len()) as u64 > MAX_WASM_SIZE {
                return Err(too_large());
            }
            wasm.extend_from_slice(&chunk);
        }
        check_wasm_magic(&wasm).map_err(|message| FetchError::NotWasm {
            image: image.to_string(),
            message,
        })?;
        Ok(wasm)
    }

    fn pulled(
        &self,
        image: &str,
        reference: &Reference,
        entry: &RefEntry,
        wasm: Vec<u8>,
    ) -> Pulled {
        let image_id = format!(
            "{}/{}@{}",
            reference.registry(),
            reference.repository(),
            entry.manifest_digest
        );
        if let Ok(mut known) = self.known.lock() {
            known.insert(reference.whole(), image_id.clone());
        }
        Pulled {
            image: image.to_string(),
            image_id,
            layer_digest: entry.layer_digest.clone(),
            path: self.cache.blob_path(&entry.layer_digest),
            wasm: wasm.into(),
        }
    }
}

/// A failed blob download: a digest mismatch found by oci-client's verifying stream, or a
/// transport error.
fn blob_stream_error(image: &str, err: std::io::Error) -> FetchError {
    if let Some(DigestError::VerificationError { expected, actual }) =
        err.get_ref().and_then(|e| e.downcast_ref::<DigestError>())
    {
        return FetchError::DigestMismatch {
            expected: expected.clone(),
            actual: actual.clone(),
        };
    }
    FetchError::Registry {
        image: image.to_string(),
        message: format!("downloading the layer failed: {err}"),
    }
}
