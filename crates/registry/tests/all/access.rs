//! Who may push and pull: HTTPS only, reads open, writes for the admin's certificate or a push token.

use std::time::Duration;

use herd_oci_fetch::{FetchError, PullPolicy, TlsOptions};
use reqwest::StatusCode;

use crate::support::{EmbeddedRegistry, sha256, wasm_module};

/// Every file the registry stored (blobs, repositories, uploads).
fn stored_files(root: &std::path::Path) -> Vec<std::path::PathBuf> {
    fn walk(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, out);
            } else {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    walk(root, &mut out);
    out
}

#[tokio::test]
async fn a_push_without_credentials_is_a_401_challenge_and_stores_nothing() {
    let registry = EmbeddedRegistry::start().await;
    let wasm = wasm_module(b"anonymous");
    let image = format!("{}/team/app:v1", registry.addr);

    // oci-fetch trusting the CA but presenting nothing.
    let err = herd_oci_fetch::push_with(&wasm, &image, &[], None, &registry.reader_tls())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, FetchError::Unauthorized { status, .. } if *status == "401 Unauthorized"),
        "{err:?}"
    );

    // The distribution spec's answer, spoken directly.
    let anonymous = registry.client(None);
    let response = anonymous
        .post(format!(
            "{}/v2/team/app/blobs/uploads/?digest={}",
            registry.url(),
            sha256(&wasm)
        ))
        .body(wasm.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        response.headers()["www-authenticate"],
        format!(
            "Bearer realm=\"https://{}/token\",service=\"herd-registry\",scope=\"repository:team/app:pull,push\"",
            registry.addr
        )
        .as_str()
    );
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["errors"][0]["code"], "UNAUTHORIZED", "{body}");
    let response = anonymous
        .put(format!("{}/v2/team/app/manifests/v1", registry.url()))
        .header("content-type", "application/vnd.oci.image.manifest.v1+json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);

    assert_eq!(
        stored_files(&registry.root),
        Vec::<std::path::PathBuf>::new()
    );
}

#[tokio::test]
async fn the_admin_pushes_and_anyone_with_the_ca_pulls() {
    let registry = EmbeddedRegistry::start().await;
    let wasm = wasm_module(b"admin");
    let image = format!("{}/team/app:v1", registry.addr);
    let digest = registry.push(&wasm, &image).await.expect("admin push");

    let cache = tempfile::tempdir().unwrap();
    let pulled = registry
        .fetcher(cache.path())
        .pull(&image, PullPolicy::Always)
        .await
        .expect("anonymous pull over TLS");
    assert!(pulled.image_id.ends_with(&digest));
    assert!(*pulled.wasm == *wasm);

    // Reads are open to a client without a certificate.
    let response = registry
        .client(None)
        .get(format!("{}/v2/team/app/manifests/v1", registry.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["docker-content-digest"], digest.as_str());
}

#[tokio::test]
async fn a_certificate_outside_system_masters_may_pull_but_not_push() {
    let registry = EmbeddedRegistry::start().await;
    let node = registry
        .ca
        .issue_client(
            &herd_pki::node_user("n1"),
            &[herd_pki::NODES_GROUP],
            Duration::from_secs(600),
        )
        .unwrap();
    let wasm = wasm_module(b"node");
    let response = registry
        .client(Some(&node))
        .post(format!(
            "{}/v2/app/blobs/uploads/?digest={}",
            registry.url(),
            sha256(&wasm)
        ))
        .body(wasm.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["errors"][0]["code"], "DENIED", "{body}");

    // Its token carries no push either.
    let node_tls = TlsOptions {
        identity: Some(herd_oci_fetch::ClientIdentity {
            cert_pem: node.cert_pem.clone(),
            key_pem: node.key_pem.clone(),
        }),
        ..registry.reader_tls()
    };
    let err = herd_oci_fetch::push_with(
        &wasm,
        &format!("{}/app:v1", registry.addr),
        &[],
        None,
        &node_tls,
    )
    .await
    .unwrap_err();
    assert!(err.is_unauthorized(), "{err:?}");
    assert!(!crate::support::blob_path(&registry.root, &sha256(&wasm)).exists());
}

#[tokio::test]
async fn tokens_carry_the_access_granted_and_unknown_tokens_are_refused() {
    let registry = EmbeddedRegistry::start().await;
    let token_of = |response: serde_json::Value| response["token"].as_str().unwrap().to_string();
    let wasm = wasm_module(b"tokens");
    let upload = format!(
        "{}/v2/app/blobs/uploads/?digest={}",
        registry.url(),
        sha256(&wasm)
    );

    // Anonymous callers get a token, for pulls only.
    let anonymous = registry.client(None);
    let token = token_of(
        anonymous
            .get(format!(
                "{}/token?service=herd-registry&scope=repository:app:pull,push",
                registry.url()
            ))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap(),
    );
    let response = anonymous
        .post(&upload)
        .bearer_auth(&token)
        .body(wasm.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(
        response.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .ends_with("error=\"insufficient_scope\"")
    );

    // The admin's certificate gets push for what it asked, and the token works without it.
    let granted = token_of(
        registry
            .http()
            .get(format!(
                "{}/token?service=herd-registry&scope=repository:app:pull,push",
                registry.url()
            ))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap(),
    );
    let response = anonymous
        .post(&upload)
        .bearer_auth(&granted)
        .body(wasm.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let other = anonymous
        .post(format!("{}/v2/other/blobs/uploads/", registry.url()))
        .bearer_auth(&granted)
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), StatusCode::UNAUTHORIZED);

    // A token this registry never issued is a 401, reads included.
    let response = anonymous
        .get(format!("{}/v2/app/tags/list", registry.url()))
        .bearer_auth("not-a-token")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);

    // Basic credentials cannot be checked without an API server: refused.
    let response = anonymous
        .get(format!(
            "{}/token?service=herd-registry&scope=repository:app:push",
            registry.url()
        ))
        .basic_auth("someone", Some("a-token"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_registry_speaks_only_https_with_the_cluster_ca() {
    let registry = EmbeddedRegistry::start().await;
    // Plain HTTP gets no registry answer.
    let plain = reqwest::Client::builder().no_proxy().build().unwrap();
    let result = plain
        .get(format!("http://{}/v2/", registry.addr))
        .send()
        .await;
    assert!(
        result.is_err(),
        "plain HTTP answered: {:?}",
        result.map(|r| r.status())
    );
    // A client that does not trust the cluster CA refuses the certificate.
    let cache = tempfile::tempdir().unwrap();
    let fetcher = herd_oci_fetch::Fetcher::new(cache.path().to_path_buf(), vec![]);
    let err = fetcher
        .pull(&format!("{}/app:v1", registry.addr), PullPolicy::Always)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, FetchError::Registry { message, .. } if message.to_lowercase().contains("certificate")),
        "{err:?}"
    );
}
