//! Controllers at scale against a real control plane: a ReplicaSet of 1,000 pods, and Deployment status
//! following pod readiness. No node agent runs here, so the test plays the kubelet through `pods/status`.
//! Timings are printed, never asserted (they belong in benchmarks).

mod common;
use common::Plane;
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{Value, json};

const PODS: &str = "/api/v1/namespaces/default/pods";
const APPS: &str = "/apis/apps/v1/namespaces/default";

impl Plane {
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<(&str, Value)>,
    ) -> Value {
        let (code, v) = self
            .request(method, path, &[], body.map(|(ct, b)| (ct, b.to_string())))
            .await;
        assert!(code < 300, "{path}: {code} {v}");
        v
    }

    async fn get(&self, path: &str) -> Value {
        self.send(reqwest::Method::GET, path, None).await
    }

    async fn post(&self, path: &str, v: Value) -> Value {
        self.send(reqwest::Method::POST, path, Some(("application/json", v)))
            .await
    }

    async fn pods(&self, app: &str) -> Vec<Value> {
        let list = self.get(&format!("{PODS}?labelSelector=app%3D{app}")).await;
        list["items"].as_array().cloned().unwrap_or_default()
    }

    /// Marks every pod of `app` Running and Ready, 16 requests at a time.
    async fn ready_all(&self, app: &str) {
        let pods = self.pods(app).await;
        futures::stream::iter(pods)
            .for_each_concurrent(16, |pod| async move {
                let name = pod["metadata"]["name"].as_str().unwrap().to_string();
                let now = jiff::Timestamp::now()
                    .strftime("%Y-%m-%dT%H:%M:%SZ")
                    .to_string();
                self.send(
                    reqwest::Method::PATCH,
                    &format!("{PODS}/{name}/status"),
                    Some((
                        "application/merge-patch+json",
                        json!({"status": {"phase": "Running", "conditions": [
                            {"type": "Ready", "status": "True", "lastTransitionTime": now}]}}),
                    )),
                )
                .await;
            })
            .await;
    }
}

fn workload(kind: &str, name: &str, replicas: i64) -> Value {
    json!({"apiVersion": "apps/v1", "kind": kind, "metadata": {"name": name},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": "127.0.0.1:5000/hello:v1"}]}}}})
}

/// Polls `path` until `done` holds for it; no deadline but the test harness's own.
async fn wait_for(p: &Plane, path: &str, done: impl Fn(&Value) -> bool) -> Value {
    loop {
        let v = p.get(path).await;
        if done(&v) {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A plane whose controllers never resync during a test: what they do follows from changes alone.
async fn event_driven() -> Plane {
    Plane::start_with(|cfg| cfg.controller_resync = Duration::from_secs(3600)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_replicas_are_created_followed_and_removed_without_a_resync() {
    let p = event_driven().await;
    let start = Instant::now();
    p.post(
        &format!("{APPS}/deployments"),
        workload("Deployment", "big", 1000),
    )
    .await;
    wait_for(&p, &format!("{APPS}/deployments/big"), |d| {
        d["status"]["replicas"] == 1000
    })
    .await;
    println!("1000 pods of a Deployment created in {:?}", start.elapsed());
    assert_eq!(p.pods("big").await.len(), 1000);
    p.ready_all("big").await;
    let readied = Instant::now();
    let rs = wait_for(&p, &format!("{APPS}/replicasets"), |l| {
        l["items"][0]["status"]["readyReplicas"] == 1000
    })
    .await;
    println!(
        "ReplicaSet readyReplicas reached 1000 {:?} after the last pod turned Ready",
        readied.elapsed()
    );
    wait_for(&p, &format!("{APPS}/deployments/big"), |d| {
        d["status"]["readyReplicas"] == 1000 && d["status"]["availableReplicas"] == 1000
    })
    .await;
    println!(
        "Deployment readyReplicas reached 1000 {:?} after the last pod turned Ready",
        readied.elapsed()
    );
    // Scale the ReplicaSet's Deployment to zero: the pods (unbound here) are deleted in bursts.
    let scaled = Instant::now();
    p.send(
        reqwest::Method::PATCH,
        &format!("{APPS}/deployments/big/scale"),
        Some((
            "application/merge-patch+json",
            json!({"spec": {"replicas": 0}}),
        )),
    )
    .await;
    let rs_name = rs["items"][0]["metadata"]["name"].as_str().unwrap();
    wait_for(&p, &format!("{APPS}/replicasets/{rs_name}"), |rs| {
        rs["status"]["replicas"] == 0
    })
    .await;
    println!("1000 pods deleted in {:?}", scaled.elapsed());
    assert!(p.pods("big").await.is_empty());
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replicaset_of_a_thousand_gets_its_pods() {
    let p = event_driven().await;
    let start = Instant::now();
    p.post(
        &format!("{APPS}/replicasets"),
        workload("ReplicaSet", "rs", 1000),
    )
    .await;
    wait_for(&p, &format!("{APPS}/replicasets/rs"), |rs| {
        rs["status"]["replicas"] == 1000
    })
    .await;
    println!("1000 pods of a ReplicaSet created in {:?}", start.elapsed());
    assert_eq!(p.pods("rs").await.len(), 1000);
    p.stop().await;
}

#[tokio::test]
async fn a_pod_turning_ready_updates_its_owners_without_a_resync() {
    let p = event_driven().await;
    p.post(
        &format!("{APPS}/deployments"),
        workload("Deployment", "small", 2),
    )
    .await;
    wait_for(&p, &format!("{APPS}/deployments/small"), |d| {
        d["status"]["replicas"] == 2
    })
    .await;
    let pods = p.pods("small").await;
    let name = pods[0]["metadata"]["name"].as_str().unwrap();
    p.send(
        reqwest::Method::PATCH,
        &format!("{PODS}/{name}/status"),
        Some((
            "application/merge-patch+json",
            json!({"status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}}),
        )),
    )
    .await;
    let d = wait_for(&p, &format!("{APPS}/deployments/small"), |d| {
        d["status"]["readyReplicas"] == 1
    })
    .await;
    assert_eq!(d["status"]["availableReplicas"], 1);
    let rs = p.get(&format!("{APPS}/replicasets")).await;
    assert_eq!(rs["items"][0]["status"]["readyReplicas"], 1);
    p.stop().await;
}
