//! Events written by the control plane's own components (scheduler, controllers), correlated the way
//! client-go's recorder does: a repeat of the same reason and message about the same object bumps `count`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use herd_api::resources::{self, ResourceInfo};
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::objects::{Objects, now};

/// (involved uid, reason, message) → name of the Event already written.
type Seen = HashMap<(String, String, String), String>;

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
        let md = &obj["metadata"];
        let uid = md["uid"].as_str().unwrap_or_default().to_string();
        let name = md["name"].as_str().unwrap_or_default();
        let ns = md["namespace"]
            .as_str()
            .filter(|n| !n.is_empty())
            .unwrap_or("default")
            .to_string();
        let key = (uid.clone(), reason.to_string(), message.to_string());
        let existing = self.seen.lock().ok().and_then(|m| m.get(&key).cloned());
        let stamp = now();
        if let Some(event_name) = existing {
            let bumped = self
                .objects
                .edit(events(), &ns, &event_name, |ev| {
                    ev["count"] = json!(ev["count"].as_i64().unwrap_or(1) + 1);
                    ev["lastTimestamp"] = json!(stamp);
                    true
                })
                .await?;
            if bumped.is_some() {
                return Ok(());
            }
        }
        let nanos = jiff::Timestamp::now().as_nanosecond();
        let event_name = format!("{name}.{nanos:x}");
        let event = json!({
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": event_name, "namespace": ns},
            "involvedObject": {
                "kind": obj["kind"], "apiVersion": obj["apiVersion"], "name": name,
                "namespace": md["namespace"], "uid": uid, "resourceVersion": md["resourceVersion"],
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
        self.objects
            .create(events(), Some(&ns), event, false)
            .await?;
        if let Ok(mut m) = self.seen.lock() {
            if m.len() > 4096 {
                m.clear();
            }
            m.insert(key, event_name);
        }
        Ok(())
    }
}
