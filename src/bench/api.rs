//! `herd bench api`: durable creates per second through the API server. A real `herd control` (the control
//! plane alone: API server, store, controllers, scheduler; no node, which API figures do not need) is
//! started from this binary, and `--clients` concurrent clients create small ConfigMaps of distinct names in
//! `default` over HTTPS with the admin's client certificate, each on its own keep-alive HTTP/1.1 connection
//! (hyper over rustls, as cheap a client as there is: the client shares the 2 cores with the server). The
//! clock starts before the clients connect, so the cold path (TLS handshakes, the first writes, the
//! server's caches filling) is part of the figures.
//!
//! Against SQLite with `--store-sync full` (the default: every create fsynced before it is acknowledged)
//! and `normal`; against a local 3-member etcd cluster (Debian's `/usr/bin/etcd` on loopback ports, started
//! and removed by the benchmark) with `herd control --store etcd`, and raw etcd puts at the same
//! concurrency as the reference for what the store underneath can do.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use bytes::Bytes;
use http_body_util::BodyExt as _;

use super::cluster::{Cluster, STORE_STATS, percentile};
use super::etcd::EtcdCluster;
use super::http::ApiEndpoint;

/// How many error texts are printed per run.
const ERRORS_SHOWN: usize = 3;

/// Which stores `herd bench api` measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StoreChoice {
    /// SQLite (`--store-sync full`, then `normal`).
    Sqlite,
    /// A local 3-member etcd cluster: `herd control --store etcd`, then raw etcd puts.
    Etcd,
    /// Both, side by side.
    Both,
}

pub struct ApiArgs {
    pub clients: usize,
    /// How long each run lasts, unless `count` is given.
    pub duration: Duration,
    /// Stop after this many creates in all instead.
    pub count: Option<usize>,
    pub store: StoreChoice,
}

/// What one run measured.
struct Run {
    label: String,
    creates: usize,
    elapsed: Duration,
    /// Latency of each acknowledged create, sorted.
    latencies: Vec<Duration>,
    errors: usize,
    error_texts: Vec<String>,
    /// CPU seconds of the server side (herd, plus the etcd members when they are used) and of this process.
    server_cpu: f64,
    client_cpu: f64,
    /// Notes printed under the table (the store's write statistics).
    notes: Vec<String>,
}

pub async fn run(args: ApiArgs) -> anyhow::Result<()> {
    if args.clients == 0 {
        bail!("--clients must be at least 1");
    }
    let mut runs = Vec::new();
    if matches!(args.store, StoreChoice::Sqlite | StoreChoice::Both) {
        for sync in ["full", "normal"] {
            let flags = ["--store-sync".to_string(), sync.to_string()];
            runs.push(herd_run(&args, &format!("sqlite, sync {sync}"), &flags, &[]).await?);
        }
    }
    if matches!(args.store, StoreChoice::Etcd | StoreChoice::Both) {
        let etcd = EtcdCluster::start(3).await?;
        let flags = [
            "--store".to_string(),
            "etcd".to_string(),
            "--etcd-servers".to_string(),
            etcd.client_urls().join(","),
        ];
        let result = async {
            runs.push(herd_run(&args, "etcd (3 members), herd", &flags, &etcd.pids()).await?);
            runs.push(raw_etcd_run(&args, &etcd).await?);
            anyhow::Ok(())
        }
        .await;
        etcd.stop().await;
        result?;
    }
    print(&args, &runs);
    Ok(())
}

/// One run against a fresh `herd control` started with `flags`; `others` are further server processes
/// (etcd members) whose CPU counts as the server's.
async fn herd_run(
    args: &ApiArgs,
    label: &str,
    flags: &[String],
    others: &[u32],
) -> anyhow::Result<Run> {
    let cluster = Cluster::start_control(flags).await?;
    let mut pids = others.to_vec();
    pids.push(cluster.pid()?);
    let result = load(args, &cluster.api, &pids).await;
    let stats = cluster.stop().await;
    let mut run = result?;
    run.label = label.to_string();
    run.notes = stats
        .iter()
        .filter_map(|line| line.find(STORE_STATS).map(|at| line[at..].to_string()))
        .collect();
    Ok(run)
}

/// `args.clients` clients creating ConfigMaps through the API server at `api` until the time or the count
/// is up; `server_pids` are the processes whose CPU time is the server's.
async fn load(args: &ApiArgs, api: &ApiEndpoint, server_pids: &[u32]) -> anyhow::Result<Run> {
    let server_before = cpu_seconds_of(server_pids)?;
    let client_before = cpu_seconds(std::process::id())?;
    let began = Instant::now();
    let deadline = began + args.duration;
    let mut tasks = tokio::task::JoinSet::new();
    for client in 0..args.clients {
        let api = api.clone();
        let quota = args.count.map(|n| share(n, args.clients, client));
        tasks.spawn(async move { client_loop(&api, client, quota, deadline).await });
    }
    let mut total = Outcome::default();
    while let Some(outcome) = tasks.join_next().await {
        let outcome = outcome?;
        total.latencies.extend(outcome.latencies);
        total.errors += outcome.errors;
        for text in outcome.error_texts {
            if total.error_texts.len() < ERRORS_SHOWN {
                total.error_texts.push(text);
            }
        }
    }
    let elapsed = began.elapsed();
    let server_cpu = cpu_seconds_of(server_pids)? - server_before;
    let client_cpu = cpu_seconds(std::process::id())? - client_before;
    total.latencies.sort();
    Ok(Run {
        label: String::new(),
        creates: total.latencies.len(),
        elapsed,
        latencies: total.latencies,
        errors: total.errors,
        error_texts: total.error_texts,
        server_cpu,
        client_cpu,
        notes: Vec::new(),
    })
}

/// Client `index`'s share of `total` creates among `clients`.
fn share(total: usize, clients: usize, index: usize) -> usize {
    total / clients + usize::from(index < total % clients)
}

/// What one client saw.
#[derive(Default)]
struct Outcome {
    latencies: Vec<Duration>,
    errors: usize,
    error_texts: Vec<String>,
}

impl Outcome {
    fn error(&mut self, text: String) {
        self.errors += 1;
        if self.error_texts.len() < ERRORS_SHOWN {
            self.error_texts.push(text);
        }
    }
}

type Body = http_body_util::Full<Bytes>;

/// One client: its own connection, creates back to back (a new connection after a broken one).
async fn client_loop(
    api: &ApiEndpoint,
    client: usize,
    quota: Option<usize>,
    deadline: Instant,
) -> Outcome {
    let mut outcome = Outcome::default();
    let mut sender = None;
    let path = "/api/v1/namespaces/default/configmaps";
    let host = api.addr.to_string();
    let mut sent = 0usize;
    loop {
        match quota {
            Some(quota) if sent >= quota => break,
            None if Instant::now() >= deadline => break,
            _ => {}
        }
        let name = format!("bench-{client}-{sent}");
        sent += 1;
        let started = Instant::now();
        let conn = match &mut sender {
            Some(conn) => conn,
            None => match api.connect().await {
                Ok(conn) => sender.insert(conn),
                Err(e) => {
                    outcome.error(format!("connecting: {e:#}"));
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let body = format!(
            r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"{name}"}},"data":{{"client":"{client}","n":"{sent}"}}}}"#
        );
        match create(conn, path, &host, body).await {
            Ok((hyper::StatusCode::CREATED, _)) => outcome.latencies.push(started.elapsed()),
            Ok((status, text)) => outcome.error(format!("{name}: {status}: {text}")),
            Err(e) => {
                outcome.error(format!("{name}: {e:#}"));
                sender = None;
            }
        }
    }
    outcome
}

/// POSTs `body`; the answer's status and, unless it is 201, its body (cut to 300 bytes).
async fn create(
    sender: &mut super::http::Sender,
    path: &str,
    host: &str,
    body: String,
) -> anyhow::Result<(hyper::StatusCode, String)> {
    let req = hyper::Request::post(path)
        .header("host", host)
        .header("content-type", "application/json")
        .header("accept", "application/json")
        .body(Body::from(body))?;
    let resp = sender.send_request(req).await?;
    let status = resp.status();
    let bytes = resp.into_body().collect().await?.to_bytes();
    if status == hyper::StatusCode::CREATED {
        return Ok((status, String::new()));
    }
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(300)]).into_owned();
    Ok((status, text))
}

/// Raw etcd puts at the same concurrency: one client per task over the members' endpoints, distinct keys,
/// values as large as the ConfigMaps herd stores.
async fn raw_etcd_run(args: &ApiArgs, etcd: &EtcdCluster) -> anyhow::Result<Run> {
    let pids = etcd.pids();
    let client = etcd_client::Client::connect(etcd.client_urls(), None)
        .await
        .context("connecting to etcd")?;
    let value = vec![b'x'; 420];
    let server_before = cpu_seconds_of(&pids)?;
    let client_before = cpu_seconds(std::process::id())?;
    let began = Instant::now();
    let deadline = began + args.duration;
    let mut tasks = tokio::task::JoinSet::new();
    for index in 0..args.clients {
        let mut kv = client.kv_client();
        let value = value.clone();
        let quota = args.count.map(|n| share(n, args.clients, index));
        tasks.spawn(async move {
            let mut outcome = Outcome::default();
            let mut sent = 0usize;
            loop {
                match quota {
                    Some(quota) if sent >= quota => break,
                    None if Instant::now() >= deadline => break,
                    _ => {}
                }
                let key = format!("/bench/configmaps/default/bench-{index}-{sent}");
                sent += 1;
                let started = Instant::now();
                match kv.put(key, value.clone(), None).await {
                    Ok(_) => outcome.latencies.push(started.elapsed()),
                    Err(e) => outcome.error(format!("put: {e}")),
                }
            }
            outcome
        });
    }
    let mut total = Outcome::default();
    while let Some(outcome) = tasks.join_next().await {
        let outcome = outcome?;
        total.latencies.extend(outcome.latencies);
        total.errors += outcome.errors;
        total.error_texts.extend(outcome.error_texts);
    }
    total.error_texts.truncate(ERRORS_SHOWN);
    let elapsed = began.elapsed();
    total.latencies.sort();
    Ok(Run {
        label: "etcd (3 members), raw puts".to_string(),
        creates: total.latencies.len(),
        elapsed,
        latencies: total.latencies,
        errors: total.errors,
        error_texts: total.error_texts,
        server_cpu: cpu_seconds_of(&pids)? - server_before,
        client_cpu: cpu_seconds(std::process::id())? - client_before,
        notes: Vec::new(),
    })
}

fn print(args: &ApiArgs, runs: &[Run]) {
    let what = match args.count {
        Some(n) => format!("{n} creates per store"),
        None => format!("{:.0} s per store", args.duration.as_secs_f64()),
    };
    println!(
        "herd bench api: {} clients creating ConfigMaps in default over HTTPS (one keep-alive connection \
         each), {what}, against a fresh `herd control` (no node); cold start included",
        args.clients
    );
    println!(
        "{:<30} {:>9} {:>8} {:>8} {:>8} {:>7} {:>11} {:>11}",
        "store", "creates/s", "p50 ms", "p99 ms", "max ms", "errors", "server CPU", "client CPU"
    );
    for run in runs {
        let secs = run.elapsed.as_secs_f64().max(1e-9);
        println!(
            "{:<30} {:>9.0} {:>8.2} {:>8.2} {:>8.2} {:>7} {:>10.2}c {:>10.2}c",
            run.label,
            run.creates as f64 / secs,
            ms(percentile(&run.latencies, 50.0)),
            ms(percentile(&run.latencies, 99.0)),
            ms(run.latencies.last().copied().unwrap_or_default()),
            run.errors,
            run.server_cpu / secs,
            run.client_cpu / secs,
        );
    }
    println!("(CPU in cores used over the run, from /proc: 2 cores is all of this machine)");
    for run in runs {
        let mut lines = String::new();
        for note in &run.notes {
            let _ = writeln!(lines, "  {note}");
        }
        for text in &run.error_texts {
            let _ = writeln!(lines, "  error: {text}");
        }
        if !lines.is_empty() {
            print!("{}:\n{lines}", run.label);
        }
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// User + system CPU seconds of process `pid` (all its threads), from /proc.
fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // The fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    // utime and stime are fields 14 and 15 of the line, the 12th and 13th after the name.
    let ticks = |i: usize| -> anyhow::Result<f64> {
        Ok(fields
            .get(i)
            .with_context(|| format!("/proc/{pid}/stat is short"))?
            .parse::<f64>()?)
    };
    Ok((ticks(11)? + ticks(12)?) / clock_ticks())
}

fn cpu_seconds_of(pids: &[u32]) -> anyhow::Result<f64> {
    pids.iter().map(|pid| cpu_seconds(*pid)).sum()
}

/// The unit of /proc's CPU times: USER_HZ, which Linux fixes at 100 in its ABI.
fn clock_ticks() -> f64 {
    100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_add_up() {
        let shares: Vec<usize> = (0..64).map(|i| share(1000, 64, i)).collect();
        assert_eq!(shares.iter().sum::<usize>(), 1000);
        assert!(shares.iter().all(|s| *s == 15 || *s == 16));
    }

    #[test]
    fn own_cpu_time_reads() {
        assert!(cpu_seconds(std::process::id()).unwrap() >= 0.0);
    }
}
