//! Several etcd members and failing over between them, as etcd's own client does: requests go to one
//! member until it cannot be reached, then to the next. (etcd-client's balanced channel spreads requests
//! over every member, dead ones included, and hands a dead member's connection error to the caller.)
//!
//! A request is sent again to the next member (for up to 15 s, pausing after each round) only when the one it went to was unavailable (a connection
//! error or gRPC's `Unavailable`). A write whose connection broke after it reached etcd may then be applied
//! twice: a create answers AlreadyExists the second time, an update's compare-and-swap reads the object
//! back and decides again — kube-apiserver's client has the same window.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};

use etcd_client::{Client, ConnectOptions};

/// How long a request keeps trying the members while none is available.
const RETRY_FOR: std::time::Duration = std::time::Duration::from_secs(15);
/// The pause after a round of the members all unavailable.
const ROUND_PAUSE: std::time::Duration = std::time::Duration::from_millis(250);

pub(super) struct Endpoints {
    /// One client per member, with its URL.
    members: Vec<(String, Client)>,
    /// The member requests go to.
    active: AtomicUsize,
}

/// Whether a request failed without an answer from etcd (the member is down or unreachable).
fn unavailable(e: &etcd_client::Error) -> bool {
    match e {
        etcd_client::Error::TransportError(_) | etcd_client::Error::IoError(_) => true,
        etcd_client::Error::GRpcStatus(s) => {
            format!("{:?}", s.code()) == "Unavailable"
                // A status made by the client from a transport failure (a connection broken under a
                // request: "stream closed because of a broken pipe") carries that failure as its source;
                // etcd's own answers carry none.
                || std::error::Error::source(s).is_some()
                // No leader (a member cut off from the others): another member may have one.
                || s.message().contains("no leader")
        }
        _ => false,
    }
}

impl Endpoints {
    /// A client of each member (connections are made at the first request).
    pub(super) async fn connect(
        servers: &[String],
        options: &ConnectOptions,
    ) -> Result<Self, etcd_client::Error> {
        let mut members = Vec::with_capacity(servers.len());
        for server in servers {
            let client = Client::connect([server.as_str()], Some(options.clone())).await?;
            members.push((server.clone(), client));
        }
        Ok(Self {
            members,
            active: AtomicUsize::new(0),
        })
    }

    /// The active member's client.
    #[cfg(test)]
    pub(super) fn client(&self) -> Client {
        let at = self.active.load(Ordering::SeqCst) % self.members.len();
        self.members[at].1.clone()
    }

    /// Runs `op` on the active member's client; when that member is unavailable, on the next, around the
    /// members (a pause after each round, as during a leader election) for up to [`RETRY_FOR`].
    pub(super) async fn call<T, F, Fut>(&self, op: F) -> Result<T, etcd_client::Error>
    where
        F: FnMut(Client) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        self.call_for(RETRY_FOR, op).await
    }

    /// [`Endpoints::call`], trying for `patience`; then the last member's error.
    pub(super) async fn call_for<T, F, Fut>(
        &self,
        patience: std::time::Duration,
        mut op: F,
    ) -> Result<T, etcd_client::Error>
    where
        F: FnMut(Client) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        let started = tokio::time::Instant::now();
        let mut tries = 0;
        loop {
            let at = self.active.load(Ordering::SeqCst) % self.members.len();
            let (url, client) = &self.members[at];
            match op(client.clone()).await {
                Err(e) if unavailable(&e) && started.elapsed() < patience => {
                    tries += 1;
                    let next = (at + 1) % self.members.len();
                    if self
                        .active
                        .compare_exchange(at, next, Ordering::SeqCst, Ordering::SeqCst)
                        .is_ok()
                        && self.members.len() > 1
                    {
                        tracing::warn!(member = %url, next = %self.members[next].0, error = %super::describe(&e), "etcd member unavailable; failing over");
                    }
                    if tries % self.members.len() == 0 {
                        tokio::time::sleep(ROUND_PAUSE).await;
                    }
                }
                other => return other,
            }
        }
    }
}
