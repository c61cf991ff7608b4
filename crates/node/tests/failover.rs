//! Riding over a lost API server: the node's local API load balancer in front of two real API servers
//! (HTTPS, client certificates of one cluster CA) keeps answering when the one in use stops.

use std::future::Future;
use std::time::Duration;

use herd_control::{ControlConfig, ControlPlane};
use herd_node::api_balancer::ApiBalancer;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ListParams};
use tokio_util::sync::CancellationToken;

async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A control plane on a free loopback port with its own store, trusting the CA (and ServiceAccount key)
/// already in `data_dir/pki` if there is one.
async fn plane(data_dir: std::path::PathBuf, n: u8) -> (ControlPlane, CancellationToken) {
    let mut cfg = ControlConfig::new(data_dir, "127.0.0.1:0".parse().expect("addr"));
    cfg.service_cidr = format!("127.249.{n}.0/24").parse().expect("cidr");
    cfg.cluster_cidr = format!("127.{}.0.0/16", 190 + n).parse().expect("cidr");
    let shutdown = CancellationToken::new();
    let plane = ControlPlane::start(cfg, shutdown.clone())
        .await
        .expect("control plane");
    (plane, shutdown)
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        std::fs::copy(entry.path(), to.join(entry.file_name())).expect("copy");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_balancer_fails_over_to_a_live_api_server_and_tls_authenticates_end_to_end() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (first, first_stop) = plane(dir.path().join("a"), 1).await;
    // The second server holds the same CA: an API server of the same cluster, as far as TLS goes.
    copy_dir(&dir.path().join("a/pki"), &dir.path().join("b/pki"));
    let (second, second_stop) = plane(dir.path().join("b"), 2).await;

    let shutdown = CancellationToken::new();
    let servers = [first.addr().to_string(), second.addr().to_string()];
    let balancer = ApiBalancer::start(
        "127.0.0.1:0".parse().expect("addr"),
        &servers,
        shutdown.clone(),
    )
    .await
    .expect("balancer");
    // The admin's client certificate, presented through the balancer; the API server's certificate covers
    // 127.0.0.1, the balancer's address.
    let admin = first
        .kubeconfig("kubernetes-admin", Some("system:masters"))
        .expect("admin credentials");
    let mut config = herd_node::kube_config(&admin).await.expect("config");
    config.cluster_url = balancer.url().parse().expect("url");
    let client = kube::Client::try_from(config).expect("client");
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let listed = namespaces
        .list(&ListParams::default())
        .await
        .expect("list through the balancer");
    assert!(
        listed
            .items
            .iter()
            .any(|n| n.metadata.name.as_deref() == Some("default"))
    );
    assert_eq!(
        balancer.servers(),
        [(servers[0].clone(), true), (servers[1].clone(), true)]
    );

    // Without a client certificate the API server itself answers 401: TLS was not ended at the balancer.
    let mut anonymous = herd_node::kube_config(&admin).await.expect("config");
    anonymous.cluster_url = balancer.url().parse().expect("url");
    anonymous.auth_info = kube::config::AuthInfo::default();
    let anonymous = kube::Client::try_from(anonymous).expect("client");
    match Api::<Namespace>::all(anonymous)
        .list(&ListParams::default())
        .await
    {
        Err(kube::Error::Api(status)) => assert_eq!(status.code, 401, "{status:?}"),
        other => panic!("expected 401 Unauthorized, got {other:?}"),
    }

    // The server in use stops: the next request goes to the survivor, and the stopped one is marked failed.
    first_stop.cancel();
    first.wait().await.expect("first plane stopped");
    wait_for(
        "a request through the balancer after failover",
        Duration::from_secs(30),
        || {
            let namespaces = namespaces.clone();
            async move { namespaces.list(&ListParams::default()).await.ok() }
        },
    )
    .await;
    assert_eq!(
        balancer.servers(),
        [(servers[0].clone(), false), (servers[1].clone(), true)]
    );

    shutdown.cancel();
    second_stop.cancel();
    second.wait().await.expect("second plane stopped");
}
