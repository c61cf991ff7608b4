//! Kubernetes resource types as herd serves them: the resource table, admission (decoding, defaulting,
//! validation) and label/field selectors.
//!
//! This crate does no I/O. Objects travel as `serde_json::Value` through the API server and store; admission
//! decodes them into the k8s-openapi types, which also drops unknown fields the way kube-apiserver's default
//! field validation does.

pub mod admission;
pub mod apiextensions;
pub mod autoscaling;
pub mod cron;
pub mod duration;
pub mod endpoints;
pub mod event_correlator;
pub mod patch;
pub mod pod_security;
pub mod protobuf;
pub mod quantity;
pub mod resources;
pub mod selector;
pub mod strategy;
pub mod validation;
pub mod volumes;

pub use admission::{AdmitError, admit, admit_update, unknown_fields};
pub use resources::{RESOURCES, ResourceInfo};
pub use selector::{FieldSelector, LabelSelector, SelectorError};
pub use validation::Cause;

/// Re-export of the Kubernetes object types herd speaks.
pub use k8s_openapi;
