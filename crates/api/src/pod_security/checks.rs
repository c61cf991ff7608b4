//! The Pod Security Standards' checks, one function per check of k8s.io/pod-security-admission/policy
//! (`check_*.go`), with kube's reasons and details word for word.
//!
//! Each check sees the pod's metadata and spec and the policy version's minor (`latest` is the newest
//! minor that changed a check), and answers `None` (allowed) or the [`Violation`].

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EphemeralContainer, Lifecycle, LifecycleHandler, PodSpec, Probe,
    SELinuxOptions, SecurityContext,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::{Level, Violation};

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
    baseline("appArmorProfile", 0, app_armor_profile),
    baseline("capabilities_baseline", 0, capabilities_baseline),
    baseline("hostNamespaces", 0, host_namespaces),
    baseline("hostPathVolumes", 0, host_path_volumes),
    baseline("hostPorts", 0, host_ports),
    baseline("hostProbesAndHostLifecycle", 34, host_probes_and_lifecycle),
    baseline("privileged", 0, privileged),
    baseline("procMount", 0, proc_mount_baseline),
    baseline("seLinuxOptions", 0, se_linux_options),
    baseline("seccompProfile_baseline", 0, seccomp_baseline),
    baseline("sysctls", 0, sysctls),
    baseline("windowsHostProcess", 0, windows_host_process),
    restricted(
        "allowPrivilegeEscalation",
        8,
        None,
        allow_privilege_escalation,
    ),
    restricted(
        "capabilities_restricted",
        22,
        Some("capabilities_baseline"),
        capabilities_restricted,
    ),
    restricted(
        "procMount_restricted",
        35,
        Some("procMount"),
        proc_mount_restricted,
    ),
    restricted(
        "restrictedVolumes",
        0,
        Some("hostPathVolumes"),
        restricted_volumes,
    ),
    restricted("runAsNonRoot", 0, None, run_as_non_root),
    restricted("runAsUser", 23, None, run_as_user),
    restricted(
        "seccompProfile_restricted",
        19,
        Some("seccompProfile_baseline"),
        seccomp_restricted,
    ),
];

const fn baseline(id: &'static str, since: u32, run: CheckFn) -> Check {
    Check {
        id,
        level: Level::Baseline,
        since,
        overrides: None,
        run,
    }
}

const fn restricted(
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

fn app_armor_profile(meta: &ObjectMeta, spec: &PodSpec, _: u32) -> Option<Violation> {
    let allowed = |t: &str| t == "RuntimeDefault" || t == "Localhost";
    let mut setters = Vec::new();
    let mut values = BTreeSet::new();
    if let Some(p) = spec
        .security_context
        .as_ref()
        .and_then(|sc| sc.app_armor_profile.as_ref())
        && !allowed(&p.type_)
    {
        setters.push("pod".to_owned());
        values.insert(p.type_.clone());
    }
    let bad = bad_containers(spec, |c| {
        match c.sc.and_then(|sc| sc.app_armor_profile.as_ref()) {
            Some(p) if !allowed(&p.type_) => {
                values.insert(p.type_.clone());
                true
            }
            _ => false,
        }
    });
    if !bad.is_empty() {
        setters.push(containers_phrase(&bad));
    }
    let mut values: Vec<String> = values.into_iter().collect();
    let mut annotations: Vec<String> = meta
        .annotations
        .iter()
        .flatten()
        .filter(|(k, v)| {
            k.starts_with("container.apparmor.security.beta.kubernetes.io/")
                && !(v.is_empty() || v.as_str() == "runtime/default" || v.starts_with("localhost/"))
        })
        .map(|(k, v)| format!("{k}={}", go_quote(v)))
        .collect();
    if !annotations.is_empty() {
        annotations.sort();
        setters.push(pluralize("annotation", "annotations", annotations.len()).to_owned());
        values.extend(annotations);
    }
    if setters.is_empty() {
        return None;
    }
    violation(
        pluralize(
            "forbidden AppArmor profile",
            "forbidden AppArmor profiles",
            values.len(),
        ),
        format!(
            "{} must not set AppArmor profile type to {}",
            setters.join(" and "),
            join_quote(&values)
        ),
    )
}

const BASELINE_CAPABILITIES: &[&str] = &[
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];

fn capabilities_baseline(_: &ObjectMeta, spec: &PodSpec, _: u32) -> Option<Violation> {
    let mut extra = BTreeSet::new();
    let bad = bad_containers(spec, |c| {
        let added =
            c.sc.and_then(|sc| sc.capabilities.as_ref())
                .and_then(|caps| caps.add.as_ref());
        let mut valid = true;
        for cap in added.into_iter().flatten() {
            if !BASELINE_CAPABILITIES.contains(&cap.as_str()) {
                valid = false;
                extra.insert(cap.clone());
            }
        }
        !valid
    });
    if bad.is_empty() {
        return None;
    }
    violation(
        "non-default capabilities",
        format!(
            "{} must not include {} in securityContext.capabilities.add",
            containers_phrase(&bad),
            join_quote(&extra)
        ),
    )
}

fn host_namespaces(_: &ObjectMeta, spec: &PodSpec, _: u32) -> Option<Violation> {
    let mut shared = Vec::new();
    if spec.host_network == Some(true) {
        shared.push("hostNetwork=true");
    }
    if spec.host_pid == Some(true) {
        shared.push("hostPID=true");
    }
    if spec.host_ipc == Some(true) {
        shared.push("hostIPC=true");
    }
    if shared.is_empty() {
        return None;
    }
    violation("host namespaces", shared.join(", "))
}

fn host_path_volumes(_: &ObjectMeta, spec: &PodSpec, _: u32) -> Option<Violation> {
    let names: Vec<&str> = spec
        .volumes
        .iter()
        .flatten()
        .filter(|v| v.host_path.is_some())
        .map(|v| v.name.as_str())
        .collect();
    if names.is_empty() {
        return None;
    }
    violation(
        "hostPath volumes",
        format!(
            "{} {}",
            pluralize("volume", "volumes", names.len()),
            join_quote(&names)
        ),
    )
}

fn host_ports(_: &ObjectMeta, spec: &PodSpec, _: u32) -> Option<Violation> {
    // kube collects the ports as strings in a sorted set: "10000" sorts before "8080".
    let mut ports = BTreeSet::new();
    let bad = bad_containers(spec, |c| {
        let mut valid = true;
        for p in c.ports {
            if let Some(hp) = p.host_port.filter(|hp| *hp != 0) {
                valid = false;
                ports.insert(hp.to_string());
            }
        }
        !valid
    });
    if bad.is_empty() {
        return None;
    }
    violation(
        "hostPort",
        format!(
            "{} {} {} {}",
            containers_phrase(&bad),
            pluralize("uses", "use", bad.len()),
            pluralize("hostPort", "hostPorts", ports.len()),
            ports.into_iter().collect::<Vec<_>>().join(", ")
        ),
    )
}

fn host_probes_and_lifecycle(_: &ObjectMeta, spec: &PodSpec, _: u32) -> Option<Violation> {
    fn probe_hosts(p: Option<&Probe>, out: &mut Vec<String>) {
        let Some(p) = p else { return };
        let http = p.http_get.as_ref().and_then(|h| h.host.as_ref());
        let tcp = p.tcp_socket.as_ref().and_then(|t| t.host.as_ref());
        out.extend(
            http.into_iter()
                .chain(tcp)
                .filter(|h| !h.is_empty())
                .cloned(),
        );
    }
    fn handler_hosts(h: Option<&LifecycleHandler>, out: &mut Vec<String>) {
        let Some(h) = h else { return };
        let http = h.http_get.as_ref().and_then(|h| h.host.as_ref());
        let tcp = h.tcp_socket.as_ref().and_then(|t| t.host.as_ref());
        out.extend(
            http.into_iter()
                .chain(tcp)
                .filter(|h| !h.is_empty())
                .cloned(),
        );
    }
    let mut bad = BTreeSet::new();
    let mut hosts = BTreeSet::new();
    for c in containers(spec) {
        let mut found = Vec::new();
        for p in c.probes {
            probe_hosts(p, &mut found);
        }
        if let Some(l) = c.lifecycle {
            handler_hosts(l.post_start.as_ref(), &mut found);
            handler_hosts(l.pre_stop.as_ref(), &mut found);
        }
        if !found.is_empty() {
            bad.insert(c.name.to_owned());
            hosts.extend(found);
        }
    }
    if bad.is_empty() {
        return None;
    }
    violation(
        "probe or lifecycle host",
        format!(
            "{} {} {} {} {}",
            pluralize("container", "containers", bad.len()),
            join_quote(&bad),
            pluralize("uses", "use", bad.len()),
            pluralize(
                "probe or lifecycle host",
                "probe or lifecycle hosts",
                hosts.len()
            ),
            join_quote(&hosts)
        ),
    )
}

fn privileged(_: &ObjectMeta, spec: &PodSpec, _: u32) -> Option<Violation> {
    let bad = bad_containers(spec, |c| c.sc.and_then(|sc| sc.privileged) == Some(true));
    if bad.is_empty() {
        return None;
    }
    violation(
        "privileged",
        format!(
            "{} must not set securityContext.privileged=true",
            containers_phrase(&bad)
        ),
    )
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

fn proc_mount_baseline(_: &ObjectMeta, spec: &PodSpec, minor: u32) -> Option<Violation> {
    if minor >= 35 && in_user_namespace(spec) {
        return None;
    }
    proc_mount(spec)
}

fn proc_mount_restricted(_: &ObjectMeta, spec: &PodSpec, _: u32) -> Option<Violation> {
    proc_mount(spec)
}

fn se_linux_options(_: &ObjectMeta, spec: &PodSpec, minor: u32) -> Option<Violation> {
    let mut allowed = vec!["", "container_t", "container_init_t", "container_kvm_t"];
    if minor >= 31 {
        allowed.push("container_engine_t");
    }
    let mut bad_types = BTreeSet::new();
    let (mut set_user, mut set_role) = (false, false);
    let mut valid = |o: &SELinuxOptions| {
        let mut ok = true;
        let t = o.type_.as_deref().unwrap_or_default();
        if !allowed.contains(&t) {
            ok = false;
            bad_types.insert(t.to_owned());
        }
        if o.user.as_deref().is_some_and(|u| !u.is_empty()) {
            ok = false;
            set_user = true;
        }
        if o.role.as_deref().is_some_and(|r| !r.is_empty()) {
            ok = false;
            set_role = true;
        }
        ok
    };
    let mut setters = Vec::new();
    if let Some(o) = spec
        .security_context
        .as_ref()
        .and_then(|sc| sc.se_linux_options.as_ref())
        && !valid(o)
    {
        setters.push("pod".to_owned());
    }
    let bad = bad_containers(spec, |c| {
        c.sc.and_then(|sc| sc.se_linux_options.as_ref())
            .is_some_and(|o| !valid(o))
    });
    if !bad.is_empty() {
        setters.push(containers_phrase(&bad));
    }
    if setters.is_empty() {
        return None;
    }
    let mut data = Vec::new();
    if !bad_types.is_empty() {
        data.push(format!(
            "{} {}",
            pluralize("type", "types", bad_types.len()),
            join_quote(&bad_types)
        ));
    }
    if set_user {
        data.push("user may not be set".to_owned());
    }
    if set_role {
        data.push("role may not be set".to_owned());
    }
    violation(
        "seLinuxOptions",
        format!(
            "{} set forbidden securityContext.seLinuxOptions: {}",
            setters.join(" and "),
            data.join("; ")
        ),
    )
}

fn valid_seccomp(t: &str) -> bool {
    t == "Localhost" || t == "RuntimeDefault"
}

const SECCOMP_POD_ANNOTATION: &str = "seccomp.security.alpha.kubernetes.io/pod";
const SECCOMP_CONTAINER_ANNOTATION: &str = "container.seccomp.security.alpha.kubernetes.io/";

/// Before v1.19 seccomp was set through annotations.
fn seccomp_annotations(meta: &ObjectMeta, spec: &PodSpec) -> Option<Violation> {
    let valid =
        |v: &str| v == "runtime/default" || v == "docker/default" || v.starts_with("localhost/");
    let annotations = meta.annotations.as_ref();
    let mut forbidden = BTreeSet::new();
    let mut look = |key: &str| {
        if let Some(v) = annotations.and_then(|a| a.get(key))
            && !valid(v)
        {
            forbidden.insert(format!("{key}={}", go_quote(v)));
        }
    };
    look(SECCOMP_POD_ANNOTATION);
    for c in containers(spec) {
        look(&format!("{SECCOMP_CONTAINER_ANNOTATION}{}", c.name));
    }
    if forbidden.is_empty() {
        return None;
    }
    violation(
        "seccompProfile",
        format!(
            "forbidden {} {}",
            pluralize("annotation", "annotations", forbidden.len()),
            forbidden.into_iter().collect::<Vec<_>>().join(", ")
        ),
    )
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

fn seccomp_baseline(meta: &ObjectMeta, spec: &PodSpec, minor: u32) -> Option<Violation> {
    if minor < 19 {
        return seccomp_annotations(meta, spec);
    }
    seccomp_fields(spec, false)
}

fn seccomp_restricted(_: &ObjectMeta, spec: &PodSpec, minor: u32) -> Option<Violation> {
    if minor >= 25 && is_windows(spec) {
        return None;
    }
    seccomp_fields(spec, true)
}

fn sysctls(_: &ObjectMeta, spec: &PodSpec, minor: u32) -> Option<Violation> {
    let allowed = |name: &str| match name {
        "kernel.shm_rmid_forced"
        | "net.ipv4.ip_local_port_range"
        | "net.ipv4.tcp_syncookies"
        | "net.ipv4.ping_group_range"
        | "net.ipv4.ip_unprivileged_port_start" => true,
        "net.ipv4.ip_local_reserved_ports" => minor >= 27,
        "net.ipv4.tcp_keepalive_time"
        | "net.ipv4.tcp_fin_timeout"
        | "net.ipv4.tcp_keepalive_intvl"
        | "net.ipv4.tcp_keepalive_probes" => minor >= 29,
        "net.ipv4.tcp_rmem" | "net.ipv4.tcp_wmem" => minor >= 32,
        "net.ipv4.tcp_slow_start_after_idle" | "net.ipv4.tcp_notsent_lowat" => minor >= 37,
        _ => false,
    };
    let forbidden: Vec<&str> = spec
        .security_context
        .as_ref()
        .and_then(|sc| sc.sysctls.as_ref())
        .into_iter()
        .flatten()
        .map(|s| s.name.as_str())
        .filter(|n| !allowed(n))
        .collect();
    if forbidden.is_empty() {
        return None;
    }
    violation("forbidden sysctls", forbidden.join(", "))
}

fn windows_host_process(_: &ObjectMeta, spec: &PodSpec, _: u32) -> Option<Violation> {
    let bad = bad_containers(spec, |c| {
        c.sc.and_then(|sc| sc.windows_options.as_ref())
            .and_then(|w| w.host_process)
            == Some(true)
    });
    let pod = spec
        .security_context
        .as_ref()
        .and_then(|sc| sc.windows_options.as_ref())
        .and_then(|w| w.host_process)
        == Some(true);
    let mut setters = Vec::new();
    if pod {
        setters.push("pod".to_owned());
    }
    if !bad.is_empty() {
        setters.push(containers_phrase(&bad));
    }
    if setters.is_empty() {
        return None;
    }
    violation(
        "hostProcess",
        format!(
            "{} must not set securityContext.windowsOptions.hostProcess=true",
            setters.join(" and ")
        ),
    )
}

fn allow_privilege_escalation(_: &ObjectMeta, spec: &PodSpec, minor: u32) -> Option<Violation> {
    if minor >= 25 && is_windows(spec) {
        return None;
    }
    let bad = bad_containers(spec, |c| {
        c.sc.and_then(|sc| sc.allow_privilege_escalation) != Some(false)
    });
    if bad.is_empty() {
        return None;
    }
    violation(
        "allowPrivilegeEscalation != false",
        format!(
            "{} must set securityContext.allowPrivilegeEscalation=false",
            containers_phrase(&bad)
        ),
    )
}

fn capabilities_restricted(_: &ObjectMeta, spec: &PodSpec, minor: u32) -> Option<Violation> {
    if minor >= 25 && is_windows(spec) {
        return None;
    }
    let mut missing_drop_all = Vec::new();
    let mut adding = Vec::new();
    let mut forbidden = BTreeSet::new();
    for c in containers(spec) {
        let Some(caps) = c.sc.and_then(|sc| sc.capabilities.as_ref()) else {
            missing_drop_all.push(c.name.to_owned());
            continue;
        };
        if !caps.drop.iter().flatten().any(|d| d == "ALL") {
            missing_drop_all.push(c.name.to_owned());
        }
        let mut added_forbidden = false;
        for cap in caps.add.iter().flatten() {
            if cap != "NET_BIND_SERVICE" {
                added_forbidden = true;
                forbidden.insert(cap.clone());
            }
        }
        if added_forbidden {
            adding.push(c.name.to_owned());
        }
    }
    let mut details = Vec::new();
    if !missing_drop_all.is_empty() {
        details.push(format!(
            "{} must set securityContext.capabilities.drop=[\"ALL\"]",
            containers_phrase(&missing_drop_all)
        ));
    }
    if !adding.is_empty() {
        details.push(format!(
            "{} must not include {} in securityContext.capabilities.add",
            containers_phrase(&adding),
            join_quote(&forbidden)
        ));
    }
    if details.is_empty() {
        return None;
    }
    violation("unrestricted capabilities", details.join("; "))
}

fn restricted_volumes(_: &ObjectMeta, spec: &PodSpec, _: u32) -> Option<Violation> {
    let mut bad = Vec::new();
    let mut types = BTreeSet::new();
    for v in spec.volumes.iter().flatten() {
        let allowed = v.config_map.is_some()
            || v.csi.is_some()
            || v.downward_api.is_some()
            || v.empty_dir.is_some()
            || v.ephemeral.is_some()
            || v.image.is_some()
            || v.persistent_volume_claim.is_some()
            || v.projected.is_some()
            || v.secret.is_some();
        if allowed {
            continue;
        }
        bad.push(v.name.as_str());
        let kind = [
            (v.host_path.is_some(), "hostPath"),
            (v.gce_persistent_disk.is_some(), "gcePersistentDisk"),
            (v.aws_elastic_block_store.is_some(), "awsElasticBlockStore"),
            (v.git_repo.is_some(), "gitRepo"),
            (v.nfs.is_some(), "nfs"),
            (v.iscsi.is_some(), "iscsi"),
            (v.glusterfs.is_some(), "glusterfs"),
            (v.rbd.is_some(), "rbd"),
            (v.flex_volume.is_some(), "flexVolume"),
            (v.cinder.is_some(), "cinder"),
            (v.cephfs.is_some(), "cephfs"),
            (v.flocker.is_some(), "flocker"),
            (v.fc.is_some(), "fc"),
            (v.azure_file.is_some(), "azureFile"),
            (v.vsphere_volume.is_some(), "vsphereVolume"),
            (v.quobyte.is_some(), "quobyte"),
            (v.azure_disk.is_some(), "azureDisk"),
            (v.photon_persistent_disk.is_some(), "photonPersistentDisk"),
            (v.portworx_volume.is_some(), "portworxVolume"),
            (v.scale_io.is_some(), "scaleIO"),
            (v.storageos.is_some(), "storageos"),
        ]
        .into_iter()
        .find_map(|(set, name)| set.then_some(name))
        .unwrap_or("unknown");
        types.insert(kind);
    }
    if bad.is_empty() {
        return None;
    }
    violation(
        "restricted volume types",
        format!(
            "{} {} {} {} {}",
            pluralize("volume", "volumes", bad.len()),
            join_quote(&bad),
            pluralize("uses", "use", bad.len()),
            pluralize(
                "restricted volume type",
                "restricted volume types",
                types.len()
            ),
            join_quote(&types)
        ),
    )
}

fn run_as_non_root(_: &ObjectMeta, spec: &PodSpec, minor: u32) -> Option<Violation> {
    if minor >= 35 && in_user_namespace(spec) {
        return None;
    }
    let mut setters = Vec::new();
    let mut pod_non_root = false;
    match spec
        .security_context
        .as_ref()
        .and_then(|sc| sc.run_as_non_root)
    {
        Some(false) => setters.push("pod".to_owned()),
        Some(true) => pod_non_root = true,
        None => {}
    }
    let mut explicit = Vec::new();
    let mut implicit = Vec::new();
    for c in containers(spec) {
        match c.sc.and_then(|sc| sc.run_as_non_root) {
            Some(false) => explicit.push(c.name.to_owned()),
            Some(true) => {}
            None if !pod_non_root => implicit.push(c.name.to_owned()),
            None => {}
        }
    }
    if !explicit.is_empty() {
        setters.push(containers_phrase(&explicit));
    }
    if !setters.is_empty() {
        return violation(
            "runAsNonRoot != true",
            format!(
                "{} must not set securityContext.runAsNonRoot=false",
                setters.join(" and ")
            ),
        );
    }
    if !implicit.is_empty() {
        return violation(
            "runAsNonRoot != true",
            format!(
                "pod or {} must set securityContext.runAsNonRoot=true",
                containers_phrase(&implicit)
            ),
        );
    }
    None
}

fn run_as_user(_: &ObjectMeta, spec: &PodSpec, minor: u32) -> Option<Violation> {
    if minor >= 35 && in_user_namespace(spec) {
        return None;
    }
    let mut setters = Vec::new();
    if spec.security_context.as_ref().and_then(|sc| sc.run_as_user) == Some(0) {
        setters.push("pod".to_owned());
    }
    let bad = bad_containers(spec, |c| c.sc.and_then(|sc| sc.run_as_user) == Some(0));
    if !bad.is_empty() {
        setters.push(containers_phrase(&bad));
    }
    if setters.is_empty() {
        return None;
    }
    violation(
        "runAsUser=0",
        format!("{} must not set runAsUser=0", setters.join(" and ")),
    )
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
