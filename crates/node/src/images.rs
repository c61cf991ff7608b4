//! The node's images, as the kubelet's image manager: pulling an image and compiling it happen
//! once per image on this node however many containers ask for it at the same moment (a single
//! flight each: the first caller does the work, the others wait for its result), and every
//! container of an image runs the one compiled copy the runtime keeps in memory.
//!
//! Without this, a Deployment of 1,000 replicas of an image the node has never run had every pod
//! that started before the first compile finished pull and compile the image itself, and keep its
//! own compiled copy: gigabytes and a minute where one compile takes a tenth of a second.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use herd_oci_fetch::{Credential, FetchError, Fetcher, Keyring, PullPolicy, Pulled};
use herd_wasm_runtime::{Runtime, RuntimeError, Workload};

use crate::pull_secrets::NodeCredentials;

/// The node's fetcher and runtime, with at most one pull per (image, policy) and one compile per
/// image ID under way. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Images {
    inner: Arc<Inner>,
}

/// A pull's flight key: the image, the policy and the credentials it is made with (pods with other
/// credentials never share a pull's result).
type PullKey = (String, PullPolicy, Vec<Credential>);

struct Inner {
    fetcher: Fetcher,
    runtime: Runtime,
    /// The node's own registry credentials, tried after a pod's.
    node_credentials: NodeCredentials,
    pulls: Flights<PullKey, Result<Pulled, Arc<FetchError>>>,
    loads: Flights<String, Result<Workload, Arc<RuntimeError>>>,
}

impl Images {
    /// Images pulled by `fetcher` (with the node's own registry credentials after a pod's) and
    /// compiled by `runtime`.
    pub(crate) fn new(
        fetcher: Fetcher,
        runtime: Runtime,
        node_credentials: NodeCredentials,
    ) -> Self {
        Images {
            inner: Arc::new(Inner {
                fetcher,
                runtime,
                node_credentials,
                pulls: Flights::default(),
                loads: Flights::default(),
            }),
        }
    }

    /// The image ID and compiled workload of `image` if this node has pulled and compiled it
    /// already: no disk, no network, no blocking thread (how a second pod of an image starts).
    pub(crate) fn loaded(&self, image: &str) -> Option<(String, Workload)> {
        let image_id = self.inner.fetcher.known_image_id(image)?;
        let workload = self.inner.runtime.loaded(&image_id)?;
        Some((image_id, workload))
    }

    /// Pulls `image` following `policy` with the credentials `pod_keyring` and then the node's
    /// keyring have for it (none: anonymously); joins a pull of the same image, policy and
    /// credentials already under way instead of starting another.
    pub(crate) async fn pull(
        &self,
        image: &str,
        policy: PullPolicy,
        pod_keyring: &Keyring,
    ) -> Result<Pulled, Arc<FetchError>> {
        let credentials = if policy == PullPolicy::Never {
            Vec::new()
        } else {
            let mut keyring = pod_keyring.clone();
            keyring.extend(&self.inner.node_credentials.keyring().await);
            keyring.lookup(image)
        };
        let fetcher = self.inner.fetcher.clone();
        let owned = image.to_owned();
        let tried = credentials.clone();
        self.inner
            .pulls
            .join((image.to_owned(), policy, credentials), async move {
                fetcher
                    .pull_with(&owned, policy, &tried)
                    .await
                    .map_err(Arc::new)
            })
            .await
    }

    /// The compiled workload of `wasm` (whose image ID is `image_id`): from the runtime's memory or
    /// disk cache, else compiled on a blocking thread; joins a load of the same image already under
    /// way instead of compiling it again.
    pub(crate) async fn load(
        &self,
        wasm: Arc<[u8]>,
        image_id: &str,
    ) -> Result<Workload, Arc<RuntimeError>> {
        let runtime = self.inner.runtime.clone();
        let key = image_id.to_owned();
        self.inner
            .loads
            .join(image_id.to_owned(), async move {
                match tokio::task::spawn_blocking(move || runtime.load_cached(&wasm, &key)).await {
                    Ok(loaded) => loaded.map(|(workload, _)| workload).map_err(Arc::new),
                    Err(join) => Err(Arc::new(RuntimeError::Engine(format!(
                        "loading the workload failed: {join}"
                    )))),
                }
            })
            .await
    }
}

/// Work under way, by key: the first caller's future, shared with every caller that asks for the
/// same key before it completes.
struct Flights<K, V: Clone> {
    under_way: Mutex<HashMap<K, Shared<BoxFuture<'static, V>>>>,
}

impl<K, V: Clone> Default for Flights<K, V> {
    fn default() -> Self {
        Flights {
            under_way: Mutex::new(HashMap::new()),
        }
    }
}

impl<K: Hash + Eq + Clone, V: Clone + Send + Sync + 'static> Flights<K, V> {
    /// The result of the flight for `key`: the one under way, or `work` started now. A caller
    /// that stops waiting does not stop the flight while others still wait for it.
    async fn join(&self, key: K, work: impl Future<Output = V> + Send + 'static) -> V {
        let flight = {
            let mut under_way = self.lock();
            under_way
                .entry(key.clone())
                .or_insert_with(|| work.boxed().shared())
                .clone()
        };
        let result = flight.clone().await;
        // The first caller back ends the flight, so a later call starts afresh (e.g. after an
        // error, or to look for a newer image with policy Always).
        let mut under_way = self.lock();
        if under_way.get(&key).is_some_and(|f| f.ptr_eq(&flight)) {
            under_way.remove(&key);
        }
        result
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<K, Shared<BoxFuture<'static, V>>>> {
        self.under_way
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test]
    async fn callers_of_one_key_share_one_flight_and_later_callers_start_another() {
        let flights: Flights<&str, usize> = Flights::default();
        let started = Arc::new(AtomicUsize::new(0));
        let (release, released) = tokio::sync::watch::channel(false);
        let work = || {
            let started = started.clone();
            let mut released = released.clone();
            async move {
                let n = started.fetch_add(1, Ordering::SeqCst) + 1;
                let _ = released.wait_for(|r| *r).await;
                n
            }
        };
        let waiters = futures::future::join_all((0..100).map(|_| flights.join("a", work())));
        let other = flights.join("b", work());
        let opened = async {
            tokio::task::yield_now().await;
            release.send(true).unwrap();
        };
        let (results, other, ()) = tokio::join!(waiters, other, opened);
        assert_eq!(started.load(Ordering::SeqCst), 2, "one flight per key");
        assert!(results.iter().all(|&n| n == results[0]), "{results:?}");
        assert_ne!(other, results[0]);
        assert!(flights.lock().is_empty(), "finished flights are forgotten");

        // The flight ended: the next caller does the work again.
        assert_eq!(flights.join("a", work()).await, 3);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn many_containers_starting_at_once_share_one_compile() {
        let dir = tempfile::tempdir().expect("temp dir");
        let runtime = Runtime::new().expect("runtime");
        let images = Images::new(
            Fetcher::new(dir.path().to_owned(), Vec::new()),
            runtime,
            NodeCredentials::default(),
        );
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../sample-apps/dist/http-hello.wasm");
        let wasm: Arc<[u8]> = std::fs::read(&path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .into();
        let image_id = "127.0.0.1:5000/http-hello@sha256:0123";
        let loads = (0..16).map(|_| {
            let (images, wasm) = (images.clone(), wasm.clone());
            tokio::spawn(async move { images.load(wasm, image_id).await })
        });
        let workloads: Vec<Workload> = futures::future::join_all(loads)
            .await
            .into_iter()
            .map(|joined| joined.expect("joined").expect("loaded"))
            .collect();
        assert!(
            workloads.iter().all(|w| w.shares_code_with(&workloads[0])),
            "every container of the image runs one compiled copy"
        );
        let later = images
            .inner
            .runtime
            .loaded(image_id)
            .expect("kept in memory");
        assert!(later.shares_code_with(&workloads[0]));
    }

    #[tokio::test]
    async fn a_caller_that_gives_up_leaves_the_flight_to_the_others() {
        let flights: Flights<&str, &str> = Flights::default();
        let (release, mut released) = tokio::sync::watch::channel(false);
        let work = async move {
            let _ = released.wait_for(|r| *r).await;
            "done"
        };
        let first = flights.join("k", work);
        let second = flights.join("k", async { "a second flight" });
        let mut first = Box::pin(first);
        // The first caller polls once (starting the flight), then gives up.
        assert!(futures::poll!(first.as_mut()).is_pending());
        drop(first);
        release.send(true).unwrap();
        assert_eq!(second.await, "done");
    }
}
