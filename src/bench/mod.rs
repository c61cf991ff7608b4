//! `herd bench …`: benchmarks that print figures (speed and memory targets live here, never in tests).

mod api;
mod cluster;
mod coldstart;
mod density;
mod deploy;
mod etcd;
pub mod guest_lb;
mod http;
mod pods;
mod proxy;

use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The wasi-http sample, as `sample-apps/build.sh` leaves it.
const HTTP_SAMPLE: &str = "sample-apps/dist/http-hello.wasm";

/// The WASI p1 sample (`--every-ms=100 --forever` keeps it running), as `sample-apps/build.sh` leaves it.
const MODULE_SAMPLE: &str = "sample-apps/dist/hello.wasm";

#[derive(Debug, Clone, clap::Subcommand)]
pub enum Bench {
    /// Binds pods to simulated nodes (nodes that exist only as API objects) in a real store; prints binds/s.
    Scheduler {
        /// How many Ready nodes to create.
        #[arg(long, default_value_t = 1000)]
        nodes: usize,
        /// How many pods to schedule.
        #[arg(long, default_value_t = 10_000)]
        pods: usize,
    },
    /// Starts a real `herd up` and measures pod start latency (create → Running) for a cached image, and the
    /// first start of an image against the second.
    Pods {
        /// How many cached starts to measure.
        #[arg(long, default_value_t = 100)]
        count: usize,
        /// How many fresh nodes (`herd up`s) to measure first and second starts on; the figures are
        /// medians over them.
        #[arg(long, default_value_t = 5)]
        rounds: usize,
        /// `herd up --store-sync` of the measured cluster (`full` or `normal`).
        #[arg(long, default_value = "full")]
        store_sync: herd_control::StoreSync,
        /// The store of the measured cluster: `sqlite`, or `etcd` (a local 3-member etcd cluster the
        /// benchmark starts, with `herd up --store etcd`).
        #[arg(long, value_enum, default_value = "sqlite")]
        store: pods::Store,
        /// The wasi-http component to run.
        #[arg(long, default_value = HTTP_SAMPLE)]
        wasm: PathBuf,
    },
    /// Starts a real `herd up`, runs many idle wasi-http pods of an image it has never run (all created at
    /// once, nothing started before) and prints the time and the memory each pod costs.
    Density {
        /// How many pods.
        #[arg(long, default_value_t = 10_000)]
        pods: usize,
        /// Start one pod of the image first, so the pods start from the node's caches (the warm figure).
        #[arg(long)]
        warm: bool,
        /// The wasi-http component to run.
        #[arg(long, default_value = HTTP_SAMPLE)]
        wasm: PathBuf,
        /// How long all pods may take to be Running.
        #[arg(long, default_value_t = 900)]
        timeout_seconds: u64,
    },
    /// Starts a fresh `herd up` and applies a Deployment of many replicas of an image it has never pulled;
    /// prints the time until all are Ready (as `kubectl rollout status` sees it) and herd's peak and final
    /// memory growth, then the same for a second Deployment of that image on the now warm node.
    Deploy {
        /// Replicas of the Deployment.
        #[arg(long, default_value_t = 1000)]
        replicas: usize,
        /// The workload: an idle wasi-http component, a running p1 module, or both.
        #[arg(long, value_enum, default_value = "both")]
        kind: deploy::Kind,
        /// Fresh nodes to measure on, per workload.
        #[arg(long, default_value_t = 1)]
        rounds: usize,
        /// The wasi-http component.
        #[arg(long, default_value = HTTP_SAMPLE)]
        http_wasm: PathBuf,
        /// The p1 module (run with `--every-ms=100 --forever`).
        #[arg(long, default_value = MODULE_SAMPLE)]
        module_wasm: PathBuf,
        /// How long each Deployment may take to be rolled out (and its pods to go after deletion).
        #[arg(long, default_value_t = 600)]
        timeout_seconds: u64,
    },
    /// Starts a real `herd control` (no node) per store and has `--clients` concurrent clients create
    /// ConfigMaps over HTTPS; prints creates/s, p50/p99/max latency, errors and the CPU of both sides, for
    /// SQLite (`--store-sync full` and `normal`) and a local 3-member etcd (herd on it, and raw etcd puts).
    Api {
        /// Concurrent clients, each with its own keep-alive connection.
        #[arg(long, default_value_t = 64)]
        clients: usize,
        /// Seconds of load per store.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Stop after this many creates per store instead of after `--seconds`.
        #[arg(long)]
        count: Option<usize>,
        /// Which stores to measure.
        #[arg(long, value_enum, default_value = "both")]
        store: api::StoreChoice,
    },
    /// Starts a real `herd up` and has guest pods load wasi-http backend pods over HTTP/1.1 keep-alive,
    /// on the pods' IPs and on their Service's cluster IP; prints both rates (socket-level load balancing
    /// adds no hop, so they should be alike).
    GuestLb {
        /// Backend pods behind the Service.
        #[arg(long, default_value_t = 2)]
        backends: usize,
        /// Guest pods loading them at once.
        #[arg(long, default_value_t = 4)]
        guests: usize,
        /// Keep-alive connections of each guest.
        #[arg(long, default_value_t = 8)]
        connections: usize,
        /// Seconds of load per measurement.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Measurements of each kind, alternating; the figures are medians.
        #[arg(long, default_value_t = 3)]
        rounds: usize,
    },
    /// Starts a real `herd up` with a wasi-http Deployment that scales to zero behind a Service, and
    /// times the first request to the Service at zero (held by the proxy while a pod starts) beside
    /// warm requests: p50/p99 side by side, and when each step of the wake-up was seen.
    Coldstart {
        /// The wasi-http component to serve.
        #[arg(long, default_value = HTTP_SAMPLE)]
        wasm: std::path::PathBuf,
        /// Cold requests (each after the Deployment went back to zero).
        #[arg(long, default_value_t = 20)]
        rounds: usize,
        /// Warm requests after each cold one.
        #[arg(long, default_value_t = 20)]
        warm: usize,
        /// The Deployment's `autoscaling.herd.dev/idle-timeout`.
        #[arg(long, default_value = "1s")]
        idle_timeout: String,
        /// `herd up --store-sync` (`normal`: fsync at checkpoints only, to see what the wake-up's
        /// durable writes cost).
        #[arg(long, value_enum, default_value = "full")]
        store_sync: herd_control::StoreSync,
    },
    /// Requests/s of a static nginx over keep-alive connections (wrk), side by side: directly, through
    /// herd's host-side Service proxy (a real `herd up`), through nginx `stream` (when its module is
    /// installed), and guest → Service beside guest → pod IP.
    Proxy {
        /// The nginx binary (the backend, and `stream` when its module is installed).
        #[arg(long, default_value = "/usr/sbin/nginx")]
        nginx: PathBuf,
        /// The wrk binary.
        #[arg(long, default_value = "wrk")]
        wrk: PathBuf,
        /// Concurrent keep-alive connections.
        #[arg(long, default_value_t = 32)]
        connections: usize,
        /// wrk's threads.
        #[arg(long, default_value_t = 1)]
        wrk_threads: usize,
        /// Seconds of load per measurement.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Measurements of each kind, alternating; the figures are medians.
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// Leave out guest → Service and guest → pod IP.
        #[arg(long)]
        no_guests: bool,
    },
    /// Requests/s of the wasi-http sample served by herd and by `wasmtime serve`.
    Http {
        /// The wasi-http component to serve.
        #[arg(long, default_value = HTTP_SAMPLE)]
        wasm: PathBuf,
        /// The wasmtime CLI (48.x) to compare with.
        #[arg(long, default_value = "wasmtime")]
        wasmtime: PathBuf,
        /// Concurrent keep-alive connections.
        #[arg(long, default_value_t = 32)]
        connections: usize,
        /// Seconds of load per server.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
}

pub async fn run(bench: Bench) -> anyhow::Result<()> {
    match bench {
        Bench::Scheduler { nodes, pods } => {
            let started = Instant::now();
            let report = herd_control::scheduler::bench(nodes, pods).await?;
            println!(
                "scheduler: {} pods bound to {nodes} nodes in {:.2} s = {:.0} binds/s; their Scheduled events \
                 written by {:.2} s (setup included: {:.2} s total)",
                report.binds,
                report.seconds,
                report.binds_per_second,
                report.seconds_with_events,
                started.elapsed().as_secs_f64()
            );
            Ok(())
        }
        Bench::Pods {
            count,
            rounds,
            wasm,
            store_sync,
            store,
        } => pods::run(count, rounds, &wasm, store_sync.as_str(), store).await,
        Bench::Density {
            pods,
            warm,
            wasm,
            timeout_seconds,
        } => density::run(pods, warm, &wasm, Duration::from_secs(timeout_seconds)).await,
        Bench::Deploy {
            replicas,
            kind,
            rounds,
            http_wasm,
            module_wasm,
            timeout_seconds,
        } => {
            deploy::run(deploy::DeployArgs {
                replicas,
                kind,
                rounds,
                http_wasm: &http_wasm,
                module_wasm: &module_wasm,
                timeout: Duration::from_secs(timeout_seconds),
            })
            .await
        }
        Bench::Api {
            clients,
            seconds,
            count,
            store,
        } => {
            api::run(api::ApiArgs {
                clients,
                duration: Duration::from_secs(seconds),
                count,
                store,
            })
            .await
        }
        Bench::GuestLb {
            backends,
            guests,
            connections,
            seconds,
            rounds,
        } => {
            guest_lb::run(guest_lb::GuestLoad {
                backends,
                guests,
                connections,
                duration: Duration::from_secs(seconds),
                rounds,
                ..guest_lb::GuestLoad::default()
            })
            .await
        }
        Bench::Coldstart {
            wasm,
            rounds,
            warm,
            idle_timeout,
            store_sync,
        } => {
            coldstart::run(coldstart::ColdstartArgs {
                wasm: &wasm,
                rounds,
                warm,
                idle_timeout: &idle_timeout,
                store_sync: store_sync.as_str(),
            })
            .await
        }
        Bench::Proxy {
            nginx,
            wrk,
            connections,
            wrk_threads,
            seconds,
            rounds,
            no_guests,
        } => {
            proxy::run(proxy::ProxyArgs {
                nginx: &nginx,
                wrk: &wrk,
                connections,
                wrk_threads,
                duration: Duration::from_secs(seconds),
                rounds,
                guests: !no_guests,
            })
            .await
        }
        Bench::Http {
            wasm,
            wasmtime,
            connections,
            seconds,
        } => {
            http::run(http::HttpArgs {
                wasm: &wasm,
                wasmtime: &wasmtime,
                connections,
                duration: Duration::from_secs(seconds),
            })
            .await
        }
    }
}
