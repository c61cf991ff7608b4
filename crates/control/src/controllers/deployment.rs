//! Deployment: owns one ReplicaSet per pod template (named by the template's hash) and scales the current
//! one to `replicas`, older ones to zero.

use herd_api::resources::{self, ResourceInfo};
use serde_json::{Value, json};

use super::replicaset::object_key;
use super::{Controller, Key, controller_owner, is_owned_by, key_of};
use crate::error::ApiError;
use crate::events::Recorder;
use crate::objects::{Objects, now};
use crate::store::Change;

pub struct Deployments {
    objects: Objects,
    recorder: Recorder,
    deploy: &'static ResourceInfo,
    rs: &'static ResourceInfo,
}

impl Deployments {
    pub fn new(objects: Objects) -> Self {
        Self {
            recorder: Recorder::new(objects.clone(), "deployment-controller"),
            objects,
            deploy: resources::by_path("apps", "v1", "deployments").expect("deployments"),
            rs: resources::by_path("apps", "v1", "replicasets").expect("replicasets"),
        }
    }
}

/// A short, stable hash of the pod template, spelled with the alphabet Kubernetes uses for names.
pub fn template_hash(template: &Value) -> String {
    // serde_json maps are sorted, so equal templates serialise equally; empty values are dropped so a
    // template that round-tripped through a client (`resources: {}`, `creationTimestamp: null`, as
    // `kubectl rollout undo` sends) hashes like the original.
    let text = serde_json::to_string(&without_empty(template)).unwrap_or_default();
    let mut h: u32 = 0x811c_9dc5;
    for b in text.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut out = String::new();
    let mut n = h;
    while out.len() < 10 && (n > 0 || out.is_empty()) {
        out.push(ALPHABET[(n % ALPHABET.len() as u32) as usize] as char);
        n /= ALPHABET.len() as u32;
    }
    out
}

/// A copy without nulls, empty objects and empty arrays.
fn without_empty(v: &Value) -> Value {
    match v {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), without_empty(v)))
                .filter(|(_, v)| !is_empty(v))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(without_empty).collect()),
        other => other.clone(),
    }
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

fn revision(rs: &Value) -> i64 {
    rs.pointer("/metadata/annotations/deployment.kubernetes.io~1revision")
        .and_then(Value::as_str)
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

impl Controller for Deployments {
    const NAME: &'static str = "deployment";

    fn watches(&self) -> &'static [&'static str] {
        &["deployments.apps", "replicasets.apps"]
    }

    fn keys_for(&self, change: &Change) -> Vec<Key> {
        if &*change.resource == "replicasets.apps" {
            return controller_owner(&change.object, "Deployment")
                .map(|d| (change.namespace.clone(), d))
                .into_iter()
                .collect();
        }
        vec![key_of(change)]
    }

    async fn all_keys(&self) -> Result<Vec<Key>, ApiError> {
        let (items, _) = self.objects.store().list(&self.deploy.key(), None).await?;
        Ok(items.iter().filter_map(object_key).collect())
    }

    async fn reconcile(&self, (ns, name): &Key) -> Result<(), ApiError> {
        let Some(d) = self
            .objects
            .store()
            .get(&self.deploy.key(), ns, name)
            .await?
        else {
            return Ok(());
        };
        if d.pointer("/metadata/deletionTimestamp").is_some() {
            return Ok(());
        }
        let uid = d
            .pointer("/metadata/uid")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let replicas = d
            .pointer("/spec/replicas")
            .and_then(Value::as_i64)
            .unwrap_or(1);
        let template = d.pointer("/spec/template").cloned().unwrap_or(json!({}));
        let hash = template_hash(&template);
        let rs_name = format!("{name}-{hash}");
        let (all_rs, _) = self.objects.store().list(&self.rs.key(), Some(ns)).await?;
        let owned: Vec<Value> = all_rs
            .into_iter()
            .filter(|rs| is_owned_by(rs, &uid))
            .collect();
        let max_revision = owned.iter().map(revision).max().unwrap_or(0);
        let current = owned
            .iter()
            .find(|rs| rs.pointer("/metadata/name").and_then(Value::as_str) == Some(&rs_name));
        match current {
            None => {
                let mut template = template.clone();
                template["metadata"]["labels"]["pod-template-hash"] = json!(hash);
                let mut selector = d.pointer("/spec/selector").cloned().unwrap_or(json!({}));
                selector["matchLabels"]["pod-template-hash"] = json!(hash);
                let mut labels = d
                    .pointer("/spec/template/metadata/labels")
                    .cloned()
                    .unwrap_or(json!({}));
                labels["pod-template-hash"] = json!(hash);
                let rs = json!({
                    "apiVersion": "apps/v1",
                    "kind": "ReplicaSet",
                    "metadata": {
                        "name": rs_name,
                        "namespace": ns,
                        "labels": labels,
                        "annotations": {
                            "deployment.kubernetes.io/revision": (max_revision + 1).to_string(),
                            "deployment.kubernetes.io/desired-replicas": replicas.to_string(),
                        },
                        "ownerReferences": [{
                            "apiVersion": "apps/v1", "kind": "Deployment", "name": name, "uid": uid,
                            "controller": true, "blockOwnerDeletion": true,
                        }],
                    },
                    "spec": {"replicas": replicas, "selector": selector, "template": template},
                });
                match self.objects.create(self.rs, Some(ns), rs, false).await {
                    Ok(_) => {
                        let msg = format!("Scaled up replica set {rs_name} from 0 to {replicas}");
                        self.recorder.normal(&d, "ScalingReplicaSet", &msg).await;
                    }
                    Err(ApiError::AlreadyExists { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
            Some(rs) if rs.pointer("/spec/replicas").and_then(Value::as_i64) != Some(replicas) => {
                let from = rs
                    .pointer("/spec/replicas")
                    .and_then(Value::as_i64)
                    .unwrap_or(0);
                self.objects
                    .edit(self.rs, ns, &rs_name, |rs| {
                        rs["spec"]["replicas"] = json!(replicas);
                        true
                    })
                    .await?;
                let dir = if replicas > from { "up" } else { "down" };
                let msg = format!("Scaled {dir} replica set {rs_name} from {from} to {replicas}");
                self.recorder.normal(&d, "ScalingReplicaSet", &msg).await;
            }
            Some(_) => {}
        }
        self.sync_revisions(ns, name, &d, current, max_revision)
            .await?;
        for old in owned
            .iter()
            .filter(|rs| rs.pointer("/metadata/name").and_then(Value::as_str) != Some(&rs_name))
        {
            if old.pointer("/spec/replicas").and_then(Value::as_i64) != Some(0)
                && let Some(old_name) = old.pointer("/metadata/name").and_then(Value::as_str)
            {
                let from = old
                    .pointer("/spec/replicas")
                    .and_then(Value::as_i64)
                    .unwrap_or(0);
                self.objects
                    .edit(self.rs, ns, old_name, |rs| {
                        rs["spec"]["replicas"] = json!(0);
                        true
                    })
                    .await?;
                let msg = format!("Scaled down replica set {old_name} from {from} to 0");
                self.recorder.normal(&d, "ScalingReplicaSet", &msg).await;
            }
        }
        self.update_status(ns, name, &d, &owned, &rs_name, replicas)
            .await
    }
}

const REVISION: &str = "deployment.kubernetes.io/revision";

impl Deployments {
    /// The current ReplicaSet carries the newest revision (an older template brought back by `rollout undo`
    /// becomes the newest again), and the Deployment carries its current ReplicaSet's revision.
    async fn sync_revisions(
        &self,
        ns: &str,
        name: &str,
        d: &Value,
        current: Option<&Value>,
        max_revision: i64,
    ) -> Result<(), ApiError> {
        let revision_now = match current {
            None => max_revision + 1,
            Some(rs) if revision(rs) < max_revision => {
                let rs_name = rs
                    .pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let next = (max_revision + 1).to_string();
                self.objects
                    .edit(self.rs, ns, rs_name, |rs| {
                        rs["metadata"]["annotations"][REVISION] = json!(next);
                        true
                    })
                    .await?;
                max_revision + 1
            }
            Some(rs) => revision(rs),
        };
        let want = revision_now.to_string();
        if d.pointer("/metadata/annotations")
            .and_then(|a| a.get(REVISION))
            .and_then(Value::as_str)
            != Some(&want)
        {
            self.objects
                .edit(self.deploy, ns, name, |d| {
                    if !d["metadata"]["annotations"].is_object() {
                        d["metadata"]["annotations"] = json!({});
                    }
                    d["metadata"]["annotations"][REVISION] = json!(want);
                    true
                })
                .await?;
        }
        Ok(())
    }

    async fn update_status(
        &self,
        ns: &str,
        name: &str,
        d: &Value,
        owned: &[Value],
        rs_name: &str,
        replicas: i64,
    ) -> Result<(), ApiError> {
        let sum = |field: &str| {
            owned
                .iter()
                .map(|rs| {
                    rs.pointer(&format!("/status/{field}"))
                        .and_then(Value::as_i64)
                        .unwrap_or(0)
                })
                .sum::<i64>()
        };
        let updated = owned
            .iter()
            .find(|rs| rs.pointer("/metadata/name").and_then(Value::as_str) == Some(rs_name))
            .and_then(|rs| rs.pointer("/status/replicas").and_then(Value::as_i64))
            .unwrap_or(0);
        let (total, ready, available) = (
            sum("replicas"),
            sum("readyReplicas"),
            sum("availableReplicas"),
        );
        let complete = updated == replicas && total == replicas && available == replicas;
        let old_conditions = d
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let condition = |ty: &str, status: &str, reason: &str, message: String| {
            let prev = old_conditions.iter().find(|c| c["type"] == ty);
            let unchanged = prev.is_some_and(|p| p["status"] == status && p["reason"] == reason);
            let transition = if unchanged {
                prev.and_then(|p| p.get("lastTransitionTime").cloned())
                    .unwrap_or(json!(now()))
            } else {
                json!(now())
            };
            let update = if unchanged {
                prev.and_then(|p| p.get("lastUpdateTime").cloned())
                    .unwrap_or(json!(now()))
            } else {
                json!(now())
            };
            json!({"type": ty, "status": status, "reason": reason, "message": message, "lastTransitionTime": transition, "lastUpdateTime": update})
        };
        let available_cond = if available >= replicas {
            condition(
                "Available",
                "True",
                "MinimumReplicasAvailable",
                "Deployment has minimum availability.".into(),
            )
        } else {
            condition(
                "Available",
                "False",
                "MinimumReplicasUnavailable",
                "Deployment does not have minimum availability.".into(),
            )
        };
        let progressing = if complete {
            condition(
                "Progressing",
                "True",
                "NewReplicaSetAvailable",
                format!("ReplicaSet \"{rs_name}\" has successfully progressed."),
            )
        } else {
            condition(
                "Progressing",
                "True",
                "ReplicaSetUpdated",
                format!("ReplicaSet \"{rs_name}\" is progressing."),
            )
        };
        let status = json!({
            "observedGeneration": d.pointer("/metadata/generation").cloned().unwrap_or(json!(1)),
            "replicas": total,
            "updatedReplicas": updated,
            "readyReplicas": ready,
            "availableReplicas": available,
            "unavailableReplicas": (total - available).max(0),
            "conditions": [available_cond, progressing],
        });
        self.objects
            .edit(self.deploy, ns, name, |d| {
                if d.get("status") == Some(&status) {
                    return false;
                }
                d["status"] = status;
                true
            })
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_hash_is_stable_and_sensitive() {
        let a = json!({"spec": {"containers": [{"name": "c", "image": "x:1"}]}});
        let b = json!({"spec": {"containers": [{"name": "c", "image": "x:2"}]}});
        assert_eq!(template_hash(&a), template_hash(&a.clone()));
        assert_ne!(template_hash(&a), template_hash(&b));
        let round_tripped = json!({"metadata": {"creationTimestamp": null}, "spec": {"containers": [{"name": "c", "image": "x:1", "resources": {}}]}});
        assert_eq!(template_hash(&a), template_hash(&round_tripped));
        assert!(template_hash(&a).chars().all(|c| c.is_ascii_alphanumeric()));
    }
}
