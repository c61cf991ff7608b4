//! ReplicaSet and ReplicationController: keeps `replicas` active pods matching the template alive, adopting
//! orphan pods the selector matches and releasing owned pods it no longer matches. One reconcile serves both
//! kinds, as kube-controller-manager runs its ReplicaSet controller for ReplicationControllers through an
//! adapter; what differs between them is a [`ReplicaKind`] (the resource, the owner kind, the event source
//! and the selector: a LabelSelector for a ReplicaSet, an equality map for a ReplicationController).

use std::borrow::Borrow;
use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex};

use herd_api::LabelSelector;
use herd_api::resources::{self, ResourceInfo};
use serde_json::{Value, json};

use super::batch::{self, BURST_REPLICAS};
use super::{
    Controller, Informers, Key, Requeue, controller_owner, is_owned_by, key_of, pod_from_template,
    pod_is_active, pod_is_ready,
};
use crate::error::ApiError;
use crate::events::{EventQueue, Recorder};
use crate::objects::Objects;
use crate::objects::{Change, EventType};

/// What differs between the kinds that keep a number of identical pods running.
pub trait ReplicaKind: Send + Sync + 'static {
    /// The controller's name (its loop and logs).
    const NAME: &'static str;
    /// The owner kind written in the pods' ownerReferences.
    const KIND: &'static str;
    /// `source.component` of its events, as kube-controller-manager names it.
    const COMPONENT: &'static str;
    /// The store keys of the owner resource and of pods.
    const WATCHES: &'static [&'static str];
    /// (group, version, plural) of the owner resource.
    const PATH: (&'static str, &'static str, &'static str);
    /// The owner's pod selector; `None` when missing, invalid or empty (such a selector adopts nothing).
    fn selector(owner: &Value) -> Option<LabelSelector>;
}

/// apps/v1 ReplicaSet: a LabelSelector.
pub struct ReplicaSetKind;

impl ReplicaKind for ReplicaSetKind {
    const NAME: &'static str = "replicaset";
    const KIND: &'static str = "ReplicaSet";
    const COMPONENT: &'static str = "replicaset-controller";
    const WATCHES: &'static [&'static str] = &["replicasets.apps", "pods"];
    const PATH: (&'static str, &'static str, &'static str) = ("apps", "v1", "replicasets");
    fn selector(owner: &Value) -> Option<LabelSelector> {
        selector_of(owner)
    }
}

/// v1 ReplicationController: an equality selector (a plain map of labels).
pub struct ReplicationControllerKind;

impl ReplicaKind for ReplicationControllerKind {
    const NAME: &'static str = "replicationcontroller";
    const KIND: &'static str = "ReplicationController";
    const COMPONENT: &'static str = "replication-controller";
    const WATCHES: &'static [&'static str] = &["replicationcontrollers", "pods"];
    const PATH: (&'static str, &'static str, &'static str) = ("", "v1", "replicationcontrollers");
    fn selector(owner: &Value) -> Option<LabelSelector> {
        equality_selector_of(owner)
    }
}

pub struct ReplicaManager<K: ReplicaKind> {
    objects: Objects,
    caches: Arc<Informers>,
    /// SuccessfulCreate/SuccessfulDelete, written in the background in batches.
    events: EventQueue,
    rs: &'static ResourceInfo,
    pod_res: &'static ResourceInfo,
    selectors: SelectorCache,
    kind: PhantomData<K>,
}

pub type ReplicaSets = ReplicaManager<ReplicaSetKind>;
pub type ReplicationControllers = ReplicaManager<ReplicationControllerKind>;

impl<K: ReplicaKind> ReplicaManager<K> {
    pub fn new(objects: Objects, caches: Arc<Informers>) -> Self {
        let (group, version, plural) = K::PATH;
        Self {
            events: EventQueue::spawn(Recorder::new(objects.clone(), K::COMPONENT)),
            objects,
            caches,
            rs: resources::by_path(group, version, plural).expect("a served replica kind"),
            pod_res: resources::by_path("", "v1", "pods").expect("pods"),
            selectors: SelectorCache::new(K::selector),
            kind: PhantomData,
        }
    }
}

/// Deletion order when scaling down: unscheduled, then pending, then not ready, then ready; newest first.
fn deletion_rank(pod: &Value) -> (u8, std::cmp::Reverse<String>) {
    let rank = if pod
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        0
    } else if pod.pointer("/status/phase") == Some(&json!("Pending")) {
        1
    } else if !pod_is_ready(pod) {
        2
    } else {
        3
    };
    let created = pod
        .pointer("/metadata/creationTimestamp")
        .and_then(Value::as_str)
        .unwrap_or_default();
    (rank, std::cmp::Reverse(created.to_string()))
}

impl<K: ReplicaKind> Controller for ReplicaManager<K> {
    const NAME: &'static str = K::NAME;

    fn watches(&self) -> &'static [&'static str] {
        K::WATCHES
    }

    fn keys_for(&self, change: &Change) -> Vec<Key> {
        if &*change.resource == "pods" {
            return self.selectors.owners_to_wake(change, K::KIND);
        }
        self.selectors.observe(change);
        vec![key_of(change)]
    }

    async fn all_keys(&self) -> Result<Vec<Key>, ApiError> {
        let items = self.caches.list(self.rs, None);
        self.selectors.reset(&items);
        Ok(items.iter().filter_map(|o| object_key(o)).collect())
    }

    async fn reconcile(&self, (ns, name): &Key) -> Result<Requeue, ApiError> {
        let Some(rs) = self.caches.get(self.rs, ns, name) else {
            return Ok(None);
        };
        if rs.pointer("/metadata/deletionTimestamp").is_some() {
            return Ok(None);
        }
        let uid = rs
            .pointer("/metadata/uid")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let candidates = self.caches.claimable(ns, uid);
        let owned = claim_by(
            &self.objects,
            self.pod_res,
            &rs,
            K::KIND,
            K::selector(&rs),
            candidates,
        )
        .await?;
        let mut active: Vec<Arc<Value>> = owned.into_iter().filter(|p| pod_is_active(p)).collect();
        let want = rs
            .pointer("/spec/replicas")
            .and_then(Value::as_i64)
            .unwrap_or(1)
            .max(0) as usize;
        // kube's manageReplicas: at most a burst of creates or deletes per sync; the rest at once after.
        let mut again = None;
        let mut failed = None;
        if active.len() < want {
            let diff = want - active.len();
            if diff > BURST_REPLICAS {
                again = Some(std::time::Duration::ZERO);
            }
            let template = rs.pointer("/spec/template").cloned().unwrap_or(Value::Null);
            let labels = template
                .pointer("/metadata/labels")
                .cloned()
                .unwrap_or(json!({}));
            let spec = template.get("spec").cloned().unwrap_or(json!({}));
            let pods = (0..diff.min(BURST_REPLICAS))
                .map(|_| pod_from_template(&rs, K::KIND, &template, labels.clone(), spec.clone()))
                .collect();
            let (created, error) =
                batch::create_pods(&self.objects, self.pod_res, &self.events, &rs, pods).await;
            active.extend(created);
            failed = error;
        } else if active.len() > want {
            let diff = active.len() - want;
            if diff > BURST_REPLICAS {
                again = Some(std::time::Duration::ZERO);
            }
            active.sort_by_key(|p| deletion_rank(p));
            let doomed: Vec<Arc<Value>> = active.drain(..diff.min(BURST_REPLICAS)).collect();
            let doomed: Vec<&Value> = doomed.iter().map(|p| &**p).collect();
            if let Err(e) = batch::delete_pods(
                &self.objects,
                self.pod_res,
                &self.events,
                &rs,
                &doomed,
                None,
            )
            .await
            {
                failed = Some(e);
            }
        }
        let min_ready = rs
            .pointer("/spec/minReadySeconds")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        let now = jiff::Timestamp::now();
        let ready = active.iter().filter(|p| pod_is_ready(p)).count() as i64;
        let available = active
            .iter()
            .filter(|p| pod_is_available(p, min_ready, now))
            .count() as i64;
        let status = json!({
            "replicas": active.len(),
            "fullyLabeledReplicas": active.len(),
            "readyReplicas": ready,
            "availableReplicas": available,
            "observedGeneration": rs.pointer("/metadata/generation").cloned().unwrap_or(json!(1)),
        });
        self.objects
            .edit(self.rs, ns, name, |rs| {
                if rs.get("status") == Some(&status) {
                    return false;
                }
                rs["status"] = status;
                true
            })
            .await?;
        // As kube: the status is written, then a failed create or delete makes the sync fail (and retry).
        if let Some(e) = failed {
            return Err(e);
        }
        // A Ready pod that is not yet available becomes so after minReadySeconds: look again then.
        let until = active
            .iter()
            .filter_map(|p| until_available(p, min_ready, now))
            .min();
        Ok(again.or(until))
    }
}

/// A pod is available once it has been Ready for `min_ready` seconds.
pub(super) fn pod_is_available(pod: &Value, min_ready: i64, now: jiff::Timestamp) -> bool {
    if !pod_is_ready(pod) {
        return false;
    }
    if min_ready <= 0 {
        return true;
    }
    ready_since(pod).is_some_and(|t| now.as_second() - t.as_second() >= min_ready)
}

/// When the pod's Ready condition last changed.
fn ready_since(pod: &Value) -> Option<jiff::Timestamp> {
    pod.pointer("/status/conditions")
        .and_then(Value::as_array)
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"))
        .and_then(|c| c["lastTransitionTime"].as_str())
        .and_then(|t| t.parse::<jiff::Timestamp>().ok())
}

/// How long until a Ready pod that is not yet available becomes so; `None` when that is not pending.
pub(super) fn until_available(
    pod: &Value,
    min_ready: i64,
    now: jiff::Timestamp,
) -> Option<std::time::Duration> {
    if min_ready <= 0 || !pod_is_ready(pod) || pod_is_available(pod, min_ready, now) {
        return None;
    }
    let since = ready_since(pod)?;
    let left = (since.as_second() + min_ready - now.as_second()).max(0);
    // Whole seconds are compared, so wake just after the second turns.
    Some(
        std::time::Duration::from_secs(left.unsigned_abs()) + std::time::Duration::from_millis(100),
    )
}

/// The object's `spec.selector`; `None` when missing, invalid or empty (such a selector adopts nothing).
pub(super) fn selector_of(obj: &Value) -> Option<LabelSelector> {
    let raw = obj.pointer("/spec/selector")?.clone();
    let sel: k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector =
        serde_json::from_value(raw).ok()?;
    LabelSelector::from_k8s(&sel).ok().filter(|s| !s.is_empty())
}

/// A ReplicationController's `spec.selector` (a plain map, every pair must match); `None` when missing,
/// invalid or empty.
pub(super) fn equality_selector_of(obj: &Value) -> Option<LabelSelector> {
    let map: BTreeMap<String, String> =
        serde_json::from_value(obj.pointer("/spec/selector")?.clone()).ok()?;
    Some(LabelSelector::from_map(&map)).filter(|s| !s.is_empty())
}

/// A controlling ownerReference to `owner`.
pub(super) fn owner_reference(owner: &Value, kind: &str) -> Value {
    json!({
        "apiVersion": owner.get("apiVersion").cloned().unwrap_or(json!("apps/v1")),
        "kind": kind,
        "name": owner.pointer("/metadata/name").cloned().unwrap_or(Value::Null),
        "uid": owner.pointer("/metadata/uid").cloned().unwrap_or(Value::Null),
        "controller": true,
        "blockOwnerDeletion": true,
    })
}

fn has_controller(obj: &Value) -> bool {
    obj.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .is_some_and(|refs| refs.iter().any(|r| r["controller"] == true))
}

/// Kube's ControllerRefManager: of `candidates`, adopts orphans that match `owner`'s selector, releases owned
/// ones that no longer match, and returns those `owner` controls afterwards.
pub(super) async fn claim<T: Borrow<Value> + From<Value>>(
    objects: &Objects,
    res: &'static ResourceInfo,
    owner: &Value,
    owner_kind: &str,
    candidates: Vec<T>,
) -> Result<Vec<T>, ApiError> {
    claim_by(
        objects,
        res,
        owner,
        owner_kind,
        selector_of(owner),
        candidates,
    )
    .await
}

/// [`claim`] with the owner's selector given.
async fn claim_by<T: Borrow<Value> + From<Value>>(
    objects: &Objects,
    res: &'static ResourceInfo,
    owner: &Value,
    owner_kind: &str,
    selector: Option<LabelSelector>,
    candidates: Vec<T>,
) -> Result<Vec<T>, ApiError> {
    let uid = owner
        .pointer("/metadata/uid")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let matches = |obj: &Value| selector.as_ref().is_some_and(|s| s.matches_object(obj));
    let mut owned = Vec::new();
    for candidate in candidates {
        let obj: &Value = candidate.borrow();
        let Some((ns, name)) = object_key(obj) else {
            continue;
        };
        let deleting = obj.pointer("/metadata/deletionTimestamp").is_some();
        if is_owned_by(obj, &uid) {
            if matches(obj) || deleting {
                owned.push(candidate);
                continue;
            }
            let released = objects
                .edit(res, &ns, &name, |o| {
                    let Some(refs) = o
                        .pointer_mut("/metadata/ownerReferences")
                        .and_then(Value::as_array_mut)
                    else {
                        return false;
                    };
                    let before = refs.len();
                    refs.retain(|r| r["uid"] != uid.as_str());
                    refs.len() != before
                })
                .await;
            match released {
                Ok(_) | Err(ApiError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        } else if !has_controller(obj) && !deleting && matches(obj) {
            let reference = owner_reference(owner, owner_kind);
            let adopted = objects
                .edit(res, &ns, &name, |o| {
                    if has_controller(o) || !matches(o) {
                        return false;
                    }
                    match o
                        .pointer_mut("/metadata/ownerReferences")
                        .and_then(Value::as_array_mut)
                    {
                        Some(refs) => refs.push(reference),
                        None => o["metadata"]["ownerReferences"] = json!([reference]),
                    }
                    true
                })
                .await?;
            if let Some(change) = adopted {
                owned.push(T::from((*change.object).clone()));
            }
        }
    }
    Ok(owned)
}

/// The selectors of every object a controller manages, so a change to an orphan can wake the owners that
/// would adopt it.
pub(super) struct SelectorCache {
    selectors: Mutex<BTreeMap<Key, LabelSelector>>,
    /// How an owner's selector is read.
    selector_of: fn(&Value) -> Option<LabelSelector>,
}

impl Default for SelectorCache {
    /// For owners with a LabelSelector in `spec.selector`.
    fn default() -> Self {
        Self::new(selector_of)
    }
}

impl SelectorCache {
    pub(super) fn new(selector_of: fn(&Value) -> Option<LabelSelector>) -> Self {
        Self {
            selectors: Mutex::default(),
            selector_of,
        }
    }

    /// The owners a change of a dependent wakes: its controller, or, for an orphan, the owners whose selector
    /// would adopt it — but not the owner that just let it go (an orphaning delete): that one is about to
    /// disappear.
    pub(super) fn owners_to_wake(&self, change: &Change, owner_kind: &str) -> Vec<Key> {
        if let Some(owner) = controller_owner(&change.object, owner_kind) {
            return vec![(change.namespace.clone(), owner)];
        }
        if change.kind == EventType::Deleted {
            return Vec::new();
        }
        let released_by = change
            .previous
            .as_ref()
            .and_then(|prev| controller_owner(prev, owner_kind));
        self.matching(&change.namespace, &change.object)
            .into_iter()
            .filter(|(_, n)| Some(n) != released_by.as_ref())
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<Key, LabelSelector>> {
        self.selectors.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn observe(&self, change: &Change) {
        let key = key_of(change);
        let selector = (change.kind != EventType::Deleted)
            .then(|| (self.selector_of)(&change.object))
            .flatten();
        match selector {
            Some(s) => self.lock().insert(key, s),
            None => self.lock().remove(&key),
        };
    }

    pub(super) fn reset(&self, items: &[Arc<Value>]) {
        let fresh: BTreeMap<Key, LabelSelector> = items
            .iter()
            .filter_map(|o| Some((object_key(o)?, (self.selector_of)(o)?)))
            .collect();
        *self.lock() = fresh;
    }

    pub(super) fn matching(&self, ns: &str, obj: &Value) -> Vec<Key> {
        self.lock()
            .iter()
            .filter(|((n, _), s)| n == ns && s.matches_object(obj))
            .map(|(k, _)| k.clone())
            .collect()
    }
}

pub(super) fn object_key(obj: &Value) -> Option<Key> {
    let md = obj.get("metadata")?;
    Some((
        md.get("namespace")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        md.get("name")?.as_str()?.to_string(),
    ))
}

#[cfg(test)]
mod tests {
    use super::super::tests::{plane, pod_count};
    use super::*;

    #[tokio::test]
    async fn a_replication_controller_adopts_by_equality_selector_and_fills_up() {
        let (_dir, objects, pods) = plane().await;
        let controller = ReplicationControllers::new(objects.clone(), pods.clone());
        let pod_res = controller.pod_res;
        let orphan = |name: &str, labels: Value| {
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels},
                "spec": {"containers": [{"name": "c", "image": "img"}]}})
        };
        for (name, labels) in [
            ("match", json!({"app": "web", "extra": "x"})),
            ("other", json!({"app": "db"})),
        ] {
            objects
                .create(pod_res, Some("default"), orphan(name, labels), false)
                .await
                .unwrap();
        }
        // No selector: defaulted from the template's labels.
        let rc = json!({"apiVersion": "v1", "kind": "ReplicationController", "metadata": {"name": "web"},
            "spec": {"replicas": 3,
                "template": {"metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "c", "image": "img"}]}}}});
        let rc = objects
            .create(controller.rs, Some("default"), rc, false)
            .await
            .unwrap();
        pods.sync().await.unwrap();
        let key = ("default".to_string(), "web".to_string());
        assert_eq!(controller.reconcile(&key).await.unwrap(), None);
        let owner_of = async |name: &str| {
            let pod = objects.get(pod_res, Some("default"), name).await.unwrap();
            pod.pointer("/metadata/ownerReferences/0").cloned()
        };
        let adopted = owner_of("match").await.expect("adopted");
        assert_eq!(
            (
                &adopted["kind"],
                &adopted["apiVersion"],
                &adopted["uid"],
                &adopted["controller"]
            ),
            (
                &json!("ReplicationController"),
                &json!("v1"),
                &rc["metadata"]["uid"],
                &json!(true)
            )
        );
        assert_eq!(owner_of("other").await, None);
        assert_eq!(
            pod_count(&objects).await,
            4,
            "two created beside the adopted one"
        );
        let rc = objects
            .get(controller.rs, Some("default"), "web")
            .await
            .unwrap();
        assert_eq!(rc["status"]["replicas"], 3);
        assert_eq!(rc["status"]["fullyLabeledReplicas"], 3);
        assert_eq!(rc["status"]["observedGeneration"], 1);
    }

    #[tokio::test]
    async fn a_sync_creates_and_deletes_at_most_a_burst_and_comes_back_for_the_rest() {
        let (_dir, objects, pods) = plane().await;
        let controller = ReplicaSets::new(objects.clone(), pods.clone());
        let rs = json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "big"},
            "spec": {"replicas": 1000, "selector": {"matchLabels": {"app": "big"}},
                "template": {"metadata": {"labels": {"app": "big"}},
                    "spec": {"containers": [{"name": "c", "image": "img"}]}}}});
        objects
            .create(controller.rs, Some("default"), rs, false)
            .await
            .unwrap();
        let key = ("default".to_string(), "big".to_string());
        // The loop catches the cache up before each reconcile; here a relist does.
        let sync = async || {
            pods.sync().await.unwrap();
            controller.reconcile(&key).await.unwrap()
        };
        assert_eq!(sync().await, Some(std::time::Duration::ZERO));
        assert_eq!(pod_count(&objects).await, BURST_REPLICAS);
        assert_eq!(sync().await, None, "the other 500 are the last burst");
        assert_eq!(pod_count(&objects).await, 1000);
        assert_eq!(sync().await, None, "nothing left to do");
        assert_eq!(pod_count(&objects).await, 1000);
        objects
            .edit(controller.rs, "default", "big", |rs| {
                rs["spec"]["replicas"] = json!(0);
                true
            })
            .await
            .unwrap();
        assert_eq!(sync().await, Some(std::time::Duration::ZERO));
        assert_eq!(pod_count(&objects).await, 500);
        assert_eq!(sync().await, None);
        assert_eq!(pod_count(&objects).await, 0);
        let rs = objects
            .get(controller.rs, Some("default"), "big")
            .await
            .unwrap();
        assert_eq!(rs["status"]["replicas"], 0);
    }
}
