//! One pod on this node: starts a runner per container, reports the pod's status whenever it
//! changes, and on deletion stops the containers and removes the pod.
//!
//! ```text
//! Start ─▶ Running ─(all containers done)──────────────────────▶ Done(Finished)
//!   │         ├─(deletionTimestamp)─▶ Terminating ─▶ Deleting ─▶ Done(Deleted)
//!   │         └─(stop: agent shutdown or pod gone)─▶ Stopping ─▶ Done(Stopped)
//!   └─(already being deleted)──────────────────────▶ Deleting
//! ```

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use herd_wasm_runtime::ConnectRedirect;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Container, Pod, PodCondition, PodStatus};
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use kube::{Api, Client};
use serde_json::json;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::container_logs::{ContainerLogs, PodLogKey};
use crate::container_resume::resumed_report;
use crate::container_runner::{BACK_OFF_MAX, BACK_OFF_MIN, ContainerRunner, Report};
use crate::container_spec::{PodFacts, RestartPolicy};
use crate::crash_back_off::CrashBackOff;
use crate::events::{EventRecorder, PodEvents};
use crate::images::Images;
use crate::ip_pool::{IpLease, SharedIpPool};
use crate::pod_env::{EnvFacts, NodeAllocatable};
use crate::pod_setup::PodSetup;
use crate::pod_status::{
    self, ContainerReport, RunState, StatusInput, init_failed, init_succeeded,
};
use crate::reflector::ConfigReflector;
use crate::service_account_token::TokenSource;
use crate::service_env::ServiceEnv;
use herd_api::event_correlator::EventType;

/// What every pod worker of this node shares.
pub(crate) struct NodeContext {
    pub client: Client,
    pub images: Images,
    pub logs: ContainerLogs,
    pub events: EventRecorder,
    pub node_name: String,
    pub host_ip: IpAddr,
    pub crash_back_off: CrashBackOff,
    /// What `resourceFieldRef`s report for unset limits.
    pub allocatable: NodeAllocatable,
    /// Where the guests' outbound connections really go (Service ports served elsewhere).
    pub connect_redirect: Option<ConnectRedirect>,
    /// Where projected serviceAccountToken sources get their tokens (the TokenRequest API).
    pub tokens: TokenSource,
    /// The Services whose variables containers get.
    pub services: ServiceEnv,
    /// The cluster's DNS names for the guests' name lookups (`None`: the host's resolver only).
    pub cluster_names: Option<herd_dns::ClusterNames>,
    /// Where the node's proxy learns each pod's readiness as it is decided (see
    /// [`herd_proxy::LocalReadiness`]); `None`: only from the API.
    pub local_readiness: Option<herd_proxy::LocalReadiness>,
    /// Turns to write a pod status: at most [`STATUS_WRITES_IN_FLIGHT`] at once (see there).
    pub status_writes: Semaphore,
    /// The node's one cache of the ConfigMaps and Secrets its pods' volumes use.
    pub config_objects: ConfigReflector,
    /// Where its pods' `persistentVolumeClaim` volumes are resolved.
    pub claims: crate::claim_volume::ClaimSource,
}

/// How many pod status writes the node has in flight at once. The kubelet's status manager writes one
/// status at a time; a few in parallel keep the API server's group commit fed, while a thousand pods
/// starting together no longer send a thousand writes at once — each holding its pod, its patch and, on
/// the API server, several copies of the object — that all wait for the same store anyway. A pod whose
/// status changes while it waits for its turn writes the latest status once.
pub(crate) const STATUS_WRITES_IN_FLIGHT: usize = 16;

/// How long a new pod's first status may wait for its containers to get past `ContainerCreating`: a pod
/// whose containers start within it is reported once, Running, instead of twice (ContainerCreating, then
/// Running) with a write on the start's path in between. A second covers a cached image (under a
/// millisecond) and also a new image's pull and compile, even when a thousand pods start at once, which is
/// when the writes saved matter most; a pull that fails ends the wait at once (ErrImagePull is reported).
const FIRST_STATUS_WAIT: Duration = Duration::from_secs(1);

/// How often a pod left without an IP (the node's pod CIDR is full) tries again.
const NO_IP_RETRY: Duration = Duration::from_secs(2);

/// `terminationGracePeriodSeconds` when the pod does not say.
const DEFAULT_GRACE_PERIOD: Duration = Duration::from_secs(30);

/// How a pod worker ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WorkerOutcome {
    /// Every container is done for good; the terminal status was reported.
    Finished,
    /// The pod was being deleted: its containers were stopped and the object removed.
    Deleted,
    /// Told to stop (agent shutdown, or the pod vanished); the status was left as it was.
    Stopped,
}

enum WorkerState {
    Start,
    /// The node's pod CIDR has no free address: report it and try again (the kubelet's
    /// `FailedCreatePodSandBox`).
    NoIp,
    Running,
    /// `spec.activeDeadlineSeconds` ran out: kill the containers, fail the pod.
    DeadlineExceeded,
    Terminating,
    Deleting,
    Stopping,
    Done(WorkerOutcome),
}

pub(crate) struct PodWorker {
    ctx: Arc<NodeContext>,
    pod: Arc<Pod>,
    updates: watch::Receiver<Arc<Pod>>,
    events: PodEvents,
    /// The pod's IP; back in the node's pool when the worker goes.
    lease: Option<IpLease>,
    ip_pool: SharedIpPool,
    key: PodLogKey,
    /// Cancelled by the agent: stop without touching the pod.
    stop: CancellationToken,
    /// Cancelled to stop the containers (a child of `stop`).
    containers_stop: CancellationToken,
    /// Cancelled to ask the containers to stop gracefully (the grace period began).
    containers_drain: CancellationToken,
    /// Init containers first (`init_count` of them), then the app containers.
    containers: Vec<ContainerSlot>,
    init_count: usize,
    facts: Option<PodFacts>,
    /// Volumes, environment and policy the containers share (from `start`).
    setup: Option<Arc<PodSetup>>,
    /// Where runners report; dropped once every runner that will run has been started, so
    /// `reports` ends when the last runner does.
    reports_tx: Option<mpsc::UnboundedSender<Report>>,
    reports: Option<mpsc::UnboundedReceiver<Report>>,
    /// When `spec.activeDeadlineSeconds` runs out.
    deadline: Option<tokio::time::Instant>,
    deadline_exceeded: bool,
    runners: JoinSet<()>,
    start_time: Timestamp,
    /// The status last written, to send only changes.
    sent: Option<PodStatus>,
    /// Until when the first status of a new pod waits for its containers to be created (see
    /// [`FIRST_STATUS_WAIT`]); `None` once it may be written.
    first_status_by: Option<tokio::time::Instant>,
}

/// A container's spec, its latest report and whether its runner was started.
struct ContainerSlot {
    name: String,
    image: String,
    container: Container,
    restart_policy: RestartPolicy,
    report: ContainerReport,
    spawned: bool,
}

impl PodWorker {
    pub fn new(
        ctx: Arc<NodeContext>,
        updates: watch::Receiver<Arc<Pod>>,
        lease: Option<IpLease>,
        ip_pool: SharedIpPool,
        stop: CancellationToken,
    ) -> Self {
        let pod = updates.borrow().clone();
        let key = PodLogKey::of(&pod);
        let start_time = pod
            .status
            .as_ref()
            .and_then(|s| s.start_time.as_ref())
            .map_or_else(Timestamp::now, |t| t.0);
        let events = PodEvents::new(ctx.events.clone(), updates.clone());
        Self {
            ctx,
            pod,
            updates,
            events,
            lease,
            ip_pool,
            key,
            containers_stop: stop.child_token(),
            containers_drain: CancellationToken::new(),
            stop,
            containers: Vec::new(),
            init_count: 0,
            facts: None,
            setup: None,
            reports_tx: None,
            reports: None,
            deadline: None,
            deadline_exceeded: false,
            runners: JoinSet::new(),
            start_time,
            sent: None,
            first_status_by: None,
        }
    }

    /// Drives the pod to one of its ends.
    pub async fn run(mut self) -> WorkerOutcome {
        let _live = self.ctx.logs.register_pod(self.key.clone());
        let mut state = WorkerState::Start;
        loop {
            state = match state {
                WorkerState::Done(outcome) => {
                    if let Some(local) = &self.ctx.local_readiness {
                        local.forget(&self.key.uid);
                    }
                    return outcome;
                }
                state => self.step(state).await,
            };
        }
    }

    async fn step(&mut self, state: WorkerState) -> WorkerState {
        match state {
            WorkerState::Start => self.start(),
            WorkerState::NoIp => self.no_ip().await,
            WorkerState::Running => self.running().await,
            WorkerState::DeadlineExceeded => {
                tracing::info!(pod = %self.key.pod, namespace = %self.key.namespace, "pod exceeded its active deadline");
                // Interrupted at once: a guest cannot be told to stop (WASI has no signals).
                self.kill(Duration::ZERO).await;
                self.deadline_exceeded = true;
                self.publish_until_sent().await;
                WorkerState::Done(WorkerOutcome::Finished)
            }
            WorkerState::Terminating => {
                self.kill(grace_period(&self.pod)).await;
                self.publish(true).await;
                WorkerState::Deleting
            }
            WorkerState::Deleting => self.delete().await,
            WorkerState::Stopping => {
                if let Some(setup) = &self.setup {
                    setup.detach();
                }
                self.reports_tx = None;
                self.containers_stop.cancel();
                self.drain_reports().await;
                WorkerState::Done(WorkerOutcome::Stopped)
            }
            WorkerState::Done(outcome) => WorkerState::Done(outcome),
        }
    }

    fn start(&mut self) -> WorkerState {
        if self.pod.metadata.deletion_timestamp.is_some() {
            return WorkerState::Deleting;
        }
        let Some(spec) = self.pod.spec.clone() else {
            return WorkerState::Done(WorkerOutcome::Finished);
        };
        if self.lease.is_none() {
            self.lease = IpLease::for_pod(&self.ip_pool, &self.pod);
        }
        // Built afresh on each start (a pod left without an IP comes back here).
        self.containers.clear();
        let restart_policy = RestartPolicy::parse(spec.restart_policy.as_deref());
        // Init containers run to completion: retried on failure unless the pod never restarts.
        let init_policy = match restart_policy {
            RestartPolicy::Never => RestartPolicy::Never,
            RestartPolicy::Always | RestartPolicy::OnFailure => RestartPolicy::OnFailure,
        };
        let status = self.pod.status.clone().unwrap_or_default();
        // A pod this node reports on for the first time (not one resumed after an agent restart).
        let first_report =
            status.container_statuses.is_none() && status.init_container_statuses.is_none();
        let previous_init = status.init_container_statuses.unwrap_or_default();
        let previous = status.container_statuses.unwrap_or_default();
        let now = Timestamp::now();
        let init = spec.init_containers.unwrap_or_default();
        self.init_count = init.len();
        let all = init
            .into_iter()
            .map(|c| (c, init_policy, &previous_init))
            .chain(
                spec.containers
                    .into_iter()
                    .map(|c| (c, restart_policy, &previous)),
            );
        for (container, policy, previous) in all {
            let before = previous.iter().find(|s| s.name == container.name);
            self.containers.push(ContainerSlot {
                name: container.name.clone(),
                image: container.image.clone().unwrap_or_default(),
                report: resumed_report(before, policy, now),
                restart_policy: policy,
                container,
                spawned: false,
            });
        }
        if self.lease.is_none() {
            return WorkerState::NoIp;
        }
        self.setup = Some(Arc::new(
            PodSetup::new(
                self.pod.clone(),
                self.ctx.config_objects.register(&self.pod),
                self.ctx.logs.pod_dir(&self.key),
                EnvFacts {
                    pod_ips: self.ip().into_iter().collect(),
                    host_ip: self.ctx.host_ip,
                    allocatable: self.ctx.allocatable,
                },
                self.ctx.connect_redirect.clone(),
                self.ctx.tokens.clone(),
                self.ctx.services.clone(),
            )
            .with_cluster_names(self.ctx.cluster_names.clone())
            .with_claims(self.ctx.claims.clone()),
        ));
        self.facts = Some(PodFacts {
            name: self.key.pod.clone(),
            namespace: self.key.namespace.clone(),
            uid: self.key.uid.clone(),
            pod_ip: self.ip(),
        });
        self.deadline = spec
            .active_deadline_seconds
            .and_then(|seconds| u64::try_from(seconds).ok())
            .map(|seconds| {
                let active = now.duration_since(self.start_time).unsigned_abs();
                tokio::time::Instant::now() + Duration::from_secs(seconds).saturating_sub(active)
            });
        if first_report {
            self.first_status_by = Some(tokio::time::Instant::now() + FIRST_STATUS_WAIT);
        }
        let (reports_tx, reports_rx) = mpsc::unbounded_channel();
        self.reports_tx = Some(reports_tx);
        self.reports = Some(reports_rx);
        self.advance();
        tracing::info!(pod = %self.key.pod, namespace = %self.key.namespace, ip = ?self.ip(), "starting pod");
        WorkerState::Running
    }

    /// Starts the runners that may run now: the first init container not yet done, or once
    /// all of them succeeded, every app container. Drops the report sender when no runner is
    /// left to start.
    fn advance(&mut self) {
        if self.reports_tx.is_none() {
            return;
        }
        for index in 0..self.init_count {
            let Some(slot) = self.containers.get(index) else {
                break;
            };
            if init_succeeded(&slot.report) {
                continue;
            }
            if init_failed(&slot.report) {
                self.reports_tx = None;
            } else if !slot.spawned {
                self.spawn(index);
            }
            return;
        }
        for index in self.init_count..self.containers.len() {
            if self
                .containers
                .get(index)
                .is_some_and(|slot| !slot.spawned && !slot.report.finished)
            {
                self.spawn(index);
            }
        }
        self.reports_tx = None;
    }

    fn spawn(&mut self, index: usize) {
        let (Some(reports), Some(facts), Some(setup), Some(slot)) = (
            self.reports_tx.clone(),
            self.facts.clone(),
            self.setup.clone(),
            self.containers.get_mut(index),
        ) else {
            return;
        };
        slot.spawned = true;
        let runner = ContainerRunner {
            index,
            container: slot.container.clone(),
            pod: facts,
            setup,
            restart_policy: slot.restart_policy,
            log_key: self.key.clone(),
            logs: self.ctx.logs.clone(),
            images: self.ctx.images.clone(),
            reports,
            events: self.events.clone(),
            stop: self.containers_stop.clone(),
            drain: self.containers_drain.clone(),
            crash_back_off: self.ctx.crash_back_off,
            crash_delay: self.ctx.crash_back_off.base,
            report: slot.report.clone(),
        };
        self.runners.spawn(runner.run());
    }

    /// Stops the containers: asks them to stop, waits up to `grace` for them to end, then
    /// interrupts what still runs. A pod update that shortens `deletionGracePeriodSeconds`
    /// (a forced delete) shortens the wait, as with the kubelet.
    async fn kill(&mut self, grace: Duration) {
        self.reports_tx = None;
        for slot in &self.containers {
            if matches!(slot.report.state, RunState::Running { .. }) {
                let message = format!("Stopping container {}", slot.name);
                self.events
                    .container(&slot.name, EventType::Normal, "Killing", message);
            }
        }
        self.containers_drain.cancel();
        let began = tokio::time::Instant::now();
        let mut until = began + grace;
        let mut updates = self.updates.clone();
        if let Some(reports) = self.reports.as_mut() {
            loop {
                tokio::select! {
                    report = reports.recv() => match report {
                        Some((index, report)) => {
                            if let Some(slot) = self.containers.get_mut(index) {
                                slot.report = *report;
                            }
                        }
                        None => break,
                    },
                    changed = updates.changed(), if updates.has_changed().is_ok() => {
                        if changed.is_ok() {
                            let pod = updates.borrow_and_update().clone();
                            until = until.min(began + grace_period(&pod));
                        }
                    }
                    () = tokio::time::sleep_until(until) => {
                        tracing::info!(pod = %self.key.pod, namespace = %self.key.namespace, ?grace, "grace period over, interrupting the containers");
                        break;
                    }
                }
            }
        }
        self.containers_stop.cancel();
        self.drain_reports().await;
    }

    /// No free pod IP: reports the pod's containers as being created, records the kubelet's
    /// `FailedCreatePodSandBox`, and tries again after [`NO_IP_RETRY`] (at once if the pod is deleted).
    async fn no_ip(&mut self) -> WorkerState {
        let cidr = self
            .ip_pool
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .cidr();
        tracing::warn!(pod = %self.key.pod, namespace = %self.key.namespace, %cidr, "no free pod IP left in this node's pod CIDR");
        self.events.pod(
            EventType::Warning,
            "FailedCreatePodSandBox",
            format!("Failed to create pod sandbox: no IP addresses available in range set: {cidr}"),
        );
        self.publish(false).await;
        let retry = tokio::time::sleep(NO_IP_RETRY);
        tokio::pin!(retry);
        loop {
            tokio::select! {
                () = self.stop.cancelled() => return WorkerState::Stopping,
                changed = self.updates.changed() => {
                    if changed.is_err() {
                        return WorkerState::Stopping;
                    }
                    self.pod = self.updates.borrow_and_update().clone();
                    // A deletion is handled at once (by `start`); other updates, such as the status
                    // just written, wait for the retry.
                    if self.pod.metadata.deletion_timestamp.is_some() {
                        return WorkerState::Start;
                    }
                }
                () = &mut retry => return WorkerState::Start,
            }
        }
    }

    async fn running(&mut self) -> WorkerState {
        let hold = self.first_status_hold();
        if hold.is_none() {
            self.publish(false).await;
        }
        let unsent = hold.is_none() && self.sent.is_none();
        let retry = async move {
            match (unsent, hold) {
                (true, _) => tokio::time::sleep(BACK_OFF_MIN).await,
                (false, Some(until)) => tokio::time::sleep_until(until).await,
                (false, None) => std::future::pending().await,
            }
        };
        let deadline = self.deadline;
        let deadline = async move {
            match deadline {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        let Some(reports) = self.reports.as_mut() else {
            return WorkerState::Done(WorkerOutcome::Finished);
        };
        tokio::select! {
            // Stopping comes first: the containers end with it, and their reports must not be taken
            // for the pod's own ending.
            biased;
            () = self.stop.cancelled() => WorkerState::Stopping,
            () = deadline => WorkerState::DeadlineExceeded,
            changed = self.updates.changed() => {
                if changed.is_err() {
                    return WorkerState::Stopping;
                }
                self.pod = self.updates.borrow_and_update().clone();
                if self.pod.metadata.deletion_timestamp.is_some() {
                    tracing::info!(pod = %self.key.pod, namespace = %self.key.namespace, "pod is being deleted");
                    WorkerState::Terminating
                } else {
                    WorkerState::Running
                }
            }
            report = reports.recv() => match report {
                Some(report) => {
                    self.apply_report(report);
                    WorkerState::Running
                }
                None => {
                    self.publish_until_sent().await;
                    WorkerState::Done(WorkerOutcome::Finished)
                }
            },
            () = retry => WorkerState::Running,
        }
    }

    /// Until when the first status still waits: while [`FIRST_STATUS_WAIT`] has not passed and a
    /// started container is still being created.
    fn first_status_hold(&mut self) -> Option<tokio::time::Instant> {
        let until = self.first_status_by?;
        let creating = self.containers.iter().any(|slot| {
            slot.spawned
                && matches!(&slot.report.state, RunState::Waiting { reason, .. } if reason == "ContainerCreating")
        });
        if !creating || tokio::time::Instant::now() >= until {
            self.first_status_by = None;
            return None;
        }
        Some(until)
    }

    fn apply_report(&mut self, (index, report): Report) {
        if let Some(slot) = self.containers.get_mut(index) {
            slot.report = *report;
        }
        // Take everything already queued, so one status update covers it.
        while let Some(Ok((index, report))) =
            self.reports.as_mut().map(mpsc::UnboundedReceiver::try_recv)
        {
            if let Some(slot) = self.containers.get_mut(index) {
                slot.report = *report;
            }
        }
        self.advance();
    }

    /// Collects reports until every runner has ended.
    async fn drain_reports(&mut self) {
        if let Some(reports) = self.reports.as_mut() {
            while let Some((index, report)) = reports.recv().await {
                if let Some(slot) = self.containers.get_mut(index) {
                    slot.report = *report;
                }
            }
        }
        while self.runners.join_next().await.is_some() {}
    }

    fn status(&self, terminating: bool) -> PodStatus {
        let no_conditions: Vec<PodCondition> = Vec::new();
        let previous = self
            .sent
            .as_ref()
            .or(self.pod.status.as_ref())
            .and_then(|s| s.conditions.as_ref())
            .unwrap_or(&no_conditions);
        let (init, containers) = self
            .containers
            .split_at(self.init_count.min(self.containers.len()));
        pod_status::pod_status(&StatusInput {
            init_containers: view(init),
            containers: view(containers),
            deadline_exceeded: self.deadline_exceeded,
            terminating,
            pod_ip: self.ip().map(|ip| ip.to_string()),
            host_ip: self.ctx.host_ip.to_string(),
            start_time: self.start_time,
            observed_generation: self.pod.metadata.generation,
            previous_conditions: previous,
            now: Timestamp::now(),
        })
    }

    fn ip(&self) -> Option<IpAddr> {
        self.lease.as_ref().map(|lease| lease.ip)
    }

    fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.ctx.client.clone(), &self.key.namespace)
    }

    /// Writes the status if it changed. On failure `sent` is cleared, so `running` retries.
    async fn publish(&mut self, terminating: bool) {
        if self.stop.is_cancelled() {
            // The agent is going away: its containers were just stopped under the pod, and the status
            // stays as it was, for the next agent to resume from (never a terminal status).
            return;
        }
        let status = self.status(terminating);
        if let Some(local) = &self.ctx.local_readiness {
            // The node's proxy may send a held connection to the pod now, before the write below.
            local.update(&self.pod, &status);
        }
        if self.sent.as_ref() == Some(&status) {
            return;
        }
        let _turn = tokio::select! {
            turn = self.ctx.status_writes.acquire() => turn,
            () = self.stop.cancelled() => return,
        };
        // Computed after the wait, so what is written is the latest.
        let status = self.status(terminating);
        if self.sent.as_ref() == Some(&status) {
            return;
        }
        let patch = json!({"status": status});
        match self
            .pods()
            .patch_status(
                &self.key.pod,
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
        {
            Ok(_) => {
                tracing::debug!(pod = %self.key.pod, namespace = %self.key.namespace, phase = ?status.phase, "status written");
                self.sent = Some(status);
            }
            Err(error) => {
                tracing::warn!(pod = %self.key.pod, namespace = %self.key.namespace, %error, "status update failed");
                self.sent = None;
            }
        }
    }

    /// Publishes the final status, retrying until it is written, the pod is gone or `stop`.
    async fn publish_until_sent(&mut self) {
        let mut back_off = BACK_OFF_MIN;
        loop {
            self.publish(false).await;
            if self.sent.is_some() {
                return;
            }
            tokio::select! {
                () = self.stop.cancelled() => return,
                () = tokio::time::sleep(back_off) => {}
            }
            back_off = (back_off * 2).min(BACK_OFF_MAX);
        }
    }

    /// Removes the pod object at once (its containers are stopped), then its logs.
    async fn delete(&mut self) -> WorkerState {
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: Some(self.key.uid.clone()),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        let mut back_off = BACK_OFF_MIN;
        loop {
            match self.pods().delete(&self.key.pod, &params).await {
                Ok(_) => break,
                // Gone already, or the name now belongs to another pod.
                Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => break,
                Err(error) => {
                    tracing::warn!(pod = %self.key.pod, namespace = %self.key.namespace, %error, "deleting the pod failed");
                }
            }
            tokio::select! {
                () = self.stop.cancelled() => return WorkerState::Done(WorkerOutcome::Stopped),
                () = tokio::time::sleep(back_off) => {}
            }
            back_off = (back_off * 2).min(Duration::from_secs(30));
        }
        tracing::info!(pod = %self.key.pod, namespace = %self.key.namespace, "pod deleted");
        if let Some(setup) = &self.setup {
            setup.remove().await;
        }
        if let Err(error) = self.ctx.logs.remove_pod(&self.key).await {
            tracing::warn!(pod = %self.key.pod, %error, "removing the pod's logs failed");
        }
        WorkerState::Done(WorkerOutcome::Deleted)
    }
}

/// `(name, image, report)` of each slot, as the status wants them.
fn view(slots: &[ContainerSlot]) -> Vec<(&str, &str, &ContainerReport)> {
    slots
        .iter()
        .map(|c| (c.name.as_str(), c.image.as_str(), &c.report))
        .collect()
}

/// How long a deleted pod's containers get to stop: `metadata.deletionGracePeriodSeconds`,
/// else `spec.terminationGracePeriodSeconds`, else 30 s.
pub(crate) fn grace_period(pod: &Pod) -> Duration {
    pod.metadata
        .deletion_grace_period_seconds
        .or_else(|| {
            pod.spec
                .as_ref()
                .and_then(|s| s.termination_grace_period_seconds)
        })
        .and_then(|seconds| u64::try_from(seconds).ok())
        .map_or(DEFAULT_GRACE_PERIOD, Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn grace_period_from_deletion_then_spec_then_default() {
        let pod = |value: serde_json::Value| -> Pod { serde_json::from_value(value).expect("pod") };
        let spec = json!({"containers": [], "terminationGracePeriodSeconds": 5});
        assert_eq!(
            grace_period(&pod(
                json!({"metadata": {"deletionGracePeriodSeconds": 2}, "spec": spec})
            )),
            Duration::from_secs(2)
        );
        assert_eq!(
            grace_period(&pod(json!({"spec": spec}))),
            Duration::from_secs(5)
        );
        assert_eq!(grace_period(&pod(json!({}))), Duration::from_secs(30));
    }
}
