//! kube-apiserver's own Service: `default/kubernetes` (the first Service IP, port 443 `https`), written at
//! every start (the port may change), as kube's control-plane Service reconciler does; its Endpoints and
//! EndpointSlice name every live API server (`apiserver_leases`). Pods reach the API at
//! `KUBERNETES_SERVICE_HOST:KUBERNETES_SERVICE_PORT` through the proxy, and the serving certificate names
//! that IP and `kubernetes.default.svc`.

use std::net::SocketAddr;

use serde_json::{Value, json};

use crate::error::ApiError;
use crate::objects::{Objects, core};

const NAME: &str = "kubernetes";
const NAMESPACE: &str = "default";
/// The Service's port (kube's `https` on 443).
const SERVICE_PORT: u16 = 443;

/// Creates or updates the Service for an API server reached at `advertise` from the Service IP
/// `cluster_ip`.
///
/// # Errors
/// A store failure, or a Service IP already taken by another Service (a cluster whose first Service IP was
/// given away before herd served this Service).
pub async fn reconcile(
    objects: &Objects,
    cluster_ip: &str,
    advertise: SocketAddr,
) -> Result<(), ApiError> {
    let labels = json!({"component": "apiserver", "provider": "kubernetes"});
    let ports = json!([{"name": "https", "port": SERVICE_PORT, "protocol": "TCP",
        "targetPort": advertise.port()}]);
    let service = json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": NAME, "namespace": NAMESPACE, "labels": labels},
        "spec": {"type": "ClusterIP", "clusterIP": cluster_ip, "ports": ports,
            "sessionAffinity": "None"}});
    upsert(
        objects,
        core("services"),
        NAME,
        service,
        |stored, wanted| {
            stored["spec"]["ports"] = wanted["spec"]["ports"].clone();
        },
    )
    .await
}

/// Creates `wanted` (`default/<name>`), or when it exists brings the fields `update` copies up to date.
pub(crate) async fn upsert(
    objects: &Objects,
    res: &'static herd_api::ResourceInfo,
    name: &str,
    wanted: Value,
    update: impl Fn(&mut Value, &Value) + Send + Sync + 'static,
) -> Result<(), ApiError> {
    match objects.find(res, NAMESPACE, name).await? {
        None => match objects.create(res, Some(NAMESPACE), wanted, false).await {
            Ok(_) | Err(ApiError::AlreadyExists { .. }) => Ok(()),
            Err(e) => Err(e),
        },
        Some(stored) => {
            let mut updated = stored.clone();
            update(&mut updated, &wanted);
            if updated == stored {
                return Ok(());
            }
            objects
                .edit(res, NAMESPACE, name, move |current| {
                    update(current, &wanted);
                    true
                })
                .await
                .map(|_| ())
        }
    }
}
