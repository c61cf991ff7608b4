//! kube-controller-manager's service account controller: every namespace has a ServiceAccount named
//! `default`, created with the namespace and again if it is deleted, never while the namespace is going.

use herd_api::resources::ResourceInfo;
use serde_json::{Value, json};

use super::replicaset::object_key;
use super::{Controller, Key, Requeue};
use crate::error::ApiError;
use crate::objects::{Change, Objects, core};

/// The account every namespace gets.
const DEFAULT_ACCOUNT: &str = "default";

pub struct ServiceAccounts {
    objects: Objects,
    namespaces: &'static ResourceInfo,
    accounts: &'static ResourceInfo,
}

impl ServiceAccounts {
    pub fn new(objects: Objects) -> Self {
        Self {
            objects,
            namespaces: core("namespaces"),
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
        let (items, _) = self.objects.list_all(self.namespaces, None).await?;
        // Cluster-scoped objects: the namespace part of the key is empty.
        Ok(items.iter().filter_map(object_key).collect())
    }

    async fn reconcile(&self, (_, ns): &Key) -> Result<Requeue, ApiError> {
        let Some(namespace) = self.objects.find(self.namespaces, "", ns).await? else {
            return Ok(None);
        };
        if namespace.pointer("/metadata/deletionTimestamp").is_some()
            || self
                .objects
                .find(self.accounts, ns, DEFAULT_ACCOUNT)
                .await?
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
