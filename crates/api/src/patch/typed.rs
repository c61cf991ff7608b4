//! Schema-aware walks over JSON objects for server-side apply, after structured-merge-diff's `typed`
//! package: the field set a value sets, the comparison of two values, the merge of an applied
//! configuration into a live object, and the removal of a field set from a value.
//!
//! Objects merge field by field unless atomic; lists are atomic unless the schema keys them
//! (`listType=map`) or makes them sets (`listType=set`), in which case each item is its own field.

use std::collections::{HashMap, HashSet};

use serde_json::{Map, Value};

use super::fieldset::{self, FieldPath, FieldSet};
use super::schema::{KindSchema, ListType};

/// The schema path of field `key` below `spath`.
fn child(spath: &str, key: &str) -> String {
    if spath.is_empty() {
        key.to_string()
    } else {
        format!("{spath}.{key}")
    }
}

fn with(path: &[String], pe: String) -> FieldPath {
    let mut p = path.to_vec();
    p.push(pe);
    p
}

/// The path element of an item of a keyed list or set.
fn item_element(list_type: ListType<'_>, item: &Value) -> Result<String, String> {
    match list_type {
        ListType::Map(keys) => {
            let Value::Object(fields) = item else {
                return Err("associative list with keys may not have non-map elements".into());
            };
            let mut key = Map::new();
            for k in keys {
                let v = match (fields.get(k.name.as_ref()), k.default.as_deref()) {
                    (Some(v), _) => v.clone(),
                    (None, Some(default)) => Value::String(default.into()),
                    (None, None) => {
                        return Err(format!(
                            "associative list with keys has an element that omits key field {:?} (and doesn't have default value)",
                            k.name
                        ));
                    }
                };
                key.insert(k.name.to_string(), v);
            }
            Ok(fieldset::key(key))
        }
        ListType::Set | ListType::Atomic => match item {
            Value::Object(_) => {
                Err("associative list without keys has an element that's a map type".into())
            }
            Value::Array(_) => {
                Err("associative list without keys has an element that's a list type".into())
            }
            scalar => Ok(fieldset::value(scalar)),
        },
    }
}

/// Checks what decoding an applied configuration into a typed value checks: every item of a keyed
/// list or set can be identified, and no two items share an identity.
pub(crate) fn validate(v: &Value, schema: &KindSchema) -> Result<(), String> {
    validate_at(v, schema, "", &[])
}

fn validate_at(v: &Value, schema: &KindSchema, spath: &str, path: &[String]) -> Result<(), String> {
    match v {
        Value::Array(items) => {
            let list_type = schema.list_type(spath);
            if list_type == ListType::Atomic {
                return Ok(());
            }
            let mut seen = HashSet::new();
            for (i, item) in items.iter().enumerate() {
                let pe = item_element(list_type, item)
                    .map_err(|e| format!("{}: element {i}: {e}", fieldset::display(path)))?;
                if !seen.insert(pe.clone()) {
                    return Err(format!(
                        "{}: duplicate entries for key {}",
                        fieldset::display(path),
                        fieldset::display(std::slice::from_ref(&pe))
                    ));
                }
                validate_at(item, schema, spath, &with(path, pe))?;
            }
            Ok(())
        }
        Value::Object(m) if !schema.is_atomic_object(spath) => {
            for (k, c) in m {
                validate_at(c, schema, &child(spath, k), &with(path, fieldset::field(k)))?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// The set of fields `v` sets: every scalar, atomic list or object, and keyed item.
pub(crate) fn field_set(v: &Value, schema: &KindSchema) -> FieldSet {
    let mut set = FieldSet::default();
    field_set_at(v, schema, "", &mut Vec::new(), &mut set);
    set
}

fn field_set_at(
    v: &Value,
    schema: &KindSchema,
    spath: &str,
    path: &mut Vec<String>,
    set: &mut FieldSet,
) {
    match v {
        Value::Array(items) => {
            let list_type = schema.list_type(spath);
            if list_type == ListType::Atomic {
                set.insert(path);
                return;
            }
            let elements: Vec<Option<String>> = items
                .iter()
                .map(|item| item_element(list_type, item).ok())
                .collect();
            let mut count: HashMap<&str, usize> = HashMap::new();
            for pe in elements.iter().flatten() {
                *count.entry(pe).or_default() += 1;
            }
            let mut duplicates_done = HashSet::new();
            for (item, pe) in items.iter().zip(&elements) {
                let Some(pe) = pe else { continue };
                path.push(pe.clone());
                if count.get(pe.as_str()).copied().unwrap_or(0) > 1 {
                    // Duplicated items are owned as a whole.
                    if duplicates_done.insert(pe.clone()) {
                        set.insert(path);
                    }
                } else {
                    field_set_at(item, schema, spath, path, set);
                    set.insert(path);
                }
                path.pop();
            }
        }
        Value::Object(m) => {
            if schema.is_atomic_object(spath) {
                set.insert(path);
                return;
            }
            for (k, c) in m {
                path.push(fieldset::field(k));
                field_set_at(c, schema, &child(spath, k), path, set);
                if c.is_null() || c.as_object().is_some_and(Map::is_empty) {
                    set.insert(path);
                }
                path.pop();
            }
        }
        _ => set.insert(path),
    }
}

/// What changed between two values.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Comparison {
    pub added: FieldSet,
    pub modified: FieldSet,
    pub removed: FieldSet,
}

impl Comparison {
    /// Drops the changes below the top-level field `pe` (the fields a request may not set).
    pub fn without(self, pe: &str) -> Comparison {
        Comparison {
            added: self.added.without(pe),
            modified: self.modified.without(pe),
            removed: self.removed.without(pe),
        }
    }
}

/// Compares `old` with `new`.
pub(crate) fn compare(old: &Value, new: &Value, schema: &KindSchema) -> Comparison {
    let mut cmp = Comparison::default();
    compare_at(Some(old), Some(new), schema, "", &mut Vec::new(), &mut cmp);
    cmp
}

fn is_empty_container(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => true,
        Some(Value::Array(a)) => a.is_empty(),
        Some(Value::Object(m)) => m.is_empty(),
        Some(_) => false,
    }
}

fn same_shape(l: &Value, r: &Value) -> bool {
    matches!(
        (l, r),
        (Value::Array(_), Value::Array(_)) | (Value::Object(_), Value::Object(_))
    ) || !(l.is_array() || l.is_object() || r.is_array() || r.is_object())
}

fn compare_at(
    l: Option<&Value>,
    r: Option<&Value>,
    schema: &KindSchema,
    spath: &str,
    path: &mut Vec<String>,
    cmp: &mut Comparison,
) {
    let leaf = |cmp: &mut Comparison, path: &[String]| match (l, r) {
        (None, Some(_)) => cmp.added.insert(path),
        (Some(_), None) => cmp.removed.insert(path),
        (Some(a), Some(b)) if a != b => cmp.modified.insert(path),
        _ => {}
    };
    let Some(shape) = r.or(l) else { return };
    if let (Some(a), Some(b)) = (l, r) {
        // A null field stands for an empty list or object of the other side's type (Go's nil slice
        // or map): its items are compared, the field itself is neither added nor removed.
        let empty = |v: &Value| match v {
            Value::Array(_) => Value::Array(Vec::new()),
            _ => Value::Object(Map::new()),
        };
        if a.is_null() && (b.is_array() || b.is_object()) {
            return compare_at(Some(&empty(b)), r, schema, spath, path, cmp);
        }
        if b.is_null() && (a.is_array() || a.is_object()) {
            return compare_at(l, Some(&empty(a)), schema, spath, path, cmp);
        }
        if !same_shape(a, b) {
            return leaf(cmp, path);
        }
    }
    let both_empty = is_empty_container(l) && is_empty_container(r);
    match shape {
        Value::Array(_) => {
            let list_type = schema.list_type(spath);
            if list_type == ListType::Atomic || both_empty {
                return leaf(cmp, path);
            }
            compare_items(l, r, list_type, schema, spath, path, cmp);
        }
        Value::Object(_) => {
            if schema.is_atomic_object(spath) || both_empty {
                return leaf(cmp, path);
            }
            let lm = l.and_then(Value::as_object);
            let rm = r.and_then(Value::as_object);
            let mut keys: Vec<&String> = lm.into_iter().flat_map(|m| m.keys()).collect();
            for k in rm.into_iter().flat_map(|m| m.keys()) {
                if !lm.is_some_and(|m| m.contains_key(k)) {
                    keys.push(k);
                }
            }
            for k in keys {
                path.push(fieldset::field(k));
                compare_at(
                    lm.and_then(|m| m.get(k)),
                    rm.and_then(|m| m.get(k)),
                    schema,
                    &child(spath, k),
                    path,
                    cmp,
                );
                path.pop();
            }
        }
        _ => return leaf(cmp, path),
    }
    // A whole object, list or item appeared or disappeared.
    match (l, r) {
        (None, Some(_)) => cmp.added.insert(path),
        (Some(_), None) => cmp.removed.insert(path),
        _ => {}
    }
}

/// Items of a keyed list or set grouped by identity, in first-seen order.
fn group_items<'v>(
    list: Option<&'v Value>,
    list_type: ListType<'_>,
) -> Vec<(String, Vec<&'v Value>)> {
    let mut groups: Vec<(String, Vec<&Value>)> = Vec::new();
    for item in list.and_then(Value::as_array).into_iter().flatten() {
        let Ok(pe) = item_element(list_type, item) else {
            continue;
        };
        match groups.iter_mut().find(|(p, _)| *p == pe) {
            Some((_, items)) => items.push(item),
            None => groups.push((pe, vec![item])),
        }
    }
    groups
}

fn compare_items(
    l: Option<&Value>,
    r: Option<&Value>,
    list_type: ListType<'_>,
    schema: &KindSchema,
    spath: &str,
    path: &mut Vec<String>,
    cmp: &mut Comparison,
) {
    let left = group_items(l, list_type);
    let right = group_items(r, list_type);
    let mut all: Vec<&String> = left.iter().map(|(pe, _)| pe).collect();
    for (pe, _) in &right {
        if !left.iter().any(|(p, _)| p == pe) {
            all.push(pe);
        }
    }
    let find = |groups: &[(String, Vec<&Value>)], pe: &str| -> Vec<Value> {
        groups
            .iter()
            .find(|(p, _)| p == pe)
            .map(|(_, items)| items.iter().map(|v| (*v).clone()).collect())
            .unwrap_or_default()
    };
    for pe in all {
        let (ls, rs) = (find(&left, pe), find(&right, pe));
        path.push(pe.clone());
        match (ls.len(), rs.len()) {
            (0..=1, 0..=1) => compare_at(ls.first(), rs.first(), schema, spath, path, cmp),
            (2.., 2..) => {
                if ls != rs {
                    cmp.modified.insert(path);
                }
            }
            (2.., _) => {
                if let Some(r) = rs.first() {
                    compare_at(None, Some(r), schema, spath, path, cmp);
                }
                cmp.removed.insert(path);
            }
            (_, _) => {
                if let Some(l) = ls.first() {
                    compare_at(Some(l), None, schema, spath, path, cmp);
                }
                cmp.added.insert(path);
            }
        }
        path.pop();
    }
}

/// Merges the applied configuration `config` into `live`: the configuration's values win, keyed
/// lists and sets merge item by item, and items keep the configuration's order with the live-only
/// items where they stood.
pub(crate) fn merge(live: &Value, config: &Value, schema: &KindSchema) -> Value {
    merge_at(Some(live), Some(config), schema, "").unwrap_or(Value::Null)
}

fn merge_at(
    l: Option<&Value>,
    r: Option<&Value>,
    schema: &KindSchema,
    spath: &str,
) -> Option<Value> {
    let (l, r) = match (l, r) {
        (l, None) => return l.cloned(),
        (None, r) => return r.cloned(),
        (Some(l), Some(r)) => (l, r),
    };
    if !same_shape(l, r) {
        return Some(r.clone());
    }
    let both_empty = is_empty_container(Some(l)) && is_empty_container(Some(r));
    match (l, r) {
        (Value::Array(la), Value::Array(ra)) => {
            let list_type = schema.list_type(spath);
            if list_type == ListType::Atomic || both_empty {
                return Some(r.clone());
            }
            let out = merge_items(la, ra, list_type, schema, spath);
            (!out.is_empty()).then_some(Value::Array(out))
        }
        (Value::Object(lm), Value::Object(rm)) => {
            if schema.is_atomic_object(spath) || both_empty {
                return Some(r.clone());
            }
            let mut out = Map::new();
            for (k, lv) in lm {
                if let Some(v) = merge_at(Some(lv), rm.get(k), schema, &child(spath, k)) {
                    out.insert(k.clone(), v);
                }
            }
            for (k, rv) in rm {
                if !lm.contains_key(k) {
                    out.insert(k.clone(), rv.clone());
                }
            }
            (!out.is_empty()).then_some(Value::Object(out))
        }
        _ => Some(r.clone()),
    }
}

/// structured-merge-diff's list merge: walks both lists, following the configuration's order for the
/// items it names and keeping live-only items in place between them.
fn merge_items(
    live: &[Value],
    config: &[Value],
    list_type: ListType<'_>,
    schema: &KindSchema,
    spath: &str,
) -> Vec<Value> {
    let identify = |items: &[Value]| -> Vec<(String, usize)> {
        items
            .iter()
            .enumerate()
            .filter_map(|(i, v)| item_element(list_type, v).ok().map(|pe| (pe, i)))
            .collect()
    };
    let r_pes = identify(config);
    let l_pes = identify(live);
    let r_map: HashMap<&str, &Value> = r_pes
        .iter()
        .map(|(pe, i)| (pe.as_str(), &config[*i]))
        .collect();
    // A live item whose identity repeats is not merged with the configuration's item.
    let mut l_map: HashMap<&str, Option<&Value>> = HashMap::new();
    for (pe, i) in &l_pes {
        l_map
            .entry(pe.as_str())
            .and_modify(|v| *v = None)
            .or_insert(Some(&live[*i]));
    }
    let mut shared = r_pes
        .iter()
        .filter(|(pe, _)| l_map.contains_key(pe.as_str()))
        .map(|(pe, _)| pe.as_str());
    let mut next_shared = shared.next();
    let mut merged_rhs: HashSet<&str> = HashSet::new();
    let mut out = Vec::with_capacity(live.len().max(config.len()));
    let (mut li, mut ri) = (0, 0);
    while li < l_pes.len() || ri < r_pes.len() {
        if li < l_pes.len() && ri < r_pes.len() {
            let pe = l_pes[li].0.as_str();
            if pe == r_pes[ri].0 {
                merged_rhs.insert(pe);
                let lv = l_map.get(pe).copied().flatten();
                out.extend(merge_at(lv, r_map.get(pe).copied(), schema, spath));
                li += 1;
                ri += 1;
                next_shared = shared.next();
                continue;
            }
            if r_map.contains_key(pe) && next_shared.is_some_and(|s| s != pe) {
                // An item the configuration places later; it is merged when its turn comes.
                li += 1;
                continue;
            }
        }
        if li < l_pes.len() {
            let pe = l_pes[li].0.as_str();
            if !r_map.contains_key(pe) {
                out.push(live[l_pes[li].1].clone());
                li += 1;
                continue;
            } else if merged_rhs.contains(pe) {
                li += 1;
            }
        }
        if ri < r_pes.len() {
            let pe = r_pes[ri].0.as_str();
            merged_rhs.insert(pe);
            let lv = l_map.get(pe).copied().flatten();
            out.extend(merge_at(lv, r_map.get(pe).copied(), schema, spath));
            ri += 1;
            if next_shared == Some(pe) {
                next_shared = shared.next();
            }
        }
    }
    out
}

/// `v` without the members of `set` (each removed with everything below it). `None` when nothing
/// is left.
pub(crate) fn remove(v: &Value, set: &FieldSet, schema: &KindSchema) -> Option<Value> {
    remove_at(v, set, schema, "")
}

fn remove_at(v: &Value, set: &FieldSet, schema: &KindSchema, spath: &str) -> Option<Value> {
    match v {
        Value::Array(items) => {
            let list_type = schema.list_type(spath);
            if list_type == ListType::Atomic {
                return Some(v.clone());
            }
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                let Ok(pe) = item_element(list_type, item) else {
                    out.push(item.clone());
                    continue;
                };
                if set.has_member(&pe) {
                    continue;
                }
                match set.below(&pe) {
                    Some(sub) => out.extend(remove_at(item, sub, schema, spath)),
                    None => out.push(item.clone()),
                }
            }
            (!out.is_empty()).then_some(Value::Array(out))
        }
        Value::Object(m) => {
            if schema.is_atomic_object(spath) {
                return Some(v.clone());
            }
            let mut out = Map::new();
            for (k, c) in m {
                let pe = fieldset::field(k);
                if set.has_member(&pe) {
                    continue;
                }
                match set.below(&pe) {
                    Some(sub) => {
                        if let Some(c) = remove_at(c, sub, schema, &child(spath, k)) {
                            out.insert(k.clone(), c);
                        }
                    }
                    None => {
                        out.insert(k.clone(), c.clone());
                    }
                }
            }
            (!out.is_empty()).then_some(Value::Object(out))
        }
        other => Some(other.clone()),
    }
}

/// `v` with the objects of the kind's zero value (non-pointer Go structs such as `spec`) filled in,
/// so that comparisons see what kube-apiserver's typed objects always carry.
pub(crate) fn with_skeleton(v: &Value, schema: &KindSchema) -> Value {
    let mut v = v.clone();
    for (spath, zero) in schema.skeleton() {
        let segments: Vec<&str> = spath.split('.').collect();
        fill(&mut v, &segments, zero);
    }
    v
}

fn fill(v: &mut Value, segments: &[&str], zero: &Value) {
    match v {
        Value::Array(items) => items.iter_mut().for_each(|item| fill(item, segments, zero)),
        Value::Object(m) => match segments {
            [] => {}
            [last] => {
                m.entry(last.to_string()).or_insert_with(|| zero.clone());
            }
            [first, rest @ ..] => {
                if let Some(c) = m.get_mut(*first) {
                    fill(c, rest, zero);
                }
            }
        },
        _ => {}
    }
}

/// Drops null fields, as decoding into the Go types and encoding again does.
pub(crate) fn drop_nulls(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|_, c| !c.is_null());
            m.values_mut().for_each(drop_nulls);
        }
        Value::Array(a) => a.iter_mut().for_each(drop_nulls),
        _ => {}
    }
}
