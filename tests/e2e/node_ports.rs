//! The host-side proxy beyond plain ClusterIP TCP: NodePorts (allocated from `--service-node-port-range`,
//! refused in kube's words, kept on update, freed on delete, answering on the node's address), a UDP
//! Service in front of a real UDP guest, `sessionAffinity: ClientIP` and `internalTrafficPolicy: Local`.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::*;

/// A NodePort Service `name` selecting `app=<app>`, `port → 8080`, with `node_port` when given (JSON,
/// which kubectl takes on its standard input as it takes YAML).
fn node_port_service(name: &str, app: &str, node_port: Option<u16>) -> String {
    let mut port = json!({"port": 80, "targetPort": 8080});
    if let Some(node_port) = node_port {
        port["nodePort"] = json!(node_port);
    }
    json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
        "spec": {"type": "NodePort", "selector": {"app": app}, "ports": [port]}})
    .to_string()
}

fn node_port_of(svc: &Value) -> u16 {
    svc["spec"]["ports"][0]["nodePort"]
        .as_u64()
        .and_then(|p| u16::try_from(p).ok())
        .unwrap_or_else(|| panic!("no nodePort in {svc}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_ports_are_allocated_refused_kept_freed_and_answer_on_the_node_address() {
    let registry = Registry::start().await;
    let image = registry.image("http-hello:v1");
    push("http-hello", &image).await;
    let herd = Herd::up(HerdOptions {
        extra_args: vec!["--service-node-port-range".into(), "30110-30112".into()],
        ..HerdOptions::default()
    })
    .await;

    // A port from the range.
    kubectl_stdin(
        &herd,
        &["create", "-f", "-"],
        &node_port_service("a", "web", None),
    )
    .await
    .ok();
    let a = herd.get_ok(&format!("{SERVICES}/a")).await;
    let port = node_port_of(&a);
    assert!((30110..=30112).contains(&port), "nodePort {port}");

    // Taken, and out of range: kube's 422 words.
    let taken = kubectl_stdin(
        &herd,
        &["create", "-f", "-"],
        &node_port_service("b", "web", Some(port)),
    )
    .await;
    assert!(!taken.status.success());
    assert!(
        taken.stderr.contains(&format!(
            "The Service \"b\" is invalid: spec.ports[0].nodePort: Invalid value: {port}: provided port is already allocated"
        )),
        "{}",
        taken.stderr
    );
    let outside = kubectl_stdin(
        &herd,
        &["create", "-f", "-"],
        &node_port_service("b", "web", Some(30200)),
    )
    .await;
    assert!(
        outside.stderr.contains(
            "spec.ports[0].nodePort: Invalid value: 30200: provided port is not in the valid range. \
             The range of valid ports is 30110-30112"
        ),
        "{}",
        outside.stderr
    );

    // A replace without the nodePort keeps it (kube's patchAllocatedValues).
    let mut replaced: Value =
        serde_json::from_str(&node_port_service("a", "web", None)).expect("json");
    replaced["metadata"]["labels"] = json!({"changed": "yes"});
    kubectl_stdin(&herd, &["replace", "-f", "-"], &replaced.to_string())
        .await
        .ok();
    let a = herd.get_ok(&format!("{SERVICES}/a")).await;
    assert_eq!(a["metadata"]["labels"]["changed"], "yes");
    assert_eq!(node_port_of(&a), port, "the update kept the nodePort");

    // The NodePort answers on the node's address.
    herd.create(PODS, &http_hello_pod("web-a", "web", &image))
        .await;
    let node = herd.get_ok(&format!("{NODES}/e2e-node")).await;
    let address = node["status"]["addresses"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|a| a["type"] == "InternalIP")
        .map(|a| s(a, "/address").to_string())
        .expect("an InternalIP");
    herd.wait_http(
        &format!("http://{address}:{port}/via-node-port"),
        "pod=web-a path=/via-node-port",
        START_TIMEOUT,
    )
    .await;

    // Deleted, its port is free for another Service.
    kubectl(&herd, &["delete", "service", "a"]).await.ok();
    wait_for(
        "the port of a to be free",
        Duration::from_secs(20),
        || async {
            let out = kubectl_stdin(
                &herd,
                &["create", "-f", "-"],
                &node_port_service("b", "web", Some(port)),
            )
            .await;
            if out.status.success() {
                Ok(())
            } else {
                Err(out.stderr)
            }
        },
    )
    .await;
    let mut b = herd.get_ok(&format!("{SERVICES}/b")).await;
    assert_eq!(node_port_of(&b), port);

    // Changed to ClusterIP by a full replace that still carries the nodePort: it is dropped and freed.
    b["spec"]["type"] = json!("ClusterIP");
    kubectl_stdin(&herd, &["replace", "-f", "-"], &b.to_string())
        .await
        .ok();
    let b = herd.get_ok(&format!("{SERVICES}/b")).await;
    assert!(b["spec"]["ports"][0].get("nodePort").is_none(), "{b}");
    kubectl_stdin(
        &herd,
        &["create", "-f", "-"],
        &node_port_service("c", "web", Some(port)),
    )
    .await
    .ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_udp_service_reaches_a_udp_guest_through_the_proxy() {
    let registry = Registry::start().await;
    let image = registry.image("echo-udp:v1");
    push("echo-udp", &image).await;
    let herd = Herd::up(HerdOptions::default()).await;
    herd.create(
        SERVICES,
        &json!({
            "apiVersion": "v1", "kind": "Service", "metadata": {"name": "echo"},
            "spec": {"selector": {"app": "echo"},
                "ports": [{"port": 5300, "targetPort": 5300, "protocol": "UDP"}]},
        }),
    )
    .await;
    herd.create(
        PODS,
        &json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "echo", "labels": {"app": "echo"}},
            "spec": {"terminationGracePeriodSeconds": TEST_GRACE_SECONDS,
                "containers": [{"name": "echo", "image": image, "args": ["0.0.0.0:5300"]}]},
        }),
    )
    .await;
    herd.wait_phase("echo", "Running").await;
    let svc = herd.get_ok(&format!("{SERVICES}/echo")).await;
    let frontend = format!("{}:5300", s(&svc, "/spec/clusterIP"));
    let client = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("client socket");
    let answer = wait_for("the UDP Service to echo", START_TIMEOUT, || async {
        client
            .send_to(b"ping", &frontend)
            .await
            .map_err(|e| e.to_string())?;
        let mut buf = [0u8; 64];
        match tokio::time::timeout(Duration::from_millis(500), client.recv_from(&mut buf)).await {
            Ok(Ok((n, from))) => Ok((String::from_utf8_lossy(&buf[..n]).into_owned(), from)),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("no answer".into()),
        }
    })
    .await;
    assert_eq!(answer.0, "echo: ping");
    assert_eq!(
        answer.1.to_string(),
        frontend,
        "the answer comes from the Service"
    );
}

/// The pods that answer `count` GETs of `url`, by name.
async fn answering_pods(herd: &Herd, url: &str, count: usize) -> BTreeSet<String> {
    let mut pods = BTreeSet::new();
    for _ in 0..count {
        let body = herd.wait_http(url, "pod=", Duration::from_secs(10)).await;
        if let Some(pod) = body.split_whitespace().find_map(|w| w.strip_prefix("pod=")) {
            pods.insert(pod.to_string());
        }
    }
    pods
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_ip_affinity_sticks_and_local_traffic_policy_keeps_this_nodes_endpoints() {
    let registry = Registry::start().await;
    let image = registry.image("http-hello:v1");
    push("http-hello", &image).await;
    let herd = Herd::up(HerdOptions::default()).await;
    let mut sticky = service("sticky", "web", 80, 8080);
    sticky["spec"]["sessionAffinity"] = json!("ClientIP");
    herd.create(SERVICES, &sticky).await;
    herd.create(SERVICES, &service("plain", "web", 80, 8080))
        .await;
    let mut ips = Vec::new();
    for name in ["web-a", "web-b"] {
        herd.create(PODS, &http_hello_pod(name, "web", &image))
            .await;
        let pod = herd.wait_phase(name, "Running").await;
        ips.push(s(&pod, "/status/podIP").to_string());
    }
    let cluster_ip = |svc: Value| s(&svc, "/spec/clusterIP").to_string();
    let plain = cluster_ip(herd.get_ok(&format!("{SERVICES}/plain")).await);
    let sticky = cluster_ip(herd.get_ok(&format!("{SERVICES}/sticky")).await);
    // Both pods serve the plain Service (round robin), so both are endpoints by now.
    wait_for("both pods behind plain", START_TIMEOUT, || async {
        let pods = answering_pods(&herd, &format!("http://{plain}:80/p"), 4).await;
        if pods.len() == 2 {
            Ok(())
        } else {
            Err(format!("{pods:?}"))
        }
    })
    .await;
    let pods = answering_pods(&herd, &format!("http://{sticky}:80/s"), 6).await;
    assert_eq!(pods.len(), 1, "one client, one pod: {pods:?}");

    // internalTrafficPolicy Local: a Service whose slice puts one pod on this node and one elsewhere.
    for (name, node) in [("here", "e2e-node"), ("elsewhere", "another-node")] {
        herd.create(
            SERVICES,
            &json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
                "spec": {"internalTrafficPolicy": "Local", "ports": [{"port": 80}]}}),
        )
        .await;
        herd.create(
            "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices",
            &json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {"name": format!("{name}-1"),
                    "labels": {"kubernetes.io/service-name": name}},
                "addressType": "IPv4", "ports": [{"port": 8080}],
                "endpoints": [{"addresses": [ips[0]], "nodeName": node,
                    "conditions": {"ready": true}}]}),
        )
        .await;
    }
    let here = cluster_ip(herd.get_ok(&format!("{SERVICES}/here")).await);
    let elsewhere = cluster_ip(herd.get_ok(&format!("{SERVICES}/elsewhere")).await);
    herd.wait_http(&format!("http://{here}:80/l"), "pod=web-a", START_TIMEOUT)
        .await;
    // The endpoint of another node is not used: the proxy listens, and closes the connection.
    wait_for(
        "the proxy to listen for elsewhere",
        START_TIMEOUT,
        || async {
            tokio::net::TcpStream::connect(format!("{elsewhere}:80"))
                .await
                .map(drop)
                .map_err(|e| e.to_string())
        },
    )
    .await;
    let refused = herd
        .http
        .get(format!("http://{elsewhere}:80/l"))
        .timeout(Duration::from_secs(5))
        .send()
        .await;
    assert!(
        refused.is_err(),
        "answered through a remote endpoint: {refused:?}"
    );
}
