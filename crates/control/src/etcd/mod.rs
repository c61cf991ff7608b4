//! The etcd backend of [`Storage`], as kube-apiserver's etcd3 store (k8s.io/apiserver/pkg/storage/etcd3).
//!
//! - **Keys** are `<prefix>/<resource>/<namespace>/<name>` (`<prefix>/<resource>/<name>` for cluster-scoped
//!   objects), `<resource>` being the store's resource key (`pods`, `deployments.apps`); **values** are the
//!   object's JSON without `metadata.resourceVersion`, sealed for the resources the EncryptionConfiguration
//!   names exactly as the SQLite store seals them ([`crate::encryption`]).
//! - An object's **resourceVersion is its key's `mod_revision`**, set on every object read, listed or
//!   watched (kube's versioner).
//! - A **create** is a transaction comparing the key's `create_revision` with 0 (and, within a namespace,
//!   the namespace key's with more than 0); an **update** or **delete** reads the key, lets `decide` choose,
//!   and commits only if the key's `mod_revision` is still the one read — otherwise `decide` runs again on
//!   the object the failed transaction read back.
//! - **Lists** are ranges at one revision (the current one, or the one asked for), `limit` keys at a time
//!   from after the continue key; a compacted revision is [`StoreError::Expired`].
//! - **Watches** share one etcd watch of the whole prefix ([`watch`]); a watcher from an older revision
//!   reads that history through a watch of its own first.
//! - **Compaction** is kube's compactor ([`compact`]): every 5 minutes, to the revision seen 5 minutes
//!   before, one replica per interval.
//!
//! [`EtcdStore::close`] stops the shared watch and the compactor.

mod compact;
#[cfg(test)]
mod conformance;
mod endpoints;
pub(crate) mod import;
#[cfg(test)]
pub(crate) mod testing;
mod watch;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use etcd_client::{
    Certificate, Compare, CompareOp, ConnectOptions, GetOptions, Identity, TlsOptions, Txn, TxnOp,
    TxnOpResponse,
};
use futures::future::BoxFuture;
use futures::{StreamExt, TryStreamExt};
use serde_json::Value;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::encryption::Encryption;
use crate::storage::{
    BatchItem, Change, ChangeStream, CreateRefused, Decide, EventType, ListOptions, Mutation, Page,
    Preconditions, Storage, StoreError, UpdateRefused, Updated,
};

/// How long `herd control` waits for etcd to answer at start before giving up.
pub const CONNECT_PATIENCE: Duration = Duration::from_secs(10);

/// Where the etcd store is and how to reach it (kube-apiserver's `--etcd-*` flags).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdConfig {
    /// `--etcd-servers`: the members' client URLs (`https://host:2379`); the client balances between them
    /// and fails over.
    pub servers: Vec<String>,
    /// `--etcd-cafile`: the CA that signed the members' serving certificates.
    pub ca_file: Option<PathBuf>,
    /// `--etcd-certfile` and `--etcd-keyfile`: this client's certificate and key (etcd's
    /// `--client-cert-auth`).
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// `--etcd-prefix`: every key lies under it (`/registry`).
    pub prefix: String,
}

impl Default for EtcdConfig {
    fn default() -> Self {
        Self {
            servers: vec!["http://127.0.0.1:2379".into()],
            ca_file: None,
            cert_file: None,
            key_file: None,
            prefix: "/registry".into(),
        }
    }
}

/// How often kube-apiserver's compactor runs (`--etcd-compaction-interval`).
pub const COMPACTION_INTERVAL: Duration = Duration::from_secs(300);

/// The etcd store; cheap to clone.
#[derive(Clone)]
pub struct EtcdStore {
    inner: Arc<Inner>,
}

struct Inner {
    /// The members, and which one requests go to.
    endpoints: Arc<endpoints::Endpoints>,
    /// The key prefix with a trailing `/`.
    root: String,
    /// The servers, for messages.
    servers: String,
    encryption: Arc<Encryption>,
    /// The highest revision of a change under the prefix this store has seen (its writes and the shared
    /// watch's events): every revision it reports is one a watcher of the prefix is handed.
    revision: AtomicI64,
    /// The newest compaction revision this store knows of (for [`StoreError::Expired`]'s `oldest`).
    compacted: AtomicI64,
    hub: watch::Hub,
    closed: CancellationToken,
    tasks: std::sync::Mutex<Vec<JoinHandle<()>>>,
}

impl From<etcd_client::Error> for StoreError {
    fn from(e: etcd_client::Error) -> Self {
        Self::Backend(format!("etcd: {}", describe(&e)))
    }
}

/// An etcd client error on one line: a gRPC status's message and its deepest cause (`unavailable: tcp
/// connect error: Connection refused`), not tonic's debug form.
fn describe(e: &etcd_client::Error) -> String {
    let etcd_client::Error::GRpcStatus(status) = e else {
        return e.to_string();
    };
    let mut deepest: Option<&dyn std::error::Error> = None;
    let mut next = std::error::Error::source(status);
    while let Some(cause) = next {
        deepest = Some(cause);
        next = cause.source();
    }
    let code = format!("{:?}", status.code()).to_lowercase();
    match deepest {
        Some(cause) => format!("{code}: {}: {cause}", status.message()),
        None => format!("{code}: {}", status.message()),
    }
}

/// Whether etcd refused a read for a revision compacted away (`ErrCompacted`, OutOfRange).
fn is_compacted(e: &etcd_client::Error) -> bool {
    matches!(e, etcd_client::Error::GRpcStatus(s)
        if s.message().contains("required revision has been compacted"))
}

/// Whether etcd refused a read at a revision it has not reached (`ErrFutureRev`).
fn is_future(e: &etcd_client::Error) -> bool {
    matches!(e, etcd_client::Error::GRpcStatus(s)
        if s.message().contains("required revision is a future revision"))
}

impl EtcdStore {
    /// Connects to etcd and checks that it answers (within [`CONNECT_PATIENCE`]), then starts the shared
    /// watch and the compactor (every `compaction` interval; `None`: never).
    ///
    /// # Errors
    /// Unreadable TLS files, a bad URL, or etcd not answering: one line naming the servers.
    pub async fn connect(
        config: &EtcdConfig,
        encryption: Arc<Encryption>,
        compaction: Option<Duration>,
    ) -> Result<Self, StoreError> {
        let servers = config.servers.join(",");
        if config.servers.is_empty() {
            return Err(StoreError::Backend(
                "--etcd-servers names no server".to_string(),
            ));
        }
        let mut options = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(5))
            .with_keep_alive(Duration::from_secs(10), Duration::from_secs(10))
            .with_keep_alive_while_idle(true);
        if config.ca_file.is_some() || config.cert_file.is_some() {
            let read = |what: &str, path: &PathBuf| {
                std::fs::read(path).map_err(|e| {
                    StoreError::Backend(format!("reading {what} {}: {e}", path.display()))
                })
            };
            let mut tls = TlsOptions::new();
            if let Some(ca) = &config.ca_file {
                tls = tls.ca_certificate(Certificate::from_pem(read("--etcd-cafile", ca)?));
            }
            match (&config.cert_file, &config.key_file) {
                (Some(cert), Some(key)) => {
                    tls = tls.identity(Identity::from_pem(
                        read("--etcd-certfile", cert)?,
                        read("--etcd-keyfile", key)?,
                    ));
                }
                (None, None) => {}
                _ => {
                    return Err(StoreError::Backend(
                        "--etcd-certfile and --etcd-keyfile go together".to_string(),
                    ));
                }
            }
            options = options.with_tls(tls);
        }
        let endpoints = Arc::new(
            endpoints::Endpoints::connect(&config.servers, &options)
                .await
                .map_err(|e| StoreError::Backend(format!("etcd at {servers}: {}", describe(&e))))?,
        );
        let root = format!("{}/", config.prefix.trim_end_matches('/'));
        // A first read: says whether etcd answers, and the revision to start watching after.
        let probe = tokio::time::timeout(
            // Each try of a member that does not answer at all takes the 5 s connect timeout.
            CONNECT_PATIENCE + Duration::from_secs(5),
            endpoints.call_for(CONNECT_PATIENCE, |mut c| {
                let root = root.clone();
                async move {
                    c.get(
                        root,
                        Some(GetOptions::new().with_prefix().with_count_only()),
                    )
                    .await
                }
            }),
        )
        .await;
        let header_revision = match probe {
            Err(_) => {
                return Err(StoreError::Backend(format!(
                    "etcd at {servers} did not answer within {} s",
                    CONNECT_PATIENCE.as_secs()
                )));
            }
            Ok(Err(e)) => {
                return Err(StoreError::Backend(format!(
                    "etcd at {servers}: {}",
                    describe(&e)
                )));
            }
            Ok(Ok(resp)) => resp.header().map_or(0, |h| h.revision()),
        };
        let inner = Arc::new(Inner {
            endpoints,
            root,
            servers,
            encryption,
            revision: AtomicI64::new(header_revision),
            compacted: AtomicI64::new(0),
            hub: watch::Hub::new(header_revision),
            closed: CancellationToken::new(),
            tasks: std::sync::Mutex::new(Vec::new()),
        });
        let mut tasks = vec![tokio::spawn(watch::run_hub(Arc::downgrade(&inner)))];
        if let Some(every) = compaction {
            tasks.push(tokio::spawn(compact::run(
                inner.endpoints.clone(),
                every,
                inner.closed.clone(),
            )));
        }
        *inner.tasks.lock().unwrap_or_else(|e| e.into_inner()) = tasks;
        Ok(Self { inner })
    }

    /// The servers, comma-separated (for messages).
    pub fn servers(&self) -> &str {
        &self.inner.servers
    }

    /// The key prefix, with its trailing `/`.
    pub fn root(&self) -> &str {
        &self.inner.root
    }

    /// Whether no key lies under the prefix.
    ///
    /// # Errors
    /// etcd failing.
    pub async fn is_empty(&self) -> Result<bool, StoreError> {
        let root = self.inner.root.clone();
        let resp = self
            .inner
            .endpoints
            .call(|mut c| {
                let root = root.clone();
                async move {
                    c.get(
                        root,
                        Some(GetOptions::new().with_prefix().with_count_only()),
                    )
                    .await
                }
            })
            .await?;
        Ok(resp.count() == 0)
    }

    /// A range read (`GetOptions`) on the active member.
    async fn range(
        &self,
        key: impl Into<Vec<u8>>,
        options: Option<GetOptions>,
    ) -> Result<etcd_client::GetResponse, etcd_client::Error> {
        self.inner.range(key, options).await
    }

    /// A transaction on the active member.
    async fn txn(&self, txn: Txn) -> Result<etcd_client::TxnResponse, etcd_client::Error> {
        self.inner
            .endpoints
            .call(|mut c| {
                let txn = txn.clone();
                async move { c.txn(txn).await }
            })
            .await
    }

    /// A client of the active member (tests read etcd's keys through it).
    #[cfg(test)]
    fn kv(&self) -> etcd_client::KvClient {
        self.inner.endpoints.client().kv_client()
    }

    fn check_open(&self) -> Result<(), StoreError> {
        if self.inner.closed.is_cancelled() {
            Err(StoreError::Closed)
        } else {
            Ok(())
        }
    }

    /// Remembers that a change at `rev` under the prefix happened.
    fn saw(&self, rev: i64) {
        self.inner.saw(rev);
    }

    fn expired(&self, requested: i64) -> StoreError {
        StoreError::Expired {
            requested,
            oldest: self
                .inner
                .compacted
                .load(Ordering::SeqCst)
                .max(requested + 1),
        }
    }

    /// One object's key.
    fn key(&self, resource: &str, namespace: &str, name: &str) -> String {
        self.inner.key(resource, namespace, name)
    }

    /// The current value of a key: the object (resourceVersion set), its mod_revision, and whether it is
    /// stored stale for the encryption configuration.
    async fn read(
        &self,
        resource: &str,
        key: &str,
    ) -> Result<Option<(Value, i64, bool)>, StoreError> {
        let resp = self.range(key, None).await?;
        resp.kvs()
            .first()
            .map(|kv| self.inner.current_of(resource, kv))
            .transpose()
    }

    /// A page of a resource's objects, as [`Storage::list`].
    async fn list_page(&self, resource: &str, options: ListOptions) -> Result<Page, StoreError> {
        let base = match options.namespace.as_deref() {
            Some(ns) if !ns.is_empty() => format!("{}{resource}/{ns}/", self.inner.root),
            _ => format!("{}{resource}/", self.inner.root),
        };
        let end = prefix_end(base.as_bytes());
        let start = match &options.after {
            Some((ns, name)) => {
                let mut k = self.key(resource, ns, name).into_bytes();
                k.push(0);
                k
            }
            None => base.into_bytes(),
        };
        let mut get = GetOptions::new().with_range(end.clone());
        if let Some(limit) = options.limit {
            get = get.with_limit(i64::try_from(limit.max(1)).unwrap_or(i64::MAX));
        }
        let at = options.revision.filter(|r| *r > 0);
        let resp = match self
            .range(
                start.clone(),
                Some(at.map_or(get.clone(), |r| get.clone().with_revision(r))),
            )
            .await
        {
            Ok(resp) => resp,
            Err(e) if is_compacted(&e) => return Err(self.expired(at.unwrap_or(0))),
            // A revision etcd has not reached (one this store saw ahead of the member it asks): now.
            Err(e) if is_future(&e) => self.range(start, Some(get)).await?,
            Err(e) => return Err(e.into()),
        };
        let header = resp.header().map_or(0, |h| h.revision());
        let items = resp
            .kvs()
            .iter()
            .map(|kv| self.inner.text_of(resource, kv.value(), kv.mod_revision()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Page {
            items,
            revision: at.filter(|r| *r <= header).unwrap_or(header),
            more: resp.more(),
        })
    }

    /// Creates an object that must not exist yet, as [`Storage::create`].
    async fn create_object(
        &self,
        resource: &str,
        namespace: &str,
        name: &str,
        mut object: Value,
        within: Option<&str>,
    ) -> Result<Result<Arc<Change>, CreateRefused>, StoreError> {
        self.check_open()?;
        let key = self.key(resource, namespace, name);
        let body = self.inner.encode(resource, &object)?;
        let mut compares = vec![Compare::create_revision(key.clone(), CompareOp::Equal, 0)];
        if let Some(ns) = within {
            compares.push(Compare::create_revision(
                self.key("namespaces", "", ns),
                CompareOp::Greater,
                0,
            ));
        }
        let txn = Txn::new()
            .when(compares)
            .and_then(vec![TxnOp::put(key.clone(), body, None)])
            .or_else(vec![TxnOp::get(
                key,
                Some(GetOptions::new().with_keys_only()),
            )]);
        let resp = self.txn(txn).await?;
        if !resp.succeeded() {
            let exists = resp.op_responses().iter().any(|r| match r {
                TxnOpResponse::Get(g) => !g.kvs().is_empty(),
                _ => false,
            });
            return Ok(Err(if exists {
                CreateRefused::Exists
            } else {
                CreateRefused::NoNamespace
            }));
        }
        let rev = resp.header().map_or(0, |h| h.revision());
        self.saw(rev);
        set_resource_version(&mut object, rev);
        Ok(Ok(Arc::new(Change {
            rev,
            resource: Arc::from(resource),
            namespace: namespace.to_string(),
            name: name.to_string(),
            kind: EventType::Added,
            object: Arc::new(object),
            previous: None,
        })))
    }

    /// A read-decide-write of one object, as [`Storage::update`]: the write commits only if the object is
    /// still as read; otherwise `decide` runs again with the object as it is now (kube's
    /// `GuaranteedUpdate`).
    async fn update_object(
        &self,
        resource: &str,
        namespace: &str,
        name: &str,
        preconditions: &Preconditions,
        decide: &mut Decide<'_>,
    ) -> Result<Updated, StoreError> {
        self.check_open()?;
        let key = self.key(resource, namespace, name);
        let mut current = self.read(resource, &key).await?;
        loop {
            if let Some((object, _, _)) = &current
                && !preconditions.hold(object)
            {
                return Ok(Err(UpdateRefused::Preconditions));
            }
            let previous = current.as_ref().map(|(o, _, _)| o.clone());
            let stale = current.as_ref().is_some_and(|(_, _, s)| *s);
            let (kind, object) = match decide(previous.clone()) {
                // As kube-apiserver: an unchanged update of an object stored under an older key or
                // provider writes it again, re-encrypted.
                Mutation::Keep if stale => match &previous {
                    Some(object) => (EventType::Modified, object.clone()),
                    None => return Ok(Ok(None)),
                },
                Mutation::Keep => return Ok(Ok(None)),
                Mutation::Delete => match &previous {
                    None => return Ok(Ok(None)),
                    Some(object) => (EventType::Deleted, object.clone()),
                },
                Mutation::Put(object) if previous.is_some() => (EventType::Modified, object),
                Mutation::Put(object) => (EventType::Added, object),
            };
            let compare = match &current {
                Some((_, mod_revision, _)) => {
                    Compare::mod_revision(key.clone(), CompareOp::Equal, *mod_revision)
                }
                None => Compare::create_revision(key.clone(), CompareOp::Equal, 0),
            };
            let write = if kind == EventType::Deleted {
                TxnOp::delete(key.clone(), None)
            } else {
                TxnOp::put(key.clone(), self.inner.encode(resource, &object)?, None)
            };
            let txn = Txn::new()
                .when(vec![compare])
                .and_then(vec![write])
                .or_else(vec![TxnOp::get(key.clone(), None)]);
            let resp = self.txn(txn).await?;
            if !resp.succeeded() {
                // Someone wrote it meanwhile: decide again on what the transaction read.
                current = resp
                    .op_responses()
                    .into_iter()
                    .find_map(|r| match r {
                        TxnOpResponse::Get(g) => Some(g),
                        _ => None,
                    })
                    .and_then(|g| {
                        g.kvs()
                            .first()
                            .map(|kv| self.inner.current_of(resource, kv))
                    })
                    .transpose()?;
                continue;
            }
            let rev = resp.header().map_or(0, |h| h.revision());
            self.saw(rev);
            let mut object = object;
            set_resource_version(&mut object, rev);
            return Ok(Ok(Some(Arc::new(Change {
                rev,
                resource: Arc::from(resource),
                namespace: namespace.to_string(),
                name: name.to_string(),
                kind,
                object: Arc::new(object),
                previous: previous.map(Arc::new),
            }))));
        }
    }

    /// Many read-decide-writes: each object's writes in order (an item sees what the earlier items of the
    /// same object left), different objects concurrently, each write a transaction of its own.
    ///
    /// Not one transaction: etcd gives every key a transaction writes the same revision, and an object's
    /// resourceVersion is its revision — two objects sharing one would make a watch resumed from it skip
    /// the other (kube never writes two objects in one transaction either); etcd also caps a transaction
    /// at 128 operations (`--max-txn-ops`) and refuses one naming a key twice. A failed item fails the
    /// call, after the others may have committed.
    async fn update_many(
        &self,
        items: Vec<BatchItem>,
    ) -> Result<Vec<Option<Arc<Change>>>, StoreError> {
        /// Writes in flight at once.
        const IN_FLIGHT: usize = 64;
        self.check_open()?;
        let total = items.len();
        // Items grouped by object, in the batch's order.
        let mut groups: Vec<Vec<(usize, BatchItem)>> = Vec::new();
        let mut by_key: std::collections::HashMap<(String, String, String), usize> =
            std::collections::HashMap::new();
        for (i, item) in items.into_iter().enumerate() {
            let key = (
                item.resource.clone(),
                item.namespace.clone(),
                item.name.clone(),
            );
            let group = *by_key.entry(key).or_insert_with(|| {
                groups.push(Vec::new());
                groups.len() - 1
            });
            groups[group].push((i, item));
        }
        let done: Vec<Vec<(usize, Option<Arc<Change>>)>> = futures::stream::iter(groups)
            .map(|group| async move {
                let mut out = Vec::with_capacity(group.len());
                for (i, mut item) in group {
                    let change = self
                        .update_object(
                            &item.resource,
                            &item.namespace,
                            &item.name,
                            &Preconditions::default(),
                            &mut *item.decide,
                        )
                        .await?
                        .unwrap_or(None);
                    out.push((i, change));
                }
                Ok::<_, StoreError>(out)
            })
            .buffer_unordered(IN_FLIGHT)
            .try_collect()
            .await?;
        let mut changes = vec![None; total];
        for (i, change) in done.into_iter().flatten() {
            changes[i] = change;
        }
        Ok(changes)
    }

    /// Stops the shared watch and the compactor; later writes fail with [`StoreError::Closed`].
    pub async fn close(&self) {
        self.inner.closed.cancel();
        let tasks =
            std::mem::take(&mut *self.inner.tasks.lock().unwrap_or_else(|e| e.into_inner()));
        for task in tasks {
            let _ = task.await;
        }
        self.inner.hub.end(false);
    }
}

impl Inner {
    /// A range read on the active member.
    async fn range(
        &self,
        key: impl Into<Vec<u8>>,
        options: Option<GetOptions>,
    ) -> Result<etcd_client::GetResponse, etcd_client::Error> {
        let key = key.into();
        self.endpoints
            .call(|mut c| {
                let (key, options) = (key.clone(), options.clone());
                async move { c.get(key, options).await }
            })
            .await
    }

    fn saw(&self, rev: i64) {
        self.revision.fetch_max(rev, Ordering::SeqCst);
    }

    fn key(&self, resource: &str, namespace: &str, name: &str) -> String {
        if namespace.is_empty() {
            format!("{}{resource}/{name}", self.root)
        } else {
            format!("{}{resource}/{namespace}/{name}", self.root)
        }
    }

    /// (resource, namespace, name) of a key under the prefix.
    fn parse_key<'k>(&self, key: &'k [u8]) -> Option<(&'k str, &'k str, &'k str)> {
        let rest = std::str::from_utf8(key.strip_prefix(self.root.as_bytes())?).ok()?;
        let mut parts = rest.split('/');
        let (resource, first) = (parts.next()?, parts.next()?);
        match (parts.next(), parts.next()) {
            (None, _) => Some((resource, "", first)),
            (Some(name), None) => Some((resource, first, name)),
            _ => None,
        }
    }

    /// The stored form of an object: JSON with `metadata` first and no resourceVersion, sealed when the
    /// resource is encrypted.
    fn encode(&self, resource: &str, object: &Value) -> Result<Vec<u8>, StoreError> {
        let json = encode_json(object)?;
        Ok(match self.encryption.sealer(resource) {
            Some(sealer) => sealer.seal(&json),
            None => json,
        })
    }

    /// A stored value as plain JSON bytes.
    fn open<'a>(
        &self,
        resource: &str,
        stored: &'a [u8],
    ) -> Result<std::borrow::Cow<'a, [u8]>, StoreError> {
        self.encryption
            .open(resource, stored)
            .map_err(|e| StoreError::Unreadable(format!("{resource}: {e}")))
    }

    /// A stored value as JSON text with its resourceVersion.
    fn text_of(&self, resource: &str, stored: &[u8], rev: i64) -> Result<String, StoreError> {
        with_resource_version(&self.open(resource, stored)?, rev)
    }

    /// A stored value as an object with its resourceVersion.
    fn value_of(&self, resource: &str, stored: &[u8], rev: i64) -> Result<Value, StoreError> {
        let mut object: Value = serde_json::from_slice(&self.open(resource, stored)?)?;
        set_resource_version(&mut object, rev);
        Ok(object)
    }

    /// A key's current value as an update reads it: the object, its mod_revision, whether stale.
    fn current_of(
        &self,
        resource: &str,
        kv: &etcd_client::KeyValue,
    ) -> Result<(Value, i64, bool), StoreError> {
        Ok((
            self.value_of(resource, kv.value(), kv.mod_revision())?,
            kv.mod_revision(),
            self.encryption.is_stale(resource, kv.value()),
        ))
    }
}

/// The first key after every key starting with `prefix` (etcd's `GetPrefixRangeEnd`).
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // Every byte 0xff: to the end of the keyspace.
    vec![0]
}

fn set_resource_version(obj: &mut Value, rev: i64) {
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert("resourceVersion".into(), Value::String(rev.to_string()));
    }
}

/// What every value begins with when `metadata` is an object ([`encode_json`] writes it first).
const METADATA_FIRST: &[u8] = b"{\"metadata\":{";

/// An object as JSON with `metadata` first and without `metadata.resourceVersion` (the revision says it),
/// so that a read can put the resourceVersion back without parsing the document
/// ([`with_resource_version`]).
fn encode_json(object: &Value) -> Result<Vec<u8>, StoreError> {
    let Some(map) = object.as_object() else {
        return Ok(serde_json::to_vec(object)?);
    };
    let mut out = Vec::with_capacity(512);
    out.push(b'{');
    let mut first = true;
    let mut field =
        |out: &mut Vec<u8>, key: &str, value: &dyn Fn(&mut Vec<u8>) -> Result<(), StoreError>| {
            if !std::mem::take(&mut first) {
                out.push(b',');
            }
            serde_json::to_writer(&mut *out, key)?;
            out.push(b':');
            value(out)
        };
    if let Some(meta) = map.get("metadata") {
        field(&mut out, "metadata", &|out| {
            match meta.as_object() {
                Some(meta) => {
                    out.push(b'{');
                    let mut first = true;
                    for (k, v) in meta {
                        if k == "resourceVersion" {
                            continue;
                        }
                        if !std::mem::take(&mut first) {
                            out.push(b',');
                        }
                        serde_json::to_writer(&mut *out, k)?;
                        out.push(b':');
                        serde_json::to_writer(&mut *out, v)?;
                    }
                    out.push(b'}');
                }
                None => serde_json::to_writer(&mut *out, meta)?,
            }
            Ok(())
        })?;
    }
    for (k, v) in map {
        if k == "metadata" {
            continue;
        }
        field(&mut out, k, &|out| Ok(serde_json::to_writer(&mut *out, v)?))?;
    }
    out.push(b'}');
    Ok(out)
}

/// Stored JSON with `"resourceVersion": "<rev>"` in its metadata: spliced in when the document starts with
/// its metadata (as [`encode_json`] writes it), parsed and written again otherwise.
fn with_resource_version(json: &[u8], rev: i64) -> Result<String, StoreError> {
    if let Some(rest) = json.strip_prefix(METADATA_FIRST) {
        let rest = std::str::from_utf8(rest)
            .map_err(|e| StoreError::Unreadable(format!("not UTF-8: {e}")))?;
        let comma = if rest.starts_with('}') { "" } else { "," };
        return Ok(format!(
            "{{\"metadata\":{{\"resourceVersion\":\"{rev}\"{comma}{rest}"
        ));
    }
    let mut object: Value = serde_json::from_slice(json)?;
    set_resource_version(&mut object, rev);
    Ok(serde_json::to_string(&object)?)
}

impl Storage for EtcdStore {
    fn revision(&self) -> i64 {
        self.inner.revision.load(Ordering::SeqCst)
    }

    fn get<'a>(
        &'a self,
        resource: &'a str,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<Value>, StoreError>> {
        Box::pin(async move {
            let key = self.key(resource, namespace, name);
            Ok(self
                .read(resource, &key)
                .await?
                .map(|(object, _, _)| object))
        })
    }

    fn list<'a>(
        &'a self,
        resource: &'a str,
        options: ListOptions,
    ) -> BoxFuture<'a, Result<Page, StoreError>> {
        Box::pin(self.list_page(resource, options))
    }

    fn create<'a>(
        &'a self,
        resource: &'a str,
        namespace: &'a str,
        name: &'a str,
        object: Value,
        within: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Result<Arc<Change>, CreateRefused>, StoreError>> {
        Box::pin(self.create_object(resource, namespace, name, object, within))
    }

    fn update<'a>(
        &'a self,
        resource: &'a str,
        namespace: &'a str,
        name: &'a str,
        preconditions: &'a Preconditions,
        decide: &'a mut Decide<'a>,
    ) -> BoxFuture<'a, Result<Updated, StoreError>> {
        Box::pin(self.update_object(resource, namespace, name, preconditions, decide))
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
        Box::pin(watch::watch(self, resource, since))
    }

    /// Compaction runs on its own, every [`COMPACTION_INTERVAL`] (kube's compactor): nothing to do here.
    fn compact(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async { Ok(()) })
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(EtcdStore::close(self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn values_keep_metadata_first_and_get_their_revision_back_without_a_parse() {
        let object = json!({
            "kind": "Pod",
            "apiVersion": "v1",
            "metadata": {"name": "a", "namespace": "n", "resourceVersion": "7", "uid": "u"},
            "spec": {"x": [1, 2]},
        });
        let stored = encode_json(&object).unwrap();
        assert!(stored.starts_with(METADATA_FIRST));
        assert!(!String::from_utf8_lossy(&stored).contains("resourceVersion"));
        let text = with_resource_version(&stored, 42).unwrap();
        let back: Value = serde_json::from_str(&text).unwrap();
        let mut expected = object.clone();
        expected["metadata"]["resourceVersion"] = json!("42");
        assert_eq!(back, expected);
        // Empty metadata, and a document written elsewhere (metadata not first).
        let empty = encode_json(&json!({"metadata": {"resourceVersion": "1"}, "v": 1})).unwrap();
        let back: Value = serde_json::from_str(&with_resource_version(&empty, 3).unwrap()).unwrap();
        assert_eq!(back, json!({"metadata": {"resourceVersion": "3"}, "v": 1}));
        let foreign = br#"{"kind":"Pod","metadata":{"name":"a"}}"#;
        let back: Value =
            serde_json::from_str(&with_resource_version(foreign, 5).unwrap()).unwrap();
        assert_eq!(back["metadata"]["resourceVersion"], "5");
    }

    #[test]
    fn prefix_ends_are_the_next_key() {
        assert_eq!(prefix_end(b"/registry/pods/"), b"/registry/pods0".to_vec());
        assert_eq!(prefix_end(b"a\xff"), b"b".to_vec());
    }
}
