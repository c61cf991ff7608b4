//! The herd control plane: the Kubernetes API server over an embedded SQLite store, the scheduler and the
//! controllers.
//!
//! ```no_run
//! # async fn demo() -> Result<(), herd_control::ControlError> {
//! let shutdown = tokio_util::sync::CancellationToken::new();
//! let cfg = herd_control::ControlConfig::new("/tmp/herd".into(), "127.0.0.1:0".parse().unwrap());
//! let plane = herd_control::ControlPlane::start(cfg, shutdown.clone()).await?;
//! println!("API at http://{}", plane.addr());
//! shutdown.cancel();
//! plane.wait().await
//! # }
//! ```

mod apiserver_leases;
mod apiserver_service;
pub mod bootstrap_tokens;
pub mod clock;
pub mod cluster_info;
pub mod controllers;
pub mod encryption;
pub mod error;
mod etcd;
pub mod events;
pub mod leader_election;
mod node_ports;
pub mod objects;
pub mod scheduler;
pub mod server;
mod service_ips;
pub mod shared_pki;
mod storage;
mod store;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use herd_api::resources;
use herd_pki::ClusterCa;
use ipnet::{IpNet, Ipv4Net};
use serde_json::json;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use clock::Clock;
pub use controllers::nodelifecycle::NodeLifecycleConfig;
pub use error::ApiError;
pub use etcd::EtcdConfig;
pub use etcd::import::{ImportError, Imported};
pub use leader_election::LeaderElection;
pub use node_ports::parse_range as parse_node_port_range;
use objects::{Objects, Settings};
use storage::StoreError;
pub use store::StoreSync;

/// Namespaces every cluster has.
const SYSTEM_NAMESPACES: [&str; 4] = ["default", "kube-system", "kube-public", "kube-node-lease"];

#[derive(Debug, Clone)]
pub struct ControlConfig {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    /// Where Service cluster IPs come from.
    pub service_cidr: IpNet,
    /// Where Service NodePorts come from (`--service-node-port-range`; kube's default 30000-32767).
    pub service_node_port_range: std::ops::RangeInclusive<u16>,
    /// Where node pod CIDRs come from.
    pub cluster_cidr: Ipv4Net,
    /// Prefix length of each node's pod CIDR.
    pub node_cidr_prefix: u8,
    /// Node lease monitoring and eviction timings.
    pub node_lifecycle: NodeLifecycleConfig,
    /// The first back-off before a Job's failed pod is replaced (doubling per failure, at most 6 min);
    /// kube's `DefaultJobPodFailureBackOff`, 10 s.
    pub job_backoff_base: Duration,
    /// When the store's commits reach the disk.
    pub store_sync: StoreSync,
    /// Where objects are stored: the data dir's SQLite file, or etcd (`--store`).
    pub store: StoreBackend,
    /// How often the controllers reconcile every object without a change (they follow changes as they
    /// happen; this only repairs what was missed).
    pub controller_resync: Duration,
    /// Names and addresses the serving certificate covers besides `localhost`, the loopback and listen
    /// addresses, the host's name, the first Service IP and the `kubernetes.default.svc` names (k3s's
    /// `--tls-san`): what clients on other hosts call the server.
    pub tls_sans: Vec<String>,
    /// kube-apiserver's `--encryption-provider-config`: an `EncryptionConfiguration` file saying which
    /// resources are encrypted at rest, and how. `None`: everything is stored as it is (identity).
    pub encryption_provider_config: Option<PathBuf>,
    /// Pod Security admission's defaults for namespaces without labels and its exemptions (kube-apiserver's
    /// `--admission-control-config-file`); herd's default enforces `baseline` and exempts `kube-system`.
    pub pod_security: herd_api::pod_security::AdmissionConfig,
    /// The address other hosts and pods reach the API server at (kube-apiserver's `--advertise-address`):
    /// what the `kubernetes` Service's endpoints name. Default: the listen address, or the loopback
    /// address when it listens on every address.
    pub advertise_address: Option<IpAddr>,
    /// How long the certificates the CSR signer issues live (kube-controller-manager's
    /// `--cluster-signing-duration`, a year by default), capped by a CSR's `spec.expirationSeconds`.
    pub cluster_signing_duration: Duration,
    /// Whether the controllers and the scheduler run only while this replica holds their Leases
    /// (kube-controller-manager's and kube-scheduler's `--leader-elect*`), so that of several control
    /// planes on one store exactly one runs each.
    pub leader_election: LeaderElection,
    /// The clock the CronJob controller schedules by: the system's, or a manual one a test moves.
    pub clock: Clock,
}

/// Where the control plane stores objects (`--store`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum StoreBackend {
    /// `herd.db` in the data dir (embedded SQLite): the default.
    #[default]
    Sqlite,
    /// etcd's v3 API under a key prefix, as kube-apiserver stores; any number of control planes may share
    /// it. A data dir's `herd.db` is imported into an empty prefix at start.
    Etcd(EtcdConfig),
}

/// The default prefix length of a node's pod CIDR: /18, 16,382 pod IPs, room for the node's default
/// 10,000 pods.
pub const DEFAULT_NODE_CIDR_PREFIX: u8 = 18;

/// The API server's user name when it calls kubelets (kubeadm's `apiserver-kubelet-client`, in
/// `system:masters`): the kubelet port allows it.
pub const KUBELET_CLIENT_USER: &str = "kube-apiserver-kubelet-client";

impl ControlConfig {
    /// Defaults that need no root: every address lies in 127.0.0.0/8.
    pub fn new(data_dir: PathBuf, listen: SocketAddr) -> Self {
        Self {
            data_dir,
            listen,
            service_cidr: "127.10.0.0/16".parse().expect("valid default service CIDR"),
            service_node_port_range: node_ports::DEFAULT_RANGE,
            cluster_cidr: "127.64.0.0/10".parse().expect("valid default cluster CIDR"),
            node_cidr_prefix: DEFAULT_NODE_CIDR_PREFIX,
            node_lifecycle: NodeLifecycleConfig::default(),
            job_backoff_base: Duration::from_secs(10),
            store_sync: StoreSync::default(),
            store: StoreBackend::Sqlite,
            controller_resync: controllers::DEFAULT_RESYNC,
            tls_sans: Vec::new(),
            encryption_provider_config: None,
            pod_security: herd_api::pod_security::AdmissionConfig::default(),
            advertise_address: None,
            cluster_signing_duration: herd_pki::CLIENT_VALIDITY,
            leader_election: LeaderElection::default(),
            clock: Clock::system(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("creating data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    /// (Its text includes the store's error, which is therefore not its `source`: `{:#}` would say it
    /// twice.)
    #[error("opening the store: {0}")]
    Store(StoreError),
    #[error("listening on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("bootstrapping {what}: {source}")]
    Bootstrap { what: String, source: ApiError },
    #[error("serving the API: {0}")]
    Serve(std::io::Error),
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("the cluster PKI: {0}")]
    Pki(#[from] herd_pki::PkiError),
    #[error(transparent)]
    SharedPki(#[from] shared_pki::SharedPkiError),
    #[error(transparent)]
    Encryption(#[from] encryption::ConfigError),
    #[error(transparent)]
    Import(#[from] ImportError),
}

impl From<StoreError> for ControlError {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

/// A running control plane.
pub struct ControlPlane {
    addr: SocketAddr,
    ca: Arc<ClusterCa>,
    objects: Objects,
    server: JoinHandle<std::io::Result<()>>,
    tasks: Vec<JoinHandle<()>>,
}

impl ControlPlane {
    /// Opens the store, bootstraps the system namespaces, binds the API listener and starts the scheduler and
    /// controllers. Everything stops when `shutdown` is cancelled; then call [`ControlPlane::wait`].
    ///
    /// # Errors
    /// When the data dir, store or listener cannot be set up.
    pub async fn start(
        cfg: ControlConfig,
        shutdown: CancellationToken,
    ) -> Result<Self, ControlError> {
        if cfg.node_cidr_prefix < cfg.cluster_cidr.prefix_len() || cfg.node_cidr_prefix > 30 {
            return Err(ControlError::Config(format!(
                "node CIDR prefix /{} does not fit in cluster CIDR {}",
                cfg.node_cidr_prefix, cfg.cluster_cidr
            )));
        }
        if cfg.leader_election.enabled {
            cfg.leader_election
                .validate()
                .map_err(|e| ControlError::Config(format!("leader election: {e}")))?;
        }
        std::fs::create_dir_all(&cfg.data_dir).map_err(|source| ControlError::DataDir {
            path: cfg.data_dir.clone(),
            source,
        })?;
        let encryption = match &cfg.encryption_provider_config {
            Some(path) => encryption::Encryption::load(path)?,
            None => encryption::Encryption::default(),
        };
        let encryption = Arc::new(encryption);
        let settings = Settings {
            service_cidr: cfg.service_cidr,
            service_node_port_range: cfg.service_node_port_range.clone(),
            pod_security: cfg.pod_security.clone(),
        };
        let objects = match &cfg.store {
            StoreBackend::Sqlite => {
                Objects::open_encrypted(
                    &cfg.data_dir.join("herd.db"),
                    cfg.store_sync,
                    settings,
                    encryption,
                )
                .await?
            }
            StoreBackend::Etcd(etcd) => {
                let store = etcd::EtcdStore::connect(
                    etcd,
                    encryption.clone(),
                    Some(etcd::COMPACTION_INTERVAL),
                )
                .await?;
                if let Err(e) = etcd::import::import_sqlite(&cfg.data_dir, &store, encryption).await
                {
                    store.close().await;
                    return Err(e.into());
                }
                Objects::over(Arc::new(store), settings)
            }
        };
        bootstrap(&objects).await?;
        bootstrap_policy(&objects).await?;
        // One CA and ServiceAccount key for every replica: published to the store, or adopted from it.
        let (ca, token_key) = shared_pki::load(&objects, &cfg.data_dir).await?;
        let ca = Arc::new(ca);
        // A cluster whose Services got their IPs before IPAddress objects gets those first, so no new
        // Service is given a taken IP.
        // Likewise the NodePorts of Services from before their records (a first pass frees nothing).
        if let Err(e) = objects
            .as_manager(objects::KUBE_APISERVER)
            .repair_node_ports(&mut Default::default())
            .await
        {
            tracing::warn!(error = %e, "recording the NodePorts of existing Services");
        }
        if let Err(e) = service_ips::backfill(
            &objects.as_manager(objects::KUBE_APISERVER),
            cfg.service_cidr,
        )
        .await
        {
            tracing::warn!(error = %e, "creating the IPAddresses of existing Services");
        }
        let listener = tokio::net::TcpListener::bind(cfg.listen)
            .await
            .map_err(|source| ControlError::Listen {
                addr: cfg.listen,
                source,
            })?;
        let addr = listener
            .local_addr()
            .map_err(|source| ControlError::Listen {
                addr: cfg.listen,
                source,
            })?;
        let serving = serving_certificate(&ca, &cfg, addr)?;
        let mut tls = herd_pki::tls::server_config(ca.cert_pem(), &serving)?;
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        let listener = server::tls::TlsListener::new(listener, Arc::new(tls), "API server")
            .map_err(|source| ControlError::Listen {
                addr: cfg.listen,
                source,
            })?;
        // The API server's client of kubelets (kubeadm's apiserver-kubelet-client.crt): issued from the CA at
        // every start; it trusts only the cluster CA and presents this identity to the kubelet port.
        let kubelet_client = ca.issue_client(
            KUBELET_CLIENT_USER,
            &[herd_pki::MASTERS_GROUP],
            herd_pki::CLIENT_VALIDITY,
        )?;
        let mut kubelet_tls = herd_pki::tls::client_config(ca.cert_pem(), Some(&kubelet_client))?;
        kubelet_tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .use_preconfigured_tls(kubelet_tls)
            .build()
            .map_err(|e| ControlError::Config(format!("HTTP client: {e}")))?;
        // One set of informer caches for the controllers and the authorizers.
        let caches = Arc::new(controllers::informer::Informers::new(objects.clone()));
        let authorizer = Arc::new(server::authz::Authorizer::new(caches.clone()));
        let state = server::AppState {
            objects: objects.clone(),
            shutdown: shutdown.clone(),
            http,
            authorizer: authorizer.clone(),
            bootstrap_tokens: Arc::new(bootstrap_tokens::BootstrapTokens::new(caches.clone())),
            tokens: Arc::new(server::tokens::Tokens::new(token_key, caches.clone())),
        };
        let server = tokio::spawn(server::serve(listener, state));
        let advertise = SocketAddr::new(
            cfg.advertise_address.unwrap_or(match addr.ip() {
                ip if ip.is_unspecified() => IpAddr::from([127, 0, 0, 1]),
                ip => ip,
            }),
            addr.port(),
        );
        if let Some(first) = cfg.service_cidr.hosts().next()
            && let Err(e) = apiserver_service::reconcile(
                &objects.as_manager(objects::KUBE_APISERVER),
                &first.to_string(),
                advertise,
            )
            .await
        {
            tracing::warn!("the kubernetes Service: {e}");
        }
        // This replica's identity (kube's `<hostname>_<uuid>`): its Leases' holder.
        let identity = leader_election::new_identity();
        let apiserver_lease = apiserver_leases::ApiServerLease::new(
            objects.as_manager(objects::KUBE_APISERVER),
            &identity,
            advertise,
        );
        if let Err(e) = apiserver_lease.renew_and_reconcile().await {
            tracing::warn!("the kubernetes Endpoints: {e}");
        }
        let advertise_url = format!("https://{advertise}");
        if let Err(e) = cluster_info::reconcile(
            &objects.as_manager(objects::KUBE_APISERVER),
            &advertise_url,
            ca.cert_pem(),
        )
        .await
        {
            tracing::warn!("the cluster-info ConfigMap: {e}");
        }
        // Every replica keeps the shared caches current (the authorizers read them) and its own API server
        // Lease, which puts it in the `kubernetes` Endpoints.
        let mut tasks = vec![controllers::spawn_cache_feeder(
            caches.clone(),
            cfg.controller_resync,
            &shutdown,
        )];
        tasks.push(tokio::spawn(apiserver_lease.run(shutdown.clone())));
        // In-process writers record their managedFields under kube's component names.
        let controller_manager = {
            let (objects, caches, cfg, ca) =
                (objects.clone(), caches.clone(), cfg.clone(), ca.clone());
            move |leading: CancellationToken| {
                let kcm = objects.as_manager(objects::KUBE_CONTROLLER_MANAGER);
                let mut tasks =
                    controllers::spawn_all(&kcm, caches.clone(), &cfg, ca.cert_pem(), &leading);
                tasks.extend(controllers::spawn_node_join(
                    &kcm,
                    &caches,
                    authorizer.clone(),
                    ca.clone(),
                    cfg.cluster_signing_duration,
                    cfg.controller_resync,
                    &leading,
                ));
                tasks.push(tokio::spawn(node_ports::run_repair(
                    kcm.clone(),
                    cfg.controller_resync,
                    leading.clone(),
                )));
                tasks.push(tokio::spawn(service_ips::run_repair(
                    kcm,
                    cfg.service_cidr,
                    cfg.controller_resync,
                    leading,
                )));
                tasks
            }
        };
        let scheduler = {
            let objects = objects.as_manager(objects::KUBE_SCHEDULER);
            move |leading: CancellationToken| {
                vec![tokio::spawn(scheduler::run(objects.clone(), leading))]
            }
        };
        if cfg.leader_election.enabled {
            let elector = |manager: &'static str, source: &'static str| {
                leader_election::Elector::new(
                    objects.as_manager(manager),
                    manager,
                    source,
                    identity.clone(),
                    cfg.leader_election,
                )
            };
            tasks.push(tokio::spawn(
                elector(objects::KUBE_CONTROLLER_MANAGER, "kube-controller-manager")
                    .run(shutdown.clone(), controller_manager),
            ));
            tasks.push(tokio::spawn(
                elector(objects::KUBE_SCHEDULER, "default-scheduler")
                    .run(shutdown.clone(), scheduler),
            ));
        } else {
            tasks.extend(controller_manager(shutdown.clone()));
            tasks.extend(scheduler(shutdown.clone()));
        }
        tasks.push(tokio::spawn(upkeep(objects.clone(), shutdown)));
        tracing::info!(%addr, data_dir = %cfg.data_dir.display(), "control plane started");
        Ok(Self {
            addr,
            ca,
            objects: objects.clone(),
            server,
            tasks,
        })
    }

    /// The address the API server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The API server's URL for a client on this host: `https://` and the listen address (the loopback
    /// address when it listens on every address).
    pub fn url(&self) -> String {
        let ip = match self.addr.ip() {
            ip if ip.is_unspecified() => IpAddr::from([127, 0, 0, 1]),
            ip => ip,
        };
        format!("https://{}", SocketAddr::new(ip, self.addr.port()))
    }

    /// The cluster CA (created in the data dir at first start): it signed the serving certificate and
    /// signs the client certificates the API server accepts.
    pub fn ca(&self) -> &Arc<ClusterCa> {
        &self.ca
    }

    /// A kubeconfig for this server ([`ControlPlane::url`]) as `user` in `group`, with a new client
    /// certificate from the cluster CA (valid a year); cluster and context are named `herd`, the user
    /// entry after the user.
    ///
    /// # Errors
    /// [`herd_pki::PkiError`] if the certificate cannot be issued.
    pub fn kubeconfig(
        &self,
        user: &str,
        group: Option<&str>,
    ) -> Result<herd_pki::Kubeconfig, herd_pki::PkiError> {
        let groups: Vec<&str> = group.into_iter().collect();
        let client = self
            .ca
            .issue_client(user, &groups, herd_pki::CLIENT_VALIDITY)?;
        Ok(herd_pki::Kubeconfig {
            server: self.url(),
            cluster_name: "herd".to_string(),
            user_name: user.to_string(),
            context_name: "herd".to_string(),
            namespace: None,
            ca_pem: self.ca.cert_pem().to_string(),
            client,
        })
    }

    /// Waits for the API server and every task to stop (after the shutdown token was cancelled).
    pub async fn wait(self) -> Result<(), ControlError> {
        let served = self.server.await;
        for task in self.tasks {
            let _ = task.await;
        }
        self.objects.close().await;
        match served {
            Ok(result) => result.map_err(ControlError::Serve),
            Err(join) => Err(ControlError::Serve(std::io::Error::other(join))),
        }
    }
}

/// kube-apiserver's serving certificate, issued afresh at each start for the addresses it listens on now.
fn serving_certificate(
    ca: &ClusterCa,
    cfg: &ControlConfig,
    addr: SocketAddr,
) -> Result<herd_pki::IssuedCert, herd_pki::PkiError> {
    let mut ips = vec![addr.ip()];
    let mut names = Vec::new();
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    if !hostname.trim().is_empty() {
        names.push(hostname.trim().to_ascii_lowercase());
    }
    for san in &cfg.tls_sans {
        match san.parse::<IpAddr>() {
            Ok(ip) => ips.push(ip),
            Err(_) => names.push(san.clone()),
        }
    }
    let first_service_ip = cfg.service_cidr.hosts().next();
    let sans = herd_pki::serving_sans(&ips, first_service_ip, &names);
    ca.issue_serving("kube-apiserver", &sans, herd_pki::SERVING_VALIDITY)
}

/// kube-apiserver's RBAC bootstrap: the default ClusterRoles and ClusterRoleBindings created when absent and
/// reconciled when present (missing rules, aggregation selectors and subjects added, what users added
/// kept, objects annotated `rbac.authorization.kubernetes.io/autoupdate: "false"` left alone).
async fn bootstrap_policy(objects: &Objects) -> Result<(), ControlError> {
    use herd_authz::bootstrap;
    let rbac = |plural| {
        resources::by_path("rbac.authorization.k8s.io", "v1", plural)
            .expect("the RBAC kinds are in the table")
    };
    let objects = objects.as_manager(objects::KUBE_APISERVER);
    for expected in bootstrap::cluster_roles() {
        let name = expected.metadata.name.clone().unwrap_or_default();
        let existing = stored(&objects, rbac("clusterroles"), &name).await?;
        let reconciled = herd_authz::reconcile_cluster_role(existing.as_ref(), &expected, false);
        if reconciled.needs_write() {
            write_policy(
                &objects,
                rbac("clusterroles"),
                &name,
                reconciled.operation,
                &reconciled.object,
            )
            .await?;
        }
    }
    for expected in bootstrap::cluster_role_bindings() {
        let name = expected.metadata.name.clone().unwrap_or_default();
        let existing = stored(&objects, rbac("clusterrolebindings"), &name).await?;
        let reconciled =
            herd_authz::reconcile_cluster_role_binding(existing.as_ref(), &expected, false);
        if reconciled.needs_write() {
            write_policy(
                &objects,
                rbac("clusterrolebindings"),
                &name,
                reconciled.operation,
                &reconciled.object,
            )
            .await?;
        }
    }
    Ok(())
}

/// The stored cluster-scoped object `name` of `res`, decoded.
async fn stored<T: serde::de::DeserializeOwned>(
    objects: &Objects,
    res: &'static herd_api::ResourceInfo,
    name: &str,
) -> Result<Option<T>, ControlError> {
    let bootstrap = |source| ControlError::Bootstrap {
        what: format!("{} {name}", res.plural),
        source,
    };
    let Some(value) = objects.find(res, "", name).await.map_err(bootstrap)? else {
        return Ok(None);
    };
    serde_json::from_value(value)
        .map(Some)
        .map_err(|e| bootstrap(ApiError::Internal(e.to_string())))
}

/// Writes a reconciled default policy object as the reconciliation says.
async fn write_policy<T: serde::Serialize>(
    objects: &Objects,
    res: &'static herd_api::ResourceInfo,
    name: &str,
    operation: herd_authz::Operation,
    object: &T,
) -> Result<(), ControlError> {
    let bootstrap = |source| ControlError::Bootstrap {
        what: format!("{} {name}", res.plural),
        source,
    };
    let mut value =
        serde_json::to_value(object).map_err(|e| bootstrap(ApiError::Internal(e.to_string())))?;
    value["apiVersion"] = json!(res.api_version());
    value["kind"] = json!(res.kind);
    match operation {
        herd_authz::Operation::None => Ok(()),
        herd_authz::Operation::Create => match objects.create(res, None, value, false).await {
            Ok(_) | Err(ApiError::AlreadyExists { .. }) => Ok(()),
            Err(e) => Err(bootstrap(e)),
        },
        herd_authz::Operation::Update => objects
            .edit(res, "", name, move |stored| {
                *stored = value;
                true
            })
            .await
            .map(|_| ())
            .map_err(bootstrap),
        herd_authz::Operation::Recreate => {
            match objects
                .delete(res, None, name, objects::DeleteOptions::default())
                .await
            {
                Ok(_) | Err(ApiError::NotFound { .. }) => {}
                Err(e) => return Err(bootstrap(e)),
            }
            objects
                .create(res, None, value, false)
                .await
                .map(|_| ())
                .map_err(bootstrap)
        }
    }
}

async fn bootstrap(objects: &Objects) -> Result<(), ControlError> {
    let namespaces =
        resources::by_path("", "v1", "namespaces").expect("namespaces are in the table");
    for ns in SYSTEM_NAMESPACES {
        let obj = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
        match objects.create(namespaces, None, obj, false).await {
            Ok(_) | Err(ApiError::AlreadyExists { .. }) => {}
            Err(source) => {
                return Err(ControlError::Bootstrap {
                    what: format!("namespace {ns}"),
                    source,
                });
            }
        }
    }
    // The default StorageClass, when absent (a deleted one comes back at the next start, as an addon).
    let classes = resources::by_path("storage.k8s.io", "v1", "storageclasses")
        .expect("storageclasses are in the table");
    let class = herd_api::volumes::default_storage_class();
    match objects.create(classes, None, class, false).await {
        Ok(_) | Err(ApiError::AlreadyExists { .. }) => {}
        Err(source) => {
            return Err(ControlError::Bootstrap {
                what: "the default StorageClass".into(),
                source,
            });
        }
    }
    Ok(())
}

/// How long Events are kept (kube-apiserver's default `--event-ttl`).
const EVENT_TTL: Duration = Duration::from_secs(3600);

/// Periodic upkeep: compacts the change log and expires old Events.
async fn upkeep(objects: Objects, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(Duration::from_secs(60)) => {
                if let Err(e) = objects.compact().await {
                    tracing::warn!(error = %e, "compacting the change log failed");
                }
                if let Err(e) = expire_events(&objects).await {
                    tracing::warn!(error = %e, "expiring events failed");
                }
            }
        }
    }
}

async fn expire_events(objects: &Objects) -> Result<(), ApiError> {
    let events = resources::by_path("", "v1", "events").expect("events are in the table");
    let cutoff =
        jiff::Timestamp::now() - jiff::SignedDuration::try_from(EVENT_TTL).unwrap_or_default();
    let (items, _) = objects.list_all(events, None).await?;
    for ev in items {
        let last = ev["lastTimestamp"].as_str().or(ev
            .pointer("/metadata/creationTimestamp")
            .and_then(|v| v.as_str()));
        let old = last
            .and_then(|t| t.parse::<jiff::Timestamp>().ok())
            .is_some_and(|t| t < cutoff);
        if !old {
            continue;
        }
        let ns = ev.pointer("/metadata/namespace").and_then(|v| v.as_str());
        if let Some(name) = ev.pointer("/metadata/name").and_then(|v| v.as_str()) {
            match objects
                .delete(events, ns, name, objects::DeleteOptions::default())
                .await
            {
                Ok(_) | Err(ApiError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}
