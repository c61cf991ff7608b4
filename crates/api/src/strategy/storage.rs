//! The storage kinds' rules, as kube-apiserver's `persistentvolume`, `persistentvolumeclaim` and
//! `storageclass` strategies and `ValidatePersistentVolume*`/`ValidateStorageClass*` word for word: access
//! modes required and known, a claim's storage request required and positive, a volume's capacity only
//! `storage`, exactly one volume source, a `local` volume's required node affinity; a claim's spec immutable
//! but for its request's growth (and its `volumeName`, set once by the binder), a volume's source, mode and
//! node affinity immutable; a class's provisioner, parameters, reclaim policy and binding mode immutable.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    PersistentVolume, PersistentVolumeClaim, PersistentVolumeClaimStatus, PersistentVolumeStatus,
};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as QuantityText;

use super::{CreateHook, Kind};
use crate::quantity::Quantity;
use crate::validation::{self, Cause};

/// kube's `supportedAccessModes`, sorted as its `NotSupported` lists them.
const ACCESS_MODES: &[&str] = &[
    "ReadOnlyMany",
    "ReadWriteMany",
    "ReadWriteOnce",
    "ReadWriteOncePod",
];
const VOLUME_MODES: &[&str] = &["Block", "Filesystem"];
const RECLAIM_POLICIES: &[&str] = &["Delete", "Recycle", "Retain"];
const CLASS_RECLAIM_POLICIES: &[&str] = &["Delete", "Retain"];
const BINDING_MODES: &[&str] = &["Immediate", "WaitForFirstConsumer"];
/// The volume sources of a PersistentVolume spec (k8s-openapi's field names, as JSON).
const PV_SOURCES: &[&str] = &[
    "awsElasticBlockStore",
    "azureDisk",
    "azureFile",
    "cephfs",
    "cinder",
    "csi",
    "fc",
    "flexVolume",
    "flocker",
    "gcePersistentDisk",
    "glusterfs",
    "hostPath",
    "iscsi",
    "local",
    "nfs",
    "photonPersistentDisk",
    "portworxVolume",
    "quobyte",
    "rbd",
    "scaleIO",
    "storageos",
    "vsphereVolume",
];

fn validate_access_modes(modes: Option<&Vec<String>>, path: &str, causes: &mut Vec<Cause>) {
    let modes = modes.map(Vec::as_slice).unwrap_or_default();
    if modes.is_empty() {
        causes.push(Cause {
            reason: "FieldValueRequired",
            field: format!("{path}.accessModes"),
            message: "Required value: at least 1 access mode is required".into(),
        });
    }
    for mode in modes {
        if !ACCESS_MODES.contains(&mode.as_str()) {
            causes.push(Cause::not_supported(
                format!("{path}.accessModes"),
                mode,
                ACCESS_MODES,
            ));
        }
    }
    if modes.len() > 1 && modes.iter().any(|m| m == "ReadWriteOncePod") {
        causes.push(Cause::forbidden(
            format!("{path}.accessModes"),
            "may not use ReadWriteOncePod with other access modes",
        ));
    }
}

fn validate_volume_mode(mode: Option<&String>, path: &str, causes: &mut Vec<Cause>) {
    if let Some(mode) = mode
        && !VOLUME_MODES.contains(&mode.as_str())
    {
        causes.push(Cause::not_supported(
            format!("{path}.volumeMode"),
            mode,
            VOLUME_MODES,
        ));
    }
}

fn validate_class_name(name: Option<&String>, path: &str, causes: &mut Vec<Cause>) {
    if let Some(name) = name.filter(|n| !n.is_empty())
        && !validation::is_dns1123_subdomain(name)
    {
        causes.push(Cause::invalid(
            format!("{path}.storageClassName"),
            name,
            validation::DNS1123_SUBDOMAIN_MSG,
        ));
    }
}

/// `ValidatePositiveQuantityValue` after kube decoded the quantity: greater than zero.
fn positive_quantity(field: &str, q: &QuantityText, causes: &mut Vec<Cause>) -> Option<Quantity> {
    let parsed = validation::nonnegative_quantity(field, q, causes)?;
    if parsed.scaled(1000) <= 0 {
        causes.push(Cause::invalid(field, &q.0, "must be greater than zero"));
        return None;
    }
    Some(parsed)
}

fn storage_of(map: Option<&BTreeMap<String, QuantityText>>) -> Option<Quantity> {
    Quantity::parse(&map?.get("storage")?.0).ok()
}

impl Kind for PersistentVolumeClaim {
    const RESETS_STATUS_ON_CREATE: bool = true;
    const CREATE_HOOK: CreateHook = CreateHook::DefaultStorageClass;

    fn default(&mut self) {
        let spec = self.spec.get_or_insert_with(Default::default);
        spec.volume_mode.get_or_insert_with(|| "Filesystem".into());
        self.status
            .get_or_insert_with(PersistentVolumeClaimStatus::default)
            .phase
            .get_or_insert_with(|| "Pending".into());
    }

    fn validate(&self, causes: &mut Vec<Cause>) {
        let Some(spec) = &self.spec else {
            return;
        };
        validate_access_modes(spec.access_modes.as_ref(), "spec", causes);
        if let Some(selector) = &spec.selector
            && let Err(e) = crate::selector::LabelSelector::from_k8s(selector)
        {
            causes.push(Cause::invalid("spec.selector", "", &e.to_string()));
        }
        let requests = spec.resources.as_ref().and_then(|r| r.requests.as_ref());
        match requests.and_then(|r| r.get("storage")) {
            None => causes.push(Cause::required("spec.resources[storage]")),
            Some(q) => {
                positive_quantity("spec.resources[storage]", q, causes);
            }
        }
        validate_class_name(spec.storage_class_name.as_ref(), "spec", causes);
        validate_volume_mode(spec.volume_mode.as_ref(), "spec", causes);
    }

    /// kube's `ValidatePersistentVolumeClaimUpdate`: the spec is immutable but for `volumeName` (set once,
    /// by the binder) and, on a bound claim, the storage request, which may not shrink.
    fn validate_update(&mut self, old: &Self, causes: &mut Vec<Cause>) {
        let (Some(new), Some(before)) = (self.spec.as_ref(), old.spec.as_ref()) else {
            return;
        };
        let mut comparable = new.clone();
        let mut previous = before.clone();
        if previous.volume_name.as_deref().is_none_or(str::is_empty) {
            previous.volume_name.clone_from(&comparable.volume_name);
        }
        let bound = old.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound");
        let request = |s: &k8s_openapi::api::core::v1::PersistentVolumeClaimSpec| {
            storage_of(s.resources.as_ref().and_then(|r| r.requests.as_ref()))
        };
        if bound
            && let (Some(resources), Some(q)) = (
                comparable.resources.as_mut(),
                before
                    .resources
                    .as_ref()
                    .and_then(|r| r.requests.as_ref())
                    .and_then(|r| r.get("storage")),
            )
        {
            resources
                .requests
                .get_or_insert_with(Default::default)
                .insert("storage".into(), q.clone());
        }
        if comparable != previous {
            causes.push(Cause::forbidden(
                "spec",
                "spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims",
            ));
        }
        if let (Some(n), Some(o)) = (request(new), request(before))
            && n.scaled(1) < o.scaled(1)
        {
            causes.push(Cause::forbidden(
                "spec.resources.requests.storage",
                "field can not be less than previous value",
            ));
        }
    }
}

impl Kind for PersistentVolume {
    const RESETS_STATUS_ON_CREATE: bool = true;

    fn default(&mut self) {
        let spec = self.spec.get_or_insert_with(Default::default);
        spec.persistent_volume_reclaim_policy
            .get_or_insert_with(|| "Retain".into());
        spec.volume_mode.get_or_insert_with(|| "Filesystem".into());
        self.status
            .get_or_insert_with(PersistentVolumeStatus::default)
            .phase
            .get_or_insert_with(|| "Pending".into());
    }

    fn validate(&self, causes: &mut Vec<Cause>) {
        let Some(spec) = &self.spec else {
            causes.push(Cause::required("spec"));
            return;
        };
        validate_access_modes(spec.access_modes.as_ref(), "spec", causes);
        match spec.capacity.as_ref().filter(|c| !c.is_empty()) {
            None => causes.push(Cause::required("spec.capacity")),
            Some(capacity) => {
                if !capacity.contains_key("storage") || capacity.len() > 1 {
                    let keys: Vec<&str> = capacity.keys().map(String::as_str).collect();
                    causes.push(Cause::not_supported(
                        "spec.capacity",
                        &format!("map[{}]", keys.join(" ")),
                        &["storage"],
                    ));
                }
                for (name, q) in capacity {
                    positive_quantity(&format!("spec.capacity[{name}]"), q, causes);
                }
            }
        }
        if let Some(policy) = spec.persistent_volume_reclaim_policy.as_deref()
            && !RECLAIM_POLICIES.contains(&policy)
        {
            causes.push(Cause::not_supported(
                "spec.persistentVolumeReclaimPolicy",
                policy,
                RECLAIM_POLICIES,
            ));
        }
        validate_class_name(spec.storage_class_name.as_ref(), "spec", causes);
        validate_volume_mode(spec.volume_mode.as_ref(), "spec", causes);
        let as_json = serde_json::to_value(spec).unwrap_or_default();
        let sources: Vec<&str> = PV_SOURCES
            .iter()
            .copied()
            .filter(|s| as_json.get(*s).is_some_and(|v| !v.is_null()))
            .collect();
        match sources.as_slice() {
            [] => causes.push(Cause {
                reason: "FieldValueRequired",
                field: "spec".into(),
                message: "Required value: must specify a volume type".into(),
            }),
            [_] => {}
            [_, more @ ..] => {
                for s in more {
                    causes.push(Cause::forbidden(
                        format!("spec.{s}"),
                        "may not specify more than 1 volume type",
                    ));
                }
            }
        }
        if let Some(host) = &spec.host_path {
            validate_path("spec.hostPath.path", &host.path, causes);
        }
        if let Some(local) = &spec.local {
            validate_path("spec.local.path", &local.path, causes);
            if spec
                .node_affinity
                .as_ref()
                .and_then(|a| a.required.as_ref())
                .is_none()
            {
                causes.push(Cause {
                    reason: "FieldValueRequired",
                    field: "spec.nodeAffinity".into(),
                    message: "Required value: Local volume requires node affinity".into(),
                });
            }
        }
        if let Some(affinity) = &spec.node_affinity
            && affinity.required.is_none()
        {
            causes.push(Cause {
                reason: "FieldValueRequired",
                field: "spec.nodeAffinity.required".into(),
                message: "Required value: must specify required node constraints".into(),
            });
        }
    }

    /// kube's `ValidatePersistentVolumeUpdate`: the source, the volume mode and the node affinity stay.
    fn validate_update(&mut self, old: &Self, causes: &mut Vec<Cause>) {
        let (Some(new), Some(before)) = (self.spec.as_ref(), old.spec.as_ref()) else {
            return;
        };
        let source = |s: &k8s_openapi::api::core::v1::PersistentVolumeSpec| {
            let v = serde_json::to_value(s).unwrap_or_default();
            PV_SOURCES
                .iter()
                .map(|k| v.get(*k).cloned())
                .collect::<Vec<_>>()
        };
        if source(new) != source(before) {
            causes.push(Cause::forbidden(
                "spec.persistentvolumesource",
                "spec.persistentvolumesource is immutable after creation",
            ));
        }
        if new.volume_mode != before.volume_mode {
            causes.push(Cause::invalid(
                "spec.volumeMode",
                new.volume_mode.clone().unwrap_or_default(),
                "field is immutable",
            ));
        }
        if before.node_affinity.is_some() && new.node_affinity != before.node_affinity {
            causes.push(Cause::forbidden("spec.nodeAffinity", "field is immutable"));
        }
    }
}

/// A hostPath or local path: required, without `..` (kube's `validatePathNoBacksteps`).
fn validate_path(field: &str, path: &str, causes: &mut Vec<Cause>) {
    if path.is_empty() {
        causes.push(Cause::required(field));
    } else if path.split('/').any(|part| part == "..") {
        causes.push(Cause::invalid(field, path, "must not contain '..'"));
    }
}

impl Kind for StorageClass {
    fn default(&mut self) {
        self.reclaim_policy.get_or_insert_with(|| "Delete".into());
        self.volume_binding_mode
            .get_or_insert_with(|| "Immediate".into());
    }

    fn validate(&self, causes: &mut Vec<Cause>) {
        if self.provisioner.is_empty() {
            causes.push(Cause::required("provisioner"));
        } else if !validation::valid_qualified_name(&self.provisioner) {
            causes.push(Cause::invalid(
                "provisioner",
                &self.provisioner,
                "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')",
            ));
        }
        if let Some(policy) = self.reclaim_policy.as_deref()
            && !CLASS_RECLAIM_POLICIES.contains(&policy)
        {
            causes.push(Cause::not_supported(
                "reclaimPolicy",
                policy,
                CLASS_RECLAIM_POLICIES,
            ));
        }
        if let Some(mode) = self.volume_binding_mode.as_deref()
            && !BINDING_MODES.contains(&mode)
        {
            causes.push(Cause::not_supported(
                "volumeBindingMode",
                mode,
                BINDING_MODES,
            ));
        }
    }

    /// kube's `ValidateStorageClassUpdate`.
    fn validate_update(&mut self, old: &Self, causes: &mut Vec<Cause>) {
        if self.parameters != old.parameters {
            causes.push(Cause::forbidden(
                "parameters",
                "updates to parameters are forbidden.",
            ));
        }
        if self.provisioner != old.provisioner {
            causes.push(Cause::forbidden(
                "provisioner",
                "updates to provisioner are forbidden.",
            ));
        }
        if self.reclaim_policy != old.reclaim_policy {
            causes.push(Cause::forbidden(
                "reclaimPolicy",
                "updates to reclaimPolicy are forbidden.",
            ));
        }
        if self.volume_binding_mode != old.volume_binding_mode {
            causes.push(Cause::invalid(
                "volumeBindingMode",
                self.volume_binding_mode.clone().unwrap_or_default(),
                "field is immutable",
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::admission::admit_update;
    use crate::resources::by_kind;

    use crate::admission::invalid_causes_of as causes;

    #[test]
    fn a_claim_needs_access_modes_and_a_positive_request() {
        let pvc = by_kind("v1", "PersistentVolumeClaim").unwrap();
        assert_eq!(
            causes(crate::admit(
                pvc,
                json!({"metadata": {"name": "c"}, "spec": {}})
            )),
            [
                "spec.accessModes: Required value: at least 1 access mode is required",
                "spec.resources[storage]: Required value"
            ]
        );
        assert_eq!(
            causes(crate::admit(
                pvc,
                json!({"metadata": {"name": "c"}, "spec": {"accessModes": ["ReadWriteSome"],
                "resources": {"requests": {"storage": "0"}}}})
            )),
            [
                "spec.accessModes: Unsupported value: \"ReadWriteSome\": supported values: \"ReadOnlyMany\", \"ReadWriteMany\", \"ReadWriteOnce\", \"ReadWriteOncePod\"",
                "spec.resources[storage]: Invalid value: \"0\": must be greater than zero"
            ]
        );
        let ok = crate::admit(
            pvc,
            json!({"metadata": {"name": "c"}, "spec": {"accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": "1Gi"}}}}),
        )
        .unwrap();
        assert_eq!(ok["status"], json!({"phase": "Pending"}));
        assert_eq!(ok["spec"]["volumeMode"], "Filesystem");
    }

    #[test]
    fn a_claim_spec_is_immutable_but_for_growth_when_bound_and_its_volume_name_once() {
        let pvc = by_kind("v1", "PersistentVolumeClaim").unwrap();
        let mut old = crate::admit(
            pvc,
            json!({"metadata": {"name": "c"}, "spec": {"accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": "1Gi"}}}}),
        )
        .unwrap();
        let mut named = old.clone();
        named["spec"]["volumeName"] = json!("pv1");
        assert!(admit_update(pvc, &old, named).is_ok());
        let mut grown = old.clone();
        grown["spec"]["resources"]["requests"]["storage"] = json!("2Gi");
        assert_eq!(
            causes(admit_update(pvc, &old, grown.clone())),
            [
                "spec: Forbidden: spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims"
            ]
        );
        old["status"]["phase"] = json!("Bound");
        grown["status"]["phase"] = json!("Bound");
        assert!(admit_update(pvc, &old, grown).is_ok());
        let mut shrunk = old.clone();
        shrunk["spec"]["resources"]["requests"]["storage"] = json!("1Mi");
        assert_eq!(
            causes(admit_update(pvc, &old, shrunk)),
            [
                "spec.resources.requests.storage: Forbidden: field can not be less than previous value"
            ]
        );
    }

    #[test]
    fn a_volume_needs_capacity_one_source_and_local_node_affinity() {
        let pv = by_kind("v1", "PersistentVolume").unwrap();
        assert_eq!(
            causes(crate::admit(
                pv,
                json!({"metadata": {"name": "v"}, "spec": {"accessModes": ["ReadWriteOnce"]}})
            )),
            [
                "spec.capacity: Required value",
                "spec: Required value: must specify a volume type"
            ]
        );
        assert_eq!(
            causes(crate::admit(
                pv,
                json!({"metadata": {"name": "v"}, "spec": {"accessModes": ["ReadWriteOnce"],
                "capacity": {"storage": "1Gi"}, "local": {"path": "/data"},
                "hostPath": {"path": "/x/../y"}}})
            )),
            [
                "spec.local: Forbidden: may not specify more than 1 volume type",
                "spec.hostPath.path: Invalid value: \"/x/../y\": must not contain '..'",
                "spec.nodeAffinity: Required value: Local volume requires node affinity"
            ]
        );
        let ok = crate::admit(
            pv,
            json!({"metadata": {"name": "v"}, "spec": {"accessModes": ["ReadWriteOnce"],
                "capacity": {"storage": "1Gi"}, "hostPath": {"path": "/data"}}}),
        )
        .unwrap();
        assert_eq!(ok["spec"]["persistentVolumeReclaimPolicy"], "Retain");
        assert_eq!(ok["status"]["phase"], "Pending");
        let mut moved = ok.clone();
        moved["spec"]["hostPath"]["path"] = json!("/elsewhere");
        assert_eq!(
            causes(admit_update(pv, &ok, moved)),
            [
                "spec.persistentvolumesource: Forbidden: spec.persistentvolumesource is immutable after creation"
            ]
        );
    }

    #[test]
    fn a_class_defaults_and_keeps_its_provisioner() {
        let sc = by_kind("storage.k8s.io/v1", "StorageClass").unwrap();
        let ok = crate::admit(
            sc,
            json!({"metadata": {"name": "s"}, "provisioner": "herd.dev/local"}),
        )
        .unwrap();
        assert_eq!(
            (&ok["reclaimPolicy"], &ok["volumeBindingMode"]),
            (&json!("Delete"), &json!("Immediate"))
        );
        let mut changed = ok.clone();
        changed["provisioner"] = json!("other.dev/x");
        changed["volumeBindingMode"] = json!("WaitForFirstConsumer");
        assert_eq!(
            causes(admit_update(sc, &ok, changed)),
            [
                "provisioner: Forbidden: updates to provisioner are forbidden.",
                "volumeBindingMode: Invalid value: \"WaitForFirstConsumer\": field is immutable"
            ]
        );
        assert_eq!(
            causes(crate::admit(
                sc,
                json!({"metadata": {"name": "s"}, "provisioner": ""})
            )),
            ["provisioner: Required value"]
        );
    }
}
