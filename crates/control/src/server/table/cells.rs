//! The cells of each row, as kube-apiserver's print functions compute them.

use std::collections::{BTreeMap, BTreeSet};

use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};

use super::columns::Printer;
use super::pod::pod_row;

/// A printer's rows.
pub(super) trait Row {
    /// The cells of one object, and the row conditions (pods that have finished are marked `Completed`).
    fn row(self, o: &Value, now: Timestamp) -> (Vec<Value>, Option<Value>);
}

impl Row for Printer {
    fn row(self, o: &Value, now: Timestamp) -> (Vec<Value>, Option<Value>) {
        let name = json!(s(o, "/metadata/name"));
        let age = || json!(since(o.pointer("/metadata/creationTimestamp"), now));
        let cells = match self {
            Self::Pod => return pod_row(o, now),
            Self::PersistentVolume => super::storage::persistent_volume_row(o, now),
            Self::PersistentVolumeClaim => super::storage::persistent_volume_claim_row(o, now),
            Self::StorageClass => super::storage::storage_class_row(o, now),
            Self::StatefulSet => super::apps::stateful_set_row(o, now),
            Self::ControllerRevision => super::apps::controller_revision_row(o, now),
            Self::Deployment => {
                let (names, images) = containers(o.pointer("/spec/template/spec/containers"));
                let selector = selector_string(o.pointer("/spec/selector"))
                    .unwrap_or_else(|()| "<invalid>".into());
                vec![
                    name,
                    json!(format!(
                        "{}/{}",
                        int(o, "/status/readyReplicas"),
                        replicas(o)
                    )),
                    json!(int(o, "/status/updatedReplicas")),
                    json!(int(o, "/status/availableReplicas")),
                    age(),
                    json!(names),
                    json!(images),
                    json!(selector),
                ]
            }
            Self::DaemonSet => {
                let (names, images) = containers(o.pointer("/spec/template/spec/containers"));
                let node_selector = o
                    .pointer("/spec/template/spec/nodeSelector")
                    .and_then(Value::as_object)
                    .filter(|m| !m.is_empty())
                    .map_or("<none>".to_string(), |m| {
                        m.iter()
                            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                            .collect::<Vec<_>>()
                            .join(",")
                    });
                vec![
                    name,
                    json!(int(o, "/status/desiredNumberScheduled")),
                    json!(int(o, "/status/currentNumberScheduled")),
                    json!(int(o, "/status/numberReady")),
                    json!(int(o, "/status/updatedNumberScheduled")),
                    json!(int(o, "/status/numberAvailable")),
                    json!(node_selector),
                    age(),
                    json!(names),
                    json!(images),
                    json!(format_label_selector(o.pointer("/spec/selector"))),
                ]
            }
            Self::Job => {
                let (names, images) = containers(o.pointer("/spec/template/spec/containers"));
                vec![
                    name,
                    json!(job_status(o)),
                    json!(job_completions(o)),
                    json!(job_duration(o, now)),
                    age(),
                    json!(names),
                    json!(images),
                    json!(format_label_selector(o.pointer("/spec/selector"))),
                ]
            }
            Self::CronJob => {
                let job = o.pointer("/spec/jobTemplate/spec");
                let (names, images) =
                    containers(job.and_then(|j| j.pointer("/template/spec/containers")));
                let last = match o.pointer("/status/lastScheduleTime") {
                    Some(t) => since(Some(t), now),
                    None => "<none>".into(),
                };
                vec![
                    name,
                    json!(s(o, "/spec/schedule")),
                    json!(non_empty(s(o, "/spec/timeZone"), "<none>")),
                    json!(match o.pointer("/spec/suspend").and_then(Value::as_bool) {
                        Some(true) => "True",
                        Some(false) => "False",
                        None => "<unset>",
                    }),
                    json!(items(o, "/status/active").len()),
                    json!(last),
                    age(),
                    json!(names),
                    json!(images),
                    json!(format_label_selector(job.and_then(|j| j.get("selector")))),
                ]
            }
            Self::ReplicaSet => {
                let (names, images) = containers(o.pointer("/spec/template/spec/containers"));
                vec![
                    name,
                    json!(replicas(o)),
                    json!(int(o, "/status/replicas")),
                    json!(int(o, "/status/readyReplicas")),
                    age(),
                    json!(names),
                    json!(images),
                    json!(format_label_selector(o.pointer("/spec/selector"))),
                ]
            }
            Self::ReplicationController => {
                let (names, images) = containers(o.pointer("/spec/template/spec/containers"));
                vec![
                    name,
                    json!(replicas(o)),
                    json!(int(o, "/status/replicas")),
                    json!(int(o, "/status/readyReplicas")),
                    age(),
                    json!(names),
                    json!(images),
                    json!(format_labels(o.pointer("/spec/selector"))),
                ]
            }
            Self::ApiService => vec![
                name,
                json!(api_service_backend(o)),
                json!(api_service_available(o)),
                age(),
            ],
            Self::Service => {
                let ports = service_ports(o);
                vec![
                    name,
                    json!(service_type(o)),
                    json!(cluster_ip(o)),
                    json!(service_external_ip(o)),
                    json!(if ports.is_empty() {
                        "<none>".into()
                    } else {
                        ports
                    }),
                    age(),
                    json!(format_labels(o.pointer("/spec/selector"))),
                ]
            }
            Self::Node => {
                let info = |f: &str| match s(o, &format!("/status/nodeInfo/{f}")) {
                    "" => "<unknown>",
                    v => v,
                };
                vec![
                    name,
                    json!(node_status(o)),
                    json!(node_roles(o)),
                    age(),
                    json!(s(o, "/status/nodeInfo/kubeletVersion")),
                    json!(node_address(o, "InternalIP")),
                    json!(node_address(o, "ExternalIP")),
                    json!(info("osImage")),
                    json!(info("kernelVersion")),
                    json!(info("containerRuntimeVersion")),
                ]
            }
            Self::Namespace => vec![
                name,
                json!(non_empty(s(o, "/status/phase"), "Active")),
                age(),
            ],
            Self::Endpoints => vec![name, json!(format_endpoints(o)), age()],
            Self::EndpointSlice => vec![
                name,
                json!(s(o, "/addressType")),
                json!(format_slice_ports(o)),
                json!(format_slice_endpoints(o)),
                age(),
            ],
            Self::ConfigMap => vec![name, json!(len(o, "/data") + len(o, "/binaryData")), age()],
            Self::ServiceAccount => vec![name, json!(items(o, "/secrets").len()), age()],
            Self::Secret => vec![
                name,
                json!(non_empty(s(o, "/type"), "Opaque")),
                json!(len(o, "/data")),
                age(),
            ],
            Self::Event => event_cells(o, now),
            Self::Lease => vec![name, json!(s(o, "/spec/holderIdentity")), age()],
            // kube's printIPAddress: `<resource>[.<group>][/<namespace>]/<name>`, `<none>` without a parent.
            Self::IpAddress => {
                let parent = match s(o, "/spec/parentRef/name") {
                    "" => "<none>".to_string(),
                    parent => {
                        let mut gr = s(o, "/spec/parentRef/resource").to_lowercase();
                        let group = s(o, "/spec/parentRef/group");
                        if !group.is_empty() {
                            gr = format!("{gr}.{}", group.to_lowercase());
                        }
                        match s(o, "/spec/parentRef/namespace") {
                            "" => format!("{gr}/{parent}"),
                            ns => format!("{gr}/{ns}/{parent}"),
                        }
                    }
                };
                vec![name, json!(parent), age()]
            }
            Self::PodDisruptionBudget => {
                // kube's printPodDisruptionBudget: the set one of minAvailable/maxUnavailable, N/A for the other.
                let bound = |p: &str| match o.pointer(p) {
                    Some(Value::String(v)) => v.clone(),
                    Some(Value::Number(n)) => n.to_string(),
                    _ => "N/A".to_string(),
                };
                vec![
                    name,
                    json!(bound("/spec/minAvailable")),
                    json!(bound("/spec/maxUnavailable")),
                    json!(
                        o.pointer("/status/disruptionsAllowed")
                            .and_then(Value::as_i64)
                            .unwrap_or(0)
                    ),
                    age(),
                ]
            }
            Self::RoleBinding | Self::ClusterRoleBinding => {
                let (users, groups, service_accounts) = subjects(o);
                vec![
                    name,
                    json!(format!(
                        "{}/{}",
                        s(o, "/roleRef/kind"),
                        s(o, "/roleRef/name")
                    )),
                    age(),
                    json!(users),
                    json!(groups),
                    json!(service_accounts),
                ]
            }
            Self::CertificateSigningRequest => {
                // kube's printCertificateSigningRequest and extractCSRStatus.
                let has = |kind: &str| {
                    o.pointer("/status/conditions")
                        .and_then(Value::as_array)
                        .is_some_and(|cs| cs.iter().any(|c| c["type"] == kind))
                };
                let mut condition = if has("Denied") {
                    "Denied".to_string()
                } else if has("Approved") {
                    "Approved".to_string()
                } else {
                    "Pending".to_string()
                };
                if has("Failed") {
                    condition.push_str(",Failed");
                }
                if !s(o, "/status/certificate").is_empty() {
                    condition.push_str(",Issued");
                }
                let or_none = |v: &str| {
                    if v.is_empty() {
                        "<none>".to_string()
                    } else {
                        v.to_string()
                    }
                };
                let requested = o
                    .pointer("/spec/expirationSeconds")
                    .and_then(Value::as_i64)
                    .map_or_else(
                        || "<none>".to_string(),
                        |secs| human_duration(SignedDuration::from_secs(secs)),
                    );
                vec![
                    name,
                    age(),
                    json!(or_none(s(o, "/spec/signerName"))),
                    json!(s(o, "/spec/username")),
                    json!(requested),
                    json!(condition),
                ]
            }
            Self::Default => {
                let created = timestamp(o.pointer("/metadata/creationTimestamp")).map_or_else(
                    || "0001-01-01T00:00:00Z".to_string(),
                    |t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
                );
                vec![name, json!(created)]
            }
        };
        (cells, None)
    }
}

pub(super) fn s<'a>(o: &'a Value, pointer: &str) -> &'a str {
    o.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
}

pub(super) fn int(o: &Value, pointer: &str) -> i64 {
    o.pointer(pointer).and_then(Value::as_i64).unwrap_or(0)
}

fn len(o: &Value, pointer: &str) -> i64 {
    o.pointer(pointer)
        .and_then(Value::as_object)
        .map_or(0, |m| m.len() as i64)
}

pub(super) fn items<'a>(o: &'a Value, pointer: &str) -> &'a [Value] {
    o.pointer(pointer)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

pub(super) fn non_empty<'a>(v: &'a str, default: &'a str) -> &'a str {
    if v.is_empty() { default } else { v }
}

/// `spec.replicas`, which defaulting sets to 1 when it is absent.
/// printJob's STATUS: the finished condition, else Terminating/Suspended/Running.
/// kube's `rbac.SubjectsStrings` as the binding printers join it: users, groups and `namespace/name`
/// ServiceAccounts, each `, `-separated.
fn subjects(o: &Value) -> (String, String, String) {
    let (mut users, mut groups, mut sas) = (Vec::new(), Vec::new(), Vec::new());
    for subject in items(o, "/subjects") {
        let name = s(subject, "/name");
        match s(subject, "/kind") {
            "User" => users.push(name.to_string()),
            "Group" => groups.push(name.to_string()),
            "ServiceAccount" => sas.push(format!("{}/{name}", s(subject, "/namespace"))),
            _ => {}
        }
    }
    (users.join(", "), groups.join(", "), sas.join(", "))
}

fn job_status(o: &Value) -> &'static str {
    let has = |ty: &str| {
        o.pointer("/status/conditions")
            .and_then(Value::as_array)
            .is_some_and(|cs| cs.iter().any(|c| c["type"] == ty && c["status"] == "True"))
    };
    if has("Complete") {
        "Complete"
    } else if has("Failed") {
        "Failed"
    } else if o.pointer("/metadata/deletionTimestamp").is_some() {
        "Terminating"
    } else if has("SuccessCriteriaMet") {
        "SuccessCriteriaMet"
    } else if has("FailureTarget") {
        "FailureTarget"
    } else if o.pointer("/spec/suspend") == Some(&Value::Bool(true)) {
        "Suspended"
    } else {
        "Running"
    }
}

/// `succeeded/completions`, or `succeeded/1 of parallelism` for a work-queue Job.
fn job_completions(o: &Value) -> String {
    let succeeded = int(o, "/status/succeeded");
    match o.pointer("/spec/completions").and_then(Value::as_i64) {
        Some(c) => format!("{succeeded}/{c}"),
        None => format!(
            "{succeeded}/1 of {}",
            o.pointer("/spec/parallelism")
                .and_then(Value::as_i64)
                .unwrap_or(1)
        ),
    }
}

/// completionTime − startTime, or the time running so far.
fn job_duration(o: &Value, now: Timestamp) -> String {
    let ts = |p: &str| {
        o.pointer(p)
            .and_then(Value::as_str)
            .and_then(|t| t.parse::<Timestamp>().ok())
    };
    match (ts("/status/startTime"), ts("/status/completionTime")) {
        (Some(start), Some(end)) => human_duration(end.duration_since(start)),
        (Some(start), None) => human_duration(now.duration_since(start)),
        _ => String::new(),
    }
}

pub(super) fn replicas(o: &Value) -> i64 {
    o.pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(1)
}

pub(super) fn timestamp(v: Option<&Value>) -> Option<Timestamp> {
    v?.as_str()?.parse().ok()
}

/// `translateTimestampSince`: the age of a timestamp, `<unknown>` when it is not set.
pub(super) fn since(v: Option<&Value>, now: Timestamp) -> String {
    match timestamp(v) {
        Some(t) => human_duration(now.duration_since(t)),
        None => "<unknown>".into(),
    }
}

/// apimachinery's `duration.HumanDuration`: ~2-3 significant figures (`5s`, `2m3s`, `15m`, `3h`, `2d3h`, `5d`).
pub fn human_duration(d: SignedDuration) -> String {
    let seconds = d.as_secs();
    if seconds < -1 {
        return "<invalid>".into();
    } else if seconds < 0 {
        return "0s".into();
    } else if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        let s = seconds % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    } else if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = seconds / 3600;
    if hours < 8 {
        let m = minutes % 60;
        if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        }
    } else if hours < 48 {
        format!("{hours}h")
    } else if hours < 24 * 8 {
        let h = hours % 24;
        if h == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{}d{h}h", hours / 24)
        }
    } else if hours < 24 * 365 * 2 {
        format!("{}d", hours / 24)
    } else if hours < 24 * 365 * 8 {
        let dy = (hours / 24) % 365;
        if dy == 0 {
            format!("{}y", hours / 24 / 365)
        } else {
            format!("{}y{dy}d", hours / 24 / 365)
        }
    } else {
        format!("{}y", hours / 24 / 365)
    }
}

pub(super) fn containers(list: Option<&Value>) -> (String, String) {
    let list = list
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    let field = |f: &str| {
        list.iter()
            .map(|c| c.get(f).and_then(Value::as_str).unwrap_or_default())
            .collect::<Vec<_>>()
            .join(",")
    };
    (field("name"), field("image"))
}

/// `labels.FormatLabels`: `k=v` sorted by key, `<none>` when empty.
/// `namespace/name` of the APIService's backing Service, or `Local` for one served by the API server.
fn api_service_backend(o: &Value) -> String {
    match o.pointer("/spec/service") {
        Some(svc) if svc.is_object() => format!(
            "{}/{}",
            svc["namespace"].as_str().unwrap_or_default(),
            svc["name"].as_str().unwrap_or_default()
        ),
        _ => "Local".into(),
    }
}

/// The status of the APIService's Available condition, with its reason when not True; `Unknown` without one.
fn api_service_available(o: &Value) -> String {
    let Some(cond) = o
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Available"))
    else {
        return "Unknown".into();
    };
    let status = cond["status"].as_str().unwrap_or_default();
    match cond["reason"].as_str().unwrap_or_default() {
        reason if status != "True" && !reason.is_empty() => format!("{status} ({reason})"),
        _ => status.to_string(),
    }
}

fn format_labels(map: Option<&Value>) -> String {
    let pairs: BTreeMap<&str, &str> = map
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.as_str(), v.as_str().unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default();
    if pairs.is_empty() {
        return "<none>".into();
    }
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// `metav1.LabelSelectorAsSelector(sel).String()`: requirements sorted by key, values sorted; empty for a
/// missing or empty selector; an error for an operator it does not know.
fn selector_string(sel: Option<&Value>) -> Result<String, ()> {
    let Some(sel) = sel.filter(|v| !v.is_null()) else {
        return Ok(String::new());
    };
    let mut reqs: Vec<(String, String)> = Vec::new();
    if let Some(labels) = sel.get("matchLabels").and_then(Value::as_object) {
        for (k, v) in labels {
            reqs.push((k.clone(), format!("{k}={}", v.as_str().unwrap_or_default())));
        }
    }
    for e in items(sel, "/matchExpressions") {
        let key = e.get("key").and_then(Value::as_str).unwrap_or_default();
        let mut values: Vec<&str> = items(e, "/values")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        values.sort_unstable();
        let text = match e
            .get("operator")
            .and_then(Value::as_str)
            .unwrap_or_default()
        {
            "In" if !values.is_empty() => format!("{key} in ({})", values.join(",")),
            "NotIn" if !values.is_empty() => format!("{key} notin ({})", values.join(",")),
            "Exists" if values.is_empty() => key.to_string(),
            "DoesNotExist" if values.is_empty() => format!("!{key}"),
            _ => return Err(()),
        };
        reqs.push((key.to_string(), text));
    }
    reqs.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(reqs
        .into_iter()
        .map(|(_, t)| t)
        .collect::<Vec<_>>()
        .join(","))
}

/// `metav1.FormatLabelSelector`: `<none>` when empty, `<error>` when invalid.
fn format_label_selector(sel: Option<&Value>) -> String {
    match selector_string(sel) {
        Ok(s) if s.is_empty() => "<none>".into(),
        Ok(s) => s,
        Err(()) => "<error>".into(),
    }
}

// --- services ---

fn service_type(o: &Value) -> &str {
    non_empty(s(o, "/spec/type"), "ClusterIP")
}

fn cluster_ip(o: &Value) -> &str {
    let first = items(o, "/spec/clusterIPs")
        .first()
        .and_then(Value::as_str)
        .unwrap_or_default();
    non_empty(non_empty(first, s(o, "/spec/clusterIP")), "<none>")
}

fn service_external_ip(o: &Value) -> String {
    let external: Vec<&str> = items(o, "/spec/externalIPs")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    match service_type(o) {
        "ClusterIP" | "NodePort" if external.is_empty() => "<none>".into(),
        "ClusterIP" | "NodePort" => external.join(","),
        "LoadBalancer" => {
            // The server always prints wide, so the ingress list is not clipped.
            let ingress: BTreeSet<&str> = items(o, "/status/loadBalancer/ingress")
                .iter()
                .filter_map(|i| {
                    let ip = i.get("ip").and_then(Value::as_str).unwrap_or_default();
                    let host = i
                        .get("hostname")
                        .and_then(Value::as_str)
                        .unwrap_or_default();
                    Some(non_empty(ip, host)).filter(|v| !v.is_empty())
                })
                .collect();
            let all: Vec<&str> = ingress.into_iter().chain(external).collect();
            if all.is_empty() {
                "<pending>".into()
            } else {
                all.join(",")
            }
        }
        "ExternalName" => s(o, "/spec/externalName").into(),
        _ => "<unknown>".into(),
    }
}

/// `makePortString`: `80/TCP`, `80:30080/TCP`, comma separated.
fn service_ports(o: &Value) -> String {
    items(o, "/spec/ports")
        .iter()
        .map(|p| {
            let port = int(p, "/port");
            let protocol = non_empty(
                p.get("protocol")
                    .and_then(Value::as_str)
                    .unwrap_or_default(),
                "TCP",
            );
            match int(p, "/nodePort") {
                n if n > 0 => format!("{port}:{n}/{protocol}"),
                _ => format!("{port}/{protocol}"),
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

// --- nodes ---

fn node_status(o: &Value) -> String {
    let ready = items(o, "/status/conditions")
        .iter()
        .rfind(|c| c.get("type").and_then(Value::as_str) == Some("Ready"));
    let mut status = match ready {
        Some(c) if c.get("status").and_then(Value::as_str) == Some("True") => "Ready".to_string(),
        Some(_) => "NotReady".to_string(),
        None => "Unknown".to_string(),
    };
    if o.pointer("/spec/unschedulable").and_then(Value::as_bool) == Some(true) {
        status.push_str(",SchedulingDisabled");
    }
    status
}

/// Roles from `node-role.kubernetes.io/<role>` labels and the `kubernetes.io/role` label, sorted.
fn node_roles(o: &Value) -> String {
    let mut roles = BTreeSet::new();
    for (k, v) in o
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        if let Some(role) = k.strip_prefix("node-role.kubernetes.io/") {
            if !role.is_empty() {
                roles.insert(role.to_string());
            }
        } else if k == "kubernetes.io/role" && v.as_str().is_some_and(|v| !v.is_empty()) {
            roles.insert(v.as_str().unwrap_or_default().to_string());
        }
    }
    if roles.is_empty() {
        "<none>".into()
    } else {
        roles.into_iter().collect::<Vec<_>>().join(",")
    }
}

fn node_address<'a>(o: &'a Value, ty: &str) -> &'a str {
    items(o, "/status/addresses")
        .iter()
        .find(|a| a.get("type").and_then(Value::as_str) == Some(ty))
        .and_then(|a| a.get("address").and_then(Value::as_str))
        .unwrap_or("<none>")
}

// --- endpoints ---

/// `formatEndpoints`: the first three `ip:port`s, then ` + N more...`; `<none>` without subsets.
/// kube's `formatDiscoveryPorts`: the port numbers, three at most, then `+ N more...`; `<unset>` for none.
fn format_slice_ports(o: &Value) -> String {
    let ports: Vec<String> = items(o, "/ports")
        .iter()
        .map(|p| {
            p.get("port")
                .and_then(Value::as_i64)
                .map_or_else(|| "<unset>".to_string(), |n| n.to_string())
        })
        .collect();
    at_most_three(ports)
}

/// kube's `formatDiscoveryEndpoints`: the addresses, three at most, then `+ N more...`; `<unset>` for none.
fn format_slice_endpoints(o: &Value) -> String {
    let addresses: Vec<String> = items(o, "/endpoints")
        .iter()
        .flat_map(|e| items(e, "/addresses"))
        .filter_map(|a| a.as_str().map(str::to_string))
        .collect();
    at_most_three(addresses)
}

fn at_most_three(list: Vec<String>) -> String {
    const MAX: usize = 3;
    match list.len() {
        0 => "<unset>".into(),
        n if n > MAX => format!("{} + {} more...", list[..MAX].join(","), n - MAX),
        _ => list.join(","),
    }
}

fn format_endpoints(o: &Value) -> String {
    const MAX: usize = 3;
    let subsets = items(o, "/subsets");
    if subsets.is_empty() {
        return "<none>".into();
    }
    let mut list: Vec<String> = Vec::new();
    let mut more = false;
    let mut count = 0;
    for ss in subsets {
        let addresses = items(ss, "/addresses");
        let ip = |a: &Value| {
            a.get("ip")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let ports = items(ss, "/ports");
        if ports.is_empty() {
            count += addresses.len();
            for a in addresses {
                if list.len() == MAX {
                    more = true;
                    break;
                }
                list.push(ip(a));
            }
            continue;
        }
        for p in ports {
            count += addresses.len();
            for a in addresses {
                if list.len() == MAX {
                    more = true;
                    break;
                }
                let host = ip(a);
                let host = if host.contains(':') {
                    format!("[{host}]")
                } else {
                    host
                };
                list.push(format!("{host}:{}", int(p, "/port")));
            }
        }
    }
    let joined = list.join(",");
    if more {
        format!("{joined} + {} more...", count - MAX)
    } else {
        joined
    }
}

// --- events ---

fn event_cells(o: &Value, now: Timestamp) -> Vec<Value> {
    let set = |p: &str| o.pointer(p).is_some_and(|v| !v.is_null() && *v != "");
    let first = if set("/firstTimestamp") {
        since(o.pointer("/firstTimestamp"), now)
    } else {
        since(o.pointer("/eventTime"), now)
    };
    let mut last = if set("/lastTimestamp") {
        since(o.pointer("/lastTimestamp"), now)
    } else {
        first.clone()
    };
    let mut count = int(o, "/count");
    if o.get("series").is_some_and(|v| !v.is_null()) {
        last = since(o.pointer("/series/lastObservedTime"), now);
        count = int(o, "/series/count");
    } else if count == 0 {
        count = 1;
    }
    let kind = s(o, "/involvedObject/kind").to_lowercase();
    let target = match s(o, "/involvedObject/name") {
        "" => kind,
        name => format!("{kind}/{name}"),
    };
    let component = non_empty(s(o, "/source/component"), s(o, "/reportingComponent"));
    let instance = non_empty(s(o, "/source/host"), s(o, "/reportingInstance"));
    let source = if instance.is_empty() {
        component.to_string()
    } else {
        format!("{component}, {instance}")
    };
    vec![
        json!(last),
        json!(s(o, "/type")),
        json!(s(o, "/reason")),
        json!(target),
        json!(s(o, "/involvedObject/fieldPath")),
        json!(source),
        json!(s(o, "/message").trim()),
        json!(first),
        json!(count),
        json!(s(o, "/metadata/name")),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        "2026-01-01T12:00:00Z".parse().expect("timestamp")
    }

    fn cells(printer: Printer, o: Value) -> Vec<Value> {
        printer.row(&o, now()).0
    }

    #[test]
    fn ages_are_go_human_durations() {
        let cases = [
            (-5, "<invalid>"),
            (-1, "0s"),
            (0, "0s"),
            (5, "5s"),
            (119, "119s"),
            (120, "2m"),
            (123, "2m3s"),
            (9 * 60 + 59, "9m59s"),
            (10 * 60 + 30, "10m"),
            (179 * 60 + 59, "179m"),
            (3 * 3600, "3h"),
            (3 * 3600 + 25 * 60, "3h25m"),
            (8 * 3600 + 59 * 60, "8h"),
            (47 * 3600, "47h"),
            (2 * 86400 + 3 * 3600, "2d3h"),
            (5 * 86400, "5d"),
            (8 * 86400 + 5 * 3600, "8d"),
            (729 * 86400, "729d"),
            (2 * 365 * 86400 + 10 * 86400, "2y10d"),
            (3 * 365 * 86400, "3y"),
            (9 * 365 * 86400 + 100 * 86400, "9y"),
        ];
        for (secs, want) in cases {
            assert_eq!(
                human_duration(SignedDuration::from_secs(secs)),
                want,
                "{secs}s"
            );
        }
        assert_eq!(human_duration(SignedDuration::from_millis(-1500)), "0s");
        assert_eq!(since(None, now()), "<unknown>");
        assert_eq!(since(Some(&json!("not a time")), now()), "<unknown>");
        assert_eq!(since(Some(&json!("2026-01-01T11:59:30Z")), now()), "30s");
    }

    #[test]
    fn service_ports_ips_and_selector() {
        let svc = json!({
            "metadata": {"name": "web", "creationTimestamp": "2026-01-01T11:00:00Z"},
            "spec": {"type": "NodePort", "clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"],
                     "ports": [{"port": 80, "nodePort": 30080, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}],
                     "selector": {"tier": "web", "app": "x"}},
        });
        assert_eq!(
            cells(Printer::Service, svc),
            [
                json!("web"),
                json!("NodePort"),
                json!("10.96.0.10"),
                json!("<none>"),
                json!("80:30080/TCP,53/UDP"),
                json!("60m"),
                json!("app=x,tier=web")
            ]
        );
        let bare = json!({"metadata": {"name": "b"}, "spec": {"clusterIP": "10.0.0.1"}});
        assert_eq!(
            cells(Printer::Service, bare),
            [
                json!("b"),
                json!("ClusterIP"),
                json!("10.0.0.1"),
                json!("<none>"),
                json!("<none>"),
                json!("<unknown>"),
                json!("<none>")
            ]
        );
        let headless = json!({"spec": {"clusterIP": "None", "ports": [{"port": 80}], "externalIPs": ["1.2.3.4", "5.6.7.8"]}});
        let c = cells(Printer::Service, headless);
        assert_eq!(
            (c[2].clone(), c[3].clone(), c[4].clone()),
            (json!("None"), json!("1.2.3.4,5.6.7.8"), json!("80/TCP"))
        );
    }

    #[test]
    fn load_balancer_and_external_name_external_ips() {
        let lb = |ingress: Value, external: Value| {
            service_external_ip(
                &json!({"spec": {"type": "LoadBalancer", "externalIPs": external},
                                        "status": {"loadBalancer": {"ingress": ingress}}}),
            )
        };
        assert_eq!(lb(json!([]), json!([])), "<pending>");
        assert_eq!(
            lb(
                json!([{"ip": "9.9.9.9"}, {"hostname": "lb.example.com"}, {"ip": "1.1.1.1"}]),
                json!([])
            ),
            "1.1.1.1,9.9.9.9,lb.example.com"
        );
        assert_eq!(
            lb(json!([{"ip": "9.9.9.9"}]), json!(["2.2.2.2"])),
            "9.9.9.9,2.2.2.2"
        );
        let name = json!({"spec": {"type": "ExternalName", "externalName": "db.example.com"}});
        assert_eq!(service_external_ip(&name), "db.example.com");
        assert_eq!(
            service_external_ip(&json!({"spec": {"type": "Weird"}})),
            "<unknown>"
        );
    }

    fn node(conditions: Value, labels: Value, unschedulable: bool) -> Value {
        json!({
            "metadata": {"name": "n1", "labels": labels, "creationTimestamp": "2025-12-29T09:00:00Z"},
            "spec": {"unschedulable": unschedulable},
            "status": {"conditions": conditions,
                       "addresses": [{"type": "Hostname", "address": "n1"}, {"type": "InternalIP", "address": "127.0.0.1"}],
                       "nodeInfo": {"kubeletVersion": "v1.37.0-herd", "osImage": "Debian", "kernelVersion": "",
                                    "containerRuntimeVersion": "wasmtime://48.0.8"}},
        })
    }

    #[test]
    fn node_status_roles_and_info() {
        let ready = json!([{"type": "MemoryPressure", "status": "False"}, {"type": "Ready", "status": "True"}]);
        assert_eq!(
            cells(Printer::Node, node(ready.clone(), json!({}), false)),
            [
                json!("n1"),
                json!("Ready"),
                json!("<none>"),
                json!("3d3h"),
                json!("v1.37.0-herd"),
                json!("127.0.0.1"),
                json!("<none>"),
                json!("Debian"),
                json!("<unknown>"),
                json!("wasmtime://48.0.8")
            ]
        );
        let status = |conditions: Value, unschedulable: bool| {
            node_status(&node(conditions, json!({}), unschedulable))
        };
        assert_eq!(status(ready, true), "Ready,SchedulingDisabled");
        assert_eq!(
            status(json!([{"type": "Ready", "status": "False"}]), false),
            "NotReady"
        );
        assert_eq!(
            status(json!([{"type": "Ready", "status": "Unknown"}]), false),
            "NotReady"
        );
        assert_eq!(status(json!([]), false), "Unknown");
        assert_eq!(status(json!([]), true), "Unknown,SchedulingDisabled");
        let roles = |labels: Value| node_roles(&node(json!([]), labels, false));
        assert_eq!(
            roles(
                json!({"node-role.kubernetes.io/worker": "", "node-role.kubernetes.io/control-plane": "",
                         "node-role.kubernetes.io/": "x", "kubernetes.io/role": "edge", "app": "a"})
            ),
            "control-plane,edge,worker"
        );
        assert_eq!(roles(json!({"kubernetes.io/role": ""})), "<none>");
    }

    #[test]
    fn endpoints_list_three_then_count_the_rest() {
        let ep = |subsets: Value| format_endpoints(&json!({"subsets": subsets}));
        assert_eq!(ep(json!([])), "<none>");
        assert_eq!(format_endpoints(&json!({})), "<none>");
        let addrs = json!([{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}]);
        assert_eq!(
            ep(json!([{"addresses": addrs, "ports": [{"port": 80}]}])),
            "10.0.0.1:80,10.0.0.2:80"
        );
        assert_eq!(
            ep(json!([{"addresses": addrs, "ports": [{"port": 80}, {"port": 443}]}])),
            "10.0.0.1:80,10.0.0.2:80,10.0.0.1:443 + 1 more..."
        );
        assert_eq!(ep(json!([{"addresses": addrs}])), "10.0.0.1,10.0.0.2");
        assert_eq!(
            ep(json!([{"addresses": [{"ip": "fd00::1"}], "ports": [{"port": 8080}]}])),
            "[fd00::1]:8080"
        );
        assert_eq!(
            ep(json!([{"notReadyAddresses": addrs, "ports": [{"port": 80}]}])),
            ""
        );
    }

    #[test]
    fn replication_controller_and_api_service_cells() {
        let rc = json!({
            "metadata": {"name": "rc", "creationTimestamp": "2026-01-01T11:59:00Z"},
            "spec": {"replicas": 3, "selector": {"app": "rc", "tier": "web"},
                     "template": {"spec": {"containers": [{"name": "a", "image": "r/a:1"}]}}},
            "status": {"replicas": 2, "readyReplicas": 1},
        });
        assert_eq!(
            cells(Printer::ReplicationController, rc),
            [
                json!("rc"),
                json!(3),
                json!(2),
                json!(1),
                json!("60s"),
                json!("a"),
                json!("r/a:1"),
                json!("app=rc,tier=web")
            ]
        );
        let api = |spec: Value, status: Value| {
            cells(
                Printer::ApiService,
                json!({"metadata": {"name": "v1.example.com", "creationTimestamp": "2026-01-01T11:59:00Z"},
                    "spec": spec, "status": status}),
            )
        };
        assert_eq!(
            api(json!({"group": "example.com"}), json!({})),
            [
                json!("v1.example.com"),
                json!("Local"),
                json!("Unknown"),
                json!("60s")
            ]
        );
        let remote = json!({"service": {"namespace": "ns", "name": "api", "port": 443}});
        let unavailable = json!({"conditions": [{"type": "Available", "status": "False", "reason": "ServiceNotFound"}]});
        assert_eq!(
            api(remote.clone(), unavailable)[1..3],
            [json!("ns/api"), json!("False (ServiceNotFound)")]
        );
        let available =
            json!({"conditions": [{"type": "Available", "status": "True", "reason": "Passed"}]});
        assert_eq!(api(remote, available)[2], "True");
    }

    #[test]
    fn deployment_and_replica_set_cells() {
        let template = json!({"spec": {"containers": [{"name": "a", "image": "r/a:1"}, {"name": "b", "image": "r/b:2"}]}});
        let deploy = json!({
            "metadata": {"name": "d", "creationTimestamp": "2026-01-01T11:59:00Z"},
            "spec": {"replicas": 3, "template": template.clone(),
                     "selector": {"matchLabels": {"app": "d"},
                                  "matchExpressions": [{"key": "env", "operator": "In", "values": ["prod", "dev"]},
                                                       {"key": "canary", "operator": "DoesNotExist"}]}},
            "status": {"readyReplicas": 1, "updatedReplicas": 2, "availableReplicas": 1},
        });
        assert_eq!(
            cells(Printer::Deployment, deploy),
            [
                json!("d"),
                json!("1/3"),
                json!(2),
                json!(1),
                json!("60s"),
                json!("a,b"),
                json!("r/a:1,r/b:2"),
                json!("app=d,!canary,env in (dev,prod)")
            ]
        );
        let empty = json!({"metadata": {"name": "d"}, "spec": {}});
        let c = cells(Printer::Deployment, empty);
        assert_eq!(
            (c[1].clone(), c[2].clone(), c[7].clone()),
            (json!("0/1"), json!(0), json!(""))
        );
        let bad =
            json!({"spec": {"selector": {"matchExpressions": [{"key": "k", "operator": "Near"}]}}});
        assert_eq!(cells(Printer::Deployment, bad)[7], "<invalid>");

        let rs = json!({
            "metadata": {"name": "d-5f6", "creationTimestamp": "2026-01-01T11:59:00Z"},
            "spec": {"replicas": 2, "template": template, "selector": {"matchLabels": {"app": "d", "pod-template-hash": "5f6"}}},
            "status": {"replicas": 2, "readyReplicas": 1},
        });
        assert_eq!(
            cells(Printer::ReplicaSet, rs),
            [
                json!("d-5f6"),
                json!(2),
                json!(2),
                json!(1),
                json!("60s"),
                json!("a,b"),
                json!("r/a:1,r/b:2"),
                json!("app=d,pod-template-hash=5f6")
            ]
        );
        assert_eq!(cells(Printer::ReplicaSet, json!({"spec": {}}))[7], "<none>");
        let bad = json!({"spec": {"selector": {"matchExpressions": [{"key": "k", "operator": "In", "values": []}]}}});
        assert_eq!(cells(Printer::ReplicaSet, bad)[7], "<error>");
    }

    #[test]
    fn small_kinds() {
        let meta = json!({"name": "x", "creationTimestamp": "2026-01-01T09:00:00Z"});
        assert_eq!(
            cells(
                Printer::Namespace,
                json!({"metadata": meta, "status": {"phase": "Terminating"}})
            ),
            [json!("x"), json!("Terminating"), json!("3h")]
        );
        assert_eq!(
            cells(Printer::Namespace, json!({"metadata": meta}))[1],
            "Active"
        );
        assert_eq!(
            cells(
                Printer::ConfigMap,
                json!({"metadata": meta, "data": {"a": "1", "b": "2"}, "binaryData": {"c": "AA=="}})
            ),
            [json!("x"), json!(3), json!("3h")]
        );
        assert_eq!(
            cells(
                Printer::Secret,
                json!({"metadata": meta, "type": "kubernetes.io/tls", "data": {"tls.crt": "", "tls.key": ""}})
            ),
            [
                json!("x"),
                json!("kubernetes.io/tls"),
                json!(2),
                json!("3h")
            ]
        );
        assert_eq!(
            cells(Printer::Secret, json!({"metadata": meta}))[1..3],
            [json!("Opaque"), json!(0)]
        );
        assert_eq!(
            cells(
                Printer::Lease,
                json!({"metadata": meta, "spec": {"holderIdentity": "node-1"}})
            ),
            [json!("x"), json!("node-1"), json!("3h")]
        );
        assert_eq!(cells(Printer::Lease, json!({"metadata": meta}))[1], "");
        let address = json!({"metadata": meta, "spec": {"parentRef":
            {"group": "", "resource": "services", "namespace": "default", "name": "kubernetes"}}});
        assert_eq!(
            cells(Printer::IpAddress, address)[1],
            "services/default/kubernetes"
        );
        assert_eq!(
            cells(Printer::IpAddress, json!({"metadata": meta}))[1],
            "<none>"
        );
        assert_eq!(
            cells(Printer::Default, json!({"metadata": meta})),
            [json!("x"), json!("2026-01-01T09:00:00Z")]
        );
        assert_eq!(
            cells(Printer::Default, json!({}))[1],
            "0001-01-01T00:00:00Z"
        );
    }

    #[test]
    fn bindings_print_the_role_and_their_subjects() {
        let meta = json!({"name": "b", "creationTimestamp": "2026-01-01T11:58:00Z"});
        let binding = json!({"metadata": meta, "roleRef": {"apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole", "name": "view"}, "subjects": [
            {"kind": "User", "name": "jane"}, {"kind": "User", "name": "joe"},
            {"kind": "Group", "name": "devs"},
            {"kind": "ServiceAccount", "name": "x", "namespace": "default"},
            {"kind": "ServiceAccount", "name": "y", "namespace": "ns"},
            {"kind": "Robot", "name": "r2"}]});
        for printer in [Printer::RoleBinding, Printer::ClusterRoleBinding] {
            assert_eq!(
                cells(printer, binding.clone()),
                [
                    "b",
                    "ClusterRole/view",
                    "2m",
                    "jane, joe",
                    "devs",
                    "default/x, ns/y"
                ]
            );
        }
        assert_eq!(
            cells(
                Printer::RoleBinding,
                json!({"metadata": meta, "roleRef": {"kind": "Role", "name": "r"}})
            ),
            ["b", "Role/r", "2m", "", "", ""]
        );
    }

    #[test]
    fn event_cells_follow_print_event() {
        let ev = json!({
            "metadata": {"name": "p.17a"},
            "involvedObject": {"kind": "Pod", "name": "p", "fieldPath": "spec.containers{c}"},
            "reason": "Pulled", "type": "Normal", "message": "  Pulled image \"x\"\n",
            "source": {"component": "kubelet", "host": "n1"},
            "firstTimestamp": "2026-01-01T11:00:00Z", "lastTimestamp": "2026-01-01T11:59:00Z", "count": 4,
        });
        assert_eq!(
            cells(Printer::Event, ev),
            [
                json!("60s"),
                json!("Normal"),
                json!("Pulled"),
                json!("pod/p"),
                json!("spec.containers{c}"),
                json!("kubelet, n1"),
                json!("Pulled image \"x\""),
                json!("60m"),
                json!(4),
                json!("p.17a")
            ]
        );
        let new_style = json!({
            "metadata": {"name": "e"}, "involvedObject": {"kind": "Node"},
            "eventTime": "2026-01-01T11:59:50.000000Z", "reportingComponent": "herd-scheduler",
        });
        let c = cells(Printer::Event, new_style);
        assert_eq!(
            (
                c[0].clone(),
                c[3].clone(),
                c[5].clone(),
                c[7].clone(),
                c[8].clone()
            ),
            (
                json!("10s"),
                json!("node"),
                json!("herd-scheduler"),
                json!("10s"),
                json!(1)
            )
        );
        let series = json!({"firstTimestamp": "2026-01-01T10:00:00Z", "count": 2,
                            "series": {"count": 7, "lastObservedTime": "2026-01-01T11:59:58.000000Z"}});
        let c = cells(Printer::Event, series);
        assert_eq!(
            (c[0].clone(), c[7].clone(), c[8].clone()),
            (json!("2s"), json!("120m"), json!(7))
        );
        assert_eq!(cells(Printer::Event, json!({}))[0], "<unknown>");
    }

    #[test]
    fn cronjobs_print_kubes_cronjob_columns() {
        let cj = json!({"metadata": {"name": "nightly", "creationTimestamp": "2026-01-01T10:00:00Z"},
            "spec": {"schedule": "0 3 * * *", "timeZone": "Europe/Paris", "suspend": false,
                "jobTemplate": {"spec": {"template": {"spec": {"containers": [
                    {"name": "hello", "image": "hello:v1"}]}}}}},
            "status": {"active": [{"name": "nightly-1"}, {"name": "nightly-2"}],
                "lastScheduleTime": "2026-01-01T11:55:00Z"}});
        assert_eq!(
            cells(Printer::CronJob, cj),
            [
                "nightly",
                "0 3 * * *",
                "Europe/Paris",
                "False",
                "2",
                "5m",
                "120m",
                "hello",
                "hello:v1",
                "<none>"
            ]
            .map(|c| if c == "2" { json!(2) } else { json!(c) })
        );
        let bare = json!({"metadata": {"name": "c"}, "spec": {"schedule": "@hourly"}});
        assert_eq!(
            cells(Printer::CronJob, bare)[1..6],
            [
                json!("@hourly"),
                json!("<none>"),
                json!("<unset>"),
                json!(0),
                json!("<none>")
            ]
        );
    }
}
