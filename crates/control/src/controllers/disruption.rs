//! kube-controller-manager's disruption controller: each PodDisruptionBudget's status — the pods its selector
//! matches (`expectedPods`), how many of them are healthy (`currentHealthy`), how many must stay healthy
//! (`desiredHealthy`), so how many may be disrupted now (`disruptionsAllowed`) and the `DisruptionAllowed`
//! condition — from the shared pod informer. The eviction API (`server`) spends `disruptionsAllowed` and
//! records the pods it evicts in `status.disruptedPods`; this controller forgets them once they are being
//! deleted, or after two minutes (kube's `DeletionTimeout`) if they never are.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use herd_api::resources::{self, ResourceInfo};
use herd_api::selector::LabelSelector;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::ReplicationController;
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, ObjectMeta, OwnerReference, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::{Metadata, Resource};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::{Controller, Informers, Key, Requeue, pod_is_ready};
use crate::error::ApiError;
use crate::objects::{Change, EventType, Objects, core};

/// How long an eviction recorded in `disruptedPods` keeps its pod out of `currentHealthy` if the pod is
/// not deleted (kube's `DeletionTimeout`).
const DELETION_TIMEOUT: Duration = Duration::from_secs(120);

/// The selector of a budget: `None` (a missing selector) matches no pod, an empty one every pod.
fn budget_selector(pdb: &PodDisruptionBudget) -> Option<LabelSelector> {
    LabelSelector::from_k8s(pdb.spec.as_ref()?.selector.as_ref()?).ok()
}

/// The selector of a budget as stored (JSON); one that does not decode selects nothing.
fn stored_selector(pdb: &Value) -> Option<LabelSelector> {
    budget_selector(&PodDisruptionBudget::deserialize(pdb).ok()?)
}

/// The budgets that select `pod` (its namespace's), by name: what the eviction API checks.
pub fn budgets_of(pod: &Value, budgets: &[Value]) -> Vec<Value> {
    budgets
        .iter()
        .filter(|b| stored_selector(b).is_some_and(|s| s.matches_object(pod)))
        .cloned()
        .collect()
}

pub fn pdb_resource() -> &'static ResourceInfo {
    resources::by_path("policy", "v1", "poddisruptionbudgets").expect("poddisruptionbudgets")
}

/// A pod's name (pods stay JSON in the caches: the hot path).
fn pod_name(pod: &Value) -> Option<&str> {
    pod["metadata"]["name"].as_str()
}

fn pod_is_deleted(pod: &Value) -> bool {
    pod["metadata"].get("deletionTimestamp").is_some()
}

pub struct Disruption {
    objects: Objects,
    caches: Arc<Informers>,
    pdbs: &'static ResourceInfo,
    /// Every budget's selector, by namespace and name: which budgets a pod change wakes.
    selectors: Mutex<HashMap<String, BTreeMap<String, Option<LabelSelector>>>>,
}

impl Disruption {
    pub fn new(objects: Objects, caches: Arc<Informers>) -> Self {
        Self {
            objects,
            caches,
            pdbs: pdb_resource(),
            selectors: Mutex::default(),
        }
    }

    fn selectors(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<String, BTreeMap<String, Option<LabelSelector>>>> {
        self.selectors.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The replicas the controllers of `pods` want, each controller counted once (kube's
    /// `getExpectedScale`): a ReplicaSet's Deployment, else the ReplicaSet, a ReplicationController.
    fn expected_scale(&self, ns: &str, pods: &[Arc<Value>]) -> Result<i64, String> {
        let mut scales: BTreeMap<String, i64> = BTreeMap::new();
        for pod in pods {
            let name = pod_name(pod).unwrap_or_default();
            let refs: Vec<OwnerReference> = pod["metadata"]
                .get("ownerReferences")
                .and_then(|r| Vec::deserialize(r).ok())
                .unwrap_or_default();
            let Some(owner) = refs.iter().find(|r| r.controller == Some(true)) else {
                return Err(format!("found no controller ref for pod {name:?}"));
            };
            if scales.contains_key(&owner.uid) {
                continue;
            }
            let (ns, owner_name, uid) = (ns, owner.name.as_str(), owner.uid.as_str());
            let found = match (owner.api_version.as_str(), owner.kind.as_str()) {
                ("apps/v1", "ReplicaSet") => self.scale_of_replica_set(ns, owner_name, uid),
                ("v1", "ReplicationController") => {
                    self.scale_of::<ReplicationController>(ns, owner_name, uid, |rc| {
                        rc.spec.as_ref()?.replicas
                    })
                }
                ("apps/v1", "StatefulSet") => {
                    self.scale_of::<StatefulSet>(ns, owner_name, uid, |s| s.spec.replicas)
                }
                _ => None,
            };
            match found {
                Some((uid, replicas)) => {
                    scales.insert(uid, replicas);
                }
                None => return Err(format!("found no controllers for pod {name:?}")),
            }
        }
        Ok(scales.values().sum())
    }

    /// A ReplicaSet's scale, or its Deployment's when one controls it; keyed by the controller's uid.
    fn scale_of_replica_set(&self, ns: &str, name: &str, uid: &str) -> Option<(String, i64)> {
        let rs = self.caches.store::<ReplicaSet>().get(ns, name)?;
        if rs.metadata.uid.as_deref() != Some(uid) {
            return None;
        }
        let deployment = rs
            .metadata
            .owner_references
            .iter()
            .flatten()
            .find(|r| r.controller == Some(true) && r.kind == "Deployment");
        match deployment {
            Some(d) => self.scale_of::<Deployment>(ns, &d.name, &d.uid, |d| d.spec.replicas),
            None => Some((uid.to_string(), rs.spec.replicas.map_or(1, i64::from))),
        }
    }

    /// The scale of the `K` named `name` if it is still the one with `uid` (a missing count is 1).
    fn scale_of<K>(
        &self,
        ns: &str,
        name: &str,
        uid: &str,
        replicas: fn(&K) -> Option<i32>,
    ) -> Option<(String, i64)>
    where
        K: Resource + Metadata<Ty = ObjectMeta> + DeserializeOwned + Send + Sync + 'static,
    {
        let obj = self.caches.store::<K>().get(ns, name)?;
        (obj.metadata().uid.as_deref() == Some(uid))
            .then(|| (uid.to_string(), replicas(&obj).map_or(1, i64::from)))
    }
}

/// `value` of `total`: a number as is, a percentage rounded up (kube's `GetScaledValueFromIntOrPercent`).
fn scaled(value: &IntOrString, total: i64) -> Result<i64, String> {
    match value {
        IntOrString::Int(i) => Ok(i64::from(*i)),
        IntOrString::String(s) => s
            .strip_suffix('%')
            .and_then(|p| p.parse::<i64>().ok())
            .map(|p| (p * total + 99) / 100)
            .ok_or_else(|| format!("invalid value for IntOrString: invalid value {s:?}")),
    }
}

/// What a budget's status is computed from.
struct Facts<'a> {
    /// The budget, its status as last written included.
    pdb: &'a PodDisruptionBudget,
    /// The pods its selector matches.
    pods: &'a [Arc<Value>],
    /// Their controllers' scale, or why it is unknown; only asked for when the budget needs it.
    scale: Option<Result<i64, String>>,
    now: jiff::Timestamp,
}

/// The budget's new status (kube's `trySync`/`failSafe`), and when a recorded disruption expires.
fn status(f: &Facts<'_>) -> (PodDisruptionBudgetStatus, Option<Duration>) {
    let spec = f.pdb.spec.clone().unwrap_or_default();
    let generation = f.pdb.metadata.generation.unwrap_or(0);
    let old = f.pdb.status.clone().unwrap_or_default();
    // Recorded evictions whose pod still exists, is not being deleted and whose record is young.
    let mut disrupted: BTreeMap<String, Time> = BTreeMap::new();
    let mut expires: Option<Duration> = None;
    for (name, at) in old.disrupted_pods.iter().flatten() {
        let alive = f
            .pods
            .iter()
            .any(|p| pod_name(p) == Some(name) && !pod_is_deleted(p));
        let age = Duration::try_from(f.now.duration_since(at.0)).unwrap_or_default();
        if alive && age < DELETION_TIMEOUT {
            disrupted.insert(name.clone(), at.clone());
            let left = DELETION_TIMEOUT - age;
            expires = Some(expires.map_or(left, |e| e.min(left)));
        }
    }
    let current = f
        .pods
        .iter()
        .filter(|p| {
            !pod_is_deleted(p)
                && !pod_name(p).is_some_and(|n| disrupted.contains_key(n))
                && pod_is_ready(p)
        })
        .count() as i64;
    let counts: Result<(i64, i64), String> = match (&spec.max_unavailable, &spec.min_available) {
        (Some(max), _) => f
            .scale
            .clone()
            .unwrap_or(Ok(0))
            .and_then(|expected| Ok((expected, (expected - scaled(max, expected)?).max(0)))),
        (None, Some(IntOrString::Int(min))) => Ok((f.pods.len() as i64, i64::from(*min))),
        (None, Some(min)) => f
            .scale
            .clone()
            .unwrap_or(Ok(0))
            .and_then(|expected| Ok((expected, scaled(min, expected)?))),
        (None, None) => Ok((f.pods.len() as i64, 0)),
    };
    let (expected, desired, allowed, reason, message) = match counts {
        Ok((expected, desired)) => {
            let allowed = if expected <= 0 {
                0
            } else {
                (current - desired).max(0)
            };
            let reason = if allowed > 0 {
                "SufficientPods"
            } else {
                "InsufficientPods"
            };
            (expected, desired, allowed, reason, String::new())
        }
        // kube's failSafe: nothing may be disrupted while the budget cannot be computed.
        Err(e) => (0, 0, 0, "SyncFailed", e),
    };
    let condition_status = if allowed > 0 { "True" } else { "False" };
    let old_condition = old
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "DisruptionAllowed");
    let last_transition_time = match old_condition {
        Some(c) if c.status == condition_status => c.last_transition_time.clone(),
        _ => Time(f.now),
    };
    let condition = Condition {
        type_: "DisruptionAllowed".into(),
        status: condition_status.into(),
        observed_generation: Some(generation),
        last_transition_time,
        reason: reason.into(),
        message,
    };
    let count = |n: i64| Some(i32::try_from(n).unwrap_or(i32::MAX));
    let out = PodDisruptionBudgetStatus {
        observed_generation: Some(generation),
        disruptions_allowed: count(allowed),
        current_healthy: count(current),
        desired_healthy: count(desired),
        expected_pods: count(expected),
        conditions: Some(vec![condition]),
        disrupted_pods: (!disrupted.is_empty()).then_some(disrupted),
    };
    (out, expires)
}

/// A status as written: a condition's empty message left out.
fn status_json(status: &PodDisruptionBudgetStatus) -> Result<Value, ApiError> {
    let mut out = serde_json::to_value(status)
        .map_err(|e| ApiError::Internal(format!("encoding a PodDisruptionBudget status: {e}")))?;
    for c in out["conditions"].as_array_mut().into_iter().flatten() {
        if c["message"] == "" {
            c.as_object_mut().map(|c| c.remove("message"));
        }
    }
    Ok(out)
}

impl Controller for Disruption {
    const NAME: &'static str = "disruption";

    fn watches(&self) -> &'static [&'static str] {
        &["poddisruptionbudgets.policy", "pods"]
    }

    /// A budget's own change; a pod's wakes the budgets of its namespace that select it (before or after).
    fn keys_for(&self, change: &Change) -> Vec<Key> {
        let ns = &change.namespace;
        if &*change.resource != "pods" {
            let mut selectors = self.selectors();
            let budgets = selectors.entry(ns.clone()).or_default();
            if change.kind == EventType::Deleted {
                budgets.remove(&change.name);
            } else {
                budgets.insert(change.name.clone(), stored_selector(&change.object));
            }
            return vec![(ns.clone(), change.name.clone())];
        }
        let selectors = self.selectors();
        let Some(budgets) = selectors.get(ns) else {
            return Vec::new();
        };
        let selects = |s: &Option<LabelSelector>, pod: &Value| {
            s.as_ref().is_some_and(|s| s.matches_object(pod))
        };
        budgets
            .iter()
            .filter(|(_, s)| {
                selects(s, &change.object)
                    || change.previous.as_deref().is_some_and(|p| selects(s, p))
            })
            .map(|(name, _)| (ns.clone(), name.clone()))
            .collect()
    }

    async fn all_keys(&self) -> Result<Vec<Key>, ApiError> {
        let items = self.caches.store::<PodDisruptionBudget>().state();
        let mut selectors: HashMap<String, BTreeMap<String, Option<LabelSelector>>> =
            HashMap::new();
        let mut keys = Vec::new();
        for pdb in &items {
            let meta = |f: &Option<String>| f.clone().unwrap_or_default();
            let (ns, name) = (meta(&pdb.metadata.namespace), meta(&pdb.metadata.name));
            selectors
                .entry(ns.clone())
                .or_default()
                .insert(name.clone(), budget_selector(pdb));
            keys.push((ns, name));
        }
        *self.selectors() = selectors;
        Ok(keys)
    }

    async fn reconcile(&self, (ns, name): &Key) -> Result<Requeue, ApiError> {
        let Some(pdb) = self.caches.store::<PodDisruptionBudget>().get(ns, name) else {
            return Ok(None);
        };
        if pdb.metadata.deletion_timestamp.is_some() {
            return Ok(None);
        }
        let pods: Vec<Arc<Value>> = match budget_selector(&pdb) {
            Some(selector) => self
                .caches
                .list(core("pods"), Some(ns))
                .into_iter()
                .filter(|p| selector.matches_object(p))
                .collect(),
            None => Vec::new(),
        };
        let spec = pdb.spec.clone().unwrap_or_default();
        let needs_scale = spec.max_unavailable.is_some()
            || matches!(spec.min_available, Some(IntOrString::String(_)));
        let scale = needs_scale.then(|| self.expected_scale(ns, &pods));
        let now = jiff::Timestamp::now();
        let (new, expires) = status(&Facts {
            pdb: &pdb,
            pods: &pods,
            scale,
            now,
        });
        let old = pdb.status.clone().unwrap_or_default();
        if new != old {
            let new = status_json(&new)?;
            self.objects
                .edit(self.pdbs, ns, name, |o| {
                    // Only the status this reconcile computed from: an eviction in between wins.
                    let current = o
                        .get("status")
                        .and_then(|s| PodDisruptionBudgetStatus::deserialize(s).ok())
                        .unwrap_or_default();
                    if current != old {
                        return false;
                    }
                    o["status"] = new;
                    true
                })
                .await?;
        }
        Ok(expires)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn pod(name: &str, ready: bool) -> Arc<Value> {
        Arc::new(json!({"metadata": {"name": name},
            "status": {"conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}}))
    }

    fn computed(
        spec: Value,
        pods: &[Arc<Value>],
        scale: Option<Result<i64, String>>,
        old: Value,
    ) -> Value {
        let pdb = serde_json::from_value(
            json!({"metadata": {"name": "b", "generation": 2}, "spec": spec, "status": old}),
        )
        .unwrap();
        let now = "2030-01-01T00:00:00Z".parse().unwrap();
        let (new, _) = status(&Facts {
            pdb: &pdb,
            pods,
            scale,
            now,
        });
        status_json(&new).unwrap()
    }

    #[test]
    fn min_available_counts_the_matching_pods() {
        let pods = [pod("a", true), pod("b", true), pod("c", false)];
        let s = computed(json!({"minAvailable": 2}), &pods, None, json!({}));
        assert_eq!(
            (
                &s["expectedPods"],
                &s["currentHealthy"],
                &s["desiredHealthy"],
                &s["disruptionsAllowed"]
            ),
            (&json!(3), &json!(2), &json!(2), &json!(0))
        );
        assert_eq!(s["conditions"][0]["reason"], "InsufficientPods");
        assert_eq!(s["observedGeneration"], 2);
    }

    #[test]
    fn max_unavailable_and_percentages_scale_with_the_controllers() {
        let pods = [pod("a", true), pod("b", true)];
        let s = computed(json!({"maxUnavailable": 1}), &pods, Some(Ok(2)), json!({}));
        assert_eq!(
            (&s["desiredHealthy"], &s["disruptionsAllowed"]),
            (&json!(1), &json!(1))
        );
        assert_eq!(s["conditions"][0]["status"], "True");
        // 50% of 3 rounds up to 2.
        let s = computed(
            json!({"minAvailable": "50%"}),
            &pods,
            Some(Ok(3)),
            json!({}),
        );
        assert_eq!(
            (&s["desiredHealthy"], &s["disruptionsAllowed"]),
            (&json!(2), &json!(0))
        );
        let s = computed(
            json!({"maxUnavailable": 1}),
            &pods,
            Some(Err("found no controller ref for pod \"a\"".into())),
            json!({}),
        );
        assert_eq!(s["disruptionsAllowed"], 0);
        assert_eq!(s["conditions"][0]["reason"], "SyncFailed");
    }

    #[test]
    fn a_recorded_eviction_keeps_its_pod_out_of_the_healthy_count_until_it_expires() {
        let pods = [pod("a", true), pod("b", true)];
        let young =
            json!({"disruptedPods": {"a": "2029-12-31T23:59:30Z", "gone": "2029-12-31T23:59:30Z"}});
        let s = computed(json!({"maxUnavailable": 1}), &pods, Some(Ok(2)), young);
        assert_eq!(s["currentHealthy"], 1);
        assert_eq!(s["disruptedPods"], json!({"a": "2029-12-31T23:59:30Z"}));
        let old = json!({"disruptedPods": {"a": "2029-12-31T23:00:00Z"}});
        let s = computed(json!({"maxUnavailable": 1}), &pods, Some(Ok(2)), old);
        assert_eq!(s["currentHealthy"], 2);
        assert!(s.get("disruptedPods").is_none());
    }
}
