//! `kubectl wait`: `--for=condition=Ready|Available`, `--for=jsonpath=…`, `--for=delete`, selectors, and
//! the timeout error.

use std::time::{Duration, Instant};

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_wait_for_conditions_jsonpath_and_delete() {
    let c = Cluster::up(&[("hello", "v1"), ("http-hello", "v1")]).await;
    let herd = &c.herd;
    let hello = c.image("hello", "v1");
    let http_hello = c.image("http-hello", "v1");

    // Created by kubectl, waited for at once: the wait covers the whole start.
    kubectl_stdin(
        herd,
        &["create", "-f", "-"],
        &sleeper_pod("sleeper", &hello).to_string(),
    )
    .await
    .ok()
    .stdout_has("pod/sleeper created");
    let out = kubectl(
        herd,
        &[
            "wait",
            "--for=condition=Ready",
            "pod/sleeper",
            "--timeout=90s",
        ],
    )
    .await
    .ok();
    assert_eq!(out.lines(), ["pod/sleeper condition met"]);
    let pod = herd.pod("sleeper").await.expect("sleeper");
    assert!(running_and_ready(&pod), "{}", pod_summary(&pod));

    herd.create(DEPLOYMENTS, &http_hello_deployment("web", &http_hello, 2))
        .await;
    let out = kubectl(
        herd,
        &[
            "wait",
            "--for=condition=Available",
            "deployment/web",
            "--timeout=90s",
        ],
    )
    .await
    .ok();
    assert_eq!(out.lines(), ["deployment.apps/web condition met"]);
    let d = herd.get_ok(&format!("{DEPLOYMENTS}/web")).await;
    assert_eq!(d["status"]["availableReplicas"], 2, "{}", d["status"]);
    let available = condition(&d, "Available").cloned().unwrap_or_default();
    assert_eq!(s(&available, "/status"), "True");
    assert_eq!(s(&available, "/reason"), "MinimumReplicasAvailable");

    // All pods of a selector.
    let out = kubectl(
        herd,
        &[
            "wait",
            "--for=condition=Ready",
            "pods",
            "-l",
            "app=web",
            "--timeout=90s",
        ],
    )
    .await
    .ok();
    assert_eq!(out.lines().len(), 2, "{}", out.stdout);
    assert!(
        out.lines()
            .iter()
            .all(|l| l.starts_with("pod/web-") && l.ends_with(" condition met")),
        "{}",
        out.stdout
    );

    // jsonpath: a pod that runs to completion.
    herd.create(PODS, &hello_pod("once", &hello, &[], "Never"))
        .await;
    let out = kubectl(
        herd,
        &[
            "wait",
            "--for=jsonpath={.status.phase}=Succeeded",
            "pod/once",
            "--timeout=90s",
        ],
    )
    .await
    .ok();
    assert_eq!(out.lines(), ["pod/once condition met"]);

    // A condition that never comes: exit 1 with kubectl's timeout message, after the timeout.
    herd.create(PODS, &sleeper_pod("broken", "127.0.0.1:1/nothing:v1"))
        .await;
    let started = Instant::now();
    kubectl(
        herd,
        &[
            "wait",
            "--for=condition=Ready",
            "pod/broken",
            "--timeout=3s",
        ],
    )
    .await
    .fails()
    .stderr_has("timed out waiting for the condition on pods/broken");
    assert!(started.elapsed() >= Duration::from_secs(3));

    // --for=delete while the pod shuts down.
    kubectl(herd, &["delete", "pod", "sleeper", "--wait=false"])
        .await
        .ok();
    let out = kubectl(
        herd,
        &["wait", "--for=delete", "pod/sleeper", "--timeout=60s"],
    )
    .await
    .ok();
    assert!(
        out.stdout.is_empty() || out.lines() == ["pod/sleeper condition met"],
        "{}",
        out.stdout
    );
    assert_eq!(herd.get(&format!("{PODS}/sleeper")).await.0, 404);
}
