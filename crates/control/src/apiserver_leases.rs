//! The `kubernetes` Service's endpoints name every live API server, as kube-apiserver's lease endpoint
//! reconciler keeps them: each replica holds a Lease `kube-system/apiserver-<hash of its identity>` (labelled
//! `apiserver.kubernetes.io/identity: kube-apiserver`, as kube's APIServerIdentity leases), renewed every
//! [`RENEW_INTERVAL`] with a [`LEASE_DURATION_SECONDS`] duration and its advertise address in an
//! annotation; after each renewal it deletes the Leases that expired (their `renewTime` plus duration is
//! past, on this host's clock: the replicas' clocks are assumed to agree within seconds) and writes the
//! `default/kubernetes` Endpoints and EndpointSlices with the addresses of the live ones, sorted. A replica
//! that shuts down deletes its Lease and writes the endpoints without itself.
//!
//! Replicas normally share a port (one subset, one slice `kubernetes`, as kube has it); replicas on one host
//! listening on different ports get one subset and one slice (`kubernetes`, then `kubernetes-<port>`) per
//! port, the lowest port first.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use herd_api::resources;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use tokio_util::sync::CancellationToken;

use crate::apiserver_service::upsert;
use crate::error::ApiError;
use crate::leader_election::{LEASE_NAMESPACE, leases, micro_time_now};
use crate::objects::{DeleteOptions, Objects, core};

/// The label of API server identity Leases, and its value.
pub const IDENTITY_LABEL: &str = "apiserver.kubernetes.io/identity";
pub const IDENTITY: &str = "kube-apiserver";
/// Where a replica's Lease says it is reached.
pub const ADDRESS_ANNOTATION: &str = "herd.dev/advertise-address";
/// How often a replica renews its Lease and reconciles the endpoints (kube's endpoint reconciler interval).
pub const RENEW_INTERVAL: Duration = Duration::from_secs(10);
/// How long a Lease lives unrenewed (kube's endpoint reconciler TTL, 15 s).
pub const LEASE_DURATION_SECONDS: i64 = 15;

const SERVICE: &str = "kubernetes";
const SERVICE_NAMESPACE: &str = "default";

/// One replica's Lease and the reconciler of the endpoints.
pub struct ApiServerLease {
    objects: Objects,
    name: String,
    identity: String,
    advertise: SocketAddr,
}

impl ApiServerLease {
    /// The Lease of the replica `identity` reached at `advertise`; `objects` writes as kube-apiserver.
    pub fn new(objects: Objects, identity: &str, advertise: SocketAddr) -> Self {
        let hash = Sha256::digest(identity.as_bytes());
        Self {
            objects,
            name: format!("apiserver-{}", hex::encode(&hash[..8])),
            identity: identity.to_string(),
            advertise,
        }
    }

    /// Renews (or creates) this replica's Lease, then reconciles the endpoints.
    ///
    /// # Errors
    /// A store failure.
    pub async fn renew_and_reconcile(&self) -> Result<(), ApiError> {
        self.renew().await?;
        reconcile_endpoints(&self.objects).await
    }

    async fn renew(&self) -> Result<(), ApiError> {
        let now = micro_time_now();
        let spec = json!({"holderIdentity": self.identity,
            "leaseDurationSeconds": LEASE_DURATION_SECONDS, "renewTime": now});
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        let lease = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": self.name, "namespace": LEASE_NAMESPACE,
                "labels": {IDENTITY_LABEL: IDENTITY, "kubernetes.io/hostname": host.trim()},
                "annotations": {ADDRESS_ANNOTATION: self.advertise.to_string()}},
            "spec": spec});
        let edited = self
            .objects
            .edit(leases(), LEASE_NAMESPACE, &self.name, {
                let spec = spec.clone();
                move |stored| {
                    stored["spec"] = spec;
                    true
                }
            })
            .await?;
        if edited.is_some() {
            return Ok(());
        }
        match self
            .objects
            .create(leases(), Some(LEASE_NAMESPACE), lease, false)
            .await
        {
            Ok(_) | Err(ApiError::AlreadyExists { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Renews every [`RENEW_INTERVAL`] until `shutdown`, then deletes the Lease and writes the endpoints
    /// without this replica.
    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(RENEW_INTERVAL) => {}
            }
            if let Err(e) = self.renew_and_reconcile().await {
                tracing::warn!(error = %e, lease = %self.name, "renewing the API server's lease");
            }
        }
        match self
            .objects
            .delete(
                leases(),
                Some(LEASE_NAMESPACE),
                &self.name,
                DeleteOptions::default(),
            )
            .await
        {
            Ok(_) | Err(ApiError::NotFound { .. }) => {}
            Err(e) => tracing::warn!(error = %e, "deleting the API server's lease"),
        }
        if let Err(e) = reconcile_endpoints(&self.objects).await {
            tracing::warn!(error = %e, "removing this API server from the kubernetes endpoints");
        }
    }
}

/// Whether an API server Lease is past its renew time plus duration at `now`.
fn expired(lease: &Value, now: jiff::Timestamp) -> bool {
    let renewed = lease
        .pointer("/spec/renewTime")
        .and_then(Value::as_str)
        .and_then(|t| t.parse::<jiff::Timestamp>().ok());
    let duration = lease
        .pointer("/spec/leaseDurationSeconds")
        .and_then(Value::as_i64)
        .unwrap_or(LEASE_DURATION_SECONDS);
    renewed.is_none_or(|at| at + jiff::SignedDuration::from_secs(duration) < now)
}

/// The addresses of the live API servers by port, each port's sorted: the Leases read, the expired ones
/// deleted.
async fn live_servers(objects: &Objects) -> Result<BTreeMap<u16, BTreeSet<IpAddr>>, ApiError> {
    let (all, _) = objects.list_all(leases(), Some(LEASE_NAMESPACE)).await?;
    let now = jiff::Timestamp::now();
    let mut live: BTreeMap<u16, BTreeSet<IpAddr>> = BTreeMap::new();
    for lease in all.iter().filter(|l| {
        l.pointer("/metadata/labels/apiserver.kubernetes.io~1identity")
            .and_then(Value::as_str)
            == Some(IDENTITY)
    }) {
        let name = lease
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if expired(lease, now) {
            let opts = DeleteOptions {
                precondition_uid: lease
                    .pointer("/metadata/uid")
                    .and_then(Value::as_str)
                    .map(str::to_string),
                ..DeleteOptions::default()
            };
            match objects
                .delete(leases(), Some(LEASE_NAMESPACE), name, opts)
                .await
            {
                Ok(_) => {
                    tracing::info!(lease = %name, "deleted the expired lease of an API server")
                }
                Err(ApiError::NotFound { .. } | ApiError::Conflict { .. }) => {}
                Err(e) => return Err(e),
            }
            continue;
        }
        let address = lease
            .pointer("/metadata/annotations/herd.dev~1advertise-address")
            .and_then(Value::as_str)
            .and_then(|a| a.parse::<SocketAddr>().ok());
        if let Some(address) = address {
            live.entry(address.port()).or_default().insert(address.ip());
        }
    }
    Ok(live)
}

/// Writes `default/kubernetes`'s Endpoints and EndpointSlices from the live API servers' Leases.
///
/// # Errors
/// A store failure.
pub async fn reconcile_endpoints(objects: &Objects) -> Result<(), ApiError> {
    let live = live_servers(objects).await?;
    let port = |p: u16| json!([{"name": "https", "port": p, "protocol": "TCP"}]);
    let subsets: Vec<Value> = live
        .iter()
        .map(|(p, ips)| {
            json!({"addresses": ips.iter().map(|ip| json!({"ip": ip.to_string()})).collect::<Vec<_>>(),
                "ports": port(*p)})
        })
        .collect();
    let endpoints = core("endpoints");
    let wanted = json!({"apiVersion": "v1", "kind": "Endpoints",
        "metadata": {"name": SERVICE, "namespace": SERVICE_NAMESPACE,
            "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
        "subsets": subsets});
    upsert(objects, endpoints, SERVICE, wanted, |stored, wanted| {
        stored["subsets"] = wanted["subsets"].clone();
    })
    .await?;
    let slices = resources::by_path("discovery.k8s.io", "v1", "endpointslices")
        .expect("endpointslices are in the table");
    let mut names = BTreeSet::new();
    // With no live server the `kubernetes` slice stays, empty.
    let groups: Vec<(Option<u16>, Vec<IpAddr>)> = if live.is_empty() {
        vec![(None, Vec::new())]
    } else {
        live.iter()
            .map(|(p, ips)| (Some(*p), ips.iter().copied().collect()))
            .collect()
    };
    for (i, (p, ips)) in groups.into_iter().enumerate() {
        let name = match (i, p) {
            (0, _) | (_, None) => SERVICE.to_string(),
            (_, Some(p)) => format!("{SERVICE}-{p}"),
        };
        let family = if ips.first().is_some_and(IpAddr::is_ipv6) {
            "IPv6"
        } else {
            "IPv4"
        };
        let slice = json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": name, "namespace": SERVICE_NAMESPACE,
                "labels": {"kubernetes.io/service-name": SERVICE}},
            "addressType": family,
            "endpoints": ips.iter().map(|ip| json!({"addresses": [ip.to_string()],
                "conditions": {"ready": true}})).collect::<Vec<_>>(),
            "ports": p.map_or(json!([]), port)});
        upsert(objects, slices, &name, slice, |stored, wanted| {
            stored["endpoints"] = wanted["endpoints"].clone();
            stored["ports"] = wanted["ports"].clone();
        })
        .await?;
        names.insert(name);
    }
    // Slices of ports no live server listens on any more.
    let (existing, _) = objects.list_all(slices, Some(SERVICE_NAMESPACE)).await?;
    for slice in &existing {
        let name = slice
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let ours = name
            .strip_prefix("kubernetes-")
            .is_some_and(|p| p.parse::<u16>().is_ok())
            && slice
                .pointer("/metadata/labels/kubernetes.io~1service-name")
                .and_then(Value::as_str)
                == Some(SERVICE)
            && slice
                .pointer("/metadata/labels/endpointslice.kubernetes.io~1managed-by")
                .is_none();
        if ours && !names.contains(name) {
            match objects
                .delete(
                    slices,
                    Some(SERVICE_NAMESPACE),
                    name,
                    DeleteOptions::default(),
                )
                .await
            {
                Ok(_) | Err(ApiError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_expires_after_its_renew_time_and_duration() {
        let now: jiff::Timestamp = "2026-12-07T12:00:20Z".parse().unwrap();
        let lease =
            |renewed: &str| json!({"spec": {"renewTime": renewed, "leaseDurationSeconds": 15}});
        assert!(!expired(&lease("2026-12-07T12:00:10.000000Z"), now));
        assert!(expired(&lease("2026-12-07T12:00:04.000000Z"), now));
        assert!(expired(&json!({"spec": {}}), now));
    }
}
