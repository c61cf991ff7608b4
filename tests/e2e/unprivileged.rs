//! herd needs no root: the whole hello flow with herd running as `nobody`.

use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hello_flow_as_nobody() {
    if !is_root() {
        eprintln!("skipped: running as an unprivileged user already, and runuser needs root");
        return;
    }
    let registry = Registry::start().await;
    let image = registry.image("hello:v1");
    push("hello", &image).await;

    let mut herd = Herd::up(HerdOptions {
        unprivileged: true,
        registry: true,
        ..Default::default()
    })
    .await;
    let pid = herd.process().pid;
    let uid = real_uid(pid).expect("herd's /proc status");
    assert_ne!(uid, 0, "herd (pid {pid}) runs as root");
    assert_eq!(uid, 65534, "herd (pid {pid}) is not nobody");

    herd.create(
        PODS,
        &hello_pod("hello", &image, &["unprivileged"], "Never"),
    )
    .await;
    let pod = herd.wait_phase("hello", "Succeeded").await;
    assert_eq!(container_status(&pod)["state"]["terminated"]["exitCode"], 0);
    let log = herd.pod_log("hello").await;
    assert!(
        log.contains("Hello from herd!") && log.contains(r#"args: ["unprivileged"]"#),
        "log:\n{log}"
    );

    // The embedded registry works unprivileged too.
    let embedded = herd.registry.clone().expect("embedded registry");
    let local = format!("{embedded}/hello:v1");
    push("hello", &local).await;
    herd.create(PODS, &hello_pod("local", &local, &[], "Never"))
        .await;
    herd.wait_phase("local", "Succeeded").await;

    let took = herd.stop();
    assert!(
        took < std::time::Duration::from_secs(10),
        "herd as nobody took {took:?} to stop"
    );
}
