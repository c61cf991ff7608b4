//! A Deployment's status from its ReplicaSets, with the Available and Progressing conditions kube's
//! `progress.go` and `sync.go` write (what `kubectl rollout status` reads).

use serde_json::{Value, json};

/// What the status is computed from, besides the ReplicaSets.
pub struct Inputs<'a> {
    pub replicas: i64,
    pub max_unavailable: i64,
    pub paused: bool,
    /// The name of the ReplicaSet of the current template, when it exists.
    pub new_rs: Option<&'a str>,
    /// Whether this pass created that ReplicaSet.
    pub created: bool,
    /// `spec.progressDeadlineSeconds`; `None` when it is the "never" value.
    pub deadline: Option<i64>,
    pub now: jiff::Timestamp,
}

fn int(v: &Value, ptr: &str) -> i64 {
    v.pointer(ptr).and_then(Value::as_i64).unwrap_or(0)
}

fn name_of(v: &Value) -> &str {
    v.pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

fn stamp(t: jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// The status to store for Deployment `d` owning `owned`.
pub fn compute(d: &Value, owned: &[Value], inp: &Inputs<'_>) -> Value {
    let sum = |ptr: &str| owned.iter().map(|rs| int(rs, ptr)).sum::<i64>();
    let new = inp
        .new_rs
        .and_then(|n| owned.iter().find(|rs| name_of(rs) == n));
    let updated = new.map_or(0, |rs| int(rs, "/status/replicas"));
    let total = sum("/status/replicas");
    let ready = sum("/status/readyReplicas");
    let available = sum("/status/availableReplicas");
    let wanted_total = sum("/spec/replicas");
    let generation = d
        .pointer("/metadata/generation")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    let old_conditions = d
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let now = stamp(inp.now);
    // kube's SetDeploymentCondition: the transition time survives when status and reason do not change.
    let condition = |ty: &str, status: &str, reason: &str, message: String| {
        let prev = old_conditions.iter().find(|c| c["type"] == ty);
        let same = prev.is_some_and(|p| p["status"] == status && p["reason"] == reason);
        let transition = prev
            .filter(|_| same)
            .and_then(|p| p.get("lastTransitionTime").cloned())
            .unwrap_or(json!(now));
        json!({"type": ty, "status": status, "reason": reason, "message": message,
               "lastUpdateTime": now, "lastTransitionTime": transition})
    };
    let keep_or = |ty: &str, status: &str, reason: &str, message: String| {
        let prev = old_conditions.iter().find(|c| c["type"] == ty);
        match prev {
            Some(p)
                if p["status"] == status && p["reason"] == reason && p["message"] == message =>
            {
                p.clone()
            }
            _ => condition(ty, status, reason, message),
        }
    };
    let available_cond = if available >= inp.replicas - inp.max_unavailable {
        keep_or(
            "Available",
            "True",
            "MinimumReplicasAvailable",
            "Deployment has minimum availability.".into(),
        )
    } else {
        keep_or(
            "Available",
            "False",
            "MinimumReplicasUnavailable",
            "Deployment does not have minimum availability.".into(),
        )
    };
    let prev_progressing = old_conditions
        .iter()
        .find(|c| c["type"] == "Progressing")
        .cloned();
    let prev_reason = prev_progressing
        .as_ref()
        .and_then(|c| c["reason"].as_str())
        .unwrap_or_default()
        .to_string();
    let subject = match inp.new_rs.filter(|_| new.is_some() || inp.created) {
        Some(n) => format!("ReplicaSet \"{n}\""),
        None => format!("Deployment \"{}\"", name_of(d)),
    };
    let old_status = d.get("status").cloned().unwrap_or(json!({}));
    let progressed = updated > int(&old_status, "/updatedReplicas")
        || total - updated < int(&old_status, "/replicas") - int(&old_status, "/updatedReplicas")
        || ready > int(&old_status, "/readyReplicas")
        || available > int(&old_status, "/availableReplicas");
    let complete = updated == inp.replicas && total == inp.replicas && available == inp.replicas;
    let progressing = if inp.paused {
        if prev_reason == "DeploymentPaused" {
            prev_progressing
        } else {
            Some(condition(
                "Progressing",
                "Unknown",
                "DeploymentPaused",
                "Deployment is paused".into(),
            ))
        }
    } else if prev_reason == "DeploymentPaused" {
        Some(condition(
            "Progressing",
            "Unknown",
            "DeploymentResumed",
            "Deployment is resumed".into(),
        ))
    } else if inp.created {
        Some(condition(
            "Progressing",
            "True",
            "NewReplicaSetCreated",
            format!(
                "Created new replica set \"{}\"",
                inp.new_rs.unwrap_or_default()
            ),
        ))
    } else if inp.deadline.is_none() {
        prev_progressing
    } else if complete {
        Some(keep_or(
            "Progressing",
            "True",
            "NewReplicaSetAvailable",
            format!("{subject} has successfully progressed."),
        ))
    } else if progressed || prev_progressing.is_none() {
        Some(condition(
            "Progressing",
            "True",
            "ReplicaSetUpdated",
            format!("{subject} is progressing."),
        ))
    } else if timed_out(prev_progressing.as_ref(), inp.deadline, inp.now) {
        Some(keep_or(
            "Progressing",
            "False",
            "ProgressDeadlineExceeded",
            format!("{subject} has timed out progressing."),
        ))
    } else {
        prev_progressing
    };
    let mut conditions = vec![available_cond];
    conditions.extend(progressing);
    json!({
        "observedGeneration": generation,
        "replicas": total,
        "updatedReplicas": updated,
        "readyReplicas": ready,
        "availableReplicas": available,
        "unavailableReplicas": (wanted_total - available).max(0),
        "conditions": conditions,
    })
}

/// kube's DeploymentTimedOut: no progress since the Progressing condition's lastUpdateTime for longer than
/// the deadline (a completed rollout never times out).
fn timed_out(cond: Option<&Value>, deadline: Option<i64>, now: jiff::Timestamp) -> bool {
    let (Some(cond), Some(deadline)) = (cond, deadline) else {
        return false;
    };
    match cond["reason"].as_str() {
        Some("NewReplicaSetAvailable") => false,
        Some("ProgressDeadlineExceeded") => true,
        _ => cond["lastUpdateTime"]
            .as_str()
            .and_then(|t| t.parse::<jiff::Timestamp>().ok())
            .is_some_and(|from| now.as_second() - from.as_second() > deadline),
    }
}

/// kube's `requeueStuckDeployment`: how long until a rollout in progress passes its progress deadline, so
/// the Deployment is looked at again then; `None` when no deadline is pending.
pub fn until_deadline(
    status: &Value,
    deadline: Option<i64>,
    now: jiff::Timestamp,
) -> Option<std::time::Duration> {
    let deadline = deadline?;
    let cond = status
        .get("conditions")?
        .as_array()?
        .iter()
        .find(|c| c["type"] == "Progressing")?;
    if matches!(
        cond["reason"].as_str(),
        Some("NewReplicaSetAvailable" | "ProgressDeadlineExceeded" | "DeploymentPaused")
    ) {
        return None;
    }
    let from = cond["lastUpdateTime"]
        .as_str()?
        .parse::<jiff::Timestamp>()
        .ok()?;
    // `timed_out` needs more than `deadline` whole seconds to have passed.
    let left = (from.as_second() + deadline + 1 - now.as_second()).max(0);
    Some(
        std::time::Duration::from_secs(left.unsigned_abs()) + std::time::Duration::from_millis(100),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rs(name: &str, spec: i64, replicas: i64, available: i64) -> Value {
        json!({"metadata": {"name": name}, "spec": {"replicas": spec},
               "status": {"replicas": replicas, "readyReplicas": available, "availableReplicas": available}})
    }

    fn inputs(now: jiff::Timestamp) -> Inputs<'static> {
        Inputs {
            replicas: 2,
            max_unavailable: 0,
            paused: false,
            new_rs: Some("d-new"),
            created: false,
            deadline: Some(10),
            now,
        }
    }

    fn progressing(status: &Value) -> &Value {
        status["conditions"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["type"] == "Progressing"))
            .expect("Progressing condition")
    }

    #[test]
    fn rollout_progresses_times_out_and_completes() {
        let t0: jiff::Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let mut d = json!({"metadata": {"name": "d", "generation": 3}, "spec": {}});
        let owned = [rs("d-old", 2, 2, 2), rs("d-new", 1, 1, 0)];
        let s = compute(&d, &owned, &inputs(t0));
        assert_eq!(s["observedGeneration"], 3);
        assert_eq!(s["replicas"], 3);
        assert_eq!(s["updatedReplicas"], 1);
        assert_eq!(s["availableReplicas"], 2);
        assert_eq!(s["unavailableReplicas"], 1);
        assert_eq!(progressing(&s)["reason"], "ReplicaSetUpdated");
        d["status"] = s;
        // No progress within the deadline: unchanged; after it: exceeded.
        let later = t0 + jiff::SignedDuration::from_secs(5);
        let s = compute(&d, &owned, &inputs(later));
        assert_eq!(progressing(&s), progressing(&d["status"]));
        let late = t0 + jiff::SignedDuration::from_secs(11);
        let s = compute(&d, &owned, &inputs(late));
        assert_eq!(progressing(&s)["status"], "False");
        assert_eq!(progressing(&s)["reason"], "ProgressDeadlineExceeded");
        d["status"] = s;
        // Completion wins over the deadline.
        let done = [rs("d-old", 0, 0, 0), rs("d-new", 2, 2, 2)];
        let s = compute(&d, &done, &inputs(late));
        assert_eq!(progressing(&s)["reason"], "NewReplicaSetAvailable");
        assert_eq!(
            progressing(&s)["message"],
            "ReplicaSet \"d-new\" has successfully progressed."
        );
        assert_eq!(s["conditions"][0]["status"], "True");
    }

    #[test]
    fn a_rollout_in_progress_is_looked_at_again_at_its_deadline() {
        let t0: jiff::Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let d = json!({"metadata": {"name": "d"}, "spec": {}});
        let owned = [rs("d-old", 2, 2, 2), rs("d-new", 1, 1, 0)];
        let s = compute(&d, &owned, &inputs(t0));
        let later = t0 + jiff::SignedDuration::from_secs(4);
        let left = until_deadline(&s, Some(10), later).expect("a deadline is pending");
        assert_eq!(left.as_secs(), 7, "{left:?}");
        assert_eq!(until_deadline(&s, None, later), None);
        let done = [rs("d-new", 2, 2, 2)];
        let s = compute(&d, &done, &inputs(t0));
        assert_eq!(until_deadline(&s, Some(10), later), None);
    }

    #[test]
    fn paused_and_created_reasons() {
        let now = jiff::Timestamp::now();
        let d = json!({"metadata": {"name": "d"}});
        let mut inp = inputs(now);
        inp.paused = true;
        let s = compute(&d, &[], &inp);
        assert_eq!(progressing(&s)["reason"], "DeploymentPaused");
        assert_eq!(progressing(&s)["status"], "Unknown");
        let mut inp = inputs(now);
        inp.created = true;
        let s = compute(&d, &[], &inp);
        assert_eq!(progressing(&s)["reason"], "NewReplicaSetCreated");
    }
}
