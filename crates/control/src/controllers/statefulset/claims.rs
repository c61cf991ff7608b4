//! The claims of a StatefulSet's pods: one PersistentVolumeClaim per volume claim template and ordinal,
//! named `<template>-<set>-<ordinal>`, made before the pod and referenced by its volume of the template's
//! name, so a pod made again at that ordinal mounts the same claim. Who owns a claim follows the set's
//! `persistentVolumeClaimRetentionPolicy` (kube's `updateClaimOwnerRefForSetAndPod`): `whenDeleted: Delete`
//! makes the set its controller (the garbage collector deletes it with the set), `whenScaled: Delete`
//! makes a condemned pod its controller (it goes with the pod scaled away); `Retain` keeps it.

use serde_json::{Value, json};

/// The claim of template `template` for the pod at `ordinal` of set `set`.
pub fn claim_name(template: &str, set: &str, ordinal: i32) -> String {
    format!("{template}-{set}-{ordinal}")
}

/// The claims of the pod at `ordinal`, made from the set's (JSON) claim templates: the template's
/// metadata and spec, with the set's `matchLabels` added to its labels (kube's
/// `getPersistentVolumeClaims`).
pub fn new_claims(set: &Value, ordinal: i32) -> Vec<Value> {
    let set_name = set
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let match_labels = set
        .pointer("/spec/selector/matchLabels")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    templates(set)
        .iter()
        .filter_map(|t| {
            let name = t.pointer("/metadata/name")?.as_str()?;
            let mut labels = t
                .pointer("/metadata/labels")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            labels.extend(match_labels.clone());
            let mut metadata = json!({
                "name": claim_name(name, set_name, ordinal),
                "namespace": set.pointer("/metadata/namespace").cloned().unwrap_or(Value::Null),
                "labels": labels,
            });
            if let Some(a) = t.pointer("/metadata/annotations").filter(|a| a.is_object()) {
                metadata["annotations"] = a.clone();
            }
            Some(json!({
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "metadata": metadata,
                "spec": t.get("spec").cloned().unwrap_or(json!({})),
            }))
        })
        .collect()
}

/// The set's claim templates (JSON).
pub fn templates(set: &Value) -> &[Value] {
    set.pointer("/spec/volumeClaimTemplates")
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// A pod's volumes with one `persistentVolumeClaim` volume per claim template in place of any volume of
/// the template's name (kube's `updateStorage`).
pub fn with_claim_volumes(set: &Value, ordinal: i32, volumes: Option<&Value>) -> Value {
    let set_name = set
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let names: Vec<&str> = templates(set)
        .iter()
        .filter_map(|t| t.pointer("/metadata/name").and_then(Value::as_str))
        .collect();
    let mut out: Vec<Value> = names
        .iter()
        .map(|n| {
            json!({"name": n, "persistentVolumeClaim": {"claimName": claim_name(n, set_name, ordinal)}})
        })
        .collect();
    out.extend(
        volumes
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|v| !names.contains(&v["name"].as_str().unwrap_or_default()))
            .cloned(),
    );
    Value::Array(out)
}

/// Which of the set and the pod the retention policy makes a claim's controller: `(set, pod)`.
pub fn owners(when_deleted: &str, when_scaled: &str, condemned: bool) -> (bool, bool) {
    let deleted = when_deleted == "Delete";
    let scaled = when_scaled == "Delete";
    match (deleted, scaled) {
        (false, false) => (false, false),
        (true, false) => (true, false),
        (false, true) => (false, condemned),
        (true, true) => (!condemned, condemned),
    }
}

/// A claim's ownerReferences with the references to the set and the pod (`set_ref`, `pod_ref`: the
/// controlling references to write, `None` where the policy wants none) put right; `None` when nothing
/// changes. A claim another controller owns keeps no reference to either (kube's `hasUnexpectedController`).
pub fn fixed_owner_refs(
    claim: &Value,
    set_uid: &str,
    pod_uid: Option<&str>,
    set_ref: Option<Value>,
    pod_ref: Option<Value>,
) -> Option<Value> {
    let refs: Vec<Value> = claim
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let ours = |r: &Value| r["uid"] == set_uid || pod_uid.is_some_and(|p| r["uid"] == p);
    let foreign_controller = refs.iter().any(|r| r["controller"] == true && !ours(r));
    let (present, mut kept): (Vec<Value>, Vec<Value>) = refs.iter().cloned().partition(|r| ours(r));
    let wanted: Vec<Value> = if foreign_controller {
        Vec::new()
    } else {
        set_ref.into_iter().chain(pod_ref).collect()
    };
    if present.len() == wanted.len() && wanted.iter().all(|w| present.contains(w)) {
        return None;
    }
    kept.extend(wanted);
    Some(Value::Array(kept))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set() -> Value {
        json!({"metadata": {"name": "web", "namespace": "ns"},
            "spec": {"selector": {"matchLabels": {"app": "web"}},
                "volumeClaimTemplates": [{"metadata": {"name": "www", "labels": {"tier": "data"}},
                    "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}]}})
    }

    #[test]
    fn each_ordinal_has_its_own_claim_per_template() {
        let claims = new_claims(&set(), 2);
        assert_eq!(claims.len(), 1);
        assert_eq!(claims[0]["metadata"]["name"], "www-web-2");
        assert_eq!(
            claims[0]["metadata"]["labels"],
            json!({"app": "web", "tier": "data"})
        );
        assert_eq!(claims[0]["spec"]["resources"]["requests"]["storage"], "1Gi");
        let volumes = with_claim_volumes(
            &set(),
            2,
            Some(&json!([{"name": "www", "emptyDir": {}}, {"name": "tmp", "emptyDir": {}}])),
        );
        assert_eq!(
            volumes,
            json!([{"name": "www", "persistentVolumeClaim": {"claimName": "www-web-2"}},
                {"name": "tmp", "emptyDir": {}}])
        );
    }

    #[test]
    fn the_retention_policy_picks_the_claims_controller() {
        assert_eq!(owners("Retain", "Retain", true), (false, false));
        assert_eq!(owners("Delete", "Retain", true), (true, false));
        assert_eq!(owners("Retain", "Delete", false), (false, false));
        assert_eq!(owners("Retain", "Delete", true), (false, true));
        assert_eq!(owners("Delete", "Delete", false), (true, false));
        assert_eq!(owners("Delete", "Delete", true), (false, true));
    }

    #[test]
    fn owner_references_are_replaced_unless_another_controller_owns_the_claim() {
        let set_ref = json!({"uid": "s", "controller": true, "kind": "StatefulSet"});
        let pod_ref = json!({"uid": "p", "controller": true, "kind": "Pod"});
        let claim = json!({"metadata": {"ownerReferences": [set_ref, {"uid": "x"}]}});
        assert_eq!(
            fixed_owner_refs(&claim, "s", Some("p"), None, Some(pod_ref.clone())),
            Some(json!([{"uid": "x"}, pod_ref]))
        );
        assert_eq!(
            fixed_owner_refs(&claim, "s", Some("p"), Some(set_ref.clone()), None),
            None
        );
        let foreign = json!({"metadata": {"ownerReferences": [{"uid": "o", "controller": true}]}});
        assert_eq!(
            fixed_owner_refs(&foreign, "s", None, Some(set_ref), None),
            None
        );
    }
}
