//! ReplicaSet and ReplicationController: keeps `replicas` active pods matching the template alive, adopting
//! orphan pods the selector matches and releasing owned pods it no longer matches. One reconcile serves both
//! kinds, as kube-controller-manager runs its ReplicaSet controller for ReplicationControllers through an
//! adapter; what differs between them is a [`ReplicaKind`] (the resource, the owner kind, the event source
//! and the selector: a LabelSelector for a ReplicaSet, an equality map for a ReplicationController).

use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex};

use herd_api::LabelSelector;
use herd_api::resources::{self, ResourceInfo};
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::ReplicationController;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{self as meta, ObjectMeta};
use k8s_openapi::{Metadata, Resource};
use serde::Deserialize;
use serde::de::DeserializeOwned;
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

/// A k8s-openapi type a controller reads its own objects as.
pub trait OwnerObject:
    Resource + Metadata<Ty = ObjectMeta> + DeserializeOwned + Send + Sync + 'static
{
}

impl<K> OwnerObject for K where
    K: Resource + Metadata<Ty = ObjectMeta> + DeserializeOwned + Send + Sync + 'static
{
}

/// What differs between the kinds that keep a number of identical pods running.
pub trait ReplicaKind: Send + Sync + 'static {
    /// The owner, read typed from the informer caches; its kind is the one written in the pods'
    /// ownerReferences, its group, version and plural name its resource.
    type Object: OwnerObject;
    /// The controller's name (its loop and logs).
    const NAME: &'static str;
    /// `source.component` of its events, as kube-controller-manager names it.
    const COMPONENT: &'static str;
    /// The store keys of the owner resource and of pods.
    const WATCHES: &'static [&'static str];
    /// The parts of the owner's spec the reconcile reads, with kube's defaults.
    fn spec(owner: &Self::Object) -> ReplicaSpec;
}

/// A ReplicaSet's or ReplicationController's `spec.replicas` (default 1), `spec.minReadySeconds` and pod
/// selector (`None` when invalid or empty: such a selector adopts nothing).
pub struct ReplicaSpec {
    pub replicas: usize,
    pub min_ready: i64,
    pub selector: Option<LabelSelector>,
}

/// apps/v1 ReplicaSet: a LabelSelector.
pub struct ReplicaSetKind;

impl ReplicaKind for ReplicaSetKind {
    type Object = ReplicaSet;
    const NAME: &'static str = "replicaset";
    const COMPONENT: &'static str = "replicaset-controller";
    const WATCHES: &'static [&'static str] = &["replicasets.apps", "pods"];
    fn spec(rs: &ReplicaSet) -> ReplicaSpec {
        ReplicaSpec {
            replicas: replicas(rs.spec.replicas),
            min_ready: rs.spec.min_ready_seconds.unwrap_or(0).into(),
            selector: label_selector(&rs.spec.selector),
        }
    }
}

/// v1 ReplicationController: an equality selector (a plain map of labels); its spec is optional.
pub struct ReplicationControllerKind;

impl ReplicaKind for ReplicationControllerKind {
    type Object = ReplicationController;
    const NAME: &'static str = "replicationcontroller";
    const COMPONENT: &'static str = "replication-controller";
    const WATCHES: &'static [&'static str] = &["replicationcontrollers", "pods"];
    fn spec(rc: &ReplicationController) -> ReplicaSpec {
        let spec = rc.spec.as_ref();
        ReplicaSpec {
            replicas: replicas(spec.and_then(|s| s.replicas)),
            min_ready: spec.and_then(|s| s.min_ready_seconds).unwrap_or(0).into(),
            selector: spec
                .and_then(|s| s.selector.as_ref())
                .map(LabelSelector::from_map)
                .filter(|s| !s.is_empty()),
        }
    }
}

/// `spec.replicas` with kube's default of 1; a negative count keeps none.
fn replicas(spec: Option<i32>) -> usize {
    usize::try_from(spec.unwrap_or(1)).unwrap_or(0)
}

/// A `metav1.LabelSelector` as a matcher; `None` when invalid or empty (such a selector adopts nothing).
pub(super) fn label_selector(sel: &meta::LabelSelector) -> Option<LabelSelector> {
    LabelSelector::from_k8s(sel).ok().filter(|s| !s.is_empty())
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
        Self {
            events: EventQueue::spawn(Recorder::new(objects.clone(), K::COMPONENT)),
            objects,
            caches,
            rs: resource_of::<K::Object>(),
            pod_res: resources::by_path("", "v1", "pods").expect("pods"),
            selectors: SelectorCache::default(),
            kind: PhantomData,
        }
    }
}

/// The stored resource of `K`.
pub(super) fn resource_of<K: Resource>() -> &'static ResourceInfo {
    resources::by_path(K::GROUP, K::VERSION, K::URL_PATH_SEGMENT).expect("a served owner kind")
}

/// An owner read from the informer caches typed, to reason over, beside the JSON it was decoded from, to
/// copy into writes (its pod template, the subject of events): both of one revision. `None` when it is not
/// cached or does not decode.
pub(super) fn read_owner<K: OwnerObject>(
    caches: &Informers,
    res: &ResourceInfo,
    ns: &str,
    name: &str,
) -> Option<(Arc<K>, Arc<Value>)> {
    // The two reads take the caches' lock apart: an object changed between them is read again. (After
    // repeated changes it is left alone: the change that moved it wakes this key again.)
    for _ in 0..3 {
        let json = caches.get(res, ns, name)?;
        let typed = caches.store::<K>().get(ns, name)?;
        if typed.metadata().resource_version.as_deref()
            == json["metadata"]["resourceVersion"].as_str()
        {
            return Some((typed, json));
        }
    }
    None
}

/// The owner a change brings, decoded; `None` for a deletion (or what does not decode).
pub(super) fn changed_owner<K: OwnerObject>(change: &Change) -> Option<K> {
    if change.kind == EventType::Deleted {
        return None;
    }
    K::deserialize(&*change.object).ok()
}

/// An object's (namespace, name) from its metadata.
pub(super) fn key_of_meta(meta: &ObjectMeta) -> Option<Key> {
    Some((
        meta.namespace.clone().unwrap_or_default(),
        meta.name.clone()?,
    ))
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
            return self.selectors.owners_to_wake(change, K::Object::KIND);
        }
        let selector = changed_owner::<K::Object>(change).and_then(|o| K::spec(&o).selector);
        self.selectors.observe(key_of(change), selector);
        vec![key_of(change)]
    }

    async fn all_keys(&self) -> Result<Vec<Key>, ApiError> {
        let items = self.caches.store::<K::Object>().state();
        self.selectors.reset(
            items
                .iter()
                .filter_map(|o| Some((key_of_meta(o.metadata())?, K::spec(o).selector?))),
        );
        Ok(items
            .iter()
            .filter_map(|o| key_of_meta(o.metadata()))
            .collect())
    }

    async fn reconcile(&self, (ns, name): &Key) -> Result<Requeue, ApiError> {
        let Some((rs, rs_json)) = read_owner::<K::Object>(&self.caches, self.rs, ns, name) else {
            return Ok(None);
        };
        let meta = rs.metadata();
        if meta.deletion_timestamp.is_some() {
            return Ok(None);
        }
        let spec = K::spec(&rs);
        let claimant = Claimant::of(&*rs);
        let candidates = self.caches.claimable(ns, &claimant.uid);
        let owned = claim(
            &self.objects,
            self.pod_res,
            &claimant,
            spec.selector.as_ref(),
            candidates,
        )
        .await?;
        let mut active: Vec<Arc<Value>> = owned.into_iter().filter(|p| pod_is_active(p)).collect();
        let want = spec.replicas;
        // kube's manageReplicas: at most a burst of creates or deletes per sync; the rest at once after.
        let mut again = None;
        let mut failed = None;
        if active.len() < want {
            let diff = want - active.len();
            if diff > BURST_REPLICAS {
                again = Some(std::time::Duration::ZERO);
            }
            // The template is copied into the pods as stored.
            let template = &rs_json["spec"]["template"];
            let labels = match &template["metadata"]["labels"] {
                Value::Null => json!({}),
                labels => labels.clone(),
            };
            let pod_spec = match &template["spec"] {
                Value::Null => json!({}),
                pod_spec => pod_spec.clone(),
            };
            let pods = (0..diff.min(BURST_REPLICAS))
                .map(|_| {
                    pod_from_template(
                        &rs_json,
                        K::Object::KIND,
                        template,
                        labels.clone(),
                        pod_spec.clone(),
                    )
                })
                .collect();
            let (created, error) =
                batch::create_pods(&self.objects, self.pod_res, &self.events, &rs_json, pods).await;
            tracing::debug!(created = created.len(), "created pods");
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
                &rs_json,
                &doomed,
                None,
            )
            .await
            {
                failed = Some(e);
            }
        }
        let min_ready = spec.min_ready;
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
            "observedGeneration": meta.generation.unwrap_or(1),
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

/// A controlling ownerReference to `owner` (JSON), as `kind`.
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

/// A controlling ownerReference to a typed `owner`.
pub(super) fn controller_reference<K: OwnerObject>(owner: &K) -> Value {
    let meta = owner.metadata();
    json!({
        "apiVersion": K::API_VERSION,
        "kind": K::KIND,
        "name": meta.name,
        "uid": meta.uid,
        "controller": true,
        "blockOwnerDeletion": true,
    })
}

fn has_controller(obj: &Value) -> bool {
    obj.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .is_some_and(|refs| refs.iter().any(|r| r["controller"] == true))
}

/// The owner a [`claim`] is for: its uid and the controlling reference an adoption writes.
pub(super) struct Claimant {
    uid: String,
    reference: Value,
}

impl Claimant {
    pub(super) fn of<K: OwnerObject>(owner: &K) -> Self {
        Self {
            uid: owner.metadata().uid.clone().unwrap_or_default(),
            reference: controller_reference(owner),
        }
    }
}

/// What [`claim`] reads of a candidate: pods as JSON (the hot path), ReplicaSets typed.
pub(super) trait Claimable: Sized {
    fn key(&self) -> Option<Key>;
    fn matches(&self, selector: &LabelSelector) -> bool;
    /// Whether `uid` is its controller.
    fn controlled_by(&self, uid: &str) -> bool;
    fn has_controller(&self) -> bool;
    fn deleting(&self) -> bool;
    /// The candidate as an adoption wrote it.
    fn adopted(written: &Arc<Value>) -> Option<Self>;
}

impl Claimable for Arc<Value> {
    fn key(&self) -> Option<Key> {
        object_key(self)
    }
    fn matches(&self, selector: &LabelSelector) -> bool {
        selector.matches_object(self)
    }
    fn controlled_by(&self, uid: &str) -> bool {
        is_owned_by(self, uid)
    }
    fn has_controller(&self) -> bool {
        has_controller(self)
    }
    fn deleting(&self) -> bool {
        self.pointer("/metadata/deletionTimestamp").is_some()
    }
    fn adopted(written: &Arc<Value>) -> Option<Self> {
        Some(written.clone())
    }
}

impl Claimable for Arc<ReplicaSet> {
    fn key(&self) -> Option<Key> {
        key_of_meta(self.metadata())
    }
    fn matches(&self, selector: &LabelSelector) -> bool {
        match &self.metadata().labels {
            Some(labels) => selector.matches(labels),
            None => selector.matches(&BTreeMap::new()),
        }
    }
    fn controlled_by(&self, uid: &str) -> bool {
        self.metadata()
            .owner_references
            .iter()
            .flatten()
            .any(|r| r.uid == uid && r.controller == Some(true))
    }
    fn has_controller(&self) -> bool {
        self.metadata()
            .owner_references
            .iter()
            .flatten()
            .any(|r| r.controller == Some(true))
    }
    fn deleting(&self) -> bool {
        self.metadata().deletion_timestamp.is_some()
    }
    fn adopted(written: &Arc<Value>) -> Option<Self> {
        ReplicaSet::deserialize(&**written).ok().map(Arc::new)
    }
}

/// Kube's ControllerRefManager: of `candidates`, adopts orphans that match `selector` (none when `None`),
/// releases owned ones that no longer match, and returns those `owner` controls afterwards.
pub(super) async fn claim<T: Claimable>(
    objects: &Objects,
    res: &'static ResourceInfo,
    owner: &Claimant,
    selector: Option<&LabelSelector>,
    candidates: Vec<T>,
) -> Result<Vec<T>, ApiError> {
    let uid = owner.uid.as_str();
    let mut owned = Vec::new();
    for candidate in candidates {
        let Some((ns, name)) = candidate.key() else {
            continue;
        };
        let matches = selector.is_some_and(|s| candidate.matches(s));
        let deleting = candidate.deleting();
        if candidate.controlled_by(uid) {
            if matches || deleting {
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
                    refs.retain(|r| r["uid"] != uid);
                    refs.len() != before
                })
                .await;
            match released {
                Ok(_) | Err(ApiError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        } else if !candidate.has_controller() && !deleting && matches {
            let reference = owner.reference.clone();
            let adopted = objects
                .edit(res, &ns, &name, |o| {
                    if has_controller(o) || !selector.is_some_and(|s| s.matches_object(o)) {
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
            if let Some(adopted) = adopted.and_then(|change| T::adopted(&change.object)) {
                owned.push(adopted);
            }
        }
    }
    Ok(owned)
}

/// The selectors of every object a controller manages, so a change to an orphan can wake the owners that
/// would adopt it.
#[derive(Default)]
pub(super) struct SelectorCache {
    selectors: Mutex<BTreeMap<Key, LabelSelector>>,
}

impl SelectorCache {
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

    /// An owner's selector after a change (`None`: deleted, or one that adopts nothing).
    pub(super) fn observe(&self, key: Key, selector: Option<LabelSelector>) {
        match selector {
            Some(s) => self.lock().insert(key, s),
            None => self.lock().remove(&key),
        };
    }

    /// Every owner's selector, from a resync.
    pub(super) fn reset(&self, selectors: impl IntoIterator<Item = (Key, LabelSelector)>) {
        *self.lock() = selectors.into_iter().collect();
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
