//! Shared helpers: an embedded registry over HTTPS on a free loopback port, and test Wasm binaries.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use herd_oci_fetch::{ClientIdentity, FetchError, Fetcher, TlsOptions};

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// `herd_registry::serve` on `127.0.0.1:<free port>` over HTTPS, with a serving certificate of a
/// fresh cluster CA, storing in a temporary directory.
pub struct EmbeddedRegistry {
    /// `127.0.0.1:<port>`.
    pub addr: String,
    pub root: PathBuf,
    pub ca: herd_pki::ClusterCa,
    /// A client certificate in `system:masters` (the admin kubeconfig's identity).
    pub admin: herd_pki::IssuedCert,
    shutdown: CancellationToken,
    task: JoinHandle<std::io::Result<()>>,
    _dir: tempfile::TempDir,
}

impl EmbeddedRegistry {
    pub async fn start() -> Self {
        Self::start_with(None).await
    }

    /// With the API server at `api` (`https://…`, trusting `ca`) checking tokens, and that CA.
    pub async fn start_with(api: Option<(&str, herd_pki::ClusterCa)>) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path().join("registry");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let addr = listener.local_addr().expect("local addr").to_string();
        let (ca, api_tokens) = match api {
            Some((url, ca)) => {
                let reviewer = herd_registry::ApiTokenReviewer::new(url, ca.cert_pem())
                    .expect("token reviewer");
                (ca, Some(reviewer))
            }
            None => (herd_pki::ClusterCa::generate().expect("a CA"), None),
        };
        let serving = ca
            .issue_serving(
                "herd-registry",
                &herd_pki::serving_sans(&[listener.local_addr().unwrap().ip()], None, &[]),
                Duration::from_secs(3600),
            )
            .expect("serving certificate");
        let tls = herd_pki::tls::server_config(ca.cert_pem(), &serving).expect("server config");
        let admin = ca
            .issue_client(
                herd_pki::ADMIN_USER,
                &[herd_pki::MASTERS_GROUP],
                Duration::from_secs(3600),
            )
            .expect("admin certificate");
        let shutdown = CancellationToken::new();
        let security = herd_registry::Security {
            tls: Arc::new(tls),
            api_tokens,
        };
        let task = tokio::spawn(herd_registry::serve(
            listener,
            root.clone(),
            security,
            shutdown.clone(),
        ));
        EmbeddedRegistry {
            addr,
            root,
            ca,
            admin,
            shutdown,
            task,
            _dir: dir,
        }
    }

    /// `https://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// A client trusting the CA and presenting `identity` (none: anonymous).
    pub fn client(&self, identity: Option<&herd_pki::IssuedCert>) -> reqwest::Client {
        let tls = herd_pki::tls::client_config(self.ca.cert_pem(), identity).expect("client TLS");
        reqwest::Client::builder()
            .no_proxy()
            .use_preconfigured_tls(tls)
            .build()
            .expect("reqwest client")
    }

    /// A client trusting the CA and presenting the admin's certificate.
    pub fn http(&self) -> reqwest::Client {
        self.client(Some(&self.admin))
    }

    /// Trusting the CA, without an identity (a node's pulls).
    pub fn reader_tls(&self) -> TlsOptions {
        TlsOptions::trusting_pem(self.ca.cert_pem()).expect("CA roots")
    }

    /// Trusting the CA and offering the admin's certificate (`herd push --kubeconfig`).
    pub fn admin_tls(&self) -> TlsOptions {
        TlsOptions {
            identity: Some(ClientIdentity {
                cert_pem: self.admin.cert_pem.clone(),
                key_pem: self.admin.key_pem.clone(),
            }),
            ..self.reader_tls()
        }
    }

    /// Pushes `wasm` as the admin.
    pub async fn push(&self, wasm: &[u8], image: &str) -> Result<String, FetchError> {
        herd_oci_fetch::push_with(wasm, image, &[], None, &self.admin_tls()).await
    }

    /// A fetcher caching under `cache` that trusts the CA.
    pub fn fetcher(&self, cache: &std::path::Path) -> Fetcher {
        Fetcher::with_tls(cache.to_path_buf(), vec![], self.reader_tls())
    }

    /// Cancels the server and waits until it has stopped listening.
    pub async fn stop(&mut self) {
        self.shutdown.cancel();
        (&mut self.task)
            .await
            .expect("registry task")
            .expect("registry serve");
    }
}

impl Drop for EmbeddedRegistry {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A valid core Wasm module: the header plus one custom section named `herd` holding `payload`.
pub fn wasm_module(payload: &[u8]) -> Vec<u8> {
    let mut section = Vec::new();
    leb128(&mut section, 4);
    section.extend_from_slice(b"herd");
    section.extend_from_slice(payload);
    let mut wasm = b"\0asm\x01\0\0\0".to_vec();
    wasm.push(0); // custom section
    leb128(&mut wasm, section.len() as u64);
    wasm.extend_from_slice(&section);
    wasm
}

fn leb128(out: &mut Vec<u8>, mut value: u64) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

pub fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}

/// The path of the blob with `digest` under a cache or registry root.
pub fn blob_path(root: &std::path::Path, digest: &str) -> PathBuf {
    root.join("blobs")
        .join("sha256")
        .join(digest.trim_start_matches("sha256:"))
}
