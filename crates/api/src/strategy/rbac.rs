//! kube-apiserver's strategies for the `rbac.authorization.k8s.io/v1` kinds — Role, ClusterRole, RoleBinding,
//! ClusterRoleBinding: the defaults of `pkg/apis/rbac/v1/defaults.go` and the validation of
//! `pkg/apis/rbac/validation`, with kube's causes word for word. Names are RBAC names (any path segment, so
//! `system:controller:x` is valid); a binding's `roleRef` never changes. A ClusterRole's `aggregationRule` is
//! only validated and stored here; the aggregation controller fills its rules.

use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

use super::Kind;
use crate::validation::{self, Cause};

/// The RBAC API group, the only `roleRef.apiGroup` and the User/Group subjects' `apiGroup`.
pub const GROUP: &str = "rbac.authorization.k8s.io";

/// kube's `ValidateRBACName` (`path.IsValidPathSegmentName`): the reasons `name` cannot be a name of an
/// RBAC object, none when it can.
pub fn rbac_name_errors(name: &str) -> Vec<String> {
    if name == "." || name == ".." {
        return vec![format!("may not be '{name}'")];
    }
    ["/", "%"]
        .into_iter()
        .filter(|bad| name.contains(bad))
        .map(|bad| format!("may not contain '{bad}'"))
        .collect()
}

/// kube's `ValidateObjectMeta` with `ValidateRBACName`: the name rule of the four kinds.
pub(super) fn validate_meta(meta: &ObjectMeta, causes: &mut Vec<Cause>) {
    match meta.name.as_deref() {
        None | Some("") if meta.generate_name.is_none() => {
            causes.push(Cause::required("metadata.name"));
        }
        None | Some("") => {}
        Some(name) => {
            for why in rbac_name_errors(name) {
                causes.push(Cause::invalid("metadata.name", name, &why));
            }
        }
    }
    validation::validate_labels(meta, causes);
}

/// `field.Required(path, detail)`: `Required value: detail`.
fn required(field: String, detail: &str) -> Cause {
    Cause {
        reason: "FieldValueRequired",
        field,
        message: format!("Required value: {detail}"),
    }
}

/// `field.Invalid` of a value Go prints with `%#v` (a slice, a struct).
fn invalid_go(field: String, go_value: String, why: &str) -> Cause {
    Cause {
        reason: "FieldValueInvalid",
        field,
        message: format!("Invalid value: {go_value}: {why}"),
    }
}

/// Go's `%#v` of a `[]string`: `[]string{"a", "b"}`.
fn go_strings(list: &[String]) -> String {
    let items = list
        .iter()
        .map(|s| format!("{s:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!("[]string{{{items}}}")
}

fn len(list: Option<&Vec<String>>) -> usize {
    list.map_or(0, Vec::len)
}

/// kube's `ValidatePolicyRule`: verbs always; then either non-resource URLs alone (never in a Role) or API
/// groups and resources.
fn validate_policy_rule(rule: &PolicyRule, namespaced: bool, path: &str, causes: &mut Vec<Cause>) {
    if rule.verbs.is_empty() {
        causes.push(required(
            format!("{path}.verbs"),
            "verbs must contain at least one value",
        ));
    }
    if let Some(urls) = rule.non_resource_urls.as_ref().filter(|u| !u.is_empty()) {
        let field = format!("{path}.nonResourceURLs");
        if namespaced {
            causes.push(invalid_go(
                field.clone(),
                go_strings(urls),
                "namespaced rules cannot apply to non-resource URLs",
            ));
        }
        if len(rule.api_groups.as_ref()) > 0
            || len(rule.resources.as_ref()) > 0
            || len(rule.resource_names.as_ref()) > 0
        {
            causes.push(invalid_go(
                field,
                go_strings(urls),
                "rules cannot apply to both regular resources and non-resource URLs",
            ));
        }
        return;
    }
    if len(rule.api_groups.as_ref()) == 0 {
        causes.push(required(
            format!("{path}.apiGroups"),
            "resource rules must supply at least one api group",
        ));
    }
    if len(rule.resources.as_ref()) == 0 {
        causes.push(required(
            format!("{path}.resources"),
            "resource rules must supply at least one resource",
        ));
    }
}

fn validate_rules(rules: Option<&Vec<PolicyRule>>, namespaced: bool, causes: &mut Vec<Cause>) {
    for (i, rule) in rules.into_iter().flatten().enumerate() {
        validate_policy_rule(rule, namespaced, &format!("rules[{i}]"), causes);
    }
}

/// kube's `ValidateLabelSelector` of an aggregation selector: label keys and values, and each requirement's
/// operator and values.
fn validate_label_selector(sel: &LabelSelector, path: &str, causes: &mut Vec<Cause>) {
    let valid_value = |v: &str| {
        v.len() <= 63
            && v.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    };
    for (key, value) in sel.match_labels.iter().flatten() {
        if !validation::valid_qualified_name(key) {
            causes.push(Cause::invalid(
                format!("{path}.matchLabels"),
                key,
                "name part must consist of alphanumeric characters, '-', '_' or '.'",
            ));
        }
        if !valid_value(value) {
            causes.push(Cause::invalid(format!("{path}.matchLabels"), value, "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.'"));
        }
    }
    for (i, req) in sel.match_expressions.iter().flatten().enumerate() {
        let at = format!("{path}.matchExpressions[{i}]");
        let values = req.values.as_deref().unwrap_or_default();
        match req.operator.as_str() {
            "In" | "NotIn" if values.is_empty() => causes.push(required(
                format!("{at}.values"),
                "must be specified when `operator` is 'In' or 'NotIn'",
            )),
            "Exists" | "DoesNotExist" if !values.is_empty() => causes.push(Cause::forbidden(
                format!("{at}.values"),
                "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
            )),
            "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
            other => causes.push(Cause::invalid(
                format!("{at}.operator"),
                other,
                "not a valid selector operator",
            )),
        }
        if !validation::valid_qualified_name(&req.key) {
            causes.push(Cause::invalid(
                format!("{at}.key"),
                &req.key,
                "name part must consist of alphanumeric characters, '-', '_' or '.'",
            ));
        }
        for (j, value) in values.iter().enumerate() {
            if !valid_value(value) {
                causes.push(Cause::invalid(format!("{at}.values[{j}]"), value, "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.'"));
            }
        }
    }
}

/// kube's `SetDefaults_RoleBinding` / `SetDefaults_ClusterRoleBinding` and `SetDefaults_Subject`: the role
/// and User/Group subjects are in the RBAC group unless they say otherwise.
fn default_binding(role_ref: &mut RoleRef, subjects: Option<&mut Vec<Subject>>) {
    if role_ref.api_group.as_deref().unwrap_or_default().is_empty() {
        role_ref.api_group = Some(GROUP.into());
    }
    for subject in subjects.into_iter().flatten() {
        if subject.api_group.as_deref().unwrap_or_default().is_empty()
            && matches!(subject.kind.as_str(), "User" | "Group")
        {
            subject.api_group = Some(GROUP.into());
        }
    }
}

/// kube's `ValidateRoleBinding` / `ValidateClusterRoleBinding` after the metadata: the role reference, which
/// a ClusterRoleBinding may point at a ClusterRole only, and each subject.
fn validate_binding(
    role_ref: &RoleRef,
    subjects: Option<&Vec<Subject>>,
    kinds: &[&str],
    namespaced: bool,
    causes: &mut Vec<Cause>,
) {
    let api_group = role_ref.api_group.as_deref().unwrap_or_default();
    if api_group != GROUP {
        causes.push(Cause::not_supported(
            "roleRef.apiGroup",
            api_group,
            &[GROUP],
        ));
    }
    if !kinds.contains(&role_ref.kind.as_str()) {
        causes.push(Cause::not_supported("roleRef.kind", &role_ref.kind, kinds));
    }
    if role_ref.name.is_empty() {
        causes.push(Cause::required("roleRef.name"));
    } else {
        for why in rbac_name_errors(&role_ref.name) {
            causes.push(Cause::invalid("roleRef.name", &role_ref.name, &why));
        }
    }
    for (i, subject) in subjects.into_iter().flatten().enumerate() {
        validate_subject(subject, namespaced, &format!("subjects[{i}]"), causes);
    }
}

/// kube's `ValidateRoleBindingSubject`.
fn validate_subject(subject: &Subject, namespaced: bool, path: &str, causes: &mut Vec<Cause>) {
    if subject.name.is_empty() {
        causes.push(Cause::required(format!("{path}.name")));
    }
    let api_group = subject.api_group.as_deref().unwrap_or_default();
    match subject.kind.as_str() {
        "ServiceAccount" => {
            if !subject.name.is_empty() {
                for why in service_account_name_errors(&subject.name) {
                    causes.push(Cause::invalid(format!("{path}.name"), &subject.name, why));
                }
            }
            if !api_group.is_empty() {
                causes.push(Cause::not_supported(
                    format!("{path}.apiGroup"),
                    api_group,
                    &[""],
                ));
            }
            if !namespaced && subject.namespace.as_deref().unwrap_or_default().is_empty() {
                causes.push(Cause::required(format!("{path}.namespace")));
            }
        }
        "User" | "Group" => {
            if api_group != GROUP {
                causes.push(Cause::not_supported(
                    format!("{path}.apiGroup"),
                    api_group,
                    &[GROUP],
                ));
            }
        }
        other => causes.push(Cause::not_supported(
            format!("{path}.kind"),
            other,
            &["ServiceAccount", "User", "Group"],
        )),
    }
}

/// kube's `ValidateServiceAccountName` (`IsDNS1123Subdomain`): its length and pattern messages.
fn service_account_name_errors(name: &str) -> Vec<&'static str> {
    let mut out = Vec::new();
    if name.len() > 253 {
        out.push("must be no more than 253 characters");
    }
    let part_ok = |p: &str| {
        !p.is_empty()
            && p.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !p.starts_with('-')
            && !p.ends_with('-')
    };
    if !name.split('.').all(part_ok) {
        out.push(validation::DNS1123_SUBDOMAIN_MSG);
    }
    out
}

/// kube's `ValidateRoleBindingUpdate`: `cannot change roleRef`, the value printed as Go prints the struct.
fn validate_role_ref_unchanged(new: &RoleRef, old: &RoleRef, causes: &mut Vec<Cause>) {
    if new != old {
        causes.push(invalid_go(
            "roleRef".into(),
            format!(
                "rbac.RoleRef{{APIGroup:{:?}, Kind:{:?}, Name:{:?}}}",
                new.api_group.as_deref().unwrap_or_default(),
                new.kind,
                new.name
            ),
            "cannot change roleRef",
        ));
    }
}

impl Kind for Role {
    const RBAC_NAMES: bool = true;

    fn validate(&self, causes: &mut Vec<Cause>) {
        validate_rules(self.rules.as_ref(), true, causes);
    }
}

impl Kind for ClusterRole {
    const RBAC_NAMES: bool = true;

    fn validate(&self, causes: &mut Vec<Cause>) {
        validate_rules(self.rules.as_ref(), false, causes);
        if let Some(rule) = &self.aggregation_rule {
            let selectors = rule.cluster_role_selectors.as_deref().unwrap_or_default();
            if selectors.is_empty() {
                causes.push(required(
                    "aggregationRule.clusterRoleSelectors".into(),
                    "at least one clusterRoleSelector required if aggregationRule is non-nil",
                ));
            }
            for (i, sel) in selectors.iter().enumerate() {
                validate_label_selector(
                    sel,
                    &format!("aggregationRule.clusterRoleSelectors[{i}]"),
                    causes,
                );
            }
        }
    }
}

impl Kind for RoleBinding {
    const RBAC_NAMES: bool = true;

    fn default(&mut self) {
        default_binding(&mut self.role_ref, self.subjects.as_mut());
    }

    fn validate(&self, causes: &mut Vec<Cause>) {
        validate_binding(
            &self.role_ref,
            self.subjects.as_ref(),
            &["Role", "ClusterRole"],
            true,
            causes,
        );
    }

    fn validate_update(&mut self, old: &Self, causes: &mut Vec<Cause>) {
        validate_role_ref_unchanged(&self.role_ref, &old.role_ref, causes);
    }
}

impl Kind for ClusterRoleBinding {
    const RBAC_NAMES: bool = true;

    fn default(&mut self) {
        default_binding(&mut self.role_ref, self.subjects.as_mut());
    }

    fn validate(&self, causes: &mut Vec<Cause>) {
        validate_binding(
            &self.role_ref,
            self.subjects.as_ref(),
            &["ClusterRole"],
            false,
            causes,
        );
    }

    fn validate_update(&mut self, old: &Self, causes: &mut Vec<Cause>) {
        validate_role_ref_unchanged(&self.role_ref, &old.role_ref, causes);
    }
}

#[cfg(test)]
mod tests;
