//! The review APIs: create-only resources that store nothing and answer about the requester
//! (`kubectl auth can-i` and `kubectl auth whoami`):
//!
//! - `authorization.k8s.io/v1` SelfSubjectAccessReview (may I do this?) and SelfSubjectRulesReview (what may
//!   I do in this namespace?), answered by the same authorizers that guard every request;
//! - `authentication.k8s.io/v1` SelfSubjectReview (who am I?).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use herd_authz::{Attributes, UserInfo};
use serde_json::{Value, json};

use super::AppState;
use crate::error::ApiError;

/// A review resource: group, version, kind, plural.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Review {
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub plural: &'static str,
}

/// The review resources herd serves (all cluster-scoped, `create` only).
pub const REVIEWS: &[Review] = &[
    Review {
        group: "authentication.k8s.io",
        version: "v1",
        kind: "SelfSubjectReview",
        plural: "selfsubjectreviews",
    },
    Review {
        group: "authorization.k8s.io",
        version: "v1",
        kind: "SelfSubjectAccessReview",
        plural: "selfsubjectaccessreviews",
    },
    Review {
        group: "authorization.k8s.io",
        version: "v1",
        kind: "SelfSubjectRulesReview",
        plural: "selfsubjectrulesreviews",
    },
];

/// The review a path names (`/apis/authorization.k8s.io/v1/selfsubjectaccessreviews`).
pub fn at_path(path: &str) -> Option<&'static Review> {
    let rest = path.trim_end_matches('/').strip_prefix("/apis/")?;
    let mut parts = rest.split('/');
    let (group, version, plural) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    REVIEWS
        .iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// The group-versions the reviews add to discovery.
pub fn group_versions() -> Vec<(&'static str, &'static str)> {
    let mut out: Vec<(&str, &str)> = Vec::new();
    for r in REVIEWS {
        if !out.contains(&(r.group, r.version)) {
            out.push((r.group, r.version));
        }
    }
    out
}

/// Answers a POST of `body` to `review` by `user` (201 with the review and its status, as kube).
pub async fn create(
    state: &AppState,
    review: &Review,
    user: &UserInfo,
    mut object: Value,
) -> Result<Response, ApiError> {
    if !object.is_object() {
        return Err(ApiError::BadRequest(
            "the body of the request was in an unknown format".into(),
        ));
    }
    object["kind"] = json!(review.kind);
    object["apiVersion"] = json!(format!("{}/{}", review.group, review.version));
    if !object["metadata"].is_object() {
        object["metadata"] = json!({});
    }
    object["metadata"]["creationTimestamp"] = Value::Null;
    let status = match review.kind {
        "SelfSubjectReview" => json!({"userInfo": user_info(user)}),
        "SelfSubjectAccessReview" => access_review(state, user, &object["spec"]).await?,
        _ => rules_review(state, user, &object["spec"]).await?,
    };
    object["status"] = status;
    Ok((StatusCode::CREATED, axum::Json(object)).into_response())
}

/// kube's `authentication.k8s.io/v1` UserInfo (empty fields left out).
fn user_info(user: &UserInfo) -> Value {
    let mut info = json!({"username": user.name});
    if !user.uid.is_empty() {
        info["uid"] = json!(user.uid);
    }
    if !user.groups.is_empty() {
        info["groups"] = json!(user.groups);
    }
    info
}

fn field<'a>(spec: &'a Value, pointer: &str) -> &'a str {
    spec.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// A SelfSubjectAccessReview's status: what the authorizers decide for its attributes.
async fn access_review(state: &AppState, user: &UserInfo, spec: &Value) -> Result<Value, ApiError> {
    let attrs = if spec["resourceAttributes"].is_object() {
        Attributes::resource(
            user.clone(),
            field(spec, "/resourceAttributes/verb"),
            field(spec, "/resourceAttributes/group"),
            field(spec, "/resourceAttributes/resource"),
            field(spec, "/resourceAttributes/namespace"),
            field(spec, "/resourceAttributes/name"),
        )
        .with_subresource(field(spec, "/resourceAttributes/subresource"))
    } else if spec["nonResourceAttributes"].is_object() {
        Attributes::non_resource(
            user.clone(),
            field(spec, "/nonResourceAttributes/verb"),
            field(spec, "/nonResourceAttributes/path"),
        )
    } else {
        return Err(invalid(
            "spec.resourceAttributes",
            "exactly one of nonResourceAttributes or resourceAttributes must be specified",
        ));
    };
    let decision = state.authorizer.decide(&attrs, None).await?;
    let mut status = json!({"allowed": decision.allowed()});
    if !decision.reason().is_empty() {
        status["reason"] = json!(decision.reason());
    }
    Ok(status)
}

/// A SelfSubjectRulesReview's status: the rules RBAC gives the user in the namespace (everything for
/// `system:masters`, as kube's privileged-group authorizer lists it).
async fn rules_review(state: &AppState, user: &UserInfo, spec: &Value) -> Result<Value, ApiError> {
    let namespace = field(spec, "/namespace");
    if namespace.is_empty() {
        return Err(invalid("spec.namespace", "no namespace on request"));
    }
    if user.in_group("system:masters") {
        return Ok(json!({
            "resourceRules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}],
            "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}],
            "incomplete": false,
        }));
    }
    let policy = state.authorizer.policy().await?;
    let status = herd_authz::subject_rules_review(&*policy, user, namespace);
    serde_json::to_value(status).map_err(|e| ApiError::Internal(e.to_string()))
}

fn invalid(field: &str, message: &str) -> ApiError {
    ApiError::BadRequest(format!("{field}: Invalid value: {message}"))
}
