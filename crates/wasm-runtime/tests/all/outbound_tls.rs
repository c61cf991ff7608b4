//! Outbound `https` from a wasi-http guest (the http-hello sample's `/api/` route, which calls
//! `https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT` with the token of its projected
//! ServiceAccount volume) to a server whose certificate a cluster CA signed: trusted only when the
//! runtime is given that CA as an extra root.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use herd_wasm_runtime::{Preopen, Runtime, RuntimeConfig};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::sample_apps::{free_addr, get};
use crate::{Log, load, sample_app, with_timeout};

/// An HTTPS server on loopback with a certificate for 127.0.0.1 from `ca`, answering 403 with the
/// request's path and `Authorization` header (as an API server refusing a ServiceAccount would).
async fn https_server(ca: &herd_pki::ClusterCa) -> SocketAddr {
    let sans = herd_pki::serving_sans(&[], None, &[]);
    let serving = ca
        .issue_serving("test-apiserver", &sans, herd_pki::SERVING_VALIDITY)
        .expect("serving certificate");
    let config = herd_pki::tls::server_config(ca.cert_pem(), &serving).expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = service_fn(|request: Request<hyper::body::Incoming>| async move {
                    let authorization = request
                        .headers()
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("none")
                        .to_owned();
                    let body = format!("{} {authorization}", request.uri());
                    Ok::<_, Infallible>(
                        Response::builder()
                            .status(StatusCode::FORBIDDEN)
                            .body(Full::new(Bytes::from(body)))
                            .expect("response"),
                    )
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    addr
}

/// Runs http-hello with the token file preopened where the kubelet projects it and the API server's
/// address in the `kubernetes` Service's variables, and GETs `/api/apis/x` from it.
async fn call_api(runtime: &Runtime, api: SocketAddr) -> (StatusCode, String) {
    let token_dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(token_dir.path().join("token"), "the-token\n").expect("token");
    let workload = load(runtime, sample_app("http-hello.wasm"));
    let log = Log::new();
    let port = api.port().to_string();
    let mut spec = log.spec(
        &["http-hello"],
        &[
            ("KUBERNETES_SERVICE_HOST", "127.0.0.1"),
            ("KUBERNETES_SERVICE_PORT", &port),
        ],
    );
    spec.preopens = vec![Preopen {
        host: token_dir.path().to_owned(),
        guest: "/var/run/secrets/kubernetes.io/serviceaccount".into(),
        read_only: true,
    }];
    let addr = free_addr();
    spec.http_listen = Some(addr);
    let stop = CancellationToken::new();
    let server = tokio::spawn({
        let stop = stop.clone();
        async move { workload.run(spec, stop).await }
    });
    let (status, body) = with_timeout(get(addr, "/api/apis/x")).await;
    stop.cancel();
    with_timeout(server)
        .await
        .expect("server task")
        .expect("ran");
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_reaches_a_server_of_the_extra_root_ca_over_tls() {
    let ca = herd_pki::ClusterCa::generate().expect("CA");
    let api = https_server(&ca).await;
    let runtime = Runtime::with_config(RuntimeConfig {
        extra_root_certificates: vec![ca.cert_der().to_vec()],
        ..RuntimeConfig::default()
    })
    .expect("runtime");
    let (status, body) = call_api(&runtime, api).await;
    // The upstream's status and body as they are; the token read from the preopened file.
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body, "/apis/x Bearer the-token");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_extra_root_the_servers_certificate_is_refused() {
    let ca = herd_pki::ClusterCa::generate().expect("CA");
    let api = https_server(&ca).await;
    let runtime = Runtime::new().expect("runtime");
    let (status, body) = call_api(&runtime, api).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert!(
        body.contains("the API server at https://127.0.0.1:"),
        "{body}"
    );
}
