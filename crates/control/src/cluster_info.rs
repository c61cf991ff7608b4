//! kubeadm's `cluster-info`: the ConfigMap `kube-public/cluster-info` whose `kubeconfig` names the API
//! server (its advertise address) and the cluster CA, written at every start (the port may change), and the
//! Role and RoleBinding that let `system:anonymous` read exactly that object (kubeadm's
//! `kubeadm:bootstrap-signer-clusterinfo`, named `herd:…` here as herd's other kubeadm objects). The
//! bootstrap signer (`controllers::bootstrap_signer`) adds a `jws-kubeconfig-<token id>` signature per
//! signing token; a joining node checks one against its token before it believes the kubeconfig.

use serde_json::{Value, json};

use crate::error::ApiError;
use crate::objects::{Objects, core};

pub const NAMESPACE: &str = "kube-public";
pub const NAME: &str = "cluster-info";
/// The data key of the kubeconfig.
pub const KUBECONFIG_KEY: &str = "kubeconfig";
/// The data key prefix of the signatures (`jws-kubeconfig-<token id>`).
pub const JWS_PREFIX: &str = "jws-kubeconfig-";
/// The Role and RoleBinding granting `system:anonymous` `get` of the ConfigMap.
pub const ROLE: &str = "herd:bootstrap-signer-clusterinfo";

/// The kubeconfig `cluster-info` carries, as kubeadm writes it: one nameless cluster, no user.
pub fn kubeconfig(server: &str, ca_pem: &str) -> String {
    use base64::Engine as _;
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    format!(
        "apiVersion: v1\nclusters:\n- cluster:\n    certificate-authority-data: {ca}\n    server: {server}\n  name: \"\"\ncontexts: null\ncurrent-context: \"\"\nkind: Config\npreferences: {{}}\nusers: null\n"
    )
}

/// Creates or updates the ConfigMap (its kubeconfig; the signatures are the bootstrap signer's) and the
/// anonymous read grant.
///
/// # Errors
/// A store failure.
pub async fn reconcile(objects: &Objects, server: &str, ca_pem: &str) -> Result<(), ApiError> {
    let wanted = kubeconfig(server, ca_pem);
    let maps = core("configmaps");
    match objects.find(maps, NAMESPACE, NAME).await? {
        None => {
            let map = json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": NAME, "namespace": NAMESPACE},
                "data": {KUBECONFIG_KEY: wanted}});
            match objects.create(maps, Some(NAMESPACE), map, false).await {
                Ok(_) | Err(ApiError::AlreadyExists { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Some(stored)
            if stored.pointer("/data/kubeconfig").and_then(Value::as_str) != Some(&wanted) =>
        {
            objects
                .edit(maps, NAMESPACE, NAME, move |map| {
                    // The old signatures sign the old kubeconfig: the bootstrap signer writes new ones.
                    map["data"] = json!({KUBECONFIG_KEY: wanted});
                    true
                })
                .await?;
        }
        Some(_) => {}
    }
    let rbac = |plural| {
        herd_api::resources::by_path("rbac.authorization.k8s.io", "v1", plural)
            .expect("the RBAC kinds are in the table")
    };
    let role = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": {"name": ROLE, "namespace": NAMESPACE},
        "rules": [{"apiGroups": [""], "resources": ["configmaps"], "resourceNames": [NAME],
            "verbs": ["get"]}]});
    let binding = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": ROLE, "namespace": NAMESPACE},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": ROLE},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User",
            "name": crate::server::authn::ANONYMOUS_USER}]});
    for (res, object) in [(rbac("roles"), role), (rbac("rolebindings"), binding)] {
        if objects.find(res, NAMESPACE, ROLE).await?.is_none() {
            match objects.create(res, Some(NAMESPACE), object, false).await {
                Ok(_) | Err(ApiError::AlreadyExists { .. }) => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

/// Whether an anonymous request may reach `path` at all: only a GET of the `cluster-info` ConfigMap
/// (RBAC still decides, through the grant above). Every other anonymous request stays 401.
pub fn anonymous_path(path: &str) -> bool {
    path == "/api/v1/namespaces/kube-public/configmaps/cluster-info"
}
