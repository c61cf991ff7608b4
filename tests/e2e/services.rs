//! Services: cluster IP from --service-cidr, Endpoints of the ready pods, and the proxy balancing TCP
//! connections to clusterIP:port over both pods, which share a port on distinct pod IPs.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_gets_cluster_ip_endpoints_and_balances_over_both_pods() {
    let registry = Registry::start().await;
    let image = registry.image("http-hello:v1");
    push("http-hello", &image).await;
    let herd = Herd::up(HerdOptions::default()).await;

    herd.create(SERVICES, &service("web", "web", 80, 8080))
        .await;
    herd.create(PODS, &http_hello_pod("web-a", "web", &image))
        .await;
    herd.create(PODS, &http_hello_pod("web-b", "web", &image))
        .await;

    let svc = wait_for("service cluster IP", Duration::from_secs(20), || async {
        let svc = herd.get_ok(&format!("{SERVICES}/web")).await;
        if s(&svc, "/spec/clusterIP").is_empty() {
            Err(svc["spec"].to_string())
        } else {
            Ok(svc)
        }
    })
    .await;
    let cluster_ip = s(&svc, "/spec/clusterIP").to_string();
    assert!(
        herd.cidrs.service.contains(&cluster_ip),
        "clusterIP {cluster_ip} not in {}",
        herd.cidrs.service
    );
    assert_eq!(
        svc["spec"]["clusterIPs"][0],
        cluster_ip.as_str(),
        "clusterIPs"
    );

    // Two pods on the one node, both on port 8080, each on its own IP.
    let mut ips = Vec::new();
    for name in ["web-a", "web-b"] {
        let pod = herd.wait_phase(name, "Running").await;
        assert_eq!(s(&pod, "/spec/nodeName"), "e2e-node");
        let ip = s(&pod, "/status/podIP").to_string();
        herd.wait_http(
            &format!("http://{ip}:8080/direct"),
            &format!("pod={name} path=/direct"),
            START_TIMEOUT,
        )
        .await;
        ips.push(ip);
    }
    assert_ne!(ips[0], ips[1], "two pods share a pod IP");

    // Endpoints list both pod IPs with the target port.
    let wanted: BTreeSet<String> = ips.iter().cloned().collect();
    wait_for(
        "Endpoints web with both pod IPs",
        Duration::from_secs(30),
        || async {
            let (status, endpoints) = herd.get("/api/v1/namespaces/default/endpoints/web").await;
            let mut addresses = BTreeSet::new();
            let mut ports = BTreeSet::new();
            for subset in endpoints["subsets"].as_array().cloned().unwrap_or_default() {
                for a in subset["addresses"].as_array().cloned().unwrap_or_default() {
                    addresses.insert(s(&a, "/ip").to_string());
                }
                for p in subset["ports"].as_array().cloned().unwrap_or_default() {
                    ports.insert(p["port"].as_i64().unwrap_or(0));
                }
            }
            if addresses == wanted && ports == BTreeSet::from([8080]) {
                Ok(())
            } else {
                Err(format!("{status}: addresses {addresses:?} ports {ports:?}"))
            }
        },
    )
    .await;

    // Beside the Endpoints, kube's EndpointSlice of the Service: both pods ready, the target port, owned by
    // the Service; kubectl prints kube's columns.
    wait_for(
        "an EndpointSlice of web with both pod IPs",
        Duration::from_secs(30),
        || async {
            let (status, slices) = herd
                .get("/apis/discovery.k8s.io/v1/namespaces/default/endpointslices?labelSelector=kubernetes.io%2Fservice-name%3Dweb")
                .await;
            let items = slices["items"].as_array().cloned().unwrap_or_default();
            let [slice] = items.as_slice() else {
                return Err(format!("{status}: {} slices", items.len()));
            };
            let ready: BTreeSet<String> = slice["endpoints"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|e| e["conditions"]["ready"] == true)
                .map(|e| s(e, "/addresses/0").to_string())
                .collect();
            if ready == wanted
                && slice["ports"][0]["port"] == 8080
                && slice["addressType"] == "IPv4"
                && slice["metadata"]["ownerReferences"][0]["kind"] == "Service"
            {
                Ok(())
            } else {
                Err(format!("{status}: {slice}"))
            }
        },
    )
    .await;
    let table = kubectl(
        &herd,
        &[
            "get",
            "endpointslices",
            "-l",
            "kubernetes.io/service-name=web",
        ],
    )
    .await
    .ok()
    .table();
    assert_eq!(
        table.columns,
        ["NAME", "ADDRESSTYPE", "PORTS", "ENDPOINTS", "AGE"]
    );

    // clusterIP:80 answers from both pods.
    let mut seen = BTreeSet::new();
    let mut bodies = Vec::new();
    let url = format!("http://{cluster_ip}:80/via-service");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while seen.len() < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "only pods {seen:?} answered through {url} in 60 s; last answers {:?}",
            &bodies[bodies.len().saturating_sub(3)..]
        );
        // A fresh client (so a fresh connection) per request, so that the proxy may pick another endpoint.
        match http_client()
            .get(&url)
            .timeout(Duration::from_secs(5))
            .send()
            .await
        {
            Ok(resp) => {
                let text = resp.text().await.unwrap_or_default();
                if let Some(pod) = pod_name(&text) {
                    seen.insert(pod);
                }
                bodies.push(text);
            }
            Err(e) => {
                bodies.push(format!("error: {e}"));
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    assert_eq!(
        seen,
        BTreeSet::from(["web-a".to_string(), "web-b".to_string()])
    );
    assert!(
        bodies
            .iter()
            .filter(|b| !b.starts_with("error"))
            .all(|b| b.contains("path=/via-service")),
        "{bodies:?}"
    );
}

fn pod_name(body: &str) -> Option<String> {
    body.split_whitespace()
        .find_map(|w| w.strip_prefix("pod="))
        .map(str::to_string)
}
