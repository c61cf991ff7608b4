//! What the two CertificateSigningRequest controllers (`csr_approving`, `csr_signing`) share: a CSR's
//! conditions and certificate as kube reads them, the CSRs one of them still has work on, and the edit of a
//! CSR's status that leaves a CSR replaced meanwhile (another uid) alone.

use std::sync::Arc;

use herd_api::ResourceInfo;
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use serde_json::Value;

use super::{Informers, Key};
use crate::error::ApiError;
use crate::objects::Objects;

/// Whether the CSR has a condition of one of `types`.
pub(super) fn has_condition(csr: &CertificateSigningRequest, types: &[&str]) -> bool {
    csr.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| types.contains(&c.type_.as_str())))
}

/// Whether the CSR holds its certificate.
pub(super) fn issued(csr: &CertificateSigningRequest) -> bool {
    csr.status
        .as_ref()
        .and_then(|s| s.certificate.as_ref())
        .is_some_and(|c| !c.0.is_empty())
}

/// The keys of the cached CSRs `wanted` picks.
pub(super) fn keys(caches: &Informers, wanted: fn(&CertificateSigningRequest) -> bool) -> Vec<Key> {
    caches
        .store::<CertificateSigningRequest>()
        .state()
        .iter()
        .filter(|c| wanted(c))
        .filter_map(|c| Some((String::new(), c.metadata.name.clone()?)))
        .collect()
}

/// CSR `name` from the caches, if it is there and `wanted` picks it.
pub(super) fn cached(
    caches: &Informers,
    name: &str,
    wanted: fn(&CertificateSigningRequest) -> bool,
) -> Option<Arc<CertificateSigningRequest>> {
    caches
        .store::<CertificateSigningRequest>()
        .get("", name)
        .filter(|csr| wanted(csr))
}

fn resource() -> &'static ResourceInfo {
    herd_api::resources::by_path("certificates.k8s.io", "v1", "certificatesigningrequests")
        .expect("CSRs are in the table")
}

/// Edits CSR `name` if it is still the one of `uid`: `edit` returns whether it changed it. `Ok(false)` when
/// the CSR is gone or was replaced.
pub(super) async fn edit(
    objects: &Objects,
    name: &str,
    uid: Option<String>,
    edit: impl FnOnce(&mut Value) -> bool + Send,
) -> Result<bool, ApiError> {
    let result = objects
        .edit(resource(), "", name, move |csr| {
            csr.pointer("/metadata/uid").and_then(Value::as_str) == uid.as_deref() && edit(csr)
        })
        .await;
    match result {
        Ok(change) => Ok(change.is_some()),
        Err(ApiError::NotFound { .. }) => Ok(false),
        Err(e) => Err(e),
    }
}
