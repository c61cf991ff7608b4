//! Scale to zero for wasi-http Deployments: the annotations a Deployment opts in with (in the spirit of
//! Knative's `autoscaling.knative.dev/*`), their parsing and validation, and the names of the
//! annotations the proxies and the controller exchange.
//!
//! ```yaml
//! metadata:
//!   annotations:
//!     autoscaling.herd.dev/idle-timeout: 30s        # opts in: scaled to zero after 30 s without traffic
//!     autoscaling.herd.dev/target-concurrency: "10" # connections per pod before scaling out (default 100)
//!     autoscaling.herd.dev/max-scale: "5"           # at most 5 replicas when scaling out (default: no limit)
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

use crate::validation::Cause;

/// The prefix of every scale-to-zero annotation.
pub const PREFIX: &str = "autoscaling.herd.dev/";
/// A Deployment's idle timeout: after it with no traffic to its Services, it is scaled to zero.
/// Setting it opts the Deployment in.
pub const IDLE_TIMEOUT: &str = "autoscaling.herd.dev/idle-timeout";
/// Open connections per pod before the Deployment is scaled out (Knative's `target`).
pub const TARGET_CONCURRENCY: &str = "autoscaling.herd.dev/target-concurrency";
/// The most replicas scaling out by concurrency goes to (Knative's `max-scale`).
pub const MAX_SCALE: &str = "autoscaling.herd.dev/max-scale";
/// On a Service, written by the scale-to-zero controller: the Deployment behind it that scales to zero.
/// A proxy holds a connection to such a Service while it has no endpoint instead of closing it.
pub const ACTIVATOR: &str = "autoscaling.herd.dev/activator";
/// On a node's Lease (`kube-node-lease/<node>`), written by that node: the traffic its proxy and guests
/// sent to each Service, as JSON `{"<namespace>/<service>": {"connections": n, "open": n, "held": n}}`.
pub const ACTIVITY: &str = "autoscaling.herd.dev/activity";

/// The default of [`TARGET_CONCURRENCY`] (Knative's `container-concurrency-target-default`).
pub const DEFAULT_TARGET_CONCURRENCY: u32 = 100;
/// The longest idle timeout accepted (a day).
pub const MAX_IDLE_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// A Deployment's scale-to-zero settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScaleToZero {
    pub idle_timeout: Duration,
    pub target_concurrency: u32,
    /// `None`: no limit.
    pub max_scale: Option<u32>,
}

impl ScaleToZero {
    /// The settings in `annotations`: `Ok(None)` when the object did not opt in (no annotation of
    /// [`PREFIX`]), every problem as a [`Cause`] otherwise.
    ///
    /// # Errors
    /// A value that does not parse or is out of range, a setting without [`IDLE_TIMEOUT`], or an
    /// unknown annotation of the prefix.
    pub fn from_annotations(
        annotations: Option<&BTreeMap<String, String>>,
    ) -> Result<Option<Self>, Vec<Cause>> {
        let Some(annotations) = annotations else {
            return Ok(None);
        };
        let ours: Vec<(&String, &String)> = annotations
            .iter()
            .filter(|(k, _)| k.starts_with(PREFIX))
            .collect();
        if ours.is_empty() {
            return Ok(None);
        }
        let mut causes = Vec::new();
        let mut settings = Self {
            idle_timeout: Duration::ZERO,
            target_concurrency: DEFAULT_TARGET_CONCURRENCY,
            max_scale: None,
        };
        let mut opted_in = false;
        for (key, value) in ours {
            let field = format!("metadata.annotations[{key}]");
            match key.as_str() {
                IDLE_TIMEOUT => match crate::duration::parse(value) {
                    Some(d) if d >= Duration::from_millis(1) && d <= MAX_IDLE_TIMEOUT => {
                        settings.idle_timeout = d;
                        opted_in = true;
                    }
                    _ => causes.push(Cause::invalid(
                        field,
                        value.as_str(),
                        "must be a duration between 1ms and 24h, such as 30s, 500ms or 1m30s",
                    )),
                },
                TARGET_CONCURRENCY => match value.parse::<u32>() {
                    Ok(n) if n >= 1 => settings.target_concurrency = n,
                    _ => causes.push(Cause::invalid(
                        field,
                        value.as_str(),
                        "must be an integer greater than or equal to 1",
                    )),
                },
                MAX_SCALE => match value.parse::<u32>() {
                    Ok(n) if n >= 1 => settings.max_scale = Some(n),
                    _ => causes.push(Cause::invalid(
                        field,
                        value.as_str(),
                        "must be an integer greater than or equal to 1",
                    )),
                },
                _ => causes.push(Cause::not_supported(
                    field,
                    key,
                    &[IDLE_TIMEOUT, MAX_SCALE, TARGET_CONCURRENCY],
                )),
            }
        }
        if !opted_in && causes.is_empty() {
            causes.push(Cause {
                reason: "FieldValueRequired",
                field: format!("metadata.annotations[{IDLE_TIMEOUT}]"),
                message: format!(
                    "Required value: {TARGET_CONCURRENCY} and {MAX_SCALE} apply only to a Deployment that scales to zero"
                ),
            });
        }
        if causes.is_empty() {
            Ok(Some(settings))
        } else {
            Err(causes)
        }
    }

    /// The replicas `concurrency` open connections need: at least one, at most [`Self::max_scale`].
    pub fn replicas_for(&self, concurrency: u64) -> i32 {
        let wanted = concurrency
            .div_ceil(u64::from(self.target_concurrency))
            .max(1);
        let capped = self
            .max_scale
            .map_or(wanted, |max| wanted.min(u64::from(max)));
        i32::try_from(capped).unwrap_or(i32::MAX)
    }
}

/// What a node publishes for one Service in [`ACTIVITY`]: connections since the node started, and
/// connections open and held (waiting for a first endpoint) now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Counts {
    pub connections: u64,
    pub open: u64,
    pub held: u64,
}

impl Counts {
    /// No traffic at all.
    pub fn is_zero(self) -> bool {
        self == Self::default()
    }
}

/// A node's [`ACTIVITY`] annotation: counts by `namespace/service`; `None` if it does not parse.
pub fn parse_activity(annotation: &str) -> Option<BTreeMap<String, Counts>> {
    serde_json::from_str(annotation).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn annotations(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect()
    }

    #[test]
    fn settings_come_from_the_annotations() {
        assert_eq!(ScaleToZero::from_annotations(None), Ok(None));
        let other = annotations(&[("deployment.kubernetes.io/revision", "1")]);
        assert_eq!(ScaleToZero::from_annotations(Some(&other)), Ok(None));
        let all = annotations(&[
            (IDLE_TIMEOUT, "2s"),
            (TARGET_CONCURRENCY, "4"),
            (MAX_SCALE, "3"),
        ]);
        let settings = ScaleToZero::from_annotations(Some(&all))
            .expect("valid")
            .expect("opted in");
        assert_eq!(
            settings,
            ScaleToZero {
                idle_timeout: Duration::from_secs(2),
                target_concurrency: 4,
                max_scale: Some(3)
            }
        );
        assert_eq!(settings.replicas_for(0), 1);
        assert_eq!(settings.replicas_for(4), 1);
        assert_eq!(settings.replicas_for(5), 2);
        assert_eq!(settings.replicas_for(100), 3);
    }

    #[test]
    fn bad_values_name_their_annotation() {
        let bad = annotations(&[
            (IDLE_TIMEOUT, "soon"),
            (TARGET_CONCURRENCY, "0"),
            (MAX_SCALE, "-2"),
            ("autoscaling.herd.dev/min-scale", "1"),
        ]);
        let causes = ScaleToZero::from_annotations(Some(&bad)).expect_err("invalid");
        let fields: Vec<&str> = causes.iter().map(|c| c.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "metadata.annotations[autoscaling.herd.dev/idle-timeout]",
                "metadata.annotations[autoscaling.herd.dev/max-scale]",
                "metadata.annotations[autoscaling.herd.dev/min-scale]",
                "metadata.annotations[autoscaling.herd.dev/target-concurrency]",
            ]
        );
        assert_eq!(
            causes[0].message,
            "Invalid value: \"soon\": must be a duration between 1ms and 24h, such as 30s, 500ms or 1m30s"
        );
        let without_timeout = annotations(&[(MAX_SCALE, "2")]);
        let causes = ScaleToZero::from_annotations(Some(&without_timeout)).expect_err("invalid");
        assert_eq!(
            causes[0].field,
            "metadata.annotations[autoscaling.herd.dev/idle-timeout]"
        );
    }
}
