//! Controllers: level-triggered reconcile loops over the store.
//!
//! Each controller names the resources it watches and maps every change to the keys it must reconcile.
//! Keys wait in a deduplicating first-in-first-out queue (kube's workqueue) and are reconciled one at a
//! time, so the same key is never reconciled twice at once; a failed key is retried with a doubling delay, a
//! reconcile may ask to see its key again after a delay (a deadline or a delay it waits for, like kube's
//! `AddAfter`), and every key is resynced periodically. Controllers read every object, for a reconcile and for
//! a resync, from the shared [`informer::Informers`] caches instead of listing them from the store, and the
//! workload controllers create and delete pods in bulk (`batch`).

mod batch;
mod bootstrap_signer;
mod clusterroleaggregation;
mod cronjob;
mod csr;
pub(crate) mod csr_approving;
mod csr_signing;
mod daemonset;
mod deployment;
mod disruption;
mod endpoints;
mod gc;
pub(crate) mod informer;
mod job;
mod node_join;
mod nodeipam;
pub mod nodelifecycle;
mod persistentvolume;
mod replicaset;
pub(crate) mod rootca;
mod scale_to_zero;
mod serviceaccount;
mod statefulset;
mod token_cleaner;

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::error::ApiError;
use crate::objects::Objects;
use crate::objects::{Change, StoreError};

pub use disruption::{budgets_of, pdb_resource};
pub use informer::Informers;
pub(crate) use node_join::spawn as spawn_node_join;

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
pub(crate) fn spawn_all(
    objects: &Objects,
    caches: Arc<Informers>,
    cfg: &crate::ControlConfig,
    ca_pem: &str,
    shutdown: &CancellationToken,
) -> Vec<tokio::task::JoinHandle<()>> {
    let (o, c) = (objects, &caches);
    let resync = cfg.controller_resync;
    vec![
        tokio::spawn(run(
            replicaset::ReplicaSets::new(o.clone(), c.clone()),
            c.clone(),
            resync,
            shutdown.clone(),
        )),
        tokio::spawn(run(
            replicaset::ReplicationControllers::new(o.clone(), c.clone()),
            c.clone(),
            resync,
            shutdown.clone(),
        )),
        tokio::spawn(run(
            deployment::Deployments::new(o.clone(), c.clone()),
            c.clone(),
            resync,
            shutdown.clone(),
        )),
        tokio::spawn(run(
            endpoints::EndpointsController::new(o.clone(), c.clone()),
            c.clone(),
            resync,
            shutdown.clone(),
        )),
        tokio::spawn(run(
            nodeipam::NodeIpam::new(o.clone(), c.clone(), cfg.cluster_cidr, cfg.node_cidr_prefix),
            c.clone(),
            resync,
            shutdown.clone(),
        )),
        tokio::spawn(run(
            daemonset::DaemonSets::new(o.clone(), c.clone()),
            c.clone(),
            resync,
            shutdown.clone(),
        )),
        tokio::spawn(run(
            statefulset::StatefulSets::new(o.clone(), c.clone()),
            c.clone(),
            resync,
            shutdown.clone(),
        )),
        tokio::spawn(run(
            disruption::Disruption::new(o.clone(), c.clone()),
            c.clone(),
            resync,
            shutdown.clone(),
        )),
        tokio::spawn(run(
            job::Jobs::new(o.clone(), c.clone(), cfg.job_backoff_base),
            c.clone(),
            resync,
            shutdown.clone(),
        )),
        tokio::spawn(run(
            cronjob::CronJobs::new(o.clone(), c.clone(), cfg.clock.clone()),
            c.clone(),
            resync,
            shutdown.clone(),
        )),
        tokio::spawn(run(
            nodelifecycle::NodeLifecycle::new(o.clone(), c.clone(), cfg.node_lifecycle),
            c.clone(),
            resync,
            shutdown.clone(),
        )),
        tokio::spawn(run(
            serviceaccount::ServiceAccounts::new(o.clone(), c.clone()),
            c.clone(),
            resync,
            shutdown.clone(),
        )),
        tokio::spawn(run(
            rootca::RootCaPublisher::new(o.clone(), c.clone(), ca_pem.to_string()),
            c.clone(),
            resync,
            shutdown.clone(),
        )),
        tokio::spawn(run(
            clusterroleaggregation::ClusterRoleAggregation::new(o.clone(), c.clone()),
            c.clone(),
            resync,
            shutdown.clone(),
        )),
        tokio::spawn(run(
            scale_to_zero::ScaleToZeroController::new(o.clone(), c.clone()),
            c.clone(),
            resync,
            shutdown.clone(),
        )),
        tokio::spawn(run(
            persistentvolume::PersistentVolumes::new(o.clone(), c.clone()),
            c.clone(),
            resync,
            shutdown.clone(),
        )),
        tokio::spawn(run(
            gc::GarbageCollector::new(o.clone(), c.clone()),
            c.clone(),
            resync,
            shutdown.clone(),
        )),
    ]
}

/// Keeps the shared caches current whether or not this replica runs the controllers (they lead in one
/// replica at a time): the API server's authorizers and token checks read them in every replica. A loop
/// like the controllers' with no keys of its own.
struct CacheFeeder;

impl Controller for CacheFeeder {
    const NAME: &'static str = "informers";

    fn watches(&self) -> &'static [&'static str] {
        &[]
    }

    fn keys_for(&self, _change: &Change) -> Vec<Key> {
        Vec::new()
    }

    async fn all_keys(&self) -> Result<Vec<Key>, ApiError> {
        Ok(Vec::new())
    }

    async fn reconcile(&self, _key: &Key) -> Result<Requeue, ApiError> {
        Ok(None)
    }
}

/// Starts the [`CacheFeeder`]; it stops when `shutdown` is cancelled.
pub(crate) fn spawn_cache_feeder(
    caches: Arc<Informers>,
    resync: Duration,
    shutdown: &CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(run(CacheFeeder, caches, resync, shutdown.clone()))
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
fn observe<C: Controller>(
    controller: &C,
    caches: &Informers,
    queue: &mut WorkQueue,
    change: &Change,
) {
    caches.apply(change);
    if controller.watches().contains(&&*change.resource) {
        queue.extend(controller.keys_for(change));
    }
}

/// A fresh watch from the store's current revision after the old one fell behind or ended; the shared
/// caches are listed again after the watch starts (unless another loop kept them current), so no change
/// falls between the two. `None` on shutdown.
async fn rewatch<C: Controller>(
    caches: &Informers,
    shutdown: &CancellationToken,
) -> Option<Changes> {
    let objects = caches.objects();
    loop {
        let since = objects.revision();
        let watched = match objects.watch(None, since).await {
            Ok(s) => Ok(s.boxed()),
            Err(e) => Err(ApiError::from(e)),
        };
        let relisted = match &watched {
            Ok(_) => caches.relist(since).await,
            Err(_) => Ok(()),
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

/// The first watch: from the revision the shared caches were listed at, so the caches miss nothing.
async fn first_watch<C: Controller>(
    caches: &Informers,
    shutdown: &CancellationToken,
) -> Option<Changes> {
    // From the caches' revision: a loop started again (a new term as leader) need not replay what the
    // caches took in meanwhile (the cache feeder keeps them current).
    let since = match caches.ensure_loaded().await {
        Ok(rev) => rev.max(caches.revision()),
        Err(e) => {
            tracing::warn!(controller = C::NAME, error = %e, "cannot list the store");
            return rewatch::<C>(caches, shutdown).await;
        }
    };
    match caches.objects().watch(None, since).await {
        Ok(s) => Some(s.boxed()),
        Err(e) => {
            tracing::warn!(controller = C::NAME, error = %e, "cannot watch the store");
            rewatch::<C>(caches, shutdown).await
        }
    }
}

/// Runs one controller: its watch feeds the shared `caches` and its queue.
async fn run<C: Controller>(
    controller: C,
    caches: Arc<Informers>,
    resync: Duration,
    shutdown: CancellationToken,
) {
    let objects = caches.objects().clone();
    let mut queue = WorkQueue::default();
    let mut retry: BTreeMap<Key, (Instant, Duration)> = BTreeMap::new();
    let mut requeue: BTreeMap<Key, Instant> = BTreeMap::new();
    let far = |from: Instant| {
        from.checked_add(resync)
            .unwrap_or_else(|| from + Duration::from_secs(86_400 * 365))
    };
    let mut resync_at = Instant::now();
    let Some(mut changes) = first_watch::<C>(&caches, &shutdown).await else {
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
                Some(Some(Ok(change))) => observe(&controller, &caches, &mut queue, &change),
                Some(Some(Err(_)) | None) => {
                    fell_behind = true;
                    break;
                }
                None => break,
            }
        }
        // A reconcile reads the shared caches: bring them up to what the store has committed by now, so
        // it sees at least what a list would (its own loop's earlier writes included).
        if !fell_behind && !queue.is_empty() {
            let target = objects.revision();
            while caches.revision() < target {
                match tokio::time::timeout(CATCH_UP_LIMIT, changes.next()).await {
                    Ok(Some(Ok(change))) => observe(&controller, &caches, &mut queue, &change),
                    _ => {
                        fell_behind = true;
                        break;
                    }
                }
            }
        }
        if fell_behind {
            tracing::warn!(controller = C::NAME, "watch fell behind; resyncing");
            let Some(fresh) = rewatch::<C>(&caches, &shutdown).await else {
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
                Some(Ok(change)) => observe(&controller, &caches, &mut queue, &change),
                // The watch fell behind or ended: start again from the store's state, never give up.
                Some(Err(_)) | None => {
                    tracing::warn!(controller = C::NAME, "watch fell behind; resyncing");
                    let Some(fresh) = rewatch::<C>(&caches, &shutdown).await else {
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

    /// A store with the `default` namespace, and loaded informer caches over it.
    pub(super) async fn plane() -> (tempfile::TempDir, Objects, Arc<Informers>) {
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
        let caches = Arc::new(Informers::new(objects.clone()));
        caches.ensure_loaded().await.unwrap();
        (dir, objects, caches)
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
                service_node_port_range: crate::node_ports::DEFAULT_RANGE,
                pod_security: herd_api::pod_security::AdmissionConfig::default(),
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
        let caches = Arc::new(Informers::new(objects.clone()));
        let task = tokio::spawn(run(
            Probe { seen: tx },
            caches,
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

    /// Reconciles a ConfigMap's key twice: the first pass writes a Secret and asks to come back at once,
    /// the second reports whether the caches show that Secret and the ConfigMap.
    struct Echo {
        caches: Arc<Informers>,
        seen: mpsc::UnboundedSender<(String, bool)>,
        written: std::sync::Mutex<HashSet<Key>>,
    }

    impl Controller for Echo {
        const NAME: &'static str = "echo";

        fn watches(&self) -> &'static [&'static str] {
            &["configmaps"]
        }

        fn keys_for(&self, change: &Change) -> Vec<Key> {
            vec![key_of(change)]
        }

        async fn all_keys(&self) -> Result<Vec<Key>, ApiError> {
            Ok(Vec::new())
        }

        async fn reconcile(&self, (ns, name): &Key) -> Result<Requeue, ApiError> {
            let own = format!("own-{name}");
            let first = self
                .written
                .lock()
                .unwrap()
                .insert((ns.clone(), name.clone()));
            if first {
                let secret = serde_json::json!({"apiVersion": "v1", "kind": "Secret",
                    "metadata": {"name": own, "namespace": ns}});
                self.caches
                    .objects()
                    .create(core("secrets"), Some(ns), secret, false)
                    .await?;
                return Ok(Some(Duration::ZERO));
            }
            let cm = self.caches.get(core("configmaps"), ns, name).is_some();
            let secret = self.caches.get(core("secrets"), ns, &own).is_some();
            let _ = self.seen.send((name.clone(), cm && secret));
            Ok(None)
        }
    }

    /// A reconcile reads the caches, and the loop catches them up to the store before it: the object
    /// whose change woke the key is there, and so is what the previous pass of the key wrote.
    #[tokio::test]
    async fn a_reconcile_sees_in_the_caches_what_was_committed_before_it() {
        let (_dir, objects, caches) = plane().await;
        let (tx, mut seen) = mpsc::unbounded_channel();
        let shutdown = CancellationToken::new();
        let echo = Echo {
            caches: caches.clone(),
            seen: tx,
            written: std::sync::Mutex::default(),
        };
        let task = tokio::spawn(run(
            echo,
            caches.clone(),
            Duration::from_secs(3600),
            shutdown.clone(),
        ));
        for i in 0..5 {
            put(&objects, "configmaps", vec![format!("cm-{i}")]).await;
        }
        let mut reports = Vec::new();
        while reports.len() < 5 {
            let report = tokio::time::timeout(Duration::from_secs(30), seen.recv())
                .await
                .expect("the loop reconciles every key twice")
                .unwrap();
            reports.push(report);
        }
        reports.sort();
        let want: Vec<(String, bool)> = (0..5).map(|i| (format!("cm-{i}"), true)).collect();
        assert_eq!(reports, want);
        shutdown.cancel();
        task.await.unwrap();
    }

    /// One pod's change wakes the Services that select it, now or through their Endpoints, not every
    /// Service of the namespace.
    #[tokio::test]
    async fn a_pod_change_wakes_only_the_services_that_select_or_list_it() {
        let (_dir, objects, caches) = plane().await;
        for (name, app) in [("web", "web"), ("db", "db"), ("other", "other")] {
            let svc = serde_json::json!({"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": name, "namespace": "default"},
                "spec": {"selector": {"app": app}, "ports": [{"port": 80}]}});
            objects
                .create(core("services"), Some("default"), svc, false)
                .await
                .unwrap();
        }
        let ep = serde_json::json!({"apiVersion": "v1", "kind": "Endpoints",
            "metadata": {"name": "db", "namespace": "default"},
            "subsets": [{"addresses": [{"ip": "127.0.0.9", "targetRef": {"kind": "Pod", "name": "p1"}}],
                "ports": [{"port": 80}]}]});
        objects
            .create(core("endpoints"), Some("default"), ep, false)
            .await
            .unwrap();
        caches.sync().await.unwrap();
        let controller = endpoints::EndpointsController::new(objects.clone(), caches.clone());
        let pod = |name: &str| Change {
            rev: 0,
            resource: Arc::from("pods"),
            namespace: "default".into(),
            name: name.into(),
            kind: crate::objects::EventType::Modified,
            object: Arc::new(
                serde_json::json!({"metadata": {"name": name, "namespace": "default",
                "labels": {"app": "web"}}}),
            ),
            previous: None,
        };
        let key = |n: &str| ("default".to_string(), n.to_string());
        assert_eq!(controller.keys_for(&pod("p2")), [key("web")]);
        // p1 moved from db to web: db's Endpoints still list it.
        assert_eq!(controller.keys_for(&pod("p1")), [key("db"), key("web")]);
    }
}
