//! Authentication, as kube-apiserver's: every request is someone. A client certificate the cluster CA
//! signed names its user (CN) and groups (O); else a bearer token, a ServiceAccount token this server
//! signed and that still holds ([`super::tokens::Tokens::authenticate`]), or a bootstrap token
//! (`ID.SECRET`, [`crate::bootstrap_tokens`]); a bearer token that does not is
//! 401 even where anonymous requests are let in. Every authenticated user is also in
//! `system:authenticated`.
//! A request with no credentials is `system:anonymous` (group `system:unauthenticated`) where kube leaves
//! the door open by default (`/healthz`, `/livez`, `/readyz`, `/version`) and for a GET of kubeadm's
//! `kube-public/cluster-info` ConfigMap (which RBAC then allows through its own Role; what joining nodes
//! read before they have credentials), and 401 `Unauthorized` everywhere else.
//!
//! The user travels in the request's extensions as a [`UserInfo`]; a request that already carries one (an
//! in-process caller's) keeps it.

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use herd_authz::UserInfo;

use super::AppState;
use super::tls::Peer;
use crate::bootstrap_tokens::TokenCheck;
use crate::error::ApiError;

/// The group every authenticated user is in.
pub const AUTHENTICATED_GROUP: &str = "system:authenticated";
/// The user of a request without credentials, and its group.
pub const ANONYMOUS_USER: &str = "system:anonymous";
pub const UNAUTHENTICATED_GROUP: &str = "system:unauthenticated";

/// The paths an anonymous request may reach (kube's `system:public-info-viewer`, which is all kube-apiserver
/// serves anonymously by default).
const PUBLIC_PATHS: [&str; 5] = ["/healthz", "/livez", "/readyz", "/version", "/version/"];

/// The middleware: puts the request's [`UserInfo`] in its extensions, or answers 401.
pub async fn authenticate(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    if request.extensions().get::<UserInfo>().is_none() {
        let peer = request
            .extensions()
            .get::<ConnectInfo<Peer>>()
            .map(|info| &info.0);
        let bearer = request
            .headers()
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty());
        let user = match (peer.and_then(|p| p.certificate.as_ref()), bearer) {
            (Some(certificate), _) => authenticated(&certificate.name, &certificate.groups),
            (None, Some(token)) => match state.bootstrap_tokens.authenticate(token).await {
                TokenCheck::Valid(user) => user,
                TokenCheck::Invalid => return ApiError::Unauthorized.into_response(),
                TokenCheck::NotBootstrap => {
                    match state.tokens.authenticate(&state.objects, token).await {
                        Some(user) => user,
                        None => return ApiError::Unauthorized.into_response(),
                    }
                }
            },
            (None, None)
                if PUBLIC_PATHS.contains(&request.uri().path())
                    || (request.method() == axum::http::Method::GET
                        && crate::cluster_info::anonymous_path(request.uri().path())) =>
            {
                UserInfo {
                    name: ANONYMOUS_USER.to_string(),
                    uid: String::new(),
                    groups: vec![UNAUTHENTICATED_GROUP.to_string()],
                }
            }
            (None, None) => return ApiError::Unauthorized.into_response(),
        };
        request.extensions_mut().insert(user);
    }
    next.run(request).await
}

/// `name` in `groups` and `system:authenticated` (kube's `AuthenticatedGroupAdder`).
fn authenticated(name: &str, groups: &[String]) -> UserInfo {
    let mut groups = groups.to_vec();
    if !groups.iter().any(|g| g == AUTHENTICATED_GROUP) {
        groups.push(AUTHENTICATED_GROUP.to_string());
    }
    UserInfo {
        name: name.to_string(),
        uid: String::new(),
        groups,
    }
}
