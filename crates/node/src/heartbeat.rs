//! Liveness towards the control plane: the node Lease in `kube-node-lease` and the Ready
//! condition's heartbeat, both renewed every interval.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference};
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::NodeError;
use crate::registration::{self, NodeIdentity};

pub(crate) const LEASE_NAMESPACE: &str = "kube-node-lease";
pub(crate) const LEASE_DURATION_SECONDS: i32 = 40;

/// Renews the lease and the node's heartbeat every `interval` until `shutdown`. Failures are
/// logged and retried at the next tick.
pub(crate) async fn run(
    client: Client,
    identity: NodeIdentity,
    interval: Duration,
    shutdown: CancellationToken,
) {
    let leases: Api<Lease> = Api::namespaced(client.clone(), LEASE_NAMESPACE);
    let nodes: Api<Node> = Api::all(client.clone());
    loop {
        let now = Timestamp::now();
        if let Err(error) = renew_lease(&leases, &nodes, &identity.name, now).await {
            tracing::warn!(node = %identity.name, %error, "renewing the node lease failed");
        }
        if let Err(error) = beat(&client, &nodes, &identity, now).await {
            tracing::warn!(node = %identity.name, %error, "updating the node heartbeat failed");
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
        }
    }
}

fn lease_spec(name: &str, now: Timestamp) -> LeaseSpec {
    LeaseSpec {
        holder_identity: Some(name.to_owned()),
        lease_duration_seconds: Some(LEASE_DURATION_SECONDS),
        renew_time: Some(MicroTime(now)),
        ..LeaseSpec::default()
    }
}

/// Moves the lease's `renewTime` to `now`, creating the lease (owned by the Node) if missing.
async fn renew_lease(
    leases: &Api<Lease>,
    nodes: &Api<Node>,
    name: &str,
    now: Timestamp,
) -> Result<(), kube::Error> {
    let patch = json!({"spec": lease_spec(name, now)});
    match leases
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => {
            let owner = nodes
                .get(name)
                .await?
                .metadata
                .uid
                .map(|uid| OwnerReference {
                    api_version: "v1".to_owned(),
                    kind: "Node".to_owned(),
                    name: name.to_owned(),
                    uid,
                    ..OwnerReference::default()
                });
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(name.to_owned()),
                    namespace: Some(LEASE_NAMESPACE.to_owned()),
                    owner_references: owner.map(|o| vec![o]),
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec {
                    acquire_time: Some(MicroTime(now)),
                    ..lease_spec(name, now)
                }),
            };
            leases.create(&PostParams::default(), &lease).await?;
            tracing::info!(node = name, "created node lease");
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// Refreshes the conditions' heartbeat; registers the node again if it was deleted.
async fn beat(
    client: &Client,
    nodes: &Api<Node>,
    identity: &NodeIdentity,
    now: Timestamp,
) -> Result<(), NodeError> {
    let patch = json!({"status": {"conditions": identity.conditions(now)}});
    match nodes
        .patch_status(
            &identity.name,
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => {
            tracing::warn!(node = %identity.name, "the node object is gone, registering again");
            registration::register(client, identity).await
        }
        Err(e) => Err(NodeError::Register(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_spec_names_the_holder() {
        let now = Timestamp::from_second(1_700_000_000).expect("time");
        let spec = serde_json::to_value(lease_spec("node-a", now)).expect("json");
        assert_eq!(
            spec,
            json!({"holderIdentity": "node-a", "leaseDurationSeconds": 40, "renewTime": "2023-11-14T22:13:20.000000Z"})
        );
    }
}
