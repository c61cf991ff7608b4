//! The node's one shared cache of the ConfigMaps and Secrets its pods use, for volumes,
//! environments and image pull secrets alike — the kubelet's watch-based configmap/secret manager. A pod registers the
//! objects it references (its volumes, its containers' `env` and `envFrom`) when its worker
//! starts ([`ConfigReflector::register`]); the first registration of an object starts one watch of it
//! (a kube-runtime watcher with `fieldSelector=metadata.name=<name>` in its namespace), later ones
//! share it, and the watch ends when the last pod holding it is gone. Pods read the objects from the
//! cache, never from the API, and learn of a change through [`PodObjects::changed`]: however many pods
//! mount one ConfigMap or take their environment from it, the node lists and watches it once and
//! never GETs it.

use std::collections::{BTreeSet, HashMap};
use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::pod_env::ConfigObjects;

/// How long a read waits for a new watch's first list, as the kubelet's manager (then the read fails
/// and the pod's volume set-up is retried later).
const SYNC_TIMEOUT: Duration = Duration::from_secs(1);

/// What the cache knows of one object.
#[derive(Debug)]
enum Observed<K> {
    /// The watch has not listed yet.
    Unsynced,
    Absent,
    Present(Arc<K>),
}

/// The cache could not answer.
#[derive(Debug, thiserror::Error)]
pub enum ReflectorError {
    /// The watch of an object has not completed its first list in time (the API server is
    /// unreachable or refuses it); the kubelet's wording.
    #[error("failed to sync {0} cache: timed out waiting for the condition")]
    NotSynced(&'static str),
}

/// (namespace, name)
type Key = (String, String);

/// The watches of one kind.
struct Watches<K> {
    entries: Mutex<HashMap<Key, Entry<K>>>,
}

struct Entry<K> {
    /// How many registrations hold the watch.
    holders: usize,
    state: watch::Sender<Observed<K>>,
    task: JoinHandle<()>,
}

impl<K> Drop for Entry<K> {
    fn drop(&mut self) {
        self.task.abort();
    }
}

trait Watched:
    Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + Clone
    + DeserializeOwned
    + Debug
    + Send
    + Sync
    + 'static
{
    const NAME: &'static str;
}

impl Watched for ConfigMap {
    const NAME: &'static str = "configmap";
}

impl Watched for Secret {
    const NAME: &'static str = "secret";
}

impl<K> Watches<K>
where
    K: Watched,
{
    fn new() -> Arc<Self> {
        Arc::new(Self {
            entries: Mutex::new(HashMap::new()),
        })
    }

    /// A hold on the watch of `key`, starting it if nobody holds it yet.
    fn hold(
        self: &Arc<Self>,
        client: &kube::Client,
        shutdown: &CancellationToken,
        key: Key,
    ) -> Held<K> {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = entries.entry(key.clone()).or_insert_with(|| {
            let (state, _) = watch::channel(Observed::Unsynced);
            let task = tokio::spawn(follow(
                Api::namespaced(client.clone(), &key.0),
                key.1.clone(),
                state.clone(),
                shutdown.clone(),
            ));
            Entry {
                holders: 0,
                state,
                task,
            }
        });
        entry.holders += 1;
        Held {
            state: entry.state.subscribe(),
            release: Arc::new(Release {
                watches: self.clone(),
                key,
            }),
        }
    }
}

impl<K> Watches<K> {
    fn release(&self, key: &Key) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(entry) = entries.get_mut(key) {
            entry.holders -= 1;
            if entry.holders == 0 {
                entries.remove(key);
            }
        }
    }
}

/// Keeps `state` equal to the object `name` as the API server has it, until aborted or `shutdown`.
async fn follow<K>(
    api: Api<K>,
    name: String,
    state: watch::Sender<Observed<K>>,
    shutdown: CancellationToken,
) where
    K: Watched,
{
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut events = std::pin::pin!(watcher(api, config).default_backoff());
    // The objects of a list in progress (at most one: the selector names it).
    let mut listing: Option<Arc<K>> = None;
    loop {
        let event = tokio::select! {
            () = shutdown.cancelled() => return,
            event = events.next() => event,
        };
        let update = match event {
            None => return,
            Some(Err(error)) => {
                tracing::warn!(kind = K::NAME, %name, %error, "watch failed, retrying");
                continue;
            }
            Some(Ok(watcher::Event::Init)) => {
                listing = None;
                continue;
            }
            Some(Ok(watcher::Event::InitApply(object))) => {
                listing = Some(Arc::new(object));
                continue;
            }
            Some(Ok(watcher::Event::InitDone)) => match listing.take() {
                Some(object) => Observed::Present(object),
                None => Observed::Absent,
            },
            Some(Ok(watcher::Event::Apply(object))) => Observed::Present(Arc::new(object)),
            Some(Ok(watcher::Event::Delete(_))) => Observed::Absent,
        };
        state.send_if_modified(|current| {
            let same = match (&*current, &update) {
                (Observed::Absent, Observed::Absent) => true,
                (Observed::Present(a), Observed::Present(b)) => {
                    a.meta().resource_version.is_some()
                        && a.meta().resource_version == b.meta().resource_version
                }
                _ => false,
            };
            *current = update;
            !same
        });
    }
}

/// One registration's hold on a watch; the watch ends when the last hold on it is dropped.
struct Held<K> {
    state: watch::Receiver<Observed<K>>,
    release: Arc<Release<K>>,
}

impl<K> Clone for Held<K> {
    fn clone(&self) -> Self {
        Self {
            state: self.state.clone(),
            release: self.release.clone(),
        }
    }
}

struct Release<K> {
    watches: Arc<Watches<K>>,
    key: Key,
}

impl<K> Drop for Release<K> {
    fn drop(&mut self) {
        self.watches.release(&self.key);
    }
}

/// The node's shared cache of ConfigMaps and Secrets (cheap to clone).
#[derive(Clone)]
pub(crate) struct ConfigReflector {
    client: kube::Client,
    shutdown: CancellationToken,
    config_maps: Arc<Watches<ConfigMap>>,
    secrets: Arc<Watches<Secret>>,
}

impl ConfigReflector {
    /// A cache whose watches end when `shutdown` is cancelled.
    pub fn new(client: kube::Client, shutdown: CancellationToken) -> Self {
        Self {
            client,
            shutdown,
            config_maps: Watches::new(),
            secrets: Watches::new(),
        }
    }

    /// Holds the watches of the ConfigMaps and Secrets `pod`'s volumes and containers' environments
    /// use (the kubelet's `RegisterPod`), for as long as the returned [`PodObjects`] (or a clone)
    /// lives.
    pub fn register(&self, pod: &Pod) -> PodObjects {
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        let (config_maps, secrets) = referenced_names(pod);
        let key = |name: String| (namespace.clone(), name);
        PodObjects {
            config_maps: config_maps
                .into_iter()
                .map(|name| {
                    let held =
                        self.config_maps
                            .hold(&self.client, &self.shutdown, key(name.clone()));
                    (name, held)
                })
                .collect(),
            secrets: secrets
                .into_iter()
                .map(|name| {
                    let held = self
                        .secrets
                        .hold(&self.client, &self.shutdown, key(name.clone()));
                    (name, held)
                })
                .collect(),
        }
    }
}

/// Every ConfigMap and Secret `pod` refers to, for its volumes, its environments or its image pulls
/// (`imagePullSecrets`, as the kubelet's `VisitPodSecretNames`), once each.
fn referenced_names(pod: &Pod) -> (BTreeSet<String>, BTreeSet<String>) {
    let (volume_cms, volume_secrets) = crate::pod_volumes::referenced_names(pod);
    let (env_cms, env_secrets) = crate::pod_env::pod_referenced_names(pod);
    let pull_secrets = crate::pull_secrets::pull_secret_names(pod);
    (
        volume_cms.into_iter().chain(env_cms).collect(),
        volume_secrets
            .into_iter()
            .chain(env_secrets)
            .chain(pull_secrets)
            .collect(),
    )
}

/// The cached ConfigMaps and Secrets one pod uses.
#[derive(Clone)]
pub(crate) struct PodObjects {
    config_maps: Vec<(String, Held<ConfigMap>)>,
    secrets: Vec<(String, Held<Secret>)>,
}

impl PodObjects {
    /// Whether the pod uses no ConfigMap or Secret at all.
    pub fn is_empty(&self) -> bool {
        self.config_maps.is_empty() && self.secrets.is_empty()
    }

    /// The objects as the cache has them, after waiting (up to [`SYNC_TIMEOUT`]) for the first list
    /// of each watch; an object the API server does not have is left out.
    ///
    /// # Errors
    ///
    /// [`ReflectorError::NotSynced`] when a watch has not listed in time.
    pub async fn get(&mut self) -> Result<ConfigObjects, ReflectorError> {
        let mut objects = ConfigObjects::default();
        for (name, held) in &mut self.config_maps {
            if let Some(cm) = synced(&mut held.state, ConfigMap::NAME).await? {
                objects.config_maps.insert(name.clone(), (*cm).clone());
            }
        }
        for (name, held) in &mut self.secrets {
            if let Some(secret) = synced(&mut held.state, Secret::NAME).await? {
                objects.secrets.insert(name.clone(), (*secret).clone());
            }
        }
        Ok(objects)
    }

    /// A clone that has seen every object as the cache has it now: its [`PodObjects::changed`] waits
    /// for the next change only. Taken before an attempt that reads the objects, it wakes for any
    /// change that attempt may have missed.
    pub fn seen(&self) -> Self {
        let mut objects = self.clone();
        for (_, held) in &mut objects.config_maps {
            held.state.borrow_and_update();
        }
        for (_, held) in &mut objects.secrets {
            held.state.borrow_and_update();
        }
        objects
    }

    /// Waits until one of the objects changes (created, updated or deleted) since the last
    /// [`PodObjects::get`], `changed` or [`PodObjects::seen`]; never returns for a pod without any.
    pub async fn changed(&mut self) {
        let waits: Vec<Pin<Box<dyn Future<Output = ()> + Send + '_>>> = self
            .config_maps
            .iter_mut()
            .map(|(_, held)| changed(&mut held.state))
            .chain(
                self.secrets
                    .iter_mut()
                    .map(|(_, held)| changed(&mut held.state)),
            )
            .collect();
        if waits.is_empty() {
            return std::future::pending().await;
        }
        futures::future::select_all(waits).await;
    }
}

fn changed<K: Send + Sync>(
    state: &mut watch::Receiver<Observed<K>>,
) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
    Box::pin(async move {
        if state.changed().await.is_err() {
            // The watch is gone (only at shutdown): nothing will change any more.
            std::future::pending::<()>().await;
        }
    })
}

async fn synced<K: Send + Sync>(
    state: &mut watch::Receiver<Observed<K>>,
    kind: &'static str,
) -> Result<Option<Arc<K>>, ReflectorError> {
    // `wait_for` marks what it returns as seen: a later change wakes `changed`.
    let wait = state.wait_for(|o| !matches!(o, Observed::Unsynced));
    match tokio::time::timeout(SYNC_TIMEOUT, wait).await {
        Ok(Ok(observed)) => Ok(match &*observed {
            Observed::Present(object) => Some(object.clone()),
            Observed::Absent | Observed::Unsynced => None,
        }),
        _ => Err(ReflectorError::NotSynced(kind)),
    }
}
