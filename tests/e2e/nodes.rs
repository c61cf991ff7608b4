//! Node lifecycle across separate processes: a node agent killed with SIGKILL stops renewing its Lease,
//! becomes Ready=Unknown with the unreachable NoExecute taint, and its pods are evicted and replaced on
//! another node within the configured times.

use std::time::Duration;

use serde_json::Value;

use crate::harness::*;

/// (name, node) of the Running, not terminating pods of app `moving`; Err describes all of them.
async fn running(herd: &Herd) -> Result<Vec<(String, String)>, String> {
    let list = herd
        .get_ok("/api/v1/namespaces/default/pods?labelSelector=app%3Dmoving")
        .await;
    let pods: Vec<Value> = list["items"].as_array().cloned().unwrap_or_default();
    let live: Vec<(String, String)> = pods
        .iter()
        .filter(|p| phase(p) == "Running" && p.pointer("/metadata/deletionTimestamp").is_none())
        .map(|p| {
            (
                s(p, "/metadata/name").to_string(),
                s(p, "/spec/nodeName").to_string(),
            )
        })
        .collect();
    if live.len() == 2 {
        Ok(live)
    } else {
        Err(format!(
            "{:?}",
            pods.iter().map(pod_summary).collect::<Vec<_>>()
        ))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_node_is_tainted_and_its_pods_move() {
    let registry = Registry::start().await;
    let image = registry.image("http-hello:v1");
    push("http-hello", &image).await;
    let opts = HerdOptions {
        extra_args: [
            "--node-monitor-grace-period",
            "2s",
            "--default-unreachable-toleration-seconds",
            "1",
        ]
        .map(String::from)
        .to_vec(),
        ..HerdOptions::control()
    };
    let control = Herd::up(opts).await;
    let fast = ["--lease-renew-interval", "300ms"];
    let mut nodes = [
        ("node-a", control.start_node_with("node-a", &fast).await),
        ("node-b", control.start_node_with("node-b", &fast).await),
    ];
    control.wait_node_ready("node-a").await;
    control.wait_node_ready("node-b").await;

    control
        .create(
            "/apis/apps/v1/namespaces/default/deployments",
            &http_hello_deployment("moving", &image, 2),
        )
        .await;
    let before = wait_for("2 running pods", Duration::from_secs(30), || {
        running(&control)
    })
    .await;
    // Kill (SIGKILL: no goodbye) the agent of a node that runs at least one of them.
    let victim = before[0].1.clone();
    let survivor = if victim == "node-a" {
        "node-b"
    } else {
        "node-a"
    };
    let (_, process) = nodes
        .iter_mut()
        .find(|(n, _)| *n == victim)
        .expect("victim node process");
    let killed = std::process::Command::new("kill")
        .args(["-9", &process.process.pid.to_string()])
        .status();
    assert!(killed.is_ok_and(|s| s.success()), "kill -9 the node agent");

    let node = wait_for(
        "the killed node to be Ready=Unknown and tainted",
        Duration::from_secs(10),
        || async {
            let node = control.get_ok(&format!("/api/v1/nodes/{victim}")).await;
            let ready = condition(&node, "Ready")
                .map(|c| s(c, "/status").to_string())
                .unwrap_or_default();
            let tainted = node["spec"]["taints"].as_array().is_some_and(|ts| {
                ts.iter().any(|t| {
                    t["key"] == "node.kubernetes.io/unreachable" && t["effect"] == "NoExecute"
                })
            });
            if ready == "Unknown" && tainted {
                Ok(node)
            } else {
                Err(format!("Ready={ready} taints={}", node["spec"]["taints"]))
            }
        },
    )
    .await;
    assert_eq!(
        condition(&node, "Ready").map(|c| s(c, "/reason")),
        Some("NodeStatusUnknown")
    );

    // Its pods are evicted after the 1 s toleration and replaced on the surviving node.
    let after = wait_for(
        "2 running pods on the surviving node",
        Duration::from_secs(30),
        || async {
            let live = running(&control).await?;
            if live.iter().all(|(_, n)| n == survivor) {
                Ok(live)
            } else {
                Err(format!("{live:?}"))
            }
        },
    )
    .await;
    assert!(
        after
            .iter()
            .all(|(name, _)| !before.iter().any(|(old, n)| old == name && *n == victim))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_drain_empties_a_node_and_uncordon_lets_pods_back() {
    let registry = Registry::start().await;
    let image = registry.image("http-hello:v1");
    push("http-hello", &image).await;
    let herd = Herd::up(HerdOptions::default()).await;
    herd.wait_node_ready("e2e-node").await;
    herd.create(
        "/apis/apps/v1/namespaces/default/deployments",
        &http_hello_deployment("moving", &image, 2),
    )
    .await;
    wait_for("2 running pods", Duration::from_secs(30), || running(&herd)).await;

    let out = kubectl(&herd, &["drain", "e2e-node", "--timeout=30s"])
        .await
        .ok();
    out.stdout_has("node/e2e-node drained");
    let node = herd.get_ok("/api/v1/nodes/e2e-node").await;
    assert_eq!(
        node["spec"]["unschedulable"], true,
        "drain cordons the node"
    );
    // The evicted pods' replacements cannot be placed on the only, cordoned node.
    let pending = wait_for(
        "replacements Pending as unschedulable",
        Duration::from_secs(15),
        || async {
            let list = herd
                .get_ok("/api/v1/namespaces/default/pods?labelSelector=app%3Dmoving")
                .await;
            let pods: Vec<Value> = list["items"].as_array().cloned().unwrap_or_default();
            let pending = pods
                .iter()
                .filter(|p| {
                    phase(p) == "Pending" && p.pointer("/spec/nodeName").is_none_or(Value::is_null)
                })
                .count();
            if pods.len() == 2 && pending == 2 {
                Ok(pending)
            } else {
                Err(format!(
                    "{:?}",
                    pods.iter().map(pod_summary).collect::<Vec<_>>()
                ))
            }
        },
    )
    .await;
    assert_eq!(pending, 2);

    kubectl(&herd, &["uncordon", "e2e-node"])
        .await
        .ok()
        .stdout_has("node/e2e-node uncordoned");
    wait_for(
        "2 running pods after uncordon",
        Duration::from_secs(30),
        || running(&herd),
    )
    .await;
}
