//! ServiceAccount tokens, as kube-apiserver issues and checks them: the TokenRequest API
//! (`POST …/serviceaccounts/NAME/token`, kube's `authentication.k8s.io/v1` TokenRequest) signs a JWT
//! for the ServiceAccount, bound to a pod (or Secret) when asked and expiring; the token authenticator
//! accepts one only while its signature, issuer, audience and lifetime hold and the ServiceAccount (and
//! the object it is bound to) still exist with the uids the token names.

use std::sync::Arc;

use herd_api::{ResourceInfo, resources};
use herd_authz::UserInfo;
use herd_pki::TokenKey;
use serde_json::{Value, json};

use crate::controllers::informer::Informers;
use crate::error::ApiError;
use crate::objects::Objects;

/// The issuer kubeadm configures (`--service-account-issuer`), and the API's audience.
pub const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
/// kube's default token lifetime when a TokenRequest names none, and the shortest it allows.
const DEFAULT_EXPIRATION: i64 = 3600;
const MIN_EXPIRATION: i64 = 600;
/// The longest lifetime kube allows (2^32 seconds).
const MAX_EXPIRATION: i64 = 1 << 32;
/// How long a lookup waits for the informer caches to reflect the writes before it, before asking the store.
const CACHE_CATCH_UP: std::time::Duration = std::time::Duration::from_millis(500);
/// How far a token's times may be off the server's clock (kube's `leeway`).
const LEEWAY: i64 = 60;

/// The token key and the checks around it.
pub struct Tokens {
    key: TokenKey,
    /// Where ServiceAccounts and bound objects are looked up first (kube's authenticator reads its
    /// informers' listers too): a node starting a thousand pods asks for a thousand tokens.
    caches: Arc<Informers>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens").field("key", &self.key).finish()
    }
}

fn now() -> i64 {
    jiff::Timestamp::now().as_second()
}

fn str_at<'a>(obj: &'a Value, pointer: &str) -> &'a str {
    obj.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
}

fn invalid(field: &str, value: &Value, detail: &str) -> ApiError {
    ApiError::Invalid {
        message: format!(
            "TokenRequest.authentication.k8s.io is invalid: {field}: Invalid value: {value}: {detail}"
        ),
        group: "authentication.k8s.io".into(),
        kind: "TokenRequest".into(),
        name: String::new(),
        causes: vec![herd_api::Cause {
            reason: "FieldValueInvalid",
            message: format!("Invalid value: {value}: {detail}"),
            field: field.into(),
        }],
    }
}

impl Tokens {
    pub fn new(key: TokenKey, caches: Arc<Informers>) -> Self {
        Self { key, caches }
    }

    /// Object `namespace/name` of `res` as of now: from the informer caches once they reflect every write
    /// committed before this request (woken by the change that gets them there), else — caches not loaded
    /// or too slow — from the store.
    async fn lookup(
        &self,
        objects: &Objects,
        res: &ResourceInfo,
        namespace: &str,
        name: &str,
    ) -> Result<Option<Arc<Value>>, ApiError> {
        if self.caches.revision() > 0
            && self
                .caches
                .caught_up(objects.revision(), CACHE_CATCH_UP)
                .await
        {
            return Ok(self.caches.get(res, namespace, name));
        }
        Ok(objects.find(res, namespace, name).await?.map(Arc::new))
    }

    /// Answers a TokenRequest for ServiceAccount `namespace/name`: the request back, its spec defaulted,
    /// its status holding the token and when it expires.
    ///
    /// # Errors
    /// NotFound for a missing ServiceAccount or bound object, Invalid for a lifetime out of kube's range or a
    /// bound object of another uid, BadRequest for a body that is no TokenRequest.
    pub async fn request(
        &self,
        objects: &Objects,
        namespace: &str,
        name: &str,
        mut request: Value,
    ) -> Result<Value, ApiError> {
        if !request.is_object() {
            return Err(ApiError::BadRequest(
                "the body of the request was in an unknown format".into(),
            ));
        }
        let accounts = resources::by_path("", "v1", "serviceaccounts").expect("in the table");
        let account = self
            .lookup(objects, accounts, namespace, name)
            .await?
            .ok_or_else(|| ApiError::not_found(accounts, name))?;
        let spec = request["spec"].take();
        let expiration = match spec.get("expirationSeconds") {
            None | Some(Value::Null) => DEFAULT_EXPIRATION,
            Some(v) => v.as_i64().ok_or_else(|| {
                invalid(
                    "spec.expirationSeconds",
                    v,
                    "must be an integer number of seconds",
                )
            })?,
        };
        if expiration < MIN_EXPIRATION {
            return Err(invalid(
                "spec.expirationSeconds",
                &json!(expiration),
                "may not specify a duration less than 10 minutes",
            ));
        }
        if expiration > MAX_EXPIRATION {
            return Err(invalid(
                "spec.expirationSeconds",
                &json!(expiration),
                "may not specify a duration larger than 2^32 seconds",
            ));
        }
        let audiences = match spec.get("audiences").and_then(Value::as_array) {
            Some(a) if !a.is_empty() => Value::Array(a.clone()),
            _ => json!([ISSUER]),
        };
        let issued = now();
        let mut scope = json!({
            "namespace": namespace,
            "serviceaccount": {"name": name, "uid": str_at(&account, "/metadata/uid")},
        });
        let bound = spec
            .get("boundObjectRef")
            .filter(|b| b.is_object())
            .cloned();
        if let Some(bound) = &bound {
            let kind = str_at(bound, "/kind");
            let plural = match kind {
                "Pod" => "pods",
                "Secret" => "secrets",
                _ => {
                    return Err(invalid(
                        "spec.boundObjectRef.kind",
                        &json!(kind),
                        "supported values: \"Pod\", \"Secret\"",
                    ));
                }
            };
            let res = resources::by_path("", "v1", plural).expect("in the table");
            let object = self
                .lookup(objects, res, namespace, str_at(bound, "/name"))
                .await?
                .ok_or_else(|| ApiError::not_found(res, str_at(bound, "/name")))?;
            let uid = str_at(&object, "/metadata/uid");
            let asked = str_at(bound, "/uid");
            if !asked.is_empty() && asked != uid {
                return Err(ApiError::Conflict {
                    message: format!(
                        "Operation cannot be fulfilled on {plural} {:?}: the UID in the bound object reference ({asked}) does not match the UID in record. The object might have been deleted and then recreated",
                        str_at(bound, "/name")
                    ),
                    group: String::new(),
                    kind: plural.into(),
                    name: str_at(bound, "/name").into(),
                });
            }
            if kind == "Pod" {
                let runs_as = match str_at(&object, "/spec/serviceAccountName") {
                    "" => "default",
                    n => n,
                };
                if runs_as != name {
                    return Err(ApiError::BadRequest(format!(
                        "cannot bind token for serviceaccount {name:?} to pod running with different serviceaccount name."
                    )));
                }
                let node = str_at(&object, "/spec/nodeName");
                if !node.is_empty() {
                    scope["node"] = json!({"name": node});
                }
            }
            scope[if kind == "Pod" { "pod" } else { "secret" }] =
                json!({"name": str_at(bound, "/name"), "uid": uid});
        }
        let claims = json!({
            "aud": audiences,
            "exp": issued + expiration,
            "iat": issued,
            "iss": ISSUER,
            "jti": uuid::Uuid::new_v4().to_string(),
            "kubernetes.io": scope,
            "nbf": issued,
            "sub": herd_authz::attributes::service_account_username(namespace, name),
        });
        let token = self
            .key
            .sign(&claims)
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        let expires = jiff::Timestamp::from_second(issued + expiration)
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        let mut spec = spec;
        if !spec.is_object() {
            spec = json!({});
        }
        spec["audiences"] = audiences;
        spec["expirationSeconds"] = json!(expiration);
        spec["boundObjectRef"] = bound.unwrap_or(Value::Null);
        request["kind"] = json!("TokenRequest");
        request["apiVersion"] = json!("authentication.k8s.io/v1");
        request["metadata"] = json!({
            "name": name,
            "namespace": namespace,
            "creationTimestamp": jiff::Timestamp::from_second(issued)
                .map(|t| t.to_string())
                .unwrap_or_default(),
        });
        request["spec"] = spec;
        request["status"] = json!({
            "token": token,
            "expirationTimestamp": expires.to_string(),
        });
        Ok(request)
    }

    /// kube's ServiceAccount token authenticator: the user a bearer token names, or `None` when it is not
    /// a valid, current ServiceAccount token of this cluster (kube then answers 401).
    pub async fn authenticate(&self, objects: &Objects, token: &str) -> Option<UserInfo> {
        let claims = self.key.verify(token).ok()?;
        if claims["iss"] != ISSUER {
            return None;
        }
        let audience_ok = match &claims["aud"] {
            Value::Array(a) => a.iter().any(|a| a == ISSUER),
            Value::String(a) => a == ISSUER,
            _ => false,
        };
        let now = now();
        let exp = claims["exp"].as_i64()?;
        let nbf = claims["nbf"].as_i64().unwrap_or(0);
        if !audience_ok || exp + LEEWAY < now || nbf - LEEWAY > now {
            return None;
        }
        let scope = &claims["kubernetes.io"];
        let namespace = str_at(scope, "/namespace");
        let name = str_at(scope, "/serviceaccount/name");
        let uid = str_at(scope, "/serviceaccount/uid");
        let exists_with_uid = async |plural: &str, name: &str, uid: &str| {
            let res = resources::by_path("", "v1", plural)?;
            let object = self.lookup(objects, res, namespace, name).await.ok()??;
            (str_at(&object, "/metadata/uid") == uid
                && object.pointer("/metadata/deletionTimestamp").is_none())
            .then_some(())
        };
        exists_with_uid("serviceaccounts", name, uid).await?;
        for (field, plural) in [("pod", "pods"), ("secret", "secrets")] {
            if let Some(bound) = scope.get(field).filter(|b| b.is_object()) {
                exists_with_uid(plural, str_at(bound, "/name"), str_at(bound, "/uid")).await?;
            }
        }
        Some(UserInfo::service_account(namespace, name, uid))
    }
}
