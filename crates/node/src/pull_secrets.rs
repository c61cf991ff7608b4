//! Which registry credentials a pod's pulls use, as the kubelet decides them: the pod's
//! `spec.imagePullSecrets` (Secrets of type `kubernetes.io/dockerconfigjson`, key `.dockerconfigjson`,
//! or the legacy `kubernetes.io/dockercfg`, key `.dockercfg`), read from the node's one cache of
//! Secrets (`reflector`: a pod registers its pull secrets with its other Secrets, so nothing GETs
//! them), then the node's own docker `config.json` (`--registry-config`, as the kubelet's
//! `--root-dir/config.json`), read afresh at each pull that goes to a registry. The two keyrings are
//! joined as the kubelet's union keyring: every credential matching the image is tried in turn, the
//! pod's first. A ServiceAccount's `imagePullSecrets` reach the pod through the API server's
//! ServiceAccount admission, which copies them into a pod that has none.

use std::collections::BTreeMap;
use std::path::PathBuf;

use herd_oci_fetch::{DockerConfig, Keyring};
use k8s_openapi::api::core::v1::{Pod, Secret};

const DOCKER_CONFIG_JSON_TYPE: &str = "kubernetes.io/dockerconfigjson";
const DOCKER_CONFIG_JSON_KEY: &str = ".dockerconfigjson";
const DOCKERCFG_TYPE: &str = "kubernetes.io/dockercfg";
const DOCKERCFG_KEY: &str = ".dockercfg";

/// The names of `pod`'s `spec.imagePullSecrets`, once each.
pub(crate) fn pull_secret_names(pod: &Pod) -> Vec<String> {
    let mut names: Vec<String> = pod
        .spec
        .iter()
        .flat_map(|s| s.image_pull_secrets.iter().flatten())
        .map(|r| r.name.clone())
        .filter(|n| !n.is_empty())
        .collect();
    names.sort();
    names.dedup();
    names
}

/// A pod's keyring from its pull secrets as the cache has them.
#[derive(Debug, Default)]
pub(crate) struct PodKeyring {
    pub keyring: Keyring,
    /// Pull secrets the API server does not have (the kubelet warns and pulls without them).
    pub missing: Vec<String>,
}

/// The keyring of `pod`'s image pull secrets; `secrets` holds the Secrets of the pod's namespace the
/// cache has (others are left out). A Secret of another type, or without its key, adds nothing, as in
/// the kubelet.
///
/// # Errors
/// A pull secret whose docker config does not parse (the kubelet fails the pull with it).
pub(crate) fn pod_keyring(
    pod: &Pod,
    secrets: &BTreeMap<String, Secret>,
) -> Result<PodKeyring, String> {
    let mut out = PodKeyring::default();
    for name in pull_secret_names(pod) {
        let Some(secret) = secrets.get(&name) else {
            out.missing.push(name);
            continue;
        };
        if let Some(config) =
            secret_docker_config(secret).map_err(|e| format!("image pull secret {name:?}: {e}"))?
        {
            out.keyring.add(&config);
        }
    }
    Ok(out)
}

/// The docker config a pull secret holds, if it is of one of the two types and has its key.
fn secret_docker_config(secret: &Secret) -> Result<Option<DockerConfig>, String> {
    let data = |key: &str| {
        secret
            .data
            .as_ref()
            .and_then(|d| d.get(key))
            .map(|b| b.0.as_slice())
            .filter(|b| !b.is_empty())
    };
    match secret.type_.as_deref() {
        Some(DOCKER_CONFIG_JSON_TYPE) => data(DOCKER_CONFIG_JSON_KEY)
            .map(DockerConfig::from_config_json)
            .transpose()
            .map_err(|e| e.to_string()),
        Some(DOCKERCFG_TYPE) => data(DOCKERCFG_KEY)
            .map(DockerConfig::from_dockercfg)
            .transpose()
            .map_err(|e| e.to_string()),
        _ => Ok(None),
    }
}

/// The node's own registry credentials: a docker `config.json` read at each pull that goes to a
/// registry, so an edit takes effect without a restart. A file that is missing adds nothing; one
/// that does not parse is logged and adds nothing.
#[derive(Debug, Clone, Default)]
pub(crate) struct NodeCredentials {
    pub path: Option<PathBuf>,
}

impl NodeCredentials {
    pub async fn keyring(&self) -> Keyring {
        let mut keyring = Keyring::default();
        let Some(path) = &self.path else {
            return keyring;
        };
        match tokio::fs::read(path).await {
            Ok(bytes) => match DockerConfig::from_config_json(&bytes) {
                Ok(config) => keyring.add(&config),
                Err(error) => {
                    tracing::warn!(path = %path.display(), %error, "ignoring the node's registry credentials")
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => {
                tracing::warn!(path = %path.display(), %error, "cannot read the node's registry credentials")
            }
        }
        keyring
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::ByteString;
    use serde_json::json;

    use super::*;

    fn secret(type_: &str, key: &str, value: &str) -> Secret {
        Secret {
            type_: Some(type_.to_string()),
            data: Some([(key.to_string(), ByteString(value.as_bytes().to_vec()))].into()),
            ..Secret::default()
        }
    }

    fn pod(pull_secrets: &[&str]) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "default"},
            "spec": {
                "containers": [{"name": "c", "image": "127.0.0.1:5000/app:v1"}],
                "imagePullSecrets": pull_secrets.iter().map(|n| json!({"name": n})).collect::<Vec<_>>(),
            },
        }))
        .unwrap()
    }

    fn users(keyring: &Keyring, image: &str) -> Vec<String> {
        keyring
            .lookup(image)
            .into_iter()
            .map(|c| c.username)
            .collect()
    }

    #[test]
    fn both_secret_types_and_missing_ones() {
        let secrets = BTreeMap::from([
            (
                "json".to_string(),
                secret(
                    DOCKER_CONFIG_JSON_TYPE,
                    DOCKER_CONFIG_JSON_KEY,
                    r#"{"auths":{"127.0.0.1:5000":{"username":"alice","password":"a"}}}"#,
                ),
            ),
            (
                "cfg".to_string(),
                secret(
                    DOCKERCFG_TYPE,
                    DOCKERCFG_KEY,
                    r#"{"127.0.0.1:5000":{"auth":"Ym9iOmI="}}"#,
                ),
            ),
            // Opaque, or the right type with the wrong key: nothing.
            (
                "opaque".to_string(),
                secret(
                    "Opaque",
                    DOCKER_CONFIG_JSON_KEY,
                    r#"{"auths":{"127.0.0.1:5000":{"username":"eve","password":"e"}}}"#,
                ),
            ),
            (
                "wrongkey".to_string(),
                secret(
                    DOCKER_CONFIG_JSON_TYPE,
                    DOCKERCFG_KEY,
                    r#"{"127.0.0.1:5000":{"username":"eve","password":"e"}}"#,
                ),
            ),
        ]);
        let got = pod_keyring(
            &pod(&["json", "cfg", "opaque", "wrongkey", "gone"]),
            &secrets,
        )
        .unwrap();
        assert_eq!(got.missing, ["gone"]);
        let mut found = users(&got.keyring, "127.0.0.1:5000/app:v1");
        found.sort();
        assert_eq!(found, ["alice", "bob"]);
        assert!(users(&got.keyring, "127.0.0.1:5001/app:v1").is_empty());
        assert!(pod_keyring(&pod(&[]), &secrets).unwrap().keyring.is_empty());
    }

    #[test]
    fn a_malformed_pull_secret_fails_the_pull_naming_it() {
        let secrets = BTreeMap::from([(
            "bad".to_string(),
            secret(DOCKER_CONFIG_JSON_TYPE, DOCKER_CONFIG_JSON_KEY, "{not json"),
        )]);
        let err = pod_keyring(&pod(&["bad"]), &secrets).unwrap_err();
        assert!(err.contains("image pull secret \"bad\""), "{err}");
    }

    #[tokio::test]
    async fn the_node_file_is_read_at_each_pull() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        let node = NodeCredentials {
            path: Some(path.clone()),
        };
        assert!(node.keyring().await.is_empty(), "no file, no credentials");
        std::fs::write(&path, r#"{"auths":{"127.0.0.1:5000":{"auth":"bm9kZTpu"}}}"#).unwrap();
        assert_eq!(users(&node.keyring().await, "127.0.0.1:5000/app"), ["node"]);
        std::fs::write(&path, "garbage").unwrap();
        assert!(node.keyring().await.is_empty(), "a bad file adds nothing");
    }
}
