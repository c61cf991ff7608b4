//! `printPod`: the Ready, Status and Restarts of a pod, derived from its container statuses.

use jiff::Timestamp;
use serde_json::{Value, json};

use super::cells::{human_duration, int, items, non_empty, s, since, timestamp};

// --- pods ---

pub(super) fn pod_row(pod: &Value, now: Timestamp) -> (Vec<Value>, Option<Value>) {
    let phase = s(pod, "/status/phase");
    let conditions = items(pod, "/status/conditions");
    let condition = |ty: &str| {
        conditions
            .iter()
            .find(|c| c.get("type").and_then(Value::as_str) == Some(ty))
    };
    let mut reason = non_empty(s(pod, "/status/reason"), phase).to_string();
    if conditions.iter().any(|c| {
        c.get("type").and_then(Value::as_str) == Some("PodScheduled")
            && c.get("reason").and_then(Value::as_str) == Some("SchedulingGated")
    }) {
        reason = "SchedulingGated".into();
    }
    let row_conditions = match phase {
        "Succeeded" => Some(
            json!([{"type": "Completed", "status": "True", "reason": "Succeeded", "message": "The pod has completed successfully."}]),
        ),
        "Failed" => Some(
            json!([{"type": "Completed", "status": "True", "reason": "Failed", "message": "The pod failed."}]),
        ),
        _ => None,
    };

    let init_specs = items(pod, "/spec/initContainers");
    let restartable = |name: &str| {
        init_specs.iter().any(|c| {
            c.get("name").and_then(Value::as_str) == Some(name)
                && c.get("restartPolicy").and_then(Value::as_str) == Some("Always")
        })
    };
    let total = items(pod, "/spec/containers").len()
        + init_specs
            .iter()
            .filter(|c| c.get("restartPolicy").and_then(Value::as_str) == Some("Always"))
            .count();
    let mut ready = 0;
    let mut restarts = 0;
    let mut sidecar_restarts = 0;
    let mut last_restart: Option<Timestamp> = None;
    let mut last_sidecar_restart: Option<Timestamp> = None;
    let bump = |latest: &mut Option<Timestamp>, status: &Value| {
        if let Some(t) = timestamp(status.pointer("/lastState/terminated/finishedAt"))
            && latest.is_none_or(|l| l < t)
        {
            *latest = Some(t);
        }
    };

    let mut initializing = false;
    let init_statuses = items(pod, "/status/initContainerStatuses");
    for (i, c) in init_statuses.iter().enumerate() {
        let name = c.get("name").and_then(Value::as_str).unwrap_or_default();
        let count = int(c, "/restartCount");
        restarts += count;
        bump(&mut last_restart, c);
        if restartable(name) {
            sidecar_restarts += count;
            bump(&mut last_sidecar_restart, c);
        }
        let terminated = c.pointer("/state/terminated");
        let waiting_reason = s(c, "/state/waiting/reason");
        if terminated.is_some() && int(c, "/state/terminated/exitCode") == 0 {
            continue;
        } else if restartable(name) && c.get("started").and_then(Value::as_bool) == Some(true) {
            if c.get("ready").and_then(Value::as_bool) == Some(true) {
                ready += 1;
            }
            continue;
        } else if let Some(t) = terminated {
            reason = match t.get("reason").and_then(Value::as_str).unwrap_or_default() {
                "" => match int(t, "/signal") {
                    0 => format!("Init:ExitCode:{}", int(t, "/exitCode")),
                    sig => format!("Init:Signal:{sig}"),
                },
                r => format!("Init:{r}"),
            };
        } else if !waiting_reason.is_empty() && waiting_reason != "PodInitializing" {
            reason = format!("Init:{waiting_reason}");
        } else {
            reason = format!("Init:{i}/{}", init_specs.len());
        }
        initializing = true;
        break;
    }

    let initialized = condition("Initialized")
        .and_then(|c| c.get("status"))
        .and_then(Value::as_str)
        == Some("True");
    if !initializing || initialized {
        restarts = sidecar_restarts;
        last_restart = last_sidecar_restart;
        let mut has_running = false;
        for c in items(pod, "/status/containerStatuses").iter().rev() {
            restarts += int(c, "/restartCount");
            bump(&mut last_restart, c);
            let waiting = s(c, "/state/waiting/reason");
            let terminated = c.pointer("/state/terminated");
            if !waiting.is_empty() {
                reason = waiting.to_string();
            } else if let Some(t) = terminated {
                reason = match t.get("reason").and_then(Value::as_str).unwrap_or_default() {
                    "" => match int(t, "/signal") {
                        0 => format!("ExitCode:{}", int(t, "/exitCode")),
                        sig => format!("Signal:{sig}"),
                    },
                    r => r.to_string(),
                };
            } else if c.get("ready").and_then(Value::as_bool) == Some(true)
                && c.pointer("/state/running").is_some()
            {
                has_running = true;
                ready += 1;
            }
        }
        if reason == "Completed" && has_running {
            let pod_ready = condition("Ready")
                .and_then(|c| c.get("status"))
                .and_then(Value::as_str)
                == Some("True");
            reason = if pod_ready { "Running" } else { "NotReady" }.into();
        }
    }

    let deleting = pod
        .pointer("/metadata/deletionTimestamp")
        .is_some_and(|v| !v.is_null());
    if deleting && s(pod, "/status/reason") == "NodeLost" {
        reason = "Unknown".into();
    } else if deleting && !matches!(phase, "Succeeded" | "Failed") {
        reason = "Terminating".into();
    }

    let restarts_text = match last_restart {
        Some(t) if restarts != 0 => {
            format!("{restarts} ({} ago)", human_duration(now.duration_since(t)))
        }
        _ => restarts.to_string(),
    };

    let ip = match s(pod, "/status/podIP") {
        "" => items(pod, "/status/podIPs")
            .first()
            .and_then(|p| p.get("ip"))
            .and_then(Value::as_str)
            .unwrap_or_default(),
        ip => ip,
    };
    let gates = items(pod, "/spec/readinessGates");
    let readiness_gates = if gates.is_empty() {
        "<none>".to_string()
    } else {
        let passed = gates
            .iter()
            .filter(|g| {
                let ty = g
                    .get("conditionType")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                condition(ty)
                    .and_then(|c| c.get("status"))
                    .and_then(Value::as_str)
                    == Some("True")
            })
            .count();
        format!("{passed}/{}", gates.len())
    };
    let cells = vec![
        json!(s(pod, "/metadata/name")),
        json!(format!("{ready}/{total}")),
        json!(reason),
        json!(restarts_text),
        json!(since(pod.pointer("/metadata/creationTimestamp"), now)),
        json!(non_empty(ip, "<none>")),
        json!(non_empty(s(pod, "/spec/nodeName"), "<none>")),
        json!(non_empty(s(pod, "/status/nominatedNodeName"), "<none>")),
        json!(readiness_gates),
    ];
    (cells, row_conditions)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        "2026-01-01T12:00:00Z".parse().expect("timestamp")
    }

    fn pod(spec: Value, status: Value) -> Value {
        json!({
            "metadata": {"name": "p", "creationTimestamp": "2026-01-01T11:55:00Z"},
            "spec": spec,
            "status": status,
        })
    }

    fn one(name: &str) -> Value {
        json!({"containers": [{"name": name, "image": "img"}]})
    }

    /// (Ready, Status, Restarts) of a pod.
    fn summary(p: &Value) -> (String, String, String) {
        let (cells, _) = pod_row(p, now());
        let text = |i: usize| cells[i].as_str().expect("string cell").to_string();
        (text(1), text(2), text(3))
    }

    fn running(ready: bool, restarts: i64) -> Value {
        json!({"name": "c", "ready": ready, "restartCount": restarts, "state": {"running": {"startedAt": "2026-01-01T11:56:00Z"}}})
    }

    #[test]
    fn running_pod_is_ready() {
        let p = pod(
            one("c"),
            json!({"phase": "Running", "containerStatuses": [running(true, 0)],
                   "conditions": [{"type": "Ready", "status": "True"}]}),
        );
        assert_eq!(summary(&p), ("1/1".into(), "Running".into(), "0".into()));
    }

    #[test]
    fn pending_pod_without_statuses_shows_its_phase() {
        let p = pod(one("c"), json!({"phase": "Pending"}));
        assert_eq!(summary(&p), ("0/1".into(), "Pending".into(), "0".into()));
        let none = pod(one("c"), json!({}));
        assert_eq!(summary(&none).1, "");
    }

    #[test]
    fn waiting_reason_wins_over_phase() {
        let p = pod(
            one("c"),
            json!({"phase": "Pending", "containerStatuses": [
                {"name": "c", "ready": false, "restartCount": 0, "state": {"waiting": {"reason": "ImagePullBackOff"}}}]}),
        );
        assert_eq!(summary(&p).1, "ImagePullBackOff");
    }

    #[test]
    fn crash_loop_shows_restarts_with_the_last_restart_age() {
        let p = pod(
            one("c"),
            json!({"phase": "Running", "containerStatuses": [
                {"name": "c", "ready": false, "restartCount": 2,
                 "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                 "lastState": {"terminated": {"exitCode": 1, "reason": "Error", "finishedAt": "2026-01-01T11:59:55Z"}}}]}),
        );
        assert_eq!(
            summary(&p),
            ("0/1".into(), "CrashLoopBackOff".into(), "2 (5s ago)".into())
        );
    }

    #[test]
    fn restarts_without_a_termination_time_have_no_age() {
        let p = pod(
            one("c"),
            json!({"phase": "Running", "containerStatuses": [running(true, 3)]}),
        );
        assert_eq!(summary(&p).2, "3");
    }

    #[test]
    fn terminated_containers_give_their_reason_or_exit_code_or_signal() {
        let term = |t: Value| {
            pod(
                one("c"),
                json!({"phase": "Running", "containerStatuses": [
                    {"name": "c", "ready": false, "restartCount": 0, "state": {"terminated": t}}]}),
            )
        };
        assert_eq!(
            summary(&term(json!({"exitCode": 0, "reason": "Completed"}))).1,
            "Completed"
        );
        assert_eq!(summary(&term(json!({"exitCode": 3}))).1, "ExitCode:3");
        assert_eq!(
            summary(&term(json!({"exitCode": 137, "signal": 9}))).1,
            "Signal:9"
        );
        assert_eq!(
            summary(&term(json!({"exitCode": 1, "reason": "Error"}))).1,
            "Error"
        );
    }

    #[test]
    fn completed_with_a_container_still_running_is_running_or_not_ready() {
        let status = |ready_condition: &str| {
            json!({"phase": "Running",
                   "conditions": [{"type": "Ready", "status": ready_condition}],
                   "containerStatuses": [
                       {"name": "a", "ready": false, "restartCount": 0, "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
                       running(true, 0)]})
        };
        let spec = json!({"containers": [{"name": "a"}, {"name": "c"}]});
        assert_eq!(
            summary(&pod(spec.clone(), status("True"))),
            ("1/2".into(), "Running".into(), "0".into())
        );
        assert_eq!(summary(&pod(spec, status("False"))).1, "NotReady");
    }

    #[test]
    fn the_first_container_with_a_reason_decides() {
        let p = pod(
            json!({"containers": [{"name": "a"}, {"name": "b"}]}),
            json!({"phase": "Pending", "containerStatuses": [
                {"name": "a", "state": {"waiting": {"reason": "ErrImagePull"}}},
                {"name": "b", "state": {"waiting": {"reason": "ContainerCreating"}}}]}),
        );
        assert_eq!(summary(&p).1, "ErrImagePull");
    }

    #[test]
    fn succeeded_and_failed_pods_carry_a_completed_row_condition() {
        let done = pod(one("c"), json!({"phase": "Succeeded"}));
        let (_, conditions) = pod_row(&done, now());
        assert_eq!(
            conditions,
            Some(
                json!([{"type": "Completed", "status": "True", "reason": "Succeeded",
                         "message": "The pod has completed successfully."}])
            )
        );
        let failed = pod(one("c"), json!({"phase": "Failed"}));
        assert_eq!(
            pod_row(&failed, now()).1.expect("conditions")[0]["reason"],
            "Failed"
        );
        assert_eq!(
            pod_row(&pod(one("c"), json!({"phase": "Running"})), now()).1,
            None
        );
    }

    #[test]
    fn deletion_shows_terminating_unless_finished_or_node_lost() {
        let mut p = pod(
            one("c"),
            json!({"phase": "Running", "containerStatuses": [running(true, 0)]}),
        );
        p["metadata"]["deletionTimestamp"] = json!("2026-01-01T11:59:00Z");
        assert_eq!(summary(&p).1, "Terminating");
        p["status"]["phase"] = json!("Succeeded");
        assert_eq!(summary(&p).1, "Succeeded", "a finished pod keeps its phase");
        p["status"]["phase"] = json!("Running");
        p["status"]["reason"] = json!("NodeLost");
        assert_eq!(summary(&p).1, "Unknown");
    }

    #[test]
    fn status_reason_and_scheduling_gates_replace_the_phase() {
        let evicted = pod(one("c"), json!({"phase": "Failed", "reason": "Evicted"}));
        assert_eq!(summary(&evicted).1, "Evicted");
        let gated = pod(
            one("c"),
            json!({"phase": "Pending", "conditions": [
                {"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}]}),
        );
        assert_eq!(summary(&gated).1, "SchedulingGated");
    }

    #[test]
    fn init_containers_report_progress_and_failures() {
        let spec = json!({"initContainers": [{"name": "i1"}, {"name": "i2"}], "containers": [{"name": "c"}]});
        let with = |statuses: Value| {
            pod(
                spec.clone(),
                json!({"phase": "Pending", "initContainerStatuses": statuses,
                       "containerStatuses": [{"name": "c", "state": {"waiting": {"reason": "PodInitializing"}}}]}),
            )
        };
        let done = json!({"name": "i1", "restartCount": 0, "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}});
        let running = json!({"name": "i2", "restartCount": 0, "state": {"running": {}}});
        assert_eq!(summary(&with(json!([done.clone(), running]))).1, "Init:1/2");
        let waiting = json!({"name": "i1", "restartCount": 0, "state": {"waiting": {"reason": "PodInitializing"}}});
        assert_eq!(summary(&with(json!([waiting]))).1, "Init:0/2");
        let backoff = json!({"name": "i2", "restartCount": 4, "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                             "lastState": {"terminated": {"exitCode": 1, "finishedAt": "2026-01-01T11:58:00Z"}}});
        assert_eq!(
            summary(&with(json!([done.clone(), backoff]))),
            (
                "0/1".into(),
                "Init:CrashLoopBackOff".into(),
                "4 (2m ago)".into()
            )
        );
        let failed =
            json!({"name": "i2", "restartCount": 0, "state": {"terminated": {"exitCode": 2}}});
        assert_eq!(
            summary(&with(json!([done.clone(), failed]))).1,
            "Init:ExitCode:2"
        );
        let killed = json!({"name": "i2", "restartCount": 0, "state": {"terminated": {"exitCode": 137, "signal": 9}}});
        assert_eq!(
            summary(&with(json!([done.clone(), killed]))).1,
            "Init:Signal:9"
        );
        let oom = json!({"name": "i2", "restartCount": 0, "state": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}});
        assert_eq!(summary(&with(json!([done, oom]))).1, "Init:OOMKilled");
    }

    #[test]
    fn after_init_the_main_containers_decide_and_init_restarts_are_dropped() {
        let p = pod(
            json!({"initContainers": [{"name": "i"}], "containers": [{"name": "c"}]}),
            json!({"phase": "Running",
                   "initContainerStatuses": [{"name": "i", "restartCount": 5, "state": {"terminated": {"exitCode": 0}}}],
                   "containerStatuses": [running(true, 1)]}),
        );
        assert_eq!(summary(&p), ("1/1".into(), "Running".into(), "1".into()));
    }

    #[test]
    fn sidecars_count_as_containers_and_their_restarts_are_kept() {
        let p = pod(
            json!({"initContainers": [{"name": "side", "restartPolicy": "Always"}], "containers": [{"name": "c"}]}),
            json!({"phase": "Running",
                   "conditions": [{"type": "Initialized", "status": "True"}],
                   "initContainerStatuses": [{"name": "side", "restartCount": 2, "started": true, "ready": true,
                                              "state": {"running": {}},
                                              "lastState": {"terminated": {"exitCode": 1, "finishedAt": "2026-01-01T11:00:00Z"}}}],
                   "containerStatuses": [running(true, 0)]}),
        );
        assert_eq!(
            summary(&p),
            ("2/2".into(), "Running".into(), "2 (60m ago)".into())
        );
    }

    #[test]
    fn wide_cells_show_ip_node_nominated_node_and_readiness_gates() {
        let mut p = pod(
            json!({"containers": [{"name": "c"}], "nodeName": "n1",
                   "readinessGates": [{"conditionType": "g1"}, {"conditionType": "g2"}]}),
            json!({"phase": "Running", "podIP": "10.0.0.5",
                   "conditions": [{"type": "g1", "status": "True"}, {"type": "g2", "status": "False"}]}),
        );
        let (cells, _) = pod_row(&p, now());
        assert_eq!(cells[0], "p");
        assert_eq!(cells[4], "5m");
        assert_eq!(
            cells[5..],
            [
                json!("10.0.0.5"),
                json!("n1"),
                json!("<none>"),
                json!("1/2")
            ]
        );
        p["status"] = json!({"podIPs": [{"ip": "10.0.0.6"}]});
        p["spec"] = one("c");
        let (cells, _) = pod_row(&p, now());
        assert_eq!(
            cells[5..],
            [
                json!("10.0.0.6"),
                json!("<none>"),
                json!("<none>"),
                json!("<none>")
            ]
        );
    }
}
