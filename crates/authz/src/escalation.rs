//! kube's RBAC escalation checks: a user may create or update a Role, ClusterRole or binding only if it
//! grants nothing the user does not hold (`validation.ConfirmNoEscalation`), unless the user may
//! `escalate` that role / `bind` that role or is in `system:masters` (the `policybased` REST storages
//! of `pkg/registry/rbac`).

use crate::attributes::{Attributes, SYSTEM_MASTERS, UserInfo};
use crate::authorizer::{PolicySource, authorize_with, role_ref_rules, rules_for};
use crate::rules::{compact_rules, compact_string, covers, go_quoted_list, rule};
use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef,
};

const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

/// Why a write is refused. The API answers 403: `{resource}.rbac.authorization.k8s.io "{name}" is
/// forbidden: {this error}` (kube's `errors.NewForbidden`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EscalationError {
    /// `user "alice" (groups=["system:authenticated"]) is attempting to grant RBAC permissions not
    /// currently held:\n{APIGroups:[""], Resources:["secrets"], Verbs:["get"]}`
    #[error("{0}")]
    NotHeld(String),
    /// The role a binding names does not exist (`clusterrole.rbac.authorization.k8s.io "x" not found`).
    #[error("{0}")]
    RoleRef(String),
    #[error("must have cluster-admin privileges to use the aggregationRule")]
    AggregationRule,
}

/// Whether `user`'s own rules in `namespace` cover `rules` (kube's `ConfirmNoEscalation`); the error
/// lists what is missing as kube does (compacted, sorted, one rule a line).
pub fn confirm_no_escalation<S: PolicySource>(
    source: &S,
    user: &UserInfo,
    namespace: &str,
    rules: &[PolicyRule],
) -> Result<(), EscalationError> {
    let (owner, resolution_errors) = rules_for(source, user, namespace);
    let (ok, missing) = covers(&owner, rules);
    if ok {
        return Ok(());
    }
    let mut described: Vec<String> = compact_rules(&missing).iter().map(compact_string).collect();
    described.sort();
    described.dedup();
    let mut msg = format!(
        "user {:?} (groups={}) is attempting to grant RBAC permissions not currently held:\n{}",
        user.name,
        go_quoted_list(&user.groups),
        described.join("\n")
    );
    if !resolution_errors.is_empty() {
        // Go's %v of a []error: `[a b]`.
        msg.push_str(&format!(
            "; resolution errors: [{}]",
            resolution_errors.join(" ")
        ));
    }
    Err(EscalationError::NotHeld(msg))
}

/// An RBAC object being written.
#[derive(Clone, Copy, Debug)]
pub enum RbacObject<'a> {
    Role(&'a Role),
    ClusterRole(&'a ClusterRole),
    RoleBinding(&'a RoleBinding),
    ClusterRoleBinding(&'a ClusterRoleBinding),
}

impl RbacObject<'_> {
    fn namespace(&self) -> &str {
        let meta = match self {
            RbacObject::Role(o) => &o.metadata,
            RbacObject::ClusterRole(_) | RbacObject::ClusterRoleBinding(_) => return "",
            RbacObject::RoleBinding(o) => &o.metadata,
        };
        meta.namespace.as_deref().unwrap_or_default()
    }
}

fn allowed<S: PolicySource>(source: &S, attrs: &Attributes) -> bool {
    authorize_with(source, attrs).allowed()
}

/// `escalate` on the role's resource (kube's `RoleEscalationAuthorized`); `name` is the request's
/// (empty on create).
fn escalate_authorized<S: PolicySource>(
    source: &S,
    user: &UserInfo,
    resource: &str,
    namespace: &str,
    name: &str,
) -> bool {
    allowed(
        source,
        &Attributes::resource(
            user.clone(),
            "escalate",
            RBAC_GROUP,
            resource,
            namespace,
            name,
        ),
    )
}

/// `bind` on the referenced role, in the binding's namespace (kube's `BindingAuthorized`).
fn bind_authorized<S: PolicySource>(
    source: &S,
    user: &UserInfo,
    role_ref: &RoleRef,
    namespace: &str,
) -> bool {
    let resource = match role_ref.kind.as_str() {
        "ClusterRole" => "clusterroles",
        "Role" => "roles",
        _ => return false,
    };
    allowed(
        source,
        &Attributes::resource(
            user.clone(),
            "bind",
            role_ref.api_group.as_deref().unwrap_or_default(),
            resource,
            namespace,
            &role_ref.name,
        ),
    )
}

fn full_authority() -> [PolicyRule; 2] {
    [
        rule(&["*"], &["*"], &["*"], &[], &[]),
        rule(&["*"], &[], &[], &[], &["*"]),
    ]
}

fn has_aggregation_rule(role: &ClusterRole) -> bool {
    role.aggregation_rule.as_ref().is_some_and(|a| {
        a.cluster_role_selectors
            .as_ref()
            .is_some_and(|s| !s.is_empty())
    })
}

/// Whether `user` may write `object`: `old` is the stored object on update, `None` on create.
///
/// - `system:masters` may write anything (kube's `EscalationAllowed`).
/// - A Role/ClusterRole: allowed with `escalate` on it, else its rules must be covered by the user's
///   own (in the role's namespace; cluster-wide for a ClusterRole). A ClusterRole's rules are not
///   checked on update when it aggregates (the aggregation controller writes them), and setting or
///   changing an `aggregationRule` needs every permission (`*` on everything).
/// - A binding: allowed with `bind` on the role it names, else the user must hold every rule of that
///   role.
pub fn check_rbac_write<S: PolicySource>(
    source: &S,
    user: &UserInfo,
    object: RbacObject<'_>,
    old: Option<RbacObject<'_>>,
) -> Result<(), EscalationError> {
    if user.in_group(SYSTEM_MASTERS) {
        return Ok(());
    }
    let namespace = object.namespace();
    let request_name = |meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| {
        if old.is_some() {
            meta.name.clone().unwrap_or_default()
        } else {
            String::new()
        }
    };
    match object {
        RbacObject::Role(role) => {
            if escalate_authorized(
                source,
                user,
                "roles",
                namespace,
                &request_name(&role.metadata),
            ) {
                return Ok(());
            }
            confirm_no_escalation(
                source,
                user,
                namespace,
                role.rules.as_deref().unwrap_or_default(),
            )
        }
        RbacObject::ClusterRole(role) => {
            if escalate_authorized(
                source,
                user,
                "clusterroles",
                "",
                &request_name(&role.metadata),
            ) {
                return Ok(());
            }
            let old_role = match old {
                Some(RbacObject::ClusterRole(o)) => Some(o),
                _ => None,
            };
            let rules: &[PolicyRule] = if old_role.is_some() && has_aggregation_rule(role) {
                &[]
            } else {
                role.rules.as_deref().unwrap_or_default()
            };
            confirm_no_escalation(source, user, "", rules)?;
            let aggregation_changed = match old_role {
                None => has_aggregation_rule(role),
                Some(o) => o.aggregation_rule != role.aggregation_rule,
            };
            if aggregation_changed
                && confirm_no_escalation(source, user, "", &full_authority()).is_err()
            {
                return Err(EscalationError::AggregationRule);
            }
            Ok(())
        }
        RbacObject::RoleBinding(b) => check_binding(source, user, &b.role_ref, namespace),
        RbacObject::ClusterRoleBinding(b) => check_binding(source, user, &b.role_ref, ""),
    }
}

fn check_binding<S: PolicySource>(
    source: &S,
    user: &UserInfo,
    role_ref: &RoleRef,
    namespace: &str,
) -> Result<(), EscalationError> {
    if bind_authorized(source, user, role_ref, namespace) {
        return Ok(());
    }
    let rules = role_ref_rules(source, role_ref, namespace).map_err(EscalationError::RoleRef)?;
    confirm_no_escalation(source, user, namespace, rules)
}
