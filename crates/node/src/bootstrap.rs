//! Joining a cluster with a bootstrap token, as `kubeadm join` and the kubelet's TLS bootstrap do:
//!
//! 1. **Discovery** (kubeadm's token discovery): `kube-public/cluster-info` is fetched anonymously over TLS
//!    *without* trusting the server; its `kubeconfig` is believed only if the bootstrap signer's
//!    `jws-kubeconfig-<token id>` verifies with the token, and its CA only if it has the pinned
//!    `sha256:` hash (unless the caller chose kubeadm's `--discovery-token-unsafe-skip-ca-verification`).
//! 2. **TLS bootstrap** (the kubelet's): a new key made here (it never leaves the node) and a CSR for
//!    `system:node:NAME` in `system:nodes` (signer `kubernetes.io/kube-apiserver-client-kubelet`) filed with
//!    the bootstrap token against the verified CA; the control plane approves and signs it.
//! 3. The key and certificate are kept as the kubelet keeps them, `DATA/pki/kubelet-client-current.pem`
//!    (mode 0600, through `herd-atomic-file`), with a kubeconfig naming them, `DATA/kubelet.conf`.
//!
//! A later start finds `kubelet.conf` with a certificate still valid and needs no token.

use std::path::{Path, PathBuf};
use std::time::Duration;

use herd_pki::{BootstrapToken, CaCertHash, CertificateRequest, IssuedCert, Kubeconfig};
use k8s_openapi::ByteString;
use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestSpec,
};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, PostParams};

use crate::NodeError;

/// The kubelet's file holding its current client certificate and key.
pub const CLIENT_CERT_FILE: &str = "pki/kubelet-client-current.pem";
/// The node's kubeconfig (the kubelet's `--kubeconfig`).
pub const KUBECONFIG_FILE: &str = "kubelet.conf";
/// The signer of node client certificates.
pub const CLIENT_SIGNER: &str = "kubernetes.io/kube-apiserver-client-kubelet";

/// How to join.
#[derive(Clone, Debug)]
pub struct JoinConfig {
    /// `https://HOST:PORT` of the API server.
    pub server: String,
    pub token: BootstrapToken,
    /// The CA pin; `None` only with kubeadm's unsafe skip.
    pub ca_cert_hash: Option<CaCertHash>,
    pub node_name: String,
    pub data_dir: PathBuf,
}

fn join_error(message: impl std::fmt::Display) -> NodeError {
    NodeError::Credentials(message.to_string())
}

/// The node's kubeconfig from an earlier join, if its certificate is still valid.
///
/// # Errors
/// A kubeconfig that is there but unreadable.
pub fn existing(data_dir: &Path) -> Result<Option<Kubeconfig>, NodeError> {
    let path = data_dir.join(KUBECONFIG_FILE);
    if !path.exists() {
        return Ok(None);
    }
    let mut kubeconfig = Kubeconfig::read(&path).map_err(join_error)?;
    // The certificate manager may have renewed the certificate since the kubeconfig was written.
    if let Some(current) = read_current(data_dir)? {
        kubeconfig.client = current;
    }
    let now = jiff::Timestamp::now().as_second();
    let valid = kubeconfig
        .client
        .not_after()
        .is_ok_and(|at| at.unix_timestamp() > now);
    Ok(valid.then_some(kubeconfig))
}

/// Reads `kubelet-client-current.pem` (certificate and key in one file).
///
/// # Errors
/// A file that is there but unreadable.
pub fn read_current(data_dir: &Path) -> Result<Option<IssuedCert>, NodeError> {
    read_pem_pair(&data_dir.join(CLIENT_CERT_FILE))
}

/// Reads a certificate and its key kept in one PEM file, as the kubelet keeps its `*-current.pem`.
///
/// # Errors
/// A file that is there but unreadable, or holds no certificate and key.
pub fn read_pem_pair(path: &Path) -> Result<Option<IssuedCert>, NodeError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(join_error(format!("{}: {e}", path.display()))),
    };
    let cert_end = text.find("-----END CERTIFICATE-----");
    let key_start = text.find("-----BEGIN");
    match (cert_end, text.rfind("-----BEGIN")) {
        (Some(end), Some(key)) if key_start.is_some() && key > end => Ok(Some(IssuedCert {
            cert_pem: text[..end + "-----END CERTIFICATE-----".len()]
                .trim()
                .to_string()
                + "\n",
            key_pem: text[key..].to_string(),
        })),
        _ => Err(join_error(format!(
            "{} holds no certificate and key",
            path.display()
        ))),
    }
}

/// Writes a certificate and its key to one PEM file, mode 0600, atomically (its directory 0700).
///
/// # Errors
/// A file that cannot be written.
pub fn write_pem_pair(path: &Path, cert: &IssuedCert) -> Result<(), NodeError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| join_error(format!("{}: {e}", dir.display())))?;
        let _ = std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o700));
    }
    let both = format!("{}{}", cert.cert_pem, cert.key_pem);
    herd_atomic_file::write_private(path, both.as_bytes())
        .map_err(|e| join_error(format!("{}: {e}", path.display())))
}

/// Writes `kubelet-client-current.pem` (0600) and the kubeconfig naming it.
///
/// # Errors
/// A file that cannot be written.
pub fn store(data_dir: &Path, kubeconfig: &Kubeconfig) -> Result<(), NodeError> {
    write_pem_pair(&data_dir.join(CLIENT_CERT_FILE), &kubeconfig.client)?;
    kubeconfig
        .write(&data_dir.join(KUBECONFIG_FILE))
        .map_err(join_error)
}

/// How long discovery waits for cluster-info to be signed for the token (kubeadm waits up to its discovery
/// timeout, 5 min; a token `herd token create` made is signed within milliseconds).
const SIGNATURE_WAIT: std::time::Duration = std::time::Duration::from_secs(30);
/// How often discovery reads cluster-info again meanwhile.
const SIGNATURE_RETRY: std::time::Duration = std::time::Duration::from_millis(200);

/// kubeadm's token discovery: the server URL and CA the cluster-info ConfigMap names, verified.
///
/// # Errors
/// One line saying what did not verify, or why cluster-info could not be read.
pub async fn discover(cfg: &JoinConfig) -> Result<(String, String), NodeError> {
    let uri: axum::http::Uri = cfg
        .server
        .parse()
        .map_err(|e| join_error(format!("--server {}: {e}", cfg.server)))?;
    let mut client_config = kube::Config::new(uri);
    // Not trusted yet: what comes back is checked below, by the token's signature and the CA pin.
    client_config.accept_invalid_certs = true;
    let client = kube::Client::try_from(client_config).map_err(join_error)?;
    let maps: Api<ConfigMap> = Api::namespaced(client, "kube-public");
    let signature_key = format!("jws-kubeconfig-{}", cfg.token.id);
    // A token made a moment ago is signed into cluster-info by the bootstrapsigner controller a moment
    // later: as kubeadm join, read again until the signature is there or the wait is over.
    let deadline = tokio::time::Instant::now() + SIGNATURE_WAIT;
    let data = loop {
        let info = maps
            .get("cluster-info")
            .await
            .map_err(|e| join_error(format!("reading cluster-info from {}: {e}", cfg.server)))?;
        let data = info.data.unwrap_or_default();
        if data.contains_key(&signature_key) || tokio::time::Instant::now() >= deadline {
            break data;
        }
        tokio::time::sleep(SIGNATURE_RETRY).await;
    };
    let kubeconfig = data
        .get("kubeconfig")
        .ok_or_else(|| join_error("cluster-info holds no kubeconfig"))?;
    let signature = data.get(&signature_key).ok_or_else(|| {
        join_error(format!(
            "there is no JWS signed token in the cluster-info ConfigMap for token ID {:?}: the token is unknown, expired or not for signing",
            cfg.token.id
        ))
    })?;
    if !herd_pki::bootstrap_token::verify_detached_jws(signature, kubeconfig, &cfg.token) {
        return Err(join_error(format!(
            "failed to verify JWS signature of the cluster-info kubeconfig for token ID {:?}",
            cfg.token.id
        )));
    }
    let parsed: serde_yaml::Value = serde_yaml::from_str(kubeconfig).map_err(join_error)?;
    let cluster = &parsed["clusters"][0]["cluster"];
    let server = cluster["server"]
        .as_str()
        .ok_or_else(|| join_error("the cluster-info kubeconfig names no server"))?
        .to_string();
    let ca_pem = cluster["certificate-authority-data"]
        .as_str()
        .and_then(|b64| {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD.decode(b64).ok()
        })
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or_else(|| join_error("the cluster-info kubeconfig holds no CA"))?;
    if let Some(hash) = &cfg.ca_cert_hash {
        hash.verify_pem(&ca_pem).map_err(|e| {
            join_error(format!(
                "cluster CA found in cluster-info ConfigMap is invalid: {e}"
            ))
        })?;
    }
    Ok((server, ca_pem))
}

/// Joins: discovery, a CSR filed with the bootstrap token, its certificate awaited, the credentials stored.
///
/// # Errors
/// One line saying what failed.
pub async fn join(cfg: &JoinConfig) -> Result<Kubeconfig, NodeError> {
    let (server, ca_pem) = discover(cfg).await?;
    let request = CertificateRequest::node(&cfg.node_name).map_err(join_error)?;
    let uri: axum::http::Uri = server.parse().map_err(join_error)?;
    let mut client_config = kube::Config::new(uri);
    client_config.root_cert = Some(
        herd_pki::tls::certificates(&ca_pem)
            .map_err(join_error)?
            .into_iter()
            .map(|c| c.to_vec())
            .collect(),
    );
    client_config.auth_info.token = Some(cfg.token.to_string().into());
    let client = kube::Client::try_from(client_config).map_err(join_error)?;
    let cert_pem = request_certificate(&client, &request.csr_pem, &cfg.node_name).await?;
    let kubeconfig = Kubeconfig {
        server,
        cluster_name: "default-cluster".into(),
        user_name: "default-auth".into(),
        context_name: "default-context".into(),
        namespace: None,
        ca_pem,
        client: IssuedCert {
            cert_pem,
            key_pem: request.key_pem,
        },
    };
    store(&cfg.data_dir, &kubeconfig)?;
    Ok(kubeconfig)
}

/// Files a node client CSR with `client` and waits for its certificate (the kubelet's
/// `RequestCertificate` + `WaitForCertificate`).
///
/// # Errors
/// A refused create, a Denied or Failed CSR, or no certificate within 15 minutes (the kubelet's limit).
pub async fn request_certificate(
    client: &kube::Client,
    csr_pem: &str,
    node_name: &str,
) -> Result<String, NodeError> {
    request_certificate_of(
        client,
        csr_pem,
        CLIENT_SIGNER,
        &["digital signature", "client auth"],
        node_name,
        false,
    )
    .await
}

/// Files a CSR for `signer` with `usages` and waits for its certificate, as [`request_certificate`]; with
/// `self_approve`, approves it too when the client may (see
/// [`crate::certificate_manager::rotate_serving`]).
///
/// # Errors
/// As [`request_certificate`].
pub async fn request_certificate_of(
    client: &kube::Client,
    csr_pem: &str,
    signer: &str,
    usages: &[&str],
    node_name: &str,
    self_approve: bool,
) -> Result<String, NodeError> {
    let csrs: Api<CertificateSigningRequest> = Api::all(client.clone());
    let mut csr = CertificateSigningRequest {
        spec: CertificateSigningRequestSpec {
            request: ByteString(csr_pem.as_bytes().to_vec()),
            signer_name: signer.into(),
            usages: Some(usages.iter().map(|u| (*u).to_string()).collect()),
            ..CertificateSigningRequestSpec::default()
        },
        ..CertificateSigningRequest::default()
    };
    csr.metadata.generate_name = Some("node-csr-".into());
    let created = csrs
        .create(&PostParams::default(), &csr)
        .await
        .map_err(|e| {
            join_error(format!(
                "creating a certificate signing request for node {node_name}: {e}"
            ))
        })?;
    let name = created.metadata.name.unwrap_or_default();
    tracing::info!(csr = %name, node = %node_name, %signer, "certificate signing request filed");
    if self_approve {
        crate::certificate_manager::approve(client, &name).await;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15 * 60);
    loop {
        match csrs.get(&name).await {
            Ok(csr) => {
                let status = csr.status.unwrap_or_default();
                if let Some(condition) = status
                    .conditions
                    .iter()
                    .flatten()
                    .find(|c| c.type_ == "Denied" || c.type_ == "Failed")
                {
                    return Err(join_error(format!(
                        "certificate signing request {name} is {}: {}",
                        condition.type_.to_lowercase(),
                        condition.message.clone().unwrap_or_default()
                    )));
                }
                if let Some(cert) = status.certificate.filter(|c| !c.0.is_empty()) {
                    return String::from_utf8(cert.0).map_err(join_error);
                }
            }
            Err(e) => tracing::warn!(csr = %name, "reading the certificate signing request: {e}"),
        }
        if tokio::time::Instant::now() > deadline {
            return Err(join_error(format!(
                "timed out waiting for certificate signing request {name} to be signed"
            )));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
