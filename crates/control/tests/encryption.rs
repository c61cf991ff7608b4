//! Secrets encrypted at rest, as kube-apiserver's `--encryption-provider-config`: through the API a Secret
//! reads back whole (get, list, watch, after a restart), while the SQLite files never hold its value; keys
//! rotate; an identity-first configuration reads what was encrypted; a value no provider reads is a 500 for
//! that object only; a bad configuration stops the start with one line naming the file.

mod common;

use std::path::{Path, PathBuf};

use base64::Engine as _;
use common::Plane;
use reqwest::Method;
use serde_json::{Value, json};

/// 32 bytes, base64.
const KEY1: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
const KEY2: &str = "ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA=";
/// 16 bytes, base64 (AES-128).
const KEY3: &str = "c2l4dGVlbi1ieXRlLWtleQ==";

const SECRETS: &str = "/api/v1/namespaces/default/secrets";
const CONFIGMAPS: &str = "/api/v1/namespaces/default/configmaps";

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// A configuration file (in a directory of its own) whose `secrets` rule has `providers` (YAML lines).
struct Config {
    dir: tempfile::TempDir,
}

impl Config {
    fn new(providers: &str) -> Self {
        let config = Self {
            dir: tempfile::tempdir().unwrap(),
        };
        config.set(providers);
        config
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("encryption.yaml")
    }

    /// Rewrites the file: the next (re)start reads it.
    fn set(&self, providers: &str) {
        std::fs::write(
            self.path(),
            format!(
                "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n  - resources:\n      - secrets\n    providers:\n{providers}"
            ),
        )
        .unwrap();
    }
}

fn aescbc(keys: &[(&str, &str)]) -> String {
    let mut out = "      - aescbc:\n          keys:\n".to_string();
    for (name, secret) in keys {
        out += &format!("            - name: {name}\n              secret: {secret}\n");
    }
    out
}

fn secretbox(name: &str, secret: &str) -> String {
    format!(
        "      - secretbox:\n          keys:\n            - name: {name}\n              secret: {secret}\n"
    )
}

const IDENTITY: &str = "      - identity: {}\n";

/// A plane on SQLite whatever `HERD_TEST_ETCD` says: these tests read the bytes of its files (the etcd
/// store's sealed values are checked in the crate's storage tests, `etcd::conformance`).
async fn start(config: &Config) -> Plane {
    let path = config.path();
    Plane::start_with(move |cfg| {
        cfg.store = herd_control::StoreBackend::Sqlite;
        cfg.encryption_provider_config = Some(path);
    })
    .await
}

/// Every byte of the data dir's SQLite files (the database, its WAL and shared memory).
fn raw_store(dir: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if name.starts_with("herd.db") {
            out.extend(std::fs::read(&path).unwrap());
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// The secret's stored body in `objects` and in every row of the change log, as bytes.
async fn stored_rows(dir: &Path, name: &str) -> (Vec<u8>, Vec<Vec<u8>>) {
    use sqlx::Connection as _;
    let url = format!("sqlite://{}?mode=ro", dir.join("herd.db").display());
    let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
    let object: Vec<u8> = sqlx::query_scalar(
        "SELECT body FROM objects WHERE resource = 'secrets' AND namespace = 'default' AND name = ?",
    )
    .bind(name)
    .fetch_one(&mut conn)
    .await
    .unwrap();
    let changes: Vec<Vec<u8>> = sqlx::query_scalar(
        "SELECT body FROM changes WHERE resource = 'secrets' AND namespace = 'default' AND name = ? ORDER BY rev",
    )
    .bind(name)
    .fetch_all(&mut conn)
    .await
    .unwrap();
    conn.close().await.unwrap();
    (object, changes)
}

impl Plane {
    async fn create_secret(&self, name: &str, value: &str) -> Value {
        let (code, body) = self
            .request(
                Method::POST,
                SECRETS,
                &[],
                Some((
                    "application/json",
                    json!({"metadata": {"name": name}, "data": {"password": b64(value)}})
                        .to_string(),
                )),
            )
            .await;
        assert_eq!(code, 201, "{body}");
        body
    }

    /// The secret's decoded password, through the API.
    async fn password(&self, name: &str) -> String {
        let (code, body) = self
            .request(Method::GET, &format!("{SECRETS}/{name}"), &[], None)
            .await;
        assert_eq!(code, 200, "{body}");
        let data = body["data"]["password"].as_str().unwrap();
        String::from_utf8(
            base64::engine::general_purpose::STANDARD
                .decode(data)
                .unwrap(),
        )
        .unwrap()
    }

    /// Rewrites the secret (a label change), as kube's storage migration rewrites every object.
    async fn rewrite(&self, name: &str, label: &str) {
        let (code, body) = self
            .request(
                Method::PATCH,
                &format!("{SECRETS}/{name}"),
                &[],
                Some((
                    "application/merge-patch+json",
                    json!({"metadata": {"labels": {"rewritten": label}}}).to_string(),
                )),
            )
            .await;
        assert_eq!(code, 200, "{body}");
    }
}

#[tokio::test]
async fn an_aescbc_secret_reads_back_whole_and_never_reaches_the_disk_plain() {
    let value = "hunter2-aescbc-plaintext-4711";
    let config = Config::new(&aescbc(&[("key1", KEY1)]));
    let p = start(&config).await;
    let created = p.create_secret("db", value).await;
    let rv0 = created["metadata"]["resourceVersion"].as_str().unwrap();
    // A ConfigMap is not named by the configuration: stored as it is.
    let (code, _) = p
        .request(
            Method::POST,
            CONFIGMAPS,
            &[],
            Some((
                "application/json",
                json!({"metadata": {"name": "plain"}, "data": {"k": "configmap-stays-plain-0815"}})
                    .to_string(),
            )),
        )
        .await;
    assert_eq!(code, 201);
    // A second write of the secret goes through the read-modify-write path (and the change log).
    p.rewrite("db", "once").await;

    // Get, list and a watch replayed from the change log all see the plain object.
    assert_eq!(p.password("db").await, value);
    let (code, list) = p.request(Method::GET, SECRETS, &[], None).await;
    assert_eq!(code, 200, "{list}");
    assert_eq!(list["items"][0]["data"]["password"], b64(value));
    let watch = p
        .http
        .get(format!(
            "{}{SECRETS}?watch=1&resourceVersion={rv0}&timeoutSeconds=1",
            p.base
        ))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(watch.contains("\"MODIFIED\""), "{watch}");
    assert!(watch.contains(&b64(value)), "{watch}");

    // The files hold kube's format, and neither the value nor its base64.
    let raw = raw_store(p.data_dir());
    assert!(contains(&raw, "k8s:enc:aescbc:v1:key1:"));
    assert!(!contains(&raw, value));
    assert!(!contains(&raw, &b64(value)));
    assert!(contains(&raw, "configmap-stays-plain-0815"));
    let (object, changes) = stored_rows(p.data_dir(), "db").await;
    assert!(object.starts_with(b"k8s:enc:aescbc:v1:key1:"));
    assert_eq!(changes.len(), 2);
    for change in &changes {
        assert!(change.starts_with(b"k8s:enc:aescbc:v1:key1:"));
    }

    // After a restart the store reads it back; still nothing plain on disk.
    let p = p.restart().await;
    assert_eq!(p.password("db").await, value);
    let raw = raw_store(p.data_dir());
    assert!(!contains(&raw, value) && !contains(&raw, &b64(value)));
    p.stop().await;
}

#[tokio::test]
async fn a_secretbox_secret_reads_back_after_a_restart_and_stays_sealed() {
    let value = "correct-horse-secretbox-battery";
    let config = Config::new(&secretbox("box1", KEY2));
    let p = start(&config).await;
    p.create_secret("box", value).await;
    assert_eq!(p.password("box").await, value);
    let raw = raw_store(p.data_dir());
    assert!(contains(&raw, "k8s:enc:secretbox:v1:box1:"));
    assert!(!contains(&raw, value) && !contains(&raw, &b64(value)));
    let p = p.restart().await;
    assert_eq!(p.password("box").await, value);
    let (object, _) = stored_rows(p.data_dir(), "box").await;
    assert!(object.starts_with(b"k8s:enc:secretbox:v1:box1:"));
    p.stop().await;
}

#[tokio::test]
async fn keys_rotate_as_in_kube() {
    let config = Config::new(&aescbc(&[("old", KEY1)]));
    let p = start(&config).await;
    p.create_secret("rotated", "rotate-me-1").await;
    p.create_secret("untouched", "rotate-me-2").await;
    p.create_secret("replaced", "rotate-me-3").await;

    // A new first key: the old one still reads; a rewrite seals with the new key.
    config.set(&aescbc(&[("new", KEY3), ("old", KEY1)]));
    let p = p.restart().await;
    assert_eq!(p.password("rotated").await, "rotate-me-1");
    assert_eq!(p.password("untouched").await, "rotate-me-2");
    p.rewrite("rotated", "new-key").await;
    let (object, _) = stored_rows(p.data_dir(), "rotated").await;
    assert!(object.starts_with(b"k8s:enc:aescbc:v1:new:"));
    let (object, _) = stored_rows(p.data_dir(), "untouched").await;
    assert!(object.starts_with(b"k8s:enc:aescbc:v1:old:"));
    // kube's procedure: `kubectl replace` of the unchanged object writes it again, under the new key (an
    // unchanged update of an object under the first key writes nothing).
    let (_, current) = p
        .request(Method::GET, &format!("{SECRETS}/replaced"), &[], None)
        .await;
    let path = format!("{SECRETS}/replaced");
    let replace = |object: Value| {
        p.request(
            Method::PUT,
            &path,
            &[],
            Some(("application/json", object.to_string())),
        )
    };
    let (code, replaced) = replace(current).await;
    assert_eq!(code, 200, "{replaced}");
    let (object, changes) = stored_rows(p.data_dir(), "replaced").await;
    assert!(object.starts_with(b"k8s:enc:aescbc:v1:new:"));
    assert_eq!(changes.len(), 2);
    let (code, again) = replace(replaced).await;
    assert_eq!(code, 200, "{again}");
    assert_eq!(stored_rows(p.data_dir(), "replaced").await.1.len(), 2);

    // The old key removed: the rewritten secret reads; the one still under the old key is kube's 500 for
    // that object alone, never plain and never a crash; other secrets and resources are served.
    config.set(&aescbc(&[("new", KEY3)]));
    let p = p.restart().await;
    assert_eq!(p.password("rotated").await, "rotate-me-1");
    assert_eq!(p.password("replaced").await, "rotate-me-3");
    let (code, body) = p
        .request(Method::GET, &format!("{SECRETS}/untouched"), &[], None)
        .await;
    assert_eq!(code, 500, "{body}");
    assert_eq!(body["reason"], "InternalError", "{body}");
    assert!(!body.to_string().contains("rotate-me-2"));
    let (code, _) = p.request(Method::GET, SECRETS, &[], None).await;
    assert_eq!(code, 500, "a list of the secrets cannot be served whole");
    let (code, _) = p.request(Method::GET, CONFIGMAPS, &[], None).await;
    assert_eq!(code, 200);
    p.stop().await;
}

#[tokio::test]
async fn an_identity_first_configuration_reads_encrypted_values_and_writes_plain() {
    let config = Config::new(&aescbc(&[("key1", KEY1)]));
    let p = start(&config).await;
    p.create_secret("migrate", "decrypt-all-path").await;

    // kube's decrypt-all migration: identity first, the old provider after it to read.
    config.set(&format!("{IDENTITY}{}", aescbc(&[("key1", KEY1)])));
    let p = p.restart().await;
    assert_eq!(p.password("migrate").await, "decrypt-all-path");
    p.rewrite("migrate", "plain-again").await;
    let (object, _) = stored_rows(p.data_dir(), "migrate").await;
    assert!(
        object.starts_with(b"{"),
        "{}",
        String::from_utf8_lossy(&object)
    );
    p.create_secret("fresh", "written-plain").await;
    assert!(contains(&raw_store(p.data_dir()), &b64("written-plain")));
    p.stop().await;
}

#[tokio::test]
async fn a_resource_no_rule_names_reads_no_encrypted_value() {
    let config = Config::new(&aescbc(&[("key1", KEY1)]));
    let p = start(&config).await;
    p.create_secret("sealed", "only-with-the-key").await;
    // Secrets fall out of the configuration (as without the flag: identity), ConfigMaps are encrypted now.
    std::fs::write(
        config.path(),
        format!(
            "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n  - resources: [configmaps]\n    providers:\n{}",
            aescbc(&[("key1", KEY1)])
        ),
    )
    .unwrap();
    let p = p.restart().await;
    // An encrypted value is an error for that object, never handed on as it is.
    let (code, body) = p
        .request(Method::GET, &format!("{SECRETS}/sealed"), &[], None)
        .await;
    assert_eq!(code, 500, "{body}");
    assert_eq!(body["reason"], "InternalError", "{body}");
    // Other secrets are written and read plain.
    p.create_secret("open", "plain-now").await;
    assert_eq!(p.password("open").await, "plain-now");
    let (object, _) = stored_rows(p.data_dir(), "open").await;
    assert!(object.starts_with(b"{"));
    p.stop().await;
}

#[tokio::test]
async fn a_bad_configuration_stops_the_start_with_one_line_naming_the_file() {
    let cases: [(&str, String, &str); 5] = [
        ("missing.yaml", String::new(), "reading"),
        ("bad.yaml", "resources: [".to_string(), "not an EncryptionConfiguration"),
        (
            "short.yaml",
            format!(
                "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n  - resources: [secrets]\n    providers:\n{}",
                aescbc(&[("k", "MTIzNDU2Nzg=")])
            ),
            "resources[0].providers[0].aescbc.keys[0].secret: secret is not of the expected length, got 8",
        ),
        (
            "unknown.yaml",
            "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n  - resources: [secrets]\n    providers:\n      - rot13: {}\n".to_string(),
            "unknown provider \"rot13\"",
        ),
        (
            "box16.yaml",
            format!(
                "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n  - resources: [secrets]\n    providers:\n{}",
                secretbox("k", KEY3)
            ),
            "expected one of [32]",
        ),
    ];
    let files = tempfile::tempdir().unwrap();
    for (file, text, want) in cases {
        let path = files.path().join(file);
        if !text.is_empty() {
            std::fs::write(&path, text).unwrap();
        }
        let data = tempfile::tempdir().unwrap();
        let mut cfg = herd_control::ControlConfig::new(
            data.path().to_path_buf(),
            "127.0.0.1:0".parse().unwrap(),
        );
        cfg.encryption_provider_config = Some(path.clone());
        let shutdown = tokio_util::sync::CancellationToken::new();
        let err = match herd_control::ControlPlane::start(cfg, shutdown).await {
            Ok(_) => panic!("{file} was accepted"),
            Err(e) => e.to_string(),
        };
        assert!(
            err.starts_with(&format!("encryption provider config {}: ", path.display())),
            "{err}"
        );
        assert!(err.contains(want), "{err:?} should say {want:?}");
        assert!(!err.contains('\n'), "{err:?} is one line");
        // Nothing was opened: no store in the data dir.
        assert!(!data.path().join("herd.db").exists(), "{file}");
    }
}
