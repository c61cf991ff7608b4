//! Riding over a lost API server: the node's local API load balancer in front of two real API servers
//! (HTTPS, client certificates of one cluster CA) keeps answering when the one in use stops.

use std::time::Duration;

use herd_control::{ControlConfig, ControlPlane};
use herd_node::api_balancer::ApiBalancer;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ListParams};
use tokio_util::sync::CancellationToken;

mod common;
use common::wait_for;

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

/// The test etcd of the control crate's tests (one `/usr/bin/etcd` per test process, or `HERD_TEST_ETCD`).
#[path = "../../control/src/etcd/testing.rs"]
mod etcd;

/// A node agent whose clients go through its balancer, given ONE API server of a cluster of two (one etcd,
/// one CA), learns the other from the `kubernetes` Endpoints and keeps renewing its Lease when the API
/// server it uses stops: its watches and writes reconnect through the balancer to the survivor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_learns_the_api_servers_and_keeps_renewing_its_lease_when_its_api_server_dies() {
    let dir = tempfile::tempdir().expect("temp dir");
    let prefix = etcd::prefix();
    let on_etcd = |data_dir: std::path::PathBuf| {
        let mut cfg = ControlConfig::new(data_dir, "127.0.0.1:0".parse().expect("addr"));
        cfg.service_cidr = "127.249.9.0/24".parse().expect("cidr");
        cfg.cluster_cidr = "127.199.0.0/16".parse().expect("cidr");
        cfg.store = herd_control::StoreBackend::Etcd(herd_control::EtcdConfig {
            servers: vec![etcd::endpoint()],
            prefix: prefix.clone(),
            ..herd_control::EtcdConfig::default()
        });
        cfg
    };
    let start = |cfg: ControlConfig| async move {
        let stop = CancellationToken::new();
        let plane = ControlPlane::start(cfg, stop.clone())
            .await
            .expect("control plane");
        (plane, stop)
    };
    let mut planes = vec![start(on_etcd(dir.path().join("a"))).await];
    copy_dir(&dir.path().join("a/pki"), &dir.path().join("b/pki"));
    planes.push(start(on_etcd(dir.path().join("b"))).await);
    let servers: Vec<String> = planes.iter().map(|(p, _)| p.addr().to_string()).collect();

    let shutdown = CancellationToken::new();
    let balancer = ApiBalancer::start(
        "127.0.0.1:0".parse().expect("addr"),
        &servers[..1],
        shutdown.clone(),
    )
    .await
    .expect("balancer");
    let ca = planes[0].0.ca().clone();
    let credentials = planes[0]
        .0
        .kubeconfig("system:node:failover-node", Some("system:nodes"))
        .expect("node credentials");
    let mut config = herd_node::kube_config(&credentials).await.expect("config");
    config.cluster_url = balancer.url().parse().expect("url");
    let node_client = kube::Client::try_from(config).expect("client");
    tokio::spawn(
        balancer
            .clone()
            .follow_endpoints(node_client.clone(), shutdown.clone()),
    );
    let mut cfg = herd_node::NodeConfig::new("failover-node", dir.path().join("node"));
    cfg.lease_renew_interval = Duration::from_millis(500);
    cfg.kubelet_tls = herd_node::KubeletTls {
        client_ca_pem: ca.cert_pem().to_string(),
        serving: Some(
            ca.issue_kubelet_serving("failover-node", &[cfg.address], Duration::from_secs(3600))
                .expect("kubelet serving certificate"),
        ),
        approve_own_serving_csr: false,
    };
    let agent = tokio::spawn(herd_node::run(node_client, cfg, shutdown.clone()));

    // The Lease's renewTime, read from API server `i` directly.
    let admin = |i: usize| {
        let plane = &planes[i].0;
        let credentials = plane
            .kubeconfig("kubernetes-admin", Some("system:masters"))
            .expect("admin");
        async move {
            kube::Client::try_from(herd_node::kube_config(&credentials).await.expect("config"))
                .expect("client")
        }
    };
    let renewed = |client: kube::Client| async move {
        let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
            Api::namespaced(client, "kube-node-lease");
        leases
            .get_opt("failover-node")
            .await
            .ok()
            .flatten()
            .and_then(|lease| lease.spec?.renew_time)
            .map(|t| t.0)
    };
    let learned = balancer.clone();
    wait_for(
        "the second API server learned from the kubernetes Endpoints",
        Duration::from_secs(60),
        || {
            let known = learned.servers();
            async move { (known.len() == 2).then_some(()) }
        },
    )
    .await;
    let known: Vec<String> = balancer.servers().into_iter().map(|(s, _)| s).collect();
    assert_eq!(known, servers);
    let first_admin = admin(0).await;
    wait_for("the node's first Lease", Duration::from_secs(30), || {
        renewed(first_admin.clone())
    })
    .await;

    // Stop the API server the node uses: the one it was given.
    assert_eq!(balancer.current().as_deref(), Some(servers[0].as_str()));
    let (dying, survivor) = (0, 1);
    let survivor_admin = admin(survivor).await;
    let (plane, stop) = planes.remove(dying);
    stop.cancel();
    plane.wait().await.expect("stopped");
    let stopped_at = jiff::Timestamp::now();

    // The node carries on through the survivor: its Lease is renewed after the stop.
    wait_for(
        "the Lease renewed after the API server stopped",
        Duration::from_secs(60),
        || {
            let client = survivor_admin.clone();
            async move { renewed(client).await.filter(|t| *t > stopped_at) }
        },
    )
    .await;
    assert_eq!(
        balancer.current().as_deref(),
        Some(servers[survivor].as_str())
    );
    assert!(!agent.is_finished(), "the node agent runs on");

    shutdown.cancel();
    agent
        .await
        .expect("agent task")
        .expect("agent ends cleanly");
    let (plane, stop) = planes.remove(0);
    stop.cancel();
    plane.wait().await.expect("stopped");
}
