//! The ServiceAccount token key: kube-apiserver's `--service-account-key-file`/`--service-account-signing-key-file`
//! pair as one ECDSA P-256 key in `<data dir>/pki/sa.key` (created once, mode 0600), signing and verifying
//! compact JWS tokens with ES256 (RFC 7515/7518). What the claims say is the API server's business; this
//! module only vouches that a token was signed by this key and has not been altered.

use std::path::Path;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _,
    UnparsedPublicKey,
};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::pem::PemObject as _;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::PkiError;

/// Why a token is not one this key signed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("the token is not a compact JWS")]
    Malformed,
    #[error("the token's header is not ES256 with this key's id")]
    OtherKey,
    #[error("the token's signature does not verify")]
    Signature,
}

/// The key that signs and verifies ServiceAccount tokens.
pub struct TokenKey {
    key: EcdsaKeyPair,
    /// JWS `kid`: base64url of the SHA-256 of the public key (kube derives its key id from the public key
    /// too).
    kid: String,
}

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl TokenKey {
    /// Loads `<data_dir>/pki/sa.key`, or creates it (mode 0600) when there is none. The directory is the
    /// CA's (see [`crate::ClusterCa::load_or_create`]).
    ///
    /// # Errors
    /// [`PkiError::Io`] for file failures, [`PkiError::Invalid`] for a key file that is no P-256 PKCS#8 key.
    pub fn load_or_create(data_dir: &Path) -> Result<Self, PkiError> {
        let dir = data_dir.join("pki");
        {
            use std::os::unix::fs::DirBuilderExt as _;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dir)
                .map_err(PkiError::io(&dir))?;
        }
        let path = dir.join("sa.key");
        match std::fs::read_to_string(&path) {
            Ok(pem) => Self::from_pem(&pem),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let pem = new_key_pem()?;
                herd_atomic_file::write_private(&path, pem.as_bytes())
                    .map_err(PkiError::io(&path))?;
                Self::from_pem(&pem)
            }
            Err(e) => Err(PkiError::Io { path, source: e }),
        }
    }

    /// A new key, in memory only.
    ///
    /// # Errors
    /// [`PkiError::Generate`] if key generation fails.
    pub fn generate() -> Result<Self, PkiError> {
        Self::from_pem(&new_key_pem()?)
    }

    /// A key from its PKCS#8 PEM.
    ///
    /// # Errors
    /// [`PkiError::Invalid`] if the PEM holds no P-256 PKCS#8 key.
    pub fn from_pem(pem: &str) -> Result<Self, PkiError> {
        let der = PrivateKeyDer::from_pem_slice(pem.as_bytes())
            .map_err(|e| PkiError::invalid("the ServiceAccount key PEM", e))?;
        let PrivateKeyDer::Pkcs8(der) = der else {
            return Err(PkiError::invalid(
                "the ServiceAccount key",
                "it is not a PKCS#8 key",
            ));
        };
        let key =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der.secret_pkcs8_der())
                .map_err(|e| PkiError::invalid("the ServiceAccount key", e))?;
        let kid = URL_SAFE_NO_PAD.encode(Sha256::digest(key.public_key().as_ref()));
        Ok(Self { key, kid })
    }

    /// The key id tokens carry in their header.
    #[must_use]
    pub fn key_id(&self) -> &str {
        &self.kid
    }

    /// A compact JWS of `claims`: `header.payload.signature`, ES256.
    ///
    /// # Errors
    /// [`PkiError::Invalid`] if signing fails (it does not with a valid key).
    pub fn sign(&self, claims: &Value) -> Result<String, PkiError> {
        let header = json!({"alg": "ES256", "kid": self.kid});
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = self
            .key
            .sign(&SystemRandom::new(), signing_input.as_bytes())
            .map_err(|e| PkiError::invalid("the token signature", e))?;
        Ok(format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature.as_ref())
        ))
    }

    /// The claims of `token` if this key signed it as it is.
    ///
    /// # Errors
    /// [`TokenError`] when it is no JWS, names another key or algorithm, or its signature fails.
    pub fn verify(&self, token: &str) -> Result<Value, TokenError> {
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        let decode = |part: &str| {
            URL_SAFE_NO_PAD
                .decode(part)
                .map_err(|_| TokenError::Malformed)
        };
        let header: Value =
            serde_json::from_slice(&decode(header)?).map_err(|_| TokenError::Malformed)?;
        if header["alg"] != "ES256" || header["kid"] != self.kid.as_str() {
            return Err(TokenError::OtherKey);
        }
        let signing_input = &token[..token.len() - signature.len() - 1];
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, self.key.public_key().as_ref())
            .verify(signing_input.as_bytes(), &decode(signature)?)
            .map_err(|_| TokenError::Signature)?;
        serde_json::from_slice(&decode(payload)?).map_err(|_| TokenError::Malformed)
    }
}

fn new_key_pem() -> Result<String, PkiError> {
    Ok(rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?.serialize_pem())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_verify_only_as_signed_and_only_with_their_key() {
        let dir = tempfile::tempdir().expect("dir");
        let key = TokenKey::load_or_create(dir.path()).expect("key");
        let claims = json!({"sub": "system:serviceaccount:default:app", "exp": 2_000_000_000});
        let token = key.sign(&claims).expect("signed");
        assert_eq!(key.verify(&token), Ok(claims));
        // The same key again from its file.
        let again = TokenKey::load_or_create(dir.path()).expect("reloaded");
        assert_eq!(again.key_id(), key.key_id());
        assert!(again.verify(&token).is_ok());
        // A changed payload, another key, and garbage are refused.
        let mut parts: Vec<&str> = token.split('.').collect();
        let forged = URL_SAFE_NO_PAD.encode(r#"{"sub":"system:serviceaccount:kube-system:admin"}"#);
        parts[1] = &forged;
        assert_eq!(key.verify(&parts.join(".")), Err(TokenError::Signature));
        let other = tempfile::tempdir().expect("dir");
        let other = TokenKey::load_or_create(other.path()).expect("key");
        assert_eq!(other.verify(&token), Err(TokenError::OtherKey));
        assert_eq!(key.verify("a.b"), Err(TokenError::Malformed));
        assert_eq!(key.verify("…"), Err(TokenError::Malformed));
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(dir.path().join("pki/sa.key"))
            .expect("key file")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
