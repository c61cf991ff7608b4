//! `herd bench density`: how many idle wasi-http pods one node holds, and the host memory each costs
//! (resident memory of the whole `herd up` process after the pods are Running, minus before, per pod).
//! By default the pods are all created at once on a fresh node that has never run the image, as a user's
//! first Deployment meets it (every pod pays or waits for the pull and the compile); `--warm` starts one pod
//! first and takes the baseline after it, so the figure is the pods' own cost from the node's caches.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use futures::StreamExt as _;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::PostParams;

use super::cluster::{Cluster, capacity_flags};
use super::pods::{http_pod, running_pods};

/// How many creates are in flight at once.
const CONCURRENT_CREATES: usize = 32;

pub async fn run(count: usize, warm: bool, wasm: &Path, timeout: Duration) -> anyhow::Result<()> {
    let cluster = Cluster::start(&capacity_flags(count)).await?;
    let result = measure(&cluster, count, warm, wasm, timeout).await;
    cluster.stop().await;
    result
}

async fn measure(
    cluster: &Cluster,
    count: usize,
    warm: bool,
    wasm: &Path,
    timeout: Duration,
) -> anyhow::Result<()> {
    let image = cluster.push(wasm, "bench-density:v1").await?;
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), "default");
    let mut running = running_pods(pods.clone());
    if warm {
        // One pod first, so the image is pulled and compiled before the baseline is taken.
        pods.create(&PostParams::default(), &http_pod("density-warm", &image)?)
            .await?;
        running.wait_for("density-warm").await?;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = cluster.rss_bytes()?;
    let began = Instant::now();
    let creates = futures::stream::iter(0..count)
        .map(|i| {
            let (pods, image) = (pods.clone(), image.clone());
            async move {
                let name = format!("density-{i:05}");
                pods.create(&PostParams::default(), &http_pod(&name, &image)?)
                    .await
                    .with_context(|| format!("creating {name}"))
                    .map(|_| ())
            }
        })
        .buffer_unordered(CONCURRENT_CREATES);
    futures::pin_mut!(creates);
    while let Some(created) = creates.next().await {
        created?;
    }
    let created_in = began.elapsed();
    loop {
        let n = running.count_now().saturating_sub(usize::from(warm));
        if n >= count {
            break;
        }
        if began.elapsed() > timeout {
            bail!("only {n} of {count} pods Running after {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let all_running = began.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = cluster.rss_bytes()?;
    let served = probe_some(&pods, count).await?;
    let per_pod = after.saturating_sub(before) as f64 / count as f64;
    println!(
        "density ({}): {count} idle wasi-http pods Running on one node in {:.1} s (created in {:.1} s); \
         herd up RSS {:.0} MiB → {:.0} MiB = {:.1} KiB per pod; {served} sampled pods answered HTTP",
        if warm {
            "warm: after one pod of the image"
        } else {
            "cold: the image never run on the node before"
        },
        all_running.as_secs_f64(),
        created_in.as_secs_f64(),
        before as f64 / 1048576.0,
        after as f64 / 1048576.0,
        per_pod / 1024.0,
    );
    Ok(())
}

/// Asks a spread of the pods for a response on their pod IP; how many answered 200.
async fn probe_some(pods: &Api<Pod>, count: usize) -> anyhow::Result<usize> {
    let step = (count / 20).max(1);
    let mut ok = 0;
    for i in (0..count).step_by(step) {
        let pod = pods.get(&format!("density-{i:05}")).await?;
        let Some(ip) = pod.status.and_then(|s| s.pod_ip) else {
            continue;
        };
        if super::http::get_ok(&format!("{ip}:8080").parse()?).await {
            ok += 1;
        }
    }
    Ok(ok)
}
