//! Probes: a failing liveness probe restarts the container; readiness drives the Ready condition and the
//! Service's endpoints (here through a ConfigMap the guest reads, so the volume update is exercised too).

use std::time::Duration;

use serde_json::{Value, json};

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_liveness_probe_restarts_the_container() {
    let (_registry, images) = registry_with(&["http-hello"]).await;
    let herd = Herd::up(HerdOptions::default()).await;
    herd.wait_node_ready("e2e-node").await;
    let mut pod = http_hello_pod("unhealthy", "web", &images[0]);
    pod["spec"]["containers"][0]["livenessProbe"] = json!({
        "httpGet": {"path": "/status/500", "port": 8080},
        "periodSeconds": 1,
        "failureThreshold": 2,
    });
    herd.create(PODS, &pod).await;
    let pod = wait_pod(
        &herd,
        "unhealthy",
        "restarted by its liveness probe",
        Duration::from_secs(60),
        |p| container_status(p)["restartCount"].as_i64().unwrap_or(0) >= 1,
    )
    .await;
    let events = events_about(&herd, "unhealthy").await;
    assert!(
        events.iter().any(|e| e.starts_with(
            "Unhealthy: Liveness probe failed: HTTP probe failed with statuscode: 500"
        )),
        "{events:?}"
    );
    assert!(
        events
            .iter()
            .any(|e| e == "Killing: Container http-hello failed liveness probe, will be restarted"),
        "{events:?}"
    );
    assert_eq!(phase(&pod), "Running");
}

fn ready_condition(pod: &Value) -> &str {
    pod["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == "Ready")
        .map_or("", |c| s(c, "/status"))
}

async fn endpoint_ips(herd: &Herd, name: &str, field: &str) -> Vec<String> {
    let ep = herd
        .get_ok(&format!("/api/v1/namespaces/default/endpoints/{name}"))
        .await;
    ep["subsets"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|sub| sub[field].as_array().cloned().unwrap_or_default())
        .map(|a| s(&a, "/ip").to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_removes_a_pod_from_its_service_endpoints_and_brings_it_back() {
    let (_registry, images) = registry_with(&["http-hello"]).await;
    let herd = Herd::up(HerdOptions::default()).await;
    herd.wait_node_ready("e2e-node").await;
    let config = |ready: &str| {
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "switch"},
               "data": {"ready": ready}})
    };
    herd.create("/api/v1/namespaces/default/configmaps", &config("true"))
        .await;
    let mut pod = http_hello_pod("gated", "gated", &images[0]);
    pod["spec"]["volumes"] = json!([{"name": "switch", "configMap": {"name": "switch"}}]);
    let c = &mut pod["spec"]["containers"][0];
    c["volumeMounts"] = json!([{"name": "switch", "mountPath": "/config"}]);
    c["readinessProbe"] = json!({"httpGet": {"path": "/ready", "port": 8080}, "periodSeconds": 1});
    herd.create(PODS, &pod).await;
    herd.create(SERVICES, &service("gated", "gated", 80, 8080))
        .await;
    let pod = wait_pod(&herd, "gated", "Ready", START_TIMEOUT, |p| {
        ready_condition(p) == "True"
    })
    .await;
    let ip = s(&pod, "/status/podIP").to_string();
    let addresses = |field: &'static str, want: bool| {
        let (herd, ip) = (&herd, ip.clone());
        move || {
            let ip = ip.clone();
            async move {
                let ips = endpoint_ips(herd, "gated", field).await;
                if ips.contains(&ip) == want {
                    Ok(())
                } else {
                    Err(format!("{field}: {ips:?}"))
                }
            }
        }
    };
    wait_for(
        "the pod in the endpoints",
        Duration::from_secs(20),
        addresses("addresses", true),
    )
    .await;

    set_switch(&herd, "false").await;
    wait_pod(&herd, "gated", "not Ready", Duration::from_secs(30), |p| {
        ready_condition(p) == "False"
    })
    .await;
    wait_for(
        "the pod out of the endpoints",
        Duration::from_secs(20),
        addresses("addresses", false),
    )
    .await;
    wait_for(
        "the pod listed as not ready",
        Duration::from_secs(20),
        addresses("notReadyAddresses", true),
    )
    .await;
    // Still running: readiness never restarts anything.
    let pod = get_pod(&herd, "gated").await;
    assert_eq!(container_status(&pod)["restartCount"], 0);

    set_switch(&herd, "true").await;
    wait_for(
        "the pod back in the endpoints",
        Duration::from_secs(30),
        addresses("addresses", true),
    )
    .await;
}

async fn set_switch(herd: &Herd, ready: &str) {
    let patch = json!({"data": {"ready": ready}}).to_string();
    let (status, body) = herd
        .send_raw(
            reqwest::Method::PATCH,
            "/api/v1/namespaces/default/configmaps/switch",
            Some(("application/merge-patch+json", patch)),
        )
        .await;
    assert_eq!(status, 200, "{body}");
}
