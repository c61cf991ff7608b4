//! The compiled-module cache on the node's disk: the first pod of an image leaves compiled code there, a
//! restarted herd starts the image from it, and a corrupted entry is detected and rebuilt, never run.

use std::path::{Path, PathBuf};

use super::*;

/// The compiled entries (`*.cwasm`) in the node's cache.
fn entries(data_dir: &Path) -> Vec<PathBuf> {
    let dir = data_dir.join("node").join("wasm-cache");
    let mut found: Vec<PathBuf> = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "cwasm"))
        .collect();
    found.sort();
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compiled_code_is_cached_on_disk_and_a_corrupt_entry_is_rebuilt() {
    let (_registry, images) = registry_with(&["http-hello"]).await;
    let mut herd = Herd::up(HerdOptions::default()).await;
    herd.wait_node_ready("e2e-node").await;
    herd.create(PODS, &http_hello_pod("first", "web", &images[0]))
        .await;
    let first = wait_running(&herd, "first").await;
    wait_answer(&first, 8080, "/", 200).await;
    let cached = entries(&herd.data_dir);
    assert_eq!(
        cached.len(),
        1,
        "one compiled entry for the image: {cached:?}"
    );
    let good = std::fs::read(&cached[0]).expect("entry");

    // Corrupt the entry while herd is down: flip bytes in the middle of the code.
    herd.stop();
    let mut bad = good.clone();
    let middle = bad.len() / 2;
    for byte in &mut bad[middle..middle + 64] {
        *byte ^= 0xff;
    }
    std::fs::write(&cached[0], &bad).expect("corrupt the entry");

    herd.start().await;
    herd.wait_node_ready("e2e-node").await;
    herd.create(PODS, &http_hello_pod("second", "web", &images[0]))
        .await;
    let second = wait_running(&herd, "second").await;
    let body = wait_answer(&second, 8080, "/", 200).await;
    assert!(body.starts_with("Hello from herd!"), "{body}");
    // The corrupt entry was detected and replaced by a good one: the same compiled code as before.
    let after = entries(&herd.data_dir);
    assert_eq!(after, cached);
    assert_eq!(std::fs::read(&after[0]).expect("entry"), good);
}
