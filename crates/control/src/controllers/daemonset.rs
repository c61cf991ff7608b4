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
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Node, Pod, PodSpec, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::{Metadata, Resource};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::batch::{self, DAEMON_BURST_REPLICAS};
use super::deployment::template_hash;
use super::{
    Controller, Informers, Key, Requeue, controller_owner, key_of, pod_from_template, pod_is_ready,
};

use crate::error::ApiError;
use crate::events::{EventQueue, Recorder};
use crate::objects::Change;
use crate::objects::Objects;
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
        let Some((ds, raw)) = typed_and_json::<DaemonSet>(&self.caches, self.daemonsets, ns, name)
        else {
            return Ok(None);
        };
        if ds.metadata.deletion_timestamp.is_some() {
            return Ok(None);
        }
        let uid = ds.metadata.uid.clone().unwrap_or_default();
        // The pods are built from, and their revision hashed over, the template as stored (JSON), so a
        // field the typed form does not know survives and the hash matches the one the pods carry.
        let template = raw
            .get("spec")
            .and_then(|s| s.get("template"))
            .cloned()
            .unwrap_or(Value::Null);
        let hash = template_hash(&template);
        let mut pod_spec = template.get("spec").cloned().unwrap_or(json!({}));
        // The spec placement checks: the template's, typed, with kube's daemon tolerations.
        let mut typed_spec = ds.spec.template.spec.clone().unwrap_or_default();
        let added = missing_daemon_tolerations(&typed_spec);
        add_tolerations(&mut pod_spec, &added);
        typed_spec
            .tolerations
            .get_or_insert_with(Vec::new)
            .extend(added);
        let daemon = Pod {
            spec: Some(typed_spec),
            ..Pod::default()
        };
        let nodes = self.caches.store::<Node>().state();
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
        let desired = nodes.iter().filter(|n| placement(&daemon, n).0).count();
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
            let Some(node_name) = node.metadata.name.as_deref() else {
                continue;
            };
            let (should_run, should_continue) = placement(&daemon, node);
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
                    let updated = is_updated(&pod);
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
            .map(|node| daemon_pod(&ds, &raw, &hash, &template, &pod_spec, node))
            .collect();
        let (_, create_failed) =
            batch::create_pods(&self.objects, self.pods, &self.events, &raw, pods).await;
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
            &raw,
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
            &raw,
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
            "observedGeneration": ds.metadata.generation.unwrap_or(1),
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

/// The object `name` of `res` read typed as `K` and as the JSON it was decoded from, one revision of it
/// for both (read again if it changed between the two reads).
pub(super) fn typed_and_json<K>(
    caches: &Informers,
    res: &ResourceInfo,
    ns: &str,
    name: &str,
) -> Option<(Arc<K>, Arc<Value>)>
where
    K: Resource + Metadata<Ty = ObjectMeta> + DeserializeOwned + Send + Sync + 'static,
{
    loop {
        let typed = caches.store::<K>().get(ns, name)?;
        let json = caches.get(res, ns, name)?;
        let version = json
            .get("metadata")
            .and_then(|m| m.get("resourceVersion"))
            .and_then(Value::as_str);
        if version == typed.metadata().resource_version.as_deref() {
            return Some((typed, json));
        }
    }
}

/// A daemon pod for `node`, bound to it, labelled with the template's revision hash and generation.
fn daemon_pod(
    ds: &DaemonSet,
    raw: &Value,
    hash: &str,
    template: &Value,
    pod_spec: &Value,
    node: &str,
) -> Value {
    let mut labels = template
        .get("metadata")
        .and_then(|m| m.get("labels"))
        .cloned()
        .filter(Value::is_object)
        .unwrap_or(json!({}));
    labels[REVISION_LABEL] = json!(hash);
    labels["pod-template-generation"] = json!(ds.metadata.generation.unwrap_or(1).to_string());
    let mut spec = pod_spec.clone();
    spec["nodeName"] = json!(node);
    pod_from_template(raw, "DaemonSet", template, labels, spec)
}

fn rolling(ds: &DaemonSet) -> bool {
    ds.spec
        .update_strategy
        .as_ref()
        .and_then(|s| s.type_.as_deref())
        .is_none_or(|t| t == "RollingUpdate")
}

/// A rolling update's `maxUnavailable` or `maxSurge` (a count, or a percentage of `desired` rounded up);
/// `None` when unset or not understood.
fn scaled(value: Option<&IntOrString>, desired: usize) -> Option<usize> {
    match value? {
        IntOrString::Int(n) => usize::try_from(*n).ok(),
        IntOrString::String(s) => s
            .strip_suffix('%')
            .and_then(|p| p.parse::<usize>().ok())
            .map(|p| (p * desired).div_ceil(100)),
    }
}

/// `maxUnavailable` (a count or a percentage of the desired pods, rounded up); at least 1.
fn max_unavailable(ds: &DaemonSet, desired: usize) -> usize {
    let rolling = ds
        .spec
        .update_strategy
        .as_ref()
        .and_then(|s| s.rolling_update.as_ref());
    scaled(rolling.and_then(|r| r.max_unavailable.as_ref()), desired)
        .unwrap_or(1)
        .max(1)
}

/// `maxSurge` (a count or a percentage of the desired pods, rounded up); 0 when unset.
fn max_surge(ds: &DaemonSet, desired: usize) -> usize {
    let rolling = ds
        .spec
        .update_strategy
        .as_ref()
        .and_then(|s| s.rolling_update.as_ref());
    scaled(rolling.and_then(|r| r.max_surge.as_ref()), desired).unwrap_or(0)
}

/// The tolerations of kube's `AddOrUpdateDaemonPodTolerations` that `spec` does not have yet.
fn missing_daemon_tolerations(spec: &PodSpec) -> Vec<Toleration> {
    let mut wanted = vec![
        ("node.kubernetes.io/not-ready", "NoExecute"),
        ("node.kubernetes.io/unreachable", "NoExecute"),
        ("node.kubernetes.io/disk-pressure", "NoSchedule"),
        ("node.kubernetes.io/memory-pressure", "NoSchedule"),
        ("node.kubernetes.io/pid-pressure", "NoSchedule"),
        ("node.kubernetes.io/unschedulable", "NoSchedule"),
    ];
    if spec.host_network == Some(true) {
        wanted.push(("node.kubernetes.io/network-unavailable", "NoSchedule"));
    }
    let have = spec.tolerations.as_deref().unwrap_or_default();
    wanted
        .into_iter()
        .filter(|(key, effect)| {
            !have.iter().any(|t| {
                t.key.as_deref() == Some(*key)
                    && t.effect.as_deref() == Some(*effect)
                    && t.operator.as_deref() == Some("Exists")
            })
        })
        .map(|(key, effect)| Toleration {
            key: Some(key.to_string()),
            operator: Some("Exists".to_string()),
            effect: Some(effect.to_string()),
            ..Toleration::default()
        })
        .collect()
}

/// Appends `added` to the tolerations of the pod spec `spec` (JSON, as the pods are built).
fn add_tolerations(spec: &mut Value, added: &[Toleration]) {
    let mut tolerations = spec
        .get("tolerations")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    tolerations.extend(added.iter().map(|t| json!(t)));
    spec["tolerations"] = json!(tolerations);
}

/// kube's `NodeShouldRunDaemonPod`: (should run a pod there, may keep a pod already running there). The
/// checks are the scheduler's own (node affinity, taints and tolerations) on the daemon pod `pod`.
fn placement(pod: &Pod, node: &Node) -> (bool, bool) {
    if !fits(pod, node) {
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

/// nodeSelector and required node affinity, as the scheduler checks them.
fn fits(pod: &Pod, node: &Node) -> bool {
    static NO_LABELS: BTreeMap<String, String> = BTreeMap::new();
    let labels = node.metadata.labels.as_ref().unwrap_or(&NO_LABELS);
    let name = node.metadata.name.as_deref().unwrap_or_default();
    node_affinity_matches(pod, name, labels)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(labels: Value, taints: Value) -> Node {
        serde_json::from_value(
            json!({"metadata": {"name": "n1", "labels": labels}, "spec": {"taints": taints}}),
        )
        .unwrap()
    }

    /// A daemon pod of a template with pod spec `spec` (JSON), with kube's daemon tolerations added.
    fn daemon(spec: Value) -> Pod {
        let mut spec: PodSpec = serde_json::from_value(spec).unwrap();
        let added = missing_daemon_tolerations(&spec);
        spec.tolerations.get_or_insert_with(Vec::new).extend(added);
        Pod {
            spec: Some(spec),
            ..Pod::default()
        }
    }

    fn fits_selector_and_affinity(spec: Value, node: &Node) -> bool {
        fits(&daemon(spec), node)
    }

    fn ds(strategy: Value) -> DaemonSet {
        serde_json::from_value(json!({"spec": {"updateStrategy": strategy}})).unwrap()
    }

    #[test]
    fn daemon_tolerations_cover_unschedulable_and_not_ready() {
        let cordoned = node(
            json!({}),
            json!([{"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"},
                   {"key": "node.kubernetes.io/not-ready", "effect": "NoExecute"}]),
        );
        assert_eq!(
            placement(&daemon(json!({"containers": []})), &cordoned),
            (true, true)
        );
        let tainted = node(
            json!({}),
            json!([{"key": "gpu", "value": "x", "effect": "NoSchedule"}]),
        );
        assert_eq!(
            placement(&daemon(json!({"containers": []})), &tainted),
            (false, true)
        );
        let evicting = node(json!({}), json!([{"key": "gpu", "effect": "NoExecute"}]));
        assert_eq!(
            placement(&daemon(json!({"containers": []})), &evicting),
            (false, false)
        );
        let tolerating = json!({"containers": [], "tolerations": [
            {"key": "gpu", "operator": "Equal", "value": "x"}]});
        assert_eq!(placement(&daemon(tolerating), &tainted), (true, true));
    }

    #[test]
    fn daemon_tolerations_are_added_once_to_the_pods_spec() {
        let mut spec = json!({"containers": [], "hostNetwork": true, "tolerations": [
            {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute"}]});
        let added = missing_daemon_tolerations(&serde_json::from_value(spec.clone()).unwrap());
        assert_eq!(added.len(), 6, "all but not-ready, network-unavailable too");
        add_tolerations(&mut spec, &added);
        let tolerations = spec["tolerations"].as_array().unwrap();
        assert_eq!(tolerations.len(), 7);
        assert_eq!(
            tolerations[1],
            json!({"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"})
        );
        let again = missing_daemon_tolerations(&serde_json::from_value(spec).unwrap());
        assert!(again.is_empty());
    }

    #[test]
    fn selector_and_required_affinity_pick_nodes() {
        let n = node(json!({"zone": "a", "cores": "8"}), json!([]));
        assert!(fits_selector_and_affinity(
            json!({"containers": [], "nodeSelector": {"zone": "a"}}),
            &n
        ));
        assert!(!fits_selector_and_affinity(
            json!({"containers": [], "nodeSelector": {"zone": "b"}}),
            &n
        ));
        let affinity = |term: Value| {
            json!({"containers": [], "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [term]}}}})
        };
        let by_name = affinity(json!({"matchFields": [
            {"key": "metadata.name", "operator": "In", "values": ["n1"]}]}));
        assert!(fits_selector_and_affinity(by_name, &n));
        let other = affinity(json!({"matchFields": [
            {"key": "metadata.name", "operator": "In", "values": ["n2"]}]}));
        assert!(!fits_selector_and_affinity(other, &n));
        let gt = affinity(json!({"matchExpressions": [
            {"key": "cores", "operator": "Gt", "values": ["4"]},
            {"key": "gpu", "operator": "DoesNotExist"}]}));
        assert!(fits_selector_and_affinity(gt, &n));
    }

    #[test]
    fn max_unavailable_scales_percentages_up() {
        let unavailable = |v: Value| ds(json!({"rollingUpdate": {"maxUnavailable": v}}));
        assert_eq!(max_unavailable(&ds(json!({})), 10), 1);
        assert_eq!(max_unavailable(&unavailable(json!(3)), 10), 3);
        assert_eq!(max_unavailable(&unavailable(json!("25%")), 10), 3);
        assert_eq!(max_unavailable(&unavailable(json!("0%")), 10), 1);
        let surge = |v: Value| ds(json!({"rollingUpdate": {"maxSurge": v}}));
        assert_eq!(max_surge(&ds(json!({})), 10), 0);
        assert_eq!(max_surge(&surge(json!(2)), 10), 2);
        assert_eq!(max_surge(&surge(json!("25%")), 10), 3);
        assert!(rolling(&ds(json!({}))));
        assert!(!rolling(&ds(json!({"type": "OnDelete"}))));
    }
}
