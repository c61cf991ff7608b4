//! Several etcd members and failing over between them, as etcd's own client does: requests go to one
//! member until it cannot be reached, then to the next. (etcd-client's balanced channel spreads requests
//! over every member, dead ones included, and hands a dead member's connection error to the caller.)
//!
//! A request is sent again to the next member only when the one it went to was unavailable (a connection
//! error or gRPC's `Unavailable`). A write whose connection broke after it reached etcd may then be applied
//! twice: a create answers AlreadyExists the second time, an update's compare-and-swap reads the object
//! back and decides again — kube-apiserver's client has the same window.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};

use etcd_client::{Client, ConnectOptions};

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

    /// Runs `op` on the active member's client; when that member is unavailable, on the next, once
    /// around all of them.
    pub(super) async fn call<T, F, Fut>(&self, mut op: F) -> Result<T, etcd_client::Error>
    where
        F: FnMut(Client) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        let mut tries = 0;
        loop {
            let at = self.active.load(Ordering::SeqCst) % self.members.len();
            let (url, client) = &self.members[at];
            match op(client.clone()).await {
                Err(e) if unavailable(&e) && tries + 1 < self.members.len() => {
                    tries += 1;
                    let next = (at + 1) % self.members.len();
                    if self
                        .active
                        .compare_exchange(at, next, Ordering::SeqCst, Ordering::SeqCst)
                        .is_ok()
                    {
                        tracing::warn!(member = %url, next = %self.members[next].0, error = %super::describe(&e), "etcd member unavailable; failing over");
                    }
                }
                other => return other,
            }
        }
    }
}
