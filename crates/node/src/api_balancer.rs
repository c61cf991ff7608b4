//! The node's local API load balancer (k3s's agent load balancer): a TCP listener on loopback that
//! forwards each connection to a live API server, TLS passed through untouched, so client certificates and
//! tokens authenticate end to end and the API server's certificate (which covers `127.0.0.1` and
//! `localhost`) is what the client verifies.
//!
//! Which server a connection goes to: the one the last connection used while it answers; when a connect
//! is refused or takes longer than [`CONNECT_TIMEOUT`], that server is marked failed (its open connections
//! are cut, as their peer is likely gone) and the next is tried — healthy ones first, in list order, then
//! the failed ones as a last resort. Failed servers are checked in the background every
//! [`HEALTH_CHECK_INTERVAL`] (a TCP connect) and come back when they answer. Connections to API servers are
//! kept alive with TCP probes, so one to a host that vanished without closing it ends in about 30 s.
//!
//! The list is the `--server` flags plus the addresses of the `default/kubernetes` Endpoints (every live
//! API server's advertise address, see [`ApiBalancer::follow_endpoints`]): a server the Endpoints stop
//! naming leaves the list unless a flag names it. The node agent's clients, its proxy and its watches
//! connect here, so when an API server dies the watches break, reconnect through the balancer to a
//! survivor, and the node carries on.

use std::collections::BTreeSet;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::Endpoints;
use kube::runtime::{WatchStreamExt as _, watcher};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long a connect to an API server may take before the next is tried (k3s's dialer uses 3 s too).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How often failed API servers are checked again.
pub const HEALTH_CHECK_INTERVAL: Duration = Duration::from_secs(2);
/// How long a connection to an API server may be idle before TCP keepalive probes start.
pub const KEEPALIVE_TIME: Duration = Duration::from_secs(15);
/// The time between keepalive probes; three unanswered ones end the connection.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);
/// Where `herd node` listens by default (k3s's agent uses the same port).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:6444";

/// An API server address as `host:port` from a URL (`https://HOST:PORT`, port 443 when not given) or a bare
/// `host:port`.
///
/// # Errors
/// A text that names no host, or a scheme other than `https`.
pub fn server_address(url: &str) -> Result<String, String> {
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (Some(scheme), rest),
        None => (None, url),
    };
    if let Some(scheme) = scheme
        && !scheme.eq_ignore_ascii_case("https")
    {
        return Err(format!(
            "API server {url:?}: only https:// servers are served"
        ));
    }
    let authority = rest.split('/').next().unwrap_or_default();
    let authority = authority.rsplit('@').next().unwrap_or_default();
    if authority.is_empty() {
        return Err(format!("API server {url:?}: no host"));
    }
    // `[v6]:port`, `[v6]`, `host:port`, `host`.
    let has_port = match authority.rfind(']') {
        Some(close) => authority[close..].contains(':'),
        None => authority.contains(':'),
    };
    if has_port {
        let (host, port) = authority.rsplit_once(':').unwrap_or((authority, ""));
        if host.is_empty() || port.parse::<u16>().is_err() {
            return Err(format!("API server {url:?}: bad host or port"));
        }
        Ok(authority.to_owned())
    } else {
        Ok(format!("{authority}:443"))
    }
}

/// The API servers the `default/kubernetes` Endpoints name, as `ip:port` (each subset's addresses with
/// its `https` port, or its only port), sorted, without duplicates.
#[must_use]
pub fn endpoints_servers(endpoints: &Endpoints) -> BTreeSet<String> {
    let mut servers = BTreeSet::new();
    for subset in endpoints.subsets.iter().flatten() {
        let ports = subset.ports.as_deref().unwrap_or_default();
        let port = ports
            .iter()
            .find(|p| p.name.as_deref() == Some("https"))
            .or_else(|| ports.first().filter(|_| ports.len() == 1))
            .and_then(|p| u16::try_from(p.port).ok());
        let Some(port) = port else { continue };
        for address in subset.addresses.iter().flatten() {
            if let Ok(ip) = address.ip.parse::<std::net::IpAddr>() {
                servers.insert(SocketAddr::new(ip, port).to_string());
            }
        }
    }
    servers
}

/// One API server of the list.
#[derive(Debug)]
struct Upstream {
    /// `host:port`.
    addr: String,
    /// Named by a `--server` flag: stays however the Endpoints change.
    pinned: bool,
    /// Named by the `kubernetes` Endpoints.
    advertised: bool,
    healthy: bool,
    /// Cancelled when the server is found failed: its open connections are cut.
    connections: CancellationToken,
}

/// The server list and the preferred server: pure state, no I/O.
#[derive(Debug, Default)]
struct Pool {
    servers: Vec<Upstream>,
    /// The server the last connection went to.
    current: Option<String>,
    /// The balancer's own address, never a server (a kubeconfig pointing at the balancer would loop).
    own: Option<String>,
}

impl Pool {
    fn add(&mut self, addr: &str, pinned: bool, advertised: bool) {
        if self.own.as_deref() == Some(addr) {
            tracing::warn!(server = %addr, "the API load balancer's own address is not an API server; skipped");
            return;
        }
        match self.servers.iter_mut().find(|s| s.addr == addr) {
            Some(known) => {
                known.pinned |= pinned;
                known.advertised |= advertised;
            }
            None => self.servers.push(Upstream {
                addr: addr.to_owned(),
                pinned,
                advertised,
                healthy: true,
                connections: CancellationToken::new(),
            }),
        }
    }

    /// The order to try servers in: the current one, the other healthy ones, then the failed ones.
    fn order(&self) -> Vec<String> {
        let current = self
            .servers
            .iter()
            .filter(|s| Some(&s.addr) == self.current.as_ref() && s.healthy);
        let healthy = self
            .servers
            .iter()
            .filter(|s| s.healthy && Some(&s.addr) != self.current.as_ref());
        let failed = self.servers.iter().filter(|s| !s.healthy);
        current
            .chain(healthy)
            .chain(failed)
            .map(|s| s.addr.clone())
            .collect()
    }

    /// A connection to `addr` succeeded: it is the preferred server, and healthy. The token that cuts the
    /// connection when the server is found failed (`None` if it left the list meanwhile).
    fn used(&mut self, addr: &str) -> Option<CancellationToken> {
        let server = self.servers.iter_mut().find(|s| s.addr == addr)?;
        if !server.healthy {
            tracing::info!(server = %addr, "API server answers again");
        }
        server.healthy = true;
        let cut = server.connections.clone();
        if self.current.as_deref() != Some(addr) {
            tracing::info!(server = %addr, "API load balancer: connecting to this API server");
            self.current = Some(addr.to_owned());
        }
        Some(cut)
    }

    /// A connect to `addr` failed: it is not healthy until a check says so, and its connections are cut.
    fn failed(&mut self, addr: &str, error: &str) {
        if let Some(server) = self.servers.iter_mut().find(|s| s.addr == addr) {
            if server.healthy {
                tracing::warn!(server = %addr, %error, "API server failed; trying the next one");
            }
            server.healthy = false;
            server.connections.cancel();
            server.connections = CancellationToken::new();
        }
        if self.current.as_deref() == Some(addr) {
            self.current = None;
        }
    }

    /// A health check of `addr` succeeded.
    fn recovered(&mut self, addr: &str) {
        if let Some(server) = self.servers.iter_mut().find(|s| s.addr == addr)
            && !server.healthy
        {
            tracing::info!(server = %addr, "API server answers again");
            server.healthy = true;
        }
    }

    /// The Endpoints now name `advertised`: new ones join the list, ones no longer named leave it unless
    /// pinned. An empty set changes nothing (an API server that lists none is not a reason to forget all).
    fn set_advertised(&mut self, advertised: &BTreeSet<String>) {
        if advertised.is_empty() {
            return;
        }
        for server in &mut self.servers {
            server.advertised = advertised.contains(&server.addr);
        }
        self.servers.retain(|s| {
            let keep = s.pinned || s.advertised;
            if !keep {
                tracing::info!(server = %s.addr, "API server no longer in the kubernetes Endpoints");
                s.connections.cancel();
            }
            keep
        });
        for addr in advertised {
            if !self.servers.iter().any(|s| &s.addr == addr) {
                tracing::info!(server = %addr, "API server learned from the kubernetes Endpoints");
                self.add(addr, false, true);
            }
        }
        if let Some(current) = &self.current
            && !self.servers.iter().any(|s| &s.addr == current)
        {
            self.current = None;
        }
    }

    fn failed_servers(&self) -> Vec<String> {
        self.servers
            .iter()
            .filter(|s| !s.healthy)
            .map(|s| s.addr.clone())
            .collect()
    }
}

/// A running API load balancer: cheap to clone, every clone sees the same list.
#[derive(Clone)]
pub struct ApiBalancer {
    local_addr: SocketAddr,
    pool: Arc<Mutex<Pool>>,
}

impl std::fmt::Debug for ApiBalancer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiBalancer")
            .field("local_addr", &self.local_addr)
            .field("servers", &self.servers())
            .finish()
    }
}

impl ApiBalancer {
    /// Listens on `listen` (port 0 picks a free port) and serves connections until `shutdown`, forwarding
    /// them to `servers` (`host:port`, see [`server_address`]), each pinned in the list.
    ///
    /// # Errors
    /// The listener cannot be bound.
    pub async fn start(
        listen: SocketAddr,
        servers: &[String],
        shutdown: CancellationToken,
    ) -> io::Result<Self> {
        let listener = TcpListener::bind(listen).await?;
        let local_addr = listener.local_addr()?;
        let mut pool = Pool {
            own: Some(local_addr.to_string()),
            ..Pool::default()
        };
        for server in servers {
            pool.add(server, true, false);
        }
        let balancer = Self {
            local_addr,
            pool: Arc::new(Mutex::new(pool)),
        };
        tracing::info!(listen = %local_addr, servers = ?servers, "API load balancer listening");
        tokio::spawn(balancer.clone().serve(listener, shutdown.clone()));
        tokio::spawn(balancer.clone().health_checks(shutdown));
        Ok(balancer)
    }

    /// Where it listens.
    #[must_use]
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The URL clients use: `https://<listen address>`.
    #[must_use]
    pub fn url(&self) -> String {
        format!("https://{}", self.local_addr)
    }

    /// The API servers it knows, as `(host:port, healthy)`, in list order.
    #[must_use]
    pub fn servers(&self) -> Vec<(String, bool)> {
        self.with_pool(|pool| {
            pool.servers
                .iter()
                .map(|s| (s.addr.clone(), s.healthy))
                .collect()
        })
    }

    /// The server the last connection went to, if it has not failed since.
    #[must_use]
    pub fn current(&self) -> Option<String> {
        self.with_pool(|pool| pool.current.clone())
    }

    fn with_pool<T>(&self, f: impl FnOnce(&mut Pool) -> T) -> T {
        let mut pool = self
            .pool
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut pool)
    }

    /// Keeps the list current with the `default/kubernetes` Endpoints, watched through `client` (which
    /// should connect through this balancer), until `shutdown`. Watch errors are retried with back-off.
    pub async fn follow_endpoints(self, client: kube::Client, shutdown: CancellationToken) {
        let api: kube::Api<Endpoints> = kube::Api::namespaced(client, "default");
        let config = watcher::Config::default().fields("metadata.name=kubernetes");
        let mut events = std::pin::pin!(watcher(api, config).default_backoff().applied_objects());
        loop {
            let event = tokio::select! {
                () = shutdown.cancelled() => return,
                event = events.next() => event,
            };
            match event {
                None => return,
                Some(Ok(endpoints)) => {
                    let advertised = endpoints_servers(&endpoints);
                    self.with_pool(|pool| pool.set_advertised(&advertised));
                }
                Some(Err(error)) => {
                    tracing::debug!(%error, "watching the kubernetes Endpoints failed, retrying");
                }
            }
        }
    }

    async fn serve(self, listener: TcpListener, shutdown: CancellationToken) {
        let tasks = TaskTracker::new();
        loop {
            let accepted = tokio::select! {
                () = shutdown.cancelled() => break,
                accepted = listener.accept() => accepted,
            };
            let (client, _) = match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "API load balancer: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let (balancer, stop) = (self.clone(), shutdown.clone());
            tasks.spawn(async move {
                tokio::select! {
                    () = stop.cancelled() => {}
                    () = balancer.forward(client) => {}
                }
            });
        }
        tasks.close();
        tasks.wait().await;
    }

    /// Connects `client` to the first server that answers and copies bytes both ways until either side
    /// closes or the server is found failed.
    async fn forward(&self, mut client: TcpStream) {
        let _ = client.set_nodelay(true);
        for addr in self.with_pool(|pool| pool.order()) {
            let mut upstream = match connect(&addr).await {
                Ok(upstream) => upstream,
                Err(error) => {
                    self.with_pool(|pool| pool.failed(&addr, &error));
                    continue;
                }
            };
            // Taken now: a failure another connection found while this one connected is not this one's.
            let Some(cut) = self.with_pool(|pool| pool.used(&addr)) else {
                continue;
            };
            tokio::select! {
                () = cut.cancelled() => {}
                _ = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {}
            }
            return;
        }
        tracing::warn!("API load balancer: no API server answered; closing the connection");
    }

    async fn health_checks(self, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(HEALTH_CHECK_INTERVAL) => {}
            }
            let failed = self.with_pool(|pool| pool.failed_servers());
            let checks = failed.into_iter().map(|addr| async move {
                let answered = connect(&addr).await.is_ok();
                (addr, answered)
            });
            for (addr, answered) in futures::future::join_all(checks).await {
                if answered {
                    self.with_pool(|pool| pool.recovered(&addr));
                }
            }
        }
    }
}

/// A TCP connection to `addr` (`host:port`, names resolved now), or why not within [`CONNECT_TIMEOUT`].
/// Kept alive with TCP probes, so a connection to a server whose host vanished without closing it (a watch
/// would wait for minutes) ends within [`KEEPALIVE_TIME`] + 3 × [`KEEPALIVE_INTERVAL`].
async fn connect(addr: &str) -> Result<TcpStream, String> {
    match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
        Ok(Ok(stream)) => {
            let _ = stream.set_nodelay(true);
            let _ = keep_alive(&stream);
            Ok(stream)
        }
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err(format!("no answer within {CONNECT_TIMEOUT:?}")),
    }
}

/// Turns on TCP keepalive probes ([`KEEPALIVE_TIME`], [`KEEPALIVE_INTERVAL`], 3 retries).
pub(crate) fn keep_alive(stream: &TcpStream) -> io::Result<()> {
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(KEEPALIVE_TIME)
        .with_interval(KEEPALIVE_INTERVAL)
        .with_retries(3);
    socket2::SockRef::from(stream).set_tcp_keepalive(&keepalive)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn connections_to_api_servers_are_kept_alive() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let stream = connect(&addr).await.expect("connected");
        let socket = socket2::SockRef::from(&stream);
        assert!(socket.keepalive().expect("SO_KEEPALIVE"));
        assert_eq!(
            socket.tcp_keepalive_time().expect("TCP_KEEPIDLE"),
            KEEPALIVE_TIME
        );
        assert_eq!(
            socket.tcp_keepalive_interval().expect("TCP_KEEPINTVL"),
            KEEPALIVE_INTERVAL
        );
        assert_eq!(socket.tcp_keepalive_retries().expect("TCP_KEEPCNT"), 3);
    }
    use k8s_openapi::api::core::v1::{EndpointAddress, EndpointPort, EndpointSubset};

    #[test]
    fn server_addresses_from_urls() {
        assert_eq!(
            server_address("https://10.0.0.1:6443"),
            Ok("10.0.0.1:6443".into())
        );
        assert_eq!(
            server_address("https://api.example:6443/"),
            Ok("api.example:6443".into())
        );
        assert_eq!(
            server_address("https://api.example"),
            Ok("api.example:443".into())
        );
        assert_eq!(
            server_address("https://[::1]:6443"),
            Ok("[::1]:6443".into())
        );
        assert_eq!(server_address("[::1]"), Ok("[::1]:443".into()));
        assert!(server_address("http://10.0.0.1:6443").is_err());
        assert!(server_address("https://").is_err());
        assert!(server_address("https://host:port").is_err());
    }

    #[test]
    fn endpoints_name_every_api_server() {
        let subset = |ips: &[&str], ports: &[(&str, i32)]| EndpointSubset {
            addresses: Some(
                ips.iter()
                    .map(|ip| EndpointAddress {
                        ip: (*ip).into(),
                        ..EndpointAddress::default()
                    })
                    .collect(),
            ),
            ports: Some(
                ports
                    .iter()
                    .map(|(name, port)| EndpointPort {
                        name: Some((*name).into()),
                        port: *port,
                        ..EndpointPort::default()
                    })
                    .collect(),
            ),
            ..EndpointSubset::default()
        };
        let endpoints = Endpoints {
            subsets: Some(vec![
                subset(&["10.0.0.2", "10.0.0.1", "bad"], &[("https", 6443)]),
                subset(&["10.0.0.1"], &[("https", 6443)]),
                subset(&["10.0.0.3"], &[("other", 1), ("https", 7443)]),
                subset(&["10.0.0.4"], &[("a", 1), ("b", 2)]),
            ]),
            ..Endpoints::default()
        };
        assert_eq!(
            endpoints_servers(&endpoints)
                .into_iter()
                .collect::<Vec<_>>(),
            ["10.0.0.1:6443", "10.0.0.2:6443", "10.0.0.3:7443"]
        );
    }

    fn order(pool: &Pool) -> Vec<String> {
        pool.order()
    }

    #[test]
    fn prefers_the_last_server_then_healthy_ones_then_failed_ones() {
        let mut pool = Pool::default();
        for server in ["a:1", "b:1", "c:1"] {
            pool.add(server, true, false);
        }
        assert_eq!(order(&pool), ["a:1", "b:1", "c:1"]);
        let cut = pool.used("b:1").expect("known");
        assert_eq!(order(&pool), ["b:1", "a:1", "c:1"]);
        pool.failed("b:1", "refused");
        assert!(cut.is_cancelled(), "a failed server's connections are cut");
        assert!(
            !pool.used("b:1").expect("known").is_cancelled(),
            "new ones are not"
        );
        pool.failed("b:1", "refused");
        assert_eq!(order(&pool), ["a:1", "c:1", "b:1"]);
        pool.failed("a:1", "refused");
        assert_eq!(order(&pool), ["c:1", "a:1", "b:1"]);
        assert_eq!(pool.failed_servers(), ["a:1", "b:1"]);
        pool.recovered("b:1");
        assert_eq!(order(&pool), ["b:1", "c:1", "a:1"]);
    }

    #[test]
    fn the_balancer_is_never_its_own_server() {
        let mut pool = Pool {
            own: Some("127.0.0.1:6444".into()),
            ..Pool::default()
        };
        pool.add("127.0.0.1:6444", true, false);
        pool.add("10.0.0.1:6443", true, false);
        pool.set_advertised(&["127.0.0.1:6444".to_owned()].into());
        assert_eq!(order(&pool), ["10.0.0.1:6443"]);
    }

    #[test]
    fn the_endpoints_add_and_remove_servers_but_never_flagged_ones() {
        let mut pool = Pool::default();
        pool.add("a:1", true, false);
        let set = |names: &[&str]| names.iter().map(|n| (*n).to_owned()).collect();
        pool.set_advertised(&set(&["b:1", "c:1"]));
        assert_eq!(order(&pool), ["a:1", "b:1", "c:1"]);
        pool.used("c:1");
        pool.set_advertised(&set(&["a:1", "b:1"]));
        assert_eq!(order(&pool), ["a:1", "b:1"]);
        assert_eq!(
            pool.current, None,
            "a server that left is no longer preferred"
        );
        pool.set_advertised(&set(&[]));
        assert_eq!(
            order(&pool),
            ["a:1", "b:1"],
            "an empty list forgets nothing"
        );
        pool.set_advertised(&set(&["c:1"]));
        assert_eq!(order(&pool), ["a:1", "c:1"]);
    }
}
