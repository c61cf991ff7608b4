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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_spread_replicas_and_every_proxy_reaches_every_pod() {
    let registry = Registry::start().await;
    let image = registry.image("http-hello:v1");
    push("http-hello", &image).await;
    let control = Herd::up(HerdOptions::control()).await;
    // Separate hosts on one machine: each agent has its own data dir, address and pod CIDR.
    let mut agents = Vec::new();
    for (name, address) in [
        ("host-1", "127.0.0.1"),
        ("host-2", "127.0.0.2"),
        ("host-3", "127.0.0.3"),
    ] {
        agents.push(control.start_node_with(name, &["--address", address]).await);
        control.wait_node_ready(name).await;
    }
    control
        .create(
            "/apis/apps/v1/namespaces/default/deployments",
            &http_hello_deployment("spread", &image, 6),
        )
        .await;
    control
        .create(
            "/api/v1/namespaces/default/services",
            &service("spread", "spread", 80, 8080),
        )
        .await;
    let placed = wait_for("6 running pods", Duration::from_secs(60), || async {
        let list = control
            .get_ok("/api/v1/namespaces/default/pods?labelSelector=app%3Dspread")
            .await;
        let pods: Vec<Value> = list["items"].as_array().cloned().unwrap_or_default();
        let running: Vec<(String, String)> = pods
            .iter()
            .filter(|p| phase(p) == "Running")
            .map(|p| {
                (
                    s(p, "/metadata/name").to_string(),
                    s(p, "/spec/nodeName").to_string(),
                )
            })
            .collect();
        if running.len() == 6 {
            Ok(running)
        } else {
            Err(format!(
                "{:?}",
                pods.iter().map(pod_summary).collect::<Vec<_>>()
            ))
        }
    })
    .await;
    for host in ["host-1", "host-2", "host-3"] {
        let here = placed.iter().filter(|(_, n)| n == host).count();
        assert_eq!(here, 2, "replicas per node: {placed:?}");
    }
    let host_ips: Vec<String> = {
        let list = control
            .get_ok("/api/v1/namespaces/default/pods?labelSelector=app%3Dspread")
            .await;
        list["items"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| s(p, "/status/hostIP").to_string())
            .collect()
    };
    for address in ["127.0.0.1", "127.0.0.2", "127.0.0.3"] {
        assert!(
            host_ips.iter().any(|h| h == address),
            "hostIPs {host_ips:?}"
        );
    }
    // The cluster IP (served by all three proxies) reaches pods on every node.
    let svc = control
        .get_ok("/api/v1/namespaces/default/services/spread")
        .await;
    let url = format!("http://{}:80/", s(&svc, "/spec/clusterIP"));
    let mut nodes_seen = std::collections::BTreeSet::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while nodes_seen.len() < 3 {
        assert!(
            std::time::Instant::now() < deadline,
            "only pods on {nodes_seen:?} answered through {url}"
        );
        if let Ok(resp) = http_client()
            .get(&url)
            .timeout(Duration::from_secs(5))
            .send()
            .await
        {
            let text = resp.text().await.unwrap_or_default();
            if let Some((_, node)) = placed
                .iter()
                .find(|(pod, _)| text.contains(&format!("pod={pod} ")))
            {
                nodes_seen.insert(node.clone());
            }
        } else {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    drop(agents);
}
