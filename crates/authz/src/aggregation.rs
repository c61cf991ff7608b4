//! ClusterRole aggregation: kube's clusterrole-aggregation controller as pure functions.

use herd_api::selector::label_selector_matches;
use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule};
use std::collections::BTreeMap;

/// Rules equal as kube's `equality.Semantic.DeepEqual` sees them: an absent list equals an empty one.
pub fn same_rule(a: &PolicyRule, b: &PolicyRule) -> bool {
    fn l(v: &Option<Vec<String>>) -> &[String] {
        v.as_deref().unwrap_or_default()
    }
    a.verbs == b.verbs
        && l(&a.api_groups) == l(&b.api_groups)
        && l(&a.resources) == l(&b.resources)
        && l(&a.resource_names) == l(&b.resource_names)
        && l(&a.non_resource_urls) == l(&b.non_resource_urls)
}

/// The rules an aggregated ClusterRole should hold: for each of its `clusterRoleSelectors` in order, the
/// rules of every other ClusterRole whose labels match, by name, each rule once (kube's
/// `ClusterRoleAggregationController.syncClusterRole`). `None` when `role` has no aggregationRule.
pub fn aggregated_rules(role: &ClusterRole, all: &[ClusterRole]) -> Option<Vec<PolicyRule>> {
    let selectors = role.aggregation_rule.as_ref()?;
    let mut by_name: Vec<&ClusterRole> = all.iter().collect();
    by_name.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let empty = BTreeMap::new();
    let mut rules: Vec<PolicyRule> = Vec::new();
    for selector in selectors.cluster_role_selectors.iter().flatten() {
        for other in &by_name {
            if other.metadata.name == role.metadata.name {
                continue;
            }
            let labels = other.metadata.labels.as_ref().unwrap_or(&empty);
            if !label_selector_matches(selector, labels) {
                continue;
            }
            for r in other.rules.iter().flatten() {
                if !rules.iter().any(|have| same_rule(have, r)) {
                    rules.push(r.clone());
                }
            }
        }
    }
    Some(rules)
}

/// Every aggregated ClusterRole with its rules brought up to date, repeated until nothing changes, as
/// the controller converges (`admin` aggregates `edit`, which aggregates `view`). Returns the roles and
/// the names of those whose rules changed.
pub fn aggregate_all(roles: &[ClusterRole]) -> (Vec<ClusterRole>, Vec<String>) {
    let mut roles = roles.to_vec();
    let mut changed: Vec<String> = Vec::new();
    // Each pass carries rules one aggregation level further; more passes than roles means a cycle,
    // which still settles because rules are only ever unioned from existing ones.
    for _ in 0..=roles.len() {
        let mut any = false;
        for i in 0..roles.len() {
            let Some(rules) = aggregated_rules(&roles[i], &roles) else {
                continue;
            };
            let current = roles[i].rules.as_deref().unwrap_or_default();
            let same = current.len() == rules.len()
                && current.iter().zip(&rules).all(|(a, b)| same_rule(a, b));
            if !same {
                roles[i].rules = Some(rules);
                any = true;
                let name = roles[i].metadata.name.clone().unwrap_or_default();
                if !changed.contains(&name) {
                    changed.push(name);
                }
            }
        }
        if !any {
            break;
        }
    }
    (roles, changed)
}
