//! `herd bench pods`: pod start latency, from the create request to the pod observed Running through a
//! watch, against a real `herd up`. The first pod of an image pays for the pull and the compilation; the
//! following pods start from the node's caches. Each round runs on a fresh `herd up`: the sample's first and
//! second start there, then those of another image (the sample with a custom section: another digest, so it
//! is pulled and compiled again) on the now warm node, which leaves out the node's one-time set-up.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use futures::StreamExt as _;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::runtime::watcher;
use tokio::sync::mpsc;

use super::cluster::{Cluster, capacity_flags, percentile};

/// The pause between two pod starts.
const SETTLE: Duration = Duration::from_millis(200);

/// How long one pod may take to be Running before the benchmark gives up.
const POD_TIMEOUT: Duration = Duration::from_secs(60);

/// What one round (one fresh `herd up`) measured.
struct Round {
    /// The first and the second start of the sample on the fresh node.
    fresh: (Duration, Duration),
    /// The first and the second start of another image (the sample with a custom section) on the same,
    /// now warm, node.
    warm: (Duration, Duration),
    /// The cached starts after those, sorted (measured in the last round only).
    cached: Vec<Duration>,
    /// Per step of a cached start, its durations (sorted): answered, stored, bound, accepted, Running.
    steps: [Vec<Duration>; 5],
}

/// The steps of a start, each timed from the previous one.
const STEPS: [&str; 5] = [
    "create answered",
    "seen stored",
    "seen bound",
    "seen accepted by the node",
    "seen Running",
];

/// The store under the measured cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Store {
    Sqlite,
    Etcd,
}

pub async fn run(
    count: usize,
    rounds: usize,
    wasm: &Path,
    store_sync: &str,
    store: Store,
) -> anyhow::Result<()> {
    if rounds == 0 {
        bail!("--rounds must be at least 1");
    }
    let sample = std::fs::read(wasm).with_context(|| format!("reading {}", wasm.display()))?;
    let mut all = Vec::with_capacity(rounds);
    for round in 0..rounds {
        // The cached starts are measured on the last node; every started pod stays on it.
        let cached = if round + 1 == rounds { count } else { 0 };
        let mut flags = capacity_flags(cached + 4).to_vec();
        flags.extend(["--store-sync".to_string(), store_sync.to_string()]);
        let etcd = match store {
            Store::Sqlite => None,
            Store::Etcd => {
                let etcd = super::etcd::EtcdCluster::start(3).await?;
                flags.extend([
                    "--store".to_string(),
                    "etcd".to_string(),
                    "--etcd-servers".to_string(),
                    etcd.client_urls().join(","),
                ]);
                Some(etcd)
            }
        };
        let result = async {
            let cluster = Cluster::start(&flags).await?;
            let result = measure(&cluster, &sample, cached).await;
            cluster.stop().await;
            result
        }
        .await;
        if let Some(etcd) = etcd {
            etcd.stop().await;
        }
        all.push(result?);
    }
    let last = all.last().ok_or_else(|| anyhow!("no round"))?;
    println!(
        "pod start (create → Running, wasi-http sample, cached image, one at a time, {}): \
         {} pods, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        match store {
            Store::Sqlite => format!("SQLite --store-sync {store_sync}"),
            Store::Etcd => "etcd, 3 local members".to_string(),
        },
        last.cached.len(),
        ms(percentile(&last.cached, 50.0)),
        ms(percentile(&last.cached, 99.0)),
        ms(last.cached.last().copied().unwrap_or_default()),
    );
    let steps: Vec<String> = STEPS
        .iter()
        .zip(&last.steps)
        .map(|(step, times)| format!("{step} +{:.2} ms", ms(percentile(times, 50.0))))
        .collect();
    println!(
        "  where a cached start goes (p50 of each step): {}",
        steps.join(", ")
    );
    print_pairs(
        "first start of the sample on a fresh node (pull + compile, and the node's one-time set-up) vs its second start",
        &all.iter().map(|r| r.fresh).collect::<Vec<_>>(),
    );
    print_pairs(
        "first start of another image on that node, now warm (pull + compile) vs its second start",
        &all.iter().map(|r| r.warm).collect::<Vec<_>>(),
    );
    Ok(())
}

/// Prints the medians of first and second starts over the rounds, their ratio, and each pair.
fn print_pairs(what: &str, pairs: &[(Duration, Duration)]) {
    let mut firsts: Vec<Duration> = pairs.iter().map(|p| p.0).collect();
    let mut seconds: Vec<Duration> = pairs.iter().map(|p| p.1).collect();
    firsts.sort();
    seconds.sort();
    let (first, second) = (percentile(&firsts, 50.0), percentile(&seconds, 50.0));
    let each: Vec<String> = pairs
        .iter()
        .map(|(first, second)| format!("{:.1}/{:.1}", ms(*first), ms(*second)))
        .collect();
    println!(
        "{what}, {} rounds: medians {:.1} ms vs {:.1} ms, ratio {:.0}× (each, ms: {})",
        pairs.len(),
        ms(first),
        ms(second),
        first.as_secs_f64() / second.as_secs_f64().max(1e-9),
        each.join(", ")
    );
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

/// Starts pods one at a time and times each from its create request to Running seen on a watch.
struct Starter {
    api: super::http::ApiEndpoint,
    running: RunningPods,
    creator: super::http::Sender,
}

impl Starter {
    async fn new(api: super::http::ApiEndpoint) -> anyhow::Result<Self> {
        // Creates and the watch go over plain HTTP/1.1 connections with TCP_NODELAY, as kubectl's (Go's)
        // do; kube-rs' client leaves Nagle's algorithm on, which adds delayed-ACK waits to small writes.
        Ok(Self {
            running: raw_running_pods(&api).await?,
            creator: api.connect().await?,
            api,
        })
    }

    /// Creates pod `name` of `image` and waits for it to be Running: the whole time, and its steps.
    async fn start(
        &mut self,
        name: &str,
        image: &str,
    ) -> anyhow::Result<(Duration, [Duration; 5])> {
        let body = serde_json::to_vec(&http_pod(name, image)?)?;
        let began = Instant::now();
        let status = super::http::post_json(
            &mut self.creator,
            &self.api.addr,
            "/api/v1/namespaces/default/pods",
            body,
        )
        .await?;
        let answered = Instant::now();
        if !status.is_success() {
            bail!("creating pod {name}: {status}");
        }
        let at = tokio::time::timeout(POD_TIMEOUT, self.running.wait_for(name))
            .await
            .map_err(|_| anyhow!("pod {name} was not Running within {POD_TIMEOUT:?}"))??;
        // Each step from the one before; a step the watch skipped (two changes in one event) takes 0.
        let mut times = [answered, at, at, at, at];
        for (slot, stage) in [Stage::Stored, Stage::Bound, Stage::Accepted]
            .into_iter()
            .enumerate()
        {
            times[slot + 1] = self.running.seen_at(name, stage).unwrap_or(times[slot]);
        }
        let mut previous = began;
        let steps = times.map(|t| {
            let step = t.saturating_duration_since(previous);
            previous = previous.max(t);
            step
        });
        // The pod's background work (its events) is done before the next start, so each figure is one
        // pod's start and not the tail of the one before.
        tokio::time::sleep(SETTLE).await;
        Ok((at.saturating_duration_since(began), steps))
    }
}

/// One round on a fresh node: the sample's first and second start, another image's, then `count` cached
/// starts.
async fn measure(cluster: &Cluster, sample: &[u8], count: usize) -> anyhow::Result<Round> {
    let mut starter = Starter::new(cluster.api.clone()).await?;
    let image = cluster.push_bytes(sample, "bench-start:v1").await?;
    let fresh = (
        starter.start("fresh-first", &image).await?.0,
        starter.start("fresh-second", &image).await?.0,
    );
    let other = with_custom_section(sample, "herd-bench", b"another image");
    let other = cluster.push_bytes(&other, "bench-start:v2").await?;
    let warm = (
        starter.start("warm-first", &other).await?.0,
        starter.start("warm-second", &other).await?.0,
    );
    let mut cached = Vec::with_capacity(count);
    let mut steps: [Vec<Duration>; 5] = Default::default();
    for i in 0..count {
        let (total, times) = starter.start(&format!("start-{i:05}"), &image).await?;
        cached.push(total);
        for (all, time) in steps.iter_mut().zip(times) {
            all.push(time);
        }
    }
    cached.sort();
    for all in &mut steps {
        all.sort();
    }
    Ok(Round {
        fresh,
        warm,
        cached,
        steps,
    })
}

/// `wasm` (a module or a component) with a custom section appended: the same program, another digest.
pub fn with_custom_section(wasm: &[u8], name: &str, payload: &[u8]) -> Vec<u8> {
    use wasm_encoder::Section as _;
    let mut out = wasm.to_vec();
    wasm_encoder::CustomSection {
        name: name.into(),
        data: payload.into(),
    }
    .append_to(&mut out);
    out
}

/// [`running_pods`] over a raw watch of the default namespace (no kube-rs client in between), which also
/// notes when each pod was first seen at each [`Stage`].
async fn raw_running_pods(api: &super::http::ApiEndpoint) -> anyhow::Result<RunningPods> {
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
            let Some(name) = object["metadata"]["name"].as_str() else {
                continue;
            };
            let status = &object["status"];
            let stage = if status["phase"] == "Running" {
                Stage::Running
            } else if !status["containerStatuses"].is_null() {
                Stage::Accepted
            } else if object["spec"]["nodeName"].is_string() {
                Stage::Bound
            } else {
                Stage::Stored
            };
            if tx.send((name.to_string(), stage, now)).is_err() {
                return;
            }
        }
    });
    Ok(RunningPods {
        seen: HashMap::new(),
        events,
    })
}

/// How far a pod's start had got when a watch event showed it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Stage {
    /// Created, not yet bound.
    Stored,
    /// Bound to a node by the scheduler.
    Bound,
    /// The node has written a status with container statuses (the containers are being created).
    Accepted,
    /// Phase Running.
    Running,
}

/// When each pod was first seen at each stage (Running at least), fed by one watch of the namespace.
pub struct RunningPods {
    seen: HashMap<(String, Stage), Instant>,
    events: mpsc::UnboundedReceiver<(String, Stage, Instant)>,
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
                && tx.send((name, Stage::Running, Instant::now())).is_err()
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
        let key = (name.to_string(), Stage::Running);
        loop {
            if let Some(at) = self.seen.get(&key) {
                return Ok(*at);
            }
            let (pod, stage, at) = self
                .events
                .recv()
                .await
                .ok_or_else(|| anyhow!("the pod watch ended"))?;
            self.seen.entry((pod, stage)).or_insert(at);
        }
    }

    /// When `name` was first seen at `stage`, among the events received so far.
    pub fn seen_at(&mut self, name: &str, stage: Stage) -> Option<Instant> {
        self.drain();
        self.seen.get(&(name.to_string(), stage)).copied()
    }

    /// How many distinct pods have been seen Running so far (without waiting).
    pub fn count_now(&mut self) -> usize {
        self.drain();
        self.seen
            .keys()
            .filter(|(_, stage)| *stage == Stage::Running)
            .count()
    }

    fn drain(&mut self) {
        while let Ok((pod, stage, at)) = self.events.try_recv() {
            self.seen.entry((pod, stage)).or_insert(at);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_custom_section_keeps_the_program_and_changes_the_bytes() {
        // The smallest module and component headers, then the same with a section appended.
        let module = b"\0asm\x01\0\0\0".to_vec();
        let appended = with_custom_section(&module, "n", b"xy");
        assert_eq!(&appended[..8], &module[..]);
        // id 0, size 4 (name length 1, "n", "xy").
        assert_eq!(&appended[8..], &[0, 4, 1, b'n', b'x', b'y']);
        let long = with_custom_section(&module, "r", &[7; 200]);
        // 202 bytes of content: LEB128 0xca 0x01.
        assert_eq!(&long[8..12], &[0, 0xca, 0x01, 1]);
        assert_eq!(long.len(), 8 + 3 + 202);
    }
}
