//! Service NodePorts (`spec.ports[].nodePort`) that stay unique across several API servers on one
//! store. kube-apiserver keeps a bitmap of the range in one object (`/registry/ranges/servicenodeports`)
//! updated by compare-and-swap; herd keeps one record per allocated port instead, in the store's internal
//! resource [`RESOURCE`] (never served, watched by nobody), named by the port number and naming its
//! Service: the store's create-if-absent makes the port unique across every replica, as it makes a cluster
//! IP unique through its IPAddress object ([`crate::service_ips`]). A Service's create takes its ports
//! before the Service is written and gives them back if it is not; its update keeps the ports it had
//! (kube's `patchAllocatedValues`), takes new ones and frees the ones it no longer uses; its deletion frees
//! them all. The leader's repair loop (kube's portallocator repair) records the ports of Services that have
//! none and frees records no Service holds.

use std::ops::RangeInclusive;

use rand::Rng as _;
use serde_json::{Value, json};

/// The store's internal resource of allocated NodePorts.
pub const RESOURCE: &str = "servicenodeports";

/// Runs [`Objects::repair_node_ports`] every `interval` until `shutdown` (the leading controller
/// manager's task, beside the cluster IP repair).
pub async fn run_repair(
    objects: crate::objects::Objects,
    interval: std::time::Duration,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let mut orphans = std::collections::BTreeMap::new();
    loop {
        if let Err(e) = objects.repair_node_ports(&mut orphans).await {
            tracing::warn!(error = %e, "repairing the Service NodePort allocations failed");
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
        }
    }
}

/// kube-apiserver's `--service-node-port-range` default.
pub const DEFAULT_RANGE: RangeInclusive<u16> = 30000..=32767;

/// Parses `--service-node-port-range` as kube-apiserver does: `30000-32767` (both ends included), or
/// `30000+767` (a base and a size beyond it).
///
/// # Errors
/// A message naming what is wrong.
pub fn parse_range(text: &str) -> Result<RangeInclusive<u16>, String> {
    let bad = || format!("invalid port range {text:?}: want LOW-HIGH or BASE+SIZE");
    let (low, high) = if let Some((low, high)) = text.split_once('-') {
        let low: u16 = low.trim().parse().map_err(|_| bad())?;
        let high: u16 = high.trim().parse().map_err(|_| bad())?;
        (low, high)
    } else if let Some((base, size)) = text.split_once('+') {
        let base: u16 = base.trim().parse().map_err(|_| bad())?;
        let size: u16 = size.trim().parse().map_err(|_| bad())?;
        (base, base.checked_add(size).ok_or_else(bad)?)
    } else {
        let port: u16 = text.trim().parse().map_err(|_| bad())?;
        (port, port)
    };
    if low == 0 || high < low {
        return Err(bad());
    }
    Ok(low..=high)
}

/// Whether `svc` gets NodePorts: type NodePort, or LoadBalancer unless
/// `allocateLoadBalancerNodePorts` is false.
pub fn wants_node_ports(svc: &Value) -> bool {
    match svc.pointer("/spec/type").and_then(Value::as_str) {
        Some("NodePort") => true,
        Some("LoadBalancer") => svc
            .pointer("/spec/allocateLoadBalancerNodePorts")
            .and_then(Value::as_bool)
            .unwrap_or(true),
        _ => false,
    }
}

/// The NodePorts `svc` holds (each once).
pub fn held(svc: &Value) -> Vec<u16> {
    let mut ports: Vec<u16> = ports(svc)
        .iter()
        .filter_map(|p| p.get("nodePort").and_then(Value::as_u64))
        .filter_map(|p| u16::try_from(p).ok())
        .filter(|p| *p != 0)
        .collect();
    ports.sort_unstable();
    ports.dedup();
    ports
}

fn ports(svc: &Value) -> Vec<Value> {
    svc.pointer("/spec/ports")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

/// kube's `patchAllocatedValues`: a port of the updated Service without a nodePort keeps the one the
/// current Service gives the same `port` and protocol.
pub fn keep_current(current: &Value, desired: &mut Value) {
    if wants_node_ports(current) && wants_node_ports(desired) {
        copy_missing(current, desired);
    }
}

/// kube's `dropTypeDependentFields`: a Service changed to a type without NodePorts loses the ones it kept
/// unchanged from `current` (a full PUT still carries them).
pub fn drop_unneeded(current: &Value, desired: &mut Value) {
    if !wants_node_ports(current) || wants_node_ports(desired) || held(current) != held(desired) {
        return;
    }
    if let Some(ports) = desired
        .pointer_mut("/spec/ports")
        .and_then(Value::as_array_mut)
    {
        for port in ports.iter_mut().filter_map(Value::as_object_mut) {
            port.remove("nodePort");
        }
    }
}

/// Gives each port of `desired` without a nodePort the one `preview` (the same update seen before the
/// write) chose for the same `port` and protocol.
pub fn fill_from(preview: Option<&Value>, desired: &mut Value) {
    if let Some(preview) = preview.filter(|p| wants_node_ports(p)) {
        copy_missing(preview, desired);
    }
}

/// Gives each port of `desired` without a nodePort the one `from` has for the same `port` and protocol.
fn copy_missing(from: &Value, desired: &mut Value) {
    let known = ports(from);
    let Some(new) = desired
        .pointer_mut("/spec/ports")
        .and_then(Value::as_array_mut)
    else {
        return;
    };
    for port in new.iter_mut() {
        if port.get("nodePort").and_then(Value::as_u64).unwrap_or(0) != 0 {
            continue;
        }
        let same = |p: &&Value| p.get("port") == port.get("port") && protocol(p) == protocol(port);
        if let Some(node_port) = known.iter().find(same).and_then(|p| p.get("nodePort")) {
            port["nodePort"] = node_port.clone();
        }
    }
}

fn protocol(port: &Value) -> &str {
    port.get("protocol")
        .and_then(Value::as_str)
        .unwrap_or("TCP")
}

/// The record that allocates `port` to Service `namespace/name`.
pub fn record(port: u16, namespace: &str, name: &str) -> Value {
    json!({"metadata": {"name": port.to_string()},
        "service": {"namespace": namespace, "name": name}})
}

/// Whether `record` allocates its port to Service `namespace/name`.
pub fn belongs_to(record: &Value, namespace: &str, name: &str) -> bool {
    record.pointer("/service/namespace").and_then(Value::as_str) == Some(namespace)
        && record.pointer("/service/name").and_then(Value::as_str) == Some(name)
}

/// The ports of `range` from a random one on, wrapping around (so that API servers allocating at once
/// rarely want the same port).
pub fn candidates(range: &RangeInclusive<u16>) -> impl Iterator<Item = u16> + use<> {
    let (low, high) = (u32::from(*range.start()), u32::from(*range.end()));
    let count = high - low + 1;
    let start = rand::rng().random_range(0..count);
    (0..count).filter_map(move |i| u16::try_from(low + (start + i) % count).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_as_kube_apiserver_reads_them() {
        assert_eq!(parse_range("30000-32767"), Ok(30000..=32767));
        assert_eq!(parse_range("30000+767"), Ok(30000..=30767));
        assert_eq!(parse_range("31000"), Ok(31000..=31000));
        assert!(parse_range("32767-30000").is_err());
        assert!(parse_range("0-10").is_err());
        assert!(parse_range("a-b").is_err());
        assert!(parse_range("65000+1000").is_err());
    }

    #[test]
    fn an_update_keeps_the_node_ports_of_the_same_port_and_protocol() {
        let current = json!({"spec": {"type": "NodePort", "ports": [
            {"port": 80, "nodePort": 30080}, {"port": 53, "protocol": "UDP", "nodePort": 30053}]}});
        let mut desired = json!({"spec": {"type": "NodePort", "ports": [
            {"port": 80}, {"port": 53, "protocol": "TCP"}, {"port": 81, "nodePort": 30081}]}});
        keep_current(&current, &mut desired);
        assert_eq!(desired["spec"]["ports"][0]["nodePort"], 30080);
        assert!(desired["spec"]["ports"][1].get("nodePort").is_none());
        assert_eq!(held(&desired), vec![30080, 30081]);
        let mut cluster_ip = json!({"spec": {"type": "ClusterIP", "ports": [{"port": 80}]}});
        keep_current(&current, &mut cluster_ip);
        assert!(cluster_ip["spec"]["ports"][0].get("nodePort").is_none());
        // Changed to ClusterIP with the same nodePorts (a full PUT): they go.
        let mut put = current.clone();
        put["spec"]["type"] = json!("ClusterIP");
        drop_unneeded(&current, &mut put);
        assert_eq!(held(&put), Vec::<u16>::new());
    }

    #[test]
    fn candidates_cover_the_range_once() {
        let mut all: Vec<u16> = candidates(&(30000..=30009)).collect();
        all.sort_unstable();
        assert_eq!(all, (30000..=30009).collect::<Vec<_>>());
    }
}
