//! The kubelet's restart back-off for crashed containers, and Go's duration format its
//! messages use.

use std::time::Duration;

/// The kubelet's crash back-off: `base` (10 s) doubling to 30 × base (5 min), forgotten after
/// a run of 60 × base (10 min).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct CrashBackOff {
    pub base: Duration,
}

impl CrashBackOff {
    pub fn max(self) -> Duration {
        self.base.saturating_mul(30)
    }

    /// A run at least this long resets the back-off to `base`.
    pub fn reset_after(self) -> Duration {
        self.max().saturating_mul(2)
    }

    pub fn next(self, delay: Duration) -> Duration {
        delay.saturating_mul(2).min(self.max())
    }
}

/// A duration as Go prints it (`10s`, `1m20s`, `5m0s`, `100ms`), as in the kubelet's messages.
pub(crate) fn go_duration(d: Duration) -> String {
    let millis = d.as_millis();
    if millis == 0 {
        return "0s".to_owned();
    }
    if millis < 1000 {
        return format!("{millis}ms");
    }
    let secs = d.as_secs();
    let frac = d.subsec_millis();
    let seconds = match frac {
        0 => format!("{}s", secs % 60),
        f => format!("{}.{}s", secs % 60, format!("{f:03}").trim_end_matches('0')),
    };
    match (secs / 3600, secs / 60 % 60) {
        (0, 0) => seconds,
        (0, m) => format!("{m}m{seconds}"),
        (h, m) => format!("{h}h{m}m{seconds}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crash_back_off_is_the_kubelets() {
        let policy = CrashBackOff {
            base: Duration::from_secs(10),
        };
        let delays: Vec<String> =
            std::iter::successors(Some(policy.base), |d| Some(policy.next(*d)))
                .take(7)
                .map(go_duration)
                .collect();
        assert_eq!(
            delays,
            ["10s", "20s", "40s", "1m20s", "2m40s", "5m0s", "5m0s"]
        );
        assert_eq!(policy.reset_after(), Duration::from_secs(600));
        assert_eq!(go_duration(Duration::from_millis(100)), "100ms");
        assert_eq!(go_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(go_duration(Duration::from_secs(3661)), "1h1m1s");
    }
}
