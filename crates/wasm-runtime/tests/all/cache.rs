//! The compiled-code cache.

use std::path::{Path, PathBuf};

use herd_wasm_runtime::{CacheOutcome, Exit, Runtime, RuntimeConfig};

use crate::{Log, run, sample_app};

fn cached_runtime(dir: &Path) -> Runtime {
    Runtime::with_config(RuntimeConfig {
        cache_dir: Some(dir.to_owned()),
        ..RuntimeConfig::default()
    })
    .expect("runtime")
}

fn entries(dir: &Path, extension: &str) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("read dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == extension))
        .collect();
    found.sort();
    found
}

#[tokio::test]
async fn compiled_then_from_memory_then_from_disk_and_corruption_rebuilt() {
    let dir = tempfile::tempdir().expect("temp dir");
    let wasm = sample_app("hello.wasm");
    let key = "sha256:0123abcd";

    let first = cached_runtime(dir.path());
    assert!(first.loaded(key).is_none(), "nothing loaded yet");
    let (workload, outcome) = first.load_cached(&wasm, key).expect("load");
    assert_eq!(outcome, CacheOutcome::Compiled);
    // Loaded once, the workload is found by its key alone (no bytes), and runs.
    let by_key = first.loaded(key).expect("loaded by key");
    assert_eq!(
        run(&by_key, Log::new().spec(&["hello"], &[])).await.ok(),
        Some(Exit::Exited(0))
    );
    assert!(first.loaded("sha256:another").is_none());
    assert_eq!(
        run(&workload, Log::new().spec(&["hello"], &[])).await.ok(),
        Some(Exit::Exited(0))
    );
    let (_, outcome) = first.load_cached(&wasm, key).expect("load");
    assert_eq!(outcome, CacheOutcome::FromMemory);
    assert_eq!(entries(dir.path(), "cwasm").len(), 1);
    assert_eq!(entries(dir.path(), "sha256").len(), 1);

    let second = cached_runtime(dir.path());
    let (workload, outcome) = second.load_cached(&wasm, key).expect("load");
    assert_eq!(outcome, CacheOutcome::FromDisk);
    assert_eq!(
        run(&workload, Log::new().spec(&["hello"], &[])).await.ok(),
        Some(Exit::Exited(0))
    );

    // Flip one byte in the middle of the entry.
    let code = entries(dir.path(), "cwasm").remove(0);
    let mut bytes = std::fs::read(&code).expect("read");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&code, &bytes).expect("write");
    let (workload, outcome) = cached_runtime(dir.path())
        .load_cached(&wasm, key)
        .expect("load");
    assert_eq!(outcome, CacheOutcome::Compiled);
    assert_eq!(
        run(&workload, Log::new().spec(&["hello"], &[])).await.ok(),
        Some(Exit::Exited(0))
    );
    // Truncate it: detected too; then the rewritten entry is good again.
    std::fs::write(&code, &bytes[..middle]).expect("truncate");
    let (_, outcome) = cached_runtime(dir.path())
        .load_cached(&wasm, key)
        .expect("load");
    assert_eq!(outcome, CacheOutcome::Compiled);
    let (_, outcome) = cached_runtime(dir.path())
        .load_cached(&wasm, key)
        .expect("load");
    assert_eq!(outcome, CacheOutcome::FromDisk);

    // Another key is another entry; no temporary files are left behind.
    let (_, outcome) = second.load_cached(&wasm, "sha256:other").expect("load");
    assert_eq!(outcome, CacheOutcome::Compiled);
    assert_eq!(entries(dir.path(), "cwasm").len(), 2);
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .expect("read dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.contains(".tmp-")), "{names:?}");
}

#[tokio::test]
async fn without_a_cache_dir_only_memory_is_used() {
    let runtime = Runtime::new().expect("runtime");
    let wasm = sample_app("hello.wasm");
    let (_, outcome) = runtime.load_cached(&wasm, "k").expect("load");
    assert_eq!(outcome, CacheOutcome::Compiled);
    let (_, outcome) = runtime.load_cached(&wasm, "k").expect("load");
    assert_eq!(outcome, CacheOutcome::FromMemory);
}
