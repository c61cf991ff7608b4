//! What the proxy tells users about Services it cannot serve as asked: the Service's `Listening`
//! condition (`status.conditions`) and an Event, instead of a retry loop only its log knows of.
//!
//! [`verdicts`] is a pure function from the routing table and the listeners' states to one
//! [`Verdict`] per Service; [`report`] writes a verdict when this proxy's own verdict for a
//! Service changes (never because another proxy wrote something else, so several proxies of
//! one cluster cannot take turns rewriting it).

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, MicroTime, ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::forwarder::{ListenState, ListenStates};
use crate::routes::{RoutingTable, ServiceRef};

/// The condition type the proxy sets on a Service.
pub const CONDITION: &str = "Listening";
/// The Warning event of a Service whose port cannot be listened on.
pub const FAILED_REASON: &str = "FailedToListen";
/// The component the events say they come from (kube-proxy's recorder name).
const COMPONENT: &str = "kube-proxy";
/// How soon a failed write is tried again.
const RETRY: Duration = Duration::from_secs(5);

/// Whether this proxy serves every port of a Service on its own address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Listening,
    NotListening {
        /// `PrivilegedPort`, `PortInUse` or `ListenFailed` (of the first port that failed).
        reason: &'static str,
        message: String,
    },
}

/// The verdict on every Service of `table`. `port_start` is the host's
/// `net.ipv4.ip_unprivileged_port_start`, for the message (if known).
pub fn verdicts(
    table: &RoutingTable,
    states: &ListenStates,
    port_start: Option<u16>,
) -> BTreeMap<ServiceRef, Verdict> {
    let mut by_service: BTreeMap<ServiceRef, Vec<(SocketAddr, &ListenState)>> = BTreeMap::new();
    for frontend in table.frontends() {
        let (Some(service), Some(state)) = (table.service(frontend), states.get(&frontend)) else {
            continue;
        };
        by_service
            .entry(service.clone())
            .or_default()
            .push((frontend, state));
    }
    by_service
        .into_iter()
        .map(|(service, ports)| (service, verdict(&ports, port_start)))
        .collect()
}

fn verdict(ports: &[(SocketAddr, &ListenState)], port_start: Option<u16>) -> Verdict {
    let mut reason = None;
    let mut clauses = Vec::new();
    let mut privileged: Option<u16> = None;
    for (frontend, state) in ports {
        let (error, clause) = match state {
            ListenState::Listening => continue,
            ListenState::Fallback { on, error } => (
                error,
                format!(
                    "cannot listen on {frontend} ({}); it is served on {on} instead, where pods' \
                     connections to {frontend} are redirected and host clients may connect",
                    error.message
                ),
            ),
            ListenState::Failed { error } => (
                error,
                format!(
                    "cannot listen on {frontend} ({}), nor on a fallback port; retrying",
                    error.message
                ),
            ),
        };
        let this_reason = match error.kind {
            io::ErrorKind::PermissionDenied => {
                privileged = Some(privileged.map_or(frontend.port(), |p| p.min(frontend.port())));
                "PrivilegedPort"
            }
            io::ErrorKind::AddrInUse => "PortInUse",
            _ => "ListenFailed",
        };
        reason.get_or_insert(this_reason);
        clauses.push(clause);
    }
    let Some(reason) = reason else {
        return Verdict::Listening;
    };
    let mut message = clauses.join("; ");
    if let Some(port) = privileged {
        let start = port_start.map_or_else(String::new, |s| format!(" ({s} here)"));
        let at_least = port_start.unwrap_or(1024);
        message.push_str(&format!(
            ". Ports below net.ipv4.ip_unprivileged_port_start{start} need root: to serve port {port} to \
             host clients, run `sysctl -w net.ipv4.ip_unprivileged_port_start={port}` as root, or give \
             the Service a port of {at_least} or more"
        ));
    }
    Verdict::NotListening { reason, message }
}

/// What to write for a Service, given the verdict this proxy last wrote (or saw), the status of
/// the condition in the object now, and the verdict now.
fn to_write(last: Option<&Verdict>, current: Option<&str>, now: &Verdict) -> bool {
    match (now, last) {
        (_, Some(last)) if last == now => false,
        (Verdict::NotListening { .. }, _) => true,
        (Verdict::Listening, Some(_)) => true,
        // First sight: a False condition left by an earlier run is made True; nothing else is written.
        (Verdict::Listening, None) => current == Some("False"),
    }
}

/// The host's `net.ipv4.ip_unprivileged_port_start`.
pub fn unprivileged_port_start() -> Option<u16> {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Writes the verdicts it is sent (conditions and events) until `shutdown`.
pub async fn report(
    client: Client,
    node: String,
    services: Store<Service>,
    mut verdicts: watch::Receiver<BTreeMap<ServiceRef, Verdict>>,
    shutdown: CancellationToken,
) {
    let mut written: HashMap<ServiceRef, Verdict> = HashMap::new();
    let mut retry = false;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            changed = verdicts.changed() => if changed.is_err() { return },
            () = tokio::time::sleep(RETRY), if retry => {}
        }
        let now = verdicts.borrow_and_update().clone();
        written.retain(|service, _| now.contains_key(service));
        retry = false;
        for (service, verdict) in now {
            let Some(object) =
                services.get(&ObjectRef::new(&service.name).within(&service.namespace))
            else {
                continue;
            };
            let current = condition_of(&object);
            if !to_write(
                written.get(&service),
                current.map(|c| c.status.as_str()),
                &verdict,
            ) {
                written.insert(service, verdict);
                continue;
            }
            match write(&client, &node, &object, current, &verdict).await {
                Ok(()) => {
                    written.insert(service, verdict);
                }
                Err(error) => {
                    tracing::debug!(service = %service.name, %error, "writing the Service's Listening condition failed");
                    retry = true;
                }
            }
        }
    }
}

fn condition_of(service: &Service) -> Option<&Condition> {
    service
        .status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == CONDITION)
}

/// Sets the condition (a strategic merge patch of `status.conditions`, merged by type) and
/// records the event.
async fn write(
    client: &Client,
    node: &str,
    service: &Service,
    current: Option<&Condition>,
    verdict: &Verdict,
) -> Result<(), kube::Error> {
    let namespace = service.metadata.namespace.as_deref().unwrap_or("default");
    let name = service.metadata.name.as_deref().unwrap_or_default();
    let (status, reason, message, event_type, event_reason) = match verdict {
        Verdict::Listening => (
            "True",
            "Listening",
            "every port of the Service is listened on at its cluster IP".to_owned(),
            "Normal",
            "Listening",
        ),
        Verdict::NotListening { reason, message } => {
            ("False", *reason, message.clone(), "Warning", FAILED_REASON)
        }
    };
    let now = Timestamp::now();
    let transition = current
        .filter(|c| c.status == status)
        .map_or(Time(now), |c| c.last_transition_time.clone());
    let condition = Condition {
        type_: CONDITION.to_owned(),
        status: status.to_owned(),
        reason: reason.to_owned(),
        message: message.clone(),
        last_transition_time: transition,
        observed_generation: service.metadata.generation,
    };
    let patch = serde_json::json!({ "status": { "conditions": [condition] } });
    Api::<Service>::namespaced(client.clone(), namespace)
        .patch_status(name, &PatchParams::default(), &Patch::Strategic(&patch))
        .await?;
    let event = Event {
        metadata: ObjectMeta {
            name: Some(format!("{name}.{:x}", now.as_nanosecond())),
            namespace: Some(namespace.to_owned()),
            ..ObjectMeta::default()
        },
        involved_object: ObjectReference {
            api_version: Some("v1".to_owned()),
            kind: Some("Service".to_owned()),
            namespace: Some(namespace.to_owned()),
            name: Some(name.to_owned()),
            uid: service.metadata.uid.clone(),
            resource_version: service.metadata.resource_version.clone(),
            ..ObjectReference::default()
        },
        reason: Some(event_reason.to_owned()),
        message: Some(message),
        type_: Some(event_type.to_owned()),
        source: Some(EventSource {
            component: Some(COMPONENT.to_owned()),
            host: Some(node.to_owned()),
        }),
        first_timestamp: Some(Time(now)),
        last_timestamp: Some(Time(now)),
        event_time: None::<MicroTime>,
        count: Some(1),
        reporting_component: Some(COMPONENT.to_owned()),
        reporting_instance: Some(node.to_owned()),
        ..Event::default()
    };
    // The condition is what counts; an event that cannot be written is only logged.
    if let Err(error) = Api::<Event>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &event)
        .await
    {
        tracing::debug!(service = %name, %error, "writing the Service's event failed");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forwarder::ListenError;
    use serde_json::json;

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("socket address")
    }

    fn table() -> RoutingTable {
        let service: Service = serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "shop"},
            "spec": {"clusterIP": "127.10.0.5", "ports": [
                {"name": "http", "port": 80}, {"name": "https", "port": 443}, {"name": "alt", "port": 9000}
            ]}
        }))
        .expect("Service");
        RoutingTable::from_objects([&service], [])
    }

    fn denied() -> ListenError {
        ListenError {
            kind: io::ErrorKind::PermissionDenied,
            message: "Permission denied (os error 13)".to_owned(),
        }
    }

    #[test]
    fn privileged_ports_name_the_fallback_the_sysctl_and_the_lowest_port() {
        let states = ListenStates::from([
            (
                addr("127.10.0.5:443"),
                ListenState::Fallback {
                    on: addr("127.10.0.5:8443"),
                    error: denied(),
                },
            ),
            (
                addr("127.10.0.5:80"),
                ListenState::Fallback {
                    on: addr("127.10.0.5:8080"),
                    error: denied(),
                },
            ),
            (addr("127.10.0.5:9000"), ListenState::Listening),
        ]);
        let verdicts = verdicts(&table(), &states, Some(1024));
        let web = ServiceRef {
            namespace: "shop".into(),
            name: "web".into(),
        };
        let Some(Verdict::NotListening { reason, message }) = verdicts.get(&web) else {
            panic!("{verdicts:?}");
        };
        assert_eq!(*reason, "PrivilegedPort");
        assert_eq!(
            message,
            "cannot listen on 127.10.0.5:80 (Permission denied (os error 13)); it is served on \
             127.10.0.5:8080 instead, where pods' connections to 127.10.0.5:80 are redirected and host \
             clients may connect; cannot listen on 127.10.0.5:443 (Permission denied (os error 13)); it is \
             served on 127.10.0.5:8443 instead, where pods' connections to 127.10.0.5:443 are redirected \
             and host clients may connect. Ports below net.ipv4.ip_unprivileged_port_start (1024 here) need \
             root: to serve port 80 to host clients, run `sysctl -w net.ipv4.ip_unprivileged_port_start=80` \
             as root, or give the Service a port of 1024 or more"
        );
    }

    #[test]
    fn all_ports_listening_and_a_port_taken() {
        let mut states: ListenStates = ["127.10.0.5:80", "127.10.0.5:443", "127.10.0.5:9000"]
            .into_iter()
            .map(|a| (addr(a), ListenState::Listening))
            .collect();
        let verdicts_now = verdicts(&table(), &states, None);
        assert_eq!(
            verdicts_now.values().collect::<Vec<_>>(),
            [&Verdict::Listening]
        );
        states.insert(
            addr("127.10.0.5:9000"),
            ListenState::Failed {
                error: ListenError {
                    kind: io::ErrorKind::AddrInUse,
                    message: "Address in use (os error 98)".to_owned(),
                },
            },
        );
        let verdicts_now = verdicts(&table(), &states, None);
        assert_eq!(
            verdicts_now.values().collect::<Vec<_>>(),
            [&Verdict::NotListening {
                reason: "PortInUse",
                message:
                    "cannot listen on 127.10.0.5:9000 (Address in use (os error 98)), nor on a \
                          fallback port; retrying"
                        .to_owned()
            }]
        );
    }

    #[test]
    fn writes_on_its_own_changes_only() {
        let bad = Verdict::NotListening {
            reason: "PrivilegedPort",
            message: "m".into(),
        };
        let ok = Verdict::Listening;
        // A Service that was always fine gets no condition.
        assert!(!to_write(None, None, &ok));
        assert!(!to_write(None, Some("True"), &ok));
        // A problem is written once.
        assert!(to_write(None, None, &bad));
        assert!(!to_write(Some(&bad), Some("False"), &bad));
        // Even if another proxy wrote something else since.
        assert!(!to_write(Some(&bad), Some("True"), &bad));
        // Recovery is written, as is a False condition left by an earlier run.
        assert!(to_write(Some(&bad), Some("False"), &ok));
        assert!(to_write(None, Some("False"), &ok));
        assert!(!to_write(Some(&ok), Some("False"), &ok));
    }
}
