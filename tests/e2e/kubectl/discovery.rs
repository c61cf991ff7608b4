//! Discovery through kubectl: `api-resources` (short names, namespaced, verbs, categories), `api-versions`,
//! `version`, `explain`, `cluster-info`, `get --raw`. Runs against `herd control` alone.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_api_resources_version_explain() {
    let herd = &Herd::up(HerdOptions::control()).await;

    // api-resources: NAME SHORTNAMES APIVERSION NAMESPACED KIND, as kube-apiserver's discovery gives them.
    let table = kubectl(herd, &["api-resources"]).await.ok().table();
    assert_eq!(
        table.columns,
        ["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"]
    );
    let expected = [
        ("pods", "po", "v1", "true", "Pod"),
        ("services", "svc", "v1", "true", "Service"),
        ("configmaps", "cm", "v1", "true", "ConfigMap"),
        ("secrets", "", "v1", "true", "Secret"),
        ("endpoints", "ep", "v1", "true", "Endpoints"),
        ("events", "ev", "v1", "true", "Event"),
        ("namespaces", "ns", "v1", "false", "Namespace"),
        ("nodes", "no", "v1", "false", "Node"),
        ("deployments", "deploy", "apps/v1", "true", "Deployment"),
        ("replicasets", "rs", "apps/v1", "true", "ReplicaSet"),
        ("leases", "", "coordination.k8s.io/v1", "true", "Lease"),
    ];
    for (name, short, version, namespaced, kind) in expected {
        let row = table
            .rows
            .iter()
            .find(|r| r[0] == name && r[2] == version)
            .unwrap_or_else(|| panic!("api-resources has no {name} in {version}: {table:#?}"));
        assert_eq!(
            (row[1].as_str(), row[3].as_str(), row[4].as_str()),
            (short, namespaced, kind),
            "api-resources row for {name}"
        );
    }

    // -o wide adds VERBS and CATEGORIES.
    let wide = kubectl(herd, &["api-resources", "-o", "wide"])
        .await
        .ok()
        .table();
    assert_eq!(
        wide.columns,
        [
            "NAME",
            "SHORTNAMES",
            "APIVERSION",
            "NAMESPACED",
            "KIND",
            "VERBS",
            "CATEGORIES"
        ]
    );
    let pods = wide.row("pods");
    // The verbs clients rely on (kube-apiserver also lists deletecollection, which kubectl never uses).
    let verbs: Vec<&str> = pods.get("VERBS").split(',').collect();
    for verb in [
        "create", "delete", "get", "list", "patch", "update", "watch",
    ] {
        assert!(verbs.contains(&verb), "pods VERBS {verbs:?} lack {verb}");
    }
    assert_eq!(pods.get("CATEGORIES"), "all");
    assert_eq!(wide.row("deployments").get("CATEGORIES"), "all");

    // Filters.
    let cluster_scoped = kubectl(herd, &["api-resources", "--namespaced=false", "-o", "name"])
        .await
        .ok();
    let names = cluster_scoped.lines();
    assert!(
        names.contains(&"nodes") && names.contains(&"namespaces"),
        "{names:?}"
    );
    assert!(!names.contains(&"pods"), "{names:?}");
    let apps = kubectl(herd, &["api-resources", "--api-group=apps", "-o", "name"])
        .await
        .ok();
    let names = apps.lines();
    assert!(
        names.contains(&"deployments.apps") && names.contains(&"replicasets.apps"),
        "{names:?}"
    );
    let versions = kubectl(herd, &["api-versions"]).await.ok();
    for wanted in ["v1", "apps/v1", "coordination.k8s.io/v1"] {
        assert!(
            versions.lines().contains(&wanted),
            "api-versions lacks {wanted}: {}",
            versions.stdout
        );
    }

    // version: every field of /version, a 1.37 server, no skew warning.
    let version = kubectl(herd, &["version", "-o", "json"]).await.ok().json();
    let server = &version["serverVersion"];
    assert_eq!(server["major"], "1", "{server}");
    assert_eq!(server["minor"], "37", "{server}");
    assert!(s(server, "/gitVersion").starts_with("v1.37."), "{server}");
    for field in [
        "gitCommit",
        "gitTreeState",
        "buildDate",
        "goVersion",
        "compiler",
        "platform",
    ] {
        assert!(
            server[field].is_string(),
            "/version lacks {field}: {server}"
        );
    }
    assert!(s(server, "/platform").starts_with("linux/"), "{server}");
    let plain = kubectl(herd, &["version"]).await.ok();
    plain.stdout_has("Server Version: v1.37.");
    assert!(!plain.stderr.contains("WARNING"), "{}", plain.stderr);

    // explain may be minimal, but works from the OpenAPI documents.
    let out = kubectl(herd, &["explain", "pods"]).await.ok();
    out.stdout_has("KIND:")
        .stdout_has("Pod")
        .stdout_has("VERSION:")
        .stdout_has("v1");
    let out = kubectl(herd, &["explain", "deployments"]).await.ok();
    out.stdout_has("Deployment").stdout_has("apps");

    // cluster-info names the server; /healthz answers ok.
    kubectl(herd, &["cluster-info"])
        .await
        .ok()
        .stdout_has(&format!("is running at {}", herd.api));
    let health = kubectl(herd, &["get", "--raw", "/healthz"]).await.ok();
    assert_eq!(health.stdout, "ok");
}
