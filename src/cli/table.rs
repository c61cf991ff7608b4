//! `herd get` tables: kubectl's columns for the resources herd serves, computed from objects as JSON.

use jiff::Timestamp;
use serde_json::Value;

/// A table ready to print: one header per column, one row per object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    pub headers: Vec<&'static str>,
    pub rows: Vec<Vec<String>>,
}

/// How `herd get` lays a table out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableOptions {
    /// `-o wide`: extra columns (pods: IP, NODE).
    pub wide: bool,
    /// `-A`: a NAMESPACE column first.
    pub with_namespace: bool,
}

/// Builds the table for `objects` of the resource with plural name `plural`, ages measured at `now`.
pub fn build(plural: &str, objects: &[Value], options: TableOptions, now: Timestamp) -> Table {
    let mut headers = Vec::new();
    if options.with_namespace {
        headers.push("NAMESPACE");
    }
    headers.extend_from_slice(columns(plural, options.wide));
    let rows = objects
        .iter()
        .map(|obj| {
            let mut row = Vec::new();
            if options.with_namespace {
                row.push(text(obj, &["metadata", "namespace"]).to_string());
            }
            row.extend(cells(plural, obj, options.wide, now));
            row
        })
        .collect();
    Table { headers, rows }
}

/// Renders like kubectl's tabwriter: every column but the last padded to its widest cell plus three
/// spaces (at least six wide), one line per row, no trailing spaces.
pub fn render(table: &Table) -> String {
    let columns = table.headers.len();
    let mut widths = vec![0usize; columns];
    let header_row: Vec<String> = table.headers.iter().map(|h| (*h).to_string()).collect();
    for row in std::iter::once(&header_row).chain(&table.rows) {
        for (i, cell) in row.iter().enumerate().take(columns) {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(&header_row).chain(&table.rows) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate().take(columns) {
            line.push_str(cell);
            if i + 1 < columns {
                let width = (widths[i] + 3).max(6);
                line.extend(std::iter::repeat_n(' ', width - cell.chars().count()));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn columns(plural: &str, wide: bool) -> &'static [&'static str] {
    match (plural, wide) {
        ("pods", false) => &["NAME", "READY", "STATUS", "RESTARTS", "AGE"],
        ("pods", true) => &["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE"],
        ("deployments", _) => &["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"],
        ("replicasets", _) => &["NAME", "DESIRED", "CURRENT", "READY", "AGE"],
        ("services", _) => &[
            "NAME",
            "TYPE",
            "CLUSTER-IP",
            "EXTERNAL-IP",
            "PORT(S)",
            "AGE",
        ],
        ("nodes", _) => &["NAME", "STATUS", "ROLES", "AGE", "VERSION"],
        ("endpoints", _) => &["NAME", "ENDPOINTS", "AGE"],
        ("namespaces", _) => &["NAME", "STATUS", "AGE"],
        _ => &["NAME", "AGE"],
    }
}

fn cells(plural: &str, obj: &Value, wide: bool, now: Timestamp) -> Vec<String> {
    let name = text(obj, &["metadata", "name"]).to_string();
    let age = age(obj.pointer("/metadata/creationTimestamp"), now);
    match plural {
        "pods" => {
            let mut row = vec![name, pod_ready(obj), pod_status(obj), restarts(obj), age];
            if wide {
                row.push(or_none(text(obj, &["status", "podIP"])));
                row.push(or_none(text(obj, &["spec", "nodeName"])));
            }
            row
        }
        "deployments" => vec![
            name,
            format!(
                "{}/{}",
                int(obj, &["status", "readyReplicas"]),
                replicas(obj)
            ),
            int(obj, &["status", "updatedReplicas"]).to_string(),
            int(obj, &["status", "availableReplicas"]).to_string(),
            age,
        ],
        "replicasets" => vec![
            name,
            replicas(obj).to_string(),
            int(obj, &["status", "replicas"]).to_string(),
            int(obj, &["status", "readyReplicas"]).to_string(),
            age,
        ],
        "services" => vec![
            name,
            service_type(obj).to_string(),
            or_none(text(obj, &["spec", "clusterIP"])),
            service_external_ip(obj),
            service_ports(obj),
            age,
        ],
        "nodes" => vec![
            name,
            node_status(obj),
            node_roles(obj),
            age,
            text(obj, &["status", "nodeInfo", "kubeletVersion"]).to_string(),
        ],
        "endpoints" => vec![name, endpoints(obj), age],
        "namespaces" => vec![name, text(obj, &["status", "phase"]).to_string(), age],
        _ => vec![name, age],
    }
}

/// kubectl's `HumanDuration` of the time since `created` (an RFC 3339 timestamp): `45s`, `2m30s`,
/// `3h`, `4d`. `<unknown>` if there is no timestamp, `<invalid>` if it lies in the future.
pub fn age(created: Option<&Value>, now: Timestamp) -> String {
    let Some(created) = created
        .and_then(Value::as_str)
        .and_then(|s| s.parse::<Timestamp>().ok())
    else {
        return "<unknown>".to_string();
    };
    human_duration(now.duration_since(created).as_secs())
}

fn human_duration(seconds: i64) -> String {
    if seconds < -1 {
        return "<invalid>".to_string();
    }
    if seconds < 0 {
        return "0s".to_string();
    }
    if seconds < 120 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        return with_remainder(minutes, "m", seconds % 60, "s");
    }
    if minutes < 180 {
        return format!("{minutes}m");
    }
    let hours = minutes / 60;
    if hours < 8 {
        return with_remainder(hours, "h", minutes % 60, "m");
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    let days = hours / 24;
    if hours < 24 * 8 {
        return with_remainder(days, "d", hours % 24, "h");
    }
    if hours < 24 * 365 * 2 {
        return format!("{days}d");
    }
    let years = days / 365;
    if hours < 24 * 365 * 8 {
        return with_remainder(years, "y", days % 365, "d");
    }
    format!("{years}y")
}

fn with_remainder(major: i64, major_unit: &str, minor: i64, minor_unit: &str) -> String {
    if minor == 0 {
        format!("{major}{major_unit}")
    } else {
        format!("{major}{major_unit}{minor}{minor_unit}")
    }
}

/// `ready/total` containers.
pub fn pod_ready(pod: &Value) -> String {
    let total = array(pod, &["spec", "containers"]).len();
    let ready = array(pod, &["status", "containerStatuses"])
        .iter()
        .filter(|c| c.get("ready").and_then(Value::as_bool) == Some(true))
        .count();
    format!("{ready}/{total}")
}

/// kubectl's pod STATUS: `Terminating` once deletion has begun; otherwise the waiting or terminated
/// reason of the first container that has one (`ImagePullBackOff`, `Completed`, `Error`, …), then the
/// pod's own reason, then its phase.
pub fn pod_status(pod: &Value) -> String {
    if pod
        .pointer("/metadata/deletionTimestamp")
        .is_some_and(|t| !t.is_null())
    {
        return "Terminating".to_string();
    }
    for status in array(pod, &["status", "containerStatuses"]) {
        if let Some(reason) = non_empty(status.pointer("/state/waiting/reason")) {
            return reason.to_string();
        }
        if let Some(terminated) = status.pointer("/state/terminated") {
            if let Some(reason) = non_empty(terminated.get("reason")) {
                return reason.to_string();
            }
            if let Some(signal) = terminated.get("signal").and_then(Value::as_i64)
                && signal != 0
            {
                return format!("Signal:{signal}");
            }
            if let Some(code) = terminated.get("exitCode").and_then(Value::as_i64) {
                return format!("ExitCode:{code}");
            }
        }
    }
    non_empty(pod.pointer("/status/reason"))
        .or_else(|| non_empty(pod.pointer("/status/phase")))
        .unwrap_or("Unknown")
        .to_string()
}

fn restarts(pod: &Value) -> String {
    array(pod, &["status", "containerStatuses"])
        .iter()
        .filter_map(|c| c.get("restartCount").and_then(Value::as_i64))
        .sum::<i64>()
        .to_string()
}

fn replicas(obj: &Value) -> i64 {
    obj.pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(1)
}

fn service_type(svc: &Value) -> &str {
    non_empty(svc.pointer("/spec/type")).unwrap_or("ClusterIP")
}

fn service_external_ip(svc: &Value) -> String {
    let mut ips: Vec<String> = array(svc, &["spec", "externalIPs"])
        .iter()
        .filter_map(|ip| ip.as_str().map(str::to_string))
        .collect();
    if service_type(svc) == "LoadBalancer" {
        ips.extend(
            array(svc, &["status", "loadBalancer", "ingress"])
                .iter()
                .filter_map(|i| non_empty(i.get("ip")).or_else(|| non_empty(i.get("hostname"))))
                .map(str::to_string),
        );
        if ips.is_empty() {
            return "<pending>".to_string();
        }
    }
    if ips.is_empty() {
        "<none>".to_string()
    } else {
        ips.join(",")
    }
}

/// `80/TCP`, `80:30080/TCP` for a node port, comma-separated; `<none>` without ports.
pub fn service_ports(svc: &Value) -> String {
    let ports: Vec<String> = array(svc, &["spec", "ports"])
        .iter()
        .map(|p| {
            let port = p.get("port").and_then(Value::as_i64).unwrap_or(0);
            let protocol = non_empty(p.get("protocol")).unwrap_or("TCP");
            match p.get("nodePort").and_then(Value::as_i64) {
                Some(node_port) if node_port != 0 => format!("{port}:{node_port}/{protocol}"),
                _ => format!("{port}/{protocol}"),
            }
        })
        .collect();
    if ports.is_empty() {
        "<none>".to_string()
    } else {
        ports.join(",")
    }
}

fn node_status(node: &Value) -> String {
    let ready = array(node, &["status", "conditions"])
        .iter()
        .find(|c| c.get("type").and_then(Value::as_str) == Some("Ready"))
        .and_then(|c| c.get("status").and_then(Value::as_str));
    let mut status = match ready {
        Some("True") => "Ready",
        Some(_) => "NotReady",
        None => "Unknown",
    }
    .to_string();
    if node.pointer("/spec/unschedulable").and_then(Value::as_bool) == Some(true) {
        status.push_str(",SchedulingDisabled");
    }
    status
}

fn node_roles(node: &Value) -> String {
    let mut roles: Vec<&str> = node
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(key, _)| key.strip_prefix("node-role.kubernetes.io/"))
        .filter(|role| !role.is_empty())
        .collect();
    roles.sort_unstable();
    if roles.is_empty() {
        "<none>".to_string()
    } else {
        roles.join(",")
    }
}

/// `ip:port` pairs of the ready addresses, at most three, then ` + N more...`; `<none>` if empty.
fn endpoints(ep: &Value) -> String {
    let mut pairs = Vec::new();
    for subset in array(ep, &["subsets"]) {
        let addresses = subset.get("addresses").and_then(Value::as_array);
        let ports = subset.get("ports").and_then(Value::as_array);
        for address in addresses.into_iter().flatten() {
            let ip = text(address, &["ip"]);
            match ports {
                Some(ports) if !ports.is_empty() => {
                    for port in ports {
                        let number = port.get("port").and_then(Value::as_i64).unwrap_or(0);
                        pairs.push(format!("{ip}:{number}"));
                    }
                }
                _ => pairs.push(ip.to_string()),
            }
        }
    }
    if pairs.is_empty() {
        return "<none>".to_string();
    }
    let more = pairs.len().saturating_sub(3);
    pairs.truncate(3);
    let mut out = pairs.join(",");
    if more > 0 {
        out.push_str(&format!(" + {more} more..."));
    }
    out
}

fn text<'a>(obj: &'a Value, path: &[&str]) -> &'a str {
    walk(obj, path).and_then(Value::as_str).unwrap_or("")
}

fn int(obj: &Value, path: &[&str]) -> i64 {
    walk(obj, path).and_then(Value::as_i64).unwrap_or(0)
}

fn array<'a>(obj: &'a Value, path: &[&str]) -> &'a [Value] {
    walk(obj, path)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

fn walk<'a>(obj: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(obj, |v, key| v.get(key))
}

fn non_empty(v: Option<&Value>) -> Option<&str> {
    v.and_then(Value::as_str).filter(|s| !s.is_empty())
}

fn or_none(s: &str) -> String {
    if s.is_empty() {
        "<none>".to_string()
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn now() -> Timestamp {
        "2025-01-10T12:00:00Z".parse().expect("timestamp")
    }

    fn ago(seconds: i64) -> Value {
        let t = now() - jiff::SignedDuration::from_secs(seconds);
        Value::String(t.to_string())
    }

    #[test]
    fn age_follows_kubectl_human_duration() {
        let cases = [
            (0, "0s"),
            (5, "5s"),
            (119, "119s"),
            (120, "2m"),
            (150, "2m30s"),
            (600, "10m"),
            (179 * 60, "179m"),
            (3 * 3600, "3h"),
            (3 * 3600 + 20 * 60, "3h20m"),
            (8 * 3600 + 59, "8h"),
            (47 * 3600, "47h"),
            (4 * 86400, "4d"),
            (4 * 86400 + 5 * 3600, "4d5h"),
            (30 * 86400, "30d"),
            (3 * 365 * 86400 + 10 * 86400, "3y10d"),
            (9 * 365 * 86400, "9y"),
        ];
        for (seconds, want) in cases {
            assert_eq!(age(Some(&ago(seconds)), now()), want, "{seconds}s");
        }
        assert_eq!(age(Some(&ago(-1)), now()), "0s");
        assert_eq!(age(Some(&ago(-60)), now()), "<invalid>");
        assert_eq!(age(None, now()), "<unknown>");
        assert_eq!(age(Some(&json!("yesterday")), now()), "<unknown>");
    }

    #[test]
    fn pod_status_prefers_container_reasons_then_phase() {
        let waiting = json!({"status": {"phase": "Pending", "containerStatuses": [
            {"name": "a", "ready": false, "state": {"running": {}}},
            {"name": "b", "ready": false, "state": {"waiting": {"reason": "ImagePullBackOff"}}},
        ]}});
        assert_eq!(pod_status(&waiting), "ImagePullBackOff");

        let completed = json!({"status": {"phase": "Succeeded", "containerStatuses": [
            {"state": {"terminated": {"reason": "Completed", "exitCode": 0}}},
            {"state": {"terminated": {"reason": "Error", "exitCode": 1}}},
        ]}});
        assert_eq!(pod_status(&completed), "Completed");

        let no_reason = json!({"status": {"phase": "Failed", "containerStatuses": [
            {"state": {"terminated": {"exitCode": 3}}},
        ]}});
        assert_eq!(pod_status(&no_reason), "ExitCode:3");

        let running = json!({"status": {"phase": "Running", "containerStatuses": [
            {"state": {"running": {}}, "ready": true},
        ]}});
        assert_eq!(pod_status(&running), "Running");

        let mut deleting = running.clone();
        deleting["metadata"] = json!({"deletionTimestamp": "2025-01-10T11:59:00Z"});
        assert_eq!(pod_status(&deleting), "Terminating");

        assert_eq!(
            pod_status(&json!({"status": {"phase": "Pending"}})),
            "Pending"
        );
        assert_eq!(pod_status(&json!({})), "Unknown");
    }

    #[test]
    fn pod_ready_counts_ready_containers_of_spec() {
        let pod = json!({
            "spec": {"containers": [{"name": "a"}, {"name": "b"}]},
            "status": {"containerStatuses": [{"ready": true}, {"ready": false}]}
        });
        assert_eq!(pod_ready(&pod), "1/2");
        assert_eq!(pod_ready(&json!({"spec": {"containers": [{}]}})), "0/1");
    }

    #[test]
    fn service_ports_like_kubectl() {
        let svc = json!({"spec": {"ports": [
            {"port": 80, "protocol": "TCP"},
            {"port": 53, "protocol": "UDP"},
            {"port": 443},
            {"port": 8080, "nodePort": 30080, "protocol": "TCP"},
        ]}});
        assert_eq!(service_ports(&svc), "80/TCP,53/UDP,443/TCP,8080:30080/TCP");
        assert_eq!(service_ports(&json!({"spec": {}})), "<none>");
    }

    #[test]
    fn every_resource_has_as_many_cells_as_headers() {
        let obj = json!({"metadata": {"name": "x", "namespace": "ns"}});
        for plural in [
            "pods",
            "deployments",
            "replicasets",
            "services",
            "nodes",
            "endpoints",
            "namespaces",
            "configmaps",
        ] {
            for wide in [false, true] {
                for with_namespace in [false, true] {
                    let options = TableOptions {
                        wide,
                        with_namespace,
                    };
                    let t = build(plural, std::slice::from_ref(&obj), options, now());
                    assert_eq!(t.headers.len(), t.rows[0].len(), "{plural} {options:?}");
                }
            }
        }
    }

    #[test]
    fn pod_table_renders_aligned_columns() {
        let pod = json!({
            "metadata": {"name": "hello", "namespace": "default", "creationTimestamp": ago(5)},
            "spec": {"containers": [{"name": "c"}], "nodeName": "node-1"},
            "status": {"phase": "Running", "podIP": "127.1.0.5",
                       "containerStatuses": [{"ready": true, "restartCount": 2, "state": {"running": {}}}]}
        });
        let options = TableOptions {
            wide: true,
            with_namespace: true,
        };
        let out = render(&build("pods", &[pod], options, now()));
        assert_eq!(
            out,
            "NAMESPACE   NAME    READY   STATUS    RESTARTS   AGE   IP          NODE\n\
             default     hello   1/1     Running   2          5s    127.1.0.5   node-1\n"
        );
    }

    #[test]
    fn other_tables_derive_their_columns() {
        let deploy = json!({"metadata": {"name": "web"}, "spec": {"replicas": 3},
            "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}});
        let t = build(
            "deployments",
            &[deploy],
            TableOptions {
                wide: false,
                with_namespace: false,
            },
            now(),
        );
        assert_eq!(t.rows[0][..4], ["web", "2/3", "3", "2"]);

        let svc = json!({"metadata": {"name": "web"},
            "spec": {"clusterIP": "10.0.0.1", "ports": [{"port": 80}]}});
        let t = build(
            "services",
            &[svc],
            TableOptions {
                wide: false,
                with_namespace: false,
            },
            now(),
        );
        assert_eq!(
            t.rows[0][..5],
            ["web", "ClusterIP", "10.0.0.1", "<none>", "80/TCP"]
        );

        let node = json!({"metadata": {"name": "n1", "labels": {"node-role.kubernetes.io/control-plane": ""}},
            "status": {"conditions": [{"type": "Ready", "status": "True"}], "nodeInfo": {"kubeletVersion": "v0.1.0"}}});
        let t = build(
            "nodes",
            &[node],
            TableOptions {
                wide: false,
                with_namespace: false,
            },
            now(),
        );
        assert_eq!(
            t.rows[0],
            ["n1", "Ready", "control-plane", "<unknown>", "v0.1.0"]
        );

        let ep = json!({"metadata": {"name": "web"}, "subsets": [{
            "addresses": [{"ip": "127.1.0.2"}, {"ip": "127.1.0.3"}, {"ip": "127.1.0.4"}, {"ip": "127.1.0.5"}],
            "ports": [{"port": 8080}]}]});
        let t = build(
            "endpoints",
            &[ep],
            TableOptions {
                wide: false,
                with_namespace: false,
            },
            now(),
        );
        assert_eq!(
            t.rows[0][1],
            "127.1.0.2:8080,127.1.0.3:8080,127.1.0.4:8080 + 1 more..."
        );

        let rs = json!({"metadata": {"name": "web-abc"}, "spec": {"replicas": 2}, "status": {"replicas": 2, "readyReplicas": 1}});
        let t = build(
            "replicasets",
            &[rs],
            TableOptions {
                wide: false,
                with_namespace: false,
            },
            now(),
        );
        assert_eq!(t.rows[0][..4], ["web-abc", "2", "2", "1"]);
    }
}
