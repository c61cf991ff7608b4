//! herd-dns: the cluster's names, without a DNS server.
//!
//! Kubernetes pods find Services through CoreDNS (its `kubernetes` plugin answers the names under
//! the cluster domain from Services and EndpointSlices) and the resolver rules the kubelet writes
//! into each pod's `/etc/resolv.conf` (a search list for the pod's namespace, `ndots:5`) and
//! `/etc/hosts` (the pod's own names, `hostAliases`). herd answers a guest's name lookups in
//! process instead, with the same results:
//!
//! - [`NameTable`]: what CoreDNS's `kubernetes` plugin would answer for each name under the cluster
//!   domain, a pure function of the Services and EndpointSlices;
//! - [`PodResolver`]: one pod's resolver (its namespace's search list, `ndots`, `dnsPolicy`,
//!   `dnsConfig`, hosts entries), which turns a name a guest asks for into a [`Resolution`];
//! - [`ClusterNames`]: the node's shared, current table (the proxy's watch of Services and
//!   EndpointSlices keeps it up to date; every pod's lookups read it).
//!
//! ```
//! use herd_dns::{NameTable, PodResolver, Resolution};
//! use k8s_openapi::api::core::v1::{Pod, Service};
//!
//! let web: Service = serde_json::from_value(serde_json::json!({
//!     "metadata": {"namespace": "other", "name": "web"},
//!     "spec": {"clusterIP": "10.96.0.7", "ports": [{"port": 80}]},
//! })).unwrap();
//! let table = NameTable::from_objects("cluster.local", [&web], []);
//! let pod: Pod = serde_json::from_value(serde_json::json!({
//!     "metadata": {"namespace": "shop", "name": "client"},
//! })).unwrap();
//! let resolver = PodResolver::for_pod(&pod, None, "cluster.local");
//! let ip = "10.96.0.7".parse().unwrap();
//! for name in ["web.other", "web.other.svc", "web.other.svc.cluster.local"] {
//!     assert_eq!(resolver.resolve(&table, name), Resolution::Addresses(vec![ip]));
//! }
//! // Not a name of the cluster: the host's resolver is asked.
//! assert_eq!(
//!     resolver.resolve(&table, "example.com"),
//!     Resolution::Host { names: vec!["example.com".into()], otherwise: vec![] },
//! );
//! // Under the cluster domain but unknown: NXDOMAIN, never the host.
//! assert_eq!(resolver.resolve(&table, "nope.other.svc.cluster.local."), Resolution::NotFound);
//! ```
//!
//! **No I/O, no async**: the host's resolver is the caller's.

mod pod;
mod table;

use std::net::IpAddr;
use std::sync::{Arc, RwLock};

pub use pod::{DnsPolicy, PodResolver};
pub use table::NameTable;

/// The cluster domain when none is configured (the kubelet's and CoreDNS's usual `cluster.local`).
pub const DEFAULT_CLUSTER_DOMAIN: &str = "cluster.local";

/// What a lookup of one name comes to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resolution {
    /// The cluster (or the pod's hosts entries) answers these addresses.
    Addresses(Vec<IpAddr>),
    /// No such name (NXDOMAIN): the name and every search-list candidate are under the cluster
    /// domain and none exists.
    NotFound,
    /// Ask the host's resolver for each of `names` in turn (names outside the cluster domain, in
    /// the order the pod's search rules try them); the first that resolves is the answer; if
    /// none does, `otherwise` (a cluster answer the search list reached later; empty: not found).
    Host {
        names: Vec<String>,
        otherwise: Vec<IpAddr>,
    },
}

/// The node's current [`NameTable`], shared: one writer (the proxy's watch of Services and
/// EndpointSlices) and every pod's lookups. Cheap to clone; every clone sees the newest table.
#[derive(Clone, Debug)]
pub struct ClusterNames {
    current: Arc<RwLock<Arc<NameTable>>>,
    /// Whether the table reflects a complete list of Services and EndpointSlices yet.
    synced: Arc<tokio::sync::watch::Sender<bool>>,
}

impl ClusterNames {
    /// An empty table for `domain` (every cluster name is NXDOMAIN until the first update).
    pub fn new(domain: &str) -> Self {
        Self {
            current: Arc::new(RwLock::new(Arc::new(NameTable::new(domain)))),
            synced: Arc::new(tokio::sync::watch::channel(false).0),
        }
    }

    /// The cluster domain.
    pub fn domain(&self) -> String {
        self.table().domain().to_owned()
    }

    /// Replaces the table with one built from `services` and `slices` (see
    /// [`NameTable::from_objects`]), keeping the domain.
    pub fn update<'a>(
        &self,
        services: impl IntoIterator<Item = &'a k8s_openapi::api::core::v1::Service>,
        slices: impl IntoIterator<Item = &'a k8s_openapi::api::discovery::v1::EndpointSlice>,
    ) {
        let domain = self.domain();
        let table = Arc::new(NameTable::from_objects(&domain, services, slices));
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = table;
    }

    /// Records that the table now reflects a complete list of Services and EndpointSlices (the
    /// writer's first full list), which [`ClusterNames::wait_synced`] waits for.
    pub fn mark_synced(&self) {
        self.synced
            .send_if_modified(|synced| !std::mem::replace(synced, true));
    }

    /// Waits until the table reflects a complete list (returns at once once it has): a pod's
    /// containers start only then, as CoreDNS answers only once its caches have synced, so a name
    /// that exists is never NXDOMAIN for a container started right after the node.
    pub async fn wait_synced(&self) {
        let mut synced = self.synced.subscribe();
        // The sender lives as long as `self`, so this only ends when the table is synced.
        let _ = synced.wait_for(|synced| *synced).await;
    }

    /// The current table.
    pub fn table(&self) -> Arc<NameTable> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// `name` looked up by `resolver` in the current table.
    pub fn resolve(&self, resolver: &PodResolver, name: &str) -> Resolution {
        resolver.resolve(&self.table(), name)
    }
}

/// `name` in the canonical form the tables use: lower case, without the trailing dot.
fn canonical(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// Whether `name` (canonical) is `domain` or under it.
fn is_under(name: &str, domain: &str) -> bool {
    name == domain
        || name
            .strip_suffix(domain)
            .is_some_and(|head| head.ends_with('.'))
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn containers_wait_for_the_first_complete_list_only() {
        let names = super::ClusterNames::new("cluster.local");
        let waiting = tokio::spawn({
            let names = names.clone();
            async move { names.wait_synced().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "synced before any list");
        names.update([], []);
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "an update is not a complete list");
        names.mark_synced();
        waiting.await.expect("waiter");
        // Once synced, a wait returns at once.
        names.wait_synced().await;
    }

    use super::*;

    #[test]
    fn names_under_a_domain() {
        assert!(is_under("cluster.local", "cluster.local"));
        assert!(is_under("web.ns.svc.cluster.local", "cluster.local"));
        assert!(!is_under("mycluster.local", "cluster.local"));
        assert!(!is_under("example.com", "cluster.local"));
        assert_eq!(
            canonical("Web.Other.SVC.cluster.local."),
            "web.other.svc.cluster.local"
        );
    }

    #[test]
    fn the_shared_table_follows_updates() {
        let names = ClusterNames::new("cluster.local");
        let clone = names.clone();
        let service: k8s_openapi::api::core::v1::Service =
            serde_json::from_value(serde_json::json!({
                "metadata": {"namespace": "ns", "name": "web"},
                "spec": {"clusterIP": "10.96.0.7"},
            }))
            .expect("service");
        let pod = serde_json::from_value(serde_json::json!({"metadata": {"namespace": "ns"}}))
            .expect("pod");
        let resolver = PodResolver::for_pod(&pod, None, &names.domain());
        assert_eq!(
            clone.resolve(&resolver, "web.ns.svc.cluster.local"),
            Resolution::NotFound
        );
        names.update([&service], []);
        assert_eq!(
            clone.resolve(&resolver, "web"),
            Resolution::Addresses(vec!["10.96.0.7".parse().expect("ip")])
        );
    }
}
