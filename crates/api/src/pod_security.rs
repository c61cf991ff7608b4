//! Pod Security admission: kube's Pod Security Standards (`privileged`, `baseline`, `restricted`) as the
//! `pod-security.kubernetes.io/{enforce,audit,warn}[-version]` namespace labels apply them
//! (k8s.io/pod-security-admission).
//!
//! Pure: the API server hands in the namespace's labels and the pod (or the pod template of a workload) and
//! gets back the decision with kube's exact wording:
//!
//! - [`Policy::from_labels`] reads the labels (an invalid level enforces `restricted`, audits and warns
//!   `privileged`, as kube fails closed for enforce and open for the others); [`validate_namespace_labels`]
//!   is the 422 kube answers when a Namespace is created (or its labels changed) with such a value.
//! - [`check`] runs one level's checks: the [`Violation`]s, in kube's order.
//! - [`evaluate_pod`] applies the whole policy to a pod: enforce (a 403 `pods "x" is forbidden: violates
//!   PodSecurity "baseline:latest": …`), then the `would violate PodSecurity …` warning and audit text.
//! - [`evaluate_template`] does the same for a workload's pod template ([`pod_template`]): kube warns and
//!   audits there but never enforces: the pods the controller creates are what enforce sees.
//! - [`namespace_pod_warnings`]: the warnings kube returns when a namespace's enforce level is tightened.
//! - [`AdmissionConfig`]: the plugin's configuration (defaults for namespaces without labels, exemptions);
//!   herd's default enforces `baseline`.

mod checks;
mod config;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

use k8s_openapi::api::core::v1::PodSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::Value;

use crate::validation::Cause;

pub use config::AdmissionConfig;

/// The label prefix of the Pod Security labels.
pub const LABEL_PREFIX: &str = "pod-security.kubernetes.io/";
pub const ENFORCE_LABEL: &str = "pod-security.kubernetes.io/enforce";
pub const ENFORCE_VERSION_LABEL: &str = "pod-security.kubernetes.io/enforce-version";
pub const AUDIT_LABEL: &str = "pod-security.kubernetes.io/audit";
pub const AUDIT_VERSION_LABEL: &str = "pod-security.kubernetes.io/audit-version";
pub const WARN_LABEL: &str = "pod-security.kubernetes.io/warn";
pub const WARN_VERSION_LABEL: &str = "pod-security.kubernetes.io/warn-version";

/// How many existing pods kube checks when a namespace's enforce level is tightened.
pub const NAMESPACE_MAX_PODS_TO_CHECK: usize = 3000;

/// A Pod Security Standard, least strict first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    Privileged,
    Baseline,
    Restricted,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Privileged => "privileged",
            Self::Baseline => "baseline",
            Self::Restricted => "restricted",
        }
    }

    /// kube's `ParseLevel`.
    ///
    /// # Errors
    /// kube's message for a value that is not a level.
    pub fn parse(s: &str) -> Result<Self, &'static str> {
        match s {
            "privileged" => Ok(Self::Privileged),
            "baseline" => Ok(Self::Baseline),
            "restricted" => Ok(Self::Restricted),
            _ => Err("must be one of privileged, baseline, restricted"),
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A policy version: `latest` or `v1.x`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Version {
    Latest,
    /// `v1.x`, holding x.
    V1(u32),
}

impl Version {
    /// kube's `ParseVersion`: `latest` or `v1.x` (x without leading zeros).
    ///
    /// # Errors
    /// kube's message for anything else.
    pub fn parse(s: &str) -> Result<Self, &'static str> {
        const BAD: &str = r#"must be "latest" or "v1.x""#;
        if s == "latest" {
            return Ok(Self::Latest);
        }
        let minor = s.strip_prefix("v1.").ok_or(BAD)?;
        let canonical = !minor.is_empty()
            && minor.bytes().all(|b| b.is_ascii_digit())
            && (minor == "0" || !minor.starts_with('0'));
        if !canonical {
            return Err(BAD);
        }
        minor.parse().map(Self::V1).map_err(|_| BAD)
    }

    /// The minor version whose checks apply: `latest` and versions newer than any check are the newest.
    fn effective_minor(self) -> u32 {
        match self {
            Self::Latest => checks::MAX_MINOR,
            Self::V1(m) => m.min(checks::MAX_MINOR),
        }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Latest => f.write_str("latest"),
            Self::V1(m) => write!(f, "v1.{m}"),
        }
    }
}

/// A level at a version, written `baseline:latest` as in kube's messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LevelVersion {
    pub level: Level,
    pub version: Version,
}

impl LevelVersion {
    pub const PRIVILEGED: Self = Self::latest(Level::Privileged);

    pub const fn latest(level: Level) -> Self {
        Self {
            level,
            version: Version::Latest,
        }
    }
}

impl fmt::Display for LevelVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.level, self.version)
    }
}

/// A namespace's policy: what is enforced, audited and warned about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub enforce: LevelVersion,
    pub audit: LevelVersion,
    pub warn: LevelVersion,
}

impl Default for Policy {
    /// kube-apiserver's built-in default (no `--admission-control-config-file`): privileged, latest, for
    /// all three modes.
    fn default() -> Self {
        Self {
            enforce: LevelVersion::PRIVILEGED,
            audit: LevelVersion::PRIVILEGED,
            warn: LevelVersion::PRIVILEGED,
        }
    }
}

/// A label holding a value kube rejects: `field` is `metadata.labels[<label>]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelError {
    pub label: &'static str,
    pub value: String,
    pub message: &'static str,
}

impl LabelError {
    /// The 422 cause kube answers with.
    pub fn cause(&self) -> Cause {
        Cause::invalid(
            format!("metadata.labels[{}]", self.label),
            self.value.as_str(),
            self.message,
        )
    }
}

impl Policy {
    /// kube's `PolicyToEvaluate`: the namespace's labels over `defaults`. A usable policy comes back even
    /// with errors: an invalid enforce level enforces `restricted`, an invalid audit or warn level is
    /// `privileged`, an invalid version is `latest`. Without a warn label, warn follows an enforce label that
    /// is stricter than it.
    pub fn from_labels(
        labels: Option<&BTreeMap<String, String>>,
        defaults: &Policy,
    ) -> (Policy, Vec<LabelError>) {
        let mut p = *defaults;
        let mut errors = Vec::new();
        let Some(labels) = labels.filter(|l| !l.is_empty()) else {
            return (p, errors);
        };
        let mut err = |label: &'static str, value: &str, message: &'static str| {
            errors.push(LabelError {
                label,
                value: value.to_owned(),
                message,
            });
        };
        let get = |label: &str| labels.get(label).map(String::as_str);
        let mut has_enforce_level = false;
        if let Some(v) = get(ENFORCE_LABEL) {
            match Level::parse(v) {
                Ok(l) => {
                    p.enforce.level = l;
                    has_enforce_level = true;
                }
                Err(m) => {
                    p.enforce.level = Level::Restricted;
                    err(ENFORCE_LABEL, v, m);
                }
            }
        }
        let mut version = |label: &'static str, slot: &mut Version| {
            if let Some(v) = get(label) {
                *slot = Version::parse(v).unwrap_or_else(|m| {
                    err(label, v, m);
                    Version::Latest
                });
            }
        };
        version(ENFORCE_VERSION_LABEL, &mut p.enforce.version);
        version(AUDIT_VERSION_LABEL, &mut p.audit.version);
        let has_warn_version = get(WARN_VERSION_LABEL).is_some();
        version(WARN_VERSION_LABEL, &mut p.warn.version);
        for (label, slot) in [
            (AUDIT_LABEL, &mut p.audit.level),
            (WARN_LABEL, &mut p.warn.level),
        ] {
            if let Some(v) = get(label) {
                *slot = Level::parse(v).unwrap_or_else(|m| {
                    err(label, v, m);
                    Level::Privileged
                });
            }
        }
        // kube reports the errors in label order: enforce, enforce-version, audit, audit-version, warn, warn-version.
        let rank = |l: &str| {
            [
                ENFORCE_LABEL,
                ENFORCE_VERSION_LABEL,
                AUDIT_LABEL,
                AUDIT_VERSION_LABEL,
                WARN_LABEL,
                WARN_VERSION_LABEL,
            ]
            .iter()
            .position(|x| *x == l)
        };
        errors.sort_by_key(|e| rank(e.label));
        if get(WARN_LABEL).is_none() && has_enforce_level && p.enforce.level > p.warn.level {
            p.warn.level = p.enforce.level;
            if !has_warn_version {
                p.warn.version = p.enforce.version;
            }
        }
        (p, errors)
    }

    /// All three modes privileged: nothing to evaluate.
    pub fn fully_privileged(&self) -> bool {
        [self.enforce, self.audit, self.warn]
            .iter()
            .all(|lv| lv.level == Level::Privileged)
    }
}

/// The causes of a 422 for a Namespace's Pod Security labels, as kube's admission answers: on create any
/// invalid label; on update (`old` = the stored labels) only if the invalid labels changed.
pub fn validate_namespace_labels(
    labels: Option<&BTreeMap<String, String>>,
    old: Option<Option<&BTreeMap<String, String>>>,
) -> Vec<Cause> {
    let (_, errors) = Policy::from_labels(labels, &Policy::default());
    if let Some(old) = old {
        let (_, old_errors) = Policy::from_labels(old, &Policy::default());
        if !old_errors.is_empty() && old_errors == errors {
            return Vec::new();
        }
    }
    errors.iter().map(LabelError::cause).collect()
}

/// One failed check: kube's `ForbiddenReason` and `ForbiddenDetail`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// e.g. `hostPath volumes`.
    pub reason: String,
    /// e.g. `volume "data"`.
    pub detail: String,
}

/// The checks of `lv` (none for `privileged`) that the pod fails, in kube's order.
pub fn check(lv: LevelVersion, meta: &ObjectMeta, spec: &PodSpec) -> Vec<Violation> {
    if lv.level == Level::Privileged {
        return Vec::new();
    }
    let minor = lv.version.effective_minor();
    let active = |c: &checks::Check| c.level <= lv.level && c.since <= minor;
    let overridden: HashSet<&str> = checks::CHECKS
        .iter()
        .filter(|c| active(c))
        .filter_map(|c| c.overrides)
        .collect();
    checks::CHECKS
        .iter()
        .filter(|c| active(c) && !overridden.contains(c.id))
        .filter_map(|c| (c.run)(meta, spec, minor))
        .collect()
}

/// kube's `ForbiddenDetail` of several violations: `reason (detail), reason (detail)`.
pub fn violations_text(violations: &[Violation]) -> String {
    let parts: Vec<String> = violations
        .iter()
        .map(|v| {
            if v.detail.is_empty() {
                v.reason.clone()
            } else {
                format!("{} ({})", v.reason, v.detail)
            }
        })
        .collect();
    parts.join(", ")
}

/// kube's `ForbiddenReason` of several violations: the reasons alone, joined with `, `.
pub fn reasons_text(violations: &[Violation]) -> String {
    let reasons: Vec<&str> = violations.iter().map(|v| v.reason.as_str()).collect();
    reasons.join(", ")
}

/// What Pod Security admission answers for one request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decision {
    /// The message of the 403 Forbidden Status when enforce refuses the pod, e.g.
    /// `pods "x" is forbidden: violates PodSecurity "baseline:latest": hostPath volumes (volume "data")`.
    pub forbidden: Option<String>,
    /// `Warning` headers (kubectl prints them as `Warning: …`); none when the request is refused.
    pub warnings: Vec<String>,
    /// The `pod-security.kubernetes.io/audit-violations` audit annotation.
    pub audit_violations: Option<String>,
    /// The `pod-security.kubernetes.io/error` audit annotation when the namespace's labels did not parse.
    pub error: Option<String>,
}

fn would_violate(lv: LevelVersion, violations: &[Violation]) -> String {
    format!(
        "would violate PodSecurity \"{lv}\": {}",
        violations_text(violations)
    )
}

/// Pod Security admission of a pod create (or a [`significant_pod_update`]) named `name` in a namespace
/// whose labels gave `policy` and `label_errors`: kube's `ValidatePod` and `EvaluatePod` with enforce.
/// `name` is the name the pod will be stored under: the generated one when the request used `generateName`
/// (kube's refusals name it, as in a ReplicaSet's `FailedCreate` events).
pub fn evaluate_pod(
    policy: &Policy,
    label_errors: &[LabelError],
    name: &str,
    meta: &ObjectMeta,
    spec: &PodSpec,
) -> Decision {
    if label_errors.is_empty() && policy.fully_privileged() {
        return Decision::default();
    }
    evaluate(policy, label_errors, Some(name), meta, spec)
}

/// Pod Security admission of a workload (Deployment, Job, …) whose pod template is `meta`/`spec`: warnings
/// and audit only, never a refusal (kube's `ValidatePodController`).
pub fn evaluate_template(
    policy: &Policy,
    label_errors: &[LabelError],
    meta: &ObjectMeta,
    spec: &PodSpec,
) -> Decision {
    if label_errors.is_empty()
        && policy.warn.level == Level::Privileged
        && policy.audit.level == Level::Privileged
    {
        return Decision::default();
    }
    evaluate(policy, label_errors, None, meta, spec)
}

/// kube's `EvaluatePod`: `enforce_name` is the pod's name when enforce applies.
fn evaluate(
    policy: &Policy,
    label_errors: &[LabelError],
    enforce_name: Option<&str>,
    meta: &ObjectMeta,
    spec: &PodSpec,
) -> Decision {
    let mut decision = Decision::default();
    if !label_errors.is_empty() {
        decision.error = Some(format!(
            "Failed to parse policy: {}",
            aggregate_label_errors(label_errors)
        ));
    }
    let mut cache: HashMap<LevelVersion, Vec<Violation>> = HashMap::new();
    let mut results = |lv: LevelVersion| {
        cache
            .entry(lv)
            .or_insert_with(|| check(lv, meta, spec))
            .clone()
    };
    if let Some(name) = enforce_name {
        let v = results(policy.enforce);
        if !v.is_empty() {
            decision.forbidden = Some(format!(
                "pods \"{name}\" is forbidden: violates PodSecurity \"{}\": {}",
                policy.enforce,
                violations_text(&v)
            ));
        }
    }
    let audit = results(policy.audit);
    if !audit.is_empty() {
        decision.audit_violations = Some(would_violate(policy.audit, &audit));
    }
    if decision.forbidden.is_none() {
        let warn = results(policy.warn);
        if !warn.is_empty() {
            decision.warnings.push(would_violate(policy.warn, &warn));
        }
    }
    decision
}

/// Field errors as Go's `ToAggregate` prints them: one as is, several in brackets.
fn aggregate_label_errors(errors: &[LabelError]) -> String {
    let texts: Vec<String> = errors
        .iter()
        .map(|e| {
            let c = e.cause();
            format!("{}: {}", c.field, c.message)
        })
        .collect();
    match texts.as_slice() {
        [one] => one.clone(),
        many => format!("[{}]", many.join(", ")),
    }
}

/// Pod subresources Pod Security admission ignores (kube's `ignoredPodSubresources`); any other pod
/// subresource write (`ephemeralcontainers`, `resize`, …) is evaluated.
pub fn ignored_pod_subresource(subresource: &str) -> bool {
    matches!(
        subresource,
        "exec" | "attach" | "binding" | "eviction" | "log" | "portforward" | "proxy" | "status"
    )
}

/// Whether a pod update is evaluated at all (kube's `isSignificantPodUpdate`): only a change of containers'
/// images or of the number of (init) containers, or an added or changed ephemeral container, is.
pub fn significant_pod_update(new: &PodSpec, old: &PodSpec) -> bool {
    let init = |s: &PodSpec| s.init_containers.clone().unwrap_or_default();
    let (new_init, old_init) = (init(new), init(old));
    if new.containers.len() != old.containers.len() || new_init.len() != old_init.len() {
        return true;
    }
    let images_differ = |a: &[k8s_openapi::api::core::v1::Container],
                         b: &[k8s_openapi::api::core::v1::Container]| {
        a.iter().zip(b).any(|(a, b)| a.image != b.image)
    };
    if images_differ(&new.containers, &old.containers) || images_differ(&new_init, &old_init) {
        return true;
    }
    let old_ephemeral = old.ephemeral_containers.as_deref().unwrap_or_default();
    new.ephemeral_containers.iter().flatten().any(|c| {
        old_ephemeral
            .iter()
            .find(|o| o.name == c.name)
            .is_none_or(|o| o.image != c.image)
    })
}

/// The pod metadata and spec at `pointer` (the kind strategy's `POD_TEMPLATE`) of `obj`, or `None` when the object
/// has none there (a ReplicationController without a template: nothing to evaluate) or it does not decode.
pub fn pod_template(obj: &Value, pointer: &str) -> Option<(ObjectMeta, PodSpec)> {
    let template = obj.pointer(pointer)?;
    let meta = match template.get("metadata") {
        Some(m) => serde_json::from_value(m.clone()).ok()?,
        None => ObjectMeta::default(),
    };
    let spec = serde_json::from_value(template.get("spec")?.clone()).ok()?;
    Some((meta, spec))
}

/// One existing pod of a namespace, for [`namespace_pod_warnings`].
pub struct ExistingPod<'a> {
    pub name: &'a str,
    /// The uid of the pod's controller (its `ownerReferences` entry with `controller: true`).
    pub controller_uid: Option<&'a str>,
    pub meta: &'a ObjectMeta,
    pub spec: &'a PodSpec,
}

/// The warnings kube answers a Namespace update that tightens its enforce level to `enforce` (kube's
/// `EvaluatePodsInNamespace`, without its time limit): one line naming the namespace if any existing pod
/// violates it, then one line per distinct set of reasons, prefixed with the first such pod's name
/// (`web-1 (and 2 other pods): hostPath volumes`). Pods of a controller already checked are checked last;
/// at most [`NAMESPACE_MAX_PODS_TO_CHECK`].
pub fn namespace_pod_warnings(
    namespace: &str,
    enforce: LevelVersion,
    pods: &[ExistingPod<'_>],
) -> Vec<String> {
    let mut seen_controllers = HashSet::new();
    let (mut first, mut later) = (Vec::new(), Vec::new());
    for pod in pods {
        match pod.controller_uid {
            Some(uid) if !seen_controllers.insert(uid) => later.push(pod),
            _ => first.push(pod),
        }
    }
    first.extend(later);
    let total = first.len();
    first.truncate(NAMESPACE_MAX_PODS_TO_CHECK);
    // reasons -> (lexically first pod name, number of pods), in the order first seen.
    let mut order: Vec<String> = Vec::new();
    let mut counts: HashMap<String, (&str, usize)> = HashMap::new();
    for pod in &first {
        let v = check(enforce, pod.meta, pod.spec);
        if v.is_empty() {
            continue;
        }
        let reasons = reasons_text(&v);
        let entry = counts.entry(reasons.clone()).or_insert_with(|| {
            order.push(reasons);
            (pod.name, 0)
        });
        if pod.name < entry.0 {
            entry.0 = pod.name;
        }
        entry.1 += 1;
    }
    let mut warnings = Vec::new();
    if first.len() < total {
        warnings.push(format!(
            "new PodSecurity enforce level only checked against the first {} of {total} existing pods",
            first.len()
        ));
    }
    if !order.is_empty() {
        warnings.push(format!(
            "existing pods in namespace \"{namespace}\" violate the new PodSecurity enforce level \"{enforce}\""
        ));
    }
    let mut pod_warnings: Vec<String> = order
        .into_iter()
        .map(|reasons| {
            let (name, count) = counts[&reasons];
            match count {
                1 => format!("{name}: {reasons}"),
                2 => format!("{name} (and 1 other pod): {reasons}"),
                n => format!("{name} (and {} other pods): {reasons}", n - 1),
            }
        })
        .collect();
    pod_warnings.sort();
    warnings.extend(pod_warnings);
    warnings
}

/// Whether a Namespace update needs [`namespace_pod_warnings`] (kube's `ValidateNamespace`): only when the
/// new enforce level is not privileged and is stricter than, or at another version from, the old one.
pub fn namespace_update_needs_pod_check(new: &Policy, old: &Policy) -> bool {
    if new.enforce == old.enforce || new.enforce.level == Level::Privileged {
        return false;
    }
    !(new.enforce.version == old.enforce.version && new.enforce.level <= old.enforce.level)
}
