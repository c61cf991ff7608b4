//! The network policy of a component: where wasi:sockets may bind and which
//! remote addresses sockets and outbound wasi-http requests may reach.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use http_body_util::BodyExt;
use hyper::{Request, Response};
use ipnet::IpNet;
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi::sockets::SocketAddrUse;
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

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
    /// The only local address sockets may bind or listen on (the pod IP);
    /// `None` allows any.
    pub bind_ip: Option<IpAddr>,
    /// Where connections, datagrams and outbound HTTP requests may go.
    pub outbound: Outbound,
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

    /// Whether an outbound connection to `ip` is allowed.
    pub fn outbound_allows(&self, ip: IpAddr) -> bool {
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

/// wasi-http hooks that send outbound requests only to addresses the policy
/// allows (the host name is resolved and every address checked).
pub(crate) struct PolicyHooks {
    pub(crate) policy: Arc<NetworkPolicy>,
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
        Box::new(async move {
            if policy.outbound != Outbound::Allow {
                check_authority(&policy, request.uri().clone()).await?;
            }
            let (response, io) = wasmtime_wasi_http::default_send_request(request, options).await?;
            Ok((
                response.map(BodyExt::boxed_unsync),
                Box::new(io) as IoFuture,
            ))
        })
    }
}

/// Resolves the request's authority and refuses it unless every address is
/// allowed.
async fn check_authority(policy: &NetworkPolicy, uri: hyper::Uri) -> Result<(), HttpError> {
    if policy.outbound == Outbound::Deny {
        return Err(HttpError::HttpRequestDenied);
    }
    let host = uri.host().ok_or(HttpError::HttpRequestUriInvalid)?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = uri.port_u16().unwrap_or(80);
    let addrs: Vec<SocketAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
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
            outbound: Outbound::Allow,
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
            bind_ip: None,
            outbound: Outbound::Deny,
        };
        assert!(!deny.allows(addr("10.0.0.1:80"), SocketAddrUse::TcpConnect));
        assert!(!deny.allows(addr("10.0.0.1:53"), SocketAddrUse::UdpSend));
        assert!(deny.allows(addr("0.0.0.0:9000"), SocketAddrUse::TcpBind));

        let only = NetworkPolicy {
            bind_ip: None,
            outbound: Outbound::Only(vec![
                "10.0.0.0/8".parse().expect("net"),
                "::1/128".parse().expect("net"),
            ]),
        };
        assert!(only.allows(addr("10.2.3.4:80"), SocketAddrUse::TcpConnect));
        assert!(only.allows(addr("[::1]:80"), SocketAddrUse::TcpConnect));
        assert!(!only.allows(addr("192.168.1.1:80"), SocketAddrUse::TcpConnect));
    }
}
