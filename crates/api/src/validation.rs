//! Validation of objects, reporting every bad field the way kube-apiserver does (`field`, `reason`, `message`).

use std::collections::BTreeSet;

use k8s_openapi::api::apps::v1::Deployment;
use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, NodeStatus, PodSpec, ResourceRequirements, Service};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as QuantityText;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::quantity::Quantity;
use crate::selector::LabelSelector;

/// The offending value of an invalid field.
pub enum FieldValue {
    Text(String),
    Int(i64),
}

impl From<&str> for FieldValue {
    fn from(s: &str) -> Self {
        Self::Text(s.to_string())
    }
}

impl From<String> for FieldValue {
    fn from(s: String) -> Self {
        Self::Text(s)
    }
}

impl From<&String> for FieldValue {
    fn from(s: &String) -> Self {
        Self::Text(s.clone())
    }
}

impl From<i32> for FieldValue {
    fn from(i: i32) -> Self {
        Self::Int(i.into())
    }
}

impl From<i64> for FieldValue {
    fn from(i: i64) -> Self {
        Self::Int(i)
    }
}

/// One invalid field: a `StatusCause` of a 422 Invalid response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cause {
    /// `FieldValueRequired`, `FieldValueInvalid`, `FieldValueDuplicate`, `FieldValueNotSupported`.
    pub reason: &'static str,
    pub field: String,
    pub message: String,
}

/// The reason of a [`Cause`] that kube-apiserver meets while decoding the body, before any validation
/// (a quantity that does not parse): the request is a 400 `… cannot be handled as a …`, not a 422.
pub const UNDECODABLE: &str = "Undecodable";

impl Cause {
    /// A value the API server could not decode at all: the whole request is a bad request.
    pub fn undecodable(field: impl Into<String>, why: &str) -> Self {
        Self {
            reason: UNDECODABLE,
            field: field.into(),
            message: why.to_owned(),
        }
    }

    pub fn required(field: impl Into<String>) -> Self {
        Self {
            reason: "FieldValueRequired",
            field: field.into(),
            message: "Required value".into(),
        }
    }

    /// `Invalid value: "text": why` for strings, `Invalid value: 5: why` for numbers, as kube-apiserver prints.
    pub fn invalid(field: impl Into<String>, value: impl Into<FieldValue>, why: &str) -> Self {
        let value = match value.into() {
            FieldValue::Text(t) => format!("\"{t}\""),
            FieldValue::Int(i) => i.to_string(),
        };
        Self {
            reason: "FieldValueInvalid",
            field: field.into(),
            message: format!("Invalid value: {value}: {why}"),
        }
    }

    pub fn not_supported(field: impl Into<String>, value: &str, supported: &[&str]) -> Self {
        let list = supported
            .iter()
            .map(|s| format!("\"{s}\""))
            .collect::<Vec<_>>()
            .join(", ");
        Self {
            reason: "FieldValueNotSupported",
            field: field.into(),
            message: format!("Unsupported value: \"{value}\": supported values: {list}"),
        }
    }

    pub fn forbidden(field: impl Into<String>, why: &str) -> Self {
        Self {
            reason: "FieldValueForbidden",
            field: field.into(),
            message: format!("Forbidden: {why}"),
        }
    }

    pub fn duplicate(field: impl Into<String>, value: &str) -> Self {
        Self {
            reason: "FieldValueDuplicate",
            field: field.into(),
            message: format!("Duplicate value: \"{value}\""),
        }
    }
}

pub(crate) const DNS1123_LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
pub(crate) const DNS1123_SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";

pub fn is_dns1123_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

pub fn is_dns1123_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_dns1123_label)
}

/// Name rules differ per kind: Services and Namespaces need a DNS label, most others a DNS subdomain.
pub fn validate_name(meta: &ObjectMeta, label_only: bool, causes: &mut Vec<Cause>) {
    match meta.name.as_deref() {
        None | Some("") if meta.generate_name.is_none() => {
            causes.push(Cause::required("metadata.name"))
        }
        None | Some("") => {}
        Some(name) if label_only && !is_dns1123_label(name) => {
            causes.push(Cause::invalid("metadata.name", name, DNS1123_LABEL_MSG))
        }
        Some(name) if !is_dns1123_subdomain(name) => {
            causes.push(Cause::invalid("metadata.name", name, DNS1123_SUBDOMAIN_MSG))
        }
        Some(_) => {}
    }
    validate_labels(meta, causes);
}

/// The name of an IPAddress (kube's `ValidateIPAddressName`): an IP address in its canonical form, and
/// the labels.
pub fn validate_ip_name(meta: &ObjectMeta, causes: &mut Vec<Cause>) {
    match meta.name.as_deref() {
        None | Some("") => causes.push(Cause::required("metadata.name")),
        Some(name) => match name.parse::<std::net::IpAddr>() {
            Ok(ip) if ip.to_string() == name => {}
            Ok(ip) => causes.push(Cause::invalid(
                "metadata.name",
                name,
                &format!("must be in canonical form (\"{ip}\")"),
            )),
            Err(_) => causes.push(Cause::invalid(
                "metadata.name",
                name,
                "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
            )),
        },
    }
    validate_labels(meta, causes);
}

/// An IPAddress's spec (kube's `ValidateIPAddress`): a parent reference with a resource and a name.
pub fn validate_ip_address_spec(
    spec: &k8s_openapi::api::networking::v1::IPAddressSpec,
    causes: &mut Vec<Cause>,
) {
    let parent = &spec.parent_ref;
    if parent.resource.is_empty() {
        causes.push(Cause::required("spec.parentRef.resource"));
    }
    if parent.name.is_empty() {
        causes.push(Cause::required("spec.parentRef.name"));
    }
}

/// The label keys and values of `meta` (kube's `ValidateLabels`), checked for every kind whatever its name
/// rule.
pub fn validate_labels(meta: &ObjectMeta, causes: &mut Vec<Cause>) {
    for (key, value) in meta.labels.iter().flatten() {
        if !valid_qualified_name(key) {
            causes.push(Cause::invalid(
                "metadata.labels",
                key,
                "name part must consist of alphanumeric characters, '-', '_' or '.'",
            ));
        }
        if value.len() > 63
            || !value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        {
            causes.push(Cause::invalid("metadata.labels", value, "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.'"));
        }
    }
}

pub(crate) fn valid_qualified_name(key: &str) -> bool {
    let name = key.rsplit_once('/').map_or(key, |(prefix, name)| {
        if is_dns1123_subdomain(prefix) {
            name
        } else {
            ""
        }
    });
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name.as_bytes()[name.len() - 1].is_ascii_alphanumeric()
}

pub fn validate_pod_spec(spec: &PodSpec, path: &str, causes: &mut Vec<Cause>) {
    if spec.containers.is_empty() {
        causes.push(Cause::required(format!("{path}.containers")));
    }
    let mut names = BTreeSet::new();
    for (i, c) in spec.containers.iter().enumerate() {
        validate_container(c, &format!("{path}.containers[{i}]"), &mut names, causes);
    }
    for (i, c) in spec.init_containers.iter().flatten().enumerate() {
        validate_container(
            c,
            &format!("{path}.initContainers[{i}]"),
            &mut names,
            causes,
        );
    }
    for (i, v) in spec.volumes.iter().flatten().enumerate() {
        let Some(size) = v.empty_dir.as_ref().and_then(|e| e.size_limit.as_ref()) else {
            continue;
        };
        let field = format!("{path}.volumes[{i}].emptyDir.sizeLimit");
        if parse_quantity(&field, size, causes).is_some_and(|q| q.is_negative()) {
            causes.push(Cause::forbidden(
                field,
                "SizeLimit field must be a valid resource quantity",
            ));
        }
    }
    for (name, q) in spec.overhead.iter().flatten() {
        nonnegative_quantity(&format!("{path}.overhead[{name}]"), q, causes);
    }
    if let Some(r) = &spec.resources {
        validate_resources(r, &format!("{path}.resources"), causes);
    }
    if let Some(policy) = spec.restart_policy.as_deref()
        && !["Always", "OnFailure", "Never"].contains(&policy)
    {
        causes.push(Cause::not_supported(
            format!("{path}.restartPolicy"),
            policy,
            &["Always", "OnFailure", "Never"],
        ));
    }
}

fn validate_container(
    c: &Container,
    path: &str,
    names: &mut BTreeSet<String>,
    causes: &mut Vec<Cause>,
) {
    if c.name.is_empty() {
        causes.push(Cause::required(format!("{path}.name")));
    } else if !is_dns1123_label(&c.name) {
        causes.push(Cause::invalid(
            format!("{path}.name"),
            &c.name,
            DNS1123_LABEL_MSG,
        ));
    } else if !names.insert(c.name.clone()) {
        causes.push(Cause::duplicate(format!("{path}.name"), &c.name));
    }
    if c.image.as_deref().is_none_or(|i| i.trim().is_empty()) {
        causes.push(Cause::required(format!("{path}.image")));
    }
    for (j, p) in c.ports.iter().flatten().enumerate() {
        if !(1..=65535).contains(&p.container_port) {
            causes.push(Cause::invalid(
                format!("{path}.ports[{j}].containerPort"),
                p.container_port,
                "must be between 1 and 65535, inclusive",
            ));
        }
    }
    if let Some(policy) = c.image_pull_policy.as_deref()
        && !["Always", "IfNotPresent", "Never"].contains(&policy)
    {
        causes.push(Cause::not_supported(
            format!("{path}.imagePullPolicy"),
            policy,
            &["Always", "IfNotPresent", "Never"],
        ));
    }
    if let Some(r) = &c.resources {
        validate_resources(r, &format!("{path}.resources"), causes);
    }
}

/// Parses a quantity field as kube-apiserver decodes it: a text that is no quantity fails the decoding of
/// the whole body with `ParseQuantity`'s error (`quantities must match the regular expression '…'`).
fn parse_quantity(field: &str, q: &QuantityText, causes: &mut Vec<Cause>) -> Option<Quantity> {
    match Quantity::parse(&q.0) {
        Ok(parsed) => Some(parsed),
        Err(e) => {
            causes.push(Cause::undecodable(field, &e.to_string()));
            None
        }
    }
}

/// `ValidateNonnegativeQuantity`: a quantity that parses and is not below zero.
pub(crate) fn nonnegative_quantity(
    field: &str,
    q: &QuantityText,
    causes: &mut Vec<Cause>,
) -> Option<Quantity> {
    let parsed = parse_quantity(field, q, causes)?;
    if parsed.is_negative() {
        causes.push(Cause::invalid(
            field,
            &q.0,
            "must be greater than or equal to 0",
        ));
        return None;
    }
    Some(parsed)
}

/// kube's `ValidateResourceRequirements`: every limit and request a non-negative quantity, and no
/// request above its limit (`spec.containers[0].resources.limits[memory]`).
fn validate_resources(r: &ResourceRequirements, path: &str, causes: &mut Vec<Cause>) {
    let mut limits = BTreeMap::new();
    for (name, q) in r.limits.iter().flatten() {
        if let Some(parsed) = nonnegative_quantity(&format!("{path}.limits[{name}]"), q, causes) {
            limits.insert(name.as_str(), (parsed, q.0.as_str()));
        }
    }
    for (name, q) in r.requests.iter().flatten() {
        let Some(request) = nonnegative_quantity(&format!("{path}.requests[{name}]"), q, causes)
        else {
            continue;
        };
        if let Some((limit, text)) = limits.get(name.as_str())
            && request.scaled(1000) > limit.scaled(1000)
        {
            causes.push(Cause::invalid(
                format!("{path}.requests"),
                &q.0,
                &format!("must be less than or equal to {name} limit of {text}"),
            ));
        }
    }
}

/// A Node's `status.capacity` and `status.allocatable` are quantities.
pub fn validate_node_status(status: &NodeStatus, causes: &mut Vec<Cause>) {
    for (list, map) in [
        ("capacity", &status.capacity),
        ("allocatable", &status.allocatable),
    ] {
        for (name, q) in map.iter().flatten() {
            parse_quantity(&format!("status.{list}[{name}]"), q, causes);
        }
    }
}

pub fn validate_service(svc: &Service, causes: &mut Vec<Cause>) {
    let Some(spec) = &svc.spec else {
        causes.push(Cause::required("spec"));
        return;
    };
    let ty = spec.type_.as_deref().unwrap_or("ClusterIP");
    if !["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"].contains(&ty) {
        causes.push(Cause::not_supported(
            "spec.type",
            ty,
            &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"],
        ));
    }
    let ports = spec.ports.as_deref().unwrap_or_default();
    if ports.is_empty() && ty != "ExternalName" && spec.cluster_ip.as_deref() != Some("None") {
        causes.push(Cause::required("spec.ports"));
    }
    let mut names = BTreeSet::new();
    for (i, p) in ports.iter().enumerate() {
        if !(1..=65535).contains(&p.port) {
            causes.push(Cause::invalid(
                format!("spec.ports[{i}].port"),
                p.port,
                "must be between 1 and 65535, inclusive",
            ));
        }
        let name = p.name.clone().unwrap_or_default();
        if ports.len() > 1 && name.is_empty() {
            causes.push(Cause::required(format!("spec.ports[{i}].name")));
        } else if !names.insert(name.clone()) {
            causes.push(Cause::duplicate(format!("spec.ports[{i}].name"), &name));
        }
        // kube's ValidateService: a nodePort is a port, and only NodePort and LoadBalancer Services have one
        // (which port of the range the API server checks when it allocates).
        if let Some(node_port) = p.node_port.filter(|n| *n != 0) {
            if !(1..=65535).contains(&node_port) {
                causes.push(Cause::invalid(
                    format!("spec.ports[{i}].nodePort"),
                    node_port,
                    "must be between 1 and 65535, inclusive",
                ));
            } else if !["NodePort", "LoadBalancer"].contains(&ty) {
                causes.push(Cause::forbidden(
                    format!("spec.ports[{i}].nodePort"),
                    &format!("may not be used when `type` is '{ty}'"),
                ));
            }
        }
        if let Some(proto) = p.protocol.as_deref()
            && !["TCP", "UDP", "SCTP"].contains(&proto)
        {
            causes.push(Cause::not_supported(
                format!("spec.ports[{i}].protocol"),
                proto,
                &["SCTP", "TCP", "UDP"],
            ));
        }
    }
}

/// A workload's selector (when it parsed and is not empty) must select its pod template's labels, in
/// kube's words.
pub(crate) fn selector_matches_template(
    selector: Option<&LabelSelector>,
    template: &k8s_openapi::api::core::v1::PodTemplateSpec,
    causes: &mut Vec<Cause>,
) {
    let labels = template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    if let Some(sel) = selector
        && !sel.is_empty()
        && !sel.matches(&labels)
    {
        causes.push(Cause::invalid(
            "spec.template.metadata.labels",
            format!("{labels:?}"),
            "`selector` does not match template `labels`",
        ));
    }
}

pub fn validate_deployment(d: &Deployment, causes: &mut Vec<Cause>) {
    if let Err(bad) =
        crate::autoscaling::ScaleToZero::from_annotations(d.metadata.annotations.as_ref())
    {
        causes.extend(bad);
    }
    let spec = &d.spec;
    if let Some(r) = spec.replicas
        && r < 0
    {
        causes.push(Cause::invalid(
            "spec.replicas",
            r,
            "must be greater than or equal to 0",
        ));
    }
    let selector = LabelSelector::from_k8s(&spec.selector);
    match &selector {
        Ok(sel) if sel.is_empty() => causes.push(Cause::required("spec.selector")),
        Ok(_) => {}
        Err(e) => causes.push(Cause::invalid("spec.selector", "", &e.to_string())),
    }
    selector_matches_template(selector.as_ref().ok(), &spec.template, causes);
    match &spec.template.spec {
        Some(pod) => validate_pod_spec(pod, "spec.template.spec", causes),
        None => causes.push(Cause::required("spec.template.spec.containers")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_names() {
        assert!(is_dns1123_label("web-1"));
        assert!(!is_dns1123_label("Web"));
        assert!(!is_dns1123_label("-web"));
        assert!(is_dns1123_subdomain("a.b-c.d"));
        assert!(!is_dns1123_subdomain("a..b"));
    }

    #[test]
    fn pod_without_image_or_containers_lists_each_field() {
        let spec = PodSpec {
            containers: vec![Container {
                name: "Bad_Name".into(),
                ..Default::default()
            }],
            restart_policy: Some("Sometimes".into()),
            ..Default::default()
        };
        let mut causes = Vec::new();
        validate_pod_spec(&spec, "spec", &mut causes);
        let fields: Vec<_> = causes.iter().map(|c| c.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "spec.containers[0].name",
                "spec.containers[0].image",
                "spec.restartPolicy"
            ]
        );
        let mut causes = Vec::new();
        validate_pod_spec(&PodSpec::default(), "spec", &mut causes);
        assert_eq!(causes, [Cause::required("spec.containers")]);
    }

    #[test]
    fn quantities_are_checked_wherever_they_appear() {
        let spec: PodSpec = serde_json::from_value(serde_json::json!({
            "containers": [{"name": "app", "image": "x", "resources": {
                "limits": {"memory": "1Qi", "cpu": "1"},
                "requests": {"cpu": "2", "memory": "-1"}
            }}],
            "initContainers": [{"name": "init", "image": "x", "resources": {"requests": {"cpu": "1ii"}}}],
            "volumes": [{"name": "scratch", "emptyDir": {"sizeLimit": "-1Mi"}}],
            "overhead": {"memory": "12 Mi"}
        }))
        .unwrap();
        let mut causes = Vec::new();
        validate_pod_spec(&spec, "spec", &mut causes);
        // Text that is no quantity fails the decoding (a 400), the rest is validation (a 422).
        let undecodable: Vec<&str> = causes
            .iter()
            .filter(|c| c.reason == UNDECODABLE)
            .map(|c| c.field.as_str())
            .collect();
        assert_eq!(
            undecodable,
            [
                "spec.containers[0].resources.limits[memory]",
                "spec.initContainers[0].resources.requests[cpu]",
                "spec.overhead[memory]"
            ]
        );
        let lines: Vec<String> = causes
            .iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect();
        let regex = crate::quantity::QUANTITY_REGEX;
        assert_eq!(
            lines,
            [
                format!("spec.containers[0].resources.limits[memory]: quantities must match the regular expression '{regex}'"),
                "spec.containers[0].resources.requests: Invalid value: \"2\": must be less than or equal to cpu limit of 1".into(),
                "spec.containers[0].resources.requests[memory]: Invalid value: \"-1\": must be greater than or equal to 0".into(),
                "spec.initContainers[0].resources.requests[cpu]: unable to parse quantity's suffix".into(),
                "spec.volumes[0].emptyDir.sizeLimit: Forbidden: SizeLimit field must be a valid resource quantity".into(),
                format!("spec.overhead[memory]: quantities must match the regular expression '{regex}'"),
            ]
        );
    }
}
