//! Encryption at rest, as kube-apiserver's `--encryption-provider-config`: an `EncryptionConfiguration`
//! (`apiserver.config.k8s.io/v1`, YAML or JSON) names, per resource, a list of providers. The first provider
//! of a resource's list encrypts what is written; every provider of the list may read (chosen by the prefix
//! of what is stored), so keys rotate as in kube: put a new key first, rewrite the objects, drop the old key.
//!
//! What is stored is kube's format, byte for byte:
//! - `aescbc`: `k8s:enc:aescbc:v1:<key name>:` + a random 16-byte IV + AES-CBC with PKCS#7 padding (16-, 24- or
//!   32-byte keys);
//! - `secretbox`: `k8s:enc:secretbox:v1:<key name>:` + a random 24-byte nonce + XSalsa20-Poly1305 (NaCl's
//!   secretbox, tag first; 32-byte keys);
//! - `identity`: the JSON document as it is.
//!
//! A resource no rule names is `identity` only. As in kube, `identity` reads only what does not start with
//! `k8s:enc:`, and a stored value no provider of the resource's list can read (an unknown prefix, a key no
//! longer listed, a failed decryption, or plain data when `identity` is not listed) is an error for that
//! object — never a panic, never handed on as plain. The store ([`crate::store`]) calls [`Encryption::seal`]
//! before writing and [`Encryption::open`] after reading: nothing above it sees ciphertext.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use aes::cipher::block_padding::Pkcs7;
use aes::cipher::{BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use base64::Engine as _;
use crypto_secretbox::XSalsa20Poly1305;
use crypto_secretbox::aead::{Aead, KeyInit};
use rand::RngCore;
use serde::Deserialize;

/// What every encrypted value starts with.
const ENCRYPTED: &[u8] = b"k8s:enc:";
/// The `apiVersion` of an `EncryptionConfiguration`.
const API_VERSION: &str = "apiserver.config.k8s.io/v1";
const AES_BLOCK: usize = 16;
const SECRETBOX_NONCE: usize = 24;

/// Why an encryption configuration cannot be used: the file and what is wrong with it, on one line.
#[derive(Debug, thiserror::Error)]
#[error("encryption provider config {}: {why}", path.display())]
pub struct ConfigError {
    pub path: PathBuf,
    pub why: String,
}

/// Why a stored value cannot be read (kube's transformer errors).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    /// It starts with no prefix the resource's providers know (kube's words).
    #[error("no matching prefix found")]
    NoMatchingPrefix,
    /// The key's prefix matched but the data does not decrypt with it.
    #[error("{provider} key {key:?}: {why}")]
    Decrypt {
        provider: &'static str,
        key: String,
        why: &'static str,
    },
}

/// The encryption of every resource: the rules of an `EncryptionConfiguration`, in order (the first rule
/// naming a resource decides). [`Encryption::default`] is identity for everything.
#[derive(Default)]
pub struct Encryption {
    rules: Vec<Rule>,
}

impl std::fmt::Debug for Encryption {
    // Never prints key material.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encryption")
            .field("rules", &self.rules.len())
            .finish()
    }
}

struct Rule {
    resources: Vec<Pattern>,
    providers: Arc<Providers>,
}

/// A name in a rule's `resources`, as kube matches them.
enum Pattern {
    /// `secrets`, `deployments.apps`: the store's key of one resource.
    Exact(String),
    /// `*.apps` (every resource of a group) or `*.` (every resource of the core group).
    Group(String),
    /// `*.*`: every resource.
    All,
}

impl Pattern {
    fn matches(&self, resource: &str) -> bool {
        match self {
            Self::Exact(r) => r == resource,
            Self::Group(g) => match resource.split_once('.') {
                Some((_, group)) => group == g,
                None => g.is_empty(),
            },
            Self::All => true,
        }
    }
}

/// One resource's providers, in order: the first writes, all read.
pub struct Providers {
    list: Vec<Provider>,
}

enum Provider {
    Identity,
    AesCbc(Vec<AesKey>),
    Secretbox(Vec<SecretboxKey>),
}

struct AesKey {
    name: String,
    /// `k8s:enc:aescbc:v1:<name>:`
    prefix: Vec<u8>,
    key: AesBytes,
}

enum AesBytes {
    A128([u8; 16]),
    A192([u8; 24]),
    A256([u8; 32]),
}

struct SecretboxKey {
    name: String,
    /// `k8s:enc:secretbox:v1:<name>:`
    prefix: Vec<u8>,
    cipher: XSalsa20Poly1305,
}

impl Encryption {
    /// Reads and checks an `EncryptionConfiguration` file.
    ///
    /// # Errors
    /// An unreadable file, bad YAML or JSON, an unknown or unsupported provider, a key of the wrong length or
    /// not base64: a [`ConfigError`] naming the file and what is wrong.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let fail = |why: String| ConfigError {
            path: path.to_path_buf(),
            why,
        };
        let text = std::fs::read_to_string(path).map_err(|e| fail(format!("reading: {e}")))?;
        Self::parse(&text).map_err(fail)
    }

    /// Parses and checks the text of an `EncryptionConfiguration` (YAML or JSON).
    ///
    /// # Errors
    /// What is wrong, on one line.
    pub fn parse(text: &str) -> Result<Self, String> {
        let config: ConfigFile = serde_yaml::from_str(text).map_err(|e| {
            format!(
                "not an EncryptionConfiguration: {}",
                one_line(&e.to_string())
            )
        })?;
        if config.kind != "EncryptionConfiguration" {
            return Err(format!(
                "kind is {:?}, expected \"EncryptionConfiguration\"",
                config.kind
            ));
        }
        if config.api_version != API_VERSION {
            return Err(format!(
                "apiVersion is {:?}, expected {API_VERSION:?}",
                config.api_version
            ));
        }
        if config.resources.is_empty() {
            return Err("resources: must name at least one entry".to_string());
        }
        let mut rules = Vec::with_capacity(config.resources.len());
        for (i, entry) in config.resources.into_iter().enumerate() {
            let at = format!("resources[{i}]");
            if entry.resources.is_empty() {
                return Err(format!("{at}.resources: must name at least one resource"));
            }
            if entry.providers.is_empty() {
                return Err(format!("{at}.providers: must name at least one provider"));
            }
            let resources = entry
                .resources
                .iter()
                .enumerate()
                .map(|(j, r)| pattern(r).map_err(|why| format!("{at}.resources[{j}]: {why}")))
                .collect::<Result<Vec<_>, _>>()?;
            let list = entry
                .providers
                .iter()
                .enumerate()
                .map(|(j, p)| provider(p).map_err(|why| format!("{at}.providers[{j}]{why}")))
                .collect::<Result<Vec<_>, _>>()?;
            rules.push(Rule {
                resources,
                providers: Arc::new(Providers { list }),
            });
        }
        Ok(Self { rules })
    }

    /// Whether any resource is encrypted when written.
    pub fn encrypts(&self) -> bool {
        self.rules
            .iter()
            .any(|r| !matches!(r.providers.list.first(), Some(Provider::Identity) | None))
    }

    /// The providers of `resource` (the first rule naming it), `None` when no rule does (identity).
    fn providers(&self, resource: &str) -> Option<&Arc<Providers>> {
        self.rules
            .iter()
            .find(|r| r.resources.iter().any(|p| p.matches(resource)))
            .map(|r| &r.providers)
    }

    /// What encrypts `resource`'s writes: `None` when they are stored as they are (identity first, or no
    /// rule for it) — then nothing is copied.
    pub fn sealer(&self, resource: &str) -> Option<Arc<Providers>> {
        self.providers(resource)
            .filter(|p| !matches!(p.list.first(), Some(Provider::Identity) | None))
            .cloned()
    }

    /// Whether a stored value of `resource` is not in the form its writes take now (another key or provider
    /// than the first, or plain where the first provider encrypts, or encrypted where identity is first):
    /// kube's "stale", which makes an unchanged update write it again, re-encrypted.
    pub fn is_stale(&self, resource: &str, stored: &[u8]) -> bool {
        let encrypted = stored.starts_with(ENCRYPTED);
        match self.providers(resource).and_then(|p| p.list.first()) {
            None | Some(Provider::Identity) => encrypted,
            Some(Provider::AesCbc(keys)) => {
                !keys.first().is_some_and(|k| stored.starts_with(&k.prefix))
            }
            Some(Provider::Secretbox(keys)) => {
                !keys.first().is_some_and(|k| stored.starts_with(&k.prefix))
            }
        }
    }

    /// A stored value of `resource` as plain JSON: borrowed when it was stored plain.
    ///
    /// # Errors
    /// When no provider of the resource's list reads it.
    pub fn open<'a>(&self, resource: &str, stored: &'a [u8]) -> Result<Cow<'a, [u8]>, OpenError> {
        let encrypted = stored.starts_with(ENCRYPTED);
        match self.providers(resource) {
            // Identity alone: only what is not encrypted.
            None if encrypted => Err(OpenError::NoMatchingPrefix),
            None => Ok(Cow::Borrowed(stored)),
            Some(providers) => providers.open(stored, encrypted),
        }
    }
}

impl Providers {
    /// Encrypts `plain` with the first provider's first key, in kube's stored format.
    pub fn seal(&self, plain: &[u8]) -> Vec<u8> {
        match self.list.first() {
            Some(Provider::AesCbc(keys)) => {
                let key = &keys[0];
                let mut iv = [0u8; AES_BLOCK];
                rand::rng().fill_bytes(&mut iv);
                let mut out =
                    Vec::with_capacity(key.prefix.len() + AES_BLOCK + plain.len() + AES_BLOCK);
                out.extend_from_slice(&key.prefix);
                out.extend_from_slice(&iv);
                let sealed = match &key.key {
                    AesBytes::A128(k) => cbc::Encryptor::<aes::Aes128>::new(k.into(), &iv.into())
                        .encrypt_padded_vec_mut::<Pkcs7>(plain),
                    AesBytes::A192(k) => cbc::Encryptor::<aes::Aes192>::new(k.into(), &iv.into())
                        .encrypt_padded_vec_mut::<Pkcs7>(plain),
                    AesBytes::A256(k) => cbc::Encryptor::<aes::Aes256>::new(k.into(), &iv.into())
                        .encrypt_padded_vec_mut::<Pkcs7>(plain),
                };
                out.extend_from_slice(&sealed);
                out
            }
            Some(Provider::Secretbox(keys)) => {
                let key = &keys[0];
                let mut nonce = [0u8; SECRETBOX_NONCE];
                rand::rng().fill_bytes(&mut nonce);
                let sealed = key
                    .cipher
                    .encrypt(&nonce.into(), plain)
                    // Only a plaintext beyond 256 GiB fails.
                    .unwrap_or_default();
                let mut out = Vec::with_capacity(key.prefix.len() + SECRETBOX_NONCE + sealed.len());
                out.extend_from_slice(&key.prefix);
                out.extend_from_slice(&nonce);
                out.extend_from_slice(&sealed);
                out
            }
            // `Encryption::sealer` hands out no identity-first list.
            Some(Provider::Identity) | None => plain.to_vec(),
        }
    }

    /// Reads `stored` with the provider its prefix names (kube's prefix transformers, in list order).
    fn open<'a>(&self, stored: &'a [u8], encrypted: bool) -> Result<Cow<'a, [u8]>, OpenError> {
        for provider in &self.list {
            match provider {
                Provider::Identity if !encrypted => return Ok(Cow::Borrowed(stored)),
                Provider::Identity => {}
                Provider::AesCbc(keys) => {
                    if let Some(key) = keys.iter().find(|k| stored.starts_with(&k.prefix)) {
                        return aescbc_open(key, &stored[key.prefix.len()..]).map(Cow::Owned);
                    }
                }
                Provider::Secretbox(keys) => {
                    if let Some(key) = keys.iter().find(|k| stored.starts_with(&k.prefix)) {
                        return secretbox_open(key, &stored[key.prefix.len()..]).map(Cow::Owned);
                    }
                }
            }
        }
        Err(OpenError::NoMatchingPrefix)
    }
}

fn aescbc_open(key: &AesKey, data: &[u8]) -> Result<Vec<u8>, OpenError> {
    let fail = |why| OpenError::Decrypt {
        provider: "aescbc",
        key: key.name.clone(),
        why,
    };
    if data.len() < 2 * AES_BLOCK {
        return Err(fail("the stored data was shorter than the required size"));
    }
    let (iv, sealed) = data.split_at(AES_BLOCK);
    if sealed.len() % AES_BLOCK != 0 {
        return Err(fail("invalid block size"));
    }
    let iv: &[u8; AES_BLOCK] = iv.try_into().map_err(|_| fail("invalid IV"))?;
    let plain = match &key.key {
        AesBytes::A128(k) => cbc::Decryptor::<aes::Aes128>::new(k.into(), iv.into())
            .decrypt_padded_vec_mut::<Pkcs7>(sealed),
        AesBytes::A192(k) => cbc::Decryptor::<aes::Aes192>::new(k.into(), iv.into())
            .decrypt_padded_vec_mut::<Pkcs7>(sealed),
        AesBytes::A256(k) => cbc::Decryptor::<aes::Aes256>::new(k.into(), iv.into())
            .decrypt_padded_vec_mut::<Pkcs7>(sealed),
    };
    plain.map_err(|_| fail("invalid PKCS7 data (empty or not padded)"))
}

fn secretbox_open(key: &SecretboxKey, data: &[u8]) -> Result<Vec<u8>, OpenError> {
    let fail = |why| OpenError::Decrypt {
        provider: "secretbox",
        key: key.name.clone(),
        why,
    };
    if data.len() < SECRETBOX_NONCE {
        return Err(fail("the stored data was shorter than the required size"));
    }
    let (nonce, sealed) = data.split_at(SECRETBOX_NONCE);
    let nonce: &[u8; SECRETBOX_NONCE] = nonce.try_into().map_err(|_| fail("invalid nonce"))?;
    key.cipher
        .decrypt(nonce.into(), sealed)
        .map_err(|_| fail("output array was not large enough for encryption"))
}

/// One name of a rule's `resources`.
fn pattern(name: &str) -> Result<Pattern, String> {
    if name.is_empty() {
        return Err("must not be empty".to_string());
    }
    if name != name.to_ascii_lowercase() {
        return Err(format!("{name:?} must be lowercase, as resources are"));
    }
    Ok(match name {
        "*.*" => Pattern::All,
        _ => match name.strip_prefix("*.") {
            Some(group) if group.contains('*') => {
                return Err(format!("{name:?} is not a resource, *.GROUP, *. or *.*"));
            }
            Some(group) => Pattern::Group(group.to_string()),
            None if name.contains('*') => {
                return Err(format!("{name:?} is not a resource, *.GROUP, *. or *.*"));
            }
            None => Pattern::Exact(name.to_string()),
        },
    })
}

/// One entry of a rule's `providers`; the error starts with the part of the path after `providers[j]`.
fn provider(entry: &serde_yaml::Mapping) -> Result<Provider, String> {
    let mut fields = entry.iter();
    let (Some((name, body)), None) = (fields.next(), fields.next()) else {
        return Err(": must name exactly one provider".to_string());
    };
    let name = name.as_str().unwrap_or_default();
    let keys = |body: &serde_yaml::Value| -> Result<Vec<KeyEntry>, String> {
        let with: KeysConfig = serde_yaml::from_value(body.clone())
            .map_err(|e| format!(".{name}: {}", one_line(&e.to_string())))?;
        if with.keys.is_empty() {
            return Err(format!(".{name}.keys: must name at least one key"));
        }
        let mut seen = std::collections::HashSet::new();
        for (k, key) in with.keys.iter().enumerate() {
            if key.name.is_empty() {
                return Err(format!(".{name}.keys[{k}].name: must not be empty"));
            }
            if key.name.contains(':') {
                return Err(format!(".{name}.keys[{k}].name: must not contain ':'"));
            }
            if !seen.insert(key.name.as_str()) {
                return Err(format!(
                    ".{name}.keys[{k}].name: {:?} is named twice",
                    key.name
                ));
            }
        }
        Ok(with.keys)
    };
    let secret = |k: usize, key: &KeyEntry, sizes: &[usize]| -> Result<Vec<u8>, String> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(key.secret.trim())
            .map_err(|e| format!(".{name}.keys[{k}].secret: not base64: {e}"))?;
        if sizes.contains(&bytes.len()) {
            Ok(bytes)
        } else {
            Err(format!(
                ".{name}.keys[{k}].secret: secret is not of the expected length, got {}, expected one of {sizes:?}",
                bytes.len()
            ))
        }
    };
    match name {
        "identity" => Ok(Provider::Identity),
        "aescbc" => {
            let mut out = Vec::new();
            for (k, key) in keys(body)?.into_iter().enumerate() {
                let bytes = secret(k, &key, &[16, 24, 32])?;
                let key_bytes = match bytes.len() {
                    16 => AesBytes::A128(bytes.try_into().unwrap_or_default()),
                    24 => AesBytes::A192(bytes.try_into().unwrap_or([0; 24])),
                    _ => AesBytes::A256(bytes.try_into().unwrap_or_default()),
                };
                out.push(AesKey {
                    prefix: format!("k8s:enc:aescbc:v1:{}:", key.name).into_bytes(),
                    name: key.name,
                    key: key_bytes,
                });
            }
            Ok(Provider::AesCbc(out))
        }
        "secretbox" => {
            let mut out = Vec::new();
            for (k, key) in keys(body)?.into_iter().enumerate() {
                let bytes: [u8; 32] = secret(k, &key, &[32])?.try_into().unwrap_or_default();
                out.push(SecretboxKey {
                    prefix: format!("k8s:enc:secretbox:v1:{}:", key.name).into_bytes(),
                    name: key.name,
                    cipher: XSalsa20Poly1305::new(&bytes.into()),
                });
            }
            Ok(Provider::Secretbox(out))
        }
        "aesgcm" | "kms" => Err(format!(
            ".{name}: provider {name:?} is not supported (aescbc, secretbox and identity are)"
        )),
        other => Err(format!(
            ": unknown provider {other:?} (aescbc, secretbox and identity are supported)"
        )),
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConfigFile {
    #[serde(default)]
    kind: String,
    #[serde(default)]
    api_version: String,
    #[serde(default)]
    resources: Vec<ResourceConfig>,
}

#[derive(Deserialize)]
struct ResourceConfig {
    #[serde(default)]
    resources: Vec<String>,
    #[serde(default)]
    providers: Vec<serde_yaml::Mapping>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeysConfig {
    #[serde(default)]
    keys: Vec<KeyEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyEntry {
    name: String,
    secret: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY32: &str = "c2VjcmV0IGlzIHNlY3VyZSwgb3IgaXMgaXQ/IDMyYis="; // 32 bytes
    const KEY16: &str = "MDEyMzQ1Njc4OWFiY2RlZg=="; // 16 bytes

    fn config(providers: &str) -> String {
        format!(
            "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n- resources: [secrets]\n  providers:\n{providers}"
        )
    }

    #[test]
    fn the_test_keys_have_their_lengths() {
        let engine = base64::engine::general_purpose::STANDARD;
        assert_eq!(engine.decode(KEY32).unwrap().len(), 32);
        assert_eq!(engine.decode(KEY16).unwrap().len(), 16);
    }

    #[test]
    fn aescbc_round_trips_in_kubes_format() {
        for key in [KEY32, KEY16] {
            let enc = Encryption::parse(&config(&format!(
                "  - aescbc:\n      keys:\n      - name: k1\n        secret: {key}\n"
            )))
            .unwrap();
            let sealed = enc.sealer("secrets").unwrap().seal(b"{\"a\":1}");
            assert!(sealed.starts_with(b"k8s:enc:aescbc:v1:k1:"));
            // Prefix, IV, one padded block.
            assert_eq!(sealed.len(), "k8s:enc:aescbc:v1:k1:".len() + 16 + 16);
            assert_eq!(&*enc.open("secrets", &sealed).unwrap(), b"{\"a\":1}");
            assert!(enc.sealer("configmaps").is_none());
        }
    }

    #[test]
    fn secretbox_round_trips_and_detects_tampering() {
        let enc = Encryption::parse(&config(&format!(
            "  - secretbox:\n      keys:\n      - name: sb\n        secret: {KEY32}\n"
        )))
        .unwrap();
        let mut sealed = enc.sealer("secrets").unwrap().seal(b"{}");
        assert!(sealed.starts_with(b"k8s:enc:secretbox:v1:sb:"));
        assert_eq!(sealed.len(), "k8s:enc:secretbox:v1:sb:".len() + 24 + 16 + 2);
        assert_eq!(&*enc.open("secrets", &sealed).unwrap(), b"{}");
        let last = sealed.len() - 1;
        sealed[last] ^= 1;
        assert!(matches!(
            enc.open("secrets", &sealed),
            Err(OpenError::Decrypt { .. })
        ));
    }

    #[test]
    fn reads_need_a_listed_provider() {
        let enc = Encryption::parse(&config(&format!(
            "  - aescbc:\n      keys:\n      - name: k1\n        secret: {KEY32}\n"
        )))
        .unwrap();
        // Plain data without identity in the list, an unknown key, an unknown provider: kube's error.
        for stored in [
            &b"{}"[..],
            b"k8s:enc:aescbc:v1:k2:0123456789abcdef0123456789abcdef",
            b"k8s:enc:kms:v2:x:abc",
        ] {
            assert_eq!(
                enc.open("secrets", stored),
                Err(OpenError::NoMatchingPrefix)
            );
        }
        // A resource no rule names is identity: plain only.
        assert_eq!(&*enc.open("configmaps", b"{}").unwrap(), b"{}");
        assert_eq!(
            Encryption::default().open("secrets", b"k8s:enc:aescbc:v1:k1:xx"),
            Err(OpenError::NoMatchingPrefix)
        );
        // Truncated ciphertext is an error, not a panic.
        for stored in [
            &b"k8s:enc:aescbc:v1:k1:"[..],
            b"k8s:enc:aescbc:v1:k1:0123456789abcdef0123",
        ] {
            assert!(matches!(
                enc.open("secrets", stored),
                Err(OpenError::Decrypt { .. })
            ));
        }
    }

    #[test]
    fn identity_first_writes_plain_and_reads_both() {
        let enc = Encryption::parse(&config(&format!(
            "  - identity: {{}}\n  - aescbc:\n      keys:\n      - name: k1\n        secret: {KEY32}\n"
        )))
        .unwrap();
        assert!(enc.sealer("secrets").is_none());
        assert!(!enc.encrypts());
        let other = Encryption::parse(&config(&format!(
            "  - aescbc:\n      keys:\n      - name: k1\n        secret: {KEY32}\n"
        )))
        .unwrap();
        let sealed = other.sealer("secrets").unwrap().seal(b"{}");
        assert_eq!(&*enc.open("secrets", &sealed).unwrap(), b"{}");
        assert!(matches!(enc.open("secrets", b"{}"), Ok(Cow::Borrowed(_))));
        // Encrypted data is stale under identity-first, plain data under an encrypting first provider.
        assert!(enc.is_stale("secrets", &sealed) && !enc.is_stale("secrets", b"{}"));
        assert!(other.is_stale("secrets", b"{}") && !other.is_stale("secrets", &sealed));
        assert!(!Encryption::default().is_stale("pods", b"{}"));
    }

    #[test]
    fn wildcards_match_as_kubes() {
        let enc = Encryption::parse(&format!(
            "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n- resources: ['*.apps', '*.']\n  providers:\n  - secretbox:\n      keys: [{{name: a, secret: {KEY32}}}]\n"
        ))
        .unwrap();
        assert!(enc.sealer("deployments.apps").is_some());
        assert!(enc.sealer("configmaps").is_some());
        assert!(enc.sealer("jobs.batch").is_none());
        let all = Encryption::parse(&format!(
            "{{\"apiVersion\":\"apiserver.config.k8s.io/v1\",\"kind\":\"EncryptionConfiguration\",\"resources\":[{{\"resources\":[\"*.*\"],\"providers\":[{{\"aescbc\":{{\"keys\":[{{\"name\":\"a\",\"secret\":\"{KEY32}\"}}]}}}}]}}]}}"
        ))
        .unwrap();
        assert!(all.sealer("jobs.batch").is_some() && all.encrypts());
    }

    #[test]
    fn bad_configs_say_what_is_wrong() {
        let cases = [
            ("kind: Pod\napiVersion: v1\n".to_string(), "kind is \"Pod\""),
            ("[1, 2".to_string(), "not an EncryptionConfiguration"),
            (
                config("  - aescbc:\n      keys:\n      - name: k\n        secret: MTIz\n"),
                "resources[0].providers[0].aescbc.keys[0].secret: secret is not of the expected length, got 3",
            ),
            (
                config(&format!(
                    "  - secretbox:\n      keys:\n      - name: k\n        secret: {KEY16}\n"
                )),
                "secretbox.keys[0].secret: secret is not of the expected length, got 16, expected one of [32]",
            ),
            (
                config("  - rot13: {}\n"),
                "resources[0].providers[0]: unknown provider \"rot13\"",
            ),
            (
                config("  - kms: {name: x}\n"),
                "provider \"kms\" is not supported",
            ),
            (
                config("  - aescbc:\n      keys:\n      - name: k\n        secret: '%%%'\n"),
                "not base64",
            ),
            (
                config("  - aescbc: {keys: []}\n"),
                "must name at least one key",
            ),
        ];
        for (text, want) in cases {
            let err = Encryption::parse(&text).err().unwrap();
            assert!(err.contains(want), "{err:?} should contain {want:?}");
            assert!(!err.contains('\n'), "{err:?} is one line");
        }
    }
}
