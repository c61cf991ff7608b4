//! A real `herd up` child process for the benchmarks: started from this very binary on a temporary data dir
//! with free ports, so the figures include everything a user's cluster does (API, store, scheduler, node
//! agent, registry) and nothing of the benchmark's own bookkeeping.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};

/// How long `herd up` may take to print its ready line.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

pub struct Cluster {
    child: Child,
    pub client: kube::Client,
    /// The API server, with the admin's credentials.
    pub api: super::http::ApiEndpoint,
    /// `host:port` of the embedded registry (empty for `herd control`, which runs none).
    pub registry: String,
    /// Trust in the cluster CA and the admin's certificate, which the embedded registry lets push.
    registry_tls: herd_oci_fetch::TlsOptions,
    /// The child's log lines naming [`STORE_STATS`].
    log: tokio::sync::watch::Receiver<Vec<String>>,
    _dir: tempfile::TempDir,
}

/// What the store's log line of its write statistics (at close) contains.
pub const STORE_STATS: &str = "store write statistics";

/// Flags letting one node hold `pods` pods: `--max-pods`, and a node CIDR with an address for each.
pub fn capacity_flags(pods: usize) -> [String; 4] {
    let wanted = pods + 10;
    // The smallest block with an address for each pod beside the network, gateway and broadcast ones.
    let host_bits = (wanted + 3).next_power_of_two().trailing_zeros().max(8);
    [
        "--max-pods".to_string(),
        wanted.to_string(),
        "--node-cidr-mask-size".to_string(),
        (32 - host_bits).to_string(),
    ]
}

impl Cluster {
    /// Starts `herd up` with `extra` flags appended and waits for its ready line.
    pub async fn start(extra: &[String]) -> anyhow::Result<Self> {
        let mut flags = vec!["--registry-listen".to_string(), "127.0.0.1:0".to_string()];
        flags.extend_from_slice(extra);
        Self::start_command("up", &flags).await
    }

    /// Starts `herd control` (the control plane alone: API server, store, controllers, scheduler; no node
    /// and no registry) with `extra` flags appended and waits for its ready line.
    pub async fn start_control(extra: &[String]) -> anyhow::Result<Self> {
        Self::start_command("control", extra).await
    }

    async fn start_command(command: &str, extra: &[String]) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir().context("temporary data dir")?;
        // Another build's binary can be measured with this one's benchmark (builds compared in the same hour).
        let exe = match std::env::var_os("HERD_BENCH_SERVER") {
            Some(path) => PathBuf::from(path),
            None => std::env::current_exe().context("locating the herd binary")?,
        };
        let server_log = std::env::var("HERD_BENCH_SERVER_LOG").ok();
        let mut child = Command::new(exe)
            .arg(command)
            .arg("--data-dir")
            .arg(dir.path())
            .args(["--listen", "127.0.0.1:0"])
            .args(["--service-cidr", "127.250.0.0/16"])
            .args(["--cluster-cidr", "127.128.0.0/10"])
            .args(extra)
            // HERD_BENCH_SERVER_LOG (a HERD_LOG filter) shows the server's log on this stderr: where a
            // benchmark's time goes, step by step.
            .env(
                "HERD_LOG",
                server_log.as_deref().unwrap_or("warn,herd=info"),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting herd {command}"))?;
        let stderr = child.stderr.take().ok_or_else(|| anyhow!("no stderr"))?;
        let mut lines = BufReader::new(stderr).lines();
        let ready = tokio::time::timeout(READY_TIMEOUT, async {
            while let Some(line) = lines.next_line().await? {
                if line.contains("herd is ready") {
                    return Ok(line);
                }
            }
            bail!("herd {command} exited before it was ready")
        })
        .await
        .map_err(|_| anyhow!("herd {command} was not ready within {READY_TIMEOUT:?}"))??;
        // Keep draining stderr so the child never blocks on a full pipe; the lines the benchmarks read
        // (the store's statistics at shutdown) are kept.
        let (log_tx, log) = tokio::sync::watch::channel(Vec::new());
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                if server_log.is_some() {
                    eprintln!("herd {line}");
                }
                if line.contains(STORE_STATS) {
                    log_tx.send_modify(|kept| kept.push(line));
                }
            }
        });
        let field = |name: &str| {
            ready
                .split_whitespace()
                .find_map(|w| w.strip_prefix(name))
                .map(str::to_string)
                .ok_or_else(|| anyhow!("no {name} in {ready:?}"))
        };
        let registry = field("registry=").unwrap_or_default();
        let addr = field("api=https://")?
            .parse()
            .with_context(|| format!("the api address in {ready:?}"))?;
        let kubeconfig = PathBuf::from(field("kubeconfig=")?);
        let client = client(&kubeconfig).await?;
        let admin = herd_pki::Kubeconfig::read(&kubeconfig)?;
        let api = super::http::ApiEndpoint::new(addr, &admin)?;
        let registry_tls = herd_oci_fetch::TlsOptions {
            identity: Some(herd_oci_fetch::ClientIdentity {
                cert_pem: admin.client.cert_pem.clone(),
                key_pem: admin.client.key_pem.clone(),
            }),
            ..herd_oci_fetch::TlsOptions::trusting_pem(&admin.ca_pem)?
        };
        Ok(Self {
            child,
            client,
            api,
            registry,
            registry_tls,
            log,
            _dir: dir,
        })
    }

    /// The child's process id.
    pub fn pid(&self) -> anyhow::Result<u32> {
        self.child.id().ok_or_else(|| anyhow!("herd up has exited"))
    }

    /// The child's resident memory in bytes (VmRSS).
    pub fn rss_bytes(&self) -> anyhow::Result<u64> {
        rss_of(self.pid()?)
    }

    /// Pushes a Wasm file to the cluster's registry as `name:tag`; returns the image reference.
    pub async fn push(&self, wasm: &Path, name: &str) -> anyhow::Result<String> {
        let bytes = std::fs::read(wasm).with_context(|| format!("reading {}", wasm.display()))?;
        self.push_bytes(&bytes, name).await
    }

    /// [`Cluster::push`] of Wasm bytes.
    pub async fn push_bytes(&self, bytes: &[u8], name: &str) -> anyhow::Result<String> {
        let image = format!("{}/{name}", self.registry);
        herd_oci_fetch::push_with(bytes, &image, &[], None, &self.registry_tls)
            .await
            .with_context(|| format!("pushing {image}"))?;
        Ok(image)
    }

    /// Stops the child with SIGTERM (as a user would), waiting for it to exit; returns its log lines
    /// naming [`STORE_STATS`] (the store logs them when it closes).
    pub async fn stop(self) -> Vec<String> {
        let mut log = self.log.clone();
        self.stop_child().await;
        // The draining task ends with the child's stderr.
        let _ = tokio::time::timeout(Duration::from_secs(2), log.wait_for(|_| false)).await;
        log.borrow().clone()
    }

    async fn stop_child(mut self) {
        if let Some(pid) = self.child.id() {
            let _ = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()
                .await;
        }
        if tokio::time::timeout(Duration::from_secs(20), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

/// The resident memory (VmRSS) of process `pid`, in bytes.
pub fn rss_of(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| anyhow!("no VmRSS for {pid}"))?;
    Ok(kib * 1024)
}

async fn client(kubeconfig: &Path) -> anyhow::Result<kube::Client> {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig)
        .with_context(|| format!("reading {}", kubeconfig.display()))?;
    let config =
        kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
            .await?;
    Ok(kube::Client::try_from(config)?)
}

/// `p` in 0..=100 of sorted samples (nearest rank).
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let samples: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&samples, 50.0), Duration::from_millis(50));
        assert_eq!(percentile(&samples, 99.0), Duration::from_millis(99));
        assert_eq!(percentile(&samples, 100.0), Duration::from_millis(100));
        assert_eq!(percentile(&samples[..1], 99.0), Duration::from_millis(1));
        assert_eq!(percentile(&[], 50.0), Duration::ZERO);
    }
}
