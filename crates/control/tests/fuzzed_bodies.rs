//! Bad input over a real socket: fuzzed create bodies (JSON and YAML, every served kind) and fuzzed patches
//! (the four patch types) are answered with a Kubernetes `Status` — 4xx, never 5xx or a dropped connection —
//! and a refused request stores nothing.

mod common;
use common::Plane;

use herd_fuzz::corpus::Corpus;
use herd_fuzz::rng::Rng;
use herd_fuzz::targets::{PATCH_CONTENT_TYPES, fuzzed_create, fuzzed_patch};
use serde_json::{Value, json};

/// Fuzzed inputs of each phase.
const INPUTS: u64 = 200;

impl Plane {
    /// One request with raw bytes (fuzzed bodies need not be UTF-8): the status code and the JSON answer.
    async fn send_bytes(
        &self,
        method: reqwest::Method,
        path: &str,
        ct: &str,
        body: Vec<u8>,
    ) -> (u16, Value) {
        let resp = self
            .http
            .request(method.clone(), format!("{}{path}", self.base))
            .header("content-type", ct)
            .body(body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: the connection failed: {e}"));
        let code = resp.status().as_u16();
        (code, resp.json().await.unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        self.request(reqwest::Method::GET, path, &[], None).await
    }
}

/// A 4xx answer must be a Status naming its code.
fn assert_status(code: u16, answer: &Value, what: &str) {
    assert!(code < 500, "{what}: answered {code}: {answer}");
    if code >= 400 {
        assert_eq!(
            answer["kind"], "Status",
            "{what}: answered {code} without a Status: {answer}"
        );
        assert_eq!(answer["status"], "Failure", "{what}: {answer}");
        assert_eq!(answer["code"], code, "{what}: {answer}");
    }
}

#[tokio::test]
async fn fuzzed_creates_are_refused_with_a_status_and_store_nothing() {
    let p = Plane::start().await;
    let corpus = Corpus::load();
    let (mut refused, mut created) = (Vec::new(), 0);
    for i in 0..INPUTS {
        let mut rng = Rng::for_input(7, "api-create", i);
        let (res, body, yaml) = fuzzed_create(&mut rng, &corpus);
        // Name the object after the input where the body still parses, to look it up afterwards.
        let name = format!("fuzz-{i}");
        let body = if yaml {
            body
        } else {
            match serde_json::from_slice::<Value>(&body) {
                Ok(mut v) if v["metadata"].is_object() => {
                    v["metadata"]["name"] = json!(name);
                    v["metadata"]
                        .as_object_mut()
                        .map(|m| m.remove("generateName"));
                    serde_json::to_vec(&v).unwrap()
                }
                _ => body,
            }
        };
        let ct = if yaml {
            "application/yaml"
        } else {
            "application/json"
        };
        let path = res.collection_path(Some("default"));
        let (code, answer) = p
            .send_bytes(reqwest::Method::POST, &path, ct, body.clone())
            .await;
        assert_status(
            code,
            &answer,
            &format!("POST {path} {}", body.escape_ascii()),
        );
        if code >= 400 {
            refused.push((res, name));
        } else {
            created += 1;
        }
    }
    assert!(
        refused.len() as u64 > INPUTS / 2,
        "most fuzzed bodies are bad ({created} created)"
    );
    for (res, name) in &refused {
        let path = format!("{}/{name}", res.collection_path(Some("default")));
        let (code, answer) = p.get(&path).await;
        assert_eq!(code, 404, "a refused create stored {path}: {answer}");
    }
    p.stop().await;
}

#[tokio::test]
async fn fuzzed_patches_are_refused_with_a_status_and_change_nothing() {
    let p = Plane::start().await;
    let corpus = Corpus::load();
    let targets = [
        (
            "/api/v1/namespaces/default/configmaps/target",
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "target", "labels": {"app": "a"}},
                "data": {"k": "v"}}),
        ),
        (
            // A kind with list merge keys that no controller writes (the endpoints controller writes other objects).
            "/api/v1/namespaces/default/services/target",
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "target", "labels": {"app": "a"}},
                   "spec": {"selector": {"app": "a"}, "ports": [{"name": "http", "port": 80, "targetPort": 8080},
                            {"name": "dns", "port": 53, "protocol": "UDP"}]}}),
        ),
    ];
    let mut refused = 0;
    for (path, object) in &targets {
        let collection = path.rsplit_once('/').unwrap().0;
        let (code, live) = p
            .send_bytes(
                reqwest::Method::POST,
                collection,
                "application/json",
                object.to_string().into_bytes(),
            )
            .await;
        assert_eq!(code, 201, "{live}");
        let mut live = live;
        for i in 0..INPUTS {
            let mut rng = Rng::for_input(7, path, i);
            let ct = *rng.pick(PATCH_CONTENT_TYPES);
            let body = fuzzed_patch(&mut rng, &corpus, ct, object);
            let query = if ct.starts_with("application/apply-patch") {
                "?fieldManager=fuzz&force=true"
            } else {
                ""
            };
            let (code, answer) = p
                .send_bytes(
                    reqwest::Method::PATCH,
                    &format!("{path}{query}"),
                    ct,
                    body.clone(),
                )
                .await;
            let what = format!("PATCH {path} {ct} {}", body.escape_ascii());
            assert_status(code, &answer, &what);
            let (_, now) = p.get(path).await;
            if code >= 400 {
                refused += 1;
                assert_eq!(now, live, "{what}: a refused patch changed the object");
            } else {
                live = now;
            }
        }
    }
    assert!(refused > INPUTS, "most fuzzed patches are bad");
    p.stop().await;
}

/// The bad patches fuzzing found, each once: answered 4xx where the API server panicked (the connection
/// dropped) or answered 500.
#[tokio::test]
async fn patches_found_by_fuzzing_are_refused() {
    let p = Plane::start().await;
    let path = "/api/v1/namespaces/default/services/target";
    // A kind with a status subresource: the update reads the old status into the patched object.
    let svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "target"},
                     "spec": {"selector": {"app": "a"}, "ports": [{"port": 80}]}});
    let (code, created) = p
        .send_bytes(
            reqwest::Method::POST,
            "/api/v1/namespaces/default/services",
            "application/json",
            svc.to_string().into_bytes(),
        )
        .await;
    assert_eq!(code, 201, "{created}");
    let cases = [
        // A patch that replaces the whole object with a list: the update indexed it as an object and panicked.
        (
            "application/json-patch+json",
            json!([{"op": "replace", "path": "", "value": []}]),
            400,
        ),
        ("application/merge-patch+json", json!("x"), 400),
        // A failing operation after a move of a value over its parent: undoing the move (into itself) panicked
        // in json-patch.
        (
            "application/json-patch+json",
            json!([{"op": "move", "from": "/spec/selector/app", "path": "/spec/selector"}, {"op": "remove", "path": "/nope"}]),
            422,
        ),
        // A directive of the wrong type: kube-apiserver's 500, a 422 here.
        (
            "application/strategic-merge-patch+json",
            json!({"$setElementOrder/containers": {"a": 1}}),
            422,
        ),
    ];
    for (ct, patch, want) in cases {
        let (code, answer) = p
            .send_bytes(
                reqwest::Method::PATCH,
                path,
                ct,
                patch.to_string().into_bytes(),
            )
            .await;
        assert_status(code, &answer, &format!("{ct} {patch}"));
        assert_eq!(code, want, "{ct} {patch}: {answer}");
    }
    assert_eq!(p.get(path).await.1, created, "nothing changed");
    p.stop().await;
}
