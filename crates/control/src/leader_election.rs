//! Leader election of the control plane's singleton components, as client-go's `leaderelection` package
//! with a `LeaseLock` (what kube-controller-manager and kube-scheduler run): a `coordination.k8s.io/v1`
//! Lease in `kube-system` named after the component, written through [`Objects`] like any in-process
//! write. A replica that finds no Lease creates it holding it; one that finds it held by another waits until
//! `leaseDurationSeconds` have passed **on its own clock since it last saw the record change** (client-go's
//! observedTime: no clocks are compared across hosts), then takes it over with an update guarded by the
//! resourceVersion it read, so of several replicas exactly one succeeds. The leader renews every retry
//! period; when it has not renewed within the renew deadline it stops its tasks, all of them, awaited,
//! before the lease can have expired for the others (renew deadline < lease duration), and campaigns again.
//! kube's components exit the process then; herd keeps serving the API and only stops the tasks. On
//! shutdown the leader releases the Lease (client-go's `ReleaseOnCancel`: holder emptied, duration 1 s), so
//! a survivor takes over at its next try.

use std::time::{Duration, Instant};

use herd_api::resources::{self, ResourceInfo};
use rand::Rng as _;
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::error::ApiError;
use crate::events::Recorder;
use crate::objects::Objects;

/// Where the components' Leases live.
pub const LEASE_NAMESPACE: &str = "kube-system";

/// kube-controller-manager's and kube-scheduler's `--leader-elect*` flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaderElection {
    /// `--leader-elect`: run the controllers and the scheduler only while this replica holds their
    /// Leases. `false` runs them unconditionally (one control plane).
    pub enabled: bool,
    /// `--leader-elect-lease-duration`: how long others wait after they last saw the Lease renewed
    /// before they take it (15 s).
    pub lease_duration: Duration,
    /// `--leader-elect-renew-deadline`: how long the leader keeps trying to renew before it stops
    /// leading (10 s).
    pub renew_deadline: Duration,
    /// `--leader-elect-retry-period`: how often to try to acquire or renew (2 s).
    pub retry_period: Duration,
}

impl Default for LeaderElection {
    /// kube's defaults: enabled, 15 s, 10 s, 2 s.
    fn default() -> Self {
        Self {
            enabled: true,
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// client-go's `JitterFactor`: retries wait between 1 and 1.2 retry periods.
const JITTER: f64 = 1.2;

impl LeaderElection {
    /// client-go's checks of the timings: lease duration > renew deadline > retry period × 1.2, each
    /// positive, the lease duration whole seconds (a Lease counts in seconds).
    ///
    /// # Errors
    /// What is wrong, in client-go's words.
    pub fn validate(&self) -> Result<(), String> {
        if self.lease_duration <= self.renew_deadline {
            return Err("leaseDuration must be greater than renewDeadline".into());
        }
        if self.renew_deadline.as_secs_f64() <= JITTER * self.retry_period.as_secs_f64() {
            return Err("renewDeadline must be greater than retryPeriod*JitterFactor".into());
        }
        if self.retry_period.is_zero() {
            return Err("retryPeriod must be greater than zero".into());
        }
        if self.lease_duration.subsec_nanos() != 0 {
            return Err("leaseDuration must be whole seconds".into());
        }
        Ok(())
    }
}

/// `coordination.k8s.io/v1` leases.
pub fn leases() -> &'static ResourceInfo {
    resources::by_path("coordination.k8s.io", "v1", "leases").expect("leases are in the table")
}

/// This replica's identity as kube's components make it: `<hostname>_<uuid>`, a new uuid per start.
pub fn new_identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let host = match host.trim() {
        "" => "localhost",
        h => h,
    };
    format!("{host}_{}", uuid::Uuid::new_v4())
}

/// A MicroTime of now (`2026-12-07T14:44:17.123456Z`).
pub fn micro_time_now() -> String {
    jiff::Timestamp::now()
        .round(jiff::Unit::Microsecond)
        .unwrap_or_else(|_| jiff::Timestamp::now())
        .strftime("%Y-%m-%dT%H:%M:%S.%6fZ")
        .to_string()
}

/// client-go's `LeaderElectionRecord`: what a Lease's spec says about its holder.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct Record {
    holder: String,
    lease_duration_seconds: i64,
    acquire_time: Option<String>,
    renew_time: Option<String>,
    transitions: i64,
}

impl Record {
    fn of(lease: &Value) -> Self {
        let spec = &lease["spec"];
        let text = |f: &str| spec[f].as_str().map(str::to_string);
        Self {
            holder: text("holderIdentity").unwrap_or_default(),
            lease_duration_seconds: spec["leaseDurationSeconds"].as_i64().unwrap_or(0),
            acquire_time: text("acquireTime"),
            renew_time: text("renewTime"),
            transitions: spec["leaseTransitions"].as_i64().unwrap_or(0),
        }
    }

    fn spec(&self) -> Value {
        json!({"holderIdentity": self.holder, "leaseDurationSeconds": self.lease_duration_seconds,
            "acquireTime": self.acquire_time, "renewTime": self.renew_time,
            "leaseTransitions": self.transitions})
    }
}

/// The outcome of one try.
#[derive(Debug, PartialEq, Eq)]
enum Attempt {
    /// This replica holds the Lease now (acquired or renewed).
    Holding,
    /// Another replica holds it, and it has not expired as seen from here.
    HeldBy(String),
    /// The write lost a race (the Lease changed since it was read): try again.
    Raced,
}

/// One component's elector.
pub struct Elector {
    objects: Objects,
    /// The Lease's name: the component's (`kube-controller-manager`, `kube-scheduler`).
    name: &'static str,
    identity: String,
    cfg: LeaderElection,
    recorder: Recorder,
    /// The record last seen and when it was first seen (client-go's observedRecord and observedTime).
    observed: Option<(Record, Instant)>,
}

impl Elector {
    /// An elector for the Lease `kube-system/<name>`; `objects` writes under the component's manager name
    /// and `event_source` is the component its `LeaderElection` Events come from.
    pub fn new(
        objects: Objects,
        name: &'static str,
        event_source: &'static str,
        identity: String,
        cfg: LeaderElection,
    ) -> Self {
        Self {
            recorder: Recorder::new(objects.clone(), event_source),
            objects,
            name,
            identity,
            cfg,
            observed: None,
        }
    }

    /// Runs `lead` each time this replica becomes the leader, with a token cancelled when it stops
    /// leading; the tasks it returns are all awaited before the elector campaigns again. Returns after
    /// `shutdown`, with the tasks stopped and the Lease released.
    pub async fn run(
        mut self,
        shutdown: CancellationToken,
        lead: impl Fn(CancellationToken) -> Vec<JoinHandle<()>> + Send,
    ) {
        loop {
            tracing::info!(lease = %self.lease_name(), identity = %self.identity,
                "attempting to acquire leader lease");
            if !self.acquire(&shutdown).await {
                return;
            }
            tracing::info!(lease = %self.lease_name(), identity = %self.identity,
                "successfully acquired lease");
            self.announce().await;
            let leading = shutdown.child_token();
            let tasks = lead(leading.clone());
            let lost = self.keep_renewing(&shutdown).await;
            leading.cancel();
            for task in tasks {
                let _ = task.await;
            }
            if !lost {
                self.release().await;
                return;
            }
            tracing::warn!(lease = %self.lease_name(), identity = %self.identity,
                "leaderelection lost: stopped leading (this replica keeps serving the API)");
        }
    }

    fn lease_name(&self) -> String {
        format!("{LEASE_NAMESPACE}/{}", self.name)
    }

    /// Tries every retry period (jittered) until this replica holds the Lease: true, or `shutdown`: false.
    async fn acquire(&mut self, shutdown: &CancellationToken) -> bool {
        loop {
            if shutdown.is_cancelled() {
                return false;
            }
            match tokio::time::timeout(self.cfg.renew_deadline, self.try_acquire_or_renew()).await {
                Ok(Ok(Attempt::Holding)) => return true,
                Ok(Ok(Attempt::HeldBy(_) | Attempt::Raced)) => {}
                Ok(Err(e)) => tracing::warn!(lease = %self.lease_name(), error = %e,
                    "error retrieving resource lock"),
                Err(_) => tracing::warn!(lease = %self.lease_name(),
                    "acquiring the lease timed out"),
            }
            let wait = self
                .cfg
                .retry_period
                .mul_f64(rand::rng().random_range(1.0..JITTER));
            tokio::select! {
                () = shutdown.cancelled() => return false,
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Renews every retry period while leading. Returns true when leadership is lost (not renewed within
    /// the renew deadline of the last renewal, or another replica holds the Lease), false on `shutdown`.
    async fn keep_renewing(&mut self, shutdown: &CancellationToken) -> bool {
        // When the last successful try started: others measure the lease from a later moment.
        let mut renewed = Instant::now();
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return false,
                () = tokio::time::sleep(self.cfg.retry_period) => {}
            }
            let deadline = renewed + self.cfg.renew_deadline;
            loop {
                let started = Instant::now();
                let Some(left) = deadline
                    .checked_duration_since(started)
                    .filter(|d| !d.is_zero())
                else {
                    tracing::warn!(lease = %self.lease_name(),
                        "failed to renew lease: timed out reaching the renew deadline");
                    return true;
                };
                match tokio::time::timeout(left, self.try_acquire_or_renew()).await {
                    Ok(Ok(Attempt::Holding)) => {
                        renewed = started;
                        break;
                    }
                    Ok(Ok(Attempt::HeldBy(holder))) => {
                        tracing::warn!(lease = %self.lease_name(), %holder,
                            "the lease is held by another replica");
                        return true;
                    }
                    Ok(Ok(Attempt::Raced)) => {}
                    Ok(Err(e)) => tracing::warn!(lease = %self.lease_name(), error = %e,
                        "failed to renew lease"),
                    Err(_) => continue,
                }
                let wait = self.cfg.retry_period.min(left);
                tokio::select! {
                    () = shutdown.cancelled() => return false,
                    () = tokio::time::sleep(wait) => {}
                }
            }
        }
    }

    /// client-go's `tryAcquireOrRenew`.
    async fn try_acquire_or_renew(&mut self) -> Result<Attempt, ApiError> {
        let now = micro_time_now();
        let duration = i64::try_from(self.cfg.lease_duration.as_secs()).unwrap_or(i64::MAX);
        let Some(current) = self
            .objects
            .find(leases(), LEASE_NAMESPACE, self.name)
            .await?
        else {
            let record = Record {
                holder: self.identity.clone(),
                lease_duration_seconds: duration,
                acquire_time: Some(now.clone()),
                renew_time: Some(now),
                transitions: 0,
            };
            let lease = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": self.name, "namespace": LEASE_NAMESPACE},
                "spec": record.spec()});
            return match self
                .objects
                .create(leases(), Some(LEASE_NAMESPACE), lease, false)
                .await
            {
                Ok(_) => {
                    self.observed = Some((record, Instant::now()));
                    Ok(Attempt::Holding)
                }
                Err(ApiError::AlreadyExists { .. }) => Ok(Attempt::Raced),
                Err(e) => Err(e),
            };
        };
        let record = Record::of(&current);
        if self.observed.as_ref().map(|(r, _)| r) != Some(&record) {
            self.observed = Some((record.clone(), Instant::now()));
        }
        let seen = self
            .observed
            .as_ref()
            .map_or_else(Instant::now, |(_, at)| *at);
        let held_for =
            Duration::from_secs(u64::try_from(record.lease_duration_seconds).unwrap_or(0));
        if !record.holder.is_empty() && record.holder != self.identity && seen.elapsed() < held_for
        {
            return Ok(Attempt::HeldBy(record.holder));
        }
        let mine = record.holder == self.identity;
        let wanted = Record {
            holder: self.identity.clone(),
            lease_duration_seconds: duration,
            acquire_time: if mine {
                record.acquire_time.clone()
            } else {
                Some(now.clone())
            },
            renew_time: Some(now),
            transitions: if mine {
                record.transitions
            } else {
                record.transitions + 1
            },
        };
        self.write(current, &wanted).await
    }

    /// Writes `record` over `current`, guarded by the resourceVersion `current` was read at.
    async fn write(&mut self, current: Value, record: &Record) -> Result<Attempt, ApiError> {
        let mut lease = current;
        lease["spec"] = record.spec();
        match self
            .objects
            .replace(
                leases(),
                Some(LEASE_NAMESPACE),
                self.name,
                lease,
                false,
                false,
            )
            .await
        {
            Ok(_) => {
                self.observed = Some((record.clone(), Instant::now()));
                Ok(Attempt::Holding)
            }
            Err(ApiError::Conflict { .. } | ApiError::NotFound { .. }) => Ok(Attempt::Raced),
            Err(e) => Err(e),
        }
    }

    /// kube's `LeaderElection` Event on the Lease: `<identity> became leader`.
    async fn announce(&self) {
        match self
            .objects
            .find(leases(), LEASE_NAMESPACE, self.name)
            .await
        {
            Ok(Some(lease)) => {
                self.recorder
                    .normal(
                        &lease,
                        "LeaderElection",
                        &format!("{} became leader", self.identity),
                    )
                    .await;
            }
            Ok(None) => {}
            Err(e) => tracing::debug!(error = %e, "reading the lease for its event"),
        }
    }

    /// client-go's `release`: when this replica holds the Lease, empties the holder with a 1 s duration,
    /// so another replica takes it at its next try.
    async fn release(&mut self) {
        let Ok(Some(current)) = self
            .objects
            .find(leases(), LEASE_NAMESPACE, self.name)
            .await
        else {
            return;
        };
        let record = Record::of(&current);
        if record.holder != self.identity {
            return;
        }
        let now = micro_time_now();
        let released = Record {
            holder: String::new(),
            lease_duration_seconds: 1,
            acquire_time: Some(now.clone()),
            renew_time: Some(now),
            transitions: record.transitions,
        };
        match self.write(current, &released).await {
            Ok(Attempt::Holding) => {
                tracing::info!(lease = %self.lease_name(), "released the lease")
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(lease = %self.lease_name(), error = %e,
                "failed to release the lease"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kube_defaults_pass_client_gos_checks_and_bad_timings_do_not() {
        assert!(LeaderElection::default().validate().is_ok());
        let mut bad = LeaderElection::default();
        bad.renew_deadline = bad.lease_duration;
        assert_eq!(
            bad.validate().unwrap_err(),
            "leaseDuration must be greater than renewDeadline"
        );
        let bad = LeaderElection {
            retry_period: Duration::from_secs(9),
            ..LeaderElection::default()
        };
        assert_eq!(
            bad.validate().unwrap_err(),
            "renewDeadline must be greater than retryPeriod*JitterFactor"
        );
    }

    #[test]
    fn a_record_reads_back_what_it_writes() {
        let record = Record {
            holder: "host_1".into(),
            lease_duration_seconds: 15,
            acquire_time: Some(micro_time_now()),
            renew_time: Some(micro_time_now()),
            transitions: 3,
        };
        assert_eq!(Record::of(&json!({"spec": record.spec()})), record);
        assert!(new_identity().contains('_'));
    }
}
