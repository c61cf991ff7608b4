//! The Pod Security Standards' checks, one function per check of k8s.io/pod-security-admission/policy
//! (`check_*.go`), with kube's reasons and details word for word.
//!
//! Each check sees the pod's metadata and spec and the policy version's minor (`latest` is the newest
//! minor that changed a check), and answers `None` (allowed) or the [`Violation`].

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EphemeralContainer, Lifecycle, PodSpec, Probe, SecurityContext,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::{Level, Violation};

mod baseline;
mod restricted;

/// The newest minor version in which a check changed: `latest` evaluates as this version, and so does any
/// newer `v1.x` (as kube's evaluator clamps to its newest check).
pub(super) const MAX_MINOR: u32 = 37;

type CheckFn = fn(&ObjectMeta, &PodSpec, u32) -> Option<Violation>;

/// One check of kube's registry.
pub(super) struct Check {
    pub id: &'static str,
    pub level: Level,
    /// The first minor version (of `v1.x`) the check exists in.
    pub since: u32,
    /// The baseline check this restricted check replaces (from `since` on).
    pub overrides: Option<&'static str>,
    pub run: CheckFn,
}

/// Every check, in kube's evaluation order: baseline IDs sorted, then restricted IDs sorted. The order is
/// the order of the reasons in a message.
pub(super) const CHECKS: &[Check] = &[
    baseline_check("appArmorProfile", 0, baseline::app_armor_profile),
    baseline_check("capabilities_baseline", 0, baseline::capabilities_baseline),
    baseline_check("hostNamespaces", 0, baseline::host_namespaces),
    baseline_check("hostPathVolumes", 0, baseline::host_path_volumes),
    baseline_check("hostPorts", 0, baseline::host_ports),
    baseline_check(
        "hostProbesAndHostLifecycle",
        34,
        baseline::host_probes_and_lifecycle,
    ),
    baseline_check("privileged", 0, baseline::privileged),
    baseline_check("procMount", 0, baseline::proc_mount_baseline),
    baseline_check("seLinuxOptions", 0, baseline::se_linux_options),
    baseline_check("seccompProfile_baseline", 0, baseline::seccomp_baseline),
    baseline_check("sysctls", 0, baseline::sysctls),
    baseline_check("windowsHostProcess", 0, baseline::windows_host_process),
    restricted_check(
        "allowPrivilegeEscalation",
        8,
        None,
        restricted::allow_privilege_escalation,
    ),
    restricted_check(
        "capabilities_restricted",
        22,
        Some("capabilities_baseline"),
        restricted::capabilities_restricted,
    ),
    restricted_check(
        "procMount_restricted",
        35,
        Some("procMount"),
        restricted::proc_mount_restricted,
    ),
    restricted_check(
        "restrictedVolumes",
        0,
        Some("hostPathVolumes"),
        restricted::restricted_volumes,
    ),
    restricted_check("runAsNonRoot", 0, None, restricted::run_as_non_root),
    restricted_check("runAsUser", 23, None, restricted::run_as_user),
    restricted_check(
        "seccompProfile_restricted",
        19,
        Some("seccompProfile_baseline"),
        restricted::seccomp_restricted,
    ),
];

const fn baseline_check(id: &'static str, since: u32, run: CheckFn) -> Check {
    Check {
        id,
        level: Level::Baseline,
        since,
        overrides: None,
        run,
    }
}

const fn restricted_check(
    id: &'static str,
    since: u32,
    overrides: Option<&'static str>,
    run: CheckFn,
) -> Check {
    Check {
        id,
        level: Level::Restricted,
        since,
        overrides,
        run,
    }
}

/// The fields of a container (init, regular or ephemeral) the checks read: kube's `visitContainers`.
struct Ctr<'a> {
    name: &'a str,
    sc: Option<&'a SecurityContext>,
    ports: &'a [ContainerPort],
    probes: [Option<&'a Probe>; 3],
    lifecycle: Option<&'a Lifecycle>,
}

impl<'a> Ctr<'a> {
    fn of(c: &'a Container) -> Self {
        Self {
            name: &c.name,
            sc: c.security_context.as_ref(),
            ports: c.ports.as_deref().unwrap_or_default(),
            probes: [
                c.liveness_probe.as_ref(),
                c.readiness_probe.as_ref(),
                c.startup_probe.as_ref(),
            ],
            lifecycle: c.lifecycle.as_ref(),
        }
    }

    fn of_ephemeral(c: &'a EphemeralContainer) -> Self {
        Self {
            name: &c.name,
            sc: c.security_context.as_ref(),
            ports: c.ports.as_deref().unwrap_or_default(),
            probes: [
                c.liveness_probe.as_ref(),
                c.readiness_probe.as_ref(),
                c.startup_probe.as_ref(),
            ],
            lifecycle: c.lifecycle.as_ref(),
        }
    }
}

/// Init containers, containers, ephemeral containers: kube's order.
fn containers(spec: &PodSpec) -> impl Iterator<Item = Ctr<'_>> {
    let init = spec.init_containers.iter().flatten().map(Ctr::of);
    let main = spec.containers.iter().map(Ctr::of);
    let ephemeral = spec
        .ephemeral_containers
        .iter()
        .flatten()
        .map(Ctr::of_ephemeral);
    init.chain(main).chain(ephemeral)
}

/// Names of the containers for which `bad` holds.
fn bad_containers(spec: &PodSpec, mut bad: impl FnMut(&Ctr<'_>) -> bool) -> Vec<String> {
    containers(spec)
        .filter(|c| bad(c))
        .map(|c| c.name.to_owned())
        .collect()
}

/// Go's `joinQuote`: `"a", "b"`.
fn join_quote<S: AsRef<str>>(items: impl IntoIterator<Item = S>) -> String {
    let quoted: Vec<String> = items
        .into_iter()
        .map(|s| format!("\"{}\"", s.as_ref()))
        .collect();
    quoted.join(", ")
}

fn pluralize(singular: &'static str, plural: &'static str, count: usize) -> &'static str {
    if count == 1 { singular } else { plural }
}

/// `container "a"` / `containers "a", "b"`.
fn containers_phrase(names: &[String]) -> String {
    format!(
        "{} {}",
        pluralize("container", "containers", names.len()),
        join_quote(names)
    )
}

fn violation(reason: impl Into<String>, detail: impl Into<String>) -> Option<Violation> {
    Some(Violation {
        reason: reason.into(),
        detail: detail.into(),
    })
}

fn is_windows(spec: &PodSpec) -> bool {
    spec.os.as_ref().is_some_and(|os| os.name == "windows")
}

/// `hostUsers: false`: the pod runs in a user namespace, which relaxes some checks from v1.35.
fn in_user_namespace(spec: &PodSpec) -> bool {
    spec.host_users == Some(false)
}

fn proc_mount(spec: &PodSpec) -> Option<Violation> {
    let mut types = BTreeSet::new();
    let bad = bad_containers(spec, |c| match c.sc.and_then(|sc| sc.proc_mount.as_ref()) {
        Some(t) if t != "Default" => {
            types.insert(t.clone());
            true
        }
        _ => false,
    });
    if bad.is_empty() {
        return None;
    }
    violation(
        "procMount",
        format!(
            "{} must not set securityContext.procMount to {}",
            containers_phrase(&bad),
            join_quote(&types)
        ),
    )
}

fn valid_seccomp(t: &str) -> bool {
    t == "Localhost" || t == "RuntimeDefault"
}

/// The explicit bad settings of seccomp (pod and containers) and, for restricted, the containers that set
/// nothing while the pod sets nothing valid either.
fn seccomp_fields(spec: &PodSpec, required: bool) -> Option<Violation> {
    let mut setters = Vec::new();
    let mut values = BTreeSet::new();
    let mut pod_set = false;
    if let Some(p) = spec
        .security_context
        .as_ref()
        .and_then(|sc| sc.seccomp_profile.as_ref())
    {
        if valid_seccomp(&p.type_) {
            pod_set = true;
        } else {
            setters.push("pod".to_owned());
            values.insert(p.type_.clone());
        }
    }
    let mut explicit = Vec::new();
    let mut implicit = Vec::new();
    for c in containers(spec) {
        match c.sc.and_then(|sc| sc.seccomp_profile.as_ref()) {
            Some(p) if !valid_seccomp(&p.type_) => {
                explicit.push(c.name.to_owned());
                values.insert(p.type_.clone());
            }
            Some(_) => {}
            None if !pod_set => implicit.push(c.name.to_owned()),
            None => {}
        }
    }
    if !explicit.is_empty() {
        setters.push(containers_phrase(&explicit));
    }
    if !setters.is_empty() {
        return violation(
            "seccompProfile",
            format!(
                "{} must not set securityContext.seccompProfile.type to {}",
                setters.join(" and "),
                join_quote(&values)
            ),
        );
    }
    if required && !implicit.is_empty() {
        return violation(
            "seccompProfile",
            format!(
                "pod or {} must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\"",
                containers_phrase(&implicit)
            ),
        );
    }
    None
}

/// Go's `%q` for the strings that appear here: a double-quoted string with `"` and `\` escaped and
/// control characters as Go escapes them.
fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
