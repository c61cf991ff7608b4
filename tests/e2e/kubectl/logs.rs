//! `kubectl logs`: whole, `--tail`, `--timestamps`, `--limit-bytes`, `-c`, `-f`, `--previous`,
//! `deploy/NAME` and `-l`.

use std::time::Duration;

use serde_json::json;

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_logs_tail_timestamps_follow_previous_and_deployment() {
    let c = Cluster::up(&[("hello", "v1")]).await;
    let herd = &c.herd;
    let hello = c.image("hello", "v1");

    herd.create(PODS, &sleeper_pod("sleeper", &hello)).await;
    // Exits 3 after printing: restarted (with back-off) by restartPolicy Always.
    let mut crasher = hello_pod("crasher", &hello, &["--exit=3"], "Always");
    crasher["metadata"]["labels"] = json!({"app": "crasher"});
    herd.create(PODS, &crasher).await;
    herd.create(DEPLOYMENTS, &sleeper_deployment("talker", &hello, 1))
        .await;
    wait_ready_pods(herd, "default", "app=sleeper", 1).await;
    wait_ready_pods(herd, "default", "app=talker", 1).await;

    // The whole log, exactly what pods/log answers.
    let full = herd.pod_log("sleeper").await;
    let out = kubectl(herd, &["logs", "sleeper"]).await.ok();
    assert_eq!(out.stdout, full);
    let lines: Vec<&str> = full.lines().collect();
    assert_eq!(lines.first(), Some(&"Hello from herd!"), "{full}");
    assert!(lines.contains(&r#"args: ["--sleep-ms=3600000"]"#), "{full}");
    assert!(lines.contains(&"env GREETING=hi"), "{full}");

    // --tail=N: the last N lines.
    let out = kubectl(herd, &["logs", "sleeper", "--tail=1"]).await.ok();
    assert_eq!(out.stdout, format!("{}\n", lines[lines.len() - 1]));
    let out = kubectl(herd, &["logs", "sleeper", "--tail=2"]).await.ok();
    assert_eq!(
        out.stdout,
        format!("{}\n", lines[lines.len() - 2..].join("\n"))
    );

    // --timestamps: an RFC 3339 time, a space, then the line.
    let out = kubectl(herd, &["logs", "sleeper", "--timestamps"])
        .await
        .ok();
    let stamped: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(stamped.len(), lines.len(), "{}", out.stdout);
    for (stamped, plain) in stamped.iter().zip(&lines) {
        let (time, rest) = stamped.split_once(' ').unwrap_or(("", ""));
        assert_eq!(rest, *plain);
        assert!(
            time.len() >= 20
                && time.as_bytes()[4] == b'-'
                && time.contains('T')
                && time.ends_with('Z'),
            "not an RFC 3339 timestamp: {time:?}"
        );
    }

    // --limit-bytes, --since, -c.
    let out = kubectl(herd, &["logs", "sleeper", "--limit-bytes=5"])
        .await
        .ok();
    assert_eq!(out.stdout, "Hello");
    let out = kubectl(herd, &["logs", "sleeper", "--since=1h"]).await.ok();
    assert_eq!(out.stdout, full);
    let out = kubectl(herd, &["logs", "sleeper", "-c", "hello"])
        .await
        .ok();
    assert_eq!(out.stdout, full);
    kubectl(herd, &["logs", "sleeper", "-c", "nope"])
        .await
        .fails()
        .stderr_has("container nope is not valid for pod sleeper");
    kubectl(herd, &["logs", "nope"])
        .await
        .fails()
        .stderr_has(r#"pods "nope" not found"#);

    // deploy/NAME and -l pick the deployment's pod.
    let out = kubectl(herd, &["logs", "deploy/talker"]).await.ok();
    assert!(
        out.stdout.starts_with("Hello from herd!\n"),
        "{}",
        out.stdout
    );
    let out = kubectl(herd, &["logs", "-l", "app=talker"]).await.ok();
    assert!(
        out.stdout.starts_with("Hello from herd!\n"),
        "{}",
        out.stdout
    );

    // --previous: the log of the last terminated instance; an error when there is none.
    kubectl(herd, &["logs", "sleeper", "--previous"])
        .await
        .fails()
        .stderr_has(r#"previous terminated container "hello" in pod "sleeper" not found"#);
    herd.wait_pod("crasher", "restarted once", START_TIMEOUT, |p| {
        container_status(p)["restartCount"].as_i64().unwrap_or(0) >= 1
    })
    .await;
    let out = kubectl(herd, &["logs", "crasher", "--previous"]).await.ok();
    assert!(
        out.stdout.starts_with("Hello from herd!\n"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains(r#"args: ["--exit=3"]"#),
        "{}",
        out.stdout
    );
    // The RESTARTS column says how long ago the last restart was.
    let table = kubectl(herd, &["get", "pod", "crasher"]).await.ok().table();
    let restarts = table.row("crasher").get("RESTARTS").to_string();
    let count: u32 = restarts
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(
        count >= 1 && restarts.ends_with(" ago)"),
        "RESTARTS {restarts:?}"
    );

    // -f: the log so far, then the stream stays open until the container ends.
    let mut follow = kubectl_spawn(herd, &["logs", "-f", "sleeper"]);
    follow
        .wait_line("the greeting", Duration::from_secs(20), |l| {
            l == "Hello from herd!"
        })
        .await;
    let more = follow.lines_within(Duration::from_secs(2)).await;
    assert!(
        follow.running(),
        "kubectl logs -f exited while the pod runs: {}",
        follow.stderr()
    );
    assert!(more.iter().all(|l| lines.contains(&l.as_str())), "{more:?}");
    herd.delete(&format!("{PODS}/sleeper")).await;
    let status = follow.wait_exit(Duration::from_secs(30)).await;
    assert!(
        status.is_some_and(|s| s.success()),
        "kubectl logs -f did not end cleanly within 30 s of deleting the pod: {status:?} {}",
        follow.stderr()
    );
}
