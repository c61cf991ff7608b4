//! Restarts as the kubelet does them: a crasher backs off exponentially in CrashLoopBackOff, keeps its last
//! state and its previous run's logs; a pod past its activeDeadlineSeconds is stopped as DeadlineExceeded.

use std::time::Duration;

use serde_json::json;

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crasher_reaches_crash_loop_back_off_with_growing_delays() {
    let (_registry, images) = registry_with(&["hello"]).await;
    let herd = Herd::up(HerdOptions {
        extra_args: vec!["--crash-loop-back-off-base".into(), "300ms".into()],
        ..Default::default()
    })
    .await;
    herd.wait_node_ready("e2e-node").await;
    herd.create(
        PODS,
        &hello_pod("crasher", &images[0], &["run-1", "--exit=3"], "Always"),
    )
    .await;
    // Collect the back-off delays the kubelet announces in the waiting message, in order.
    let mut delays: Vec<String> = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let pod = loop {
        let pod = get_pod(&herd, "crasher").await;
        let waiting = &container_status(&pod)["state"]["waiting"];
        if s(waiting, "/reason") == "CrashLoopBackOff" {
            let message = s(waiting, "/message");
            assert!(
                message.contains("restarting failed container=hello pod=crasher_default("),
                "kubelet's wording: {message}"
            );
            let delay = message
                .strip_prefix("back-off ")
                .and_then(|m| m.split_whitespace().next())
                .unwrap_or_default()
                .to_string();
            if delays.last() != Some(&delay) {
                delays.push(delay);
            }
        }
        if delays.len() >= 3 {
            break pod;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "three distinct, growing CrashLoopBackOff delays; so far {delays:?}; {}",
            pod_summary(&pod)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // Each delay doubles the one before, from the base (a poll may miss the very first, 300 ms one).
    let millis: Vec<u64> = delays.iter().map(|d| go_duration_ms(d)).collect();
    assert!(
        millis[0] == 300 || millis[0] == 600,
        "first delays {delays:?}"
    );
    assert!(
        millis.windows(2).all(|w| w[1] == w[0] * 2),
        "delays double: {delays:?}"
    );
    let status = container_status(&pod);
    // Three announced delays: at least two restarts behind them.
    assert!(
        status["restartCount"].as_i64().unwrap_or(0) >= 2,
        "{status}"
    );
    let last = &status["lastState"]["terminated"];
    assert_eq!(
        (s(last, "/reason"), last["exitCode"].as_i64()),
        ("Error", Some(3)),
        "{status}"
    );
    // The previous run's output is still there for `kubectl logs --previous`.
    let previous = kubectl(&herd, &["logs", "crasher", "--previous"])
        .await
        .ok();
    assert!(
        previous.stdout.contains("Hello from herd!") && previous.stdout.contains("run-1"),
        "{}",
        previous.stdout
    );
    let events = events_about(&herd, "crasher").await;
    assert!(
        events
            .iter()
            .any(|e| e.starts_with("BackOff: Back-off restarting failed container hello")),
        "{events:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_past_its_active_deadline_fails_as_deadline_exceeded() {
    let (_registry, images) = registry_with(&["hello"]).await;
    let herd = Herd::up(HerdOptions::default()).await;
    herd.wait_node_ready("e2e-node").await;
    let mut pod = hello_pod("sleeper", &images[0], &["--sleep-ms=600000"], "Never");
    pod["spec"]["activeDeadlineSeconds"] = json!(2);
    herd.create(PODS, &pod).await;
    wait_running(&herd, "sleeper").await;
    let failed = wait_pod(&herd, "sleeper", "Failed", Duration::from_secs(20), |p| {
        phase(p) == "Failed"
    })
    .await;
    assert_eq!(s(&failed, "/status/reason"), "DeadlineExceeded");
    assert_eq!(
        s(&failed, "/status/message"),
        "Pod was active on the node longer than the specified deadline"
    );
}

/// Milliseconds of a Go `time.Duration` string as the kubelet prints it ("300ms", "1.2s", "1m16.8s").
fn go_duration_ms(text: &str) -> u64 {
    let (minutes, rest) = match text.split_once('m') {
        Some((m, rest)) if !rest.is_empty() && !text.ends_with("ms") => {
            (m.parse::<u64>().unwrap_or(0), rest)
        }
        _ => (0, text),
    };
    let ms = if let Some(v) = rest.strip_suffix("ms") {
        v.parse::<f64>().unwrap_or(f64::NAN)
    } else if let Some(v) = rest.strip_suffix('s') {
        v.parse::<f64>().unwrap_or(f64::NAN) * 1000.0
    } else {
        f64::NAN
    };
    assert!(ms.is_finite(), "not a Go duration: {text:?}");
    minutes * 60_000 + ms.round() as u64
}

#[test]
fn go_durations_parse() {
    assert_eq!(
        ["300ms", "1.2s", "10s", "1m20s", "1m16.8s", "5m0s"].map(go_duration_ms),
        [300, 1200, 10_000, 80_000, 76_800, 300_000]
    );
}
