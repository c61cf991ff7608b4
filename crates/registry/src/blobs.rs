//! Blob downloads and uploads: `/v2/<name>/blobs/<digest>` and `/v2/<name>/blobs/uploads/…`.

use std::collections::HashMap;

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;

use crate::error::ApiError;
use crate::response::{DOCKER_CONTENT_DIGEST, DOCKER_UPLOAD_UUID, empty, respond, upload_range};
use crate::route::{sha256_hex, validate_name};
use crate::storage::Storage;

/// `GET`/`HEAD /v2/<name>/blobs/<digest>`.
pub(crate) async fn get(
    storage: &Storage,
    name: &str,
    digest: &str,
    head: bool,
) -> Result<Response, ApiError> {
    let hex = sha256_hex(digest)?;
    let size = storage
        .blob_size(name, hex)
        .await?
        .ok_or_else(ApiError::blob_unknown)?;
    let body = if head {
        Body::empty()
    } else {
        let file = storage.open_blob(hex).await?;
        Body::from_stream(tokio_util::io::ReaderStream::new(file))
    };
    Ok(respond(
        StatusCode::OK,
        &[
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (header::CONTENT_LENGTH, size.to_string()),
            (DOCKER_CONTENT_DIGEST, digest.to_string()),
        ],
        body,
    ))
}

/// `POST /v2/<name>/blobs/uploads/`: a cross-repository mount (`?mount=&from=`), a monolithic
/// upload (`?digest=`, content in the body) or the start of an upload session.
pub(crate) async fn start(
    storage: &Storage,
    name: &str,
    query: &HashMap<String, String>,
    body: Body,
) -> Result<Response, ApiError> {
    if let (Some(digest), Some(from)) = (query.get("mount"), query.get("from")) {
        let hex = sha256_hex(digest)?;
        validate_name(from)?;
        if storage.blob_size(from, hex).await?.is_some() {
            storage.link_blob(name, hex).await?;
            return Ok(created(name, digest));
        }
    }
    let id = storage.start_upload(name).await?;
    if let Some(digest) = query.get("digest") {
        let hex = sha256_hex(digest)?;
        storage.append_upload(name, &id, body).await?;
        storage.commit_upload(name, &id, hex).await?;
        return Ok(created(name, digest));
    }
    Ok(accepted(name, &id, 0))
}

/// `PATCH /v2/<name>/blobs/uploads/<id>`: appends a chunk. A `Content-Range` must start where
/// the upload ends.
pub(crate) async fn patch(
    storage: &Storage,
    name: &str,
    id: &str,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let size = storage.upload_size(name, id).await?;
    if let Some(range) = headers.get(header::CONTENT_RANGE) {
        let start = range
            .to_str()
            .ok()
            .map(|r| {
                r.trim()
                    .trim_start_matches("bytes")
                    .trim_start_matches([' ', '='])
            })
            .and_then(|r| r.split_once('-'))
            .and_then(|(start, _)| start.trim().parse::<u64>().ok());
        if start != Some(size) {
            return Err(ApiError::range_invalid(format!(
                "Content-Range must start at {size}"
            )));
        }
    }
    let size = storage.append_upload(name, id, body).await?;
    Ok(accepted(name, id, size))
}

/// `PUT /v2/<name>/blobs/uploads/<id>?digest=`: appends the body (if any) and finishes the upload.
pub(crate) async fn put(
    storage: &Storage,
    name: &str,
    id: &str,
    query: &HashMap<String, String>,
    body: Body,
) -> Result<Response, ApiError> {
    let digest = query
        .get("digest")
        .ok_or_else(|| ApiError::digest_invalid("the digest query parameter is missing"))?;
    let hex = sha256_hex(digest)?;
    storage.append_upload(name, id, body).await?;
    storage.commit_upload(name, id, hex).await?;
    Ok(created(name, digest))
}

/// `GET /v2/<name>/blobs/uploads/<id>`: the upload's progress.
pub(crate) async fn status(storage: &Storage, name: &str, id: &str) -> Result<Response, ApiError> {
    let size = storage.upload_size(name, id).await?;
    let mut response = accepted(name, id, size);
    *response.status_mut() = StatusCode::NO_CONTENT;
    Ok(response)
}

/// `DELETE /v2/<name>/blobs/uploads/<id>`.
pub(crate) async fn cancel(storage: &Storage, name: &str, id: &str) -> Result<Response, ApiError> {
    storage.cancel_upload(name, id).await?;
    Ok(empty(StatusCode::NO_CONTENT, &[]))
}

fn created(name: &str, digest: &str) -> Response {
    empty(
        StatusCode::CREATED,
        &[
            (header::LOCATION, format!("/v2/{name}/blobs/{digest}")),
            (DOCKER_CONTENT_DIGEST, digest.to_string()),
        ],
    )
}

fn accepted(name: &str, id: &str, size: u64) -> Response {
    empty(
        StatusCode::ACCEPTED,
        &[
            (header::LOCATION, format!("/v2/{name}/blobs/uploads/{id}")),
            (header::RANGE, upload_range(size)),
            (DOCKER_UPLOAD_UUID, id.to_string()),
        ],
    )
}
