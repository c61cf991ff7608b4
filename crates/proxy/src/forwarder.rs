//! The data path: one listener per frontend address of the current [`RoutingTable`], forwarding
//! each accepted TCP connection to the next backend in round-robin order.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::routes::RoutingTable;

const BIND_RETRY_MIN: Duration = Duration::from_secs(1);
const BIND_RETRY_MAX: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const LISTEN_BACKLOG: i32 = 1024;

/// Owns the listeners of a routing table. Listeners read the newest table for every
/// connection, so an update that only changes backends touches no socket.
pub struct Forwarder {
    table: watch::Sender<Arc<RoutingTable>>,
    listeners: HashMap<SocketAddr, CancellationToken>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
}

impl Forwarder {
    /// A forwarder with no listeners; everything it starts stops when `shutdown` is cancelled.
    pub fn new(shutdown: CancellationToken) -> Self {
        let (table, _) = watch::channel(Arc::new(RoutingTable::new()));
        Self {
            table,
            listeners: HashMap::new(),
            shutdown,
            tasks: TaskTracker::new(),
        }
    }

    /// Makes `table` current: frontends that left it stop listening, new ones are bound before
    /// this returns (a bind that fails is logged and retried in the background).
    pub fn update(&mut self, table: RoutingTable) {
        self.listeners.retain(|frontend, stop| {
            let keep = table.backends(*frontend).is_some();
            if !keep {
                tracing::info!(%frontend, "stop listening");
                stop.cancel();
            }
            keep
        });
        let new: Vec<SocketAddr> = table
            .frontends()
            .filter(|f| !self.listeners.contains_key(f))
            .collect();
        self.table.send_replace(Arc::new(table));
        for frontend in new {
            let stop = self.shutdown.child_token();
            let listener = bind(frontend);
            if let Err(error) = &listener {
                tracing::warn!(%frontend, %error, "cannot listen yet, will retry");
            }
            let table = self.table.subscribe();
            let connections = Connections {
                tasks: self.tasks.clone(),
                shutdown: self.shutdown.clone(),
            };
            self.tasks.spawn(serve(
                frontend,
                listener.ok(),
                table,
                stop.clone(),
                connections,
            ));
            self.listeners.insert(frontend, stop);
        }
    }

    /// The frontends that currently have a listener (bound or retrying).
    pub fn frontends(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        self.listeners.keys().copied()
    }

    /// Stops every listener and connection and waits for them to finish.
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        self.tasks.close();
        self.tasks.wait().await;
    }
}

/// A listening socket on `addr` that other proxies on this host may share.
fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    TcpListener::from_std(socket.into())
}

/// Where forwarded connections run: they outlive their listener and stop only at shutdown.
struct Connections {
    tasks: TaskTracker,
    shutdown: CancellationToken,
}

/// Accepts connections on `frontend` until `stop`, binding first if `listener` is `None`.
async fn serve(
    frontend: SocketAddr,
    listener: Option<TcpListener>,
    table: watch::Receiver<Arc<RoutingTable>>,
    stop: CancellationToken,
    connections: Connections,
) {
    let listener = match listener {
        Some(listener) => listener,
        None => match bind_with_retry(frontend, &stop).await {
            Some(listener) => listener,
            None => return,
        },
    };
    tracing::info!(%frontend, "listening");
    let mut next = 0usize;
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let (client, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(%frontend, %error, "accept failed");
                continue;
            }
        };
        let backends: Vec<SocketAddr> = table
            .borrow()
            .backends(frontend)
            .map(<[_]>::to_vec)
            .unwrap_or_default();
        if backends.is_empty() {
            tracing::debug!(%frontend, %peer, "no endpoints, closing connection");
            continue;
        }
        let first = next % backends.len();
        next = next.wrapping_add(1);
        let shutdown = connections.shutdown.clone();
        connections.tasks.spawn(async move {
            tokio::select! {
                () = shutdown.cancelled() => {}
                () = forward(client, frontend, &backends, first) => {}
            }
        });
    }
}

async fn bind_with_retry(frontend: SocketAddr, stop: &CancellationToken) -> Option<TcpListener> {
    let mut delay = BIND_RETRY_MIN;
    loop {
        tokio::select! {
            () = stop.cancelled() => return None,
            () = tokio::time::sleep(delay) => {}
        }
        match bind(frontend) {
            Ok(listener) => return Some(listener),
            Err(error) => tracing::warn!(%frontend, %error, "cannot listen yet, will retry"),
        }
        delay = (delay * 2).min(BIND_RETRY_MAX);
    }
}

/// Connects to `backends[first]` (or the following ones if it refuses) and copies bytes both
/// ways until either side closes.
async fn forward(
    mut client: TcpStream,
    frontend: SocketAddr,
    backends: &[SocketAddr],
    first: usize,
) {
    for backend in backends.iter().cycle().skip(first).take(backends.len()) {
        let connected = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(backend)).await;
        let mut upstream = match connected {
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
        if let Err(error) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
            tracing::debug!(%frontend, %backend, %error, "connection ended with an error");
        }
        return;
    }
    tracing::debug!(%frontend, "no backend accepted the connection");
}
