//! The scheduler, following kube-scheduler's pipeline: each pass reads one snapshot of nodes and pods,
//! computes per-node state once, and for each unscheduled pod runs the filters (cheapest first), scores the
//! feasible nodes and binds to the best. A pod that fits nowhere stays Pending with `PodScheduled=False`,
//! reason Unschedulable and kube's "0/N nodes are available: ..." message, and is retried when pods or nodes
//! change.

mod bench;
mod cache;
mod decide;
mod filters;
mod scores;
mod selectors;
mod snapshot;
#[cfg(test)]
mod tests;
mod volumes;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use herd_api::resources::{self, ResourceInfo};
use k8s_openapi::api::core::v1::{Node, Pod};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

pub use bench::{BenchError, BenchReport, bench};
pub(crate) use filters::tolerates;
pub(crate) use selectors::node_affinity_matches;

use crate::error::ApiError;
use crate::events::{EventQueue, Note, Recorder};
use crate::objects::Change;
use crate::objects::{Objects, now};
use cache::Cache;
use decide::{Decision, decide};
use herd_api::strategy::{pod_node, set_pod_scheduled};
use snapshot::{Snapshot, is_terminal};
use volumes::Volumes;

/// How often unschedulable pods are retried even when nothing changed.
const RETRY: Duration = Duration::from_secs(5);

/// How often a pass re-lists when a write landed between listing nodes and listing pods.
const SNAPSHOT_ATTEMPTS: usize = 3;

fn pods_res() -> &'static ResourceInfo {
    resources::by_path("", "v1", "pods").expect("pods are in the resource table")
}

/// Runs scheduling passes whenever pods or nodes change (and every [`RETRY`] while pods wait), until
/// `shutdown`. The pass reads a cache fed by the store's watch; a watch that falls behind reloads it.
pub async fn run(objects: Objects, shutdown: CancellationToken) {
    let recorder = Recorder::new(objects.clone(), "default-scheduler");
    let events = EventQueue::spawn(recorder.clone());
    loop {
        let loaded = match Cache::load(&objects).await {
            Ok((cache, rev)) => match objects.watch(None, rev).await {
                Ok(changes) => Some((cache, changes.boxed())),
                Err(e) => {
                    tracing::warn!(error = %e, "scheduler watch failed");
                    None
                }
            },
            Err(e) => {
                tracing::warn!(error = %e, "loading the scheduler's cache failed");
                None
            }
        };
        let Some((mut cache, mut changes)) = loaded else {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(RETRY) => continue,
            }
        };
        'watching: loop {
            // Everything already committed goes into the cache before the pass.
            loop {
                match futures::FutureExt::now_or_never(changes.next()) {
                    Some(Some(Ok(change))) => {
                        cache.apply(&change);
                    }
                    Some(Some(Err(_)) | None) => break 'watching,
                    None => break,
                }
            }
            if cache.has_pending() {
                let (nodes, pods) = (cache.nodes(), cache.pods());
                let mut binds = Binds::default();
                let volumes = cache.volumes();
                if let Err(e) = pass(
                    &objects, &recorder, &events, &nodes, pods, volumes, &mut binds,
                )
                .await
                {
                    tracing::warn!(error = %e, "scheduling pass failed");
                }
                // The pass's binds are in the cache before the next pass, whether or not the watch has
                // brought them yet (kube-scheduler's assumed pods): a next pass that did not see them would
                // place its pods as if those nodes were emptier than they are.
                for (namespace, name, node) in binds.committed.drain(..) {
                    cache.assume(namespace, name, node);
                }
            }
            // Wait for a pod or node change, or the retry period.
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    change = changes.next() => match change {
                        Some(Ok(change)) => {
                            if cache.apply(&change) {
                                break;
                            }
                        }
                        Some(Err(_)) | None => break 'watching,
                    },
                    () = tokio::time::sleep(RETRY) => break,
                }
            }
        }
    }
}

/// Nodes and pods as of one revision when possible: re-lists if a write landed between the two lists.
async fn list_snapshot(objects: &Objects) -> Result<(Vec<Node>, Vec<Pod>), ApiError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let (nodes, node_rev) = objects
            .list_typed::<Node>(crate::objects::core("nodes"), None)
            .await?;
        let (pods, pod_rev) = objects
            .list_typed::<Pod>(crate::objects::core("pods"), None)
            .await?;
        if node_rev == pod_rev || attempt >= SNAPSHOT_ATTEMPTS {
            return Ok((nodes, pods));
        }
    }
}

fn wants_scheduling(pod: &Pod) -> bool {
    let spec = pod.spec.as_ref();
    let unbound = spec.is_some_and(|s| s.node_name.as_deref().is_none_or(str::is_empty));
    let ours = spec
        .and_then(|s| s.scheduler_name.as_deref())
        .is_none_or(|s| s == "default-scheduler");
    unbound && ours && pod.metadata.deletion_timestamp.is_none() && !is_terminal(pod)
}

/// One pass: binds every pod it can and records why the others cannot run; returns how many pods were
/// bound. Scheduled events go to `events`, written in the background.
async fn pass(
    objects: &Objects,
    recorder: &Recorder,
    events: &EventQueue,
    nodes: &[Node],
    pods: Vec<&Pod>,
    volumes: &Volumes,
    binds: &mut Binds,
) -> Result<usize, ApiError> {
    let mut snap = Snapshot::new(nodes, pods.iter().copied()).with_volumes(volumes);
    let mut next_start = 0;
    let mut bound = 0;
    for pod in pods.iter().copied().filter(|p| wants_scheduling(p)) {
        let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
        let name = pod.metadata.name.as_deref().unwrap_or_default();
        match decide(&snap, pod, &mut next_start) {
            Decision::Bind(i) => {
                let Some(node) = snap.nodes.get(i).map(|n| n.name) else {
                    continue;
                };
                // Assumed at once, as kube-scheduler's cache does, so the next pod sees this one's requests.
                snap.assume(pod, i);
                binds.add(pod, node);
                if binds.pending.len() >= BIND_BATCH {
                    bound += binds.send(objects, events).await?;
                }
            }
            Decision::SelectNode(i, claims) => {
                let Some(node) = snap.nodes.get(i).map(|n| n.name) else {
                    continue;
                };
                snap.assume(pod, i);
                select_node(objects, ns, &claims, node).await?;
            }
            // Its claims are being bound on their selected node; their changes wake the next pass.
            Decision::Wait => {}
            Decision::Unschedulable(message) => {
                if mark_unschedulable(objects, ns, name, &message).await? {
                    recorder
                        .warning(&event_subject(pod), "FailedScheduling", &message)
                        .await;
                }
            }
        }
    }
    bound += binds.send(objects, events).await?;
    bound += binds.settle(events).await?;
    Ok(bound)
}

/// What an Event needs to know of the pod it is about.
fn event_subject(pod: &Pod) -> Value {
    let md = &pod.metadata;
    json!({"kind": "Pod", "apiVersion": "v1", "metadata": {
        "name": md.name, "namespace": md.namespace, "uid": md.uid, "resourceVersion": md.resource_version,
    }})
}

/// How many binds one store transaction carries at most.
const BIND_BATCH: usize = 2048;

/// One decided bind: the pod's namespace and name, the node, and the pod for its event.
struct PendingBind {
    namespace: String,
    name: String,
    node: String,
    subject: Value,
}

type Commit = tokio::task::JoinHandle<Result<Vec<Result<Arc<Change>, ApiError>>, ApiError>>;

/// Binds decided in a pass, committed in batches of up to [`BIND_BATCH`] (one transaction, one fsync
/// each). A batch commits while the next one is being decided; its Scheduled events then go to the
/// background writer.
#[derive(Default)]
struct Binds {
    pending: Vec<PendingBind>,
    /// The batch being committed.
    inflight: Option<(Vec<PendingBind>, Commit)>,
    /// The pods bound so far, as committed: (namespace, name, node). Only the keys, not the changes: a
    /// pass of ten thousand binds would otherwise hold every pod twice until it ends.
    committed: Vec<(String, String, String)>,
}

impl Binds {
    fn add(&mut self, pod: &Pod, node: &str) {
        self.pending.push(PendingBind {
            namespace: pod.metadata.namespace.clone().unwrap_or_default(),
            name: pod.metadata.name.clone().unwrap_or_default(),
            node: node.to_string(),
            subject: event_subject(pod),
        });
    }

    /// Waits for the batch in flight (returning how many of its pods were bound), then starts committing
    /// the pending one.
    async fn send(&mut self, objects: &Objects, events: &EventQueue) -> Result<usize, ApiError> {
        let bound = self.settle(events).await?;
        if self.pending.is_empty() {
            return Ok(bound);
        }
        let batch = std::mem::take(&mut self.pending);
        let bindings = batch
            .iter()
            .map(|b| (b.namespace.clone(), b.name.clone(), b.node.clone()))
            .collect();
        let objects = objects.clone();
        let commit = tokio::spawn(async move { objects.bind_many(bindings).await });
        self.inflight = Some((batch, commit));
        Ok(bound)
    }

    /// Waits for the batch in flight; queues the events of the pods it bound and returns how many.
    async fn settle(&mut self, events: &EventQueue) -> Result<usize, ApiError> {
        let Some((batch, commit)) = self.inflight.take() else {
            return Ok(0);
        };
        let changes = commit
            .await
            .map_err(|e| ApiError::Internal(format!("the bind task failed: {e}")))??;
        let mut notes = Vec::with_capacity(batch.len());
        for (b, change) in batch.into_iter().zip(changes) {
            let (ns, name, node) = (&b.namespace, &b.name, &b.node);
            if change.is_err() {
                // Deleted or bound by someone else since the snapshot; the next pass sees the truth.
                tracing::debug!(pod = %format!("{ns}/{name}"), "bind lost a race");
                continue;
            }
            self.committed
                .push((ns.clone(), name.clone(), node.clone()));
            tracing::debug!(pod = %format!("{ns}/{name}"), %node, "scheduled");
            notes.push(Note {
                message: format!("Successfully assigned {ns}/{name} to {node}"),
                obj: b.subject,
                type_: "Normal",
                reason: "Scheduled",
            });
        }
        let bound = notes.len();
        events.push(notes);
        Ok(bound)
    }
}

/// kube's VolumeBinding AssumePodVolumes for claims that wait for their first consumer: each gets the
/// chosen node as its `volume.kubernetes.io/selected-node` (unless one was selected meanwhile), which the
/// PV controller binds or provisions on; the pod is bound once they are.
async fn select_node(
    objects: &Objects,
    ns: &str,
    claims: &[String],
    node: &str,
) -> Result<(), ApiError> {
    let res = crate::objects::core("persistentvolumeclaims");
    for claim in claims {
        let edited = objects
            .edit(res, ns, claim, |c| {
                let annotations = &c["metadata"]["annotations"];
                if annotations
                    .get(herd_api::volumes::SELECTED_NODE_ANNOTATION)
                    .is_some()
                {
                    return false;
                }
                c["metadata"]["annotations"][herd_api::volumes::SELECTED_NODE_ANNOTATION] =
                    json!(node);
                true
            })
            .await;
        match edited {
            Ok(_) | Err(ApiError::NotFound { .. } | ApiError::Conflict { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Sets PodScheduled=False/Unschedulable with `message`; true when the message changed.
async fn mark_unschedulable(
    objects: &Objects,
    ns: &str,
    name: &str,
    message: &str,
) -> Result<bool, ApiError> {
    let change = objects
        .edit(pods_res(), ns, name, |pod| {
            pod_node(pod).is_none()
                && set_pod_scheduled(pod, "False", Some("Unschedulable"), Some(message), &now())
        })
        .await?;
    Ok(change.is_some())
}

/// Binds a pod to a node: the `pods/binding` subresource. A pod already bound (or being deleted) is a
/// Conflict; a missing pod is NotFound.
pub async fn bind(objects: &Objects, ns: &str, name: &str, node: &str) -> Result<(), ApiError> {
    let mut outcome = objects
        .bind_many(vec![(ns.to_string(), name.to_string(), node.to_string())])
        .await?;
    match outcome.pop() {
        Some(Err(e)) => Err(e),
        _ => Ok(()),
    }
}
