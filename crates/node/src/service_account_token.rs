//! ServiceAccount tokens for projected volumes, as the kubelet's token manager: the node asks the
//! TokenRequest API (`POST .../serviceaccounts/NAME/token`) for a token of the pod's ServiceAccount,
//! bound to the pod (name and uid), with the source's audience and lifetime, and gets a new one when
//! 80% of its lifetime has passed or it is older than 24 hours ([`refresh_at`]).

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use kube::api::{Api, PostParams};

/// kube's default `expirationSeconds` of a serviceAccountToken projection (one hour).
pub const DEFAULT_EXPIRATION_SECONDS: i64 = 3600;

/// The kubelet refreshes a token older than this whatever its lifetime.
const MAX_TOKEN_AGE: SignedDuration = SignedDuration::from_hours(24);

/// What a token is requested with: one token per distinct (audience, lifetime) of the pod's sources.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct TokenKey {
    /// The source's audience; empty for the API server's own.
    pub audience: String,
    pub expiration_seconds: i64,
}

/// A token the API issued and when the node gets the next one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IssuedToken {
    pub token: String,
    pub refresh_at: Timestamp,
}

/// The pod's current tokens by what they were requested with.
pub type Tokens = BTreeMap<TokenKey, IssuedToken>;

/// When the kubelet's token manager replaces a token expiring at `expiration` that was issued for
/// `expiration_seconds`: once 80% of its lifetime has passed, or 24 h after it was issued, whichever
/// comes first (`requiresRefresh` in kubelet's token manager).
#[must_use]
pub fn refresh_at(expiration: Timestamp, expiration_seconds: i64) -> Timestamp {
    let lifetime = SignedDuration::from_secs(expiration_seconds.max(0));
    let issued = expiration - lifetime;
    let at_80_percent = expiration - SignedDuration::from_secs(expiration_seconds.max(0) / 5);
    at_80_percent.min(issued + MAX_TOKEN_AGE)
}

/// The token keys of `pod`'s projected volumes' serviceAccountToken sources.
pub fn token_keys(pod: &Pod) -> Vec<TokenKey> {
    let mut keys: Vec<TokenKey> = pod
        .spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .filter_map(|v| v.projected.as_ref())
        .flat_map(|p| p.sources.iter().flatten())
        .filter_map(|s| s.service_account_token.as_ref())
        .map(|t| TokenKey {
            audience: t.audience.clone().unwrap_or_default(),
            expiration_seconds: t.expiration_seconds.unwrap_or(DEFAULT_EXPIRATION_SECONDS),
        })
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

/// How many TokenRequests the node has in flight at once. A thousand pods starting together would
/// otherwise open a thousand connections (a TLS handshake and buffers each) for one request apiece; as the
/// kubelet's client-side rate limit does, a few connections carry them all in turn.
pub const TOKEN_REQUESTS_IN_FLIGHT: usize = 16;

/// Requests tokens from the API server with the node's client.
#[derive(Clone)]
pub struct TokenSource {
    client: kube::Client,
    /// Turns to send a TokenRequest: at most [`TOKEN_REQUESTS_IN_FLIGHT`] at once.
    in_flight: std::sync::Arc<tokio::sync::Semaphore>,
}

impl TokenSource {
    pub fn new(client: kube::Client) -> Self {
        Self {
            client,
            in_flight: std::sync::Arc::new(tokio::sync::Semaphore::new(TOKEN_REQUESTS_IN_FLIGHT)),
        }
    }

    /// A token of `pod`'s ServiceAccount (`spec.serviceAccountName`, else `default`) bound to the pod.
    ///
    /// # Errors
    ///
    /// The API's refusal or a transport error, worded for the kubelet's `failed to fetch token: …`.
    pub async fn request(&self, pod: &Pod, key: &TokenKey) -> Result<IssuedToken, String> {
        let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
        let account = pod
            .spec
            .as_ref()
            .and_then(|s| s.service_account_name.as_deref())
            .filter(|n| !n.is_empty())
            .unwrap_or("default");
        let request = TokenRequest {
            spec: Some(TokenRequestSpec {
                audiences: (!key.audience.is_empty()).then(|| vec![key.audience.clone()]),
                expiration_seconds: Some(key.expiration_seconds),
                bound_object_ref: Some(BoundObjectReference {
                    api_version: Some("v1".into()),
                    kind: Some("Pod".into()),
                    name: pod.metadata.name.clone(),
                    uid: pod.metadata.uid.clone(),
                }),
                ..TokenRequestSpec::default()
            }),
            ..TokenRequest::default()
        };
        let api: Api<ServiceAccount> = Api::namespaced(self.client.clone(), namespace);
        let _turn = self
            .in_flight
            .acquire()
            .await
            .map_err(|e| format!("the node is stopping: {e}"))?;
        let issued = api
            .create_token_request(account, &PostParams::default(), &request)
            .await
            .map_err(|e| match e {
                kube::Error::Api(status) => status.message,
                other => other.to_string(),
            })?;
        let status = issued
            .status
            .ok_or_else(|| "the TokenRequest API answered no status".to_owned())?;
        let (Some(token), Some(expiration)) = (status.token, status.expiration_timestamp) else {
            return Err("the TokenRequest API answered no token".to_owned());
        };
        let expiration = expiration.0;
        // The API may shorten the lifetime; the refresh follows what was issued.
        let lifetime = issued
            .spec
            .and_then(|s| s.expiration_seconds)
            .unwrap_or(key.expiration_seconds);
        Ok(IssuedToken {
            token,
            refresh_at: refresh_at(expiration, lifetime),
        })
    }

    /// Every token `pod`'s projected volumes need.
    ///
    /// # Errors
    ///
    /// As [`TokenSource::request`], for the first that fails.
    pub async fn request_all(&self, pod: &Pod) -> Result<Tokens, String> {
        let mut tokens = Tokens::new();
        for key in token_keys(pod) {
            let token = self.request(pod, &key).await?;
            tokens.insert(key, token);
        }
        tracing::debug!(pod = ?pod.metadata.name, tokens = tokens.len(), "service account tokens issued");
        Ok(tokens)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn at(s: &str) -> Timestamp {
        s.parse().expect("timestamp")
    }

    #[test]
    fn refresh_after_80_percent_of_the_lifetime() {
        // kube's default projection: 3607 s (a bit over an hour), refreshed 721 s before expiry.
        assert_eq!(
            refresh_at(at("2026-01-01T01:00:07Z"), 3607),
            at("2026-01-01T00:48:06Z")
        );
        // kube's minimum, 10 minutes: after 8.
        assert_eq!(
            refresh_at(at("2026-01-01T00:10:00Z"), 600),
            at("2026-01-01T00:08:00Z")
        );
    }

    #[test]
    fn refresh_after_24_hours_whatever_the_lifetime() {
        // A 7-day token is issued 2026-01-01 and replaced a day later, not after 5.6 days.
        assert_eq!(
            refresh_at(at("2026-01-08T00:00:00Z"), 7 * 24 * 3600),
            at("2026-01-02T00:00:00Z")
        );
        // 30 h: 80% is 24 h exactly.
        assert_eq!(
            refresh_at(at("2026-01-02T06:00:00Z"), 30 * 3600),
            at("2026-01-02T00:00:00Z")
        );
    }

    #[test]
    fn one_token_per_audience_and_lifetime() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p"},
            "spec": {"containers": [], "volumes": [
                {"name": "a", "projected": {"sources": [
                    {"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}},
                    {"serviceAccountToken": {"path": "vault", "audience": "vault"}},
                ]}},
                {"name": "b", "projected": {"sources": [
                    {"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}},
                ]}},
                {"name": "c", "emptyDir": {}},
            ]},
        }))
        .expect("pod");
        assert_eq!(
            token_keys(&pod),
            [
                TokenKey {
                    audience: String::new(),
                    expiration_seconds: 3607
                },
                TokenKey {
                    audience: "vault".into(),
                    expiration_seconds: DEFAULT_EXPIRATION_SECONDS
                },
            ]
        );
    }
}
