//! The Job and DaemonSet controllers against a real control plane. No node agent runs here, so the tests
//! play its part: they finish, fail and ready pods by writing `pods/status`, and remove stopped pods.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

const NS: &str = "/api/v1/namespaces/default";
const JOBS: &str = "/apis/batch/v1/namespaces/default/jobs";
const DAEMONSETS: &str = "/apis/apps/v1/namespaces/default/daemonsets";

mod common;
use common::Plane;

impl Plane {
    /// A plane whose Job back-off starts at 100 ms (the default 10 s would make retries slow).
    async fn quick() -> Self {
        Self::with_job_backoff(Duration::from_millis(100)).await
    }

    async fn with_job_backoff(job_backoff_base: Duration) -> Self {
        Self::start_with(|cfg| cfg.job_backoff_base = job_backoff_base).await
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<(&str, Value)>,
    ) -> (u16, Value) {
        self.request(method, path, &[], body.map(|(ct, b)| (ct, b.to_string())))
            .await
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        self.send(reqwest::Method::GET, path, None).await
    }

    async fn post(&self, path: &str, v: Value) -> Value {
        let (code, out) = self
            .send(reqwest::Method::POST, path, Some(("application/json", v)))
            .await;
        assert_eq!(code, 201, "POST {path}: {out}");
        out
    }

    async fn merge(&self, path: &str, v: Value) -> Value {
        let (code, out) = self
            .send(
                reqwest::Method::PATCH,
                path,
                Some(("application/merge-patch+json", v)),
            )
            .await;
        assert_eq!(code, 200, "PATCH {path}: {out}");
        out
    }

    async fn delete(&self, path: &str, grace: Option<i64>) {
        let body = grace.map(|g| ("application/json", json!({"gracePeriodSeconds": g})));
        self.send(reqwest::Method::DELETE, path, body).await;
    }

    /// Pods with this label selector.
    async fn pods(&self, selector: &str) -> Vec<Value> {
        let (_, list) = self
            .get(&format!("{NS}/pods?labelSelector={selector}"))
            .await;
        list["items"].as_array().cloned().unwrap_or_default()
    }

    async fn set_pod_status(&self, pod: &Value, status: Value) {
        let name = pod["metadata"]["name"].as_str().unwrap();
        self.merge(
            &format!("{NS}/pods/{name}/status"),
            json!({"status": status}),
        )
        .await;
    }

    async fn events_with_reason(&self, reason: &str) -> usize {
        let (_, list) = self.get(&format!("{NS}/events")).await;
        list["items"].as_array().map_or(0, |evs| {
            evs.iter().filter(|e| e["reason"] == reason).count()
        })
    }
}

fn name(obj: &Value) -> &str {
    obj["metadata"]["name"].as_str().unwrap_or_default()
}

fn terminal(pod: &Value) -> bool {
    pod["status"]["phase"] == "Succeeded" || pod["status"]["phase"] == "Failed"
}

fn active(pod: &Value) -> bool {
    !terminal(pod) && pod["metadata"]["deletionTimestamp"].is_null()
}

fn condition<'a>(obj: &'a Value, type_: &str) -> Option<&'a Value> {
    obj["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_ && c["status"] == "True")
}

fn job(name: &str, spec: Value) -> Value {
    let mut spec = spec;
    spec["template"] = json!({"spec": {"restartPolicy": "Never",
        "containers": [{"name": "c", "image": "127.0.0.1:5000/hello:v1"}]}});
    json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name}, "spec": spec})
}

fn deadline() -> Instant {
    Instant::now() + Duration::from_secs(20)
}

async fn tick() {
    tokio::time::sleep(Duration::from_millis(50)).await;
}

#[tokio::test]
async fn job_runs_completions_with_bounded_parallelism() {
    let p = Plane::quick().await;
    p.post(
        JOBS,
        job("work", json!({"completions": 3, "parallelism": 2})),
    )
    .await;
    let selector = "batch.kubernetes.io/job-name=work";
    let until = deadline();
    let done = loop {
        assert!(Instant::now() < until, "the Job never completed");
        let pods = p.pods(selector).await;
        let running: Vec<&Value> = pods.iter().filter(|p| active(p)).collect();
        assert!(
            running.len() <= 2,
            "more than parallelism active: {}",
            running.len()
        );
        let (_, j) = p.get(&format!("{JOBS}/work")).await;
        if condition(&j, "Complete").is_some() {
            break (j, pods);
        }
        // Finish one pod at a time, as a node would.
        if let Some(pod) = running.first() {
            assert_eq!(pod["metadata"]["labels"]["job-name"], "work");
            assert_eq!(pod["metadata"]["ownerReferences"][0]["kind"], "Job");
            p.set_pod_status(pod, json!({"phase": "Succeeded"})).await;
        }
        tick().await;
    };
    let (j, pods) = done;
    assert_eq!(j["status"]["succeeded"], 3, "{j}");
    // kube-apiserver's generated selector picks the Job's pods by its uid.
    let uid = &j["metadata"]["uid"];
    assert_eq!(
        j["spec"]["selector"],
        json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid}})
    );
    assert!(
        pods.iter()
            .all(|p| &p["metadata"]["labels"]["batch.kubernetes.io/controller-uid"] == uid)
    );
    assert!(j["status"]["active"].is_null(), "{j}");
    assert!(j["status"]["completionTime"].is_string(), "{j}");
    assert!(j["status"]["startTime"].is_string(), "{j}");
    assert_eq!(
        condition(&j, "SuccessCriteriaMet").map(|c| c["reason"].clone()),
        Some(json!("CompletionsReached"))
    );
    assert_eq!(pods.len(), 3, "exactly the needed pods were made");
    assert!(pods.iter().all(|p| p["status"]["phase"] == "Succeeded"));
    assert_eq!(p.events_with_reason("SuccessfulCreate").await, 3);
    assert_eq!(p.events_with_reason("Completed").await, 1);
    p.stop().await;
}

#[tokio::test]
async fn failing_pods_are_retried_until_the_backoff_limit() {
    let p = Plane::quick().await;
    p.post(JOBS, job("flaky", json!({"backoffLimit": 2}))).await;
    let selector = "job-name=flaky";
    let until = deadline();
    let j = loop {
        assert!(Instant::now() < until, "the Job never failed");
        let (_, j) = p.get(&format!("{JOBS}/flaky")).await;
        if condition(&j, "Failed").is_some() {
            break j;
        }
        for pod in p.pods(selector).await.iter().filter(|p| active(p)) {
            p.set_pod_status(pod, json!({"phase": "Failed"})).await;
        }
        tick().await;
    };
    let failed = condition(&j, "Failed").unwrap();
    assert_eq!(failed["reason"], "BackoffLimitExceeded", "{j}");
    assert_eq!(
        j["status"]["failed"], 3,
        "backoffLimit 2 allows two retries: {j}"
    );
    assert!(j["status"]["completionTime"].is_null());
    assert_eq!(p.pods(selector).await.len(), 3);
    assert_eq!(p.events_with_reason("BackoffLimitExceeded").await, 1);
    p.stop().await;
}

#[tokio::test]
async fn active_deadline_fails_the_job_and_removes_its_pods() {
    let p = Plane::quick().await;
    let posted = Instant::now();
    p.post(JOBS, job("slow", json!({"activeDeadlineSeconds": 2})))
        .await;
    // The deadline is due after 2 s (3 s with second-granular startTime); not at the 30 s resync.
    let until = posted + Duration::from_secs(5);
    let j = loop {
        assert!(Instant::now() < until, "the deadline did not fire in time");
        let (_, j) = p.get(&format!("{JOBS}/slow")).await;
        if condition(&j, "Failed").is_some() {
            break j;
        }
        tick().await;
    };
    assert_eq!(
        condition(&j, "Failed").unwrap()["reason"],
        "DeadlineExceeded"
    );
    // The pod was never bound, so its deletion is immediate.
    assert!(p.pods("job-name=slow").await.is_empty());
    p.stop().await;
}

#[tokio::test]
async fn finished_job_is_deleted_after_its_ttl() {
    let p = Plane::quick().await;
    let created = p
        .post(JOBS, job("once", json!({"ttlSecondsAfterFinished": 1})))
        .await;
    // A watch sees every state the Job goes through, however briefly (a poll could miss the moment
    // between its completion and its deletion, under a second).
    let rv = created["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    let mut watch = p
        .http
        .get(format!(
            "{}{JOBS}?watch=true&resourceVersion={rv}&fieldSelector=metadata.name%3Donce",
            p.base
        ))
        .send()
        .await
        .unwrap();
    let until = deadline();
    loop {
        assert!(Instant::now() < until, "no pod appeared");
        if let Some(pod) = p.pods("job-name=once").await.first() {
            p.set_pod_status(pod, json!({"phase": "Succeeded"})).await;
            break;
        }
        tick().await;
    }
    let mut completed = None;
    let mut buf = String::new();
    'events: loop {
        let chunk = tokio::time::timeout(Duration::from_secs(10), watch.chunk())
            .await
            .expect("the Job was neither completed nor deleted in time")
            .unwrap()
            .expect("the watch ended");
        buf.push_str(std::str::from_utf8(&chunk).unwrap());
        while let Some(i) = buf.find('\n') {
            let event: Value = serde_json::from_str(&buf[..i]).unwrap();
            buf.drain(..=i);
            if event["type"] == "DELETED" {
                break 'events;
            }
            if completed.is_none() && condition(&event["object"], "Complete").is_some() {
                completed = Some(Instant::now());
            }
        }
    }
    let completed = completed.expect("the Job was deleted before it completed");
    // ttlSecondsAfterFinished 1 is due within 2 s of finishing (second-granular timestamps).
    assert!(
        completed.elapsed() < Duration::from_secs(4),
        "the finished Job was not deleted in time"
    );
    p.stop().await;
}

/// Fails the Job's one active pod now, as a node would report it; returns the moment it did.
async fn fail_active_pod(p: &Plane, selector: &str) -> Instant {
    let until = deadline();
    loop {
        assert!(Instant::now() < until, "no active pod appeared");
        if let Some(pod) = p.pods(selector).await.iter().find(|p| active(p)) {
            let at = jiff::Timestamp::now()
                .strftime("%Y-%m-%dT%H:%M:%SZ")
                .to_string();
            p.set_pod_status(
                pod,
                json!({"phase": "Failed", "containerStatuses": [{"name": "c", "ready": false,
                    "restartCount": 0, "image": "x", "imageID": "",
                    "state": {"terminated": {"exitCode": 1, "finishedAt": at}}}]}),
            )
            .await;
            return Instant::now();
        }
        tick().await;
    }
}

/// Waits for a new active pod of the Job; returns when it appeared.
async fn replacement(p: &Plane, selector: &str) -> Instant {
    let until = deadline();
    loop {
        assert!(Instant::now() < until, "no replacement pod appeared");
        if p.pods(selector).await.iter().any(active) {
            return Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn failed_pods_are_replaced_after_a_doubling_back_off() {
    let p = Plane::with_job_backoff(Duration::from_secs(2)).await;
    p.post(JOBS, job("retry", json!({"backoffLimit": 6}))).await;
    let selector = "job-name=retry";
    // Failure times are whole seconds, so each wait may come up to 1 s short.
    let failed = fail_active_pod(&p, selector).await;
    let first = replacement(&p, selector).await - failed;
    assert!(
        first >= Duration::from_millis(900) && first < Duration::from_millis(3500),
        "first back-off (2 s): {first:?}"
    );
    let failed = fail_active_pod(&p, selector).await;
    let second = replacement(&p, selector).await - failed;
    assert!(
        second >= Duration::from_millis(2900) && second < Duration::from_millis(5500),
        "second back-off (4 s): {second:?}"
    );
    let until = deadline();
    loop {
        let (_, j) = p.get(&format!("{JOBS}/retry")).await;
        if j["status"]["failed"] == 2 && j["status"]["active"] == 1 {
            break;
        }
        assert!(Instant::now() < until, "status never caught up: {j}");
        tick().await;
    }
    p.stop().await;
}

#[tokio::test]
async fn time_based_deployment_checks_do_not_wait_for_the_resync() {
    let p = Plane::quick().await;
    // No node: the pods stay Pending, so the rollout makes no progress and passes its deadline.
    let posted = Instant::now();
    p.post(
        "/apis/apps/v1/namespaces/default/deployments",
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "stuck"},
            "spec": {"replicas": 1, "progressDeadlineSeconds": 2,
                "selector": {"matchLabels": {"app": "stuck"}},
                "template": {"metadata": {"labels": {"app": "stuck"}},
                    "spec": {"containers": [{"name": "c", "image": "127.0.0.1:5000/hello:v1"}]}}}}),
    )
    .await;
    let until = posted + Duration::from_secs(6);
    loop {
        assert!(
            Instant::now() < until,
            "progress deadline not reported in time"
        );
        let (_, d) = p
            .get("/apis/apps/v1/namespaces/default/deployments/stuck")
            .await;
        let progressing = d["status"]["conditions"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["type"] == "Progressing").cloned());
        if progressing
            .as_ref()
            .is_some_and(|c| c["reason"] == "ProgressDeadlineExceeded")
        {
            assert_eq!(progressing.unwrap()["status"], "False");
            break;
        }
        tick().await;
    }

    // minReadySeconds: a Ready pod becomes available 2 s later, not at the resync.
    p.post(
        "/apis/apps/v1/namespaces/default/replicasets",
        json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "slow"},
            "spec": {"replicas": 1, "minReadySeconds": 2,
                "selector": {"matchLabels": {"app": "slow"}},
                "template": {"metadata": {"labels": {"app": "slow"}},
                    "spec": {"containers": [{"name": "c", "image": "127.0.0.1:5000/hello:v1"}]}}}}),
    )
    .await;
    let until = deadline();
    let pod = loop {
        assert!(Instant::now() < until, "no pod appeared");
        if let Some(pod) = p.pods("app=slow").await.pop() {
            break pod;
        }
        tick().await;
    };
    let at = jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    p.set_pod_status(
        &pod,
        json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": at}]}),
    )
    .await;
    let readied = Instant::now();
    loop {
        let (_, rs) = p
            .get("/apis/apps/v1/namespaces/default/replicasets/slow")
            .await;
        if rs["status"]["readyReplicas"] == 1 && rs["status"]["availableReplicas"] == 1 {
            break;
        }
        assert!(
            readied.elapsed() < Duration::from_secs(5),
            "the pod did not become available in time: {rs}"
        );
        tick().await;
    }
    assert!(
        readied.elapsed() >= Duration::from_millis(900),
        "available before minReadySeconds"
    );
    p.stop().await;
}

async fn add_node(p: &Plane, name: &str, taints: Value) {
    p.post(
        "/api/v1/nodes",
        json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name,
            "labels": {"kubernetes.io/hostname": name}}, "spec": {"taints": taints}}),
    )
    .await;
}

/// Node name → the DaemonSet's live (not terminating) pods there, after removing stopped pods the way a
/// node agent would.
async fn daemon_pods(p: &Plane) -> std::collections::BTreeMap<String, Vec<Value>> {
    let mut out: std::collections::BTreeMap<String, Vec<Value>> = Default::default();
    for pod in p.pods("app=agent").await {
        if !pod["metadata"]["deletionTimestamp"].is_null() {
            p.delete(&format!("{NS}/pods/{}", name(&pod)), Some(0))
                .await;
            continue;
        }
        let node = pod["spec"]["nodeName"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        out.entry(node).or_default().push(pod);
    }
    out
}

async fn wait_for_nodes(
    p: &Plane,
    want: &[&str],
) -> std::collections::BTreeMap<String, Vec<Value>> {
    let until = deadline();
    loop {
        let pods = daemon_pods(p).await;
        let nodes: Vec<&str> = pods.keys().map(String::as_str).collect();
        if nodes == want && pods.values().all(|v| v.len() == 1) {
            return pods;
        }
        assert!(
            Instant::now() < until,
            "daemon pods on {nodes:?}, wanted {want:?}"
        );
        tick().await;
    }
}

async fn ready_all(p: &Plane, pods: &std::collections::BTreeMap<String, Vec<Value>>) {
    for pod in pods.values().flatten() {
        if pod["status"]["conditions"]
            .as_array()
            .is_none_or(|c| !c.iter().any(|c| c["type"] == "Ready"))
        {
            p.set_pod_status(
                pod,
                json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}),
            )
            .await;
        }
    }
}

#[tokio::test]
async fn daemonset_follows_nodes_and_rolls_its_template() {
    let p = Plane::quick().await;
    add_node(
        &p,
        "n1",
        json!([{"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}]),
    )
    .await;
    add_node(&p, "n2", json!([])).await;
    add_node(
        &p,
        "gpu",
        json!([{"key": "gpu", "value": "yes", "effect": "NoSchedule"}]),
    )
    .await;
    p.post(
        DAEMONSETS,
        json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "agent"},
            "spec": {"selector": {"matchLabels": {"app": "agent"}},
                "template": {"metadata": {"labels": {"app": "agent"}},
                    "spec": {"containers": [{"name": "c", "image": "127.0.0.1:5000/agent:v1"}]}}}}),
    )
    .await;
    // A cordoned node still gets one; a node with a taint the template does not tolerate does not.
    let pods = wait_for_nodes(&p, &["n1", "n2"]).await;
    let first = &pods["n1"][0];
    assert_eq!(first["metadata"]["ownerReferences"][0]["kind"], "DaemonSet");
    assert!(
        first["spec"]["tolerations"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["key"] == "node.kubernetes.io/unschedulable" && t["operator"] == "Exists"),
        "{first}"
    );
    ready_all(&p, &pods).await;

    add_node(&p, "n3", json!([])).await;
    let pods = wait_for_nodes(&p, &["n1", "n2", "n3"]).await;
    ready_all(&p, &pods).await;
    p.delete("/api/v1/nodes/n2", None).await;
    let pods = wait_for_nodes(&p, &["n1", "n3"]).await;
    let old_hash = pods["n1"][0]["metadata"]["labels"]["controller-revision-hash"].clone();

    let until = deadline();
    loop {
        let (_, ds) = p.get(&format!("{DAEMONSETS}/agent")).await;
        let s = &ds["status"];
        if s["desiredNumberScheduled"] == 2
            && s["numberReady"] == 2
            && s["currentNumberScheduled"] == 2
        {
            assert_eq!(s["updatedNumberScheduled"], 2, "{ds}");
            assert_eq!(
                s["observedGeneration"], ds["metadata"]["generation"],
                "{ds}"
            );
            break;
        }
        assert!(Instant::now() < until, "status never settled: {ds}");
        tick().await;
    }

    p.merge(
        &format!("{DAEMONSETS}/agent"),
        json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "127.0.0.1:5000/agent:v2"}]}}}}),
    )
    .await;
    let until = deadline();
    loop {
        assert!(Instant::now() < until, "the rollout never finished");
        let pods = daemon_pods(&p).await;
        let ready = |v: &Vec<Value>| {
            v.iter().any(|pod| {
                pod["status"]["conditions"].as_array().is_some_and(|c| {
                    c.iter()
                        .any(|c| c["type"] == "Ready" && c["status"] == "True")
                })
            })
        };
        let unavailable = ["n1", "n3"]
            .iter()
            .filter(|n| pods.get(**n).is_none_or(|v| !ready(v)))
            .count();
        assert!(unavailable <= 1, "maxUnavailable 1 exceeded: {pods:?}");
        let all_new = pods.len() == 2
            && pods.values().flatten().count() == 2
            && pods
                .values()
                .flatten()
                .all(|pod| pod["metadata"]["labels"]["controller-revision-hash"] != old_hash);
        if all_new && pods.values().all(ready) {
            let images: Vec<&Value> = pods
                .values()
                .flatten()
                .map(|pod| &pod["spec"]["containers"][0]["image"])
                .collect();
            assert!(images.iter().all(|i| *i == "127.0.0.1:5000/agent:v2"));
            break;
        }
        ready_all(&p, &pods).await;
        tick().await;
    }
    p.stop().await;
}

#[tokio::test]
async fn daemonset_surges_a_new_pod_before_removing_the_old_one() {
    let p = Plane::quick().await;
    for n in ["n1", "n2", "n3"] {
        add_node(&p, n, json!([])).await;
    }
    let ds = |image: &str| {
        json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "agent"},
            "spec": {"selector": {"matchLabels": {"app": "agent"}},
                "updateStrategy": {"type": "RollingUpdate",
                    "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
                "template": {"metadata": {"labels": {"app": "agent"}},
                    "spec": {"containers": [{"name": "c", "image": image}]}}}})
    };
    p.post(DAEMONSETS, ds("127.0.0.1:5000/agent:v1")).await;
    let pods = wait_for_nodes(&p, &["n1", "n2", "n3"]).await;
    ready_all(&p, &pods).await;
    let old_hash = pods["n1"][0]["metadata"]["labels"]["controller-revision-hash"].clone();
    p.merge(
        &format!("{DAEMONSETS}/agent"),
        json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "127.0.0.1:5000/agent:v2"}]}}}}),
    )
    .await;
    let ready = |pod: &Value| {
        pod["status"]["conditions"].as_array().is_some_and(|c| {
            c.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
    };
    let until = deadline();
    let mut surged = 0;
    loop {
        assert!(Instant::now() < until, "the surge rollout never finished");
        let pods = daemon_pods(&p).await;
        // maxUnavailable 0: every node keeps a Ready pod throughout.
        for n in ["n1", "n2", "n3"] {
            assert!(
                pods.get(n).is_some_and(|v| v.iter().any(ready)),
                "{n} has no Ready pod: {pods:?}"
            );
        }
        // maxSurge 1: at most one node runs an extra pod that is not yet Ready (as kube counts surge: a
        // node whose new pod is Ready has its old one deleted in the same sync that may surge elsewhere).
        let doubled = pods
            .values()
            .filter(|v| v.len() > 1 && !v.iter().all(ready))
            .count();
        assert!(doubled <= 1, "more than maxSurge extra pods: {pods:?}");
        surged += doubled;
        let all_new = pods.values().all(|v| {
            v.len() == 1 && v[0]["metadata"]["labels"]["controller-revision-hash"] != old_hash
        });
        if all_new && pods.values().flatten().all(ready) {
            break;
        }
        // Play the node: new pods become Ready a moment after they appear.
        tokio::time::sleep(Duration::from_millis(150)).await;
        ready_all(&p, &pods).await;
    }
    assert!(
        surged > 0,
        "no node ever ran the new pod next to the old one"
    );
    p.stop().await;
}
