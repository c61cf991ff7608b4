//! A node joining a real control plane with a bootstrap token (kubeadm's discovery, the kubelet's TLS
//! bootstrap), then living on its own certificates: the API and the Node authorizer take its identity, its
//! client certificate is renewed before it expires (a 40-second `--cluster-signing-duration`) while the node
//! keeps working, and its kubelet port serves HTTPS with a kubelet-serving certificate of the cluster CA
//! that only the API server's kubelet client (and `system:masters`) may use.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use herd_control::{ControlConfig, ControlPlane};
use herd_node::NodeConfig;
use herd_node::certificate_manager::{ClientCertificate, SERVING_CERT_FILE};
use k8s_openapi::api::core::v1::{Node, Pod, Secret};
use kube::api::{Api, PostParams};
use serde_json::json;
use tokio_util::sync::CancellationToken;

const NODE: &str = "joiner";

mod common;
use common::wait_for;

async fn create<K>(api: &Api<K>, object: serde_json::Value)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let object: K = serde_json::from_value(object).expect("object");
    api.create(&PostParams::default(), &object)
        .await
        .expect("created");
}

fn serial_in(path: &Path) -> Option<String> {
    herd_node::bootstrap::read_pem_pair(path)
        .ok()
        .flatten()
        .and_then(|c| c.serial().ok())
}

/// GET `https://addr/path` on the kubelet port, trusting the cluster CA, with `identity` or none.
async fn kubelet_get(
    ca_pem: &str,
    identity: Option<&herd_pki::IssuedCert>,
    addr: SocketAddr,
    path: &str,
) -> (u16, String) {
    let mut tls = herd_pki::tls::client_config(ca_pem, identity).expect("client TLS");
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    let http = reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .build()
        .expect("client");
    let response = http
        .get(format!("https://{addr}{path}"))
        .send()
        .await
        .expect("the kubelet port answers over TLS");
    let status = response.status().as_u16();
    (status, response.text().await.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joined_node_works_with_its_identity_renews_it_and_serves_its_port_over_tls() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut cfg = ControlConfig::new(
        dir.path().join("control"),
        "127.0.0.1:0".parse().expect("addr"),
    );
    cfg.service_cidr = "127.252.0.0/24".parse().expect("cidr");
    cfg.cluster_cidr = "127.196.0.0/16".parse().expect("cidr");
    // The signer's cap (kube's --cluster-signing-duration): certificates of 40 s, renewed after ~30 s.
    cfg.cluster_signing_duration = Duration::from_secs(40);
    let shutdown = CancellationToken::new();
    let plane = ControlPlane::start(cfg, shutdown.clone())
        .await
        .expect("control plane");
    let admin_credentials = plane
        .kubeconfig("kubernetes-admin", Some("system:masters"))
        .expect("admin");
    let admin = kube::Client::try_from(
        herd_node::kube_config(&admin_credentials)
            .await
            .expect("admin config"),
    )
    .expect("admin client");

    // `herd token create`'s Secret, then kubeadm join's discovery and the kubelet's TLS bootstrap.
    let token = herd_pki::BootstrapToken::generate();
    create(
        &Api::<Secret>::namespaced(admin.clone(), "kube-system"),
        json!({"apiVersion": "v1", "kind": "Secret", "type": "bootstrap.kubernetes.io/token",
            "metadata": {"name": token.secret_name(), "namespace": "kube-system"},
            "stringData": {"token-id": token.id, "token-secret": token.secret,
                "usage-bootstrap-authentication": "true", "usage-bootstrap-signing": "true",
                "auth-extra-groups": "system:bootstrappers:herd:default-node-token"}}),
    )
    .await;
    let data_dir = dir.path().join("node");
    std::fs::create_dir_all(&data_dir).expect("node dir");
    let joined = herd_node::bootstrap::join(&herd_node::bootstrap::JoinConfig {
        server: plane.url(),
        token,
        ca_cert_hash: Some(plane.ca().ca_cert_hash()),
        node_name: NODE.into(),
        data_dir: data_dir.clone(),
    })
    .await
    .expect("joined");
    let first_serial = joined.client.serial().expect("serial");
    let first_expiry = joined.client.not_after().expect("expiry");

    // The node runs on a client presenting the certificate manager's current certificate.
    let certificates = ClientCertificate::new(joined.clone()).expect("certificates");
    let node_config = herd_node::kube_config(&joined).await.expect("node config");
    let client = certificates.client(&node_config).expect("node client");
    tokio::spawn(certificates.clone().rotate(
        client.clone(),
        NODE.into(),
        data_dir.clone(),
        shutdown.clone(),
    ));
    let mut node_cfg = NodeConfig::new(NODE, &data_dir);
    node_cfg.lease_renew_interval = Duration::from_secs(1);
    node_cfg.kubelet_tls.client_ca_pem = joined.ca_pem.clone();
    tokio::spawn(herd_node::run(client.clone(), node_cfg, shutdown.clone()));
    let nodes: Api<Node> = Api::all(admin.clone());
    let kubelet = wait_for(
        "the joined node to be Ready",
        Duration::from_secs(60),
        || {
            let nodes = nodes.clone();
            async move {
                let node = nodes.get_opt(NODE).await.ok()??;
                let status = node.status?;
                let ready = status
                    .conditions?
                    .iter()
                    .any(|c| c.type_ == "Ready" && c.status == "True");
                let port = status.daemon_endpoints?.kubelet_endpoint?.port;
                (ready && node.spec?.pod_cidr.is_some())
                    .then(|| SocketAddr::from(([127, 0, 0, 1], u16::try_from(port).expect("port"))))
            }
        },
    )
    .await;

    // The Node authorizer takes the identity: a Secret of a pod bound to it, not one of another node's pod.
    let secrets: Api<Secret> = Api::namespaced(admin.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(admin.clone(), "default");
    for (secret, pod, node) in [
        ("mine", "on-joiner", NODE),
        ("theirs", "elsewhere", "other"),
    ] {
        create(
            &secrets,
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": secret},
                "stringData": {"k": "v"}}),
        )
        .await;
        create(
            &pods,
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": pod},
                "spec": {"nodeName": node, "automountServiceAccountToken": false,
                    "containers": [{"name": "c", "image": "registry.invalid/app:v1",
                        "env": [{"name": "K", "valueFrom": {"secretKeyRef": {"name": secret, "key": "k"}}}]}]}}),
        )
        .await;
    }
    let as_node: Api<Secret> = Api::namespaced(client.clone(), "default");
    wait_for(
        "the node to read its pod's Secret",
        Duration::from_secs(20),
        || {
            let as_node = as_node.clone();
            async move { as_node.get("mine").await.ok() }
        },
    )
    .await;
    match as_node.get("theirs").await {
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 403, "{status:?}");
            assert!(
                status
                    .message
                    .contains("User \"system:node:joiner\" cannot get resource \"secrets\""),
                "{status:?}"
            );
        }
        other => panic!("another node's pod's Secret: {other:?}"),
    }

    // The kubelet port: a kubelet-serving certificate of the cluster CA replaces the self-signed one; the
    // API server's logs proxy reaches it over TLS (the kubelet answers about the pod, whose image cannot be
    // pulled); without a client certificate 401, a node's identity 403, an admin's allowed.
    wait_for(
        "the kubelet serving certificate",
        Duration::from_secs(30),
        || async { serial_in(&data_dir.join(SERVING_CERT_FILE)) },
    )
    .await;
    let answer = wait_for(
        "the API server to reach the kubelet over TLS",
        Duration::from_secs(30),
        || {
            let pods = pods.clone();
            async move {
                let error = pods
                    .logs("on-joiner", &Default::default())
                    .await
                    .expect_err("no container has run");
                let text = error.to_string();
                text.contains(&format!("node {NODE} answered"))
                    .then_some(text)
            }
        },
    )
    .await;
    assert!(
        !answer.contains("Unauthorized") && !answer.contains("Forbidden"),
        "{answer}"
    );
    assert_eq!(
        kubelet_get(&joined.ca_pem, None, kubelet, "/healthz").await,
        (401, "Unauthorized\n".into())
    );
    let (code, body) = kubelet_get(&joined.ca_pem, Some(&joined.client), kubelet, "/healthz").await;
    assert_eq!(code, 403, "{body}");
    assert!(
        body.starts_with("Forbidden (user=system:node:joiner"),
        "{body}"
    );
    assert_eq!(
        kubelet_get(
            &joined.ca_pem,
            Some(&admin_credentials.client),
            kubelet,
            "/healthz"
        )
        .await,
        (200, "ok".into())
    );

    // Rotation: a new certificate (another serial) is stored before the first expires ...
    let client_file = data_dir.join(herd_node::bootstrap::CLIENT_CERT_FILE);
    let renewed = wait_for(
        "the client certificate to be renewed",
        Duration::from_secs(90),
        || async { serial_in(&client_file).filter(|serial| *serial != first_serial) },
    )
    .await;
    let stored = herd_node::bootstrap::read_current(&data_dir)
        .expect("readable")
        .expect("stored");
    assert_eq!(stored.serial().expect("serial"), renewed);
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&client_file)
            .expect("metadata")
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    // ... and once the first has expired, new connections (a new client of the same manager) present the
    // renewed one, and the node keeps its Lease fresh.
    let first_expiry = std::time::SystemTime::from(first_expiry);
    if let Ok(left) = first_expiry.duration_since(std::time::SystemTime::now()) {
        tokio::time::sleep(left + Duration::from_secs(1)).await;
    }
    let fresh = certificates.client(&node_config).expect("client");
    Api::<Node>::all(fresh)
        .get(NODE)
        .await
        .expect("the node's renewed identity is accepted");
    let expired_at = jiff::Timestamp::try_from(first_expiry).expect("time");
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
        Api::namespaced(admin.clone(), "kube-node-lease");
    wait_for(
        "the node to renew its Lease after its first certificate expired",
        Duration::from_secs(20),
        || {
            let leases = leases.clone();
            async move {
                let renewed = leases.get(NODE).await.ok()?.spec?.renew_time?.0;
                (renewed > expired_at).then_some(())
            }
        },
    )
    .await;

    shutdown.cancel();
    drop(plane);
}
