//! The network policy of a component: where wasi:sockets may bind, which
//! remote addresses sockets and outbound wasi-http requests may reach, and how
//! addresses are translated so that a guest sees its pod's network namespace.
//!
//! A pod has one IP, and herd's pods share the host's network stack, so the
//! addresses a program in a pod's network namespace takes for granted are
//! translated to the pod IP ([`NetworkPolicy::local`] for binds,
//! [`NetworkPolicy::remote`] for connects): binding `0.0.0.0`, `::`,
//! `127.0.0.1` or `::1` binds the pod IP, and connecting to `127.0.0.1` or
//! `::1` (which `localhost` resolves to) reaches the pod IP, so the containers
//! of a pod talk over localhost. A [`ConnectRedirect`] may then send a
//! connection elsewhere (straight to an endpoint of the Service the guest
//! connects to, chosen for the connecting pod; a Service port the proxy
//! serves on another port).

use std::fmt;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use hyper::{Request, Response};
use ipnet::IpNet;
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi::sockets::SocketAddrUse;
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

/// Where a guest's outbound TCP connection really goes: called with the
/// address the guest connects to (after `localhost` became the pod IP) for
/// every `wasi:sockets` TCP connect and every outbound wasi-http request
/// whose host is an IP address or `localhost`; `Some(to)` connects to `to`
/// instead, `None` leaves the address alone. The egress policy is checked
/// against the address actually connected to. Cheap to clone.
///
/// ```
/// # use herd_wasm_runtime::ConnectRedirect;
/// // A Service on 127.10.0.1:80 that the proxy serves on port 30080.
/// let redirect = ConnectRedirect::new(|addr| {
///     (addr == "127.10.0.1:80".parse().unwrap()).then(|| "127.10.0.1:30080".parse().unwrap())
/// });
/// assert_eq!(redirect.redirect("127.10.0.1:80".parse().unwrap()), Some("127.10.0.1:30080".parse().unwrap()));
/// assert_eq!(redirect.redirect("127.10.0.1:81".parse().unwrap()), None);
/// ```
///
/// A redirect made with [`ConnectRedirect::from_client`] also learns who
/// connects (the pod IP of the run's [`NetworkPolicy`]), so it can choose
/// per client, as a Service's `sessionAffinity: ClientIP` does:
///
/// ```
/// # use std::net::{IpAddr, SocketAddr};
/// # use herd_wasm_runtime::ConnectRedirect;
/// let redirect = ConnectRedirect::from_client(|client: Option<IpAddr>, _to: SocketAddr| {
///     client.map(|ip| SocketAddr::new(ip, 7000))
/// });
/// let from: IpAddr = "127.1.0.5".parse().unwrap();
/// let to: SocketAddr = "127.10.0.1:80".parse().unwrap();
/// assert_eq!(redirect.redirect_from(Some(from), to), Some("127.1.0.5:7000".parse().unwrap()));
/// assert_eq!(redirect.redirect(to), None);
/// ```
#[derive(Clone)]
pub struct ConnectRedirect(Arc<RedirectFn>);

type RedirectFn = dyn Fn(Option<IpAddr>, SocketAddr) -> Option<SocketAddr> + Send + Sync;

impl ConnectRedirect {
    /// A redirect that asks `f` for each connection. `f` is called on the
    /// guest's thread for every connect, so it should be quick (a map lookup).
    pub fn new(f: impl Fn(SocketAddr) -> Option<SocketAddr> + Send + Sync + 'static) -> Self {
        Self(Arc::new(move |_client, to| f(to)))
    }

    /// A redirect that asks `f` for each connection with the connecting
    /// guest's IP (its pod IP; `None` for a run without one) and the address
    /// it connects to. Quick, as for [`ConnectRedirect::new`].
    pub fn from_client(
        f: impl Fn(Option<IpAddr>, SocketAddr) -> Option<SocketAddr> + Send + Sync + 'static,
    ) -> Self {
        Self(Arc::new(f))
    }

    /// Where a connection to `addr` goes instead, if anywhere (for a client
    /// of no known IP).
    pub fn redirect(&self, addr: SocketAddr) -> Option<SocketAddr> {
        (self.0)(None, addr)
    }

    /// Where a connection from `client` to `addr` goes instead, if anywhere.
    pub fn redirect_from(&self, client: Option<IpAddr>, addr: SocketAddr) -> Option<SocketAddr> {
        (self.0)(client, addr)
    }
}

impl fmt::Debug for ConnectRedirect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ConnectRedirect(..)")
    }
}

/// Two redirects are equal when they are the same function (clones of one).
impl PartialEq for ConnectRedirect {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for ConnectRedirect {}

/// How a guest's name lookups are answered before the host's resolver is asked: called with the
/// name a guest looks up (through `wasi:sockets/ip-name-lookup`, e.g. wasi-libc's `getaddrinfo`, or
/// as the host of an outbound wasi-http request) whenever it is not an IP address. The binary
/// answers the cluster's names here (a pod's Service names, by its namespace's search list).
/// Cheap to clone.
///
/// ```
/// # use herd_wasm_runtime::{Answer, NameLookup};
/// let names = NameLookup::new(|name| match name {
///     "web" => Answer::Addresses(vec!["127.10.0.1".parse().unwrap()]),
///     "nope.svc.cluster.local" => Answer::NotFound,
///     other => Answer::host(other),
/// });
/// assert_eq!(names.lookup("web"), Answer::Addresses(vec!["127.10.0.1".parse().unwrap()]));
/// assert_eq!(names.lookup("example.com"), Answer::host("example.com"));
/// ```
#[derive(Clone)]
pub struct NameLookup(Arc<dyn Fn(&str) -> Answer + Send + Sync>);

/// What a [`NameLookup`] says of one name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// These addresses (in this order).
    Addresses(Vec<IpAddr>),
    /// No such name: the guest gets `name-unresolvable` (NXDOMAIN), the host is not asked.
    NotFound,
    /// Ask the host's resolver for each of `names` in turn; the first that resolves answers; if
    /// none does, `otherwise` (empty: `name-unresolvable`).
    AskHost {
        names: Vec<String>,
        otherwise: Vec<IpAddr>,
    },
}

impl Answer {
    /// Ask the host's resolver for `name` and nothing else.
    pub fn host(name: &str) -> Self {
        Answer::AskHost {
            names: vec![name.to_owned()],
            otherwise: Vec::new(),
        }
    }
}

impl NameLookup {
    /// A lookup that asks `f` for each name. `f` is called on the guest's thread, so it should
    /// be quick (a map lookup).
    pub fn new(f: impl Fn(&str) -> Answer + Send + Sync + 'static) -> Self {
        Self(Arc::new(f))
    }

    /// What `name` comes to.
    pub fn lookup(&self, name: &str) -> Answer {
        (self.0)(name)
    }
}

impl fmt::Debug for NameLookup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NameLookup(..)")
    }
}

/// Two lookups are equal when they are the same function (clones of one).
impl PartialEq for NameLookup {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for NameLookup {}

/// Which remote addresses a guest may connect or send to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Outbound {
    /// Anywhere (the Kubernetes default without a NetworkPolicy).
    #[default]
    Allow,
    /// Nowhere.
    Deny,
    /// Only addresses in these networks.
    Only(Vec<IpNet>),
}

/// The network policy of one run (p2 components; p1 has no sockets).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetworkPolicy {
    /// The pod IP: the only local address sockets may bind or listen on, and
    /// what the wildcard and loopback addresses stand for (see the module
    /// docs); `None` allows any and translates nothing.
    pub bind_ip: Option<IpAddr>,
    /// Where connections, datagrams and outbound HTTP requests may go.
    pub outbound: Outbound,
    /// Where outbound TCP connections and HTTP requests really go; `None`
    /// (the default) sends them where the guest said.
    pub redirect: Option<ConnectRedirect>,
    /// How names are looked up before the host's resolver (`wasi:sockets`
    /// name lookups and the hosts of outbound HTTP requests); `None` (the
    /// default) asks the host's resolver for every name.
    pub names: Option<NameLookup>,
}

impl NetworkPolicy {
    /// Whether `addr` may be used for `use_`.
    ///
    /// Binds: to `bind_ip` (when set), or to the wildcard address on port 0,
    /// which is what wasi:sockets checks for the implicit bind of a connect
    /// or a send (an explicit listen on it is still refused). Listening:
    /// only on `bind_ip`. Connects and sends: per [`Outbound`]. Accepting and
    /// receiving: always allowed (the socket already passed the checks).
    pub fn allows(&self, addr: SocketAddr, use_: SocketAddrUse) -> bool {
        match use_ {
            SocketAddrUse::TcpBind | SocketAddrUse::UdpBind => {
                self.bind_ip_allows(addr.ip()) || (addr.ip().is_unspecified() && addr.port() == 0)
            }
            SocketAddrUse::TcpListen => self.bind_ip_allows(addr.ip()),
            SocketAddrUse::TcpConnect | SocketAddrUse::UdpSend => self.outbound_allows(addr.ip()),
            SocketAddrUse::TcpAccept | SocketAddrUse::UdpReceive => true,
        }
    }

    fn bind_ip_allows(&self, ip: IpAddr) -> bool {
        self.bind_ip.is_none_or(|bind_ip| bind_ip == ip)
    }

    /// The address a guest's bind of `addr` really binds: the pod IP (with
    /// the guest's port) for `0.0.0.0`, `::`, `127.0.0.1` and `::1`, which in
    /// a pod's network namespace are its own addresses; any other address is
    /// left as it is (and so a bind of it is refused unless it is the pod IP).
    pub fn local(&self, addr: SocketAddr) -> SocketAddr {
        match self.bind_ip {
            Some(pod_ip) if addr.ip().is_unspecified() || is_localhost(addr.ip()) => {
                SocketAddr::new(pod_ip, addr.port())
            }
            _ => addr,
        }
    }

    /// The address a guest's TCP connection to `addr` really goes to:
    /// `127.0.0.1` and `::1` (what `localhost` resolves to) are the pod IP,
    /// so the containers of a pod reach each other over localhost; then the
    /// [`ConnectRedirect`], if any, may send it elsewhere (asked with the pod
    /// IP as the client: a Service address becomes one of its endpoints).
    pub fn remote(&self, addr: SocketAddr) -> SocketAddr {
        let addr = self.remote_datagram(addr);
        self.redirect
            .as_ref()
            .and_then(|redirect| redirect.redirect_from(self.bind_ip, addr))
            .unwrap_or(addr)
    }

    /// The address a guest's datagram to `addr` really goes to: the pod IP
    /// for `127.0.0.1` and `::1` (Services and their redirect are TCP only).
    pub fn remote_datagram(&self, addr: SocketAddr) -> SocketAddr {
        match self.bind_ip {
            Some(pod_ip) if is_localhost(addr.ip()) => SocketAddr::new(pod_ip, addr.port()),
            _ => addr,
        }
    }

    /// Whether an outbound connection to `ip` is allowed. The pod's own IP
    /// always is: traffic inside a pod (over localhost) is never subject to
    /// its egress policy, as in Kubernetes.
    pub fn outbound_allows(&self, ip: IpAddr) -> bool {
        if self.bind_ip == Some(ip) {
            return true;
        }
        match &self.outbound {
            Outbound::Allow => true,
            Outbound::Deny => false,
            Outbound::Only(networks) => networks.iter().any(|net| net.contains(&ip)),
        }
    }

    /// Installs the policy as the WASI context's socket address check.
    pub(crate) fn apply(self: &Arc<Self>, builder: &mut WasiCtxBuilder) {
        let policy = self.clone();
        builder.socket_addr_check(move |addr, use_| {
            let allowed = policy.allows(addr, use_);
            Box::pin(async move { allowed })
        });
    }
}

/// `127.0.0.1` and `::1`: a pod's loopback addresses (`localhost`). Other
/// addresses in 127.0.0.0/8 are other pods and Services on this host.
fn is_localhost(ip: IpAddr) -> bool {
    ip == IpAddr::V4(Ipv4Addr::LOCALHOST) || ip == IpAddr::V6(Ipv6Addr::LOCALHOST)
}

/// wasi-http hooks that send outbound requests where the policy says (a
/// request to `localhost` goes to the pod IP, then the redirect applies) and
/// only to addresses the policy allows (the host name is resolved and every
/// address checked).
pub(crate) struct PolicyHooks {
    pub(crate) policy: Arc<NetworkPolicy>,
    /// The TLS client of `https` requests (web roots and the runtime's extra roots).
    pub(crate) tls: Arc<rustls::ClientConfig>,
}

type IoFuture = Box<dyn Future<Output = Result<(), HttpError>> + Send>;

impl WasiHttpHooks for PolicyHooks {
    fn send_request(
        &mut self,
        request: Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: IoFuture,
    ) -> Box<dyn Future<Output = Result<(Response<WasiBody>, IoFuture), HttpError>> + Send> {
        drop(fut);
        let policy = self.policy.clone();
        let tls = self.tls.clone();
        let mut request = request;
        // The guest's URI names the server a certificate must be for, wherever the policy sends it.
        let asked_for = request.uri().clone();
        Box::new(async move {
            if let Some(uri) = resolve_host(&policy, request.uri()).await? {
                *request.uri_mut() = uri;
            }
            if let Some(uri) = translate_uri(&policy, request.uri()) {
                *request.uri_mut() = uri;
            }
            if policy.outbound != Outbound::Allow {
                check_authority(&policy, request.uri().clone()).await?;
            }
            crate::outbound_tls::send(request, options, tls, &asked_for).await
        })
    }
}

/// The request's URI with its host name replaced by the address the policy's
/// [`NameLookup`] gives it (a Service name becomes its cluster IP, which
/// [`translate_uri`] may then redirect); `None` leaves the request alone (no
/// lookup, an address, or a name only the host's resolver answers, which the
/// sender asks as before). An unknown cluster name fails as a DNS error.
async fn resolve_host(
    policy: &NetworkPolicy,
    uri: &hyper::Uri,
) -> Result<Option<hyper::Uri>, HttpError> {
    let (Some(names), Some(host)) = (policy.names.as_ref(), uri.host()) else {
        return Ok(None);
    };
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if bare.parse::<IpAddr>().is_ok() {
        return Ok(None);
    }
    let not_found = || HttpError::DnsError {
        rcode: Some("NXDOMAIN".to_owned()),
        info_code: None,
    };
    let ip = match names.lookup(bare) {
        Answer::Addresses(ips) => *ips.first().ok_or_else(not_found)?,
        Answer::NotFound => return Err(not_found()),
        Answer::AskHost { names, otherwise }
            if otherwise.is_empty() && names.len() == 1 && names[0].eq_ignore_ascii_case(bare) =>
        {
            return Ok(None);
        }
        Answer::AskHost { names, otherwise } => {
            let ips = crate::name_lookup::host_addresses(&names, otherwise)
                .await
                .ok_or_else(not_found)?;
            *ips.first().ok_or_else(not_found)?
        }
    };
    let port = uri.port_u16().unwrap_or(default_port(uri));
    let mut parts = uri.clone().into_parts();
    parts.authority = Some(
        SocketAddr::new(ip, port)
            .to_string()
            .parse()
            .map_err(|_| HttpError::HttpRequestUriInvalid)?,
    );
    hyper::Uri::from_parts(parts)
        .map(Some)
        .map_err(|_| HttpError::HttpRequestUriInvalid)
}

/// The port of a URI without one: 443 for `https`, else 80.
fn default_port(uri: &hyper::Uri) -> u16 {
    if uri.scheme() == Some(&hyper::http::uri::Scheme::HTTPS) {
        443
    } else {
        80
    }
}

/// The request's URI with its authority replaced by the address the policy
/// sends it to, when its host is an IP address or `localhost` and that
/// address differs; `None` leaves the request alone. The `Host` header keeps
/// what the guest wrote (wasmtime-wasi-http set it from the authority).
fn translate_uri(policy: &NetworkPolicy, uri: &hyper::Uri) -> Option<hyper::Uri> {
    let host = uri.host()?;
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let ip = if bare.eq_ignore_ascii_case("localhost") {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        bare.parse::<IpAddr>().ok()?
    };
    let default_port = if uri.scheme() == Some(&hyper::http::uri::Scheme::HTTPS) {
        443
    } else {
        80
    };
    let from = SocketAddr::new(ip, uri.port_u16().unwrap_or(default_port));
    let to = policy.remote(from);
    if to == from {
        return None;
    }
    let mut parts = uri.clone().into_parts();
    parts.authority = Some(to.to_string().parse().ok()?);
    hyper::Uri::from_parts(parts).ok()
}

/// Resolves the request's authority and refuses it unless every address is
/// allowed.
async fn check_authority(policy: &NetworkPolicy, uri: hyper::Uri) -> Result<(), HttpError> {
    let host = uri.host().ok_or(HttpError::HttpRequestUriInvalid)?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let default_port = if uri.scheme() == Some(&hyper::http::uri::Scheme::HTTPS) {
        443
    } else {
        80
    };
    let port = uri.port_u16().unwrap_or(default_port);
    let addrs: Vec<SocketAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        // Only the pod's own IP (an address, after `translate_uri`) is allowed: no name is.
        Err(_) if policy.outbound == Outbound::Deny => return Err(HttpError::HttpRequestDenied),
        Err(_) => tokio::net::lookup_host((host, port))
            .await
            .map_err(|_| HttpError::DnsError {
                rcode: Some("address not available".to_owned()),
                info_code: Some(0),
            })?
            .collect(),
    };
    if addrs.is_empty() || !addrs.iter().all(|a| policy.outbound_allows(a.ip())) {
        return Err(HttpError::HttpRequestDenied);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("socket address")
    }

    #[test]
    fn binds_only_on_the_pod_ip() {
        let policy = NetworkPolicy {
            bind_ip: Some("127.1.0.5".parse().expect("ip")),
            ..NetworkPolicy::default()
        };
        assert!(policy.allows(addr("127.1.0.5:8080"), SocketAddrUse::TcpBind));
        assert!(policy.allows(addr("127.1.0.5:8080"), SocketAddrUse::TcpListen));
        assert!(!policy.allows(addr("127.0.0.1:8080"), SocketAddrUse::TcpBind));
        assert!(!policy.allows(addr("0.0.0.0:8080"), SocketAddrUse::TcpBind));
        assert!(!policy.allows(addr("0.0.0.0:0"), SocketAddrUse::TcpListen));
        // The implicit bind of a connect.
        assert!(policy.allows(addr("0.0.0.0:0"), SocketAddrUse::TcpBind));
        assert!(policy.allows(addr("10.0.0.1:80"), SocketAddrUse::TcpConnect));
    }

    #[test]
    fn outbound_deny_and_only() {
        let deny = NetworkPolicy {
            outbound: Outbound::Deny,
            ..NetworkPolicy::default()
        };
        assert!(!deny.allows(addr("10.0.0.1:80"), SocketAddrUse::TcpConnect));
        assert!(!deny.allows(addr("10.0.0.1:53"), SocketAddrUse::UdpSend));
        assert!(deny.allows(addr("0.0.0.0:9000"), SocketAddrUse::TcpBind));

        let only = NetworkPolicy {
            outbound: Outbound::Only(vec![
                "10.0.0.0/8".parse().expect("net"),
                "::1/128".parse().expect("net"),
            ]),
            ..NetworkPolicy::default()
        };
        assert!(only.allows(addr("10.2.3.4:80"), SocketAddrUse::TcpConnect));
        assert!(only.allows(addr("[::1]:80"), SocketAddrUse::TcpConnect));
        assert!(!only.allows(addr("192.168.1.1:80"), SocketAddrUse::TcpConnect));
    }

    fn pod(ip: &str) -> NetworkPolicy {
        NetworkPolicy {
            bind_ip: Some(ip.parse().expect("ip")),
            ..NetworkPolicy::default()
        }
    }

    #[test]
    fn wildcard_and_loopback_binds_are_the_pod_ip() {
        let policy = pod("127.1.0.5");
        for guest in ["0.0.0.0:8080", "[::]:8080", "127.0.0.1:8080", "[::1]:8080"] {
            assert_eq!(policy.local(addr(guest)), addr("127.1.0.5:8080"), "{guest}");
        }
        assert_eq!(policy.local(addr("0.0.0.0:0")), addr("127.1.0.5:0"));
        // Any other local address is left alone, and so refused by the check.
        let other = policy.local(addr("127.0.0.2:8080"));
        assert_eq!(other, addr("127.0.0.2:8080"));
        assert!(!policy.allows(other, SocketAddrUse::TcpBind));
        // Without a pod IP nothing is translated.
        let open = NetworkPolicy::default();
        assert_eq!(open.local(addr("0.0.0.0:80")), addr("0.0.0.0:80"));
    }

    #[test]
    fn localhost_connects_reach_the_pod_ip_then_the_redirect() {
        let mut policy = pod("127.1.0.5");
        assert_eq!(
            policy.remote(addr("127.0.0.1:9000")),
            addr("127.1.0.5:9000")
        );
        assert_eq!(policy.remote(addr("[::1]:9000")), addr("127.1.0.5:9000"));
        assert_eq!(
            policy.remote(addr("127.0.0.2:9000")),
            addr("127.0.0.2:9000")
        );
        assert_eq!(policy.remote(addr("10.1.2.3:80")), addr("10.1.2.3:80"));
        policy.redirect = Some(ConnectRedirect::new(|to| {
            (to.port() == 80 || to == addr("127.1.0.5:9000"))
                .then(|| SocketAddr::new(to.ip(), 30080))
        }));
        assert_eq!(
            policy.remote(addr("127.10.0.1:80")),
            addr("127.10.0.1:30080")
        );
        // The redirect sees the translated address.
        assert_eq!(
            policy.remote(addr("127.0.0.1:9000")),
            addr("127.1.0.5:30080")
        );
        assert_eq!(policy.remote(addr("127.10.0.1:81")), addr("127.10.0.1:81"));
        // Datagrams: loopback only, no redirect.
        assert_eq!(
            policy.remote_datagram(addr("127.0.0.1:80")),
            addr("127.1.0.5:80")
        );
        assert_eq!(
            policy.remote_datagram(addr("127.10.0.1:80")),
            addr("127.10.0.1:80")
        );
    }

    #[test]
    fn the_pod_ip_is_always_reachable_whatever_the_egress() {
        let mut policy = pod("127.1.0.5");
        policy.outbound = Outbound::Deny;
        assert!(policy.allows(addr("127.1.0.5:9000"), SocketAddrUse::TcpConnect));
        assert!(!policy.allows(addr("127.1.0.6:9000"), SocketAddrUse::TcpConnect));
    }

    #[test]
    fn outbound_http_to_localhost_goes_to_the_pod_ip() {
        let mut policy = pod("127.1.0.5");
        let uri = |s: &str| s.parse::<hyper::Uri>().expect("uri");
        assert_eq!(
            translate_uri(&policy, &uri("http://localhost:8080/a?b=c")),
            Some(uri("http://127.1.0.5:8080/a?b=c"))
        );
        assert_eq!(
            translate_uri(&policy, &uri("http://127.0.0.1/x")),
            Some(uri("http://127.1.0.5:80/x"))
        );
        assert_eq!(
            translate_uri(&policy, &uri("http://[::1]:81/")),
            Some(uri("http://127.1.0.5:81/"))
        );
        assert_eq!(translate_uri(&policy, &uri("http://example.com/")), None);
        assert_eq!(translate_uri(&policy, &uri("http://10.0.0.1:80/")), None);
        policy.redirect = Some(ConnectRedirect::new(|to| {
            (to == addr("127.10.0.1:80")).then(|| addr("127.10.0.1:30080"))
        }));
        assert_eq!(
            translate_uri(&policy, &uri("http://127.10.0.1/")),
            Some(uri("http://127.10.0.1:30080/"))
        );
    }

    #[tokio::test]
    async fn outbound_http_to_the_pod_itself_is_never_egress() {
        let mut policy = pod("127.1.0.5");
        policy.outbound = Outbound::Deny;
        let uri = |s: &str| s.parse::<hyper::Uri>().expect("uri");
        let local = translate_uri(&policy, &uri("http://localhost:8080/")).expect("translated");
        assert!(check_authority(&policy, local).await.is_ok());
        assert!(
            check_authority(&policy, uri("http://127.1.0.6:8080/"))
                .await
                .is_err()
        );
        assert!(
            check_authority(&policy, uri("http://example.com/"))
                .await
                .is_err()
        );
    }

    #[test]
    fn the_redirect_learns_the_connecting_pod() {
        let mut policy = pod("127.1.0.5");
        policy.redirect = Some(ConnectRedirect::from_client(|client, to| {
            // Port 80 of the Service goes to an endpoint picked for the client.
            (to == addr("127.10.0.1:80")).then(|| match client {
                Some(ip) if ip == "127.1.0.5".parse::<IpAddr>().expect("ip") => {
                    addr("127.1.0.7:8080")
                }
                _ => addr("127.1.0.8:8080"),
            })
        }));
        assert_eq!(policy.remote(addr("127.10.0.1:80")), addr("127.1.0.7:8080"));
        assert_eq!(policy.remote(addr("127.10.0.1:81")), addr("127.10.0.1:81"));
        let uri = |s: &str| s.parse::<hyper::Uri>().expect("uri");
        assert_eq!(
            translate_uri(&policy, &uri("http://127.10.0.1/x")),
            Some(uri("http://127.1.0.7:8080/x"))
        );
        policy.bind_ip = None;
        assert_eq!(policy.remote(addr("127.10.0.1:80")), addr("127.1.0.8:8080"));
    }

    #[test]
    fn redirects_compare_by_identity() {
        let a = ConnectRedirect::new(|_| None);
        assert_eq!(a, a.clone());
        assert_ne!(a, ConnectRedirect::new(|_| None));
        assert_eq!(format!("{a:?}"), "ConnectRedirect(..)");
    }
}
