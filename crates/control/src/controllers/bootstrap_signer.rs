//! kube-controller-manager's `bootstrapsigner`: `kube-public/cluster-info` carries, beside its
//! `kubeconfig`, a `jws-kubeconfig-<token id>` detached JWS of it (HS256 keyed by the token's secret) for
//! every bootstrap token whose Secret allows signing (`usage-bootstrap-signing: "true"`) and has not expired;
//! signatures of tokens that are gone are removed.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use herd_pki::BootstrapToken;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use serde_json::json;

use super::{Controller, Informers, Key, Requeue};
use crate::bootstrap_tokens::{self, NAMESPACE as TOKEN_NAMESPACE};
use crate::cluster_info::{JWS_PREFIX, KUBECONFIG_KEY, NAME, NAMESPACE};
use crate::error::ApiError;
use crate::objects::{Change, Objects, core};

pub struct BootstrapSigner {
    objects: Objects,
    caches: Arc<Informers>,
}

impl BootstrapSigner {
    pub fn new(objects: Objects, caches: Arc<Informers>) -> Self {
        Self { objects, caches }
    }

    /// The signing tokens of this moment, and when the first of them expires.
    fn signing_tokens(&self, now: jiff::Timestamp) -> (Vec<BootstrapToken>, Option<Duration>) {
        let mut tokens = Vec::new();
        let mut next: Option<Duration> = None;
        for secret in self.caches.store::<Secret>().list(Some(TOKEN_NAMESPACE)) {
            if !bootstrap_tokens::is_token_secret(&secret)
                || secret.metadata.deletion_timestamp.is_some()
                || bootstrap_tokens::expired(&secret, now)
                || bootstrap_tokens::data(&secret, "usage-bootstrap-signing") != Some("true")
            {
                continue;
            }
            let (Some(id), Some(secret_value)) = (
                bootstrap_tokens::data(&secret, "token-id"),
                bootstrap_tokens::data(&secret, "token-secret"),
            ) else {
                continue;
            };
            let Ok(token) = format!("{id}.{secret_value}").parse::<BootstrapToken>() else {
                continue;
            };
            if secret.metadata.name.as_deref() != Some(token.secret_name().as_str()) {
                continue;
            }
            if let Some(at) = bootstrap_tokens::data(&secret, "expiration")
                .and_then(|e| e.parse::<jiff::Timestamp>().ok())
            {
                let left = Duration::try_from(at.duration_since(now)).unwrap_or_default();
                next = Some(next.map_or(left, |n| n.min(left)));
            }
            tokens.push(token);
        }
        (tokens, next)
    }
}

impl Controller for BootstrapSigner {
    const NAME: &'static str = "bootstrapsigner";

    fn watches(&self) -> &'static [&'static str] {
        &["configmaps", "secrets"]
    }

    fn keys_for(&self, change: &Change) -> Vec<Key> {
        let ours = match &*change.resource {
            "configmaps" => change.namespace == NAMESPACE && change.name == NAME,
            _ => {
                change.namespace == TOKEN_NAMESPACE
                    && change
                        .name
                        .starts_with(herd_pki::bootstrap_token::SECRET_PREFIX)
            }
        };
        if ours {
            vec![(NAMESPACE.to_string(), NAME.to_string())]
        } else {
            Vec::new()
        }
    }

    async fn all_keys(&self) -> Result<Vec<Key>, ApiError> {
        Ok(vec![(NAMESPACE.to_string(), NAME.to_string())])
    }

    async fn reconcile(&self, (ns, name): &Key) -> Result<Requeue, ApiError> {
        let Some(map) = self.caches.store::<ConfigMap>().get(ns, name) else {
            return Ok(None);
        };
        let data = map.data.clone().unwrap_or_default();
        let Some(kubeconfig) = data.get(KUBECONFIG_KEY).cloned() else {
            return Ok(None);
        };
        let now = jiff::Timestamp::now();
        let (tokens, next_expiry) = self.signing_tokens(now);
        let mut wanted: BTreeMap<String, String> = data
            .iter()
            .filter(|(k, _)| !k.starts_with(JWS_PREFIX))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for token in &tokens {
            let key = format!("{JWS_PREFIX}{}", token.id);
            // A signature that still verifies is kept as it is (the same bytes: no write).
            let signature = match data.get(&key) {
                Some(old)
                    if herd_pki::bootstrap_token::verify_detached_jws(old, &kubeconfig, token) =>
                {
                    old.clone()
                }
                _ => herd_pki::bootstrap_token::detached_jws(&kubeconfig, token),
            };
            wanted.insert(key, signature);
        }
        let requeue = next_expiry.map(|d| d + Duration::from_millis(100));
        if wanted == data {
            return Ok(requeue);
        }
        let result = self
            .objects
            .edit(core("configmaps"), ns, name, move |map| {
                map["data"] = json!(wanted);
                true
            })
            .await;
        match result {
            Ok(_) | Err(ApiError::NotFound { .. }) => Ok(requeue),
            Err(e) => Err(e),
        }
    }
}
