//! herd-oci-fetch push and pull against the embedded registry.

use herd_oci_fetch::{FetchError, PullPolicy, push};

use crate::support::{EmbeddedRegistry, blob_path, sha256, wasm_module};

#[tokio::test]
async fn push_then_pull_round_trips_bytes_digests_and_cache_file() {
    let registry = EmbeddedRegistry::start().await;
    // Larger than oci-client's 4 MiB chunk, so the upload takes several PATCHes.
    let wasm = wasm_module(&vec![7u8; 5 << 20]);
    let image = format!("{}/herd/tests/hello:v1", registry.addr);

    let manifest_digest = registry.push(&wasm, &image).await.expect("push");

    let cache = tempfile::tempdir().unwrap();
    let fetcher = registry.fetcher(cache.path());
    assert_eq!(fetcher.known_image_id(&image), None, "nothing pulled yet");
    let pulled = fetcher
        .pull(&image, PullPolicy::Always)
        .await
        .expect("pull");
    // Once pulled, the fetcher knows the image's ID without touching disk or registry.
    assert_eq!(
        fetcher.known_image_id(&image),
        Some(pulled.image_id.clone())
    );
    assert_eq!(pulled.image, image);
    assert!(
        *pulled.wasm == *wasm,
        "pulled bytes differ from pushed bytes"
    );
    assert_eq!(pulled.layer_digest, sha256(&wasm));
    assert_eq!(
        pulled.image_id,
        format!("{}/herd/tests/hello@{manifest_digest}", registry.addr)
    );
    assert_eq!(pulled.path, blob_path(cache.path(), &pulled.layer_digest));
    assert!(std::fs::read(&pulled.path).unwrap() == wasm);

    // The same artifact by digest.
    let by_digest = format!("{}/herd/tests/hello@{manifest_digest}", registry.addr);
    let again = fetcher
        .pull(&by_digest, PullPolicy::Always)
        .await
        .expect("pull by digest");
    assert_eq!(again.image_id, pulled.image_id);

    // The artifact has the CNCF Wasm OCI shape.
    let http = registry.http();
    let response = http
        .get(format!(
            "{}/v2/herd/tests/hello/manifests/v1",
            registry.url()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.headers()["content-type"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert_eq!(
        response.headers()["docker-content-digest"],
        manifest_digest.as_str()
    );
    let manifest: serde_json::Value = response.json().await.unwrap();
    assert_eq!(
        manifest["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert_eq!(
        manifest["config"]["mediaType"],
        "application/vnd.wasm.config.v0+json"
    );
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1);
    assert_eq!(layers[0]["mediaType"], "application/wasm");
    assert_eq!(layers[0]["size"], wasm.len());
    let config_digest = manifest["config"]["digest"].as_str().unwrap();
    let config: serde_json::Value = http
        .get(format!(
            "{}/v2/herd/tests/hello/blobs/{config_digest}",
            registry.url()
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(config["architecture"], "wasm");
    assert_eq!(config["os"], "wasip1");
    assert_eq!(config["layerDigests"][0], pulled.layer_digest.as_str());
    assert!(config["created"].is_string());
}

#[tokio::test]
async fn pushing_the_same_wasm_again_reuses_blobs() {
    let registry = EmbeddedRegistry::start().await;
    let wasm = wasm_module(b"again");
    registry
        .push(&wasm, &format!("{}/app:v1", registry.addr))
        .await
        .unwrap();
    registry
        .push(&wasm, &format!("{}/app:v2", registry.addr))
        .await
        .unwrap();
    let tags: serde_json::Value = registry
        .http()
        .get(format!("{}/v2/app/tags/list", registry.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        tags,
        serde_json::json!({"name": "app", "tags": ["v1", "v2"]})
    );
}

#[tokio::test]
async fn missing_tag_or_repository_is_a_registry_error_with_its_message() {
    let registry = EmbeddedRegistry::start().await;
    registry
        .push(&wasm_module(b"x"), &format!("{}/app:v1", registry.addr))
        .await
        .unwrap();
    let cache = tempfile::tempdir().unwrap();
    let fetcher = registry.fetcher(cache.path());

    let err = fetcher
        .pull(
            &format!("{}/app:v2", registry.addr),
            PullPolicy::IfNotPresent,
        )
        .await
        .unwrap_err();
    match &err {
        FetchError::Registry { image, message } => {
            assert_eq!(image, &format!("{}/app:v2", registry.addr));
            assert!(message.contains("manifest unknown"), "{message}");
        }
        other => panic!("expected a registry error, got {other:?}"),
    }

    let err = fetcher
        .pull(&format!("{}/nothing:v1", registry.addr), PullPolicy::Always)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, FetchError::Registry { message, .. } if message.contains("repository name not known")),
        "{err:?}"
    );
}

#[tokio::test]
async fn if_not_present_and_never_work_with_the_registry_stopped() {
    let mut registry = EmbeddedRegistry::start().await;
    let wasm = wasm_module(b"offline");
    let image = format!("{}/app:v1", registry.addr);
    registry.push(&wasm, &image).await.unwrap();
    let cache = tempfile::tempdir().unwrap();
    let fetcher = registry.fetcher(cache.path());

    let err = fetcher.pull(&image, PullPolicy::Never).await.unwrap_err();
    assert!(matches!(err, FetchError::NotPresent), "{err:?}");
    let first = fetcher
        .pull(&image, PullPolicy::IfNotPresent)
        .await
        .unwrap();

    registry.stop().await;

    let cached = fetcher
        .pull(&image, PullPolicy::IfNotPresent)
        .await
        .unwrap();
    assert_eq!(cached, first);
    let never = fetcher.pull(&image, PullPolicy::Never).await.unwrap();
    assert_eq!(never, first);
    // A fresh Fetcher on the same directory uses the same cache.
    let reopened = registry.fetcher(cache.path());
    assert_eq!(
        reopened.pull(&image, PullPolicy::Never).await.unwrap(),
        first
    );

    let err = fetcher.pull(&image, PullPolicy::Always).await.unwrap_err();
    assert!(matches!(err, FetchError::Registry { .. }), "{err:?}");
    let other = format!("{}/app:v2", registry.addr);
    let err = fetcher.pull(&other, PullPolicy::Never).await.unwrap_err();
    assert!(matches!(err, FetchError::NotPresent), "{err:?}");
}

#[tokio::test]
async fn a_corrupt_cached_blob_is_detected_and_replaced() {
    let registry = EmbeddedRegistry::start().await;
    let wasm = wasm_module(b"intact");
    let image = format!("{}/app:v1", registry.addr);
    registry.push(&wasm, &image).await.unwrap();
    let cache = tempfile::tempdir().unwrap();
    let fetcher = registry.fetcher(cache.path());
    let pulled = fetcher
        .pull(&image, PullPolicy::IfNotPresent)
        .await
        .unwrap();

    std::fs::write(&pulled.path, b"\0asm corrupted").unwrap();
    let err = fetcher.pull(&image, PullPolicy::Never).await.unwrap_err();
    match err {
        FetchError::DigestMismatch { expected, actual } => {
            assert_eq!(expected, pulled.layer_digest);
            assert_eq!(actual, sha256(b"\0asm corrupted"));
        }
        other => panic!("expected a digest mismatch, got {other:?}"),
    }
    assert!(!pulled.path.exists(), "the corrupt blob is removed");

    std::fs::write(&pulled.path, b"\0asm corrupted again").unwrap();
    let repaired = fetcher
        .pull(&image, PullPolicy::IfNotPresent)
        .await
        .unwrap();
    assert!(*repaired.wasm == *wasm);
    assert!(std::fs::read(&pulled.path).unwrap() == wasm);
}

#[tokio::test]
async fn a_corrupt_blob_in_the_registry_is_a_digest_mismatch_and_is_not_cached() {
    let registry = EmbeddedRegistry::start().await;
    let wasm = wasm_module(b"original");
    let image = format!("{}/app:v1", registry.addr);
    registry.push(&wasm, &image).await.unwrap();
    let layer_digest = sha256(&wasm);
    std::fs::write(
        blob_path(&registry.root, &layer_digest),
        wasm_module(b"tampered"),
    )
    .unwrap();

    let cache = tempfile::tempdir().unwrap();
    let fetcher = registry.fetcher(cache.path());
    let err = fetcher.pull(&image, PullPolicy::Always).await.unwrap_err();
    assert!(
        matches!(&err, FetchError::DigestMismatch { expected, .. } if *expected == layer_digest),
        "{err:?}"
    );
    assert!(!blob_path(cache.path(), &layer_digest).exists());
    let err = fetcher.pull(&image, PullPolicy::Never).await.unwrap_err();
    assert!(matches!(err, FetchError::NotPresent), "{err:?}");
}

#[tokio::test]
async fn only_wasm_artifacts_are_pulled_and_the_legacy_layer_type_is_accepted() {
    let registry = EmbeddedRegistry::start().await;
    let cache = tempfile::tempdir().unwrap();
    let fetcher = registry.fetcher(cache.path());
    let wasm = wasm_module(b"legacy");

    crate::protocol::push_raw(
        &registry,
        "legacy",
        "v1",
        "application/vnd.wasm.content.layer.v1+wasm",
        &wasm,
    )
    .await;
    let pulled = fetcher
        .pull(&format!("{}/legacy:v1", registry.addr), PullPolicy::Always)
        .await
        .unwrap();
    assert!(*pulled.wasm == *wasm);

    crate::protocol::push_raw(
        &registry,
        "container",
        "v1",
        "application/vnd.oci.image.layer.v1.tar+gzip",
        b"not wasm at all",
    )
    .await;
    let err = fetcher
        .pull(
            &format!("{}/container:v1", registry.addr),
            PullPolicy::Always,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, FetchError::NotWasm { .. }), "{err:?}");

    crate::protocol::push_raw(&registry, "fake", "v1", "application/wasm", b"ELF...").await;
    let err = fetcher
        .pull(&format!("{}/fake:v1", registry.addr), PullPolicy::Always)
        .await
        .unwrap_err();
    assert!(matches!(err, FetchError::NotWasm { .. }), "{err:?}");
    assert!(!blob_path(cache.path(), &sha256(b"ELF...")).exists());

    let err = push(b"ELF...", &format!("{}/fake:v2", registry.addr), &[])
        .await
        .unwrap_err();
    assert!(matches!(err, FetchError::NotWasm { .. }), "{err:?}");
    let err = fetcher
        .pull("Bad Reference", PullPolicy::Always)
        .await
        .unwrap_err();
    assert!(
        matches!(err, FetchError::InvalidReference { .. }),
        "{err:?}"
    );
}
