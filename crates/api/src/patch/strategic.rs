//! Strategic merge patch (`application/strategic-merge-patch+json`), applied the way
//! k8s.io/apimachinery/pkg/util/strategicpatch applies it on the server: JSON merge patch, except that
//! lists tagged `patchStrategy:"merge"` merge by their merge key (or as sets of primitives), plus the
//! `$patch`, `$retainKeys`, `$setElementOrder/<list>` and `$deleteFromPrimitiveList/<list>` directives.

use serde_json::{Map, Value};

use super::element_order::{
    live_order_seen_by_kube, normalize_element_order, partition, position_by_key,
    validate_against_order,
};
use super::schema::{KindSchema, MergeSchema, PatchMeta, PatchStrategy};

pub(super) const DIRECTIVE: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
pub(super) const SET_ELEMENT_ORDER: &str = "$setElementOrder";
const DELETE_FROM_PRIMITIVE_LIST: &str = "$deleteFromPrimitiveList";

/// Why a strategic merge patch could not be applied. [`PatchError::code`] is the HTTP status
/// kube-apiserver answers with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatchError {
    /// A malformed document or directive (400 BadRequest).
    #[error("{0}")]
    BadRequest(String),
    /// A list of lists, which strategic merge patch cannot merge (422).
    #[error("{0}")]
    Unprocessable(String),
    /// A patch that does not fit the object, e.g. a list item without its merge key or a value of the
    /// wrong type (422). kube-apiserver passes these through unclassified, so it answers 500 with the
    /// same message; herd answers bad input with a 4xx, never a server error.
    #[error("{0}")]
    Invalid(String),
    /// The kind has no strategic merge patch schema (415, as for custom resources).
    #[error("strategic merge patch format is not supported")]
    UnsupportedKind,
}

impl PatchError {
    /// The HTTP status code kube-apiserver uses for this error.
    pub fn code(&self) -> u16 {
        match self {
            Self::BadRequest(_) => 400,
            Self::Unprocessable(_) => 422,
            Self::Invalid(_) => 422,
            Self::UnsupportedKind => 415,
        }
    }
}

fn bad_json() -> PatchError {
    PatchError::BadRequest("invalid JSON document".into())
}
fn bad_primitive_list() -> PatchError {
    PatchError::BadRequest("invalid patch format of primitive list".into())
}
fn bad_retain_keys() -> PatchError {
    PatchError::BadRequest("invalid patch format of retainKeys".into())
}
fn bad_set_element_order() -> PatchError {
    PatchError::BadRequest("invalid patch format of setElementOrder list".into())
}
pub(super) fn no_merge_key(item: &Value, key: &str) -> PatchError {
    PatchError::Invalid(format!(
        "map: {} does not contain declared merge key: {key}",
        go_fmt(item)
    ))
}
pub(super) fn bad_arg(expected: &str, actual: &Value) -> PatchError {
    PatchError::Invalid(format!(
        "expected a {expected}, but received a {}",
        go_type(actual)
    ))
}
fn bad_patch_type(directive: &Value, map: &Map<String, Value>) -> PatchError {
    let directive = directive
        .as_str()
        .map_or_else(|| go_fmt(directive), str::to_string);
    PatchError::Invalid(format!(
        "unknown patch type: {directive} in map: {}",
        go_fmt(&Value::Object(map.clone()))
    ))
}

/// Applies a strategic merge `patch` to `original`, an object of `kind`.
///
/// # Errors
/// [`PatchError::UnsupportedKind`] for kinds without a schema, otherwise as [`strategic_merge_with`].
pub fn strategic_merge(original: &Value, patch: &Value, kind: &str) -> Result<Value, PatchError> {
    let schema = KindSchema::for_kind(kind).ok_or(PatchError::UnsupportedKind)?;
    strategic_merge_with(original, patch, schema)
}

/// Applies a strategic merge `patch` to `original` with the patch metadata of `schema`.
///
/// # Errors
/// A [`PatchError`] when a document is not an object, a directive is malformed, or the patch does not
/// fit the object (for instance a merged list item without its merge key).
pub fn strategic_merge_with(
    original: &Value,
    patch: &Value,
    schema: &dyn MergeSchema,
) -> Result<Value, PatchError> {
    let original = match original {
        Value::Object(m) => m.clone(),
        Value::Null => Map::new(),
        _ => return Err(bad_json()),
    };
    let patch = match patch {
        Value::Object(m) => m.clone(),
        Value::Null => Map::new(),
        _ => return Err(bad_json()),
    };
    let mut path = Vec::new();
    merge_map(original, patch, schema, &mut path).map(Value::Object)
}

/// The patch metadata of field `key` below `path`.
fn meta_of<'s>(schema: &'s dyn MergeSchema, path: &mut Vec<String>, key: &str) -> PatchMeta<'s> {
    path.push(key.to_string());
    let meta = schema.patch_meta(path);
    path.pop();
    meta
}

fn merge_map(
    mut original: Map<String, Value>,
    mut patch: Map<String, Value>,
    schema: &dyn MergeSchema,
    path: &mut Vec<String>,
) -> Result<Map<String, Value>, PatchError> {
    if let Some(directive) = patch.remove(DIRECTIVE) {
        return match directive.as_str() {
            // The patch replaces the map; directives inside it still apply to the (empty) original.
            Some("replace") => merge_map(Map::new(), patch, schema, path),
            Some("delete") => Ok(Map::new()),
            _ => Err(bad_patch_type(&directive, &patch)),
        };
    }
    apply_retain_keys(&mut original, &mut patch)?;
    apply_set_element_order(&mut original, &mut patch, schema, path)?;

    for (key, patch_v) in patch {
        let (key, delete_list) = match key.strip_prefix(DELETE_FROM_PRIMITIVE_LIST) {
            Some(rest) => match rest.strip_prefix('/') {
                Some(list) => (list.to_string(), true),
                None => return Err(bad_primitive_list()),
            },
            None => (key, false),
        };
        if patch_v.is_null() {
            original.remove(&key);
            continue;
        }
        let original_v = match original.remove(&key) {
            Some(o) if std::mem::discriminant(&o) == std::mem::discriminant(&patch_v) => o,
            // Absent or of another JSON type: the patch value is taken, except from a deletion list.
            other => {
                let v = if delete_list {
                    other
                } else {
                    new_value(patch_v)
                };
                if let Some(v) = v {
                    original.insert(key, v);
                }
                continue;
            }
        };
        let merged = match (original_v, patch_v) {
            (Value::Object(o), Value::Object(p)) => {
                let meta = meta_of(schema, path, &key);
                if meta.strategy == PatchStrategy::Replace {
                    Some(clean(Value::Object(p)))
                } else {
                    path.push(key.clone());
                    let merged = merge_map(o, p, schema, path);
                    path.pop();
                    Some(Value::Object(merged?))
                }
            }
            (Value::Array(o), Value::Array(p)) => {
                let meta = meta_of(schema, path, &key);
                path.push(key.clone());
                let merged = merge_list(o, p, meta, delete_list, schema, path);
                path.pop();
                Some(Value::Array(merged?))
            }
            (_, patch_v) => new_value(patch_v),
        };
        if let Some(v) = merged {
            original.insert(key, v);
        }
    }
    Ok(original)
}

/// `$retainKeys`: drops the original's keys missing from the list; every patched key must be listed.
fn apply_retain_keys(
    original: &mut Map<String, Value>,
    patch: &mut Map<String, Value>,
) -> Result<(), PatchError> {
    let Some(retain) = patch.remove(RETAIN_KEYS) else {
        return Ok(());
    };
    let Value::Array(retain) = retain else {
        return Err(bad_retain_keys());
    };
    let listed = |k: &str| retain.iter().any(|r| r.as_str() == Some(k));
    for (k, v) in patch.iter() {
        if v.is_null()
            || k.starts_with(DELETE_FROM_PRIMITIVE_LIST)
            || k.starts_with(SET_ELEMENT_ORDER)
        {
            continue;
        }
        if !listed(k) {
            return Err(bad_retain_keys());
        }
    }
    original.retain(|k, _| listed(k));
    Ok(())
}

/// `$setElementOrder/<list>`: merges the list and orders it as the directive says, the live object's
/// other items interleaved where they stood.
fn apply_set_element_order(
    original: &mut Map<String, Value>,
    patch: &mut Map<String, Value>,
    schema: &dyn MergeSchema,
    path: &mut Vec<String>,
) -> Result<(), PatchError> {
    let directives: Vec<String> = patch
        .keys()
        .filter(|k| k.starts_with(SET_ELEMENT_ORDER))
        .cloned()
        .collect();
    for directive in directives {
        let Some(order) = patch.remove(&directive) else {
            continue;
        };
        let Value::Array(order) = order else {
            return Err(bad_arg("[]interface {}", &order));
        };
        let key = match directive[SET_ELEMENT_ORDER.len()..].strip_prefix('/') {
            Some(k) => k.to_string(),
            None => return Err(bad_set_element_order()),
        };
        let original_list = match original.get(&key) {
            Some(Value::Array(l)) => Some(l.clone()),
            Some(other) => return Err(bad_arg("[]interface {}", other)),
            None => None,
        };
        let patch_list = match patch.get(&key) {
            Some(Value::Array(l)) => Some(l.clone()),
            Some(other) => return Err(bad_arg("[]interface {}", other)),
            None => None,
        };
        let meta = meta_of(schema, path, &key);
        validate_against_order(patch_list.as_deref().unwrap_or(&[]), &order, meta.merge_key)?;
        let merged = match (&original_list, &patch_list) {
            (Some(o), None) => o.clone(),
            (None, Some(p)) => p.iter().cloned().filter_map(new_value).collect(),
            (Some(o), Some(p)) => {
                path.push(key.clone());
                let merged = merge_list_field(o.clone(), p.clone(), meta, schema, path);
                path.pop();
                merged?
            }
            (None, None) => continue,
        };
        let (in_order, server_only) = partition(merged, &order, meta.merge_key)?;
        let server_order = match (original_list, &patch_list, meta.merge_key) {
            (Some(o), Some(p), Some(key)) if meta.strategy == PatchStrategy::Merge => {
                live_order_seen_by_kube(o, p, key)
            }
            (o, _, _) => o.unwrap_or_default(),
        };
        let both =
            normalize_element_order(in_order, server_only, &order, &server_order, meta.merge_key)?;
        original.insert(key.clone(), Value::Array(both));
        patch.remove(&key);
    }
    Ok(())
}

/// A list field that both sides have: merged when tagged `merge`, replaced otherwise.
fn merge_list_field(
    original: Vec<Value>,
    patch: Vec<Value>,
    meta: PatchMeta<'_>,
    schema: &dyn MergeSchema,
    path: &mut Vec<String>,
) -> Result<Vec<Value>, PatchError> {
    merge_list(original, patch, meta, false, schema, path)
}

fn merge_list(
    original: Vec<Value>,
    patch: Vec<Value>,
    meta: PatchMeta<'_>,
    delete_list: bool,
    schema: &dyn MergeSchema,
    path: &mut Vec<String>,
) -> Result<Vec<Value>, PatchError> {
    if meta.strategy != PatchStrategy::Merge && !delete_list {
        return Ok(patch.into_iter().map(clean).collect());
    }
    if original.is_empty() && patch.is_empty() {
        return Ok(original);
    }
    let of_maps = element_kind(&original, &patch)? == Kind::Object;
    if !of_maps {
        if delete_list {
            return Ok(original
                .into_iter()
                .filter(|v| !patch.contains(v))
                .collect());
        }
        let mut merged: Vec<Value> = Vec::with_capacity(original.len() + patch.len());
        for v in original.iter().chain(&patch) {
            if !merged.contains(v) {
                merged.push(v.clone());
            }
        }
        let (in_patch, server_only) = partition(merged, &patch, None)?;
        return normalize_element_order(in_patch, server_only, &patch, &original, None);
    }
    let Some(key) = meta.merge_key else {
        return Err(PatchError::Invalid(format!(
            "cannot merge lists without merge key for {}",
            path.join(".")
        )));
    };
    let (original, patch) = apply_list_directives(original, patch, key)?;
    let mut merged = original.clone();
    for item in &patch {
        let value = item.get(key).ok_or_else(|| no_merge_key(item, key))?;
        match position_by_key(&merged, key, value)? {
            Some(i) => {
                let (Value::Object(o), Value::Object(p)) = (merged[i].take(), item.clone()) else {
                    return Err(bad_arg("map[string]interface {}", item));
                };
                merged[i] = Value::Object(merge_map(o, p, schema, path)?);
            }
            None => merged.extend(new_value(item.clone())),
        }
    }
    let (in_patch, server_only) = partition(merged, &patch, Some(key))?;
    normalize_element_order(in_patch, server_only, &patch, &original, Some(key))
}

/// Handles `$patch: delete` (drop items with that key) and `$patch: replace` (the list becomes the
/// patch's other items) inside a merged list of maps. Returns the original and the remaining patch.
fn apply_list_directives(
    mut original: Vec<Value>,
    patch: Vec<Value>,
    key: &str,
) -> Result<(Vec<Value>, Vec<Value>), PatchError> {
    let mut plain = Vec::with_capacity(patch.len());
    let mut replace = false;
    for item in patch {
        let Value::Object(map) = &item else {
            return Err(bad_arg("map[string]interface {}", &item));
        };
        let Some(directive) = map.get(DIRECTIVE) else {
            plain.push(item);
            continue;
        };
        match directive.as_str() {
            Some("delete") => {
                let value = map.get(key).ok_or_else(|| no_merge_key(&item, key))?;
                while let Some(i) = position_by_key(&original, key, value)? {
                    original.remove(i);
                }
            }
            Some("replace") => replace = true,
            Some("merge") => {
                return Err(PatchError::Invalid(
                    "merging lists cannot yet be specified in the patch".into(),
                ));
            }
            _ => return Err(bad_patch_type(directive, map)),
        }
    }
    if replace {
        Ok((
            plain.into_iter().filter_map(new_value).collect(),
            Vec::new(),
        ))
    } else {
        Ok((original, plain))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Object,
    Scalar(u8),
}

/// The common kind of the elements of both lists; lists of lists and mixed lists are errors.
fn element_kind(a: &[Value], b: &[Value]) -> Result<Kind, PatchError> {
    let mut kind = None;
    for v in a.iter().chain(b) {
        let k = match v {
            Value::Array(_) => {
                return Err(PatchError::Unprocessable(
                    "lists of lists are not supported".into(),
                ));
            }
            Value::Object(_) => Kind::Object,
            Value::Null => Kind::Scalar(0),
            Value::Bool(_) => Kind::Scalar(1),
            Value::Number(_) => Kind::Scalar(2),
            Value::String(_) => Kind::Scalar(3),
        };
        match kind {
            None => kind = Some(k),
            Some(prev) if prev != k => {
                return Err(PatchError::Invalid(format!(
                    "list element types are not identical: [{} {}]",
                    go_fmt(&Value::Array(a.to_vec())),
                    go_fmt(&Value::Array(b.to_vec()))
                )));
            }
            Some(_) => {}
        }
    }
    Ok(kind.unwrap_or(Kind::Scalar(0)))
}

/// A patch value that lands where the original has nothing to merge with: null fields are dropped,
/// maps carrying `$patch` vanish, and directive keys are removed. `None` when nothing is left.
fn new_value(v: Value) -> Option<Value> {
    match v {
        Value::Object(m) => {
            if m.contains_key(DIRECTIVE) {
                return None;
            }
            let m = m
                .into_iter()
                .filter(|(k, v)| !v.is_null() && !is_directive_key(k))
                .filter_map(|(k, v)| new_value(v).map(|v| (k, v)))
                .collect();
            Some(Value::Object(m))
        }
        Value::Array(a) => Some(Value::Array(a.into_iter().filter_map(new_value).collect())),
        other => Some(other),
    }
}

/// A value that replaces a field whole: directive keys and null fields are dropped, as decoding into
/// the Go type drops them.
fn clean(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .filter(|(k, v)| !v.is_null() && !is_directive_key(k))
                .map(|(k, v)| (k, clean(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(clean).collect()),
        other => other,
    }
}

fn is_directive_key(k: &str) -> bool {
    k == DIRECTIVE
        || k == RETAIN_KEYS
        || k.starts_with(SET_ELEMENT_ORDER)
        || k.starts_with(DELETE_FROM_PRIMITIVE_LIST)
}

/// Go's `%v` rendering of a JSON value, for error messages worded as kube-apiserver words them.
pub(super) fn go_fmt(v: &Value) -> String {
    match v {
        Value::Null => "<nil>".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        Value::Array(a) => format!("[{}]", a.iter().map(go_fmt).collect::<Vec<_>>().join(" ")),
        Value::Object(m) => format!(
            "map[{}]",
            m.iter()
                .map(|(k, v)| format!("{k}:{}", go_fmt(v)))
                .collect::<Vec<_>>()
                .join(" ")
        ),
    }
}

fn go_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "<nil>",
        Value::Bool(_) => "bool",
        Value::Number(_) => "float64",
        Value::String(_) => "string",
        Value::Array(_) => "[]interface {}",
        Value::Object(_) => "map[string]interface {}",
    }
}
