//! Kubernetes Events about pods and the node, written the way the kubelet writes them.
//!
//! Recording never waits and never fails: [`EventRecorder::record`] puts the occurrence on a
//! bounded queue (dropped with a debug line when the queue is full) and one task correlates
//! it (see `herd_api::event_correlator`) and writes it: a new Event is created, a repeated one is
//! merge-patched with its new `count` and `lastTimestamp` (or created again if it is gone).

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Event, ObjectReference, Pod};
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use herd_api::event_correlator::{
    CACHE_ENTRIES, Correlated, EventCorrelator, EventType, Occurrence, Reporter,
};

/// How many occurrences may wait to be written (client-go's queue length).
const QUEUE: usize = 1000;
/// The component the events say they come from.
pub(crate) const COMPONENT: &str = "kubelet";

/// Records events; cheap to clone.
#[derive(Clone, Debug)]
pub(crate) struct EventRecorder {
    queue: mpsc::Sender<Occurrence>,
}

impl EventRecorder {
    /// Starts the task that writes the events of node `host` through `client`; it ends when
    /// `shutdown` is cancelled (what is still queued then is dropped).
    pub fn start(
        client: Client,
        host: &str,
        shutdown: CancellationToken,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let (queue, occurrences) = mpsc::channel(QUEUE);
        let correlator = EventCorrelator::new(
            Reporter {
                component: COMPONENT.to_owned(),
                host: Some(host.to_owned()),
            },
            CACHE_ENTRIES,
        );
        let task = tokio::spawn(write_events(client, correlator, occurrences, shutdown));
        (Self { queue }, task)
    }

    /// Queues one event about `involved`, happening now.
    pub fn record(
        &self,
        involved: ObjectReference,
        type_: EventType,
        reason: &str,
        message: String,
    ) {
        let occurrence = Occurrence {
            involved,
            type_,
            reason: reason.to_owned(),
            message,
            time: Timestamp::now(),
        };
        if let Err(error) = self.queue.try_send(occurrence) {
            tracing::debug!(%error, "event dropped");
        }
    }

    /// The events the kubelet writes when it starts and finds its node ready.
    pub fn node_started(&self, node: &str) {
        let reference = ObjectReference {
            kind: Some("Node".to_owned()),
            name: Some(node.to_owned()),
            // The kubelet names its node by name in place of a UID.
            uid: Some(node.to_owned()),
            ..ObjectReference::default()
        };
        let record = |reason: &str, message: String| {
            self.record(reference.clone(), EventType::Normal, reason, message);
        };
        record("Starting", "Starting kubelet.".to_owned());
        for condition in [
            "NodeHasSufficientMemory",
            "NodeHasNoDiskPressure",
            "NodeHasSufficientPID",
            "NodeReady",
        ] {
            record(condition, format!("Node {node} status is now: {condition}"));
        }
    }
}

/// How long an event waits before it is written (see `write_events`).
const EVENT_WRITE_DELAY: std::time::Duration = std::time::Duration::from_millis(50);

async fn write_events(
    client: Client,
    mut correlator: EventCorrelator,
    mut occurrences: mpsc::Receiver<Occurrence>,
    shutdown: CancellationToken,
) {
    loop {
        let occurrence = tokio::select! {
            () = shutdown.cancelled() => return,
            occurrence = occurrences.recv() => match occurrence {
                Some(occurrence) => occurrence,
                None => return,
            },
        };
        // Events are written a moment after they happen, so a pod's start path (its status writes) never
        // queues behind them at the API server; a burst goes out back to back after the pause.
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(EVENT_WRITE_DELAY) => {}
        }
        let correlated = correlator.observe(occurrence);
        tokio::select! {
            () = shutdown.cancelled() => return,
            result = write(&client, &correlated) => if let Err(error) = result {
                tracing::debug!(
                    event = ?correlated.event.metadata.name,
                    reason = ?correlated.event.reason,
                    %error,
                    "writing an event failed"
                );
            },
        }
    }
}

/// Creates the event, or for a repeat patches its count and time; a repeat whose Event is
/// gone is created again under the same name.
async fn write(client: &Client, correlated: &Correlated) -> Result<(), kube::Error> {
    let event = &correlated.event;
    let namespace = event.metadata.namespace.as_deref().unwrap_or("default");
    let name = event.metadata.name.as_deref().unwrap_or_default();
    let events: Api<Event> = Api::namespaced(client.clone(), namespace);
    if correlated.repeat {
        let patch = json!({
            "count": event.count,
            "lastTimestamp": event.last_timestamp,
            "message": event.message,
        });
        match events
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            other => return other.map(drop),
        }
    }
    events.create(&PostParams::default(), event).await.map(drop)
}

/// The events of one pod, about its containers. Cheap to clone.
#[derive(Clone, Debug)]
pub(crate) struct PodEvents {
    recorder: EventRecorder,
    /// The pod as last seen: the reference carries its current `resourceVersion`.
    pod: watch::Receiver<Arc<Pod>>,
}

impl PodEvents {
    pub fn new(recorder: EventRecorder, pod: watch::Receiver<Arc<Pod>>) -> Self {
        Self { recorder, pod }
    }

    /// The reference to container `container` of the pod (`fieldPath: spec.containers{C}`).
    pub fn container_reference(&self, container: &str) -> ObjectReference {
        let pod = self.pod.borrow();
        ObjectReference {
            kind: Some("Pod".to_owned()),
            api_version: Some("v1".to_owned()),
            namespace: pod.metadata.namespace.clone(),
            name: pod.metadata.name.clone(),
            uid: pod.metadata.uid.clone(),
            resource_version: pod.metadata.resource_version.clone(),
            field_path: Some(format!("spec.containers{{{container}}}")),
        }
    }

    /// An event about the pod itself (no `fieldPath`), as the kubelet's sandbox events are.
    pub fn pod(&self, type_: EventType, reason: &str, message: String) {
        let mut reference = self.container_reference("");
        reference.field_path = None;
        self.recorder.record(reference, type_, reason, message);
    }

    pub fn container(&self, container: &str, type_: EventType, reason: &str, message: String) {
        self.recorder
            .record(self.container_reference(container), type_, reason, message);
    }
}

/// The kubelet's `Pulled` message after a pull that took `pulled_in`, `total` with waiting.
pub(crate) fn pulled_message(
    image: &str,
    pulled_in: Duration,
    total: Duration,
    size: u64,
) -> String {
    format!(
        "Successfully pulled image {image:?} in {} ({} including waiting). Image size: {size} bytes.",
        go_duration_millis(pulled_in),
        go_duration_millis(total)
    )
}

/// A duration truncated to milliseconds and printed like Go's `time.Duration.String`:
/// `0s`, `120ms`, `1.5s`, `2m3.004s`, `1h0m0s`.
pub(crate) fn go_duration_millis(duration: Duration) -> String {
    let millis = duration.as_millis();
    if millis == 0 {
        return "0s".to_owned();
    }
    if millis < 1000 {
        return format!("{millis}ms");
    }
    let hours = millis / 3_600_000;
    let minutes = millis / 60_000 % 60;
    let seconds = millis / 1000 % 60;
    let fraction = millis % 1000;
    let mut out = String::new();
    if hours > 0 {
        out.push_str(&format!("{hours}h"));
    }
    if hours > 0 || minutes > 0 {
        out.push_str(&format!("{minutes}m"));
    }
    out.push_str(&seconds.to_string());
    if fraction > 0 {
        let digits = format!("{fraction:03}");
        out.push('.');
        out.push_str(digits.trim_end_matches('0'));
    }
    out.push('s');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_print_like_go() {
        let cases = [
            (0, "0s"),
            (120, "120ms"),
            (999, "999ms"),
            (1000, "1s"),
            (1500, "1.5s"),
            (15_981, "15.981s"),
            (123_004, "2m3.004s"),
            (3_600_000, "1h0m0s"),
            (3_723_450, "1h2m3.45s"),
        ];
        for (millis, text) in cases {
            assert_eq!(go_duration_millis(Duration::from_millis(millis)), text);
        }
        assert_eq!(go_duration_millis(Duration::from_micros(120_999)), "120ms");
    }

    #[test]
    fn pulled_message_matches_the_kubelet() {
        assert_eq!(
            pulled_message(
                "reg/app:v1",
                Duration::from_millis(120),
                Duration::from_millis(120),
                1234
            ),
            "Successfully pulled image \"reg/app:v1\" in 120ms (120ms including waiting). Image size: 1234 bytes."
        );
    }

    #[test]
    fn container_reference_points_into_the_pod() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "shop", "uid": "u1", "resourceVersion": "42"}
        }))
        .expect("pod");
        let (_tx, rx) = watch::channel(Arc::new(pod));
        let (queue, _occurrences) = mpsc::channel(1);
        let events = PodEvents::new(EventRecorder { queue }, rx);
        assert_eq!(
            serde_json::to_value(events.container_reference("app")).expect("json"),
            json!({
                "kind": "Pod", "apiVersion": "v1", "namespace": "shop", "name": "web",
                "uid": "u1", "resourceVersion": "42", "fieldPath": "spec.containers{app}"
            })
        );
    }

    #[tokio::test]
    async fn recording_never_waits_on_a_full_queue() {
        let (queue, mut occurrences) = mpsc::channel(1);
        let recorder = EventRecorder { queue };
        let node = ObjectReference::default();
        recorder.record(node.clone(), EventType::Normal, "A", "a".into());
        recorder.record(node, EventType::Normal, "B", "b".into());
        assert_eq!(occurrences.recv().await.map(|o| o.reason), Some("A".into()));
        assert!(occurrences.try_recv().is_err(), "the second was dropped");
    }
}
