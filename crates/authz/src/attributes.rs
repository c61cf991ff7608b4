//! Who asks for what: kube's `user.Info` and `authorizer.Attributes`, and the Forbidden wording of
//! kube-apiserver's `responsewriters.forbiddenMessage`.

/// kube's superuser group: members are allowed everything, before RBAC is asked.
pub const SYSTEM_MASTERS: &str = "system:masters";
/// Every authenticated request carries this group.
pub const ALL_AUTHENTICATED: &str = "system:authenticated";
/// Anonymous requests carry this group (and the user `system:anonymous`).
pub const ALL_UNAUTHENTICATED: &str = "system:unauthenticated";
/// The anonymous user's name.
pub const ANONYMOUS: &str = "system:anonymous";
/// Every ServiceAccount token's group.
pub const ALL_SERVICE_ACCOUNTS: &str = "system:serviceaccounts";
/// The group of kubelets' client certificates.
pub const NODES_GROUP: &str = "system:nodes";
/// The group of bootstrap tokens (kube's `system:bootstrappers`).
pub const BOOTSTRAPPERS_GROUP: &str = "system:bootstrappers";

const SA_PREFIX: &str = "system:serviceaccount:";
const NODE_PREFIX: &str = "system:node:";

/// An authenticated identity, as kube's `user.Info`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UserInfo {
    pub name: String,
    pub uid: String,
    pub groups: Vec<String>,
}

impl UserInfo {
    /// A user with these groups (the authenticator adds `system:authenticated` itself; pass it here).
    pub fn new(name: impl Into<String>, groups: &[&str]) -> Self {
        UserInfo {
            name: name.into(),
            uid: String::new(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
        }
    }

    /// The identity a ServiceAccount token authenticates as (kube's `serviceaccount.UserInfo`):
    /// `system:serviceaccount:NS:NAME` in `system:serviceaccounts`, `system:serviceaccounts:NS` and
    /// `system:authenticated`.
    pub fn service_account(namespace: &str, name: &str, uid: impl Into<String>) -> Self {
        UserInfo {
            name: service_account_username(namespace, name),
            uid: uid.into(),
            groups: vec![
                ALL_SERVICE_ACCOUNTS.to_string(),
                format!("{ALL_SERVICE_ACCOUNTS}:{namespace}"),
                ALL_AUTHENTICATED.to_string(),
            ],
        }
    }

    /// The identity of a kubelet's client certificate: `system:node:NAME` in `system:nodes` (and
    /// `system:authenticated`).
    pub fn node(name: &str) -> Self {
        UserInfo::new(
            format!("{NODE_PREFIX}{name}"),
            &[NODES_GROUP, ALL_AUTHENTICATED],
        )
    }

    /// The anonymous user (`system:anonymous` in `system:unauthenticated`).
    pub fn anonymous() -> Self {
        UserInfo::new(ANONYMOUS, &[ALL_UNAUTHENTICATED])
    }

    pub fn in_group(&self, group: &str) -> bool {
        self.groups.iter().any(|g| g == group)
    }

    /// `(namespace, name)` when this is a ServiceAccount's username.
    pub fn service_account_name(&self) -> Option<(&str, &str)> {
        let rest = self.name.strip_prefix(SA_PREFIX)?;
        let (ns, name) = rest.split_once(':')?;
        (!ns.is_empty() && !name.is_empty() && !name.contains(':')).then_some((ns, name))
    }

    /// The node's name when this is a node's identity (`system:node:NAME` in `system:nodes`), as kube's
    /// `nodeidentifier`.
    pub fn node_name(&self) -> Option<&str> {
        let name = self.name.strip_prefix(NODE_PREFIX)?;
        (self.in_group(NODES_GROUP) && !name.is_empty()).then_some(name)
    }
}

/// `system:serviceaccount:NS:NAME`.
pub fn service_account_username(namespace: &str, name: &str) -> String {
    format!("{SA_PREFIX}{namespace}:{name}")
}

/// What a request asks to do, as kube's `authorizer.Attributes`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attributes {
    pub user: UserInfo,
    /// kube's request verbs: `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`,
    /// `deletecollection`, or for non-resource paths the lowercase HTTP method (`get`, `post`, …);
    /// special verbs such as `bind`, `escalate`, `impersonate`, `approve`.
    pub verb: String,
    pub target: Target,
}

/// A resource request (`/api/v1/namespaces/NS/pods/NAME/status`) or a non-resource path (`/healthz`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Resource(ResourceRequest),
    NonResource { path: String },
}

/// The resource a request is about; empty strings where a part is absent (the core group is `""`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResourceRequest {
    pub api_group: String,
    pub resource: String,
    pub subresource: String,
    pub namespace: String,
    pub name: String,
}

impl Attributes {
    /// A resource request. `namespace` and `name` are `""` when absent (cluster scope, a list).
    pub fn resource(
        user: UserInfo,
        verb: &str,
        api_group: &str,
        resource: &str,
        namespace: &str,
        name: &str,
    ) -> Self {
        Attributes {
            user,
            verb: verb.to_string(),
            target: Target::Resource(ResourceRequest {
                api_group: api_group.to_string(),
                resource: resource.to_string(),
                subresource: String::new(),
                namespace: namespace.to_string(),
                name: name.to_string(),
            }),
        }
    }

    /// The same request on a subresource (`pods/status`, `serviceaccounts/token`).
    pub fn with_subresource(mut self, subresource: &str) -> Self {
        if let Target::Resource(r) = &mut self.target {
            r.subresource = subresource.to_string();
        }
        self
    }

    /// A non-resource request on `path` (the verb is the lowercase HTTP method).
    pub fn non_resource(user: UserInfo, verb: &str, path: &str) -> Self {
        Attributes {
            user,
            verb: verb.to_string(),
            target: Target::NonResource {
                path: path.to_string(),
            },
        }
    }

    /// The namespace of a resource request (`""` for cluster scope and non-resource requests).
    pub fn namespace(&self) -> &str {
        match &self.target {
            Target::Resource(r) => &r.namespace,
            Target::NonResource { .. } => "",
        }
    }

    /// Why this request is refused, worded as kube-apiserver's `forbiddenMessage`:
    /// `User "alice" cannot list resource "pods" in API group "" in the namespace "default"`.
    pub fn forbidden_message(&self) -> String {
        let user = &self.user.name;
        let verb = &self.verb;
        match &self.target {
            Target::NonResource { path } => format!("User {user:?} cannot {verb} path {path:?}"),
            Target::Resource(r) => {
                let mut resource = r.resource.clone();
                if !r.subresource.is_empty() {
                    resource = format!("{resource}/{}", r.subresource);
                }
                let group = &r.api_group;
                if r.namespace.is_empty() {
                    format!(
                        "User {user:?} cannot {verb} resource {resource:?} in API group {group:?} at the cluster scope"
                    )
                } else {
                    format!(
                        "User {user:?} cannot {verb} resource {resource:?} in API group {group:?} in the namespace {:?}",
                        r.namespace
                    )
                }
            }
        }
    }

    /// The `message` of the 403 Status kube-apiserver answers (`responsewriters.Forbidden` through
    /// `errors.NewForbidden`): `pods is forbidden: User "alice" cannot list …`, `pods "web" is
    /// forbidden: …` for a named object, `deployments.apps is forbidden: …` for a named group,
    /// `forbidden: User "alice" cannot get path "/metrics"` for a non-resource path; the authorizer's
    /// reason, when there is one, follows after `: `.
    pub fn forbidden_status_message(&self, reason: &str) -> String {
        let mut err = self.forbidden_message();
        if !reason.is_empty() {
            err = format!("{err}: {reason}");
        }
        match &self.target {
            Target::NonResource { .. } => format!("forbidden: {err}"),
            Target::Resource(r) => {
                let qualified = if r.api_group.is_empty() {
                    r.resource.clone()
                } else {
                    format!("{}.{}", r.resource, r.api_group)
                };
                if qualified.is_empty() {
                    format!("forbidden: {err}")
                } else if r.name.is_empty() {
                    format!("{qualified} is forbidden: {err}")
                } else {
                    format!("{qualified} {:?} is forbidden: {err}", r.name)
                }
            }
        }
    }
}
