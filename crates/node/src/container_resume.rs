//! Where a container resumes when its pod is picked up again by a new agent process, from the
//! status the previous one reported. Pure.

use jiff::Timestamp;
use k8s_openapi::api::core::v1::ContainerStatus;

use crate::container_spec::RestartPolicy;
use crate::pod_status::{ContainerReport, RunState, Termination};

/// Where a container resumes when its pod is picked up again (after an agent restart), from
/// the status the previous agent reported. A container that had ended for good stays ended;
/// one that had started counts a restart. One that was running when the previous agent went
/// away ended unseen: its last state says so (`Unknown`, exit code 255, finished `now`), as
/// the kubelet reports a container lost with its node.
pub(crate) fn resumed_report(
    previous: Option<&ContainerStatus>,
    policy: RestartPolicy,
    now: Timestamp,
) -> ContainerReport {
    let Some(previous) = previous else {
        return ContainerReport::created(0, None);
    };
    let state = previous.state.as_ref();
    let terminated = state
        .and_then(|s| s.terminated.as_ref())
        .map(termination_from);
    let last = previous
        .last_state
        .as_ref()
        .and_then(|s| s.terminated.as_ref())
        .map(termination_from);
    match terminated {
        Some(ended) if !policy.restarts(ended.exit_code) => ContainerReport {
            state: RunState::Terminated(ended),
            last_termination: last,
            restart_count: previous.restart_count,
            image_id: Some(previous.image_id.clone()).filter(|id| !id.is_empty()),
            finished: true,
            started: false,
            ready: false,
        },
        Some(ended) => ContainerReport::created(previous.restart_count + 1, Some(ended)),
        None => match state.and_then(|s| s.running.as_ref()) {
            Some(running) => {
                let lost = Termination {
                    exit_code: LOST_EXIT_CODE,
                    reason: "Unknown".to_owned(),
                    message: None,
                    started_at: running
                        .started_at
                        .as_ref()
                        .map_or(Timestamp::UNIX_EPOCH, |time| time.0),
                    finished_at: now,
                    container_id: previous.container_id.clone().unwrap_or_default(),
                };
                ContainerReport::created(previous.restart_count + 1, Some(lost))
            }
            None => ContainerReport::created(previous.restart_count, last),
        },
    }
}

/// The exit code the kubelet reports for a container whose end it did not see.
const LOST_EXIT_CODE: i32 = 255;

fn termination_from(t: &k8s_openapi::api::core::v1::ContainerStateTerminated) -> Termination {
    let epoch = Timestamp::UNIX_EPOCH;
    Termination {
        exit_code: t.exit_code,
        reason: t.reason.clone().unwrap_or_default(),
        message: t.message.clone(),
        started_at: t.started_at.as_ref().map_or(epoch, |time| time.0),
        finished_at: t.finished_at.as_ref().map_or(epoch, |time| time.0),
        container_id: t.container_id.clone().unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn now() -> Timestamp {
        Timestamp::from_second(1_800_000_000).expect("time")
    }

    fn status(value: serde_json::Value) -> ContainerStatus {
        serde_json::from_value(value).expect("valid ContainerStatus")
    }

    #[test]
    fn new_container_starts_fresh() {
        let report = resumed_report(None, RestartPolicy::Always, now());
        assert_eq!(report, ContainerReport::created(0, None));
    }

    #[test]
    fn interrupted_run_counts_a_restart() {
        let running = status(json!({
            "name": "app", "image": "i", "imageID": "", "ready": true, "restartCount": 2,
            "state": {"running": {"startedAt": "2025-01-01T00:00:00Z"}},
            "lastState": {"terminated": {"exitCode": 1, "reason": "Error"}}
        }));
        let report = resumed_report(Some(&running), RestartPolicy::Always, now());
        assert_eq!(report.restart_count, 3);
        let lost = report
            .last_termination
            .expect("the lost run is the last state");
        assert_eq!((lost.exit_code, lost.reason.as_str()), (255, "Unknown"));
        assert_eq!(lost.started_at.to_string(), "2025-01-01T00:00:00Z");
        assert_eq!(lost.finished_at, now());
        assert!(!report.finished);
    }

    #[test]
    fn container_done_for_good_stays_done() {
        let completed = status(json!({
            "name": "app", "image": "i", "imageID": "reg/app@sha256:1", "ready": false, "restartCount": 0,
            "state": {"terminated": {"exitCode": 0, "reason": "Completed", "containerID": "wasmtime://u/app/0"}}
        }));
        let report = resumed_report(Some(&completed), RestartPolicy::OnFailure, now());
        assert!(report.finished);
        assert!(matches!(report.state, RunState::Terminated(ref t) if t.exit_code == 0));
        assert_eq!(report.image_id.as_deref(), Some("reg/app@sha256:1"));

        let again = resumed_report(Some(&completed), RestartPolicy::Always, now());
        assert!(!again.finished);
        assert_eq!(again.restart_count, 1);
    }

    #[test]
    fn waiting_container_keeps_its_count() {
        let waiting = status(json!({
            "name": "app", "image": "i", "imageID": "", "ready": false, "restartCount": 4,
            "state": {"waiting": {"reason": "CrashLoopBackOff"}}
        }));
        assert_eq!(
            resumed_report(Some(&waiting), RestartPolicy::Always, now()).restart_count,
            4
        );
    }
}
