//! ReplicaSet: keeps `replicas` active pods matching its template alive.

use herd_api::resources::{self, ResourceInfo};
use serde_json::{Value, json};

use super::{Controller, Key, controller_owner, is_owned_by, key_of, pod_is_active, pod_is_ready};
use crate::error::ApiError;
use crate::events::Recorder;
use crate::objects::{DeleteOptions, Objects};
use crate::store::Change;

pub struct ReplicaSets {
    objects: Objects,
    recorder: Recorder,
    rs: &'static ResourceInfo,
    pods: &'static ResourceInfo,
}

impl ReplicaSets {
    pub fn new(objects: Objects) -> Self {
        Self {
            recorder: Recorder::new(objects.clone(), "replicaset-controller"),
            objects,
            rs: resources::by_path("apps", "v1", "replicasets").expect("replicasets"),
            pods: resources::by_path("", "v1", "pods").expect("pods"),
        }
    }
}

/// Deletion order when scaling down: unscheduled, then pending, then not ready, then ready; newest first.
fn deletion_rank(pod: &Value) -> (u8, std::cmp::Reverse<String>) {
    let rank = if pod
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        0
    } else if pod.pointer("/status/phase") == Some(&json!("Pending")) {
        1
    } else if !pod_is_ready(pod) {
        2
    } else {
        3
    };
    let created = pod
        .pointer("/metadata/creationTimestamp")
        .and_then(Value::as_str)
        .unwrap_or_default();
    (rank, std::cmp::Reverse(created.to_string()))
}

impl Controller for ReplicaSets {
    const NAME: &'static str = "replicaset";

    fn watches(&self) -> &'static [&'static str] {
        &["replicasets.apps", "pods"]
    }

    fn keys_for(&self, change: &Change) -> Vec<Key> {
        if &*change.resource == "pods" {
            return controller_owner(&change.object, "ReplicaSet")
                .map(|rs| (change.namespace.clone(), rs))
                .into_iter()
                .collect();
        }
        vec![key_of(change)]
    }

    async fn all_keys(&self) -> Result<Vec<Key>, ApiError> {
        let (items, _) = self.objects.store().list(&self.rs.key(), None).await?;
        Ok(items.iter().filter_map(object_key).collect())
    }

    async fn reconcile(&self, (ns, name): &Key) -> Result<(), ApiError> {
        let Some(rs) = self.objects.store().get(&self.rs.key(), ns, name).await? else {
            return Ok(());
        };
        if rs.pointer("/metadata/deletionTimestamp").is_some() {
            return Ok(());
        }
        let uid = rs
            .pointer("/metadata/uid")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let (pods, _) = self.objects.store().list("pods", Some(ns)).await?;
        let mut active: Vec<Value> = pods
            .into_iter()
            .filter(|p| is_owned_by(p, &uid) && pod_is_active(p))
            .collect();
        let want = rs
            .pointer("/spec/replicas")
            .and_then(Value::as_i64)
            .unwrap_or(1)
            .max(0) as usize;
        if active.len() < want {
            let template = rs.pointer("/spec/template").cloned().unwrap_or(Value::Null);
            for _ in active.len()..want {
                let pod = json!({
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "metadata": {
                        "generateName": format!("{name}-"),
                        "namespace": ns,
                        "labels": template.pointer("/metadata/labels").cloned().unwrap_or(json!({})),
                        "annotations": template.pointer("/metadata/annotations").cloned().unwrap_or(json!({})),
                        "ownerReferences": [{
                            "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": name, "uid": uid,
                            "controller": true, "blockOwnerDeletion": true,
                        }],
                    },
                    "spec": template.get("spec").cloned().unwrap_or(json!({})),
                });
                let created = self.objects.create(self.pods, Some(ns), pod, false).await?;
                let pod_name = created
                    .pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                self.recorder
                    .normal(&rs, "SuccessfulCreate", &format!("Created pod: {pod_name}"))
                    .await;
                active.push(created);
            }
        } else if active.len() > want {
            active.sort_by_key(deletion_rank);
            let surplus = active.len() - want;
            for pod in active.drain(..surplus) {
                if let Some(pod_name) = pod.pointer("/metadata/name").and_then(Value::as_str) {
                    match self
                        .objects
                        .delete(self.pods, Some(ns), pod_name, DeleteOptions::default())
                        .await
                    {
                        Ok(_) => {
                            self.recorder
                                .normal(
                                    &rs,
                                    "SuccessfulDelete",
                                    &format!("Deleted pod: {pod_name}"),
                                )
                                .await;
                        }
                        Err(ApiError::NotFound { .. }) => {}
                        Err(e) => return Err(e),
                    }
                }
            }
        }
        let ready = active.iter().filter(|p| pod_is_ready(p)).count() as i64;
        let status = json!({
            "replicas": active.len(),
            "fullyLabeledReplicas": active.len(),
            "readyReplicas": ready,
            "availableReplicas": ready,
            "observedGeneration": rs.pointer("/metadata/generation").cloned().unwrap_or(json!(1)),
        });
        self.objects
            .edit(self.rs, ns, name, |rs| {
                if rs.get("status") == Some(&status) {
                    return false;
                }
                rs["status"] = status;
                true
            })
            .await?;
        Ok(())
    }
}

pub(super) fn object_key(obj: &Value) -> Option<Key> {
    let md = obj.get("metadata")?;
    Some((
        md.get("namespace")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        md.get("name")?.as_str()?.to_string(),
    ))
}
