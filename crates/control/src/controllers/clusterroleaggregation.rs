//! kube-controller-manager's clusterrole-aggregation controller: a ClusterRole with an `aggregationRule`
//! holds the rules of every ClusterRole its selectors match (kube's `admin` ⊇ `edit` ⊇ `view` through the
//! `rbac.authorization.k8s.io/aggregate-to-*` labels), kept current as those roles change.

use std::sync::Arc;

use k8s_openapi::api::rbac::v1::ClusterRole;

use super::{Controller, Informers, Key, Requeue};
use crate::error::ApiError;
use crate::objects::{Change, Objects};

pub struct ClusterRoleAggregation {
    objects: Objects,
    caches: Arc<Informers>,
}

impl ClusterRoleAggregation {
    pub fn new(objects: Objects, caches: Arc<Informers>) -> Self {
        Self { objects, caches }
    }

    fn aggregating(&self) -> Vec<Key> {
        self.caches
            .store::<ClusterRole>()
            .state()
            .iter()
            .filter(|r| r.aggregation_rule.is_some())
            .map(|r| (String::new(), r.metadata.name.clone().unwrap_or_default()))
            .collect()
    }
}

impl Controller for ClusterRoleAggregation {
    const NAME: &'static str = "clusterrole-aggregation";

    fn watches(&self) -> &'static [&'static str] {
        &["clusterroles.rbac.authorization.k8s.io"]
    }

    /// Any ClusterRole's change may change what every aggregating role selects.
    fn keys_for(&self, _change: &Change) -> Vec<Key> {
        self.aggregating()
    }

    async fn all_keys(&self) -> Result<Vec<Key>, ApiError> {
        Ok(self.aggregating())
    }

    async fn reconcile(&self, (_, name): &Key) -> Result<Requeue, ApiError> {
        let roles = self.caches.store::<ClusterRole>();
        let Some(role) = roles.get("", name) else {
            return Ok(None);
        };
        let all: Vec<ClusterRole> = roles.state().iter().map(|r| (**r).clone()).collect();
        let Some(rules) = herd_authz::aggregated_rules(&role, &all) else {
            return Ok(None);
        };
        if role.rules.as_deref().unwrap_or_default() == rules.as_slice() {
            return Ok(None);
        }
        let rules = serde_json::to_value(&rules).map_err(|e| ApiError::Internal(e.to_string()))?;
        let res = herd_api::resources::by_path("rbac.authorization.k8s.io", "v1", "clusterroles")
            .expect("clusterroles are in the table");
        match self
            .objects
            .edit(res, "", name, move |obj| {
                obj["rules"] = rules;
                true
            })
            .await
        {
            Ok(_) | Err(ApiError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }
}
