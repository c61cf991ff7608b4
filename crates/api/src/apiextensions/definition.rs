//! The CustomResourceDefinition itself as kube-apiserver admits it (`apiextensions/validation`): its
//! defaults (`singular`, `listKind`, conversion `None`), and every check of `ValidateCustomResourceDefinition`
//! herd serves — the name `<plural>.<group>`, a group with a dot, DNS-1035 names, exactly one storage
//! version among unique names, a schema for every version that is *structural* (kube's
//! `ValidateStructural`, messages sorted as kube sorts them), the OpenAPI checks of
//! `ValidateCustomResourceDefinitionOpenAPISchema` (list types and map keys, map types, defaults where
//! they are allowed and valid, `x-kubernetes-validations` that compile), the status and scale
//! subresources, the printer columns, and conversion (`None` only: herd calls no conversion webhooks).
//!
//! kube validates its internal version, into which identical per-version schemas, subresources and
//! columns are lifted to the spec: a CRD whose versions share one schema reports its schema errors at
//! `spec.validation.openAPIV3Schema…`, as kube-apiserver does.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceColumnDefinition, CustomResourceDefinition, CustomResourceDefinitionNames,
    CustomResourceDefinitionSpec, CustomResourceSubresources, JSONSchemaProps,
};
use serde_json::Value;

use super::schema_checks;
use super::structural::Schema;
use crate::validation::{Cause, DNS1123_SUBDOMAIN_MSG, is_dns1123_subdomain};

pub(crate) const DNS1035_LABEL_MSG: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')";

/// kube's `IsDNS1035Label`, as its list of problems.
pub(crate) fn dns1035_problems(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    if s.len() > 63 {
        out.push("must be no more than 63 characters".to_string());
    }
    let ok = s.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.ends_with('-');
    if !ok {
        out.push(DNS1035_LABEL_MSG.to_string());
    }
    out
}

/// kube's `IsPathSegmentName`: what an embedded object's name may not be.
pub(crate) fn path_segment_problem(name: &str) -> Option<String> {
    match name {
        "." | ".." => Some(format!("may not be '{name}'")),
        _ if name.contains('/') => Some("may not contain '/'".into()),
        _ if name.contains('%') => Some("may not contain '%'".into()),
        _ => None,
    }
}

/// kube's `SetDefaults_CustomResourceDefinitionSpec`: `singular` is the lower-case kind, `listKind`
/// the kind + `List`, conversion `None`; `status.storedVersions` starts with the storage version.
pub fn default_definition(crd: &mut CustomResourceDefinition) {
    let names = &mut crd.spec.names;
    if names.singular.as_deref().is_none_or(str::is_empty) {
        names.singular = Some(names.kind.to_lowercase());
    }
    if names.list_kind.as_deref().is_none_or(str::is_empty) && !names.kind.is_empty() {
        names.list_kind = Some(format!("{}List", names.kind));
    }
    let conversion = crd.spec.conversion.get_or_insert_with(Default::default);
    if conversion.strategy.is_empty() {
        conversion.strategy = "None".into();
    }
    let status = crd.status.get_or_insert_with(Default::default);
    if status.stored_versions.as_ref().is_none_or(Vec::is_empty)
        && let Some(v) = crd.spec.versions.iter().find(|v| v.storage)
    {
        status.stored_versions = Some(vec![v.name.clone()]);
    }
}

/// Quoted as Go's `%q` prints a string, or JSON for anything else (kube's fallback for a bad value).
fn shown(v: &Value) -> String {
    super::validate::shown(v)
}

fn invalid(field: impl Into<String>, value: &Value, detail: &str) -> Cause {
    Cause {
        reason: "FieldValueInvalid",
        field: field.into(),
        message: format!("Invalid value: {}: {detail}", shown(value)),
    }
}

fn required(field: impl Into<String>, detail: &str) -> Cause {
    let mut c = Cause::required(field);
    if !detail.is_empty() {
        c.message = format!("Required value: {detail}");
    }
    c
}

/// Every cause kube-apiserver's `ValidateCustomResourceDefinition` finds in a (defaulted) CRD on create.
pub fn validate_definition(crd: &CustomResourceDefinition) -> Vec<Cause> {
    let mut causes = Vec::new();
    let spec = &crd.spec;
    match crd.metadata.name.as_deref() {
        None | Some("") => causes.push(Cause::required("metadata.name")),
        Some(name) => {
            if !is_dns1123_subdomain(name) {
                causes.push(Cause::invalid("metadata.name", name, DNS1123_SUBDOMAIN_MSG));
            }
            if name != format!("{}.{}", spec.names.plural, spec.group) {
                causes.push(Cause::invalid(
                    "metadata.name",
                    name,
                    "must be spec.names.plural+\".\"+spec.group",
                ));
            }
        }
    }
    validate_spec(spec, &mut causes);
    if spec.preserve_unknown_fields == Some(true) {
        causes.push(invalid(
            "spec.preserveUnknownFields",
            &Value::Bool(true),
            "cannot set to true, set x-kubernetes-preserve-unknown-fields to true in spec.versions[*].schema instead",
        ));
    }
    causes
}

/// [`validate_definition`] for an update from `old`: the group and plural never change (they make the
/// resource's name), the scope and kind not once the CRD is established.
pub fn validate_definition_update(
    old: &CustomResourceDefinition,
    new: &CustomResourceDefinition,
) -> Vec<Cause> {
    let mut causes = validate_definition(new);
    let established = old
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| {
            c.iter()
                .any(|c| c.type_ == "Established" && c.status == "True")
        });
    let mut immutable = |field: &str, new: &str, old: &str| {
        if new != old {
            causes.push(Cause::invalid(field, new, "field is immutable"));
        }
    };
    if established {
        immutable("spec.scope", &new.spec.scope, &old.spec.scope);
        immutable(
            "spec.names.kind",
            &new.spec.names.kind,
            &old.spec.names.kind,
        );
    }
    immutable("spec.group", &new.spec.group, &old.spec.group);
    immutable(
        "spec.names.plural",
        &new.spec.names.plural,
        &old.spec.names.plural,
    );
    causes
}

/// Whether every version carries the same value of `field` (kube lifts such a field to the spec).
fn identical<T: PartialEq>(
    spec: &CustomResourceDefinitionSpec,
    field: impl Fn(usize) -> T,
) -> bool {
    (0..spec.versions.len()).all(|i| field(i) == field(0))
}

fn validate_spec(spec: &CustomResourceDefinitionSpec, causes: &mut Vec<Cause>) {
    if spec.group.is_empty() {
        causes.push(Cause::required("spec.group"));
    } else if !is_dns1123_subdomain(&spec.group) {
        causes.push(Cause::invalid(
            "spec.group",
            &spec.group,
            DNS1123_SUBDOMAIN_MSG,
        ));
    } else if !spec.group.contains('.') {
        causes.push(Cause::invalid(
            "spec.group",
            &spec.group,
            "should be a domain with at least one dot",
        ));
    }
    match spec.scope.as_str() {
        "" => causes.push(Cause::required("spec.scope")),
        "Cluster" | "Namespaced" => {}
        other => causes.push(Cause::not_supported(
            "spec.scope",
            other,
            &["Cluster", "Namespaced"],
        )),
    }
    let versions = &spec.versions;
    let schemas_lifted = !versions.is_empty() && identical(spec, |i| &versions[i].schema);
    let subresources_lifted =
        !versions.is_empty() && identical(spec, |i| &versions[i].subresources);
    let columns_lifted =
        !versions.is_empty() && identical(spec, |i| &versions[i].additional_printer_columns);
    let lifted_schema = schemas_lifted
        .then(|| {
            versions[0]
                .schema
                .as_ref()
                .and_then(|s| s.open_api_v3_schema.as_ref())
        })
        .flatten();
    if lifted_schema.is_none() {
        for (i, v) in versions.iter().enumerate() {
            if v.schema
                .as_ref()
                .and_then(|s| s.open_api_v3_schema.as_ref())
                .is_none()
            {
                causes.push(Cause::required(format!(
                    "spec.versions[{i}].schema.openAPIV3Schema"
                )));
            }
        }
    }
    let status_enabled = |i: usize| {
        versions[i]
            .subresources
            .as_ref()
            .is_some_and(|s| s.status.is_some())
    };
    let mut names = std::collections::BTreeSet::new();
    let mut unique = true;
    for (i, v) in versions.iter().enumerate() {
        unique &= names.insert(v.name.as_str());
        let problems = dns1035_problems(&v.name);
        if !problems.is_empty() {
            causes.push(Cause::invalid(
                format!("spec.versions[{i}].name"),
                &v.name,
                &problems.join(","),
            ));
        }
        let at = format!("spec.versions[{i}]");
        if !schemas_lifted
            && let Some(schema) = v
                .schema
                .as_ref()
                .and_then(|s| s.open_api_v3_schema.as_ref())
        {
            validate_schema(
                schema,
                &format!("{at}.schema.openAPIV3Schema"),
                status_enabled(i),
                causes,
            );
        }
        if !subresources_lifted {
            validate_subresources(
                v.subresources.as_ref(),
                &format!("{at}.subresources"),
                causes,
            );
        }
        if !columns_lifted {
            for (j, c) in v.additional_printer_columns.iter().flatten().enumerate() {
                validate_column(c, &format!("{at}.additionalPrinterColumns[{j}]"), causes);
            }
        }
    }
    if !unique {
        causes.push(Cause::invalid(
            "spec.versions",
            "",
            "must contain unique version names",
        ));
    }
    if versions.iter().filter(|v| v.storage).count() != 1 {
        causes.push(Cause::invalid(
            "spec.versions",
            "",
            "must have exactly one version marked as storage version",
        ));
    }
    validate_names(&spec.names, causes);
    if let Some(schema) = lifted_schema {
        let any_status = (0..versions.len()).any(status_enabled);
        validate_schema(
            schema,
            "spec.validation.openAPIV3Schema",
            any_status,
            causes,
        );
    }
    if subresources_lifted {
        validate_subresources(
            versions[0].subresources.as_ref(),
            "spec.subresources",
            causes,
        );
    }
    if columns_lifted {
        for (j, c) in versions[0]
            .additional_printer_columns
            .iter()
            .flatten()
            .enumerate()
        {
            validate_column(c, &format!("spec.additionalPrinterColumns[{j}]"), causes);
        }
    }
    if let Some(conversion) = &spec.conversion {
        match conversion.strategy.as_str() {
            "" => causes.push(Cause::required("spec.conversion.strategy")),
            "None" => {
                if conversion.webhook.is_some() {
                    causes.push(Cause::forbidden(
                        "spec.conversion.webhookClientConfig",
                        "should not be set when strategy is not set to Webhook",
                    ));
                }
            }
            other => causes.push(Cause::not_supported(
                "spec.conversion.strategy",
                other,
                &["None"],
            )),
        }
    }
}

fn validate_names(names: &CustomResourceDefinitionNames, causes: &mut Vec<Cause>) {
    let singular = names.singular.as_deref().unwrap_or_default();
    let list_kind = names.list_kind.as_deref().unwrap_or_default();
    for (field, value) in [
        ("plural", names.plural.as_str()),
        ("singular", singular),
        ("kind", names.kind.as_str()),
        ("listKind", list_kind),
    ] {
        if value.is_empty() {
            causes.push(Cause::required(format!("spec.names.{field}")));
        }
    }
    for (field, value) in [("plural", names.plural.as_str()), ("singular", singular)] {
        let problems = dns1035_problems(value);
        if !value.is_empty() && !problems.is_empty() {
            causes.push(Cause::invalid(
                format!("spec.names.{field}"),
                value,
                &problems.join(","),
            ));
        }
    }
    for (field, value) in [("kind", names.kind.as_str()), ("listKind", list_kind)] {
        let problems = dns1035_problems(&value.to_lowercase());
        if !value.is_empty() && !problems.is_empty() {
            causes.push(Cause::invalid(
                format!("spec.names.{field}"),
                value,
                &format!(
                    "may have mixed case, but should otherwise match: {}",
                    problems.join(",")
                ),
            ));
        }
    }
    for (i, short) in names.short_names.iter().flatten().enumerate() {
        let problems = dns1035_problems(short);
        if !problems.is_empty() {
            causes.push(Cause::invalid(
                format!("spec.names.shortNames[{i}]"),
                short,
                &problems.join(","),
            ));
        }
    }
    if !names.kind.is_empty() && names.kind == list_kind {
        causes.push(Cause::invalid(
            "spec.names.listKind",
            list_kind,
            "kind and listKind may not be the same",
        ));
    }
    for (i, category) in names.categories.iter().flatten().enumerate() {
        let problems = dns1035_problems(category);
        if !problems.is_empty() {
            causes.push(Cause::invalid(
                format!("spec.names.categories[{i}]"),
                category,
                &problems.join(","),
            ));
        }
    }
}

/// kube's `validateSimpleJSONPath`.
fn simple_json_path(path: &str, field: &str, causes: &mut Vec<Cause>) -> bool {
    if path.is_empty() {
        causes.push(Cause::invalid(field, path, "must not be empty"));
        false
    } else if !path.starts_with('.') {
        causes.push(Cause::invalid(
            field,
            path,
            "must be a simple json path starting with .",
        ));
        false
    } else {
        true
    }
}

fn validate_subresources(
    s: Option<&CustomResourceSubresources>,
    at: &str,
    causes: &mut Vec<Cause>,
) {
    let Some(scale) = s.and_then(|s| s.scale.as_ref()) else {
        return;
    };
    for (name, path, prefix) in [
        ("specReplicasPath", &scale.spec_replicas_path, ".spec."),
        (
            "statusReplicasPath",
            &scale.status_replicas_path,
            ".status.",
        ),
    ] {
        let field = format!("{at}.scale.{name}");
        if path.is_empty() {
            causes.push(Cause::required(field));
        } else if simple_json_path(path, &field, causes) && !path.starts_with(prefix) {
            let under = prefix.trim_end_matches('.');
            causes.push(Cause::invalid(
                field,
                path,
                &format!("should be a json path under {under}"),
            ));
        }
    }
    if let Some(path) = scale
        .label_selector_path
        .as_deref()
        .filter(|p| !p.is_empty())
    {
        let field = format!("{at}.scale.labelSelectorPath");
        if simple_json_path(path, &field, causes)
            && !path.starts_with(".spec.")
            && !path.starts_with(".status.")
        {
            causes.push(Cause::invalid(
                field,
                path,
                "should be a json path under either .spec or .status",
            ));
        }
    }
}

const COLUMN_TYPES: &str = "boolean,date,integer,number,string";
const COLUMN_FORMATS: &[&str] = &[
    "byte",
    "date",
    "date-time",
    "double",
    "float",
    "int32",
    "int64",
    "password",
];

fn validate_column(c: &CustomResourceColumnDefinition, at: &str, causes: &mut Vec<Cause>) {
    if c.name.is_empty() {
        causes.push(Cause::required(format!("{at}.name")));
    }
    if c.type_.is_empty() {
        causes.push(required(
            format!("{at}.type"),
            &format!("must be one of {COLUMN_TYPES}"),
        ));
    } else if !COLUMN_TYPES.split(',').any(|t| t == c.type_) {
        causes.push(Cause::invalid(
            format!("{at}.type"),
            &c.type_,
            &format!("must be one of {COLUMN_TYPES}"),
        ));
    }
    if let Some(format) = c.format.as_deref().filter(|f| !f.is_empty())
        && !COLUMN_FORMATS.contains(&format)
    {
        causes.push(Cause::invalid(
            format!("{at}.format"),
            format,
            &format!("must be one of {}", COLUMN_FORMATS.join(",")),
        ));
    }
    if c.json_path.is_empty() {
        causes.push(Cause::required(format!("{at}.JSONPath")));
    } else if simple_json_path(&c.json_path, &format!("{at}.JSONPath"), causes)
        && super::columns::JsonPath::parse(&c.json_path).is_err()
    {
        causes.push(Cause::invalid(
            format!("{at}.JSONPath"),
            &c.json_path,
            "must be a json path in the dot notation",
        ));
    }
}

/// The fields kube allows at the root of a schema whose status subresource is enabled.
const ROOT_FIELDS_WITH_STATUS: &str = "[Description Type Format Title Maximum ExclusiveMaximum Minimum ExclusiveMinimum MaxLength MinLength Pattern MaxItems MinItems UniqueItems MultipleOf Required Items Properties ExternalDocs Example XPreserveUnknownFields XValidations]";

fn validate_schema(
    schema: &JSONSchemaProps,
    at: &str,
    status_enabled: bool,
    causes: &mut Vec<Cause>,
) {
    if status_enabled {
        if schema.type_.as_deref().is_some_and(|t| t != "object") {
            causes.push(Cause::invalid(
                format!("{at}.type"),
                schema.type_.as_deref().unwrap_or_default(),
                "only \"object\" is allowed as the type at the root of the schema if the status subresource is enabled",
            ));
        } else {
            let v = serde_json::to_value(schema).unwrap_or_default();
            let allowed = [
                "description",
                "type",
                "format",
                "title",
                "maximum",
                "exclusiveMaximum",
                "minimum",
                "exclusiveMinimum",
                "maxLength",
                "minLength",
                "pattern",
                "maxItems",
                "minItems",
                "uniqueItems",
                "multipleOf",
                "required",
                "items",
                "properties",
                "externalDocs",
                "example",
                "x-kubernetes-preserve-unknown-fields",
                "x-kubernetes-validations",
            ];
            if v.as_object()
                .is_some_and(|m| m.keys().any(|k| !allowed.contains(&k.as_str())))
            {
                // kube prints its Go struct here; the schema's JSON says the same more readably.
                causes.push(Cause {
                    reason: "FieldValueInvalid",
                    field: at.to_string(),
                    message: format!("Invalid value: {v}: only {ROOT_FIELDS_WITH_STATUS} fields are allowed at the root of the schema if the status subresource is enabled"),
                });
            }
        }
    }
    if schema.nullable == Some(true) {
        causes.push(Cause::forbidden(
            format!("{at}.nullable"),
            "nullable cannot be true at the root",
        ));
    }
    let mut structural = Vec::new();
    super::structural_checks::invariants(
        schema,
        super::structural_checks::Level::Root,
        at,
        &mut structural,
    );
    super::structural_checks::completeness(schema, at, &mut structural);
    structural.sort_by(|a, b| {
        format!("{}: {}", a.field, a.message).cmp(&format!("{}: {}", b.field, b.message))
    });
    let structural_ok = structural.is_empty();
    causes.extend(structural);
    if structural_ok {
        schema_checks::validate_defaults(schema, &Schema::from_props(schema), at, causes);
    }
    schema_checks::openapi(schema, at, causes);
}
