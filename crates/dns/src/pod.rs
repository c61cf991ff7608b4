//! One pod's resolver: what the kubelet writes into its `/etc/resolv.conf` and `/etc/hosts`, and the
//! rules glibc/musl's resolver follows with them.
//!
//! - `dnsPolicy: ClusterFirst` (the default): `search NS.svc.<d> svc.<d> <d>` (then `dnsConfig.searches`),
//!   `options ndots:5` (or `dnsConfig.options`' `ndots`). A name with fewer dots than `ndots` is tried
//!   with each search domain first, then as it is; one with at least `ndots` dots as it is first; one
//!   with a trailing dot only as it is. A candidate under the cluster domain is answered by the
//!   [`NameTable`] (NXDOMAIN when it has no such name, and the next candidate is tried), any other
//!   by the host's resolver. A `hostNetwork` pod's ClusterFirst is `Default`, as the kubelet's.
//! - `ClusterFirstWithHostNet`: ClusterFirst.
//! - `Default`: the node's resolution: the host's resolver for every name.
//! - `None`: only `dnsConfig`: its searches and `ndots` (default 1) over the cluster table and the
//!   host's resolver. Its `nameservers` cannot be honoured (there is no DNS server to ask).
//! - The hosts file, looked up first under every policy, with the name as it is: `localhost`, the
//!   pod's hostname (`spec.hostname`, else its name) and, with `spec.subdomain`, its FQDN
//!   `HOSTNAME.SUBDOMAIN.NS.svc.<d>`, both its IP; and the `hostAliases`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use k8s_openapi::api::core::v1::Pod;

use crate::table::{Lookup, NameTable};
use crate::{Resolution, canonical};

/// The kubelet's `ndots` for ClusterFirst pods.
const CLUSTER_NDOTS: usize = 5;
/// The resolver's default `ndots`.
const DEFAULT_NDOTS: usize = 1;
/// glibc caps `ndots` at 15.
const MAX_NDOTS: usize = 15;
/// The kubelet truncates a pod's hostname to 63 characters.
const MAX_HOSTNAME: usize = 63;

/// A pod's `dnsPolicy`, as the kubelet applies it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DnsPolicy {
    /// Cluster names first (`ClusterFirst`, `ClusterFirstWithHostNet`).
    ClusterFirst,
    /// The node's resolution only (`Default`, and a `hostNetwork` pod's `ClusterFirst`).
    Default,
    /// Only the pod's `dnsConfig` (`None`).
    None,
}

/// How one pod's name lookups are answered. Built once per pod ([`PodResolver::for_pod`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodResolver {
    policy: DnsPolicy,
    /// The search list, canonical.
    search: Vec<String>,
    ndots: usize,
    /// The hosts file: name (canonical) → addresses, in file order.
    hosts: Vec<(String, Vec<IpAddr>)>,
}

impl PodResolver {
    /// The resolver of `pod`, whose IP is `pod_ip`, in a cluster whose domain is `domain`.
    pub fn for_pod(pod: &Pod, pod_ip: Option<IpAddr>, domain: &str) -> Self {
        let domain = canonical(domain);
        let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
        let spec = pod.spec.as_ref();
        let host_network = spec.and_then(|s| s.host_network).unwrap_or(false);
        let policy = match spec.and_then(|s| s.dns_policy.as_deref()) {
            Some("Default") => DnsPolicy::Default,
            Some("None") => DnsPolicy::None,
            Some("ClusterFirstWithHostNet") => DnsPolicy::ClusterFirst,
            _ if host_network => DnsPolicy::Default,
            _ => DnsPolicy::ClusterFirst,
        };
        let config = spec.and_then(|s| s.dns_config.as_ref());
        let mut search = match policy {
            DnsPolicy::ClusterFirst => vec![
                format!("{namespace}.svc.{domain}").to_ascii_lowercase(),
                format!("svc.{domain}"),
                domain.clone(),
            ],
            DnsPolicy::Default | DnsPolicy::None => Vec::new(),
        };
        for extra in config
            .and_then(|c| c.searches.as_ref())
            .into_iter()
            .flatten()
        {
            let extra = canonical(extra);
            if !extra.is_empty() && !search.contains(&extra) {
                search.push(extra);
            }
        }
        let mut ndots = match policy {
            DnsPolicy::ClusterFirst => CLUSTER_NDOTS,
            DnsPolicy::Default | DnsPolicy::None => DEFAULT_NDOTS,
        };
        // The pod's options override the kubelet's (the last ndots wins, as in resolv.conf).
        for option in config
            .and_then(|c| c.options.as_ref())
            .into_iter()
            .flatten()
        {
            if option.name.as_deref() == Some("ndots")
                && let Some(n) = option
                    .value
                    .as_deref()
                    .and_then(|v| v.parse::<usize>().ok())
            {
                ndots = n.min(MAX_NDOTS);
            }
        }
        Self {
            policy,
            search,
            ndots,
            hosts: hosts_file(pod, pod_ip, namespace, &domain),
        }
    }

    /// The pod's `dnsPolicy` as applied.
    pub fn policy(&self) -> DnsPolicy {
        self.policy
    }

    /// The search list (what the kubelet writes after `search`).
    pub fn search(&self) -> &[String] {
        &self.search
    }

    /// The `ndots` option.
    pub fn ndots(&self) -> usize {
        self.ndots
    }

    /// What a lookup of `name` by a guest of this pod comes to, with the cluster's names in `table`.
    pub fn resolve(&self, table: &NameTable, name: &str) -> Resolution {
        let absolute = name.ends_with('.');
        let name = canonical(name);
        if name.is_empty() {
            return Resolution::NotFound;
        }
        if let Ok(ip) = name.parse::<IpAddr>() {
            return Resolution::Addresses(vec![ip]);
        }
        if let Some((_, ips)) = self.hosts.iter().find(|(host, _)| *host == name) {
            return Resolution::Addresses(ips.clone());
        }
        if self.policy == DnsPolicy::Default {
            return Resolution::Host {
                names: vec![name],
                otherwise: Vec::new(),
            };
        }
        let mut host = Vec::new();
        for candidate in self.candidates(&name, absolute) {
            let lookup = if table.owns(&candidate) {
                table.lookup(&candidate)
            } else {
                Lookup::External(candidate)
            };
            match lookup {
                Lookup::Addresses(ips) if host.is_empty() => return Resolution::Addresses(ips),
                Lookup::Addresses(ips) => {
                    return Resolution::Host {
                        names: host,
                        otherwise: ips,
                    };
                }
                Lookup::External(name) => {
                    if !host.contains(&name) {
                        host.push(name);
                    }
                }
                Lookup::NotFound => {}
            }
        }
        if host.is_empty() {
            Resolution::NotFound
        } else {
            Resolution::Host {
                names: host,
                otherwise: Vec::new(),
            }
        }
    }

    /// The names the resolver tries for `name` (canonical), in order.
    fn candidates(&self, name: &str, absolute: bool) -> Vec<String> {
        if absolute {
            return vec![name.to_owned()];
        }
        let searched = self.search.iter().map(|domain| format!("{name}.{domain}"));
        if name.matches('.').count() >= self.ndots {
            std::iter::once(name.to_owned()).chain(searched).collect()
        } else {
            searched.chain(std::iter::once(name.to_owned())).collect()
        }
    }
}

/// The kubelet's managed hosts file of `pod`: localhost, the pod's own names, its `hostAliases`.
fn hosts_file(
    pod: &Pod,
    pod_ip: Option<IpAddr>,
    namespace: &str,
    domain: &str,
) -> Vec<(String, Vec<IpAddr>)> {
    let mut hosts: Vec<(String, Vec<IpAddr>)> = Vec::new();
    let mut add = |name: &str, ip: IpAddr| {
        let name = canonical(name);
        if name.is_empty() {
            return;
        }
        match hosts.iter_mut().find(|(n, _)| *n == name) {
            Some((_, ips)) if !ips.contains(&ip) => ips.push(ip),
            Some(_) => {}
            None => hosts.push((name, vec![ip])),
        }
    };
    add("localhost", IpAddr::V4(Ipv4Addr::LOCALHOST));
    add("localhost", IpAddr::V6(Ipv6Addr::LOCALHOST));
    for name in ["ip6-localhost", "ip6-loopback"] {
        add(name, IpAddr::V6(Ipv6Addr::LOCALHOST));
    }
    let spec = pod.spec.as_ref();
    if let Some(ip) = pod_ip {
        let hostname = spec
            .and_then(|s| s.hostname.as_deref())
            .filter(|h| !h.is_empty())
            .map(str::to_owned)
            .or_else(|| {
                let name = pod.metadata.name.as_deref()?;
                let mut short: String = name.chars().take(MAX_HOSTNAME).collect();
                while short.ends_with(['-', '.']) {
                    short.pop();
                }
                Some(short)
            });
        if let Some(hostname) = hostname {
            if let Some(subdomain) = spec
                .and_then(|s| s.subdomain.as_deref())
                .filter(|s| !s.is_empty())
            {
                add(
                    &format!("{hostname}.{subdomain}.{namespace}.svc.{domain}"),
                    ip,
                );
            }
            add(&hostname, ip);
        }
    }
    for alias in spec
        .and_then(|s| s.host_aliases.as_ref())
        .into_iter()
        .flatten()
    {
        let Some(ip) = alias.ip.parse::<IpAddr>().ok() else {
            continue;
        };
        for name in alias.hostnames.iter().flatten() {
            add(name, ip);
        }
    }
    hosts
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"namespace": "shop", "name": "client"}, "spec": spec,
        }))
        .expect("pod")
    }

    fn table() -> NameTable {
        let services: Vec<k8s_openapi::api::core::v1::Service> = [
            json!({"metadata": {"namespace": "other", "name": "web"}, "spec": {"clusterIP": "10.96.0.7"}}),
            json!({"metadata": {"namespace": "shop", "name": "web"}, "spec": {"clusterIP": "10.96.0.8"}}),
            json!({"metadata": {"namespace": "shop", "name": "ext"},
                   "spec": {"type": "ExternalName", "externalName": "example.com"}}),
        ]
        .into_iter()
        .map(|v| serde_json::from_value(v).expect("service"))
        .collect();
        NameTable::from_objects("cluster.local", &services, [])
    }

    fn addresses(list: &[&str]) -> Resolution {
        Resolution::Addresses(list.iter().map(|s| s.parse().expect("ip")).collect())
    }

    fn host(names: &[&str]) -> Resolution {
        Resolution::Host {
            names: names.iter().map(|s| (*s).to_owned()).collect(),
            otherwise: Vec::new(),
        }
    }

    #[test]
    fn cluster_first_searches_the_pods_namespace_then_the_cluster() {
        let r = PodResolver::for_pod(&pod(json!({})), None, "cluster.local");
        assert_eq!(r.policy(), DnsPolicy::ClusterFirst);
        assert_eq!(
            r.search(),
            [
                "shop.svc.cluster.local",
                "svc.cluster.local",
                "cluster.local"
            ]
        );
        assert_eq!(r.ndots(), 5);
        let t = table();
        // The pod's own namespace first.
        assert_eq!(r.resolve(&t, "web"), addresses(&["10.96.0.8"]));
        assert_eq!(r.resolve(&t, "WEB"), addresses(&["10.96.0.8"]));
        for name in [
            "web.other",
            "web.other.svc",
            "web.other.svc.cluster.local",
            "web.other.svc.cluster.local.",
        ] {
            assert_eq!(r.resolve(&t, name), addresses(&["10.96.0.7"]), "{name}");
        }
        // Under the cluster domain and absent: NXDOMAIN, the host never asked.
        assert_eq!(
            r.resolve(&t, "nope.other.svc.cluster.local"),
            Resolution::NotFound
        );
        assert_eq!(
            r.resolve(&t, "nope.other.svc.cluster.local."),
            Resolution::NotFound
        );
        // Other names: the search list (all cluster names, none exists), then the host.
        assert_eq!(r.resolve(&t, "example.com"), host(&["example.com"]));
        assert_eq!(r.resolve(&t, "nope"), host(&["nope"]));
        // An ExternalName is a CNAME to a host name; should that not resolve, the search goes on.
        assert_eq!(r.resolve(&t, "ext"), host(&["example.com", "ext"]));
        // Addresses are themselves.
        assert_eq!(r.resolve(&t, "10.1.2.3"), addresses(&["10.1.2.3"]));
    }

    #[test]
    fn ndots_decides_whether_the_name_or_the_search_list_comes_first() {
        let r = PodResolver::for_pod(
            &pod(
                json!({"dnsConfig": {"options": [{"name": "ndots", "value": "1"}],
                                      "searches": ["corp.example"]}}),
            ),
            None,
            "cluster.local",
        );
        assert_eq!(r.ndots(), 1);
        assert_eq!(
            r.search(),
            [
                "shop.svc.cluster.local",
                "svc.cluster.local",
                "cluster.local",
                "corp.example"
            ]
        );
        let t = table();
        // One dot: the name as it is (the host) first, then the search list reaches the Service.
        assert_eq!(
            r.resolve(&t, "web.other"),
            Resolution::Host {
                names: vec!["web.other".into()],
                otherwise: vec!["10.96.0.7".parse().expect("ip")],
            }
        );
        // No dot: the search list first; `web` is found in the pod's namespace.
        assert_eq!(r.resolve(&t, "web"), addresses(&["10.96.0.8"]));
        assert_eq!(r.resolve(&t, "nope"), host(&["nope.corp.example", "nope"]));
    }

    #[test]
    fn default_policy_asks_the_host_and_none_uses_only_the_dns_config() {
        let t = table();
        let default =
            PodResolver::for_pod(&pod(json!({"dnsPolicy": "Default"})), None, "cluster.local");
        assert_eq!(default.resolve(&t, "web"), host(&["web"]));
        assert_eq!(
            default.resolve(&t, "web.other.svc.cluster.local"),
            host(&["web.other.svc.cluster.local"])
        );
        let host_network =
            PodResolver::for_pod(&pod(json!({"hostNetwork": true})), None, "cluster.local");
        assert_eq!(host_network.policy(), DnsPolicy::Default);
        let with_host_net = PodResolver::for_pod(
            &pod(json!({"hostNetwork": true, "dnsPolicy": "ClusterFirstWithHostNet"})),
            None,
            "cluster.local",
        );
        assert_eq!(with_host_net.resolve(&t, "web"), addresses(&["10.96.0.8"]));

        let none = PodResolver::for_pod(
            &pod(
                json!({"dnsPolicy": "None", "dnsConfig": {"searches": ["other.svc.cluster.local"]}}),
            ),
            None,
            "cluster.local",
        );
        assert_eq!(none.ndots(), 1);
        assert_eq!(none.resolve(&t, "web"), addresses(&["10.96.0.7"]));
        assert_eq!(
            none.resolve(&t, "web.shop.svc.cluster.local"),
            addresses(&["10.96.0.8"])
        );
    }

    #[test]
    fn the_hosts_file_answers_first() {
        let t = table();
        let r = PodResolver::for_pod(
            &pod(json!({"hostname": "pg-0", "subdomain": "pg",
                        "hostAliases": [{"ip": "10.9.9.9", "hostnames": ["web", "db.local"]},
                                        {"ip": "not-an-ip", "hostnames": ["bad"]}]})),
            Some("127.1.0.5".parse().expect("ip")),
            "cluster.local",
        );
        assert_eq!(r.resolve(&t, "pg-0"), addresses(&["127.1.0.5"]));
        assert_eq!(
            r.resolve(&t, "pg-0.pg.shop.svc.cluster.local"),
            addresses(&["127.1.0.5"])
        );
        // hostAliases win over the cluster's names, as /etc/hosts over DNS.
        assert_eq!(r.resolve(&t, "web"), addresses(&["10.9.9.9"]));
        assert_eq!(r.resolve(&t, "db.local."), addresses(&["10.9.9.9"]));
        assert_eq!(r.resolve(&t, "bad"), host(&["bad"]));
        assert_eq!(r.resolve(&t, "localhost"), addresses(&["127.0.0.1", "::1"]));
        // Without spec.hostname the pod's name is its hostname.
        let named = PodResolver::for_pod(
            &pod(json!({})),
            Some("127.1.0.6".parse().expect("ip")),
            "cluster.local",
        );
        assert_eq!(named.resolve(&t, "client"), addresses(&["127.1.0.6"]));
    }
}
