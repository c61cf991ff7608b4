//! Deployment: owns one ReplicaSet per pod template (named by the template's hash, adopting orphans its
//! selector matches) and rolls from the old ones to the current one: RollingUpdate within maxSurge and
//! maxUnavailable, or Recreate; paused, progress deadline, revision history. The arithmetic is in `rollout`,
//! the status in `status`.

mod rollout;
mod status;

use std::collections::BTreeMap;
use std::sync::Arc;

use herd_api::resources::ResourceInfo;
use k8s_openapi::Resource;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::{Value, json};

use self::rollout::{RecreateStep, RsState};
use super::replicaset::{
    Claimant, SelectorCache, changed_owner, claim, controller_reference, key_of_meta,
    label_selector, read_owner, resource_of,
};
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
            deploy: resource_of::<Deployment>(),
            rs: resource_of::<ReplicaSet>(),
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
fn find_new_rs<'a>(
    owned: &'a [Arc<ReplicaSet>],
    template: &PodTemplateSpec,
    rs_name: &str,
) -> Option<&'a Arc<ReplicaSet>> {
    let wanted = comparable(template);
    let mut same: Vec<&Arc<ReplicaSet>> = owned
        .iter()
        .filter(|rs| {
            rs.spec
                .template
                .as_ref()
                .is_some_and(|t| comparable(t) == wanted)
        })
        .collect();
    same.sort_by_key(|rs| {
        (
            rs.metadata.creation_timestamp.clone(),
            name_of(&rs.metadata),
        )
    });
    same.first()
        .copied()
        .or_else(|| owned.iter().find(|rs| name_of(&rs.metadata) == rs_name))
}

/// A pod template as compared by [`find_new_rs`]: without the `pod-template-hash` label the Deployment adds
/// to its ReplicaSets', and without empty values (a template that round-tripped through a client).
fn comparable(template: &PodTemplateSpec) -> Value {
    let mut t = serde_json::to_value(template).unwrap_or_default();
    if let Some(labels) = t
        .get_mut("metadata")
        .and_then(|m| m.get_mut("labels"))
        .and_then(Value::as_object_mut)
    {
        labels.remove(POD_TEMPLATE_HASH);
    }
    without_empty(&t)
}

const POD_TEMPLATE_HASH: &str = "pod-template-hash";

fn annotations(meta: &ObjectMeta) -> &BTreeMap<String, String> {
    static NONE: BTreeMap<String, String> = BTreeMap::new();
    meta.annotations.as_ref().unwrap_or(&NONE)
}

fn revision(rs: &ReplicaSet) -> i64 {
    annotations(&rs.metadata)
        .get(REVISION)
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

fn name_of(meta: &ObjectMeta) -> &str {
    meta.name.as_deref().unwrap_or_default()
}

/// A ReplicaSet's `spec.replicas` as the rollout counts it (unset: none).
fn spec_replicas(rs: &ReplicaSet) -> i64 {
    rs.spec.replicas.map_or(0, i64::from)
}

/// One of a ReplicaSet's status counts (unset: none).
fn status_count(
    rs: &ReplicaSet,
    count: fn(&k8s_openapi::api::apps::v1::ReplicaSetStatus) -> Option<i32>,
) -> i64 {
    rs.status.as_ref().and_then(count).map_or(0, i64::from)
}

impl Controller for Deployments {
    const NAME: &'static str = "deployment";

    fn watches(&self) -> &'static [&'static str] {
        &["deployments.apps", "replicasets.apps"]
    }

    fn keys_for(&self, change: &Change) -> Vec<Key> {
        if &*change.resource == "replicasets.apps" {
            return self.selectors.owners_to_wake(change, Deployment::KIND);
        }
        let selector =
            changed_owner::<Deployment>(change).and_then(|d| label_selector(&d.spec.selector));
        self.selectors.observe(key_of(change), selector);
        vec![key_of(change)]
    }

    async fn all_keys(&self) -> Result<Vec<Key>, ApiError> {
        let items = self.caches.store::<Deployment>().state();
        self.selectors.reset(
            items.iter().filter_map(|d| {
                Some((key_of_meta(&d.metadata)?, label_selector(&d.spec.selector)?))
            }),
        );
        Ok(items
            .iter()
            .filter_map(|d| key_of_meta(&d.metadata))
            .collect())
    }

    async fn reconcile(&self, (ns, name): &Key) -> Result<Requeue, ApiError> {
        let Some((d, d_json)) = read_owner::<Deployment>(&self.caches, self.deploy, ns, name)
        else {
            return Ok(None);
        };
        if d.metadata.deletion_timestamp.is_some() {
            return Ok(None);
        }
        let spec = Spec::of(&d);
        // The name of the current template's ReplicaSet hashes the template as stored.
        let hash = template_hash(&d_json["spec"]["template"]);
        let rs_name = format!("{name}-{hash}");
        let all_rs = self.caches.store::<ReplicaSet>().list(Some(ns));
        let owned = claim(
            &self.objects,
            self.rs,
            &Claimant::of(&*d),
            label_selector(&d.spec.selector).as_ref(),
            all_rs,
        )
        .await?;
        let max_revision = owned.iter().map(|rs| revision(rs)).max().unwrap_or(0);
        let mut new_rs = find_new_rs(&owned, &d.spec.template, &rs_name).cloned();
        let new_name = new_rs.as_ref().map(|rs| name_of(&rs.metadata).to_string());
        let old: Vec<&Arc<ReplicaSet>> = owned
            .iter()
            .filter(|rs| Some(name_of(&rs.metadata)) != new_name.as_deref())
            .collect();
        let old_states: Vec<RsState> = old.iter().map(|rs| rs_state(rs)).collect();
        let stale = owned.iter().any(|rs| {
            rs.status
                .as_ref()
                .and_then(|s| s.observed_generation)
                .unwrap_or(0)
                < rs.metadata.generation.unwrap_or(0).max(1)
        });
        let mut created = false;
        if spec.paused {
            // Paused: no rollout; a scale applies to the current ReplicaSet only.
            let current = new_rs
                .as_ref()
                .or_else(|| owned.iter().max_by_key(|rs| revision(rs)));
            if let Some(current) = current {
                let total: i64 = owned.iter().map(|rs| spec_replicas(rs)).sum();
                let to = (spec_replicas(current) + spec.replicas - total).max(0);
                self.scale(&d_json, &spec, current, to).await?;
            }
        } else if spec.recreate {
            let old_uids: Vec<&str> = old
                .iter()
                .filter_map(|rs| rs.metadata.uid.as_deref())
                .collect();
            // Pods stay JSON.
            let old_pods_running = old_uids.iter().any(|u| {
                self.caches
                    .controlled_by(u)
                    .iter()
                    .any(|p| !matches!(p["status"]["phase"].as_str(), Some("Succeeded" | "Failed")))
            });
            match rollout::recreate_step(&old_states, old_pods_running) {
                RecreateStep::ScaleDownOld(names) => {
                    for rs in old
                        .iter()
                        .filter(|rs| names.iter().any(|n| n == name_of(&rs.metadata)))
                    {
                        self.scale(&d_json, &spec, rs, 0).await?;
                    }
                }
                RecreateStep::WaitForOldPods => {}
                RecreateStep::ScaleUpNew => match &new_rs {
                    None => {
                        new_rs = self
                            .create_rs(
                                &d,
                                &d_json,
                                &spec,
                                &rs_name,
                                &hash,
                                spec.replicas,
                                max_revision,
                            )
                            .await?;
                        created = new_rs.is_some();
                    }
                    Some(rs) => {
                        self.scale(&d_json, &spec, rs, spec.replicas).await?;
                    }
                },
            }
        } else {
            let new_spec = new_rs.as_ref().map_or(0, |rs| spec_replicas(rs));
            let new_pods = new_rs
                .as_ref()
                .map_or(0, |rs| status_count(rs, |s| Some(s.replicas)));
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
                        .create_rs(&d, &d_json, &spec, &rs_name, &hash, target, max_revision)
                        .await?;
                    created = new_rs.is_some();
                    true
                }
                Some(rs) => self.scale(&d_json, &spec, rs, target).await? && target > new_spec,
            };
            // Like kube, old ReplicaSets wait for the next pass after a scale-up, and for fresh statuses.
            if !scaled_up && !stale {
                let new_available = new_rs
                    .as_ref()
                    .map_or(0, |rs| status_count(rs, |s| s.available_replicas));
                let plan = rollout::old_rs_scale_down(
                    spec.replicas,
                    spec.max_unavailable,
                    target,
                    new_available,
                    &old_states,
                );
                for (rs_to_scale, to) in plan {
                    if let Some(rs) = old.iter().find(|rs| name_of(&rs.metadata) == rs_to_scale) {
                        self.scale(&d_json, &spec, rs, to).await?;
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
            new_rs: new_rs.as_ref().map(|rs| name_of(&rs.metadata)),
            created,
            deadline: spec.deadline,
            now: jiff::Timestamp::now(),
        };
        let status = status::compute(&d, &owned, &inputs);
        let counted = |n: Option<i32>| n.map_or(0, i64::from);
        let complete = counted(status.updated_replicas) == spec.replicas
            && counted(status.replicas) == spec.replicas
            && counted(status.available_replicas) == spec.replicas;
        if spec.paused || complete {
            self.clean_history(ns, &old, spec.history_limit).await?;
        }
        let check_again = status::until_deadline(&status, spec.deadline, jiff::Timestamp::now());
        let status = serde_json::to_value(&status)
            .map_err(|e| ApiError::Internal(format!("encoding a Deployment status: {e}")))?;
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
    fn of(d: &Deployment) -> Self {
        let spec = &d.spec;
        let replicas = spec.replicas.map_or(1, i64::from).max(0);
        let strategy = spec.strategy.as_ref();
        let recreate = strategy.and_then(|s| s.type_.as_deref()) == Some("Recreate");
        let (max_surge, max_unavailable) = if recreate {
            (0, 0)
        } else {
            let rolling = strategy.and_then(|s| s.rolling_update.as_ref());
            rollout::fenceposts(
                replicas,
                rolling.and_then(|r| r.max_surge.as_ref()),
                rolling.and_then(|r| r.max_unavailable.as_ref()),
            )
        };
        let deadline = spec.progress_deadline_seconds.map_or(600, i64::from);
        Self {
            replicas,
            paused: spec.paused == Some(true),
            recreate,
            max_surge,
            max_unavailable,
            min_ready: spec.min_ready_seconds.map_or(0, i64::from),
            deadline: (deadline != i64::from(i32::MAX)).then_some(deadline),
            history_limit: spec.revision_history_limit.map_or(10, i64::from),
        }
    }
}

fn rs_state(rs: &ReplicaSet) -> RsState {
    let spec = spec_replicas(rs);
    RsState {
        name: name_of(&rs.metadata).to_string(),
        revision: revision(rs),
        spec,
        available: status_count(rs, |s| s.available_replicas).min(spec),
        pods: status_count(rs, |s| Some(s.replicas)),
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
        d: &Deployment,
        current: Option<&Arc<ReplicaSet>>,
        max_revision: i64,
    ) -> Result<(), ApiError> {
        let revision_now = match current {
            None => max_revision + 1,
            Some(rs) if revision(rs) < max_revision => {
                let next = (max_revision + 1).to_string();
                self.objects
                    .edit(self.rs, ns, name_of(&rs.metadata), |rs| {
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
        if annotations(&d.metadata).get(REVISION) != Some(&want) {
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
    /// ScalingReplicaSet event about Deployment `d`. Returns whether anything changed.
    async fn scale(
        &self,
        d: &Value,
        spec: &Spec,
        rs: &ReplicaSet,
        to: i64,
    ) -> Result<bool, ApiError> {
        let from = spec_replicas(rs);
        if from == to {
            return Ok(false);
        }
        let (ns, rs_name) = key_of_meta(&rs.metadata).unwrap_or_default();
        let (desired, max) = (
            spec.replicas.to_string(),
            (spec.replicas + spec.max_surge).to_string(),
        );
        let changed = self
            .objects
            .edit(self.rs, &ns, &rs_name, |rs| {
                rs["spec"]["replicas"] = json!(to);
                bump_generation(rs);
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
        tracing::debug!(replicaset = %format!("{ns}/{rs_name}"), from, to, changed, "scaled a ReplicaSet");
        if changed {
            let dir = if to > from { "up" } else { "down" };
            let msg = format!("Scaled {dir} replica set {rs_name} from {from} to {to}");
            self.recorder.normal(d, "ScalingReplicaSet", &msg).await;
        }
        Ok(changed)
    }

    /// Creates the ReplicaSet of the current template with `replicas` and the next revision. `None` when a
    /// ReplicaSet of that name exists but is not this Deployment's.
    #[allow(clippy::too_many_arguments)]
    async fn create_rs(
        &self,
        d: &Deployment,
        d_json: &Value,
        spec: &Spec,
        rs_name: &str,
        hash: &str,
        replicas: i64,
        max_revision: i64,
    ) -> Result<Option<Arc<ReplicaSet>>, ApiError> {
        let ns = d.metadata.namespace.clone().unwrap_or_default();
        // The template and selector are copied as stored.
        let mut template = d_json["spec"]["template"].clone();
        if template.is_null() {
            template = json!({});
        }
        template["metadata"]["labels"][POD_TEMPLATE_HASH] = json!(hash);
        let mut selector = d_json["spec"]["selector"].clone();
        if selector.is_null() {
            selector = json!({});
        }
        selector["matchLabels"][POD_TEMPLATE_HASH] = json!(hash);
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
                "ownerReferences": [controller_reference(d)],
            },
            "spec": rs_spec,
        });
        match self.objects.create(self.rs, Some(&ns), rs, false).await {
            Ok(created) => {
                let msg = format!("Scaled up replica set {rs_name} from 0 to {replicas}");
                self.recorder
                    .normal(d_json, "ScalingReplicaSet", &msg)
                    .await;
                let created = serde_json::from_value(created).map_err(|e| {
                    ApiError::Internal(format!("decoding the ReplicaSet created: {e}"))
                })?;
                Ok(Some(Arc::new(created)))
            }
            Err(ApiError::AlreadyExists { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn sync_min_ready(
        &self,
        ns: &str,
        rs: &ReplicaSet,
        min_ready: i64,
    ) -> Result<(), ApiError> {
        if rs.spec.min_ready_seconds.map_or(0, i64::from) == min_ready {
            return Ok(());
        }
        self.objects
            .edit(self.rs, ns, name_of(&rs.metadata), |rs| {
                rs["spec"]["minReadySeconds"] = json!(min_ready);
                bump_generation(rs);
                true
            })
            .await?;
        Ok(())
    }

    /// revisionHistoryLimit: deletes the oldest fully scaled-down old ReplicaSets beyond the limit.
    async fn clean_history(
        &self,
        ns: &str,
        old: &[&Arc<ReplicaSet>],
        limit: i64,
    ) -> Result<(), ApiError> {
        let states: Vec<(RsState, i64)> = old
            .iter()
            .filter(|rs| {
                rs.status
                    .as_ref()
                    .and_then(|s| s.observed_generation)
                    .unwrap_or(0)
                    >= rs.metadata.generation.unwrap_or(0)
                    && rs.metadata.deletion_timestamp.is_none()
            })
            .map(|rs| (rs_state(rs), status_count(rs, |s| Some(s.replicas))))
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

/// A spec change written by the controller advances the object's generation, as an API update's would.
fn bump_generation(obj: &mut Value) {
    let generation = obj["metadata"]["generation"].as_i64().unwrap_or(0);
    obj["metadata"]["generation"] = json!(generation + 1);
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
            // As a template that round-tripped through a client (`rollout undo`) comes back.
            t["spec"]["containers"][0]["resources"] = json!({});
            let rs = json!({"metadata": {"name": name, "creationTimestamp": created},
                "spec": {"template": t}});
            Arc::new(serde_json::from_value::<ReplicaSet>(rs).unwrap())
        };
        let owned = [
            rs("web-new", "2024-01-01T00:00:02Z", "x:1"),
            rs("web-old", "2024-01-01T00:00:01Z", "x:1"),
            rs("web-v2", "2024-01-01T00:00:03Z", "x:2"),
        ];
        let found = |image: &str, by_name: &str| {
            let template: PodTemplateSpec = serde_json::from_value(template(image)).unwrap();
            find_new_rs(&owned, &template, by_name).map(|rs| name_of(&rs.metadata).to_string())
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
