//! Data-driven tests of the CRD itself: each case is an input and kube-apiserver's answer, word for word.
//! The custom objects' tests are in `object_tests`.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde_json::{Value, json};

use super::*;

/// A Widget CRD (`widgets.example.com`, one version `v1`) with `schema` as its openAPIV3Schema, after
/// `tweak` changes its JSON.
pub(super) fn crd_with(schema: Value, tweak: impl FnOnce(&mut Value)) -> CustomResourceDefinition {
    let mut v = json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com",
            "scope": "Namespaced",
            "names": {"plural": "widgets", "kind": "Widget"},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": schema}}]
        }
    });
    tweak(&mut v);
    let mut crd: CustomResourceDefinition = serde_json::from_value(v).expect("a CRD");
    default_definition(&mut crd);
    crd
}

pub(super) fn object_schema(spec: Value) -> Value {
    json!({"type": "object", "properties": {"spec": spec, "status": {"type": "object",
        "x-kubernetes-preserve-unknown-fields": true}}})
}

/// A change to a CRD's JSON.
type Tweak = Box<dyn FnOnce(&mut Value)>;

pub(super) fn lines(causes: &[Cause]) -> Vec<String> {
    causes
        .iter()
        .map(|c| format!("{}: {}", c.field, c.message))
        .collect()
}

/// The causes of creating the CRD made by `tweak`.
fn check_crd(schema: Value, tweak: impl FnOnce(&mut Value), expected: &[&str]) {
    let crd = crd_with(schema, tweak);
    assert_eq!(lines(&validate_definition(&crd)), expected);
}

pub(super) fn spec_schema() -> Value {
    object_schema(json!({"type": "object", "properties": {"replicas": {"type": "integer"}}}))
}

#[test]
fn a_valid_definition_has_no_causes_and_gets_kube_defaults() {
    let crd = crd_with(spec_schema(), |_| {});
    assert!(validate_definition(&crd).is_empty());
    assert_eq!(crd.spec.names.singular.as_deref(), Some("widget"));
    assert_eq!(crd.spec.names.list_kind.as_deref(), Some("WidgetList"));
    assert_eq!(
        crd.spec.conversion.as_ref().map(|c| c.strategy.as_str()),
        Some("None")
    );
    assert_eq!(
        crd.status.and_then(|s| s.stored_versions),
        Some(vec!["v1".to_string()])
    );
}

#[test]
fn definition_names_group_scope_and_versions() {
    let cases: Vec<(Tweak, Vec<&str>)> = vec![
        (
            Box::new(|v| v["metadata"]["name"] = json!("gadgets.example.com")),
            vec![
                r#"metadata.name: Invalid value: "gadgets.example.com": must be spec.names.plural+"."+spec.group"#,
            ],
        ),
        (
            Box::new(|v| {
                v["spec"]["group"] = json!("example");
                v["metadata"]["name"] = json!("widgets.example");
            }),
            vec![
                r#"spec.group: Invalid value: "example": should be a domain with at least one dot"#,
            ],
        ),
        (
            Box::new(|v| v["spec"]["scope"] = json!("Global")),
            vec![
                r#"spec.scope: Unsupported value: "Global": supported values: "Cluster", "Namespaced""#,
            ],
        ),
        (
            Box::new(|v| v["spec"]["versions"][0]["storage"] = json!(false)),
            vec![
                r#"spec.versions: Invalid value: "": must have exactly one version marked as storage version"#,
            ],
        ),
        (
            Box::new(|v| {
                let first = v["spec"]["versions"][0].clone();
                let mut second = first.clone();
                second["storage"] = json!(false);
                v["spec"]["versions"] = json!([first, second]);
            }),
            vec![r#"spec.versions: Invalid value: "": must contain unique version names"#],
        ),
        (
            Box::new(|v| v["spec"]["versions"][0]["name"] = json!("V1")),
            vec![
                r#"spec.versions[0].name: Invalid value: "V1": a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"#,
            ],
        ),
        (
            Box::new(|v| {
                v["spec"]["names"] = json!({"plural": "widgets", "singular": "widget", "kind": "Wid_get", "listKind": "WidgetList"});
            }),
            vec![
                r#"spec.names.kind: Invalid value: "Wid_get": may have mixed case, but should otherwise match: a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"#,
            ],
        ),
        (
            Box::new(|v| v["spec"]["names"]["listKind"] = json!("Widget")),
            vec![
                r#"spec.names.listKind: Invalid value: "Widget": kind and listKind may not be the same"#,
            ],
        ),
        (
            Box::new(|v| v["spec"]["versions"][0]["schema"] = Value::Null),
            vec!["spec.versions[0].schema.openAPIV3Schema: Required value"],
        ),
        (
            Box::new(|v| v["spec"]["conversion"] = json!({"strategy": "Webhook"})),
            vec![
                r#"spec.conversion.strategy: Unsupported value: "Webhook": supported values: "None""#,
            ],
        ),
        (
            Box::new(|v| v["spec"]["preserveUnknownFields"] = json!(true)),
            vec![
                "spec.preserveUnknownFields: Invalid value: true: cannot set to true, set x-kubernetes-preserve-unknown-fields to true in spec.versions[*].schema instead",
            ],
        ),
    ];
    for (tweak, expected) in cases {
        check_crd(spec_schema(), tweak, &expected);
    }
}

#[test]
fn structural_schema_rules_with_kubes_paths() {
    let at = "spec.validation.openAPIV3Schema";
    let cases = [
        (
            json!({"type": "object", "properties": {"spec": {"properties": {"a": {"type": "string"}}}}}),
            vec![format!(
                "{at}.properties[spec].type: Required value: must not be empty for specified object fields"
            )],
        ),
        (
            json!({"type": "object", "properties": {"list": {"type": "array"}}}),
            vec![format!(
                "{at}.properties[list].items: Required value: must be specified"
            )],
        ),
        (
            json!({"type": "object", "properties": {"list": {"type": "array", "items": {}}}}),
            vec![format!(
                "{at}.properties[list].items.type: Required value: must not be empty for specified array items"
            )],
        ),
        (
            json!({"properties": {"a": {"type": "string"}}}),
            vec![format!(
                "{at}.type: Required value: must not be empty at the root"
            )],
        ),
        (
            json!({"type": "object", "additionalProperties": {"type": "string"}}),
            vec![format!(
                "{at}.additionalProperties: Forbidden: must not be used at the root"
            )],
        ),
        (
            json!({"type": "object", "properties": {"metadata": {"type": "object", "properties": {"labels": {"type": "object"}}}}}),
            vec![format!(
                "{at}.properties[metadata]: Forbidden: must not specify anything other than name and generateName, but metadata is implicitly specified"
            )],
        ),
        (
            json!({"type": "object", "properties": {"t": {"type": "object", "x-kubernetes-embedded-resource": true}}}),
            vec![format!(
                "{at}.properties[t].properties: Required value: must not be empty if x-kubernetes-embedded-resource is true without x-kubernetes-preserve-unknown-fields"
            )],
        ),
        (
            json!({"type": "object", "properties": {"a": {"type": "string", "anyOf": [{"type": "string"}]}}}),
            vec![format!(
                "{at}.properties[a].anyOf[0].type: Forbidden: must be empty to be structural"
            )],
        ),
        (
            json!({"type": "object", "properties": {"a": {"type": "string"}},
                "anyOf": [{"properties": {"a": {"minLength": 1}}}, {"properties": {"b": {"minLength": 1}}}]}),
            vec![format!(
                "{at}.properties[b]: Required value: because it is defined in {at}.anyOf[1].properties[b]"
            )],
        ),
        (
            json!({"type": "object", "properties": {"p": {"x-kubernetes-int-or-string": true, "anyOf": [{"type": "integer"}, {"type": "string"}]}}}),
            vec![],
        ),
        (
            json!({"type": "object", "properties": {"a": {"type": "string", "pattern": "("}}}),
            vec![format!(
                "{at}.properties[a].pattern: Invalid value: \"(\": must be a valid regular expression, but isn't: regex parse error:\n    (\n    ^\nerror: unclosed group"
            )],
        ),
    ];
    for (schema, expected) in cases {
        let crd = crd_with(schema.clone(), |_| {});
        assert_eq!(lines(&validate_definition(&crd)), expected, "{schema}");
    }
}

#[test]
fn schema_extension_and_default_rules() {
    let at = "spec.validation.openAPIV3Schema.properties[spec]";
    let cases = [
        (
            json!({"type": "object", "properties": {"l": {"type": "array", "x-kubernetes-list-type": "map", "items": {"type": "object", "properties": {"name": {"type": "string"}}}}}}),
            vec![format!(
                "{at}.properties[l].x-kubernetes-list-map-keys: Required value: must not be empty if x-kubernetes-list-type is map"
            )],
        ),
        (
            json!({"type": "object", "properties": {"l": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"], "items": {"type": "object", "properties": {"name": {"type": "string"}}}}}}),
            vec![format!(
                "{at}.properties[l].items.properties[name].default: Required value: this property is in x-kubernetes-list-map-keys, so it must have a default or be a required property"
            )],
        ),
        (
            json!({"type": "object", "properties": {"l": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["id"], "items": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}}}}}),
            vec![format!(
                "{at}.properties[l].x-kubernetes-list-map-keys: Invalid value: []string{{\"id\"}}: entries must all be names of item properties"
            )],
        ),
        (
            json!({"type": "object", "properties": {"s": {"type": "string", "x-kubernetes-list-type": "set"}}}),
            vec![format!(
                "{at}.properties[s].type: Invalid value: \"string\": must be array if x-kubernetes-list-type is specified"
            )],
        ),
        (
            json!({"type": "object", "properties": {"l": {"type": "array", "x-kubernetes-list-type": "bag", "items": {"type": "string"}}}}),
            vec![format!(
                "{at}.properties[l].x-kubernetes-list-type: Unsupported value: \"bag\": supported values: \"atomic\", \"set\", \"map\""
            )],
        ),
        (
            json!({"type": "object", "properties": {"m": {"type": "object", "x-kubernetes-map-type": "loose"}}}),
            vec![format!(
                "{at}.properties[m].x-kubernetes-map-type: Unsupported value: \"loose\": supported values: \"atomic\", \"granular\""
            )],
        ),
        (
            json!({"type": "object", "properties": {"n": {"type": "integer", "default": "three"}}}),
            vec![format!(
                "{at}.properties[n].default: Invalid value: \"string\": {at}.properties[n].default in body must be of type integer: \"string\""
            )],
        ),
        (
            json!({"type": "object", "properties": {"o": {"type": "object", "default": {"a": 1, "b": 2},
                "properties": {"a": {"type": "integer"}}}}}),
            vec![format!(
                "{at}.properties[o].default: Invalid value: map[string]interface {{}}{{\"a\":1, \"b\":2}}: must not have unknown fields"
            )],
        ),
        (
            json!({"type": "object", "properties": {"n": {"type": "integer", "default": 0,
                "x-kubernetes-validations": [{"rule": "self > 0", "message": "must be positive"}]}}}),
            vec![format!(
                "{at}.properties[n].default: Invalid value: 0: must be positive"
            )],
        ),
        (
            json!({"type": "object", "properties": {"l": {"type": "array", "uniqueItems": true, "items": {"type": "string"}}}}),
            vec![format!(
                "{at}.properties[l].uniqueItems: Forbidden: uniqueItems cannot be set to true since the runtime complexity becomes quadratic"
            )],
        ),
        (
            json!({"type": "object", "properties": {"n": {"type": "null"}}}),
            vec![format!(
                "{at}.properties[n].type: Forbidden: type cannot be set to null, use nullable as an alternative"
            )],
        ),
        (
            json!({"type": "object", "x-kubernetes-validations": [{"rule": "self.replicas >"}]}),
            vec![format!(
                "{at}.x-kubernetes-validations[0].rule: Invalid value: apiextensions.ValidationRule{{Rule:\"self.replicas >\", Message:\"\", MessageExpression:\"\", Reason:(*apiextensions.FieldValueErrorReason)(nil), FieldPath:\"\", OptionalOldSelf:(*bool)(nil)}}: compilation failed: ERROR: <input>:1:16: Syntax error: mismatched input '<EOF>' expecting {{'[', '{{', '(', '.', '-', '!', 'true', 'false', 'null', NUM_FLOAT, NUM_INT, NUM_UINT, STRING, BYTES, IDENTIFIER}}\n| self.replicas >\n| ...............^"
            )],
        ),
        (
            json!({"type": "object", "properties": {"replicas": {"type": "integer"}, "items": {"type": "array",
                "items": {"type": "object", "properties": {"name": {"type": "string"}}}}},
                "x-kubernetes-validations": [
                    {"rule": "self.replicas > 0 && self.items.all(i, i.name != '')"},
                    {"rule": "has(self.replicsa)"},
                    {"rule": "self.items.exists(i,\n i.nmae == 'a')", "message": "needs a"}]}),
            vec![
                format!(
                    "{at}.x-kubernetes-validations[1].rule: Invalid value: apiextensions.ValidationRule{{Rule:\"has(self.replicsa)\", Message:\"\", MessageExpression:\"\", Reason:(*apiextensions.FieldValueErrorReason)(nil), FieldPath:\"\", OptionalOldSelf:(*bool)(nil)}}: compilation failed: ERROR: <input>:1:9: undefined field 'replicsa'\n| has(self.replicsa)\n| ........^"
                ),
                format!(
                    "{at}.x-kubernetes-validations[2].rule: Invalid value: apiextensions.ValidationRule{{Rule:\"self.items.exists(i,\\n i.nmae == 'a')\", Message:\"needs a\", MessageExpression:\"\", Reason:(*apiextensions.FieldValueErrorReason)(nil), FieldPath:\"\", OptionalOldSelf:(*bool)(nil)}}: compilation failed: ERROR: <input>:2:3: undefined field 'nmae'\n|  i.nmae == 'a')\n| ..^"
                ),
            ],
        ),
        (
            json!({"type": "object", "x-kubernetes-validations": [{"rule": "true", "reason": "Bad"}]}),
            vec![format!(
                "{at}.x-kubernetes-validations[0].reason: Unsupported value: \"Bad\": supported values: \"FieldValueDuplicate\", \"FieldValueForbidden\", \"FieldValueInvalid\", \"FieldValueRequired\""
            )],
        ),
    ];
    for (spec, expected) in cases {
        let crd = crd_with(object_schema(spec.clone()), |_| {});
        assert_eq!(lines(&validate_definition(&crd)), expected, "{spec}");
    }
}

#[test]
fn schemas_of_differing_versions_report_per_version() {
    let crd = crd_with(spec_schema(), |v| {
        let first = v["spec"]["versions"][0].clone();
        let mut second = first.clone();
        second["name"] = json!("v2");
        second["storage"] = json!(false);
        second["schema"]["openAPIV3Schema"]["properties"]["spec"] = json!({"properties": {}});
        v["spec"]["versions"] = json!([first, second]);
    });
    assert_eq!(
        lines(&validate_definition(&crd)),
        [
            "spec.versions[1].schema.openAPIV3Schema.properties[spec].type: Required value: must not be empty for specified object fields"
        ]
    );
}

#[test]
fn status_subresource_root_subresources_and_columns() {
    let cases: Vec<(Tweak, Vec<&str>)> = vec![
        (
            Box::new(|v| {
                v["spec"]["versions"][0]["subresources"] = json!({"status": {}});
                v["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["nullable"] = json!(true);
            }),
            vec![
                r#"spec.validation.openAPIV3Schema: Invalid value: {"nullable":true,"properties":{"spec":{"properties":{"replicas":{"type":"integer"}},"type":"object"},"status":{"type":"object","x-kubernetes-preserve-unknown-fields":true}},"type":"object"}: only [Description Type Format Title Maximum ExclusiveMaximum Minimum ExclusiveMinimum MaxLength MinLength Pattern MaxItems MinItems UniqueItems MultipleOf Required Items Properties ExternalDocs Example XPreserveUnknownFields XValidations] fields are allowed at the root of the schema if the status subresource is enabled"#,
                "spec.validation.openAPIV3Schema.nullable: Forbidden: nullable cannot be true at the root",
            ],
        ),
        (
            Box::new(|v| {
                v["spec"]["versions"][0]["subresources"] = json!({"scale": {"specReplicasPath": ".status.replicas", "statusReplicasPath": "status.replicas"}});
            }),
            vec![
                r#"spec.subresources.scale.specReplicasPath: Invalid value: ".status.replicas": should be a json path under .spec"#,
                r#"spec.subresources.scale.statusReplicasPath: Invalid value: "status.replicas": must be a simple json path starting with ."#,
            ],
        ),
        (
            Box::new(|v| {
                v["spec"]["versions"][0]["additionalPrinterColumns"] = json!([{"name": "Replicas", "type": "int", "jsonPath": ".spec.replicas"}, {"name": "X", "type": "string", "jsonPath": ""}]);
            }),
            vec![
                r#"spec.additionalPrinterColumns[0].type: Invalid value: "int": must be one of boolean,date,integer,number,string"#,
                "spec.additionalPrinterColumns[1].JSONPath: Required value",
            ],
        ),
    ];
    for (tweak, expected) in cases {
        check_crd(spec_schema(), tweak, &expected);
    }
}

#[test]
fn updates_keep_group_and_plural_and_once_established_scope_and_kind() {
    let mut old = crd_with(spec_schema(), |_| {});
    old.status.get_or_insert_with(Default::default).conditions = Some(vec![
        serde_json::from_value(json!({"type": "Established", "status": "True"}))
            .expect("a condition"),
    ]);
    let new = crd_with(spec_schema(), |v| {
        v["spec"]["scope"] = json!("Cluster");
        v["spec"]["names"]["kind"] = json!("Gadget");
    });
    assert_eq!(
        lines(&validate_definition_update(&old, &new)),
        [
            r#"spec.scope: Invalid value: "Cluster": field is immutable"#,
            r#"spec.names.kind: Invalid value: "Gadget": field is immutable"#,
        ]
    );
}
