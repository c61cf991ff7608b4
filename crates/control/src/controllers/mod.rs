//! Controllers: level-triggered reconcile loops over the store.
//!
//! Each controller names the resources it watches and maps every change to the keys it must reconcile.
//! Keys wait in a deduplicating queue and are reconciled one at a time, so the same key is never
//! reconciled twice at once; a failed key is retried with a doubling delay, a reconcile may ask to see its
//! key again after a delay (a deadline or a delay it waits for, like kube's `AddAfter`), and every key is
//! resynced periodically.

mod daemonset;
mod deployment;
mod endpoints;
mod gc;
mod job;
mod nodeipam;
mod replicaset;

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::time::{Duration, Instant};

use futures::StreamExt;
use ipnet::Ipv4Net;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::error::ApiError;
use crate::objects::Objects;
use crate::store::Change;

/// (namespace, name); the namespace is empty for cluster-scoped objects.
pub type Key = (String, String);

const RESYNC: Duration = Duration::from_secs(30);
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// One reconcile loop.
pub trait Controller: Send + Sync + 'static {
    const NAME: &'static str;
    /// Store keys of the resources whose changes wake this controller.
    fn watches(&self) -> &'static [&'static str];
    /// The keys a change affects.
    fn keys_for(&self, change: &Change) -> Vec<Key>;
    /// Every key, for the periodic resync.
    fn all_keys(&self) -> impl Future<Output = Result<Vec<Key>, ApiError>> + Send;
    /// Brings one key's world to its desired state; `Some(delay)` asks to reconcile the key again after
    /// `delay` because something time-based falls due then.
    fn reconcile(&self, key: &Key) -> impl Future<Output = Result<Requeue, ApiError>> + Send;
}

/// What a successful reconcile asks of the loop: `None`, nothing until a change (or the resync);
/// `Some(delay)`, reconcile the key again after `delay`.
pub type Requeue = Option<Duration>;

/// Starts every controller; they stop when `shutdown` is cancelled.
pub fn spawn_all(
    objects: &Objects,
    cluster_cidr: Ipv4Net,
    node_prefix: u8,
    job_backoff_base: Duration,
    shutdown: &CancellationToken,
) -> Vec<tokio::task::JoinHandle<()>> {
    vec![
        tokio::spawn(run(
            replicaset::ReplicaSets::new(objects.clone()),
            objects.clone(),
            shutdown.clone(),
        )),
        tokio::spawn(run(
            deployment::Deployments::new(objects.clone()),
            objects.clone(),
            shutdown.clone(),
        )),
        tokio::spawn(run(
            endpoints::EndpointsController::new(objects.clone()),
            objects.clone(),
            shutdown.clone(),
        )),
        tokio::spawn(run(
            nodeipam::NodeIpam::new(objects.clone(), cluster_cidr, node_prefix),
            objects.clone(),
            shutdown.clone(),
        )),
        tokio::spawn(run(
            daemonset::DaemonSets::new(objects.clone()),
            objects.clone(),
            shutdown.clone(),
        )),
        tokio::spawn(run(
            job::Jobs::new(objects.clone(), job_backoff_base),
            objects.clone(),
            shutdown.clone(),
        )),
        tokio::spawn(run(
            gc::GarbageCollector::new(objects.clone()),
            objects.clone(),
            shutdown.clone(),
        )),
    ]
}

async fn run<C: Controller>(controller: C, objects: Objects, shutdown: CancellationToken) {
    let mut queue: BTreeSet<Key> = BTreeSet::new();
    let mut retry: BTreeMap<Key, (Instant, Duration)> = BTreeMap::new();
    let mut requeue: BTreeMap<Key, Instant> = BTreeMap::new();
    let mut last_resync = Instant::now() - RESYNC;
    let since = objects.store().revision();
    let mut changes = match objects.store().watch(None, since).await {
        Ok(s) => s.boxed(),
        Err(e) => {
            tracing::error!(controller = C::NAME, error = %e, "cannot watch the store");
            return;
        }
    };
    loop {
        if last_resync.elapsed() >= RESYNC {
            match controller.all_keys().await {
                Ok(keys) => queue.extend(keys),
                Err(e) => tracing::warn!(controller = C::NAME, error = %e, "listing keys failed"),
            }
            last_resync = Instant::now();
        }
        let now = Instant::now();
        let due: Vec<Key> = retry
            .iter()
            .filter(|(_, (at, _))| *at <= now)
            .map(|(k, _)| k.clone())
            .collect();
        queue.extend(due);
        let due: Vec<Key> = requeue
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for key in due {
            requeue.remove(&key);
            queue.insert(key);
        }
        // Drain everything already committed before reconciling, so bursts coalesce into one pass per key.
        loop {
            match futures::FutureExt::now_or_never(changes.next()) {
                Some(Some(Ok(change))) => {
                    if controller.watches().contains(&&*change.resource) {
                        queue.extend(controller.keys_for(&change));
                    }
                }
                Some(Some(Err(e))) => {
                    tracing::warn!(controller = C::NAME, error = %e, "watch fell behind; resyncing");
                    last_resync = Instant::now() - RESYNC;
                    match objects
                        .store()
                        .watch(None, objects.store().revision())
                        .await
                    {
                        Ok(s) => changes = s.boxed(),
                        Err(e) => {
                            tracing::error!(controller = C::NAME, error = %e, "cannot watch the store")
                        }
                    }
                    break;
                }
                Some(None) | None => break,
            }
        }
        if let Some(key) = queue.pop_first() {
            let span = tracing::info_span!("reconcile", controller = C::NAME, key = %format!("{}/{}", key.0, key.1));
            match tracing::Instrument::instrument(controller.reconcile(&key), span).await {
                Ok(after) => {
                    retry.remove(&key);
                    // The latest reconcile saw the whole state, so its answer replaces an earlier one.
                    match after {
                        Some(delay) => requeue.insert(key, Instant::now() + delay),
                        None => requeue.remove(&key),
                    };
                }
                Err(e) => {
                    let delay = retry
                        .get(&key)
                        .map_or(Duration::from_millis(200), |(_, d)| {
                            (*d * 2).min(MAX_BACKOFF)
                        });
                    tracing::debug!(error = %e, ?delay, "reconcile failed; will retry");
                    retry.insert(key, (Instant::now() + delay, delay));
                }
            }
            if shutdown.is_cancelled() {
                return;
            }
            continue;
        }
        let sleep_until = retry
            .values()
            .map(|(at, _)| *at)
            .chain(requeue.values().copied())
            .fold(last_resync + RESYNC, Instant::min);
        tokio::select! {
            () = shutdown.cancelled() => return,
            change = changes.next() => match change {
                Some(Ok(change)) => {
                    if controller.watches().contains(&&*change.resource) {
                        queue.extend(controller.keys_for(&change));
                    }
                }
                Some(Err(_)) => last_resync = Instant::now() - RESYNC,
                None => return,
            },
            () = tokio::time::sleep_until(sleep_until.into()) => {}
        }
    }
}

/// The object's (namespace, name).
fn key_of(change: &Change) -> Key {
    (change.namespace.clone(), change.name.clone())
}

/// The name of the controlling owner of `kind`, if any.
fn controller_owner(obj: &Value, kind: &str) -> Option<String> {
    obj.pointer("/metadata/ownerReferences")?
        .as_array()?
        .iter()
        .find(|r| r["kind"] == kind && r["controller"] == true)
        .and_then(|r| r["name"].as_str())
        .map(str::to_string)
}

fn is_owned_by(obj: &Value, uid: &str) -> bool {
    obj.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .is_some_and(|refs| {
            refs.iter()
                .any(|r| r["uid"] == uid && r["controller"] == true)
        })
}

/// A pod that counts towards a controller's replicas: not finished and not being deleted.
fn pod_is_active(pod: &Value) -> bool {
    let phase = pod
        .pointer("/status/phase")
        .and_then(Value::as_str)
        .unwrap_or("Pending");
    phase != "Succeeded"
        && phase != "Failed"
        && pod.pointer("/metadata/deletionTimestamp").is_none()
}

fn pod_is_ready(pod: &Value) -> bool {
    pod.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
}

/// A pod of a workload `owner` (of `kind`) built from its pod `template`: named `<owner>-<random>`, with
/// the given labels and spec, the template's annotations and the owner as controller.
fn pod_from_template(
    owner: &Value,
    kind: &str,
    template: &Value,
    labels: Value,
    spec: Value,
) -> Value {
    let name = owner
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "generateName": format!("{name}-"),
            "namespace": owner.pointer("/metadata/namespace").cloned().unwrap_or(Value::Null),
            "labels": labels,
            "annotations": template.pointer("/metadata/annotations").cloned().unwrap_or(serde_json::json!({})),
            "ownerReferences": [replicaset::owner_reference(owner, kind)],
        },
        "spec": spec,
    })
}
