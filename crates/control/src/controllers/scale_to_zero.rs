//! Scale to zero for Deployments that opt in with `autoscaling.herd.dev/idle-timeout`
//! ([`herd_api::autoscaling`]): one key per Deployment, woken by the Deployment, the Services in its
//! namespace and the nodes' Leases, whose annotation [`ACTIVITY`] carries each node's connection counts
//! per Service (published by its proxy when they change, at most once a second, and at once when it holds
//! a connection for a Service at zero).
//!
//! A reconcile marks the Services selecting the Deployment's pods ([`ACTIVATOR`], so the proxies hold
//! their connections while they have no endpoint), sums every live node's counts for them, and scales the
//! Deployment through its `scale` subresource, as the HPA does:
//! - connections held or open (the concurrency): up to `ceil(concurrency / target-concurrency)`, at least
//!   one, at most `max-scale`, at once;
//! - fewer needed than running for a whole idle timeout: down to what is needed;
//! - no connection opened, open or held for the idle timeout: to zero.
//!
//! Idleness is measured on this controller's clock from when it saw the counts last change (as the node
//! lifecycle controller measures Leases), so nodes' clocks do not matter; a newly leading replica counts
//! every Deployment as just active.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use herd_api::LabelSelector;
use herd_api::autoscaling::{ACTIVATOR, ACTIVITY, Counts, ScaleToZero, parse_activity};
use herd_api::resources::ResourceInfo;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Service;
use serde_json::{Value, json};

use super::replicaset::{key_of_meta, resource_of};
use super::{Controller, Informers, Key, Requeue};
use crate::error::ApiError;
use crate::events::{EventQueue, Note, Recorder};
use crate::objects::{Change, Objects, core};

/// The namespace of the nodes' Leases.
const LEASE_NAMESPACE: &str = "kube-node-lease";
/// The shortest delay a reconcile asks to be run again after.
const MIN_REQUEUE: Duration = Duration::from_millis(50);

pub struct ScaleToZeroController {
    objects: Objects,
    caches: Arc<Informers>,
    /// Events are written in the background, so the wake-up's writes (the Deployment's scale, then
    /// its ReplicaSet's and pod's) never queue behind them.
    events: EventQueue,
    deploy: &'static ResourceInfo,
    seen: Mutex<HashMap<Key, Seen>>,
}

/// What this controller last saw of a Deployment's traffic.
#[derive(Clone, Copy, Debug)]
struct Seen {
    /// The connections counted by every node, summed.
    connections: u64,
    /// When a connection was last opened, open or held.
    active: Instant,
    /// When the running replicas were last all needed.
    needed: Instant,
    /// The replicas the Deployment had.
    replicas: i32,
}

impl Seen {
    /// `seen` (`None`: the first look) updated with the Deployment's `replicas` and the nodes' `traffic`.
    /// A Deployment woken from zero by someone else (a proxy's activator holding a connection, a step
    /// ahead of the node's Lease, or a user) counts as just active: it is not idle merely because the
    /// counts that woke it have not arrived yet.
    fn observe(
        seen: Option<Seen>,
        settings: &ScaleToZero,
        replicas: i32,
        traffic: Counts,
        now: Instant,
    ) -> Seen {
        let concurrency = traffic.open + traffic.held;
        let mut seen = seen.unwrap_or(Seen {
            connections: traffic.connections,
            active: now,
            needed: now,
            replicas,
        });
        if seen.connections != traffic.connections
            || concurrency > 0
            || (seen.replicas == 0 && replicas > 0)
        {
            seen.connections = traffic.connections;
            seen.active = now;
        }
        if (concurrency > 0 && settings.replicas_for(concurrency) >= replicas)
            || (seen.replicas == 0 && replicas > 0)
        {
            seen.needed = now;
        }
        seen.replicas = replicas;
        seen
    }
}

/// What a reconcile does with the replicas.
#[derive(Debug, PartialEq, Eq)]
enum Decision {
    Scale {
        to: i32,
        why: &'static str,
    },
    /// Nothing now; look again after the delay (`None`: at the next change).
    Wait(Option<Duration>),
}

/// The pure decision: `replicas` running, `traffic` summed over the nodes, `seen` as updated for it.
fn decide(
    settings: &ScaleToZero,
    replicas: i32,
    traffic: Counts,
    seen: &Seen,
    now: Instant,
) -> Decision {
    let concurrency = traffic.open + traffic.held;
    let idle_for = now.saturating_duration_since(seen.active);
    let unneeded_for = now.saturating_duration_since(seen.needed);
    if concurrency > 0 {
        let wanted = settings.replicas_for(concurrency);
        if wanted > replicas {
            let why = if replicas == 0 {
                "a connection is waiting for the scaled-to-zero Deployment"
            } else {
                "concurrent connections above the target"
            };
            return Decision::Scale { to: wanted, why };
        }
        if wanted < replicas && unneeded_for >= settings.idle_timeout {
            return Decision::Scale {
                to: wanted,
                why: "concurrent connections below the target",
            };
        }
        return Decision::Wait(
            (wanted < replicas).then(|| settings.idle_timeout.saturating_sub(unneeded_for)),
        );
    }
    if replicas == 0 {
        return Decision::Wait(None);
    }
    if idle_for >= settings.idle_timeout {
        return Decision::Scale {
            to: 0,
            why: "no traffic for the idle timeout",
        };
    }
    if replicas > 1 && unneeded_for >= settings.idle_timeout {
        return Decision::Scale {
            to: 1,
            why: "concurrent connections below the target",
        };
    }
    Decision::Wait(Some(settings.idle_timeout.saturating_sub(idle_for)))
}

impl ScaleToZeroController {
    pub fn new(objects: Objects, caches: Arc<Informers>) -> Self {
        Self {
            events: EventQueue::spawn(Recorder::new(objects.clone(), "scale-to-zero-controller")),
            objects,
            caches,
            deploy: resource_of::<Deployment>(),
            seen: Mutex::default(),
        }
    }

    /// The Deployments of `ns` that scale to zero.
    fn scaling_in(&self, ns: &str) -> Vec<Key> {
        self.caches
            .store::<Deployment>()
            .list(Some(ns))
            .iter()
            .filter(|d| {
                d.metadata.annotations.as_ref().is_some_and(|a| {
                    a.keys()
                        .any(|k| k.starts_with(herd_api::autoscaling::PREFIX))
                })
            })
            .filter_map(|d| key_of_meta(&d.metadata))
            .collect()
    }

    fn seen(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Seen>> {
        self.seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Marks the Services of `ns` selecting `labels` as fronting the Deployment `name` and unmarks the
    /// ones that no longer do (all of them when `labels` is `None`); returns the selecting ones.
    async fn mark_services(
        &self,
        ns: &str,
        name: &str,
        labels: Option<&BTreeMap<String, String>>,
    ) -> Result<Vec<String>, ApiError> {
        let mut selecting = Vec::new();
        for service in self.caches.store::<Service>().list(Some(ns)) {
            let Some(service_name) = service.metadata.name.clone() else {
                continue;
            };
            let selector = service.spec.as_ref().and_then(|s| s.selector.as_ref());
            let selects = match (selector, labels) {
                (Some(selector), Some(labels)) if !selector.is_empty() => {
                    LabelSelector::from_map(selector).matches(labels)
                }
                _ => false,
            };
            let marked = service
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(ACTIVATOR));
            let edit = match (selects, marked) {
                (true, Some(m)) if m == name => None,
                (true, _) => Some(Some(name.to_string())),
                (false, Some(m)) if m == name => Some(None),
                (false, _) => None,
            };
            if selects {
                selecting.push(service_name.clone());
            }
            let Some(mark) = edit else { continue };
            let result = self
                .objects
                .edit(core("services"), ns, &service_name, move |svc| {
                    match &mark {
                        Some(deployment) => {
                            svc["metadata"]["annotations"][ACTIVATOR] = json!(deployment);
                        }
                        None => {
                            if let Some(a) = svc
                                .pointer_mut("/metadata/annotations")
                                .and_then(Value::as_object_mut)
                            {
                                a.remove(ACTIVATOR);
                            }
                        }
                    }
                    true
                })
                .await;
            match result {
                Ok(_) | Err(ApiError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(selecting)
    }

    /// Every live node's counts for the Services `services` of `ns`, summed. A node whose Lease expired
    /// is left out: its open connections died with it.
    fn traffic(&self, ns: &str, services: &[String]) -> Counts {
        let now = jiff::Timestamp::now();
        let mut total = Counts::default();
        for lease in self.caches.store::<Lease>().list(Some(LEASE_NAMESPACE)) {
            let Some(text) = lease
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(ACTIVITY))
            else {
                continue;
            };
            let spec = lease.spec.as_ref();
            let expired = spec
                .and_then(|s| Some((s.renew_time.as_ref()?.0, s.lease_duration_seconds?)))
                .is_some_and(|(renewed, seconds)| {
                    renewed
                        .checked_add(jiff::SignedDuration::from_secs(i64::from(seconds)))
                        .is_ok_and(|until| until < now)
                });
            if expired {
                continue;
            }
            let Some(counts) = parse_activity(text) else {
                continue;
            };
            for service in services {
                if let Some(c) = counts.get(&format!("{ns}/{service}")) {
                    total.connections += c.connections;
                    total.open += c.open;
                    total.held += c.held;
                }
            }
        }
        total
    }
}

impl Controller for ScaleToZeroController {
    const NAME: &'static str = "scale-to-zero";

    fn watches(&self) -> &'static [&'static str] {
        &["deployments.apps", "services", "leases.coordination.k8s.io"]
    }

    fn keys_for(&self, change: &Change) -> Vec<Key> {
        match &*change.resource {
            "deployments.apps" => vec![(change.namespace.clone(), change.name.clone())],
            "services" => self.scaling_in(&change.namespace),
            _ if change.namespace == LEASE_NAMESPACE => {
                let activity = |obj: Option<&Value>| {
                    obj.and_then(|o| o.pointer("/metadata/annotations"))
                        .and_then(|a| a.get(ACTIVITY))
                        .and_then(Value::as_str)
                        .and_then(parse_activity)
                        .unwrap_or_default()
                };
                let now = activity(Some(&change.object));
                let before = activity(change.previous.as_deref());
                if now == before {
                    return Vec::new();
                }
                let mut namespaces: Vec<&str> = now
                    .iter()
                    .chain(before.iter())
                    .filter(|(service, _)| now.get(*service) != before.get(*service))
                    .filter_map(|(service, _)| service.split_once('/').map(|(ns, _)| ns))
                    .collect();
                namespaces.sort_unstable();
                namespaces.dedup();
                namespaces
                    .into_iter()
                    .flat_map(|ns| self.scaling_in(ns))
                    .collect()
            }
            _ => Vec::new(),
        }
    }

    async fn all_keys(&self) -> Result<Vec<Key>, ApiError> {
        Ok(self
            .caches
            .store::<Deployment>()
            .state()
            .iter()
            .filter_map(|d| key_of_meta(&d.metadata))
            .collect())
    }

    async fn reconcile(&self, key: &Key) -> Result<Requeue, ApiError> {
        let (ns, name) = key;
        let deployment = self.caches.store::<Deployment>().get(ns, name);
        let settings = deployment.as_ref().and_then(|d| {
            ScaleToZero::from_annotations(d.metadata.annotations.as_ref())
                .ok()
                .flatten()
        });
        let (Some(deployment), Some(settings)) = (deployment, settings) else {
            // Gone or opted out: its Services are ordinary again.
            self.seen().remove(key);
            self.mark_services(ns, name, None).await?;
            return Ok(None);
        };
        let labels = deployment
            .spec
            .template
            .metadata
            .as_ref()
            .and_then(|m| m.labels.as_ref());
        let services = self.mark_services(ns, name, labels).await?;
        if deployment.metadata.deletion_timestamp.is_some() {
            return Ok(None);
        }
        let traffic = self.traffic(ns, &services);
        let replicas = deployment.spec.replicas.unwrap_or(1);
        let now = Instant::now();
        let seen = {
            let mut all = self.seen();
            let seen = Seen::observe(all.get(key).copied(), &settings, replicas, traffic, now);
            all.insert(key.clone(), seen);
            seen
        };
        match decide(&settings, replicas, traffic, &seen, now) {
            Decision::Wait(after) => Ok(after.map(|d| d.max(MIN_REQUEUE))),
            Decision::Scale { to, why } => {
                let scaled = crate::server::scale::update(
                    &self.objects,
                    self.deploy,
                    Some(ns),
                    name,
                    false,
                    false,
                    |mut scale| {
                        scale["spec"]["replicas"] = json!(to);
                        Ok(scale)
                    },
                )
                .await;
                match scaled {
                    Ok(_) => {}
                    Err(ApiError::NotFound { .. }) => return Ok(None),
                    Err(e) => return Err(e),
                }
                tracing::info!(namespace = %ns, deployment = %name, from = replicas, to, why, "scaled");
                {
                    let mut all = self.seen();
                    if let Some(seen) = all.get_mut(key) {
                        seen.needed = now;
                    }
                }
                if let Some(json) = self.caches.get(self.deploy, ns, name) {
                    self.events.push(vec![Note {
                        obj: (*json).clone(),
                        type_: "Normal",
                        reason: "SuccessfulRescale",
                        message: format!("New size: {to}; reason: {why}"),
                    }]);
                }
                Ok((to > 0).then_some(settings.idle_timeout))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> ScaleToZero {
        ScaleToZero {
            idle_timeout: Duration::from_secs(10),
            target_concurrency: 2,
            max_scale: Some(3),
        }
    }

    fn traffic(open: u64, held: u64) -> Counts {
        Counts {
            connections: 1,
            open,
            held,
        }
    }

    #[test]
    fn wakes_scales_out_and_goes_to_zero_when_idle() {
        let start = Instant::now();
        let fresh = Seen {
            connections: 1,
            active: start,
            needed: start,
            replicas: 0,
        };
        let s = settings();
        let at = |secs| start + Duration::from_secs(secs);
        assert!(matches!(
            decide(&s, 0, traffic(0, 1), &fresh, start),
            Decision::Scale { to: 1, .. }
        ));
        assert!(matches!(
            decide(&s, 1, traffic(3, 2), &fresh, start),
            Decision::Scale { to: 3, .. }
        ));
        assert_eq!(
            decide(&s, 0, traffic(0, 0), &fresh, at(60)),
            Decision::Wait(None)
        );
        assert_eq!(
            decide(&s, 1, traffic(0, 0), &fresh, at(4)),
            Decision::Wait(Some(Duration::from_secs(6)))
        );
        assert!(matches!(
            decide(&s, 1, traffic(0, 0), &fresh, at(10)),
            Decision::Scale { to: 0, .. }
        ));
        // An open connection keeps it awake however long it lasts.
        let open_now = Seen {
            active: at(100),
            ..fresh
        };
        assert_eq!(
            decide(&s, 1, traffic(1, 0), &open_now, at(100)),
            Decision::Wait(None)
        );
        // Fewer needed than running: down only after a whole idle timeout.
        assert_eq!(
            decide(&s, 3, traffic(1, 0), &open_now, at(5)),
            Decision::Wait(Some(Duration::from_secs(5)))
        );
        assert!(matches!(
            decide(&s, 3, traffic(1, 0), &open_now, at(10)),
            Decision::Scale { to: 1, .. }
        ));
    }

    #[test]
    fn a_deployment_woken_by_an_activator_is_not_idle_before_the_counts_arrive() {
        let s = settings();
        let start = Instant::now();
        let quiet = traffic(0, 0);
        // Seen at zero, idle for long.
        let at_zero = Seen::observe(None, &s, 0, quiet, start);
        let later = start + Duration::from_secs(60);
        // A proxy woke it (0 -> 1) before its node's Lease says a connection is held.
        let woken = Seen::observe(Some(at_zero), &s, 1, quiet, later);
        assert_eq!(woken.active, later);
        assert_eq!(
            decide(&s, 1, quiet, &woken, later),
            Decision::Wait(Some(s.idle_timeout))
        );
        // Without that, the same counts at one replica are idle.
        let stale = Seen::observe(Some(woken), &s, 1, quiet, later + s.idle_timeout);
        assert!(matches!(
            decide(&s, 1, quiet, &stale, later + s.idle_timeout),
            Decision::Scale { to: 0, .. }
        ));
    }
}
