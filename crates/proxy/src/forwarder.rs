//! The control side of the data path: one listener per frontend of the current [`RoutingTable`]
//! (one `SO_REUSEPORT` socket per data-path worker for TCP, [`crate::datapath`]; one socket for
//! UDP, [`crate::udp`]), each connection's backend chosen by the [`Balancer`] and reached directly
//! or through the forwarder's [`Dialer`] (the node's pod network for pods of other hosts).
//!
//! A TCP frontend that cannot be bound (a port below `net.ipv4.ip_unprivileged_port_start` for an
//! ordinary user, or an address another program holds) is served on a fallback port of the same
//! cluster IP instead ([`ListenState::Fallback`]), which [`Redirects`] tells the node's guests
//! about; the Service's own port is tried again in the background until it can be bound. A UDP
//! frontend that cannot be bound is retried the same way, without a fallback. A NodePort is never
//! shared with another program: one another socket holds is not bound.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use socket2::{Domain, Protocol as SocketProtocol, Socket, Type};
use tokio::runtime::Handle;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::balancer::Balancer;
use crate::datapath::{self, Context, Workers};
use crate::dialer::Dialer;
use crate::routes::{Protocol, RoutingTable};
use crate::udp;

pub(crate) const BIND_RETRY_MIN: Duration = Duration::from_secs(1);
pub(crate) const BIND_RETRY_MAX: Duration = Duration::from_secs(30);
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

/// The listen state of every TCP frontend that has a listener.
pub type ListenStates = BTreeMap<SocketAddr, ListenState>;

/// Owns the listeners of a routing table. Backends are chosen by the [`Balancer`] for every
/// connection, so an update that only changes backends touches no socket.
pub struct Forwarder {
    listeners: HashMap<(Protocol, SocketAddr), CancellationToken>,
    board: Board,
    shutdown: CancellationToken,
    tasks: TaskTracker,
    dialer: Dialer,
    balancer: Balancer,
    /// Whether [`Forwarder::update`] keeps the balancer current (one of its own), or its owner
    /// does ([`Forwarder::with_balancer`]).
    owns_balancer: bool,
    workers: Arc<Workers>,
}

impl Forwarder {
    /// A forwarder with no listeners; everything it starts stops when `shutdown` is cancelled.
    /// Starts the data-path threads; call it within a tokio runtime (the shared one, where
    /// connections to tunnelled backends are copied).
    pub fn new(shutdown: CancellationToken) -> Self {
        Self::with_redirects(shutdown, Redirects::new())
    }

    /// A forwarder that keeps `redirects` current with its fallback listeners.
    pub fn with_redirects(shutdown: CancellationToken, redirects: Redirects) -> Self {
        let (states, _) = watch::channel(ListenStates::new());
        Self {
            listeners: HashMap::new(),
            board: Board { states, redirects },
            shutdown,
            tasks: TaskTracker::new(),
            dialer: Dialer::direct(),
            balancer: Balancer::new(),
            owns_balancer: true,
            workers: Arc::new(Workers::start()),
        }
    }

    /// Connects to backends with `dialer` (direct TCP by default).
    #[must_use]
    pub fn with_dialer(mut self, dialer: Dialer) -> Self {
        self.dialer = dialer;
        self
    }

    /// Chooses backends with `balancer`, which its owner keeps current (by default the
    /// forwarder has a balancer of its own that [`Forwarder::update`] keeps current).
    #[must_use]
    pub fn with_balancer(mut self, balancer: Balancer) -> Self {
        self.balancer = balancer;
        self.owns_balancer = false;
        self
    }

    /// The map of frontends served on a fallback address.
    pub fn redirects(&self) -> &Redirects {
        &self.board.redirects
    }

    /// How each TCP frontend is served; changes whenever a listener binds, falls back or stops.
    pub fn states(&self) -> watch::Receiver<ListenStates> {
        self.board.states.subscribe()
    }

    /// Makes `table` current: frontends that left it stop listening, new ones are bound (or
    /// fall back) before this returns; a frontend that could not be bound is retried in the
    /// background.
    pub fn update(&mut self, table: RoutingTable) {
        if self.owns_balancer {
            self.balancer.update(table.clone());
        }
        let mut gone = Vec::new();
        self.listeners.retain(|(protocol, frontend), stop| {
            let keep = table.backends_of(*protocol, *frontend).is_some();
            if !keep {
                tracing::info!(%frontend, ?protocol, "stop listening");
                stop.cancel();
                gone.push(*frontend);
            }
            keep
        });
        let new: Vec<(Protocol, SocketAddr)> = [Protocol::Tcp, Protocol::Udp]
            .into_iter()
            .flat_map(|p| table.frontends_of(p).map(move |f| (p, f)))
            .filter(|key| !self.listeners.contains_key(key))
            .collect();
        let taken: Vec<SocketAddr> = table.frontends().collect();
        let mut opened = Vec::new();
        for (protocol, frontend) in new {
            let stop = self.shutdown.child_token();
            let exclusive = table.is_node_port(protocol, frontend);
            let context = Context {
                balancer: self.balancer.clone(),
                dialer: self.dialer.clone(),
                tasks: self.tasks.clone(),
                shutdown: self.shutdown.clone(),
                shared: Handle::current(),
                watch_shutdown: !self.workers.own_threads(),
            };
            let frontend_of = Frontend {
                addr: frontend,
                taken: taken.clone(),
                exclusive,
            };
            match protocol {
                Protocol::Tcp => {
                    let workers = self.workers.handles().len();
                    let (listeners, state) = open(&frontend_of, workers);
                    log_state(frontend, &state);
                    opened.push((frontend, state.clone()));
                    self.tasks.spawn(serve(
                        frontend_of,
                        listeners,
                        state,
                        self.board.clone(),
                        stop.clone(),
                        context,
                        self.workers.clone(),
                    ));
                }
                Protocol::Udp => {
                    self.tasks.spawn(udp::serve(
                        frontend,
                        exclusive,
                        stop.clone(),
                        context,
                        self.workers.clone(),
                    ));
                }
            }
            self.listeners.insert((protocol, frontend), stop);
        }
        self.board.update(|states| {
            let mut changed = false;
            for frontend in &gone {
                if !self.listeners.contains_key(&(Protocol::Tcp, *frontend)) {
                    changed |= states.remove(frontend).is_some();
                }
            }
            changed |= !opened.is_empty();
            states.extend(opened);
            changed
        });
    }

    /// The TCP frontends that currently have a listener (bound, fallen back or retrying).
    pub fn frontends(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        self.listeners
            .keys()
            .filter(|(p, _)| *p == Protocol::Tcp)
            .map(|(_, f)| *f)
    }

    /// Stops every listener and connection and waits for them to finish.
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        self.workers.stop();
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

/// A socket of `kind` bound to `addr` that other sockets of this user may share
/// (`SO_REUSEPORT`): the data-path workers, and the proxies of other nodes on this host. With
/// `exclusive`, only if no socket holds `addr` yet.
pub(crate) fn bind_socket(addr: SocketAddr, kind: Type, exclusive: bool) -> io::Result<Socket> {
    let protocol = if kind == Type::DGRAM {
        SocketProtocol::UDP
    } else {
        SocketProtocol::TCP
    };
    if exclusive && addr.port() != 0 {
        // A probe without SO_REUSEPORT fails on an address any other socket holds.
        let probe = Socket::new(Domain::for_address(addr), kind, Some(protocol))?;
        if kind == Type::STREAM {
            probe.set_reuse_address(true)?;
        }
        probe.bind(&addr.into())?;
    }
    let socket = Socket::new(Domain::for_address(addr), kind, Some(protocol))?;
    if kind == Type::STREAM {
        socket.set_reuse_address(true)?;
    }
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    Ok(socket)
}

/// `count` listening sockets on `addr` (one per worker), sharing it through `SO_REUSEPORT`; a
/// port 0 is the port the kernel picks for the first.
fn bind_group(
    addr: SocketAddr,
    count: usize,
    exclusive: bool,
) -> io::Result<Vec<std::net::TcpListener>> {
    let mut group = Vec::with_capacity(count);
    let mut addr = addr;
    for _ in 0..count.max(1) {
        let socket = bind_socket(addr, Type::STREAM, exclusive && group.is_empty())?;
        socket.listen(LISTEN_BACKLOG)?;
        let listener: std::net::TcpListener = socket.into();
        addr = listener.local_addr()?;
        group.push(listener);
    }
    Ok(group)
}

/// A frontend and the addresses of the whole table, which a fallback port must not take.
struct Frontend {
    addr: SocketAddr,
    taken: Vec<SocketAddr>,
    /// A NodePort: not shared with another program.
    exclusive: bool,
}

/// Binds `frontend` (`count` sockets), or else a fallback port on its IP: the listeners (if any)
/// and their state.
fn open(frontend: &Frontend, count: usize) -> (Option<Vec<std::net::TcpListener>>, ListenState) {
    let error = match bind_group(frontend.addr, count, frontend.exclusive) {
        Ok(listeners) => return (Some(listeners), ListenState::Listening),
        Err(error) => ListenError::from(&error),
    };
    // A NodePort is a promise of that very port on the node: no fallback, retried until it is free.
    if frontend.exclusive {
        return (None, ListenState::Failed { error });
    }
    let port = frontend.addr.port();
    let guess = port
        .checked_add(FALLBACK_OFFSET)
        .filter(|_| port < 1024)
        .map(|port| SocketAddr::new(frontend.addr.ip(), port))
        .filter(|addr| !frontend.taken.contains(addr));
    let any_port = SocketAddr::new(frontend.addr.ip(), 0);
    for candidate in guess.into_iter().chain([any_port]) {
        if let Ok(listeners) = bind_group(candidate, count, true)
            && let Some(on) = listeners.first().and_then(|l| l.local_addr().ok())
        {
            return (Some(listeners), ListenState::Fallback { on, error });
        }
    }
    (None, ListenState::Failed { error })
}

/// Serves `frontend` until `stop`: its listeners' accept loops run on the workers, one each.
/// While it is not `Listening` (no listener, or a fallback one), the frontend's own address is
/// retried with back-off, and the accept loops replaced when it binds.
async fn serve(
    frontend: Frontend,
    listeners: Option<Vec<std::net::TcpListener>>,
    mut state: ListenState,
    board: Board,
    stop: CancellationToken,
    context: Context,
    workers: Arc<Workers>,
) {
    let addr = frontend.addr;
    let start = |listeners: Option<Vec<std::net::TcpListener>>| {
        let generation = stop.child_token();
        for (listener, worker) in listeners.into_iter().flatten().zip(workers.handles()) {
            context.tasks.spawn_on(
                datapath::accept_loop(addr, listener, context.clone(), generation.clone()),
                worker,
            );
        }
        generation
    };
    let mut generation = start(listeners);
    let mut retry_delay = BIND_RETRY_MIN;
    loop {
        let retry = async {
            if state == ListenState::Listening {
                std::future::pending::<()>().await;
            }
            tokio::time::sleep(retry_delay).await;
        };
        tokio::select! {
            () = stop.cancelled() => return,
            () = retry => {}
        }
        retry_delay = (retry_delay * 2).min(BIND_RETRY_MAX);
        let serving = !matches!(state, ListenState::Failed { .. });
        let (new_listeners, new_state) = match bind_group(
            addr,
            workers.handles().len(),
            frontend.exclusive,
        ) {
            Ok(bound) => (Some(bound), ListenState::Listening),
            Err(error) if serving => {
                tracing::debug!(frontend = %addr, %error, "still cannot listen on the Service port");
                continue;
            }
            Err(_) => open(&frontend, workers.handles().len()),
        };
        if new_state == state {
            continue;
        }
        log_state(addr, &new_state);
        generation.cancel();
        generation = start(new_listeners);
        state = new_state;
        // Checked under the board's lock: `update` cancels a frontend that left the table
        // before it removes its state under that lock, so a stopped frontend never comes back.
        board.update(|states| {
            !stop.is_cancelled() && states.insert(addr, state.clone()).as_ref() != Some(&state)
        });
    }
}
