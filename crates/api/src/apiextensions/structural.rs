//! A CRD version's OpenAPI v3 schema in the shape the API server works with: kube's *structural schema*
//! (`pkg/apiserver/schema.Structural`), one node per schema with its type, its fields, its value
//! validations, the `x-kubernetes-*` extensions and its compiled `x-kubernetes-validations` rules.
//!
//! A node is built from a `JSONSchemaProps` that [`super::definition`] has validated (structural, valid
//! patterns, rules that compile); building it never fails.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    JSONSchemaProps, JSONSchemaPropsOrArray, JSONSchemaPropsOrBool,
};
use serde_json::Value;

use super::cel::Rule;

/// How a list identifies its items (`x-kubernetes-list-type`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ListKind {
    /// The default: replaced and owned as a whole.
    #[default]
    Atomic,
    /// Scalars, each owned on its own; no duplicates.
    Set,
    /// Objects keyed by `x-kubernetes-list-map-keys`; no two items with the same key.
    Map(Vec<String>),
}

/// What an object accepts besides its `properties`.
#[derive(Debug, Clone)]
pub enum AdditionalProperties {
    /// A map whose values follow this schema.
    Schema(Box<Schema>),
    /// `additionalProperties: true`: anything.
    Any,
}

/// One node of a structural schema.
#[derive(Debug, Clone, Default)]
pub struct Schema {
    /// `object`, `array`, `string`, `integer`, `number`, `boolean`, or `None` (int-or-string,
    /// preserve-unknown-fields, or a value validation under `allOf`/`anyOf`/`oneOf`/`not`).
    pub type_: Option<String>,
    pub format: Option<String>,
    pub description: Option<String>,
    pub nullable: bool,
    pub default: Option<Value>,
    pub properties: BTreeMap<String, Schema>,
    pub required: Vec<String>,
    pub items: Option<Box<Schema>>,
    pub additional_properties: Option<AdditionalProperties>,
    pub enum_: Option<Vec<Value>>,
    pub maximum: Option<f64>,
    pub exclusive_maximum: bool,
    pub minimum: Option<f64>,
    pub exclusive_minimum: bool,
    pub multiple_of: Option<f64>,
    pub max_length: Option<i64>,
    pub min_length: Option<i64>,
    /// The pattern as written and compiled (Go's RE2 syntax; the `regex` crate's is the same family).
    pub pattern: Option<(String, regex::Regex)>,
    pub max_items: Option<i64>,
    pub min_items: Option<i64>,
    pub unique_items: bool,
    pub max_properties: Option<i64>,
    pub min_properties: Option<i64>,
    pub all_of: Vec<Schema>,
    pub any_of: Vec<Schema>,
    pub one_of: Vec<Schema>,
    pub not: Option<Box<Schema>>,
    pub preserve_unknown_fields: bool,
    pub embedded_resource: bool,
    pub int_or_string: bool,
    pub list: ListKind,
    /// `x-kubernetes-map-type: atomic`: the object is owned and replaced as a whole.
    pub atomic_map: bool,
    pub rules: Vec<Arc<Rule>>,
}

impl Schema {
    /// The structural node of `props`, with its `x-kubernetes-validations` compiled. Rules that do not
    /// compile, and patterns that are no regular expressions, are left out: [`super::definition`] refuses
    /// a CRD that has them before anything is built from it.
    pub fn from_props(props: &JSONSchemaProps) -> Self {
        let items = match &props.items {
            Some(JSONSchemaPropsOrArray::Schema(s)) => Some(Box::new(Self::from_props(s))),
            Some(JSONSchemaPropsOrArray::Schemas(list)) => {
                list.first().map(|s| Box::new(Self::from_props(s)))
            }
            None => None,
        };
        let additional_properties = match &props.additional_properties {
            Some(JSONSchemaPropsOrBool::Schema(s)) => {
                Some(AdditionalProperties::Schema(Box::new(Self::from_props(s))))
            }
            Some(JSONSchemaPropsOrBool::Bool(true)) => Some(AdditionalProperties::Any),
            Some(JSONSchemaPropsOrBool::Bool(false)) | None => None,
        };
        let list = match props.x_kubernetes_list_type.as_deref() {
            Some("set") => ListKind::Set,
            Some("map") => {
                ListKind::Map(props.x_kubernetes_list_map_keys.clone().unwrap_or_default())
            }
            _ => ListKind::Atomic,
        };
        let nested = |list: &Option<Vec<JSONSchemaProps>>| {
            list.iter()
                .flatten()
                .map(Self::from_props)
                .collect::<Vec<_>>()
        };
        Self {
            type_: props.type_.clone().filter(|t| !t.is_empty()),
            format: props.format.clone().filter(|f| !f.is_empty()),
            description: props.description.clone(),
            nullable: props.nullable.unwrap_or(false),
            default: props.default.as_ref().map(|d| d.0.clone()),
            properties: props
                .properties
                .iter()
                .flatten()
                .map(|(k, v)| (k.clone(), Self::from_props(v)))
                .collect(),
            required: props.required.clone().unwrap_or_default(),
            items,
            additional_properties,
            enum_: props
                .enum_
                .as_ref()
                .map(|e| e.iter().map(|v| v.0.clone()).collect()),
            maximum: props.maximum,
            exclusive_maximum: props.exclusive_maximum.unwrap_or(false),
            minimum: props.minimum,
            exclusive_minimum: props.exclusive_minimum.unwrap_or(false),
            multiple_of: props.multiple_of,
            max_length: props.max_length,
            min_length: props.min_length,
            pattern: props
                .pattern
                .as_ref()
                .filter(|p| !p.is_empty())
                .and_then(|p| regex::Regex::new(p).ok().map(|r| (p.clone(), r))),
            max_items: props.max_items,
            min_items: props.min_items,
            unique_items: props.unique_items.unwrap_or(false),
            max_properties: props.max_properties,
            min_properties: props.min_properties,
            all_of: nested(&props.all_of),
            any_of: nested(&props.any_of),
            one_of: nested(&props.one_of),
            not: props.not.as_ref().map(|n| Box::new(Self::from_props(n))),
            preserve_unknown_fields: props.x_kubernetes_preserve_unknown_fields.unwrap_or(false),
            embedded_resource: props.x_kubernetes_embedded_resource.unwrap_or(false),
            int_or_string: props.x_kubernetes_int_or_string.unwrap_or(false),
            list,
            atomic_map: props.x_kubernetes_map_type.as_deref() == Some("atomic"),
            rules: props
                .x_kubernetes_validations
                .iter()
                .flatten()
                .filter_map(|r| Rule::compile(r).ok().map(Arc::new))
                .collect(),
        }
    }

    /// The schema of field `key` of an object of this schema: a property, else the map's values.
    pub fn field(&self, key: &str) -> Option<&Schema> {
        self.properties
            .get(key)
            .or(match &self.additional_properties {
                Some(AdditionalProperties::Schema(s)) => Some(s),
                _ => None,
            })
    }

    /// Whether fields this schema does not name are kept (`x-kubernetes-preserve-unknown-fields`, or a
    /// map of anything).
    pub fn keeps_unknown(&self) -> bool {
        self.preserve_unknown_fields
            || matches!(self.additional_properties, Some(AdditionalProperties::Any))
    }

    /// Follows a path of field names from this node (list items are stepped through), as the simple JSON
    /// paths of the scale subresource name them.
    pub fn at(&self, path: &[&str]) -> Option<&Schema> {
        let mut node = self;
        for key in path {
            while node.type_.as_deref() == Some("array") {
                node = node.items.as_deref()?;
            }
            node = node.field(key)?;
        }
        Some(node)
    }
}
