//! State survives a restart of `herd up` on the same data dir, and workloads come back.

use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::*;

fn rv(v: &Value) -> u64 {
    s(v, "/metadata/resourceVersion").parse().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_and_running_pods_survive_restart() {
    let registry = Registry::start().await;
    let image = registry.image("http-hello:v1");
    push("http-hello", &image).await;
    let mut herd = Herd::up(HerdOptions::default()).await;

    herd.create(
        NAMESPACES,
        &json!({"metadata": {"name": "keep", "labels": {"a": "b"}}}),
    )
    .await;
    herd.create(SERVICES, &service("kept", "nothing-matches", 80, 8080))
        .await;
    herd.create(PODS, &http_hello_pod("web", "web", &image))
        .await;
    let pod = herd.wait_phase("web", "Running").await;
    let ip = s(&pod, "/status/podIP").to_string();
    herd.wait_http(
        &format!("http://{ip}:8080/before"),
        "pod=web path=/before",
        START_TIMEOUT,
    )
    .await;
    // Controllers are done with the service once it has its cluster IP.
    wait_for("service cluster IP", Duration::from_secs(20), || async {
        let svc = herd.get_ok(&format!("{SERVICES}/kept")).await;
        if s(&svc, "/spec/clusterIP").is_empty() {
            Err(svc.to_string())
        } else {
            Ok(())
        }
    })
    .await;
    let ns = herd.get_ok(&format!("{NAMESPACES}/keep")).await;
    let svc = herd.get_ok(&format!("{SERVICES}/kept")).await;

    herd.restart().await;

    // Same objects: same uid and resourceVersion, nothing rewritten.
    let ns_after = herd.get_ok(&format!("{NAMESPACES}/keep")).await;
    assert_eq!(ns_after["metadata"]["uid"], ns["metadata"]["uid"]);
    assert_eq!(
        ns_after["metadata"]["resourceVersion"],
        ns["metadata"]["resourceVersion"]
    );
    assert_eq!(s(&ns_after, "/metadata/labels/a"), "b");
    let svc_after = herd.get_ok(&format!("{SERVICES}/kept")).await;
    assert_eq!(svc_after["metadata"]["uid"], svc["metadata"]["uid"]);
    assert_eq!(
        svc_after["metadata"]["resourceVersion"],
        svc["metadata"]["resourceVersion"]
    );
    assert_eq!(svc_after["spec"]["clusterIP"], svc["spec"]["clusterIP"]);

    // New writes continue the revision sequence.
    let newer = herd
        .create(NAMESPACES, &json!({"metadata": {"name": "after-restart"}}))
        .await;
    assert!(
        rv(&newer) > rv(&svc_after) && rv(&newer) > rv(&ns_after),
        "rv went backwards: {newer}"
    );

    // The restartPolicy Always pod runs again and serves.
    let pod_after = herd.pod("web").await.expect("pod web after restart");
    assert_eq!(pod_after["metadata"]["uid"], pod["metadata"]["uid"]);
    let pod_after = herd
        .wait_pod("web", "Running and Ready again", START_TIMEOUT, |p| {
            phase(p) == "Running"
                && condition(p, "Ready").is_some_and(|c| s(c, "/status") == "True")
        })
        .await;
    let ip = s(&pod_after, "/status/podIP").to_string();
    herd.wait_http(
        &format!("http://{ip}:8080/after"),
        "pod=web path=/after",
        START_TIMEOUT,
    )
    .await;
}
