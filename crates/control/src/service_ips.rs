//! Service cluster IPs that stay unique across several API servers, as kube-apiserver (1.33+) allocates
//! them by default (the MultiCIDRServiceAllocator): each allocated IP is a cluster-scoped
//! `networking.k8s.io/v1` **IPAddress** object named by the address, whose `spec.parentRef` names the
//! Service, created before the Service. The store's create-if-absent makes the name, so the IP, unique
//! across every replica on one store; no lock in one process decides it. A Service's deletion deletes its
//! IPAddress; the repair loop (kube's ipallocator repair, run by the leading controller manager) recreates
//! the IPAddress of a Service that has none — what an existing cluster gets at its first start on this
//! allocator too — and deletes an IPAddress whose Service is gone or holds another IP once two passes in a
//! row saw it so (a Service being created has its IPAddress a moment before it exists itself).

use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;
use std::time::Duration;

use herd_api::resources::{self, ResourceInfo};
use ipnet::IpNet;
use rand::Rng as _;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::error::ApiError;
use crate::objects::{DeleteOptions, Objects, core};

/// The label kube's allocator puts on the IPAddresses it manages.
pub const MANAGED_BY_LABEL: &str = "ipaddress.kubernetes.io/managed-by";
/// Its value: kube's `ipallocator.k8s.io`.
pub const MANAGED_BY: &str = "ipallocator.k8s.io";

/// `networking.k8s.io/v1` ipaddresses.
pub fn ip_addresses() -> &'static ResourceInfo {
    resources::by_path("networking.k8s.io", "v1", "ipaddresses")
        .expect("ipaddresses are in the table")
}

/// The IPAddress that allocates `ip` to Service `namespace/name`.
pub fn ip_address_object(ip: IpAddr, namespace: &str, name: &str) -> Value {
    json!({"apiVersion": "networking.k8s.io/v1", "kind": "IPAddress",
        "metadata": {"name": ip.to_string(), "labels": {MANAGED_BY_LABEL: MANAGED_BY}},
        "spec": {"parentRef": {"group": "", "resource": "services",
            "namespace": namespace, "name": name}}})
}

/// The IPs a Service holds (`spec.clusterIPs`, else `spec.clusterIP`), headless and empty ones left out.
pub fn cluster_ips(svc: &Value) -> Vec<IpAddr> {
    let listed = svc
        .pointer("/spec/clusterIPs")
        .and_then(Value::as_array)
        .map(|ips| ips.iter().filter_map(Value::as_str).collect::<Vec<_>>())
        .filter(|ips| !ips.is_empty())
        .or_else(|| {
            svc.pointer("/spec/clusterIP")
                .and_then(Value::as_str)
                .map(|ip| vec![ip])
        })
        .unwrap_or_default();
    listed.iter().filter_map(|ip| ip.parse().ok()).collect()
}

/// The addresses of `cidr` a Service may get dynamically, from a random one on and wrapping around: every
/// host address but the first, which is the `kubernetes` Service's (kube's allocator also starts at a
/// random offset, so that API servers allocating at once rarely want the same address).
pub fn candidates(cidr: IpNet) -> impl Iterator<Item = IpAddr> {
    let (first, count) = host_range(cidr);
    // The first host is kept for the `kubernetes` Service.
    let (first, count) = (first + 1, count.saturating_sub(1));
    let start = if count == 0 {
        0
    } else {
        rand::rng().random_range(0..count)
    };
    let v4 = matches!(cidr, IpNet::V4(_));
    (0..count).map(move |i| {
        let n = first + (start + i) % count;
        if v4 {
            IpAddr::from(std::net::Ipv4Addr::from(n as u32))
        } else {
            IpAddr::from(std::net::Ipv6Addr::from(n))
        }
    })
}

/// The first host address of `cidr` as a number and how many there are (IPv4 leaves out the network and
/// broadcast addresses, IPv6 the network's; at most 2^64, far beyond what a Service range holds).
fn host_range(cidr: IpNet) -> (u128, u128) {
    match cidr {
        IpNet::V4(net) => {
            let bits = 32 - u32::from(net.prefix_len());
            let size = 1u128 << bits;
            let base = u128::from(u32::from(net.network()));
            if bits >= 2 {
                (base + 1, size - 2)
            } else {
                (base, size)
            }
        }
        IpNet::V6(net) => {
            let bits = (128 - u32::from(net.prefix_len())).min(64);
            let base = u128::from(net.network());
            (base + 1, (1u128 << bits) - 1)
        }
    }
}

/// Creates the IPAddress of each IP a Service holds that has none (a cluster that allocated before
/// IPAddress objects, a Service whose IPAddress was lost). An IPAddress naming another parent is left as it
/// is and reported.
///
/// # Errors
/// A store failure.
pub async fn backfill(objects: &Objects, cidr: IpNet) -> Result<(), ApiError> {
    let (services, _) = objects.list_all(core("services"), None).await?;
    let (addresses, _) = objects.list_all(ip_addresses(), None).await?;
    let existing: HashSet<String> = addresses
        .iter()
        .filter_map(|a| a.pointer("/metadata/name").and_then(Value::as_str))
        .map(str::to_string)
        .collect();
    for svc in &services {
        let (ns, name) = service_key(svc);
        for ip in cluster_ips(svc) {
            if !cidr.contains(&ip) || existing.contains(&ip.to_string()) {
                continue;
            }
            match objects
                .create(
                    ip_addresses(),
                    None,
                    ip_address_object(ip, &ns, &name),
                    false,
                )
                .await
            {
                Ok(_) => tracing::info!(%ip, service = %format!("{ns}/{name}"),
                    "created the missing IPAddress of a Service's cluster IP"),
                Err(ApiError::AlreadyExists { .. }) => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

fn service_key(svc: &Value) -> (String, String) {
    let at = |p| {
        svc.pointer(p)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    (at("/metadata/namespace"), at("/metadata/name"))
}

/// One pass of kube's ipallocator repair: [`backfill`], then the managed IPAddresses whose Service is gone
/// or holds another IP are deleted when the previous pass saw them so too (`orphans`: their names and
/// uids then, carried to the next pass).
///
/// # Errors
/// A store failure.
pub async fn repair(
    objects: &Objects,
    cidr: IpNet,
    orphans: &mut BTreeMap<String, String>,
) -> Result<(), ApiError> {
    backfill(objects, cidr).await?;
    let (services, _) = objects.list_all(core("services"), None).await?;
    let held: HashSet<(String, String, String)> = services
        .iter()
        .flat_map(|svc| {
            let (ns, name) = service_key(svc);
            cluster_ips(svc)
                .into_iter()
                .map(move |ip| (ip.to_string(), ns.clone(), name.clone()))
        })
        .collect();
    let (addresses, _) = objects.list_all(ip_addresses(), None).await?;
    let mut seen = BTreeMap::new();
    for address in &addresses {
        let at = |p| {
            address
                .pointer(p)
                .and_then(Value::as_str)
                .unwrap_or_default()
        };
        if at("/metadata/labels/ipaddress.kubernetes.io~1managed-by") != MANAGED_BY
            || at("/spec/parentRef/resource") != "services"
        {
            continue;
        }
        let (ip, uid) = (at("/metadata/name"), at("/metadata/uid"));
        let parent = (
            ip.to_string(),
            at("/spec/parentRef/namespace").to_string(),
            at("/spec/parentRef/name").to_string(),
        );
        if held.contains(&parent) {
            continue;
        }
        if orphans.get(ip).is_some_and(|seen_uid| seen_uid == uid) {
            let opts = DeleteOptions {
                precondition_uid: Some(uid.to_string()),
                ..DeleteOptions::default()
            };
            match objects.delete(ip_addresses(), None, ip, opts).await {
                Ok(_) => tracing::info!(%ip, service = %format!("{}/{}", parent.1, parent.2),
                    "deleted the IPAddress of a Service that does not hold it"),
                Err(ApiError::NotFound { .. } | ApiError::Conflict { .. }) => {}
                Err(e) => return Err(e),
            }
        } else {
            seen.insert(ip.to_string(), uid.to_string());
        }
    }
    *orphans = seen;
    Ok(())
}

/// Runs [`repair`] every `interval` until `shutdown` (the leading controller manager's task).
pub async fn run_repair(
    objects: Objects,
    cidr: IpNet,
    interval: Duration,
    shutdown: CancellationToken,
) {
    let mut orphans = BTreeMap::new();
    loop {
        if let Err(e) = repair(&objects, cidr, &mut orphans).await {
            tracing::warn!(error = %e, "repairing the Service IP allocations failed");
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_cover_every_host_but_the_first_once() {
        let cidr: IpNet = "10.0.0.0/29".parse().unwrap();
        let mut got: Vec<IpAddr> = candidates(cidr).collect();
        got.sort();
        let want: Vec<IpAddr> = (2..=6).map(|i| IpAddr::from([10, 0, 0, i])).collect();
        assert_eq!(got, want);
        let v6: IpNet = "fd00::/125".parse().unwrap();
        assert_eq!(candidates(v6).count(), 6);
        assert!(candidates(v6).all(|ip| v6.contains(&ip) && ip.to_string() != "fd00::1"));
    }

    #[test]
    fn a_service_holds_its_cluster_ips() {
        let svc = json!({"spec": {"clusterIP": "10.0.0.3", "clusterIPs": ["10.0.0.3"]}});
        assert_eq!(cluster_ips(&svc), vec![IpAddr::from([10, 0, 0, 3])]);
        let headless = json!({"spec": {"clusterIP": "None", "clusterIPs": ["None"]}});
        assert!(cluster_ips(&headless).is_empty());
    }
}
