//! `printPersistentVolume`, `printPersistentVolumeClaim` and `printStorageClass`: their columns and cells.

use jiff::Timestamp;
use serde_json::{Value, json};

use super::cells::{items, s, since};
use super::columns::{AGE, Column, NAME, col, wide};

const VOLUME_MODE_PV: &str = "volumeMode defines if a volume is intended to be used with a formatted filesystem or to remain in raw block state. Value of Filesystem is implied when not included in spec.";

pub(super) const PERSISTENT_VOLUME_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Capacity",
        "string",
        "capacity is the description of the persistent volume's resources and capacity. More info: https://kubernetes.io/docs/concepts/storage/persistent-volumes#capacity",
    ),
    col(
        "Access Modes",
        "string",
        "accessModes contains all ways the volume can be mounted. More info: https://kubernetes.io/docs/concepts/storage/persistent-volumes#access-modes",
    ),
    col(
        "Reclaim Policy",
        "string",
        "persistentVolumeReclaimPolicy defines what happens to a persistent volume when released from its claim. Valid options are Retain (default for manually created PersistentVolumes), Delete (default for dynamically provisioned PersistentVolumes), and Recycle (deprecated). Recycle must be supported by the volume plugin underlying this PersistentVolume. More info: https://kubernetes.io/docs/concepts/storage/persistent-volumes#reclaiming",
    ),
    col(
        "Status",
        "string",
        "phase indicates if a volume is available, bound to a claim, or released by a claim. More info: https://kubernetes.io/docs/concepts/storage/persistent-volumes#phase",
    ),
    col(
        "Claim",
        "string",
        "claimRef is part of a bi-directional binding between PersistentVolume and PersistentVolumeClaim. Expected to be non-nil when bound. claim.VolumeName is the authoritative bind between PV and PVC. More info: https://kubernetes.io/docs/concepts/storage/persistent-volumes#binding",
    ),
    col("StorageClass", "string", "StorageClass of the pv"),
    col(
        "VolumeAttributesClass",
        "string",
        "VolumeAttributesClass of the pv",
    ),
    col(
        "Reason",
        "string",
        "reason is a brief CamelCase string that describes any failure and is meant for machine parsing and tidy display in the CLI.",
    ),
    AGE,
    wide("VolumeMode", "string", VOLUME_MODE_PV),
];

pub(super) const PERSISTENT_VOLUME_CLAIM_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Status",
        "string",
        "phase represents the current phase of PersistentVolumeClaim.",
    ),
    col(
        "Volume",
        "string",
        "volumeName is the binding reference to the PersistentVolume backing this claim.",
    ),
    col(
        "Capacity",
        "string",
        "capacity represents the actual resources of the underlying volume.",
    ),
    col(
        "Access Modes",
        "string",
        "accessModes contains the actual access modes the volume backing the PVC has. More info: https://kubernetes.io/docs/concepts/storage/persistent-volumes#access-modes-1",
    ),
    col("StorageClass", "string", "StorageClass of the pvc"),
    col(
        "VolumeAttributesClass",
        "string",
        "VolumeAttributesClass of the pvc",
    ),
    AGE,
    wide(
        "VolumeMode",
        "string",
        "volumeMode defines what type of volume is required by the claim. Value of Filesystem is implied when not included in claim spec.",
    ),
];

pub(super) const STORAGE_CLASS_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Provisioner",
        "string",
        "provisioner indicates the type of the provisioner.",
    ),
    col(
        "ReclaimPolicy",
        "string",
        "reclaimPolicy controls the reclaimPolicy for dynamically provisioned PersistentVolumes of this storage class. Defaults to Delete.",
    ),
    col(
        "VolumeBindingMode",
        "string",
        "volumeBindingMode indicates how PersistentVolumeClaims should be provisioned and bound.  When unset, VolumeBindingImmediate is used. This field is only honored by servers that enable the VolumeScheduling feature.",
    ),
    col(
        "AllowVolumeExpansion",
        "string",
        "allowVolumeExpansion shows whether the storage class allow volume expand.",
    ),
    AGE,
];

/// kube's `GetAccessModesAsString`: `RWO,ROX,RWX,RWOP`, in that order, each once.
fn access_modes(modes: &[Value]) -> String {
    [
        ("ReadWriteOnce", "RWO"),
        ("ReadOnlyMany", "ROX"),
        ("ReadWriteMany", "RWX"),
        ("ReadWriteOncePod", "RWOP"),
    ]
    .iter()
    .filter(|(mode, _)| modes.iter().any(|m| m == mode))
    .map(|(_, short)| *short)
    .collect::<Vec<_>>()
    .join(",")
}

/// A phase, or `Terminating` for an object being deleted.
fn phase(o: &Value) -> &str {
    if o.pointer("/metadata/deletionTimestamp").is_some() {
        "Terminating"
    } else {
        s(o, "/status/phase")
    }
}

fn or_unset(v: &str) -> &str {
    if v.is_empty() { "<unset>" } else { v }
}

pub(super) fn persistent_volume_row(o: &Value, now: Timestamp) -> Vec<Value> {
    let claim = match o.pointer("/spec/claimRef") {
        Some(r) if !r.is_null() => format!("{}/{}", s(r, "/namespace"), s(r, "/name")),
        _ => String::new(),
    };
    let capacity = s(o, "/spec/capacity/storage");
    vec![
        json!(s(o, "/metadata/name")),
        json!(if capacity.is_empty() { "0" } else { capacity }),
        json!(access_modes(items(o, "/spec/accessModes"))),
        json!(s(o, "/spec/persistentVolumeReclaimPolicy")),
        json!(phase(o)),
        json!(claim),
        json!(s(o, "/spec/storageClassName")),
        json!(or_unset(s(o, "/spec/volumeAttributesClassName"))),
        json!(s(o, "/status/reason")),
        json!(since(o.pointer("/metadata/creationTimestamp"), now)),
        json!(or_unset(s(o, "/spec/volumeMode"))),
    ]
}

pub(super) fn persistent_volume_claim_row(o: &Value, now: Timestamp) -> Vec<Value> {
    let volume = s(o, "/spec/volumeName");
    let (capacity, modes) = if volume.is_empty() {
        (String::new(), String::new())
    } else {
        let capacity = s(o, "/status/capacity/storage");
        (
            if capacity.is_empty() { "0" } else { capacity }.to_string(),
            access_modes(items(o, "/status/accessModes")),
        )
    };
    vec![
        json!(s(o, "/metadata/name")),
        json!(phase(o)),
        json!(volume),
        json!(capacity),
        json!(modes),
        json!(s(o, "/spec/storageClassName")),
        json!(or_unset(s(o, "/spec/volumeAttributesClassName"))),
        json!(since(o.pointer("/metadata/creationTimestamp"), now)),
        json!(or_unset(s(o, "/spec/volumeMode"))),
    ]
}

pub(super) fn storage_class_row(o: &Value, now: Timestamp) -> Vec<Value> {
    let mut name = s(o, "/metadata/name").to_string();
    let annotations = o.pointer("/metadata/annotations");
    let default = |key: &str| annotations.and_then(|a| a.get(key)) == Some(&json!("true"));
    if default(herd_api::volumes::DEFAULT_CLASS_ANNOTATION)
        || default("storageclass.beta.kubernetes.io/is-default-class")
    {
        name.push_str(" (default)");
    }
    let or = |pointer: &str, default: &'static str| {
        let v = s(o, pointer);
        if v.is_empty() { default } else { v }.to_string()
    };
    vec![
        json!(name),
        json!(s(o, "/provisioner")),
        json!(or("/reclaimPolicy", "Delete")),
        json!(or("/volumeBindingMode", "Immediate")),
        json!(
            o.pointer("/allowVolumeExpansion")
                .and_then(Value::as_bool)
                .unwrap_or(false)
        ),
        json!(since(o.pointer("/metadata/creationTimestamp"), now)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        "2026-01-01T12:00:00Z".parse().unwrap()
    }

    #[test]
    fn volumes_claims_and_classes_print_kubes_columns() {
        let pv = json!({"metadata": {"name": "pvc-1", "creationTimestamp": "2026-01-01T11:00:00Z"},
            "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteMany", "ReadWriteOnce"],
                "persistentVolumeReclaimPolicy": "Delete", "storageClassName": "standard",
                "claimRef": {"namespace": "default", "name": "data"}, "volumeMode": "Filesystem"},
            "status": {"phase": "Bound"}});
        assert_eq!(
            persistent_volume_row(&pv, now()),
            [
                "pvc-1",
                "1Gi",
                "RWO,RWX",
                "Delete",
                "Bound",
                "default/data",
                "standard",
                "<unset>",
                "",
                "60m",
                "Filesystem"
            ]
            .map(|c| json!(c))
        );
        let pending = json!({"metadata": {"name": "data", "creationTimestamp": "2026-01-01T11:59:00Z"},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}},
                "storageClassName": "standard", "volumeMode": "Filesystem"},
            "status": {"phase": "Pending"}});
        assert_eq!(
            persistent_volume_claim_row(&pending, now()),
            [
                "data",
                "Pending",
                "",
                "",
                "",
                "standard",
                "<unset>",
                "60s",
                "Filesystem"
            ]
            .map(|c| json!(c))
        );
        let mut bound = pending.clone();
        bound["spec"]["volumeName"] = json!("pvc-1");
        bound["status"] = json!({"phase": "Bound", "capacity": {"storage": "2Gi"},
            "accessModes": ["ReadWriteOnce"]});
        bound["metadata"]["deletionTimestamp"] = json!("2026-01-01T12:00:00Z");
        assert_eq!(
            persistent_volume_claim_row(&bound, now())[1..5],
            ["Terminating", "pvc-1", "2Gi", "RWO"].map(|c| json!(c))
        );
        let sc = json!({"metadata": {"name": "standard", "creationTimestamp": "2026-01-01T10:00:00Z",
            "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
            "provisioner": "herd.dev/local", "volumeBindingMode": "WaitForFirstConsumer"});
        assert_eq!(
            storage_class_row(&sc, now()),
            [
                json!("standard (default)"),
                json!("herd.dev/local"),
                json!("Delete"),
                json!("WaitForFirstConsumer"),
                json!(false),
                json!("120m")
            ]
        );
    }
}
