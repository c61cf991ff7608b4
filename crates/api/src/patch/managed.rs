//! `metadata.managedFields`: which manager owns which fields, decoded into field sets and encoded
//! back the way kube-apiserver writes them.

use serde_json::{Map, Value};

use super::fieldset::FieldSet;

/// The operation a managedFields entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Operation {
    Apply,
    Update,
}

impl Operation {
    fn as_str(self) -> &'static str {
        match self {
            Self::Apply => "Apply",
            Self::Update => "Update",
        }
    }
}

/// One managedFields entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub manager: String,
    pub operation: Operation,
    pub api_version: String,
    pub subresource: String,
    pub time: Option<String>,
    pub set: FieldSet,
}

impl Entry {
    /// Whether the entry belongs to this manager. Appliers are one manager whatever the version they
    /// applied at; updaters are one per API version (kube's manager identifier).
    pub fn is(
        &self,
        manager: &str,
        operation: Operation,
        api_version: &str,
        subresource: &str,
    ) -> bool {
        self.manager == manager
            && self.operation == operation
            && self.subresource == subresource
            && (operation == Operation::Apply || self.api_version == api_version)
    }

    /// The manager as conflict messages name it: `"kubectl"`, or `"kubectl-edit" using apps/v1`.
    pub fn describe(&self) -> String {
        let mut s = quote(&self.manager);
        if !self.subresource.is_empty() {
            s.push_str(&format!(" with subresource {}", quote(&self.subresource)));
        }
        if self.operation == Operation::Update {
            s.push_str(&format!(" using {}", self.api_version));
        }
        s
    }

    fn seconds(&self) -> i64 {
        self.time
            .as_deref()
            .and_then(|t| t.parse::<jiff::Timestamp>().ok())
            .map_or(0, |t| t.as_second())
    }

    fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("manager".into(), Value::String(self.manager.clone()));
        m.insert("operation".into(), self.operation.as_str().into());
        m.insert("apiVersion".into(), Value::String(self.api_version.clone()));
        if let Some(t) = &self.time {
            m.insert("time".into(), Value::String(t.clone()));
        }
        m.insert("fieldsType".into(), "FieldsV1".into());
        m.insert("fieldsV1".into(), self.set.to_fields_v1());
        if !self.subresource.is_empty() {
            m.insert(
                "subresource".into(),
                Value::String(self.subresource.clone()),
            );
        }
        Value::Object(m)
    }
}

/// Go's `%q` for the plain strings manager names are.
fn quote(s: &str) -> String {
    Value::String(s.to_string()).to_string()
}

/// Decodes `metadata.managedFields` of `obj`. A missing or null list is empty.
pub(crate) fn decode(obj: &Value) -> Result<Vec<Entry>, String> {
    let entries = match obj.pointer("/metadata/managedFields") {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(a)) => a,
        Some(_) => return Err("managedFields must be a list".into()),
    };
    let mut out: Vec<Entry> = Vec::with_capacity(entries.len());
    for (i, e) in entries.iter().enumerate() {
        let text = |k: &str| {
            e.get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let operation = match text("operation").as_str() {
            "Apply" => Operation::Apply,
            "Update" => Operation::Update,
            _ => return Err("operation must be `Apply` or `Update`".into()),
        };
        let api_version = text("apiVersion");
        if api_version.is_empty() {
            return Err("apiVersion must not be empty".into());
        }
        match text("fieldsType").as_str() {
            "FieldsV1" => {}
            "" => return Err(format!("missing fieldsType in managed fields entry {i}")),
            other => {
                return Err(format!(
                    "invalid fieldsType {other:?} in managed fields entry {i}"
                ));
            }
        }
        let set = match e.get("fieldsV1") {
            None | Some(Value::Null) => FieldSet::default(),
            Some(v) => {
                FieldSet::from_fields_v1(v).map_err(|err| format!("error decoding set: {err}"))?
            }
        };
        let entry = Entry {
            manager: text("manager"),
            operation,
            subresource: text("subresource"),
            time: e.get("time").and_then(Value::as_str).map(String::from),
            api_version,
            set,
        };
        // A later entry of the same manager replaces an earlier one.
        out.retain(|o| {
            !o.is(
                &entry.manager,
                entry.operation,
                &entry.api_version,
                &entry.subresource,
            )
        });
        out.push(entry);
    }
    Ok(out)
}

/// Whether a request's `managedFields` asks to clear them: an empty list, or one empty entry.
pub(crate) fn is_reset(obj: &Value) -> bool {
    match obj.pointer("/metadata/managedFields") {
        Some(Value::Array(a)) => {
            a.is_empty() || (a.len() == 1 && a[0].as_object().is_some_and(Map::is_empty))
        }
        _ => false,
    }
}

/// Writes `entries` into `obj.metadata.managedFields`, ordered as kube-apiserver orders them
/// (appliers first, then oldest first); no entries removes the field.
pub(crate) fn encode(obj: &mut Value, entries: &[Entry]) {
    let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) else {
        return;
    };
    let mut sorted: Vec<&Entry> = entries.iter().filter(|e| !e.set.is_empty()).collect();
    if sorted.is_empty() {
        meta.remove("managedFields");
        return;
    }
    sorted.sort_by(|p, q| {
        p.operation
            .cmp(&q.operation)
            .then(p.seconds().cmp(&q.seconds()))
            .then(p.manager.cmp(&q.manager))
            .then(p.api_version.cmp(&q.api_version))
            .then(p.subresource.cmp(&q.subresource))
    });
    meta.insert(
        "managedFields".into(),
        Value::Array(sorted.into_iter().map(Entry::to_json).collect()),
    );
}

/// At most this many Update entries are kept; older ones merge into `ancient-changes`.
const MAX_UPDATE_MANAGERS: usize = 10;

/// Merges the oldest Update entries into one `ancient-changes` entry per API version until at most
/// [`MAX_UPDATE_MANAGERS`] remain.
pub(crate) fn cap_updaters(entries: &mut Vec<Entry>) {
    let mut updaters: Vec<usize> = (0..entries.len())
        .filter(|&i| entries[i].operation == Operation::Update)
        .collect();
    if updaters.len() <= MAX_UPDATE_MANAGERS {
        return;
    }
    updaters.sort_by(|&a, &b| {
        let (a, b) = (&entries[a], &entries[b]);
        a.seconds()
            .cmp(&b.seconds())
            .then_with(|| a.manager.cmp(&b.manager))
    });
    let mut remaining = updaters.len();
    let mut first_of_version: Vec<(String, usize)> = Vec::new();
    let mut merged_away = vec![false; entries.len()];
    for i in updaters {
        if remaining <= MAX_UPDATE_MANAGERS {
            break;
        }
        let version = entries[i].api_version.clone();
        let Some(&(_, first)) = first_of_version.iter().find(|(v, _)| *v == version) else {
            first_of_version.push((version, i));
            continue;
        };
        // The first entry of the version becomes the bucket; later ones fold into it.
        let folded = entries[i].clone();
        let bucket = &mut entries[first];
        bucket.manager = "ancient-changes".into();
        bucket.subresource.clear();
        bucket.set = bucket.set.union(&folded.set);
        bucket.time = folded.time;
        merged_away[i] = true;
        remaining -= 1;
    }
    let mut i = 0;
    entries.retain(|_| {
        let keep = !merged_away[i];
        i += 1;
        keep
    });
    // An existing bucket of the same version absorbs the new one.
    let mut j = 0;
    while j < entries.len() {
        let dup = (0..j).find(|&k| {
            entries[k].manager == "ancient-changes"
                && entries[j].manager == "ancient-changes"
                && entries[k].api_version == entries[j].api_version
                && entries[k].operation == Operation::Update
                && entries[j].operation == Operation::Update
        });
        match dup {
            Some(k) => {
                let e = entries.remove(j);
                entries[k].set = entries[k].set.union(&e.set);
                entries[k].time = e.time;
            }
            None => j += 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn decodes_and_encodes_in_kube_order() {
        let mut obj = json!({"metadata": {"managedFields": [
            {"manager": "kube-controller-manager", "operation": "Update", "apiVersion": "apps/v1",
             "time": "2024-01-01T00:00:02Z", "fieldsType": "FieldsV1",
             "fieldsV1": {"f:status": {"f:replicas": {}}}, "subresource": "status"},
            {"manager": "kubectl", "operation": "Apply", "apiVersion": "apps/v1",
             "time": "2024-01-01T00:00:03Z", "fieldsType": "FieldsV1",
             "fieldsV1": {"f:spec": {"f:replicas": {}}}},
            {"manager": "kubectl-create", "operation": "Update", "apiVersion": "apps/v1",
             "time": "2024-01-01T00:00:01Z", "fieldsType": "FieldsV1",
             "fieldsV1": {"f:spec": {"f:paused": {}}}}
        ]}});
        let entries = decode(&obj).expect("valid");
        assert_eq!(entries.len(), 3);
        assert_eq!(
            entries[0].describe(),
            "\"kube-controller-manager\" with subresource \"status\" using apps/v1"
        );
        assert_eq!(entries[1].describe(), "\"kubectl\"");
        encode(&mut obj, &entries);
        let managers: Vec<&str> = obj["metadata"]["managedFields"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e["manager"].as_str())
            .collect();
        assert_eq!(
            managers,
            ["kubectl", "kubectl-create", "kube-controller-manager"]
        );
    }

    #[test]
    fn rejects_malformed_entries() {
        let bad = |e: Value| decode(&json!({"metadata": {"managedFields": [e]}})).is_err();
        assert!(bad(
            json!({"manager": "m", "operation": "Patch", "apiVersion": "v1", "fieldsType": "FieldsV1"})
        ));
        assert!(bad(
            json!({"manager": "m", "operation": "Update", "fieldsType": "FieldsV1"})
        ));
        assert!(bad(
            json!({"manager": "m", "operation": "Update", "apiVersion": "v1"})
        ));
        assert!(is_reset(&json!({"metadata": {"managedFields": [{}]}})));
        assert!(!is_reset(&json!({"metadata": {}})));
    }

    #[test]
    fn caps_update_managers_into_ancient_changes() {
        let mut entries: Vec<Entry> = (0..12)
            .map(|i| {
                let mut set = FieldSet::default();
                set.insert(&[format!("f:field{i}")]);
                Entry {
                    manager: format!("m{i:02}"),
                    operation: Operation::Update,
                    api_version: "v1".into(),
                    subresource: String::new(),
                    time: Some(format!("2024-01-01T00:00:{i:02}Z")),
                    set,
                }
            })
            .collect();
        cap_updaters(&mut entries);
        assert_eq!(entries.len(), 10);
        let ancient = entries
            .iter()
            .find(|e| e.manager == "ancient-changes")
            .expect("bucket");
        assert_eq!(ancient.set.paths().len(), 3);
        assert!(
            entries
                .iter()
                .all(|e| e.manager != "m00" && e.manager != "m01" && e.manager != "m02")
        );
    }
}
