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
//! (`{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}`). Nothing is ever
//! deleted except abandoned uploads.
//!
//! It speaks HTTPS only, with a serving certificate of the cluster CA, and asks clients for a
//! certificate of that CA (without requiring one). Reads are open; writes need the admin's client
//! certificate (`system:masters`) or a push token from `GET /token`, which grants push to that
//! certificate and to basic credentials whose password is an API token allowed to `create`
//! `repositories.herd.dev` (see [`ApiTokenReviewer`]). The distribution spec's 401 with a
//! `WWW-Authenticate: Bearer` challenge sends docker, oras and oci-client clients there.
//!
//! ```no_run
//! # async fn example(tls: std::sync::Arc<rustls::ServerConfig>) -> std::io::Result<()> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:5000").await?;
//! let shutdown = tokio_util::sync::CancellationToken::new();
//! let security = herd_registry::Security { tls, api_tokens: None };
//! herd_registry::serve(listener, "/var/lib/herd/registry".into(), security, shutdown).await
//! # }
//! ```

mod auth;
mod blobs;
mod error;
mod manifests;
mod response;
mod route;
mod storage;
mod tls;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::connect_info::ConnectInfo;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use tokio_util::sync::CancellationToken;

pub use auth::{ApiTokenReviewer, PUSH_GROUP, PUSH_RESOURCE, PUSH_VERB};
pub use tls::Peer;

use auth::{Auth, TOKEN_PATH};
use error::ApiError;
use response::{API_VERSION, respond};
use route::Route;
use storage::Storage;

/// How the registry is secured: its TLS server configuration (a serving certificate of the cluster
/// CA; client certificates of the CA verified when sent, as `herd_pki::tls::server_config` builds it)
/// and, optionally, the API server that checks tokens given as basic credentials to the token
/// endpoint.
pub struct Security {
    pub tls: Arc<rustls::ServerConfig>,
    pub api_tokens: Option<ApiTokenReviewer>,
}

/// A registry that cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("registry configuration: {0}")]
    Config(String),
}

struct App {
    storage: Storage,
    auth: Auth,
}

/// The registry's routes, storing under `root` (created on first write). Requests carry the
/// connection's [`Peer`] (`ConnectInfo`) when served by [`serve`].
pub fn router(root: PathBuf, api_tokens: Option<ApiTokenReviewer>) -> Router {
    let app = Arc::new(App {
        storage: Storage::new(root),
        auth: Auth::new(api_tokens),
    });
    Router::new()
        .route("/v2", any(dispatch))
        .route("/v2/", any(dispatch))
        .route("/v2/{*rest}", any(dispatch))
        .route(TOKEN_PATH, axum::routing::get(token))
        .fallback(|| async { ApiError::unsupported() })
        .with_state(app)
        .layer(axum::middleware::map_response(with_api_version))
}

/// Serves the registry over HTTPS on `listener` until `shutdown` is cancelled, then finishes the
/// requests in flight.
///
/// # Errors
///
/// If `root` cannot be created or the server fails.
pub async fn serve(
    listener: tokio::net::TcpListener,
    root: PathBuf,
    security: Security,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    tokio::fs::create_dir_all(&root).await?;
    tracing::info!(addr = ?listener.local_addr().ok(), root = %root.display(), "serving the OCI registry over HTTPS");
    serve_router(
        listener,
        router(root, security.api_tokens),
        security.tls,
        shutdown,
    )
    .await
}

/// Serves `router` (the registry's [`router`], perhaps with layers of the caller's) over HTTPS on
/// `listener`, each request carrying its connection's [`Peer`], until `shutdown` is cancelled.
///
/// # Errors
///
/// If the server fails.
pub async fn serve_router(
    listener: tokio::net::TcpListener,
    router: Router,
    tls: Arc<rustls::ServerConfig>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let listener = tls::TlsListener::new(listener, tls, "registry")?;
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<Peer>(),
    )
    .with_graceful_shutdown(async move { shutdown.cancelled().await })
    .await
}

fn peer(request: &Request) -> Option<&Peer> {
    request
        .extensions()
        .get::<ConnectInfo<Peer>>()
        .map(|ConnectInfo(peer)| peer)
}

/// The host the client addressed (`Host`), for the challenges' realm.
fn host(request: &Request) -> String {
    request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| request.uri().authority().map(|a| a.as_str()))
        .unwrap_or("localhost")
        .to_string()
}

/// `GET /token`: the distribution token spec's token endpoint.
async fn token(State(app): State<Arc<App>>, request: Request) -> Response {
    let query = Query::<Vec<(String, String)>>::try_from_uri(request.uri())
        .map(|Query(q)| q)
        .unwrap_or_default();
    let host = host(&request);
    match app
        .auth
        .issue(peer(&request), request.headers(), &query, &host)
        .await
    {
        Ok(body) => axum::Json(body).into_response(),
        Err(err) => err.into_response(),
    }
}

async fn with_api_version(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(API_VERSION, HeaderValue::from_static("registry/2.0"));
    response
}

async fn dispatch(State(app): State<Arc<App>>, request: Request) -> Response {
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
    let caller = app.auth.caller(peer(&request), request.headers());
    let host = host(&request);
    let result = match route::parse(&rest) {
        Ok(Some(route)) => match auth::decide(&caller, &method, &route, &host) {
            Ok(()) => handle(&app.storage, &method, route, &query, request).await,
            Err(err) => Err(err),
        },
        Ok(None) => Err(ApiError::unsupported()),
        Err(err) => Err(err),
    };
    match result {
        Ok(response) => response,
        Err(err) => {
            tracing::debug!(%method, path = rest, code = err.code, "registry request failed");
            if method == Method::HEAD {
                // A HEAD answer carries the status (and a 401's challenge) only.
                let mut headers = vec![(header::CONTENT_LENGTH, "0".into())];
                if let Some(challenge) = err.challenge {
                    headers.push((header::WWW_AUTHENTICATE, challenge));
                }
                respond(err.status, &headers, Body::empty())
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
