//! One scheduling decision over a snapshot, and kube-scheduler's FitError message when no node fits.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::Pod;

use super::filters::Candidate;
use super::scores::pick;
use super::snapshot::Snapshot;
use super::volumes::PreFilter;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Bind to the node with this index in the snapshot.
    Bind(usize),
    /// No node fits; the PodScheduled=False message.
    Unschedulable(String),
    /// The node with this index fits, but these unbound claims (of the pod's namespace) must be bound
    /// there first: they get it as their selected node, and the pod waits.
    SelectNode(usize, Vec<String>),
    /// Its claims are being provisioned or bound on the node selected for them: wait.
    Wait,
}

/// kube-scheduler's floor on how many feasible nodes a search looks for.
const MIN_FEASIBLE_NODES_TO_FIND: usize = 100;
/// kube-scheduler's floor on the adaptive percentage of nodes to score.
const MIN_FEASIBLE_NODE_PERCENTAGE: usize = 5;

/// How many feasible nodes are enough to stop filtering: kube-scheduler's adaptive percentageOfNodesToScore
/// (every node below 100, then 50% falling by 1% per 125 nodes, at least 5% and at least 100 nodes).
pub(crate) fn feasible_nodes_to_find(all: usize) -> usize {
    if all < MIN_FEASIBLE_NODES_TO_FIND {
        return all;
    }
    let percentage = 50usize
        .saturating_sub(all / 125)
        .max(MIN_FEASIBLE_NODE_PERCENTAGE);
    (all * percentage / 100).max(MIN_FEASIBLE_NODES_TO_FIND)
}

/// Filters nodes starting at `*next_start` (round robin across pods, as kube-scheduler's
/// nextStartNodeIndex) until enough are feasible, scores those and picks the best. When fewer are feasible,
/// every node has been filtered and the reasons make kube's FitError message.
pub(crate) fn decide(snap: &Snapshot, pod: &Pod, next_start: &mut usize) -> Decision {
    let claims = match snap.volumes.pre_filter(pod) {
        PreFilter::Claims(claims) => claims,
        PreFilter::Waiting => return Decision::Wait,
        PreFilter::Unschedulable(message) => {
            return Decision::Unschedulable(pre_filter_error(snap.nodes.len(), &message));
        }
    };
    let c = Candidate::new(snap, pod);
    let all = snap.nodes.len();
    let enough = feasible_nodes_to_find(all);
    let start = if all == 0 { 0 } else { *next_start % all };
    let mut feasible = Vec::new();
    let mut reasons: HashMap<String, usize> = HashMap::new();
    let mut preemption: HashMap<&str, usize> = HashMap::new();
    let mut processed = 0;
    for i in (start..all).chain(0..start) {
        if feasible.len() >= enough {
            break;
        }
        processed += 1;
        let node = &snap.nodes[i];
        let refusal = c.refuse(node).or_else(|| {
            snap.volumes
                .refuse(&claims, node)
                .map(super::filters::Refusal::fixed)
        });
        match refusal {
            None => feasible.push(i),
            Some(r) => {
                for reason in r.reasons {
                    *reasons.entry(reason).or_default() += 1;
                }
                let why = if r.resolvable {
                    "No preemption victims found for incoming pod."
                } else {
                    "Preemption is not helpful for scheduling."
                };
                *preemption.entry(why).or_default() += 1;
            }
        }
    }
    if all > 0 {
        *next_start = (start + processed) % all;
    }
    match pick(snap, &c, &feasible) {
        Some(i) if !claims.to_select.is_empty() => Decision::SelectNode(
            i,
            claims
                .to_select
                .iter()
                .filter_map(|claim| claim.metadata.name.clone())
                .collect(),
        ),
        Some(i) => Decision::Bind(i),
        None => Decision::Unschedulable(fit_error(snap.nodes.len(), &reasons, &preemption)),
    }
}

/// kube's FitError when a PreFilter plugin refused the pod on every node: its message in place of the
/// histogram, and preemption cannot help.
pub(crate) fn pre_filter_error(total: usize, message: &str) -> String {
    if total == 0 {
        return "no nodes available to schedule pods".into();
    }
    format!(
        "0/{total} nodes are available: {message}. preemption: 0/{total} nodes are available: {total} Preemption is not helpful for scheduling."
    )
}

/// `"{count} {reason}"` entries sorted as strings and joined, as kube's FitError.Error does.
fn histogram<K: AsRef<str>>(reasons: &HashMap<K, usize>) -> String {
    let mut parts: Vec<String> = reasons
        .iter()
        .map(|(r, n)| format!("{n} {}", r.as_ref()))
        .collect();
    parts.sort();
    parts.join(", ")
}

/// kube-scheduler's message: "0/N nodes are available: <histogram>. preemption: 0/N nodes are available:
/// <histogram>." (herd never preempts, so the second part says why preemption would not help).
pub(crate) fn fit_error(
    total: usize,
    reasons: &HashMap<String, usize>,
    preemption: &HashMap<&str, usize>,
) -> String {
    if total == 0 {
        return "no nodes available to schedule pods".into();
    }
    format!(
        "0/{total} nodes are available: {}. preemption: 0/{total} nodes are available: {}.",
        histogram(reasons),
        histogram(preemption)
    )
}
