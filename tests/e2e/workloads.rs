//! Jobs and DaemonSets with real node agents: a Job runs to completion (and one that keeps failing stops at
//! its backoff limit); a DaemonSet follows a node joining.

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
    let herd = Herd::up(HerdOptions::default()).await;
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
