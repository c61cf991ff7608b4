//! Memory and CPU limits.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use herd_wasm_runtime::{Exit, Limits, OutputSink, RunSpec};
use tokio_util::sync::CancellationToken;

use crate::{Log, load, run, runtime, with_timeout};

/// Grows its memory by `$pages` 64 KiB pages; traps if that fails.
fn grower(initial_pages: u32, grow_pages: u32) -> String {
    format!(
        r#"(module
  (memory {initial_pages})
  (func (export "_start")
    (if (i32.eq (memory.grow (i32.const {grow_pages})) (i32.const -1))
      (then unreachable))))"#
    )
}

const MIB: u64 = 1024 * 1024;

fn limited(log: &Log, memory_bytes: u64) -> RunSpec {
    let mut spec = log.spec(&["grow"], &[]);
    spec.limits.memory_bytes = Some(memory_bytes);
    spec
}

#[tokio::test]
async fn growing_past_the_memory_limit_is_out_of_memory() {
    let runtime = runtime();
    let log = Log::new();
    // 1 + 32 pages = 2.06 MiB > 2 MiB.
    let workload = load(&runtime, grower(1, 32));
    let exit = run(&workload, limited(&log, 2 * MIB)).await;
    assert!(
        matches!(&exit, Ok(Exit::OutOfMemory(m)) if m.contains("2097152")),
        "{exit:?}"
    );
    // Within the limit, and without one, the same guest succeeds.
    let exit = run(&workload, limited(&log, 4 * MIB)).await;
    assert_eq!(exit.ok(), Some(Exit::Exited(0)));
    let exit = run(&workload, log.spec(&["grow"], &[])).await;
    assert_eq!(exit.ok(), Some(Exit::Exited(0)));
}

#[tokio::test]
async fn an_initial_memory_over_the_limit_is_out_of_memory() {
    let runtime = runtime();
    let workload = load(&runtime, grower(64, 0));
    let exit = run(&workload, limited(&Log::new(), 2 * MIB)).await;
    assert!(matches!(exit, Ok(Exit::OutOfMemory(_))), "{exit:?}");
}

#[tokio::test]
async fn an_ordinary_trap_is_not_out_of_memory() {
    let runtime = runtime();
    let workload = load(&runtime, r#"(module (func (export "_start") unreachable))"#);
    let exit = run(&workload, limited(&Log::new(), 2 * MIB)).await;
    assert!(matches!(exit, Ok(Exit::Trapped(_))), "{exit:?}");
}

/// Spins forever, writing one byte to stdout every 2^20 iterations.
const SPIN_AND_REPORT: &str = r#"
(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) ".")
  (func (export "_start") (local $i i32)
    (i32.store (i32.const 0) (i32.const 16))
    (i32.store (i32.const 4) (i32.const 1))
    (loop $spin
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (if (i32.eqz (i32.and (local.get $i) (i32.const 0xfffff)))
        (then (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))
      (br $spin))))
"#;

/// Counts the bytes the guest writes.
#[derive(Default)]
struct Counter(AtomicUsize);

impl OutputSink for Counter {
    fn write(&self, bytes: &[u8]) {
        self.0.fetch_add(bytes.len(), Ordering::Relaxed);
    }
}

/// How far the spinning guest gets in `RUN_FOR` with this CPU limit.
async fn progress(cpu_millis: Option<u64>) -> usize {
    const RUN_FOR: Duration = Duration::from_millis(1500);
    let runtime = runtime();
    let workload = load(&runtime, SPIN_AND_REPORT);
    let counter = Arc::new(Counter::default());
    let sink: Arc<dyn OutputSink> = counter.clone();
    let mut spec = RunSpec::new(vec!["spin".into()], vec![], sink.clone(), sink);
    spec.limits = Limits {
        memory_bytes: None,
        cpu_millis,
    };
    let stop = CancellationToken::new();
    let task = tokio::spawn({
        let stop = stop.clone();
        async move { workload.run(spec, stop).await }
    });
    tokio::time::sleep(RUN_FOR).await;
    stop.cancel();
    let exit = with_timeout(task).await.expect("task");
    assert_eq!(exit.ok(), Some(Exit::Stopped));
    counter.0.load(Ordering::Relaxed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cpu_limit_slows_a_spinning_guest_to_its_share() {
    let unlimited = progress(None).await;
    let limited = progress(Some(100)).await;
    assert!(unlimited >= 20, "the guest barely ran: {unlimited}");
    // 100m is a tenth of a core; allow a wide margin for a busy machine.
    assert!(
        limited * 3 < unlimited,
        "limited to 100m: {limited} vs unlimited: {unlimited}"
    );
    assert!(limited > 0, "a limited guest must still make progress");
}
