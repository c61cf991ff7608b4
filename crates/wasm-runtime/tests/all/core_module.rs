//! WASI preview 1 core modules, written in WAT.

use std::time::{Duration, Instant};

use herd_wasm_runtime::{Exit, WorkloadKind};
use tokio_util::sync::CancellationToken;

use crate::{Log, load, run, runtime, with_timeout};

const HELLO_EXIT_3: &str = r#"
(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "hello\n")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 16))
    (i32.store (i32.const 4) (i32.const 6))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
    (call $proc_exit (i32.const 3))
    unreachable))
"#;

/// Prints the raw argv buffer then the raw environ buffer (NUL-terminated
/// strings) to stdout.
const PRINT_ARGS_AND_ENV: &str = r#"
(module
  (import "wasi_snapshot_preview1" "args_sizes_get" (func $args_sizes_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "args_get" (func $args_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_sizes_get" (func $environ_sizes_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_get" (func $environ_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func $print (param $ptr i32) (param $len i32)
    (i32.store (i32.const 0) (local.get $ptr))
    (i32.store (i32.const 4) (local.get $len))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8))))
  (func (export "_start")
    (drop (call $args_sizes_get (i32.const 16) (i32.const 20)))
    (drop (call $args_get (i32.const 1024) (i32.const 4096)))
    (call $print (i32.const 4096) (i32.load (i32.const 20)))
    (drop (call $environ_sizes_get (i32.const 16) (i32.const 20)))
    (drop (call $environ_get (i32.const 1024) (i32.const 8192)))
    (call $print (i32.const 8192) (i32.load (i32.const 20)))))
"#;

const SPIN: &str = r#"(module (func (export "_start") (loop $spin (br $spin))))"#;

#[tokio::test]
async fn proc_exit_status_and_stdout() {
    let runtime = runtime();
    let workload = load(&runtime, HELLO_EXIT_3);
    assert_eq!(workload.kind(), WorkloadKind::Module);
    let log = Log::new();

    let exit = run(&workload, log.spec(&["hello"], &[])).await;

    assert_eq!(exit.ok(), Some(Exit::Exited(3)));
    assert_eq!(log.contents(), b"hello\n");
}

#[tokio::test]
async fn returning_from_start_is_exit_0() {
    let runtime = runtime();
    let workload = load(&runtime, r#"(module (func (export "_start")))"#);
    let exit = run(&workload, Log::new().spec(&["noop"], &[])).await;
    assert_eq!(exit.ok(), Some(Exit::Exited(0)));
}

#[tokio::test]
async fn argv_and_env_reach_the_guest() {
    let runtime = runtime();
    let workload = load(&runtime, PRINT_ARGS_AND_ENV);
    let log = Log::new();

    let spec = log.spec(&["prog", "first arg"], &[("K1", "v1"), ("K2", "v=2")]);
    let exit = run(&workload, spec).await;

    assert_eq!(exit.ok(), Some(Exit::Exited(0)));
    assert_eq!(
        String::from_utf8_lossy(&log.contents()),
        "prog\0first arg\0K1=v1\0K2=v=2\0"
    );
}

#[tokio::test]
async fn a_trap_is_reported_with_its_cause() {
    let runtime = runtime();
    let workload = load(&runtime, r#"(module (func (export "_start") unreachable))"#);
    match run(&workload, Log::new().spec(&["trap"], &[])).await {
        Ok(Exit::Trapped(message)) => {
            assert!(message.starts_with("wasm trap:"), "{message}");
            assert!(message.contains("unreachable"), "{message}")
        }
        other => panic!("expected a trap, got {other:?}"),
    }
}

#[tokio::test]
async fn a_trap_in_the_start_function_is_a_trap() {
    let runtime = runtime();
    let workload = load(
        &runtime,
        r#"(module (func $boom unreachable) (start $boom) (func (export "_start")))"#,
    );
    let exit = run(&workload, Log::new().spec(&["trap"], &[])).await;
    assert!(matches!(exit, Ok(Exit::Trapped(_))), "{exit:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spinning_guest_stops_promptly() {
    let runtime = runtime();
    let workload = load(&runtime, SPIN);
    let log = Log::new();
    let stop = CancellationToken::new();
    let task = tokio::spawn({
        let stop = stop.clone();
        let spec = log.spec(&["spin"], &[]);
        async move { workload.run(spec, stop).await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!task.is_finished(), "the guest should still be spinning");

    let cancelled_at = Instant::now();
    stop.cancel();
    let exit = with_timeout(task).await.expect("task");

    assert_eq!(exit.ok(), Some(Exit::Stopped));
    let took = cancelled_at.elapsed();
    assert!(took < Duration::from_millis(500), "stopping took {took:?}");
}

/// A spinning guest yields every epoch tick, so it cannot starve other tasks
/// even on a single-threaded executor. (Run on its own thread so a regression
/// fails the test instead of hanging it.)
#[test]
fn a_spinning_guest_does_not_starve_its_thread() {
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let executor = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("executor");
        let exit = executor.block_on(async {
            let runtime = runtime();
            let workload = load(&runtime, SPIN);
            let stop = CancellationToken::new();
            let log = Log::new();
            let guest = workload.run(log.spec(&["spin"], &[]), stop.clone());
            let stopper = async {
                tokio::time::sleep(Duration::from_millis(50)).await;
                stop.cancel();
            };
            tokio::join!(guest, stopper).0
        });
        let _ = done.send(exit);
    });
    let exit = finished
        .recv_timeout(Duration::from_secs(30))
        .expect("the spinning guest starved the executor");
    assert_eq!(exit.ok(), Some(Exit::Stopped));
}

#[tokio::test]
async fn an_already_cancelled_token_stops_before_running() {
    let runtime = runtime();
    let workload = load(&runtime, HELLO_EXIT_3);
    let log = Log::new();
    let stop = CancellationToken::new();
    stop.cancel();
    let exit = with_timeout(workload.run(log.spec(&["hello"], &[]), stop)).await;
    assert_eq!(exit.ok(), Some(Exit::Stopped));
    assert!(log.contents().is_empty());
}

#[tokio::test]
async fn one_workload_runs_many_times() {
    let runtime = runtime();
    let workload = load(&runtime, HELLO_EXIT_3);
    let log = Log::new();
    let (a, b) = tokio::join!(
        run(&workload, log.spec(&["a"], &[])),
        run(&workload, log.spec(&["b"], &[]))
    );
    assert_eq!(a.ok(), Some(Exit::Exited(3)));
    assert_eq!(b.ok(), Some(Exit::Exited(3)));
    assert_eq!(log.contents(), b"hello\nhello\n");
}
