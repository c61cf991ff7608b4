//! Debian's real `docker-registry` (distribution 2.8) as a child process, one per test; optionally
//! protected by basic authentication (its `htpasswd` auth, entries made with `htpasswd -Bbn`) or by
//! distribution's token authentication (`auth: token:`) with `tests/registry_token_server.py` as the
//! token server (the bearer-token flow of Docker Hub, GHCR and Harbor).

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
    /// The token server of a registry with token authentication.
    token_server: Option<Child>,
    dir: TempDir,
}

/// How the registry authenticates.
#[derive(Clone, Copy)]
enum Auth<'a> {
    None,
    Basic(&'a str, &'a str),
    Token(&'a str, &'a str),
}

impl Registry {
    /// Starts the registry and waits until `GET /v2/` answers 200.
    pub async fn start() -> Registry {
        Registry::start_with(Auth::None).await
    }

    /// Starts a registry with distribution's token authentication: every request needs a bearer token
    /// from its token server (`tests/registry_token_server.py`, signing ES256 JWTs with a certificate of
    /// a test CA that the registry's `rootcertbundle` holds), which grants the access asked for to basic
    /// credentials `username`/`password`, a 401 to wrong ones and no access to anonymous callers.
    pub async fn start_with_token_auth(username: &str, password: &str) -> Registry {
        Registry::start_with(Auth::Token(username, password)).await
    }

    /// Starts a registry that requires basic authentication as `username`/`password` for every
    /// request (pulls included), as a private registry does; waits until `GET /v2/` answers 401.
    pub async fn start_with_basic_auth(username: &str, password: &str) -> Registry {
        Registry::start_with(Auth::Basic(username, password)).await
    }

    async fn start_with(auth: Auth<'_>) -> Registry {
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

    async fn try_start(auth: Auth<'_>) -> Result<Registry, String> {
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
        let mut token_server = None;
        match auth {
            Auth::None => {}
            Auth::Basic(username, password) => {
                let htpasswd = htpasswd_entry(username, password)?;
                let path = dir.path().join("htpasswd");
                std::fs::write(&path, htpasswd).map_err(|e| e.to_string())?;
                config.push_str(&format!(
                    "auth:\n  htpasswd:\n    realm: herd-e2e\n    path: {}\n",
                    path.display()
                ));
            }
            Auth::Token(username, password) => {
                let (server, port) = start_token_server(dir.path(), username, password)?;
                token_server = Some(server);
                config.push_str(&format!(
                    "auth:\n  token:\n    realm: http://127.0.0.1:{port}/token\n    \
                     service: {TOKEN_SERVICE}\n    issuer: {TOKEN_ISSUER}\n    \
                     rootcertbundle: {}\n",
                    dir.path().join("token-ca.crt").display()
                ));
            }
        }
        let ready_status = if matches!(auth, Auth::None) { 200 } else { 401 };
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
        let mut registry = Registry {
            addr,
            child,
            token_server,
            dir,
        };

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

const TOKEN_SERVICE: &str = "herd-e2e-registry";
const TOKEN_ISSUER: &str = "herd-e2e-token-issuer";

/// Writes a test CA (`token-ca.crt`, the registry's `rootcertbundle`) and a signing certificate and key
/// of it into `dir`, starts `tests/registry_token_server.py` with them (Debian's python3 with
/// python3-cryptography) and returns it with the port it printed.
fn start_token_server(dir: &Path, username: &str, password: &str) -> Result<(Child, u16), String> {
    use std::io::BufRead as _;
    let ca = herd_pki::ClusterCa::generate().map_err(|e| e.to_string())?;
    let signer = ca
        .issue_client("herd-e2e-token-signer", &[], Duration::from_secs(3600))
        .map_err(|e| e.to_string())?;
    let write = |name: &str, text: &str| {
        std::fs::write(dir.join(name), text).map_err(|e| format!("write {name}: {e}"))
    };
    write("token-ca.crt", ca.cert_pem())?;
    write("token-signer.crt", &signer.cert_pem)?;
    write("token-signer.key", &signer.key_pem)?;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/registry_token_server.py");
    let log = std::fs::File::create(dir.join("token-server.log")).map_err(|e| e.to_string())?;
    let mut child = Command::new("/usr/bin/python3")
        .arg(&script)
        .arg("--cert")
        .arg(dir.join("token-signer.crt"))
        .arg("--key")
        .arg(dir.join("token-signer.key"))
        .args(["--issuer", TOKEN_ISSUER, "--service", TOKEN_SERVICE])
        .args(["--user", username, "--password", password])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
    let mut line = String::new();
    let stdout = child.stdout.take().ok_or("no stdout")?;
    std::io::BufReader::new(stdout)
        .read_line(&mut line)
        .map_err(|e| e.to_string())?;
    match line.trim().parse::<u16>() {
        Ok(port) => Ok((child, port)),
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            Err(format!(
                "the token server printed no port ({line:?}): {} (needs python3-cryptography)",
                tail(&dir.join("token-server.log"), 20)
            ))
        }
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
        if let Some(server) = &mut self.token_server {
            let _ = server.kill();
            let _ = server.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "--- docker-registry log ({}) ---\n{}",
                self.addr,
                self.log()
            );
        }
    }
}
