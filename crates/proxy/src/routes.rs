//! The routing table: which backends serve each cluster address, computed from Services and
//! Endpoints. Pure data, no I/O.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};

use k8s_openapi::api::core::v1::{EndpointPort, EndpointSubset, Endpoints, Service, ServicePort};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// Frontend `clusterIP:port` → the ready backend `podIP:port`s behind it (sorted, no duplicates).
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

    /// The table for `services`, with backends from the Endpoints object of the same namespace
    /// and name. Services without a cluster IP (headless, ExternalName) and non-TCP ports are
    /// skipped; malformed addresses are ignored.
    pub fn from_objects<'a>(
        services: impl IntoIterator<Item = &'a Service>,
        endpoints: impl IntoIterator<Item = &'a Endpoints>,
    ) -> Self {
        let endpoints: HashMap<(&str, &str), &Endpoints> = endpoints
            .into_iter()
            .filter_map(|ep| {
                Some((
                    (namespace_of(&ep.metadata), ep.metadata.name.as_deref()?),
                    ep,
                ))
            })
            .collect();
        let mut table = Self::new();
        for service in services {
            let Some(cluster_ip) = cluster_ip(service) else {
                continue;
            };
            let Some(name) = service.metadata.name.clone() else {
                continue;
            };
            let owner = ServiceRef {
                namespace: namespace_of(&service.metadata).to_owned(),
                name,
            };
            let subsets = service
                .metadata
                .name
                .as_deref()
                .and_then(|name| endpoints.get(&(namespace_of(&service.metadata), name)))
                .and_then(|ep| ep.subsets.as_deref())
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
                let backends = subsets
                    .iter()
                    .flat_map(|subset| subset_backends(subset, port))
                    .collect();
                let frontend = SocketAddr::new(cluster_ip, frontend_port);
                table.insert(frontend, backends);
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

/// The ready addresses of `subset` on the endpoint port that serves `service_port`.
fn subset_backends(subset: &EndpointSubset, service_port: &ServicePort) -> Vec<SocketAddr> {
    let ports = subset.ports.as_deref().unwrap_or_default();
    let Some(port) = matching_endpoint_port(ports, service_port).and_then(|p| valid_port(p.port))
    else {
        return Vec::new();
    };
    subset
        .addresses
        .iter()
        .flatten()
        .filter_map(|address| address.ip.parse::<IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, port))
        .collect()
}

/// The endpoint port named like the service port, or else the subset's only TCP port.
fn matching_endpoint_port<'a>(
    ports: &'a [EndpointPort],
    service_port: &ServicePort,
) -> Option<&'a EndpointPort> {
    let wanted = service_port.name.as_deref().unwrap_or_default();
    let tcp_ports: Vec<&EndpointPort> = ports
        .iter()
        .filter(|p| is_tcp(p.protocol.as_deref()))
        .collect();
    tcp_ports
        .iter()
        .find(|p| p.name.as_deref().unwrap_or_default() == wanted)
        .or(match tcp_ports.as_slice() {
            [only] => Some(only),
            _ => None,
        })
        .copied()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn service(value: serde_json::Value) -> Service {
        serde_json::from_value(value).expect("valid Service")
    }

    fn endpoints(value: serde_json::Value) -> Endpoints {
        serde_json::from_value(value).expect("valid Endpoints")
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("socket address")
    }

    #[test]
    fn maps_named_ports_to_ready_addresses() {
        let svc = service(json!({
            "metadata": {"name": "web", "namespace": "shop"},
            "spec": {"clusterIP": "127.96.0.10", "ports": [
                {"name": "http", "port": 80},
                {"name": "admin", "port": 81, "protocol": "TCP"},
                {"name": "dns", "port": 53, "protocol": "UDP"}
            ]}
        }));
        let ep = endpoints(json!({
            "metadata": {"name": "web", "namespace": "shop"},
            "subsets": [{
                "addresses": [{"ip": "127.1.0.3"}, {"ip": "127.1.0.2"}],
                "notReadyAddresses": [{"ip": "127.1.0.9"}],
                "ports": [{"name": "admin", "port": 9000}, {"name": "http", "port": 8080}]
            }]
        }));
        let table = RoutingTable::from_objects([&svc], [&ep]);
        assert_eq!(
            table.backends(addr("127.96.0.10:80")),
            Some(&[addr("127.1.0.2:8080"), addr("127.1.0.3:8080")][..])
        );
        assert_eq!(
            table.backends(addr("127.96.0.10:81")),
            Some(&[addr("127.1.0.2:9000"), addr("127.1.0.3:9000")][..])
        );
        assert_eq!(table.frontends().count(), 2, "the UDP port is not proxied");
    }

    #[test]
    fn unnamed_single_port_and_missing_endpoints() {
        let svc = service(json!({
            "metadata": {"name": "api", "namespace": "default"},
            "spec": {"clusterIP": "127.96.0.11", "ports": [{"port": 8080}]}
        }));
        let other = service(json!({
            "metadata": {"name": "lonely", "namespace": "default"},
            "spec": {"clusterIP": "127.96.0.12", "ports": [{"port": 80}]}
        }));
        let ep = endpoints(json!({
            "metadata": {"name": "api", "namespace": "default"},
            "subsets": [{"addresses": [{"ip": "127.1.0.2"}], "ports": [{"port": 3000}]}]
        }));
        let table = RoutingTable::from_objects([&svc, &other], [&ep]);
        assert_eq!(
            table.backends(addr("127.96.0.11:8080")),
            Some(&[addr("127.1.0.2:3000")][..])
        );
        assert_eq!(table.backends(addr("127.96.0.12:80")), Some(&[][..]));
    }

    #[test]
    fn skips_headless_external_and_endpoints_of_other_namespaces() {
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
            "spec": {"clusterIP": "127.96.0.13", "ports": [{"port": 80}]}
        }));
        let wrong_ns = endpoints(json!({
            "metadata": {"name": "web", "namespace": "b"},
            "subsets": [{"addresses": [{"ip": "127.1.0.2"}], "ports": [{"port": 80}]}]
        }));
        let table =
            RoutingTable::from_objects([&headless, &external, &unallocated, &svc], [&wrong_ns]);
        assert_eq!(
            table.frontends().collect::<Vec<_>>(),
            vec![addr("127.96.0.13:80")]
        );
        assert_eq!(table.backends(addr("127.96.0.13:80")), Some(&[][..]));
    }

    #[test]
    fn ambiguous_unnamed_ports_match_nothing() {
        let svc = service(json!({
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"clusterIP": "127.96.0.14", "ports": [{"name": "http", "port": 80}]}
        }));
        let ep = endpoints(json!({
            "metadata": {"name": "web", "namespace": "default"},
            "subsets": [{"addresses": [{"ip": "127.1.0.2"}, {"ip": "not-an-ip"}],
                         "ports": [{"name": "a", "port": 1}, {"name": "b", "port": 2}]}]
        }));
        let table = RoutingTable::from_objects([&svc], [&ep]);
        assert_eq!(table.backends(addr("127.96.0.14:80")), Some(&[][..]));
    }
}
