//! Debian's real `docker-registry` (distribution 2.8) as a child process, one per test; optionally
//! protected by basic authentication (its `htpasswd` auth, entries made with `htpasswd -Bbn`).

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
        Registry::start_with(None).await
    }

    /// Starts a registry that requires basic authentication as `username`/`password` for every
    /// request (pulls included), as a private registry does; waits until `GET /v2/` answers 401.
    pub async fn start_with_basic_auth(username: &str, password: &str) -> Registry {
        Registry::start_with(Some((username, password))).await
    }

    async fn start_with(auth: Option<(&str, &str)>) -> Registry {
        assert!(
            Path::new(BINARY).exists(),
            "{BINARY} is missing: install Debian's docker-registry (apt-get install docker-registry)"
        );
        let mut last_error = String::new();
        // A free port can be taken by someone else before the registry binds it: try a few.
        for _ in 0..3 {
            match Registry::try_start(auth).await {
                Ok(registry) => return registry,
                Err(e) => last_error = e,
            }
        }
        panic!("docker-registry did not start: {last_error}");
    }

    async fn try_start(auth: Option<(&str, &str)>) -> Result<Registry, String> {
        let dir = tempfile::Builder::new()
            .prefix("herd-e2e-registry-")
            .tempdir()
            .map_err(|e| e.to_string())?;
        let addr = format!("127.0.0.1:{}", free_port());
        let mut config = format!(
            "version: 0.1\n\
             log:\n  level: warn\n  accesslog:\n    disabled: true\n\
             storage:\n  filesystem:\n    rootdirectory: {root}\n  delete:\n    enabled: true\n\
             http:\n  addr: {addr}\n  secret: herd-e2e\n",
            root = dir.path().join("storage").display(),
        );
        if let Some((username, password)) = auth {
            let htpasswd = htpasswd_entry(username, password)?;
            let path = dir.path().join("htpasswd");
            std::fs::write(&path, htpasswd).map_err(|e| e.to_string())?;
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: herd-e2e\n    path: {}\n",
                path.display()
            ));
        }
        let ready_status = if auth.is_some() { 401 } else { 200 };
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
                && resp.status().as_u16() == ready_status
            {
                return Ok(registry);
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "GET {url} did not answer {ready_status} within 20 s: {}",
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

/// A bcrypt htpasswd line (`user:$2y$…`), the only kind docker-registry accepts, from `htpasswd -Bbn`
/// (Debian package apache2-utils).
fn htpasswd_entry(username: &str, password: &str) -> Result<String, String> {
    let out = Command::new("htpasswd")
        .args(["-Bbn", username, password])
        .output()
        .map_err(|e| {
            format!(
                "cannot run htpasswd ({e}): install Debian's apache2-utils (scripts/test.sh does)"
            )
        })?;
    if !out.status.success() {
        return Err(format!(
            "htpasswd -Bbn failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string() + "\n")
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
