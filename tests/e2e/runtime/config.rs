//! A container's environment from every source the kubelet knows: literal values with $(VAR) expansion,
//! ConfigMap and Secret keys, the downward API (fieldRef, resourceFieldRef) and envFrom with a prefix.

use serde_json::json;

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn env_comes_from_values_configmaps_secrets_and_the_downward_api() {
    let (_registry, images) = registry_with(&["http-hello"]).await;
    let herd = Herd::up(HerdOptions::default()).await;
    herd.wait_node_ready("e2e-node").await;
    herd.create(
        "/api/v1/namespaces/default/configmaps",
        &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"},
                "data": {"color": "blue", "size": "10"}}),
    )
    .await;
    herd.create(
        "/api/v1/namespaces/default/secrets",
        &json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds"},
                "stringData": {"password": "s3cret"}}),
    )
    .await;
    let mut pod = http_hello_pod("configured", "web", &images[0]);
    let c = &mut pod["spec"]["containers"][0];
    c["resources"] = json!({"limits": {"memory": "64Mi", "cpu": "250m"}});
    c["envFrom"] = json!([{"configMapRef": {"name": "settings"}, "prefix": "CFG_"}]);
    c["env"] = json!([
        {"name": "GREETING", "value": "hello"},
        {"name": "MESSAGE", "value": "$(GREETING) world, $$(GREETING) stays"},
        {"name": "COLOR", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "color"}}},
        {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}}},
        {"name": "MISSING", "valueFrom": {"configMapKeyRef": {"name": "nope", "key": "x", "optional": true}}},
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
        {"name": "MEMORY_MIB", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}},
        {"name": "CPU_CORES", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}},
    ]);
    herd.create(PODS, &pod).await;
    let pod = wait_running(&herd, "configured").await;
    let env = wait_answer(&pod, 8080, "/env", 200).await;
    let ip = s(&pod, "/status/podIP");
    for line in [
        "CFG_color=blue".to_string(),
        "CFG_size=10".into(),
        "GREETING=hello".into(),
        "MESSAGE=hello world, $(GREETING) stays".into(),
        "COLOR=blue".into(),
        "PASSWORD=s3cret".into(),
        "POD_NAME=configured".into(),
        "POD_NAMESPACE=default".into(),
        format!("POD_IP={ip}"),
        "NODE_NAME=e2e-node".into(),
        "MEMORY_MIB=64".into(),
        // kubelet rounds CPU up to whole cores with the default divisor of 1.
        "CPU_CORES=1".into(),
    ] {
        assert!(
            env.lines().any(|l| l == line),
            "{line} missing from:\n{env}"
        );
    }
    assert!(!env.contains("MISSING="), "{env}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_configmap_is_create_container_config_error() {
    let (_registry, images) = registry_with(&["http-hello"]).await;
    let herd = Herd::up(HerdOptions::default()).await;
    herd.wait_node_ready("e2e-node").await;
    let mut pod = http_hello_pod("unconfigured", "web", &images[0]);
    pod["spec"]["containers"][0]["env"] = json!([
        {"name": "COLOR", "valueFrom": {"configMapKeyRef": {"name": "absent", "key": "color"}}},
    ]);
    herd.create(PODS, &pod).await;
    let pod = wait_pod(
        &herd,
        "unconfigured",
        "CreateContainerConfigError",
        START_TIMEOUT,
        |p| s(container_status(p), "/state/waiting/reason") == "CreateContainerConfigError",
    )
    .await;
    assert_eq!(
        s(container_status(&pod), "/state/waiting/message"),
        "configmap \"absent\" not found"
    );
    assert_eq!(phase(&pod), "Pending");
}
