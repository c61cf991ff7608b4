//! OpenAPI v3 as kube-apiserver serves it: `GET /openapi/v3` lists one document per group-version
//! (`{"paths": {"api/v1": {"serverRelativeURL": "/openapi/v3/api/v1?hash=…"}}}`) and
//! `GET /openapi/v3/api/v1?hash=…` returns that document.
//!
//! kubectl needs them to validate (`kubectl apply` with the default `--validate=strict` checks that the
//! PATCH operation of the kind takes `fieldValidation`, then leaves validation to the server), to compute
//! `kubectl apply`'s strategic merge patch and for `kubectl explain`. The documents are built once from the
//! resource table and k8s-openapi's schemas ([`paths`], [`schemas`]). The hash is the document's SHA-512,
//! as in kube-openapi's handler, so clients cache a document until the server changes it. [`v2`] serves
//! the little kubectl still reads from OpenAPI v2.

mod parameters;
mod paths;
mod schemas;
mod v2;

pub use v2::v2;

use std::collections::BTreeMap;
use std::sync::LazyLock;

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use herd_api::resources;
use serde_json::{Value, json};
use sha2::{Digest, Sha512};

use crate::error::ApiError;

/// A document as served: its bytes and their hash.
struct Served {
    bytes: Bytes,
    etag: String,
}

impl Served {
    fn new(json: &Value) -> Self {
        let bytes = Bytes::from(serde_json::to_vec(json).unwrap_or_default());
        let etag = hex::encode_upper(Sha512::digest(&bytes));
        Self { bytes, etag }
    }
}

struct Documents {
    index: Served,
    /// `api/v1`, `apis/apps/v1` → document.
    group_versions: BTreeMap<String, Served>,
}

static DOCUMENTS: LazyLock<Documents> = LazyLock::new(build);

fn build() -> Documents {
    let mut group_versions = BTreeMap::new();
    for (group, version) in resources::group_versions() {
        let path = if group.is_empty() {
            format!("api/{version}")
        } else {
            format!("apis/{group}/{version}")
        };
        group_versions.insert(path, Served::new(&paths::document(group, version)));
    }
    let index_paths: serde_json::Map<String, Value> = group_versions
        .iter()
        .map(|(path, doc)| {
            let url = format!("/openapi/v3/{path}?hash={}", doc.etag);
            (path.clone(), json!({"serverRelativeURL": url}))
        })
        .collect();
    Documents {
        index: Served::new(&json!({"paths": index_paths})),
        group_versions,
    }
}

/// The `/openapi/v3` index.
#[cfg(test)]
fn openapi_index() -> Value {
    serde_json::from_slice(&DOCUMENTS.index.bytes).unwrap_or_default()
}

/// The document of a group-version, by its path below `/openapi/v3/` (`api/v1`, `apis/apps/v1`).
#[cfg(test)]
fn openapi_document(path_after_v3: &str) -> Option<Value> {
    let doc = DOCUMENTS
        .group_versions
        .get(path_after_v3.trim_matches('/'))?;
    serde_json::from_slice(&doc.bytes).ok()
}

/// `GET /openapi/v3`.
pub async fn index(headers: HeaderMap) -> Response {
    serve(&DOCUMENTS.index, &headers, false)
}

/// `GET /openapi/v3/{group-version path}[?hash=…]`. A stale `hash` is redirected to the current one (301),
/// a matching one makes the document cacheable for good; only JSON is served (406 otherwise).
pub async fn group_version(uri: Uri, headers: HeaderMap) -> Response {
    let path = uri
        .path()
        .strip_prefix("/openapi/v3/")
        .unwrap_or_default()
        .trim_matches('/');
    let Some(doc) = DOCUMENTS.group_versions.get(path) else {
        return ApiError::NotFound {
            message: "the server could not find the requested resource".into(),
            group: String::new(),
            kind: String::new(),
            name: String::new(),
        }
        .into_response();
    };
    if !accepts_json(&headers) {
        return ApiError::NotAcceptable(
            "only application/json is served for OpenAPI v3 documents".into(),
        )
        .into_response();
    }
    let hash = uri
        .query()
        .unwrap_or_default()
        .split('&')
        .find_map(|kv| kv.strip_prefix("hash="));
    match hash {
        Some(h) if h != doc.etag => {
            let location = format!("/openapi/v3/{path}?hash={}", doc.etag);
            let mut resp = StatusCode::MOVED_PERMANENTLY.into_response();
            if let Ok(v) = HeaderValue::from_str(&location) {
                resp.headers_mut().insert(header::LOCATION, v);
            }
            resp
        }
        Some(_) => serve(doc, &headers, true),
        None => serve(doc, &headers, false),
    }
}

fn serve(doc: &Served, headers: &HeaderMap, immutable: bool) -> Response {
    let etag = format!("\"{}\"", doc.etag);
    let not_modified = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let mut resp = if not_modified {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (
            [(header::CONTENT_TYPE, "application/json")],
            doc.bytes.clone(),
        )
            .into_response()
    };
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    h.insert(header::VARY, HeaderValue::from_static("Accept"));
    if immutable {
        // A hashed URL never changes: cacheable for a year, as kube-openapi's handler says.
        h.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("public, immutable"),
        );
        let in_a_year = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(24 * 365);
        let expires =
            jiff::fmt::rfc2822::DateTimePrinter::new().timestamp_to_rfc9110_string(&in_a_year);
        if let Some(v) = expires.ok().and_then(|e| HeaderValue::from_str(&e).ok()) {
            h.insert(header::EXPIRES, v);
        }
    }
    resp
}

/// Whether an `Accept` header admits `application/json` (no header admits anything).
fn accepts_json(headers: &HeaderMap) -> bool {
    let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    accept.split(',').any(|clause| {
        let mut parts = clause.split(';').map(str::trim);
        let media = parts.next().unwrap_or_default();
        let refused = parts.any(|p| p.replace(' ', "") == "q=0");
        !refused && matches!(media, "application/json" | "application/*" | "*/*" | "")
    })
}

#[cfg(test)]
mod tests;
