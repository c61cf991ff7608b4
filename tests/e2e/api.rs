//! The Kubernetes REST API over plain HTTP: CRUD at the k8s paths for each resource, JSON and YAML bodies,
//! metadata the server sets, `Status` errors, and watch streams. Runs against `herd control` alone, so that
//! no node agent writes to the objects under test.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::*;

/// One resource under test: its collection path and how to build an object of it.
struct Resource {
    kind: &'static str,
    collection: &'static str,
    build: fn(&str) -> Value,
}

fn namespace(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
}

fn node(name: &str) -> Value {
    // No status: the node is not Ready, so nothing gets scheduled on it.
    json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}, "spec": {}})
}

fn pod(name: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {"containers": [{"name": "c", "image": "127.0.0.1:9/absent:v1"}]},
    })
}

fn svc(name: &str) -> Value {
    service(name, "api-test", 80, 8080)
}

fn deployment(name: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": "127.0.0.1:9/absent:v1"}]},
            },
        },
    })
}

fn with_labels(mut obj: Value, which: &str) -> Value {
    obj["metadata"]["labels"] = json!({"suite": "e2e", "which": which});
    obj
}

fn assert_server_metadata(obj: &Value, what: &str) {
    for field in ["uid", "creationTimestamp", "resourceVersion"] {
        assert!(
            !s(obj, &format!("/metadata/{field}")).is_empty(),
            "{what}: metadata.{field} not set: {obj}"
        );
    }
    let generation = obj
        .pointer("/metadata/generation")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    assert!(
        generation >= 1,
        "{what}: metadata.generation not set: {obj}"
    );
}

/// Asserts a Kubernetes `Status` failure body with this code and reason.
#[track_caller]
fn assert_status(status: u16, body: &Value, code: u16, reason: &str) {
    assert_eq!(status, code, "HTTP status; body: {body}");
    assert_eq!(body["kind"], "Status", "{body}");
    assert_eq!(body["apiVersion"], "v1", "{body}");
    assert_eq!(body["status"], "Failure", "{body}");
    assert_eq!(body["reason"], reason, "{body}");
    assert_eq!(body["code"], code, "{body}");
    assert!(
        !s(body, "/message").is_empty(),
        "Status without message: {body}"
    );
}

async fn crud_roundtrip(res: Resource) {
    let herd = Herd::up(HerdOptions::control()).await;
    let kind = res.kind;
    let a_path = format!("{}/a-{}", res.collection, kind.to_lowercase());
    let a_name = format!("a-{}", kind.to_lowercase());
    let b_name = format!("b-{}", kind.to_lowercase());

    // Create: one JSON body, one YAML body.
    let a = herd
        .create(res.collection, &with_labels((res.build)(&a_name), "a"))
        .await;
    assert_server_metadata(&a, kind);
    assert_eq!(a["kind"], kind);
    assert_eq!(s(&a, "/metadata/name"), a_name);
    let yaml = to_yaml(&with_labels((res.build)(&b_name), "b"));
    let (status, b) = herd
        .send_raw(
            Method::POST,
            res.collection,
            Some(("application/yaml", yaml.clone())),
        )
        .await;
    assert_eq!(status, 201, "POST {kind} as YAML -> {status}: {b}\n{yaml}");
    assert_server_metadata(&b, kind);
    assert_eq!(
        s(&b, "/metadata/labels/which"),
        "b",
        "YAML body labels: {b}"
    );
    assert_ne!(a["metadata"]["uid"], b["metadata"]["uid"]);

    // Get.
    let got = herd.get_ok(&a_path).await;
    assert_eq!(got["metadata"]["uid"], a["metadata"]["uid"]);

    // List, with and without a label selector.
    let list = herd
        .get_ok(&format!("{}?labelSelector=which%3Da", res.collection))
        .await;
    assert_eq!(list["kind"], format!("{kind}List"), "{list}");
    assert!(
        !s(&list, "/metadata/resourceVersion").is_empty(),
        "list without resourceVersion: {list}"
    );
    let names = |list: &Value| -> Vec<String> {
        let mut names: Vec<String> = list["items"]
            .as_array()
            .unwrap_or(&Vec::new())
            .iter()
            .map(|i| s(i, "/metadata/name").to_string())
            .collect();
        names.sort();
        names
    };
    assert_eq!(names(&list), vec![a_name.clone()], "labelSelector=which=a");
    let list = herd
        .get_ok(&format!("{}?labelSelector=suite%3De2e", res.collection))
        .await;
    assert_eq!(
        names(&list),
        vec![a_name.clone(), b_name.clone()],
        "labelSelector=suite=e2e"
    );
    let list = herd
        .get_ok(&format!(
            "{}?labelSelector=suite%3De2e,which!%3Da",
            res.collection
        ))
        .await;
    assert_eq!(
        names(&list),
        vec![b_name.clone()],
        "labelSelector=suite=e2e,which!=a"
    );

    // Update with the current resourceVersion.
    let before = herd.get_ok(&a_path).await;
    let updated = herd
        .update(&a_path, |o| {
            o["metadata"]["labels"]["changed"] = json!("yes")
        })
        .await;
    assert_eq!(s(&updated, "/metadata/labels/changed"), "yes");
    assert_eq!(
        updated["metadata"]["uid"], a["metadata"]["uid"],
        "PUT changed the uid"
    );
    assert_eq!(
        updated["metadata"]["creationTimestamp"],
        a["metadata"]["creationTimestamp"]
    );
    assert_ne!(
        updated["metadata"]["resourceVersion"], before["metadata"]["resourceVersion"],
        "PUT kept the rv"
    );
    assert_eq!(
        s(&herd.get_ok(&a_path).await, "/metadata/labels/changed"),
        "yes",
        "PUT not stored"
    );

    // Update with a stale resourceVersion: 409 Conflict.
    let mut stale = before.clone();
    stale["metadata"]["labels"]["stale"] = json!("yes");
    let (status, body) = herd.send(Method::PUT, &a_path, Some(&stale)).await;
    assert_status(status, &body, 409, "Conflict");
    assert_eq!(
        s(&herd.get_ok(&a_path).await, "/metadata/labels/stale"),
        "",
        "stale PUT was stored"
    );

    // Create twice: 409 AlreadyExists.
    let (status, body) = herd
        .send(Method::POST, res.collection, Some(&(res.build)(&a_name)))
        .await;
    assert_status(status, &body, 409, "AlreadyExists");

    // Delete, then the object is gone (404 NotFound Status).
    herd.delete(&a_path).await;
    wait_for(
        &format!("{kind} {a_name} to be deleted"),
        Duration::from_secs(15),
        || async {
            match herd.get(&a_path).await {
                (404, body) => Ok(body),
                (status, body) => Err(format!("{status}: {body}")),
            }
        },
    )
    .await;
    let (status, body) = herd.get(&a_path).await;
    assert_status(status, &body, 404, "NotFound");
    let list = herd
        .get_ok(&format!("{}?labelSelector=suite%3De2e", res.collection))
        .await;
    assert_eq!(names(&list), vec![b_name], "list after delete");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crud_pods() {
    crud_roundtrip(Resource {
        kind: "Pod",
        collection: PODS,
        build: pod,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crud_services() {
    crud_roundtrip(Resource {
        kind: "Service",
        collection: SERVICES,
        build: svc,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crud_deployments() {
    crud_roundtrip(Resource {
        kind: "Deployment",
        collection: DEPLOYMENTS,
        build: deployment,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crud_nodes() {
    crud_roundtrip(Resource {
        kind: "Node",
        collection: NODES,
        build: node,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crud_namespaces() {
    crud_roundtrip(Resource {
        kind: "Namespace",
        collection: NAMESPACES,
        build: namespace,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spec_change_bumps_generation_but_label_change_does_not() {
    let herd = Herd::up(HerdOptions::control()).await;
    let path = format!("{DEPLOYMENTS}/gen");
    let created = herd.create(DEPLOYMENTS, &deployment("gen")).await;
    assert_eq!(created["metadata"]["generation"], 1, "{created}");
    let labelled = herd
        .update(&path, |d| d["metadata"]["labels"] = json!({"x": "y"}))
        .await;
    assert_eq!(
        labelled["metadata"]["generation"], 1,
        "a label change bumped generation: {labelled}"
    );
    let changed = herd
        .update(&path, |d| d["spec"]["minReadySeconds"] = json!(5))
        .await;
    assert_eq!(
        changed["metadata"]["generation"], 2,
        "a spec change did not bump generation: {changed}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_kubernetes_status_objects() {
    let herd = Herd::up(HerdOptions::control()).await;

    // Missing object.
    let (status, body) = herd.get(&format!("{PODS}/nope")).await;
    assert_status(status, &body, 404, "NotFound");
    let (status, body) = herd.get(&format!("{NAMESPACES}/nope")).await;
    assert_status(status, &body, 404, "NotFound");

    // A pod without containers: 422 Invalid, with a cause naming the field.
    let mut no_containers = pod("empty");
    no_containers["spec"]["containers"] = json!([]);
    let (status, body) = herd.send(Method::POST, PODS, Some(&no_containers)).await;
    assert_status(status, &body, 422, "Invalid");
    let causes = body
        .pointer("/details/causes")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    assert!(
        causes
            .iter()
            .any(|c| s(c, "/field").contains("spec.containers")),
        "no cause for spec.containers: {body}"
    );

    // A bad name: 422 Invalid, cause metadata.name.
    let (status, body) = herd.send(Method::POST, PODS, Some(&pod("Bad_Name!"))).await;
    assert_status(status, &body, 422, "Invalid");
    let causes = body
        .pointer("/details/causes")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    assert!(
        causes.iter().any(|c| s(c, "/field") == "metadata.name"),
        "no cause for metadata.name: {body}"
    );
    assert_eq!(
        herd.get(&format!("{PODS}/Bad_Name!")).await.0,
        404,
        "an invalid pod was stored"
    );

    // Bodies that are not objects: 400.
    for (content_type, garbage) in [
        ("application/json", "{not json"),
        ("application/yaml", "::: ["),
    ] {
        let (status, body) = herd
            .send_raw(
                Method::POST,
                PODS,
                Some((content_type, garbage.to_string())),
            )
            .await;
        assert_status(status, &body, 400, "BadRequest");
    }

    // Herd still answers after all that.
    herd.get_ok(PODS).await;
}

fn event_rv(event: &Value) -> u64 {
    s(event, "/object/metadata/resourceVersion")
        .parse()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_streams_events_after_a_resource_version_and_resumes() {
    let herd = Herd::up(HerdOptions::control()).await;
    let before = herd.create(PODS, &pod("w1")).await;
    let rv = s(&before, "/metadata/resourceVersion").to_string();

    let mut watch = WatchStream::open(
        &herd.http,
        &herd.url(&format!("{PODS}?watch=true&resourceVersion={rv}")),
    )
    .await;
    herd.create(PODS, &pod("w2")).await;
    herd.update(&format!("{PODS}/w2"), |p| {
        p["metadata"]["labels"] = json!({"step": "two"})
    })
    .await;
    herd.delete(&format!("{PODS}/w2")).await;

    let is_w2_deleted = |e: &Value| e["type"] == "DELETED" && s(e, "/object/metadata/name") == "w2";
    let (events, done) = watch.until(Duration::from_secs(20), is_w2_deleted).await;
    let seen: Vec<String> = events.iter().map(watch_describe).collect();
    assert!(done, "no DELETED w2 event; saw {seen:?}");
    // Only changes after rv: w1's creation is not replayed (the scheduler may still touch w1 later).
    let start: u64 = rv.parse().unwrap_or(0);
    let rvs: Vec<u64> = events.iter().map(event_rv).collect();
    assert!(
        rvs.iter().all(|r| *r > start),
        "events at or before rv {rv}: {seen:?}"
    );
    assert!(
        rvs.windows(2).all(|w| w[0] < w[1]),
        "event resourceVersions not increasing: {seen:?}"
    );
    assert!(
        !events
            .iter()
            .any(|e| e["type"] == "ADDED" && s(e, "/object/metadata/name") == "w1"),
        "{seen:?}"
    );
    let w2: Vec<&Value> = events
        .iter()
        .filter(|e| s(e, "/object/metadata/name") == "w2")
        .collect();
    assert_eq!(w2[0]["type"], "ADDED", "first w2 event: {seen:?}");
    assert_eq!(w2[0]["object"]["kind"], "Pod");
    assert!(
        w2.iter()
            .any(|e| e["type"] == "MODIFIED" && s(e, "/object/metadata/labels/step") == "two"),
        "no MODIFIED event with the update: {seen:?}"
    );

    // Resume from the ADDED event: the stream replays what followed it, not the ADDED itself.
    let added_rv = s(w2[0], "/object/metadata/resourceVersion");
    let after_added: Vec<String> = events
        .iter()
        .filter(|e| event_rv(e) > event_rv(w2[0]))
        .map(watch_describe)
        .collect();
    let url = herd.url(&format!("{PODS}?watch=true&resourceVersion={added_rv}"));
    let mut resumed = WatchStream::open(&herd.http, &url).await;
    let (replayed, done) = resumed.until(Duration::from_secs(20), is_w2_deleted).await;
    let replayed: Vec<String> = replayed.iter().map(watch_describe).collect();
    assert!(
        done,
        "resumed watch did not replay the DELETED event: {replayed:?}"
    );
    assert_eq!(
        replayed, after_added,
        "resumed watch vs the original after the ADDED event"
    );

    // A live watch sees new events as they happen.
    let last = rvs[rvs.len() - 1];
    let mut live = WatchStream::open(
        &herd.http,
        &herd.url(&format!("{PODS}?watch=true&resourceVersion={last}")),
    )
    .await;
    herd.create(PODS, &pod("w3")).await;
    let (live_events, done) = live
        .until(Duration::from_secs(10), |e| {
            e["type"] == "ADDED" && s(e, "/object/metadata/name") == "w3"
        })
        .await;
    assert!(
        done,
        "live watch: no ADDED w3 within 10 s: {:?}",
        live_events.iter().map(watch_describe).collect::<Vec<_>>()
    );
}
