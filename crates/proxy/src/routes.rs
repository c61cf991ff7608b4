//! The routing table: which backends serve each cluster address (and each of this node's
//! NodePorts), computed from Services and their `discovery.k8s.io/v1` EndpointSlices as
//! kube-proxy does. Pure data, no I/O.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Service, ServicePort};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// The label that names the Service an EndpointSlice belongs to.
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// `sessionAffinityConfig.clientIP.timeoutSeconds` when unset: kube's default, 3 hours.
pub const DEFAULT_AFFINITY_TIMEOUT: Duration = Duration::from_secs(10_800);

/// The transport protocol of a frontend.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    /// A Service or slice port's `protocol` (unset is TCP); `None` for SCTP and unknown ones.
    fn parse(protocol: Option<&str>) -> Option<Self> {
        match protocol {
            None => Some(Self::Tcp),
            Some(p) if p.eq_ignore_ascii_case("TCP") => Some(Self::Tcp),
            Some(p) if p.eq_ignore_ascii_case("UDP") => Some(Self::Udp),
            Some(_) => None,
        }
    }
}

/// The node a table is built for: its name (for the traffic policies `Local`) and the addresses
/// its NodePorts listen on.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeInfo {
    pub name: String,
    pub addresses: Vec<IpAddr>,
}

/// Frontend → the backends behind it (sorted, no duplicates), per protocol: every
/// `clusterIP:port` of a Service, and `nodeIP:nodePort` of this node for NodePort and
/// LoadBalancer Services.
///
/// A frontend with an empty backend list is still listened on; its connections are closed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RoutingTable {
    routes: BTreeMap<(Protocol, SocketAddr), Route>,
}

/// One frontend's backends and how they are chosen.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Route {
    backends: Vec<SocketAddr>,
    service: Option<ServiceRef>,
    /// `sessionAffinity: ClientIP`: how long a client keeps its backend after its last connection.
    affinity: Option<Duration>,
    /// A NodePort of this node (not a cluster IP), which no other program may share.
    node_port: bool,
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

    /// Routes TCP connections to `frontend` over `backends` (round robin, in sorted order).
    pub fn insert(&mut self, frontend: SocketAddr, backends: Vec<SocketAddr>) {
        self.insert_route(Protocol::Tcp, frontend, backends, None, None);
    }

    /// Routes `protocol` traffic to `frontend` over `backends`, for `service`, with ClientIP
    /// session affinity of that timeout when `affinity` is set.
    pub fn insert_route(
        &mut self,
        protocol: Protocol,
        frontend: SocketAddr,
        mut backends: Vec<SocketAddr>,
        service: Option<ServiceRef>,
        affinity: Option<Duration>,
    ) {
        backends.sort();
        backends.dedup();
        self.routes.insert(
            (protocol, frontend),
            Route {
                backends,
                service,
                affinity,
                node_port: false,
            },
        );
    }

    /// The backends of TCP frontend `frontend`, or `None` if the table has no such frontend.
    pub fn backends(&self, frontend: SocketAddr) -> Option<&[SocketAddr]> {
        self.backends_of(Protocol::Tcp, frontend)
    }

    /// The backends of `protocol` frontend `frontend`.
    pub fn backends_of(&self, protocol: Protocol, frontend: SocketAddr) -> Option<&[SocketAddr]> {
        self.routes
            .get(&(protocol, frontend))
            .map(|r| r.backends.as_slice())
    }

    /// The Service whose port `frontend` (TCP) is, if the table was built from Services.
    pub fn service(&self, frontend: SocketAddr) -> Option<&ServiceRef> {
        self.service_of(Protocol::Tcp, frontend)
    }

    /// The Service whose port `protocol` frontend `frontend` is.
    pub fn service_of(&self, protocol: Protocol, frontend: SocketAddr) -> Option<&ServiceRef> {
        self.routes.get(&(protocol, frontend))?.service.as_ref()
    }

    /// The ClientIP session affinity timeout of `protocol` frontend `frontend`, if it has one.
    pub fn affinity(&self, protocol: Protocol, frontend: SocketAddr) -> Option<Duration> {
        self.routes.get(&(protocol, frontend))?.affinity
    }

    /// Whether `protocol` frontend `frontend` is a NodePort of this node's.
    pub fn is_node_port(&self, protocol: Protocol, frontend: SocketAddr) -> bool {
        self.routes
            .get(&(protocol, frontend))
            .is_some_and(|r| r.node_port)
    }

    /// Every TCP frontend address, in order.
    pub fn frontends(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        self.frontends_of(Protocol::Tcp)
    }

    /// Every `protocol` frontend address, in order.
    pub fn frontends_of(&self, protocol: Protocol) -> impl Iterator<Item = SocketAddr> + '_ {
        self.routes
            .keys()
            .filter(move |(p, _)| *p == protocol)
            .map(|(_, frontend)| *frontend)
    }

    /// [`RoutingTable::for_node`] for no node in particular: no NodePorts, and no endpoint is
    /// local (a `Local` traffic policy routes nowhere).
    pub fn from_objects<'a>(
        services: impl IntoIterator<Item = &'a Service>,
        slices: impl IntoIterator<Item = &'a EndpointSlice>,
    ) -> Self {
        Self::for_node(&NodeInfo::default(), services, slices)
    }

    /// The table of `node` for `services`, with backends from the EndpointSlices labelled
    /// `kubernetes.io/service-name=<service>` in the Service's namespace, merged as kube-proxy
    /// merges them:
    ///
    /// - a Service port takes the slice ports of the same name and protocol (an unset name is
    ///   `""`), each slice its own port number;
    /// - an endpoint is its first address; one present in several slices counts once, with the
    ///   best conditions any of them gives it;
    /// - the ready endpoints (`conditions.ready` true or unset) serve; only when there is none do
    ///   the terminating endpoints that are still serving (`ProxyTerminatingEndpoints`);
    /// - `internalTrafficPolicy: Local` (cluster IPs) and `externalTrafficPolicy: Local`
    ///   (NodePorts) keep only the endpoints whose `nodeName` is `node`'s: none left, and the
    ///   frontend drops its traffic, as kube-proxy does;
    /// - each `nodePort` of a NodePort or LoadBalancer Service is a frontend on every address of
    ///   `node`;
    /// - `sessionAffinity: ClientIP` gives every frontend of the Service its timeout.
    ///
    /// Services without a cluster IP (headless, ExternalName), SCTP ports, FQDN slices and
    /// malformed addresses are skipped.
    pub fn for_node<'a>(
        node: &NodeInfo,
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
            let Some(spec) = service.spec.as_ref() else {
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
            let affinity = (spec.session_affinity.as_deref() == Some("ClientIP")).then(|| {
                spec.session_affinity_config
                    .as_ref()
                    .and_then(|c| c.client_ip.as_ref())
                    .and_then(|c| c.timeout_seconds)
                    .and_then(|s| u64::try_from(s).ok())
                    .filter(|s| *s > 0)
                    .map_or(DEFAULT_AFFINITY_TIMEOUT, Duration::from_secs)
            });
            let internal_local = spec.internal_traffic_policy.as_deref() == Some("Local");
            let external_local = spec.external_traffic_policy.as_deref() == Some("Local");
            let node_ports = matches!(spec.type_.as_deref(), Some("NodePort" | "LoadBalancer"));
            for port in spec.ports.iter().flatten() {
                let Some(protocol) = Protocol::parse(port.protocol.as_deref()) else {
                    continue;
                };
                let Some(frontend_port) = valid_port(port.port) else {
                    continue;
                };
                let local = |yes: bool| yes.then_some(node.name.as_str());
                let mut route = |frontend, only_on, node_port| {
                    table.insert_route(
                        protocol,
                        frontend,
                        port_backends(slices, port, protocol, only_on),
                        Some(owner.clone()),
                        affinity,
                    );
                    if let Some(route) = table.routes.get_mut(&(protocol, frontend)) {
                        route.node_port = node_port;
                    }
                };
                route(
                    SocketAddr::new(cluster_ip, frontend_port),
                    local(internal_local),
                    false,
                );
                let node_port = port.node_port.and_then(valid_port).filter(|_| node_ports);
                if let Some(node_port) = node_port {
                    for ip in &node.addresses {
                        route(SocketAddr::new(*ip, node_port), local(external_local), true);
                    }
                }
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
/// serving terminating ones when none is ready — among the endpoints of node `only_on` when it
/// is set (a traffic policy `Local`).
fn port_backends(
    slices: &[&EndpointSlice],
    service_port: &ServicePort,
    protocol: Protocol,
    only_on: Option<&str>,
) -> Vec<SocketAddr> {
    let wanted = service_port.name.as_deref().unwrap_or_default();
    let mut best: BTreeMap<SocketAddr, Usability> = BTreeMap::new();
    for slice in slices {
        let ports = slice.ports.as_deref().unwrap_or_default();
        let matching = ports.iter().filter(|p| {
            p.name.as_deref().unwrap_or_default() == wanted
                && Protocol::parse(p.protocol.as_deref()) == Some(protocol)
        });
        for port in matching.filter_map(|p| p.port.and_then(valid_port)) {
            for endpoint in slice.endpoints.iter().flatten() {
                if only_on.is_some_and(|node| endpoint.node_name.as_deref() != Some(node)) {
                    continue;
                }
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
        assert_eq!(
            table.frontends().count(),
            2,
            "the UDP port is a UDP frontend"
        );
        assert_eq!(
            table.backends_of(Protocol::Udp, addr("127.96.0.10:53")),
            Some(&[][..])
        );
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

#[cfg(test)]
mod policy_tests {
    use super::*;
    use serde_json::json;

    fn service(value: serde_json::Value) -> Service {
        serde_json::from_value(value).expect("valid Service")
    }

    fn slice(
        service: &str,
        ports: serde_json::Value,
        endpoints: serde_json::Value,
    ) -> EndpointSlice {
        serde_json::from_value(json!({
            "metadata": {"name": format!("{service}-x"), "namespace": "default",
                "labels": {SERVICE_NAME_LABEL: service}},
            "addressType": "IPv4",
            "ports": ports,
            "endpoints": endpoints,
        }))
        .expect("valid EndpointSlice")
    }

    fn on(ip: &str, node: &str) -> serde_json::Value {
        json!({"addresses": [ip], "nodeName": node, "conditions": {"ready": true}})
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("socket address")
    }

    fn node(name: &str, ip: &str) -> NodeInfo {
        NodeInfo {
            name: name.into(),
            addresses: vec![ip.parse().expect("ip")],
        }
    }

    #[test]
    fn internal_traffic_policy_local_keeps_this_nodes_endpoints_only() {
        let svc = service(json!({
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"clusterIP": "127.96.1.1", "internalTrafficPolicy": "Local",
                "ports": [{"port": 80}]}
        }));
        let s = slice(
            "web",
            json!([{"port": 8080}]),
            json!([on("127.1.0.2", "a"), on("127.1.0.3", "b"), {"addresses": ["127.1.0.4"]}]),
        );
        let a = RoutingTable::for_node(&node("a", "127.0.0.1"), [&svc], [&s]);
        assert_eq!(
            a.backends(addr("127.96.1.1:80")),
            Some(&[addr("127.1.0.2:8080")][..])
        );
        // No endpoint on this node: the frontend drops its connections, as kube-proxy.
        let c = RoutingTable::for_node(&node("c", "127.0.0.1"), [&svc], [&s]);
        assert_eq!(c.backends(addr("127.96.1.1:80")), Some(&[][..]));
        // Cluster (the default) keeps all of them.
        let mut cluster = svc.clone();
        cluster.spec.as_mut().expect("spec").internal_traffic_policy = None;
        let all = RoutingTable::for_node(&node("c", "127.0.0.1"), [&cluster], [&s]);
        assert_eq!(all.backends(addr("127.96.1.1:80")).map(<[_]>::len), Some(3));
    }

    #[test]
    fn node_ports_listen_on_the_node_addresses_with_the_external_policy() {
        let svc = service(json!({
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"type": "NodePort", "clusterIP": "127.96.1.2", "externalTrafficPolicy": "Local",
                "ports": [{"name": "http", "port": 80, "nodePort": 30080},
                          {"name": "dns", "port": 53, "protocol": "UDP", "nodePort": 30053}]}
        }));
        let s = slice(
            "web",
            json!([{"name": "http", "port": 8080}, {"name": "dns", "port": 5353, "protocol": "UDP"}]),
            json!([on("127.1.0.2", "a"), on("127.1.0.3", "b")]),
        );
        let table = RoutingTable::for_node(&node("a", "127.0.0.1"), [&svc], [&s]);
        // The cluster IP serves every endpoint (internal policy Cluster); the NodePort this node's.
        assert_eq!(
            table.backends(addr("127.96.1.2:80")).map(<[_]>::len),
            Some(2)
        );
        assert_eq!(
            table.backends(addr("127.0.0.1:30080")),
            Some(&[addr("127.1.0.2:8080")][..])
        );
        assert!(table.is_node_port(Protocol::Tcp, addr("127.0.0.1:30080")));
        assert!(!table.is_node_port(Protocol::Tcp, addr("127.96.1.2:80")));
        assert_eq!(
            table.backends_of(Protocol::Udp, addr("127.0.0.1:30053")),
            Some(&[addr("127.1.0.2:5353")][..])
        );
        assert_eq!(
            table
                .backends_of(Protocol::Udp, addr("127.96.1.2:53"))
                .map(<[_]>::len),
            Some(2)
        );
        // A ClusterIP Service's stray nodePort is not listened on, nor a table for no node.
        let mut plain = svc.clone();
        plain.spec.as_mut().expect("spec").type_ = Some("ClusterIP".into());
        let table = RoutingTable::for_node(&node("a", "127.0.0.1"), [&plain], [&s]);
        assert_eq!(table.backends(addr("127.0.0.1:30080")), None);
        let table = RoutingTable::from_objects([&svc], [&s]);
        assert_eq!(
            table.frontends().collect::<Vec<_>>(),
            vec![addr("127.96.1.2:80")]
        );
    }

    #[test]
    fn client_ip_affinity_takes_the_timeout_or_kubes_default() {
        let svc = |config: serde_json::Value| {
            service(json!({
                "metadata": {"name": "web", "namespace": "default"},
                "spec": {"clusterIP": "127.96.1.3", "sessionAffinity": "ClientIP",
                    "sessionAffinityConfig": config, "ports": [{"port": 80}]}
            }))
        };
        let frontend = addr("127.96.1.3:80");
        let table =
            RoutingTable::from_objects([&svc(json!({"clientIP": {"timeoutSeconds": 60}}))], []);
        assert_eq!(
            table.affinity(Protocol::Tcp, frontend),
            Some(Duration::from_secs(60))
        );
        let table = RoutingTable::from_objects([&svc(json!(null))], []);
        assert_eq!(
            table.affinity(Protocol::Tcp, frontend),
            Some(DEFAULT_AFFINITY_TIMEOUT)
        );
        let mut none = svc(json!(null));
        none.spec.as_mut().expect("spec").session_affinity = Some("None".into());
        let table = RoutingTable::from_objects([&none], []);
        assert_eq!(table.affinity(Protocol::Tcp, frontend), None);
    }
}
