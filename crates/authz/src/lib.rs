//! kube-apiserver's RBAC authorizer as pure functions over k8s-openapi's `rbac.authorization.k8s.io/v1`
//! types. **No I/O, no async**: the API server hands in its RBAC objects (a [`PolicySource`], or
//! slices) and turns the answers into HTTP.
//!
//! ```
//! use herd_authz::{Attributes, UserInfo, authorize, bootstrap};
//! use k8s_openapi::api::rbac::v1::{RoleBinding, RoleRef, Subject};
//!
//! // The `view` ClusterRole with its aggregated rules, bound to a ServiceAccount in `default`.
//! let (cluster_roles, _) = herd_authz::aggregate_all(&bootstrap::cluster_roles());
//! let binding = RoleBinding {
//!     metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
//!         name: Some("viewer".into()),
//!         namespace: Some("default".into()),
//!         ..Default::default()
//!     },
//!     role_ref: RoleRef { api_group: Some("rbac.authorization.k8s.io".into()), kind: "ClusterRole".into(), name: "view".into() },
//!     subjects: Some(vec![Subject { kind: "ServiceAccount".into(), name: "reader".into(), ..Default::default() }]),
//! };
//! let sa = UserInfo::service_account("default", "reader", "uid-1");
//! let list = Attributes::resource(sa.clone(), "list", "", "pods", "default", "");
//! assert!(authorize(&list, &[], &cluster_roles, &[binding.clone()], &bootstrap::cluster_role_bindings()).allowed());
//! let create = Attributes::resource(sa, "create", "", "pods", "default", "");
//! assert!(!authorize(&create, &[], &cluster_roles, &[binding], &bootstrap::cluster_role_bindings()).allowed());
//! assert_eq!(
//!     create.forbidden_status_message(""),
//!     r#"pods is forbidden: User "system:serviceaccount:default:reader" cannot create resource "pods" in API group "" in the namespace "default""#
//! );
//! ```
//!
//! - [`attributes`]: who asks for what ([`UserInfo`], [`Attributes`]) and kube's Forbidden wording.
//! - [`rules`]: one rule against one request (`*`, `*/subresource`, resourceNames, nonResourceURLs
//!   with a trailing `*`) and rule sets covering each other.
//! - [`authorizer`]: bindings to users, groups and ServiceAccounts; the decision; the rules a
//!   SelfSubjectRulesReview lists.
//! - [`aggregation`]: ClusterRoles with `aggregationRule` (the aggregation controller).
//! - [`escalation`]: no granting what you do not hold, unless you may `escalate` / `bind`.
//! - [`node`]: kube's Node authorizer and NodeRestriction admission over a [`NodeGraph`].
//! - [`bootstrap`] and [`reconcile`]: the default ClusterRoles and bindings, reconciled at start.

pub mod aggregation;
pub mod attributes;
pub mod authorizer;
pub mod bootstrap;
pub mod escalation;
pub mod node;
pub mod reconcile;
pub mod rules;

pub use aggregation::{aggregate_all, aggregated_rules};
pub use attributes::{Attributes, ResourceRequest, Target, UserInfo};
pub use authorizer::{
    Decision, Policy, PolicySource, authorize, authorize_with, rules_for, subject_rules_review,
};
pub use escalation::{EscalationError, RbacObject, check_rbac_write, confirm_no_escalation};
pub use node::{NodeGraph, NodeWrite, admit_node_write, authorize_node};
pub use reconcile::{
    Operation, Reconciled, reconcile_cluster_role, reconcile_cluster_role_binding,
};
pub use rules::rule_allows;

#[cfg(test)]
mod tests;
