//! Bootstrap tokens (kube's `bootstrap.kubernetes.io/token`): `ID.SECRET`, six and sixteen characters of
//! `[a-z0-9]`, kept by the control plane as the Secret `kube-system/bootstrap-token-<ID>`; and the detached
//! JWS (HS256, keyed by the token's secret) the bootstrap signer puts beside the `cluster-info` kubeconfig,
//! which a joining node checks before it trusts what it was shown (kubeadm's token discovery).

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::PkiError;

/// The Secret name prefix of a bootstrap token (`bootstrap-token-<id>`).
pub const SECRET_PREFIX: &str = "bootstrap-token-";
/// The Secret type of bootstrap tokens.
pub const SECRET_TYPE: &str = "bootstrap.kubernetes.io/token";
/// The user name prefix a bootstrap token authenticates as (`system:bootstrap:<id>`).
pub const USER_PREFIX: &str = "system:bootstrap:";
/// The group every bootstrap token is in; extra groups must start with it and a colon.
pub const GROUP: &str = "system:bootstrappers";
/// herd's default extra group of the tokens `herd token create` makes (kubeadm's is
/// `system:bootstrappers:kubeadm:default-node-token`).
pub const DEFAULT_NODE_TOKEN_GROUP: &str = "system:bootstrappers:herd:default-node-token";

const ID_LEN: usize = 6;
const SECRET_LEN: usize = 16;
const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";

/// A bootstrap token, `ID.SECRET`.
#[derive(Clone, PartialEq, Eq)]
pub struct BootstrapToken {
    pub id: String,
    pub secret: String,
}

impl fmt::Debug for BootstrapToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BootstrapToken")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for BootstrapToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.id, self.secret)
    }
}

/// Whether `s` is `len` characters of `[a-z0-9]`.
fn of_alphabet(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| ALPHABET.contains(&b))
}

/// Whether `id` is a token ID (`[a-z0-9]{6}`).
#[must_use]
pub fn valid_id(id: &str) -> bool {
    of_alphabet(id, ID_LEN)
}

/// Whether `secret` is a token secret (`[a-z0-9]{16}`).
#[must_use]
pub fn valid_secret(secret: &str) -> bool {
    of_alphabet(secret, SECRET_LEN)
}

impl BootstrapToken {
    /// A new random token.
    #[must_use]
    pub fn generate() -> Self {
        let pick = |n: usize| -> String {
            (0..n)
                .map(|_| char::from(ALPHABET[rand::random_range(0..ALPHABET.len())]))
                .collect()
        };
        Self {
            id: pick(ID_LEN),
            secret: pick(SECRET_LEN),
        }
    }

    /// The name of the Secret that holds this token.
    #[must_use]
    pub fn secret_name(&self) -> String {
        format!("{SECRET_PREFIX}{}", self.id)
    }

    /// The user this token authenticates as.
    #[must_use]
    pub fn user(&self) -> String {
        format!("{USER_PREFIX}{}", self.id)
    }
}

impl FromStr for BootstrapToken {
    type Err = PkiError;

    /// `ID.SECRET` exactly (kube's `^([a-z0-9]{6})\.([a-z0-9]{16})$`).
    fn from_str(s: &str) -> Result<Self, PkiError> {
        match s.split_once('.') {
            Some((id, secret)) if valid_id(id) && valid_secret(secret) => Ok(Self {
                id: id.to_owned(),
                secret: secret.to_owned(),
            }),
            _ => Err(PkiError::invalid(
                "the bootstrap token",
                "it is not of the form [a-z0-9]{6}.[a-z0-9]{16}",
            )),
        }
    }
}

/// kube's `jws.ComputeDetachedSignature`: the compact JWS of `content` (HS256, header
/// `{"alg":"HS256","kid":"<token id>"}`, keyed by the token's secret) without its payload
/// (`header..signature`).
#[must_use]
pub fn detached_jws(content: &str, token: &BootstrapToken) -> String {
    let header = URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"HS256","kid":"{}"}}"#, token.id));
    let payload = URL_SAFE_NO_PAD.encode(content);
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, token.secret.as_bytes());
    let tag = aws_lc_rs::hmac::sign(&key, format!("{header}.{payload}").as_bytes());
    format!("{header}..{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
}

/// kubeadm's `DetachedTokenIsValid`: whether `jws` is the detached signature of `content` by `token`
/// (the signature compared in constant time).
#[must_use]
pub fn verify_detached_jws(jws: &str, content: &str, token: &BootstrapToken) -> bool {
    let Some((header, signature)) = jws.split_once("..") else {
        return false;
    };
    let Ok(signature) = URL_SAFE_NO_PAD.decode(signature) else {
        return false;
    };
    let expected_header =
        URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"HS256","kid":"{}"}}"#, token.id));
    if header != expected_header {
        return false;
    }
    let payload = URL_SAFE_NO_PAD.encode(content);
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, token.secret.as_bytes());
    aws_lc_rs::hmac::verify(&key, format!("{header}.{payload}").as_bytes(), &signature).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_parse_as_kube_reads_them() {
        let token = BootstrapToken::generate();
        assert_eq!(
            token.to_string().parse::<BootstrapToken>().ok(),
            Some(token.clone())
        );
        assert_eq!(token.secret_name(), format!("bootstrap-token-{}", token.id));
        for bad in [
            "abcdef.0123456789abcdeF",
            "abcde.0123456789abcdef",
            "abcdef0123456789abcdef",
            "abcdef.0123456789abcdef0",
            "",
        ] {
            assert!(bad.parse::<BootstrapToken>().is_err(), "{bad}");
        }
    }

    #[test]
    fn detached_jws_matches_kubes_and_verifies_only_with_its_token() {
        // Computed apart (Python's hmac over the same compact serialization go-jose produces).
        let token: BootstrapToken = "abcdef.abcdef0123456789".parse().expect("token");
        let jws = detached_jws("Hello, World!", &token);
        assert_eq!(
            jws,
            "eyJhbGciOiJIUzI1NiIsImtpZCI6ImFiY2RlZiJ9..TAHNfQ43_HWAZuxYDYMmi80fY4rl0vNAXSJLsnz9sN4"
        );
        assert!(verify_detached_jws(&jws, "Hello, World!", &token));
        assert!(!verify_detached_jws(&jws, "Hello, World?", &token));
        let other: BootstrapToken = "abcdef.abcdef0123456780".parse().expect("token");
        assert!(!verify_detached_jws(&jws, "Hello, World!", &other));
    }
}
