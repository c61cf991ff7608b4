//! `persistentVolumeClaim` volumes, as the kubelet's volume manager resolves them: the claim (which must be
//! Bound, else the kubelet's `PVC ns/name has non-bound phase …`), then its volume, then the directory —
//! `spec.local.path` or `spec.hostPath.path` on this node. A volume of herd's local provisioner
//! (`herd.dev/local`) lives under the node's local volume root (`DATA/volumes/`, published on the Node as
//! `volumes.herd.dev/local-root`) and is created there on first use (owner-only, rootless); it outlives its
//! pods, so a pod deleted and created again on this node finds its data.
//!
//! [`run_cleanup`] is the other half of the provisioner: one watch of the volumes labelled with this node;
//! a volume being deleted (its claim gone, reclaim policy Delete) has its directory removed and then its
//! `volumes.herd.dev/local-cleanup` finalizer, so the API object goes only after the data.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use futures::StreamExt;
use herd_api::volumes::{LOCAL_CLEANUP_FINALIZER, LOCAL_NODE_LABEL, LOCAL_PROVISIONER};
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use tokio_util::sync::CancellationToken;

use crate::pod_volumes::VolumeError;

/// Where this node's pods' claims are resolved.
#[derive(Clone)]
pub struct ClaimSource {
    client: kube::Client,
    /// The directory under which the node keeps `herd.dev/local` volumes.
    local_root: PathBuf,
}

/// A claim's directory and whether the pod mounts it read-only.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClaimMount {
    pub path: PathBuf,
    pub read_only: bool,
}

/// The pod's claim volumes by volume name.
pub type ClaimMounts = BTreeMap<String, ClaimMount>;

/// The directory under a node's data dir that holds its local volumes.
pub fn local_root(data_dir: &Path) -> PathBuf {
    data_dir.join("volumes")
}

impl ClaimSource {
    pub fn new(client: kube::Client, local_root: PathBuf) -> Self {
        Self { client, local_root }
    }

    /// Resolves every claim volume of `pod` to its directory, creating a local volume's on first use.
    ///
    /// # Errors
    /// A claim that is missing or not bound, a volume that is missing or of a source herd cannot mount,
    /// a local volume's directory that cannot be created.
    pub async fn resolve(&self, pod: &Pod) -> Result<ClaimMounts, VolumeError> {
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let claims: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), &ns);
        let volumes: Api<PersistentVolume> = Api::all(self.client.clone());
        let mut out = ClaimMounts::new();
        for v in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
            let Some(source) = &v.persistent_volume_claim else {
                continue;
            };
            let name = &source.claim_name;
            let claim = claims
                .get_opt(name)
                .await
                .map_err(|e| VolumeError::Fetch(format!("persistentvolumeclaim \"{name}\": {e}")))?
                .ok_or_else(|| {
                    VolumeError::Claim(format!("persistentvolumeclaim \"{name}\" not found"))
                })?;
            let phase = claim
                .status
                .as_ref()
                .and_then(|s| s.phase.clone())
                .unwrap_or_default();
            let volume_name = claim
                .spec
                .as_ref()
                .and_then(|s| s.volume_name.clone())
                .unwrap_or_default();
            if phase != "Bound" || volume_name.is_empty() {
                return Err(VolumeError::Claim(format!(
                    "PVC {ns}/{name} has non-bound phase (\"{phase}\") or empty pvc.Spec.VolumeName (\"{volume_name}\")"
                )));
            }
            let pv = volumes
                .get_opt(&volume_name)
                .await
                .map_err(|e| {
                    VolumeError::Fetch(format!("persistentvolume \"{volume_name}\": {e}"))
                })?
                .ok_or_else(|| {
                    VolumeError::Claim(format!("persistentvolume \"{volume_name}\" not found"))
                })?;
            let path = self.directory(&pv)?;
            out.insert(
                v.name.clone(),
                ClaimMount {
                    path,
                    read_only: source.read_only == Some(true),
                },
            );
        }
        Ok(out)
    }

    /// The directory of a volume on this node: a local volume of the provisioner is created under the
    /// local root (and must be there); a static `local` volume must exist; a `hostPath` one is checked
    /// as the pod volume of its type.
    fn directory(&self, pv: &PersistentVolume) -> Result<PathBuf, VolumeError> {
        let name = pv.metadata.name.clone().unwrap_or_default();
        let spec = pv.spec.clone().unwrap_or_default();
        let provisioned = pv
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(herd_api::volumes::PROVISIONED_BY_ANNOTATION))
            .is_some_and(|p| p == LOCAL_PROVISIONER);
        if let Some(local) = &spec.local {
            let path = PathBuf::from(&local.path);
            if provisioned {
                if path != self.local_root.join(&name) {
                    return Err(VolumeError::Claim(format!(
                        "volume {name}: {} is not under this node's local volume root {}",
                        path.display(),
                        self.local_root.display()
                    )));
                }
                create_private_dir(&path)?;
            } else if !path.is_dir() {
                return Err(VolumeError::Claim(format!(
                    "volume {name}: local path {} is not a directory on this node",
                    path.display()
                )));
            }
            return Ok(path);
        }
        if let Some(host) = &spec.host_path {
            return crate::pod_volumes::check_host_path(&host.path, host.type_.as_deref());
        }
        Err(VolumeError::Claim(format!(
            "volume {name}: only local and hostPath persistent volumes can be mounted by herd"
        )))
    }
}

/// A directory only the agent's user may enter (the volume's data is the pod's).
fn create_private_dir(path: &Path) -> Result<(), VolumeError> {
    use std::os::unix::fs::DirBuilderExt;
    match std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
    {
        Ok(()) => Ok(()),
        Err(source) => Err(VolumeError::Io {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Whether the pod has claim volumes.
pub fn has_claims(pod: &Pod) -> bool {
    pod.spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .any(|v| v.persistent_volume_claim.is_some())
}

/// The directory of `pv` to remove when it is deleted: a volume of this node's provisioner, at its place
/// under `local_root` (never anything else, whatever the object says).
fn cleanup_target(pv: &PersistentVolume, local_root: &Path) -> Option<PathBuf> {
    let name = pv.metadata.name.as_deref()?;
    let path = PathBuf::from(&pv.spec.as_ref()?.local.as_ref()?.path);
    let expected = local_root.join(name);
    (path == expected && !name.is_empty() && !name.contains('/')).then_some(expected)
}

/// Watches this node's local volumes (`volumes.herd.dev/node=<node>`) and, for each being deleted,
/// removes its directory, then its cleanup finalizer. Runs until `shutdown`.
pub async fn run_cleanup(
    client: kube::Client,
    node: String,
    local_root: PathBuf,
    shutdown: CancellationToken,
) {
    let volumes: Api<PersistentVolume> = Api::all(client);
    let config = watcher::Config::default().labels(&format!("{LOCAL_NODE_LABEL}={node}"));
    let mut stream = watcher::watcher(volumes.clone(), config)
        .default_backoff()
        .boxed();
    loop {
        let event = tokio::select! {
            () = shutdown.cancelled() => return,
            event = stream.next() => event,
        };
        let pv = match event {
            Some(Ok(watcher::Event::Apply(pv) | watcher::Event::InitApply(pv))) => pv,
            Some(Ok(_)) => continue,
            Some(Err(error)) => {
                tracing::debug!(%error, "local volume watch");
                continue;
            }
            None => return,
        };
        let finalizing = pv.metadata.deletion_timestamp.is_some()
            && pv
                .metadata
                .finalizers
                .iter()
                .flatten()
                .any(|f| f == LOCAL_CLEANUP_FINALIZER);
        if !finalizing {
            continue;
        }
        let name = pv.metadata.name.clone().unwrap_or_default();
        if let Some(dir) = cleanup_target(&pv, &local_root) {
            let removed =
                tokio::task::spawn_blocking(move || match std::fs::remove_dir_all(&dir) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                    _ => Ok(()),
                })
                .await;
            if let Ok(Err(error)) | Err(error) = removed.map_err(std::io::Error::other) {
                tracing::warn!(volume = %name, %error, "removing a local volume's directory");
                continue;
            }
            tracing::info!(volume = %name, "removed a deleted local volume's directory");
        }
        let rest: Vec<String> = pv
            .metadata
            .finalizers
            .iter()
            .flatten()
            .filter(|f| *f != LOCAL_CLEANUP_FINALIZER)
            .cloned()
            .collect();
        // Guarded by the resourceVersion read (a merge patch's precondition): another writer's finalizer
        // change is kept.
        let patch = serde_json::json!({"metadata": {
            "resourceVersion": pv.metadata.resource_version, "finalizers": rest}});
        if let Err(error) = volumes
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            tracing::debug!(volume = %name, %error, "removing the local cleanup finalizer; the watch retries");
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn only_a_volume_at_its_place_under_the_root_is_removed() {
        let pv = |name: &str, path: &str| -> PersistentVolume {
            serde_json::from_value(json!({"metadata": {"name": name},
                "spec": {"local": {"path": path}}}))
            .unwrap()
        };
        let root = Path::new("/data/node/volumes");
        assert_eq!(
            cleanup_target(&pv("pvc-1", "/data/node/volumes/pvc-1"), root),
            Some(root.join("pvc-1"))
        );
        assert_eq!(cleanup_target(&pv("pvc-1", "/etc"), root), None);
        assert_eq!(
            cleanup_target(&pv("pvc-1", "/data/node/volumes/pvc-2"), root),
            None
        );
        let host: PersistentVolume = serde_json::from_value(json!({"metadata": {"name": "h"},
            "spec": {"hostPath": {"path": "/data/node/volumes/h"}}}))
        .unwrap();
        assert_eq!(cleanup_target(&host, root), None);
    }
}
