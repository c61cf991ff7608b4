//! The registry's HTTPS listener: each handshake runs in a task of its own (a slow client never holds
//! up the next), and each connection carries the identity its verified client certificate names
//! ([`Peer`]), as the API server's listener does.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use herd_pki::tls::UserInfo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_util::task::AbortOnDropHandle;

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const BACKLOG: usize = 256;

/// The other end of a connection: its address and, when it presented a client certificate of the
/// cluster CA, the user and groups it names.
#[derive(Clone, Debug)]
pub struct Peer {
    pub addr: SocketAddr,
    pub certificate: Option<UserInfo>,
}

/// A TCP listener whose connections come out TLS-terminated.
pub(crate) struct TlsListener {
    incoming: mpsc::Receiver<(TlsStream<TcpStream>, Peer)>,
    local: SocketAddr,
    _accepting: AbortOnDropHandle<()>,
}

impl TlsListener {
    pub(crate) fn new(
        listener: TcpListener,
        config: Arc<rustls::ServerConfig>,
    ) -> std::io::Result<Self> {
        let local = listener.local_addr()?;
        let (ready, incoming) = mpsc::channel(BACKLOG);
        let acceptor = TlsAcceptor::from(config);
        let accepting = tokio::spawn(async move {
            loop {
                let (tcp, addr) = match listener.accept().await {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        tracing::warn!("registry: accepting a connection: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = tcp.set_nodelay(true);
                let (acceptor, ready) = (acceptor.clone(), ready.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(tls)) => {
                            let certificate = herd_pki::tls::connection_identity(tls.get_ref().1);
                            let _ = ready.send((tls, Peer { addr, certificate })).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%addr, "registry: TLS handshake failed: {e}"),
                        Err(_) => tracing::debug!(%addr, "registry: TLS handshake timed out"),
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
