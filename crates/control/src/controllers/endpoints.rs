//! Endpoints and EndpointSlices: for each Service with a selector, the addresses of the pods it selects
//! (ready ones in `addresses`, others in `notReadyAddresses`) and the target ports, as the Endpoints object of
//! the Service's name, and beside it as `discovery.k8s.io/v1` EndpointSlices (kube's endpointslice
//! controller: one slice per port set, named `<service>-<random>`, labelled `kubernetes.io/service-name`,
//! owned by the Service; each endpoint with its ready/serving/terminating conditions).

use std::collections::BTreeMap;

use herd_api::LabelSelector;
use herd_api::resources::{self, ResourceInfo};
use serde_json::{Value, json};

use super::replicaset::object_key;
use super::{Controller, Key, Requeue, key_of, pod_is_active, pod_is_ready};
use crate::error::ApiError;
use crate::objects::Change;
use crate::objects::{DeleteOptions, Objects, core};

pub struct EndpointsController {
    objects: Objects,
    endpoints: &'static ResourceInfo,
    slices: &'static ResourceInfo,
}

/// The label naming a slice's Service.
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// The label naming who manages a slice, and kube's controller's value.
const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
const MANAGED_BY: &str = "endpointslice-controller.k8s.io";

/// Ready addresses, not-ready addresses, ports.
type Subset = (Vec<Value>, Vec<Value>, Vec<Value>);

/// Key name meaning "every Service in this namespace" (a pod change can affect any of them).
const ALL: &str = "*";

impl EndpointsController {
    pub fn new(objects: Objects) -> Self {
        Self {
            objects,
            endpoints: resources::by_path("", "v1", "endpoints").expect("endpoints"),
            slices: resources::by_path("discovery.k8s.io", "v1", "endpointslices")
                .expect("endpointslices"),
        }
    }

    /// Brings one Service's Endpoints and slices in line with `pods` (every pod of the namespace) and
    /// `slices` (every EndpointSlice of it), both listed once for all the Services a reconcile handles.
    async fn reconcile_service(
        &self,
        ns: &str,
        name: &str,
        pods: &[Value],
        slices: &[Value],
    ) -> Result<(), ApiError> {
        let svc = self.objects.find(core("services"), ns, name).await?;
        let Some(selector) = svc
            .as_ref()
            .and_then(|s| s.pointer("/spec/selector"))
            .and_then(Value::as_object)
        else {
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
        let svc = svc.clone().unwrap_or_default();
        let labels: BTreeMap<String, String> = selector
            .iter()
            .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
            .collect();
        let selector = LabelSelector::from_map(&labels);
        let svc_ports = svc
            .pointer("/spec/ports")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        // Pods are grouped by the ports they resolve to, as the Kubernetes controller does with subsets.
        let mut subsets: BTreeMap<String, Subset> = BTreeMap::new();
        for pod in pods
            .iter()
            .filter(|p| selector.matches_object(p) && pod_is_active(p))
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
                    let mut p = json!({"port": port, "protocol": sp.get("protocol").cloned().unwrap_or(json!("TCP"))});
                    if let Some(n) = sp.get("name").filter(|n| n.as_str().is_some_and(|s| !s.is_empty())) {
                        p["name"] = n.clone();
                    }
                    Some(p)
                })
                .collect();
            let address = json!({
                "ip": ip,
                "nodeName": pod.pointer("/spec/nodeName").cloned().unwrap_or(Value::Null),
                "targetRef": {
                    "kind": "Pod", "namespace": ns,
                    "name": pod.pointer("/metadata/name").cloned().unwrap_or(Value::Null),
                    "uid": pod.pointer("/metadata/uid").cloned().unwrap_or(Value::Null),
                },
            });
            let entry = subsets
                .entry(serde_json::to_string(&ports).unwrap_or_default())
                .or_insert_with(|| (Vec::new(), Vec::new(), ports));
            if pod_is_ready(pod) {
                entry.0.push(address)
            } else {
                entry.1.push(address)
            }
        }
        let subsets: Vec<Value> = subsets
            .into_values()
            .map(|(mut ready, mut not_ready, ports)| {
                ready.sort_by(|a, b| a["ip"].as_str().cmp(&b["ip"].as_str()));
                not_ready.sort_by(|a, b| a["ip"].as_str().cmp(&b["ip"].as_str()));
                let mut s = json!({"ports": ports});
                if !ready.is_empty() {
                    s["addresses"] = json!(ready);
                }
                if !not_ready.is_empty() {
                    s["notReadyAddresses"] = json!(not_ready);
                }
                s
            })
            .collect();
        let labels = svc
            .pointer("/metadata/labels")
            .cloned()
            .unwrap_or(json!({}));
        self.reconcile_slices(ns, name, Some(&svc), &subsets, slices)
            .await?;
        let existing = self.objects.find(self.endpoints, ns, name).await?;
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
    /// Brings the Service's slices (among `slices`, the namespace's) in line with `subsets` (one slice
    /// per port set; `svc` is `None`, and `subsets` empty, when the Service or its selector is gone: its
    /// slices go).
    async fn reconcile_slices(
        &self,
        ns: &str,
        name: &str,
        svc: Option<&Value>,
        subsets: &[Value],
        slices: &[Value],
    ) -> Result<(), ApiError> {
        let mut existing: Vec<Value> = slices
            .iter()
            .filter(|s| {
                s.pointer("/metadata/labels")
                    .and_then(|l| l.get(SERVICE_NAME_LABEL))
                    .and_then(Value::as_str)
                    == Some(name)
                    && s.pointer("/metadata/labels")
                        .and_then(|l| l.get(MANAGED_BY_LABEL))
                        .and_then(Value::as_str)
                        == Some(MANAGED_BY)
            })
            .cloned()
            .collect();
        // A Service with no endpoints still has one (empty) slice, as kube keeps a placeholder.
        let placeholder = [json!({"ports": []})];
        let subsets = if svc.is_some() && subsets.is_empty() {
            &placeholder[..]
        } else {
            subsets
        };
        for subset in subsets {
            let ports = subset.get("ports").cloned().unwrap_or(json!([]));
            let endpoints = slice_endpoints(subset);
            // The slice of this port set, if there is one: it is updated; the others left over go.
            let found = existing
                .iter()
                .position(|s| s.get("ports").unwrap_or(&json!([])) == &ports);
            match found.map(|i| existing.swap_remove(i)) {
                Some(slice) => {
                    let slice_name = slice
                        .pointer("/metadata/name")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string();
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
                None => {
                    let Some(svc) = svc else { continue };
                    let slice = json!({
                        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                        "metadata": {
                            "generateName": format!("{name}-"), "namespace": ns,
                            "labels": {SERVICE_NAME_LABEL: name, MANAGED_BY_LABEL: MANAGED_BY},
                            "ownerReferences": [{
                                "apiVersion": "v1", "kind": "Service", "name": name,
                                "uid": svc.pointer("/metadata/uid").cloned().unwrap_or(Value::Null),
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
            }
        }
        for stale in existing {
            if let Some(slice_name) = stale.pointer("/metadata/name").and_then(Value::as_str) {
                match self
                    .objects
                    .delete(self.slices, Some(ns), slice_name, DeleteOptions::default())
                    .await
                {
                    Ok(_) | Err(ApiError::NotFound { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(())
    }
}

/// A subset's addresses as EndpointSlice endpoints, ready ones first, with kube's conditions.
fn slice_endpoints(subset: &Value) -> Value {
    let endpoint = |address: &Value, ready: bool| {
        let mut e = json!({
            "addresses": [address["ip"]],
            "conditions": {"ready": ready, "serving": ready, "terminating": false},
            "targetRef": address["targetRef"],
        });
        if let Some(node) = address.get("nodeName").filter(|n| n.is_string()) {
            e["nodeName"] = node.clone();
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
    json!(out)
}

/// The pod port a Service port sends to: a number, or a named container port of the pod.
fn resolve_target_port(pod: &Value, svc_port: &Value) -> Option<i64> {
    match svc_port.get("targetPort") {
        Some(Value::Number(n)) => n.as_i64(),
        Some(Value::String(name)) => {
            if let Ok(n) = name.parse() {
                return Some(n);
            }
            pod.pointer("/spec/containers")?
                .as_array()?
                .iter()
                .flat_map(|c| {
                    c.get("ports")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                })
                .find(|p| p["name"] == name.as_str())
                .and_then(|p| p["containerPort"].as_i64())
        }
        _ => svc_port.get("port").and_then(Value::as_i64),
    }
}

impl Controller for EndpointsController {
    const NAME: &'static str = "endpoints";

    fn watches(&self) -> &'static [&'static str] {
        &["services", "pods"]
    }

    fn keys_for(&self, change: &Change) -> Vec<Key> {
        if &*change.resource == "pods" {
            return vec![(change.namespace.clone(), ALL.to_string())];
        }
        vec![key_of(change)]
    }

    async fn all_keys(&self) -> Result<Vec<Key>, ApiError> {
        let (items, _) = self.objects.list_all(core("services"), None).await?;
        let (eps, _) = self.objects.list_all(self.endpoints, None).await?;
        Ok(items
            .iter()
            .chain(eps.iter())
            .filter_map(object_key)
            .collect())
    }

    async fn reconcile(&self, (ns, name): &Key) -> Result<Requeue, ApiError> {
        // The namespace's pods and slices, once for every Service this reconcile handles.
        let (pods, _) = self.objects.list_all(core("pods"), Some(ns)).await?;
        let (slices, _) = self.objects.list_all(self.slices, Some(ns)).await?;
        if name == ALL {
            let (services, _) = self.objects.list_all(core("services"), Some(ns)).await?;
            for key in services.iter().filter_map(object_key) {
                self.reconcile_service(ns, &key.1, &pods, &slices).await?;
            }
            return Ok(None);
        }
        self.reconcile_service(ns, name, &pods, &slices).await?;
        Ok(None)
    }
}
