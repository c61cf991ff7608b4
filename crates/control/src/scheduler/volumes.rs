//! kube-scheduler's VolumeBinding plugin over the claims, volumes and classes the scheduler's cache keeps:
//! PreFilter (a missing or terminating claim, an unbound Immediate claim: the pod waits, unschedulable),
//! Filter (a bound volume's node affinity; an unbound WaitForFirstConsumer claim needs a matching volume
//! on the node or a class that provisions anywhere, `herd.dev/local`), and the choice that follows it: the
//! pod's unbound claims get the chosen node as `volume.kubernetes.io/selected-node`, and the pod is bound
//! only once the PV controller has bound them (kube's PreBind waits for that; here the pod simply stays in
//! the queue, woken by the claims' changes).

use std::collections::BTreeMap;

use herd_api::volumes::{self as vol, LOCAL_PROVISIONER};
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;

use super::snapshot::NodeState;

/// kube's `ErrReasonNodeConflict`.
pub(crate) const NODE_CONFLICT: &str = "node(s) had volume node affinity conflict";
/// kube's `ErrReasonBindConflict`.
pub(crate) const BIND_CONFLICT: &str = "node(s) didn't find available persistent volumes to bind";
/// kube's `ErrReasonUnboundImmediatePVC`... as the PreFilter says it.
const UNBOUND_IMMEDIATE: &str = "pod has unbound immediate PersistentVolumeClaims";

/// The claims, volumes and classes the scheduler reads (kept current from its watch).
#[derive(Debug, Default)]
pub(crate) struct Volumes {
    pub claims: BTreeMap<(String, String), PersistentVolumeClaim>,
    pub volumes: BTreeMap<String, PersistentVolume>,
    pub classes: BTreeMap<String, StorageClass>,
}

/// What a pod's claims ask of its node.
#[derive(Debug, Default)]
pub(crate) struct PodClaims<'a> {
    /// Volumes its bound claims are bound to: the node must satisfy their node affinity.
    pub bound: Vec<&'a PersistentVolume>,
    /// Unbound WaitForFirstConsumer claims: a node is picked for them first.
    pub to_select: Vec<&'a PersistentVolumeClaim>,
}

/// The PreFilter's verdict on a pod.
#[derive(Debug)]
pub(crate) enum PreFilter<'a> {
    Claims(PodClaims<'a>),
    /// Unschedulable on every node, with this message (a missing claim, an unbound Immediate one).
    Unschedulable(String),
    /// A node was selected for its claims and they are being provisioned or bound: wait.
    Waiting,
}

impl Volumes {
    /// kube's VolumeBinding PreFilter for `pod`.
    pub fn pre_filter<'a>(&'a self, pod: &Pod) -> PreFilter<'a> {
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let mut out = PodClaims::default();
        let mut waiting = false;
        for v in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
            let Some(source) = &v.persistent_volume_claim else {
                continue;
            };
            let name = &source.claim_name;
            let Some(claim) = self.claims.get(&(ns.clone(), name.clone())) else {
                return PreFilter::Unschedulable(format!(
                    "persistentvolumeclaim \"{name}\" not found"
                ));
            };
            if claim.metadata.deletion_timestamp.is_some() {
                return PreFilter::Unschedulable(format!(
                    "persistentvolumeclaim \"{name}\" is being deleted"
                ));
            }
            match claim
                .spec
                .as_ref()
                .and_then(|s| s.volume_name.as_deref())
                .filter(|n| !n.is_empty())
            {
                Some(pv) => match self.volumes.get(pv) {
                    Some(pv) => out.bound.push(pv),
                    None => {
                        return PreFilter::Unschedulable(format!(
                            "persistentvolume \"{pv}\" not found"
                        ));
                    }
                },
                None => {
                    let class = self.classes.get(vol::claim_class(claim));
                    if !vol::waits_for_first_consumer(class) {
                        return PreFilter::Unschedulable(UNBOUND_IMMEDIATE.into());
                    }
                    let selected = claim
                        .metadata
                        .annotations
                        .as_ref()
                        .is_some_and(|a| a.contains_key(vol::SELECTED_NODE_ANNOTATION));
                    if selected {
                        waiting = true;
                    } else {
                        out.to_select.push(claim);
                    }
                }
            }
        }
        if waiting {
            PreFilter::Waiting
        } else {
            PreFilter::Claims(out)
        }
    }

    /// kube's VolumeBinding Filter for one node: `None` when it fits.
    pub fn refuse(&self, claims: &PodClaims<'_>, node: &NodeState<'_>) -> Option<&'static str> {
        if claims
            .bound
            .iter()
            .any(|pv| !vol::volume_fits_node(pv, node.name, node.labels))
        {
            return Some(NODE_CONFLICT);
        }
        let provisions_anywhere = |claim: &PersistentVolumeClaim| {
            self.classes
                .get(vol::claim_class(claim))
                .is_some_and(|c| c.provisioner == LOCAL_PROVISIONER)
        };
        let unfit = claims.to_select.iter().copied().any(|claim| {
            !provisions_anywhere(claim)
                && vol::find_matching_volume(
                    claim,
                    self.volumes.values(),
                    Some((node.name, node.labels)),
                    true,
                )
                .is_none()
        });
        unfit.then_some(BIND_CONFLICT)
    }
}
