//! herd-oci-fetch push and pull against the real registry of Debian's `docker-registry` package
//! (the CNCF distribution registry, v2.8), and the helper that runs it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use herd_oci_fetch::{FetchError, Fetcher, PullPolicy, push};

use crate::support::{blob_path, sha256, wasm_module};

const DOCKER_REGISTRY: &str = "/usr/bin/docker-registry";

/// A `docker-registry serve` child process on `127.0.0.1:<free port>`, storing in a temporary
/// directory; killed on drop.
pub struct DockerRegistry {
    /// `127.0.0.1:<port>`.
    pub addr: String,
    child: tokio::process::Child,
    dir: tempfile::TempDir,
}

impl DockerRegistry {
    /// Starts the registry and waits until `GET /v2/` answers.
    ///
    /// # Panics
    ///
    /// If `/usr/bin/docker-registry` is missing (install the Debian package `docker-registry`), or
    /// it does not come up within 20 s.
    pub async fn start() -> Self {
        assert!(
            Path::new(DOCKER_REGISTRY).exists(),
            "{DOCKER_REGISTRY} is missing: install the Debian package `docker-registry` \
             (apt-get install docker-registry)"
        );
        let dir = tempfile::tempdir().expect("temp dir");
        let addr = free_loopback_addr();
        let config = dir.path().join("config.yml");
        let storage = dir.path().join("storage");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\n\
                 log:\n  level: warn\n  accesslog:\n    disabled: true\n\
                 storage:\n  filesystem:\n    rootdirectory: {}\n\
                 http:\n  addr: {addr}\n",
                storage.display()
            ),
        )
        .expect("write the docker-registry config");
        let log = std::fs::File::create(dir.path().join("registry.log")).expect("log file");
        let child = tokio::process::Command::new(DOCKER_REGISTRY)
            .arg("serve")
            .arg(&config)
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("spawn docker-registry");
        let mut registry = DockerRegistry { addr, child, dir };
        registry.wait_until_ready().await;
        registry
    }

    async fn wait_until_ready(&mut self) {
        let url = format!("http://{}/v2/", self.addr);
        for _ in 0..200 {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("docker-registry exited with {status}:\n{}", self.log());
            }
            if let Ok(response) = reqwest::get(&url).await
                && response.status().is_success()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("docker-registry did not come up on {url}:\n{}", self.log());
    }

    /// What the registry wrote to stdout and stderr.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// The registry's storage directory.
    pub fn storage(&self) -> PathBuf {
        self.dir.path().join("storage")
    }
}

/// `127.0.0.1:<port>` of a port that was free a moment ago.
fn free_loopback_addr() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    listener.local_addr().expect("local addr").to_string()
}

#[tokio::test]
async fn push_and_pull_through_the_debian_docker_registry() {
    let registry = DockerRegistry::start().await;
    let wasm = wasm_module(&vec![42u8; 5 << 20]);
    let image = format!("{}/herd/tests/hello:v1", registry.addr);

    let manifest_digest = push(&wasm, &image, &[])
        .await
        .unwrap_or_else(|e| panic!("push to docker-registry failed: {e}\n{}", registry.log()));

    let cache = tempfile::tempdir().unwrap();
    let fetcher = Fetcher::new(cache.path().to_path_buf(), vec![]);
    let pulled = fetcher.pull(&image, PullPolicy::Always).await.unwrap();
    assert!(
        *pulled.wasm == *wasm,
        "pulled bytes differ from pushed bytes"
    );
    assert_eq!(pulled.layer_digest, sha256(&wasm));
    assert_eq!(
        pulled.image_id,
        format!("{}/herd/tests/hello@{manifest_digest}", registry.addr)
    );
    assert!(std::fs::read(blob_path(cache.path(), &pulled.layer_digest)).unwrap() == wasm);
    assert!(registry.storage().join("docker/registry/v2/blobs").is_dir());

    let err = fetcher
        .pull(
            &format!("{}/herd/tests/hello:v2", registry.addr),
            PullPolicy::Always,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, FetchError::Registry { message, .. } if message.contains("manifest unknown")),
        "{err:?}"
    );
}
