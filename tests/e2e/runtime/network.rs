//! Networking of components, as in a pod's network namespace: a guest binding `0.0.0.0`, `::`, `127.0.0.1`
//! or `::1` listens on its pod IP, any other local address is refused; `localhost` is the pod, so the
//! containers of a pod talk over it (sockets and outbound wasi-http requests); outbound requests and
//! connections work by default, and a pod author shuts them off (or narrows them to some networks) with the
//! `herd.dev/egress` annotation. Ordinary `std::net` programs (the `echo-tcp` sample) work unchanged.

use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_http_works_unless_the_pod_restricts_its_egress() {
    let (_registry, images) = registry_with(&["http-hello"]).await;
    let herd = Herd::up(HerdOptions::default()).await;
    herd.wait_node_ready("e2e-node").await;
    // A server on the host (not on 127.0.0.1, which in a pod is the pod).
    let api = host_http("upstream-body").await;
    let open = http_hello_pod("open", "web", &images[0]);
    let mut closed = http_hello_pod("closed", "web", &images[0]);
    closed["metadata"]["annotations"] = json!({"herd.dev/egress": "none"});
    let mut narrow = http_hello_pod("narrow", "web", &images[0]);
    narrow["metadata"]["annotations"] = json!({"herd.dev/egress": "10.0.0.0/8"});
    for pod in [&open, &closed, &narrow] {
        herd.create(PODS, pod).await;
    }
    let open = wait_running(&herd, "open").await;
    let body = wait_answer(&open, 8080, &format!("/fetch/{api}/version"), 200).await;
    assert_eq!(body, "upstream 200: upstream-body");
    for name in ["closed", "narrow"] {
        let pod = wait_running(&herd, name).await;
        wait_answer(&pod, 8080, "/", 200).await;
        let (status, body) = pod_get(&pod, 8080, &format!("/fetch/{api}/version")).await;
        assert_eq!(status, 502, "{name}: {body}");
    }
    // localhost is the pod itself, whatever its egress (traffic inside a pod is not egress).
    for name in ["open", "closed"] {
        let pod = get_pod(&herd, name).await;
        let (status, body) = pod_get(&pod, 8080, "/fetch/localhost:8080/self").await;
        assert_eq!(status, 200, "{name}: {body}");
        assert!(
            body.starts_with(&format!(
                "upstream 200: Hello from herd! pod={name} path=/self"
            )),
            "{name}: {body}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sockets_bind_the_pod_ip_as_in_a_network_namespace_and_egress_follows_the_annotation() {
    let (_registry, images) = registry_with(&["netcheck"]).await;
    let herd = Herd::up(HerdOptions::default()).await;
    herd.wait_node_ready("e2e-node").await;
    // Something to connect to on the host (not on 127.0.0.1, which in a pod is the pod).
    let api = host_http("").await;
    let netcheck = |name: &str, egress: Option<&str>| {
        let mut pod = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name},
            "spec": {"restartPolicy": "Never", "containers": [{
                "name": "netcheck", "image": images[0],
                "env": [{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}],
                "args": ["bind=0.0.0.0:9000", "bind=127.0.0.1:9001", "bind=$(POD_IP):9002",
                         "bind=127.0.0.2:9003", "bind=[::]:9004", format!("connect={api}")],
            }]},
        });
        if let Some(egress) = egress {
            pod["metadata"]["annotations"] = json!({"herd.dev/egress": egress});
        }
        pod
    };
    herd.create(PODS, &netcheck("open", None)).await;
    herd.create(PODS, &netcheck("closed", Some("none"))).await;
    for name in ["open", "closed"] {
        let pod = wait_pod(&herd, name, "Succeeded", START_TIMEOUT, |p| {
            phase(p) == "Succeeded"
        })
        .await;
        let ip = s(&pod, "/status/podIP").to_string();
        let logs = kubectl(&herd, &["logs", name]).await.ok().stdout;
        let line = |prefix: &str| {
            logs.lines()
                .find(|l| l.starts_with(prefix))
                .unwrap_or_else(|| panic!("no {prefix:?} line in:\n{logs}"))
                .to_string()
        };
        // The wildcard and loopback addresses are the pod's own; another local address is not.
        assert_eq!(
            line("bind 0.0.0.0:9000: "),
            "bind 0.0.0.0:9000: ok",
            "{logs}"
        );
        assert_eq!(
            line("bind 127.0.0.1:9001: "),
            "bind 127.0.0.1:9001: ok",
            "{logs}"
        );
        assert_eq!(
            line(&format!("bind {ip}:9002: ")),
            format!("bind {ip}:9002: ok")
        );
        assert!(line("bind 127.0.0.2:9003: ").contains(": error"), "{logs}");
        assert_eq!(line("bind [::]:9004: "), "bind [::]:9004: ok", "{logs}");
        let connect = line(&format!("connect {api}: "));
        if name == "open" {
            assert_eq!(connect, format!("connect {api}: ok"));
        } else {
            assert!(connect.contains(": error"), "{logs}");
        }
    }
}

/// One line exchanged with an echo server at `addr`, from the host.
async fn echo_once(addr: &str) -> Result<String, String> {
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect {addr}: {e}"))?;
    stream
        .write_all(b"hello\n")
        .await
        .map_err(|e| format!("write: {e}"))?;
    let mut reply = String::new();
    tokio::time::timeout(
        Duration::from_secs(5),
        BufReader::new(stream).read_line(&mut reply),
    )
    .await
    .map_err(|_| "no reply".to_string())?
    .map_err(|e| format!("read: {e}"))?;
    Ok(reply)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ordinary_server_on_0_0_0_0_serves_its_pod_ip_and_its_sidecar_over_localhost() {
    let (_registry, images) = registry_with(&["echo-tcp"]).await;
    let herd = Herd::up(HerdOptions::default()).await;
    herd.wait_node_ready("e2e-node").await;
    // As sample-apps/echo-tcp/manifest.yaml: programs that know nothing of herd.
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "echo"},
        "spec": {"containers": [
            {"name": "server", "image": images[0], "args": ["serve", "0.0.0.0:7000"],
             "ports": [{"containerPort": 7000}]},
            {"name": "client", "image": images[0], "args": ["client", "localhost:7000"]},
        ]},
    });
    herd.create(PODS, &pod).await;
    let pod = wait_running(&herd, "echo").await;
    let ip = s(&pod, "/status/podIP").to_string();
    // The server listens on the pod IP, where the host (and other pods) reach it.
    let reply = wait_for("the server to answer on its pod IP", START_TIMEOUT, || {
        let addr = format!("{ip}:7000");
        async move { echo_once(&addr).await }
    })
    .await;
    assert_eq!(reply, "echo: hello\n");
    let logs = kubectl(&herd, &["logs", "echo", "-c", "server"])
        .await
        .ok()
        .stdout;
    assert!(logs.contains(&format!("listening on {ip}:7000")), "{logs}");
    // The sidecar reaches it over localhost.
    wait_for(
        "the sidecar to get a reply over localhost",
        START_TIMEOUT,
        || async {
            let logs = kubectl(&herd, &["logs", "echo", "-c", "client"])
                .await
                .stdout;
            if logs.contains("reply: echo: ping ") {
                Ok(())
            } else {
                Err(logs)
            }
        },
    )
    .await;
}
