//! Table-driven tests of every check with the expected strings of kube's own tests
//! (k8s.io/pod-security-admission/policy/check_*_test.go), then the policy, the messages and the templates.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::*;

/// A pod's metadata and spec from JSON as a request carries them.
fn pod(v: Value) -> (ObjectMeta, PodSpec) {
    let meta = v
        .get("metadata")
        .map(|m| serde_json::from_value(m.clone()).unwrap())
        .unwrap_or_default();
    let mut spec = v.get("spec").cloned().unwrap_or_else(|| json!({}));
    if spec.get("containers").is_none() {
        spec["containers"] = json!([]);
    }
    (meta, serde_json::from_value(spec).unwrap())
}

fn ctrs(list: Value) -> Value {
    json!({ "spec": { "containers": list } })
}

fn sc(name: &str, security_context: Value) -> Value {
    json!({ "name": name, "securityContext": security_context })
}

/// The single violation `id`'s check reports at `latest` for the pod, as (reason, detail).
fn run(id: &str, pod_json: Value) -> Option<(String, String)> {
    run_at(id, checks::MAX_MINOR, pod_json)
}

fn run_at(id: &str, minor: u32, pod_json: Value) -> Option<(String, String)> {
    let (meta, spec) = pod(pod_json);
    let c = checks::CHECKS.iter().find(|c| c.id == id).unwrap();
    (c.run)(&meta, &spec, minor).map(|v| (v.reason, v.detail))
}

#[track_caller]
fn expect(id: &str, pod_json: Value, reason: &str, detail: &str) {
    assert_eq!(
        run(id, pod_json),
        Some((reason.to_owned(), detail.to_owned())),
        "check {id}"
    );
}

#[test]
fn baseline_checks_word_their_violations_as_kube() {
    let table: Vec<(&str, Value, &str, &str)> = vec![
        (
            "appArmorProfile",
            json!({"spec": {"securityContext": {"appArmorProfile": {"type": "Unconfined"}}}}),
            "forbidden AppArmor profile",
            r#"pod must not set AppArmor profile type to "Unconfined""#,
        ),
        (
            "appArmorProfile",
            json!({"spec": {
                "securityContext": {"appArmorProfile": {"type": "RuntimeDefault"}},
                "containers": [{"name": "foo"}],
                "initContainers": [sc("bar", json!({"appArmorProfile": {"type": "Unconfined"}}))],
            }}),
            "forbidden AppArmor profile",
            r#"container "bar" must not set AppArmor profile type to "Unconfined""#,
        ),
        (
            "appArmorProfile",
            json!({"metadata": {"annotations": {
                "container.apparmor.security.beta.kubernetes.io/": "bogus",
                "container.apparmor.security.beta.kubernetes.io/a": "",
                "container.apparmor.security.beta.kubernetes.io/b": "runtime/default",
                "container.apparmor.security.beta.kubernetes.io/c": "localhost/",
                "container.apparmor.security.beta.kubernetes.io/d": "localhost/foo",
                "container.apparmor.security.beta.kubernetes.io/e": "unconfined",
                "container.apparmor.security.beta.kubernetes.io/f": "unknown",
            }}}),
            "forbidden AppArmor profiles",
            concat!(
                "annotations must not set AppArmor profile type to ",
                r#""container.apparmor.security.beta.kubernetes.io/="bogus"", "#,
                r#""container.apparmor.security.beta.kubernetes.io/e="unconfined"", "#,
                r#""container.apparmor.security.beta.kubernetes.io/f="unknown"""#
            ),
        ),
        (
            "capabilities_baseline",
            ctrs(json!([
                sc("a", json!({"capabilities": {"add": ["FOO", "BAR"]}})),
                sc("b", json!({"capabilities": {"add": ["BAR", "BAZ"]}})),
                sc(
                    "c",
                    json!({"capabilities": {"add": ["NET_BIND_SERVICE", "CHOWN"]}})
                ),
            ])),
            "non-default capabilities",
            r#"containers "a", "b" must not include "BAR", "BAZ", "FOO" in securityContext.capabilities.add"#,
        ),
        (
            "hostNamespaces",
            json!({"spec": {"hostNetwork": true, "hostIPC": true, "hostPID": true}}),
            "host namespaces",
            "hostNetwork=true, hostPID=true, hostIPC=true",
        ),
        (
            "hostPathVolumes",
            json!({"spec": {"volumes": [
                {"name": "a", "hostPath": {"path": "/a"}},
                {"name": "b", "hostPath": {"path": "/b"}},
                {"name": "c", "emptyDir": {}},
            ]}}),
            "hostPath volumes",
            r#"volumes "a", "b""#,
        ),
        (
            "hostPathVolumes",
            json!({"spec": {"volumes": [{"name": "data", "hostPath": {"path": "/srv"}}]}}),
            "hostPath volumes",
            r#"volume "data""#,
        ),
        (
            "hostPorts",
            ctrs(json!([
                {"name": "a", "ports": [{"containerPort": 1, "hostPort": 0}]},
                {"name": "b", "ports": [{"containerPort": 1, "hostPort": 0}, {"containerPort": 2, "hostPort": 20}]},
            ])),
            "hostPort",
            r#"container "b" uses hostPort 20"#,
        ),
        (
            "hostPorts",
            ctrs(json!([
                {"name": "a", "ports": [{"containerPort": 1}]},
                {"name": "b", "ports": [{"containerPort": 1, "hostPort": 10}, {"containerPort": 2, "hostPort": 20}]},
                {"name": "c", "ports": [{"containerPort": 1, "hostPort": 10}, {"containerPort": 2, "hostPort": 30}]},
            ])),
            "hostPort",
            r#"containers "b", "c" use hostPorts 10, 20, 30"#,
        ),
        (
            "hostProbesAndHostLifecycle",
            ctrs(json!([{
                "name": "a",
                "livenessProbe": {"httpGet": {"port": 80, "host": "127.0.0.1"}},
                "readinessProbe": {"tcpSocket": {"port": 80, "host": "::1"}},
                "startupProbe": {"httpGet": {"port": 80, "host": "localhost"}},
            }])),
            "probe or lifecycle host",
            r#"container "a" uses probe or lifecycle hosts "127.0.0.1", "::1", "localhost""#,
        ),
        (
            "hostProbesAndHostLifecycle",
            ctrs(json!([{
                "name": "e",
                "lifecycle": {"preStop": {"httpGet": {"port": 80, "host": "another.invalid.host"}}},
            }])),
            "probe or lifecycle host",
            r#"container "e" uses probe or lifecycle host "another.invalid.host""#,
        ),
        (
            "privileged",
            ctrs(json!([
                {"name": "a"},
                sc("b", json!({})),
                sc("c", json!({"privileged": false})),
                sc("d", json!({"privileged": true})),
                sc("e", json!({"privileged": true})),
            ])),
            "privileged",
            r#"containers "d", "e" must not set securityContext.privileged=true"#,
        ),
        (
            "procMount",
            ctrs(json!([
                {"name": "a"},
                sc("b", json!({})),
                sc("c", json!({"procMount": "Default"})),
                sc("d", json!({"procMount": "Unmasked"})),
                sc("e", json!({"procMount": "other"})),
            ])),
            "procMount",
            r#"containers "d", "e" must not set securityContext.procMount to "Unmasked", "other""#,
        ),
        (
            "seLinuxOptions",
            json!({"spec": {
                "securityContext": {"seLinuxOptions": {"type": "foo", "user": "bar", "role": "baz"}},
                "containers": [
                    sc("a", json!({"seLinuxOptions": {"type": "container_t"}})),
                    sc("b", json!({"seLinuxOptions": {"type": "container_init_t"}})),
                    sc("c", json!({"seLinuxOptions": {"type": "container_kvm_t"}})),
                    sc("d", json!({"seLinuxOptions": {"type": "container_engine_t"}})),
                    sc("e", json!({"seLinuxOptions": {"type": "bar"}})),
                    sc("f", json!({"seLinuxOptions": {"user": "bar"}})),
                    sc("g", json!({"seLinuxOptions": {"role": "baz"}})),
                ],
            }}),
            "seLinuxOptions",
            r#"pod and containers "e", "f", "g" set forbidden securityContext.seLinuxOptions: types "bar", "foo"; user may not be set; role may not be set"#,
        ),
        (
            "seLinuxOptions",
            json!({"spec": {"securityContext": {"seLinuxOptions": {"type": "bad"}}}}),
            "seLinuxOptions",
            r#"pod set forbidden securityContext.seLinuxOptions: type "bad""#,
        ),
        (
            "seccompProfile_baseline",
            json!({"spec": {
                "securityContext": {"seccompProfile": {"type": "Unconfined"}},
                "containers": [
                    {"name": "a"},
                    sc("b", json!({"seccompProfile": {"type": "RuntimeDefault"}})),
                    sc("c", json!({"seccompProfile": {"type": "Unconfined"}})),
                    sc("d", json!({"seccompProfile": {"type": "Unconfined"}})),
                ],
            }}),
            "seccompProfile",
            r#"pod and containers "c", "d" must not set securityContext.seccompProfile.type to "Unconfined""#,
        ),
        (
            "sysctls",
            json!({"spec": {"securityContext": {"sysctls": [
                {"name": "a", "value": "1"},
                {"name": "b", "value": "1"},
                {"name": "net.ipv4.tcp_notsent_lowat", "value": "1"},
            ]}}}),
            "forbidden sysctls",
            "a, b",
        ),
        (
            "windowsHostProcess",
            json!({"spec": {
                "securityContext": {"windowsOptions": {"hostProcess": true}},
                "containers": [
                    {"name": "a"},
                    sc("b", json!({})),
                    sc("c", json!({"windowsOptions": {}})),
                    sc("d", json!({"windowsOptions": {"hostProcess": false}})),
                    sc("e", json!({"windowsOptions": {"hostProcess": true}})),
                    sc("f", json!({"windowsOptions": {"hostProcess": true}})),
                ],
            }}),
            "hostProcess",
            r#"pod and containers "e", "f" must not set securityContext.windowsOptions.hostProcess=true"#,
        ),
    ];
    for (id, pod_json, reason, detail) in table {
        expect(id, pod_json, reason, detail);
    }
}

#[test]
fn restricted_checks_word_their_violations_as_kube() {
    let table: Vec<(&str, Value, &str, &str)> = vec![
        (
            "allowPrivilegeEscalation",
            ctrs(json!([
                {"name": "a"},
                sc("b", json!({})),
                sc("c", json!({"allowPrivilegeEscalation": true})),
                sc("d", json!({"allowPrivilegeEscalation": false})),
            ])),
            "allowPrivilegeEscalation != false",
            r#"containers "a", "b", "c" must set securityContext.allowPrivilegeEscalation=false"#,
        ),
        (
            "capabilities_restricted",
            ctrs(json!([
                sc("a", json!({"capabilities": {"add": ["FOO", "BAR"]}})),
                sc("b", json!({"capabilities": {"add": ["BAR", "BAZ"]}})),
                sc(
                    "c",
                    json!({"capabilities": {"add": ["NET_BIND_SERVICE", "CHOWN"], "drop": ["ALL", "FOO"]}})
                ),
            ])),
            "unrestricted capabilities",
            r#"containers "a", "b" must set securityContext.capabilities.drop=["ALL"]; containers "a", "b", "c" must not include "BAR", "BAZ", "CHOWN", "FOO" in securityContext.capabilities.add"#,
        ),
        (
            "capabilities_restricted",
            json!({"spec": {"os": {"name": "linux"}, "containers": [{"name": "a"}]}}),
            "unrestricted capabilities",
            r#"container "a" must set securityContext.capabilities.drop=["ALL"]"#,
        ),
        (
            "restrictedVolumes",
            json!({"spec": {"volumes": [
                {"name": "a1", "emptyDir": {}},
                {"name": "a2", "secret": {}},
                {"name": "a3", "persistentVolumeClaim": {"claimName": "c"}},
                {"name": "a4", "downwardAPI": {}},
                {"name": "a5", "configMap": {}},
                {"name": "a6", "projected": {}},
                {"name": "a7", "csi": {"driver": "d"}},
                {"name": "a8", "ephemeral": {}},
                {"name": "a9", "image": {}},
                {"name": "b1", "hostPath": {"path": "/"}},
                {"name": "b4", "gitRepo": {"repository": "r"}},
                {"name": "b5", "nfs": {"server": "s", "path": "/"}},
                {"name": "c1"},
            ]}}),
            "restricted volume types",
            r#"volumes "b1", "b4", "b5", "c1" use restricted volume types "gitRepo", "hostPath", "nfs", "unknown""#,
        ),
        (
            "restrictedVolumes",
            json!({"spec": {"volumes": [{"name": "data", "hostPath": {"path": "/srv"}}]}}),
            "restricted volume types",
            r#"volume "data" uses restricted volume type "hostPath""#,
        ),
        (
            "runAsNonRoot",
            ctrs(json!([{"name": "a"}])),
            "runAsNonRoot != true",
            r#"pod or container "a" must set securityContext.runAsNonRoot=true"#,
        ),
        (
            "runAsNonRoot",
            json!({"spec": {"securityContext": {"runAsNonRoot": false}, "containers": [{"name": "a"}]}}),
            "runAsNonRoot != true",
            "pod must not set securityContext.runAsNonRoot=false",
        ),
        (
            "runAsNonRoot",
            json!({"spec": {"securityContext": {"runAsNonRoot": true}, "containers": [
                {"name": "a"},
                sc("b", json!({})),
                sc("c", json!({"runAsNonRoot": false})),
                sc("d", json!({"runAsNonRoot": false})),
                sc("e", json!({"runAsNonRoot": true})),
            ]}}),
            "runAsNonRoot != true",
            r#"containers "c", "d" must not set securityContext.runAsNonRoot=false"#,
        ),
        (
            "runAsNonRoot",
            ctrs(
                json!([{"name": "a"}, sc("b", json!({})), sc("c", json!({"runAsNonRoot": true}))]),
            ),
            "runAsNonRoot != true",
            r#"pod or containers "a", "b" must set securityContext.runAsNonRoot=true"#,
        ),
        (
            "runAsUser",
            json!({"spec": {"securityContext": {"runAsUser": 0}, "containers": [{"name": "a"}]}}),
            "runAsUser=0",
            "pod must not set runAsUser=0",
        ),
        (
            "runAsUser",
            json!({"spec": {"securityContext": {"runAsUser": 1}, "containers": [
                {"name": "a"},
                sc("b", json!({})),
                sc("c", json!({"runAsUser": 0})),
                sc("d", json!({"runAsUser": 0})),
                sc("e", json!({"runAsUser": 1})),
            ]}}),
            "runAsUser=0",
            r#"containers "c", "d" must not set runAsUser=0"#,
        ),
        (
            "seccompProfile_restricted",
            ctrs(json!([{"name": "a"}])),
            "seccompProfile",
            r#"pod or container "a" must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost""#,
        ),
        (
            "seccompProfile_restricted",
            json!({"spec": {"securityContext": {"seccompProfile": {"type": "Unconfined"}}, "containers": [{"name": "a"}]}}),
            "seccompProfile",
            r#"pod must not set securityContext.seccompProfile.type to "Unconfined""#,
        ),
        (
            "seccompProfile_restricted",
            json!({"spec": {"securityContext": {"seccompProfile": {"type": "Localhost"}}, "containers": [
                {"name": "a"},
                sc("b", json!({"seccompProfile": {"type": "RuntimeDefault"}})),
                sc("c", json!({"seccompProfile": {"type": "Unconfined"}})),
                sc("d", json!({"seccompProfile": {"type": "Unconfined"}})),
            ]}}),
            "seccompProfile",
            r#"containers "c", "d" must not set securityContext.seccompProfile.type to "Unconfined""#,
        ),
        (
            "seccompProfile_restricted",
            ctrs(json!([
                {"name": "a"},
                sc("b", json!({})),
                sc("c", json!({"seccompProfile": {"type": "RuntimeDefault"}})),
            ])),
            "seccompProfile",
            r#"pod or containers "a", "b" must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost""#,
        ),
    ];
    for (id, pod_json, reason, detail) in table {
        expect(id, pod_json, reason, detail);
    }
}

#[test]
fn checks_allow_what_kube_allows() {
    let allowed: Vec<(&str, Value)> = vec![
        // Windows pods skip the Linux-only restricted checks.
        (
            "allowPrivilegeEscalation",
            json!({"spec": {"os": {"name": "windows"}, "containers": [{"name": "a"}]}}),
        ),
        (
            "capabilities_restricted",
            json!({"spec": {"os": {"name": "windows"}, "containers": [{"name": "a"}]}}),
        ),
        (
            "seccompProfile_restricted",
            json!({"spec": {"os": {"name": "windows"}, "containers": [{"name": "a"}]}}),
        ),
        // A pod in a user namespace may run as root and unmask /proc.
        (
            "runAsNonRoot",
            json!({"spec": {"hostUsers": false, "containers": [{"name": "a"}]}}),
        ),
        (
            "runAsUser",
            json!({"spec": {"hostUsers": false, "securityContext": {"runAsUser": 0}}}),
        ),
        (
            "procMount",
            json!({"spec": {"hostUsers": false, "containers": [sc("a", json!({"procMount": "Unmasked"}))]}}),
        ),
        // Unset probe hosts default to the pod IP.
        (
            "hostProbesAndHostLifecycle",
            ctrs(json!([{
                "name": "a",
                "livenessProbe": {"httpGet": {"port": 80}},
                "readinessProbe": {"tcpSocket": {"port": 80, "host": ""}},
                "lifecycle": {"postStart": {"httpGet": {"port": 80}}},
            }])),
        ),
        (
            "sysctls",
            json!({"spec": {"securityContext": {"sysctls": [{"name": "net.ipv4.tcp_keepalive_time", "value": "1"}]}}}),
        ),
        (
            "seLinuxOptions",
            json!({"spec": {"securityContext": {"seLinuxOptions": {"level": "s0:c1"}}}}),
        ),
        (
            "hostPorts",
            ctrs(json!([{"name": "a", "ports": [{"containerPort": 80}]}])),
        ),
    ];
    for (id, pod_json) in allowed {
        assert_eq!(run(id, pod_json.clone()), None, "check {id} on {pod_json}");
    }
}

#[test]
fn older_policy_versions_apply_the_checks_of_their_time() {
    let tcp_rmem = json!({"spec": {"securityContext": {"sysctls": [{"name": "net.ipv4.tcp_rmem", "value": "1"}]}}});
    assert_eq!(
        run_at("sysctls", 31, tcp_rmem.clone()),
        Some(("forbidden sysctls".into(), "net.ipv4.tcp_rmem".into()))
    );
    assert_eq!(run_at("sysctls", 32, tcp_rmem), None);
    // The user-namespace relaxation came in v1.35.
    let root_in_userns = json!({"spec": {"hostUsers": false, "securityContext": {"runAsUser": 0}}});
    assert!(run_at("runAsUser", 34, root_in_userns).is_some());
    // Before v1.19 seccomp was checked on the annotations.
    assert_eq!(
        run_at(
            "seccompProfile_baseline",
            18,
            json!({"metadata": {"annotations": {
                "seccomp.security.alpha.kubernetes.io/pod": "unconfined",
                "container.seccomp.security.alpha.kubernetes.io/a": "unconfined",
                "container.seccomp.security.alpha.kubernetes.io/b": "unknown",
            }}, "spec": {"containers": [{"name": "a"}, {"name": "b"}]}})
        ),
        Some((
            "seccompProfile".into(),
            r#"forbidden annotations container.seccomp.security.alpha.kubernetes.io/a="unconfined", container.seccomp.security.alpha.kubernetes.io/b="unknown", seccomp.security.alpha.kubernetes.io/pod="unconfined""#.into()
        ))
    );
    // At restricted:v1.21 there is no capabilities_restricted yet: the baseline check still applies.
    let (meta, spec) = pod(ctrs(json!([sc(
        "a",
        json!({"capabilities": {"add": ["SYS_ADMIN"]}})
    )])));
    let reasons = |v: Version| {
        let lv = LevelVersion {
            level: Level::Restricted,
            version: v,
        };
        reasons_text(&check(lv, &meta, &spec))
    };
    assert_eq!(
        reasons(Version::V1(21)),
        "non-default capabilities, allowPrivilegeEscalation != false, runAsNonRoot != true, seccompProfile"
    );
    assert_eq!(
        reasons(Version::Latest),
        "allowPrivilegeEscalation != false, unrestricted capabilities, runAsNonRoot != true, seccompProfile"
    );
    // A version newer than any check is latest.
    assert_eq!(reasons(Version::V1(99)), reasons(Version::Latest));
}

/// A pod with one container named "c" that sets nothing.
fn plain_pod() -> (ObjectMeta, PodSpec) {
    pod(ctrs(json!([{"name": "c", "image": "registry/app:1"}])))
}

fn hostpath_pod() -> (ObjectMeta, PodSpec) {
    pod(json!({"spec": {
        "containers": [{"name": "c", "image": "registry/app:1"}],
        "volumes": [{"name": "data", "hostPath": {"path": "/home/user"}}],
    }}))
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn policy_of(pairs: &[(&str, &str)]) -> (Policy, Vec<LabelError>) {
    Policy::from_labels(Some(&labels(pairs)), &Policy::default())
}

#[test]
fn a_privileged_namespace_allows_everything() {
    let (meta, spec) = pod(json!({"spec": {
        "hostNetwork": true, "hostPID": true, "hostIPC": true,
        "securityContext": {"runAsUser": 0, "sysctls": [{"name": "kernel.msgmax", "value": "1"}]},
        "containers": [{
            "name": "c",
            "ports": [{"containerPort": 80, "hostPort": 80}],
            "securityContext": {"privileged": true, "capabilities": {"add": ["SYS_ADMIN"]}, "procMount": "Unmasked"},
        }],
        "volumes": [{"name": "data", "hostPath": {"path": "/"}}],
    }}));
    assert!(check(LevelVersion::PRIVILEGED, &meta, &spec).is_empty());
    for pairs in [
        &[][..],
        &[(ENFORCE_LABEL, "privileged")][..],
        &[
            (ENFORCE_LABEL, "privileged"),
            (WARN_LABEL, "privileged"),
            (AUDIT_LABEL, "privileged"),
        ][..],
    ] {
        let (policy, errors) = policy_of(pairs);
        assert_eq!(
            evaluate_pod(&policy, &errors, "p", &meta, &spec),
            Decision::default()
        );
    }
    // The same pod in a baseline namespace: every baseline check, in kube's order.
    let lv = LevelVersion::latest(Level::Baseline);
    assert_eq!(
        reasons_text(&check(lv, &meta, &spec)),
        "non-default capabilities, host namespaces, hostPath volumes, hostPort, privileged, procMount, forbidden sysctls"
    );
}

#[test]
fn enforce_refuses_a_hostpath_pod_with_kubes_message() {
    let (policy, errors) = policy_of(&[(ENFORCE_LABEL, "baseline")]);
    let (meta, spec) = hostpath_pod();
    let d = evaluate_pod(&policy, &errors, "x", &meta, &spec);
    assert_eq!(
        d.forbidden.as_deref(),
        Some(
            r#"pods "x" is forbidden: violates PodSecurity "baseline:latest": hostPath volumes (volume "data")"#
        )
    );
    // No warning on a refused request.
    assert!(d.warnings.is_empty());
    // A plain pod passes baseline.
    let (meta, spec) = plain_pod();
    assert_eq!(
        evaluate_pod(&policy, &errors, "x", &meta, &spec),
        Decision::default()
    );
}

#[test]
fn warn_lists_every_violation_joined_as_kube() {
    let (policy, errors) = policy_of(&[(WARN_LABEL, "restricted")]);
    let (meta, spec) = plain_pod();
    let d = evaluate_pod(&policy, &errors, "x", &meta, &spec);
    assert_eq!(d.forbidden, None);
    assert_eq!(
        d.warnings,
        vec![concat!(
            r#"would violate PodSecurity "restricted:latest": "#,
            r#"allowPrivilegeEscalation != false (container "c" must set securityContext.allowPrivilegeEscalation=false), "#,
            r#"unrestricted capabilities (container "c" must set securityContext.capabilities.drop=["ALL"]), "#,
            r#"runAsNonRoot != true (pod or container "c" must set securityContext.runAsNonRoot=true), "#,
            r#"seccompProfile (pod or container "c" must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost")"#
        )]
    );
    assert_eq!(d.audit_violations, None);
    // A pod that meets restricted draws no warning.
    let (meta, spec) = pod(json!({"spec": {
        "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [sc("c", json!({"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}}))],
        "volumes": [{"name": "cfg", "configMap": {"name": "cfg"}}],
    }}));
    assert_eq!(
        evaluate_pod(&policy, &errors, "x", &meta, &spec),
        Decision::default()
    );
}

#[test]
fn enforce_baseline_warn_restricted_audit_reports() {
    let (policy, errors) = policy_of(&[
        (ENFORCE_LABEL, "baseline"),
        (WARN_LABEL, "restricted"),
        (WARN_VERSION_LABEL, "v1.30"),
        (AUDIT_LABEL, "baseline"),
    ]);
    assert!(errors.is_empty());
    let (meta, spec) = pod(json!({"spec": {
        "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [sc("c", json!({"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}))],
        "volumes": [{"name": "repo", "gitRepo": {"repository": "r"}}],
    }}));
    let d = evaluate_pod(&policy, &errors, "x", &meta, &spec);
    assert_eq!(d.forbidden, None);
    assert_eq!(d.audit_violations, None);
    assert_eq!(
        d.warnings,
        vec![
            r#"would violate PodSecurity "restricted:v1.30": restricted volume types (volume "repo" uses restricted volume type "gitRepo")"#
        ]
    );
    let (meta, spec) = hostpath_pod();
    let d = evaluate_pod(&policy, &errors, "x", &meta, &spec);
    assert!(d.forbidden.is_some());
    assert_eq!(
        d.audit_violations.as_deref(),
        Some(r#"would violate PodSecurity "baseline:latest": hostPath volumes (volume "data")"#)
    );
}

#[test]
fn labels_parse_as_kube_and_invalid_ones_fail_closed_for_enforce_only() {
    let (p, errors) = policy_of(&[
        (ENFORCE_LABEL, "baseline"),
        (ENFORCE_VERSION_LABEL, "v1.29"),
    ]);
    assert!(errors.is_empty());
    let baseline_129 = LevelVersion {
        level: Level::Baseline,
        version: Version::V1(29),
    };
    // Warn follows a stricter enforce, with its version.
    assert_eq!(
        p,
        Policy {
            enforce: baseline_129,
            audit: LevelVersion::PRIVILEGED,
            warn: baseline_129,
        }
    );
    let (p, errors) = policy_of(&[
        (ENFORCE_LABEL, "strict"),
        (AUDIT_LABEL, "nope"),
        (WARN_LABEL, "restricted"),
        (WARN_VERSION_LABEL, "v1.07"),
    ]);
    assert_eq!(p.enforce, LevelVersion::latest(Level::Restricted));
    assert_eq!(p.audit, LevelVersion::PRIVILEGED);
    assert_eq!(p.warn, LevelVersion::latest(Level::Restricted));
    let causes: Vec<(String, String)> = errors
        .iter()
        .map(|e| {
            let c = e.cause();
            (c.field, c.message)
        })
        .collect();
    assert_eq!(
        causes,
        vec![
            (
                "metadata.labels[pod-security.kubernetes.io/enforce]".to_owned(),
                r#"Invalid value: "strict": must be one of privileged, baseline, restricted"#
                    .to_owned()
            ),
            (
                "metadata.labels[pod-security.kubernetes.io/audit]".to_owned(),
                r#"Invalid value: "nope": must be one of privileged, baseline, restricted"#
                    .to_owned()
            ),
            (
                "metadata.labels[pod-security.kubernetes.io/warn-version]".to_owned(),
                r#"Invalid value: "v1.07": must be "latest" or "v1.x""#.to_owned()
            ),
        ]
    );
    // Pods in such a namespace are still evaluated (enforce restricted), and the error is audited.
    let (meta, spec) = plain_pod();
    let d = evaluate_pod(&p, &errors, "x", &meta, &spec);
    assert!(
        d.forbidden
            .as_deref()
            .unwrap()
            .starts_with(r#"pods "x" is forbidden: violates PodSecurity "restricted:latest": "#)
    );
    assert!(
        d.error
            .unwrap()
            .starts_with("Failed to parse policy: [metadata.labels[pod-security.kubernetes.io/enforce]: Invalid value: \"strict\"")
    );
    for (v, ok) in [
        ("latest", true),
        ("v1.0", true),
        ("v1.30", true),
        ("v1.30.1", false),
        ("v2.0", false),
        ("1.30", false),
        ("v1.", false),
        ("v1.-1", false),
        ("Latest", false),
    ] {
        assert_eq!(Version::parse(v).is_ok(), ok, "{v}");
    }
}

#[test]
fn namespace_labels_are_validated_on_create_and_on_changed_update() {
    let bad = labels(&[(ENFORCE_LABEL, "bogus")]);
    let worse = labels(&[(ENFORCE_LABEL, "bogus2")]);
    let good = labels(&[(ENFORCE_LABEL, "restricted")]);
    assert_eq!(validate_namespace_labels(Some(&bad), None).len(), 1);
    assert!(validate_namespace_labels(Some(&good), None).is_empty());
    assert!(validate_namespace_labels(None, None).is_empty());
    // An update that leaves the same invalid labels is allowed; one that changes them, or breaks valid
    // ones, is not.
    assert!(validate_namespace_labels(Some(&bad), Some(Some(&bad))).is_empty());
    assert_eq!(
        validate_namespace_labels(Some(&worse), Some(Some(&bad))).len(),
        1
    );
    assert_eq!(
        validate_namespace_labels(Some(&bad), Some(Some(&good))).len(),
        1
    );
    assert_eq!(validate_namespace_labels(Some(&bad), Some(None)).len(), 1);
}

#[test]
fn workload_templates_are_warned_about_but_never_refused() {
    let deployment = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {"template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {
                "containers": [{"name": "c", "image": "i"}],
                "volumes": [{"name": "data", "hostPath": {"path": "/"}}],
            },
        }},
    });
    let pointer = template_of("apps/v1", "Deployment");
    let (meta, spec) = pod_template(&deployment, pointer).unwrap();
    // enforce=baseline sets warn=baseline too: a warning, no refusal.
    let (policy, errors) = policy_of(&[(ENFORCE_LABEL, "baseline")]);
    let d = evaluate_template(&policy, &errors, &meta, &spec);
    assert_eq!(d.forbidden, None);
    assert_eq!(
        d.warnings,
        vec![r#"would violate PodSecurity "baseline:latest": hostPath volumes (volume "data")"#]
    );
    // enforce alone (warn and audit explicitly privileged): nothing to say about a template.
    let (policy, errors) = policy_of(&[(ENFORCE_LABEL, "baseline"), (WARN_LABEL, "privileged")]);
    assert_eq!(
        evaluate_template(&policy, &errors, &meta, &spec),
        Decision::default()
    );
    // A ReplicationController may have no template; Services have none at all; a pod is its own.
    let rc = json!({"spec": {"replicas": 1}});
    let pointer = template_of("v1", "ReplicationController");
    assert!(pod_template(&rc, pointer).is_none());
    let services = crate::resources::by_kind("v1", "Service").unwrap();
    assert_eq!(services.strategy.pod_template(), None);
    assert_eq!(template_of("v1", "Pod"), "");
}

/// The pod template pointer the resource table's strategy gives a kind.
fn template_of(api_version: &str, kind: &str) -> &'static str {
    crate::resources::by_kind(api_version, kind)
        .and_then(|r| r.strategy.pod_template())
        .unwrap()
}

#[test]
fn only_image_and_container_changes_are_significant_updates() {
    let (_, old) = pod(json!({"spec": {"containers": [{"name": "c", "image": "a"}]}}));
    let (_, same) = pod(
        json!({"spec": {"containers": [{"name": "c", "image": "a"}], "activeDeadlineSeconds": 5}}),
    );
    let (_, image) = pod(json!({"spec": {"containers": [{"name": "c", "image": "b"}]}}));
    let (_, ephemeral) = pod(json!({"spec": {
        "containers": [{"name": "c", "image": "a"}],
        "ephemeralContainers": [{"name": "debug", "image": "busybox"}],
    }}));
    assert!(!significant_pod_update(&same, &old));
    assert!(significant_pod_update(&image, &old));
    assert!(significant_pod_update(&ephemeral, &old));
    assert!(!significant_pod_update(&ephemeral, &ephemeral));
    assert!(ignored_pod_subresource("status"));
    assert!(!ignored_pod_subresource("ephemeralcontainers"));
}

#[test]
fn ephemeral_containers_are_checked_too() {
    let (meta, spec) = pod(json!({"spec": {
        "containers": [{"name": "c"}],
        "ephemeralContainers": [{"name": "debug", "securityContext": {"privileged": true}}],
    }}));
    assert_eq!(
        check(LevelVersion::latest(Level::Baseline), &meta, &spec),
        vec![Violation {
            reason: "privileged".into(),
            detail: r#"container "debug" must not set securityContext.privileged=true"#.into(),
        }]
    );
}

#[test]
fn tightening_a_namespace_warns_about_its_existing_pods() {
    let (hp_meta, hp_spec) = hostpath_pod();
    let (ok_meta, ok_spec) = plain_pod();
    let existing = |name, uid, meta, spec| ExistingPod {
        name,
        controller_uid: uid,
        meta,
        spec,
    };
    let pods = [
        existing("web-2", Some("rs1"), &hp_meta, &hp_spec),
        existing("web-1", Some("rs1"), &hp_meta, &hp_spec),
        existing("lone", None, &hp_meta, &hp_spec),
        existing("fine", None, &ok_meta, &ok_spec),
    ];
    assert_eq!(
        namespace_pod_warnings("team", LevelVersion::latest(Level::Baseline), &pods),
        vec![
            r#"existing pods in namespace "team" violate the new PodSecurity enforce level "baseline:latest""#,
            "lone (and 2 other pods): hostPath volumes",
        ]
    );
    assert!(
        namespace_pod_warnings("team", LevelVersion::latest(Level::Baseline), &pods[3..])
            .is_empty()
    );
    let (old, _) = policy_of(&[(ENFORCE_LABEL, "baseline")]);
    let (stricter, _) = policy_of(&[(ENFORCE_LABEL, "restricted")]);
    let (looser, _) = policy_of(&[(ENFORCE_LABEL, "privileged")]);
    assert!(namespace_update_needs_pod_check(&stricter, &old));
    assert!(!namespace_update_needs_pod_check(&old, &stricter));
    assert!(!namespace_update_needs_pod_check(&looser, &old));
    assert!(!namespace_update_needs_pod_check(&old, &old));
}
