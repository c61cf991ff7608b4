//! Node IPAM: gives each Node a pod CIDR (`spec.podCIDR`) carved out of the cluster CIDR.

use std::collections::BTreeSet;
use std::sync::Arc;

use herd_api::resources::{self, ResourceInfo};
use ipnet::Ipv4Net;
use serde_json::{Value, json};

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
        let nodes = self.caches.list(self.nodes, None);
        let Some(node) = nodes
            .iter()
            .find(|n| n.pointer("/metadata/name").and_then(Value::as_str) == Some(name))
        else {
            return Ok(None);
        };
        if node
            .pointer("/spec/podCIDR")
            .and_then(Value::as_str)
            .is_some_and(|c| !c.is_empty())
        {
            return Ok(None);
        }
        let used: BTreeSet<String> = nodes
            .iter()
            .filter_map(|n| {
                n.pointer("/spec/podCIDR")
                    .and_then(Value::as_str)
                    .map(str::to_string)
            })
            .collect();
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
                if n.pointer("/spec/podCIDR")
                    .and_then(Value::as_str)
                    .is_some_and(|c| !c.is_empty())
                {
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
