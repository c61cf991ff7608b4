//! Holds connections to a Service that scales to zero while it has no endpoint, instead of closing
//! them (Knative's activator, in the proxy itself): the first held connection makes the node publish
//! its activity at once ([`Activity::hold`]), the control plane's scale-to-zero controller scales the
//! Deployment up through its `scale` subresource, and every held connection is forwarded as soon as
//! the [`Balancer`] has a ready endpoint (readiness is never bypassed), or closed after
//! [`HOLD_TIMEOUT`].
//!
//! Which Services scale to zero the proxy learns from their annotation
//! [`herd_api::autoscaling::ACTIVATOR`], which the controller writes; connections to any other
//! Service without endpoints are closed at once, as kube-proxy rejects them.

use std::collections::HashSet;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use herd_api::autoscaling::ACTIVATOR;
use k8s_openapi::api::core::v1::Service;

use crate::balancer::Balancer;
use crate::routes::ServiceRef;

/// How long a held connection waits for an endpoint before it is closed: long enough for a node
/// that must pull and compile the image first (the KEDA HTTP add-on's interceptor waits 20 s).
pub const HOLD_TIMEOUT: Duration = Duration::from_secs(20);

/// Decides which connections are held and holds them. Cheap to make: every activator of one
/// [`Balancer`] shares its set of Services that scale to zero (kept in its [`crate::Activity`]).
#[derive(Clone, Debug)]
pub struct Activator {
    balancer: Balancer,
    timeout: Duration,
}

impl Activator {
    /// An activator that waits on `balancer`'s table for endpoints.
    pub fn new(balancer: Balancer) -> Self {
        Self {
            balancer,
            timeout: HOLD_TIMEOUT,
        }
    }

    /// Holds connections for at most `timeout` instead of [`HOLD_TIMEOUT`].
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Takes the Services that scale to zero from the current Service objects.
    pub fn update<'a>(&self, services: impl IntoIterator<Item = &'a Service>) {
        let now: HashSet<ServiceRef> = services
            .into_iter()
            .filter(|s| {
                s.metadata
                    .annotations
                    .as_ref()
                    .is_some_and(|a| a.contains_key(ACTIVATOR))
            })
            .filter_map(|s| {
                Some(ServiceRef {
                    namespace: s.metadata.namespace.clone()?,
                    name: s.metadata.name.clone()?,
                })
            })
            .collect();
        self.balancer.activity().set_scaling_to_zero(now);
    }

    /// For a connection to `frontend` that found no endpoint: `None` when its Service does not
    /// scale to zero (close the connection); else a future that holds it until the Service has an
    /// endpoint (`true`: pick a backend now) or the hold times out or the Service goes (`false`).
    pub fn hold(
        &self,
        frontend: SocketAddr,
    ) -> Option<impl Future<Output = bool> + Send + 'static> {
        let service = self.balancer.service(frontend)?;
        if !self.balancer.activity().scales_to_zero(&service) {
            return None;
        }
        let held = self.balancer.activity().hold(&service);
        let (balancer, timeout) = (self.balancer.clone(), self.timeout);
        Some(async move {
            let woken = tokio::time::timeout(timeout, balancer.wait_for_backends(frontend)).await;
            drop(held);
            match woken {
                Ok(ready) => ready,
                Err(_) => {
                    tracing::info!(%frontend, service = %format!("{}/{}", service.namespace, service.name),
                        ?timeout, "no endpoint came up while the connection was held; closing it");
                    false
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routes::RoutingTable;

    #[tokio::test]
    async fn holds_only_services_that_scale_to_zero_until_an_endpoint_comes() {
        let balancer = Balancer::new();
        let activator = Activator::new(balancer.clone()).with_timeout(Duration::from_secs(5));
        let service: Service = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web", "namespace": "default",
                "annotations": {ACTIVATOR: "web"}},
            "spec": {"clusterIP": "127.10.0.1", "ports": [{"port": 80}]}
        }))
        .expect("service");
        let frontend: SocketAddr = "127.10.0.1:80".parse().expect("addr");
        let empty = RoutingTable::from_objects([&service], []);
        balancer.update(empty.clone());
        assert!(
            activator.hold(frontend).is_none(),
            "not yet known to scale to zero"
        );
        activator.update([&service]);
        let held = tokio::spawn(activator.hold(frontend).expect("held"));
        tokio::task::yield_now().await;
        assert_eq!(balancer.activity().snapshot()["default/web"].held, 1);
        let mut ready = empty;
        ready.insert(frontend, vec!["127.1.0.5:8080".parse().expect("addr")]);
        balancer.update(ready);
        assert!(held.await.expect("joined"));
        assert_eq!(balancer.activity().snapshot()["default/web"].held, 0);
    }
}
