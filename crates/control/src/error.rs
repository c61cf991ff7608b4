//! `ApiError`: every failure of the API server, rendered as a Kubernetes `Status`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use herd_api::{AdmitError, Cause, ResourceInfo};
use serde::Serialize;
use serde_json::Value;

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
    /// 403 Forbidden: an admission plugin refused the request (Pod Security admission).
    #[error("{message}")]
    Forbidden {
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
    /// 429 TooManyRequests (kube's `NewTooManyRequests`: the eviction API refusing to break a disruption
    /// budget), with causes and the seconds a client should wait (`Retry-After`; 0 for none).
    #[error("{message}")]
    TooManyRequests {
        message: String,
        retry_after_seconds: u32,
        causes: Vec<Cause>,
    },
    /// 401 Unauthorized: the request carried no credentials the server accepts (kube's message is
    /// `Unauthorized`).
    #[error("Unauthorized")]
    Unauthorized,
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("{0}")]
    NotAcceptable(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    Gone(String),
    #[error("{0}")]
    Unavailable(String),
    /// The request ran past the server's request timeout (kube-apiserver's `--request-timeout`).
    #[error("{0}")]
    Timeout(String),
    /// A failure of the server itself; the message is generic (the detail goes to the log, never to a
    /// client) and is rendered as kube's `Internal error occurred: …`.
    #[error("Internal error occurred: {0}")]
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
            Self::Forbidden { .. } => (StatusCode::FORBIDDEN, "Forbidden"),
            Self::Invalid { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "Invalid"),
            Self::TooManyRequests { .. } => (StatusCode::TOO_MANY_REQUESTS, "TooManyRequests"),
            Self::Unauthorized => (StatusCode::UNAUTHORIZED, "Unauthorized"),
            Self::BadRequest(_) => (StatusCode::BAD_REQUEST, "BadRequest"),
            Self::MethodNotAllowed(_) => (StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed"),
            Self::NotAcceptable(_) => (StatusCode::NOT_ACCEPTABLE, "NotAcceptable"),
            Self::UnsupportedMediaType(_) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "UnsupportedMediaType")
            }
            Self::Gone(_) => (StatusCode::GONE, "Expired"),
            Self::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable"),
            Self::Timeout(_) => (StatusCode::GATEWAY_TIMEOUT, "Timeout"),
            Self::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "InternalError"),
        }
    }

    /// The `Status` object, its fields in metav1.Status's order (what the response body is written from).
    pub fn status_body(&self) -> Status<'_> {
        let (code, reason) = self.parts();
        fn causes(c: &[Cause]) -> Vec<StatusCause<'_>> {
            c.iter().map(StatusCause::from).collect()
        }
        let details = match self {
            Self::NotFound {
                group, kind, name, ..
            }
            | Self::AlreadyExists {
                group, kind, name, ..
            }
            | Self::Conflict {
                group, kind, name, ..
            }
            | Self::Forbidden {
                group, kind, name, ..
            } => Some(StatusDetails::of(name, group, kind, Vec::new())),
            Self::Invalid {
                group,
                kind,
                name,
                causes: c,
                ..
            } => Some(StatusDetails::of(name, group, kind, causes(c))),
            Self::ApplyConflict { causes: c, .. } => Some(StatusDetails::of("", "", "", causes(c))),
            Self::TooManyRequests {
                retry_after_seconds,
                causes: c,
                ..
            } => Some(StatusDetails {
                retry_after_seconds: *retry_after_seconds,
                ..StatusDetails::of("", "", "", causes(c))
            }),
            // kube's NewInternalError names the error as the one cause.
            Self::Internal(m) => Some(StatusDetails::of(
                "",
                "",
                "",
                vec![StatusCause {
                    reason: "",
                    message: m,
                    field: "",
                }],
            )),
            // kube's NewTimeoutError: retryAfterSeconds 0, so empty details.
            Self::Timeout(_) => Some(StatusDetails::of("", "", "", Vec::new())),
            _ => None,
        };
        Status {
            kind: "Status",
            api_version: "v1",
            metadata: Empty {},
            status: "Failure",
            message: self.to_string(),
            reason,
            details,
            code: code.as_u16(),
        }
    }

    /// The `Status` object as JSON (inside watch `ERROR` events).
    pub fn status(&self) -> Value {
        serde_json::to_value(self.status_body()).unwrap_or_default()
    }
}

/// metav1.Status as kube-apiserver writes it: fields in the Go struct's order, empty ones omitted.
#[derive(Debug, Serialize)]
pub struct Status<'a> {
    kind: &'static str,
    #[serde(rename = "apiVersion")]
    api_version: &'static str,
    metadata: Empty,
    status: &'static str,
    message: String,
    reason: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    details: Option<StatusDetails<'a>>,
    code: u16,
}

#[derive(Debug, Serialize)]
struct Empty {}

/// metav1.StatusDetails (`name`, `group`, `kind`, `causes`; each omitted when empty).
#[derive(Debug, Serialize)]
struct StatusDetails<'a> {
    #[serde(skip_serializing_if = "str::is_empty")]
    name: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    group: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    kind: &'a str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    causes: Vec<StatusCause<'a>>,
    #[serde(rename = "retryAfterSeconds", skip_serializing_if = "is_zero")]
    retry_after_seconds: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl<'a> StatusDetails<'a> {
    fn of(name: &'a str, group: &'a str, kind: &'a str, causes: Vec<StatusCause<'a>>) -> Self {
        Self {
            name,
            group,
            kind,
            causes,
            retry_after_seconds: 0,
        }
    }
}

/// metav1.StatusCause (`reason`, `message`, `field`; each omitted when empty).
#[derive(Debug, Serialize)]
struct StatusCause<'a> {
    #[serde(skip_serializing_if = "str::is_empty")]
    reason: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    message: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    field: &'a str,
}

impl<'a> From<&'a Cause> for StatusCause<'a> {
    fn from(c: &'a Cause) -> Self {
        Self {
            reason: c.reason,
            message: &c.message,
            field: &c.field,
        }
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
                // The detail (SQL, I/O) is for the log only.
                tracing::error!(error = %other, "store failure");
                Self::Internal("the storage backend failed to complete the request".into())
            }
        }
    }
}

impl IntoResponse for ApiError {
    /// The Status, byte for byte as kube-apiserver's JSON encoder writes it (one line, a trailing newline).
    fn into_response(self) -> Response {
        let (code, _) = self.parts();
        let mut body = serde_json::to_vec(&self.status_body()).unwrap_or_default();
        body.push(b'\n');
        let mut response = (
            code,
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response();
        // As kube-apiserver's responsewriters: a 429 (or 5xx) that names a wait says so in Retry-After.
        if let Self::TooManyRequests {
            retry_after_seconds: secs @ 1..,
            ..
        } = self
        {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(secs),
            );
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::{Method, Request};
    use tower::ServiceExt;

    use super::*;
    use crate::server::{AppState, admin_router, router};

    /// The answer of the API server's router to one request, without a socket: status code and body bytes.
    async fn answer(app: &axum::Router, method: Method, uri: &str, body: &str) -> (u16, String) {
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .header("content-type", "application/json")
            .body(Body::from(body.to_owned()))
            .expect("request");
        let response = app.clone().oneshot(request).await.expect("answer");
        let code = response.status().as_u16();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("body");
        (code, String::from_utf8(bytes.to_vec()).expect("utf-8"))
    }

    // The expected bodies are kube-apiserver's: metav1.Status's fields in its Go order (kind, apiVersion,
    // metadata, status, message, reason, details, code), StatusDetails' omitempty fields left out when
    // empty (`group` for the core group), and the trailing newline of its JSON encoder.
    #[tokio::test]
    async fn statuses_are_written_byte_for_byte_as_kube_apiserver_writes_them() {
        let (_dir, objects) = crate::objects::test_objects().await;
        let state = AppState::for_tests(objects);
        // Without credentials: kube's 401 (the paths kube serves anonymously are tested on a real server,
        // whose default RBAC policy lets anonymous requests read them).
        let anonymous = router(state.clone());
        assert_eq!(
            answer(&anonymous, Method::GET, "/api/v1/namespaces", "").await,
            (
                401,
                concat!(
                    r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","#,
                    r#""message":"Unauthorized","reason":"Unauthorized","code":401}"#,
                    "\n"
                )
                .to_string()
            )
        );
        let app = admin_router(state);
        let shop = r#"{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"shop"}}"#;
        assert_eq!(
            answer(&app, Method::POST, "/api/v1/namespaces", shop)
                .await
                .0,
            201
        );
        assert_eq!(
            answer(&app, Method::POST, "/api/v1/namespaces", shop).await,
            (
                409,
                "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},\"status\":\"Failure\",\"message\":\"namespaces \\\"shop\\\" already exists\",\"reason\":\"AlreadyExists\",\"details\":{\"name\":\"shop\",\"kind\":\"namespaces\"},\"code\":409}\n".to_owned()
            )
        );
        assert_eq!(
            answer(&app, Method::GET, "/api/v1/namespaces/shop/pods/nope", "").await,
            (
                404,
                "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},\"status\":\"Failure\",\"message\":\"pods \\\"nope\\\" not found\",\"reason\":\"NotFound\",\"details\":{\"name\":\"nope\",\"kind\":\"pods\"},\"code\":404}\n".to_owned()
            )
        );
        assert_eq!(
            answer(&app, Method::GET, "/apis/apps/v1/namespaces/shop/deployments/web", "").await,
            (
                404,
                "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},\"status\":\"Failure\",\"message\":\"deployments.apps \\\"web\\\" not found\",\"reason\":\"NotFound\",\"details\":{\"name\":\"web\",\"group\":\"apps\",\"kind\":\"deployments\"},\"code\":404}\n".to_owned()
            )
        );
        let bad_name = r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"Bad_Name"}}"#;
        let (code, body) = answer(
            &app,
            Method::POST,
            "/api/v1/namespaces/shop/configmaps",
            bad_name,
        )
        .await;
        assert_eq!(code, 422, "{body}");
        assert!(
            body.starts_with("{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},\"status\":\"Failure\",\"message\":\"ConfigMap \\\"Bad_Name\\\" is invalid: metadata.name: Invalid value: \\\"Bad_Name\\\": ")
                && body.contains("\"reason\":\"Invalid\",\"details\":{\"name\":\"Bad_Name\",\"kind\":\"ConfigMap\",\"causes\":[{\"reason\":\"FieldValueInvalid\",\"message\":\"Invalid value: \\\"Bad_Name\\\": ")
                && body.ends_with("\",\"field\":\"metadata.name\"}]},\"code\":422}\n"),
            "{body}"
        );
        let (code, body) = answer(
            &app,
            Method::GET,
            "/api/v1/pods?labelSelector=a%20in%20b",
            "",
        )
        .await;
        assert_eq!(code, 400, "{body}");
        assert!(
            body.starts_with("{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},\"status\":\"Failure\",\"message\":\"")
                && body.ends_with("\",\"reason\":\"BadRequest\",\"code\":400}\n"),
            "{body}"
        );
    }

    #[test]
    fn a_store_failure_reaches_the_client_as_a_generic_internal_error() {
        let error = ApiError::from(StoreError::Task(
            "INSERT INTO objects failed: disk I/O".into(),
        ));
        let body = serde_json::to_string(&error.status_body()).expect("json");
        assert_eq!(
            body,
            "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},\"status\":\"Failure\",\"message\":\"Internal error occurred: the storage backend failed to complete the request\",\"reason\":\"InternalError\",\"details\":{\"causes\":[{\"message\":\"the storage backend failed to complete the request\"}]},\"code\":500}"
        );
    }
}
