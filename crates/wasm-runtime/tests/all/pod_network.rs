//! Sockets as in a pod's network namespace, with an ordinary `std::net` program (`echo-tcp` from
//! `sample-apps/dist`) that knows nothing of herd: binds of the wildcard and loopback addresses listen
//! on the pod IP, connects to localhost reach the pod IP, other local addresses stay refused, and a
//! [`ConnectRedirect`] sends a connection elsewhere. Also: a module ends at `drain`, as by SIGTERM.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use herd_wasm_runtime::{ConnectRedirect, Exit, NetworkPolicy, RunSpec, Workload};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::{Log, load, run, runtime, sample_app, with_timeout};

/// The pod IP of these tests: any 127/8 address is on `lo`.
const POD_IP: &str = "127.0.0.77";

fn pod_ip() -> IpAddr {
    POD_IP.parse().expect("ip")
}

fn in_pod(mut spec: RunSpec) -> RunSpec {
    spec.network = NetworkPolicy {
        bind_ip: Some(pod_ip()),
        ..NetworkPolicy::default()
    };
    spec
}

/// Runs `echo-tcp` with `args` in the background; stopped when `stop` is cancelled.
fn start(
    workload: &Workload,
    spec: RunSpec,
    stop: &CancellationToken,
) -> JoinHandle<Result<Exit, herd_wasm_runtime::RuntimeError>> {
    let workload = workload.clone();
    let stop = stop.clone();
    tokio::spawn(async move { workload.run(spec, stop).await })
}

/// Waits for a log line starting with `prefix`; returns the rest of it.
async fn line(log: &Log, prefix: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let contents = String::from_utf8_lossy(&log.contents()).into_owned();
        if let Some(rest) = contents.lines().find_map(|l| l.strip_prefix(prefix)) {
            return rest.to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "no line starting {prefix:?} in:\n{contents}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One exchange with an echo server, from the host.
async fn ping(addr: SocketAddr) -> String {
    let mut stream = TcpStream::connect(addr)
        .await
        .expect("connect to the guest");
    stream.write_all(b"ping\n").await.expect("write");
    let mut reply = String::new();
    BufReader::new(stream)
        .read_line(&mut reply)
        .await
        .expect("read");
    reply
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_binding_any_or_loopback_listen_on_the_pod_ip() {
    let runtime = runtime();
    let workload = load(&runtime, sample_app("echo-tcp.wasm"));
    for bind in ["0.0.0.0:0", "[::]:0", "127.0.0.1:0", "[::1]:0"] {
        let log = Log::new();
        let stop = CancellationToken::new();
        let task = start(
            &workload,
            in_pod(log.spec(&["echo-tcp", "serve", bind], &[])),
            &stop,
        );
        let listening: SocketAddr = line(&log, "listening on ")
            .await
            .parse()
            .expect("a socket address");
        // An IPv6 listener sees the pod IP IPv4-mapped, as on a dual-stack socket.
        assert_eq!(listening.ip().to_canonical(), pod_ip(), "{bind}");
        assert_eq!(listening.is_ipv6(), bind.starts_with('['), "{bind}");
        assert_eq!(ping(listening).await, "echo: ping\n", "{bind}");
        stop.cancel();
        let exit = with_timeout(task).await.expect("task");
        assert_eq!(exit.ok(), Some(Exit::Stopped), "{bind}");
    }
}

#[tokio::test]
async fn binding_another_local_address_is_refused() {
    let runtime = runtime();
    let workload = load(&runtime, sample_app("echo-tcp.wasm"));
    let log = Log::new();
    let exit = run(
        &workload,
        in_pod(log.spec(&["echo-tcp", "serve", "127.0.0.2:0"], &[])),
    )
    .await;
    assert_eq!(exit.ok(), Some(Exit::Exited(1)));
    let out = String::from_utf8_lossy(&log.contents()).into_owned();
    assert!(out.starts_with("bind 127.0.0.2:0: "), "{out}");
}

/// A host echo server on `addr`: answers one line per connection.
async fn host_echo(listener: TcpListener) {
    while let Ok((stream, _)) = listener.accept().await {
        let (read, mut write) = stream.into_split();
        let mut line = String::new();
        if BufReader::new(read).read_line(&mut line).await.is_ok() {
            let _ = write.write_all(format!("echo: {line}").as_bytes()).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_reach_the_pod_ip_over_localhost() {
    let runtime = runtime();
    let workload = load(&runtime, sample_app("echo-tcp.wasm"));
    // The pod's other container, as the host sees it: on the pod IP.
    let listener = TcpListener::bind((pod_ip(), 0)).await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let server = tokio::spawn(host_echo(listener));
    for target in [format!("localhost:{port}"), format!("127.0.0.1:{port}")] {
        let log = Log::new();
        let stop = CancellationToken::new();
        let task = start(
            &workload,
            in_pod(log.spec(&["echo-tcp", "client", &target], &[])),
            &stop,
        );
        assert_eq!(line(&log, "reply: ").await, "echo: ping 1", "{target}");
        stop.cancel();
        let _ = with_timeout(task).await;
    }
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_sends_a_connection_elsewhere() {
    let runtime = runtime();
    let workload = load(&runtime, sample_app("echo-tcp.wasm"));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let real = listener.local_addr().expect("addr");
    let server = tokio::spawn(host_echo(listener));
    // A "Service" address nothing listens on; the redirect knows where it is served.
    let service: SocketAddr = "127.0.0.88:80".parse().expect("addr");
    let log = Log::new();
    let mut spec = in_pod(log.spec(&["echo-tcp", "client", &service.to_string()], &[]));
    spec.network.redirect = Some(ConnectRedirect::new(move |to| {
        (to == service).then_some(real)
    }));
    let stop = CancellationToken::new();
    let task = start(&workload, spec, &stop);
    assert_eq!(line(&log, "reply: ").await, "echo: ping 1");
    stop.cancel();
    let _ = with_timeout(task).await;
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_module_ends_at_drain_as_by_sigterm() {
    let runtime = runtime();
    let workload = load(&runtime, sample_app("hello.wasm"));
    let log = Log::new();
    let mut spec = log.spec(&["hello", "--forever"], &[]);
    let drain = CancellationToken::new();
    spec.drain = Some(drain.clone());
    let stop = CancellationToken::new();
    let task = start(&workload, spec, &stop);
    line(&log, "Hello from herd!").await;
    drain.cancel();
    // Ends without `stop`: the guest is terminated, not left to run out a grace period.
    let exit = with_timeout(task).await.expect("task");
    assert_eq!(exit.ok(), Some(Exit::Terminated));
}
