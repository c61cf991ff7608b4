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
