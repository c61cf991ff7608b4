//! The registry embedded in `herd up`: a full OCI registry that `herd push` can push to and pods can pull
//! from.

use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_to_embedded_registry_and_run_a_pod_from_it() {
    let herd = Herd::up(HerdOptions::with_registry()).await;
    let registry = herd.registry.clone().expect("embedded registry address");
    let image = format!("{registry}/demo/hello:v1");
    let digest = push("hello", &image).await;

    // The distribution API serves it: by tag and by digest, with the same digest.
    for reference in ["v1", digest.as_str()] {
        let url = format!("http://{registry}/v2/demo/hello/manifests/{reference}");
        let resp = herd
            .http
            .get(&url)
            .header("accept", "application/vnd.oci.image.manifest.v1+json")
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {url}: {e}"));
        assert_eq!(resp.status().as_u16(), 200, "GET {url}");
        let served = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        assert_eq!(
            served.as_deref(),
            Some(digest.as_str()),
            "Docker-Content-Digest of {url}"
        );
        let manifest: serde_json::Value = resp.json().await.expect("manifest JSON");
        assert_eq!(manifest["schemaVersion"], 2, "{manifest}");
        assert!(
            manifest["layers"].as_array().is_some_and(|l| !l.is_empty()),
            "{manifest}"
        );
    }
    let tags = herd
        .get_ok_abs(&format!("http://{registry}/v2/demo/hello/tags/list"))
        .await;
    assert_eq!(tags["tags"], serde_json::json!(["v1"]), "{tags}");

    herd.create(
        PODS,
        &hello_pod("from-embedded", &image, &["embedded"], "Never"),
    )
    .await;
    let pod = herd.wait_phase("from-embedded", "Succeeded").await;
    assert!(
        s(container_status(&pod), "/imageID").contains("sha256:"),
        "{}",
        pod_summary(&pod)
    );
    assert!(
        herd.pod_log("from-embedded")
            .await
            .contains(r#"args: ["embedded"]"#)
    );

    // Unknown manifests are a 404 with an OCI error code.
    let url = format!("http://{registry}/v2/nothing/here/manifests/v1");
    let resp = herd
        .http
        .get(&url)
        .send()
        .await
        .expect("GET unknown manifest");
    assert_eq!(resp.status().as_u16(), 404, "GET {url}");
    let body: serde_json::Value = resp.json().await.unwrap_or_default();
    assert!(
        ["MANIFEST_UNKNOWN", "NAME_UNKNOWN"].contains(&s(&body, "/errors/0/code")),
        "{body}"
    );
}
