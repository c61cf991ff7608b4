//! The four RBAC kinds as stored API objects on a real control plane (as the admin): discovery, CRUD, kube's
//! validation and defaults through the API, the immutable `roleRef`, server-side apply, watch, the Table
//! printers and the OpenAPI schemas.

use reqwest::Method;
use serde_json::{Value, json};

mod common;
use common::Plane;

const RBAC: &str = "/apis/rbac.authorization.k8s.io/v1";
const GROUP: &str = "rbac.authorization.k8s.io";
const TABLE: &str = "application/json;as=Table;v=v1;g=meta.k8s.io";

impl Plane {
    async fn send(&self, method: Method, path: &str, ct: &str, body: Value) -> (u16, Value) {
        self.request(method, path, &[], Some((ct, body.to_string())))
            .await
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        self.request(Method::GET, path, &[], None).await
    }

    async fn post(&self, path: &str, v: Value) -> (u16, Value) {
        self.send(Method::POST, path, "application/json", v).await
    }
}

fn ns_path(plural: &str) -> String {
    format!("{RBAC}/namespaces/default/{plural}")
}

fn pod_reader() -> Value {
    json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": {"name": "pod-reader"},
        "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}]})
}

fn binding(kind: &str, name: &str, role_ref: Value, subjects: Value) -> Value {
    json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": kind, "metadata": {"name": name},
        "roleRef": role_ref, "subjects": subjects})
}

#[tokio::test]
async fn discovery_lists_the_four_kinds_with_kubes_scopes() {
    let p = Plane::start().await;
    let (code, list) = p.get(RBAC).await;
    assert_eq!(code, 200, "{list}");
    let scopes: Vec<(String, bool, String)> = list["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap().to_string(),
                r["namespaced"].as_bool().unwrap(),
                r["kind"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let expected = [
        ("clusterrolebindings", false, "ClusterRoleBinding"),
        ("clusterroles", false, "ClusterRole"),
        ("rolebindings", true, "RoleBinding"),
        ("roles", true, "Role"),
    ];
    for (name, namespaced, kind) in expected {
        assert!(
            scopes.contains(&(name.into(), namespaced, kind.into())),
            "{name}: {scopes:?}"
        );
    }
    let (code, groups) = p.get("/apis").await;
    assert_eq!(code, 200);
    assert!(
        groups["groups"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g["name"] == GROUP),
        "{groups}"
    );
    p.stop().await;
}

#[tokio::test]
async fn roles_and_bindings_are_created_defaulted_listed_and_deleted() {
    let p = Plane::start().await;
    let (code, role) = p.post(&ns_path("roles"), pod_reader()).await;
    assert_eq!(code, 201, "{role}");
    assert_eq!(role["metadata"]["namespace"], "default");

    // kube's defaults: the roleRef's group and the User/Group subjects' group.
    let (code, rb) = p
        .post(
            &ns_path("rolebindings"),
            binding(
                "RoleBinding",
                "read-pods",
                json!({"kind": "Role", "name": "pod-reader"}),
                json!([{"kind": "User", "name": "jane"},
                    {"kind": "ServiceAccount", "name": "x", "namespace": "default"}]),
            ),
        )
        .await;
    assert_eq!(code, 201, "{rb}");
    assert_eq!(rb["roleRef"]["apiGroup"], GROUP);
    assert_eq!(rb["subjects"][0]["apiGroup"], GROUP);
    assert!(rb["subjects"][1].get("apiGroup").is_none(), "{rb}");

    // Cluster-scoped kinds, with a name only RBAC allows (kube's path-segment names).
    let (code, cr) = p
        .post(
            &format!("{RBAC}/clusterroles"),
            json!({"metadata": {"name": "system:test:Reader"},
                "rules": [{"nonResourceURLs": ["/healthz"], "verbs": ["get"]}]}),
        )
        .await;
    assert_eq!(code, 201, "{cr}");
    assert!(cr["metadata"].get("namespace").is_none(), "{cr}");
    let (code, crb) = p
        .post(
            &format!("{RBAC}/clusterrolebindings"),
            binding(
                "ClusterRoleBinding",
                "test-readers",
                json!({"apiGroup": GROUP, "kind": "ClusterRole", "name": "system:test:Reader"}),
                json!([{"kind": "Group", "name": "readers"}]),
            ),
        )
        .await;
    assert_eq!(code, 201, "{crb}");

    let (_, list) = p.get(&format!("{RBAC}/rolebindings")).await;
    assert_eq!(list["kind"], "RoleBindingList");
    assert!(
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|b| b["metadata"]["name"] == "read-pods"),
        "{list}"
    );
    let (code, got) = p
        .get(&format!("{RBAC}/clusterroles/system:test:Reader"))
        .await;
    assert_eq!(code, 200, "{got}");
    assert_eq!(got["rules"][0]["nonResourceURLs"], json!(["/healthz"]));

    let (code, _) = p
        .request(
            Method::DELETE,
            &format!("{}/pod-reader", ns_path("roles")),
            &[],
            None,
        )
        .await;
    assert_eq!(code, 200);
    let (code, _) = p.get(&format!("{}/pod-reader", ns_path("roles"))).await;
    assert_eq!(code, 404);
    p.stop().await;
}

#[tokio::test]
async fn invalid_objects_are_refused_with_kubes_status() {
    let p = Plane::start().await;
    let (code, status) = p
        .post(
            &format!("{RBAC}/clusterrolebindings"),
            binding(
                "ClusterRoleBinding",
                "bad",
                json!({"kind": "Role", "name": "r"}),
                json!([{"kind": "ServiceAccount", "name": "x"}]),
            ),
        )
        .await;
    assert_eq!(code, 422, "{status}");
    assert_eq!(status["reason"], "Invalid");
    assert_eq!(
        status["details"],
        json!({"name": "bad", "group": GROUP, "kind": "ClusterRoleBinding", "causes": [
            {"reason": "FieldValueNotSupported",
             "message": "Unsupported value: \"Role\": supported values: \"ClusterRole\"",
             "field": "roleRef.kind"},
            {"reason": "FieldValueRequired", "message": "Required value",
             "field": "subjects[0].namespace"}]})
    );

    let (code, status) = p
        .post(
            &ns_path("roles"),
            json!({"metadata": {"name": "r"},
                "rules": [{"verbs": ["get"], "nonResourceURLs": ["/healthz"]}]}),
        )
        .await;
    assert_eq!(code, 422, "{status}");
    assert_eq!(
        status["details"]["causes"][0]["message"],
        "Invalid value: []string{\"/healthz\"}: namespaced rules cannot apply to non-resource URLs"
    );
    let (code, status) = p
        .post(&ns_path("roles"), json!({"metadata": {"name": "a/b"}}))
        .await;
    assert_eq!(code, 422, "{status}");
    assert_eq!(
        status["details"]["causes"][0]["message"],
        "Invalid value: \"a/b\": may not contain '/'"
    );
    // Nothing was stored.
    let (_, list) = p.get(&ns_path("roles")).await;
    assert_eq!(list["items"], json!([]));
    p.stop().await;
}

#[tokio::test]
async fn a_bindings_role_ref_is_immutable_its_subjects_are_not() {
    let p = Plane::start().await;
    let (code, _) = p
        .post(
            &ns_path("rolebindings"),
            binding(
                "RoleBinding",
                "b",
                json!({"kind": "ClusterRole", "name": "view"}),
                json!([{"kind": "User", "name": "jane"}]),
            ),
        )
        .await;
    assert_eq!(code, 201);
    let path = format!("{}/b", ns_path("rolebindings"));
    let (code, patched) = p
        .send(
            Method::PATCH,
            &path,
            "application/merge-patch+json",
            json!({"subjects": [{"kind": "User", "name": "joe"}]}),
        )
        .await;
    assert_eq!(code, 200, "{patched}");
    assert_eq!(patched["subjects"][0]["name"], "joe");
    assert_eq!(patched["subjects"][0]["apiGroup"], GROUP);

    let (code, status) = p
        .send(
            Method::PATCH,
            &path,
            "application/strategic-merge-patch+json",
            json!({"roleRef": {"name": "edit"}}),
        )
        .await;
    assert_eq!(code, 422, "{status}");
    assert_eq!(
        status["details"]["causes"],
        json!([{"reason": "FieldValueInvalid",
            "message": "Invalid value: rbac.RoleRef{APIGroup:\"rbac.authorization.k8s.io\", Kind:\"ClusterRole\", Name:\"edit\"}: cannot change roleRef",
            "field": "roleRef"}])
    );
    let (_, stored) = p.get(&path).await;
    assert_eq!(stored["roleRef"]["name"], "view");
    p.stop().await;
}

#[tokio::test]
async fn server_side_apply_and_watch_serve_the_rbac_kinds() {
    let p = Plane::start().await;
    let path = format!("{RBAC}/clusterroles/monitoring?fieldManager=test");
    let manifest = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": "monitoring"},
        "aggregationRule": {"clusterRoleSelectors": [
            {"matchLabels": {"rbac.example.com/aggregate-to-monitoring": "true"}}]},
        "rules": []});
    let (code, applied) = p
        .send(
            Method::PATCH,
            &path,
            "application/apply-patch+yaml",
            manifest.clone(),
        )
        .await;
    assert!(code == 200 || code == 201, "{code} {applied}");
    assert_eq!(applied["aggregationRule"], manifest["aggregationRule"]);
    assert_eq!(applied["metadata"]["managedFields"][0]["manager"], "test");
    let version = applied["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();

    let mut relabelled = manifest.clone();
    relabelled["metadata"]["labels"] = json!({"team": "obs"});
    let (code, applied) = p
        .send(
            Method::PATCH,
            &path,
            "application/apply-patch+yaml",
            relabelled,
        )
        .await;
    assert_eq!(code, 200, "{applied}");
    assert_eq!(applied["metadata"]["labels"]["team"], "obs");

    // A watch from the first version sees the re-apply.
    let resp = p
        .http
        .get(format!(
            "{}{RBAC}/clusterroles?watch=true&resourceVersion={version}&timeoutSeconds=1",
            p.base
        ))
        .send()
        .await
        .unwrap();
    let text = resp.text().await.unwrap();
    // (The aggregation controller's writes to other roles may come first.)
    let event: Value = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|e| e["object"]["metadata"]["name"] == "monitoring")
        .unwrap_or_else(|| panic!("no event of monitoring in {text}"));
    assert_eq!(event["type"], "MODIFIED", "{text}");
    p.stop().await;
}

#[tokio::test]
async fn tables_print_kubes_rbac_columns() {
    let p = Plane::start().await;
    p.post(&ns_path("roles"), pod_reader()).await;
    p.post(
        &ns_path("rolebindings"),
        binding(
            "RoleBinding",
            "read-pods",
            json!({"kind": "Role", "name": "pod-reader"}),
            json!([{"kind": "User", "name": "jane"}, {"kind": "Group", "name": "devs"},
                {"kind": "ServiceAccount", "name": "x", "namespace": "default"}]),
        ),
    )
    .await;
    let (code, table) = p
        .request(
            Method::GET,
            &ns_path("rolebindings"),
            &[("accept", TABLE)],
            None,
        )
        .await;
    assert_eq!(code, 200, "{table}");
    let columns: Vec<(&str, i64)> = table["columnDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["name"].as_str().unwrap(), c["priority"].as_i64().unwrap()))
        .collect();
    assert_eq!(
        columns,
        [
            ("Name", 0),
            ("Role", 0),
            ("Age", 0),
            ("Users", 1),
            ("Groups", 1),
            ("ServiceAccounts", 1)
        ]
    );
    let cells = &table["rows"][0]["cells"];
    assert_eq!(cells[0], "read-pods");
    assert_eq!(cells[1], "Role/pod-reader");
    assert_eq!(
        (&cells[3], &cells[4], &cells[5]),
        (&json!("jane"), &json!("devs"), &json!("default/x"))
    );

    let (_, table) = p
        .request(Method::GET, &ns_path("roles"), &[("accept", TABLE)], None)
        .await;
    let columns: Vec<(&str, &str)> = table["columnDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["name"].as_str().unwrap(), c["type"].as_str().unwrap()))
        .collect();
    assert_eq!(columns, [("Name", "string"), ("Created At", "date")]);
    let created = table["rows"][0]["cells"][1].as_str().unwrap();
    assert!(
        created.len() == 20 && created.ends_with('Z') && created.as_bytes()[10] == b'T',
        "{created}"
    );
    p.stop().await;
}

#[tokio::test]
async fn openapi_publishes_the_rbac_schemas() {
    let p = Plane::start().await;
    let (code, doc) = p.get("/openapi/v3/apis/rbac.authorization.k8s.io/v1").await;
    assert_eq!(code, 200, "{doc}");
    let schemas = &doc["components"]["schemas"];
    for kind in ["Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding"] {
        let name = format!("io.k8s.api.rbac.v1.{kind}");
        assert!(
            schemas[&name]["properties"]["metadata"].is_object(),
            "{name}"
        );
    }
    assert!(
        schemas["io.k8s.api.rbac.v1.RoleBinding"]["properties"]["roleRef"].is_object(),
        "{}",
        schemas["io.k8s.api.rbac.v1.RoleBinding"]
    );
    p.stop().await;
}
