//! Container probes as the kubelet runs them: startup, liveness and readiness, each an
//! `httpGet` (any status 200–399 is success) or a `tcpSocket` (a connection within the
//! timeout) against the pod IP. The startup probe gates the other two. `grpc` and `exec`
//! probes are not supported (a probe of that kind is ignored, with a warning).
//!
//! [`ContainerProbes::next`] sleeps until a probe is due, runs it and says what changed as
//! [`ProbeEvent`]s; the counting against `successThreshold`/`failureThreshold` is the pure
//! [`Tracker`].

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Probe as ProbeSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Which probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ProbeKind {
    Startup,
    Liveness,
    Readiness,
}

impl ProbeKind {
    /// As the kubelet's events name it (`Liveness probe failed: ...`).
    pub fn title(self) -> &'static str {
        match self {
            ProbeKind::Startup => "Startup",
            ProbeKind::Liveness => "Liveness",
            ProbeKind::Readiness => "Readiness",
        }
    }
}

/// What a probe checks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ProbeAction {
    Http { port: u16, path: String },
    Tcp { port: u16 },
}

/// One probe with its timing, defaulted as the API server does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Probe {
    pub action: ProbeAction,
    pub initial_delay: Duration,
    pub period: Duration,
    pub timeout: Duration,
    pub success_threshold: u32,
    pub failure_threshold: u32,
}

impl Probe {
    /// The probe of `spec`, with named ports resolved against `container`'s ports and the
    /// defaults 0/10/1/1/3 (initialDelay/period/timeout/successThreshold/failureThreshold).
    ///
    /// # Errors
    ///
    /// A message when the probe has no supported handler or its port does not resolve.
    pub fn from_spec(spec: &ProbeSpec, container: &Container) -> Result<Self, String> {
        let action = if let Some(http) = &spec.http_get {
            ProbeAction::Http {
                port: resolve_port(&http.port, container)?,
                path: http.path.clone().unwrap_or_else(|| "/".to_owned()),
            }
        } else if let Some(tcp) = &spec.tcp_socket {
            ProbeAction::Tcp {
                port: resolve_port(&tcp.port, container)?,
            }
        } else {
            return Err("only httpGet and tcpSocket probes are supported".to_owned());
        };
        let seconds = |value: Option<i32>, default: u64, min: u64| {
            Duration::from_secs(
                value
                    .and_then(|v| u64::try_from(v).ok())
                    .unwrap_or(default)
                    .max(min),
            )
        };
        let count = |value: Option<i32>, default: u32| {
            value
                .and_then(|v| u32::try_from(v).ok())
                .filter(|v| *v > 0)
                .unwrap_or(default)
        };
        Ok(Self {
            action,
            initial_delay: seconds(spec.initial_delay_seconds, 0, 0),
            period: seconds(spec.period_seconds, 10, 1),
            timeout: seconds(spec.timeout_seconds, 1, 1),
            success_threshold: count(spec.success_threshold, 1),
            failure_threshold: count(spec.failure_threshold, 3),
        })
    }
}

fn resolve_port(port: &IntOrString, container: &Container) -> Result<u16, String> {
    let number = match port {
        IntOrString::Int(n) => *n,
        IntOrString::String(name) => match name.parse::<i32>() {
            Ok(n) => n,
            Err(_) => container
                .ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some(name.as_str()))
                .map(|p| p.container_port)
                .ok_or_else(|| format!("port {name:?} is not a named port of the container"))?,
        },
    };
    u16::try_from(number)
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| format!("{number} is not a valid port"))
}

/// Counts consecutive results against the thresholds, like the kubelet's probe worker: the
/// result changes only after `success_threshold` successes or `failure_threshold` failures in
/// a row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Tracker {
    success_threshold: u32,
    failure_threshold: u32,
    successes: u32,
    failures: u32,
    result: Option<bool>,
}

impl Tracker {
    /// A tracker whose current result is `initial` (`None`: not known yet).
    pub fn new(probe: &Probe, initial: Option<bool>) -> Self {
        Self {
            success_threshold: probe.success_threshold,
            failure_threshold: probe.failure_threshold,
            successes: 0,
            failures: 0,
            result: initial,
        }
    }

    /// Takes one result; the new overall result if it changed.
    pub fn observe(&mut self, ok: bool) -> Option<bool> {
        let (run, threshold) = if ok {
            self.failures = 0;
            self.successes = self.successes.saturating_add(1);
            (self.successes, self.success_threshold)
        } else {
            self.successes = 0;
            self.failures = self.failures.saturating_add(1);
            (self.failures, self.failure_threshold)
        };
        if run >= threshold && self.result != Some(ok) {
            self.result = Some(ok);
            return Some(ok);
        }
        None
    }

    /// Forgets the counts (after the container was killed for a failure).
    pub fn reset(&mut self, result: Option<bool>) {
        self.successes = 0;
        self.failures = 0;
        self.result = result;
    }
}

/// What the probes of a running container found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ProbeEvent {
    /// One probe failed (the kubelet's `Unhealthy` event): `"<Kind> probe failed: <why>"`.
    Unhealthy(String),
    /// The startup probe succeeded (or there is none): the other probes start.
    Started,
    /// The container's readiness changed.
    Ready(bool),
    /// The liveness or startup probe failed for good: the container must be killed.
    Kill(ProbeKind),
}

struct Prober {
    kind: ProbeKind,
    probe: Probe,
    tracker: Tracker,
    due: Instant,
}

/// The probes of one run of a container.
pub(crate) struct ContainerProbes {
    ip: Option<IpAddr>,
    startup: Option<Prober>,
    liveness: Option<Prober>,
    readiness: Option<Prober>,
    started: bool,
    pending: VecDeque<ProbeEvent>,
}

/// How often a container without a readiness probe that serves HTTP is checked for listening.
const LISTEN_CHECK_PERIOD: Duration = Duration::from_millis(50);

impl ContainerProbes {
    /// The probes of `container`'s run that started at `started`. `listen` is where a wasi-http
    /// container serves: without a readiness probe it is ready once that port accepts.
    /// Probes that cannot be used are skipped and returned as warnings.
    pub fn new(
        container: &Container,
        ip: Option<IpAddr>,
        listen: Option<SocketAddr>,
        started: Instant,
    ) -> (Self, Vec<String>) {
        let mut warnings = Vec::new();
        let mut prober = |kind: ProbeKind, spec: Option<&ProbeSpec>, initial: Option<bool>| {
            let spec = spec?;
            match Probe::from_spec(spec, container) {
                Ok(probe) => Some(Prober {
                    kind,
                    tracker: Tracker::new(&probe, initial),
                    due: started + probe.initial_delay,
                    probe,
                }),
                Err(message) => {
                    warnings.push(format!("{} probe ignored: {message}", kind.title()));
                    None
                }
            }
        };
        let startup = prober(ProbeKind::Startup, container.startup_probe.as_ref(), None);
        let liveness = prober(
            ProbeKind::Liveness,
            container.liveness_probe.as_ref(),
            Some(true),
        );
        let mut readiness = prober(
            ProbeKind::Readiness,
            container.readiness_probe.as_ref(),
            Some(false),
        );
        if readiness.is_none()
            && let Some(listen) = listen
        {
            let probe = Probe {
                action: ProbeAction::Tcp {
                    port: listen.port(),
                },
                initial_delay: Duration::ZERO,
                period: LISTEN_CHECK_PERIOD,
                timeout: Duration::from_secs(1),
                success_threshold: 1,
                failure_threshold: u32::MAX,
            };
            readiness = Some(Prober {
                kind: ProbeKind::Readiness,
                tracker: Tracker::new(&probe, Some(false)),
                due: started,
                probe,
            });
        }
        let mut pending = VecDeque::new();
        if startup.is_none() {
            pending.push_back(ProbeEvent::Started);
            if readiness.is_none() {
                pending.push_back(ProbeEvent::Ready(true));
            }
        }
        let probes = Self {
            ip: listen.map(|l| l.ip()).or(ip),
            startup,
            liveness,
            readiness,
            started: false,
            pending,
        };
        (probes, warnings)
    }

    /// The next thing the probes found; waits for it (forever if no probe is left to run).
    /// Cancel-safe between probes: dropping it only loses a probe in flight.
    pub async fn next(&mut self) -> ProbeEvent {
        loop {
            if let Some(event) = self.pending.pop_front() {
                if event == ProbeEvent::Started {
                    self.started = true;
                }
                return event;
            }
            let started = self.started;
            let due = [
                self.startup.as_ref().filter(|_| !started),
                self.liveness.as_ref().filter(|_| started),
                self.readiness.as_ref().filter(|_| started),
            ]
            .into_iter()
            .flatten()
            .min_by_key(|p| p.due)
            .map(|p| (p.kind, p.due));
            let Some((kind, due)) = due else {
                return std::future::pending().await;
            };
            tokio::time::sleep_until(due).await;
            let ip = self.ip;
            let Some(prober) = self.prober(kind) else {
                continue;
            };
            let outcome = match ip {
                Some(ip) => check(&prober.probe.action, ip, prober.probe.timeout).await,
                None => Err("the pod has no IP".to_owned()),
            };
            prober.due = Instant::now() + prober.probe.period;
            let implicit = prober.probe.failure_threshold == u32::MAX;
            let changed = prober.tracker.observe(outcome.is_ok());
            if changed == Some(false) && kind != ProbeKind::Readiness {
                // Killed: the next run starts counting afresh.
                prober.tracker.reset(Some(true));
            }
            if let Err(why) = &outcome
                && !implicit
            {
                self.pending.push_back(ProbeEvent::Unhealthy(format!(
                    "{} probe failed: {why}",
                    kind.title()
                )));
            }
            match (kind, changed) {
                (_, None) | (ProbeKind::Liveness, Some(true)) => {}
                (ProbeKind::Startup, Some(true)) => {
                    self.pending.push_back(ProbeEvent::Started);
                    if self.readiness.is_none() {
                        self.pending.push_back(ProbeEvent::Ready(true));
                    }
                }
                (ProbeKind::Startup | ProbeKind::Liveness, Some(false)) => {
                    self.pending.push_back(ProbeEvent::Kill(kind));
                }
                (ProbeKind::Readiness, Some(ready)) => {
                    self.pending.push_back(ProbeEvent::Ready(ready));
                    if ready && implicit {
                        // Listening is checked once: the host's listener lives as long as the run, and
                        // checking thousands of idle pods every 50 ms would cost a node its CPU.
                        self.readiness = None;
                    }
                }
            }
        }
    }

    /// The host has bound the container's listener (a wasi-http run got past its first poll): the implicit
    /// readiness check, if that is all there is to wait for, is answered without dialling the port.
    pub fn listening(&mut self) {
        let implicit = self
            .readiness
            .as_ref()
            .is_some_and(|p| p.probe.failure_threshold == u32::MAX);
        if implicit && self.startup.is_none() {
            self.readiness = None;
            self.pending.push_back(ProbeEvent::Ready(true));
        }
    }

    /// What the probes already know, without waiting (the events due at once).
    pub fn ready_now(&mut self) -> Option<ProbeEvent> {
        let event = self.pending.pop_front()?;
        if event == ProbeEvent::Started {
            self.started = true;
        }
        Some(event)
    }

    fn prober(&mut self, kind: ProbeKind) -> Option<&mut Prober> {
        match kind {
            ProbeKind::Startup => self.startup.as_mut(),
            ProbeKind::Liveness => self.liveness.as_mut(),
            ProbeKind::Readiness => self.readiness.as_mut(),
        }
    }
}

/// Runs one check against `ip`; `Err` says why it failed, in the kubelet's words.
pub(crate) async fn check(
    action: &ProbeAction,
    ip: IpAddr,
    timeout: Duration,
) -> Result<(), String> {
    match action {
        ProbeAction::Tcp { port } => {
            let addr = SocketAddr::new(ip, *port);
            match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => Err(format!("dial tcp {addr}: connect: {e}")),
                Err(_) => Err(format!("dial tcp {addr}: i/o timeout")),
            }
        }
        ProbeAction::Http { port, path } => {
            let addr = SocketAddr::new(ip, *port);
            let url = format!("http://{addr}{path}");
            match tokio::time::timeout(timeout, http_status(addr, path)).await {
                Ok(Ok(code)) if (200..400).contains(&code) => Ok(()),
                Ok(Ok(code)) => Err(format!("HTTP probe failed with statuscode: {code}")),
                Ok(Err(e)) => Err(format!("Get {url:?}: {e}")),
                Err(_) => Err(format!(
                    "Get {url:?}: context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
                )),
            }
        }
    }
}

/// Sends `GET path` over HTTP/1.1 and returns the response's status code.
async fn http_status(addr: SocketAddr, path: &str) -> Result<u16, String> {
    let mut stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("dial tcp {addr}: connect: {e}"))?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: kube-probe/1.37\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut head = Vec::with_capacity(64);
    let mut buf = [0u8; 256];
    while !head.contains(&b'\n') && head.len() < 4096 {
        let n = stream.read(&mut buf).await.map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(buf.get(..n).unwrap_or_default());
    }
    let line = String::from_utf8_lossy(&head);
    let line = line.lines().next().unwrap_or_default();
    parse_status_line(line).ok_or_else(|| format!("malformed HTTP response {line:?}"))
}

fn parse_status_line(line: &str) -> Option<u16> {
    let mut parts = line.split_whitespace();
    parts.next().filter(|v| v.starts_with("HTTP/"))?;
    parts.next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn container(value: serde_json::Value) -> Container {
        serde_json::from_value(value).expect("valid Container")
    }

    fn probe(value: serde_json::Value) -> Probe {
        let c = container(json!({"name": "c", "ports": [{"name": "http", "containerPort": 8080}]}));
        let spec: ProbeSpec = serde_json::from_value(value).expect("valid Probe");
        Probe::from_spec(&spec, &c).expect("supported probe")
    }

    #[tokio::test]
    async fn a_listening_container_is_checked_until_ready_then_left_alone() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("listener");
        let addr = listener.local_addr().expect("addr");
        let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = accepted.clone();
        let acceptor = tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                drop(conn);
            }
        });
        let c = container(json!({"name": "web", "ports": [{"containerPort": addr.port()}]}));
        let (mut probes, warnings) =
            ContainerProbes::new(&c, Some(addr.ip()), Some(addr), Instant::now());
        assert!(warnings.is_empty());
        assert_eq!(probes.next().await, ProbeEvent::Started);
        assert_eq!(probes.next().await, ProbeEvent::Ready(true));
        // Nothing more to probe: no event, and no more connections, however long we wait.
        let more = tokio::time::timeout(LISTEN_CHECK_PERIOD * 6, probes.next()).await;
        assert!(more.is_err(), "unexpected {more:?}");
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 1);
        acceptor.abort();
    }

    #[test]
    fn probe_defaults_and_named_ports() {
        let p = probe(json!({"httpGet": {"port": "http"}}));
        assert_eq!(
            p,
            Probe {
                action: ProbeAction::Http {
                    port: 8080,
                    path: "/".into()
                },
                initial_delay: Duration::ZERO,
                period: Duration::from_secs(10),
                timeout: Duration::from_secs(1),
                success_threshold: 1,
                failure_threshold: 3,
            }
        );
        let p = probe(
            json!({"tcpSocket": {"port": 81}, "initialDelaySeconds": 2, "periodSeconds": 3,
            "timeoutSeconds": 4, "successThreshold": 2, "failureThreshold": 5}),
        );
        assert_eq!(p.action, ProbeAction::Tcp { port: 81 });
        assert_eq!(
            (
                p.initial_delay.as_secs(),
                p.period.as_secs(),
                p.timeout.as_secs()
            ),
            (2, 3, 4)
        );
        assert_eq!((p.success_threshold, p.failure_threshold), (2, 5));

        let c = container(json!({"name": "c"}));
        let exec: ProbeSpec =
            serde_json::from_value(json!({"exec": {"command": ["true"]}})).expect("probe");
        assert!(Probe::from_spec(&exec, &c).is_err());
        let unnamed: ProbeSpec =
            serde_json::from_value(json!({"tcpSocket": {"port": "nope"}})).expect("probe");
        assert!(Probe::from_spec(&unnamed, &c).is_err());
    }

    #[test]
    fn tracker_changes_only_at_the_thresholds() {
        let p =
            probe(json!({"tcpSocket": {"port": 1}, "successThreshold": 2, "failureThreshold": 3}));
        let mut readiness = Tracker::new(&p, Some(false));
        assert_eq!(readiness.observe(true), None);
        assert_eq!(readiness.observe(true), Some(true));
        assert_eq!(readiness.observe(true), None);
        assert_eq!(readiness.observe(false), None);
        assert_eq!(
            readiness.observe(true),
            None,
            "a success resets the failures"
        );
        assert_eq!(readiness.observe(false), None);
        assert_eq!(readiness.observe(false), None);
        assert_eq!(readiness.observe(false), Some(false));
        assert_eq!(readiness.observe(false), None);
    }

    #[test]
    fn status_lines() {
        assert_eq!(parse_status_line("HTTP/1.1 204 No Content"), Some(204));
        assert_eq!(parse_status_line("HTTP/1.0 500"), Some(500));
        assert_eq!(parse_status_line("SSH-2.0"), None);
    }

    /// A server answering every request with `status`, on an ephemeral loopback port.
    async fn http_server(status: u16) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let mut buf = [0u8; 1024];
                let _ = socket.read(&mut buf).await;
                let response = format!("HTTP/1.1 {status} X\r\nContent-Length: 0\r\n\r\n");
                let _ = socket.write_all(response.as_bytes()).await;
            }
        });
        addr
    }

    #[tokio::test]
    async fn http_and_tcp_checks() {
        let ok = http_server(302).await;
        let bad = http_server(500).await;
        let ip = ok.ip();
        let timeout = Duration::from_secs(1);
        let http = |port| ProbeAction::Http {
            port,
            path: "/healthz".into(),
        };
        assert_eq!(check(&http(ok.port()), ip, timeout).await, Ok(()));
        assert_eq!(
            check(&http(bad.port()), ip, timeout).await,
            Err("HTTP probe failed with statuscode: 500".to_owned())
        );
        assert_eq!(
            check(&ProbeAction::Tcp { port: ok.port() }, ip, timeout).await,
            Ok(())
        );
        // A port nobody listens on: bind one, then close it.
        let closed = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind")
            .local_addr()
            .expect("addr");
        let refused = check(
            &ProbeAction::Tcp {
                port: closed.port(),
            },
            ip,
            timeout,
        )
        .await;
        assert!(refused.is_err_and(|e| e.starts_with("dial tcp")));
    }

    #[tokio::test]
    async fn liveness_kills_after_the_failure_threshold_and_startup_gates_it() {
        let bad = http_server(500).await;
        let c = container(json!({"name": "c",
            "startupProbe": {"tcpSocket": {"port": bad.port()}, "periodSeconds": 1},
            "livenessProbe": {"httpGet": {"port": bad.port(), "path": "/"}, "periodSeconds": 1, "failureThreshold": 2}
        }));
        let (mut probes, warnings) = ContainerProbes::new(&c, Some(bad.ip()), None, Instant::now());
        assert!(warnings.is_empty());
        assert_eq!(probes.next().await, ProbeEvent::Started);
        assert_eq!(probes.next().await, ProbeEvent::Ready(true));
        let failed = probes.next().await;
        assert_eq!(
            failed,
            ProbeEvent::Unhealthy(
                "Liveness probe failed: HTTP probe failed with statuscode: 500".into()
            )
        );
        assert!(matches!(probes.next().await, ProbeEvent::Unhealthy(_)));
        assert_eq!(probes.next().await, ProbeEvent::Kill(ProbeKind::Liveness));
    }

    #[tokio::test]
    async fn readiness_follows_the_probe() {
        let ok = http_server(200).await;
        let c = container(json!({"name": "c",
            "readinessProbe": {"httpGet": {"port": ok.port()}, "periodSeconds": 1}}));
        let (mut probes, _) = ContainerProbes::new(&c, Some(ok.ip()), None, Instant::now());
        assert_eq!(probes.next().await, ProbeEvent::Started);
        assert_eq!(probes.next().await, ProbeEvent::Ready(true));

        let none = container(json!({"name": "c"}));
        let (mut probes, _) = ContainerProbes::new(&none, Some(ok.ip()), None, Instant::now());
        assert_eq!(probes.next().await, ProbeEvent::Started);
        assert_eq!(probes.next().await, ProbeEvent::Ready(true));
    }
}
