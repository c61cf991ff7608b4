//! The cluster PKI: what `herd up`/`herd control` create at first start and what nodes need to join.
//!
//! - [`ClusterCa`]: the cluster CA (ECDSA P-256, 10 years, CN `herd-ca`) kept in `<data dir>/pki/ca.{crt,key}`,
//!   created once and loaded afterwards; it issues serving certificates ([`serving_sans`]), client
//!   certificates (CN = user, O = groups, as kube's x509 authenticator reads them) and signs PEM
//!   CertificateSigningRequests for the CSR API ([`ClusterCa::sign_csr`]); a node makes its request with
//!   [`CertificateRequest::node`], the API reads one with [`RequestedSubject::of`], and the node renews at
//!   [`IssuedCert::rotation_deadline`].
//! - [`CaCertHash`]: kubeadm's `--discovery-token-ca-cert-hash` (`sha256:<hex>` of the CA's
//!   SubjectPublicKeyInfo), and the check a joining node makes of the CA it was shown.
//! - [`Kubeconfig`]: a kubeconfig with embedded credentials, written with mode 0600.
//! - [`TokenKey`]: the ServiceAccount token key (`pki/sa.key`), signing and verifying ES256 JWS tokens.
//! - [`tls`]: rustls configs (a server that asks for, but does not require, a client certificate; a client
//!   trusting the CA) and [`tls::peer_identity`], kube's x509 authenticator.
//!
//! **Durable files go through `herd-atomic-file` only**; private keys are never readable by another user.
//! No async: the tokio-rustls handshakes live in the tests and in the callers.
//!
//! ```
//! # fn main() -> Result<(), herd_pki::PkiError> {
//! let dir = tempfile::tempdir().unwrap();
//! let ca = herd_pki::ClusterCa::load_or_create(dir.path())?;
//! let admin = ca.issue_client(herd_pki::ADMIN_USER, &[herd_pki::MASTERS_GROUP], herd_pki::CLIENT_VALIDITY)?;
//! let identity = herd_pki::tls::peer_identity(&admin.cert_der()?).expect("a CN");
//! assert_eq!(identity.name, "kubernetes-admin");
//! assert_eq!(identity.groups, ["system:masters"]);
//! assert!(ca.ca_cert_hash().to_string().starts_with("sha256:"));
//! # Ok(()) }
//! ```

pub mod bootstrap_token;
mod ca;
mod csr;
mod hash;
mod kubeconfig;
pub mod tls;
pub mod token;

use std::path::PathBuf;

pub use bootstrap_token::BootstrapToken;
pub use ca::{
    CA_COMMON_NAME, CA_VALIDITY, CLIENT_VALIDITY, ClusterCa, IssuedCert, SERVING_VALIDITY,
    self_signed_serving, serving_sans,
};
pub use csr::{CertificateRequest, RequestedSubject};
pub use hash::CaCertHash;
pub use kubeconfig::Kubeconfig;
pub use token::{TokenError, TokenKey};

/// The admin's user name in its client certificate (CN), as kubeadm's `admin.conf` has it.
pub const ADMIN_USER: &str = "kubernetes-admin";
/// The group every request of which kube-apiserver allows without asking RBAC.
pub const MASTERS_GROUP: &str = "system:masters";
/// The group of node identities (O of a node's client certificate).
pub const NODES_GROUP: &str = "system:nodes";
/// A node's user name prefix: a node's CN is `system:node:<node name>`.
pub const NODE_USER_PREFIX: &str = "system:node:";

/// The user name of node `name`: `system:node:<name>`.
#[must_use]
pub fn node_user(name: &str) -> String {
    format!("{NODE_USER_PREFIX}{name}")
}

/// Everything that can go wrong in the PKI.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} exists but {} does not: restore the CA key, or remove both to create a new CA", cert.display(), key.display())]
    MissingCaKey { cert: PathBuf, key: PathBuf },
    #[error("the CA key in {} does not belong to the CA certificate", path.display())]
    CaKeyMismatch { path: PathBuf },
    #[error("generating a certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("{what} is not valid: {reason}")]
    Invalid { what: &'static str, reason: String },
    #[error("the certificate signing request's signature does not verify")]
    CsrSignature,
    #[error("the CA certificate's public key hash {actual} is not the expected {expected}")]
    CaHashMismatch { expected: String, actual: String },
    #[error("building the TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    #[error("building the client certificate verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    #[error("rendering the kubeconfig: {0}")]
    Kubeconfig(#[from] serde_yaml::Error),
}

impl PkiError {
    fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io { path, source }
    }

    fn invalid(what: &'static str, reason: impl std::fmt::Display) -> Self {
        Self::Invalid {
            what,
            reason: reason.to_string(),
        }
    }
}
