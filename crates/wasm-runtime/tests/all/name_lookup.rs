//! Name lookups through a [`NameLookup`], with ordinary guests: `netcheck` (Rust `std::net` on
//! wasm32-wasip2, whose `ToSocketAddrs` is wasi-libc's `getaddrinfo` over
//! `wasi:sockets/ip-name-lookup`) and `http-hello`'s outbound `wasi:http` client. Names the lookup
//! answers never reach the host's resolver, unknown ones fail at once, the rest are the host's; a
//! Service name's address then goes through the redirect, as an address the guest wrote would.

use std::net::{IpAddr, SocketAddr};

use herd_wasm_runtime::{Answer, ConnectRedirect, Exit, NameLookup, NetworkPolicy, RunSpec};
use hyper::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::sample_apps::{free_addr, get};
use crate::{Log, load, run, runtime, sample_app, with_timeout};

/// A cluster of two names: `web` (a Service) and `pg` (headless, two pods); other names under
/// `cluster.local` do not exist; the rest are the host's.
fn cluster(web: IpAddr) -> NameLookup {
    NameLookup::new(move |name| match name {
        "web" | "web.other.svc.cluster.local" => Answer::Addresses(vec![web]),
        "pg" => Answer::Addresses(vec![
            "10.0.0.1".parse().expect("ip"),
            "10.0.0.2".parse().expect("ip"),
        ]),
        // An ExternalName to a host name.
        "ext" => Answer::host("localhost"),
        other if other.ends_with(".cluster.local") => Answer::NotFound,
        other => Answer::host(other),
    })
}

fn in_cluster(mut spec: RunSpec, names: NameLookup) -> RunSpec {
    spec.network = NetworkPolicy {
        names: Some(names),
        ..NetworkPolicy::default()
    };
    spec
}

/// A server on the host answering one line to each connection: `reply`, then ` host=` and the
/// request's `Host` header.
async fn line_server(reply: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                // The request's head, then the answer.
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&head);
                let host = head
                    .lines()
                    .find_map(|l| {
                        l.split_once(':')
                            .filter(|(k, _)| k.eq_ignore_ascii_case("host"))
                            .map(|(_, v)| v.trim().to_owned())
                    })
                    .unwrap_or_default();
                let answer = format!("HTTP/1.0 200 OK\r\n\r\n{reply} host={host}\n");
                let _ = stream.write_all(answer.as_bytes()).await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn std_net_lookups_answer_cluster_names_and_ask_the_host_for_the_rest() {
    let runtime = runtime();
    let workload = load(&runtime, sample_app("netcheck.wasm"));
    let server = line_server("from web").await;
    let log = Log::new();
    let get_web = format!("get=web:{}/x", server.port());
    let spec = log.spec(
        &[
            "netcheck",
            "resolve=web",
            "resolve=web.other.svc.cluster.local",
            "resolve=pg",
            "resolve=nope.other.svc.cluster.local",
            "resolve=localhost",
            "resolve=ext",
            "resolve=10.9.8.7",
            &get_web,
        ],
        &[],
    );
    let exit = run(&workload, in_cluster(spec, cluster(server.ip()))).await;
    assert_eq!(exit.ok(), Some(Exit::Exited(0)));
    let out = String::from_utf8_lossy(&log.contents()).into_owned();
    let line = |prefix: &str| {
        out.lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix:?} line in:\n{out}"))
            .to_owned()
    };
    assert_eq!(line("resolve web: "), "resolve web: 127.0.0.1", "{out}");
    assert_eq!(
        line("resolve web.other.svc.cluster.local: "),
        "resolve web.other.svc.cluster.local: 127.0.0.1"
    );
    assert_eq!(line("resolve pg: "), "resolve pg: 10.0.0.1 10.0.0.2");
    assert!(
        line("resolve nope.other.svc.cluster.local: ").contains(": error"),
        "{out}"
    );
    // The host's resolver: localhost is loopback.
    for name in ["localhost", "ext"] {
        let found = line(&format!("resolve {name}: "));
        let ips = found
            .split_once(": ")
            .map(|(_, ips)| ips)
            .unwrap_or_default();
        assert!(
            !ips.is_empty()
                && ips
                    .split(' ')
                    .all(|ip| ip.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())),
            "{out}"
        );
    }
    assert_eq!(line("resolve 10.9.8.7: "), "resolve 10.9.8.7: 10.9.8.7");
    assert_eq!(
        line(&format!("get web:{}/x: ", server.port())),
        format!(
            "get web:{port}/x: HTTP/1.0 200 OK | from web host=web",
            port = server.port()
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_http_to_a_cluster_name_reaches_its_address_through_the_redirect() {
    let runtime = runtime();
    let workload = load(&runtime, sample_app("http-hello.wasm"));
    let upstream = line_server("upstream-body").await;
    // `web` is a Service on port 80 that is really served on the upstream's port.
    let service: IpAddr = "127.0.0.1".parse().expect("ip");
    let log = Log::new();
    let addr = free_addr();
    let mut spec = in_cluster(log.spec(&["http-hello"], &[]), cluster(service));
    spec.network.redirect = Some(ConnectRedirect::new(move |to| {
        (to == SocketAddr::new(service, 80)).then_some(upstream)
    }));
    spec.http_listen = Some(addr);
    let stop = CancellationToken::new();
    let server = tokio::spawn({
        let stop = stop.clone();
        async move { workload.run(spec, stop).await }
    });
    for name in ["web", "web.other.svc.cluster.local"] {
        let (status, body) = with_timeout(get(addr, &format!("/fetch/{name}/version"))).await;
        let body = String::from_utf8_lossy(&body);
        assert_eq!(status, StatusCode::OK, "{name}: {body}");
        // The request went to the Service's address; its Host header keeps the guest's name.
        assert_eq!(body, format!("upstream 200: upstream-body host={name}\n"));
    }
    // An unknown cluster name fails as a DNS error, never reaching the host.
    let (status, body) =
        with_timeout(get(addr, "/fetch/nope.other.svc.cluster.local/version")).await;
    assert_eq!(
        status,
        StatusCode::BAD_GATEWAY,
        "{}",
        String::from_utf8_lossy(&body)
    );
    assert!(
        String::from_utf8_lossy(&body).contains("NXDOMAIN"),
        "{}",
        String::from_utf8_lossy(&body)
    );
    stop.cancel();
    let exit = with_timeout(server).await.expect("server task");
    assert_eq!(exit.ok(), Some(Exit::Stopped));
}
