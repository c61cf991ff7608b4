//! WASI 0.2 command components (`wasi:cli/run`), written in WAT.

use std::time::{Duration, Instant};

use herd_wasm_runtime::{Exit, WorkloadKind};
use tokio_util::sync::CancellationToken;

use crate::{Log, load, run, runtime, with_timeout};

/// A command whose `run` is the core function `body` (returning the
/// `result` discriminant: 0 = ok, 1 = err), with `wasi:cli/exit` and
/// `wasi:cli/environment` imported and lowered into it.
fn command(body: &str) -> String {
    format!(
        r#"
(component
  (import "wasi:cli/exit@0.2.0" (instance $exit
    (export "exit" (func (param "status" (result))))))
  (import "wasi:cli/environment@0.2.0" (instance $env
    (export "get-environment" (func (result (list (tuple string string)))))
    (export "get-arguments" (func (result (list string))))))

  ;; Memory and a bump allocator for lowering lists and strings.
  (core module $libc
    (memory (export "memory") 1)
    (global $bump (mut i32) (i32.const 1024))
    (func (export "realloc") (param i32 i32 i32 i32) (result i32)
      (local $ptr i32)
      (local.set $ptr
        (i32.and
          (i32.add (global.get $bump) (i32.sub (local.get 2) (i32.const 1)))
          (i32.sub (i32.const 0) (local.get 2))))
      (global.set $bump (i32.add (local.get $ptr) (local.get 3)))
      (local.get $ptr)))
  (core instance $libc (instantiate $libc))

  (core func $exit (canon lower (func $exit "exit")))
  (core func $get_args (canon lower (func $env "get-arguments")
    (memory (core memory $libc "memory")) (realloc (core func $libc "realloc"))))
  (core func $get_env (canon lower (func $env "get-environment")
    (memory (core memory $libc "memory")) (realloc (core func $libc "realloc"))))

  (core module $main
    (import "libc" "memory" (memory 1))
    (import "wasi" "exit" (func $exit (param i32)))
    (import "wasi" "get-arguments" (func $get_args (param i32)))
    (import "wasi" "get-environment" (func $get_env (param i32)))
    (func (export "run") (result i32)
      {body}))
  (core instance $main (instantiate $main
    (with "libc" (instance $libc))
    (with "wasi" (instance
      (export "exit" (func $exit))
      (export "get-arguments" (func $get_args))
      (export "get-environment" (func $get_env))))))

  (func $run (result (result)) (canon lift (core func $main "run")))
  (instance $run (export "run" (func $run)))
  (export "wasi:cli/run@0.2.0" (instance $run)))
"#
    )
}

/// Returns ok only when argv is ["prog", "xyz"] and the environment is
/// exactly one pair whose key starts with 'K' and value with 'V'.
const CHECK_ARGS_AND_ENV: &str = r#"
      (local $list i32)
      (call $get_args (i32.const 0))
      (if (i32.ne (i32.load (i32.const 4)) (i32.const 2)) (then (return (i32.const 1))))
      (local.set $list (i32.load (i32.const 0)))
      ;; argv[1]: (ptr, len) at list+8
      (if (i32.ne (i32.load offset=12 (local.get $list)) (i32.const 3))
        (then (return (i32.const 1))))
      (if (i32.ne (i32.load16_u (i32.load offset=8 (local.get $list))) (i32.const 0x7978))
        (then (return (i32.const 1))))
      (if (i32.ne (i32.load8_u offset=2 (i32.load offset=8 (local.get $list))) (i32.const 0x7a))
        (then (return (i32.const 1))))
      (call $get_env (i32.const 0))
      (if (i32.ne (i32.load (i32.const 4)) (i32.const 1)) (then (return (i32.const 1))))
      (local.set $list (i32.load (i32.const 0)))
      ;; env[0]: key (ptr, len) at list+0, value (ptr, len) at list+8
      (if (i32.ne (i32.load8_u (i32.load (local.get $list))) (i32.const 0x4b))
        (then (return (i32.const 1))))
      (if (i32.ne (i32.load8_u (i32.load offset=8 (local.get $list))) (i32.const 0x56))
        (then (return (i32.const 1))))
      (i32.const 0)
"#;

#[tokio::test]
async fn run_ok_and_err_are_exit_0_and_1() {
    let runtime = runtime();
    let ok = load(&runtime, command("(i32.const 0)"));
    let err = load(&runtime, command("(i32.const 1)"));
    assert_eq!(ok.kind(), WorkloadKind::Command);

    let log = Log::new();
    assert_eq!(
        run(&ok, log.spec(&["ok"], &[])).await.ok(),
        Some(Exit::Exited(0))
    );
    assert_eq!(
        run(&err, log.spec(&["err"], &[])).await.ok(),
        Some(Exit::Exited(1))
    );
}

#[tokio::test]
async fn argv_and_env_reach_the_guest() {
    let runtime = runtime();
    let workload = load(&runtime, command(CHECK_ARGS_AND_ENV));
    let log = Log::new();

    let right = run(&workload, log.spec(&["prog", "xyz"], &[("KEY", "VALUE")])).await;
    let wrong_arg = run(&workload, log.spec(&["prog", "xyw"], &[("KEY", "VALUE")])).await;
    let wrong_env = run(&workload, log.spec(&["prog", "xyz"], &[])).await;

    assert_eq!(right.ok(), Some(Exit::Exited(0)));
    assert_eq!(wrong_arg.ok(), Some(Exit::Exited(1)));
    assert_eq!(wrong_env.ok(), Some(Exit::Exited(1)));
}

#[tokio::test]
async fn wasi_cli_exit_ends_the_run() {
    let runtime = runtime();
    // exit(ok) must not return: reaching `unreachable` would be a trap.
    let workload = load(&runtime, command("(call $exit (i32.const 0)) unreachable"));
    let exit = run(&workload, Log::new().spec(&["exit"], &[])).await;
    assert_eq!(exit.ok(), Some(Exit::Exited(0)));

    let workload = load(&runtime, command("(call $exit (i32.const 1)) unreachable"));
    let exit = run(&workload, Log::new().spec(&["exit"], &[])).await;
    assert_eq!(exit.ok(), Some(Exit::Exited(1)));
}

#[tokio::test]
async fn a_trap_is_reported() {
    let runtime = runtime();
    let workload = load(&runtime, command("unreachable"));
    match run(&workload, Log::new().spec(&["trap"], &[])).await {
        Ok(Exit::Trapped(message)) => {
            assert!(message.starts_with("wasm trap:"), "{message}");
            assert!(message.contains("unreachable"), "{message}")
        }
        other => panic!("expected a trap, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spinning_command_stops_promptly() {
    let runtime = runtime();
    let workload = load(&runtime, command("(loop $spin (br $spin)) (i32.const 0)"));
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
