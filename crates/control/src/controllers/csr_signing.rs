//! kube-controller-manager's `csrsigning` for kube's three signers that the cluster CA serves:
//! `kubernetes.io/kube-apiserver-client-kubelet` (a node client certificate: kube's `isKubeletClient`
//! request, client auth), `kubernetes.io/kubelet-serving` (a kubelet serving certificate: CN
//! `system:node:NAME`, O `system:nodes`, DNS/IP SANs only, server auth) and `kubernetes.io/kube-apiserver-client`
//! (any client certificate the API server will believe: CN the user, O the groups — the way kube's docs give a
//! new user a certificate, which is why nothing approves those but an admin). An approved CSR of one gets
//! `status.certificate`, valid for `--cluster-signing-duration` (kube's default a year) or the CSR's
//! `spec.expirationSeconds` if shorter, backdated 5 minutes and never beyond the CA. A request the signer
//! cannot sign gets kube's `Failed` condition (`SignerValidationFailure`). Other signers are left alone.

use std::sync::Arc;
use std::time::Duration;

use herd_api::strategy::certificates::{
    KUBE_APISERVER_CLIENT, KUBE_APISERVER_CLIENT_KUBELET, KUBELET_SERVING,
};
use herd_pki::{ClusterCa, RequestedSubject};
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use serde_json::json;

use super::{Controller, Informers, Key, Requeue, csr};
use crate::error::ApiError;
use crate::objects::{Change, Objects};

pub struct CsrSigning {
    objects: Objects,
    caches: Arc<Informers>,
    ca: Arc<ClusterCa>,
    duration: Duration,
}

impl CsrSigning {
    pub fn new(
        objects: Objects,
        caches: Arc<Informers>,
        ca: Arc<ClusterCa>,
        duration: Duration,
    ) -> Self {
        Self {
            objects,
            caches,
            ca,
            duration,
        }
    }

    /// The certificate (PEM) for an approved CSR of ours, or why it cannot be signed.
    fn sign(&self, csr: &CertificateSigningRequest) -> Result<String, String> {
        let request = String::from_utf8_lossy(&csr.spec.request.0).to_string();
        let asked = RequestedSubject::of(&request).map_err(|e| e.to_string())?;
        let usages = csr.spec.usages.clone().unwrap_or_default();
        let lifetime = csr
            .spec
            .expiration_seconds
            .and_then(|s| u64::try_from(s).ok())
            .map_or(self.duration, |s| self.duration.min(Duration::from_secs(s)));
        let only = |allowed: &[&str], required: &str| {
            usages.iter().any(|u| u == required)
                && usages.iter().all(|u| allowed.contains(&u.as_str()))
        };
        match csr.spec.signer_name.as_str() {
            KUBE_APISERVER_CLIENT_KUBELET => {
                if !asked.is_node_client() {
                    return Err("invalid subject or subject alternative names for a kubelet client certificate: must be O=system:nodes, CN=system:node:<name> and no SANs".into());
                }
                if !only(
                    &["digital signature", "key encipherment", "client auth"],
                    "client auth",
                ) {
                    return Err(format!("invalid usage for client certificate: {usages:?}"));
                }
                self.ca
                    .sign_csr(&request, lifetime)
                    .map_err(|e| e.to_string())
            }
            KUBELET_SERVING => {
                let named = asked
                    .common_name
                    .strip_prefix(herd_pki::NODE_USER_PREFIX)
                    .is_some_and(|n| !n.is_empty());
                if !named
                    || asked.organizations != [herd_pki::NODES_GROUP]
                    || asked.has_other_alt_names
                    || (asked.dns_names.is_empty() && asked.ip_addresses.is_empty())
                {
                    return Err("invalid subject or subject alternative names for a kubelet serving certificate: must be O=system:nodes, CN=system:node:<name> and at least one DNS or IP SAN, no others".into());
                }
                if !only(
                    &["digital signature", "key encipherment", "server auth"],
                    "server auth",
                ) {
                    return Err(format!(
                        "invalid usage for kubelet serving certificate: {usages:?}"
                    ));
                }
                self.ca
                    .sign_serving_csr(&request, lifetime)
                    .map_err(|e| e.to_string())
            }
            KUBE_APISERVER_CLIENT => {
                if !only(
                    &["digital signature", "key encipherment", "client auth"],
                    "client auth",
                ) {
                    return Err(format!("invalid usage for client certificate: {usages:?}"));
                }
                self.ca
                    .sign_csr(&request, lifetime)
                    .map_err(|e| e.to_string())
            }
            _ => Err(String::new()),
        }
    }
}

/// Whether the CSR is approved, neither failed nor denied, and not yet issued.
fn to_sign(csr: &CertificateSigningRequest) -> bool {
    csr::has_condition(csr, &["Approved"])
        && !csr::has_condition(csr, &["Denied", "Failed"])
        && !csr::issued(csr)
        && [
            KUBE_APISERVER_CLIENT_KUBELET,
            KUBELET_SERVING,
            KUBE_APISERVER_CLIENT,
        ]
        .contains(&csr.spec.signer_name.as_str())
}

impl Controller for CsrSigning {
    const NAME: &'static str = "csrsigning";

    fn watches(&self) -> &'static [&'static str] {
        &["certificatesigningrequests.certificates.k8s.io"]
    }

    fn keys_for(&self, change: &Change) -> Vec<Key> {
        vec![(String::new(), change.name.clone())]
    }

    async fn all_keys(&self) -> Result<Vec<Key>, ApiError> {
        Ok(csr::keys(&self.caches, to_sign))
    }

    async fn reconcile(&self, (_, name): &Key) -> Result<Requeue, ApiError> {
        let Some(request) = csr::cached(&self.caches, name, to_sign) else {
            return Ok(None);
        };
        let outcome = self.sign(&request);
        let issued = outcome.is_ok();
        let now = jiff::Timestamp::now().to_string();
        let edited = csr::edit(
            &self.objects,
            name,
            request.metadata.uid.clone(),
            move |csr| {
                match outcome {
                    Ok(certificate) => {
                        use base64::Engine as _;
                        csr["status"]["certificate"] =
                            json!(base64::engine::general_purpose::STANDARD.encode(certificate));
                    }
                    Err(message) => {
                        let mut conditions = csr["status"]["conditions"]
                            .as_array()
                            .cloned()
                            .unwrap_or_default();
                        conditions.push(json!({"type": "Failed", "status": "True",
                        "reason": "SignerValidationFailure", "message": message,
                        "lastUpdateTime": now, "lastTransitionTime": now}));
                        csr["status"]["conditions"] = json!(conditions);
                    }
                }
                true
            },
        )
        .await?;
        if edited && issued {
            tracing::info!(csr = %name, "signed certificate");
        } else if edited {
            tracing::warn!(csr = %name, "certificate signing request failed validation");
        }
        Ok(None)
    }
}
