//! herd's HTTPS listener for axum, shared by the API server, the kubelet port and the embedded registry:
//! TLS handshakes run off the accept path in tasks of their own (one slow or silent client never holds up
//! the next), and each connection carries the identity its verified client certificate names to every
//! request on it ([`Peer`], an axum `ConnectInfo`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_util::task::AbortOnDropHandle;

/// How long a client may take to complete its TLS handshake (Go's `http.Server` gives kube-apiserver's
/// clients 10 s as well).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Handshaken connections waiting for the server to take them.
const BACKLOG: usize = 1024;

/// Who is at the other end of a connection: its address and, when it presented a client certificate the
/// cluster CA signed, the user and groups the certificate names (kube's x509 authenticator).
#[derive(Clone, Debug)]
pub struct Peer {
    pub addr: SocketAddr,
    pub certificate: Option<herd_pki::tls::UserInfo>,
}

/// A TCP listener whose connections come out TLS-terminated.
pub struct TlsListener {
    incoming: mpsc::Receiver<(TlsStream<TcpStream>, Peer)>,
    local: SocketAddr,
    _accepting: AbortOnDropHandle<()>,
}

impl TlsListener {
    /// Accepts on `listener` and completes each handshake with `config` in a task of its own; `name` (the
    /// API server, a kubelet port, the registry) tells the logs whose listener it is.
    ///
    /// # Errors
    /// When the listener has no local address.
    pub fn new(
        listener: TcpListener,
        config: Arc<rustls::ServerConfig>,
        name: &'static str,
    ) -> std::io::Result<Self> {
        let local = listener.local_addr()?;
        let (ready, incoming) = mpsc::channel(BACKLOG);
        let acceptor = TlsAcceptor::from(config);
        let accepting = tokio::spawn(async move {
            loop {
                let (tcp, addr) = match listener.accept().await {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // Out of file descriptors and the like: wait for some to close rather than spin.
                        tracing::warn!("{name}: accepting a connection: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                // Watch events and answers are small writes: without TCP_NODELAY, Nagle's algorithm holds
                // them back until the client's delayed ACK (tens of milliseconds on Linux).
                let _ = tcp.set_nodelay(true);
                let (acceptor, ready) = (acceptor.clone(), ready.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(tls)) => {
                            let certificate = herd_pki::tls::connection_identity(tls.get_ref().1);
                            let _ = ready.send((tls, Peer { addr, certificate })).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%addr, "{name}: TLS handshake failed: {e}"),
                        Err(_) => tracing::debug!(%addr, "{name}: TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(Self {
            incoming,
            local,
            _accepting: AbortOnDropHandle::new(accepting),
        })
    }
}

impl Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = Peer;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.incoming.recv().await {
            Some(connection) => connection,
            // The accepting task holds a sender for as long as this listener lives.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(Peer {
            addr: self.local,
            certificate: None,
        })
    }
}

impl Connected<IncomingStream<'_, TlsListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, TlsListener>) -> Self {
        stream.remote_addr().clone()
    }
}
