//! The RBAC strategies against kube-apiserver's behaviour: each rule of `pkg/apis/rbac/validation` with its
//! field and message, the defaults, and the immutable `roleRef`.

use serde_json::{Value, json};

use crate::admission::{AdmitError, admit, admit_update};
use crate::resources::{ResourceInfo, by_kind};

fn rbac(kind: &str) -> &'static ResourceInfo {
    by_kind("rbac.authorization.k8s.io/v1", kind).unwrap()
}

/// The causes of a refused create, as `field: message`.
fn causes(kind: &str, obj: Value) -> Vec<String> {
    match admit(rbac(kind), obj) {
        Err(AdmitError::Invalid { causes, .. }) => causes
            .iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect(),
        other => panic!("{other:?}"),
    }
}

fn role(kind: &str, name: &str, rules: Value) -> Value {
    json!({"kind": kind, "metadata": {"name": name, "namespace": "ns"}, "rules": rules})
}

fn binding(kind: &str, role_ref: Value, subjects: Value) -> Value {
    json!({"kind": kind, "metadata": {"name": "b", "namespace": "ns"}, "roleRef": role_ref,
        "subjects": subjects})
}

#[test]
fn the_table_serves_the_four_kinds_at_kubes_paths() {
    let cases = [
        ("Role", "roles", true),
        ("ClusterRole", "clusterroles", false),
        ("RoleBinding", "rolebindings", true),
        ("ClusterRoleBinding", "clusterrolebindings", false),
    ];
    for (kind, plural, namespaced) in cases {
        let r = rbac(kind);
        assert_eq!((r.plural, r.namespaced), (plural, namespaced), "{kind}");
        assert_eq!(
            crate::resources::by_name(plural).map(|r| r.kind),
            Some(kind)
        );
    }
}

#[test]
fn rbac_names_are_path_segments() {
    let ok = role(
        "ClusterRole",
        "system:controller:Weird_Name",
        json!([{"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]}]),
    );
    assert!(admit(rbac("ClusterRole"), ok).is_ok());
    assert_eq!(
        causes("Role", role("Role", "a/b%c", json!([]))),
        [
            "metadata.name: Invalid value: \"a/b%c\": may not contain '/'",
            "metadata.name: Invalid value: \"a/b%c\": may not contain '%'"
        ]
    );
    assert_eq!(
        causes("RoleBinding", {
            let mut b = binding(
                "RoleBinding",
                json!({"kind": "Role", "name": ".."}),
                json!([]),
            );
            b["metadata"]["name"] = json!(".");
            b
        }),
        [
            "metadata.name: Invalid value: \".\": may not be '.'",
            "roleRef.name: Invalid value: \"..\": may not be '..'"
        ]
    );
    assert_eq!(
        causes(
            "ClusterRoleBinding",
            json!({"metadata": {}, "roleRef": {"kind": "ClusterRole", "name": "view"}})
        ),
        ["metadata.name: Required value"]
    );
}

#[test]
fn a_rule_needs_verbs_groups_and_resources() {
    assert_eq!(
        causes("Role", role("Role", "r", json!([{}]))),
        [
            "rules[0].verbs: Required value: verbs must contain at least one value",
            "rules[0].apiGroups: Required value: resource rules must supply at least one api group",
            "rules[0].resources: Required value: resource rules must supply at least one resource"
        ]
    );
    // kube no longer refuses resourceNames over several resources.
    let named = role(
        "Role",
        "r",
        json!([{"verbs": ["get"], "apiGroups": [""], "resources": ["pods", "secrets"],
            "resourceNames": ["x"]}]),
    );
    assert!(admit(rbac("Role"), named).is_ok());
}

#[test]
fn non_resource_urls_only_in_cluster_roles_and_alone() {
    let urls = json!([{"verbs": ["get"], "nonResourceURLs": ["/healthz", "/version"]}]);
    assert!(admit(rbac("ClusterRole"), role("ClusterRole", "c", urls.clone())).is_ok());
    assert_eq!(
        causes("Role", role("Role", "r", urls)),
        [
            "rules[0].nonResourceURLs: Invalid value: []string{\"/healthz\", \"/version\"}: namespaced rules cannot apply to non-resource URLs"
        ]
    );
    let both = json!([{"verbs": ["get"], "nonResourceURLs": ["/healthz"], "resources": ["pods"]}]);
    assert_eq!(
        causes("ClusterRole", role("ClusterRole", "c", both)),
        [
            "rules[0].nonResourceURLs: Invalid value: []string{\"/healthz\"}: rules cannot apply to both regular resources and non-resource URLs"
        ]
    );
}

#[test]
fn an_aggregation_rule_needs_valid_selectors_and_is_stored_as_given() {
    let aggregated = json!({"metadata": {"name": "monitoring"}, "aggregationRule": {
        "clusterRoleSelectors": [{"matchLabels": {"rbac.example.com/aggregate-to-monitoring": "true"}}]}});
    let stored = admit(rbac("ClusterRole"), aggregated.clone()).unwrap();
    assert_eq!(stored["aggregationRule"], aggregated["aggregationRule"]);
    assert_eq!(
        causes(
            "ClusterRole",
            json!({"metadata": {"name": "c"}, "aggregationRule": {}})
        ),
        [
            "aggregationRule.clusterRoleSelectors: Required value: at least one clusterRoleSelector required if aggregationRule is non-nil"
        ]
    );
    let bad = json!({"metadata": {"name": "c"}, "aggregationRule": {"clusterRoleSelectors": [
        {"matchExpressions": [{"key": "a", "operator": "In"},
            {"key": "b", "operator": "Exists", "values": ["x"]},
            {"key": "c", "operator": "Near", "values": ["x"]}]}]}});
    let at = "aggregationRule.clusterRoleSelectors[0].matchExpressions";
    assert_eq!(
        causes("ClusterRole", bad),
        [
            format!(
                "{at}[0].values: Required value: must be specified when `operator` is 'In' or 'NotIn'"
            ),
            format!(
                "{at}[1].values: Forbidden: may not be specified when `operator` is 'Exists' or 'DoesNotExist'"
            ),
            format!("{at}[2].operator: Invalid value: \"Near\": not a valid selector operator"),
        ]
    );
}

#[test]
fn bindings_default_the_rbac_group_as_kube() {
    let stored = admit(
        rbac("RoleBinding"),
        binding(
            "RoleBinding",
            json!({"kind": "Role", "name": "pod-reader"}),
            json!([{"kind": "User", "name": "jane"}, {"kind": "Group", "name": "devs"},
                {"kind": "ServiceAccount", "name": "x", "namespace": "ns"}]),
        ),
    )
    .unwrap();
    assert_eq!(
        stored["roleRef"],
        json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pod-reader"})
    );
    assert_eq!(
        stored["subjects"],
        json!([{"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": "jane"},
            {"kind": "Group", "apiGroup": "rbac.authorization.k8s.io", "name": "devs"},
            {"kind": "ServiceAccount", "name": "x", "namespace": "ns"}])
    );
}

#[test]
fn a_role_ref_names_an_rbac_role_a_cluster_binding_a_cluster_role() {
    assert_eq!(
        causes(
            "RoleBinding",
            binding(
                "RoleBinding",
                json!({"apiGroup": "example.com", "kind": "Deployment"}),
                json!([])
            )
        ),
        [
            "roleRef.apiGroup: Unsupported value: \"example.com\": supported values: \"rbac.authorization.k8s.io\"",
            "roleRef.kind: Unsupported value: \"Deployment\": supported values: \"Role\", \"ClusterRole\"",
            "roleRef.name: Required value"
        ]
    );
    assert_eq!(
        causes(
            "ClusterRoleBinding",
            binding(
                "ClusterRoleBinding",
                json!({"kind": "Role", "name": "r"}),
                json!([])
            )
        ),
        ["roleRef.kind: Unsupported value: \"Role\": supported values: \"ClusterRole\""]
    );
    // A body without a roleRef is kube's 422 too, not a decoding error.
    assert_eq!(
        causes("RoleBinding", json!({"metadata": {"name": "b"}})),
        [
            "roleRef.kind: Unsupported value: \"\": supported values: \"Role\", \"ClusterRole\"",
            "roleRef.name: Required value"
        ]
    );
}

#[test]
fn subjects_are_checked_as_kube_checks_them() {
    let subjects = json!([
        {"kind": "ServiceAccount", "name": "Bad_SA", "apiGroup": "rbac.authorization.k8s.io"},
        {"kind": "User", "name": "jane", "apiGroup": "example.com"},
        {"kind": "Group", "name": ""},
        {"kind": "Robot", "name": "r2"},
    ]);
    let rb = causes(
        "RoleBinding",
        binding(
            "RoleBinding",
            json!({"kind": "ClusterRole", "name": "view"}),
            subjects.clone(),
        ),
    );
    assert_eq!(
        rb,
        [
            "subjects[0].name: Invalid value: \"Bad_SA\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')",
            "subjects[0].apiGroup: Unsupported value: \"rbac.authorization.k8s.io\": supported values: \"\"",
            "subjects[1].apiGroup: Unsupported value: \"example.com\": supported values: \"rbac.authorization.k8s.io\"",
            "subjects[2].name: Required value",
            "subjects[3].kind: Unsupported value: \"Robot\": supported values: \"ServiceAccount\", \"User\", \"Group\""
        ]
    );
    // A cluster binding's ServiceAccount must say its namespace; a namespaced binding's need not.
    let sa = json!([{"kind": "ServiceAccount", "name": "x"}]);
    assert!(
        admit(
            rbac("RoleBinding"),
            binding(
                "RoleBinding",
                json!({"kind": "ClusterRole", "name": "view"}),
                sa.clone()
            )
        )
        .is_ok()
    );
    assert_eq!(
        causes(
            "ClusterRoleBinding",
            binding(
                "ClusterRoleBinding",
                json!({"kind": "ClusterRole", "name": "view"}),
                sa
            )
        ),
        ["subjects[0].namespace: Required value"]
    );
}

#[test]
fn a_binding_cannot_change_its_role_ref() {
    for kind in ["RoleBinding", "ClusterRoleBinding"] {
        let res = rbac(kind);
        let old = admit(
            res,
            binding(
                kind,
                json!({"kind": "ClusterRole", "name": "view"}),
                json!([{"kind": "User", "name": "jane", "namespace": ""}]),
            ),
        )
        .unwrap();
        // Subjects may change; an update leaving apiGroup out is defaulted to the same roleRef.
        let mut more = old.clone();
        more["subjects"] = json!([{"kind": "User", "name": "joe"}]);
        more["roleRef"] = json!({"kind": "ClusterRole", "name": "view"});
        assert!(admit_update(res, &old, more).is_ok(), "{kind}");
        let mut changed = old.clone();
        changed["roleRef"]["name"] = json!("edit");
        match admit_update(res, &old, changed) {
            Err(AdmitError::Invalid {
                message, causes, ..
            }) => {
                assert_eq!(
                    message,
                    format!(
                        "{kind} \"b\" is invalid: roleRef: Invalid value: rbac.RoleRef{{APIGroup:\"rbac.authorization.k8s.io\", Kind:\"ClusterRole\", Name:\"edit\"}}: cannot change roleRef"
                    )
                );
                assert_eq!(causes[0].reason, "FieldValueInvalid");
            }
            other => panic!("{kind}: {other:?}"),
        }
    }
}

#[test]
fn roles_have_no_update_rules_beyond_validation() {
    let res = rbac("Role");
    let old = admit(
        res,
        role(
            "Role",
            "r",
            json!([{"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]}]),
        ),
    )
    .unwrap();
    let mut new = old.clone();
    new["rules"][0]["verbs"] = json!(["get", "list"]);
    assert!(admit_update(res, &old, new).is_ok());
    let mut bad = old.clone();
    bad["rules"][0]["verbs"] = json!([]);
    assert!(admit_update(res, &old, bad).is_err());
}
