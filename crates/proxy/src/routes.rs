//! The routing table: which backends serve each cluster address, computed from Services and their
//! `discovery.k8s.io/v1` EndpointSlices as kube-proxy does. Pure data, no I/O.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};

use k8s_openapi::api::core::v1::{Service, ServicePort};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// The label that names the Service an EndpointSlice belongs to.
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// Frontend `clusterIP:port` → the backend `podIP:port`s behind it (sorted, no duplicates).
///
/// A frontend with an empty backend list is still listened on; its connections are closed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RoutingTable {
    routes: BTreeMap<SocketAddr, Vec<SocketAddr>>,
    services: BTreeMap<SocketAddr, ServiceRef>,
}

/// The Service a frontend belongs to.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServiceRef {
    pub namespace: String,
    pub name: String,
}

impl RoutingTable {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Routes connections to `frontend` over `backends` (round robin, in sorted order).
    pub fn insert(&mut self, frontend: SocketAddr, mut backends: Vec<SocketAddr>) {
        backends.sort();
        backends.dedup();
        self.routes.insert(frontend, backends);
    }

    /// The backends of `frontend`, or `None` if the table has no such frontend.
    pub fn backends(&self, frontend: SocketAddr) -> Option<&[SocketAddr]> {
        self.routes.get(&frontend).map(Vec::as_slice)
    }

    /// The Service whose port `frontend` is, if the table was built from Services.
    pub fn service(&self, frontend: SocketAddr) -> Option<&ServiceRef> {
        self.services.get(&frontend)
    }

    /// Every frontend address, in order.
    pub fn frontends(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        self.routes.keys().copied()
    }

    /// The table for `services`, with backends from the EndpointSlices labelled
    /// `kubernetes.io/service-name=<service>` in the Service's namespace, merged as kube-proxy
    /// merges them:
    ///
    /// - a Service port takes the slice ports of the same name and protocol (an unset name is
    ///   `""`), each slice its own port number;
    /// - an endpoint is its first address; one present in several slices counts once, with the
    ///   best conditions any of them gives it;
    /// - the ready endpoints (`conditions.ready` true or unset) serve; only when there is none do
    ///   the terminating endpoints that are still serving (`ProxyTerminatingEndpoints`).
    ///
    /// Services without a cluster IP (headless, ExternalName), non-TCP ports, FQDN slices and
    /// malformed addresses are skipped.
    pub fn from_objects<'a>(
        services: impl IntoIterator<Item = &'a Service>,
        slices: impl IntoIterator<Item = &'a EndpointSlice>,
    ) -> Self {
        let mut slices_by_service: HashMap<(&str, &str), Vec<&EndpointSlice>> = HashMap::new();
        for slice in slices {
            if slice.address_type == "FQDN" {
                continue;
            }
            let Some(service) = slice
                .metadata
                .labels
                .as_ref()
                .and_then(|labels| labels.get(SERVICE_NAME_LABEL))
                .filter(|name| !name.is_empty())
            else {
                continue;
            };
            slices_by_service
                .entry((namespace_of(&slice.metadata), service))
                .or_default()
                .push(slice);
        }
        let mut table = Self::new();
        for service in services {
            let Some(cluster_ip) = cluster_ip(service) else {
                continue;
            };
            let Some(name) = service.metadata.name.as_deref() else {
                continue;
            };
            let owner = ServiceRef {
                namespace: namespace_of(&service.metadata).to_owned(),
                name: name.to_owned(),
            };
            let slices = slices_by_service
                .get(&(namespace_of(&service.metadata), name))
                .map(Vec::as_slice)
                .unwrap_or_default();
            let ports = service
                .spec
                .as_ref()
                .and_then(|s| s.ports.as_deref())
                .unwrap_or_default();
            for port in ports.iter().filter(|p| is_tcp(p.protocol.as_deref())) {
                let Some(frontend_port) = valid_port(port.port) else {
                    continue;
                };
                let frontend = SocketAddr::new(cluster_ip, frontend_port);
                table.insert(frontend, port_backends(slices, port));
                table.services.insert(frontend, owner.clone());
            }
        }
        table
    }
}

fn namespace_of(meta: &ObjectMeta) -> &str {
    meta.namespace.as_deref().unwrap_or("default")
}

/// The cluster IP a proxy should listen on, if the Service has one.
fn cluster_ip(service: &Service) -> Option<IpAddr> {
    let spec = service.spec.as_ref()?;
    if spec.type_.as_deref() == Some("ExternalName") {
        return None;
    }
    let ip = spec.cluster_ip.as_deref()?;
    if ip.is_empty() || ip == "None" {
        return None;
    }
    ip.parse().ok()
}

fn is_tcp(protocol: Option<&str>) -> bool {
    protocol.is_none_or(|p| p.eq_ignore_ascii_case("TCP"))
}

fn valid_port(port: i32) -> Option<u16> {
    u16::try_from(port).ok().filter(|p| *p != 0)
}

/// How an endpoint may take traffic, best first (kube-proxy's categories).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Usability {
    /// `ready` true or unset: serves.
    Ready,
    /// Terminating but still serving: serves only when the Service has no ready endpoint.
    ServingTerminating,
    /// Neither: never serves.
    Unusable,
}

fn usability(endpoint: &Endpoint) -> Usability {
    let conditions = endpoint.conditions.as_ref();
    // A nil condition is read as kube does: ready and serving unset are true, terminating false.
    let ready = conditions.and_then(|c| c.ready).unwrap_or(true);
    let serving = conditions.and_then(|c| c.serving).unwrap_or(true);
    let terminating = conditions.and_then(|c| c.terminating).unwrap_or(false);
    if ready {
        Usability::Ready
    } else if serving && terminating {
        Usability::ServingTerminating
    } else {
        Usability::Unusable
    }
}

/// The backends of one Service port across the Service's `slices`: the ready endpoints, or the
/// serving terminating ones when none is ready.
fn port_backends(slices: &[&EndpointSlice], service_port: &ServicePort) -> Vec<SocketAddr> {
    let wanted = service_port.name.as_deref().unwrap_or_default();
    let mut best: BTreeMap<SocketAddr, Usability> = BTreeMap::new();
    for slice in slices {
        let ports = slice.ports.as_deref().unwrap_or_default();
        let matching = ports.iter().filter(|p| {
            p.name.as_deref().unwrap_or_default() == wanted && is_tcp(p.protocol.as_deref())
        });
        for port in matching.filter_map(|p| p.port.and_then(valid_port)) {
            for endpoint in slice.endpoints.iter().flatten() {
                let Some(ip) = endpoint
                    .addresses
                    .first()
                    .and_then(|a| a.parse::<IpAddr>().ok())
                else {
                    continue;
                };
                let usable = usability(endpoint);
                best.entry(SocketAddr::new(ip, port))
                    .and_modify(|known| *known = (*known).min(usable))
                    .or_insert(usable);
            }
        }
    }
    let serving = |category: Usability| -> Vec<SocketAddr> {
        best.iter()
            .filter(|(_, usable)| **usable == category)
            .map(|(addr, _)| *addr)
            .collect()
    };
    let ready = serving(Usability::Ready);
    if ready.is_empty() {
        serving(Usability::ServingTerminating)
    } else {
        ready
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn service(value: serde_json::Value) -> Service {
        serde_json::from_value(value).expect("valid Service")
    }

    /// A slice of Service `service` in `namespace` (the `kubernetes.io/service-name` label set).
    fn slice(
        namespace: &str,
        service: &str,
        ports: serde_json::Value,
        endpoints: serde_json::Value,
    ) -> EndpointSlice {
        serde_json::from_value(json!({
            "metadata": {
                "name": format!("{service}-{}", endpoints.as_array().map_or(0, Vec::len)),
                "namespace": namespace,
                "labels": {SERVICE_NAME_LABEL: service},
            },
            "addressType": "IPv4",
            "ports": ports,
            "endpoints": endpoints,
        }))
        .expect("valid EndpointSlice")
    }

    fn ready(ip: &str) -> serde_json::Value {
        json!({"addresses": [ip], "conditions": {"ready": true, "serving": true, "terminating": false}})
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("socket address")
    }

    fn addrs(list: &[&str]) -> Vec<SocketAddr> {
        list.iter().map(|s| addr(s)).collect()
    }

    #[test]
    fn merges_the_slices_of_a_service_and_matches_ports_by_name() {
        let svc = service(json!({
            "metadata": {"name": "web", "namespace": "shop"},
            "spec": {"clusterIP": "127.96.0.10", "ports": [
                {"name": "http", "port": 80},
                {"name": "admin", "port": 81, "protocol": "TCP"},
                {"name": "dns", "port": 53, "protocol": "UDP"}
            ]}
        }));
        let http_and_admin =
            json!([{"name": "admin", "port": 9000}, {"name": "http", "port": 8080}]);
        let first = slice(
            "shop",
            "web",
            http_and_admin.clone(),
            json!([ready("127.1.0.3"), ready("127.1.0.2")]),
        );
        let second = slice("shop", "web", http_and_admin, json!([ready("127.1.0.4")]));
        // Pods whose named port resolved to another number sit in a slice of their own.
        let other_port = slice(
            "shop",
            "web",
            json!([{"name": "http", "port": 8081}]),
            json!([ready("127.1.0.5")]),
        );
        // A port of another name, and a UDP port of the right name, serve nothing.
        let unrelated = slice(
            "shop",
            "web",
            json!([{"name": "metrics", "port": 9100}, {"name": "http", "port": 5353, "protocol": "UDP"}]),
            json!([ready("127.1.0.6")]),
        );
        let table = RoutingTable::from_objects([&svc], [&first, &second, &other_port, &unrelated]);
        assert_eq!(
            table.backends(addr("127.96.0.10:80")),
            Some(
                &addrs(&[
                    "127.1.0.2:8080",
                    "127.1.0.3:8080",
                    "127.1.0.4:8080",
                    "127.1.0.5:8081"
                ])[..]
            )
        );
        assert_eq!(
            table.backends(addr("127.96.0.10:81")),
            Some(&addrs(&["127.1.0.2:9000", "127.1.0.3:9000", "127.1.0.4:9000"])[..])
        );
        assert_eq!(table.frontends().count(), 2, "the UDP port is not proxied");
    }

    #[test]
    fn an_address_in_two_slices_counts_once_with_its_best_conditions() {
        let svc = service(json!({
            "metadata": {"name": "api", "namespace": "default"},
            "spec": {"clusterIP": "127.96.0.11", "ports": [{"port": 8080}]}
        }));
        let ports = json!([{"port": 3000, "protocol": "TCP"}]);
        let a = slice(
            "default",
            "api",
            ports.clone(),
            json!([ready("127.1.0.2"), ready("127.1.0.3")]),
        );
        // The same pod, seen not ready in a second (stale) slice, stays a backend, once.
        let b = slice(
            "default",
            "api",
            ports,
            json!([{"addresses": ["127.1.0.2"], "conditions": {"ready": false}}]),
        );
        let table = RoutingTable::from_objects([&svc], [&a, &b]);
        assert_eq!(
            table.backends(addr("127.96.0.11:8080")),
            Some(&addrs(&["127.1.0.2:3000", "127.1.0.3:3000"])[..])
        );
    }

    #[test]
    fn only_ready_endpoints_serve_and_unset_ready_is_ready() {
        let svc = service(json!({
            "metadata": {"name": "api", "namespace": "default"},
            "spec": {"clusterIP": "127.96.0.12", "ports": [{"name": "http", "port": 80}]}
        }));
        let s = slice(
            "default",
            "api",
            json!([{"name": "http", "port": 8080}]),
            json!([
                ready("127.1.0.2"),
                {"addresses": ["127.1.0.3"]},
                {"addresses": ["127.1.0.4"], "conditions": {}},
                {"addresses": ["127.1.0.5"], "conditions": {"ready": false, "serving": false}},
                {"addresses": ["127.1.0.6"], "conditions": {"ready": false, "serving": true, "terminating": true}},
                {"addresses": ["not-an-ip"]},
                {"addresses": []}
            ]),
        );
        let table = RoutingTable::from_objects([&svc], [&s]);
        assert_eq!(
            table.backends(addr("127.96.0.12:80")),
            Some(&addrs(&["127.1.0.2:8080", "127.1.0.3:8080", "127.1.0.4:8080"])[..]),
            "terminating endpoints wait while ready ones exist"
        );
    }

    #[test]
    fn serving_terminating_endpoints_serve_when_none_is_ready() {
        let svc = service(json!({
            "metadata": {"name": "api", "namespace": "default"},
            "spec": {"clusterIP": "127.96.0.13", "ports": [{"port": 80}]}
        }));
        let s = slice(
            "default",
            "api",
            json!([{"port": 8080}]),
            json!([
                {"addresses": ["127.1.0.2"], "conditions": {"ready": false, "serving": true, "terminating": true}},
                {"addresses": ["127.1.0.3"], "conditions": {"ready": false, "serving": false, "terminating": true}},
                {"addresses": ["127.1.0.4"], "conditions": {"ready": false, "terminating": true}},
                {"addresses": ["127.1.0.5"], "conditions": {"ready": false, "serving": true, "terminating": false}}
            ]),
        );
        let table = RoutingTable::from_objects([&svc], [&s]);
        assert_eq!(
            table.backends(addr("127.96.0.13:80")),
            Some(&addrs(&["127.1.0.2:8080", "127.1.0.4:8080"])[..]),
            "serving (or unset) and terminating; a serving pod that is not terminating is not ready"
        );
        let not_serving = slice(
            "default",
            "api",
            json!([{"port": 8080}]),
            json!([{"addresses": ["127.1.0.3"], "conditions": {"ready": false, "serving": false, "terminating": true}}]),
        );
        let table = RoutingTable::from_objects([&svc], [&not_serving]);
        assert_eq!(table.backends(addr("127.96.0.13:80")), Some(&[][..]));
    }

    #[test]
    fn unnamed_ports_match_unnamed_ports_only() {
        let unnamed = service(json!({
            "metadata": {"name": "api", "namespace": "default"},
            "spec": {"clusterIP": "127.96.0.14", "ports": [{"port": 8080}]}
        }));
        let named = service(json!({
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"clusterIP": "127.96.0.15", "ports": [{"name": "http", "port": 80}]}
        }));
        let lonely = service(json!({
            "metadata": {"name": "lonely", "namespace": "default"},
            "spec": {"clusterIP": "127.96.0.16", "ports": [{"port": 80}]}
        }));
        let api = slice(
            "default",
            "api",
            json!([{"name": "", "port": 3000}]),
            json!([ready("127.1.0.2")]),
        );
        // kube-proxy matches by name only: a lone port of another name is not taken.
        let web = slice(
            "default",
            "web",
            json!([{"name": "a", "port": 1}, {"port": 2}]),
            json!([ready("127.1.0.3")]),
        );
        let table = RoutingTable::from_objects([&unnamed, &named, &lonely], [&api, &web]);
        assert_eq!(
            table.backends(addr("127.96.0.14:8080")),
            Some(&addrs(&["127.1.0.2:3000"])[..])
        );
        assert_eq!(table.backends(addr("127.96.0.15:80")), Some(&[][..]));
        assert_eq!(table.backends(addr("127.96.0.16:80")), Some(&[][..]));
    }

    #[test]
    fn skips_headless_external_and_slices_of_other_namespaces_or_without_label() {
        let headless = service(json!({
            "metadata": {"name": "h", "namespace": "default"},
            "spec": {"clusterIP": "None", "ports": [{"port": 80}]}
        }));
        let external = service(json!({
            "metadata": {"name": "x", "namespace": "default"},
            "spec": {"type": "ExternalName", "externalName": "example.com", "ports": [{"port": 80}]}
        }));
        let unallocated = service(json!({
            "metadata": {"name": "u", "namespace": "default"},
            "spec": {"ports": [{"port": 80}]}
        }));
        let svc = service(json!({
            "metadata": {"name": "web", "namespace": "a"},
            "spec": {"clusterIP": "127.96.0.17", "ports": [{"port": 80}]}
        }));
        let ports = json!([{"port": 80}]);
        let wrong_ns = slice("b", "web", ports.clone(), json!([ready("127.1.0.2")]));
        // Named like the Service but not labelled with it: not the Service's.
        let mut unlabelled = slice("a", "web", ports.clone(), json!([ready("127.1.0.3")]));
        unlabelled.metadata.labels = None;
        unlabelled.metadata.name = Some("web".into());
        let mut fqdn = slice("a", "web", ports, json!([ready("127.1.0.4")]));
        fqdn.address_type = "FQDN".into();
        let table = RoutingTable::from_objects(
            [&headless, &external, &unallocated, &svc],
            [&wrong_ns, &unlabelled, &fqdn],
        );
        assert_eq!(
            table.frontends().collect::<Vec<_>>(),
            vec![addr("127.96.0.17:80")]
        );
        assert_eq!(table.backends(addr("127.96.0.17:80")), Some(&[][..]));
    }
}
