//! The Node object: what this agent says about its host, registering it, and waiting for the
//! control plane to give it a pod CIDR.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{
    DaemonEndpoint, Node, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeStatus,
    NodeSystemInfo,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::NodeError;

/// The operating system label and `nodeInfo.operatingSystem`: pods select herd nodes with
/// `nodeSelector: {kubernetes.io/os: wasi}`.
pub(crate) const OS: &str = "wasi";
pub(crate) const ARCH: &str = "wasm32";
pub(crate) const KUBELET_VERSION: &str = "v1.37.0-herd";
const RUNTIME_VERSION: &str = "wasmtime://48.0.8";
const OS_IMAGE: &str = "herd (wasmtime 48)";
/// The default `--max-pods`: Wasm pods are small (about 100 KiB each when idle), so a node takes
/// 10,000 where the kubelet, sized for containers, takes 110.
pub const DEFAULT_MAX_PODS: u32 = 10_000;
const POD_CIDR_POLL: Duration = Duration::from_millis(200);

/// What the node reports about its host; read once at start.
#[derive(Clone, Debug)]
pub(crate) struct HostInfo {
    pub cpus: usize,
    /// `MemTotal` in KiB.
    pub memory_kib: u64,
    pub kernel_version: String,
    pub boot_id: String,
    pub machine_id: String,
}

impl HostInfo {
    /// Reads the host from `/proc` and `/etc`; whatever cannot be read is reported empty.
    pub fn read() -> Self {
        let read = |path: &str| {
            std::fs::read_to_string(path)
                .map(|s| s.trim().to_owned())
                .unwrap_or_default()
        };
        Self {
            cpus: std::thread::available_parallelism()
                .map(usize::from)
                .unwrap_or(1),
            memory_kib: mem_total_kib(&read("/proc/meminfo")).unwrap_or(0),
            kernel_version: read("/proc/sys/kernel/osrelease"),
            boot_id: read("/proc/sys/kernel/random/boot_id"),
            machine_id: read("/etc/machine-id"),
        }
    }
}

/// `MemTotal` from the text of `/proc/meminfo`, in KiB.
pub(crate) fn mem_total_kib(meminfo: &str) -> Option<u64> {
    meminfo
        .lines()
        .find_map(|line| line.strip_prefix("MemTotal:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
}

/// Where the node is reachable and since when it is ready.
#[derive(Clone, Debug)]
pub(crate) struct NodeIdentity {
    pub name: String,
    pub address: IpAddr,
    pub kubelet_port: u16,
    pub host: HostInfo,
    /// When this agent became ready: the Ready condition's transition time.
    pub ready_since: Timestamp,
    /// The pods capacity the node reports (`--max-pods`).
    pub max_pods: u32,
    /// Where the node keeps `herd.dev/local` volumes, published for the provisioner.
    pub local_volume_root: std::path::PathBuf,
}

impl NodeIdentity {
    pub fn labels(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("kubernetes.io/hostname".to_owned(), self.name.clone()),
            ("kubernetes.io/os".to_owned(), OS.to_owned()),
            ("kubernetes.io/arch".to_owned(), ARCH.to_owned()),
        ])
    }

    /// The annotations the node publishes: its local volume root (an absolute path).
    pub fn annotations(&self) -> BTreeMap<String, String> {
        let root = std::path::absolute(&self.local_volume_root)
            .unwrap_or_else(|_| self.local_volume_root.clone());
        BTreeMap::from([(
            herd_api::volumes::LOCAL_ROOT_ANNOTATION.to_owned(),
            root.to_string_lossy().into_owned(),
        )])
    }

    /// The Node object to create.
    pub fn node(&self, now: Timestamp) -> Node {
        Node {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                labels: Some(self.labels()),
                annotations: Some(self.annotations()),
                ..ObjectMeta::default()
            },
            spec: None,
            status: Some(self.status(now)),
        }
    }

    /// The node's whole status, with heartbeats at `now`.
    pub fn status(&self, now: Timestamp) -> NodeStatus {
        let resources = BTreeMap::from([
            ("cpu".to_owned(), Quantity(self.host.cpus.to_string())),
            (
                "memory".to_owned(),
                Quantity(format!("{}Ki", self.host.memory_kib)),
            ),
            ("pods".to_owned(), Quantity(self.max_pods.to_string())),
        ]);
        NodeStatus {
            capacity: Some(resources.clone()),
            allocatable: Some(resources),
            addresses: Some(vec![
                NodeAddress {
                    type_: "InternalIP".to_owned(),
                    address: self.address.to_string(),
                },
                NodeAddress {
                    type_: "Hostname".to_owned(),
                    address: self.name.clone(),
                },
            ]),
            daemon_endpoints: Some(NodeDaemonEndpoints {
                kubelet_endpoint: Some(DaemonEndpoint {
                    port: i32::from(self.kubelet_port),
                }),
            }),
            node_info: Some(NodeSystemInfo {
                architecture: ARCH.to_owned(),
                boot_id: self.host.boot_id.clone(),
                container_runtime_version: RUNTIME_VERSION.to_owned(),
                kernel_version: self.host.kernel_version.clone(),
                kube_proxy_version: String::new(),
                kubelet_version: KUBELET_VERSION.to_owned(),
                machine_id: self.host.machine_id.clone(),
                operating_system: OS.to_owned(),
                os_image: OS_IMAGE.to_owned(),
                system_uuid: self.host.machine_id.clone(),
                ..NodeSystemInfo::default()
            }),
            conditions: Some(self.conditions(now)),
            ..NodeStatus::default()
        }
    }

    /// The node conditions with their heartbeat at `now`.
    pub fn conditions(&self, now: Timestamp) -> Vec<NodeCondition> {
        let condition = |type_: &str, status: &str, reason: &str, message: &str| NodeCondition {
            type_: type_.to_owned(),
            status: status.to_owned(),
            reason: Some(reason.to_owned()),
            message: Some(message.to_owned()),
            last_heartbeat_time: Some(Time(now)),
            last_transition_time: Some(Time(self.ready_since)),
        };
        vec![
            condition(
                "MemoryPressure",
                "False",
                "KubeletHasSufficientMemory",
                "kubelet has sufficient memory available",
            ),
            condition(
                "DiskPressure",
                "False",
                "KubeletHasNoDiskPressure",
                "kubelet has no disk pressure",
            ),
            condition(
                "PIDPressure",
                "False",
                "KubeletHasSufficientPID",
                "kubelet has sufficient PID available",
            ),
            condition(
                "Ready",
                "True",
                "KubeletReady",
                "kubelet is posting ready status",
            ),
        ]
    }
}

/// Creates the Node, or takes over an existing one: its spec is kept, its labels merged, its
/// status replaced.
pub(crate) async fn register(client: &Client, identity: &NodeIdentity) -> Result<(), NodeError> {
    let nodes: Api<Node> = Api::all(client.clone());
    let now = Timestamp::now();
    match nodes
        .create(&PostParams::default(), &identity.node(now))
        .await
    {
        Ok(_) => tracing::info!(node = %identity.name, "registered node"),
        Err(kube::Error::Api(status)) if status.code == 409 => {
            let labels = json!({"metadata": {"labels": identity.labels(),
                "annotations": identity.annotations()}});
            nodes
                .patch(
                    &identity.name,
                    &PatchParams::default(),
                    &Patch::Merge(&labels),
                )
                .await
                .map_err(NodeError::Register)?;
            tracing::info!(node = %identity.name, "node already registered, taking it over");
        }
        Err(e) => return Err(NodeError::Register(e)),
    }
    // The API server may drop status on create; set it through the status subresource.
    let status = json!({"status": identity.status(now)});
    nodes
        .patch_status(
            &identity.name,
            &PatchParams::default(),
            &Patch::Merge(&status),
        )
        .await
        .map_err(NodeError::Register)?;
    Ok(())
}

/// Waits until the control plane has assigned `spec.podCIDR`; `None` if `shutdown` came first.
pub(crate) async fn wait_for_pod_cidr(
    client: &Client,
    name: &str,
    shutdown: &CancellationToken,
) -> Result<Option<IpNet>, NodeError> {
    let nodes: Api<Node> = Api::all(client.clone());
    let mut logged = false;
    loop {
        match nodes.get(name).await {
            Ok(node) => {
                if let Some(cidr) = node.spec.and_then(|s| s.pod_cidr).filter(|c| !c.is_empty()) {
                    let cidr = cidr
                        .parse::<IpNet>()
                        .map_err(|_| NodeError::BadPodCidr(cidr.clone()))?;
                    tracing::info!(node = name, %cidr, "pod CIDR assigned");
                    return Ok(Some(cidr));
                }
                if !logged {
                    tracing::info!(node = name, "waiting for a pod CIDR");
                    logged = true;
                }
            }
            Err(error) => tracing::warn!(node = name, %error, "reading the node failed, retrying"),
        }
        tokio::select! {
            () = shutdown.cancelled() => return Ok(None),
            () = tokio::time::sleep(POD_CIDR_POLL) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity() -> NodeIdentity {
        NodeIdentity {
            name: "node-a".into(),
            address: "127.0.0.1".parse().expect("ip"),
            kubelet_port: 41000,
            host: HostInfo {
                cpus: 4,
                memory_kib: 16_318_412,
                kernel_version: "6.1".into(),
                boot_id: "b".into(),
                machine_id: "m".into(),
            },
            ready_since: Timestamp::from_second(1_700_000_000).expect("time"),
            max_pods: DEFAULT_MAX_PODS,
            local_volume_root: "/data/volumes".into(),
        }
    }

    #[test]
    fn reads_mem_total() {
        let meminfo = "MemTotal:       16318412 kB\nMemFree:         1234 kB\n";
        assert_eq!(mem_total_kib(meminfo), Some(16_318_412));
        assert_eq!(mem_total_kib("garbage"), None);
    }

    #[test]
    fn node_object_describes_the_agent() {
        let now = Timestamp::from_second(1_700_000_100).expect("time");
        let node = serde_json::to_value(identity().node(now)).expect("json");
        assert_eq!(node["metadata"]["labels"]["kubernetes.io/os"], "wasi");
        assert_eq!(node["metadata"]["labels"]["kubernetes.io/arch"], "wasm32");
        assert_eq!(
            node["metadata"]["labels"]["kubernetes.io/hostname"],
            "node-a"
        );
        let status = &node["status"];
        assert_eq!(status["capacity"]["cpu"], "4");
        assert_eq!(status["allocatable"]["memory"], "16318412Ki");
        assert_eq!(status["capacity"]["pods"], "10000");
        assert_eq!(status["daemonEndpoints"]["kubeletEndpoint"]["Port"], 41000);
        assert_eq!(
            status["addresses"][0],
            json!({"type": "InternalIP", "address": "127.0.0.1"})
        );
        assert_eq!(status["nodeInfo"]["operatingSystem"], "wasi");
        assert_eq!(
            status["nodeInfo"]["containerRuntimeVersion"],
            "wasmtime://48.0.8"
        );
        let ready = status["conditions"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
            .expect("Ready");
        assert_eq!(ready["status"], "True");
        assert_eq!(ready["reason"], "KubeletReady");
        assert_eq!(ready["lastHeartbeatTime"], "2023-11-14T22:15:00Z");
        assert_eq!(ready["lastTransitionTime"], "2023-11-14T22:13:20Z");
    }
}
