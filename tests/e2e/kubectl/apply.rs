//! `kubectl apply -f` of a multi-document manifest, applied twice (the second time a strategic-merge patch
//! with a changed image and env), `--dry-run=server`, and `kubectl apply --server-side` (create, update,
//! field ownership, conflicts, `--force-conflicts`, the migration from client-side apply, conflicts naming
//! the manager that set a field).

use serde_json::json;

use super::*;

const NS: &str = "kc-app";
const LAST_APPLIED: &str =
    "/metadata/annotations/kubectl.kubernetes.io~1last-applied-configuration";

/// Namespace, ConfigMap, Secret, Deployment, Service and Pod. `env` is the web container's env as YAML
/// list items at the right indentation.
fn manifest(http_hello: &str, hello: &str, env: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Namespace
metadata:
  name: {NS}
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: app-config
  namespace: {NS}
data:
  greeting: hello
---
apiVersion: v1
kind: Secret
metadata:
  name: app-secret
  namespace: {NS}
type: Opaque
data:
  password: c2VjcmV0
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: {NS}
  labels:
    app: web
spec:
  replicas: 1
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
      - name: http-hello
        image: {http_hello}
        ports:
        - name: http
          containerPort: 8080
        env:
{env}
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: {NS}
spec:
  selector:
    app: web
  ports:
  - name: http
    port: 80
    targetPort: 8080
---
apiVersion: v1
kind: Pod
metadata:
  name: sleeper
  namespace: {NS}
  labels:
    app: sleeper
spec:
  containers:
  - name: hello
    image: {hello}
    args: ["{SLEEP_ARG}"]
"#
    )
}

fn web_path() -> String {
    format!("{}/web", ns_path(NS, "deployments"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_apply_multi_document_twice_and_server_side() {
    let c = Cluster::up(&[("hello", "v1"), ("http-hello", "v1"), ("http-hello", "v2")]).await;
    let herd = &c.herd;
    let hello = c.image("hello", "v1");
    let v1 = c.image("http-hello", "v1");
    let v2 = c.image("http-hello", "v2");

    // First apply: everything created, in document order.
    let first_env =
        "        - name: MODE\n          value: one\n        - name: EXTRA\n          value: \"1\"";
    let out = kubectl_stdin(
        herd,
        &["apply", "-f", "-"],
        &manifest(&v1, &hello, first_env),
    )
    .await
    .ok();
    assert_eq!(
        out.lines(),
        [
            "namespace/kc-app created",
            "configmap/app-config created",
            "secret/app-secret created",
            "deployment.apps/web created",
            "service/web created",
            "pod/sleeper created",
        ]
    );
    let d = herd.get_ok(&web_path()).await;
    assert!(
        !s(&d, LAST_APPLIED).is_empty(),
        "no last-applied-configuration: {}",
        d["metadata"]
    );
    assert_eq!(d["metadata"]["generation"], 1);
    let secret = herd
        .get_ok(&format!("{}/app-secret", ns_path(NS, "secrets")))
        .await;
    assert_eq!(secret["data"], json!({"password": "c2VjcmV0"}));
    let cm = herd
        .get_ok(&format!("{}/app-config", ns_path(NS, "configmaps")))
        .await;
    assert_eq!(cm["data"], json!({"greeting": "hello"}));
    let svc = herd
        .get_ok(&format!("{}/web", ns_path(NS, "services")))
        .await;
    assert!(
        herd.cidrs.service.contains(s(&svc, "/spec/clusterIP")),
        "{}",
        svc["spec"]
    );
    wait_ready_pods(herd, NS, "app=web", 1).await;
    wait_ready_pods(herd, NS, "app=sleeper", 1).await;

    // Someone else annotates the Deployment; the next apply must keep that.
    kubectl(
        herd,
        &[
            "annotate",
            "-n",
            NS,
            "deployment",
            "web",
            "owner=someone-else",
        ],
    )
    .await
    .ok();

    // Second apply: new image, MODE changed, EXTRA dropped. Only the Deployment changes.
    let second_env = "        - name: MODE\n          value: two";
    let out = kubectl_stdin(
        herd,
        &["apply", "-f", "-"],
        &manifest(&v2, &hello, second_env),
    )
    .await
    .ok();
    assert_eq!(
        out.lines(),
        [
            "namespace/kc-app unchanged",
            "configmap/app-config unchanged",
            "secret/app-secret unchanged",
            "deployment.apps/web configured",
            "service/web unchanged",
            "pod/sleeper unchanged",
        ]
    );
    let d = herd.get_ok(&web_path()).await;
    let container = &d["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["image"], v2.as_str());
    assert_eq!(
        container["env"],
        json!([{"name": "MODE", "value": "two"}]),
        "EXTRA was in the last applied configuration, so it goes"
    );
    assert_eq!(container["ports"][0]["containerPort"], 8080);
    assert_eq!(s(&d, "/metadata/annotations/owner"), "someone-else");
    assert_eq!(d["metadata"]["generation"], 2);
    wait_for("web rolled out to v2", START_TIMEOUT, || async {
        let pods = wait_ready_pods(herd, NS, "app=web", 1).await;
        let image = s(&pods[0], "/spec/containers/0/image").to_string();
        if image == v2 { Ok(()) } else { Err(image) }
    })
    .await;

    // --dry-run=server: reported, not stored.
    let third_env = "        - name: MODE\n          value: three";
    let out = kubectl_stdin(
        herd,
        &["apply", "--dry-run=server", "-f", "-"],
        &manifest(&v2, &hello, third_env),
    )
    .await
    .ok();
    out.stdout_has("deployment.apps/web configured (server dry run)");
    let d = herd.get_ok(&web_path()).await;
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["env"][0]["value"],
        "two"
    );

    // Server-side apply creates when absent, owned by the field manager "kubectl".
    let ssa = |data: serde_json::Value| {
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ssa", "namespace": NS}, "data": data})
            .to_string()
    };
    let ssa_path = format!("{}/ssa", ns_path(NS, "configmaps"));
    kubectl_stdin(
        herd,
        &["apply", "--server-side", "-f", "-"],
        &ssa(json!({"a": "1", "b": "2"})),
    )
    .await
    .ok()
    .stdout_has("configmap/ssa serverside-applied");
    let cm = herd.get_ok(&ssa_path).await;
    assert_eq!(cm["data"], json!({"a": "1", "b": "2"}));
    let managers = cm["metadata"]["managedFields"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        managers.iter().any(|m| m["manager"] == "kubectl"
            && m["operation"] == "Apply"
            && m["fieldsType"] == "FieldsV1"),
        "no Apply entry for kubectl in managedFields: {managers:?}"
    );
    // The same manager dropping a field it owns removes it.
    kubectl_stdin(
        herd,
        &["apply", "--server-side", "-f", "-"],
        &ssa(json!({"a": "1"})),
    )
    .await
    .ok();
    assert_eq!(herd.get_ok(&ssa_path).await["data"], json!({"a": "1"}));
    // Another manager changing that field conflicts …
    kubectl_stdin(
        herd,
        &["apply", "--server-side", "--field-manager=other", "-f", "-"],
        &ssa(json!({"a": "2"})),
    )
    .await
    .fails()
    .stderr_has(r#"conflict with "kubectl""#)
    .stderr_has(".data.a");
    assert_eq!(herd.get_ok(&ssa_path).await["data"], json!({"a": "1"}));
    // … unless it forces, and then it owns the field.
    kubectl_stdin(
        herd,
        &[
            "apply",
            "--server-side",
            "--field-manager=other",
            "--force-conflicts",
            "-f",
            "-",
        ],
        &ssa(json!({"a": "2"})),
    )
    .await
    .ok()
    .stdout_has("configmap/ssa serverside-applied");
    assert_eq!(herd.get_ok(&ssa_path).await["data"], json!({"a": "2"}));

    // Server-side apply of a whole Deployment that did not exist, then an update of it.
    let mut deployment = sleeper_deployment("ssa-web", &hello, 1);
    deployment["metadata"]["namespace"] = json!(NS);
    kubectl_stdin(
        herd,
        &["apply", "--server-side", "-f", "-"],
        &deployment.to_string(),
    )
    .await
    .ok()
    .stdout_has("deployment.apps/ssa-web serverside-applied");
    wait_ready_pods(herd, NS, "app=ssa-web", 1).await;
    deployment["spec"]["replicas"] = json!(2);
    kubectl_stdin(
        herd,
        &["apply", "--server-side", "-f", "-"],
        &deployment.to_string(),
    )
    .await
    .ok()
    .stdout_has("deployment.apps/ssa-web serverside-applied");
    wait_ready_pods(herd, NS, "app=ssa-web", 2).await;
}

/// `kubectl apply` then `kubectl apply --server-side` of the same manifest migrates without conflict;
/// after `kubectl scale`, a server-side apply of other replicas conflicts with the scaler, named as
/// kube-apiserver names it (the user agent's `kubectl`, through the `scale` subresource).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_client_side_to_server_side_apply_and_scale_conflict() {
    let herd = &Herd::up(HerdOptions::control()).await;
    let manifest = |replicas: i32| {
        sleeper_deployment("migrate", "127.0.0.1:9/absent:v1", replicas).to_string()
    };
    let path = format!("{DEPLOYMENTS}/migrate");
    kubectl_stdin(herd, &["apply", "-f", "-"], &manifest(1))
        .await
        .ok()
        .stdout_has("deployment.apps/migrate created");
    let d = herd.get_ok(&path).await;
    let managers = |d: &Value| -> Vec<String> {
        d["metadata"]["managedFields"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| {
                format!(
                    "{} {} {}",
                    e["manager"].as_str().unwrap_or_default(),
                    e["operation"].as_str().unwrap_or_default(),
                    e["subresource"].as_str().unwrap_or_default()
                )
                .trim_end()
                .to_string()
            })
            .collect()
    };
    assert!(
        managers(&d).contains(&"kubectl-client-side-apply Update".to_string()),
        "{:?}",
        managers(&d)
    );

    kubectl_stdin(herd, &["apply", "--server-side", "-f", "-"], &manifest(1))
        .await
        .ok()
        .stdout_has("deployment.apps/migrate serverside-applied");
    let d = herd.get_ok(&path).await;
    assert!(
        managers(&d).contains(&"kubectl Apply".to_string()),
        "{:?}",
        managers(&d)
    );

    kubectl(herd, &["scale", "deployment", "migrate", "--replicas=3"])
        .await
        .ok()
        .stdout_has("deployment.apps/migrate scaled");
    let d = herd.get_ok(&path).await;
    assert!(
        managers(&d).contains(&"kubectl Update scale".to_string()),
        "{:?}",
        managers(&d)
    );
    kubectl_stdin(herd, &["apply", "--server-side", "-f", "-"], &manifest(2))
        .await
        .fails()
        .stderr_has(r#"Apply failed with 1 conflict: conflict with "kubectl" with subresource "scale" using apps/v1: .spec.replicas"#);
    assert_eq!(herd.get_ok(&path).await["spec"]["replicas"], 3);
}
