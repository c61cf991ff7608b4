//! How the forwarder reaches a backend: straight over TCP by default, or however the binary says — the
//! node's pod network, which tunnels to pods of other hosts through their node agents. A backend the
//! dialer says is reached directly ([`Dialer::is_direct`]) is connected by the forwarder itself on its
//! own data-path thread, as a plain socket it can forward zero-copy; the others through the dialer.

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
type DirectFn = dyn Fn(SocketAddr) -> bool + Send + Sync;

/// Opens connections to backends. Cheap to clone.
#[derive(Clone)]
pub struct Dialer {
    dial: Arc<DialFn>,
    /// Which backends a plain TCP connect reaches (`None`: all of them, as [`Dialer::direct`]).
    direct: Option<Arc<DirectFn>>,
}

impl Dialer {
    /// Connects to the backend's address over TCP (within [`CONNECT_TIMEOUT`]).
    #[must_use]
    pub fn direct() -> Self {
        Self {
            dial: Arc::new(|backend| Box::pin(direct(backend))),
            direct: None,
        }
    }

    /// Connects with `f` (no backend is taken to be reachable by a plain TCP connect until
    /// [`Dialer::direct_when`] says which are).
    pub fn new(
        f: impl Fn(SocketAddr) -> BoxFuture<'static, io::Result<BoxConnection>> + Send + Sync + 'static,
    ) -> Self {
        Self {
            dial: Arc::new(f),
            direct: Some(Arc::new(|_| false)),
        }
    }

    /// Says which backends a plain TCP connect reaches (pods of this host), which the forwarder
    /// then connects itself, on its data-path threads.
    #[must_use]
    pub fn direct_when(mut self, f: impl Fn(SocketAddr) -> bool + Send + Sync + 'static) -> Self {
        self.direct = Some(Arc::new(f));
        self
    }

    /// Whether a plain TCP connect to `backend` reaches it.
    pub fn is_direct(&self, backend: SocketAddr) -> bool {
        self.direct.as_ref().is_none_or(|f| f(backend))
    }

    /// A connection to `backend`.
    ///
    /// # Errors
    /// Whatever the connect failed with.
    pub async fn connect(&self, backend: SocketAddr) -> io::Result<BoxConnection> {
        (self.dial)(backend).await
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
