//! What one sync of a StatefulSet does to its pods, decided from facts alone (kube's `updateStatefulSet`,
//! `processReplica` and `processCondemned`): which ordinals to create, which pods to delete and why.
//!
//! Pods in `[start, start + replicas)` are the replicas, pods with other ordinals are condemned. Replicas
//! are seen to in ordinal order: a Failed or Succeeded pod is deleted (and made again once it is gone), a
//! missing one is created. Under `OrderedReady` the pass stops at the first pod it had to create, or that
//! is terminating, not Running and Ready or not yet available — so each pod waits for its predecessors;
//! under `Parallel` it goes on, and so does the sync. Condemned pods go from the highest ordinal down — one at a time, and only
//! once every replica is available, under `OrderedReady`; all at once under `Parallel`. Last, a
//! `RollingUpdate` deletes outdated pods from the highest ordinal down to `start + partition`, at most
//! `maxUnavailable` pods being unavailable at once (one by default); `OnDelete` leaves that to the user.

/// How a pod stands, as the sync sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// Marked for deletion.
    Terminating,
    /// Failed or Succeeded: a stateful pod is always replaced.
    Finished,
    /// Created, not yet Running and Ready.
    Starting,
    /// Running and Ready, not yet for `minReadySeconds`.
    Ready,
    /// Running and Ready for `minReadySeconds`.
    Available,
}

/// One existing pod of the set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PodFacts {
    pub ordinal: i32,
    pub health: Health,
    /// Whether it carries the update revision.
    pub updated: bool,
}

impl PodFacts {
    /// kube's `isUnavailable`: not healthy, or not yet available.
    fn unavailable(&self) -> bool {
        self.health != Health::Available
    }
}

/// The set's spec, as far as the sync's decisions go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SetFacts {
    pub start: i32,
    pub replicas: i32,
    /// `podManagementPolicy: OrderedReady`.
    pub ordered: bool,
    pub update: Update,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Update {
    /// Pods from `start + partition` up are replaced, at most `max_unavailable` unavailable at once.
    RollingUpdate {
        partition: i32,
        max_unavailable: i32,
    },
    OnDelete,
}

/// Why a pod is deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// It failed or succeeded; it is made again once gone (kube's `RecreatingFailedPod`).
    Finished,
    /// Its ordinal is outside the set's range.
    ScaleDown,
    /// It carries an outdated revision.
    Update,
}

/// One sync's actions, in the order they are to be taken.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Ordinals to create, in order.
    pub create: Vec<i32>,
    /// Ordinals to delete, in order.
    pub delete: Vec<(i32, Why)>,
}

/// The set's range of ordinals.
pub fn in_range(set: &SetFacts, ordinal: i32) -> bool {
    ordinal >= set.start && ordinal < set.start.saturating_add(set.replicas)
}

/// The revision a pod made now at `ordinal` gets: below `start + partition` of a rolling update the
/// current one, else the update one (kube's `newVersionedStatefulSetPod`).
pub fn takes_update_revision(set: &SetFacts, ordinal: i32) -> bool {
    match set.update {
        Update::RollingUpdate { partition, .. } => ordinal >= set.start.saturating_add(partition),
        Update::OnDelete => true,
    }
}

/// kube's `getStatefulSetMaxUnavailable`: a count, or a percentage of the replicas rounded down; at
/// least 1.
pub fn max_unavailable(
    value: Option<&k8s_openapi::apimachinery::pkg::util::intstr::IntOrString>,
    replicas: i32,
) -> i32 {
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    let n = match value {
        None => 1,
        Some(IntOrString::Int(n)) => *n,
        Some(IntOrString::String(s)) => s
            .strip_suffix('%')
            .and_then(|p| p.parse::<i64>().ok())
            .map_or(1, |p| {
                i32::try_from(p * i64::from(replicas.max(0)) / 100).unwrap_or(i32::MAX)
            }),
    };
    n.max(1)
}

/// One sync's plan for a set whose pods are `pods` (any order).
pub fn plan(set: &SetFacts, pods: &[PodFacts]) -> Plan {
    let mut plan = Plan::default();
    let replicas: Vec<(i32, Option<&PodFacts>)> = (0..set.replicas.max(0))
        .map(|i| set.start.saturating_add(i))
        .map(|ord| (ord, pods.iter().find(|p| p.ordinal == ord)))
        .collect();
    let mut condemned: Vec<&PodFacts> = pods.iter().filter(|p| !in_range(set, p.ordinal)).collect();
    condemned.sort_by_key(|p| std::cmp::Reverse(p.ordinal));
    // The first unavailable pod: of the replicas in order (a missing one counts), else of the condemned
    // from the lowest ordinal up. Under OrderedReady it may be deleted while unavailable.
    let first_unavailable = replicas
        .iter()
        .find(|(_, p)| p.is_none_or(PodFacts::unavailable))
        .map(|(ord, _)| *ord)
        .or_else(|| {
            condemned
                .iter()
                .rev()
                .find(|p| p.unavailable())
                .map(|p| p.ordinal)
        });
    let monotonic = set.ordered;

    for (ord, pod) in &replicas {
        let Some(pod) = pod else {
            plan.create.push(*ord);
            if monotonic {
                return plan;
            }
            continue;
        };
        match pod.health {
            Health::Finished => {
                plan.delete.push((*ord, Why::Finished));
                if monotonic {
                    return plan;
                }
            }
            Health::Terminating | Health::Starting | Health::Ready if monotonic => return plan,
            _ => {}
        }
    }
    for pod in &condemned {
        if pod.health == Health::Terminating {
            if monotonic {
                return plan;
            }
            continue;
        }
        if monotonic && pod.unavailable() && Some(pod.ordinal) != first_unavailable {
            return plan;
        }
        plan.delete.push((pod.ordinal, Why::ScaleDown));
        if monotonic {
            return plan;
        }
    }
    let Update::RollingUpdate {
        partition,
        max_unavailable,
    } = set.update
    else {
        return plan;
    };
    let unavailable = replicas
        .iter()
        .filter(|(_, p)| p.is_none_or(PodFacts::unavailable))
        .count();
    let room = usize::try_from(max_unavailable.max(1))
        .unwrap_or(1)
        .saturating_sub(unavailable);
    let floor = set.start.saturating_add(partition);
    let mut replaced = 0;
    for (ord, pod) in replicas.iter().rev() {
        if replaced >= room || *ord < floor {
            break;
        }
        if let Some(pod) = pod
            && !pod.updated
            && pod.health != Health::Terminating
        {
            plan.delete.push((*ord, Why::Update));
            replaced += 1;
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(ordinal: i32, health: Health) -> PodFacts {
        PodFacts {
            ordinal,
            health,
            updated: true,
        }
    }

    fn old(ordinal: i32, health: Health) -> PodFacts {
        PodFacts {
            ordinal,
            health,
            updated: false,
        }
    }

    fn set(replicas: i32, ordered: bool) -> SetFacts {
        SetFacts {
            start: 0,
            replicas,
            ordered,
            update: Update::RollingUpdate {
                partition: 0,
                max_unavailable: 1,
            },
        }
    }

    use Health::{Available, Finished, Ready, Starting, Terminating};

    #[test]
    fn ordered_ready_creates_one_pod_after_its_predecessor_is_available() {
        let s = set(3, true);
        assert_eq!(plan(&s, &[]).create, [0]);
        assert_eq!(plan(&s, &[pod(0, Starting)]), Plan::default());
        // Ready but not yet for minReadySeconds: still waiting.
        assert_eq!(plan(&s, &[pod(0, Ready)]), Plan::default());
        assert_eq!(plan(&s, &[pod(0, Available)]).create, [1]);
        // A gap is filled before anything above it.
        assert_eq!(
            plan(&s, &[pod(1, Available), pod(2, Available)]).create,
            [0]
        );
    }

    #[test]
    fn parallel_creates_every_missing_pod_at_once() {
        let s = set(3, false);
        assert_eq!(plan(&s, &[pod(1, Starting)]).create, [0, 2]);
    }

    #[test]
    fn a_finished_pod_is_deleted_to_be_made_again() {
        let s = set(2, true);
        assert_eq!(
            plan(&s, &[pod(0, Finished), pod(1, Available)]).delete,
            [(0, Why::Finished)]
        );
    }

    #[test]
    fn ordered_ready_scales_down_from_the_highest_ordinal_one_at_a_time() {
        let s = set(1, true);
        let pods = [pod(0, Available), pod(1, Available), pod(2, Available)];
        assert_eq!(plan(&s, &pods).delete, [(2, Why::ScaleDown)]);
        // The next waits for the last to be gone.
        let pods = [pod(0, Available), pod(1, Available), pod(2, Terminating)];
        assert_eq!(plan(&s, &pods), Plan::default());
        // Not while a replica is unavailable.
        let pods = [pod(0, Starting), pod(1, Available)];
        assert_eq!(plan(&s, &pods), Plan::default());
        // An unavailable condemned pod that is not the first unavailable one waits.
        let pods = [pod(0, Available), pod(1, Starting), pod(2, Starting)];
        assert_eq!(plan(&s, &pods), Plan::default());
        let pods = [pod(0, Available), pod(1, Available), pod(2, Starting)];
        assert_eq!(plan(&s, &pods).delete, [(2, Why::ScaleDown)]);
    }

    #[test]
    fn parallel_scales_down_every_condemned_pod_at_once() {
        let s = set(1, false);
        let pods = [
            pod(0, Starting),
            pod(1, Available),
            pod(2, Terminating),
            pod(3, Starting),
        ];
        assert_eq!(
            plan(&s, &pods).delete,
            [(3, Why::ScaleDown), (1, Why::ScaleDown)]
        );
    }

    #[test]
    fn a_rolling_update_replaces_from_the_highest_ordinal_down_to_the_partition() {
        let mut s = set(3, true);
        let all_old = [old(0, Available), old(1, Available), old(2, Available)];
        assert_eq!(plan(&s, &all_old).delete, [(2, Why::Update)]);
        // The replaced pod must be available before the next goes.
        let pods = [old(0, Available), old(1, Available), pod(2, Starting)];
        assert_eq!(plan(&s, &pods), Plan::default());
        let pods = [old(0, Available), old(1, Available), pod(2, Available)];
        assert_eq!(plan(&s, &pods).delete, [(1, Why::Update)]);
        // With a partition of 2, ordinals 0 and 1 keep the current revision.
        s.update = Update::RollingUpdate {
            partition: 2,
            max_unavailable: 1,
        };
        assert_eq!(plan(&s, &pods), Plan::default());
        assert!(!takes_update_revision(&s, 1) && takes_update_revision(&s, 2));
        // maxUnavailable 2: two at once.
        s.update = Update::RollingUpdate {
            partition: 0,
            max_unavailable: 2,
        };
        assert_eq!(
            plan(&s, &all_old).delete,
            [(2, Why::Update), (1, Why::Update)]
        );
    }

    #[test]
    fn on_delete_never_replaces_a_pod_but_makes_new_ones_updated() {
        let mut s = set(2, true);
        s.update = Update::OnDelete;
        let pods = [old(0, Available), old(1, Available)];
        assert_eq!(plan(&s, &pods), Plan::default());
        assert!(takes_update_revision(&s, 0));
    }

    #[test]
    fn ordinals_start_where_the_set_says() {
        let mut s = set(2, true);
        s.start = 5;
        assert_eq!(plan(&s, &[]).create, [5]);
        assert_eq!(
            plan(
                &s,
                &[pod(0, Available), pod(5, Available), pod(6, Available)]
            )
            .delete,
            [(0, Why::ScaleDown)]
        );
    }

    #[test]
    fn max_unavailable_is_a_count_or_a_share_of_at_least_one() {
        use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
        assert_eq!(max_unavailable(None, 10), 1);
        assert_eq!(max_unavailable(Some(&IntOrString::Int(3)), 10), 3);
        assert_eq!(
            max_unavailable(Some(&IntOrString::String("25%".into())), 10),
            2
        );
        assert_eq!(
            max_unavailable(Some(&IntOrString::String("10%".into())), 3),
            1
        );
    }
}
