//! CustomResourceDefinitions (apiextensions.k8s.io/v1) as pure functions: everything kube-apiserver's
//! apiextensions code does to a CRD and to custom objects that needs no I/O.
//!
//! - [`definition`]: a CRD's defaults and its validation on create and update (names, versions,
//!   structural schemas, `x-kubernetes-*` rules, subresources, printer columns, conversion `None`), and
//!   [`CustomResourceDefinition`]'s [`Kind`] for the resource table.
//! - [`CustomResourceSchema`]: one served version compiled once per CRD generation (share it in an
//!   `Arc`): [`CustomResourceSchema::admit`] prunes, defaults and validates a custom object (schema,
//!   metadata, list types, `x-kubernetes-validations` CEL rules with `oldSelf` on updates) in kube's
//!   order and wording; its printer columns ([`columns`]), scale paths ([`scale`]) and server-side apply
//!   schema ([`CustomResourceSchema::apply_schema`]); [`CustomStrategy`] is the object-safe
//!   [`Strategy`] a custom resource's table entry holds.
//!
//! ```
//! use herd_api::apiextensions::{CustomResourceSchema, default_definition, validate_definition};
//! use herd_api::k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
//! use serde_json::json;
//!
//! let mut crd: CustomResourceDefinition = serde_json::from_value(json!({
//!     "metadata": {"name": "widgets.example.com"},
//!     "spec": {"group": "example.com", "scope": "Namespaced",
//!         "names": {"plural": "widgets", "kind": "Widget"},
//!         "versions": [{"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": {
//!             "type": "object", "properties": {"spec": {"type": "object", "properties": {
//!                 "replicas": {"type": "integer", "default": 1}}}}}}}]}
//! })).unwrap();
//! default_definition(&mut crd);
//! assert!(validate_definition(&crd).is_empty());
//! let widgets = CustomResourceSchema::new(&crd, "v1").unwrap();
//! let mut causes = Vec::new();
//! let stored = widgets.admit(json!({"apiVersion": "example.com/v1", "kind": "Widget",
//!     "metadata": {"name": "a"}, "spec": {"bogus": true}}), None, &mut causes);
//! assert!(causes.is_empty());
//! assert_eq!(stored["spec"], json!({"replicas": 1}));
//! ```

pub mod cel;
mod cel_check;
pub mod coerce;
pub mod columns;
pub mod definition;
mod formats;
pub mod lists;
mod ratchet;
pub mod scale;
mod schema_checks;
pub mod structural;
mod structural_checks;
pub mod validate;

#[cfg(test)]
mod object_tests;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::Value;

pub use columns::{Cell, JsonPath, PrinterColumn};
pub use definition::{default_definition, validate_definition, validate_definition_update};
pub use scale::{ScaleError, ScalePaths};
pub use structural::Schema;

use crate::admission::AdmitError;
use crate::patch::KindSchema;
use crate::strategy::{CreateHook, Deletion, Kind, Strategy};
use crate::validation::{self, Cause};

/// One version of a custom resource, compiled from its CRD: names, scope, structural schema with its
/// compiled CEL rules, subresources, printer columns and server-side apply schema.
#[derive(Debug)]
pub struct CustomResourceSchema {
    pub group: String,
    pub version: String,
    pub kind: String,
    pub list_kind: String,
    pub plural: String,
    pub singular: String,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    pub namespaced: bool,
    pub served: bool,
    pub storage: bool,
    /// `Some(warning)` for a deprecated version (kube's default warning when none is given).
    pub deprecation_warning: Option<String>,
    pub schema: Schema,
    /// The `status` subresource is enabled.
    pub status: bool,
    pub scale: Option<ScalePaths>,
    pub columns: Vec<PrinterColumn>,
    apply: KindSchema,
}

impl CustomResourceSchema {
    /// Compiles `version` of a (defaulted, valid) CRD; `None` when the CRD has no such version.
    pub fn new(crd: &CustomResourceDefinition, version: &str) -> Option<Self> {
        let spec = &crd.spec;
        let v = spec.versions.iter().find(|v| v.name == version)?;
        let schema = v
            .schema
            .as_ref()
            .and_then(|s| s.open_api_v3_schema.as_ref())
            .map(Schema::from_props)
            .unwrap_or_else(|| Schema {
                type_: Some("object".into()),
                preserve_unknown_fields: true,
                ..Schema::default()
            });
        let names = &spec.names;
        let kind = names.kind.clone();
        let api_version = format!("{}/{}", spec.group, v.name);
        let apply = lists::ListSemantics::of(&schema).kind_schema(&kind, &api_version);
        let deprecation_warning = v.deprecated.unwrap_or(false).then(|| {
            v.deprecation_warning
                .clone()
                .unwrap_or_else(|| format!("{api_version} {kind} is deprecated"))
        });
        Some(Self {
            group: spec.group.clone(),
            version: v.name.clone(),
            list_kind: names
                .list_kind
                .clone()
                .unwrap_or_else(|| format!("{kind}List")),
            plural: names.plural.clone(),
            singular: names
                .singular
                .clone()
                .unwrap_or_else(|| kind.to_lowercase()),
            kind,
            short_names: names.short_names.clone().unwrap_or_default(),
            categories: names.categories.clone().unwrap_or_default(),
            namespaced: spec.scope == "Namespaced",
            served: v.served,
            storage: v.storage,
            deprecation_warning,
            status: v.subresources.as_ref().is_some_and(|s| s.status.is_some()),
            scale: v
                .subresources
                .as_ref()
                .and_then(|s| s.scale.as_ref())
                .map(ScalePaths::new),
            columns: PrinterColumn::for_version(v.additional_printer_columns.as_deref()),
            schema,
            apply,
        })
    }

    /// Every version of `crd`, compiled, in the CRD's order.
    pub fn all(crd: &CustomResourceDefinition) -> Vec<Arc<Self>> {
        crd.spec
            .versions
            .iter()
            .filter_map(|v| Self::new(crd, &v.name).map(Arc::new))
            .collect()
    }

    /// `group/version`.
    pub fn api_version(&self) -> String {
        format!("{}/{}", self.group, self.version)
    }

    /// The schema server-side apply and managedFields work with
    /// ([`crate::patch::server_side_apply_with`], [`crate::patch::record_update_with`]).
    pub fn apply_schema(&self) -> &KindSchema {
        &self.apply
    }

    /// Prunes, drops disallowed nulls and defaults `obj` as kube decodes a request body; returns the
    /// pruned paths (`spec.foo`): `fieldValidation=Warn` warns `unknown field "spec.foo"` for each,
    /// `Strict` refuses them.
    pub fn coerce(&self, obj: &mut Value) -> Vec<String> {
        coerce::coerce(obj, &self.schema)
    }

    /// Applies the defaults only, as kube does to objects it reads from storage.
    pub fn default_stored(&self, obj: &mut Value) {
        coerce::default(obj, &self.schema);
    }

    /// The fields of `obj` the schema does not know (what [`Self::coerce`] would prune).
    pub fn unknown_fields(&self, obj: &Value) -> Vec<String> {
        coerce::prune(&mut obj.clone(), &self.schema)
    }

    /// Every cause kube-apiserver finds in a coerced custom object: the schema (kube-openapi's
    /// validator, embedded resources, list types), the object's metadata, then the CEL rules (with
    /// `old`, the stored object, on an update). On an update, causes about values the update left
    /// unchanged are dropped (kube's validation ratcheting), but for transition rules'.
    pub fn validate(&self, obj: &Value, old: Option<&Value>) -> Vec<Cause> {
        let mut causes = Vec::new();
        match serde_json::from_value::<ObjectMeta>(obj.get("metadata").cloned().unwrap_or_default())
        {
            Ok(meta) => validation::validate_name(&meta, false, &mut causes),
            Err(e) => causes.push(Cause::invalid("metadata", "", &e.to_string())),
        }
        let mut schema_causes = Vec::new();
        validate::validate(&self.schema, "", obj, &mut schema_causes);
        let mut transition = Vec::new();
        for (cause, is_transition) in cel::validate_marked(&self.schema, "", obj, old) {
            if is_transition {
                transition.push(cause);
            } else {
                schema_causes.push(cause);
            }
        }
        if let Some(old) = old {
            schema_causes = ratchet::ratchet(&self.schema, obj, old, schema_causes);
        }
        causes.extend(schema_causes);
        causes.extend(transition);
        causes
    }

    /// Decodes a custom object as kube does on create (`old` is `None`) or update: coerce, then
    /// validate; the causes go to `causes`, the object to store is returned.
    pub fn admit(&self, mut obj: Value, old: Option<&Value>, causes: &mut Vec<Cause>) -> Value {
        self.coerce(&mut obj);
        causes.extend(self.validate(&obj, old));
        obj
    }
}

/// The [`Strategy`] of a custom resource version.
#[derive(Debug, Clone)]
pub struct CustomStrategy(pub Arc<CustomResourceSchema>);

impl Strategy for CustomStrategy {
    fn admit(&self, obj: Value, causes: &mut Vec<Cause>) -> Result<Value, AdmitError> {
        if !obj.is_object() {
            return Err(AdmitError::BadRequest(
                "the body is not a JSON or YAML object".into(),
            ));
        }
        Ok(self.0.admit(obj, None, causes))
    }

    fn admit_update(
        &self,
        old: &Value,
        obj: Value,
        causes: &mut Vec<Cause>,
    ) -> Result<Value, AdmitError> {
        if !obj.is_object() {
            return Err(AdmitError::BadRequest(
                "the body is not a JSON or YAML object".into(),
            ));
        }
        Ok(self.0.admit(obj, Some(old), causes))
    }

    fn known_fields(&self, obj: &Value) -> Option<Value> {
        let mut known = obj.clone();
        coerce::prune(&mut known, &self.0.schema);
        Some(known)
    }

    /// kube's `customResourceStrategy.PrepareForCreate`: a create ignores the status when the status
    /// subresource is enabled.
    fn resets_status_on_create(&self) -> bool {
        self.0.status
    }

    fn sets_requester(&self) -> bool {
        false
    }

    fn propagates(&self) -> bool {
        true
    }

    fn create_hook(&self) -> CreateHook {
        CreateHook::None
    }

    fn pod_template(&self) -> Option<&'static str> {
        None
    }

    fn deletion(&self, _obj: &Value, _requested: Option<i64>) -> Deletion {
        Deletion::Immediate
    }

    fn terminating(&self, _obj: &mut Value) {}
}

/// A CRD's own rules, for the resource table (`customresourcedefinitions.apiextensions.k8s.io`).
impl Kind for CustomResourceDefinition {
    fn default(&mut self) {
        default_definition(self);
    }

    fn validate(&self, causes: &mut Vec<Cause>) {
        // The table's generic name check ran already: keep one cause per finding.
        for c in validate_definition(self) {
            if !causes.contains(&c) {
                causes.push(c);
            }
        }
    }

    fn validate_update(&mut self, old: &Self, causes: &mut Vec<Cause>) {
        // `validate` runs after this and reports the create rules; only the update rules are added here.
        let all = validate_definition_update(old, self);
        let create = validate_definition(self);
        causes.extend(all.into_iter().filter(|c| !create.contains(c)));
    }
}
