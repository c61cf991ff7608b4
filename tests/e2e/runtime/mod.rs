//! The node agent as a Wasm kubelet (issue 5): restarts and back-off, probes, resource limits inside the
//! sandbox, config and volumes, several containers per pod, graceful deletion, agent restarts and the
//! networking of components, and the compiled-module cache. Each test runs real pods of the sample apps on a real `herd`.

mod cache;
mod config;
mod lifecycle;
mod limits;
mod network;
mod probes;
mod restarts;
mod volumes;

use std::time::Duration;

use serde_json::Value;

use crate::harness::*;

/// Where tests run servers for guests to reach on the host: a loopback address outside every test's
/// ranges, and not `127.0.0.1`, which in a pod is the pod itself.
const UPSTREAM_IP: std::net::Ipv4Addr = std::net::Ipv4Addr::new(127, 0, 0, 3);

/// An HTTP server on the host ([`UPSTREAM_IP`]) answering every request `200` with `body`; its address.
async fn host_http(body: &'static str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind((UPSTREAM_IP, 0))
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf).await;
                let answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(answer.as_bytes()).await;
            });
        }
    });
    addr
}

/// A registry with the given samples pushed as `<sample>:v1`; returns it and the image references.
async fn registry_with(samples: &[&str]) -> (Registry, Vec<String>) {
    let registry = Registry::start().await;
    let mut images = Vec::new();
    for sample in samples {
        let image = registry.image(&format!("{sample}:v1"));
        push(sample, &image).await;
        images.push(image);
    }
    (registry, images)
}

async fn get_pod(herd: &Herd, name: &str) -> Value {
    herd.get_ok(&format!("{PODS}/{name}")).await
}

/// Waits until `pred` holds for the pod; returns the pod.
async fn wait_pod(
    herd: &Herd,
    name: &str,
    what: &str,
    timeout: Duration,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    let pred = &pred;
    wait_for(&format!("pod {name}: {what}"), timeout, || async move {
        let pod = get_pod(herd, name).await;
        if pred(&pod) {
            Ok(pod)
        } else {
            Err(pod_summary(&pod))
        }
    })
    .await
}

async fn wait_running(herd: &Herd, name: &str) -> Value {
    wait_pod(herd, name, "Running", START_TIMEOUT, |p| {
        phase(p) == "Running"
    })
    .await
}

/// GET `http://<pod IP>:<port><path>`: status and body (status 0 when nothing answered).
async fn pod_get(pod: &Value, port: u16, path: &str) -> (u16, String) {
    let url = format!("http://{}:{port}{path}", s(pod, "/status/podIP"));
    match http_client()
        .get(&url)
        .timeout(Duration::from_secs(5))
        .send()
        .await
    {
        Ok(resp) => {
            let status = resp.status().as_u16();
            (status, resp.text().await.unwrap_or_default())
        }
        Err(_) => (0, String::new()),
    }
}

/// Waits until the pod answers `path` on `port` with `status`; returns the body.
async fn wait_answer(pod: &Value, port: u16, path: &str, status: u16) -> String {
    wait_for(
        &format!("{path} to answer {status}"),
        Duration::from_secs(30),
        || async move {
            match pod_get(pod, port, path).await {
                (got, body) if got == status => Ok(body),
                (got, body) => Err(format!("{got}: {body}")),
            }
        },
    )
    .await
}

/// Events about an object, as "Reason: message" lines.
async fn events_about(herd: &Herd, name: &str) -> Vec<String> {
    let list = herd
        .get_ok(&format!(
            "/api/v1/namespaces/default/events?fieldSelector=involvedObject.name%3D{name}"
        ))
        .await;
    list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| format!("{}: {}", s(e, "/reason"), s(e, "/message")))
        .collect()
}
