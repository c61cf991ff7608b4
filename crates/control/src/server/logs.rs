//! `pods/{name}/log`: proxied to the kubelet port of the pod's node, as kube-apiserver does: over HTTPS,
//! verifying the kubelet's serving certificate against the cluster CA (the node's address among its names)
//! and presenting the API server's kubelet client certificate (`kube-apiserver-kubelet-client`, see
//! `AppState::http`).

use axum::http::header;
use axum::response::{IntoResponse, Response};
use futures::TryStreamExt;
use herd_api::resources;
use serde_json::Value;

use super::{AppState, Params, body_stream};
use crate::error::ApiError;

pub async fn proxy(
    state: &AppState,
    ns: &str,
    name: &str,
    params: &Params,
) -> Result<Response, ApiError> {
    let pods =
        resources::by_path("", "v1", "pods").ok_or_else(|| ApiError::Internal("no pods".into()))?;
    let nodes = resources::by_path("", "v1", "nodes")
        .ok_or_else(|| ApiError::Internal("no nodes".into()))?;
    let pod = state.objects.get(pods, Some(ns), name).await?;
    let names = |field: &str| -> Vec<String> {
        pod.pointer(field)
            .and_then(Value::as_array)
            .map(|cs| {
                cs.iter()
                    .filter_map(|c| c.get("name")?.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let (containers, init) = (names("/spec/containers"), names("/spec/initContainers"));
    let container = match params.get("container") {
        Some(c) if containers.contains(c) || init.contains(c) => c.clone(),
        Some(c) => {
            return Err(ApiError::BadRequest(format!(
                "container {c} is not valid for pod {name}"
            )));
        }
        None if containers.len() == 1 => containers[0].clone(),
        None => {
            let mut message = format!(
                "a container name must be specified for pod {name}, choose one of: [{}]",
                containers.join(" ")
            );
            if !init.is_empty() {
                message.push_str(&format!(
                    " or one of the init containers: [{}]",
                    init.join(" ")
                ));
            }
            return Err(ApiError::BadRequest(message));
        }
    };
    let node_name = pod
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if node_name.is_empty() {
        return Err(ApiError::BadRequest(format!(
            "pod {name} does not have a host assigned"
        )));
    }
    let node = state.objects.get(nodes, None, node_name).await?;
    let address = node
        .pointer("/status/addresses")
        .and_then(Value::as_array)
        .and_then(|a| a.iter().find(|a| a["type"] == "InternalIP"))
        .and_then(|a| a["address"].as_str())
        .unwrap_or("127.0.0.1")
        .to_string();
    let port = node
        .pointer("/status/daemonEndpoints/kubeletEndpoint/Port")
        .and_then(Value::as_i64)
        .unwrap_or(10250);
    let host = if address.contains(':') {
        format!("[{address}]")
    } else {
        address
    };
    let mut url = reqwest::Url::parse(&format!(
        "https://{host}:{port}/containerLogs/{ns}/{name}/{container}"
    ))
    .map_err(|e| ApiError::Internal(format!("kubelet address: {e}")))?;
    for key in [
        "follow",
        "tailLines",
        "previous",
        "timestamps",
        "sinceSeconds",
        "sinceTime",
        "limitBytes",
    ] {
        if let Some(v) = params.get(key) {
            url.query_pairs_mut().append_pair(key, v);
        }
    }
    let resp = state.http.get(url).send().await.map_err(|e| {
        ApiError::Unavailable(format!("node {node_name} is not reachable for logs: {e}"))
    })?;
    if !resp.status().is_success() {
        let code = resp.status();
        let text = resp.text().await.unwrap_or_default();
        return Err(ApiError::BadRequest(format!(
            "node {node_name} answered {code}: {}",
            text.trim()
        )));
    }
    let stream = resp.bytes_stream().map_err(std::io::Error::other);
    Ok(([(header::CONTENT_TYPE, "text/plain")], body_stream(stream)).into_response())
}
