//! Resource limits enforced inside the Wasm sandbox, without cgroups: a memory hog ends OOMKilled while its
//! neighbour keeps serving; a spinning guest limited to a slice of a CPU leaves its neighbour's latency alone.

use std::time::{Duration, Instant};

use serde_json::json;

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_memory_hog_ends_oom_killed_while_its_neighbour_keeps_serving() {
    let (_registry, images) = registry_with(&["hello", "http-hello"]).await;
    let herd = Herd::up(HerdOptions::default()).await;
    herd.wait_node_ready("e2e-node").await;
    herd.create(PODS, &http_hello_pod("neighbour", "web", &images[1]))
        .await;
    let neighbour = wait_running(&herd, "neighbour").await;
    wait_answer(&neighbour, 8080, "/", 200).await;

    let mut hog = hello_pod("hog", &images[0], &["--alloc-mib=256"], "Never");
    hog["spec"]["containers"][0]["resources"] = json!({"limits": {"memory": "64Mi"}});
    herd.create(PODS, &hog).await;
    let hog = wait_pod(&herd, "hog", "Failed", START_TIMEOUT, |p| {
        phase(p) == "Failed"
    })
    .await;
    let terminated = &container_status(&hog)["state"]["terminated"];
    assert_eq!(
        (s(terminated, "/reason"), terminated["exitCode"].as_i64()),
        ("OOMKilled", Some(137)),
        "{}",
        pod_summary(&hog)
    );
    // The neighbour never noticed.
    assert_eq!(pod_get(&neighbour, 8080, "/").await.0, 200);
    assert_eq!(phase(&get_pod(&herd, "neighbour").await), "Running");
}

/// Median of `n` sequential GETs.
async fn median_latency(pod: &Value, n: usize) -> Duration {
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let began = Instant::now();
        let (status, _) = pod_get(pod, 8080, "/").await;
        assert_eq!(status, 200);
        samples.push(began.elapsed());
    }
    samples.sort();
    samples[n / 2]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spinning_guest_gets_its_cpu_share_and_its_neighbour_stays_fast() {
    let (_registry, images) = registry_with(&["spin", "http-hello"]).await;
    let mut herd = Herd::up(HerdOptions::default()).await;
    herd.wait_node_ready("e2e-node").await;
    herd.create(PODS, &http_hello_pod("neighbour", "web", &images[1]))
        .await;
    let neighbour = wait_running(&herd, "neighbour").await;
    wait_answer(&neighbour, 8080, "/", 200).await;
    let baseline = median_latency(&neighbour, 60).await;

    // Two spinners (enough to take both cores without limits), each limited to a tenth of a core.
    for name in ["spin-a", "spin-b"] {
        let mut pod = spin_pod(name, &images[0]);
        pod["spec"]["containers"][0]["resources"] = json!({"limits": {"cpu": "100m"}});
        herd.create(PODS, &pod).await;
        wait_running(&herd, name).await;
    }
    let pid = herd.process().pid;
    let cpu_before = cpu_time(pid);
    let window = Instant::now();
    let loaded = median_latency(&neighbour, 60).await;
    tokio::time::sleep(Duration::from_secs(2).saturating_sub(window.elapsed())).await;
    let cpu_share =
        cpu_time(pid).saturating_sub(cpu_before).as_secs_f64() / window.elapsed().as_secs_f64();
    // Two spinners at 100m each take ~0.2 of a core; unlimited they would take ~2.
    assert!(
        cpu_share < 0.8,
        "herd used {cpu_share:.2} cores with two 100m spinners"
    );
    // The other tests of the suite share these two cores: a window they load can be slow on its own, so
    // the latency is sampled in up to three windows. Spinners that starved the neighbour would make
    // every window slow.
    let bound = baseline * 2 + Duration::from_millis(2);
    let mut windows = vec![loaded];
    while windows.iter().all(|w| *w > bound) && windows.len() < 3 {
        windows.push(median_latency(&neighbour, 60).await);
    }
    assert!(
        windows.iter().any(|w| *w <= bound),
        "neighbour latency {windows:?} with spinners vs {baseline:?} without"
    );
}
