//! batch/v1 CronJob: kube-apiserver's `cronJobStrategy` — defaults (`SetDefaults_CronJob` and the job
//! template's pod defaults) and `ValidateCronJobCreate`/`ValidateCronJobUpdate` with kube's wording.

use k8s_openapi::api::batch::v1::{CronJob, CronJobSpec};
use k8s_openapi::api::core::v1::PodTemplateSpec;

use super::{Kind, validate_job_template};
use crate::admission as rules;
use crate::cron;
use crate::validation::Cause;

/// The longest CronJob name: a Job's is 63 characters and the controller appends `-<11 digits>`.
const MAX_NAME: usize = 52;

impl Kind for CronJob {
    const RESETS_STATUS_ON_CREATE: bool = true;
    const POD_TEMPLATE: Option<&'static str> = Some("/spec/jobTemplate/spec/template");

    fn default(&mut self) {
        // Go's non-pointer status: `{}` until the controller fills it, as kube-apiserver answers.
        self.status.get_or_insert_with(Default::default);
        let spec = &mut self.spec;
        spec.concurrency_policy
            .get_or_insert_with(|| "Allow".into());
        spec.suspend.get_or_insert(false);
        spec.successful_jobs_history_limit.get_or_insert(3);
        spec.failed_jobs_history_limit.get_or_insert(1);
        if let Some(pod) = spec
            .job_template
            .spec
            .as_mut()
            .and_then(|j| j.template.spec.as_mut())
        {
            rules::default_pod_spec(pod);
        }
    }

    /// Everything is checked by [`Kind::validate_create`] or [`Kind::validate_update`]: what kube accepts
    /// depends on which it is.
    fn validate(&self, _causes: &mut Vec<Cause>) {}

    /// kube's `ValidateCronJobCreate`: the spec, and a name short enough for the Jobs' names.
    fn validate_create(&self, causes: &mut Vec<Cause>) {
        validate_spec(&self.spec, None, causes);
        if let Some(name) = self.metadata.name.as_deref()
            && name.len() > MAX_NAME
        {
            causes.push(Cause::invalid(
                "metadata.name",
                name,
                "must be no more than 52 characters",
            ));
        }
    }

    /// kube's `ValidateCronJobUpdate`: the spec against the old one (a `TZ=` schedule stays allowed on an
    /// object that had one; the time zone is checked only when it changes); no name length, so CronJobs
    /// named before the limit can still be changed.
    fn validate_update(&mut self, old: &Self, causes: &mut Vec<Cause>) {
        validate_spec(&self.spec, Some(&old.spec), causes);
    }
}

/// kube's `validateCronJobSpec`, in its order.
fn validate_spec(spec: &CronJobSpec, old: Option<&CronJobSpec>, causes: &mut Vec<Cause>) {
    if spec.schedule.is_empty() {
        causes.push(Cause::required("spec.schedule"));
    } else {
        let allow_tz = old.is_some_and(|o| o.schedule.contains("TZ"));
        validate_schedule(&spec.schedule, allow_tz, spec.time_zone.as_deref(), causes);
    }
    if let Some(deadline) = spec.starting_deadline_seconds {
        nonnegative("spec.startingDeadlineSeconds", deadline, causes);
    }
    if old.is_none_or(|o| o.time_zone != spec.time_zone) {
        validate_time_zone(spec.time_zone.as_deref(), causes);
    }
    match spec.concurrency_policy.as_deref() {
        Some("Allow" | "Forbid" | "Replace") => {}
        None | Some("") => causes.push(Cause::required("spec.concurrencyPolicy")),
        Some(other) => causes.push(Cause::not_supported(
            "spec.concurrencyPolicy",
            other,
            &["Allow", "Forbid", "Replace"],
        )),
    }
    validate_job_template_spec(spec, causes);
    if let Some(limit) = spec.successful_jobs_history_limit {
        nonnegative("spec.successfulJobsHistoryLimit", limit.into(), causes);
    }
    if let Some(limit) = spec.failed_jobs_history_limit {
        nonnegative("spec.failedJobsHistoryLimit", limit.into(), causes);
    }
}

fn nonnegative(field: &str, value: i64, causes: &mut Vec<Cause>) {
    if value < 0 {
        causes.push(Cause::invalid(
            field,
            value,
            "must be greater than or equal to 0",
        ));
    }
}

/// kube's `validateScheduleFormat`: the schedule must parse, and names no time zone of its own (kept
/// only on objects that already had one, and never beside `timeZone`).
fn validate_schedule(
    schedule: &str,
    allow_tz: bool,
    time_zone: Option<&str>,
    causes: &mut Vec<Cause>,
) {
    if let Err(e) = cron::parse(schedule) {
        causes.push(Cause::invalid("spec.schedule", schedule, &e.to_string()));
    }
    if schedule.contains("TZ") {
        if !allow_tz {
            causes.push(Cause::invalid(
                "spec.schedule",
                schedule,
                "cannot use TZ or CRON_TZ in schedule, use timeZone field instead",
            ));
        } else if time_zone.is_some() {
            causes.push(Cause::invalid(
                "spec.schedule",
                schedule,
                "cannot use both timeZone field and TZ or CRON_TZ in schedule",
            ));
        }
    }
}

/// kube's `validateTimeZone`: an IANA name (each `/`-separated part of letters, digits, `.`, `-`, `_`,
/// `+`, at most 14, not `.`/`..`, not starting with `-`), not `Local`, known to the time zone database.
fn validate_time_zone(time_zone: Option<&str>, causes: &mut Vec<Cause>) {
    const FIELD: &str = "spec.timeZone";
    let Some(tz) = time_zone else {
        return;
    };
    if tz.is_empty() {
        causes.push(Cause::invalid(
            FIELD,
            tz,
            "timeZone must be nil or non-empty string",
        ));
        return;
    }
    let part_ok = |p: &str| {
        (1..=14).contains(&p.len())
            && p != "."
            && p != ".."
            && !p.starts_with('-')
            && p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-+".contains(&b))
    };
    if !tz.split('/').all(part_ok) {
        causes.push(Cause::invalid(
            FIELD,
            tz,
            &format!("unknown time zone {tz}"),
        ));
        return;
    }
    if tz.eq_ignore_ascii_case("Local") {
        causes.push(Cause::invalid(
            FIELD,
            tz,
            "timeZone must be an explicit time zone as defined in https://www.iana.org/time-zones",
        ));
    }
    if let Err(e) = cron::load_location(tz) {
        causes.push(Cause::invalid(FIELD, tz, &e));
    }
}

/// kube's `ValidateJobTemplateSpec`: the Job's pod template as a Job's, and no selector (the Job's is
/// generated when it is created).
fn validate_job_template_spec(spec: &CronJobSpec, causes: &mut Vec<Cause>) {
    const PATH: &str = "spec.jobTemplate.spec";
    let job = spec.job_template.spec.clone().unwrap_or_default();
    let template: &PodTemplateSpec = &job.template;
    validate_job_template(template, &format!("{PATH}.template"), causes);
    if let Some(selector) = &job.selector {
        causes.push(Cause::invalid(
            format!("{PATH}.selector"),
            serde_json::to_string(selector).unwrap_or_default(),
            "`selector` will be auto-generated",
        ));
    }
    if job.manual_selector == Some(true) {
        causes.push(Cause {
            reason: "FieldValueNotSupported",
            field: format!("{PATH}.manualSelector"),
            message: "Unsupported value: true: supported values: \"nil\", \"false\"".into(),
        });
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use crate::admission::admit_update;
    use crate::resources::by_kind;

    fn cronjob(name: &str, spec: Value) -> Value {
        let mut spec = spec;
        spec["jobTemplate"] = json!({"spec": {"template": {"spec": {"restartPolicy": "OnFailure",
            "containers": [{"name": "c", "image": "hello:v1"}]}}}});
        json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": name}, "spec": spec})
    }

    use crate::admission::invalid_causes_of as causes;

    #[test]
    fn a_cronjob_gets_kubes_defaults() {
        let cronjobs = by_kind("batch/v1", "CronJob").unwrap();
        let admitted =
            crate::admit(cronjobs, cronjob("c", json!({"schedule": "*/5 * * * *"}))).unwrap();
        let spec = &admitted["spec"];
        assert_eq!(
            (
                &spec["concurrencyPolicy"],
                &spec["suspend"],
                &spec["successfulJobsHistoryLimit"],
                &spec["failedJobsHistoryLimit"]
            ),
            (&json!("Allow"), &json!(false), &json!(3), &json!(1))
        );
        assert_eq!(admitted["status"], json!({}));
        let pod = &spec["jobTemplate"]["spec"]["template"]["spec"];
        assert_eq!(pod["dnsPolicy"], "ClusterFirst");
        assert_eq!(pod["restartPolicy"], "OnFailure");
        // The Job defaults are the Job's, when the controller creates it: not the template's.
        assert!(spec["jobTemplate"]["spec"].get("completions").is_none());
    }

    #[test]
    fn a_bad_cronjob_is_refused_in_kubes_words() {
        let cronjobs = by_kind("batch/v1", "CronJob").unwrap();
        let bad = cronjob(
            &"n".repeat(53),
            json!({"schedule": "TZ=UTC 61 * * * *", "startingDeadlineSeconds": -1,
                "timeZone": "Mars/Olympus", "concurrencyPolicy": "Sometimes",
                "successfulJobsHistoryLimit": -1, "failedJobsHistoryLimit": -2}),
        );
        assert_eq!(
            causes(crate::admit(cronjobs, bad)),
            [
                "spec.schedule: Invalid value: \"TZ=UTC 61 * * * *\": end of range (61) above maximum (59): 61",
                "spec.schedule: Invalid value: \"TZ=UTC 61 * * * *\": cannot use TZ or CRON_TZ in schedule, use timeZone field instead",
                "spec.startingDeadlineSeconds: Invalid value: -1: must be greater than or equal to 0",
                "spec.timeZone: Invalid value: \"Mars/Olympus\": unknown time zone Mars/Olympus",
                "spec.concurrencyPolicy: Unsupported value: \"Sometimes\": supported values: \"Allow\", \"Forbid\", \"Replace\"",
                "spec.successfulJobsHistoryLimit: Invalid value: -1: must be greater than or equal to 0",
                "spec.failedJobsHistoryLimit: Invalid value: -2: must be greater than or equal to 0",
                "metadata.name: Invalid value: \"nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn\": must be no more than 52 characters",
            ]
        );
        let mut always = cronjob("c", json!({"schedule": "@hourly", "timeZone": "Local"}));
        always["spec"]["jobTemplate"]["spec"]["template"]["spec"]["restartPolicy"] =
            json!("Always");
        always["spec"]["jobTemplate"]["spec"]["selector"] = json!({"matchLabels": {"a": "b"}});
        assert_eq!(
            causes(crate::admit(cronjobs, always)),
            [
                "spec.timeZone: Invalid value: \"Local\": timeZone must be an explicit time zone as defined in https://www.iana.org/time-zones",
                "spec.jobTemplate.spec.template.spec.restartPolicy: Unsupported value: \"Always\": supported values: \"OnFailure\", \"Never\"",
                "spec.jobTemplate.spec.selector: Invalid value: \"{\"matchLabels\":{\"a\":\"b\"}}\": `selector` will be auto-generated",
            ]
        );
        assert_eq!(
            causes(crate::admit(
                cronjobs,
                cronjob("c", json!({"schedule": ""}))
            )),
            ["spec.schedule: Required value"]
        );
    }

    #[test]
    fn an_update_keeps_a_tz_schedule_it_had_and_skips_the_name_length() {
        let cronjobs = by_kind("batch/v1", "CronJob").unwrap();
        let long = "n".repeat(60);
        // Stored before the rules: a TZ= schedule and a long name.
        let mut old = crate::admit(cronjobs, cronjob("c", json!({"schedule": "@daily"}))).unwrap();
        old["metadata"]["name"] = json!(long);
        old["spec"]["schedule"] = json!("TZ=Europe/Paris 0 6 * * *");
        let mut new = old.clone();
        new["spec"]["suspend"] = json!(true);
        assert!(admit_update(cronjobs, &old, new.clone()).is_ok());
        new["spec"]["timeZone"] = json!("Europe/Paris");
        assert_eq!(
            causes(admit_update(cronjobs, &old, new)),
            [
                "spec.schedule: Invalid value: \"TZ=Europe/Paris 0 6 * * *\": cannot use both timeZone field and TZ or CRON_TZ in schedule"
            ]
        );
        let mut fresh = old.clone();
        fresh["spec"]["schedule"] = json!("0 6 * * *");
        fresh["spec"]["timeZone"] = json!("Europe/Paris");
        assert!(admit_update(cronjobs, &old, fresh).is_ok());
    }
}
