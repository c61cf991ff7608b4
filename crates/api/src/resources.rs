//! The table of resources herd serves, in the shape of the Kubernetes discovery documents.

use std::fmt;

use k8s_openapi::api::apps::v1::{
    ControllerRevision, DaemonSet, Deployment, ReplicaSet, StatefulSet,
};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{
    ConfigMap, Endpoints, Event, Namespace, Node, PersistentVolume, PersistentVolumeClaim, Pod,
    ReplicationController, Secret, Service, ServiceAccount,
};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::IPAddress;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1::APIService;

use crate::strategy::{Strategy, Typed};

/// One resource type: where it lives in the REST tree, what it is called, and the strategy that holds its
/// kind's rules (this table is the only place that maps a kind to its behaviour).
#[derive(Clone, Copy)]
pub struct ResourceInfo {
    /// API group; empty for the core group.
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    /// Plural, lower-case name used in URLs (`pods`).
    pub plural: &'static str,
    pub singular: &'static str,
    pub namespaced: bool,
    pub short_names: &'static [&'static str],
    /// Subresources served below an object (`status`, `log`, …).
    pub subresources: &'static [&'static str],
    /// Discovery categories (`all` makes `kubectl get all` include the resource).
    pub categories: &'static [&'static str],
    /// The kind's defaults, validation, update rules, create hook and delete semantics.
    pub strategy: &'static dyn Strategy,
    /// How `kubectl get` prints it.
    pub printer: Printer,
}

/// The kube-apiserver printer a resource's Table rows (`kubectl get`) come from; `Default` is apiserver's
/// default table convertor (name and age).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Printer {
    Pod,
    Deployment,
    ReplicaSet,
    ReplicationController,
    ApiService,
    Service,
    Node,
    Namespace,
    Endpoints,
    ConfigMap,
    Secret,
    ServiceAccount,
    EndpointSlice,
    Event,
    Lease,
    IpAddress,
    PodDisruptionBudget,
    DaemonSet,
    StatefulSet,
    ControllerRevision,
    Job,
    CronJob,
    RoleBinding,
    ClusterRoleBinding,
    CertificateSigningRequest,
    PersistentVolume,
    PersistentVolumeClaim,
    StorageClass,
    /// Also Role's and ClusterRole's: kube registers no printer for them (NAME, CREATED AT).
    Default,
}

impl PartialEq for ResourceInfo {
    fn eq(&self, other: &Self) -> bool {
        (self.group, self.version, self.plural) == (other.group, other.version, other.plural)
    }
}

impl Eq for ResourceInfo {}

impl fmt::Debug for ResourceInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResourceInfo")
            .field("group", &self.group)
            .field("version", &self.version)
            .field("kind", &self.kind)
            .field("plural", &self.plural)
            .finish_non_exhaustive()
    }
}

impl ResourceInfo {
    /// `v1` for the core group, `group/version` otherwise.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The store key of the resource type: `pods`, `deployments.apps`.
    pub fn key(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// URL prefix of the group-version: `/api/v1` or `/apis/apps/v1`.
    pub fn prefix(&self) -> String {
        if self.group.is_empty() {
            format!("/api/{}", self.version)
        } else {
            format!("/apis/{}/{}", self.group, self.version)
        }
    }

    /// Path of the collection in a namespace (ignored for cluster-scoped resources).
    pub fn collection_path(&self, namespace: Option<&str>) -> String {
        match namespace {
            Some(ns) if self.namespaced => {
                format!("{}/namespaces/{ns}/{}", self.prefix(), self.plural)
            }
            _ => format!("{}/{}", self.prefix(), self.plural),
        }
    }

    pub fn has_subresource(&self, sub: &str) -> bool {
        self.subresources.contains(&sub)
    }
}

#[allow(clippy::too_many_arguments)]
const fn res(
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    plural: &'static str,
    singular: &'static str,
    namespaced: bool,
    short_names: &'static [&'static str],
    subresources: &'static [&'static str],
    categories: &'static [&'static str],
    strategy: &'static dyn Strategy,
    printer: Printer,
) -> ResourceInfo {
    ResourceInfo {
        group,
        version,
        kind,
        plural,
        singular,
        namespaced,
        short_names,
        subresources,
        categories,
        strategy,
        printer,
    }
}

/// Every resource herd serves.
pub const RESOURCES: &[ResourceInfo] = &[
    res(
        "",
        "v1",
        "Namespace",
        "namespaces",
        "namespace",
        false,
        &["ns"],
        &["status"],
        &[],
        &Typed::<Namespace>::NEW,
        Printer::Namespace,
    ),
    res(
        "",
        "v1",
        "Node",
        "nodes",
        "node",
        false,
        &["no"],
        &["status"],
        &[],
        &Typed::<Node>::NEW,
        Printer::Node,
    ),
    res(
        "",
        "v1",
        "Pod",
        "pods",
        "pod",
        true,
        &["po"],
        &["status", "log", "binding", "eviction"],
        &["all"],
        &Typed::<Pod>::NEW,
        Printer::Pod,
    ),
    res(
        "",
        "v1",
        "Service",
        "services",
        "service",
        true,
        &["svc"],
        &["status"],
        &["all"],
        &Typed::<Service>::NEW,
        Printer::Service,
    ),
    res(
        "",
        "v1",
        "Endpoints",
        "endpoints",
        "endpoints",
        true,
        &["ep"],
        &[],
        &[],
        &Typed::<Endpoints>::NEW,
        Printer::Endpoints,
    ),
    res(
        "",
        "v1",
        "ConfigMap",
        "configmaps",
        "configmap",
        true,
        &["cm"],
        &[],
        &[],
        &Typed::<ConfigMap>::NEW,
        Printer::ConfigMap,
    ),
    res(
        "",
        "v1",
        "Secret",
        "secrets",
        "secret",
        true,
        &[],
        &[],
        &[],
        &Typed::<Secret>::NEW,
        Printer::Secret,
    ),
    res(
        "",
        "v1",
        "PersistentVolume",
        "persistentvolumes",
        "persistentvolume",
        false,
        &["pv"],
        &["status"],
        &[],
        &Typed::<PersistentVolume>::NEW,
        Printer::PersistentVolume,
    ),
    res(
        "",
        "v1",
        "PersistentVolumeClaim",
        "persistentvolumeclaims",
        "persistentvolumeclaim",
        true,
        &["pvc"],
        &["status"],
        &[],
        &Typed::<PersistentVolumeClaim>::NEW,
        Printer::PersistentVolumeClaim,
    ),
    res(
        "storage.k8s.io",
        "v1",
        "StorageClass",
        "storageclasses",
        "storageclass",
        false,
        &["sc"],
        &[],
        &[],
        &Typed::<StorageClass>::NEW,
        Printer::StorageClass,
    ),
    res(
        "discovery.k8s.io",
        "v1",
        "EndpointSlice",
        "endpointslices",
        "endpointslice",
        true,
        &[],
        &[],
        &[],
        &Typed::<EndpointSlice>::NEW,
        Printer::EndpointSlice,
    ),
    res(
        "",
        "v1",
        "ServiceAccount",
        "serviceaccounts",
        "serviceaccount",
        true,
        &["sa"],
        &["token"],
        &[],
        &Typed::<ServiceAccount>::NEW,
        Printer::ServiceAccount,
    ),
    res(
        "",
        "v1",
        "ReplicationController",
        "replicationcontrollers",
        "replicationcontroller",
        true,
        &["rc"],
        &["status", "scale"],
        &["all"],
        &Typed::<ReplicationController>::NEW,
        Printer::ReplicationController,
    ),
    res(
        "",
        "v1",
        "Event",
        "events",
        "event",
        true,
        &["ev"],
        &[],
        &[],
        &Typed::<Event>::NEW,
        Printer::Event,
    ),
    res(
        "apps",
        "v1",
        "Deployment",
        "deployments",
        "deployment",
        true,
        &["deploy"],
        &["status", "scale"],
        &["all"],
        &Typed::<Deployment>::NEW,
        Printer::Deployment,
    ),
    res(
        "apps",
        "v1",
        "ReplicaSet",
        "replicasets",
        "replicaset",
        true,
        &["rs"],
        &["status", "scale"],
        &["all"],
        &Typed::<ReplicaSet>::NEW,
        Printer::ReplicaSet,
    ),
    res(
        "apps",
        "v1",
        "DaemonSet",
        "daemonsets",
        "daemonset",
        true,
        &["ds"],
        &["status"],
        &["all"],
        &Typed::<DaemonSet>::NEW,
        Printer::DaemonSet,
    ),
    res(
        "apps",
        "v1",
        "StatefulSet",
        "statefulsets",
        "statefulset",
        true,
        &["sts"],
        &["status", "scale"],
        &["all"],
        &Typed::<StatefulSet>::NEW,
        Printer::StatefulSet,
    ),
    res(
        "apps",
        "v1",
        "ControllerRevision",
        "controllerrevisions",
        "controllerrevision",
        true,
        &[],
        &[],
        &[],
        &Typed::<ControllerRevision>::NEW,
        Printer::ControllerRevision,
    ),
    res(
        "batch",
        "v1",
        "Job",
        "jobs",
        "job",
        true,
        &[],
        &["status"],
        &["all"],
        &Typed::<Job>::NEW,
        Printer::Job,
    ),
    res(
        "batch",
        "v1",
        "CronJob",
        "cronjobs",
        "cronjob",
        true,
        &["cj"],
        &["status"],
        &["all"],
        &Typed::<CronJob>::NEW,
        Printer::CronJob,
    ),
    res(
        "policy",
        "v1",
        "PodDisruptionBudget",
        "poddisruptionbudgets",
        "poddisruptionbudget",
        true,
        &["pdb"],
        &["status"],
        &[],
        &Typed::<PodDisruptionBudget>::NEW,
        Printer::PodDisruptionBudget,
    ),
    res(
        "certificates.k8s.io",
        "v1",
        "CertificateSigningRequest",
        "certificatesigningrequests",
        "certificatesigningrequest",
        false,
        &["csr"],
        &["status", "approval"],
        &[],
        &Typed::<CertificateSigningRequest>::NEW,
        Printer::CertificateSigningRequest,
    ),
    res(
        "rbac.authorization.k8s.io",
        "v1",
        "ClusterRoleBinding",
        "clusterrolebindings",
        "clusterrolebinding",
        false,
        &[],
        &[],
        &[],
        &Typed::<ClusterRoleBinding>::NEW,
        Printer::ClusterRoleBinding,
    ),
    res(
        "rbac.authorization.k8s.io",
        "v1",
        "ClusterRole",
        "clusterroles",
        "clusterrole",
        false,
        &[],
        &[],
        &[],
        &Typed::<ClusterRole>::NEW,
        Printer::Default,
    ),
    res(
        "rbac.authorization.k8s.io",
        "v1",
        "RoleBinding",
        "rolebindings",
        "rolebinding",
        true,
        &[],
        &[],
        &[],
        &Typed::<RoleBinding>::NEW,
        Printer::RoleBinding,
    ),
    res(
        "rbac.authorization.k8s.io",
        "v1",
        "Role",
        "roles",
        "role",
        true,
        &[],
        &[],
        &[],
        &Typed::<Role>::NEW,
        Printer::Default,
    ),
    res(
        "coordination.k8s.io",
        "v1",
        "Lease",
        "leases",
        "lease",
        true,
        &[],
        &[],
        &[],
        &Typed::<Lease>::NEW,
        Printer::Lease,
    ),
    res(
        "networking.k8s.io",
        "v1",
        "IPAddress",
        "ipaddresses",
        "ipaddress",
        false,
        &[],
        &[],
        &[],
        &Typed::<IPAddress>::NEW,
        Printer::IpAddress,
    ),
    res(
        "apiregistration.k8s.io",
        "v1",
        "APIService",
        "apiservices",
        "apiservice",
        false,
        &[],
        &["status"],
        &["api-extensions"],
        &Typed::<APIService>::NEW,
        Printer::ApiService,
    ),
];

/// Finds a resource by its place in the URL tree.
pub fn by_path(group: &str, version: &str, plural: &str) -> Option<&'static ResourceInfo> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// Finds a resource by `apiVersion` and `kind`, as written in a manifest.
pub fn by_kind(api_version: &str, kind: &str) -> Option<&'static ResourceInfo> {
    RESOURCES
        .iter()
        .find(|r| r.kind == kind && r.api_version() == api_version)
}

/// Finds a resource the way kubectl resolves a name on its command line: plural, singular, short name or
/// kind, case-insensitively, optionally qualified by group (`deployments.apps`).
pub fn by_name(name: &str) -> Option<&'static ResourceInfo> {
    let name = name.to_ascii_lowercase();
    let (name, group) = match name.split_once('.') {
        Some((n, g)) => (n.to_string(), Some(g.to_string())),
        None => (name, None),
    };
    RESOURCES.iter().find(|r| {
        group.as_deref().is_none_or(|g| g == r.group)
            && (r.plural == name
                || r.singular == name
                || r.kind.eq_ignore_ascii_case(&name)
                || r.short_names.contains(&name.as_str()))
    })
}

/// The group-versions herd serves, in discovery order.
pub fn group_versions() -> Vec<(&'static str, &'static str)> {
    let mut out: Vec<(&str, &str)> = Vec::new();
    for r in RESOURCES {
        if !out.contains(&(r.group, r.version)) {
            out.push((r.group, r.version));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_names_like_kubectl() {
        assert_eq!(by_name("po").map(|r| r.plural), Some("pods"));
        assert_eq!(by_name("Deployment").map(|r| r.plural), Some("deployments"));
        assert_eq!(
            by_name("deployments.apps").map(|r| r.plural),
            Some("deployments")
        );
        assert_eq!(
            by_name("svc").map(|r| r.key()),
            Some("services".to_string())
        );
        assert!(by_name("deployments.batch").is_none());
        assert!(by_name("widgets").is_none());
    }

    #[test]
    fn paths_follow_the_rest_layout() {
        let deploy = by_kind("apps/v1", "Deployment").expect("deployments");
        assert_eq!(
            deploy.collection_path(Some("ns1")),
            "/apis/apps/v1/namespaces/ns1/deployments"
        );
        let node = by_path("", "v1", "nodes").expect("nodes");
        assert_eq!(node.collection_path(Some("ignored")), "/api/v1/nodes");
        assert_eq!(deploy.key(), "deployments.apps");
    }
}
