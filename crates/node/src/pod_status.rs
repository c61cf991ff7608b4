//! What a pod's status says, computed from what its containers are doing. Pure: no I/O, the
//! clock is an argument.

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
    ContainerStatus, HostIP, PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// The state of one container as its runner last reported it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ContainerReport {
    pub state: RunState,
    /// How the previous run ended, if there was one.
    pub last_termination: Option<Termination>,
    pub restart_count: i32,
    /// The pulled image's ID, once known.
    pub image_id: Option<String>,
    /// The runner is done: this container will not run again.
    pub finished: bool,
    /// Running and its startup probe (if any) succeeded.
    pub started: bool,
    /// Running and its readiness probe (if any) succeeds.
    pub ready: bool,
}

impl ContainerReport {
    /// A container that has not been looked at yet.
    pub fn created(restart_count: i32, last_termination: Option<Termination>) -> Self {
        Self {
            state: RunState::waiting("ContainerCreating", None),
            last_termination,
            restart_count,
            image_id: None,
            finished: false,
            started: false,
            ready: false,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum RunState {
    Waiting {
        reason: String,
        message: Option<String>,
    },
    Running {
        started_at: Timestamp,
        container_id: String,
    },
    Terminated(Termination),
}

impl RunState {
    pub fn waiting(reason: &str, message: Option<String>) -> Self {
        RunState::Waiting {
            reason: reason.to_owned(),
            message,
        }
    }
}

/// How one run of a container ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Termination {
    pub exit_code: i32,
    pub reason: String,
    pub message: Option<String>,
    pub started_at: Timestamp,
    pub finished_at: Timestamp,
    pub container_id: String,
}

/// Everything the status of one pod is computed from.
pub(crate) struct StatusInput<'a> {
    /// `(name, image)` of each init container, in spec order, with its report.
    pub init_containers: Vec<(&'a str, &'a str, &'a ContainerReport)>,
    /// `(name, image)` of each container, in spec order, with its report.
    pub containers: Vec<(&'a str, &'a str, &'a ContainerReport)>,
    /// `spec.activeDeadlineSeconds` ran out: the pod failed with `DeadlineExceeded`.
    pub deadline_exceeded: bool,
    /// The pod is being deleted: nothing will run again.
    pub terminating: bool,
    pub pod_ip: Option<String>,
    pub host_ip: String,
    pub start_time: Timestamp,
    /// The pod's `metadata.generation` this status describes.
    pub observed_generation: Option<i64>,
    /// The conditions currently on the pod, to keep their transition times.
    pub previous_conditions: &'a [PodCondition],
    pub now: Timestamp,
}

/// The pod phase, following the kubelet: Pending while any container waits for its first run;
/// Running while any runs or will be restarted; then Succeeded if every container exited 0,
/// else Failed.
pub(crate) fn pod_phase(containers: &[&ContainerReport], terminating: bool) -> &'static str {
    let (mut waiting, mut running, mut stopped, mut succeeded, mut restarting) = (0, 0, 0, 0, 0);
    for report in containers {
        let will_run_again = !report.finished && !terminating;
        let ended = match &report.state {
            RunState::Running { .. } => {
                running += 1;
                continue;
            }
            RunState::Terminated(termination) => Some(termination.exit_code),
            RunState::Waiting { .. } => match &report.last_termination {
                _ if report.finished || terminating => Some(-1),
                Some(termination) => Some(termination.exit_code),
                None => None,
            },
        };
        match ended {
            None => waiting += 1,
            Some(exit_code) => {
                stopped += 1;
                if exit_code == 0 {
                    succeeded += 1;
                }
                if will_run_again {
                    restarting += 1;
                }
            }
        }
    }
    if waiting > 0 && !terminating {
        "Pending"
    } else if running > 0 || restarting > 0 {
        "Running"
    } else if stopped == 0 {
        "Pending"
    } else if stopped == succeeded {
        "Succeeded"
    } else {
        "Failed"
    }
}

/// Whether an init container completed successfully.
pub(crate) fn init_succeeded(report: &ContainerReport) -> bool {
    matches!(&report.state, RunState::Terminated(t) if t.exit_code == 0)
}

/// Whether an init container failed and will not be run again, which fails the pod.
pub(crate) fn init_failed(report: &ContainerReport) -> bool {
    report.finished && !init_succeeded(report)
}

/// The pod phase with init containers first, as the kubelet: Failed once an init container
/// failed for good, Pending until every one succeeded, then [`pod_phase`] of the containers.
pub(crate) fn pod_phase_with_init(
    init: &[&ContainerReport],
    containers: &[&ContainerReport],
    terminating: bool,
) -> &'static str {
    if init.iter().any(|r| init_failed(r)) {
        return "Failed";
    }
    if !init.iter().all(|r| init_succeeded(r)) {
        return if terminating { "Failed" } else { "Pending" };
    }
    pod_phase(containers, terminating)
}

/// The whole status the node reports for a pod.
pub(crate) fn pod_status(input: &StatusInput<'_>) -> PodStatus {
    let reports: Vec<&ContainerReport> = input.containers.iter().map(|(_, _, r)| *r).collect();
    let init: Vec<&ContainerReport> = input.init_containers.iter().map(|(_, _, r)| *r).collect();
    let phase = match input.deadline_exceeded {
        true => "Failed",
        false => pod_phase_with_init(&init, &reports, input.terminating),
    };
    let terminal = matches!(phase, "Succeeded" | "Failed");
    let incomplete: Vec<&str> = input
        .init_containers
        .iter()
        .filter(|(_, _, r)| !init_succeeded(r))
        .map(|(name, _, _)| *name)
        .collect();
    let initialized = incomplete.is_empty();
    let unready: Vec<&str> = input
        .containers
        .iter()
        .filter(|(_, _, r)| !(r.ready && matches!(r.state, RunState::Running { .. })))
        .map(|(name, _, _)| *name)
        .collect();
    let ready = unready.is_empty() && !input.containers.is_empty() && !terminal;
    let (ready_reason, ready_message) = if ready {
        (None, None)
    } else if terminal {
        (Some("PodCompleted"), None)
    } else {
        (
            Some("ContainersNotReady"),
            Some(format!(
                "containers with unready status: [{}]",
                unready.join(" ")
            )),
        )
    };
    let condition =
        |type_: &str, status: bool, reason: Option<&str>, message: Option<String>| PodCondition {
            observed_generation: input.observed_generation,
            ..condition(
                input.previous_conditions,
                input.now,
                type_,
                status,
                reason,
                message,
            )
        };
    let conditions = vec![
        condition(
            "PodReadyToStartContainers",
            input.pod_ip.is_some(),
            None,
            None,
        ),
        match initialized {
            true => condition("Initialized", true, None, None),
            false => condition(
                "Initialized",
                false,
                Some("ContainersNotInitialized"),
                Some(format!(
                    "containers with incomplete status: [{}]",
                    incomplete.join(" ")
                )),
            ),
        },
        condition("Ready", ready, ready_reason, ready_message.clone()),
        condition("ContainersReady", ready, ready_reason, ready_message),
        // The scheduler's condition: kept as it was written.
        scheduled(input.previous_conditions, input.now),
    ];
    let (reason, message) = match input.deadline_exceeded {
        true => (
            Some("DeadlineExceeded".to_owned()),
            Some("Pod was active on the node longer than the specified deadline".to_owned()),
        ),
        false => (None, None),
    };
    let init_statuses = input
        .init_containers
        .iter()
        .map(|(name, image, report)| {
            let done = init_succeeded(report);
            ContainerStatus {
                ready: done,
                started: Some(matches!(report.state, RunState::Running { .. }) || done),
                ..container_status(name, image, report)
            }
        })
        .collect::<Vec<_>>();
    PodStatus {
        phase: Some(phase.to_owned()),
        reason,
        message,
        init_container_statuses: Some(init_statuses).filter(|s| !s.is_empty()),
        conditions: Some(conditions),
        host_ip: Some(input.host_ip.clone()),
        host_ips: Some(vec![HostIP {
            ip: input.host_ip.clone(),
        }]),
        pod_ip: input.pod_ip.clone(),
        pod_ips: input.pod_ip.clone().map(|ip| vec![PodIP { ip }]),
        start_time: Some(Time(input.start_time)),
        container_statuses: Some(
            input
                .containers
                .iter()
                .map(|(name, image, report)| {
                    let status = container_status(name, image, report);
                    match initialized {
                        true => status,
                        false => initializing(status),
                    }
                })
                .collect(),
        ),
        qos_class: Some("BestEffort".to_owned()),
        observed_generation: input.observed_generation,
        ..PodStatus::default()
    }
}

/// An app container's status while init containers still run: waiting, `PodInitializing`.
fn initializing(status: ContainerStatus) -> ContainerStatus {
    let waiting = status.state.as_ref().is_none_or(|s| s.waiting.is_some());
    match waiting {
        true => ContainerStatus {
            state: Some(container_state(&RunState::waiting("PodInitializing", None))),
            ..status
        },
        false => status,
    }
}

fn container_status(name: &str, image: &str, report: &ContainerReport) -> ContainerStatus {
    let running = matches!(report.state, RunState::Running { .. });
    let container_id = match &report.state {
        RunState::Running { container_id, .. } => Some(container_id.clone()),
        RunState::Terminated(termination) => Some(termination.container_id.clone()),
        RunState::Waiting { .. } => None,
    };
    ContainerStatus {
        name: name.to_owned(),
        image: image.to_owned(),
        image_id: report.image_id.clone().unwrap_or_default(),
        container_id,
        ready: running && report.ready,
        started: Some(running && report.started),
        restart_count: report.restart_count,
        state: Some(container_state(&report.state)),
        last_state: Some(
            report
                .last_termination
                .as_ref()
                .map(terminated_state)
                .unwrap_or_default(),
        ),
        ..ContainerStatus::default()
    }
}

fn container_state(state: &RunState) -> ContainerState {
    match state {
        RunState::Waiting { reason, message } => ContainerState {
            waiting: Some(ContainerStateWaiting {
                reason: Some(reason.clone()),
                message: message.clone(),
            }),
            ..ContainerState::default()
        },
        RunState::Running { started_at, .. } => ContainerState {
            running: Some(ContainerStateRunning {
                started_at: Some(Time(*started_at)),
            }),
            ..ContainerState::default()
        },
        RunState::Terminated(termination) => terminated_state(termination),
    }
}

fn terminated_state(termination: &Termination) -> ContainerState {
    ContainerState {
        terminated: Some(ContainerStateTerminated {
            exit_code: termination.exit_code,
            reason: Some(termination.reason.clone()),
            message: termination.message.clone(),
            started_at: Some(Time(termination.started_at)),
            finished_at: Some(Time(termination.finished_at)),
            container_id: Some(termination.container_id.clone()),
            signal: None,
        }),
        ..ContainerState::default()
    }
}

/// `PodScheduled` as the scheduler wrote it (the pod is on this node, so it is `True`).
fn scheduled(previous: &[PodCondition], now: Timestamp) -> PodCondition {
    let written = previous
        .iter()
        .find(|c| c.type_ == "PodScheduled" && c.status == "True");
    match written {
        Some(condition) => condition.clone(),
        None => condition(previous, now, "PodScheduled", true, None, None),
    }
}

/// A condition that keeps its previous transition time while its status does not change.
fn condition(
    previous: &[PodCondition],
    now: Timestamp,
    type_: &str,
    status: bool,
    reason: Option<&str>,
    message: Option<String>,
) -> PodCondition {
    let status = if status { "True" } else { "False" };
    let last_transition_time = previous
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .and_then(|c| c.last_transition_time.clone())
        .unwrap_or(Time(now));
    PodCondition {
        type_: type_.to_owned(),
        status: status.to_owned(),
        reason: reason.map(str::to_owned),
        message,
        last_transition_time: Some(last_transition_time),
        ..PodCondition::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + seconds).expect("valid timestamp")
    }

    fn termination(exit_code: i32) -> Termination {
        Termination {
            exit_code,
            reason: if exit_code == 0 { "Completed" } else { "Error" }.to_owned(),
            message: None,
            started_at: at(1),
            finished_at: at(2),
            container_id: "wasmtime://uid/app/0".to_owned(),
        }
    }

    fn report(state: RunState, last: Option<Termination>, finished: bool) -> ContainerReport {
        let running = matches!(state, RunState::Running { .. });
        ContainerReport {
            state,
            last_termination: last,
            restart_count: 0,
            image_id: None,
            finished,
            started: running,
            ready: running,
        }
    }

    fn waiting(reason: &str) -> RunState {
        RunState::waiting(reason, None)
    }

    fn running() -> RunState {
        RunState::Running {
            started_at: at(1),
            container_id: "wasmtime://uid/app/0".to_owned(),
        }
    }

    #[test]
    fn phases_follow_the_kubelet() {
        let cases: Vec<(&str, Vec<ContainerReport>, bool, &str)> = vec![
            (
                "pulling",
                vec![report(waiting("ContainerCreating"), None, false)],
                false,
                "Pending",
            ),
            (
                "one pulling, one running",
                vec![
                    report(waiting("ImagePullBackOff"), None, false),
                    report(running(), None, false),
                ],
                false,
                "Pending",
            ),
            (
                "all running",
                vec![
                    report(running(), None, false),
                    report(running(), None, false),
                ],
                false,
                "Running",
            ),
            (
                "one done, one running",
                vec![
                    report(RunState::Terminated(termination(0)), None, true),
                    report(running(), None, false),
                ],
                false,
                "Running",
            ),
            (
                "all exited 0",
                vec![
                    report(RunState::Terminated(termination(0)), None, true),
                    report(RunState::Terminated(termination(0)), None, true),
                ],
                false,
                "Succeeded",
            ),
            (
                "one exited 1 for good",
                vec![
                    report(RunState::Terminated(termination(0)), None, true),
                    report(RunState::Terminated(termination(1)), None, true),
                ],
                false,
                "Failed",
            ),
            (
                "crash loop back-off",
                vec![report(
                    waiting("CrashLoopBackOff"),
                    Some(termination(1)),
                    false,
                )],
                false,
                "Running",
            ),
            (
                "exited, about to restart",
                vec![report(RunState::Terminated(termination(1)), None, false)],
                false,
                "Running",
            ),
            (
                "create error, gave up",
                vec![report(waiting("CreateContainerError"), None, true)],
                false,
                "Failed",
            ),
            (
                "create error, retrying",
                vec![report(waiting("CreateContainerError"), None, false)],
                false,
                "Pending",
            ),
            (
                "deleted while running Always",
                vec![report(RunState::Terminated(termination(137)), None, false)],
                true,
                "Failed",
            ),
            (
                "deleted after success",
                vec![report(RunState::Terminated(termination(0)), None, false)],
                true,
                "Succeeded",
            ),
            (
                "deleted while pulling",
                vec![report(waiting("ImagePullBackOff"), None, false)],
                true,
                "Failed",
            ),
        ];
        for (name, reports, terminating, phase) in cases {
            let reports: Vec<&ContainerReport> = reports.iter().collect();
            assert_eq!(pod_phase(&reports, terminating), phase, "{name}");
        }
    }

    fn input<'a>(
        containers: Vec<(&'a str, &'a str, &'a ContainerReport)>,
        previous: &'a [PodCondition],
    ) -> StatusInput<'a> {
        StatusInput {
            init_containers: Vec::new(),
            containers,
            deadline_exceeded: false,
            terminating: false,
            pod_ip: Some("127.1.0.2".to_owned()),
            host_ip: "127.0.0.1".to_owned(),
            start_time: at(0),
            observed_generation: Some(3),
            previous_conditions: previous,
            now: at(10),
        }
    }

    fn find<'a>(status: &'a PodStatus, type_: &str) -> &'a PodCondition {
        status
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == type_)
            .expect("condition present")
    }

    #[test]
    fn running_pod_is_ready_with_ips_and_container_ids() {
        let app = report(running(), None, false);
        let status = pod_status(&input(vec![("app", "reg/app:v1", &app)], &[]));
        assert_eq!(status.phase.as_deref(), Some("Running"));
        assert_eq!(status.pod_ip.as_deref(), Some("127.1.0.2"));
        assert_eq!(
            status.pod_ips.as_ref().map(|ips| ips[0].ip.as_str()),
            Some("127.1.0.2")
        );
        assert_eq!(
            status.host_ips.as_ref().map(|ips| ips[0].ip.as_str()),
            Some("127.0.0.1")
        );
        assert_eq!(find(&status, "Ready").status, "True");
        assert_eq!(find(&status, "ContainersReady").status, "True");
        // `kubectl wait --for=condition=Ready` ignores conditions of an older generation.
        assert_eq!(status.observed_generation, Some(3));
        assert_eq!(find(&status, "Ready").observed_generation, Some(3));
        let container = &status.container_statuses.as_ref().expect("statuses")[0];
        assert!(container.ready);
        assert_eq!(container.started, Some(true));
        assert_eq!(
            container.container_id.as_deref(),
            Some("wasmtime://uid/app/0")
        );
        assert_eq!(container.image, "reg/app:v1");
    }

    #[test]
    fn waiting_and_completed_pods_are_not_ready() {
        let pulling = report(waiting("ErrImagePull"), None, false);
        let done = report(RunState::Terminated(termination(0)), None, true);
        let status = pod_status(&input(vec![("a", "i", &pulling), ("b", "i", &done)], &[]));
        let ready = find(&status, "Ready");
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_deref()),
            ("False", Some("ContainersNotReady"))
        );
        assert_eq!(
            ready.message.as_deref(),
            Some("containers with unready status: [a b]")
        );

        let status = pod_status(&input(vec![("b", "i", &done)], &[]));
        assert_eq!(status.phase.as_deref(), Some("Succeeded"));
        assert_eq!(
            find(&status, "Ready").reason.as_deref(),
            Some("PodCompleted")
        );
        let state = status.container_statuses.as_ref().expect("statuses")[0]
            .state
            .clone()
            .expect("state");
        let terminated = state.terminated.expect("terminated");
        assert_eq!(
            (terminated.exit_code, terminated.reason.as_deref()),
            (0, Some("Completed"))
        );
    }

    #[test]
    fn conditions_keep_their_transition_time_until_they_change() {
        let app = report(running(), None, false);
        let first = pod_status(&input(vec![("app", "i", &app)], &[]));
        let previous = first.conditions.clone().unwrap_or_default();
        let mut later = input(vec![("app", "i", &app)], &previous);
        later.now = at(20);
        let second = pod_status(&later);
        assert_eq!(first, second, "nothing changed, so nothing to send");

        let crashed = report(waiting("CrashLoopBackOff"), Some(termination(1)), false);
        let mut changed = input(vec![("app", "i", &crashed)], &previous);
        changed.now = at(30);
        let third = pod_status(&changed);
        assert_eq!(
            find(&third, "Ready").last_transition_time,
            Some(Time(at(30)))
        );
        assert_eq!(
            find(&third, "PodScheduled").last_transition_time,
            Some(Time(at(10)))
        );
        let container = &third.container_statuses.as_ref().expect("statuses")[0];
        assert_eq!(
            container
                .last_state
                .as_ref()
                .and_then(|s| s.terminated.as_ref())
                .map(|t| t.exit_code),
            Some(1)
        );
    }

    #[test]
    fn init_containers_gate_the_pod() {
        let init_running = report(running(), None, false);
        let init_done = report(RunState::Terminated(termination(0)), None, true);
        let app = report(waiting("ContainerCreating"), None, false);
        let status_of = |init: Vec<(&'static str, &'static str, &ContainerReport)>| {
            let mut i = input(vec![("app", "i", &app)], &[]);
            i.init_containers = init;
            pod_status(&i)
        };
        let status = status_of(vec![
            ("setup", "i", &init_done),
            ("migrate", "i", &init_running),
        ]);
        assert_eq!(status.phase.as_deref(), Some("Pending"));
        let initialized = find(&status, "Initialized");
        assert_eq!(
            (
                initialized.status.as_str(),
                initialized.reason.as_deref(),
                initialized.message.as_deref()
            ),
            (
                "False",
                Some("ContainersNotInitialized"),
                Some("containers with incomplete status: [migrate]")
            )
        );
        let app_state = status.container_statuses.as_ref().expect("statuses")[0]
            .state
            .clone();
        assert_eq!(
            app_state
                .and_then(|s| s.waiting)
                .and_then(|w| w.reason)
                .as_deref(),
            Some("PodInitializing")
        );
        let init_statuses = status.init_container_statuses.expect("init statuses");
        assert_eq!(init_statuses.len(), 2);
        assert!(
            init_statuses[0].ready,
            "a completed init container is ready"
        );
        assert!(!init_statuses[1].ready);

        let status = status_of(vec![("setup", "i", &init_done)]);
        assert_eq!(find(&status, "Initialized").status, "True");

        let failed = report(RunState::Terminated(termination(1)), None, true);
        let status = status_of(vec![("setup", "i", &failed)]);
        assert_eq!(status.phase.as_deref(), Some("Failed"));
        let retrying = report(waiting("CrashLoopBackOff"), Some(termination(1)), false);
        let status = status_of(vec![("setup", "i", &retrying)]);
        assert_eq!(status.phase.as_deref(), Some("Pending"));
    }

    #[test]
    fn readiness_comes_from_the_report() {
        let mut app = report(running(), None, false);
        app.ready = false;
        let status = pod_status(&input(vec![("app", "i", &app)], &[]));
        assert_eq!(status.phase.as_deref(), Some("Running"));
        assert_eq!(find(&status, "Ready").status, "False");
        assert_eq!(find(&status, "ContainersReady").status, "False");
        let container = &status.container_statuses.as_ref().expect("statuses")[0];
        assert!(!container.ready);
        assert_eq!(container.started, Some(true));
    }

    #[test]
    fn deadline_exceeded_fails_the_pod() {
        let app = report(RunState::Terminated(termination(137)), None, true);
        let mut i = input(vec![("app", "i", &app)], &[]);
        i.deadline_exceeded = true;
        let status = pod_status(&i);
        assert_eq!(status.phase.as_deref(), Some("Failed"));
        assert_eq!(status.reason.as_deref(), Some("DeadlineExceeded"));
        assert_eq!(
            status.message.as_deref(),
            Some("Pod was active on the node longer than the specified deadline")
        );
    }
}
