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

use herd_oci_fetch::Fetcher;
use herd_wasm_runtime::Runtime;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{ContainerStatus, Pod, PodCondition, PodStatus};
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use kube::{Api, Client};
use serde_json::json;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::container_logs::{ContainerLogs, PodLogKey};
use crate::container_runner::{BACK_OFF_MAX, BACK_OFF_MIN, ContainerRunner, Report};
use crate::container_spec::{PodFacts, RestartPolicy};
use crate::event_correlator::EventType;
use crate::events::{EventRecorder, PodEvents};
use crate::pod_status::{self, ContainerReport, RunState, StatusInput, Termination};

/// What every pod worker of this node shares.
pub(crate) struct NodeContext {
    pub client: Client,
    pub fetcher: Fetcher,
    pub runtime: Runtime,
    pub logs: ContainerLogs,
    pub events: EventRecorder,
    pub node_name: String,
    pub host_ip: IpAddr,
}

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
    Running,
    Terminating,
    Deleting,
    Stopping,
    Done(WorkerOutcome),
}

pub(crate) struct PodWorker {
    ctx: Arc<NodeContext>,
    pod: Pod,
    updates: watch::Receiver<Pod>,
    events: PodEvents,
    ip: Option<IpAddr>,
    key: PodLogKey,
    /// Cancelled by the agent: stop without touching the pod.
    stop: CancellationToken,
    /// Cancelled to stop the containers (a child of `stop`).
    containers_stop: CancellationToken,
    containers: Vec<ContainerSlot>,
    reports: Option<mpsc::UnboundedReceiver<Report>>,
    runners: JoinSet<()>,
    start_time: Timestamp,
    /// The status last written, to send only changes.
    sent: Option<PodStatus>,
}

/// A container's spec identity and latest report.
struct ContainerSlot {
    name: String,
    image: String,
    report: ContainerReport,
}

impl PodWorker {
    pub fn new(
        ctx: Arc<NodeContext>,
        updates: watch::Receiver<Pod>,
        ip: Option<IpAddr>,
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
            ip,
            key,
            containers_stop: stop.child_token(),
            stop,
            containers: Vec::new(),
            reports: None,
            runners: JoinSet::new(),
            start_time,
            sent: None,
        }
    }

    /// Drives the pod to one of its ends.
    pub async fn run(mut self) -> WorkerOutcome {
        let _live = self.ctx.logs.register_pod(self.key.clone());
        let mut state = WorkerState::Start;
        loop {
            state = match state {
                WorkerState::Done(outcome) => return outcome,
                state => self.step(state).await,
            };
        }
    }

    async fn step(&mut self, state: WorkerState) -> WorkerState {
        match state {
            WorkerState::Start => self.start(),
            WorkerState::Running => self.running().await,
            WorkerState::Terminating => {
                for slot in &self.containers {
                    if matches!(slot.report.state, RunState::Running { .. }) {
                        let message = format!("Stopping container {}", slot.name);
                        self.events
                            .container(&slot.name, EventType::Normal, "Killing", message);
                    }
                }
                self.containers_stop.cancel();
                self.drain_reports().await;
                self.publish(true).await;
                WorkerState::Deleting
            }
            WorkerState::Deleting => self.delete().await,
            WorkerState::Stopping => {
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
        let restart_policy = RestartPolicy::parse(spec.restart_policy.as_deref());
        let previous = self
            .pod
            .status
            .as_ref()
            .and_then(|s| s.container_statuses.clone())
            .unwrap_or_default();
        let facts = PodFacts {
            name: self.key.pod.clone(),
            namespace: self.key.namespace.clone(),
            uid: self.key.uid.clone(),
            node_name: self.ctx.node_name.clone(),
            pod_ip: self.ip,
            host_ip: self.ctx.host_ip,
        };
        let (reports_tx, reports_rx) = mpsc::unbounded_channel();
        for (index, container) in spec.containers.into_iter().enumerate() {
            let before = previous.iter().find(|s| s.name == container.name);
            let report = resumed_report(before, restart_policy, Timestamp::now());
            self.containers.push(ContainerSlot {
                name: container.name.clone(),
                image: container.image.clone().unwrap_or_default(),
                report: report.clone(),
            });
            if report.finished {
                continue;
            }
            let runner = ContainerRunner {
                index,
                container,
                pod: facts.clone(),
                restart_policy,
                log_key: self.key.clone(),
                logs: self.ctx.logs.clone(),
                fetcher: self.ctx.fetcher.clone(),
                runtime: self.ctx.runtime.clone(),
                reports: reports_tx.clone(),
                events: self.events.clone(),
                stop: self.containers_stop.clone(),
                report,
            };
            self.runners.spawn(runner.run());
        }
        self.reports = Some(reports_rx);
        tracing::info!(pod = %self.key.pod, namespace = %self.key.namespace, ip = ?self.ip, "starting pod");
        WorkerState::Running
    }

    async fn running(&mut self) -> WorkerState {
        self.publish(false).await;
        let unsent = self.sent.is_none();
        let retry = async move {
            match unsent {
                true => tokio::time::sleep(BACK_OFF_MIN).await,
                false => std::future::pending().await,
            }
        };
        let Some(reports) = self.reports.as_mut() else {
            return WorkerState::Done(WorkerOutcome::Finished);
        };
        tokio::select! {
            () = self.stop.cancelled() => WorkerState::Stopping,
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

    fn apply_report(&mut self, (index, report): Report) {
        if let Some(slot) = self.containers.get_mut(index) {
            slot.report = report;
        }
        // Take everything already queued, so one status update covers it.
        while let Some(Ok((index, report))) =
            self.reports.as_mut().map(mpsc::UnboundedReceiver::try_recv)
        {
            if let Some(slot) = self.containers.get_mut(index) {
                slot.report = report;
            }
        }
    }

    /// Collects reports until every runner has ended.
    async fn drain_reports(&mut self) {
        if let Some(reports) = self.reports.as_mut() {
            while let Some((index, report)) = reports.recv().await {
                if let Some(slot) = self.containers.get_mut(index) {
                    slot.report = report;
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
        pod_status::pod_status(&StatusInput {
            containers: self
                .containers
                .iter()
                .map(|c| (c.name.as_str(), c.image.as_str(), &c.report))
                .collect(),
            terminating,
            pod_ip: self.ip.map(|ip| ip.to_string()),
            host_ip: self.ctx.host_ip.to_string(),
            start_time: self.start_time,
            observed_generation: self.pod.metadata.generation,
            previous_conditions: previous,
            now: Timestamp::now(),
        })
    }

    fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.ctx.client.clone(), &self.key.namespace)
    }

    /// Writes the status if it changed. On failure `sent` is cleared, so `running` retries.
    async fn publish(&mut self, terminating: bool) {
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
            Ok(_) => self.sent = Some(status),
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
        if let Err(error) = self.ctx.logs.remove_pod(&self.key).await {
            tracing::warn!(pod = %self.key.pod, %error, "removing the pod's logs failed");
        }
        WorkerState::Done(WorkerOutcome::Deleted)
    }
}

/// Where a container resumes when its pod is picked up again (after an agent restart), from
/// the status the previous agent reported. A container that had ended for good stays ended;
/// one that had started counts a restart. One that was running when the previous agent went
/// away ended unseen: its last state says so (`Unknown`, exit code 255, finished `now`), as
/// the kubelet reports a container lost with its node.
pub(crate) fn resumed_report(
    previous: Option<&ContainerStatus>,
    policy: RestartPolicy,
    now: Timestamp,
) -> ContainerReport {
    let Some(previous) = previous else {
        return ContainerReport::created(0, None);
    };
    let state = previous.state.as_ref();
    let terminated = state
        .and_then(|s| s.terminated.as_ref())
        .map(termination_from);
    let last = previous
        .last_state
        .as_ref()
        .and_then(|s| s.terminated.as_ref())
        .map(termination_from);
    match terminated {
        Some(ended) if !policy.restarts(ended.exit_code) => ContainerReport {
            state: RunState::Terminated(ended),
            last_termination: last,
            restart_count: previous.restart_count,
            image_id: Some(previous.image_id.clone()).filter(|id| !id.is_empty()),
            finished: true,
        },
        Some(ended) => ContainerReport::created(previous.restart_count + 1, Some(ended)),
        None => match state.and_then(|s| s.running.as_ref()) {
            Some(running) => {
                let lost = Termination {
                    exit_code: LOST_EXIT_CODE,
                    reason: "Unknown".to_owned(),
                    message: None,
                    started_at: running
                        .started_at
                        .as_ref()
                        .map_or(Timestamp::UNIX_EPOCH, |time| time.0),
                    finished_at: now,
                    container_id: previous.container_id.clone().unwrap_or_default(),
                };
                ContainerReport::created(previous.restart_count + 1, Some(lost))
            }
            None => ContainerReport::created(previous.restart_count, last),
        },
    }
}

/// The exit code the kubelet reports for a container whose end it did not see.
const LOST_EXIT_CODE: i32 = 255;

fn termination_from(t: &k8s_openapi::api::core::v1::ContainerStateTerminated) -> Termination {
    let epoch = Timestamp::UNIX_EPOCH;
    Termination {
        exit_code: t.exit_code,
        reason: t.reason.clone().unwrap_or_default(),
        message: t.message.clone(),
        started_at: t.started_at.as_ref().map_or(epoch, |time| time.0),
        finished_at: t.finished_at.as_ref().map_or(epoch, |time| time.0),
        container_id: t.container_id.clone().unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn now() -> Timestamp {
        Timestamp::from_second(1_800_000_000).expect("time")
    }

    fn status(value: serde_json::Value) -> ContainerStatus {
        serde_json::from_value(value).expect("valid ContainerStatus")
    }

    #[test]
    fn new_container_starts_fresh() {
        let report = resumed_report(None, RestartPolicy::Always, now());
        assert_eq!(report, ContainerReport::created(0, None));
    }

    #[test]
    fn interrupted_run_counts_a_restart() {
        let running = status(json!({
            "name": "app", "image": "i", "imageID": "", "ready": true, "restartCount": 2,
            "state": {"running": {"startedAt": "2025-01-01T00:00:00Z"}},
            "lastState": {"terminated": {"exitCode": 1, "reason": "Error"}}
        }));
        let report = resumed_report(Some(&running), RestartPolicy::Always, now());
        assert_eq!(report.restart_count, 3);
        let lost = report
            .last_termination
            .expect("the lost run is the last state");
        assert_eq!((lost.exit_code, lost.reason.as_str()), (255, "Unknown"));
        assert_eq!(lost.started_at.to_string(), "2025-01-01T00:00:00Z");
        assert_eq!(lost.finished_at, now());
        assert!(!report.finished);
    }

    #[test]
    fn container_done_for_good_stays_done() {
        let completed = status(json!({
            "name": "app", "image": "i", "imageID": "reg/app@sha256:1", "ready": false, "restartCount": 0,
            "state": {"terminated": {"exitCode": 0, "reason": "Completed", "containerID": "wasmtime://u/app/0"}}
        }));
        let report = resumed_report(Some(&completed), RestartPolicy::OnFailure, now());
        assert!(report.finished);
        assert!(matches!(report.state, RunState::Terminated(ref t) if t.exit_code == 0));
        assert_eq!(report.image_id.as_deref(), Some("reg/app@sha256:1"));

        let again = resumed_report(Some(&completed), RestartPolicy::Always, now());
        assert!(!again.finished);
        assert_eq!(again.restart_count, 1);
    }

    #[test]
    fn waiting_container_keeps_its_count() {
        let waiting = status(json!({
            "name": "app", "image": "i", "imageID": "", "ready": false, "restartCount": 4,
            "state": {"waiting": {"reason": "CrashLoopBackOff"}}
        }));
        assert_eq!(
            resumed_report(Some(&waiting), RestartPolicy::Always, now()).restart_count,
            4
        );
    }
}
