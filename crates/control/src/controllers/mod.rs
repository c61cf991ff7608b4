//! Controllers: level-triggered reconcile loops over the store.
//!
//! Each controller names the resources it watches and maps every change to the keys it must reconcile.
//! Keys wait in a deduplicating first-in-first-out queue (kube's workqueue) and are reconciled one at a
//! time, so the same key is never reconciled twice at once; a failed key is retried with a doubling delay, a
//! reconcile may ask to see its key again after a delay (a deadline or a delay it waits for, like kube's
//! `AddAfter`), and every key is resynced periodically. The workload controllers read pods from one shared
//! [`informer::PodInformer`] instead of listing them, and create and delete them in bulk (`batch`).

mod batch;
mod daemonset;
mod deployment;
mod disruption;
mod endpoints;
mod gc;
mod informer;
mod job;
mod nodeipam;
pub mod nodelifecycle;
mod replicaset;
mod serviceaccount;

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt};
use ipnet::Ipv4Net;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::error::ApiError;
use crate::objects::Objects;
use crate::objects::{Change, StoreError};

pub use disruption::{budgets_of, pdb_resource};
pub use informer::PodInformer;

/// (namespace, name); the namespace is empty for cluster-scoped objects.
pub type Key = (String, String);

/// How often every key is reconciled again without a change (kube-controller-manager's `--min-resync-period`
/// is 12 h; its controllers rely on events, as these do).
pub const DEFAULT_RESYNC: Duration = Duration::from_secs(30);
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// How long a loop waits for its watch to bring the changes the store has committed before it relists.
const CATCH_UP_LIMIT: Duration = Duration::from_secs(2);

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
    /// The shared pod cache this controller reads, if any: its loop feeds it and catches it up to the
    /// store before each reconcile.
    fn informer(&self) -> Option<&PodInformer> {
        None
    }
    /// When a key whose reconcile failed with `error` is tried again, after `previous` (the delay before
    /// the last try, `None` after a success): kube's per-item exponential back-off, 200 ms doubling to a
    /// minute.
    fn error_policy(&self, _error: &ApiError, previous: Option<Duration>) -> Duration {
        previous.map_or(FIRST_BACKOFF, |d| (d * 2).min(MAX_BACKOFF))
    }
}

/// How long a failed key waits before its first retry.
const FIRST_BACKOFF: Duration = Duration::from_millis(200);

/// What a successful reconcile asks of the loop: `None`, nothing until a change (or the resync);
/// `Some(delay)`, reconcile the key again after `delay`.
pub type Requeue = Option<Duration>;

/// Starts every controller; they stop when `shutdown` is cancelled.
pub fn spawn_all(
    objects: &Objects,
    cluster_cidr: Ipv4Net,
    node_prefix: u8,
    job_backoff_base: Duration,
    node_lifecycle: nodelifecycle::NodeLifecycleConfig,
    resync: Duration,
    shutdown: &CancellationToken,
) -> Vec<tokio::task::JoinHandle<()>> {
    let pods = Arc::new(PodInformer::new(objects.clone()));
    vec![
        tokio::spawn(run(
            replicaset::ReplicaSets::new(objects.clone(), pods.clone()),
            objects.clone(),
            resync,
            shutdown.clone(),
        )),
        tokio::spawn(run(
            replicaset::ReplicationControllers::new(objects.clone(), pods.clone()),
            objects.clone(),
            resync,
            shutdown.clone(),
        )),
        tokio::spawn(run(
            deployment::Deployments::new(objects.clone(), pods.clone()),
            objects.clone(),
            resync,
            shutdown.clone(),
        )),
        tokio::spawn(run(
            endpoints::EndpointsController::new(objects.clone()),
            objects.clone(),
            resync,
            shutdown.clone(),
        )),
        tokio::spawn(run(
            nodeipam::NodeIpam::new(objects.clone(), cluster_cidr, node_prefix),
            objects.clone(),
            resync,
            shutdown.clone(),
        )),
        tokio::spawn(run(
            daemonset::DaemonSets::new(objects.clone(), pods.clone()),
            objects.clone(),
            resync,
            shutdown.clone(),
        )),
        tokio::spawn(run(
            disruption::Disruption::new(objects.clone(), pods.clone()),
            objects.clone(),
            resync,
            shutdown.clone(),
        )),
        tokio::spawn(run(
            job::Jobs::new(objects.clone(), pods, job_backoff_base),
            objects.clone(),
            resync,
            shutdown.clone(),
        )),
        tokio::spawn(run(
            nodelifecycle::NodeLifecycle::new(objects.clone(), node_lifecycle),
            objects.clone(),
            resync,
            shutdown.clone(),
        )),
        tokio::spawn(run(
            serviceaccount::ServiceAccounts::new(objects.clone()),
            objects.clone(),
            resync,
            shutdown.clone(),
        )),
        tokio::spawn(run(
            gc::GarbageCollector::new(objects.clone()),
            objects.clone(),
            resync,
            shutdown.clone(),
        )),
    ]
}

/// kube's workqueue: first in, first out, each key at most once.
#[derive(Default)]
struct WorkQueue {
    order: VecDeque<Key>,
    queued: HashSet<Key>,
}

impl WorkQueue {
    fn add(&mut self, key: Key) {
        if self.queued.insert(key.clone()) {
            self.order.push_back(key);
        }
    }

    fn pop(&mut self) -> Option<Key> {
        let key = self.order.pop_front()?;
        self.queued.remove(&key);
        Some(key)
    }

    fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

impl Extend<Key> for WorkQueue {
    fn extend<I: IntoIterator<Item = Key>>(&mut self, keys: I) {
        for key in keys {
            self.add(key);
        }
    }
}

type Changes = Pin<Box<dyn Stream<Item = Result<Arc<Change>, StoreError>> + Send>>;

/// A change seen by a loop: into the shared cache first (as an informer updates its store before calling
/// its handlers), then into the queue.
fn observe<C: Controller>(controller: &C, queue: &mut WorkQueue, change: &Change) {
    if let Some(pods) = controller.informer() {
        pods.apply(change);
    }
    if controller.watches().contains(&&*change.resource) {
        queue.extend(controller.keys_for(change));
    }
}

/// A fresh watch from the store's current revision after the old one fell behind or ended; the shared
/// cache is listed again after the watch starts, so no change falls between the two. `None` on shutdown.
async fn rewatch<C: Controller>(
    controller: &C,
    objects: &Objects,
    shutdown: &CancellationToken,
) -> Option<Changes> {
    loop {
        let since = objects.revision();
        let watched = match objects.watch(None, since).await {
            Ok(s) => Ok(s.boxed()),
            Err(e) => Err(ApiError::from(e)),
        };
        let relisted = match (&watched, controller.informer()) {
            (Ok(_), Some(pods)) => pods.relist().await,
            _ => Ok(()),
        };
        match (watched, relisted) {
            (Ok(s), Ok(())) => return Some(s),
            (Err(e), _) | (_, Err(e)) => {
                tracing::error!(controller = C::NAME, error = %e, "cannot watch the store; retrying");
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return None,
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

/// The first watch: from the revision the shared cache was listed at, so the cache misses nothing.
async fn first_watch<C: Controller>(
    controller: &C,
    objects: &Objects,
    shutdown: &CancellationToken,
) -> Option<Changes> {
    let since = match controller.informer() {
        None => objects.revision(),
        Some(pods) => match pods.ensure_loaded().await {
            Ok(rev) => rev,
            Err(e) => {
                tracing::warn!(controller = C::NAME, error = %e, "cannot list pods");
                return rewatch(controller, objects, shutdown).await;
            }
        },
    };
    match objects.watch(None, since).await {
        Ok(s) => Some(s.boxed()),
        Err(e) => {
            tracing::warn!(controller = C::NAME, error = %e, "cannot watch the store");
            rewatch(controller, objects, shutdown).await
        }
    }
}

async fn run<C: Controller>(
    controller: C,
    objects: Objects,
    resync: Duration,
    shutdown: CancellationToken,
) {
    let mut queue = WorkQueue::default();
    let mut retry: BTreeMap<Key, (Instant, Duration)> = BTreeMap::new();
    let mut requeue: BTreeMap<Key, Instant> = BTreeMap::new();
    let far = |from: Instant| {
        from.checked_add(resync)
            .unwrap_or_else(|| from + Duration::from_secs(86_400 * 365))
    };
    let mut resync_at = Instant::now();
    let Some(mut changes) = first_watch(&controller, &objects, &shutdown).await else {
        return;
    };
    loop {
        if resync_at <= Instant::now() {
            match controller.all_keys().await {
                Ok(keys) => queue.extend(keys),
                Err(e) => tracing::warn!(controller = C::NAME, error = %e, "listing keys failed"),
            }
            resync_at = far(Instant::now());
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
            queue.add(key);
        }
        // Drain everything already committed before reconciling, so bursts coalesce into one pass per key.
        let mut fell_behind = false;
        loop {
            match futures::FutureExt::now_or_never(changes.next()) {
                Some(Some(Ok(change))) => observe(&controller, &mut queue, &change),
                Some(Some(Err(_)) | None) => {
                    fell_behind = true;
                    break;
                }
                None => break,
            }
        }
        // A reconcile reads the shared cache: bring it up to what the store has committed by now, so it
        // sees at least what a list would (its own loop's earlier writes included).
        if !fell_behind
            && !queue.is_empty()
            && let Some(pods) = controller.informer()
        {
            let target = objects.revision();
            while pods.revision() < target {
                match tokio::time::timeout(CATCH_UP_LIMIT, changes.next()).await {
                    Ok(Some(Ok(change))) => observe(&controller, &mut queue, &change),
                    _ => {
                        fell_behind = true;
                        break;
                    }
                }
            }
        }
        if fell_behind {
            tracing::warn!(controller = C::NAME, "watch fell behind; resyncing");
            let Some(fresh) = rewatch(&controller, &objects, &shutdown).await else {
                return;
            };
            changes = fresh;
            resync_at = Instant::now();
            continue;
        }
        if let Some(key) = queue.pop() {
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
                    let delay = controller.error_policy(&e, retry.get(&key).map(|(_, d)| *d));
                    let key_name = format!("{}/{}", key.0, key.1);
                    match e {
                        // Waiting on something else (a namespace's objects to go) or losing a write race
                        // is part of reconciling; anything else is worth a line at the default level.
                        ApiError::Unavailable(_) | ApiError::Conflict { .. } => tracing::debug!(
                            controller = C::NAME, key = %key_name, error = %e, ?delay,
                            "reconcile must wait; will retry"
                        ),
                        _ => tracing::warn!(
                            controller = C::NAME, key = %key_name, error = %e, ?delay,
                            "reconcile failed; will retry"
                        ),
                    }
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
            .fold(resync_at, Instant::min);
        tokio::select! {
            () = shutdown.cancelled() => return,
            change = changes.next() => match change {
                Some(Ok(change)) => observe(&controller, &mut queue, &change),
                // The watch fell behind or ended: start again from the store's state, never give up.
                Some(Err(_)) | None => {
                    tracing::warn!(controller = C::NAME, "watch fell behind; resyncing");
                    let Some(fresh) = rewatch(&controller, &objects, &shutdown).await else {
                        return;
                    };
                    changes = fresh;
                    resync_at = Instant::now();
                }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objects::Settings;
    use crate::objects::{StoreSync, core};
    use tokio::sync::mpsc;

    /// Reports every key it reconciles; its resync finds nothing, so only its watch brings keys.
    struct Probe {
        seen: mpsc::UnboundedSender<String>,
    }

    impl Controller for Probe {
        const NAME: &'static str = "probe";

        fn watches(&self) -> &'static [&'static str] {
            &["configmaps"]
        }

        fn keys_for(&self, change: &Change) -> Vec<Key> {
            vec![key_of(change)]
        }

        async fn all_keys(&self) -> Result<Vec<Key>, ApiError> {
            Ok(Vec::new())
        }

        async fn reconcile(&self, key: &Key) -> Result<Requeue, ApiError> {
            let _ = self.seen.send(key.1.clone());
            Ok(None)
        }
    }

    /// A store with the `default` namespace, and a loaded pod informer over it.
    pub(super) async fn plane() -> (tempfile::TempDir, Objects, Arc<PodInformer>) {
        let (dir, objects) = crate::objects::test_objects().await;
        let ns = herd_api::resources::by_path("", "v1", "namespaces").unwrap();
        objects
            .create(
                ns,
                None,
                serde_json::json!({"metadata": {"name": "default"}}),
                false,
            )
            .await
            .unwrap();
        let pods = Arc::new(PodInformer::new(objects.clone()));
        pods.ensure_loaded().await.unwrap();
        (dir, objects, pods)
    }

    pub(super) async fn pod_count(objects: &Objects) -> usize {
        objects
            .list_all(crate::objects::core("pods"), None)
            .await
            .unwrap()
            .0
            .len()
    }

    /// `names` of `resource` created in `default` at once, through the resource layer.
    async fn put(objects: &Objects, resource: &str, names: Vec<String>) {
        let kind = if resource == "secrets" {
            "Secret"
        } else {
            "ConfigMap"
        };
        let objs = names
            .into_iter()
            .map(|name| {
                let obj = serde_json::json!({"apiVersion": "v1", "kind": kind,
                    "metadata": {"name": name, "namespace": "default"}});
                (Some("default".to_string()), obj)
            })
            .collect();
        for created in objects.create_many(core(resource), objs).await.unwrap() {
            created.unwrap();
        }
    }

    #[test]
    fn a_failing_key_backs_off_exponentially_to_a_minute() {
        let (seen, _) = mpsc::unbounded_channel();
        let probe = Probe { seen };
        let error = ApiError::Internal("boom".into());
        let mut delays = Vec::new();
        let mut previous = None;
        for _ in 0..12 {
            let delay = probe.error_policy(&error, previous);
            delays.push(delay.as_millis());
            previous = Some(delay);
        }
        assert_eq!(
            delays,
            [
                200, 400, 800, 1600, 3200, 6400, 12800, 25600, 51200, 60000, 60000, 60000
            ]
        );
    }

    #[test]
    fn the_work_queue_is_first_in_first_out_without_duplicates() {
        let mut queue = WorkQueue::default();
        let key = |n: &str| (String::new(), n.to_string());
        queue.extend([key("b"), key("a"), key("b"), key("c")]);
        assert_eq!(queue.pop(), Some(key("b")));
        queue.add(key("b"));
        queue.add(key("a"));
        let order: Vec<Key> = std::iter::from_fn(|| queue.pop()).collect();
        assert_eq!(order, [key("a"), key("c"), key("b")]);
        assert!(queue.is_empty());
    }

    #[tokio::test]
    async fn a_loop_whose_watch_fell_behind_watches_again() {
        let dir = tempfile::tempdir().unwrap();
        let objects = Objects::open(
            &dir.path().join("herd.db"),
            StoreSync::Normal,
            Settings {
                service_cidr: "127.10.0.0/16".parse().unwrap(),
            },
        )
        .await
        .unwrap();
        let namespace = serde_json::json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": "default"}});
        objects
            .create(core("namespaces"), None, namespace, false)
            .await
            .unwrap();
        let writer = objects.clone();
        let (tx, mut seen) = mpsc::unbounded_channel();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(run(
            Probe { seen: tx },
            objects.clone(),
            Duration::from_secs(3600),
            shutdown.clone(),
        ));
        // Writes `configmaps/<name>` until the loop reconciles one; false if it never does. The waits
        // only poll (and keep a broken loop from hanging the test); nothing about them is asserted.
        let mut follows = async |name: &str| {
            for attempt in 0..60 {
                put(&writer, "configmaps", vec![format!("{name}-{attempt}")]).await;
                if let Ok(Some(key)) =
                    tokio::time::timeout(Duration::from_secs(1), seen.recv()).await
                {
                    assert!(key.starts_with(name), "{key}");
                    while seen.try_recv().is_ok() {}
                    return true;
                }
            }
            false
        };
        assert!(follows("first").await);
        // One transaction of more changes than the store's fan-out keeps for a watcher that has not read
        // them yet: the loop's watch falls behind (and ends).
        put(
            &writer,
            "secrets",
            (0..FLOOD).map(|i| format!("s-{i}")).collect(),
        )
        .await;
        assert!(
            follows("after").await,
            "the loop stopped following its watch"
        );
        shutdown.cancel();
        task.await.unwrap();
    }

    /// More than the store's fan-out capacity (16,384).
    const FLOOD: usize = 17_000;
}
