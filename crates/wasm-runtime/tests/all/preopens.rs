//! Preopened directories: what a guest can and cannot reach.

use herd_wasm_runtime::{Exit, Preopen};

use crate::{Log, load, run, runtime};

/// Opens `path` relative to the first preopen (fd 3), creating it for
/// writing when `create`, then exits with the errno (0 = success).
fn open_guest(path: &str, create: bool) -> String {
    // Creating asks for every right; opening only for fd_read.
    let (oflags, rights) = if create { (1, 0x1fff_ffff) } else { (0, 2) };
    let len = path.len();
    format!(
        r#"(module
  (import "wasi_snapshot_preview1" "path_open"
    (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 64) "{path}")
  (func (export "_start")
    (call $proc_exit
      (call $path_open (i32.const 3) (i32.const 0) (i32.const 64) (i32.const {len})
        (i32.const {oflags}) (i64.const {rights}) (i64.const {rights}) (i32.const 0)
        (i32.const 8)))
    unreachable))"#
    )
}

async fn exit_status(path: &str, create: bool, preopen: &Preopen) -> i32 {
    let runtime = runtime();
    let workload = load(&runtime, open_guest(path, create));
    let log = Log::new();
    let mut spec = log.spec(&["open"], &[]);
    spec.preopens = vec![preopen.clone()];
    match run(&workload, spec).await {
        Ok(Exit::Exited(status)) => status,
        other => panic!("unexpected end: {other:?}"),
    }
}

#[tokio::test]
async fn guest_reaches_only_its_mounts_and_read_only_is_honoured() {
    let root = tempfile::tempdir().expect("temp dir");
    let mount = root.path().join("mount");
    std::fs::create_dir(&mount).expect("mkdir");
    std::fs::write(mount.join("inside.txt"), "in").expect("write");
    std::fs::write(root.path().join("outside.txt"), "out").expect("write");
    let writable = Preopen {
        host: mount.clone(),
        guest: "/data".into(),
        read_only: false,
    };
    let read_only = Preopen {
        read_only: true,
        ..writable.clone()
    };

    assert_eq!(exit_status("inside.txt", false, &read_only).await, 0);
    assert_ne!(exit_status("../outside.txt", false, &writable).await, 0);
    assert_ne!(exit_status("/etc/passwd", false, &writable).await, 0);

    assert_ne!(exit_status("new.txt", true, &read_only).await, 0);
    assert!(!mount.join("new.txt").exists());
    assert_eq!(exit_status("new.txt", true, &writable).await, 0);
    assert!(mount.join("new.txt").exists());
}

#[tokio::test]
async fn a_missing_preopen_is_an_error() {
    let runtime = runtime();
    let workload = load(&runtime, open_guest("x", false));
    let mut spec = Log::new().spec(&["open"], &[]);
    spec.preopens = vec![Preopen {
        host: "/nonexistent/herd-test".into(),
        guest: "/data".into(),
        read_only: true,
    }];
    let exit = run(&workload, spec).await;
    assert!(
        matches!(exit, Err(herd_wasm_runtime::RuntimeError::Preopen { .. })),
        "{exit:?}"
    );
}
