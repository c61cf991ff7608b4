//! The data path: one listener per frontend address of the current [`RoutingTable`], forwarding
//! each accepted TCP connection to the next backend in round-robin order, connected through the
//! forwarder's [`Dialer`] (direct TCP, or the node's pod network for pods of other hosts).
//!
//! A frontend that cannot be bound (a port below `net.ipv4.ip_unprivileged_port_start` for an
//! ordinary user, or an address another program holds) is served on a fallback port of the same
//! cluster IP instead ([`ListenState::Fallback`]), which [`Redirects`] tells the node's guests
//! about; the Service's own port is tried again in the background until it can be bound.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::dialer::Dialer;
use crate::routes::RoutingTable;

const BIND_RETRY_MIN: Duration = Duration::from_secs(1);
const BIND_RETRY_MAX: Duration = Duration::from_secs(30);
const LISTEN_BACKLOG: i32 = 1024;
/// A privileged port `p` falls back to `p + FALLBACK_OFFSET` (80 → 8080, 443 → 8443), a port a
/// user may guess; other ports (and a taken guess) to a port the kernel picks.
const FALLBACK_OFFSET: u16 = 8000;

/// Why a frontend could not be bound.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListenError {
    /// The kind of the bind error: `PermissionDenied` for a privileged port, `AddrInUse` for an
    /// address another program holds.
    pub kind: io::ErrorKind,
    /// The error as the OS words it.
    pub message: String,
}

impl From<&io::Error> for ListenError {
    fn from(error: &io::Error) -> Self {
        Self {
            kind: error.kind(),
            message: error.to_string(),
        }
    }
}

/// How a frontend of the routing table is served.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListenState {
    /// Listening on the frontend itself.
    Listening,
    /// The frontend cannot be bound (`error`); its connections are taken on `on` (same IP, another
    /// port) instead, where guests are redirected and host clients may connect.
    Fallback { on: SocketAddr, error: ListenError },
    /// Neither the frontend nor a fallback could be bound; retrying.
    Failed { error: ListenError },
}

/// The frontends this proxy serves on another address, `clusterIP:port → clusterIP:fallback`,
/// for the node to redirect its guests' connections. Cheap to clone; every clone sees the
/// newest map.
#[derive(Clone, Debug, Default)]
pub struct Redirects(Arc<RwLock<HashMap<SocketAddr, SocketAddr>>>);

impl Redirects {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// Where a connection to `addr` should go instead, if the proxy serves `addr` elsewhere.
    pub fn get(&self, addr: SocketAddr) -> Option<SocketAddr> {
        self.0.read().ok()?.get(&addr).copied()
    }

    fn set(&self, map: HashMap<SocketAddr, SocketAddr>) {
        if let Ok(mut current) = self.0.write() {
            *current = map;
        }
    }
}

/// The listen state of every frontend that has a listener.
pub type ListenStates = BTreeMap<SocketAddr, ListenState>;

/// Owns the listeners of a routing table. Listeners read the newest table for every
/// connection, so an update that only changes backends touches no socket.
pub struct Forwarder {
    table: watch::Sender<Arc<RoutingTable>>,
    listeners: HashMap<SocketAddr, CancellationToken>,
    board: Board,
    shutdown: CancellationToken,
    tasks: TaskTracker,
    dialer: Dialer,
}

impl Forwarder {
    /// A forwarder with no listeners; everything it starts stops when `shutdown` is cancelled.
    pub fn new(shutdown: CancellationToken) -> Self {
        Self::with_redirects(shutdown, Redirects::new())
    }

    /// A forwarder that keeps `redirects` current with its fallback listeners.
    pub fn with_redirects(shutdown: CancellationToken, redirects: Redirects) -> Self {
        let (table, _) = watch::channel(Arc::new(RoutingTable::new()));
        let (states, _) = watch::channel(ListenStates::new());
        Self {
            table,
            listeners: HashMap::new(),
            board: Board { states, redirects },
            shutdown,
            tasks: TaskTracker::new(),
            dialer: Dialer::direct(),
        }
    }

    /// Connects to backends with `dialer` (direct TCP by default).
    #[must_use]
    pub fn with_dialer(mut self, dialer: Dialer) -> Self {
        self.dialer = dialer;
        self
    }

    /// The map of frontends served on a fallback address.
    pub fn redirects(&self) -> &Redirects {
        &self.board.redirects
    }

    /// How each frontend is served; changes whenever a listener binds, falls back or stops.
    pub fn states(&self) -> watch::Receiver<ListenStates> {
        self.board.states.subscribe()
    }

    /// Makes `table` current: frontends that left it stop listening, new ones are bound (or
    /// fall back) before this returns; a frontend that could not be bound is retried in the
    /// background.
    pub fn update(&mut self, table: RoutingTable) {
        let mut gone = Vec::new();
        self.listeners.retain(|frontend, stop| {
            let keep = table.backends(*frontend).is_some();
            if !keep {
                tracing::info!(%frontend, "stop listening");
                stop.cancel();
                gone.push(*frontend);
            }
            keep
        });
        let new: Vec<SocketAddr> = table
            .frontends()
            .filter(|f| !self.listeners.contains_key(f))
            .collect();
        let taken: Vec<SocketAddr> = table.frontends().collect();
        self.table.send_replace(Arc::new(table));
        let mut opened = Vec::new();
        for frontend in new {
            let stop = self.shutdown.child_token();
            let (listener, state) = open(frontend, &taken);
            log_state(frontend, &state);
            let table = self.table.subscribe();
            let connections = Connections {
                tasks: self.tasks.clone(),
                shutdown: self.shutdown.clone(),
                dialer: self.dialer.clone(),
            };
            opened.push((frontend, state.clone()));
            self.tasks.spawn(serve(
                Frontend {
                    addr: frontend,
                    taken: taken.clone(),
                },
                listener,
                state,
                table,
                self.board.clone(),
                stop.clone(),
                connections,
            ));
            self.listeners.insert(frontend, stop);
        }
        self.board.update(|states| {
            for frontend in &gone {
                states.remove(frontend);
            }
            let changed = !gone.is_empty() || !opened.is_empty();
            states.extend(opened);
            changed
        });
    }

    /// The frontends that currently have a listener (bound, fallen back or retrying).
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

/// The listen states and the redirect map derived from them, changed together.
#[derive(Clone)]
struct Board {
    states: watch::Sender<ListenStates>,
    redirects: Redirects,
}

impl Board {
    /// Applies `change` (which says whether it changed anything) and republishes the redirects.
    fn update(&self, change: impl FnOnce(&mut ListenStates) -> bool) {
        self.states.send_if_modified(|states| {
            let changed = change(states);
            if changed {
                self.redirects.set(fallbacks(states));
            }
            changed
        });
    }
}

/// The redirect map of `states`: every frontend served on a fallback address.
fn fallbacks(states: &ListenStates) -> HashMap<SocketAddr, SocketAddr> {
    states
        .iter()
        .filter_map(|(frontend, state)| match state {
            ListenState::Fallback { on, .. } => Some((*frontend, *on)),
            _ => None,
        })
        .collect()
}

fn log_state(frontend: SocketAddr, state: &ListenState) {
    match state {
        ListenState::Listening => tracing::info!(%frontend, "listening"),
        ListenState::Fallback { on, error } => tracing::warn!(
            %frontend, fallback = %on, error = %error.message,
            "cannot listen on the Service port; serving it on a fallback port, where guests are redirected, \
             and retrying in the background"
        ),
        ListenState::Failed { error } => tracing::warn!(
            %frontend, error = %error.message,
            "cannot listen on the Service port nor on a fallback port; retrying in the background"
        ),
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

/// A frontend and the addresses of the whole table, which a fallback port must not take.
struct Frontend {
    addr: SocketAddr,
    taken: Vec<SocketAddr>,
}

/// Binds `frontend`, or else a fallback port on its IP: the listener (if any) and its state.
fn open(frontend: SocketAddr, taken: &[SocketAddr]) -> (Option<TcpListener>, ListenState) {
    let error = match bind(frontend) {
        Ok(listener) => return (Some(listener), ListenState::Listening),
        Err(error) => ListenError::from(&error),
    };
    let guess = frontend
        .port()
        .checked_add(FALLBACK_OFFSET)
        .filter(|_| frontend.port() < 1024)
        .map(|port| SocketAddr::new(frontend.ip(), port))
        .filter(|addr| !taken.contains(addr));
    let any_port = SocketAddr::new(frontend.ip(), 0);
    for candidate in guess.into_iter().chain([any_port]) {
        if let Ok(listener) = bind(candidate)
            && let Ok(on) = listener.local_addr()
        {
            return (Some(listener), ListenState::Fallback { on, error });
        }
    }
    (None, ListenState::Failed { error })
}

/// Where forwarded connections run: they outlive their listener and stop only at shutdown.
struct Connections {
    tasks: TaskTracker,
    shutdown: CancellationToken,
    dialer: Dialer,
}

/// Accepts connections for `frontend` until `stop`. While it is not `Listening` (no listener,
/// or a fallback one), the frontend's own address is retried with back-off.
async fn serve(
    frontend: Frontend,
    mut listener: Option<TcpListener>,
    mut state: ListenState,
    table: watch::Receiver<Arc<RoutingTable>>,
    board: Board,
    stop: CancellationToken,
    connections: Connections,
) {
    let addr = frontend.addr;
    let mut retry_delay = BIND_RETRY_MIN;
    let mut next = 0usize;
    loop {
        let retry = async {
            if state == ListenState::Listening {
                std::future::pending::<()>().await;
            }
            tokio::time::sleep(retry_delay).await;
        };
        let accept = async {
            match &listener {
                Some(listener) => listener.accept().await,
                None => std::future::pending().await,
            }
        };
        let accepted = tokio::select! {
            () = stop.cancelled() => return,
            () = retry => {
                retry_delay = (retry_delay * 2).min(BIND_RETRY_MAX);
                let (new_listener, new_state) = match bind(addr) {
                    Ok(bound) => (Some(bound), ListenState::Listening),
                    Err(error) if listener.is_some() => {
                        tracing::debug!(frontend = %addr, %error, "still cannot listen on the Service port");
                        continue;
                    }
                    Err(_) => open(addr, &frontend.taken),
                };
                if new_state != state {
                    log_state(addr, &new_state);
                    listener = new_listener;
                    state = new_state;
                    // Checked under the board's lock: `update` cancels a frontend that left the
                    // table before it removes its state under that lock, so a stopped frontend
                    // never comes back.
                    board.update(|states| {
                        !stop.is_cancelled() && states.insert(addr, state.clone()).as_ref() != Some(&state)
                    });
                }
                continue;
            }
            accepted = accept => accepted,
        };
        let (client, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(frontend = %addr, %error, "accept failed");
                continue;
            }
        };
        let backends: Vec<SocketAddr> = table
            .borrow()
            .backends(addr)
            .map(<[_]>::to_vec)
            .unwrap_or_default();
        if backends.is_empty() {
            tracing::debug!(frontend = %addr, %peer, "no endpoints, closing connection");
            continue;
        }
        let first = next % backends.len();
        next = next.wrapping_add(1);
        let shutdown = connections.shutdown.clone();
        let dialer = connections.dialer.clone();
        connections.tasks.spawn(async move {
            tokio::select! {
                () = shutdown.cancelled() => {}
                () = forward(client, &dialer, addr, &backends, first) => {}
            }
        });
    }
}

/// Connects to `backends[first]` (or the following ones if it refuses) and copies bytes both
/// ways until either side closes.
async fn forward(
    mut client: TcpStream,
    dialer: &Dialer,
    frontend: SocketAddr,
    backends: &[SocketAddr],
    first: usize,
) {
    for backend in backends.iter().cycle().skip(first).take(backends.len()) {
        let mut upstream = match dialer.connect(*backend).await {
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
