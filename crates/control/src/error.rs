//! `ApiError`: every failure of the API server, rendered as a Kubernetes `Status`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use herd_api::{AdmitError, Cause, ResourceInfo};
use serde_json::{Value, json};

use crate::objects::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{message}")]
    NotFound {
        message: String,
        group: String,
        kind: String,
        name: String,
    },
    #[error("{message}")]
    AlreadyExists {
        message: String,
        group: String,
        kind: String,
        name: String,
    },
    #[error("{message}")]
    Conflict {
        message: String,
        group: String,
        kind: String,
        name: String,
    },
    #[error("{message}")]
    Invalid {
        message: String,
        group: String,
        kind: String,
        name: String,
        causes: Vec<Cause>,
    },
    /// Server-side apply found fields owned by other managers (409 Conflict with causes).
    #[error("{message}")]
    ApplyConflict { message: String, causes: Vec<Cause> },
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    Gone(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    pub fn not_found(res: &ResourceInfo, name: &str) -> Self {
        Self::NotFound {
            message: format!("{} \"{name}\" not found", qualified(res)),
            group: res.group.into(),
            kind: res.plural.into(),
            name: name.into(),
        }
    }

    pub fn already_exists(res: &ResourceInfo, name: &str) -> Self {
        Self::AlreadyExists {
            message: format!("{} \"{name}\" already exists", qualified(res)),
            group: res.group.into(),
            kind: res.plural.into(),
            name: name.into(),
        }
    }

    pub fn conflict(res: &ResourceInfo, name: &str) -> Self {
        Self::Conflict {
            message: format!(
                "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
                qualified(res)
            ),
            group: res.group.into(),
            kind: res.plural.into(),
            name: name.into(),
        }
    }

    pub fn admit(res: &ResourceInfo, e: AdmitError) -> Self {
        match e {
            AdmitError::BadRequest(m) => Self::BadRequest(m),
            AdmitError::Invalid {
                kind,
                name,
                message,
                causes,
            } => Self::Invalid {
                message,
                group: res.group.into(),
                kind,
                name,
                causes,
            },
        }
    }

    fn parts(&self) -> (StatusCode, &'static str) {
        match self {
            Self::NotFound { .. } => (StatusCode::NOT_FOUND, "NotFound"),
            Self::AlreadyExists { .. } => (StatusCode::CONFLICT, "AlreadyExists"),
            Self::Conflict { .. } | Self::ApplyConflict { .. } => {
                (StatusCode::CONFLICT, "Conflict")
            }
            Self::Invalid { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "Invalid"),
            Self::BadRequest(_) => (StatusCode::BAD_REQUEST, "BadRequest"),
            Self::MethodNotAllowed(_) => (StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed"),
            Self::UnsupportedMediaType(_) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "UnsupportedMediaType")
            }
            Self::Gone(_) => (StatusCode::GONE, "Expired"),
            Self::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable"),
            Self::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "InternalError"),
        }
    }

    /// The `Status` object (also used inside watch `ERROR` events).
    pub fn status(&self) -> Value {
        let (code, reason) = self.parts();
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.to_string(),
            "reason": reason,
            "code": code.as_u16(),
        });
        let details = match self {
            Self::NotFound {
                group, kind, name, ..
            }
            | Self::AlreadyExists {
                group, kind, name, ..
            }
            | Self::Conflict {
                group, kind, name, ..
            } => Some(json!({"name": name, "group": group, "kind": kind})),
            Self::Invalid {
                group,
                kind,
                name,
                causes,
                ..
            } => Some(json!({
                "name": name, "group": group, "kind": kind,
                "causes": causes.iter().map(|c| json!({"reason": c.reason, "message": c.message, "field": c.field})).collect::<Vec<_>>(),
            })),
            Self::ApplyConflict { causes, .. } => Some(json!({
                "causes": causes.iter().map(|c| json!({"reason": c.reason, "message": c.message, "field": c.field})).collect::<Vec<_>>(),
            })),
            _ => None,
        };
        if let Some(d) = details {
            status["details"] = d;
        }
        status
    }
}

fn qualified(res: &ResourceInfo) -> String {
    if res.group.is_empty() {
        res.plural.to_string()
    } else {
        format!("{}.{}", res.plural, res.group)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Expired { .. } => Self::Gone(e.to_string()),
            other => {
                tracing::error!(error = %other, "store failure");
                Self::Internal(format!("storage error: {other}"))
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (code, _) = self.parts();
        (code, axum::Json(self.status())).into_response()
    }
}
