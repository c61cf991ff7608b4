//! `certificates.k8s.io/v1` CertificateSigningRequest: kube's REST strategies (`pkg/registry/certificates`)
//! and validation (`pkg/apis/certificates/validation`).
//!
//! - create: status cleared (`RESETS_STATUS_ON_CREATE`), the requester (`spec.username`, `uid`, `groups`,
//!   `extra`) set by the resource layer from the authenticated user (`SETS_REQUESTER`), never the client's;
//! - an update of the main resource changes metadata only (spec and status are kept);
//! - the `status` and `approval` subresources: [`status_update`] and [`approval_update`] (the rules of
//!   kube's `csrStatusStrategy` and `csrApprovalStrategy`, which need the stored object).

use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestCondition,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::Kind;
use crate::validation::{self, Cause};

/// Signers kube knows.
pub const KUBE_APISERVER_CLIENT_KUBELET: &str = "kubernetes.io/kube-apiserver-client-kubelet";
pub const KUBELET_SERVING: &str = "kubernetes.io/kubelet-serving";
pub const KUBE_APISERVER_CLIENT: &str = "kubernetes.io/kube-apiserver-client";

/// kube's `KeyUsage` values.
pub const USAGES: [&str; 23] = [
    "signing",
    "digital signature",
    "content commitment",
    "key encipherment",
    "key agreement",
    "data encipherment",
    "cert sign",
    "crl sign",
    "encipher only",
    "decipher only",
    "any",
    "server auth",
    "client auth",
    "code signing",
    "email protection",
    "s/mime",
    "ipsec end system",
    "ipsec tunnel",
    "ipsec user",
    "timestamping",
    "ocsp signing",
    "microsoft sgc",
    "netscape sgc",
];

const APPROVED: &str = "Approved";
const DENIED: &str = "Denied";
const FAILED: &str = "Failed";

impl Kind for CertificateSigningRequest {
    const RESETS_STATUS_ON_CREATE: bool = true;
    const SETS_REQUESTER: bool = true;

    fn default(&mut self) {
        if let Some(status) = &mut self.status {
            for condition in status.conditions.iter_mut().flatten() {
                default_condition(condition);
            }
        }
    }

    fn validate(&self, causes: &mut Vec<Cause>) {
        let spec = &self.spec;
        validate_request(&spec.request.0, causes);
        if spec.usages.as_ref().is_none_or(Vec::is_empty) {
            causes.push(Cause {
                message: "Required value: usages must be provided".into(),
                ..Cause::required("spec.usages")
            });
        }
        let mut seen = Vec::new();
        for (i, usage) in spec.usages.iter().flatten().enumerate() {
            let field = format!("spec.usages[{i}]");
            if !USAGES.contains(&usage.as_str()) {
                causes.push(Cause::not_supported(field, usage, &USAGES));
            } else if seen.contains(&usage) {
                causes.push(Cause::duplicate(field, usage));
            } else {
                seen.push(usage);
            }
        }
        if spec.signer_name.is_empty() {
            causes.push(Cause::required("spec.signerName"));
        } else if let Some(why) = invalid_signer_name(&spec.signer_name) {
            causes.push(Cause::invalid(
                "spec.signerName",
                spec.signer_name.as_str(),
                &why,
            ));
        }
        if let Some(seconds) = spec.expiration_seconds
            && seconds < 600
        {
            causes.push(Cause::invalid(
                "spec.expirationSeconds",
                i64::from(seconds),
                "may not specify a duration less than 600 seconds (10 minutes)",
            ));
        }
        validate_status(self, causes);
    }

    /// kube's `csrStrategy.PrepareForUpdate`: the main resource's update changes metadata only.
    fn validate_update(&mut self, old: &Self, _causes: &mut Vec<Cause>) {
        self.spec = old.spec.clone();
        self.status = old.status.clone();
    }
}

/// kube's `SetDefaults_CertificateSigningRequestCondition`: an empty status is `True`.
fn default_condition(condition: &mut CertificateSigningRequestCondition) {
    if condition.status.is_empty() {
        condition.status = "True".into();
    }
}

fn validate_request(request: &[u8], causes: &mut Vec<Cause>) {
    if let Err(why) = parse_csr_pem(request) {
        causes.push(Cause::invalid("spec.request", "<request data>", &why));
    }
}

/// kube's `ParseCSR`: one PEM block of type `CERTIFICATE REQUEST` holding a DER certification request.
fn parse_csr_pem(request: &[u8]) -> Result<(), String> {
    use base64::Engine as _;
    use x509_parser::prelude::FromDer as _;
    let text =
        std::str::from_utf8(request).map_err(|_| "PEM block type must be CERTIFICATE REQUEST")?;
    let begin = "-----BEGIN CERTIFICATE REQUEST-----";
    let end = "-----END CERTIFICATE REQUEST-----";
    let start = text
        .find(begin)
        .ok_or("PEM block type must be CERTIFICATE REQUEST")?;
    let body_start = start + begin.len();
    let stop = text[body_start..]
        .find(end)
        .ok_or("PEM block type must be CERTIFICATE REQUEST")?;
    let body: String = text[body_start..body_start + stop]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(body)
        .map_err(|e| format!("PEM block: {e}"))?;
    let (rest, _) = x509_parser::certification_request::X509CertificationRequest::from_der(&der)
        .map_err(|e| format!("x509: malformed certificate request: {e}"))?;
    if rest.is_empty() {
        Ok(())
    } else {
        Err("x509: trailing data after the certificate request".into())
    }
}

/// kube's `ValidateSignerName`: `domain/path`, a DNS subdomain and a path of at most 571 characters.
fn invalid_signer_name(name: &str) -> Option<String> {
    let Some((domain, path)) = name.split_once('/') else {
        return Some(
            "must be a fully qualified domain and path of the form 'example.com/signer-name'"
                .into(),
        );
    };
    if !validation::is_dns1123_subdomain(domain) {
        return Some(
            "must be a fully qualified domain and path of the form 'example.com/signer-name'"
                .into(),
        );
    }
    if path.is_empty() || path.len() > 571 {
        return Some("validating path: must be non-empty and at most 571 characters".into());
    }
    None
}

fn validate_status(csr: &CertificateSigningRequest, causes: &mut Vec<Cause>) {
    let Some(status) = &csr.status else {
        return;
    };
    let conditions = status.conditions.as_deref().unwrap_or_default();
    let mut seen: Vec<&str> = Vec::new();
    for (i, condition) in conditions.iter().enumerate() {
        let field = format!("status.conditions[{i}]");
        if condition.type_.is_empty() {
            causes.push(Cause::required(format!("{field}.type")));
        }
        match condition.type_.as_str() {
            APPROVED | DENIED | FAILED => {
                if seen.contains(&condition.type_.as_str()) {
                    causes.push(Cause::duplicate(format!("{field}.type"), &condition.type_));
                }
                seen.push(&condition.type_);
                if condition.status != "True" {
                    causes.push(Cause::not_supported(
                        format!("{field}.status"),
                        &condition.status,
                        &["True"],
                    ));
                }
            }
            _ => {
                if !["True", "False", "Unknown"].contains(&condition.status.as_str()) {
                    causes.push(Cause::not_supported(
                        format!("{field}.status"),
                        &condition.status,
                        &["False", "True", "Unknown"],
                    ));
                }
            }
        }
    }
    if seen.contains(&APPROVED) && seen.contains(&DENIED) {
        causes.push(Cause::invalid(
            "status.conditions",
            "Approved and Denied",
            "Approved and Denied conditions are mutually exclusive",
        ));
    }
    if let Some(certificate) = &status.certificate
        && !certificate.0.is_empty()
    {
        let text = String::from_utf8_lossy(&certificate.0);
        if !text.contains("-----BEGIN CERTIFICATE-----") {
            causes.push(Cause::invalid(
                "status.certificate",
                "<certificate data>",
                "must contain at least one CERTIFICATE PEM block",
            ));
        }
    }
}

fn has(conditions: &[CertificateSigningRequestCondition], type_: &str) -> bool {
    conditions.iter().any(|c| c.type_ == type_)
}

/// kube's `csrStatusStrategy.PrepareForUpdate` and `ValidateUpdate` for a `/status` write: the spec is
/// kept, the approval conditions (Approved, Denied) are the stored ones, an issued certificate may not
/// change, and a condition whose content changed gets a new `lastUpdateTime`.
pub fn status_update(
    old: &CertificateSigningRequest,
    new: &mut CertificateSigningRequest,
    now: &Time,
    causes: &mut Vec<Cause>,
) {
    new.spec = old.spec.clone();
    let old_conditions = old
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    let status = new.status.get_or_insert_with(Default::default);
    let mut conditions: Vec<_> = status
        .conditions
        .take()
        .unwrap_or_default()
        .into_iter()
        .filter(|c| c.type_ != APPROVED && c.type_ != DENIED)
        .collect();
    conditions.extend(
        old_conditions
            .iter()
            .filter(|c| c.type_ == APPROVED || c.type_ == DENIED)
            .cloned(),
    );
    stamp(&old_conditions, &mut conditions, now);
    status.conditions = (!conditions.is_empty()).then_some(conditions);
    let old_certificate = old.status.as_ref().and_then(|s| s.certificate.clone());
    if let Some(old_certificate) = old_certificate.filter(|c| !c.0.is_empty())
        && status.certificate.as_ref() != Some(&old_certificate)
    {
        causes.push(Cause::forbidden(
            "status.certificate",
            "updates may not modify existing certificate content",
        ));
    }
}

/// kube's `csrApprovalStrategy.PrepareForUpdate` and `ValidateUpdate` for an `/approval` write: only the
/// conditions come from the request, the certificate is the stored one; an approval or denial, once
/// given, may not be withdrawn.
pub fn approval_update(
    old: &CertificateSigningRequest,
    new: &mut CertificateSigningRequest,
    now: &Time,
    causes: &mut Vec<Cause>,
) {
    new.spec = old.spec.clone();
    let old_status = old.status.clone().unwrap_or_default();
    let old_conditions = old_status.conditions.clone().unwrap_or_default();
    let mut conditions = new
        .status
        .as_mut()
        .and_then(|s| s.conditions.take())
        .unwrap_or_default();
    for condition in &mut conditions {
        default_condition(condition);
    }
    for kept in [APPROVED, DENIED] {
        if has(&old_conditions, kept) && !has(&conditions, kept) {
            causes.push(Cause::forbidden(
                "status.conditions",
                &format!("updates may not remove a condition of type {kept:?}"),
            ));
        }
    }
    stamp(&old_conditions, &mut conditions, now);
    let mut status = old_status;
    status.conditions = (!conditions.is_empty()).then_some(conditions);
    new.status = Some(status);
}

/// Gives a condition new or changed since `old` the time `now` (kube's `populateConditionTimestamps`).
fn stamp(
    old: &[CertificateSigningRequestCondition],
    conditions: &mut [CertificateSigningRequestCondition],
    now: &Time,
) {
    for condition in conditions {
        let before = old.iter().find(|c| c.type_ == condition.type_);
        let same = before.is_some_and(|b| {
            b.status == condition.status
                && b.reason == condition.reason
                && b.message == condition.message
        });
        match before {
            Some(b) if same => {
                condition.last_update_time.clone_from(&b.last_update_time);
                condition
                    .last_transition_time
                    .clone_from(&b.last_transition_time);
            }
            _ => {
                condition.last_update_time = Some(now.clone());
                if before.is_none_or(|b| b.status != condition.status) {
                    condition.last_transition_time = Some(now.clone());
                }
            }
        }
        if condition.last_update_time.is_none() {
            condition.last_update_time = Some(now.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::strategy::Strategy as _;
    use crate::strategy::Typed;
    use serde_json::json;

    const CSR: &str = "-----BEGIN CERTIFICATE REQUEST-----
MIHuMIGWAgEAMDQxFTATBgNVBAoMDHN5c3RlbTpub2RlczEbMBkGA1UEAwwSc3lzdGVtOm5vZGU6bm9kZS1hMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEmrbSQqa75LmlGnboPxKcX21NY5a03RdDggLJjppARQtwFzMRtOB2isSsyeUmFwxb+qYxm0lLp9E5reinfTsAE6AAMAoGCCqGSM49BAMCA0cAMEQCIDtYeqJSmYIh8mTQEYZGuoMTFXEMrCX2XOrxPFQvh+e9AiBvwFkazRY2khLTp9h+03FguvSWJOC8FLewNYTqhEzskQ==
-----END CERTIFICATE REQUEST-----
";

    fn admit(obj: serde_json::Value) -> Vec<String> {
        let mut causes = Vec::new();
        Typed::<CertificateSigningRequest>::NEW
            .admit(obj, &mut causes)
            .expect("decodes");
        causes
            .iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect()
    }

    fn csr(spec: serde_json::Value) -> serde_json::Value {
        json!({"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
            "metadata": {"name": "x"}, "spec": spec})
    }

    #[test]
    fn a_request_needs_a_pem_csr_a_signer_usages_and_ten_minutes() {
        use base64::Engine as _;
        let pem = base64::engine::general_purpose::STANDARD.encode(CSR);
        assert_eq!(
            admit(csr(
                json!({"request": pem, "signerName": KUBE_APISERVER_CLIENT_KUBELET,
                "usages": ["digital signature", "client auth"]})
            )),
            Vec::<String>::new()
        );
        let junk = base64::engine::general_purpose::STANDARD.encode("hello");
        assert_eq!(
            admit(csr(
                json!({"request": junk, "signerName": "", "usages": ["client auth", "client auth", "flying"],
                "expirationSeconds": 599})
            )),
            [
                "spec.request: Invalid value: \"<request data>\": PEM block type must be CERTIFICATE REQUEST",
                "spec.usages[1]: Duplicate value: \"client auth\"",
                &format!(
                    "spec.usages[2]: Unsupported value: \"flying\": supported values: {}",
                    USAGES
                        .iter()
                        .map(|u| format!("\"{u}\""))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                "spec.signerName: Required value",
                "spec.expirationSeconds: Invalid value: 599: may not specify a duration less than 600 seconds (10 minutes)",
            ]
        );
        assert_eq!(
            admit(csr(
                json!({"request": pem, "signerName": "nodomain", "usages": []})
            )),
            [
                "spec.usages: Required value: usages must be provided",
                "spec.signerName: Invalid value: \"nodomain\": must be a fully qualified domain and path of the form 'example.com/signer-name'",
            ]
        );
    }

    #[test]
    fn approval_keeps_the_certificate_and_cannot_be_withdrawn() {
        let now = Time(jiff::Timestamp::now());
        let old: CertificateSigningRequest = serde_json::from_value(json!({
            "metadata": {"name": "x"}, "spec": {"request": "", "signerName": "a/b"},
            "status": {"conditions": [{"type": "Approved", "status": "True"}], "certificate": "Y2VydA=="}
        }))
        .expect("csr");
        let mut new: CertificateSigningRequest = serde_json::from_value(json!({
            "metadata": {"name": "x"}, "spec": {"request": "", "signerName": "c/d"},
            "status": {"conditions": [{"type": "Denied", "status": "True"}], "certificate": ""}
        }))
        .expect("csr");
        let mut causes = Vec::new();
        approval_update(&old, &mut new, &now, &mut causes);
        assert_eq!(new.spec.signer_name, "a/b");
        assert_eq!(
            new.status
                .as_ref()
                .and_then(|s| s.certificate.clone())
                .map(|c| c.0),
            Some(b"cert".to_vec())
        );
        assert_eq!(causes.len(), 1, "{causes:?}");
    }
}
