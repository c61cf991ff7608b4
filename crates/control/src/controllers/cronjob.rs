//! CronJob: creates a Job for each time the schedule comes due (kube-controller-manager's cronjob
//! controller, v2), in the CronJob's time zone, honouring `suspend`, `startingDeadlineSeconds` and
//! `concurrencyPolicy`, keeping `status.active`, `lastScheduleTime` and `lastSuccessfulTime`, and deleting
//! finished Jobs beyond the history limits.
//!
//! A sync looks for the most recent time the schedule was due since the last one it started (or the
//! CronJob's creation), at most `startingDeadlineSeconds` ago; runs the Job of that time, named
//! `<cronjob>-<scheduled time in minutes since the epoch>` so that a time is never run twice; and asks to be
//! reconciled again 100 ms after the next time (kube's `nextScheduleDelta`). Times come from [`Clock`], so
//! a test can move them. The pure parts are in [`plan`].

mod plan;

use std::sync::Arc;

use herd_api::cron;
use herd_api::resources::{self, ResourceInfo};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use serde_json::{Value, json};

use self::plan::{Finished, Missed};
use super::daemonset::typed_and_json;
use super::{Controller, Informers, Key, Requeue, controller_owner, key_of};
use crate::Clock;
use crate::error::ApiError;
use crate::events::Recorder;
use crate::objects::{Change, DeleteOptions, Objects, Propagation};

pub struct CronJobs {
    objects: Objects,
    caches: Arc<Informers>,
    recorder: Recorder,
    clock: Clock,
    cronjobs: &'static ResourceInfo,
    jobs: &'static ResourceInfo,
}

impl CronJobs {
    pub fn new(objects: Objects, caches: Arc<Informers>, clock: Clock) -> Self {
        Self {
            recorder: Recorder::new(objects.clone(), "cronjob-controller"),
            objects,
            caches,
            clock,
            cronjobs: resources::by_path("batch", "v1", "cronjobs").expect("cronjobs"),
            jobs: resources::by_path("batch", "v1", "jobs").expect("jobs"),
        }
    }
}

impl Controller for CronJobs {
    const NAME: &'static str = "cronjob";

    fn watches(&self) -> &'static [&'static str] {
        &["cronjobs.batch", "jobs.batch"]
    }

    fn keys_for(&self, change: &Change) -> Vec<Key> {
        if &*change.resource == "jobs.batch" {
            return controller_owner(&change.object, "CronJob")
                .map(|cj| (change.namespace.clone(), cj))
                .into_iter()
                .collect();
        }
        vec![key_of(change)]
    }

    async fn all_keys(&self) -> Result<Vec<Key>, ApiError> {
        Ok(self.caches.keys(self.cronjobs))
    }

    async fn reconcile(&self, key: &Key) -> Result<Requeue, ApiError> {
        self.sync(key).await
    }
}

/// A CronJob's status as the controller keeps it; written back only when it changed.
#[derive(Debug, Clone, PartialEq, Default)]
struct Status {
    /// `ObjectReference`s of the running Jobs, as stored.
    active: Vec<Value>,
    last_schedule: Option<jiff::Timestamp>,
    last_successful: Option<jiff::Timestamp>,
}

impl Status {
    fn of(cj: &CronJob) -> Self {
        let status = cj.status.clone().unwrap_or_default();
        Self {
            active: status
                .active
                .unwrap_or_default()
                .iter()
                .filter_map(|r| serde_json::to_value(r).ok())
                .collect(),
            last_schedule: status.last_schedule_time.map(|t| t.0),
            last_successful: status.last_successful_time.map(|t| t.0),
        }
    }

    fn to_json(&self) -> Value {
        let mut status = json!({});
        if !self.active.is_empty() {
            status["active"] = json!(self.active);
        }
        if let Some(t) = self.last_schedule {
            status["lastScheduleTime"] = json!(t.to_string());
        }
        if let Some(t) = self.last_successful {
            status["lastSuccessfulTime"] = json!(t.to_string());
        }
        status
    }

    fn is_active(&self, uid: &str) -> bool {
        self.active.iter().any(|r| r["uid"] == uid)
    }

    fn is_active_named(&self, name: &str) -> bool {
        self.active.iter().any(|r| r["name"] == name)
    }

    fn forget(&mut self, uid: &str) {
        self.active.retain(|r| r["uid"] != uid);
    }
}

fn name_of(job: &Job) -> &str {
    job.metadata.name.as_deref().unwrap_or_default()
}

fn uid_of(job: &Job) -> &str {
    job.metadata.uid.as_deref().unwrap_or_default()
}

impl CronJobs {
    async fn sync(&self, (ns, name): &Key) -> Result<Requeue, ApiError> {
        let Some((cj, raw)) = typed_and_json::<CronJob>(&self.caches, self.cronjobs, ns, name)
        else {
            return Ok(None);
        };
        let uid = cj.metadata.uid.clone().unwrap_or_default();
        let jobs = self.jobs_of(&uid);
        let before = Status::of(&cj);
        let mut status = before.clone();
        let kept = self
            .delete_beyond_history(&cj, &raw, jobs, &mut status)
            .await;
        let outcome = self.sync_cronjob(&cj, &raw, &kept, &mut status).await;
        if status != before {
            let written = status.to_json();
            self.objects
                .edit(self.cronjobs, ns, name, |c| {
                    if c.pointer("/metadata/uid") != Some(&json!(uid)) {
                        return false;
                    }
                    c["status"] = written;
                    true
                })
                .await?;
        }
        outcome
    }

    /// The Jobs this CronJob controls, from the caches (kube lists the namespace's Jobs and keeps those
    /// whose controller reference names it; here the reference's uid must be this CronJob's too).
    fn jobs_of(&self, uid: &str) -> Vec<Arc<Job>> {
        let store = self.caches.store::<Job>();
        self.caches
            .dependents_of(uid)
            .into_iter()
            .filter(|(res, job)| **res == *self.jobs && super::is_owned_by(job, uid))
            .filter_map(|(_, job)| {
                let ns = job.pointer("/metadata/namespace")?.as_str()?;
                let name = job.pointer("/metadata/name")?.as_str()?;
                store.get(ns, name)
            })
            .collect()
    }

    /// kube's `cleanupFinishedJobs`: the oldest finished Jobs beyond `successfulJobsHistoryLimit` and
    /// `failedJobsHistoryLimit` are deleted. Returns the Jobs left.
    async fn delete_beyond_history(
        &self,
        cj: &CronJob,
        raw: &Value,
        jobs: Vec<Arc<Job>>,
        status: &mut Status,
    ) -> Vec<Arc<Job>> {
        let spec = cj.spec.clone();
        let doomed: Vec<String> = [
            (Finished::Complete, spec.successful_jobs_history_limit),
            (Finished::Failed, spec.failed_jobs_history_limit),
        ]
        .into_iter()
        .filter_map(|(how, limit)| Some(plan::beyond_history(&jobs, how, limit?)))
        .flatten()
        .map(|job| uid_of(job).to_string())
        .collect();
        let mut kept = Vec::with_capacity(jobs.len());
        for job in jobs {
            if doomed.iter().any(|u| u == uid_of(&job)) && self.delete_job(raw, &job, status).await
            {
                continue;
            }
            kept.push(job);
        }
        kept
    }

    /// kube's `deleteJob`: the Job (its pods in the background) and its place in `active`, with
    /// SuccessfulDelete; a failure is a FailedDelete warning. Whether it went.
    async fn delete_job(&self, raw: &Value, job: &Job, status: &mut Status) -> bool {
        let opts = DeleteOptions {
            propagation: Propagation::Background,
            ..DeleteOptions::default()
        };
        let ns = job.metadata.namespace.as_deref();
        match self.objects.delete(self.jobs, ns, name_of(job), opts).await {
            Ok(_) | Err(ApiError::NotFound { .. }) => {
                status.forget(uid_of(job));
                self.recorder
                    .normal(
                        raw,
                        "SuccessfulDelete",
                        &format!("Deleted job {}", name_of(job)),
                    )
                    .await;
                true
            }
            Err(e) => {
                self.recorder
                    .warning(raw, "FailedDelete", &format!("Deleted job: {e}"))
                    .await;
                tracing::warn!(job = name_of(job), error = %e, "cannot delete a CronJob's job");
                false
            }
        }
    }

    /// kube's `syncCronJob`: the active list brought up to date with the Jobs, then the run that is due,
    /// if any. Returns when to look again.
    async fn sync_cronjob(
        &self,
        cj: &CronJob,
        raw: &Value,
        jobs: &[Arc<Job>],
        status: &mut Status,
    ) -> Result<Requeue, ApiError> {
        let now = self.clock.now();
        for job in jobs {
            let found = status.is_active(uid_of(job));
            match plan::finished(job) {
                None if !found => {
                    self.recorder
                        .warning(
                            raw,
                            "UnexpectedJob",
                            &format!(
                                "Saw a job that the controller did not create or forgot: {}",
                                name_of(job)
                            ),
                        )
                        .await;
                }
                None => {}
                Some(how) => {
                    if found {
                        status.forget(uid_of(job));
                        self.recorder
                            .normal(
                                raw,
                                "SawCompletedJob",
                                &format!("Saw completed job: {}, condition: {how}", name_of(job)),
                            )
                            .await;
                    }
                    if how == Finished::Complete
                        && let Some(done) =
                            job.status.as_ref().and_then(|s| s.completion_time.as_ref())
                        && status.last_successful.is_none_or(|t| done.0 > t)
                    {
                        status.last_successful = Some(done.0);
                    }
                }
            }
        }
        // A Job in the active list that no longer exists is forgotten (the caches are caught up with
        // the store before a reconcile, so they answer as kube's GET of it would).
        let missing: Vec<(String, String)> = status
            .active
            .iter()
            .filter(|r| !jobs.iter().any(|j| r["uid"] == uid_of(j)))
            .map(|r| {
                (
                    r["uid"].as_str().unwrap_or_default().to_string(),
                    r["name"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect();
        for (uid, name) in missing {
            self.recorder
                .normal(
                    raw,
                    "MissingJob",
                    &format!("Active job went missing: {name}"),
                )
                .await;
            status.forget(&uid);
        }
        if cj.metadata.deletion_timestamp.is_some() {
            return Ok(None);
        }
        let spec = cj.spec.clone();
        let zone = match spec.time_zone.as_deref() {
            Some(tz) => match cron::load_location(tz) {
                Ok(zone) => Some(zone),
                Err(e) => {
                    let message = format!("invalid timeZone: {tz:?}: {e}");
                    self.recorder
                        .warning(raw, "UnknownTimeZone", &message)
                        .await;
                    return Ok(None);
                }
            },
            None => None,
        };
        if spec.suspend == Some(true) {
            return Ok(None);
        }
        let text = if spec.schedule.contains("TZ") {
            let message = format!(
                "CRON_TZ or TZ used in schedule {:?} is not officially supported, see https://kubernetes.io/docs/concepts/workloads/controllers/cron-jobs/ for more details",
                spec.schedule
            );
            self.recorder
                .warning(raw, "UnsupportedSchedule", &message)
                .await;
            spec.schedule.clone()
        } else if let Some(tz) = &spec.time_zone {
            format!("TZ={tz} {}", spec.schedule)
        } else {
            spec.schedule.clone()
        };
        let schedule = match cron::parse(&text) {
            Ok(s) => s,
            Err(e) => {
                let message = format!("unparseable schedule: {:?} : {e}", spec.schedule);
                self.recorder
                    .warning(raw, "UnparseableSchedule", &message)
                    .await;
                return Ok(None);
            }
        };
        let facts = plan::Facts::of(cj, status.last_schedule);
        let due = match plan::most_recent(&facts, now, &schedule, true) {
            Err(e) => {
                let message = format!("invalid schedule: {} : {e}", spec.schedule);
                self.recorder
                    .warning(raw, "InvalidSchedule", &message)
                    .await;
                return Ok(None);
            }
            Ok(recent) => recent,
        };
        let Some(scheduled) = due.most_recent else {
            return Ok(requeue(cj, status, now, &schedule));
        };
        if due.missed == Missed::Many {
            self.recorder
                .warning(
                    raw,
                    "TooManyMissedTimes",
                    "too many missed start times. Set or decrease .spec.startingDeadlineSeconds or check clock skew",
                )
                .await;
        }
        if let Some(deadline) = spec.starting_deadline_seconds
            && scheduled
                .checked_add(jiff::SignedDuration::from_secs(deadline))
                .is_ok_and(|late| late < now)
        {
            let message = format!(
                "Missed scheduled time to start a job: {}",
                plan::rfc1123z(scheduled)
            );
            self.recorder.warning(raw, "MissSchedule", &message).await;
            return Ok(requeue(cj, status, now, &schedule));
        }
        let job_name = plan::job_name(name_of_cronjob(cj), scheduled);
        if status.is_active_named(&job_name) || status.last_schedule == Some(scheduled) {
            return Ok(requeue(cj, status, now, &schedule));
        }
        match spec.concurrency_policy.as_deref() {
            Some("Forbid") if !status.active.is_empty() => {
                self.recorder
                    .normal(
                        raw,
                        "JobAlreadyActive",
                        "Not starting job because prior execution is running and concurrency policy is Forbid",
                    )
                    .await;
                return Ok(requeue(cj, status, now, &schedule));
            }
            Some("Replace") => {
                for active in status.active.clone() {
                    let running = active["name"]
                        .as_str()
                        .and_then(|n| self.caches.store::<Job>().get(cj_ns(cj), n));
                    let Some(running) = running else {
                        let e = format!(
                            "jobs.batch \"{}\" not found",
                            active["name"].as_str().unwrap_or_default()
                        );
                        self.recorder
                            .warning(raw, "FailedGet", &format!("Get job: {e}"))
                            .await;
                        return Err(ApiError::Internal(e));
                    };
                    if !self.delete_job(raw, &running, status).await {
                        return Err(ApiError::Internal(format!(
                            "could not replace job {}/{}",
                            cj_ns(cj),
                            name_of(&running)
                        )));
                    }
                }
            }
            _ => {}
        }
        let job = plan::job_from_template(raw, &job_name, scheduled, zone.as_ref());
        let created = match self
            .objects
            .create(self.jobs, Some(cj_ns(cj)), job, false)
            .await
        {
            Ok(created) => {
                self.recorder
                    .normal(raw, "SuccessfulCreate", &format!("Created job {job_name}"))
                    .await;
                created
            }
            Err(e @ ApiError::AlreadyExists { .. }) => {
                // Created before, by this controller (whose status write was lost) or someone else; one
                // created since this sync began is in the caches by the retry.
                let Some(existing) = self.caches.get(self.jobs, cj_ns(cj), &job_name) else {
                    return Err(e);
                };
                let cj_uid = cj.metadata.uid.as_deref().unwrap_or_default();
                let existing_uid = existing
                    .pointer("/metadata/uid")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                if !super::is_owned_by(&existing, cj_uid) || status.is_active(existing_uid) {
                    return Ok(None);
                }
                tracing::info!(job = %job_name, "job already exists");
                (*existing).clone()
            }
            Err(e) => {
                self.recorder
                    .warning(raw, "FailedCreate", &format!("Error creating job: {e}"))
                    .await;
                return Err(e);
            }
        };
        status.active.push(plan::object_reference(&created));
        status.last_schedule = Some(scheduled);
        Ok(requeue(cj, status, now, &schedule))
    }
}

fn name_of_cronjob(cj: &CronJob) -> &str {
    cj.metadata.name.as_deref().unwrap_or_default()
}

fn cj_ns(cj: &CronJob) -> &str {
    cj.metadata.namespace.as_deref().unwrap_or_default()
}

/// When to look again: just after the next scheduled time, from the status as it now is (kube computes it
/// on its updated copy).
fn requeue(
    cj: &CronJob,
    status: &Status,
    now: jiff::Timestamp,
    schedule: &cron::Schedule,
) -> Requeue {
    let facts = plan::Facts::of(cj, status.last_schedule);
    plan::next_delay(&facts, now, schedule)
}
