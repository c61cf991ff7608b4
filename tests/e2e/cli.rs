//! The herd CLI against a running cluster: apply (multi-document YAML), get, logs, delete.

use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::*;

/// The line of `out` (lower-cased) that starts with `kind` and ends with `/<name> <verb>`.
fn has_line(out: &str, kind: &str, name: &str, verb: &str) -> bool {
    out.lines()
        .map(|l| l.trim().to_lowercase())
        .any(|l| l.starts_with(kind) && l.ends_with(&format!("/{name} {verb}")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_get_logs_delete() {
    let registry = Registry::start().await;
    let hello = registry.image("hello:v1");
    let web = registry.image("http-hello:v1");
    push("hello", &hello).await;
    push("http-hello", &web).await;
    let herd = Herd::up(HerdOptions::default()).await;

    let dir = tempfile::tempdir().expect("temp dir");
    let manifest = dir.path().join("app.yaml");
    let documents = [
        to_yaml(&service("web", "web", 80, 8080)),
        to_yaml(&http_hello_deployment("web", &web, 1)),
        to_yaml(&hello_pod("hello", &hello, &["from-cli"], "Never")),
    ];
    std::fs::write(
        &manifest,
        format!("# three documents\n{}", documents.join("---\n")),
    )
    .expect("write manifest");
    let file = manifest.display().to_string();

    let out = herd.cli(&["apply", "-f", &file]).await.ok();
    assert!(
        has_line(&out.stdout, "service", "web", "created"),
        "apply output:\n{}",
        out.stdout
    );
    assert!(
        has_line(&out.stdout, "deployment", "web", "created"),
        "apply output:\n{}",
        out.stdout
    );
    assert!(
        has_line(&out.stdout, "pod", "hello", "created"),
        "apply output:\n{}",
        out.stdout
    );
    let svc = herd.get_ok(&format!("{SERVICES}/web")).await;
    herd.get_ok(&format!("{DEPLOYMENTS}/web")).await;
    herd.wait_phase("hello", "Succeeded").await;

    // Applying a changed document again updates the object in place.
    let mut changed = service("web", "web", 80, 8080);
    changed["metadata"]["labels"]["tier"] = json!("front");
    std::fs::write(&manifest, to_yaml(&changed)).expect("write manifest");
    let out = herd.cli(&["apply", "-f", &file]).await.ok();
    assert!(
        has_line(&out.stdout, "service", "web", "configured"),
        "re-apply output:\n{}",
        out.stdout
    );
    let updated = herd.get_ok(&format!("{SERVICES}/web")).await;
    assert_eq!(s(&updated, "/metadata/labels/tier"), "front");
    assert_eq!(
        updated["metadata"]["uid"], svc["metadata"]["uid"],
        "re-apply recreated the service"
    );

    // get: table, one object as JSON and YAML, label selector, all namespaces.
    let out = herd.cli(&["get", "pods"]).await.ok();
    assert!(
        out.stdout.contains("NAME"),
        "no table header:\n{}",
        out.stdout
    );
    assert!(
        out.stdout.lines().any(|l| l.starts_with("hello ")),
        "hello missing:\n{}",
        out.stdout
    );
    let out = herd.cli(&["get", "pods", "hello", "-o", "json"]).await.ok();
    let pod: Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("-o json ({e}):\n{}", out.stdout));
    assert_eq!(s(&pod, "/metadata/name"), "hello");
    assert_eq!(phase(&pod), "Succeeded");
    let out = herd.cli(&["get", "pods", "hello", "-o", "yaml"]).await.ok();
    assert!(
        out.stdout.lines().any(|l| l.trim() == "name: hello"),
        "-o yaml:\n{}",
        out.stdout
    );
    assert!(
        out.stdout.lines().any(|l| l == "kind: Pod"),
        "-o yaml:\n{}",
        out.stdout
    );
    let web_pods = wait_for(
        "a pod of deployment web",
        Duration::from_secs(30),
        || async {
            let out = herd.cli(&["get", "pods", "-l", "app=web"]).await.ok();
            let rows: Vec<String> = out.stdout.lines().skip(1).map(str::to_string).collect();
            if rows.iter().any(|r| r.starts_with("web-")) {
                Ok(rows)
            } else {
                Err(out.stdout)
            }
        },
    )
    .await;
    assert!(
        !web_pods.iter().any(|r| r.starts_with("hello")),
        "-l app=web listed hello: {web_pods:?}"
    );
    let out = herd.cli(&["get", "pods", "-A"]).await.ok();
    assert!(
        out.stdout.contains("default") && out.stdout.contains("hello"),
        "-A:\n{}",
        out.stdout
    );
    let out = herd.cli(&["get", "deployments"]).await.ok();
    assert!(
        out.stdout.lines().any(|l| l.starts_with("web ")),
        "get deployments:\n{}",
        out.stdout
    );
    let out = herd.cli(&["get", "pods", "-o", "wide"]).await.ok();
    assert!(
        out.stdout.contains("e2e-node"),
        "-o wide shows the node:\n{}",
        out.stdout
    );

    // logs
    let out = herd.cli(&["logs", "hello"]).await.ok();
    assert!(
        out.stdout.contains("Hello from herd!"),
        "logs:\n{}",
        out.stdout
    );
    assert!(
        out.stdout.contains(r#"args: ["from-cli"]"#),
        "logs:\n{}",
        out.stdout
    );
    let out = herd
        .cli(&["logs", "hello", "-c", "hello", "-n", "default"])
        .await
        .ok();
    assert!(
        out.stdout.contains("env GREETING=hi"),
        "logs -c:\n{}",
        out.stdout
    );

    // delete
    herd.cli(&["delete", "pods", "hello"]).await.ok();
    herd.wait_pod_gone("hello", Duration::from_secs(15)).await;
    herd.cli(&["delete", "services", "web"]).await.ok();
    assert_eq!(
        herd.get(&format!("{SERVICES}/web")).await.0,
        404,
        "service still there after herd delete"
    );

    // Errors: non-zero exit and a message on stderr, not a panic.
    let out = herd.cli(&["get", "pods", "hello"]).await;
    assert!(
        !out.status.success(),
        "get of a deleted pod succeeded:\n{}",
        out.stdout
    );
    assert!(
        out.stderr.to_lowercase().contains("not found"),
        "stderr: {}",
        out.stderr
    );
    assert!(!out.stderr.contains("panicked"), "stderr: {}", out.stderr);
    let out = herd.cli(&["apply", "-f", "/nonexistent/file.yaml"]).await;
    assert!(
        !out.status.success() && !out.stderr.is_empty() && !out.stderr.contains("panicked"),
        "{out:?}"
    );
}

/// `herd get ARGS` and `kubectl get ARGS` as headers and rows, AGE left out (the two runs are apart
/// in time); `Err` describes the difference.
async fn compare_get(herd: &Herd, args: &[&str]) -> Result<Table, String> {
    let mut all = vec!["get"];
    all.extend_from_slice(args);
    let ours = herd.cli(&all).await.ok();
    let theirs = kubectl(herd, &all).await.ok();
    let without_age = |text: &str| -> Option<Table> {
        let mut table = Table::parse(text)?;
        if let Some(age) = table.columns.iter().position(|c| c == "AGE") {
            table.columns.remove(age);
            for row in &mut table.rows {
                row.remove(age);
            }
        }
        Some(table)
    };
    let (Some(ours_table), Some(theirs_table)) =
        (without_age(&ours.stdout), without_age(&theirs.stdout))
    else {
        return Err(format!(
            "herd {all:?}:\n{}\nkubectl:\n{}",
            ours.stdout, theirs.stdout
        ));
    };
    if ours_table.columns != theirs_table.columns || ours_table.rows != theirs_table.rows {
        return Err(format!(
            "herd {all:?}:\n{}\nkubectl:\n{}",
            ours.stdout, theirs.stdout
        ));
    }
    Ok(ours_table)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_prints_the_servers_tables_as_kubectl_does() {
    let registry = Registry::start().await;
    let spin = registry.image("spin:v1");
    let hello = registry.image("hello:v1");
    let web = registry.image("http-hello:v1");
    push("spin", &spin).await;
    push("hello", &hello).await;
    push("http-hello", &web).await;
    let herd = Herd::up(HerdOptions::default()).await;

    // An init container that never finishes: the pod's STATUS is Init:0/1 (kubectl's, from the
    // server's printer), where a table computed from the phase would say Pending.
    let mut pod = hello_pod("init-wait", &hello, &[], "Always");
    pod["spec"]["initContainers"] = json!([{"name": "wait", "image": spin}]);
    herd.create(PODS, &pod).await;
    herd.create(SERVICES, &service("web", "web", 80, 8080))
        .await;
    herd.create(DEPLOYMENTS, &http_hello_deployment("web", &web, 1))
        .await;
    wait_for("deployment web ready", START_TIMEOUT, || async {
        let out = kubectl(&herd, &["get", "deployment", "web"]).await.ok();
        let table = out.table();
        match table.row("web").get("READY") {
            "1/1" => Ok(()),
            _ => Err(out.stdout.clone()),
        }
    })
    .await;
    let table = wait_for("the init container running", START_TIMEOUT, || async {
        compare_get(&herd, &["pods"]).await.and_then(|table| {
            match table.row("init-wait").get("STATUS") {
                "Init:0/1" => Ok(table),
                other => Err(format!("STATUS {other}")),
            }
        })
    })
    .await;
    assert_eq!(
        table.columns,
        ["NAME", "READY", "STATUS", "RESTARTS"],
        "{table:#?}"
    );

    for args in [
        &["pods", "-o", "wide"][..],
        &["pods", "-A"],
        &["pod", "init-wait"],
        &["pods", "-l", "app=web"],
        &["deployments"],
        &["replicasets", "-o", "wide"],
        &["services"],
        &["nodes"],
        &["namespaces"],
    ] {
        wait_for(
            &format!("herd get {args:?} as kubectl prints it"),
            Duration::from_secs(30),
            || compare_get(&herd, args),
        )
        .await;
    }

    // Nothing to list: kubectl's line on stderr, nothing on stdout.
    let ours = herd.cli(&["get", "pods", "-l", "app=none"]).await.ok();
    let theirs = kubectl(&herd, &["get", "pods", "-l", "app=none"])
        .await
        .ok();
    assert_eq!(
        (ours.stdout.as_str(), ours.stderr.as_str()),
        ("", "No resources found in default namespace.\n")
    );
    assert_eq!(ours.stderr, theirs.stderr);
}

/// A Deployment manifest without `replicas`, its one container with `image` and the env `names`.
fn deployment_manifest(image: &str, env: &[&str]) -> Value {
    let env: Vec<Value> = env
        .iter()
        .map(|name| json!({"name": name, "value": "1"}))
        .collect();
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": image, "env": env}]},
            },
        },
    })
}

/// Writes `object` to `manifest` and runs `herd apply -f` on it.
async fn apply(herd: &Herd, manifest: &std::path::Path, object: Value) -> CliOutput {
    std::fs::write(manifest, to_yaml(&object)).expect("write manifest");
    herd.cli(&["apply", "-f", &manifest.display().to_string()])
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_is_server_side_apply() {
    let herd = Herd::up(HerdOptions::control()).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let manifest = dir.path().join("web.yaml");
    let file = manifest.display().to_string();

    let out = apply(
        &herd,
        &manifest,
        deployment_manifest("127.0.0.1:1/web:v1", &["A", "B"]),
    )
    .await
    .ok();
    assert!(
        has_line(&out.stdout, "deployment", "web", "created"),
        "{out:?}"
    );
    // The same manifest again writes nothing (a ConfigMap: no controller writes to it meanwhile).
    let config = json!({"apiVersion": "v1", "kind": "ConfigMap",
                        "metadata": {"name": "settings"}, "data": {"a": "1"}});
    let out = apply(&herd, &manifest, config.clone()).await.ok();
    assert!(
        has_line(&out.stdout, "configmap", "settings", "created"),
        "{out:?}"
    );
    let out = apply(&herd, &manifest, config).await.ok();
    assert!(
        has_line(&out.stdout, "configmap", "settings", "unchanged"),
        "{out:?}"
    );

    // Another manager scales it; herd's manifest never named replicas, so the next apply keeps them
    // (a client-side update that replaced the object would reset them to the default 1).
    kubectl(&herd, &["scale", "deployment", "web", "--replicas=3"])
        .await
        .ok();
    let out = apply(
        &herd,
        &manifest,
        deployment_manifest("127.0.0.1:1/web:v2", &["A"]),
    )
    .await
    .ok();
    assert!(
        has_line(&out.stdout, "deployment", "web", "configured"),
        "{out:?}"
    );
    let deployment = herd.get_ok(&format!("{DEPLOYMENTS}/web")).await;
    assert_eq!(deployment["spec"]["replicas"], 3, "{deployment:#}");
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["image"], "127.0.0.1:1/web:v2", "{deployment:#}");
    // The env element herd applied before and the manifest dropped is gone (SSA, not a list merge).
    assert_eq!(
        container["env"],
        json!([{"name": "A", "value": "1"}]),
        "{deployment:#}"
    );

    // Naming replicas now conflicts with the scale's manager: kube's message on one line, non-zero.
    let mut scaled = deployment_manifest("127.0.0.1:1/web:v2", &["A"]);
    scaled["spec"]["replicas"] = json!(2);
    let out = apply(&herd, &manifest, scaled).await;
    assert!(!out.status.success(), "{out:?}");
    assert_eq!(out.stderr.lines().count(), 1, "{out:?}");
    assert!(
        out.stderr
            .contains("Apply failed with 1 conflict: conflict with")
            && out.stderr.contains(".spec.replicas"),
        "{out:?}"
    );
    let out = herd
        .cli(&["apply", "-f", &file, "--force-conflicts"])
        .await
        .ok();
    assert!(
        has_line(&out.stdout, "deployment", "web", "configured"),
        "{out:?}"
    );
    let deployment = herd.get_ok(&format!("{DEPLOYMENTS}/web")).await;
    assert_eq!(deployment["spec"]["replicas"], 2, "{deployment:#}");
}
