//! `pods/eviction` (policy/v1 Eviction), as kube-apiserver's eviction REST: a delete that honours the
//! pod's PodDisruptionBudget. With no disruption allowed it is refused (429 TooManyRequests with a
//! `DisruptionBudget` cause; `kubectl drain` retries it); otherwise the budget's `disruptionsAllowed` is
//! spent and the pod recorded in its `status.disruptedPods` (so the disruption controller keeps it out of
//! `currentHealthy` until its deletion shows) before the pod is deleted.

use herd_api::{Cause, ResourceInfo};
use serde_json::{Value, json};

use crate::controllers::{budgets_of, pdb_resource};
use crate::error::ApiError;
use crate::objects::{DeleteOptions, Objects};

/// What the budget says about one eviction.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    /// Spent one disruption (or needs none): delete the pod.
    Allowed,
    /// Refused; the 429 to answer.
    Refused { cause: String, retry_after: u32 },
}

fn refusal(cause: String, retry_after: u32) -> ApiError {
    ApiError::TooManyRequests {
        message: "Cannot evict pod as it would violate the pod's disruption budget.".into(),
        retry_after_seconds: retry_after,
        causes: vec![Cause {
            reason: "DisruptionBudget",
            field: String::new(),
            message: cause,
        }],
    }
}

fn int(v: &Value, pointer: &str) -> i64 {
    v.pointer(pointer).and_then(Value::as_i64).unwrap_or(0)
}

fn is_ready(pod: &Value) -> bool {
    pod.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
}

/// kube's `checkAndDecrement` on a budget's current state; on `Allowed` the status is updated in place.
fn check_and_decrement(pdb: &mut Value, pod: &str, now: &str) -> Verdict {
    let name = pdb
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    if int(pdb, "/status/observedGeneration") < int(pdb, "/metadata/generation") {
        return Verdict::Refused {
            cause: format!("The disruption budget {name} is still being processed by the server."),
            retry_after: 10,
        };
    }
    let allowed = int(pdb, "/status/disruptionsAllowed");
    if allowed <= 0 {
        return Verdict::Refused {
            cause: format!(
                "The disruption budget {name} needs {} healthy pods and has {} currently",
                int(pdb, "/status/desiredHealthy"),
                int(pdb, "/status/currentHealthy")
            ),
            retry_after: 0,
        };
    }
    let status = &mut pdb["status"];
    status["disruptionsAllowed"] = json!(allowed - 1);
    if allowed == 1
        && let Some(conditions) = status.get_mut("conditions").and_then(Value::as_array_mut)
    {
        for c in conditions
            .iter_mut()
            .filter(|c| c["type"] == "DisruptionAllowed")
        {
            if c["status"] != "False" {
                c["lastTransitionTime"] = json!(now);
            }
            c["status"] = json!("False");
            c["reason"] = json!("InsufficientPods");
        }
    }
    let disrupted = status
        .as_object_mut()
        .map(|s| s.entry("disruptedPods").or_insert_with(|| json!({})));
    if let Some(Value::Object(map)) = disrupted {
        map.insert(pod.to_string(), json!(now));
    }
    Verdict::Allowed
}

/// POST `pods/{name}/eviction`: 201 with a Success Status once the pod is being deleted.
pub(super) async fn evict(
    objects: &Objects,
    pods: &'static ResourceInfo,
    ns: &str,
    name: &str,
    opts: DeleteOptions,
) -> Result<(), ApiError> {
    let pod = objects.get(pods, Some(ns), name).await?;
    let phase = pod.pointer("/status/phase").and_then(Value::as_str);
    // kube's canIgnorePDB: a pod already going, finished or not yet running disrupts nothing.
    let ignores_budgets = pod.pointer("/metadata/deletionTimestamp").is_some()
        || matches!(phase, Some("Succeeded" | "Failed" | "Pending"));
    if !ignores_budgets {
        let pdbs = pdb_resource();
        let (all, _) = objects.list_all(pdbs, Some(ns)).await?;
        let budgets = budgets_of(&pod, &all);
        match budgets.as_slice() {
            [] => {}
            [budget] => {
                let budget_name = budget
                    .pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                // An unready pod is not counted healthy: kube's IfHealthyBudget lets it go without spending a
                // disruption when the budget is met; AlwaysAllow lets it go anyway.
                let unready_may_go = !is_ready(&pod)
                    && match budget
                        .pointer("/spec/unhealthyPodEvictionPolicy")
                        .and_then(Value::as_str)
                    {
                        Some("AlwaysAllow") => true,
                        _ => {
                            let desired = int(budget, "/status/desiredHealthy");
                            desired > 0 && int(budget, "/status/currentHealthy") >= desired
                        }
                    };
                if !unready_may_go {
                    let now = crate::objects::now();
                    let mut verdict = Verdict::Allowed;
                    if opts.dry_run {
                        verdict = check_and_decrement(&mut budget.clone(), name, &now);
                    } else {
                        let found = objects
                            .edit(pdbs, ns, budget_name, |b| {
                                verdict = check_and_decrement(b, name, &now);
                                verdict == Verdict::Allowed
                            })
                            .await?;
                        if found.is_none() && verdict == Verdict::Allowed {
                            // The budget went meanwhile: nothing guards the pod any more.
                            tracing::debug!(
                                budget = budget_name,
                                "budget deleted during an eviction"
                            );
                        }
                    }
                    if let Verdict::Refused { cause, retry_after } = verdict {
                        return Err(refusal(cause, retry_after));
                    }
                }
            }
            _ => {
                return Err(ApiError::Internal(
                    "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support."
                        .into(),
                ));
            }
        }
    }
    objects.delete(pods, Some(ns), name, opts).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(status: Value) -> Value {
        json!({"metadata": {"name": "web", "generation": 1}, "status": status})
    }

    #[test]
    fn an_eviction_spends_a_disruption_and_records_the_pod() {
        let mut pdb = budget(json!({"observedGeneration": 1, "disruptionsAllowed": 1,
            "currentHealthy": 2, "desiredHealthy": 1,
            "conditions": [{"type": "DisruptionAllowed", "status": "True", "reason": "SufficientPods"}]}));
        assert_eq!(
            check_and_decrement(&mut pdb, "web-1", "2030-01-01T00:00:00Z"),
            Verdict::Allowed
        );
        assert_eq!(pdb["status"]["disruptionsAllowed"], 0);
        assert_eq!(
            pdb["status"]["disruptedPods"],
            json!({"web-1": "2030-01-01T00:00:00Z"})
        );
        assert_eq!(pdb["status"]["conditions"][0]["status"], "False");
        // The next one is refused with kube's cause.
        assert_eq!(
            check_and_decrement(&mut pdb, "web-2", "2030-01-01T00:00:00Z"),
            Verdict::Refused {
                cause: "The disruption budget web needs 1 healthy pods and has 2 currently".into(),
                retry_after: 0
            }
        );
    }

    #[test]
    fn a_budget_not_yet_observed_asks_to_retry() {
        let mut pdb = budget(json!({"disruptionsAllowed": 3}));
        assert_eq!(
            check_and_decrement(&mut pdb, "p", "t"),
            Verdict::Refused {
                cause: "The disruption budget web is still being processed by the server.".into(),
                retry_after: 10
            }
        );
    }

    #[test]
    fn the_refusal_is_kubes_status() {
        let body = serde_json::to_string(
            &refusal(
                "The disruption budget web needs 2 healthy pods and has 2 currently".into(),
                0,
            )
            .status_body(),
        )
        .unwrap();
        assert_eq!(
            body,
            r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"Cannot evict pod as it would violate the pod's disruption budget.","reason":"TooManyRequests","details":{"causes":[{"reason":"DisruptionBudget","message":"The disruption budget web needs 2 healthy pods and has 2 currently"}]},"code":429}"#
        );
    }
}
