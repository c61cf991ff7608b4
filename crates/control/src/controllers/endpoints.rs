//! Endpoints and EndpointSlices: for each Service with a selector, the addresses of the pods it selects
//! (ready ones in `addresses`, others in `notReadyAddresses`) and the target ports, as the Endpoints object of
//! the Service's name, and beside it as `discovery.k8s.io/v1` EndpointSlices (kube's endpointslice
//! controller: one slice per port set, named `<service>-<random>`, labelled `kubernetes.io/service-name`,
//! owned by the Service; each endpoint with its ready/serving/terminating conditions).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use herd_api::LabelSelector;
use herd_api::endpoints::resolve_target_port;
use herd_api::resources::{self, ResourceInfo};
use k8s_openapi::api::core::v1::{Endpoints, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::{Value, json};

use super::{Controller, Informers, Key, Requeue, key_of, pod_is_active, pod_is_ready};
use crate::error::ApiError;
use crate::objects::Change;
use crate::objects::{DeleteOptions, Objects, core};

pub struct EndpointsController {
    objects: Objects,
    caches: Arc<Informers>,
    endpoints: &'static ResourceInfo,
    slices: &'static ResourceInfo,
}

/// The label naming a slice's Service.
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// The label naming who manages a slice, and kube's controller's value.
const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
const MANAGED_BY: &str = "endpointslice-controller.k8s.io";

/// Ready addresses, not-ready addresses, ports.
/// A port set's ready addresses, not-ready ones, terminating ones (slices only) and its ports.
type Subset = (Vec<Value>, Vec<Value>, Vec<Value>, Vec<Value>);

/// The key under which a subset carries its terminating addresses to the slices (never written to an
/// Endpoints object, which lists no terminating pod, as kube's does not).
const TERMINATING: &str = "terminatingAddresses";

impl EndpointsController {
    pub fn new(objects: Objects, caches: Arc<Informers>) -> Self {
        Self {
            objects,
            caches,
            endpoints: resources::by_path("", "v1", "endpoints").expect("endpoints"),
            slices: resources::by_path("discovery.k8s.io", "v1", "endpointslices")
                .expect("endpointslices"),
        }
    }

    /// Brings one Service's Endpoints and slices in line with `pods` (every pod of the namespace) and
    /// `slices` (every EndpointSlice of it), both read from the informer caches.
    async fn reconcile_service(
        &self,
        ns: &str,
        name: &str,
        pods: &[Arc<Value>],
        slices: &[Arc<EndpointSlice>],
    ) -> Result<(), ApiError> {
        let svc = self.caches.store::<Service>().get(ns, name);
        let Some(selector) = svc.as_deref().and_then(service_selector) else {
            // No Service (or no selector): endpoints we manage are removed.
            self.reconcile_slices(ns, name, None, &[], slices).await?;
            if svc.is_none() {
                match self
                    .objects
                    .delete(self.endpoints, Some(ns), name, DeleteOptions::default())
                    .await
                {
                    Ok(_) | Err(ApiError::NotFound { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
            return Ok(());
        };
        let svc = svc.unwrap_or_default();
        let svc_ports = svc
            .spec
            .as_ref()
            .and_then(|s| s.ports.as_deref())
            .unwrap_or_default();
        // kube's controllers list every pod as ready for a Service that publishes not-ready addresses.
        let publish_not_ready = svc
            .spec
            .as_ref()
            .and_then(|s| s.publish_not_ready_addresses)
            .unwrap_or(false);
        // Pods are grouped by the ports they resolve to, as the Kubernetes controller does with subsets.
        let mut subsets: BTreeMap<String, Subset> = BTreeMap::new();
        for pod in pods
            .iter()
            .filter(|p| selector.matches_object(p) && (pod_is_active(p) || pod_is_terminating(p)))
        {
            let Some(ip) = pod
                .pointer("/status/podIP")
                .and_then(Value::as_str)
                .filter(|ip| !ip.is_empty())
            else {
                continue;
            };
            let ports: Vec<Value> = svc_ports
                .iter()
                .filter_map(|sp| {
                    let port = resolve_target_port(pod, sp)?;
                    let mut p =
                        json!({"port": port, "protocol": sp.protocol.as_deref().unwrap_or("TCP")});
                    if let Some(n) = sp.name.as_deref().filter(|n| !n.is_empty()) {
                        p["name"] = json!(n);
                    }
                    Some(p)
                })
                .collect();
            let mut address = json!({
                "ip": ip,
                "nodeName": pod.pointer("/spec/nodeName").cloned().unwrap_or(Value::Null),
                "targetRef": {
                    "kind": "Pod", "namespace": ns,
                    "name": pod.pointer("/metadata/name").cloned().unwrap_or(Value::Null),
                    "uid": pod.pointer("/metadata/uid").cloned().unwrap_or(Value::Null),
                },
            });
            if let Some(hostname) = endpoint_hostname(pod, name) {
                address["hostname"] = json!(hostname);
            }
            let entry = subsets
                .entry(serde_json::to_string(&ports).unwrap_or_default())
                .or_insert_with(|| (Vec::new(), Vec::new(), Vec::new(), ports));
            if !pod_is_active(pod) {
                // kube's EndpointSlice controller keeps a terminating pod, serving while it is ready,
                // so the proxy can fall back to it when nothing else serves.
                let mut address = address;
                address["serving"] = json!(pod_is_ready(pod));
                entry.2.push(address);
            } else if pod_is_ready(pod) || publish_not_ready {
                entry.0.push(address)
            } else {
                entry.1.push(address)
            }
        }
        let subsets: Vec<Value> = subsets
            .into_values()
            .map(|(mut ready, mut not_ready, mut terminating, ports)| {
                for list in [&mut ready, &mut not_ready, &mut terminating] {
                    list.sort_by(|a, b| a["ip"].as_str().cmp(&b["ip"].as_str()));
                }
                let mut s = json!({"ports": ports});
                if !ready.is_empty() {
                    s["addresses"] = json!(ready);
                }
                if !not_ready.is_empty() {
                    s["notReadyAddresses"] = json!(not_ready);
                }
                if !terminating.is_empty() {
                    s[TERMINATING] = json!(terminating);
                }
                s
            })
            .collect();
        let labels = json!(svc.metadata.labels.clone().unwrap_or_default());
        self.reconcile_slices(ns, name, Some(&svc), &subsets, slices)
            .await?;
        // The Endpoints object lists no terminating pod; a port set of terminating pods only has none.
        let subsets: Vec<Value> = subsets
            .into_iter()
            .filter_map(|mut s| {
                s.as_object_mut()?.remove(TERMINATING);
                (s.get("addresses").is_some() || s.get("notReadyAddresses").is_some()).then_some(s)
            })
            .collect();
        let existing = self.caches.get(self.endpoints, ns, name);
        match existing {
            None => {
                let ep = json!({"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": name, "namespace": ns, "labels": labels}, "subsets": subsets});
                match self
                    .objects
                    .create(self.endpoints, Some(ns), ep, false)
                    .await
                {
                    Ok(_) | Err(ApiError::AlreadyExists { .. }) => Ok(()),
                    Err(e) => Err(e),
                }
            }
            Some(_) => {
                self.objects
                    .edit(self.endpoints, ns, name, |ep| {
                        let subsets = json!(subsets);
                        if ep.get("subsets").unwrap_or(&json!([])) == &subsets {
                            return false;
                        }
                        ep["subsets"] = subsets;
                        true
                    })
                    .await?;
                Ok(())
            }
        }
    }
}

impl EndpointsController {
    /// Brings the Service's slices (among `slices`, the namespace's) in line with `subsets`: each port
    /// set's endpoints spread over slices of at most [`MAX_ENDPOINTS_PER_SLICE`] (see [`plan_slices`]);
    /// `svc` is `None`, and `subsets` empty, when the Service or its selector is gone: its slices go.
    async fn reconcile_slices(
        &self,
        ns: &str,
        name: &str,
        svc: Option<&Service>,
        subsets: &[Value],
        slices: &[Arc<EndpointSlice>],
    ) -> Result<(), ApiError> {
        let mut existing: Vec<&EndpointSlice> = slices
            .iter()
            .map(|s| &**s)
            .filter(|s| {
                label(s, SERVICE_NAME_LABEL) == Some(name)
                    && label(s, MANAGED_BY_LABEL) == Some(MANAGED_BY)
            })
            .collect();
        existing.sort_by_key(|s| s.metadata.name.as_deref());
        // A Service with no endpoints still has one (empty) slice, as kube keeps a placeholder.
        let placeholder = [json!({"ports": []})];
        let subsets = if svc.is_some() && subsets.is_empty() {
            &placeholder[..]
        } else {
            subsets
        };
        let mut changes = Vec::new();
        for subset in subsets {
            let ports = subset.get("ports").cloned().unwrap_or(json!([]));
            // The slices of this port set are planned with it; the others left over go.
            let (mine, rest): (Vec<&EndpointSlice>, Vec<&EndpointSlice>) = existing
                .into_iter()
                .partition(|s| json!(s.ports.as_deref().unwrap_or_default()) == ports);
            existing = rest;
            // The slices' endpoints as the plan compares them: JSON, as the desired ones are built.
            let mine: Vec<(String, Vec<Value>)> = mine
                .into_iter()
                .map(|s| {
                    let endpoints = s.endpoints.as_deref().unwrap_or_default();
                    (
                        s.metadata.name.clone().unwrap_or_default(),
                        endpoints.iter().map(|e| json!(e)).collect(),
                    )
                })
                .collect();
            let plan = plan_slices(&mine, &slice_endpoints(subset), MAX_ENDPOINTS_PER_SLICE);
            changes.extend(plan.into_iter().map(|change| (ports.clone(), change)));
        }
        changes.extend(existing.into_iter().filter_map(|stale| {
            let slice_name = stale.metadata.name.clone()?;
            Some((Value::Null, SliceChange::Delete(slice_name)))
        }));
        for (ports, change) in changes {
            match change {
                SliceChange::Update {
                    name: slice_name,
                    endpoints,
                } => {
                    let endpoints = json!(endpoints);
                    self.objects
                        .edit(self.slices, ns, &slice_name, |s| {
                            if s.get("endpoints").unwrap_or(&json!([])) == &endpoints {
                                return false;
                            }
                            s["endpoints"] = endpoints;
                            true
                        })
                        .await?;
                }
                SliceChange::Create(endpoints) => {
                    let Some(svc) = svc else { continue };
                    let slice = json!({
                        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                        "metadata": {
                            "generateName": format!("{name}-"), "namespace": ns,
                            "labels": slice_labels(svc, name),
                            "ownerReferences": [{
                                "apiVersion": "v1", "kind": "Service", "name": name,
                                "uid": svc.metadata.uid,
                                "controller": true, "blockOwnerDeletion": true,
                            }],
                        },
                        "addressType": "IPv4",
                        "endpoints": endpoints,
                        "ports": ports,
                    });
                    self.objects
                        .create(self.slices, Some(ns), slice, false)
                        .await?;
                }
                SliceChange::Delete(slice_name) => {
                    match self
                        .objects
                        .delete(self.slices, Some(ns), &slice_name, DeleteOptions::default())
                        .await
                    {
                        Ok(_) | Err(ApiError::NotFound { .. }) => {}
                        Err(e) => return Err(e),
                    }
                }
            }
        }
        Ok(())
    }
}

/// kube-controller-manager's `--max-endpoints-per-slice` default: a slice holds at most this many
/// endpoints, a Service with more has several slices of each port set.
const MAX_ENDPOINTS_PER_SLICE: usize = 100;

/// What becomes of one slice of a port set.
#[derive(Debug, PartialEq)]
enum SliceChange {
    /// An existing slice gets these endpoints (unless it has them already).
    Update { name: String, endpoints: Vec<Value> },
    /// A new slice with these endpoints.
    Create(Vec<Value>),
    /// An existing slice is no longer needed.
    Delete(String),
}

/// Spreads a port set's `desired` endpoints over its `existing` slices (name, endpoints; sorted by
/// name) with at most `max` in each, churning as little as kube's endpointslice reconciler does: an
/// endpoint stays in the slice that has it (with its new conditions), new ones fill the slices that
/// change anyway, then the others with room, then new slices of `max` (an emptied slice takes a new
/// slice's endpoints rather than being deleted beside a create); a slice left empty goes, but a port
/// set keeps one slice (the placeholder of a Service without endpoints). Each slice lists its
/// endpoints in the order of `desired`. Endpoints are told apart by their addresses.
fn plan_slices(
    existing: &[(String, Vec<Value>)],
    desired: &[Value],
    max: usize,
) -> Vec<SliceChange> {
    let max = max.max(1);
    let key = |endpoint: &Value| endpoint["addresses"].to_string();
    let mut index: HashMap<String, usize> = HashMap::new();
    for (i, endpoint) in desired.iter().enumerate() {
        index.entry(key(endpoint)).or_insert(i);
    }
    let mut placed = vec![false; desired.len()];
    // Each existing slice with the desired endpoints it keeps, by index into `desired`.
    let mut kept: Vec<(&str, &[Value], Vec<usize>)> = existing
        .iter()
        .map(|(name, endpoints)| {
            let mut keep = Vec::new();
            for endpoint in endpoints {
                match index.get(&key(endpoint)) {
                    Some(&i) if !placed[i] && keep.len() < max => {
                        placed[i] = true;
                        keep.push(i);
                    }
                    _ => {}
                }
            }
            (name.as_str(), endpoints.as_slice(), keep)
        })
        .collect();
    let mut unplaced = (0..desired.len()).filter(|i| !placed[*i]).peekable();
    let as_endpoints = |mut indices: Vec<usize>| -> Vec<Value> {
        indices.sort_unstable();
        indices.into_iter().map(|i| desired[i].clone()).collect()
    };
    // Slices that change anyway (they lost or changed an endpoint) take new ones first.
    let mut order: Vec<usize> = (0..kept.len()).collect();
    order.sort_by_key(|&k| {
        // `true` (unchanged) sorts after `false`.
        let (_, before, keep) = &kept[k];
        keep.len() == before.len()
            && keep
                .iter()
                .zip(before.iter())
                .all(|(&i, old)| &desired[i] == old)
    });
    for k in order {
        let keep = &mut kept[k].2;
        // An emptied slice is not refilled here; it may carry a new slice's endpoints below.
        if keep.is_empty() {
            continue;
        }
        while keep.len() < max {
            let Some(i) = unplaced.next() else { break };
            keep.push(i);
        }
    }
    let mut changes = Vec::new();
    for (name, before, keep) in kept {
        if keep.is_empty() {
            changes.push(SliceChange::Delete(name.to_string()));
            continue;
        }
        let endpoints = as_endpoints(keep);
        if endpoints.as_slice() != before {
            changes.push(SliceChange::Update {
                name: name.to_string(),
                endpoints,
            });
        }
    }
    while unplaced.peek().is_some() {
        let endpoints = as_endpoints(unplaced.by_ref().take(max).collect());
        // As kube's reconciler finalizes: a slice to delete takes a new slice's endpoints instead
        // (one update rather than a create and a delete).
        let recycled = changes
            .iter()
            .position(|c| matches!(c, SliceChange::Delete(_)));
        match recycled.map(|at| changes.swap_remove(at)) {
            Some(SliceChange::Delete(name)) => {
                changes.push(SliceChange::Update { name, endpoints })
            }
            _ => changes.push(SliceChange::Create(endpoints)),
        }
    }
    // A port set keeps one slice: the first existing one, emptied, or a new empty one.
    let remains = existing.len()
        > changes
            .iter()
            .filter(|c| matches!(c, SliceChange::Delete(_)))
            .count()
        || changes.iter().any(|c| matches!(c, SliceChange::Create(_)));
    if !remains {
        match existing.first() {
            Some((name, before)) => {
                changes.retain(|c| c != &SliceChange::Delete(name.clone()));
                if !before.is_empty() {
                    changes.push(SliceChange::Update {
                        name: name.clone(),
                        endpoints: Vec::new(),
                    });
                }
            }
            None => changes.push(SliceChange::Create(Vec::new())),
        }
    }
    changes
}

/// A pod being deleted that has not finished: still an endpoint of its slices, terminating.
fn pod_is_terminating(pod: &Value) -> bool {
    let phase = pod.pointer("/status/phase").and_then(Value::as_str);
    pod.pointer("/metadata/deletionTimestamp").is_some()
        && !matches!(phase, Some("Succeeded" | "Failed"))
}

/// The value of a slice's label `key`.
fn label<'a>(slice: &'a EndpointSlice, key: &str) -> Option<&'a str> {
    slice
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(key))
        .map(String::as_str)
}

/// A slice's labels, as kube's controller writes them: the Service's own labels, then the Service name
/// and the managing controller.
fn slice_labels(svc: &Service, name: &str) -> Value {
    let mut labels = json!(svc.metadata.labels.clone().unwrap_or_default());
    labels[SERVICE_NAME_LABEL] = json!(name);
    labels[MANAGED_BY_LABEL] = json!(MANAGED_BY);
    labels
}

/// A subset's addresses as EndpointSlice endpoints, ready ones first, then not-ready, then terminating
/// ones, with kube's conditions.
fn slice_endpoints(subset: &Value) -> Vec<Value> {
    let endpoint = |address: &Value, ready: bool| {
        let terminating = address.get("serving").is_some();
        let serving = address["serving"].as_bool().unwrap_or(ready);
        let mut e = json!({
            "addresses": [address["ip"]],
            "conditions": {"ready": ready, "serving": serving, "terminating": terminating},
            "targetRef": address["targetRef"],
        });
        if let Some(node) = address.get("nodeName").filter(|n| n.is_string()) {
            e["nodeName"] = node.clone();
        }
        if let Some(hostname) = address.get("hostname").filter(|h| h.is_string()) {
            e["hostname"] = hostname.clone();
        }
        e
    };
    let list = |key: &str| {
        subset
            .get(key)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let mut out: Vec<Value> = list("addresses")
        .iter()
        .map(|a| endpoint(a, true))
        .collect();
    out.extend(list("notReadyAddresses").iter().map(|a| endpoint(a, false)));
    out.extend(list(TERMINATING).iter().map(|a| endpoint(a, false)));
    out
}

/// The hostname an endpoint of Service `service` gets from `pod`: its `spec.hostname` when its
/// `spec.subdomain` is the Service (kube's `ShouldSetHostname`; the namespaces are one already), so
/// `HOSTNAME.SERVICE.NS.svc.<domain>` names the pod (a StatefulSet's pods behind its headless Service).
fn endpoint_hostname<'a>(pod: &'a Value, service: &str) -> Option<&'a str> {
    let hostname = pod.pointer("/spec/hostname")?.as_str()?;
    let subdomain = pod.pointer("/spec/subdomain")?.as_str()?;
    (!hostname.is_empty() && subdomain == service).then_some(hostname)
}

impl Controller for EndpointsController {
    const NAME: &'static str = "endpoints";

    fn watches(&self) -> &'static [&'static str] {
        &["services", "pods"]
    }

    /// A Service's own change; a pod's wakes the Services of its namespace that select it now or did
    /// before, and those whose Endpoints list it (kube's `getPodServiceMemberships`), all read from the
    /// caches: one pod's change does not touch the namespace's other Services.
    fn keys_for(&self, change: &Change) -> Vec<Key> {
        if &*change.resource != "pods" {
            return vec![key_of(change)];
        }
        let ns = &change.namespace;
        let mut names = BTreeSet::new();
        let endpoints = self.caches.store::<Endpoints>();
        for svc in self.caches.store::<Service>().list(Some(ns)) {
            let Some(name) = svc.metadata.name.as_deref() else {
                continue;
            };
            let selector = service_selector(&svc);
            let selects = |pod: &Value| selector.as_ref().is_some_and(|s| s.matches_object(pod));
            if selects(&change.object)
                || change.previous.as_deref().is_some_and(selects)
                || endpoints
                    .get(ns, name)
                    .is_some_and(|ep| lists_pod(&ep, &change.name))
            {
                names.insert(name.to_string());
            }
        }
        names.into_iter().map(|n| (ns.clone(), n)).collect()
    }

    async fn all_keys(&self) -> Result<Vec<Key>, ApiError> {
        let mut keys = self.caches.keys(core("services"));
        keys.extend(self.caches.keys(self.endpoints));
        Ok(keys)
    }

    async fn reconcile(&self, (ns, name): &Key) -> Result<Requeue, ApiError> {
        // The namespace's pods (the pod cache's namespace range) and slices, from the caches.
        let pods = self.caches.list(core("pods"), Some(ns));
        let slices = self.caches.store::<EndpointSlice>().list(Some(ns));
        self.reconcile_service(ns, name, &pods, &slices).await?;
        Ok(None)
    }
}

/// A Service's selector, as a LabelSelector; `None` without one (such a Service has no managed endpoints).
fn service_selector(svc: &Service) -> Option<LabelSelector> {
    let labels: &BTreeMap<String, String> = svc.spec.as_ref()?.selector.as_ref()?;
    Some(LabelSelector::from_map(labels))
}

/// Whether Endpoints `ep` has an address of pod `name` (ready or not).
fn lists_pod(ep: &Endpoints, name: &str) -> bool {
    ep.subsets
        .iter()
        .flatten()
        .flat_map(|s| s.addresses.iter().chain(s.not_ready_addresses.iter()))
        .flatten()
        .any(|a| {
            a.target_ref
                .as_ref()
                .is_some_and(|r| r.name.as_deref() == Some(name))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(ip: &str, ready: bool) -> Value {
        json!({"addresses": [ip], "conditions": {"ready": ready, "serving": ready, "terminating": false}})
    }

    fn endpoints(ips: std::ops::Range<u8>) -> Vec<Value> {
        ips.map(|i| endpoint(&format!("127.1.0.{i}"), true))
            .collect()
    }

    fn counts(changes: &[SliceChange]) -> Vec<String> {
        changes
            .iter()
            .map(|c| match c {
                SliceChange::Update { name, endpoints } => {
                    format!("update {name} {}", endpoints.len())
                }
                SliceChange::Create(endpoints) => format!("create {}", endpoints.len()),
                SliceChange::Delete(name) => format!("delete {name}"),
            })
            .collect()
    }

    #[test]
    fn endpoints_are_split_into_slices_of_at_most_max() {
        assert_eq!(
            counts(&plan_slices(&[], &endpoints(0..101), 100)),
            ["create 100", "create 1"]
        );
        assert_eq!(
            counts(&plan_slices(&[], &endpoints(0..100), 100)),
            ["create 100"]
        );
        assert_eq!(
            counts(&plan_slices(&[], &[], 100)),
            ["create 0"],
            "the placeholder"
        );
    }

    #[test]
    fn endpoints_stay_in_their_slice_and_new_ones_fill_slices_with_room() {
        let existing = vec![
            ("web-a".to_string(), endpoints(0..3)),
            ("web-b".to_string(), endpoints(3..5)),
        ];
        // Unchanged: nothing to write.
        assert!(plan_slices(&existing, &endpoints(0..5), 3).is_empty());
        // 127.1.0.1 goes and 127.1.0.5, .6 come: web-a changes anyway and takes .5; web-b takes .6.
        let mut desired = endpoints(0..7);
        desired.remove(1);
        let plan = plan_slices(&existing, &desired, 3);
        let want_a: Vec<Value> = [0, 2, 5]
            .iter()
            .map(|i| endpoint(&format!("127.1.0.{i}"), true))
            .collect();
        let want_b: Vec<Value> = [3, 4, 6]
            .iter()
            .map(|i| endpoint(&format!("127.1.0.{i}"), true))
            .collect();
        assert_eq!(
            plan,
            [
                SliceChange::Update {
                    name: "web-a".into(),
                    endpoints: want_a
                },
                SliceChange::Update {
                    name: "web-b".into(),
                    endpoints: want_b
                },
            ]
        );
        // A condition change updates the endpoint where it is.
        let mut desired = endpoints(0..5);
        desired[4] = endpoint("127.1.0.4", false);
        assert_eq!(
            counts(&plan_slices(&existing, &desired, 3)),
            ["update web-b 2"]
        );
    }

    #[test]
    fn emptied_slices_go_or_carry_new_endpoints_and_oversized_ones_shrink() {
        let existing = vec![
            ("web-a".to_string(), endpoints(0..2)),
            ("web-b".to_string(), endpoints(2..4)),
        ];
        // Every endpoint of web-b gone: it is deleted.
        assert_eq!(
            counts(&plan_slices(&existing, &endpoints(0..2), 2)),
            ["delete web-b"]
        );
        // Replaced by two new ones that do not fit in web-a: web-b carries them instead of a create.
        let mut desired = endpoints(0..2);
        desired.extend(endpoints(10..12));
        assert_eq!(
            counts(&plan_slices(&existing, &desired, 2)),
            ["update web-b 2"]
        );
        // No endpoint left: one placeholder slice stays.
        assert_eq!(
            counts(&plan_slices(&existing, &[], 2)),
            ["delete web-b", "update web-a 0"]
        );
        // A slice over the limit (written before it existed) gives its overflow to a new slice.
        let big = vec![("web-a".to_string(), endpoints(0..5))];
        assert_eq!(
            counts(&plan_slices(&big, &endpoints(0..5), 3)),
            ["update web-a 3", "create 2"]
        );
    }

    /// A pod with `hostname` and `subdomain` = the Service is named in its endpoint (kube's
    /// `ShouldSetHostname`: StatefulSet pods behind their headless Service), another Service's pod
    /// is not; a Service with `publishNotReadyAddresses` lists its pods ready before they are.
    #[tokio::test]
    async fn hostnames_of_subdomain_pods_and_not_ready_pods_of_publishing_services() {
        let (_dir, objects) = crate::objects::test_objects_in_default().await;
        for (name, publish) in [("pg", true), ("other", false)] {
            let svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
                "spec": {"clusterIP": "None", "selector": {"app": "pg"}, "publishNotReadyAddresses": publish,
                         "ports": [{"port": 5432}]}});
            objects
                .create(core("services"), Some("default"), svc, false)
                .await
                .unwrap();
        }
        for (i, ready) in [(0, "True"), (1, "False")] {
            let name = format!("pg-{i}");
            let pod = json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name, "labels": {"app": "pg"}},
                "spec": {"hostname": name, "subdomain": "pg",
                         "containers": [{"name": "app", "image": "example/pg:1"}]}});
            objects
                .create(core("pods"), Some("default"), pod, false)
                .await
                .unwrap();
            objects
                .edit(core("pods"), "default", &name, |p| {
                    p["status"] = json!({"phase": "Running", "podIP": format!("127.64.0.{}", i + 2),
                        "conditions": [{"type": "Ready", "status": ready}]});
                    true
                })
                .await
                .unwrap();
        }
        let caches = Arc::new(super::Informers::new(objects.clone()));
        let controller = EndpointsController::new(objects.clone(), caches.clone());
        caches.ensure_loaded().await.unwrap();
        let slices = resources::by_path("discovery.k8s.io", "v1", "endpointslices").unwrap();
        for service in ["pg", "other"] {
            controller
                .reconcile(&("default".to_string(), service.to_string()))
                .await
                .unwrap();
        }
        let listed = objects.list_all(slices, Some("default")).await.unwrap().0;
        let endpoints = |service: &str| -> Vec<(String, Value, Value)> {
            let slice = listed
                .iter()
                .find(|s| s.pointer("/metadata/labels").unwrap()[SERVICE_NAME_LABEL] == service)
                .unwrap();
            let mut list: Vec<(String, Value, Value)> = slice["endpoints"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| {
                    (
                        e["addresses"][0].as_str().unwrap().to_owned(),
                        e["hostname"].clone(),
                        e["conditions"]["ready"].clone(),
                    )
                })
                .collect();
            list.sort_by(|a, b| a.0.cmp(&b.0));
            list
        };
        assert_eq!(
            endpoints("pg"),
            [
                ("127.64.0.2".to_owned(), json!("pg-0"), json!(true)),
                ("127.64.0.3".to_owned(), json!("pg-1"), json!(true)),
            ]
        );
        assert_eq!(
            endpoints("other"),
            [
                ("127.64.0.2".to_owned(), Value::Null, json!(true)),
                ("127.64.0.3".to_owned(), Value::Null, json!(false)),
            ]
        );
        let ep = objects
            .get(core("endpoints"), Some("default"), "pg")
            .await
            .unwrap();
        assert_eq!(
            ep.pointer("/subsets/0/addresses/0/hostname"),
            Some(&json!("pg-0"))
        );
    }

    /// A Service selecting 101 ready pods gets two slices of its port set (kube's
    /// `--max-endpoints-per-slice` 100), named `<service>-…` and labelled as kube labels them, and
    /// every pod in exactly one of them; one pod fewer, and one slice goes.
    #[tokio::test]
    async fn a_service_with_101_ready_pods_gets_two_slices() {
        let (_dir, objects) = crate::objects::test_objects_in_default().await;
        let svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
            "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}});
        objects
            .create(core("services"), Some("default"), svc, false)
            .await
            .unwrap();
        for i in 0..101u32 {
            let name = format!("web-{i}");
            let pod = json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name, "labels": {"app": "web"}},
                "spec": {"containers": [{"name": "app", "image": "example/web:1"}]}});
            objects
                .create(core("pods"), Some("default"), pod, false)
                .await
                .unwrap();
            objects
                .edit(core("pods"), "default", &name, |p| {
                    p["status"] = json!({"phase": "Running", "podIP": format!("127.64.{}.{}", i / 200, i % 200 + 2),
                        "conditions": [{"type": "Ready", "status": "True"}]});
                    true
                })
                .await
                .unwrap();
        }
        let caches = Arc::new(super::Informers::new(objects.clone()));
        let controller = EndpointsController::new(objects.clone(), caches.clone());
        let key = ("default".to_string(), "web".to_string());
        caches.ensure_loaded().await.unwrap();
        controller.reconcile(&key).await.unwrap();

        let slices = |objects: Objects| async move {
            let slices = resources::by_path("discovery.k8s.io", "v1", "endpointslices").unwrap();
            objects.list_all(slices, Some("default")).await.unwrap().0
        };
        let listed = slices(objects.clone()).await;
        let mut sizes: Vec<usize> = listed
            .iter()
            .map(|s| s["endpoints"].as_array().map_or(0, Vec::len))
            .collect();
        sizes.sort_unstable();
        assert_eq!(sizes, [1, 100]);
        let mut ips: Vec<&str> = Vec::new();
        for slice in &listed {
            assert!(
                slice
                    .pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap()
                    .starts_with("web-")
            );
            assert_eq!(
                slice.pointer("/metadata/labels"),
                Some(&json!({SERVICE_NAME_LABEL: "web", MANAGED_BY_LABEL: MANAGED_BY}))
            );
            assert_eq!(
                slice["ports"],
                json!([{"name": "http", "port": 8080, "protocol": "TCP"}])
            );
            assert_eq!(
                slice.pointer("/metadata/ownerReferences/0/name"),
                Some(&json!("web"))
            );
            for e in slice["endpoints"].as_array().unwrap() {
                assert_eq!(e["conditions"]["ready"], true);
                ips.push(e["addresses"][0].as_str().unwrap());
            }
        }
        ips.sort_unstable();
        ips.dedup();
        assert_eq!(ips.len(), 101, "every pod in exactly one slice");

        // A pod fewer: the slice that held it shrinks or goes, nothing is moved.
        let lone = listed
            .iter()
            .find(|s| s["endpoints"].as_array().map_or(0, Vec::len) == 1)
            .unwrap();
        let lone_pod = lone
            .pointer("/endpoints/0/targetRef/name")
            .and_then(Value::as_str)
            .unwrap();
        objects
            .delete(
                core("pods"),
                Some("default"),
                lone_pod,
                DeleteOptions {
                    grace_period_seconds: Some(0),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        caches.sync().await.unwrap();
        controller.reconcile(&key).await.unwrap();
        let after = slices(objects.clone()).await;
        assert_eq!(after.len(), 1);
        assert_eq!(after[0]["endpoints"].as_array().map_or(0, Vec::len), 100);
    }

    #[tokio::test]
    async fn a_terminating_pod_stays_in_the_slice_as_terminating_but_leaves_the_endpoints() {
        let (_dir, objects) = crate::objects::test_objects_in_default().await;
        let svc = json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "web", "labels": {"tier": "front"}},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}});
        objects
            .create(core("services"), Some("default"), svc, false)
            .await
            .unwrap();
        for (i, name) in ["old", "new"].into_iter().enumerate() {
            let pod = json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name, "labels": {"app": "web"}},
                "spec": {"nodeName": "n1", "containers": [{"name": "app", "image": "example/web:1"}]}});
            objects
                .create(core("pods"), Some("default"), pod, false)
                .await
                .unwrap();
            objects
                .edit(core("pods"), "default", name, |p| {
                    p["status"] = json!({"phase": "Running", "podIP": format!("127.64.0.{}", i + 2),
                        "conditions": [{"type": "Ready", "status": "True"}]});
                    true
                })
                .await
                .unwrap();
        }
        // A bound pod is deleted gracefully: it is terminating until its node stops it.
        objects
            .delete(
                core("pods"),
                Some("default"),
                "old",
                DeleteOptions::default(),
            )
            .await
            .unwrap();
        let caches = Arc::new(super::Informers::new(objects.clone()));
        let controller = EndpointsController::new(objects.clone(), caches.clone());
        caches.ensure_loaded().await.unwrap();
        controller
            .reconcile(&("default".to_string(), "web".to_string()))
            .await
            .unwrap();
        let slices = resources::by_path("discovery.k8s.io", "v1", "endpointslices").unwrap();
        let (listed, _) = objects.list_all(slices, Some("default")).await.unwrap();
        assert_eq!(listed.len(), 1);
        let conditions: Vec<(String, Value)> = listed[0]["endpoints"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["targetRef"]["name"].as_str().unwrap().to_string(),
                    e["conditions"].clone(),
                )
            })
            .collect();
        assert_eq!(
            conditions,
            [
                (
                    "new".to_string(),
                    json!({"ready": true, "serving": true, "terminating": false})
                ),
                (
                    "old".to_string(),
                    json!({"ready": false, "serving": true, "terminating": true})
                ),
            ]
        );
        assert_eq!(
            listed[0]["metadata"]["labels"],
            json!({"tier": "front", SERVICE_NAME_LABEL: "web", MANAGED_BY_LABEL: MANAGED_BY})
        );
        let ep = objects
            .find(core("endpoints"), "default", "web")
            .await
            .unwrap()
            .unwrap();
        let ips: Vec<&str> = ep["subsets"][0]["addresses"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["ip"].as_str().unwrap())
            .collect();
        assert_eq!(ips, ["127.64.0.3"]);
        assert!(ep["subsets"][0].get("terminatingAddresses").is_none());
    }
}
