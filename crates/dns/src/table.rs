//! The names under the cluster domain, as CoreDNS's `kubernetes` plugin answers them (its
//! `pods insecure` mode, kubeadm's Corefile):
//!
//! - `SVC.NS.svc.<domain>`: a Service's cluster IPs; for a headless Service (`clusterIP: None`) the
//!   addresses of its ready endpoints (all of them with `publishNotReadyAddresses`), none ready
//!   being NXDOMAIN; for an `ExternalName` Service a CNAME to the external name;
//! - `ENDPOINT.SVC.NS.svc.<domain>`: one endpoint of a Service, named by its `hostname` (a
//!   StatefulSet's pods, or any pod with `hostname` and `subdomain` = the Service) or else by its
//!   address with dashes (`10-1-2-3`);
//! - `A-B-C-D.NS.pod.<domain>`: the address the name spells (not checked against pods, as
//!   `pods insecure`).
//!
//! Every other name under the domain does not exist.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointSlice};

use crate::{canonical, is_under};

/// The label naming the Service an EndpointSlice belongs to.
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// How many CNAMEs (ExternalName Services pointing at cluster names) a lookup follows.
const MAX_ALIASES: usize = 8;

/// The cluster's names at one moment. Pure data, built by [`NameTable::from_objects`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NameTable {
    domain: String,
    records: BTreeMap<String, Record>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Record {
    /// A (and AAAA) records.
    Addresses(Vec<IpAddr>),
    /// A CNAME (an ExternalName Service), canonical.
    Alias(String),
}

/// What the table says of one name under the cluster domain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Lookup {
    /// These addresses.
    Addresses(Vec<IpAddr>),
    /// A name outside the cluster domain (through an ExternalName): the host's resolver answers.
    External(String),
    /// No such name.
    NotFound,
}

impl NameTable {
    /// A table without names (everything under `domain` is NXDOMAIN).
    pub fn new(domain: &str) -> Self {
        Self {
            domain: canonical(domain),
            records: BTreeMap::new(),
        }
    }

    /// The table of `services` and the EndpointSlices among `slices` labelled
    /// `kubernetes.io/service-name` with a Service's name, in its namespace.
    pub fn from_objects<'a>(
        domain: &str,
        services: impl IntoIterator<Item = &'a Service>,
        slices: impl IntoIterator<Item = &'a EndpointSlice>,
    ) -> Self {
        let mut table = Self::new(domain);
        // (namespace, service) → its slices.
        let mut by_service: BTreeMap<(&str, &str), Vec<&EndpointSlice>> = BTreeMap::new();
        for slice in slices {
            let namespace = slice.metadata.namespace.as_deref().unwrap_or_default();
            let Some(service) = slice
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(SERVICE_NAME_LABEL))
            else {
                continue;
            };
            by_service
                .entry((namespace, service.as_str()))
                .or_default()
                .push(slice);
        }
        let mut addresses: BTreeMap<String, BTreeSet<IpAddr>> = BTreeMap::new();
        for service in services {
            let (Some(namespace), Some(name)) = (
                service.metadata.namespace.as_deref(),
                service.metadata.name.as_deref(),
            ) else {
                continue;
            };
            let Some(spec) = service.spec.as_ref() else {
                continue;
            };
            let fqdn = format!("{name}.{namespace}.svc.{}", table.domain).to_ascii_lowercase();
            if spec.type_.as_deref() == Some("ExternalName") {
                if let Some(external) = spec.external_name.as_deref().filter(|n| !n.is_empty()) {
                    table
                        .records
                        .insert(fqdn, Record::Alias(canonical(external)));
                }
                continue;
            }
            let publish_not_ready = spec.publish_not_ready_addresses == Some(true);
            let mut ready = BTreeSet::new();
            for slice in by_service.get(&(namespace, name)).into_iter().flatten() {
                for endpoint in slice.endpoints.iter().flatten() {
                    if !(publish_not_ready || is_ready(endpoint)) {
                        continue;
                    }
                    let ips: Vec<IpAddr> = endpoint
                        .addresses
                        .iter()
                        .filter_map(|a| a.parse().ok())
                        .collect();
                    for ip in &ips {
                        let label = endpoint
                            .hostname
                            .as_deref()
                            .filter(|h| !h.is_empty())
                            .map_or_else(|| dashed(*ip), str::to_ascii_lowercase);
                        addresses
                            .entry(format!("{label}.{fqdn}"))
                            .or_default()
                            .insert(*ip);
                    }
                    ready.extend(ips);
                }
            }
            let cluster_ips = cluster_ips(service);
            if cluster_ips.is_empty() {
                // Headless: the Service's name answers its ready endpoints; with none, it does not exist.
                if !ready.is_empty() {
                    addresses.entry(fqdn).or_default().extend(ready);
                }
            } else {
                addresses.entry(fqdn).or_default().extend(cluster_ips);
            }
        }
        for (name, ips) in addresses {
            table
                .records
                .entry(name)
                .or_insert_with(|| Record::Addresses(ips.into_iter().collect()));
        }
        table
    }

    /// The cluster domain (canonical: lower case, no trailing dot).
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// Whether `name` (canonical) is the cluster domain or under it: the table's to answer.
    pub(crate) fn owns(&self, name: &str) -> bool {
        is_under(name, &self.domain)
    }

    /// What the table answers for `name` (canonical, under the cluster domain), CNAMEs followed.
    pub(crate) fn lookup(&self, name: &str) -> Lookup {
        let mut name = name.to_owned();
        for _ in 0..=MAX_ALIASES {
            if !self.owns(&name) {
                return Lookup::External(name);
            }
            match self.records.get(&name) {
                Some(Record::Addresses(ips)) => return Lookup::Addresses(ips.clone()),
                Some(Record::Alias(target)) => name = target.clone(),
                None => {
                    return self
                        .pod_name(&name)
                        .map_or(Lookup::NotFound, |ip| Lookup::Addresses(vec![ip]));
                }
            }
        }
        Lookup::NotFound
    }

    /// `A-B-C-D.NS.pod.<domain>`'s address.
    fn pod_name(&self, name: &str) -> Option<IpAddr> {
        let head = name.strip_suffix(&self.domain)?.strip_suffix(".pod.")?;
        let (dashed, namespace) = head.split_once('.')?;
        if namespace.is_empty() || namespace.contains('.') {
            return None;
        }
        if let Ok(v4) = dashed.replace('-', ".").parse::<Ipv4Addr>() {
            return Some(IpAddr::V4(v4));
        }
        dashed.replace('-', ":").parse().ok()
    }
}

/// An endpoint is ready when its `ready` condition is true or unset (the API's "nil means ready").
fn is_ready(endpoint: &Endpoint) -> bool {
    endpoint
        .conditions
        .as_ref()
        .and_then(|c| c.ready)
        .unwrap_or(true)
}

/// A Service's cluster IPs (`clusterIPs`, else `clusterIP`); none for a headless Service.
fn cluster_ips(service: &Service) -> Vec<IpAddr> {
    let Some(spec) = service.spec.as_ref() else {
        return Vec::new();
    };
    let ips: Vec<IpAddr> = spec
        .cluster_ips
        .iter()
        .flatten()
        .filter_map(|ip| ip.parse().ok())
        .collect();
    if !ips.is_empty() {
        return ips;
    }
    spec.cluster_ip
        .as_deref()
        .and_then(|ip| ip.parse().ok())
        .into_iter()
        .collect()
}

/// CoreDNS's name of an endpoint without a hostname: its address with dashes.
fn dashed(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string().replace('.', "-"),
        IpAddr::V6(v6) => v6.to_string().replace(':', "-"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn service(namespace: &str, name: &str, spec: serde_json::Value) -> Service {
        serde_json::from_value(json!({
            "metadata": {"namespace": namespace, "name": name}, "spec": spec,
        }))
        .expect("service")
    }

    fn slice(namespace: &str, service: &str, endpoints: serde_json::Value) -> EndpointSlice {
        serde_json::from_value(json!({
            "metadata": {"namespace": namespace, "name": format!("{service}-x"),
                         "labels": {SERVICE_NAME_LABEL: service}},
            "addressType": "IPv4",
            "endpoints": endpoints,
        }))
        .expect("slice")
    }

    fn ips(list: &[&str]) -> Lookup {
        Lookup::Addresses(list.iter().map(|s| s.parse().expect("ip")).collect())
    }

    fn table() -> NameTable {
        let services = [
            service(
                "other",
                "web",
                json!({"clusterIP": "10.96.0.7", "clusterIPs": ["10.96.0.7"]}),
            ),
            service("db", "pg", json!({"clusterIP": "None"})),
            service("db", "empty", json!({"clusterIP": "None"})),
            service(
                "db",
                "eager",
                json!({"clusterIP": "None", "publishNotReadyAddresses": true}),
            ),
            service(
                "db",
                "ext",
                json!({"type": "ExternalName", "externalName": "Example.COM."}),
            ),
            service(
                "db",
                "alias",
                json!({"type": "ExternalName", "externalName": "web.other.svc.cluster.local"}),
            ),
            service(
                "db",
                "loop",
                json!({"type": "ExternalName", "externalName": "loop.db.svc.cluster.local"}),
            ),
        ];
        let slices = [
            slice("other", "web", json!([{"addresses": ["10.0.0.5"]}])),
            slice(
                "db",
                "pg",
                json!([
                    {"addresses": ["10.0.0.2"], "hostname": "pg-0", "conditions": {"ready": true}},
                    {"addresses": ["10.0.0.1"], "hostname": "pg-1"},
                    {"addresses": ["10.0.0.3"], "hostname": "pg-2", "conditions": {"ready": false}},
                    {"addresses": ["10.0.0.4"], "conditions": {"ready": true}},
                ]),
            ),
            slice(
                "db",
                "empty",
                json!([{"addresses": ["10.0.0.9"], "conditions": {"ready": false}}]),
            ),
            slice(
                "db",
                "eager",
                json!([{"addresses": ["10.0.0.8"], "conditions": {"ready": false}}]),
            ),
            // A slice of another namespace's Service of the same name is not pg's.
            slice("other", "pg", json!([{"addresses": ["10.0.0.99"]}])),
        ];
        NameTable::from_objects("Cluster.Local.", &services, &slices)
    }

    #[test]
    fn a_service_answers_its_cluster_ip() {
        let t = table();
        assert_eq!(t.domain(), "cluster.local");
        assert_eq!(t.lookup("web.other.svc.cluster.local"), ips(&["10.96.0.7"]));
        // Its endpoints have names too (by address), as in CoreDNS.
        assert_eq!(
            t.lookup("10-0-0-5.web.other.svc.cluster.local"),
            ips(&["10.0.0.5"])
        );
    }

    #[test]
    fn a_headless_service_answers_its_ready_endpoints() {
        let t = table();
        assert_eq!(
            t.lookup("pg.db.svc.cluster.local"),
            ips(&["10.0.0.1", "10.0.0.2", "10.0.0.4"])
        );
        assert_eq!(t.lookup("pg-0.pg.db.svc.cluster.local"), ips(&["10.0.0.2"]));
        assert_eq!(t.lookup("pg-1.pg.db.svc.cluster.local"), ips(&["10.0.0.1"]));
        assert_eq!(
            t.lookup("10-0-0-4.pg.db.svc.cluster.local"),
            ips(&["10.0.0.4"])
        );
        // Not ready: no name.
        assert_eq!(t.lookup("pg-2.pg.db.svc.cluster.local"), Lookup::NotFound);
        // No ready endpoint at all: the name does not exist.
        assert_eq!(t.lookup("empty.db.svc.cluster.local"), Lookup::NotFound);
        // publishNotReadyAddresses: every endpoint.
        assert_eq!(t.lookup("eager.db.svc.cluster.local"), ips(&["10.0.0.8"]));
    }

    #[test]
    fn external_names_are_cnames() {
        let t = table();
        assert_eq!(
            t.lookup("ext.db.svc.cluster.local"),
            Lookup::External("example.com".into())
        );
        // A CNAME to a cluster name is answered in the cluster.
        assert_eq!(t.lookup("alias.db.svc.cluster.local"), ips(&["10.96.0.7"]));
        assert_eq!(t.lookup("loop.db.svc.cluster.local"), Lookup::NotFound);
    }

    #[test]
    fn pod_names_spell_their_address_and_the_rest_does_not_exist() {
        let t = table();
        assert_eq!(
            t.lookup("10-1-2-3.any.pod.cluster.local"),
            ips(&["10.1.2.3"])
        );
        assert_eq!(t.lookup("fd00--1.any.pod.cluster.local"), ips(&["fd00::1"]));
        assert_eq!(t.lookup("10-1-2.any.pod.cluster.local"), Lookup::NotFound);
        for name in [
            "cluster.local",
            "svc.cluster.local",
            "other.svc.cluster.local",
            "nope.other.svc.cluster.local",
            "web.nope.svc.cluster.local",
            "web.other.cluster.local",
        ] {
            assert_eq!(t.lookup(name), Lookup::NotFound, "{name}");
        }
        assert!(!t.owns("example.com"));
        assert!(t.owns("anything.cluster.local"));
    }
}
