//! The controllers' shared informer caches (kube-controller-manager's shared informers, kube-runtime's
//! reflector `Store`): one in-memory copy of every stored resource, kept current from the store's watch,
//! with the indexes the controllers look things up by — pods by controlling owner, pods without a
//! controller by namespace, pods by node, objects by the uid of any owner, owners waiting in the foreground.
//! A reconcile or a resync reads these instead of listing and decoding from SQLite each time.
//!
//! The caches are listed once, when the first loop starts, and listed again when a watch falls behind
//! (410 Gone or an overflowing fan-out). Every controller loop applies the changes of its own watch stream
//! (of every resource) to the one set of caches; a change is applied once, by whichever stream brings it
//! first. Since every write of any resource advances the store's revision, the set has ONE revision: every
//! change up to it is reflected, none after it. Before a reconcile the loop catches the caches up to the
//! store's revision of that moment, so a reconcile sees at least what a list would have shown, its own
//! earlier writes included (what kube needs expectations for).
//!
//! [`Informers::store`] reads one resource's cache as k8s-openapi objects ([`typed::TypedCache`], kube-runtime's
//! `Store<K>`), decoding each object once per revision and only when it is read typed.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use herd_api::ResourceInfo;
use herd_api::resources::RESOURCES;
use serde_json::Value;
use tokio::sync::OnceCell;

use super::Key;
use crate::error::ApiError;
use crate::objects::{Change, EventType, FOREGROUND_FINALIZER, Objects};

mod typed;

/// One object of any cached resource: its resource's place in [`RESOURCES`] and its (namespace, name).
type ObjectRef = (usize, Key);

/// The place of pods in [`RESOURCES`].
fn pods_index() -> usize {
    RESOURCES
        .iter()
        .position(|r| r.group.is_empty() && r.plural == "pods")
        .expect("pods in the table")
}

pub struct Informers {
    objects: Objects,
    /// Every resource's place in [`RESOURCES`], by store key.
    index: HashMap<String, usize>,
    /// The revision of the first list, once it is loaded.
    loaded: OnceCell<i64>,
    state: Mutex<State>,
    /// The caches' revision as it moves, for readers waiting for them to catch up ([`Informers::caught_up`]).
    revisions: tokio::sync::watch::Sender<i64>,
}

/// One resource's objects.
#[derive(Default)]
struct Cache {
    /// The revision this resource was last listed at: its changes up to it are in the list.
    floor: i64,
    /// The revision of the last change applied since (0: none).
    changed: i64,
    objects: BTreeMap<Key, Arc<Value>>,
    /// Objects read typed, decoded: dropped when their object changes.
    typed: HashMap<Key, typed::Decoded>,
}

#[derive(Default)]
struct State {
    /// The last revision applied: every change up to it is reflected, none after it.
    rev: i64,
    /// The place of pods in [`RESOURCES`].
    pods: usize,
    caches: HashMap<usize, Cache>,
    /// Pods by the uid of their controlling owner.
    by_controller: HashMap<String, BTreeSet<Key>>,
    /// Pods without a controlling owner (ones a controller may adopt), by namespace.
    orphans: HashMap<String, BTreeSet<String>>,
    /// Pods by the node they are bound to.
    on_node: HashMap<String, BTreeSet<Key>>,
    /// Objects by the uid of each of their owners (the garbage collector's dependency graph).
    by_owner: HashMap<String, BTreeSet<ObjectRef>>,
    /// The uid of every cached object.
    uids: HashSet<String>,
    /// Objects being deleted in the foreground: waiting for their dependents to go.
    foreground: BTreeSet<ObjectRef>,
}

fn str_at<'a>(obj: &'a Value, pointer: &str) -> Option<&'a str> {
    obj.pointer(pointer).and_then(Value::as_str)
}

fn owner_refs(obj: &Value) -> impl Iterator<Item = &Value> {
    obj.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

fn controller_uid(obj: &Value) -> Option<&str> {
    owner_refs(obj)
        .find(|r| r["controller"] == true)
        .and_then(|r| r["uid"].as_str())
}

fn waits_in_foreground(obj: &Value) -> bool {
    obj.pointer("/metadata/deletionTimestamp").is_some()
        && obj
            .pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .is_some_and(|f| f.iter().any(|f| f == FOREGROUND_FINALIZER))
}

fn unindex<K: Ord>(index: &mut HashMap<String, BTreeSet<K>>, at: &str, item: &K) {
    if let Some(items) = index.get_mut(at) {
        items.remove(item);
        if items.is_empty() {
            index.remove(at);
        }
    }
}

impl State {
    fn remove(&mut self, res: usize, key: &Key) {
        let Some(old) = self.caches.get_mut(&res).and_then(|c| {
            c.typed.remove(key);
            c.objects.remove(key)
        }) else {
            return;
        };
        let item = (res, key.clone());
        for uid in owner_refs(&old).filter_map(|r| r["uid"].as_str()) {
            unindex(&mut self.by_owner, uid, &item);
        }
        if let Some(uid) = str_at(&old, "/metadata/uid") {
            self.uids.remove(uid);
        }
        self.foreground.remove(&item);
        if res != self.pods {
            return;
        }
        match controller_uid(&old) {
            Some(uid) => unindex(&mut self.by_controller, uid, key),
            None => unindex(&mut self.orphans, &key.0, &key.1),
        }
        if let Some(node) = str_at(&old, "/spec/nodeName") {
            unindex(&mut self.on_node, node, key);
        }
    }

    fn put(&mut self, res: usize, key: Key, obj: Arc<Value>) {
        self.remove(res, &key);
        let item = (res, key.clone());
        for uid in owner_refs(&obj).filter_map(|r| r["uid"].as_str()) {
            self.by_owner
                .entry(uid.to_string())
                .or_default()
                .insert(item.clone());
        }
        if let Some(uid) = str_at(&obj, "/metadata/uid") {
            self.uids.insert(uid.to_string());
        }
        if waits_in_foreground(&obj) {
            self.foreground.insert(item);
        }
        if res == self.pods {
            match controller_uid(&obj) {
                Some(uid) => {
                    self.by_controller
                        .entry(uid.to_string())
                        .or_default()
                        .insert(key.clone());
                }
                None => {
                    self.orphans
                        .entry(key.0.clone())
                        .or_default()
                        .insert(key.1.clone());
                }
            }
            if let Some(node) = str_at(&obj, "/spec/nodeName").filter(|n| !n.is_empty()) {
                self.on_node
                    .entry(node.to_string())
                    .or_default()
                    .insert(key.clone());
            }
        }
        self.caches.entry(res).or_default().objects.insert(key, obj);
    }

    fn get(&self, res: usize, key: &Key) -> Option<Arc<Value>> {
        self.caches.get(&res)?.objects.get(key).cloned()
    }

    fn pods(&self, keys: Option<&BTreeSet<Key>>) -> Vec<Arc<Value>> {
        keys.into_iter()
            .flatten()
            .filter_map(|k| self.get(self.pods, k))
            .collect()
    }
}

/// An object's (namespace, name) as the store keys it: the namespace empty for cluster-scoped objects.
fn key_of(obj: &Value) -> Option<Key> {
    Some((
        str_at(obj, "/metadata/namespace")
            .unwrap_or_default()
            .to_string(),
        str_at(obj, "/metadata/name")?.to_string(),
    ))
}

impl Informers {
    /// Caches for every stored resource, over `objects`; nothing is listed until [`Informers::ensure_loaded`].
    pub fn new(objects: Objects) -> Self {
        Self {
            objects,
            index: RESOURCES
                .iter()
                .enumerate()
                .map(|(i, r)| (r.key(), i))
                .collect(),
            loaded: OnceCell::new(),
            state: Mutex::new(State {
                pods: pods_index(),
                ..State::default()
            }),
            revisions: tokio::sync::watch::channel(0).0,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The resource layer the caches list from.
    pub fn objects(&self) -> &Objects {
        &self.objects
    }

    /// Lists every resource the first time it is called; returns the revision every stream feeding the
    /// caches starts watching from (the oldest of the lists, so no change falls between them).
    ///
    /// # Errors
    /// When the store cannot be listed; a later call tries again.
    pub async fn ensure_loaded(&self) -> Result<i64, ApiError> {
        self.loaded
            .get_or_try_init(|| async {
                self.relist(0).await?;
                Ok(self.revision())
            })
            .await
            .copied()
    }

    /// Lists every resource again for a stream watching from `since` (after a watch fell behind), unless
    /// the caches already reflect every change up to `since` (another stream kept them current).
    ///
    /// # Errors
    /// When the store cannot be listed.
    pub async fn relist(&self, since: i64) -> Result<(), ApiError> {
        if since > 0 && self.revision() >= since {
            return Ok(());
        }
        // Every resource at once (each list is a read transaction of its own): the caches are ready as
        // soon as the slowest list is, not after all of them in turn.
        let lists = futures::future::try_join_all(RESOURCES.iter().enumerate().map(
            |(i, res)| async move {
                let (items, rev) = self.objects.list_all(res, None).await?;
                Ok::<_, ApiError>((i, items, rev))
            },
        ))
        .await?;
        let mut state = self.lock();
        if since > 0 && state.rev >= since {
            return Ok(());
        }
        let oldest = lists.iter().map(|(_, _, rev)| *rev).min().unwrap_or(since);
        let mut fresh = State {
            // A stream watching from `since` brings every change after it; one at or below a resource's
            // own list is skipped by that resource's floor.
            rev: if since > 0 { since } else { oldest },
            pods: state.pods,
            ..State::default()
        };
        for (res, items, rev) in lists {
            fresh.caches.entry(res).or_default().floor = rev;
            for obj in items {
                if let Some(key) = key_of(&obj) {
                    fresh.put(res, key, Arc::new(obj));
                }
            }
        }
        *state = fresh;
        let rev = state.rev;
        drop(state);
        self.revisions.send_replace(rev);
        Ok(())
    }

    /// Lists again when the store has moved past the caches: what the loop's catch-up does before a
    /// reconcile, for tests that call a controller's reconcile without a loop.
    #[cfg(test)]
    pub async fn sync(&self) -> Result<(), ApiError> {
        self.relist(self.objects.revision()).await
    }

    /// The last revision the caches reflect.
    pub fn revision(&self) -> i64 {
        self.lock().rev
    }

    /// Waits until the caches reflect revision `rev` (woken by the change that gets them there, no
    /// polling), at most `patience`; whether they do.
    pub async fn caught_up(&self, rev: i64, patience: std::time::Duration) -> bool {
        let mut revisions = self.revisions.subscribe();
        tokio::time::timeout(patience, revisions.wait_for(|r| *r >= rev))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Applies one committed change of any resource (every change moves the revision). A change at or
    /// below the revision was applied already, one at or below its resource's last list is in that list;
    /// both are skipped.
    pub fn apply(&self, change: &Change) {
        let mut state = self.lock();
        if change.rev <= state.rev {
            return;
        }
        state.rev = change.rev;
        self.revisions.send_replace(change.rev);
        let Some(&res) = self.index.get(&*change.resource) else {
            return;
        };
        if state
            .caches
            .get(&res)
            .is_some_and(|c| change.rev <= c.floor)
        {
            return;
        }
        let key = (change.namespace.clone(), change.name.clone());
        match change.kind {
            EventType::Deleted => state.remove(res, &key),
            EventType::Added | EventType::Modified => state.put(res, key, change.object.clone()),
        }
        state.caches.entry(res).or_default().changed = change.rev;
    }

    /// The revision of the last change of `res` these caches reflect (the revision of its last list when
    /// nothing changed since): what a reader keeping something derived from the resource compares.
    pub fn last_change(&self, res: &ResourceInfo) -> i64 {
        let state = self.lock();
        self.index
            .get(&res.key())
            .and_then(|i| state.caches.get(i))
            .map_or(0, |c| c.floor.max(c.changed))
    }

    /// One object, as `Store::get` (`ns` is ignored for cluster-scoped resources).
    pub fn get(&self, res: &ResourceInfo, ns: &str, name: &str) -> Option<Arc<Value>> {
        let ns = if res.namespaced { ns } else { "" };
        let i = *self.index.get(&res.key())?;
        self.lock().get(i, &(ns.to_string(), name.to_string()))
    }

    /// Every object of a resource, in one namespace or (`None`) all, in (namespace, name) order.
    pub fn list(&self, res: &ResourceInfo, ns: Option<&str>) -> Vec<Arc<Value>> {
        let state = self.lock();
        let Some(cache) = self.index.get(&res.key()).and_then(|i| state.caches.get(i)) else {
            return Vec::new();
        };
        match ns.filter(|_| res.namespaced) {
            None => cache.objects.values().cloned().collect(),
            Some(ns) => cache
                .objects
                .range((ns.to_string(), String::new())..)
                .take_while(|((n, _), _)| n == ns)
                .map(|(_, o)| o.clone())
                .collect(),
        }
    }

    /// The (namespace, name) of every object of a resource: a resync's keys.
    pub fn keys(&self, res: &ResourceInfo) -> Vec<Key> {
        let state = self.lock();
        self.index
            .get(&res.key())
            .and_then(|i| state.caches.get(i))
            .map(|c| c.objects.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// The pods whose controlling owner has `uid`.
    pub fn controlled_by(&self, uid: &str) -> Vec<Arc<Value>> {
        let state = self.lock();
        state.pods(state.by_controller.get(uid))
    }

    /// What a controller with `uid` in namespace `ns` may claim: its own pods and the namespace's pods
    /// without a controller.
    pub fn claimable(&self, ns: &str, uid: &str) -> Vec<Arc<Value>> {
        let state = self.lock();
        let mut pods = state.pods(state.by_controller.get(uid));
        if let Some(names) = state.orphans.get(ns) {
            pods.extend(
                names
                    .iter()
                    .filter_map(|n| state.get(state.pods, &(ns.to_string(), n.clone()))),
            );
        }
        pods
    }

    /// Whether a pod of namespace `namespace` bound to node `node` satisfies `check`: only that namespace's
    /// pods of the node are looked at, none copied, and the first match ends the search (the Node
    /// authorizer asks this for every TokenRequest, Secret and ConfigMap read of a node with 10,000 pods).
    pub fn any_on_node(&self, node: &str, namespace: &str, check: impl Fn(&Value) -> bool) -> bool {
        let state = self.lock();
        let Some(keys) = state.on_node.get(node) else {
            return false;
        };
        keys.range((namespace.to_owned(), String::new())..)
            .take_while(|(ns, _)| ns == namespace)
            .filter_map(|key| state.get(state.pods, key))
            .any(|pod| check(&pod))
    }

    /// The pods bound to node `node`.
    pub fn on_node(&self, node: &str) -> Vec<Arc<Value>> {
        let state = self.lock();
        state.pods(state.on_node.get(node))
    }

    /// The objects with an owner reference to `uid`, with their resources.
    pub fn dependents_of(&self, uid: &str) -> Vec<(&'static ResourceInfo, Arc<Value>)> {
        let state = self.lock();
        resolve(&state, state.by_owner.get(uid).into_iter().flatten())
    }

    /// Objects every one of whose owners is gone (the garbage collector's to delete), with their
    /// resources.
    pub fn orphaned_dependents(&self) -> Vec<(&'static ResourceInfo, Arc<Value>)> {
        let state = self.lock();
        let candidates: BTreeSet<&ObjectRef> = state
            .by_owner
            .iter()
            .filter(|(uid, _)| !state.uids.contains(*uid))
            .flat_map(|(_, items)| items)
            .collect();
        let gone = candidates.into_iter().filter(|(res, key)| {
            state.get(*res, key).is_some_and(|obj| {
                owner_refs(&obj)
                    .filter_map(|r| r["uid"].as_str())
                    .all(|u| !state.uids.contains(u))
            })
        });
        resolve(&state, gone)
    }

    /// Objects being deleted in the foreground (deletionTimestamp and the foregroundDeletion finalizer).
    pub fn waiting_in_foreground(&self) -> Vec<(&'static ResourceInfo, Arc<Value>)> {
        let state = self.lock();
        resolve(&state, state.foreground.iter())
    }
}

fn resolve<'a>(
    state: &State,
    items: impl Iterator<Item = &'a ObjectRef>,
) -> Vec<(&'static ResourceInfo, Arc<Value>)> {
    items
        .filter_map(|(res, key)| Some((RESOURCES.get(*res)?, state.get(*res, key)?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::objects::core;

    fn change(rev: i64, resource: &str, kind: EventType, obj: Value) -> Change {
        Change {
            rev,
            resource: Arc::from(resource),
            namespace: str_at(&obj, "/metadata/namespace")
                .unwrap_or_default()
                .to_string(),
            name: str_at(&obj, "/metadata/name")
                .unwrap_or_default()
                .to_string(),
            kind,
            object: Arc::new(obj),
            previous: None,
        }
    }

    fn pod(name: &str, owner: Option<&str>, node: &str) -> Value {
        let refs = owner.map_or(json!([]), |uid| json!([{"uid": uid, "controller": true}]));
        json!({"metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"),
            "ownerReferences": refs}, "spec": {"nodeName": node}})
    }

    async fn loaded() -> (tempfile::TempDir, Informers, i64) {
        let (dir, objects) = crate::objects::test_objects().await;
        let informers = Informers::new(objects);
        informers.ensure_loaded().await.unwrap();
        let base = informers.revision();
        (dir, informers, base)
    }

    #[tokio::test]
    async fn pods_are_indexed_by_controller_and_node_and_each_change_applies_once() {
        let (_dir, informers, base) = loaded().await;
        let added = EventType::Added;
        informers.apply(&change(
            base + 1,
            "pods",
            added,
            pod("a", Some("rs1"), "n1"),
        ));
        informers.apply(&change(base + 2, "pods", added, pod("b", None, "n1")));
        informers.apply(&change(
            base + 3,
            "pods",
            added,
            pod("c", Some("rs2"), "n2"),
        ));
        assert_eq!(informers.controlled_by("rs1").len(), 1);
        assert_eq!(
            informers.claimable("default", "rs1").len(),
            2,
            "own pod and the orphan"
        );
        assert_eq!(informers.claimable("other", "rs1").len(), 1);
        assert_eq!(informers.on_node("n1").len(), 2);
        // Adoption moves the orphan under its new controller.
        let modified = EventType::Modified;
        informers.apply(&change(
            base + 4,
            "pods",
            modified,
            pod("b", Some("rs1"), "n1"),
        ));
        assert_eq!(informers.controlled_by("rs1").len(), 2);
        assert_eq!(informers.claimable("default", "rs2").len(), 1);
        // A second stream bringing the same change again leaves the caches as they are.
        informers.apply(&change(base + 2, "pods", added, pod("b", None, "n1")));
        assert_eq!(informers.controlled_by("rs1").len(), 2);
        informers.apply(&change(
            base + 5,
            "pods",
            EventType::Deleted,
            pod("a", Some("rs1"), "n1"),
        ));
        assert_eq!(informers.controlled_by("rs1").len(), 1);
        assert_eq!(informers.on_node("n1").len(), 1);
        assert_eq!(informers.revision(), base + 5);
    }

    #[tokio::test]
    async fn one_revision_covers_every_resource() {
        let (_dir, informers, base) = loaded().await;
        let cm = json!({"metadata": {"name": "cm", "namespace": "default"}});
        informers.apply(&change(base + 1, "configmaps", EventType::Added, cm));
        // A change of another resource at a revision already applied was applied by the stream that
        // brought it first: every change of any resource advances the one revision.
        informers.apply(&change(
            base + 1,
            "pods",
            EventType::Added,
            pod("late", None, ""),
        ));
        assert!(informers.get(core("pods"), "default", "late").is_none());
        assert_eq!(informers.revision(), base + 1);
        assert!(informers.get(core("configmaps"), "default", "cm").is_some());
        let node = json!({"metadata": {"name": "n1"}});
        informers.apply(&change(base + 2, "nodes", EventType::Added, node));
        // Cluster-scoped objects ignore the namespace asked for.
        assert!(informers.get(core("nodes"), "default", "n1").is_some());
        assert_eq!(
            informers.keys(core("nodes")),
            [(String::new(), "n1".to_string())]
        );
    }

    #[tokio::test]
    async fn a_list_fills_every_cache_and_lists_by_namespace() {
        let (_dir, objects) = crate::objects::test_objects().await;
        for ns in ["a", "b"] {
            let namespace =
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
            objects
                .create(core("namespaces"), None, namespace, false)
                .await
                .unwrap();
            for name in ["x", "y"] {
                let cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": name, "namespace": ns}});
                objects
                    .create(core("configmaps"), Some(ns), cm, false)
                    .await
                    .unwrap();
            }
        }
        let informers = Informers::new(objects.clone());
        let rev = informers.ensure_loaded().await.unwrap();
        assert_eq!(rev, objects.revision());
        assert_eq!(informers.list(core("configmaps"), Some("a")).len(), 2);
        assert_eq!(informers.list(core("configmaps"), None).len(), 4);
        assert!(informers.list(core("configmaps"), Some("c")).is_empty());
        assert!(
            informers
                .keys(core("namespaces"))
                .contains(&(String::new(), "b".into()))
        );
        // Already current: a stream watching from the present needs no second list.
        informers.relist(rev).await.unwrap();
        assert_eq!(informers.revision(), rev);
    }

    #[tokio::test]
    async fn the_owner_index_finds_dependents_orphans_and_foreground_owners() {
        let (_dir, informers, base) = loaded().await;
        let owner = |name: &str, extra: Value| {
            let mut o = json!({"metadata": {"name": name, "namespace": "default",
                "uid": format!("uid-{name}")}});
            if let Some(extra) = extra.as_object() {
                for (k, v) in extra {
                    o["metadata"][k] = v.clone();
                }
            }
            o
        };
        let added = EventType::Added;
        let rs = owner(
            "rs",
            json!({"deletionTimestamp": "2026-01-01T00:00:00Z",
                "finalizers": [FOREGROUND_FINALIZER]}),
        );
        informers.apply(&change(base + 1, "replicasets.apps", added, rs));
        informers.apply(&change(
            base + 2,
            "pods",
            added,
            pod("kept", Some("uid-rs"), ""),
        ));
        informers.apply(&change(
            base + 3,
            "pods",
            added,
            pod("orphan", Some("uid-gone"), ""),
        ));
        let dependents = informers.dependents_of("uid-rs");
        assert_eq!(dependents.len(), 1);
        assert_eq!(dependents[0].0.kind, "Pod");
        let orphans = informers.orphaned_dependents();
        assert_eq!(orphans.len(), 1);
        assert_eq!(orphans[0].1["metadata"]["name"], "orphan");
        let waiting = informers.waiting_in_foreground();
        assert_eq!(waiting.len(), 1);
        assert_eq!(waiting[0].0.kind, "ReplicaSet");
        // The owner goes: its dependent is an orphan now.
        let gone = owner("rs", json!({}));
        informers.apply(&change(
            base + 4,
            "replicasets.apps",
            EventType::Deleted,
            gone,
        ));
        assert_eq!(informers.orphaned_dependents().len(), 2);
        assert!(informers.waiting_in_foreground().is_empty());
    }
}
