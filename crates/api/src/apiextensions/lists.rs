//! Server-side apply's view of a custom resource: which lists are sets or maps (and their keys) and
//! which objects are atomic, read from the structural schema as kube-apiserver builds its
//! structured-merge-diff type from a CRD. The merge itself is `crate::patch`'s, given this answer.

use super::structural::{AdditionalProperties, ListKind, Schema};
use crate::patch::KindSchema;

/// The set lists, map lists (with keys) and atomic objects of `schema`, by schema path.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ListSemantics {
    pub sets: Vec<String>,
    pub maps: Vec<(String, Vec<String>)>,
    pub atomic_objects: Vec<String>,
}

impl ListSemantics {
    pub fn of(schema: &Schema) -> Self {
        let mut out = Self::default();
        for (key, prop) in &schema.properties {
            if key != "metadata" {
                out.walk(prop, key);
            }
        }
        out
    }

    fn walk(&mut self, s: &Schema, path: &str) {
        match &s.list {
            ListKind::Set => self.sets.push(path.to_string()),
            ListKind::Map(keys) => self.maps.push((path.to_string(), keys.clone())),
            ListKind::Atomic => {}
        }
        if s.atomic_map {
            self.atomic_objects.push(path.to_string());
            return;
        }
        if let Some(items) = &s.items {
            self.walk(items, path);
        }
        for (key, prop) in &s.properties {
            self.walk(prop, &format!("{path}.{key}"));
        }
        if let Some(AdditionalProperties::Schema(values)) = &s.additional_properties {
            self.walk(values, &format!("{path}.*"));
        }
    }

    /// The schema server-side apply and managedFields use for this version.
    pub fn kind_schema(&self, kind: &str, api_version: &str) -> KindSchema {
        KindSchema::custom(
            kind.to_string(),
            api_version.to_string(),
            self.sets.clone(),
            self.maps.clone(),
            self.atomic_objects.clone(),
        )
    }
}
