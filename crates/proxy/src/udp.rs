//! UDP frontends: one socket per `clusterIP:port` (or NodePort) on one data-path worker. Each
//! client address is a flow with a connected socket of its own to the backend the [`Balancer`]
//! picked for its first datagram; the backend's datagrams on that socket go back to the client
//! from the frontend's address. A flow whose backend stops serving is picked again at its next
//! datagram (kube-proxy clears such conntrack entries), and an idle flow is forgotten after
//! [`UNREPLIED_TIMEOUT`] if its backend never answered, [`REPLIED_TIMEOUT`] if it did: the
//! Linux conntrack defaults kube-proxy leaves in place (`nf_conntrack_udp_timeout` and
//! `nf_conntrack_udp_timeout_stream`).
//!
//! Backends on other hosts are sent to directly: the pod tunnel carries TCP only.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use socket2::Type;
use tokio::net::UdpSocket;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::datapath::{Context, Workers, worker_for};
use crate::forwarder::{BIND_RETRY_MAX, BIND_RETRY_MIN, bind_socket};
use crate::routes::Protocol;

/// How long a flow whose backend never answered lives after its last datagram.
pub const UNREPLIED_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a flow whose backend answered lives after its last datagram.
pub const REPLIED_TIMEOUT: Duration = Duration::from_secs(120);
/// The largest datagram.
const DATAGRAM: usize = 65_536;
/// Flows of one frontend at most (kube-proxy leaves the bound to conntrack's table); a datagram that
/// would open one more is dropped.
pub const MAX_FLOWS: usize = 16_384;

thread_local! {
    /// The buffer every flow of this worker receives its backend's datagrams into (read and sent on
    /// without an await between), so that a flow costs no buffer of its own.
    static REPLY: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0; DATAGRAM]);
}

/// Binds UDP frontend `frontend` (retrying with back-off while it cannot) and relays its
/// datagrams on a worker until `stop`.
pub(crate) async fn serve(
    frontend: SocketAddr,
    exclusive: bool,
    stop: CancellationToken,
    context: Context,
    workers: Arc<Workers>,
) {
    let mut delay = BIND_RETRY_MIN;
    loop {
        match bind_socket(frontend, Type::DGRAM, exclusive) {
            Ok(socket) => {
                tracing::info!(%frontend, "listening (UDP)");
                let handles = workers.handles();
                let worker = &handles[worker_for(frontend, handles.len())];
                context.tasks.spawn_on(
                    relay(frontend, socket.into(), context.clone(), stop),
                    worker,
                );
                return;
            }
            Err(error) => {
                tracing::warn!(%frontend, %error, "cannot listen on the Service's UDP port; retrying in the background");
            }
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(BIND_RETRY_MAX);
    }
}

/// One client's flow.
#[derive(Clone)]
struct Flow {
    backend: SocketAddr,
    upstream: Arc<UdpSocket>,
    /// Milliseconds since the relay's start at the flow's last datagram, either way.
    last: Arc<AtomicU64>,
    replied: Arc<AtomicBool>,
}

type Flows = Arc<Mutex<HashMap<SocketAddr, Flow>>>;

/// Relays datagrams between the clients of `frontend` and their backends until `stop`.
async fn relay(
    frontend: SocketAddr,
    socket: std::net::UdpSocket,
    context: Context,
    stop: CancellationToken,
) {
    let socket = match UdpSocket::from_std(socket) {
        Ok(socket) => Arc::new(socket),
        Err(error) => {
            tracing::warn!(%frontend, %error, "cannot serve a UDP frontend on a proxy worker");
            return;
        }
    };
    let started = Instant::now();
    let flows: Flows = Arc::default();
    let mut buffer = vec![0u8; DATAGRAM];
    loop {
        let received = tokio::select! {
            () = stop.cancelled() => return,
            received = socket.recv_from(&mut buffer) => received,
        };
        let (n, client) = match received {
            Ok(received) => received,
            Err(error) => {
                tracing::debug!(%frontend, %error, "receiving a datagram");
                continue;
            }
        };
        let known = flows.lock().ok().and_then(|f| f.get(&client).cloned());
        let flow = match known.filter(|flow| {
            context
                .balancer
                .serves(Protocol::Udp, frontend, flow.backend)
        }) {
            Some(flow) => flow,
            None => {
                if flows.lock().is_ok_and(|f| f.len() >= MAX_FLOWS) {
                    tracing::debug!(%frontend, %client, "too many UDP flows, dropping the datagram");
                    continue;
                }
                let Some(backend) = context
                    .balancer
                    .pick_for(Protocol::Udp, frontend, client.ip())
                else {
                    no_backend(frontend, client);
                    continue;
                };
                let flow = match open_flow(frontend, backend).await {
                    Ok(upstream) => Flow {
                        backend,
                        upstream: Arc::new(upstream),
                        last: Arc::default(),
                        replied: Arc::default(),
                    },
                    Err(error) => {
                        tracing::debug!(%frontend, %backend, %error, "cannot open a UDP flow");
                        continue;
                    }
                };
                if let Ok(mut flows) = flows.lock() {
                    flows.insert(client, flow.clone());
                }
                context.tasks.spawn(replies(
                    client,
                    flow.clone(),
                    socket.clone(),
                    flows.clone(),
                    started,
                    stop.clone(),
                ));
                flow
            }
        };
        flow.last.store(millis_since(started), Ordering::Relaxed);
        if let Err(error) = flow.upstream.try_send(&buffer[..n]) {
            // A full socket buffer drops the datagram, as the network may.
            tracing::debug!(%frontend, backend = %flow.backend, %error, "forwarding a datagram");
        }
    }
}

/// The one place where a datagram finds no usable backend: it is dropped, as kube-proxy's rules
/// reject it.
fn no_backend(frontend: SocketAddr, client: SocketAddr) {
    tracing::debug!(%frontend, %client, "no endpoints, dropping the datagram");
}

/// A socket connected to `backend`, on the frontend's IP (a port the kernel picks): a guest answers the
/// address a datagram came from, and one from `localhost` would be its own pod's (its `localhost` is
/// its pod IP), so a frontend on `127.0.0.1` (a NodePort of `herd up`) sends from `127.0.0.2`.
async fn open_flow(frontend: SocketAddr, backend: SocketAddr) -> io::Result<UdpSocket> {
    let source: IpAddr = match frontend.ip() {
        IpAddr::V4(Ipv4Addr::LOCALHOST) => Ipv4Addr::new(127, 0, 0, 2).into(),
        IpAddr::V6(Ipv6Addr::LOCALHOST) => Ipv6Addr::UNSPECIFIED.into(),
        ip if ip.is_unspecified() || ip.is_ipv4() != backend.is_ipv4() => match backend {
            SocketAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
            SocketAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
        },
        ip => ip,
    };
    let upstream = UdpSocket::bind(SocketAddr::new(source, 0)).await?;
    upstream.connect(backend).await?;
    Ok(upstream)
}

/// Sends the backend's datagrams of `flow` to `client` from the frontend's socket until the flow
/// has been idle for its timeout, then forgets it.
async fn replies(
    client: SocketAddr,
    flow: Flow,
    socket: Arc<UdpSocket>,
    flows: Flows,
    started: Instant,
    stop: CancellationToken,
) {
    loop {
        let timeout = if flow.replied.load(Ordering::Relaxed) {
            REPLIED_TIMEOUT
        } else {
            UNREPLIED_TIMEOUT
        };
        let last = Duration::from_millis(flow.last.load(Ordering::Relaxed));
        let idle_until = started + last + timeout;
        if Instant::now() >= idle_until {
            break;
        }
        tokio::select! {
            () = stop.cancelled() => break,
            () = tokio::time::sleep_until(idle_until) => {}
            readable = flow.upstream.readable() => match readable {
                Ok(()) => return_datagrams(client, &flow, &socket, started),
                Err(error) => tracing::debug!(backend = %flow.backend, %error, "UDP backend"),
            },
        }
    }
    if let Ok(mut flows) = flows.lock()
        && flows
            .get(&client)
            .is_some_and(|f| Arc::ptr_eq(&f.upstream, &flow.upstream))
    {
        flows.remove(&client);
    }
}

/// Sends every datagram waiting on `flow`'s socket to `client` from the frontend's socket.
fn return_datagrams(client: SocketAddr, flow: &Flow, socket: &UdpSocket, started: Instant) {
    REPLY.with_borrow_mut(|buffer| {
        loop {
            match flow.upstream.try_recv(buffer) {
                Ok(n) => {
                    flow.replied.store(true, Ordering::Relaxed);
                    flow.last.store(millis_since(started), Ordering::Relaxed);
                    if let Err(error) = socket.try_send_to(&buffer[..n], client) {
                        tracing::debug!(%client, %error, "returning a datagram");
                    }
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => return,
                // An ICMP port unreachable from the backend, reported on the next receive.
                Err(error) => {
                    tracing::debug!(backend = %flow.backend, %error, "UDP backend");
                    return;
                }
            }
        }
    });
}

fn millis_since(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
}
