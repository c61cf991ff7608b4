//! [`ApiError`]: every failure of the registry, rendered in the OCI error format
//! (`{"errors":[{"code":"MANIFEST_UNKNOWN","message":"…"}]}`).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// An OCI distribution error code with its HTTP status and a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// The `WWW-Authenticate` challenge of a 401.
    pub challenge: Option<String>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            challenge: None,
        }
    }

    /// 401 `UNAUTHORIZED` with the challenge that tells the client where to get credentials.
    pub fn unauthorized(challenge: String) -> Self {
        ApiError {
            challenge: Some(challenge),
            ..Self::new(
                StatusCode::UNAUTHORIZED,
                "UNAUTHORIZED",
                "authentication required",
            )
        }
    }

    /// 403 `DENIED`: the caller is known but may not do this.
    pub fn denied() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "DENIED",
            "requested access to the resource is denied",
        )
    }

    /// 503 when the API server cannot be asked about a token.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE", message)
    }

    pub fn blob_unknown() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "BLOB_UNKNOWN",
            "blob unknown to registry",
        )
    }

    pub fn manifest_unknown() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "MANIFEST_UNKNOWN",
            "manifest unknown",
        )
    }

    pub fn name_unknown() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "NAME_UNKNOWN",
            "repository name not known to registry",
        )
    }

    pub fn upload_unknown() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "BLOB_UPLOAD_UNKNOWN",
            "blob upload unknown to registry",
        )
    }

    pub fn upload_invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "BLOB_UPLOAD_INVALID", message)
    }

    pub fn range_invalid(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::RANGE_NOT_SATISFIABLE,
            "BLOB_UPLOAD_INVALID",
            message,
        )
    }

    pub fn digest_invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "DIGEST_INVALID", message)
    }

    pub fn name_invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "NAME_INVALID", message)
    }

    pub fn tag_invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "TAG_INVALID", message)
    }

    pub fn manifest_invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "MANIFEST_INVALID", message)
    }

    pub fn manifest_blob_unknown(digest: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "MANIFEST_BLOB_UNKNOWN",
            format!("manifest references a blob unknown to this repository: {digest}"),
        )
    }

    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "SIZE_INVALID", message)
    }

    pub fn unsupported() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "UNSUPPORTED",
            "the operation is unsupported",
        )
    }

    pub fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "UNSUPPORTED",
            "the method is not allowed here",
        )
    }

    /// A storage failure; logged, and answered without internal details.
    pub fn internal(err: std::io::Error) -> Self {
        tracing::error!(error = %err, "registry storage error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "UNKNOWN",
            "internal storage error",
        )
    }
}

impl From<std::io::Error> for ApiError {
    fn from(err: std::io::Error) -> Self {
        ApiError::internal(err)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({
            "errors": [{ "code": self.code, "message": self.message }]
        });
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(value) = self
            .challenge
            .and_then(|c| axum::http::HeaderValue::from_str(&c).ok())
        {
            response
                .headers_mut()
                .insert(axum::http::header::WWW_AUTHENTICATE, value);
        }
        response
    }
}
