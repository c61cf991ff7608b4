//! Moving a cluster from SQLite onto etcd (issue 13): a control plane started with `--store etcd` on a data
//! dir holding a SQLite store imports every object into an empty etcd prefix — uid and creationTimestamp
//! kept, resourceVersions now etcd revisions — renames herd.db so it is not imported again, and the cluster
//! works on; an etcd prefix holding objects is never written over.

mod common;

use common::Plane;
use herd_control::{ControlPlane, StoreBackend};
use reqwest::Method;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const CONFIGMAPS: &str = "/api/v1/namespaces/moved/configmaps";
const DEPLOYMENTS: &str = "/apis/apps/v1/namespaces/moved/deployments";

impl Plane {
    async fn post(&self, path: &str, body: Value) -> Value {
        let (code, body) = self
            .request(
                Method::POST,
                path,
                &[],
                Some(("application/json", body.to_string())),
            )
            .await;
        assert_eq!(code, 201, "{body}");
        body
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        self.request(Method::GET, path, &[], None).await
    }
}

/// The data dir's files whose names start with `prefix`.
fn files(dir: &std::path::Path, prefix: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(prefix))
        .collect();
    names.sort();
    names
}

fn deployment() -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "registry.example/web:1"}]},
            },
        },
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_cluster_moves_onto_etcd_with_its_objects_and_works_on() {
    let sqlite = Plane::start_with(|cfg| cfg.store = StoreBackend::Sqlite).await;
    sqlite
        .post("/api/v1/namespaces", json!({"metadata": {"name": "moved"}}))
        .await;
    let config = sqlite
        .post(
            CONFIGMAPS,
            json!({"metadata": {"name": "settings"}, "data": {"k": "v"}}),
        )
        .await;
    let web = sqlite.post(DEPLOYMENTS, deployment()).await;
    let etcd = common::etcd_store();
    let moved = sqlite.restart_with(|cfg| cfg.store = etcd.clone()).await;
    // herd.db was renamed, with its side files.
    assert!(
        files(moved.data_dir(), "herd.db")
            .iter()
            .all(|n| n.starts_with("herd.db.imported-"))
    );
    assert!(!files(moved.data_dir(), "herd.db.imported-").is_empty());
    // The objects, as they were.
    let (code, got) = moved.get(&format!("{CONFIGMAPS}/settings")).await;
    assert_eq!(code, 200, "{got}");
    for field in ["uid", "creationTimestamp"] {
        assert_eq!(got["metadata"][field], config["metadata"][field], "{field}");
    }
    assert_eq!(got["data"]["k"], "v");
    let (_, got_web) = moved.get(&format!("{DEPLOYMENTS}/web")).await;
    assert_eq!(got_web["metadata"]["uid"], web["metadata"]["uid"]);
    // The cluster works on: writes, and the controllers (the Deployment gets its ReplicaSet).
    moved
        .post(
            CONFIGMAPS,
            json!({"metadata": {"name": "after"}, "data": {"k": "w"}}),
        )
        .await;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let (_, sets) = moved
            .get("/apis/apps/v1/namespaces/moved/replicasets")
            .await;
        let owned = sets["items"].as_array().is_some_and(|items| {
            items
                .iter()
                .any(|rs| rs["metadata"]["ownerReferences"][0]["uid"] == web["metadata"]["uid"])
        });
        if owned {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no ReplicaSet: {sets}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    // A restart on etcd imports nothing again and finds everything.
    let again = moved.restart().await;
    assert_eq!(
        files(again.data_dir(), "herd.db.imported-").len(),
        files(again.data_dir(), "herd.db").len()
    );
    let (code, after) = again.get(&format!("{CONFIGMAPS}/after")).await;
    assert_eq!((code, after["data"]["k"].clone()), (200, json!("w")));
    again.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_etcd_holding_objects_is_never_written_over_by_an_import() {
    let etcd = common::etcd_store();
    // A cluster on etcd already.
    let on_etcd = Plane::start_with(|cfg| cfg.store = etcd.clone()).await;
    on_etcd.stop().await;
    // Another cluster's SQLite data dir, started on the same etcd prefix.
    let sqlite = Plane::start_with(|cfg| cfg.store = StoreBackend::Sqlite).await;
    let (dir, mut cfg) = sqlite.stop_keeping(|cfg| cfg.store = etcd.clone()).await;
    cfg.listen = "127.0.0.1:0".parse().unwrap();
    let err = match ControlPlane::start(cfg, CancellationToken::new()).await {
        Ok(_) => panic!("started over etcd's objects"),
        Err(e) => e.to_string(),
    };
    let StoreBackend::Etcd(etcd) = etcd else {
        unreachable!()
    };
    assert!(
        err.contains("herd.db") && err.contains(&etcd.prefix) && err.contains(&etcd.servers[0]),
        "{err}"
    );
    assert!(!err.contains('\n'), "{err}");
    // Nothing moved.
    assert_eq!(files(dir.path(), "herd.db.imported-"), Vec::<String>::new());
    assert!(dir.path().join("herd.db").exists());
}
