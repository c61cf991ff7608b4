//! Folds repeated events into one, like client-go's event correlator: an event with the same
//! involved object, type, reason and message as one recorded before updates that Event
//! (`count`, `lastTimestamp`) instead of creating another. The memory is a bounded cache;
//! the least recently seen entry is forgotten first. Pure: the clock is an argument. The one
//! correlator of herd: the control plane's recorder and the node agent's both use it.

use std::collections::{BTreeMap, HashMap};

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

/// How many distinct events are remembered (client-go's `maxLruCacheEntries`).
pub const CACHE_ENTRIES: usize = 4096;

/// `Normal` or `Warning`, the two event types.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventType {
    Normal,
    Warning,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}

/// One occurrence, as the agent reports it.
#[derive(Clone, Debug, PartialEq)]
pub struct Occurrence {
    pub involved: ObjectReference,
    pub type_: EventType,
    pub reason: String,
    pub message: String,
    pub time: Timestamp,
}

/// What identifies "the same event": everything but the time and the object's version.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct EventKey {
    kind: String,
    namespace: String,
    name: String,
    uid: String,
    api_version: String,
    field_path: String,
    type_: EventType,
    reason: String,
    message: String,
}

impl EventKey {
    fn of(occurrence: &Occurrence) -> Self {
        let o = &occurrence.involved;
        let text = |s: &Option<String>| s.clone().unwrap_or_default();
        Self {
            kind: text(&o.kind),
            namespace: text(&o.namespace),
            name: text(&o.name),
            uid: text(&o.uid),
            api_version: text(&o.api_version),
            field_path: text(&o.field_path),
            type_: occurrence.type_,
            reason: occurrence.reason.clone(),
            message: occurrence.message.clone(),
        }
    }
}

#[derive(Clone, Debug)]
struct Entry {
    name: String,
    count: i32,
    first: Timestamp,
    /// When this entry was last used, in observations; the smallest is evicted first.
    used: u64,
}

/// The Event to write for an occurrence.
#[derive(Clone, Debug, PartialEq)]
pub struct Correlated {
    pub event: Event,
    /// An Event with this name was written before: update it rather than create it.
    pub repeat: bool,
}

/// Who writes the events: `source.component` / `reportingComponent`, and the host for a node's
/// component (`source.host`, `reportingInstance`; without one the component is its own instance, as
/// the control plane's components are).
#[derive(Clone, Debug)]
pub struct Reporter {
    pub component: String,
    pub host: Option<String>,
}

#[derive(Debug)]
pub struct EventCorrelator {
    reporter: Reporter,
    entries: HashMap<EventKey, Entry>,
    /// The keys by when they were last used: the first is the least recent.
    by_use: BTreeMap<u64, EventKey>,
    capacity: usize,
    observed: u64,
}

impl EventCorrelator {
    pub fn new(reporter: Reporter, capacity: usize) -> Self {
        Self {
            reporter,
            entries: HashMap::new(),
            by_use: BTreeMap::new(),
            capacity: capacity.max(1),
            observed: 0,
        }
    }

    /// The Event that records `occurrence`: a new one named `<object>.<hex nanoseconds>`, or
    /// the remembered one with its count raised.
    pub fn observe(&mut self, occurrence: Occurrence) -> Correlated {
        self.observed += 1;
        let key = EventKey::of(&occurrence);
        let (entry, repeat) = match self.entries.get_mut(&key) {
            Some(entry) => {
                entry.count = entry.count.saturating_add(1);
                if let Some(key) = self.by_use.remove(&entry.used) {
                    self.by_use.insert(self.observed, key);
                }
                entry.used = self.observed;
                (entry.clone(), true)
            }
            None => {
                if self.entries.len() >= self.capacity {
                    self.evict_least_recent();
                }
                let object = occurrence.involved.name.as_deref().unwrap_or_default();
                let entry = Entry {
                    name: format!("{object}.{:x}", occurrence.time.as_nanosecond()),
                    count: 1,
                    first: occurrence.time,
                    used: self.observed,
                };
                self.by_use.insert(self.observed, key.clone());
                self.entries.insert(key, entry.clone());
                (entry, false)
            }
        };
        Correlated {
            event: self.event(occurrence, &entry),
            repeat,
        }
    }

    fn evict_least_recent(&mut self) {
        if let Some((_, oldest)) = self.by_use.pop_first() {
            self.entries.remove(&oldest);
        }
    }

    fn event(&self, occurrence: Occurrence, entry: &Entry) -> Event {
        // Events about cluster-scoped objects (the Node) live in `default`.
        let namespace = occurrence
            .involved
            .namespace
            .clone()
            .filter(|ns| !ns.is_empty())
            .unwrap_or_else(|| "default".to_owned());
        Event {
            metadata: ObjectMeta {
                name: Some(entry.name.clone()),
                namespace: Some(namespace),
                ..ObjectMeta::default()
            },
            involved_object: occurrence.involved,
            reason: Some(occurrence.reason),
            message: Some(occurrence.message),
            type_: Some(occurrence.type_.as_str().to_owned()),
            count: Some(entry.count),
            first_timestamp: Some(Time(entry.first)),
            last_timestamp: Some(Time(occurrence.time)),
            source: Some(EventSource {
                component: Some(self.reporter.component.clone()),
                host: self.reporter.host.clone(),
            }),
            reporting_component: Some(self.reporter.component.clone()),
            reporting_instance: Some(
                self.reporter
                    .host
                    .clone()
                    .unwrap_or_else(|| self.reporter.component.clone()),
            ),
            ..Event::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reporter() -> Reporter {
        Reporter {
            component: "kubelet".into(),
            host: Some("n1".into()),
        }
    }

    fn pod_ref(uid: &str, resource_version: &str) -> ObjectReference {
        ObjectReference {
            kind: Some("Pod".into()),
            api_version: Some("v1".into()),
            namespace: Some("shop".into()),
            name: Some("web".into()),
            uid: Some(uid.into()),
            resource_version: Some(resource_version.into()),
            field_path: Some("spec.containers{app}".into()),
        }
    }

    fn occurrence(uid: &str, rv: &str, reason: &str, message: &str, second: i64) -> Occurrence {
        Occurrence {
            involved: pod_ref(uid, rv),
            type_: EventType::Normal,
            reason: reason.into(),
            message: message.into(),
            time: Timestamp::from_second(1_700_000_000 + second).expect("time"),
        }
    }

    #[test]
    fn a_new_event_looks_like_the_kubelets() {
        let mut correlator = EventCorrelator::new(reporter(), 10);
        let first = correlator.observe(occurrence("u1", "7", "Pulling", "Pulling image \"x\"", 0));
        assert!(!first.repeat);
        let json = serde_json::to_value(&first.event).expect("json");
        assert_eq!(
            json,
            serde_json::json!({
                "apiVersion": "v1",
                "kind": "Event",
                "metadata": {"name": "web.17979cfe362a0000", "namespace": "shop"},
                "involvedObject": {
                    "kind": "Pod", "apiVersion": "v1", "namespace": "shop", "name": "web",
                    "uid": "u1", "resourceVersion": "7", "fieldPath": "spec.containers{app}"
                },
                "reason": "Pulling",
                "message": "Pulling image \"x\"",
                "type": "Normal",
                "count": 1,
                "firstTimestamp": "2023-11-14T22:13:20Z",
                "lastTimestamp": "2023-11-14T22:13:20Z",
                "source": {"component": "kubelet", "host": "n1"},
                "reportingComponent": "kubelet",
                "reportingInstance": "n1"
            })
        );
    }

    #[test]
    fn repeats_raise_the_count_of_the_first_event() {
        let mut correlator = EventCorrelator::new(reporter(), 10);
        let first = correlator.observe(occurrence("u1", "7", "BackOff", "Back-off", 0));
        // A newer resourceVersion of the same pod is still the same event.
        let second = correlator.observe(occurrence("u1", "9", "BackOff", "Back-off", 30));
        let third = correlator.observe(occurrence("u1", "9", "BackOff", "Back-off", 60));
        assert!(second.repeat && third.repeat);
        assert_eq!(third.event.metadata.name, first.event.metadata.name);
        assert_eq!(third.event.count, Some(3));
        assert_eq!(third.event.first_timestamp, first.event.first_timestamp);
        assert_eq!(
            third.event.last_timestamp,
            Some(Time(Timestamp::from_second(1_700_000_060).expect("time")))
        );
    }

    #[test]
    fn other_messages_reasons_and_objects_are_other_events() {
        let mut correlator = EventCorrelator::new(reporter(), 10);
        correlator.observe(occurrence("u1", "1", "Started", "Started container app", 0));
        for other in [
            occurrence("u1", "1", "Started", "Started container side", 1),
            occurrence("u1", "1", "Created", "Started container app", 2),
            occurrence("u2", "1", "Started", "Started container app", 3),
        ] {
            let correlated = correlator.observe(other);
            assert!(!correlated.repeat);
            assert_eq!(correlated.event.count, Some(1));
        }
    }

    #[test]
    fn the_least_recently_seen_event_is_forgotten_first() {
        let mut correlator = EventCorrelator::new(reporter(), 2);
        correlator.observe(occurrence("u1", "1", "A", "a", 0));
        correlator.observe(occurrence("u1", "1", "B", "b", 1));
        assert!(
            correlator
                .observe(occurrence("u1", "1", "A", "a", 2))
                .repeat
        );
        // C evicts B, the least recently seen.
        correlator.observe(occurrence("u1", "1", "C", "c", 3));
        assert!(
            correlator
                .observe(occurrence("u1", "1", "A", "a", 4))
                .repeat
        );
        assert!(
            !correlator
                .observe(occurrence("u1", "1", "B", "b", 5))
                .repeat
        );
    }

    #[test]
    fn node_events_go_to_the_default_namespace() {
        let mut correlator = EventCorrelator::new(reporter(), 2);
        let node = ObjectReference {
            kind: Some("Node".into()),
            name: Some("n1".into()),
            uid: Some("n1".into()),
            ..ObjectReference::default()
        };
        let correlated = correlator.observe(Occurrence {
            involved: node,
            type_: EventType::Normal,
            reason: "NodeReady".into(),
            message: "Node n1 status is now: NodeReady".into(),
            time: Timestamp::from_second(1_700_000_000).expect("time"),
        });
        assert_eq!(
            correlated.event.metadata.namespace.as_deref(),
            Some("default")
        );
        assert_eq!(
            correlated.event.metadata.name.as_deref(),
            Some("n1.17979cfe362a0000")
        );
    }

    #[test]
    fn a_control_plane_component_is_its_own_instance() {
        let scheduler = Reporter {
            component: "default-scheduler".into(),
            host: None,
        };
        let mut correlator = EventCorrelator::new(scheduler, 2);
        let event = correlator
            .observe(occurrence("u1", "1", "Scheduled", "assigned", 0))
            .event;
        let json = serde_json::to_value(&event).expect("json");
        assert_eq!(
            json["source"],
            serde_json::json!({"component": "default-scheduler"})
        );
        assert_eq!(json["reportingInstance"], "default-scheduler");
    }
}
