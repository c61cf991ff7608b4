//! Table-driven cases: each names a request, the RBAC objects present and the expected answer.

use crate::attributes::{Attributes, UserInfo};
use crate::authorizer::{Decision, Policy, authorize, subject_rules_review};
use crate::bootstrap::{self, AUTOUPDATE_ANNOTATION};
use crate::escalation::{EscalationError, RbacObject, check_rbac_write};
use crate::reconcile::{Operation, reconcile_cluster_role, reconcile_cluster_role_binding};
use crate::rules::rule;
use crate::{aggregate_all, aggregated_rules};
use k8s_openapi::api::rbac::v1::{
    AggregationRule, ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef,
    Subject,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use std::collections::BTreeMap;

fn meta(ns: &str, name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: (!ns.is_empty()).then(|| ns.into()),
        ..Default::default()
    }
}

fn r(verbs: &[&str], groups: &[&str], resources: &[&str]) -> PolicyRule {
    rule(verbs, groups, resources, &[], &[])
}

fn cluster_role(name: &str, rules: Vec<PolicyRule>) -> ClusterRole {
    ClusterRole {
        metadata: meta("", name),
        rules: Some(rules),
        aggregation_rule: None,
    }
}

fn ns_role(ns: &str, name: &str, rules: Vec<PolicyRule>) -> Role {
    Role {
        metadata: meta(ns, name),
        rules: Some(rules),
    }
}

fn user(name: &str) -> Subject {
    Subject {
        api_group: Some("rbac.authorization.k8s.io".into()),
        kind: "User".into(),
        name: name.into(),
        namespace: None,
    }
}

fn group(name: &str) -> Subject {
    Subject {
        kind: "Group".into(),
        ..user(name)
    }
}

fn sa(ns: Option<&str>, name: &str) -> Subject {
    Subject {
        api_group: None,
        kind: "ServiceAccount".into(),
        name: name.into(),
        namespace: ns.map(Into::into),
    }
}

fn role_ref(kind: &str, name: &str) -> RoleRef {
    RoleRef {
        api_group: Some("rbac.authorization.k8s.io".into()),
        kind: kind.into(),
        name: name.into(),
    }
}

fn rb(ns: &str, name: &str, kind: &str, role: &str, subjects: Vec<Subject>) -> RoleBinding {
    RoleBinding {
        metadata: meta(ns, name),
        role_ref: role_ref(kind, role),
        subjects: Some(subjects),
    }
}

fn crb(name: &str, role: &str, subjects: Vec<Subject>) -> ClusterRoleBinding {
    ClusterRoleBinding {
        metadata: meta("", name),
        role_ref: role_ref("ClusterRole", role),
        subjects: Some(subjects),
    }
}

fn alice() -> UserInfo {
    UserInfo::new("alice", &["system:authenticated"])
}

/// The objects of most cases.
struct World {
    roles: Vec<Role>,
    cluster_roles: Vec<ClusterRole>,
    role_bindings: Vec<RoleBinding>,
    cluster_role_bindings: Vec<ClusterRoleBinding>,
}

impl World {
    fn new() -> Self {
        let (mut cluster_roles, _) = aggregate_all(&bootstrap::cluster_roles());
        cluster_roles.extend([
            cluster_role(
                "pod-reader",
                vec![r(&["get", "list", "watch"], &[""], &["pods"])],
            ),
            cluster_role(
                "status-writer",
                vec![r(&["update", "patch"], &["*"], &["*/status"])],
            ),
            cluster_role(
                "one-configmap",
                vec![rule(
                    &["get", "update"],
                    &[""],
                    &["configmaps"],
                    &["app-config"],
                    &[],
                )],
            ),
            cluster_role(
                "metrics",
                vec![rule(&["get"], &[], &[], &[], &["/metrics", "/logs/*"])],
            ),
            cluster_role("everything-apps", vec![r(&["*"], &["apps"], &["*"])]),
            cluster_role("log-reader", vec![r(&["get"], &[""], &["pods/log"])]),
        ]);
        World {
            roles: vec![
                ns_role(
                    "dev",
                    "secret-reader",
                    vec![r(&["get"], &[""], &["secrets"])],
                ),
                ns_role(
                    "dev",
                    "deployer",
                    vec![r(&["create"], &["apps"], &["deployments"])],
                ),
            ],
            cluster_roles,
            role_bindings: vec![
                rb(
                    "dev",
                    "alice-secrets",
                    "Role",
                    "secret-reader",
                    vec![user("alice")],
                ),
                rb(
                    "dev",
                    "sa-view",
                    "ClusterRole",
                    "view",
                    vec![sa(None, "reader")],
                ),
                rb(
                    "dev",
                    "ci-deployer",
                    "Role",
                    "deployer",
                    vec![sa(Some("ci"), "builder")],
                ),
                rb(
                    "dev",
                    "all-sa-logs",
                    "ClusterRole",
                    "log-reader",
                    vec![group("system:serviceaccounts:dev")],
                ),
                rb("dev", "dangling", "Role", "missing-role", vec![user("bob")]),
                rb(
                    "prod",
                    "alice-status",
                    "ClusterRole",
                    "status-writer",
                    vec![user("alice")],
                ),
                rb(
                    "prod",
                    "alice-cm",
                    "ClusterRole",
                    "one-configmap",
                    vec![user("alice")],
                ),
                rb(
                    "prod",
                    "apps-admins",
                    "ClusterRole",
                    "everything-apps",
                    vec![group("apps-team")],
                ),
            ],
            cluster_role_bindings: {
                let mut b = bootstrap::cluster_role_bindings();
                b.extend([
                    crb("readers", "pod-reader", vec![group("readers")]),
                    crb("monitoring", "metrics", vec![user("prometheus")]),
                    crb(
                        "sa-all",
                        "pod-reader",
                        vec![group("system:serviceaccounts")],
                    ),
                    crb("dangling-cluster", "gone", vec![user("bob")]),
                ]);
                b
            },
        }
    }

    fn policy(&self) -> Policy<'_> {
        Policy {
            roles: &self.roles,
            cluster_roles: &self.cluster_roles,
            role_bindings: &self.role_bindings,
            cluster_role_bindings: &self.cluster_role_bindings,
        }
    }

    fn decide(&self, attrs: &Attributes) -> Decision {
        authorize(
            attrs,
            &self.roles,
            &self.cluster_roles,
            &self.role_bindings,
            &self.cluster_role_bindings,
        )
    }
}

fn res(
    user: UserInfo,
    verb: &str,
    group: &str,
    resource: &str,
    ns: &str,
    name: &str,
) -> Attributes {
    Attributes::resource(user, verb, group, resource, ns, name)
}

#[test]
fn allow_and_deny_table() {
    let w = World::new();
    let sa_dev_reader = || UserInfo::service_account("dev", "reader", "u1");
    let sa_ci_builder = || UserInfo::service_account("ci", "builder", "u2");
    let sa_other = || UserInfo::service_account("other", "x", "u3");
    let masters = || UserInfo::new("root", &["system:masters", "system:authenticated"]);
    let apps_team = || UserInfo::new("carol", &["apps-team", "system:authenticated"]);
    let reader = || UserInfo::new("dave", &["readers", "system:authenticated"]);
    #[rustfmt::skip]
    let cases: Vec<(&str, Attributes, bool)> = vec![
        ("Role via RoleBinding", res(alice(), "get", "", "secrets", "dev", "db"), true),
        ("RoleBinding only in its namespace", res(alice(), "get", "", "secrets", "prod", "db"), false),
        ("verb not in rule", res(alice(), "list", "", "secrets", "dev", ""), false),
        ("no binding at all", res(alice(), "get", "", "pods", "dev", "p"), false),
        ("group ClusterRoleBinding works in every namespace", res(reader(), "list", "", "pods", "anywhere", ""), true),
        ("group ClusterRoleBinding at cluster scope", res(reader(), "watch", "", "pods", "", ""), true),
        ("wrong group for the resource", res(reader(), "list", "apps", "pods", "x", ""), false),
        ("resource matched exactly, not its subresources", res(reader(), "get", "", "pods", "x", "p").with_subresource("log"), false),
        ("*/status matches any resource's status", res(alice(), "update", "apps", "deployments", "prod", "d").with_subresource("status"), true),
        ("*/status does not match the resource itself", res(alice(), "update", "apps", "deployments", "prod", "d"), false),
        ("*/status does not match another subresource", res(alice(), "update", "apps", "deployments", "prod", "d").with_subresource("scale"), false),
        ("resourceNames: the named object", res(alice(), "get", "", "configmaps", "prod", "app-config"), true),
        ("resourceNames: another object", res(alice(), "get", "", "configmaps", "prod", "other"), false),
        ("resourceNames: a list has no name", res(alice(), "list", "", "configmaps", "prod", ""), false),
        ("apiGroup with * resources and * verbs", res(apps_team(), "deletecollection", "apps", "replicasets", "prod", ""), true),
        ("* resources include subresources", res(apps_team(), "update", "apps", "deployments", "prod", "d").with_subresource("scale"), true),
        ("* resources stay in their group", res(apps_team(), "get", "batch", "jobs", "prod", "j"), false),
        ("non-resource URL exact", Attributes::non_resource(UserInfo::new("prometheus", &["system:authenticated"]), "get", "/metrics"), true),
        ("non-resource URL prefix with *", Attributes::non_resource(UserInfo::new("prometheus", &["system:authenticated"]), "get", "/logs/kubelet/x"), true),
        ("non-resource URL verb", Attributes::non_resource(UserInfo::new("prometheus", &["system:authenticated"]), "post", "/metrics"), false),
        ("non-resource URL not listed", Attributes::non_resource(UserInfo::new("prometheus", &["system:authenticated"]), "get", "/metricsz"), false),
        ("a resource rule never matches a path", Attributes::non_resource(UserInfo::new("dave", &["readers"]), "get", "/api/v1/pods"), false),
        ("system:discovery for every authenticated user", Attributes::non_resource(alice(), "get", "/apis/apps/v1"), true),
        ("anonymous gets /healthz (public-info-viewer)", Attributes::non_resource(UserInfo::anonymous(), "get", "/healthz"), true),
        ("anonymous gets no discovery", Attributes::non_resource(UserInfo::anonymous(), "get", "/api"), false),
        ("basic-user: selfsubjectaccessreviews", res(alice(), "create", "authorization.k8s.io", "selfsubjectaccessreviews", "", ""), true),
        ("basic-user: selfsubjectreviews (whoami)", res(alice(), "create", "authentication.k8s.io", "selfsubjectreviews", "", ""), true),
        ("SA subject without namespace: the binding's", res(sa_dev_reader(), "list", "", "configmaps", "dev", ""), true),
        ("view (aggregated) has no create", res(sa_dev_reader(), "create", "", "configmaps", "dev", ""), false),
        ("view has no secrets", res(sa_dev_reader(), "get", "", "secrets", "dev", "s"), false),
        ("view reads deployments through aggregation", res(sa_dev_reader(), "get", "apps", "deployments", "dev", "d"), true),
        ("SA subject with its own namespace", res(sa_ci_builder(), "create", "apps", "deployments", "dev", ""), true),
        ("SA of another namespace does not match", res(UserInfo::service_account("dev", "builder", "u"), "create", "apps", "deployments", "dev", ""), false),
        ("group system:serviceaccounts:NS", res(UserInfo::service_account("dev", "anyone", "u"), "get", "", "pods", "dev", "p").with_subresource("log"), true),
        ("group system:serviceaccounts:NS only for that NS's SAs", res(sa_other(), "get", "", "pods", "dev", "p").with_subresource("log"), false),
        ("group system:serviceaccounts (cluster-wide)", res(sa_other(), "list", "", "pods", "kube-system", ""), true),
        ("a user named like a SA is not in its groups", res(UserInfo::new("system:serviceaccount:other:x", &[]), "list", "", "pods", "x", ""), false),
        ("system:masters: anything", res(masters(), "delete", "", "nodes", "", "n1"), true),
        ("system:masters: any path", Attributes::non_resource(masters(), "put", "/anything"), true),
        ("node: nothing by RBAC (system:node binding has no subjects)", res(UserInfo::node("n1"), "get", "", "secrets", "dev", "s"), false),
        ("bootstrap token: file a CSR", res(UserInfo::new("system:bootstrap:abcdef", &["system:bootstrappers", "system:bootstrappers:herd:default-node-token", "system:authenticated"]), "create", "certificates.k8s.io", "certificatesigningrequests", "", ""), true),
        ("bootstrap token: nodeclient auto-approval", res(UserInfo::new("system:bootstrap:abcdef", &["system:bootstrappers", "system:bootstrappers:herd:default-node-token", "system:authenticated"]), "create", "certificates.k8s.io", "certificatesigningrequests", "", "").with_subresource("nodeclient"), true),
        ("bootstrap token without the node-token group: no CSRs", res(UserInfo::new("system:bootstrap:abcdef", &["system:bootstrappers", "system:authenticated"]), "create", "certificates.k8s.io", "certificatesigningrequests", "", ""), false),
        ("node: selfnodeclient renewal", res(UserInfo::node("n1"), "create", "certificates.k8s.io", "certificatesigningrequests", "", "").with_subresource("selfnodeclient"), true),
        ("scheduler binds pods", res(UserInfo::new("system:kube-scheduler", &["system:authenticated"]), "create", "", "pods", "dev", "p").with_subresource("binding"), true),
        ("scheduler's lease by name only", res(UserInfo::new("system:kube-scheduler", &["system:authenticated"]), "update", "coordination.k8s.io", "leases", "kube-system", "other"), false),
    ];
    for (what, attrs, want) in cases {
        let got = w.decide(&attrs);
        assert_eq!(got.allowed(), want, "{what}: {got:?}");
    }
}

#[test]
fn allow_reasons_name_the_binding() {
    let w = World::new();
    #[rustfmt::skip]
    let cases = [
        (res(alice(), "get", "", "secrets", "dev", "db"), r#"RBAC: allowed by RoleBinding "alice-secrets/dev" of Role "secret-reader" to User "alice""#),
        (res(UserInfo::service_account("dev", "reader", "u"), "list", "", "configmaps", "dev", ""), r#"RBAC: allowed by RoleBinding "sa-view/dev" of ClusterRole "view" to ServiceAccount "reader/dev""#),
        (res(UserInfo::new("dave", &["readers"]), "list", "", "pods", "", ""), r#"RBAC: allowed by ClusterRoleBinding "readers" of ClusterRole "pod-reader" to Group "readers""#),
        (res(UserInfo::new("root", &["system:masters"]), "list", "", "pods", "", ""), ""),
    ];
    for (attrs, want) in cases {
        assert_eq!(
            w.decide(&attrs),
            Decision::Allow {
                reason: want.into()
            }
        );
    }
}

#[test]
fn missing_roles_are_the_reason_of_a_denial() {
    let w = World::new();
    let bob = UserInfo::new("bob", &["system:authenticated"]);
    assert_eq!(
        w.decide(&res(bob.clone(), "get", "", "pods", "", "")),
        Decision::NoOpinion {
            reason: r#"RBAC: clusterrole.rbac.authorization.k8s.io "gone" not found"#.into()
        }
    );
    assert_eq!(
        w.decide(&res(bob, "get", "", "pods", "dev", "p")).reason(),
        r#"RBAC: [clusterrole.rbac.authorization.k8s.io "gone" not found, role.rbac.authorization.k8s.io "missing-role" not found]"#
    );
    assert_eq!(
        w.decide(&res(alice(), "get", "", "pods", "dev", "p")),
        Decision::NoOpinion {
            reason: String::new()
        }
    );
}

#[test]
fn forbidden_messages_are_kubes() {
    #[rustfmt::skip]
    let cases = [
        (res(alice(), "list", "", "pods", "default", ""),
         r#"User "alice" cannot list resource "pods" in API group "" in the namespace "default""#,
         r#"pods is forbidden: User "alice" cannot list resource "pods" in API group "" in the namespace "default""#),
        (res(alice(), "get", "", "nodes", "", "n1"),
         r#"User "alice" cannot get resource "nodes" in API group "" at the cluster scope"#,
         r#"nodes "n1" is forbidden: User "alice" cannot get resource "nodes" in API group "" at the cluster scope"#),
        (res(alice(), "patch", "apps", "deployments", "dev", "web").with_subresource("scale"),
         r#"User "alice" cannot patch resource "deployments/scale" in API group "apps" in the namespace "dev""#,
         r#"deployments.apps "web" is forbidden: User "alice" cannot patch resource "deployments/scale" in API group "apps" in the namespace "dev""#),
        (res(UserInfo::service_account("dev", "reader", "u"), "create", "", "pods", "dev", ""),
         r#"User "system:serviceaccount:dev:reader" cannot create resource "pods" in API group "" in the namespace "dev""#,
         r#"pods is forbidden: User "system:serviceaccount:dev:reader" cannot create resource "pods" in API group "" in the namespace "dev""#),
        (Attributes::non_resource(UserInfo::anonymous(), "get", "/metrics"),
         r#"User "system:anonymous" cannot get path "/metrics""#,
         r#"forbidden: User "system:anonymous" cannot get path "/metrics""#),
    ];
    for (attrs, message, status) in cases {
        assert_eq!(attrs.forbidden_message(), message);
        assert_eq!(attrs.forbidden_status_message(""), status);
    }
    assert_eq!(
        res(alice(), "list", "", "pods", "", "").forbidden_status_message("RBAC: x"),
        r#"pods is forbidden: User "alice" cannot list resource "pods" in API group "" at the cluster scope: RBAC: x"#
    );
}

#[test]
fn user_info_identities() {
    let s = UserInfo::service_account("ns1", "builder", "uid");
    assert_eq!(s.name, "system:serviceaccount:ns1:builder");
    assert_eq!(
        s.groups,
        [
            "system:serviceaccounts",
            "system:serviceaccounts:ns1",
            "system:authenticated"
        ]
    );
    assert_eq!(s.service_account_name(), Some(("ns1", "builder")));
    assert_eq!(alice().service_account_name(), None);
    assert_eq!(UserInfo::node("n1").node_name(), Some("n1"));
    // A node name without the group is not a node identity.
    assert_eq!(UserInfo::new("system:node:n1", &[]).node_name(), None);
}

fn labelled(name: &str, labels: &[(&str, &str)], rules: Vec<PolicyRule>) -> ClusterRole {
    let mut c = cluster_role(name, rules);
    c.metadata.labels = Some(
        labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    );
    c
}

fn aggregating(name: &str, label: &str) -> ClusterRole {
    ClusterRole {
        metadata: meta("", name),
        rules: None,
        aggregation_rule: Some(AggregationRule {
            cluster_role_selectors: Some(vec![LabelSelector {
                match_labels: Some(BTreeMap::from([(label.to_string(), "true".to_string())])),
                match_expressions: None,
            }]),
        }),
    }
}

#[test]
fn aggregation_unions_matching_roles_by_name_once() {
    let crd_rule = r(&["get"], &["example.com"], &["widgets"]);
    let shared = r(&["list"], &[""], &["pods"]);
    let roles = vec![
        aggregating("monitoring", "example.com/aggregate-to-monitoring"),
        labelled(
            "z-widgets",
            &[("example.com/aggregate-to-monitoring", "true")],
            vec![crd_rule.clone(), shared.clone()],
        ),
        labelled(
            "a-pods",
            &[("example.com/aggregate-to-monitoring", "true")],
            vec![shared.clone()],
        ),
        labelled(
            "unrelated",
            &[("other", "true")],
            vec![r(&["*"], &["*"], &["*"])],
        ),
    ];
    // By name (a-pods first), each rule once, unlabelled roles ignored.
    assert_eq!(
        aggregated_rules(&roles[0], &roles),
        Some(vec![shared.clone(), crd_rule.clone()])
    );
    assert_eq!(aggregated_rules(&roles[1], &roles), None);
}

#[test]
fn bootstrap_admin_edit_view_aggregate_through_each_other() {
    let (roles, changed) = aggregate_all(&bootstrap::cluster_roles());
    assert_eq!(changed, ["admin", "edit", "view"]);
    let get = |n: &str| {
        roles
            .iter()
            .find(|r| r.metadata.name.as_deref() == Some(n))
            .unwrap()
            .clone()
    };
    let (view, edit, admin) = (get("view"), get("edit"), get("admin"));
    assert_eq!(view.rules, get("system:aggregate-to-view").rules);
    let covers = |owner: &ClusterRole, servant: &ClusterRole| {
        crate::rules::covers(
            owner.rules.as_deref().unwrap(),
            servant.rules.as_deref().unwrap(),
        )
        .0
    };
    assert!(covers(&edit, &view) && covers(&admin, &edit));
    assert!(!covers(&view, &edit) && !covers(&edit, &admin));
    // A user's role labelled for `view` shows up in all three.
    let mut with_crd = bootstrap::cluster_roles();
    with_crd.push(labelled(
        "widgets-view",
        &[(bootstrap::AGGREGATE_TO_VIEW, "true")],
        vec![r(&["get"], &["example.com"], &["widgets"])],
    ));
    let (roles, _) = aggregate_all(&with_crd);
    let admin = roles
        .iter()
        .find(|r| r.metadata.name.as_deref() == Some("admin"))
        .unwrap();
    let can = authorize(
        &res(alice(), "get", "example.com", "widgets", "dev", "w"),
        &[],
        &roles,
        &[rb("dev", "a", "ClusterRole", "admin", vec![user("alice")])],
        &[],
    );
    assert!(can.allowed(), "{can:?}");
    assert!(
        admin
            .rules
            .as_ref()
            .unwrap()
            .contains(&r(&["get"], &["example.com"], &["widgets"]))
    );
    // Nothing changes the second time.
    assert!(aggregate_all(&roles).1.is_empty());
}

#[test]
fn escalation_checks() {
    let w = World::new();
    let p = w.policy();
    let role = |ns: &str, rules: Vec<PolicyRule>| ns_role(ns, "new", rules);
    // alice holds `get secrets` in dev only.
    assert_eq!(
        check_rbac_write(
            &p,
            &alice(),
            RbacObject::Role(&role("dev", vec![r(&["get"], &[""], &["secrets"])])),
            None
        ),
        Ok(())
    );
    let err = check_rbac_write(
        &p,
        &alice(),
        RbacObject::Role(&role(
            "dev",
            vec![r(&["get", "list"], &[""], &["secrets", "configmaps"])],
        )),
        None,
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "user \"alice\" (groups=[\"system:authenticated\"]) is attempting to grant RBAC permissions not currently held:\n\
         {APIGroups:[\"\"], Resources:[\"configmaps\"], Verbs:[\"get\" \"list\"]}\n\
         {APIGroups:[\"\"], Resources:[\"secrets\"], Verbs:[\"list\"]}"
    );
    assert!(matches!(
        check_rbac_write(
            &p,
            &alice(),
            RbacObject::Role(&role("prod", vec![r(&["get"], &[""], &["secrets"])])),
            None
        ),
        Err(EscalationError::NotHeld(_))
    ));
    // A resourceNames-limited grant covers only those names.
    assert_eq!(
        check_rbac_write(
            &p,
            &alice(),
            RbacObject::Role(&ns_role(
                "prod",
                "x",
                vec![rule(&["get"], &[""], &["configmaps"], &["app-config"], &[])]
            )),
            None
        ),
        Ok(())
    );
    assert!(
        check_rbac_write(
            &p,
            &alice(),
            RbacObject::Role(&ns_role(
                "prod",
                "x",
                vec![r(&["get"], &[""], &["configmaps"])]
            )),
            None
        )
        .is_err()
    );
    // */status held covers pods/status.
    assert_eq!(
        check_rbac_write(
            &p,
            &alice(),
            RbacObject::Role(&ns_role(
                "prod",
                "x",
                vec![r(&["patch"], &[""], &["pods/status"])]
            )),
            None
        ),
        Ok(())
    );
    // Bindings: hold every rule of the role, or have `bind` on it.
    assert_eq!(
        check_rbac_write(
            &p,
            &alice(),
            RbacObject::RoleBinding(&rb("dev", "b", "Role", "secret-reader", vec![user("eve")])),
            None
        ),
        Ok(())
    );
    assert!(
        check_rbac_write(
            &p,
            &alice(),
            RbacObject::RoleBinding(&rb("dev", "b", "ClusterRole", "view", vec![user("eve")])),
            None
        )
        .is_err()
    );
    assert_eq!(
        check_rbac_write(
            &p,
            &alice(),
            RbacObject::RoleBinding(&rb("dev", "b", "Role", "nope", vec![])),
            None
        ),
        Err(EscalationError::RoleRef(
            r#"role.rbac.authorization.k8s.io "nope" not found"#.into()
        ))
    );
    let mut with_bind = World::new();
    with_bind.cluster_roles.push(cluster_role(
        "binder",
        vec![rule(
            &["bind"],
            &["rbac.authorization.k8s.io"],
            &["clusterroles"],
            &["view"],
            &[],
        )],
    ));
    with_bind.role_bindings.push(rb(
        "dev",
        "alice-binder",
        "ClusterRole",
        "binder",
        vec![user("alice")],
    ));
    let p2 = with_bind.policy();
    assert_eq!(
        check_rbac_write(
            &p2,
            &alice(),
            RbacObject::RoleBinding(&rb("dev", "b", "ClusterRole", "view", vec![user("eve")])),
            None
        ),
        Ok(())
    );
    assert!(
        check_rbac_write(
            &p2,
            &alice(),
            RbacObject::RoleBinding(&rb("dev", "b", "ClusterRole", "edit", vec![user("eve")])),
            None
        )
        .is_err()
    );
    assert!(
        check_rbac_write(
            &p2,
            &alice(),
            RbacObject::RoleBinding(&rb("prod", "b", "ClusterRole", "view", vec![user("eve")])),
            None
        )
        .is_err()
    );
    // `escalate` on roles lets alice write any Role in dev.
    let mut with_escalate = World::new();
    with_escalate.cluster_roles.push(cluster_role(
        "escalator",
        vec![r(&["escalate"], &["rbac.authorization.k8s.io"], &["roles"])],
    ));
    with_escalate.role_bindings.push(rb(
        "dev",
        "alice-esc",
        "ClusterRole",
        "escalator",
        vec![user("alice")],
    ));
    assert_eq!(
        check_rbac_write(
            &with_escalate.policy(),
            &alice(),
            RbacObject::Role(&role("dev", vec![r(&["*"], &["*"], &["*"])])),
            None
        ),
        Ok(())
    );
    // system:masters may grant anything; an aggregationRule needs full authority.
    let root = UserInfo::new("root", &["system:masters"]);
    assert_eq!(
        check_rbac_write(
            &p,
            &root,
            RbacObject::ClusterRole(&aggregating("agg", "x")),
            None
        ),
        Ok(())
    );
    let mut apps_admin = World::new();
    apps_admin
        .cluster_role_bindings
        .push(crb("alice-pods", "pod-reader", vec![user("alice")]));
    assert_eq!(
        check_rbac_write(
            &apps_admin.policy(),
            &alice(),
            RbacObject::ClusterRole(&aggregating("agg", "x")),
            None
        ),
        Err(EscalationError::AggregationRule)
    );
    // A cluster-admin via binding (not system:masters) may.
    let mut admin = World::new();
    admin
        .cluster_role_bindings
        .push(crb("alice-admin", "cluster-admin", vec![user("alice")]));
    assert_eq!(
        check_rbac_write(
            &admin.policy(),
            &alice(),
            RbacObject::ClusterRole(&aggregating("agg", "x")),
            None
        ),
        Ok(())
    );
    assert_eq!(
        check_rbac_write(
            &admin.policy(),
            &alice(),
            RbacObject::ClusterRoleBinding(&crb("b", "cluster-admin", vec![user("eve")])),
            None
        ),
        Ok(())
    );
    // ClusterRole rules are checked against cluster-wide rules only: a RoleBinding does not count.
    assert!(
        check_rbac_write(
            &p,
            &alice(),
            RbacObject::ClusterRole(&cluster_role("c", vec![r(&["get"], &[""], &["secrets"])])),
            None
        )
        .is_err()
    );
}

#[test]
fn rules_review_lists_what_applies_in_a_namespace() {
    let w = World::new();
    let status = subject_rules_review(&w.policy(), &alice(), "dev");
    assert!(!status.incomplete);
    assert_eq!(status.evaluation_error, None);
    let has = |verbs: &[&str], resource: &str| {
        status.resource_rules.iter().any(|r| {
            r.verbs.iter().map(String::as_str).eq(verbs.iter().copied())
                && r.resources
                    .as_deref()
                    .unwrap_or_default()
                    .iter()
                    .any(|x| x == resource)
        })
    };
    assert!(has(&["get"], "secrets"));
    assert!(has(&["create"], "selfsubjectaccessreviews"));
    assert!(
        !has(&["update", "patch"], "*/status"),
        "a prod binding leaks into dev"
    );
    assert!(status.non_resource_rules.iter().any(|r| {
        r.non_resource_urls
            .as_deref()
            .unwrap()
            .contains(&"/healthz".to_string())
    }));
    let bob = subject_rules_review(&w.policy(), &UserInfo::new("bob", &[]), "dev");
    assert_eq!(
        bob.evaluation_error.as_deref(),
        Some(
            r#"[clusterrole.rbac.authorization.k8s.io "gone" not found, role.rbac.authorization.k8s.io "missing-role" not found]"#
        )
    );
}

#[test]
fn reconcile_adds_missing_keeps_additions_and_respects_autoupdate_false() {
    let expected = bootstrap::cluster_roles()
        .into_iter()
        .find(|r| r.metadata.name.as_deref() == Some("system:basic-user"))
        .unwrap();
    // Absent: create.
    assert_eq!(
        reconcile_cluster_role(None, &expected, false).operation,
        Operation::Create
    );
    // Equal: nothing.
    let same = reconcile_cluster_role(Some(&expected), &expected, false);
    assert_eq!(same.operation, Operation::None);
    assert!(!same.needs_write());
    // A user added a rule and dropped one: the dropped one comes back, the added one stays.
    let mut edited = expected.clone();
    let extra = r(&["get"], &[""], &["pods"]);
    edited.rules = Some(vec![
        expected.rules.as_ref().unwrap()[0].clone(),
        extra.clone(),
    ]);
    edited
        .metadata
        .labels
        .as_mut()
        .unwrap()
        .insert("mine".into(), "yes".into());
    let out = reconcile_cluster_role(Some(&edited), &expected, false);
    assert_eq!(out.operation, Operation::Update);
    assert!(out.needs_write());
    let rules = out.object.rules.clone().unwrap();
    assert!(rules.contains(&extra));
    assert!(crate::rules::covers(&rules, expected.rules.as_deref().unwrap()).0);
    assert_eq!(out.extra_rules, vec![extra.clone()]);
    assert_eq!(
        out.object
            .metadata
            .labels
            .as_ref()
            .unwrap()
            .get("mine")
            .map(String::as_str),
        Some("yes")
    );
    // Removing extras restores the expected rules.
    let stomped = reconcile_cluster_role(Some(&edited), &expected, true);
    assert_eq!(stomped.object.rules, expected.rules);
    // autoupdate "false" on the stored object: computed, never written; the annotation is kept.
    let mut protected = edited.clone();
    protected
        .metadata
        .annotations
        .as_mut()
        .unwrap()
        .insert(AUTOUPDATE_ANNOTATION.into(), "false".into());
    let out = reconcile_cluster_role(Some(&protected), &expected, false);
    assert!(out.protected && !out.needs_write());
    assert_eq!(
        out.object.metadata.annotations.unwrap()[AUTOUPDATE_ANNOTATION],
        "false"
    );
    // Missing aggregation selectors are added; aggregated roles' rules are not "extra".
    let admin = bootstrap::cluster_roles()
        .into_iter()
        .find(|r| r.metadata.name.as_deref() == Some("admin"))
        .unwrap();
    let mut stored_admin = admin.clone();
    stored_admin.aggregation_rule = Some(AggregationRule {
        cluster_role_selectors: Some(vec![]),
    });
    stored_admin.rules = Some(vec![extra.clone()]);
    let out = reconcile_cluster_role(Some(&stored_admin), &admin, false);
    assert_eq!(out.operation, Operation::Update);
    assert!(out.extra_rules.is_empty());
    assert_eq!(out.object.aggregation_rule, admin.aggregation_rule);
}

#[test]
fn reconcile_bindings() {
    let expected = bootstrap::cluster_role_bindings()
        .into_iter()
        .find(|b| b.metadata.name.as_deref() == Some("cluster-admin"))
        .unwrap();
    assert_eq!(
        reconcile_cluster_role_binding(None, &expected, false).operation,
        Operation::Create
    );
    let mut stored = expected.clone();
    stored.subjects = Some(vec![user("ops")]);
    let out = reconcile_cluster_role_binding(Some(&stored), &expected, false);
    assert_eq!(out.operation, Operation::Update);
    assert_eq!(
        out.object.subjects,
        Some(vec![user("ops"), group("system:masters")])
    );
    assert_eq!(out.extra_subjects, vec![user("ops")]);
    let mut other_ref = expected.clone();
    other_ref.role_ref.name = "view".into();
    assert_eq!(
        reconcile_cluster_role_binding(Some(&other_ref), &expected, false).operation,
        Operation::Recreate
    );
    assert_eq!(
        reconcile_cluster_role_binding(Some(&expected), &expected, false).operation,
        Operation::None
    );
}

#[test]
fn bootstrap_objects_are_marked_and_refer_to_existing_roles() {
    let roles = bootstrap::cluster_roles();
    for b in bootstrap::cluster_role_bindings() {
        assert!(
            roles
                .iter()
                .any(|r| r.metadata.name == Some(b.role_ref.name.clone())),
            "{:?}",
            b.metadata.name
        );
        assert_eq!(
            b.metadata.annotations.unwrap()[AUTOUPDATE_ANNOTATION],
            "true"
        );
        assert_eq!(
            b.metadata.labels.unwrap()["kubernetes.io/bootstrapping"],
            "rbac-defaults"
        );
    }
    for name in [
        "cluster-admin",
        "admin",
        "edit",
        "view",
        "system:discovery",
        "system:basic-user",
        "system:public-info-viewer",
        "system:node",
        "system:kube-scheduler",
        "system:kube-controller-manager",
        "system:node-bootstrapper",
        "system:certificates.k8s.io:certificatesigningrequests:nodeclient",
    ] {
        let r = roles
            .iter()
            .find(|r| r.metadata.name.as_deref() == Some(name))
            .unwrap_or_else(|| panic!("{name}"));
        assert_eq!(
            r.metadata.annotations.as_ref().unwrap()[AUTOUPDATE_ANNOTATION],
            "true"
        );
    }
}
