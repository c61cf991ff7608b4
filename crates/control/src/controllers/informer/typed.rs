//! Typed views of the informer caches, in the shape of kube-runtime's reflector `Store<K>`: a controller
//! asks [`Informers::store`] for a kind of k8s-openapi object and reads `Arc<K>`s instead of digging into
//! JSON by path.
//!
//! The caches hold every object as the store wrote it (`Arc<Value>`); an object is decoded into `K` the
//! first time it is read typed, and the decoded form is kept beside the JSON it came from until that
//! object changes (a change replaces the JSON and drops the decoded form), so repeated reads of the same
//! revision of an object decode nothing. Nothing is decoded eagerly: pods, the hot path of the
//! thousand-replica workloads, stay JSON unless a controller reads them typed. Decoding happens outside
//! the caches' lock; a decoded form is kept only if its object has not changed meanwhile.

use std::any::Any;
use std::marker::PhantomData;
use std::sync::Arc;

use herd_api::resources;
use k8s_openapi::Resource;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::{Cache, Informers, Key};

/// An object decoded into the type a controller read it as, and the JSON it was decoded from: valid while
/// the cache still holds that same JSON.
pub(super) struct Decoded {
    from: Arc<Value>,
    obj: Arc<dyn Any + Send + Sync>,
}

/// One resource's cache read as `K` (kube-runtime's `Store<K>`), from [`Informers::store`].
pub struct TypedCache<'a, K> {
    informers: &'a Informers,
    /// The resource's place in the caches; `None` for a type no stored resource has.
    res: Option<usize>,
    namespaced: bool,
    kind: PhantomData<fn() -> K>,
}

impl Informers {
    /// The cache of `K`'s resource, read as `K`: the resource is the one served at `K`'s group, version
    /// and plural.
    pub fn store<K>(&self) -> TypedCache<'_, K>
    where
        K: Resource + DeserializeOwned + Send + Sync + 'static,
    {
        let res = resources::by_path(K::GROUP, K::VERSION, K::URL_PATH_SEGMENT);
        debug_assert!(res.is_some(), "{} is not a stored resource", K::KIND);
        TypedCache {
            informers: self,
            res: res.and_then(|r| self.index.get(&r.key()).copied()),
            namespaced: res.is_some_and(|r| r.namespaced),
            kind: PhantomData,
        }
    }
}

impl<K> TypedCache<'_, K>
where
    K: Resource + DeserializeOwned + Send + Sync + 'static,
{
    /// One object, as `Store::get` (`ns` is ignored for cluster-scoped resources).
    pub fn get(&self, ns: &str, name: &str) -> Option<Arc<K>> {
        let ns = if self.namespaced { ns } else { "" };
        let key = (ns.to_string(), name.to_string());
        self.read(|cache| {
            cache
                .objects
                .get(&key)
                .map(|o| (key.clone(), o.clone()))
                .into_iter()
                .collect()
        })
        .pop()
    }

    /// Every object of the resource, in one namespace or (`None`) all, in (namespace, name) order.
    pub fn list(&self, ns: Option<&str>) -> Vec<Arc<K>> {
        match ns.filter(|_| self.namespaced) {
            None => self.read(|cache| {
                cache
                    .objects
                    .iter()
                    .map(|(k, o)| (k.clone(), o.clone()))
                    .collect()
            }),
            Some(ns) => self.read(|cache| {
                cache
                    .objects
                    .range((ns.to_string(), String::new())..)
                    .take_while(|((n, _), _)| n == ns)
                    .map(|(k, o)| (k.clone(), o.clone()))
                    .collect()
            }),
        }
    }

    /// Every object of the resource, as `Store::state`.
    pub fn state(&self) -> Vec<Arc<K>> {
        self.list(None)
    }

    /// The objects `select` picks from the resource's cache, decoded: those decoded before from the same
    /// JSON as they were, the others decoded now (outside the lock) and kept for the next read.
    fn read(&self, select: impl FnOnce(&Cache) -> Vec<(Key, Arc<Value>)>) -> Vec<Arc<K>> {
        let Some(res) = self.res else {
            return Vec::new();
        };
        let picked: Vec<(Key, Arc<Value>, Option<Arc<K>>)> = {
            let state = self.informers.lock();
            let Some(cache) = state.caches.get(&res) else {
                return Vec::new();
            };
            select(cache)
                .into_iter()
                .map(|(key, json)| {
                    let known = cache
                        .typed
                        .get(&key)
                        .filter(|d| Arc::ptr_eq(&d.from, &json))
                        .and_then(|d| d.obj.clone().downcast::<K>().ok());
                    (key, json, known)
                })
                .collect()
        };
        let mut fresh = Vec::new();
        let out = picked
            .into_iter()
            .filter_map(|(key, json, known)| {
                if known.is_some() {
                    return known;
                }
                match K::deserialize(&*json) {
                    Ok(obj) => {
                        let obj = Arc::new(obj);
                        fresh.push((key, json, obj.clone()));
                        Some(obj)
                    }
                    Err(e) => {
                        // Admission validated it as this kind: a stored object that is not one is
                        // skipped, as a reflector skips what it cannot decode.
                        tracing::warn!(kind = K::KIND, namespace = %key.0, name = %key.1,
                            "cached object does not decode: {e}");
                        None
                    }
                }
            })
            .collect();
        if !fresh.is_empty() {
            let mut state = self.informers.lock();
            if let Some(cache) = state.caches.get_mut(&res) {
                for (key, json, obj) in fresh {
                    // Keep it only if the object has not changed while it was being decoded.
                    if cache
                        .objects
                        .get(&key)
                        .is_some_and(|o| Arc::ptr_eq(o, &json))
                    {
                        cache.typed.insert(key, Decoded { from: json, obj });
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Node};
    use serde_json::json;

    use super::*;
    use crate::objects::{Change, EventType, core};

    fn change(rev: i64, resource: &str, kind: EventType, obj: Value) -> Change {
        let meta = |f: &str| obj["metadata"][f].as_str().unwrap_or_default().to_string();
        Change {
            rev,
            resource: Arc::from(resource),
            namespace: meta("namespace"),
            name: meta("name"),
            kind,
            object: Arc::new(obj),
            previous: None,
        }
    }

    async fn loaded() -> (tempfile::TempDir, Informers, i64) {
        let (dir, objects) = crate::objects::test_objects().await;
        let informers = Informers::new(objects);
        informers.ensure_loaded().await.unwrap();
        let base = informers.revision();
        (dir, informers, base)
    }

    fn node(name: &str, cidr: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name},
            "spec": {"podCIDR": cidr}})
    }

    #[tokio::test]
    async fn an_object_is_decoded_once_per_revision_and_a_change_invalidates_it() {
        let (_dir, informers, base) = loaded().await;
        informers.apply(&change(
            base + 1,
            "nodes",
            EventType::Added,
            node("n1", "10.0.0.0/24"),
        ));
        let nodes = informers.store::<Node>();
        let first = nodes.get("", "n1").expect("cached");
        let cidr = |n: &Node| n.spec.as_ref().and_then(|s| s.pod_cidr.clone());
        assert_eq!(cidr(&first).as_deref(), Some("10.0.0.0/24"));
        // The same revision read again, by get or by list, is the same decoded object: no second decode.
        assert!(Arc::ptr_eq(&first, &nodes.get("ignored", "n1").unwrap()));
        assert!(Arc::ptr_eq(&first, &nodes.state()[0]));
        // A change of another object keeps it.
        informers.apply(&change(
            base + 2,
            "nodes",
            EventType::Added,
            node("n2", "10.0.1.0/24"),
        ));
        let listed = nodes.list(None);
        assert_eq!(listed.len(), 2);
        assert!(Arc::ptr_eq(&first, &listed[0]));
        // Its own change drops the decoded form: the next read decodes the new revision.
        informers.apply(&change(
            base + 3,
            "nodes",
            EventType::Modified,
            node("n1", "10.0.9.0/24"),
        ));
        let second = nodes.get("", "n1").unwrap();
        assert!(!Arc::ptr_eq(&first, &second));
        assert_eq!(cidr(&second).as_deref(), Some("10.0.9.0/24"));
        assert!(Arc::ptr_eq(&second, &nodes.get("", "n1").unwrap()));
        informers.apply(&change(
            base + 4,
            "nodes",
            EventType::Deleted,
            node("n1", "10.0.9.0/24"),
        ));
        assert!(nodes.get("", "n1").is_none());
        assert_eq!(nodes.state().len(), 1);
    }

    #[tokio::test]
    async fn typed_reads_list_by_namespace_and_skip_what_does_not_decode() {
        let (_dir, informers, base) = loaded().await;
        for (rev, ns, name) in [(1, "a", "x"), (2, "a", "y"), (3, "b", "x")] {
            let cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": name, "namespace": ns}, "data": {"k": ns}});
            informers.apply(&change(base + rev, "configmaps", EventType::Added, cm));
        }
        let maps = informers.store::<ConfigMap>();
        assert_eq!(maps.list(Some("a")).len(), 2);
        assert_eq!(maps.list(None).len(), 3);
        assert!(maps.list(Some("c")).is_empty());
        let x = maps.get("b", "x").unwrap();
        assert_eq!(x.data.as_ref().unwrap()["k"], "b");
        // Reading typed leaves the JSON as it was.
        assert_eq!(
            informers.get(core("configmaps"), "b", "x").unwrap()["data"]["k"],
            "b"
        );
        let bad = json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": "odd", "labels": "not a map"}});
        informers.apply(&change(base + 4, "namespaces", EventType::Added, bad));
        assert!(informers.store::<Namespace>().get("", "odd").is_none());
    }
}
