//! The proxy's data path, on threads of its own: one worker per core, each a current-thread tokio
//! runtime. Every TCP frontend has one `SO_REUSEPORT` listener per worker, so the kernel spreads
//! connections over the workers, and a connection's two sockets are served by the worker that
//! accepted it, start to end: no cross-thread wake-up on the way of a byte, and nothing of the
//! process's shared runtime (API server, controllers, node agent) in between.
//!
//! Bytes are copied through a buffer per direction (for small messages the fewest system calls:
//! one read, cleared of readiness when short, and one write), and a direction that fills its buffer
//! switches to `splice(2)` through a pipe, zero-copy, for as long as the data keeps coming in bulk.
//! Backends the [`Dialer`] does not reach by a plain connect (pods of other hosts, through the
//! tunnel) are handed to the shared runtime with the client's socket and copied there.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsFd, OwnedFd};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Handle;
use tokio_util::sync::{CancellationToken, DropGuard};
use tokio_util::task::TaskTracker;

use crate::activator::Activator;
use crate::balancer::Balancer;
use crate::dialer::{CONNECT_TIMEOUT, Dialer};

/// The buffer of each direction of a connection.
const BUFFER: usize = 16 * 1024;
/// How much one `splice(2)` moves at most.
const SPLICE_CHUNK: usize = 64 * 1024;
/// Worker threads at most, whatever the core count.
const MAX_WORKERS: usize = 16;
/// Overrides the number of workers (default: one per core).
pub const WORKERS_ENV: &str = "HERD_PROXY_WORKERS";

/// The data-path threads. Dropping the last clone of the forwarder that owns them stops them.
pub(crate) struct Workers {
    handles: Vec<Handle>,
    own_threads: bool,
    stop: CancellationToken,
    _stopped_on_drop: DropGuard,
}

impl Workers {
    /// One worker per core (at most [`MAX_WORKERS`]; [`WORKERS_ENV`] overrides it); if no thread
    /// can be started, the calling runtime serves as the only worker.
    pub(crate) fn start() -> Self {
        Self::spawn().unwrap_or_else(|error| {
            tracing::warn!(%error, "cannot start the proxy's data-path threads; forwarding on the shared runtime");
            let stop = CancellationToken::new();
            Self {
                handles: vec![Handle::current()],
                own_threads: false,
                stop: stop.clone(),
                _stopped_on_drop: stop.drop_guard(),
            }
        })
    }

    fn spawn() -> io::Result<Self> {
        let count = std::env::var(WORKERS_ENV)
            .ok()
            .and_then(|n| n.parse::<usize>().ok())
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from))
            .clamp(1, MAX_WORKERS);
        let stop = CancellationToken::new();
        let mut handles = Vec::with_capacity(count);
        for i in 0..count {
            let (tx, rx) = std::sync::mpsc::channel();
            let stop = stop.clone();
            std::thread::Builder::new()
                .name(format!("herd-proxy-{i}"))
                .spawn(move || {
                    let runtime = match tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    {
                        Ok(runtime) => runtime,
                        Err(error) => {
                            let _ = tx.send(Err(error));
                            return;
                        }
                    };
                    let _ = tx.send(Ok(runtime.handle().clone()));
                    runtime.block_on(stop.cancelled());
                })?;
            handles.push(
                rx.recv()
                    .map_err(|_| io::Error::other("a proxy worker thread died at start"))??,
            );
        }
        Ok(Self {
            handles,
            own_threads: true,
            stop: stop.clone(),
            _stopped_on_drop: stop.drop_guard(),
        })
    }

    /// Whether the workers are threads of their own (not the shared runtime).
    pub(crate) fn own_threads(&self) -> bool {
        self.own_threads
    }

    /// Stops the workers: their runtimes end, dropping every connection they serve.
    pub(crate) fn stop(&self) {
        self.stop.cancel();
    }

    /// The workers' runtimes.
    pub(crate) fn handles(&self) -> &[Handle] {
        &self.handles
    }
}

/// What an accept loop needs besides its listener.
#[derive(Clone)]
pub(crate) struct Context {
    pub balancer: Balancer,
    pub dialer: Dialer,
    /// Connections: they outlive their listener and stop only at shutdown.
    pub tasks: TaskTracker,
    pub shutdown: CancellationToken,
    /// The process's shared runtime, where connections to tunnelled backends are copied.
    pub shared: Handle,
    /// Whether connections must watch `shutdown` themselves: on the shared runtime (no worker
    /// thread could start), which [`Workers::stop`] does not end.
    pub watch_shutdown: bool,
}

/// Accepts connections to `frontend` on `listener` (a socket of the worker this runs on) until
/// `stop`, each forwarded on this worker.
pub(crate) async fn accept_loop(
    frontend: SocketAddr,
    listener: std::net::TcpListener,
    context: Context,
    stop: CancellationToken,
) {
    let listener = match TcpListener::from_std(listener) {
        Ok(listener) => listener,
        Err(error) => {
            tracing::warn!(%frontend, %error, "cannot serve a listener on a proxy worker");
            return;
        }
    };
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let (client, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(%frontend, %error, "accept failed");
                // EMFILE and the like: do not spin.
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let candidates = context.balancer.candidates(frontend, peer.ip());
        if candidates.is_empty() {
            no_backend(frontend, client, peer, &context);
            continue;
        }
        // No shutdown branch beside it: a `CancellationToken` shared by every connection is a mutex each
        // poll takes, across the workers. At shutdown the workers' runtimes stop, dropping the
        // connections ([`Workers::stop`]).
        let forwarding = forward(client, frontend, candidates, context.clone());
        if context.watch_shutdown {
            let shutdown = context.shutdown.clone();
            context.tasks.spawn(async move {
                tokio::select! {
                    () = shutdown.cancelled() => {}
                    () = forwarding => {}
                }
            });
        } else {
            context.tasks.spawn(forwarding);
        }
    }
}

/// The one place where a connection finds no usable backend: its frontend has no ready endpoint
/// (or none on this node, for a traffic policy `Local`). It is closed, as kube-proxy rejects it,
/// unless its Service scales to zero: then it is held while the Service wakes up and forwarded
/// once it has an endpoint or a Ready pod ([`Activator`]).
fn no_backend(frontend: SocketAddr, client: TcpStream, peer: SocketAddr, context: &Context) {
    if let Some(woken) = Activator::new(context.balancer.clone()).hold(frontend, peer.ip()) {
        let (shutdown, held) = (context.shutdown.clone(), context.clone());
        context.tasks.spawn(async move {
            tokio::select! {
                () = shutdown.cancelled() => {}
                () = async {
                    let candidates = woken.await;
                    if !candidates.is_empty() {
                        forward(client, frontend, candidates, held).await;
                    }
                } => {}
            }
        });
        return;
    }
    tracing::debug!(%frontend, %peer, "no endpoints, closing connection");
    drop(client);
}

/// Connects to the first of `candidates` that accepts and forwards until both sides are done.
/// A candidate the dialer does not reach by a plain connect hands the connection, with the
/// candidates left, to the shared runtime.
async fn forward(
    client: TcpStream,
    frontend: SocketAddr,
    candidates: Vec<SocketAddr>,
    context: Context,
) {
    // Counted as open until it ends (scale to zero keeps its Service awake meanwhile).
    let mut open = context.balancer.open(frontend);
    let _ = client.set_nodelay(true);
    for (i, backend) in candidates.iter().enumerate() {
        if !context.dialer.is_direct(*backend) {
            let rest = candidates[i..].to_vec();
            match client.into_std() {
                Ok(client) => {
                    let dialer = context.dialer.clone();
                    let shutdown = context.shutdown.clone();
                    let open = open.take();
                    context.tasks.spawn_on(
                        async move {
                            let _open = open;
                            tokio::select! {
                                () = shutdown.cancelled() => {}
                                () = forward_through_dialer(client, frontend, rest, dialer) => {}
                            }
                        },
                        &context.shared,
                    );
                }
                Err(error) => tracing::debug!(%frontend, %error, "handing a connection over"),
            }
            return;
        }
        let upstream = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(backend))
            .await
        {
            Ok(Ok(upstream)) => upstream,
            Ok(Err(error)) => {
                tracing::debug!(%frontend, %backend, %error, "backend refused, trying the next one");
                continue;
            }
            Err(_) => {
                tracing::debug!(%frontend, %backend, "backend connect timed out, trying the next one");
                continue;
            }
        };
        let _ = upstream.set_nodelay(true);
        if let Err(error) = pump_both(client, upstream).await {
            tracing::debug!(%frontend, %backend, %error, "connection ended with an error");
        }
        return;
    }
    tracing::debug!(%frontend, "no backend accepted the connection");
}

/// The plain copy, on the shared runtime, for backends the dialer connects (tunnelled pods).
async fn forward_through_dialer(
    client: std::net::TcpStream,
    frontend: SocketAddr,
    candidates: Vec<SocketAddr>,
    dialer: Dialer,
) {
    let Ok(mut client) = TcpStream::from_std(client) else {
        return;
    };
    for backend in candidates {
        let mut upstream = match dialer.connect(backend).await {
            Ok(upstream) => upstream,
            Err(error) => {
                tracing::debug!(%frontend, %backend, %error, "backend refused, trying the next one");
                continue;
            }
        };
        if let Err(error) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
            tracing::debug!(%frontend, %backend, %error, "connection ended with an error");
        }
        return;
    }
    tracing::debug!(%frontend, "no backend accepted the connection");
}

/// Forwards both directions of a connection in this task until both have ended (or one fails).
async fn pump_both(mut client: TcpStream, mut upstream: TcpStream) -> io::Result<()> {
    let (client_read, client_write) = client.split();
    let (upstream_read, upstream_write) = upstream.split();
    let up = pump(client_read, upstream_write);
    let down = pump(upstream_read, client_write);
    tokio::try_join!(up, down).map(|_| ())
}

/// Moves bytes from `from` to `to` until `from` ends, then shuts `to` down for writing.
async fn pump(
    mut from: tokio::net::tcp::ReadHalf<'_>,
    mut to: tokio::net::tcp::WriteHalf<'_>,
) -> io::Result<()> {
    let mut buffer = vec![0u8; BUFFER];
    let mut pipe: Option<Pipe> = None;
    loop {
        let n = from.read(&mut buffer).await?;
        if n == 0 {
            break;
        }
        to.write_all(&buffer[..n]).await?;
        if n < buffer.len() {
            continue;
        }
        // A full buffer: more is probably waiting; move it zero-copy while it comes in bulk.
        let pipe = match &mut pipe {
            Some(pipe) => pipe,
            None => match Pipe::new() {
                Ok(new) => pipe.insert(new),
                Err(_) => continue,
            },
        };
        match splice_bulk(from.as_ref(), to.as_ref(), pipe).await? {
            Bulk::Ended => break,
            Bulk::Slowed => {}
        }
    }
    to.shutdown().await
}

/// How a run of `splice(2)` ended.
enum Bulk {
    /// The source ended.
    Ended,
    /// A splice moved less than a chunk: back to the buffer, which needs fewer calls for small
    /// messages.
    Slowed,
}

/// Splices from `from` through `pipe` to `to` while every splice fills a whole chunk.
async fn splice_bulk(from: &TcpStream, to: &TcpStream, pipe: &mut Pipe) -> io::Result<Bulk> {
    loop {
        from.readable().await?;
        let n = match from.try_io(Interest::READABLE, || {
            splice(from, &pipe.write, SPLICE_CHUNK)
        }) {
            Ok(n) => n,
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => continue,
            Err(error) => return Err(error),
        };
        if n == 0 {
            return Ok(Bulk::Ended);
        }
        let mut left = n;
        while left > 0 {
            to.writable().await?;
            match to.try_io(Interest::WRITABLE, || splice(&pipe.read, to, left)) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(moved) => left -= moved,
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                Err(error) => return Err(error),
            }
        }
        if n < SPLICE_CHUNK {
            return Ok(Bulk::Slowed);
        }
    }
}

/// A pipe for `splice(2)`, both ends non-blocking.
struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
}

impl Pipe {
    fn new() -> io::Result<Self> {
        use rustix::pipe::PipeFlags;
        let (read, write) = rustix::pipe::pipe_with(PipeFlags::NONBLOCK | PipeFlags::CLOEXEC)?;
        Ok(Self { read, write })
    }
}

/// One non-blocking `splice(2)` of at most `len` bytes; `EAGAIN` is [`io::ErrorKind::WouldBlock`].
fn splice(from: impl AsFd, to: impl AsFd, len: usize) -> io::Result<usize> {
    use rustix::pipe::SpliceFlags;
    Ok(rustix::pipe::splice(
        from,
        None,
        to,
        None,
        len,
        SpliceFlags::MOVE | SpliceFlags::NONBLOCK,
    )?)
}

/// The worker a flow or frontend is served on, by its address.
pub(crate) fn worker_for(addr: SocketAddr, workers: usize) -> usize {
    let ip = match addr.ip() {
        IpAddr::V4(ip) => u32::from(ip) as usize,
        IpAddr::V6(ip) => u128::from(ip) as usize,
    };
    (ip ^ usize::from(addr.port())) % workers.max(1)
}
