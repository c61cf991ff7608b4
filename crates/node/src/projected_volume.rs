//! The files of a `projected` volume, as the kubelet's projected volume plugin: the union of its
//! sources — secret and configMap (from the node's shared cache), downwardAPI (the pod's fields,
//! resource requests and limits) and serviceAccountToken (a token the node requested, see
//! `service_account_token`) — each file with `mode`, else the volume's `defaultMode`, else 0644.
//!
//! A pure function of the pod, the objects and the tokens at hand; `pod_volumes` writes the files.

use std::collections::BTreeMap;
use std::path::PathBuf;

use k8s_openapi::api::core::v1::{
    ConfigMapVolumeSource, KeyToPath, Pod, ProjectedVolumeSource, SecretVolumeSource,
};

use crate::pod_env::{ConfigObjects, EnvFacts, field_value, find_container, resource_value};
use crate::pod_volumes::{VolumeError, config_map_files, safe_relative, secret_files};
use crate::service_account_token::{DEFAULT_EXPIRATION_SECONDS, TokenKey, Tokens};

/// kube's `defaultMode` of projected (and secret, configMap, downwardAPI) volumes.
pub const DEFAULT_MODE: u32 = 0o644;

/// One file of a projected volume.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProjectedFile {
    pub content: Vec<u8>,
    pub mode: u32,
}

/// The files of projected volume `volume` of `pod`, by path relative to the volume.
///
/// # Errors
///
/// A missing non-optional Secret, ConfigMap or key, a bad item path, a downwardAPI field kube does
/// not offer in volumes, or a token the node does not hold (its request failed).
pub fn projected_files(
    volume: &str,
    source: &ProjectedVolumeSource,
    pod: &Pod,
    facts: &EnvFacts,
    objects: &ConfigObjects,
    tokens: &Tokens,
) -> Result<BTreeMap<PathBuf, ProjectedFile>, VolumeError> {
    let default_mode = mode_bits(source.default_mode).unwrap_or(DEFAULT_MODE);
    let mut files = BTreeMap::new();
    for projection in source.sources.iter().flatten() {
        if let Some(s) = &projection.secret {
            let as_volume = SecretVolumeSource {
                secret_name: Some(s.name.clone()),
                items: s.items.clone(),
                optional: s.optional,
                ..Default::default()
            };
            let found = secret_files(volume, &as_volume, objects.secrets.get(&s.name))?;
            add_keyed(&mut files, found, s.items.as_deref(), default_mode);
        }
        if let Some(c) = &projection.config_map {
            let as_volume = ConfigMapVolumeSource {
                name: c.name.clone(),
                items: c.items.clone(),
                optional: c.optional,
                ..Default::default()
            };
            let found = config_map_files(volume, &as_volume, objects.config_maps.get(&c.name))?;
            add_keyed(&mut files, found, c.items.as_deref(), default_mode);
        }
        if let Some(d) = &projection.downward_api {
            for item in d.items.iter().flatten() {
                let path = safe_relative(&item.path).ok_or_else(|| VolumeError::BadItemPath {
                    volume: volume.to_owned(),
                    path: item.path.clone(),
                })?;
                let content = if let Some(field) = &item.field_ref {
                    if !volume_field(&field.field_path) {
                        return Err(VolumeError::DownwardApi(format!(
                            "fieldPath {:?} is not supported in a downwardAPI volume",
                            field.field_path
                        )));
                    }
                    field_value(field, pod, facts)
                        .map_err(|e| VolumeError::DownwardApi(e.to_string()))?
                } else if let Some(field) = &item.resource_field_ref {
                    let name = field.container_name.as_deref().unwrap_or_default();
                    let container = find_container(pod, name).ok_or_else(|| {
                        VolumeError::DownwardApi(format!(
                            "resourceFieldRef: container {name:?} not found in the pod"
                        ))
                    })?;
                    resource_value(field, container, pod, &facts.allocatable)
                        .map_err(|e| VolumeError::DownwardApi(e.to_string()))?
                } else {
                    return Err(VolumeError::DownwardApi(format!(
                        "item {:?} has neither fieldRef nor resourceFieldRef",
                        item.path
                    )));
                };
                let mode = mode_bits(item.mode).unwrap_or(default_mode);
                files.insert(
                    path,
                    ProjectedFile {
                        content: content.into_bytes(),
                        mode,
                    },
                );
            }
        }
        if let Some(t) = &projection.service_account_token {
            let path = safe_relative(&t.path).ok_or_else(|| VolumeError::BadItemPath {
                volume: volume.to_owned(),
                path: t.path.clone(),
            })?;
            let key = TokenKey {
                audience: t.audience.clone().unwrap_or_default(),
                expiration_seconds: t.expiration_seconds.unwrap_or(DEFAULT_EXPIRATION_SECONDS),
            };
            let token = tokens
                .get(&key)
                .ok_or_else(|| VolumeError::Token("no token was issued".to_owned()))?;
            files.insert(
                path,
                ProjectedFile {
                    content: token.token.clone().into_bytes(),
                    mode: default_mode,
                },
            );
        }
    }
    Ok(files)
}

/// Adds a Secret's or ConfigMap's projected files, each with its item's `mode` (matched by the path
/// it was projected to) or `default_mode`.
fn add_keyed(
    files: &mut BTreeMap<PathBuf, ProjectedFile>,
    found: BTreeMap<PathBuf, Vec<u8>>,
    items: Option<&[KeyToPath]>,
    default_mode: u32,
) {
    for (path, content) in found {
        let mode = items
            .into_iter()
            .flatten()
            .find(|i| safe_relative(&i.path).as_ref() == Some(&path))
            .and_then(|i| mode_bits(i.mode))
            .unwrap_or(default_mode);
        files.insert(path, ProjectedFile { content, mode });
    }
}

/// The fields a downwardAPI volume offers (kube's validation of volume items): metadata only — the
/// pod's name, namespace, uid, labels and annotations (whole or one key); status and spec fields are
/// for environment variables. herd also offers `spec.nodeName` and `spec.serviceAccountName`, which
/// never change in a pod's life.
fn volume_field(path: &str) -> bool {
    matches!(
        path,
        "metadata.name"
            | "metadata.namespace"
            | "metadata.uid"
            | "metadata.labels"
            | "metadata.annotations"
            | "spec.nodeName"
            | "spec.serviceAccountName"
    ) || path.starts_with("metadata.labels['")
        || path.starts_with("metadata.annotations['")
}

/// A mode's permission bits (kube allows 0..=0777).
fn mode_bits(mode: Option<i32>) -> Option<u32> {
    mode.and_then(|m| u32::try_from(m).ok()).map(|m| m & 0o777)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pod_env::NodeAllocatable;
    use crate::service_account_token::IssuedToken;
    use k8s_openapi::api::core::v1::{ConfigMap, Secret};
    use serde_json::{Value, json};

    fn pod() -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "shop", "uid": "u-1",
                         "labels": {"app": "web", "tier": "front"}},
            "spec": {"nodeName": "n1", "serviceAccountName": "robot",
                     "containers": [{"name": "c", "resources": {"limits": {"memory": "64Mi"}}}]},
        }))
        .expect("pod")
    }

    fn facts() -> EnvFacts {
        EnvFacts {
            pod_ips: Vec::new(),
            host_ip: [127, 0, 0, 1].into(),
            allocatable: NodeAllocatable {
                cpu_millis: 2000,
                memory_bytes: 1 << 30,
                ephemeral_storage_bytes: 0,
            },
        }
    }

    fn objects() -> ConfigObjects {
        let cm: ConfigMap = serde_json::from_value(
            json!({"metadata": {"name": "kube-root-ca.crt"}, "data": {"ca.crt": "PEM"}}),
        )
        .expect("cm");
        let secret: Secret =
            serde_json::from_value(json!({"metadata": {"name": "s"}, "data": {"k": "dg=="}}))
                .expect("secret");
        ConfigObjects {
            config_maps: BTreeMap::from([("kube-root-ca.crt".into(), cm)]),
            secrets: BTreeMap::from([("s".into(), secret)]),
        }
    }

    fn tokens() -> Tokens {
        Tokens::from([(
            TokenKey {
                audience: String::new(),
                expiration_seconds: 3607,
            },
            IssuedToken {
                token: "jwt".into(),
                refresh_at: "2026-01-01T00:00:00Z".parse().expect("ts"),
            },
        )])
    }

    fn files(source: Value) -> Result<BTreeMap<String, (String, u32)>, String> {
        let source: ProjectedVolumeSource = serde_json::from_value(source).expect("source");
        projected_files("v", &source, &pod(), &facts(), &objects(), &tokens())
            .map(|files| {
                files
                    .into_iter()
                    .map(|(p, f)| {
                        let content = String::from_utf8(f.content).expect("utf-8");
                        (p.display().to_string(), (content, f.mode))
                    })
                    .collect()
            })
            .map_err(|e| e.to_string())
    }

    #[test]
    fn kube_api_access_volume() {
        // What kube's ServiceAccount admission adds to every pod.
        let got = files(json!({"defaultMode": 0o644, "sources": [
            {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
            {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
            {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
        ]}))
        .expect("files");
        let expected: BTreeMap<String, (String, u32)> =
            [("token", "jwt"), ("ca.crt", "PEM"), ("namespace", "shop")]
                .into_iter()
                .map(|(p, c)| (p.to_owned(), (c.to_owned(), 0o644)))
                .collect();
        assert_eq!(got, expected);
    }

    #[test]
    fn downward_api_fields_resources_and_modes() {
        let got = files(json!({"defaultMode": 0o440, "sources": [
            {"downwardAPI": {"items": [
                {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}},
                {"path": "uid", "fieldRef": {"fieldPath": "metadata.uid"}, "mode": 0o400},
                {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
                {"path": "app", "fieldRef": {"fieldPath": "metadata.labels['app']"}},
                {"path": "node", "fieldRef": {"fieldPath": "spec.nodeName"}},
                {"path": "sa", "fieldRef": {"fieldPath": "spec.serviceAccountName"}},
                {"path": "mem", "resourceFieldRef": {"containerName": "c", "resource": "limits.memory", "divisor": "1Mi"}},
                {"path": "cpu", "resourceFieldRef": {"containerName": "c", "resource": "limits.cpu"}},
            ]}},
            {"secret": {"name": "s", "items": [{"key": "k", "path": "sub/k", "mode": 0o600}]}},
        ]}))
        .expect("files");
        let get = |p: &str| got.get(p).cloned().expect(p);
        assert_eq!(get("name"), ("web".into(), 0o440));
        assert_eq!(get("uid"), ("u-1".into(), 0o400));
        assert_eq!(get("labels").0, "app=\"web\"\ntier=\"front\"");
        assert_eq!(get("app").0, "web");
        assert_eq!(get("node").0, "n1");
        assert_eq!(get("sa").0, "robot");
        assert_eq!(get("mem").0, "64");
        assert_eq!(
            get("cpu").0,
            "2",
            "an unset limit is the node's allocatable"
        );
        assert_eq!(get("sub/k"), ("v".into(), 0o600));
    }

    #[test]
    fn errors_are_the_kubelets() {
        let err = |source: Value| files(source).expect_err("refused");
        assert_eq!(
            err(json!({"sources": [{"configMap": {"name": "gone"}}]})),
            "configmap \"gone\" not found"
        );
        assert!(
            files(json!({"sources": [{"configMap": {"name": "gone", "optional": true}}]})).is_ok()
        );
        assert!(
            err(json!({"sources": [{"downwardAPI": {"items": [
                {"path": "ip", "fieldRef": {"fieldPath": "status.podIP"}}]}}]}))
            .contains("not supported in a downwardAPI volume")
        );
        assert!(
            err(json!({"sources": [{"serviceAccountToken": {"path": "../t"}}]}))
                .contains("must not contain '..'")
        );
        assert_eq!(
            err(json!({"sources": [{"serviceAccountToken": {"path": "t", "audience": "vault"}}]})),
            "failed to fetch token: no token was issued"
        );
    }
}
