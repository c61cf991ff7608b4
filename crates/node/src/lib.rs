//! herd-node: herd's kubelet.
//!
//! [`run`] serves the kubelet port, registers the Node, keeps its Lease and Ready heartbeat
//! fresh, waits for the control plane to assign the node a pod CIDR, then watches the pods bound
//! to the node and runs one `PodWorker` per pod: pull the Wasm image, run each container in
//! wasmtime, write its output to a log file, report the pod's status, record the kubelet's
//! Events, and remove the pod when it is deleted. The control plane is reached only through its
//! HTTP API with the `kube` client.
//!
//! ```text
//! run ─┬─ kubelet server   HTTPS: /healthz, /containerLogs/{ns}/{pod}/{container} (see `kubelet_server`)
//!      ├─ event writer     Events, repeats folded into `count` (herd_api::event_correlator)
//!      ├─ heartbeat        Lease kube-node-lease/<node>, Node Ready condition
//!      ├─ certificate manager  the kubelet port's serving certificate (kubelet-serving CSR, renewed)
//!      └─ PodAgent         watch pods (spec.nodeName=<node>), pod IPs from spec.podCIDR
//!           └─ PodWorker per pod UID ── init containers one by one, then the containers
//!                ├─ ContainerRunner per container (pull → load → run → crash back-off)
//!                │    ├─ probes: startup gates liveness (kills) and readiness (Ready)
//!                │    └─ log capture: guest stdout/stderr → CRI log
//!                └─ on delete: drain, wait the grace period, interrupt; activeDeadlineSeconds
//! ```
//!
//! Files under `data_dir`: the node's registry credentials (`config.json`, docker's format, when
//! `registry_config` names no other file), the image cache (`blobs/`, `refs/`, see `herd-oci-fetch`) and the
//! container logs in the CRI format (`<time> <stream> <P|F> <line>`, see `cri_log`),
//! `pods/<namespace>_<pod>_<uid>/<container>/<restartCount>.log`.

pub mod api_balancer;
pub mod bootstrap;
pub mod certificate_manager;
mod claim_volume;
mod container_logs;
mod container_resume;
mod container_runner;
mod container_spec;
mod crash_back_off;
mod cri_log;
mod events;
mod heartbeat;
mod images;
mod ip_pool;
mod kubelet_server;
mod log_capture;
mod log_render;
mod pod_agent;
mod pod_env;
pub mod pod_network;
mod pod_setup;
mod pod_status;
mod pod_volumes;
mod pod_worker;
mod probes;
mod projected_volume;
mod pull_secrets;
mod reflector;
mod registration;
mod service_account_token;
mod service_env;
pub mod tunnel;

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use herd_oci_fetch::Fetcher;
use herd_wasm_runtime::{Runtime, RuntimeConfig, RuntimeError};
use jiff::Timestamp;
use tokio_util::sync::CancellationToken;

pub use herd_wasm_runtime::ConnectRedirect;

use crate::container_logs::ContainerLogs;
use crate::crash_back_off::CrashBackOff;
use crate::events::EventRecorder;
use crate::images::Images;
use crate::ip_pool::IpPool;
use crate::pod_agent::PodAgent;
use crate::pod_env::NodeAllocatable;
use crate::pod_worker::NodeContext;
use crate::pull_secrets::NodeCredentials;
use crate::reflector::ConfigReflector;
pub use crate::registration::DEFAULT_MAX_PODS;
use crate::registration::{HostInfo, NodeIdentity};

/// How to run one node agent.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// The Node's name (and its Lease's).
    pub name: String,
    /// Image cache and container logs.
    pub data_dir: PathBuf,
    /// The node's InternalIP: the kubelet port and the pods' host IP.
    pub address: IpAddr,
    /// The kubelet port; 0 picks a free one (reported in `daemonEndpoints`).
    pub kubelet_port: u16,
    /// Registries (`host:port`) spoken to over plain HTTP besides loopback ones.
    pub insecure_registries: Vec<String>,
    /// The node's registry credentials, a docker `config.json` (the kubelet's `--root-dir/config.json`),
    /// used for pulls after the pod's image pull secrets; `None`: `config.json` in `data_dir` when it
    /// exists. Read at each pull that goes to a registry.
    pub registry_config: Option<PathBuf>,
    /// How often the Lease and the Ready heartbeat are renewed.
    pub lease_renew_interval: Duration,
    /// How many pods the node takes (its `pods` capacity, as the kubelet's `--max-pods`).
    pub max_pods: u32,
    /// The first delay before a crashed container is restarted (the kubelet's 10 s); it doubles
    /// up to 30 × this (5 min) and is forgotten after a run of 60 × this (10 min).
    pub crash_loop_back_off_base: Duration,
    /// Where the guests' outbound TCP connections really go (see [`ConnectRedirect`]): the binary
    /// fills it from the proxy, for Service ports it serves on another port; `None` by default.
    pub connect_redirect: Option<ConnectRedirect>,
    /// The cluster's DNS names, kept current by the binary (from the proxy's watch of Services and
    /// EndpointSlices): the guests' name lookups answer `SVC`, `SVC.NS`, `SVC.NS.svc.<domain>`, … by
    /// their pod's resolver rules (see `herd_dns`); `None` (the default): the host's resolver only.
    pub cluster_names: Option<herd_dns::ClusterNames>,
    /// The node's proxy's view of its pods' readiness as the node decides it (see
    /// [`herd_proxy::LocalReadiness`]): the binary fills it from the proxy's balancer; `None` by default.
    pub local_readiness: Option<herd_proxy::LocalReadiness>,
    /// CA certificates (DER) the guests' outbound `https` and the node's image pulls trust besides the
    /// web roots: the cluster CA of the node's kubeconfig (kube's `Config::root_cert`), so a pod reaches
    /// the API server at `https://$KUBERNETES_SERVICE_HOST` and the node pulls from herd's embedded
    /// registry over HTTPS.
    pub trusted_ca_certificates: Vec<Vec<u8>>,
    /// The kubelet port's HTTPS (see [`KubeletTls`]).
    pub kubelet_tls: KubeletTls,
}

/// The kubelet port's TLS.
#[derive(Clone, Debug, Default)]
pub struct KubeletTls {
    /// The cluster CA (PEM): the kubelet port takes client certificates of this CA only. Required.
    pub client_ca_pem: String,
    /// A serving certificate the caller gives (`herd up`'s node: issued straight from the plane's CA), used
    /// as it is and not renewed. `None`: the node asks for one with a `kubernetes.io/kubelet-serving` CSR,
    /// serving a self-signed certificate until it is signed, and renews it (see [`certificate_manager`]).
    pub serving: Option<herd_pki::IssuedCert>,
    /// With a CSR: approve it with the node's own credentials when they may (an administrator's
    /// kubeconfig, `herd node --kubeconfig`), as an operator would; a node identity leaves it to the control
    /// plane's csrapproving.
    pub approve_own_serving_csr: bool,
}

impl NodeConfig {
    /// A node on 127.0.0.1 with an ephemeral kubelet port, renewing its lease every 10 s.
    pub fn new(name: impl Into<String>, data_dir: impl Into<PathBuf>) -> Self {
        Self {
            name: name.into(),
            data_dir: data_dir.into(),
            address: IpAddr::V4(Ipv4Addr::LOCALHOST),
            kubelet_port: 0,
            insecure_registries: Vec::new(),
            registry_config: None,
            lease_renew_interval: Duration::from_secs(10),
            max_pods: registration::DEFAULT_MAX_PODS,
            crash_loop_back_off_base: Duration::from_secs(10),
            connect_redirect: None,
            cluster_names: None,
            local_readiness: None,
            trusted_ca_certificates: Vec::new(),
            kubelet_tls: KubeletTls::default(),
        }
    }
}

/// Why the node agent could not run.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The data directory could not be created.
    #[error("cannot create the data directory {path}: {source}")]
    DataDir { path: PathBuf, source: io::Error },
    /// The kubelet port could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    KubeletBind { addr: SocketAddr, source: io::Error },
    /// The wasm runtime could not be created.
    #[error("cannot start the wasm runtime: {0}")]
    Runtime(#[from] RuntimeError),
    /// The API server refused or failed a Node write.
    #[error("cannot register the node: {0}")]
    Register(#[source] kube::Error),
    /// `spec.podCIDR` is not a CIDR.
    #[error("the node's pod CIDR {0:?} is not a valid CIDR")]
    BadPodCidr(String),
    /// Credentials that do not make a client of the API server.
    #[error("the node's credentials: {0}")]
    Credentials(String),
    /// The kubelet port's TLS cannot be set up.
    #[error("the kubelet port's TLS: {0}")]
    KubeletTls(String),
}

/// A client configuration of the API server from a kubeconfig with embedded credentials (the cluster CA,
/// a client certificate and its key), as kube-rs reads a kubeconfig file.
///
/// # Errors
/// [`NodeError::Credentials`] when the kubeconfig does not render or kube-rs cannot use it.
pub async fn kube_config(kubeconfig: &herd_pki::Kubeconfig) -> Result<kube::Config, NodeError> {
    let credentials = |e: &dyn std::fmt::Display| NodeError::Credentials(e.to_string());
    let yaml = kubeconfig.to_yaml().map_err(|e| credentials(&e))?;
    let parsed = kube::config::Kubeconfig::from_yaml(&yaml).map_err(|e| credentials(&e))?;
    kube::Config::from_custom_kubeconfig(parsed, &kube::config::KubeConfigOptions::default())
        .await
        .map_err(|e| credentials(&e))
}

const REGISTER_RETRY_MAX: Duration = Duration::from_secs(30);

/// Runs the node agent until `shutdown` is cancelled. Then pods are stopped without touching
/// their status (they start again with the next agent), and `Ok(())` is returned.
///
/// # Errors
///
/// Start-up failures: the data directory, the kubelet port, the wasm runtime, or a pod CIDR
/// that does not parse. An unreachable API server is retried, not an error.
pub async fn run(
    client: kube::Client,
    cfg: NodeConfig,
    shutdown: CancellationToken,
) -> Result<(), NodeError> {
    // Cancelled when the agent ends for any reason; the caller's token is only read.
    let shutdown = shutdown.child_token();
    tokio::fs::create_dir_all(&cfg.data_dir)
        .await
        .map_err(|source| NodeError::DataDir {
            path: cfg.data_dir.clone(),
            source,
        })?;
    let logs = ContainerLogs::new(&cfg.data_dir);

    let addr = SocketAddr::new(cfg.address, cfg.kubelet_port);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| NodeError::KubeletBind { addr, source })?;
    let kubelet_port = listener
        .local_addr()
        .map_err(|source| NodeError::KubeletBind { addr, source })?
        .port();
    let tls_error = |e: &dyn std::fmt::Display| NodeError::KubeletTls(e.to_string());
    if cfg.kubelet_tls.client_ca_pem.is_empty() {
        return Err(NodeError::KubeletTls(
            "no cluster CA to verify the API server's client certificate against".into(),
        ));
    }
    // A given certificate is used as it is; otherwise the certificate manager's (kept, or self-signed
    // until a kubelet-serving CSR is signed).
    let (current, requested) = match &cfg.kubelet_tls.serving {
        Some(given) => (
            Arc::new(herd_pki::tls::CurrentCert::new(given).map_err(|e| tls_error(&e))?),
            None,
        ),
        None => {
            let serving = certificate_manager::ServingCertificate::load_or_self_sign(
                &cfg.data_dir,
                certificate_manager::ServingNames {
                    node_name: cfg.name.clone(),
                    address: cfg.address,
                },
            )?;
            (serving.current(), Some(serving))
        }
    };
    let mut tls =
        herd_pki::tls::rotating_server_config(&cfg.kubelet_tls.client_ca_pem, current.clone())
            .map_err(|e| tls_error(&e))?;
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    let listener = kubelet_server::TlsListener::new(listener, Arc::new(tls), "kubelet port")
        .map_err(|source| NodeError::KubeletBind { addr, source })?;
    tracing::info!(node = %cfg.name, address = %cfg.address, kubelet_port, "kubelet server listening (HTTPS)");
    // Other nodes reach this node's pods through its kubelet port once it has a pod CIDR.
    let tunnels = tunnel::TunnelTargets::new(cfg.name.clone());
    let server = tokio::spawn({
        let router = kubelet_server::secured(kubelet_server::router(
            logs.clone(),
            tunnels.clone(),
            shutdown.clone(),
        ));
        let stop = shutdown.clone();
        async move {
            if let Err(error) = axum::serve(
                listener,
                router.into_make_service_with_connect_info::<kubelet_server::Peer>(),
            )
            .with_graceful_shutdown(stop.cancelled_owned())
            .await
            {
                tracing::error!(%error, "kubelet server failed");
            }
        }
    });
    // The serving certificate is asked for once the Node is registered: herd's csrapproving checks the
    // request's names against the Node's addresses.

    let result = run_agent(
        client,
        &cfg,
        kubelet_port,
        logs,
        (requested, tunnels),
        &shutdown,
    )
    .await;
    shutdown.cancel();
    if let Err(error) = server.await {
        tracing::error!(%error, "kubelet server task failed");
    }
    result
}

async fn run_agent(
    client: kube::Client,
    cfg: &NodeConfig,
    kubelet_port: u16,
    logs: ContainerLogs,
    (serving_rotation, tunnels): (
        Option<certificate_manager::ServingCertificate>,
        tunnel::TunnelTargets,
    ),
    shutdown: &CancellationToken,
) -> Result<(), NodeError> {
    // Compiled modules are cached on disk by image digest, so a second pod of an image starts at once.
    let runtime_config = RuntimeConfig {
        cache_dir: Some(cfg.data_dir.join("wasm-cache")),
        extra_root_certificates: cfg.trusted_ca_certificates.clone(),
    };
    let runtime = tokio::task::spawn_blocking(move || Runtime::with_config(runtime_config))
        .await
        .map_err(|e| RuntimeError::Engine(format!("runtime start-up panicked: {e}")))??;
    // Image pulls trust the same CAs: herd's embedded registry serves a certificate of the cluster CA.
    let fetcher = Fetcher::with_tls(
        cfg.data_dir.clone(),
        cfg.insecure_registries.clone(),
        herd_oci_fetch::TlsOptions {
            extra_root_certificates: cfg.trusted_ca_certificates.clone(),
            identity: None,
        },
    );
    let identity = NodeIdentity {
        name: cfg.name.clone(),
        address: cfg.address,
        kubelet_port,
        host: HostInfo::read(),
        ready_since: Timestamp::now(),
        max_pods: cfg.max_pods,
        local_volume_root: claim_volume::local_root(&cfg.data_dir),
    };
    let allocatable = NodeAllocatable {
        cpu_millis: i64::try_from(identity.host.cpus).unwrap_or(1) * 1000,
        memory_bytes: i64::try_from(identity.host.memory_kib).unwrap_or(0) * 1024,
        ephemeral_storage_bytes: 0,
    };
    if !register_with_retry(&client, &identity, shutdown).await {
        return Ok(());
    }
    let serving_manager = serving_rotation.map(|serving| {
        tokio::spawn(serving.rotate(
            client.clone(),
            cfg.kubelet_tls.approve_own_serving_csr,
            shutdown.clone(),
        ))
    });
    let (events, event_writer) = EventRecorder::start(client.clone(), &cfg.name, shutdown.clone());
    events.node_started(&cfg.name);
    let heartbeat = tokio::spawn(heartbeat::run(
        client.clone(),
        identity.clone(),
        cfg.lease_renew_interval,
        shutdown.clone(),
    ));

    let result = match registration::wait_for_pod_cidr(&client, &cfg.name, shutdown).await {
        Ok(Some(cidr)) => {
            tunnels.set_pod_cidr(cidr);
            let local_root = claim_volume::local_root(&cfg.data_dir);
            tokio::spawn(claim_volume::run_cleanup(
                client.clone(),
                cfg.name.clone(),
                local_root.clone(),
                shutdown.clone(),
            ));
            let ctx = Arc::new(NodeContext {
                claims: claim_volume::ClaimSource::new(client.clone(), local_root),
                config_objects: ConfigReflector::new(client.clone(), shutdown.clone()),
                tokens: service_account_token::TokenSource::new(client.clone()),
                services: service_env::ServiceEnv::start(client.clone(), shutdown.clone()),
                client,
                images: Images::new(
                    fetcher,
                    runtime,
                    NodeCredentials {
                        path: Some(
                            cfg.registry_config
                                .clone()
                                .unwrap_or_else(|| cfg.data_dir.join("config.json")),
                        ),
                    },
                ),
                logs,
                events,
                node_name: cfg.name.clone(),
                host_ip: cfg.address,
                crash_back_off: CrashBackOff {
                    base: cfg.crash_loop_back_off_base,
                },
                allocatable,
                connect_redirect: cfg.connect_redirect.clone(),
                cluster_names: cfg.cluster_names.clone(),
                local_readiness: cfg.local_readiness.clone(),
                status_writes: tokio::sync::Semaphore::new(pod_worker::STATUS_WRITES_IN_FLIGHT),
            });
            PodAgent::new(ctx, IpPool::new(cidr), shutdown.clone())
                .run()
                .await;
            Ok(())
        }
        Ok(None) => Ok(()),
        Err(e) => Err(e),
    };
    shutdown.cancel();
    if let Err(error) = heartbeat.await {
        tracing::error!(%error, "heartbeat task failed");
    }
    if let Err(error) = event_writer.await {
        tracing::error!(%error, "event writer task failed");
    }
    if let Some(manager) = serving_manager
        && let Err(error) = manager.await
    {
        tracing::error!(%error, "serving certificate manager failed");
    }
    result
}

/// Registers the node, retrying with back-off while the API server is not reachable or
/// refuses; `false` if `shutdown` came first.
async fn register_with_retry(
    client: &kube::Client,
    identity: &NodeIdentity,
    shutdown: &CancellationToken,
) -> bool {
    let mut back_off = Duration::from_millis(250);
    loop {
        match registration::register(client, identity).await {
            Ok(()) => return true,
            Err(error) => {
                tracing::warn!(node = %identity.name, %error, "registration failed, retrying")
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return false,
            () = tokio::time::sleep(back_off) => {}
        }
        back_off = (back_off * 2).min(REGISTER_RETRY_MAX);
    }
}
