//! Networking of components: `wasi:sockets` binds only on the pod's IP; outbound wasi-http requests and
//! connections work by default, and a pod author shuts them off (or narrows them to some networks) with the
//! `herd.dev/egress` annotation.

use serde_json::json;

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_http_works_unless_the_pod_restricts_its_egress() {
    let (_registry, images) = registry_with(&["http-hello"]).await;
    let herd = Herd::up(HerdOptions::default()).await;
    herd.wait_node_ready("e2e-node").await;
    // The API server is a handy HTTP server on loopback.
    let api = herd.api.trim_start_matches("http://").to_string();
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
    assert!(body.starts_with("upstream 200: "), "{body}");
    assert!(body.contains("gitVersion"), "{body}");
    for name in ["closed", "narrow"] {
        let pod = wait_running(&herd, name).await;
        wait_answer(&pod, 8080, "/", 200).await;
        let (status, body) = pod_get(&pod, 8080, &format!("/fetch/{api}/version")).await;
        assert_eq!(status, 502, "{name}: {body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sockets_bind_only_the_pod_ip_and_egress_follows_the_annotation() {
    let (_registry, images) = registry_with(&["netcheck"]).await;
    let herd = Herd::up(HerdOptions::default()).await;
    herd.wait_node_ready("e2e-node").await;
    let api = herd.api.trim_start_matches("http://").to_string();
    let netcheck = |name: &str, egress: Option<&str>| {
        let mut pod = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name},
            "spec": {"restartPolicy": "Never", "containers": [{
                "name": "netcheck", "image": images[0],
                "env": [{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}],
                "args": ["bind=0.0.0.0:9000", "bind=127.0.0.1:9001", "bind=$(POD_IP):9002",
                         format!("connect={api}")],
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
        assert!(line("bind 0.0.0.0:9000: ").contains(": error"), "{logs}");
        assert!(line("bind 127.0.0.1:9001: ").contains(": error"), "{logs}");
        assert_eq!(
            line(&format!("bind {ip}:9002: ")),
            format!("bind {ip}:9002: ok")
        );
        let connect = line(&format!("connect {api}: "));
        if name == "open" {
            assert_eq!(connect, format!("connect {api}: ok"));
        } else {
            assert!(connect.contains(": error"), "{logs}");
        }
    }
}
