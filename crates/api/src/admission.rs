//! Admission: decode a request body into its typed form, apply Kubernetes defaults, validate, and re-encode,
//! each step by the kind's strategy ([`crate::strategy`]); the defaulting and validation functions kinds share
//! live here.
//!
//! Decoding through the k8s-openapi types means a malformed field is a 400 and unknown fields are dropped,
//! as kube-apiserver does with its default field validation.

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentStrategy, RollingUpdateDaemonSet, RollingUpdateDeployment,
};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{PodSpec, ReplicationController, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudgetSpec;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1::APIService;
use serde_json::Value;

use crate::resources::ResourceInfo;
use crate::validation::{self, Cause, FieldValue, UNDECODABLE};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdmitError {
    /// The body is not an object of this resource (400 BadRequest).
    #[error("{0}")]
    BadRequest(String),
    /// The object is well-formed but invalid (422 Invalid); `message` is kube-apiserver's summary line.
    #[error("{message}")]
    Invalid {
        kind: String,
        name: String,
        message: String,
        causes: Vec<Cause>,
    },
}

/// Decodes, defaults and validates `obj` as a `res`, returning the object to store.
///
/// # Errors
/// [`AdmitError::BadRequest`] when the body does not decode or names another kind, [`AdmitError::Invalid`]
/// listing every invalid field.
pub fn admit(res: &ResourceInfo, obj: Value) -> Result<Value, AdmitError> {
    admit_by(res, obj, |obj, causes| res.strategy.admit(obj, causes))
}

/// [`admit`] for an update of the main resource from `old` (a stored object): the kind's update rules too.
///
/// # Errors
/// As [`admit`]; a change the kind does not allow is [`AdmitError::Invalid`].
pub fn admit_update(res: &ResourceInfo, old: &Value, obj: Value) -> Result<Value, AdmitError> {
    admit_by(res, obj, |obj, causes| {
        res.strategy.admit_update(old, obj, causes)
    })
}

fn admit_by(
    res: &ResourceInfo,
    mut obj: Value,
    strategy: impl FnOnce(Value, &mut Vec<Cause>) -> Result<Value, AdmitError>,
) -> Result<Value, AdmitError> {
    let Some(map) = obj.as_object_mut() else {
        return Err(AdmitError::BadRequest(
            "the body is not a JSON or YAML object".into(),
        ));
    };
    let api_version = res.api_version();
    match map.get("apiVersion").and_then(Value::as_str) {
        None => {
            map.insert("apiVersion".into(), Value::String(api_version.clone()));
        }
        Some(v) if v == api_version => {}
        Some(v) => {
            return Err(AdmitError::BadRequest(format!(
                "the API version in the data ({v}) does not match the expected API version ({api_version})"
            )));
        }
    }
    match map.get("kind").and_then(Value::as_str) {
        None => {
            map.insert("kind".into(), Value::String(res.kind.into()));
        }
        Some(k) if k == res.kind => {}
        Some(k) => {
            return Err(AdmitError::BadRequest(format!(
                "the kind in the data ({k}) does not match the expected kind ({})",
                res.kind
            )));
        }
    }
    let mut causes = Vec::new();
    let out = strategy(obj, &mut causes)?;
    if causes.is_empty() {
        return Ok(out);
    }
    if let Some(undecodable) = causes.iter().find(|c| c.reason == UNDECODABLE) {
        return Err(AdmitError::BadRequest(format!(
            "{kind} in version \"{version}\" cannot be handled as a {kind}: {}",
            undecodable.message,
            kind = res.kind,
            version = res.version,
        )));
    }
    let name = out
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let detail = causes
        .iter()
        .map(|c| format!("{}: {}", c.field, c.message))
        .collect::<Vec<_>>();
    let detail = if detail.len() == 1 {
        detail[0].clone()
    } else {
        format!("[{}]", detail.join(", "))
    };
    Err(AdmitError::Invalid {
        kind: res.kind.to_string(),
        message: format!("{} \"{name}\" is invalid: {detail}", res.kind),
        name,
        causes,
    })
}

/// The fields of `obj` that the kind's schema does not know, as dotted paths (`spec.foo`,
/// `spec.containers[0].bogus`): what `fieldValidation=Strict` rejects and `Warn` warns about.
pub fn unknown_fields(res: &ResourceInfo, obj: &Value) -> Vec<String> {
    let decoded = res.strategy.known_fields(obj);
    let mut out = Vec::new();
    if let Some(decoded) = decoded {
        diff_unknown(obj, &decoded, "", &mut out);
    }
    out
}

fn diff_unknown(input: &Value, known: &Value, path: &str, out: &mut Vec<String>) {
    match (input, known) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in a {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                match b.get(k) {
                    Some(kv) => diff_unknown(v, kv, &p, out),
                    None if !v.is_null() => out.push(p),
                    None => {}
                }
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            for (i, (v, kv)) in a.iter().zip(b).enumerate() {
                diff_unknown(v, kv, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// kube's `SetDefaults_ReplicationController`: an empty selector, and empty object labels, become the
/// template's labels; one replica.
pub(crate) fn default_replication_controller(rc: &mut ReplicationController) {
    let spec = rc.spec.get_or_insert_with(Default::default);
    let labels = spec
        .template
        .as_ref()
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.clone());
    if let Some(labels) = labels {
        if spec.selector.as_ref().is_none_or(|s| s.is_empty()) {
            spec.selector = Some(labels.clone());
        }
        if rc.metadata.labels.as_ref().is_none_or(|l| l.is_empty()) {
            rc.metadata.labels = Some(labels);
        }
    }
    spec.replicas.get_or_insert(1);
    if let Some(pod) = spec.template.as_mut().and_then(|t| t.spec.as_mut()) {
        default_pod_spec(pod);
    }
}

/// kube's `ValidateReplicationControllerSpec`: a non-empty equality selector that the template's labels
/// match, non-negative counts, a template whose pods restart `Always`.
pub(crate) fn validate_replication_controller(rc: &ReplicationController, c: &mut Vec<Cause>) {
    let Some(spec) = &rc.spec else {
        c.push(Cause::required("spec.selector"));
        c.push(Cause::required("spec.template"));
        return;
    };
    for (field, value) in [
        ("spec.replicas", spec.replicas),
        ("spec.minReadySeconds", spec.min_ready_seconds),
    ] {
        if let Some(v) = value
            && v < 0
        {
            c.push(Cause::invalid(
                field,
                v,
                "must be greater than or equal to 0",
            ));
        }
    }
    let selector = spec.selector.clone().unwrap_or_default();
    if selector.is_empty() {
        c.push(Cause::required("spec.selector"));
    }
    let Some(template) = &spec.template else {
        c.push(Cause::required("spec.template"));
        return;
    };
    validation::selector_matches_template(
        Some(&crate::LabelSelector::from_map(&selector)),
        template,
        c,
    );
    match &template.spec {
        Some(pod) => {
            validation::validate_pod_spec(pod, "spec.template.spec", c);
            if let Some(policy) = pod.restart_policy.as_deref()
                && policy != "Always"
            {
                c.push(Cause::not_supported(
                    "spec.template.spec.restartPolicy",
                    policy,
                    &["Always"],
                ));
            }
        }
        None => c.push(Cause::required("spec.template.spec.containers")),
    }
}

/// kube-aggregator's `ValidateAPIService`: named `<version>.<group>`, priorities in range, a local service
/// (no `spec.service`) without TLS settings, a remote one naming its namespace, name and a valid port.
pub(crate) fn validate_api_service(a: &APIService, c: &mut Vec<Cause>) {
    let Some(spec) = a.spec.as_ref() else {
        return;
    };
    let group = spec.group.clone().unwrap_or_default();
    let version = spec.version.clone().unwrap_or_default();
    let required = format!("{version}.{group}");
    if let Some(name) = a.metadata.name.as_deref()
        && !name.is_empty()
        && name != required
    {
        c.push(Cause::invalid(
            "metadata.name",
            name,
            &format!("must be `spec.version+\".\"+spec.group`: \"{required}\""),
        ));
    }
    if group.is_empty() && version != "v1" {
        c.push(Cause {
            message: "Required value: only v1 may have an empty group and it better be legacy kube"
                .into(),
            ..Cause::required("spec.group")
        });
    }
    if !group.is_empty() && !validation::is_dns1123_subdomain(&group) {
        c.push(Cause::invalid(
            "spec.group",
            group.as_str(),
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')",
        ));
    }
    if !validation::is_dns1123_label(&version)
        || version.starts_with(|ch: char| ch.is_ascii_digit())
    {
        c.push(Cause::invalid(
            "spec.version",
            version.as_str(),
            "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')",
        ));
    }
    if spec.group_priority_minimum <= 0 || spec.group_priority_minimum > 20000 {
        c.push(Cause::invalid(
            "spec.groupPriorityMinimum",
            spec.group_priority_minimum,
            "must be positive and less than 20000",
        ));
    }
    if spec.version_priority <= 0 || spec.version_priority > 1000 {
        c.push(Cause::invalid(
            "spec.versionPriority",
            spec.version_priority,
            "must be positive and less than 1000",
        ));
    }
    let ca_bundle = spec.ca_bundle.as_ref().map_or(0, |b| b.0.len());
    let insecure = spec.insecure_skip_tls_verify.unwrap_or(false);
    let Some(service) = spec.service.as_ref() else {
        if ca_bundle != 0 {
            c.push(Cause::invalid(
                "spec.caBundle",
                format!("{ca_bundle} bytes"),
                "local APIServices may not have a caBundle",
            ));
        }
        if insecure {
            c.push(Cause {
                reason: "FieldValueInvalid",
                field: "spec.insecureSkipTLSVerify".into(),
                message:
                    "Invalid value: true: local APIServices may not have insecureSkipTLSVerify"
                        .into(),
            });
        }
        return;
    };
    let port = service.port.unwrap_or(443);
    if service.namespace.as_deref().is_none_or(str::is_empty) {
        c.push(Cause::required("spec.service.namespace"));
    }
    if service.name.as_deref().is_none_or(str::is_empty) {
        c.push(Cause::required("spec.service.name"));
    }
    if !(1..=65535).contains(&port) {
        c.push(Cause::invalid(
            "spec.service.port",
            port,
            "must be between 1 and 65535, inclusive",
        ));
    }
    if insecure && ca_bundle > 0 {
        c.push(Cause {
            reason: "FieldValueInvalid",
            field: "spec.insecureSkipTLSVerify".into(),
            message: "Invalid value: true: may not be true if caBundle is present".into(),
        });
    }
}

/// The image pull policy Kubernetes defaults to: `Always` for `:latest` or untagged images.
pub fn default_pull_policy(image: &str) -> &'static str {
    if image.contains('@') {
        return "IfNotPresent";
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.split_once(':') {
        Some((_, "latest")) | None => "Always",
        Some(_) => "IfNotPresent",
    }
}

pub fn default_pod_spec(spec: &mut PodSpec) {
    spec.restart_policy.get_or_insert_with(|| "Always".into());
    spec.termination_grace_period_seconds.get_or_insert(30);
    spec.dns_policy.get_or_insert_with(|| "ClusterFirst".into());
    spec.scheduler_name
        .get_or_insert_with(|| "default-scheduler".into());
    spec.enable_service_links.get_or_insert(true);
    spec.priority.get_or_insert(0);
    let containers = spec
        .containers
        .iter_mut()
        .chain(spec.init_containers.iter_mut().flatten());
    for c in containers {
        if c.image_pull_policy.is_none() {
            c.image_pull_policy =
                Some(default_pull_policy(c.image.as_deref().unwrap_or_default()).into());
        }
        c.termination_message_path
            .get_or_insert_with(|| "/dev/termination-log".into());
        c.termination_message_policy
            .get_or_insert_with(|| "File".into());
        for p in c.ports.iter_mut().flatten() {
            p.protocol.get_or_insert_with(|| "TCP".into());
        }
    }
}

/// The label that ties a Job's pods to it: `spec.selector` selects it when kube-apiserver generates it.
const JOB_CONTROLLER_UID_LABEL: &str = "batch.kubernetes.io/controller-uid";
const JOB_LABELS: [(&str, bool); 4] = [
    ("batch.kubernetes.io/job-name", false),
    ("job-name", false),
    (JOB_CONTROLLER_UID_LABEL, true),
    ("controller-uid", true),
];

/// kube-apiserver's Job selector (`generateSelector`): unless `spec.manualSelector` is true,
/// `spec.selector` becomes `{matchLabels: {controller-uid: <uid>}}` and the template is labelled with the
/// Job's name and uid (labels already there are kept, for [`validate_job_selector`] to judge). Needs
/// `metadata.uid`, which the resource layer sets before admission; without it nothing is generated.
pub(crate) fn default_job_selector(job: &mut Job) {
    let uid = job.metadata.uid.clone().unwrap_or_default();
    let name = job.metadata.name.clone().unwrap_or_default();
    let spec = job.spec.get_or_insert_with(Default::default);
    if spec.manual_selector == Some(true) || uid.is_empty() {
        return;
    }
    let labels = spec
        .template
        .metadata
        .get_or_insert_with(Default::default)
        .labels
        .get_or_insert_with(Default::default);
    for (label, is_uid) in JOB_LABELS {
        let want = if is_uid { &uid } else { &name };
        labels
            .entry(label.to_string())
            .or_insert_with(|| want.clone());
    }
    spec.selector
        .get_or_insert_with(Default::default)
        .match_labels
        .get_or_insert_with(Default::default)
        .entry(JOB_CONTROLLER_UID_LABEL.to_string())
        .or_insert(uid);
}

/// kube-apiserver's `validateGeneratedSelector` and, with `manualSelector`, the selector a user wrote: a
/// generated selector and the template's job labels must be exactly the generated ones; a manual selector
/// is required and must match the template's labels.
pub(crate) fn validate_job_selector(job: &Job, causes: &mut Vec<Cause>) {
    let uid = job.metadata.uid.clone().unwrap_or_default();
    let name = job.metadata.name.clone().unwrap_or_default();
    let Some(spec) = &job.spec else {
        return;
    };
    let labels = spec
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    if spec.manual_selector == Some(true) {
        let Some(selector) = &spec.selector else {
            causes.push(Cause::required("spec.selector"));
            return;
        };
        match crate::selector::LabelSelector::from_k8s(selector) {
            Ok(sel) if sel.is_empty() => causes.push(Cause::required("spec.selector")),
            Ok(sel) if !sel.matches(&labels) => causes.push(Cause::invalid(
                "spec.template.metadata.labels",
                format!("{labels:?}"),
                "`selector` does not match template `labels`",
            )),
            Ok(_) => {}
            Err(e) => causes.push(Cause::invalid("spec.selector", "", &e.to_string())),
        }
        return;
    }
    if uid.is_empty() {
        return;
    }
    for (label, is_uid) in JOB_LABELS {
        let want = if is_uid { &uid } else { &name };
        if let Some(have) = labels.get(label)
            && have != want
        {
            causes.push(Cause::invalid(
                format!("spec.template.metadata.labels[{label}]"),
                have,
                &format!("must be '{want}'"),
            ));
        }
    }
    let Some(selector) = &spec.selector else {
        return;
    };
    let match_labels = selector.match_labels.clone().unwrap_or_default();
    let generated = selector
        .match_expressions
        .as_ref()
        .is_none_or(Vec::is_empty)
        && match_labels.len() == 1
        && match_labels.get(JOB_CONTROLLER_UID_LABEL) == Some(&uid);
    if !generated {
        causes.push(Cause::invalid(
            "spec.selector",
            serde_json::to_string(selector).unwrap_or_default(),
            "`selector` not auto-generated",
        ));
    }
}

/// kube's `ValidatePodDisruptionBudgetSpec`: at most one of minAvailable and maxUnavailable, each a
/// non-negative number or a percentage of at most 100%, a valid selector, a known unhealthy-pod policy.
pub(crate) fn validate_pdb_spec(spec: &PodDisruptionBudgetSpec, causes: &mut Vec<Cause>) {
    if spec.min_available.is_some() && spec.max_unavailable.is_some() {
        causes.push(Cause::invalid(
            "spec",
            serde_json::to_string(spec).unwrap_or_default(),
            "minAvailable and maxUnavailable cannot be both set",
        ));
    }
    for (field, value) in [
        ("minAvailable", &spec.min_available),
        ("maxUnavailable", &spec.max_unavailable),
    ] {
        let path = format!("spec.{field}");
        match value {
            Some(IntOrString::Int(i)) if *i < 0 => causes.push(Cause::invalid(
                path,
                *i,
                "must be greater than or equal to 0",
            )),
            Some(IntOrString::String(s)) => match s.strip_suffix('%')
                .filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
                .map(str::parse::<u64>)
            {
                Some(Ok(p)) if p > 100 => {
                    causes.push(Cause::invalid(path, s, "must not be greater than 100%"));
                }
                Some(Ok(_)) => {}
                _ => causes.push(Cause::invalid(
                    path,
                    s,
                    "a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')",
                )),
            },
            _ => {}
        }
    }
    if let Some(selector) = &spec.selector
        && let Err(e) = crate::selector::LabelSelector::from_k8s(selector)
    {
        causes.push(Cause::invalid("spec.selector", "", &e.to_string()));
    }
    if let Some(policy) = spec.unhealthy_pod_eviction_policy.as_deref()
        && !["IfHealthyBudget", "AlwaysAllow"].contains(&policy)
    {
        causes.push(Cause::not_supported(
            "spec.unhealthyPodEvictionPolicy",
            policy,
            &["AlwaysAllow", "IfHealthyBudget"],
        ));
    }
}

/// kube's `ValidateRollingUpdateDaemonSet`: neither is negative, and exactly one of maxSurge and
/// maxUnavailable is non-zero.
pub(crate) fn validate_daemonset_rolling_update(
    ru: &RollingUpdateDaemonSet,
    causes: &mut Vec<Cause>,
) {
    const PATH: &str = "spec.updateStrategy.rollingUpdate";
    let value = |v: &Option<IntOrString>| match v {
        Some(IntOrString::Int(i)) => i64::from(*i),
        Some(IntOrString::String(s)) => s
            .strip_suffix('%')
            .and_then(|p| p.parse::<i64>().ok())
            .unwrap_or(0),
        None => 0,
    };
    let shown = |v: &Option<IntOrString>| -> FieldValue {
        match v {
            Some(IntOrString::Int(i)) => FieldValue::Int(i64::from(*i)),
            Some(IntOrString::String(s)) => FieldValue::Text(s.clone()),
            None => FieldValue::Int(0),
        }
    };
    let (unavailable, surge) = (value(&ru.max_unavailable), value(&ru.max_surge));
    for (field, v, n) in [
        ("maxUnavailable", &ru.max_unavailable, unavailable),
        ("maxSurge", &ru.max_surge, surge),
    ] {
        if n < 0 {
            causes.push(Cause::invalid(
                format!("{PATH}.{field}"),
                shown(v),
                "must be greater than or equal to 0",
            ));
        }
    }
    match (unavailable != 0, surge != 0) {
        (true, true) => causes.push(Cause::invalid(
            format!("{PATH}.maxSurge"),
            shown(&ru.max_surge),
            "may not be set when maxUnavailable is non-zero",
        )),
        (false, false) => causes.push(Cause {
            reason: "FieldValueRequired",
            field: format!("{PATH}.maxUnavailable"),
            message: "Required value: cannot be 0 when maxSurge is 0".into(),
        }),
        _ => {}
    }
}

pub(crate) fn default_service(svc: &mut Service) {
    // `status: {loadBalancer: {}}`, as kube-apiserver always writes it (a struct, not a pointer, in its types).
    svc.status
        .get_or_insert_with(Default::default)
        .load_balancer
        .get_or_insert_with(Default::default);
    let spec = svc.spec.get_or_insert_with(Default::default);
    let ty = spec.type_.get_or_insert_with(|| "ClusterIP".into()).clone();
    let affinity = spec.session_affinity.get_or_insert_with(|| "None".into());
    // kube's SetDefaults_Service: ClientIP affinity's 3-hour timeout, a NodePort's traffic policy, and a
    // LoadBalancer's node ports.
    if affinity == "ClientIP" {
        spec.session_affinity_config
            .get_or_insert_with(Default::default)
            .client_ip
            .get_or_insert_with(Default::default)
            .timeout_seconds
            .get_or_insert(10_800);
    }
    if ty == "NodePort" || ty == "LoadBalancer" {
        spec.external_traffic_policy
            .get_or_insert_with(|| "Cluster".into());
    }
    if ty == "LoadBalancer" {
        spec.allocate_load_balancer_node_ports.get_or_insert(true);
    }
    for p in spec.ports.iter_mut().flatten() {
        p.protocol.get_or_insert_with(|| "TCP".into());
        p.target_port.get_or_insert(IntOrString::Int(p.port));
    }
}

pub(crate) fn default_deployment(d: &mut Deployment) {
    let spec = &mut d.spec;
    spec.replicas.get_or_insert(1);
    spec.revision_history_limit.get_or_insert(10);
    spec.progress_deadline_seconds.get_or_insert(600);
    let strategy = spec
        .strategy
        .get_or_insert_with(DeploymentStrategy::default);
    let ty = strategy.type_.get_or_insert_with(|| "RollingUpdate".into());
    if ty == "RollingUpdate" {
        let ru = strategy
            .rolling_update
            .get_or_insert_with(RollingUpdateDeployment::default);
        ru.max_surge
            .get_or_insert(IntOrString::String("25%".into()));
        ru.max_unavailable
            .get_or_insert(IntOrString::String("25%".into()));
    }
    if let Some(pod) = &mut spec.template.spec {
        default_pod_spec(pod);
    }
}

/// The causes of an `Invalid` admission result as `field: message` lines; panics on any other result
/// (the kinds' tests).
#[cfg(test)]
pub(crate) fn invalid_causes_of(result: Result<Value, AdmitError>) -> Vec<String> {
    match result {
        Err(AdmitError::Invalid { causes, .. }) => causes
            .into_iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect(),
        other => panic!("{other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::by_kind;
    use serde_json::json;

    fn pods() -> &'static ResourceInfo {
        by_kind("v1", "Pod").expect("pods")
    }

    fn invalid_causes(res: &ResourceInfo, obj: Value) -> Vec<String> {
        invalid_causes_of(admit(res, obj))
    }

    #[test]
    fn a_replication_controller_takes_its_selector_and_labels_from_its_template() {
        let res = by_kind("v1", "ReplicationController").expect("rcs");
        let rc = |spec: Value| {
            json!({"apiVersion": "v1", "kind": "ReplicationController",
                "metadata": {"name": "web"}, "spec": spec})
        };
        let template = json!({"metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "c", "image": "img:1"}]}});
        let ok = admit(res, rc(json!({"template": template}))).expect("valid");
        assert_eq!(ok["spec"]["selector"], json!({"app": "web"}));
        assert_eq!(ok["metadata"]["labels"], json!({"app": "web"}));
        assert_eq!(ok["spec"]["replicas"], 1);
        assert_eq!(
            invalid_causes(
                res,
                rc(json!({"replicas": -1, "selector": {"app": "other"}, "template": template}))
            ),
            [
                "spec.replicas: Invalid value: -1: must be greater than or equal to 0",
                "spec.template.metadata.labels: Invalid value: \"{\"app\": \"web\"}\": `selector` does not match template `labels`",
            ]
        );
        assert_eq!(
            invalid_causes(res, rc(json!({"replicas": 1}))),
            [
                "spec.selector: Required value",
                "spec.template: Required value"
            ]
        );
    }

    #[test]
    fn services_get_kubes_defaults_and_node_ports_only_where_they_belong() {
        let svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
            "spec": {"type": "NodePort", "sessionAffinity": "ClientIP", "ports": [{"port": 80}]}});
        let admitted = admit(by_kind("v1", "Service").expect("services"), svc).expect("admitted");
        assert_eq!(
            admitted["spec"]["sessionAffinityConfig"]["clientIP"]["timeoutSeconds"],
            10_800
        );
        assert_eq!(admitted["spec"]["externalTrafficPolicy"], "Cluster");
        let cluster_ip = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
            "spec": {"ports": [{"port": 80, "nodePort": 30080}]}});
        let causes = invalid_causes(by_kind("v1", "Service").expect("services"), cluster_ip);
        assert_eq!(
            causes,
            ["spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'"]
        );
    }

    #[test]
    fn an_api_service_is_named_version_dot_group() {
        let res = by_kind("apiregistration.k8s.io/v1", "APIService").expect("apiservices");
        let svc = |name: &str, spec: Value| {
            json!({"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
                "metadata": {"name": name}, "spec": spec})
        };
        let ok = admit(
            res,
            svc(
                "v1.example.com",
                json!({"group": "example.com", "version": "v1", "groupPriorityMinimum": 100,
                    "versionPriority": 10, "service": {"namespace": "ns", "name": "api"}}),
            ),
        )
        .expect("valid");
        assert_eq!(ok["spec"]["service"]["port"], 443);
        assert_eq!(
            invalid_causes(
                res,
                svc(
                    "v2.example.com",
                    json!({"group": "example.com", "version": "v1", "groupPriorityMinimum": 0,
                        "versionPriority": 10, "service": {"namespace": "ns"}})
                )
            ),
            [
                "metadata.name: Invalid value: \"v2.example.com\": must be `spec.version+\".\"+spec.group`: \"v1.example.com\"",
                "spec.groupPriorityMinimum: Invalid value: 0: must be positive and less than 20000",
                "spec.service.name: Required value",
            ]
        );
    }

    #[test]
    fn a_disruption_budget_is_validated_as_kube_apiserver_does() {
        let res = by_kind("policy/v1", "PodDisruptionBudget").expect("pdbs");
        let pdb = |spec: Value| {
            json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
                "metadata": {"name": "web"}, "spec": spec})
        };
        let ok = admit(
            res,
            pdb(json!({"minAvailable": "50%", "selector": {"matchLabels": {"app": "web"}}})),
        )
        .expect("valid");
        assert_eq!(ok["spec"]["minAvailable"], "50%");
        let fields = |spec: Value| match admit(res, pdb(spec)) {
            Err(AdmitError::Invalid { causes, .. }) => causes
                .into_iter()
                .map(|c| format!("{}: {}", c.field, c.message))
                .collect::<Vec<_>>(),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            fields(json!({"minAvailable": 1, "maxUnavailable": 1})),
            [
                r#"spec: Invalid value: "{"maxUnavailable":1,"minAvailable":1}": minAvailable and maxUnavailable cannot be both set"#
            ]
        );
        assert_eq!(
            fields(json!({"minAvailable": -1, "maxUnavailable": null})),
            ["spec.minAvailable: Invalid value: -1: must be greater than or equal to 0"]
        );
        assert_eq!(
            fields(json!({"maxUnavailable": "101%"})),
            ["spec.maxUnavailable: Invalid value: \"101%\": must not be greater than 100%"]
        );
        assert_eq!(fields(json!({"maxUnavailable": "x%"})).len(), 1);
    }

    #[test]
    fn secret_string_data_is_merged_into_data() {
        let res = crate::resources::by_path("", "v1", "secrets").expect("secrets");
        let out = admit(
            res,
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
                   "data": {"a": "b2xk", "b": "Yg=="}, "stringData": {"a": "new"}}),
        )
        .expect("admitted");
        assert_eq!(out["data"], json!({"a": "bmV3", "b": "Yg=="}));
        assert!(out.get("stringData").is_none(), "{out}");
        assert_eq!(out["type"], "Opaque");
    }

    #[test]
    fn defaults_a_pod_and_drops_unknown_fields() {
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
            "spec": {"bogus": 1, "containers": [{"name": "c", "image": "r/x:v1", "ports": [{"containerPort": 80}]}]}});
        let out = admit(pods(), pod).expect("valid");
        assert_eq!(out["spec"]["restartPolicy"], "Always");
        assert_eq!(
            out["spec"]["containers"][0]["imagePullPolicy"],
            "IfNotPresent"
        );
        assert_eq!(out["spec"]["containers"][0]["ports"][0]["protocol"], "TCP");
        assert_eq!(out["status"]["phase"], "Pending");
        assert!(out["spec"].get("bogus").is_none());
    }

    #[test]
    fn invalid_pod_lists_causes() {
        let pod = json!({"metadata": {"name": "Bad"}, "spec": {"containers": [{"name": "c"}]}});
        let Err(AdmitError::Invalid {
            message, causes, ..
        }) = admit(pods(), pod)
        else {
            panic!("must be invalid")
        };
        assert_eq!(causes.len(), 2);
        assert!(
            message.starts_with("Pod \"Bad\" is invalid: [metadata.name: Invalid value: \"Bad\""),
            "{message}"
        );
    }

    #[test]
    fn wrong_kind_or_shape_is_bad_request() {
        assert!(matches!(
            admit(pods(), json!({"kind": "Service"})),
            Err(AdmitError::BadRequest(_))
        ));
        assert!(matches!(
            admit(pods(), json!({"spec": {"containers": "no"}})),
            Err(AdmitError::BadRequest(_))
        ));
        assert!(matches!(
            admit(pods(), json!([1])),
            Err(AdmitError::BadRequest(_))
        ));
    }

    #[test]
    fn finds_unknown_fields_at_any_depth() {
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "bogus": 1},
            "spec": {"foo": null, "bar": {"x": 1}, "containers": [{"name": "c", "image": "i", "imagePolicy": "x"}]}});
        assert_eq!(
            unknown_fields(pods(), &pod),
            [
                "metadata.bogus",
                "spec.bar",
                "spec.containers[0].imagePolicy"
            ]
        );
    }

    fn jobs() -> &'static ResourceInfo {
        by_kind("batch/v1", "Job").expect("jobs")
    }

    fn job(spec: Value) -> Value {
        let mut spec = spec;
        spec["template"] = json!({"spec": {"restartPolicy": "Never",
            "containers": [{"name": "c", "image": "x:1"}]}});
        json!({"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "pi", "namespace": "default", "uid": "u-1"}, "spec": spec})
    }

    fn invalid_fields(err: AdmitError) -> Vec<(String, String)> {
        match err {
            AdmitError::Invalid { causes, .. } => {
                causes.into_iter().map(|c| (c.field, c.message)).collect()
            }
            other => panic!("not Invalid: {other:?}"),
        }
    }

    #[test]
    fn job_selector_is_generated_from_the_uid() {
        let out = admit(jobs(), job(json!({}))).expect("admitted");
        assert_eq!(
            out["spec"]["selector"],
            json!({"matchLabels": {"batch.kubernetes.io/controller-uid": "u-1"}})
        );
        assert_eq!(
            out["spec"]["template"]["metadata"]["labels"],
            json!({"batch.kubernetes.io/controller-uid": "u-1", "controller-uid": "u-1",
                "batch.kubernetes.io/job-name": "pi", "job-name": "pi"})
        );
        // Admitting the stored object again (an update) changes nothing.
        assert_eq!(admit(jobs(), out.clone()).expect("re-admitted"), out);
        // User labels stay next to the generated ones.
        let mut labelled = job(json!({}));
        labelled["spec"]["template"]["metadata"] = json!({"labels": {"app": "pi"}});
        let out = admit(jobs(), labelled).expect("admitted");
        assert_eq!(out["spec"]["template"]["metadata"]["labels"]["app"], "pi");
        assert_eq!(
            out["spec"]["template"]["metadata"]["labels"]["job-name"],
            "pi"
        );
    }

    #[test]
    fn a_hand_made_job_selector_needs_manual_selector() {
        let hand = job(json!({"selector": {"matchLabels": {"app": "pi"}}}));
        let fields = invalid_fields(admit(jobs(), hand).unwrap_err());
        assert_eq!(fields.len(), 1, "{fields:?}");
        assert_eq!(fields[0].0, "spec.selector");
        assert!(
            fields[0].1.ends_with("`selector` not auto-generated"),
            "{fields:?}"
        );

        let mut wrong_uid = job(json!({}));
        wrong_uid["spec"]["template"]["metadata"] = json!({"labels": {"controller-uid": "other"}});
        let fields = invalid_fields(admit(jobs(), wrong_uid).unwrap_err());
        assert_eq!(
            fields,
            [(
                "spec.template.metadata.labels[controller-uid]".to_string(),
                "Invalid value: \"other\": must be 'u-1'".to_string()
            )]
        );
    }

    #[test]
    fn manual_selector_requires_a_matching_selector() {
        let missing = job(json!({"manualSelector": true}));
        let err = admit(jobs(), missing).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Job \"pi\" is invalid: spec.selector: Required value"
        );

        let mut manual = job(json!({"manualSelector": true,
            "selector": {"matchLabels": {"app": "pi"}}}));
        manual["spec"]["template"]["metadata"] = json!({"labels": {"app": "pi"}});
        let out = admit(jobs(), manual.clone()).expect("admitted");
        assert_eq!(
            out["spec"]["selector"],
            json!({"matchLabels": {"app": "pi"}})
        );
        assert_eq!(
            out["spec"]["template"]["metadata"]["labels"],
            json!({"app": "pi"})
        );

        manual["spec"]["template"]["metadata"] = json!({"labels": {"app": "other"}});
        let fields = invalid_fields(admit(jobs(), manual).unwrap_err());
        assert_eq!(fields.len(), 1, "{fields:?}");
        assert_eq!(fields[0].0, "spec.template.metadata.labels");
    }

    fn daemonset(rolling_update: Option<Value>) -> Value {
        let mut ds = json!({"apiVersion": "apps/v1", "kind": "DaemonSet",
            "metadata": {"name": "agent", "namespace": "default"},
            "spec": {"selector": {"matchLabels": {"app": "a"}},
                "template": {"metadata": {"labels": {"app": "a"}},
                    "spec": {"containers": [{"name": "c", "image": "x:1"}]}}}});
        if let Some(ru) = rolling_update {
            ds["spec"]["updateStrategy"] = json!({"type": "RollingUpdate", "rollingUpdate": ru});
        }
        ds
    }

    #[test]
    fn daemonset_rolling_update_defaults_and_surge_rules() {
        let ds = by_kind("apps/v1", "DaemonSet").expect("daemonsets");
        let out = admit(ds, daemonset(None)).expect("admitted");
        assert_eq!(
            out["spec"]["updateStrategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}})
        );
        let surge = admit(
            ds,
            daemonset(Some(json!({"maxSurge": "25%", "maxUnavailable": 0}))),
        )
        .expect("surge with maxUnavailable 0 is valid");
        assert_eq!(
            surge["spec"]["updateStrategy"]["rollingUpdate"]["maxSurge"],
            "25%"
        );
        // maxUnavailable defaults to 1, so a surge alone is rejected, as kube does.
        let err = admit(ds, daemonset(Some(json!({"maxSurge": 1})))).unwrap_err();
        assert_eq!(
            invalid_fields(err),
            [(
                "spec.updateStrategy.rollingUpdate.maxSurge".to_string(),
                "Invalid value: 1: may not be set when maxUnavailable is non-zero".to_string()
            )]
        );
        let err = admit(ds, daemonset(Some(json!({"maxUnavailable": "0%"})))).unwrap_err();
        assert_eq!(
            invalid_fields(err),
            [(
                "spec.updateStrategy.rollingUpdate.maxUnavailable".to_string(),
                "Required value: cannot be 0 when maxSurge is 0".to_string()
            )]
        );
    }

    #[test]
    fn pull_policy_defaults() {
        assert_eq!(default_pull_policy("reg:5000/app"), "Always");
        assert_eq!(default_pull_policy("reg:5000/app:latest"), "Always");
        assert_eq!(default_pull_policy("reg:5000/app:v1"), "IfNotPresent");
        assert_eq!(default_pull_policy("app@sha256:abc"), "IfNotPresent");
    }
}
