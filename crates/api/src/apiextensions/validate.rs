//! Validation of a custom object against its version's structural schema, with kube-apiserver's causes:
//! k8s.io/kube-openapi's schema validator as kube's `kubeOpenAPIResultToFieldErrors` reports it
//! (`spec.replicas: Invalid value: "string": spec.replicas in body must be of type integer: "string"`,
//! `Required value`, `Unsupported value`, `Too long`, `Too many`), then the `x-kubernetes-embedded-resource`
//! objects' `apiVersion`, `kind` and `metadata` (`pkg/apiserver/schema/objectmeta`), then the uniqueness
//! of `x-kubernetes-list-type` `set` and `map` lists (`pkg/apiserver/schema/listtype`).

use serde_json::Value;

use super::formats;
use super::structural::{AdditionalProperties, ListKind, Schema};
use crate::validation::{self, Cause};

/// Appends the causes of `value` against `schema` at `path` (empty at the object root).
pub fn validate(schema: &Schema, path: &str, value: &Value, causes: &mut Vec<Cause>) {
    openapi(schema, path, value, causes);
    embedded(schema, path, value, causes);
    list_types(schema, path, value, causes);
}

fn child(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// The name kube-openapi gives the value in its messages: the path, or `.` at the root.
fn name(path: &str) -> &str {
    if path.is_empty() { "." } else { path }
}

/// The JSON type of a value as kube-openapi names it.
pub(crate) fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_f64() => "number",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Go's `%v` of a JSON scalar.
pub(crate) fn go_value(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() && f.fract() == 0.0 && f.abs() < 1e21 => format!("{f:.0}"),
            _ => n.to_string(),
        },
        other => other.to_string(),
    }
}

/// A cause whose value kube prints as Go does: strings quoted, numbers and booleans bare, the rest as JSON.
fn invalid(field: &str, value: &Value, detail: &str) -> Cause {
    Cause {
        reason: "FieldValueInvalid",
        field: field.to_string(),
        message: format!("Invalid value: {}: {detail}", shown(value)),
    }
}

/// A bad value as kube's `field.Error` prints one: strings quoted, numbers and booleans bare, decoded
/// JSON objects and lists with Go's `%#v` (`map[string]interface {}{"a":1}`).
pub(crate) fn shown(value: &Value) -> String {
    match value {
        Value::String(s) => format!("{s:?}"),
        Value::Null => "null".into(),
        Value::Bool(_) | Value::Number(_) => go_value(value),
        other => go_syntax(other),
    }
}

/// Go's `%#v` of a decoded JSON value.
pub(crate) fn go_syntax(v: &Value) -> String {
    match v {
        Value::Null => "interface {}(nil)".into(),
        Value::String(s) => format!("{s:?}"),
        Value::Bool(_) | Value::Number(_) => go_value(v),
        Value::Array(items) => format!(
            "[]interface {{}}{{{}}}",
            items.iter().map(go_syntax).collect::<Vec<_>>().join(", ")
        ),
        Value::Object(fields) => {
            let mut entries: Vec<_> = fields.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            let entries: Vec<String> = entries
                .into_iter()
                .map(|(k, v)| format!("{k:?}:{}", go_syntax(v)))
                .collect();
            format!("map[string]interface {{}}{{{}}}", entries.join(", "))
        }
    }
}

fn type_error(path: &str, expected: &str, actual: &str) -> Cause {
    Cause {
        reason: "FieldValueTypeInvalid",
        field: path.to_string(),
        message: format!(
            "Invalid value: \"{actual}\": {} in body must be of type {expected}: \"{actual}\"",
            name(path)
        ),
    }
}

fn type_matches(expected: &str, v: &Value) -> bool {
    match (expected, v) {
        ("integer", Value::Number(n)) => {
            !n.is_f64() || n.as_f64().is_some_and(|f| f.fract() == 0.0)
        }
        ("number", Value::Number(_)) => true,
        (t, v) => t == json_type(v),
    }
}

/// kube-openapi's `SchemaValidator`: type first (nothing else is checked on a value of the wrong type),
/// then the value validations, then the fields and items below.
fn openapi(s: &Schema, path: &str, v: &Value, causes: &mut Vec<Cause>) {
    if v.is_null() {
        if let Some(t) = &s.type_
            && !s.nullable
        {
            causes.push(type_error(path, t, "null"));
        }
        return;
    }
    if s.int_or_string {
        if !matches!(v, Value::String(_)) && !type_matches("integer", v) {
            causes.push(type_error(path, "integer,string", json_type(v)));
            return;
        }
    } else if let Some(t) = &s.type_
        && !type_matches(t, v)
    {
        causes.push(type_error(path, t, json_type(v)));
        return;
    }
    if let (Some(format), Value::String(text)) = (&s.format, v)
        && !formats::valid(format, text)
    {
        causes.push(Cause {
            reason: "FieldValueTypeInvalid",
            field: path.to_string(),
            message: format!(
                "Invalid value: {text:?}: {} in body must be of type {format}: {text:?}",
                name(path)
            ),
        });
    }
    if let Some(allowed) = &s.enum_
        && !allowed.contains(v)
    {
        let list = allowed
            .iter()
            .map(|a| match a {
                Value::String(s) => format!("{s:?}"),
                other => format!("\"{}\"", other.to_string().replace('"', "\\\"")),
            })
            .collect::<Vec<_>>()
            .join(", ");
        causes.push(Cause {
            reason: "FieldValueNotSupported",
            field: path.to_string(),
            message: format!("Unsupported value: {}: supported values: {list}", shown(v)),
        });
    }
    nested(s, path, v, causes);
    match v {
        Value::String(text) => string(s, path, v, text, causes),
        Value::Number(_) => number(s, path, v, causes),
        Value::Array(items) => array(s, path, items, causes),
        Value::Object(fields) => object(s, path, fields, causes),
        _ => {}
    }
}

fn string(s: &Schema, path: &str, v: &Value, text: &str, causes: &mut Vec<Cause>) {
    let len = text.chars().count() as i64;
    if let Some(max) = s.max_length
        && len > max
    {
        let unit = if max == 1 { "byte" } else { "bytes" };
        causes.push(Cause {
            reason: "FieldValueTooLong",
            field: path.to_string(),
            message: format!("Too long: may not be more than {max} {unit}"),
        });
    }
    if let Some(min) = s.min_length
        && len < min
    {
        let detail = format!("{} in body should be at least {min} chars long", name(path));
        causes.push(invalid(path, v, &detail));
    }
    if let Some((pattern, re)) = &s.pattern
        && !re.is_match(text)
    {
        let detail = format!("{} in body should match '{pattern}'", name(path));
        causes.push(invalid(path, v, &detail));
    }
}

fn number(s: &Schema, path: &str, v: &Value, causes: &mut Vec<Cause>) {
    let Some(x) = v.as_f64() else { return };
    let n = name(path);
    let bound = |b: f64| go_value(&serde_json::json!(b));
    if let Some(max) = s.maximum {
        let (bad, word) = if s.exclusive_maximum {
            (x >= max, "less than")
        } else {
            (x > max, "less than or equal to")
        };
        if bad {
            let detail = format!("{n} in body should be {word} {}", bound(max));
            causes.push(invalid(path, v, &detail));
        }
    }
    if let Some(min) = s.minimum {
        let (bad, word) = if s.exclusive_minimum {
            (x <= min, "greater than")
        } else {
            (x < min, "greater than or equal to")
        };
        if bad {
            let detail = format!("{n} in body should be {word} {}", bound(min));
            causes.push(invalid(path, v, &detail));
        }
    }
    if let Some(m) = s.multiple_of
        && m > 0.0
        && (x / m).fract().abs() > f64::EPSILON
    {
        let detail = format!("{n} in body should be a multiple of {}", bound(m));
        causes.push(invalid(path, v, &detail));
    }
}

fn array(s: &Schema, path: &str, items: &[Value], causes: &mut Vec<Cause>) {
    let len = items.len() as i64;
    if let Some(max) = s.max_items
        && len > max
    {
        causes.push(too_many(path, len, max));
    }
    if let Some(min) = s.min_items
        && len < min
    {
        let detail = format!("{} in body should have at least {min} items", name(path));
        causes.push(invalid(path, &Value::from(len), &detail));
    }
    if s.unique_items
        && items
            .iter()
            .enumerate()
            .any(|(i, a)| items[..i].contains(a))
    {
        let detail = format!("{} in body shouldn't contain duplicates", name(path));
        causes.push(invalid(path, &Value::from(""), &detail));
    }
    if let Some(item) = &s.items {
        for (i, v) in items.iter().enumerate() {
            openapi(item, &format!("{path}[{i}]"), v, causes);
        }
    }
}

/// kube's `field.TooMany`.
fn too_many(path: &str, actual: i64, max: i64) -> Cause {
    let items = if max == 1 { "item" } else { "items" };
    Cause {
        reason: "FieldValueTooMany",
        field: path.to_string(),
        message: format!("Too many: {actual}: must have at most {max} {items}"),
    }
}

fn object(
    s: &Schema,
    path: &str,
    fields: &serde_json::Map<String, Value>,
    causes: &mut Vec<Cause>,
) {
    let len = fields.len() as i64;
    if let Some(max) = s.max_properties
        && len > max
    {
        causes.push(too_many(path, len, max));
    }
    if let Some(min) = s.min_properties
        && len < min
    {
        let detail = format!(
            "{} in body should have at least {min} properties",
            name(path)
        );
        causes.push(invalid(path, &Value::from(len), &detail));
    }
    for (key, prop) in &s.properties {
        if let Some(v) = fields.get(key) {
            openapi(prop, &child(path, key), v, causes);
        }
    }
    for key in &s.required {
        if !fields.contains_key(key) {
            causes.push(Cause::required(child(path, key)));
        }
    }
    if let Some(AdditionalProperties::Schema(values)) = &s.additional_properties {
        for (key, v) in fields {
            if !s.properties.contains_key(key) {
                openapi(values, &child(path, key), v, causes);
            }
        }
    }
}

/// `allOf`, `anyOf`, `oneOf` and `not`, with kube-openapi's messages for the last three.
fn nested(s: &Schema, path: &str, v: &Value, causes: &mut Vec<Cause>) {
    for all in &s.all_of {
        openapi(all, path, v, causes);
    }
    let check = |alt: &Schema| {
        let mut c = Vec::new();
        openapi(alt, path, v, &mut c);
        c
    };
    if !s.any_of.is_empty() {
        let results: Vec<Vec<Cause>> = s.any_of.iter().map(check).collect();
        if results.iter().all(|r| !r.is_empty()) {
            let detail = format!(
                "\"{}\" must validate at least one schema (anyOf)",
                name(path)
            );
            causes.push(invalid(path, &Value::from(""), &detail));
            causes.extend(results.into_iter().next().unwrap_or_default());
        }
    }
    if !s.one_of.is_empty() {
        let results: Vec<Vec<Cause>> = s.one_of.iter().map(check).collect();
        let valid = results.iter().filter(|r| r.is_empty()).count();
        if valid != 1 {
            let found = if valid == 0 {
                "Found none valid".to_string()
            } else {
                format!("Found {valid} valid alternatives")
            };
            let detail = format!(
                "\"{}\" must validate one and only one schema (oneOf). {found}",
                name(path)
            );
            causes.push(invalid(path, &Value::from(""), &detail));
            if valid == 0 {
                causes.extend(results.into_iter().next().unwrap_or_default());
            }
        }
    }
    if let Some(not) = &s.not
        && check(not).is_empty()
    {
        let detail = format!("\"{}\" must not validate the schema (not)", name(path));
        causes.push(invalid(path, &Value::from(""), &detail));
    }
}

/// `x-kubernetes-embedded-resource` objects: `apiVersion` and `kind` present and well-formed, `metadata`
/// an ObjectMeta with a path-segment name and valid labels.
fn embedded(s: &Schema, path: &str, v: &Value, causes: &mut Vec<Cause>) {
    match v {
        Value::Object(fields) => {
            if s.embedded_resource {
                embedded_resource(path, fields, causes);
            }
            for (key, value) in fields {
                if let Some(prop) = s.field(key) {
                    embedded(prop, &child(path, key), value, causes);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item) = &s.items {
                for (i, value) in items.iter().enumerate() {
                    embedded(item, &format!("{path}[{i}]"), value, causes);
                }
            }
        }
        _ => {}
    }
}

fn embedded_resource(path: &str, fields: &serde_json::Map<String, Value>, causes: &mut Vec<Cause>) {
    for key in ["apiVersion", "kind"] {
        match fields.get(key) {
            None => causes.push(Cause::required(child(path, key))),
            Some(Value::String(s)) if s.is_empty() => {
                causes.push(Cause::invalid(child(path, key), "", "must not be empty"));
            }
            Some(Value::String(s)) if key == "kind" => {
                let problems = super::definition::dns1035_problems(&s.to_lowercase());
                if !problems.is_empty() {
                    causes.push(Cause::invalid(
                        child(path, key),
                        s,
                        &format!(
                            "may have mixed case, but should otherwise match: {}",
                            problems.join(",")
                        ),
                    ));
                }
            }
            Some(Value::String(s)) => {
                if s.matches('/').count() > 1 {
                    causes.push(Cause::invalid(
                        child(path, key),
                        s,
                        &format!("unexpected GroupVersion string: {s}"),
                    ));
                }
            }
            Some(other) => causes.push(invalid(&child(path, key), other, "must be a string")),
        }
    }
    if let Some(meta) = fields.get("metadata") {
        let at = child(path, "metadata");
        match serde_json::from_value::<k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta>(
            meta.clone(),
        ) {
            Ok(meta) => {
                if let Some(name) = meta.name.as_deref()
                    && let Some(why) = super::definition::path_segment_problem(name)
                {
                    causes.push(Cause::invalid(format!("{at}.name"), name, &why));
                }
                let mut found = Vec::new();
                validation::validate_labels(&meta, &mut found);
                causes.extend(found.into_iter().map(|mut c| {
                    c.field = c.field.replacen("metadata", &at, 1);
                    c
                }));
            }
            Err(e) => causes.push(invalid(&at, meta, &e.to_string())),
        }
    }
}

/// `x-kubernetes-list-type: set` lists hold no value twice, `map` lists no key twice.
fn list_types(s: &Schema, path: &str, v: &Value, causes: &mut Vec<Cause>) {
    match v {
        Value::Object(fields) => {
            for (key, value) in fields {
                if let Some(prop) = s.field(key) {
                    list_types(prop, &child(path, key), value, causes);
                }
            }
        }
        Value::Array(items) => {
            match &s.list {
                ListKind::Set => {
                    for (i, item) in items.iter().enumerate() {
                        if items[..i].contains(item) {
                            causes.push(duplicate(&format!("{path}[{i}]"), item));
                        }
                    }
                }
                ListKind::Map(keys) => {
                    let key_of = |item: &Value| -> Value {
                        if keys.len() == 1 {
                            let mut m = serde_json::Map::new();
                            if let Some(k) = item.get(&keys[0]) {
                                m.insert(keys[0].clone(), k.clone());
                            }
                            Value::Object(m)
                        } else {
                            Value::Array(
                                keys.iter()
                                    .map(|k| item.get(k).cloned().unwrap_or(Value::Null))
                                    .collect(),
                            )
                        }
                    };
                    for (i, item) in items.iter().enumerate() {
                        if !item.is_object() {
                            causes.push(invalid(
                                &format!("{path}[{i}]"),
                                item,
                                "must be an object for an array of list-type map",
                            ));
                            continue;
                        }
                        let key = key_of(item);
                        if items[..i].iter().any(|o| o.is_object() && key_of(o) == key) {
                            causes.push(duplicate(&format!("{path}[{i}]"), &key));
                        }
                    }
                }
                ListKind::Atomic => {}
            }
            if let Some(item) = &s.items {
                for (i, value) in items.iter().enumerate() {
                    list_types(item, &format!("{path}[{i}]"), value, causes);
                }
            }
        }
        _ => {}
    }
}

fn duplicate(field: &str, value: &Value) -> Cause {
    Cause {
        reason: "FieldValueDuplicate",
        field: field.to_string(),
        message: format!("Duplicate value: {}", shown(value)),
    }
}
