//! How the workload controllers create and delete pods in bulk, as kube-controller-manager does: at most a
//! burst per sync, creates in slow-start batches (1, 2, 4, … doubling, stopping at the first batch with a
//! failure), each batch one store transaction; deletes of one sync in one transaction.

use std::future::Future;
use std::sync::Arc;

use herd_api::resources::ResourceInfo;
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::events::{EventQueue, Note};
use crate::objects::Objects;
use crate::objects::{Change, EventType};

/// kube's `BurstReplicas` of the ReplicaSet controller (and the Job controller's
/// `MaxPodCreateDeletePerSync`): at most this many pods are created or deleted per sync.
pub const BURST_REPLICAS: usize = 500;
/// The daemon controller's `BurstReplicas`.
pub const DAEMON_BURST_REPLICAS: usize = 250;

/// kube's `slowStartBatch`: hands `items` to `write` in batches of 1, 2, 4, … (doubling), stopping after the
/// first batch with a failure, so a create that keeps failing (a missing namespace, an invalid template)
/// costs one attempt rather than hundreds, while one that works reaches full speed in a few round trips.
/// `write` answers for each item of its batch, or fails as a whole. Returns the successes, in order, and
/// the first error.
pub async fn slow_start<T, R, F, Fut>(items: Vec<T>, mut write: F) -> (Vec<R>, Option<ApiError>)
where
    F: FnMut(Vec<T>) -> Fut,
    Fut: Future<Output = Result<Vec<Result<R, ApiError>>, ApiError>>,
{
    let mut done = Vec::with_capacity(items.len());
    let mut rest = items.into_iter();
    let mut size = 1;
    loop {
        let batch: Vec<T> = rest.by_ref().take(size).collect();
        if batch.is_empty() {
            return (done, None);
        }
        let mut failed = None;
        match write(batch).await {
            Ok(results) => {
                for result in results {
                    match result {
                        Ok(v) => done.push(v),
                        Err(e) => {
                            failed.get_or_insert(e);
                        }
                    }
                }
            }
            Err(e) => failed = Some(e),
        }
        if let Some(e) = failed {
            return (done, Some(e));
        }
        size *= 2;
    }
}

/// Creates `pods` (in `owner`'s namespace) in slow-start batches, each one transaction, and queues a
/// `SuccessfulCreate` event per pod (and one `FailedCreate` for a failure), as kube's pod control does.
/// Returns the created pods and the first error.
pub async fn create_pods(
    objects: &Objects,
    res: &'static ResourceInfo,
    events: &EventQueue,
    owner: &Value,
    pods: Vec<Value>,
) -> (Vec<Arc<Value>>, Option<ApiError>) {
    let ns = owner
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .map(str::to_string);
    let subject = event_subject(owner);
    let (created, error) = slow_start(pods, |batch| {
        let batch = batch.into_iter().map(|p| (ns.clone(), p)).collect();
        async move {
            let results = objects.create_many(res, batch).await?;
            Ok(results.into_iter().map(|r| r.map(Arc::new)).collect())
        }
    })
    .await;
    let mut notes: Vec<Note> = created
        .iter()
        .map(|pod| {
            note(
                &subject,
                "Normal",
                "SuccessfulCreate",
                format!("Created pod: {}", name_of(pod)),
            )
        })
        .collect();
    if let Some(e) = &error {
        notes.push(note(
            &subject,
            "Warning",
            "FailedCreate",
            format!("Error creating: {e}"),
        ));
    }
    events.push(notes);
    (created, error)
}

/// Deletes `pods` of `owner` in one transaction (a bound pod is marked for graceful deletion with `grace`,
/// or its own grace period) and queues a `SuccessfulDelete` event for each. Returns each pod's change:
/// `None` when it was gone or already being deleted.
pub async fn delete_pods(
    objects: &Objects,
    res: &'static ResourceInfo,
    events: &EventQueue,
    owner: &Value,
    pods: &[&Value],
    grace: Option<i64>,
) -> Result<Vec<Option<Arc<Change>>>, ApiError> {
    if pods.is_empty() {
        return Ok(Vec::new());
    }
    let names: Vec<(String, String)> = pods
        .iter()
        .map(|p| {
            (
                p.pointer("/metadata/namespace")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                name_of(p).to_string(),
            )
        })
        .collect();
    let changes = objects.delete_many(res, names, grace).await?;
    let subject = event_subject(owner);
    events.push(
        changes
            .iter()
            .flatten()
            .map(|c| {
                note(
                    &subject,
                    "Normal",
                    "SuccessfulDelete",
                    format!("Deleted pod: {}", c.name),
                )
            })
            .collect(),
    );
    Ok(changes)
}

/// Whether a deletion left the pod terminating (marked, not yet removed).
pub fn left_terminating(change: &Change) -> bool {
    change.kind != EventType::Deleted
}

fn name_of(obj: &Value) -> &str {
    obj.pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// The fields of `owner` an Event needs (its kind, apiVersion and identity), so a thousand events do not
/// carry a thousand copies of the whole object.
pub(super) fn event_subject(owner: &Value) -> Value {
    let md = &owner["metadata"];
    json!({
        "kind": owner["kind"], "apiVersion": owner["apiVersion"],
        "metadata": {"name": md["name"], "namespace": md["namespace"], "uid": md["uid"],
            "resourceVersion": md["resourceVersion"]},
    })
}

fn note(subject: &Value, type_: &'static str, reason: &'static str, message: String) -> Note {
    Note {
        obj: subject.clone(),
        type_,
        reason,
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records each batch's size; items listed in `fail` fail.
    async fn run(n: usize, fail: &[usize]) -> (Vec<usize>, Vec<usize>, Option<ApiError>) {
        let sizes = std::sync::Mutex::new(Vec::new());
        let (done, error) = slow_start((0..n).collect(), |batch: Vec<usize>| {
            sizes.lock().unwrap().push(batch.len());
            let out = batch
                .into_iter()
                .map(|i| {
                    if fail.contains(&i) {
                        Err(ApiError::Internal(format!("item {i}")))
                    } else {
                        Ok(i)
                    }
                })
                .collect();
            async move { Ok(out) }
        })
        .await;
        (sizes.into_inner().unwrap(), done, error)
    }

    #[tokio::test]
    async fn batches_double_from_one() {
        let (sizes, done, error) = run(1000, &[]).await;
        assert_eq!(sizes, [1, 2, 4, 8, 16, 32, 64, 128, 256, 489]);
        assert_eq!(done.len(), 1000);
        assert!(error.is_none());
        let (sizes, _, _) = run(0, &[]).await;
        assert!(sizes.is_empty());
    }

    #[tokio::test]
    async fn the_first_batch_with_a_failure_is_the_last() {
        // Item 5 is in the third batch (items 3..7): that batch completes, no fourth is tried.
        let (sizes, done, error) = run(100, &[5]).await;
        assert_eq!(sizes, [1, 2, 4]);
        assert_eq!(done, [0, 1, 2, 3, 4, 6]);
        assert!(matches!(error, Some(ApiError::Internal(m)) if m == "item 5"));
        // A failure of the first item stops after one attempt.
        let (sizes, done, _) = run(500, &[0]).await;
        assert_eq!((sizes, done.len()), (vec![1], 0));
    }
}
