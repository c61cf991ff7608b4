//! kube's bootstrap RBAC policy (`plugin/pkg/auth/authorizer/rbac/bootstrappolicy/policy.go`) as data:
//! the default ClusterRoles and ClusterRoleBindings a herd cluster reconciles at start, with kube's
//! rules for the resources herd serves (rules about resources herd has no API for — Ingresses, CSI, … — are
//! left out), plus the bindings kubeadm adds so that nodes
//! join with bootstrap tokens (named `herd:…`).

use crate::attributes::{
    ALL_AUTHENTICATED, ALL_SERVICE_ACCOUNTS, ALL_UNAUTHENTICATED, NODES_GROUP, SYSTEM_MASTERS,
};
use crate::rules::rule;
use k8s_openapi::api::rbac::v1::{
    AggregationRule, ClusterRole, ClusterRoleBinding, PolicyRule, RoleRef, Subject,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use std::collections::BTreeMap;

/// Bootstrap objects carry this annotation; `"false"` on a stored object keeps reconciliation away.
pub const AUTOUPDATE_ANNOTATION: &str = "rbac.authorization.kubernetes.io/autoupdate";
/// The label kube puts on every bootstrap object.
pub const BOOTSTRAPPING_LABEL: (&str, &str) = ("kubernetes.io/bootstrapping", "rbac-defaults");
pub const AGGREGATE_TO_ADMIN: &str = "rbac.authorization.k8s.io/aggregate-to-admin";
pub const AGGREGATE_TO_EDIT: &str = "rbac.authorization.k8s.io/aggregate-to-edit";
pub const AGGREGATE_TO_VIEW: &str = "rbac.authorization.k8s.io/aggregate-to-view";

const READ: &[&str] = &["get", "list", "watch"];
const WRITE: &[&str] = &["create", "update", "patch", "delete", "deletecollection"];
const READ_WRITE: &[&str] = &[
    "get",
    "list",
    "watch",
    "create",
    "update",
    "patch",
    "delete",
    "deletecollection",
];

const CORE: &str = "";
const APPS: &str = "apps";
const AUTHENTICATION: &str = "authentication.k8s.io";
const AUTHORIZATION: &str = "authorization.k8s.io";
const BATCH: &str = "batch";
const CERTIFICATES: &str = "certificates.k8s.io";
const COORDINATION: &str = "coordination.k8s.io";
const DISCOVERY: &str = "discovery.k8s.io";
const EVENTS: &str = "events.k8s.io";
const POLICY: &str = "policy";
const RBAC: &str = "rbac.authorization.k8s.io";

fn r(verbs: &[&str], groups: &[&str], resources: &[&str]) -> PolicyRule {
    rule(verbs, groups, resources, &[], &[])
}

fn named(verbs: &[&str], groups: &[&str], resources: &[&str], names: &[&str]) -> PolicyRule {
    rule(verbs, groups, resources, names, &[])
}

fn urls(verbs: &[&str], paths: &[&str]) -> PolicyRule {
    rule(verbs, &[], &[], &[], paths)
}

/// kube's `eventsRule()`.
fn events_rule() -> PolicyRule {
    r(&["create", "update", "patch"], &[CORE, EVENTS], &["events"])
}

fn meta(name: &str, labels: &[(&str, &str)]) -> ObjectMeta {
    let mut l: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    l.insert(
        BOOTSTRAPPING_LABEL.0.to_string(),
        BOOTSTRAPPING_LABEL.1.to_string(),
    );
    ObjectMeta {
        name: Some(name.to_string()),
        labels: Some(l),
        annotations: Some(BTreeMap::from([(
            AUTOUPDATE_ANNOTATION.to_string(),
            "true".to_string(),
        )])),
        ..Default::default()
    }
}

fn role(name: &str, rules: Vec<PolicyRule>) -> ClusterRole {
    ClusterRole {
        metadata: meta(name, &[]),
        rules: Some(rules),
        aggregation_rule: None,
    }
}

fn aggregate_role(name: &str, labels: &[(&str, &str)], selector_label: &str) -> ClusterRole {
    ClusterRole {
        metadata: meta(name, labels),
        rules: None,
        aggregation_rule: Some(AggregationRule {
            cluster_role_selectors: Some(vec![LabelSelector {
                match_labels: Some(BTreeMap::from([(
                    selector_label.to_string(),
                    "true".to_string(),
                )])),
                match_expressions: None,
            }]),
        }),
    }
}

fn labelled_role(name: &str, label: &str, rules: Vec<PolicyRule>) -> ClusterRole {
    ClusterRole {
        metadata: meta(name, &[(label, "true")]),
        rules: Some(rules),
        aggregation_rule: None,
    }
}

/// The rules of `system:node`, which kube's Node authorizer also grants nodes (scoped by it to the
/// node's own objects and those of its pods).
pub fn node_rules() -> Vec<PolicyRule> {
    vec![
        r(&["create"], &[AUTHENTICATION], &["tokenreviews"]),
        r(
            &["create"],
            &[AUTHORIZATION],
            &["subjectaccessreviews", "localsubjectaccessreviews"],
        ),
        r(READ, &[CORE], &["services"]),
        r(&["create", "get", "list", "watch"], &[CORE], &["nodes"]),
        r(&["update", "patch"], &[CORE], &["nodes/status"]),
        r(&["update", "patch"], &[CORE], &["nodes"]),
        r(&["create", "update", "patch"], &[CORE], &["events"]),
        r(READ, &[CORE], &["pods"]),
        r(&["create", "delete"], &[CORE], &["pods"]),
        r(&["update", "patch"], &[CORE], &["pods/status"]),
        r(&["create"], &[CORE], &["pods/eviction"]),
        r(
            &["get", "list", "watch"],
            &[CORE],
            &["secrets", "configmaps"],
        ),
        r(&["get"], &[CORE], &["endpoints"]),
        r(
            &["create", "get", "list", "watch"],
            &[CERTIFICATES],
            &["certificatesigningrequests"],
        ),
        r(
            &["get", "create", "update", "patch", "delete"],
            &[COORDINATION],
            &["leases"],
        ),
        r(&["create"], &[CORE], &["serviceaccounts/token"]),
        r(
            &["get"],
            &[CORE],
            &["persistentvolumeclaims", "persistentvolumes"],
        ),
        r(
            &["get", "update", "patch"],
            &[CORE],
            &["persistentvolumeclaims/status"],
        ),
    ]
}

/// The default ClusterRoles, in kube's order.
pub fn cluster_roles() -> Vec<ClusterRole> {
    vec![
        role(
            "cluster-admin",
            vec![r(&["*"], &["*"], &["*"]), urls(&["*"], &["*"])],
        ),
        role(
            "system:discovery",
            vec![urls(
                &["get"],
                &[
                    "/livez",
                    "/readyz",
                    "/healthz",
                    "/version",
                    "/version/",
                    "/openapi",
                    "/openapi/*",
                    "/api",
                    "/api/*",
                    "/apis",
                    "/apis/*",
                ],
            )],
        ),
        role(
            "system:basic-user",
            vec![
                r(
                    &["create"],
                    &[AUTHORIZATION],
                    &["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
                ),
                r(&["create"], &[AUTHENTICATION], &["selfsubjectreviews"]),
            ],
        ),
        role(
            "system:public-info-viewer",
            vec![urls(
                &["get"],
                &["/livez", "/readyz", "/healthz", "/version", "/version/"],
            )],
        ),
        aggregate_role("admin", &[], AGGREGATE_TO_ADMIN),
        aggregate_role("edit", &[(AGGREGATE_TO_ADMIN, "true")], AGGREGATE_TO_EDIT),
        aggregate_role("view", &[(AGGREGATE_TO_EDIT, "true")], AGGREGATE_TO_VIEW),
        labelled_role(
            "system:aggregate-to-admin",
            AGGREGATE_TO_ADMIN,
            vec![
                r(
                    &["create"],
                    &[AUTHORIZATION],
                    &["localsubjectaccessreviews"],
                ),
                r(READ_WRITE, &[RBAC], &["roles", "rolebindings"]),
            ],
        ),
        labelled_role(
            "system:aggregate-to-edit",
            AGGREGATE_TO_EDIT,
            vec![
                // Read on escalating resources.
                r(READ, &[CORE], &["secrets"]),
                r(&["impersonate"], &[CORE], &["serviceaccounts"]),
                r(WRITE, &[CORE], &["pods"]),
                r(&["create"], &[CORE], &["pods/eviction"]),
                r(
                    WRITE,
                    &[CORE],
                    &[
                        "replicationcontrollers",
                        "replicationcontrollers/scale",
                        "serviceaccounts",
                        "services",
                        "configmaps",
                        "secrets",
                        "events",
                        "persistentvolumeclaims",
                    ],
                ),
                r(&["create"], &[CORE], &["serviceaccounts/token"]),
                r(
                    WRITE,
                    &[APPS],
                    &[
                        "daemonsets",
                        "deployments",
                        "deployments/scale",
                        "replicasets",
                        "replicasets/scale",
                        "statefulsets",
                        "statefulsets/scale",
                    ],
                ),
                r(WRITE, &[BATCH], &["jobs", "cronjobs"]),
                r(WRITE, &[POLICY], &["poddisruptionbudgets"]),
            ],
        ),
        labelled_role(
            "system:aggregate-to-view",
            AGGREGATE_TO_VIEW,
            vec![
                r(
                    READ,
                    &[CORE],
                    &[
                        "pods",
                        "replicationcontrollers",
                        "replicationcontrollers/scale",
                        "serviceaccounts",
                        "services",
                        "services/status",
                        "endpoints",
                        "configmaps",
                        "persistentvolumeclaims",
                        "persistentvolumeclaims/status",
                    ],
                ),
                r(
                    READ,
                    &[CORE],
                    &[
                        "bindings",
                        "events",
                        "pods/status",
                        "namespaces/status",
                        "replicationcontrollers/status",
                        "pods/log",
                    ],
                ),
                // Reading namespaces at the namespace scope means reading *this* namespace.
                r(READ, &[CORE], &["namespaces"]),
                r(READ, &[DISCOVERY], &["endpointslices"]),
                r(
                    READ,
                    &[APPS],
                    &[
                        "controllerrevisions",
                        "daemonsets",
                        "daemonsets/status",
                        "deployments",
                        "deployments/status",
                        "deployments/scale",
                        "replicasets",
                        "replicasets/status",
                        "replicasets/scale",
                        "statefulsets",
                        "statefulsets/status",
                        "statefulsets/scale",
                    ],
                ),
                r(
                    READ,
                    &[BATCH],
                    &["cronjobs", "cronjobs/status", "jobs", "jobs/status"],
                ),
                r(
                    READ,
                    &[POLICY],
                    &["poddisruptionbudgets", "poddisruptionbudgets/status"],
                ),
            ],
        ),
        role("system:node", node_rules()),
        role(
            "system:node-bootstrapper",
            vec![r(
                &["create", "get", "list", "watch"],
                &[CERTIFICATES],
                &["certificatesigningrequests"],
            )],
        ),
        role(
            "system:auth-delegator",
            vec![
                r(&["create"], &[AUTHENTICATION], &["tokenreviews"]),
                r(&["create"], &[AUTHORIZATION], &["subjectaccessreviews"]),
            ],
        ),
        role(
            "system:kube-controller-manager",
            vec![
                events_rule(),
                r(&["create"], &[COORDINATION], &["leases"]),
                named(
                    &["get", "update"],
                    &[COORDINATION],
                    &["leases"],
                    &["kube-controller-manager"],
                ),
                r(&["create"], &[CORE], &["secrets", "serviceaccounts"]),
                r(&["delete"], &[CORE], &["secrets"]),
                r(
                    &["get"],
                    &[CORE],
                    &["namespaces", "secrets", "serviceaccounts", "configmaps"],
                ),
                r(&["update"], &[CORE], &["secrets", "serviceaccounts"]),
                r(&["create"], &[AUTHENTICATION], &["tokenreviews"]),
                r(&["create"], &[AUTHORIZATION], &["subjectaccessreviews"]),
                r(&["list", "watch"], &["*"], &["*"]),
                r(&["create"], &[CORE], &["serviceaccounts/token"]),
            ],
        ),
        role(
            "system:certificates.k8s.io:certificatesigningrequests:nodeclient",
            vec![r(
                &["create"],
                &[CERTIFICATES],
                &["certificatesigningrequests/nodeclient"],
            )],
        ),
        role(
            "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient",
            vec![r(
                &["create"],
                &[CERTIFICATES],
                &["certificatesigningrequests/selfnodeclient"],
            )],
        ),
        role(
            "system:certificates.k8s.io:kube-apiserver-client-kubelet-approver",
            vec![named(
                &["approve"],
                &[CERTIFICATES],
                &["signers"],
                &["kubernetes.io/kube-apiserver-client-kubelet"],
            )],
        ),
        role(
            "system:service-account-issuer-discovery",
            vec![urls(
                &["get"],
                &["/.well-known/openid-configuration", "/openid/v1/jwks"],
            )],
        ),
        role(
            "system:node-proxier",
            vec![
                r(&["list", "watch"], &[CORE], &["services", "endpoints"]),
                r(&["get", "list", "watch"], &[CORE], &["nodes"]),
                events_rule(),
                r(&["list", "watch"], &[DISCOVERY], &["endpointslices"]),
            ],
        ),
        role(
            "system:kube-scheduler",
            vec![
                events_rule(),
                r(&["create"], &[COORDINATION], &["leases"]),
                named(
                    &["get", "update"],
                    &[COORDINATION],
                    &["leases"],
                    &["kube-scheduler"],
                ),
                r(READ, &[CORE], &["nodes"]),
                r(&["get", "list", "watch", "delete"], &[CORE], &["pods"]),
                r(&["create"], &[CORE], &["pods/binding", "bindings"]),
                r(&["patch", "update"], &[CORE], &["pods/status"]),
                r(READ, &[CORE], &["services", "replicationcontrollers"]),
                r(READ, &[APPS], &["replicasets"]),
                r(READ, &[POLICY], &["poddisruptionbudgets"]),
                r(&["create"], &[AUTHENTICATION], &["tokenreviews"]),
                r(&["create"], &[AUTHORIZATION], &["subjectaccessreviews"]),
                r(READ, &[CORE], &["namespaces"]),
            ],
        ),
        // herd's proxy reports on each Service whether it could listen on its port (the `Listening`
        // condition), which kube-proxy does not.
        role(
            "herd:service-proxier",
            vec![r(
                &["get", "patch", "update"],
                &[CORE],
                &["services/status"],
            )],
        ),
        // herd's proxy is also Knative's activator for Deployments that scale to zero: holding a
        // connection, it wakes the Deployment 0 → 1 itself (one patch of its `scale` subresource, which
        // the API server admits from a proxy or node only as 0 → 1 of an opted-in Deployment) …
        role(
            "system:herd:activator",
            vec![r(&["patch"], &[APPS], &["deployments/scale"])],
        ),
        // … and forwards to the Service's first Ready pod (a label-selector watch of pods while it holds
        // connections). Only `herd up`'s kube-proxy: a node sees only its own pods (the Node
        // authorizer), so `herd node`'s proxy waits for the EndpointSlice instead.
        role(
            "system:herd:activator-pod-reader",
            vec![r(&["list", "watch"], &[CORE], &["pods"])],
        ),
    ]
}

fn subject(kind: &str, name: &str) -> Subject {
    Subject {
        api_group: Some(RBAC.to_string()),
        kind: kind.to_string(),
        name: name.to_string(),
        namespace: None,
    }
}

fn binding_named(name: &str, role: &str, subjects: Vec<Subject>) -> ClusterRoleBinding {
    ClusterRoleBinding {
        metadata: meta(name, &[]),
        role_ref: RoleRef {
            api_group: Some(RBAC.to_string()),
            kind: "ClusterRole".to_string(),
            name: role.to_string(),
        },
        subjects: (!subjects.is_empty()).then_some(subjects),
    }
}

fn binding(role: &str, subjects: Vec<Subject>) -> ClusterRoleBinding {
    binding_named(role, role, subjects)
}

fn groups(names: &[&str]) -> Vec<Subject> {
    names.iter().map(|g| subject("Group", g)).collect()
}

/// The extra group of the bootstrap tokens `herd token create` makes (kubeadm's is
/// `system:bootstrappers:kubeadm:default-node-token`): the node-join bindings name it.
pub const DEFAULT_NODE_TOKEN_GROUP: &str = "system:bootstrappers:herd:default-node-token";

/// The default ClusterRoleBindings: kube's, then kubeadm's node-join bindings as `herd:…`.
pub fn cluster_role_bindings() -> Vec<ClusterRoleBinding> {
    vec![
        binding("cluster-admin", groups(&[SYSTEM_MASTERS])),
        binding("system:discovery", groups(&[ALL_AUTHENTICATED])),
        binding("system:basic-user", groups(&[ALL_AUTHENTICATED])),
        binding(
            "system:public-info-viewer",
            groups(&[ALL_AUTHENTICATED, ALL_UNAUTHENTICATED]),
        ),
        // `herd node` runs its proxy in-process with the node's own identity (kube runs kube-proxy with one of
        // its own): the proxier roles are the nodes' too.
        binding(
            "system:node-proxier",
            vec![
                subject("User", "system:kube-proxy"),
                subject("Group", NODES_GROUP),
            ],
        ),
        binding(
            "herd:service-proxier",
            vec![
                subject("User", "system:kube-proxy"),
                subject("Group", NODES_GROUP),
            ],
        ),
        binding(
            "system:herd:activator",
            vec![
                subject("User", "system:kube-proxy"),
                subject("Group", NODES_GROUP),
            ],
        ),
        binding(
            "system:herd:activator-pod-reader",
            vec![subject("User", "system:kube-proxy")],
        ),
        binding(
            "system:kube-controller-manager",
            vec![subject("User", "system:kube-controller-manager")],
        ),
        binding(
            "system:kube-scheduler",
            vec![subject("User", "system:kube-scheduler")],
        ),
        // kube keeps this binding without subjects: nodes get these rules from the Node authorizer.
        binding("system:node", vec![]),
        binding(
            "system:service-account-issuer-discovery",
            groups(&[ALL_SERVICE_ACCOUNTS]),
        ),
        // kubeadm's `kubeadm:kubelet-bootstrap`: the tokens `herd token create` makes (kubeadm binds its
        // own `system:bootstrappers:kubeadm:default-node-token`) may file CSRs …
        binding_named(
            "herd:kubelet-bootstrap",
            "system:node-bootstrapper",
            groups(&[DEFAULT_NODE_TOKEN_GROUP]),
        ),
        // … `kubeadm:node-autoapprove-bootstrap`: which are approved at once …
        binding_named(
            "herd:node-autoapprove-bootstrap",
            "system:certificates.k8s.io:certificatesigningrequests:nodeclient",
            groups(&[DEFAULT_NODE_TOKEN_GROUP]),
        ),
        // … `kubeadm:node-autoapprove-certificate-rotation`: as are a node's renewals of its own.
        binding_named(
            "herd:node-autoapprove-certificate-rotation",
            "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient",
            groups(&[NODES_GROUP]),
        ),
    ]
}
