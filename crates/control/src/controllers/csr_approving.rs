//! kube-controller-manager's `csrapproving` (the `sarApprover`): a pending node client CSR
//! (`kubernetes.io/kube-apiserver-client-kubelet`, kube's `isNodeClientCert`: O `system:nodes`, CN
//! `system:node:NAME`, no SANs, client auth usages) is approved when its requester may `create`
//! `certificatesigningrequests/selfnodeclient` (a node renewing its own: the requester is that node) or
//! `certificatesigningrequests/nodeclient` (a new node, e.g. a bootstrap token), asked of the API server's
//! authorizer as kube's approver asks a SubjectAccessReview. Anything else stays pending (kube never
//! denies).
//!
//! herd also approves **kubelet serving** CSRs (`kubernetes.io/kubelet-serving`), which kube leaves to an
//! operator or to kubelet-csr-approver: only when the requester is `system:node:NAME` asking for
//! `system:node:NAME` itself (O `system:nodes`), with server auth usages, and every SAN is one of that
//! Node's own addresses or host names (`status.addresses`, its name) — what kubelet-csr-approver checks —
//! so a node can serve its kubelet port with a certificate the API server verifies, without an operator.

use std::sync::Arc;

use herd_api::strategy::certificates::{KUBE_APISERVER_CLIENT_KUBELET, KUBELET_SERVING};
use herd_authz::{Attributes, UserInfo};
use herd_pki::RequestedSubject;
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use k8s_openapi::api::core::v1::Node;
use serde_json::json;

use super::{Controller, Informers, Key, Requeue, csr};
use crate::error::ApiError;
use crate::objects::{Change, Objects};
use crate::server::authz::Authorizer;

pub struct CsrApproving {
    objects: Objects,
    caches: Arc<Informers>,
    authorizer: Arc<Authorizer>,
}

impl CsrApproving {
    pub fn new(objects: Objects, caches: Arc<Informers>, authorizer: Arc<Authorizer>) -> Self {
        Self {
            objects,
            caches,
            authorizer,
        }
    }

    /// kube's SubjectAccessReview for the requester of `csr`: may it `create` `certificatesigningrequests/<sub>`?
    async fn allowed(
        &self,
        csr: &CertificateSigningRequest,
        subresource: &str,
    ) -> Result<bool, ApiError> {
        let user = UserInfo {
            name: csr.spec.username.clone().unwrap_or_default(),
            uid: csr.spec.uid.clone().unwrap_or_default(),
            groups: csr.spec.groups.clone().unwrap_or_default(),
        };
        let attrs = Attributes::resource(
            user,
            "create",
            "certificates.k8s.io",
            "certificatesigningrequests",
            "",
            "",
        )
        .with_subresource(subresource);
        Ok(self.authorizer.decide(&attrs, None).await?.allowed())
    }

    /// The approval message for a CSR herd approves, if it does.
    async fn approval(
        &self,
        csr: &CertificateSigningRequest,
    ) -> Result<Option<&'static str>, ApiError> {
        let Ok(asked) = RequestedSubject::of(&String::from_utf8_lossy(&csr.spec.request.0)) else {
            return Ok(None);
        };
        let usages = csr.spec.usages.clone().unwrap_or_default();
        let only = |allowed: &[&str], required: &str| {
            usages.iter().any(|u| u == required)
                && usages.iter().all(|u| allowed.contains(&u.as_str()))
        };
        let requester = csr.spec.username.as_deref().unwrap_or_default();
        match csr.spec.signer_name.as_str() {
            KUBE_APISERVER_CLIENT_KUBELET => {
                if !asked.is_node_client()
                    || !only(
                        &["digital signature", "key encipherment", "client auth"],
                        "client auth",
                    )
                {
                    return Ok(None);
                }
                if requester == asked.common_name && self.allowed(csr, "selfnodeclient").await? {
                    return Ok(Some(
                        "Auto approving self kubelet client certificate after SubjectAccessReview.",
                    ));
                }
                if self.allowed(csr, "nodeclient").await? {
                    return Ok(Some(
                        "Auto approving kubelet client certificate after SubjectAccessReview.",
                    ));
                }
                Ok(None)
            }
            KUBELET_SERVING => {
                let Some(node_name) = asked
                    .common_name
                    .strip_prefix(herd_pki::NODE_USER_PREFIX)
                    .filter(|n| !n.is_empty())
                else {
                    return Ok(None);
                };
                if requester != asked.common_name
                    || asked.organizations != [herd_pki::NODES_GROUP]
                    || asked.has_other_alt_names
                    || !only(
                        &["digital signature", "key encipherment", "server auth"],
                        "server auth",
                    )
                {
                    return Ok(None);
                }
                let Some(node) = self.caches.store::<Node>().get("", node_name) else {
                    return Ok(None);
                };
                let addresses: Vec<String> = node
                    .status
                    .as_ref()
                    .and_then(|s| s.addresses.clone())
                    .unwrap_or_default()
                    .into_iter()
                    .map(|a| a.address)
                    .chain(std::iter::once(node_name.to_string()))
                    .collect();
                let own = asked.dns_names.iter().all(|d| addresses.contains(d))
                    && asked
                        .ip_addresses
                        .iter()
                        .all(|ip| addresses.contains(&ip.to_string()));
                Ok(own.then_some(
                    "Auto approving kubelet serving certificate: the requesting node's own names and addresses (herd).",
                ))
            }
            _ => Ok(None),
        }
    }
}

/// Whether the CSR is still waiting for a decision.
pub fn pending(csr: &CertificateSigningRequest) -> bool {
    !csr::has_condition(csr, &["Approved", "Denied", "Failed"]) && !csr::issued(csr)
}

impl Controller for CsrApproving {
    const NAME: &'static str = "csrapproving";

    fn watches(&self) -> &'static [&'static str] {
        &["certificatesigningrequests.certificates.k8s.io"]
    }

    fn keys_for(&self, change: &Change) -> Vec<Key> {
        vec![(String::new(), change.name.clone())]
    }

    async fn all_keys(&self) -> Result<Vec<Key>, ApiError> {
        Ok(csr::keys(&self.caches, pending))
    }

    async fn reconcile(&self, (_, name): &Key) -> Result<Requeue, ApiError> {
        let Some(request) = csr::cached(&self.caches, name, pending) else {
            return Ok(None);
        };
        let Some(message) = self.approval(&request).await? else {
            return Ok(None);
        };
        let now = jiff::Timestamp::now().to_string();
        let approved = csr::edit(
            &self.objects,
            name,
            request.metadata.uid.clone(),
            move |csr| {
                let mut conditions = csr["status"]["conditions"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                if conditions
                    .iter()
                    .any(|c| c["type"] == "Approved" || c["type"] == "Denied")
                {
                    return false;
                }
                conditions.push(json!({"type": "Approved", "status": "True",
                "reason": "AutoApproved", "message": message,
                "lastUpdateTime": now, "lastTransitionTime": now}));
                csr["status"]["conditions"] = json!(conditions);
                true
            },
        )
        .await?;
        if approved {
            tracing::info!(csr = %name, "{message}");
        }
        Ok(None)
    }
}
