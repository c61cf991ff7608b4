//! Watches on etcd: one etcd watch of the whole prefix per store (the hub), fanned out to every watcher
//! through a bounded queue of its own, as the SQLite store fans out its commits; a watcher 16,384 changes
//! behind is cut off with [`StoreError::Expired`] and re-lists.
//!
//! A watcher from a revision the hub has already passed reads the changes in between through an etcd
//! watch of its own (from `since + 1`, of its resource's keys) until that watch reaches the hub's
//! position; from there on it takes the hub's feed, which it joined before opening the history watch, so
//! nothing falls between the two.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use etcd_client::{EventType as EtcdEventType, GetOptions, WatchOptions, WatchStream};
use serde_json::json;
use tokio::sync::mpsc;

use super::{EtcdStore, Inner, prefix_end};
use crate::storage::{Change, ChangeStream, EventType, StoreError};

/// Watchers that fall this far behind the live feed are cut off and must re-list.
pub(super) const WATCH_BACKLOG: usize = 16_384;

/// The live feed: who watches, and how far the shared etcd watch has handed out changes.
pub(super) struct Hub {
    state: std::sync::Mutex<HubState>,
}

struct HubState {
    /// Every change at or below this revision has been handed to the watchers of its time.
    dispatched: i64,
    watchers: Vec<Subscriber>,
}

struct Subscriber {
    resource: Option<Arc<str>>,
    changes: mpsc::Sender<Arc<Change>>,
    lagged: Arc<AtomicBool>,
}

struct Subscription {
    changes: mpsc::Receiver<Arc<Change>>,
    lagged: Arc<AtomicBool>,
}

impl Hub {
    pub(super) fn new(dispatched: i64) -> Self {
        Self {
            state: std::sync::Mutex::new(HubState {
                dispatched,
                watchers: Vec::new(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HubState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Joins the live feed: every change after the returned revision reaches the subscription.
    fn subscribe(&self, resource: Option<&str>) -> (Subscription, i64) {
        let (tx, changes) = mpsc::channel(WATCH_BACKLOG);
        let lagged = Arc::new(AtomicBool::new(false));
        let mut state = self.lock();
        state.watchers.push(Subscriber {
            resource: resource.map(Arc::from),
            changes: tx,
            lagged: lagged.clone(),
        });
        (Subscription { changes, lagged }, state.dispatched)
    }

    /// Hands changes (in revision order) to every watcher that wants them.
    fn send(&self, changes: &[Arc<Change>], up_to: i64) {
        let mut state = self.lock();
        state.watchers.retain(|w| {
            for change in changes {
                if w.resource.as_ref().is_some_and(|r| *r != change.resource) {
                    continue;
                }
                match w.changes.try_send(change.clone()) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        w.lagged.store(true, Ordering::SeqCst);
                        return false;
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => return false,
                }
            }
            true
        });
        state.dispatched = state.dispatched.max(up_to);
    }

    /// Ends every watcher's feed: `expired` when changes were lost (they get [`StoreError::Expired`]),
    /// else (the store closing) a plain end.
    pub(super) fn end(&self, expired: bool) {
        let mut state = self.lock();
        for w in state.watchers.drain(..) {
            if expired {
                w.lagged.store(true, Ordering::SeqCst);
            }
        }
    }

    /// Starts over after a gap: the feed resumes after `rev`.
    fn restart_at(&self, rev: i64) {
        self.lock().dispatched = rev;
    }

    fn dispatched(&self) -> i64 {
        self.lock().dispatched
    }
}

/// The changes of an etcd watch response, decoded (events of keys not of this store skipped).
fn changes_of(
    inner: &Inner,
    events: &[etcd_client::Event],
) -> Result<Vec<Arc<Change>>, StoreError> {
    let mut out = Vec::with_capacity(events.len());
    for event in events {
        let Some(kv) = event.kv() else { continue };
        let Some((resource, namespace, name)) = inner.parse_key(kv.key()) else {
            continue;
        };
        let rev = kv.mod_revision();
        let previous = event
            .prev_kv()
            .map(|p| inner.value_of(resource, p.value(), p.mod_revision()))
            .transpose()?;
        let (kind, object) = match event.event_type() {
            EtcdEventType::Delete => {
                // The last state, with the deletion's revision (kube's DELETED event).
                let mut object = previous
                    .clone()
                    .unwrap_or_else(|| json!({"metadata": {"name": name, "namespace": namespace}}));
                super::set_resource_version(&mut object, rev);
                (EventType::Deleted, object)
            }
            EtcdEventType::Put => (
                if kv.create_revision() == kv.mod_revision() {
                    EventType::Added
                } else {
                    EventType::Modified
                },
                inner.value_of(resource, kv.value(), rev)?,
            ),
        };
        out.push(Arc::new(Change {
            rev,
            resource: Arc::from(resource),
            namespace: namespace.to_string(),
            name: name.to_string(),
            kind,
            object: Arc::new(object),
            previous: previous.map(Arc::new),
        }));
    }
    Ok(out)
}

/// Whether a watch response says its start revision was compacted away.
fn compacted(resp: &etcd_client::WatchResponse) -> Option<i64> {
    (resp.canceled() && resp.compact_revision() > 0).then_some(resp.compact_revision())
}

/// Opens an etcd watch of `key`'s range from `start` with previous values.
async fn open(inner: &Inner, key: String, start: i64) -> Result<WatchStream, etcd_client::Error> {
    let options = WatchOptions::new()
        .with_prefix()
        .with_prev_key()
        .with_start_revision(start);
    inner
        .endpoints
        .call(|mut c| {
            let (key, options) = (key.clone(), options.clone());
            async move { c.watch(key, Some(options)).await }
        })
        .await
}

/// The shared watch: follows every key under the prefix from the hub's position and hands the changes
/// out; reconnects (from where it stopped) when the stream breaks; ends every watcher with Expired when
/// its position was compacted away meanwhile. Stops when the store closes or goes away.
pub(super) async fn run_hub(inner: Weak<Inner>) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let Some(strong) = inner.upgrade() else {
            return;
        };
        let closed = strong.closed.clone();
        let start = strong.hub.dispatched() + 1;
        let opened = tokio::select! {
            () = closed.cancelled() => return,
            w = open(&strong, strong.root.clone(), start) => w,
        };
        let mut stream = match opened {
            Ok(stream) => stream,
            Err(e) => {
                tracing::warn!(error = %e, servers = %strong.servers, "watching etcd; retrying");
                drop(strong);
                tokio::select! {
                    () = closed.cancelled() => return,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        drop(strong);
        loop {
            let message = tokio::select! {
                () = closed.cancelled() => return,
                m = stream.message() => m,
            };
            let Some(strong) = inner.upgrade() else {
                return;
            };
            match message {
                Ok(Some(resp)) => {
                    backoff = Duration::from_millis(100);
                    if let Some(compact) = compacted(&resp) {
                        // Changes the watchers needed are gone: they re-list; start over from now.
                        tracing::warn!(compact, "etcd compacted the shared watch's revision");
                        strong.compacted.fetch_max(compact, Ordering::SeqCst);
                        strong.hub.end(true);
                        let now = current_revision(&strong).await.unwrap_or(compact);
                        strong.hub.restart_at(now);
                        break;
                    }
                    if resp.canceled() {
                        tracing::warn!(
                            reason = resp.cancel_reason(),
                            "etcd cancelled the shared watch"
                        );
                        break;
                    }
                    match changes_of(&strong, resp.events()) {
                        Ok(changes) => {
                            let Some(last) = changes.last().map(|c| c.rev) else {
                                continue;
                            };
                            strong.saw(last);
                            strong.hub.send(&changes, last);
                        }
                        Err(e) => {
                            // Nothing can skip a change: the watchers re-list.
                            tracing::warn!(error = %e, "decoding a watched change");
                            let last = resp
                                .events()
                                .iter()
                                .filter_map(|e| e.kv())
                                .map(|kv| kv.mod_revision())
                                .max();
                            strong.hub.end(true);
                            if let Some(last) = last {
                                strong.hub.restart_at(last);
                            }
                        }
                    }
                }
                Ok(None) | Err(_) => {
                    if let Err(e) = message {
                        tracing::warn!(error = %e, "the shared etcd watch broke; resuming");
                    }
                    break;
                }
            }
        }
    }
}

/// etcd's current revision.
async fn current_revision(inner: &Inner) -> Result<i64, StoreError> {
    let resp = inner
        .range(
            inner.root.clone(),
            Some(GetOptions::new().with_prefix().with_count_only()),
        )
        .await?;
    Ok(resp.header().map_or(0, |h| h.revision()))
}

/// The changes after `since` (of `resource`, or all): history through a watch of its own up to the hub's
/// position, then the hub's feed.
pub(super) async fn watch(
    store: &EtcdStore,
    resource: Option<&str>,
    since: i64,
) -> Result<ChangeStream, StoreError> {
    store.check_open()?;
    let inner = store.inner.clone();
    let (mut live, joined_at) = inner.hub.subscribe(resource);
    let range = match resource {
        Some(r) => format!("{}{r}/", inner.root),
        None => inner.root.clone(),
    };
    let mut history = None;
    if since < joined_at {
        // A compacted start is refused now, as a 410 before the watch begins.
        let at = since.max(1);
        let probe = inner
            .range(
                range.clone(),
                Some(
                    GetOptions::new()
                        .with_range(prefix_end(range.as_bytes()))
                        .with_count_only()
                        .with_revision(at),
                ),
            )
            .await;
        match probe {
            Err(e) if super::is_compacted(&e) => return Err(store.expired(since)),
            Err(e) => return Err(e.into()),
            Ok(_) => {}
        }
        history = Some(open(&inner, range, since + 1).await?);
    }
    let closed = inner.closed.clone();
    let weak = Arc::downgrade(&inner);
    drop(inner);
    let (tx, rx) = mpsc::channel::<Result<Arc<Change>, StoreError>>(256);
    tokio::spawn(async move {
        let mut last = since;
        if let Some(mut history) = history {
            'history: loop {
                let message = tokio::select! {
                    () = closed.cancelled() => return,
                    m = history.message() => m,
                };
                let Some(inner) = weak.upgrade() else { return };
                let resp = match message {
                    Ok(Some(resp)) => resp,
                    Ok(None) | Err(_) => {
                        let _ = tx.send(Err(expired(&inner, last))).await;
                        return;
                    }
                };
                if let Some(compact) = compacted(&resp) {
                    inner.compacted.fetch_max(compact, Ordering::SeqCst);
                    let _ = tx.send(Err(expired(&inner, last))).await;
                    return;
                }
                let changes = match changes_of(&inner, resp.events()) {
                    Ok(changes) => changes,
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                };
                drop(inner);
                for change in changes {
                    if change.rev > joined_at {
                        // The hub's feed has it, and everything after.
                        break 'history;
                    }
                    last = change.rev;
                    if tx.send(Ok(change)).await.is_err() {
                        return;
                    }
                }
            }
        }
        loop {
            let change = tokio::select! {
                () = closed.cancelled() => return,
                c = live.changes.recv() => c,
            };
            let Some(change) = change else { break };
            if change.rev <= since {
                continue;
            }
            last = change.rev;
            if tx.send(Ok(change)).await.is_err() {
                return;
            }
        }
        if live.lagged.load(Ordering::SeqCst)
            && let Some(inner) = weak.upgrade()
        {
            let _ = tx.send(Err(expired(&inner, last))).await;
        }
    });
    Ok(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx)))
}

fn expired(inner: &Inner, last: i64) -> StoreError {
    StoreError::Expired {
        requested: last,
        oldest: inner.compacted.load(Ordering::SeqCst).max(last + 1),
    }
}
