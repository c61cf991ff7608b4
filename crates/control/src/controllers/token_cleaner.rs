//! kube-controller-manager's `tokencleaner`: a bootstrap token Secret (`kube-system/bootstrap-token-*`) is
//! deleted once its `expiration` has passed; until then its key asks to be reconciled again at that moment.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;

use super::{Controller, Informers, Key, Requeue};
use crate::bootstrap_tokens::{self, NAMESPACE};
use crate::error::ApiError;
use crate::objects::{Change, DeleteOptions, Objects, core};

pub struct TokenCleaner {
    objects: Objects,
    caches: Arc<Informers>,
}

impl TokenCleaner {
    pub fn new(objects: Objects, caches: Arc<Informers>) -> Self {
        Self { objects, caches }
    }
}

impl Controller for TokenCleaner {
    const NAME: &'static str = "tokencleaner";

    fn watches(&self) -> &'static [&'static str] {
        &["secrets"]
    }

    fn keys_for(&self, change: &Change) -> Vec<Key> {
        if change.namespace == NAMESPACE
            && change
                .name
                .starts_with(herd_pki::bootstrap_token::SECRET_PREFIX)
        {
            vec![(change.namespace.clone(), change.name.clone())]
        } else {
            Vec::new()
        }
    }

    async fn all_keys(&self) -> Result<Vec<Key>, ApiError> {
        Ok(self
            .caches
            .store::<Secret>()
            .state()
            .iter()
            .filter(|s| s.metadata.namespace.as_deref() == Some(NAMESPACE))
            .filter(|s| bootstrap_tokens::is_token_secret(s))
            .filter_map(|s| Some((NAMESPACE.to_string(), s.metadata.name.clone()?)))
            .collect())
    }

    async fn reconcile(&self, (ns, name): &Key) -> Result<Requeue, ApiError> {
        let Some(secret) = self.caches.store::<Secret>().get(ns, name) else {
            return Ok(None);
        };
        if !bootstrap_tokens::is_token_secret(&secret)
            || secret.metadata.deletion_timestamp.is_some()
        {
            return Ok(None);
        }
        let now = jiff::Timestamp::now();
        if !bootstrap_tokens::expired(&secret, now) {
            let until = bootstrap_tokens::data(&secret, "expiration")
                .and_then(|e| e.parse::<jiff::Timestamp>().ok())
                .map(|at| at.duration_since(now));
            return Ok(until
                .map(|d| Duration::try_from(d).unwrap_or_default() + Duration::from_millis(100)));
        }
        tracing::info!(secret = %name, "deleting expired bootstrap token");
        let opts = DeleteOptions {
            precondition_uid: secret.metadata.uid.clone(),
            ..DeleteOptions::default()
        };
        match self
            .objects
            .delete(core("secrets"), Some(ns), name, opts)
            .await
        {
            Ok(_) | Err(ApiError::NotFound { .. } | ApiError::Conflict { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }
}
