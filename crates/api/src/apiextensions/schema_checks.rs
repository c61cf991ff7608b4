//! The OpenAPI rules of a CRD's schema (kube's `ValidateCustomResourceDefinitionOpenAPISchema` with its
//! `specStandardValidatorV3`): supported types and keywords, where `default` may be and that it is valid,
//! `x-kubernetes-map-type`, `-list-type` and `-list-map-keys`, and `x-kubernetes-validations` entries
//! that are well-formed and compile.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    JSONSchemaProps, JSONSchemaPropsOrArray, JSONSchemaPropsOrBool,
};
use serde_json::Value;

use super::cel::{Rule, RuleError};
use super::structural::Schema;
use crate::validation::Cause;

fn invalid(field: impl Into<String>, value: &Value, detail: &str) -> Cause {
    Cause {
        reason: "FieldValueInvalid",
        field: field.into(),
        message: format!("Invalid value: {}: {detail}", super::validate::shown(value)),
    }
}

fn required(field: impl Into<String>, detail: &str) -> Cause {
    let mut c = Cause::required(field);
    if !detail.is_empty() {
        c.message = format!("Required value: {detail}");
    }
    c
}

/// A validation rule as kube prints it in a cause (Go's `%#v` of its internal type).
fn go_rule(
    r: &k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::ValidationRule,
) -> String {
    let ptr = |t: &str, set: bool| {
        if set {
            format!("(*{t})(0xc000000000)")
        } else {
            format!("(*{t})(nil)")
        }
    };
    format!(
        "apiextensions.ValidationRule{{Rule:{:?}, Message:{:?}, MessageExpression:{:?}, Reason:{}, FieldPath:{:?}, OptionalOldSelf:{}}}",
        r.rule,
        r.message.as_deref().unwrap_or_default(),
        r.message_expression.as_deref().unwrap_or_default(),
        ptr("apiextensions.FieldValueErrorReason", r.reason.is_some()),
        r.field_path.as_deref().unwrap_or_default(),
        ptr("bool", r.optional_old_self.is_some()),
    )
}

fn rule_invalid(field: String, shown: &str, detail: &str) -> Cause {
    Cause {
        reason: "FieldValueInvalid",
        field,
        message: format!("Invalid value: {shown}: {detail}"),
    }
}

/// The schema at `at`, the root of a version's schema.
pub(super) fn openapi(schema: &JSONSchemaProps, at: &str, causes: &mut Vec<Cause>) {
    let ctx = Walk {
        root: true,
        defaults: Ok(()),
        inside_meta: false,
    };
    walk(schema, at, &ctx, causes);
}

/// Where in the walk a schema sits.
#[derive(Clone)]
struct Walk {
    root: bool,
    /// `Err(reason)` where `default` is forbidden.
    defaults: Result<(), String>,
    inside_meta: bool,
}

const OPENAPI_TYPES: &[&str] = &["array", "boolean", "integer", "number", "object", "string"];

fn prop_path(at: &str, key: &str) -> String {
    format!("{at}.properties[{key}]")
}

/// kube's `ValidateCustomResourceDefinitionOpenAPISchema` with its `specStandardValidatorV3`.
fn walk(s: &JSONSchemaProps, at: &str, ctx: &Walk, causes: &mut Vec<Cause>) {
    if let Some(t) = s.type_.as_deref().filter(|t| !t.is_empty()) {
        if t == "null" {
            causes.push(Cause::forbidden(
                format!("{at}.type"),
                "type cannot be set to null, use nullable as an alternative",
            ));
        } else if !OPENAPI_TYPES.contains(&t) {
            causes.push(Cause::not_supported(format!("{at}.type"), t, OPENAPI_TYPES));
        }
    }
    if s.default.is_some()
        && let Err(reason) = &ctx.defaults
    {
        causes.push(Cause::forbidden(
            format!("{at}.default"),
            &format!("must not be set {reason}"),
        ));
    }
    for (present, name) in [
        (s.id.is_some(), "id"),
        (s.additional_items.is_some(), "additionalItems"),
        (
            s.pattern_properties.as_ref().is_some_and(|p| !p.is_empty()),
            "patternProperties",
        ),
        (
            s.definitions.as_ref().is_some_and(|d| !d.is_empty()),
            "definitions",
        ),
        (s.dependencies.is_some(), "dependencies"),
        (s.ref_path.is_some(), "$ref"),
    ] {
        if present {
            causes.push(Cause::forbidden(
                format!("{at}.{name}"),
                &format!("{name} is not supported"),
            ));
        }
    }
    if matches!(s.items, Some(JSONSchemaPropsOrArray::Schemas(_))) {
        causes.push(Cause::forbidden(
            format!("{at}.items"),
            "items must be a schema object and not an array",
        ));
    }
    if ctx.inside_meta && s.x_kubernetes_embedded_resource == Some(true) {
        causes.push(Cause::forbidden(
            format!("{at}.x-kubernetes-embedded-resource"),
            "must not be used inside of resource meta",
        ));
    }
    if s.unique_items == Some(true) {
        causes.push(Cause::forbidden(
            format!("{at}.uniqueItems"),
            "uniqueItems cannot be set to true since the runtime complexity becomes quadratic",
        ));
    }
    let has_props = s.properties.as_ref().is_some_and(|p| !p.is_empty());
    if let Some(ap) = &s.additional_properties {
        if has_props && !matches!(ap, JSONSchemaPropsOrBool::Bool(true)) {
            causes.push(Cause::forbidden(
                format!("{at}.additionalProperties"),
                "additionalProperties and properties are mutual exclusive",
            ));
        }
        if let JSONSchemaPropsOrBool::Schema(inner) = ap {
            let mut sub = Walk {
                root: false,
                ..ctx.clone()
            };
            if ctx.inside_meta {
                sub.defaults =
                    Err("inside additionalProperties applying to object metadata".into());
            }
            walk(inner, &format!("{at}.additionalProperties"), &sub, causes);
        }
    }
    for (key, prop) in s.properties.iter().flatten() {
        let mut sub = Walk {
            root: false,
            ..ctx.clone()
        };
        if (ctx.root || s.x_kubernetes_embedded_resource == Some(true))
            && ["metadata", "kind", "apiVersion"].contains(&key.as_str())
        {
            sub.inside_meta = true;
            if ctx.root {
                sub.defaults = Err(format!("in top-level {key}"));
            }
        }
        walk(prop, &prop_path(at, key), &sub, causes);
    }
    let nested = Walk {
        root: false,
        ..ctx.clone()
    };
    if let Some(not) = &s.not {
        walk(not, &format!("{at}.not"), &nested, causes);
    }
    for (name, list) in [
        ("allOf", &s.all_of),
        ("oneOf", &s.one_of),
        ("anyOf", &s.any_of),
    ] {
        for (i, sub) in list.iter().flatten().enumerate() {
            walk(sub, &format!("{at}.{name}[{i}]"), &nested, causes);
        }
    }
    if let Some(JSONSchemaPropsOrArray::Schema(items)) = &s.items {
        walk(items, &format!("{at}.items"), &nested, causes);
    }
    if s.x_kubernetes_preserve_unknown_fields == Some(false) {
        causes.push(invalid(
            format!("{at}.x-kubernetes-preserve-unknown-fields"),
            &Value::Bool(false),
            "must be true or undefined",
        ));
    }
    extensions(s, at, causes);
    rules(s, at, causes);
}

/// The `x-kubernetes-map-type`, `-list-type` and `-list-map-keys` rules.
fn extensions(s: &JSONSchemaProps, at: &str, causes: &mut Vec<Cause>) {
    let ty = s.type_.as_deref().unwrap_or_default();
    if let Some(map_type) = &s.x_kubernetes_map_type {
        if ty != "object" {
            let detail = "must be object if x-kubernetes-map-type is specified";
            causes.push(if ty.is_empty() {
                required(format!("{at}.type"), detail)
            } else {
                Cause::invalid(format!("{at}.type"), ty, detail)
            });
        }
        if map_type != "atomic" && map_type != "granular" {
            causes.push(Cause::not_supported(
                format!("{at}.x-kubernetes-map-type"),
                map_type,
                &["atomic", "granular"],
            ));
        }
    }
    let items = match &s.items {
        Some(JSONSchemaPropsOrArray::Schema(i)) => Some(i.as_ref()),
        _ => None,
    };
    let list_type = s.x_kubernetes_list_type.as_deref();
    if let Some(lt) = list_type {
        if ty != "array" {
            let detail = "must be array if x-kubernetes-list-type is specified";
            causes.push(if ty.is_empty() {
                required(format!("{at}.type"), detail)
            } else {
                Cause::invalid(format!("{at}.type"), ty, detail)
            });
        } else if lt == "set"
            && let Some(is) = items
        {
            let detail = "must be atomic as item of a list with x-kubernetes-list-type=set";
            match is.type_.as_deref() {
                Some("array")
                    if is
                        .x_kubernetes_list_type
                        .as_deref()
                        .is_some_and(|t| t != "atomic") =>
                {
                    causes.push(Cause::invalid(
                        format!("{at}.items.x-kubernetes-list-type"),
                        is.x_kubernetes_list_type.as_deref().unwrap_or_default(),
                        detail,
                    ));
                }
                Some("object") if is.x_kubernetes_map_type.as_deref() != Some("atomic") => {
                    causes.push(invalid(
                        format!("{at}.items.x-kubernetes-map-type"),
                        &Value::Null,
                        detail,
                    ));
                }
                _ => {}
            }
        }
        if !["atomic", "set", "map"].contains(&lt) {
            causes.push(Cause::not_supported(
                format!("{at}.x-kubernetes-list-type"),
                lt,
                &["atomic", "set", "map"],
            ));
        }
    }
    let keys = s.x_kubernetes_list_map_keys.clone().unwrap_or_default();
    if !keys.is_empty() {
        match list_type {
            None => causes.push(required(
                format!("{at}.x-kubernetes-list-type"),
                "must be map if x-kubernetes-list-map-keys is non-empty",
            )),
            Some("map") => {}
            Some(other) => causes.push(Cause::invalid(
                format!("{at}.x-kubernetes-list-type"),
                other,
                "must be map if x-kubernetes-list-map-keys is non-empty",
            )),
        }
    }
    // A `[]string` as Go's `%#v` prints it.
    let keys_go = format!(
        "[]string{{{}}}",
        keys.iter()
            .map(|k| format!("{k:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let keys_invalid = |field: String, detail: &str| Cause {
        reason: "FieldValueInvalid",
        field,
        message: format!("Invalid value: {keys_go}: {detail}"),
    };
    if list_type == Some("map") {
        if keys.is_empty() {
            causes.push(required(
                format!("{at}.x-kubernetes-list-map-keys"),
                "must not be empty if x-kubernetes-list-type is map",
            ));
        }
        match (&s.items, items) {
            (None, _) => causes.push(required(
                format!("{at}.items"),
                "must have a schema if x-kubernetes-list-type is map",
            )),
            (Some(_), None) => causes.push(invalid(
                format!("{at}.items"),
                &Value::Null,
                "must only have a single schema if x-kubernetes-list-type is map",
            )),
            (Some(_), Some(is)) if is.type_.as_deref() != Some("object") => {
                causes.push(Cause::invalid(
                    format!("{at}.items.type"),
                    is.type_.as_deref().unwrap_or_default(),
                    "must be object if parent array's x-kubernetes-list-type is map",
                ));
            }
            (Some(_), Some(is)) => {
                let mut seen = std::collections::BTreeSet::new();
                for k in &keys {
                    match is.properties.as_ref().and_then(|p| p.get(k)) {
                        Some(p) if matches!(p.type_.as_deref(), Some("array" | "object")) => causes.push(Cause::invalid(
                            format!("{at}.items.properties[{k}].type"),
                            "object",
                            "must be a scalar type if parent array's x-kubernetes-list-type is map",
                        )),
                        Some(_) => {}
                        None => causes.push(keys_invalid(
                            format!("{at}.x-kubernetes-list-map-keys"),
                            "entries must all be names of item properties",
                        )),
                    }
                    if !seen.insert(k) {
                        causes.push(keys_invalid(
                            format!("{at}.x-kubernetes-list-map-keys"),
                            "must not contain duplicate entries",
                        ));
                    }
                }
            }
        }
    }
    // validateMapListKeysMapSet
    if let (Some(lt @ ("set" | "map")), Some(is)) = (list_type, items) {
        if is.nullable == Some(true) {
            causes.push(Cause::forbidden(
                format!("{at}.items.nullable"),
                &format!("cannot be nullable when x-kubernetes-list-type is {lt}"),
            ));
        }
        if lt == "map" {
            let required_keys = is.required.clone().unwrap_or_default();
            for k in &keys {
                let Some(p) = is.properties.as_ref().and_then(|p| p.get(k)) else {
                    continue;
                };
                if !required_keys.contains(k) && p.default.is_none() {
                    causes.push(required(format!("{at}.items.properties[{k}].default"), "this property is in x-kubernetes-list-map-keys, so it must have a default or be a required property"));
                }
                if p.nullable == Some(true) {
                    causes.push(Cause::forbidden(
                        format!("{at}.items.properties[{k}].nullable"),
                        "this property is in x-kubernetes-list-map-keys, so it cannot be nullable",
                    ));
                }
            }
        }
    }
}

const REASONS: &[&str] = &[
    "FieldValueDuplicate",
    "FieldValueForbidden",
    "FieldValueInvalid",
    "FieldValueRequired",
];

/// The `x-kubernetes-validations` of one schema: well-formed entries whose rules compile.
fn rules(s: &JSONSchemaProps, at: &str, causes: &mut Vec<Cause>) {
    for (i, r) in s.x_kubernetes_validations.iter().flatten().enumerate() {
        let base = format!("{at}.x-kubernetes-validations[{i}]");
        let rule = r.rule.trim();
        let message = r.message.as_deref().unwrap_or_default();
        if rule.is_empty() {
            causes.push(required(format!("{base}.rule"), "rule is not specified"));
            continue;
        } else if !message.is_empty() && message.trim().is_empty() {
            causes.push(Cause::invalid(
                format!("{base}.message"),
                message,
                "must be non-empty if specified",
            ));
        } else if message.trim().contains('\n') {
            causes.push(Cause::invalid(
                format!("{base}.message"),
                message,
                "must not contain line breaks",
            ));
        } else if rule.contains('\n') && message.trim().is_empty() {
            causes.push(required(
                format!("{base}.message"),
                "message must be specified if rule contains line breaks",
            ));
        }
        if let Some(m) = r.message_expression.as_deref()
            && !m.is_empty()
            && m.trim().is_empty()
        {
            causes.push(required(
                format!("{base}.messageExpression"),
                "messageExpression must be non-empty if specified",
            ));
        }
        if let Some(reason) = r.reason.as_deref()
            && !REASONS.contains(&reason)
        {
            causes.push(Cause::not_supported(
                format!("{base}.reason"),
                reason,
                REASONS,
            ));
        }
        if let Some(fp) = r.field_path.as_deref()
            && !fp.is_empty()
        {
            if fp.trim().is_empty() {
                causes.push(Cause::invalid(
                    format!("{base}.fieldPath"),
                    fp,
                    "must be non-empty if specified",
                ));
            } else if fp.contains('\n') {
                causes.push(Cause::invalid(
                    format!("{base}.fieldPath"),
                    fp,
                    "must not contain line breaks",
                ));
            } else if !field_path_valid(s, fp) {
                causes.push(Cause::invalid(
                    format!("{base}.fieldPath"),
                    fp,
                    "must be a valid path",
                ));
            }
        }
        let shown = go_rule(r);
        match Rule::compile(r) {
            Ok(compiled) => {
                if let Some(e) =
                    super::cel_check::undefined_field(compiled.program(), &Schema::from_props(s))
                {
                    causes.push(rule_invalid(
                        format!("{base}.rule"),
                        &shown,
                        &format!("compilation failed: {e}"),
                    ));
                }
                if !compiled.uses_old_self() && r.optional_old_self == Some(true) {
                    causes.push(invalid(
                        format!("{base}.optionalOldSelf"),
                        &Value::Bool(true),
                        "may not be set if oldSelf is not used in rule",
                    ));
                }
            }
            Err(RuleError::Rule(detail)) => {
                causes.push(rule_invalid(format!("{base}.rule"), &shown, &detail))
            }
            Err(RuleError::MessageExpression(detail)) => {
                causes.push(rule_invalid(
                    format!("{base}.messageExpression"),
                    &shown,
                    &detail,
                ));
            }
        }
    }
}

/// kube's `pathValid`: a rule's `fieldPath` names a field of the schema (`.spec.replicas`, `['a.b']`,
/// `.items[0]`-free dotted paths).
fn field_path_valid(s: &JSONSchemaProps, path: &str) -> bool {
    let Some(rest) = path.strip_prefix('.') else {
        return path.starts_with('[') && field_path_valid(s, &format!(".{path}"));
    };
    let mut node = s;
    for part in rest.split('.') {
        let key = part.trim_start_matches("['").trim_end_matches("']");
        match node.properties.as_ref().and_then(|p| p.get(key)) {
            Some(next) => node = next,
            None => match &node.additional_properties {
                Some(JSONSchemaPropsOrBool::Schema(next)) => node = next,
                _ => return false,
            },
        }
    }
    true
}

/// kube's `ValidateDefaults`: every `default` valid against the schema it sits in.
pub(super) fn validate_defaults(
    props: &JSONSchemaProps,
    schema: &Schema,
    at: &str,
    causes: &mut Vec<Cause>,
) {
    if let Some(d) = &schema.default {
        let path = format!("{at}.default");
        let mut pruned = d.clone();
        super::coerce::prune_at(
            &mut pruned,
            schema,
            "",
            schema.embedded_resource,
            &mut Vec::new(),
        );
        if pruned != *d {
            causes.push(invalid(path.clone(), d, "must not have unknown fields"));
        }
        let mut found = Vec::new();
        super::validate::validate(schema, &path, d, &mut found);
        if found.is_empty() {
            // The rules judge the default as kube does: as the value and as its own old value.
            super::cel::validate(schema, &path, d, Some(d), &mut found);
        }
        causes.extend(found);
    }
    // additionalProperties are not followed: defaults are forbidden there.
    for (key, prop) in props.properties.iter().flatten() {
        if let Some(child) = schema.properties.get(key) {
            validate_defaults(prop, child, &prop_path(at, key), causes);
        }
    }
    if let (Some(JSONSchemaPropsOrArray::Schema(items)), Some(child)) =
        (&props.items, &schema.items)
    {
        validate_defaults(items, child, &format!("{at}.items"), causes);
    }
}
