//! Pod status as the node agent reports it: phases, restart policies, exit codes, addresses.

use std::time::Duration;

use serde_json::Value;

use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn phases_go_pending_running_succeeded() {
    let registry = Registry::start().await;
    let image = registry.image("hello:v1");
    push("hello", &image).await;
    let herd = Herd::up(HerdOptions::default()).await;

    let created = herd
        .create(
            PODS,
            &hello_pod("slow", &image, &["--sleep-ms=3000"], "Never"),
        )
        .await;
    assert_eq!(
        phase(&created),
        "Pending",
        "a new pod is Pending: {created}"
    );
    let rv = s(&created, "/metadata/resourceVersion");
    let mut watch = WatchStream::open(
        &herd.http,
        &herd.url(&format!("{PODS}?watch=true&resourceVersion={rv}")),
    )
    .await;
    let (events, done) = watch
        .until(START_TIMEOUT, |e| phase(&e["object"]) == "Succeeded")
        .await;
    let mut phases: Vec<&str> = events.iter().map(|e| phase(&e["object"])).collect();
    phases.dedup();
    assert!(done, "never Succeeded; phases: {phases:?}");
    let running = phases.iter().position(|p| *p == "Running");
    assert!(
        running.is_some(),
        "never Running while it slept 3 s; phases: {phases:?}"
    );
    assert!(
        phases
            .iter()
            .all(|p| ["Pending", "Running", "Succeeded"].contains(p)),
        "{phases:?}"
    );
    assert_eq!(phases.last(), Some(&"Succeeded"));
    // While running, the container said so.
    let running_event = events
        .iter()
        .find(|e| phase(&e["object"]) == "Running")
        .expect("running event");
    let status = container_status(&running_event["object"]);
    assert!(
        status.pointer("/state/running/startedAt").is_some()
            || status.pointer("/state/terminated").is_some(),
        "Running pod without a running container state: {status}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_never_with_exit_3_fails_with_exit_code_3() {
    let registry = Registry::start().await;
    let image = registry.image("hello:v1");
    push("hello", &image).await;
    let herd = Herd::up(HerdOptions::default()).await;

    herd.create(PODS, &hello_pod("fails", &image, &["--exit=3"], "Never"))
        .await;
    let pod = herd.wait_phase("fails", "Failed").await;
    let status = container_status(&pod);
    assert_eq!(
        status["state"]["terminated"]["exitCode"],
        3,
        "{}",
        pod_summary(&pod)
    );
    assert_eq!(
        status["state"]["terminated"]["reason"],
        "Error",
        "{}",
        pod_summary(&pod)
    );
    assert_eq!(
        status["restartCount"],
        0,
        "restartPolicy Never restarted: {}",
        pod_summary(&pod)
    );
    // It stays failed.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let pod = herd.pod("fails").await.expect("pod");
    assert_eq!(phase(&pod), "Failed");
    assert_eq!(container_status(&pod)["restartCount"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_on_failure_restarts_with_growing_restart_count() {
    let registry = Registry::start().await;
    let image = registry.image("hello:v1");
    push("hello", &image).await;
    let herd = Herd::up(HerdOptions::default()).await;

    herd.create(
        PODS,
        &hello_pod("flaky", &image, &["--exit=3"], "OnFailure"),
    )
    .await;
    let restarts = |p: &Value| container_status(p)["restartCount"].as_i64().unwrap_or(0);
    let pod = herd
        .wait_pod("flaky", "restartCount >= 1", START_TIMEOUT, |p| {
            restarts(p) >= 1
        })
        .await;
    let last = &container_status(&pod)["lastState"]["terminated"];
    assert_eq!(last["exitCode"], 3, "lastState: {}", pod_summary(&pod));
    assert!(
        !["Succeeded", "Failed"].contains(&phase(&pod)),
        "OnFailure pod ended: {}",
        pod_summary(&pod)
    );
    let first = restarts(&pod);
    herd.wait_pod(
        "flaky",
        "restartCount to grow",
        Duration::from_secs(120),
        |p| restarts(p) > first,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_pod_has_pod_ip_in_cluster_cidr_host_ip_and_node_name() {
    let registry = Registry::start().await;
    let image = registry.image("http-hello:v1");
    push("http-hello", &image).await;
    let herd = Herd::up(HerdOptions {
        node_name: "addr-node".into(),
        ..Default::default()
    })
    .await;

    herd.create(PODS, &http_hello_pod("addr", "addr", &image))
        .await;
    let pod = herd
        .wait_pod("addr", "Running and Ready", START_TIMEOUT, |p| {
            phase(p) == "Running"
                && condition(p, "Ready").is_some_and(|c| s(c, "/status") == "True")
        })
        .await;
    assert_eq!(s(&pod, "/spec/nodeName"), "addr-node");
    let ip = s(&pod, "/status/podIP");
    assert!(
        herd.cidrs.cluster.contains(ip),
        "podIP {ip:?} not in {}",
        herd.cidrs.cluster
    );
    let node = herd.get_ok(&format!("{NODES}/addr-node")).await;
    let pod_cidr = Cidr::parse(s(&node, "/spec/podCIDR")).expect("node podCIDR");
    assert!(
        pod_cidr.contains(ip),
        "podIP {ip} not in the node's podCIDR {pod_cidr}"
    );
    let ips = pod.pointer("/status/podIPs/0/ip").and_then(Value::as_str);
    assert_eq!(ips, Some(ip), "podIPs[0] vs podIP");
    let host_ip = s(&pod, "/status/hostIP");
    let node_ips: Vec<&str> = node
        .pointer("/status/addresses")
        .and_then(Value::as_array)
        .map(|a| a.iter().map(|a| s(a, "/address")).collect())
        .unwrap_or_default();
    assert!(
        node_ips.contains(&host_ip),
        "hostIP {host_ip:?} is not one of the node's addresses {node_ips:?}"
    );
    let status = container_status(&pod);
    assert_eq!(status["ready"], true, "{}", pod_summary(&pod));
    assert!(
        status.pointer("/state/running/startedAt").is_some(),
        "{}",
        pod_summary(&pod)
    );
    herd.wait_http(
        &format!("http://{ip}:8080/ip"),
        "pod=addr path=/ip",
        START_TIMEOUT,
    )
    .await;
}
