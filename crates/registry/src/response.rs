//! Building responses with the registry's headers.

use axum::body::Body;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::Response;

pub(crate) const DOCKER_CONTENT_DIGEST: HeaderName =
    HeaderName::from_static("docker-content-digest");
pub(crate) const DOCKER_UPLOAD_UUID: HeaderName = HeaderName::from_static("docker-upload-uuid");
pub(crate) const API_VERSION: HeaderName =
    HeaderName::from_static("docker-distribution-api-version");

/// A response with `status`, `headers` and `body`. Header values come from validated names,
/// digests and ids; one that is not a valid header value is left out rather than panicking.
pub(crate) fn respond(
    status: StatusCode,
    headers: &[(HeaderName, String)],
    body: Body,
) -> Response {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    for (name, value) in headers {
        if let Ok(value) = HeaderValue::from_str(value) {
            response.headers_mut().insert(name.clone(), value);
        }
    }
    response
}

/// A response without a body (`Content-Length: 0`).
pub(crate) fn empty(status: StatusCode, headers: &[(HeaderName, String)]) -> Response {
    let mut headers = headers.to_vec();
    headers.push((header::CONTENT_LENGTH, "0".to_string()));
    respond(status, &headers, Body::empty())
}

/// The `Range` header value for an upload holding `size` bytes (`0-0` when empty, as the Docker
/// registry answers).
pub(crate) fn upload_range(size: u64) -> String {
    format!("0-{}", size.saturating_sub(1))
}
