//! What the CertificateSigningRequest API does beyond a stored object's generic handling: the requester
//! recorded on create (`spec.username`, `uid`, `groups`, `extra` from the authenticated user, as kube's
//! `csrStrategy.PrepareForCreate`; a client cannot name someone else), and the `status` and `approval`
//! subresources with kube's rules (`herd_api::strategy::certificates`): `kubectl certificate approve|deny`
//! writes `/approval`, the signer `/status`.

use herd_api::ResourceInfo;
use herd_api::admission::AdmitError;
use herd_api::strategy::certificates;
use herd_authz::UserInfo;
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::objects::{Objects, Patch, Subresource as Stored, apply_patch};

/// Sets the requester of a CSR being created from the request's user.
pub fn set_requester(obj: &mut Value, user: Option<&UserInfo>) {
    let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    for field in ["username", "uid", "groups", "extra"] {
        spec.remove(field);
    }
    if let Some(user) = user {
        spec.insert("username".into(), json!(user.name));
        if !user.uid.is_empty() {
            spec.insert("uid".into(), json!(user.uid));
        }
        if !user.groups.is_empty() {
            spec.insert("groups".into(), json!(user.groups));
        }
    }
}

/// Which subresource a write goes through.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Subresource {
    Status,
    Approval,
}

/// The write: a PUT's object or a PATCH.
pub enum Write {
    Replace(Value),
    Patch(Patch),
}

/// A `/status` or `/approval` write of a CSR.
///
/// # Errors
/// 404 for a missing CSR, 422 for what kube's rules refuse, 409 for a stale `resourceVersion`.
pub async fn update(
    objects: &Objects,
    res: &'static ResourceInfo,
    name: &str,
    subresource: Subresource,
    write: Write,
    dry_run: bool,
) -> Result<Value, ApiError> {
    if let Write::Replace(body) = &write
        && body
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .is_some_and(|n| n != name)
    {
        return Err(ApiError::BadRequest(format!(
            "the name of the object ({}) does not match the name on the URL ({name})",
            body.pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or_default()
        )));
    }
    objects
        .update(res, None, name, Stored::Status, dry_run, |current| {
            let desired = match &write {
                Write::Replace(body) => body.clone(),
                Write::Patch(patch) => apply_patch(current.clone(), patch.clone(), res.kind)?,
            };
            let decode = |v: &Value| {
                serde_json::from_value::<CertificateSigningRequest>(v.clone()).map_err(|e| {
                    ApiError::BadRequest(format!(
                        "CertificateSigningRequest in version \"v1\" cannot be handled as a CertificateSigningRequest: {e}"
                    ))
                })
            };
            let old = decode(current)?;
            let mut new = decode(&desired)?;
            let now = Time(jiff::Timestamp::now());
            let mut causes = Vec::new();
            match subresource {
                Subresource::Status => {
                    certificates::status_update(&old, &mut new, &now, &mut causes);
                }
                Subresource::Approval => {
                    certificates::approval_update(&old, &mut new, &now, &mut causes);
                }
            }
            if !causes.is_empty() {
                let detail = causes
                    .iter()
                    .map(|c| format!("{}: {}", c.field, c.message))
                    .collect::<Vec<_>>();
                let detail = if detail.len() == 1 {
                    detail[0].clone()
                } else {
                    format!("[{}]", detail.join(", "))
                };
                return Err(ApiError::admit(
                    res,
                    AdmitError::Invalid {
                        kind: res.kind.to_string(),
                        message: format!("{} {name:?} is invalid: {detail}", res.kind),
                        name: name.to_string(),
                        causes,
                    },
                ));
            }
            let mut out = desired;
            out["status"] = serde_json::to_value(&new.status).unwrap_or(Value::Null);
            Ok(out)
        })
        .await
}
