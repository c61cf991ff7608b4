//! DaemonSet: one pod per eligible node (kube's daemon controller), replaced node by node when the
//! template changes: RollingUpdate with `maxUnavailable` deletes old pods first; with `maxSurge` (and
//! `maxUnavailable` 0) it starts the updated pod next to the old one and deletes the old pod once the new
//! one is Ready, on at most `maxSurge` nodes at a time.
//!
//! A node is eligible when it matches the template's nodeSelector and required node affinity and every
//! NoSchedule/NoExecute taint is tolerated — by the template's tolerations plus the ones kube adds to
//! every daemon pod (not-ready, unreachable, unschedulable, pressure). Readiness and `unschedulable` do
//! not matter. Pods are created bound (`spec.nodeName`): herd's scheduler only places pods on Ready nodes
//! and does not read node affinity, and a daemon pod must run on a not-ready or cordoned node too.

use std::collections::BTreeMap;
use std::sync::Arc;

use herd_api::resources::{self, ResourceInfo};
use serde_json::{Value, json};

use super::batch::{self, DAEMON_BURST_REPLICAS};
use super::deployment::template_hash;
use super::{
    Controller, Informers, Key, Requeue, controller_owner, key_of, pod_from_template, pod_is_ready,
};
use k8s_openapi::api::core::v1::{Node, Pod};

use crate::error::ApiError;
use crate::events::{EventQueue, Recorder};
use crate::objects::Change;
use crate::objects::{Objects, core};
use crate::scheduler::{node_affinity_matches, tolerates};

const REVISION_LABEL: &str = "controller-revision-hash";

pub struct DaemonSets {
    objects: Objects,
    caches: Arc<Informers>,
    /// SuccessfulCreate/SuccessfulDelete, written in the background in batches.
    events: EventQueue,
    daemonsets: &'static ResourceInfo,
    pods: &'static ResourceInfo,
}

impl DaemonSets {
    pub fn new(objects: Objects, caches: Arc<Informers>) -> Self {
        Self {
            events: EventQueue::spawn(Recorder::new(objects.clone(), "daemonset-controller")),
            objects,
            caches,
            daemonsets: resources::by_path("apps", "v1", "daemonsets").expect("daemonsets"),
            pods: resources::by_path("", "v1", "pods").expect("pods"),
        }
    }
}

impl Controller for DaemonSets {
    const NAME: &'static str = "daemonset";

    fn watches(&self) -> &'static [&'static str] {
        &["daemonsets.apps", "pods", "nodes"]
    }

    fn keys_for(&self, change: &Change) -> Vec<Key> {
        match &*change.resource {
            "pods" => controller_owner(&change.object, "DaemonSet")
                .map(|ds| (change.namespace.clone(), ds))
                .into_iter()
                .collect(),
            // A node change may change where any DaemonSet runs: every one, from the cache.
            "nodes" => self.caches.keys(self.daemonsets),
            _ => vec![key_of(change)],
        }
    }

    async fn all_keys(&self) -> Result<Vec<Key>, ApiError> {
        Ok(self.caches.keys(self.daemonsets))
    }

    async fn reconcile(&self, (ns, name): &Key) -> Result<Requeue, ApiError> {
        let Some(ds) = self.caches.get(self.daemonsets, ns, name) else {
            return Ok(None);
        };
        if ds.pointer("/metadata/deletionTimestamp").is_some() {
            return Ok(None);
        }
        let uid = ds
            .pointer("/metadata/uid")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let template = ds.pointer("/spec/template").cloned().unwrap_or(Value::Null);
        let hash = template_hash(&template);
        let mut pod_spec = template.get("spec").cloned().unwrap_or(json!({}));
        add_daemon_tolerations(&mut pod_spec);
        let nodes = self.caches.list(core("nodes"), None);
        let mut by_node: BTreeMap<String, Vec<Arc<Value>>> = BTreeMap::new();
        for pod in self.caches.controlled_by(&uid) {
            let node = pod
                .pointer("/spec/nodeName")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            by_node.entry(node).or_default().push(pod);
        }

        let mut status = Counts::default();
        let mut to_create: Vec<String> = Vec::new();
        let mut to_delete: Vec<Arc<Value>> = Vec::new();
        let mut old_running: Vec<Arc<Value>> = Vec::new();
        let mut unavailable = 0usize;
        let desired = nodes.iter().filter(|n| placement(&pod_spec, n).0).count();
        let max_surge = if rolling(&ds) {
            max_surge(&ds, desired)
        } else {
            0
        };
        let mut surge = Surge::default();
        let is_updated = |p: &Value| {
            p.pointer(&format!("/metadata/labels/{REVISION_LABEL}")) == Some(&json!(hash))
        };
        for node in &nodes {
            let Some(node_name) = node.pointer("/metadata/name").and_then(Value::as_str) else {
                continue;
            };
            let (should_run, should_continue) = placement(&pod_spec, node);
            let pods = by_node.remove(node_name).unwrap_or_default();
            let (terminal_failed, others): (Vec<Arc<Value>>, Vec<Arc<Value>>) = pods
                .into_iter()
                .partition(|p| p.pointer("/status/phase") == Some(&json!("Failed")));
            let mut running: Vec<Arc<Value>> = others
                .into_iter()
                .filter(|p| p.pointer("/metadata/deletionTimestamp").is_none())
                .collect();
            if should_run {
                status.desired += 1;
            }
            if !running.is_empty() {
                if should_run {
                    status.current += 1;
                } else {
                    status.misscheduled += 1;
                }
            }
            if !should_continue {
                to_delete.extend(running);
                to_delete.extend(terminal_failed);
                continue;
            }
            // A failed daemon pod is replaced.
            to_delete.extend(terminal_failed);
            // Keep the oldest running pod; extras go.
            running.sort_by_key(|p| {
                p.pointer("/metadata/creationTimestamp")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string()
            });
            if max_surge > 0 {
                // Surging: an updated pod joins the old one on its node before the old one goes.
                let (mut new, mut old): (Vec<Arc<Value>>, Vec<Arc<Value>>) =
                    running.into_iter().partition(|p| is_updated(p));
                to_delete.extend(new.split_off(new.len().min(1)));
                to_delete.extend(old.split_off(old.len().min(1)));
                let (new, old) = (new.pop(), old.pop());
                if should_run {
                    let ready = new.iter().chain(old.iter()).any(|p| pod_is_ready(p));
                    status.ready += usize::from(ready);
                    status.updated += usize::from(new.is_some());
                }
                match (new, old) {
                    (None, None) if should_run => to_create.push(node_name.to_string()),
                    (None, Some(old)) if should_run => {
                        if pod_is_ready(&old) {
                            surge.candidates.push(node_name.to_string());
                        } else {
                            // An unavailable old pod costs nothing to replace.
                            surge.allowed.push(node_name.to_string());
                        }
                    }
                    (Some(new), Some(old)) => {
                        if pod_is_ready(&new) {
                            to_delete.push(old);
                        } else {
                            surge.in_flight += 1;
                        }
                    }
                    _ => {}
                }
                continue;
            }
            let extras = running.split_off(running.len().min(1));
            to_delete.extend(extras);
            match running.pop() {
                None if should_run => {
                    to_create.push(node_name.to_string());
                    unavailable += 1;
                }
                None => {}
                Some(pod) => {
                    let updated = pod.pointer(&format!("/metadata/labels/{REVISION_LABEL}"))
                        == Some(&json!(hash));
                    let ready = pod_is_ready(&pod);
                    if should_run {
                        status.ready += usize::from(ready);
                        status.updated += usize::from(updated);
                        if !ready {
                            unavailable += 1;
                        }
                    }
                    if !updated {
                        old_running.push(pod);
                    }
                }
            }
        }
        if max_surge > 0 {
            // kube's surge: replace unavailable old pods, and surge onto at most maxSurge nodes at once.
            let room = max_surge
                .saturating_sub(surge.in_flight)
                .min(surge.candidates.len());
            to_create.extend(surge.allowed);
            to_create.extend(surge.candidates.into_iter().take(room));
        }
        let orphans: Vec<Arc<Value>> = by_node.into_values().flatten().collect();

        // kube's syncNodes: at most a burst of creates per sync, in slow-start batches; the rest next sync.
        let mut again = None;
        if to_create.len() > DAEMON_BURST_REPLICAS {
            to_create.truncate(DAEMON_BURST_REPLICAS);
            again = Some(std::time::Duration::ZERO);
        }
        let pods = to_create
            .iter()
            .map(|node| daemon_pod(&ds, &hash, &template, &pod_spec, node))
            .collect();
        let (_, create_failed) =
            batch::create_pods(&self.objects, self.pods, &self.events, &ds, pods).await;
        if rolling(&ds) {
            let max_unavailable = max_unavailable(&ds, status.desired);
            // Unavailable old pods are replaced first; they cost nothing.
            old_running.sort_by_key(|p| pod_is_ready(p));
            for pod in old_running {
                if pod_is_ready(&pod) {
                    if unavailable >= max_unavailable {
                        break;
                    }
                    unavailable += 1;
                }
                to_delete.push(pod);
            }
        }
        let to_delete: Vec<&Value> = to_delete.iter().map(|p| &**p).collect();
        batch::delete_pods(
            &self.objects,
            self.pods,
            &self.events,
            &ds,
            &to_delete,
            None,
        )
        .await?;
        // Pods on nodes that no longer exist (or never bound) go at once, as the pod GC would.
        let orphans: Vec<&Value> = orphans.iter().map(|p| &**p).collect();
        batch::delete_pods(
            &self.objects,
            self.pods,
            &self.events,
            &ds,
            &orphans,
            Some(0),
        )
        .await?;

        let mut new_status = json!({
            "desiredNumberScheduled": status.desired,
            "currentNumberScheduled": status.current,
            "numberMisscheduled": status.misscheduled,
            "numberReady": status.ready,
            "numberAvailable": status.ready,
            "updatedNumberScheduled": status.updated,
            "observedGeneration": ds.pointer("/metadata/generation").cloned().unwrap_or(json!(1)),
        });
        let unavailable_count = status.desired.saturating_sub(status.ready);
        if unavailable_count > 0 {
            new_status["numberUnavailable"] = json!(unavailable_count);
        }
        // kube omits these when zero.
        if let Some(m) = new_status.as_object_mut() {
            m.retain(|k, v| {
                !(v == &json!(0) && (k == "numberAvailable" || k == "updatedNumberScheduled"))
            });
        }
        self.objects
            .edit(self.daemonsets, ns, name, |d| {
                if d.pointer("/metadata/uid") != Some(&json!(uid))
                    || d.get("status") == Some(&new_status)
                {
                    return false;
                }
                d["status"] = new_status;
                true
            })
            .await?;
        if let Some(e) = create_failed {
            return Err(e);
        }
        Ok(again)
    }
}

/// The nodes a surging rollout may create updated pods on.
#[derive(Default)]
struct Surge {
    /// Nodes whose old pod is unavailable: replaced without counting against maxSurge.
    allowed: Vec<String>,
    /// Nodes with an available old pod, in node order.
    candidates: Vec<String>,
    /// Nodes where an updated pod is not yet available next to the old one.
    in_flight: usize,
}

#[derive(Default)]
struct Counts {
    desired: usize,
    current: usize,
    misscheduled: usize,
    ready: usize,
    updated: usize,
}

/// A daemon pod for `node`, bound to it, labelled with the template's revision hash and generation.
fn daemon_pod(ds: &Value, hash: &str, template: &Value, pod_spec: &Value, node: &str) -> Value {
    let mut labels = template
        .pointer("/metadata/labels")
        .cloned()
        .filter(Value::is_object)
        .unwrap_or(json!({}));
    labels[REVISION_LABEL] = json!(hash);
    labels["pod-template-generation"] = json!(
        ds.pointer("/metadata/generation")
            .and_then(Value::as_i64)
            .unwrap_or(1)
            .to_string()
    );
    let mut spec = pod_spec.clone();
    spec["nodeName"] = json!(node);
    pod_from_template(ds, "DaemonSet", template, labels, spec)
}

fn rolling(ds: &Value) -> bool {
    ds.pointer("/spec/updateStrategy/type")
        .and_then(Value::as_str)
        .is_none_or(|t| t == "RollingUpdate")
}

/// `maxUnavailable` (a count or a percentage of the desired pods, rounded up); at least 1.
fn max_unavailable(ds: &Value, desired: usize) -> usize {
    let value = ds.pointer("/spec/updateStrategy/rollingUpdate/maxUnavailable");
    let n = match value {
        Some(Value::Number(n)) => n.as_u64().unwrap_or(1) as usize,
        Some(Value::String(s)) => s
            .strip_suffix('%')
            .and_then(|p| p.parse::<usize>().ok())
            .map_or(1, |p| (p * desired).div_ceil(100)),
        _ => 1,
    };
    n.max(1)
}

/// `maxSurge` (a count or a percentage of the desired pods, rounded up); 0 when unset.
fn max_surge(ds: &Value, desired: usize) -> usize {
    match ds.pointer("/spec/updateStrategy/rollingUpdate/maxSurge") {
        Some(Value::Number(n)) => n.as_u64().unwrap_or(0) as usize,
        Some(Value::String(s)) => s
            .strip_suffix('%')
            .and_then(|p| p.parse::<usize>().ok())
            .map_or(0, |p| (p * desired).div_ceil(100)),
        _ => 0,
    }
}

/// kube's `AddOrUpdateDaemonPodTolerations`.
fn add_daemon_tolerations(spec: &mut Value) {
    let mut tolerations = spec
        .get("tolerations")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut wanted = vec![
        ("node.kubernetes.io/not-ready", "NoExecute"),
        ("node.kubernetes.io/unreachable", "NoExecute"),
        ("node.kubernetes.io/disk-pressure", "NoSchedule"),
        ("node.kubernetes.io/memory-pressure", "NoSchedule"),
        ("node.kubernetes.io/pid-pressure", "NoSchedule"),
        ("node.kubernetes.io/unschedulable", "NoSchedule"),
    ];
    if spec.get("hostNetwork") == Some(&json!(true)) {
        wanted.push(("node.kubernetes.io/network-unavailable", "NoSchedule"));
    }
    for (key, effect) in wanted {
        let present = tolerations
            .iter()
            .any(|t| t["key"] == key && t["effect"] == effect && t["operator"] == "Exists");
        if !present {
            tolerations.push(json!({"key": key, "operator": "Exists", "effect": effect}));
        }
    }
    spec["tolerations"] = json!(tolerations);
}

/// kube's `NodeShouldRunDaemonPod`: (should run a pod there, may keep a pod already running there). The
/// checks are the scheduler's own (node affinity, taints and tolerations).
fn placement(pod_spec: &Value, node: &Value) -> (bool, bool) {
    let Some((pod, node)) = typed(pod_spec, node) else {
        return (false, false);
    };
    if !fits(&pod, &node) {
        return (false, false);
    }
    let taints = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_deref())
        .unwrap_or_default();
    let tolerations = pod
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.as_deref())
        .unwrap_or_default();
    let untolerated = |effect: &str| {
        taints
            .iter()
            .filter(|t| t.effect == effect)
            .any(|t| !tolerations.iter().any(|tol| tolerates(tol, t)))
    };
    let no_execute = untolerated("NoExecute");
    if untolerated("NoSchedule") || no_execute {
        return (false, !no_execute);
    }
    (true, true)
}

/// The template's pod spec and the node as typed objects (a spec without containers gets an empty list).
fn typed(pod_spec: &Value, node: &Value) -> Option<(Pod, Node)> {
    let mut spec = pod_spec.clone();
    spec.as_object_mut()?
        .entry("containers")
        .or_insert_with(|| json!([]));
    let pod = serde_json::from_value(json!({ "spec": spec })).ok()?;
    let node = serde_json::from_value(node.clone()).ok()?;
    Some((pod, node))
}

/// nodeSelector and required node affinity, as the scheduler checks them.
fn fits(pod: &Pod, node: &Node) -> bool {
    static NO_LABELS: BTreeMap<String, String> = BTreeMap::new();
    let labels = node.metadata.labels.as_ref().unwrap_or(&NO_LABELS);
    let name = node.metadata.name.as_deref().unwrap_or_default();
    node_affinity_matches(pod, name, labels)
}

#[cfg(test)]
fn fits_selector_and_affinity(pod_spec: &Value, node: &Value) -> bool {
    typed(pod_spec, node).is_some_and(|(pod, node)| fits(&pod, &node))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(labels: Value, taints: Value) -> Value {
        json!({"metadata": {"name": "n1", "labels": labels}, "spec": {"taints": taints}})
    }

    #[test]
    fn daemon_tolerations_cover_unschedulable_and_not_ready() {
        let mut spec = json!({"containers": []});
        add_daemon_tolerations(&mut spec);
        let cordoned = node(
            json!({}),
            json!([{"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"},
                   {"key": "node.kubernetes.io/not-ready", "effect": "NoExecute"}]),
        );
        assert_eq!(placement(&spec, &cordoned), (true, true));
        let tainted = node(
            json!({}),
            json!([{"key": "gpu", "value": "x", "effect": "NoSchedule"}]),
        );
        assert_eq!(placement(&spec, &tainted), (false, true));
        let evicting = node(json!({}), json!([{"key": "gpu", "effect": "NoExecute"}]));
        assert_eq!(placement(&spec, &evicting), (false, false));
        spec["tolerations"]
            .as_array_mut()
            .unwrap()
            .push(json!({"key": "gpu", "operator": "Equal", "value": "x"}));
        assert_eq!(placement(&spec, &tainted), (true, true));
    }

    #[test]
    fn selector_and_required_affinity_pick_nodes() {
        let n = node(json!({"zone": "a", "cores": "8"}), json!([]));
        assert!(fits_selector_and_affinity(
            &json!({"nodeSelector": {"zone": "a"}}),
            &n
        ));
        assert!(!fits_selector_and_affinity(
            &json!({"nodeSelector": {"zone": "b"}}),
            &n
        ));
        let affinity = |term: Value| {
            json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [term]}}}})
        };
        let by_name = affinity(json!({"matchFields": [
            {"key": "metadata.name", "operator": "In", "values": ["n1"]}]}));
        assert!(fits_selector_and_affinity(&by_name, &n));
        let other = affinity(json!({"matchFields": [
            {"key": "metadata.name", "operator": "In", "values": ["n2"]}]}));
        assert!(!fits_selector_and_affinity(&other, &n));
        let gt = affinity(json!({"matchExpressions": [
            {"key": "cores", "operator": "Gt", "values": ["4"]},
            {"key": "gpu", "operator": "DoesNotExist"}]}));
        assert!(fits_selector_and_affinity(&gt, &n));
    }

    #[test]
    fn max_unavailable_scales_percentages_up() {
        let ds = |v: Value| json!({"spec": {"updateStrategy": {"rollingUpdate": {"maxUnavailable": v}}}});
        assert_eq!(max_unavailable(&json!({}), 10), 1);
        assert_eq!(max_unavailable(&ds(json!(3)), 10), 3);
        assert_eq!(max_unavailable(&ds(json!("25%")), 10), 3);
        assert_eq!(max_unavailable(&ds(json!("0%")), 10), 1);
        let surge =
            |v: Value| json!({"spec": {"updateStrategy": {"rollingUpdate": {"maxSurge": v}}}});
        assert_eq!(max_surge(&json!({}), 10), 0);
        assert_eq!(max_surge(&surge(json!(2)), 10), 2);
        assert_eq!(max_surge(&surge(json!("25%")), 10), 3);
    }
}
