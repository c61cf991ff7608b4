//! Node identity (issue 12): a node that joined with `herd token create`'s command holds a client certificate
//! of its own (`system:node:NAME`), and with it — through stock kubectl — reads only what the pods bound to it
//! use and writes only its own Node: node B cannot read a Secret used only by a pod on node A, nor patch node
//! A, in kube's words (Node authorizer, NodeRestriction).

use serde_json::json;

use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joined_nodes_credentials_reach_only_its_own_pods_objects() {
    let herd = Herd::up(HerdOptions::default()).await;
    herd.wait_node_ready("e2e-node").await;

    // kubeadm's flow: the admin makes a token, the printed command joins a node.
    let printed = herd.cli(&["token", "create"]).await.ok().stdout;
    let join: Vec<String> = printed.split_whitespace().map(str::to_owned).collect();
    assert_eq!(
        join.get(..2),
        Some(&["herd".to_owned(), "node".to_owned()][..]),
        "{printed}"
    );
    let dir = tempfile::tempdir().expect("node dir");
    let data_dir = dir.path().join("node-b");
    let mut args: Vec<String> = join[1..].to_vec();
    args.extend([
        "--name".into(),
        "node-b".into(),
        "--data-dir".into(),
        data_dir.display().to_string(),
        "--address".into(),
        "127.0.0.2".into(),
    ]);
    let _node_b = HerdProcess::spawn("herd-node-b", &args, dir.path(), None);
    herd.wait_node_ready("node-b").await;
    let kubelet_conf = data_dir.join("kubelet.conf");
    let node_b = kubelet_conf.display().to_string();
    let as_b = |args: &[&str]| {
        let mut all = vec!["--kubeconfig".to_owned(), node_b.clone()];
        all.extend(args.iter().map(|a| (*a).to_owned()));
        all
    };
    let run = |args: Vec<String>| {
        let herd = &herd;
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            kubectl(herd, &args).await
        }
    };
    run(as_b(&["auth", "whoami"]))
        .await
        .ok()
        .stdout_has("system:node:node-b")
        .stdout_has("system:nodes");

    // A Secret used only by a pod bound to node A (e2e-node).
    herd.create(
        "/api/v1/namespaces/default/secrets",
        &json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "only-a"},
                "stringData": {"password": "hunter2"}}),
    )
    .await;
    herd.create(
        PODS,
        &json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "on-a"},
            "spec": {"nodeName": "e2e-node",
                     "containers": [{"name": "c", "image": "example/app:1",
                         "env": [{"name": "P", "valueFrom": {"secretKeyRef": {"name": "only-a", "key": "password"}}}]}]}}),
    )
    .await;
    // Node A may read it (its pod uses it: crates/control/tests/authorization.rs); node B may not, nor list
    // Secrets, nor touch node A.
    run(as_b(&["get", "secret", "only-a"]))
        .await
        .fails()
        .stderr_has(
            "Error from server (Forbidden): secrets \"only-a\" is forbidden: User \"system:node:node-b\" cannot get \
             resource \"secrets\" in API group \"\" in the namespace \"default\": no relationship found between node \
             'node-b' and this object",
        );
    run(as_b(&["get", "secrets"]))
        .await
        .fails()
        .stderr_has("User \"system:node:node-b\" cannot list resource \"secrets\"");
    run(as_b(&["label", "node", "e2e-node", "stolen=true"]))
        .await
        .fails()
        .stderr_has("is forbidden: node \"node-b\" is not allowed to modify node \"e2e-node\"");
    let node_a = herd.get_ok("/api/v1/nodes/e2e-node").await;
    assert!(node_a["metadata"]["labels"].get("stolen").is_none());
    // Its own Node it may write.
    run(as_b(&[
        "annotate",
        "node",
        "node-b",
        "herd.dev/checked=yes",
    ]))
    .await
    .ok()
    .stdout_has("node/node-b annotated");
}
