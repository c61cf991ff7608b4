//! wasi-http proxies instantiate from the HTTP engine's pool: a full pool
//! answers 503, freed slots are reused, and modules never touch the pool.

use std::net::SocketAddr;
use std::path::Path;

use bytes::Bytes;
use herd_wasm_runtime::{Exit, HttpPool, Runtime, RuntimeConfig, Workload};
use hyper::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::sample_apps::{free_addr, get};
use crate::{Log, run, sample_app, with_timeout};

/// A runtime whose HTTP pool has `slots` slots; compiled code is shared
/// through `cache` so probing several sizes compiles http-hello once.
fn pooled_runtime(cache: &Path, slots: u32) -> Runtime {
    let pool = HttpPool {
        slots,
        ..HttpPool::default()
    };
    let config = RuntimeConfig {
        cache_dir: Some(cache.to_owned()),
        ..RuntimeConfig::default()
    };
    Runtime::with_http_pool(config, pool).expect("runtime")
}

/// Serves `workload` on a fresh address until `stop`.
fn serve(workload: Workload, stop: &CancellationToken) -> SocketAddr {
    let addr = free_addr();
    let mut spec = Log::new().spec(&["http-hello"], &[]);
    spec.http_listen = Some(addr);
    let stop = stop.clone();
    tokio::spawn(async move { workload.run(spec, stop).await });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_pool_answers_503_and_freed_slots_are_reused() {
    let cache = tempfile::tempdir().expect("temp dir");
    let wasm = sample_app("http-hello.wasm");
    let stop = CancellationToken::new();

    // The smallest pool that can serve one request: one http-hello
    // instance needs several core instances and memories, so smaller pools
    // answer 503 (never crash) to every request.
    let mut fit = None;
    for slots in 1..=16 {
        let runtime = pooled_runtime(cache.path(), slots);
        let (workload, _) = runtime.load_cached(&wasm, "http-hello").expect("load");
        let addr = serve(workload, &stop);
        let (status, body) = with_timeout(get(addr, "/")).await;
        match status {
            StatusCode::OK => {
                eprintln!("the smallest pool serving http-hello has {slots} slots");
                fit = Some(addr);
                break;
            }
            StatusCode::SERVICE_UNAVAILABLE => {}
            other => panic!("{slots} slots: {other} {}", String::from_utf8_lossy(&body)),
        }
    }
    let addr = fit.expect("no pool of up to 16 slots served a request");

    // Freed slots are reused: many sequential requests all succeed. (A request's instance is dropped
    // just after its response is sent, so the next request may briefly find the one slot still taken.)
    for _ in 0..20 {
        assert_eq!(get_once_freed(addr, "/").await, StatusCode::OK);
    }

    // Hold the only instance: the guest fetches from an upstream that does
    // not answer until told to.
    let upstream = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let upstream_addr = upstream.local_addr().expect("addr");
    let path = format!("/fetch/{upstream_addr}/x");
    // The slot of the last request may still be taken for a moment (a busy machine): until the guest has
    // it, the request answers 503 and is sent again.
    let held = tokio::spawn(async move {
        loop {
            let (status, body) = get(addr, &path).await;
            if status != StatusCode::SERVICE_UNAVAILABLE {
                return (status, body);
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    });
    let (mut upstream_conn, _) = with_timeout(upstream.accept()).await.expect("accept");

    let (status, body) = with_timeout(get(addr, "/")).await;
    assert_eq!(
        status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        String::from_utf8_lossy(&body)
    );

    // Answer only after the guest's request arrived: a response sent before it is no answer to it (under
    // load the guest may still be writing it), and the guest's client would call it a protocol error.
    let mut request = Vec::new();
    while !request.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        let read = with_timeout(upstream_conn.read(&mut byte))
            .await
            .expect("read request");
        assert_ne!(read, 0, "the guest closed before sending its request");
        request.push(byte[0]);
    }
    upstream_conn
        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
        .await
        .expect("answer");
    let (status, body) = with_timeout(held).await.expect("held request");
    assert_eq!(
        (status, body),
        (StatusCode::OK, Bytes::from("upstream 200: ok"))
    );
    assert_eq!(get_once_freed(addr, "/").await, StatusCode::OK);
    stop.cancel();
}

/// GET `path`, retrying while the pool answers 503 for up to a second; the last status.
async fn get_once_freed(addr: SocketAddr, path: &str) -> StatusCode {
    for _ in 0..100 {
        let (status, _) = with_timeout(get(addr, path)).await;
        if status != StatusCode::SERVICE_UNAVAILABLE {
            return status;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    StatusCode::SERVICE_UNAVAILABLE
}

#[tokio::test]
async fn modules_run_even_when_the_http_pool_is_tiny() {
    let cache = tempfile::tempdir().expect("temp dir");
    let runtime = pooled_runtime(cache.path(), 1);
    let workload = runtime.load(&sample_app("hello.wasm")).expect("load");
    let exit = run(&workload, Log::new().spec(&["hello"], &[])).await;
    assert_eq!(exit.ok(), Some(Exit::Exited(0)));
}
