//! kube-controller-manager's service account controller: every namespace has a ServiceAccount named
//! `default`, created with the namespace and again if it is deleted, never while the namespace is going.

use std::sync::Arc;

use herd_api::resources::ResourceInfo;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use serde_json::{Value, json};

use super::{Controller, Informers, Key, Requeue};
use crate::error::ApiError;
use crate::objects::{Change, Objects, core};

/// The account every namespace gets.
const DEFAULT_ACCOUNT: &str = "default";

pub struct ServiceAccounts {
    objects: Objects,
    caches: Arc<Informers>,
    accounts: &'static ResourceInfo,
}

impl ServiceAccounts {
    pub fn new(objects: Objects, caches: Arc<Informers>) -> Self {
        Self {
            objects,
            caches,
            accounts: core("serviceaccounts"),
        }
    }
}

impl Controller for ServiceAccounts {
    const NAME: &'static str = "serviceaccount";

    fn watches(&self) -> &'static [&'static str] {
        &["namespaces", "serviceaccounts"]
    }

    /// The key is the namespace: its own change, or one of its accounts' (a deleted `default`).
    fn keys_for(&self, change: &Change) -> Vec<Key> {
        match &*change.resource {
            "namespaces" => vec![(String::new(), change.name.clone())],
            _ if change.name == DEFAULT_ACCOUNT => vec![(String::new(), change.namespace.clone())],
            _ => Vec::new(),
        }
    }

    async fn all_keys(&self) -> Result<Vec<Key>, ApiError> {
        // Cluster-scoped objects: the namespace part of the key is empty.
        Ok(self.caches.keys(core("namespaces")))
    }

    async fn reconcile(&self, (_, ns): &Key) -> Result<Requeue, ApiError> {
        let Some(namespace) = self.caches.store::<Namespace>().get("", ns) else {
            return Ok(None);
        };
        if namespace.metadata.deletion_timestamp.is_some()
            || self
                .caches
                .store::<ServiceAccount>()
                .get(ns, DEFAULT_ACCOUNT)
                .is_some()
        {
            return Ok(None);
        }
        let account: Value = json!({"apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": {"name": DEFAULT_ACCOUNT, "namespace": ns}});
        match self
            .objects
            .create(self.accounts, Some(ns), account, false)
            .await
        {
            // Created meanwhile, or the namespace went: nothing to do.
            Ok(_) | Err(ApiError::AlreadyExists { .. } | ApiError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }
}
