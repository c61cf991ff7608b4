//! The Services' environment variables, as the kubelet gives every container: `<NAME>_SERVICE_HOST` and
//! `<NAME>_SERVICE_PORT` (plus `<NAME>_SERVICE_PORT_<PORT NAME>` for named ports) and Docker's link variables
//! (`<NAME>_PORT=tcp://IP:PORT`, `<NAME>_PORT_<PORT>_<PROTO>{,_PROTO,_PORT,_ADDR}`), for the Services of the
//! pod's namespace with a cluster IP when `enableServiceLinks` is not false, and for the API server's own
//! `kubernetes` Service in `default` always — how a client library in a pod finds the API
//! (`KUBERNETES_SERVICE_HOST`, `KUBERNETES_SERVICE_PORT`).
//!
//! [`ServiceEnv`] keeps the node's one watch of Services (the kubelet's service lister); [`service_env`] is
//! the pure function over them.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt as _, watcher};
use tokio_util::sync::CancellationToken;

/// The namespace and name of the API server's Service, whose variables every pod gets.
const MASTER_SERVICE: (&str, &str) = ("default", "kubernetes");

/// How long a container start waits for the first list of Services before going on without them.
const SYNC_TIMEOUT: Duration = Duration::from_secs(5);

/// The node's cache of every Service.
#[derive(Clone)]
pub struct ServiceEnv {
    store: Store<Service>,
}

impl ServiceEnv {
    /// Starts the watch of Services with `client`; it ends with `stop`.
    pub fn start(client: kube::Client, stop: CancellationToken) -> Self {
        let (store, writer) = reflector::store();
        let api = kube::Api::<Service>::all(client);
        let stream = reflector::reflector(writer, watcher(api, watcher::Config::default()))
            .default_backoff()
            .applied_objects();
        tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    next = stream.next() => match next {
                        Some(Ok(_)) => {}
                        Some(Err(error)) => tracing::warn!(%error, "watch of Services"),
                        None => return,
                    },
                }
            }
        });
        Self { store }
    }

    /// The variables for `pod` from the Services cached now; waits for the first list (a little), as the
    /// kubelet does not start containers before its Service informer has synced.
    pub async fn for_pod(&self, pod: &Pod) -> Vec<(String, String)> {
        if tokio::time::timeout(SYNC_TIMEOUT, self.store.wait_until_ready())
            .await
            .is_err()
        {
            tracing::warn!("Services not listed yet: the container starts without their variables");
        }
        let services = self.store.state();
        service_env(pod, services.iter().map(AsRef::as_ref))
    }
}

/// The Service variables of `pod`, sorted by name.
pub fn service_env<'a>(
    pod: &Pod,
    services: impl IntoIterator<Item = &'a Service>,
) -> Vec<(String, String)> {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let links = pod
        .spec
        .as_ref()
        .and_then(|s| s.enable_service_links)
        .unwrap_or(true);
    // By name: the pod's namespace's Service wins over the master Service of the same name.
    let mut chosen: BTreeMap<&str, &Service> = BTreeMap::new();
    for service in services {
        let ns = service.metadata.namespace.as_deref().unwrap_or_default();
        let Some(name) = service.metadata.name.as_deref() else {
            continue;
        };
        if cluster_ip(service).is_none() {
            continue;
        }
        if (ns, name) == MASTER_SERVICE {
            chosen.entry(name).or_insert(service);
        } else if ns == namespace && links {
            chosen.insert(name, service);
        }
    }
    let mut vars = Vec::new();
    for (name, service) in chosen {
        add_service(&mut vars, name, service);
    }
    vars.sort();
    vars
}

/// `spec.clusterIP` when it is an address (not `None`, not empty).
fn cluster_ip(service: &Service) -> Option<IpAddr> {
    service.spec.as_ref()?.cluster_ip.as_deref()?.parse().ok()
}

fn add_service(vars: &mut Vec<(String, String)>, name: &str, service: &Service) {
    let (Some(ip), Some(spec)) = (cluster_ip(service), service.spec.as_ref()) else {
        return;
    };
    let ports = spec.ports.as_deref().unwrap_or_default();
    let Some(first) = ports.first() else {
        return;
    };
    let prefix = variable_name(name);
    vars.push((format!("{prefix}_SERVICE_HOST"), ip.to_string()));
    vars.push((format!("{prefix}_SERVICE_PORT"), first.port.to_string()));
    for port in ports {
        if let Some(port_name) = port.name.as_deref().filter(|n| !n.is_empty()) {
            vars.push((
                format!("{prefix}_SERVICE_PORT_{}", variable_name(port_name)),
                port.port.to_string(),
            ));
        }
    }
    for (i, port) in ports.iter().enumerate() {
        let protocol = port.protocol.as_deref().unwrap_or("TCP");
        let lower = protocol.to_ascii_lowercase();
        let url = format!(
            "{lower}://{}",
            std::net::SocketAddr::new(ip, u16::try_from(port.port).unwrap_or(0))
        );
        if i == 0 {
            vars.push((format!("{prefix}_PORT"), url.clone()));
        }
        let link = format!(
            "{prefix}_PORT_{}_{}",
            port.port,
            protocol.to_ascii_uppercase()
        );
        vars.push((format!("{link}_PROTO"), lower));
        vars.push((format!("{link}_PORT"), port.port.to_string()));
        vars.push((format!("{link}_ADDR"), ip.to_string()));
        vars.push((link, url));
    }
}

/// kube's `makeEnvVariableName`: upper case, `-` as `_`.
fn variable_name(name: &str) -> String {
    name.to_ascii_uppercase().replace('-', "_")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn service(namespace: &str, name: &str, ip: &str, ports: serde_json::Value) -> Service {
        serde_json::from_value(json!({
            "metadata": {"namespace": namespace, "name": name},
            "spec": {"clusterIP": ip, "ports": ports},
        }))
        .expect("service")
    }

    fn pod(namespace: &str, links: Option<bool>) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"namespace": namespace, "name": "p"},
            "spec": {"containers": [], "enableServiceLinks": links},
        }))
        .expect("pod")
    }

    fn services() -> Vec<Service> {
        vec![
            service(
                "default",
                "kubernetes",
                "10.96.0.1",
                json!([{"name": "https", "port": 443, "protocol": "TCP"}]),
            ),
            service(
                "shop",
                "web-api",
                "10.96.0.7",
                json!([{"name": "http", "port": 80}, {"name": "dns", "port": 53, "protocol": "UDP"}]),
            ),
            service("shop", "headless", "None", json!([{"port": 80}])),
            service("other", "elsewhere", "10.96.0.9", json!([{"port": 80}])),
        ]
    }

    fn get<'a>(vars: &'a [(String, String)], name: &str) -> Option<&'a str> {
        vars.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn the_kubelets_variables_for_the_namespaces_services_and_the_api_server() {
        let vars = service_env(&pod("shop", None), &services());
        let expected = [
            ("KUBERNETES_PORT", "tcp://10.96.0.1:443"),
            ("KUBERNETES_PORT_443_TCP", "tcp://10.96.0.1:443"),
            ("KUBERNETES_PORT_443_TCP_ADDR", "10.96.0.1"),
            ("KUBERNETES_PORT_443_TCP_PORT", "443"),
            ("KUBERNETES_PORT_443_TCP_PROTO", "tcp"),
            ("KUBERNETES_SERVICE_HOST", "10.96.0.1"),
            ("KUBERNETES_SERVICE_PORT", "443"),
            ("KUBERNETES_SERVICE_PORT_HTTPS", "443"),
            ("WEB_API_PORT", "tcp://10.96.0.7:80"),
            ("WEB_API_PORT_53_UDP", "udp://10.96.0.7:53"),
            ("WEB_API_PORT_53_UDP_ADDR", "10.96.0.7"),
            ("WEB_API_PORT_53_UDP_PORT", "53"),
            ("WEB_API_PORT_53_UDP_PROTO", "udp"),
            ("WEB_API_PORT_80_TCP", "tcp://10.96.0.7:80"),
            ("WEB_API_PORT_80_TCP_ADDR", "10.96.0.7"),
            ("WEB_API_PORT_80_TCP_PORT", "80"),
            ("WEB_API_PORT_80_TCP_PROTO", "tcp"),
            ("WEB_API_SERVICE_HOST", "10.96.0.7"),
            ("WEB_API_SERVICE_PORT", "80"),
            ("WEB_API_SERVICE_PORT_DNS", "53"),
            ("WEB_API_SERVICE_PORT_HTTP", "80"),
        ];
        let expected: Vec<(String, String)> = expected
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        assert_eq!(vars, expected);
    }

    #[test]
    fn without_service_links_only_the_api_server() {
        let vars = service_env(&pod("shop", Some(false)), &services());
        assert_eq!(get(&vars, "KUBERNETES_SERVICE_HOST"), Some("10.96.0.1"));
        assert_eq!(get(&vars, "WEB_API_SERVICE_HOST"), None);
    }

    #[test]
    fn a_namespaces_own_kubernetes_service_wins() {
        let mut all = services();
        all.push(service(
            "shop",
            "kubernetes",
            "10.96.0.42",
            json!([{"port": 8443}]),
        ));
        let vars = service_env(&pod("shop", None), &all);
        assert_eq!(get(&vars, "KUBERNETES_SERVICE_HOST"), Some("10.96.0.42"));
        assert_eq!(get(&vars, "KUBERNETES_SERVICE_PORT"), Some("8443"));
    }

    #[test]
    fn ipv6_urls_have_brackets() {
        let all = [service(
            "default",
            "kubernetes",
            "fd00::1",
            json!([{"port": 443}]),
        )];
        let vars = service_env(&pod("default", None), &all);
        assert_eq!(get(&vars, "KUBERNETES_PORT"), Some("tcp://[fd00::1]:443"));
        assert_eq!(get(&vars, "KUBERNETES_SERVICE_HOST"), Some("fd00::1"));
    }
}
