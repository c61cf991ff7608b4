//! Debian's real `docker-registry` (distribution 2.8) as a child process, one per test.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::{free_port, http_client, tail};

const BINARY: &str = "/usr/bin/docker-registry";

/// A running `docker-registry` on `127.0.0.1:<port>` storing into a temp dir; killed on drop.
pub struct Registry {
    /// `127.0.0.1:PORT`
    pub addr: String,
    child: Child,
    dir: TempDir,
}

impl Registry {
    /// Starts the registry and waits until `GET /v2/` answers 200.
    pub async fn start() -> Registry {
        assert!(
            Path::new(BINARY).exists(),
            "{BINARY} is missing: install Debian's docker-registry (apt-get install docker-registry)"
        );
        let mut last_error = String::new();
        // A free port can be taken by someone else before the registry binds it: try a few.
        for _ in 0..3 {
            match Registry::try_start().await {
                Ok(registry) => return registry,
                Err(e) => last_error = e,
            }
        }
        panic!("docker-registry did not start: {last_error}");
    }

    async fn try_start() -> Result<Registry, String> {
        let dir = tempfile::Builder::new()
            .prefix("herd-e2e-registry-")
            .tempdir()
            .map_err(|e| e.to_string())?;
        let addr = format!("127.0.0.1:{}", free_port());
        let config = format!(
            "version: 0.1\n\
             log:\n  level: warn\n  accesslog:\n    disabled: true\n\
             storage:\n  filesystem:\n    rootdirectory: {root}\n  delete:\n    enabled: true\n\
             http:\n  addr: {addr}\n  secret: herd-e2e\n",
            root = dir.path().join("storage").display(),
        );
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).map_err(|e| e.to_string())?;
        let log =
            std::fs::File::create(dir.path().join("registry.log")).map_err(|e| e.to_string())?;
        let child = Command::new(BINARY)
            .arg("serve")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot run {BINARY}: {e}"))?;
        let mut registry = Registry { addr, child, dir };

        let http = http_client();
        let url = format!("http://{}/v2/", registry.addr);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = registry.child.try_wait() {
                return Err(format!(
                    "docker-registry exited with {status}: {}",
                    registry.log()
                ));
            }
            if let Ok(resp) = http.get(&url).send().await
                && resp.status().as_u16() == 200
            {
                return Ok(registry);
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "GET {url} did not answer 200 within 20 s: {}",
                    registry.log()
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `127.0.0.1:PORT/<name>`
    pub fn image(&self, name: &str) -> String {
        format!("{}/{name}", self.addr)
    }

    fn log(&self) -> String {
        tail(&self.dir.path().join("registry.log"), 40)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "--- docker-registry log ({}) ---\n{}",
                self.addr,
                self.log()
            );
        }
    }
}
