//! Integration tests for herd-wasm-runtime, one binary with a module per topic.

mod cache;
mod command;
mod core_module;
mod http_pool;
mod limits;
mod load;
mod name_lookup;
mod outbound_tls;
mod pod_network;
mod preopens;
mod sample_apps;

use std::fs::{File, OpenOptions};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use herd_wasm_runtime::{Exit, RunSpec, Runtime, RuntimeError, Workload};
use tokio_util::sync::CancellationToken;

/// No test run should take this long; a hang fails instead of blocking CI.
const TEST_TIMEOUT: Duration = Duration::from_secs(60);

/// A log file in a temporary directory, like the node agent's container log.
pub(crate) struct Log {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl Log {
    pub(crate) fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("container.log");
        Self { _dir: dir, path }
    }

    fn open(&self) -> File {
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .expect("open log")
    }

    /// A spec writing both stdout and stderr to this log.
    pub(crate) fn spec(&self, argv: &[&str], env: &[(&str, &str)]) -> RunSpec {
        RunSpec::new(
            argv.iter().map(|s| s.to_string()).collect(),
            env.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            self.open(),
            self.open(),
        )
    }

    pub(crate) fn contents(&self) -> Vec<u8> {
        std::fs::read(&self.path).unwrap_or_default()
    }
}

pub(crate) fn load(runtime: &Runtime, wasm: impl AsRef<[u8]>) -> Workload {
    match runtime.load(wasm.as_ref()) {
        Ok(workload) => workload,
        Err(e) => panic!("load failed: {e}"),
    }
}

/// Runs to completion (no stop) with a timeout.
pub(crate) async fn run(workload: &Workload, spec: RunSpec) -> Result<Exit, RuntimeError> {
    with_timeout(workload.run(spec, CancellationToken::new())).await
}

pub(crate) async fn with_timeout<F: Future>(future: F) -> F::Output {
    tokio::time::timeout(TEST_TIMEOUT, future)
        .await
        .expect("test timed out")
}

/// Reads a sample app built by `sample-apps/build.sh`; fails (never skips)
/// when it is missing.
pub(crate) fn sample_app(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../sample-apps/dist")
        .join(name);
    match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) => panic!(
            "sample app {} is missing ({e}): run sample-apps/build.sh to build it",
            path.display()
        ),
    }
}

pub(crate) fn runtime() -> Runtime {
    Runtime::new().expect("runtime")
}

/// A guest future must be `Send` (the node agent spawns it on tokio), and
/// runtimes and workloads are shared between tasks.
#[test]
fn futures_are_send_and_handles_are_shared() {
    fn assert_send<T: Send>(_: &T) {}
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Runtime>();
    assert_send_sync::<Workload>();
    let runtime = runtime();
    let workload = load(&runtime, "(module (func (export \"_start\")))");
    let log = Log::new();
    let future = workload.run(log.spec(&["x"], &[]), CancellationToken::new());
    assert_send(&future);
}
