//! `sessionAffinity: ClientIP`: which backend each client of a frontend sticks to, and until when.
//! As kube-proxy's `recent` match, a client's stickiness is renewed by each new connection (or UDP
//! flow) and lapses `timeoutSeconds` after the last one, or as soon as its backend stops serving.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::routes::Protocol;

/// A map that is swept of lapsed entries whenever it has doubled since the last sweep.
const FIRST_SWEEP: usize = 1024;

/// The sticky backends of every (frontend, client) pair.
#[derive(Debug)]
pub(crate) struct Affinities {
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    sticky: HashMap<(Protocol, SocketAddr, IpAddr), Sticky>,
    sweep_at: usize,
}

#[derive(Clone, Copy, Debug)]
struct Sticky {
    backend: SocketAddr,
    until: Instant,
}

impl Default for Affinities {
    fn default() -> Self {
        Self {
            inner: Mutex::new(Inner {
                sticky: HashMap::new(),
                sweep_at: FIRST_SWEEP,
            }),
        }
    }
}

/// The (protocol, frontend, client) a stickiness belongs to.
pub(crate) type Key = (Protocol, SocketAddr, IpAddr);

impl Affinities {
    /// The backend `key`'s client sticks to, if it has one that is still among `backends`; its
    /// stickiness is renewed for `timeout`.
    pub(crate) fn get(
        &self,
        key: Key,
        backends: &[SocketAddr],
        timeout: Duration,
    ) -> Option<SocketAddr> {
        let now = Instant::now();
        let mut inner = self.inner.lock().ok()?;
        let sticky = inner.sticky.get_mut(&key)?;
        if sticky.until <= now || !backends.contains(&sticky.backend) {
            return None;
        }
        sticky.until = now + timeout;
        Some(sticky.backend)
    }

    /// Makes `key`'s client stick to `backend` for `timeout`.
    pub(crate) fn set(&self, key: Key, backend: SocketAddr, timeout: Duration) {
        let now = Instant::now();
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        inner.sticky.insert(
            key,
            Sticky {
                backend,
                until: now + timeout,
            },
        );
        if inner.sticky.len() >= inner.sweep_at {
            inner.sticky.retain(|_, s| s.until > now);
            inner.sweep_at = (inner.sticky.len() * 2).max(FIRST_SWEEP);
        }
    }

    /// Forgets the clients of frontends that `keep` says are gone or have no affinity any more.
    pub(crate) fn retain(&self, keep: impl Fn(Protocol, SocketAddr) -> bool) {
        if let Ok(mut inner) = self.inner.lock() {
            inner
                .sticky
                .retain(|(protocol, frontend, _), _| keep(*protocol, *frontend));
        }
    }
}
