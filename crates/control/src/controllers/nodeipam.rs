//! Node IPAM: gives each Node a pod CIDR (`spec.podCIDR`) carved out of the cluster CIDR.

use std::collections::BTreeSet;
use std::sync::Arc;

use herd_api::resources::{self, ResourceInfo};
use ipnet::Ipv4Net;
use k8s_openapi::api::core::v1::Node;
use serde_json::json;

use super::{Controller, Informers, Key, Requeue, key_of};
use crate::error::ApiError;
use crate::objects::Change;
use crate::objects::Objects;

pub struct NodeIpam {
    objects: Objects,
    caches: Arc<Informers>,
    nodes: &'static ResourceInfo,
    cluster_cidr: Ipv4Net,
    node_prefix: u8,
}

impl NodeIpam {
    pub fn new(
        objects: Objects,
        caches: Arc<Informers>,
        cluster_cidr: Ipv4Net,
        node_prefix: u8,
    ) -> Self {
        Self {
            objects,
            caches,
            nodes: resources::by_path("", "v1", "nodes").expect("nodes"),
            cluster_cidr,
            node_prefix,
        }
    }
}

impl Controller for NodeIpam {
    const NAME: &'static str = "nodeipam";

    fn watches(&self) -> &'static [&'static str] {
        &["nodes"]
    }

    fn keys_for(&self, change: &Change) -> Vec<Key> {
        vec![key_of(change)]
    }

    async fn all_keys(&self) -> Result<Vec<Key>, ApiError> {
        // Cluster-scoped objects: the namespace part of the key is empty.
        Ok(self.caches.keys(self.nodes))
    }

    async fn reconcile(&self, (_, name): &Key) -> Result<Requeue, ApiError> {
        let nodes = self.caches.store::<Node>();
        let pod_cidr = |n: &Node| {
            n.spec
                .as_ref()
                .and_then(|s| s.pod_cidr.clone())
                .filter(|c| !c.is_empty())
        };
        let Some(node) = nodes.get("", name) else {
            return Ok(None);
        };
        if pod_cidr(&node).is_some() {
            return Ok(None);
        }
        let used: BTreeSet<String> = nodes.state().iter().filter_map(|n| pod_cidr(n)).collect();
        let subnets = self.cluster_cidr.subnets(self.node_prefix).map_err(|e| {
            ApiError::Internal(format!(
                "cluster CIDR {} cannot hold /{} node ranges: {e}",
                self.cluster_cidr, self.node_prefix
            ))
        })?;
        let Some(cidr) = subnets.map(|s| s.to_string()).find(|s| !used.contains(s)) else {
            return Err(ApiError::Internal(format!(
                "no pod CIDR left in {} for node {name}",
                self.cluster_cidr
            )));
        };
        self.objects
            .edit(self.nodes, "", name, |n| {
                // Written meanwhile (the cache may lag the store): keep it.
                if n["spec"]["podCIDR"].as_str().is_some_and(|c| !c.is_empty()) {
                    return false;
                }
                n["spec"]["podCIDR"] = json!(cidr);
                n["spec"]["podCIDRs"] = json!([cidr]);
                true
            })
            .await?;
        tracing::info!(node = %name, %cidr, "assigned pod CIDR");
        Ok(None)
    }
}
