//! Persistent volumes as kube decides about them, as pure functions shared by the PV controller and the
//! scheduler: the annotations and finalizers of kube's storage machinery, a claim's request and a volume's
//! capacity, the default StorageClass (kube's `GetDefaultClass`), a bound volume's node affinity, and the
//! volume that best matches a claim (kube's `FindMatchingVolume`: the smallest fitting one).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::quantity;
use crate::selector::{label_selector_matches, node_selector_term_matches};

/// herd's built-in provisioner: a directory under the selected node's data dir.
pub const LOCAL_PROVISIONER: &str = "herd.dev/local";
/// The StorageClass the DefaultStorageClass admission gives claims without one.
pub const DEFAULT_CLASS_ANNOTATION: &str = "storageclass.kubernetes.io/is-default-class";
/// The node the scheduler picked for a WaitForFirstConsumer claim (kube's VolumeBinding plugin).
pub const SELECTED_NODE_ANNOTATION: &str = "volume.kubernetes.io/selected-node";
/// The provisioner the PV controller asks to provision a claim.
pub const STORAGE_PROVISIONER_ANNOTATION: &str = "volume.kubernetes.io/storage-provisioner";
pub const BETA_STORAGE_PROVISIONER_ANNOTATION: &str =
    "volume.beta.kubernetes.io/storage-provisioner";
/// Who provisioned a volume.
pub const PROVISIONED_BY_ANNOTATION: &str = "pv.kubernetes.io/provisioned-by";
/// A claim whose binding the controller completed.
pub const BIND_COMPLETED_ANNOTATION: &str = "pv.kubernetes.io/bind-completed";
/// A binding the controller made (rather than a user's pre-binding).
pub const BOUND_BY_CONTROLLER_ANNOTATION: &str = "pv.kubernetes.io/bound-by-controller";
/// Keeps a claim a pod uses from vanishing under it (kube's StorageObjectInUseProtection).
pub const PVC_PROTECTION_FINALIZER: &str = "kubernetes.io/pvc-protection";
/// Keeps a bound volume from vanishing under its claim.
pub const PV_PROTECTION_FINALIZER: &str = "kubernetes.io/pv-protection";
/// Keeps a volume of [`LOCAL_PROVISIONER`] until its node removed the directory.
pub const LOCAL_CLEANUP_FINALIZER: &str = "volumes.herd.dev/local-cleanup";
/// The node a [`LOCAL_PROVISIONER`] volume lives on (the node watches its volumes by it).
pub const LOCAL_NODE_LABEL: &str = "volumes.herd.dev/node";
/// On a Node: the directory under which it keeps [`LOCAL_PROVISIONER`] volumes.
pub const LOCAL_ROOT_ANNOTATION: &str = "volumes.herd.dev/local-root";
pub const HOSTNAME_LABEL: &str = "kubernetes.io/hostname";

/// The StorageClass a cluster starts with.
pub const DEFAULT_CLASS_NAME: &str = "standard";

/// The default StorageClass the control plane creates at its first start (as kind's and k3s's
/// `standard`/`local-path`): [`LOCAL_PROVISIONER`], bound when a pod first uses the claim, deleted with it.
pub fn default_storage_class() -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {"name": DEFAULT_CLASS_NAME, "annotations": {DEFAULT_CLASS_ANNOTATION: "true"}},
        "provisioner": LOCAL_PROVISIONER,
        "reclaimPolicy": "Delete",
        "volumeBindingMode": "WaitForFirstConsumer",
    })
}

/// The `storage` entry of a resource map, in bytes.
pub fn storage_bytes(map: Option<&BTreeMap<String, Quantity>>) -> Option<i64> {
    quantity::value(&map?.get("storage")?.0)
}

/// What a claim asks for, in bytes.
pub fn claim_request(claim: &PersistentVolumeClaim) -> Option<i64> {
    storage_bytes(claim.spec.as_ref()?.resources.as_ref()?.requests.as_ref())
}

/// What a volume holds, in bytes.
pub fn volume_capacity(pv: &PersistentVolume) -> Option<i64> {
    storage_bytes(pv.spec.as_ref()?.capacity.as_ref())
}

/// A claim's class (`""`: none, which binds only volumes without a class).
pub fn claim_class(claim: &PersistentVolumeClaim) -> &str {
    claim
        .spec
        .as_ref()
        .and_then(|s| s.storage_class_name.as_deref())
        .unwrap_or_default()
}

pub fn volume_class(pv: &PersistentVolume) -> &str {
    pv.spec
        .as_ref()
        .and_then(|s| s.storage_class_name.as_deref())
        .unwrap_or_default()
}

/// Whether a class delays binding until a pod uses the claim.
pub fn waits_for_first_consumer(class: Option<&StorageClass>) -> bool {
    class.and_then(|c| c.volume_binding_mode.as_deref()) == Some("WaitForFirstConsumer")
}

/// kube's `GetDefaultClass`: of the classes annotated default, the newest (then the first by name).
pub fn default_class<'a>(
    classes: impl IntoIterator<Item = &'a StorageClass>,
) -> Option<&'a StorageClass> {
    classes
        .into_iter()
        .filter(|c| {
            c.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(DEFAULT_CLASS_ANNOTATION))
                .is_some_and(|v| v == "true")
        })
        .max_by(|a, b| {
            let created = |c: &StorageClass| c.metadata.creation_timestamp.clone().map(|t| t.0);
            created(a)
                .cmp(&created(b))
                .then_with(|| b.metadata.name.cmp(&a.metadata.name))
        })
}

/// Whether the volume's required node affinity admits the node (none: every node).
pub fn volume_fits_node(
    pv: &PersistentVolume,
    name: &str,
    labels: &BTreeMap<String, String>,
) -> bool {
    pv.spec
        .as_ref()
        .and_then(|s| s.node_affinity.as_ref())
        .and_then(|a| a.required.as_ref())
        .is_none_or(|r| {
            r.node_selector_terms
                .iter()
                .any(|t| node_selector_term_matches(t, name, labels))
        })
}

/// Whether the volume's claimRef names the claim (namespace and name, and uid when both have one).
pub fn is_bound_to(pv: &PersistentVolume, claim: &PersistentVolumeClaim) -> bool {
    let Some(r) = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref()) else {
        return false;
    };
    r.name.as_deref() == claim.metadata.name.as_deref()
        && r.namespace.as_deref() == claim.metadata.namespace.as_deref()
        && (r.uid.as_deref().is_none_or(str::is_empty)
            || claim.metadata.uid.as_deref().is_none_or(str::is_empty)
            || r.uid == claim.metadata.uid)
}

fn volume_mode(mode: Option<&String>) -> &str {
    mode.map_or("Filesystem", String::as_str)
}

/// kube's `FindMatchingVolume`: the volume pre-bound to the claim, else the smallest available one of the
/// claim's class whose capacity, access modes, volume mode and labels (the claim's selector) fit. With
/// `node` (the claim's selected node), only volumes whose node affinity admits it; without it, a claim
/// whose binding waits for its first consumer (`delay`) matches only a pre-bound volume.
pub fn find_matching_volume<'a>(
    claim: &PersistentVolumeClaim,
    volumes: impl IntoIterator<Item = &'a PersistentVolume>,
    node: Option<(&str, &BTreeMap<String, String>)>,
    delay: bool,
) -> Option<&'a PersistentVolume> {
    let spec = claim.spec.as_ref()?;
    let requested = claim_request(claim).unwrap_or(0);
    let wanted = spec.access_modes.as_deref().unwrap_or_default();
    let mut best: Option<(&PersistentVolume, i64)> = None;
    for pv in volumes {
        let Some(pv_spec) = pv.spec.as_ref() else {
            continue;
        };
        let capacity = volume_capacity(pv).unwrap_or(0);
        if capacity < requested
            || volume_mode(pv_spec.volume_mode.as_ref()) != volume_mode(spec.volume_mode.as_ref())
        {
            continue;
        }
        if let Some((name, labels)) = node
            && !volume_fits_node(pv, name, labels)
        {
            continue;
        }
        if is_bound_to(pv, claim) {
            return Some(pv);
        }
        if (node.is_none() && delay)
            || pv_spec.claim_ref.is_some()
            || pv.metadata.deletion_timestamp.is_some()
            || volume_class(pv) != claim_class(claim)
        {
            continue;
        }
        let labels = pv.metadata.labels.clone().unwrap_or_default();
        if spec
            .selector
            .as_ref()
            .is_some_and(|s| !label_selector_matches(s, &labels))
        {
            continue;
        }
        let offered = pv_spec.access_modes.as_deref().unwrap_or_default();
        if !wanted.iter().all(|m| offered.contains(m)) {
            continue;
        }
        if best.is_none_or(|(_, size)| capacity < size) {
            best = Some((pv, capacity));
        }
    }
    best.map(|(pv, _)| pv)
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn claim(spec: Value) -> PersistentVolumeClaim {
        serde_json::from_value(
            json!({"metadata": {"name": "data", "namespace": "default", "uid": "c1"},
            "spec": spec}),
        )
        .unwrap()
    }

    fn volume(name: &str, size: &str, extra: Value) -> PersistentVolume {
        let mut spec = json!({"capacity": {"storage": size}, "accessModes": ["ReadWriteOnce"],
            "hostPath": {"path": "/tmp/x"}});
        if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                s.insert(k.clone(), v.clone());
            }
        }
        serde_json::from_value(json!({"metadata": {"name": name, "labels": {"tier": name}},
            "spec": spec}))
        .unwrap()
    }

    fn rwo(size: &str) -> Value {
        json!({"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}})
    }

    fn names(found: Option<&PersistentVolume>) -> Option<&str> {
        found.and_then(|p| p.metadata.name.as_deref())
    }

    #[test]
    fn the_smallest_fitting_volume_wins() {
        let vols = [
            volume("big", "10Gi", json!({})),
            volume("small", "1Gi", json!({})),
            volume("tiny", "500Mi", json!({})),
        ];
        assert_eq!(
            names(find_matching_volume(&claim(rwo("1Gi")), &vols, None, false)),
            Some("small")
        );
        assert_eq!(
            names(find_matching_volume(
                &claim(rwo("20Gi")),
                &vols,
                None,
                false
            )),
            None
        );
    }

    #[test]
    fn class_modes_selector_and_claims_rule_volumes_out() {
        let vols = [
            volume("classed", "1Gi", json!({"storageClassName": "fast"})),
            volume("rwx-only", "1Gi", json!({"accessModes": ["ReadWriteMany"]})),
            volume(
                "taken",
                "1Gi",
                json!({"claimRef": {"namespace": "x", "name": "y"}}),
            ),
            volume("block", "1Gi", json!({"volumeMode": "Block"})),
        ];
        assert_eq!(
            names(find_matching_volume(&claim(rwo("1Gi")), &vols, None, false)),
            None
        );
        let mut fast = rwo("1Gi");
        fast["storageClassName"] = json!("fast");
        assert_eq!(
            names(find_matching_volume(
                &claim(fast.clone()),
                &vols,
                None,
                false
            )),
            Some("classed")
        );
        fast["selector"] = json!({"matchLabels": {"tier": "other"}});
        assert_eq!(
            names(find_matching_volume(&claim(fast), &vols, None, false)),
            None
        );
    }

    #[test]
    fn a_pre_bound_volume_and_node_affinity() {
        let affinity = json!({"nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
            {"key": "kubernetes.io/hostname", "operator": "In", "values": ["n1"]}]}]}}});
        let vols = [
            volume("on-n1", "1Gi", affinity),
            volume(
                "mine",
                "5Gi",
                json!({"claimRef": {"namespace": "default", "name": "data", "uid": "c1"}}),
            ),
        ];
        // A pre-bound volume is the claim's whatever its size, even while binding waits for a consumer.
        assert_eq!(
            names(find_matching_volume(&claim(rwo("1Gi")), &vols, None, true)),
            Some("mine")
        );
        let n2 = BTreeMap::from([(HOSTNAME_LABEL.to_string(), "n2".to_string())]);
        let n1 = BTreeMap::from([(HOSTNAME_LABEL.to_string(), "n1".to_string())]);
        assert!(!volume_fits_node(&vols[0], "n2", &n2));
        assert!(volume_fits_node(&vols[0], "n1", &n1));
        assert!(volume_fits_node(&vols[1], "n2", &n2));
        let free = [vols[0].clone()];
        assert_eq!(
            names(find_matching_volume(&claim(rwo("1Gi")), &free, None, true)),
            None,
            "no node chosen yet"
        );
        assert_eq!(
            names(find_matching_volume(
                &claim(rwo("1Gi")),
                &free,
                Some(("n2", &n2)),
                true
            )),
            None
        );
        assert_eq!(
            names(find_matching_volume(
                &claim(rwo("1Gi")),
                &free,
                Some(("n1", &n1)),
                true
            )),
            Some("on-n1")
        );
    }

    #[test]
    fn the_newest_default_class_is_the_default() {
        let class = |name: &str, default: &str, created: &str| -> StorageClass {
            serde_json::from_value(
                json!({"metadata": {"name": name, "creationTimestamp": created,
                "annotations": {DEFAULT_CLASS_ANNOTATION: default}}, "provisioner": "p"}),
            )
            .unwrap()
        };
        let classes = [
            class("old", "true", "2026-01-01T00:00:00Z"),
            class("new", "true", "2026-02-01T00:00:00Z"),
            class("newest-but-not-default", "false", "2026-03-01T00:00:00Z"),
        ];
        assert_eq!(
            default_class(&classes).and_then(|c| c.metadata.name.as_deref()),
            Some("new")
        );
        assert!(default_class(&classes[2..]).is_none());
    }
}
