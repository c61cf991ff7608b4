//! `herd up`, `herd control` and `herd node` as processes: ready line, kubeconfig, clean shutdown.

use std::time::Duration;

use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_prints_ready_line_whose_addresses_serve_and_kubeconfig_matches() {
    let mut herd = Herd::up(HerdOptions::with_registry()).await;

    let port: u16 = herd
        .api
        .strip_prefix("http://127.0.0.1:")
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    assert_ne!(port, 0, "api= is not http://127.0.0.1:<port>: {}", herd.api);
    let kubeconfig =
        kube::config::Kubeconfig::read_from(&herd.kubeconfig).expect("kubeconfig parses");
    let servers: Vec<_> = kubeconfig
        .clusters
        .iter()
        .filter_map(|c| c.cluster.as_ref()?.server.clone())
        .collect();
    assert_eq!(
        servers
            .iter()
            .map(|s| s.trim_end_matches('/'))
            .collect::<Vec<_>>(),
        vec![herd.api.as_str()],
        "kubeconfig servers vs ready line"
    );
    assert_eq!(herd.kubeconfig, herd.data_dir.join("kubeconfig.yaml"));

    // The API answers at that address, and a kube client built from the kubeconfig works.
    let namespaces = herd.get_ok(NAMESPACES).await;
    assert_eq!(namespaces["kind"], "NamespaceList", "{namespaces}");
    let client = herd.client().await;
    let version = client.apiserver_version().await;
    let nodes: kube::Api<k8s_openapi::api::core::v1::Node> = kube::Api::all(client);
    nodes
        .list(&Default::default())
        .await
        .unwrap_or_else(|e| panic!("kube client list nodes: {e} (version: {version:?})"));

    // The embedded registry answers the distribution API at registry=.
    let registry = herd.registry.clone().expect("registry= in the ready line");
    let resp = herd
        .http
        .get(format!("http://{registry}/v2/"))
        .send()
        .await
        .expect("GET registry /v2/");
    assert_eq!(resp.status().as_u16(), 200, "embedded registry /v2/");

    // SIGTERM: exit 0, promptly, and the port is closed afterwards.
    let took = herd.stop();
    assert!(
        took < Duration::from_secs(10),
        "herd took {took:?} to exit after SIGTERM"
    );
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "the API port still accepts connections after herd exited"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_registry_flag_prints_registry_off() {
    let mut herd = Herd::up(HerdOptions::default()).await;
    let stderr = herd.process().stderr();
    let line = stderr
        .lines()
        .find(|l| l.contains("herd is ready"))
        .expect("ready line");
    assert!(
        line.contains("registry=off"),
        "ready line with --no-registry: {line}"
    );
    assert_eq!(herd.registry, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_a_running_workload_promptly() {
    // A guest stuck in a loop must not hold up shutdown.
    let registry = Registry::start().await;
    let image = registry.image("spin:v1");
    push("spin", &image).await;
    let mut herd = Herd::up(HerdOptions::default()).await;
    herd.create(PODS, &spin_pod("spin", &image)).await;
    herd.wait_phase("spin", "Running").await;

    let took = herd.stop();
    assert!(
        took < Duration::from_secs(10),
        "herd took {took:?} to exit after SIGTERM with a spinning pod"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_and_node_as_separate_processes_run_a_pod_to_succeeded() {
    let registry = Registry::start().await;
    let image = registry.image("hello:v1");
    push("hello", &image).await;

    let mut control = Herd::up(HerdOptions::control()).await;
    assert!(control.registry.is_none(), "herd control runs no registry");
    let node = control.start_node("worker-1").await;
    let node_obj = control.wait_node_ready("worker-1").await;
    assert!(!s(&node_obj, "/metadata/uid").is_empty());

    control
        .create(PODS, &hello_pod("split", &image, &["split"], "Never"))
        .await;
    let pod = control.wait_phase("split", "Succeeded").await;
    assert_eq!(s(&pod, "/spec/nodeName"), "worker-1");
    assert!(control.pod_log("split").await.contains("Hello from herd!"));

    // Both halves stop cleanly on SIGTERM.
    let mut node = node;
    let took = node.process.stop();
    assert!(
        took < Duration::from_secs(10),
        "herd node took {took:?} to exit"
    );
    control.stop();
}
