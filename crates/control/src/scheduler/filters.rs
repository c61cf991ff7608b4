//! Filters, cheapest first, in kube-scheduler's plugin order: NodeUnschedulable, TaintToleration,
//! NodeAffinity, NodeResourcesFit, PodTopologySpread (DoNotSchedule), InterPodAffinity (required
//! anti-affinity). A node is refused with the reasons of the first filter that fails, as kube does.

use std::collections::{HashMap, HashSet};

use k8s_openapi::api::core::v1::{
    Pod, PodAffinityTerm, Taint, Toleration, TopologySpreadConstraint,
};

use super::selectors::{label_selector_matches, node_affinity_matches};
use super::snapshot::{NodeState, Resources, Snapshot, pod_requests};

pub(crate) const UNSCHEDULABLE: &str = "node(s) were unschedulable";
pub(crate) const AFFINITY: &str = "node(s) didn't match Pod's node affinity/selector";
pub(crate) const ANTI_AFFINITY: &str = "node(s) didn't match pod anti-affinity rules";
pub(crate) const SPREAD: &str = "node(s) didn't match pod topology spread constraints";
pub(crate) const SPREAD_LABEL: &str =
    "node(s) didn't match pod topology spread constraints (missing required label)";

/// Why a node was refused: kube's reason strings, and whether preempting pods could help.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub reasons: Vec<String>,
    pub resolvable: bool,
}

impl Refusal {
    pub(crate) fn fixed(reason: &str) -> Self {
        Self {
            reasons: vec![reason.to_string()],
            resolvable: false,
        }
    }
    fn resolvable(reasons: Vec<String>) -> Self {
        Self {
            reasons,
            resolvable: true,
        }
    }
}

/// A spread constraint with the matching pods counted per topology domain, over the nodes the pod's node
/// affinity allows (kube's default nodeAffinityPolicy Honor).
#[derive(Debug)]
pub(crate) struct Spread {
    pub key: String,
    pub max_skew: i64,
    pub counts: HashMap<String, i64>,
    pub min: i64,
    pub self_match: i64,
}

/// The pod being scheduled, with everything the filters and scores need computed once per pod.
#[derive(Debug)]
pub(crate) struct Candidate<'p> {
    pub pod: &'p Pod,
    pub requests: Resources,
    pub nonzero: Resources,
    pub tolerations: &'p [Toleration],
    /// Required anti-affinity: (topology key, domains already holding a matching pod).
    pub anti: Vec<(String, HashSet<String>)>,
    pub hard_spread: Vec<Spread>,
    pub soft_spread: Vec<Spread>,
}

fn term_namespaces<'t>(term: &'t PodAffinityTerm, own: &'t str) -> Option<Vec<&'t str>> {
    let listed: Vec<&str> = term
        .namespaces
        .iter()
        .flatten()
        .map(String::as_str)
        .collect();
    match &term.namespace_selector {
        // An empty namespaceSelector selects every namespace.
        Some(sel) if sel.match_labels.is_none() && sel.match_expressions.is_none() => None,
        _ if listed.is_empty() => Some(vec![own]),
        _ => Some(listed),
    }
}

fn spread(snap: &Snapshot, pod: &Pod, c: &TopologySpreadConstraint, eligible: &[bool]) -> Spread {
    let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
    let own = pod.metadata.labels.clone().unwrap_or_default();
    let sel = c.label_selector.clone().unwrap_or_default();
    let mut counts: HashMap<String, i64> = HashMap::new();
    for (i, n) in snap.nodes.iter().enumerate() {
        if eligible.get(i) == Some(&true)
            && let Some(v) = n.topology_value(&c.topology_key)
        {
            counts.entry(v.to_string()).or_default();
        }
    }
    for p in &snap.placed {
        if p.namespace != ns || !label_selector_matches(&sel, p.labels) {
            continue;
        }
        let domain = snap
            .nodes
            .get(p.node)
            .and_then(|n| n.topology_value(&c.topology_key));
        if let Some(count) = domain.and_then(|d| counts.get_mut(d)) {
            *count += 1;
        }
    }
    Spread {
        key: c.topology_key.clone(),
        max_skew: i64::from(c.max_skew.max(1)),
        min: counts.values().copied().min().unwrap_or(0),
        counts,
        self_match: i64::from(label_selector_matches(&sel, &own)),
    }
}

impl<'p> Candidate<'p> {
    pub fn new(snap: &Snapshot, pod: &'p Pod) -> Self {
        let (requests, nonzero) = pod_requests(pod);
        let spec = pod.spec.as_ref();
        let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
        let terms = spec
            .and_then(|s| s.affinity.as_ref())
            .and_then(|a| a.pod_anti_affinity.as_ref())
            .and_then(|a| {
                a.required_during_scheduling_ignored_during_execution
                    .as_deref()
            })
            .unwrap_or_default();
        let anti = terms
            .iter()
            .map(|t| {
                let namespaces = term_namespaces(t, ns);
                let sel = t.label_selector.clone().unwrap_or_default();
                // A term without a labelSelector matches no pod.
                let domains = if t.label_selector.is_none() {
                    HashSet::new()
                } else {
                    snap.placed
                        .iter()
                        .filter(|p| namespaces.as_ref().is_none_or(|n| n.contains(&p.namespace)))
                        .filter(|p| label_selector_matches(&sel, p.labels))
                        .filter_map(|p| snap.nodes.get(p.node)?.topology_value(&t.topology_key))
                        .map(str::to_string)
                        .collect()
                };
                (t.topology_key.clone(), domains)
            })
            .collect();
        let constraints = spec
            .and_then(|s| s.topology_spread_constraints.as_deref())
            .unwrap_or_default();
        let (mut hard_spread, mut soft_spread) = (Vec::new(), Vec::new());
        if !constraints.is_empty() {
            let eligible: Vec<bool> = snap
                .nodes
                .iter()
                .map(|n| node_affinity_matches(pod, n.name, n.labels))
                .collect();
            for c in constraints {
                let s = spread(snap, pod, c, &eligible);
                if c.when_unsatisfiable == "DoNotSchedule" {
                    hard_spread.push(s);
                } else {
                    soft_spread.push(s);
                }
            }
        }
        Self {
            pod,
            requests,
            nonzero,
            tolerations: spec
                .and_then(|s| s.tolerations.as_deref())
                .unwrap_or_default(),
            anti,
            hard_spread,
            soft_spread,
        }
    }

    /// Runs the filters in order; `None` when the node is feasible.
    pub fn refuse(&self, node: &NodeState) -> Option<Refusal> {
        if node.unschedulable && !tolerates_unschedulable(self.tolerations) {
            return Some(Refusal::fixed(UNSCHEDULABLE));
        }
        if let Some(t) = untolerated_taint(&node.taints, self.tolerations) {
            return Some(Refusal::fixed(&format!(
                "node(s) had untolerated taint {{{}: {}}}",
                t.key,
                t.value.as_deref().unwrap_or_default()
            )));
        }
        if !node_affinity_matches(self.pod, node.name, node.labels) {
            return Some(Refusal::fixed(AFFINITY));
        }
        let short = insufficient(self.requests, node);
        if !short.is_empty() {
            return Some(Refusal::resolvable(
                short.into_iter().map(String::from).collect(),
            ));
        }
        for s in &self.hard_spread {
            let Some(domain) = node.topology_value(&s.key) else {
                return Some(Refusal::fixed(SPREAD_LABEL));
            };
            let here = s.counts.get(domain).copied().unwrap_or(0);
            if here + s.self_match - s.min > s.max_skew {
                return Some(Refusal::resolvable(vec![SPREAD.into()]));
            }
        }
        for (key, domains) in &self.anti {
            if node
                .topology_value(key)
                .is_some_and(|d| domains.contains(d))
            {
                return Some(Refusal::resolvable(vec![ANTI_AFFINITY.into()]));
            }
        }
        None
    }
}

/// kube's `ToleratesTaint`.
pub(crate) fn tolerates(tol: &Toleration, taint: &Taint) -> bool {
    let effect_ok = tol
        .effect
        .as_deref()
        .is_none_or(|e| e.is_empty() || e == taint.effect);
    let key = tol.key.as_deref().unwrap_or_default();
    let exists = tol.operator.as_deref() == Some("Exists");
    if key.is_empty() {
        return exists && effect_ok;
    }
    effect_ok
        && key == taint.key
        && (exists
            || tol.value.as_deref().unwrap_or_default()
                == taint.value.as_deref().unwrap_or_default())
}

/// The first NoSchedule/NoExecute taint no toleration tolerates.
pub(crate) fn untolerated_taint<'t>(
    taints: &'t [Taint],
    tolerations: &[Toleration],
) -> Option<&'t Taint> {
    taints
        .iter()
        .filter(|t| t.effect == "NoSchedule" || t.effect == "NoExecute")
        .find(|t| !tolerations.iter().any(|tol| tolerates(tol, t)))
}

fn tolerates_unschedulable(tolerations: &[Toleration]) -> bool {
    let taint = Taint {
        key: "node.kubernetes.io/unschedulable".into(),
        effect: "NoSchedule".into(),
        ..Default::default()
    };
    tolerations.iter().any(|t| tolerates(t, &taint))
}

/// kube's NodeResourcesFit: the pod count first; a pod asking for no cpu or memory fits on those.
pub(crate) fn insufficient(req: Resources, node: &NodeState) -> Vec<&'static str> {
    let mut short = Vec::new();
    if node.requested.pods + req.pods > node.allocatable.pods {
        short.push("Too many pods");
    }
    if req.cpu > 0 && node.requested.cpu + req.cpu > node.allocatable.cpu {
        short.push("Insufficient cpu");
    }
    if req.memory > 0 && node.requested.memory + req.memory > node.allocatable.memory {
        short.push("Insufficient memory");
    }
    short
}
