//! One scheduling decision over a snapshot, and kube-scheduler's FitError message when no node fits.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::Pod;

use super::filters::Candidate;
use super::scores::pick;
use super::snapshot::Snapshot;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Bind to the node with this index in the snapshot.
    Bind(usize),
    /// No node fits; the PodScheduled=False message.
    Unschedulable(String),
}

pub(crate) fn decide(snap: &Snapshot, pod: &Pod) -> Decision {
    let c = Candidate::new(snap, pod);
    let mut feasible = Vec::new();
    let mut reasons: HashMap<String, usize> = HashMap::new();
    let mut preemption: HashMap<&str, usize> = HashMap::new();
    for (i, node) in snap.nodes.iter().enumerate() {
        match c.refuse(node) {
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
    match pick(snap, &c, &feasible) {
        Some(i) => Decision::Bind(i),
        None => Decision::Unschedulable(fit_error(snap.nodes.len(), &reasons, &preemption)),
    }
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
