//! What a pod's containers share on this node, set up once per pod: its volumes (materialised on first
//! use from the node's shared ConfigMap/Secret cache, rewritten when the cache sees a change, removed
//! with the pod), the facts and cached objects its environment is resolved from, and
//! the sandbox's network policy. Each container runner asks it for its environment, mounts and limits.

use std::path::PathBuf;
use std::sync::Arc;

use herd_api::quantity;
use herd_dns::{ClusterNames, PodResolver, Resolution};
use herd_wasm_runtime::{
    Answer, ConnectRedirect, IpNet, Limits, NameLookup, NetworkPolicy, Outbound, Preopen,
};
use k8s_openapi::api::core::v1::{Container, Pod};
use tokio::sync::OnceCell;
use tokio_util::sync::CancellationToken;

use crate::claim_volume::ClaimSource;
use crate::pod_env::{EnvFacts, resolve_env};
use crate::pod_volumes::{PodVolumes, VolumeContext};
use crate::pull_secrets::{PodKeyring, pod_keyring, pull_secret_names};
use crate::reflector::PodObjects;
use crate::service_account_token::TokenSource;
use crate::service_env::ServiceEnv;

/// The annotation a pod author restricts outbound connections with: `none`, `all` (the default) or a
/// comma-separated list of CIDRs the pod may connect to.
pub(crate) const EGRESS_ANNOTATION: &str = "herd.dev/egress";

pub(crate) struct PodSetup {
    pod: Arc<Pod>,
    pod_dir: PathBuf,
    facts: EnvFacts,
    volumes: OnceCell<Arc<PodVolumes>>,
    /// The pod's hold on the node cache's watches of the ConfigMaps and Secrets its volumes and
    /// environments use.
    objects: PodObjects,
    /// Where the containers' outbound connections really go (the node's, for Service ports).
    redirect: Option<ConnectRedirect>,
    /// How the containers' name lookups are answered: the cluster's names by the pod's resolver
    /// rules (namespace, dnsPolicy, dnsConfig, hosts), then the host's resolver.
    names: Option<NameLookup>,
    /// The node's table behind `names`, whose first complete list a container start waits for.
    cluster_names: Option<ClusterNames>,
    /// Stops the volume updater.
    updater: CancellationToken,
    /// Where the pod's projected ServiceAccount tokens come from.
    tokens: TokenSource,
    /// The Services whose variables the containers get.
    services: ServiceEnv,
    /// Where `persistentVolumeClaim` volumes are resolved.
    claims: Option<ClaimSource>,
}

/// Why a container cannot start yet: the kubelet's waiting reason and the message.
pub(crate) struct NotReady {
    pub reason: &'static str,
    pub message: String,
}

impl PodSetup {
    pub fn new(
        pod: Arc<Pod>,
        objects: PodObjects,
        pod_dir: PathBuf,
        facts: EnvFacts,
        redirect: Option<ConnectRedirect>,
        tokens: TokenSource,
        services: ServiceEnv,
    ) -> Self {
        Self {
            names: None,
            cluster_names: None,
            claims: None,
            tokens,
            services,
            pod,
            pod_dir,
            facts,
            volumes: OnceCell::new(),
            objects,
            redirect,
            updater: CancellationToken::new(),
        }
    }

    /// The set-up whose containers look names up in `cluster` (by the pod's resolver rules) before
    /// the host's resolver; without it, the host's resolver only.
    pub fn with_cluster_names(mut self, cluster: Option<ClusterNames>) -> Self {
        self.names = cluster
            .clone()
            .map(|cluster| pod_names(&self.pod, self.facts.pod_ips.first().copied(), cluster));
        self.cluster_names = cluster;
        self
    }

    /// The set-up whose `persistentVolumeClaim` volumes are resolved through `claims`.
    pub fn with_claims(mut self, claims: ClaimSource) -> Self {
        self.claims = Some(claims);
        self
    }

    /// The pod's volumes, materialised on the first call (then kept up to date in the background).
    async fn volumes(&self) -> Result<&Arc<PodVolumes>, NotReady> {
        self.volumes
            .get_or_try_init(|| async {
                let mut objects = self.objects.clone();
                let context = VolumeContext {
                    facts: self.facts.clone(),
                    tokens: Some(self.tokens.clone()),
                    claims: self.claims.clone(),
                };
                let volumes = PodVolumes::prepare(&mut objects, &self.pod, &self.pod_dir, &context)
                    .await
                    .map_err(|e| NotReady {
                        reason: "ContainerCreating",
                        message: e.to_string(),
                    })?;
                if volumes.has_projected() {
                    volumes.spawn_updater(
                        objects,
                        Some(self.tokens.clone()),
                        self.updater.child_token(),
                    );
                }
                Ok(Arc::new(volumes))
            })
            .await
    }

    /// The pod's ConfigMaps and Secrets as seen now, to wait on for a change (see
    /// [`PodObjects::seen`]): a runner takes it before [`PodSetup::for_container`], so a set-up that
    /// failed for want of an object is retried as soon as the object appears.
    pub fn objects_seen(&self) -> PodObjects {
        self.objects.seen()
    }

    /// The keyring of the pod's image pull secrets, from the node's Secret cache (see `pull_secrets`).
    ///
    /// # Errors
    /// A pull secret that does not parse, or the cache not syncing in time.
    pub async fn pull_keyring(&self) -> Result<PodKeyring, String> {
        if pull_secret_names(&self.pod).is_empty() {
            return Ok(PodKeyring::default());
        }
        let objects = self
            .objects
            .clone()
            .get()
            .await
            .map_err(|e| e.to_string())?;
        pod_keyring(&self.pod, &objects.secrets)
    }

    /// Everything a run of `container` needs from the pod: its environment, its mounts as preopened
    /// directories, its resource limits and the network policy.
    pub async fn for_container(&self, container: &Container) -> Result<ContainerSetup, NotReady> {
        let volumes = self.volumes().await?;
        tracing::debug!(pod = ?self.pod.metadata.name, "volumes ready");
        let config_error = |message: String| NotReady {
            reason: "CreateContainerConfigError",
            message,
        };
        // The node's cache, as the kubelet's configmap/secret managers: no GET per container start.
        let objects = self
            .objects
            .clone()
            .get()
            .await
            .map_err(|e| config_error(e.to_string()))?;
        let service_env = self.services.for_pod(&self.pod).await;
        // As the Service variables: the first complete list of names, waited for a little.
        if let Some(names) = &self.cluster_names
            && tokio::time::timeout(NAMES_SYNC_TIMEOUT, names.wait_synced())
                .await
                .is_err()
        {
            tracing::warn!("cluster names not listed yet: the container starts before them");
        }
        let env = resolve_env(container, &self.pod, &self.facts, &objects, &service_env)
            .map_err(|e| config_error(e.to_string()))?;
        let preopens = volumes
            .mounts(container)
            .map_err(|e| config_error(e.to_string()))?
            .into_iter()
            .map(|m| Preopen {
                host: m.host,
                guest: m.guest,
                read_only: m.read_only,
            })
            .collect();
        let outbound = egress(&self.pod).map_err(config_error)?;
        Ok(ContainerSetup {
            env,
            preopens,
            limits: limits(container),
            network: NetworkPolicy {
                bind_ip: self.facts.pod_ips.first().copied(),
                outbound,
                redirect: self.redirect.clone(),
                names: self.names.clone(),
            },
        })
    }

    /// The pod is gone: stops the updater and removes its volumes (emptyDirs and projected files).
    pub async fn remove(&self) {
        self.updater.cancel();
        if let Some(volumes) = self.volumes.get()
            && let Err(e) = volumes.remove().await
        {
            tracing::warn!(error = %e, "could not remove the pod's volumes");
        }
    }

    /// The agent stops (the pod lives on): stops the updater, keeps the volumes.
    pub fn detach(&self) {
        self.updater.cancel();
    }
}

impl Drop for PodSetup {
    /// A set-up dropped without `remove` or `detach` (its worker ended) still stops the updater, whose
    /// hold on the node cache's watches would otherwise outlive the pod.
    fn drop(&mut self) {
        self.updater.cancel();
    }
}

pub(crate) struct ContainerSetup {
    pub env: Vec<(String, String)>,
    pub preopens: Vec<Preopen>,
    pub limits: Limits,
    pub network: NetworkPolicy,
}

/// How long a container start waits for the node's first complete list of cluster names.
const NAMES_SYNC_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// The name lookup of `pod` (whose IP is `pod_ip`): what CoreDNS and the kubelet's resolv.conf and
/// hosts file would answer, from the node's current table of the cluster's names.
fn pod_names(pod: &Pod, pod_ip: Option<std::net::IpAddr>, cluster: ClusterNames) -> NameLookup {
    let resolver = PodResolver::for_pod(pod, pod_ip, &cluster.domain());
    NameLookup::new(move |name| match cluster.resolve(&resolver, name) {
        Resolution::Addresses(ips) => Answer::Addresses(ips),
        Resolution::NotFound => Answer::NotFound,
        Resolution::Host { names, otherwise } => Answer::AskHost { names, otherwise },
    })
}

/// `resources.limits` (else requests are not limits: a container without limits is not limited).
fn limits(container: &Container) -> Limits {
    let get = |name: &str| {
        container
            .resources
            .as_ref()
            .and_then(|r| r.limits.as_ref())
            .and_then(|l| l.get(name))
            .map(|q| q.0.as_str())
    };
    Limits {
        memory_bytes: get("memory")
            .and_then(quantity::value)
            .and_then(|v| u64::try_from(v).ok()),
        cpu_millis: get("cpu")
            .and_then(quantity::cpu_millis)
            .and_then(|v| u64::try_from(v).ok()),
    }
}

/// The pod's outbound policy from [`EGRESS_ANNOTATION`].
fn egress(pod: &Pod) -> Result<Outbound, String> {
    let value = pod
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(EGRESS_ANNOTATION))
        .map(|v| v.trim());
    match value {
        None | Some("" | "all") => Ok(Outbound::Allow),
        Some("none") => Ok(Outbound::Deny),
        Some(list) => list
            .split(',')
            .map(|cidr| {
                cidr.trim().parse::<IpNet>().map_err(|_| {
                    format!(
                        "annotation {EGRESS_ANNOTATION}: {cidr:?} is not a CIDR (use none, all or CIDRs separated by commas)"
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Outbound::Only),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(annotations: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p", "annotations": annotations}}))
            .unwrap()
    }

    #[test]
    fn egress_annotation_allows_all_none_or_listed_networks() {
        assert!(matches!(egress(&pod(json!({}))), Ok(Outbound::Allow)));
        assert!(matches!(
            egress(&pod(json!({EGRESS_ANNOTATION: "all"}))),
            Ok(Outbound::Allow)
        ));
        assert!(matches!(
            egress(&pod(json!({EGRESS_ANNOTATION: "none"}))),
            Ok(Outbound::Deny)
        ));
        match egress(&pod(json!({EGRESS_ANNOTATION: "10.0.0.0/8, 127.0.0.1/32"}))) {
            Ok(Outbound::Only(nets)) => assert_eq!(
                nets.iter().map(ToString::to_string).collect::<Vec<_>>(),
                ["10.0.0.0/8", "127.0.0.1/32"]
            ),
            _ => panic!("a CIDR list"),
        }
        let err = egress(&pod(json!({EGRESS_ANNOTATION: "internet"}))).err();
        assert!(err.is_some_and(|e| e.contains("\"internet\" is not a CIDR")));
    }

    #[test]
    fn limits_come_from_resource_limits_only() {
        let c: Container = serde_json::from_value(json!({"name": "c", "resources": {
            "limits": {"memory": "64Mi", "cpu": "250m"}, "requests": {"memory": "1Gi"}}}))
        .unwrap();
        let l = limits(&c);
        assert_eq!((l.memory_bytes, l.cpu_millis), (Some(64 << 20), Some(250)));
        let none: Container =
            serde_json::from_value(json!({"name": "c", "resources": {"requests": {"cpu": "1"}}}))
                .unwrap();
        let l = limits(&none);
        assert_eq!((l.memory_bytes, l.cpu_millis), (None, None));
    }
}
