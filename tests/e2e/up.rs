//! `herd up`, `herd control` and `herd node` as processes: ready line, kubeconfig, clean shutdown.

use std::time::Duration;

use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_prints_ready_line_whose_addresses_serve_and_kubeconfig_matches() {
    let mut herd = Herd::up(HerdOptions::with_registry()).await;

    let port: u16 = herd
        .api
        .strip_prefix("https://127.0.0.1:")
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    assert_ne!(
        port, 0,
        "api= is not https://127.0.0.1:<port>: {}",
        herd.api
    );
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

    // The embedded registry answers the distribution API at registry=, over HTTPS with a certificate of
    // the cluster CA (the admin's client certificate authenticates the version check).
    let registry = herd.registry.clone().expect("registry= in the ready line");
    let resp = herd
        .http
        .get(format!("https://{registry}/v2/"))
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_cluster_on_ranges_in_use_refuses_to_start_and_one_on_other_ranges_starts() {
    let mut first = Herd::up(HerdOptions::default()).await;
    let first_pid = first.process().pid;
    let (service, cluster) = (first.cidrs.service, first.cidrs.cluster);
    // Ranges no e2e herd uses (the harness takes 127.128.0.0 and up), varied by this run's pid.
    let free_service = format!("127.2.{}.0/24", std::process::id() % 250);
    let free_cluster = format!("127.1.{}.0/24", std::process::id() % 250);
    let dir = tempfile::tempdir().expect("temp dir");
    let start = |command: &'static str, service: String, cluster: String| {
        let data_dir = dir.path().join(command);
        async move {
            std::fs::create_dir_all(&data_dir).expect("data dir");
            let mut args = vec![
                command.to_string(),
                "--data-dir".into(),
                data_dir.display().to_string(),
                "--listen".into(),
                "127.0.0.1:0".into(),
                "--service-cidr".into(),
                service,
                "--cluster-cidr".into(),
                cluster,
                "--node-cidr-mask-size".into(),
                "24".into(),
            ];
            if command == "up" {
                args.push("--no-registry".into());
            }
            cli(&args).await
        }
    };

    // The same Service range: refused, naming the flag, the other cluster and a free range.
    let out = start("up", service.to_string(), free_cluster.clone()).await;
    assert!(!out.status.success(), "second herd up started: {out:?}");
    let wanted = format!(
        "error: the Service range {service} overlaps the Service range {service} of another herd cluster \
         on this host (pid {first_pid}); choose another with --service-cidr (e.g. --service-cidr "
    );
    assert!(out.stderr.contains(&wanted), "stderr: {}", out.stderr);
    assert_eq!(
        out.stderr
            .lines()
            .filter(|l| l.starts_with("error"))
            .count(),
        1,
        "one error line: {}",
        out.stderr
    );

    // A pod range inside the other's, with `herd control` too.
    let out = start("control", free_service.clone(), cluster.to_string()).await;
    assert!(
        !out.status.success(),
        "second herd control started: {out:?}"
    );
    assert!(
        out.stderr.contains(&format!(
            "the pod range {cluster} overlaps the pod range {cluster} of another herd cluster on this \
             host (pid {first_pid}); choose another with --cluster-cidr"
        )),
        "stderr: {}",
        out.stderr
    );

    // Other ranges: the second cluster starts beside the first, and both serve.
    let second = Herd::up(HerdOptions::default()).await;
    assert_ne!(second.cidrs.service, first.cidrs.service);
    first.get_ok(NAMESPACES).await;
    second.get_ok(NAMESPACES).await;

    // A dead cluster does not hold its ranges, however it died: after the first stopped, its ranges
    // serve a `herd control`, which is then killed (SIGKILL), and another takes them after it.
    first.stop();
    for _ in 0..2 {
        let data_dir = dir.path().join("control-again");
        std::fs::create_dir_all(&data_dir).expect("data dir");
        let mut control = tokio::process::Command::new(HERD)
            .args(["control", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(&data_dir)
            .args(["--service-cidr", &service.to_string()])
            .args(["--cluster-cidr", &cluster.to_string()])
            .args(["--node-cidr-mask-size", "24"])
            .env("NO_COLOR", "1")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn herd control");
        let stderr = control.stderr.take().expect("stderr");
        let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stderr));
        let mut seen = Vec::new();
        let ready = tokio::time::timeout(Duration::from_secs(60), async {
            while let Ok(Some(line)) = lines.next_line().await {
                if line.contains("herd is ready") {
                    return true;
                }
                seen.push(line);
            }
            false
        })
        .await;
        assert_eq!(
            ready,
            Ok(true),
            "herd control on the ranges of a stopped cluster did not start:\n{}",
            seen.join("\n")
        );
        control.kill().await.expect("kill herd control");
    }
    drop(second);
}
