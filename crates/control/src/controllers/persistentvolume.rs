//! kube-controller-manager's persistentvolume binder and its protection controllers, with herd's local
//! provisioner (`herd.dev/local`) in place of an external one.
//!
//! One loop, keyed by claims (`namespace/name`) and volumes (`/name`, the namespace empty). A claim's
//! reconcile keeps its `kubernetes.io/pvc-protection` finalizer (removed once no running pod uses the claim
//! being deleted) and binds it: to the volume its `volumeName` names, else to the best matching available
//! volume (`herd_api::volumes::find_matching_volume`), else — for a class of `herd.dev/local` whose claim
//! has a selected node (the scheduler's `volume.kubernetes.io/selected-node`) — to a new volume
//! `pvc-<claim uid>`: a `local` directory under that node's local volume root (its Node's
//! `volumes.herd.dev/local-root` annotation) with node affinity to it, the class's reclaim policy, and the
//! `volumes.herd.dev/local-cleanup` finalizer the node removes after deleting the directory. A volume's
//! reconcile keeps its `kubernetes.io/pv-protection` finalizer (removed when it is not Bound) and its phase:
//! Available, Bound, Released when its claim is gone — then Retain keeps it, Delete deletes a provisioned
//! one (and fails a static one: nothing can delete its storage), as kube's reclaim does.
//! The decisions are pure ([`claim_decision`], [`volume_decision`]); the loop reads the informer caches and
//! writes through `Objects`.

use std::collections::BTreeMap;
use std::sync::Arc;

use herd_api::resources::ResourceInfo;
use herd_api::volumes::{
    self as vol, BIND_COMPLETED_ANNOTATION, BOUND_BY_CONTROLLER_ANNOTATION, LOCAL_PROVISIONER,
    PV_PROTECTION_FINALIZER, PVC_PROTECTION_FINALIZER,
};
use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use serde_json::{Value, json};

use super::{Controller, Informers, Key, Requeue};
use crate::error::ApiError;
use crate::events::Recorder;
use crate::objects::{Change, DeleteOptions, Objects, core, now};

pub struct PersistentVolumes {
    objects: Objects,
    caches: Arc<Informers>,
    recorder: Recorder,
    claims: &'static ResourceInfo,
    volumes: &'static ResourceInfo,
}

impl PersistentVolumes {
    pub fn new(objects: Objects, caches: Arc<Informers>) -> Self {
        Self {
            recorder: Recorder::new(objects.clone(), "persistentvolume-controller"),
            objects,
            caches,
            claims: core("persistentvolumeclaims"),
            volumes: core("persistentvolumes"),
        }
    }
}

/// What a claim needs next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ClaimDecision {
    /// Bound as it should be: its status says so (phase, capacity and access modes of `volume`).
    Bound { volume: String },
    /// Bind it to this volume (claimRef first, then the claim's `volumeName` and both statuses).
    Bind { volume: String },
    /// Provision a volume on the selected node.
    Provision { node: String },
    /// Stays Pending, with this event (Normal or Warning, reason, message).
    Pending(Option<(bool, &'static str, String)>),
    /// Its volume is gone or bound elsewhere.
    Lost(&'static str, String),
}

/// kube's `syncClaim`, as a decision over the claim, the volumes, its class and its selected node.
pub(crate) fn claim_decision(
    claim: &PersistentVolumeClaim,
    volumes: &[Arc<PersistentVolume>],
    class: Option<&StorageClass>,
    node: Option<&Node>,
) -> ClaimDecision {
    let spec = claim.spec.clone().unwrap_or_default();
    let bound_before = claim.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound");
    if let Some(name) = spec.volume_name.as_deref().filter(|n| !n.is_empty()) {
        let Some(pv) = volumes
            .iter()
            .find(|v| v.metadata.name.as_deref() == Some(name))
        else {
            return if bound_before {
                ClaimDecision::Lost(
                    "ClaimLost",
                    "Bound claim has lost its PersistentVolume. Data on the volume is lost!".into(),
                )
            } else {
                ClaimDecision::Pending(None)
            };
        };
        let claim_ref = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref());
        return match claim_ref {
            None => ClaimDecision::Bind {
                volume: name.into(),
            },
            Some(_) if vol::is_bound_to(pv, claim) => {
                if claim_ref.and_then(|r| r.uid.as_deref()) == claim.metadata.uid.as_deref() {
                    ClaimDecision::Bound {
                        volume: name.into(),
                    }
                } else {
                    ClaimDecision::Bind {
                        volume: name.into(),
                    }
                }
            }
            Some(_) => ClaimDecision::Lost(
                "ClaimMisbound",
                "Two claims are bound to the same volume, this one is bound incorrectly".into(),
            ),
        };
    }
    let delay = vol::waits_for_first_consumer(class);
    let selected = claim
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(vol::SELECTED_NODE_ANNOTATION));
    if delay && selected.is_none() {
        return ClaimDecision::Pending(Some((
            false,
            "WaitForFirstConsumer",
            "waiting for first consumer to be created before binding".into(),
        )));
    }
    let node_view = node.map(|n| {
        (
            n.metadata.name.clone().unwrap_or_default(),
            n.metadata.labels.clone().unwrap_or_default(),
        )
    });
    let found = vol::find_matching_volume(
        claim,
        volumes.iter().map(Arc::as_ref),
        node_view.as_ref().map(|(n, l)| (n.as_str(), l)),
        delay,
    );
    if let Some(pv) = found {
        return ClaimDecision::Bind {
            volume: pv.metadata.name.clone().unwrap_or_default(),
        };
    }
    let class_name = vol::claim_class(claim);
    match class {
        _ if class_name.is_empty() => ClaimDecision::Pending(Some((
            false,
            "FailedBinding",
            "no persistent volumes available for this claim and no storage class is set".into(),
        ))),
        None => ClaimDecision::Pending(Some((
            true,
            "ProvisioningFailed",
            format!("storageclass.storage.k8s.io \"{class_name}\" not found"),
        ))),
        Some(c) if c.provisioner == LOCAL_PROVISIONER => match selected {
            Some(node) => ClaimDecision::Provision { node: node.clone() },
            None => ClaimDecision::Pending(Some((
                true,
                "ProvisioningFailed",
                format!(
                    "{LOCAL_PROVISIONER} provisions on the node a pod using the claim is scheduled to: its StorageClass needs volumeBindingMode WaitForFirstConsumer"
                ),
            ))),
        },
        Some(c) => ClaimDecision::Pending(Some((
            false,
            "ExternalProvisioning",
            format!(
                "Waiting for a volume to be created either by the external provisioner '{}' or manually by the system administrator. If volume creation is delayed, please verify that the provisioner is running and correctly registered.",
                c.provisioner
            ),
        ))),
    }
}

/// What a volume needs next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum VolumeDecision {
    /// Its phase should be this (with a message for Failed).
    Phase(&'static str, Option<String>),
    /// Its claim bound another volume: give this one back (a binding the controller made).
    Unbind,
    /// Released with the Delete policy and provisioned here: delete the object (its node removes the
    /// directory and the finalizer).
    Delete,
}

/// kube's `syncVolume`, as a decision over the volume and the claim its claimRef names.
pub(crate) fn volume_decision(
    pv: &PersistentVolume,
    claim: Option<&PersistentVolumeClaim>,
) -> VolumeDecision {
    let spec = pv.spec.clone().unwrap_or_default();
    let Some(claim_ref) = spec.claim_ref.as_ref() else {
        return VolumeDecision::Phase("Available", None);
    };
    let uid = claim_ref.uid.as_deref().filter(|u| !u.is_empty());
    match claim {
        // Pre-bound by a user to a claim the binder has not bound yet.
        Some(_) if uid.is_none() => VolumeDecision::Phase("Available", None),
        Some(c) if c.metadata.uid.as_deref() == uid => {
            let bound_to = c.spec.as_ref().and_then(|s| s.volume_name.as_deref());
            match bound_to {
                Some(other) if !other.is_empty() && Some(other) != pv.metadata.name.as_deref() => {
                    let ours = pv
                        .metadata
                        .annotations
                        .as_ref()
                        .is_some_and(|a| a.contains_key(BOUND_BY_CONTROLLER_ANNOTATION));
                    if ours {
                        VolumeDecision::Unbind
                    } else {
                        VolumeDecision::Phase("Bound", None)
                    }
                }
                _ => VolumeDecision::Phase("Bound", None),
            }
        }
        // The claim is gone (or another one of its name): released, and reclaimed by the policy.
        _ => {
            let phase = pv.status.as_ref().and_then(|s| s.phase.as_deref());
            if phase == Some("Failed") {
                return VolumeDecision::Phase("Failed", None);
            }
            let provisioned_here = pv
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(vol::PROVISIONED_BY_ANNOTATION))
                .is_some_and(|p| p == LOCAL_PROVISIONER);
            let name = pv.metadata.name.clone().unwrap_or_default();
            match spec.persistent_volume_reclaim_policy.as_deref() {
                Some("Delete") if provisioned_here => VolumeDecision::Delete,
                Some("Delete") => VolumeDecision::Phase(
                    "Failed",
                    Some(format!(
                        "error getting deleter volume plugin for volume \"{name}\": no deletable volume plugin matched"
                    )),
                ),
                Some("Recycle") => VolumeDecision::Phase(
                    "Failed",
                    Some(format!(
                        "error getting recycler volume plugin for volume \"{name}\": no recyclable volume plugin matched"
                    )),
                ),
                _ => VolumeDecision::Phase("Released", None),
            }
        }
    }
}

fn has_finalizer(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    f: &str,
) -> bool {
    meta.finalizers.iter().flatten().any(|x| x == f)
}

/// Adds finalizer `f` to a JSON object; false when it has it. (Removing one goes through
/// `Objects::remove_finalizer`, which completes a deletion when the last one goes.)
fn add_finalizer(obj: &mut Value, f: &str) -> bool {
    let mut list: Vec<Value> = obj
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if list.iter().any(|x| x == f) {
        return false;
    }
    list.push(json!(f));
    obj["metadata"]["finalizers"] = Value::Array(list);
    true
}

/// Sets `status.phase` (and `lastPhaseTransitionTime` when it changes, `message` for Failed); false when
/// nothing changed.
fn set_phase(obj: &mut Value, phase: &str, message: Option<&str>) -> bool {
    let status = &mut obj["status"];
    let same_phase = status.get("phase").and_then(Value::as_str) == Some(phase);
    if same_phase && status.get("message").and_then(Value::as_str) == message {
        return false;
    }
    if !same_phase {
        status["lastPhaseTransitionTime"] = json!(now());
    }
    status["phase"] = json!(phase);
    match message {
        Some(m) => status["message"] = json!(m),
        None => {
            if let Some(s) = status.as_object_mut() {
                s.remove("message");
            }
        }
    }
    true
}

/// Whether a pod that has not finished uses the claim (kube's pvc-protection `podUsesPVC`).
fn pod_uses(pod: &Pod, claim: &str) -> bool {
    let finished = matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    );
    !finished
        && pod
            .spec
            .iter()
            .flat_map(|s| s.volumes.iter().flatten())
            .any(|v| {
                v.persistent_volume_claim
                    .as_ref()
                    .is_some_and(|c| c.claim_name == claim)
            })
}

impl PersistentVolumes {
    fn uid_matches(obj: &Value, uid: Option<&String>) -> bool {
        obj.pointer("/metadata/uid").and_then(Value::as_str) == uid.map(String::as_str)
    }

    async fn event(&self, obj: &impl serde::Serialize, warning: bool, reason: &str, message: &str) {
        let Ok(obj) = serde_json::to_value(obj) else {
            return;
        };
        if warning {
            self.recorder.warning(&obj, reason, message).await;
        } else {
            self.recorder.normal(&obj, reason, message).await;
        }
    }

    async fn sync_claim(&self, ns: &str, name: &str) -> Result<Requeue, ApiError> {
        let Some(claim) = self.caches.store::<PersistentVolumeClaim>().get(ns, name) else {
            return Ok(None);
        };
        let uid = claim.metadata.uid.clone();
        // pvc-protection: a claim being deleted keeps its finalizer while a running pod uses it.
        if claim.metadata.deletion_timestamp.is_some() {
            if has_finalizer(&claim.metadata, PVC_PROTECTION_FINALIZER) {
                let pods = self.caches.store::<Pod>().list(Some(ns));
                if !pods.iter().any(|p| pod_uses(p, name)) {
                    // The last finalizer's removal completes the deletion.
                    self.objects
                        .remove_finalizer(self.claims, ns, name, PVC_PROTECTION_FINALIZER)
                        .await?;
                }
            }
            return Ok(None);
        }
        if !has_finalizer(&claim.metadata, PVC_PROTECTION_FINALIZER) {
            self.objects
                .edit(self.claims, ns, name, |c| {
                    Self::uid_matches(c, uid.as_ref()) && add_finalizer(c, PVC_PROTECTION_FINALIZER)
                })
                .await?;
        }
        let volumes = self.caches.store::<PersistentVolume>().list(None);
        let class = self
            .caches
            .store::<StorageClass>()
            .get("", vol::claim_class(&claim));
        let selected = claim
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(vol::SELECTED_NODE_ANNOTATION));
        let node = selected.and_then(|n| self.caches.store::<Node>().get("", n));
        match claim_decision(&claim, &volumes, class.as_deref(), node.as_deref()) {
            ClaimDecision::Bound { volume } => {
                let Some(pv) = volumes
                    .iter()
                    .find(|v| v.metadata.name.as_deref() == Some(volume.as_str()))
                else {
                    return Ok(None);
                };
                self.mark_claim_bound(ns, name, uid.as_ref(), pv).await?;
            }
            ClaimDecision::Bind { volume } => {
                let Some(pv) = volumes
                    .iter()
                    .find(|v| v.metadata.name.as_deref() == Some(volume.as_str()))
                else {
                    return Ok(None);
                };
                self.bind(&claim, pv).await?;
            }
            ClaimDecision::Provision { node: node_name } => {
                self.provision(&claim, class.as_deref(), node.as_deref(), &node_name)
                    .await?;
            }
            ClaimDecision::Pending(event) => {
                if let Some((warning, reason, message)) = event {
                    self.event(&*claim, warning, reason, &message).await;
                }
                self.objects
                    .edit(self.claims, ns, name, |c| {
                        Self::uid_matches(c, uid.as_ref()) && set_phase(c, "Pending", None)
                    })
                    .await?;
            }
            ClaimDecision::Lost(reason, message) => {
                self.event(&*claim, true, reason, &message).await;
                self.objects
                    .edit(self.claims, ns, name, |c| {
                        Self::uid_matches(c, uid.as_ref()) && set_phase(c, "Lost", None)
                    })
                    .await?;
            }
        }
        Ok(None)
    }

    /// kube's `bind`: the volume's claimRef first (so no other claim takes it), then the claim's
    /// `volumeName`, then both statuses.
    async fn bind(
        &self,
        claim: &PersistentVolumeClaim,
        pv: &PersistentVolume,
    ) -> Result<(), ApiError> {
        let ns = claim.metadata.namespace.clone().unwrap_or_default();
        let name = claim.metadata.name.clone().unwrap_or_default();
        let pv_name = pv.metadata.name.clone().unwrap_or_default();
        let claim_ref = json!({"kind": "PersistentVolumeClaim", "namespace": ns, "name": name,
            "uid": claim.metadata.uid, "apiVersion": "v1",
            "resourceVersion": claim.metadata.resource_version});
        let pv_uid = pv.metadata.uid.clone();
        let was_free = pv.spec.as_ref().is_none_or(|s| s.claim_ref.is_none());
        self.objects
            .edit(self.volumes, "", &pv_name, |v| {
                if !Self::uid_matches(v, pv_uid.as_ref()) {
                    return false;
                }
                let current = v.pointer("/spec/claimRef").cloned().unwrap_or(Value::Null);
                let free = current.is_null()
                    || (current["namespace"] == json!(ns)
                        && current["name"] == json!(name)
                        && current
                            .get("uid")
                            .and_then(Value::as_str)
                            .is_none_or(str::is_empty));
                if !free {
                    return false;
                }
                v["spec"]["claimRef"] = claim_ref.clone();
                if was_free {
                    v["metadata"]["annotations"][BOUND_BY_CONTROLLER_ANNOTATION] = json!("yes");
                }
                set_phase(v, "Bound", None);
                true
            })
            .await?;
        let uid = claim.metadata.uid.clone();
        let capacity = pv.spec.as_ref().and_then(|s| s.capacity.clone());
        let modes = pv.spec.as_ref().and_then(|s| s.access_modes.clone());
        self.objects
            .edit(self.claims, &ns, &name, |c| {
                if !Self::uid_matches(c, uid.as_ref()) {
                    return false;
                }
                if c.pointer("/spec/volumeName")
                    .and_then(Value::as_str)
                    .is_none_or(str::is_empty)
                {
                    c["spec"]["volumeName"] = json!(pv_name);
                    c["metadata"]["annotations"][BOUND_BY_CONTROLLER_ANNOTATION] = json!("yes");
                }
                c["metadata"]["annotations"][BIND_COMPLETED_ANNOTATION] = json!("yes");
                claim_bound_status(c, capacity.as_ref(), modes.as_ref());
                true
            })
            .await?;
        Ok(())
    }

    async fn mark_claim_bound(
        &self,
        ns: &str,
        name: &str,
        uid: Option<&String>,
        pv: &PersistentVolume,
    ) -> Result<(), ApiError> {
        let capacity = pv.spec.as_ref().and_then(|s| s.capacity.clone());
        let modes = pv.spec.as_ref().and_then(|s| s.access_modes.clone());
        self.objects
            .edit(self.claims, ns, name, |c| {
                if !Self::uid_matches(c, uid) {
                    return false;
                }
                let before = c.clone();
                c["metadata"]["annotations"][BIND_COMPLETED_ANNOTATION] = json!("yes");
                claim_bound_status(c, capacity.as_ref(), modes.as_ref());
                *c != before
            })
            .await?;
        Ok(())
    }

    /// herd's local provisioner: a `local` volume `pvc-<claim uid>` under the node's local volume root,
    /// pre-bound to the claim (the claim's next sync binds it).
    async fn provision(
        &self,
        claim: &PersistentVolumeClaim,
        class: Option<&StorageClass>,
        node: Option<&Node>,
        node_name: &str,
    ) -> Result<(), ApiError> {
        let ns = claim.metadata.namespace.clone().unwrap_or_default();
        let name = claim.metadata.name.clone().unwrap_or_default();
        let uid = claim.metadata.uid.clone();
        self.objects
            .edit(self.claims, &ns, &name, |c| {
                let annotations = &c["metadata"]["annotations"];
                if !Self::uid_matches(c, uid.as_ref())
                    || annotations
                        .get(vol::STORAGE_PROVISIONER_ANNOTATION)
                        .is_some()
                {
                    return false;
                }
                c["metadata"]["annotations"][vol::STORAGE_PROVISIONER_ANNOTATION] =
                    json!(LOCAL_PROVISIONER);
                c["metadata"]["annotations"][vol::BETA_STORAGE_PROVISIONER_ANNOTATION] =
                    json!(LOCAL_PROVISIONER);
                true
            })
            .await?;
        let root = node.and_then(|n| {
            n.metadata
                .annotations
                .as_ref()?
                .get(vol::LOCAL_ROOT_ANNOTATION)
                .cloned()
        });
        let Some(root) = root else {
            let message = match node {
                None => format!("failed to get target node: node \"{node_name}\" not found"),
                Some(_) => format!(
                    "node \"{node_name}\" has no local volume directory (annotation {})",
                    vol::LOCAL_ROOT_ANNOTATION
                ),
            };
            self.event(claim, true, "ProvisioningFailed", &message)
                .await;
            return Ok(());
        };
        let pv_name = format!("pvc-{}", uid.clone().unwrap_or_default());
        let spec = claim.spec.clone().unwrap_or_default();
        let request = spec
            .resources
            .as_ref()
            .and_then(|r| r.requests.as_ref())
            .and_then(|r| r.get("storage"))
            .map(|q| q.0.clone())
            .unwrap_or_default();
        let pv = json!({
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {
                "name": pv_name,
                "labels": {vol::LOCAL_NODE_LABEL: node_name},
                "annotations": {vol::PROVISIONED_BY_ANNOTATION: LOCAL_PROVISIONER},
                "finalizers": [vol::LOCAL_CLEANUP_FINALIZER, PV_PROTECTION_FINALIZER],
            },
            "spec": {
                "capacity": {"storage": request},
                "accessModes": spec.access_modes,
                "persistentVolumeReclaimPolicy":
                    class.and_then(|c| c.reclaim_policy.clone()).unwrap_or_else(|| "Delete".into()),
                "storageClassName": vol::claim_class(claim),
                "volumeMode": spec.volume_mode,
                "claimRef": {"kind": "PersistentVolumeClaim", "apiVersion": "v1", "namespace": ns,
                    "name": name, "uid": uid},
                "local": {"path": format!("{}/{pv_name}", root.trim_end_matches('/'))},
                "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                    {"key": vol::HOSTNAME_LABEL, "operator": "In", "values": [node_name]}]}]}},
            },
        });
        match self.objects.create(self.volumes, None, pv, false).await {
            Ok(_) => {
                self.event(
                    claim,
                    false,
                    "ProvisioningSucceeded",
                    &format!("Successfully provisioned volume {pv_name}"),
                )
                .await;
                Ok(())
            }
            Err(ApiError::AlreadyExists { .. }) => Ok(()),
            Err(e) => {
                self.event(claim, true, "ProvisioningFailed", &e.to_string())
                    .await;
                Err(e)
            }
        }
    }

    async fn sync_volume(&self, name: &str) -> Result<Requeue, ApiError> {
        let Some(pv) = self.caches.store::<PersistentVolume>().get("", name) else {
            return Ok(None);
        };
        let uid = pv.metadata.uid.clone();
        let bound = pv.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound");
        // pv-protection: a volume being deleted keeps its finalizer while it is Bound.
        if pv.metadata.deletion_timestamp.is_some() {
            if !bound && has_finalizer(&pv.metadata, PV_PROTECTION_FINALIZER) {
                self.objects
                    .remove_finalizer(self.volumes, "", name, PV_PROTECTION_FINALIZER)
                    .await?;
            }
            if !bound {
                return Ok(None);
            }
        } else if !has_finalizer(&pv.metadata, PV_PROTECTION_FINALIZER) {
            self.objects
                .edit(self.volumes, "", name, |v| {
                    Self::uid_matches(v, uid.as_ref()) && add_finalizer(v, PV_PROTECTION_FINALIZER)
                })
                .await?;
        }
        let claim = pv
            .spec
            .as_ref()
            .and_then(|s| s.claim_ref.as_ref())
            .and_then(|r| {
                self.caches.store::<PersistentVolumeClaim>().get(
                    r.namespace.as_deref().unwrap_or_default(),
                    r.name.as_deref().unwrap_or_default(),
                )
            });
        match volume_decision(&pv, claim.as_deref()) {
            VolumeDecision::Phase(phase, message) => {
                if phase == "Failed"
                    && pv.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Failed")
                    && let Some(m) = &message
                {
                    self.event(&*pv, true, "VolumeFailedDelete", m).await;
                }
                self.objects
                    .edit(self.volumes, "", name, |v| {
                        Self::uid_matches(v, uid.as_ref())
                            && set_phase(v, phase, message.as_deref())
                    })
                    .await?;
            }
            VolumeDecision::Unbind => {
                self.objects
                    .edit(self.volumes, "", name, |v| {
                        if !Self::uid_matches(v, uid.as_ref()) {
                            return false;
                        }
                        if let Some(spec) = v["spec"].as_object_mut() {
                            spec.remove("claimRef");
                        }
                        if let Some(a) = v["metadata"]["annotations"].as_object_mut() {
                            a.remove(BOUND_BY_CONTROLLER_ANNOTATION);
                        }
                        set_phase(v, "Available", None);
                        true
                    })
                    .await?;
            }
            VolumeDecision::Delete => {
                self.objects
                    .edit(self.volumes, "", name, |v| {
                        Self::uid_matches(v, uid.as_ref()) && set_phase(v, "Released", None)
                    })
                    .await?;
                if pv.metadata.deletion_timestamp.is_none() {
                    let opts = DeleteOptions {
                        precondition_uid: uid.clone(),
                        ..DeleteOptions::default()
                    };
                    match self.objects.delete(self.volumes, None, name, opts).await {
                        Ok(_) | Err(ApiError::NotFound { .. } | ApiError::Conflict { .. }) => {}
                        Err(e) => return Err(e),
                    }
                }
            }
        }
        Ok(None)
    }
}

/// A bound claim's status: phase Bound with its volume's capacity and access modes.
fn claim_bound_status(
    c: &mut Value,
    capacity: Option<&BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>>,
    modes: Option<&Vec<String>>,
) {
    set_phase(c, "Bound", None);
    c["status"]["capacity"] = json!(capacity);
    c["status"]["accessModes"] = json!(modes);
}

/// A Node's local volume root annotation.
fn local_root(node: &Value) -> Option<&str> {
    node.pointer("/metadata/annotations")?
        .get(vol::LOCAL_ROOT_ANNOTATION)?
        .as_str()
}

/// The claims a pod's volumes name, as keys.
fn claims_of(pod: &Value, ns: &str) -> Vec<Key> {
    pod.pointer("/spec/volumes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|v| v.pointer("/persistentVolumeClaim/claimName")?.as_str())
        .map(|c| (ns.to_string(), c.to_string()))
        .collect()
}

impl Controller for PersistentVolumes {
    const NAME: &'static str = "persistentvolume-binder";

    fn watches(&self) -> &'static [&'static str] {
        &[
            "persistentvolumeclaims",
            "persistentvolumes",
            "pods",
            "nodes",
        ]
    }

    fn keys_for(&self, change: &Change) -> Vec<Key> {
        let obj = &change.object;
        match &*change.resource {
            "persistentvolumeclaims" => {
                let mut keys = vec![(change.namespace.clone(), change.name.clone())];
                if let Some(v) = obj.pointer("/spec/volumeName").and_then(Value::as_str) {
                    keys.push((String::new(), v.to_string()));
                }
                keys
            }
            "persistentvolumes" => {
                let mut keys = vec![(String::new(), change.name.clone())];
                if let (Some(ns), Some(n)) = (
                    obj.pointer("/spec/claimRef/namespace")
                        .and_then(Value::as_str),
                    obj.pointer("/spec/claimRef/name").and_then(Value::as_str),
                ) {
                    keys.push((ns.to_string(), n.to_string()));
                }
                keys
            }
            "pods" => claims_of(obj, &change.namespace),
            // A node registering its local volume root: the claims waiting on it.
            "nodes" if change.previous.as_ref().map(|p| local_root(p)) != Some(local_root(obj)) => {
                self.caches
                    .store::<PersistentVolumeClaim>()
                    .list(None)
                    .iter()
                    .filter(|c| {
                        c.metadata
                            .annotations
                            .as_ref()
                            .and_then(|a| a.get(vol::SELECTED_NODE_ANNOTATION))
                            == Some(&change.name)
                            && c.spec.as_ref().is_some_and(|s| s.volume_name.is_none())
                    })
                    .map(|c| {
                        (
                            c.metadata.namespace.clone().unwrap_or_default(),
                            c.metadata.name.clone().unwrap_or_default(),
                        )
                    })
                    .collect()
            }
            _ => Vec::new(),
        }
    }

    async fn all_keys(&self) -> Result<Vec<Key>, ApiError> {
        let mut keys = self.caches.keys(self.claims);
        keys.extend(self.caches.keys(self.volumes));
        Ok(keys)
    }

    async fn reconcile(&self, (ns, name): &Key) -> Result<Requeue, ApiError> {
        if ns.is_empty() {
            self.sync_volume(name).await
        } else {
            self.sync_claim(ns, name).await
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn claim(extra: Value) -> PersistentVolumeClaim {
        let mut c = json!({"metadata": {"name": "data", "namespace": "default", "uid": "c1"},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}},
                "storageClassName": "standard"}});
        merge(&mut c, extra);
        serde_json::from_value(c).unwrap()
    }

    fn merge(into: &mut Value, from: Value) {
        match (into, from) {
            (Value::Object(a), Value::Object(b)) => {
                for (k, v) in b {
                    merge(a.entry(k).or_insert(Value::Null), v);
                }
            }
            (slot, v) => *slot = v,
        }
    }

    fn volume(extra: Value) -> Arc<PersistentVolume> {
        let mut v = json!({"metadata": {"name": "pv1"}, "spec": {"capacity": {"storage": "1Gi"},
            "accessModes": ["ReadWriteOnce"], "storageClassName": "standard",
            "hostPath": {"path": "/tmp/pv1"}, "persistentVolumeReclaimPolicy": "Retain"}});
        merge(&mut v, extra);
        Arc::new(serde_json::from_value(v).unwrap())
    }

    fn class(mode: &str, provisioner: &str) -> StorageClass {
        serde_json::from_value(
            json!({"metadata": {"name": "standard"}, "provisioner": provisioner,
            "volumeBindingMode": mode, "reclaimPolicy": "Delete"}),
        )
        .unwrap()
    }

    #[test]
    fn an_immediate_claim_binds_an_available_volume_or_waits() {
        let immediate = class("Immediate", "example.com/nfs");
        let free = [volume(json!({}))];
        assert_eq!(
            claim_decision(&claim(json!({})), &free, Some(&immediate), None),
            ClaimDecision::Bind {
                volume: "pv1".into()
            }
        );
        match claim_decision(&claim(json!({})), &[], Some(&immediate), None) {
            ClaimDecision::Pending(Some((false, "ExternalProvisioning", m))) => {
                assert!(m.contains("'example.com/nfs'"), "{m}");
            }
            other => panic!("{other:?}"),
        }
        match claim_decision(
            &claim(json!({"spec": {"storageClassName": ""}})),
            &[],
            None,
            None,
        ) {
            ClaimDecision::Pending(Some((false, "FailedBinding", m))) => assert_eq!(
                m,
                "no persistent volumes available for this claim and no storage class is set"
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_wait_for_first_consumer_claim_waits_for_a_node_then_provisions_there() {
        let local = class("WaitForFirstConsumer", LOCAL_PROVISIONER);
        assert_eq!(
            claim_decision(&claim(json!({})), &[], Some(&local), None),
            ClaimDecision::Pending(Some((
                false,
                "WaitForFirstConsumer",
                "waiting for first consumer to be created before binding".into()
            )))
        );
        let picked =
            claim(json!({"metadata": {"annotations": {vol::SELECTED_NODE_ANNOTATION: "n1"}}}));
        assert_eq!(
            claim_decision(&picked, &[], Some(&local), None),
            ClaimDecision::Provision { node: "n1".into() }
        );
        // The provisioned volume is pre-bound to the claim: the next sync binds it.
        let made = [volume(
            json!({"spec": {"claimRef": {"namespace": "default", "name": "data", "uid": "c1"}}}),
        )];
        assert_eq!(
            claim_decision(&picked, &made, Some(&local), None),
            ClaimDecision::Bind {
                volume: "pv1".into()
            }
        );
        let bound = claim(json!({"spec": {"volumeName": "pv1"}}));
        assert_eq!(
            claim_decision(&bound, &made, Some(&local), None),
            ClaimDecision::Bound {
                volume: "pv1".into()
            }
        );
        let immediate_local = class("Immediate", LOCAL_PROVISIONER);
        assert!(matches!(
            claim_decision(&claim(json!({})), &[], Some(&immediate_local), None),
            ClaimDecision::Pending(Some((true, "ProvisioningFailed", _)))
        ));
    }

    #[test]
    fn a_bound_claim_whose_volume_vanished_is_lost() {
        let bound = claim(json!({"spec": {"volumeName": "gone"}, "status": {"phase": "Bound"}}));
        assert!(matches!(
            claim_decision(&bound, &[], None, None),
            ClaimDecision::Lost("ClaimLost", _)
        ));
        let other = [volume(json!({"metadata": {"name": "gone"},
            "spec": {"claimRef": {"namespace": "default", "name": "else", "uid": "c9"}}}))];
        assert!(matches!(
            claim_decision(&bound, &other, None, None),
            ClaimDecision::Lost("ClaimMisbound", _)
        ));
    }

    #[test]
    fn a_released_volume_is_kept_deleted_or_failed_by_its_policy() {
        let taken =
            json!({"spec": {"claimRef": {"namespace": "default", "name": "data", "uid": "c1"}}});
        let owner = claim(json!({"spec": {"volumeName": "pv1"}}));
        assert_eq!(
            volume_decision(&volume(taken.clone()), Some(&owner)),
            VolumeDecision::Phase("Bound", None)
        );
        assert_eq!(
            volume_decision(&volume(json!({})), None),
            VolumeDecision::Phase("Available", None)
        );
        assert_eq!(
            volume_decision(&volume(taken.clone()), None),
            VolumeDecision::Phase("Released", None)
        );
        let mut provisioned = taken.clone();
        merge(
            &mut provisioned,
            json!({"metadata": {"annotations": {vol::PROVISIONED_BY_ANNOTATION: LOCAL_PROVISIONER}},
            "spec": {"persistentVolumeReclaimPolicy": "Delete"}}),
        );
        assert_eq!(
            volume_decision(&volume(provisioned), None),
            VolumeDecision::Delete
        );
        let mut static_delete = taken.clone();
        merge(
            &mut static_delete,
            json!({"spec": {"persistentVolumeReclaimPolicy": "Delete"}}),
        );
        assert!(matches!(
            volume_decision(&volume(static_delete), None),
            VolumeDecision::Phase("Failed", Some(_))
        ));
        // A claim of the same name but another uid is not the volume's claim.
        let newer = claim(json!({"metadata": {"uid": "c2"}}));
        assert_eq!(
            volume_decision(&volume(taken), Some(&newer)),
            VolumeDecision::Phase("Released", None)
        );
    }

    #[test]
    fn finished_pods_do_not_hold_a_claim() {
        let pod = |phase: &str| -> Pod {
            serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": {"containers": [],
                "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "data"}}]},
                "status": {"phase": phase}}))
            .unwrap()
        };
        assert!(pod_uses(&pod("Running"), "data"));
        assert!(!pod_uses(&pod("Running"), "other"));
        assert!(!pod_uses(&pod("Succeeded"), "data"));
    }
}
