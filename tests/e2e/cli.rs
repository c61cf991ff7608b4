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
