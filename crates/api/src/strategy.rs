//! One strategy per kind, as kube-apiserver's REST strategies: how objects of a kind are defaulted and
//! validated, what an update may change, what happens when one is created (a cluster IP for a Service) and
//! how one is deleted (gracefully for pods, finalized for namespaces).
//!
//! Every kind's rules are written once, over its k8s-openapi type, as an implementation of [`Kind`] in this
//! file (the RBAC kinds' in [`rbac`]). [`Typed`] turns a [`Kind`] into the object-safe [`Strategy`] the resource table
//! ([`crate::resources::RESOURCES`]) names for each resource, so the resource layer asks the table, never
//! the kind's name.

use std::fmt;
use std::marker::PhantomData;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{
    ConfigMap, Endpoints, Event, Namespace, Node, Pod, PodStatus, PodTemplateSpec,
    ReplicationController, Secret, Service, ServiceAccount,
};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::IPAddress;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1::APIService;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::admission::{self as rules, AdmitError};
use crate::validation::{self, Cause};

pub mod certificates;
pub mod cronjob;
pub mod rbac;
pub mod statefulset;
pub mod storage;

/// What the resource layer does, beyond the write, when an object of the kind is created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreateHook {
    None,
    /// Allocate `spec.clusterIP` from the service CIDR (kube-apiserver's Service REST storage).
    AllocateClusterIp,
    /// Give a claim without `storageClassName` the default StorageClass (kube's DefaultStorageClass
    /// admission plugin).
    DefaultStorageClass,
}

/// What a DELETE does to an object of the kind before finalizers are considered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deletion {
    /// Remove it now (or mark it, if it has finalizers).
    Immediate,
    /// Mark it with `deletionTimestamp` and this grace period; whoever runs it completes the deletion (the
    /// node agent for a pod, the namespace controller for a namespace).
    Graceful(i64),
}

/// The per-kind rules, over the kind's k8s-openapi type. Every method has kube's generic behaviour as its
/// default; a kind overrides what its REST strategy does differently.
pub trait Kind:
    DeserializeOwned + Serialize + k8s_openapi::Metadata<Ty = ObjectMeta> + Send + Sync + 'static
{
    /// Names must be DNS-1035 labels (Services, Namespaces) rather than DNS-1123 subdomains.
    const LABEL_NAMES: bool = false;
    /// Names are kube's RBAC names (`ValidateRBACName`: any path segment, `system:controller:x`) rather than
    /// DNS-1123 subdomains.
    const RBAC_NAMES: bool = false;
    /// Names are IP addresses in canonical form (kube's `ValidateIPAddressName`: an IPAddress object)
    /// rather than DNS-1123 subdomains.
    const IP_NAMES: bool = false;
    /// A create ignores a client-sent status (kube's `PrepareForCreate`).
    const RESETS_STATUS_ON_CREATE: bool = false;
    /// A create records who asked in `spec.username`, `uid`, `groups` and `extra` (a
    /// CertificateSigningRequest's requester), overwriting what the client sent.
    const SETS_REQUESTER: bool = false;
    /// Whether deletion marks (the orphaning mark, the foreground finalizer) apply; a pod's own graceful
    /// deletion takes their place.
    const PROPAGATES: bool = true;
    const CREATE_HOOK: CreateHook = CreateHook::None;
    /// Where the kind keeps the pod Pod Security admission evaluates (kube's `DefaultPodSpecExtractor`): a
    /// JSON pointer to a pod template, `""` for a pod itself (enforced; templates are only warned about).
    const POD_TEMPLATE: Option<&'static str> = None;

    /// kube's defaulting functions.
    fn default(&mut self) {}
    /// kube's `Validate`, after defaulting (the name is checked before).
    fn validate(&self, _causes: &mut Vec<Cause>) {}
    /// What only a create is checked for, after [`Kind::validate`] (kube's `ValidateCreate` where it
    /// differs from `ValidateUpdate`).
    fn validate_create(&self, _causes: &mut Vec<Cause>) {}
    /// kube's `PrepareForUpdate` and `ValidateUpdate`: what an update of the main resource may change from
    /// `old` (fields the update keeps are copied into `self`).
    fn validate_update(&mut self, _old: &Self, _causes: &mut Vec<Cause>) {}
    /// What a DELETE with the `requested` grace period does to this object.
    fn deletion(&self, _requested: Option<i64>) -> Deletion {
        Deletion::Immediate
    }
    /// What marking the object for deletion changes besides its metadata.
    fn terminating(&mut self) {}
}

/// A kind's rules as the resource layer calls them, on objects as JSON.
pub trait Strategy: Send + Sync {
    /// Decodes `obj`, defaults and validates it, and re-encodes it (dropping unknown fields).
    fn admit(&self, obj: Value, causes: &mut Vec<Cause>) -> Result<Value, AdmitError>;
    /// [`Strategy::admit`] for an update of the main resource from `old`, with the kind's update rules.
    fn admit_update(
        &self,
        old: &Value,
        obj: Value,
        causes: &mut Vec<Cause>,
    ) -> Result<Value, AdmitError>;
    /// The fields of `obj` the kind's schema does not know, as dotted paths.
    fn known_fields(&self, obj: &Value) -> Option<Value>;
    fn resets_status_on_create(&self) -> bool;
    /// Whether a create records its requester in the spec (see [`Kind::SETS_REQUESTER`]).
    fn sets_requester(&self) -> bool;
    fn propagates(&self) -> bool;
    fn create_hook(&self) -> CreateHook;
    /// Where Pod Security admission finds the kind's pod (`""`: the object is a pod), if it looks at it.
    fn pod_template(&self) -> Option<&'static str>;
    /// What a DELETE with the `requested` grace period does to `obj` (a stored object).
    fn deletion(&self, obj: &Value, requested: Option<i64>) -> Deletion;
    /// Applies the kind's changes for an object being marked for deletion.
    fn terminating(&self, obj: &mut Value);
}

impl fmt::Debug for dyn Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Strategy")
    }
}

/// The [`Strategy`] of a [`Kind`].
pub struct Typed<K>(PhantomData<fn() -> K>);

impl<K> Typed<K> {
    pub const NEW: Self = Self(PhantomData);
}

fn decode<K: DeserializeOwned>(obj: Value) -> Result<K, AdmitError> {
    serde_json::from_value(obj).map_err(|e| AdmitError::BadRequest(format!("decoding body: {e}")))
}

fn encode<K: Serialize>(obj: &K) -> Result<Value, AdmitError> {
    serde_json::to_value(obj).map_err(|e| AdmitError::BadRequest(format!("encoding object: {e}")))
}

/// The kind's name rule and the labels of `meta` (kube's `ValidateObjectMeta` with the kind's name function).
fn validate_meta<K: Kind>(meta: &ObjectMeta, causes: &mut Vec<Cause>) {
    if K::RBAC_NAMES {
        rbac::validate_meta(meta, causes);
    } else if K::IP_NAMES {
        validation::validate_ip_name(meta, causes);
    } else {
        validation::validate_name(meta, K::LABEL_NAMES, causes);
    }
}

impl<K: Kind> Strategy for Typed<K> {
    fn admit(&self, obj: Value, causes: &mut Vec<Cause>) -> Result<Value, AdmitError> {
        let mut k: K = decode(obj)?;
        validate_meta::<K>(k.metadata(), causes);
        k.default();
        k.validate(causes);
        k.validate_create(causes);
        encode(&k)
    }

    fn admit_update(
        &self,
        old: &Value,
        obj: Value,
        causes: &mut Vec<Cause>,
    ) -> Result<Value, AdmitError> {
        let mut k: K = decode(obj)?;
        validate_meta::<K>(k.metadata(), causes);
        k.default();
        let old: K = decode(old.clone())?;
        k.validate_update(&old, causes);
        k.validate(causes);
        encode(&k)
    }

    fn known_fields(&self, obj: &Value) -> Option<Value> {
        serde_json::to_value(serde_json::from_value::<K>(obj.clone()).ok()?).ok()
    }

    fn resets_status_on_create(&self) -> bool {
        K::RESETS_STATUS_ON_CREATE
    }

    fn sets_requester(&self) -> bool {
        K::SETS_REQUESTER
    }

    fn propagates(&self) -> bool {
        K::PROPAGATES
    }

    fn create_hook(&self) -> CreateHook {
        K::CREATE_HOOK
    }

    fn pod_template(&self) -> Option<&'static str> {
        K::POD_TEMPLATE
    }

    fn deletion(&self, obj: &Value, requested: Option<i64>) -> Deletion {
        match serde_json::from_value::<K>(obj.clone()) {
            Ok(k) => k.deletion(requested),
            // A stored object always decodes; one that does not is removed as kube removes the undecodable.
            Err(_) => Deletion::Immediate,
        }
    }

    fn terminating(&self, obj: &mut Value) {
        if let Ok(mut k) = serde_json::from_value::<K>(obj.clone()) {
            k.terminating();
            if let Ok(v) = serde_json::to_value(&k) {
                *obj = v;
            }
        }
    }
}

impl Kind for Pod {
    const RESETS_STATUS_ON_CREATE: bool = true;
    const PROPAGATES: bool = false;
    const POD_TEMPLATE: Option<&'static str> = Some("");

    fn default(&mut self) {
        rules::default_pod_spec(self.spec.get_or_insert_with(Default::default));
        self.status
            .get_or_insert_with(PodStatus::default)
            .phase
            .get_or_insert_with(|| "Pending".into());
    }

    fn validate(&self, causes: &mut Vec<Cause>) {
        if let Some(spec) = &self.spec {
            validation::validate_pod_spec(spec, "spec", causes);
        }
    }

    /// A pod's spec is immutable but for its containers' images; an update without `nodeName` keeps the
    /// binding.
    fn validate_update(&mut self, old: &Self, causes: &mut Vec<Cause>) {
        let (Some(new), Some(old)) = (self.spec.as_mut(), old.spec.as_ref()) else {
            return;
        };
        if new.node_name.is_none() {
            new.node_name.clone_from(&old.node_name);
        }
        let mut comparable = new.clone();
        for (n, o) in comparable.containers.iter_mut().zip(&old.containers) {
            n.image.clone_from(&o.image);
        }
        if &comparable != old {
            causes.push(Cause {
                reason: "FieldValueForbidden",
                field: "spec".into(),
                message: "Forbidden: pod updates may not change fields other than `spec.containers[*].image`".into(),
            });
        }
    }

    /// kube's pod `CheckGracefulDelete`: a pod bound to a node is deleted gracefully, with the requested
    /// grace period or else its own `terminationGracePeriodSeconds`; an unbound pod goes at once.
    fn deletion(&self, requested: Option<i64>) -> Deletion {
        let spec = self.spec.as_ref();
        let bound = spec
            .and_then(|s| s.node_name.as_deref())
            .is_some_and(|n| !n.is_empty());
        let grace = requested.unwrap_or_else(|| {
            spec.and_then(|s| s.termination_grace_period_seconds)
                .unwrap_or(30)
        });
        if bound && grace > 0 {
            Deletion::Graceful(grace)
        } else {
            Deletion::Immediate
        }
    }
}

/// Why a pod binding (the `pods/binding` subresource) was refused: kube's `BindingREST` checks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BindRefused {
    #[error("pod {pod} is already assigned to node \"{node}\"")]
    AlreadyBound { pod: String, node: String },
    #[error("pod {0} is being deleted, cannot be assigned to a host")]
    Terminating(String),
}

/// The node a pod is bound to, if any.
pub fn pod_node(pod: &Value) -> Option<&str> {
    pod.pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
}

/// kube's pod binding (`BindingREST.assignPod`): an unbound pod not being deleted gets `spec.nodeName` and
/// PodScheduled=True. The pod is a stored (admitted) one and the binding changes nothing else of it, so
/// it is not admitted again — as kube-apiserver's binding storage writes it.
///
/// # Errors
/// [`BindRefused`] when the pod is bound already or being deleted.
pub fn bind_pod(pod: &mut Value, node: &str, now: &str) -> Result<(), BindRefused> {
    let name = || {
        pod.pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    if pod.pointer("/metadata/deletionTimestamp").is_some() {
        return Err(BindRefused::Terminating(name()));
    }
    if let Some(current) = pod_node(pod) {
        return Err(BindRefused::AlreadyBound {
            pod: name(),
            node: current.to_string(),
        });
    }
    pod["spec"]["nodeName"] = Value::String(node.to_string());
    set_pod_scheduled(pod, "True", None, None, now);
    Ok(())
}

/// Sets a pod's PodScheduled condition (`lastTransitionTime` `now`); false when it says the same already.
pub fn set_pod_scheduled(
    pod: &mut Value,
    status: &str,
    reason: Option<&str>,
    message: Option<&str>,
    now: &str,
) -> bool {
    let mut cond = serde_json::json!({"type": "PodScheduled", "status": status,
        "lastProbeTime": null, "lastTransitionTime": now});
    if let Some(r) = reason {
        cond["reason"] = Value::String(r.to_string());
    }
    if let Some(m) = message {
        cond["message"] = Value::String(m.to_string());
    }
    let conds = pod["status"]["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if let Some(old) = conds.iter().find(|c| c["type"] == "PodScheduled")
        && old["status"] == cond["status"]
        && old.get("reason") == cond.get("reason")
        && old.get("message") == cond.get("message")
    {
        return false;
    }
    let mut conds: Vec<Value> = conds
        .into_iter()
        .filter(|c| c["type"] != "PodScheduled")
        .collect();
    conds.push(cond);
    pod["status"]["conditions"] = Value::Array(conds);
    true
}

impl Kind for Service {
    const LABEL_NAMES: bool = true;
    const RESETS_STATUS_ON_CREATE: bool = true;
    const CREATE_HOOK: CreateHook = CreateHook::AllocateClusterIp;

    fn default(&mut self) {
        rules::default_service(self);
    }

    fn validate(&self, causes: &mut Vec<Cause>) {
        validation::validate_service(self, causes);
    }

    /// kube's `patchAllocatedValues` and immutable cluster IP: an update that omits the allocated IP (and
    /// its families) keeps them; one that changes the IP is refused, unless the Service is or becomes an
    /// ExternalName. (The IP is held by an IPAddress object: letting it change would hand out a taken IP.)
    fn validate_update(&mut self, old: &Self, causes: &mut Vec<Cause>) {
        let (Some(spec), Some(before)) = (self.spec.as_mut(), old.spec.as_ref()) else {
            return;
        };
        let external = |ty: &Option<String>| ty.as_deref() == Some("ExternalName");
        if external(&spec.type_) || external(&before.type_) {
            return;
        }
        if spec.cluster_ip.as_deref().is_none_or(str::is_empty) {
            spec.cluster_ip = before.cluster_ip.clone();
        }
        if spec.cluster_ips.as_ref().is_none_or(Vec::is_empty) {
            spec.cluster_ips = before.cluster_ips.clone();
        }
        if spec.ip_families.as_ref().is_none_or(Vec::is_empty) {
            spec.ip_families = before.ip_families.clone();
        }
        if spec.ip_family_policy.is_none() {
            spec.ip_family_policy = before.ip_family_policy.clone();
        }
        if let Some(held) = before.cluster_ip.as_deref().filter(|ip| !ip.is_empty())
            && spec.cluster_ip.as_deref() != Some(held)
        {
            causes.push(Cause::invalid(
                "spec.clusterIPs[0]",
                spec.cluster_ip.clone().unwrap_or_default(),
                "may not change once set",
            ));
        }
    }
}

impl Kind for Namespace {
    const LABEL_NAMES: bool = true;
    const RESETS_STATUS_ON_CREATE: bool = true;

    fn default(&mut self) {
        self.status
            .get_or_insert_with(Default::default)
            .phase
            .get_or_insert_with(|| "Active".into());
    }

    /// kube's namespace deletion: the namespace is marked Terminating and kept until the namespace
    /// controller has emptied it.
    fn deletion(&self, _requested: Option<i64>) -> Deletion {
        Deletion::Graceful(0)
    }

    fn terminating(&mut self) {
        self.status.get_or_insert_with(Default::default).phase = Some("Terminating".into());
    }
}

impl Kind for Node {
    fn validate(&self, causes: &mut Vec<Cause>) {
        if let Some(status) = &self.status {
            validation::validate_node_status(status, causes);
        }
    }
}

impl Kind for Deployment {
    const RESETS_STATUS_ON_CREATE: bool = true;
    const POD_TEMPLATE: Option<&'static str> = Some("/spec/template");

    fn default(&mut self) {
        rules::default_deployment(self);
    }

    fn validate(&self, causes: &mut Vec<Cause>) {
        validation::validate_deployment(self, causes);
    }
}

impl Kind for ReplicaSet {
    const RESETS_STATUS_ON_CREATE: bool = true;
    const POD_TEMPLATE: Option<&'static str> = Some("/spec/template");

    fn default(&mut self) {
        self.spec.replicas.get_or_insert(1);
        if let Some(pod) = self.spec.template.as_mut().and_then(|t| t.spec.as_mut()) {
            rules::default_pod_spec(pod);
        }
    }

    fn validate(&self, causes: &mut Vec<Cause>) {
        if let Some(pod) = self.spec.template.as_ref().and_then(|t| t.spec.as_ref()) {
            validation::validate_pod_spec(pod, "spec.template.spec", causes);
        }
    }
}

impl Kind for ReplicationController {
    const RESETS_STATUS_ON_CREATE: bool = true;
    const POD_TEMPLATE: Option<&'static str> = Some("/spec/template");

    fn default(&mut self) {
        rules::default_replication_controller(self);
    }

    fn validate(&self, causes: &mut Vec<Cause>) {
        rules::validate_replication_controller(self, causes);
    }
}

impl Kind for DaemonSet {
    const RESETS_STATUS_ON_CREATE: bool = true;
    const POD_TEMPLATE: Option<&'static str> = Some("/spec/template");

    fn default(&mut self) {
        let spec = &mut self.spec;
        spec.revision_history_limit.get_or_insert(10);
        let strategy = spec.update_strategy.get_or_insert_with(Default::default);
        let ty = strategy.type_.get_or_insert_with(|| "RollingUpdate".into());
        if ty == "RollingUpdate" {
            let ru = strategy.rolling_update.get_or_insert_with(Default::default);
            ru.max_unavailable.get_or_insert(IntOrString::Int(1));
            ru.max_surge.get_or_insert(IntOrString::Int(0));
        }
        if let Some(pod) = spec.template.spec.as_mut() {
            rules::default_pod_spec(pod);
        }
    }

    fn validate(&self, causes: &mut Vec<Cause>) {
        let spec = &self.spec;
        if let Some(ru) = spec
            .update_strategy
            .as_ref()
            .filter(|s| s.type_.as_deref() == Some("RollingUpdate"))
            .and_then(|s| s.rolling_update.as_ref())
        {
            rules::validate_daemonset_rolling_update(ru, causes);
        }
        match &spec.template.spec {
            Some(pod) => validation::validate_pod_spec(pod, "spec.template.spec", causes),
            None => causes.push(Cause::required("spec.template.spec.containers")),
        }
    }
}

impl Kind for Job {
    const RESETS_STATUS_ON_CREATE: bool = true;
    const POD_TEMPLATE: Option<&'static str> = Some("/spec/template");

    fn default(&mut self) {
        let spec = self.spec.get_or_insert_with(Default::default);
        spec.completions.get_or_insert(1);
        spec.parallelism.get_or_insert(1);
        spec.backoff_limit.get_or_insert(6);
        spec.completion_mode
            .get_or_insert_with(|| "NonIndexed".into());
        spec.suspend.get_or_insert(false);
        if let Some(pod) = spec.template.spec.as_mut() {
            rules::default_pod_spec(pod);
        }
        rules::default_job_selector(self);
    }

    fn validate(&self, causes: &mut Vec<Cause>) {
        rules::validate_job_selector(self, causes);
        let Some(spec) = &self.spec else {
            return;
        };
        validate_job_template(&spec.template, "spec.template", causes);
    }
}

/// A Job's pod template at `path` (a Job's `spec.template`, a CronJob's job template's): a pod spec whose
/// restart policy is `OnFailure` or `Never`.
fn validate_job_template(template: &PodTemplateSpec, path: &str, causes: &mut Vec<Cause>) {
    match &template.spec {
        Some(pod) => {
            // The pod defaults made an unset policy `Always`, which a Job's pods may not have.
            if pod.restart_policy.as_deref() == Some("Always") {
                causes.push(Cause::not_supported(
                    format!("{path}.spec.restartPolicy"),
                    "Always",
                    &["OnFailure", "Never"],
                ));
            }
            validation::validate_pod_spec(pod, &format!("{path}.spec"), causes);
        }
        None => causes.push(Cause::required(format!("{path}.spec.containers"))),
    }
}

impl Kind for APIService {
    const RESETS_STATUS_ON_CREATE: bool = true;

    fn default(&mut self) {
        let spec = self.spec.get_or_insert_with(Default::default);
        if let Some(service) = spec.service.as_mut() {
            service.port.get_or_insert(443);
        }
    }

    fn validate(&self, causes: &mut Vec<Cause>) {
        rules::validate_api_service(self, causes);
    }
}

impl Kind for Secret {
    fn default(&mut self) {
        self.type_.get_or_insert_with(|| "Opaque".into());
        // As kube-apiserver: stringData is write-only, merged into data (winning over it) and dropped.
        if let Some(strings) = self.string_data.take() {
            let data = self.data.get_or_insert_with(Default::default);
            for (key, value) in strings {
                data.insert(key, k8s_openapi::ByteString(value.into_bytes()));
            }
        }
    }
}

impl Kind for PodDisruptionBudget {
    fn default(&mut self) {
        self.spec.get_or_insert_with(Default::default);
    }

    fn validate(&self, causes: &mut Vec<Cause>) {
        if let Some(spec) = &self.spec {
            rules::validate_pdb_spec(spec, causes);
        }
    }
}

impl Kind for Endpoints {}
impl Kind for EndpointSlice {}
impl Kind for ConfigMap {}
impl Kind for ServiceAccount {}
impl Kind for Event {}
impl Kind for Lease {}

/// networking.k8s.io/v1 IPAddress: one allocated Service IP, named by the address (kube-apiserver's
/// MultiCIDRServiceAllocator); its `spec.parentRef` names the Service and never changes.
impl Kind for IPAddress {
    const IP_NAMES: bool = true;

    fn validate(&self, causes: &mut Vec<Cause>) {
        validation::validate_ip_address_spec(&self.spec, causes);
    }

    fn validate_update(&mut self, old: &Self, causes: &mut Vec<Cause>) {
        if self.spec != old.spec {
            causes.push(Cause::invalid("spec.parentRef", "", "field is immutable"));
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::{CreateHook, Deletion};
    use crate::admission::{AdmitError, admit_update};
    use crate::resources::by_kind;

    #[test]
    fn the_table_names_each_kinds_strategy() {
        let pods = by_kind("v1", "Pod").unwrap().strategy;
        let services = by_kind("v1", "Service").unwrap().strategy;
        let namespaces = by_kind("v1", "Namespace").unwrap().strategy;
        let maps = by_kind("v1", "ConfigMap").unwrap().strategy;
        assert_eq!(services.create_hook(), CreateHook::AllocateClusterIp);
        assert_eq!(pods.create_hook(), CreateHook::None);
        assert!(pods.resets_status_on_create() && !maps.resets_status_on_create());
        assert!(!pods.propagates() && maps.propagates());
        let bound = json!({"metadata": {"name": "p"}, "spec": {"nodeName": "n", "containers": [],
            "terminationGracePeriodSeconds": 12}});
        let unbound = json!({"metadata": {"name": "p"}, "spec": {"containers": []}});
        assert_eq!(pods.deletion(&bound, None), Deletion::Graceful(12));
        assert_eq!(pods.deletion(&bound, Some(3)), Deletion::Graceful(3));
        assert_eq!(pods.deletion(&bound, Some(0)), Deletion::Immediate);
        assert_eq!(pods.deletion(&unbound, None), Deletion::Immediate);
        let mut ns = json!({"metadata": {"name": "team"}, "status": {"phase": "Active"}});
        assert_eq!(namespaces.deletion(&ns, None), Deletion::Graceful(0));
        namespaces.terminating(&mut ns);
        assert_eq!(ns["status"]["phase"], "Terminating");
        assert_eq!(
            maps.deletion(&json!({"metadata": {"name": "m"}}), None),
            Deletion::Immediate
        );
    }

    #[test]
    fn a_pod_update_may_change_images_only_and_keeps_its_binding() {
        let pods = by_kind("v1", "Pod").unwrap();
        let old = crate::admit(
            pods,
            json!({"metadata": {"name": "p"}, "spec": {"nodeName": "n1",
                "containers": [{"name": "c", "image": "a:1"}]}}),
        )
        .unwrap();
        let mut new = old.clone();
        new["spec"]["containers"][0]["image"] = json!("a:2");
        new["spec"].as_object_mut().unwrap().remove("nodeName");
        let updated = admit_update(pods, &old, new).unwrap();
        assert_eq!(
            (
                &updated["spec"]["containers"][0]["image"],
                &updated["spec"]["nodeName"]
            ),
            (&json!("a:2"), &json!("n1"))
        );
        let mut renamed = old.clone();
        renamed["spec"]["containers"][0]["name"] = json!("d");
        match admit_update(pods, &old, renamed) {
            Err(AdmitError::Invalid { message, .. }) => assert_eq!(
                message,
                "Pod \"p\" is invalid: spec: Forbidden: pod updates may not change fields other than `spec.containers[*].image`"
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_service_update_keeps_its_cluster_ip_and_may_not_change_it() {
        let services = by_kind("v1", "Service").unwrap();
        let old = crate::admit(
            services,
            json!({"metadata": {"name": "web"}, "spec": {"ports": [{"port": 80}],
                "clusterIP": "10.0.0.7", "clusterIPs": ["10.0.0.7"], "ipFamilies": ["IPv4"],
                "ipFamilyPolicy": "SingleStack"}}),
        )
        .unwrap();
        // A manifest applied again without the allocated IP keeps it.
        let replaced = json!({"metadata": {"name": "web"}, "spec": {"ports": [{"port": 81}]}});
        let updated = admit_update(services, &old, replaced).unwrap();
        assert_eq!(updated["spec"]["clusterIP"], "10.0.0.7");
        assert_eq!(updated["spec"]["clusterIPs"], json!(["10.0.0.7"]));
        assert_eq!(updated["spec"]["ipFamilies"], json!(["IPv4"]));
        let mut moved = old.clone();
        moved["spec"]["clusterIP"] = json!("10.0.0.8");
        moved["spec"]["clusterIPs"] = json!(["10.0.0.8"]);
        match admit_update(services, &old, moved) {
            Err(AdmitError::Invalid { causes, .. }) => assert_eq!(
                causes
                    .iter()
                    .map(|c| format!("{}: {}", c.field, c.message))
                    .collect::<Vec<_>>(),
                ["spec.clusterIPs[0]: Invalid value: \"10.0.0.8\": may not change once set"]
            ),
            other => panic!("{other:?}"),
        }
        // Becoming an ExternalName gives the IP up.
        let mut external = old.clone();
        external["spec"] = json!({"type": "ExternalName", "externalName": "example.com"});
        assert!(admit_update(services, &old, external).is_ok());
    }

    #[test]
    fn a_job_without_a_restart_policy_is_refused_as_kube_refuses_it() {
        let jobs = by_kind("batch/v1", "Job").unwrap();
        let job = json!({"metadata": {"name": "j", "uid": "u1"}, "spec": {"template": {"spec": {
            "containers": [{"name": "c", "image": "a:1"}]}}}});
        match crate::admit(jobs, job) {
            Err(AdmitError::Invalid { causes, .. }) => assert_eq!(
                causes
                    .iter()
                    .map(|c| format!("{}: {}", c.field, c.message))
                    .collect::<Vec<_>>(),
                [
                    "spec.template.spec.restartPolicy: Unsupported value: \"Always\": supported values: \"OnFailure\", \"Never\""
                ]
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_binding_takes_an_unbound_live_pod_only() {
        use super::{BindRefused, bind_pod};
        let mut pod = json!({"metadata": {"name": "p"}, "spec": {"containers": []}, "status": {}});
        bind_pod(&mut pod, "n1", "2026-12-07T00:00:00Z").unwrap();
        assert_eq!(pod["spec"]["nodeName"], "n1");
        assert_eq!(
            pod["status"]["conditions"],
            json!([{"type": "PodScheduled", "status": "True", "lastProbeTime": null,
                "lastTransitionTime": "2026-12-07T00:00:00Z"}])
        );
        assert_eq!(
            bind_pod(&mut pod, "n2", "2026-12-07T00:00:01Z")
                .unwrap_err()
                .to_string(),
            "pod p is already assigned to node \"n1\""
        );
        let mut going = json!({"metadata": {"name": "q", "deletionTimestamp": "2026-12-07T00:00:00Z"},
            "spec": {"containers": []}});
        assert_eq!(
            bind_pod(&mut going, "n1", "2026-12-07T00:00:00Z"),
            Err(BindRefused::Terminating("q".into()))
        );
    }
}
