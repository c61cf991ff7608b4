//! The kubelet's certificate manager (client-go's `certificate.Manager`): a node's client certificate and its
//! kubelet port's serving certificate, each renewed before it expires without restarting anything.
//!
//! - **Client** ([`ClientCertificate`]): a joined node's identity (`system:node:NAME` in `system:nodes`). The
//!   node's API clients ([`ClientCertificate::client`]) present whatever certificate is current at each new
//!   TLS handshake (`herd_pki::tls::CurrentCert` as rustls's client certificate resolver, under kube-rs's
//!   `ClientBuilder`); connections already made keep theirs. [`ClientCertificate::rotate`] renews it at a
//!   random moment in 70–90 % of its lifetime ([`IssuedCert::rotation_deadline`]) with a
//!   `kubernetes.io/kube-apiserver-client-kubelet` CSR made with a new key and filed with the current
//!   certificate (the control plane's csrapproving approves it for `selfnodeclient`), keeps it in
//!   `DATA/pki/kubelet-client-current.pem` (0600, atomically, and `kubelet.conf`) and makes it current.
//! - **Serving** ([`rotate_serving`]): the kubelet port's certificate from a `kubernetes.io/kubelet-serving`
//!   CSR for the node's name and address (herd's csrapproving approves a node's own names), kept in
//!   `DATA/pki/kubelet-server-current.pem`. Until one is issued the port serves a self-signed certificate, as
//!   the kubelet does, which the API server does not trust (`kubectl logs` fails until then).
//!
//! A failed renewal is logged and retried with back-off (2 s doubling to 5 minutes); the node keeps the
//! certificate it has meanwhile, until it expires.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use herd_pki::tls::CurrentCert;
use herd_pki::{CertificateRequest, IssuedCert, Kubeconfig};
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use kube::api::{Api, Patch, PatchParams};
use kube::client::ConfigExt as _;
use tokio_util::sync::CancellationToken;

use crate::NodeError;
use crate::bootstrap;

/// The kubelet's file holding its current serving certificate and key.
pub const SERVING_CERT_FILE: &str = "pki/kubelet-server-current.pem";
/// The signer of kubelet serving certificates.
pub const SERVING_SIGNER: &str = "kubernetes.io/kubelet-serving";

const BACK_OFF_FIRST: Duration = Duration::from_secs(2);
const BACK_OFF_MAX: Duration = Duration::from_secs(5 * 60);

fn credentials(message: impl std::fmt::Display) -> NodeError {
    NodeError::Credentials(message.to_string())
}

/// A kube client of the API server at `config.cluster_url` that trusts only `ca_pem` and presents, at each
/// new connection, the certificate `current` holds then. kube-rs's default stack (kube-client's
/// `ClientBuilder::try_from(Config)`) with its TLS replaced: hyper-util's client over a hyper-rustls
/// connector from our rustls config, the base URI and the config's extra headers (the user agent). The
/// config's own client identity and CA are not used.
///
/// # Errors
/// [`NodeError::Credentials`] for a CA that does not parse or headers kube-rs refuses.
pub fn rotating_client(
    config: &kube::Config,
    ca_pem: &str,
    current: Arc<CurrentCert>,
) -> Result<kube::Client, NodeError> {
    use tower::ServiceBuilder;
    let tls = herd_pki::tls::rotating_client_config(ca_pem, current).map_err(credentials)?;
    let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(config.connect_timeout);
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only()
        .enable_http1()
        .wrap_connector(http);
    let client: hyper_util::client::legacy::Client<_, kube::client::Body> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build(https);
    let service = ServiceBuilder::new()
        .layer(config.base_uri_layer())
        .layer(config.extra_headers_layer().map_err(credentials)?)
        .map_err(tower::BoxError::from)
        .service(client);
    Ok(kube::client::ClientBuilder::new(service, config.default_namespace.clone()).build())
}

/// A joined node's client certificate: current for every client made with [`ClientCertificate::client`],
/// renewed by [`ClientCertificate::rotate`].
#[derive(Clone)]
pub struct ClientCertificate {
    kubeconfig: Kubeconfig,
    current: Arc<CurrentCert>,
}

impl ClientCertificate {
    /// Starts with the certificate of `kubeconfig` (the node's `kubelet.conf` after a join).
    ///
    /// # Errors
    /// [`NodeError::Credentials`] for a certificate or key rustls cannot use.
    pub fn new(kubeconfig: Kubeconfig) -> Result<Self, NodeError> {
        let current = Arc::new(CurrentCert::new(&kubeconfig.client).map_err(credentials)?);
        Ok(Self {
            kubeconfig,
            current,
        })
    }

    /// The certificate current now and after each renewal (for other TLS clients of the node, such as its
    /// pod tunnels).
    #[must_use]
    pub fn current(&self) -> Arc<CurrentCert> {
        self.current.clone()
    }

    /// A client of the API server `config` names (its URL, headers, namespace) presenting the current
    /// certificate: see [`rotating_client`].
    ///
    /// # Errors
    /// As [`rotating_client`].
    pub fn client(&self, config: &kube::Config) -> Result<kube::Client, NodeError> {
        rotating_client(config, &self.kubeconfig.ca_pem, self.current.clone())
    }

    /// Renews the certificate before it expires, again and again, until `shutdown`; `client` should be one of
    /// [`ClientCertificate::client`]'s, so the CSR is filed as the node itself. `data_dir` is the node's (where
    /// the join stored its credentials).
    pub async fn rotate(
        self,
        client: kube::Client,
        node_name: String,
        data_dir: PathBuf,
        shutdown: CancellationToken,
    ) {
        let Self {
            mut kubeconfig,
            current,
        } = self;
        let mut cert = kubeconfig.client.clone();
        loop {
            let (client, name, dir, stored) = (&client, &node_name, &data_dir, &kubeconfig);
            let Some(new) =
                renew_at_deadline("client", &cert, false, &shutdown, move || async move {
                    let request = CertificateRequest::node(name).map_err(credentials)?;
                    let cert_pem =
                        bootstrap::request_certificate(client, &request.csr_pem, name).await?;
                    let new = IssuedCert {
                        cert_pem,
                        key_pem: request.key_pem,
                    };
                    let mut kubeconfig = stored.clone();
                    kubeconfig.client = new.clone();
                    bootstrap::store(dir, &kubeconfig)?;
                    Ok(new)
                })
                .await
            else {
                return;
            };
            kubeconfig.client = new.clone();
            if let Err(error) = current.set(&new) {
                tracing::error!(%error, "the renewed client certificate cannot be used");
                continue;
            }
            tracing::info!(
                node = %node_name,
                serial = %new.serial().unwrap_or_default(),
                expires = %new.not_after().map(|t| t.to_string()).unwrap_or_default(),
                "client certificate rotated: new connections present it"
            );
            cert = new;
        }
    }
}

/// Waits for `cert`'s rotation deadline (at once with `now`), then calls `renew` until it succeeds, backing
/// off after each failure; `None` when `shutdown` comes first.
async fn renew_at_deadline<F, Fut>(
    what: &str,
    cert: &IssuedCert,
    now: bool,
    shutdown: &CancellationToken,
    mut renew: F,
) -> Option<IssuedCert>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<IssuedCert, NodeError>>,
{
    let wait = if now {
        Duration::ZERO
    } else {
        match cert.rotation_deadline() {
            Ok(deadline) => {
                let wait = deadline - time_now();
                tracing::info!(%deadline, "{what} certificate rotation deadline");
                Duration::try_from(wait).unwrap_or(Duration::ZERO)
            }
            Err(error) => {
                tracing::warn!(%error, "{what} certificate: renewing at once");
                Duration::ZERO
            }
        }
    };
    tokio::select! {
        () = shutdown.cancelled() => return None,
        () = tokio::time::sleep(wait) => {}
    }
    let mut back_off = BACK_OFF_FIRST;
    loop {
        let attempt = tokio::select! {
            () = shutdown.cancelled() => return None,
            attempt = renew() => attempt,
        };
        match attempt {
            Ok(new) => return Some(new),
            Err(error) => {
                let expires = cert.not_after().map(|t| t.to_string()).unwrap_or_default();
                tracing::warn!(%error, retry_in = ?back_off, %expires,
                    "{what} certificate rotation failed; keeping the current certificate");
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return None,
            () = tokio::time::sleep(back_off) => {}
        }
        back_off = (back_off * 2).min(BACK_OFF_MAX);
    }
}

fn time_now() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc()
}

/// Whether a certificate is still valid now.
fn valid(cert: &IssuedCert) -> bool {
    cert.not_after().is_ok_and(|at| at > time_now())
}

/// The node's names and addresses its serving certificate covers: its name and its InternalIP.
#[derive(Clone, Debug)]
pub struct ServingNames {
    pub node_name: String,
    pub address: IpAddr,
}

impl ServingNames {
    fn dns_names(&self) -> Vec<String> {
        vec![self.node_name.clone()]
    }
}

/// The kubelet port's serving certificate, requested and renewed with kubelet-serving CSRs.
pub struct ServingCertificate {
    current: Arc<CurrentCert>,
    cert: IssuedCert,
    /// Whether `cert` is of the cluster CA (else self-signed: ask for one at once).
    issued: bool,
    names: ServingNames,
    data_dir: PathBuf,
}

impl ServingCertificate {
    /// The kubelet port's first certificate: the one an earlier run kept in
    /// `DATA/pki/kubelet-server-current.pem` while it is valid, else a new self-signed one, as the kubelet
    /// serves until its serving CSR is signed.
    ///
    /// # Errors
    /// A kept file that cannot be read, or a certificate that cannot be made or used.
    pub fn load_or_self_sign(data_dir: &Path, names: ServingNames) -> Result<Self, NodeError> {
        let (cert, issued) = match bootstrap::read_pem_pair(&data_dir.join(SERVING_CERT_FILE))? {
            Some(kept) if valid(&kept) => (kept, true),
            _ => {
                tracing::info!(
                    node = %names.node_name,
                    "no serving certificate of the cluster CA yet: the kubelet port serves a self-signed certificate until its kubelet-serving certificate signing request is signed"
                );
                let cert = herd_pki::self_signed_serving(
                    &names.node_name,
                    &names.dns_names(),
                    &[names.address],
                )
                .map_err(credentials)?;
                (cert, false)
            }
        };
        Ok(Self {
            current: Arc::new(CurrentCert::new(&cert).map_err(credentials)?),
            cert,
            issued,
            names,
            data_dir: data_dir.to_path_buf(),
        })
    }

    /// What the kubelet port's TLS server presents (see `herd_pki::tls::rotating_server_config`).
    #[must_use]
    pub fn current(&self) -> Arc<CurrentCert> {
        self.current.clone()
    }

    /// Requests the serving certificate and renews it before it expires, until `shutdown`: at once while
    /// the current one is self-signed, else at its rotation deadline. With `approve_own`, the node approves
    /// its own CSR when its credentials may (an administrator's kubeconfig, as an operator would with
    /// `kubectl certificate approve`); a node's own identity leaves that to the control plane's
    /// csrapproving.
    pub async fn rotate(
        self,
        client: kube::Client,
        approve_own: bool,
        shutdown: CancellationToken,
    ) {
        let Self {
            current,
            mut cert,
            mut issued,
            names,
            data_dir,
        } = self;
        let (client, shutdown, cert, issued) = (&client, &shutdown, &mut cert, &mut issued);
        let (names, data_dir) = (&names, &data_dir);
        loop {
            let (names_ref, dir) = (names, data_dir);
            let Some(new) =
                renew_at_deadline("serving", cert, !*issued, shutdown, move || async move {
                    let request = CertificateRequest::node_serving(
                        &names_ref.node_name,
                        &names_ref.dns_names(),
                        &[names_ref.address],
                    )
                    .map_err(credentials)?;
                    let cert_pem = bootstrap::request_certificate_of(
                        client,
                        &request.csr_pem,
                        SERVING_SIGNER,
                        &["digital signature", "server auth"],
                        &names_ref.node_name,
                        approve_own,
                    )
                    .await?;
                    let new = IssuedCert {
                        cert_pem,
                        key_pem: request.key_pem,
                    };
                    bootstrap::write_pem_pair(&dir.join(SERVING_CERT_FILE), &new)?;
                    Ok(new)
                })
                .await
            else {
                return;
            };
            if let Err(error) = current.set(&new) {
                tracing::error!(%error, "the new serving certificate cannot be used");
                continue;
            }
            tracing::info!(
                node = %names.node_name,
                serial = %new.serial().unwrap_or_default(),
                expires = %new.not_after().map(|t| t.to_string()).unwrap_or_default(),
                "kubelet serving certificate of the cluster CA in use"
            );
            *cert = new;
            *issued = true;
        }
    }
}

/// Approves CSR `name` (the `approval` subresource), as `kubectl certificate approve` does; a refusal is only
/// logged (the CSR then waits for someone else).
pub(crate) async fn approve(client: &kube::Client, name: &str) {
    let csrs: Api<CertificateSigningRequest> = Api::all(client.clone());
    let now = jiff::Timestamp::now().to_string();
    let patch = serde_json::json!({"status": {"conditions": [{
        "type": "Approved", "status": "True", "reason": "KubeletSelfApproved",
        "message": "This CSR was approved by the node's own administrator credentials (herd node --kubeconfig).",
        "lastUpdateTime": now,
    }]}});
    match csrs
        .patch_approval(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => tracing::info!(csr = %name, "approved the node's own serving certificate request"),
        Err(error) => {
            tracing::info!(csr = %name, %error, "cannot approve the serving certificate request: waiting for it to be approved")
        }
    }
}
