//! `herd bench proxy`: requests/s of one static backend (nginx) measured with wrk over keep-alive
//! connections, side by side in one run: directly, through herd's host-side Service proxy (a Service in
//! a real `herd up`), through nginx `stream` (when its module is installed), and guest → Service beside
//! guest → pod IP ([`super::guest_lb::guest_rates`]). The kinds alternate round by round so that the
//! machine's other load falls on all of them alike; the figures are medians.

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Api;
use kube::api::PostParams;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::process::{Child, Command};

use super::cluster::Cluster;
use super::guest_lb::{GuestLoad, guest_rates};

/// Where Debian's nginx keeps its dynamic `stream` module (package libnginx-mod-stream).
const STREAM_MODULE: &str = "/usr/lib/nginx/modules/ngx_stream_module.so";
/// How long the Service may take to answer through the proxy.
const SERVICE_TIMEOUT: Duration = Duration::from_secs(30);

pub struct ProxyArgs<'a> {
    pub nginx: &'a Path,
    pub wrk: &'a Path,
    pub connections: usize,
    pub wrk_threads: usize,
    pub duration: Duration,
    pub rounds: usize,
    /// Measure guest → Service and guest → pod IP too.
    pub guests: bool,
}

pub async fn run(args: ProxyArgs<'_>) -> anyhow::Result<()> {
    if args.rounds == 0 || args.connections == 0 {
        bail!("--rounds and --connections must be at least 1");
    }
    if !runs(args.wrk, &["-v"]).await {
        bail!(
            "wrk ({}) is not installed; `herd bench proxy` measures with it",
            args.wrk.display()
        );
    }
    if !runs(args.nginx, &["-v"]).await {
        bail!(
            "nginx ({}) is not installed; `herd bench proxy` uses it as the static backend",
            args.nginx.display()
        );
    }
    let dir = tempfile::tempdir().context("a temporary directory for nginx")?;
    let backend_addr = free_port()?;
    let _backend = Nginx::start(
        args.nginx,
        dir.path(),
        "backend",
        &backend_config(backend_addr),
    )
    .await?;
    wait_for_http(backend_addr).await?;

    // nginx `stream` as its docs configure it (a worker per core), and with one worker, which does
    // better on a machine of few cores that the client and the backend share.
    let mut streams = Vec::new();
    match stream_module(args.nginx).await {
        Some(load) => {
            for (name, workers) in [("nginx stream", "auto"), ("nginx stream 1w", "1")] {
                let addr = free_port()?;
                let nginx = Nginx::start(
                    args.nginx,
                    dir.path(),
                    &format!("stream-{workers}"),
                    &stream_config(&load, workers, addr, backend_addr),
                )
                .await?;
                wait_for_http(addr).await?;
                streams.push((name, nginx, addr));
            }
        }
        None => {
            println!(
                "nginx has no stream module (Debian: apt-get install libnginx-mod-stream); \
                 skipping nginx stream"
            );
        }
    }

    let cluster = Cluster::start(&[]).await?;
    let service_addr = static_service(&cluster, backend_addr).await?;

    let mut targets = vec![("direct", backend_addr), ("herd proxy", service_addr)];
    for (name, _, addr) in &streams {
        targets.push((name, *addr));
    }
    println!(
        "proxy: wrk -t{} -c{} -d{}s keep-alive against a static nginx ({} rounds, alternating)",
        args.wrk_threads,
        args.connections,
        args.duration.as_secs(),
        args.rounds
    );
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); targets.len()];
    for _ in 0..args.rounds {
        for (i, (_, addr)) in targets.iter().enumerate() {
            rates[i].push(wrk(&args, *addr).await?);
        }
    }
    let medians: Vec<f64> = rates.iter().map(|r| median(r)).collect();
    let direct = medians[0];
    let herd = medians[1];
    for (i, (name, addr)) in targets.iter().enumerate() {
        let rounds: Vec<String> = rates[i].iter().map(|r| format!("{r:.0}")).collect();
        println!(
            "  {name:<15} {:>9.0} req/s  {:.2}× direct  ({addr}; rounds: {})",
            medians[i],
            medians[i] / direct.max(1e-9),
            rounds.join(", ")
        );
    }
    for (i, (name, _)) in targets.iter().enumerate().skip(2) {
        println!("  herd proxy / {name}: {:.2}×", herd / medians[i].max(1e-9));
    }
    if args.guests {
        let load = GuestLoad {
            duration: args.duration,
            rounds: args.rounds,
            ..GuestLoad::default()
        };
        let guests = guest_rates(&cluster, &load).await?;
        println!("  {guests}");
    }
    cluster.stop().await;
    Ok(())
}

/// The cluster address of a Service without a selector whose one EndpointSlice names `backend`
/// (a host address: the proxy forwards to it as to a pod of this host), once it answers.
async fn static_service(cluster: &Cluster, backend: SocketAddr) -> anyhow::Result<SocketAddr> {
    let services: Api<Service> = Api::namespaced(cluster.client.clone(), "default");
    let slices: Api<EndpointSlice> = Api::namespaced(cluster.client.clone(), "default");
    let service: Service = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "bench-static"},
        "spec": {"ports": [{"port": 8080, "protocol": "TCP"}]}
    }))?;
    let service = services.create(&PostParams::default(), &service).await?;
    let slice: EndpointSlice = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "bench-static-1",
            "labels": {"kubernetes.io/service-name": "bench-static"}},
        "addressType": "IPv4",
        "ports": [{"port": backend.port(), "protocol": "TCP"}],
        "endpoints": [{"addresses": [backend.ip().to_string()], "conditions": {"ready": true}}]
    }))?;
    slices.create(&PostParams::default(), &slice).await?;
    let ip = service
        .spec
        .and_then(|s| s.cluster_ip)
        .ok_or_else(|| anyhow!("the Service got no cluster IP"))?;
    let addr = SocketAddr::new(ip.parse()?, 8080);
    wait_for_http(addr).await?;
    Ok(addr)
}

/// Requests/s of one wrk run against `addr`.
async fn wrk(args: &ProxyArgs<'_>, addr: SocketAddr) -> anyhow::Result<f64> {
    let output = Command::new(args.wrk)
        .arg(format!("-t{}", args.wrk_threads))
        .arg(format!("-c{}", args.connections))
        .arg(format!("-d{}s", args.duration.as_secs().max(1)))
        .arg(format!("http://{addr}/"))
        .stdin(Stdio::null())
        .output()
        .await
        .context("running wrk")?;
    let text = String::from_utf8_lossy(&output.stdout);
    if text.contains("Non-2xx") || text.contains("Socket errors") {
        bail!("wrk against {addr} saw errors:\n{text}");
    }
    text.lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| anyhow!("no Requests/sec in wrk's output:\n{text}"))
}

/// A rootless nginx with its configuration, pid and logs in a temporary directory.
struct Nginx {
    child: Child,
}

impl Nginx {
    async fn start(nginx: &Path, dir: &Path, name: &str, config: &str) -> anyhow::Result<Self> {
        let prefix = dir.join(name);
        std::fs::create_dir_all(prefix.join("tmp"))?;
        let conf = prefix.join("nginx.conf");
        let config = config.replace("PREFIX", &prefix.display().to_string());
        std::fs::write(&conf, config)?;
        let child = Command::new(nginx)
            .arg("-p")
            .arg(&prefix)
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", nginx.display()))?;
        Ok(Self { child })
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGQUIT, nginx's graceful stop: the master stops its workers, then itself (a SIGKILL of the
        // master would leave its workers running).
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-QUIT", &pid.to_string()])
                .status();
        }
    }
}

/// The paths a rootless nginx writes, all under its prefix.
const COMMON: &str = "daemon off;\npid PREFIX/nginx.pid;\nerror_log PREFIX/error.log;\n";

/// A static backend: one worker, keep-alive without a request limit, a fixed 200 answer.
fn backend_config(addr: SocketAddr) -> String {
    format!(
        "{COMMON}worker_processes 1;\nevents {{ worker_connections 4096; }}\nhttp {{\n  access_log off;\n  \
         client_body_temp_path PREFIX/tmp; proxy_temp_path PREFIX/tmp; fastcgi_temp_path PREFIX/tmp;\n  \
         uwsgi_temp_path PREFIX/tmp; scgi_temp_path PREFIX/tmp;\n  keepalive_requests 100000000;\n  \
         server {{ listen {addr}; location / {{ return 200 \"hello\\n\"; }} }}\n}}\n"
    )
}

/// nginx `stream` in front of `backend` with `workers` worker processes (`auto`: one per core).
fn stream_config(
    load_module: &str,
    workers: &str,
    addr: SocketAddr,
    backend: SocketAddr,
) -> String {
    format!(
        "{load_module}{COMMON}worker_processes {workers};\nevents {{ worker_connections 4096; }}\n\
         stream {{ server {{ listen {addr}; proxy_pass {backend}; }} }}\n"
    )
}

/// The `load_module` line nginx needs for `stream` (empty when it is built in), or `None` when it has
/// no stream module.
async fn stream_module(nginx: &Path) -> Option<String> {
    let output = Command::new(nginx).arg("-V").output().await.ok()?;
    let flags = String::from_utf8_lossy(&output.stderr);
    if flags.split_whitespace().any(|f| f == "--with-stream") {
        return Some(String::new());
    }
    Path::new(STREAM_MODULE)
        .exists()
        .then(|| format!("load_module {STREAM_MODULE};\n"))
}

async fn runs(program: &Path, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await
        .is_ok()
}

/// A free port on 127.0.0.1.
fn free_port() -> anyhow::Result<SocketAddr> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

/// Waits until `addr` answers an HTTP GET with a 200.
async fn wait_for_http(addr: SocketAddr) -> anyhow::Result<()> {
    let deadline = Instant::now() + SERVICE_TIMEOUT;
    loop {
        if get(addr).await.is_ok_and(|r| r.starts_with("HTTP/1.1 200")) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{addr} did not answer within {SERVICE_TIMEOUT:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn get(addr: SocketAddr) -> anyhow::Result<String> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
        .await?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await?;
    Ok(answer)
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted.get(sorted.len() / 2).copied().unwrap_or_default()
}
