//! ReplicationController (v1, `rc`) and APIService (apiregistration.k8s.io/v1) through kubectl: an RC
//! keeps its pods (owned, scaled through `kubectl scale`, collected on delete) and prints kube's columns;
//! an APIService is stored, listed with kube-aggregator's columns and deleted.

use super::*;

const RCS: &str = "/api/v1/namespaces/default/replicationcontrollers";
const API_SERVICES: &str = "/apis/apiregistration.k8s.io/v1/apiservices";

/// An RC of `replicas` sleeping `hello` pods labelled `app=<name>`; no selector (kube defaults it from the
/// template's labels).
fn sleeper_rc(name: &str, image: &str, replicas: i32) -> String {
    format!(
        "apiVersion: v1
kind: ReplicationController
metadata:
  name: {name}
spec:
  replicas: {replicas}
  template:
    metadata:
      labels:
        app: {name}
    spec:
      terminationGracePeriodSeconds: {TEST_GRACE_SECONDS}
      containers:
      - name: hello
        image: {image}
        args: [\"{SLEEP_ARG}\"]
"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_replication_controller_keeps_owns_scales_and_cascades() {
    let c = Cluster::up(&[("hello", "v1")]).await;
    let herd = &c.herd;
    let hello = c.image("hello", "v1");

    let out = kubectl_stdin(herd, &["create", "-f", "-"], &sleeper_rc("web", &hello, 3))
        .await
        .ok();
    assert_eq!(out.lines(), ["replicationcontroller/web created"]);
    let rc = herd.get_ok(&format!("{RCS}/web")).await;
    assert_eq!(rc["spec"]["selector"], json!({"app": "web"}), "defaulted");
    assert_eq!(rc["metadata"]["labels"], json!({"app": "web"}), "defaulted");
    let uid = s(&rc, "/metadata/uid").to_string();

    let pods = wait_ready_pods(herd, "default", "app%3Dweb", 3).await;
    for pod in &pods {
        let owner = &pod["metadata"]["ownerReferences"][0];
        assert_eq!(
            (
                s(owner, "/kind"),
                s(owner, "/apiVersion"),
                s(owner, "/name")
            ),
            ("ReplicationController", "v1", "web")
        );
        assert_eq!(
            (s(owner, "/uid"), &owner["controller"]),
            (uid.as_str(), &json!(true))
        );
    }
    wait_object(
        herd,
        &format!("{RCS}/web"),
        "web has 3 ready replicas",
        START_TIMEOUT,
        |rc| rc["status"]["readyReplicas"] == 3 && rc["status"]["availableReplicas"] == 3,
    )
    .await;

    // kube's printer: NAME DESIRED CURRENT READY AGE (wide adds CONTAINERS IMAGES SELECTOR).
    let table = kubectl(herd, &["get", "rc"]).await.ok().table();
    assert_eq!(
        table.columns,
        ["NAME", "DESIRED", "CURRENT", "READY", "AGE"]
    );
    let row = table.row("web");
    assert_eq!(
        (row.get("DESIRED"), row.get("CURRENT"), row.get("READY")),
        ("3", "3", "3")
    );
    assert!(is_age(row.get("AGE")), "{}", row.get("AGE"));
    let wide = kubectl(herd, &["get", "replicationcontrollers", "-o", "wide"])
        .await
        .ok()
        .table();
    let row = wide.row("web");
    assert_eq!(
        (
            row.get("CONTAINERS"),
            row.get("IMAGES"),
            row.get("SELECTOR")
        ),
        ("hello", hello.as_str(), "app=web")
    );

    // A selector the template's labels do not match is refused.
    let bad = sleeper_rc("bad", &hello, 1).replace(
        "spec:\n  replicas: 1\n",
        "spec:\n  replicas: 1\n  selector:\n    app: other\n",
    );
    let out = kubectl_stdin(herd, &["create", "-f", "-"], &bad)
        .await
        .fails();
    out.stderr_has(r#"The ReplicationController "bad" is invalid"#);
    out.stderr_has("`selector` does not match template `labels`");

    // The scale subresource: down to one, the two others deleted.
    let out = kubectl(herd, &["scale", "rc", "web", "--replicas=1"])
        .await
        .ok();
    assert_eq!(out.lines(), ["replicationcontroller/web scaled"]);
    wait_ready_pods(herd, "default", "app%3Dweb", 1).await;
    wait_object(
        herd,
        &format!("{RCS}/web"),
        "web has 1 replica",
        START_TIMEOUT,
        |rc| rc["status"]["replicas"] == 1 && rc["status"]["observedGeneration"] == 2,
    )
    .await;

    // Deleting with the default (background) cascade removes its pods.
    let out = kubectl(herd, &["delete", "rc", "web"]).await.ok();
    assert_eq!(
        out.lines(),
        [r#"replicationcontroller "web" deleted from default namespace"#]
    );
    assert_eq!(herd.get(&format!("{RCS}/web")).await.0, 404);
    wait_for("the pods of web collected", START_TIMEOUT, || async {
        match pod_names(herd, "default", "app%3Dweb").await {
            names if names.is_empty() => Ok(()),
            names => Err(format!("{names:?}")),
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_api_service_is_stored_listed_and_deleted() {
    let herd = &Herd::up(HerdOptions::control()).await;

    // Discovery lists the group and the cluster-scoped resource.
    let out = kubectl(
        herd,
        &["api-resources", "--api-group=apiregistration.k8s.io"],
    )
    .await
    .ok();
    let row = out.table();
    let row = row.row("apiservices");
    assert_eq!(
        (
            row.get("APIVERSION"),
            row.get("NAMESPACED"),
            row.get("KIND")
        ),
        ("apiregistration.k8s.io/v1", "false", "APIService")
    );

    let manifest = "apiVersion: apiregistration.k8s.io/v1
kind: APIService
metadata:
  name: v1alpha1.example.com
spec:
  group: example.com
  version: v1alpha1
  groupPriorityMinimum: 1000
  versionPriority: 15
  service:
    namespace: default
    name: example-api
---
apiVersion: apiregistration.k8s.io/v1
kind: APIService
metadata:
  name: v1.local.example.com
spec:
  group: local.example.com
  version: v1
  groupPriorityMinimum: 1000
  versionPriority: 15
";
    let out = kubectl_stdin(herd, &["apply", "-f", "-"], manifest)
        .await
        .ok();
    assert_eq!(
        out.lines(),
        [
            "apiservice.apiregistration.k8s.io/v1alpha1.example.com created",
            "apiservice.apiregistration.k8s.io/v1.local.example.com created",
        ]
    );
    let stored = herd
        .get_ok(&format!("{API_SERVICES}/v1alpha1.example.com"))
        .await;
    assert_eq!(stored["spec"]["service"]["port"], 443, "defaulted");

    // kube-aggregator's columns: SERVICE is namespace/name or Local; without an availability check the
    // Available condition is not set.
    let table = kubectl(herd, &["get", "apiservices"]).await.ok().table();
    assert_eq!(table.columns, ["NAME", "SERVICE", "AVAILABLE", "AGE"]);
    let row = table.row("v1alpha1.example.com");
    assert_eq!(
        (row.get("SERVICE"), row.get("AVAILABLE")),
        ("default/example-api", "Unknown")
    );
    assert!(is_age(row.get("AGE")), "{}", row.get("AGE"));
    assert_eq!(table.row("v1.local.example.com").get("SERVICE"), "Local");

    // The name must be <version>.<group>.
    let wrong = manifest
        .split("---\n")
        .nth(1)
        .unwrap_or_default()
        .replace("name: v1.local.example.com", "name: v2.local.example.com");
    let out = kubectl_stdin(herd, &["create", "-f", "-"], &wrong)
        .await
        .fails();
    out.stderr_has(r#"The APIService "v2.local.example.com" is invalid: metadata.name"#);

    let out = kubectl(herd, &["delete", "apiservice", "v1alpha1.example.com"])
        .await
        .ok();
    assert_eq!(
        out.lines(),
        [r#"apiservice.apiregistration.k8s.io "v1alpha1.example.com" deleted"#]
    );
    kubectl(herd, &["get", "apiservice", "v1alpha1.example.com"])
        .await
        .fails()
        .stderr_has(r#"apiservices.apiregistration.k8s.io "v1alpha1.example.com" not found"#);
    let names = kubectl(herd, &["get", "apiservices", "-o", "name"])
        .await
        .ok();
    assert_eq!(
        names.lines(),
        ["apiservice.apiregistration.k8s.io/v1.local.example.com"]
    );
}
