//! Node lifecycle: a node whose Lease has not been renewed within the grace period becomes Ready=Unknown and
//! gets the `node.kubernetes.io/unreachable:NoExecute` taint; its pods are evicted once their toleration of
//! that taint runs out, so their controllers replace them on other nodes. A node that renews again loses the
//! taint (the agent itself reports Ready=True again).

use std::time::Duration;

use herd_api::resources::{self, ResourceInfo};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::error::ApiError;
use crate::events::Recorder;
use crate::objects::{DeleteOptions, Objects, now};

pub const UNREACHABLE_TAINT: &str = "node.kubernetes.io/unreachable";

/// The three timings of node lifecycle, named after Kubernetes' flags.
#[derive(Debug, Clone, Copy)]
pub struct NodeLifecycleConfig {
    /// `--node-monitor-grace-period`: how stale a Lease may get before the node is unreachable.
    pub monitor_grace_period: Duration,
    /// `--default-unreachable-toleration-seconds`: how long pods without their own toleration stay.
    pub default_unreachable_toleration: Duration,
}

impl Default for NodeLifecycleConfig {
    fn default() -> Self {
        Self {
            monitor_grace_period: Duration::from_secs(40),
            default_unreachable_toleration: Duration::from_secs(300),
        }
    }
}

fn res(plural: &str) -> &'static ResourceInfo {
    let group = if plural == "leases" {
        "coordination.k8s.io"
    } else {
        ""
    };
    resources::by_path(group, "v1", plural).expect("resource in the table")
}

fn parse_time(v: Option<&Value>) -> Option<jiff::Timestamp> {
    v?.as_str()?.parse().ok()
}

/// Checks nodes every tick until `shutdown`.
pub async fn run(objects: Objects, cfg: NodeLifecycleConfig, shutdown: CancellationToken) {
    let recorder = Recorder::new(objects.clone(), "node-controller");
    let tick =
        (cfg.monitor_grace_period / 8).clamp(Duration::from_millis(200), Duration::from_secs(5));
    loop {
        if let Err(e) = check(&objects, &cfg, &recorder).await {
            tracing::warn!(error = %e, "node lifecycle check failed");
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(tick) => {}
        }
    }
}

async fn check(
    objects: &Objects,
    cfg: &NodeLifecycleConfig,
    recorder: &Recorder,
) -> Result<(), ApiError> {
    let (nodes, _) = objects.list_all(res("nodes"), None).await?;
    let (leases, _) = objects
        .list_all(res("leases"), Some("kube-node-lease"))
        .await?;
    let now_ts = jiff::Timestamp::now();
    let grace = jiff::SignedDuration::try_from(cfg.monitor_grace_period).unwrap_or_default();
    for node in &nodes {
        let Some(name) = node.pointer("/metadata/name").and_then(Value::as_str) else {
            continue;
        };
        let lease = leases
            .iter()
            .find(|l| l.pointer("/metadata/name").and_then(Value::as_str) == Some(name));
        // A node without a Lease is judged by its creation time, so a brand-new node gets the grace period.
        let renewed = lease
            .and_then(|l| parse_time(l.pointer("/spec/renewTime")))
            .or_else(|| parse_time(node.pointer("/metadata/creationTimestamp")));
        let stale = renewed.is_none_or(|t| now_ts.duration_since(t) > grace);
        let tainted = has_taint(node);
        if stale && !tainted {
            mark_unreachable(objects, name).await?;
            tracing::warn!(node = %name, "node stopped renewing its lease: Ready=Unknown, tainted unreachable");
            recorder
                .normal(
                    node,
                    "NodeNotReady",
                    &format!("Node {name} status is now: NodeNotReady"),
                )
                .await;
        } else if !stale && tainted {
            objects
                .edit(res("nodes"), "", name, |n| {
                    let Some(taints) = n.pointer_mut("/spec/taints").and_then(Value::as_array_mut)
                    else {
                        return false;
                    };
                    taints.retain(|t| t["key"] != UNREACHABLE_TAINT);
                    true
                })
                .await?;
            tracing::info!(node = %name, "node renews its lease again: taint removed");
        }
    }
    evict_from_unreachable(objects, cfg, &nodes, recorder).await
}

fn has_taint(node: &Value) -> bool {
    node.pointer("/spec/taints")
        .and_then(Value::as_array)
        .is_some_and(|ts| ts.iter().any(|t| t["key"] == UNREACHABLE_TAINT))
}

async fn mark_unreachable(objects: &Objects, name: &str) -> Result<(), ApiError> {
    let stamp = now();
    objects
        .edit(res("nodes"), "", name, |n| {
            if !n["spec"]["taints"].is_array() {
                n["spec"]["taints"] = json!([]);
            }
            if let Some(taints) = n["spec"]["taints"].as_array_mut() {
                taints.push(
                    json!({"key": UNREACHABLE_TAINT, "effect": "NoExecute", "timeAdded": stamp}),
                );
            }
            if let Some(conds) = n
                .pointer_mut("/status/conditions")
                .and_then(Value::as_array_mut)
            {
                for c in conds.iter_mut().filter(|c| c["type"] == "Ready") {
                    c["status"] = json!("Unknown");
                    c["reason"] = json!("NodeStatusUnknown");
                    c["message"] = json!("Kubelet stopped posting node status.");
                    c["lastTransitionTime"] = json!(stamp);
                }
            }
            true
        })
        .await?;
    Ok(())
}

/// How long a pod tolerates the unreachable taint: its own toleration's seconds, forever for a toleration
/// without seconds, else the default (what kube-apiserver's DefaultTolerationSeconds admission adds).
fn toleration(pod: &Value, default: Duration) -> Option<Duration> {
    let tolerations = pod.pointer("/spec/tolerations").and_then(Value::as_array);
    let own = tolerations.into_iter().flatten().find(|t| {
        let key_ok = t["key"] == UNREACHABLE_TAINT
            || (t["key"].as_str().is_none_or(str::is_empty) && t["operator"] == "Exists");
        let effect_ok = t["effect"]
            .as_str()
            .is_none_or(|e| e.is_empty() || e == "NoExecute");
        key_ok && effect_ok
    });
    match own {
        Some(t) => t["tolerationSeconds"]
            .as_i64()
            .map(|s| Duration::from_secs(s.max(0) as u64)),
        None => Some(default),
    }
}

async fn evict_from_unreachable(
    objects: &Objects,
    cfg: &NodeLifecycleConfig,
    nodes: &[Value],
    recorder: &Recorder,
) -> Result<(), ApiError> {
    let tainted: Vec<(&str, jiff::Timestamp)> = nodes
        .iter()
        .filter_map(|n| {
            let taint = n
                .pointer("/spec/taints")?
                .as_array()?
                .iter()
                .find(|t| t["key"] == UNREACHABLE_TAINT)?;
            Some((
                n.pointer("/metadata/name")?.as_str()?,
                parse_time(taint.get("timeAdded"))?,
            ))
        })
        .collect();
    if tainted.is_empty() {
        return Ok(());
    }
    let (pods, _) = objects.list_all(res("pods"), None).await?;
    let now_ts = jiff::Timestamp::now();
    for pod in pods
        .iter()
        .filter(|p| p.pointer("/metadata/deletionTimestamp").is_none())
    {
        let node = pod
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let Some((_, added)) = tainted.iter().find(|(n, _)| *n == node) else {
            continue;
        };
        let Some(tolerated) = toleration(pod, cfg.default_unreachable_toleration) else {
            continue;
        };
        let tolerated = jiff::SignedDuration::try_from(tolerated).unwrap_or_default();
        if now_ts.duration_since(*added) < tolerated {
            continue;
        }
        let ns = pod.pointer("/metadata/namespace").and_then(Value::as_str);
        let Some(name) = pod.pointer("/metadata/name").and_then(Value::as_str) else {
            continue;
        };
        match objects
            .delete(res("pods"), ns, name, DeleteOptions::default())
            .await
        {
            Ok(_) => {
                tracing::info!(pod = %name, %node, "evicted from an unreachable node");
                recorder
                    .normal(
                        pod,
                        "TaintManagerEviction",
                        &format!("Marking for deletion Pod {}/{name}", ns.unwrap_or_default()),
                    )
                    .await;
            }
            Err(ApiError::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toleration_seconds_come_from_the_pod_or_the_default() {
        let default = Duration::from_secs(300);
        let plain = json!({"spec": {}});
        assert_eq!(toleration(&plain, default), Some(default));
        let own = json!({"spec": {"tolerations": [{"key": UNREACHABLE_TAINT, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 5}]}});
        assert_eq!(toleration(&own, default), Some(Duration::from_secs(5)));
        let forever = json!({"spec": {"tolerations": [{"operator": "Exists"}]}});
        assert_eq!(toleration(&forever, default), None);
        let other = json!({"spec": {"tolerations": [{"key": "x", "operator": "Exists", "tolerationSeconds": 1}]}});
        assert_eq!(toleration(&other, default), Some(default));
    }
}
