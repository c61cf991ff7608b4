//! kube's `ValidateStructural` (`pkg/apiserver/schema/validation.go`): the rules that make a schema
//! *structural* — a type everywhere a value is specified (`must not be empty for specified object
//! fields`), items for every array, no `additionalProperties` at the root, embedded resources as objects,
//! metadata restricted to `name` and `generateName`, and nothing but value validations under `allOf`,
//! `anyOf`, `oneOf` and `not`. The caller sorts the causes as kube does.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    JSONSchemaProps, JSONSchemaPropsOrArray, JSONSchemaPropsOrBool,
};

use crate::validation::Cause;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Root,
    Item,
    Field,
}

fn required(field: String, detail: &str) -> Cause {
    let mut c = Cause::required(field);
    c.message = format!("Required value: {detail}");
    c
}

fn items_of(s: &JSONSchemaProps) -> Option<&JSONSchemaProps> {
    match &s.items {
        Some(JSONSchemaPropsOrArray::Schema(i)) => Some(i),
        Some(JSONSchemaPropsOrArray::Schemas(l)) => l.first(),
        None => None,
    }
}

fn is_int_or_string_pair(list: Option<&Vec<JSONSchemaProps>>) -> bool {
    let only_type = |s: &JSONSchemaProps, t: &str| {
        *s == JSONSchemaProps {
            type_: Some(t.into()),
            ..Default::default()
        }
    };
    matches!(list.map(Vec::as_slice), Some([a, b]) if only_type(a, "integer") && only_type(b, "string"))
}

/// `validateStructuralInvariants` of the node `s` at `at`.
pub fn invariants(s: &JSONSchemaProps, level: Level, at: &str, causes: &mut Vec<Cause>) {
    let ty = s.type_.as_deref().unwrap_or_default();
    let embedded = s.x_kubernetes_embedded_resource == Some(true);
    let preserve = s.x_kubernetes_preserve_unknown_fields == Some(true);
    let int_or_string = s.x_kubernetes_int_or_string == Some(true);
    if ty == "array" && s.items.is_none() {
        causes.push(required(format!("{at}.items"), "must be specified"));
    }
    if let Some(items) = items_of(s) {
        invariants(items, Level::Item, &format!("{at}.items"), causes);
    }
    for (k, v) in s.properties.iter().flatten() {
        invariants(v, Level::Field, &format!("{at}.properties[{k}]"), causes);
    }
    if let Some(ap) = &s.additional_properties {
        if level == Level::Root {
            causes.push(Cause::forbidden(
                format!("{at}.additionalProperties"),
                "must not be used at the root",
            ));
        }
        if let JSONSchemaPropsOrBool::Schema(inner) = ap {
            invariants(
                inner,
                Level::Field,
                &format!("{at}.additionalProperties"),
                causes,
            );
        }
    }
    if int_or_string && preserve {
        causes.push(Cause {
            reason: "FieldValueInvalid",
            field: format!("{at}.x-kubernetes-preserve-unknown-fields"),
            message: "Invalid value: true: must be false if x-kubernetes-int-or-string is true"
                .into(),
        });
    }
    if int_or_string && embedded {
        causes.push(Cause {
            reason: "FieldValueInvalid",
            field: format!("{at}.x-kubernetes-embedded-resource"),
            message: "Invalid value: true: must be false if x-kubernetes-int-or-string is true"
                .into(),
        });
    }
    let skip_any_of = is_int_or_string_pair(s.any_of.as_ref());
    let skip_first_all_of_any_of = s
        .all_of
        .as_ref()
        .and_then(|a| a.first())
        .is_some_and(|first| is_int_or_string_pair(first.any_of.as_ref()));
    value_validation(s, skip_any_of, skip_first_all_of_any_of, at, causes);

    if embedded && ty != "object" {
        let detail = "must be object if x-kubernetes-embedded-resource is true";
        causes.push(if ty.is_empty() {
            required(format!("{at}.type"), detail)
        } else {
            Cause::invalid(format!("{at}.type"), ty, detail)
        });
    } else if ty.is_empty() && !int_or_string && !preserve {
        let detail = match level {
            Level::Root => "must not be empty at the root",
            Level::Item => "must not be empty for specified array items",
            Level::Field => "must not be empty for specified object fields",
        };
        causes.push(required(format!("{at}.type"), detail));
    }
    if embedded && s.additional_properties.is_some() {
        causes.push(Cause::forbidden(
            format!("{at}.additionalProperties"),
            "must not be used if x-kubernetes-embedded-resource is set",
        ));
    }
    if level == Level::Root && !ty.is_empty() && ty != "object" {
        causes.push(Cause::invalid(
            format!("{at}.type"),
            ty,
            "must be object at the root",
        ));
    }
    let check_meta = level == Level::Root || embedded;
    let props = s.properties.as_ref();
    for key in ["kind", "apiVersion"] {
        if let Some(p) = props.and_then(|p| p.get(key))
            && check_meta
            && p.type_.as_deref() != Some("string")
        {
            causes.push(Cause::invalid(
                format!("{at}.properties[{key}].type"),
                p.type_.as_deref().unwrap_or_default(),
                "must be string",
            ));
        }
    }
    if let Some(meta) = props.and_then(|p| p.get("metadata")) {
        let mat = format!("{at}.properties[metadata]");
        if check_meta && meta.type_.as_deref() != Some("object") {
            causes.push(Cause::invalid(
                format!("{mat}.type"),
                meta.type_.as_deref().unwrap_or_default(),
                "must be object",
            ));
        }
        if level == Level::Root {
            let mut rest = meta.clone();
            rest.type_ = None;
            rest.default = None;
            if let Some(p) = &rest.properties {
                let only_names = !p.is_empty()
                    && p.len() <= 2
                    && p.keys().all(|k| k == "name" || k == "generateName");
                if only_names {
                    rest.properties = None;
                }
            }
            if rest != JSONSchemaProps::default() {
                causes.push(Cause::forbidden(mat, "must not specify anything other than name and generateName, but metadata is implicitly specified"));
            }
        }
    }
    if embedded && !preserve && props.is_none_or(|p| p.is_empty()) {
        causes.push(required(format!("{at}.properties"), "must not be empty if x-kubernetes-embedded-resource is true without x-kubernetes-preserve-unknown-fields"));
    }
}

/// `validateValueValidation`: the junctors' schemas, and a pattern that compiles.
fn value_validation(
    s: &JSONSchemaProps,
    skip_any_of: bool,
    skip_first_all_of_any_of: bool,
    at: &str,
    causes: &mut Vec<Cause>,
) {
    if !skip_any_of {
        for (i, n) in s.any_of.iter().flatten().enumerate() {
            nested(n, false, &format!("{at}.anyOf[{i}]"), causes);
        }
    }
    for (i, n) in s.all_of.iter().flatten().enumerate() {
        nested(
            n,
            skip_first_all_of_any_of && i == 0,
            &format!("{at}.allOf[{i}]"),
            causes,
        );
    }
    for (i, n) in s.one_of.iter().flatten().enumerate() {
        nested(n, false, &format!("{at}.oneOf[{i}]"), causes);
    }
    if let Some(n) = &s.not {
        nested(n, false, &format!("{at}.not"), causes);
    }
    if let Some(p) = s.pattern.as_deref().filter(|p| !p.is_empty())
        && let Err(e) = regex::Regex::new(p)
    {
        causes.push(Cause::invalid(
            format!("{at}.pattern"),
            p,
            &format!("must be a valid regular expression, but isn't: {e}"),
        ));
    }
}

/// `validateNestedValueValidation`: a schema under a junctor may only restrict values.
fn nested(s: &JSONSchemaProps, skip_any_of: bool, at: &str, causes: &mut Vec<Cause>) {
    value_validation(s, skip_any_of, false, at, causes);
    if let Some(items) = items_of(s) {
        nested(items, false, &format!("{at}.items"), causes);
    }
    for (k, v) in s.properties.iter().flatten() {
        nested(v, false, &format!("{at}.properties[{k}]"), causes);
    }
    let forbidden = |cond: bool, field: &str, detail: &str, causes: &mut Vec<Cause>| {
        if cond {
            causes.push(Cause::forbidden(format!("{at}.{field}"), detail));
        }
    };
    forbidden(
        s.type_.as_deref().is_some_and(|t| !t.is_empty()),
        "type",
        "must be empty to be structural",
        causes,
    );
    forbidden(
        s.additional_properties.is_some(),
        "additionalProperties",
        "must be undefined to be structural",
        causes,
    );
    forbidden(
        s.default.is_some(),
        "default",
        "must be undefined to be structural",
        causes,
    );
    forbidden(
        s.title.as_deref().is_some_and(|t| !t.is_empty()),
        "title",
        "must be empty to be structural",
        causes,
    );
    forbidden(
        s.description.as_deref().is_some_and(|t| !t.is_empty()),
        "description",
        "must be empty to be structural",
        causes,
    );
    forbidden(
        s.nullable == Some(true),
        "nullable",
        "must be false to be structural",
        causes,
    );
    forbidden(
        s.x_kubernetes_preserve_unknown_fields == Some(true),
        "x-kubernetes-preserve-unknown-fields",
        "must be false to be structural",
        causes,
    );
    forbidden(
        s.x_kubernetes_embedded_resource == Some(true),
        "x-kubernetes-embedded-resource",
        "must be false to be structural",
        causes,
    );
    forbidden(
        s.x_kubernetes_int_or_string == Some(true),
        "x-kubernetes-int-or-string",
        "must be false to be structural",
        causes,
    );
    forbidden(
        s.x_kubernetes_list_map_keys
            .as_ref()
            .is_some_and(|k| !k.is_empty()),
        "x-kubernetes-list-map-keys",
        "must be empty to be structural",
        causes,
    );
    forbidden(
        s.x_kubernetes_list_type.is_some(),
        "x-kubernetes-list-type",
        "must be undefined to be structural",
        causes,
    );
    forbidden(
        s.x_kubernetes_map_type.is_some(),
        "x-kubernetes-map-type",
        "must be undefined to be structural",
        causes,
    );
    forbidden(
        s.x_kubernetes_validations
            .as_ref()
            .is_some_and(|v| !v.is_empty()),
        "x-kubernetes-validations",
        "must be empty to be structural",
        causes,
    );
    if s.properties
        .as_ref()
        .is_some_and(|p| p.contains_key("metadata"))
    {
        causes.push(Cause::forbidden(
            format!("{at}.properties[metadata]"),
            "must not be specified in a nested context",
        ));
    }
}

/// kube's `validateStructuralCompleteness`: every field a junctor at the root (`allOf`, `anyOf`, `oneOf`,
/// `not`) restricts is also specified outside it.
pub fn completeness(s: &JSONSchemaProps, at: &str, causes: &mut Vec<Cause>) {
    junctors(s, Some(s), at, at, causes);
}

/// `validateValueValidationCompleteness`: the junctors of `v` against the structural node `s`.
fn junctors(
    v: &JSONSchemaProps,
    s: Option<&JSONSchemaProps>,
    s_at: &str,
    v_at: &str,
    causes: &mut Vec<Cause>,
) {
    if let Some(n) = &v.not {
        nested_complete(n, s, s_at, &format!("{v_at}.not"), causes);
    }
    for (name, list) in [
        ("allOf", &v.all_of),
        ("anyOf", &v.any_of),
        ("oneOf", &v.one_of),
    ] {
        for (i, n) in list.iter().flatten().enumerate() {
            nested_complete(n, s, s_at, &format!("{v_at}.{name}[{i}]"), causes);
        }
    }
}

fn nested_complete(
    v: &JSONSchemaProps,
    s: Option<&JSONSchemaProps>,
    s_at: &str,
    v_at: &str,
    causes: &mut Vec<Cause>,
) {
    let Some(s) = s else {
        causes.push(required(
            s_at.to_string(),
            &format!("because it is defined in {v_at}"),
        ));
        return;
    };
    junctors(v, Some(s), s_at, v_at, causes);
    if let Some(items) = items_of(v) {
        nested_complete(
            items,
            items_of(s),
            &format!("{s_at}.items"),
            &format!("{v_at}.items"),
            causes,
        );
    }
    for (k, field) in v.properties.iter().flatten() {
        let s_at = format!("{s_at}.properties[{k}]");
        let v_at = format!("{v_at}.properties[{k}]");
        match s.properties.as_ref().and_then(|p| p.get(k)) {
            Some(sf) => nested_complete(field, Some(sf), &s_at, &v_at, causes),
            None => causes.push(required(s_at, &format!("because it is defined in {v_at}"))),
        }
    }
}
