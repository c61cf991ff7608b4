//! How the forwarder reaches a backend: straight over TCP by default, or however the binary says — the
//! node's pod network, which tunnels to pods of other hosts through their node agents.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// How long a direct connect to a backend may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A byte stream to a backend.
pub trait Connection: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Connection for T {}

/// A connection to a backend, whatever carries it.
pub type BoxConnection = Box<dyn Connection>;

type DialFn = dyn Fn(SocketAddr) -> BoxFuture<'static, io::Result<BoxConnection>> + Send + Sync;

/// Opens connections to backends. Cheap to clone.
#[derive(Clone)]
pub struct Dialer(Arc<DialFn>);

impl Dialer {
    /// Connects to the backend's address over TCP (within [`CONNECT_TIMEOUT`]).
    #[must_use]
    pub fn direct() -> Self {
        Self::new(|backend| Box::pin(direct(backend)))
    }

    /// Connects with `f`.
    pub fn new(
        f: impl Fn(SocketAddr) -> BoxFuture<'static, io::Result<BoxConnection>> + Send + Sync + 'static,
    ) -> Self {
        Self(Arc::new(f))
    }

    /// A connection to `backend`.
    ///
    /// # Errors
    /// Whatever the connect failed with.
    pub async fn connect(&self, backend: SocketAddr) -> io::Result<BoxConnection> {
        (self.0)(backend).await
    }
}

impl Default for Dialer {
    fn default() -> Self {
        Self::direct()
    }
}

impl fmt::Debug for Dialer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Dialer(..)")
    }
}

async fn direct(backend: SocketAddr) -> io::Result<BoxConnection> {
    match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(backend)).await {
        Ok(Ok(stream)) => Ok(Box::new(stream)),
        Ok(Err(error)) => Err(error),
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("connecting to {backend} took over {CONNECT_TIMEOUT:?}"),
        )),
    }
}
