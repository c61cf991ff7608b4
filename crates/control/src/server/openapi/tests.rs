use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use herd_api::resources::RESOURCES;
use serde_json::{Value, json};

use super::*;

fn doc(path: &str) -> Value {
    openapi_document(path).unwrap_or_else(|| panic!("no document {path}"))
}

fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// The operations of a document: (path, method, operation).
fn operations(doc: &Value) -> Vec<(&str, &str, &Value)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().into_iter().flatten() {
        for (method, op) in item.as_object().into_iter().flatten() {
            if method != "parameters" {
                out.push((path.as_str(), method.as_str(), op));
            }
        }
    }
    out
}

fn has_query_param(op: &Value, name: &str) -> bool {
    op["parameters"]
        .as_array()
        .is_some_and(|ps| ps.iter().any(|p| p["name"] == name && p["in"] == "query"))
}

#[test]
fn index_lists_every_group_version_with_its_hash() {
    let index = openapi_index();
    let paths = index["paths"].as_object().unwrap();
    for (group, version) in resources::group_versions() {
        let path = gv_path(group, version);
        let url = paths[&path]["serverRelativeURL"].as_str().unwrap();
        let served = &DOCUMENTS.group_versions[&path];
        assert_eq!(url, format!("/openapi/v3/{path}?hash={}", served.etag));
        assert_eq!(served.etag.len(), 128, "hex SHA-512");
    }
}

#[test]
fn pod_schema_has_its_group_version_kind() {
    let pod = &doc("api/v1")["components"]["schemas"]["io.k8s.api.core.v1.Pod"];
    assert_eq!(
        pod["x-kubernetes-group-version-kind"],
        json!([{"group": "", "kind": "Pod", "version": "v1"}])
    );
    assert!(pod.pointer("/properties/spec").is_some());
}

/// What kubectl's `queryParamVerifierV3.HasSupport` decides (cli-runtime
/// pkg/resource/query_param_verifier_v3.go): the first PATCH operation whose
/// `x-kubernetes-group-version-kind` object is the kind must list `fieldValidation` among its query
/// parameters. Paths are a Go map, so every such operation must.
#[test]
fn every_kind_supports_server_side_field_validation() {
    for res in RESOURCES {
        let doc = &doc(&gv_path(res.group, res.version));
        let gvk = json!({"group": res.group, "kind": res.kind, "version": res.version});
        let patches: Vec<_> = operations(doc)
            .into_iter()
            .filter(|(_, m, op)| *m == "patch" && op["x-kubernetes-group-version-kind"] == gvk)
            .collect();
        assert!(!patches.is_empty(), "no PATCH operation for {}", res.kind);
        for (path, _, op) in patches {
            assert!(has_query_param(op, "fieldValidation"), "{path}");
        }
    }
}

#[test]
fn every_write_takes_field_validation_and_every_ref_resolves() {
    for (group, version) in resources::group_versions() {
        let doc = &doc(&gv_path(group, version));
        for (path, method, op) in operations(doc) {
            if matches!(method, "post" | "put" | "patch") {
                assert!(has_query_param(op, "fieldValidation"), "{method} {path}");
            }
            assert!(op["x-kubernetes-group-version-kind"].is_object() || path.ends_with('/'));
        }
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        let text = doc.to_string();
        for piece in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
            let name = piece.split('"').next().unwrap();
            assert!(
                schemas.contains_key(name),
                "{group}/{version}: dangling {name}"
            );
        }
    }
}

#[test]
fn paths_follow_kube_apiserver() {
    let core = doc("api/v1");
    let pods = &core["paths"]["/api/v1/namespaces/{namespace}/pods"];
    assert_eq!(pods["get"]["operationId"], "listCoreV1NamespacedPod");
    assert_eq!(pods["post"]["operationId"], "createCoreV1NamespacedPod");
    assert!(has_query_param(&pods["get"], "watch"));
    let pod = &core["paths"]["/api/v1/namespaces/{namespace}/pods/{name}"];
    for method in ["get", "put", "patch", "delete"] {
        assert!(pod.get(method).is_some(), "{method}");
    }
    assert!(
        pod["patch"]["requestBody"]["content"]
            .get("application/strategic-merge-patch+json")
            .is_some()
    );
    assert_eq!(
        core["paths"]["/api/v1/pods"]["get"]["operationId"],
        "listCoreV1PodForAllNamespaces"
    );
    assert_eq!(
        core["paths"]["/api/v1/nodes/{name}/status"]["patch"]["operationId"],
        "patchCoreV1NodeStatus"
    );
    let binding = &core["paths"]["/api/v1/namespaces/{namespace}/pods/{name}/binding"]["post"];
    assert_eq!(
        binding["x-kubernetes-group-version-kind"],
        json!({"group": "", "kind": "Binding", "version": "v1"})
    );
    let apps = doc("apis/apps/v1");
    let scale = &apps["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale"];
    assert_eq!(
        scale["patch"]["operationId"],
        "patchAppsV1NamespacedDeploymentScale"
    );
    assert_eq!(
        scale["get"]["x-kubernetes-group-version-kind"],
        json!({"group": "autoscaling", "kind": "Scale", "version": "v1"})
    );
    assert_eq!(
        apps["components"]["schemas"]["io.k8s.api.autoscaling.v1.Scale"]["x-kubernetes-group-version-kind"],
        json!([{"group": "autoscaling", "kind": "Scale", "version": "v1"}])
    );
    let leases = &doc("apis/coordination.k8s.io/v1")["paths"]["/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/{name}"];
    assert_eq!(
        leases["put"]["operationId"],
        "replaceCoordinationV1NamespacedLease"
    );
    assert_eq!(leases["put"]["tags"], json!(["coordination_v1"]));
}

fn headers(pairs: &[(header::HeaderName, &'static str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.insert(k, HeaderValue::from_static(v));
    }
    h
}

async fn get(uri: &str, h: HeaderMap) -> Response {
    group_version(uri.parse::<Uri>().unwrap(), h).await
}

#[tokio::test]
async fn documents_are_cached_by_hash() {
    let etag = DOCUMENTS.group_versions["api/v1"].etag.clone();
    // kubectl's openapi3 client asks for JSON with the hash from the index.
    let json_accept = headers(&[(header::ACCEPT, "application/json")]);
    let resp = get(
        &format!("/openapi/v3/api/v1?hash={etag}"),
        json_accept.clone(),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()[header::CONTENT_TYPE], "application/json");
    assert_eq!(resp.headers()[header::CACHE_CONTROL], "public, immutable");
    assert!(
        resp.headers()[header::EXPIRES]
            .to_str()
            .unwrap()
            .ends_with(" GMT")
    );
    assert_eq!(resp.headers()[header::ETAG], format!("\"{etag}\"").as_str());
    let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    let served: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(served, doc("api/v1"));

    let stale = get("/openapi/v3/api/v1?hash=0123", json_accept.clone()).await;
    assert_eq!(stale.status(), StatusCode::MOVED_PERMANENTLY);
    assert_eq!(
        stale.headers()[header::LOCATION],
        format!("/openapi/v3/api/v1?hash={etag}").as_str()
    );

    let mut conditional = json_accept.clone();
    conditional.insert(
        header::IF_NONE_MATCH,
        HeaderValue::from_str(&format!("\"{etag}\"")).unwrap(),
    );
    assert_eq!(
        get("/openapi/v3/api/v1", conditional).await.status(),
        StatusCode::NOT_MODIFIED
    );
    assert_eq!(
        get("/openapi/v3/apis/scheduling.k8s.io/v1", json_accept)
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn only_json_is_served() {
    let protobuf = headers(&[(
        header::ACCEPT,
        "application/com.github.proto-openapi.spec.v3@v1.0+protobuf",
    )]);
    assert_eq!(
        get("/openapi/v3/api/v1", protobuf).await.status(),
        StatusCode::NOT_ACCEPTABLE
    );
    let either = headers(&[(
        header::ACCEPT,
        "application/com.github.proto-openapi.spec.v3@v1.0+protobuf, application/json;q=0.9",
    )]);
    assert_eq!(
        get("/openapi/v3/api/v1", either).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        get("/openapi/v3/apis/apps/v1", HeaderMap::new())
            .await
            .status(),
        StatusCode::OK
    );
    let index = super::index(HeaderMap::new()).await;
    assert_eq!(index.status(), StatusCode::OK);
    assert!(index.headers().contains_key(header::ETAG));
}
