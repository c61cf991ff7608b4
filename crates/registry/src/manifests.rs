//! Manifests and tags: `/v2/<name>/manifests/<reference>` and `/v2/<name>/tags/list`.

use std::collections::HashMap;

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use sha2::Digest;

use crate::error::ApiError;
use crate::response::{DOCKER_CONTENT_DIGEST, empty, respond};
use crate::route::{sha256_hex, validate_tag};
use crate::storage::Storage;

/// The largest manifest accepted (the distribution spec's recommended minimum to support).
const MAX_MANIFEST_SIZE: usize = 4 << 20;

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// A manifest reference: a digest (`sha256:<hex>`) or a tag.
enum Reference<'a> {
    Digest(&'a str),
    Tag(&'a str),
}

fn parse_reference(reference: &str) -> Result<Reference<'_>, ApiError> {
    if reference.contains(':') {
        Ok(Reference::Digest(sha256_hex(reference)?))
    } else {
        validate_tag(reference)?;
        Ok(Reference::Tag(reference))
    }
}

/// `GET`/`HEAD /v2/<name>/manifests/<reference>`.
pub(crate) async fn get(
    storage: &Storage,
    name: &str,
    reference: &str,
    head: bool,
) -> Result<Response, ApiError> {
    let found = match parse_reference(reference)? {
        Reference::Digest(hex) => Some(hex.to_string()),
        Reference::Tag(tag) => storage
            .tag(name, tag)
            .await?
            .and_then(|digest| sha256_hex(&digest).ok().map(str::to_string)),
    };
    let content_type = match &found {
        Some(hex) => storage.manifest_content_type(name, hex).await?,
        None => None,
    };
    let (Some(hex), Some(content_type)) = (found, content_type) else {
        return Err(if storage.repo_exists(name).await? {
            ApiError::manifest_unknown()
        } else {
            ApiError::name_unknown()
        });
    };
    let content = storage.read_blob(&hex).await?;
    let headers = [
        (header::CONTENT_TYPE, content_type),
        (header::CONTENT_LENGTH, content.len().to_string()),
        (DOCKER_CONTENT_DIGEST, format!("sha256:{hex}")),
    ];
    let body = if head {
        Body::empty()
    } else {
        Body::from(content)
    };
    Ok(respond(StatusCode::OK, &headers, body))
}

/// `PUT /v2/<name>/manifests/<reference>`: stores a manifest whose blobs (and, for an index,
/// manifests) the repository already has, and points the tag at it.
pub(crate) async fn put(
    storage: &Storage,
    name: &str,
    reference: &str,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let reference = parse_reference(reference)?;
    let content = axum::body::to_bytes(body, MAX_MANIFEST_SIZE)
        .await
        .map_err(|_| {
            ApiError::too_large(format!(
                "a manifest may be at most {MAX_MANIFEST_SIZE} bytes"
            ))
        })?;
    let manifest: serde_json::Value = serde_json::from_slice(&content)
        .map_err(|e| ApiError::manifest_invalid(format!("manifest is not JSON: {e}")))?;
    if manifest
        .get("schemaVersion")
        .and_then(serde_json::Value::as_u64)
        != Some(2)
    {
        return Err(ApiError::manifest_invalid("schemaVersion must be 2"));
    }
    check_references(storage, name, &manifest).await?;

    let hex = hex::encode(sha2::Sha256::digest(&content));
    if let Reference::Digest(expected) = reference
        && expected != hex
    {
        return Err(ApiError::digest_invalid(format!(
            "manifest digest sha256:{hex} does not match sha256:{expected}"
        )));
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| {
            manifest
                .get("mediaType")
                .and_then(|v| v.as_str())
                .map(str::to_string)
        })
        .unwrap_or_else(|| OCI_MANIFEST.to_string());

    let digest = format!("sha256:{hex}");
    storage.store_blob(&hex, &content).await?;
    storage.link_manifest(name, &hex, &content_type).await?;
    if let Reference::Tag(tag) = reference {
        storage.set_tag(name, tag, &digest).await?;
    }
    Ok(empty(
        StatusCode::CREATED,
        &[
            (header::LOCATION, format!("/v2/{name}/manifests/{digest}")),
            (DOCKER_CONTENT_DIGEST, digest),
        ],
    ))
}

/// Every blob (`config`, `layers`) and manifest (`manifests`) a manifest references must be in
/// the repository.
async fn check_references(
    storage: &Storage,
    name: &str,
    manifest: &serde_json::Value,
) -> Result<(), ApiError> {
    let digests = |value: Option<&serde_json::Value>| -> Vec<String> {
        let descriptors = match value {
            Some(serde_json::Value::Array(items)) => items.iter().collect(),
            Some(item @ serde_json::Value::Object(_)) => vec![item],
            _ => vec![],
        };
        descriptors
            .into_iter()
            .map(|d| {
                d.get("digest")
                    .and_then(|v| v.as_str())
                    .unwrap_or("")
                    .to_string()
            })
            .collect()
    };
    let mut blobs = digests(manifest.get("config"));
    blobs.extend(digests(manifest.get("layers")));
    for digest in &blobs {
        let hex = sha256_hex(digest).map_err(|_| ApiError::manifest_blob_unknown(digest))?;
        if storage.blob_size(name, hex).await?.is_none() {
            return Err(ApiError::manifest_blob_unknown(digest));
        }
    }
    for digest in digests(manifest.get("manifests")) {
        let hex = sha256_hex(&digest).map_err(|_| ApiError::manifest_blob_unknown(&digest))?;
        if storage.manifest_content_type(name, hex).await?.is_none() {
            return Err(ApiError::manifest_blob_unknown(&digest));
        }
    }
    Ok(())
}

/// `GET /v2/<name>/tags/list[?n=&last=]`.
pub(crate) async fn tags(
    storage: &Storage,
    name: &str,
    query: &HashMap<String, String>,
) -> Result<Response, ApiError> {
    if !storage.repo_exists(name).await? {
        return Err(ApiError::name_unknown());
    }
    let mut tags = storage.tags(name).await?;
    if let Some(last) = query.get("last") {
        tags.retain(|t| t.as_str() > last.as_str());
    }
    let mut headers = vec![(header::CONTENT_TYPE, "application/json".to_string())];
    if let Some(n) = query.get("n").and_then(|n| n.parse::<usize>().ok())
        && tags.len() > n
    {
        tags.truncate(n);
        if let Some(last) = tags.last() {
            headers.push((
                header::LINK,
                format!("</v2/{name}/tags/list?n={n}&last={last}>; rel=\"next\""),
            ));
        }
    }
    let body = serde_json::json!({ "name": name, "tags": tags }).to_string();
    Ok(respond(StatusCode::OK, &headers, Body::from(body)))
}
