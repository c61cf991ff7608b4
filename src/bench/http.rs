//! `herd bench http`: requests per second of the wasi-http sample served by herd (a pod, hit on its pod IP,
//! no proxy in between) and by `wasmtime serve` on the same component, with the same load generator.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use bytes::Bytes;
use http_body_util::BodyExt as _;
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::PostParams;
use tokio::net::TcpStream;
use tokio::process::Command;

use super::cluster::Cluster;
use super::pods::{http_pod, running_pods};

pub struct HttpArgs<'a> {
    pub wasm: &'a Path,
    pub wasmtime: &'a Path,
    pub connections: usize,
    pub duration: Duration,
}

pub async fn run(args: HttpArgs<'_>) -> anyhow::Result<()> {
    let herd = herd_rate(&args).await?;
    let wasmtime = wasmtime_rate(&args).await?;
    println!(
        "wasi-http sample, {} keep-alive connections for {:.0} s each: herd {herd:.0} req/s, \
         wasmtime serve {wasmtime:.0} req/s, ratio {:.2}×",
        args.connections,
        args.duration.as_secs_f64(),
        herd / wasmtime.max(1e-9)
    );
    Ok(())
}

async fn herd_rate(args: &HttpArgs<'_>) -> anyhow::Result<f64> {
    let cluster = Cluster::start(&[]).await?;
    let result = async {
        let image = cluster.push(args.wasm, "bench-http:v1").await?;
        let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), "default");
        let mut running = running_pods(pods.clone());
        pods.create(&PostParams::default(), &http_pod("http-bench", &image)?)
            .await?;
        running.wait_for("http-bench").await?;
        let ip = pods
            .get("http-bench")
            .await?
            .status
            .and_then(|s| s.pod_ip)
            .ok_or_else(|| anyhow!("the pod has no IP"))?;
        let addr: SocketAddr = format!("{ip}:8080").parse()?;
        wait_serving(addr).await?;
        load(addr, args.connections, args.duration).await
    }
    .await;
    cluster.stop().await;
    result
}

async fn wasmtime_rate(args: &HttpArgs<'_>) -> anyhow::Result<f64> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let mut child = Command::new(args.wasmtime)
        .arg("serve")
        .arg("--addr")
        .arg(addr.to_string())
        .arg("-Scli")
        .arg(args.wasm)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {} serve", args.wasmtime.display()))?;
    let result = async {
        wait_serving(addr).await?;
        load(addr, args.connections, args.duration).await
    }
    .await;
    let _ = child.kill().await;
    result
}

/// Waits until `addr` answers a request.
async fn wait_serving(addr: SocketAddr) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if get_ok(&addr).await {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("nothing answered on {addr}")
}

/// One GET / on a fresh connection; true for a 2xx answer.
pub async fn get_ok(addr: &SocketAddr) -> bool {
    async {
        let mut sender = connect(*addr).await?;
        let status = request(&mut sender, addr).await?;
        anyhow::Ok(status.is_success())
    }
    .await
    .unwrap_or(false)
}

type Body = http_body_util::Full<Bytes>;
pub type Sender = hyper::client::conn::http1::SendRequest<Body>;

/// A keep-alive HTTP/1.1 connection with TCP_NODELAY.
pub async fn connect(addr: SocketAddr) -> anyhow::Result<Sender> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    Ok(sender)
}

/// The API server as the benchmarks reach it: its address and the admin's TLS credentials.
#[derive(Clone)]
pub struct ApiEndpoint {
    pub addr: SocketAddr,
    tls: tokio_rustls::TlsConnector,
}

impl ApiEndpoint {
    /// The API server at `addr`, reached with the credentials of `kubeconfig` (the CA it trusts and its
    /// client certificate).
    pub fn new(addr: SocketAddr, kubeconfig: &herd_pki::Kubeconfig) -> anyhow::Result<Self> {
        let mut config =
            herd_pki::tls::client_config(&kubeconfig.ca_pem, Some(&kubeconfig.client))?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self {
            addr,
            tls: tokio_rustls::TlsConnector::from(std::sync::Arc::new(config)),
        })
    }

    /// A keep-alive HTTP/1.1 connection over TLS with TCP_NODELAY, as kubectl's.
    pub async fn connect(&self) -> anyhow::Result<Sender> {
        let stream = TcpStream::connect(self.addr).await?;
        stream.set_nodelay(true)?;
        let name = rustls::pki_types::ServerName::IpAddress(self.addr.ip().into());
        let stream = self.tls.connect(name, stream).await?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        Ok(sender)
    }
}

/// POSTs a JSON body; the answer's status (the body is read and dropped).
pub async fn post_json(
    sender: &mut Sender,
    addr: &SocketAddr,
    path: &str,
    body: Vec<u8>,
) -> anyhow::Result<hyper::StatusCode> {
    let req = hyper::Request::post(path)
        .header("host", addr.to_string())
        .header("content-type", "application/json")
        .body(Body::from(body))?;
    let resp = sender.send_request(req).await?;
    let status = resp.status();
    resp.into_body().collect().await?;
    Ok(status)
}

/// GETs a streaming `path` (a watch) and sends each line of its body as it arrives.
pub async fn watch_lines(
    api: &ApiEndpoint,
    path: &str,
) -> anyhow::Result<tokio::sync::mpsc::UnboundedReceiver<Vec<u8>>> {
    let mut sender = api.connect().await?;
    let req = hyper::Request::get(path)
        .header("host", api.addr.to_string())
        .body(Body::default())?;
    let resp = sender.send_request(req).await?;
    if !resp.status().is_success() {
        bail!("watching {path}: {}", resp.status());
    }
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let mut body = resp.into_body();
    tokio::spawn(async move {
        let _keep = sender;
        let mut pending: Vec<u8> = Vec::new();
        while let Some(Ok(frame)) = body.frame().await {
            let Ok(data) = frame.into_data() else {
                continue;
            };
            pending.extend_from_slice(&data);
            while let Some(end) = pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = pending.drain(..=end).collect();
                if tx.send(line).is_err() {
                    return;
                }
            }
        }
    });
    Ok(rx)
}

async fn request(sender: &mut Sender, addr: &SocketAddr) -> anyhow::Result<hyper::StatusCode> {
    let req = hyper::Request::get("/")
        .header("host", addr.to_string())
        .body(Body::default())?;
    let resp = sender.send_request(req).await?;
    let status = resp.status();
    resp.into_body().collect().await?;
    Ok(status)
}

/// `connections` keep-alive connections each sending GET / back to back for `duration`; requests/s.
async fn load(addr: SocketAddr, connections: usize, duration: Duration) -> anyhow::Result<f64> {
    let began = Instant::now();
    let deadline = began + duration;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..connections {
        tasks.spawn(async move {
            let mut sender = connect(addr).await?;
            let mut done = 0u64;
            while Instant::now() < deadline {
                let status = request(&mut sender, &addr).await?;
                if !status.is_success() {
                    bail!("{addr} answered {status}");
                }
                done += 1;
            }
            anyhow::Ok(done)
        });
    }
    let mut total = 0;
    while let Some(done) = tasks.join_next().await {
        total += done??;
    }
    Ok(total as f64 / began.elapsed().as_secs_f64())
}
