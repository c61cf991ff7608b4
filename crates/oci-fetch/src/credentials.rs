//! Registry credentials as the kubelet and the docker CLI keep them: docker config files
//! (`config.json`, a `kubernetes.io/dockerconfigjson` Secret's `.dockerconfigjson`, the legacy
//! `.dockercfg`) and the [`Keyring`] that picks the credentials for an image the way the kubelet's
//! `credentialprovider` does.
//!
//! ```
//! use herd_oci_fetch::{DockerConfig, Keyring};
//!
//! let config = DockerConfig::from_config_json(
//!     br#"{"auths": {"registry.example.com:5000": {"auth": "YWxpY2U6czNjcmV0"}}}"#,
//! )?;
//! let mut keyring = Keyring::default();
//! keyring.add(&config);
//! let found = keyring.lookup("registry.example.com:5000/team/app:v1");
//! assert_eq!(found[0].username, "alice");
//! assert!(keyring.lookup("other.example.com/app").is_empty());
//! # Ok::<(), herd_oci_fetch::CredentialsError>(())
//! ```

use std::collections::BTreeMap;

use base64::Engine as _;
use serde::Deserialize;

/// A username and password for a registry (HTTP basic credentials, which oci-client also trades for
/// a bearer token where the registry asks for one).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Credential {
    pub username: String,
    pub password: String,
}

impl Credential {
    pub fn new(username: impl Into<String>, password: impl Into<String>) -> Self {
        Credential {
            username: username.into(),
            password: password.into(),
        }
    }

    /// The `auth` field of a docker config entry: base64 of `username:password`.
    pub fn to_auth(&self) -> String {
        base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", self.username, self.password))
    }
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// A docker config that does not parse.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    /// Not JSON of the expected shape.
    #[error("invalid docker config: {0}")]
    Json(String),
    /// An entry's `auth` field is not base64 of `username:password` (the kubelet's wording).
    #[error("invalid docker config entry for {registry:?}: {message}")]
    Auth { registry: String, message: String },
    /// The config file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

/// The entries of a docker config: registry key (`host[:port][/path]`, optionally with a scheme,
/// as written) → credential, in the order of the keys.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DockerConfig {
    pub entries: BTreeMap<String, Credential>,
}

/// One entry as written: `auth` wins over `username`/`password` when present, as in the kubelet.
#[derive(Deserialize)]
struct Entry {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    auth: Option<String>,
}

#[derive(Deserialize)]
struct ConfigJson {
    auths: Option<BTreeMap<String, Entry>>,
}

impl DockerConfig {
    /// `{"auths": {KEY: ENTRY}}`: a `kubernetes.io/dockerconfigjson` Secret's `.dockerconfigjson`,
    /// and the docker CLI's `config.json` (credential helpers and other fields are ignored, as the
    /// kubelet ignores them). A file without `auths` is read as the legacy `.dockercfg` layout.
    ///
    /// # Errors
    /// [`CredentialsError`] when the JSON does not parse or an `auth` field is malformed.
    pub fn from_config_json(bytes: &[u8]) -> Result<Self, CredentialsError> {
        let parsed: ConfigJson =
            serde_json::from_slice(bytes).map_err(|e| CredentialsError::Json(e.to_string()))?;
        match parsed.auths {
            Some(auths) => Self::from_entries(auths),
            None => Self::from_dockercfg(bytes),
        }
    }

    /// `{KEY: ENTRY}`: a `kubernetes.io/dockercfg` Secret's `.dockercfg`.
    ///
    /// # Errors
    /// [`CredentialsError`] when the JSON does not parse or an `auth` field is malformed.
    pub fn from_dockercfg(bytes: &[u8]) -> Result<Self, CredentialsError> {
        let entries: BTreeMap<String, Entry> =
            serde_json::from_slice(bytes).map_err(|e| CredentialsError::Json(e.to_string()))?;
        Self::from_entries(entries)
    }

    fn from_entries(entries: BTreeMap<String, Entry>) -> Result<Self, CredentialsError> {
        let mut out = BTreeMap::new();
        for (registry, entry) in entries {
            let credential = match entry.auth.as_deref().filter(|a| !a.is_empty()) {
                Some(auth) => decode_auth(auth).map_err(|message| CredentialsError::Auth {
                    registry: registry.clone(),
                    message,
                })?,
                None => Credential::new(entry.username, entry.password),
            };
            out.insert(registry, credential);
        }
        Ok(DockerConfig { entries: out })
    }

    /// The docker CLI's `config.json` holding these entries (`{"auths": {KEY: {"auth": …}}}`).
    pub fn to_config_json(&self) -> serde_json::Value {
        let auths: serde_json::Map<String, serde_json::Value> = self
            .entries
            .iter()
            .map(|(k, c)| (k.clone(), serde_json::json!({ "auth": c.to_auth() })))
            .collect();
        serde_json::json!({ "auths": auths })
    }
}

/// Records `credential` for `registry` in the docker CLI's config file at `path`, as `docker login`
/// does: `auths.<registry>.auth` is set to base64(`username:password`), every other field and entry
/// of an existing file is kept, and the file is written atomically with mode 0600 (its directory
/// created 0700 if missing).
///
/// # Errors
/// [`CredentialsError::Json`] if the existing file is not a JSON object (it is left as it is);
/// [`CredentialsError::Io`] if it cannot be read or written.
pub fn save_login(
    path: &std::path::Path,
    registry: &str,
    credential: &Credential,
) -> Result<(), CredentialsError> {
    let io = |source| CredentialsError::Io {
        path: path.display().to_string(),
        source,
    };
    let mut config = match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice::<serde_json::Value>(&bytes)
            .map_err(|e| CredentialsError::Json(format!("{}: {e}", path.display())))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => serde_json::json!({}),
        Err(e) => return Err(io(e)),
    };
    let Some(object) = config.as_object_mut() else {
        return Err(CredentialsError::Json(format!(
            "{}: not a JSON object",
            path.display()
        )));
    };
    let auths = object
        .entry("auths")
        .or_insert_with(|| serde_json::json!({}));
    if !auths.is_object() {
        *auths = serde_json::json!({});
    }
    if let Some(auths) = auths.as_object_mut() {
        auths.insert(
            registry.to_string(),
            serde_json::json!({ "auth": credential.to_auth() }),
        );
    }
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
        && !dir.exists()
    {
        use std::os::unix::fs::DirBuilderExt as _;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io)?;
    }
    let mut bytes =
        serde_json::to_vec_pretty(&config).map_err(|e| CredentialsError::Json(e.to_string()))?;
    bytes.push(b'\n');
    herd_atomic_file::write_private(path, &bytes).map_err(io)
}

/// base64(`username:password`), split at the first `:`.
fn decode_auth(auth: &str) -> Result<Credential, String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(auth.trim())
        .map_err(|e| format!("the auth field is not base64: {e}"))?;
    let text = String::from_utf8(bytes).map_err(|_| "the auth field is not UTF-8".to_string())?;
    match text.split_once(':') {
        Some((user, pass)) => Ok(Credential::new(user, pass)),
        None => Err(
            "unable to parse auth field, must be formatted as base64(username:password)"
                .to_string(),
        ),
    }
}

/// Docker Hub's key in docker config files, and the host the kubelet files it under.
const DEFAULT_REGISTRY_KEY: &str = "https://index.docker.io/v1/";
const DEFAULT_REGISTRY_HOST: &str = "index.docker.io";

/// Credentials by registry key, matched to images as the kubelet's `BasicDockerKeyring`: a key is
/// `host[:port]` with an optional scheme (ignored) and path prefix (`/v1/` and `/v2/` mean none);
/// a host label may be a glob (`*.example.com` matches `a.example.com`, not `a.b.example.com`); the
/// port must be the same; more specific keys (reverse lexical order) come first, and every key that
/// matches contributes its credential, tried in turn.
#[derive(Debug, Clone, Default)]
pub struct Keyring {
    /// (normalized key, credential) in the order they were added.
    entries: Vec<(String, Credential)>,
}

impl Keyring {
    /// Adds every entry of `config` (after those already there).
    pub fn add(&mut self, config: &DockerConfig) {
        for (key, credential) in &config.entries {
            if let Some(key) = normalize_key(key) {
                self.entries.push((key, credential.clone()));
            }
        }
    }

    /// Adds `other`'s entries after this keyring's (the kubelet's union of a pod's secrets and the
    /// node's credentials: the pod's are tried first).
    pub fn extend(&mut self, other: &Keyring) {
        self.entries.extend(other.entries.iter().cloned());
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The credentials for `image` (`registry/repository[:tag][@digest]`), most specific key first;
    /// empty means an anonymous pull.
    pub fn lookup(&self, image: &str) -> Vec<Credential> {
        let target = match image.parse::<oci_client::Reference>() {
            Ok(r) => format!("{}/{}", r.registry(), r.repository()),
            Err(_) => image.to_string(),
        };
        let mut keys: Vec<&str> = self.entries.iter().map(|(k, _)| k.as_str()).collect();
        keys.sort_unstable();
        keys.dedup();
        keys.reverse();
        let mut found: Vec<Credential> = Vec::new();
        let mut push = |key: &str| {
            for (k, c) in &self.entries {
                if k == key && !found.contains(c) {
                    found.push(c.clone());
                }
            }
        };
        // Docker Hub's credentials serve every image without a registry host.
        if is_default_registry(&target) && keys.contains(&DEFAULT_REGISTRY_HOST) {
            push(DEFAULT_REGISTRY_HOST);
            return found;
        }
        for key in keys {
            if urls_match(key, &target) {
                push(key);
            }
        }
        found
    }
}

/// The kubelet's key for a docker config key: `host` or `host/path`, scheme dropped, `/v1/` or
/// `/v2/` dropped from the path; `None` for a key with no host.
fn normalize_key(key: &str) -> Option<String> {
    if key == DEFAULT_REGISTRY_KEY {
        return Some(DEFAULT_REGISTRY_HOST.to_string());
    }
    let (host, path) = split_host_path(key);
    if host.is_empty() {
        return None;
    }
    let path = path
        .strip_prefix("/v2/")
        .or_else(|| path.strip_prefix("/v1/"))
        .map_or(path, |rest| &path[path.len() - rest.len() - 1..]);
    if path.is_empty() || path == "/" {
        Some(host.to_string())
    } else {
        Some(format!("{host}{path}"))
    }
}

/// `https://host:port/path` or `host:port/path` → (`host:port`, `/path`).
fn split_host_path(url: &str) -> (&str, &str) {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .unwrap_or(url);
    match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    }
}

/// Whether an image (`host/repo` form) is on Docker Hub (no host, or `docker.io`).
fn is_default_registry(image: &str) -> bool {
    let Some((first, _)) = image.split_once('/') else {
        return !image.is_empty();
    };
    if first.is_empty() {
        return false;
    }
    first == "docker.io"
        || first == DEFAULT_REGISTRY_HOST
        || (!first.contains(['.', ':']) && first != "localhost")
}

/// The kubelet's `URLsMatchStr`: same port, as many host labels, each matching as a glob, and the
/// target's path starting with the key's.
fn urls_match(glob: &str, target: &str) -> bool {
    let (glob_host, glob_path) = split_host_path(glob);
    let (target_host, target_path) = split_host_path(target);
    let (glob_name, glob_port) = split_port(glob_host);
    let (target_name, target_port) = split_port(target_host);
    if glob_port != target_port || !target_path.starts_with(glob_path) {
        return false;
    }
    let glob_labels: Vec<&str> = glob_name.split('.').collect();
    let target_labels: Vec<&str> = target_name.split('.').collect();
    glob_labels.len() == target_labels.len()
        && glob_labels
            .iter()
            .zip(&target_labels)
            .all(|(g, t)| glob_match(g.as_bytes(), t.as_bytes()))
}

fn split_port(host: &str) -> (&str, &str) {
    match host.rsplit_once(':') {
        Some((name, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => {
            (name, port)
        }
        _ => (host, ""),
    }
}

/// `filepath.Match` over one host label: `*` any run of characters, `?` one character; host names
/// hold no `[`, so character classes are not needed.
fn glob_match(glob: &[u8], text: &[u8]) -> bool {
    match glob.split_first() {
        None => text.is_empty(),
        Some((b'*', rest)) => (0..=text.len()).any(|i| glob_match(rest, &text[i..])),
        Some((b'?', rest)) => !text.is_empty() && glob_match(rest, &text[1..]),
        Some((c, rest)) => text
            .split_first()
            .is_some_and(|(t, tail)| t.eq_ignore_ascii_case(c) && glob_match(rest, tail)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keyring(keys: &[(&str, &str)]) -> Keyring {
        let mut entries = BTreeMap::new();
        for (key, user) in keys {
            entries.insert(key.to_string(), Credential::new(*user, "pw"));
        }
        let mut keyring = Keyring::default();
        keyring.add(&DockerConfig { entries });
        keyring
    }

    fn users(keyring: &Keyring, image: &str) -> Vec<String> {
        keyring
            .lookup(image)
            .into_iter()
            .map(|c| c.username)
            .collect()
    }

    #[test]
    fn dockerconfigjson_as_kubectl_writes_it() {
        // `kubectl create secret docker-registry --docker-server=127.0.0.1:5000 --docker-username=alice
        // --docker-password=s3cret --docker-email=a@example.com`
        let json = br#"{"auths":{"127.0.0.1:5000":{"username":"alice","password":"s3cret","email":"a@example.com","auth":"YWxpY2U6czNjcmV0"}}}"#;
        let config = DockerConfig::from_config_json(json).unwrap();
        assert_eq!(
            config.entries["127.0.0.1:5000"],
            Credential::new("alice", "s3cret")
        );
    }

    #[test]
    fn auth_wins_and_splits_at_the_first_colon() {
        // base64("bob:pa:ss")
        let json =
            br#"{"auths":{"r.example.com":{"username":"x","password":"y","auth":"Ym9iOnBhOnNz"}}}"#;
        let config = DockerConfig::from_config_json(json).unwrap();
        assert_eq!(
            config.entries["r.example.com"],
            Credential::new("bob", "pa:ss")
        );
        // Only username and password.
        let json = br#"{"auths":{"r.example.com":{"username":"x","password":"y"}}}"#;
        let config = DockerConfig::from_config_json(json).unwrap();
        assert_eq!(config.entries["r.example.com"], Credential::new("x", "y"));
    }

    #[test]
    fn legacy_dockercfg_has_no_auths_wrapper() {
        let cfg = br#"{"https://index.docker.io/v1/":{"auth":"YWxpY2U6czNjcmV0","email":"a@b"}}"#;
        let config = DockerConfig::from_dockercfg(cfg).unwrap();
        assert_eq!(
            config.entries["https://index.docker.io/v1/"],
            Credential::new("alice", "s3cret")
        );
        // config.json without `auths` (an old ~/.dockercfg) reads the same.
        assert_eq!(DockerConfig::from_config_json(cfg).unwrap(), config);
    }

    #[test]
    fn malformed_configs_are_errors_not_panics() {
        for bad in [
            &b"not json"[..],
            br#"{"auths": []}"#,
            br#"{"auths":{"r":{"auth":"!!!"}}}"#,
            // base64("nocolon")
            br#"{"auths":{"r":{"auth":"bm9jb2xvbg=="}}}"#,
            br#"["x"]"#,
        ] {
            assert!(
                DockerConfig::from_config_json(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        let err = DockerConfig::from_config_json(br#"{"auths":{"r":{"auth":"bm9jb2xvbg=="}}}"#)
            .unwrap_err();
        assert!(
            err.to_string().contains("base64(username:password)"),
            "{err}"
        );
    }

    #[test]
    fn config_json_round_trips() {
        let mut entries = BTreeMap::new();
        entries.insert("127.0.0.1:5000".to_string(), Credential::new("u", "p:w"));
        let config = DockerConfig { entries };
        let json = serde_json::to_vec(&config.to_config_json()).unwrap();
        assert_eq!(DockerConfig::from_config_json(&json).unwrap(), config);
    }

    #[test]
    fn keys_match_host_and_port_with_or_without_scheme() {
        let k = keyring(&[("https://127.0.0.1:5000", "a"), ("other.io", "b")]);
        assert_eq!(users(&k, "127.0.0.1:5000/app:v1"), ["a"]);
        assert_eq!(users(&k, "127.0.0.1:5000/team/app@sha256:00"), ["a"]);
        // Another port, or none, is another registry.
        assert!(users(&k, "127.0.0.1:5001/app").is_empty());
        assert!(users(&k, "127.0.0.1/app").is_empty());
        assert_eq!(users(&k, "other.io/x/y:1"), ["b"]);
        assert!(users(&k, "sub.other.io/x").is_empty());
        let k = keyring(&[("http://reg.lan:5000/", "a")]);
        assert_eq!(users(&k, "reg.lan:5000/app"), ["a"]);
    }

    #[test]
    fn path_prefixes_and_the_more_specific_key_first() {
        let k = keyring(&[
            ("quay.io", "any"),
            ("quay.io/team", "team"),
            ("quay.io/v2/", "v2-is-the-host"),
        ]);
        assert_eq!(
            users(&k, "quay.io/team/app"),
            ["team", "any", "v2-is-the-host"]
        );
        assert_eq!(users(&k, "quay.io/other/app"), ["any", "v2-is-the-host"]);
    }

    #[test]
    fn wildcards_match_one_label_each() {
        let k = keyring(&[("*.example.com", "wild"), ("reg-?.lan", "q")]);
        assert_eq!(users(&k, "a.example.com/app"), ["wild"]);
        assert_eq!(users(&k, "A.Example.COM/app"), ["wild"]);
        assert!(users(&k, "example.com/app").is_empty());
        assert!(users(&k, "a.b.example.com/app").is_empty());
        assert!(users(&k, "a.example.com:5000/app").is_empty());
        assert_eq!(users(&k, "reg-1.lan/app"), ["q"]);
        assert!(users(&k, "reg-12.lan/app").is_empty());
    }

    #[test]
    fn docker_hub_images_use_the_index_key() {
        let k = keyring(&[("https://index.docker.io/v1/", "hub"), ("ghcr.io", "gh")]);
        assert_eq!(users(&k, "nginx"), ["hub"]);
        assert_eq!(users(&k, "library/nginx:1"), ["hub"]);
        assert_eq!(users(&k, "docker.io/team/app"), ["hub"]);
        assert_eq!(users(&k, "ghcr.io/team/app"), ["gh"]);
        assert!(users(&k, "localhost:5000/app").is_empty());
    }

    #[test]
    fn union_tries_the_pods_credentials_before_the_nodes() {
        let mut pod = keyring(&[("127.0.0.1:5000", "pod")]);
        let node = keyring(&[("127.0.0.1:5000", "node")]);
        pod.extend(&node);
        assert_eq!(users(&pod, "127.0.0.1:5000/app"), ["pod", "node"]);
    }

    #[test]
    fn save_login_keeps_the_rest_of_the_file_and_is_private() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("docker/config.json");
        save_login(&path, "127.0.0.1:5000", &Credential::new("a", "1")).unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            std::fs::metadata(path.parent().unwrap())
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o700
        );
        std::fs::write(
            &path,
            r#"{"credsStore":"x","auths":{"ghcr.io":{"auth":"Z2g6cA=="}}}"#,
        )
        .unwrap();
        save_login(&path, "127.0.0.1:5000", &Credential::new("b", "2")).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(json["credsStore"], "x");
        let config = DockerConfig::from_config_json(text.as_bytes()).unwrap();
        assert_eq!(config.entries["ghcr.io"], Credential::new("gh", "p"));
        assert_eq!(config.entries["127.0.0.1:5000"], Credential::new("b", "2"));
        std::fs::write(&path, "[]").unwrap();
        assert!(save_login(&path, "r", &Credential::new("c", "3")).is_err());
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "[]",
            "left as it was"
        );
    }

    #[test]
    fn debug_never_shows_the_password() {
        let shown = format!("{:?}", Credential::new("alice", "s3cret"));
        assert!(!shown.contains("s3cret"), "{shown}");
    }
}
