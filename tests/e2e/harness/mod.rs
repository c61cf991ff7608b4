//! The e2e harness: real `herd` processes, Debian's `docker-registry`, the sample Wasm apps, and helpers
//! to wait for and inspect Kubernetes objects over plain HTTP.

mod cidr;
mod herd;
mod kubectl;
mod manifests;
mod process;
mod registry;
mod watch;
mod yaml;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::{Duration, Instant};

pub use cidr::Cidr;
pub use herd::{Herd, HerdOptions};
pub use kubectl::*;
pub use manifests::*;
pub use process::HerdProcess;
pub use registry::Registry;
pub use watch::{WatchStream, describe as watch_describe};
pub use yaml::to_yaml;

/// The binary under test.
pub const HERD: &str = env!("CARGO_BIN_EXE_herd");

/// `sample-apps/dist/<name>.wasm`; panics if the sample apps were not built.
pub fn sample(name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("sample-apps/dist")
        .join(format!("{name}.wasm"));
    assert!(
        path.exists(),
        "{} is missing: run sample-apps/build.sh",
        path.display()
    );
    path
}

/// Whether this test process runs as root (real UID 0).
pub fn is_root() -> bool {
    real_uid(std::process::id()) == Some(0)
}

/// The real UID of a process, from `/proc/<pid>/status`.
pub fn real_uid(pid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// An HTTP client that never goes through a proxy.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .connect_timeout(Duration::from_secs(5))
        .build()
        .expect("reqwest client")
}

/// [`http_client`] with the credentials of a kubeconfig written by herd (it trusts the cluster CA and
/// presents the client certificate), for the API server; plain HTTP (pods, registries) works as before.
pub fn api_client(kubeconfig: &Path) -> reqwest::Client {
    let credentials = herd_pki::Kubeconfig::read(kubeconfig)
        .unwrap_or_else(|e| panic!("reading {}: {e}", kubeconfig.display()));
    let tls = herd_pki::tls::client_config(&credentials.ca_pem, Some(&credentials.client))
        .expect("TLS client configuration");
    reqwest::Client::builder()
        .no_proxy()
        .connect_timeout(Duration::from_secs(5))
        .use_preconfigured_tls(tls)
        .build()
        .expect("reqwest client")
}

/// The last `lines` lines of a text file.
pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The result of one CLI run.
#[derive(Debug)]
pub struct CliOutput {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl CliOutput {
    /// Panics with the output unless the command exited 0.
    #[track_caller]
    pub fn ok(self) -> CliOutput {
        assert!(
            self.status.success(),
            "herd CLI failed ({}):\nstdout: {}\nstderr: {}",
            self.status,
            self.stdout,
            self.stderr
        );
        self
    }
}

/// Runs `herd ARGS` (no kubeconfig) and waits at most 60 s.
pub async fn cli<S: AsRef<str>>(args: &[S]) -> CliOutput {
    let args: Vec<&str> = args.iter().map(AsRef::as_ref).collect();
    let output = tokio::process::Command::new(HERD)
        .args(&args)
        .env("NO_COLOR", "1")
        .env("NO_PROXY", "127.0.0.0/8,localhost")
        .env_remove("KUBECONFIG")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(60), output)
        .await
        .unwrap_or_else(|_| panic!("herd {args:?} took over 60 s"))
        .unwrap_or_else(|e| panic!("cannot run herd {args:?}: {e}"));
    CliOutput {
        status: output.status,
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// `herd push sample-apps/dist/<sample>.wasm IMAGE`; returns the manifest digest it prints.
pub async fn push(sample_name: &str, image: &str) -> String {
    push_with(sample_name, image, &[]).await
}

/// `herd push sample-apps/dist/<sample>.wasm IMAGE EXTRA…` (e.g. `--kubeconfig FILE`, which herd's
/// embedded registry needs: see `Herd::push`); returns the manifest digest it prints.
pub async fn push_with(sample_name: &str, image: &str, extra: &[&str]) -> String {
    let wasm = sample(sample_name);
    let mut args = vec![
        String::from("push"),
        wasm.display().to_string(),
        image.to_string(),
    ];
    args.extend(extra.iter().map(|a| a.to_string()));
    let out = cli(&args).await.ok();
    let digest = out
        .stdout
        .split(|c: char| c.is_whitespace() || c == '@' || c == '"')
        .find(|t| t.starts_with("sha256:") && t.len() == 71)
        .unwrap_or_else(|| {
            panic!(
                "herd push printed no sha256 digest:\nstdout: {}\nstderr: {}",
                out.stdout, out.stderr
            )
        });
    digest.to_string()
}

/// Polls `check` every 150 ms until it returns `Ok`, for at most `timeout`; then panics with `what` and the
/// last `Err` (a description of the state observed).
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        match check().await {
            Ok(value) => return value,
            Err(state) if Instant::now() >= deadline => {
                panic!("timed out after {timeout:?} waiting for {what}; last state: {state}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(150)).await,
        }
    }
}

/// A JSON pointer lookup as a string (`""` if absent or not a string).
pub fn s<'a>(v: &'a serde_json::Value, pointer: &str) -> &'a str {
    v.pointer(pointer)
        .and_then(serde_json::Value::as_str)
        .unwrap_or("")
}

/// The CPU time (user + system) a process has used, from `/proc/<pid>/stat`.
pub fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name: state is field 3, utime 14, stime 15.
    let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<u64> = after
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|f| f.parse().ok())
        .collect();
    let ticks: u64 = fields.iter().sum();
    Duration::from_millis(ticks * 1000 / clock_ticks())
}

fn clock_ticks() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100)
}
