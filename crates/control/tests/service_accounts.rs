//! What a pod needs to call the API as its ServiceAccount, as kube provides it: the ServiceAccount
//! admission's `kube-api-access-…` projected volume, the `kube-root-ca.crt` ConfigMap in every namespace, and
//! the `kubernetes` Service naming the API server.

mod common;
use common::Plane;
use std::time::Duration;

use serde_json::{Value, json};

impl Plane {
    async fn admin(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let body = body.map(|b| ("application/json", b.to_string()));
        let (code, obj) = self.request(method.clone(), path, &[], body).await;
        assert!(code < 300, "{method} {path}: {code} {obj}");
        obj
    }

    async fn eventually_get(&self, path: &str, holds: impl Fn(&Value) -> bool) -> Value {
        for _ in 0..250 {
            let (code, obj) = self.request(reqwest::Method::GET, path, &[], None).await;
            if code == 200 && holds(&obj) {
                return obj;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("{path} never became what was expected");
    }
}

fn pod(name: &str, spec: Value) -> Value {
    let mut spec = spec;
    if spec.get("containers").is_none() {
        spec["containers"] = json!([{"name": "c", "image": "example/app:v1"}]);
    }
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec})
}

#[tokio::test]
async fn every_pod_gets_its_service_account_credentials_unless_it_opts_out() {
    let p = Plane::start().await;
    let post = reqwest::Method::POST;
    let created = p
        .admin(
            post.clone(),
            "/api/v1/namespaces/default/pods",
            Some(pod(
                "plain",
                json!({"initContainers": [{"name": "init", "image": "example/init:v1"}],
                "containers": [{"name": "c", "image": "example/app:v1"}]}),
            )),
        )
        .await;
    assert_eq!(created["spec"]["serviceAccountName"], "default");
    let volumes = created["spec"]["volumes"].as_array().expect("volumes");
    assert_eq!(volumes.len(), 1, "{volumes:?}");
    let volume = &volumes[0];
    let name = volume["name"].as_str().unwrap();
    assert!(
        name.starts_with("kube-api-access-") && name.len() == "kube-api-access-".len() + 5,
        "{name}"
    );
    assert_eq!(
        volume["projected"],
        json!({"sources": [
            {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
            {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
            {"downwardAPI": {"items": [{"path": "namespace",
                "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}
        ], "defaultMode": 420})
    );
    for list in ["initContainers", "containers"] {
        assert_eq!(
            created["spec"][list][0]["volumeMounts"],
            json!([{"name": name, "readOnly": true,
                "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}]),
            "{list}"
        );
    }

    // Opting out, on the pod or on its ServiceAccount (the pod's word wins).
    let opted_out = p
        .admin(
            post.clone(),
            "/api/v1/namespaces/default/pods",
            Some(pod(
                "opted-out",
                json!({"automountServiceAccountToken": false}),
            )),
        )
        .await;
    assert!(opted_out["spec"]["volumes"].is_null(), "{opted_out}");
    p.admin(
        post.clone(),
        "/api/v1/namespaces/default/serviceaccounts",
        Some(json!({"apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": {"name": "quiet"}, "automountServiceAccountToken": false})),
    )
    .await;
    let quiet = p
        .admin(
            post.clone(),
            "/api/v1/namespaces/default/pods",
            Some(pod("quiet", json!({"serviceAccountName": "quiet"}))),
        )
        .await;
    assert!(quiet["spec"]["volumes"].is_null(), "{quiet}");
    let insisted = p
        .admin(
            post.clone(),
            "/api/v1/namespaces/default/pods",
            Some(pod(
                "insisted",
                json!({"serviceAccountName": "quiet", "automountServiceAccountToken": true}),
            )),
        )
        .await;
    assert_eq!(
        insisted["spec"]["volumes"].as_array().map(Vec::len),
        Some(1)
    );
    // A pod that mounts something of its own there keeps it.
    let own = p
        .admin(
            post,
            "/api/v1/namespaces/default/pods",
            Some(pod(
                "own",
                json!({"volumes": [{"name": "mine", "emptyDir": {}}],
                "containers": [{"name": "c", "image": "example/app:v1", "volumeMounts":
                    [{"name": "mine", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}]}]}),
            )),
        )
        .await;
    assert_eq!(
        own["spec"]["volumes"],
        json!([{"name": "mine", "emptyDir": {}}])
    );
    p.stop().await;
}

#[tokio::test]
async fn every_namespace_holds_the_cluster_ca_and_default_names_the_api_server() {
    let p = Plane::start().await;
    let ca = p.ca_pem().to_string();
    let holds_ca = |map: &Value| map["data"]["ca.crt"].as_str() == Some(ca.as_str());
    p.eventually_get(
        "/api/v1/namespaces/default/configmaps/kube-root-ca.crt",
        holds_ca,
    )
    .await;
    p.admin(
        reqwest::Method::POST,
        "/api/v1/namespaces",
        Some(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}})),
    )
    .await;
    p.eventually_get(
        "/api/v1/namespaces/shop/configmaps/kube-root-ca.crt",
        holds_ca,
    )
    .await;
    // Deleted or changed, it comes back as it was.
    p.admin(
        reqwest::Method::DELETE,
        "/api/v1/namespaces/shop/configmaps/kube-root-ca.crt",
        None,
    )
    .await;
    p.eventually_get(
        "/api/v1/namespaces/shop/configmaps/kube-root-ca.crt",
        holds_ca,
    )
    .await;

    // `default/kubernetes`: the first Service IP, 443 → the API server's port, and its endpoints.
    let port: u16 = p.base.rsplit(':').next().unwrap().parse().unwrap();
    let service = p
        .admin(
            reqwest::Method::GET,
            "/api/v1/namespaces/default/services/kubernetes",
            None,
        )
        .await;
    assert_eq!(service["spec"]["clusterIP"], "127.250.0.1");
    assert_eq!(
        service["spec"]["ports"],
        json!([{"name": "https", "port": 443, "protocol": "TCP", "targetPort": port}])
    );
    let endpoints = p
        .admin(
            reqwest::Method::GET,
            "/api/v1/namespaces/default/endpoints/kubernetes",
            None,
        )
        .await;
    assert_eq!(
        endpoints["subsets"],
        json!([{"addresses": [{"ip": "127.0.0.1"}],
            "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}])
    );
    let slice = p
        .admin(
            reqwest::Method::GET,
            "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices/kubernetes",
            None,
        )
        .await;
    assert_eq!(slice["endpoints"][0]["addresses"], json!(["127.0.0.1"]));
    // A restart on another port moves the endpoints with it.
    let p = p.restart().await;
    let port: u16 = p.base.rsplit(':').next().unwrap().parse().unwrap();
    let endpoints = p
        .admin(
            reqwest::Method::GET,
            "/api/v1/namespaces/default/endpoints/kubernetes",
            None,
        )
        .await;
    assert_eq!(endpoints["subsets"][0]["ports"][0]["port"], port);
    p.stop().await;
}
