//! Socket-level load balancing for guests: a guest's connection to a Service's `clusterIP:port` is
//! connected straight to an endpoint (no proxy hop), each connection to the endpoint picked for it; and a
//! Service whose pods run on two nodes is reached over both nodes' pods from a guest of either node and
//! from a host client.
//!
//! The servers (`loadgen whoami-serve`) answer each connection with the peer address they see and the
//! clients (`loadgen whoami`) print their own local address beside it: the two are equal only when the
//! guest's socket is the server's peer, which a proxy in between (its own socket to the pod) never is.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::AsyncBufReadExt as _;

use crate::harness::*;

const PORT: u16 = 7000;

/// A `loadgen whoami-serve 0.0.0.0:7000` pod labelled `app=whoami`, on `node` if given.
fn whoami_server(name: &str, image: &str, node: Option<&str>) -> Value {
    let mut pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "whoami"}},
        "spec": {
            "terminationGracePeriodSeconds": TEST_GRACE_SECONDS,
            "containers": [{
                "name": "server", "image": image,
                "args": ["whoami-serve", format!("0.0.0.0:{PORT}")],
                "ports": [{"containerPort": PORT}],
                "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
            }],
        },
    });
    if let Some(node) = node {
        pod["spec"]["nodeName"] = json!(node);
    }
    pod
}

/// A `loadgen whoami <target> <count>` pod (restartPolicy Never), on `node` if given.
fn whoami_client(name: &str, image: &str, target: &str, count: usize, node: Option<&str>) -> Value {
    let mut pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": TEST_GRACE_SECONDS,
            "containers": [{
                "name": "client", "image": image,
                "args": ["whoami", target, count.to_string()],
            }],
        },
    });
    if let Some(node) = node {
        pod["spec"]["nodeName"] = json!(node);
    }
    pod
}

/// The Service `whoami` (7000 → 7000); its cluster IP once allocated.
async fn whoami_service(herd: &Herd) -> String {
    herd.create(SERVICES, &service("whoami", "whoami", PORT, PORT))
        .await;
    wait_for("service cluster IP", Duration::from_secs(20), || async {
        let svc = herd.get_ok(&format!("{SERVICES}/whoami")).await;
        match s(&svc, "/spec/clusterIP") {
            "" => Err(svc["spec"].to_string()),
            ip => Ok(ip.to_string()),
        }
    })
    .await
}

/// One connection from this host to `target`: the answering pod's name.
async fn host_whoami(target: &str) -> Result<String, String> {
    let stream = tokio::time::timeout(
        Duration::from_secs(5),
        tokio::net::TcpStream::connect(target),
    )
    .await
    .map_err(|_| "connect timed out".to_string())?
    .map_err(|e| format!("connect: {e}"))?;
    let mut line = String::new();
    tokio::time::timeout(
        Duration::from_secs(5),
        tokio::io::BufReader::new(stream).read_line(&mut line),
    )
    .await
    .map_err(|_| "no answer in 5 s".to_string())?
    .map_err(|e| format!("read: {e}"))?;
    answer_pod(&line).ok_or(line)
}

fn answer_pod(line: &str) -> Option<String> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix("pod="))
        .map(str::to_owned)
}

/// Waits until host clients of `target` have been answered by every pod of `pods` (so every node's proxy,
/// and with it the balancer its guests use, knows all of them): how many answers each gave.
async fn host_reaches_all(target: &str, pods: &[&str]) -> BTreeMap<String, usize> {
    let seen = std::sync::Mutex::new(BTreeMap::new());
    wait_for(
        &format!("host clients of {target} answered by {pods:?}"),
        Duration::from_secs(60),
        || async {
            let answer = host_whoami(target).await;
            let mut seen = seen.lock().expect("not poisoned");
            match answer {
                Ok(pod) => *seen.entry(pod).or_insert(0) += 1,
                Err(e) => {
                    drop(seen);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    return Err(e);
                }
            }
            if pods.iter().all(|p| seen.contains_key(*p)) {
                Ok(())
            } else {
                Err(format!("so far {seen:?}"))
            }
        },
    )
    .await;
    seen.into_inner().expect("not poisoned")
}

/// Runs client pod `name` to completion; per answering pod, how many of its connections it answered.
/// Every connection must have been answered, and seen by the server from the guest's own address.
async fn guest_answers(herd: &Herd, client: Value, count: usize) -> BTreeMap<String, usize> {
    let name = s(&client, "/metadata/name").to_string();
    herd.create(PODS, &client).await;
    herd.wait_phase(&name, "Succeeded").await;
    let log = herd.pod_log(&name).await;
    let mut answers = BTreeMap::new();
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), count, "{name}: {log}");
    for line in lines {
        // local=<addr> answer=pod=<pod> peer=<addr>
        let field = |key: &str| {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(key))
                .unwrap_or_else(|| panic!("{name}: no {key} in {line:?} of {log}"))
        };
        let (local, pod, peer) = (field("local="), field("answer=pod="), field("peer="));
        assert_eq!(
            local, peer,
            "{name}: the server saw another socket than the guest's: a hop in between ({line})"
        );
        *answers.entry(pod.to_owned()).or_insert(0) += 1;
    }
    answers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guests_service_connections_go_straight_to_each_endpoint() {
    let registry = Registry::start().await;
    let image = registry.image("loadgen:v1");
    push("loadgen", &image).await;
    let herd = Herd::up(HerdOptions::default()).await;

    let cluster_ip = whoami_service(&herd).await;
    for name in ["whoami-a", "whoami-b"] {
        herd.create(PODS, &whoami_server(name, &image, None)).await;
    }
    let target = format!("{cluster_ip}:{PORT}");
    host_reaches_all(&target, &["whoami-a", "whoami-b"]).await;

    let count = 20;
    // By cluster IP, and by the Service's name (as the sample's manifest does): each connection to its
    // endpoint, both pods answer.
    for (client, target) in [
        ("client", target.clone()),
        ("client-by-name", format!("whoami:{PORT}")),
    ] {
        let answers = guest_answers(
            &herd,
            whoami_client(client, &image, &target, count, None),
            count,
        )
        .await;
        assert_eq!(
            answers.keys().collect::<Vec<_>>(),
            ["whoami-a", "whoami-b"],
            "{client}: {answers:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_spans_pods_on_two_nodes() {
    let registry = Registry::start().await;
    let image = registry.image("loadgen:v1");
    push("loadgen", &image).await;
    let control = Herd::up(HerdOptions::control()).await;
    let _a = control
        .start_node_with("lb-a", &["--address", "127.0.0.1"])
        .await;
    let _b = control
        .start_node_with("lb-b", &["--address", "127.0.0.2"])
        .await;
    control.wait_node_ready("lb-a").await;
    control.wait_node_ready("lb-b").await;

    let cluster_ip = whoami_service(&control).await;
    control
        .create(PODS, &whoami_server("whoami-a", &image, Some("lb-a")))
        .await;
    control
        .create(PODS, &whoami_server("whoami-b", &image, Some("lb-b")))
        .await;
    let target = format!("{cluster_ip}:{PORT}");
    // A host client: both nodes' proxies serve the cluster IP, each over both nodes' pods.
    let host = host_reaches_all(&target, &["whoami-a", "whoami-b"]).await;
    assert_eq!(host.len(), 2, "{host:?}");

    // A guest of either node: straight to the pods of both nodes.
    let count = 20;
    for node in ["lb-a", "lb-b"] {
        let answers = guest_answers(
            &control,
            whoami_client(
                &format!("client-{node}"),
                &image,
                &target,
                count,
                Some(node),
            ),
            count,
        )
        .await;
        assert_eq!(
            answers.keys().collect::<Vec<_>>(),
            ["whoami-a", "whoami-b"],
            "from {node}: {answers:?}"
        );
    }
}
