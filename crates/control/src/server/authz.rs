//! Authorization, as kube-apiserver's `--authorization-mode=Node,RBAC`: every authenticated request is
//! resolved to kube's request attributes (verb, API group, resource, subresource, namespace, name, or a
//! non-resource path) and allowed by `system:masters`, by the Node authorizer for a node's requests
//! (`herd_authz::node`, over the pods bound to it) or by RBAC (`herd_authz::authorize_with`, over the Roles,
//! ClusterRoles and bindings in the informer caches); anything else is kube's 403 Forbidden Status
//! (`pods is forbidden: User "jane" cannot list resource "pods" in API group "" in the namespace "default"`).
//! A node's writes then pass NodeRestriction admission (`herd_authz::admit_node_write`).
//!
//! The RBAC objects are read from the controllers' informer caches (one copy of them in the process), as
//! kube's RBAC authorizer reads its informers: a binding takes effect as soon as the caches have it,
//! milliseconds after it is written. The policy is rebuilt into lookup tables only when one of the four
//! RBAC resources changed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use herd_api::ResourceInfo;
use herd_api::resources;
use herd_authz::{Attributes, Decision, NodeGraph, NodeWrite, PolicySource, UserInfo};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use serde_json::Value;

use super::AppState;
use super::route::{self, Target};
use crate::controllers::informer::Informers;
use crate::error::ApiError;

const MASTERS: &str = "system:masters";

/// How long a node's read of an object its pod uses may wait for the caches to see that pod (the pod was
/// bound a moment ago and the caches are catching up).
const GRAPH_CATCH_UP: Duration = Duration::from_secs(2);

/// The authorizers and the caches they read.
pub struct Authorizer {
    informers: Arc<Informers>,
    /// The RBAC lookup tables, and the revision of the last RBAC change they reflect.
    rbac: Mutex<Option<(i64, Arc<RbacPolicy>)>>,
}

impl std::fmt::Debug for Authorizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authorizer").finish_non_exhaustive()
    }
}

/// The RBAC objects of one moment, by the keys the authorizer looks them up by.
#[derive(Default)]
pub struct RbacPolicy {
    roles: HashMap<(String, String), Arc<Role>>,
    cluster_roles: HashMap<String, Arc<ClusterRole>>,
    role_bindings: HashMap<String, Vec<Arc<RoleBinding>>>,
    cluster_role_bindings: Vec<Arc<ClusterRoleBinding>>,
}

impl PolicySource for RbacPolicy {
    fn role(&self, namespace: &str, name: &str) -> Option<&Role> {
        self.roles
            .get(&(namespace.to_string(), name.to_string()))
            .map(|r| &**r)
    }
    fn cluster_role(&self, name: &str) -> Option<&ClusterRole> {
        self.cluster_roles.get(name).map(|r| &**r)
    }
    fn role_bindings(&self, namespace: &str) -> impl Iterator<Item = &RoleBinding> {
        self.role_bindings
            .get(namespace)
            .into_iter()
            .flatten()
            .map(|b| &**b)
    }
    fn cluster_role_bindings(&self) -> impl Iterator<Item = &ClusterRoleBinding> {
        self.cluster_role_bindings.iter().map(|b| &**b)
    }
}

fn rbac_resource(plural: &str) -> Option<&'static ResourceInfo> {
    resources::by_path("rbac.authorization.k8s.io", "v1", plural)
}

/// Whether a write of `res` by `user` passes kube's RBAC escalation checks: the four RBAC kinds, unless the
/// user is in `system:masters`.
pub fn escalation_checked(user: &UserInfo, res: &ResourceInfo) -> bool {
    res.group == RBAC_GROUP && !user.in_group(MASTERS)
}

const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

/// kube's RBAC escalation checks of one request's writes (`herd_authz::check_rbac_write`), over the RBAC
/// policy as it was when the request came.
pub struct EscalationGuard {
    policy: Arc<RbacPolicy>,
    user: UserInfo,
}

impl crate::objects::WriteGuard for EscalationGuard {
    fn check(&self, res: &ResourceInfo, new: &Value, old: Option<&Value>) -> Result<(), ApiError> {
        use herd_authz::RbacObject;
        fn typed<T: serde::de::DeserializeOwned>(v: &Value) -> Result<T, ApiError> {
            serde_json::from_value(v.clone()).map_err(|e| ApiError::BadRequest(e.to_string()))
        }
        if res.group != RBAC_GROUP {
            return Ok(());
        }
        let policy = &*self.policy;
        let user = &self.user;
        let verdict = match res.plural {
            "roles" => {
                let (new, old) = (typed::<Role>(new)?, old.map(typed::<Role>).transpose()?);
                herd_authz::check_rbac_write(
                    policy,
                    user,
                    RbacObject::Role(&new),
                    old.as_ref().map(RbacObject::Role),
                )
            }
            "clusterroles" => {
                let (new, old) = (
                    typed::<ClusterRole>(new)?,
                    old.map(typed::<ClusterRole>).transpose()?,
                );
                herd_authz::check_rbac_write(
                    policy,
                    user,
                    RbacObject::ClusterRole(&new),
                    old.as_ref().map(RbacObject::ClusterRole),
                )
            }
            "rolebindings" => {
                let (new, old) = (
                    typed::<RoleBinding>(new)?,
                    old.map(typed::<RoleBinding>).transpose()?,
                );
                herd_authz::check_rbac_write(
                    policy,
                    user,
                    RbacObject::RoleBinding(&new),
                    old.as_ref().map(RbacObject::RoleBinding),
                )
            }
            "clusterrolebindings" => {
                let (new, old) = (
                    typed::<ClusterRoleBinding>(new)?,
                    old.map(typed::<ClusterRoleBinding>).transpose()?,
                );
                herd_authz::check_rbac_write(
                    policy,
                    user,
                    RbacObject::ClusterRoleBinding(&new),
                    old.as_ref().map(RbacObject::ClusterRoleBinding),
                )
            }
            _ => Ok(()),
        };
        verdict.map_err(|e| {
            let name = new
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or_default();
            ApiError::Forbidden {
                message: format!("{}.{RBAC_GROUP} {name:?} is forbidden: {e}", res.plural),
                group: RBAC_GROUP.into(),
                kind: res.plural.into(),
                name: name.into(),
            }
        })
    }
}

impl Authorizer {
    /// The escalation checks of a request by `user`, over the current RBAC policy.
    ///
    /// # Errors
    /// When the policy cannot be read from the caches.
    pub async fn escalation_guard(&self, user: UserInfo) -> Result<EscalationGuard, ApiError> {
        self.informers.ensure_loaded().await?;
        // The Role a binding names, or a binding that grants what a Role holds, may have been written a moment
        // ago (on etcd the caches follow a watch that lags the write): check over caches that reflect every
        // write this server has committed, as refusals do.
        let target = self.informers.objects().revision();
        if self.informers.revision() < target {
            self.informers.caught_up(target, GRAPH_CATCH_UP).await;
        }
        Ok(EscalationGuard {
            policy: self.policy().await?,
            user,
        })
    }

    pub fn new(informers: Arc<Informers>) -> Self {
        Self {
            informers,
            rbac: Mutex::new(None),
        }
    }

    /// The RBAC policy as the caches hold it now.
    ///
    /// # Errors
    /// When the caches cannot be loaded.
    pub async fn policy(&self) -> Result<Arc<RbacPolicy>, ApiError> {
        self.informers.ensure_loaded().await?;
        let stamp = [
            "roles",
            "clusterroles",
            "rolebindings",
            "clusterrolebindings",
        ]
        .into_iter()
        .filter_map(rbac_resource)
        .map(|r| self.informers.last_change(r))
        .max()
        .unwrap_or(0);
        let mut cached = self.rbac.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((at, policy)) = &*cached
            && *at == stamp
        {
            return Ok(policy.clone());
        }
        let mut policy = RbacPolicy::default();
        for role in self.informers.store::<Role>().state() {
            let key = (
                role.metadata.namespace.clone().unwrap_or_default(),
                role.metadata.name.clone().unwrap_or_default(),
            );
            policy.roles.insert(key, role);
        }
        for role in self.informers.store::<ClusterRole>().state() {
            let name = role.metadata.name.clone().unwrap_or_default();
            policy.cluster_roles.insert(name, role);
        }
        for binding in self.informers.store::<RoleBinding>().state() {
            let ns = binding.metadata.namespace.clone().unwrap_or_default();
            policy.role_bindings.entry(ns).or_default().push(binding);
        }
        policy.cluster_role_bindings = self.informers.store::<ClusterRoleBinding>().state();
        let policy = Arc::new(policy);
        *cached = Some((stamp, policy.clone()));
        Ok(policy)
    }

    /// The decision for `attrs` (`selected_node`: the `spec.nodeName=` of a list's field selector): the
    /// Node authorizer, then RBAC; `system:masters` is always allowed.
    ///
    /// # Errors
    /// When the caches cannot be loaded.
    pub async fn decide(
        &self,
        attrs: &Attributes,
        selected_node: Option<&str>,
    ) -> Result<Decision, ApiError> {
        if attrs.user.in_group(MASTERS) {
            return Ok(Decision::Allow {
                reason: String::new(),
            });
        }
        self.informers.ensure_loaded().await?;
        let mut node_reason = String::new();
        if attrs.user.node_name().is_some() {
            let graph = self.caught_up_graph(attrs, selected_node).await;
            match herd_authz::authorize_node(&graph, attrs, selected_node) {
                allowed @ Decision::Allow { .. } => return Ok(allowed),
                Decision::NoOpinion { reason } => node_reason = reason,
            }
        }
        let mut rbac = herd_authz::authorize_with(&*self.policy().await?, attrs);
        let target = self.informers.objects().revision();
        if matches!(rbac, Decision::NoOpinion { .. }) && self.informers.revision() < target {
            // A Role or binding may have been written a moment ago (on etcd the caches follow a watch that
            // lags the write): refuse only on caches that reflect every write this server has committed.
            self.informers.caught_up(target, GRAPH_CATCH_UP).await;
            rbac = herd_authz::authorize_with(&*self.policy().await?, attrs);
        }
        Ok(match rbac {
            allowed @ Decision::Allow { .. } => allowed,
            Decision::NoOpinion { reason } => Decision::NoOpinion {
                reason: [node_reason, reason]
                    .into_iter()
                    .filter(|r| !r.is_empty())
                    .collect::<Vec<_>>()
                    .join("\n"),
            },
        })
    }

    /// The node graph over the caches; when the Node authorizer would find no relationship, first waits (a
    /// little) for the caches to reach the store's present revision: the pod may have been bound a moment
    /// ago.
    async fn caught_up_graph(
        &self,
        attrs: &Attributes,
        selected_node: Option<&str>,
    ) -> CachedGraph<'_> {
        let graph = CachedGraph(&self.informers);
        if herd_authz::authorize_node(&graph, attrs, selected_node).allowed() {
            return graph;
        }
        let target = self.informers.objects().revision();
        self.informers.caught_up(target, GRAPH_CATCH_UP).await;
        graph
    }

    /// NodeRestriction for a write by node `node`.
    fn admit_node_write(&self, node: &str, write: &NodeWrite<'_>) -> Result<(), String> {
        herd_authz::admit_node_write(&CachedGraph(&self.informers), node, write)
    }
}

/// The Node authorizer's graph, answered from the informer caches' pods-by-node index.
struct CachedGraph<'a>(&'a Informers);

impl NodeGraph for CachedGraph<'_> {
    fn pod_on_node(&self, node: &str, namespace: &str, name: &str) -> bool {
        let Some(pods) = resources::by_path("", "v1", "pods") else {
            return false;
        };
        self.0
            .get(pods, namespace, name)
            .is_some_and(|pod| pod.pointer("/spec/nodeName").and_then(Value::as_str) == Some(node))
    }

    fn node_uses(&self, node: &str, resource: &str, namespace: &str, name: &str) -> bool {
        if resource == "persistentvolumes" {
            let Some(pv) = resources::by_path("", "v1", "persistentvolumes")
                .and_then(|res| self.0.get(res, "", name))
            else {
                return false;
            };
            let local = pv
                .pointer("/metadata/labels")
                .and_then(|l| l.get(herd_api::volumes::LOCAL_NODE_LABEL))
                .and_then(Value::as_str)
                == Some(node);
            let claim = |field: &str| {
                pv.pointer(&format!("/spec/claimRef/{field}"))
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string()
            };
            let (claim_ns, claim_name) = (claim("namespace"), claim("name"));
            return local
                || (!claim_name.is_empty()
                    && self.0.any_on_node(node, &claim_ns, |pod| {
                        pod_uses(pod, "persistentvolumeclaims", &claim_name)
                    }));
        }
        self.0
            .any_on_node(node, namespace, |pod| pod_uses(pod, resource, name))
    }
}

/// Whether `pod` references object `name` of `resource` (kube's node graph edges): volumes (projected
/// sources too), `env`/`envFrom` of every container, `imagePullSecrets`, its ServiceAccount.
fn pod_uses(pod: &Value, resource: &str, name: &str) -> bool {
    let spec = &pod["spec"];
    let is = |v: &Value| v.as_str() == Some(name);
    let containers = ["containers", "initContainers", "ephemeralContainers"]
        .into_iter()
        .flat_map(|list| spec[list].as_array().into_iter().flatten());
    let volumes = || spec["volumes"].as_array().into_iter().flatten();
    let projected =
        || volumes().flat_map(|v| v["projected"]["sources"].as_array().into_iter().flatten());
    match resource {
        "secrets" => {
            volumes().any(|v| is(&v["secret"]["secretName"]))
                || projected().any(|s| is(&s["secret"]["name"]))
                || spec["imagePullSecrets"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|s| is(&s["name"]))
                || containers.into_iter().any(|c| {
                    c["env"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|e| is(&e["valueFrom"]["secretKeyRef"]["name"]))
                        || c["envFrom"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .any(|e| is(&e["secretRef"]["name"]))
                })
        }
        "configmaps" => {
            volumes().any(|v| is(&v["configMap"]["name"]))
                || projected().any(|s| is(&s["configMap"]["name"]))
                || containers.into_iter().any(|c| {
                    c["env"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|e| is(&e["valueFrom"]["configMapKeyRef"]["name"]))
                        || c["envFrom"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .any(|e| is(&e["configMapRef"]["name"]))
                })
        }
        "persistentvolumeclaims" => volumes().any(|v| is(&v["persistentVolumeClaim"]["claimName"])),
        "serviceaccounts" => spec["serviceAccountName"].as_str().unwrap_or("default") == name,
        _ => false,
    }
}

/// kube's request verb for a resource request (`RequestInfoFactory`): reads of a collection are `list`
/// or `watch`, of an object `get`; writes by method.
fn verb(method: &Method, collection: bool, watch: bool) -> &'static str {
    match *method {
        Method::GET | Method::HEAD if watch => "watch",
        Method::GET | Method::HEAD if collection => "list",
        Method::GET | Method::HEAD => "get",
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE if collection => "deletecollection",
        Method::DELETE => "delete",
        _ => "",
    }
}

/// The value a field selector requires of `field` (`metadata.name=web` or `metadata.name==web`), if it
/// requires exactly one.
fn selected(params: &HashMap<String, String>, field: &str) -> Option<String> {
    selected_in(params, "fieldSelector", field)
}

/// The value selector parameter `param` (`fieldSelector`, `labelSelector`) requires of `key`, if it
/// requires exactly one.
fn selected_in(params: &HashMap<String, String>, param: &str, field: &str) -> Option<String> {
    let selector = params.get(param)?;
    selector.split(',').find_map(|requirement| {
        let (key, value) = requirement
            .split_once("==")
            .or_else(|| requirement.split_once('='))?;
        (key.trim() == field && !key.ends_with('!')).then(|| value.trim().to_string())
    })
}

/// kube's authorization attributes of a request, and the node a pod list selects.
fn attributes(
    user: UserInfo,
    method: &Method,
    path: &str,
    params: &HashMap<String, String>,
) -> (Attributes, Option<String>) {
    let non_resource =
        |user| Attributes::non_resource(user, &method.as_str().to_ascii_lowercase(), path);
    if let Some(review) = super::reviews::at_path(path) {
        let verb = verb(method, true, false);
        return (
            Attributes::resource(user, verb, review.group, review.plural, "", ""),
            None,
        );
    }
    let Ok(target) = route::parse(path) else {
        return (non_resource(user), None);
    };
    let watch = params
        .get("watch")
        .is_some_and(|w| w.eq_ignore_ascii_case("true") || w == "1");
    let (res, ns, name, sub, collection) = match &target {
        Target::GroupVersion { .. } => return (non_resource(user), None),
        Target::Collection { res, ns } => (*res, ns.clone(), String::new(), "", true),
        Target::Object { res, ns, name } => (*res, ns.clone(), name.clone(), "", false),
        Target::Subresource { res, ns, name, sub } => {
            (*res, ns.clone(), name.clone(), sub.as_str(), false)
        }
    };
    let verb = verb(method, collection, watch);
    // A list or watch of one name (`fieldSelector=metadata.name=x`) is about that object, as kube
    // resolves it; a Namespace is in itself.
    let mut name = name;
    if collection
        && matches!(verb, "list" | "watch")
        && let Some(one) = selected(params, "metadata.name")
    {
        name = one;
    }
    let mut namespace = ns.unwrap_or_default();
    if res.group.is_empty() && res.plural == "namespaces" && !name.is_empty() {
        namespace = name.clone();
    }
    let attrs = Attributes::resource(user, verb, res.group, res.plural, &namespace, &name)
        .with_subresource(sub);
    let node = match (res.group, res.plural) {
        ("", "pods") => selected(params, "spec.nodeName"),
        // A node's watch of its local volumes.
        ("", "persistentvolumes") => {
            selected_in(params, "labelSelector", herd_api::volumes::LOCAL_NODE_LABEL)
        }
        _ => None,
    };
    (attrs, node)
}

/// The middleware: answers 403 unless the request's user may do what it asks.
pub async fn authorize(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let Some(user) = request.extensions().get::<UserInfo>().cloned() else {
        return ApiError::Unauthorized.into_response();
    };
    if user.in_group(MASTERS) {
        return next.run(request).await;
    }
    let params: HashMap<String, String> =
        axum::extract::Query::try_from_uri(request.uri()).map_or_else(|_| HashMap::new(), |q| q.0);
    let (attrs, selected_node) = attributes(user, request.method(), request.uri().path(), &params);
    let decision = match state
        .authorizer
        .decide(&attrs, selected_node.as_deref())
        .await
    {
        Ok(decision) => decision,
        Err(e) => return e.into_response(),
    };
    if !decision.allowed() {
        return forbidden(&attrs, decision.reason());
    }
    let request = match node_restriction(&state, &attrs, request).await {
        Ok(request) => request,
        Err(refusal) => return refusal,
    };
    next.run(request).await
}

/// kube's 403 for a request no authorizer allowed.
fn forbidden(attrs: &Attributes, reason: &str) -> Response {
    let (group, kind, name) = match &attrs.target {
        herd_authz::Target::Resource(r) => {
            (r.api_group.clone(), r.resource.clone(), r.name.clone())
        }
        herd_authz::Target::NonResource { .. } => Default::default(),
    };
    ApiError::Forbidden {
        message: attrs.forbidden_status_message(reason),
        group,
        kind,
        name,
    }
    .into_response()
}

/// NodeRestriction for a node's write; the request back (its body read and put back for a create, whose
/// object's name and node are in it).
async fn node_restriction(
    state: &AppState,
    attrs: &Attributes,
    request: Request,
) -> Result<Request, Response> {
    let (Some(node), herd_authz::Target::Resource(r)) = (attrs.user.node_name(), &attrs.target)
    else {
        return Ok(request);
    };
    if !r.api_group.is_empty() && r.api_group != "coordination.k8s.io" {
        return Ok(request);
    }
    let mut request = request;
    let mut name = r.name.clone();
    let mut mirror = None;
    if attrs.verb == "create"
        && r.subresource.is_empty()
        && matches!(r.resource.as_str(), "nodes" | "pods" | "leases")
    {
        let (parts, body) = request.into_parts();
        let bytes = axum::body::to_bytes(body, 16 << 20).await.map_err(|e| {
            ApiError::BadRequest(format!("reading the request body: {e}")).into_response()
        })?;
        let object: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        name = object
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        if r.resource == "pods" {
            let annotated = object
                .pointer("/metadata/annotations")
                .and_then(|a| a.get(herd_authz::node::MIRROR_POD_ANNOTATION))
                .is_some();
            let bound = object
                .pointer("/spec/nodeName")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            mirror = Some((annotated, bound));
        }
        request = Request::from_parts(parts, Body::from(bytes));
    }
    let write = NodeWrite {
        resource: &r.resource,
        subresource: &r.subresource,
        verb: &attrs.verb,
        namespace: &r.namespace,
        name: &name,
        mirror_pod: mirror.as_ref().map(|(m, n)| (*m, n.as_str())),
    };
    match state.authorizer.admit_node_write(node, &write) {
        Ok(()) => Ok(request),
        Err(reason) => {
            let qualified = if r.api_group.is_empty() {
                r.resource.clone()
            } else {
                format!("{}.{}", r.resource, r.api_group)
            };
            let message = if name.is_empty() {
                format!("{qualified} is forbidden: {reason}")
            } else {
                format!("{qualified} {name:?} is forbidden: {reason}")
            };
            Err(ApiError::Forbidden {
                message,
                group: r.api_group.clone(),
                kind: r.resource.clone(),
                name,
            }
            .into_response())
        }
    }
}
