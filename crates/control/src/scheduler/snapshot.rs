//! One pass's view of the cluster: per-node state (allocatable, what bound pods already use, taints, labels)
//! computed once, and updated in place as the pass binds pods.

use std::collections::{BTreeMap, HashMap};

use herd_api::quantity;
use k8s_openapi::api::core::v1::{Node, Pod, Taint};

use super::volumes::Volumes;

/// Requests and capacities: (millicores, bytes, pods).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Resources {
    pub cpu: i64,
    pub memory: i64,
    pub pods: i64,
}

impl Resources {
    fn add(&mut self, other: Resources) {
        self.cpu += other.cpu;
        self.memory += other.memory;
        self.pods += other.pods;
    }
}

/// What scoring assumes a container without requests uses (kube-scheduler's non-zero defaults).
const DEFAULT_MILLI_CPU: i64 = 100;
const DEFAULT_MEMORY: i64 = 200 << 20;

/// A pod's requests: the sum over containers (requests, else limits, as the API server defaults them), at
/// least the largest init container, and one pod. The second value uses kube's non-zero defaults per
/// container, for scoring.
pub(crate) fn pod_requests(pod: &Pod) -> (Resources, Resources) {
    let mut sum = Resources {
        pods: 1,
        ..Default::default()
    };
    let mut nonzero = sum;
    let Some(spec) = pod.spec.as_ref() else {
        return (sum, nonzero);
    };
    let container = |c: &k8s_openapi::api::core::v1::Container| {
        let req = c
            .resources
            .as_ref()
            .and_then(|r| r.requests.as_ref().or(r.limits.as_ref()));
        let get =
            |k: &str, f: fn(&str) -> Option<i64>| req.and_then(|r| r.get(k)).and_then(|q| f(&q.0));
        (
            get("cpu", quantity::cpu_millis),
            get("memory", quantity::value),
        )
    };
    for c in &spec.containers {
        let (cpu, mem) = container(c);
        sum.cpu += cpu.unwrap_or(0);
        sum.memory += mem.unwrap_or(0);
        nonzero.cpu += cpu.unwrap_or(DEFAULT_MILLI_CPU);
        nonzero.memory += mem.unwrap_or(DEFAULT_MEMORY);
    }
    for c in spec.init_containers.iter().flatten() {
        let (cpu, mem) = container(c);
        sum.cpu = sum.cpu.max(cpu.unwrap_or(0));
        sum.memory = sum.memory.max(mem.unwrap_or(0));
    }
    (sum, nonzero)
}

pub(crate) fn allocatable(node: &Node) -> Resources {
    let alloc = node.status.as_ref().and_then(|s| s.allocatable.as_ref());
    let get = |k: &str, f: fn(&str) -> Option<i64>| {
        alloc
            .and_then(|a| a.get(k))
            .and_then(|q| f(&q.0))
            .unwrap_or(0)
    };
    Resources {
        cpu: get("cpu", quantity::cpu_millis),
        memory: get("memory", quantity::value),
        pods: get("pods", quantity::value),
    }
}

pub(crate) fn is_terminal(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

/// The node's taints, plus the ones the node lifecycle controller puts on a node whose Ready condition is
/// False (`node.kubernetes.io/not-ready`) or Unknown/missing (`node.kubernetes.io/unreachable`), so that a
/// node that is not Ready is refused the way kube-scheduler refuses it.
fn effective_taints(node: &Node) -> Vec<Taint> {
    let mut taints = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    let ready = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
        .map(|c| c.status.as_str());
    let synthetic = match ready {
        Some("True") => None,
        Some("False") => Some("node.kubernetes.io/not-ready"),
        _ => Some("node.kubernetes.io/unreachable"),
    };
    if let Some(key) = synthetic
        && !taints.iter().any(|t| t.key == key)
    {
        taints.push(Taint {
            key: key.into(),
            effect: "NoSchedule".into(),
            ..Default::default()
        });
    }
    taints
}

/// A pod that occupies a node (borrowed from the pass's listing).
#[derive(Debug, Clone)]
pub(crate) struct PlacedPod<'a> {
    pub namespace: &'a str,
    pub labels: &'a BTreeMap<String, String>,
    pub node: usize,
}

/// A node as the filters and scores see it.
#[derive(Debug)]
pub(crate) struct NodeState<'a> {
    pub name: &'a str,
    pub labels: &'a BTreeMap<String, String>,
    pub taints: Vec<Taint>,
    pub unschedulable: bool,
    pub allocatable: Resources,
    /// Sum of the requests of the non-terminal pods bound here.
    pub requested: Resources,
    /// The same with kube's non-zero defaults, for scoring.
    pub requested_nonzero: Resources,
}

impl NodeState<'_> {
    /// The node's value for a topology key; `kubernetes.io/hostname` falls back to the node name.
    pub fn topology_value(&self, key: &str) -> Option<&str> {
        match self.labels.get(key) {
            Some(v) => Some(v),
            None if key == HOSTNAME => Some(self.name),
            None => None,
        }
    }
}

pub(crate) const HOSTNAME: &str = "kubernetes.io/hostname";

static NO_LABELS: BTreeMap<String, String> = BTreeMap::new();

/// Everything one pass reads, built once from one listing of nodes and pods.
#[derive(Debug)]
pub(crate) struct Snapshot<'a> {
    pub nodes: Vec<NodeState<'a>>,
    /// Non-terminal pods bound to a node of the snapshot.
    pub placed: Vec<PlacedPod<'a>>,
    /// Controller owner uid → node index → pods of that owner there.
    owners: HashMap<String, HashMap<usize, i64>>,
    by_name: HashMap<&'a str, usize>,
    /// The claims, volumes and classes of the VolumeBinding plugin.
    pub volumes: &'a Volumes,
}

static NO_VOLUMES: Volumes = Volumes {
    claims: BTreeMap::new(),
    volumes: BTreeMap::new(),
    classes: BTreeMap::new(),
};

pub(crate) fn controller_uid(pod: &Pod) -> Option<&str> {
    pod.metadata
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true))
        .map(|o| o.uid.as_str())
}

impl<'a> Snapshot<'a> {
    pub fn new(nodes: &'a [Node], pods: impl IntoIterator<Item = &'a Pod>) -> Self {
        let nodes: Vec<NodeState<'a>> = nodes
            .iter()
            .filter_map(|n| {
                Some(NodeState {
                    name: n.metadata.name.as_deref()?,
                    labels: n.metadata.labels.as_ref().unwrap_or(&NO_LABELS),
                    taints: effective_taints(n),
                    unschedulable: n.spec.as_ref().and_then(|s| s.unschedulable) == Some(true),
                    allocatable: allocatable(n),
                    requested: Resources::default(),
                    requested_nonzero: Resources::default(),
                })
            })
            .collect();
        let by_name = nodes.iter().enumerate().map(|(i, n)| (n.name, i)).collect();
        let mut snap = Self {
            nodes,
            placed: Vec::new(),
            owners: HashMap::new(),
            by_name,
            volumes: &NO_VOLUMES,
        };
        for pod in pods.into_iter().filter(|p| !is_terminal(p)) {
            let node = pod
                .spec
                .as_ref()
                .and_then(|s| s.node_name.as_deref())
                .and_then(|n| snap.by_name.get(n).copied());
            if let Some(i) = node {
                snap.assume(pod, i);
            }
        }
        snap
    }

    /// The snapshot with the claims, volumes and classes the pass read.
    pub fn with_volumes(mut self, volumes: &'a Volumes) -> Self {
        self.volumes = volumes;
        self
    }

    /// Records `pod` as running on node `node` (after a bind, or for pods already bound).
    pub fn assume(&mut self, pod: &'a Pod, node: usize) {
        let Some(state) = self.nodes.get_mut(node) else {
            return;
        };
        let (req, nonzero) = pod_requests(pod);
        state.requested.add(req);
        state.requested_nonzero.add(nonzero);
        if let Some(uid) = controller_uid(pod) {
            let per_node = match self.owners.get_mut(uid) {
                Some(m) => m,
                None => self.owners.entry(uid.to_string()).or_default(),
            };
            *per_node.entry(node).or_default() += 1;
        }
        self.placed.push(PlacedPod {
            namespace: pod.metadata.namespace.as_deref().unwrap_or_default(),
            labels: pod.metadata.labels.as_ref().unwrap_or(&NO_LABELS),
            node,
        });
    }

    /// Pods with controller `uid` on node `node`.
    pub fn owned_on(&self, uid: &str, node: usize) -> i64 {
        self.owners
            .get(uid)
            .and_then(|m| m.get(&node))
            .copied()
            .unwrap_or(0)
    }
}
