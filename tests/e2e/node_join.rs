//! A node on its own joins `herd control` with `herd token create`'s command (kubeadm's discovery and the
//! kubelet's TLS bootstrap): a wrong `--ca-cert-hash` is refused in one line and registers nothing; the joined
//! node becomes Ready, runs a pod whose logs `kubectl logs` reads through the API server over the kubelet
//! port's TLS (a serving certificate of the cluster CA from a kubelet-serving CSR); the kubelet port refuses a
//! client without a certificate; and the node stays Ready and runs a new pod after the control plane is
//! stopped and started again on the same address and data dir.

use std::time::Duration;

use serde_json::Value;

use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_joins_with_a_token_serves_logs_over_tls_and_survives_a_control_plane_restart() {
    let registry = Registry::start().await;
    let image = registry.image("hello:v1");
    push("hello", &image).await;
    let listen = format!("127.0.0.1:{}", free_port());
    let mut herd = Herd::up(HerdOptions {
        extra_args: vec!["--listen".into(), listen.clone()],
        ..HerdOptions::control()
    })
    .await;

    let printed = herd.cli(&["token", "create"]).await.ok().stdout;
    let join: Vec<String> = printed.split_whitespace().map(str::to_owned).collect();
    assert_eq!(
        join.get(..3).map(|a| a.join(" ")),
        Some("herd node --server".to_string()),
        "{printed}"
    );
    assert_eq!(join[3], format!("https://{listen}"), "{printed}");
    let dir = tempfile::tempdir().expect("node dir");

    // A wrong CA pin: refused in one line, before any request is filed.
    let hash_at = join
        .iter()
        .position(|a| a == "--ca-cert-hash")
        .expect("a pin")
        + 1;
    let mut wrong = join[1..].to_vec();
    wrong[hash_at - 1] = format!("sha256:{}", "0".repeat(64));
    wrong.extend([
        "--name".into(),
        "impostor".into(),
        "--data-dir".into(),
        dir.path().join("impostor").display().to_string(),
    ]);
    let refused = cli(&wrong).await;
    assert!(!refused.status.success(), "{refused:?}");
    let errors: Vec<&str> = refused
        .stderr
        .lines()
        .filter(|l| l.to_lowercase().starts_with("error"))
        .collect();
    assert_eq!(errors.len(), 1, "{}", refused.stderr);
    assert!(
        errors[0].contains("cluster CA found in cluster-info ConfigMap is invalid"),
        "{}",
        refused.stderr
    );
    assert!(!refused.stderr.contains("Caused by"), "{}", refused.stderr);
    let csrs = herd
        .get_ok("/apis/certificates.k8s.io/v1/certificatesigningrequests")
        .await;
    assert_eq!(csrs["items"], Value::Array(Vec::new()), "{csrs}");
    assert_eq!(herd.get(&format!("{NODES}/impostor")).await.0, 404);

    // The printed command joins.
    let data_dir = dir.path().join("joined");
    let mut args = join[1..].to_vec();
    args.extend([
        "--name".into(),
        "joined".into(),
        "--data-dir".into(),
        data_dir.display().to_string(),
        "--address".into(),
        "127.0.0.1".into(),
    ]);
    let node = HerdProcess::spawn("herd-node-joined", &args, dir.path(), None);
    let ready = herd.wait_node_ready("joined").await;
    let kubelet_port = ready["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"]
        .as_u64()
        .expect("kubelet port");

    run_and_read_logs(&herd, &image, "first").await;
    assert!(
        data_dir.join("pki/kubelet-server-current.pem").exists(),
        "the serving certificate is kept"
    );

    // The kubelet port over TLS with a certificate of the cluster CA, and no client certificate: 401.
    let ca = herd.data_dir.join("pki/ca.crt");
    let curl = tokio::process::Command::new("curl")
        .args(["-sS", "--noproxy", "*", "--cacert"])
        .arg(&ca)
        .args(["-w", "\n%{http_code}"])
        .arg(format!(
            "https://127.0.0.1:{kubelet_port}/containerLogs/default/first/hello"
        ))
        .output()
        .await
        .expect("curl");
    let out = String::from_utf8_lossy(&curl.stdout).into_owned();
    assert!(
        curl.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&curl.stderr)
    );
    assert!(out.ends_with("\n401"), "{out}");
    assert!(out.starts_with("Unauthorized"), "{out}");

    // The control plane stops and starts again on the same address and data dir: the node carries on.
    herd.restart().await;
    herd.wait_node_ready("joined").await;
    run_and_read_logs(&herd, &image, "second").await;
    drop(node);
}

/// Runs the hello app as pod `name` (on the joined node, the only one) and reads its logs with kubectl.
async fn run_and_read_logs(herd: &Herd, image: &str, name: &str) {
    herd.create(PODS, &hello_pod(name, image, &[], "Never"))
        .await;
    let pod = herd.wait_phase(name, "Succeeded").await;
    assert_eq!(pod["spec"]["nodeName"], "joined");
    // Until the kubelet-serving CSR is signed the port serves a self-signed certificate, which the API
    // server does not trust: wait for the signed one.
    wait_for(
        &format!("kubectl logs {name}"),
        Duration::from_secs(30),
        || async {
            let out = kubectl(herd, &["logs", name]).await;
            if out.status.success() && out.stdout.contains("Hello from herd!") {
                Ok(())
            } else {
                Err(format!("{}{}", out.stdout, out.stderr))
            }
        },
    )
    .await;
}
