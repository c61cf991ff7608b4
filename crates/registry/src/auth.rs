//! Who may read and who may write, and the token endpoint that hands out push rights.
//!
//! Reads (`GET`/`HEAD` of manifests, blobs and tag lists) are open to anyone who reaches the registry
//! over TLS. Writes (uploads, manifest `PUT`s) need either
//! - a client certificate of the cluster CA in group `system:masters` (the admin kubeconfig's identity),
//!   presented on the connection itself, or
//! - a bearer token from this registry's token endpoint (`GET /token`, the distribution token
//!   spec's realm) that grants `push` on the repository.
//!
//! The token endpoint grants `pull` to anyone, and `push` to a `system:masters` certificate or to
//! HTTP basic credentials whose password is a token the API server accepts (a ServiceAccount token)
//! *and* that may `create` `repositories.herd.dev` named after the repository — asked of the API
//! server with a SelfSubjectAccessReview sent with that token, so the API server's authenticators and
//! RBAC decide (`cluster-admin` may; grant others with a ClusterRole rule on that resource).
//!
//! Without credentials a write is a 401 `UNAUTHORIZED` whose `WWW-Authenticate: Bearer realm=…`
//! challenge sends docker, oras and oci-client clients to the token endpoint with their credentials;
//! `GET /v2/` challenges anonymous callers the same way, so clients learn where to log in.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, Method, header};
use base64::Engine as _;
use herd_pki::tls::UserInfo;

use crate::error::ApiError;
use crate::route::Route;
use crate::tls::Peer;

/// The `service` of the challenges and tokens.
pub(crate) const SERVICE: &str = "herd-registry";
/// The token endpoint's path (the challenges' realm).
pub(crate) const TOKEN_PATH: &str = "/token";
/// How long a token is good for (distribution's default for Docker Hub tokens is 300 s too).
const TOKEN_LIFETIME: Duration = Duration::from_secs(300);

/// The SelfSubjectAccessReview attributes that allow a token's holder to push to a repository: verb
/// `create` on `repositories` in API group `herd.dev`, named after the repository.
pub const PUSH_VERB: &str = "create";
pub const PUSH_GROUP: &str = "herd.dev";
pub const PUSH_RESOURCE: &str = "repositories";

/// Checks API tokens (ServiceAccount tokens) by asking the API server, with the token, whether its
/// holder may push ([`PUSH_VERB`] on [`PUSH_RESOURCE`].[`PUSH_GROUP`]).
#[derive(Clone, Debug)]
pub struct ApiTokenReviewer {
    reviews_url: String,
    client: reqwest::Client,
}

/// Why a token could not be checked.
#[derive(Debug)]
pub(crate) enum ReviewError {
    /// The API server does not accept the token (401).
    InvalidToken,
    /// The API server could not be asked, or answered something else.
    Unavailable(String),
}

impl ApiTokenReviewer {
    /// A reviewer asking the API server at `api_server` (`https://HOST:PORT`), trusting `ca_pem`.
    ///
    /// # Errors
    /// When `ca_pem` holds no usable certificate or the HTTP client cannot be built.
    pub fn new(api_server: &str, ca_pem: &str) -> Result<Self, crate::Error> {
        let tls = herd_pki::tls::client_config(ca_pem, None)
            .map_err(|e| crate::Error::Config(e.to_string()))?;
        let client = reqwest::Client::builder()
            .no_proxy()
            .use_preconfigured_tls(tls)
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| crate::Error::Config(e.to_string()))?;
        Ok(Self {
            reviews_url: format!(
                "{}/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
                api_server.trim_end_matches('/')
            ),
            client,
        })
    }

    /// Whether the holder of `token` may push to `repository` (an empty name only checks the token).
    pub(crate) async fn may_push(
        &self,
        token: &str,
        repository: &str,
    ) -> Result<bool, ReviewError> {
        let review = serde_json::json!({
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SelfSubjectAccessReview",
            "spec": {"resourceAttributes": {
                "verb": PUSH_VERB,
                "group": PUSH_GROUP,
                "resource": PUSH_RESOURCE,
                "name": repository,
            }},
        });
        let response = self
            .client
            .post(&self.reviews_url)
            .bearer_auth(token)
            .json(&review)
            .send()
            .await
            .map_err(|e| ReviewError::Unavailable(e.to_string()))?;
        match response.status().as_u16() {
            200 | 201 => {
                let body: serde_json::Value = response
                    .json()
                    .await
                    .map_err(|e| ReviewError::Unavailable(e.to_string()))?;
                Ok(body["status"]["allowed"].as_bool() == Some(true))
            }
            401 => Err(ReviewError::InvalidToken),
            // Authenticated but may not even create a review: a valid token without push rights.
            403 => Ok(false),
            status => Err(ReviewError::Unavailable(format!(
                "the API server answered {status} to a SelfSubjectAccessReview"
            ))),
        }
    }
}

/// What a token allows.
#[derive(Clone, Debug)]
pub(crate) struct Grant {
    /// Repositories the holder may push to.
    push: BTreeSet<String>,
    expires: Instant,
}

/// Who is calling, as far as a data request shows.
#[derive(Clone, Debug)]
pub(crate) enum Caller {
    Anonymous,
    Certificate(UserInfo),
    Token(Grant),
    /// A bearer token this registry did not issue, or one that expired.
    BadToken,
}

/// The registry's authentication state: the tokens it issued and the API token reviewer.
pub(crate) struct Auth {
    tokens: Mutex<HashMap<String, Grant>>,
    reviewer: Option<ApiTokenReviewer>,
}

impl Auth {
    pub(crate) fn new(reviewer: Option<ApiTokenReviewer>) -> Self {
        Self {
            tokens: Mutex::default(),
            reviewer,
        }
    }

    /// The caller of a data request: its verified client certificate, else its bearer token.
    pub(crate) fn caller(&self, peer: Option<&Peer>, headers: &HeaderMap) -> Caller {
        if let Some(token) = bearer(headers) {
            let tokens = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
            return match tokens.get(token) {
                Some(grant) if grant.expires > Instant::now() => Caller::Token(grant.clone()),
                _ => Caller::BadToken,
            };
        }
        match peer.and_then(|p| p.certificate.clone()) {
            Some(user) => Caller::Certificate(user),
            None => Caller::Anonymous,
        }
    }

    /// `GET /token?service=…&scope=repository:NAME:pull,push…`: a token with the access the caller
    /// may have of what it asked for (pull always; push as the module doc says). Wrong basic
    /// credentials are a 401, as distribution's token servers answer.
    pub(crate) async fn issue(
        &self,
        peer: Option<&Peer>,
        headers: &HeaderMap,
        query: &[(String, String)],
        host: &str,
    ) -> Result<serde_json::Value, ApiError> {
        let requested = requested_push(query);
        let mut push = BTreeSet::new();
        let masters = peer
            .and_then(|p| p.certificate.as_ref())
            .is_some_and(is_master);
        if masters {
            push.extend(requested);
        } else if let Some((_user, password)) = basic(headers) {
            let Some(reviewer) = &self.reviewer else {
                return Err(ApiError::unauthorized(challenge(host, None, None)));
            };
            let review_error = |e: ReviewError| match e {
                ReviewError::InvalidToken => {
                    ApiError::unauthorized(challenge(host, None, Some("invalid_token")))
                }
                ReviewError::Unavailable(message) => {
                    tracing::warn!("registry: checking a token with the API server: {message}");
                    ApiError::unavailable("the API server cannot check the credentials now")
                }
            };
            if requested.is_empty() {
                // A login: the token must authenticate; what it may do is asked per repository.
                reviewer
                    .may_push(&password, "")
                    .await
                    .map_err(review_error)?;
            }
            for repository in requested {
                if reviewer
                    .may_push(&password, &repository)
                    .await
                    .map_err(review_error)?
                {
                    push.insert(repository);
                }
            }
        }
        let token = new_token();
        let now = Instant::now();
        {
            let mut tokens = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
            tokens.retain(|_, grant| grant.expires > now);
            tokens.insert(
                token.clone(),
                Grant {
                    push,
                    expires: now + TOKEN_LIFETIME,
                },
            );
        }
        Ok(serde_json::json!({
            "token": token,
            "access_token": token,
            "expires_in": TOKEN_LIFETIME.as_secs(),
            "issued_at": jiff::Timestamp::now().to_string(),
        }))
    }
}

/// Whether `caller` may do `method` on `route` (pure): reads are open, `/v2/` challenges anonymous
/// callers, writes need a `system:masters` certificate or a token granting push on the repository.
pub(crate) fn decide(
    caller: &Caller,
    method: &Method,
    route: &Route,
    host: &str,
) -> Result<(), ApiError> {
    if matches!(caller, Caller::BadToken) {
        return Err(ApiError::unauthorized(challenge(
            host,
            None,
            Some("invalid_token"),
        )));
    }
    let write = match route {
        Route::Base => {
            return match caller {
                Caller::Anonymous => Err(ApiError::unauthorized(challenge(host, None, None))),
                _ => Ok(()),
            };
        }
        Route::UploadStart { name } | Route::Upload { name, .. } => Some(name),
        Route::Manifest { name, .. } if !is_read(method) => Some(name),
        Route::Blob { name, .. } | Route::TagsList { name } if !is_read(method) => Some(name),
        Route::Manifest { .. } | Route::Blob { .. } | Route::TagsList { .. } => None,
    };
    let Some(repository) = write else {
        return Ok(());
    };
    let scope = format!("repository:{repository}:pull,push");
    match caller {
        Caller::Certificate(user) if is_master(user) => Ok(()),
        Caller::Certificate(_) => Err(ApiError::denied()),
        Caller::Token(grant) if grant.push.contains(repository.as_str()) => Ok(()),
        Caller::Token(_) => Err(ApiError::unauthorized(challenge(
            host,
            Some(&scope),
            Some("insufficient_scope"),
        ))),
        Caller::Anonymous | Caller::BadToken => {
            Err(ApiError::unauthorized(challenge(host, Some(&scope), None)))
        }
    }
}

fn is_read(method: &Method) -> bool {
    *method == Method::GET || *method == Method::HEAD
}

fn is_master(user: &UserInfo) -> bool {
    user.groups.iter().any(|g| g == herd_pki::MASTERS_GROUP)
}

/// `Bearer realm="https://HOST/token",service="herd-registry"[,scope="…"][,error="…"]`.
fn challenge(host: &str, scope: Option<&str>, error: Option<&str>) -> String {
    let mut out = format!("Bearer realm=\"https://{host}{TOKEN_PATH}\",service=\"{SERVICE}\"");
    if let Some(scope) = scope {
        out.push_str(&format!(",scope=\"{scope}\""));
    }
    if let Some(error) = error {
        out.push_str(&format!(",error=\"{error}\""));
    }
    out
}

/// The repositories the `scope` parameters ask to push to (`repository:NAME:ACTIONS`, several per
/// parameter separated by spaces, or several parameters).
fn requested_push(query: &[(String, String)]) -> BTreeSet<String> {
    query
        .iter()
        .filter(|(key, _)| key == "scope")
        .flat_map(|(_, value)| value.split(' '))
        .filter_map(|scope| {
            let rest = scope.strip_prefix("repository:")?;
            let (name, actions) = rest.rsplit_once(':')?;
            let wants_push = actions.split(',').any(|a| a == "push" || a == "*");
            (wants_push && crate::route::validate_name(name).is_ok()).then(|| name.to_string())
        })
        .collect()
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

fn basic(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

/// 256 random bits, hex.
fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::fill(&mut bytes);
    hex::encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(groups: &[&str]) -> Caller {
        Caller::Certificate(UserInfo {
            name: "someone".into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
        })
    }

    fn token(push: &[&str]) -> Caller {
        Caller::Token(Grant {
            push: push.iter().map(|r| r.to_string()).collect(),
            expires: Instant::now() + TOKEN_LIFETIME,
        })
    }

    #[test]
    fn reads_are_open_and_writes_need_masters_or_a_push_grant() {
        let manifest = Route::Manifest {
            name: "team/app".into(),
            reference: "v1".into(),
        };
        let upload = Route::UploadStart {
            name: "team/app".into(),
        };
        let host = "127.0.0.1:5000";
        for caller in [
            Caller::Anonymous,
            user(&["system:nodes"]),
            token(&[]),
            user(&["system:masters"]),
        ] {
            assert!(decide(&caller, &Method::GET, &manifest, host).is_ok());
            assert!(decide(&caller, &Method::HEAD, &manifest, host).is_ok());
        }
        let anonymous = decide(&Caller::Anonymous, &Method::PUT, &manifest, host).unwrap_err();
        assert_eq!(anonymous.status.as_u16(), 401);
        assert_eq!(anonymous.code, "UNAUTHORIZED");
        assert_eq!(
            anonymous.challenge.as_deref(),
            Some(
                "Bearer realm=\"https://127.0.0.1:5000/token\",service=\"herd-registry\",scope=\"repository:team/app:pull,push\""
            )
        );
        let node = decide(&user(&["system:nodes"]), &Method::POST, &upload, host).unwrap_err();
        assert_eq!((node.status.as_u16(), node.code), (403, "DENIED"));
        assert!(decide(&user(&["system:masters"]), &Method::POST, &upload, host).is_ok());
        assert!(decide(&token(&["team/app"]), &Method::PUT, &manifest, host).is_ok());
        let other = decide(&token(&["team/other"]), &Method::PUT, &manifest, host).unwrap_err();
        assert!(
            other
                .challenge
                .unwrap()
                .ends_with("error=\"insufficient_scope\"")
        );
        let bad = decide(&Caller::BadToken, &Method::GET, &manifest, host).unwrap_err();
        assert_eq!(bad.status.as_u16(), 401);
    }

    #[test]
    fn the_base_path_challenges_only_anonymous_callers() {
        let host = "h:1";
        assert_eq!(
            decide(&Caller::Anonymous, &Method::GET, &Route::Base, host)
                .unwrap_err()
                .status
                .as_u16(),
            401
        );
        assert!(decide(&user(&["system:nodes"]), &Method::GET, &Route::Base, host).is_ok());
        assert!(decide(&token(&[]), &Method::GET, &Route::Base, host).is_ok());
    }

    #[test]
    fn scopes_asking_for_push() {
        let query = |v: &[&str]| -> Vec<(String, String)> {
            v.iter()
                .map(|s| ("scope".to_string(), s.to_string()))
                .collect()
        };
        let asked = requested_push(&query(&[
            "repository:a/b:pull,push repository:c:pull",
            "repository:d:*",
            "repository:../x:push",
            "registry:catalog:*",
        ]));
        assert_eq!(
            asked.into_iter().collect::<Vec<_>>(),
            vec!["a/b".to_string(), "d".to_string()]
        );
    }
}
