//! `herd bench deploy`: a Deployment of many replicas of an image the node has never run, as a user meets it.
//!
//! Each round starts a fresh `herd up` (new data dir), pushes a copy of the sample with a custom section
//! holding the time (a digest no node has seen) to its registry, and creates a Deployment of `replicas` pods
//! of it with nothing started before (the cold start). It times, from the create request, when a watch of
//! the pods has seen them all created, Running and Ready, and when the Deployment's status says what
//! `kubectl rollout status` waits for; meanwhile a thread samples herd's resident memory every 20 ms, from
//! before the create until 2 s after the rollout (peak and final growth). Then it deletes that Deployment,
//! times until its pods are gone, and measures a second Deployment of the same image on the now warm node
//! the same way, for reference.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context as _, anyhow, bail};
use futures::StreamExt as _;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{DeleteParams, PostParams};
use kube::runtime::watcher;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::cluster::{Cluster, capacity_flags, rss_of};
use super::pods::with_custom_section;

/// How often herd's resident memory is sampled.
const RSS_EVERY: Duration = Duration::from_millis(20);

/// How long after the rollout the final memory is read (the pods have settled: no more status writes).
const SETTLE: Duration = Duration::from_secs(2);

/// The goals of issue 10 for a cold Deployment of 1,000 replicas on the 2-core VM.
const GOAL_READY: Duration = Duration::from_secs(2);
const GOAL_PEAK_MIB: f64 = 300.0;
const GOAL_REPLICAS: usize = 1000;

/// What the Deployment runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    /// An idle wasi-http component (the http-hello sample).
    Http,
    /// A WASI p1 module that keeps running, printing a line every 100 ms (the hello sample).
    Module,
    /// Both, one after the other, each on its own fresh node.
    Both,
}

impl Kind {
    fn workloads(self) -> &'static [Kind] {
        match self {
            Kind::Http => &[Kind::Http],
            Kind::Module => &[Kind::Module],
            Kind::Both => &[Kind::Http, Kind::Module],
        }
    }

    fn label(self) -> &'static str {
        match self {
            Kind::Http => "wasi-http, idle",
            Kind::Module => "p1 module, running",
            Kind::Both => "both",
        }
    }

    fn short(self) -> &'static str {
        match self {
            Kind::Http => "http",
            Kind::Module => "module",
            Kind::Both => "both",
        }
    }
}

pub struct DeployArgs<'a> {
    pub replicas: usize,
    pub kind: Kind,
    pub rounds: usize,
    pub http_wasm: &'a Path,
    pub module_wasm: &'a Path,
    pub timeout: Duration,
}

/// The figures of one Deployment, each from its create request.
#[derive(Debug, Clone, Copy)]
struct Figures {
    /// A watch of the pods has seen all replicas created.
    created: Duration,
    /// … all of them Running.
    running: Duration,
    /// … all of them Ready.
    ready: Duration,
    /// The Deployment's status says the rollout is complete, as `kubectl rollout status` reads it.
    rollout: Duration,
    /// herd's resident memory just before the create.
    rss_before: u64,
    /// The highest sample from the create until the final reading, minus `rss_before`.
    peak_growth: u64,
    /// `SETTLE` after the rollout, minus `rss_before`.
    final_growth: u64,
}

/// One round: the cold Deployment on a fresh node, the time its pods took to go, the warm one.
struct Round {
    kind: Kind,
    cold: Figures,
    deleted: Duration,
    warm: Figures,
}

pub async fn run(args: DeployArgs<'_>) -> anyhow::Result<()> {
    if args.rounds == 0 || args.replicas == 0 {
        bail!("--rounds and --replicas must be at least 1");
    }
    let mut rounds = Vec::new();
    for &kind in args.kind.workloads() {
        let wasm = match kind {
            Kind::Module => args.module_wasm,
            _ => args.http_wasm,
        };
        let sample = std::fs::read(wasm).with_context(|| format!("reading {}", wasm.display()))?;
        for round in 0..args.rounds {
            // Room for the second Deployment's pods while the first one's addresses are still returning.
            let cluster = Cluster::start(&capacity_flags(2 * args.replicas)).await?;
            let result = measure(&cluster, kind, round, &sample, &args).await;
            cluster.stop().await;
            let measured = result?;
            eprintln!(
                "deploy {} round {}: cold rollout {:.2} s, warm {:.2} s",
                kind.short(),
                round + 1,
                measured.cold.rollout.as_secs_f64(),
                measured.warm.rollout.as_secs_f64()
            );
            rounds.push(measured);
        }
    }
    print_table(args.replicas, &rounds);
    Ok(())
}

async fn measure(
    cluster: &Cluster,
    kind: Kind,
    round: usize,
    sample: &[u8],
    args: &DeployArgs<'_>,
) -> anyhow::Result<Round> {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let fresh = with_custom_section(
        sample,
        "herd-bench-deploy",
        format!("{} round {round} at {nanos}", kind.short()).as_bytes(),
    );
    let image = cluster
        .push_bytes(&fresh, &format!("bench-deploy-{}:r{round}", kind.short()))
        .await?;
    let pid = cluster.pid()?;
    let deployments: Api<Deployment> = Api::namespaced(cluster.client.clone(), "default");

    let cold_name = format!("cold-{}", kind.short());
    let mut cold = Watched::start(cluster, &cold_name).await?;
    let cold_figures = cold
        .roll_out(&deployments, kind, &image, args, pid)
        .await
        .context("the cold Deployment")?;

    let began = Instant::now();
    deployments
        .delete(&cold_name, &DeleteParams::background())
        .await
        .with_context(|| format!("deleting Deployment {cold_name}"))?;
    cold.wait_gone(args.timeout).await?;
    let deleted = began.elapsed();
    drop(cold);

    let warm_name = format!("warm-{}", kind.short());
    let mut warm = Watched::start(cluster, &warm_name).await?;
    let warm_figures = warm
        .roll_out(&deployments, kind, &image, args, pid)
        .await
        .context("the warm Deployment")?;
    Ok(Round {
        kind,
        cold: cold_figures,
        deleted,
        warm: warm_figures,
    })
}

/// The Deployment named `name` of `replicas` pods of `image`, labelled `app: <name>`.
fn deployment(name: &str, kind: Kind, image: &str, replicas: usize) -> anyhow::Result<Deployment> {
    let container = match kind {
        Kind::Module => serde_json::json!({
            "name": "ticker",
            "image": image,
            "args": ["--every-ms=100", "--forever"],
        }),
        _ => serde_json::json!({
            "name": "web",
            "image": image,
            "ports": [{"name": "http", "containerPort": 8080}],
            "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
        }),
    };
    Ok(serde_json::from_value(serde_json::json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [container]},
            },
        },
    }))?)
}

/// Whether `kubectl rollout status` would call the rollout of `d` complete: its controller has seen the
/// current generation and every wanted replica is updated, ready and available, with no old one left.
/// An error when the rollout's progress deadline was exceeded (as kubectl reports it).
fn rollout_complete(d: &Deployment) -> anyhow::Result<bool> {
    let Some(status) = &d.status else {
        return Ok(false);
    };
    if status.conditions.iter().flatten().any(|c| {
        c.type_.as_deref() == Some("Progressing")
            && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
    }) {
        bail!(
            "deployment {:?} exceeded its progress deadline",
            d.metadata.name.as_deref().unwrap_or_default()
        );
    }
    let generation = d.metadata.generation.unwrap_or(0);
    if status.observed_generation.unwrap_or(0) < generation {
        return Ok(false);
    }
    let wanted = d.spec.replicas.unwrap_or(1);
    Ok([
        status.replicas,
        status.updated_replicas,
        status.ready_replicas,
        status.available_replicas,
    ]
    .iter()
    .all(|n| n.unwrap_or(0) == wanted))
}

/// What a pod watch event says of one pod.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct PodState {
    running: bool,
    ready: bool,
}

impl PodState {
    fn of(pod: &Pod) -> Self {
        let status = pod.status.as_ref();
        Self {
            running: status.and_then(|s| s.phase.as_deref()) == Some("Running"),
            ready: status
                .and_then(|s| s.conditions.as_ref())
                .into_iter()
                .flatten()
                .any(|c| c.type_ == "Ready" && c.status == "True"),
        }
    }
}

/// A watch event, stamped when the benchmark received it.
enum Seen {
    /// A watch has listed what exists and is following changes.
    Synced,
    /// The pod watch lists again (after it lost its place): the pods it lists next are all there are.
    Relisting,
    Deployment(Box<Deployment>),
    Pod(String, PodState),
    PodGone(String),
}

/// The Deployment `name` and its pods (`app: <name>`), followed through two watches started before it
/// exists.
struct Watched {
    name: String,
    events: mpsc::UnboundedReceiver<(Instant, Seen)>,
    pods: HashMap<String, PodState>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Watched {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Watched {
    /// Starts both watches and waits until they follow changes.
    async fn start(cluster: &Cluster, name: &str) -> anyhow::Result<Self> {
        let (tx, events) = mpsc::unbounded_channel();
        let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), "default");
        let deployments: Api<Deployment> = Api::namespaced(cluster.client.clone(), "default");
        let pod_config = watcher::Config::default().labels(&format!("app={name}"));
        let deployment_config = watcher::Config::default().fields(&format!("metadata.name={name}"));
        let pod_tx = tx.clone();
        let pod_task = tokio::spawn(async move {
            let mut stream = watcher(pods, pod_config).boxed();
            while let Some(event) = stream.next().await {
                let seen = match event {
                    Ok(watcher::Event::Init) => Seen::Relisting,
                    Ok(watcher::Event::InitDone) => Seen::Synced,
                    Ok(watcher::Event::Apply(pod) | watcher::Event::InitApply(pod)) => {
                        let state = PodState::of(&pod);
                        match (pod.metadata.deletion_timestamp, pod.metadata.name) {
                            // A pod being deleted no longer counts as one of the replicas.
                            (None, Some(name)) => Seen::Pod(name, state),
                            (Some(_), Some(name)) => Seen::PodGone(name),
                            _ => continue,
                        }
                    }
                    Ok(watcher::Event::Delete(pod)) => match pod.metadata.name {
                        Some(name) => Seen::PodGone(name),
                        None => continue,
                    },
                    _ => continue,
                };
                if pod_tx.send((Instant::now(), seen)).is_err() {
                    return;
                }
            }
        });
        let deployment_task = tokio::spawn(async move {
            let mut stream = watcher(deployments, deployment_config).boxed();
            while let Some(event) = stream.next().await {
                let seen = match event {
                    Ok(watcher::Event::InitDone) => Seen::Synced,
                    Ok(watcher::Event::Apply(d) | watcher::Event::InitApply(d)) => {
                        Seen::Deployment(Box::new(d))
                    }
                    _ => continue,
                };
                if tx.send((Instant::now(), seen)).is_err() {
                    return;
                }
            }
        });
        let mut watched = Self {
            name: name.to_string(),
            events,
            pods: HashMap::new(),
            tasks: vec![pod_task, deployment_task],
        };
        let mut synced = 0;
        while synced < 2 {
            let (_, seen) = tokio::time::timeout(Duration::from_secs(30), watched.next())
                .await
                .map_err(|_| anyhow!("the watches of {name} did not start within 30 s"))??;
            if let Seen::Synced = seen {
                synced += 1;
            }
        }
        Ok(watched)
    }

    /// The next event, with the pod map brought up to date.
    async fn next(&mut self) -> anyhow::Result<(Instant, Seen)> {
        let (at, seen) = self
            .events
            .recv()
            .await
            .ok_or_else(|| anyhow!("the watches of {} ended", self.name))?;
        match &seen {
            Seen::Pod(name, state) => {
                self.pods.insert(name.clone(), *state);
            }
            Seen::PodGone(name) => {
                self.pods.remove(name);
            }
            Seen::Relisting => self.pods.clear(),
            Seen::Synced | Seen::Deployment(_) => {}
        }
        Ok((at, seen))
    }

    /// Creates the Deployment and follows it until its rollout is complete and all its pods are Ready;
    /// the figures include memory `SETTLE` after.
    async fn roll_out(
        &mut self,
        deployments: &Api<Deployment>,
        kind: Kind,
        image: &str,
        args: &DeployArgs<'_>,
        pid: u32,
    ) -> anyhow::Result<Figures> {
        let replicas = args.replicas;
        let object = deployment(&self.name, kind, image, replicas)?;
        let rss_before = rss_of(pid)?;
        let sampler = RssSampler::start(pid);
        let began = Instant::now();
        deployments
            .create(&PostParams::default(), &object)
            .await
            .with_context(|| format!("creating Deployment {}", self.name))?;
        let (mut created, mut running, mut ready, mut rollout) = (None, None, None, None);
        let deadline = tokio::time::Instant::now() + args.timeout;
        while ready.is_none() || rollout.is_none() {
            let Ok(next) = tokio::time::timeout_at(deadline, self.next()).await else {
                let count = |f: fn(&PodState) -> bool| self.pods.values().filter(|s| f(s)).count();
                bail!(
                    "after {:?}: {} of {replicas} pods created, {} Running, {} Ready; rollout {}",
                    args.timeout,
                    self.pods.len(),
                    count(|s| s.running),
                    count(|s| s.ready),
                    if rollout.is_some() {
                        "complete"
                    } else {
                        "not complete"
                    }
                );
            };
            let (at, seen) = next?;
            match seen {
                Seen::Deployment(d) => {
                    if rollout.is_none() && rollout_complete(&d)? {
                        rollout = Some(at);
                    }
                }
                Seen::Pod(..) => {
                    let all = |f: fn(&PodState) -> bool| {
                        self.pods.len() >= replicas
                            && self.pods.values().filter(|s| f(s)).count() >= replicas
                    };
                    if created.is_none() && self.pods.len() >= replicas {
                        created = Some(at);
                    }
                    if running.is_none() && all(|s| s.running) {
                        running = Some(at);
                    }
                    if ready.is_none() && all(|s| s.ready) {
                        ready = Some(at);
                    }
                }
                Seen::PodGone(_) | Seen::Relisting | Seen::Synced => {}
            }
        }
        tokio::time::sleep(SETTLE).await;
        let rss_after = rss_of(pid)?;
        let peak = sampler.stop().max(rss_after);
        let since = |t: Option<Instant>| t.map_or(Duration::ZERO, |t| t.duration_since(began));
        Ok(Figures {
            created: since(created),
            running: since(running),
            ready: since(ready),
            rollout: since(rollout),
            rss_before,
            peak_growth: peak.saturating_sub(rss_before),
            final_growth: rss_after.saturating_sub(rss_before),
        })
    }

    /// Waits until the watch has seen every pod of the Deployment go.
    async fn wait_gone(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        while !self.pods.is_empty() {
            tokio::time::timeout_at(deadline, self.next())
                .await
                .map_err(|_| {
                    anyhow!(
                        "{} pods of {} still there {timeout:?} after its deletion",
                        self.pods.len(),
                        self.name
                    )
                })??;
        }
        Ok(())
    }
}

/// The highest resident memory of a process, sampled every `RSS_EVERY` on a thread of its own (so a busy
/// benchmark runtime never delays a sample).
struct RssSampler {
    peak: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl RssSampler {
    fn start(pid: u32) -> Self {
        let peak = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (peak, stop) = (peak.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if let Ok(rss) = rss_of(pid) {
                        peak.fetch_max(rss, Ordering::Relaxed);
                    }
                    std::thread::sleep(RSS_EVERY);
                }
            })
        };
        Self { peak, stop, thread }
    }

    /// Stops sampling; the highest sample.
    fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.thread.join();
        self.peak.load(Ordering::Relaxed)
    }
}

/// Each figure's median (the lower one of an even count) over rounds.
fn median(all: &[Figures]) -> Figures {
    fn mid<T: Ord + Copy + Default>(mut values: Vec<T>) -> T {
        values.sort();
        values
            .get(values.len().saturating_sub(1) / 2)
            .copied()
            .unwrap_or_default()
    }
    let time = |f: fn(&Figures) -> Duration| mid(all.iter().map(f).collect());
    let bytes = |f: fn(&Figures) -> u64| mid(all.iter().map(f).collect());
    Figures {
        created: time(|f| f.created),
        running: time(|f| f.running),
        ready: time(|f| f.ready),
        rollout: time(|f| f.rollout),
        rss_before: bytes(|f| f.rss_before),
        peak_growth: bytes(|f| f.peak_growth),
        final_growth: bytes(|f| f.final_growth),
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / 1_048_576.0
}

fn print_table(replicas: usize, rounds: &[Round]) {
    println!(
        "deploy: a Deployment of {replicas} replicas on a fresh `herd up` (cold: the image never pulled, nothing \
         started before), then a second Deployment of the same image on that node (warm); times from the \
         create request, RSS of herd up from just before it"
    );
    let header = [
        "workload",
        "node",
        "pods created",
        "all Running",
        "all Ready",
        "rollout status",
        "RSS before",
        "RSS peak",
        "RSS final",
        "goal met",
    ];
    let mut rows: Vec<[String; 10]> = Vec::new();
    let secs = |d: Duration| format!("{:.2} s", d.as_secs_f64());
    let row = |kind: Kind, node: &str, f: &Figures, goal: String| {
        [
            kind.label().to_string(),
            node.to_string(),
            secs(f.created),
            secs(f.running),
            secs(f.ready),
            secs(f.rollout),
            format!("{:.0} MiB", mib(f.rss_before)),
            format!("+{:.0} MiB", mib(f.peak_growth)),
            format!("+{:.0} MiB", mib(f.final_growth)),
            goal,
        ]
    };
    // The goals are set for 1,000 replicas; a smaller Deployment is not judged by them.
    let judge = |f: &Figures| match replicas >= GOAL_REPLICAS {
        false => "-".to_string(),
        true if f.rollout <= GOAL_READY && mib(f.peak_growth) <= GOAL_PEAK_MIB => "yes".into(),
        true => "no".into(),
    };
    for kind in [Kind::Http, Kind::Module] {
        let of_kind: Vec<&Round> = rounds.iter().filter(|r| r.kind == kind).collect();
        let several = of_kind.len() > 1;
        for (i, r) in of_kind.iter().enumerate() {
            let node = |n: &str| {
                if several {
                    format!("{n} #{}", i + 1)
                } else {
                    n.to_string()
                }
            };
            rows.push(row(kind, &node("cold"), &r.cold, judge(&r.cold)));
            rows.push(row(kind, &node("warm"), &r.warm, String::new()));
        }
        if several {
            let cold = median(&of_kind.iter().map(|r| r.cold).collect::<Vec<_>>());
            let warm = median(&of_kind.iter().map(|r| r.warm).collect::<Vec<_>>());
            rows.push(row(kind, "cold median", &cold, judge(&cold)));
            rows.push(row(kind, "warm median", &warm, String::new()));
        }
    }
    rows.push([
        format!("goal (cold, {GOAL_REPLICAS} replicas)"),
        String::new(),
        String::new(),
        String::new(),
        String::new(),
        format!("≤ {:.2} s", GOAL_READY.as_secs_f64()),
        String::new(),
        format!("≤ +{GOAL_PEAK_MIB:.0} MiB"),
        String::new(),
        String::new(),
    ]);
    let width = |i: usize| {
        rows.iter()
            .map(|r| r[i].chars().count())
            .chain([header[i].len()])
            .max()
            .unwrap_or(0)
    };
    let widths: Vec<usize> = (0..header.len()).map(width).collect();
    let line = |cells: &[&str]| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}", w = *w))
            .collect();
        println!("  {}", padded.join("  ").trim_end());
    };
    line(&header);
    for r in &rows {
        line(&r.iter().map(String::as_str).collect::<Vec<_>>());
    }
    for kind in [Kind::Http, Kind::Module] {
        let deleted: Vec<String> = rounds
            .iter()
            .filter(|r| r.kind == kind)
            .map(|r| format!("{:.2} s", r.deleted.as_secs_f64()))
            .collect();
        if !deleted.is_empty() {
            println!(
                "  {}: the cold Deployment's pods were gone {} after its deletion",
                kind.label(),
                deleted.join(", ")
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_status(generation: i64, status: serde_json::Value) -> Deployment {
        let mut d = deployment("d", Kind::Http, "registry/image:v1", 3).unwrap();
        d.metadata.generation = Some(generation);
        d.status = Some(serde_json::from_value(status).unwrap());
        d
    }

    #[test]
    fn a_rollout_is_complete_when_kubectl_rollout_status_says_so() {
        let all = serde_json::json!({"observedGeneration": 1, "replicas": 3, "updatedReplicas": 3,
            "readyReplicas": 3, "availableReplicas": 3});
        assert!(rollout_complete(&with_status(1, all.clone())).unwrap());
        // The controller has not seen the current generation yet.
        assert!(!rollout_complete(&with_status(2, all)).unwrap());
        // One not yet available, or an old one still there.
        let unavailable = serde_json::json!({"observedGeneration": 1, "replicas": 3,
            "updatedReplicas": 3, "readyReplicas": 3, "availableReplicas": 2});
        assert!(!rollout_complete(&with_status(1, unavailable)).unwrap());
        let old_left = serde_json::json!({"observedGeneration": 1, "replicas": 4,
            "updatedReplicas": 3, "readyReplicas": 3, "availableReplicas": 3});
        assert!(!rollout_complete(&with_status(1, old_left)).unwrap());
        let mut fresh = deployment("d", Kind::Module, "registry/image:v1", 3).unwrap();
        assert!(!rollout_complete(&fresh).unwrap());
        fresh.status = Some(
            serde_json::from_value(serde_json::json!({"conditions": [{"type": "Progressing",
                "status": "False", "reason": "ProgressDeadlineExceeded"}]}))
            .unwrap(),
        );
        assert!(rollout_complete(&fresh).is_err());
    }

    #[test]
    fn medians_are_taken_per_figure() {
        let figures = |secs: u64, mib: u64| Figures {
            created: Duration::from_secs(secs),
            running: Duration::from_secs(secs),
            ready: Duration::from_secs(secs),
            rollout: Duration::from_secs(secs),
            rss_before: 100 << 20,
            peak_growth: mib << 20,
            final_growth: mib << 20,
        };
        let m = median(&[figures(3, 10), figures(1, 30), figures(2, 20)]);
        assert_eq!(m.rollout, Duration::from_secs(2));
        assert_eq!(m.peak_growth, 20 << 20);
        let even = median(&[figures(4, 40), figures(1, 10)]);
        assert_eq!(even.rollout, Duration::from_secs(1));
        assert_eq!(median(&[]).rollout, Duration::ZERO);
    }

    #[test]
    fn pod_state_reads_phase_and_the_ready_condition() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p"},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "False"}]},
        }))
        .unwrap();
        assert_eq!(
            PodState::of(&pod),
            PodState {
                running: true,
                ready: false
            }
        );
        let ready: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p"},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]},
        }))
        .unwrap();
        assert!(PodState::of(&ready).ready);
        assert_eq!(PodState::of(&Pod::default()), PodState::default());
    }
}
