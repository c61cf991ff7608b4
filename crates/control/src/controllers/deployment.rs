//! Deployment: owns one ReplicaSet per pod template (named by the template's hash, adopting orphans its
//! selector matches) and rolls from the old ones to the current one: RollingUpdate within maxSurge and
//! maxUnavailable, or Recreate; paused, progress deadline, revision history. The arithmetic is in `rollout`,
//! the status in `status`.

mod rollout;
mod status;

use std::sync::Arc;

use herd_api::resources::{self, ResourceInfo};
use serde_json::{Value, json};

use self::rollout::{RecreateStep, RsState};
use super::replicaset::{SelectorCache, claim, object_key, owner_reference};
use super::{Controller, Informers, Key, Requeue, key_of};
use crate::error::ApiError;
use crate::events::Recorder;
use crate::objects::Change;
use crate::objects::{DeleteOptions, Objects};

pub struct Deployments {
    objects: Objects,
    recorder: Recorder,
    deploy: &'static ResourceInfo,
    rs: &'static ResourceInfo,
    selectors: SelectorCache,
    caches: Arc<Informers>,
}

impl Deployments {
    pub fn new(objects: Objects, caches: Arc<Informers>) -> Self {
        Self {
            recorder: Recorder::new(objects.clone(), "deployment-controller"),
            objects,
            caches,
            deploy: resources::by_path("apps", "v1", "deployments").expect("deployments"),
            rs: resources::by_path("apps", "v1", "replicasets").expect("replicasets"),
            selectors: SelectorCache::default(),
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

/// The ReplicaSet of the Deployment's current template (kube's `FindNewReplicaSet`): the oldest whose
/// template equals it but for the `pod-template-hash` label (`EqualIgnoreHash`), so `rollout undo` scales
/// the old ReplicaSet back up; else the one named after the template's hash.
fn find_new_rs<'a>(owned: &'a [Value], template: &Value, rs_name: &str) -> Option<&'a Value> {
    let wanted = without_empty(&without_hash_label(template));
    let mut same: Vec<&Value> = owned
        .iter()
        .filter(|rs| {
            rs.pointer("/spec/template")
                .is_some_and(|t| without_empty(&without_hash_label(t)) == wanted)
        })
        .collect();
    same.sort_by_key(|rs| {
        (
            rs.pointer("/metadata/creationTimestamp")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            name_of(rs).to_string(),
        )
    });
    same.first()
        .copied()
        .or_else(|| owned.iter().find(|rs| name_of(rs) == rs_name))
}

/// A pod template without the `pod-template-hash` label the Deployment adds to its ReplicaSets'.
fn without_hash_label(template: &Value) -> Value {
    let mut t = template.clone();
    if let Some(labels) = t
        .pointer_mut("/metadata/labels")
        .and_then(Value::as_object_mut)
    {
        labels.remove(POD_TEMPLATE_HASH);
    }
    t
}

const POD_TEMPLATE_HASH: &str = "pod-template-hash";

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
            return self.selectors.owners_to_wake(change, "Deployment");
        }
        self.selectors.observe(change);
        vec![key_of(change)]
    }

    async fn all_keys(&self) -> Result<Vec<Key>, ApiError> {
        let items = self.caches.list(self.deploy, None);
        self.selectors.reset(&items);
        Ok(items.iter().filter_map(|d| object_key(d)).collect())
    }

    async fn reconcile(&self, (ns, name): &Key) -> Result<Requeue, ApiError> {
        let Some(d) = self.caches.get(self.deploy, ns, name) else {
            return Ok(None);
        };
        if d.pointer("/metadata/deletionTimestamp").is_some() {
            return Ok(None);
        }
        let spec = Spec::of(&d);
        let template = d.pointer("/spec/template").cloned().unwrap_or(json!({}));
        let hash = template_hash(&template);
        let rs_name = format!("{name}-{hash}");
        let all_rs: Vec<Value> = self
            .caches
            .list(self.rs, Some(ns))
            .into_iter()
            .map(Arc::unwrap_or_clone)
            .collect();
        let owned = claim(&self.objects, self.rs, &d, "Deployment", all_rs).await?;
        let max_revision = owned.iter().map(revision).max().unwrap_or(0);
        let mut new_rs = find_new_rs(&owned, &template, &rs_name).cloned();
        let new_name = new_rs.as_ref().map(|rs| name_of(rs).to_string());
        let old: Vec<&Value> = owned
            .iter()
            .filter(|rs| Some(name_of(rs)) != new_name.as_deref())
            .collect();
        let old_states: Vec<RsState> = old.iter().map(|rs| rs_state(rs)).collect();
        let stale = owned.iter().any(|rs| {
            int(rs, "/status/observedGeneration") < int(rs, "/metadata/generation").max(1)
        });
        let mut created = false;
        if spec.paused {
            // Paused: no rollout; a scale applies to the current ReplicaSet only.
            let current = new_rs
                .as_ref()
                .or_else(|| owned.iter().max_by_key(|rs| revision(rs)));
            if let Some(current) = current {
                let total: i64 = owned.iter().map(|rs| int(rs, "/spec/replicas")).sum();
                let to = (int(current, "/spec/replicas") + spec.replicas - total).max(0);
                self.scale(&d, &spec, current, to).await?;
            }
        } else if spec.recreate {
            let old_uids: Vec<&str> = old
                .iter()
                .filter_map(|rs| rs.pointer("/metadata/uid").and_then(Value::as_str))
                .collect();
            let old_pods_running = old_uids.iter().any(|u| {
                self.caches.controlled_by(u).iter().any(|p| {
                    !matches!(
                        p.pointer("/status/phase").and_then(Value::as_str),
                        Some("Succeeded" | "Failed")
                    )
                })
            });
            match rollout::recreate_step(&old_states, old_pods_running) {
                RecreateStep::ScaleDownOld(names) => {
                    for rs in old
                        .iter()
                        .filter(|rs| names.iter().any(|n| n == name_of(rs)))
                    {
                        self.scale(&d, &spec, rs, 0).await?;
                    }
                }
                RecreateStep::WaitForOldPods => {}
                RecreateStep::ScaleUpNew => match &new_rs {
                    None => {
                        new_rs = self
                            .create_rs(&d, &spec, &rs_name, &hash, spec.replicas, max_revision)
                            .await?;
                        created = new_rs.is_some();
                    }
                    Some(rs) => {
                        self.scale(&d, &spec, rs, spec.replicas).await?;
                    }
                },
            }
        } else {
            let new_spec = new_rs.as_ref().map_or(0, |rs| int(rs, "/spec/replicas"));
            let new_pods = new_rs.as_ref().map_or(0, |rs| int(rs, "/status/replicas"));
            let target = rollout::new_rs_replicas(
                spec.replicas,
                spec.max_surge,
                new_spec,
                new_pods,
                &old_states,
            );
            let scaled_up = match &new_rs {
                None => {
                    new_rs = self
                        .create_rs(&d, &spec, &rs_name, &hash, target, max_revision)
                        .await?;
                    created = new_rs.is_some();
                    true
                }
                Some(rs) => self.scale(&d, &spec, rs, target).await? && target > new_spec,
            };
            // Like kube, old ReplicaSets wait for the next pass after a scale-up, and for fresh statuses.
            if !scaled_up && !stale {
                let new_available = new_rs
                    .as_ref()
                    .map_or(0, |rs| int(rs, "/status/availableReplicas"));
                let plan = rollout::old_rs_scale_down(
                    spec.replicas,
                    spec.max_unavailable,
                    target,
                    new_available,
                    &old_states,
                );
                for (rs_to_scale, to) in plan {
                    if let Some(rs) = old.iter().find(|rs| name_of(rs) == rs_to_scale) {
                        self.scale(&d, &spec, rs, to).await?;
                    }
                }
            }
        }
        if let Some(rs) = &new_rs {
            self.sync_min_ready(ns, rs, spec.min_ready).await?;
            self.sync_revisions(ns, name, &d, Some(rs), max_revision)
                .await?;
        }
        let inputs = status::Inputs {
            replicas: spec.replicas,
            max_unavailable: spec.max_unavailable,
            paused: spec.paused,
            new_rs: new_rs.as_ref().map(name_of),
            created,
            deadline: spec.deadline,
            now: jiff::Timestamp::now(),
        };
        let status = status::compute(&d, &owned, &inputs);
        let complete = int(&status, "/updatedReplicas") == spec.replicas
            && int(&status, "/replicas") == spec.replicas
            && int(&status, "/availableReplicas") == spec.replicas;
        if spec.paused || complete {
            self.clean_history(ns, &old, spec.history_limit).await?;
        }
        let check_again = status::until_deadline(&status, spec.deadline, jiff::Timestamp::now());
        self.objects
            .edit(self.deploy, ns, name, |d| {
                if d.get("status") == Some(&status) {
                    return false;
                }
                d["status"] = status;
                true
            })
            .await?;
        Ok(check_again.filter(|_| !spec.paused))
    }
}

/// The parts of a Deployment's spec the rollout reads, with kube's defaults.
struct Spec {
    replicas: i64,
    paused: bool,
    recreate: bool,
    max_surge: i64,
    max_unavailable: i64,
    min_ready: i64,
    deadline: Option<i64>,
    history_limit: i64,
}

impl Spec {
    fn of(d: &Value) -> Self {
        let replicas = d
            .pointer("/spec/replicas")
            .and_then(Value::as_i64)
            .unwrap_or(1)
            .max(0);
        let recreate = d.pointer("/spec/strategy/type") == Some(&json!("Recreate"));
        let (max_surge, max_unavailable) = if recreate {
            (0, 0)
        } else {
            rollout::fenceposts(
                replicas,
                d.pointer("/spec/strategy/rollingUpdate/maxSurge"),
                d.pointer("/spec/strategy/rollingUpdate/maxUnavailable"),
            )
        };
        let deadline = d
            .pointer("/spec/progressDeadlineSeconds")
            .and_then(Value::as_i64)
            .unwrap_or(600);
        Self {
            replicas,
            paused: d.pointer("/spec/paused") == Some(&json!(true)),
            recreate,
            max_surge,
            max_unavailable,
            min_ready: int(d, "/spec/minReadySeconds"),
            deadline: (deadline != i64::from(i32::MAX)).then_some(deadline),
            history_limit: d
                .pointer("/spec/revisionHistoryLimit")
                .and_then(Value::as_i64)
                .unwrap_or(10),
        }
    }
}

fn int(v: &Value, ptr: &str) -> i64 {
    v.pointer(ptr).and_then(Value::as_i64).unwrap_or(0)
}

fn name_of(v: &Value) -> &str {
    v.pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

fn rs_state(rs: &Value) -> RsState {
    let spec = int(rs, "/spec/replicas");
    RsState {
        name: name_of(rs).to_string(),
        revision: revision(rs),
        spec,
        available: int(rs, "/status/availableReplicas").min(spec),
        pods: int(rs, "/status/replicas"),
    }
}

const REVISION: &str = "deployment.kubernetes.io/revision";
const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
/// kube's `revHistoryLimitInChars`: the longest revision-history annotation.
const REVISION_HISTORY_LIMIT: usize = 2000;

/// A revision-history annotation with `revision` appended, dropping the oldest entries to stay within
/// [`REVISION_HISTORY_LIMIT`] characters (kube's `SetNewReplicaSetAnnotations`).
fn with_revision(history: &str, revision: &str) -> String {
    if history.is_empty() {
        return revision.to_string();
    }
    let mut old: Vec<&str> = history.split(',').collect();
    let mut total = history.len() + revision.len() + 1;
    let mut start = 0;
    while total > REVISION_HISTORY_LIMIT && start < old.len() {
        total -= old[start].len() + 1;
        start += 1;
    }
    if total > REVISION_HISTORY_LIMIT {
        return history.to_string();
    }
    old.drain(..start);
    old.push(revision);
    old.join(",")
}

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
                        let annotations = &mut rs["metadata"]["annotations"];
                        let previous = annotations[REVISION].as_str().map(str::to_string);
                        annotations[REVISION] = json!(next);
                        // The revisions the ReplicaSet had before are kept, as kube keeps them.
                        if let Some(previous) = previous {
                            let history = annotations[REVISION_HISTORY].as_str().unwrap_or("");
                            annotations[REVISION_HISTORY] =
                                json!(with_revision(history, &previous));
                        }
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

    /// Sets a ReplicaSet's `spec.replicas` (bumping its generation, as an API update would) and records the
    /// ScalingReplicaSet event. Returns whether anything changed.
    async fn scale(&self, d: &Value, spec: &Spec, rs: &Value, to: i64) -> Result<bool, ApiError> {
        let from = int(rs, "/spec/replicas");
        if from == to {
            return Ok(false);
        }
        let (ns, rs_name) = object_key(rs).unwrap_or_default();
        let (desired, max) = (
            spec.replicas.to_string(),
            (spec.replicas + spec.max_surge).to_string(),
        );
        let changed = self
            .objects
            .edit(self.rs, &ns, &rs_name, |rs| {
                rs["spec"]["replicas"] = json!(to);
                rs["metadata"]["generation"] = json!(int(rs, "/metadata/generation") + 1);
                if !rs["metadata"]["annotations"].is_object() {
                    rs["metadata"]["annotations"] = json!({});
                }
                rs["metadata"]["annotations"]["deployment.kubernetes.io/desired-replicas"] =
                    json!(desired);
                rs["metadata"]["annotations"]["deployment.kubernetes.io/max-replicas"] = json!(max);
                true
            })
            .await?
            .is_some();
        if changed {
            let dir = if to > from { "up" } else { "down" };
            let msg = format!("Scaled {dir} replica set {rs_name} from {from} to {to}");
            self.recorder.normal(d, "ScalingReplicaSet", &msg).await;
        }
        Ok(changed)
    }

    /// Creates the ReplicaSet of the current template with `replicas` and the next revision. `None` when a
    /// ReplicaSet of that name exists but is not this Deployment's.
    async fn create_rs(
        &self,
        d: &Value,
        spec: &Spec,
        rs_name: &str,
        hash: &str,
        replicas: i64,
        max_revision: i64,
    ) -> Result<Option<Value>, ApiError> {
        let (ns, _) = object_key(d).unwrap_or_default();
        let mut template = d.pointer("/spec/template").cloned().unwrap_or(json!({}));
        template["metadata"]["labels"]["pod-template-hash"] = json!(hash);
        let mut selector = d.pointer("/spec/selector").cloned().unwrap_or(json!({}));
        selector["matchLabels"]["pod-template-hash"] = json!(hash);
        let labels = template["metadata"]["labels"].clone();
        let mut rs_spec = json!({"replicas": replicas, "selector": selector, "template": template});
        if spec.min_ready > 0 {
            rs_spec["minReadySeconds"] = json!(spec.min_ready);
        }
        let rs = json!({
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {
                "name": rs_name,
                "namespace": ns,
                "labels": labels,
                "annotations": {
                    REVISION: (max_revision + 1).to_string(),
                    "deployment.kubernetes.io/desired-replicas": spec.replicas.to_string(),
                    "deployment.kubernetes.io/max-replicas": (spec.replicas + spec.max_surge).to_string(),
                },
                "ownerReferences": [owner_reference(d, "Deployment")],
            },
            "spec": rs_spec,
        });
        match self.objects.create(self.rs, Some(&ns), rs, false).await {
            Ok(created) => {
                let msg = format!("Scaled up replica set {rs_name} from 0 to {replicas}");
                self.recorder.normal(d, "ScalingReplicaSet", &msg).await;
                Ok(Some(created))
            }
            Err(ApiError::AlreadyExists { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn sync_min_ready(&self, ns: &str, rs: &Value, min_ready: i64) -> Result<(), ApiError> {
        if int(rs, "/spec/minReadySeconds") == min_ready {
            return Ok(());
        }
        self.objects
            .edit(self.rs, ns, name_of(rs), |rs| {
                rs["spec"]["minReadySeconds"] = json!(min_ready);
                rs["metadata"]["generation"] = json!(int(rs, "/metadata/generation") + 1);
                true
            })
            .await?;
        Ok(())
    }

    /// revisionHistoryLimit: deletes the oldest fully scaled-down old ReplicaSets beyond the limit.
    async fn clean_history(&self, ns: &str, old: &[&Value], limit: i64) -> Result<(), ApiError> {
        let states: Vec<(RsState, i64)> = old
            .iter()
            .filter(|rs| {
                int(rs, "/status/observedGeneration") >= int(rs, "/metadata/generation")
                    && rs.pointer("/metadata/deletionTimestamp").is_none()
            })
            .map(|rs| (rs_state(rs), int(rs, "/status/replicas")))
            .collect();
        for rs_name in rollout::history_to_delete(&states, limit) {
            match self
                .objects
                .delete(self.rs, Some(ns), &rs_name, DeleteOptions::default())
                .await
            {
                Ok(_) | Err(ApiError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
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

    #[test]
    fn the_new_replica_set_is_the_oldest_with_the_template_but_for_its_hash_label() {
        let template = |image: &str| {
            json!({"metadata": {"labels": {"app": "web"}},
                   "spec": {"containers": [{"name": "c", "image": image}]}})
        };
        let rs = |name: &str, created: &str, image: &str| {
            let mut t = template(image);
            t["metadata"]["labels"][POD_TEMPLATE_HASH] = json!(name);
            t["metadata"]["creationTimestamp"] = Value::Null;
            json!({"metadata": {"name": name, "creationTimestamp": created}, "spec": {"template": t}})
        };
        let owned = [
            rs("web-new", "2024-01-01T00:00:02Z", "x:1"),
            rs("web-old", "2024-01-01T00:00:01Z", "x:1"),
            rs("web-v2", "2024-01-01T00:00:03Z", "x:2"),
        ];
        let found = |image: &str, by_name: &str| {
            find_new_rs(&owned, &template(image), by_name).map(|rs| name_of(rs).to_string())
        };
        assert_eq!(found("x:1", "web-hash1").as_deref(), Some("web-old"));
        assert_eq!(found("x:2", "web-hash2").as_deref(), Some("web-v2"));
        assert_eq!(found("x:3", "web-v2").as_deref(), Some("web-v2"));
        assert_eq!(found("x:3", "web-hash3"), None);
    }

    #[test]
    fn revision_history_keeps_the_newest_within_its_limit() {
        assert_eq!(with_revision("", "1"), "1");
        assert_eq!(with_revision("1", "3"), "1,3");
        let long = vec!["9"; 1000].join(",");
        let out = with_revision(&long, "12");
        assert!(
            out.len() <= REVISION_HISTORY_LIMIT && out.ends_with(",12"),
            "{out}"
        );
    }
}
