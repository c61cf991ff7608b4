//! The one place that chooses a backend for a connection to a Service: the host-side forwarder
//! asks it for each accepted connection, and the node's guests for each `connect` to a cluster
//! address (socket-level load balancing: the guest is connected straight to the endpoint, with
//! no proxy hop). Cheap to clone; every clone sees the newest [`RoutingTable`].

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::watch;

use crate::activity::{Activity, OpenGuard, ServiceActivity};
use crate::affinity::Affinities;
use crate::routes::{Protocol, RoutingTable, ServiceRef};

/// Chooses backends from the current routing table.
#[derive(Clone, Debug)]
pub struct Balancer {
    current: Arc<watch::Sender<Arc<Snapshot>>>,
    /// Connections per Service, for scale to zero.
    activity: Activity,
    /// The backend each client sticks to, for frontends with `sessionAffinity: ClientIP`.
    affinities: Arc<Affinities>,
}

/// A routing table with the round-robin position of each of its frontends.
#[derive(Debug, Default)]
struct Snapshot {
    table: RoutingTable,
    next: HashMap<(Protocol, SocketAddr), AtomicUsize>,
    /// Each frontend's Service's counters (found once per table, so a pick takes no lock).
    activity: HashMap<SocketAddr, Arc<ServiceActivity>>,
}

impl Default for Balancer {
    fn default() -> Self {
        Self::new()
    }
}

impl Balancer {
    /// A balancer with an empty table: every pick misses until the first [`Balancer::update`].
    pub fn new() -> Self {
        Self {
            current: Arc::new(watch::channel(Arc::new(Snapshot::default())).0),
            activity: Activity::new(),
            affinities: Arc::default(),
        }
    }

    /// Replaces the table. Frontends that keep their backends keep their round-robin position.
    pub fn update(&self, table: RoutingTable) {
        let old = self.current.borrow().clone();
        let frontends = [Protocol::Tcp, Protocol::Udp]
            .into_iter()
            .flat_map(|protocol| table.frontends_of(protocol).map(move |f| (protocol, f)));
        let next = frontends
            .map(|(protocol, frontend)| {
                let before = old.table.backends_of(protocol, frontend);
                let position = match (before, table.backends_of(protocol, frontend)) {
                    (Some(before), Some(now)) if before == now => old
                        .next
                        .get(&(protocol, frontend))
                        .map_or(0, |n| n.load(Ordering::Relaxed)),
                    _ => 0,
                };
                ((protocol, frontend), AtomicUsize::new(position))
            })
            .collect();
        self.affinities
            .retain(|protocol, frontend| table.affinity(protocol, frontend).is_some());
        let activity = table
            .frontends()
            .filter_map(|frontend| {
                let service = table.service(frontend)?;
                Some((frontend, self.activity.service(service)))
            })
            .collect();
        self.current.send_replace(Arc::new(Snapshot {
            table,
            next,
            activity,
        }));
    }

    /// The current table.
    pub fn table(&self) -> RoutingTable {
        self.current.borrow().table.clone()
    }

    /// Whether `addr` is a frontend (a Service's `clusterIP:port`) of the current table.
    pub fn is_frontend(&self, addr: SocketAddr) -> bool {
        self.current.borrow().table.backends(addr).is_some()
    }

    /// The Service `frontend` belongs to.
    pub fn service(&self, frontend: SocketAddr) -> Option<ServiceRef> {
        self.current.borrow().table.service(frontend).cloned()
    }

    /// The backend a new connection from `client` to `frontend` goes to, or `None` when
    /// `frontend` is not a Service port or has no usable endpoint. Quick (a map lookup and an
    /// atomic increment): called on a guest's thread for every connect.
    pub fn pick(&self, frontend: SocketAddr, client: IpAddr) -> Option<SocketAddr> {
        self.pick_for(Protocol::Tcp, frontend, client)
    }

    /// [`Balancer::pick`] for a `protocol` frontend: the backend of a new connection (TCP) or
    /// flow (UDP). A frontend with `sessionAffinity: ClientIP` gives `client` the backend it had
    /// within the timeout, if that one still serves.
    pub fn pick_for(
        &self,
        protocol: Protocol,
        frontend: SocketAddr,
        client: IpAddr,
    ) -> Option<SocketAddr> {
        let snapshot = self.current.borrow();
        let backends = snapshot.table.backends_of(protocol, frontend)?;
        if backends.is_empty() {
            return None;
        }
        if protocol == Protocol::Tcp
            && let Some(activity) = snapshot.activity.get(&frontend)
        {
            activity.connected();
        }
        let affinity = snapshot.table.affinity(protocol, frontend);
        let key = (protocol, frontend, client);
        if let Some(timeout) = affinity
            && let Some(sticky) = self.affinities.get(key, backends, timeout)
        {
            return Some(sticky);
        }
        let n = snapshot
            .next
            .get(&(protocol, frontend))
            .map_or(0, |n| n.fetch_add(1, Ordering::Relaxed));
        let chosen = backends[n % backends.len()];
        if let Some(timeout) = affinity {
            self.affinities.set(key, chosen, timeout);
        }
        Some(chosen)
    }

    /// Whether `backend` still serves `protocol` frontend `frontend` (a UDP flow keeps its backend
    /// while it does).
    pub fn serves(&self, protocol: Protocol, frontend: SocketAddr, backend: SocketAddr) -> bool {
        self.current
            .borrow()
            .table
            .backends_of(protocol, frontend)
            .is_some_and(|backends| backends.binary_search(&backend).is_ok())
    }

    /// Counts an open connection to `frontend` until the guard drops (scale to zero keeps a
    /// Service with open connections awake).
    pub fn open(&self, frontend: SocketAddr) -> Option<OpenGuard> {
        self.current
            .borrow()
            .activity
            .get(&frontend)
            .map(ServiceActivity::open)
    }

    /// The connection counts of every Service, which the node publishes.
    pub fn activity(&self) -> &Activity {
        &self.activity
    }

    /// The backends of `frontend` in the order a connection from `client` should try them: the
    /// picked one first, then the others (for a forwarder that skips backends that refuse).
    pub fn candidates(&self, frontend: SocketAddr, client: IpAddr) -> Vec<SocketAddr> {
        let Some(first) = self.pick(frontend, client) else {
            return Vec::new();
        };
        let snapshot = self.current.borrow();
        let backends = snapshot.table.backends(frontend).unwrap_or_default();
        let start = backends.iter().position(|b| *b == first).unwrap_or(0);
        backends
            .iter()
            .cycle()
            .skip(start)
            .take(backends.len())
            .copied()
            .collect()
    }

    /// Waits until `frontend` has a usable backend (returns at once if it has one now), or until
    /// it is no longer a frontend of the table (`false`). Callers bound the wait themselves.
    pub async fn wait_for_backends(&self, frontend: SocketAddr) -> bool {
        let mut tables = self.current.subscribe();
        loop {
            match tables.borrow_and_update().table.backends(frontend) {
                Some(backends) if !backends.is_empty() => return true,
                Some(_) => {}
                None => return false,
            }
            if tables.changed().await.is_err() {
                return false;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("address")
    }

    #[test]
    fn picks_round_robin_and_keeps_the_position_across_unrelated_updates() {
        let balancer = Balancer::new();
        let client: IpAddr = "127.1.0.9".parse().expect("ip");
        assert_eq!(balancer.pick(addr("127.10.0.1:80"), client), None);
        let mut table = RoutingTable::new();
        table.insert(
            addr("127.10.0.1:80"),
            vec![addr("127.1.0.2:8080"), addr("127.1.0.1:8080")],
        );
        table.insert(addr("127.10.0.2:80"), vec![]);
        balancer.update(table.clone());
        let first = balancer.pick(addr("127.10.0.1:80"), client);
        assert_eq!(first, Some(addr("127.1.0.1:8080")));
        table.insert(addr("127.10.0.3:80"), vec![addr("127.1.0.3:80")]);
        balancer.update(table);
        assert_eq!(
            balancer.pick(addr("127.10.0.1:80"), client),
            Some(addr("127.1.0.2:8080"))
        );
        assert_eq!(
            balancer.candidates(addr("127.10.0.1:80"), client),
            vec![addr("127.1.0.1:8080"), addr("127.1.0.2:8080")]
        );
        assert_eq!(balancer.pick(addr("127.10.0.2:80"), client), None);
        assert!(balancer.is_frontend(addr("127.10.0.2:80")));
        assert!(!balancer.is_frontend(addr("127.10.0.2:81")));
    }

    #[test]
    fn client_ip_affinity_sticks_per_client_until_its_backend_goes() {
        use std::time::Duration;
        let frontend = addr("127.10.0.9:80");
        let (a, b) = (addr("127.1.0.1:80"), addr("127.1.0.2:80"));
        let table = |backends: Vec<SocketAddr>| {
            let mut table = RoutingTable::new();
            table.insert_route(
                Protocol::Tcp,
                frontend,
                backends,
                None,
                Some(Duration::from_secs(60)),
            );
            table
        };
        let balancer = Balancer::new();
        balancer.update(table(vec![a, b]));
        let one: IpAddr = "127.0.0.5".parse().expect("ip");
        let two: IpAddr = "127.0.0.6".parse().expect("ip");
        let first = balancer.pick(frontend, one).expect("a backend");
        let second = balancer.pick(frontend, two).expect("a backend");
        assert_ne!(first, second, "new clients still go round robin");
        for _ in 0..5 {
            assert_eq!(balancer.pick(frontend, one), Some(first));
            assert_eq!(balancer.pick(frontend, two), Some(second));
            assert_eq!(balancer.candidates(frontend, one)[0], first);
        }
        // Its backend gone, the client gets another one and sticks to that.
        let left = if first == a { b } else { a };
        balancer.update(table(vec![left]));
        assert_eq!(balancer.pick(frontend, one), Some(left));
        balancer.update(table(vec![a, b]));
        assert_eq!(balancer.pick(frontend, one), Some(left));
        // Without affinity, the same client goes round robin.
        let mut plain = RoutingTable::new();
        plain.insert(frontend, vec![a, b]);
        balancer.update(plain);
        let picks: std::collections::BTreeSet<_> = (0..4)
            .filter_map(|_| balancer.pick(frontend, one))
            .collect();
        assert_eq!(picks.len(), 2);
    }
}
