//! Traffic per Service, for scale to zero: counted on the data path with atomics only (no lock, no
//! write per connection) and published by the node at a coarse interval in an annotation of its own
//! Lease (`kube-node-lease/<node>`, [`herd_api::autoscaling::ACTIVITY`]), which the control plane's
//! scale-to-zero controller reads from its informer cache.
//!
//! A node's Lease is the object it already may write (the Node authorizer allows it that one Lease)
//! and has one writer, so several nodes never contend; the controller sums every node's counts. The
//! node writes only when a count changed, at most once per [`PUBLISH_INTERVAL`], and at once when a
//! connection is held for a Service at zero (the wake-up, one write for every connection held
//! meanwhile).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use herd_api::autoscaling::{ACTIVITY, Counts};
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::routes::ServiceRef;

/// How often a node publishes its counts when they change.
pub const PUBLISH_INTERVAL: Duration = Duration::from_secs(1);
/// The namespace of the nodes' Leases.
const LEASE_NAMESPACE: &str = "kube-node-lease";

/// The counters of one Service on this node.
#[derive(Debug, Default)]
pub struct ServiceActivity {
    /// Connections to the Service since this node started (host clients and guests).
    connections: AtomicU64,
    /// Connections through the proxy open now.
    open: AtomicU64,
    /// Connections the proxy holds now, waiting for the Service's first endpoint.
    held: AtomicU64,
}

impl ServiceActivity {
    /// Counts a new connection.
    pub fn connected(&self) {
        self.connections.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts an open connection until the guard drops.
    pub fn open(self: &Arc<Self>) -> OpenGuard {
        self.open.fetch_add(1, Ordering::Relaxed);
        OpenGuard(self.clone())
    }

    /// Connections held now, waiting for the Service's first endpoint.
    pub fn held(&self) -> u64 {
        self.held.load(Ordering::Relaxed)
    }

    fn counts(&self) -> Counts {
        Counts {
            connections: self.connections.load(Ordering::Relaxed),
            open: self.open.load(Ordering::Relaxed),
            held: self.held.load(Ordering::Relaxed),
        }
    }
}

/// An open connection of a Service; closing it (dropping the guard) is counted.
#[derive(Debug)]
pub struct OpenGuard(Arc<ServiceActivity>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A connection held while its Service wakes up.
#[derive(Debug)]
pub struct HeldGuard(Arc<ServiceActivity>);

impl Drop for HeldGuard {
    fn drop(&mut self) {
        self.0.held.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Every Service's counters on this node. Cheap to clone; clones share the counters.
#[derive(Clone, Debug, Default)]
pub struct Activity {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Locked only to find a Service's counters when the routing table changes, a connection is held,
    /// or the publisher reads them: never per connection.
    services: Mutex<HashMap<ServiceRef, Arc<ServiceActivity>>>,
    wake: Notify,
    /// The Services that scale to zero (their connections are held while they have no endpoint).
    scaling_to_zero: RwLock<HashSet<ServiceRef>>,
    /// What the activators holding connections for those Services share.
    activator: crate::activator::Shared,
}

impl Activity {
    /// No counts yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The counters of `service` (created at first use).
    pub fn service(&self, service: &ServiceRef) -> Arc<ServiceActivity> {
        let mut services = self
            .inner
            .services
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        services.entry(service.clone()).or_default().clone()
    }

    /// Makes `services` the set of Services that scale to zero.
    pub fn set_scaling_to_zero(&self, services: HashSet<ServiceRef>) {
        if let Ok(mut current) = self.inner.scaling_to_zero.write()
            && *current != services
        {
            *current = services;
        }
    }

    /// The activators' shared state.
    pub(crate) fn activator(&self) -> &crate::activator::Shared {
        &self.inner.activator
    }

    /// Whether `service` scales to zero.
    pub fn scales_to_zero(&self, service: &ServiceRef) -> bool {
        self.inner
            .scaling_to_zero
            .read()
            .is_ok_and(|set| set.contains(service))
    }

    /// Counts a connection to `service` held until it has an endpoint; the first asks the publisher
    /// to publish now (the controller wakes the Service's Deployment when it sees it) unless
    /// `woken_here`: this node's activator is waking it and calls [`Activity::publish_now`] after its
    /// write (publishing at once would put the Lease's write beside it on the wake-up's path).
    pub fn hold(&self, service: &ServiceRef, woken_here: bool) -> HeldGuard {
        let counters = self.service(service);
        counters.connected();
        let first = counters.held.fetch_add(1, Ordering::Relaxed) == 0;
        if first && !woken_here {
            self.publish_now();
        }
        HeldGuard(counters)
    }

    /// Asks the publisher to publish the counts now.
    pub fn publish_now(&self) {
        self.inner.wake.notify_one();
    }

    /// Every Service with traffic on this node, by `namespace/name`.
    pub fn snapshot(&self) -> BTreeMap<String, Counts> {
        let services = self
            .inner
            .services
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        services
            .iter()
            .map(|(service, counters)| {
                (
                    format!("{}/{}", service.namespace, service.name),
                    counters.counts(),
                )
            })
            .filter(|(_, counts)| !counts.is_zero())
            .collect()
    }

    /// Publishes the counts in `node`'s Lease whenever they change, at most every `interval`, and at
    /// once after a [`Activity::hold`], until `shutdown`. Failures are logged and retried at the next
    /// tick.
    pub async fn publish(
        self,
        client: kube::Client,
        node: String,
        interval: Duration,
        shutdown: CancellationToken,
    ) {
        let leases: Api<Lease> = Api::namespaced(client, LEASE_NAMESPACE);
        let mut published: Option<BTreeMap<String, Counts>> = None;
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(interval) => {}
                () = self.inner.wake.notified() => {}
            }
            let now = self.snapshot();
            if published.as_ref() == Some(&now) || (published.is_none() && now.is_empty()) {
                continue;
            }
            let text = serde_json::to_string(&now).unwrap_or_default();
            let patch = json!({"metadata": {"annotations": {ACTIVITY: text}}});
            match leases
                .patch(&node, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => published = Some(now),
                Err(error) => {
                    tracing::debug!(%node, %error, "publishing Service activity failed; retrying");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_follow_connections_and_guards() {
        let activity = Activity::new();
        let web = ServiceRef {
            namespace: "default".into(),
            name: "web".into(),
        };
        assert!(activity.snapshot().is_empty());
        let counters = activity.service(&web);
        counters.connected();
        let open = counters.open();
        let held = activity.hold(&web, false);
        let counts = activity.snapshot()["default/web"];
        assert_eq!(
            counts,
            Counts {
                connections: 2,
                open: 1,
                held: 1
            }
        );
        drop((open, held));
        let text = serde_json::to_string(&activity.snapshot()).expect("json");
        assert_eq!(
            text,
            r#"{"default/web":{"connections":2,"open":0,"held":0}}"#
        );
        assert_eq!(
            herd_api::autoscaling::parse_activity(&text),
            Some(activity.snapshot())
        );
    }
}
