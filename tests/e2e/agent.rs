//! The node agent: registers its Node and renews its Lease, pulls images from a real registry, runs pods
//! and reports their status.

use std::time::Duration;

use serde_json::Value;

use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hello_pod_pulled_from_docker_registry_succeeds() {
    let registry = Registry::start().await;
    let image = registry.image("hello:v1");
    let digest = push("hello", &image).await;
    // herd push really stored the artifact: the registry serves the manifest under that digest.
    let resp = http_client()
        .get(format!("http://{}/v2/hello/manifests/v1", registry.addr))
        .header("accept", "application/vnd.oci.image.manifest.v1+json")
        .send()
        .await
        .expect("GET manifest");
    assert_eq!(resp.status().as_u16(), 200);
    let served = resp
        .headers()
        .get("docker-content-digest")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    assert_eq!(
        served, digest,
        "digest printed by herd push vs the registry's"
    );

    let herd = Herd::up(HerdOptions::default()).await;
    herd.create(PODS, &hello_pod("hello", &image, &["a", "b"], "Never"))
        .await;
    let pod = herd.wait_phase("hello", "Succeeded").await;

    let status = container_status(&pod);
    let terminated = &status["state"]["terminated"];
    assert_eq!(terminated["exitCode"], 0, "{}", pod_summary(&pod));
    assert_eq!(terminated["reason"], "Completed", "{}", pod_summary(&pod));
    assert_eq!(status["name"], "hello");
    assert_eq!(
        status["ready"], false,
        "a terminated container is not ready"
    );
    assert_eq!(status["restartCount"], 0);
    assert!(
        s(status, "/imageID").contains("sha256:"),
        "imageID: {}",
        pod_summary(&pod)
    );
    assert_eq!(s(status, "/image"), image);
    assert!(
        !s(&pod, "/status/startTime").is_empty(),
        "no startTime: {}",
        pod_summary(&pod)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_image_goes_err_image_pull_then_image_pull_backoff() {
    let registry = Registry::start().await;
    let image = registry.image("absent:v1");
    let herd = Herd::up(HerdOptions::default()).await;

    let created = herd
        .create(PODS, &hello_pod("missing", &image, &[], "Never"))
        .await;
    let rv = s(&created, "/metadata/resourceVersion");
    let mut watch = WatchStream::open(
        &herd.http,
        &herd.url(&format!("{PODS}?watch=true&resourceVersion={rv}")),
    )
    .await;
    let waiting_reason =
        |e: &Value| s(e, "/object/status/containerStatuses/0/state/waiting/reason").to_string();
    let (events, done) = watch
        .until(START_TIMEOUT, |e| waiting_reason(e) == "ImagePullBackOff")
        .await;
    let reasons: Vec<String> = events
        .iter()
        .map(waiting_reason)
        .filter(|r| !r.is_empty())
        .collect();
    assert!(
        done,
        "no ImagePullBackOff; waiting reasons seen: {reasons:?}"
    );
    let first_backoff = reasons
        .iter()
        .position(|r| r == "ImagePullBackOff")
        .unwrap_or(0);
    assert!(
        reasons[..first_backoff].iter().any(|r| r == "ErrImagePull"),
        "no ErrImagePull before: {reasons:?}"
    );

    let last = &events[events.len() - 1]["object"];
    let message = s(last, "/status/containerStatuses/0/state/waiting/message").to_lowercase();
    assert!(
        message.contains("manifest unknown"),
        "the registry's error is not in the message: {message:?}"
    );
    assert_eq!(phase(last), "Pending");

    // The failure stays with the pod: herd still answers and the node stays Ready.
    herd.get_ok(PODS).await;
    herd.wait_node_ready("e2e-node").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_registers_ready_with_capacity_address_and_renews_its_lease() {
    let herd = Herd::up(HerdOptions {
        node_name: "lease-node".into(),
        ..Default::default()
    })
    .await;
    let node = herd.wait_node_ready("lease-node").await;

    for resource in ["cpu", "memory", "pods"] {
        assert!(
            node.pointer(&format!("/status/allocatable/{resource}"))
                .is_some(),
            "allocatable.{resource} missing: {}",
            node["status"]
        );
    }
    let addresses = node
        .pointer("/status/addresses")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    assert!(
        addresses
            .iter()
            .any(|a| s(a, "/type") == "InternalIP" && !s(a, "/address").is_empty()),
        "no InternalIP address: {}",
        node["status"]
    );
    let pod_cidr = wait_for("node podCIDR", Duration::from_secs(20), || async {
        let node = herd.get_ok(&format!("{NODES}/lease-node")).await;
        Cidr::parse(s(&node, "/spec/podCIDR")).ok_or_else(|| node["spec"].to_string())
    })
    .await;
    assert!(
        herd.cidrs.cluster.covers(&pod_cidr),
        "podCIDR {pod_cidr} not inside {}",
        herd.cidrs.cluster
    );
    assert_eq!(pod_cidr.prefix, 24, "pod CIDR {pod_cidr}");

    let lease_path = "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/lease-node";
    let lease = wait_for("the node's Lease", Duration::from_secs(20), || async {
        match herd.get(lease_path).await {
            (200, lease) => Ok(lease),
            (status, body) => Err(format!("{status}: {body}")),
        }
    })
    .await;
    assert_eq!(s(&lease, "/spec/holderIdentity"), "lease-node", "{lease}");
    let first = s(&lease, "/spec/renewTime").to_string();
    assert!(!first.is_empty(), "lease without renewTime: {lease}");
    wait_for(
        "the lease to be renewed",
        Duration::from_secs(45),
        || async {
            let lease = herd.get_ok(lease_path).await;
            let renewed = s(&lease, "/spec/renewTime");
            if renewed != first.as_str() {
                Ok(())
            } else {
                Err(format!("renewTime still {renewed}"))
            }
        },
    )
    .await;
}
