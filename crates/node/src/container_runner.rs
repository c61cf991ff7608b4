//! One container of a pod, from image pull to its last exit: a state machine whose `step`
//! does one thing and says what comes next. Every change of the container's state is
//! reported to the pod worker, which turns the reports into the pod's status, and recorded as
//! the kubelet's events (`Pulling`, `Pulled`, `Created`, `Started`, `BackOff`, `Failed`).

use std::sync::Arc;
use std::time::Duration;

use herd_oci_fetch::{Keyring, PullPolicy, Pulled};
use herd_wasm_runtime::{Exit, Output, RunSpec, RuntimeError, Workload, WorkloadKind};
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Container;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::container_logs::{ContainerLogs, PodLogKey};
use crate::container_spec::{self, PodFacts, RestartPolicy};
use crate::crash_back_off::{CrashBackOff, go_duration};
use crate::events::{self, PodEvents};
use crate::images::Images;
use crate::log_capture;
use crate::pod_setup::PodSetup;
use crate::pod_status::{ContainerReport, RunState, Termination};
use crate::probes::{ContainerProbes, ProbeEvent, ProbeKind};
use crate::reflector::PodObjects;
use herd_api::event_correlator::EventType;

/// The first back-off after a failed pull or load; it doubles up to [`BACK_OFF_MAX`].
pub(crate) const BACK_OFF_MIN: Duration = Duration::from_secs(1);
pub(crate) const BACK_OFF_MAX: Duration = Duration::from_secs(30);
/// How long `ErrImagePull` shows before the back-off reason `ImagePullBackOff` replaces it.
const ERR_IMAGE_PULL_SHOWN: Duration = Duration::from_secs(1);
/// The exit code of a guest that trapped, as the `wasmtime` CLI reports it (128 + SIGABRT).
const TRAP_EXIT_CODE: i32 = 134;
/// The exit code of a guest stopped by the agent (128 + SIGKILL, like a killed container).
const STOPPED_EXIT_CODE: i32 = 137;
/// The exit code of a module or command ended by its pod's deletion (128 + SIGTERM: a process
/// that does not handle SIGTERM, and a guest cannot, ends by its default action).
const TERMINATED_EXIT_CODE: i32 = 143;
/// The exit code of a container that could not be started.
const START_ERROR_EXIT_CODE: i32 = 128;

/// A report from runner `index` (boxed: the channel allocates its slots in blocks, per pod).
pub(crate) type Report = (usize, Box<ContainerReport>);

/// Everything one container's runner works with.
pub(crate) struct ContainerRunner {
    pub index: usize,
    pub container: Container,
    pub pod: PodFacts,
    /// The pod's volumes, environment sources and sandbox policy.
    pub setup: Arc<PodSetup>,
    pub restart_policy: RestartPolicy,
    pub log_key: PodLogKey,
    pub logs: ContainerLogs,
    pub images: Images,
    pub reports: mpsc::UnboundedSender<Report>,
    pub events: PodEvents,
    /// Cancelled to interrupt the container (pod deleted or agent shutting down).
    pub stop: CancellationToken,
    /// Cancelled to ask the container to stop gracefully (the pod's grace period began).
    pub drain: CancellationToken,
    pub crash_back_off: CrashBackOff,
    /// The delay before the next restart after a crash.
    pub crash_delay: Duration,
    /// What is reported; starts from the pod's previous status.
    pub report: ContainerReport,
}

/// Where a container is in its life.
enum Step {
    Pull {
        back_off: Duration,
    },
    PullBackOff {
        error: String,
        back_off: Duration,
    },
    Load {
        wasm: Arc<[u8]>,
        image_id: String,
        back_off: Duration,
    },
    /// Wait, then try `retry` again; sooner if one of `wake`'s objects changes (a start that failed
    /// for want of a ConfigMap or Secret).
    RetryAfter {
        back_off: Duration,
        retry: Box<Step>,
        wake: Option<PodObjects>,
    },
    Run {
        back_off: Duration,
    },
    CrashLoopBackOff {
        back_off: Duration,
    },
    Done,
}

impl ContainerRunner {
    /// Runs the container until it will not run again or `stop` is cancelled.
    pub async fn run(mut self) {
        let mut cache: Option<(String, Workload)> = None;
        let mut step = Step::Pull {
            back_off: BACK_OFF_MIN,
        };
        loop {
            step = match step {
                Step::Done => break,
                // Being stopped: nothing new starts.
                _ if self.drain.is_cancelled() => break,
                step => self.step(step, &mut cache).await,
            };
        }
    }

    async fn step(&mut self, step: Step, cache: &mut Option<(String, Workload)>) -> Step {
        match step {
            Step::Pull { back_off } => self.pull(back_off, cache).await,
            Step::PullBackOff { error, back_off } => self.pull_back_off(error, back_off).await,
            Step::Load {
                wasm,
                image_id,
                back_off,
            } => self.load(wasm, image_id, back_off, cache).await,
            Step::RetryAfter {
                back_off,
                retry,
                wake,
            } => match self.sleep_or_wake(back_off, wake).await {
                true => *retry,
                false => Step::Done,
            },
            Step::Run { back_off } => match cache.as_ref() {
                Some((_, workload)) => self.run_once(workload.clone(), back_off).await,
                None => Step::Pull { back_off },
            },
            Step::CrashLoopBackOff { back_off } => self.crash_loop_back_off(back_off).await,
            Step::Done => Step::Done,
        }
    }

    fn image(&self) -> &str {
        self.container.image.as_deref().unwrap_or_default()
    }

    fn event(&self, type_: EventType, reason: &str, message: String) {
        self.events
            .container(&self.container.name, type_, reason, message);
    }

    fn send(&mut self, state: RunState) {
        if !matches!(state, RunState::Running { .. }) {
            self.report.ready = false;
            self.report.started = false;
        }
        self.report.state = state;
        // The worker only goes away after every runner has ended.
        let _ = self
            .reports
            .send((self.index, Box::new(self.report.clone())));
    }

    /// Sleeps `duration`; `false` if `stop` or `drain` was cancelled first.
    async fn sleep(&self, duration: Duration) -> bool {
        tokio::select! {
            () = self.stop.cancelled() => false,
            () = self.drain.cancelled() => false,
            () = tokio::time::sleep(duration) => true,
        }
    }

    /// Sleeps `duration`, or less if one of `wake`'s objects changes first (created, updated, deleted:
    /// what the start was missing may be there now); `false` if `stop` or `drain` was cancelled first.
    /// Objects that do not change leave the back-off as it is.
    async fn sleep_or_wake(&self, duration: Duration, wake: Option<PodObjects>) -> bool {
        let Some(mut objects) = wake else {
            return self.sleep(duration).await;
        };
        tokio::select! {
            () = self.stop.cancelled() => false,
            () = self.drain.cancelled() => false,
            () = tokio::time::sleep(duration) => true,
            () = objects.changed() => {
                tracing::debug!(pod = %self.pod.name, container = %self.container.name, "a ConfigMap or Secret changed: retrying before the back-off ends");
                true
            }
        }
    }

    /// Makes sure the image is here, as the kubelet's image manager does: an image already
    /// present is used unless the policy is `Always`; otherwise it is pulled.
    async fn pull(&mut self, back_off: Duration, cache: &mut Option<(String, Workload)>) -> Step {
        if !matches!(&self.report.state, RunState::Waiting { reason, .. }
            if reason == "ImagePullBackOff" || reason == "ErrImageNeverPull")
        {
            self.send(RunState::waiting("ContainerCreating", None));
        }
        let policy = container_spec::pull_policy(&self.container);
        let image = self.image().to_owned();
        if policy != PullPolicy::Always {
            if let Some((image_id, _)) = cache {
                self.report.image_id = Some(image_id.clone());
                self.already_present(&image);
                return Step::Run { back_off };
            }
            // Another pod of this image already started here: its compiled workload is in memory, so
            // neither the blob nor a blocking thread is needed.
            if let Some((image_id, workload)) = self.images.loaded(&image) {
                self.report.image_id = Some(image_id.clone());
                self.already_present(&image);
                *cache = Some((image_id, workload));
                return Step::Run { back_off };
            }
            let no_credentials = Keyring::default();
            let present = tokio::select! {
                () = self.stop.cancelled() => return Step::Done,
                present = self.images.pull(&image, PullPolicy::Never, &no_credentials) => present,
            };
            match present {
                Ok(pulled) => {
                    self.already_present(&image);
                    return self.pulled(pulled, back_off, cache);
                }
                Err(_) if policy == PullPolicy::Never => return self.never_pull(&image, back_off),
                Err(_) => {}
            }
        }
        // The pod's image pull secrets, as the kubelet reads them before each pull.
        let keyring = match self.setup.pull_keyring().await {
            Ok(pod) => {
                if !pod.missing.is_empty() {
                    self.events.pod(
                        EventType::Warning,
                        "FailedToRetrieveImagePullSecret",
                        format!(
                            "Unable to retrieve some image pull secrets ({}); attempting to pull the image may not succeed.",
                            pod.missing.join(", ")
                        ),
                    );
                }
                pod.keyring
            }
            Err(error) => return self.pull_failed(&image, error, back_off),
        };
        self.event(
            EventType::Normal,
            "Pulling",
            format!("Pulling image {image:?}"),
        );
        let started = tokio::time::Instant::now();
        let pulled = tokio::select! {
            () = self.stop.cancelled() => return Step::Done,
            pulled = self.images.pull(&image, policy, &keyring) => pulled,
        };
        match pulled {
            Ok(pulled) => {
                let took = started.elapsed();
                let size = u64::try_from(pulled.wasm.len()).unwrap_or(u64::MAX);
                self.event(
                    EventType::Normal,
                    "Pulled",
                    events::pulled_message(&image, took, took, size),
                );
                self.pulled(pulled, back_off, cache)
            }
            Err(error) => self.pull_failed(&image, error.to_string(), back_off),
        }
    }

    /// The kubelet's `ErrImagePull`: events, the waiting state, then the back-off.
    fn pull_failed(&mut self, image: &str, error: String, back_off: Duration) -> Step {
        tracing::warn!(pod = %self.pod.name, container = %self.container.name, %image, %error, "pull failed");
        self.event(
            EventType::Warning,
            "Failed",
            format!("Failed to pull image {image:?}: {error}"),
        );
        self.event(
            EventType::Warning,
            "Failed",
            "Error: ErrImagePull".to_owned(),
        );
        self.send(RunState::waiting("ErrImagePull", Some(error.clone())));
        Step::PullBackOff { error, back_off }
    }

    fn already_present(&self, image: &str) {
        self.event(
            EventType::Normal,
            "Pulled",
            format!("Container image {image:?} already present on machine"),
        );
    }

    /// The image is here: load it, unless it is the workload already loaded.
    fn pulled(
        &mut self,
        pulled: Pulled,
        back_off: Duration,
        cache: &Option<(String, Workload)>,
    ) -> Step {
        self.report.image_id = Some(pulled.image_id.clone());
        match cache {
            Some((image_id, _)) if *image_id == pulled.image_id => Step::Run { back_off },
            _ => Step::Load {
                wasm: pulled.wasm,
                image_id: pulled.image_id,
                back_off,
            },
        }
    }

    /// `imagePullPolicy: Never` and the image is not here: `ErrImageNeverPull`, looked for
    /// again after a back-off.
    fn never_pull(&mut self, image: &str, back_off: Duration) -> Step {
        let message = format!("Container image {image:?} is not present with pull policy of Never");
        self.event(EventType::Warning, "ErrImageNeverPull", message.clone());
        self.event(
            EventType::Warning,
            "Failed",
            "Error: ErrImageNeverPull".to_owned(),
        );
        self.send(RunState::waiting("ErrImageNeverPull", Some(message)));
        Step::RetryAfter {
            back_off,
            retry: Box::new(Step::Pull {
                back_off: next_back_off(back_off),
            }),
            wake: None,
        }
    }

    async fn pull_back_off(&mut self, error: String, back_off: Duration) -> Step {
        if !self.sleep(ERR_IMAGE_PULL_SHOWN.min(back_off)).await {
            return Step::Done;
        }
        let image = self.image().to_owned();
        self.event(
            EventType::Normal,
            "BackOff",
            format!("Back-off pulling image {image:?}"),
        );
        self.event(
            EventType::Warning,
            "Failed",
            "Error: ImagePullBackOff".to_owned(),
        );
        let message = format!("Back-off pulling image {image:?}: ErrImagePull: {error}");
        self.send(RunState::waiting("ImagePullBackOff", Some(message)));
        if !self
            .sleep(back_off.saturating_sub(ERR_IMAGE_PULL_SHOWN))
            .await
        {
            return Step::Done;
        }
        Step::Pull {
            back_off: next_back_off(back_off),
        }
    }

    async fn load(
        &mut self,
        wasm: Arc<[u8]>,
        image_id: String,
        back_off: Duration,
        cache: &mut Option<(String, Workload)>,
    ) -> Step {
        let loaded = tokio::select! {
            () = self.stop.cancelled() => return Step::Done,
            loaded = self.images.load(wasm.clone(), &image_id) => loaded.map_err(|e| e.to_string()),
        };
        match loaded {
            Ok(workload) => {
                *cache = Some((image_id, workload));
                Step::Run { back_off }
            }
            Err(message) => self.create_error(
                message,
                back_off,
                Step::Load {
                    wasm,
                    image_id,
                    back_off: next_back_off(back_off),
                },
            ),
        }
    }

    /// The container cannot be created: `CreateContainerError`, retried after a back-off unless
    /// the pod never restarts its containers.
    fn create_error(&mut self, message: String, back_off: Duration, retry: Step) -> Step {
        self.cannot_start("CreateContainerError", message, back_off, retry, None)
    }

    /// The container cannot start (`reason` is the kubelet's waiting reason); retried after a
    /// back-off unless the pod never restarts its containers. A pod whose volumes are not ready yet
    /// waits for them whatever its restart policy, as the kubelet does. The wait for a volume or
    /// config error also ends when one of `wake`'s objects (the pod's ConfigMaps and Secrets, as seen
    /// before the failed attempt) changes.
    fn cannot_start(
        &mut self,
        reason: &str,
        message: String,
        back_off: Duration,
        retry: Step,
        wake: Option<PodObjects>,
    ) -> Step {
        tracing::warn!(pod = %self.pod.name, container = %self.container.name, %reason, %message, "cannot start container");
        if reason == "ContainerCreating" {
            self.event(EventType::Warning, "FailedMount", message.clone());
            self.send(RunState::waiting(reason, Some(message)));
            return Step::RetryAfter {
                back_off,
                retry: Box::new(retry),
                wake,
            };
        }
        self.event(EventType::Warning, "Failed", format!("Error: {message}"));
        if self.restart_policy == RestartPolicy::Never && reason == "CreateContainerError" {
            self.report.finished = true;
        }
        self.send(RunState::waiting(reason, Some(message)));
        if reason == "CreateContainerConfigError" {
            // The kubelet keeps retrying a config error (the ConfigMap may appear) whatever the policy.
            return Step::RetryAfter {
                back_off,
                retry: Box::new(retry),
                wake,
            };
        }
        match self.restart_policy {
            RestartPolicy::Never => Step::Done,
            _ => Step::RetryAfter {
                back_off,
                retry: Box::new(retry),
                wake: None,
            },
        }
    }

    async fn run_once(&mut self, workload: Workload, back_off: Duration) -> Step {
        let http_listen = match workload.kind() {
            WorkloadKind::HttpProxy => {
                match container_spec::http_listen(&self.container, self.pod.pod_ip) {
                    Ok(addr) => Some(addr),
                    Err(message) => {
                        return self.create_error(
                            message,
                            back_off,
                            Step::Run {
                                back_off: next_back_off(back_off),
                            },
                        );
                    }
                }
            }
            WorkloadKind::Module | WorkloadKind::Command => None,
        };
        let restart_count = self.report.restart_count;
        let opened = self
            .logs
            .open_run(&self.log_key, &self.container.name, restart_count)
            .map(|(file, writing)| {
                let (output, capture) = log_capture::capture(file, writing.path());
                (output, capture, writing)
            });
        let (output, capture, writing) = match opened {
            Ok(opened) => opened,
            Err(e) => {
                let message = format!("cannot open the log file: {e}");
                return self.create_error(
                    message,
                    back_off,
                    Step::Run {
                        back_off: next_back_off(back_off),
                    },
                );
            }
        };
        // Taken before the set-up reads the objects, so a change after that read wakes the retry.
        let seen = self.setup.objects_seen();
        let setup = match self.setup.for_container(&self.container).await {
            Ok(setup) => setup,
            Err(not_ready) => {
                drop(writing);
                return self.cannot_start(
                    not_ready.reason,
                    not_ready.message,
                    back_off,
                    Step::Run {
                        back_off: next_back_off(back_off),
                    },
                    Some(seen),
                );
            }
        };
        let argv = container_spec::argv(&self.container, &setup.env);
        let mut spec = run_spec(
            argv,
            setup.env,
            output.stdout,
            output.stderr,
            http_listen,
            &self.drain,
        );
        spec.limits = setup.limits;
        spec.preopens = setup.preopens;
        spec.network = setup.network;
        let container_id = format!(
            "wasmtime://{}/{}/{}",
            self.pod.uid, self.container.name, restart_count
        );
        let name = self.container.name.clone();
        self.event(
            EventType::Normal,
            "Created",
            format!("Created container: {name}"),
        );
        self.event(
            EventType::Normal,
            "Started",
            format!("Started container {name}"),
        );
        let started_at = Timestamp::now();
        let started = tokio::time::Instant::now();
        let running = RunState::Running {
            started_at,
            container_id: container_id.clone(),
        };
        tracing::info!(pod = %self.pod.name, container = %self.container.name, restart_count, "container started");

        let exit = self
            .supervise(&workload, spec, http_listen, started, running)
            .await;
        let finished_at = Timestamp::now();
        // Everything the guest wrote is in the log before the run is reported over.
        capture.finish();
        drop(writing);
        if let Err(error) = &exit {
            self.event(EventType::Warning, "Failed", format!("Error: {error}"));
        }
        let (exit_code, reason, message) = exit_reason(exit);
        let termination = Termination {
            exit_code,
            reason: reason.to_owned(),
            message,
            started_at,
            finished_at,
            container_id,
        };
        tracing::info!(pod = %self.pod.name, container = %self.container.name, exit_code, "container ended");
        let restarts = !self.stop.is_cancelled()
            && !self.drain.is_cancelled()
            && self.restart_policy.restarts(exit_code);
        self.report.finished = !restarts;
        self.send(RunState::Terminated(termination));
        if !restarts {
            return Step::Done;
        }
        if started.elapsed() >= self.crash_back_off.reset_after() {
            self.crash_delay = self.crash_back_off.base;
        }
        Step::CrashLoopBackOff {
            back_off: self.crash_delay,
        }
    }

    /// Runs the workload while its probes run: `running` is reported once the run has started, then
    /// readiness and startup; a failed liveness or startup probe kills the run.
    async fn supervise(
        &mut self,
        workload: &Workload,
        spec: RunSpec,
        http_listen: Option<std::net::SocketAddr>,
        started: tokio::time::Instant,
        running: RunState,
    ) -> Result<Exit, RuntimeError> {
        let run_stop = self.stop.child_token();
        let (mut probes, warnings) =
            ContainerProbes::new(&self.container, self.pod.pod_ip, http_listen, started);
        for warning in warnings {
            self.event(EventType::Warning, "Unhealthy", warning);
        }
        let run = workload.run(spec, run_stop.clone());
        tokio::pin!(run);
        // The first poll starts the guest, and binds a wasi-http container's listener: from then on its
        // port accepts, which is all its implicit readiness check would find out. What is known at once
        // (started; ready, when nothing is left to probe) goes out with Running in one report, so the
        // pod's status is written once, not once for Running and again for Ready.
        if let std::task::Poll::Ready(exit) = futures::poll!(&mut run) {
            self.send(running);
            return exit;
        }
        if http_listen.is_some() {
            probes.listening();
        }
        while let Some(event) = probes.ready_now() {
            match event {
                ProbeEvent::Started => self.report.started = true,
                ProbeEvent::Ready(ready) => self.report.ready = ready,
                ProbeEvent::Unhealthy(message) => {
                    self.event(EventType::Warning, "Unhealthy", message);
                }
                ProbeEvent::Kill(_) => {}
            }
        }
        tracing::debug!(pod = %self.pod.name, container = %self.container.name, ready = self.report.ready, "container running");
        self.send(running);
        loop {
            let event = tokio::select! {
                biased;
                exit = &mut run => return exit,
                event = probes.next(), if !run_stop.is_cancelled() => event,
            };
            match event {
                ProbeEvent::Unhealthy(message) => {
                    self.event(EventType::Warning, "Unhealthy", message);
                }
                ProbeEvent::Started => {
                    self.report.started = true;
                    let _ = self
                        .reports
                        .send((self.index, Box::new(self.report.clone())));
                }
                ProbeEvent::Ready(ready) => {
                    self.report.ready = ready;
                    let _ = self
                        .reports
                        .send((self.index, Box::new(self.report.clone())));
                }
                ProbeEvent::Kill(kind) => {
                    let which = match kind {
                        ProbeKind::Startup => "startup",
                        ProbeKind::Liveness | ProbeKind::Readiness => "liveness",
                    };
                    let message = format!(
                        "Container {} failed {which} probe, will be restarted",
                        self.container.name
                    );
                    self.event(EventType::Normal, "Killing", message);
                    run_stop.cancel();
                }
            }
        }
    }

    async fn crash_loop_back_off(&mut self, back_off: Duration) -> Step {
        if let RunState::Terminated(termination) = &self.report.state {
            self.report.last_termination = Some(termination.clone());
        }
        let message = format!(
            "back-off {} restarting failed container={} pod={}_{}({})",
            go_duration(back_off),
            self.container.name,
            self.pod.name,
            self.pod.namespace,
            self.pod.uid
        );
        self.send(RunState::waiting("CrashLoopBackOff", Some(message)));
        self.event(
            EventType::Warning,
            "BackOff",
            format!(
                "Back-off restarting failed container {} in pod {}_{}({})",
                self.container.name, self.pod.name, self.pod.namespace, self.pod.uid
            ),
        );
        if !self.sleep(back_off).await {
            return Step::Done;
        }
        self.crash_delay = self.crash_back_off.next(back_off);
        self.report.restart_count += 1;
        Step::Pull {
            back_off: BACK_OFF_MIN,
        }
    }
}

/// The run of one container; the only place a `RunSpec` is built. `drain` is the pod's SIGTERM:
/// an HTTP proxy finishes its in-flight requests (until `stop` at the end of the grace period);
/// a module or command, which cannot handle a signal, ends at once (SIGTERM's default action).
fn run_spec(
    argv: Vec<String>,
    env: Vec<(String, String)>,
    stdout: Output,
    stderr: Output,
    http_listen: Option<std::net::SocketAddr>,
    drain: &CancellationToken,
) -> RunSpec {
    let mut spec = RunSpec::new(argv, env, stdout, stderr);
    spec.http_listen = http_listen;
    spec.drain = Some(drain.clone());
    spec
}

/// How a run's end is reported: exit code, `terminated.reason` and message, as the kubelet
/// reports a container's (`Completed`, `Error`, `OOMKilled` with 137 like a SIGKILLed one).
fn exit_reason(exit: Result<Exit, RuntimeError>) -> (i32, &'static str, Option<String>) {
    match exit {
        Ok(Exit::Exited(0)) => (0, "Completed", None),
        Ok(Exit::Exited(code)) => (code, "Error", None),
        Ok(Exit::Trapped(trap)) => (TRAP_EXIT_CODE, "Error", Some(trap)),
        Ok(Exit::OutOfMemory(message)) => (STOPPED_EXIT_CODE, "OOMKilled", Some(message)),
        Ok(Exit::Stopped) => (
            STOPPED_EXIT_CODE,
            "Error",
            Some("stopped by the node agent".to_owned()),
        ),
        Ok(Exit::Terminated) => (TERMINATED_EXIT_CODE, "Error", None),
        Err(error) => (START_ERROR_EXIT_CODE, "StartError", Some(error.to_string())),
    }
}

fn next_back_off(back_off: Duration) -> Duration {
    (back_off * 2).min(BACK_OFF_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exits_become_kubelet_reasons() {
        assert_eq!(exit_reason(Ok(Exit::Exited(0))), (0, "Completed", None));
        assert_eq!(exit_reason(Ok(Exit::Exited(3))), (3, "Error", None));
        assert_eq!(exit_reason(Ok(Exit::Trapped("t".into()))).1, "Error");
        assert_eq!(exit_reason(Ok(Exit::Stopped)).0, 137);
        assert_eq!(exit_reason(Ok(Exit::Terminated)), (143, "Error", None));
        assert_eq!(
            exit_reason(Ok(Exit::OutOfMemory("grew".into()))),
            (137, "OOMKilled", Some("grew".to_owned()))
        );
    }

    #[test]
    fn back_off_doubles_up_to_the_cap() {
        let delays: Vec<u64> =
            std::iter::successors(Some(BACK_OFF_MIN), |d| Some(next_back_off(*d)))
                .take(7)
                .map(|d| d.as_secs())
                .collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 30, 30]);
    }
}
