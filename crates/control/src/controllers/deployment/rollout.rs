//! The pure arithmetic of a rollout: how far surge and unavailability reach, and how many replicas each
//! ReplicaSet should have next, given what is available now. Mirrors kube's `rolling.go` and `recreate.go`.

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// What the rollout needs to know about one ReplicaSet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RsState {
    pub name: String,
    pub revision: i64,
    /// `spec.replicas`.
    pub spec: i64,
    /// `status.availableReplicas`, never counted above `spec`.
    pub available: i64,
    /// `status.replicas`: pods that exist, which may still exceed `spec` while a scale-down is carried out.
    pub pods: i64,
}

/// An int-or-percent (`3`, `"25%"`) scaled against `total`; percentages round up or down. Unparseable or
/// missing values give `default`.
pub fn int_or_percent(v: Option<&IntOrString>, total: i64, round_up: bool, default: i64) -> i64 {
    match v {
        Some(IntOrString::Int(n)) => i64::from(*n).max(0),
        Some(IntOrString::String(s)) => {
            let parsed = match s.strip_suffix('%') {
                Some(p) => p.trim().parse::<i64>().ok().map(|p| {
                    let scaled = p.max(0).saturating_mul(total.max(0));
                    if round_up {
                        (scaled + 99) / 100
                    } else {
                        scaled / 100
                    }
                }),
                None => s.trim().parse::<i64>().ok(),
            };
            parsed.unwrap_or(default).max(0)
        }
        None => default,
    }
}

/// `(maxSurge, maxUnavailable)` as absolute numbers for `replicas` (defaults 25% each); when both are zero
/// one pod may be unavailable, as kube's `ResolveFenceposts` does.
pub fn fenceposts(
    replicas: i64,
    max_surge: Option<&IntOrString>,
    max_unavailable: Option<&IntOrString>,
) -> (i64, i64) {
    let quarter = IntOrString::String("25%".into());
    let surge = int_or_percent(Some(max_surge.unwrap_or(&quarter)), replicas, true, 0);
    let unavailable = int_or_percent(
        Some(max_unavailable.unwrap_or(&quarter)),
        replicas,
        false,
        0,
    );
    if surge == 0 && unavailable == 0 {
        (0, 1)
    } else {
        (surge, unavailable.min(replicas.max(0)))
    }
}

/// The next `spec.replicas` of the new ReplicaSet: up to `replicas + surge` pods in total, never above
/// `replicas`. With no old replicas left it simply becomes `replicas` (a plain scale). Pods not yet removed
/// by a scale-down still count, so the total never overshoots while the ReplicaSet controller catches up.
pub fn new_rs_replicas(
    replicas: i64,
    surge: i64,
    new_spec: i64,
    new_pods: i64,
    old: &[RsState],
) -> i64 {
    let old_total: i64 = old.iter().map(|o| o.spec).sum();
    if old_total == 0 {
        return replicas;
    }
    let max_total = replicas + surge;
    let current = new_spec.max(new_pods) + old.iter().map(|o| o.spec.max(o.pods)).sum::<i64>();
    if current >= max_total {
        return new_spec.min(replicas);
    }
    (new_spec + (max_total - current)).min(replicas)
}

/// The old ReplicaSets to scale down and their next `spec.replicas`: first their unavailable replicas, then
/// available ones as long as `replicas - unavailable` stay available overall. Oldest revisions go first.
pub fn old_rs_scale_down(
    replicas: i64,
    unavailable: i64,
    new_spec: i64,
    new_available: i64,
    old: &[RsState],
) -> Vec<(String, i64)> {
    let old_total: i64 = old.iter().map(|o| o.spec).sum();
    if old_total == 0 {
        return Vec::new();
    }
    let min_available = replicas - unavailable;
    let mut sorted: Vec<RsState> = old.to_vec();
    sorted.sort_by(|a, b| a.revision.cmp(&b.revision).then(a.name.cmp(&b.name)));
    let new_unavailable = (new_spec - new_available).max(0);
    let max_scaled_down = new_spec + old_total - min_available - new_unavailable;
    if max_scaled_down <= 0 {
        return Vec::new();
    }
    // Unhealthy replicas first: removing them costs no availability.
    let mut scaled = 0;
    for rs in sorted.iter_mut() {
        if scaled >= max_scaled_down {
            break;
        }
        let unhealthy = rs.spec - rs.available.min(rs.spec);
        if unhealthy <= 0 {
            continue;
        }
        let n = unhealthy.min(max_scaled_down - scaled);
        rs.spec -= n;
        scaled += n;
    }
    // Then available replicas, down to the minimum availability.
    let available_total: i64 =
        new_available.min(new_spec) + sorted.iter().map(|r| r.available.min(r.spec)).sum::<i64>();
    let mut budget = (available_total - min_available).max(0);
    for rs in sorted.iter_mut() {
        if budget == 0 {
            break;
        }
        let n = rs.spec.min(budget);
        rs.spec -= n;
        budget -= n;
    }
    sorted
        .into_iter()
        .filter(|rs| old.iter().any(|o| o.name == rs.name && o.spec != rs.spec))
        .map(|rs| (rs.name, rs.spec))
        .collect()
}

/// What a Recreate rollout does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecreateStep {
    /// Scale these old ReplicaSets to zero.
    ScaleDownOld(Vec<String>),
    /// Old ReplicaSets are at zero but some of their pods still run.
    WaitForOldPods,
    /// Nothing old is left: bring the new ReplicaSet to `replicas`.
    ScaleUpNew,
}

pub fn recreate_step(old: &[RsState], old_pods_running: bool) -> RecreateStep {
    let active: Vec<String> = old
        .iter()
        .filter(|o| o.spec > 0)
        .map(|o| o.name.clone())
        .collect();
    if !active.is_empty() {
        RecreateStep::ScaleDownOld(active)
    } else if old_pods_running {
        RecreateStep::WaitForOldPods
    } else {
        RecreateStep::ScaleUpNew
    }
}

/// The old ReplicaSets beyond `limit` to delete: oldest revisions first, only those fully scaled down.
pub fn history_to_delete(old: &[(RsState, i64)], limit: i64) -> Vec<String> {
    let excess = old.len() as i64 - limit.max(0);
    if excess <= 0 {
        return Vec::new();
    }
    let mut sorted: Vec<&(RsState, i64)> = old.iter().collect();
    sorted.sort_by(|a, b| {
        a.0.revision
            .cmp(&b.0.revision)
            .then(a.0.name.cmp(&b.0.name))
    });
    sorted
        .into_iter()
        .filter(|(rs, pods)| rs.spec == 0 && *pods == 0)
        .take(excess as usize)
        .map(|(rs, _)| rs.name.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pct(s: &str) -> IntOrString {
        IntOrString::String(s.into())
    }

    fn rs(name: &str, revision: i64, spec: i64, available: i64) -> RsState {
        RsState {
            name: name.into(),
            revision,
            spec,
            available,
            pods: spec,
        }
    }

    #[test]
    fn surge_rounds_up_and_unavailable_rounds_down() {
        assert_eq!(fenceposts(10, None, None), (3, 2));
        assert_eq!(fenceposts(3, Some(&pct("50%")), Some(&pct("50%"))), (2, 1));
        assert_eq!(
            fenceposts(4, Some(&IntOrString::Int(2)), Some(&IntOrString::Int(0))),
            (2, 0)
        );
        assert_eq!(
            fenceposts(4, Some(&IntOrString::Int(0)), Some(&pct("0%"))),
            (0, 1)
        );
        assert_eq!(fenceposts(1, Some(&pct("bogus")), None), (0, 1));
        assert_eq!(int_or_percent(Some(&pct("1")), 9, true, 0), 1);
    }

    #[test]
    fn new_rs_grows_within_surge() {
        // 4 replicas, surge 1: 4 old pods → new may get 1.
        assert_eq!(new_rs_replicas(4, 1, 0, 0, &[rs("a", 1, 4, 4)]), 1);
        // Already at replicas + surge: hold.
        assert_eq!(new_rs_replicas(4, 1, 1, 1, &[rs("a", 1, 4, 4)]), 1);
        // Old scaled down to 2: new may reach 3.
        assert_eq!(new_rs_replicas(4, 1, 1, 1, &[rs("a", 1, 2, 2)]), 3);
        // ... but not while 3 old pods still exist.
        let mut shrinking = rs("a", 1, 2, 2);
        shrinking.pods = 3;
        assert_eq!(new_rs_replicas(4, 1, 1, 1, &[shrinking]), 2);
        // Never above replicas.
        assert_eq!(new_rs_replicas(4, 10, 0, 0, &[rs("a", 1, 1, 1)]), 4);
        // Nothing old: plain scale, up or down.
        assert_eq!(new_rs_replicas(4, 1, 7, 7, &[rs("a", 1, 0, 0)]), 4);
    }

    #[test]
    fn old_rs_keep_minimum_available() {
        // 4 replicas, unavailable 1, new has 1 unready: old (4 available) may drop to 3.
        assert_eq!(
            old_rs_scale_down(4, 1, 1, 0, &[rs("a", 1, 4, 4)]),
            vec![("a".to_string(), 3)]
        );
        // unavailable 0: nothing goes until the new pod is available.
        assert!(old_rs_scale_down(4, 0, 1, 0, &[rs("a", 1, 4, 4)]).is_empty());
        assert_eq!(
            old_rs_scale_down(4, 0, 1, 1, &[rs("a", 1, 4, 4)]),
            vec![("a".to_string(), 3)]
        );
        // Unhealthy old replicas go first, oldest revision first, then available ones down to the minimum.
        assert_eq!(
            old_rs_scale_down(4, 1, 2, 2, &[rs("b", 2, 2, 1), rs("a", 1, 2, 2)]),
            vec![("a".to_string(), 0), ("b".to_string(), 1)]
        );
        assert!(old_rs_scale_down(4, 1, 4, 4, &[rs("a", 1, 0, 0)]).is_empty());
    }

    #[test]
    fn recreate_scales_down_waits_then_up() {
        assert_eq!(
            recreate_step(&[rs("a", 1, 3, 3), rs("b", 2, 0, 0)], true),
            RecreateStep::ScaleDownOld(vec!["a".into()])
        );
        assert_eq!(
            recreate_step(&[rs("a", 1, 0, 0)], true),
            RecreateStep::WaitForOldPods
        );
        assert_eq!(
            recreate_step(&[rs("a", 1, 0, 0)], false),
            RecreateStep::ScaleUpNew
        );
    }

    #[test]
    fn history_keeps_newest_and_running() {
        let old = [
            (rs("r1", 1, 0, 0), 0),
            (rs("r2", 2, 1, 1), 1),
            (rs("r3", 3, 0, 0), 0),
            (rs("r4", 4, 0, 0), 0),
        ];
        assert_eq!(history_to_delete(&old, 2), vec!["r1", "r3"]);
        assert_eq!(history_to_delete(&old, 10), Vec::<String>::new());
        assert_eq!(history_to_delete(&old, 0).len(), 3);
    }
}
