//! One `PolicyRule` against one request, and one set of rules against another: kube's `rbacv1helpers`
//! matchers (`VerbMatches`, `ResourceMatches`, …, `RuleAllows`) and `validation.Covers`.

use crate::attributes::{Attributes, Target};
use k8s_openapi::api::rbac::v1::PolicyRule;

/// `*` in verbs, apiGroups, resources and nonResourceURLs.
pub const ALL: &str = "*";

fn list(v: &Option<Vec<String>>) -> &[String] {
    v.as_deref().unwrap_or_default()
}

fn has(set: &[String], item: &str) -> bool {
    set.iter().any(|s| s == item)
}

fn has_all(set: &[String], items: &[String]) -> bool {
    items.iter().all(|i| has(set, i))
}

pub fn verb_matches(rule: &PolicyRule, verb: &str) -> bool {
    rule.verbs.iter().any(|v| v == ALL || v == verb)
}

pub fn api_group_matches(rule: &PolicyRule, group: &str) -> bool {
    list(&rule.api_groups)
        .iter()
        .any(|g| g == ALL || g == group)
}

/// `combined` is `resource` or `resource/subresource`; a rule's `*` matches everything, `*/sub` any
/// resource's `sub` (kube has no `resource/*`).
pub fn resource_matches(rule: &PolicyRule, combined: &str, subresource: &str) -> bool {
    list(&rule.resources).iter().any(|r| {
        r == ALL
            || r == combined
            || (!subresource.is_empty()
                && r.strip_prefix("*/").is_some_and(|sub| sub == subresource))
    })
}

/// No resourceNames: every name (and requests without one, such as list and create); otherwise the
/// requested name must be listed.
pub fn resource_name_matches(rule: &PolicyRule, name: &str) -> bool {
    let names = list(&rule.resource_names);
    names.is_empty() || has(names, name)
}

/// `*` matches every path, `/apis/*` every path under `/apis/`, otherwise the path exactly.
pub fn non_resource_url_matches(rule: &PolicyRule, path: &str) -> bool {
    list(&rule.non_resource_urls).iter().any(|u| {
        u == ALL
            || u == path
            || u.strip_suffix('*')
                .is_some_and(|prefix| path.starts_with(prefix))
    })
}

/// Whether `rule` allows the request (kube's `RuleAllows`).
pub fn rule_allows(attrs: &Attributes, rule: &PolicyRule) -> bool {
    match &attrs.target {
        Target::Resource(r) => {
            let combined = if r.subresource.is_empty() {
                r.resource.clone()
            } else {
                format!("{}/{}", r.resource, r.subresource)
            };
            verb_matches(rule, &attrs.verb)
                && api_group_matches(rule, &r.api_group)
                && resource_matches(rule, &combined, &r.subresource)
                && resource_name_matches(rule, &r.name)
        }
        Target::NonResource { path } => {
            verb_matches(rule, &attrs.verb) && non_resource_url_matches(rule, path)
        }
    }
}

/// A rule from its parts; `None` for an empty list, as the API stores them.
pub fn rule(
    verbs: &[&str],
    api_groups: &[&str],
    resources: &[&str],
    resource_names: &[&str],
    non_resource_urls: &[&str],
) -> PolicyRule {
    let opt = |v: &[&str]| (!v.is_empty()).then(|| v.iter().map(|s| s.to_string()).collect());
    PolicyRule {
        verbs: verbs.iter().map(|s| s.to_string()).collect(),
        api_groups: opt(api_groups),
        resources: opt(resources),
        resource_names: opt(resource_names),
        non_resource_urls: opt(non_resource_urls),
    }
}

/// One rule per (group, resource, verb, name) and per (URL, verb) (kube's `BreakdownRule`).
pub fn breakdown_rule(r: &PolicyRule) -> Vec<PolicyRule> {
    let mut out = Vec::new();
    for group in list(&r.api_groups) {
        for resource in list(&r.resources) {
            for verb in &r.verbs {
                let names = list(&r.resource_names);
                if names.is_empty() {
                    out.push(rule(&[verb], &[group], &[resource], &[], &[]));
                } else {
                    for name in names {
                        out.push(rule(&[verb], &[group], &[resource], &[name], &[]));
                    }
                }
            }
        }
    }
    for url in list(&r.non_resource_urls) {
        for verb in &r.verbs {
            out.push(rule(&[verb], &[], &[], &[], &[url]));
        }
    }
    out
}

fn resource_covers_all(owner: &[String], sub: &[String]) -> bool {
    if has(owner, ALL) || has_all(owner, sub) {
        return true;
    }
    sub.iter().all(|path| {
        has(owner, path)
            || path
                .split_once('/')
                .is_some_and(|(_, subresource)| has(owner, &format!("*/{subresource}")))
    })
}

fn non_resource_url_covers(owner: &str, sub: &str) -> bool {
    owner == sub || (owner.ends_with('*') && sub.starts_with(owner.trim_end_matches('*')))
}

fn non_resource_urls_cover_all(owner: &[String], sub: &[String]) -> bool {
    sub.iter()
        .all(|path| owner.iter().any(|o| non_resource_url_covers(o, path)))
}

/// Whether `owner` grants everything `sub` does (kube's `ruleCovers`).
pub fn rule_covers(owner: &PolicyRule, sub: &PolicyRule) -> bool {
    let verbs = has(&owner.verbs, ALL) || has_all(&owner.verbs, &sub.verbs);
    let groups = has(list(&owner.api_groups), ALL)
        || has_all(list(&owner.api_groups), list(&sub.api_groups));
    let resources = resource_covers_all(list(&owner.resources), list(&sub.resources));
    let urls =
        non_resource_urls_cover_all(list(&owner.non_resource_urls), list(&sub.non_resource_urls));
    let owner_names = list(&owner.resource_names);
    let names = owner_names.is_empty()
        || (!list(&sub.resource_names).is_empty()
            && has_all(owner_names, list(&sub.resource_names)));
    verbs && groups && resources && names && urls
}

/// Whether `owner` rules cover every one of `servant` rules; the broken-down rules they miss (kube's
/// `validation.Covers`).
pub fn covers(owner: &[PolicyRule], servant: &[PolicyRule]) -> (bool, Vec<PolicyRule>) {
    let uncovered: Vec<PolicyRule> = servant
        .iter()
        .flat_map(breakdown_rule)
        .filter(|sub| !owner.iter().any(|o| rule_covers(o, sub)))
        .collect();
    (uncovered.is_empty(), uncovered)
}

/// Broken-down rules that differ only in their verbs merged into one (kube's `CompactRules`):
/// single-group, single-resource rules; other rules stay as they are.
pub fn compact_rules(rules: &[PolicyRule]) -> Vec<PolicyRule> {
    let mut out: Vec<PolicyRule> = Vec::new();
    for r in rules {
        let simple = list(&r.api_groups).len() == 1
            && list(&r.resources).len() == 1
            && list(&r.resource_names).len() <= 1
            && list(&r.non_resource_urls).is_empty();
        if simple
            && let Some(existing) = out.iter_mut().find(|o| {
                list(&o.api_groups).len() == 1
                    && o.api_groups == r.api_groups
                    && o.resources == r.resources
                    && o.resource_names == r.resource_names
                    && list(&o.non_resource_urls).is_empty()
            })
        {
            existing.verbs.extend(r.verbs.iter().cloned());
            continue;
        }
        out.push(r.clone());
    }
    out
}

/// Go's `%q` of a `[]string`: `["a" "b"]`.
pub(crate) fn go_quoted_list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| format!("{s:?}")).collect();
    format!("[{}]", quoted.join(" "))
}

/// A rule as kube's `rbacv1helpers.CompactString`: `{APIGroups:["apps"], Resources:["deployments"],
/// Verbs:["create"]}`; empty parts left out.
pub fn compact_string(r: &PolicyRule) -> String {
    let mut parts = Vec::new();
    for (label, items) in [
        ("APIGroups", list(&r.api_groups)),
        ("Resources", list(&r.resources)),
        ("NonResourceURLs", list(&r.non_resource_urls)),
        ("ResourceNames", list(&r.resource_names)),
        ("Verbs", r.verbs.as_slice()),
    ] {
        if !items.is_empty() {
            parts.push(format!("{label}:{}", go_quoted_list(items)));
        }
    }
    format!("{{{}}}", parts.join(", "))
}
