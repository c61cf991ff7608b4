//! `herd bench pods`: pod start latency, from the create request to the pod observed Running through a
//! watch, against a real `herd up`. The first pod of an image pays for the pull and the compilation; the
//! following pods start from the node's caches.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};
use futures::StreamExt as _;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::runtime::watcher;
use tokio::sync::mpsc;

use super::cluster::{Cluster, percentile};

/// The pause between two pod starts.
const SETTLE: Duration = Duration::from_millis(200);

/// How long one pod may take to be Running before the benchmark gives up.
const POD_TIMEOUT: Duration = Duration::from_secs(60);

pub struct StartReport {
    pub first: Duration,
    pub second: Duration,
    /// The cached starts after the first, sorted.
    pub cached: Vec<Duration>,
}

pub async fn run(count: usize, wasm: &Path) -> anyhow::Result<()> {
    // Every started pod stays: the node must take them all.
    let cluster = Cluster::start(&["--max-pods".to_string(), (count + 10).to_string()]).await?;
    let result = measure(&cluster, count, wasm).await;
    cluster.stop().await;
    let report = result?;
    println!(
        "pod start (create → Running, wasi-http sample, cached image, one at a time): {} pods, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        report.cached.len(),
        ms(percentile(&report.cached, 50.0)),
        ms(percentile(&report.cached, 99.0)),
        ms(report.cached.last().copied().unwrap_or_default()),
    );
    println!(
        "first start of the image (pull + compile): {:.1} ms; second start: {:.1} ms; ratio {:.0}×",
        ms(report.first),
        ms(report.second),
        report.first.as_secs_f64() / report.second.as_secs_f64().max(1e-9)
    );
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// A wasi-http pod of `image` listening on 8080.
pub fn http_pod(name: &str, image: &str) -> anyhow::Result<Pod> {
    Ok(serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "bench"}},
        "spec": {"containers": [{"name": "web", "image": image, "ports": [{"containerPort": 8080}]}]},
    }))?)
}

async fn measure(cluster: &Cluster, count: usize, wasm: &Path) -> anyhow::Result<StartReport> {
    let image = cluster.push(wasm, "bench-start:v1").await?;
    // Creates and the watch go over plain HTTP/1.1 connections with TCP_NODELAY, as kubectl's (Go's)
    // do; kube-rs' client leaves Nagle's algorithm on, which adds delayed-ACK waits to small writes.
    let mut running = raw_running_pods(cluster.api).await?;
    let mut creator = super::http::connect(cluster.api).await?;
    let mut start = async |name: String| -> anyhow::Result<Duration> {
        let body = serde_json::to_vec(&http_pod(&name, &image)?)?;
        let began = Instant::now();
        let status = super::http::post_json(
            &mut creator,
            &cluster.api,
            "/api/v1/namespaces/default/pods",
            body,
        )
        .await?;
        if !status.is_success() {
            bail!("creating pod {name}: {status}");
        }
        tokio::time::timeout(POD_TIMEOUT, running.wait_for(&name))
            .await
            .map_err(|_| anyhow!("pod {name} was not Running within {POD_TIMEOUT:?}"))?
            .map(|at| at.saturating_duration_since(began))
    };
    // One pod at a time, each after the previous one's background work (its events) is done, so each
    // figure is one pod's start and not the tail of the one before.
    let first = start("start-first".into()).await?;
    tokio::time::sleep(SETTLE).await;
    let second = start("start-second".into()).await?;
    let mut cached = Vec::with_capacity(count);
    for i in 0..count {
        tokio::time::sleep(SETTLE).await;
        cached.push(start(format!("start-{i:05}")).await?);
    }
    cached.sort();
    Ok(StartReport {
        first,
        second,
        cached,
    })
}

/// [`running_pods`] over a raw watch of the default namespace (no kube-rs client in between).
async fn raw_running_pods(api: std::net::SocketAddr) -> anyhow::Result<RunningPods> {
    let (tx, events) = mpsc::unbounded_channel();
    let mut lines =
        super::http::watch_lines(api, "/api/v1/namespaces/default/pods?watch=true").await?;
    tokio::spawn(async move {
        while let Some(line) = lines.recv().await {
            let now = Instant::now();
            let Ok(event) = serde_json::from_slice::<serde_json::Value>(&line) else {
                continue;
            };
            let object = &event["object"];
            if object["status"]["phase"] == "Running"
                && let Some(name) = object["metadata"]["name"].as_str()
                && tx.send((name.to_string(), now)).is_err()
            {
                return;
            }
        }
    });
    Ok(RunningPods {
        seen: HashMap::new(),
        events,
    })
}

/// When each pod was first seen Running, fed by one watch of the namespace.
pub struct RunningPods {
    seen: HashMap<String, Instant>,
    events: mpsc::UnboundedReceiver<(String, Instant)>,
}

pub fn running_pods(pods: Api<Pod>) -> RunningPods {
    let (tx, events) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut stream = watcher(pods, watcher::Config::default()).boxed();
        while let Some(event) = stream.next().await {
            let Ok(watcher::Event::Apply(pod) | watcher::Event::InitApply(pod)) = event else {
                continue;
            };
            let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
            if phase == Some("Running")
                && let Some(name) = pod.metadata.name
                && tx.send((name, Instant::now())).is_err()
            {
                return;
            }
        }
    });
    RunningPods {
        seen: HashMap::new(),
        events,
    }
}

impl RunningPods {
    /// When `name` was first seen Running (waiting for it if it has not been yet).
    pub async fn wait_for(&mut self, name: &str) -> anyhow::Result<Instant> {
        loop {
            if let Some(at) = self.seen.get(name) {
                return Ok(*at);
            }
            let (pod, at) = self
                .events
                .recv()
                .await
                .ok_or_else(|| anyhow!("the pod watch ended"))?;
            self.seen.entry(pod).or_insert(at);
        }
    }

    /// How many distinct pods have been seen Running so far (without waiting).
    pub fn count_now(&mut self) -> usize {
        while let Ok((pod, at)) = self.events.try_recv() {
            self.seen.entry(pod).or_insert(at);
        }
        self.seen.len()
    }
}
