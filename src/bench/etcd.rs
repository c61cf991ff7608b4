//! A local etcd cluster for the benchmarks: `members` Debian etcd processes (`/usr/bin/etcd`, or `$HERD_ETCD`)
//! on free loopback ports, each with its data dir in one temporary directory, a static cluster
//! (`--initial-cluster`), killed and removed when stopped or dropped.

use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use tokio::process::{Child, Command};

/// How long the members may take to form a healthy cluster.
const HEALTHY_TIMEOUT: Duration = Duration::from_secs(30);

pub struct EtcdCluster {
    members: Vec<Child>,
    client_urls: Vec<String>,
    _dir: tempfile::TempDir,
}

impl EtcdCluster {
    /// Starts `members` members and waits until every one answers its health endpoint.
    pub async fn start(members: usize) -> anyhow::Result<Self> {
        let binary = std::env::var("HERD_ETCD").unwrap_or_else(|_| "/usr/bin/etcd".to_string());
        let dir = tempfile::tempdir().context("temporary dir for etcd")?;
        let ports: Vec<(u16, u16)> = (0..members)
            .map(|_| Ok((free_port()?, free_port()?)))
            .collect::<anyhow::Result<_>>()?;
        let peer_url = |port: u16| format!("http://127.0.0.1:{port}");
        let initial_cluster: Vec<String> = ports
            .iter()
            .enumerate()
            .map(|(i, (_, peer))| format!("m{i}={}", peer_url(*peer)))
            .collect();
        let mut cluster = Self {
            members: Vec::new(),
            client_urls: ports
                .iter()
                .map(|(client, _)| format!("http://127.0.0.1:{client}"))
                .collect(),
            _dir: dir,
        };
        for (i, (client, peer)) in ports.iter().enumerate() {
            let client_url = format!("http://127.0.0.1:{client}");
            let child = Command::new(&binary)
                .arg(format!("--name=m{i}"))
                .arg(format!(
                    "--data-dir={}",
                    cluster._dir.path().join(format!("m{i}")).display()
                ))
                .arg(format!("--listen-client-urls={client_url}"))
                .arg(format!("--advertise-client-urls={client_url}"))
                .arg(format!("--listen-peer-urls={}", peer_url(*peer)))
                .arg(format!("--initial-advertise-peer-urls={}", peer_url(*peer)))
                .arg(format!("--initial-cluster={}", initial_cluster.join(",")))
                .arg("--initial-cluster-state=new")
                .arg("--initial-cluster-token=herd-bench")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .kill_on_drop(true)
                .spawn()
                .with_context(|| format!("starting {binary}"))?;
            cluster.members.push(child);
        }
        cluster.wait_healthy().await?;
        Ok(cluster)
    }

    /// The members' client URLs.
    pub fn client_urls(&self) -> Vec<String> {
        self.client_urls.clone()
    }

    /// The members' process ids.
    pub fn pids(&self) -> Vec<u32> {
        self.members.iter().filter_map(Child::id).collect()
    }

    async fn wait_healthy(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + HEALTHY_TIMEOUT;
        loop {
            let mut healthy = 0;
            for url in &self.client_urls {
                if health(url).await {
                    healthy += 1;
                }
            }
            if healthy == self.client_urls.len() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "etcd: {healthy} of {} members healthy after {HEALTHY_TIMEOUT:?} ({})",
                    self.client_urls.len(),
                    self.client_urls.join(",")
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Kills every member and waits for them to exit; the data dirs go with `self`.
    pub async fn stop(mut self) {
        for member in &mut self.members {
            let _ = member.kill().await;
        }
    }
}

/// Whether etcd at `url` answers `GET /health` with `"health":"true"`.
async fn health(url: &str) -> bool {
    let Some(addr) = url
        .strip_prefix("http://")
        .and_then(|a| a.parse::<std::net::SocketAddr>().ok())
    else {
        return false;
    };
    async {
        let mut sender = super::http::connect(addr).await?;
        let req = hyper::Request::get("/health")
            .header("host", addr.to_string())
            .body(http_body_util::Full::<bytes::Bytes>::default())?;
        let resp = sender.send_request(req).await?;
        let body = http_body_util::BodyExt::collect(resp.into_body())
            .await?
            .to_bytes();
        anyhow::Ok(String::from_utf8_lossy(&body).contains(r#""health":"true""#))
    }
    .await
    .unwrap_or(false)
}

/// A free TCP port on 127.0.0.1 (bound and released; etcd binds it a moment later).
fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}
