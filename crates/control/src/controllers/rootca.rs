//! kube-controller-manager's root-ca-cert-publisher: every namespace has the ConfigMap `kube-root-ca.crt`
//! holding the cluster CA (`ca.crt`), the one a pod's projected ServiceAccount volume takes its `ca.crt`
//! from; created with the namespace, put back when it is changed or deleted, never while the namespace
//! is going.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use serde_json::json;

use super::{Controller, Informers, Key, Requeue};
use crate::error::ApiError;
use crate::objects::{Change, Objects, core};

/// The ConfigMap holding the cluster CA in every namespace.
pub const ROOT_CA_CONFIG_MAP: &str = "kube-root-ca.crt";

/// kube's annotation on the ConfigMap.
const DESCRIPTION: &str = "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters.";

pub struct RootCaPublisher {
    objects: Objects,
    caches: Arc<Informers>,
    ca_pem: String,
}

impl RootCaPublisher {
    pub fn new(objects: Objects, caches: Arc<Informers>, ca_pem: String) -> Self {
        Self {
            objects,
            caches,
            ca_pem,
        }
    }
}

impl Controller for RootCaPublisher {
    const NAME: &'static str = "root-ca-cert-publisher";

    fn watches(&self) -> &'static [&'static str] {
        &["namespaces", "configmaps"]
    }

    /// The key is the namespace: its own change, or one of its `kube-root-ca.crt`'s.
    fn keys_for(&self, change: &Change) -> Vec<Key> {
        match &*change.resource {
            "namespaces" => vec![(String::new(), change.name.clone())],
            _ if change.name == ROOT_CA_CONFIG_MAP => {
                vec![(String::new(), change.namespace.clone())]
            }
            _ => Vec::new(),
        }
    }

    async fn all_keys(&self) -> Result<Vec<Key>, ApiError> {
        Ok(self.caches.keys(core("namespaces")))
    }

    async fn reconcile(&self, (_, ns): &Key) -> Result<Requeue, ApiError> {
        let Some(namespace) = self.caches.store::<Namespace>().get("", ns) else {
            return Ok(None);
        };
        if namespace.metadata.deletion_timestamp.is_some() {
            return Ok(None);
        }
        let current = self.caches.store::<ConfigMap>().get(ns, ROOT_CA_CONFIG_MAP);
        let holds_ca = |map: &ConfigMap| {
            map.data
                .as_ref()
                .and_then(|d| d.get("ca.crt"))
                .is_some_and(|ca| *ca == self.ca_pem)
        };
        let result = match current {
            Some(map) if holds_ca(&map) => return Ok(None),
            Some(_) => {
                let ca = self.ca_pem.clone();
                self.objects
                    .edit(core("configmaps"), ns, ROOT_CA_CONFIG_MAP, move |map| {
                        map["data"] = json!({"ca.crt": ca});
                        true
                    })
                    .await
                    .map(|_| ())
            }
            None => {
                let map = json!({"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": ROOT_CA_CONFIG_MAP, "namespace": ns,
                        "annotations": {"kubernetes.io/description": DESCRIPTION}},
                    "data": {"ca.crt": self.ca_pem}});
                self.objects
                    .create(core("configmaps"), Some(ns), map, false)
                    .await
                    .map(|_| ())
            }
        };
        match result {
            // Created meanwhile, or the namespace went: the next change brings the key back if needed.
            Ok(()) | Err(ApiError::AlreadyExists { .. } | ApiError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }
}
