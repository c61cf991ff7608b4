//! Reaching any pod of the cluster from this node: a pod IP of a node on this host (this node's own, or
//! another node's sharing this host's loopback) is connected to directly; a pod IP of a node on another
//! host goes through that node's agent ([`crate::tunnel`]).
//!
//! The owner of a pod IP is the Node whose `spec.podCIDR` contains it; it is on this host when it is this
//! node, or its InternalIP is a loopback address or an address of this host. The Nodes are followed with a
//! watch ([`PodNetwork::start`]); [`route`] is the pure decision. The proxy connects its Service backends
//! through [`PodNetwork::connect`]; a guest's own connection to a remote pod IP is sent
//! ([`PodNetwork::redirect`], the node's `ConnectRedirect`) to a local listener that tunnels it: bound on
//! the pod's own IP and port when this host can (loopback addresses of another host's pods are free here),
//! else on a free port of `127.0.0.1`.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use ipnet::IpNet;
use k8s_openapi::api::core::v1::Node;
use kube::runtime::reflector::{self, Store, reflector};
use kube::runtime::{WatchStreamExt as _, watcher};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use crate::tunnel::{CONNECT_TIMEOUT, TunnelClient, TunnelStream};

/// How a connection to a pod IP travels from this node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// Straight to the address: a pod of this host, or an address of no node's pod CIDR.
    Direct,
    /// Through node `node`'s agent at its kubelet port `kubelet`.
    Tunnel { node: String, kubelet: SocketAddr },
}

/// The route to `target` from node `this_node`, given the cluster's `nodes` and which addresses belong to
/// this host (`is_local`; loopback addresses do: see [`is_host_address`]).
pub fn route<'a>(
    target: IpAddr,
    this_node: &str,
    nodes: impl IntoIterator<Item = &'a Node>,
    is_local: impl Fn(IpAddr) -> bool,
) -> Route {
    for node in nodes {
        let Some(spec) = &node.spec else { continue };
        let cidrs = spec
            .pod_cidrs
            .iter()
            .flatten()
            .chain(spec.pod_cidr.iter())
            .filter_map(|c| c.parse::<IpNet>().ok());
        let owns = cidrs.into_iter().any(|cidr| cidr.contains(&target));
        if !owns {
            continue;
        }
        let name = node.metadata.name.as_deref().unwrap_or_default();
        if name == this_node {
            return Route::Direct;
        }
        let status = node.status.as_ref();
        let address = status
            .and_then(|s| s.addresses.as_ref())
            .and_then(|addresses| addresses.iter().find(|a| a.type_ == "InternalIP"))
            .and_then(|a| a.address.parse::<IpAddr>().ok());
        let port = status
            .and_then(|s| s.daemon_endpoints.as_ref())
            .and_then(|d| d.kubelet_endpoint.as_ref())
            .and_then(|e| u16::try_from(e.port).ok())
            .filter(|p| *p != 0);
        return match (address, port) {
            (Some(address), _) if is_local(address) => Route::Direct,
            (Some(address), Some(port)) => Route::Tunnel {
                node: name.to_owned(),
                kubelet: SocketAddr::new(address, port),
            },
            // A node that has not reported where it is: nothing better than trying directly.
            _ => Route::Direct,
        };
    }
    Route::Direct
}

/// Whether `ip` is an address of this host: a loopback address, or one a socket can bind.
#[must_use]
pub fn is_host_address(ip: IpAddr) -> bool {
    ip.is_loopback() || std::net::UdpSocket::bind(SocketAddr::new(ip, 0)).is_ok()
}

/// A connection to a pod, direct or tunnelled.
#[derive(Debug)]
pub enum PodConnection {
    Direct(TcpStream),
    Tunnel(TunnelStream),
}

impl AsyncRead for PodConnection {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Direct(s) => Pin::new(s).poll_read(cx, buf),
            Self::Tunnel(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for PodConnection {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Direct(s) => Pin::new(s).poll_write(cx, buf),
            Self::Tunnel(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Direct(s) => Pin::new(s).poll_flush(cx),
            Self::Tunnel(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Direct(s) => Pin::new(s).poll_shutdown(cx),
            Self::Tunnel(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// A guest's way to a remote pod: a local listener tunnelling to it.
struct Forward {
    local: SocketAddr,
    last_used: Instant,
    stop: CancellationToken,
}

/// How long a guest's tunnel listener stays without new connections.
const FORWARD_IDLE: Duration = Duration::from_secs(5 * 60);
/// How long a first connection waits for the Node watch's first list.
const NODES_READY_WAIT: Duration = Duration::from_secs(5);

/// The cluster's pod network as this node reaches it. Cheap to clone.
#[derive(Clone)]
pub struct PodNetwork {
    inner: Arc<Inner>,
}

struct Inner {
    node_name: String,
    nodes: Store<Node>,
    tunnel: TunnelClient,
    is_local: Box<dyn Fn(IpAddr) -> bool + Send + Sync>,
    local: Mutex<HashMap<IpAddr, bool>>,
    tunnels: AtomicU64,
    forwards: Mutex<HashMap<SocketAddr, Forward>>,
    shutdown: CancellationToken,
}

impl std::fmt::Debug for PodNetwork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PodNetwork")
            .field("node", &self.inner.node_name)
            .finish_non_exhaustive()
    }
}

impl PodNetwork {
    /// Follows the cluster's Nodes through `client` (a watch, retried with back-off) until `shutdown`; node
    /// `node_name` is this one, `tunnel` opens tunnels to the others.
    pub fn start(
        client: kube::Client,
        node_name: impl Into<String>,
        tunnel: TunnelClient,
        shutdown: CancellationToken,
    ) -> Self {
        Self::start_with_host(client, node_name, tunnel, is_host_address, shutdown)
    }

    /// [`PodNetwork::start`] with `is_local` telling which addresses are this host's (asked once per
    /// address): several nodes of one host can play separate hosts with it.
    pub fn start_with_host(
        client: kube::Client,
        node_name: impl Into<String>,
        tunnel: TunnelClient,
        is_local: impl Fn(IpAddr) -> bool + Send + Sync + 'static,
        shutdown: CancellationToken,
    ) -> Self {
        let (nodes, writer) = reflector::store::<Node>();
        let events = reflector(
            writer,
            watcher(kube::Api::<Node>::all(client), watcher::Config::default()),
        )
        .default_backoff();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            let mut events = std::pin::pin!(events);
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    event = events.next() => match event {
                        None => return,
                        Some(Err(error)) => tracing::debug!(%error, "watching Nodes failed, retrying"),
                        Some(Ok(_)) => {}
                    },
                }
            }
        });
        let network = Self {
            inner: Arc::new(Inner {
                node_name: node_name.into(),
                nodes,
                tunnel,
                is_local: Box::new(is_local),
                local: Mutex::default(),
                tunnels: AtomicU64::new(0),
                forwards: Mutex::default(),
                shutdown: shutdown.clone(),
            }),
        };
        tokio::spawn(network.clone().sweep_forwards(shutdown));
        network
    }

    /// The route to `target` now.
    #[must_use]
    pub fn route(&self, target: IpAddr) -> Route {
        let nodes = self.inner.nodes.state();
        route(
            target,
            &self.inner.node_name,
            nodes.iter().map(|n| &**n),
            |ip| self.is_local(ip),
        )
    }

    fn is_local(&self, ip: IpAddr) -> bool {
        let mut known = self
            .inner
            .local
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *known.entry(ip).or_insert_with(|| (self.inner.is_local)(ip))
    }

    /// How many tunnels this node has opened to pods of other hosts.
    #[must_use]
    pub fn tunnels_opened(&self) -> u64 {
        self.inner.tunnels.load(Ordering::Relaxed)
    }

    /// A connection to `target`, direct or through its node's agent (see [`route`]).
    ///
    /// # Errors
    /// The direct connect's error, or the tunnel's ([`crate::tunnel::TunnelError`] as an `io::Error`).
    pub async fn connect(&self, target: SocketAddr) -> io::Result<PodConnection> {
        // Before the watch's first list every address would look direct.
        let _ = tokio::time::timeout(NODES_READY_WAIT, self.inner.nodes.wait_until_ready()).await;
        match self.route(target.ip()) {
            Route::Direct => {
                match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(target)).await {
                    Ok(stream) => stream.map(PodConnection::Direct),
                    Err(_) => Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("connecting to {target} took over {CONNECT_TIMEOUT:?}"),
                    )),
                }
            }
            Route::Tunnel { node, kubelet } => {
                let stream = self.inner.tunnel.dial(&node, kubelet, target).await?;
                self.inner.tunnels.fetch_add(1, Ordering::Relaxed);
                Ok(PodConnection::Tunnel(stream))
            }
        }
    }

    /// For a guest's connection to `target`: where to connect instead when `target` is a pod of another
    /// host (a local listener that tunnels to it), `None` when it is reached directly.
    #[must_use]
    pub fn redirect(&self, target: SocketAddr) -> Option<SocketAddr> {
        if !matches!(self.route(target.ip()), Route::Tunnel { .. }) {
            return None;
        }
        let mut forwards = self
            .inner
            .forwards
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(forward) = forwards.get_mut(&target) {
            forward.last_used = Instant::now();
            return Some(forward.local);
        }
        let runtime = tokio::runtime::Handle::try_current().ok()?;
        let listener = [target, SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0)]
            .into_iter()
            .find_map(|addr| {
                let listener = std::net::TcpListener::bind(addr).ok()?;
                listener.set_nonblocking(true).ok()?;
                Some(listener)
            })?;
        let local = listener.local_addr().ok()?;
        let listener = {
            let _entered = runtime.enter();
            tokio::net::TcpListener::from_std(listener).ok()?
        };
        let stop = self.inner.shutdown.child_token();
        tracing::debug!(%target, %local, "guests reach this remote pod through a tunnel listener");
        runtime.spawn(self.clone().forward(listener, target, stop.clone()));
        forwards.insert(
            target,
            Forward {
                local,
                last_used: Instant::now(),
                stop,
            },
        );
        Some(local)
    }

    async fn forward(
        self,
        listener: tokio::net::TcpListener,
        target: SocketAddr,
        stop: CancellationToken,
    ) {
        loop {
            let accepted = tokio::select! {
                () = stop.cancelled() => return,
                accepted = listener.accept() => accepted,
            };
            let Ok((mut guest, _)) = accepted else {
                continue;
            };
            let (network, stop) = (self.clone(), stop.clone());
            tokio::spawn(async move {
                let mut pod = match network.connect(target).await {
                    Ok(pod) => pod,
                    Err(error) => {
                        tracing::debug!(%target, %error, "a guest's connection to a remote pod failed");
                        return;
                    }
                };
                tokio::select! {
                    () = stop.cancelled() => {}
                    _ = tokio::io::copy_bidirectional(&mut guest, &mut pod) => {}
                }
            });
        }
    }

    /// Closes the guests' tunnel listeners no connect asked for in [`FORWARD_IDLE`] (a connection already
    /// made lives on until shutdown).
    async fn sweep_forwards(self, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(FORWARD_IDLE / 5) => {}
            }
            let mut forwards = self
                .inner
                .forwards
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            forwards.retain(|_, forward| {
                let keep = forward.last_used.elapsed() < FORWARD_IDLE;
                if !keep {
                    // The listener closes; the connections it made run on.
                    forward.stop.cancel();
                }
                keep
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, cidr: &str, address: &str, port: i32) -> Node {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name},
            "spec": {"podCIDR": cidr},
            "status": {
                "addresses": [{"type": "Hostname", "address": name},
                              {"type": "InternalIP", "address": address}],
                "daemonEndpoints": {"kubeletEndpoint": {"Port": port}},
            },
        }))
        .expect("node")
    }

    #[test]
    fn pods_of_other_hosts_go_through_their_node_and_this_hosts_pods_directly() {
        let nodes = [
            node("a", "127.64.0.0/18", "10.0.0.1", 10250),
            node("b", "127.64.64.0/18", "10.0.0.2", 10251),
            node("c", "127.64.128.0/18", "127.0.0.1", 10252),
            node("d", "127.64.192.0/18", "10.0.0.4", 0),
        ];
        let this_host =
            |ip: IpAddr| ip.is_loopback() || ip == "10.0.0.1".parse::<IpAddr>().expect("ip");
        let from =
            |this: &str, target: &str| route(target.parse().expect("ip"), this, &nodes, this_host);
        // B's pod, from A: through B's kubelet port.
        assert_eq!(
            from("a", "127.64.64.7"),
            Route::Tunnel {
                node: "b".into(),
                kubelet: "10.0.0.2:10251".parse().expect("addr")
            }
        );
        // A's own pod, a pod of a node on this host's loopback, an address of no pod CIDR: directly.
        assert_eq!(from("a", "127.64.0.7"), Route::Direct);
        assert_eq!(from("a", "127.64.128.7"), Route::Direct);
        assert_eq!(from("a", "127.10.0.1"), Route::Direct);
        // Another node of this host (same address as A): directly.
        assert_eq!(from("x", "127.64.0.7"), Route::Direct);
        // A node without its kubelet port known yet: nothing to tunnel to.
        assert_eq!(from("a", "127.64.192.7"), Route::Direct);
        // From B, A's pods are remote.
        let other_host = |ip: IpAddr| ip.is_loopback();
        assert_eq!(
            route("127.64.0.7".parse().expect("ip"), "b", &nodes, other_host),
            Route::Tunnel {
                node: "a".into(),
                kubelet: "10.0.0.1:10250".parse().expect("addr")
            }
        );
    }

    #[test]
    fn host_addresses_are_the_ones_that_bind() {
        assert!(is_host_address("127.0.0.1".parse().expect("ip")));
        assert!(is_host_address("127.99.1.2".parse().expect("ip")));
        // TEST-NET-3, never configured on a test machine.
        assert!(!is_host_address("203.0.113.77".parse().expect("ip")));
    }
}
