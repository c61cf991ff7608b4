//! The registry's HTTP protocol, spoken directly with reqwest.

use reqwest::StatusCode;

use crate::support::{EmbeddedRegistry, sha256, wasm_module};

/// Uploads `layer` (monolithically) and an empty config, and tags a manifest naming them.
pub async fn push_raw(
    registry: &EmbeddedRegistry,
    name: &str,
    tag: &str,
    layer_media_type: &str,
    layer: &[u8],
) {
    let base = registry.url();
    let http = registry.http();
    let config = b"{}".to_vec();
    for blob in [layer.to_vec(), config.clone()] {
        let response = http
            .post(format!(
                "{base}/v2/{name}/blobs/uploads/?digest={}",
                sha256(&blob)
            ))
            .body(blob)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
    }
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256(&config), "size": config.len()},
        "layers": [{"mediaType": layer_media_type, "digest": sha256(layer), "size": layer.len()}],
    });
    let response = http
        .put(format!("{base}/v2/{name}/manifests/{tag}"))
        .header("content-type", "application/vnd.oci.image.manifest.v1+json")
        .body(manifest.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
}

async fn error_code(response: reqwest::Response) -> String {
    let body: serde_json::Value = response.json().await.expect("an OCI error body");
    body["errors"][0]["code"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test]
async fn base_endpoint_answers_empty_json_with_the_api_version() {
    let registry = EmbeddedRegistry::start().await;
    let response = registry
        .http()
        .get(format!("{}/v2/", registry.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["docker-distribution-api-version"],
        "registry/2.0"
    );
    assert_eq!(response.text().await.unwrap(), "{}");
    let response = registry
        .http()
        .get(format!("{}/v2/_catalog", registry.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(response).await, "UNSUPPORTED");
}

#[tokio::test]
async fn chunked_upload_session() {
    let registry = EmbeddedRegistry::start().await;
    let base = registry.url();
    let http = registry.http();
    let content = b"hello, chunked world".to_vec();
    let digest = sha256(&content);

    let response = http
        .post(format!("{base}/v2/a/b/c/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let uuid = response.headers()["docker-upload-uuid"]
        .to_str()
        .unwrap()
        .to_string();
    let location = response.headers()["location"].to_str().unwrap().to_string();
    assert_eq!(location, format!("/v2/a/b/c/blobs/uploads/{uuid}"));
    assert_eq!(response.headers()["range"], "0-0");

    let response = http
        .patch(format!("{base}{location}"))
        .header("content-range", "0-4")
        .body(content[..5].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    assert_eq!(response.headers()["range"], "0-4");

    // A chunk that does not continue the upload is refused.
    let response = http
        .patch(format!("{base}{location}"))
        .header("content-range", "0-4")
        .body(content[..5].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::RANGE_NOT_SATISFIABLE);

    let response = http
        .patch(format!("{base}{location}"))
        .body(content[5..10].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["range"], "0-9");
    let response = http.get(format!("{base}{location}")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(response.headers()["range"], "0-9");

    // The final PUT carries the rest.
    let response = http
        .put(format!("{base}{location}?digest={digest}"))
        .body(content[10..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(
        response.headers()["location"],
        format!("/v2/a/b/c/blobs/{digest}").as_str()
    );
    assert_eq!(response.headers()["docker-content-digest"], digest.as_str());

    let response = http
        .head(format!("{base}/v2/a/b/c/blobs/{digest}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["content-length"],
        content.len().to_string().as_str()
    );
    assert_eq!(response.headers()["docker-content-digest"], digest.as_str());
    let body = http
        .get(format!("{base}/v2/a/b/c/blobs/{digest}"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(body.as_ref(), content.as_slice());

    // The session is gone.
    let response = http.get(format!("{base}{location}")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(response).await, "BLOB_UPLOAD_UNKNOWN");
}

#[tokio::test]
async fn wrong_or_malformed_digests_are_digest_invalid() {
    let registry = EmbeddedRegistry::start().await;
    let base = registry.url();
    let http = registry.http();

    let response = http
        .post(format!(
            "{base}/v2/app/blobs/uploads/?digest={}",
            sha256(b"other")
        ))
        .body("content")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_code(response).await, "DIGEST_INVALID");
    let response = http
        .head(format!("{base}/v2/app/blobs/{}", sha256(b"other")))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::NOT_FOUND,
        "nothing was stored"
    );

    let response = http
        .get(format!("{base}/v2/app/blobs/sha256:..%2F..%2Fetc"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_code(response).await, "DIGEST_INVALID");

    let manifest = b"{\"schemaVersion\":2,\"layers\":[]}";
    let response = http
        .put(format!("{base}/v2/app/manifests/{}", sha256(b"not this")))
        .body(manifest.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_code(response).await, "DIGEST_INVALID");
}

#[tokio::test]
async fn unknown_things_are_404_with_their_codes() {
    let registry = EmbeddedRegistry::start().await;
    let base = registry.url();
    push_raw(
        &registry,
        "app",
        "v1",
        "application/wasm",
        &wasm_module(b"x"),
    )
    .await;
    let http = registry.http();
    let cases = [
        (
            format!("{base}/v2/app/blobs/{}", sha256(b"none")),
            "BLOB_UNKNOWN",
        ),
        (format!("{base}/v2/app/manifests/v2"), "MANIFEST_UNKNOWN"),
        (
            format!("{base}/v2/app/manifests/{}", sha256(b"none")),
            "MANIFEST_UNKNOWN",
        ),
        (format!("{base}/v2/nothing/manifests/v1"), "NAME_UNKNOWN"),
        (format!("{base}/v2/nothing/tags/list"), "NAME_UNKNOWN"),
    ];
    for (url, code) in cases {
        let response = http.get(&url).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{url}");
        assert_eq!(error_code(response).await, code, "{url}");
        let response = http.head(&url).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "HEAD {url}");
    }
    let response = http
        .get(format!("{base}/v2/Bad/tags/list"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_code(response).await, "NAME_INVALID");
}

#[tokio::test]
async fn manifests_by_tag_and_digest_keep_their_content_type() {
    let registry = EmbeddedRegistry::start().await;
    let base = registry.url();
    let http = registry.http();
    let wasm = wasm_module(b"m");
    push_raw(&registry, "x/y", "v1", "application/wasm", &wasm).await;

    let tagged = http
        .get(format!("{base}/v2/x/y/manifests/v1"))
        .send()
        .await
        .unwrap();
    assert_eq!(tagged.status(), StatusCode::OK);
    let digest = tagged.headers()["docker-content-digest"]
        .to_str()
        .unwrap()
        .to_string();
    let body = tagged.bytes().await.unwrap();
    assert_eq!(sha256(&body), digest);

    let head = http
        .head(format!("{base}/v2/x/y/manifests/{digest}"))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), StatusCode::OK);
    assert_eq!(
        head.headers()["content-length"],
        body.len().to_string().as_str()
    );
    assert_eq!(
        head.headers()["content-type"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert_eq!(head.headers()["docker-content-digest"], digest.as_str());

    // A manifest naming a blob the repository does not have is refused.
    let missing = serde_json::json!({
        "schemaVersion": 2,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256(b"absent"), "size": 6},
        "layers": [],
    });
    let response = http
        .put(format!("{base}/v2/x/y/manifests/v2"))
        .body(missing.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_code(response).await, "MANIFEST_BLOB_UNKNOWN");
    // Blobs of another repository are not visible, but can be mounted.
    let layer = sha256(&wasm);
    let response = http
        .head(format!("{base}/v2/other/blobs/{layer}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let response = http
        .post(format!(
            "{base}/v2/other/blobs/uploads/?mount={layer}&from=x/y"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let response = http
        .head(format!("{base}/v2/other/blobs/{layer}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn tags_list_is_sorted_and_paginated() {
    let registry = EmbeddedRegistry::start().await;
    let base = registry.url();
    let wasm = wasm_module(b"t");
    for tag in ["v3", "v1", "v2"] {
        push_raw(&registry, "app", tag, "application/wasm", &wasm).await;
    }
    let http = registry.http();
    let all: serde_json::Value = http
        .get(format!("{base}/v2/app/tags/list"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(all["tags"], serde_json::json!(["v1", "v2", "v3"]));
    let page = http
        .get(format!("{base}/v2/app/tags/list?n=1&last=v1"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        page.headers()["link"],
        "</v2/app/tags/list?n=1&last=v2>; rel=\"next\""
    );
    let page: serde_json::Value = page.json().await.unwrap();
    assert_eq!(page["tags"], serde_json::json!(["v2"]));
}
