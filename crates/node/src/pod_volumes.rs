//! A pod's volumes as host directories that the runtime preopens for the guest:
//! `<pod_dir>/volumes/<name>/` for emptyDir, configMap and secret volumes, the host path itself
//! for hostPath. ConfigMap and Secret files are written atomically (temp file + rename, only when
//! the content changed), and [`PodVolumes::spawn_updater`] rewrites them when the node's shared
//! cache (`reflector`) sees the objects change, so a guest re-reading a file sees the new content.
//!
//! Projected volumes (`projected_volume`: secret, configMap, downwardAPI and serviceAccountToken
//! sources) are written the same way, with their files' modes; their tokens come from the
//! TokenRequest API (`service_account_token`) and the updater replaces them when the kubelet's token
//! manager would (80% of their lifetime, or 24 h).
//!
//! The file work is plain functions over objects at hand ([`PodVolumes::prepare_full`],
//! [`PodVolumes::refresh`]); [`PodVolumes::prepare`] and the updater take them from the cache,
//! never from the API (tokens excepted: they are asked of the TokenRequest API).

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapVolumeSource, Container, KeyToPath, Pod, ProjectedVolumeSource, Secret,
    SecretVolumeSource,
};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::claim_volume::{ClaimMounts, ClaimSource};
use crate::pod_env::{ConfigObjects, EnvFacts};
use crate::projected_volume::{ProjectedFile, projected_files as projected_volume_files};
use crate::reflector::PodObjects;
use crate::service_account_token::{TokenSource, Tokens};

/// How long the updater waits before asking again for a token whose refresh failed.
const TOKEN_RETRY: std::time::Duration = std::time::Duration::from_secs(10);

/// One directory the guest sees: the runtime preopens `host` at `guest`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mount {
    pub host: PathBuf,
    pub guest: String,
    pub read_only: bool,
}

/// Why a volume could not be set up or mounted (the kubelet's FailedMount /
/// CreateContainerConfigError causes).
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("configmap {0:?} not found")]
    ConfigMapNotFound(String),
    #[error("secret {0:?} not found")]
    SecretNotFound(String),
    #[error("configmap references non-existent config key: {0}")]
    ConfigMapKeyMissing(String),
    #[error("references non-existent secret key: {0}")]
    SecretKeyMissing(String),
    #[error("volume {volume:?}: item path {path:?} must be relative and must not contain '..'")]
    BadItemPath { volume: String, path: String },
    #[error("hostPath type check failed: {path} is not a {expected}")]
    HostPathType {
        path: PathBuf,
        expected: &'static str,
    },
    #[error("hostPath {path}: the agent cannot access it: {source}")]
    HostPathAccess { path: PathBuf, source: io::Error },
    #[error("hostPath {0:?} must be an absolute path")]
    HostPathRelative(String),
    #[error(
        "volume {volume:?}: {kind} volumes are not supported (emptyDir, hostPath, configMap and secret are)"
    )]
    Unsupported { volume: String, kind: String },
    #[error("container {container:?} mounts volume {volume:?}, which the pod does not define")]
    UnknownVolume { container: String, volume: String },
    #[error(
        "volume mount {volume:?} at {mount_path}: {host} is not a directory (WASI preopens only directories; mount the directory that holds it)"
    )]
    NotADirectory {
        volume: String,
        mount_path: String,
        host: PathBuf,
    },
    #[error(
        "volume mount {volume:?}: subPath {sub_path:?} must be relative and must not contain '..'"
    )]
    BadSubPath { volume: String, sub_path: String },
    #[error("volume mount {volume:?}: subPathExpr is not supported")]
    SubPathExpr { volume: String },
    #[error("cannot get {0}")]
    Fetch(String),
    #[error("failed to fetch token: {0}")]
    Token(String),
    #[error("downwardAPI: {0}")]
    DownwardApi(String),
    /// A `persistentVolumeClaim` volume whose claim or volume is not usable (yet).
    #[error("{0}")]
    Claim(String),
}

#[derive(Clone, Debug)]
enum Kind {
    EmptyDir,
    HostPath,
    /// A claim's volume (`claim_volume`), read-only when the pod's source says so.
    Claim {
        read_only: bool,
    },
    ConfigMap(ConfigMapVolumeSource),
    Secret(SecretVolumeSource),
    Projected(ProjectedVolumeSource),
}

#[derive(Clone, Debug)]
struct Volume {
    name: String,
    host: PathBuf,
    kind: Kind,
}

/// The pod's volumes, materialised on the host.
#[derive(Clone, Debug)]
pub struct PodVolumes {
    volumes_dir: PathBuf,
    volumes: Vec<Volume>,
    /// What projected volumes read beside the cached objects: the pod, its facts and its tokens.
    projection: Arc<Projection>,
}

/// The inputs of the pod's projected volumes other than ConfigMaps and Secrets.
#[derive(Debug)]
struct Projection {
    pod: Arc<Pod>,
    facts: EnvFacts,
    /// The current tokens; replaced by the updater.
    tokens: Mutex<Tokens>,
}

impl Projection {
    fn tokens(&self) -> Tokens {
        self.tokens
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// The facts downwardAPI volume items read in tests that have none.
#[cfg(test)]
fn no_facts() -> EnvFacts {
    EnvFacts {
        pod_ips: Vec::new(),
        host_ip: std::net::IpAddr::from([127, 0, 0, 1]),
        allocatable: crate::pod_env::NodeAllocatable {
            cpu_millis: 0,
            memory_bytes: 0,
            ephemeral_storage_bytes: 0,
        },
    }
}

/// What [`PodVolumes::prepare`] needs beyond the cache: the facts downwardAPI items read and
/// where serviceAccountToken sources get their tokens (`None`: a pod with such a source fails).
#[derive(Clone)]
pub struct VolumeContext {
    pub facts: EnvFacts,
    pub tokens: Option<TokenSource>,
    /// Where `persistentVolumeClaim` volumes are resolved (`None`: a pod with one fails).
    pub claims: Option<ClaimSource>,
}

impl PodVolumes {
    /// Takes the ConfigMaps and Secrets the pod's volumes use from the node's cache (`objects`, the
    /// pod's registration) and materialises every volume (see [`PodVolumes::prepare_full`]). Safe
    /// to call again for the same pod (agent restart): emptyDir content is kept.
    ///
    /// # Errors
    ///
    /// See [`VolumeError`]; a cache that has not synced in time is [`VolumeError::Fetch`].
    pub async fn prepare(
        objects: &mut PodObjects,
        pod: &Arc<Pod>,
        pod_dir: &Path,
        context: &VolumeContext,
    ) -> Result<Self, VolumeError> {
        let tokens = if crate::service_account_token::token_keys(pod).is_empty() {
            Tokens::new()
        } else {
            let source = context.tokens.as_ref().ok_or_else(|| {
                VolumeError::Token("this node has no client to request tokens with".into())
            })?;
            source.request_all(pod).await.map_err(VolumeError::Token)?
        };
        let claims = if crate::claim_volume::has_claims(pod) {
            let source = context.claims.as_ref().ok_or_else(|| {
                VolumeError::Claim("this node cannot resolve persistentVolumeClaim volumes".into())
            })?;
            source.resolve(pod).await?
        } else {
            ClaimMounts::new()
        };
        let has_projected = pod
            .spec
            .iter()
            .flat_map(|s| s.volumes.iter().flatten())
            .any(|v| v.projected.is_some());
        if objects.is_empty() && !has_projected {
            // Nothing to read or write: no trip to a blocking thread on the way to starting the pod.
            return Self::prepare_full(
                pod,
                pod_dir,
                &ConfigObjects::default(),
                &context.facts,
                tokens,
                &claims,
            );
        }
        let objects = if objects.is_empty() {
            ConfigObjects::default()
        } else {
            objects
                .get()
                .await
                .map_err(|e| VolumeError::Fetch(e.to_string()))?
        };
        let pod = Arc::clone(pod);
        let pod_dir = pod_dir.to_owned();
        let facts = context.facts.clone();
        tokio::task::spawn_blocking(move || {
            Self::prepare_full(&pod, &pod_dir, &objects, &facts, tokens, &claims)
        })
        .await
        .map_err(|e| VolumeError::Fetch(format!("volume set-up panicked: {e}")))?
    }

    /// [`PodVolumes::prepare_full`] for a pod without downwardAPI facts or tokens.
    #[cfg(test)]
    pub fn prepare_with(
        pod: &Pod,
        pod_dir: &Path,
        objects: &ConfigObjects,
    ) -> Result<Self, VolumeError> {
        Self::prepare_full(
            &Arc::new(pod.clone()),
            pod_dir,
            objects,
            &no_facts(),
            Tokens::new(),
            &ClaimMounts::new(),
        )
    }

    /// Materialises the pod's volumes under `<pod_dir>/volumes/<name>/` from already-fetched
    /// objects: emptyDir a directory, hostPath checked (and created for `DirectoryOrCreate` /
    /// `FileOrCreate`) per its `type`, configMap and secret one file per key (or per `items`),
    /// projected the union of its sources, downwardAPI items read from `facts` and the pod,
    /// serviceAccountToken sources from `tokens`.
    ///
    /// # Errors
    ///
    /// A missing non-optional object or key, a hostPath failing its type check or not
    /// accessible, an unsupported volume type, a token source without its token, or a filesystem
    /// error.
    pub fn prepare_full(
        pod: &Arc<Pod>,
        pod_dir: &Path,
        objects: &ConfigObjects,
        facts: &EnvFacts,
        tokens: Tokens,
        claims: &ClaimMounts,
    ) -> Result<Self, VolumeError> {
        let volumes_dir = pod_dir.join("volumes");
        let mut volumes = Vec::new();
        for volume in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
            let dir = volumes_dir.join(&volume.name);
            let (host, kind) = if volume.empty_dir.is_some() {
                create_dir(&dir)?;
                (dir, Kind::EmptyDir)
            } else if let Some(source) = &volume.host_path {
                let path = check_host_path(&source.path, source.type_.as_deref())?;
                (path, Kind::HostPath)
            } else if volume.persistent_volume_claim.is_some() {
                let mount = claims.get(&volume.name).ok_or_else(|| {
                    VolumeError::Claim(format!("volume {:?}: claim not resolved", volume.name))
                })?;
                (
                    mount.path.clone(),
                    Kind::Claim {
                        read_only: mount.read_only,
                    },
                )
            } else if let Some(source) = &volume.config_map {
                (dir, Kind::ConfigMap(source.clone()))
            } else if let Some(source) = &volume.secret {
                (dir, Kind::Secret(source.clone()))
            } else if let Some(source) = &volume.projected {
                (dir, Kind::Projected(source.clone()))
            } else {
                return Err(VolumeError::Unsupported {
                    volume: volume.name.clone(),
                    kind: volume_kind(volume),
                });
            };
            volumes.push(Volume {
                name: volume.name.clone(),
                host,
                kind,
            });
        }
        let this = Self {
            volumes_dir,
            volumes,
            projection: Arc::new(Projection {
                pod: Arc::clone(pod),
                facts: facts.clone(),
                tokens: Mutex::new(tokens),
            }),
        };
        this.refresh(objects)?;
        Ok(this)
    }

    /// Rewrites the configMap and secret volumes whose content differs from `objects`; a file
    /// whose content is unchanged is not touched. Stops at the first volume that fails (a
    /// missing non-optional object or key), leaving that volume's last content in place.
    ///
    /// # Errors
    ///
    /// As [`PodVolumes::prepare_full`].
    pub fn refresh(&self, objects: &ConfigObjects) -> Result<(), VolumeError> {
        let tokens = self.projection.tokens();
        for volume in &self.volumes {
            if let Kind::Projected(source) = &volume.kind {
                let p = &self.projection;
                let files = projected_volume_files(
                    &volume.name,
                    source,
                    &p.pod,
                    &p.facts,
                    objects,
                    &tokens,
                )?;
                write_files_with_modes(&volume.host, &files)?;
            } else if let Some(files) = projected_files(volume, objects)? {
                write_files(&volume.host, &files)?;
            }
        }
        Ok(())
    }

    /// The directories `container` mounts, from its `volumeMounts`: the guest path is the
    /// `mountPath`; `readOnly` is honoured and configMap/secret mounts are always read-only. A
    /// `subPath` naming a directory is mounted (created first in emptyDir/hostPath volumes, as
    /// the kubelet does); one naming a file is refused, as WASI preopens only directories.
    ///
    /// # Errors
    ///
    /// An unknown volume, a bad or file `subPath`, `subPathExpr`, or a hostPath that is a file.
    pub fn mounts(&self, container: &Container) -> Result<Vec<Mount>, VolumeError> {
        let mut mounts = Vec::new();
        for vm in container.volume_mounts.iter().flatten() {
            let volume = self
                .volumes
                .iter()
                .find(|v| v.name == vm.name)
                .ok_or_else(|| VolumeError::UnknownVolume {
                    container: container.name.clone(),
                    volume: vm.name.clone(),
                })?;
            if vm.sub_path_expr.as_deref().is_some_and(|e| !e.is_empty()) {
                return Err(VolumeError::SubPathExpr {
                    volume: vm.name.clone(),
                });
            }
            let projected = matches!(
                volume.kind,
                Kind::ConfigMap(_) | Kind::Secret(_) | Kind::Projected(_)
            );
            let mut host = volume.host.clone();
            if let Some(sub_path) = vm.sub_path.as_deref().filter(|s| !s.is_empty()) {
                let relative = safe_relative(sub_path).ok_or_else(|| VolumeError::BadSubPath {
                    volume: vm.name.clone(),
                    sub_path: sub_path.to_owned(),
                })?;
                host = host.join(relative);
                if !projected && !host.exists() {
                    create_dir(&host)?;
                }
            }
            if !host.is_dir() {
                return Err(VolumeError::NotADirectory {
                    volume: vm.name.clone(),
                    mount_path: vm.mount_path.clone(),
                    host,
                });
            }
            mounts.push(Mount {
                host,
                guest: vm.mount_path.clone(),
                read_only: projected
                    || vm.read_only == Some(true)
                    || matches!(volume.kind, Kind::Claim { read_only: true }),
            });
        }
        Ok(mounts)
    }

    /// Whether any volume comes from a ConfigMap, Secret or projection (so an updater has work to do).
    pub fn has_projected(&self) -> bool {
        self.volumes.iter().any(|v| {
            matches!(
                v.kind,
                Kind::ConfigMap(_) | Kind::Secret(_) | Kind::Projected(_)
            )
        })
    }

    /// When the earliest of the pod's tokens is due for a refresh (`None`: no tokens).
    fn next_token_refresh(&self) -> Option<jiff::Timestamp> {
        self.projection
            .tokens()
            .values()
            .map(|t| t.refresh_at)
            .min()
    }

    /// Asks for a new token for every token due now; the others are kept. `Ok(true)` when any was
    /// replaced.
    async fn refresh_tokens(&self, source: &TokenSource) -> Result<bool, String> {
        let now = jiff::Timestamp::now();
        let due: Vec<_> = self
            .projection
            .tokens()
            .into_iter()
            .filter(|(_, t)| t.refresh_at <= now)
            .map(|(key, _)| key)
            .collect();
        for key in &due {
            let token = source.request(&self.projection.pod, key).await?;
            self.projection
                .tokens
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(key.clone(), token);
        }
        Ok(!due.is_empty())
    }

    /// Rewrites the volumes' files whenever one of the pod's ConfigMaps or Secrets changes in the
    /// node's cache (`objects`, the pod's registration), until `stop` is cancelled. Ends at once
    /// when the pod has no configMap or secret volume. A failed refresh (a deleted non-optional
    /// object) is logged; the files keep their last good content until the next change.
    pub fn spawn_updater(
        &self,
        mut objects: PodObjects,
        tokens: Option<TokenSource>,
        stop: CancellationToken,
    ) -> JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            if !this.has_projected() {
                return;
            }
            let mut token_retry: Option<tokio::time::Instant> = None;
            loop {
                let token_due = token_retry.or_else(|| {
                    this.next_token_refresh().map(|at| {
                        let wait = jiff::Timestamp::now()
                            .duration_until(at)
                            .try_into()
                            .unwrap_or_default();
                        tokio::time::Instant::now() + wait
                    })
                });
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = objects.changed() => {}
                    () = sleep_until(token_due) => {
                        let Some(source) = tokens.as_ref() else { return };
                        match this.refresh_tokens(source).await {
                            Ok(_) => token_retry = None,
                            Err(error) => {
                                // The file keeps the last token until a request succeeds.
                                tracing::warn!(%error, "cannot refresh a ServiceAccount token");
                                token_retry = Some(tokio::time::Instant::now() + TOKEN_RETRY);
                                continue;
                            }
                        }
                    }
                }
                if objects.is_empty() {
                    let this = this.clone();
                    let refresh = tokio::task::spawn_blocking(move || {
                        this.refresh(&ConfigObjects::default())
                    })
                    .await;
                    if let Ok(Err(error)) = refresh {
                        tracing::warn!(%error, "cannot refresh a volume");
                    }
                    continue;
                }
                let current = match objects.get().await {
                    Ok(current) => current,
                    Err(error) => {
                        tracing::warn!(%error, "cannot refresh configMap/secret volumes");
                        continue;
                    }
                };
                let refresh = {
                    let this = this.clone();
                    tokio::task::spawn_blocking(move || this.refresh(&current)).await
                };
                match refresh {
                    Ok(Ok(())) => {}
                    Ok(Err(error)) => tracing::warn!(%error, "cannot refresh a volume"),
                    Err(error) => tracing::warn!(%error, "volume refresh panicked"),
                }
            }
        })
    }

    /// Removes the pod's volume directories (emptyDir content and configMap/secret copies);
    /// host paths are left alone. Absent directories are not an error.
    ///
    /// # Errors
    ///
    /// [`VolumeError::Io`] when a directory cannot be removed.
    pub async fn remove(&self) -> Result<(), VolumeError> {
        match tokio::fs::remove_dir_all(&self.volumes_dir).await {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(VolumeError::Io {
                path: self.volumes_dir.clone(),
                source: e,
            }),
            _ => Ok(()),
        }
    }
}

/// Sleeps until `at`; forever when `None`.
async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The ConfigMap and Secret names the pod's volumes use (projected volumes' sources too).
pub(crate) fn referenced_names(pod: &Pod) -> (Vec<String>, Vec<String>) {
    let mut config_maps = BTreeSet::new();
    let mut secrets = BTreeSet::new();
    for volume in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
        if let Some(s) = &volume.config_map {
            config_maps.insert(s.name.clone());
        }
        if let Some(s) = &volume.secret {
            secrets.insert(s.secret_name.clone().unwrap_or_default());
        }
        for source in volume
            .projected
            .iter()
            .flat_map(|p| p.sources.iter().flatten())
        {
            if let Some(c) = &source.config_map {
                config_maps.insert(c.name.clone());
            }
            if let Some(s) = &source.secret {
                secrets.insert(s.name.clone());
            }
        }
    }
    (
        config_maps.into_iter().collect(),
        secrets.into_iter().collect(),
    )
}

fn volume_kind(volume: &k8s_openapi::api::core::v1::Volume) -> String {
    serde_json::to_value(volume)
        .ok()
        .and_then(|v| {
            v.as_object()
                .and_then(|o| o.keys().find(|k| *k != "name").cloned())
        })
        .unwrap_or_else(|| "this kind of".to_owned())
}

/// The files of a configMap or secret volume (`None` for other kinds).
fn projected_files(
    volume: &Volume,
    objects: &ConfigObjects,
) -> Result<Option<BTreeMap<PathBuf, Vec<u8>>>, VolumeError> {
    let files = match &volume.kind {
        Kind::ConfigMap(source) => {
            config_map_files(&volume.name, source, objects.config_maps.get(&source.name))?
        }
        Kind::Secret(source) => {
            let name = source.secret_name.clone().unwrap_or_default();
            secret_files(&volume.name, source, objects.secrets.get(&name))?
        }
        Kind::EmptyDir | Kind::HostPath | Kind::Claim { .. } | Kind::Projected(_) => {
            return Ok(None);
        }
    };
    Ok(Some(files))
}

/// A configMap volume's files: every `data` and `binaryData` key, or just `items` (key →
/// path). A missing ConfigMap or item key is an error unless the volume is `optional`.
pub fn config_map_files(
    volume: &str,
    source: &ConfigMapVolumeSource,
    config_map: Option<&ConfigMap>,
) -> Result<BTreeMap<PathBuf, Vec<u8>>, VolumeError> {
    let optional = source.optional == Some(true);
    let Some(cm) = config_map else {
        return if optional {
            Ok(BTreeMap::new())
        } else {
            Err(VolumeError::ConfigMapNotFound(source.name.clone()))
        };
    };
    let mut data: BTreeMap<&str, Vec<u8>> = BTreeMap::new();
    for (k, v) in cm.binary_data.iter().flatten() {
        data.insert(k, v.0.clone());
    }
    for (k, v) in cm.data.iter().flatten() {
        data.insert(k, v.clone().into_bytes());
    }
    project(volume, data, source.items.as_deref(), optional, |key| {
        VolumeError::ConfigMapKeyMissing(key.to_owned())
    })
}

/// A secret volume's files, as [`config_map_files`].
pub fn secret_files(
    volume: &str,
    source: &SecretVolumeSource,
    secret: Option<&Secret>,
) -> Result<BTreeMap<PathBuf, Vec<u8>>, VolumeError> {
    let optional = source.optional == Some(true);
    let Some(secret) = secret else {
        return if optional {
            Ok(BTreeMap::new())
        } else {
            Err(VolumeError::SecretNotFound(
                source.secret_name.clone().unwrap_or_default(),
            ))
        };
    };
    let mut data: BTreeMap<&str, Vec<u8>> = BTreeMap::new();
    for (k, v) in secret.data.iter().flatten() {
        data.insert(k, v.0.clone());
    }
    for (k, v) in secret.string_data.iter().flatten() {
        data.insert(k, v.clone().into_bytes());
    }
    project(volume, data, source.items.as_deref(), optional, |key| {
        VolumeError::SecretKeyMissing(key.to_owned())
    })
}

fn project(
    volume: &str,
    mut data: BTreeMap<&str, Vec<u8>>,
    items: Option<&[KeyToPath]>,
    optional: bool,
    missing: impl Fn(&str) -> VolumeError,
) -> Result<BTreeMap<PathBuf, Vec<u8>>, VolumeError> {
    let pairs: Vec<(String, Vec<u8>)> = match items.filter(|i| !i.is_empty()) {
        None => data.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
        Some(items) => {
            let mut pairs = Vec::new();
            for item in items {
                match data.get(item.key.as_str()) {
                    Some(content) => pairs.push((item.path.clone(), content.clone())),
                    None if optional => {}
                    None => return Err(missing(&item.key)),
                }
            }
            data.clear();
            pairs
        }
    };
    pairs
        .into_iter()
        .map(|(path, content)| {
            let relative = safe_relative(&path).ok_or_else(|| VolumeError::BadItemPath {
                volume: volume.to_owned(),
                path: path.clone(),
            })?;
            Ok((relative, content))
        })
        .collect()
}

/// `path` as a relative path of normal components only (no `..`, no root, not empty).
pub(crate) fn safe_relative(path: &str) -> Option<PathBuf> {
    let p = Path::new(path);
    let normal = p.components().all(|c| matches!(c, Component::Normal(_)));
    (normal && p.components().next().is_some()).then(|| p.to_owned())
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> VolumeError + '_ {
    move |source| VolumeError::Io {
        path: path.to_owned(),
        source,
    }
}

fn create_dir(path: &Path) -> Result<(), VolumeError> {
    std::fs::create_dir_all(path).map_err(io_err(path))
}

/// Makes `dir` hold exactly `files`: a changed or new file is written to a temp file beside it
/// and renamed over it (a reader sees the old or the new content, never part); unchanged files
/// are not touched; files and directories not in `files` are removed. Returns whether anything
/// changed.
pub fn write_files(dir: &Path, files: &BTreeMap<PathBuf, Vec<u8>>) -> Result<bool, VolumeError> {
    create_dir(dir)?;
    let mut changed = false;
    for (relative, content) in files {
        let target = dir.join(relative);
        if std::fs::read(&target).is_ok_and(|old| old == *content) {
            continue;
        }
        let parent = target.parent().unwrap_or(dir);
        create_dir(parent)?;
        // Rebuilt from the objects whenever the pod starts: atomic, but no wait for the disk.
        herd_atomic_file::replace(&target, content, 0o644).map_err(io_err(&target))?;
        changed = true;
    }
    let keep: BTreeSet<&Path> = files.keys().map(PathBuf::as_path).collect();
    changed |= remove_stale(dir, Path::new(""), &keep)?;
    Ok(changed)
}

/// [`write_files`] for a projected volume: each file also gets its mode. A changed file is written with
/// its mode to a temp file and renamed over the old one (no wait for the disk: the node writes the files
/// again when the pod starts), so it is never more open than asked; a file whose content and mode are
/// unchanged is not touched.
pub fn write_files_with_modes(
    dir: &Path,
    files: &BTreeMap<PathBuf, ProjectedFile>,
) -> Result<bool, VolumeError> {
    use std::os::unix::fs::PermissionsExt as _;
    create_dir(dir)?;
    let mut changed = false;
    for (relative, file) in files {
        let target = dir.join(relative);
        let same_content = std::fs::read(&target).is_ok_and(|old| old == file.content);
        let mode_of = |path: &Path| {
            std::fs::metadata(path)
                .map(|m| m.permissions().mode() & 0o777)
                .ok()
        };
        if same_content && mode_of(&target) == Some(file.mode) {
            continue;
        }
        let parent = target.parent().unwrap_or(dir);
        create_dir(parent)?;
        if same_content {
            std::fs::set_permissions(&target, std::fs::Permissions::from_mode(file.mode))
                .map_err(io_err(&target))?;
        } else {
            herd_atomic_file::replace(&target, &file.content, file.mode)
                .map_err(io_err(&target))?;
        }
        changed = true;
    }
    let keep: BTreeSet<&Path> = files.keys().map(PathBuf::as_path).collect();
    changed |= remove_stale(dir, Path::new(""), &keep)?;
    Ok(changed)
}

/// Removes entries under `dir/relative` that are neither a kept file nor a directory on the way
/// to one. Symlinks are removed, never followed.
fn remove_stale(dir: &Path, relative: &Path, keep: &BTreeSet<&Path>) -> Result<bool, VolumeError> {
    let here = dir.join(relative);
    let mut changed = false;
    for entry in std::fs::read_dir(&here).map_err(io_err(&here))? {
        let entry = entry.map_err(io_err(&here))?;
        let rel = relative.join(entry.file_name());
        let path = entry.path();
        let file_type = entry.file_type().map_err(io_err(&path))?;
        if file_type.is_dir() {
            if keep.iter().any(|k| k.starts_with(&rel)) {
                changed |= remove_stale(dir, &rel, keep)?;
            } else {
                std::fs::remove_dir_all(&path).map_err(io_err(&path))?;
                changed = true;
            }
        } else if !keep.contains(rel.as_path()) {
            std::fs::remove_file(&path).map_err(io_err(&path))?;
            changed = true;
        }
    }
    Ok(changed)
}

/// Checks (or creates) a hostPath per its `type`, and that the agent can access it.
pub(crate) fn check_host_path(path: &str, type_: Option<&str>) -> Result<PathBuf, VolumeError> {
    use std::os::unix::fs::FileTypeExt;
    let host = PathBuf::from(path);
    if !host.is_absolute() {
        return Err(VolumeError::HostPathRelative(path.to_owned()));
    }
    let access = |source: io::Error| VolumeError::HostPathAccess {
        path: host.clone(),
        source,
    };
    match type_.unwrap_or_default() {
        "DirectoryOrCreate" if !host.exists() => std::fs::create_dir_all(&host).map_err(access)?,
        "FileOrCreate" if !host.exists() => {
            if let Some(parent) = host.parent() {
                std::fs::create_dir_all(parent).map_err(access)?;
            }
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&host)
                .map_err(access)?;
        }
        _ => {}
    }
    let expected = match type_.unwrap_or_default() {
        "" => None,
        "Directory" | "DirectoryOrCreate" => Some(("directory", 0)),
        "File" | "FileOrCreate" => Some(("file", 1)),
        "Socket" => Some(("socket file", 2)),
        "CharDevice" => Some(("character device", 3)),
        "BlockDevice" => Some(("block device", 4)),
        _ => None,
    };
    let Some((expected, which)) = expected else {
        return Ok(host);
    };
    let kind = std::fs::metadata(&host)
        .map_err(|source| match source.kind() {
            io::ErrorKind::NotFound => VolumeError::HostPathType {
                path: host.clone(),
                expected,
            },
            _ => VolumeError::HostPathAccess {
                path: host.clone(),
                source,
            },
        })?
        .file_type();
    let matches = match which {
        0 => kind.is_dir(),
        1 => kind.is_file(),
        2 => kind.is_socket(),
        3 => kind.is_char_device(),
        _ => kind.is_block_device(),
    };
    if !matches {
        return Err(VolumeError::HostPathType {
            path: host.clone(),
            expected,
        });
    }
    if kind.is_dir() {
        std::fs::read_dir(&host).map_err(access)?;
    }
    Ok(host)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn pod(volumes: Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "shop"},
            "spec": {"containers": [{"name": "c"}], "volumes": volumes},
        }))
        .expect("valid Pod")
    }

    fn config_map(data: Value) -> ConfigMap {
        serde_json::from_value(json!({"metadata": {"name": "cfg"}, "data": data})).expect("cm")
    }

    fn objects(cm: Option<ConfigMap>) -> ConfigObjects {
        let secret: Secret = serde_json::from_value(json!({
            "metadata": {"name": "creds"},
            "data": {"password": "aHVudGVyMg=="}
        }))
        .expect("secret");
        ConfigObjects {
            config_maps: cm.into_iter().map(|c| ("cfg".to_owned(), c)).collect(),
            secrets: BTreeMap::from([("creds".to_owned(), secret)]),
        }
    }

    fn container(mounts: Value) -> Container {
        serde_json::from_value(json!({"name": "c", "volumeMounts": mounts})).expect("container")
    }

    fn read(path: &Path) -> String {
        std::fs::read_to_string(path).expect("readable")
    }

    #[test]
    fn prepares_all_kinds_and_mounts_them() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let host = tmp.path().join("host/data");
        let p = pod(json!([
            {"name": "scratch", "emptyDir": {}},
            {"name": "host", "hostPath": {"path": host, "type": "DirectoryOrCreate"}},
            {"name": "config", "configMap": {"name": "cfg"}},
            {"name": "picked", "configMap": {"name": "cfg", "items": [{"key": "a", "path": "sub/x.txt"}]}},
            {"name": "creds", "secret": {"secretName": "creds"}},
        ]));
        let pod_dir = tmp.path().join("pod");
        let cm = config_map(json!({"a": "1", "b": "2"}));
        let volumes = PodVolumes::prepare_with(&p, &pod_dir, &objects(Some(cm))).expect("ok");
        let vdir = pod_dir.join("volumes");
        assert!(vdir.join("scratch").is_dir());
        assert!(host.is_dir(), "DirectoryOrCreate creates the host path");
        assert_eq!(read(&vdir.join("config/a")), "1");
        assert_eq!(read(&vdir.join("config/b")), "2");
        assert_eq!(read(&vdir.join("picked/sub/x.txt")), "1");
        assert!(!vdir.join("picked/a").exists());
        assert_eq!(read(&vdir.join("creds/password")), "hunter2");

        let mounts = volumes
            .mounts(&container(json!([
                {"name": "scratch", "mountPath": "/tmp"},
                {"name": "host", "mountPath": "/data", "readOnly": true},
                {"name": "config", "mountPath": "/etc/app"},
                {"name": "creds", "mountPath": "/secrets", "readOnly": false},
                {"name": "scratch", "mountPath": "/cache", "subPath": "cache"},
            ])))
            .expect("mounts");
        let expected = [
            (vdir.join("scratch"), "/tmp", false),
            (host.clone(), "/data", true),
            (vdir.join("config"), "/etc/app", true),
            (vdir.join("creds"), "/secrets", true),
            (vdir.join("scratch/cache"), "/cache", false),
        ]
        .map(|(host, guest, read_only)| Mount {
            host,
            guest: guest.to_owned(),
            read_only,
        });
        assert_eq!(mounts, expected);
        assert!(vdir.join("scratch/cache").is_dir(), "subPath dir created");
    }

    #[test]
    fn mount_errors_are_clear() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let p = pod(json!([{"name": "config", "configMap": {"name": "cfg"}}]));
        let cm = config_map(json!({"a": "1"}));
        let volumes = PodVolumes::prepare_with(&p, tmp.path(), &objects(Some(cm))).expect("ok");
        let err = |mounts: Value| {
            volumes
                .mounts(&container(mounts))
                .expect_err("refused")
                .to_string()
        };
        assert!(err(json!([{"name": "nope", "mountPath": "/x"}])).contains("does not define"));
        assert!(
            err(json!([{"name": "config", "mountPath": "/x", "subPath": "a"}]))
                .contains("is not a directory")
        );
        assert!(
            err(json!([{"name": "config", "mountPath": "/x", "subPath": "../.."}]))
                .contains("must not contain '..'")
        );
        assert!(
            err(json!([{"name": "config", "mountPath": "/x", "subPathExpr": "$(X)"}]))
                .contains("subPathExpr")
        );
    }

    #[test]
    fn missing_objects_and_keys_follow_optional() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let prepare = |volumes: Value, cm: Option<ConfigMap>| {
            PodVolumes::prepare_with(&pod(volumes), tmp.path(), &objects(cm))
                .map(|_| ())
                .map_err(|e| e.to_string())
        };
        assert_eq!(
            prepare(json!([{"name": "v", "configMap": {"name": "cfg"}}]), None),
            Err("configmap \"cfg\" not found".to_owned())
        );
        assert_eq!(
            prepare(
                json!([{"name": "v", "configMap": {"name": "cfg", "optional": true}}]),
                None
            ),
            Ok(())
        );
        assert!(
            tmp.path().join("volumes/v").is_dir(),
            "optional → empty dir"
        );
        let items = json!([{"name": "v", "configMap": {"name": "cfg", "items": [{"key": "zz", "path": "z"}]}}]);
        assert_eq!(
            prepare(items, Some(config_map(json!({"a": "1"})))),
            Err("configmap references non-existent config key: zz".to_owned())
        );
        assert_eq!(
            prepare(
                json!([{"name": "s", "secret": {"secretName": "gone"}}]),
                None
            ),
            Err("secret \"gone\" not found".to_owned())
        );
        let escape = json!([{"name": "v", "configMap": {"name": "cfg", "items": [{"key": "a", "path": "../evil"}]}}]);
        assert!(
            prepare(escape, Some(config_map(json!({"a": "1"}))))
                .expect_err("refused")
                .contains("must not contain '..'")
        );
        assert!(!tmp.path().join("evil").exists());
        assert!(
            prepare(
                json!([{"name": "n", "nfs": {"server": "x", "path": "/"}}]),
                None
            )
            .expect_err("refused")
            .contains("nfs volumes are not supported")
        );
    }

    #[test]
    fn host_path_types() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let file = tmp.path().join("f.txt");
        std::fs::write(&file, "x").expect("write");
        let check = |path: &Path, t: &str| {
            check_host_path(path.to_str().expect("utf-8"), Some(t)).map_err(|e| e.to_string())
        };
        assert!(check(tmp.path(), "Directory").is_ok());
        assert_eq!(
            check(&file, "Directory"),
            Err(format!(
                "hostPath type check failed: {} is not a directory",
                file.display()
            ))
        );
        assert!(check(&file, "File").is_ok());
        assert!(check(tmp.path(), "File").is_err());
        assert!(check(&tmp.path().join("missing"), "Directory").is_err());
        let created = tmp.path().join("new/file");
        assert!(check(&created, "FileOrCreate").is_ok());
        assert!(created.is_file());
        assert!(check(&file, "Socket").is_err());
        assert!(check_host_path("relative/path", None).is_err());
    }

    #[test]
    fn refresh_rewrites_changed_files_atomically_and_removes_stale_ones() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let p = pod(json!([{"name": "config", "configMap": {"name": "cfg"}}]));
        let first = config_map(json!({"a": "1", "b": "2"}));
        let volumes = PodVolumes::prepare_with(&p, tmp.path(), &objects(Some(first))).expect("ok");
        let dir = tmp.path().join("volumes/config");
        let b_inode =
            std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(dir.join("b")).expect("b"));

        let second = config_map(json!({"a": "one", "b": "2", "c": "3"}));
        volumes.refresh(&objects(Some(second))).expect("refresh");
        assert_eq!(read(&dir.join("a")), "one");
        assert_eq!(read(&dir.join("c")), "3");
        let b_after =
            std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(dir.join("b")).expect("b"));
        assert_eq!(b_inode, b_after, "unchanged file not rewritten");

        let third = config_map(json!({"c": "3"}));
        volumes.refresh(&objects(Some(third))).expect("refresh");
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .expect("dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["c"], "stale keys and temp files gone");

        // A deleted non-optional ConfigMap keeps the last content.
        assert!(volumes.refresh(&objects(None)).is_err());
        assert_eq!(read(&dir.join("c")), "3");
    }

    #[test]
    fn prepare_again_keeps_empty_dir_content_and_remove_deletes_it() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let p = pod(json!([{"name": "scratch", "emptyDir": {}}]));
        let volumes = PodVolumes::prepare_with(&p, tmp.path(), &objects(None)).expect("ok");
        let file = tmp.path().join("volumes/scratch/state");
        std::fs::write(&file, "kept").expect("write");
        let again = PodVolumes::prepare_with(&p, tmp.path(), &objects(None)).expect("ok");
        assert_eq!(read(&file), "kept");
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        rt.block_on(again.remove()).expect("removed");
        assert!(!tmp.path().join("volumes").exists());
        rt.block_on(volumes.remove())
            .expect("removing twice is fine");
    }

    /// Against a real API server: `prepare` reads the ConfigMap from the node's cache and the
    /// updater rewrites the file after the ConfigMap is replaced.
    #[tokio::test]
    async fn updater_follows_config_map_changes_through_the_cache() {
        use crate::reflector::ConfigReflector;
        use kube::api::{Api, PostParams};
        use std::time::Duration;
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut cfg = herd_control::ControlConfig::new(
            tmp.path().join("control"),
            "127.0.0.1:0".parse().expect("addr"),
        );
        cfg.service_cidr = "127.241.0.0/24".parse().expect("cidr");
        cfg.cluster_cidr = "127.242.0.0/16".parse().expect("cidr");
        let stop = CancellationToken::new();
        let plane = herd_control::ControlPlane::start(cfg, stop.clone())
            .await
            .expect("control plane");
        let admin = plane
            .kubeconfig("kubernetes-admin", Some("system:masters"))
            .expect("admin credentials");
        let config = crate::kube_config(&admin).await.expect("admin config");
        let client = kube::Client::try_from(config).expect("client");
        let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
        let mut cm: ConfigMap = serde_json::from_value(
            json!({"metadata": {"name": "cfg", "namespace": "default"}, "data": {"greeting": "hello"}}),
        )
        .expect("cm");
        api.create(&PostParams::default(), &cm)
            .await
            .expect("create");

        let mut p = pod(json!([{"name": "config", "configMap": {"name": "cfg"}}]));
        p.metadata.namespace = Some("default".into());
        let reflector = ConfigReflector::new(client.clone(), stop.clone());
        let mut objects = reflector.register(&p);
        let context = VolumeContext {
            facts: no_facts(),
            tokens: None,
            claims: None,
        };
        let volumes = PodVolumes::prepare(&mut objects, &Arc::new(p.clone()), tmp.path(), &context)
            .await
            .expect("prepared");
        let file = tmp.path().join("volumes/config/greeting");
        assert_eq!(read(&file), "hello");
        let updater = volumes.spawn_updater(objects, None, stop.clone());

        cm.data = Some(BTreeMap::from([(
            "greeting".to_owned(),
            "bonjour".to_owned(),
        )]));
        api.replace("cfg", &PostParams::default(), &cm)
            .await
            .expect("replace");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while read(&file) != "bonjour" {
            assert!(tokio::time::Instant::now() < deadline, "file not updated");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        stop.cancel();
        updater.await.expect("updater ends on cancel");
    }
}
