//! The API server over a real socket: CRUD, optimistic concurrency, Status errors, watch resumption, and the
//! scheduler and controllers reacting to what is stored.

mod common;
use common::Plane;
use std::time::Duration;

use serde_json::{Value, json};

impl Plane {
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<(&str, String)>,
    ) -> (u16, Value) {
        self.request(method, path, &[], body).await
    }

    async fn post(&self, path: &str, v: Value) -> (u16, Value) {
        self.send(
            reqwest::Method::POST,
            path,
            Some(("application/json", v.to_string())),
        )
        .await
    }
}

fn pod(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": name}},
           "spec": {"containers": [{"name": "c", "image": "127.0.0.1:5000/hello:v1"}]}})
}

#[tokio::test]
async fn crud_conflicts_and_status_errors() {
    let p = Plane::start().await;
    let (code, created) = p.post("/api/v1/namespaces/default/pods", pod("a")).await;
    assert_eq!(code, 201, "{created}");
    for field in ["uid", "creationTimestamp", "resourceVersion"] {
        assert!(
            created["metadata"][field].is_string(),
            "{field} missing: {created}"
        );
    }
    assert_eq!(created["metadata"]["generation"], 1);
    let (code, dup) = p.post("/api/v1/namespaces/default/pods", pod("a")).await;
    assert_eq!((code, dup["reason"].as_str()), (409, Some("AlreadyExists")));

    let yaml = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: b\nspec:\n  containers:\n  - name: c\n    image: r/x:v1\n";
    let (code, _) = p
        .send(
            reqwest::Method::POST,
            "/api/v1/namespaces/default/pods",
            Some(("application/yaml", yaml.into())),
        )
        .await;
    assert_eq!(code, 201);

    let (code, list) = p
        .send(
            reqwest::Method::GET,
            "/api/v1/namespaces/default/pods?labelSelector=app%3Da",
            None,
        )
        .await;
    assert_eq!(code, 200);
    assert_eq!(list["items"].as_array().unwrap().len(), 1);

    // A stale resourceVersion is a Conflict, and nothing changes.
    // The scheduler writes the pod's status concurrently, so (like any client) read-modify-write until the
    // update lands; then the same body is stale.
    let mut stale = Value::Null;
    for _ in 0..20 {
        let (_, current) = p
            .send(
                reqwest::Method::GET,
                "/api/v1/namespaces/default/pods/a",
                None,
            )
            .await;
        stale = current.clone();
        stale["metadata"]["labels"]["x"] = json!("y");
        let (code, _) = p
            .send(
                reqwest::Method::PUT,
                "/api/v1/namespaces/default/pods/a",
                Some(("application/json", stale.to_string())),
            )
            .await;
        if code == 200 {
            break;
        }
        assert_eq!(code, 409);
    }
    let (_, updated) = p
        .send(
            reqwest::Method::GET,
            "/api/v1/namespaces/default/pods/a",
            None,
        )
        .await;
    assert_eq!(updated["metadata"]["labels"]["x"], "y");
    let (code, conflict) = p
        .send(
            reqwest::Method::PUT,
            "/api/v1/namespaces/default/pods/a",
            Some(("application/json", stale.to_string())),
        )
        .await;
    assert_eq!((code, conflict["reason"].as_str()), (409, Some("Conflict")));

    let (code, missing) = p
        .send(
            reqwest::Method::GET,
            "/api/v1/namespaces/default/pods/nope",
            None,
        )
        .await;
    assert_eq!(
        (code, missing["kind"].as_str(), missing["reason"].as_str()),
        (404, Some("Status"), Some("NotFound"))
    );
    assert_eq!(missing["message"], "pods \"nope\" not found");

    let bad = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "Bad_Name"}, "spec": {"containers": [{"name": "c"}]}});
    let (code, invalid) = p.post("/api/v1/namespaces/default/pods", bad).await;
    assert_eq!((code, invalid["reason"].as_str()), (422, Some("Invalid")));
    let fields: Vec<&str> = invalid["details"]["causes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["metadata.name", "spec.containers[0].image"]);

    let (code, garbage) = p
        .send(
            reqwest::Method::POST,
            "/api/v1/namespaces/default/pods",
            Some(("application/json", "{nope".into())),
        )
        .await;
    assert_eq!(
        (code, garbage["reason"].as_str()),
        (400, Some("BadRequest"))
    );

    let (code, _) = p.post("/api/v1/namespaces/nowhere/pods", pod("c")).await;
    assert_eq!(code, 404);

    // An unbound pod is deleted at once.
    let (code, _) = p
        .send(
            reqwest::Method::DELETE,
            "/api/v1/namespaces/default/pods/b",
            None,
        )
        .await;
    assert_eq!(code, 200);
    let (code, _) = p
        .send(
            reqwest::Method::GET,
            "/api/v1/namespaces/default/pods/b",
            None,
        )
        .await;
    assert_eq!(code, 404);
    p.stop().await;
}

#[tokio::test]
async fn watch_resumes_from_a_resource_version() {
    let p = Plane::start().await;
    let (_, a) = p.post("/api/v1/namespaces/default/pods", pod("a")).await;
    let rv = a["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    p.post("/api/v1/namespaces/default/pods", pod("b")).await;
    let url = format!(
        "{}/api/v1/namespaces/default/pods?watch=true&resourceVersion={rv}",
        p.base
    );
    let mut resp = p.http.get(url).send().await.unwrap();
    p.send(
        reqwest::Method::DELETE,
        "/api/v1/namespaces/default/pods/a",
        None,
    )
    .await;
    let mut buf = String::new();
    let mut events = Vec::new();
    while !events.iter().any(|(t, n)| t == "DELETED" && n == "a") {
        let chunk = tokio::time::timeout(Duration::from_secs(5), resp.chunk())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        buf.push_str(std::str::from_utf8(&chunk).unwrap());
        while let Some(i) = buf.find('\n') {
            let line: Value = serde_json::from_str(&buf[..i]).unwrap();
            events.push((
                line["type"].as_str().unwrap().to_string(),
                line["object"]["metadata"]["name"]
                    .as_str()
                    .unwrap()
                    .to_string(),
            ));
            buf.drain(..=i);
        }
    }
    // Only what happened after `rv`: b's creation, a's deletion and any status writes of the scheduler, never a's creation.
    assert!(
        events.contains(&("ADDED".to_string(), "b".to_string())),
        "{events:?}"
    );
    assert!(
        !events.contains(&("ADDED".to_string(), "a".to_string())),
        "{events:?}"
    );
    p.stop().await;
}

#[tokio::test]
async fn deployments_make_pods_and_services_get_cluster_ips() {
    let p = Plane::start().await;
    let deploy = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "r/x:v1"}]}}}});
    let (code, _) = p
        .post("/apis/apps/v1/namespaces/default/deployments", deploy)
        .await;
    assert_eq!(code, 201);
    let mut pods = Vec::new();
    for _ in 0..100 {
        let (_, list) = p
            .send(
                reqwest::Method::GET,
                "/api/v1/namespaces/default/pods?labelSelector=app%3Dweb",
                None,
            )
            .await;
        pods = list["items"].as_array().cloned().unwrap_or_default();
        if pods.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(pods.len(), 2);
    assert_eq!(
        pods[0]["metadata"]["ownerReferences"][0]["kind"],
        "ReplicaSet"
    );
    // No node exists: the pods stay Pending with the scheduler's reason.
    for _ in 0..100 {
        let (_, pod) = p
            .send(
                reqwest::Method::GET,
                &format!(
                    "/api/v1/namespaces/default/pods/{}",
                    pods[0]["metadata"]["name"].as_str().unwrap()
                ),
                None,
            )
            .await;
        if pod["status"]["conditions"][0]["reason"] == "Unschedulable" {
            assert_eq!(pod["status"]["conditions"][0]["status"], "False");
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}});
    let (code, svc) = p.post("/api/v1/namespaces/default/services", svc).await;
    assert_eq!(code, 201, "{svc}");
    let ip: std::net::IpAddr = svc["spec"]["clusterIP"].as_str().unwrap().parse().unwrap();
    assert!(
        "127.250.0.0/24"
            .parse::<ipnet::IpNet>()
            .unwrap()
            .contains(&ip)
    );
    p.stop().await;
}

async fn wait_gone(p: &Plane, path: &str) -> bool {
    for _ in 0..100 {
        let (code, _) = p.send(reqwest::Method::GET, path, None).await;
        if code == 404 {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

async fn count(p: &Plane, path: &str) -> usize {
    let (_, list) = p.send(reqwest::Method::GET, path, None).await;
    list["items"].as_array().map_or(0, Vec::len)
}

#[tokio::test]
async fn delete_propagation_policies() {
    let p = Plane::start().await;
    let deploy = |name: &str| {
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "c", "image": "r/x:v1"}]}}}})
    };
    for (name, policy, rs_left, pods_left) in [
        ("fg", "Foreground", 0, 0),
        ("bg", "Background", 0, 0),
        ("or", "Orphan", 1, 2),
    ] {
        p.post("/apis/apps/v1/namespaces/default/deployments", deploy(name))
            .await;
        let pods = format!("/api/v1/namespaces/default/pods?labelSelector=app%3D{name}");
        let rs = format!("/apis/apps/v1/namespaces/default/replicasets?labelSelector=app%3D{name}");
        for _ in 0..100 {
            if count(&p, &pods).await == 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(count(&p, &pods).await, 2, "{name}: pods were not created");
        let body =
            json!({"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": policy});
        let (code, _) = p
            .send(
                reqwest::Method::DELETE,
                &format!("/apis/apps/v1/namespaces/default/deployments/{name}"),
                Some(("application/json", body.to_string())),
            )
            .await;
        assert_eq!(code, 200);
        assert!(
            wait_gone(
                &p,
                &format!("/apis/apps/v1/namespaces/default/deployments/{name}")
            )
            .await,
            "{policy}: deployment still there"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
        for _ in 0..100 {
            if count(&p, &rs).await == rs_left && count(&p, &pods).await == pods_left {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(
            (count(&p, &rs).await, count(&p, &pods).await),
            (rs_left, pods_left),
            "{policy}"
        );
    }
    // Orphans lost their owner reference.
    let (_, rs) = p
        .send(
            reqwest::Method::GET,
            "/apis/apps/v1/namespaces/default/replicasets?labelSelector=app%3Dor",
            None,
        )
        .await;
    assert!(
        rs["items"][0]["metadata"]["ownerReferences"]
            .as_array()
            .is_none_or(Vec::is_empty),
        "{rs}"
    );
    p.stop().await;
}

#[tokio::test]
async fn lists_page_with_limit_and_continue_and_watchlist_is_refused() {
    let p = Plane::start().await;
    for i in 0..5 {
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": format!("cm{i}"), "labels": {"page": "test"}}, "data": {"i": i.to_string()}});
        assert_eq!(
            p.post("/api/v1/namespaces/default/configmaps", cm).await.0,
            201
        );
    }
    let mut names = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    let mut revisions = Vec::new();
    loop {
        // (The selector leaves out the namespace's kube-root-ca.crt.)
        let path = format!(
            "/api/v1/namespaces/default/configmaps?labelSelector=page%3Dtest&limit=2&continue={token}"
        );
        let (code, page) = p.send(reqwest::Method::GET, &path, None).await;
        assert_eq!(code, 200, "{page}");
        pages += 1;
        revisions.push(page["metadata"]["resourceVersion"].clone());
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= 2);
        names.extend(items.iter().map(|i| {
            format!(
                "{}={}",
                i["metadata"]["name"].as_str().unwrap(),
                i["data"]["i"].as_str().unwrap()
            )
        }));
        if pages == 1 {
            // Writes between pages do not show: every page is of the first page's snapshot.
            let cm3 = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm3", "labels": {"page": "test"}}, "data": {"i": "changed"}});
            let path = "/api/v1/namespaces/default/configmaps";
            let (code, _) = p
                .send(
                    reqwest::Method::PUT,
                    &format!("{path}/cm3"),
                    Some(("application/json", cm3.to_string())),
                )
                .await;
            assert_eq!(code, 200);
            let (code, _) = p
                .send(reqwest::Method::DELETE, &format!("{path}/cm4"), None)
                .await;
            assert_eq!(code, 200);
            let cm5 = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm5", "labels": {"page": "test"}}, "data": {"i": "5"}});
            assert_eq!(p.post(path, cm5).await.0, 201);
        }
        match page["metadata"]["continue"].as_str() {
            Some(t) => token = t.to_string(),
            None => break,
        }
    }
    assert_eq!(
        (pages, names),
        (
            3,
            ["cm0=0", "cm1=1", "cm2=2", "cm3=3", "cm4=4"]
                .map(String::from)
                .to_vec()
        )
    );
    assert!(
        revisions.iter().all(|r| *r == revisions[0]),
        "{revisions:?}"
    );
    // A new list sees the writes.
    let (_, now) = p
        .send(
            reqwest::Method::GET,
            "/api/v1/namespaces/default/configmaps?labelSelector=page%3Dtest&limit=10",
            None,
        )
        .await;
    let now: Vec<&str> = now["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["data"]["i"].as_str().unwrap())
        .collect();
    assert_eq!(now, ["0", "1", "2", "changed", "5"]);
    let (code, bad) = p
        .send(
            reqwest::Method::GET,
            "/api/v1/namespaces/default/configmaps?continue=garbage",
            None,
        )
        .await;
    assert_eq!((code, bad["reason"].as_str()), (400, Some("BadRequest")));
    // WatchList is not implemented, so sendInitialEvents is refused the way kube-apiserver without the
    // feature gate refuses it (client-go then falls back to list + watch).
    let (code, refused) = p
        .send(reqwest::Method::GET, "/api/v1/namespaces/default/configmaps?watch=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan", None)
        .await;
    assert_eq!((code, refused["reason"].as_str()), (422, Some("Invalid")));
    p.stop().await;
}

#[tokio::test]
async fn pod_security_admission_enforces_the_namespace_level() {
    let p = Plane::start().await;
    let ns = |name: &str, labels: Value| json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}});
    assert_eq!(
        p.post(
            "/api/v1/namespaces",
            ns(
                "locked",
                json!({"pod-security.kubernetes.io/enforce": "baseline"})
            )
        )
        .await
        .0,
        201
    );
    assert_eq!(
        p.post(
            "/api/v1/namespaces",
            ns(
                "open",
                json!({"pod-security.kubernetes.io/enforce": "privileged"})
            )
        )
        .await
        .0,
        201
    );
    let pod = |name: &str, host_path: bool| {
        let mut pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"containers": [{"name": "c", "image": "example/app:1"}]}});
        if host_path {
            pod["spec"]["volumes"] = json!([{"name": "data", "hostPath": {"path": "/etc"}}]);
        }
        pod
    };
    let (code, refused) = p
        .post("/api/v1/namespaces/locked/pods", pod("reader", true))
        .await;
    assert_eq!(
        (code, refused),
        (
            403,
            json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": "pods \"reader\" is forbidden: violates PodSecurity \"baseline:latest\": hostPath volumes (volume \"data\")",
                "reason": "Forbidden", "details": {"name": "reader", "kind": "pods"}, "code": 403})
        )
    );
    let (code, _) = p
        .send(
            reqwest::Method::GET,
            "/api/v1/namespaces/locked/pods/reader",
            None,
        )
        .await;
    assert_eq!(code, 404, "nothing stored");
    // What the level allows is created; a namespace labelled privileged takes the hostPath pod.
    assert_eq!(
        p.post("/api/v1/namespaces/locked/pods", pod("plain", false))
            .await
            .0,
        201
    );
    assert_eq!(
        p.post("/api/v1/namespaces/open/pods", pod("reader", true))
            .await
            .0,
        201
    );
    p.stop().await;
}
