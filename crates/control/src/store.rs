//! The SQLite store: objects as JSON documents, one global revision, a change log, and watch fan-out.
//!
//! Writes are serialised by one async mutex: a write reads the current object, lets the caller decide what
//! to write ([`Store::mutate`]), commits one transaction (object row + change row + revision), and only
//! after the commit pushes the change to watchers. So watchers see changes in revision order and never one
//! that was not committed. **This is the only module that knows SQL.**

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use futures::Stream;
use serde_json::Value;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Row, Sqlite, Transaction};
use tokio::sync::{Mutex, broadcast};

/// How many changes the log keeps before compaction drops the oldest; older watches get 410 Expired.
const CHANGE_LOG_KEEP: i64 = 20_000;
/// Watchers that fall this far behind the live feed are cut off and must re-list.
const FANOUT_CAPACITY: usize = 16_384;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("migrating the database: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored object is not valid JSON: {0}")]
    Corrupt(#[from] serde_json::Error),
    /// The requested revision has been compacted away.
    #[error("too old resource version: {requested} ({oldest})")]
    Expired { requested: i64, oldest: i64 },
    #[error("the write task failed: {0}")]
    Task(String),
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

    fn parse(s: &str) -> Self {
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

/// What a [`Store::mutate`] closure decides to do with the current object.
pub enum Mutation {
    Put(Value),
    Delete,
    Keep,
}

#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    pool: SqlitePool,
    write: Arc<Mutex<()>>,
    revision: AtomicI64,
    fanout: broadcast::Sender<Arc<Change>>,
}

impl Store {
    /// Opens (creating if needed) the database file and applies migrations.
    ///
    /// # Errors
    /// When the file cannot be opened or migrated.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str("sqlite://")?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations").run(&pool).await?;
        let revision: i64 = sqlx::query_scalar("SELECT value FROM meta WHERE key = 'revision'")
            .fetch_one(&pool)
            .await?;
        let (fanout, _) = broadcast::channel(FANOUT_CAPACITY);
        Ok(Self {
            inner: Arc::new(Inner {
                pool,
                write: Arc::new(Mutex::new(())),
                revision: AtomicI64::new(revision),
                fanout,
            }),
        })
    }

    /// The revision of the last committed write.
    pub fn revision(&self) -> i64 {
        self.inner.revision.load(Ordering::SeqCst)
    }

    pub async fn get(
        &self,
        resource: &str,
        namespace: &str,
        name: &str,
    ) -> Result<Option<Value>, StoreError> {
        let row = sqlx::query(
            "SELECT body FROM objects WHERE resource = ? AND namespace = ? AND name = ?",
        )
        .bind(resource)
        .bind(namespace)
        .bind(name)
        .fetch_optional(&self.inner.pool)
        .await?;
        row.map(|r| decode(r.get::<&str, _>(0))).transpose()
    }

    /// Every object of a resource (in one namespace, or all), sorted by namespace and name, and the revision
    /// the list is consistent with.
    pub async fn list(
        &self,
        resource: &str,
        namespace: Option<&str>,
    ) -> Result<(Vec<Value>, i64), StoreError> {
        // Reading inside one transaction gives a consistent snapshot that includes the revision.
        let mut tx = self.inner.pool.begin().await?;
        let rev: i64 = sqlx::query_scalar("SELECT value FROM meta WHERE key = 'revision'")
            .fetch_one(&mut *tx)
            .await?;
        let rows = match namespace {
            Some(ns) => {
                sqlx::query("SELECT body FROM objects WHERE resource = ? AND namespace = ? ORDER BY namespace, name")
                    .bind(resource)
                    .bind(ns)
                    .fetch_all(&mut *tx)
                    .await?
            }
            None => {
                sqlx::query("SELECT body FROM objects WHERE resource = ? ORDER BY namespace, name")
                    .bind(resource)
                    .fetch_all(&mut *tx)
                    .await?
            }
        };
        tx.commit().await?;
        let items = rows
            .iter()
            .map(|r| decode(r.get::<&str, _>(0)))
            .collect::<Result<_, _>>()?;
        Ok((items, rev))
    }

    /// Atomically reads an object, lets `decide` choose a mutation, and commits it.
    ///
    /// The closure runs under the store's write lock, so no other write interleaves between the read and the
    /// write. The stored object gets `metadata.resourceVersion` set to the new revision. Returns the closure's
    /// result and the committed change, if any.
    ///
    /// # Errors
    /// A database error, or the closure's own error (nothing is written then).
    pub async fn mutate<T, E>(
        &self,
        resource: &str,
        namespace: &str,
        name: &str,
        decide: impl FnOnce(Option<Value>) -> Result<(Mutation, T), E>,
    ) -> Result<(T, Option<Arc<Change>>), E>
    where
        E: From<StoreError>,
    {
        let guard = self.inner.write.clone().lock_owned().await;
        let current = self.get(resource, namespace, name).await?;
        let previous = current.clone().map(Arc::new);
        let existed = current.is_some();
        let (mutation, out) = decide(current)?;
        let (kind, object) = match mutation {
            Mutation::Keep => return Ok((out, None)),
            Mutation::Delete if !existed => return Ok((out, None)),
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
        // The commit runs in its own task, holding the write lock: if the caller is dropped (a client hung
        // up), the write still either happens completely — revision counter and fan-out included — or not at
        // all, so the in-memory revision never falls behind the database.
        let inner = self.inner.clone();
        let (resource, namespace, name) = (
            resource.to_string(),
            namespace.to_string(),
            name.to_string(),
        );
        let commit = tokio::spawn(async move {
            let _guard = guard;
            let mut object = object;
            let mut tx = inner.pool.begin().await?;
            let last: i64 = sqlx::query_scalar("SELECT value FROM meta WHERE key = 'revision'")
                .fetch_one(&mut *tx)
                .await?;
            let rev = last + 1;
            set_resource_version(&mut object, rev);
            let body = serde_json::to_string(&object)?;
            write_rows(&mut tx, &resource, &namespace, &name, rev, kind, &body).await?;
            tx.commit().await?;
            inner.revision.store(rev, Ordering::SeqCst);
            let change = Arc::new(Change {
                rev,
                resource: Arc::from(resource.as_str()),
                namespace,
                name,
                kind,
                object: Arc::new(object),
                previous,
            });
            // No receivers is fine: nobody is watching.
            let _ = inner.fanout.send(change.clone());
            Ok::<_, StoreError>(change)
        });
        let change = commit
            .await
            .map_err(|e| StoreError::Task(e.to_string()))??;
        Ok((out, Some(change)))
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
    ) -> Result<impl Stream<Item = Result<Arc<Change>, StoreError>> + Send + 'static, StoreError>
    {
        // Subscribe before reading the log so nothing committed in between is missed.
        let mut live = self.inner.fanout.subscribe();
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
            replay.push(Arc::new(Change {
                rev: row.get(0),
                resource: Arc::from(row.get::<&str, _>(1)),
                namespace: row.get(2),
                name: row.get(3),
                kind: EventType::parse(row.get::<&str, _>(4)),
                object: Arc::new(decode(row.get::<&str, _>(5))?),
                previous: None,
            }));
        }
        let resource = resource.map(str::to_string);
        let mut last = replay.last().map_or(since, |c| c.rev);
        Ok(async_stream(move |tx| async move {
            for change in replay {
                if tx.send(Ok(change)).await.is_err() {
                    return;
                }
            }
            loop {
                match live.recv().await {
                    Ok(change) => {
                        if change.rev <= last
                            || resource.as_deref().is_some_and(|r| r != &*change.resource)
                        {
                            continue;
                        }
                        last = change.rev;
                        if tx.send(Ok(change)).await.is_err() {
                            return;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        let _ = tx
                            .send(Err(StoreError::Expired {
                                requested: last,
                                oldest: last + 1,
                            }))
                            .await;
                        return;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        }))
    }

    /// Drops the oldest changes beyond [`CHANGE_LOG_KEEP`].
    pub async fn compact(&self) -> Result<(), StoreError> {
        let cutoff = self.revision() - CHANGE_LOG_KEEP;
        if cutoff <= 0 {
            return Ok(());
        }
        let mut tx = self.inner.pool.begin().await?;
        sqlx::query("DELETE FROM changes WHERE rev <= ?")
            .bind(cutoff)
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE meta SET value = ? WHERE key = 'compacted' AND value < ?")
            .bind(cutoff)
            .bind(cutoff)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn close(&self) {
        self.inner.pool.close().await;
    }
}

async fn write_rows(
    tx: &mut Transaction<'_, Sqlite>,
    resource: &str,
    namespace: &str,
    name: &str,
    rev: i64,
    kind: EventType,
    body: &str,
) -> Result<(), StoreError> {
    if kind == EventType::Deleted {
        sqlx::query("DELETE FROM objects WHERE resource = ? AND namespace = ? AND name = ?")
            .bind(resource)
            .bind(namespace)
            .bind(name)
            .execute(&mut **tx)
            .await?;
    } else {
        sqlx::query(
            "INSERT INTO objects (resource, namespace, name, rev, body) VALUES (?, ?, ?, ?, ?)
             ON CONFLICT (resource, namespace, name) DO UPDATE SET rev = excluded.rev, body = excluded.body",
        )
        .bind(resource)
        .bind(namespace)
        .bind(name)
        .bind(rev)
        .bind(body)
        .execute(&mut **tx)
        .await?;
    }
    sqlx::query("INSERT INTO changes (rev, resource, namespace, name, type, body) VALUES (?, ?, ?, ?, ?, ?)")
        .bind(rev)
        .bind(resource)
        .bind(namespace)
        .bind(name)
        .bind(kind.as_str())
        .bind(body)
        .execute(&mut **tx)
        .await?;
    sqlx::query("UPDATE meta SET value = ? WHERE key = 'revision'")
        .bind(rev)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

fn decode(body: &str) -> Result<Value, StoreError> {
    Ok(serde_json::from_str(body)?)
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
}
