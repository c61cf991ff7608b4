//! Guest → Service against guest → pod IP: the same guests (`loadgen http`, HTTP/1.1 keep-alive requests
//! on several connections each) load the same backend pods (the wasi-http sample), once on the pods' own
//! IPs (each guest on one backend, in turn) and once on their Service's `clusterIP:80`, which socket-level
//! load balancing connects straight to the pods. The two rates should be alike: the Service adds no hop.
//! `herd bench proxy` prints these figures beside its host-side ones; `herd bench guest-lb` alone.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::Api;
use kube::api::{DeleteParams, ListParams, LogParams, PostParams};

use super::cluster::Cluster;

/// The load generator guest, as `sample-apps/build.sh` leaves it.
pub const LOADGEN_SAMPLE: &str = "sample-apps/dist/loadgen.wasm";

/// The Service port the guests connect to (a port below 1024, which the host proxy of an ordinary user
/// cannot listen on: the guests do not need it to).
const SERVICE_PORT: u16 = 80;
const BACKEND_PORT: u16 = 8080;
const BACKEND_LABEL: &str = "guest-lb-backend";
const GUEST_LABEL: &str = "guest-lb-load";
/// How long a pod may take to start or a guest to finish beyond its load time.
const POD_TIMEOUT: Duration = Duration::from_secs(120);

/// What the guests do.
#[derive(Debug, Clone)]
pub struct GuestLoad {
    /// The load generator (`loadgen`).
    pub loadgen_wasm: PathBuf,
    /// The backend, a wasi-http component serving port 8080.
    pub backend_wasm: PathBuf,
    /// Backend pods behind the Service.
    pub backends: usize,
    /// Guest pods loading them at once.
    pub guests: usize,
    /// Keep-alive connections of each guest (its requests in flight).
    pub connections: usize,
    /// Load time of each measurement.
    pub duration: Duration,
    /// Measurements of each kind, alternating (pod IP, Service, pod IP, …); the figures are medians.
    pub rounds: usize,
}

impl Default for GuestLoad {
    fn default() -> Self {
        Self {
            loadgen_wasm: LOADGEN_SAMPLE.into(),
            backend_wasm: super::HTTP_SAMPLE.into(),
            backends: 2,
            guests: 4,
            connections: 8,
            duration: Duration::from_secs(10),
            rounds: 1,
        }
    }
}

/// Requests per second of all guests together (the sum of each guest's rate).
#[derive(Debug, Clone, PartialEq)]
pub struct GuestRates {
    /// Median over the rounds, guests → backend pod IPs.
    pub pod_ip: f64,
    /// Median over the rounds, guests → the Service's cluster IP.
    pub service: f64,
    /// Each round's figures, in order.
    pub pod_ip_rounds: Vec<f64>,
    pub service_rounds: Vec<f64>,
    /// Failed requests and connects over all rounds (0 in a sound run).
    pub errors: u64,
}

impl GuestRates {
    /// guest → Service over guest → pod IP.
    pub fn ratio(&self) -> f64 {
        self.service / self.pod_ip.max(1e-9)
    }
}

impl std::fmt::Display for GuestRates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let rounds = |v: &[f64]| {
            v.iter()
                .map(|r| format!("{r:.0}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        write!(
            f,
            "guest → pod IP {:.0} req/s, guest → Service {:.0} req/s ({:.2}×; rounds: pod IP [{}], \
             Service [{}]; {} errors)",
            self.pod_ip,
            self.service,
            self.ratio(),
            rounds(&self.pod_ip_rounds),
            rounds(&self.service_rounds),
            self.errors
        )
    }
}

/// Measures guest → pod IP and guest → Service throughput on `cluster` (a `herd up` with a node), against
/// the same backend pods. Leaves the backends and their Service `guest-lb` behind; the guest pods are
/// deleted after each measurement.
///
/// # Errors
///
/// A push, create or wait that fails, a guest that does not finish, or one whose log has no figures.
pub async fn guest_rates(cluster: &Cluster, load: &GuestLoad) -> anyhow::Result<GuestRates> {
    if load.backends == 0 || load.guests == 0 || load.connections == 0 || load.rounds == 0 {
        bail!("backends, guests, connections and rounds must each be at least 1");
    }
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), "default");
    let services: Api<Service> = Api::namespaced(cluster.client.clone(), "default");
    let backend_image = cluster
        .push(&load.backend_wasm, "guest-lb-backend:v1")
        .await?;
    let loadgen_image = cluster.push(&load.loadgen_wasm, "loadgen:v1").await?;

    services
        .create(
            &PostParams::default(),
            &serde_json::from_value(backend_service())?,
        )
        .await
        .context("creating Service guest-lb")?;
    for i in 0..load.backends {
        pods.create(
            &PostParams::default(),
            &serde_json::from_value(backend_pod(
                &format!("guest-lb-backend-{i}"),
                &backend_image,
            ))?,
        )
        .await?;
    }
    let mut backend_ips = Vec::new();
    for i in 0..load.backends {
        let pod = wait_pod(&pods, &format!("guest-lb-backend-{i}"), "Running").await?;
        let ip = pod
            .status
            .and_then(|s| s.pod_ip)
            .ok_or_else(|| anyhow!("backend {i} has no IP"))?;
        backend_ips.push(format!("{ip}:{BACKEND_PORT}"));
    }
    let cluster_ip = services
        .get("guest-lb")
        .await?
        .spec
        .and_then(|s| s.cluster_ip)
        .ok_or_else(|| anyhow!("Service guest-lb has no cluster IP"))?;
    let service_target = format!("{cluster_ip}:{SERVICE_PORT}");

    // Warm-up: the loadgen image pulled and compiled, every backend and the Service answering.
    let mut warm_targets = backend_ips.clone();
    warm_targets.push(service_target.clone());
    let warm = Round {
        name: "warm",
        targets: warm_targets,
        guests: load.backends + 1,
        connections: 1,
        duration: Duration::from_secs(1),
    };
    warm.run_until_clean(&pods, &loadgen_image).await?;

    let mut rates = GuestRates {
        pod_ip: 0.0,
        service: 0.0,
        pod_ip_rounds: Vec::new(),
        service_rounds: Vec::new(),
        errors: 0,
    };
    for round in 0..load.rounds {
        for to_service in [false, true] {
            let measured = Round {
                name: if to_service { "service" } else { "podip" },
                targets: if to_service {
                    vec![service_target.clone()]
                } else {
                    backend_ips.clone()
                },
                guests: load.guests,
                connections: load.connections,
                duration: load.duration,
            };
            let (rate, errors) = measured
                .run(&pods, &loadgen_image, round)
                .await
                .with_context(|| format!("round {round} of guest → {}", measured.name))?;
            rates.errors += errors;
            if to_service {
                rates.service_rounds.push(rate);
            } else {
                rates.pod_ip_rounds.push(rate);
            }
        }
    }
    rates.pod_ip = median(&rates.pod_ip_rounds);
    rates.service = median(&rates.service_rounds);
    Ok(rates)
}

/// `herd bench guest-lb`: a fresh `herd up`, [`guest_rates`], one line.
pub async fn run(load: GuestLoad) -> anyhow::Result<()> {
    let cluster = Cluster::start(&[]).await?;
    let result = guest_rates(&cluster, &load).await;
    cluster.stop().await;
    let rates = result?;
    println!(
        "{} guests × {} keep-alive connections, {} wasi-http backends, {:.0} s per round: {rates}",
        load.guests,
        load.connections,
        load.backends,
        load.duration.as_secs_f64()
    );
    Ok(())
}

/// One measurement: `guests` loadgen pods at once, guest `i` on `targets[i % len]`.
struct Round {
    name: &'static str,
    targets: Vec<String>,
    guests: usize,
    connections: usize,
    duration: Duration,
}

impl Round {
    /// Runs the guests to their end; the sum of their rates and their errors.
    async fn run(&self, pods: &Api<Pod>, image: &str, round: usize) -> anyhow::Result<(f64, u64)> {
        let names: Vec<String> = (0..self.guests)
            .map(|i| format!("guest-lb-{}-{round}-{i}", self.name))
            .collect();
        for (i, name) in names.iter().enumerate() {
            let target = &self.targets[i % self.targets.len()];
            let pod = guest_pod(
                name,
                image,
                target,
                self.duration.as_secs().max(1),
                self.connections,
            );
            pods.create(&PostParams::default(), &serde_json::from_value(pod)?)
                .await?;
        }
        let mut total = 0.0;
        let mut errors = 0;
        for name in &names {
            wait_pod(pods, name, "Succeeded").await?;
            let log = pods.logs(name, &LogParams::default()).await?;
            let (requests, failed, seconds) =
                figures(&log).ok_or_else(|| anyhow!("guest {name} printed no figures: {log}"))?;
            total += requests as f64 / seconds.max(1e-9);
            errors += failed;
        }
        pods.delete_collection(
            &DeleteParams::default(),
            &ListParams::default().labels(&format!("app={GUEST_LABEL}")),
        )
        .await?;
        Ok((total, errors))
    }

    /// Runs until a round has no errors (a Service's endpoints may reach the node a moment after the
    /// pods run); up to 30 tries.
    async fn run_until_clean(&self, pods: &Api<Pod>, image: &str) -> anyhow::Result<()> {
        for attempt in 0..30 {
            let (_, errors) = self.run(pods, image, attempt).await?;
            if errors == 0 {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        bail!(
            "the warm-up guests kept failing to reach {:?}",
            self.targets
        )
    }
}

/// `requests=N errors=E seconds=S` of a loadgen guest's log.
fn figures(log: &str) -> Option<(u64, u64, f64)> {
    let line = log.lines().rev().find(|l| l.starts_with("requests="))?;
    let field = |key: &str| {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(key))
            .map(str::to_owned)
    };
    Some((
        field("requests=")?.parse().ok()?,
        field("errors=")?.parse().ok()?,
        field("seconds=")?.parse().ok()?,
    ))
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => 0.0,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

async fn wait_pod(pods: &Api<Pod>, name: &str, phase: &str) -> anyhow::Result<Pod> {
    let deadline = Instant::now() + POD_TIMEOUT;
    loop {
        let pod = pods.get(name).await?;
        let now = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        if now == Some(phase) {
            return Ok(pod);
        }
        if now == Some("Failed") || (now == Some("Succeeded") && phase != "Succeeded") {
            bail!("pod {name} is {now:?}, not {phase}");
        }
        if Instant::now() > deadline {
            bail!("pod {name} was not {phase} within {POD_TIMEOUT:?} (it is {now:?})");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn backend_service() -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "guest-lb"},
        "spec": {"selector": {"app": BACKEND_LABEL},
                 "ports": [{"name": "http", "port": SERVICE_PORT, "targetPort": BACKEND_PORT}]},
    })
}

fn backend_pod(name: &str, image: &str) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": BACKEND_LABEL}},
        "spec": {"containers": [{"name": "web", "image": image,
                                 "ports": [{"containerPort": BACKEND_PORT}]}]},
    })
}

fn guest_pod(
    name: &str,
    image: &str,
    target: &str,
    seconds: u64,
    connections: usize,
) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": GUEST_LABEL}},
        "spec": {"restartPolicy": "Never",
                 "containers": [{"name": "load", "image": image,
                                 "args": ["http", target, seconds.to_string(), connections.to_string()]}]},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_come_from_the_guests_last_line() {
        assert_eq!(
            figures("connect x: refused\nrequests=1200 errors=1 seconds=10.002\n"),
            Some((1200, 1, 10.002))
        );
        assert_eq!(figures("nothing\n"), None);
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0]), 2.5);
    }
}
