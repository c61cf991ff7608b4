//! Patch formats that need Kubernetes' schema knowledge: strategic merge patch
//! ([`strategic_merge`]) and server-side apply with field ownership ([`server_side_apply`],
//! [`record_update`]). JSON merge patch and JSON patch need none and come from the `json-patch` crate
//! ([`merge_patch`], [`json_patch`]).
//!
//! Both work on `serde_json::Value` objects of the kinds herd serves, with the list merge keys and
//! list types k8s.io/api declares ([`KindSchema`]).

mod apply;
mod element_order;
mod fieldset;
mod json;
mod managed;
mod schema;
mod strategic;
mod typed;

pub use apply::{
    ApplyConflicts, ApplyError, Conflict, record_update, record_update_with, server_side_apply,
    server_side_apply_with,
};
pub use json::{JsonPatchError, json_patch, merge_patch};
pub use schema::{KindSchema, ListKey, ListType, MergeSchema, PatchMeta, PatchStrategy};
pub use strategic::{PatchError, strategic_merge, strategic_merge_with};

#[cfg(test)]
mod apply_tests;
#[cfg(test)]
mod strategic_tests;
