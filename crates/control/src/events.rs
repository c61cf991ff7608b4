//! Events written by the control plane's own components (scheduler, controllers), correlated the way
//! client-go's recorder does: a repeat of the same reason and message about the same object bumps `count`.

use std::sync::{Arc, Mutex};

use herd_api::event_correlator::{
    CACHE_ENTRIES, Correlated, EventCorrelator, EventType, Occurrence, Reporter,
};
use herd_api::resources::{self, ResourceInfo};
use k8s_openapi::api::core::v1::ObjectReference;
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::objects::Objects;

#[derive(Clone)]
pub struct Recorder {
    objects: Objects,
    correlator: Arc<Mutex<EventCorrelator>>,
}

fn events() -> &'static ResourceInfo {
    resources::by_path("", "v1", "events").expect("events are in the resource table")
}

impl Recorder {
    pub fn new(objects: Objects, component: &'static str) -> Self {
        let reporter = Reporter {
            component: component.to_owned(),
            host: None,
        };
        Self {
            objects,
            correlator: Arc::new(Mutex::new(EventCorrelator::new(reporter, CACHE_ENTRIES))),
        }
    }

    /// Records a Normal event about `obj`.
    pub async fn normal(&self, obj: &Value, reason: &str, message: &str) {
        self.record(obj, "Normal", reason, message).await;
    }

    /// Records a Warning event about `obj`.
    pub async fn warning(&self, obj: &Value, reason: &str, message: &str) {
        self.record(obj, "Warning", reason, message).await;
    }

    /// Writes the event; failures are logged, never returned: an event must not fail the decision it reports.
    async fn record(&self, obj: &Value, type_: &str, reason: &str, message: &str) {
        let Some(correlated) = self.correlate(obj, type_, reason, message) else {
            return;
        };
        if let Err(e) = self.write(correlated).await {
            tracing::debug!(error = %e, %reason, "could not write event");
        }
    }

    /// Records many events in one store transaction (the scheduler's hot path); repeats of an event already
    /// written still bump its count. Failures are logged, never returned.
    pub async fn record_many(&self, notes: Vec<Note>) {
        let mut fresh = Vec::with_capacity(notes.len());
        for note in notes {
            let Some(correlated) =
                self.correlate(&note.obj, note.type_, note.reason, &note.message)
            else {
                continue;
            };
            if correlated.repeat {
                match self.bump(&correlated).await {
                    Ok(true) => continue,
                    Ok(false) => {}
                    Err(e) => {
                        tracing::debug!(error = %e, "could not write event");
                        continue;
                    }
                }
            }
            if let Some(created) = body(&correlated) {
                fresh.push(created);
            }
        }
        match self.objects.create_many(events(), fresh).await {
            Ok(results) => {
                for result in results {
                    if let Err(e) = result {
                        tracing::debug!(error = %e, "could not write event");
                    }
                }
            }
            Err(e) => tracing::debug!(error = %e, "could not write events"),
        }
    }

    /// The Event that records this occurrence, new or a repeat (see `herd_api::event_correlator`).
    fn correlate(
        &self,
        obj: &Value,
        type_: &str,
        reason: &str,
        message: &str,
    ) -> Option<Correlated> {
        let type_ = if type_ == "Warning" {
            EventType::Warning
        } else {
            EventType::Normal
        };
        let occurrence = Occurrence {
            involved: reference(obj),
            type_,
            reason: reason.to_owned(),
            message: message.to_owned(),
            time: jiff::Timestamp::now(),
        };
        let mut correlator = self.correlator.lock().ok()?;
        Some(correlator.observe(occurrence))
    }

    /// Creates the event, or for a repeat bumps its count and time; a repeat whose Event is gone is
    /// created again under the same name.
    async fn write(&self, correlated: Correlated) -> Result<(), ApiError> {
        if correlated.repeat && self.bump(&correlated).await? {
            return Ok(());
        }
        let Some((ns, event)) = body(&correlated) else {
            return Ok(());
        };
        self.objects
            .create(events(), ns.as_deref(), event, false)
            .await
            .map(drop)
    }

    /// Writes a repeat's `count` and `lastTimestamp` into the Event already written; false when it is gone.
    async fn bump(&self, correlated: &Correlated) -> Result<bool, ApiError> {
        let event = &correlated.event;
        let ns = event.metadata.namespace.as_deref().unwrap_or("default");
        let name = event.metadata.name.as_deref().unwrap_or_default();
        let count = json!(event.count);
        let last = json!(event.last_timestamp);
        let bumped = self
            .objects
            .edit(events(), ns, name, |ev| {
                ev["count"] = count.clone();
                ev["lastTimestamp"] = last.clone();
                true
            })
            .await?;
        Ok(bumped.is_some())
    }
}

/// The reference to `obj` an Event keeps (`involvedObject`).
fn reference(obj: &Value) -> ObjectReference {
    let md = &obj["metadata"];
    let text = |v: &Value| v.as_str().map(str::to_owned);
    ObjectReference {
        kind: text(&obj["kind"]),
        api_version: text(&obj["apiVersion"]),
        name: text(&md["name"]),
        namespace: text(&md["namespace"]),
        uid: text(&md["uid"]),
        resource_version: text(&md["resourceVersion"]),
        field_path: None,
    }
}

/// The namespace and JSON body of a correlated Event, to create.
fn body(correlated: &Correlated) -> Option<(Option<String>, Value)> {
    let ns = correlated.event.metadata.namespace.clone();
    let event = serde_json::to_value(&correlated.event).ok()?;
    Some((ns, event))
}

/// One event of [`Recorder::record_many`]: about `obj` (its kind, apiVersion and metadata are enough).
pub struct Note {
    pub obj: Value,
    pub type_: &'static str,
    pub reason: &'static str,
    pub message: String,
}

/// How long the background writer lets events gather before writing them.
const EVENT_WRITE_DELAY: std::time::Duration = std::time::Duration::from_millis(50);

enum Queued {
    Notes(Vec<Note>),
    Flushed(tokio::sync::oneshot::Sender<()>),
}

/// Events written in the background, in batches, for a hot path that must not wait for them (the
/// scheduler, as kube-scheduler's event broadcaster). The writer ends when the queue is dropped, after
/// writing what was queued.
pub struct EventQueue {
    tx: tokio::sync::mpsc::UnboundedSender<Queued>,
}

impl EventQueue {
    pub fn spawn(recorder: Recorder) -> Self {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                // A moment's pause: the binds and status writes these events report go first, and more
                // events join the batch.
                tokio::time::sleep(EVENT_WRITE_DELAY).await;
                // Everything queued meanwhile goes into the same batch.
                let mut notes = Vec::new();
                let mut flushed = Vec::new();
                let mut next = Some(first);
                while let Some(item) = next {
                    match item {
                        Queued::Notes(n) => notes.extend(n),
                        Queued::Flushed(done) => flushed.push(done),
                    }
                    next = rx.try_recv().ok();
                }
                if !notes.is_empty() {
                    recorder.record_many(notes).await;
                }
                for done in flushed {
                    let _ = done.send(());
                }
            }
        });
        Self { tx }
    }

    /// Queues events to be written soon.
    pub fn push(&self, notes: Vec<Note>) {
        if !notes.is_empty() {
            let _ = self.tx.send(Queued::Notes(notes));
        }
    }

    /// Waits until everything queued so far is written.
    pub async fn flush(&self) {
        let (done, written) = tokio::sync::oneshot::channel();
        if self.tx.send(Queued::Flushed(done)).is_ok() {
            let _ = written.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use herd_api::selector::{FieldSelector, LabelSelector};

    fn pod(uid: &str) -> Value {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web", "namespace": "shop", "uid": uid, "resourceVersion": "7"},
        })
    }

    /// A resource layer over a fresh store, with namespace `shop`.
    async fn objects() -> (tempfile::TempDir, Objects) {
        let (dir, objects) = crate::objects::test_objects().await;
        let namespaces = resources::by_path("", "v1", "namespaces").expect("namespaces");
        let shop = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}});
        objects
            .create(namespaces, None, shop, false)
            .await
            .expect("namespace");
        (dir, objects)
    }

    async fn written(objects: &Objects) -> Vec<Value> {
        let (items, _) = objects
            .list(
                events(),
                Some("shop"),
                &LabelSelector::default(),
                &FieldSelector::default(),
            )
            .await
            .expect("list events");
        items
    }

    #[tokio::test]
    async fn repeats_bump_the_count_of_one_event_whichever_way_they_are_recorded() {
        let (_dir, objects) = objects().await;
        let recorder = Recorder::new(objects.clone(), "default-scheduler");
        recorder.normal(&pod("u1"), "Scheduled", "assigned").await;
        recorder.normal(&pod("u1"), "Scheduled", "assigned").await;
        let note = |uid: &str, message: &str| Note {
            obj: pod(uid),
            type_: "Normal",
            reason: "Scheduled",
            message: message.to_owned(),
        };
        recorder
            .record_many(vec![note("u1", "assigned"), note("u2", "assigned")])
            .await;
        let mut events = written(&objects).await;
        events.sort_by_key(|e| e["involvedObject"]["uid"].as_str().map(str::to_owned));
        assert_eq!(events.len(), 2, "{events:#?}");
        assert_eq!(events[0]["count"], 3, "{events:#?}");
        assert_eq!(
            events[0]["source"],
            json!({"component": "default-scheduler"})
        );
        assert_eq!(events[0]["reportingInstance"], "default-scheduler");
        assert_eq!(events[0]["involvedObject"]["kind"], "Pod");
        assert_eq!(events[1]["count"], 1);
    }

    #[tokio::test]
    async fn a_repeat_whose_event_is_gone_is_written_again() {
        let (_dir, objects) = objects().await;
        let recorder = Recorder::new(objects.clone(), "replicaset-controller");
        recorder.warning(&pod("u1"), "FailedCreate", "quota").await;
        let name = written(&objects).await[0]["metadata"]["name"]
            .as_str()
            .expect("name")
            .to_owned();
        objects
            .delete(events(), Some("shop"), &name, Default::default())
            .await
            .expect("delete");
        recorder.warning(&pod("u1"), "FailedCreate", "quota").await;
        let events = written(&objects).await;
        assert_eq!(events.len(), 1);
        assert_eq!(events[0]["metadata"]["name"], name.as_str());
        assert_eq!(events[0]["count"], 2);
        assert_eq!(events[0]["type"], "Warning");
    }
}
