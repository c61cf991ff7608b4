//! The HTTP API server: Kubernetes REST paths over the resource layer.
//!
//! Paths are parsed by hand ([`route::Target`]) because the Kubernetes URL tree is not regular enough for a
//! router: `/api/v1/namespaces/x/status` is a subresource of a Namespace while `/api/v1/namespaces/x/pods`
//! is a collection.

pub mod authn;
pub mod authz;
mod csr;
mod discovery;
mod eviction;
mod logs;
mod openapi;
pub mod reviews;
mod route;
pub(crate) mod scale;
mod table;
pub mod tls;
pub mod tokens;
mod watch;

use std::collections::HashMap;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use herd_api::{FieldSelector, LabelSelector, ResourceInfo};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::error::ApiError;
use crate::objects::{DeleteOptions, Objects, Patch, Propagation};
use route::Target;

/// Shared state of the handlers.
#[derive(Clone)]
pub struct AppState {
    pub objects: Objects,
    pub shutdown: CancellationToken,
    pub http: reqwest::Client,
    pub authorizer: std::sync::Arc<authz::Authorizer>,
    /// The ServiceAccount token key: TokenRequests and the token authenticator.
    pub tokens: std::sync::Arc<tokens::Tokens>,
    /// The bootstrap token authenticator (`kube-system/bootstrap-token-*` Secrets in the caches).
    pub bootstrap_tokens: std::sync::Arc<crate::bootstrap_tokens::BootstrapTokens>,
}

/// The API server's routes, apart from serving them (so tests can drive it directly).
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/version", get(discovery::version))
        .route("/version/", get(discovery::version))
        .route("/healthz", get(|| async { "ok" }))
        .route("/livez", get(|| async { "ok" }))
        .route("/readyz", get(|| async { "ok" }))
        .route("/api", get(discovery::api_versions))
        .route("/apis", get(discovery::api_groups))
        .route("/openapi/v2", get(openapi::v2))
        .route("/openapi/v3", get(openapi::index))
        .route("/openapi/v3/{*path}", get(openapi::group_version))
        .fallback(dispatch)
        // Layers run outside in: authentication first, then authorization.
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            authz::authorize,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            authn::authenticate,
        ))
        .with_state(state)
}

#[cfg(test)]
impl AppState {
    /// The state of a server on `objects` with its own caches, for in-process tests.
    pub(crate) fn for_tests(objects: Objects) -> Self {
        let caches = std::sync::Arc::new(crate::controllers::informer::Informers::new(
            objects.clone(),
        ));
        AppState {
            objects,
            shutdown: CancellationToken::new(),
            http: reqwest::Client::new(),
            authorizer: std::sync::Arc::new(authz::Authorizer::new(caches.clone())),
            bootstrap_tokens: std::sync::Arc::new(crate::bootstrap_tokens::BootstrapTokens::new(
                caches.clone(),
            )),
            tokens: std::sync::Arc::new(tokens::Tokens::new(
                herd_pki::TokenKey::generate().expect("a token key"),
                caches,
            )),
        }
    }
}

/// [`router`] for in-process tests: every request is the cluster admin (`system:masters`) unless it carries
/// its own user.
#[cfg(test)]
pub(crate) fn admin_router(state: AppState) -> Router {
    router(state).layer(axum::Extension(herd_authz::UserInfo::new(
        "kubernetes-admin",
        &["system:masters", authn::AUTHENTICATED_GROUP],
    )))
}

type Params = HashMap<String, String>;

async fn dispatch(
    State(state): State<AppState>,
    user: Option<axum::Extension<herd_authz::UserInfo>>,
    method: Method,
    uri: Uri,
    Query(params): Query<Params>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(review) = reviews::at_path(uri.path()) {
        let user = user.map(|u| u.0).unwrap_or_default();
        let answer = match method {
            Method::POST => match decode_optional_body(&headers, &body) {
                Ok(object) => reviews::create(&state, review, &user, object).await,
                Err(e) => Err(e),
            },
            _ => Err(ApiError::MethodNotAllowed(format!(
                "{} is not supported on {}",
                method, review.plural
            ))),
        };
        return answer.unwrap_or_else(IntoResponse::into_response);
    }
    let streams = ["watch", "follow"].iter().any(|p| {
        params
            .get(*p)
            .is_some_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
    });
    let requester = user.as_ref().map(|u| &u.0);
    let work = handle(
        &state,
        &method,
        uri.path(),
        &params,
        &headers,
        body,
        requester,
    );
    let result = if streams {
        // Watches end by their own timeoutSeconds; a followed log when its container does.
        work.await
    } else {
        // As kube-apiserver's request deadline: a positive `timeout` may shorten the default, zero means
        // the default, anything else that is no duration is refused.
        let limit = match params.get("timeout").map(|t| herd_api::duration::parse(t)) {
            Some(Some(asked)) if !asked.is_zero() => asked.min(REQUEST_TIMEOUT),
            Some(Some(_)) | None => REQUEST_TIMEOUT,
            Some(None) => {
                return ApiError::BadRequest(
                    "invalid timeout specified in the request URL".to_string(),
                )
                .into_response();
            }
        };
        // A write given up on still completes or not as a whole: the store commits in tasks of its own.
        tokio::time::timeout(limit, work).await.unwrap_or_else(|_| {
            Err(ApiError::Timeout(
                "Timeout: request did not complete within requested timeout - context deadline exceeded"
                    .to_string(),
            ))
        })
    };
    match result {
        Ok(resp) => resp,
        Err(e) => e.into_response(),
    }
}

/// kube-apiserver's `--request-timeout` default: a request (other than a watch or a followed log) that takes
/// longer is answered 504 Timeout; a request's `timeout` parameter may only shorten it.
const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

async fn handle(
    state: &AppState,
    method: &Method,
    path: &str,
    params: &Params,
    headers: &HeaderMap,
    body: Bytes,
    requester: Option<&herd_authz::UserInfo>,
) -> Result<Response, ApiError> {
    let target = match route::parse(path) {
        Ok(target) => target,
        // The review APIs' group-versions hold no stored resource.
        Err(e) => {
            let gv = path
                .trim_matches('/')
                .strip_prefix("apis/")
                .and_then(|gv| gv.split_once('/'));
            return match gv {
                Some((group, version))
                    if *method == Method::GET
                        && reviews::group_versions().contains(&(group, version)) =>
                {
                    Ok(json_response(discovery::resource_list(group, version)?))
                }
                _ => Err(e),
            };
        }
    };
    let objects = &if *method == Method::GET {
        state.objects.clone()
    } else {
        let objects = state
            .objects
            .as_manager(&field_manager(method, params, headers)?);
        // kube's RBAC storage refuses a Role or binding granting what its writer does not hold.
        let res = match &target {
            Target::Collection { res, .. }
            | Target::Object { res, .. }
            | Target::Subresource { res, .. } => Some(*res),
            Target::GroupVersion { .. } => None,
        };
        match (requester, res) {
            (Some(user), Some(res)) if authz::escalation_checked(user, res) => objects.guarded(
                std::sync::Arc::new(state.authorizer.escalation_guard(user.clone()).await?),
            ),
            _ => objects,
        }
    };
    let dry_run = params.get("dryRun").is_some_and(|v| v == "All");
    match (target, method.clone()) {
        (Target::GroupVersion { group, version }, Method::GET) => {
            Ok(json_response(discovery::resource_list(&group, &version)?))
        }
        (Target::Collection { res, ns }, Method::GET) => {
            let (labels, fields) = selectors(params)?;
            let table = table::TableRequest::from_request(
                headers,
                params.get("includeObject").map(String::as_str),
            )?;
            if params
                .get("watch")
                .is_some_and(|w| w.eq_ignore_ascii_case("true") || w == "1")
            {
                return watch::serve(state, res, ns, labels, fields, params, table).await;
            }
            let limit = params
                .get("limit")
                .and_then(|l| l.parse::<usize>().ok())
                .filter(|l| *l > 0);
            let token = params
                .get("continue")
                .map(String::as_str)
                .filter(|t| !t.is_empty());
            let page = objects
                .list_page(res, ns.as_deref(), (&labels, &fields), limit, token)
                .await?;
            let mut metadata = json!({"resourceVersion": page.revision.to_string()});
            if let Some(token) = page.continue_token {
                metadata["continue"] = json!(token);
            }
            let items = page.items;
            if let Some(table) = table {
                return Ok(json_response(table.list(res, &items, &metadata)));
            }
            Ok(json_response(json!({
                "kind": format!("{}List", res.kind),
                "apiVersion": res.api_version(),
                "metadata": metadata,
                "items": items,
            })))
        }
        (Target::Collection { res, ns }, Method::POST) => {
            let mut obj = decode_body(headers, &body)?;
            if res.strategy.sets_requester() {
                csr::set_requester(&mut obj, requester);
            }
            let mut warnings = field_validation(res, &obj, params)?;
            let (created, admission) = objects
                .create_warned(res, ns.as_deref(), obj, dry_run)
                .await?;
            warnings.extend(admission);
            Ok(with_warnings(
                (StatusCode::CREATED, axum::Json(created)).into_response(),
                &warnings,
            ))
        }
        (Target::Collection { res, ns }, Method::DELETE) => {
            delete_collection(objects, res, ns, params, &body, dry_run).await
        }
        (Target::Object { res, ns, name }, Method::GET) => {
            let table = table::TableRequest::from_request(
                headers,
                params.get("includeObject").map(String::as_str),
            )?;
            let obj = objects.get(res, ns.as_deref(), &name).await?;
            Ok(json_response(match table {
                Some(table) => table.object(res, &obj),
                None => obj,
            }))
        }
        (Target::Object { res, ns, name }, Method::PUT) => {
            let obj = decode_body(headers, &body)?;
            let warnings = field_validation(res, &obj, params)?;
            let updated = objects
                .replace(res, ns.as_deref(), &name, obj, false, dry_run)
                .await?;
            Ok(with_warnings(json_response(updated), &warnings))
        }
        (Target::Object { res, ns, name }, Method::PATCH) => {
            let patch = decode_patch(headers, &body, params)?;
            let warnings = match &patch {
                Patch::Merge(doc) | Patch::Strategic(doc) => {
                    field_validation(res, &crate::objects::strip_directives(doc.clone()), params)?
                }
                Patch::Apply { config, .. } => field_validation(res, config, params)?,
                Patch::Json(_) => Vec::new(),
            };
            let patched = objects
                .patch(res, ns.as_deref(), &name, patch, false, dry_run)
                .await?;
            Ok(with_warnings(json_response(patched), &warnings))
        }
        (Target::Object { res, ns, name }, Method::DELETE) => {
            let mut opts = delete_options(params, &body)?;
            opts.dry_run |= dry_run;
            Ok(json_response(
                objects.delete(res, ns.as_deref(), &name, opts).await?,
            ))
        }
        (Target::Subresource { res, ns, name, sub }, m) => {
            // An activator (a proxy or node) may only wake a Deployment at zero.
            let activator = requester.is_some_and(scale::is_activator);
            subresource(
                state, objects, res, ns, name, &sub, m, params, headers, body, dry_run, activator,
            )
            .await
        }
        (_, m) => Err(ApiError::MethodNotAllowed(format!(
            "the server does not allow this method on the requested resource: {m}"
        ))),
    }
}

/// A collection request's `labelSelector` and `fieldSelector` (match-all when absent).
fn selectors(params: &Params) -> Result<(LabelSelector, FieldSelector), ApiError> {
    let labels = LabelSelector::parse(params.get("labelSelector").map_or("", String::as_str))
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let fields = FieldSelector::parse(params.get("fieldSelector").map_or("", String::as_str))
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    Ok((labels, fields))
}

/// `deletecollection`: every object of the collection its label and field selectors match is deleted as a
/// DELETE of that object would delete it (graceful pods, finalizers, propagation), one by one through the
/// resource layer, as kube-apiserver's `DeleteCollection` does. Answers the list of the objects as their
/// deletions left them. Namespaced resources are deleted in one namespace only (kube routes no
/// cross-namespace DELETE).
async fn delete_collection(
    objects: &Objects,
    res: &'static ResourceInfo,
    ns: Option<String>,
    params: &Params,
    body: &[u8],
    dry_run: bool,
) -> Result<Response, ApiError> {
    if res.namespaced && ns.is_none() {
        return Err(ApiError::MethodNotAllowed(format!(
            "the server does not allow this method on the requested resource: DELETE on all {} of every namespace",
            res.plural
        )));
    }
    let (labels, fields) = selectors(params)?;
    let mut opts = delete_options(params, body)?;
    opts.dry_run |= dry_run;
    let (items, rev) = objects.list(res, ns.as_deref(), &labels, &fields).await?;
    let mut deleted = Vec::with_capacity(items.len());
    for item in items {
        let name = item
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let namespace = item.pointer("/metadata/namespace").and_then(Value::as_str);
        match objects.delete(res, namespace, &name, opts.clone()).await {
            Ok(object) => deleted.push(object),
            // Gone meanwhile: nothing left to delete.
            Err(ApiError::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(json_response(json!({
        "kind": format!("{}List", res.kind),
        "apiVersion": res.api_version(),
        "metadata": {"resourceVersion": rev.to_string()},
        "items": deleted,
    })))
}

#[allow(clippy::too_many_arguments)]
async fn subresource(
    state: &AppState,
    objects: &Objects,
    res: &'static ResourceInfo,
    ns: Option<String>,
    name: String,
    sub: &str,
    method: Method,
    params: &Params,
    headers: &HeaderMap,
    body: Bytes,
    dry_run: bool,
    activator: bool,
) -> Result<Response, ApiError> {
    match (sub, method) {
        ("token", Method::POST) => {
            let request = state
                .tokens
                .request(
                    objects,
                    ns.as_deref().unwrap_or_default(),
                    &name,
                    decode_optional_body(headers, &body)?,
                )
                .await?;
            Ok((StatusCode::CREATED, axum::Json(request)).into_response())
        }
        ("status" | "approval", Method::GET) => {
            Ok(json_response(objects.get(res, ns.as_deref(), &name).await?))
        }
        ("status" | "approval", m @ (Method::PUT | Method::PATCH))
            if res.has_subresource("approval") =>
        {
            let subresource = if sub == "approval" {
                csr::Subresource::Approval
            } else {
                csr::Subresource::Status
            };
            let write = if m == Method::PUT {
                csr::Write::Replace(decode_body(headers, &body)?)
            } else {
                csr::Write::Patch(decode_patch(headers, &body, params)?)
            };
            Ok(json_response(
                csr::update(objects, res, &name, subresource, write, dry_run).await?,
            ))
        }
        ("status", Method::PUT) => {
            let obj = decode_body(headers, &body)?;
            Ok(json_response(
                objects
                    .replace(res, ns.as_deref(), &name, obj, true, dry_run)
                    .await?,
            ))
        }
        ("status", Method::PATCH) => {
            let patch = decode_patch(headers, &body, params)?;
            Ok(json_response(
                objects
                    .patch(res, ns.as_deref(), &name, patch, true, dry_run)
                    .await?,
            ))
        }
        ("scale", Method::GET) => Ok(json_response(scale::scale_of(
            &objects.get(res, ns.as_deref(), &name).await?,
        ))),
        ("scale", Method::PUT) => {
            let wanted = decode_body(headers, &body)?;
            Ok(json_response(
                scale::update(
                    objects,
                    res,
                    ns.as_deref(),
                    &name,
                    dry_run,
                    activator,
                    |_| Ok(wanted.clone()),
                )
                .await?,
            ))
        }
        ("scale", Method::PATCH) => {
            let patch = decode_patch(headers, &body, params)?;
            Ok(json_response(
                scale::update(
                    objects,
                    res,
                    ns.as_deref(),
                    &name,
                    dry_run,
                    activator,
                    |cur| scale::patched(cur, patch.clone()),
                )
                .await?,
            ))
        }
        ("eviction", Method::POST) => {
            // policy/v1 Eviction: a delete with the eviction's deleteOptions that honours the pod's
            // PodDisruptionBudget (`eviction`).
            let eviction = decode_body(headers, &body)?;
            let opts_body = eviction
                .get("deleteOptions")
                .map(|o| o.to_string())
                .unwrap_or_default();
            let mut opts = delete_options(params, opts_body.as_bytes())?;
            opts.dry_run |= dry_run;
            eviction::evict(
                objects,
                res,
                ns.as_deref().unwrap_or("default"),
                &name,
                opts,
            )
            .await?;
            Ok((
                StatusCode::CREATED,
                axum::Json(json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201})),
            )
                .into_response())
        }
        ("log", Method::GET) => {
            logs::proxy(state, ns.as_deref().unwrap_or("default"), &name, params).await
        }
        ("binding", Method::POST) => {
            let binding = decode_body(headers, &body)?;
            let node = binding
                .pointer("/target/name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            if node.is_empty() {
                return Err(ApiError::BadRequest("binding has no target.name".into()));
            }
            crate::scheduler::bind(objects, ns.as_deref().unwrap_or("default"), &name, &node)
                .await?;
            Ok((
                StatusCode::CREATED,
                axum::Json(
                    json!({"kind": "Status", "apiVersion": "v1", "status": "Success", "code": 201}),
                ),
            )
                .into_response())
        }
        (sub, m) => Err(ApiError::MethodNotAllowed(format!(
            "{m} is not supported on {}/{sub}",
            res.plural
        ))),
    }
}

/// kube-apiserver's longest field manager name.
const FIELD_MANAGER_MAX_LENGTH: usize = 128;

/// The field manager a write is recorded for, as kube-apiserver names it: the `fieldManager` option
/// (validated: at most 128 bytes, printable), else the client's user agent up to its first `/` with
/// unprintable characters dropped (`kubectl/v1.37.1 (linux/amd64) kubernetes/…` is `kubectl`).
fn field_manager(
    method: &Method,
    params: &Params,
    headers: &HeaderMap,
) -> Result<String, ApiError> {
    if let Some(manager) = params.get("fieldManager").filter(|m| !m.is_empty()) {
        let mut causes = Vec::new();
        if manager.len() > FIELD_MANAGER_MAX_LENGTH {
            causes.push(herd_api::Cause {
                reason: "FieldValueTooLong",
                field: "fieldManager".into(),
                message: format!("Too long: may not be more than {FIELD_MANAGER_MAX_LENGTH} bytes"),
            });
        }
        for (i, c) in manager.char_indices().filter(|(_, c)| !is_printable(*c)) {
            causes.push(herd_api::Cause::invalid(
                "fieldManager",
                manager.as_str(),
                &format!("invalid character U+{:04X} (at position {i})", u32::from(c)),
            ));
        }
        if causes.is_empty() {
            return Ok(manager.clone());
        }
        let kind = match *method {
            Method::POST => "CreateOptions",
            Method::PATCH => "PatchOptions",
            _ => "UpdateOptions",
        };
        let detail = causes
            .iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect::<Vec<_>>()
            .join(", ");
        return Err(ApiError::Invalid {
            message: format!("{kind}.meta.k8s.io \"\" is invalid: {detail}"),
            group: "meta.k8s.io".into(),
            kind: kind.into(),
            name: String::new(),
            causes,
        });
    }
    let agent = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let mut manager = String::new();
    for c in agent
        .split('/')
        .next()
        .unwrap_or_default()
        .chars()
        .filter(|c| is_printable(*c))
    {
        if manager.len() + c.len_utf8() > FIELD_MANAGER_MAX_LENGTH {
            break;
        }
        manager.push(c);
    }
    Ok(manager)
}

/// Go's `unicode.IsPrint` for the characters user agents and manager names are made of: no control
/// characters, and of the spaces only ASCII's.
fn is_printable(c: char) -> bool {
    !c.is_control() && (c == ' ' || !c.is_whitespace())
}

fn json_response(v: Value) -> Response {
    axum::Json(v).into_response()
}

fn content_type(headers: &HeaderMap) -> &str {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
}

/// [`decode_body`] for a body kube lets be empty (a review, a TokenRequest): empty is `{}`.
fn decode_optional_body(headers: &HeaderMap, body: &[u8]) -> Result<Value, ApiError> {
    if body.is_empty() {
        Ok(serde_json::json!({}))
    } else {
        decode_body(headers, body)
    }
}

/// Decodes a JSON, YAML or protobuf request body.
fn decode_body(headers: &HeaderMap, body: &[u8]) -> Result<Value, ApiError> {
    let ct = content_type(headers);
    if body.is_empty() {
        return Err(ApiError::BadRequest("the request body is empty".into()));
    }
    if ct.starts_with("application/vnd.kubernetes.protobuf") {
        // kubectl's generator commands (`kubectl create deployment|configmap|secret|…`) send protobuf.
        herd_api::protobuf::decode(body).map_err(|e| match e {
            herd_api::protobuf::ProtobufError::UnsupportedKind(_) => {
                ApiError::UnsupportedMediaType(e.to_string())
            }
            other => ApiError::BadRequest(format!("error decoding protobuf: {other}")),
        })
    } else if ct.contains("yaml") {
        serde_yaml::from_slice(body)
            .map_err(|e| ApiError::BadRequest(format!("error decoding YAML: {e}")))
    } else if ct.contains("json") || ct.is_empty() {
        serde_json::from_slice(body)
            .map_err(|e| ApiError::BadRequest(format!("error decoding JSON: {e}")))
    } else {
        Err(ApiError::UnsupportedMediaType(format!(
            "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf (got {ct})"
        )))
    }
}

fn decode_patch(headers: &HeaderMap, body: &[u8], params: &Params) -> Result<Patch, ApiError> {
    let ct = content_type(headers)
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_string();
    let force = params.get("force").is_some_and(|f| f == "true");
    if ct == "application/apply-patch+yaml" || ct == "application/apply-patch+json" {
        let config: Value = serde_yaml::from_slice(body)
            .map_err(|e| ApiError::BadRequest(format!("error decoding YAML: {e}")))?;
        let manager = params.get("fieldManager").filter(|m| !m.is_empty()).cloned().ok_or_else(|| ApiError::Invalid {
            message: "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch".into(),
            group: "meta.k8s.io".into(),
            kind: "PatchOptions".into(),
            name: String::new(),
            causes: vec![herd_api::Cause::required("fieldManager")],
        })?;
        return Ok(Patch::Apply {
            config,
            manager,
            force,
        });
    }
    if force {
        return Err(ApiError::Invalid {
            message: "PatchOptions.meta.k8s.io \"\" is invalid: force: Forbidden: may not be specified for non-apply patch".into(),
            group: "meta.k8s.io".into(),
            kind: "PatchOptions".into(),
            name: String::new(),
            causes: vec![],
        });
    }
    let doc: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("error decoding patch: {e}")))?;
    match ct.as_str() {
        "application/merge-patch+json" => Ok(Patch::Merge(doc)),
        "application/json-patch+json" => Ok(Patch::Json(doc)),
        "application/strategic-merge-patch+json" => Ok(Patch::Strategic(doc)),
        other => Err(ApiError::UnsupportedMediaType(format!(
            "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json (got {other})"
        ))),
    }
}

fn delete_options(params: &Params, body: &[u8]) -> Result<DeleteOptions, ApiError> {
    let mut opts = DeleteOptions::default();
    let mut policy = params.get("propagationPolicy").cloned();
    if params.get("dryRun").is_some_and(|v| v == "All") {
        opts.dry_run = true;
    }
    if !body.is_empty() {
        let v: Value = serde_json::from_slice(body)
            .map_err(|e| ApiError::BadRequest(format!("error decoding DeleteOptions: {e}")))?;
        if let Some(p) = v.get("propagationPolicy").and_then(Value::as_str) {
            policy = Some(p.to_string());
        }
        if v.get("orphanDependents") == Some(&Value::Bool(true)) {
            policy.get_or_insert_with(|| "Orphan".into());
        }
        if v.get("dryRun")
            .and_then(Value::as_array)
            .is_some_and(|d| d.iter().any(|x| x == "All"))
        {
            opts.dry_run = true;
        }
        opts.grace_period_seconds = v.get("gracePeriodSeconds").and_then(Value::as_i64);
        opts.precondition_uid = v
            .pointer("/preconditions/uid")
            .and_then(Value::as_str)
            .map(str::to_string);
        opts.precondition_rv = v
            .pointer("/preconditions/resourceVersion")
            .and_then(Value::as_str)
            .map(str::to_string);
    }
    opts.propagation = match policy.as_deref() {
        None | Some("Background") => Propagation::Background,
        Some("Foreground") => Propagation::Foreground,
        Some("Orphan") => Propagation::Orphan,
        Some(other) => {
            return Err(ApiError::Invalid {
                message: format!(
                    "DeleteOptions.meta.k8s.io \"\" is invalid: propagationPolicy: Unsupported value: \"{other}\": supported values: \"Foreground\", \"Background\", \"Orphan\", \"nil\""
                ),
                group: "meta.k8s.io".into(),
                kind: "DeleteOptions".into(),
                name: String::new(),
                causes: vec![herd_api::Cause::not_supported(
                    "propagationPolicy",
                    other,
                    &["Foreground", "Background", "Orphan", "nil"],
                )],
            });
        }
    };
    if let Some(g) = params.get("gracePeriodSeconds") {
        opts.grace_period_seconds = Some(
            g.parse()
                .map_err(|_| ApiError::BadRequest(format!("invalid gracePeriodSeconds {g:?}")))?,
        );
    }
    Ok(opts)
}

/// `fieldValidation`: `Strict` rejects unknown fields (400, as kube-apiserver's strict decoding does), `Warn`
/// (the default) returns them as warnings, `Ignore` drops them silently.
fn field_validation(
    res: &ResourceInfo,
    obj: &Value,
    params: &Params,
) -> Result<Vec<String>, ApiError> {
    let mode = params.get("fieldValidation").map_or("Warn", String::as_str);
    if mode == "Ignore" {
        return Ok(Vec::new());
    }
    if !matches!(mode, "Strict" | "Warn") {
        return Err(ApiError::BadRequest(format!(
            "fieldValidation parameter unsupported: {mode}. Supported values are: Ignore, Warn, Strict"
        )));
    }
    let unknown: Vec<String> = herd_api::unknown_fields(res, obj)
        .into_iter()
        .map(|f| format!("unknown field \"{f}\""))
        .collect();
    if mode == "Strict" && !unknown.is_empty() {
        return Err(ApiError::BadRequest(format!(
            "{} in version \"{}\" cannot be handled as a {}: strict decoding error: {}",
            res.kind,
            res.version,
            res.kind,
            unknown.join(", ")
        )));
    }
    Ok(unknown)
}

fn with_warnings(mut resp: Response, warnings: &[String]) -> Response {
    for w in warnings {
        let text = format!("299 - \"{}\"", w.replace('"', "\\\""));
        if let Ok(v) = axum::http::HeaderValue::from_str(&text) {
            resp.headers_mut().append("warning", v);
        }
    }
    resp
}

/// Serves the API until `shutdown` is cancelled.
pub async fn serve(listener: tls::TlsListener, state: AppState) -> std::io::Result<()> {
    let shutdown = state.shutdown.clone();
    axum::serve(
        listener,
        router(state).into_make_service_with_connect_info::<tls::Peer>(),
    )
    .with_graceful_shutdown(async move { shutdown.cancelled().await })
    .await
}

pub(crate) fn body_stream<S>(stream: S) -> Body
where
    S: futures::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static,
{
    Body::from_stream(stream)
}

#[cfg(test)]
mod tests {
    use axum::http::Request;
    use tower::ServiceExt;

    use super::*;

    /// A request that outlives its time gets kube-apiserver's 504 Timeout Status: here a log read from a
    /// kubelet that accepts the connection and never answers.
    #[tokio::test]
    async fn a_request_past_its_timeout_is_answered_504() {
        let (_dir, objects) = crate::objects::test_objects().await;
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = silent.local_addr().expect("addr").port();
        let held = tokio::spawn(async move {
            let mut open = Vec::new();
            while let Ok((conn, _)) = silent.accept().await {
                open.push(conn);
            }
        });
        let core = crate::objects::core;
        let namespace =
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}});
        objects
            .create(core("namespaces"), None, namespace, false)
            .await
            .expect("namespace");
        let node = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n"}});
        objects
            .create(core("nodes"), None, node, false)
            .await
            .expect("node");
        objects
            .edit(core("nodes"), "", "n", |n| {
                n["status"] = json!({
                    "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
                    "daemonEndpoints": {"kubeletEndpoint": {"Port": port}},
                });
                true
            })
            .await
            .expect("node status");
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
            "spec": {"nodeName": "n", "containers": [{"name": "c", "image": "example/app:v1"}]}});
        objects
            .create(core("pods"), Some("default"), pod, false)
            .await
            .expect("pod");
        let app = admin_router(AppState::for_tests(objects));
        let call = |uri: &str| {
            let request = Request::builder()
                .uri(uri)
                .body(Body::empty())
                .expect("request");
            app.clone().oneshot(request)
        };
        let response = call("/api/v1/namespaces/default/pods/p/log?timeout=1s")
            .await
            .expect("answer");
        assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("body");
        let status: Value = serde_json::from_slice(&body).expect("a Status");
        assert_eq!(status["reason"], "Timeout", "{status}");
        assert_eq!(status["code"], 504);
        // Other requests are answered as before; a timeout that is no duration is refused.
        for timeout in ["30s", "0s"] {
            let response = call(&format!("/api/v1/pods?timeout={timeout}"))
                .await
                .expect("answer");
            assert_eq!(response.status(), StatusCode::OK, "timeout={timeout}");
        }
        let response = call("/api/v1/pods?timeout=soon").await.expect("answer");
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        held.abort();
    }
}
