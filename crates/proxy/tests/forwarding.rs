//! The forwarder against real sockets on loopback: round robin over two backends, closing
//! connections when a frontend has no endpoints, and stopping listeners that leave the table.

use std::net::{SocketAddr, TcpListener as StdTcpListener};
use std::time::Duration;

use herd_proxy::{Forwarder, ListenState, RoutingTable};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// A backend that answers every connection with `name` followed by what it received.
async fn backend(ip: &str, name: &'static str) -> SocketAddr {
    let listener = TcpListener::bind((ip, 0)).await.expect("bind backend");
    let addr = listener.local_addr().expect("backend address");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 64];
                let n = stream.read(&mut buf).await.unwrap_or(0);
                let mut reply = name.as_bytes().to_vec();
                reply.extend_from_slice(&buf[..n]);
                let _ = stream.write_all(&reply).await;
            });
        }
    });
    addr
}

/// A port that is free on `ip` right now.
fn free_addr(ip: &str) -> SocketAddr {
    StdTcpListener::bind((ip, 0))
        .and_then(|l| l.local_addr())
        .expect("free port")
}

async fn request(frontend: SocketAddr) -> String {
    let mut stream = TcpStream::connect(frontend)
        .await
        .expect("connect to frontend");
    stream.write_all(b":ping").await.expect("write");
    let mut reply = String::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_string(&mut reply))
        .await
        .expect("reply in time")
        .expect("read reply");
    reply
}

#[tokio::test]
async fn round_robin_over_two_backends() {
    let a = backend("127.0.0.2", "a").await;
    let b = backend("127.0.0.3", "b").await;
    let frontend = free_addr("127.0.0.4");
    let mut forwarder = Forwarder::new(CancellationToken::new());
    let mut table = RoutingTable::new();
    table.insert(frontend, vec![a, b]);
    forwarder.update(table);

    let mut replies = Vec::new();
    for _ in 0..4 {
        replies.push(request(frontend).await);
    }
    assert_eq!(replies, ["a:ping", "b:ping", "a:ping", "b:ping"]);
    forwarder.shutdown().await;
}

#[tokio::test]
async fn skips_a_backend_that_refuses() {
    let a = backend("127.0.0.2", "a").await;
    let dead = free_addr("127.0.0.3");
    let frontend = free_addr("127.0.0.4");
    let mut forwarder = Forwarder::new(CancellationToken::new());
    let mut table = RoutingTable::new();
    table.insert(frontend, vec![a, dead]);
    forwarder.update(table);

    for _ in 0..3 {
        assert_eq!(request(frontend).await, "a:ping");
    }
    forwarder.shutdown().await;
}

#[tokio::test]
async fn no_endpoints_closes_and_new_endpoints_apply_without_rebinding() {
    let frontend = free_addr("127.0.0.5");
    let mut forwarder = Forwarder::new(CancellationToken::new());
    let mut table = RoutingTable::new();
    table.insert(frontend, vec![]);
    forwarder.update(table);

    let mut stream = TcpStream::connect(frontend)
        .await
        .expect("connect to frontend");
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
        .await
        .expect("closed in time");
    assert!(
        matches!(read, Ok(0) | Err(_)),
        "no endpoints: closed without data, got {read:?}"
    );

    let a = backend("127.0.0.2", "a").await;
    let mut table = RoutingTable::new();
    table.insert(frontend, vec![a]);
    forwarder.update(table);
    assert_eq!(request(frontend).await, "a:ping");
    forwarder.shutdown().await;
}

#[tokio::test]
async fn removed_frontend_stops_listening() {
    let a = backend("127.0.0.2", "a").await;
    let frontend = free_addr("127.0.0.6");
    let mut forwarder = Forwarder::new(CancellationToken::new());
    let mut table = RoutingTable::new();
    table.insert(frontend, vec![a]);
    forwarder.update(table);
    assert_eq!(request(frontend).await, "a:ping");

    forwarder.update(RoutingTable::new());
    assert_eq!(forwarder.frontends().count(), 0);
    let refused = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if TcpStream::connect(frontend).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(
        refused.is_ok(),
        "the listener on {frontend} should be closed"
    );
    forwarder.shutdown().await;
}

#[tokio::test]
async fn two_forwarders_share_one_frontend() {
    let a = backend("127.0.0.2", "a").await;
    let frontend = free_addr("127.0.0.7");
    let mut first = Forwarder::new(CancellationToken::new());
    let mut second = Forwarder::new(CancellationToken::new());
    for forwarder in [&mut first, &mut second] {
        let mut table = RoutingTable::new();
        table.insert(frontend, vec![a]);
        forwarder.update(table);
    }
    for _ in 0..4 {
        assert_eq!(request(frontend).await, "a:ping");
    }
    first.shutdown().await;
    second.shutdown().await;
}

#[tokio::test]
async fn a_frontend_another_program_holds_is_served_on_a_fallback_port_until_it_is_free() {
    let a = backend("127.0.0.2", "a").await;
    // Another program (no SO_REUSEPORT) holds the Service's address.
    let frontend = free_addr("127.0.0.5");
    let blocker = StdTcpListener::bind(frontend).expect("bind the blocker");
    let mut forwarder = Forwarder::new(CancellationToken::new());
    let redirects = forwarder.redirects().clone();
    let mut states = forwarder.states();
    let mut table = RoutingTable::new();
    table.insert(frontend, vec![a]);
    forwarder.update(table);

    // Served on a fallback port of the same IP, which the redirects name, forwarding as usual.
    let fallback = match states.borrow_and_update().get(&frontend) {
        Some(ListenState::Fallback { on, error }) => {
            assert_eq!(error.kind, std::io::ErrorKind::AddrInUse, "{error:?}");
            *on
        }
        other => panic!("state of {frontend}: {other:?}"),
    };
    assert_eq!(fallback.ip(), frontend.ip());
    assert_ne!(fallback.port(), frontend.port());
    assert_eq!(redirects.get(frontend), Some(fallback));
    assert_eq!(request(fallback).await, "a:ping");

    // Once the address is free, the forwarder takes it back and the redirect goes.
    drop(blocker);
    tokio::time::timeout(Duration::from_secs(60), async {
        while states.borrow_and_update().get(&frontend) != Some(&ListenState::Listening) {
            states.changed().await.expect("states");
        }
    })
    .await
    .expect("the frontend is listened on again");
    assert_eq!(redirects.get(frontend), None);
    assert_eq!(request(frontend).await, "a:ping");
    forwarder.shutdown().await;
}

#[tokio::test]
async fn backends_are_reached_through_the_forwarders_dialer() {
    // The table names an address nobody listens on; the dialer knows how to reach it (as the node's pod
    // network reaches a pod of another host through its node's agent).
    let relay = backend("127.0.0.2", "relayed").await;
    let unreachable = free_addr("127.0.0.3");
    let frontend = free_addr("127.0.0.4");
    let dialer = herd_proxy::Dialer::new(move |backend| {
        Box::pin(async move {
            assert_eq!(
                backend, unreachable,
                "the dialer is asked for the table's backend"
            );
            let stream = TcpStream::connect(relay).await?;
            Ok(Box::new(stream) as herd_proxy::BoxConnection)
        })
    });
    let mut forwarder = Forwarder::new(CancellationToken::new()).with_dialer(dialer);
    let mut table = RoutingTable::new();
    table.insert(frontend, vec![unreachable]);
    forwarder.update(table);
    assert_eq!(request(frontend).await, "relayed:ping");
    forwarder.shutdown().await;
}

/// A TCP backend that sends back everything it receives until the client closes.
async fn echo_backend(ip: &str) -> SocketAddr {
    let listener = TcpListener::bind((ip, 0)).await.expect("bind backend");
    let addr = listener.local_addr().expect("backend address");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut read, mut write) = stream.split();
                let _ = tokio::io::copy(&mut read, &mut write).await;
                let _ = write.shutdown().await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn bulk_data_both_ways_arrives_whole_and_in_order() {
    // Large enough that both directions fill their buffers and go through splice(2).
    let echo = echo_backend("127.0.0.2").await;
    let frontend = free_addr("127.0.0.10");
    let mut forwarder = Forwarder::new(CancellationToken::new());
    let mut table = RoutingTable::new();
    table.insert(frontend, vec![echo]);
    forwarder.update(table);
    let data: Vec<u8> = (0..8 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let stream = TcpStream::connect(frontend).await.expect("connect");
    let (mut read, mut write) = stream.into_split();
    let sent = data.clone();
    let writer = tokio::spawn(async move {
        write.write_all(&sent).await.expect("send");
        write.shutdown().await.expect("half-close");
    });
    let mut back = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), read.read_to_end(&mut back))
        .await
        .expect("echoed in time")
        .expect("read echo");
    writer.await.expect("writer");
    assert_eq!(back.len(), data.len());
    assert!(back == data, "the echo differs from what was sent");
    forwarder.shutdown().await;
}

/// A UDP backend that answers every datagram with `name` followed by it.
async fn udp_backend(ip: &str, name: &'static str) -> SocketAddr {
    let socket = tokio::net::UdpSocket::bind((ip, 0))
        .await
        .expect("bind UDP backend");
    let addr = socket.local_addr().expect("backend address");
    tokio::spawn(async move {
        let mut buf = [0u8; 1500];
        while let Ok((n, from)) = socket.recv_from(&mut buf).await {
            let mut reply = name.as_bytes().to_vec();
            reply.extend_from_slice(&buf[..n]);
            let _ = socket.send_to(&reply, from).await;
        }
    });
    addr
}

/// Sends `payload` from `client` to `frontend` until an answer comes (the frontend may bind a
/// moment later); returns it and the address it came from.
async fn udp_exchange(
    client: &tokio::net::UdpSocket,
    frontend: SocketAddr,
    payload: &[u8],
) -> (String, SocketAddr) {
    let mut buf = [0u8; 1500];
    for _ in 0..50 {
        client.send_to(payload, frontend).await.expect("send");
        if let Ok(Ok((n, from))) =
            tokio::time::timeout(Duration::from_millis(200), client.recv_from(&mut buf)).await
        {
            return (String::from_utf8_lossy(&buf[..n]).into_owned(), from);
        }
    }
    panic!("no answer from {frontend}");
}

#[tokio::test]
async fn udp_flows_keep_their_backend_and_answer_from_the_frontend() {
    use herd_proxy::Protocol;
    let a = udp_backend("127.0.0.2", "a").await;
    let b = udp_backend("127.0.0.3", "b").await;
    let frontend = {
        let probe = std::net::UdpSocket::bind("127.0.0.11:0").expect("free UDP port");
        probe.local_addr().expect("address")
    };
    let mut forwarder = Forwarder::new(CancellationToken::new());
    let mut table = RoutingTable::new();
    table.insert_route(Protocol::Udp, frontend, vec![a, b], None, None);
    forwarder.update(table);
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..2 {
        let client = tokio::net::UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("client");
        let (first, from) = udp_exchange(&client, frontend, b":1").await;
        assert_eq!(from, frontend, "answers come from the Service's address");
        let backend = first.chars().next().expect("a name");
        // The flow keeps its backend.
        for i in 2..5 {
            let (reply, _) = udp_exchange(&client, frontend, format!(":{i}").as_bytes()).await;
            assert_eq!(reply, format!("{backend}:{i}"));
        }
        seen.insert(backend);
    }
    assert_eq!(seen.len(), 2, "two flows go to the two backends in turn");
    forwarder.shutdown().await;
}

#[tokio::test]
async fn a_node_port_another_socket_holds_is_not_shared() {
    use herd_proxy::NodeInfo;
    // Another program holds the port, even with SO_REUSEPORT (as another cluster's proxy would).
    let held =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    held.set_reuse_port(true).expect("reuse port");
    let port = free_addr("127.0.0.12");
    held.bind(&port.into()).expect("bind");
    held.listen(8).expect("listen");
    let svc: k8s_openapi::api::core::v1::Service = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"type": "NodePort", "clusterIP": "127.96.2.1",
            "ports": [{"port": 80, "nodePort": port.port()}]}
    }))
    .expect("service");
    let node = NodeInfo {
        name: "n".into(),
        addresses: vec![port.ip()],
    };
    let mut forwarder = Forwarder::new(CancellationToken::new());
    let mut states = forwarder.states();
    forwarder.update(RoutingTable::for_node(&node, [&svc], []));
    let state = states.borrow_and_update().get(&port).cloned();
    assert!(
        matches!(state, Some(ListenState::Failed { .. })),
        "the NodePort must not be bound beside another socket, nor fall back to another port: {state:?}"
    );
    forwarder.shutdown().await;
}
