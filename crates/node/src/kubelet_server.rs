//! The kubelet HTTP port: `/healthz` and `/containerLogs/{namespace}/{pod}/{container}`, which
//! the API server proxies `pods/{name}/log` to.

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::container_logs::{ContainerLogs, LogError, LogRequest};

#[derive(Clone)]
struct KubeletState {
    logs: ContainerLogs,
    /// Ends follow streams, so a graceful shutdown does not wait for them.
    shutdown: CancellationToken,
}

/// The kubelet routes.
pub(crate) fn router(logs: ContainerLogs, shutdown: CancellationToken) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/containerLogs/{namespace}/{pod}/{container}",
            get(container_logs),
        )
        .with_state(KubeletState { logs, shutdown })
}

/// The query of a log request, as the API server forwards it. Booleans are parsed like Go's
/// `strconv.ParseBool`; the other kubectl options are accepted and ignored.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LogQuery {
    follow: Option<String>,
    previous: Option<String>,
    tail_lines: Option<String>,
}

async fn container_logs(
    State(state): State<KubeletState>,
    Path((namespace, pod, container)): Path<(String, String, String)>,
    Query(query): Query<LogQuery>,
) -> Response {
    let request = match log_request(namespace, pod, container, &query) {
        Ok(request) => request,
        Err(message) => return (StatusCode::BAD_REQUEST, message).into_response(),
    };
    match state.logs.stream(request, state.shutdown.clone()).await {
        Ok(stream) => (
            [(header::CONTENT_TYPE, "text/plain")],
            Body::from_stream(stream),
        )
            .into_response(),
        Err(error) => {
            let code = match &error {
                LogError::PodNotFound { .. } => StatusCode::NOT_FOUND,
                LogError::NotStarted { .. } | LogError::NoPrevious { .. } => {
                    StatusCode::BAD_REQUEST
                }
                LogError::Io(_) => StatusCode::INTERNAL_SERVER_ERROR,
            };
            (code, error.to_string()).into_response()
        }
    }
}

fn log_request(
    namespace: String,
    pod: String,
    container: String,
    query: &LogQuery,
) -> Result<LogRequest, String> {
    let tail_lines = match query.tail_lines.as_deref() {
        None | Some("") => None,
        Some(value) => Some(
            value
                .parse::<u64>()
                .map_err(|_| format!("invalid tailLines {value:?}"))?,
        ),
    };
    Ok(LogRequest {
        namespace,
        pod,
        container,
        follow: parse_bool("follow", query.follow.as_deref())?,
        previous: parse_bool("previous", query.previous.as_deref())?,
        tail_lines,
    })
}

fn parse_bool(name: &str, value: Option<&str>) -> Result<bool, String> {
    match value {
        None | Some("") => Ok(false),
        Some("1" | "t" | "T" | "true" | "TRUE" | "True") => Ok(true),
        Some("0" | "f" | "F" | "false" | "FALSE" | "False") => Ok(false),
        Some(other) => Err(format!("invalid {name} {other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container_logs::PodLogKey;
    use http_body_util::BodyExt;
    use std::io::Write;
    use tower::ServiceExt;

    async fn get(app: Router, uri: &str) -> (StatusCode, String) {
        let request = axum::http::Request::get(uri)
            .body(Body::empty())
            .expect("request");
        let response = app.oneshot(request).await.expect("response");
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn serves_health_and_logs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let logs = ContainerLogs::new(dir.path());
        let key = PodLogKey {
            namespace: "default".into(),
            pod: "hello".into(),
            uid: "u".into(),
        };
        let (mut file, _writing) = logs.open_run(&key, "app", 0).expect("open");
        file.write_all(b"one\ntwo\nthree\n").expect("write");
        let app = router(logs, CancellationToken::new());

        assert_eq!(
            get(app.clone(), "/healthz").await,
            (StatusCode::OK, "ok".into())
        );
        assert_eq!(
            get(app.clone(), "/containerLogs/default/hello/app").await.1,
            "one\ntwo\nthree\n"
        );
        assert_eq!(
            get(
                app.clone(),
                "/containerLogs/default/hello/app?tailLines=2&timestamps=false"
            )
            .await
            .1,
            "two\nthree\n"
        );
        assert_eq!(
            get(app.clone(), "/containerLogs/default/nope/app").await.0,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            get(
                app.clone(),
                "/containerLogs/default/hello/app?previous=true"
            )
            .await
            .0,
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            get(app, "/containerLogs/default/hello/app?follow=maybe")
                .await
                .0,
            StatusCode::BAD_REQUEST
        );
    }
}
