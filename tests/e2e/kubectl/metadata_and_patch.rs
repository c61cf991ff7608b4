//! `kubectl label`, `annotate` and `patch` with `--type merge|json|strategic` (Kubernetes merge keys and
//! directives), `--subresource=scale`, `--dry-run=server`. Runs against `herd control` alone: the objects
//! only need to be stored.

use serde_json::json;

use super::*;

const CONFIGMAPS: &str = "/api/v1/namespaces/default/configmaps";

fn env_of(deployment: &Value) -> Value {
    deployment["spec"]["template"]["spec"]["containers"][0]["env"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_label_annotate_and_patch_types() {
    let herd = &Herd::up(HerdOptions::control()).await;
    herd.create(
        PODS,
        &json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "127.0.0.1:9/absent:v1"}]}}),
    )
    .await;
    herd.create(
        CONFIGMAPS,
        &json!({"metadata": {"name": "c"}, "data": {"a": "1"}}),
    )
    .await;
    let mut d = sleeper_deployment("d", "127.0.0.1:9/absent:v1", 0);
    d["spec"]["template"]["spec"]["containers"][0] = json!({
        "name": "main",
        "image": "127.0.0.1:9/absent:v1",
        "env": [{"name": "A", "value": "1"}],
        "ports": [{"name": "http", "containerPort": 8080}],
    });
    herd.create(DEPLOYMENTS, &d).await;
    let pod_path = format!("{PODS}/p");
    let cm_path = format!("{CONFIGMAPS}/c");
    let d_path = format!("{DEPLOYMENTS}/d");

    // label: add, refuse to overwrite silently, overwrite, remove.
    kubectl(herd, &["label", "pod", "p", "tier=front"])
        .await
        .ok()
        .stdout_has("pod/p labeled");
    assert_eq!(
        s(&herd.get_ok(&pod_path).await, "/metadata/labels/tier"),
        "front"
    );
    kubectl(herd, &["label", "pod", "p", "tier=back"])
        .await
        .fails()
        .stderr_has("'tier' already has a value (front), and --overwrite is false");
    kubectl(herd, &["label", "pod", "p", "tier=back", "--overwrite"])
        .await
        .ok()
        .stdout_has("pod/p labeled");
    assert_eq!(
        s(&herd.get_ok(&pod_path).await, "/metadata/labels/tier"),
        "back"
    );
    kubectl(herd, &["label", "pod", "p", "tier-"])
        .await
        .ok()
        .stdout_has("pod/p unlabeled");
    assert!(
        herd.get_ok(&pod_path)
            .await
            .pointer("/metadata/labels/tier")
            .is_none()
    );
    // --resource-version makes the patch conditional: a stale one is a Conflict.
    let rv = s(&herd.get_ok(&pod_path).await, "/metadata/resourceVersion").to_string();
    kubectl(herd, &["label", "pod", "p", "x=1"]).await.ok();
    kubectl(herd, &["label", "pod", "p", "y=2", &format!("--resource-version={rv}")])
        .await
        .fails()
        .stderr_has(r#"Operation cannot be fulfilled on pods "p": the object has been modified; please apply your changes to the latest version and try again"#);
    assert!(
        herd.get_ok(&pod_path)
            .await
            .pointer("/metadata/labels/y")
            .is_none()
    );

    // annotate: add (with spaces), remove; metadata changes leave generation alone.
    let generation = herd.get_ok(&d_path).await["metadata"]["generation"].clone();
    kubectl(herd, &["annotate", "deployment", "d", "note=hello world"])
        .await
        .ok()
        .stdout_has("deployment.apps/d annotated");
    let got = herd.get_ok(&d_path).await;
    assert_eq!(s(&got, "/metadata/annotations/note"), "hello world");
    assert_eq!(
        got["metadata"]["generation"], generation,
        "an annotation bumped generation"
    );
    kubectl(herd, &["annotate", "deployment", "d", "note-"])
        .await
        .ok();
    assert!(
        herd.get_ok(&d_path)
            .await
            .pointer("/metadata/annotations/note")
            .is_none()
    );

    // --type merge (RFC 7386): null deletes a key.
    kubectl(
        herd,
        &[
            "patch",
            "configmap",
            "c",
            "--type",
            "merge",
            "-p",
            r#"{"data":{"b":"2","a":null}}"#,
        ],
    )
    .await
    .ok()
    .stdout_has("configmap/c patched");
    assert_eq!(herd.get_ok(&cm_path).await["data"], json!({"b": "2"}));

    // --type json (RFC 6902): operations in order; a failed `test` changes nothing.
    kubectl(
        herd,
        &[
            "patch",
            "configmap",
            "c",
            "--type",
            "json",
            "-p",
            r#"[{"op":"add","path":"/data/c","value":"3"},{"op":"remove","path":"/data/b"}]"#,
        ],
    )
    .await
    .ok()
    .stdout_has("configmap/c patched");
    let before = herd.get_ok(&cm_path).await;
    assert_eq!(before["data"], json!({"c": "3"}));
    kubectl(
        herd,
        &["patch", "configmap", "c", "--type", "json", "-p", r#"[{"op":"add","path":"/data/d","value":"4"},{"op":"test","path":"/data/c","value":"wrong"}]"#],
    )
    .await
    .fails();
    let after = herd.get_ok(&cm_path).await;
    assert_eq!(
        after["data"],
        json!({"c": "3"}),
        "a failed JSON patch was partly applied"
    );
    assert_eq!(
        after["metadata"]["resourceVersion"],
        before["metadata"]["resourceVersion"]
    );

    // --type strategic: env merged by name, the image kept; generation counts the spec change.
    let generation = herd.get_ok(&d_path).await["metadata"]["generation"]
        .as_i64()
        .unwrap_or(0);
    kubectl(
        herd,
        &["patch", "deployment", "d", "--type", "strategic", "-p", r#"{"spec":{"template":{"spec":{"containers":[{"name":"main","env":[{"name":"B","value":"2"}]}]}}}}"#],
    )
    .await
    .ok()
    .stdout_has("deployment.apps/d patched");
    let got = herd.get_ok(&d_path).await;
    // Items only in the patch come before items only on the server (kube-apiserver's mergeSortedSlice).
    assert_eq!(
        env_of(&got),
        json!([{"name": "B", "value": "2"}, {"name": "A", "value": "1"}])
    );
    assert_eq!(
        s(&got, "/spec/template/spec/containers/0/image"),
        "127.0.0.1:9/absent:v1"
    );
    assert_eq!(got["metadata"]["generation"], generation + 1);

    // $setElementOrder fixes the order of the merged list (this is what `kubectl apply` sends).
    kubectl(
        herd,
        &["patch", "deployment", "d", "-p", r#"{"spec":{"template":{"spec":{"$setElementOrder/containers":[{"name":"main"}],"containers":[{"name":"main","$setElementOrder/env":[{"name":"A"},{"name":"B"}],"env":[{"name":"B","value":"3"}]}]}}}}"#],
    )
    .await
    .ok();
    assert_eq!(
        env_of(&herd.get_ok(&d_path).await),
        json!([{"name": "A", "value": "1"}, {"name": "B", "value": "3"}])
    );

    // Strategic is kubectl's default: ports merge by containerPort.
    kubectl(
        herd,
        &["patch", "deployment", "d", "-p", r#"{"spec":{"template":{"spec":{"containers":[{"name":"main","ports":[{"name":"metrics","containerPort":9090}]}]}}}}"#],
    )
    .await
    .ok();
    let got = herd.get_ok(&d_path).await;
    let ports: Vec<i64> = got["spec"]["template"]["spec"]["containers"][0]["ports"]
        .as_array()
        .map(|ps| {
            ps.iter()
                .filter_map(|p| p["containerPort"].as_i64())
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(ports, [9090, 8080]);

    // $patch: delete removes one element by its merge key.
    kubectl(
        herd,
        &["patch", "deployment", "d", "-p", r#"{"spec":{"template":{"spec":{"containers":[{"name":"main","env":[{"name":"A","$patch":"delete"}]}]}}}}"#],
    )
    .await
    .ok();
    assert_eq!(
        env_of(&herd.get_ok(&d_path).await),
        json!([{"name": "B", "value": "3"}])
    );

    // A merge patch replaces lists whole.
    kubectl(
        herd,
        &["patch", "deployment", "d", "--type", "merge", "-p", r#"{"spec":{"template":{"spec":{"containers":[{"name":"other","image":"127.0.0.1:9/other:v1"}]}}}}"#],
    )
    .await
    .ok();
    let containers = herd.get_ok(&d_path).await["spec"]["template"]["spec"]["containers"].clone();
    assert_eq!(containers.as_array().map(Vec::len), Some(1), "{containers}");
    assert_eq!(containers[0]["name"], "other");
    assert!(containers[0].get("env").is_none(), "{containers}");

    // --subresource=scale patches deployments/scale.
    kubectl(
        herd,
        &[
            "patch",
            "deployment",
            "d",
            "--subresource=scale",
            "--type",
            "merge",
            "-p",
            r#"{"spec":{"replicas":2}}"#,
        ],
    )
    .await
    .ok()
    // The answer is the autoscaling/v1 Scale, so kubectl names that.
    .stdout_has("scale.autoscaling/d patched");
    assert_eq!(herd.get_ok(&d_path).await["spec"]["replicas"], 2);

    // --dry-run=server (dryRun=All) answers as if patched and stores nothing.
    let before = herd.get_ok(&cm_path).await;
    kubectl(
        herd,
        &[
            "patch",
            "configmap",
            "c",
            "--type",
            "merge",
            "-p",
            r#"{"data":{"dry":"run"}}"#,
            "--dry-run=server",
        ],
    )
    .await
    .ok()
    .stdout_has("configmap/c patched"); // kubectl 1.37's patch prints no "(server dry run)"
    let after = herd.get_ok(&cm_path).await;
    assert_eq!(after["data"], before["data"]);
    assert_eq!(
        after["metadata"]["resourceVersion"],
        before["metadata"]["resourceVersion"]
    );

    kubectl(
        herd,
        &[
            "patch",
            "configmap",
            "nope",
            "--type",
            "merge",
            "-p",
            r#"{"data":{"a":"1"}}"#,
        ],
    )
    .await
    .fails()
    .stderr_has(r#"Error from server (NotFound): configmaps "nope" not found"#);
}
