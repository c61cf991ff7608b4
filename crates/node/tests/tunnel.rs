//! The pod tunnel between two real node agents of one cluster: node A reaches a pod of node B through B's
//! kubelet port — with its own tunnel client, through its Service proxy, and from a guest of its own — and
//! B refuses callers without a node certificate and targets outside its pod CIDR.
//!
//! Both agents share this host's loopback, where B's pod would be reachable directly too; node A's pod
//! network is told that no address is this host's (`PodNetwork::start_with_host`), as on separate hosts,
//! so every pod of B is reached through the tunnel, which counts what it opens.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use herd_control::{ControlConfig, ControlPlane};
use herd_node::NodeConfig;
use herd_node::pod_network::{PodNetwork, Route};
use herd_node::tunnel::{TunnelClient, TunnelError};
use k8s_openapi::api::core::v1::{Node, Pod, Service};
use kube::api::{Api, PostParams};
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

mod common;
use common::wait_for;

/// `GET path` over `stream` (HTTP/1.1, `Connection: close`): the whole response.
async fn http_get(mut stream: impl AsyncRead + AsyncWrite + Unpin, path: &str) -> String {
    let request = format!("GET {path} HTTP/1.1\r\nHost: pod\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut response))
        .await
        .expect("response within 30 s")
        .expect("read");
    String::from_utf8_lossy(&response).into_owned()
}

struct Cluster {
    plane: ControlPlane,
    admin: kube::Client,
    registry: SocketAddr,
    registry_tls: herd_oci_fetch::TlsOptions,
    shutdown: CancellationToken,
    dir: tempfile::TempDir,
}

impl Cluster {
    async fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut cfg = ControlConfig::new(
            dir.path().join("control"),
            "127.0.0.1:0".parse().expect("addr"),
        );
        cfg.service_cidr = "127.248.0.0/24".parse().expect("cidr");
        cfg.cluster_cidr = "127.180.0.0/16".parse().expect("cidr");
        let shutdown = CancellationToken::new();
        let plane = ControlPlane::start(cfg, shutdown.clone())
            .await
            .expect("control plane");
        let admin = plane
            .kubeconfig("kubernetes-admin", Some("system:masters"))
            .expect("admin credentials");
        let admin_client =
            kube::Client::try_from(herd_node::kube_config(&admin).await.expect("config"))
                .expect("client");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let registry = listener.local_addr().expect("addr");
        let serving = plane
            .ca()
            .issue_serving(
                "herd-registry",
                &herd_pki::serving_sans(&[registry.ip()], None, &[]),
                Duration::from_secs(3600),
            )
            .expect("registry certificate");
        let registry_tls = herd_oci_fetch::TlsOptions {
            identity: Some(herd_oci_fetch::ClientIdentity {
                cert_pem: admin.client.cert_pem.clone(),
                key_pem: admin.client.key_pem.clone(),
            }),
            ..herd_oci_fetch::TlsOptions::trusting_pem(plane.ca().cert_pem()).expect("CA")
        };
        let tls = herd_pki::tls::server_config(plane.ca().cert_pem(), &serving).expect("TLS");
        tokio::spawn(herd_registry::serve_router(
            listener,
            herd_registry::router(dir.path().join("registry"), None),
            Arc::new(tls),
            shutdown.clone(),
        ));
        Self {
            plane,
            admin: admin_client,
            registry,
            registry_tls,
            shutdown,
            dir,
        }
    }

    async fn push(&self, app: &str) -> String {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join(format!("../../sample-apps/dist/{app}.wasm"));
        let wasm = std::fs::read(&path).expect("sample app built");
        let image = format!("{}/{app}:v1", self.registry);
        herd_oci_fetch::push_with(&wasm, &image, &[], None, &self.registry_tls)
            .await
            .expect("push");
        image
    }

    /// Node `name`'s credentials: its client certificate (CN `system:node:NAME`, O `system:nodes`).
    fn node_credentials(&self, name: &str) -> herd_pki::Kubeconfig {
        self.plane
            .kubeconfig(&herd_pki::node_user(name), Some(herd_pki::NODES_GROUP))
            .expect("node credentials")
    }

    /// Runs node agent `name` on 127.0.0.1 with its kubelet serving certificate of the CA; guests' connects
    /// go through `redirect`.
    async fn run_node(&self, name: &str, redirect: Option<herd_node::ConnectRedirect>) {
        let mut cfg = NodeConfig::new(name, self.dir.path().join(name));
        cfg.lease_renew_interval = Duration::from_secs(1);
        cfg.trusted_ca_certificates = self.registry_tls.extra_root_certificates.clone();
        cfg.connect_redirect = redirect;
        cfg.kubelet_tls = herd_node::KubeletTls {
            client_ca_pem: self.plane.ca().cert_pem().to_string(),
            serving: Some(
                self.plane
                    .ca()
                    .issue_kubelet_serving(name, &[cfg.address], Duration::from_secs(3600))
                    .expect("kubelet serving certificate"),
            ),
            approve_own_serving_csr: false,
        };
        let client = self.node_client(name).await;
        let stop = self.shutdown.clone();
        tokio::spawn(async move { herd_node::run(client, cfg, stop).await.expect("node runs") });
    }

    async fn node_client(&self, name: &str) -> kube::Client {
        let config = herd_node::kube_config(&self.node_credentials(name))
            .await
            .expect("node config");
        kube::Client::try_from(config).expect("client")
    }

    /// A tunnel client presenting node `name`'s certificate.
    fn tunnel_client(&self, name: &str) -> TunnelClient {
        let credentials = self.node_credentials(name);
        TunnelClient::new(
            &credentials.ca_pem,
            Arc::new(herd_pki::tls::CurrentCert::new(&credentials.client).expect("cert")),
        )
        .expect("tunnel client")
    }

    /// Node `name`'s kubelet port, once it has registered.
    async fn kubelet(&self, name: &str) -> SocketAddr {
        let nodes: Api<Node> = Api::all(self.admin.clone());
        wait_for(
            &format!("node {name} with a pod CIDR"),
            Duration::from_secs(30),
            || {
                let nodes = nodes.clone();
                async move {
                    let node = nodes.get_opt(name).await.ok().flatten()?;
                    node.spec.as_ref()?.pod_cidr.as_ref()?;
                    let port = node.status?.daemon_endpoints?.kubelet_endpoint?.port;
                    Some(SocketAddr::new(
                        [127, 0, 0, 1].into(),
                        u16::try_from(port).ok()?,
                    ))
                }
            },
        )
        .await
    }

    /// Creates `pod` and waits until it is Running: its IP.
    async fn run_pod(&self, pod: Value) -> std::net::IpAddr {
        let pods: Api<Pod> = Api::namespaced(self.admin.clone(), "default");
        let name = pod["metadata"]["name"].as_str().expect("name").to_owned();
        pods.create(
            &PostParams::default(),
            &serde_json::from_value(pod).expect("pod"),
        )
        .await
        .expect("created");
        wait_for(
            &format!("pod {name} running"),
            Duration::from_secs(60),
            || {
                let pods = pods.clone();
                let name = name.clone();
                async move {
                    let status = pods.get(&name).await.ok()?.status?;
                    (status.phase.as_deref() == Some("Running"))
                        .then_some(())
                        .and(status.pod_ip?.parse().ok())
                }
            },
        )
        .await
    }
}

fn http_pod(name: &str, node: &str, image: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": name, "namespace": "default", "labels": {"app": name}},
           "spec": {"nodeName": node, "containers": [{"name": "web", "image": image,
               "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
               "ports": [{"containerPort": 8080}]}]}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_reaches_another_nodes_pods_through_its_agent_and_only_nodes_may_tunnel() {
    let cluster = Cluster::start().await;
    let image = cluster.push("http-hello").await;

    // Node A's pod network: A's own pods directly, every other node's through the tunnel.
    let network = PodNetwork::start_with_host(
        cluster.node_client("tunnel-a").await,
        "tunnel-a",
        cluster.tunnel_client("tunnel-a"),
        |_| false,
        cluster.shutdown.clone(),
    );
    let guests = network.clone();
    cluster
        .run_node(
            "tunnel-a",
            Some(herd_node::ConnectRedirect::new(move |addr| {
                guests.redirect(addr)
            })),
        )
        .await;
    cluster.run_node("tunnel-b", None).await;
    let kubelet_b = cluster.kubelet("tunnel-b").await;
    cluster.kubelet("tunnel-a").await;
    let web_b = cluster.run_pod(http_pod("web-b", "tunnel-b", &image)).await;
    let client_a = cluster
        .run_pod(http_pod("client-a", "tunnel-a", &image))
        .await;
    let web_b_port = SocketAddr::new(web_b, 8080);

    assert_eq!(
        network.route(web_b),
        Route::Tunnel {
            node: "tunnel-b".into(),
            kubelet: kubelet_b
        }
    );
    assert_eq!(network.route(client_a), Route::Direct, "A's own pod");

    // 1. Node A's tunnel client through B's kubelet port: the pod's answer.
    let tunnels = cluster.tunnel_client("tunnel-a");
    let stream = tunnels
        .dial("tunnel-b", kubelet_b, web_b_port)
        .await
        .expect("tunnel to web-b");
    let answer = http_get(stream, "/through-the-tunnel").await;
    assert!(
        answer.starts_with("HTTP/1.1 200")
            && answer.contains("Hello from herd! pod=web-b path=/through-the-tunnel"),
        "{answer}"
    );

    // 2. Refusals, each with its reason.
    let refused = |result: Result<_, TunnelError>| match result {
        Err(TunnelError::Refused {
            status, message, ..
        }) => (status, message),
        Err(other) => panic!("expected a refusal, got {other}"),
        Ok(_) => panic!("expected a refusal, got a tunnel"),
    };
    let anonymous = TunnelClient::with_tls(
        herd_pki::tls::client_config(cluster.plane.ca().cert_pem(), None).expect("TLS"),
    );
    assert_eq!(
        refused(anonymous.dial("tunnel-b", kubelet_b, web_b_port).await),
        (401, "Unauthorized".into())
    );
    let jane = cluster
        .plane
        .kubeconfig("jane", Some("developers"))
        .expect("jane's credentials");
    let jane = TunnelClient::new(
        &jane.ca_pem,
        Arc::new(herd_pki::tls::CurrentCert::new(&jane.client).expect("cert")),
    )
    .expect("client");
    assert_eq!(
        refused(jane.dial("tunnel-b", kubelet_b, web_b_port).await),
        (
            403,
            "Forbidden (user=jane, verb=create, resource=nodes, subresource(s)=[tunnel])".into()
        )
    );
    let node_b: Node = Api::all(cluster.admin.clone())
        .get("tunnel-b")
        .await
        .expect("node b");
    let cidr_b = node_b.spec.and_then(|s| s.pod_cidr).expect("pod CIDR");
    for outside in [SocketAddr::new(client_a, 8080), kubelet_b] {
        assert_eq!(
            refused(tunnels.dial("tunnel-b", kubelet_b, outside).await),
            (
                403,
                format!(
                    "{} is not a pod IP of node tunnel-b (podCIDR {cidr_b}): tunnels only reach this node's pods",
                    outside.ip()
                )
            )
        );
    }
    let (status, message) = refused(
        tunnels
            .dial("tunnel-b", kubelet_b, SocketAddr::new(web_b, 9))
            .await,
    );
    assert_eq!(status, 502);
    assert!(
        message.starts_with(&format!("dial tcp {web_b}:9: ")),
        "{message}"
    );
    // The calling node checks whom it reached: B's certificate does not name node A.
    match tunnels.dial("tunnel-a", kubelet_b, web_b_port).await {
        Err(TunnelError::WrongNode { found, .. }) => assert_eq!(found, "system:node:tunnel-b"),
        Err(other) => panic!("expected the wrong node, got {other}"),
        Ok(_) => panic!("expected the wrong node, got a tunnel"),
    }

    // 3. A's proxy balances a Service over B's pod, through the tunnel.
    let before = network.tunnels_opened();
    let services: Api<Service> = Api::namespaced(cluster.admin.clone(), "default");
    let service: Service = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "web-b"},
        "spec": {"selector": {"app": "web-b"}, "ports": [{"port": 8080}]}}))
    .expect("service");
    let cluster_ip: std::net::IpAddr = services
        .create(&PostParams::default(), &service)
        .await
        .expect("service created")
        .spec
        .and_then(|s| s.cluster_ip)
        .expect("cluster IP")
        .parse()
        .expect("IP");
    let proxy_network = network.clone();
    let proxy = herd_proxy::ProxyConfig {
        names: herd_dns::ClusterNames::new(herd_dns::DEFAULT_CLUSTER_DOMAIN),
        node_name: "tunnel-a".into(),
        node_addresses: Vec::new(),
        redirects: herd_proxy::Redirects::new(),
        balancer: herd_proxy::Balancer::new(),
        dialer: herd_proxy::Dialer::new(move |backend| {
            let network = proxy_network.clone();
            Box::pin(async move {
                Ok(Box::new(network.connect(backend).await?) as herd_proxy::BoxConnection)
            })
        }),
    };
    let proxy_client = cluster.node_client("tunnel-a").await;
    let stop = cluster.shutdown.clone();
    tokio::spawn(async move { herd_proxy::run(proxy_client, proxy, stop).await });
    let answer = wait_for(
        "the Service answering through node A's proxy",
        Duration::from_secs(30),
        || async move {
            let stream = tokio::net::TcpStream::connect((cluster_ip, 8080))
                .await
                .ok()?;
            let answer = http_get(stream, "/through-the-service").await;
            answer.starts_with("HTTP/1.1 200").then_some(answer)
        },
    )
    .await;
    assert!(
        answer.contains("Hello from herd! pod=web-b path=/through-the-service"),
        "{answer}"
    );
    assert!(network.tunnels_opened() > before, "the proxy tunnelled");

    // 4. A guest on node A connects to B's pod IP itself: its connection is tunnelled.
    let before = network.tunnels_opened();
    let stream = tokio::net::TcpStream::connect((client_a, 8080))
        .await
        .expect("client-a");
    let answer = http_get(stream, &format!("/fetch/{web_b}:8080/from-a-guest")).await;
    assert!(
        answer.contains("upstream 200: Hello from herd! pod=web-b path=/from-a-guest"),
        "{answer}"
    );
    assert!(
        network.tunnels_opened() > before,
        "the guest's connect was tunnelled"
    );

    cluster.shutdown.cancel();
}
