//! The CronJob controller against a real control plane, on a manual clock the tests move (the controller
//! reads its time from `ControlConfig::clock`): a minute's schedule comes due when the clock says so, not
//! a minute later. The Job controller runs too; no node agent does, so the tests finish a Job's pod by
//! writing `pods/status`, as the Job tests do.

use std::time::{Duration, Instant};

use herd_control::Clock;
use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};

const NS: &str = "/api/v1/namespaces/default";
const CRONJOBS: &str = "/apis/batch/v1/namespaces/default/cronjobs";
const JOBS: &str = "/apis/batch/v1/namespaces/default/jobs";

mod common;
use common::Plane;

/// A plane whose CronJob controller reads `clock`, resyncing every key often, so that a move of the clock
/// is seen within a moment (nothing else wakes a key whose next time was brought on by the clock).
async fn plane(clock: &Clock) -> Plane {
    let clock = clock.clone();
    Plane::start_with(move |cfg| {
        cfg.clock = clock;
        cfg.controller_resync = Duration::from_millis(250);
    })
    .await
}

impl Plane {
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<(&str, Value)>,
    ) -> (u16, Value) {
        self.request(method, path, &[], body.map(|(ct, b)| (ct, b.to_string())))
            .await
    }

    async fn get(&self, path: &str) -> Value {
        let (code, out) = self.send(reqwest::Method::GET, path, None).await;
        assert_eq!(code, 200, "GET {path}: {out}");
        out
    }

    async fn post(&self, path: &str, v: Value) -> Value {
        let (code, out) = self
            .send(reqwest::Method::POST, path, Some(("application/json", v)))
            .await;
        assert_eq!(code, 201, "POST {path}: {out}");
        out
    }

    async fn merge(&self, path: &str, v: Value) -> Value {
        let (code, out) = self
            .send(
                reqwest::Method::PATCH,
                path,
                Some(("application/merge-patch+json", v)),
            )
            .await;
        assert_eq!(code, 200, "PATCH {path}: {out}");
        out
    }

    /// The names of the Jobs in `default`, sorted.
    async fn job_names(&self) -> Vec<String> {
        let list = self.get(JOBS).await;
        let mut names: Vec<String> = list["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|j| j["metadata"]["deletionTimestamp"].is_null())
            .map(|j| name(j).to_string())
            .collect();
        names.sort();
        names
    }

    /// Events about the CronJob `cj`, as `reason: message`.
    async fn events_of(&self, cj: &str) -> Vec<String> {
        let list = self.get(&format!("{NS}/events")).await;
        list["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| {
                e["involvedObject"]["kind"] == "CronJob" && e["involvedObject"]["name"] == cj
            })
            .map(|e| format!("{}: {}", s(e, "reason"), s(e, "message")))
            .collect()
    }

    /// Finishes the Job's pods as Succeeded, as a node would, until the Job is Complete.
    async fn complete(&self, job: &str) {
        eventually(&format!("Job {job} Complete"), async || {
            let j = self.get(&format!("{JOBS}/{job}")).await;
            if condition(&j, "Complete") {
                return Some(());
            }
            let pods = self
                .get(&format!(
                    "{NS}/pods?labelSelector=batch.kubernetes.io/job-name%3D{job}"
                ))
                .await;
            for pod in pods["items"].as_array().into_iter().flatten() {
                if pod["status"]["phase"] != "Succeeded" {
                    let path = format!("{NS}/pods/{}/status", name(pod));
                    self.merge(&path, json!({"status": {"phase": "Succeeded"}}))
                        .await;
                }
            }
            None
        })
        .await;
    }
}

fn name(obj: &Value) -> &str {
    obj["metadata"]["name"].as_str().unwrap_or_default()
}

fn s<'a>(obj: &'a Value, field: &str) -> &'a str {
    obj[field].as_str().unwrap_or_default()
}

fn condition(obj: &Value, type_: &str) -> bool {
    obj["status"]["conditions"].as_array().is_some_and(|cs| {
        cs.iter()
            .any(|c| c["type"] == type_ && c["status"] == "True")
    })
}

/// Polls `probe` until it answers (a failing probe only means "not yet"); panics after 20 s.
async fn eventually<T>(what: &str, mut probe: impl AsyncFnMut() -> Option<T>) -> T {
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(Instant::now() < until, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn cronjob(name: &str, spec: Value) -> Value {
    let mut spec = spec;
    spec["jobTemplate"] = json!({
        "metadata": {"labels": {"app": "tick"}, "annotations": {"team": "batch"}},
        "spec": {"template": {"spec": {"restartPolicy": "Never",
            "containers": [{"name": "c", "image": "127.0.0.1:5000/hello:v1"}]}}}});
    json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": name}, "spec": spec})
}

fn ts(v: &Value) -> Timestamp {
    v.as_str()
        .unwrap_or_else(|| panic!("not a time: {v}"))
        .parse()
        .unwrap()
}

/// The first whole minute after the CronJob's creation: its first scheduled time for `* * * * *`.
fn first_minute(cj: &Value) -> Timestamp {
    let created = ts(&cj["metadata"]["creationTimestamp"]).as_second();
    Timestamp::from_second((created.div_euclid(60) + 1) * 60).unwrap()
}

fn job_name(cj: &str, at: Timestamp) -> String {
    format!("{cj}-{}", at.as_second() / 60)
}

fn minutes(n: i64) -> SignedDuration {
    SignedDuration::from_mins(n)
}

#[tokio::test]
async fn a_cronjob_runs_each_minute_as_the_clock_reaches_it_and_keeps_its_history() {
    let clock = Clock::manual(Timestamp::now());
    let p = plane(&clock).await;
    let cj = p
        .post(
            CRONJOBS,
            cronjob(
                "tick",
                json!({"schedule": "* * * * *", "timeZone": "Europe/Paris",
                "successfulJobsHistoryLimit": 1}),
            ),
        )
        .await;
    assert_eq!(cj["spec"]["concurrencyPolicy"], "Allow");
    let first = first_minute(&cj);

    // Before its first minute nothing runs, however many resyncs go by.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(p.job_names().await.is_empty());

    clock.set(first + SignedDuration::from_secs(5));
    let first_job = job_name("tick", first);
    let job = eventually("the first minute's Job", async || {
        let (code, j) = p
            .send(reqwest::Method::GET, &format!("{JOBS}/{first_job}"), None)
            .await;
        (code == 200).then_some(j)
    })
    .await;
    assert_eq!(
        job["metadata"]["ownerReferences"],
        json!([{"apiVersion": "batch/v1", "kind": "CronJob", "name": "tick",
            "uid": cj["metadata"]["uid"], "controller": true, "blockOwnerDeletion": true}])
    );
    assert_eq!(job["metadata"]["labels"]["app"], "tick");
    assert_eq!(job["metadata"]["annotations"]["team"], "batch");
    // The scheduled time in the CronJob's zone (Paris is an hour or two ahead of UTC).
    let scheduled = s(
        &job["metadata"]["annotations"],
        "batch.kubernetes.io/cronjob-scheduled-timestamp",
    );
    let paris = first.to_zoned(jiff::tz::TimeZone::get("Europe/Paris").unwrap());
    assert_eq!(
        scheduled,
        paris.strftime("%Y-%m-%dT%H:%M:%S%:z").to_string()
    );
    let cj = eventually("status.active", async || {
        let cj = p.get(&format!("{CRONJOBS}/tick")).await;
        (cj["status"]["active"][0]["name"] == first_job.as_str()).then_some(cj)
    })
    .await;
    assert_eq!(ts(&cj["status"]["lastScheduleTime"]), first);
    assert_eq!(cj["status"]["active"][0]["kind"], "Job");

    // Done: out of the active list, its completion the last success.
    p.complete(&first_job).await;
    let cj = eventually("the completed Job seen", async || {
        let cj = p.get(&format!("{CRONJOBS}/tick")).await;
        (cj["status"]["active"].is_null() && cj["status"]["lastSuccessfulTime"].is_string())
            .then_some(cj)
    })
    .await;
    let done = p.get(&format!("{JOBS}/{first_job}")).await;
    assert_eq!(
        cj["status"]["lastSuccessfulTime"],
        done["status"]["completionTime"]
    );

    // The next minute runs the next Job; once it completes too, the older one goes (history limit 1).
    clock.set(first + minutes(1) + SignedDuration::from_secs(5));
    let second_job = job_name("tick", first + minutes(1));
    eventually("the second Job", async || {
        p.job_names().await.contains(&second_job).then_some(())
    })
    .await;
    p.complete(&second_job).await;
    eventually("the first Job deleted", async || {
        (p.job_names().await == [second_job.clone()]).then_some(())
    })
    .await;
    let events = p.events_of("tick").await;
    for wanted in [
        format!("SuccessfulCreate: Created job {first_job}"),
        format!("SuccessfulCreate: Created job {second_job}"),
        format!("SawCompletedJob: Saw completed job: {first_job}, condition: Complete"),
        format!("SuccessfulDelete: Deleted job {first_job}"),
    ] {
        assert!(events.contains(&wanted), "{wanted} not in {events:#?}");
    }
    p.stop().await;
}

#[tokio::test]
async fn forbid_skips_a_run_while_one_is_active_and_replace_replaces_it() {
    let clock = Clock::manual(Timestamp::now());
    let p = plane(&clock).await;
    let cj = p
        .post(
            CRONJOBS,
            cronjob(
                "once",
                json!({"schedule": "* * * * *", "concurrencyPolicy": "Forbid"}),
            ),
        )
        .await;
    let first = first_minute(&cj);
    clock.set(first + SignedDuration::from_secs(1));
    let first_job = job_name("once", first);
    eventually("the first Job", async || {
        (p.job_names().await == [first_job.clone()]).then_some(())
    })
    .await;

    // Still running a minute later: Forbid starts nothing.
    clock.set(first + minutes(1) + SignedDuration::from_secs(1));
    eventually("JobAlreadyActive", async || {
        p.events_of("once").await.contains(&"JobAlreadyActive: Not starting job because prior execution is running and concurrency policy is Forbid".to_string()).then_some(())
    })
    .await;
    assert_eq!(p.job_names().await, [first_job.as_str()]);

    // Replace: the running Job is deleted and the next minute's takes its place.
    p.merge(
        &format!("{CRONJOBS}/once"),
        json!({"spec": {"concurrencyPolicy": "Replace"}}),
    )
    .await;
    clock.set(first + minutes(2) + SignedDuration::from_secs(1));
    let third_job = job_name("once", first + minutes(2));
    eventually("the replacing Job alone", async || {
        (p.job_names().await == [third_job.clone()]).then_some(())
    })
    .await;
    let cj = p.get(&format!("{CRONJOBS}/once")).await;
    let active: Vec<&str> = cj["status"]["active"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| s(r, "name"))
        .collect();
    assert_eq!(active, [third_job.as_str()]);
    assert!(
        p.events_of("once")
            .await
            .contains(&format!("SuccessfulDelete: Deleted job {first_job}"))
    );
    p.stop().await;
}

#[tokio::test]
async fn a_suspended_cronjob_starts_nothing_and_then_only_its_latest_missed_time() {
    let clock = Clock::manual(Timestamp::now());
    let p = plane(&clock).await;
    let cj = p
        .post(
            CRONJOBS,
            cronjob("later", json!({"schedule": "*/1 * * * *", "suspend": true})),
        )
        .await;
    let first = first_minute(&cj);
    clock.set(first + minutes(3) + SignedDuration::from_secs(5));
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(p.job_names().await.is_empty(), "a suspended CronJob ran");

    // Resumed: the most recent of the missed minutes runs, not all four.
    p.merge(
        &format!("{CRONJOBS}/later"),
        json!({"spec": {"suspend": false}}),
    )
    .await;
    let latest = job_name("later", first + minutes(3));
    eventually("the latest missed minute's Job", async || {
        (p.job_names().await == [latest.clone()]).then_some(())
    })
    .await;

    // With a 10 s starting deadline, minutes the controller sees only later than that are skipped; the
    // next one seen in time runs.
    p.merge(
        &format!("{CRONJOBS}/later"),
        json!({"spec": {"startingDeadlineSeconds": 10, "concurrencyPolicy": "Allow"}}),
    )
    .await;
    clock.set(first + minutes(5) + SignedDuration::from_secs(30));
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        p.job_names().await,
        [latest.as_str()],
        "a minute past its deadline ran"
    );
    clock.set(first + minutes(6) + SignedDuration::from_secs(8));
    let in_time = job_name("later", first + minutes(6));
    eventually("the Job started within its deadline", async || {
        (p.job_names().await == [latest.clone(), in_time.clone()]).then_some(())
    })
    .await;
    p.stop().await;
}

#[tokio::test]
async fn a_bad_cronjob_is_refused_with_kubes_status() {
    let clock = Clock::manual(Timestamp::now());
    let p = plane(&clock).await;
    let (code, status) = p
        .send(
            reqwest::Method::POST,
            CRONJOBS,
            Some((
                "application/json",
                cronjob("bad", json!({"schedule": "every minute"})),
            )),
        )
        .await;
    assert_eq!(code, 422, "{status}");
    // (kube names the kind `CronJob.batch` at the start of the message; herd's resource layer writes the
    // bare kind for every resource.)
    let message = status["message"].as_str().unwrap_or_default();
    assert!(
        message.ends_with("\"bad\" is invalid: spec.schedule: Invalid value: \"every minute\": expected exactly 5 fields, found 2: [every minute]"),
        "{message}"
    );
    assert_eq!(
        status["details"]["causes"],
        json!([{"reason": "FieldValueInvalid", "field": "spec.schedule",
            "message": "Invalid value: \"every minute\": expected exactly 5 fields, found 2: [every minute]"}])
    );
    let (code, status) = p
        .send(
            reqwest::Method::POST,
            CRONJOBS,
            Some((
                "application/json",
                cronjob(
                    "bad",
                    json!({"schedule": "@hourly", "timeZone": "Moon/Base"}),
                ),
            )),
        )
        .await;
    assert_eq!(code, 422, "{status}");
    assert_eq!(
        status["details"]["causes"][0]["message"],
        "Invalid value: \"Moon/Base\": unknown time zone Moon/Base"
    );
    p.stop().await;
}
