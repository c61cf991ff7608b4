//! What kube-apiserver does to a custom object as it decodes it, in its order (`unstructuredSchemaCoercer`,
//! then `unstructuredDefaulter`): **prune** every field the schema does not specify (kept: `apiVersion`,
//! `kind` and `metadata` at the root and in embedded resources, everything below
//! `x-kubernetes-preserve-unknown-fields` or `additionalProperties: true`), drop nulls the schema neither
//! allows nor defaults, keep only ObjectMeta's fields in `metadata`, then **default**: each property with
//! a `default` that is absent (or a non-nullable null) gets it, in objects, maps and list items alike.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::Value;

use super::structural::{AdditionalProperties, Schema};

fn child(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// Removes from `obj` (an object's root) every field `schema` does not know; returns their paths
/// (`spec.foo`, `spec.items[0].bar`, `metadata.bogus`) for kube's `unknown field "…"` warnings.
pub fn prune(obj: &mut Value, schema: &Schema) -> Vec<String> {
    let mut pruned = Vec::new();
    prune_at(obj, schema, "", true, &mut pruned);
    pruned
}

pub(crate) fn prune_at(
    v: &mut Value,
    s: &Schema,
    path: &str,
    resource_root: bool,
    pruned: &mut Vec<String>,
) {
    match v {
        Value::Object(fields) => {
            let is_resource = resource_root || s.embedded_resource;
            let keys: Vec<String> = fields.keys().cloned().collect();
            for key in keys {
                let here = child(path, &key);
                if is_resource && (key == "apiVersion" || key == "kind") {
                    continue;
                }
                if is_resource && key == "metadata" {
                    if let Some(meta) = fields.get_mut("metadata") {
                        coerce_meta(meta, &here, pruned);
                    }
                    continue;
                }
                match s.field(&key) {
                    Some(prop) => {
                        if let Some(value) = fields.get_mut(&key) {
                            prune_at(value, prop, &here, false, pruned);
                        }
                    }
                    None if s.keeps_unknown() => {}
                    None => {
                        fields.remove(&key);
                        pruned.push(here);
                    }
                }
            }
        }
        Value::Array(items) => {
            if let Some(item) = &s.items {
                for (i, value) in items.iter_mut().enumerate() {
                    prune_at(value, item, &format!("{path}[{i}]"), false, pruned);
                }
            }
        }
        _ => {}
    }
}

/// Keeps only ObjectMeta's fields of a `metadata` object (kube's `GetObjectMeta` with
/// `DropMalformedFields`): the unknown ones are pruned and reported like any other.
fn coerce_meta(meta: &mut Value, path: &str, pruned: &mut Vec<String>) {
    if !meta.is_object() {
        return;
    }
    let Ok(known) =
        serde_json::from_value::<ObjectMeta>(meta.clone()).and_then(serde_json::to_value)
    else {
        return;
    };
    strip_unknown(meta, &known, path, pruned);
}

fn strip_unknown(v: &mut Value, known: &Value, path: &str, pruned: &mut Vec<String>) {
    match (v, known) {
        (Value::Object(fields), Value::Object(k)) => {
            let keys: Vec<String> = fields.keys().cloned().collect();
            for key in keys {
                let here = child(path, &key);
                match k.get(&key) {
                    Some(kv) => {
                        if let Some(value) = fields.get_mut(&key) {
                            strip_unknown(value, kv, &here, pruned);
                        }
                    }
                    None if fields.get(&key).is_some_and(Value::is_null) => {}
                    None => {
                        fields.remove(&key);
                        pruned.push(here);
                    }
                }
            }
        }
        (Value::Array(items), Value::Array(k)) => {
            for (i, (value, kv)) in items.iter_mut().zip(k).enumerate() {
                strip_unknown(value, kv, &format!("{path}[{i}]"), pruned);
            }
        }
        _ => {}
    }
}

/// kube's `PruneNonNullableNullsWithoutDefaults`: a null field whose schema neither allows null nor has
/// a default is dropped (list items are left for validation to refuse).
pub fn drop_nulls(v: &mut Value, s: Option<&Schema>) {
    match v {
        Value::Object(fields) => {
            fields.retain(|k, value| {
                let schema = s.and_then(|s| s.field(k));
                !(value.is_null() && schema.is_some_and(|p| !p.nullable && p.default.is_none()))
            });
            for (k, value) in fields.iter_mut() {
                drop_nulls(value, s.and_then(|s| s.field(k)));
            }
        }
        Value::Array(items) => {
            let item = s.and_then(|s| s.items.as_deref());
            for value in items {
                drop_nulls(value, item);
            }
        }
        _ => {}
    }
}

fn null_to_default(v: &Value, s: &Schema) -> bool {
    v.is_null() && !s.nullable
}

/// kube's structural `Default`: applies the schema's defaults to `v` in place.
pub fn default(v: &mut Value, s: &Schema) {
    match v {
        Value::Object(fields) => {
            for (key, prop) in &s.properties {
                let Some(d) = &prop.default else { continue };
                if fields.get(key).is_none_or(|x| null_to_default(x, prop)) {
                    fields.insert(key.clone(), d.clone());
                }
            }
            for (key, value) in fields.iter_mut() {
                if let Some(prop) = s.properties.get(key) {
                    default(value, prop);
                } else if let Some(AdditionalProperties::Schema(values)) = &s.additional_properties
                {
                    if let Some(d) = &values.default
                        && null_to_default(value, values)
                    {
                        *value = d.clone();
                    }
                    default(value, values);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item) = &s.items {
                for value in items.iter_mut() {
                    if let Some(d) = &item.default
                        && null_to_default(value, item)
                    {
                        *value = d.clone();
                    }
                    default(value, item);
                }
            }
        }
        _ => {}
    }
}

/// The object as kube stores it: pruned, nulls dropped, defaulted. Returns the pruned paths.
pub fn coerce(obj: &mut Value, schema: &Schema) -> Vec<String> {
    let pruned = prune(obj, schema);
    drop_nulls(obj, Some(schema));
    default(obj, schema);
    pruned
}
