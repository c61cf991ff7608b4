//! Node lifecycle (kube-controller-manager's node lifecycle controller), a controller like the others, one
//! key per node: a node whose Lease has not been renewed within the grace period becomes Ready=Unknown and
//! gets the `node.kubernetes.io/unreachable:NoExecute` taint; its pods are evicted once their toleration of
//! that taint runs out, so their controllers replace them on other nodes. A node that renews again loses the
//! taint (the agent itself reports Ready=True again). Lease renewals wake the node's key; a reconcile asks to
//! be run again when the lease would go stale or the next toleration runs out.

use std::sync::Arc;
use std::time::Duration;

use herd_api::resources::{self, ResourceInfo};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Toleration};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Controller, Informers, Key, Requeue};
use crate::error::ApiError;
use crate::events::Recorder;
use crate::objects::{Change, DeleteOptions, Objects, now};

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

/// The namespace of the nodes' Leases.
const LEASE_NAMESPACE: &str = "kube-node-lease";

pub struct NodeLifecycle {
    objects: Objects,
    caches: Arc<Informers>,
    cfg: NodeLifecycleConfig,
    recorder: Recorder,
}

impl NodeLifecycle {
    pub fn new(objects: Objects, caches: Arc<Informers>, cfg: NodeLifecycleConfig) -> Self {
        Self {
            caches,
            recorder: Recorder::new(objects.clone(), "node-controller"),
            objects,
            cfg,
        }
    }
}

impl Controller for NodeLifecycle {
    const NAME: &'static str = "nodelifecycle";

    fn watches(&self) -> &'static [&'static str] {
        &["nodes", "leases.coordination.k8s.io"]
    }

    /// A node's key is its name: its own changes and its Lease's renewals.
    fn keys_for(&self, change: &Change) -> Vec<Key> {
        match &*change.resource {
            "nodes" => vec![(String::new(), change.name.clone())],
            _ if change.namespace == LEASE_NAMESPACE => vec![(String::new(), change.name.clone())],
            _ => Vec::new(),
        }
    }

    async fn all_keys(&self) -> Result<Vec<Key>, ApiError> {
        // Cluster-scoped objects: the namespace part of the key is empty.
        Ok(self.caches.keys(res("nodes")))
    }

    async fn reconcile(&self, (_, name): &Key) -> Result<Requeue, ApiError> {
        let Some(node) = self.caches.store::<Node>().get("", name) else {
            return Ok(None);
        };
        let lease = self.caches.store::<Lease>().get(LEASE_NAMESPACE, name);
        // A node without a Lease is judged by its creation time, so a brand-new node gets the grace period.
        let renewed = lease
            .as_ref()
            .and_then(|l| l.spec.as_ref()?.renew_time.as_ref())
            .map(|t| t.0)
            .or_else(|| node.metadata.creation_timestamp.as_ref().map(|t| t.0));
        let now_ts = jiff::Timestamp::now();
        let grace =
            jiff::SignedDuration::try_from(self.cfg.monitor_grace_period).unwrap_or_default();
        let stale = renewed.is_none_or(|t| now_ts.duration_since(t) > grace);
        let tainted = has_taint(&node);
        let mut marked = None;
        if stale && !tainted {
            marked = mark_unreachable(&self.objects, name).await?;
            tracing::warn!(node = %name, "node stopped renewing its lease: Ready=Unknown, tainted unreachable");
            if let Some(written) = &marked {
                self.recorder
                    .normal(
                        written,
                        "NodeNotReady",
                        &format!("Node {name} status is now: NodeNotReady"),
                    )
                    .await;
            }
        } else if !stale && tainted {
            self.objects
                .edit(res("nodes"), "", name, |n| {
                    let Some(taints) = n
                        .get_mut("spec")
                        .and_then(|s| s.get_mut("taints"))
                        .and_then(Value::as_array_mut)
                    else {
                        return false;
                    };
                    taints.retain(|t| t["key"] != UNREACHABLE_TAINT);
                    true
                })
                .await?;
            tracing::info!(node = %name, "node renews its lease again: taint removed");
        }
        if stale {
            // Tainted now (or already): evict what no longer tolerates it, and come back for the rest.
            let node = match marked {
                Some(written) => Arc::new(decode_node(&written)?),
                None => node,
            };
            return evict_from_unreachable(self, &node).await;
        }
        // Fresh: look again when the lease would go stale, unless it is renewed first.
        let stale_in = renewed
            .map(|t| grace - now_ts.duration_since(t))
            .and_then(|left| Duration::try_from(left).ok())
            .unwrap_or_default();
        Ok(Some(stale_in + Duration::from_millis(100)))
    }
}

/// The node's unreachable taint, if it has one.
fn unreachable_taint(node: &Node) -> Option<&k8s_openapi::api::core::v1::Taint> {
    node.spec
        .as_ref()?
        .taints
        .as_ref()?
        .iter()
        .find(|t| t.key == UNREACHABLE_TAINT)
}

fn has_taint(node: &Node) -> bool {
    unreachable_taint(node).is_some()
}

fn decode_node(node: &Value) -> Result<Node, ApiError> {
    Node::deserialize(node).map_err(|e| ApiError::Internal(format!("decoding a Node: {e}")))
}

/// Taints node `name` unreachable and marks it Ready=Unknown; returns the node as written.
async fn mark_unreachable(objects: &Objects, name: &str) -> Result<Option<Arc<Value>>, ApiError> {
    let stamp = now();
    let change = objects
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
                .get_mut("status")
                .and_then(|s| s.get_mut("conditions"))
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
    Ok(change.map(|c| c.object.clone()))
}

/// How long a pod tolerates the unreachable taint: its own toleration's seconds, forever for a toleration
/// without seconds, else the default (what kube-apiserver's DefaultTolerationSeconds admission adds).
fn toleration(pod: &Value, default: Duration) -> Option<Duration> {
    // Pods stay JSON in the caches (the hot path); only their tolerations are read typed.
    let tolerations: Vec<Toleration> = pod
        .get("spec")
        .and_then(|s| s.get("tolerations"))
        .and_then(|t| Vec::deserialize(t).ok())
        .unwrap_or_default();
    let own = tolerations.iter().find(|t| {
        let key = t.key.as_deref().unwrap_or_default();
        let key_ok =
            key == UNREACHABLE_TAINT || (key.is_empty() && t.operator.as_deref() == Some("Exists"));
        let effect_ok = t
            .effect
            .as_deref()
            .is_none_or(|e| e.is_empty() || e == "NoExecute");
        key_ok && effect_ok
    });
    match own {
        Some(t) => t
            .toleration_seconds
            .map(|s| Duration::from_secs(s.max(0) as u64)),
        None => Some(default),
    }
}

/// Evicts the pods of the unreachable `node` whose toleration of the taint has run out; returns when to
/// look again (the next toleration to run out).
async fn evict_from_unreachable(
    lifecycle: &NodeLifecycle,
    node: &Node,
) -> Result<Requeue, ApiError> {
    let NodeLifecycle {
        objects,
        caches,
        cfg,
        recorder,
    } = lifecycle;
    let Some(name) = node.metadata.name.as_deref() else {
        return Ok(None);
    };
    let Some(added) = unreachable_taint(node)
        .and_then(|t| t.time_added.as_ref())
        .map(|t| t.0)
    else {
        return Ok(None);
    };
    let pods = caches.on_node(name);
    let now_ts = jiff::Timestamp::now();
    let mut next: Option<Duration> = None;
    for pod in pods
        .iter()
        .filter(|p| p["metadata"].get("deletionTimestamp").is_none())
    {
        let Some(tolerated) = toleration(pod, cfg.default_unreachable_toleration) else {
            continue;
        };
        let tolerated = jiff::SignedDuration::try_from(tolerated).unwrap_or_default();
        let left = tolerated - now_ts.duration_since(added);
        if left.is_positive() {
            let left = Duration::try_from(left).unwrap_or_default();
            next = Some(next.map_or(left, |n| n.min(left)));
            continue;
        }
        let ns = pod["metadata"]["namespace"].as_str();
        let Some(pod_name) = pod["metadata"]["name"].as_str() else {
            continue;
        };
        match objects
            .delete(res("pods"), ns, pod_name, DeleteOptions::default())
            .await
        {
            Ok(_) => {
                tracing::info!(pod = %pod_name, node = %name, "evicted from an unreachable node");
                recorder
                    .normal(
                        pod,
                        "TaintManagerEviction",
                        &format!(
                            "Marking for deletion Pod {}/{pod_name}",
                            ns.unwrap_or_default()
                        ),
                    )
                    .await;
            }
            Err(ApiError::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    // Pods that arrive later are found by the resync.
    Ok(next.map(|n| n + Duration::from_millis(100)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One key per node: a fresh lease asks to be looked at again when it would go stale; a stale one
    /// taints the node at once.
    #[tokio::test]
    async fn a_node_is_reconciled_by_its_lease() {
        let (_dir, objects) = crate::objects::test_objects().await;
        for ns in ["kube-node-lease"] {
            let namespace =
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
            objects
                .create(res("namespaces"), None, namespace, false)
                .await
                .unwrap();
        }
        let cfg = NodeLifecycleConfig {
            monitor_grace_period: Duration::from_secs(40),
            default_unreachable_toleration: Duration::from_secs(300),
        };
        let caches = Arc::new(Informers::new(objects.clone()));
        let controller = NodeLifecycle::new(objects.clone(), caches.clone(), cfg);
        for (name, renewed) in [
            ("fresh", jiff::Timestamp::now()),
            ("stale", jiff::Timestamp::UNIX_EPOCH),
        ] {
            let node = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}});
            objects
                .create(res("nodes"), None, node, false)
                .await
                .unwrap();
            let lease = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": name, "namespace": LEASE_NAMESPACE},
                "spec": {"holderIdentity": name, "renewTime": renewed.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()}});
            objects
                .create(res("leases"), Some(LEASE_NAMESPACE), lease, false)
                .await
                .unwrap();
        }
        caches.ensure_loaded().await.unwrap();
        let again = controller
            .reconcile(&(String::new(), "fresh".into()))
            .await
            .unwrap()
            .expect("a fresh node is looked at again");
        assert!(
            again <= Duration::from_secs(41) && again >= Duration::from_secs(30),
            "{again:?}"
        );
        let node = objects
            .find(res("nodes"), "", "fresh")
            .await
            .unwrap()
            .unwrap();
        assert!(!has_taint(&decode_node(&node).unwrap()));

        controller
            .reconcile(&(String::new(), "stale".into()))
            .await
            .unwrap();
        let node = objects
            .find(res("nodes"), "", "stale")
            .await
            .unwrap()
            .unwrap();
        assert!(has_taint(&decode_node(&node).unwrap()), "{node}");
        // The lease's key is its node's.
        let (leases, _) = objects.list_all(res("leases"), None).await.unwrap();
        let change = Change {
            rev: 1,
            resource: std::sync::Arc::from("leases.coordination.k8s.io"),
            namespace: LEASE_NAMESPACE.into(),
            name: "stale".into(),
            kind: crate::objects::EventType::Modified,
            object: std::sync::Arc::new(leases[0].clone()),
            previous: None,
        };
        assert_eq!(
            controller.keys_for(&change),
            [(String::new(), "stale".to_string())]
        );
    }

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
