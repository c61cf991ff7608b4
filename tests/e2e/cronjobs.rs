//! CronJobs with stock kubectl and a real node agent: the hello sample's CronJob applied, kube's CronJob
//! columns, `kubectl create job --from=cronjob/…` running the template's Job to completion, a schedule
//! that comes due on the real clock, and a suspend.

use std::time::Duration;

use serde_json::Value;

use crate::harness::*;

const JOBS: &str = "/apis/batch/v1/namespaces/default/jobs";
const CRONJOBS: &str = "/apis/batch/v1/namespaces/default/cronjobs";

/// The Job `name`, once it is Complete.
async fn completed(herd: &Herd, name: &str) -> Value {
    wait_for(
        &format!("Job {name} Complete"),
        START_TIMEOUT,
        || async move {
            let (code, job) = herd.get(&format!("{JOBS}/{name}")).await;
            match condition(&job, "Complete") {
                Some(c) if code == 200 && c["status"] == "True" => Ok(job),
                _ => Err(format!("{code} {}", job["status"])),
            }
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_runs_a_cronjob_of_the_hello_sample() {
    let registry = Registry::start().await;
    let image = registry.image("hello:v1");
    push("hello", &image).await;
    let herd = Herd::up(HerdOptions::default()).await;
    let herd = &herd;
    herd.wait_node_ready("e2e-node").await;

    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("sample-apps/hello/cronjob.yaml");
    let manifest = std::fs::read_to_string(&path).expect("sample-apps/hello/cronjob.yaml");
    let manifest = manifest.replace("127.0.0.1:5000/hello:v1", &image);
    kubectl_stdin(herd, &["apply", "-f", "-"], &manifest)
        .await
        .ok()
        .stdout_has("cronjob.batch/hello created");

    // kube-apiserver's CronJob columns, by the short name too.
    let table = kubectl(herd, &["get", "cronjobs"]).await.ok().table();
    assert_eq!(
        table.columns,
        [
            "NAME",
            "SCHEDULE",
            "TIMEZONE",
            "SUSPEND",
            "ACTIVE",
            "LAST SCHEDULE",
            "AGE"
        ]
    );
    let row = table.row("hello");
    assert_eq!(
        [
            row.get("SCHEDULE"),
            row.get("TIMEZONE"),
            row.get("SUSPEND"),
            row.get("ACTIVE"),
            row.get("LAST SCHEDULE")
        ],
        ["*/5 * * * *", "Europe/Paris", "False", "0", "<none>"]
    );
    let wide = kubectl(herd, &["get", "cj", "-o", "wide"])
        .await
        .ok()
        .table();
    assert_eq!(
        [
            wide.row("hello").get("CONTAINERS"),
            wide.row("hello").get("IMAGES")
        ],
        ["hello", image.as_str()]
    );
    kubectl(herd, &["get", "all"])
        .await
        .ok()
        .stdout_has("cronjob.batch/hello");

    // A Job from the CronJob's template, now: kubectl reads the CronJob and creates the Job itself.
    kubectl(
        herd,
        &["create", "job", "hello-now", "--from=cronjob/hello"],
    )
    .await
    .ok()
    .stdout_has("job.batch/hello-now created");
    let job = completed(herd, "hello-now").await;
    assert_eq!(
        job["metadata"]["annotations"]["cronjob.kubernetes.io/instantiate"],
        "manual"
    );
    assert_eq!(job["metadata"]["ownerReferences"][0]["kind"], "CronJob");
    assert_eq!(job["metadata"]["labels"]["app"], "hello-cron");
    let pods = herd
        .get_ok("/api/v1/namespaces/default/pods?labelSelector=batch.kubernetes.io/job-name%3Dhello-now")
        .await;
    let phases: Vec<&str> = pods["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(phase)
        .collect();
    assert_eq!(phases, ["Succeeded"]);
    kubectl(herd, &["logs", "job/hello-now"])
        .await
        .ok()
        .stdout_has("Hello from herd!");

    // A schedule due every few seconds: the controller starts the Job of the time that came, on its own.
    kubectl(
        herd,
        &[
            "patch",
            "cronjob",
            "hello",
            "--type=merge",
            "-p",
            r#"{"spec":{"schedule":"@every 3s","timeZone":null}}"#,
        ],
    )
    .await
    .ok();
    let scheduled = wait_for("a scheduled Job", Duration::from_secs(30), || async move {
        let cj = herd.get_ok(&format!("{CRONJOBS}/hello")).await;
        match cj["status"]["active"][0]["name"].as_str() {
            Some(name) => Ok(name.to_string()),
            None => Err(format!("status {}", cj["status"])),
        }
    })
    .await;
    assert!(scheduled.starts_with("hello-"), "{scheduled}");
    let job = completed(herd, &scheduled).await;
    assert!(
        job["metadata"]["annotations"]["batch.kubernetes.io/cronjob-scheduled-timestamp"]
            .is_string(),
        "{job}"
    );
    let cj = wait_for(
        "the run seen complete",
        Duration::from_secs(30),
        || async move {
            let cj = herd.get_ok(&format!("{CRONJOBS}/hello")).await;
            if cj["status"]["lastSuccessfulTime"].is_string() {
                Ok(cj)
            } else {
                Err(format!("status {}", cj["status"]))
            }
        },
    )
    .await;
    assert!(cj["status"]["lastScheduleTime"].is_string(), "{cj}");
    let table = kubectl(herd, &["get", "cronjob", "hello"])
        .await
        .ok()
        .table();
    assert_ne!(table.row("hello").get("LAST SCHEDULE"), "<none>");
    kubectl(herd, &["describe", "cronjob", "hello"])
        .await
        .ok()
        .stdout_has("Created job");

    // Suspended: it says so, and starts nothing more.
    kubectl(
        herd,
        &["patch", "cj", "hello", "-p", r#"{"spec":{"suspend":true}}"#],
    )
    .await
    .ok();
    let table = kubectl(herd, &["get", "cronjob", "hello"])
        .await
        .ok()
        .table();
    assert_eq!(table.row("hello").get("SUSPEND"), "True");
    // (A sync that began before the patch may still finish its run.)
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = herd.get_ok(JOBS).await["items"]
        .as_array()
        .map_or(0, Vec::len);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let after = herd.get_ok(JOBS).await["items"]
        .as_array()
        .map_or(0, Vec::len);
    assert_eq!(after, before, "a suspended CronJob started a Job");

    // kubectl's own CronJob generator (a protobuf body) and its explain (the typed OpenAPI schema).
    kubectl(
        herd,
        &[
            "create",
            "cronjob",
            "tick",
            &format!("--image={image}"),
            "--schedule=0 4 * * *",
            "--restart=Never",
        ],
    )
    .await
    .ok()
    .stdout_has("cronjob.batch/tick created");
    let tick = herd.get_ok(&format!("{CRONJOBS}/tick")).await;
    assert_eq!(
        (
            &tick["spec"]["schedule"],
            &tick["spec"]["jobTemplate"]["spec"]["template"]["spec"]["restartPolicy"]
        ),
        (&serde_json::json!("0 4 * * *"), &serde_json::json!("Never"))
    );
    kubectl(herd, &["explain", "cronjob.spec.timeZone"])
        .await
        .ok()
        .stdout_has("The time zone name for the given schedule");
    kubectl(herd, &["delete", "cronjob", "tick"]).await.ok();

    // Deleting the CronJob deletes its Jobs (they are its dependents).
    kubectl(herd, &["delete", "cronjob", "hello"]).await.ok();
    wait_for(
        "the CronJob's Jobs gone",
        Duration::from_secs(30),
        || async move {
            let jobs = herd.get_ok(JOBS).await;
            match jobs["items"].as_array().map_or(0, Vec::len) {
                0 => Ok(()),
                n => Err(format!("{n} Jobs left")),
            }
        },
    )
    .await;
}
