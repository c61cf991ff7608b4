//! A pod's life on the node: init containers first and in order, several containers sharing the pod's IP,
//! deletion (a module ends at once, as by SIGTERM's default action; a wasi-http component drains its
//! requests), and a node agent restarted (after kill -9) finding its pods again.

use std::time::Duration;

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
async fn deleting_a_module_pod_ends_it_at_once_as_sigterm_would() {
    let (_registry, images) = registry_with(&["hello"]).await;
    let herd = Herd::up(HerdOptions::default()).await;
    herd.wait_node_ready("e2e-node").await;
    // A guest cannot handle SIGTERM, so its default action ends it: no waiting out the 30 s.
    let mut pod = hello_pod("sigterm", &images[0], &["--forever"], "Always");
    pod["spec"]["terminationGracePeriodSeconds"] = json!(30);
    herd.create(PODS, &pod).await;
    wait_running(&herd, "sigterm").await;
    herd.delete(&format!("{PODS}/sigterm")).await;
    // Well within the grace period: before, the guest ran until it was over.
    wait_for(
        "the pod to be gone before its grace period",
        Duration::from_secs(20),
        || async {
            match herd.get(&format!("{PODS}/sigterm")).await {
                (404, _) => Ok(()),
                (_, pod) => Err(pod_summary(&pod)),
            }
        },
    )
    .await;
}

/// An HTTP server on the host that holds each request until `release` is notified, then answers
/// `slow-ok`; `arrived` is notified when a request came in.
async fn slow_upstream(
    arrived: std::sync::Arc<tokio::sync::Notify>,
    release: std::sync::Arc<tokio::sync::Notify>,
) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // Not 127.0.0.1: in a pod, that is the pod itself.
    let listener = tokio::net::TcpListener::bind((UPSTREAM_IP, 0))
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let (arrived, release) = (arrived.clone(), release.clone());
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf).await;
                arrived.notify_one();
                release.notified().await;
                let _ = stream
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 7\r\nconnection: close\r\n\r\nslow-ok",
                    )
                    .await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_wasi_http_pod_drains_its_in_flight_requests() {
    let (_registry, images) = registry_with(&["http-hello"]).await;
    let herd = Herd::up(HerdOptions::default()).await;
    herd.wait_node_ready("e2e-node").await;
    let arrived = std::sync::Arc::new(tokio::sync::Notify::new());
    let release = std::sync::Arc::new(tokio::sync::Notify::new());
    let upstream = slow_upstream(arrived.clone(), release.clone()).await;
    let mut pod = http_hello_pod("draining", "web", &images[0]);
    pod["spec"]["terminationGracePeriodSeconds"] = json!(30);
    herd.create(PODS, &pod).await;
    let pod = wait_running(&herd, "draining").await;
    wait_answer(&pod, 8080, "/", 200).await;
    // A request in flight: the guest waits on the slow upstream.
    let in_flight = tokio::spawn({
        let url = format!(
            "http://{}:8080/fetch/{upstream}/slow",
            s(&pod, "/status/podIP")
        );
        async move {
            let resp = http_client()
                .get(&url)
                .timeout(Duration::from_secs(60))
                .send()
                .await
                .expect("the in-flight request is answered");
            (
                resp.status().as_u16(),
                resp.text().await.unwrap_or_default(),
            )
        }
    });
    tokio::time::timeout(Duration::from_secs(30), arrived.notified())
        .await
        .expect("the request reached the upstream");
    herd.delete(&format!("{PODS}/draining")).await;
    // Draining: no new connections are accepted, while the request in flight goes on.
    wait_for(
        "the pod to stop accepting",
        Duration::from_secs(20),
        || async {
            match pod_get(&pod, 8080, "/").await {
                (0, _) => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
    assert!(
        !in_flight.is_finished(),
        "the in-flight request was cut off"
    );
    release.notify_one();
    let (status, body) = in_flight.await.expect("request task");
    assert_eq!((status, body.as_str()), (200, "upstream 200: slow-ok"));
    wait_for("the pod to be gone", Duration::from_secs(20), || async {
        match herd.get(&format!("{PODS}/draining")).await {
            (404, _) => Ok(()),
            (_, pod) => Err(pod_summary(&pod)),
        }
    })
    .await;
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
