//! Reconciling stored RBAC objects with the bootstrap policy, as kube-apiserver does at every start
//! (`pkg/registry/rbac/reconciliation`): missing rules, aggregation selectors and subjects are added,
//! what users added is kept, and an object annotated `rbac.authorization.kubernetes.io/autoupdate:
//! "false"` is left alone.

use crate::bootstrap::AUTOUPDATE_ANNOTATION;
use crate::rules::covers;
use k8s_openapi::api::rbac::v1::{
    AggregationRule, ClusterRole, ClusterRoleBinding, PolicyRule, Subject,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use std::collections::BTreeMap;

/// What the caller has to write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    /// Stored and up to date (or protected: see [`Reconciled::protected`]).
    None,
    /// Not stored: create it.
    Create,
    /// Update the stored object to the reconciled one.
    Update,
    /// A binding's roleRef differs (it is immutable): delete the stored binding, create the expected.
    Recreate,
}

/// The outcome of reconciling one object.
#[derive(Clone, Debug)]
pub struct Reconciled<T> {
    /// The object to write (or the stored one when nothing changes).
    pub object: T,
    pub operation: Operation,
    /// The stored object says `autoupdate: "false"`: report, but write nothing.
    pub protected: bool,
    /// Rules (ClusterRole) the stored object lacked; subjects are in [`Reconciled::missing_subjects`].
    pub missing_rules: Vec<PolicyRule>,
    /// Rules the stored object holds beyond the expected ones (kept unless removing extras).
    pub extra_rules: Vec<PolicyRule>,
    pub missing_subjects: Vec<Subject>,
    pub extra_subjects: Vec<Subject>,
}

impl<T> Reconciled<T> {
    /// Whether the caller writes anything: an operation other than `None`, on an unprotected object.
    pub fn needs_write(&self) -> bool {
        !self.protected && self.operation != Operation::None
    }
}

fn protected(meta: &ObjectMeta) -> bool {
    meta.annotations
        .as_ref()
        .and_then(|a| a.get(AUTOUPDATE_ANNOTATION))
        .is_some_and(|v| v == "false")
}

/// `expected`'s entries with the stored ones on top (kube's `merge(expected, existing)`).
fn merge_maps(
    expected: &Option<BTreeMap<String, String>>,
    existing: &Option<BTreeMap<String, String>>,
) -> Option<BTreeMap<String, String>> {
    let mut out = expected.clone().unwrap_or_default();
    out.extend(existing.clone().unwrap_or_default());
    (!out.is_empty() || existing.is_some()).then_some(out)
}

/// Labels and annotations merged; whether that changed anything.
fn merge_meta(target: &mut ObjectMeta, expected: &ObjectMeta) -> bool {
    let labels = merge_maps(&expected.labels, &target.labels);
    let annotations = merge_maps(&expected.annotations, &target.annotations);
    let changed = labels != target.labels || annotations != target.annotations;
    target.labels = labels;
    target.annotations = annotations;
    changed
}

fn selectors(rule: &Option<AggregationRule>) -> &[LabelSelector] {
    rule.as_ref()
        .and_then(|r| r.cluster_role_selectors.as_deref())
        .unwrap_or_default()
}

/// Selectors of `servant` that `owner` lacks (kube's `aggregationRuleCovers`).
fn uncovered_selectors(
    owner: &Option<AggregationRule>,
    servant: &Option<AggregationRule>,
) -> Vec<LabelSelector> {
    selectors(servant)
        .iter()
        .filter(|s| !selectors(owner).contains(s))
        .cloned()
        .collect()
}

/// Reconcile a stored ClusterRole (`None`: not stored) with the expected one (kube's
/// `computeReconciledRole`). `remove_extra_permissions` replaces the rules with the expected ones
/// instead of adding the missing ones (herd's start passes `false`, as kube-apiserver does).
pub fn reconcile_cluster_role(
    existing: Option<&ClusterRole>,
    expected: &ClusterRole,
    remove_extra_permissions: bool,
) -> Reconciled<ClusterRole> {
    let Some(existing) = existing else {
        return Reconciled {
            object: expected.clone(),
            operation: Operation::Create,
            protected: false,
            missing_rules: expected.rules.clone().unwrap_or_default(),
            extra_rules: Vec::new(),
            missing_subjects: Vec::new(),
            extra_subjects: Vec::new(),
        };
    };
    let mut role = existing.clone();
    let mut operation = Operation::None;
    if merge_meta(&mut role.metadata, &expected.metadata) {
        operation = Operation::Update;
    }
    let expected_rules = expected.rules.as_deref().unwrap_or_default();
    let existing_rules = existing.rules.as_deref().unwrap_or_default();
    // Extra rules are not computed when both roles aggregate: the controller owns those rules.
    let extra_rules = if expected.aggregation_rule.is_none() || existing.aggregation_rule.is_none()
    {
        covers(expected_rules, existing_rules).1
    } else {
        Vec::new()
    };
    let missing_rules = covers(existing_rules, expected_rules).1;
    if !remove_extra_permissions && !missing_rules.is_empty() {
        let mut rules = existing_rules.to_vec();
        rules.extend(missing_rules.iter().cloned());
        role.rules = Some(rules);
        operation = Operation::Update;
    } else if remove_extra_permissions && (!missing_rules.is_empty() || !extra_rules.is_empty()) {
        role.rules = expected.rules.clone();
        operation = Operation::Update;
    }

    let extra_selectors =
        uncovered_selectors(&expected.aggregation_rule, &existing.aggregation_rule);
    let missing_selectors =
        uncovered_selectors(&existing.aggregation_rule, &expected.aggregation_rule);
    if expected.aggregation_rule.is_none() && existing.aggregation_rule.is_some() {
        role.aggregation_rule = None;
        operation = Operation::Update;
    } else if !remove_extra_permissions && !missing_selectors.is_empty() {
        let mut rule = role.aggregation_rule.take().unwrap_or_default();
        rule.cluster_role_selectors
            .get_or_insert_with(Vec::new)
            .extend(missing_selectors);
        role.aggregation_rule = Some(rule);
        operation = Operation::Update;
    } else if remove_extra_permissions
        && (!missing_selectors.is_empty() || !extra_selectors.is_empty())
    {
        role.aggregation_rule = expected.aggregation_rule.clone();
        operation = Operation::Update;
    }

    Reconciled {
        object: role,
        operation,
        protected: protected(&existing.metadata),
        missing_rules,
        extra_rules,
        missing_subjects: Vec::new(),
        extra_subjects: Vec::new(),
    }
}

/// Reconcile a stored ClusterRoleBinding with the expected one (kube's `computeReconciledRoleBinding`):
/// a different roleRef recreates it; otherwise missing subjects are added (or, with
/// `remove_extra_subjects`, the subjects replaced).
pub fn reconcile_cluster_role_binding(
    existing: Option<&ClusterRoleBinding>,
    expected: &ClusterRoleBinding,
    remove_extra_subjects: bool,
) -> Reconciled<ClusterRoleBinding> {
    let expected_subjects = expected.subjects.as_deref().unwrap_or_default();
    let Some(existing) = existing else {
        return Reconciled {
            object: expected.clone(),
            operation: Operation::Create,
            protected: false,
            missing_rules: Vec::new(),
            extra_rules: Vec::new(),
            missing_subjects: expected_subjects.to_vec(),
            extra_subjects: Vec::new(),
        };
    };
    let is_protected = protected(&existing.metadata);
    if existing.role_ref != expected.role_ref {
        return Reconciled {
            object: expected.clone(),
            operation: Operation::Recreate,
            protected: is_protected,
            missing_rules: Vec::new(),
            extra_rules: Vec::new(),
            missing_subjects: Vec::new(),
            extra_subjects: Vec::new(),
        };
    }
    let mut binding = existing.clone();
    let mut operation = Operation::None;
    if merge_meta(&mut binding.metadata, &expected.metadata) {
        operation = Operation::Update;
    }
    let existing_subjects = existing.subjects.as_deref().unwrap_or_default();
    let missing: Vec<Subject> = expected_subjects
        .iter()
        .filter(|s| !existing_subjects.contains(s))
        .cloned()
        .collect();
    let extra: Vec<Subject> = existing_subjects
        .iter()
        .filter(|s| !expected_subjects.contains(s))
        .cloned()
        .collect();
    if !remove_extra_subjects && !missing.is_empty() {
        let mut subjects = existing_subjects.to_vec();
        subjects.extend(missing.iter().cloned());
        binding.subjects = Some(subjects);
        operation = Operation::Update;
    } else if remove_extra_subjects && (!missing.is_empty() || !extra.is_empty()) {
        binding.subjects = expected.subjects.clone();
        operation = Operation::Update;
    }
    Reconciled {
        object: binding,
        operation,
        protected: is_protected,
        missing_rules: Vec::new(),
        extra_rules: Vec::new(),
        missing_subjects: missing,
        extra_subjects: extra,
    }
}
