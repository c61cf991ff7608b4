//! Garbage collection: deletes objects whose controlling owner is gone (background propagation), and
//! empties a terminating Namespace before removing it.

use std::sync::Arc;

use herd_api::resources::RESOURCES;
use k8s_openapi::api::core::v1::Namespace;
use serde::Deserialize;
use serde_json::Value;

use super::{Controller, Informers, Key, Requeue};
use crate::error::ApiError;
use crate::objects::{Change, EventType};
use crate::objects::{DeleteOptions, FOREGROUND_FINALIZER, Objects, Propagation, core};

pub struct GarbageCollector {
    objects: Objects,
    caches: Arc<Informers>,
}

const SWEEP: &str = "sweep";

/// The part of any object's `metadata` the collector reasons over, decoded typed and borrowed from the
/// cached JSON (the objects are of every kind, pods among them: only these few fields are decoded).
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Meta<'a> {
    #[serde(borrow)]
    name: Option<&'a str>,
    #[serde(borrow)]
    namespace: Option<&'a str>,
    #[serde(borrow)]
    uid: Option<&'a str>,
    #[serde(borrow)]
    deletion_timestamp: Option<&'a str>,
    #[serde(borrow, default)]
    finalizers: Vec<&'a str>,
}

impl<'a> Meta<'a> {
    /// `obj`'s metadata; empty when it has none that decodes.
    fn of(obj: &'a Value) -> Self {
        obj.get("metadata")
            .and_then(|m| Meta::deserialize(m).ok())
            .unwrap_or_default()
    }

    fn deleting(&self) -> bool {
        self.deletion_timestamp.is_some()
    }
}

impl GarbageCollector {
    pub fn new(objects: Objects, caches: Arc<Informers>) -> Self {
        Self { objects, caches }
    }

    /// Deletes every object whose owners are all gone, after finishing the foreground deletions that
    /// can finish; both found through the caches' owner index.
    async fn sweep_orphans(&self) -> Result<(), ApiError> {
        self.finish_foreground().await?;
        for (res, item) in self.caches.orphaned_dependents() {
            let meta = Meta::of(&item);
            let Some(name) = meta.name else {
                continue;
            };
            let ns = meta.namespace;
            match self
                .objects
                .delete(res, ns, name, DeleteOptions::default())
                .await
            {
                Ok(_) | Err(ApiError::NotFound { .. }) => {
                    tracing::info!(kind = res.kind, %name, "deleted dependent of a deleted owner")
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Owners deleted in the foreground wait until their dependents are gone, then lose the finalizer and go.
    async fn finish_foreground(&self) -> Result<(), ApiError> {
        for (res, owner) in self.caches.waiting_in_foreground() {
            let owner_meta = Meta::of(&owner);
            let Some(uid) = owner_meta.uid else {
                continue;
            };
            let dependents = self.caches.dependents_of(uid);
            for (dep_res, dep) in &dependents {
                let meta = Meta::of(dep);
                if meta.deleting() {
                    continue;
                }
                let Some(name) = meta.name else {
                    continue;
                };
                let ns = meta.namespace;
                let opts = DeleteOptions {
                    propagation: Propagation::Foreground,
                    ..Default::default()
                };
                match self.objects.delete(dep_res, ns, name, opts).await {
                    Ok(_) | Err(ApiError::NotFound { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
            if !dependents.is_empty() {
                continue;
            }
            let ns = owner_meta.namespace.unwrap_or_default();
            let Some(name) = owner_meta.name else {
                continue;
            };
            self.objects
                .remove_finalizer(res, ns, name, FOREGROUND_FINALIZER)
                .await?;
        }
        Ok(())
    }

    async fn finish_namespace(&self, ns: &str) -> Result<(), ApiError> {
        let Some(namespace) = self.caches.store::<Namespace>().get("", ns) else {
            return Ok(());
        };
        if namespace.metadata.deletion_timestamp.is_none() {
            return Ok(());
        }
        let mut remaining = 0;
        for res in RESOURCES.iter().filter(|r| r.namespaced) {
            for item in self.caches.list(res, Some(ns)) {
                remaining += 1;
                let meta = Meta::of(&item);
                if meta.deleting() {
                    continue;
                }
                if let Some(name) = meta.name {
                    match self
                        .objects
                        .delete(res, Some(ns), name, DeleteOptions::default())
                        .await
                    {
                        Ok(_) | Err(ApiError::NotFound { .. }) => {}
                        Err(e) => return Err(e),
                    }
                }
            }
        }
        if remaining > 0 {
            return Err(ApiError::Unavailable(format!(
                "namespace {ns} still has {remaining} objects"
            )));
        }
        self.objects
            .finish_deletion(core("namespaces"), "", ns)
            .await?;
        Ok(())
    }
}

impl Controller for GarbageCollector {
    const NAME: &'static str = "garbagecollector";

    fn watches(&self) -> &'static [&'static str] {
        &[
            "deployments.apps",
            "replicasets.apps",
            "replicationcontrollers",
            "jobs.batch",
            "daemonsets.apps",
            "statefulsets.apps",
            "services",
            "namespaces",
            "pods",
        ]
    }

    fn keys_for(&self, change: &Change) -> Vec<Key> {
        let meta = Meta::of(&change.object);
        if &*change.resource == "namespaces" && meta.deleting() && change.kind != EventType::Deleted
        {
            return vec![("namespace".into(), change.name.clone())];
        }
        if &*change.resource == "pods" {
            // A pod going away may be the last thing a terminating namespace, or a foreground owner, waits for.
            let mut keys = vec![("namespace".to_string(), change.namespace.clone())];
            if change.kind == EventType::Deleted {
                keys.push((String::new(), SWEEP.into()));
            }
            return keys;
        }
        let foreground = meta.deleting() && meta.finalizers.contains(&FOREGROUND_FINALIZER);
        if change.kind == EventType::Deleted || foreground {
            vec![(String::new(), SWEEP.into())]
        } else {
            vec![]
        }
    }

    async fn all_keys(&self) -> Result<Vec<Key>, ApiError> {
        let mut keys: Vec<Key> = self
            .caches
            .store::<Namespace>()
            .state()
            .iter()
            .filter(|n| n.metadata.deletion_timestamp.is_some())
            .filter_map(|n| Some(("namespace".to_string(), n.metadata.name.clone()?)))
            .collect();
        keys.push((String::new(), SWEEP.into()));
        Ok(keys)
    }

    async fn reconcile(&self, (scope, name): &Key) -> Result<Requeue, ApiError> {
        match scope.as_str() {
            "namespace" => self.finish_namespace(name).await?,
            _ => self.sweep_orphans().await?,
        }
        Ok(None)
    }
}
