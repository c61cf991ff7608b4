//! Garbage collection: deletes objects whose controlling owner is gone (background propagation), and
//! empties a terminating Namespace before removing it.

use std::sync::Arc;

use herd_api::resources::RESOURCES;
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

impl GarbageCollector {
    pub fn new(objects: Objects, caches: Arc<Informers>) -> Self {
        Self { objects, caches }
    }

    /// Deletes every object whose owners are all gone, after finishing the foreground deletions that
    /// can finish; both found through the caches' owner index.
    async fn sweep_orphans(&self) -> Result<(), ApiError> {
        self.finish_foreground().await?;
        for (res, item) in self.caches.orphaned_dependents() {
            let ns = item.pointer("/metadata/namespace").and_then(Value::as_str);
            let Some(name) = item.pointer("/metadata/name").and_then(Value::as_str) else {
                continue;
            };
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
            let Some(uid) = owner.pointer("/metadata/uid").and_then(Value::as_str) else {
                continue;
            };
            let dependents = self.caches.dependents_of(uid);
            for (dep_res, dep) in &dependents {
                if dep.pointer("/metadata/deletionTimestamp").is_some() {
                    continue;
                }
                let ns = dep.pointer("/metadata/namespace").and_then(Value::as_str);
                let Some(name) = dep.pointer("/metadata/name").and_then(Value::as_str) else {
                    continue;
                };
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
            let ns = owner
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let Some(name) = owner.pointer("/metadata/name").and_then(Value::as_str) else {
                continue;
            };
            self.objects
                .remove_finalizer(res, ns, name, FOREGROUND_FINALIZER)
                .await?;
        }
        Ok(())
    }

    async fn finish_namespace(&self, ns: &str) -> Result<(), ApiError> {
        let Some(namespace) = self.caches.get(core("namespaces"), "", ns) else {
            return Ok(());
        };
        if namespace.pointer("/metadata/deletionTimestamp").is_none() {
            return Ok(());
        }
        let mut remaining = 0;
        for res in RESOURCES.iter().filter(|r| r.namespaced) {
            for item in self.caches.list(res, Some(ns)) {
                remaining += 1;
                if item.pointer("/metadata/deletionTimestamp").is_some() {
                    continue;
                }
                if let Some(name) = item.pointer("/metadata/name").and_then(Value::as_str) {
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
            "services",
            "namespaces",
            "pods",
        ]
    }

    fn keys_for(&self, change: &Change) -> Vec<Key> {
        if &*change.resource == "namespaces"
            && change
                .object
                .pointer("/metadata/deletionTimestamp")
                .is_some()
            && change.kind != EventType::Deleted
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
        let foreground = change
            .object
            .pointer("/metadata/deletionTimestamp")
            .is_some()
            && change
                .object
                .pointer("/metadata/finalizers")
                .and_then(Value::as_array)
                .is_some_and(|f| f.iter().any(|f| f == FOREGROUND_FINALIZER));
        if change.kind == EventType::Deleted || foreground {
            vec![(String::new(), SWEEP.into())]
        } else {
            vec![]
        }
    }

    async fn all_keys(&self) -> Result<Vec<Key>, ApiError> {
        let namespaces = self.caches.list(core("namespaces"), None);
        let mut keys: Vec<Key> = namespaces
            .iter()
            .filter(|n| n.pointer("/metadata/deletionTimestamp").is_some())
            .filter_map(|n| {
                Some((
                    "namespace".to_string(),
                    n.pointer("/metadata/name")?.as_str()?.to_string(),
                ))
            })
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
