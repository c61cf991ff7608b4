//! The CronJob controller's decisions as pure functions of a CronJob, its Jobs and the time (kube's
//! `pkg/controller/cronjob/utils.go`): which scheduled time is due, when to look again, what a run's Job
//! is and which finished Jobs go.

use std::fmt;
use std::time::Duration;

use herd_api::cron::Schedule;
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use serde_json::{Value, json};

/// The annotation with the time a Job was scheduled for, in the CronJob's time zone.
pub const SCHEDULED_TIMESTAMP: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";
/// How long after a scheduled time the controller looks (kube's `nextScheduleDelta`).
const NEXT_SCHEDULE_DELTA: Duration = Duration::from_millis(100);
/// More missed times than this is kube's `manyMissed` (a TooManyMissedTimes warning).
const MANY_MISSED: i64 = 100;

/// What the schedule's arithmetic needs of a CronJob.
#[derive(Debug, Clone)]
pub struct Facts {
    created: Timestamp,
    last_schedule: Option<Timestamp>,
    starting_deadline_seconds: Option<i64>,
}

impl Facts {
    /// The CronJob's facts, with `last_schedule` as the sync has it so far.
    pub fn of(cj: &CronJob, last_schedule: Option<Timestamp>) -> Self {
        Self {
            created: cj
                .metadata
                .creation_timestamp
                .as_ref()
                .map_or(Timestamp::UNIX_EPOCH, |t| t.0),
            last_schedule,
            starting_deadline_seconds: cj.spec.starting_deadline_seconds,
        }
    }
}

/// How many scheduled times went by unstarted (kube's `missedSchedulesType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missed {
    None,
    Few,
    Many,
}

/// kube's `mostRecentScheduleTime`'s answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MostRecent {
    /// The last scheduled time, else the CronJob's creation (moved up to the starting deadline).
    pub earliest: Timestamp,
    /// The latest scheduled time in (earliest, now], if any.
    pub most_recent: Option<Timestamp>,
    pub missed: Missed,
}

/// kube's `mostRecentScheduleTime`: the most recent scheduled time after the last one run (or the
/// creation), and roughly how many were missed — counted from the interval between the first two times,
/// not by walking them all, so a CronJob left alone for years costs nothing. `include_deadline` starts
/// the search no earlier than `startingDeadlineSeconds` ago.
///
/// # Errors
/// kube's message for a schedule whose times are less than a second apart (or that never comes).
pub fn most_recent(
    facts: &Facts,
    now: Timestamp,
    schedule: &Schedule,
    include_deadline: bool,
) -> Result<MostRecent, &'static str> {
    const TOO_CLOSE: &str = "time difference between two schedules is less than 1 second";
    let mut earliest = facts.last_schedule.unwrap_or(facts.created);
    if include_deadline
        && let Some(deadline) = facts.starting_deadline_seconds
        && let Ok(from) = now.checked_sub(SignedDuration::from_secs(deadline))
        && from > earliest
    {
        earliest = from;
    }
    let none = |most_recent, missed| MostRecent {
        earliest,
        most_recent,
        missed,
    };
    let t1 = schedule.next(earliest).ok_or(TOO_CLOSE)?;
    let t2 = schedule.next(t1).ok_or(TOO_CLOSE)?;
    if now < t1 {
        return Ok(none(None, Missed::None));
    }
    if now < t2 {
        return Ok(none(Some(t1), Missed::None));
    }
    // Go's `Duration.Round(time.Second)`: half away from zero.
    let between = i64::try_from((t2.duration_since(t1).as_nanos() + 500_000_000) / 1_000_000_000)
        .unwrap_or(i64::MAX);
    if between < 1 {
        return Err(TOO_CLOSE);
    }
    let elapsed = now.duration_since(t1).as_secs();
    let missed_count = elapsed / between + 1;
    // Start two intervals before the estimated last time and let the schedule find the times from there
    // (exact for regular schedules and @every, and for irregular ones such as `30 6-16/4 * * 1-5`).
    let start = t1
        .checked_add(SignedDuration::from_secs(
            (missed_count - 2).saturating_mul(between),
        ))
        .unwrap_or(t1);
    let mut most_recent = None;
    let mut t = schedule.next(start);
    while let Some(at) = t.filter(|at| *at <= now) {
        most_recent = Some(at);
        t = schedule.next(at);
    }
    let missed = if missed_count > MANY_MISSED {
        Missed::Many
    } else {
        Missed::Few
    };
    Ok(none(most_recent, missed))
}

/// kube's `nextScheduleTimeDuration`: how long until just after the next scheduled time; `None` when the
/// schedule has no next time.
pub fn next_delay(facts: &Facts, now: Timestamp, schedule: &Schedule) -> Option<Duration> {
    let from = match most_recent(facts, now, schedule, false) {
        Err(_) => now,
        Ok(MostRecent {
            most_recent: Some(t),
            ..
        }) => t,
        Ok(MostRecent {
            earliest,
            missed: Missed::None,
            ..
        }) => earliest,
        Ok(_) => now,
    };
    let next = schedule.next(from)?;
    let left = Duration::try_from(next.duration_since(now)).unwrap_or_default();
    Some(left + NEXT_SCHEDULE_DELTA)
}

/// `<cronjob>-<scheduled time in minutes since the epoch>` (kube's `getJobName`): the same time always
/// names the same Job, so no time runs twice.
pub fn job_name(cronjob: &str, scheduled: Timestamp) -> String {
    format!("{cronjob}-{}", scheduled.as_second().div_euclid(60))
}

/// How a Job finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finished {
    Complete,
    Failed,
}

impl fmt::Display for Finished {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Complete => "Complete",
            Self::Failed => "Failed",
        })
    }
}

/// The Job's `Complete` or `Failed` condition that is True, the first listed (kube's `getFinishedStatus`).
pub fn finished(job: &Job) -> Option<Finished> {
    job.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .filter(|c| c.status == "True")
        .find_map(|c| match c.type_.as_str() {
            "Complete" => Some(Finished::Complete),
            "Failed" => Some(Finished::Failed),
            _ => None,
        })
}

/// The Jobs that finished `how` beyond the newest `limit` of them, oldest first (kube's
/// `removeOldestJobs`: by start time, Jobs never started last, then by name).
pub fn beyond_history<J: AsRef<Job>>(jobs: &[J], how: Finished, limit: i32) -> Vec<&Job> {
    let mut done: Vec<&Job> = jobs
        .iter()
        .map(AsRef::as_ref)
        .filter(|j| finished(j) == Some(how))
        .collect();
    let start = |j: &Job| {
        j.status
            .as_ref()
            .and_then(|s| s.start_time.as_ref())
            .map(|t| t.0)
    };
    done.sort_by(|a, b| match (start(a), start(b)) {
        (Some(x), Some(y)) if x != y => x.cmp(&y),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        _ => a.metadata.name.cmp(&b.metadata.name),
    });
    let surplus = done
        .len()
        .saturating_sub(usize::try_from(limit).unwrap_or(0));
    done.truncate(surplus);
    done
}

/// The Job of the run scheduled at `scheduled` (kube's `getJobFromTemplate2`): the template's labels,
/// annotations and spec, the scheduled time as an annotation in the CronJob's time zone (UTC without
/// one), and the CronJob as its controller.
pub fn job_from_template(
    cronjob: &Value,
    name: &str,
    scheduled: Timestamp,
    zone: Option<&TimeZone>,
) -> Value {
    let template = cronjob
        .pointer("/spec/jobTemplate")
        .cloned()
        .unwrap_or_default();
    let mut annotations = template
        .pointer("/metadata/annotations")
        .cloned()
        .filter(Value::is_object)
        .unwrap_or(json!({}));
    annotations[SCHEDULED_TIMESTAMP] = json!(go_rfc3339(scheduled, zone.unwrap_or(&TimeZone::UTC)));
    let mut metadata = json!({
        "name": name,
        "namespace": cronjob.pointer("/metadata/namespace").cloned().unwrap_or(Value::Null),
        "annotations": annotations,
        "ownerReferences": [super::super::replicaset::owner_reference(cronjob, "CronJob")],
    });
    if let Some(labels) = template
        .pointer("/metadata/labels")
        .filter(|l| l.as_object().is_some_and(|m| !m.is_empty()))
    {
        metadata["labels"] = labels.clone();
    }
    json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": metadata,
        "spec": template.get("spec").cloned().unwrap_or(json!({})),
    })
}

/// The `ObjectReference` a CronJob's `status.active` keeps for a Job (kube's `ref.GetReference`).
pub fn object_reference(job: &Value) -> Value {
    let meta = |field: &str| {
        job.pointer(&format!("/metadata/{field}"))
            .cloned()
            .unwrap_or(Value::Null)
    };
    json!({
        "kind": "Job",
        "namespace": meta("namespace"),
        "name": meta("name"),
        "uid": meta("uid"),
        "apiVersion": "batch/v1",
        "resourceVersion": meta("resourceVersion"),
    })
}

/// Go's `time.RFC3339` in `zone`: `Z` for a zero offset.
fn go_rfc3339(at: Timestamp, zone: &TimeZone) -> String {
    let zoned = at.to_zoned(zone.clone());
    if zoned.offset().seconds() == 0 {
        zoned.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
    } else {
        zoned.strftime("%Y-%m-%dT%H:%M:%S%:z").to_string()
    }
}

/// Go's `time.RFC1123Z` of the time in UTC, as kube's MissSchedule event prints it.
pub fn rfc1123z(at: Timestamp) -> String {
    at.to_zoned(TimeZone::UTC)
        .strftime("%a, %d %b %Y %H:%M:%S %z")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use herd_api::cron;

    fn at(t: &str) -> Timestamp {
        t.parse().unwrap()
    }

    fn facts(created: &str, last: Option<&str>, deadline: Option<i64>) -> Facts {
        Facts {
            created: at(created),
            last_schedule: last.map(at),
            starting_deadline_seconds: deadline,
        }
    }

    fn every_minute() -> Schedule {
        cron::parse("TZ=UTC * * * * *").unwrap()
    }

    #[test]
    fn the_most_recent_time_is_the_last_one_due_since_the_last_run() {
        let sched = every_minute();
        let created = facts("2026-12-07T10:00:30Z", None, None);
        // Nothing due before the first minute.
        let r = most_recent(&created, at("2026-12-07T10:00:59Z"), &sched, true).unwrap();
        assert_eq!((r.most_recent, r.missed), (None, Missed::None));
        // The first minute.
        let r = most_recent(&created, at("2026-12-07T10:01:10Z"), &sched, true).unwrap();
        assert_eq!(
            (r.most_recent, r.missed),
            (Some(at("2026-12-07T10:01:00Z")), Missed::None)
        );
        // Three minutes later: the latest of them, a few missed.
        let r = most_recent(&created, at("2026-12-07T10:04:10Z"), &sched, true).unwrap();
        assert_eq!(
            (r.most_recent, r.missed),
            (Some(at("2026-12-07T10:04:00Z")), Missed::Few)
        );
        // After a run, counting starts from it.
        let ran = facts("2026-12-07T10:00:30Z", Some("2026-12-07T10:04:00Z"), None);
        let r = most_recent(&ran, at("2026-12-07T10:04:30Z"), &sched, true).unwrap();
        assert_eq!(r.most_recent, None);
        // Days behind: many missed (a TooManyMissedTimes warning), still the latest time.
        let r = most_recent(&ran, at("2026-12-09T00:00:05Z"), &sched, true).unwrap();
        assert_eq!(
            (r.most_recent, r.missed),
            (Some(at("2026-12-09T00:00:00Z")), Missed::Many)
        );
    }

    #[test]
    fn a_starting_deadline_moves_the_search_up() {
        let sched = every_minute();
        // Created long ago, never run, a 200 s deadline: only the last few minutes count.
        let f = facts("2026-12-01T00:00:00Z", None, Some(200));
        let r = most_recent(&f, at("2026-12-07T10:04:10Z"), &sched, true).unwrap();
        assert_eq!(r.earliest, at("2026-12-07T10:00:50Z"));
        assert_eq!(
            (r.most_recent, r.missed),
            (Some(at("2026-12-07T10:04:00Z")), Missed::Few)
        );
        // Without the deadline (the requeue's computation) the whole week is behind.
        let r = most_recent(&f, at("2026-12-07T10:04:10Z"), &sched, false).unwrap();
        assert_eq!(r.missed, Missed::Many);
    }

    #[test]
    fn irregular_and_time_zoned_schedules_find_their_latest_time() {
        // Weekdays at 6:30, 10:30 and 14:30 New York time.
        let sched = cron::parse("TZ=America/New_York 30 6-16/4 * * 1-5").unwrap();
        let f = facts("2026-12-01T00:00:00Z", None, None);
        // Monday 2026-12-07 12:00 in New York (17:00Z): 10:30 that morning, 15:30Z.
        let r = most_recent(&f, at("2026-12-07T17:00:00Z"), &sched, true).unwrap();
        assert_eq!(r.most_recent, Some(at("2026-12-07T15:30:00Z")));
        assert_eq!(r.missed, Missed::Few);
    }

    #[test]
    fn a_schedule_that_never_comes_is_an_error() {
        let never = cron::parse("TZ=UTC 0 0 30 2 *").unwrap();
        let f = facts("2026-12-01T00:00:00Z", None, None);
        assert_eq!(
            most_recent(&f, at("2026-12-07T17:00:00Z"), &never, true),
            Err("time difference between two schedules is less than 1 second")
        );
    }

    #[test]
    fn the_next_look_is_just_after_the_next_time() {
        let sched = every_minute();
        let f = facts("2026-12-07T10:00:30Z", Some("2026-12-07T10:04:00Z"), None);
        assert_eq!(
            next_delay(&f, at("2026-12-07T10:04:20Z"), &sched),
            Some(Duration::from_millis(40_100))
        );
        // Behind (the controller was down): from now, not from the missed times.
        let behind = facts("2026-12-07T10:00:30Z", Some("2026-12-07T10:00:00Z"), None);
        assert_eq!(
            next_delay(&behind, at("2026-12-07T10:04:20Z"), &sched),
            Some(Duration::from_millis(40_100))
        );
        let hourly = cron::parse("TZ=UTC @hourly").unwrap();
        let fresh = facts("2026-12-07T10:00:30Z", None, None);
        assert_eq!(
            next_delay(&fresh, at("2026-12-07T10:30:00Z"), &hourly),
            Some(Duration::from_millis(1_800_100))
        );
    }

    #[test]
    fn a_runs_job_is_named_by_its_minute_and_built_from_the_template() {
        assert_eq!(
            job_name("hello", at("2026-12-07T10:04:00Z")),
            "hello-29943964"
        );
        let cj = json!({"apiVersion": "batch/v1", "kind": "CronJob",
            "metadata": {"name": "hello", "namespace": "team", "uid": "u-1"},
            "spec": {"schedule": "* * * * *", "jobTemplate": {
                "metadata": {"labels": {"app": "hello"}, "annotations": {"note": "n"}},
                "spec": {"backoffLimit": 2, "template": {"spec": {"containers": []}}}}}});
        let ny = TimeZone::get("America/New_York").unwrap();
        let job = job_from_template(&cj, "hello-29943964", at("2026-12-07T10:04:00Z"), Some(&ny));
        let mut annotations = json!({"note": "n"});
        annotations[SCHEDULED_TIMESTAMP] = json!("2026-12-07T05:04:00-05:00");
        assert_eq!(
            job,
            json!({"apiVersion": "batch/v1", "kind": "Job",
                "metadata": {"name": "hello-29943964", "namespace": "team",
                    "labels": {"app": "hello"},
                    "annotations": annotations,
                    "ownerReferences": [{"apiVersion": "batch/v1", "kind": "CronJob", "name": "hello",
                        "uid": "u-1", "controller": true, "blockOwnerDeletion": true}]},
                "spec": {"backoffLimit": 2, "template": {"spec": {"containers": []}}}})
        );
        let utc = job_from_template(&cj, "x", at("2026-12-07T10:04:00Z"), None);
        assert_eq!(
            utc["metadata"]["annotations"][SCHEDULED_TIMESTAMP],
            "2026-12-07T10:04:00Z"
        );
        assert_eq!(
            rfc1123z(at("2026-12-07T10:04:00Z")),
            "Mon, 07 Dec 2026 10:04:00 +0000"
        );
    }

    fn job(name: &str, condition: Option<&str>, started: Option<&str>) -> Job {
        let mut status = json!({});
        if let Some(c) = condition {
            status["conditions"] = json!([{"type": c, "status": "True"}]);
        }
        if let Some(s) = started {
            status["startTime"] = json!(s);
        }
        serde_json::from_value(json!({"metadata": {"name": name}, "status": status})).unwrap()
    }

    #[test]
    fn the_oldest_finished_jobs_beyond_the_limits_go() {
        let jobs = vec![
            std::sync::Arc::new(job("c", Some("Complete"), Some("2026-12-07T10:03:00Z"))),
            std::sync::Arc::new(job("a", Some("Complete"), Some("2026-12-07T10:01:00Z"))),
            std::sync::Arc::new(job("unstarted", Some("Complete"), None)),
            std::sync::Arc::new(job("b", Some("Complete"), Some("2026-12-07T10:02:00Z"))),
            std::sync::Arc::new(job("f1", Some("Failed"), Some("2026-12-07T10:00:00Z"))),
            std::sync::Arc::new(job("running", None, Some("2026-12-07T10:04:00Z"))),
        ];
        let names = |js: Vec<&Job>| {
            js.iter()
                .map(|j| super::super::name_of(j).to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            names(beyond_history(&jobs, Finished::Complete, 2)),
            ["a", "b"]
        );
        assert_eq!(names(beyond_history(&jobs, Finished::Complete, 3)), ["a"]);
        assert_eq!(
            names(beyond_history(&jobs, Finished::Complete, 0)),
            ["a", "b", "c", "unstarted"]
        );
        assert!(beyond_history(&jobs, Finished::Failed, 1).is_empty());
        assert_eq!(names(beyond_history(&jobs, Finished::Failed, 0)), ["f1"]);
    }
}
