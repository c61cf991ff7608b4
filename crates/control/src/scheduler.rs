//! The scheduler: binds each unscheduled pod to a Ready node whose allocatable cpu, memory and pod count fit
//! its requests, preferring the least allocated node. A pod that fits nowhere stays Pending with a
//! `PodScheduled=False` condition saying why, and is retried when pods or nodes change.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::StreamExt;
use herd_api::quantity;
use herd_api::resources::{self, ResourceInfo};
use k8s_openapi::api::core::v1::{Node, Pod};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::error::ApiError;
use crate::events::Recorder;
use crate::objects::{Objects, now};

/// How often unschedulable pods are retried even when nothing changed.
const RETRY: Duration = Duration::from_secs(5);

fn pods_res() -> &'static ResourceInfo {
    resources::by_path("", "v1", "pods").expect("pods are in the resource table")
}

/// What a node has left, and what a pod asks for: (millicores, bytes, pods).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Resources {
    cpu: i64,
    memory: i64,
    pods: i64,
}

fn pod_requests(pod: &Pod) -> Resources {
    let mut r = Resources {
        pods: 1,
        ..Default::default()
    };
    for c in pod.spec.iter().flat_map(|s| &s.containers) {
        let req = c
            .resources
            .as_ref()
            .and_then(|r| r.requests.as_ref().or(r.limits.as_ref()));
        if let Some(req) = req {
            r.cpu += req
                .get("cpu")
                .and_then(|q| quantity::cpu_millis(&q.0))
                .unwrap_or(0);
            r.memory += req
                .get("memory")
                .and_then(|q| quantity::value(&q.0))
                .unwrap_or(0);
        }
    }
    r
}

fn allocatable(node: &Node) -> Resources {
    let alloc = node.status.as_ref().and_then(|s| s.allocatable.as_ref());
    let get = |k: &str, f: fn(&str) -> Option<i64>| {
        alloc
            .and_then(|a| a.get(k))
            .and_then(|q| f(&q.0))
            .unwrap_or(0)
    };
    Resources {
        cpu: get("cpu", quantity::cpu_millis),
        memory: get("memory", quantity::value),
        pods: get("pods", quantity::value),
    }
}

fn is_ready(node: &Node) -> bool {
    let unschedulable = node
        .spec
        .as_ref()
        .and_then(|s| s.unschedulable)
        .unwrap_or(false);
    let ready = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    ready && !unschedulable
}

fn is_terminal(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
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
                    // Only changes a pass could act on: new/unbound pods, freed capacity, node changes.
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

/// One pass: binds every pod it can; records why the others cannot run.
pub async fn schedule_pending(objects: &Objects, recorder: &Recorder) -> Result<(), ApiError> {
    let (node_values, _) = objects.store().list("nodes", None).await?;
    let (pod_values, _) = objects.store().list("pods", None).await?;
    let nodes: Vec<Node> = node_values
        .into_iter()
        .filter_map(|v| serde_json::from_value(v).ok())
        .collect();
    let pods: Vec<Pod> = pod_values
        .into_iter()
        .filter_map(|v| serde_json::from_value(v).ok())
        .collect();
    let mut free: BTreeMap<String, (Resources, Resources)> = nodes
        .iter()
        .filter(|n| is_ready(n))
        .filter_map(|n| Some((n.metadata.name.clone()?, (allocatable(n), allocatable(n)))))
        .collect();
    for pod in pods.iter().filter(|p| !is_terminal(p)) {
        if let Some((_, left)) = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.as_ref())
            .and_then(|n| free.get_mut(n))
        {
            let req = pod_requests(pod);
            left.cpu -= req.cpu;
            left.memory -= req.memory;
            left.pods -= req.pods;
        }
    }
    for pod in &pods {
        let spec = pod.spec.as_ref();
        let unbound = spec.is_some_and(|s| s.node_name.as_deref().is_none_or(str::is_empty));
        let ours = spec
            .and_then(|s| s.scheduler_name.as_deref())
            .is_none_or(|s| s == "default-scheduler");
        if !unbound || !ours || pod.metadata.deletion_timestamp.is_some() || is_terminal(pod) {
            continue;
        }
        let req = pod_requests(pod);
        let mut reasons: BTreeMap<&str, usize> = BTreeMap::new();
        let mut best: Option<(&String, f64)> = None;
        for (name, (total, left)) in &free {
            let mut fits = true;
            for (short, have, want) in [
                ("Too many pods", left.pods, req.pods),
                ("Insufficient cpu", left.cpu, req.cpu),
                ("Insufficient memory", left.memory, req.memory),
            ] {
                if want > have {
                    *reasons.entry(short).or_default() += 1;
                    fits = false;
                }
            }
            if !fits {
                continue;
            }
            // Least allocated: the mean fraction of cpu and memory still free after placing the pod.
            let frac = |l: i64, w: i64, t: i64| {
                if t > 0 {
                    (l - w) as f64 / t as f64
                } else {
                    0.0
                }
            };
            let score = (frac(left.cpu, req.cpu, total.cpu)
                + frac(left.memory, req.memory, total.memory))
                / 2.0;
            if best.is_none_or(|(_, s)| score > s) {
                best = Some((name, score));
            }
        }
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let pod_name = pod.metadata.name.clone().unwrap_or_default();
        match best.map(|(n, _)| n.clone()) {
            Some(node) => match bind(objects, &ns, &pod_name, &node).await {
                Ok(()) => {
                    if let Some((_, left)) = free.get_mut(&node) {
                        left.cpu -= req.cpu;
                        left.memory -= req.memory;
                        left.pods -= req.pods;
                    }
                    tracing::info!(pod = %format!("{ns}/{pod_name}"), %node, "scheduled");
                    let obj = serde_json::to_value(pod).unwrap_or_default();
                    recorder
                        .normal(
                            &obj,
                            "Scheduled",
                            &format!("Successfully assigned {ns}/{pod_name} to {node}"),
                        )
                        .await;
                }
                Err(e) => tracing::debug!(error = %e, "bind lost a race"),
            },
            None => {
                let total = nodes.len();
                let mut parts: Vec<String> =
                    reasons.iter().map(|(r, n)| format!("{n} {r}")).collect();
                let not_ready = nodes.len() - free.len();
                if not_ready > 0 {
                    parts.push(format!(
                        "{not_ready} node(s) were not ready or unschedulable"
                    ));
                }
                let message = if total == 0 {
                    "no nodes available to schedule pods".to_string()
                } else {
                    format!("0/{total} nodes are available: {}.", parts.join(", "))
                };
                if mark_unschedulable(objects, &ns, &pod_name, &message).await? {
                    let obj = serde_json::to_value(pod).unwrap_or_default();
                    recorder.warning(&obj, "FailedScheduling", &message).await;
                }
            }
        }
    }
    Ok(())
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

async fn mark_unschedulable(
    objects: &Objects,
    ns: &str,
    name: &str,
    message: &str,
) -> Result<bool, ApiError> {
    let change = objects
        .edit(pods_res(), ns, name, |pod| {
            if pod
                .pointer("/spec/nodeName")
                .and_then(Value::as_str)
                .is_some_and(|n| !n.is_empty())
            {
                return false;
            }
            set_condition(pod, "False", Some("Unschedulable"), Some(message))
        })
        .await?;
    Ok(change.is_some())
}

/// Binds a pod to a node (also the `pods/binding` subresource). A pod already bound is a Conflict.
pub async fn bind(objects: &Objects, ns: &str, name: &str, node: &str) -> Result<(), ApiError> {
    let res = pods_res();
    let pod = objects.get(res, Some(ns), name).await?;
    if let Some(current) = pod
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
    {
        return Err(ApiError::Conflict {
            message: format!(
                "Operation cannot be fulfilled on pods/binding \"{name}\": pod {name} is already assigned to node \"{current}\""
            ),
            group: String::new(),
            kind: "pods/binding".into(),
            name: name.into(),
        });
    }
    let mut bound = false;
    objects
        .edit(res, ns, name, |pod| {
            if pod
                .pointer("/spec/nodeName")
                .and_then(Value::as_str)
                .is_some_and(|n| !n.is_empty())
            {
                return false;
            }
            pod["spec"]["nodeName"] = json!(node);
            set_condition(pod, "True", None, None);
            bound = true;
            true
        })
        .await?;
    if bound {
        Ok(())
    } else {
        Err(ApiError::conflict(res, name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_fall_back_to_limits_and_count_one_pod() {
        let pod: Pod = serde_json::from_value(json!({"spec": {"containers": [
            {"name": "a", "resources": {"requests": {"cpu": "250m", "memory": "64Mi"}}},
            {"name": "b", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}},
        ]}}))
        .unwrap();
        assert_eq!(
            pod_requests(&pod),
            Resources {
                cpu: 1250,
                memory: (64 << 20) + (1 << 30),
                pods: 1
            }
        );
    }
}
