//! The SQLite store: objects as JSON documents, one global revision, a change log, and watch fan-out.
//!
//! Writes are serialised by one async mutex: a write reads the current object, lets the caller decide what
//! to write ([`Store::mutate`]), commits one transaction (object row + change row + revision), and only
//! after the commit pushes the change to watchers. So watchers see changes in revision order and never one
//! that was not committed. **This is the only module that knows SQL.**
//!
//! Encryption at rest sits at this boundary ([`crate::encryption`]): a write of an encrypted resource stores
//! its document sealed (a BLOB in the `body` column of `changes`, which the `changes_apply` trigger copies to
//! `objects`), and every read opens it again, so nothing above the store sees ciphertext and no plain copy of
//! it reaches the disk. What SQL reads — resource, namespace, name, revision, change type — stays in columns
//! of its own, as etcd keeps keys plain. An unencrypted resource's document is stored as JSON text, as it is.

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use futures::Stream;
use futures::future::BoxFuture;
use serde_json::Value;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};
use sqlx::{ConnectOptions, Connection, Row, Sqlite};
use std::collections::HashMap;
use tokio::sync::{Mutex, Notify, OwnedMutexGuard, mpsc, oneshot};

use crate::encryption::{Encryption, Providers};
use crate::storage::{
    BatchItem, Change, ChangeStream, CreateRefused, Decide, EventType, ListOptions, Mutation, Page,
    Preconditions, Storage, StoreError, UpdateRefused, Updated,
};

/// How many changes the log keeps before compaction drops the oldest; older watches get 410 Expired.
const CHANGE_LOG_KEEP: i64 = 20_000;
/// Watchers that fall this far behind the live feed are cut off and must re-list.
const WATCH_BACKLOG: usize = 16_384;

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        Self::Backend(e.to_string())
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        Self::Backend(format!("migrating the database: {e}"))
    }
}

/// When a commit reaches the disk (SQLite's `synchronous` in WAL mode).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum StoreSync {
    /// Every commit is fsynced before it is acknowledged: an acknowledged write survives a power cut.
    #[default]
    Full,
    /// Commits are fsynced at checkpoints only: an acknowledged write survives herd crashing or being
    /// killed, but the last ones may roll back if the machine loses power. The database stays consistent.
    Normal,
}

impl StoreSync {
    /// Its name on the command line (`--store-sync`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Full => "full",
            Self::Normal => "normal",
        }
    }
}

impl std::str::FromStr for StoreSync {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "full" => Ok(Self::Full),
            "normal" => Ok(Self::Normal),
            other => Err(format!("{other:?} is not full or normal")),
        }
    }
}

#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    /// Connections for reads; they see committed writes only.
    pool: SqlitePool,
    /// The one connection that writes, with its open transaction: writes wait for it in turn.
    writer: Arc<Mutex<Writer>>,
    /// The revision of the last committed write.
    revision: AtomicI64,
    fanout: Fanout,
    /// Wakes the committer (see [`commit_groups`]).
    commit: Arc<Notify>,
    /// Transactions committed since the store was opened, and how many writes each held.
    stats: WriteStats,
    /// Writes waiting for their turn on the writer.
    queued: std::sync::atomic::AtomicUsize,
    /// What encrypts each resource at rest (identity for all by default).
    encryption: Arc<Encryption>,
    /// Creates waiting for the create combiner ([`combine_creates`]).
    creates: mpsc::UnboundedSender<QueuedCreate>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The committer ends when it finds the store gone.
        self.commit.notify_one();
    }
}

/// The writing connection and the group of writes its open transaction holds.
///
/// Group commit: a write runs its statements inside the open transaction (beginning one when none is open),
/// joins the group and wakes the committer. The committer queues for the writer behind every write already
/// waiting, so one commit — one fsync — covers all the writes that arrived while the last one was on disk.
/// Only after the commit are the group's changes sent to the watchers (in revision order) and the writers
/// answered; a failed commit fails every write of the group, and nothing of it is visible.
struct Writer {
    /// `None` once the store is closed.
    conn: Option<SqliteConnection>,
    /// Whether a transaction is open.
    open: bool,
    /// This turn's write is alone (nothing open, nobody waiting) and one statement: it autocommits.
    alone: bool,
    /// The revision of the last change written: committed, or in the open transaction.
    last: i64,
    /// What the open transaction wrote, per object (`None`: deleted), for reads made beside it.
    overlay: HashMap<ObjectKey, Option<Arc<Value>>>,
    /// The open transaction's writes, in revision order, each with whoever waits for its commit.
    group: Vec<Pending>,
}

/// Writes in the open transaction and who waits for them.
struct Pending {
    changes: Vec<Arc<Change>>,
    done: oneshot::Sender<Result<(), StoreError>>,
}

/// The writer held by one write: its statements run in a task of their own (so a caller that goes away
/// cannot tear a write between the database and the in-memory state).
type WriterGuard = OwnedMutexGuard<Writer>;

impl Writer {
    /// The connection, inside a transaction.
    async fn begin(&mut self) -> Result<&mut SqliteConnection, StoreError> {
        let conn = self.conn.as_mut().ok_or(StoreError::Closed)?;
        if !self.open && !self.alone {
            sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await?;
            self.open = true;
        }
        Ok(conn)
    }

    /// The current value of an object: the open transaction's, else the committed one; and whether it is
    /// stored stale (not as the resource's encryption writes now, [`Encryption::is_stale`]).
    async fn current(
        &self,
        pool: &SqlitePool,
        encryption: &Encryption,
        key: &ObjectKey,
    ) -> Result<(Option<Arc<Value>>, bool), StoreError> {
        if let Some(written) = self.overlay.get(key) {
            return Ok((written.clone(), false));
        }
        Ok(
            match read_committed(pool, encryption, &key.0, &key.1, &key.2).await? {
                Some((value, stale)) => (Some(Arc::new(value)), stale),
                None => (None, false),
            },
        )
    }

    /// One write's changes (already inserted, in order) join the group; returns what to wait for, when a
    /// transaction is open.
    fn join(
        &mut self,
        changes: Vec<Arc<Change>>,
    ) -> Option<oneshot::Receiver<Result<(), StoreError>>> {
        if !self.open {
            return None;
        }
        for change in &changes {
            self.last = change.rev;
            let key = (
                change.resource.to_string(),
                change.namespace.clone(),
                change.name.clone(),
            );
            let value = (change.kind != EventType::Deleted).then(|| change.object.clone());
            self.overlay.insert(key, value);
        }
        let (done, wait) = oneshot::channel();
        self.group.push(Pending { changes, done });
        Some(wait)
    }

    /// Commits (`Ok`) or rolls back (`Err`, with why) the open transaction, then answers the group.
    async fn end(&mut self, inner: &Inner, outcome: Result<(), String>) {
        if !self.open {
            return;
        }
        self.open = false;
        let outcome = match (outcome, self.conn.as_mut()) {
            (Ok(()), Some(conn)) => match sqlx::query("COMMIT").execute(&mut *conn).await {
                Ok(_) => Ok(()),
                Err(e) => {
                    let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
                    Err(format!("committing: {e}"))
                }
            },
            (Ok(()), None) => Err("the store is closed".to_string()),
            (Err(why), conn) => {
                if let Some(conn) = conn {
                    let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
                }
                Err(why)
            }
        };
        self.overlay.clear();
        let group = std::mem::take(&mut self.group);
        match outcome {
            Ok(()) => {
                inner
                    .stats
                    .committed(group.iter().map(|p| p.changes.len()).sum());
                inner.revision.store(self.last, Ordering::SeqCst);
                for pending in group {
                    inner.fanout.send(&pending.changes);
                    let _ = pending.done.send(Ok(()));
                }
            }
            Err(why) => {
                self.last = inner.revision.load(Ordering::SeqCst);
                for pending in group {
                    let _ = pending.done.send(Err(StoreError::Aborted(why.clone())));
                }
            }
        }
    }
}

/// Waits for a write's turn on the writer.
async fn turn(inner: &Inner) -> WriterGuard {
    /// Counts a write as waiting until it has its turn or gives up.
    struct Queued<'a>(&'a std::sync::atomic::AtomicUsize);
    impl Drop for Queued<'_> {
        fn drop(&mut self) {
            self.0.fetch_sub(1, Ordering::SeqCst);
        }
    }
    inner.queued.fetch_add(1, Ordering::SeqCst);
    let _queued = Queued(&inner.queued);
    inner.writer.clone().lock_owned().await
}

/// How many transactions the writer committed (each one fsync with `synchronous=FULL`) and how many
/// writes each held; logged when the store closes (`herd bench api` prints it).
#[derive(Default)]
struct WriteStats {
    commits: std::sync::atomic::AtomicU64,
    writes: std::sync::atomic::AtomicU64,
    largest: std::sync::atomic::AtomicU64,
    /// Commits by group size: 1, 2–3, 4–7, … , 128 and more.
    sizes: [std::sync::atomic::AtomicU64; 8],
}

impl WriteStats {
    fn committed(&self, writes: usize) {
        let writes = writes as u64;
        self.commits.fetch_add(1, Ordering::Relaxed);
        self.writes.fetch_add(writes, Ordering::Relaxed);
        self.largest.fetch_max(writes, Ordering::Relaxed);
        let bucket = (u64::BITS - writes.max(1).leading_zeros() - 1).min(7) as usize;
        self.sizes[bucket].fetch_add(1, Ordering::Relaxed);
    }
}

impl std::fmt::Display for WriteStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let commits = self.commits.load(Ordering::Relaxed);
        let writes = self.writes.load(Ordering::Relaxed);
        write!(
            f,
            "store write statistics: {writes} writes in {commits} commits (mean {:.1} a commit, largest {}); \
             commits by writes held:",
            writes as f64 / commits.max(1) as f64,
            self.largest.load(Ordering::Relaxed)
        )?;
        for (bucket, count) in self.sizes.iter().enumerate() {
            let count = count.load(Ordering::Relaxed);
            if count == 0 {
                continue;
            }
            let low = 1u64 << bucket;
            match bucket {
                0 => write!(f, " 1: {count}")?,
                7 => write!(f, " {low}+: {count}")?,
                _ => write!(f, " {low}-{}: {count}", low * 2 - 1)?,
            }
        }
        Ok(())
    }
}

/// Commits the writer's open transaction whenever a write wakes it, until the store is dropped.
async fn commit_groups(inner: std::sync::Weak<Inner>, wake: Arc<Notify>) {
    loop {
        wake.notified().await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        let mut writer = inner.writer.lock().await;
        writer.end(&inner, Ok(())).await;
    }
}

/// How often the WAL is checkpointed when something was committed since the last checkpoint.
const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(500);

/// Copies the WAL's committed pages into the database, off the writer's path, until the store is
/// dropped: a `PASSIVE` checkpoint on a reading connection takes no lock a writer waits for (writes go on
/// appending to the WAL meanwhile), and once it has copied everything the next write starts the WAL over,
/// so it stays small.
async fn checkpoints(inner: std::sync::Weak<Inner>) {
    let mut checkpointed = 0;
    loop {
        tokio::time::sleep(CHECKPOINT_INTERVAL).await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        let commits = inner.stats.commits.load(Ordering::Relaxed);
        if commits == checkpointed {
            continue;
        }
        checkpointed = commits;
        if let Err(error) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .execute(&inner.pool)
            .await
        {
            tracing::warn!(%error, "checkpointing the store's write-ahead log");
        }
    }
}

/// Runs one write on the writer in a task of its own, holding `guard`, then waits for its commit. `write`
/// runs the statements and returns what the caller gets and the changes it wrote, in order; `one_statement`
/// says it writes with a single statement.
///
/// A write that finds nothing open and nobody waiting behind it, and needs one statement, autocommits as
/// it is (no transaction around it, no hand-off). Otherwise it joins the open transaction (beginning one).
/// A batch, or a write with nobody waiting behind it, then commits the group itself; a single write with
/// others waiting leaves the group open for them and wakes the committer, which queues behind them and
/// commits whatever is still open.
async fn write_in_group<T, F>(
    inner: &Arc<Inner>,
    guard: WriterGuard,
    one_statement: bool,
    write: F,
) -> Result<T, StoreError>
where
    T: Send + 'static,
    F: for<'w> FnOnce(
            &'w mut Writer,
            i64,
        )
            -> futures::future::BoxFuture<'w, Result<(T, Vec<Arc<Change>>), StoreError>>
        + Send
        + 'static,
{
    let (out, wait) = write_without_waiting(inner, guard, one_statement, write).await?;
    if let Some(wait) = wait {
        wait.await
            .map_err(|_| StoreError::Aborted("the committer stopped".to_string()))??;
    }
    Ok(out)
}

/// What a write waits for until its group has committed (`None`: it is committed already).
type CommitWait = Option<oneshot::Receiver<Result<(), StoreError>>>;

/// [`write_in_group`] up to the commit: the caller's output and what to wait for before it is durable.
async fn write_without_waiting<T, F>(
    inner: &Arc<Inner>,
    guard: WriterGuard,
    one_statement: bool,
    write: F,
) -> Result<(T, CommitWait), StoreError>
where
    T: Send + 'static,
    F: for<'w> FnOnce(
            &'w mut Writer,
            i64,
        )
            -> futures::future::BoxFuture<'w, Result<(T, Vec<Arc<Change>>), StoreError>>
        + Send
        + 'static,
{
    let task_inner = inner.clone();
    let task = tokio::spawn(async move {
        let inner = task_inner;
        let mut writer = guard;
        let last = writer.last;
        let waiting = || inner.queued.load(Ordering::SeqCst) > 0;
        writer.alone = one_statement && !writer.open && !waiting();
        let written = write(&mut writer, last).await;
        if std::mem::take(&mut writer.alone) {
            // Autocommitted (or nothing written): it is durable now.
            let (out, changes) = written?;
            if let Some(change) = changes.last() {
                writer.last = change.rev;
                inner.stats.committed(1);
                inner.revision.store(change.rev, Ordering::SeqCst);
                inner.fanout.send(&changes);
            }
            return Ok((out, None));
        }
        match written {
            Ok((out, changes)) => {
                let wait = writer.join(changes);
                if one_statement && waiting() {
                    inner.commit.notify_one();
                } else {
                    // Nobody to wait for; or a batch, whose latency is someone's pipeline (the scheduler
                    // decides its next binds while these commit) and whose cost is amortised already.
                    writer.end(&inner, Ok(())).await;
                }
                Ok((out, wait))
            }
            Err(e) => {
                // A failed statement may have rolled the transaction back already: nothing of the group
                // may commit half-written, so all of it fails.
                let why = format!("another write of its group failed: {e}");
                writer.end(&inner, Err(why)).await;
                Err(e)
            }
        }
    });
    task.await.map_err(|e| StoreError::Task(e.to_string()))?
}

/// A create waiting for the combiner.
struct QueuedCreate {
    key: ObjectKey,
    object: Value,
    within: Option<String>,
    reply: oneshot::Sender<Result<(CreateResult, Option<SharedCommit>), StoreError>>,
}

type CreateResult = Result<Arc<Change>, CreateRefused>;

/// A group's commit, awaited by every create of a combined batch (the error's text when it failed).
type SharedCommit = futures::future::Shared<BoxFuture<'static, Result<(), String>>>;

/// The most creates written in one batch.
const CREATES_PER_BATCH: usize = 1024;

/// Writes the queued creates, until the store is dropped: whatever queued while the writer was busy
/// (the last batch's statements and commit, another write) is taken at once and written as one batch —
/// one existence query, one multi-row insert and one commit for all of them — instead of each create
/// taking the writer in turn for its own statement. A create that finds itself alone is written as one
/// statement that autocommits (or joins the open group), as before.
///
/// The creates' callers wait for their answers and then for the batch's commit; the combiner does not
/// wait for the commit, so the next batch queues for the writer while this one is on the disk.
async fn combine_creates(
    inner: std::sync::Weak<Inner>,
    mut queue: mpsc::UnboundedReceiver<QueuedCreate>,
) {
    let mut batch = Vec::new();
    while queue.recv_many(&mut batch, CREATES_PER_BATCH).await > 0 {
        let Some(inner) = inner.upgrade() else {
            return;
        };
        let guard = turn(&inner).await;
        // The creates that arrived while this one waited for the writer join it.
        while batch.len() < CREATES_PER_BATCH
            && let Ok(create) = queue.try_recv()
        {
            batch.push(create);
        }
        let creates = std::mem::take(&mut batch);
        if creates.len() == 1 {
            let Some(create) = creates.into_iter().next() else {
                continue;
            };
            let QueuedCreate {
                key,
                object,
                within,
                reply,
            } = create;
            let answer = create_one(&inner, guard, key, object, within)
                .await
                .map(|(result, wait)| (result, wait.map(shared_commit)));
            let _ = reply.send(answer);
            continue;
        }
        let mut replies = Vec::with_capacity(creates.len());
        let mut items = Vec::with_capacity(creates.len());
        for create in creates {
            replies.push(create.reply);
            items.push((create.key, create.object, create.within));
        }
        match create_batch(&inner, guard, items).await {
            Ok((results, wait)) => {
                let commit = wait.map(shared_commit);
                for (reply, result) in replies.into_iter().zip(results) {
                    let _ = reply.send(Ok((result, commit.clone())));
                }
            }
            Err(e) => {
                let why = e.to_string();
                for reply in replies {
                    let _ = reply.send(Err(StoreError::Aborted(why.clone())));
                }
            }
        }
    }
}

/// A group's commit as a future every create of a batch can await.
fn shared_commit(wait: oneshot::Receiver<Result<(), StoreError>>) -> SharedCommit {
    use futures::FutureExt as _;
    let commit: BoxFuture<'static, Result<(), String>> = Box::pin(async move {
        match wait.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("the committer stopped".to_string()),
        }
    });
    commit.shared()
}

/// One create in one statement (no read before the write), on the writer `guard` holds.
async fn create_one(
    inner: &Arc<Inner>,
    guard: WriterGuard,
    key: ObjectKey,
    object: Value,
    within: Option<String>,
) -> Result<(CreateResult, CommitWait), StoreError> {
    let sealer = inner.encryption.sealer(&key.0);
    write_without_waiting(inner, guard, true, move |writer, last| {
        Box::pin(async move {
            let (row, change) = stamp(
                key,
                EventType::Added,
                object,
                None,
                last + 1,
                sealer.as_deref(),
            )?;
            let conn = writer.begin().await?;
            // The `changes_apply` trigger writes the object and the revision.
            let query = sqlx::query(
                "INSERT INTO changes (rev, resource, namespace, name, type, body)
                 SELECT ?1, ?2, ?3, ?4, 'ADDED', ?5
                 WHERE NOT EXISTS (SELECT 1 FROM objects WHERE resource = ?2 AND namespace = ?3 AND name = ?4)
                   AND (?6 IS NULL OR EXISTS (
                       SELECT 1 FROM objects WHERE resource = 'namespaces' AND namespace = '' AND name = ?6))",
            )
            .bind(row.rev)
            .bind(&row.resource)
            .bind(&row.namespace)
            .bind(&row.name);
            let query = match &row.body {
                Body::Plain(text) => query.bind(text.as_str()),
                Body::Sealed(bytes) => query.bind(bytes.as_slice()),
            };
            let written = query
                .bind(within.as_deref())
                .execute(&mut *conn)
                .await?
                .rows_affected();
            if written > 0 {
                return Ok((Ok(change.clone()), vec![change]));
            }
            // Refused: say why (still holding the writer, so nothing changed meanwhile).
            let exists: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM objects WHERE resource = ? AND namespace = ? AND name = ?)",
            )
            .bind(&row.resource)
            .bind(&row.namespace)
            .bind(&row.name)
            .fetch_one(&mut *conn)
            .await?;
            let refused = if exists {
                CreateRefused::Exists
            } else {
                CreateRefused::NoNamespace
            };
            Ok((Err(refused), Vec::new()))
        })
    })
    .await
}

/// Several creates (key, object, namespace that must exist) in arrival order, on the writer `guard` holds:
/// one query for which of their keys and namespaces exist, then every create that may be written in a
/// multi-row insert, committed at once. Each create sees the ones before it (a second create of a name is
/// refused; a namespace created earlier in the batch holds the later ones).
async fn create_batch(
    inner: &Arc<Inner>,
    guard: WriterGuard,
    creates: Vec<(ObjectKey, Value, Option<String>)>,
) -> Result<(Vec<CreateResult>, CommitWait), StoreError> {
    let encryption = inner.encryption.clone();
    write_without_waiting(inner, guard, false, move |writer, last| {
        Box::pin(async move {
            let mut keys: Vec<ObjectKey> = Vec::with_capacity(creates.len() * 2);
            for (key, _, within) in &creates {
                keys.push(key.clone());
                if let Some(ns) = within {
                    keys.push(("namespaces".to_string(), String::new(), ns.clone()));
                }
            }
            let mut present = existing(writer.begin().await?, keys).await?;
            let mut rev = last;
            let mut results = Vec::with_capacity(creates.len());
            let mut rows = Vec::with_capacity(creates.len());
            let mut written = Vec::with_capacity(creates.len());
            for (key, object, within) in creates {
                if present.contains(&key) {
                    results.push(Err(CreateRefused::Exists));
                    continue;
                }
                if let Some(ns) = within
                    && !present.contains(&("namespaces".to_string(), String::new(), ns))
                {
                    results.push(Err(CreateRefused::NoNamespace));
                    continue;
                }
                rev += 1;
                let sealer = encryption.sealer(&key.0);
                let (row, change) = stamp(
                    key.clone(),
                    EventType::Added,
                    object,
                    None,
                    rev,
                    sealer.as_deref(),
                )?;
                present.insert(key);
                rows.push(row);
                results.push(Ok(change.clone()));
                written.push(change);
            }
            if !rows.is_empty() {
                // The `changes_apply` trigger applies each row to `objects` and advances the revision.
                insert_changes(writer.begin().await?, &rows).await?;
            }
            Ok((results, written))
        })
    })
    .await
}

/// Which of `keys` name an object, as the writer's transaction sees them.
async fn existing(
    conn: &mut SqliteConnection,
    mut keys: Vec<ObjectKey>,
) -> Result<std::collections::HashSet<ObjectKey>, StoreError> {
    keys.sort();
    keys.dedup();
    let mut found = std::collections::HashSet::new();
    for chunk in keys.chunks(ROWS_PER_STATEMENT) {
        let mut q = sqlx::QueryBuilder::<Sqlite>::new("WITH k (r, ns, n) AS (");
        q.push_values(chunk, |mut b, (resource, namespace, name)| {
            b.push_bind(resource).push_bind(namespace).push_bind(name);
        });
        q.push(
            ") SELECT o.resource, o.namespace, o.name FROM k JOIN objects o \
             ON o.resource = k.r AND o.namespace = k.ns AND o.name = k.n",
        );
        for row in q.build().fetch_all(&mut *conn).await? {
            found.insert((row.get(0), row.get(1), row.get(2)));
        }
    }
    Ok(found)
}

#[cfg(test)]
mod create_batch_tests {
    use super::*;
    use futures::StreamExt as _;
    use serde_json::json;

    /// Creates that queue while the writer is busy are written as one batch: each gets the answer it would
    /// have got alone and in order (a taken name, a missing namespace, a namespace created earlier in the
    /// batch), the written ones get consecutive revisions, one commit covers them, and they are there after
    /// a reopen.
    #[tokio::test]
    async fn creates_queued_behind_a_busy_writer_commit_as_one_batch_with_each_answer_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("herd.db");
        let store = Store::open(&path).await.unwrap();
        let mut events = Box::pin(store.watch(None, 0).await.unwrap());
        let team = json!({"metadata": {"name": "team"}});
        store
            .create("namespaces", "", "team", team, None)
            .await
            .unwrap()
            .unwrap();
        let commits = store.commits();
        // (resource, namespace, name, the namespace that must exist, whether it is written)
        let mut creates: Vec<(&str, &str, String, Option<&str>, bool)> = vec![
            ("pods", "team", "a".into(), Some("team"), true),
            ("pods", "team", "a".into(), Some("team"), false),
            ("pods", "nowhere", "b".into(), Some("nowhere"), false),
            ("namespaces", "", "later".into(), None, true),
            ("pods", "later", "c".into(), Some("later"), true),
        ];
        for i in 0..100 {
            creates.push(("configmaps", "team", format!("cm-{i}"), Some("team"), true));
        }
        // Hold the writer while every create queues.
        let busy = store.turn().await;
        let mut answers = Vec::new();
        for (resource, namespace, name, within, _) in &creates {
            let store = store.clone();
            let (resource, namespace, name) = (*resource, *namespace, name.clone());
            let within = within.map(str::to_string);
            answers.push(tokio::spawn(async move {
                let object = json!({"metadata": {"name": name}});
                store
                    .create(resource, namespace, &name, object, within.as_deref())
                    .await
            }));
            tokio::task::yield_now().await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        drop(busy);
        let mut rev = 1;
        for (answer, (_, _, name, _, written)) in answers.into_iter().zip(&creates) {
            match answer.await.unwrap().unwrap() {
                Ok(change) => {
                    assert!(written, "{name} was written");
                    rev += 1;
                    assert_eq!(change.rev, rev, "{name}");
                    assert_eq!(
                        change.object["metadata"]["resourceVersion"],
                        rev.to_string()
                    );
                }
                Err(refused) => {
                    assert!(!written, "{name} was refused: {refused:?}");
                    let why = if name == "a" {
                        CreateRefused::Exists
                    } else {
                        CreateRefused::NoNamespace
                    };
                    assert_eq!(refused, why, "{name}");
                }
            }
        }
        assert_eq!(store.revision(), 104);
        assert_eq!(store.commits() - commits, 1, "one commit for the batch");
        let watched: Vec<i64> = events
            .by_ref()
            .take(104)
            .map(|c| c.unwrap().rev)
            .collect()
            .await;
        assert_eq!(watched, (1..=104).collect::<Vec<_>>());
        store.close().await;
        let store = Store::open(&path).await.unwrap();
        assert_eq!(store.revision(), 104);
        assert!(store.get("pods", "later", "c").await.unwrap().is_some());
        assert!(store.get("pods", "nowhere", "b").await.unwrap().is_none());
        let options = ListOptions {
            namespace: Some("team".to_string()),
            ..ListOptions::default()
        };
        let page = store.list_page("configmaps", &options).await.unwrap();
        assert_eq!(page.items.len(), 100);
    }
}

/// The live feed of committed changes to every watcher.
///
/// Each watcher has its own queue of shared changes, filtered by resource, so a change is held only until
/// the last watcher that wants it has taken it (nothing is kept for watchers that have caught up); a
/// watcher that falls [`WATCH_BACKLOG`] changes behind is cut off and must re-list.
#[derive(Default)]
struct Fanout {
    watchers: std::sync::Mutex<Vec<Subscriber>>,
}

struct Subscriber {
    /// Only changes of this resource (all when `None`).
    resource: Option<Arc<str>>,
    changes: mpsc::Sender<Arc<Change>>,
    lagged: Arc<std::sync::atomic::AtomicBool>,
}

/// A watcher's end of the [`Fanout`]: its changes, and whether it was cut off for lagging.
struct Subscription {
    changes: mpsc::Receiver<Arc<Change>>,
    lagged: Arc<std::sync::atomic::AtomicBool>,
}

impl Fanout {
    fn subscribe(&self, resource: Option<&str>) -> Subscription {
        let (tx, changes) = mpsc::channel(WATCH_BACKLOG);
        let lagged = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut watchers = self.watchers.lock().unwrap_or_else(|e| e.into_inner());
        watchers.push(Subscriber {
            resource: resource.map(Arc::from),
            changes: tx,
            lagged: lagged.clone(),
        });
        Subscription { changes, lagged }
    }

    /// Hands committed changes, in revision order, to every watcher that wants them.
    fn send(&self, changes: &[Arc<Change>]) {
        if changes.is_empty() {
            return;
        }
        let mut watchers = self.watchers.lock().unwrap_or_else(|e| e.into_inner());
        watchers.retain(|w| {
            for change in changes {
                if w.resource.as_ref().is_some_and(|r| *r != change.resource) {
                    continue;
                }
                match w.changes.try_send(change.clone()) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        // Dropping the sender ends the watcher's feed after what it has queued.
                        w.lagged.store(true, Ordering::SeqCst);
                        return false;
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => return false,
                }
            }
            true
        });
    }
}

impl Store {
    /// Opens (creating if needed) the database file and applies migrations; every commit is fsynced.
    ///
    /// # Errors
    /// When the file cannot be opened or migrated.
    #[cfg(test)]
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        Self::open_with(path, StoreSync::Full).await
    }

    /// [`Store::open`] with the durability `sync` asks for.
    ///
    /// # Errors
    /// When the file cannot be opened or migrated.
    pub async fn open_with(path: &Path, sync: StoreSync) -> Result<Self, StoreError> {
        Self::open_encrypted(path, sync, Arc::new(Encryption::default())).await
    }

    /// [`Store::open_with`], storing each resource as `encryption` says (kube's encryption at rest).
    ///
    /// # Errors
    /// When the file cannot be opened or migrated.
    pub async fn open_encrypted(
        path: &Path,
        sync: StoreSync,
        encryption: Arc<Encryption>,
    ) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str("sqlite://")?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(match sync {
                StoreSync::Full => SqliteSynchronous::Full,
                StoreSync::Normal => SqliteSynchronous::Normal,
            })
            .busy_timeout(Duration::from_secs(10))
            // 64 MiB of page cache per connection instead of SQLite's 2 MiB: the working set of a
            // cluster (every object's current row) stays in memory.
            .pragma("cache_size", "-65536")
            // What encryption replaces (a plain document rewritten sealed, a key rotated away) is zeroed
            // in the file rather than left in free pages.
            .pragma(
                "secure_delete",
                if encryption.encrypts() { "ON" } else { "OFF" },
            )
            .foreign_keys(true)
            // Checkpoints run in the background ([`checkpoints`]), never inline: SQLite's automatic
            // checkpoint runs in the commit that crosses 1000 pages of WAL, and every write queued
            // behind that commit waited for it to copy them and fsync the database (tens of ms).
            .pragma("wal_autocheckpoint", "0")
            // A WAL that grew in a burst is cut back to this when it starts over.
            .pragma("journal_size_limit", "67108864");
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(options.clone())
            .await?;
        sqlx::migrate!("./migrations").run(&pool).await?;
        let revision: i64 = sqlx::query_scalar("SELECT value FROM meta WHERE key = 'revision'")
            .fetch_one(&pool)
            .await?;
        let conn = options.connect().await?;
        let commit = Arc::new(Notify::new());
        let (creates, queue) = mpsc::unbounded_channel();
        let inner = Arc::new(Inner {
            pool,
            writer: Arc::new(Mutex::new(Writer {
                conn: Some(conn),
                open: false,
                alone: false,
                last: revision,
                overlay: HashMap::new(),
                group: Vec::new(),
            })),
            revision: AtomicI64::new(revision),
            fanout: Fanout::default(),
            commit: commit.clone(),
            stats: WriteStats::default(),
            queued: std::sync::atomic::AtomicUsize::new(0),
            encryption,
            creates,
        });
        tokio::spawn(commit_groups(Arc::downgrade(&inner), commit));
        tokio::spawn(checkpoints(Arc::downgrade(&inner)));
        tokio::spawn(combine_creates(Arc::downgrade(&inner), queue));
        Ok(Self { inner })
    }

    /// Waits for this write's turn on the writer.
    async fn turn(&self) -> WriterGuard {
        turn(&self.inner).await
    }

    /// The revision of the last committed write.
    pub fn revision(&self) -> i64 {
        self.inner.revision.load(Ordering::SeqCst)
    }

    /// How many transactions were committed since the store was opened (a group of writes is one).
    #[cfg(test)]
    pub fn commits(&self) -> u64 {
        self.inner.stats.commits.load(Ordering::Relaxed)
    }

    /// An object as last committed.
    ///
    /// # Errors
    /// A database error, or a stored document that is not JSON.
    pub async fn get(
        &self,
        resource: &str,
        namespace: &str,
        name: &str,
    ) -> Result<Option<Value>, StoreError> {
        get_committed(
            &self.inner.pool,
            &self.inner.encryption,
            resource,
            namespace,
            name,
        )
        .await
    }

    /// A page of a resource's objects (in one namespace, or all), sorted by namespace and name, at the
    /// latest revision or at an older one whose history is kept.
    ///
    /// # Errors
    /// A database error; [`StoreError::Expired`] for a revision compacted away.
    pub async fn list_page(
        &self,
        resource: &str,
        options: &ListOptions,
    ) -> Result<Page, StoreError> {
        // Reading inside one transaction gives a consistent snapshot that includes the revision.
        let mut tx = self.inner.pool.begin().await?;
        let now: i64 = sqlx::query_scalar("SELECT value FROM meta WHERE key = 'revision'")
            .fetch_one(&mut *tx)
            .await?;
        let (after_ns, after_name) = options.after.clone().unwrap_or_default();
        let after = options.after.is_some();
        // One more than asked for says whether more remain.
        let fetch = options
            .limit
            .map_or(-1, |l| i64::try_from(l).unwrap_or(i64::MAX - 1) + 1);
        let at = options.revision.filter(|r| *r < now);
        // An older revision reads the current rows when nothing of the resource changed since.
        let changed_since = match at {
            None => false,
            Some(at) => {
                let compacted: i64 =
                    sqlx::query_scalar("SELECT value FROM meta WHERE key = 'compacted'")
                        .fetch_one(&mut *tx)
                        .await?;
                if at < compacted {
                    return Err(StoreError::Expired {
                        requested: at,
                        oldest: compacted,
                    });
                }
                sqlx::query_scalar(
                    "SELECT EXISTS (SELECT 1 FROM changes WHERE rev > ? AND resource = ?)",
                )
                .bind(at)
                .bind(resource)
                .fetch_one(&mut *tx)
                .await?
            }
        };
        let rows = if changed_since {
            // The state at `at`: each key's last change at or before it, unless that was its deletion.
            // Compaction keeps every key's last change at or before the compacted revision, so this is
            // complete for every revision still served.
            sqlx::query(
                "SELECT c.body FROM changes c
                 WHERE c.resource = ?1 AND (?2 IS NULL OR c.namespace = ?2)
                   AND (NOT ?3 OR c.namespace > ?4 OR (c.namespace = ?4 AND c.name > ?5))
                   AND c.rev <= ?6 AND c.type <> 'DELETED'
                   AND NOT EXISTS (SELECT 1 FROM changes l
                       WHERE l.resource = c.resource AND l.namespace = c.namespace AND l.name = c.name
                         AND l.rev > c.rev AND l.rev <= ?6)
                 ORDER BY c.namespace, c.name LIMIT ?7",
            )
            .bind(resource)
            .bind(options.namespace.as_deref())
            .bind(after)
            .bind(&after_ns)
            .bind(&after_name)
            .bind(at)
            .bind(fetch)
            .fetch_all(&mut *tx)
            .await?
        } else {
            sqlx::query(
                "SELECT body FROM objects
                 WHERE resource = ?1 AND (?2 IS NULL OR namespace = ?2)
                   AND (NOT ?3 OR namespace > ?4 OR (namespace = ?4 AND name > ?5))
                 ORDER BY namespace, name LIMIT ?6",
            )
            .bind(resource)
            .bind(options.namespace.as_deref())
            .bind(after)
            .bind(&after_ns)
            .bind(&after_name)
            .bind(fetch)
            .fetch_all(&mut *tx)
            .await?
        };
        tx.commit().await?;
        let mut items = rows
            .iter()
            .map(|r| {
                open_body(&self.inner.encryption, resource, r.get(0), || {
                    format!("{resource} in a list")
                })
                .and_then(|body| {
                    String::from_utf8(body.into_owned())
                        .map_err(|e| StoreError::Unreadable(format!("{resource}: {e}")))
                })
            })
            .collect::<Result<Vec<String>, StoreError>>()?;
        let more = options.limit.is_some_and(|l| items.len() > l);
        if let Some(limit) = options.limit {
            items.truncate(limit);
        }
        Ok(Page {
            items,
            revision: at.unwrap_or(now),
            more,
        })
    }

    /// Every object of a resource as JSON, and the revision of the list.
    #[cfg(test)]
    pub async fn list(
        &self,
        resource: &str,
        namespace: Option<&str>,
    ) -> Result<(Vec<Value>, i64), StoreError> {
        let options = ListOptions {
            namespace: namespace.map(str::to_string),
            ..ListOptions::default()
        };
        let page = self.list_page(resource, &options).await?;
        Ok((
            crate::storage::decode_parallel(page.items).await?,
            page.revision,
        ))
    }

    /// Atomically reads an object, checks `preconditions`, lets `decide` choose a mutation, and commits it.
    ///
    /// `decide` runs (once) while this write holds the writer, so no other write interleaves between the
    /// read and the write. The stored object gets `metadata.resourceVersion` set to the new revision.
    /// Returns the committed change, if any, once it is committed.
    ///
    /// # Errors
    /// A database error (nothing is written then).
    pub async fn update_one(
        &self,
        resource: &str,
        namespace: &str,
        name: &str,
        preconditions: &Preconditions,
        decide: &mut Decide<'_>,
    ) -> Result<Updated, StoreError> {
        let guard = self.turn().await;
        let key: ObjectKey = (
            resource.to_string(),
            namespace.to_string(),
            name.to_string(),
        );
        let (previous, stale) = guard
            .current(&self.inner.pool, &self.inner.encryption, &key)
            .await?;
        if let Some(current) = &previous
            && !preconditions.hold(current)
        {
            return Ok(Err(UpdateRefused::Preconditions));
        }
        let existed = previous.is_some();
        let (kind, object) = match decide(previous.as_deref().cloned()) {
            // As kube-apiserver: an unchanged update of an object stored under an older key or provider
            // writes it again, so rewriting every object (`kubectl replace`) re-encrypts them all.
            Mutation::Keep if stale => match &previous {
                Some(current) => (EventType::Modified, (**current).clone()),
                None => return Ok(Ok(None)),
            },
            Mutation::Keep => return Ok(Ok(None)),
            Mutation::Delete if !existed => return Ok(Ok(None)),
            Mutation::Delete => (
                EventType::Deleted,
                previous.as_deref().cloned().unwrap_or(Value::Null),
            ),
            Mutation::Put(obj) => (
                if existed {
                    EventType::Modified
                } else {
                    EventType::Added
                },
                obj,
            ),
        };
        let sealer = self.inner.encryption.sealer(resource);
        let change = write_in_group(&self.inner, guard, true, move |writer, last| {
            Box::pin(async move {
                let (row, change) =
                    stamp(key, kind, object, previous, last + 1, sealer.as_deref())?;
                insert_changes(writer.begin().await?, std::slice::from_ref(&row)).await?;
                Ok((change.clone(), vec![change]))
            })
        })
        .await?;
        Ok(Ok(Some(change)))
    }

    /// [`Store::update_one`] with a closure that returns a value too (for tests).
    #[cfg(test)]
    pub async fn mutate<T, E>(
        &self,
        resource: &str,
        namespace: &str,
        name: &str,
        decide: impl FnOnce(Option<Value>) -> Result<(Mutation, T), E> + Send,
    ) -> Result<(T, Option<Arc<Change>>), E>
    where
        E: From<StoreError> + Send,
        T: Send,
    {
        let mut decide = Some(decide);
        let mut out = None;
        let change = self
            .update_one(
                resource,
                namespace,
                name,
                &Preconditions::default(),
                &mut |current| match decide.take().map(|d| d(current)) {
                    Some(Ok((mutation, t))) => {
                        out = Some(Ok(t));
                        mutation
                    }
                    Some(Err(e)) => {
                        out = Some(Err(e));
                        Mutation::Keep
                    }
                    None => Mutation::Keep,
                },
            )
            .await?
            .unwrap_or(None);
        match out {
            Some(Ok(t)) => Ok((t, change)),
            Some(Err(e)) => Err(e),
            None => Err(E::from(StoreError::Task("decide did not run".into()))),
        }
    }

    /// Creates an object that must not exist yet: the create path of the API. With `within`, the namespace
    /// of that name must exist too. Returns the change, or why nothing was written.
    ///
    /// Creates are combined ([`combine_creates`]): the creates that arrive while the writer is busy are
    /// written together, a few statements and one commit for all of them.
    ///
    /// # Errors
    /// A database error (nothing is written then).
    pub async fn create(
        &self,
        resource: &str,
        namespace: &str,
        name: &str,
        object: Value,
        within: Option<&str>,
    ) -> Result<Result<Arc<Change>, CreateRefused>, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.inner
            .creates
            .send(QueuedCreate {
                key: (
                    resource.to_string(),
                    namespace.to_string(),
                    name.to_string(),
                ),
                object,
                within: within.map(str::to_string),
                reply,
            })
            .map_err(|_| StoreError::Closed)?;
        let (result, commit) = answer
            .await
            .map_err(|_| StoreError::Aborted("the create combiner stopped".to_string()))??;
        if let Some(commit) = commit {
            commit.await.map_err(StoreError::Aborted)?;
        }
        Ok(result)
    }

    /// Several read-decide-writes at once: each item's `decide` sees its object as the earlier items of the
    /// batch left it, and all the writes commit together (in one group), with consecutive revisions and the
    /// fan-out after the commit. Returns each item's change (`None` when its closure kept the object).
    ///
    /// # Errors
    /// A database error; nothing of the batch is written then.
    pub async fn update_many(
        &self,
        items: Vec<BatchItem>,
    ) -> Result<Vec<Option<Arc<Change>>>, StoreError> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let guard = self.turn().await;
        let encryption = self.inner.encryption.clone();
        write_in_group(&self.inner, guard, false, move |writer, last| {
            Box::pin(async move {
                // Set-based: one read of every key, the closures in order over an in-memory view, then a few
                // multi-row statements — a handful of round trips to SQLite's thread for the whole batch.
                let keys: Vec<ObjectKey> = items
                    .iter()
                    .map(|i| (i.resource.clone(), i.namespace.clone(), i.name.clone()))
                    .collect();
                let mut view = read_many(writer.begin().await?, &encryption, keys).await?;
                let mut rev = last;
                let mut changes = Vec::with_capacity(items.len());
                let mut rows: Vec<ChangeRow> = Vec::new();
                for mut item in items {
                    let key = (item.resource, item.namespace, item.name);
                    // The view holds shared values: the closure's copy is the only deep clone per item.
                    let previous = view.get(&key).cloned().flatten();
                    let existed = previous.is_some();
                    let (kind, object) = match (item.decide)(previous.as_deref().cloned()) {
                        Mutation::Keep => {
                            changes.push(None);
                            continue;
                        }
                        Mutation::Delete if !existed => {
                            changes.push(None);
                            continue;
                        }
                        Mutation::Delete => (
                            EventType::Deleted,
                            previous.as_deref().cloned().unwrap_or(Value::Null),
                        ),
                        Mutation::Put(obj) if existed => (EventType::Modified, obj),
                        Mutation::Put(obj) => (EventType::Added, obj),
                    };
                    rev += 1;
                    let sealer = encryption.sealer(&key.0);
                    let (row, change) =
                        stamp(key.clone(), kind, object, previous, rev, sealer.as_deref())?;
                    view.insert(
                        key,
                        (kind != EventType::Deleted).then(|| change.object.clone()),
                    );
                    rows.push(row);
                    changes.push(Some(change));
                }
                if !rows.is_empty() {
                    // The `changes_apply` trigger applies each row to `objects` and advances the revision.
                    insert_changes(writer.begin().await?, &rows).await?;
                }
                let written = changes.iter().flatten().cloned().collect();
                Ok((changes, written))
            })
        })
        .await
    }

    /// A stream of the changes after revision `since` (for `resource`, or every resource when `None`): first
    /// replayed from the change log, then live.
    ///
    /// # Errors
    /// [`StoreError::Expired`] when `since` is older than the oldest change kept.
    pub async fn watch(
        &self,
        resource: Option<&str>,
        since: i64,
    ) -> Result<impl Stream<Item = Result<Arc<Change>, StoreError>> + Send + use<>, StoreError>
    {
        // Subscribe before reading the log so nothing committed in between is missed.
        let mut live = self.inner.fanout.subscribe(resource);
        let compacted: i64 = sqlx::query_scalar("SELECT value FROM meta WHERE key = 'compacted'")
            .fetch_one(&self.inner.pool)
            .await?;
        if since < compacted {
            return Err(StoreError::Expired {
                requested: since,
                oldest: compacted,
            });
        }
        let rows = match resource {
            Some(r) => {
                sqlx::query("SELECT rev, resource, namespace, name, type, body FROM changes WHERE resource = ? AND rev > ? ORDER BY rev")
                    .bind(r)
                    .bind(since)
                    .fetch_all(&self.inner.pool)
                    .await?
            }
            None => {
                sqlx::query("SELECT rev, resource, namespace, name, type, body FROM changes WHERE rev > ? ORDER BY rev")
                    .bind(since)
                    .fetch_all(&self.inner.pool)
                    .await?
            }
        };
        let mut replay = Vec::with_capacity(rows.len());
        for row in rows {
            let resource: &str = row.get(1);
            let namespace: String = row.get(2);
            let name: String = row.get(3);
            let body = open_body(&self.inner.encryption, resource, row.get(5), || {
                format!("{resource} {namespace}/{name}")
            })?;
            replay.push(Arc::new(Change {
                rev: row.get(0),
                resource: Arc::from(resource),
                namespace,
                name,
                kind: EventType::parse(row.get::<&str, _>(4)),
                object: Arc::new(decode(&body)?),
                previous: None,
            }));
        }
        let mut last = replay.last().map_or(since, |c| c.rev);
        Ok(async_stream(move |tx| async move {
            for change in replay {
                if tx.send(Ok(change)).await.is_err() {
                    return;
                }
            }
            while let Some(change) = live.changes.recv().await {
                if change.rev <= last {
                    continue;
                }
                last = change.rev;
                if tx.send(Ok(change)).await.is_err() {
                    return;
                }
            }
            if live.lagged.load(Ordering::SeqCst) {
                let _ = tx
                    .send(Err(StoreError::Expired {
                        requested: last,
                        oldest: last + 1,
                    }))
                    .await;
            }
        }))
    }

    /// Drops the oldest changes beyond [`CHANGE_LOG_KEEP`], as etcd compacts: every key keeps its last change
    /// at or before the compacted revision (unless that was its deletion), so a list at any revision still
    /// served finds every object's state.
    ///
    /// # Errors
    /// A database error.
    pub async fn compact(&self) -> Result<(), StoreError> {
        let cutoff = self.revision() - CHANGE_LOG_KEEP;
        if cutoff <= 0 {
            return Ok(());
        }
        let guard = self.turn().await;
        write_in_group(&self.inner, guard, false, move |writer, _| {
            Box::pin(async move {
                let conn = writer.begin().await?;
                sqlx::query(
                    "DELETE FROM changes WHERE rev <= ?1 AND (type = 'DELETED' OR EXISTS (
                         SELECT 1 FROM changes l
                         WHERE l.resource = changes.resource AND l.namespace = changes.namespace
                           AND l.name = changes.name AND l.rev > changes.rev AND l.rev <= ?1))",
                )
                .bind(cutoff)
                .execute(&mut *conn)
                .await?;
                sqlx::query("UPDATE meta SET value = ? WHERE key = 'compacted' AND value < ?")
                    .bind(cutoff)
                    .bind(cutoff)
                    .execute(&mut *conn)
                    .await?;
                Ok(((), Vec::new()))
            })
        })
        .await
    }

    /// Closes the database: later writes fail with [`StoreError::Closed`].
    pub async fn close(&self) {
        let mut writer = self.inner.writer.lock().await;
        // Every write waits for its commit, so nothing is left open but a write whose caller went away.
        writer.end(&self.inner, Ok(())).await;
        if let Some(conn) = writer.conn.take() {
            let _ = conn.close().await;
        }
        drop(writer);
        self.inner.pool.close().await;
        tracing::info!("{}", self.inner.stats);
    }
}

impl Storage for Store {
    fn revision(&self) -> i64 {
        Store::revision(self)
    }

    fn get<'a>(
        &'a self,
        resource: &'a str,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<Value>, StoreError>> {
        Box::pin(Store::get(self, resource, namespace, name))
    }

    fn list<'a>(
        &'a self,
        resource: &'a str,
        options: ListOptions,
    ) -> BoxFuture<'a, Result<Page, StoreError>> {
        Box::pin(async move { self.list_page(resource, &options).await })
    }

    fn create<'a>(
        &'a self,
        resource: &'a str,
        namespace: &'a str,
        name: &'a str,
        object: Value,
        within: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Result<Arc<Change>, CreateRefused>, StoreError>> {
        Box::pin(Store::create(
            self, resource, namespace, name, object, within,
        ))
    }

    fn update<'a>(
        &'a self,
        resource: &'a str,
        namespace: &'a str,
        name: &'a str,
        preconditions: &'a Preconditions,
        decide: &'a mut Decide<'a>,
    ) -> BoxFuture<'a, Result<Updated, StoreError>> {
        Box::pin(self.update_one(resource, namespace, name, preconditions, decide))
    }

    fn update_batch(
        &self,
        items: Vec<BatchItem>,
    ) -> BoxFuture<'_, Result<Vec<Option<Arc<Change>>>, StoreError>> {
        Box::pin(self.update_many(items))
    }

    fn watch<'a>(
        &'a self,
        resource: Option<&'a str>,
        since: i64,
    ) -> BoxFuture<'a, Result<ChangeStream, StoreError>> {
        Box::pin(async move {
            let changes = Store::watch(self, resource, since).await?;
            Ok(Box::pin(changes) as ChangeStream)
        })
    }

    fn compact(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(Store::compact(self))
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(Store::close(self))
    }
}

/// Rows per multi-row statement: far below SQLite's 32,766 bound parameters.
const ROWS_PER_STATEMENT: usize = 400;

type ObjectKey = (String, String, String);

/// One row of the change log, as a batch writes it.
struct ChangeRow {
    rev: i64,
    resource: String,
    namespace: String,
    name: String,
    kind: EventType,
    body: Body,
}

/// A stored document: JSON text, or sealed by the resource's encryption (a BLOB).
enum Body {
    Plain(String),
    Sealed(Vec<u8>),
}

/// A write's change-log row and its change, with `object`'s resourceVersion set to `rev`; the row's body
/// is sealed by `sealer` when the resource is encrypted.
fn stamp(
    key: ObjectKey,
    kind: EventType,
    mut object: Value,
    previous: Option<Arc<Value>>,
    rev: i64,
    sealer: Option<&Providers>,
) -> Result<(ChangeRow, Arc<Change>), StoreError> {
    set_resource_version(&mut object, rev);
    let body = match sealer {
        None => Body::Plain(serde_json::to_string(&object)?),
        Some(sealer) => Body::Sealed(sealer.seal(&serde_json::to_vec(&object)?)),
    };
    let (resource, namespace, name) = key;
    let change = Arc::new(Change {
        rev,
        resource: Arc::from(resource.as_str()),
        namespace: namespace.clone(),
        name: name.clone(),
        kind,
        object: Arc::new(object),
        previous,
    });
    let row = ChangeRow {
        rev,
        resource,
        namespace,
        name,
        kind,
        body,
    };
    Ok((row, change))
}

/// The current value of every object a batch names (`None` for the missing ones), as the writer's
/// transaction sees them.
async fn read_many(
    conn: &mut SqliteConnection,
    encryption: &Encryption,
    keys: Vec<ObjectKey>,
) -> Result<std::collections::HashMap<ObjectKey, Option<Arc<Value>>>, StoreError> {
    let mut view: std::collections::HashMap<ObjectKey, Option<Arc<Value>>> =
        keys.into_iter().map(|k| (k, None)).collect();
    let keys: Vec<ObjectKey> = view.keys().cloned().collect();
    for chunk in keys.chunks(ROWS_PER_STATEMENT) {
        // A join with the keys as a VALUES table: SQLite searches the primary key for each (a row-value IN
        // list would scan the whole table).
        let mut q = sqlx::QueryBuilder::<Sqlite>::new("WITH k (r, ns, n) AS (");
        q.push_values(chunk, |mut b, (resource, namespace, name)| {
            b.push_bind(resource).push_bind(namespace).push_bind(name);
        });
        q.push(
            ") SELECT o.resource, o.namespace, o.name, o.body FROM k JOIN objects o \
             ON o.resource = k.r AND o.namespace = k.ns AND o.name = k.n",
        );
        for row in q.build().fetch_all(&mut *conn).await? {
            let key: ObjectKey = (row.get(0), row.get(1), row.get(2));
            let body = open_body(encryption, &key.0, row.get(3), || {
                format!("{} {}/{}", key.0, key.1, key.2)
            })?;
            let value = decode(&body)?;
            view.insert(key, Some(Arc::new(value)));
        }
    }
    Ok(view)
}

/// Appends changes to the log; the `changes_apply` trigger applies each to `objects` (in revision order, so
/// each object ends in its last state) and advances the stored revision. One statement per
/// [`ROWS_PER_STATEMENT`] rows.
async fn insert_changes(
    conn: &mut sqlx::SqliteConnection,
    rows: &[ChangeRow],
) -> Result<(), StoreError> {
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let mut q = sqlx::QueryBuilder::<Sqlite>::new(
            "INSERT INTO changes (rev, resource, namespace, name, type, body) ",
        );
        q.push_values(chunk, |mut b, row| {
            b.push_bind(row.rev)
                .push_bind(&row.resource)
                .push_bind(&row.namespace)
                .push_bind(&row.name)
                .push_bind(row.kind.as_str());
            match &row.body {
                Body::Plain(text) => b.push_bind(text.as_str()),
                Body::Sealed(bytes) => b.push_bind(bytes.as_slice()),
            };
        });
        q.build().execute(&mut *conn).await?;
    }
    Ok(())
}

async fn get_committed(
    pool: &SqlitePool,
    encryption: &Encryption,
    resource: &str,
    namespace: &str,
    name: &str,
) -> Result<Option<Value>, StoreError> {
    Ok(read_committed(pool, encryption, resource, namespace, name)
        .await?
        .map(|(value, _)| value))
}

/// [`get_committed`], and whether the object is stored stale ([`Encryption::is_stale`]).
async fn read_committed(
    pool: &SqlitePool,
    encryption: &Encryption,
    resource: &str,
    namespace: &str,
    name: &str,
) -> Result<Option<(Value, bool)>, StoreError> {
    let row =
        sqlx::query("SELECT body FROM objects WHERE resource = ? AND namespace = ? AND name = ?")
            .bind(resource)
            .bind(namespace)
            .bind(name)
            .fetch_optional(pool)
            .await?;
    row.map(|r| {
        let stored: &[u8] = r.get(0);
        let value = decode(&open_body(encryption, resource, stored, || {
            format!("{resource} {namespace}/{name}")
        })?)?;
        Ok((value, encryption.is_stale(resource, stored)))
    })
    .transpose()
}

/// A stored body (JSON text, or sealed) as plain JSON, as the resource's encryption reads it; `what` names
/// the object for the error.
fn open_body<'a>(
    encryption: &Encryption,
    resource: &str,
    stored: &'a [u8],
    what: impl FnOnce() -> String,
) -> Result<std::borrow::Cow<'a, [u8]>, StoreError> {
    encryption
        .open(resource, stored)
        .map_err(|e| StoreError::Unreadable(format!("{}: {e}", what())))
}

fn decode(body: &[u8]) -> Result<Value, StoreError> {
    Ok(serde_json::from_slice(body)?)
}

fn set_resource_version(obj: &mut Value, rev: i64) {
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert("resourceVersion".into(), Value::String(rev.to_string()));
    }
}

/// A stream fed by a task through a bounded channel; the task stops when the stream is dropped.
fn async_stream<T, F, Fut>(f: F) -> impl Stream<Item = T> + Send + 'static
where
    T: Send + 'static,
    F: FnOnce(tokio::sync::mpsc::Sender<T>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(256);
    tokio::spawn(f(tx));
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;
    use serde_json::json;

    async fn put(store: &Store, name: &str, v: i64) -> Arc<Change> {
        let obj = json!({"metadata": {"name": name}, "v": v});
        let ((), change) = store
            .mutate::<_, StoreError>("pods", "default", name, |_| Ok((Mutation::Put(obj), ())))
            .await
            .unwrap();
        change.unwrap()
    }

    #[tokio::test]
    async fn writes_survive_reopen_and_carry_revisions() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("herd.db");
        {
            let store = Store::open(&path).await.unwrap();
            assert_eq!(put(&store, "a", 1).await.rev, 1);
            assert_eq!(put(&store, "b", 2).await.rev, 2);
            assert_eq!(put(&store, "a", 3).await.kind, EventType::Modified);
            store.close().await;
        }
        let store = Store::open(&path).await.unwrap();
        assert_eq!(store.revision(), 3);
        let a = store.get("pods", "default", "a").await.unwrap().unwrap();
        assert_eq!(a["v"], 3);
        assert_eq!(a["metadata"]["resourceVersion"], "3");
        let (items, rev) = store.list("pods", None).await.unwrap();
        assert_eq!((items.len(), rev), (2, 3));
    }

    #[tokio::test]
    async fn create_writes_once_and_refuses_a_taken_name_or_a_missing_namespace() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("herd.db");
        {
            let store = Store::open(&path).await.unwrap();
            let mut events = Box::pin(store.watch(None, 0).await.unwrap());
            let namespace = json!({"metadata": {"name": "team"}});
            let created = store
                .create("namespaces", "", "team", namespace, None)
                .await
                .unwrap()
                .unwrap();
            assert_eq!((created.rev, created.kind), (1, EventType::Added));
            let pod = json!({"metadata": {"name": "a"}, "v": 1});
            let created = store
                .create("pods", "team", "a", pod, Some("team"))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(created.object["metadata"]["resourceVersion"], "2");
            // Taken name, missing namespace: nothing written, the revision unchanged.
            let refusals = [
                ("team", "a", CreateRefused::Exists),
                ("nowhere", "b", CreateRefused::NoNamespace),
            ];
            for (namespace, name, why) in refusals {
                let object = json!({"metadata": {"name": name}, "v": 2});
                let refused = store
                    .create("pods", namespace, name, object, Some(namespace))
                    .await
                    .unwrap();
                assert_eq!(refused.unwrap_err(), why);
            }
            assert_eq!(store.revision(), 2);
            for rev in 1..=2 {
                assert_eq!(events.next().await.unwrap().unwrap().rev, rev);
            }
            store.close().await;
        }
        // The object, the change log and the revision were all written by the one statement.
        let store = Store::open(&path).await.unwrap();
        assert_eq!(store.revision(), 2);
        let a = store.get("pods", "team", "a").await.unwrap().unwrap();
        assert_eq!(a["v"], 1);
        let replayed: Vec<i64> = Box::pin(store.watch(Some("pods"), 0).await.unwrap())
            .take(1)
            .map(|c| c.unwrap().rev)
            .collect()
            .await;
        assert_eq!(replayed, vec![2]);
        assert!(store.get("pods", "nowhere", "b").await.unwrap().is_none());
    }

    #[tokio::test]
    async fn store_sync_sets_sqlites_synchronous_on_every_connection() {
        let dir = tempfile::tempdir().unwrap();
        for (sync, expected) in [(StoreSync::Full, 2), (StoreSync::Normal, 1)] {
            let store = Store::open_with(&dir.path().join("herd.db"), sync)
                .await
                .unwrap();
            // Several connections at once: each must have the setting, not just the first.
            let mut held = Vec::new();
            for _ in 0..3 {
                let mut conn = store.inner.pool.acquire().await.unwrap();
                let level: i64 = sqlx::query_scalar("PRAGMA synchronous")
                    .fetch_one(&mut *conn)
                    .await
                    .unwrap();
                assert_eq!(level, expected, "{sync:?}");
                held.push(conn);
            }
            drop(held);
            put(&store, "a", 1).await;
            store.close().await;
        }
    }

    #[tokio::test]
    async fn the_log_is_checkpointed_in_the_background_never_by_a_commit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("herd.db");
        let store = Store::open(&path).await.unwrap();
        let mut conn = store.inner.pool.acquire().await.unwrap();
        let automatic: i64 = sqlx::query_scalar("PRAGMA wal_autocheckpoint")
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        assert_eq!(automatic, 0, "no commit runs a checkpoint");
        drop(conn);
        // The writes go to the WAL (far fewer pages than SQLite's automatic checkpoint would wait for);
        // the background checkpoint copies them into the database file.
        let size = || std::fs::metadata(&path).unwrap().len();
        let before = size();
        for i in 0..50 {
            put(&store, &format!("pod-{i}"), i).await;
        }
        let deadline = std::time::Instant::now() + CHECKPOINT_INTERVAL * 10;
        while size() == before {
            assert!(
                std::time::Instant::now() < deadline,
                "the background checkpoint never copied the writes into the database"
            );
            tokio::time::sleep(CHECKPOINT_INTERVAL / 5).await;
        }
        store.close().await;
    }

    #[tokio::test]
    async fn watch_replays_then_follows_live() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("herd.db")).await.unwrap();
        put(&store, "a", 1).await;
        put(&store, "b", 2).await;
        let mut events = Box::pin(store.watch(Some("pods"), 1).await.unwrap());
        put(&store, "c", 3).await;
        store
            .mutate::<_, StoreError>("pods", "default", "a", |cur| {
                assert!(cur.is_some());
                Ok((Mutation::Delete, ()))
            })
            .await
            .unwrap();
        let mut seen = Vec::new();
        for _ in 0..3 {
            let c = events.next().await.unwrap().unwrap();
            seen.push((c.rev, c.name.clone(), c.kind));
        }
        assert_eq!(
            seen,
            [
                (2, "b".into(), EventType::Added),
                (3, "c".into(), EventType::Added),
                (4, "a".into(), EventType::Deleted)
            ]
        );
        assert!(store.get("pods", "default", "a").await.unwrap().is_none());
    }

    /// A caller dropped mid-write (an HTTP client hanging up) must never leave the revision counter behind
    /// the database, or every later write fails on the change log's unique revision.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn dropped_writers_never_desync_the_revision() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("herd.db")).await.unwrap();
        // Sweep the give-up point across a whole write, in fine steps.
        let started = std::time::Instant::now();
        put(&store, "warm", 0).await;
        let write_time = started.elapsed().max(Duration::from_micros(50));
        let steps = 400u32;
        for i in 0..steps {
            let obj = json!({"metadata": {"name": "a"}, "v": i});
            let write = store
                .mutate::<_, StoreError>("pods", "default", "a", |_| Ok((Mutation::Put(obj), ())));
            // Give up on the write at varying points, as a disconnecting client does.
            let _ = tokio::time::timeout(write_time * 2 * i / steps, write).await;
        }
        let change = put(&store, "b", 1).await;
        let (_, listed_rev) = store.list("pods", None).await.unwrap();
        assert_eq!(change.rev, listed_rev);
        assert_eq!(store.revision(), listed_rev);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_writes_commit_in_groups_and_each_sees_the_ones_before() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("herd.db")).await.unwrap();
        let mut events = Box::pin(store.watch(None, 0).await.unwrap());
        // 200 writers at once, each incrementing one counter and writing an object of its own: a write
        // that read the committed value instead of its group's would lose an increment.
        let writers: Vec<_> = (0..200)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move {
                    let ((), counted) = store
                        .mutate::<_, StoreError>("counters", "", "c", |cur| {
                            let n = cur.map_or(0, |c| c["n"].as_i64().unwrap());
                            let obj = json!({"metadata": {"name": "c"}, "n": n + 1});
                            Ok((Mutation::Put(obj), ()))
                        })
                        .await
                        .unwrap();
                    let own = put(&store, &format!("p{i}"), i).await;
                    (counted.unwrap().rev, own.rev)
                })
            })
            .collect();
        let mut revs = Vec::new();
        for writer in writers {
            let (a, b) = writer.await.unwrap();
            revs.extend([a, b]);
        }
        revs.sort_unstable();
        assert_eq!(revs, (1..=400).collect::<Vec<i64>>());
        let counter = store.get("counters", "", "c").await.unwrap().unwrap();
        assert_eq!(counter["n"], 200);
        // Grouped: far fewer commits than writes.
        assert!(store.commits() < 200, "{} commits", store.commits());
        // Watchers get every change once, in revision order.
        for rev in 1..=400 {
            assert_eq!(events.next().await.unwrap().unwrap().rev, rev);
        }
    }

    #[tokio::test]
    async fn the_live_feed_keeps_no_change_a_watcher_has_taken() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("herd.db")).await.unwrap();
        let mut pods = Box::pin(store.watch(Some("pods"), 0).await.unwrap());
        let change = put(&store, "a", 1).await;
        assert_eq!(pods.next().await.unwrap().unwrap().rev, change.rev);
        // Only this test holds the change now: no ring of past changes keeps it alive.
        assert_eq!(Arc::strong_count(&change), 1);
        // A watcher of another resource is never handed it.
        let mut services = Box::pin(store.watch(Some("services"), 1).await.unwrap());
        let pod = put(&store, "b", 2).await;
        assert_eq!(
            Arc::strong_count(&pod),
            2,
            "queued for the pod watcher only"
        );
        let ((), service) = store
            .mutate::<_, StoreError>("services", "default", "s", |_| {
                Ok((Mutation::Put(json!({"metadata": {"name": "s"}})), ()))
            })
            .await
            .unwrap();
        let service = service.unwrap();
        assert_eq!(services.next().await.unwrap().unwrap().rev, service.rev);
    }

    #[tokio::test]
    async fn a_watcher_that_falls_too_far_behind_is_expired() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("herd.db")).await.unwrap();
        let mut slow = Box::pin(store.watch(None, 0).await.unwrap());
        let items = (0..WATCH_BACKLOG + 1_000)
            .map(|i| BatchItem {
                resource: "pods".into(),
                namespace: "default".into(),
                name: format!("p{i}"),
                decide: Box::new(move |_| {
                    Mutation::Put(json!({"metadata": {"name": format!("p{i}")}}))
                }),
            })
            .collect();
        store.update_many(items).await.unwrap();
        // What it had queued still arrives, in order; then the feed ends with 410-style expiry.
        let mut last = 0;
        loop {
            match slow.next().await.unwrap() {
                Ok(change) => {
                    assert_eq!(change.rev, last + 1);
                    last = change.rev;
                }
                Err(StoreError::Expired { requested, .. }) => {
                    assert_eq!(requested, last);
                    break;
                }
                Err(e) => panic!("{e}"),
            }
        }
        assert!(last < store.revision());
        // A watcher that keeps up is not cut off.
        let mut live = Box::pin(store.watch(None, store.revision()).await.unwrap());
        let change = put(&store, "after", 1).await;
        assert_eq!(live.next().await.unwrap().unwrap().rev, change.rev);
    }

    #[tokio::test]
    async fn a_batch_commits_in_order_and_each_item_sees_the_earlier_ones() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("herd.db")).await.unwrap();
        put(&store, "a", 1).await;
        let mut events = Box::pin(store.watch(Some("pods"), 1).await.unwrap());
        let item = |name: &str, decide: Box<crate::storage::Decide<'static>>| BatchItem {
            resource: "pods".into(),
            namespace: "default".into(),
            name: name.into(),
            decide,
        };
        let changes = store
            .update_many(vec![
                item(
                    "a",
                    Box::new(|cur| {
                        let mut obj = cur.unwrap();
                        obj["v"] = json!(2);
                        Mutation::Put(obj)
                    }),
                ),
                // Sees the first item's write, inside the same transaction.
                item(
                    "a",
                    Box::new(|cur| {
                        assert_eq!(cur.unwrap()["v"], 2);
                        Mutation::Keep
                    }),
                ),
                item(
                    "b",
                    Box::new(|cur| {
                        assert!(cur.is_none());
                        Mutation::Put(json!({"metadata": {"name": "b"}}))
                    }),
                ),
                item("zzz", Box::new(|_| Mutation::Delete)),
            ])
            .await
            .unwrap();
        let revs: Vec<Option<i64>> = changes.iter().map(|c| c.as_ref().map(|c| c.rev)).collect();
        assert_eq!(revs, [Some(2), None, Some(3), None]);
        assert_eq!(store.revision(), 3);
        let a = store.get("pods", "default", "a").await.unwrap().unwrap();
        assert_eq!(
            (a["v"].clone(), a["metadata"]["resourceVersion"].clone()),
            (json!(2), json!("2"))
        );
        for want in [(2, "a", EventType::Modified), (3, "b", EventType::Added)] {
            let c = events.next().await.unwrap().unwrap();
            assert_eq!((c.rev, c.name.as_str(), c.kind), want);
        }
        // The next single write continues from the batch's last revision.
        assert_eq!(put(&store, "c", 1).await.rev, 4);
    }

    #[tokio::test]
    async fn a_batch_leaves_each_object_as_its_last_write_says() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("herd.db")).await.unwrap();
        put(&store, "old", 1).await;
        let item = |name: &str, m: fn(Option<Value>) -> Mutation| BatchItem {
            resource: "pods".into(),
            namespace: "default".into(),
            name: name.into(),
            decide: Box::new(m),
        };
        let created = |_| Mutation::Put(json!({"metadata": {"name": "x"}}));
        let changes = store
            .update_many(vec![
                item("x", created),
                item("x", |_| Mutation::Delete),
                item("old", |_| Mutation::Delete),
                item("y", |_| Mutation::Put(json!({"metadata": {"name": "y"}}))),
            ])
            .await
            .unwrap();
        let kinds: Vec<_> = changes.iter().map(|c| c.as_ref().map(|c| c.kind)).collect();
        use EventType::*;
        assert_eq!(
            kinds,
            [Some(Added), Some(Deleted), Some(Deleted), Some(Added)]
        );
        let (items, rev) = store.list("pods", None).await.unwrap();
        let names: Vec<_> = items
            .iter()
            .map(|o| o["metadata"]["name"].clone())
            .collect();
        assert_eq!((names, rev), (vec![json!("y")], 5));
        // The change log holds all four writes, in order.
        let replay: Vec<_> = Box::pin(store.watch(None, 1).await.unwrap())
            .take(4)
            .map(|c| c.unwrap().kind)
            .collect()
            .await;
        assert_eq!(replay, [Added, Deleted, Deleted, Added]);
    }

    #[tokio::test]
    async fn lists_read_any_revision_compaction_kept() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("herd.db")).await.unwrap();
        let names = |page: &Page| -> Vec<String> {
            page.items
                .iter()
                .map(|b| {
                    let v: Value = serde_json::from_str(b).unwrap();
                    format!("{}={}", v["metadata"]["name"].as_str().unwrap(), v["v"])
                })
                .collect()
        };
        let at = |revision: i64, limit: Option<usize>, after: Option<&str>| ListOptions {
            revision: Some(revision),
            limit,
            after: after.map(|a| ("default".to_string(), a.to_string())),
            ..ListOptions::default()
        };
        put(&store, "a", 1).await;
        put(&store, "b", 1).await;
        let two = put(&store, "c", 1).await.rev;
        put(&store, "b", 2).await;
        store
            .mutate::<_, StoreError>("pods", "default", "c", |_| Ok((Mutation::Delete, ())))
            .await
            .unwrap();
        put(&store, "d", 1).await;
        let page = store
            .list_page("pods", &at(two, Some(2), None))
            .await
            .unwrap();
        assert_eq!(
            (names(&page), page.revision, page.more),
            (vec!["a=1".into(), "b=1".into()], two, true)
        );
        let page = store
            .list_page("pods", &at(two, Some(2), Some("b")))
            .await
            .unwrap();
        assert_eq!((names(&page), page.more), (vec!["c=1".into()], false));
        let now = store
            .list_page("pods", &ListOptions::default())
            .await
            .unwrap();
        assert_eq!(names(&now), ["a=1", "b=2", "d=1"]);
        // Compacting past every change keeps each key's last one: the latest revision still lists whole,
        // an older one is gone.
        for i in 0..CHANGE_LOG_KEEP {
            put(&store, "e", i).await;
        }
        let before = store.revision() - 1;
        store.compact().await.unwrap();
        let kept: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM changes WHERE name <> 'e'")
            .fetch_one(&store.inner.pool)
            .await
            .unwrap();
        assert_eq!(
            kept, 3,
            "a, b and d keep their last change; c's deletion goes"
        );
        let page = store
            .list_page("pods", &at(before, None, None))
            .await
            .unwrap();
        assert_eq!(
            names(&page),
            ["a=1", "b=2", "d=1", &format!("e={}", CHANGE_LOG_KEEP - 2)]
        );
        assert!(matches!(
            store.list_page("pods", &at(two, None, None)).await,
            Err(StoreError::Expired { .. })
        ));
    }

    #[tokio::test]
    async fn compacted_revisions_are_expired() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("herd.db")).await.unwrap();
        put(&store, "a", 1).await;
        sqlx::query("UPDATE meta SET value = 1 WHERE key = 'compacted'")
            .execute(&store.inner.pool)
            .await
            .unwrap();
        assert!(matches!(
            store.watch(None, 0).await,
            Err(StoreError::Expired { .. })
        ));
    }

    /// Every path that writes (create, update, batch) seals an encrypted resource's rows in `objects` and
    /// `changes`; every path that reads (get, batch read, list now and at an older revision, watch replay,
    /// after compaction) opens them; other resources stay JSON text.
    #[tokio::test]
    async fn encrypted_resources_are_sealed_on_every_write_path_and_opened_on_every_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("herd.db");
        let encryption = Encryption::parse(
            "apiVersion: apiserver.config.k8s.io/v1
kind: EncryptionConfiguration
resources:
  - resources: [secrets]
    providers:
      - secretbox:
          keys: [{name: k, secret: MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=}]
",
        )
        .unwrap();
        let store = Store::open_encrypted(&path, StoreSync::Full, Arc::new(encryption))
            .await
            .unwrap();
        let secret = |name: &str, v: &str| json!({"metadata": {"name": name}, "data": {"v": v}});
        store
            .create(
                "secrets",
                "default",
                "a",
                secret("a", "sealed-create"),
                None,
            )
            .await
            .unwrap()
            .unwrap();
        let ((), _) = store
            .mutate::<_, StoreError>("secrets", "default", "a", |cur| {
                assert_eq!(cur.unwrap()["data"]["v"], "sealed-create");
                Ok((Mutation::Put(secret("a", "sealed-update")), ()))
            })
            .await
            .unwrap();
        let item = |name: &'static str, v: &'static str| BatchItem {
            resource: "secrets".into(),
            namespace: "default".into(),
            name: name.into(),
            decide: Box::new(move |_| {
                Mutation::Put(json!({"metadata": {"name": name}, "data": {"v": v}}))
            }),
        };
        let before_batch = store.revision();
        store
            .update_many(vec![
                item("a", "sealed-batch-a"),
                item("b", "sealed-batch-b"),
            ])
            .await
            .unwrap();
        put(&store, "pod", 1).await;

        // No secret's value anywhere in the rows; the pod is JSON text.
        let rows: Vec<(String, Vec<u8>)> = sqlx::query_as(
            "SELECT resource, body FROM objects UNION ALL SELECT resource, body FROM changes",
        )
        .fetch_all(&store.inner.pool)
        .await
        .unwrap();
        assert_eq!(rows.len(), 3 + 5);
        for (resource, body) in &rows {
            let text = String::from_utf8_lossy(body);
            if resource == "secrets" {
                assert!(body.starts_with(b"k8s:enc:secretbox:v1:k:"), "{text}");
                assert!(!text.contains("sealed-"), "{text}");
            } else {
                assert!(body.starts_with(b"{"), "{text}");
            }
        }

        // Reads see plain objects.
        let a = store.get("secrets", "default", "a").await.unwrap().unwrap();
        assert_eq!(a["data"]["v"], "sealed-batch-a");
        let (items, _) = store.list("secrets", None).await.unwrap();
        assert_eq!(items.len(), 2);
        let old = store
            .list_page(
                "secrets",
                &ListOptions {
                    revision: Some(before_batch),
                    ..ListOptions::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(old.items.len(), 1);
        assert!(old.items[0].contains("sealed-update"), "{:?}", old.items);
        let replay: Vec<_> = store
            .watch(Some("secrets"), 0)
            .await
            .unwrap()
            .take(4)
            .map(|c| c.unwrap().object["data"]["v"].clone())
            .collect()
            .await;
        assert_eq!(
            replay,
            [
                "sealed-create",
                "sealed-update",
                "sealed-batch-a",
                "sealed-batch-b"
            ]
        );
        store.close().await;

        // Reopened without the configuration (identity): a sealed value is an error, not plain.
        let store = Store::open(&path).await.unwrap();
        assert!(matches!(
            store.get("secrets", "default", "a").await,
            Err(StoreError::Unreadable(_))
        ));
        assert!(store.get("pods", "default", "pod").await.unwrap().is_some());
    }
}
