//! `herd bench coldstart`: the first request to a Service whose wasi-http Deployment scaled to zero,
//! beside requests to the same Service warm.
//!
//! It starts a real `herd up`, pushes the http-hello sample, and creates a Deployment of it annotated
//! `autoscaling.herd.dev/idle-timeout` (short) behind a Service. Each round waits until the Deployment is
//! at zero and its pod is gone, then times one request through the Service's cluster IP from this process
//! (a new TCP connection, an HTTP/1.1 request, the whole answer): the proxy holds the connection while the
//! pod starts. Meanwhile watches of the Deployment, its pods and its EndpointSlices note when each step of
//! the wake-up was seen (scaled, pod created, bound, Running, Ready, endpoint ready), from the moment the
//! request was sent. Then it times `warm` requests the same way (each on a new connection) while the pod
//! runs, and lets it go idle again. It prints p50/p99 cold and warm side by side, and the steps' medians.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use futures::StreamExt as _;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Api;
use kube::api::{ListParams, PostParams};
use kube::runtime::watcher;
use serde_json::json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use super::cluster::{Cluster, percentile};

const NAME: &str = "coldstart";
const NAMESPACE: &str = "default";
/// How long a cold request may take before the round fails.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// The goal: cold p99 within this of warm p99.
const GOAL: Duration = Duration::from_millis(20);

pub struct ColdstartArgs<'a> {
    pub wasm: &'a Path,
    pub rounds: usize,
    pub warm: usize,
    pub idle_timeout: &'a str,
    pub store_sync: &'a str,
}

/// The wake-up steps a round's watches saw, from the request's start.
#[derive(Debug, Default, Clone, Copy)]
struct Steps {
    published: Option<Duration>,
    scaled: Option<Duration>,
    pod_created: Option<Duration>,
    bound: Option<Duration>,
    running: Option<Duration>,
    ready: Option<Duration>,
    endpoint: Option<Duration>,
}

const STEP_NAMES: [&str; 7] = [
    "node published a held connection",
    "Deployment scaled to 1",
    "pod created",
    "pod bound to the node",
    "pod Running",
    "pod Ready",
    "EndpointSlice endpoint ready",
];

impl Steps {
    fn all(&self) -> [Option<Duration>; 7] {
        [
            self.published,
            self.scaled,
            self.pod_created,
            self.bound,
            self.running,
            self.ready,
            self.endpoint,
        ]
    }
}

pub async fn run(args: ColdstartArgs<'_>) -> anyhow::Result<()> {
    if args.rounds == 0 || args.warm == 0 {
        bail!("--rounds and --warm must be at least 1");
    }
    let cluster =
        Cluster::start(&["--store-sync".to_string(), args.store_sync.to_string()]).await?;
    let result = measure(&cluster, &args).await;
    cluster.stop().await;
    let (cold, warm, steps) = result?;
    report(&args, cold, warm, &steps);
    Ok(())
}

async fn measure(
    cluster: &Cluster,
    args: &ColdstartArgs<'_>,
) -> anyhow::Result<(Vec<Duration>, Vec<Duration>, Vec<Steps>)> {
    let image = cluster.push(args.wasm, "http-hello:coldstart").await?;
    let deployments: Api<Deployment> = Api::namespaced(cluster.client.clone(), NAMESPACE);
    let services: Api<Service> = Api::namespaced(cluster.client.clone(), NAMESPACE);
    let deployment = serde_json::from_value(json!({
        "metadata": {"name": NAME, "annotations": {"autoscaling.herd.dev/idle-timeout": args.idle_timeout}},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": NAME}},
            "template": {
                "metadata": {"labels": {"app": NAME}},
                "spec": {"containers": [{"name": "http-hello", "image": image,
                    "ports": [{"containerPort": 8080}]}]},
            },
        },
    }))?;
    deployments
        .create(&PostParams::default(), &deployment)
        .await
        .context("creating the Deployment")?;
    let service = serde_json::from_value(json!({
        "metadata": {"name": NAME},
        "spec": {"selector": {"app": NAME}, "ports": [{"port": 8080, "targetPort": 8080}]},
    }))?;
    services
        .create(&PostParams::default(), &service)
        .await
        .context("creating the Service")?;
    // The cluster IP, once the controller has marked the Service for the proxies' activator.
    let deadline = Instant::now() + Duration::from_secs(60);
    let target = loop {
        let svc = services.get(NAME).await?;
        let marked = svc
            .metadata
            .annotations
            .as_ref()
            .is_some_and(|a| a.contains_key("autoscaling.herd.dev/activator"));
        let ip = svc.spec.and_then(|s| s.cluster_ip).unwrap_or_default();
        if marked && !ip.is_empty() {
            break format!("{ip}:8080");
        }
        if Instant::now() > deadline {
            bail!("the Service was not marked for the activator within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // The first answer, warm: the image is pulled and compiled on the node from now on.
    let deadline = Instant::now() + Duration::from_secs(60);
    while request(&target).await.is_err() {
        if Instant::now() > deadline {
            bail!("{target} did not answer within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (mut cold, mut warm, mut steps) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..args.rounds {
        wait_at_zero(cluster).await?;
        let seen = Arc::new(Mutex::new(Steps::default()));
        let start = Instant::now();
        let watches = tokio::spawn(watch_steps(cluster.client.clone(), start, seen.clone()));
        // The watches are running before the request (their first lists answered).
        tokio::time::sleep(Duration::from_millis(200)).await;
        let sent = Instant::now();
        let took = tokio::time::timeout(REQUEST_TIMEOUT, request(&target))
            .await
            .map_err(|_| anyhow!("round {}: no answer within {REQUEST_TIMEOUT:?}", round + 1))?
            .with_context(|| format!("round {}: the cold request", round + 1))?;
        // Let the watches bring what they have not yet.
        tokio::time::sleep(Duration::from_millis(200)).await;
        watches.abort();
        let offset = sent.duration_since(start);
        let mut round_steps = *seen.lock().map_err(|_| anyhow!("poisoned"))?;
        for step in [
            &mut round_steps.published,
            &mut round_steps.scaled,
            &mut round_steps.pod_created,
            &mut round_steps.bound,
            &mut round_steps.running,
            &mut round_steps.ready,
            &mut round_steps.endpoint,
        ] {
            *step = step.map(|d| d.saturating_sub(offset));
        }
        cold.push(took);
        steps.push(round_steps);
        for _ in 0..args.warm {
            warm.push(request(&target).await?);
        }
        eprintln!(
            "coldstart round {}: cold {:.1} ms, warm last {:.1} ms",
            round + 1,
            took.as_secs_f64() * 1e3,
            warm.last().copied().unwrap_or_default().as_secs_f64() * 1e3
        );
    }
    Ok((cold, warm, steps))
}

/// One request on a new connection: from connect to the whole answer.
async fn request(target: &str) -> anyhow::Result<Duration> {
    let start = Instant::now();
    let mut stream = TcpStream::connect(target).await?;
    stream.set_nodelay(true)?;
    stream
        .write_all(b"GET /coldstart HTTP/1.1\r\nHost: coldstart\r\nConnection: close\r\n\r\n")
        .await?;
    let mut answer = Vec::with_capacity(512);
    stream.read_to_end(&mut answer).await?;
    let took = start.elapsed();
    let text = String::from_utf8_lossy(&answer);
    if !text.starts_with("HTTP/1.1 200") || !text.contains("path=/coldstart") {
        bail!("unexpected answer: {text:?}");
    }
    Ok(took)
}

/// Waits until the Deployment is at zero, its pods are gone and its EndpointSlices list no endpoint.
async fn wait_at_zero(cluster: &Cluster) -> anyhow::Result<()> {
    let deployments: Api<Deployment> = Api::namespaced(cluster.client.clone(), NAMESPACE);
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), NAMESPACE);
    let slices: Api<EndpointSlice> = Api::namespaced(cluster.client.clone(), NAMESPACE);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let replicas = deployments.get(NAME).await?.spec.replicas;
        let pods = pods
            .list(&ListParams::default().labels(&format!("app={NAME}")))
            .await?;
        let endpoints: usize = slices
            .list(&ListParams::default().labels(&format!("kubernetes.io/service-name={NAME}")))
            .await?
            .items
            .iter()
            .map(|s| s.endpoints.as_ref().map_or(0, Vec::len))
            .sum();
        if replicas == Some(0) && pods.items.is_empty() && endpoints == 0 {
            // The proxy's watch of the slices follows within milliseconds.
            tokio::time::sleep(Duration::from_millis(100)).await;
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "not at zero within 120 s: replicas {replicas:?}, {} pods, {endpoints} endpoints",
                pods.items.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Notes the first time each wake-up step is seen, relative to `start`.
async fn watch_steps(client: kube::Client, start: Instant, seen: Arc<Mutex<Steps>>) {
    let note = |f: &dyn Fn(&mut Steps) -> &mut Option<Duration>| {
        if let Ok(mut steps) = seen.lock() {
            let slot = f(&mut steps);
            if slot.is_none() {
                *slot = Some(start.elapsed());
            }
        }
    };
    let deployments = watcher(
        Api::<Deployment>::namespaced(client.clone(), NAMESPACE),
        watcher::Config::default().fields(&format!("metadata.name={NAME}")),
    );
    let pods = watcher(
        Api::<Pod>::namespaced(client.clone(), NAMESPACE),
        watcher::Config::default().labels(&format!("app={NAME}")),
    );
    let slices = watcher(
        Api::<EndpointSlice>::namespaced(client.clone(), NAMESPACE),
        watcher::Config::default().labels(&format!("kubernetes.io/service-name={NAME}")),
    );
    let leases = watcher(
        Api::<Lease>::namespaced(client.clone(), "kube-node-lease"),
        watcher::Config::default(),
    );
    let mut leases = std::pin::pin!(leases);
    let mut deployments = std::pin::pin!(deployments);
    let mut pods = std::pin::pin!(pods);
    let mut slices = std::pin::pin!(slices);
    loop {
        tokio::select! {
            Some(Ok(event)) = deployments.next() => {
                if let watcher::Event::Apply(d) | watcher::Event::InitApply(d) = event
                    && d.spec.replicas.unwrap_or(0) > 0
                {
                    note(&|s| &mut s.scaled);
                }
            }
            Some(Ok(event)) = leases.next() => {
                if let watcher::Event::Apply(lease) | watcher::Event::InitApply(lease) = event {
                    let held = lease
                        .metadata
                        .annotations
                        .as_ref()
                        .and_then(|a| a.get(herd_api::autoscaling::ACTIVITY))
                        .and_then(|text| herd_api::autoscaling::parse_activity(text))
                        .and_then(|counts| counts.get(&format!("{NAMESPACE}/{NAME}")).copied())
                        .is_some_and(|c| c.held > 0);
                    if held {
                        note(&|s| &mut s.published);
                    }
                }
            }
            Some(Ok(event)) = pods.next() => {
                if let watcher::Event::Apply(pod) | watcher::Event::InitApply(pod) = event {
                    if pod.metadata.deletion_timestamp.is_some() {
                        continue;
                    }
                    note(&|s| &mut s.pod_created);
                    if pod.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some() {
                        note(&|s| &mut s.bound);
                    }
                    let status = pod.status.as_ref();
                    if status.and_then(|s| s.phase.as_deref()) == Some("Running") {
                        note(&|s| &mut s.running);
                    }
                    let ready = status
                        .and_then(|s| s.conditions.as_ref())
                        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
                    if ready {
                        note(&|s| &mut s.ready);
                    }
                }
            }
            Some(Ok(event)) = slices.next() => {
                if let watcher::Event::Apply(slice) | watcher::Event::InitApply(slice) = event {
                    let ready = slice.endpoints.iter().flatten().any(|e| {
                        e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true)
                    });
                    if ready {
                        note(&|s| &mut s.endpoint);
                    }
                }
            }
            else => return,
        }
    }
}

fn report(
    args: &ColdstartArgs<'_>,
    mut cold: Vec<Duration>,
    mut warm: Vec<Duration>,
    steps: &[Steps],
) {
    cold.sort_unstable();
    warm.sort_unstable();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "coldstart: {} rounds of the first request to a scaled-to-zero wasi-http Service (idle timeout {}, \
         --store-sync {}), {} warm requests after each; every request on a new connection, through the \
         Service's cluster IP",
        args.rounds, args.idle_timeout, args.store_sync, args.warm
    );
    println!(
        "{:<8} {:>10} {:>10} {:>10}",
        "", "p50 ms", "p99 ms", "max ms"
    );
    for (name, samples) in [("cold", &cold), ("warm", &warm)] {
        println!(
            "{name:<8} {:>10.2} {:>10.2} {:>10.2}",
            ms(percentile(samples, 50.0)),
            ms(percentile(samples, 99.0)),
            ms(samples.last().copied().unwrap_or_default())
        );
    }
    let gap = percentile(&cold, 99.0).saturating_sub(percentile(&warm, 99.0));
    println!(
        "cold p99 - warm p99 = {:.2} ms (goal: within {} ms)",
        ms(gap),
        GOAL.as_millis()
    );
    println!(
        "wake-up steps as the bench's watches saw them, median from the cold request's start:"
    );
    for (i, name) in STEP_NAMES.iter().enumerate() {
        let mut seen: Vec<Duration> = steps.iter().filter_map(|s| s.all()[i]).collect();
        seen.sort_unstable();
        if seen.is_empty() {
            println!("  {name:<34} not seen");
        } else {
            println!(
                "  {name:<34} {:>8.2} ms (p99 {:.2} ms, {} of {} rounds)",
                ms(percentile(&seen, 50.0)),
                ms(percentile(&seen, 99.0)),
                seen.len(),
                steps.len()
            );
        }
    }
}
