//! Job: runs pods from its template until `completions` of them succeed, retrying failures up to
//! `backoffLimit`, stopping at `activeDeadlineSeconds`, and deleting the finished Job after
//! `ttlSecondsAfterFinished` (kube's job and ttl-after-finished controllers).
//!
//! Like kube 1.31+, a Job that reaches its end first gets a `SuccessCriteriaMet` or `FailureTarget`
//! condition, its active pods are deleted, and `Complete` or `Failed` follows once none are terminating.
//!
//! A failed pod is replaced only after kube's pod-failure back-off: `base × 2^(failures−1)` from the last
//! failure (failures since the last success), capped at 6 minutes; `base` is 10 s in kube, configurable
//! here. Deadlines, TTLs and back-offs are waited for by asking the loop to requeue the Job.

use std::borrow::Borrow;
use std::sync::Arc;
use std::time::Duration;

use herd_api::resources::{self, ResourceInfo};
use k8s_openapi::api::batch::v1::{Job, JobCondition, JobSpec};
use serde::Deserialize;
use serde_json::{Value, json};

use super::batch::{self, BURST_REPLICAS};
use super::daemonset::typed_and_json;
use super::{
    Controller, Informers, Key, Requeue, controller_owner, key_of, pod_from_template,
    pod_is_active, pod_is_ready,
};
use crate::error::ApiError;
use crate::events::{EventQueue, Recorder};
use crate::objects::Change;
use crate::objects::{DeleteOptions, Objects, Propagation, now};

const BACKOFF_MESSAGE: &str = "Job has reached the specified backoff limit";
const DEADLINE_MESSAGE: &str = "Job was active longer than specified deadline";
const COMPLETIONS_MESSAGE: &str = "Reached expected number of succeeded pods";
/// kube's `MaxJobPodFailureBackOff`.
const MAX_POD_FAILURE_BACKOFF: Duration = Duration::from_secs(360);

pub struct Jobs {
    objects: Objects,
    caches: Arc<Informers>,
    recorder: Recorder,
    /// SuccessfulCreate/SuccessfulDelete, written in the background in batches.
    events: EventQueue,
    jobs: &'static ResourceInfo,
    pods: &'static ResourceInfo,
    /// The first pod-failure back-off (kube's `DefaultJobPodFailureBackOff`, 10 s).
    backoff_base: Duration,
}

impl Jobs {
    pub fn new(objects: Objects, caches: Arc<Informers>, backoff_base: Duration) -> Self {
        let recorder = Recorder::new(objects.clone(), "job-controller");
        Self {
            events: EventQueue::spawn(recorder.clone()),
            recorder,
            objects,
            caches,
            jobs: resources::by_path("batch", "v1", "jobs").expect("jobs"),
            pods: resources::by_path("", "v1", "pods").expect("pods"),
            backoff_base,
        }
    }
}

impl Controller for Jobs {
    const NAME: &'static str = "job";

    fn watches(&self) -> &'static [&'static str] {
        &["jobs.batch", "pods"]
    }

    fn keys_for(&self, change: &Change) -> Vec<Key> {
        if &*change.resource == "pods" {
            return controller_owner(&change.object, "Job")
                .map(|job| (change.namespace.clone(), job))
                .into_iter()
                .collect();
        }
        vec![key_of(change)]
    }

    async fn all_keys(&self) -> Result<Vec<Key>, ApiError> {
        Ok(self.caches.keys(self.jobs))
    }

    async fn reconcile(&self, key: &Key) -> Result<Requeue, ApiError> {
        self.sync(key).await
    }
}

fn parse_time(v: Option<&Value>) -> Option<jiff::Timestamp> {
    v?.as_str()?.parse().ok()
}

/// The Job's spec; an empty one when it has none.
fn spec(job: &Job) -> &JobSpec {
    static EMPTY: std::sync::OnceLock<JobSpec> = std::sync::OnceLock::new();
    job.spec
        .as_ref()
        .unwrap_or_else(|| EMPTY.get_or_init(JobSpec::default))
}

/// The Job's condition of `type_` whose status is True.
fn condition<'a>(job: &'a Job, type_: &str) -> Option<&'a JobCondition> {
    job.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_ && c.status == "True")
}

fn new_condition(type_: &str, reason: &str, message: &str) -> Value {
    let at = now();
    json!({
        "type": type_, "status": "True", "reason": reason, "message": message,
        "lastProbeTime": at, "lastTransitionTime": at,
    })
}

/// When the Job reached `Complete` or `Failed`, if it has.
fn finished_at(job: &Job) -> Option<Option<jiff::Timestamp>> {
    ["Complete", "Failed"]
        .iter()
        .find_map(|t| condition(job, t))
        .map(|c| c.last_transition_time.as_ref().map(|t| t.0))
}

/// Time left until `at` (zero if it has passed), plus a little slack for second-granular timestamps.
fn until(at: jiff::Timestamp) -> Duration {
    let left = at.duration_since(jiff::Timestamp::now());
    Duration::try_from(left).unwrap_or_default() + Duration::from_millis(50)
}

/// kube's `pastBackoffLimitOnFailure`: with restartPolicy OnFailure, container restarts count as failures.
fn past_backoff_on_failure(job: &Job, active: &[impl Borrow<Value>], backoff_limit: i64) -> bool {
    let restart_policy = spec(job)
        .template
        .spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref());
    if restart_policy != Some("OnFailure") {
        return false;
    }
    let restarts: i64 = active
        .iter()
        .flat_map(|p| {
            let p: &Value = p.borrow();
            ["initContainerStatuses", "containerStatuses"]
                .into_iter()
                .filter_map(|f| p.pointer(&format!("/status/{f}")).and_then(Value::as_array))
                .flatten()
        })
        .filter_map(|s| s["restartCount"].as_i64())
        .sum();
    if backoff_limit == 0 {
        restarts > 0
    } else {
        restarts >= backoff_limit
    }
}

/// When a Job started at `start` passes its `activeDeadlineSeconds`, if it has one.
fn deadline(job: &Job, start: Option<jiff::Timestamp>) -> Option<jiff::Timestamp> {
    let secs = spec(job).active_deadline_seconds?;
    start?
        .checked_add(jiff::SignedDuration::from_secs(secs))
        .ok()
}

/// When a pod stopped, as kube's `getFinishedTime` reads it: the latest container `finishedAt`, else when
/// it stopped being Ready, else its deletion, else its creation.
fn pod_finished_at(pod: &Value) -> Option<jiff::Timestamp> {
    let containers = ["initContainerStatuses", "containerStatuses"]
        .into_iter()
        .filter_map(|f| {
            pod.pointer(&format!("/status/{f}"))
                .and_then(Value::as_array)
        })
        .flatten()
        .filter_map(|s| parse_time(s.pointer("/state/terminated/finishedAt")))
        .max();
    let not_ready = || {
        pod.pointer("/status/conditions")
            .and_then(Value::as_array)?
            .iter()
            .find(|c| c["type"] == "Ready" && c["status"] == "False")
            .and_then(|c| parse_time(c.get("lastTransitionTime")))
    };
    containers
        .or_else(not_ready)
        .or_else(|| parse_time(pod.pointer("/metadata/deletionTimestamp")))
        .or_else(|| parse_time(pod.pointer("/metadata/creationTimestamp")))
}

/// kube's pod-failure back-off (`backoffRecord.getRemainingTime`): with `n` pods failed since the last
/// success, a replacement waits `base × 2^(n−1)` (at most 6 min) from the last failure. Returns the time
/// still to wait, `None` when a pod may be created now.
fn backoff_left(
    pods: &[impl Borrow<Value>],
    base: Duration,
    now: jiff::Timestamp,
) -> Option<Duration> {
    let finished = |phase: &'static str| {
        pods.iter()
            .map(Borrow::borrow)
            .filter(move |p: &&Value| p.pointer("/status/phase") == Some(&json!(phase)))
            .filter_map(pod_finished_at)
    };
    let last_success = finished("Succeeded").max();
    let failures: Vec<jiff::Timestamp> = finished("Failed")
        .filter(|t| last_success.is_none_or(|s| *t > s))
        .collect();
    let last_failure = *failures.iter().max()?;
    let exponent = u32::try_from(failures.len() - 1)
        .unwrap_or(u32::MAX)
        .min(16);
    let backoff = base
        .saturating_mul(1 << exponent)
        .min(MAX_POD_FAILURE_BACKOFF);
    let elapsed = Duration::try_from(now.duration_since(last_failure)).unwrap_or_default();
    backoff.checked_sub(elapsed).filter(|left| !left.is_zero())
}

/// The parts of a Job's status as stored that a sync writes back unchanged.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct StatusAsStored {
    #[serde(default)]
    conditions: Vec<Value>,
    start_time: Option<Value>,
}

impl StatusAsStored {
    fn of(job: &Value) -> Self {
        job.get("status")
            .and_then(|s| Self::deserialize(s).ok())
            .unwrap_or_default()
    }
}

impl Jobs {
    async fn sync(&self, (ns, name): &Key) -> Result<Requeue, ApiError> {
        let Some((job, raw)) = typed_and_json::<Job>(&self.caches, self.jobs, ns, name) else {
            return Ok(None);
        };
        if job.metadata.deletion_timestamp.is_some() {
            return Ok(None);
        }
        let key = (ns.clone(), name.clone());
        if finished_at(&job).is_some() {
            return self.delete_if_expired(&key, &job).await;
        }
        let uid = job.metadata.uid.clone().unwrap_or_default();
        let job_status = job.status.clone().unwrap_or_default();
        let owned: Vec<Arc<Value>> = self.caches.controlled_by(&uid);
        let phase = |p: &Value, ph: &str| p.pointer("/status/phase") == Some(&json!(ph));
        let mut active: Vec<Arc<Value>> =
            owned.iter().filter(|p| pod_is_active(p)).cloned().collect();
        let mut terminating = owned
            .iter()
            .filter(|p| {
                p.pointer("/metadata/deletionTimestamp").is_some()
                    && !phase(p, "Succeeded")
                    && !phase(p, "Failed")
            })
            .count();
        // Terminated pods stay until the Job goes, but a count never goes back if one is deleted.
        let succeeded = (owned.iter().filter(|p| phase(p, "Succeeded")).count() as i64)
            .max(job_status.succeeded.unwrap_or(0).into());
        let failed = (owned.iter().filter(|p| phase(p, "Failed")).count() as i64)
            .max(job_status.failed.unwrap_or(0).into());
        let job_spec = spec(&job);
        let suspended = job_spec.suspend == Some(true);
        let completions = i64::from(job_spec.completions.unwrap_or(1).max(0));
        let parallelism = i64::from(job_spec.parallelism.unwrap_or(1).max(0));
        let backoff_limit = i64::from(job_spec.backoff_limit.unwrap_or(6).max(0));

        // The status is written as JSON: the conditions and start time already there are kept as stored.
        let written = StatusAsStored::of(&raw);
        let mut conditions: Vec<Value> = written.conditions;
        let mut start_time = written.start_time;
        let mut start = job_status.start_time.as_ref().map(|t| t.0);
        if start_time.is_none() && !suspended {
            let at = now();
            start = at.parse().ok();
            start_time = Some(json!(at));
        }

        let mut failure = condition(&job, "FailureTarget").map(|c| {
            c.reason
                .clone()
                .unwrap_or_else(|| "BackoffLimitExceeded".to_string())
        });
        let mut success = condition(&job, "SuccessCriteriaMet").is_some();
        if failure.is_none() && !success {
            let reached = |at: jiff::Timestamp| at <= jiff::Timestamp::now();
            if succeeded >= completions {
                success = true;
                conditions.push(new_condition(
                    "SuccessCriteriaMet",
                    "CompletionsReached",
                    COMPLETIONS_MESSAGE,
                ));
            } else if failed > backoff_limit
                || past_backoff_on_failure(&job, &active, backoff_limit)
            {
                failure = Some("BackoffLimitExceeded".into());
                conditions.push(new_condition(
                    "FailureTarget",
                    "BackoffLimitExceeded",
                    BACKOFF_MESSAGE,
                ));
            } else if !suspended && deadline(&job, start).is_some_and(reached) {
                failure = Some("DeadlineExceeded".into());
                conditions.push(new_condition(
                    "FailureTarget",
                    "DeadlineExceeded",
                    DEADLINE_MESSAGE,
                ));
            }
        }

        let mut completion_time = None;
        let mut check_again: Option<Duration> = None;
        let mut create_failed = None;
        if failure.is_some() || success || suspended {
            let doomed = std::mem::take(&mut active);
            terminating += self.delete_pods(&raw, &doomed).await?;
        } else {
            let want = parallelism.min(completions - succeeded).max(0) as usize;
            if active.len() < want {
                match backoff_left(&owned, self.backoff_base, jiff::Timestamp::now()) {
                    Some(left) => check_again = Some(left),
                    None => {
                        // kube's MaxPodCreateDeletePerSync; the rest at once in the next sync.
                        let diff = want - active.len();
                        if diff > BURST_REPLICAS {
                            check_again = Some(Duration::ZERO);
                        }
                        let (created, error) = self
                            .create_pods(&raw, name, &uid, diff.min(BURST_REPLICAS))
                            .await;
                        active.extend(created);
                        create_failed = error;
                    }
                }
            } else if active.len() > want {
                active.sort_by_key(|p| {
                    std::cmp::Reverse(
                        p.pointer("/metadata/creationTimestamp")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_string(),
                    )
                });
                let surplus = active.len() - want;
                let doomed: Vec<Arc<Value>> = active.drain(..surplus).collect();
                terminating += self.delete_pods(&raw, &doomed).await?;
            }
            if let Some(at) = deadline(&job, start) {
                let left = until(at);
                check_again = Some(check_again.map_or(left, |c| c.min(left)));
            }
        }
        if terminating == 0 {
            if let Some(reason) = &failure {
                let message = if reason == "DeadlineExceeded" {
                    DEADLINE_MESSAGE
                } else {
                    BACKOFF_MESSAGE
                };
                conditions.push(new_condition("Failed", reason, message));
                self.recorder.warning(&raw, reason, message).await;
            } else if success {
                conditions.push(new_condition(
                    "Complete",
                    "CompletionsReached",
                    COMPLETIONS_MESSAGE,
                ));
                completion_time = Some(json!(now()));
                self.recorder
                    .normal(&raw, "Completed", "Job completed")
                    .await;
            }
        }

        let ready = active.iter().filter(|p| pod_is_ready(p)).count();
        let mut status = json!({
            "active": active.len(),
            "ready": ready,
            "terminating": terminating,
            "succeeded": succeeded,
            "failed": failed,
            "uncountedTerminatedPods": {},
        });
        if let Some(st) = start_time {
            status["startTime"] = st;
        }
        if let Some(ct) = completion_time {
            status["completionTime"] = ct;
        }
        if !conditions.is_empty() {
            status["conditions"] = json!(conditions);
        }
        // Zero counts are omitted, as kube's omitempty does.
        if let Some(map) = status.as_object_mut() {
            map.retain(|k, v| v != &json!(0) || k == "ready" || k == "terminating");
        }
        let change = self
            .objects
            .edit(self.jobs, ns, name, |j| {
                if j.pointer("/metadata/uid") != Some(&json!(uid))
                    || j.get("status") == Some(&status)
                {
                    return false;
                }
                j["status"] = status;
                true
            })
            .await?;
        if let Some(change) = change
            && let Ok(job) = Job::deserialize(&*change.object)
            && finished_at(&job).is_some()
        {
            return self.delete_if_expired(&key, &job).await;
        }
        // As kube: the status is written, then a failed create makes the sync fail (and retry).
        if let Some(e) = create_failed {
            return Err(e);
        }
        Ok(check_again)
    }

    /// Creates `count` pods from the Job's template in slow-start batches; returns them and the first error.
    async fn create_pods(
        &self,
        job: &Value,
        name: &str,
        uid: &str,
        count: usize,
    ) -> (Vec<Arc<Value>>, Option<ApiError>) {
        let template = job
            .pointer("/spec/template")
            .cloned()
            .unwrap_or(Value::Null);
        let mut labels = template
            .pointer("/metadata/labels")
            .cloned()
            .filter(Value::is_object)
            .unwrap_or(json!({}));
        for (k, v) in [
            ("batch.kubernetes.io/job-name", name),
            ("job-name", name),
            ("batch.kubernetes.io/controller-uid", uid),
            ("controller-uid", uid),
        ] {
            labels[k] = json!(v);
        }
        let spec = template.get("spec").cloned().unwrap_or(json!({}));
        let pods = (0..count)
            .map(|_| pod_from_template(job, "Job", &template, labels.clone(), spec.clone()))
            .collect();
        batch::create_pods(&self.objects, self.pods, &self.events, job, pods).await
    }

    /// Deletes pods of the Job in one batch; returns how many are now terminating (bound pods stop
    /// gracefully).
    async fn delete_pods(&self, job: &Value, pods: &[Arc<Value>]) -> Result<usize, ApiError> {
        let pods: Vec<&Value> = pods.iter().map(|p| &**p).collect();
        let changes =
            batch::delete_pods(&self.objects, self.pods, &self.events, job, &pods, None).await?;
        Ok(changes
            .iter()
            .flatten()
            .filter(|c| batch::left_terminating(c))
            .count())
    }

    /// Deletes a finished Job whose TTL has passed (Background propagation); else the time left, if any.
    async fn delete_if_expired(&self, key: &Key, job: &Job) -> Result<Option<Duration>, ApiError> {
        let Some(ttl) = spec(job).ttl_seconds_after_finished else {
            return Ok(None);
        };
        let finished = finished_at(job)
            .flatten()
            .unwrap_or_else(jiff::Timestamp::now);
        let Ok(expires) = finished.checked_add(jiff::SignedDuration::from_secs(ttl.into())) else {
            return Ok(None);
        };
        if expires > jiff::Timestamp::now() {
            return Ok(Some(until(expires)));
        }
        let opts = DeleteOptions {
            propagation: Propagation::Background,
            precondition_uid: job.metadata.uid.clone(),
            ..DeleteOptions::default()
        };
        match self
            .objects
            .delete(self.jobs, Some(&key.0), &key.1, opts)
            .await
        {
            Ok(_) => {
                tracing::info!(job = %format!("{}/{}", key.0, key.1), "deleted after ttlSecondsAfterFinished");
                Ok(None)
            }
            Err(ApiError::NotFound { .. } | ApiError::Conflict { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{plane, pod_count};
    use super::*;

    fn pod(phase: &str, finished: &str) -> Value {
        json!({"metadata": {"creationTimestamp": "2026-01-01T00:00:00Z"}, "status": {"phase": phase,
            "containerStatuses": [{"state": {"terminated": {"finishedAt": finished}}}]}})
    }

    fn at(t: &str) -> jiff::Timestamp {
        t.parse().unwrap()
    }

    #[test]
    fn back_off_doubles_per_failure_since_the_last_success_and_is_capped() {
        let base = Duration::from_secs(10);
        assert_eq!(
            backoff_left(&[] as &[Value], base, at("2026-01-01T00:01:00Z")),
            None
        );
        let one = [pod("Failed", "2026-01-01T00:01:00Z")];
        assert_eq!(
            backoff_left(&one, base, at("2026-01-01T00:01:04Z")),
            Some(Duration::from_secs(6))
        );
        assert_eq!(backoff_left(&one, base, at("2026-01-01T00:01:10Z")), None);
        let three = [
            pod("Failed", "2026-01-01T00:00:10Z"),
            pod("Failed", "2026-01-01T00:00:30Z"),
            pod("Failed", "2026-01-01T00:01:00Z"),
        ];
        assert_eq!(
            backoff_left(&three, base, at("2026-01-01T00:01:00Z")),
            Some(Duration::from_secs(40))
        );
        // A success resets the count.
        let mut after_success = three.to_vec();
        after_success.push(pod("Succeeded", "2026-01-01T00:00:40Z"));
        assert_eq!(
            backoff_left(&after_success, base, at("2026-01-01T00:01:00Z")),
            Some(Duration::from_secs(10))
        );
        let many: Vec<Value> = (0..12)
            .map(|_| pod("Failed", "2026-01-01T00:01:00Z"))
            .collect();
        assert_eq!(
            backoff_left(&many, base, at("2026-01-01T00:01:00Z")),
            Some(MAX_POD_FAILURE_BACKOFF)
        );
    }

    #[test]
    fn a_pod_without_container_times_finished_when_it_stopped_being_ready() {
        let p = json!({"metadata": {"creationTimestamp": "2026-01-01T00:00:00Z"},
            "status": {"conditions": [{"type": "Ready", "status": "False",
                "lastTransitionTime": "2026-01-01T00:00:05Z"}]}});
        assert_eq!(pod_finished_at(&p), Some(at("2026-01-01T00:00:05Z")));
        let p = json!({"metadata": {"creationTimestamp": "2026-01-01T00:00:00Z"}});
        assert_eq!(pod_finished_at(&p), Some(at("2026-01-01T00:00:00Z")));
    }

    #[tokio::test]
    async fn a_sync_creates_at_most_a_burst_of_pods_and_comes_back_for_the_rest() {
        let (_dir, objects, pods) = plane().await;
        let jobs = Jobs::new(objects.clone(), pods.clone(), Duration::from_secs(10));
        let job = json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "wide"},
            "spec": {"parallelism": 800, "completions": 800,
                "template": {"spec": {"restartPolicy": "Never",
                    "containers": [{"name": "c", "image": "img"}]}}}});
        objects
            .create(jobs.jobs, Some("default"), job, false)
            .await
            .unwrap();
        let key = ("default".to_string(), "wide".to_string());
        let sync = async || {
            pods.sync().await.unwrap();
            jobs.reconcile(&key).await.unwrap()
        };
        assert_eq!(sync().await, Some(Duration::ZERO));
        assert_eq!(pod_count(&objects).await, BURST_REPLICAS);
        sync().await;
        assert_eq!(pod_count(&objects).await, 800);
        let job = objects
            .get(jobs.jobs, Some("default"), "wide")
            .await
            .unwrap();
        assert_eq!(job["status"]["active"], 800);
    }
}
