//! The baseline checks: what every pod short of `privileged` must meet.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::{LifecycleHandler, PodSpec, Probe, SELinuxOptions};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::{
    bad_containers, containers, containers_phrase, go_quote, in_user_namespace, join_quote,
    pluralize, proc_mount, seccomp_fields, violation,
};
use crate::pod_security::Violation;

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

const SECCOMP_POD_ANNOTATION: &str = "seccomp.security.alpha.kubernetes.io/pod";

const SECCOMP_CONTAINER_ANNOTATION: &str = "container.seccomp.security.alpha.kubernetes.io/";

pub(super) fn app_armor_profile(meta: &ObjectMeta, spec: &PodSpec, _: u32) -> Option<Violation> {
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

pub(super) fn capabilities_baseline(_: &ObjectMeta, spec: &PodSpec, _: u32) -> Option<Violation> {
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

pub(super) fn host_namespaces(_: &ObjectMeta, spec: &PodSpec, _: u32) -> Option<Violation> {
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

pub(super) fn host_path_volumes(_: &ObjectMeta, spec: &PodSpec, _: u32) -> Option<Violation> {
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

pub(super) fn host_ports(_: &ObjectMeta, spec: &PodSpec, _: u32) -> Option<Violation> {
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

pub(super) fn host_probes_and_lifecycle(
    _: &ObjectMeta,
    spec: &PodSpec,
    _: u32,
) -> Option<Violation> {
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

pub(super) fn privileged(_: &ObjectMeta, spec: &PodSpec, _: u32) -> Option<Violation> {
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

pub(super) fn proc_mount_baseline(_: &ObjectMeta, spec: &PodSpec, minor: u32) -> Option<Violation> {
    if minor >= 35 && in_user_namespace(spec) {
        return None;
    }
    proc_mount(spec)
}

pub(super) fn se_linux_options(_: &ObjectMeta, spec: &PodSpec, minor: u32) -> Option<Violation> {
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

pub(super) fn seccomp_baseline(meta: &ObjectMeta, spec: &PodSpec, minor: u32) -> Option<Violation> {
    if minor < 19 {
        return seccomp_annotations(meta, spec);
    }
    seccomp_fields(spec, false)
}

pub(super) fn sysctls(_: &ObjectMeta, spec: &PodSpec, minor: u32) -> Option<Violation> {
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

pub(super) fn windows_host_process(_: &ObjectMeta, spec: &PodSpec, _: u32) -> Option<Violation> {
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
