//! StatefulSet (kube's statefulset controller): pods with a stable identity — named `<set>-<ordinal>`,
//! with `hostname` the pod's name and `subdomain` the governing Service (so DNS answers
//! `web-0.web.<ns>.svc.<domain>`), labelled `statefulset.kubernetes.io/pod-name` and
//! `apps.kubernetes.io/pod-index` — and stable storage: a claim per volume claim template and ordinal,
//! made through the API before the pod and kept when the pod is replaced.
//!
//! Each sync adopts the orphan pods the selector matches and whose names are the set's, records the
//! template as a ControllerRevision ([`revision`]), decides from the pods' facts what to create and
//! delete ([`plan`]: OrderedReady or Parallel, RollingUpdate with a partition or OnDelete), puts the claims'
//! owners right for the retention policy ([`claims`]), writes the status, and trims the revision history.

mod claims;
mod plan;
mod revision;

use std::sync::Arc;

use herd_api::resources::{self, ResourceInfo};
use k8s_openapi::api::apps::v1::StatefulSet;
use serde_json::{Value, json};

use super::batch::{self, BURST_REPLICAS};
use super::replicaset::{
    Claimant, SelectorCache, changed_owner, claim, controller_reference, key_of_meta,
    label_selector, pod_is_available, read_owner, until_available,
};
use super::{
    Controller, Informers, Key, Requeue, controller_owner, is_owned_by, key_of, pod_is_ready,
};
use crate::error::ApiError;
use crate::events::{EventQueue, Note, Recorder};
use crate::objects::{Change, DeleteOptions, Objects};
use plan::{Health, PodFacts, SetFacts, Update, Why};
use revision::REVISION_LABEL;

const KIND: &str = "StatefulSet";
const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";

pub struct StatefulSets {
    objects: Objects,
    caches: Arc<Informers>,
    /// kube's pod and claim events, written in the background in batches.
    events: EventQueue,
    sets: &'static ResourceInfo,
    pods: &'static ResourceInfo,
    claims: &'static ResourceInfo,
    revisions: &'static ResourceInfo,
    selectors: SelectorCache,
}

impl StatefulSets {
    pub fn new(objects: Objects, caches: Arc<Informers>) -> Self {
        Self {
            events: EventQueue::spawn(Recorder::new(objects.clone(), "statefulset-controller")),
            objects,
            caches,
            sets: resources::by_path("apps", "v1", "statefulsets").expect("statefulsets"),
            pods: resources::by_path("", "v1", "pods").expect("pods"),
            claims: resources::by_path("", "v1", "persistentvolumeclaims").expect("claims"),
            revisions: resources::by_path("apps", "v1", "controllerrevisions")
                .expect("controllerrevisions"),
            selectors: SelectorCache::default(),
        }
    }
}

/// The set's revisions for this sync.
struct Revisions {
    current: String,
    current_template: Value,
    update: String,
    update_template: Value,
    collision_count: i32,
    /// Every revision the set owns: (name, number).
    all: Vec<(String, i64)>,
}

impl Controller for StatefulSets {
    const NAME: &'static str = "statefulset";

    fn watches(&self) -> &'static [&'static str] {
        &[
            "statefulsets.apps",
            "pods",
            "controllerrevisions.apps",
            "persistentvolumeclaims",
        ]
    }

    fn keys_for(&self, change: &Change) -> Vec<Key> {
        match &*change.resource {
            "pods" => self.selectors.owners_to_wake(change, KIND),
            "controllerrevisions.apps" => controller_owner(&change.object, KIND)
                .map(|set| (change.namespace.clone(), set))
                .into_iter()
                .collect(),
            // A claim gone (or going) may let a pod be made: the sets whose claims are named so.
            "persistentvolumeclaims" => self
                .caches
                .keys(self.sets)
                .into_iter()
                .filter(|(ns, set)| {
                    ns == &change.namespace && claim_of_set(&change.name, set).is_some()
                })
                .collect(),
            _ => {
                let selector = changed_owner::<StatefulSet>(change)
                    .and_then(|s| label_selector(&s.spec.selector));
                self.selectors.observe(key_of(change), selector);
                vec![key_of(change)]
            }
        }
    }

    async fn all_keys(&self) -> Result<Vec<Key>, ApiError> {
        let sets = self.caches.store::<StatefulSet>().state();
        self.selectors.reset(
            sets.iter().filter_map(|s| {
                Some((key_of_meta(&s.metadata)?, label_selector(&s.spec.selector)?))
            }),
        );
        Ok(sets
            .iter()
            .filter_map(|s| key_of_meta(&s.metadata))
            .collect())
    }

    async fn reconcile(&self, (ns, name): &Key) -> Result<Requeue, ApiError> {
        let Some((set, raw)) = read_owner::<StatefulSet>(&self.caches, self.sets, ns, name) else {
            return Ok(None);
        };
        if set.metadata.deletion_timestamp.is_some() {
            return Ok(None);
        }
        let uid = set.metadata.uid.clone().unwrap_or_default();
        let spec = &set.spec;
        // Pods it controls, and orphans whose names are the set's (kube's `isMemberOf`) to adopt.
        let candidates = self
            .caches
            .claimable(ns, &uid)
            .into_iter()
            .filter(|p| is_owned_by(p, &uid) || ordinal_of(p, name).is_some())
            .collect();
        let owned = claim(
            &self.objects,
            self.pods,
            &Claimant::of(&*set),
            label_selector(&spec.selector).as_ref(),
            candidates,
        )
        .await?;
        let revisions = self.revisions(&set, &raw, &uid).await?;

        let min_ready = i64::from(spec.min_ready_seconds.unwrap_or(0));
        let now = jiff::Timestamp::now();
        let facts = set_facts(&set);
        let pods: Vec<(i32, Arc<Value>)> = owned
            .into_iter()
            .filter_map(|p| Some((ordinal_of(&p, name)?, p)))
            .collect();
        let pod_facts: Vec<PodFacts> = pods
            .iter()
            .map(|(ordinal, p)| PodFacts {
                ordinal: *ordinal,
                health: health(p, min_ready, now),
                updated: revision_of(p) == Some(revisions.update.as_str()),
            })
            .collect();
        let decided = plan::plan(&facts, &pod_facts);
        let pod_named = |ordinal: i32| pods.iter().find(|(o, _)| *o == ordinal).map(|(_, p)| p);

        let mut again: Requeue = None;
        let mut failed: Option<ApiError> = None;
        // The claims of every pod there is, for the retention policy; condemned ones before they go.
        for (ordinal, pod) in &pods {
            let condemned = !plan::in_range(&facts, *ordinal);
            if let Err(e) = self
                .fix_claim_owners(&set, &raw, *ordinal, Some(pod), condemned)
                .await
            {
                failed.get_or_insert(e);
            }
        }
        // Deletions: finished pods (made again once gone), condemned ones, outdated ones.
        let doomed: Vec<&Value> = decided
            .delete
            .iter()
            .filter_map(|(ordinal, _)| pod_named(*ordinal).map(|p| &**p))
            .collect();
        if !doomed.is_empty() {
            self.delete_pods(&raw, &doomed).await?;
        }
        let updating = decided
            .delete
            .iter()
            .filter(|(_, w)| *w == Why::Update)
            .count();
        // Creations, each after its claims.
        let mut to_create = Vec::new();
        for ordinal in decided.create.iter().take(BURST_REPLICAS) {
            match self.ensure_claims(&raw, name, *ordinal).await {
                Ok(true) => {
                    let (revision, template) = if plan::takes_update_revision(&facts, *ordinal) {
                        (&revisions.update, &revisions.update_template)
                    } else {
                        (&revisions.current, &revisions.current_template)
                    };
                    to_create.push(new_pod(&raw, template, revision, *ordinal));
                }
                // A claim of the ordinal is still going: look again shortly.
                Ok(false) => again = Some(std::time::Duration::from_secs(1)),
                Err(e) => {
                    failed.get_or_insert(e);
                    break;
                }
            }
        }
        if decided.create.len() > BURST_REPLICAS {
            again = Some(std::time::Duration::ZERO);
        }
        if let Some(e) = self.create_pods(&raw, to_create).await {
            failed.get_or_insert(e);
        }

        let status = status_of(&set, &revisions, &pods, min_ready, now, updating);
        self.objects
            .edit(self.sets, ns, name, |s| {
                if s.pointer("/metadata/uid") != Some(&json!(uid))
                    || s.get("status") == Some(&status)
                {
                    return false;
                }
                s["status"] = status.clone();
                true
            })
            .await?;
        self.truncate_history(&set, &revisions, &pods).await?;
        if let Some(e) = failed {
            return Err(e);
        }
        let until = pods
            .iter()
            .filter_map(|(_, p)| until_available(p, min_ready, now))
            .min();
        Ok(again.or(until))
    }
}

impl StatefulSets {
    /// The current and update revisions, creating the update one (or renumbering an older equal one:
    /// a rollback) as kube's `getStatefulSetRevisions`.
    async fn revisions(
        &self,
        set: &StatefulSet,
        raw: &Value,
        uid: &str,
    ) -> Result<Revisions, ApiError> {
        let ns = set.metadata.namespace.as_deref().unwrap_or_default();
        let mut owned: Vec<Arc<Value>> = self
            .caches
            .dependents_of(uid)
            .into_iter()
            .filter(|(res, r)| *res == self.revisions && is_owned_by(r, uid))
            .map(|(_, r)| r)
            .collect();
        let number = |r: &Value| r.get("revision").and_then(Value::as_i64).unwrap_or(0);
        owned.sort_by_key(|r| (number(r), name_of(r).to_string()));
        let template = raw.pointer("/spec/template").cloned().unwrap_or(json!({}));
        let data = revision::data_of(&template);
        let next = owned.last().map_or(1, |r| number(r) + 1);
        let mut collision_count = set
            .status
            .as_ref()
            .and_then(|s| s.collision_count)
            .unwrap_or(0);
        let equal = owned
            .iter()
            .rev()
            .find(|r| r.get("data").is_some_and(|d| revision::same_data(d, &data)));
        let update: Value = match equal {
            Some(r) if Some(r) == owned.last() => (**r).clone(),
            Some(r) => {
                // An older template again: its revision becomes the newest.
                let changed = self
                    .objects
                    .edit(self.revisions, ns, name_of(r), |o| {
                        o["revision"] = json!(next);
                        true
                    })
                    .await?;
                changed.map_or_else(|| (**r).clone(), |c| (*c.object).clone())
            }
            None => loop {
                let hash = revision::hash(&data, collision_count);
                let created = self
                    .objects
                    .create(
                        self.revisions,
                        Some(ns),
                        revision::new_revision(
                            raw,
                            data.clone(),
                            &hash,
                            next,
                            controller_reference(set),
                        ),
                        false,
                    )
                    .await;
                match created {
                    Ok(r) => break r,
                    // Another template's revision has the name: probe another (kube's collisionCount).
                    Err(ApiError::AlreadyExists { .. }) => collision_count += 1,
                    Err(e) => return Err(e),
                }
            },
        };
        let update_name = name_of(&update).to_string();
        if !owned.iter().any(|r| name_of(r) == update_name) {
            owned.push(Arc::new(update.clone()));
        }
        let wanted = set
            .status
            .as_ref()
            .and_then(|s| s.current_revision.as_deref());
        let current = owned
            .iter()
            .find(|r| Some(name_of(r)) == wanted)
            .map_or_else(|| update.clone(), |r| (**r).clone());
        Ok(Revisions {
            current: name_of(&current).to_string(),
            current_template: revision::template_of(&current).unwrap_or_else(|| template.clone()),
            update: update_name,
            update_template: template,
            collision_count,
            all: owned
                .iter()
                .map(|r| (name_of(r).to_string(), number(r)))
                .collect(),
        })
    }

    /// Creates the missing claims of the pod at `ordinal`; false when one of them cannot serve a new pod
    /// yet: it is being deleted, or still owned by a pod of that name that is gone (kube's
    /// `PodClaimIsStale`), so the garbage collector is about to delete it.
    async fn ensure_claims(&self, set: &Value, name: &str, ordinal: i32) -> Result<bool, ApiError> {
        let ns = set
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let pod_name = format!("{name}-{ordinal}");
        for wanted in claims::new_claims(set, ordinal) {
            let claim_name = name_of(&wanted).to_string();
            if let Some(existing) = self.caches.get(self.claims, ns, &claim_name) {
                let stale = existing
                    .pointer("/metadata/ownerReferences")
                    .and_then(Value::as_array)
                    .is_some_and(|refs| {
                        refs.iter()
                            .any(|r| r["kind"] == "Pod" && r["name"] == pod_name.as_str())
                    });
                if existing.pointer("/metadata/deletionTimestamp").is_some() || stale {
                    return Ok(false);
                }
                continue;
            }
            match self
                .objects
                .create(self.claims, Some(ns), wanted, false)
                .await
            {
                Ok(_) => self.note(
                    set,
                    "Normal",
                    "SuccessfulCreate",
                    format!(
                        "create Claim {claim_name} Pod {pod_name} in StatefulSet {name} success"
                    ),
                ),
                Err(ApiError::AlreadyExists { .. }) => {}
                Err(e) => {
                    self.note(
                        set,
                        "Warning",
                        "FailedCreate",
                        format!("create Claim {claim_name} for Pod {pod_name} in StatefulSet {name} failed error: {e}"),
                    );
                    return Err(e);
                }
            }
        }
        Ok(true)
    }

    /// Puts the owners of the claims of the pod at `ordinal` right for the retention policy.
    async fn fix_claim_owners(
        &self,
        set: &StatefulSet,
        raw: &Value,
        ordinal: i32,
        pod: Option<&Arc<Value>>,
        condemned: bool,
    ) -> Result<(), ApiError> {
        let templates = claims::templates(raw);
        if templates.is_empty() {
            return Ok(());
        }
        let ns = set.metadata.namespace.as_deref().unwrap_or_default();
        let name = set.metadata.name.as_deref().unwrap_or_default();
        let uid = set.metadata.uid.as_deref().unwrap_or_default();
        let policy = set.spec.persistent_volume_claim_retention_policy.as_ref();
        let when_deleted = policy
            .and_then(|p| p.when_deleted.as_deref())
            .unwrap_or("Retain");
        let when_scaled = policy
            .and_then(|p| p.when_scaled.as_deref())
            .unwrap_or("Retain");
        let (by_set, by_pod) = claims::owners(when_deleted, when_scaled, condemned);
        let pod_uid = pod
            .and_then(|p| p.pointer("/metadata/uid"))
            .and_then(Value::as_str);
        let set_ref = by_set.then(|| controller_reference(set));
        let pod_ref = pod.filter(|_| by_pod).map(|p| {
            json!({"apiVersion": "v1", "kind": "Pod", "name": name_of(p),
                "uid": p.pointer("/metadata/uid"), "controller": true, "blockOwnerDeletion": true})
        });
        for t in templates {
            let Some(template) = t.pointer("/metadata/name").and_then(Value::as_str) else {
                continue;
            };
            let claim_name = claims::claim_name(template, name, ordinal);
            let Some(claim) = self.caches.get(self.claims, ns, &claim_name) else {
                continue;
            };
            let Some(refs) =
                claims::fixed_owner_refs(&claim, uid, pod_uid, set_ref.clone(), pod_ref.clone())
            else {
                continue;
            };
            let edited = self
                .objects
                .edit(self.claims, ns, &claim_name, |c| {
                    c["metadata"]["ownerReferences"] = refs;
                    true
                })
                .await;
            match edited {
                Ok(_) | Err(ApiError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Creates `pods` in slow-start batches, with kube's event for each; the first error.
    async fn create_pods(&self, set: &Value, pods: Vec<Value>) -> Option<ApiError> {
        if pods.is_empty() {
            return None;
        }
        let ns = set
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .map(str::to_string);
        let names: Vec<String> = pods.iter().map(|p| name_of(p).to_string()).collect();
        let (created, error) = batch::slow_start(pods, |batch| {
            let batch = batch.into_iter().map(|p| (ns.clone(), p)).collect();
            async move { self.objects.create_many(self.pods, batch).await }
        })
        .await;
        let set_name = name_of(set);
        for pod in &created {
            self.note(
                set,
                "Normal",
                "SuccessfulCreate",
                format!(
                    "create Pod {} in StatefulSet {set_name} successful",
                    name_of(pod)
                ),
            );
        }
        if let Some(e) = &error {
            let failed = names.get(created.len()).map_or("", String::as_str);
            self.note(
                set,
                "Warning",
                "FailedCreate",
                format!("create Pod {failed} in StatefulSet {set_name} failed error: {e}"),
            );
        }
        error
    }

    /// Deletes `pods` (gracefully, with their own grace periods), with kube's event for each.
    async fn delete_pods(&self, set: &Value, pods: &[&Value]) -> Result<(), ApiError> {
        let names = pods
            .iter()
            .map(|p| {
                let ns = p.pointer("/metadata/namespace").and_then(Value::as_str);
                (ns.unwrap_or_default().to_string(), name_of(p).to_string())
            })
            .collect();
        let changes = self.objects.delete_many(self.pods, names, None).await?;
        let set_name = name_of(set);
        for change in changes.iter().flatten() {
            self.note(
                set,
                "Normal",
                "SuccessfulDelete",
                format!(
                    "delete Pod {} in StatefulSet {set_name} successful",
                    change.name
                ),
            );
        }
        Ok(())
    }

    /// kube's `truncateHistory`: revisions beyond `revisionHistoryLimit` that no pod and neither the
    /// current nor the update revision name are deleted, oldest first.
    async fn truncate_history(
        &self,
        set: &StatefulSet,
        revisions: &Revisions,
        pods: &[(i32, Arc<Value>)],
    ) -> Result<(), ApiError> {
        let mut live: Vec<&str> = vec![&revisions.current, &revisions.update];
        live.extend(pods.iter().filter_map(|(_, p)| revision_of(p)));
        let limit = set.spec.revision_history_limit.unwrap_or(10);
        let ns = set.metadata.namespace.as_deref();
        for name in revision::to_truncate(&revisions.all, &live, limit) {
            match self
                .objects
                .delete(self.revisions, ns, name, DeleteOptions::default())
                .await
            {
                Ok(_) | Err(ApiError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn note(&self, set: &Value, type_: &'static str, reason: &'static str, message: String) {
        self.events.push(vec![Note {
            obj: batch::event_subject(set),
            type_,
            reason,
            message,
        }]);
    }
}

/// The spec's facts for [`plan::plan`].
fn set_facts(set: &StatefulSet) -> SetFacts {
    let spec = &set.spec;
    let replicas = spec.replicas.unwrap_or(1).max(0);
    let strategy = spec.update_strategy.as_ref();
    let update = match strategy.and_then(|s| s.type_.as_deref()) {
        Some("OnDelete") => Update::OnDelete,
        _ => {
            let ru = strategy.and_then(|s| s.rolling_update.as_ref());
            Update::RollingUpdate {
                partition: ru.and_then(|r| r.partition).unwrap_or(0).max(0),
                max_unavailable: plan::max_unavailable(
                    ru.and_then(|r| r.max_unavailable.as_ref()),
                    replicas,
                ),
            }
        }
    };
    SetFacts {
        start: spec
            .ordinals
            .as_ref()
            .and_then(|o| o.start)
            .unwrap_or(0)
            .max(0),
        replicas,
        ordered: spec.pod_management_policy.as_deref() != Some("Parallel"),
        update,
    }
}

/// A pod's health for the sync (kube's `isRunningAndReady`, `isRunningAndAvailable`, `isTerminating`).
fn health(pod: &Value, min_ready: i64, now: jiff::Timestamp) -> Health {
    if pod.pointer("/metadata/deletionTimestamp").is_some() {
        return Health::Terminating;
    }
    match pod.pointer("/status/phase").and_then(Value::as_str) {
        Some("Failed" | "Succeeded") => Health::Finished,
        Some("Running") if pod_is_ready(pod) => {
            if pod_is_available(pod, min_ready, now) {
                Health::Available
            } else {
                Health::Ready
            }
        }
        _ => Health::Starting,
    }
}

/// The ordinal of a pod of set `set` (`<set>-<ordinal>`, kube's `getParentNameAndOrdinal`).
fn ordinal_of(pod: &Value, set: &str) -> Option<i32> {
    let name = pod.pointer("/metadata/name").and_then(Value::as_str)?;
    parse_ordinal(name.strip_prefix(set)?.strip_prefix('-')?)
}

/// The ordinal of claim `claim` of set `set` (`<template>-<set>-<ordinal>`).
fn claim_of_set(claim: &str, set: &str) -> Option<i32> {
    let (rest, ordinal) = claim.rsplit_once('-')?;
    rest.strip_suffix(set)?.strip_suffix('-')?;
    parse_ordinal(ordinal)
}

fn parse_ordinal(s: &str) -> Option<i32> {
    (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0')))
        .then(|| s.parse().ok())
        .flatten()
}

fn revision_of(pod: &Value) -> Option<&str> {
    pod.pointer("/metadata/labels")?
        .get(REVISION_LABEL)?
        .as_str()
}

fn name_of(obj: &Value) -> &str {
    obj.pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// The pod at `ordinal` from a revision's `template` (kube's `newVersionedStatefulSetPod`): its identity
/// labels and revision, `hostname` and `subdomain`, and a claim volume per claim template.
fn new_pod(set: &Value, template: &Value, revision: &str, ordinal: i32) -> Value {
    let set_name = name_of(set);
    let pod_name = format!("{set_name}-{ordinal}");
    let mut labels = template
        .pointer("/metadata/labels")
        .cloned()
        .filter(Value::is_object)
        .unwrap_or(json!({}));
    labels[POD_NAME_LABEL] = json!(pod_name);
    labels[POD_INDEX_LABEL] = json!(ordinal.to_string());
    labels[REVISION_LABEL] = json!(revision);
    let mut spec = template.get("spec").cloned().unwrap_or(json!({}));
    spec["hostname"] = json!(pod_name);
    match set.pointer("/spec/serviceName").and_then(Value::as_str) {
        Some(service) if !service.is_empty() => spec["subdomain"] = json!(service),
        _ => {}
    }
    if !claims::templates(set).is_empty() {
        spec["volumes"] = claims::with_claim_volumes(set, ordinal, spec.get("volumes"));
    }
    let mut pod = super::pod_from_template(set, KIND, template, labels, spec);
    if let Some(md) = pod["metadata"].as_object_mut() {
        md.remove("generateName");
        md.insert("name".into(), json!(pod_name));
    }
    pod
}

/// The status of a sync (kube's `updateStatus` and `completeRollingUpdate`): counts over the pods seen,
/// less the outdated ones this sync deleted from the current count.
fn status_of(
    set: &StatefulSet,
    revisions: &Revisions,
    pods: &[(i32, Arc<Value>)],
    min_ready: i64,
    now: jiff::Timestamp,
    updating: usize,
) -> Value {
    let (mut replicas, mut ready, mut available, mut current, mut updated) = (0, 0, 0, 0i64, 0);
    for (_, pod) in pods {
        replicas += 1;
        let health = health(pod, min_ready, now);
        if matches!(health, Health::Ready | Health::Available) {
            ready += 1;
            available += usize::from(health == Health::Available);
        }
        if health != Health::Terminating {
            let revision = revision_of(pod);
            current += i64::from(revision == Some(revisions.current.as_str()));
            updated += usize::from(revision == Some(revisions.update.as_str()));
        }
    }
    current -= i64::try_from(updating).unwrap_or(0);
    let mut current_revision = revisions.current.clone();
    let desired = usize::try_from(set.spec.replicas.unwrap_or(1)).unwrap_or(0);
    let rolling = set
        .spec
        .update_strategy
        .as_ref()
        .and_then(|s| s.type_.as_deref())
        != Some("OnDelete");
    if rolling && updated == desired && ready == desired && replicas == desired {
        current = i64::try_from(updated).unwrap_or(0);
        current_revision.clone_from(&revisions.update);
    }
    let mut status = json!({
        "observedGeneration": set.metadata.generation.unwrap_or(1),
        "replicas": replicas,
        "readyReplicas": ready,
        "currentReplicas": current.max(0),
        "updatedReplicas": updated,
        "availableReplicas": available,
        "currentRevision": current_revision,
        "updateRevision": revisions.update,
        "collisionCount": revisions.collision_count,
    });
    // kube omits these when zero.
    if let Some(m) = status.as_object_mut() {
        m.retain(|k, v| {
            !(v == &json!(0)
                && matches!(
                    k.as_str(),
                    "readyReplicas" | "currentReplicas" | "updatedReplicas"
                ))
        });
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinals_come_from_the_names_the_set_gives() {
        let pod = |n: &str| json!({"metadata": {"name": n}});
        assert_eq!(ordinal_of(&pod("web-0"), "web"), Some(0));
        assert_eq!(ordinal_of(&pod("web-12"), "web"), Some(12));
        assert_eq!(ordinal_of(&pod("web-01"), "web"), None);
        assert_eq!(ordinal_of(&pod("web-x"), "web"), None);
        assert_eq!(ordinal_of(&pod("webapp-1"), "web"), None);
        assert_eq!(ordinal_of(&pod("web-app-1"), "web"), None);
        assert_eq!(claim_of_set("www-web-3", "web"), Some(3));
        assert_eq!(claim_of_set("www-web2-3", "web"), None);
    }

    #[test]
    fn a_pod_has_the_sets_identity_and_its_claims() {
        let set = json!({"apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": "web", "namespace": "ns", "uid": "u"},
            "spec": {"serviceName": "nginx", "volumeClaimTemplates": [{"metadata": {"name": "www"}}]}});
        let template = json!({"metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "c", "image": "a:1"}]}});
        let pod = new_pod(&set, &template, "web-abc", 2);
        assert_eq!(pod["metadata"]["name"], "web-2");
        assert!(pod["metadata"].get("generateName").is_none());
        assert_eq!(
            pod["metadata"]["labels"],
            json!({"app": "web", POD_NAME_LABEL: "web-2", POD_INDEX_LABEL: "2",
                REVISION_LABEL: "web-abc"})
        );
        assert_eq!(pod["spec"]["hostname"], "web-2");
        assert_eq!(pod["spec"]["subdomain"], "nginx");
        assert_eq!(
            pod["spec"]["volumes"],
            json!([{"name": "www", "persistentVolumeClaim": {"claimName": "www-web-2"}}])
        );
        assert_eq!(pod["metadata"]["ownerReferences"][0]["kind"], "StatefulSet");
    }
}
