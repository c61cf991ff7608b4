//! herd-proxy: herd's kube-proxy.
//!
//! Watches Services and `discovery.k8s.io/v1` EndpointSlices through the API (as kube-proxy has
//! since 1.19; it never reads Endpoints), turns them into a [`RoutingTable`] (`clusterIP:port` →
//! ready `podIP:port`s, the slices of each Service merged) and hands each table to a
//! [`Forwarder`], which listens on every cluster address (with `SO_REUSEPORT`, so the proxies of
//! several nodes on one host can share it) and forwards each TCP connection to the next backend,
//! round robin.
//!
//! ```text
//! Services ─────┐ reflector stores ┌─▶ RoutingTable ─▶ Forwarder ─▶ listener per clusterIP:port
//! EndpointSlices ┘                  │                       │          └─▶ copy_bidirectional to podIP:port
//!                                   │                       ▼ ListenStates
//!                                   └──────────▶ status::verdicts ─▶ Service `Listening` condition + Event
//! ```
//!
//! A port the proxy cannot listen on (below `net.ipv4.ip_unprivileged_port_start` for an ordinary
//! user, 1024 on most systems) is served on a fallback port of the same cluster IP instead: the
//! [`Redirects`] map `clusterIP:port → clusterIP:fallback` tells the node where to send its guests'
//! connections, and the Service gets the condition `Listening=False` and a `FailedToListen`
//! Warning event naming the cause and the fix. Nothing in the host's own network namespace lets an
//! ordinary user listen below that port: a user namespace's capabilities cover only the network
//! namespaces it owns, and host clients cannot reach those without root's help either.

mod activator;
pub mod activity;
mod affinity;
mod balancer;
mod datapath;
mod dialer;
mod forwarder;
mod routes;
pub mod status;
mod udp;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Api, Client};
use tokio_util::sync::CancellationToken;

pub use activator::{Activator, HOLD_TIMEOUT, LocalReadiness};
pub use activity::Activity;
pub use balancer::Balancer;
pub use dialer::{BoxConnection, Connection, Dialer};
pub use forwarder::{Forwarder, ListenError, ListenState, ListenStates, Redirects};
pub use routes::{DEFAULT_AFFINITY_TIMEOUT, NodeInfo, Protocol, RoutingTable, ServiceRef};
pub use udp::{MAX_FLOWS, REPLIED_TIMEOUT, UNREPLIED_TIMEOUT};

/// What a proxy needs besides its client.
#[derive(Clone, Debug)]
pub struct ProxyConfig {
    /// The node this proxy runs for (the host of its events, and the node whose endpoints a
    /// traffic policy `Local` keeps).
    pub node_name: String,
    /// The node's addresses, where NodePorts listen (`herd up`: 127.0.0.1; `herd node`: its
    /// `--address`).
    pub node_addresses: Vec<std::net::IpAddr>,
    /// Kept current with the frontends served on a fallback port, for the node's guests.
    pub redirects: Redirects,
    /// How backends are connected to: [`Dialer::direct`], or the node's pod network, which reaches pods
    /// of other hosts through their node agents.
    pub dialer: Dialer,
    /// Chooses the backend of each connection; kept current with the routing table, and shared
    /// with the node's guests (socket-level load balancing).
    pub balancer: Balancer,
    /// The cluster's DNS names, kept current from the same Services and EndpointSlices, for the
    /// node's guests' name lookups (no second watch of them).
    pub names: herd_dns::ClusterNames,
}

/// Why the proxy stopped before it was told to.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The Service or EndpointSlice watch stream ended, which the watcher never does on its own.
    #[error("the {0} watch ended unexpectedly")]
    WatchEnded(&'static str),
}

/// Which watch an event came from.
#[derive(Clone, Copy, Debug)]
enum Source {
    Services,
    EndpointSlices,
}

impl Source {
    fn name(self) -> &'static str {
        match self {
            Source::Services => "Service",
            Source::EndpointSlices => "EndpointSlice",
        }
    }
}

/// Runs the proxy until `shutdown` is cancelled. Watch errors are logged and retried with
/// back-off; they never end the proxy.
///
/// # Errors
///
/// [`ProxyError::WatchEnded`] if a watch stream ends by itself.
pub async fn run(
    client: Client,
    config: ProxyConfig,
    shutdown: CancellationToken,
) -> Result<(), ProxyError> {
    let (services, services_writer) = reflector::store::<Service>();
    let (slices, slices_writer) = reflector::store::<EndpointSlice>();
    let service_events = reflector(
        services_writer,
        watcher(Api::all(client.clone()), watcher::Config::default()),
    )
    .default_backoff()
    .map_ok(|_| ())
    .map(|event| (Source::Services, event));
    let slice_events = reflector(
        slices_writer,
        watcher(Api::all(client.clone()), watcher::Config::default()),
    )
    .default_backoff()
    .map_ok(|_| ())
    .map(|event| (Source::EndpointSlices, event));
    let mut events = std::pin::pin!(futures::stream::select(service_events, slice_events));

    let balancer = config.balancer;
    let names = config.names;
    // Holds connections to Services that scale to zero while they have no endpoint.
    let activator = Activator::new(balancer.clone());
    // … and wakes them: the Deployment's 0 → 1 and a watch of the Service's pods.
    let waker = tokio::spawn(
        activator
            .clone()
            .run(client.clone(), shutdown.child_token()),
    );
    let mut forwarder = Forwarder::with_redirects(shutdown.child_token(), config.redirects)
        .with_dialer(config.dialer)
        .with_balancer(balancer.clone());
    let node = NodeInfo {
        name: config.node_name.clone(),
        addresses: config.node_addresses,
    };
    let mut states = forwarder.states();
    let (verdicts, verdicts_rx) = tokio::sync::watch::channel(Default::default());
    let reporter = tokio::spawn(status::report(
        client,
        config.node_name,
        services.clone(),
        verdicts_rx,
        shutdown.child_token(),
    ));
    let port_start = status::unprivileged_port_start();
    let mut table = RoutingTable::new();
    let result = loop {
        tokio::select! {
            () = shutdown.cancelled() => break Ok(()),
            changed = states.changed() => if changed.is_err() {
                break Err(ProxyError::WatchEnded("listen state"));
            },
            event = events.next() => match event {
                None => break Err(ProxyError::WatchEnded("Service or EndpointSlice")),
                Some((source, Err(error))) => {
                    tracing::warn!(watch = source.name(), %error, "watch failed, retrying");
                    continue;
                }
                Some((_, Ok(()))) => {
                    let synced = is_ready(&services) && is_ready(&slices);
                    let services = services.state();
                    let slices = slices.state();
                    table = RoutingTable::for_node(
                        &node,
                        services.iter().map(|s| &**s),
                        slices.iter().map(|s| &**s),
                    );
                    balancer.update(table.clone());
                    names.update(services.iter().map(|s| &**s), slices.iter().map(|s| &**s));
                    if synced {
                        names.mark_synced();
                    }
                    activator.update(services.iter().map(|s| &**s));
                    forwarder.update(table.clone());
                }
            },
        }
        let now = status::verdicts(&table, &states.borrow_and_update(), port_start);
        verdicts.send_if_modified(|last| {
            let changed = *last != now;
            *last = now;
            changed
        });
    };
    forwarder.shutdown().await;
    reporter.abort();
    waker.abort();
    result
}

/// Whether `store` holds a complete list (its watcher's first `InitDone` has been applied).
fn is_ready<K>(store: &reflector::Store<K>) -> bool
where
    K: kube::Resource + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    futures::FutureExt::now_or_never(store.wait_until_ready()).is_some_and(|ready| ready.is_ok())
}
