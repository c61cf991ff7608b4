//! Container logs through the API (`pods/NAME/log`, plain and `follow=true`) and the CLI, and deleting a
//! pod whose guest spins forever.

use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;

use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_endpoint_returns_greeting_args_and_env() {
    let registry = Registry::start().await;
    let image = registry.image("hello:v1");
    push("hello", &image).await;
    let herd = Herd::up(HerdOptions::default()).await;

    herd.create(
        PODS,
        &hello_pod("greeter", &image, &["--name", "two words"], "Never"),
    )
    .await;
    herd.wait_phase("greeter", "Succeeded").await;
    let log = herd.pod_log("greeter").await;
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.first(), Some(&"Hello from herd!"), "log:\n{log}");
    assert!(
        lines.contains(&r#"args: ["--name", "two words"]"#),
        "log:\n{log}"
    );
    assert!(lines.contains(&"env GREETING=hi"), "log:\n{log}");

    // ?container= names the container explicitly; an unknown one is an error, not an empty log.
    let url = herd.url(&format!("{PODS}/greeter/log?container=hello"));
    let resp = herd.http.get(&url).send().await.expect("GET log");
    assert_eq!(resp.status().as_u16(), 200);
    assert!(
        resp.text()
            .await
            .unwrap_or_default()
            .contains("Hello from herd!")
    );
    let (status, _) = herd
        .get(&format!("{PODS}/greeter/log?container=nope"))
        .await;
    assert!(
        (400..500).contains(&status),
        "log of an unknown container -> {status}"
    );
    let (status, body) = herd.get(&format!("{PODS}/nope/log")).await;
    assert_eq!(status, 404, "log of a missing pod: {body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_streams_a_spinning_pod_and_delete_stops_it() {
    let registry = Registry::start().await;
    let image = registry.image("spin:v1");
    push("spin", &image).await;
    let mut herd = Herd::up(HerdOptions::default()).await;

    herd.create(PODS, &spin_pod("spin", &image)).await;
    herd.wait_phase("spin", "Running").await;

    // follow=true: the output so far, then the response stays open.
    let url = herd.url(&format!("{PODS}/spin/log?follow=true"));
    let mut follow = herd
        .http
        .get(&url)
        .send()
        .await
        .expect("GET log?follow=true");
    assert_eq!(follow.status().as_u16(), 200);
    let mut text = String::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !text.contains("spinning") {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, follow.chunk()).await {
            Ok(Ok(Some(chunk))) => text.push_str(&String::from_utf8_lossy(&chunk)),
            other => panic!("follow stream gave no `spinning` ({other:?}); got {text:?}"),
        }
    }
    match tokio::time::timeout(Duration::from_secs(2), follow.chunk()).await {
        Err(_) => {} // still open, nothing new: right
        Ok(other) => panic!("follow stream did not stay open while the pod runs: {other:?}"),
    }

    // The CLI's -f streams too.
    let mut cli_follow = tokio::process::Command::new(HERD)
        .args(["logs", "spin", "-f", "--kubeconfig"])
        .arg(&herd.kubeconfig)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn herd logs -f");
    let mut stdout = cli_follow.stdout.take().expect("stdout");
    let mut cli_text = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !String::from_utf8_lossy(&cli_text).contains("spinning") {
        let mut buf = [0u8; 1024];
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stdout.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => cli_text.extend_from_slice(&buf[..n]),
            other => panic!(
                "herd logs -f: no `spinning` ({other:?}): {:?}",
                String::from_utf8_lossy(&cli_text)
            ),
        }
    }
    assert!(
        cli_follow.try_wait().expect("try_wait").is_none(),
        "herd logs -f exited while the pod runs"
    );

    // The spinning guest burns CPU in the herd process.
    let pid = herd.process().pid;
    let busy = cpu_used_over(pid, Duration::from_secs(1));
    assert!(
        busy > Duration::from_millis(200),
        "a spinning guest used only {busy:?} CPU in 1 s"
    );

    // DELETE marks the pod (deletionTimestamp), the agent stops the guest, the pod disappears.
    let before = herd.pod("spin").await.expect("spin");
    let rv = s(&before, "/metadata/resourceVersion");
    let mut watch = WatchStream::open(
        &herd.http,
        &herd.url(&format!("{PODS}?watch=true&resourceVersion={rv}")),
    )
    .await;
    let deleted_at = Instant::now();
    let answer = herd.delete(&format!("{PODS}/spin")).await;
    assert!(
        !s(&answer, "/metadata/deletionTimestamp").is_empty(),
        "DELETE answered without deletionTimestamp: {answer}"
    );
    let (events, done) = watch
        .until(Duration::from_secs(10), |e| e["type"] == "DELETED")
        .await;
    let seen: Vec<String> = events.iter().map(watch_describe).collect();
    assert!(done, "pod not gone within 10 s of DELETE: {seen:?}");
    assert!(
        events
            .iter()
            .any(|e| e["type"] == "MODIFIED"
                && !s(e, "/object/metadata/deletionTimestamp").is_empty()),
        "no event with deletionTimestamp before DELETED: {seen:?}"
    );
    assert!(deleted_at.elapsed() < Duration::from_secs(10));
    assert_eq!(herd.get(&format!("{PODS}/spin")).await.0, 404);

    // The follow streams end with the container.
    let ended = tokio::time::timeout(Duration::from_secs(15), async {
        while let Ok(Some(_)) = follow.chunk().await {}
    })
    .await;
    assert!(
        ended.is_ok(),
        "log?follow=true stayed open after the pod was deleted"
    );
    let exited = tokio::time::timeout(Duration::from_secs(15), cli_follow.wait()).await;
    assert!(
        exited.is_ok(),
        "herd logs -f did not exit after the pod was deleted"
    );

    // And the CPU goes back down.
    wait_for(
        "herd to stop burning CPU",
        Duration::from_secs(10),
        || async {
            let used = cpu_used_over(pid, Duration::from_secs(1));
            if used < Duration::from_millis(300) {
                Ok(())
            } else {
                Err(format!("{used:?} CPU in the last second"))
            }
        },
    )
    .await;
}

fn cpu_used_over(pid: u32, window: Duration) -> Duration {
    let start = cpu_time(pid);
    std::thread::sleep(window);
    cpu_time(pid).saturating_sub(start)
}
