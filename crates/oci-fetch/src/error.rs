//! The errors of pulling and pushing, and how oci-client's errors map onto them.

use oci_client::errors::{DigestError, OciDistributionError, OciErrorCode};

pub(crate) const UNAUTHORIZED: &str = "401 Unauthorized";
pub(crate) const FORBIDDEN: &str = "403 Forbidden";

/// Why a pull or a push failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The image reference could not be parsed.
    #[error("invalid image reference {image:?}: {message}")]
    InvalidReference { image: String, message: String },
    /// The registry could not be reached or answered with an error; `message` is what it said
    /// (e.g. `manifest unknown`) or why it could not be reached.
    #[error("registry error for {image}: {message}")]
    Registry { image: String, message: String },
    /// The registry refused the credentials given, or asked for some and none were given (HTTP 401,
    /// or 403 / an `UNAUTHORIZED` or `DENIED` error code).
    #[error(
        "failed to authorize {image}: {status}: access denied, the repository does not exist or may require authorization (wrong or missing credentials)"
    )]
    Unauthorized {
        image: String,
        /// `401 Unauthorized` or `403 Forbidden`.
        status: &'static str,
    },
    /// The artifact is not a Wasm OCI artifact (or the bytes are not WebAssembly).
    #[error("{image} is not a Wasm OCI artifact: {message}")]
    NotWasm { image: String, message: String },
    /// Content did not hash to the digest that names it.
    #[error("digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch { expected: String, actual: String },
    /// The pull policy is `Never` and the image is not in the local cache.
    #[error("image is not present in the local cache and the pull policy is Never")]
    NotPresent,
    /// The TLS settings (extra roots, client identity) are unusable.
    #[error("TLS configuration: {0}")]
    Tls(String),
    /// Reading or writing the local cache failed.
    #[error("cache I/O error: {0}")]
    Io(#[from] std::io::Error),
}

impl FetchError {
    /// Whether the registry refused for want of (the right) credentials.
    pub fn is_unauthorized(&self) -> bool {
        matches!(self, FetchError::Unauthorized { .. })
    }

    /// Maps an oci-client error for `image` onto a [`FetchError`].
    pub(crate) fn from_oci(image: &str, err: OciDistributionError) -> Self {
        let registry = |message: String| FetchError::Registry {
            image: image.to_string(),
            message,
        };
        match err {
            OciDistributionError::DigestError(DigestError::VerificationError {
                expected,
                actual,
            }) => FetchError::DigestMismatch { expected, actual },
            OciDistributionError::RegistryError { envelope, .. }
                if envelope.errors.iter().any(|e| {
                    matches!(e.code, OciErrorCode::Unauthorized | OciErrorCode::Denied)
                }) =>
            {
                let status = if envelope
                    .errors
                    .iter()
                    .any(|e| e.code == OciErrorCode::Unauthorized)
                {
                    UNAUTHORIZED
                } else {
                    FORBIDDEN
                };
                FetchError::Unauthorized {
                    image: image.to_string(),
                    status,
                }
            }
            OciDistributionError::RegistryError { envelope, .. } => {
                let messages: Vec<String> = envelope
                    .errors
                    .iter()
                    .map(|e| {
                        let code = serde_json::to_value(&e.code)
                            .ok()
                            .and_then(|v| v.as_str().map(str::to_string))
                            .unwrap_or_else(|| format!("{:?}", e.code));
                        if e.message.is_empty() {
                            code
                        } else {
                            format!("{} ({code})", e.message)
                        }
                    })
                    .collect();
                registry(messages.join("; "))
            }
            OciDistributionError::ServerError { code: 401, .. }
            | OciDistributionError::UnauthorizedError { .. }
            | OciDistributionError::AuthenticationFailure(_) => FetchError::Unauthorized {
                image: image.to_string(),
                status: UNAUTHORIZED,
            },
            OciDistributionError::ServerError { code: 403, .. } => FetchError::Unauthorized {
                image: image.to_string(),
                status: FORBIDDEN,
            },
            OciDistributionError::ServerError { code, message, .. } => {
                registry(format!("HTTP {code}: {}", message.trim()))
            }
            OciDistributionError::RequestError(e) => registry(error_chain(&e)),
            OciDistributionError::IoError(e) => FetchError::Io(e),
            other => registry(error_chain(&other)),
        }
    }
}

/// Renders an error and its sources on one line (`a: b: c`).
pub(crate) fn error_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}
