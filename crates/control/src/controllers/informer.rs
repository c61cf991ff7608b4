//! The controllers' shared view of pods, kept current from the store's watch (kube-controller-manager's
//! shared pod informer): a reconcile reads the pods of its workload from memory, indexed by controlling
//! owner, instead of listing and decoding every pod of the namespace from SQLite each time.
//!
//! Every controller loop applies the changes of its own watch stream to the one cache; a change is applied
//! once, by whichever stream brings it first (the cache's revision says how far it is), so all streams, each
//! gapless and in revision order, keep it current together. Before a reconcile the loop catches the cache
//! up to the store's revision of that moment, so a reconcile sees at least what a list would have shown,
//! its own earlier writes included (what kube needs expectations for).

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::Value;
use tokio::sync::OnceCell;

use super::Key;
use crate::error::ApiError;
use crate::objects::Objects;
use crate::objects::{Change, EventType};

pub struct PodInformer {
    objects: Objects,
    /// The revision of the first list, once it is loaded.
    loaded: OnceCell<i64>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// The last revision applied: every change up to it is reflected, none after it.
    rev: i64,
    pods: HashMap<Key, Arc<Value>>,
    /// Pods by the uid of their controlling owner.
    by_controller: HashMap<String, BTreeSet<Key>>,
    /// Pods without a controlling owner (ones a controller may adopt), by namespace.
    orphans: HashMap<String, BTreeSet<String>>,
}

fn controller_uid(pod: &Value) -> Option<&str> {
    pod.pointer("/metadata/ownerReferences")?
        .as_array()?
        .iter()
        .find(|r| r["controller"] == true)
        .and_then(|r| r["uid"].as_str())
}

impl State {
    fn remove(&mut self, key: &Key) {
        let Some(old) = self.pods.remove(key) else {
            return;
        };
        match controller_uid(&old) {
            Some(uid) => {
                if let Some(keys) = self.by_controller.get_mut(uid) {
                    keys.remove(key);
                    if keys.is_empty() {
                        self.by_controller.remove(uid);
                    }
                }
            }
            None => {
                if let Some(names) = self.orphans.get_mut(&key.0) {
                    names.remove(&key.1);
                    if names.is_empty() {
                        self.orphans.remove(&key.0);
                    }
                }
            }
        }
    }

    fn put(&mut self, key: Key, pod: Arc<Value>) {
        self.remove(&key);
        match controller_uid(&pod) {
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
        self.pods.insert(key, pod);
    }
}

fn key_of(pod: &Value) -> Option<Key> {
    let md = pod.get("metadata")?;
    Some((
        md.get("namespace")?.as_str()?.to_string(),
        md.get("name")?.as_str()?.to_string(),
    ))
}

impl PodInformer {
    pub fn new(objects: Objects) -> Self {
        Self {
            objects,
            loaded: OnceCell::new(),
            state: Mutex::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Lists the pods the first time it is called; returns the revision of that list, the one every stream
    /// feeding the cache starts watching from.
    ///
    /// # Errors
    /// When the store cannot be listed; a later call tries again.
    pub async fn ensure_loaded(&self) -> Result<i64, ApiError> {
        self.loaded
            .get_or_try_init(|| async {
                self.relist().await?;
                Ok(self.revision())
            })
            .await
            .copied()
    }

    /// Lists every pod again (after a watch stream fell behind), unless the cache is already newer than
    /// the list.
    ///
    /// # Errors
    /// When the store cannot be listed.
    pub async fn relist(&self) -> Result<(), ApiError> {
        let (items, rev) = self
            .objects
            .list_all(crate::objects::core("pods"), None)
            .await?;
        let mut state = self.lock();
        if rev < state.rev {
            return Ok(());
        }
        let mut fresh = State {
            rev,
            ..State::default()
        };
        for pod in items {
            if let Some(key) = key_of(&pod) {
                fresh.put(key, Arc::new(pod));
            }
        }
        *state = fresh;
        Ok(())
    }

    /// The last revision the cache reflects.
    pub fn revision(&self) -> i64 {
        self.lock().rev
    }

    /// Applies one committed change of any resource (pods change the cache; every change moves its
    /// revision). A change at or below the cache's revision was applied already and is skipped.
    pub fn apply(&self, change: &Change) {
        let mut state = self.lock();
        if change.rev <= state.rev {
            return;
        }
        state.rev = change.rev;
        if &*change.resource != "pods" {
            return;
        }
        let key = (change.namespace.clone(), change.name.clone());
        match change.kind {
            EventType::Deleted => state.remove(&key),
            EventType::Added | EventType::Modified => state.put(key, change.object.clone()),
        }
    }

    /// The pods whose controlling owner has `uid`.
    pub fn controlled_by(&self, uid: &str) -> Vec<Arc<Value>> {
        let state = self.lock();
        state
            .by_controller
            .get(uid)
            .into_iter()
            .flatten()
            .filter_map(|k| state.pods.get(k).cloned())
            .collect()
    }

    /// Every pod of namespace `ns` (the disruption controller's: a budget selects by labels, not owner).
    pub fn in_namespace(&self, ns: &str) -> Vec<Arc<Value>> {
        let state = self.lock();
        state
            .pods
            .iter()
            .filter(|((pod_ns, _), _)| pod_ns == ns)
            .map(|(_, pod)| pod.clone())
            .collect()
    }

    /// What a controller with `uid` in namespace `ns` may claim: its own pods and the namespace's pods
    /// without a controller.
    pub fn claimable(&self, ns: &str, uid: &str) -> Vec<Arc<Value>> {
        let mut pods = self.controlled_by(uid);
        let state = self.lock();
        if let Some(names) = state.orphans.get(ns) {
            pods.extend(
                names
                    .iter()
                    .filter_map(|n| state.pods.get(&(ns.to_string(), n.clone())).cloned()),
            );
        }
        pods
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn change(rev: i64, kind: EventType, name: &str, owner: Option<&str>) -> Change {
        let refs = owner.map_or(json!([]), |uid| json!([{"uid": uid, "controller": true}]));
        Change {
            rev,
            resource: Arc::from("pods"),
            namespace: "default".into(),
            name: name.into(),
            kind,
            object: Arc::new(json!({"metadata": {"name": name, "namespace": "default",
                "ownerReferences": refs}})),
            previous: None,
        }
    }

    #[tokio::test]
    async fn changes_are_indexed_by_controller_and_applied_once_in_revision_order() {
        let (_dir, objects) = crate::objects::test_objects().await;
        let informer = PodInformer::new(objects);
        informer.ensure_loaded().await.unwrap();
        let base = informer.revision();
        informer.apply(&change(base + 1, EventType::Added, "a", Some("rs1")));
        informer.apply(&change(base + 2, EventType::Added, "b", None));
        informer.apply(&change(base + 3, EventType::Added, "c", Some("rs2")));
        assert_eq!(informer.controlled_by("rs1").len(), 1);
        assert_eq!(
            informer.claimable("default", "rs1").len(),
            2,
            "own pod and the orphan"
        );
        assert!(informer.claimable("other", "rs1").len() == 1);
        // Adoption moves the orphan under its new controller.
        informer.apply(&change(base + 4, EventType::Modified, "b", Some("rs1")));
        assert_eq!(informer.controlled_by("rs1").len(), 2);
        assert_eq!(informer.claimable("default", "rs2").len(), 1);
        // A second stream bringing the same changes again leaves the cache as it is.
        informer.apply(&change(base + 2, EventType::Added, "b", None));
        assert_eq!(informer.controlled_by("rs1").len(), 2);
        informer.apply(&change(base + 5, EventType::Deleted, "a", Some("rs1")));
        assert_eq!(informer.controlled_by("rs1").len(), 1);
        assert_eq!(informer.revision(), base + 5);
    }
}
