//! Events written by the control plane's own components (scheduler, controllers), correlated the way
//! client-go's recorder does: a repeat of the same reason and message about the same object bumps `count`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use herd_api::resources::{self, ResourceInfo};
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::objects::{Objects, now};

/// (involved uid, reason, message) → name of the Event already written.
type Seen = HashMap<SeenKey, String>;

#[derive(Clone)]
pub struct Recorder {
    objects: Objects,
    component: &'static str,
    seen: Arc<Mutex<Seen>>,
}

fn events() -> &'static ResourceInfo {
    resources::by_path("", "v1", "events").expect("events are in the resource table")
}

impl Recorder {
    pub fn new(objects: Objects, component: &'static str) -> Self {
        Self {
            objects,
            component,
            seen: Arc::default(),
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
        if let Err(e) = self.try_record(obj, type_, reason, message).await {
            tracing::debug!(error = %e, %reason, "could not write event");
        }
    }

    async fn try_record(
        &self,
        obj: &Value,
        type_: &str,
        reason: &str,
        message: &str,
    ) -> Result<(), ApiError> {
        let stamp = now();
        if self.bump_repeat(obj, reason, message, &stamp).await? {
            return Ok(());
        }
        let (key, ns, event) = self.new_event(obj, type_, reason, message, &stamp);
        let created = self
            .objects
            .create(events(), Some(&ns), event, false)
            .await?;
        self.remember(key, &created);
        Ok(())
    }

    /// Records many events in one store transaction (the scheduler's hot path); repeats of an event already
    /// written still bump its count. Failures are logged, never returned.
    pub async fn record_many(&self, notes: Vec<Note>) {
        let stamp = now();
        let mut fresh = Vec::with_capacity(notes.len());
        let mut keys = Vec::with_capacity(notes.len());
        for note in notes {
            match self
                .bump_repeat(&note.obj, note.reason, &note.message, &stamp)
                .await
            {
                Ok(true) => {}
                Ok(false) | Err(_) => {
                    let (key, ns, event) =
                        self.new_event(&note.obj, note.type_, note.reason, &note.message, &stamp);
                    keys.push(key);
                    fresh.push((Some(ns), event));
                }
            }
        }
        match self.objects.create_many(events(), fresh).await {
            Ok(results) => {
                for (key, result) in keys.into_iter().zip(results) {
                    match result {
                        Ok(created) => self.remember(key, &created),
                        Err(e) => tracing::debug!(error = %e, "could not write event"),
                    }
                }
            }
            Err(e) => tracing::debug!(error = %e, "could not write events"),
        }
    }

    /// Bumps the count of the Event already written for this (object, reason, message); false when there is
    /// none to bump.
    async fn bump_repeat(
        &self,
        obj: &Value,
        reason: &str,
        message: &str,
        stamp: &str,
    ) -> Result<bool, ApiError> {
        let key = seen_key(obj, reason, message);
        let Some(event_name) = self.seen.lock().ok().and_then(|m| m.get(&key).cloned()) else {
            return Ok(false);
        };
        let bumped = self
            .objects
            .edit(events(), &event_namespace(obj), &event_name, |ev| {
                ev["count"] = json!(ev["count"].as_i64().unwrap_or(1) + 1);
                ev["lastTimestamp"] = json!(stamp);
                true
            })
            .await?;
        Ok(bumped.is_some())
    }

    /// A new Event about `obj`: its correlation key, namespace and body.
    fn new_event(
        &self,
        obj: &Value,
        type_: &str,
        reason: &str,
        message: &str,
        stamp: &str,
    ) -> (SeenKey, String, Value) {
        let md = &obj["metadata"];
        let name = md["name"].as_str().unwrap_or_default();
        let ns = event_namespace(obj);
        let nanos = jiff::Timestamp::now().as_nanosecond();
        let event = json!({
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": format!("{name}.{nanos:x}"), "namespace": ns},
            "involvedObject": {
                "kind": obj["kind"], "apiVersion": obj["apiVersion"], "name": name,
                "namespace": md["namespace"], "uid": md["uid"], "resourceVersion": md["resourceVersion"],
            },
            "reason": reason,
            "message": message,
            "type": type_,
            "source": {"component": self.component},
            "reportingComponent": self.component,
            "reportingInstance": self.component,
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
        });
        (seen_key(obj, reason, message), ns, event)
    }

    fn remember(&self, key: SeenKey, created: &Value) {
        let Some(event_name) = created.pointer("/metadata/name").and_then(Value::as_str) else {
            return;
        };
        if let Ok(mut m) = self.seen.lock() {
            if m.len() > 4096 {
                m.clear();
            }
            m.insert(key, event_name.to_string());
        }
    }
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

type SeenKey = (String, String, String);

fn seen_key(obj: &Value, reason: &str, message: &str) -> SeenKey {
    let uid = obj.pointer("/metadata/uid").and_then(Value::as_str);
    (
        uid.unwrap_or_default().to_string(),
        reason.to_string(),
        message.to_string(),
    )
}

/// Events live in their object's namespace; cluster-scoped objects' events go to `default`, as kube's do.
fn event_namespace(obj: &Value) -> String {
    obj.pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .unwrap_or("default")
        .to_string()
}
