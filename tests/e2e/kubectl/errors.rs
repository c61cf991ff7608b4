//! Errors as kube-apiserver words them, as kubectl prints them: AlreadyExists, NotFound, 422 Invalid
//! listing each bad field (invalid quantities among them), unknown fields under `--validate=strict|warn`, Conflict on a stale
//! resourceVersion; and nothing partial stored. Runs against `herd control` alone.

use serde_json::json;

use super::*;

const CONFIGMAPS: &str = "/api/v1/namespaces/default/configmaps";

fn configmap(name: &str) -> String {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"a": "1"}})
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_errors_are_worded_like_kube_apiserver() {
    let herd = &Herd::up(HerdOptions::control()).await;

    // create twice: AlreadyExists.
    kubectl_stdin(herd, &["create", "-f", "-"], &configmap("dup"))
        .await
        .ok()
        .stdout_has("configmap/dup created");
    kubectl_stdin(herd, &["create", "-f", "-"], &configmap("dup"))
        .await
        .fails()
        .stderr_has(r#"Error from server (AlreadyExists): error when creating "STDIN": configmaps "dup" already exists"#);

    // get missing: NotFound, with the group in the resource name.
    let out = kubectl(herd, &["get", "pod", "nope"]).await.fails();
    assert_eq!(
        out.stderr.trim(),
        r#"Error from server (NotFound): pods "nope" not found"#
    );
    let out = kubectl(herd, &["get", "deployment", "nope"]).await.fails();
    assert_eq!(
        out.stderr.trim(),
        r#"Error from server (NotFound): deployments.apps "nope" not found"#
    );
    let out = kubectl(herd, &["get", "pod", "nope", "--ignore-not-found"])
        .await
        .ok();
    assert_eq!(out.stdout, "");

    // An invalid pod: 422 Invalid, one line per bad field; nothing stored.
    let bad_pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "Bad_Name"},
        "spec": {"containers": [{"name": "c"}]},
    });
    let out = kubectl_stdin(herd, &["create", "-f", "-"], &bad_pod.to_string())
        .await
        .fails();
    out.stderr_has(r#"The Pod "Bad_Name" is invalid: "#)
        .stderr_has(r#"* metadata.name: Invalid value: "Bad_Name": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters"#)
        .stderr_has("* spec.containers[0].image: Required value");
    assert_eq!(
        items(&herd.get_ok(PODS).await).len(),
        0,
        "an invalid pod was stored"
    );

    // A quantity that is not one fails the decoding, as in kube-apiserver: a 400 with ParseQuantity's
    // error; nothing stored. A negative one decodes and is invalid (a 422, per field).
    let mut bad_quantity = sleeper_pod("bad-quantity", "127.0.0.1:9/absent:v1");
    bad_quantity["spec"]["containers"][0]["resources"] = json!({"limits": {"memory": "1Qi"}});
    kubectl_stdin(herd, &["apply", "-f", "-"], &bad_quantity.to_string())
        .await
        .fails()
        .stderr_has("Error from server (BadRequest)")
        .stderr_has(r#"Pod in version "v1" cannot be handled as a Pod: quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"#);
    assert_eq!(herd.get(&format!("{PODS}/bad-quantity")).await.0, 404);
    bad_quantity["spec"]["containers"][0]["resources"] = json!({"requests": {"cpu": "-1"}});
    kubectl_stdin(herd, &["apply", "-f", "-"], &bad_quantity.to_string())
        .await
        .fails()
        .stderr_has(r#"The Pod "bad-quantity" is invalid: "#)
        .stderr_has(r#"spec.containers[0].resources.requests[cpu]: Invalid value: "-1": must be greater than or equal to 0"#);
    assert_eq!(herd.get(&format!("{PODS}/bad-quantity")).await.0, 404);

    // An invalid Deployment (selector does not match the template): no Deployment, no ReplicaSet.
    let mut mismatch = sleeper_deployment("mismatch", "127.0.0.1:9/absent:v1", 1);
    mismatch["spec"]["template"]["metadata"]["labels"] = json!({"app": "other"});
    kubectl_stdin(herd, &["apply", "-f", "-"], &mismatch.to_string())
        .await
        .fails()
        .stderr_has(r#"The Deployment "mismatch" is invalid: "#)
        .stderr_has("spec.template.metadata.labels: Invalid value");
    assert_eq!(herd.get(&format!("{DEPLOYMENTS}/mismatch")).await.0, 404);
    assert_eq!(items(&herd.get_ok(REPLICASETS).await).len(), 0);

    // Unknown fields: kubectl's default --validate=strict asks the server (fieldValidation=Strict),
    // which rejects the object naming every unknown field.
    let unknown = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "unknown"},
        "spec": {"bogus": 1, "containers": [{"name": "c", "image": "127.0.0.1:9/absent:v1", "imagee": "x"}]},
    })
    .to_string();
    kubectl_stdin(herd, &["create", "-f", "-"], &unknown)
        .await
        .fails()
        .stderr_has("Error from server (BadRequest)")
        .stderr_has(r#"strict decoding error: unknown field "spec.bogus""#)
        .stderr_has(r#"unknown field "spec.containers[0].imagee""#);
    assert_eq!(
        herd.get(&format!("{PODS}/unknown")).await.0,
        404,
        "a pod with unknown fields was stored"
    );
    // --validate=warn: stored without them, a warning per field.
    kubectl_stdin(herd, &["create", "--validate=warn", "-f", "-"], &unknown)
        .await
        .ok()
        .stderr_has(r#"Warning: unknown field "spec.bogus""#);
    let stored = herd.get_ok(&format!("{PODS}/unknown")).await;
    assert!(stored["spec"].get("bogus").is_none(), "{}", stored["spec"]);

    // A stale resourceVersion: Conflict, and the newer write stays.
    kubectl_stdin(herd, &["create", "-f", "-"], &configmap("cm"))
        .await
        .ok();
    let stale = kubectl(herd, &["get", "configmap", "cm", "-o", "json"])
        .await
        .ok()
        .stdout;
    kubectl(
        herd,
        &[
            "patch",
            "configmap",
            "cm",
            "--type",
            "merge",
            "-p",
            r#"{"data":{"a":"2"}}"#,
        ],
    )
    .await
    .ok();
    kubectl_stdin(herd, &["replace", "-f", "-"], &stale)
        .await
        .fails()
        .stderr_has(r#"Error from server (Conflict): error when replacing "STDIN": Operation cannot be fulfilled on configmaps "cm": the object has been modified; please apply your changes to the latest version and try again"#);
    assert_eq!(
        herd.get_ok(&format!("{CONFIGMAPS}/cm")).await["data"]["a"],
        "2"
    );

    // A missing namespace, an unknown kind, an unknown resource type.
    kubectl_stdin(herd, &["create", "-n", "nope", "-f", "-"], &configmap("x"))
        .await
        .fails()
        .stderr_has(r#"Error from server (NotFound): error when creating "STDIN": namespaces "nope" not found"#);
    let frob = json!({"apiVersion": "v1", "kind": "Frob", "metadata": {"name": "x"}}).to_string();
    kubectl_stdin(herd, &["apply", "-f", "-"], &frob)
        .await
        .fails()
        .stderr_has(r#"no matches for kind "Frob" in version "v1""#);
    kubectl(herd, &["get", "frobs"])
        .await
        .fails()
        .stderr_has(r#"the server doesn't have a resource type "frobs""#);

    // An update that would make the object invalid: 422, object unchanged.
    herd.create(
        DEPLOYMENTS,
        &sleeper_deployment("d", "127.0.0.1:9/absent:v1", 0),
    )
    .await;
    let before = herd.get_ok(&format!("{DEPLOYMENTS}/d")).await;
    kubectl(herd, &["patch", "deployment", "d", "--type", "merge", "-p", r#"{"spec":{"replicas":-1}}"#])
        .await
        .fails()
        .stderr_has(r#"The Deployment "d" is invalid: spec.replicas: Invalid value: -1: must be greater than or equal to 0"#);
    let after = herd.get_ok(&format!("{DEPLOYMENTS}/d")).await;
    // (Not the resourceVersion: the deployment controller writes status concurrently.)
    assert_eq!(after["spec"], before["spec"]);
    assert_eq!(
        after["metadata"]["generation"],
        before["metadata"]["generation"]
    );
}

/// Pod Security admission: a namespace labelled `enforce=baseline` refuses a hostPath pod with kube's
/// message, and takes one the level allows; with `warn=restricted`, kubectl prints kube's warning.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_baseline_namespace_refuses_a_host_path_pod() {
    let herd = &Herd::up(HerdOptions::control()).await;
    kubectl(herd, &["create", "namespace", "locked"]).await.ok();
    kubectl(
        herd,
        &[
            "label",
            "namespace",
            "locked",
            "pod-security.kubernetes.io/enforce=baseline",
        ],
    )
    .await
    .ok();
    let pod = |name: &str, host_path: bool| {
        let mut pod = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "locked"},
            "spec": {"containers": [{"name": "c", "image": "example/app:1"}]}});
        if host_path {
            pod["spec"]["volumes"] = json!([{"name": "data", "hostPath": {"path": "/etc"}}]);
        }
        pod.to_string()
    };
    let out = kubectl_stdin(herd, &["apply", "-f", "-"], &pod("reader", true))
        .await
        .fails();
    assert_eq!(
        out.stderr.trim(),
        r#"Error from server (Forbidden): error when creating "STDIN": pods "reader" is forbidden: violates PodSecurity "baseline:latest": hostPath volumes (volume "data")"#
    );
    kubectl_stdin(herd, &["apply", "-f", "-"], &pod("plain", false))
        .await
        .ok()
        .stdout_has("pod/plain created");

    // A `warn` level refuses nothing; kubectl prints kube's warning.
    kubectl(
        herd,
        &[
            "label",
            "namespace",
            "locked",
            "pod-security.kubernetes.io/warn=restricted",
        ],
    )
    .await
    .ok();
    kubectl_stdin(herd, &["create", "-f", "-"], &pod("warned", false))
        .await
        .ok()
        .stdout_has("pod/warned created")
        .stderr_has(r#"Warning: would violate PodSecurity "restricted:latest": allowPrivilegeEscalation != false (container "c" must set securityContext.allowPrivilegeEscalation=false), unrestricted capabilities (container "c" must set securityContext.capabilities.drop=["ALL"]), runAsNonRoot != true (pod or container "c" must set securityContext.runAsNonRoot=true), seccompProfile (pod or container "c" must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost")"#);
    // A workload's pod template is warned about, never refused.
    kubectl(
        herd,
        &["create", "deployment", "web", "--image=example/app:1", "-n", "locked"],
    )
    .await
    .ok()
    .stdout_has("deployment.apps/web created")
    .stderr_has(r#"Warning: would violate PodSecurity "restricted:latest": allowPrivilegeEscalation != false (container "app" must set securityContext.allowPrivilegeEscalation=false)"#);
}

/// herd's Pod Security default: a namespace without labels (`default` too) enforces `baseline`, so a hostPath
/// pod is refused there with kube's message; `kube-system` is exempt and a namespace labelled `privileged`
/// takes it. `--admission-control-config-file` with kube-apiserver's own default (privileged) takes it anywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn herd_enforces_baseline_where_a_namespace_says_nothing() {
    let herd = &Herd::up(HerdOptions::control()).await;
    let pod = |name: &str, namespace: &str| {
        json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"containers": [{"name": "c", "image": "example/app:1"}],
                     "volumes": [{"name": "data", "hostPath": {"path": "/etc"}}]}})
        .to_string()
    };
    let out = kubectl_stdin(herd, &["create", "-f", "-"], &pod("reader", "default"))
        .await
        .fails();
    assert_eq!(
        out.stderr.trim(),
        r#"Error from server (Forbidden): error when creating "STDIN": pods "reader" is forbidden: violates PodSecurity "baseline:latest": hostPath volumes (volume "data")"#
    );
    kubectl_stdin(herd, &["create", "-f", "-"], &pod("reader", "kube-system"))
        .await
        .ok()
        .stdout_has("pod/reader created");
    kubectl(herd, &["create", "namespace", "trusted"])
        .await
        .ok();
    kubectl(
        herd,
        &[
            "label",
            "namespace",
            "trusted",
            "pod-security.kubernetes.io/enforce=privileged",
            "pod-security.kubernetes.io/audit=restricted",
        ],
    )
    .await
    .ok();
    kubectl_stdin(herd, &["create", "-f", "-"], &pod("reader", "trusted"))
        .await
        .ok()
        .stdout_has("pod/reader created");
    // The audit level refuses nothing; herd keeps no audit log, the annotation kube puts on the audit event
    // goes to herd's log.
    let logs = herd.logs();
    assert!(
        logs.contains(
            "pod-security.kubernetes.io/audit-violations: would violate PodSecurity \"restricted:latest\": \
             allowPrivilegeEscalation != false"
        ),
        "{logs}"
    );

    // kube-apiserver's default, as a file.
    let config = herd.data_dir.with_file_name("admission.yaml");
    std::fs::write(
        &config,
        "apiVersion: apiserver.config.k8s.io/v1\nkind: AdmissionConfiguration\nplugins:\n- name: PodSecurity\n  \
         configuration:\n    apiVersion: pod-security.admission.config.k8s.io/v1\n    kind: PodSecurityConfiguration\n    \
         defaults:\n      enforce: privileged\n",
    )
    .expect("write the admission configuration");
    let open = &Herd::up(HerdOptions {
        extra_args: vec![
            "--admission-control-config-file".into(),
            config.display().to_string(),
        ],
        ..HerdOptions::control()
    })
    .await;
    kubectl_stdin(open, &["create", "-f", "-"], &pod("reader", "default"))
        .await
        .ok()
        .stdout_has("pod/reader created");
}
