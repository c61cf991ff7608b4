//! Bootstrap tokens, as kube-apiserver's `--enable-bootstrap-token-auth`: a bearer `ID.SECRET` whose Secret
//! `kube-system/bootstrap-token-<ID>` (type `bootstrap.kubernetes.io/token`) holds that secret, allows
//! authentication (`usage-bootstrap-authentication: "true"`), is not expired and not being deleted,
//! authenticates as `system:bootstrap:<ID>` in `system:bootstrappers` and the Secret's `auth-extra-groups`.
//!
//! The Secret is read from the shared informer caches (one copy of the Secrets in the process), never from
//! the store per request; when the caches do not have it (or an older version), the check waits a moment
//! for them to reach the store's present revision, as the authorizer does.

use std::sync::Arc;
use std::time::Duration;

use herd_authz::UserInfo;
use herd_pki::BootstrapToken;
use herd_pki::bootstrap_token::{self, GROUP, SECRET_TYPE};
use k8s_openapi::api::core::v1::Secret;

use crate::controllers::informer::Informers;

/// The namespace bootstrap token Secrets live in.
pub const NAMESPACE: &str = "kube-system";

/// How long a check waits for the caches to catch up with the store.
const CATCH_UP: Duration = Duration::from_secs(2);

/// What a bearer token is to the bootstrap token authenticator.
#[derive(Debug, PartialEq, Eq)]
pub enum TokenCheck {
    /// Not of the bootstrap token form: another authenticator's.
    NotBootstrap,
    /// A valid bootstrap token: this user.
    Valid(UserInfo),
    /// Of the form but not valid (unknown, wrong secret, expired, not for authentication): 401.
    Invalid,
}

/// The authenticator, over the shared caches.
pub struct BootstrapTokens {
    informers: Arc<Informers>,
}

impl std::fmt::Debug for BootstrapTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BootstrapTokens").finish_non_exhaustive()
    }
}

impl BootstrapTokens {
    pub fn new(informers: Arc<Informers>) -> Self {
        Self { informers }
    }

    /// kube's bootstrap token authenticator on a bearer token.
    pub async fn authenticate(&self, bearer: &str) -> TokenCheck {
        let Ok(token) = bearer.parse::<BootstrapToken>() else {
            return TokenCheck::NotBootstrap;
        };
        if self.informers.ensure_loaded().await.is_err() {
            return TokenCheck::Invalid;
        }
        // The token's Secret as of every write this server has committed: one created, changed or deleted a
        // moment ago counts at once (on etcd the caches follow a watch that lags the write). Bootstrap tokens
        // authenticate joins, rarely, so the wait costs nothing that matters.
        let target = self.informers.objects().revision();
        self.informers.caught_up(target, CATCH_UP).await;
        match self.check(&token) {
            Some(user) => TokenCheck::Valid(user),
            None => TokenCheck::Invalid,
        }
    }

    fn check(&self, token: &BootstrapToken) -> Option<UserInfo> {
        let secret = self
            .informers
            .store::<Secret>()
            .get(NAMESPACE, &token.secret_name())?;
        let user = authenticates(&secret, token, jiff::Timestamp::now());
        if user.is_none() {
            tracing::debug!(id = %token.id, "bootstrap token refused");
        }
        user
    }
}

/// A string value of the Secret's `data`.
pub fn data<'a>(secret: &'a Secret, key: &str) -> Option<&'a str> {
    secret
        .data
        .as_ref()?
        .get(key)
        .and_then(|v| std::str::from_utf8(&v.0).ok())
}

/// Whether the bootstrap token Secret has expired at `now` (an `expiration` that does not parse counts
/// as expired, as kube's).
pub fn expired(secret: &Secret, now: jiff::Timestamp) -> bool {
    data(secret, "expiration")
        .is_some_and(|e| e.parse::<jiff::Timestamp>().map_or(true, |t| t <= now))
}

/// The user `token` authenticates as with `secret`, as kube's `TokenAuthenticator.AuthenticateToken`.
pub fn authenticates(
    secret: &Secret,
    token: &BootstrapToken,
    now: jiff::Timestamp,
) -> Option<UserInfo> {
    if secret.metadata.deletion_timestamp.is_some()
        || secret.type_.as_deref() != Some(SECRET_TYPE)
        || data(secret, "token-id") != Some(token.id.as_str())
        || data(secret, "usage-bootstrap-authentication") != Some("true")
        || expired(secret, now)
    {
        return None;
    }
    let stored = data(secret, "token-secret")?;
    if !constant_time_eq(stored.as_bytes(), token.secret.as_bytes()) {
        return None;
    }
    let mut groups = vec![GROUP.to_string()];
    for extra in data(secret, "auth-extra-groups")
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|g| !g.is_empty())
    {
        if !valid_extra_group(extra) {
            return None;
        }
        if !groups.iter().any(|g| g == extra) {
            groups.push(extra.to_string());
        }
    }
    groups.push(crate::server::authn::AUTHENTICATED_GROUP.to_string());
    Some(UserInfo {
        name: token.user(),
        uid: String::new(),
        groups,
    })
}

/// kube's `^system:bootstrappers:[a-z0-9:-]{0,255}[a-z0-9]$`.
pub fn valid_extra_group(group: &str) -> bool {
    let Some(rest) = group.strip_prefix("system:bootstrappers:") else {
        return false;
    };
    !rest.is_empty()
        && rest.len() <= 256
        && rest
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b':' || b == b'-')
        && rest
            .bytes()
            .last()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Whether the Secret's name and type make it a bootstrap token Secret.
pub fn is_token_secret(secret: &Secret) -> bool {
    secret.type_.as_deref() == Some(SECRET_TYPE)
        && secret
            .metadata
            .name
            .as_deref()
            .and_then(|n| n.strip_prefix(bootstrap_token::SECRET_PREFIX))
            .is_some_and(bootstrap_token::valid_id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;

    fn secret(pairs: &[(&str, &str)]) -> Secret {
        let mut s = Secret {
            type_: Some(SECRET_TYPE.into()),
            ..Secret::default()
        };
        s.metadata.name = Some("bootstrap-token-abcdef".into());
        s.data = Some(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_string(), ByteString(v.as_bytes().to_vec())))
                .collect(),
        );
        s
    }

    #[test]
    fn a_token_authenticates_only_as_its_secret_allows() {
        let token: BootstrapToken = "abcdef.0123456789abcdef".parse().expect("token");
        let now = jiff::Timestamp::now();
        let base = [
            ("token-id", "abcdef"),
            ("token-secret", "0123456789abcdef"),
            ("usage-bootstrap-authentication", "true"),
            (
                "auth-extra-groups",
                "system:bootstrappers:herd:default-node-token",
            ),
        ];
        let user = authenticates(&secret(&base), &token, now).expect("valid");
        assert_eq!(user.name, "system:bootstrap:abcdef");
        assert_eq!(
            user.groups,
            [
                "system:bootstrappers",
                "system:bootstrappers:herd:default-node-token",
                "system:authenticated"
            ]
        );
        let wrong: BootstrapToken = "abcdef.0123456789abcdee".parse().expect("token");
        assert!(authenticates(&secret(&base), &wrong, now).is_none());
        let mut no_auth = base;
        no_auth[2].1 = "false";
        assert!(authenticates(&secret(&no_auth), &token, now).is_none());
        let mut bad_group = base;
        bad_group[3].1 = "system:masters";
        assert!(authenticates(&secret(&bad_group), &token, now).is_none());
        let past = (now - jiff::SignedDuration::from_secs(1)).to_string();
        let mut expired = base.to_vec();
        expired.push(("expiration", &past));
        assert!(authenticates(&secret(&expired), &token, now).is_none());
        let future = (now + jiff::SignedDuration::from_secs(60)).to_string();
        let mut later = base.to_vec();
        later.push(("expiration", &future));
        assert!(authenticates(&secret(&later), &token, now).is_some());
    }
}
