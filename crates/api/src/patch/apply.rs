//! Server-side apply (`application/apply-patch+yaml`) and the field ownership every write records,
//! after k8s.io/apimachinery's field manager and structured-merge-diff's `merge.Updater`.
//!
//! Every manager owns a set of fields (`metadata.managedFields`). An apply merges the configuration
//! into the live object and makes the applier own exactly the fields it applied; fields it applied
//! before and omits now are removed unless another manager owns them. Changing a field another
//! manager owns is a conflict, unless forced, which moves the ownership. Updates (create, PUT,
//! non-apply PATCH) give their manager the fields they changed and take them from the others.

use std::fmt;

use serde_json::{Map, Value};

use super::fieldset::{self, FieldSet};
use super::managed::{self, Entry, Operation};
use super::schema::KindSchema;
use super::typed::{self, Comparison};
use crate::validation::Cause;

const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// One field an apply would take from another manager.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// The manager as kube names it: `"kubectl"`, or `"kubectl-client-side-apply" using apps/v1`.
    pub manager: String,
    /// The field: `.spec.replicas`, `.spec.template.spec.containers[name="app"].image`.
    pub field: String,
}

/// The conflicts that fail an apply (409 Conflict).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyConflicts {
    pub conflicts: Vec<Conflict>,
}

impl ApplyConflicts {
    /// The `details.causes` of the 409 Status: reason `FieldManagerConflict`.
    pub fn causes(&self) -> Vec<Cause> {
        self.conflicts
            .iter()
            .map(|c| Cause {
                reason: "FieldManagerConflict",
                field: c.field.clone(),
                message: format!("conflict with {}", c.manager),
            })
            .collect()
    }
}

impl fmt::Display for ApplyConflicts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let [c] = self.conflicts.as_slice() {
            return write!(
                f,
                "Apply failed with 1 conflict: conflict with {}: {}",
                c.manager, c.field
            );
        }
        let mut managers: Vec<&str> = self.conflicts.iter().map(|c| c.manager.as_str()).collect();
        managers.sort_unstable();
        managers.dedup();
        let mut lines = Vec::new();
        for m in managers {
            lines.push(format!("conflicts with {m}:"));
            for c in self.conflicts.iter().filter(|c| c.manager == m) {
                lines.push(format!("- {}", c.field));
            }
        }
        write!(
            f,
            "Apply failed with {} conflicts: {}",
            self.conflicts.len(),
            lines.join("\n")
        )
    }
}

/// Why an apply failed. [`ApplyError::code`] is the HTTP status kube-apiserver answers with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    /// Fields owned by other managers would change (409 Conflict).
    #[error("{0}")]
    Conflicts(ApplyConflicts),
    /// The request is malformed: wrong version, `managedFields` set, not an object (400).
    #[error("{0}")]
    BadRequest(String),
    /// The configuration or the live object cannot be typed: duplicate or unidentifiable list items,
    /// undecodable managedFields. kube-apiserver answers these with 500.
    #[error("{0}")]
    Invalid(String),
}

impl ApplyError {
    pub fn code(&self) -> u16 {
        match self {
            Self::Conflicts(_) => 409,
            Self::BadRequest(_) => 400,
            Self::Invalid(_) => 500,
        }
    }
}

/// Fields no manager owns: identity and bookkeeping (kube's `stripMetaManager`).
fn strip(set: FieldSet) -> FieldSet {
    let mut drop = FieldSet::default();
    for p in [
        &["f:apiVersion"][..],
        &["f:kind"],
        &["f:metadata"],
        &["f:metadata", "f:name"],
        &["f:metadata", "f:namespace"],
        &["f:metadata", "f:creationTimestamp"],
        &["f:metadata", "f:selfLink"],
        &["f:metadata", "f:uid"],
        &["f:metadata", "f:clusterName"],
        &["f:metadata", "f:generation"],
        &["f:metadata", "f:managedFields"],
        &["f:metadata", "f:resourceVersion"],
    ] {
        let p: Vec<String> = p.iter().map(|s| s.to_string()).collect();
        drop.insert(&p);
    }
    set.difference(&drop)
}

/// The top-level field a request to `subresource` cannot change, and so never owns (the reset fields
/// of kube's strategies): `status` for the main resource, `spec` for `status`.
fn reset_field(subresource: &str) -> &'static str {
    if subresource == "status" {
        "f:spec"
    } else {
        "f:status"
    }
}

fn without_managed_fields(obj: &Value) -> Value {
    let mut obj = obj.clone();
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("managedFields");
    }
    obj
}

/// `namespace/name; group/version, Kind=kind`, as kube-apiserver names objects in these errors.
fn describe_object(obj: &Value) -> String {
    let text = |p: &str| {
        obj.pointer(p)
            .and_then(Value::as_str)
            .unwrap_or("<unknown>")
    };
    let api_version = text("/apiVersion");
    let gv = if api_version.contains('/') {
        api_version.to_string()
    } else {
        format!("/{api_version}")
    };
    format!(
        "{}/{}; {gv}, Kind={}",
        text("/metadata/namespace"),
        text("/metadata/name"),
        text("/kind")
    )
}

/// The ownership change of one write (structured-merge-diff's `update`): compares `old` with `new`
/// and takes the changed fields from every manager but `except`. Unless `force`, fields of other
/// managers that would change are returned as conflicts and nothing changes.
fn take_changed_fields(
    entries: &mut [Entry],
    cmp: &Comparison,
    except: Option<usize>,
    force: bool,
) -> Result<(), Vec<(usize, FieldSet)>> {
    let changed = cmp.modified.union(&cmp.added);
    let conflicts: Vec<(usize, FieldSet)> = entries
        .iter()
        .enumerate()
        .filter(|(i, _)| Some(*i) != except)
        .map(|(i, e)| (i, e.set.intersection(&changed)))
        .filter(|(_, c)| !c.is_empty())
        .collect();
    if !force && !conflicts.is_empty() {
        return Err(conflicts);
    }
    for (i, e) in entries.iter_mut().enumerate() {
        if Some(i) == except {
            continue;
        }
        e.set = e.set.difference(&changed).difference(&cmp.removed);
    }
    // Entries left empty stay in place (indices remain valid); encoding drops them.
    Ok(())
}

/// Who writes: an Update manager's identity.
struct Writer<'a> {
    manager: &'a str,
    api_version: &'a str,
    subresource: &'a str,
}

/// Records an Update by `writer` (kube's field manager `Update`): the fields that changed from
/// `old` to `new` pass to the writer. Used on create, PUT and non-apply PATCH.
fn update_ownership(
    entries: &mut Vec<Entry>,
    old: &Value,
    new: &Value,
    schema: &KindSchema,
    writer: &Writer<'_>,
    now: &str,
) {
    let Writer {
        manager,
        api_version,
        subresource,
    } = *writer;
    let cmp = typed::compare(
        &typed::with_skeleton(old, schema),
        &typed::with_skeleton(new, schema),
        schema,
    )
    .without(reset_field(subresource));
    let _ = take_changed_fields(entries, &cmp, None, true);
    let taken = strip(cmp.modified.union(&cmp.added));
    if taken.is_empty() {
        return;
    }
    let manager = if manager.is_empty() {
        "unknown"
    } else {
        manager
    };
    match entries
        .iter_mut()
        .find(|e| e.is(manager, Operation::Update, api_version, subresource))
    {
        Some(e) => {
            e.set = e.set.union(&taken);
            e.time = Some(now.to_string());
        }
        None => entries.push(Entry {
            manager: manager.to_string(),
            operation: Operation::Update,
            api_version: api_version.to_string(),
            subresource: subresource.to_string(),
            time: Some(now.to_string()),
            set: taken,
        }),
    }
    managed::cap_updaters(entries);
}

/// Records field ownership for a create (`old` is `None`), PUT or non-apply PATCH by `manager`
/// (the `fieldManager` option, or the client's user agent) on the main resource or a subresource
/// (`Some("status")`). Returns `new` with its `metadata.managedFields` updated.
///
/// As in kube-apiserver, the request's own `managedFields` are taken when it sets them (an empty
/// list clears them), and an existing object that has none starts being tracked only at its first
/// apply.
pub fn record_update(
    old: Option<&Value>,
    new: &Value,
    manager: &str,
    subresource: Option<&str>,
    now: &str,
) -> Value {
    let kind = new.get("kind").and_then(Value::as_str).unwrap_or_default();
    let schema = KindSchema::for_kind_or_generic(kind);
    record_update_with(schema, old, new, manager, subresource, now)
}

/// [`record_update`] with the given schema: a custom resource's, built from its CRD
/// ([`KindSchema::custom`]).
pub fn record_update_with(
    schema: &KindSchema,
    old: Option<&Value>,
    new: &Value,
    manager: &str,
    subresource: Option<&str>,
    now: &str,
) -> Value {
    let api_version = new
        .get("apiVersion")
        .or_else(|| old.and_then(|o| o.get("apiVersion")))
        .and_then(Value::as_str)
        .unwrap_or(schema.api_version())
        .to_string();
    let subresource = subresource.unwrap_or_default();
    let live_entries = || {
        old.map(|o| managed::decode(o).unwrap_or_default())
            .unwrap_or_default()
    };
    let mut entries = if !subresource.is_empty() {
        live_entries()
    } else if managed::is_reset(new) {
        Vec::new()
    } else {
        match managed::decode(new) {
            Ok(e) if !e.is_empty() => e,
            _ => live_entries(),
        }
    };
    let mut out = without_managed_fields(new);
    if entries.is_empty() && old.is_some() {
        managed::encode(&mut out, &entries);
        return out;
    }
    let old = old.map_or_else(|| Value::Object(Map::new()), without_managed_fields);
    let writer = Writer {
        manager,
        api_version: &api_version,
        subresource,
    };
    update_ownership(&mut entries, &old, &out, schema, &writer, now);
    managed::encode(&mut out, &entries);
    out
}

/// Server-side apply of the configuration `applied` by `manager` to `live` (`None` creates).
/// Returns the object to store, with `metadata.managedFields` updated; when nothing but ownership
/// changed it is `live` with new managedFields.
///
/// # Errors
/// [`ApplyError::Conflicts`] when fields owned by other managers would change and `force` is off;
/// [`ApplyError::BadRequest`] for a configuration of another version or one carrying
/// `managedFields`; [`ApplyError::Invalid`] when list items cannot be identified or repeat, or the
/// live managedFields cannot be decoded.
pub fn server_side_apply(
    live: Option<&Value>,
    applied: &Value,
    manager: &str,
    force: bool,
    kind: &str,
    now: &str,
) -> Result<Value, ApplyError> {
    let schema = KindSchema::for_kind_or_generic(kind);
    server_side_apply_with(schema, live, applied, manager, force, now)
}

/// [`server_side_apply`] with the given schema: a custom resource's, built from its CRD
/// ([`KindSchema::custom`]), whose lists and maps apply as its `x-kubernetes-list-type`,
/// `x-kubernetes-list-map-keys` and `x-kubernetes-map-type` say.
///
/// # Errors
/// As [`server_side_apply`].
pub fn server_side_apply_with(
    schema: &KindSchema,
    live: Option<&Value>,
    applied: &Value,
    manager: &str,
    force: bool,
    now: &str,
) -> Result<Value, ApplyError> {
    if !applied.is_object() {
        return Err(ApplyError::BadRequest(
            "the apply configuration must be an object".into(),
        ));
    }
    let api_version = applied
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    if !schema.api_version().is_empty() && api_version != schema.api_version() {
        return Err(ApplyError::BadRequest(format!(
            "Incorrect version specified in apply patch. Specified patch version: {api_version}, expected: {}",
            schema.api_version()
        )));
    }
    if applied
        .pointer("/metadata/managedFields")
        .is_some_and(|m| !m.is_null())
    {
        return Err(ApplyError::BadRequest(
            "metadata.managedFields must be nil".into(),
        ));
    }
    typed::validate(applied, schema).map_err(|e| {
        ApplyError::Invalid(format!(
            "failed to create typed patch object ({}): {e}",
            describe_object(applied)
        ))
    })?;
    let manager = if manager.is_empty() {
        "unknown"
    } else {
        manager
    };

    let mut entries = match live {
        Some(l) => managed::decode(l)
            .map_err(|e| ApplyError::Invalid(format!("failed to decode managed fields: {e}")))?,
        None => Vec::new(),
    };
    let live_obj = live.map_or_else(|| Value::Object(Map::new()), without_managed_fields);
    if entries.is_empty()
        && let Some(l) = live
    {
        // Fields set before the first apply belong to a manager of their own.
        let live_version = l
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or(&api_version)
            .to_string();
        let writer = Writer {
            manager: "before-first-apply",
            api_version: &live_version,
            subresource: "",
        };
        update_ownership(
            &mut entries,
            &Value::Object(Map::new()),
            &live_obj,
            schema,
            &writer,
            now,
        );
    }

    let mut merged = typed::merge(&live_obj, applied, schema);
    let applied_set = strip(typed::field_set(applied, schema)).without(reset_field(""));
    let last = entries
        .iter()
        .position(|e| e.is(manager, Operation::Apply, &api_version, ""))
        .map(|i| entries.remove(i));
    entries.push(Entry {
        manager: manager.to_string(),
        operation: Operation::Apply,
        api_version: api_version.clone(),
        subresource: String::new(),
        time: last.as_ref().and_then(|l| l.time.clone()),
        set: applied_set,
    });
    let me = entries.len() - 1;

    // Fields applied last time and not now go, unless some manager still owns them.
    if let Some(last) = last.filter(|l| !l.set.is_empty()) {
        let owned = entries
            .iter()
            .fold(FieldSet::default(), |acc, e| acc.union(&e.set));
        let gone = last
            .set
            .with_fields_as_members()
            .difference(&owned.with_fields_as_members());
        merged = typed::remove(&merged, &gone, schema).unwrap_or_else(|| Value::Object(Map::new()));
    }

    let cmp = typed::compare(
        &typed::with_skeleton(&live_obj, schema),
        &typed::with_skeleton(&merged, schema),
        schema,
    )
    .without(reset_field(""));
    if let Err(conflicts) = take_changed_fields(&mut entries, &cmp, Some(me), force) {
        let allowed = (manager == "kubectl")
            .then(|| allowed_by_last_applied(&live_obj, schema, &api_version))
            .flatten();
        let remaining: Vec<(usize, FieldSet)> = conflicts
            .into_iter()
            .map(|(i, set)| match &allowed {
                Some(a) => (i, set.difference(a)),
                None => (i, set),
            })
            .filter(|(_, set)| !set.is_empty())
            .collect();
        if !remaining.is_empty() {
            return Err(ApplyError::Conflicts(describe_conflicts(
                &entries, remaining,
            )));
        }
        // Client-side applied fields that still hold their last-applied value pass to kubectl.
        let _ = take_changed_fields(&mut entries, &cmp, Some(me), true);
    }

    let changed = {
        let mut cleaned = merged.clone();
        typed::drop_nulls(&mut cleaned);
        cleaned != live_obj
    };
    let mut out = if changed || live.is_none() {
        entries[me].time = Some(now.to_string());
        merged
    } else {
        live_obj.clone()
    };
    if manager == "kubectl" {
        sync_last_applied(&mut out, applied);
    }
    typed::drop_nulls(&mut out);
    managed::encode(&mut out, &entries);
    Ok(out)
}

fn describe_conflicts(entries: &[Entry], conflicts: Vec<(usize, FieldSet)>) -> ApplyConflicts {
    let conflicts = conflicts
        .into_iter()
        .flat_map(|(i, set)| {
            let manager = entries[i].describe();
            set.paths().into_iter().map(move |p| Conflict {
                manager: manager.clone(),
                field: fieldset::display(&p),
            })
        })
        .collect();
    ApplyConflicts { conflicts }
}

/// The fields a client-side apply set that still hold the value it applied: `kubectl apply
/// --server-side` may take them over without conflict (kube's `lastAppliedManager`).
fn allowed_by_last_applied(
    live: &Value,
    schema: &KindSchema,
    api_version: &str,
) -> Option<FieldSet> {
    let text = live
        .pointer("/metadata/annotations")?
        .get(LAST_APPLIED)?
        .as_str()
        .filter(|s| !s.is_empty())?;
    let last: Value = serde_json::from_str(text).ok()?;
    if last.get("apiVersion").and_then(Value::as_str) != Some(api_version) {
        return None;
    }
    typed::validate(&last, schema).ok()?;
    let cmp = typed::compare(&last, live, schema);
    Some(
        typed::field_set(&last, schema)
            .difference(&cmp.modified)
            .difference(&cmp.added)
            .difference(&cmp.removed),
    )
}

/// Keeps the client-side apply annotation in step when `kubectl` applies server-side.
fn sync_last_applied(obj: &mut Value, applied: &Value) {
    let has = obj
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(LAST_APPLIED))
        .and_then(Value::as_str)
        .is_some_and(|s| !s.is_empty());
    if !has {
        return;
    }
    let mut config = applied.clone();
    if let Some(a) = config
        .pointer_mut("/metadata/annotations")
        .and_then(Value::as_object_mut)
    {
        a.remove(LAST_APPLIED);
    }
    if let Some(a) = obj
        .pointer_mut("/metadata/annotations")
        .and_then(Value::as_object_mut)
    {
        a.insert(LAST_APPLIED.into(), Value::String(config.to_string()));
    }
}
