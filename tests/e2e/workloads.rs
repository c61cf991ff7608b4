//! Jobs and DaemonSets with real node agents: a Job runs to completion (and one that keeps failing stops at
//! its backoff limit, and one that fails for a while completes after retries spaced by a doubling
//! back-off); a DaemonSet follows a node joining.

use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::*;

fn job(name: &str, image: &str, args: &[&str], completions: i32, backoff_limit: i32) -> Value {
    json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "completions": completions,
            "parallelism": 2,
            "backoffLimit": backoff_limit,
            "template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "hello", "image": image, "args": args}]}},
        },
    })
}

async fn job_condition(herd: &Herd, name: &str, wanted: &str) -> Result<Value, String> {
    let job = herd
        .get_ok(&format!("/apis/batch/v1/namespaces/default/jobs/{name}"))
        .await;
    match condition(&job, wanted) {
        Some(c) if c["status"] == "True" => Ok(job),
        _ => Err(format!("status {}", job["status"])),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_complete_or_stop_at_their_backoff_limit() {
    let registry = Registry::start().await;
    let image = registry.image("hello:v1");
    push("hello", &image).await;
    let herd = Herd::up(fast_job_backoff()).await;
    herd.wait_node_ready("e2e-node").await;

    herd.create(
        "/apis/batch/v1/namespaces/default/jobs",
        &job("works", &image, &["ok"], 3, 2),
    )
    .await;
    let done = wait_for("Job works Complete", Duration::from_secs(60), || {
        job_condition(&herd, "works", "Complete")
    })
    .await;
    assert_eq!(done["status"]["succeeded"], 3, "{}", done["status"]);
    // kubectl prints kube-apiserver's Job columns.
    let table = kubectl(&herd, &["get", "jobs"]).await.ok().table();
    assert_eq!(
        table.columns,
        ["NAME", "STATUS", "COMPLETIONS", "DURATION", "AGE"]
    );
    assert_eq!(
        (
            table.row("works").get("STATUS"),
            table.row("works").get("COMPLETIONS")
        ),
        ("Complete", "3/3")
    );

    herd.create(
        "/apis/batch/v1/namespaces/default/jobs",
        &job("fails", &image, &["--exit=1"], 1, 1),
    )
    .await;
    let failed = wait_for("Job fails Failed", Duration::from_secs(60), || {
        job_condition(&herd, "fails", "Failed")
    })
    .await;
    assert_eq!(
        condition(&failed, "Failed").map(|c| s(c, "/reason")),
        Some("BackoffLimitExceeded")
    );
    // backoffLimit 1: the first failure is retried once, then the Job gives up.
    assert_eq!(failed["status"]["failed"], 2, "{}", failed["status"]);
}

/// `herd up` with a 1 s pod-failure back-off base (kube's is 10 s).
fn fast_job_backoff() -> HerdOptions {
    HerdOptions {
        extra_args: vec!["--job-backoff-base".into(), "1s".into()],
        ..HerdOptions::default()
    }
}

fn time(v: &Value, pointer: &str) -> i64 {
    s(v, pointer)
        .parse::<jiff::Timestamp>()
        .unwrap_or_else(|e| panic!("{pointer} of {v}: {e}"))
        .as_second()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_runs_to_completion_with_retries() {
    let registry = Registry::start().await;
    let image = registry.image("hello:v1");
    push("hello", &image).await;
    let herd = Herd::up(fast_job_backoff()).await;
    herd.wait_node_ready("e2e-node").await;

    // Every pod fails until ~7 s from now; the one started after that succeeds.
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    let fail_until = format!("--fail-until-unix-ms={}", now_ms + 7000);
    let mut retrying = job("retrying", &image, &[&fail_until], 1, 6);
    retrying["spec"]["parallelism"] = json!(1);
    herd.create("/apis/batch/v1/namespaces/default/jobs", &retrying)
        .await;
    let done = wait_for("Job retrying Complete", Duration::from_secs(90), || {
        job_condition(&herd, "retrying", "Complete")
    })
    .await;
    let failed = done["status"]["failed"].as_i64().unwrap_or(0);
    assert!(failed >= 1, "{}", done["status"]);
    assert_eq!(done["status"]["succeeded"], 1, "{}", done["status"]);

    let list = herd
        .get_ok("/api/v1/namespaces/default/pods?labelSelector=job-name%3Dretrying")
        .await;
    let mut pods: Vec<Value> = list["items"].as_array().cloned().unwrap_or_default();
    pods.sort_by_key(|p| time(p, "/metadata/creationTimestamp"));
    let phases: Vec<&str> = pods.iter().map(phase).collect();
    assert_eq!(phases.last(), Some(&"Succeeded"), "{phases:?}");
    assert!(
        phases[..phases.len() - 1].iter().all(|p| *p == "Failed"),
        "{phases:?}"
    );
    assert_eq!(pods.len() as i64, failed + 1, "{phases:?}");
    // Pods start about 1 s, 2 s and 4 s after the previous failure, so at least three start within 7 s.
    assert!(
        failed >= 3,
        "fail-until covers at least three pods: {phases:?}"
    );
    // The wait before each replacement, from the failure to the next pod: 1 s × 2^(n−1), in whole seconds
    // (each timestamp is truncated, so a wait reads as itself or one more).
    let waits: Vec<i64> = pods
        .windows(2)
        .map(|w| {
            time(&w[1], "/metadata/creationTimestamp")
                - time(
                    &w[0],
                    "/status/containerStatuses/0/state/terminated/finishedAt",
                )
        })
        .collect();
    let gaps: Vec<i64> = pods
        .windows(2)
        .map(|w| {
            time(&w[1], "/metadata/creationTimestamp") - time(&w[0], "/metadata/creationTimestamp")
        })
        .collect();
    for (i, wait) in waits.iter().enumerate() {
        let backoff = 1i64 << i;
        assert!(
            (backoff..=backoff + 1).contains(wait),
            "wait {i} should be {backoff} s: waits {waits:?}, gaps {gaps:?}"
        );
    }
    // So the gaps between the pods' creations grow (runs take under a second; truncation adds ±1 s).
    assert!(
        gaps.windows(2).all(|g| g[1] + 1 >= g[0]),
        "gaps between replacements should grow: {gaps:?} (waits {waits:?})"
    );
    let (first, last) = (gaps[0], gaps[gaps.len() - 1]);
    assert!(
        last >= first + 2,
        "gaps between replacements should grow: {gaps:?} (waits {waits:?})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemonset_follows_a_node_joining() {
    let registry = Registry::start().await;
    let image = registry.image("http-hello:v1");
    push("http-hello", &image).await;
    let control = Herd::up(HerdOptions::control()).await;
    let _first = control
        .start_node_with("ds-1", &["--address", "127.0.0.1"])
        .await;
    control.wait_node_ready("ds-1").await;
    let ds = json!({
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": "agent"},
        "spec": {"selector": {"matchLabels": {"app": "agent"}}, "template": http_hello_template("agent", &image)},
    });
    control
        .create("/apis/apps/v1/namespaces/default/daemonsets", &ds)
        .await;
    let on_nodes = |want: usize| {
        let control = &control;
        move || async move {
            let list = control
                .get_ok("/api/v1/namespaces/default/pods?labelSelector=app%3Dagent")
                .await;
            let mut nodes: Vec<String> = list["items"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| phase(p) == "Running")
                .map(|p| s(p, "/spec/nodeName").to_string())
                .collect();
            nodes.sort();
            if nodes.len() == want {
                Ok(nodes)
            } else {
                Err(format!("running on {nodes:?}"))
            }
        }
    };
    assert_eq!(
        wait_for("one daemon pod", Duration::from_secs(30), on_nodes(1)).await,
        ["ds-1"]
    );
    let _second = control
        .start_node_with("ds-2", &["--address", "127.0.0.2"])
        .await;
    control.wait_node_ready("ds-2").await;
    assert_eq!(
        wait_for(
            "a daemon pod per node",
            Duration::from_secs(30),
            on_nodes(2)
        )
        .await,
        ["ds-1", "ds-2"]
    );
    let status = control
        .get_ok("/apis/apps/v1/namespaces/default/daemonsets/agent")
        .await["status"]
        .clone();
    assert_eq!(status["desiredNumberScheduled"], 2, "{status}");
    let table = kubectl(&control, &["get", "ds"]).await.ok().table();
    assert_eq!(
        table.columns,
        [
            "NAME",
            "DESIRED",
            "CURRENT",
            "READY",
            "UP-TO-DATE",
            "AVAILABLE",
            "NODE SELECTOR",
            "AGE"
        ]
    );
    assert_eq!(table.row("agent").get("DESIRED"), "2");
}
