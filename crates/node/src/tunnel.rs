//! The pod tunnel: how a connection reaches a pod IP of another host. Pod IPs are loopback addresses
//! (`127.64.0.0/10`), which do not route between hosts, so a node that wants a pod of another node asks
//! that node's agent, over the nodes' real addresses, to connect to the pod locally and splice the bytes.
//!
//! The transport is an HTTP/1.1 Upgrade on the kubelet port, which is already HTTPS with client
//! certificates of the cluster CA: `POST /tunnel/<podIP>/<port>` with `Upgrade: herd-tunnel/1`; the agent
//! connects to the pod first, then answers `101 Switching Protocols` and the connection carries the raw
//! bytes both ways. Mutually authenticated with the node certificates:
//!
//! - **The serving node** lets through only callers in `system:nodes` (or `system:masters`)
//!   (`kubelet_server`'s filter) and only to IPs of its own `spec.podCIDR` (403 otherwise: never an open
//!   relay); a pod that refuses is `502 Bad Gateway` naming the dial error.
//! - **The calling node** ([`TunnelClient`]) presents its client certificate, verifies the serving node's
//!   certificate against the cluster CA for the Node's InternalIP, and checks that it names the Node
//!   (`system:node:<name>`, the kubelet serving certificate's subject).

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use herd_pki::tls::CurrentCert;
use hyper_util::rt::TokioIo;
use ipnet::IpNet;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use crate::NodeError;

/// The `Upgrade` protocol of a tunnel.
pub const UPGRADE_PROTOCOL: &str = "herd-tunnel/1";
/// How long connecting to a node, or the node to its pod, may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A connection to a pod through another node's agent: bytes written reach the pod, the pod's come back.
pub type TunnelStream = TokioIo<hyper::upgrade::Upgraded>;

/// Why a tunnel could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum TunnelError {
    /// The node's kubelet port did not answer.
    #[error("cannot reach node {node} at {addr}: {message}")]
    Connect {
        node: String,
        addr: SocketAddr,
        message: String,
    },
    /// The TLS handshake failed (a certificate not of the cluster CA, or not for the node's address).
    #[error("TLS with node {node} at {addr}: {message}")]
    Tls {
        node: String,
        addr: SocketAddr,
        message: String,
    },
    /// The node's certificate is of the cluster CA but names someone else.
    #[error("node {node} at {addr} presents a certificate of {found:?}, not of system:node:{node}")]
    WrongNode {
        node: String,
        addr: SocketAddr,
        found: String,
    },
    /// The node answered, but not with a tunnel (its status and message).
    #[error("node {node} refused the tunnel to {target}: {status} {message}")]
    Refused {
        node: String,
        target: SocketAddr,
        status: u16,
        message: String,
    },
    /// The HTTP exchange failed.
    #[error("the tunnel through node {node}: {message}")]
    Protocol { node: String, message: String },
}

impl From<TunnelError> for std::io::Error {
    fn from(error: TunnelError) -> Self {
        let kind = match &error {
            TunnelError::Connect { .. } => std::io::ErrorKind::ConnectionRefused,
            TunnelError::Refused { status: 502, .. } => std::io::ErrorKind::ConnectionRefused,
            TunnelError::Refused { .. } | TunnelError::WrongNode { .. } => {
                std::io::ErrorKind::PermissionDenied
            }
            TunnelError::Tls { .. } | TunnelError::Protocol { .. } => std::io::ErrorKind::Other,
        };
        std::io::Error::new(kind, error)
    }
}

/// The calling side: opens tunnels to pods through other nodes' agents.
#[derive(Clone)]
pub struct TunnelClient {
    tls: Arc<rustls::ClientConfig>,
}

impl std::fmt::Debug for TunnelClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TunnelClient")
    }
}

impl TunnelClient {
    /// A client trusting the cluster CA `ca_pem` and presenting, at each new tunnel, the certificate
    /// `current` holds then (the node's client certificate, renewed by the certificate manager).
    ///
    /// # Errors
    /// [`NodeError::Credentials`] for a CA that does not parse.
    pub fn new(ca_pem: &str, current: Arc<CurrentCert>) -> Result<Self, NodeError> {
        let mut tls = herd_pki::tls::rotating_client_config(ca_pem, current)
            .map_err(|e| NodeError::Credentials(e.to_string()))?;
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self { tls: Arc::new(tls) })
    }

    /// A client of its own TLS configuration (trusting the cluster CA; presenting a client certificate or
    /// none).
    #[must_use]
    pub fn with_tls(mut tls: rustls::ClientConfig) -> Self {
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        Self { tls: Arc::new(tls) }
    }

    /// Opens a tunnel to `target` (a pod IP of node `node` and a port) through that node's kubelet port
    /// `kubelet` (its InternalIP and `daemonEndpoints.kubeletEndpoint.Port`).
    ///
    /// # Errors
    /// [`TunnelError`]: the node unreachable, its certificate not the Node's, or its refusal.
    pub async fn dial(
        &self,
        node: &str,
        kubelet: SocketAddr,
        target: SocketAddr,
    ) -> Result<TunnelStream, TunnelError> {
        let connect_error = |message: String| TunnelError::Connect {
            node: node.to_owned(),
            addr: kubelet,
            message,
        };
        let tcp = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(kubelet)).await {
            Ok(Ok(tcp)) => tcp,
            Ok(Err(error)) => return Err(connect_error(error.to_string())),
            Err(_) => {
                return Err(connect_error(format!(
                    "no answer within {CONNECT_TIMEOUT:?}"
                )));
            }
        };
        let _ = tcp.set_nodelay(true);
        // A tunnel to a host that vanished without closing it ends in about 30 s.
        let _ = crate::api_balancer::keep_alive(&tcp);
        let tls_error = |message: String| TunnelError::Tls {
            node: node.to_owned(),
            addr: kubelet,
            message,
        };
        let server_name = rustls::pki_types::ServerName::IpAddress(kubelet.ip().into());
        let tls = tokio::time::timeout(
            CONNECT_TIMEOUT,
            tokio_rustls::TlsConnector::from(self.tls.clone()).connect(server_name, tcp),
        )
        .await
        .map_err(|_| tls_error(format!("no handshake within {CONNECT_TIMEOUT:?}")))?
        .map_err(|e| tls_error(e.to_string()))?;
        let presented = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|chain| chain.first())
            .and_then(herd_pki::tls::peer_identity)
            .map(|user| user.name)
            .unwrap_or_default();
        if presented != herd_pki::node_user(node) {
            return Err(TunnelError::WrongNode {
                node: node.to_owned(),
                addr: kubelet,
                found: presented,
            });
        }
        let protocol_error = |e: &dyn std::fmt::Display| TunnelError::Protocol {
            node: node.to_owned(),
            message: e.to_string(),
        };
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| protocol_error(&e))?;
        tokio::spawn(async move {
            if let Err(error) = connection.with_upgrades().await {
                tracing::debug!(%error, "tunnel connection ended");
            }
        });
        let request = hyper::Request::post(format!("/tunnel/{}/{}", target.ip(), target.port()))
            .header(header::HOST, kubelet.to_string())
            .header(header::CONNECTION, "Upgrade")
            .header(header::UPGRADE, UPGRADE_PROTOCOL)
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .map_err(|e| protocol_error(&e))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| protocol_error(&e))?;
        if response.status() != StatusCode::SWITCHING_PROTOCOLS {
            let status = response.status().as_u16();
            let body = http_body_util::BodyExt::collect(response.into_body())
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            return Err(TunnelError::Refused {
                node: node.to_owned(),
                target,
                status,
                message: String::from_utf8_lossy(&body).trim().to_owned(),
            });
        }
        let upgraded = hyper::upgrade::on(response)
            .await
            .map_err(|e| protocol_error(&e))?;
        Ok(TokioIo::new(upgraded))
    }
}

/// The serving side's facts: the node's name and its pod CIDR (set once the control plane assigned it).
#[derive(Clone, Debug, Default)]
pub struct TunnelTargets {
    node_name: String,
    pod_cidr: Arc<OnceLock<IpNet>>,
}

impl TunnelTargets {
    /// Tunnels to pods of node `node_name`, refused until [`TunnelTargets::set_pod_cidr`].
    #[must_use]
    pub fn new(node_name: impl Into<String>) -> Self {
        Self {
            node_name: node_name.into(),
            pod_cidr: Arc::default(),
        }
    }

    /// The node's `spec.podCIDR`: tunnels may reach addresses in it.
    pub fn set_pod_cidr(&self, cidr: IpNet) {
        let _ = self.pod_cidr.set(cidr);
    }

    /// Whether a tunnel may go to `ip`, or why not (a 403 or 503 message).
    fn check(&self, ip: IpAddr) -> Result<(), (StatusCode, String)> {
        let Some(cidr) = self.pod_cidr.get() else {
            return Err((
                StatusCode::SERVICE_UNAVAILABLE,
                format!("node {} has no pod CIDR yet", self.node_name),
            ));
        };
        if !cidr.contains(&ip) || ip == cidr.network() || ip == cidr.broadcast() {
            return Err((
                StatusCode::FORBIDDEN,
                format!(
                    "{ip} is not a pod IP of node {} (podCIDR {cidr}): tunnels only reach this node's pods",
                    self.node_name
                ),
            ));
        }
        Ok(())
    }
}

/// `POST /tunnel/{ip}/{port}` (the caller is already authorized): connects to the pod, answers 101 and
/// splices the upgraded connection with it until either side closes or `shutdown`.
pub(crate) async fn serve(
    targets: &TunnelTargets,
    ip: &str,
    port: &str,
    mut request: Request,
    shutdown: CancellationToken,
) -> Response {
    let (Ok(ip), Ok(port)) = (ip.parse::<IpAddr>(), port.parse::<u16>()) else {
        return (
            StatusCode::BAD_REQUEST,
            format!("bad tunnel target {ip:?}:{port:?}: want /tunnel/<pod IP>/<port>\n"),
        )
            .into_response();
    };
    let wants_tunnel = request
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case(UPGRADE_PROTOCOL));
    if !wants_tunnel || port == 0 {
        return (
            StatusCode::BAD_REQUEST,
            format!("a tunnel needs `Upgrade: {UPGRADE_PROTOCOL}` and a port\n"),
        )
            .into_response();
    }
    if let Err((status, message)) = targets.check(ip) {
        return (status, message + "\n").into_response();
    }
    let target = SocketAddr::new(ip, port);
    let mut pod = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(target)).await {
        Ok(Ok(pod)) => pod,
        Ok(Err(error)) => {
            return (
                StatusCode::BAD_GATEWAY,
                format!("dial tcp {target}: {error}\n"),
            )
                .into_response();
        }
        Err(_) => {
            return (
                StatusCode::BAD_GATEWAY,
                format!("dial tcp {target}: no answer within {CONNECT_TIMEOUT:?}\n"),
            )
                .into_response();
        }
    };
    let _ = pod.set_nodelay(true);
    let Some(upgrade) = request
        .extensions_mut()
        .remove::<hyper::upgrade::OnUpgrade>()
    else {
        return (
            StatusCode::BAD_REQUEST,
            "this connection cannot be upgraded\n",
        )
            .into_response();
    };
    tokio::spawn(async move {
        let mut upgraded = match upgrade.await {
            Ok(upgraded) => TokioIo::new(upgraded),
            Err(error) => {
                tracing::debug!(%target, %error, "tunnel upgrade failed");
                return;
            }
        };
        tokio::select! {
            () = shutdown.cancelled() => {}
            result = tokio::io::copy_bidirectional(&mut upgraded, &mut pod) => {
                if let Err(error) = result {
                    tracing::debug!(%target, %error, "tunnel ended with an error");
                }
            }
        }
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "Upgrade")
        .header(header::UPGRADE, UPGRADE_PROTOCOL)
        .body(Body::empty())
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_this_nodes_pod_ips_are_targets() {
        let targets = TunnelTargets::new("a");
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        assert_eq!(
            targets.check(ip("127.64.0.5")).map_err(|e| e.0),
            Err(StatusCode::SERVICE_UNAVAILABLE)
        );
        targets.set_pod_cidr("127.64.0.0/24".parse().expect("cidr"));
        assert_eq!(targets.check(ip("127.64.0.5")), Ok(()));
        for outside in [
            "127.64.1.5",
            "127.0.0.1",
            "10.0.0.1",
            "127.64.0.0",
            "127.64.0.255",
        ] {
            let (status, message) = targets.check(ip(outside)).expect_err(outside);
            assert_eq!(status, StatusCode::FORBIDDEN);
            assert_eq!(
                message,
                format!(
                    "{outside} is not a pod IP of node a (podCIDR 127.64.0.0/24): tunnels only reach this node's pods"
                )
            );
        }
    }
}
