//! kube's RBAC authorizer: which bindings apply to a user, the rules of the roles they name, and the
//! decision for one request (`rbac.RBACAuthorizer.Authorize` over `DefaultRuleResolver.VisitRulesFor`).

use crate::attributes::{Attributes, SYSTEM_MASTERS, UserInfo, service_account_username};
use crate::rules::rule_allows;
use k8s_openapi::api::authorization::v1::{
    NonResourceRule, ResourceRule, SubjectRulesReviewStatus,
};
use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject,
};
use std::ops::ControlFlow;

/// Where the authorizer reads RBAC objects: the API server's informer caches, or slices ([`Policy`]).
pub trait PolicySource {
    fn role(&self, namespace: &str, name: &str) -> Option<&Role>;
    fn cluster_role(&self, name: &str) -> Option<&ClusterRole>;
    /// The RoleBindings of one namespace.
    fn role_bindings(&self, namespace: &str) -> impl Iterator<Item = &RoleBinding>;
    fn cluster_role_bindings(&self) -> impl Iterator<Item = &ClusterRoleBinding>;
}

/// RBAC objects held in slices (lookups are linear; a cache keyed by namespace and name implements
/// [`PolicySource`] itself).
#[derive(Clone, Copy, Debug, Default)]
pub struct Policy<'a> {
    pub roles: &'a [Role],
    pub cluster_roles: &'a [ClusterRole],
    pub role_bindings: &'a [RoleBinding],
    pub cluster_role_bindings: &'a [ClusterRoleBinding],
}

fn ns_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> &str {
    meta.namespace.as_deref().unwrap_or_default()
}

fn name_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> &str {
    meta.name.as_deref().unwrap_or_default()
}

impl PolicySource for Policy<'_> {
    fn role(&self, namespace: &str, name: &str) -> Option<&Role> {
        self.roles
            .iter()
            .find(|r| ns_of(&r.metadata) == namespace && name_of(&r.metadata) == name)
    }
    fn cluster_role(&self, name: &str) -> Option<&ClusterRole> {
        self.cluster_roles
            .iter()
            .find(|r| name_of(&r.metadata) == name)
    }
    fn role_bindings(&self, namespace: &str) -> impl Iterator<Item = &RoleBinding> {
        let namespace = namespace.to_string();
        self.role_bindings
            .iter()
            .filter(move |b| ns_of(&b.metadata) == namespace)
    }
    fn cluster_role_bindings(&self) -> impl Iterator<Item = &ClusterRoleBinding> {
        self.cluster_role_bindings.iter()
    }
}

/// The authorizer's answer. RBAC only ever allows; `NoOpinion` becomes a 403 when no other authorizer
/// (the Node authorizer) allows, with [`Attributes::forbidden_status_message`] and the reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// `reason`: `RBAC: allowed by ClusterRoleBinding "x" of ClusterRole "y" to User "alice"`
    /// (empty for `system:masters`); what a SubjectAccessReview reports.
    Allow { reason: String },
    /// `reason`: empty, or `RBAC: ` and the roles that bindings name but that do not exist.
    NoOpinion { reason: String },
}

impl Decision {
    pub fn allowed(&self) -> bool {
        matches!(self, Decision::Allow { .. })
    }
    pub fn reason(&self) -> &str {
        match self {
            Decision::Allow { reason } | Decision::NoOpinion { reason } => reason,
        }
    }
}

/// Whether a binding's subject names this user (kube's `appliesToUser`). A ServiceAccount subject
/// without a namespace means one in the binding's namespace.
pub fn subject_applies(user: &UserInfo, subject: &Subject, binding_namespace: &str) -> bool {
    match subject.kind.as_str() {
        "User" => user.name == subject.name,
        "Group" => user.in_group(&subject.name),
        "ServiceAccount" => {
            let ns = match subject.namespace.as_deref() {
                Some(ns) if !ns.is_empty() => ns,
                _ => binding_namespace,
            };
            !ns.is_empty() && user.name == service_account_username(ns, &subject.name)
        }
        _ => false,
    }
}

fn applicable_subject<'s>(
    user: &UserInfo,
    subjects: &'s Option<Vec<Subject>>,
    binding_namespace: &str,
) -> Option<&'s Subject> {
    subjects
        .iter()
        .flatten()
        .find(|s| subject_applies(user, s, binding_namespace))
}

/// `User "alice"`, `Group "g"`, `ServiceAccount "name/ns"` (kube's `describeSubject`).
fn describe_subject(s: &Subject, binding_namespace: &str) -> String {
    match s.kind.as_str() {
        "ServiceAccount" => {
            let ns = match s.namespace.as_deref() {
                Some(ns) if !ns.is_empty() => ns,
                _ => binding_namespace,
            };
            format!("{} {:?}", s.kind, format!("{}/{ns}", s.name))
        }
        _ => format!("{} {:?}", s.kind, s.name),
    }
}

/// The rules of the role a binding names (kube's `GetRoleReferenceRules`); a Role is looked up in the
/// binding's namespace (`""` for a ClusterRoleBinding: never found). The error is the lister's
/// NotFound text.
pub fn role_ref_rules<'p, S: PolicySource>(
    source: &'p S,
    role_ref: &RoleRef,
    binding_namespace: &str,
) -> Result<&'p [PolicyRule], String> {
    match role_ref.kind.as_str() {
        "Role" => source
            .role(binding_namespace, &role_ref.name)
            .map(|r| r.rules.as_deref().unwrap_or_default())
            .ok_or_else(|| {
                format!(
                    "role.rbac.authorization.k8s.io {:?} not found",
                    role_ref.name
                )
            }),
        "ClusterRole" => source
            .cluster_role(&role_ref.name)
            .map(|r| r.rules.as_deref().unwrap_or_default())
            .ok_or_else(|| {
                format!(
                    "clusterrole.rbac.authorization.k8s.io {:?} not found",
                    role_ref.name
                )
            }),
        other => Err(format!("unsupported role reference kind: {other:?}")),
    }
}

/// One step of [`visit_rules_for`]: a rule and the binding it came from, or a role that could not be
/// resolved.
pub enum Visit<'a> {
    Rule {
        rule: &'a PolicyRule,
        /// `ClusterRoleBinding "x" of ClusterRole "y" to User "alice"`.
        source: &'a dyn Fn() -> String,
    },
    Error(String),
}

/// Every rule that applies to `user` in `namespace` (`""`: cluster-wide rules only), ClusterRoleBindings
/// first, then the namespace's RoleBindings, until `visit` breaks (kube's `VisitRulesFor`).
pub fn visit_rules_for<S: PolicySource>(
    source: &S,
    user: &UserInfo,
    namespace: &str,
    mut visit: impl FnMut(Visit<'_>) -> ControlFlow<()>,
) {
    for binding in source.cluster_role_bindings() {
        let Some(subject) = applicable_subject(user, &binding.subjects, "") else {
            continue;
        };
        match role_ref_rules(source, &binding.role_ref, "") {
            Err(e) => {
                if visit(Visit::Error(e)).is_break() {
                    return;
                }
            }
            Ok(rules) => {
                let describe = || {
                    format!(
                        "ClusterRoleBinding {:?} of {} {:?} to {}",
                        name_of(&binding.metadata),
                        binding.role_ref.kind,
                        binding.role_ref.name,
                        describe_subject(subject, "")
                    )
                };
                for rule in rules {
                    if visit(Visit::Rule {
                        rule,
                        source: &describe,
                    })
                    .is_break()
                    {
                        return;
                    }
                }
            }
        }
    }
    if namespace.is_empty() {
        return;
    }
    for binding in source.role_bindings(namespace) {
        let Some(subject) = applicable_subject(user, &binding.subjects, namespace) else {
            continue;
        };
        match role_ref_rules(source, &binding.role_ref, namespace) {
            Err(e) => {
                if visit(Visit::Error(e)).is_break() {
                    return;
                }
            }
            Ok(rules) => {
                let describe = || {
                    format!(
                        "RoleBinding {:?} of {} {:?} to {}",
                        format!("{}/{namespace}", name_of(&binding.metadata)),
                        binding.role_ref.kind,
                        binding.role_ref.name,
                        describe_subject(subject, namespace)
                    )
                };
                for rule in rules {
                    if visit(Visit::Rule {
                        rule,
                        source: &describe,
                    })
                    .is_break()
                    {
                        return;
                    }
                }
            }
        }
    }
}

/// Errors joined as Go's `utilerrors.NewAggregate(errs).Error()`: one as it is, several (duplicates
/// dropped) as `[a, b]`.
pub(crate) fn aggregate_errors(errors: &[String]) -> String {
    let mut seen: Vec<&str> = Vec::new();
    for e in errors {
        if !seen.contains(&e.as_str()) {
            seen.push(e);
        }
    }
    match seen.len() {
        0 => String::new(),
        1 => seen[0].to_string(),
        _ => format!("[{}]", seen.join(", ")),
    }
}

/// The rules that apply to `user` in `namespace` and the roles that could not be resolved (kube's
/// `RulesFor`: a partial list and an error).
pub fn rules_for<S: PolicySource>(
    source: &S,
    user: &UserInfo,
    namespace: &str,
) -> (Vec<PolicyRule>, Vec<String>) {
    let mut rules = Vec::new();
    let mut errors = Vec::new();
    visit_rules_for(source, user, namespace, |v| {
        match v {
            Visit::Rule { rule, .. } => rules.push(rule.clone()),
            Visit::Error(e) => errors.push(e),
        }
        ControlFlow::Continue(())
    });
    (rules, errors)
}

/// Authorize one request: `system:masters` is allowed everything (kube's privileged-group authorizer,
/// which runs before RBAC); otherwise the first rule of an applicable binding that allows the request.
pub fn authorize_with<S: PolicySource>(source: &S, attrs: &Attributes) -> Decision {
    if attrs.user.in_group(SYSTEM_MASTERS) {
        return Decision::Allow {
            reason: String::new(),
        };
    }
    let mut allowed_by = None;
    let mut errors = Vec::new();
    visit_rules_for(source, &attrs.user, attrs.namespace(), |v| match v {
        Visit::Rule { rule, source } => {
            if rule_allows(attrs, rule) {
                allowed_by = Some(source());
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        }
        Visit::Error(e) => {
            errors.push(e);
            ControlFlow::Continue(())
        }
    });
    match allowed_by {
        Some(by) => Decision::Allow {
            reason: format!("RBAC: allowed by {by}"),
        },
        None if errors.is_empty() => Decision::NoOpinion {
            reason: String::new(),
        },
        None => Decision::NoOpinion {
            reason: format!("RBAC: {}", aggregate_errors(&errors)),
        },
    }
}

/// [`authorize_with`] over slices of RBAC objects.
pub fn authorize(
    attrs: &Attributes,
    roles: &[Role],
    cluster_roles: &[ClusterRole],
    role_bindings: &[RoleBinding],
    cluster_role_bindings: &[ClusterRoleBinding],
) -> Decision {
    authorize_with(
        &Policy {
            roles,
            cluster_roles,
            role_bindings,
            cluster_role_bindings,
        },
        attrs,
    )
}

/// What a SelfSubjectRulesReview answers for `user` in `namespace` (kube's `RBACAuthorizer.RulesFor`
/// as the `selfsubjectrulesreviews` REST storage renders it): each rule with resources as a
/// ResourceRule, each with nonResourceURLs as a NonResourceRule, unresolvable roles in
/// `evaluationError`. `incomplete` stays false: RBAC knows all its rules.
pub fn subject_rules_review<S: PolicySource>(
    source: &S,
    user: &UserInfo,
    namespace: &str,
) -> SubjectRulesReviewStatus {
    let (rules, errors) = rules_for(source, user, namespace);
    let mut status = SubjectRulesReviewStatus {
        evaluation_error: (!errors.is_empty()).then(|| aggregate_errors(&errors)),
        incomplete: false,
        ..Default::default()
    };
    for r in rules {
        if r.resources.as_ref().is_some_and(|v| !v.is_empty()) {
            status.resource_rules.push(ResourceRule {
                verbs: r.verbs.clone(),
                api_groups: r.api_groups.clone(),
                resources: r.resources.clone(),
                resource_names: r.resource_names.clone(),
            });
        }
        if r.non_resource_urls.as_ref().is_some_and(|v| !v.is_empty()) {
            status.non_resource_rules.push(NonResourceRule {
                verbs: r.verbs,
                non_resource_urls: r.non_resource_urls,
            });
        }
    }
    status
}
