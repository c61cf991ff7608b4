//! Deployment rollouts against a running control plane. No node agent runs here, so the test plays the
//! kubelet: it marks pods Ready (with a podIP) through the pods/status subresource a moment after they appear.

mod common;
use common::Plane;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const NS: &str = "/apis/apps/v1/namespaces/default";

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
        assert!(code < 300 || code == 404, "{path}: {code} {v}");
        v
    }

    async fn get(&self, path: &str) -> Value {
        self.send(reqwest::Method::GET, path, None).await
    }

    async fn post(&self, path: &str, v: Value) -> Value {
        self.send(reqwest::Method::POST, path, Some(("application/json", v)))
            .await
    }

    async fn merge(&self, path: &str, v: Value) -> Value {
        self.send(
            reqwest::Method::PATCH,
            path,
            Some(("application/merge-patch+json", v)),
        )
        .await
    }

    async fn delete(&self, path: &str, body: Value) -> Value {
        self.send(
            reqwest::Method::DELETE,
            path,
            Some(("application/json", body)),
        )
        .await
    }

    /// Pods of `app` that are not being deleted.
    async fn pods(&self, app: &str) -> Vec<Value> {
        let list = self
            .get(&format!(
                "/api/v1/namespaces/default/pods?labelSelector=app%3D{app}"
            ))
            .await;
        list["items"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|p| p.pointer("/metadata/deletionTimestamp").is_none())
            .collect()
    }

    /// Marks Ready every pod of `app` that was already there on the previous call (`seen`).
    async fn ready_seen(&self, app: &str, seen: &mut BTreeSet<String>) {
        let mut now_seen = BTreeSet::new();
        for (i, pod) in self.pods(app).await.iter().enumerate() {
            let name = pod["metadata"]["name"].as_str().unwrap().to_string();
            if seen.contains(&name) && !is_ready(pod) {
                let status = json!({"status": {"phase": "Running", "podIP": format!("10.9.0.{}", i + 1),
                    "conditions": [{"type": "Ready", "status": "True",
                                    "lastTransitionTime": "2026-01-01T00:00:00Z"}]}});
                self.merge(
                    &format!("/api/v1/namespaces/default/pods/{name}/status"),
                    status,
                )
                .await;
            }
            now_seen.insert(name);
        }
        *seen = now_seen;
    }
}

fn is_ready(pod: &Value) -> bool {
    pod["status"]["conditions"].as_array().is_some_and(|cs| {
        cs.iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    })
}

fn image(pod: &Value) -> &str {
    pod.pointer("/spec/containers/0/image")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

fn deployment(name: &str, replicas: i64, strategy: Value) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}}, "strategy": strategy,
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": {"containers": [{"name": "c", "image": "r/app:v1"}]}}}})
}

/// What `kubectl rollout status` checks: the rollout is observed, updated, old pods gone, all available.
fn rollout_complete(d: &Value) -> bool {
    let s = &d["status"];
    let want = d["spec"]["replicas"].as_i64().unwrap_or(1);
    s["observedGeneration"].as_i64() >= d["metadata"]["generation"].as_i64()
        && s["updatedReplicas"] == want
        && s["replicas"] == want
        && s["availableReplicas"] == want
        && s["conditions"].as_array().is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Progressing" && c["reason"] == "NewReplicaSetAvailable")
        })
}

/// Plays the kubelet until the Deployment's rollout completes; `check` sees every pod snapshot.
async fn roll(p: &Plane, name: &str, mut check: impl FnMut(&[Value])) -> Value {
    let mut seen = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let pods = p.pods(name).await;
        check(&pods);
        let d = p.get(&format!("{NS}/deployments/{name}")).await;
        if rollout_complete(&d) {
            return d;
        }
        assert!(
            Instant::now() < deadline,
            "rollout stuck: {d}\npods: {pods:?}"
        );
        p.ready_seen(name, &mut seen).await;
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
}

#[tokio::test]
async fn rolling_update_keeps_availability_and_surge() {
    let p = Plane::start().await;
    let strategy =
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 1}});
    p.post(&format!("{NS}/deployments"), deployment("web", 4, strategy))
        .await;
    roll(&p, "web", |_| {}).await;

    p.merge(
        &format!("{NS}/deployments/web"),
        json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "r/app:v2"}]}}}}),
    )
    .await;
    let (mut min_ready, mut max_total) = (i64::MAX, 0);
    let d = roll(&p, "web", |pods| {
        // Until the new template is observed and rolled, count what a sampler of `kubectl get pods` sees.
        let ready = pods.iter().filter(|p| is_ready(p)).count() as i64;
        min_ready = min_ready.min(ready);
        max_total = max_total.max(pods.len() as i64);
    })
    .await;
    assert!(min_ready >= 3, "Ready pods fell to {min_ready}");
    assert!(
        max_total <= 5,
        "{max_total} pods exceeded replicas + maxSurge"
    );
    let pods = p.pods("web").await;
    assert_eq!(pods.len(), 4);
    assert!(pods.iter().all(|p| image(p) == "r/app:v2"), "{pods:?}");
    assert_eq!(
        d["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
        "2"
    );

    // The old ReplicaSet stays, scaled to zero, for `rollout undo`.
    let rs = p.get(&format!("{NS}/replicasets")).await;
    let items = rs["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{rs}");
    assert_eq!(
        items
            .iter()
            .map(|r| r["spec"]["replicas"].as_i64().unwrap())
            .sum::<i64>(),
        4
    );
    p.stop().await;
}

#[tokio::test]
async fn recreate_removes_old_pods_before_new_ones() {
    let p = Plane::start().await;
    p.post(
        &format!("{NS}/deployments"),
        deployment("batch", 3, json!({"type": "Recreate"})),
    )
    .await;
    roll(&p, "batch", |_| {}).await;
    p.merge(
        &format!("{NS}/deployments/batch"),
        json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "r/app:v2"}]}}}}),
    )
    .await;
    roll(&p, "batch", |pods| {
        let old = pods.iter().filter(|p| image(p) == "r/app:v1").count();
        let new = pods.iter().filter(|p| image(p) == "r/app:v2").count();
        assert!(old == 0 || new == 0, "old and new pods together: {pods:?}");
    })
    .await;
    assert!(p.pods("batch").await.iter().all(|p| image(p) == "r/app:v2"));
    p.stop().await;
}

#[tokio::test]
async fn orphaned_replicasets_and_pods_are_adopted_again() {
    let p = Plane::start().await;
    let strategy = json!({"type": "RollingUpdate"});
    p.post(
        &format!("{NS}/deployments"),
        deployment("keep", 2, strategy.clone()),
    )
    .await;
    roll(&p, "keep", |_| {}).await;
    let before: BTreeSet<String> = p
        .pods("keep")
        .await
        .iter()
        .map(|p| p["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    p.delete(
        &format!("{NS}/deployments/keep"),
        json!({"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Orphan"}),
    )
    .await;
    let rs_list = p.get(&format!("{NS}/replicasets")).await;
    let rs = &rs_list["items"][0];
    let rs_name = rs["metadata"]["name"].as_str().unwrap().to_string();
    assert!(
        rs["metadata"]["ownerReferences"]
            .as_array()
            .is_none_or(|r| r.is_empty()),
        "{rs}"
    );

    // A pod released by its ReplicaSet (labels changed) is replaced; a matching orphan pod is adopted.
    let victim = before.iter().next().unwrap().clone();
    p.merge(
        &format!("/api/v1/namespaces/default/pods/{victim}"),
        json!({"metadata": {"labels": {"app": "elsewhere"}}}),
    )
    .await;

    p.post(
        &format!("{NS}/deployments"),
        deployment("keep", 2, strategy),
    )
    .await;
    let d = roll(&p, "keep", |_| {}).await;
    let rs = p.get(&format!("{NS}/replicasets/{rs_name}")).await;
    assert_eq!(
        rs["metadata"]["ownerReferences"][0]["uid"], d["metadata"]["uid"],
        "ReplicaSet not adopted: {rs}"
    );
    let rs_list = p.get(&format!("{NS}/replicasets")).await;
    assert_eq!(rs_list["items"].as_array().unwrap().len(), 1, "{rs_list}");
    let released = p
        .get(&format!("/api/v1/namespaces/default/pods/{victim}"))
        .await;
    assert!(
        released["metadata"]["ownerReferences"]
            .as_array()
            .is_none_or(|r| r.is_empty()),
        "{released}"
    );
    let now: BTreeSet<String> = p
        .pods("keep")
        .await
        .iter()
        .map(|p| p["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(now.len(), 2);
    assert!(!now.contains(&victim));
    assert_eq!(
        now.intersection(&before).count(),
        1,
        "the other pod was kept"
    );

    // Giving the pod its labels back makes it an orphan the ReplicaSet matches: it is adopted, and the
    // ReplicaSet, now one over, scales back to two pods it controls (without adoption there would be three).
    let hash = rs["metadata"]["labels"]["pod-template-hash"].clone();
    p.merge(
        &format!("/api/v1/namespaces/default/pods/{victim}"),
        json!({"metadata": {"labels": {"app": "keep", "pod-template-hash": hash}}}),
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let pods = p.pods("keep").await;
        let all_owned = pods
            .iter()
            .all(|p| p["metadata"]["ownerReferences"][0]["name"] == rs_name.as_str());
        if all_owned && pods.len() == 2 {
            break;
        }
        assert!(Instant::now() < deadline, "not adopted: {pods:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    p.stop().await;
}

#[tokio::test]
async fn paused_rollouts_wait_and_history_is_limited() {
    let p = Plane::start().await;
    let mut d = deployment("hist", 2, json!({"type": "RollingUpdate"}));
    d["spec"]["revisionHistoryLimit"] = json!(1);
    p.post(&format!("{NS}/deployments"), d).await;
    roll(&p, "hist", |_| {}).await;
    p.merge(
        &format!("{NS}/deployments/hist"),
        json!({"spec": {"paused": true, "replicas": 3,
                        "template": {"spec": {"containers": [{"name": "c", "image": "r/app:v2"}]}}}}),
    )
    .await;
    // Paused: the scale applies to the current ReplicaSet, the new template waits.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = BTreeSet::new();
    loop {
        let d = p.get(&format!("{NS}/deployments/hist")).await;
        let paused = d["status"]["conditions"].as_array().is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Progressing" && c["reason"] == "DeploymentPaused")
        });
        let pods = p.pods("hist").await;
        assert!(pods.iter().all(|p| image(p) == "r/app:v1"), "{pods:?}");
        if paused && pods.len() == 3 {
            break;
        }
        assert!(Instant::now() < deadline, "not paused: {d}");
        p.ready_seen("hist", &mut seen).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let rs = p.get(&format!("{NS}/replicasets")).await;
    assert_eq!(rs["items"].as_array().unwrap().len(), 1, "{rs}");

    // Resumed: v2 rolls out, then v3; only one old ReplicaSet is kept.
    p.merge(
        &format!("{NS}/deployments/hist"),
        json!({"spec": {"paused": false}}),
    )
    .await;
    roll(&p, "hist", |_| {}).await;
    p.merge(
        &format!("{NS}/deployments/hist"),
        json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "r/app:v3"}]}}}}),
    )
    .await;
    let d = roll(&p, "hist", |_| {}).await;
    assert_eq!(
        d["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
        "3"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let rs = p.get(&format!("{NS}/replicasets")).await;
        let revisions: BTreeSet<String> = rs["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["metadata"]["annotations"]["deployment.kubernetes.io/revision"].to_string())
            .collect();
        if revisions.len() == 2 {
            assert_eq!(
                revisions,
                ["\"2\"".to_string(), "\"3\"".to_string()].into(),
                "{rs}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "history not cleaned: {rs}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    p.stop().await;
}
