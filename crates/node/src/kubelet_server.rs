//! The kubelet port, HTTPS only: `/healthz` and `/containerLogs/{namespace}/{pod}/{container}`, which
//! the API server proxies `pods/{name}/log` to, and `POST /tunnel/{podIP}/{port}`, other nodes' way to
//! this node's pods (see `tunnel`).
//!
//! Every request needs a client certificate of the cluster CA (kube's x509 authenticator: CN the user, O the
//! groups), and only the API server's kubelet client (`kube-apiserver-kubelet-client`) and members of
//! `system:masters` are allowed — for `/tunnel`, members of `system:nodes` and `system:masters`: no certificate is kube's `401 Unauthorized`, another identity the kubelet's
//! `403 Forbidden (user=…, verb=…, resource=nodes, subresource(s)=[…])`. A certificate of another CA fails
//! the handshake. The serving certificate is whatever [`herd_pki::tls::CurrentCert`] holds at each handshake.

use axum::Router;
use axum::body::Body;
use axum::extract::connect_info::ConnectInfo;
use axum::extract::{Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use jiff::Timestamp;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::container_logs::{ContainerLogs, LogError, LogRequest};
use crate::log_render::RenderOptions;
use crate::tunnel::TunnelTargets;

#[derive(Clone)]
struct KubeletState {
    logs: ContainerLogs,
    /// What `/tunnel` may reach.
    tunnels: TunnelTargets,
    /// Ends follow streams and tunnels, so a graceful shutdown does not wait for them.
    shutdown: CancellationToken,
}

/// The kubelet routes.
pub(crate) fn router(
    logs: ContainerLogs,
    tunnels: TunnelTargets,
    shutdown: CancellationToken,
) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/containerLogs/{namespace}/{pod}/{container}",
            get(container_logs),
        )
        .route("/tunnel/{ip}/{port}", post(tunnel))
        .with_state(KubeletState {
            logs,
            tunnels,
            shutdown,
        })
}

async fn tunnel(
    State(state): State<KubeletState>,
    Path((ip, port)): Path<(String, String)>,
    request: Request,
) -> Response {
    crate::tunnel::serve(&state.tunnels, &ip, &port, request, state.shutdown.clone()).await
}

/// The API server's user name when it calls kubelets (kubeadm's `apiserver-kubelet-client.crt`).
pub const APISERVER_KUBELET_CLIENT: &str = "kube-apiserver-kubelet-client";

/// [`router`] behind the kubelet's authentication and authorization.
pub(crate) fn secured(router: Router) -> Router {
    router.layer(axum::middleware::from_fn(authorize))
}

/// The kubelet's authn/authz filter: who the connection's certificate names, and whether that caller may.
async fn authorize(request: Request, next: Next) -> Response {
    let peer = request
        .extensions()
        .get::<ConnectInfo<Peer>>()
        .map(|p| p.0.clone());
    let client = peer
        .as_ref()
        .map(|p| p.addr.to_string())
        .unwrap_or_default();
    let Some(user) = peer.and_then(|p| p.certificate) else {
        return (StatusCode::UNAUTHORIZED, "Unauthorized\n").into_response();
    };
    let path = request.uri().path();
    let masters = user.groups.iter().any(|g| g == herd_pki::MASTERS_GROUP);
    let tunnel = path.starts_with("/tunnel/");
    // The pod tunnel is for other nodes (and administrators); everything else for the API server.
    let allowed = if tunnel {
        masters || user.groups.iter().any(|g| g == herd_pki::NODES_GROUP)
    } else {
        masters || user.name == APISERVER_KUBELET_CLIENT
    };
    if allowed {
        return next.run(request).await;
    }
    // The kubelet's words (server.go), with its request attributes: `proxy` for what has no subresource of
    // its own.
    let subresource = if path.starts_with("/healthz") {
        "healthz"
    } else if tunnel {
        "tunnel"
    } else {
        "proxy"
    };
    let verb = match *request.method() {
        axum::http::Method::POST => "create",
        axum::http::Method::PUT | axum::http::Method::PATCH => "update",
        axum::http::Method::DELETE => "delete",
        _ => "get",
    };
    tracing::info!(user = %user.name, %client, %path, "kubelet port: forbidden");
    (
        StatusCode::FORBIDDEN,
        format!(
            "Forbidden (user={}, verb={verb}, resource=nodes, subresource(s)=[{subresource}])\n",
            user.name
        ),
    )
        .into_response()
}

pub(crate) use herd_tls_listener::{Peer, TlsListener};

/// The query of a log request (`PodLogOptions`), as the API server forwards it. Booleans are
/// parsed like Go's `strconv.ParseBool`; other parameters are ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LogQuery {
    follow: Option<String>,
    previous: Option<String>,
    tail_lines: Option<String>,
    timestamps: Option<String>,
    since_seconds: Option<String>,
    since_time: Option<String>,
    limit_bytes: Option<String>,
}

async fn container_logs(
    State(state): State<KubeletState>,
    Path((namespace, pod, container)): Path<(String, String, String)>,
    Query(query): Query<LogQuery>,
) -> Response {
    let request = match log_request(namespace, pod, container, &query, Timestamp::now()) {
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

/// The request `query` makes at `now`, checked like `ValidatePodLogOptions`.
fn log_request(
    namespace: String,
    pod: String,
    container: String,
    query: &LogQuery,
    now: Timestamp,
) -> Result<LogRequest, String> {
    let tail_lines = parse_int("tailLines", query.tail_lines.as_deref())?
        .map(|lines| {
            u64::try_from(lines).map_err(|_| {
                format!("tailLines: Invalid value: {lines}: must be greater than or equal to 0")
            })
        })
        .transpose()?;
    let positive = |name: &str, value: Option<&str>| -> Result<Option<u64>, String> {
        match parse_int(name, value)? {
            Some(n) if n < 1 => Err(format!(
                "{name}: Invalid value: {n}: must be greater than 0"
            )),
            n => Ok(n.and_then(|n| u64::try_from(n).ok())),
        }
    };
    let limit_bytes = positive("limitBytes", query.limit_bytes.as_deref())?;
    let since_seconds = positive("sinceSeconds", query.since_seconds.as_deref())?;
    let since_time =
        match query.since_time.as_deref() {
            None | Some("") => None,
            Some(value) => Some(value.parse::<Timestamp>().map_err(|_| {
                format!("sinceTime: Invalid value: {value:?}: not an RFC 3339 time")
            })?),
        };
    let since = match (since_seconds, since_time) {
        (Some(_), Some(_)) => {
            return Err(
                "sinceSeconds: Forbidden: at most one of `sinceTime` or `sinceSeconds` may be specified"
                    .to_owned(),
            );
        }
        (Some(seconds), None) => {
            let seconds = i64::try_from(seconds).unwrap_or(i64::MAX);
            Some(
                now.checked_sub(jiff::SignedDuration::from_secs(seconds))
                    .unwrap_or(Timestamp::MIN),
            )
        }
        (None, time) => time,
    };
    Ok(LogRequest {
        namespace,
        pod,
        container,
        follow: parse_bool("follow", query.follow.as_deref())?,
        previous: parse_bool("previous", query.previous.as_deref())?,
        tail_lines,
        render: RenderOptions {
            timestamps: parse_bool("timestamps", query.timestamps.as_deref())?,
            since,
            limit_bytes,
        },
    })
}

fn parse_int(name: &str, value: Option<&str>) -> Result<Option<i64>, String> {
    match value {
        None | Some("") => Ok(None),
        Some(value) => value
            .parse::<i64>()
            .map(Some)
            .map_err(|_| format!("invalid {name} {value:?}")),
    }
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
    use crate::cri_log::{Stream, format_record};
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
        let mut records = Vec::new();
        for (second, line) in [(0, "one"), (1, "two"), (2, "three")] {
            let time = Timestamp::from_second(1_700_000_000 + second).expect("time");
            format_record(&mut records, time, Stream::Stdout, false, line.as_bytes());
        }
        file.write_all(&records).expect("write");
        let app = router(logs, TunnelTargets::default(), CancellationToken::new());
        let logs_of = |query: &str| {
            let app = app.clone();
            let uri = format!("/containerLogs/default/hello/app{query}");
            async move { get(app, &uri).await }
        };

        assert_eq!(
            get(app.clone(), "/healthz").await,
            (StatusCode::OK, "ok".into())
        );
        assert_eq!(logs_of("").await.1, "one\ntwo\nthree\n");
        assert_eq!(
            logs_of("?tailLines=2&timestamps=false").await.1,
            "two\nthree\n"
        );
        assert_eq!(
            logs_of("?tailLines=1&timestamps=true").await.1,
            "2023-11-14T22:13:22.000000000Z three\n"
        );
        assert_eq!(
            logs_of("?sinceTime=2023-11-14T22:13:21Z").await.1,
            "two\nthree\n"
        );
        assert_eq!(logs_of("?limitBytes=6").await.1, "one\ntw");
        assert_eq!(
            get(app.clone(), "/containerLogs/default/nope/app").await.0,
            StatusCode::NOT_FOUND
        );
        for bad in [
            "?previous=true",
            "?follow=maybe",
            "?limitBytes=0",
            "?tailLines=-1",
            "?sinceSeconds=5&sinceTime=2023-11-14T22:13:21Z",
        ] {
            assert_eq!(logs_of(bad).await.0, StatusCode::BAD_REQUEST, "{bad}");
        }
    }

    /// A caller whose verified client certificate names `user` (name, groups); `None`: no certificate.
    fn peer_as(user: Option<(&str, &[&str])>) -> Peer {
        Peer {
            addr: "127.0.0.1:1".parse().expect("addr"),
            certificate: user.map(|(name, groups)| herd_pki::tls::UserInfo {
                name: name.into(),
                groups: groups.iter().map(|g| (*g).to_string()).collect(),
            }),
        }
    }

    #[tokio::test]
    async fn only_the_api_server_and_masters_may_call() {
        let dir = tempfile::tempdir().expect("tempdir");
        let app = secured(router(
            ContainerLogs::new(dir.path()),
            TunnelTargets::default(),
            CancellationToken::new(),
        ));
        let call = |user: Option<(&str, &[&str])>| {
            let app = app.clone();
            let peer = peer_as(user);
            async move {
                let mut request = axum::http::Request::get("/containerLogs/default/p/c")
                    .body(Body::empty())
                    .expect("request");
                request.extensions_mut().insert(ConnectInfo(peer));
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
        };
        assert_eq!(
            call(None).await,
            (StatusCode::UNAUTHORIZED, "Unauthorized\n".into())
        );
        assert_eq!(
            call(Some(("system:node:other", &["system:nodes"]))).await,
            (
                StatusCode::FORBIDDEN,
                "Forbidden (user=system:node:other, verb=get, resource=nodes, subresource(s)=[proxy])\n"
                    .into()
            )
        );
        // Allowed through to the handler, which knows no such pod.
        assert_eq!(
            call(Some((APISERVER_KUBELET_CLIENT, &["system:masters"])))
                .await
                .0,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            call(Some(("kubernetes-admin", &["system:masters"])))
                .await
                .0,
            StatusCode::NOT_FOUND
        );
    }

    #[tokio::test]
    async fn only_nodes_and_masters_may_tunnel() {
        let dir = tempfile::tempdir().expect("tempdir");
        let app = secured(router(
            ContainerLogs::new(dir.path()),
            TunnelTargets::new("b"),
            CancellationToken::new(),
        ));
        let call = |user: Option<(&str, &[&str])>| {
            let app = app.clone();
            let peer = peer_as(user);
            async move {
                let mut request = axum::http::Request::post("/tunnel/127.64.0.5/8080")
                    .header(header::UPGRADE, crate::tunnel::UPGRADE_PROTOCOL)
                    .body(Body::empty())
                    .expect("request");
                request.extensions_mut().insert(ConnectInfo(peer));
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
        };
        assert_eq!(call(None).await.0, StatusCode::UNAUTHORIZED);
        for user in [
            ("jane", &["developers"][..]),
            (APISERVER_KUBELET_CLIENT, &[][..]),
        ] {
            assert_eq!(
                call(Some(user)).await,
                (
                    StatusCode::FORBIDDEN,
                    format!(
                        "Forbidden (user={}, verb=create, resource=nodes, subresource(s)=[tunnel])\n",
                        user.0
                    )
                )
            );
        }
        // Through to the handler: node b has no pod CIDR yet.
        for user in [
            ("system:node:a", &["system:nodes"][..]),
            ("kubernetes-admin", &["system:masters"][..]),
        ] {
            assert_eq!(
                call(Some(user)).await,
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "node b has no pod CIDR yet\n".into()
                )
            );
        }
    }

    #[test]
    fn since_seconds_counts_back_from_now() {
        let now = Timestamp::from_second(1_700_000_100).expect("time");
        let query = LogQuery {
            since_seconds: Some("60".into()),
            timestamps: Some("1".into()),
            ..LogQuery::default()
        };
        let request =
            log_request("ns".into(), "p".into(), "c".into(), &query, now).expect("request");
        assert_eq!(
            request.render,
            RenderOptions {
                timestamps: true,
                since: Some(Timestamp::from_second(1_700_000_040).expect("time")),
                limit_bytes: None,
            }
        );
        let query = LogQuery {
            since_seconds: Some("0".into()),
            ..LogQuery::default()
        };
        assert_eq!(
            log_request("ns".into(), "p".into(), "c".into(), &query, now).err(),
            Some("sinceSeconds: Invalid value: 0: must be greater than 0".to_owned())
        );
    }
}
