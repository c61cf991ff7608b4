//! kubectl through a node's local API load balancer (`herd node --api-proxy-listen`): with the admin
//! credentials and `--server https://<the balancer>`, as README documents; TLS passes through, so the API
//! server itself authenticates the client certificate and a client without one is refused by it. The node
//! and the balancer carry on across a control plane restart.

use std::time::Duration;

use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_reaches_the_api_server_through_a_nodes_load_balancer() {
    let listen = format!("127.0.0.1:{}", free_port());
    let mut herd = Herd::up(HerdOptions {
        extra_args: vec!["--listen".into(), listen],
        ..HerdOptions::control()
    })
    .await;
    let proxy = format!("127.0.0.1:{}", free_port());
    let mut node = herd
        .start_node_with("proxied", &["--api-proxy-listen", &proxy])
        .await;
    herd.wait_node_ready("proxied").await;
    let ready = format!("herd node proxied is ready api-proxy=https://{proxy}");
    wait_for("the node's ready line", Duration::from_secs(30), || {
        let (logs, ready) = (node.process.logs(), ready.clone());
        async move {
            if logs.contains(&ready) {
                Ok(())
            } else {
                Err(logs)
            }
        }
    })
    .await;

    let server = format!("https://{proxy}");
    kubectl(
        &herd,
        &["--server", &server, "get", "node", "proxied", "-o", "name"],
    )
    .await
    .ok()
    .stdout_has("node/proxied");
    // Without credentials the API server itself answers, through the balancer, with its 401 Status (and its
    // certificate, of the cluster CA, verifies for the balancer's address).
    let curl = tokio::process::Command::new("curl")
        .args(["-sS", "--noproxy", "*", "--cacert"])
        .arg(herd.data_dir.join("pki/ca.crt"))
        .args(["-w", "\n%{http_code}"])
        .arg(format!("{server}/api/v1/nodes"))
        .output()
        .await
        .expect("curl");
    let out = String::from_utf8_lossy(&curl.stdout).into_owned();
    assert!(
        out.ends_with("\n401"),
        "{out}{}",
        String::from_utf8_lossy(&curl.stderr)
    );
    assert!(out.contains(r#""reason":"Unauthorized""#), "{out}");

    // The API server stops and starts again: the balancer finds it again for kubectl and for the node.
    herd.restart().await;
    wait_for(
        "kubectl through the balancer after the restart",
        Duration::from_secs(30),
        || async {
            let out = kubectl(
                &herd,
                &["--server", &server, "get", "node", "proxied", "-o", "name"],
            )
            .await;
            if out.status.success() && out.stdout.contains("node/proxied") {
                Ok(())
            } else {
                Err(out.stderr)
            }
        },
    )
    .await;
    herd.wait_node_ready("proxied").await;
    assert!(node.process.exited().is_none(), "{}", node.process.logs());
}
