//! Networking of components: outbound wasi-http requests work by default, and a pod author shuts them off
//! (or narrows them to some networks) with the `herd.dev/egress` annotation.

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
