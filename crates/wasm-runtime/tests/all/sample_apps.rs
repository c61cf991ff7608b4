//! The real sample apps from `sample-apps/dist` (built by
//! `sample-apps/build.sh`): a p1 module and a wasi-http component.

use std::net::{SocketAddr, TcpListener as StdTcpListener};
use std::time::{Duration, Instant};

use bytes::Bytes;
use herd_wasm_runtime::{Exit, RuntimeError, WorkloadKind};
use http_body_util::{BodyExt, Empty};
use hyper::header::HOST;
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use crate::{Log, load, run, runtime, sample_app, with_timeout};

#[tokio::test]
async fn hello_module_sees_argv_env_and_exits_with_status() {
    let runtime = runtime();
    let workload = load(&runtime, sample_app("hello.wasm"));
    assert_eq!(workload.kind(), WorkloadKind::Module);
    let log = Log::new();

    let spec = log.spec(
        &["hello", "x y", "--exit=4"],
        &[("ZED", "1"), ("ALPHA", "a=b")],
    );
    let exit = run(&workload, spec).await;

    assert_eq!(exit.ok(), Some(Exit::Exited(4)));
    assert_eq!(
        String::from_utf8_lossy(&log.contents()),
        "Hello from herd!\nargs: [\"x y\", \"--exit=4\"]\nenv ALPHA=a=b\nenv ZED=1\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spin_module_stops_promptly() {
    let runtime = runtime();
    let workload = load(&runtime, sample_app("spin.wasm"));
    let log = Log::new();
    let stop = CancellationToken::new();
    let task = tokio::spawn({
        let stop = stop.clone();
        let spec = log.spec(&["spin"], &[]);
        async move { workload.run(spec, stop).await }
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while log.contents() != b"spinning\n" {
        assert!(
            Instant::now() < deadline,
            "spin.wasm never printed `spinning`"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!task.is_finished(), "spin.wasm should still be spinning");

    let cancelled_at = Instant::now();
    stop.cancel();
    let exit = with_timeout(task).await.expect("task");

    assert_eq!(exit.ok(), Some(Exit::Stopped));
    let took = cancelled_at.elapsed();
    assert!(took < Duration::from_millis(500), "stopping took {took:?}");
}

/// An address on loopback that nothing listens on (right now).
pub(crate) fn free_addr() -> SocketAddr {
    let listener = StdTcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("local addr")
}

/// `GET path` over a fresh TCP connection, retrying the connect while the
/// server starts.
pub(crate) async fn get(addr: SocketAddr, path: &str) -> (StatusCode, Bytes) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let stream = loop {
        match TcpStream::connect(addr).await {
            Ok(stream) => break stream,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("cannot connect to {addr}: {e}"),
        }
    };
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(connection);
    let request = Request::get(path)
        .header(HOST, addr.to_string())
        .body(Empty::<Bytes>::new())
        .expect("request");
    let response = sender.send_request(request).await.expect("response");
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_hello_serves_until_stopped() {
    let runtime = runtime();
    let workload = load(&runtime, sample_app("http-hello.wasm"));
    assert_eq!(workload.kind(), WorkloadKind::HttpProxy);
    let log = Log::new();
    let addr = free_addr();
    let mut spec = log.spec(&["http-hello"], &[("POD_NAME", "web-1")]);
    spec.http_listen = Some(addr);
    let stop = CancellationToken::new();
    let server = tokio::spawn({
        let stop = stop.clone();
        async move { workload.run(spec, stop).await }
    });

    let (status, body) = with_timeout(get(addr, "/")).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "body: {}",
        String::from_utf8_lossy(&body)
    );
    assert!(!body.is_empty());
    // Each request gets a fresh instance that sees the pod's environment.
    for (path, shown) in [("/a/b?x=1", "/a/b"), ("/c", "/c")] {
        let (status, body) = with_timeout(get(addr, path)).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            String::from_utf8_lossy(&body),
            format!("Hello from herd! pod=web-1 path={shown}\n")
        );
    }

    stop.cancel();
    let exit = with_timeout(server).await.expect("server task");
    assert_eq!(exit.ok(), Some(Exit::Stopped));
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "the listener must be closed after stopping"
    );
}

#[tokio::test]
async fn http_proxy_needs_a_listen_address() {
    let runtime = runtime();
    let workload = load(&runtime, sample_app("http-hello.wasm"));
    let exit = run(&workload, Log::new().spec(&["http-hello"], &[])).await;
    assert!(
        matches!(exit, Err(RuntimeError::Bind { addr: None, .. })),
        "{exit:?}"
    );
}

#[tokio::test]
async fn http_proxy_reports_an_address_in_use() {
    let runtime = runtime();
    let workload = load(&runtime, sample_app("http-hello.wasm"));
    let taken = StdTcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("local addr");
    let mut spec = Log::new().spec(&["http-hello"], &[]);
    spec.http_listen = Some(addr);

    let exit = run(&workload, spec).await;

    match exit {
        Err(RuntimeError::Bind { addr: Some(a), .. }) => assert_eq!(a, addr),
        other => panic!("expected Bind, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_proxy_drains_then_stops() {
    let runtime = runtime();
    let workload = load(&runtime, sample_app("http-hello.wasm"));
    let log = Log::new();
    let addr = free_addr();
    let mut spec = log.spec(&["http-hello"], &[]);
    spec.http_listen = Some(addr);
    let drain = CancellationToken::new();
    spec.drain = Some(drain.clone());
    let stop = CancellationToken::new();
    let server = tokio::spawn({
        let stop = stop.clone();
        async move { workload.run(spec, stop).await }
    });
    let (status, _) = with_timeout(get(addr, "/")).await;
    assert_eq!(status, StatusCode::OK);

    // An idle keep-alive connection must not hold the drain up.
    let idle = TcpStream::connect(addr).await.expect("connect");
    drain.cancel();
    let exit = with_timeout(server).await.expect("server task");

    assert_eq!(exit.ok(), Some(Exit::Stopped));
    assert!(!stop.is_cancelled());
    assert!(TcpStream::connect(addr).await.is_err(), "still accepting");
    drop(idle);
}
