//! The scheduler binds pods that fit and leaves the rest Pending, saying why.

use std::time::Duration;

use serde_json::json;

use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_requesting_more_memory_than_the_node_has_stays_pending_unschedulable() {
    let herd = Herd::up(HerdOptions::default()).await;
    let node = herd.wait_node_ready("e2e-node").await;
    assert!(
        !s(&node, "/status/allocatable/memory").is_empty(),
        "node without allocatable memory: {node}"
    );

    let mut huge = spin_pod("huge", "127.0.0.1:9/absent:v1");
    huge["spec"]["containers"][0]["resources"] =
        json!({"requests": {"memory": "1Pi", "cpu": "100m"}});
    herd.create(PODS, &huge).await;
    let mut small = spin_pod("small", "127.0.0.1:9/absent:v1");
    small["spec"]["containers"][0]["resources"] =
        json!({"requests": {"memory": "16Mi", "cpu": "100m"}});
    herd.create(PODS, &small).await;

    let pod = herd
        .wait_pod(
            "huge",
            "PodScheduled=False reason Unschedulable",
            Duration::from_secs(30),
            |p| {
                condition(p, "PodScheduled").is_some_and(|c| {
                    s(c, "/status") == "False" && s(c, "/reason") == "Unschedulable"
                })
            },
        )
        .await;
    let message = s(
        condition(&pod, "PodScheduled").unwrap_or(&json!({})),
        "/message",
    )
    .to_string();
    assert!(
        !message.is_empty(),
        "Unschedulable without a message: {pod}"
    );
    // The pod that fits was bound, so the scheduler was running all along.
    herd.wait_pod("small", "bound to e2e-node", Duration::from_secs(30), |p| {
        s(p, "/spec/nodeName") == "e2e-node"
    })
    .await;
    // And the one that does not fit stays unbound.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let pod = herd.pod("huge").await.expect("huge");
    assert_eq!(
        s(&pod, "/spec/nodeName"),
        "",
        "huge was bound: {}",
        pod_summary(&pod)
    );
    assert_eq!(phase(&pod), "Pending");
}

/// nodeSelector, taints/tolerations and required node affinity place pods where they must, and a pod that
/// fits nowhere says why in kube-scheduler's words.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_selector_taints_and_affinity_place_pods() {
    let registry = Registry::start().await;
    let image = registry.image("hello:v1");
    push("hello", &image).await;
    let control = Herd::up(HerdOptions::control()).await;
    let _a = control
        .start_node_with("place-a", &["--address", "127.0.0.1"])
        .await;
    let _b = control
        .start_node_with("place-b", &["--address", "127.0.0.2"])
        .await;
    control.wait_node_ready("place-a").await;
    control.wait_node_ready("place-b").await;
    let patch = |body: serde_json::Value| ("application/merge-patch+json", body.to_string());
    let (code, _) = control
        .send_raw(
            reqwest::Method::PATCH,
            "/api/v1/nodes/place-b",
            Some(patch(
                serde_json::json!({"metadata": {"labels": {"disk": "ssd"}}}),
            )),
        )
        .await;
    assert_eq!(code, 200);
    let taint = serde_json::json!({"spec": {"taints": [{"key": "dedicated", "value": "batch", "effect": "NoSchedule"}]}});
    let (code, _) = control
        .send_raw(
            reqwest::Method::PATCH,
            "/api/v1/nodes/place-a",
            Some(patch(taint)),
        )
        .await;
    assert_eq!(code, 200);

    let sleeping = ["--sleep-ms=600000"];
    let mut on_ssd = hello_pod("on-ssd", &image, &sleeping, "Never");
    on_ssd["spec"]["nodeSelector"] = serde_json::json!({"disk": "ssd"});
    let mut tolerant = hello_pod("tolerant", &image, &sleeping, "Never");
    tolerant["spec"]["tolerations"] = serde_json::json!([{"key": "dedicated", "operator": "Equal", "value": "batch", "effect": "NoSchedule"}]);
    tolerant["spec"]["affinity"] = serde_json::json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["place-a"]}]}]}}});
    let mut untolerated = hello_pod("untolerated", &image, &sleeping, "Never");
    untolerated["spec"]["affinity"] = tolerant["spec"]["affinity"].clone();
    let mut nowhere = hello_pod("nowhere", &image, &sleeping, "Never");
    nowhere["spec"]["nodeSelector"] = serde_json::json!({"disk": "hdd"});
    for pod in [&on_ssd, &tolerant, &untolerated, &nowhere] {
        control.create(PODS, pod).await;
    }
    let bound = |name: &'static str| {
        let control = &control;
        move || async move {
            let pod = control.get_ok(&format!("{PODS}/{name}")).await;
            let node = s(&pod, "/spec/nodeName").to_string();
            if node.is_empty() {
                Err(pod_summary(&pod))
            } else {
                Ok(node)
            }
        }
    };
    assert_eq!(
        wait_for("on-ssd bound", Duration::from_secs(20), bound("on-ssd")).await,
        "place-b"
    );
    assert_eq!(
        wait_for("tolerant bound", Duration::from_secs(20), bound("tolerant")).await,
        "place-a"
    );
    for (name, message) in [
        (
            "untolerated",
            "0/2 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, 1 node(s) had untolerated taint {dedicated: batch}.",
        ),
        // kube-scheduler's filter order: taints before node affinity, so the tainted node reports its taint.
        (
            "nowhere",
            "0/2 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, 1 node(s) had untolerated taint {dedicated: batch}.",
        ),
    ] {
        let pod = wait_for(
            &format!("{name} unschedulable"),
            Duration::from_secs(20),
            || async {
                let pod = control.get_ok(&format!("{PODS}/{name}")).await;
                match condition(&pod, "PodScheduled") {
                    Some(c) if c["reason"] == "Unschedulable" => Ok(pod),
                    _ => Err(pod_summary(&pod)),
                }
            },
        )
        .await;
        let got = condition(&pod, "PodScheduled")
            .map(|c| s(c, "/message").to_string())
            .unwrap_or_default();
        assert!(got.starts_with(message), "{name}: {got}");
        assert!(s(&pod, "/spec/nodeName").is_empty());
    }
}
