//! StatefulSets against a running control plane: stable names in order, scale-down from the highest
//! ordinal, rolling updates down to a partition, OnDelete, a claim per pod with the retention policies,
//! and the scale subresource. No node agent runs here, so the test plays the kubelet: it marks pods
//! Running and Ready through `pods/status` (pods are never bound, so a deletion removes them at once).

mod common;
use common::Plane;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const PODS: &str = "/api/v1/namespaces/default/pods";
const CLAIMS: &str = "/api/v1/namespaces/default/persistentvolumeclaims";
const SETS: &str = "/apis/apps/v1/namespaces/default/statefulsets";
const REVISIONS: &str = "/apis/apps/v1/namespaces/default/controllerrevisions";

impl Plane {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<(&str, Value)>,
    ) -> (u16, Value) {
        self.request(method, path, &[], body.map(|(ct, b)| (ct, b.to_string())))
            .await
    }

    async fn ok(&self, method: reqwest::Method, path: &str, body: Option<(&str, Value)>) -> Value {
        let (code, v) = self.call(method, path, body).await;
        assert!(code < 300, "{path}: {code} {v}");
        v
    }

    async fn get(&self, path: &str) -> Value {
        self.ok(reqwest::Method::GET, path, None).await
    }

    async fn post(&self, path: &str, v: Value) -> Value {
        self.ok(reqwest::Method::POST, path, Some(("application/json", v)))
            .await
    }

    async fn merge(&self, path: &str, v: Value) -> Value {
        self.ok(
            reqwest::Method::PATCH,
            path,
            Some(("application/merge-patch+json", v)),
        )
        .await
    }

    /// The names of the set's pods that are not being deleted, sorted.
    async fn pod_names(&self, app: &str) -> Vec<String> {
        let list = self.get(&format!("{PODS}?labelSelector=app%3D{app}")).await;
        let mut names: Vec<String> = list["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p.pointer("/metadata/deletionTimestamp").is_none())
            .map(|p| p["metadata"]["name"].as_str().unwrap().to_string())
            .collect();
        names.sort();
        names
    }

    /// Plays the kubelet: pod `name` is Running and Ready.
    async fn ready(&self, name: &str) {
        let now = jiff::Timestamp::now()
            .strftime("%Y-%m-%dT%H:%M:%SZ")
            .to_string();
        self.merge(
            &format!("{PODS}/{name}/status"),
            json!({"status": {"phase": "Running", "conditions": [
                {"type": "Ready", "status": "True", "lastTransitionTime": now}]}}),
        )
        .await;
    }

    async fn set(&self, name: &str) -> Value {
        self.get(&format!("{SETS}/{name}")).await
    }
}

/// Polls `check` until it holds; panics with `what` after 20 s.
async fn until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(20);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn sts(name: &str, replicas: i32, extra: Value) -> Value {
    let mut spec = json!({
        "replicas": replicas,
        "serviceName": name,
        "selector": {"matchLabels": {"app": name}},
        "template": {"metadata": {"labels": {"app": name}},
            "spec": {"containers": [{"name": "app", "image": "registry.example/app:1"}]}},
    });
    if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
        s.extend(e.clone());
    }
    json!({"apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": name, "namespace": "default"}, "spec": spec})
}

fn claim_template() -> Value {
    json!([{"metadata": {"name": "www"}, "spec": {"accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": "1Mi"}}}}])
}

/// The names a pod watch reports DELETED until `want` of them came, in order.
async fn deletions_in_order(p: &Plane, rv: &str, app: &str, want: usize) -> Vec<String> {
    let url = format!(
        "{}{PODS}?watch=true&resourceVersion={rv}&labelSelector=app%3D{app}",
        p.base
    );
    let mut resp = p.http.get(url).send().await.unwrap();
    let mut buf = String::new();
    let mut deleted = Vec::new();
    while deleted.len() < want {
        let chunk = tokio::time::timeout(Duration::from_secs(20), resp.chunk())
            .await
            .expect("a pod deletion")
            .unwrap()
            .unwrap();
        buf.push_str(std::str::from_utf8(&chunk).unwrap());
        while let Some(i) = buf.find('\n') {
            let line: Value = serde_json::from_str(&buf[..i]).unwrap();
            if line["type"] == "DELETED" {
                deleted.push(
                    line["object"]["metadata"]["name"]
                        .as_str()
                        .unwrap()
                        .to_string(),
                );
            }
            buf.drain(..=i);
        }
    }
    deleted
}

#[tokio::test]
async fn ordered_ready_makes_stable_pods_one_by_one_and_scales_down_from_the_top() {
    let p = Plane::start().await;
    let created = p
        .post(
            SETS,
            sts("web", 3, json!({"volumeClaimTemplates": claim_template()})),
        )
        .await;
    // kube's defaults.
    let spec = &created["spec"];
    assert_eq!(spec["podManagementPolicy"], "OrderedReady");
    assert_eq!(
        spec["updateStrategy"],
        json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0, "maxUnavailable": 1}})
    );
    assert_eq!(
        spec["persistentVolumeClaimRetentionPolicy"],
        json!({"whenDeleted": "Retain", "whenScaled": "Retain"})
    );
    assert_eq!(spec["revisionHistoryLimit"], 10);

    until("web-0", || async { p.pod_names("web").await == ["web-0"] }).await;
    let pod = p.get(&format!("{PODS}/web-0")).await;
    let labels = &pod["metadata"]["labels"];
    assert_eq!(labels["statefulset.kubernetes.io/pod-name"], "web-0");
    assert_eq!(labels["apps.kubernetes.io/pod-index"], "0");
    assert_eq!(
        (&pod["spec"]["hostname"], &pod["spec"]["subdomain"]),
        (&json!("web-0"), &json!("web"))
    );
    assert_eq!(
        pod["spec"]["volumes"][0],
        json!({"name": "www", "persistentVolumeClaim": {"claimName": "www-web-0"}})
    );
    let claim = p.get(&format!("{CLAIMS}/www-web-0")).await;
    assert_eq!(claim["metadata"]["labels"], json!({"app": "web"}));
    // Retain/Retain: nobody owns the claim.
    assert!(
        claim.pointer("/metadata/ownerReferences").is_none(),
        "{claim}"
    );
    let revision = labels["controller-revision-hash"]
        .as_str()
        .unwrap()
        .to_string();
    let cr = p.get(&format!("{REVISIONS}/{revision}")).await;
    assert_eq!(cr["revision"], 1);
    assert_eq!(cr["metadata"]["ownerReferences"][0]["name"], "web");
    assert_eq!(cr["data"]["spec"]["template"]["$patch"], "replace");

    // web-1 waits for web-0 to be Running and Ready.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(p.pod_names("web").await, ["web-0"]);
    p.ready("web-0").await;
    until("web-1", || async { p.pod_names("web").await.len() == 2 }).await;
    p.ready("web-1").await;
    until("web-2", || async { p.pod_names("web").await.len() == 3 }).await;
    p.ready("web-2").await;
    until("a complete status", || async {
        let s = p.set("web").await["status"].clone();
        s["readyReplicas"] == 3
            && s["availableReplicas"] == 3
            && s["currentReplicas"] == 3
            && s["updatedReplicas"] == 3
            && s["currentRevision"] == json!(revision)
            && s["updateRevision"] == json!(revision)
    })
    .await;
    let events = p.get("/api/v1/namespaces/default/events").await;
    let messages: Vec<&str> = events["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["message"].as_str())
        .collect();
    assert!(
        messages.contains(&"create Pod web-0 in StatefulSet web successful"),
        "{messages:?}"
    );
    assert!(
        messages.contains(&"create Claim www-web-1 Pod web-1 in StatefulSet web success"),
        "{messages:?}"
    );

    // Scale down to 1: web-2 goes first, then web-1; their claims stay.
    let rv = p.get(PODS).await["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    p.merge(
        &format!("{SETS}/web/scale"),
        json!({"spec": {"replicas": 1}}),
    )
    .await;
    assert_eq!(
        deletions_in_order(&p, &rv, "web", 2).await,
        ["web-2", "web-1"]
    );
    let claims = p.get(CLAIMS).await;
    let mut names: Vec<&str> = claims["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["metadata"]["name"].as_str().unwrap())
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["www-web-0", "www-web-1", "www-web-2"]);
    let kept = p.get(&format!("{CLAIMS}/www-web-1")).await["metadata"]["uid"].clone();
    // Up again: web-1 mounts the claim it had.
    p.merge(
        &format!("{SETS}/web/scale"),
        json!({"spec": {"replicas": 2}}),
    )
    .await;
    until("web-1 again", || async {
        p.pod_names("web").await.len() == 2
    })
    .await;
    assert_eq!(
        p.get(&format!("{CLAIMS}/www-web-1")).await["metadata"]["uid"],
        kept
    );
    p.stop().await;
}

#[tokio::test]
async fn parallel_makes_every_pod_at_once_and_a_rolling_update_stops_at_the_partition() {
    let p = Plane::start().await;
    p.post(
        SETS,
        sts(
            "db",
            3,
            json!({"podManagementPolicy": "Parallel",
        "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 2}}}),
        ),
    )
    .await;
    until("three pods at once", || async {
        p.pod_names("db").await.len() == 3
    })
    .await;
    for n in 0..3 {
        p.ready(&format!("db-{n}")).await;
    }
    until("ready", || async {
        p.set("db").await["status"]["readyReplicas"] == 3
    })
    .await;
    let first = p.set("db").await["status"]["currentRevision"].clone();

    p.merge(
        &format!("{SETS}/db"),
        json!({"spec": {"template": {"spec": {"containers": [
        {"name": "app", "image": "registry.example/app:2"}]}}}}),
    )
    .await;
    let image_of = |pod: &Value| {
        pod["spec"]["containers"][0]["image"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    until("db-2 updated", || async {
        let pod = p
            .call(reqwest::Method::GET, &format!("{PODS}/db-2"), None)
            .await
            .1;
        image_of(&pod) == "registry.example/app:2"
    })
    .await;
    p.ready("db-2").await;
    until("a partitioned rollout", || async {
        let s = p.set("db").await["status"].clone();
        s["updatedReplicas"] == 1
            && s["readyReplicas"] == 3
            && s["currentRevision"] == first
            && s["updateRevision"] != first
    })
    .await;
    // Below the partition nothing moves.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for n in 0..2 {
        let pod = p.get(&format!("{PODS}/db-{n}")).await;
        assert_eq!(image_of(&pod), "registry.example/app:1", "db-{n}");
    }
    // Partition 0: db-1, then db-0, each once the one before is Ready.
    p.merge(
        &format!("{SETS}/db"),
        json!({"spec": {"updateStrategy": {"rollingUpdate": {"partition": 0}}}}),
    )
    .await;
    for n in [1, 0] {
        until(&format!("db-{n} updated"), || async {
            // (404 while the old pod is gone and the new one not yet made.)
            let pod = p
                .call(reqwest::Method::GET, &format!("{PODS}/db-{n}"), None)
                .await
                .1;
            image_of(&pod) == "registry.example/app:2"
        })
        .await;
        p.ready(&format!("db-{n}")).await;
    }
    until("the rollout complete", || async {
        let s = p.set("db").await["status"].clone();
        s["updatedReplicas"] == 3
            && s["currentReplicas"] == 3
            && s["currentRevision"] == s["updateRevision"]
    })
    .await;
    let revisions = p.get(REVISIONS).await;
    let mut numbers: Vec<i64> = revisions["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["revision"].as_i64().unwrap())
        .collect();
    numbers.sort_unstable();
    assert_eq!(numbers, [1, 2]);
    p.stop().await;
}

#[tokio::test]
async fn on_delete_replaces_a_pod_only_when_it_is_deleted() {
    let p = Plane::start().await;
    p.post(
        SETS,
        sts(
            "q",
            2,
            json!({"podManagementPolicy": "Parallel",
        "updateStrategy": {"type": "OnDelete"}}),
        ),
    )
    .await;
    until("two pods", || async { p.pod_names("q").await.len() == 2 }).await;
    p.ready("q-0").await;
    p.ready("q-1").await;
    p.merge(
        &format!("{SETS}/q"),
        json!({"spec": {"template": {"spec": {"containers": [
        {"name": "app", "image": "registry.example/app:2"}]}}}}),
    )
    .await;
    until("a new update revision", || async {
        let s = p.set("q").await["status"].clone();
        s["updateRevision"] != s["currentRevision"] && s["observedGeneration"] == 2
    })
    .await;
    let old_uid = p.get(&format!("{PODS}/q-1")).await["metadata"]["uid"].clone();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        p.get(&format!("{PODS}/q-1")).await["metadata"]["uid"],
        old_uid
    );
    p.ok(reqwest::Method::DELETE, &format!("{PODS}/q-1"), None)
        .await;
    until("q-1 made again at the update revision", || async {
        let (code, pod) = p
            .call(reqwest::Method::GET, &format!("{PODS}/q-1"), None)
            .await;
        code == 200
            && pod["metadata"]["uid"] != old_uid
            && pod["spec"]["containers"][0]["image"] == "registry.example/app:2"
    })
    .await;
    assert_eq!(
        p.get(&format!("{PODS}/q-0")).await["spec"]["containers"][0]["image"],
        "registry.example/app:1"
    );
    p.stop().await;
}

#[tokio::test]
async fn claims_go_with_a_scaled_down_pod_and_with_the_set_when_the_policy_says_delete() {
    let p = Plane::start().await;
    p.post(
        SETS,
        sts(
            "kv",
            2,
            json!({"podManagementPolicy": "Parallel",
        "volumeClaimTemplates": claim_template(),
        "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Delete", "whenScaled": "Delete"}}),
        ),
    )
    .await;
    until("two pods", || async { p.pod_names("kv").await.len() == 2 }).await;
    let set_uid = p.set("kv").await["metadata"]["uid"].clone();
    until("the set owns the claims", || async {
        let claim = p.get(&format!("{CLAIMS}/www-kv-1")).await;
        claim["metadata"]["ownerReferences"]
            == json!([{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "kv", "uid": set_uid,
                "controller": true, "blockOwnerDeletion": true}])
    })
    .await;
    p.ready("kv-0").await;
    p.ready("kv-1").await;
    p.merge(
        &format!("{SETS}/kv/scale"),
        json!({"spec": {"replicas": 1}}),
    )
    .await;
    until("kv-1's claim gone with it", || async {
        p.call(reqwest::Method::GET, &format!("{CLAIMS}/www-kv-1"), None)
            .await
            .0
            == 404
    })
    .await;
    assert_eq!(p.pod_names("kv").await, ["kv-0"]);
    p.ok(reqwest::Method::DELETE, &format!("{SETS}/kv"), None)
        .await;
    until("kv-0's claim gone with the set", || async {
        p.call(reqwest::Method::GET, &format!("{CLAIMS}/www-kv-0"), None)
            .await
            .0
            == 404
    })
    .await;
    p.stop().await;
}

#[tokio::test]
async fn the_scale_subresource_and_kubes_validation() {
    let p = Plane::start().await;
    p.post(SETS, sts("s", 1, json!({}))).await;
    let scale = p.get(&format!("{SETS}/s/scale")).await;
    assert_eq!(
        (&scale["kind"], &scale["spec"]["replicas"]),
        (&json!("Scale"), &json!(1))
    );
    assert_eq!(scale["status"]["selector"], "app=s");
    let scaled = p
        .ok(
            reqwest::Method::PUT,
            &format!("{SETS}/s/scale"),
            Some((
                "application/json",
                json!({"apiVersion": "autoscaling/v1", "kind": "Scale",
                "metadata": {"name": "s", "namespace": "default"}, "spec": {"replicas": 2}}),
            )),
        )
        .await;
    assert_eq!(scaled["spec"]["replicas"], 2);
    until("s-0", || async { p.pod_names("s").await == ["s-0"] }).await;
    p.ready("s-0").await;
    until("s-1", || async { p.pod_names("s").await.len() == 2 }).await;

    // Only what a rollout or a scale changes may change.
    let (code, status) = p
        .call(
            reqwest::Method::PATCH,
            &format!("{SETS}/s"),
            Some((
                "application/merge-patch+json",
                json!({"spec": {"serviceName": "other"}}),
            )),
        )
        .await;
    assert_eq!(code, 422, "{status}");
    // (kube qualifies the kind with its group, `StatefulSet.apps`; herd's admission names the kind alone.)
    assert_eq!(
        status["details"]["causes"][0]["message"],
        "Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden"
    );
    let mut bad = sts("t", 1, json!({"podManagementPolicy": "Sometimes"}));
    bad["spec"]["selector"]["matchLabels"]["app"] = json!("other");
    let (code, status) = p
        .call(reqwest::Method::POST, SETS, Some(("application/json", bad)))
        .await;
    assert_eq!(code, 422, "{status}");
    let causes: Vec<String> = status["details"]["causes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            format!(
                "{}: {}",
                c["field"].as_str().unwrap(),
                c["message"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        causes,
        [
            "spec.podManagementPolicy: Invalid value: \"Sometimes\": must be 'OrderedReady' or 'Parallel'",
            "spec.template.metadata.labels: Invalid value: \"{\"app\": \"t\"}\": `selector` does not match template `labels`",
        ]
    );
    p.stop().await;
}
