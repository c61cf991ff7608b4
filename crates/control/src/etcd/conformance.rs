//! The storage interface's behaviour, tested on both backends through `Arc<dyn Storage>`: each test runs
//! once on a SQLite file and once on a real etcd (a prefix of its own; see [`super::testing`]). Revisions
//! are compared relative to each other, since tests share one etcd. What only one backend has (SQLite's
//! synchronous setting and its fan-out internals, etcd's key layout and compaction) is tested beside that
//! backend.

use std::sync::Arc;

use futures::StreamExt;
use serde_json::{Value, json};

use super::{EtcdConfig, EtcdStore, testing};
use crate::encryption::Encryption;
use crate::storage::{
    BatchItem, Change, ChangeStream, CreateRefused, EventType, ListOptions, Mutation, Page,
    Preconditions, Storage, StoreError, UpdateRefused,
};
use crate::store::{Store, StoreSync};

#[derive(Clone, Copy, Debug)]
enum Backend {
    Sqlite,
    Etcd,
}

struct Opened {
    store: Arc<dyn Storage>,
    /// The etcd store itself, for tests that read etcd's keys.
    etcd: Option<EtcdStore>,
    _dir: tempfile::TempDir,
}

async fn open(backend: Backend) -> Opened {
    open_encrypted(backend, Encryption::default()).await
}

async fn open_encrypted(backend: Backend, encryption: Encryption) -> Opened {
    let dir = tempfile::tempdir().unwrap();
    let encryption = Arc::new(encryption);
    match backend {
        Backend::Sqlite => Opened {
            store: Arc::new(
                Store::open_encrypted(&dir.path().join("herd.db"), StoreSync::Full, encryption)
                    .await
                    .unwrap(),
            ),
            etcd: None,
            _dir: dir,
        },
        Backend::Etcd => {
            let config = EtcdConfig {
                servers: vec![testing::endpoint()],
                prefix: testing::prefix(),
                ..EtcdConfig::default()
            };
            let etcd = EtcdStore::connect(&config, encryption, None).await.unwrap();
            Opened {
                store: Arc::new(etcd.clone()),
                etcd: Some(etcd),
                _dir: dir,
            }
        }
    }
}

/// One test on both backends: `mod <test> { sqlite, etcd }`.
macro_rules! both {
    ($($test:ident),* $(,)?) => {$(
        mod $test {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$test(super::Backend::Sqlite).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn etcd() {
                super::$test(super::Backend::Etcd).await;
            }
        }
    )*};
}

both!(
    creates_write_once_and_refuse_a_taken_name_or_a_missing_namespace,
    watches_replay_then_follow_live,
    a_watch_from_an_old_revision_joins_the_live_feed_without_a_gap,
    a_batch_writes_each_item_over_the_earlier_ones,
    lists_read_pages_at_an_older_revision,
    concurrent_updates_of_one_object_lose_nothing,
    preconditions_refuse_an_update,
    encrypted_resources_read_back_plain_on_every_path,
);

async fn put(store: &dyn Storage, name: &str, v: i64) -> Arc<Change> {
    let obj = json!({"metadata": {"name": name, "namespace": "default"}, "v": v});
    let mut decide = move |_: Option<Value>| Mutation::Put(obj.clone());
    store
        .update(
            "pods",
            "default",
            name,
            &Preconditions::default(),
            &mut decide,
        )
        .await
        .unwrap()
        .unwrap()
        .unwrap()
}

async fn delete(store: &dyn Storage, name: &str) -> Arc<Change> {
    let mut decide = |_: Option<Value>| Mutation::Delete;
    store
        .update(
            "pods",
            "default",
            name,
            &Preconditions::default(),
            &mut decide,
        )
        .await
        .unwrap()
        .unwrap()
        .unwrap()
}

async fn next(events: &mut ChangeStream) -> Arc<Change> {
    tokio::time::timeout(std::time::Duration::from_secs(20), events.next())
        .await
        .expect("a change within 20 s")
        .expect("the watch goes on")
        .expect("no error")
}

fn rv(object: &Value) -> i64 {
    object["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

async fn creates_write_once_and_refuse_a_taken_name_or_a_missing_namespace(backend: Backend) {
    let opened = open(backend).await;
    let store = &*opened.store;
    let mut events = store.watch(None, store.revision()).await.unwrap();
    let namespace = store
        .create(
            "namespaces",
            "",
            "team",
            json!({"metadata": {"name": "team"}}),
            None,
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(namespace.kind, EventType::Added);
    assert_eq!(rv(&namespace.object), namespace.rev);
    let pod = json!({"metadata": {"name": "a", "namespace": "team"}, "v": 1});
    let created = store
        .create("pods", "team", "a", pod, Some("team"))
        .await
        .unwrap()
        .unwrap();
    assert!(created.rev > namespace.rev);
    assert_eq!(rv(&created.object), created.rev);
    assert_eq!(store.revision(), created.rev);
    for (namespace, name, why) in [
        ("team", "a", CreateRefused::Exists),
        ("nowhere", "b", CreateRefused::NoNamespace),
    ] {
        let object = json!({"metadata": {"name": name}, "v": 2});
        let refused = store
            .create("pods", namespace, name, object, Some(namespace))
            .await
            .unwrap();
        assert_eq!(refused.unwrap_err(), why);
    }
    assert_eq!(store.revision(), created.rev, "refusals write nothing");
    for want in [&namespace, &created] {
        let seen = next(&mut events).await;
        assert_eq!((seen.rev, seen.kind), (want.rev, EventType::Added));
        assert_eq!(rv(&seen.object), want.rev);
    }
    let a = store.get("pods", "team", "a").await.unwrap().unwrap();
    assert_eq!((a["v"].clone(), rv(&a)), (json!(1), created.rev));
    assert!(store.get("pods", "nowhere", "b").await.unwrap().is_none());
    store.close().await;
}

async fn watches_replay_then_follow_live(backend: Backend) {
    let opened = open(backend).await;
    let store = &*opened.store;
    let a = put(store, "a", 1).await;
    put(store, "b", 2).await;
    let mut events = store.watch(Some("pods"), a.rev).await.unwrap();
    put(store, "c", 3).await;
    // Another resource's write is not this watch's.
    store
        .create(
            "services",
            "default",
            "s",
            json!({"metadata": {"name": "s"}}),
            None,
        )
        .await
        .unwrap()
        .unwrap();
    let deleted = delete(store, "a").await;
    let mut seen = Vec::new();
    let mut last = a.rev;
    for _ in 0..3 {
        let c = next(&mut events).await;
        assert!(c.rev > last, "in revision order");
        last = c.rev;
        seen.push((c.name.clone(), c.kind, c.object["v"].clone()));
        if c.kind == EventType::Deleted {
            // The last state, at the deletion's revision.
            assert_eq!((c.rev, rv(&c.object)), (deleted.rev, deleted.rev));
        }
    }
    assert_eq!(
        seen,
        [
            ("b".into(), EventType::Added, json!(2)),
            ("c".into(), EventType::Added, json!(3)),
            ("a".into(), EventType::Deleted, json!(1)),
        ]
    );
    assert!(store.get("pods", "default", "a").await.unwrap().is_none());
    store.close().await;
}

async fn a_watch_from_an_old_revision_joins_the_live_feed_without_a_gap(backend: Backend) {
    let opened = open(backend).await;
    let store = &*opened.store;
    let start = put(store, "start", 0).await.rev;
    // A watcher already live, so that the store's feed is past `start` when the next one joins.
    let mut live = store.watch(None, start).await.unwrap();
    let mut written = Vec::new();
    for i in 0..20 {
        written.push(put(store, &format!("p{i}"), i).await.rev);
    }
    for &rev in &written {
        assert_eq!(next(&mut live).await.rev, rev);
    }
    let mut late = store.watch(None, start).await.unwrap();
    for i in 20..30 {
        written.push(put(store, &format!("p{i}"), i).await.rev);
    }
    // History, then live: every change once, in order.
    for &rev in &written {
        assert_eq!(next(&mut late).await.rev, rev);
    }
    store.close().await;
}

async fn a_batch_writes_each_item_over_the_earlier_ones(backend: Backend) {
    let opened = open(backend).await;
    let store = &*opened.store;
    let old = put(store, "old", 1).await;
    let item = |name: &str, decide: Box<crate::storage::Decide<'static>>| BatchItem {
        resource: "pods".into(),
        namespace: "default".into(),
        name: name.into(),
        decide,
    };
    let changes = store
        .update_batch(vec![
            item(
                "old",
                Box::new(|cur| {
                    let mut obj = cur.unwrap();
                    obj["v"] = json!(2);
                    Mutation::Put(obj)
                }),
            ),
            // Sees the first item's write.
            item(
                "old",
                Box::new(|cur| {
                    assert_eq!(cur.unwrap()["v"], 2);
                    Mutation::Keep
                }),
            ),
            item(
                "x",
                Box::new(|_| Mutation::Put(json!({"metadata": {"name": "x"}}))),
            ),
            item("x", Box::new(|_| Mutation::Delete)),
            item(
                "y",
                Box::new(|cur| {
                    assert!(cur.is_none());
                    Mutation::Put(json!({"metadata": {"name": "y"}}))
                }),
            ),
            item("zzz", Box::new(|_| Mutation::Delete)),
        ])
        .await
        .unwrap();
    use EventType::*;
    let kinds: Vec<_> = changes.iter().map(|c| c.as_ref().map(|c| c.kind)).collect();
    assert_eq!(
        kinds,
        [
            Some(Modified),
            None,
            Some(Added),
            Some(Deleted),
            Some(Added),
            None
        ]
    );
    for change in changes.iter().flatten() {
        assert!(change.rev > old.rev);
        assert_eq!(rv(&change.object), change.rev);
    }
    assert_eq!(
        store.revision(),
        changes.iter().flatten().map(|c| c.rev).max().unwrap()
    );
    let page = store.list("pods", ListOptions::default()).await.unwrap();
    let names: Vec<String> = page
        .items
        .iter()
        .map(|b| serde_json::from_str::<Value>(b).unwrap()["metadata"]["name"].to_string())
        .collect();
    assert_eq!(names, ["\"old\"", "\"y\""]);
    let replay: Vec<_> = store
        .watch(Some("pods"), old.rev)
        .await
        .unwrap()
        .take(4)
        .map(|c| {
            let c = c.unwrap();
            (c.name.clone(), c.kind)
        })
        .collect()
        .await;
    for want in [
        ("old".to_string(), Modified),
        ("x".into(), Added),
        ("x".into(), Deleted),
        ("y".into(), Added),
    ] {
        assert!(replay.contains(&want), "{replay:?} lacks {want:?}");
    }
    store.close().await;
}

async fn lists_read_pages_at_an_older_revision(backend: Backend) {
    let opened = open(backend).await;
    let store = &*opened.store;
    let names = |page: &Page| -> Vec<String> {
        page.items
            .iter()
            .map(|b| {
                let v: Value = serde_json::from_str(b).unwrap();
                format!("{}={}", v["metadata"]["name"].as_str().unwrap(), v["v"])
            })
            .collect()
    };
    let at = |revision: i64, limit: Option<usize>, after: Option<&str>| ListOptions {
        namespace: Some("default".into()),
        revision: Some(revision),
        limit,
        after: after.map(|a| ("default".to_string(), a.to_string())),
    };
    put(store, "a", 1).await;
    put(store, "b", 1).await;
    let two = put(store, "c", 1).await.rev;
    put(store, "b", 2).await;
    delete(store, "c").await;
    put(store, "d", 1).await;
    let page = store.list("pods", at(two, Some(2), None)).await.unwrap();
    assert_eq!(
        (names(&page), page.revision, page.more),
        (vec!["a=1".into(), "b=1".into()], two, true)
    );
    let page = store
        .list("pods", at(two, Some(2), Some("b")))
        .await
        .unwrap();
    assert_eq!((names(&page), page.more), (vec!["c=1".into()], false));
    let now = store.list("pods", ListOptions::default()).await.unwrap();
    assert_eq!(names(&now), ["a=1", "b=2", "d=1"]);
    assert!(now.revision >= store.revision());
    // Each item carries its own resourceVersion.
    let b: Value = serde_json::from_str(&now.items[1]).unwrap();
    assert_eq!(b, store.get("pods", "default", "b").await.unwrap().unwrap());
    store.close().await;
}

async fn concurrent_updates_of_one_object_lose_nothing(backend: Backend) {
    let opened = open(backend).await;
    let writers: Vec<_> = (0..40)
        .map(|_| {
            let store = opened.store.clone();
            tokio::spawn(async move {
                let mut decide = |cur: Option<Value>| {
                    let n = cur.map_or(0, |c| c["n"].as_i64().unwrap());
                    Mutation::Put(json!({"metadata": {"name": "c"}, "n": n + 1}))
                };
                store
                    .update("counters", "", "c", &Preconditions::default(), &mut decide)
                    .await
                    .unwrap()
                    .unwrap()
                    .unwrap()
                    .rev
            })
        })
        .collect();
    let mut revs = Vec::new();
    for writer in writers {
        revs.push(writer.await.unwrap());
    }
    revs.sort_unstable();
    revs.dedup();
    assert_eq!(revs.len(), 40, "each write its own revision");
    let counter = opened
        .store
        .get("counters", "", "c")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(counter["n"], 40);
    opened.store.close().await;
}

async fn preconditions_refuse_an_update(backend: Backend) {
    let opened = open(backend).await;
    let store = &*opened.store;
    let obj = json!({"metadata": {"name": "a", "uid": "u1"}, "v": 1});
    let created = store
        .create("pods", "default", "a", obj, None)
        .await
        .unwrap()
        .unwrap();
    let mut decide = |cur: Option<Value>| {
        let mut obj = cur.unwrap();
        obj["v"] = json!(2);
        Mutation::Put(obj)
    };
    for wrong in [
        Preconditions {
            uid: Some("u2".into()),
            ..Preconditions::default()
        },
        Preconditions {
            resource_version: Some((created.rev + 1000).to_string()),
            ..Preconditions::default()
        },
    ] {
        let refused = store
            .update("pods", "default", "a", &wrong, &mut decide)
            .await
            .unwrap();
        assert_eq!(refused.unwrap_err(), UpdateRefused::Preconditions);
    }
    let right = Preconditions {
        uid: Some("u1".into()),
        resource_version: Some(created.rev.to_string()),
    };
    let updated = store
        .update("pods", "default", "a", &right, &mut decide)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(updated.object["v"], 2);
    assert_eq!(updated.previous.as_ref().unwrap()["v"], 1);
    store.close().await;
}

fn secretbox() -> Encryption {
    Encryption::parse(
        "apiVersion: apiserver.config.k8s.io/v1
kind: EncryptionConfiguration
resources:
  - resources: [secrets]
    providers:
      - secretbox:
          keys: [{name: k, secret: MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=}]
",
    )
    .unwrap()
}

async fn encrypted_resources_read_back_plain_on_every_path(backend: Backend) {
    let opened = open_encrypted(backend, secretbox()).await;
    let store = &*opened.store;
    let first = store.revision();
    let secret = |name: &str, v: &str| json!({"metadata": {"name": name}, "data": {"v": v}});
    store
        .create(
            "secrets",
            "default",
            "a",
            secret("a", "sealed-create"),
            None,
        )
        .await
        .unwrap()
        .unwrap();
    let mut update = |cur: Option<Value>| {
        assert_eq!(cur.unwrap()["data"]["v"], "sealed-create");
        Mutation::Put(secret("a", "sealed-update"))
    };
    store
        .update(
            "secrets",
            "default",
            "a",
            &Preconditions::default(),
            &mut update,
        )
        .await
        .unwrap()
        .unwrap();
    let before_batch = store.revision();
    let item = |name: &'static str, v: &'static str| BatchItem {
        resource: "secrets".into(),
        namespace: "default".into(),
        name: name.into(),
        decide: Box::new(move |_| {
            Mutation::Put(json!({"metadata": {"name": name}, "data": {"v": v}}))
        }),
    };
    store
        .update_batch(vec![
            item("a", "sealed-batch-a"),
            item("b", "sealed-batch-b"),
        ])
        .await
        .unwrap();
    put(store, "pod", 1).await;
    if let Some(etcd) = &opened.etcd {
        // In etcd: sealed values under the secrets' keys, JSON under the pod's.
        let mut kv = etcd.kv();
        let all = kv
            .get(
                etcd.root(),
                Some(etcd_client::GetOptions::new().with_prefix()),
            )
            .await
            .unwrap();
        assert_eq!(all.kvs().len(), 3);
        for kv in all.kvs() {
            let key = kv.key_str().unwrap();
            let text = String::from_utf8_lossy(kv.value());
            if key.contains("/secrets/") {
                assert!(kv.value().starts_with(b"k8s:enc:secretbox:v1:k:"), "{text}");
                assert!(!text.contains("sealed-"), "{text}");
            } else {
                assert!(kv.value().starts_with(b"{\"metadata\":{"), "{text}");
            }
        }
    }
    let a = store.get("secrets", "default", "a").await.unwrap().unwrap();
    assert_eq!(a["data"]["v"], "sealed-batch-a");
    let now = store.list("secrets", ListOptions::default()).await.unwrap();
    assert_eq!(now.items.len(), 2);
    let old = store
        .list(
            "secrets",
            ListOptions {
                revision: Some(before_batch),
                ..ListOptions::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(old.items.len(), 1);
    assert!(old.items[0].contains("sealed-update"), "{:?}", old.items);
    let mut replay: Vec<_> = store
        .watch(Some("secrets"), first)
        .await
        .unwrap()
        .take(4)
        .map(|c| c.unwrap().object["data"]["v"].as_str().unwrap().to_string())
        .collect()
        .await;
    // The batch's two writes may commit in either order.
    replay[2..].sort();
    assert_eq!(
        replay,
        [
            "sealed-create",
            "sealed-update",
            "sealed-batch-a",
            "sealed-batch-b"
        ]
    );
    store.close().await;
}

/// etcd's keys as kube-apiserver lays them out, and values without their resourceVersion.
#[tokio::test]
async fn etcd_keys_are_prefix_resource_namespace_name() {
    let opened = open(Backend::Etcd).await;
    let etcd = opened.etcd.as_ref().unwrap();
    let store = &*opened.store;
    store
        .create(
            "namespaces",
            "",
            "team",
            json!({"metadata": {"name": "team"}}),
            None,
        )
        .await
        .unwrap()
        .unwrap();
    let pod = json!({"metadata": {"name": "a", "namespace": "team", "resourceVersion": "1"}});
    store
        .create("pods", "team", "a", pod, Some("team"))
        .await
        .unwrap()
        .unwrap();
    let all = etcd
        .kv()
        .get(
            etcd.root(),
            Some(etcd_client::GetOptions::new().with_prefix()),
        )
        .await
        .unwrap();
    let keys: Vec<&str> = all.kvs().iter().map(|kv| kv.key_str().unwrap()).collect();
    let root = etcd.root();
    assert_eq!(
        keys,
        [
            format!("{root}namespaces/team"),
            format!("{root}pods/team/a")
        ]
    );
    for kv in all.kvs() {
        let stored: Value = serde_json::from_slice(kv.value()).unwrap();
        assert!(
            stored["metadata"].get("resourceVersion").is_none(),
            "{stored}"
        );
    }
    store.close().await;
}

/// kube's compactor on a dedicated etcd (compaction is etcd-wide): the first turn only records the
/// revision, the next compacts to it; a second replica's turn in the same interval does nothing; lists and
/// watches from before the compaction are Expired (410), later ones work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_compaction_expires_older_revisions() {
    let etcd = testing::Dedicated::start();
    let config = EtcdConfig {
        servers: vec![etcd.url.clone()],
        prefix: testing::prefix(),
        ..EtcdConfig::default()
    };
    let store = EtcdStore::connect(&config, Arc::new(Encryption::default()), None)
        .await
        .unwrap();
    let old = put(&store, "a", 1).await.rev;
    let one = store.inner.endpoints.clone();
    let two = store.inner.endpoints.clone();
    // Replica one's first turn: nothing compacted, the current revision remembered.
    let (version, seen) = super::compact::step(&one, 0, 0).await.unwrap();
    assert_eq!(version, 1);
    // Replica two's first turn in the same interval finds the key moved on: no compaction.
    let (version_two, _) = super::compact::step(&two, 0, 0).await.unwrap();
    assert_eq!(version_two, 1);
    let kept = put(&store, "a", 2).await.rev;
    put(&store, "b", 1).await;
    // Replica one's next turn compacts to what it saw one interval before.
    super::compact::step(&one, version, seen).await.unwrap();
    let at = |revision| ListOptions {
        revision: Some(revision),
        ..ListOptions::default()
    };
    assert!(matches!(
        store.list("pods", at(old)).await,
        Err(StoreError::Expired { .. })
    ));
    assert!(matches!(
        store.watch(Some("pods"), old).await.err(),
        Some(StoreError::Expired { .. })
    ));
    let page = store.list("pods", at(kept)).await.unwrap();
    assert_eq!(page.items.len(), 1);
    let mut events = store.watch(Some("pods"), kept).await.unwrap();
    assert_eq!(next(&mut events).await.name, "b");
    store.close().await;
}

/// An etcd that does not answer is one error naming it, not a hang.
#[tokio::test]
async fn etcd_unreachable_is_an_error_naming_the_servers() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let config = EtcdConfig {
        servers: vec![url.clone()],
        ..EtcdConfig::default()
    };
    let err = EtcdStore::connect(&config, Arc::new(Encryption::default()), None)
        .await
        .err()
        .expect("no etcd there");
    let text = err.to_string();
    assert!(text.contains(&url) && !text.contains('\n'), "{text}");
}

/// Of several members, requests go to one that answers: a member that is down is failed over.
#[tokio::test]
async fn etcd_requests_fail_over_from_a_member_that_is_down() {
    let down = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = EtcdConfig {
        servers: vec![format!("http://127.0.0.1:{down}"), testing::endpoint()],
        prefix: testing::prefix(),
        ..EtcdConfig::default()
    };
    let store = EtcdStore::connect(&config, Arc::new(Encryption::default()), None)
        .await
        .unwrap();
    let mut events = store.watch(Some("pods"), store.revision()).await.unwrap();
    let written = put(&store, "a", 1).await;
    assert_eq!(next(&mut events).await.rev, written.rev);
    assert_eq!(
        store.get("pods", "default", "a").await.unwrap().unwrap()["v"],
        1
    );
    store.close().await;
}

/// An etcd serving TLS and requiring client certificates (`--client-cert-auth`): reached with
/// `--etcd-cafile/--etcd-certfile/--etcd-keyfile`, refused without the client certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_over_tls_with_a_client_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let ca = herd_pki::ClusterCa::generate().unwrap();
    let sans = herd_pki::serving_sans(&["127.0.0.1".parse().unwrap()], None, &[]);
    let server = ca
        .issue_serving("etcd", &sans, herd_pki::SERVING_VALIDITY)
        .unwrap();
    let client = ca
        .issue_client("kube-apiserver-etcd-client", &[], herd_pki::CLIENT_VALIDITY)
        .unwrap();
    let file = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let tls = testing::Tls {
        ca: file("ca.crt", ca.cert_pem()),
        cert: file("server.crt", &server.cert_pem),
        key: file("server.key", &server.key_pem),
        client_cert: file("client.crt", &client.cert_pem),
        client_key: file("client.key", &client.key_pem),
    };
    let etcd = testing::Dedicated::start_tls(&tls);
    let config = EtcdConfig {
        servers: vec![etcd.url.clone()],
        ca_file: Some(tls.ca.clone()),
        cert_file: Some(tls.client_cert.clone()),
        key_file: Some(tls.client_key.clone()),
        prefix: testing::prefix(),
    };
    let store = EtcdStore::connect(&config, Arc::new(Encryption::default()), None)
        .await
        .unwrap();
    let written = put(&store, "a", 1).await;
    assert_eq!(
        rv(&store.get("pods", "default", "a").await.unwrap().unwrap()),
        written.rev
    );
    store.close().await;
    let anonymous = EtcdConfig {
        cert_file: None,
        key_file: None,
        ..config
    };
    let refused = EtcdStore::connect(&anonymous, Arc::new(Encryption::default()), None).await;
    assert!(refused.is_err(), "connected without a client certificate");
}

/// The shared watch's fan-out cuts off a watcher that falls too far behind (as SQLite's): what it had
/// queued still arrives, in order, then Expired; a watcher that keeps up goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_a_watcher_that_falls_too_far_behind_is_expired() {
    let opened = open(Backend::Etcd).await;
    let store = &*opened.store;
    let mut slow = store.watch(None, store.revision()).await.unwrap();
    let items = (0..super::watch::WATCH_BACKLOG + 1_000)
        .map(|i| BatchItem {
            resource: "pods".into(),
            namespace: "default".into(),
            name: format!("p{i}"),
            decide: Box::new(move |_| {
                Mutation::Put(json!({"metadata": {"name": format!("p{i}")}}))
            }),
        })
        .collect();
    store.update_batch(items).await.unwrap();
    let mut last = 0;
    loop {
        match slow.next().await.unwrap() {
            Ok(change) => {
                assert!(change.rev > last);
                last = change.rev;
            }
            Err(StoreError::Expired { requested, .. }) => {
                assert_eq!(requested, last);
                break;
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert!(last < store.revision());
    let mut live = store.watch(None, store.revision()).await.unwrap();
    let change = put(store, "after", 1).await;
    assert_eq!(next(&mut live).await.rev, change.rev);
    store.close().await;
}

/// Three members, one killed while the store writes and watches: the writes go on through another member
/// and the shared watch resumes there, every change once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_writes_and_watches_go_on_when_a_member_dies() {
    let mut members = testing::Members::start(3);
    let config = EtcdConfig {
        servers: members.urls.clone(),
        prefix: testing::prefix(),
        ..EtcdConfig::default()
    };
    let store = EtcdStore::connect(&config, Arc::new(Encryption::default()), None)
        .await
        .unwrap();
    let mut events = store.watch(Some("pods"), store.revision()).await.unwrap();
    let mut written = Vec::new();
    for i in 0..10 {
        written.push(put(&store, &format!("before-{i}"), i).await.rev);
    }
    // The member requests go to (the first).
    members.kill(0);
    for i in 0..10 {
        written.push(put(&store, &format!("after-{i}"), i).await.rev);
    }
    for &rev in &written {
        assert_eq!(next(&mut events).await.rev, rev);
    }
    let page = store.list("pods", ListOptions::default()).await.unwrap();
    assert_eq!(page.items.len(), 20);
    store.close().await;
}
