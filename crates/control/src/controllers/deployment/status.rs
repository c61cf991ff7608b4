//! A Deployment's status from its ReplicaSets, with the Available and Progressing conditions kube's
//! `progress.go` and `sync.go` write (what `kubectl rollout status` reads).

use std::sync::Arc;

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet, ReplicaSetStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

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

fn status_count(rs: &ReplicaSet, count: fn(&ReplicaSetStatus) -> Option<i32>) -> i64 {
    rs.status.as_ref().and_then(count).map_or(0, i64::from)
}

/// A count as the status stores it.
fn count(n: i64) -> Option<i32> {
    Some(i32::try_from(n).unwrap_or(if n < 0 { 0 } else { i32::MAX }))
}

/// The status to store for Deployment `d` owning `owned`.
pub fn compute(d: &Deployment, owned: &[Arc<ReplicaSet>], inp: &Inputs<'_>) -> DeploymentStatus {
    let sum = |count: fn(&ReplicaSetStatus) -> Option<i32>| {
        owned.iter().map(|rs| status_count(rs, count)).sum::<i64>()
    };
    let new = inp.new_rs.and_then(|n| {
        owned
            .iter()
            .find(|rs| rs.metadata.name.as_deref() == Some(n))
    });
    let updated = new.map_or(0, |rs| status_count(rs, |s| Some(s.replicas)));
    let total = sum(|s| Some(s.replicas));
    let ready = sum(|s| s.ready_replicas);
    let available = sum(|s| s.available_replicas);
    let wanted_total: i64 = owned
        .iter()
        .map(|rs| rs.spec.replicas.map_or(0, i64::from))
        .sum();
    let generation = d.metadata.generation.unwrap_or(1);
    let old_status = d.status.clone().unwrap_or_default();
    let old_conditions = old_status.conditions.as_deref().unwrap_or_default();
    // Stored times are whole seconds.
    let now = Time(jiff::Timestamp::from_second(inp.now.as_second()).unwrap_or(inp.now));
    let prev_of = |ty: &str| {
        old_conditions
            .iter()
            .find(|c| c.type_.as_deref() == Some(ty))
    };
    // kube's SetDeploymentCondition: the transition time survives when status and reason do not change.
    let condition = |ty: &str, status: &str, reason: &str, message: String| {
        let transition = prev_of(ty)
            .filter(|p| p.status.as_deref() == Some(status) && p.reason.as_deref() == Some(reason))
            .and_then(|p| p.last_transition_time.clone())
            .unwrap_or_else(|| now.clone());
        DeploymentCondition {
            type_: Some(ty.into()),
            status: Some(status.into()),
            reason: Some(reason.into()),
            message: Some(message),
            last_update_time: Some(now.clone()),
            last_transition_time: Some(transition),
        }
    };
    let keep_or = |ty: &str, status: &str, reason: &str, message: String| match prev_of(ty) {
        Some(p)
            if p.status.as_deref() == Some(status)
                && p.reason.as_deref() == Some(reason)
                && p.message.as_deref() == Some(message.as_str()) =>
        {
            p.clone()
        }
        _ => condition(ty, status, reason, message),
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
    let prev_progressing = prev_of("Progressing").cloned();
    let prev_reason = prev_progressing
        .as_ref()
        .and_then(|c| c.reason.clone())
        .unwrap_or_default();
    let subject = match inp.new_rs.filter(|_| new.is_some() || inp.created) {
        Some(n) => format!("ReplicaSet \"{n}\""),
        None => format!(
            "Deployment \"{}\"",
            d.metadata.name.as_deref().unwrap_or_default()
        ),
    };
    let old = |count: Option<i32>| count.map_or(0, i64::from);
    let progressed = updated > old(old_status.updated_replicas)
        || total - updated < old(old_status.replicas) - old(old_status.updated_replicas)
        || ready > old(old_status.ready_replicas)
        || available > old(old_status.available_replicas);
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
    DeploymentStatus {
        observed_generation: Some(generation),
        replicas: count(total),
        updated_replicas: count(updated),
        ready_replicas: count(ready),
        available_replicas: count(available),
        unavailable_replicas: count((wanted_total - available).max(0)),
        conditions: Some(conditions),
        ..DeploymentStatus::default()
    }
}

/// kube's DeploymentTimedOut: no progress since the Progressing condition's lastUpdateTime for longer than
/// the deadline (a completed rollout never times out).
fn timed_out(
    cond: Option<&DeploymentCondition>,
    deadline: Option<i64>,
    now: jiff::Timestamp,
) -> bool {
    let (Some(cond), Some(deadline)) = (cond, deadline) else {
        return false;
    };
    match cond.reason.as_deref() {
        Some("NewReplicaSetAvailable") => false,
        Some("ProgressDeadlineExceeded") => true,
        _ => cond
            .last_update_time
            .as_ref()
            .is_some_and(|from| now.as_second() - from.0.as_second() > deadline),
    }
}

/// kube's `requeueStuckDeployment`: how long until a rollout in progress passes its progress deadline, so
/// the Deployment is looked at again then; `None` when no deadline is pending.
pub fn until_deadline(
    status: &DeploymentStatus,
    deadline: Option<i64>,
    now: jiff::Timestamp,
) -> Option<std::time::Duration> {
    let deadline = deadline?;
    let cond = status
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_.as_deref() == Some("Progressing"))?;
    if matches!(
        cond.reason.as_deref(),
        Some("NewReplicaSetAvailable" | "ProgressDeadlineExceeded" | "DeploymentPaused")
    ) {
        return None;
    }
    let from = cond.last_update_time.as_ref()?.0;
    // `timed_out` needs more than `deadline` whole seconds to have passed.
    let left = (from.as_second() + deadline + 1 - now.as_second()).max(0);
    Some(
        std::time::Duration::from_secs(left.unsigned_abs()) + std::time::Duration::from_millis(100),
    )
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn rs(name: &str, spec: i64, replicas: i64, available: i64) -> Arc<ReplicaSet> {
        Arc::new(
            serde_json::from_value(json!({"metadata": {"name": name}, "spec": {"replicas": spec},
                "status": {"replicas": replicas, "readyReplicas": available, "availableReplicas": available}}))
            .unwrap(),
        )
    }

    fn deployment(metadata: serde_json::Value) -> Deployment {
        serde_json::from_value(json!({"metadata": metadata, "spec": {}})).unwrap()
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

    fn progressing(status: &DeploymentStatus) -> &DeploymentCondition {
        status
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_.as_deref() == Some("Progressing"))
            .expect("Progressing condition")
    }

    fn reason(c: &DeploymentCondition) -> &str {
        c.reason.as_deref().unwrap_or_default()
    }

    #[test]
    fn rollout_progresses_times_out_and_completes() {
        let t0: jiff::Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let mut d = deployment(json!({"name": "d", "generation": 3}));
        let owned = [rs("d-old", 2, 2, 2), rs("d-new", 1, 1, 0)];
        let s = compute(&d, &owned, &inputs(t0));
        assert_eq!(s.observed_generation, Some(3));
        assert_eq!(s.replicas, Some(3));
        assert_eq!(s.updated_replicas, Some(1));
        assert_eq!(s.available_replicas, Some(2));
        assert_eq!(s.unavailable_replicas, Some(1));
        assert_eq!(reason(progressing(&s)), "ReplicaSetUpdated");
        d.status = Some(s);
        // No progress within the deadline: unchanged; after it: exceeded.
        let later = t0 + jiff::SignedDuration::from_secs(5);
        let s = compute(&d, &owned, &inputs(later));
        assert_eq!(progressing(&s), progressing(d.status.as_ref().unwrap()));
        let late = t0 + jiff::SignedDuration::from_secs(11);
        let s = compute(&d, &owned, &inputs(late));
        assert_eq!(progressing(&s).status.as_deref(), Some("False"));
        assert_eq!(reason(progressing(&s)), "ProgressDeadlineExceeded");
        d.status = Some(s);
        // Completion wins over the deadline.
        let done = [rs("d-old", 0, 0, 0), rs("d-new", 2, 2, 2)];
        let s = compute(&d, &done, &inputs(late));
        assert_eq!(reason(progressing(&s)), "NewReplicaSetAvailable");
        assert_eq!(
            progressing(&s).message.as_deref(),
            Some("ReplicaSet \"d-new\" has successfully progressed.")
        );
        assert_eq!(
            s.conditions.as_ref().unwrap()[0].status.as_deref(),
            Some("True")
        );
    }

    #[test]
    fn the_status_is_written_as_before() {
        // The JSON the controller stores: every count, the conditions with whole-second times.
        let t0: jiff::Timestamp = "2026-01-01T00:00:00.75Z".parse().unwrap();
        let d = deployment(json!({"name": "d", "generation": 2}));
        let owned = [rs("d-new", 2, 2, 1)];
        let s = serde_json::to_value(compute(&d, &owned, &inputs(t0))).unwrap();
        let now = "2026-01-01T00:00:00Z";
        assert_eq!(
            s,
            json!({
                "observedGeneration": 2, "replicas": 2, "updatedReplicas": 2, "readyReplicas": 1,
                "availableReplicas": 1, "unavailableReplicas": 1,
                "conditions": [
                    {"type": "Available", "status": "False", "reason": "MinimumReplicasUnavailable",
                     "message": "Deployment does not have minimum availability.",
                     "lastUpdateTime": now, "lastTransitionTime": now},
                    {"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated",
                     "message": "ReplicaSet \"d-new\" is progressing.",
                     "lastUpdateTime": now, "lastTransitionTime": now},
                ],
            })
        );
    }

    #[test]
    fn a_rollout_in_progress_is_looked_at_again_at_its_deadline() {
        let t0: jiff::Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let d = deployment(json!({"name": "d"}));
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
        let d = deployment(json!({"name": "d"}));
        let mut inp = inputs(now);
        inp.paused = true;
        let s = compute(&d, &[], &inp);
        assert_eq!(reason(progressing(&s)), "DeploymentPaused");
        assert_eq!(progressing(&s).status.as_deref(), Some("Unknown"));
        let mut inp = inputs(now);
        inp.created = true;
        let s = compute(&d, &[], &inp);
        assert_eq!(reason(progressing(&s)), "NewReplicaSetCreated");
    }
}
