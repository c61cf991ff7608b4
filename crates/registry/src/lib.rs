//! A small OCI distribution registry, storing blobs and manifests on disk, that `herd up` serves
//! on loopback so pushing and running an image needs nothing else.
//!
//! It implements what push and pull clients (oci-client, the Docker registry client) use:
//!
//! | Method | Path | |
//! |---|---|---|
//! | `GET` | `/v2/` | `200 {}` |
//! | `GET`, `HEAD` | `/v2/<name>/blobs/<digest>` | |
//! | `POST` | `/v2/<name>/blobs/uploads/` | `?digest=` monolithic, `?mount=&from=`, else a session |
//! | `PATCH`, `PUT`, `GET`, `DELETE` | `/v2/<name>/blobs/uploads/<uuid>` | chunks, finish (`?digest=`), status, cancel |
//! | `GET`, `HEAD`, `PUT` | `/v2/<name>/manifests/<tag or digest>` | |
//! | `GET` | `/v2/<name>/tags/list` | |
//!
//! `<name>` may contain slashes. Every failure is answered in the OCI error format
//! (`{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}`). Access is anonymous
//! and nothing is ever deleted except abandoned uploads.
//!
//! ```no_run
//! # async fn example() -> std::io::Result<()> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:5000").await?;
//! let shutdown = tokio_util::sync::CancellationToken::new();
//! herd_registry::serve(listener, "/var/lib/herd/registry".into(), shutdown).await
//! # }
//! ```

mod blobs;
mod error;
mod manifests;
mod response;
mod route;
mod storage;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use tokio_util::sync::CancellationToken;

use error::ApiError;
use response::{API_VERSION, respond};
use route::Route;
use storage::Storage;

/// The registry's routes, storing under `root` (created on first write).
pub fn router(root: PathBuf) -> Router {
    let storage = Arc::new(Storage::new(root));
    Router::new()
        .route("/v2", any(dispatch))
        .route("/v2/", any(dispatch))
        .route("/v2/{*rest}", any(dispatch))
        .fallback(|| async { ApiError::unsupported() })
        .with_state(storage)
        .layer(axum::middleware::map_response(with_api_version))
}

/// Serves the registry on `listener` until `shutdown` is cancelled, then finishes the requests in
/// flight.
///
/// # Errors
///
/// If `root` cannot be created or the server fails.
pub async fn serve(
    listener: tokio::net::TcpListener,
    root: PathBuf,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    tokio::fs::create_dir_all(&root).await?;
    tracing::info!(addr = ?listener.local_addr().ok(), root = %root.display(), "serving the OCI registry");
    axum::serve(listener, router(root))
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}

async fn with_api_version(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(API_VERSION, HeaderValue::from_static("registry/2.0"));
    response
}

async fn dispatch(State(storage): State<Arc<Storage>>, request: Request) -> Response {
    let method = request.method().clone();
    let path = request.uri().path();
    // Some clients escape the ':' of digests.
    let rest = path
        .strip_prefix("/v2")
        .unwrap_or(path)
        .trim_start_matches('/')
        .replace("%3A", ":")
        .replace("%3a", ":");
    let query = Query::<HashMap<String, String>>::try_from_uri(request.uri())
        .map(|Query(q)| q)
        .unwrap_or_default();
    let result = match route::parse(&rest) {
        Ok(Some(route)) => handle(&storage, &method, route, &query, request).await,
        Ok(None) => Err(ApiError::unsupported()),
        Err(err) => Err(err),
    };
    match result {
        Ok(response) => response,
        Err(err) => {
            tracing::debug!(%method, path = rest, code = err.code, "registry request failed");
            if method == Method::HEAD {
                // A HEAD answer carries the status only.
                respond(
                    err.status,
                    &[(header::CONTENT_LENGTH, "0".into())],
                    Body::empty(),
                )
            } else {
                err.into_response()
            }
        }
    }
}

async fn handle(
    storage: &Storage,
    method: &Method,
    route: Route,
    query: &HashMap<String, String>,
    request: Request,
) -> Result<Response, ApiError> {
    let head = method == Method::HEAD;
    let (parts, body) = request.into_parts();
    match (route, method.clone()) {
        (Route::Base, Method::GET | Method::HEAD) => Ok(respond(
            StatusCode::OK,
            &[(header::CONTENT_TYPE, "application/json".into())],
            Body::from("{}"),
        )),
        (Route::Blob { name, digest }, Method::GET | Method::HEAD) => {
            blobs::get(storage, &name, &digest, head).await
        }
        (Route::UploadStart { name }, Method::POST) => {
            blobs::start(storage, &name, query, body).await
        }
        (Route::Upload { name, id }, Method::PATCH) => {
            blobs::patch(storage, &name, &id, &parts.headers, body).await
        }
        (Route::Upload { name, id }, Method::PUT) => {
            blobs::put(storage, &name, &id, query, body).await
        }
        (Route::Upload { name, id }, Method::GET) => blobs::status(storage, &name, &id).await,
        (Route::Upload { name, id }, Method::DELETE) => blobs::cancel(storage, &name, &id).await,
        (Route::Manifest { name, reference }, Method::GET | Method::HEAD) => {
            manifests::get(storage, &name, &reference, head).await
        }
        (Route::Manifest { name, reference }, Method::PUT) => {
            manifests::put(storage, &name, &reference, &parts.headers, body).await
        }
        (Route::TagsList { name }, Method::GET | Method::HEAD) => {
            manifests::tags(storage, &name, query).await
        }
        _ => Err(ApiError::method_not_allowed()),
    }
}
