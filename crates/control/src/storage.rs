//! The storage interface: what the resource layer ([`crate::objects`]) needs from a backend, and nothing
//! more — kube-apiserver's `storage.Interface` in Rust. The SQLite store ([`crate::store`]) implements it;
//! an etcd backend implements the same trait, and nothing above it changes.
//!
//! Objects are JSON documents under (resource, namespace, name) keys; every write gets the next value of one
//! global revision, which becomes the object's `metadata.resourceVersion`. A backend must:
//! - **get** an object as last committed;
//! - **list** a resource (one namespace or all) sorted by namespace and name, at the latest revision or at an
//!   older one still kept (a snapshot, so a paginated list is consistent), `limit` items at a time after a
//!   continue key, and say which revision the page is of; an older revision compacted away is
//!   [`StoreError::Expired`] (410 Gone);
//! - **create** an object that must not exist yet (and whose namespace must exist);
//! - **update** (and delete) through `decide`, a read-modify-write that may run more than once — each time with
//!   the latest object — so a backend with optimistic concurrency (etcd's transactions) retries it until its
//!   compare-and-swap holds; [`Preconditions`] on uid and resourceVersion are checked against the object
//!   `decide` sees;
//! - apply many such updates as one batch (SQLite commits a batch atomically; etcd commits each object in its
//!   own transaction, since objects must not share a revision — callers must not rely on all-or-nothing);
//! - **watch** every change after a revision, in revision order, gapless, first from its history and then
//!   live; a revision compacted away, or a watcher that falls too far behind, ends in
//!   [`StoreError::Expired`];
//! - **compact** its history, keeping what lists and watches at retained revisions need.

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use futures::future::BoxFuture;
use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend failed (a database or network error); the text is for the logs, not for clients.
    #[error("storage backend: {0}")]
    Backend(String),
    #[error("stored object is not valid JSON: {0}")]
    Corrupt(#[from] serde_json::Error),
    /// The requested revision has been compacted away.
    #[error("too old resource version: {requested} ({oldest})")]
    Expired { requested: i64, oldest: i64 },
    #[error("the write task failed: {0}")]
    Task(String),
    /// The write's group did not commit (the disk refused the commit, or another write of the group failed).
    #[error("not committed: {0}")]
    Aborted(String),
    #[error("the store is closed")]
    Closed,
    /// A stored object that cannot be read back as it was written: no configured encryption provider reads
    /// it (an unknown prefix, a key no longer configured, a failed decryption). An error for that object
    /// only (kube's 500 for a read of it).
    #[error("stored object {0}")]
    Unreadable(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Added => "ADDED",
            Self::Modified => "MODIFIED",
            Self::Deleted => "DELETED",
        }
    }

    pub(crate) fn parse(s: &str) -> Self {
        match s {
            "ADDED" => Self::Added,
            "DELETED" => Self::Deleted,
            _ => Self::Modified,
        }
    }
}

/// One committed write.
#[derive(Debug, Clone)]
pub struct Change {
    pub rev: i64,
    pub resource: Arc<str>,
    pub namespace: String,
    pub name: String,
    pub kind: EventType,
    /// The object after the write; for a delete, the last state (with the deletion's revision).
    pub object: Arc<Value>,
    /// The object before the write, when known (live changes only).
    pub previous: Option<Arc<Value>>,
}

/// What an update's `decide` does with the current object.
pub enum Mutation {
    Put(Value),
    Delete,
    Keep,
}

/// A read-modify-write: called with the current object (`None` when there is none), possibly more than
/// once.
pub type Decide<'a> = dyn FnMut(Option<Value>) -> Mutation + Send + 'a;

/// One write of [`Storage::update_batch`]: the object's key and what to do with its current value.
pub struct BatchItem {
    pub resource: String,
    pub namespace: String,
    pub name: String,
    pub decide: Box<Decide<'static>>,
}

/// Why a create wrote nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreateRefused {
    /// An object of that name exists.
    Exists,
    /// The namespace it was to be created in does not exist.
    NoNamespace,
}

/// Conditions the current object must meet for an update or delete to happen (kube's `Preconditions`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Preconditions {
    pub uid: Option<String>,
    pub resource_version: Option<String>,
}

impl Preconditions {
    /// Whether `current` meets them.
    pub fn hold(&self, current: &Value) -> bool {
        let field = |f: &str| {
            current
                .pointer(&format!("/metadata/{f}"))
                .and_then(Value::as_str)
        };
        self.uid.as_deref().is_none_or(|u| field("uid") == Some(u))
            && self
                .resource_version
                .as_deref()
                .is_none_or(|rv| field("resourceVersion") == Some(rv))
    }
}

/// Why an update or delete wrote nothing, when it was not `decide`'s choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateRefused {
    /// The object does not meet the [`Preconditions`].
    Preconditions,
}

/// What an update did: its committed change (`None` when `decide` kept the object), or why it was refused.
pub type Updated = Result<Option<Arc<Change>>, UpdateRefused>;

/// What a list reads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListOptions {
    /// One namespace, or all.
    pub namespace: Option<String>,
    /// The revision to read at; `None` (or the latest) reads what is committed now.
    pub revision: Option<i64>,
    /// The last key (namespace, name) of the previous page: items start after it.
    pub after: Option<(String, String)>,
    /// At most this many items; `None` for all.
    pub limit: Option<usize>,
}

/// One page of a list: the objects as stored (JSON text, decoded by the caller into what it needs).
#[derive(Debug, Clone, Default)]
pub struct Page {
    pub items: Vec<String>,
    /// The revision the page is a snapshot of (the next page must be read at it).
    pub revision: i64,
    /// Whether items remain after this page.
    pub more: bool,
}

/// Committed changes, in revision order; ends with [`StoreError::Expired`] when the watcher fell behind.
pub type ChangeStream = Pin<Box<dyn Stream<Item = Result<Arc<Change>, StoreError>> + Send>>;

/// A storage backend. Every method is safe to call from many tasks at once.
pub trait Storage: Send + Sync + 'static {
    /// The revision of the last committed write.
    fn revision(&self) -> i64;

    /// An object as last committed.
    fn get<'a>(
        &'a self,
        resource: &'a str,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<Value>, StoreError>>;

    /// A page of a resource's objects, sorted by namespace and name.
    fn list<'a>(
        &'a self,
        resource: &'a str,
        options: ListOptions,
    ) -> BoxFuture<'a, Result<Page, StoreError>>;

    /// Creates an object that must not exist; with `within`, that namespace must exist too.
    fn create<'a>(
        &'a self,
        resource: &'a str,
        namespace: &'a str,
        name: &'a str,
        object: Value,
        within: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Result<Arc<Change>, CreateRefused>, StoreError>>;

    /// Reads the object, checks `preconditions`, lets `decide` choose a mutation, and commits it atomically
    /// with the read (retrying `decide` if the object changed meanwhile). Returns the committed change, if
    /// any.
    fn update<'a>(
        &'a self,
        resource: &'a str,
        namespace: &'a str,
        name: &'a str,
        preconditions: &'a Preconditions,
        decide: &'a mut Decide<'a>,
    ) -> BoxFuture<'a, Result<Updated, StoreError>>;

    /// Several updates in one call, not necessarily atomic across objects (see the module's notes): each
    /// item's `decide` sees its object as the earlier items left
    /// it. Returns each item's change (`None` when it kept the object).
    fn update_batch(
        &self,
        items: Vec<BatchItem>,
    ) -> BoxFuture<'_, Result<Vec<Option<Arc<Change>>>, StoreError>>;

    /// The changes after revision `since` (of `resource`, or of every resource).
    fn watch<'a>(
        &'a self,
        resource: Option<&'a str>,
        since: i64,
    ) -> BoxFuture<'a, Result<ChangeStream, StoreError>>;

    /// Drops history no retained revision needs.
    fn compact(&self) -> BoxFuture<'_, Result<(), StoreError>>;

    /// Closes the backend: later writes fail with [`StoreError::Closed`].
    fn close(&self) -> BoxFuture<'_, ()>;
}

/// Decodes many documents on every core (blocking threads), keeping their order.
pub(crate) async fn decode_parallel<T: serde::de::DeserializeOwned + Send + 'static>(
    bodies: Vec<String>,
) -> Result<Vec<T>, StoreError> {
    const MIN_CHUNK: usize = 256;
    if bodies.len() <= MIN_CHUNK {
        // Not worth a thread hand-off.
        return bodies
            .iter()
            .map(|b| serde_json::from_str::<T>(b).map_err(StoreError::from))
            .collect();
    }
    let threads = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let chunk = bodies.len().div_ceil(threads).max(MIN_CHUNK);
    let mut bodies = bodies;
    let mut chunks = Vec::new();
    while bodies.len() > chunk {
        let rest = bodies.split_off(chunk);
        chunks.push(std::mem::replace(&mut bodies, rest));
    }
    chunks.push(bodies);
    let tasks: Vec<_> = chunks
        .into_iter()
        .map(|chunk| {
            tokio::task::spawn_blocking(move || {
                chunk
                    .iter()
                    .map(|b| serde_json::from_str::<T>(b))
                    .collect::<Result<Vec<T>, _>>()
            })
        })
        .collect();
    let mut out = Vec::new();
    for task in tasks {
        let decoded = task.await.map_err(|e| StoreError::Task(e.to_string()))??;
        out.extend(decoded);
    }
    Ok(out)
}
