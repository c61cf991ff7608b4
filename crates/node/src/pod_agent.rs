//! Watches the pods bound to this node and keeps exactly one [`PodWorker`] per pod UID. Owns
//! the pod IP pool: an IP is taken when a worker starts and returned when it ends.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::runtime::{WatchStreamExt, watcher};
use tokio::sync::watch;
use tokio::task::{Id, JoinSet};
use tokio_util::sync::CancellationToken;

use crate::container_logs::PodLogKey;
use crate::ip_pool::{IpLease, IpPool, SharedIpPool};
use crate::pod_worker::{NodeContext, PodWorker, WorkerOutcome};

struct WorkerHandle {
    pod: watch::Sender<Arc<Pod>>,
    stop: CancellationToken,
    /// The pod disappeared from the API: remove its logs once the worker has stopped.
    gone: bool,
}

pub(crate) struct PodAgent {
    ctx: Arc<NodeContext>,
    ip_pool: SharedIpPool,
    workers: HashMap<String, WorkerHandle>,
    /// Pods whose worker has finished for good (terminal phase): never started again.
    finished: HashSet<String>,
    tasks: JoinSet<WorkerOutcome>,
    task_uids: HashMap<Id, String>,
    /// UIDs listed since the watch (re)started, until its list is complete.
    listing: Option<HashSet<String>>,
    shutdown: CancellationToken,
}

impl PodAgent {
    pub fn new(ctx: Arc<NodeContext>, ip_pool: IpPool, shutdown: CancellationToken) -> Self {
        Self {
            ctx,
            ip_pool: Arc::new(std::sync::Mutex::new(ip_pool)),
            workers: HashMap::new(),
            finished: HashSet::new(),
            tasks: JoinSet::new(),
            task_uids: HashMap::new(),
            listing: None,
            shutdown,
        }
    }

    /// Runs until `shutdown`, then stops every worker (leaving pod statuses as they are, so the
    /// pods start again with the next agent) and waits for them.
    pub async fn run(mut self) {
        let pods: Api<Pod> = Api::all(self.ctx.client.clone());
        let config =
            watcher::Config::default().fields(&format!("spec.nodeName={}", self.ctx.node_name));
        let mut events = std::pin::pin!(watcher(pods, config).default_backoff());
        loop {
            tokio::select! {
                () = self.shutdown.cancelled() => break,
                Some(joined) = self.tasks.join_next_with_id(), if !self.tasks.is_empty() => {
                    match joined {
                        Ok((id, outcome)) => self.worker_ended(id, outcome).await,
                        Err(error) => {
                            tracing::error!(%error, "a pod worker failed");
                            self.worker_ended(error.id(), WorkerOutcome::Stopped).await;
                        }
                    }
                }
                event = events.next() => match event {
                    Some(Ok(event)) => self.handle(event),
                    Some(Err(error)) => tracing::warn!(%error, "pod watch failed, retrying"),
                    None => break,
                },
            }
        }
        for worker in self.workers.values() {
            worker.stop.cancel();
        }
        while self.tasks.join_next().await.is_some() {}
    }

    fn handle(&mut self, event: watcher::Event<Pod>) {
        match event {
            watcher::Event::Init => self.listing = Some(HashSet::new()),
            watcher::Event::InitApply(pod) => {
                if let (Some(listing), Some(uid)) =
                    (self.listing.as_mut(), pod.metadata.uid.as_ref())
                {
                    listing.insert(uid.clone());
                }
                self.apply(pod);
            }
            watcher::Event::InitDone => {
                // Pods missing from a fresh list were deleted while the watch was down.
                let listed = self.listing.take().unwrap_or_default();
                for (uid, worker) in &mut self.workers {
                    if !listed.contains(uid) {
                        worker.gone = true;
                        worker.stop.cancel();
                    }
                }
                self.finished.retain(|uid| listed.contains(uid));
            }
            watcher::Event::Apply(pod) => self.apply(pod),
            watcher::Event::Delete(pod) => self.deleted(&pod),
        }
    }

    fn apply(&mut self, pod: Pod) {
        let Some(uid) = pod.metadata.uid.clone() else {
            return;
        };
        if let Some(worker) = self.workers.get(&uid) {
            worker.pod.send_replace(Arc::new(pod));
            return;
        }
        let deleting = pod.metadata.deletion_timestamp.is_some();
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        if self.finished.contains(&uid) || matches!(phase, Some("Succeeded" | "Failed")) {
            self.finished.insert(uid.clone());
            if deleting {
                // Nothing runs; the worker only removes the object.
                self.spawn(uid, pod, None);
            }
            return;
        }
        // Taken here, in the order the pods arrive (a pod resumed after an agent restart gets its address
        // back before new pods take any); a worker left without one retries on its own.
        let lease = if deleting {
            None
        } else {
            IpLease::for_pod(&self.ip_pool, &pod)
        };
        self.spawn(uid, pod, lease);
    }

    fn spawn(&mut self, uid: String, pod: Pod, lease: Option<IpLease>) {
        tracing::debug!(pod = ?pod.metadata.name, "a pod came to the node");
        // One copy of the pod, shared by the worker, its set-up and its events.
        let (pod_tx, pod_rx) = watch::channel(Arc::new(pod));
        let stop = self.shutdown.child_token();
        let worker = PodWorker::new(
            self.ctx.clone(),
            pod_rx,
            lease,
            self.ip_pool.clone(),
            stop.clone(),
        );
        let handle = self.tasks.spawn(worker.run());
        self.task_uids.insert(handle.id(), uid.clone());
        self.workers.insert(
            uid,
            WorkerHandle {
                pod: pod_tx,
                stop,
                gone: false,
            },
        );
    }

    fn deleted(&mut self, pod: &Pod) {
        let Some(uid) = pod.metadata.uid.as_ref() else {
            return;
        };
        if let Some(worker) = self.workers.get_mut(uid) {
            worker.gone = true;
            worker.stop.cancel();
        } else if self.finished.remove(uid) {
            let logs = self.ctx.logs.clone();
            let key = PodLogKey::of(pod);
            tokio::spawn(async move {
                if let Err(error) = logs.remove_pod(&key).await {
                    tracing::warn!(pod = %key.pod, %error, "removing the pod's logs failed");
                }
            });
        }
    }

    async fn worker_ended(&mut self, id: Id, outcome: WorkerOutcome) {
        let Some(uid) = self.task_uids.remove(&id) else {
            return;
        };
        let Some(worker) = self.workers.remove(&uid) else {
            return;
        };
        match outcome {
            WorkerOutcome::Finished => {
                self.finished.insert(uid);
            }
            WorkerOutcome::Deleted => {}
            WorkerOutcome::Stopped if worker.gone => {
                let key = PodLogKey::of(&worker.pod.borrow());
                if let Err(error) = self.ctx.logs.remove_pod(&key).await {
                    tracing::warn!(pod = %key.pod, %error, "removing the pod's logs failed");
                }
            }
            WorkerOutcome::Stopped => {}
        }
    }
}
