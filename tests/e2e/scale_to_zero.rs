//! Scale to zero: a wasi-http Deployment annotated `autoscaling.herd.dev/idle-timeout` goes to zero
//! replicas after that long without traffic (never while a connection is open), the first request to its
//! Service is held by the proxy while a pod starts and then answered, concurrent connections scale it out,
//! and bad annotation values are refused at admission.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::*;

const IDLE_TIMEOUT: &str = "autoscaling.herd.dev/idle-timeout";

/// `http-hello` with scale-to-zero annotations and a Service `name` on port 8080 in front of it; returns
/// the Service's `clusterIP:8080`.
async fn scale_to_zero_app(
    herd: &Herd,
    name: &str,
    image: &str,
    replicas: i32,
    annotations: Value,
) -> String {
    let mut deployment = http_hello_deployment(name, image, replicas);
    deployment["metadata"]["annotations"] = annotations;
    herd.create(DEPLOYMENTS, &deployment).await;
    herd.create(SERVICES, &service(name, name, 8080, 8080))
        .await;
    let svc = wait_for(
        "the Service marked for the activator",
        Duration::from_secs(30),
        || async {
            let svc = herd.get_ok(&format!("{SERVICES}/{name}")).await;
            let marked = svc["metadata"]["annotations"]["autoscaling.herd.dev/activator"] == name;
            if marked && !s(&svc, "/spec/clusterIP").is_empty() {
                Ok(svc)
            } else {
                Err(svc["metadata"].to_string())
            }
        },
    )
    .await;
    format!("{}:8080", s(&svc, "/spec/clusterIP"))
}

/// `spec.replicas` of the Deployment.
async fn replicas(herd: &Herd, name: &str) -> i64 {
    herd.get_ok(&format!("{DEPLOYMENTS}/{name}")).await["spec"]["replicas"]
        .as_i64()
        .unwrap_or(-1)
}

async fn wait_replicas(herd: &Herd, name: &str, wanted: i64, timeout: Duration) {
    wait_for(
        &format!("Deployment {name} at {wanted} replicas"),
        timeout,
        || async {
            let now = replicas(herd, name).await;
            if now == wanted {
                Ok(())
            } else {
                Err(format!("spec.replicas {now}"))
            }
        },
    )
    .await;
}

/// `GET path` on a new connection closed after the answer (a pooled keep-alive connection would count
/// as open and keep the Deployment awake): the body of a 200, else what went wrong.
async fn get_once(addr: &str, path: &str) -> Result<String, String> {
    let mut stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut answer = Vec::new();
    tokio::time::timeout(START_TIMEOUT, stream.read_to_end(&mut answer))
        .await
        .map_err(|_| "no answer within the start timeout".to_string())?
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&answer).into_owned();
    match text.split_once("\r\n\r\n") {
        Some((head, body)) if head.starts_with("HTTP/1.1 200") => Ok(body.to_string()),
        _ => Err(format!("answer {text:?}")),
    }
}

/// Waits until `GET path` through the Service answers.
async fn wait_answer(addr: &str, path: &str) {
    wait_for(&format!("GET {path} through {addr}"), START_TIMEOUT, || {
        get_once(addr, path)
    })
    .await;
}

/// An HTTP/1.1 keep-alive connection to `addr` that has had one request answered (so the proxy has
/// forwarded it to a pod), left open.
async fn open_connection(addr: &str) -> TcpStream {
    let mut stream = TcpStream::connect(addr)
        .await
        .expect("connect to the Service");
    stream
        .write_all(b"GET /held HTTP/1.1\r\nHost: web\r\n\r\n")
        .await
        .expect("send a request");
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    while !String::from_utf8_lossy(&answer).contains("path=/held") {
        let n = tokio::time::timeout(START_TIMEOUT, stream.read(&mut buf))
            .await
            .expect("an answer within the start timeout")
            .expect("read the answer");
        assert!(
            n > 0,
            "connection closed before an answer: {}",
            String::from_utf8_lossy(&answer)
        );
        answer.extend_from_slice(&buf[..n]);
    }
    stream
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_deployment_goes_to_zero_and_its_first_request_is_answered() {
    let registry = Registry::start().await;
    let image = registry.image("http-hello:v1");
    push("http-hello", &image).await;
    let herd = Herd::up(HerdOptions::default()).await;
    let service = scale_to_zero_app(&herd, "web", &image, 1, json!({IDLE_TIMEOUT: "2s"})).await;
    wait_answer(&service, "/warm").await;

    // No traffic for the idle timeout: the controller scales the Deployment to zero and its pod goes.
    wait_replicas(&herd, "web", 0, Duration::from_secs(60)).await;
    wait_for("no web pods", Duration::from_secs(60), || async {
        let pods = herd
            .get_ok(&format!("{PODS}?labelSelector=app%3Dweb"))
            .await;
        match pods["items"].as_array().map(Vec::len) {
            Some(0) => Ok(()),
            other => Err(format!("{other:?} pods")),
        }
    })
    .await;

    wait_for("no endpoints in web's EndpointSlices", Duration::from_secs(60), || async {
        let slices = herd
            .get_ok("/apis/discovery.k8s.io/v1/namespaces/default/endpointslices?labelSelector=kubernetes.io%2Fservice-name%3Dweb")
            .await;
        let endpoints: usize = slices["items"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|slice| slice["endpoints"].as_array().map_or(0, Vec::len))
            .sum();
        if endpoints == 0 {
            Ok(())
        } else {
            Err(format!("{endpoints} endpoints"))
        }
    })
    .await;

    // The first request is held while a pod starts, then answered: one request, no retry.
    let body = get_once(&service, "/first")
        .await
        .expect("the first request to the scaled-to-zero Service is answered");
    assert!(body.contains("path=/first"), "{body}");
    assert_eq!(replicas(&herd, "web").await, 1, "woken to one replica");
    // Woken by the proxy holding the connection itself (Knative's activator), through the scale
    // subresource, one write ahead of the controller that reads the node's Lease.
    let deployment = herd.get_ok(&format!("{DEPLOYMENTS}/web")).await;
    let scaled_by: Vec<&str> = deployment["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|entry| entry["subresource"] == "scale")
        .filter_map(|entry| entry["manager"].as_str())
        .collect();
    assert!(
        scaled_by.contains(&"kube-proxy"),
        "{}",
        deployment["metadata"]["managedFields"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_connection_keeps_the_deployment_awake() {
    let registry = Registry::start().await;
    let image = registry.image("http-hello:v1");
    push("http-hello", &image).await;
    let herd = Herd::up(HerdOptions::default()).await;
    let service = scale_to_zero_app(&herd, "web", &image, 1, json!({IDLE_TIMEOUT: "1s"})).await;
    wait_answer(&service, "/warm").await;
    let connection = open_connection(&service).await;

    // Several idle timeouts pass with the connection open and silent: still one replica.
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(
            replicas(&herd, "web").await,
            1,
            "scaled down with a connection open"
        );
    }
    drop(connection);
    wait_replicas(&herd, "web", 0, Duration::from_secs(60)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_connections_scale_out_beyond_one_pod() {
    let registry = Registry::start().await;
    let image = registry.image("http-hello:v1");
    push("http-hello", &image).await;
    let herd = Herd::up(HerdOptions::default()).await;
    let annotations = json!({
        IDLE_TIMEOUT: "10m",
        "autoscaling.herd.dev/target-concurrency": "1",
        "autoscaling.herd.dev/max-scale": "3",
    });
    let service = scale_to_zero_app(&herd, "web", &image, 1, annotations).await;
    wait_answer(&service, "/warm").await;

    // Four connections open at once against a target of one each: three replicas (max-scale), all ready.
    let mut connections = Vec::new();
    for _ in 0..4 {
        connections.push(open_connection(&service).await);
    }
    wait_replicas(&herd, "web", 3, Duration::from_secs(60)).await;
    wait_for("three ready replicas", START_TIMEOUT, || async {
        let d = herd.get_ok(&format!("{DEPLOYMENTS}/web")).await;
        match d["status"]["readyReplicas"].as_i64() {
            Some(3) => Ok(()),
            other => Err(format!("readyReplicas {other:?}")),
        }
    })
    .await;
    let events = herd
        .get_ok("/api/v1/namespaces/default/events?fieldSelector=reason%3DSuccessfulRescale")
        .await;
    let messages: Vec<&str> = events["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["message"].as_str())
        .collect();
    assert!(
        messages.iter().any(|m| m.starts_with("New size: 3;")),
        "{messages:?}"
    );
    drop(connections);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_scale_to_zero_annotations_are_refused() {
    let herd = Herd::up(HerdOptions::control()).await;
    let mut deployment = http_hello_deployment("web", "registry.invalid/http-hello:v1", 1);
    deployment["metadata"]["annotations"] = json!({
        IDLE_TIMEOUT: "soon",
        "autoscaling.herd.dev/max-scale": "0",
    });
    let (status, body) = herd
        .send(reqwest::Method::POST, DEPLOYMENTS, Some(&deployment))
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["kind"], "Status");
    assert_eq!(body["reason"], "Invalid");
    let causes: Vec<(&str, &str)> = body["details"]["causes"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| (s(c, "/field"), s(c, "/message")))
        .collect();
    assert_eq!(
        causes,
        [
            (
                "metadata.annotations[autoscaling.herd.dev/idle-timeout]",
                "Invalid value: \"soon\": must be a duration between 1ms and 24h, such as 30s, 500ms or 1m30s"
            ),
            (
                "metadata.annotations[autoscaling.herd.dev/max-scale]",
                "Invalid value: \"0\": must be an integer greater than or equal to 1"
            ),
        ],
        "{body}"
    );
    let message = s(&body, "/message");
    assert!(
        message.contains(
            "\"web\" is invalid: [metadata.annotations[autoscaling.herd.dev/idle-timeout]: Invalid value: \"soon\""
        ),
        "{message}"
    );

    // A setting without the idle timeout that opts in is refused too.
    deployment["metadata"]["annotations"] = json!({"autoscaling.herd.dev/target-concurrency": "5"});
    let (status, body) = herd
        .send(reqwest::Method::POST, DEPLOYMENTS, Some(&deployment))
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(
        s(&body, "/details/causes/0/field"),
        "metadata.annotations[autoscaling.herd.dev/idle-timeout]"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_request_wakes_a_scaled_to_zero_service() {
    let registry = Registry::start().await;
    let image = registry.image("http-hello:v1");
    push("http-hello", &image).await;
    let herd = Herd::up(HerdOptions::default()).await;
    // At zero from the start: nothing runs until a request comes.
    let service = scale_to_zero_app(&herd, "web", &image, 0, json!({IDLE_TIMEOUT: "10m"})).await;
    herd.create(PODS, &http_hello_pod("client", "client", &image))
        .await;
    let client = herd.wait_phase("client", "Running").await;
    let client_ip = s(&client, "/status/podIP").to_string();
    wait_answer(&format!("{client_ip}:8080"), "/ready-check").await;
    assert_eq!(replicas(&herd, "web").await, 0, "woken before any request");

    // The guest's outbound wasi:http request finds no endpoint to balance to, goes to the proxy's
    // listener, is held while the Deployment wakes, and is answered.
    let body = get_once(
        &format!("{client_ip}:8080"),
        &format!("/fetch/{service}/from-guest"),
    )
    .await
    .expect("the guest's request through the scaled-to-zero Service is answered");
    assert!(
        body.contains("upstream 200:") && body.contains("path=/from-guest"),
        "{body}"
    );
    assert_eq!(replicas(&herd, "web").await, 1, "woken to one replica");
}
