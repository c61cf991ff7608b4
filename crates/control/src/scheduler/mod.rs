//! The scheduler, following kube-scheduler's pipeline: each pass reads one snapshot of nodes and pods,
//! computes per-node state once, and for each unscheduled pod runs the filters (cheapest first), scores the
//! feasible nodes and binds to the best. A pod that fits nowhere stays Pending with `PodScheduled=False`,
//! reason Unschedulable and kube's "0/N nodes are available: ..." message, and is retried when pods or nodes
//! change.

mod bench;
mod decide;
mod filters;
mod scores;
mod selectors;
mod snapshot;
#[cfg(test)]
mod tests;

use std::time::Duration;

use futures::StreamExt;
use herd_api::resources::{self, ResourceInfo};
use k8s_openapi::api::core::v1::{Node, Pod};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

pub use bench::{BenchError, BenchReport, bench};

use crate::error::ApiError;
use crate::events::{Note, Recorder};
use crate::objects::{ObjectEdit, Objects, now};
use decide::{Decision, decide};
use snapshot::{Snapshot, is_terminal};

/// How often unschedulable pods are retried even when nothing changed.
const RETRY: Duration = Duration::from_secs(5);

/// How often a pass re-lists when a write landed between listing nodes and listing pods.
const SNAPSHOT_ATTEMPTS: usize = 3;

fn pods_res() -> &'static ResourceInfo {
    resources::by_path("", "v1", "pods").expect("pods are in the resource table")
}

/// Runs scheduling passes whenever pods or nodes change, until `shutdown`.
pub async fn run(objects: Objects, shutdown: CancellationToken) {
    let recorder = Recorder::new(objects.clone(), "default-scheduler");
    loop {
        let since = objects.store().revision();
        if let Err(e) = schedule_pending(&objects, &recorder).await {
            tracing::warn!(error = %e, "scheduling pass failed");
        }
        // Wait for a pod or node change after the pass, or the retry period.
        let mut changes = match objects.store().watch(None, since).await {
            Ok(s) => s.boxed(),
            Err(e) => {
                tracing::warn!(error = %e, "scheduler watch failed");
                futures::stream::pending().boxed()
            }
        };
        let wait = async {
            while let Some(Ok(c)) = changes.next().await {
                if &*c.resource == "pods" || &*c.resource == "nodes" {
                    return;
                }
            }
            futures::future::pending::<()>().await;
        };
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = wait => {}
            () = tokio::time::sleep(RETRY) => {}
        }
    }
}

/// Nodes and pods as of one revision when possible: re-lists if a write landed between the two lists.
async fn list_snapshot(objects: &Objects) -> Result<(Vec<Value>, Vec<Value>), ApiError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let (nodes, node_rev) = objects.store().list("nodes", None).await?;
        let (pods, pod_rev) = objects.store().list("pods", None).await?;
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

/// One pass: binds every pod it can; records why the others cannot run.
pub async fn schedule_pending(objects: &Objects, recorder: &Recorder) -> Result<(), ApiError> {
    pass(objects, recorder).await.map(|_| ())
}

/// [`schedule_pending`], returning how many pods were bound.
async fn pass(objects: &Objects, recorder: &Recorder) -> Result<usize, ApiError> {
    let (node_values, pod_values) = list_snapshot(objects).await?;
    let nodes: Vec<Node> = node_values
        .into_iter()
        .filter_map(|v| serde_json::from_value(v).ok())
        .collect();
    let pods: Vec<(Pod, Value)> = pod_values
        .into_iter()
        .filter_map(|v| Some((serde_json::from_value(v.clone()).ok()?, v)))
        .collect();
    let mut snap = Snapshot::new(&nodes, pods.iter().map(|(p, _)| p));
    let mut binds = Binds::default();
    let mut bound = 0;
    for (pod, value) in pods.iter().filter(|(p, _)| wants_scheduling(p)) {
        let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
        let name = pod.metadata.name.as_deref().unwrap_or_default();
        match decide(&snap, pod, &mut binds.next_start) {
            Decision::Bind(i) => {
                let Some(node) = snap.nodes.get(i).map(|n| n.name) else {
                    continue;
                };
                // Assumed at once, as kube-scheduler's cache does, so the next pod sees this one's requests.
                snap.assume(pod, i);
                binds.pending.push((value, node.to_string()));
                if binds.pending.len() >= BIND_BATCH {
                    bound += binds.flush(objects, recorder).await?;
                }
            }
            Decision::Unschedulable(message) => {
                if mark_unschedulable(objects, ns, name, &message).await? {
                    recorder.warning(value, "FailedScheduling", &message).await;
                }
            }
        }
    }
    bound += binds.flush(objects, recorder).await?;
    Ok(bound)
}

/// How many binds one store transaction carries at most.
const BIND_BATCH: usize = 512;

/// Binds decided in a pass, committed in batches: one transaction (one fsync) for up to [`BIND_BATCH`]
/// binds, then their Scheduled events in another.
#[derive(Default)]
struct Binds<'p> {
    pending: Vec<(&'p Value, String)>,
    /// Where the next pod's node search starts (kube-scheduler's nextStartNodeIndex).
    next_start: usize,
}

impl Binds<'_> {
    async fn flush(&mut self, objects: &Objects, recorder: &Recorder) -> Result<usize, ApiError> {
        if self.pending.is_empty() {
            return Ok(0);
        }
        let pending = std::mem::take(&mut self.pending);
        let edits = pending
            .iter()
            .map(|(pod, node)| {
                let ns = pod.pointer("/metadata/namespace").and_then(Value::as_str);
                let name = pod.pointer("/metadata/name").and_then(Value::as_str);
                let node = node.clone();
                let edit: ObjectEdit = Box::new(move |pod| bind_to(pod, &node).is_ok());
                (
                    ns.unwrap_or_default().to_string(),
                    name.unwrap_or_default().to_string(),
                    edit,
                )
            })
            .collect();
        let changes = objects.edit_many(pods_res(), edits).await?;
        let mut notes = Vec::with_capacity(pending.len());
        for ((pod, node), change) in pending.into_iter().zip(changes) {
            let ns = pod.pointer("/metadata/namespace").and_then(Value::as_str);
            let name = pod.pointer("/metadata/name").and_then(Value::as_str);
            let (ns, name) = (ns.unwrap_or_default(), name.unwrap_or_default());
            if change.is_none() {
                // Deleted or bound by someone else since the snapshot; the next pass sees the truth.
                tracing::debug!(pod = %format!("{ns}/{name}"), "bind lost a race");
                continue;
            }
            tracing::debug!(pod = %format!("{ns}/{name}"), %node, "scheduled");
            notes.push(Note {
                obj: pod,
                type_: "Normal",
                reason: "Scheduled",
                message: format!("Successfully assigned {ns}/{name} to {node}"),
            });
        }
        let bound = notes.len();
        recorder.record_many(notes).await;
        Ok(bound)
    }
}

fn set_condition(
    pod: &mut Value,
    status: &str,
    reason: Option<&str>,
    message: Option<&str>,
) -> bool {
    let mut cond = json!({"type": "PodScheduled", "status": status, "lastProbeTime": null, "lastTransitionTime": now()});
    if let Some(r) = reason {
        cond["reason"] = json!(r);
    }
    if let Some(m) = message {
        cond["message"] = json!(m);
    }
    let conds = pod["status"]["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if let Some(old) = conds.iter().find(|c| c["type"] == "PodScheduled")
        && old["status"] == cond["status"]
        && old.get("reason") == cond.get("reason")
        && old.get("message") == cond.get("message")
    {
        return false;
    }
    let mut conds: Vec<Value> = conds
        .into_iter()
        .filter(|c| c["type"] != "PodScheduled")
        .collect();
    conds.push(cond);
    pod["status"]["conditions"] = Value::Array(conds);
    true
}

fn bound_node(pod: &Value) -> Option<&str> {
    pod.pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
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
            bound_node(pod).is_none()
                && set_condition(pod, "False", Some("Unschedulable"), Some(message))
        })
        .await?;
    Ok(change.is_some())
}

/// Sets `spec.nodeName` and PodScheduled=True; the node the pod is already bound to, if it is.
fn bind_to(pod: &mut Value, node: &str) -> Result<(), String> {
    if let Some(current) = bound_node(pod) {
        return Err(current.to_string());
    }
    pod["spec"]["nodeName"] = json!(node);
    set_condition(pod, "True", None, None);
    Ok(())
}

/// Binds a pod to a node (also the `pods/binding` subresource) in one store write. A pod already bound is a
/// Conflict; a missing pod is NotFound.
pub async fn bind(objects: &Objects, ns: &str, name: &str, node: &str) -> Result<(), ApiError> {
    let res = pods_res();
    let mut found = false;
    let mut current: Option<String> = None;
    objects
        .edit(res, ns, name, |pod| {
            found = true;
            match bind_to(pod, node) {
                Ok(()) => true,
                Err(bound) => {
                    current = Some(bound);
                    false
                }
            }
        })
        .await?;
    if !found {
        return Err(ApiError::not_found(res, name));
    }
    match current {
        None => Ok(()),
        Some(current) => Err(ApiError::Conflict {
            message: format!(
                "Operation cannot be fulfilled on pods/binding \"{name}\": pod {name} is already assigned to node \"{current}\""
            ),
            group: String::new(),
            kind: "pods/binding".into(),
            name: name.into(),
        }),
    }
}
