//! The long-running subcommands: `herd up`, `herd control`, `herd node`.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail};
use herd_control::StoreSync;
use ipnet::{IpNet, Ipv4Net};
use k8s_openapi::api::core::v1::Node;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The longest IPv4 prefix whose range has `pods` usable addresses (network and broadcast excluded),
/// and never longer than /30.
fn prefix_holding(pods: u32) -> u8 {
    (2..=30u8)
        .rev()
        .find(|prefix| (1u64 << (32 - prefix)) - 2 >= u64::from(pods))
        .unwrap_or(2)
}

/// How long shutdown may take before the process gives up waiting.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(15);

#[derive(Debug, Clone, clap::Args)]
pub struct ClusterArgs {
    /// Directory for the store (herd.db), the kubeconfig and, with `up`, the node's and registry's data.
    #[arg(long)]
    data_dir: PathBuf,
    /// Address of the API server; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:6443")]
    listen: SocketAddr,
    /// Another name or address the API server's certificate covers (repeatable; as k3s's flag): what
    /// clients on other hosts call this server. `localhost`, the listen and loopback addresses, the host's
    /// name, the first Service IP and the `kubernetes.default.svc` names are always covered.
    #[arg(long = "tls-san")]
    tls_sans: Vec<String>,
    /// The address nodes and pods reach the API server at (kube-apiserver's flag): what the `kubernetes`
    /// Service's endpoints name. Default: the listen address (the loopback address for 0.0.0.0).
    #[arg(long)]
    advertise_address: Option<IpAddr>,
    /// Range Service cluster IPs are allocated from (loopback by default, so no root is needed).
    #[arg(long, default_value = "127.10.0.0/16")]
    service_cidr: IpNet,
    /// Range Service NodePorts are allocated from, `LOW-HIGH` or `BASE+SIZE` (kube-apiserver's flag).
    #[arg(long, default_value = "30000-32767", value_parser = parse_node_port_range)]
    service_node_port_range: std::ops::RangeInclusive<u16>,
    /// Range node pod CIDRs are carved from.
    #[arg(long, default_value = "127.64.0.0/10")]
    cluster_cidr: Ipv4Net,
    /// Prefix length of each node's pod CIDR (kube-controller-manager's flag). Default: 18, 16,382 pod IPs a
    /// node, room for the default `--max-pods` (with `herd up`, the smallest range that holds `--max-pods`
    /// if that is larger).
    #[arg(long)]
    node_cidr_mask_size: Option<u8>,
    /// How stale a node's Lease may get before the node is Ready=Unknown and tainted unreachable.
    #[arg(long, default_value = "40s", value_parser = parse_duration)]
    node_monitor_grace_period: Duration,
    /// How long pods without their own toleration stay on an unreachable node before eviction.
    #[arg(long, default_value_t = 300)]
    default_unreachable_toleration_seconds: u64,
    /// The first delay before a Job's failed pod is replaced; it doubles per failure, up to 6 minutes.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    job_backoff_base: Duration,
    /// When the store's commits reach the disk: `full` fsyncs every commit before acknowledging it (a write
    /// survives a power cut); `normal` fsyncs at checkpoints only (a write survives herd crashing, but the
    /// last ones may roll back on a power cut; the store stays consistent).
    #[arg(long, default_value = "full")]
    store_sync: StoreSync,
    /// An `EncryptionConfiguration` file (kube-apiserver's flag): which resources are encrypted at rest in
    /// the store, with which providers (`aescbc`, `secretbox`, `identity`) and keys. The first provider of a
    /// resource encrypts writes; every listed one reads. Without it everything is stored as it is.
    #[arg(long)]
    encryption_provider_config: Option<PathBuf>,
    /// How long the node certificates the CSR signer issues live (kube-controller-manager's flag),
    /// capped by a request's `spec.expirationSeconds`; nodes renew at 70–90 % of it.
    #[arg(long, default_value = "8760h", value_parser = parse_duration)]
    cluster_signing_duration: Duration,
    /// Run the controllers and the scheduler only while this control plane holds their Leases
    /// (`kube-system/kube-controller-manager`, `kube-system/kube-scheduler`), so that of several control
    /// planes on one etcd exactly one runs each (kube-controller-manager's and kube-scheduler's flag).
    /// Default: on with `--store etcd`, off with `sqlite` (one process owns the file: there is no one to
    /// elect against). `--leader-elect=false` runs them unconditionally.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    leader_elect: Option<bool>,
    /// How long other control planes wait after they last saw the leader renew before they take over.
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    leader_elect_lease_duration: Duration,
    /// How long the leader keeps trying to renew before it stops leading (less than the lease duration).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    leader_elect_renew_deadline: Duration,
    /// How often candidates try to acquire, and the leader to renew, the Leases.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    leader_elect_retry_period: Duration,
    /// An `AdmissionConfiguration` file (kube-apiserver's flag) whose `PodSecurity` plugin configuration
    /// (`PodSecurityConfiguration`) sets Pod Security's defaults for namespaces without labels and its
    /// exemptions. Without it herd enforces `baseline` (no hostPath volumes, host ports, privileged
    /// containers, …) everywhere but `kube-system` and namespaces labelled otherwise.
    #[arg(long)]
    admission_control_config_file: Option<PathBuf>,
    /// Where objects are stored: `sqlite` (herd.db in the data dir) or `etcd` (the `--etcd-servers`, as
    /// kube-apiserver stores; several control planes may share it). With `etcd`, a data dir's herd.db is
    /// imported into an empty `--etcd-prefix` at start and renamed to herd.db.imported-<unix time>.
    #[arg(long, default_value = "sqlite", value_parser = ["sqlite", "etcd"])]
    store: String,
    /// The etcd members' client URLs, comma-separated (`https://HOST:2379,…`; kube-apiserver's flag).
    #[arg(long, value_delimiter = ',', required_if_eq("store", "etcd"))]
    etcd_servers: Vec<String>,
    /// The CA file that verifies the etcd members' certificates.
    #[arg(long)]
    etcd_cafile: Option<PathBuf>,
    /// The client certificate presented to etcd (with `--etcd-keyfile`).
    #[arg(long, requires = "etcd_keyfile")]
    etcd_certfile: Option<PathBuf>,
    /// The client certificate's key.
    #[arg(long, requires = "etcd_certfile")]
    etcd_keyfile: Option<PathBuf>,
    /// The prefix of every key in etcd.
    #[arg(long, default_value = "/registry")]
    etcd_prefix: String,
}

impl ClusterArgs {
    /// The store the flags choose.
    fn store(&self) -> herd_control::StoreBackend {
        match self.store.as_str() {
            "etcd" => herd_control::StoreBackend::Etcd(herd_control::EtcdConfig {
                servers: self.etcd_servers.clone(),
                ca_file: self.etcd_cafile.clone(),
                cert_file: self.etcd_certfile.clone(),
                key_file: self.etcd_keyfile.clone(),
                prefix: self.etcd_prefix.clone(),
            }),
            _ => herd_control::StoreBackend::Sqlite,
        }
    }
}

#[derive(Debug, Clone, clap::Args)]
pub struct UpArgs {
    #[command(flatten)]
    cluster: ClusterArgs,
    /// Where the embedded OCI registry listens.
    #[arg(long, default_value = "127.0.0.1:5000", conflicts_with = "no_registry")]
    registry_listen: SocketAddr,
    /// Do not run the embedded OCI registry.
    #[arg(long)]
    no_registry: bool,
    /// Name of the node (default: this host's name).
    #[arg(long)]
    node_name: Option<String>,
    /// A registry (HOST:PORT) to speak plain HTTP to; loopback registries are unless they answer a TLS
    /// handshake (the embedded registry speaks HTTPS with a certificate of the cluster CA).
    #[arg(long = "insecure-registry")]
    insecure_registries: Vec<String>,
    /// The node's registry credentials, a docker config.json (as the kubelet's --root-dir/config.json),
    /// used for pulls after a pod's imagePullSecrets; default: config.json in the node's data dir when
    /// it exists. Read at each pull, so edits need no restart.
    #[arg(long)]
    registry_config: Option<PathBuf>,
    /// How often the node agent renews its Lease.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    lease_renew_interval: Duration,
    /// The first delay before a crashed container is restarted (CrashLoopBackOff); it doubles per crash up
    /// to 30 times this (5 min for the kubelet's 10 s) and resets after 10 min of running.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    crash_loop_back_off_base: Duration,
    /// How many pods the node takes (the kubelet's flag; Wasm pods are small, so 10,000 rather than the
    /// kubelet's 110); the node's pod CIDR must hold as many IPs.
    #[arg(long, default_value_t = herd_node::DEFAULT_MAX_PODS)]
    max_pods: u32,
    /// The cluster's DNS domain (the kubelet's flag): guests find Services as `SVC.NS.svc.<domain>` (and
    /// by the search list of their namespace, `SVC`, `SVC.NS`, `SVC.NS.svc`).
    #[arg(long, default_value = herd_dns::DEFAULT_CLUSTER_DOMAIN, value_parser = parse_cluster_domain)]
    cluster_domain: String,
}

#[derive(Debug, Clone, clap::Args)]
pub struct ControlArgs {
    #[command(flatten)]
    cluster: ClusterArgs,
}

#[derive(Debug, Clone, clap::Args)]
pub struct NodeArgs {
    /// Name of the Node object (default: this host's name).
    #[arg(long)]
    name: Option<String>,
    /// An API server of the cluster, `https://HOST:PORT` (as `herd token create` prints it); repeat it for
    /// each API server. With `--token`, the node joins through the first that answers (instead of
    /// `--kubeconfig`). The node's API load balancer (`--api-proxy-listen`) forwards to these, to the
    /// kubeconfig's server and to every API server the `default/kubernetes` Endpoints name.
    #[arg(long = "server", value_name = "URL")]
    servers: Vec<String>,
    /// Where the node's local API load balancer listens (k3s's agent load balancer): the node agent, its
    /// proxy and their watches reach the API servers through it, and so can kubectl on this host
    /// (`--server https://ADDR`); it forwards each connection (TLS untouched) to a live API server and fails
    /// over to the next. Port 0 picks a free port; `off` connects to the kubeconfig's server directly.
    /// Default 127.0.0.1:6444, or a free port on 127.0.0.1 when another node on this host holds it.
    #[arg(long, value_name = "ADDR|off")]
    api_proxy_listen: Option<ApiProxyListen>,
    /// A bootstrap token `ID.SECRET` (`herd token create`): the node asks for its own client
    /// certificate with it. Not needed again once the node holds a valid certificate in its data dir.
    #[arg(long, requires = "servers")]
    token: Option<String>,
    /// The cluster CA's public key pin, `sha256:<hex>` (kubeadm's `--discovery-token-ca-cert-hash`): the
    /// CA the server shows is trusted only if it has this hash.
    #[arg(long, alias = "discovery-token-ca-cert-hash")]
    ca_cert_hash: Option<String>,
    /// Trust the CA named by the token-signed cluster-info without checking a pin (kubeadm's flag).
    #[arg(long)]
    discovery_token_unsafe_skip_ca_verification: bool,
    /// Directory for the image cache, pod logs and volumes.
    #[arg(long)]
    data_dir: PathBuf,
    /// The node's address: where its pods' IPs are reached and its kubelet port listens.
    #[arg(long, default_value = "127.0.0.1")]
    address: IpAddr,
    /// A registry (HOST:PORT) to speak plain HTTP to; loopback registries are unless they answer a TLS
    /// handshake (the embedded registry speaks HTTPS with a certificate of the cluster CA).
    #[arg(long = "insecure-registry")]
    insecure_registries: Vec<String>,
    /// The node's registry credentials, a docker config.json (as the kubelet's --root-dir/config.json),
    /// used for pulls after a pod's imagePullSecrets; default: config.json in the node's data dir when
    /// it exists. Read at each pull, so edits need no restart.
    #[arg(long)]
    registry_config: Option<PathBuf>,
    /// How often the node agent renews its Lease.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    lease_renew_interval: Duration,
    /// The first delay before a crashed container is restarted (CrashLoopBackOff); it doubles per crash up
    /// to 30 times this (5 min for the kubelet's 10 s) and resets after 10 min of running.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    crash_loop_back_off_base: Duration,
    /// How many pods the node takes (the kubelet's flag; Wasm pods are small, so 10,000 rather than the
    /// kubelet's 110); the node's pod CIDR must hold as many IPs.
    #[arg(long, default_value_t = herd_node::DEFAULT_MAX_PODS)]
    max_pods: u32,
    /// The cluster's DNS domain (the kubelet's flag): guests find Services as `SVC.NS.svc.<domain>` (and
    /// by the search list of their namespace, `SVC`, `SVC.NS`, `SVC.NS.svc`).
    #[arg(long, default_value = herd_dns::DEFAULT_CLUSTER_DOMAIN, value_parser = parse_cluster_domain)]
    cluster_domain: String,
}

pub async fn up(args: UpArgs) -> anyhow::Result<()> {
    init_tracing();
    let shutdown = CancellationToken::new();
    let data_dir = args.cluster.data_dir.clone();
    let node_cidr_prefix = args.cluster.node_cidr_mask_size.unwrap_or_else(|| {
        herd_control::DEFAULT_NODE_CIDR_PREFIX.min(prefix_holding(args.max_pods))
    });
    let _ranges = claim_ranges(&args.cluster)?;
    let plane = start_control(&args.cluster, node_cidr_prefix, &shutdown).await?;
    let kubeconfig = write_kubeconfig(&data_dir, &plane)?;
    let mut tasks: Vec<(&str, JoinHandle<anyhow::Result<()>>)> = Vec::new();
    let registry = if args.no_registry {
        "off".to_string()
    } else {
        let listener = tokio::net::TcpListener::bind(args.registry_listen)
            .await
            .with_context(|| format!("registry listening on {}", args.registry_listen))?;
        let addr = listener.local_addr()?;
        let root = data_dir.join("registry");
        let token = shutdown.clone();
        let security = registry_security(&plane, addr, &args.cluster.tls_sans)?;
        tasks.push((
            "registry",
            tokio::spawn(async move {
                Ok(herd_registry::serve(listener, root, security, token).await?)
            }),
        ));
        addr.to_string()
    };
    let node_name = match args.node_name {
        Some(n) => n,
        None => default_node_name(),
    };
    // The node agent and the proxy are clients with identities of their own, as the kubelet
    // (`system:node:NAME` in `system:nodes`) and kube-proxy (`system:kube-proxy`) are.
    let node_credentials = plane.kubeconfig(
        &herd_pki::node_user(&node_name),
        Some(herd_pki::NODES_GROUP),
    )?;
    let node_client_config = herd_node::kube_config(&node_credentials).await?;
    let trusted_ca_certificates = node_client_config.root_cert.clone().unwrap_or_default();
    let client = kube_client(node_client_config, "kubelet")?;
    let proxy_credentials = plane.kubeconfig(PROXY_USER, None)?;
    let proxy_client = kube_client(
        herd_node::kube_config(&proxy_credentials).await?,
        "kube-proxy",
    )?;
    // The in-process node's kubelet port serves a certificate issued straight from the plane's CA (its name and
    // address; a year, not renewed), and its client identity above is static as well: both come from the CA
    // in this process, no CSR needed.
    let node_address = IpAddr::from([127, 0, 0, 1]);
    let kubelet_serving = plane.ca().issue_kubelet_serving(
        &node_name,
        &[node_address],
        herd_pki::SERVING_VALIDITY,
    )?;
    let node_cfg = herd_node::NodeConfig {
        name: node_name.clone(),
        data_dir: data_dir.join("node"),
        address: node_address,
        kubelet_port: 0,
        insecure_registries: args.insecure_registries,
        registry_config: checked_registry_config(args.registry_config)?,
        lease_renew_interval: args.lease_renew_interval,
        crash_loop_back_off_base: args.crash_loop_back_off_base,
        max_pods: args.max_pods,
        connect_redirect: None,
        local_readiness: None,
        cluster_names: Some(herd_dns::ClusterNames::new(&args.cluster_domain)),
        trusted_ca_certificates,
        kubelet_tls: herd_node::KubeletTls {
            client_ca_pem: plane.ca().cert_pem().to_string(),
            serving: Some(kubelet_serving),
            approve_own_serving_csr: false,
        },
    };
    // This node's pods are on this host; pods of nodes joined from other hosts are reached through their
    // node agents, with this node's certificate.
    let tunnel = herd_node::tunnel::TunnelClient::new(
        &node_credentials.ca_pem,
        std::sync::Arc::new(herd_pki::tls::CurrentCert::new(&node_credentials.client)?),
    )?;
    let network = herd_node::pod_network::PodNetwork::start(
        client.clone(),
        &node_name,
        tunnel,
        shutdown.clone(),
    );
    tasks.extend(spawn_node(
        client.clone(),
        proxy_client,
        node_cfg,
        Some(network),
        &shutdown,
    ));
    wait_node_ready(&client, &node_name, &shutdown).await?;
    tracing::info!(
        "herd is ready api={} registry={registry} kubeconfig={}",
        plane.url(),
        kubeconfig.display()
    );
    run_until_signal(shutdown, tasks, Some(plane)).await
}

pub async fn control(args: ControlArgs) -> anyhow::Result<()> {
    init_tracing();
    let shutdown = CancellationToken::new();
    let node_cidr_prefix = args
        .cluster
        .node_cidr_mask_size
        .unwrap_or(herd_control::DEFAULT_NODE_CIDR_PREFIX);
    let _ranges = claim_ranges(&args.cluster)?;
    let plane = start_control(&args.cluster, node_cidr_prefix, &shutdown).await?;
    let kubeconfig = write_kubeconfig(&args.cluster.data_dir, &plane)?;
    tracing::info!(
        "herd is ready api={} kubeconfig={}",
        plane.url(),
        kubeconfig.display()
    );
    run_until_signal(shutdown, Vec::new(), Some(plane)).await
}

pub async fn node(args: NodeArgs, kubeconfig: Option<PathBuf>) -> anyhow::Result<()> {
    init_tracing();
    let name = args.name.clone().unwrap_or_else(default_node_name);
    let shutdown = CancellationToken::new();
    let mut certificate_manager = None;
    let balancer;
    // The node's client certificate and the cluster CA, for its tunnels to pods of other hosts.
    let tunnel_client;
    let (client, proxy_client, kubelet_tls, trusted_ca_certificates) = match &kubeconfig {
        Some(kubeconfig) => {
            let client_config = read_kubeconfig(kubeconfig).await?;
            balancer = start_api_balancer(
                args.api_proxy_listen,
                &client_config.cluster_url.to_string(),
                &args.servers,
                &shutdown,
            )
            .await?;
            let client_config = through_balancer(client_config, balancer.as_ref())?;
            let trusted = client_config.root_cert.clone().unwrap_or_default();
            tunnel_client = match herd_pki::Kubeconfig::read(kubeconfig) {
                Ok(credentials) => Some(herd_node::tunnel::TunnelClient::new(
                    &credentials.ca_pem,
                    std::sync::Arc::new(herd_pki::tls::CurrentCert::new(&credentials.client)?),
                )?),
                Err(error) => {
                    tracing::warn!(
                        "the kubeconfig holds no client certificate for tunnels to pods on other hosts ({error}); those pods are unreachable from here"
                    );
                    None
                }
            };
            let kubelet_tls = herd_node::KubeletTls {
                client_ca_pem: herd_pki::tls::pem_of_certificates(&trusted),
                serving: None,
                // An administrator's kubeconfig approves the node's own serving CSR, as an operator would.
                approve_own_serving_csr: true,
            };
            (
                kube_client(client_config.clone(), "kubelet")?,
                kube_client(client_config, "kube-proxy")?,
                kubelet_tls,
                trusted,
            )
        }
        None => {
            // A joined node: its clients present the certificate manager's current client certificate at
            // each new connection, and the manager renews it before it expires.
            let credentials = node_credentials(&args, &name).await?;
            let certificates =
                herd_node::certificate_manager::ClientCertificate::new(credentials.clone())?;
            tunnel_client = Some(herd_node::tunnel::TunnelClient::new(
                &credentials.ca_pem,
                certificates.current(),
            )?);
            let client_config = herd_node::kube_config(&credentials).await?;
            balancer = start_api_balancer(
                args.api_proxy_listen,
                &client_config.cluster_url.to_string(),
                &args.servers,
                &shutdown,
            )
            .await?;
            let client_config = through_balancer(client_config, balancer.as_ref())?;
            let trusted = client_config.root_cert.clone().unwrap_or_default();
            let client =
                certificates.client(&with_user_agent(client_config.clone(), "kubelet")?)?;
            // A joined node's proxy runs with the node's identity.
            let proxy_client =
                certificates.client(&with_user_agent(client_config, "kube-proxy")?)?;
            certificate_manager = Some((certificates, client.clone()));
            let kubelet_tls = herd_node::KubeletTls {
                client_ca_pem: credentials.ca_pem.clone(),
                serving: None,
                approve_own_serving_csr: false,
            };
            (client, proxy_client, kubelet_tls, trusted)
        }
    };
    let cfg = herd_node::NodeConfig {
        name: name.clone(),
        data_dir: args.data_dir,
        address: args.address,
        kubelet_port: 0,
        insecure_registries: args.insecure_registries,
        registry_config: checked_registry_config(args.registry_config)?,
        lease_renew_interval: args.lease_renew_interval,
        crash_loop_back_off_base: args.crash_loop_back_off_base,
        max_pods: args.max_pods,
        connect_redirect: None,
        local_readiness: None,
        cluster_names: Some(herd_dns::ClusterNames::new(&args.cluster_domain)),
        trusted_ca_certificates,
        kubelet_tls,
    };
    let data_dir = cfg.data_dir.clone();
    // Pods of nodes on other hosts are reached through their node agents.
    let network = tunnel_client.map(|tunnel| {
        herd_node::pod_network::PodNetwork::start(client.clone(), &name, tunnel, shutdown.clone())
    });
    let mut tasks = spawn_node(client.clone(), proxy_client, cfg, network, &shutdown);
    if let Some((certificates, manager_client)) = certificate_manager {
        let (node, stop) = (name.clone(), shutdown.clone());
        tasks.push((
            "certificate manager",
            tokio::spawn(async move {
                certificates
                    .rotate(manager_client, node, data_dir, stop)
                    .await;
                Ok(())
            }),
        ));
    }
    let api = match &balancer {
        Some(balancer) => {
            // The balancer learns every live API server from the `kubernetes` Endpoints.
            let (follower, watcher_client, stop) =
                (balancer.clone(), client.clone(), shutdown.clone());
            tasks.push((
                "API load balancer",
                tokio::spawn(async move {
                    follower.follow_endpoints(watcher_client, stop).await;
                    Ok(())
                }),
            ));
            balancer.url()
        }
        None => "direct".to_string(),
    };
    wait_node_ready(&client, &name, &shutdown).await?;
    tracing::info!("herd node {name} is ready api-proxy={api}");
    run_until_signal(shutdown, tasks, None).await
}

/// The node's credentials without `--kubeconfig`: those an earlier join left in the data dir while its
/// certificate is valid, else a join with `--server`, `--token` and `--ca-cert-hash` (kubeadm join's
/// token discovery, then the kubelet's TLS bootstrap).
async fn node_credentials(args: &NodeArgs, name: &str) -> anyhow::Result<herd_pki::Kubeconfig> {
    if let Some(existing) = herd_node::bootstrap::existing(&args.data_dir)? {
        tracing::info!(
            "using the node's client certificate in {}",
            args.data_dir.display()
        );
        return Ok(existing);
    }
    let (Some(_), Some(token)) = (args.servers.first(), &args.token) else {
        bail!(
            "herd node needs --kubeconfig FILE, or --server URL --token ID.SECRET --ca-cert-hash sha256:HEX to join (herd token create prints the command)"
        )
    };
    let token: herd_pki::BootstrapToken =
        token.parse().map_err(|e| anyhow::anyhow!("--token: {e}"))?;
    let ca_cert_hash = match (
        &args.ca_cert_hash,
        args.discovery_token_unsafe_skip_ca_verification,
    ) {
        (Some(hash), _) => Some(
            hash.parse::<herd_pki::CaCertHash>()
                .map_err(|e| anyhow::anyhow!("--ca-cert-hash: {e}"))?,
        ),
        (None, true) => None,
        (None, false) => bail!(
            "--ca-cert-hash sha256:HEX is required to trust the cluster CA (or --discovery-token-unsafe-skip-ca-verification to skip the check)"
        ),
    };
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating {}", args.data_dir.display()))?;
    // Through the first API server that lets the node join.
    let mut failure = None;
    for server in &args.servers {
        let join = herd_node::bootstrap::JoinConfig {
            server: server.clone(),
            token: token.clone(),
            ca_cert_hash,
            node_name: name.to_string(),
            data_dir: args.data_dir.clone(),
        };
        match herd_node::bootstrap::join(&join).await {
            Ok(credentials) => {
                tracing::info!("node {name} joined {server} with a client certificate of its own");
                return Ok(credentials);
            }
            Err(error) => {
                tracing::warn!(%server, "joining failed: {error}");
                failure = Some(error);
            }
        }
    }
    Err(failure.map_or_else(|| anyhow::anyhow!("no --server to join"), Into::into))
}

/// `--api-proxy-listen`: an address, or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiProxyListen {
    Off,
    On(SocketAddr),
}

impl std::str::FromStr for ApiProxyListen {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        if text == "off" {
            return Ok(Self::Off);
        }
        text.parse().map(Self::On).map_err(|_| {
            format!("{text:?} is neither an address (127.0.0.1:6444, 127.0.0.1:0) nor off")
        })
    }
}

/// Starts the node's API load balancer in front of the kubeconfig's server (`current`) and `--server`s,
/// unless it is `off`: where the node's clients should connect, `None` for directly.
async fn start_api_balancer(
    listen: Option<ApiProxyListen>,
    current: &str,
    flags: &[String],
    shutdown: &CancellationToken,
) -> anyhow::Result<Option<herd_node::api_balancer::ApiBalancer>> {
    use herd_node::api_balancer::{ApiBalancer, DEFAULT_LISTEN, server_address};
    let mut servers = Vec::new();
    for url in std::iter::once(current).chain(flags.iter().map(String::as_str)) {
        let addr = server_address(url).map_err(|e| anyhow::anyhow!("--server: {e}"))?;
        if !servers.contains(&addr) {
            servers.push(addr);
        }
    }
    let listen = match listen {
        Some(ApiProxyListen::Off) => return Ok(None),
        Some(ApiProxyListen::On(addr)) => addr,
        None => {
            let default: SocketAddr = DEFAULT_LISTEN.parse()?;
            match ApiBalancer::start(default, &servers, shutdown.clone()).await {
                Ok(balancer) => return Ok(Some(balancer)),
                Err(error) => {
                    // Another node on this host holds the default: any free port of the same address.
                    tracing::warn!(
                        "the API load balancer cannot listen on {default} ({error}); using a free port"
                    );
                    SocketAddr::new(default.ip(), 0)
                }
            }
        }
    };
    let balancer = ApiBalancer::start(listen, &servers, shutdown.clone())
        .await
        .with_context(|| format!("the API load balancer listening on {listen}"))?;
    Ok(Some(balancer))
}

/// `config` pointing at `balancer` when there is one.
fn through_balancer(
    mut config: kube::Config,
    balancer: Option<&herd_node::api_balancer::ApiBalancer>,
) -> anyhow::Result<kube::Config> {
    if let Some(balancer) = balancer {
        config.cluster_url = balancer.url().parse()?;
    }
    Ok(config)
}

/// Claims the cluster's Service and pod ranges on this host (see `host_ranges`); held until exit.
fn claim_ranges(args: &ClusterArgs) -> anyhow::Result<crate::host_ranges::RangeClaim> {
    // Replicas on one etcd are one cluster: they share its ranges.
    let store = match args.store() {
        herd_control::StoreBackend::Etcd(etcd) => {
            crate::host_ranges::store_identity(&etcd.servers, &etcd.prefix)
        }
        herd_control::StoreBackend::Sqlite => 0,
    };
    crate::host_ranges::claim(
        crate::host_ranges::Ranges {
            service: args.service_cidr,
            cluster: args.cluster_cidr,
        },
        store,
    )
}

/// The leader election the flags choose: `--leader-elect` as given, else on with etcd (where replicas can
/// share the store) and off with SQLite (one process owns the file).
fn leader_election(args: &ClusterArgs) -> herd_control::LeaderElection {
    herd_control::LeaderElection {
        enabled: args
            .leader_elect
            .unwrap_or(matches!(args.store(), herd_control::StoreBackend::Etcd(_))),
        lease_duration: args.leader_elect_lease_duration,
        renew_deadline: args.leader_elect_renew_deadline,
        retry_period: args.leader_elect_retry_period,
    }
}

/// `--service-node-port-range`.
fn parse_node_port_range(text: &str) -> Result<std::ops::RangeInclusive<u16>, String> {
    herd_control::parse_node_port_range(text)
}

async fn start_control(
    args: &ClusterArgs,
    node_cidr_prefix: u8,
    shutdown: &CancellationToken,
) -> anyhow::Result<herd_control::ControlPlane> {
    let mut cfg = herd_control::ControlConfig::new(args.data_dir.clone(), args.listen);
    cfg.service_cidr = args.service_cidr;
    cfg.service_node_port_range = args.service_node_port_range.clone();
    cfg.cluster_cidr = args.cluster_cidr;
    cfg.node_cidr_prefix = node_cidr_prefix;
    cfg.node_lifecycle = herd_control::NodeLifecycleConfig {
        monitor_grace_period: args.node_monitor_grace_period,
        default_unreachable_toleration: Duration::from_secs(
            args.default_unreachable_toleration_seconds,
        ),
    };
    cfg.job_backoff_base = args.job_backoff_base;
    cfg.store_sync = args.store_sync;
    cfg.store = args.store();
    cfg.tls_sans = args.tls_sans.clone();
    cfg.advertise_address = args.advertise_address;
    cfg.encryption_provider_config = args.encryption_provider_config.clone();
    cfg.cluster_signing_duration = args.cluster_signing_duration;
    cfg.leader_election = leader_election(args);
    if let Some(path) = &args.admission_control_config_file {
        cfg.pod_security = read_admission_config(path)?;
    }
    Ok(herd_control::ControlPlane::start(cfg, shutdown.clone()).await?)
}

/// `--cluster-domain`: a DNS name of labels (lower case, without the trailing dot).
fn parse_cluster_domain(value: &str) -> Result<String, String> {
    let domain = value.trim_end_matches('.').to_ascii_lowercase();
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if domain.is_empty() || domain.len() > 253 || !domain.split('.').all(label_ok) {
        return Err(format!(
            "{value:?} is not a DNS domain (e.g. cluster.local)"
        ));
    }
    Ok(domain)
}

fn spawn_node(
    client: kube::Client,
    proxy_client: kube::Client,
    mut cfg: herd_node::NodeConfig,
    network: Option<herd_node::pod_network::PodNetwork>,
    shutdown: &CancellationToken,
) -> Vec<(&'static str, JoinHandle<anyhow::Result<()>>)> {
    let (node_token, proxy_token) = (shutdown.clone(), shutdown.clone());
    // The node's guests connect to a Service straight to an endpoint the proxy's balancer picks for them
    // (socket-level load balancing, `socket_lb`); without one, to the fallback port of a Service port the
    // proxy cannot listen on (below 1024 for an ordinary user), and to pods of other hosts through the pod
    // network's tunnels.
    let redirects = herd_proxy::Redirects::new();
    let balancer = herd_proxy::Balancer::new();
    // The proxy's activator sends a held connection to a pod of this node as soon as the node finds it
    // Ready, before the status is written.
    cfg.local_readiness = Some(herd_proxy::LocalReadiness::new(&balancer));
    cfg.connect_redirect = Some(crate::socket_lb::guest_connect_redirect(
        balancer.clone(),
        redirects.clone(),
        network.clone(),
    ));
    // The proxy's backends: through the pod network (tunnels to other hosts' pods) when there is one;
    // pods of this host the proxy connects itself, on its data-path threads.
    let dialer = match network {
        Some(network) => {
            let routes = network.clone();
            herd_proxy::Dialer::new(move |backend| {
                let network = network.clone();
                Box::pin(async move {
                    let connection = network.connect(backend).await?;
                    Ok(Box::new(connection) as herd_proxy::BoxConnection)
                })
            })
            .direct_when(move |backend| {
                routes.route(backend.ip()) == herd_node::pod_network::Route::Direct
            })
        }
        None => herd_proxy::Dialer::direct(),
    };
    // The cluster's names, kept current by the proxy's watch of Services and EndpointSlices, answer the
    // guests' name lookups.
    let names = cfg
        .cluster_names
        .get_or_insert_with(|| herd_dns::ClusterNames::new(herd_dns::DEFAULT_CLUSTER_DOMAIN))
        .clone();
    // Each Service's traffic through this node, published in the node's Lease for scale to zero.
    let activity = balancer.activity().clone().publish(
        client.clone(),
        cfg.name.clone(),
        herd_proxy::activity::PUBLISH_INTERVAL,
        shutdown.clone(),
    );
    let proxy_cfg = herd_proxy::ProxyConfig {
        names,
        node_name: cfg.name.clone(),
        node_addresses: vec![cfg.address],
        redirects,
        dialer,
        balancer,
    };
    vec![
        (
            "node agent",
            tokio::spawn(async move { Ok(herd_node::run(client, cfg, node_token).await?) }),
        ),
        (
            "proxy",
            tokio::spawn(async move {
                Ok(herd_proxy::run(proxy_client, proxy_cfg, proxy_token).await?)
            }),
        ),
        (
            "service activity",
            tokio::spawn(async move {
                activity.await;
                Ok(())
            }),
        ),
    ]
}

/// Waits until the node reports Ready, so "ready" means pods can run.
async fn wait_node_ready(
    client: &kube::Client,
    name: &str,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    let nodes: kube::Api<Node> = kube::Api::all(client.clone());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(Some(node)) = nodes.get_opt(name).await {
            let ready = node
                .status
                .and_then(|s| s.conditions)
                .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
            let has_cidr = node.spec.and_then(|s| s.pod_cidr).is_some();
            if ready && has_cidr {
                return Ok(());
            }
        }
        if tokio::time::Instant::now() > deadline {
            bail!("node {name} did not become Ready within 60 s");
        }
        tokio::select! {
            () = shutdown.cancelled() => bail!("stopped before node {name} was ready"),
            () = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
    }
}

/// Runs until SIGTERM/SIGINT (or a task fails), then stops everything through the one token.
async fn run_until_signal(
    shutdown: CancellationToken,
    tasks: Vec<(&'static str, JoinHandle<anyhow::Result<()>>)>,
    plane: Option<herd_control::ControlPlane>,
) -> anyhow::Result<()> {
    let mut failed: Option<anyhow::Error> = None;
    let (names, handles): (Vec<_>, Vec<_>) = tasks.into_iter().unzip();
    let mut handles: futures::stream::FuturesUnordered<_> = handles
        .into_iter()
        .zip(names)
        .map(|(h, name)| async move { (name, h.await) })
        .collect();
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("interrupted; shutting down"),
        _ = sigterm.recv() => tracing::info!("terminated; shutting down"),
        Some((name, result)) = futures::StreamExt::next(&mut handles), if !handles.is_empty() => {
            let err = match result {
                Ok(Ok(())) => anyhow::anyhow!("{name} stopped unexpectedly"),
                Ok(Err(e)) => e.context(format!("{name} failed")),
                Err(join) => anyhow::anyhow!("{name} crashed: {join}"),
            };
            tracing::error!("{err:#}");
            failed = Some(err);
        }
    }
    shutdown.cancel();
    let finish = async {
        while let Some((name, result)) = futures::StreamExt::next(&mut handles).await {
            match result {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!("{name} stopped with an error: {e:#}"),
                Err(join) => tracing::warn!("{name} crashed: {join}"),
            }
        }
        if let Some(plane) = plane
            && let Err(e) = plane.wait().await
        {
            tracing::warn!("control plane stopped with an error: {e:#}");
        }
    };
    if tokio::time::timeout(SHUTDOWN_GRACE, finish).await.is_err() {
        tracing::warn!("shutdown took longer than {SHUTDOWN_GRACE:?}; exiting anyway");
    }
    tracing::info!("stopped");
    failed.map_or(Ok(()), Err)
}

/// kube-proxy's user name (the subject kube's `system:node-proxier` ClusterRoleBinding names).
const PROXY_USER: &str = "system:kube-proxy";

/// Writes the admin kubeconfig (kubeadm's `admin.conf`: the cluster CA and a new client certificate of
/// `kubernetes-admin` in `system:masters`) to `<data dir>/kubeconfig.yaml`, atomically, mode 0600.
fn write_kubeconfig(
    data_dir: &Path,
    plane: &herd_control::ControlPlane,
) -> anyhow::Result<PathBuf> {
    let path = data_dir.join("kubeconfig.yaml");
    let mut admin = plane.kubeconfig(herd_pki::ADMIN_USER, Some(herd_pki::MASTERS_GROUP))?;
    admin.user_name = "herd-admin".to_string();
    admin.namespace = Some("default".to_string());
    admin
        .write(&path)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// The Pod Security configuration of an `AdmissionConfiguration` (or `PodSecurityConfiguration`) file.
fn read_admission_config(path: &Path) -> anyhow::Result<herd_api::pod_security::AdmissionConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("--admission-control-config-file {}", path.display()))?;
    let doc: serde_json::Value = serde_yaml::from_str(&text)
        .with_context(|| format!("--admission-control-config-file {}", path.display()))?;
    herd_api::pod_security::AdmissionConfig::from_value(&doc)
        .map_err(|e| anyhow::anyhow!("--admission-control-config-file {}: {e}", path.display()))
}

/// The client configuration a kubeconfig file describes.
async fn read_kubeconfig(kubeconfig: &Path) -> anyhow::Result<kube::Config> {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig)
        .with_context(|| format!("reading {}", kubeconfig.display()))?;
    kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
        .await
        .with_context(|| format!("loading {}", kubeconfig.display()))
}

/// A client of the control plane for the component `component`, named in its user agent as Kubernetes'
/// components name themselves (`kubelet/v… (linux/amd64) herd`): the API server records its writes in
/// managedFields under that name.
fn kube_client(config: kube::Config, component: &str) -> anyhow::Result<kube::Client> {
    Ok(kube::Client::try_from(with_user_agent(config, component)?)?)
}

/// `config` naming `component` in its user agent (see [`kube_client`]).
fn with_user_agent(mut config: kube::Config, component: &str) -> anyhow::Result<kube::Config> {
    config.headers.push((
        hyper::header::USER_AGENT,
        hyper::header::HeaderValue::from_str(&crate::cli::user_agent(component))?,
    ));
    Ok(config)
}

/// This host's name, as a valid Node name.
fn default_node_name() -> String {
    let raw = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let name: String = raw
        .trim()
        .to_ascii_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let name = name.trim_matches(|c| c == '-' || c == '.').to_string();
    if name.is_empty() {
        "herd-node".into()
    } else {
        name
    }
}

fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("HERD_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,kube=warn,hyper=warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .try_init();
}

/// Parses `40s`, `500ms`, `2m`, `1h` or a plain number of seconds.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    // A bare number is seconds (herd's flags always took it); anything else is Go's syntax, as kube's flags.
    let parsed = match text.parse::<f64>() {
        Ok(seconds) => Duration::try_from_secs_f64(seconds).ok(),
        Err(_) => herd_api::duration::parse(text),
    };
    parsed.ok_or_else(|| format!("invalid duration {text:?} (use e.g. 40s, 500ms, 2m, 1h30m)"))
}

/// The embedded registry's HTTPS: a serving certificate of the cluster CA, issued afresh at each start
/// for its listen address, the host's name, `localhost`/`127.0.0.1` and `--tls-san` (as the API
/// server's); client certificates of the CA are verified when sent (the admin's may push), and tokens
/// given as basic credentials to its token endpoint are checked with the API server.
fn registry_security(
    plane: &herd_control::ControlPlane,
    addr: SocketAddr,
    tls_sans: &[String],
) -> anyhow::Result<herd_registry::Security> {
    let mut ips = vec![addr.ip()];
    let mut names = Vec::new();
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    if !hostname.trim().is_empty() {
        names.push(hostname.trim().to_ascii_lowercase());
    }
    for san in tls_sans {
        match san.parse::<IpAddr>() {
            Ok(ip) => ips.push(ip),
            Err(_) => names.push(san.clone()),
        }
    }
    let sans = herd_pki::serving_sans(&ips, None, &names);
    let serving = plane
        .ca()
        .issue_serving("herd-registry", &sans, herd_pki::SERVING_VALIDITY)
        .context("issuing the registry's serving certificate")?;
    let mut tls = herd_pki::tls::server_config(plane.ca().cert_pem(), &serving)
        .context("the registry's TLS configuration")?;
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    let api_tokens = herd_registry::ApiTokenReviewer::new(&plane.url(), plane.ca().cert_pem())
        .context("the registry's token reviewer")?;
    Ok(herd_registry::Security {
        tls: std::sync::Arc::new(tls),
        api_tokens: Some(api_tokens),
    })
}

/// `--registry-config FILE`: a file that must exist and parse as a docker config.json.
fn checked_registry_config(path: Option<PathBuf>) -> anyhow::Result<Option<PathBuf>> {
    if let Some(path) = &path {
        let bytes =
            std::fs::read(path).with_context(|| format!("--registry-config {}", path.display()))?;
        herd_oci_fetch::DockerConfig::from_config_json(&bytes)
            .with_context(|| format!("--registry-config {}", path.display()))?;
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, clap::Parser)]
    struct NodeCommand {
        #[command(flatten)]
        node: NodeArgs,
    }

    #[test]
    fn node_takes_several_servers_and_an_api_proxy_address() {
        use clap::{CommandFactory as _, Parser as _};
        NodeCommand::command().debug_assert();
        let parsed = NodeCommand::try_parse_from([
            "node",
            "--data-dir",
            "/d",
            "--server",
            "https://10.0.0.1:6443",
            "--server",
            "https://10.0.0.2:6443",
            "--token",
            "abcdef.0123456789abcdef",
            "--api-proxy-listen",
            "127.0.0.1:0",
        ])
        .expect("parsed");
        assert_eq!(
            parsed.node.servers,
            ["https://10.0.0.1:6443", "https://10.0.0.2:6443"]
        );
        assert_eq!(
            parsed.node.api_proxy_listen,
            Some(ApiProxyListen::On("127.0.0.1:0".parse().expect("addr")))
        );
        let off =
            NodeCommand::try_parse_from(["node", "--data-dir", "/d", "--api-proxy-listen", "off"])
                .expect("parsed");
        assert_eq!(off.node.api_proxy_listen, Some(ApiProxyListen::Off));
        // A token needs a server to join.
        assert!(
            NodeCommand::try_parse_from(["node", "--data-dir", "/d", "--token", "a.b"]).is_err()
        );
        assert!(
            NodeCommand::try_parse_from([
                "node",
                "--data-dir",
                "/d",
                "--api-proxy-listen",
                "nowhere"
            ])
            .is_err()
        );
    }

    #[test]
    fn cluster_domains_are_dns_names() {
        assert_eq!(
            parse_cluster_domain("cluster.local"),
            Ok("cluster.local".into())
        );
        assert_eq!(
            parse_cluster_domain("Corp.Example."),
            Ok("corp.example".into())
        );
        for bad in ["", ".", "a..b", "-a.local", "a_b.local", "ä.local"] {
            assert!(parse_cluster_domain(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn durations_like_kubernetes_flags() {
        assert_eq!(parse_duration("40s"), Ok(Duration::from_secs(40)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5d").is_err());
    }

    #[derive(Debug, clap::Parser)]
    struct ControlCommand {
        #[command(flatten)]
        cluster: ClusterArgs,
    }

    #[test]
    fn leader_election_is_on_with_etcd_and_off_with_sqlite_unless_the_flag_says() {
        let parse = |flags: &[&str]| {
            let argv = ["control", "--data-dir", "/tmp/d"].iter().chain(flags);
            <ControlCommand as clap::Parser>::try_parse_from(argv)
                .unwrap()
                .cluster
        };
        let etcd = ["--store", "etcd", "--etcd-servers", "http://10.0.0.1:2379"];
        assert!(!leader_election(&parse(&[])).enabled);
        assert!(leader_election(&parse(&etcd)).enabled);
        let off = [&etcd[..], &["--leader-elect=false"]].concat();
        assert!(!leader_election(&parse(&off)).enabled);
        assert!(leader_election(&parse(&["--leader-elect"])).enabled);
        let timed = leader_election(&parse(&[
            "--leader-elect-lease-duration",
            "30s",
            "--leader-elect-renew-deadline",
            "20s",
            "--leader-elect-retry-period",
            "5s",
        ]));
        assert_eq!(
            (
                timed.lease_duration,
                timed.renew_deadline,
                timed.retry_period
            ),
            (
                Duration::from_secs(30),
                Duration::from_secs(20),
                Duration::from_secs(5)
            )
        );
        assert_eq!(
            leader_election(&parse(&[])).lease_duration,
            herd_control::LeaderElection::default().lease_duration
        );
    }

    #[test]
    fn the_default_pod_cidr_holds_the_default_max_pods_and_grows_with_it() {
        assert_eq!(prefix_holding(herd_node::DEFAULT_MAX_PODS), 18);
        assert!(
            herd_control::DEFAULT_NODE_CIDR_PREFIX <= prefix_holding(herd_node::DEFAULT_MAX_PODS)
        );
        assert_eq!(prefix_holding(16_382), 18);
        assert_eq!(prefix_holding(16_383), 17);
        assert_eq!(prefix_holding(110), 25);
        assert_eq!(prefix_holding(2), 30);
        assert_eq!(prefix_holding(1), 30);
    }
}
