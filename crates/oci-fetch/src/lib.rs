//! Pull and push of [CNCF Wasm OCI artifacts] with [`oci_client`].
//!
//! An artifact is an OCI image manifest whose config has media type
//! `application/vnd.wasm.config.v0+json` and whose only layer is the Wasm binary
//! (`application/wasm`; the older `application/vnd.wasm.content.layer.v1+wasm` is accepted on
//! pull).
//!
//! ```no_run
//! # async fn example() -> Result<(), herd_oci_fetch::FetchError> {
//! use herd_oci_fetch::{Fetcher, PullPolicy, push};
//!
//! let digest = push(b"\0asm\x01\0\0\0", "127.0.0.1:5000/hello:v1", &[]).await?;
//! let fetcher = Fetcher::new("/var/lib/herd/images".into(), vec![]);
//! let pulled = fetcher.pull("127.0.0.1:5000/hello:v1", PullPolicy::IfNotPresent).await?;
//! assert!(pulled.image_id.ends_with(&digest));
//! # Ok(()) }
//! ```
//!
//! Blobs are cached by digest under `<cache_dir>/blobs/sha256/<hex>` and re-verified on every
//! read; `<cache_dir>/refs/` maps image references to their manifest and layer digests for
//! [`PullPolicy::IfNotPresent`] and [`PullPolicy::Never`]. Registries on loopback addresses are
//! spoken to over plain HTTP. Access is anonymous unless credentials are given
//! ([`Fetcher::pull_with`], [`push_with`]); [`Keyring`] picks them for an image from docker config
//! files ([`DockerConfig`]) as the kubelet does.
//!
//! [CNCF Wasm OCI artifacts]: https://tag-runtime.cncf.io/wgs/wasm/deliverables/wasm-oci-artifact/

mod artifact;
mod cache;
mod credentials;
mod error;
mod fetcher;
mod push;
mod reference;
mod tls;

pub use artifact::{
    LEGACY_WASM_LAYER_MEDIA_TYPE, MANIFEST_MEDIA_TYPE, ManifestTarget, WASM_CONFIG_MEDIA_TYPE,
    WASM_LAYER_MEDIA_TYPE, inspect_manifest,
};
pub use credentials::{Credential, CredentialsError, DockerConfig, Keyring, save_login};
pub use error::FetchError;
pub use fetcher::{Fetcher, MAX_WASM_SIZE, PullPolicy, Pulled};
pub use push::{check_login, push, push_with};
pub use reference::is_loopback_registry;
pub use tls::{ClientIdentity, TlsOptions};
