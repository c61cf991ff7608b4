//! The scheduler's view of nodes and pods, kept up to date from the store's watch (as kube-scheduler's
//! informer-fed cache), so a pass reads memory instead of listing and decoding every pod again.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;

use super::list_snapshot;
use super::volumes::Volumes;
use crate::error::ApiError;
use crate::objects::Objects;
use crate::objects::{Change, EventType};

#[derive(Default)]
pub(crate) struct Cache {
    nodes: BTreeMap<String, Node>,
    pods: BTreeMap<(String, String), Pod>,
    /// Claims, volumes and classes, for the VolumeBinding plugin.
    volumes: Volumes,
}

impl Cache {
    /// Lists nodes and pods; returns the cache and the revision to watch from.
    pub async fn load(objects: &Objects) -> Result<(Self, i64), ApiError> {
        // The revision first: changes after it are replayed by the watch, and applying a change twice is
        // harmless.
        let rev = objects.revision();
        let (nodes, pods) = list_snapshot(objects).await?;
        let mut cache = Self::default();
        for node in nodes {
            cache.put_node(node);
        }
        for pod in pods {
            cache.put_pod(pod);
        }
        let core = crate::objects::core;
        let (claims, _) = objects
            .list_typed::<PersistentVolumeClaim>(core("persistentvolumeclaims"), None)
            .await?;
        for claim in claims {
            let key = (
                claim.metadata.namespace.clone().unwrap_or_default(),
                claim.metadata.name.clone().unwrap_or_default(),
            );
            cache.volumes.claims.insert(key, claim);
        }
        let (volumes, _) = objects
            .list_typed::<PersistentVolume>(core("persistentvolumes"), None)
            .await?;
        for pv in volumes {
            let name = pv.metadata.name.clone().unwrap_or_default();
            cache.volumes.volumes.insert(name, pv);
        }
        let classes = herd_api::resources::by_path("storage.k8s.io", "v1", "storageclasses")
            .expect("storageclasses are in the table");
        let (classes, _) = objects.list_typed::<StorageClass>(classes, None).await?;
        for class in classes {
            let name = class.metadata.name.clone().unwrap_or_default();
            cache.volumes.classes.insert(name, class);
        }
        Ok((cache, rev))
    }

    fn put_node(&mut self, node: Node) {
        if let Some(name) = node.metadata.name.clone() {
            self.nodes.insert(name, node);
        }
    }

    fn put_pod(&mut self, pod: Pod) {
        let key = (
            pod.metadata.namespace.clone().unwrap_or_default(),
            pod.metadata.name.clone().unwrap_or_default(),
        );
        self.pods.insert(key, pod);
    }

    /// Applies one committed change; true if it was about a node, a pod, a claim, a volume or a class.
    pub fn apply(&mut self, change: &Change) -> bool {
        let key = || (change.namespace.clone(), change.name.clone());
        let volumes = &mut self.volumes;
        match (&*change.resource, change.kind) {
            ("persistentvolumeclaims", EventType::Deleted) => {
                volumes.claims.remove(&key());
            }
            ("persistentvolumes", EventType::Deleted) => {
                volumes.volumes.remove(&change.name);
            }
            ("storageclasses.storage.k8s.io", EventType::Deleted) => {
                volumes.classes.remove(&change.name);
            }
            ("persistentvolumeclaims", _) => {
                if let Ok(c) = serde_json::from_value((*change.object).clone()) {
                    volumes.claims.insert(key(), c);
                }
            }
            ("persistentvolumes", _) => {
                if let Ok(v) = serde_json::from_value((*change.object).clone()) {
                    volumes.volumes.insert(change.name.clone(), v);
                }
            }
            ("storageclasses.storage.k8s.io", _) => {
                if let Ok(c) = serde_json::from_value((*change.object).clone()) {
                    volumes.classes.insert(change.name.clone(), c);
                }
            }
            ("nodes", EventType::Deleted) => {
                self.nodes.remove(&change.name);
            }
            ("pods", EventType::Deleted) => {
                self.pods
                    .remove(&(change.namespace.clone(), change.name.clone()));
            }
            ("nodes", _) => match serde_json::from_value::<Node>((*change.object).clone()) {
                Ok(node) => self.put_node(node),
                Err(e) => tracing::warn!(error = %e, name = %change.name, "undecodable node"),
            },
            ("pods", _) => match serde_json::from_value::<Pod>((*change.object).clone()) {
                Ok(pod) => self.put_pod(pod),
                Err(e) => tracing::warn!(error = %e, name = %change.name, "undecodable pod"),
            },
            _ => return false,
        }
        true
    }

    /// A bind this scheduler committed, before the watch brings it (kube-scheduler's assumed pod).
    pub fn assume(&mut self, namespace: String, name: String, node: String) {
        if let Some(spec) = self
            .pods
            .get_mut(&(namespace, name))
            .and_then(|pod| pod.spec.as_mut())
        {
            spec.node_name = Some(node);
        }
    }

    pub fn volumes(&self) -> &Volumes {
        &self.volumes
    }

    pub fn nodes(&self) -> Vec<Node> {
        self.nodes.values().cloned().collect()
    }

    pub fn pods(&self) -> Vec<&Pod> {
        self.pods.values().collect()
    }

    /// Whether any pod waits for a node.
    pub fn has_pending(&self) -> bool {
        self.pods.values().any(super::wants_scheduling)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;

    use super::*;

    fn change(resource: &str, kind: EventType, name: &str, object: serde_json::Value) -> Change {
        Change {
            rev: 1,
            resource: Arc::from(resource),
            namespace: if resource == "pods" {
                "default".into()
            } else {
                String::new()
            },
            name: name.into(),
            kind,
            object: Arc::new(object),
            previous: None,
        }
    }

    #[test]
    fn changes_keep_the_cache_current() {
        let mut cache = Cache::default();
        let pod = |node: Option<&str>| {
            json!({"metadata": {"name": "p", "namespace": "default"},
                   "spec": {"containers": [{"name": "c"}], "nodeName": node}})
        };
        assert!(cache.apply(&change("pods", EventType::Added, "p", pod(None))));
        assert!(cache.has_pending());
        assert!(cache.apply(&change("pods", EventType::Modified, "p", pod(Some("n")))));
        assert!(!cache.has_pending(), "bound now");
        assert!(cache.apply(&change(
            "nodes",
            EventType::Added,
            "n",
            json!({"metadata": {"name": "n"}})
        )));
        assert_eq!(cache.nodes().len(), 1);
        assert!(!cache.apply(&change(
            "services",
            EventType::Added,
            "s",
            json!({"metadata": {"name": "s"}})
        )));
        assert!(cache.apply(&change("pods", EventType::Deleted, "p", pod(Some("n")))));
        assert!(cache.pods().is_empty());
        assert!(cache.apply(&change("nodes", EventType::Deleted, "n", json!({}))));
        assert!(cache.nodes().is_empty());
    }
}
