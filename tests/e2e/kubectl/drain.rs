//! PodDisruptionBudgets through kubectl: `kubectl get pdb` columns, and `kubectl drain` honouring a budget
//! through the eviction API (refused while no disruption is allowed; evicting what the budget allows).

use super::*;

const PDBS: &str = "/apis/policy/v1/namespaces/default/poddisruptionbudgets";

fn budget(name: &str, bound: Value) -> Value {
    let mut spec = json!({"selector": {"matchLabels": {"app": "web"}}});
    spec.as_object_mut()
        .unwrap()
        .extend(bound.as_object().unwrap().clone());
    json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
        "metadata": {"name": name}, "spec": spec})
}

/// Waits until the budget's status is observed with `allowed` disruptions allowed.
async fn wait_allowed(herd: &Herd, name: &str, allowed: i64) -> Value {
    wait_object(
        herd,
        &format!("{PDBS}/{name}"),
        &format!("{name} allowing {allowed}"),
        START_TIMEOUT,
        |pdb| {
            pdb["status"]["observedGeneration"] == pdb["metadata"]["generation"]
                && pdb["status"]["disruptionsAllowed"] == allowed
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_drain_honours_pod_disruption_budgets() {
    let c = Cluster::up(&[("hello", "v1")]).await;
    let herd = &c.herd;
    let image = c.image("hello", "v1");
    herd.create(DEPLOYMENTS, &sleeper_deployment("web", &image, 2))
        .await;
    let before = wait_ready_pods(herd, "default", "app%3Dweb", 2).await;

    // minAvailable 2 of 2 ready pods: nothing may be disrupted.
    herd.create(PDBS, &budget("web-min", json!({"minAvailable": 2})))
        .await;
    let pdb = wait_allowed(herd, "web-min", 0).await;
    assert_eq!(pdb["status"]["currentHealthy"], 2, "{}", pdb["status"]);
    assert_eq!(pdb["status"]["desiredHealthy"], 2);
    assert_eq!(pdb["status"]["expectedPods"], 2);
    let table = kubectl(herd, &["get", "pdb"]).await.ok().table();
    assert_eq!(
        table.columns,
        [
            "NAME",
            "MIN AVAILABLE",
            "MAX UNAVAILABLE",
            "ALLOWED DISRUPTIONS",
            "AGE"
        ]
    );
    let row = table.row("web-min");
    assert_eq!(
        (
            row.get("MIN AVAILABLE"),
            row.get("MAX UNAVAILABLE"),
            row.get("ALLOWED DISRUPTIONS")
        ),
        ("2", "N/A", "0")
    );
    assert!(is_age(row.get("AGE")), "{}", row.get("AGE"));

    // The drain cordons the node, is refused by the budget until its timeout and evicts nothing.
    let out = kubectl(
        herd,
        &["drain", "e2e-node", "--ignore-daemonsets", "--timeout=5s"],
    )
    .await
    .fails();
    out.stdout_has("node/e2e-node cordoned");
    out.stderr_has("Cannot evict pod as it would violate the pod's disruption budget.");
    let node = herd.get_ok("/api/v1/nodes/e2e-node").await;
    assert_eq!(node["spec"]["unschedulable"], true);
    let names: Vec<String> = before
        .iter()
        .map(|p| s(p, "/metadata/name").to_string())
        .collect();
    let mut now = pod_names(herd, "default", "app%3Dweb").await;
    now.sort();
    let mut expected = names.clone();
    expected.sort();
    assert_eq!(now, expected, "a pod was evicted despite the budget");
    for name in &names {
        let pod = herd.get_ok(&format!("{PODS}/{name}")).await;
        assert!(running_and_ready(&pod), "{name}: {}", pod_summary(&pod));
    }

    // maxUnavailable 1: the drain evicts one pod; its replacement cannot go to the cordoned node (the only
    // one), so the budget allows no second eviction and the drain times out on the other pod.
    kubectl(herd, &["delete", "pdb", "web-min"]).await.ok();
    herd.create(PDBS, &budget("web-max", json!({"maxUnavailable": 1})))
        .await;
    wait_allowed(herd, "web-max", 1).await;
    let out = kubectl(
        herd,
        &["drain", "e2e-node", "--ignore-daemonsets", "--timeout=5s"],
    )
    .await
    .fails();
    let evicted: Vec<&String> = names
        .iter()
        .filter(|n| out.stdout.contains(&format!("pod/{n} evicted")))
        .collect();
    assert_eq!(evicted.len(), 1, "{}\n{}", out.stdout, out.stderr);
    out.stderr_has("Cannot evict pod as it would violate the pod's disruption budget.");
    // What kube shows: the evicted pod gone, the other still running, a replacement Pending unschedulable.
    let replacement = wait_for("an unschedulable replacement", START_TIMEOUT, || async {
        let pods = items(
            &herd
                .get_ok(&format!("{PODS}?labelSelector=app%3Dweb"))
                .await,
        );
        let live: Vec<&Value> = pods
            .iter()
            .filter(|p| s(p, "/metadata/deletionTimestamp").is_empty())
            .collect();
        let new: Vec<&Value> = live
            .iter()
            .copied()
            .filter(|p| !names.contains(&s(p, "/metadata/name").to_string()))
            .collect();
        match new.as_slice() {
            [pod]
                if condition(pod, "PodScheduled")
                    .is_some_and(|c| s(c, "/reason") == "Unschedulable")
                    && live.len() == 2 =>
            {
                Ok((*pod).clone())
            }
            _ => Err(live
                .iter()
                .map(|p| format!("{}: {}", s(p, "/metadata/name"), pod_summary(p)))
                .collect::<Vec<_>>()
                .join("; ")),
        }
    })
    .await;
    assert_eq!(phase(&replacement), "Pending");
    assert!(s(&replacement, "/spec/nodeName").is_empty());
    let pdb = herd.get_ok(&format!("{PDBS}/web-max")).await;
    assert_eq!(pdb["status"]["disruptionsAllowed"], 0, "{}", pdb["status"]);
    assert_eq!(pdb["status"]["currentHealthy"], 1);
}
