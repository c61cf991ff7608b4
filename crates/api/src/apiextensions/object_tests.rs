//! Data-driven tests of custom objects under a compiled CRD version: validation, pruning and defaults,
//! CEL rules, printer columns, scale, server-side apply, each with kube-apiserver's answer word for word.

use serde_json::{Value, json};

use super::tests::{crd_with, lines, object_schema, spec_schema};
use super::*;

fn widgets(spec: Value) -> CustomResourceSchema {
    let crd = crd_with(object_schema(spec), |_| {});
    assert_eq!(lines(&validate_definition(&crd)), Vec::<String>::new());
    CustomResourceSchema::new(&crd, "v1").expect("v1")
}

fn widget(spec: Value) -> Value {
    json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": spec})
}

/// The causes of creating a Widget whose spec is `spec`, under a spec schema `schema`.
fn check_object(schema: Value, spec: Value, expected: &[&str]) {
    let w = widgets(schema.clone());
    let mut causes = Vec::new();
    w.admit(widget(spec.clone()), None, &mut causes);
    assert_eq!(lines(&causes), expected, "{schema} {spec}");
}

#[test]
fn object_validation_in_kube_openapi_words() {
    let props = |p: Value| json!({"type": "object", "properties": p});
    let cases = [
        (
            props(json!({"replicas": {"type": "integer"}})),
            json!({"replicas": "three"}),
            vec![
                r#"spec.replicas: Invalid value: "string": spec.replicas in body must be of type integer: "string""#,
            ],
        ),
        (
            props(json!({"replicas": {"type": "integer"}})),
            json!({"replicas": 1.5}),
            vec![
                r#"spec.replicas: Invalid value: "number": spec.replicas in body must be of type integer: "number""#,
            ],
        ),
        (
            props(json!({"replicas": {"type": "integer"}})),
            json!({"replicas": 2.0}),
            vec![],
        ),
        (
            json!({"type": "object", "required": ["image"], "properties": {"image": {"type": "string"}}}),
            json!({}),
            vec!["spec.image: Required value"],
        ),
        (
            props(json!({"mode": {"type": "string", "enum": ["fast", "slow"]}})),
            json!({"mode": "medium"}),
            vec![r#"spec.mode: Unsupported value: "medium": supported values: "fast", "slow""#],
        ),
        (
            props(json!({"n": {"type": "integer", "minimum": 1, "maximum": 10}})),
            json!({"n": 11}),
            vec!["spec.n: Invalid value: 11: spec.n in body should be less than or equal to 10"],
        ),
        (
            props(json!({"n": {"type": "integer", "minimum": 1, "exclusiveMinimum": true}})),
            json!({"n": 1}),
            vec!["spec.n: Invalid value: 1: spec.n in body should be greater than 1"],
        ),
        (
            props(json!({"n": {"type": "number", "multipleOf": 0.5}})),
            json!({"n": 1.25}),
            vec!["spec.n: Invalid value: 1.25: spec.n in body should be a multiple of 0.5"],
        ),
        (
            props(json!({"s": {"type": "string", "maxLength": 3}})),
            json!({"s": "abcd"}),
            vec!["spec.s: Too long: may not be more than 3 bytes"],
        ),
        (
            props(json!({"s": {"type": "string", "minLength": 2}})),
            json!({"s": "a"}),
            vec![r#"spec.s: Invalid value: "a": spec.s in body should be at least 2 chars long"#],
        ),
        (
            props(json!({"s": {"type": "string", "pattern": "^[a-z]+$"}})),
            json!({"s": "A1"}),
            vec![r#"spec.s: Invalid value: "A1": spec.s in body should match '^[a-z]+$'"#],
        ),
        (
            props(json!({"l": {"type": "array", "maxItems": 1, "items": {"type": "string"}}})),
            json!({"l": ["a", "b"]}),
            vec!["spec.l: Too many: 2: must have at most 1 item"],
        ),
        (
            props(json!({"l": {"type": "array", "minItems": 1, "items": {"type": "string"}}})),
            json!({"l": []}),
            vec!["spec.l: Invalid value: 0: spec.l in body should have at least 1 items"],
        ),
        (
            props(json!({"l": {"type": "array", "items": {"type": "integer"}}})),
            json!({"l": [1, "x"]}),
            vec![
                r#"spec.l[1]: Invalid value: "string": spec.l[1] in body must be of type integer: "string""#,
            ],
        ),
        (
            props(
                json!({"m": {"type": "object", "maxProperties": 1, "additionalProperties": {"type": "string"}}}),
            ),
            json!({"m": {"a": "x", "b": "y"}}),
            vec!["spec.m: Too many: 2: must have at most 1 item"],
        ),
        (
            props(json!({"m": {"type": "object", "additionalProperties": {"type": "integer"}}})),
            json!({"m": {"a": true}}),
            vec![
                r#"spec.m.a: Invalid value: "boolean": spec.m.a in body must be of type integer: "boolean""#,
            ],
        ),
        (
            props(json!({"t": {"type": "string", "format": "date-time"}})),
            json!({"t": "yesterday"}),
            vec![
                r#"spec.t: Invalid value: "yesterday": spec.t in body must be of type date-time: "yesterday""#,
            ],
        ),
        (
            props(json!({"s": {"type": "string"}})),
            json!({"s": null}),
            vec![],
        ),
        (
            props(json!({"s": {"type": "string", "nullable": true}})),
            json!({"s": null}),
            vec![],
        ),
        (
            props(json!({"p": {"x-kubernetes-int-or-string": true}})),
            json!({"p": "80%"}),
            vec![],
        ),
        (
            props(json!({"p": {"x-kubernetes-int-or-string": true}})),
            json!({"p": 80}),
            vec![],
        ),
        (
            props(json!({"p": {"x-kubernetes-int-or-string": true}})),
            json!({"p": true}),
            vec![
                r#"spec.p: Invalid value: "boolean": spec.p in body must be of type integer,string: "boolean""#,
            ],
        ),
        (
            props(
                json!({"tags": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}}}),
            ),
            json!({"tags": ["a", "b", "a"]}),
            vec![r#"spec.tags[2]: Duplicate value: "a""#],
        ),
        (
            props(
                json!({"ports": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
            "items": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}, "port": {"type": "integer"}}}}}),
            ),
            json!({"ports": [{"name": "http", "port": 80}, {"name": "http", "port": 81}]}),
            vec![r#"spec.ports[1]: Duplicate value: map[string]interface {}{"name":"http"}"#],
        ),
    ];
    for (schema, spec, expected) in cases {
        check_object(schema, spec, &expected);
    }
}

#[test]
fn a_non_nullable_null_is_dropped_before_validation() {
    // kube's PruneNonNullableNullsWithoutDefaults: the null goes, so nothing is refused.
    let w = widgets(json!({"type": "object", "properties": {"s": {"type": "string"}}}));
    let mut causes = Vec::new();
    let stored = w.admit(widget(json!({"s": null})), None, &mut causes);
    assert!(causes.is_empty());
    assert_eq!(stored["spec"], json!({}));
}

#[test]
fn embedded_resources_need_api_version_kind_and_valid_metadata() {
    let schema = json!({"type": "object", "properties": {"template": {"type": "object",
        "x-kubernetes-embedded-resource": true, "x-kubernetes-preserve-unknown-fields": true}}});
    check_object(
        schema.clone(),
        json!({"template": {"metadata": {"name": "a/b", "labels": {"app": "x y"}}}}),
        &[
            "spec.template.apiVersion: Required value",
            "spec.template.kind: Required value",
            r#"spec.template.metadata.name: Invalid value: "a/b": may not contain '/'"#,
            r#"spec.template.metadata.labels: Invalid value: "x y": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.'"#,
        ],
    );
    let w = widgets(schema);
    let mut causes = Vec::new();
    let stored = w.admit(
        widget(json!({"template": {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "bogus": 1}, "spec": {"anything": true}}})),
        None,
        &mut causes,
    );
    assert!(causes.is_empty(), "{causes:?}");
    // Unknown metadata fields go even below preserve-unknown-fields; the rest is kept.
    assert_eq!(
        stored["spec"]["template"],
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"anything": true}})
    );
}

#[test]
fn the_object_name_is_a_dns_subdomain() {
    let w = widgets(json!({"type": "object"}));
    let mut causes = Vec::new();
    let mut obj = widget(json!({}));
    obj["metadata"]["name"] = json!("Bad_Name");
    w.admit(obj, None, &mut causes);
    assert_eq!(
        lines(&causes),
        [format!(
            "metadata.name: Invalid value: \"Bad_Name\": {}",
            crate::validation::DNS1123_SUBDOMAIN_MSG
        )]
    );
}

/// Pruning and defaulting: the stored object and the pruned paths.
fn check_coerce(schema: Value, input: Value, stored: Value, pruned: &[&str]) {
    let w = widgets(schema.clone());
    let mut obj = widget(input);
    obj["status"] = json!({"anything": "kept"});
    obj["metadata"]["bogus"] = json!("x");
    let got = w.coerce(&mut obj);
    let mut want: Vec<String> = vec!["metadata.bogus".into()];
    want.extend(pruned.iter().map(|p| p.to_string()));
    want.sort();
    let mut got_sorted = got.clone();
    got_sorted.sort();
    assert_eq!(got_sorted, want, "{schema}");
    assert_eq!(obj["spec"], stored, "{schema}");
    assert_eq!(obj["status"], json!({"anything": "kept"}));
    assert_eq!(obj["metadata"], json!({"name": "w"}));
}

#[test]
fn pruning_and_defaulting_in_kubes_order() {
    let cases = [
        (
            json!({"type": "object", "properties": {"a": {"type": "string"}}}),
            json!({"a": "x", "b": 1, "c": {"d": 2}}),
            json!({"a": "x"}),
            vec!["spec.b", "spec.c"],
        ),
        (
            json!({"type": "object", "properties": {"replicas": {"type": "integer", "default": 1},
                "mode": {"type": "string", "default": "fast"}}}),
            json!({"mode": "slow"}),
            json!({"replicas": 1, "mode": "slow"}),
            vec![],
        ),
        (
            json!({"type": "object", "properties": {"items": {"type": "array", "items": {"type": "object",
                "properties": {"name": {"type": "string"}, "port": {"type": "integer", "default": 80}}}}}}),
            json!({"items": [{"name": "a"}, {"name": "b", "port": 81, "x": true}]}),
            json!({"items": [{"name": "a", "port": 80}, {"name": "b", "port": 81}]}),
            vec!["spec.items[1].x"],
        ),
        (
            json!({"type": "object", "properties": {"m": {"type": "object", "additionalProperties": {"type": "object",
                "properties": {"on": {"type": "boolean", "default": true}}}}}}),
            json!({"m": {"k.with.dots": {"extra": 1}}}),
            json!({"m": {"k.with.dots": {"on": true}}}),
            vec!["spec.m.k.with.dots.extra"],
        ),
        (
            json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true, "properties": {
                "known": {"type": "object", "properties": {"a": {"type": "integer"}}}}}),
            json!({"free": {"x": 1}, "known": {"a": 1, "b": 2}}),
            json!({"free": {"x": 1}, "known": {"a": 1}}),
            vec!["spec.known.b"],
        ),
        (
            // A default is applied to a non-nullable null, then nothing is pruned from it.
            json!({"type": "object", "properties": {"s": {"type": "string", "default": "d"}}}),
            json!({"s": null}),
            json!({"s": "d"}),
            vec![],
        ),
        (
            // Pruning comes first: a default's unknown field would have been refused with the CRD, and a
            // sent one is pruned before defaults fill in.
            json!({"type": "object", "properties": {"o": {"type": "object", "default": {"a": 1},
                "properties": {"a": {"type": "integer"}}}}}),
            json!({}),
            json!({"o": {"a": 1}}),
            vec![],
        ),
    ];
    for (schema, input, stored, pruned) in cases {
        check_coerce(schema, input, stored, &pruned);
    }
}

fn with_rules(rules: Value) -> CustomResourceSchema {
    widgets(
        json!({"type": "object", "x-kubernetes-validations": rules, "properties": {
        "replicas": {"type": "integer"}, "min": {"type": "integer"}, "mode": {"type": "string"},
        "ratio": {"type": "number"},
        "ports": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
            "items": {"type": "object", "required": ["name"], "properties": {
                "name": {"type": "string"}, "port": {"type": "integer",
                "x-kubernetes-validations": [{"rule": "self == oldSelf", "message": "port is immutable"}]}}}}}}),
    )
}

/// The causes of a Widget create (`old` is `None`) or update under `rules` on its spec.
fn check_rules(rules: Value, spec: Value, old: Option<Value>, expected: &[&str]) {
    let w = with_rules(rules.clone());
    let mut causes = Vec::new();
    let old = old.map(widget);
    w.admit(widget(spec), old.as_ref(), &mut causes);
    assert_eq!(lines(&causes), expected, "{rules}");
}

#[test]
fn cel_rules_with_kubes_wording() {
    let cases = [
        (
            json!([{"rule": "self.replicas >= self.min"}]),
            json!({"replicas": 1, "min": 2}),
            None,
            vec!["spec: Invalid value: failed rule: self.replicas >= self.min"],
        ),
        (
            json!([{"rule": "self.replicas >= self.min", "message": "replicas below min"}]),
            json!({"replicas": 1, "min": 2}),
            None,
            vec!["spec: Invalid value: replicas below min"],
        ),
        (
            json!([{"rule": "self.replicas >= self.min", "messageExpression": "'replicas ' + string(self.replicas) + ' < ' + string(self.min)"}]),
            json!({"replicas": 1, "min": 2}),
            None,
            vec!["spec: Invalid value: replicas 1 < 2"],
        ),
        (
            json!([{"rule": "self.replicas >= self.min", "fieldPath": ".replicas", "reason": "FieldValueForbidden", "message": "too few"}]),
            json!({"replicas": 1, "min": 2}),
            None,
            vec!["spec.replicas: Forbidden: too few"],
        ),
        (
            json!([{"rule": "self.replicas >= 0"}]),
            json!({"replicas": 3}),
            None,
            vec![],
        ),
        (
            json!([{"rule": "self.mode.startsWith('f') && self.mode.size() < 5"}]),
            json!({"mode": "fast"}),
            None,
            vec![],
        ),
        (
            json!([{"rule": "self.mode in ['fast', 'slow']"}]),
            json!({"mode": "medium"}),
            None,
            vec!["spec: Invalid value: failed rule: self.mode in ['fast', 'slow']"],
        ),
        (
            json!([{"rule": "self.ratio < 1.0"}]),
            json!({"ratio": 2}),
            None,
            vec!["spec: Invalid value: failed rule: self.ratio < 1.0"],
        ),
        (
            json!([{"rule": "!has(self.mode) || self.mode.matches('^[a-z]+$')"}]),
            json!({"mode": "UP"}),
            None,
            vec![
                "spec: Invalid value: failed rule: !has(self.mode) || self.mode.matches('^[a-z]+$')",
            ],
        ),
        (
            json!([{"rule": "self.ports.all(p, p.port > 0)"}]),
            json!({"ports": [{"name": "a", "port": 0}]}),
            None,
            vec!["spec: Invalid value: failed rule: self.ports.all(p, p.port > 0)"],
        ),
        (
            json!([{"rule": "self.mode == 'x'"}]),
            json!({}),
            None,
            vec![
                r#"spec: Invalid value: "object": no such key: mode evaluating rule: self.mode == 'x'"#,
            ],
        ),
        // Transition rules run only on an update, against the old value.
        (
            json!([{"rule": "self.replicas >= oldSelf.replicas", "message": "replicas may not shrink"}]),
            json!({"replicas": 1}),
            None,
            vec![],
        ),
        (
            json!([{"rule": "self.replicas >= oldSelf.replicas", "message": "replicas may not shrink"}]),
            json!({"replicas": 1}),
            Some(json!({"replicas": 2})),
            vec!["spec: Invalid value: replicas may not shrink"],
        ),
        // Map-list items correlate by key: a changed port of the same name is refused, a new name is not.
        (
            json!([]),
            json!({"ports": [{"name": "a", "port": 81}, {"name": "b", "port": 1}]}),
            Some(json!({"ports": [{"name": "a", "port": 80}]})),
            vec!["spec.ports[0].port: Invalid value: 81: port is immutable"],
        ),
    ];
    for (rules, spec, old, expected) in cases {
        check_rules(rules, spec, old, &expected);
    }
}

#[test]
fn printer_columns_become_typed_cells() {
    let obj = json!({
        "metadata": {"name": "w", "creationTimestamp": "2024-01-01T00:00:00Z"},
        "spec": {"replicas": 3, "ratio": 0.5, "on": true, "tags": ["a", "b"], "labels": {"b": "2", "a": "1"}},
        "status": {"conditions": [{"type": "Synced", "status": "False"}, {"type": "Ready", "status": "True"}],
            "when": "not a time"}
    });
    let cases = [
        ("integer", ".spec.replicas", Cell::Integer(3)),
        ("integer", ".spec.ratio", Cell::Integer(0)),
        ("number", ".spec.replicas", Cell::Number(3.0)),
        ("boolean", ".spec.on", Cell::Boolean(true)),
        ("boolean", ".spec.replicas", Cell::Null),
        (
            "string",
            ".status.conditions[?(@.type==\"Ready\")].status",
            Cell::String("True".into()),
        ),
        (
            "string",
            ".status.conditions[?(@.type=='Synced')].status",
            Cell::String("False".into()),
        ),
        (
            "string",
            ".status.conditions[1].type",
            Cell::String("Ready".into()),
        ),
        ("string", ".spec.tags", Cell::String("[a b]".into())),
        (
            "string",
            ".spec.labels",
            Cell::String("map[a:1 b:2]".into()),
        ),
        ("string", ".spec.replicas", Cell::String("3".into())),
        ("string", ".spec.missing", Cell::Null),
        ("string", ".metadata['name']", Cell::String("w".into())),
        (
            "date",
            ".metadata.creationTimestamp",
            Cell::Date("2024-01-01T00:00:00Z".parse().expect("a time")),
        ),
        ("date", ".status.when", Cell::InvalidDate),
    ];
    for (type_, path, want) in cases {
        let def = serde_json::from_value(json!({"name": "C", "type": type_, "jsonPath": path}))
            .expect("a column");
        let columns = PrinterColumn::for_version(Some(&[def]));
        assert_eq!(columns[0].cell(&obj), want, "{type_} {path}");
    }
    let age = PrinterColumn::for_version(None);
    assert_eq!(
        (age[0].name.as_str(), age[0].type_.as_str()),
        ("Age", "date")
    );
    assert_eq!(
        Cell::InvalidDate.to_json(|_| String::new()),
        json!("<invalid>")
    );
}

#[test]
fn the_scale_subresource_reads_and_writes_the_named_paths() {
    let crd = crd_with(spec_schema(), |v| {
        v["spec"]["versions"][0]["subresources"] = json!({"scale": {"specReplicasPath": ".spec.replicas",
            "statusReplicasPath": ".status.ready", "labelSelectorPath": ".status.selector"}});
    });
    assert!(validate_definition(&crd).is_empty());
    let w = CustomResourceSchema::new(&crd, "v1").expect("v1");
    let scale = w.scale.as_ref().expect("scale");
    let mut obj = json!({"metadata": {"name": "w", "namespace": "default", "uid": "u", "resourceVersion": "7"},
        "spec": {"replicas": 2}, "status": {"ready": 1, "selector": "app=w"}});
    assert_eq!(
        scale.scale_of(&obj).expect("a scale"),
        json!({"kind": "Scale", "apiVersion": "autoscaling/v1",
            "metadata": {"name": "w", "namespace": "default", "uid": "u", "resourceVersion": "7"},
            "spec": {"replicas": 2}, "status": {"replicas": 1, "selector": "app=w"}})
    );
    scale.set_replicas(&mut obj, 5).expect("written");
    assert_eq!(obj["spec"]["replicas"], json!(5));
    let mut bare = json!({"metadata": {"name": "w"}});
    assert_eq!(
        scale.scale_of(&bare).expect("a scale")["spec"]["replicas"],
        json!(0)
    );
    scale.set_replicas(&mut bare, 1).expect("written");
    assert_eq!(bare["spec"], json!({"replicas": 1}));
    obj["spec"]["replicas"] = json!("two");
    assert_eq!(
        scale.scale_of(&obj).map_err(|e| e.to_string()),
        Err(".spec.replicas accessor error: \"two\" is of the type string, expected int64".into())
    );
}

#[test]
fn server_side_apply_follows_the_list_types_of_the_schema() {
    let w = widgets(json!({"type": "object", "properties": {
        "ports": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
            "items": {"type": "object", "required": ["name"], "properties": {
                "name": {"type": "string"}, "port": {"type": "integer"}}}},
        "tags": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}},
        "args": {"type": "array", "items": {"type": "string"}},
        "selector": {"type": "object", "x-kubernetes-map-type": "atomic", "additionalProperties": {"type": "string"}},
        "routes": {"type": "object", "additionalProperties": {"type": "object", "properties": {
            "hosts": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}}}}}}}));
    let schema = w.apply_schema();
    assert_eq!(schema.api_version(), "example.com/v1");
    let keys = [crate::patch::ListKey {
        name: "name".to_string().into(),
        default: None,
    }];
    assert_eq!(
        schema.list_type("spec.ports"),
        crate::patch::ListType::Map(&keys)
    );
    assert_eq!(schema.list_type("spec.tags"), crate::patch::ListType::Set);
    assert_eq!(
        schema.list_type("spec.args"),
        crate::patch::ListType::Atomic
    );
    assert_eq!(
        schema.list_type("spec.routes.a.example.com.hosts"),
        crate::patch::ListType::Set
    );
    assert!(schema.is_atomic_object("spec.selector"));
    assert!(!schema.is_atomic_object("spec.routes"));

    let now = "2024-01-01T00:00:00Z";
    let a = json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"},
        "spec": {"ports": [{"name": "http", "port": 80}], "tags": ["a"], "args": ["x"]}});
    let live = crate::patch::server_side_apply_with(schema, None, &a, "alice", false, now)
        .expect("applied");
    let b = json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"},
        "spec": {"ports": [{"name": "https", "port": 443}], "tags": ["b"]}});
    let merged = crate::patch::server_side_apply_with(schema, Some(&live), &b, "bob", false, now)
        .expect("applied");
    // Keyed items and set members of two managers live side by side; the atomic list stays alice's.
    assert_eq!(
        merged["spec"]["ports"],
        json!([{"name": "http", "port": 80}, {"name": "https", "port": 443}])
    );
    assert_eq!(merged["spec"]["tags"], json!(["a", "b"]));
    assert_eq!(merged["spec"]["args"], json!(["x"]));
    let c = json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"},
        "spec": {"ports": [{"name": "http", "port": 8080}]}});
    let conflict =
        crate::patch::server_side_apply_with(schema, Some(&merged), &c, "carol", false, now);
    assert!(
        matches!(&conflict, Err(crate::patch::ApplyError::Conflicts(c)) if c.conflicts.iter().any(|c| c.field.contains("port"))),
        "{conflict:?}"
    );
}

#[test]
fn the_strategy_admits_through_the_table_path() {
    let w = std::sync::Arc::new(widgets(
        json!({"type": "object", "properties": {"replicas": {"type": "integer", "default": 1}}}),
    ));
    let strategy = CustomStrategy(w);
    let mut causes = Vec::new();
    let out = strategy
        .admit(widget(json!({"extra": 1})), &mut causes)
        .expect("admitted");
    assert!(causes.is_empty());
    assert_eq!(out["spec"], json!({"replicas": 1}));
    assert_eq!(
        strategy
            .known_fields(&widget(json!({"extra": 1})))
            .map(|k| k["spec"].clone()),
        Some(json!({}))
    );
    assert!(matches!(
        strategy.admit(json!([]), &mut causes),
        Err(AdmitError::BadRequest(_))
    ));
}

#[test]
fn updates_ratchet_errors_about_unchanged_values() {
    let w = widgets(json!({"type": "object", "required": ["image"],
        "x-kubernetes-validations": [{"rule": "self.replicas <= 10", "message": "at most 10"}],
        "properties": {
            "image": {"type": "string"},
            "mode": {"type": "string", "enum": ["fast", "slow"]},
            "replicas": {"type": "integer"},
            "ports": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
                "items": {"type": "object", "required": ["name"], "properties": {
                    "name": {"type": "string"}, "port": {"type": "integer", "maximum": 100}}}}}}));
    // Stored before the schema was tightened.
    let old = widget(json!({"image": "a", "mode": "medium", "replicas": 20,
        "ports": [{"name": "a", "port": 8080}, {"name": "b", "port": 80}]}));
    let cases = [
        // Unchanged bad values pass.
        (
            json!({"image": "a", "mode": "medium", "replicas": 20,
            "ports": [{"name": "a", "port": 8080}, {"name": "b", "port": 80}]}),
            vec![],
        ),
        // Reordered map-list items keep their identity: the port ratchets, the (changed) spec does not.
        (
            json!({"image": "a", "mode": "medium", "replicas": 20,
            "ports": [{"name": "b", "port": 80}, {"name": "a", "port": 8080}]}),
            vec!["spec: Invalid value: at most 10"],
        ),
        // A changed port and a new bad mode are reported.
        (
            json!({"image": "a", "mode": "other", "replicas": 20,
            "ports": [{"name": "a", "port": 8081}, {"name": "b", "port": 80}]}),
            vec![
                r#"spec.mode: Unsupported value: "other": supported values: "fast", "slow""#,
                "spec.ports[0].port: Invalid value: 8081: spec.ports[0].port in body should be less than or equal to 100",
                "spec: Invalid value: at most 10",
            ],
        ),
        // A changed spec is judged whole again: the missing image is reported.
        (
            json!({"mode": "fast", "replicas": 1}),
            vec!["spec.image: Required value"],
        ),
    ];
    for (spec, expected) in cases {
        let mut causes = Vec::new();
        w.admit(widget(spec.clone()), Some(&old), &mut causes);
        assert_eq!(lines(&causes), expected, "{spec}");
    }
}
