//! A pod's life on the node: init containers first and in order, several containers sharing the pod's IP,
//! the termination grace period on delete, and a node agent restarted (after kill -9) finding its pods again.

use std::time::{Duration, Instant};

use serde_json::json;

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_containers_run_first_then_containers_share_the_pod_ip() {
    let (_registry, images) = registry_with(&["hello", "http-hello"]).await;
    let herd = Herd::up(HerdOptions::default()).await;
    herd.wait_node_ready("e2e-node").await;
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "multi"},
        "spec": {
            "initContainers": [
                {"name": "init-1", "image": images[0], "args": ["first", "--sleep-ms=500"]},
                {"name": "init-2", "image": images[0], "args": ["second"]},
            ],
            "containers": [
                {"name": "web-a", "image": images[1], "ports": [{"containerPort": 8080}]},
                {"name": "web-b", "image": images[1], "ports": [{"containerPort": 8081}]},
            ],
        },
    });
    herd.create(PODS, &pod).await;
    let pod = wait_running(&herd, "multi").await;
    let inits = pod["status"]["initContainerStatuses"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(inits.len(), 2, "{}", pod_summary(&pod));
    let finished: Vec<&str> = inits
        .iter()
        .map(|c| s(c, "/state/terminated/reason"))
        .collect();
    assert_eq!(finished, ["Completed", "Completed"]);
    // In order: the second started after the first finished.
    assert!(
        s(&inits[1], "/state/terminated/startedAt") >= s(&inits[0], "/state/terminated/finishedAt"),
        "{inits:?}"
    );
    // Both app containers answer on the one pod IP.
    wait_answer(&pod, 8080, "/", 200).await;
    wait_answer(&pod, 8081, "/", 200).await;
    let logs = kubectl(&herd, &["logs", "multi", "-c", "init-2"])
        .await
        .ok();
    assert!(logs.stdout.contains("second"), "{}", logs.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_pod_gives_its_guest_the_grace_period_then_stops_it() {
    let (_registry, images) = registry_with(&["hello"]).await;
    let herd = Herd::up(HerdOptions::default()).await;
    herd.wait_node_ready("e2e-node").await;
    let mut pod = hello_pod("graceful", &images[0], &["--sleep-ms=600000"], "Always");
    pod["spec"]["terminationGracePeriodSeconds"] = json!(3);
    herd.create(PODS, &pod).await;
    wait_running(&herd, "graceful").await;
    let began = Instant::now();
    herd.delete(&format!("{PODS}/graceful")).await;
    wait_for("the pod to be gone", Duration::from_secs(20), || async {
        match herd.get(&format!("{PODS}/graceful")).await {
            (404, _) => Ok(()),
            (_, pod) => Err(pod_summary(&pod)),
        }
    })
    .await;
    let took = began.elapsed();
    assert!(
        took >= Duration::from_millis(2500) && took < Duration::from_secs(10),
        "a guest that does not exit gets its 3 s grace period, then is stopped: took {took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_agent_finds_its_pods_again_without_duplicates() {
    let (_registry, images) = registry_with(&["http-hello"]).await;
    let control = Herd::up(HerdOptions::control()).await;
    let mut node = control
        .start_node_with("phoenix", &["--address", "127.0.0.1"])
        .await;
    control.wait_node_ready("phoenix").await;
    control
        .create(PODS, &http_hello_pod("survivor", "web", &images[0]))
        .await;
    let before = wait_running(&control, "survivor").await;
    wait_answer(&before, 8080, "/before", 200).await;
    let logs_before = kubectl(&control, &["logs", "survivor"]).await.ok().stdout;
    assert!(
        logs_before.contains("GET /before"),
        "the access log: {logs_before}"
    );

    let killed = std::process::Command::new("kill")
        .args(["-9", &node.process.pid.to_string()])
        .status();
    assert!(killed.is_ok_and(|s| s.success()), "kill -9 the node agent");
    let _ = node.process.exited();
    // The same node, on the same data dir.
    let _node = control
        .start_node_with("phoenix", &["--address", "127.0.0.1"])
        .await;
    let after = wait_for(
        "the pod to serve again from the restarted agent",
        Duration::from_secs(60),
        || async {
            let pod = get_pod(&control, "survivor").await;
            match pod_get(&pod, 8080, "/after").await {
                (200, _) if phase(&pod) == "Running" => Ok(pod),
                other => Err(format!("{other:?} {}", pod_summary(&pod))),
            }
        },
    )
    .await;
    assert_eq!(s(&after, "/metadata/uid"), s(&before, "/metadata/uid"));
    assert_eq!(s(&after, "/status/podIP"), s(&before, "/status/podIP"));
    let pods = control.get_ok(PODS).await;
    assert_eq!(
        pods["items"].as_array().map(Vec::len),
        Some(1),
        "no duplicate pods"
    );
    // What the pod logged before the crash is intact.
    let logs_after = kubectl(&control, &["logs", "survivor"]).await.ok().stdout;
    let previous = kubectl(&control, &["logs", "survivor", "--previous"]).await;
    let all = format!("{logs_after}{}", previous.stdout);
    for line in logs_before.lines() {
        assert!(
            all.contains(line),
            "{line:?} lost after the agent restart:\n{all}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_without_a_free_ip_waits_for_one_as_the_kubelet_does() {
    let (_registry, images) = registry_with(&["http-hello"]).await;
    // A /30 pod CIDR: one address for pods (the first host is kept for a gateway).
    let herd = Herd::up(HerdOptions {
        extra_args: vec!["--node-cidr-mask-size".into(), "30".into()],
        ..HerdOptions::default()
    })
    .await;
    herd.wait_node_ready("e2e-node").await;
    let web = |name: &str| {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name},
            "spec": {
                "terminationGracePeriodSeconds": TEST_GRACE_SECONDS,
                "containers": [{"name": "web", "image": images[0], "ports": [{"containerPort": 8080}]}],
            },
        })
    };
    herd.create(PODS, &web("first")).await;
    let first = wait_running(&herd, "first").await;
    herd.create(PODS, &web("second")).await;
    // No address left: the pod waits, its container being created, with the kubelet's sandbox event.
    let waiting = wait_pod(
        &herd,
        "second",
        "ContainerCreating",
        Duration::from_secs(20),
        |p| s(p, "/status/containerStatuses/0/state/waiting/reason") == "ContainerCreating",
    )
    .await;
    assert_eq!(phase(&waiting), "Pending", "{}", pod_summary(&waiting));
    assert!(waiting.pointer("/status/podIP").is_none(), "{waiting}");
    wait_for(
        "the FailedCreatePodSandBox event",
        Duration::from_secs(20),
        || async {
            let events = events_about(&herd, "second").await;
            match events.iter().any(|e| {
                e.starts_with("FailedCreatePodSandBox: Failed to create pod sandbox: no IP addresses available")
            }) {
                true => Ok(()),
                false => Err(format!("{events:?}")),
            }
        },
    )
    .await;
    // Once the first pod is gone its address is free, and the waiting pod starts with it.
    herd.delete(&format!("{PODS}/first")).await;
    let second = wait_running(&herd, "second").await;
    assert_eq!(s(&second, "/status/podIP"), s(&first, "/status/podIP"));
    wait_answer(&second, 8080, "/", 200).await;
}
