//! Scores, each 0–100 and summed with weight 1: NodeResourcesFit (least allocated), NodeAffinity
//! (preferred terms), PodTopologySpread (ScheduleAnyway constraints, else the default spread of one owner's
//! replicas over hostnames).

use super::filters::{Candidate, Spread};
use super::selectors::term_matches;
use super::snapshot::{NodeState, Snapshot, controller_uid};

const MAX: i64 = 100;

/// Mean over cpu and memory of the share left free after placing the pod (kube's LeastAllocated).
pub(crate) fn least_allocated(c: &Candidate, node: &NodeState) -> i64 {
    let part = |alloc: i64, used: i64| {
        if alloc <= 0 || used > alloc {
            0
        } else {
            (alloc - used) * MAX / alloc
        }
    };
    let cpu = part(
        node.allocatable.cpu,
        node.requested_nonzero.cpu + c.nonzero.cpu,
    );
    let mem = part(
        node.allocatable.memory,
        node.requested_nonzero.memory + c.nonzero.memory,
    );
    (cpu + mem) / 2
}

/// Sum of the weights of the preferred node affinity terms the node matches (normalised later).
pub(crate) fn preferred_affinity(c: &Candidate, node: &NodeState) -> i64 {
    c.pod
        .spec
        .as_ref()
        .and_then(|s| s.affinity.as_ref())
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|a| {
            a.preferred_during_scheduling_ignored_during_execution
                .as_ref()
        })
        .into_iter()
        .flatten()
        .filter(|p| term_matches(&p.preference, node.name, node.labels))
        .map(|p| i64::from(p.weight))
        .sum()
}

/// Matching pods already in the node's domains (lower is better; normalised later).
pub(crate) fn spread_count(snap: &Snapshot, c: &Candidate, node: usize) -> i64 {
    let Some(state) = snap.nodes.get(node) else {
        return 0;
    };
    if !c.soft_spread.is_empty() {
        let in_domain = |s: &Spread| {
            state
                .topology_value(&s.key)
                .and_then(|d| s.counts.get(d))
                .copied()
                .unwrap_or(0)
        };
        return c.soft_spread.iter().map(in_domain).sum();
    }
    // No constraints of its own: kube's default constraint spreads a controller's pods over hostnames.
    controller_uid(c.pod).map_or(0, |uid| snap.owned_on(uid, node))
}

/// Scales raw values to 0–100 with the best (highest, or lowest when `lower_is_better`) at 100.
pub(crate) fn normalise(raw: &[i64], lower_is_better: bool) -> Vec<i64> {
    let max = raw.iter().copied().max().unwrap_or(0);
    raw.iter()
        .map(|&v| match (max > 0, lower_is_better) {
            (false, _) => MAX,
            (true, false) => v * MAX / max,
            (true, true) => (max - v) * MAX / max,
        })
        .collect()
}

/// Index (into `feasible`) of the best node: the highest total score, ties to the first (by node name).
pub(crate) fn pick(snap: &Snapshot, c: &Candidate, feasible: &[usize]) -> Option<usize> {
    let nodes = &snap.nodes;
    let fit: Vec<i64> = feasible
        .iter()
        .filter_map(|&i| nodes.get(i))
        .map(|n| least_allocated(c, n))
        .collect();
    let affinity: Vec<i64> = feasible
        .iter()
        .filter_map(|&i| nodes.get(i))
        .map(|n| preferred_affinity(c, n))
        .collect();
    let spread: Vec<i64> = feasible.iter().map(|&i| spread_count(snap, c, i)).collect();
    let (affinity, spread) = (normalise(&affinity, false), normalise(&spread, true));
    let mut best: Option<(usize, i64)> = None;
    for (k, &i) in feasible.iter().enumerate() {
        let total = fit.get(k).copied().unwrap_or(0)
            + affinity.get(k).copied().unwrap_or(0)
            + spread.get(k).copied().unwrap_or(0);
        let better = best.is_none_or(|(b, s)| {
            total > s || (total == s && nodes.get(i).map(|n| n.name) < nodes.get(b).map(|n| n.name))
        });
        if better {
            best = Some((i, total));
        }
    }
    best.map(|(i, _)| i)
}
