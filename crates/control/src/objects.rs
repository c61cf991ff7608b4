//! The resource layer between HTTP (and the in-process controllers) and the store: object metadata
//! (uid, timestamps, generation), admission, optimistic concurrency, status subresources, graceful deletion
//! and the per-kind hooks (cluster IPs for Services).

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;

use herd_api::pod_security;
use herd_api::resources::{self, ResourceInfo};
use herd_api::strategy::{CreateHook, Deletion};
use herd_api::{FieldSelector, LabelSelector, admit, admit_update};
use ipnet::IpNet;
use serde_json::{Value, json};

use crate::controllers::rootca::ROOT_CA_CONFIG_MAP;
use crate::error::ApiError;
use crate::node_ports;
use crate::service_ips;
use crate::storage::{
    BatchItem, CreateRefused, ListOptions, Mutation, Page, Preconditions, Storage, UpdateRefused,
    decode_parallel,
};
/// What the storage hands out: committed changes and their kinds, and its errors (a watch from a revision
/// compacted away is [`StoreError::Expired`]).
pub use crate::storage::{Change, ChangeStream, EventType, StoreError};
use crate::store::Store;
pub use crate::store::StoreSync;

/// Cluster-wide settings the resource layer needs.
#[derive(Debug, Clone)]
pub struct Settings {
    pub service_cidr: IpNet,
    /// `--service-node-port-range`: where Services' NodePorts come from.
    pub service_node_port_range: std::ops::RangeInclusive<u16>,
    /// Pod Security admission's defaults and exemptions (`--admission-control-config-file`; herd's default
    /// enforces `baseline`).
    pub pod_security: pod_security::AdmissionConfig,
}

/// Kinds whose `status` is only written through the `/status` subresource.
fn has_status_subresource(res: &ResourceInfo) -> bool {
    res.has_subresource("status")
}

/// A page of a list: its objects, the revision it is of, and the token of the next page.
#[derive(Debug, Clone)]
pub struct ListPage {
    pub items: Vec<Value>,
    pub revision: i64,
    pub continue_token: Option<String>,
}

/// What a continue token carries (as kube's: the list's revision and the key to start after).
#[derive(serde::Serialize, serde::Deserialize)]
struct ContinueToken {
    rv: i64,
    start: (String, String),
}

impl ContinueToken {
    fn encode(&self) -> String {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(serde_json::to_vec(self).unwrap_or_default())
    }

    fn decode(token: &str) -> Result<Self, ApiError> {
        use base64::Engine as _;
        let bad = || ApiError::BadRequest("continue key is not valid".into());
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(token)
            .map_err(|_| bad())?;
        serde_json::from_slice(&bytes).map_err(|_| bad())
    }
}

#[derive(Debug, Clone, Default)]
pub struct DeleteOptions {
    pub grace_period_seconds: Option<i64>,
    pub precondition_uid: Option<String>,
    pub precondition_rv: Option<String>,
    pub propagation: Propagation,
    pub dry_run: bool,
}

/// `DeleteOptions.propagationPolicy`: what happens to the objects this one owns.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Propagation {
    /// Delete the owner now; the garbage collector deletes dependents afterwards.
    #[default]
    Background,
    /// Keep the owner (with a `foregroundDeletion` finalizer) until its blocking dependents are gone.
    Foreground,
    /// Delete the owner and leave the dependents, without their owner reference.
    Orphan,
}

/// The finalizer that holds an owner during foreground deletion.
pub const FOREGROUND_FINALIZER: &str = "foregroundDeletion";

/// A patch document by content type.
#[derive(Debug, Clone)]
pub enum Patch {
    /// `application/merge-patch+json` (RFC 7386).
    Merge(Value),
    /// `application/json-patch+json` (RFC 6902).
    Json(Value),
    /// `application/strategic-merge-patch+json`, with the Kubernetes list merge keys.
    Strategic(Value),
    /// `application/apply-patch+yaml`: server-side apply by `manager`.
    Apply {
        config: Value,
        manager: String,
        force: bool,
    },
}

#[derive(Clone)]
pub struct Objects {
    /// The storage backend: the only holder of it.
    store: Arc<dyn Storage>,
    settings: Arc<Settings>,
    /// The field manager this handle's writes are recorded for in `metadata.managedFields` (kube's
    /// `fieldManager`); `None` records nothing, as kube's pod binding does not.
    manager: Option<Arc<str>>,
    /// The requesting user's check of what it writes, after admission ([`Objects::guarded`]).
    guard: Option<Arc<dyn WriteGuard>>,
}

/// A check of a write by the requesting user beyond admission — kube's RBAC escalation checks, which kube's
/// RBAC storage makes with the user of the request: the server attaches one to a request's handle
/// ([`Objects::guarded`]); controllers' handles have none.
pub trait WriteGuard: Send + Sync {
    /// `Err` refuses writing `new` of `res` (`old`: the stored object on update, `None` on create).
    ///
    /// # Errors
    /// The refusal as the client gets it.
    fn check(&self, res: &ResourceInfo, new: &Value, old: Option<&Value>) -> Result<(), ApiError>;
}

/// The field manager of kube-apiserver's own writes (the default namespaces).
pub const KUBE_APISERVER: &str = "kube-apiserver";
/// The field manager of the controllers and the node lifecycle controller.
pub const KUBE_CONTROLLER_MANAGER: &str = "kube-controller-manager";
/// The field manager of the scheduler's status writes.
pub const KUBE_SCHEDULER: &str = "kube-scheduler";

/// The subresource a write goes through: its managedFields entry is recorded for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Subresource {
    Main,
    Status,
    Scale,
}

impl Subresource {
    fn name(self) -> Option<&'static str> {
        match self {
            Self::Main => None,
            Self::Status => Some("status"),
            Self::Scale => Some("scale"),
        }
    }
}

pub fn now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

fn ns_key(res: &ResourceInfo, ns: Option<&str>) -> String {
    if res.namespaced {
        ns.unwrap_or("default").to_string()
    } else {
        String::new()
    }
}

fn meta(obj: &Value, field: &str) -> Option<String> {
    obj.get("metadata")?
        .get(field)?
        .as_str()
        .map(str::to_string)
}

fn namespace_not_found(ns: &str) -> ApiError {
    match resources::by_path("", "v1", "namespaces") {
        Some(ns_res) => ApiError::not_found(ns_res, ns),
        None => ApiError::Internal("no namespaces in the resource table".into()),
    }
}

/// A core (`v1`) resource of the table, by its plural.
pub(crate) fn core(plural: &str) -> &'static ResourceInfo {
    herd_api::resources::by_path("", "v1", plural).expect("core kinds are in the resource table")
}

/// How many times a create whose generated name is taken generates another (kube-apiserver's 7).
const GENERATE_NAME_RETRIES: usize = 7;

/// Gives an object with `metadata.generateName` a fresh generated name; returns it.
fn regenerate_name(obj: &mut Value) -> String {
    let prefix = obj
        .pointer("/metadata/generateName")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let name = format!("{prefix}{}", random_suffix());
    obj["metadata"]["name"] = json!(name);
    name
}

#[cfg(test)]
thread_local! {
    /// Suffixes a test makes `random_suffix` hand out first (on this thread).
    static SUFFIXES: std::cell::RefCell<Vec<String>> = const { std::cell::RefCell::new(Vec::new()) };
}

fn random_suffix() -> String {
    use rand::Rng;
    #[cfg(test)]
    if let Some(suffix) = SUFFIXES.with(|s| s.borrow_mut().pop()) {
        return suffix;
    }
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut rng = rand::rng();
    (0..5)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

impl Objects {
    /// Opens the store at `path` (creating it if needed) with the durability `sync` asks for, and the
    /// resource layer over it: the one door to the stored objects.
    ///
    /// # Errors
    /// When the database cannot be opened or migrated.
    pub async fn open(
        path: &std::path::Path,
        sync: StoreSync,
        settings: Settings,
    ) -> Result<Self, StoreError> {
        Ok(Self::new(
            Arc::new(Store::open_with(path, sync).await?),
            settings,
        ))
    }

    /// [`Objects::open`] with resources encrypted at rest as `encryption` says.
    ///
    /// # Errors
    /// When the database cannot be opened or migrated.
    pub async fn open_encrypted(
        path: &std::path::Path,
        sync: StoreSync,
        settings: Settings,
        encryption: Arc<crate::encryption::Encryption>,
    ) -> Result<Self, StoreError> {
        Ok(Self::new(
            Arc::new(Store::open_encrypted(path, sync, encryption).await?),
            settings,
        ))
    }

    /// The resource layer over an opened storage backend (the etcd store).
    pub(crate) fn over(store: Arc<dyn Storage>, settings: Settings) -> Self {
        Self::new(store, settings)
    }

    /// Closes the store: later writes fail.
    pub async fn close(&self) {
        self.store.close().await;
    }

    fn new(store: Arc<dyn Storage>, settings: Settings) -> Self {
        Self {
            store,
            settings: Arc::new(settings),
            manager: Some(KUBE_APISERVER.into()),
            guard: None,
        }
    }

    /// The same resource layer, checking each write of this handle with `guard` after admission.
    #[must_use]
    pub fn guarded(&self, guard: Arc<dyn WriteGuard>) -> Self {
        Self {
            guard: Some(guard),
            ..self.clone()
        }
    }

    /// The handle's guard's verdict on writing `new` (`old` on update).
    fn check_guard(
        &self,
        res: &ResourceInfo,
        new: &Value,
        old: Option<&Value>,
    ) -> Result<(), ApiError> {
        self.guard
            .as_ref()
            .map_or(Ok(()), |guard| guard.check(res, new, old))
    }

    /// The same resource layer, recording its writes for `manager` (kube's field manager: the request's
    /// `fieldManager`, else its user agent up to the first `/`; `kube-controller-manager` for the
    /// controllers). An empty name is kube's `unknown`.
    pub fn as_manager(&self, manager: &str) -> Self {
        Self {
            manager: Some(manager.into()),
            ..self.clone()
        }
    }

    /// The same resource layer, recording no managedFields: pod bindings, which kube-apiserver writes
    /// straight to storage.
    pub fn untracked(&self) -> Self {
        Self {
            manager: None,
            ..self.clone()
        }
    }

    /// The field manager writes through this handle are recorded for.
    pub fn manager(&self) -> Option<&str> {
        self.manager.as_deref()
    }

    /// Records an Update of `old` (`None`: a create) to `new` through `sub` by this handle's manager.
    fn track(&self, old: Option<&Value>, new: Value, sub: Subresource) -> Value {
        match &self.manager {
            Some(manager) => herd_api::patch::record_update(old, &new, manager, sub.name(), &now()),
            None => new,
        }
    }

    /// Records an in-place edit: what changed outside `status` as an Update of the object, what changed
    /// in `status` as one of its `status` subresource (as kube's controllers write them: Update, then
    /// UpdateStatus).
    fn track_edit(&self, res: &ResourceInfo, old: &Value, new: Value) -> Value {
        if self.manager.is_none() {
            return new;
        }
        let status_changed = old.get("status") != new.get("status");
        let main_changed = !same_but_status(old, &new);
        let mut out = if main_changed {
            self.track(Some(old), new, Subresource::Main)
        } else {
            new
        };
        if status_changed && has_status_subresource(res) {
            let mut before = out.clone();
            if let Some(map) = before.as_object_mut() {
                match old.get("status") {
                    Some(s) => map.insert("status".into(), s.clone()),
                    None => map.remove("status"),
                };
            }
            out = self.track(Some(&before), out, Subresource::Status);
        }
        out
    }

    /// The revision of the last committed write.
    pub fn revision(&self) -> i64 {
        self.store.revision()
    }

    /// An object as stored, if it exists: the controllers' read (the API's [`Objects::get`] answers
    /// NotFound instead). `ns` is ignored for cluster-scoped kinds.
    pub async fn find(
        &self,
        res: &ResourceInfo,
        ns: &str,
        name: &str,
    ) -> Result<Option<Value>, ApiError> {
        Ok(self
            .store
            .get(&res.key(), &ns_key(res, Some(ns)), name)
            .await?)
    }

    /// Every object of a resource (in one namespace, or all, with `None`), and the revision the list is
    /// consistent with.
    pub async fn list_all(
        &self,
        res: &ResourceInfo,
        ns: Option<&str>,
    ) -> Result<(Vec<Value>, i64), ApiError> {
        self.list_typed(res, ns).await
    }

    /// [`Objects::list_all`] decoded straight into `T` (the scheduler's typed snapshot).
    pub async fn list_typed<T: serde::de::DeserializeOwned + Send + 'static>(
        &self,
        res: &ResourceInfo,
        ns: Option<&str>,
    ) -> Result<(Vec<T>, i64), ApiError> {
        let page = self.read_all(res, ns).await?;
        Ok((decode_parallel(page.items).await?, page.revision))
    }

    /// Every stored object of a resource, as JSON text, at the latest revision.
    async fn read_all(&self, res: &ResourceInfo, ns: Option<&str>) -> Result<Page, StoreError> {
        let options = ListOptions {
            namespace: ns.filter(|_| res.namespaced).map(str::to_string),
            ..ListOptions::default()
        };
        self.store.list(&res.key(), options).await
    }

    /// A read-modify-write of one object: `decide` returns the mutation and what to answer, or an error
    /// (nothing is written then). It may run more than once, each time with the latest object, on a backend
    /// that retries. Returns the answer and the committed change, if any.
    async fn mutate<T: Send>(
        &self,
        res: &ResourceInfo,
        ns: &str,
        name: &str,
        preconditions: &Preconditions,
        mut decide: impl FnMut(Option<Value>) -> Result<(Mutation, T), ApiError> + Send,
    ) -> Result<(T, Option<Arc<Change>>), ApiError> {
        let mut out: Option<Result<T, ApiError>> = None;
        let mut step = |current: Option<Value>| match decide(current) {
            Ok((mutation, answer)) => {
                out = Some(Ok(answer));
                mutation
            }
            Err(e) => {
                out = Some(Err(e));
                Mutation::Keep
            }
        };
        let key = res.key();
        let written = self
            .store
            .update(&key, ns, name, preconditions, &mut step)
            .await?;
        let change = match written {
            Ok(change) => change,
            Err(UpdateRefused::Preconditions) => return Err(ApiError::conflict(res, name)),
        };
        match out {
            Some(Ok(answer)) => Ok((answer, change)),
            Some(Err(e)) => Err(e),
            // Without its object the write never ran `decide`: nothing there.
            None => Err(ApiError::not_found(res, name)),
        }
    }

    /// The committed changes after revision `since`, of `res` (or of every resource), replayed from the
    /// change log and then live.
    ///
    /// # Errors
    /// [`StoreError::Expired`] when `since` was compacted away.
    pub async fn watch(
        &self,
        res: Option<&ResourceInfo>,
        since: i64,
    ) -> Result<ChangeStream, StoreError> {
        let key = res.map(ResourceInfo::key);
        self.store.watch(key.as_deref(), since).await
    }

    /// Drops the change log's oldest entries (watches from before them get 410 Gone).
    pub async fn compact(&self) -> Result<(), ApiError> {
        Ok(self.store.compact().await?)
    }

    /// Takes `finalizer` off an object being deleted; the object goes once no finalizer is left, as
    /// kube-apiserver deletes an object whose last finalizer is removed.
    pub async fn remove_finalizer(
        &self,
        res: &ResourceInfo,
        ns: &str,
        name: &str,
        finalizer: &str,
    ) -> Result<(), ApiError> {
        let ns = ns_key(res, Some(ns));
        self.mutate(res, &ns, name, &Preconditions::default(), |current| {
            let Some(mut obj) = current else {
                return Ok((Mutation::Keep, ()));
            };
            let before = obj.clone();
            if let Some(f) = obj
                .pointer_mut("/metadata/finalizers")
                .and_then(Value::as_array_mut)
            {
                f.retain(|f| f != finalizer);
                if !f.is_empty() {
                    return Ok((Mutation::Put(self.edited(res, &before, obj)?), ()));
                }
            }
            Ok((Mutation::Delete, ()))
        })
        .await?;
        Ok(())
    }

    /// Removes an object whose deletion is complete (a namespace emptied by its controller: kube's
    /// namespace finalization). An object not being deleted is left alone.
    pub async fn finish_deletion(
        &self,
        res: &ResourceInfo,
        ns: &str,
        name: &str,
    ) -> Result<(), ApiError> {
        let ns = ns_key(res, Some(ns));
        self.mutate(
            res,
            &ns,
            name,
            &Preconditions::default(),
            |current| match current {
                Some(obj) if obj.pointer("/metadata/deletionTimestamp").is_some() => {
                    Ok((Mutation::Delete, ()))
                }
                _ => Ok((Mutation::Keep, ())),
            },
        )
        .await?;
        Ok(())
    }

    pub async fn get(
        &self,
        res: &ResourceInfo,
        ns: Option<&str>,
        name: &str,
    ) -> Result<Value, ApiError> {
        self.store
            .get(&res.key(), &ns_key(res, ns), name)
            .await?
            .ok_or_else(|| ApiError::not_found(res, name))
    }

    /// Lists a resource in one namespace (or all, with `None`), filtered by selectors.
    pub async fn list(
        &self,
        res: &ResourceInfo,
        ns: Option<&str>,
        labels: &LabelSelector,
        fields: &FieldSelector,
    ) -> Result<(Vec<Value>, i64), ApiError> {
        let (items, rev) = self.list_all(res, ns).await?;
        let items = items
            .into_iter()
            .filter(|o| labels.matches_object(o) && fields.matches(o))
            .collect();
        Ok((items, rev))
    }

    /// One page of a list as the API serves it (`limit` and `continue`): up to `limit` objects matching the
    /// selectors, read from the storage at the revision of the first page, so every page of one list is
    /// of the same snapshot (kube-apiserver's paginated lists). A continue token names that revision and
    /// the last key served; one whose revision was compacted away is 410 Gone.
    pub async fn list_page(
        &self,
        res: &ResourceInfo,
        ns: Option<&str>,
        selected: (&LabelSelector, &FieldSelector),
        limit: Option<usize>,
        continue_token: Option<&str>,
    ) -> Result<ListPage, ApiError> {
        let (labels, fields) = selected;
        let (mut revision, mut after) = match continue_token {
            Some(token) => {
                let token = ContinueToken::decode(token)?;
                (Some(token.rv), Some(token.start))
            }
            None => (None, None),
        };
        let mut items = Vec::new();
        loop {
            let options = ListOptions {
                namespace: ns.filter(|_| res.namespaced).map(str::to_string),
                revision,
                after: after.clone(),
                // Reads go in chunks of the limit (at least a few hundred) until enough objects match.
                limit: limit.map(|l| l.max(256)),
            };
            let page = self.store.list(&res.key(), options).await.map_err(|e| match e {
                StoreError::Expired { .. } => ApiError::Gone(
                    "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.".into(),
                ),
                e => e.into(),
            })?;
            revision = Some(page.revision);
            let decoded: Vec<Value> = decode_parallel(page.items).await?;
            let read = decoded.len();
            for (i, obj) in decoded.into_iter().enumerate() {
                after = Some((
                    meta(&obj, "namespace").unwrap_or_default(),
                    meta(&obj, "name").unwrap_or_default(),
                ));
                if labels.matches_object(&obj) && fields.matches(&obj) {
                    items.push(obj);
                }
                if limit.is_some_and(|l| items.len() >= l) {
                    let more = page.more || i + 1 < read;
                    let continue_token = more.then(|| after.take()).flatten().map(|start| {
                        ContinueToken {
                            rv: page.revision,
                            start,
                        }
                        .encode()
                    });
                    return Ok(ListPage {
                        items,
                        revision: page.revision,
                        continue_token,
                    });
                }
            }
            if !page.more {
                return Ok(ListPage {
                    items,
                    revision: page.revision,
                    continue_token: None,
                });
            }
        }
    }

    /// Creates an object. `ns` is the namespace of the request path (ignored for cluster-scoped kinds).
    pub async fn create(
        &self,
        res: &'static ResourceInfo,
        ns: Option<&str>,
        obj: Value,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        Ok(self.create_as(res, ns, obj, dry_run, true).await?.0)
    }

    /// [`Objects::create`], with the warnings admission has for the client (Pod Security's `warn` level:
    /// kube's `Warning` headers).
    pub async fn create_warned(
        &self,
        res: &'static ResourceInfo,
        ns: Option<&str>,
        obj: Value,
        dry_run: bool,
    ) -> Result<(Value, Vec<String>), ApiError> {
        self.create_as(res, ns, obj, dry_run, true).await
    }

    /// [`Objects::create`]; `track` records the create in managedFields (a create by server-side apply
    /// has its entry already).
    async fn create_as(
        &self,
        res: &'static ResourceInfo,
        ns: Option<&str>,
        obj: Value,
        dry_run: bool,
        track: bool,
    ) -> Result<(Value, Vec<String>), ApiError> {
        let (ns, mut name, mut obj, generated) = Self::prepare_create(res, ns, obj)?;
        self.check_guard(res, &obj, None)?;
        if res.strategy.pod_template() == Some("") {
            self.service_account_admission(&ns, &mut obj, &mut Default::default())
                .await?;
        }
        if res.strategy.create_hook() == CreateHook::DefaultStorageClass {
            self.default_storage_class(&mut obj).await?;
        }
        let warnings = match res.strategy.pod_template() {
            Some("") => enforce_pod_security(
                &self.pod_security_policy(&ns).await?,
                &self.settings.pod_security,
                &name,
                &obj,
            )?,
            Some(template) => {
                warn_pod_template(&self.pod_security_policy(&ns).await?, &obj, template)
            }
            None => Vec::new(),
        };
        if track {
            obj = self.track(None, obj, Subresource::Main);
        }
        let allocates = res.strategy.create_hook() == CreateHook::AllocateClusterIp;
        // Other creates check the namespace in the write itself; these answer or allocate before it.
        if dry_run || allocates {
            self.require_namespace(res, &ns).await?;
        }
        if dry_run {
            if allocates {
                self.assign_cluster_ip(&mut obj, &ns, &name, true).await?;
                self.assign_node_ports(&mut obj, &ns, &name, None, true)
                    .await?;
            }
            return match self.store.get(&res.key(), &ns, &name).await? {
                Some(_) => Err(ApiError::already_exists(res, &name)),
                None => Ok((obj, warnings)),
            };
        }
        // One statement: written only if the name is free and the namespace exists.
        let within = res.namespaced.then_some(ns.as_str());
        let mut retries = 0;
        loop {
            let again = (generated && retries < GENERATE_NAME_RETRIES).then(|| obj.clone());
            // A Service's cluster IP is an IPAddress object created before it (unique across API servers
            // by the store's create-if-absent), released again when the Service is not written.
            let allocated = if allocates {
                self.assign_cluster_ip(&mut obj, &ns, &name, false).await?
            } else {
                None
            };
            let node_ports = if allocates {
                match self
                    .assign_node_ports(&mut obj, &ns, &name, None, false)
                    .await
                {
                    Ok(taken) => taken,
                    Err(e) => {
                        if let Some(ip) = allocated {
                            self.release_cluster_ip(ip, &ns, &name).await;
                        }
                        return Err(e);
                    }
                }
            } else {
                Vec::new()
            };
            let written = self.store.create(&res.key(), &ns, &name, obj, within).await;
            let refused = match written {
                Ok(Ok(change)) => return Ok(((*change.object).clone(), warnings)),
                Ok(Err(refused)) => Ok(refused),
                Err(e) => Err(e),
            };
            if let Some(ip) = allocated {
                self.release_cluster_ip(ip, &ns, &name).await;
            }
            self.release_node_ports(&node_ports, &ns, &name).await;
            match refused? {
                CreateRefused::Exists => match again {
                    // A generated name that is taken is generated again, as kube-apiserver does.
                    Some(mut retry) => {
                        name = regenerate_name(&mut retry);
                        obj = retry;
                        retries += 1;
                    }
                    None => return Err(ApiError::already_exists(res, &name)),
                },
                CreateRefused::NoNamespace => return Err(namespace_not_found(&ns)),
            }
        }
    }

    /// Creates many objects of one kind in one transaction (for the control plane's own bulk writes, such as
    /// the scheduler's Events). Each object is admitted on its own; one that fails admission or already
    /// exists gets its error in its slot and the others are still written. Services go one by one, for
    /// their cluster IPs.
    ///
    /// # Errors
    /// A store error, when nothing was written.
    pub async fn create_many(
        &self,
        res: &'static ResourceInfo,
        objs: Vec<(Option<String>, Value)>,
    ) -> Result<Vec<Result<Value, ApiError>>, ApiError> {
        if res.strategy.create_hook() != CreateHook::None {
            let mut out = Vec::with_capacity(objs.len());
            for (ns, obj) in objs {
                out.push(self.create(res, ns.as_deref(), obj, false).await);
            }
            return Ok(out);
        }
        let mut out: Vec<Result<Value, ApiError>> = Vec::with_capacity(objs.len());
        // (slot in `out`, namespace, name, object, whether the name was generated) of each object to write.
        let mut pending = Vec::new();
        // Each namespace is checked once for the whole batch.
        let mut namespaces: std::collections::HashMap<String, bool> =
            std::collections::HashMap::new();
        // And its Pod Security policy, for kinds it applies to.
        let mut policies: std::collections::HashMap<String, PodSecurityPolicy> =
            std::collections::HashMap::new();
        // And each ServiceAccount its pods run as.
        let mut service_accounts: std::collections::HashMap<
            String,
            std::collections::HashMap<String, Option<Value>>,
        > = std::collections::HashMap::new();
        for (ns, obj) in objs {
            let mut prepared = Self::prepare_create(res, ns.as_deref(), obj)
                .and_then(|p| self.check_guard(res, &p.2, None).map(|()| p));
            if let Ok((ns, _, _, _)) = &prepared {
                let exists = match namespaces.get(ns) {
                    Some(&exists) => exists,
                    None => {
                        let exists = self.require_namespace(res, ns).await.is_ok();
                        namespaces.insert(ns.clone(), exists);
                        exists
                    }
                };
                if !exists {
                    prepared = Err(namespace_not_found(ns));
                }
            }
            if let Ok((ns, _, obj, _)) = &mut prepared
                && res.strategy.pod_template() == Some("")
            {
                let accounts = service_accounts.entry(ns.clone()).or_default();
                self.service_account_admission(ns, obj, accounts).await?;
            }
            if let Ok((ns, name, obj, _)) = &prepared
                && res.strategy.pod_template() == Some("")
            {
                let policy = match policies.get(ns) {
                    Some(policy) => policy.clone(),
                    None => {
                        let policy = self.pod_security_policy(ns).await?;
                        policies.insert(ns.clone(), policy.clone());
                        policy
                    }
                };
                // The controllers' creates have no client to warn.
                if let Err(e) =
                    enforce_pod_security(&policy, &self.settings.pod_security, name, obj)
                {
                    prepared = Err(e);
                }
            }
            match prepared {
                Ok((ns, name, obj, generated)) => {
                    let obj = self.track(None, obj, Subresource::Main);
                    pending.push((out.len(), ns, name, obj, generated));
                    out.push(Ok(Value::Null));
                }
                Err(e) => out.push(Err(e)),
            }
        }
        // A generated name that is taken is generated again (as kube-apiserver does), in another batch.
        for round in 0..=GENERATE_NAME_RETRIES {
            if pending.is_empty() {
                break;
            }
            let items = pending
                .iter()
                .map(|(_, ns, name, obj, _)| {
                    let obj = obj.clone();
                    BatchItem {
                        resource: res.key(),
                        namespace: ns.clone(),
                        name: name.clone(),
                        // An object already there is kept as it is: no change then means AlreadyExists.
                        decide: Box::new(move |current| match current {
                            Some(_) => Mutation::Keep,
                            None => Mutation::Put(obj.clone()),
                        }),
                    }
                })
                .collect();
            let changes = self.store.update_batch(items).await?;
            let mut taken = Vec::new();
            for ((slot, ns, name, mut obj, generated), change) in pending.into_iter().zip(changes) {
                match change {
                    Some(change) => out[slot] = Ok((*change.object).clone()),
                    None if generated && round < GENERATE_NAME_RETRIES => {
                        let name = regenerate_name(&mut obj);
                        taken.push((slot, ns, name, obj, generated));
                    }
                    None => out[slot] = Err(ApiError::already_exists(res, &name)),
                }
            }
            pending = taken;
        }
        Ok(out)
    }

    /// Everything of a create before the write but the namespace check: metadata and admission. Returns the
    /// store namespace, the name, the admitted object and whether the name was generated.
    fn prepare_create(
        res: &'static ResourceInfo,
        ns: Option<&str>,
        mut obj: Value,
    ) -> Result<(String, String, Value, bool), ApiError> {
        let ns = ns_key(res, ns);
        let map = obj
            .as_object_mut()
            .ok_or_else(|| ApiError::BadRequest("the body is not an object".into()))?;
        if res.strategy.resets_status_on_create() {
            map.remove("status");
        }
        let md = map.entry("metadata").or_insert_with(|| json!({}));
        let md = md
            .as_object_mut()
            .ok_or_else(|| ApiError::BadRequest("metadata is not an object".into()))?;
        if res.namespaced {
            match md.get("namespace").and_then(Value::as_str) {
                Some(body_ns) if !body_ns.is_empty() && body_ns != ns => {
                    return Err(ApiError::BadRequest(
                        "the namespace of the provided object does not match the namespace sent on the request".into(),
                    ));
                }
                _ => {
                    md.insert("namespace".into(), json!(ns));
                }
            }
        } else {
            md.remove("namespace");
        }
        let name_missing = md
            .get("name")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty);
        let generated = name_missing && md.get("generateName").is_some_and(Value::is_string);
        if generated && let Some(prefix) = md.get("generateName").and_then(Value::as_str) {
            let name = format!("{prefix}{}", random_suffix());
            md.insert("name".into(), json!(name));
        }
        for field in [
            "resourceVersion",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
        ] {
            md.remove(field);
        }
        md.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
        md.insert("creationTimestamp".into(), json!(now()));
        md.insert("generation".into(), json!(1));
        let obj = admit(res, obj).map_err(|e| ApiError::admit(res, e))?;
        let name = meta(&obj, "name").unwrap_or_default();
        Ok((ns, name, obj, generated))
    }

    /// The Pod Security policy of namespace `ns` from its `pod-security.kubernetes.io/*` labels, over the
    /// configured defaults (herd's: baseline; kube-apiserver's: privileged); an exempt namespace is
    /// privileged whatever its labels.
    async fn pod_security_policy(&self, ns: &str) -> Result<PodSecurityPolicy, ApiError> {
        let config = &self.settings.pod_security;
        if config.exempt_namespaces.contains(ns) {
            return Ok((pod_security::Policy::default(), Vec::new()));
        }
        let namespace = self.store.get("namespaces", "", ns).await?;
        let labels = namespace
            .as_ref()
            .and_then(|n| n.pointer("/metadata/labels"))
            .and_then(|l| {
                serde_json::from_value::<std::collections::BTreeMap<String, String>>(l.clone()).ok()
            });
        Ok(pod_security::Policy::from_labels(
            labels.as_ref(),
            &config.defaults,
        ))
    }

    /// kube's DefaultStorageClass admission plugin: a claim that does not name a class (`storageClassName`
    /// absent; an empty one asks for no class) gets the default StorageClass, if there is one.
    async fn default_storage_class(&self, claim: &mut Value) -> Result<(), ApiError> {
        if claim
            .pointer("/spec/storageClassName")
            .is_some_and(|c| !c.is_null())
        {
            return Ok(());
        }
        let classes = resources::by_path("storage.k8s.io", "v1", "storageclasses")
            .expect("storageclasses are in the table");
        let (classes, _) = self
            .list_typed::<k8s_openapi::api::storage::v1::StorageClass>(classes, None)
            .await?;
        if let Some(name) =
            herd_api::volumes::default_class(&classes).and_then(|c| c.metadata.name.clone())
        {
            claim["spec"]["storageClassName"] = Value::String(name);
        }
        Ok(())
    }

    /// kube's ServiceAccount admission plugin for a pod being created: `spec.serviceAccountName` defaults to
    /// `default`; a pod that names no `imagePullSecrets` gets its ServiceAccount's; and unless the pod (or
    /// else its ServiceAccount) says `automountServiceAccountToken: false`, the `kube-api-access-XXXXX`
    /// projected volume (a bound token, the cluster CA from the `kube-root-ca.crt` ConfigMap, the
    /// namespace) is added and mounted read-only at `/var/run/secrets/kubernetes.io/serviceaccount` in every
    /// container and init container that mounts nothing there. `accounts` caches the ServiceAccounts read
    /// (one read per account for a whole batch).
    async fn service_account_admission(
        &self,
        ns: &str,
        pod: &mut Value,
        accounts: &mut std::collections::HashMap<String, Option<Value>>,
    ) -> Result<(), ApiError> {
        let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else {
            return Ok(());
        };
        let name = match spec.get("serviceAccountName").and_then(Value::as_str) {
            Some(n) if !n.is_empty() => n.to_string(),
            _ => {
                spec.insert("serviceAccountName".into(), json!(DEFAULT_SERVICE_ACCOUNT));
                DEFAULT_SERVICE_ACCOUNT.to_string()
            }
        };
        let account = match accounts.get(&name) {
            Some(account) => account.clone(),
            None => {
                let account = self.store.get("serviceaccounts", ns, &name).await?;
                accounts.insert(name.clone(), account.clone());
                account
            }
        };
        let named = spec
            .get("imagePullSecrets")
            .and_then(Value::as_array)
            .is_some_and(|a| !a.is_empty());
        if let (false, Some(account)) = (named, &account) {
            let secrets: Vec<Value> = account
                .get("imagePullSecrets")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|r| r.get("name").and_then(Value::as_str))
                .filter(|n| !n.is_empty())
                .map(|n| json!({ "name": n }))
                .collect();
            if !secrets.is_empty() {
                spec.insert("imagePullSecrets".into(), Value::Array(secrets));
            }
        }
        let automount = spec
            .get("automountServiceAccountToken")
            .and_then(Value::as_bool)
            .or_else(|| {
                account
                    .as_ref()
                    .and_then(|a| a.get("automountServiceAccountToken"))
                    .and_then(Value::as_bool)
            })
            .unwrap_or(true);
        if automount {
            mount_service_account_token(spec);
        }
        Ok(())
    }

    /// NotFound unless the namespace `ns` exists (for namespaced kinds).
    async fn require_namespace(&self, res: &ResourceInfo, ns: &str) -> Result<(), ApiError> {
        if res.namespaced && self.store.get("namespaces", "", ns).await?.is_none() {
            return Err(namespace_not_found(ns));
        }
        Ok(())
    }

    /// Gives the Service `ns/name` its cluster IP (the requested one, else a free one of the Service range)
    /// by creating the IPAddress object that holds it, and fills `spec.clusterIP(s)` and the IP family
    /// defaults. Returns the IP whose IPAddress this call created (`None` for ExternalName and headless
    /// Services, and on `dry_run`, which only checks).
    async fn assign_cluster_ip(
        &self,
        svc: &mut Value,
        ns: &str,
        name: &str,
        dry_run: bool,
    ) -> Result<Option<IpAddr>, ApiError> {
        let ty = svc
            .pointer("/spec/type")
            .and_then(Value::as_str)
            .unwrap_or("ClusterIP");
        if ty == "ExternalName" {
            return Ok(None);
        }
        let requested = svc
            .pointer("/spec/clusterIP")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        if requested == "None" {
            return Ok(None);
        }
        let addresses = service_ips::ip_addresses();
        let (taken, _) = self.list_all(addresses, None).await?;
        let used: BTreeSet<String> = taken.iter().filter_map(|a| meta(a, "name")).collect();
        let cidr = self.settings.service_cidr;
        let invalid = |why: String| ApiError::Invalid {
            message: format!(
                "Service is invalid: spec.clusterIPs: Invalid value: [\"{requested}\"]: {why}"
            ),
            group: String::new(),
            kind: "Service".into(),
            name: meta(svc, "name").unwrap_or_default(),
            causes: vec![herd_api::Cause::invalid(
                "spec.clusterIPs",
                &requested,
                &why,
            )],
        };
        let already = |ip: &str| {
            invalid(format!(
                "failed to allocate IP {ip}: provided IP is already allocated"
            ))
        };
        let wanted: Vec<IpAddr> = if requested.is_empty() {
            Vec::new()
        } else {
            let parsed: IpAddr = requested
                .parse()
                .map_err(|_| invalid("must be a valid IP address".into()))?;
            if !cidr.contains(&parsed) {
                return Err(invalid(format!(
                    "the provided IP ({requested}) is not in the valid range ({cidr})"
                )));
            }
            if used.contains(&requested) {
                return Err(already(&requested));
            }
            vec![parsed]
        };
        let dynamic = wanted.is_empty();
        let mut chosen = None;
        for ip in wanted.into_iter().chain(
            service_ips::candidates(cidr).filter(|ip| dynamic && !used.contains(&ip.to_string())),
        ) {
            if dry_run {
                chosen = Some(ip);
                break;
            }
            match self.create_ip_address(ip, ns, name).await {
                Ok(_) => {
                    chosen = Some(ip);
                    break;
                }
                // Another API server took it a moment ago: a requested IP is refused, else try the next.
                Err(ApiError::AlreadyExists { .. }) if dynamic => {}
                Err(ApiError::AlreadyExists { .. }) => return Err(already(&requested)),
                Err(e) => return Err(e),
            }
        }
        let ip = chosen
            .ok_or_else(|| ApiError::Internal(format!("no free cluster IP left in {cidr}")))?
            .to_string();
        let spec = svc
            .get_mut("spec")
            .and_then(Value::as_object_mut)
            .ok_or_else(|| ApiError::BadRequest("no spec".into()))?;
        spec.insert("clusterIP".into(), json!(ip));
        spec.insert("clusterIPs".into(), json!([ip]));
        spec.entry("ipFamilies").or_insert_with(|| json!(["IPv4"]));
        spec.entry("ipFamilyPolicy")
            .or_insert_with(|| json!("SingleStack"));
        spec.entry("internalTrafficPolicy")
            .or_insert_with(|| json!("Cluster"));
        Ok((!dry_run).then(|| ip.parse().ok()).flatten())
    }

    /// Gives the NodePort or LoadBalancer Service `ns/name` its NodePorts: an explicit `nodePort` must be in
    /// `--service-node-port-range` and free (or held by `current`, the Service before an update); a port
    /// without one gets a free port of the range. Each port taken is a record of
    /// [`node_ports::RESOURCE`] created here (unique across API servers by the store's create-if-absent);
    /// returns the ports this call took (none on `dry_run`, which only checks), which the caller gives back
    /// if the Service is not written. kube's 422 wording for a port out of range or taken.
    async fn assign_node_ports(
        &self,
        svc: &mut Value,
        ns: &str,
        name: &str,
        current: Option<&Value>,
        dry_run: bool,
    ) -> Result<Vec<u16>, ApiError> {
        if !node_ports::wants_node_ports(svc) {
            return Ok(Vec::new());
        }
        let range = self.settings.service_node_port_range.clone();
        let held = current.map(node_ports::held).unwrap_or_default();
        let invalid = |i: usize, port: i64, why: &str| {
            let field = format!("spec.ports[{i}].nodePort");
            ApiError::Invalid {
                message: format!(
                    "Service \"{name}\" is invalid: {field}: Invalid value: {port}: {why}"
                ),
                group: String::new(),
                kind: "Service".into(),
                name: name.to_string(),
                causes: vec![herd_api::Cause::invalid(&field, port, why)],
            }
        };
        let count = svc
            .pointer("/spec/ports")
            .and_then(Value::as_array)
            .map_or(0, Vec::len);
        let mut taken: Vec<u16> = Vec::new();
        let result = async {
            for i in 0..count {
                let asked = svc
                    .pointer(&format!("/spec/ports/{i}/nodePort"))
                    .and_then(Value::as_i64)
                    .unwrap_or(0);
                if asked != 0 {
                    let port = u16::try_from(asked).ok().filter(|p| range.contains(p));
                    let Some(port) = port else {
                        let why = format!(
                            "provided port is not in the valid range. The range of valid ports is {}-{}",
                            range.start(),
                            range.end()
                        );
                        return Err(invalid(i, asked, &why));
                    };
                    // Two ports of one Service may share a NodePort (TCP and UDP of one number).
                    if held.contains(&port) || taken.contains(&port) {
                        continue;
                    }
                    let free = self.try_node_port(port, dry_run, ns, name).await?;
                    if !free {
                        return Err(invalid(i, asked, "provided port is already allocated"));
                    }
                    if !dry_run {
                        taken.push(port);
                    }
                    continue;
                }
                let mut chosen = None;
                for port in node_ports::candidates(&range) {
                    if held.contains(&port) || taken.contains(&port) {
                        continue;
                    }
                    let free = self.try_node_port(port, dry_run, ns, name).await?;
                    if free {
                        chosen = Some(port);
                        break;
                    }
                }
                let port = chosen.ok_or_else(|| {
                    ApiError::Internal(format!(
                        "failed to allocate a nodePort: range {}-{} is full",
                        range.start(),
                        range.end()
                    ))
                })?;
                if !dry_run {
                    taken.push(port);
                }
                svc["spec"]["ports"][i]["nodePort"] = json!(port);
            }
            Ok(())
        }
        .await;
        match result {
            Ok(()) => Ok(taken),
            Err(e) => {
                self.release_node_ports(&taken, ns, name).await;
                Err(e)
            }
        }
    }

    /// One pass of the NodePort repair (kube's portallocator repair): every NodePort a NodePort or
    /// LoadBalancer Service holds gets its record when it has none (a cluster whose Services had NodePorts
    /// before records, or a lost record), and a record whose Service is gone or no longer holds its port is
    /// deleted when the previous pass saw it so too, unchanged (`orphans`: port → the record's
    /// resourceVersion then, carried to the next pass; a Service being created has its record a moment
    /// before it exists itself).
    ///
    /// # Errors
    /// A store failure.
    pub(crate) async fn repair_node_ports(
        &self,
        orphans: &mut std::collections::BTreeMap<String, String>,
    ) -> Result<(), ApiError> {
        let (services, _) = self.list_all(core("services"), None).await?;
        let mut holders = std::collections::HashMap::new();
        for svc in services.iter().filter(|s| node_ports::wants_node_ports(s)) {
            let ns = meta(svc, "namespace").unwrap_or_default();
            let name = meta(svc, "name").unwrap_or_default();
            for port in node_ports::held(svc) {
                holders.insert(port.to_string(), (ns.clone(), name.clone()));
            }
        }
        let page = self
            .store
            .list(node_ports::RESOURCE, ListOptions::default())
            .await?;
        let records: Vec<Value> = page
            .items
            .iter()
            .filter_map(|text| serde_json::from_str(text).ok())
            .collect();
        let recorded: BTreeSet<String> = records.iter().filter_map(|r| meta(r, "name")).collect();
        for (port, (ns, name)) in &holders {
            if recorded.contains(port) {
                continue;
            }
            let Ok(number) = port.parse::<u16>() else {
                continue;
            };
            if self.take_node_port(number, ns, name).await? {
                tracing::info!(port, service = %format!("{ns}/{name}"),
                    "recorded the NodePort of a Service that had no record");
            }
        }
        let mut seen = std::collections::BTreeMap::new();
        for record in &records {
            let (Some(port), Some(version)) =
                (meta(record, "name"), meta(record, "resourceVersion"))
            else {
                continue;
            };
            let held = holders
                .get(&port)
                .is_some_and(|(ns, name)| node_ports::belongs_to(record, ns, name));
            if held {
                continue;
            }
            if orphans.get(&port) != Some(&version) {
                seen.insert(port, version);
                continue;
            }
            let mut decide = |current: Option<Value>| match current {
                Some(now) if meta(&now, "resourceVersion").as_ref() == Some(&version) => {
                    Mutation::Delete
                }
                _ => Mutation::Keep,
            };
            let freed = self
                .store
                .update(
                    node_ports::RESOURCE,
                    "",
                    &port,
                    &Preconditions::default(),
                    &mut decide,
                )
                .await?;
            if matches!(freed, Ok(Some(_))) {
                tracing::info!(port, "freed a NodePort no Service holds");
            }
        }
        *orphans = seen;
        Ok(())
    }

    /// Takes NodePort `port` for Service `ns/name`: `false` if another Service holds it.
    /// Whether `port` is free: taken for `ns/name` (its record written), or on a dry run only looked up.
    async fn try_node_port(
        &self,
        port: u16,
        dry_run: bool,
        ns: &str,
        name: &str,
    ) -> Result<bool, ApiError> {
        if dry_run {
            Ok(self
                .store
                .get(node_ports::RESOURCE, "", &port.to_string())
                .await?
                .is_none())
        } else {
            self.take_node_port(port, ns, name).await
        }
    }

    async fn take_node_port(&self, port: u16, ns: &str, name: &str) -> Result<bool, ApiError> {
        let record = node_ports::record(port, ns, name);
        match self
            .store
            .create(node_ports::RESOURCE, "", &port.to_string(), record, None)
            .await?
        {
            Ok(_) => Ok(true),
            Err(_) => Ok(false),
        }
    }

    /// Frees the NodePorts in `ports` that Service `ns/name` holds. Failures are logged.
    async fn release_node_ports(&self, ports: &[u16], ns: &str, name: &str) {
        for port in ports {
            let key = port.to_string();
            let mut decide = |current: Option<Value>| match current {
                Some(record) if node_ports::belongs_to(&record, ns, name) => Mutation::Delete,
                _ => Mutation::Keep,
            };
            if let Err(e) = self
                .store
                .update(
                    node_ports::RESOURCE,
                    "",
                    &key,
                    &Preconditions::default(),
                    &mut decide,
                )
                .await
            {
                tracing::warn!(port, error = %e, "releasing a NodePort");
            }
        }
    }

    /// This resource layer as kube-apiserver's own writes: its manager, no requesting user's guard (the
    /// IPAddress of a Service is the API server's, whoever asked for the Service).
    fn as_apiserver(&self) -> Self {
        Self {
            guard: None,
            manager: Some(KUBE_APISERVER.into()),
            ..self.clone()
        }
    }

    /// Creates the IPAddress that gives `ip` to Service `ns/name`. (A boxed future of a named type: a
    /// Service's create comes here, and this creates too.)
    fn create_ip_address<'a>(
        &'a self,
        ip: IpAddr,
        ns: &'a str,
        name: &'a str,
    ) -> futures::future::BoxFuture<'a, Result<Value, ApiError>> {
        let address = service_ips::ip_address_object(ip, ns, name);
        Box::pin(async move {
            self.as_apiserver()
                .create(service_ips::ip_addresses(), None, address, false)
                .await
        })
    }

    /// Deletes the IPAddress of `ip` if it still names Service `ns/name` (a Service that was not written,
    /// or was deleted). Failures are logged: the repair loop deletes what is left.
    /// (A boxed future of a named type: a Service's delete comes here, and this deletes too.)
    fn release_cluster_ip<'a>(
        &'a self,
        ip: IpAddr,
        ns: &'a str,
        name: &'a str,
    ) -> futures::future::BoxFuture<'a, ()> {
        Box::pin(async move {
            let addresses = service_ips::ip_addresses();
            let ip = ip.to_string();
            let held = match self.find(addresses, "", &ip).await {
                Ok(Some(held)) => held,
                Ok(None) => return,
                Err(e) => {
                    tracing::warn!(%ip, error = %e, "releasing a cluster IP");
                    return;
                }
            };
            let parent = |f: &str| {
                held.pointer(&format!("/spec/parentRef/{f}"))
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string()
            };
            if parent("resource") != "services"
                || parent("namespace") != ns
                || parent("name") != name
            {
                return;
            }
            let opts = DeleteOptions {
                precondition_uid: meta(&held, "uid"),
                ..DeleteOptions::default()
            };
            match self.as_apiserver().delete(addresses, None, &ip, opts).await {
                Ok(_) | Err(ApiError::NotFound { .. } | ApiError::Conflict { .. }) => {}
                Err(e) => tracing::warn!(%ip, error = %e, "releasing a cluster IP"),
            }
        })
    }

    /// PUT: replaces the object (or, with `status`, only its status), checking `resourceVersion` if given.
    pub async fn replace(
        &self,
        res: &'static ResourceInfo,
        ns: Option<&str>,
        name: &str,
        body: Value,
        status: bool,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        if meta(&body, "name").is_some_and(|n| n != name) {
            return Err(ApiError::BadRequest(format!(
                "the name of the object ({}) does not match the name on the URL ({name})",
                meta(&body, "name").unwrap_or_default()
            )));
        }
        let sub = if status {
            Subresource::Status
        } else {
            Subresource::Main
        };
        self.update(res, ns, name, sub, dry_run, move |_| Ok(body.clone()))
            .await
    }

    /// PATCH, in any of the supported patch types.
    pub async fn patch(
        &self,
        res: &'static ResourceInfo,
        ns: Option<&str>,
        name: &str,
        patch: Patch,
        status: bool,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        if let Patch::Apply {
            config,
            manager,
            force,
        } = &patch
            && self
                .store
                .get(&res.key(), &ns_key(res, ns), name)
                .await?
                .is_none()
        {
            let mut created =
                herd_api::patch::server_side_apply(None, config, manager, *force, res.kind, &now())
                    .map_err(apply_error)?;
            created["metadata"]["name"] = json!(name);
            return Ok(self.create_as(res, ns, created, dry_run, false).await?.0);
        }
        let sub = if status {
            Subresource::Status
        } else {
            Subresource::Main
        };
        // Server-side apply records its own ownership; every other write is an Update.
        let objects = if matches!(patch, Patch::Apply { .. }) {
            self.untracked()
        } else {
            self.clone()
        };
        objects
            .update(res, ns, name, sub, dry_run, move |current| {
                apply_patch(current.clone(), patch.clone(), res.kind)
            })
            .await
    }

    /// The read-modify-write core of PUT and PATCH (of the object or its `sub`resource). `compute` turns the
    /// current object into the desired one; the write is recorded in managedFields as an Update by this
    /// handle's manager.
    pub(crate) async fn update(
        &self,
        res: &'static ResourceInfo,
        ns: Option<&str>,
        name: &str,
        sub: Subresource,
        dry_run: bool,
        mut compute: impl FnMut(&Value) -> Result<Value, ApiError> + Send,
    ) -> Result<Value, ApiError> {
        let status = sub == Subresource::Status;
        let ns = ns_key(res, ns);
        // A Service's new NodePorts are taken before the write (the write itself cannot wait on the store),
        // from a preview of the update; the write checks it uses only those and the ones it had.
        let services = !status && res.strategy.create_hook() == CreateHook::AllocateClusterIp;
        let mut preview: Option<Value> = None;
        let mut taken: Vec<u16> = Vec::new();
        if services
            && let Some(current) = self.store.get(&res.key(), &ns, name).await?
            && let Ok(mut desired) = compute(&current).map(|d| d.is_object().then_some(d))
        {
            if let Some(desired) = desired.as_mut() {
                node_ports::keep_current(&current, desired);
                taken = self
                    .assign_node_ports(desired, &ns, name, Some(&current), dry_run)
                    .await?;
            }
            preview = desired;
        }
        let mut before: Option<Value> = None;
        let result = self
            .mutate(res, &ns, name, &Preconditions::default(), |current| {
                let current = current.ok_or_else(|| ApiError::not_found(res, name))?;
                let mut desired = compute(&current)?;
                if services && desired.is_object() {
                    node_ports::drop_unneeded(&current, &mut desired);
                    node_ports::keep_current(&current, &mut desired);
                    node_ports::fill_from(preview.as_ref(), &mut desired);
                    let allowed: Vec<u16> = node_ports::held(&current)
                        .into_iter()
                        .chain(taken.iter().copied())
                        .collect();
                    if !dry_run
                        && node_ports::wants_node_ports(&desired)
                        && node_ports::held(&desired)
                            .iter()
                            .any(|p| !allowed.contains(p))
                    {
                        return Err(ApiError::conflict(res, name));
                    }
                    before = Some(current.clone());
                }
                if !desired.is_object() {
                    // A patch may replace the whole document (`[]`, `"x"`): refused as the decode into an
                    // object refuses it in kube-apiserver, before anything below indexes it as an object.
                    return Err(ApiError::BadRequest(format!(
                        "json: cannot unmarshal {} into Go value of type map[string]interface {{}}",
                        match desired {
                            Value::Array(_) => "array",
                            Value::String(_) => "string",
                            Value::Number(_) => "number",
                            Value::Bool(_) => "bool",
                            Value::Null | Value::Object(_) => "null",
                        }
                    )));
                }
                let sent_rv = meta(&desired, "resourceVersion").filter(|rv| !rv.is_empty());
                if sent_rv.is_some_and(|rv| Some(rv) != meta(&current, "resourceVersion")) {
                    return Err(ApiError::conflict(res, name));
                }
                if status {
                    let new_status = desired.get("status").cloned().unwrap_or(Value::Null);
                    desired = current.clone();
                    desired["status"] = new_status;
                } else if has_status_subresource(res) {
                    desired["status"] = current.get("status").cloned().unwrap_or(Value::Null);
                }
                preserve_metadata(&current, &mut desired, &ns, name, res.namespaced)?;
                let admitted = if status {
                    admit(res, desired)
                } else {
                    admit_update(res, &current, desired)
                };
                let mut admitted = admitted.map_err(|e| ApiError::admit(res, e))?;
                self.check_guard(res, &admitted, Some(&current))?;
                if !status && spec_changed(&current, &admitted) {
                    let generation = current
                        .pointer("/metadata/generation")
                        .and_then(Value::as_i64)
                        .unwrap_or(1);
                    admitted["metadata"]["generation"] = json!(generation + 1);
                }
                let admitted = self.track(Some(&current), admitted, sub);
                let finalized = finalized(&current, &admitted);
                if dry_run {
                    return Ok((Mutation::Keep, admitted));
                }
                if same_but_managed_times(&admitted, &current) {
                    // Nothing changed but when the managers last wrote: kube-apiserver writes nothing
                    // then (a repeated apply keeps its resourceVersion).
                    return Ok((Mutation::Keep, current));
                }
                if finalized {
                    return Ok((Mutation::Delete, admitted));
                }
                Ok((Mutation::Put(admitted.clone()), admitted))
            })
            .await;
        if services {
            // The ports the Service no longer uses (or never came to use) are freed.
            let kept = match &result {
                Ok((out, _)) if node_ports::wants_node_ports(out) => node_ports::held(out),
                _ => Vec::new(),
            };
            let had = match (&result, &before) {
                (Ok(_), Some(before)) => node_ports::held(before),
                _ => Vec::new(),
            };
            let unused: Vec<u16> = had
                .into_iter()
                .chain(taken)
                .filter(|p| !kept.contains(p))
                .collect();
            self.release_node_ports(&unused, &ns, name).await;
        }
        let (out, change) = result?;
        Ok(committed(out, change))
    }

    /// Updates an object in place: a controller's update of what it read. The edited object is admitted
    /// and tracked as any write ([`Objects::edited`]). `edit` returns false to leave the object unchanged.
    /// Returns the committed change, if any.
    pub async fn edit(
        &self,
        res: &ResourceInfo,
        ns: &str,
        name: &str,
        edit: impl FnOnce(&mut Value) -> bool + Send,
    ) -> Result<Option<Arc<Change>>, ApiError> {
        // An edit runs once, as a controller's update of what it read: a backend that must run the write
        // again (the object changed under it) answers Conflict, and the controller's next reconcile edits
        // the new state.
        let mut edit = Some(edit);
        self.edit_each_time(res, ns, name, move |obj| edit.take().map(|edit| edit(obj)))
            .await
    }

    /// [`Objects::edit`] with an edit that holds for whatever state the object is in (setting a mark,
    /// removing an owner reference): run again on the new state when the object changed under it, as
    /// kube's `GuaranteedUpdate` does, instead of answering Conflict.
    pub(crate) async fn edit_idempotent(
        &self,
        res: &ResourceInfo,
        ns: &str,
        name: &str,
        mut edit: impl FnMut(&mut Value) -> bool + Send,
    ) -> Result<Option<Arc<Change>>, ApiError> {
        self.edit_each_time(res, ns, name, move |obj| Some(edit(obj)))
            .await
    }

    /// The read-edit-write of [`Objects::edit`]: `edit` is called with the current object each time the
    /// backend runs the write; `None` means it cannot be run again (Conflict).
    async fn edit_each_time(
        &self,
        res: &ResourceInfo,
        ns: &str,
        name: &str,
        mut edit: impl FnMut(&mut Value) -> Option<bool> + Send,
    ) -> Result<Option<Arc<Change>>, ApiError> {
        let ns = ns_key(res, Some(ns));
        let ((), change) = self
            .mutate(res, &ns, name, &Preconditions::default(), |current| {
                let Some(mut obj) = current else {
                    return Ok((Mutation::Keep, ()));
                };
                let before = obj.clone();
                match edit(&mut obj) {
                    None => Err(ApiError::conflict(res, name)),
                    Some(false) => Ok((Mutation::Keep, ())),
                    Some(true) => Ok((Mutation::Put(self.edited(res, &before, obj)?), ())),
                }
            })
            .await?;
        Ok(change)
    }

    /// An edited object as it is written: admitted (defaulted and validated as any write), its generation
    /// advanced when its spec changed, and the edit recorded for this handle's manager.
    fn edited(&self, res: &ResourceInfo, before: &Value, obj: Value) -> Result<Value, ApiError> {
        let mut admitted = admit(res, obj).map_err(|e| ApiError::admit(res, e))?;
        if spec_changed(before, &admitted) {
            let generation = before
                .pointer("/metadata/generation")
                .and_then(Value::as_i64)
                .unwrap_or(1);
            admitted["metadata"]["generation"] = json!(generation + 1);
        }
        Ok(self.track_edit(res, before, admitted))
    }

    /// The `pods/binding` subresource for many pods at once, in one commit: each (namespace, name, node)
    /// binds its pod through the binding's own admission ([`herd_api::strategy::bind_pod`]: unbound, not
    /// being deleted), written without managedFields, as kube-apiserver's binding storage writes it.
    /// Returns each binding's outcome: its change, or why it was refused (`NotFound` for a missing pod).
    pub async fn bind_many(
        &self,
        bindings: Vec<(String, String, String)>,
    ) -> Result<Vec<Result<Arc<Change>, ApiError>>, ApiError> {
        let pods = core("pods");
        let refusals: Arc<std::sync::Mutex<Vec<Option<ApiError>>>> = Arc::new(
            std::sync::Mutex::new((0..bindings.len()).map(|_| None).collect()),
        );
        let names: Vec<String> = bindings.iter().map(|(_, name, _)| name.clone()).collect();
        let stamp = now();
        let items = bindings
            .into_iter()
            .enumerate()
            .map(|(slot, (ns, name, node))| {
                let refusals = refusals.clone();
                let stamp = stamp.clone();
                BatchItem {
                    resource: pods.key(),
                    namespace: ns,
                    name: name.clone(),
                    decide: Box::new(move |current| {
                        let refuse = |e: ApiError| {
                            if let Ok(mut r) = refusals.lock() {
                                r[slot] = Some(e);
                            }
                            Mutation::Keep
                        };
                        let Some(mut pod) = current else {
                            return refuse(ApiError::not_found(pods, &name));
                        };
                        match herd_api::strategy::bind_pod(&mut pod, &node, &stamp) {
                            Ok(()) => Mutation::Put(pod),
                            Err(why) => refuse(ApiError::Conflict {
                                message: format!(
                                    "Operation cannot be fulfilled on pods/binding \"{name}\": {why}"
                                ),
                                group: String::new(),
                                kind: "pods/binding".into(),
                                name: name.clone(),
                            }),
                        }
                    }),
                }
            })
            .collect();
        let changes = self.store.update_batch(items).await?;
        let refusals = std::mem::take(
            &mut *refusals
                .lock()
                .map_err(|_| ApiError::Internal("a binding panicked".into()))?,
        );
        Ok(changes
            .into_iter()
            .zip(refusals)
            .zip(names)
            .map(|((change, refused), name)| match (change, refused) {
                (Some(change), _) => Ok(change),
                (None, Some(e)) => Err(e),
                (None, None) => Err(ApiError::not_found(pods, &name)),
            })
            .collect())
    }

    /// [`Objects::delete`] of many (namespace, name)s of one resource in one transaction, with the grace
    /// period `grace` (else each object's own) and background propagation: a controller deleting its pods.
    /// Returns each deletion's change (`None` for an object already gone or already being deleted).
    pub async fn delete_many(
        &self,
        res: &'static ResourceInfo,
        names: Vec<(String, String)>,
        grace: Option<i64>,
    ) -> Result<Vec<Option<Arc<Change>>>, ApiError> {
        let opts = DeleteOptions {
            grace_period_seconds: grace,
            ..DeleteOptions::default()
        };
        let items = names
            .into_iter()
            .map(|(ns, name)| {
                let opts = opts.clone();
                BatchItem {
                    resource: res.key(),
                    namespace: ns_key(res, Some(&ns)),
                    name: name.clone(),
                    decide: Box::new(move |current| {
                        decide_delete(res, &name, &opts, current).map_or(Mutation::Keep, |(m, _)| m)
                    }),
                }
            })
            .collect::<Vec<_>>();
        Ok(self.store.update_batch(items).await?)
    }

    /// DELETE. Pods bound to a node are deleted gracefully (deletionTimestamp; the node agent stops them and
    /// then deletes with a zero grace period); objects with finalizers wait for them; the rest go at once.
    pub async fn delete(
        &self,
        res: &'static ResourceInfo,
        ns: Option<&str>,
        name: &str,
        opts: DeleteOptions,
    ) -> Result<Value, ApiError> {
        let ns = ns_key(res, ns);
        if opts.propagation == Propagation::Orphan
            && !opts.dry_run
            && let Some(uid) = self
                .find(res, &ns, name)
                .await?
                .and_then(|o| meta(&o, "uid"))
        {
            // Mark the owner as being deleted first, so no controller adopts the dependents again between
            // their release and the owner's removal.
            if res.strategy.propagates() {
                let stamp = now();
                // A deletion mark is no field anyone manages (kube writes it past the field manager).
                self.untracked()
                    .edit_idempotent(res, &ns, name, |o| {
                        if o.pointer("/metadata/deletionTimestamp").is_some() {
                            return false;
                        }
                        o["metadata"]["deletionTimestamp"] = json!(stamp);
                        o["metadata"]["deletionGracePeriodSeconds"] = json!(0);
                        true
                    })
                    .await?;
            }
            self.orphan_dependents(&uid).await?;
        }
        let preconditions = Preconditions {
            uid: opts.precondition_uid.clone(),
            resource_version: opts.precondition_rv.clone(),
        };
        let (out, change) = self
            .mutate(res, &ns, name, &preconditions, |current| {
                decide_delete(res, name, &opts, current)
            })
            .await?;
        if res.strategy.create_hook() == CreateHook::AllocateClusterIp
            && let Some(gone) = change.as_ref().filter(|c| c.kind == EventType::Deleted)
        {
            for ip in service_ips::cluster_ips(&gone.object) {
                self.release_cluster_ip(ip, &ns, name).await;
            }
            self.release_node_ports(&node_ports::held(&gone.object), &ns, name)
                .await;
        }
        Ok(committed(out, change))
    }
}

impl Objects {
    /// Removes owner references to `uid` from every object (what `propagationPolicy: Orphan` leaves behind).
    async fn orphan_dependents(&self, uid: &str) -> Result<(), ApiError> {
        for res in resources::RESOURCES {
            let (items, _) = self.list_all(res, None).await?;
            for item in items.iter().filter(|i| owner_uids(i).any(|u| u == uid)) {
                let ns = meta(item, "namespace").unwrap_or_default();
                let name = meta(item, "name").unwrap_or_default();
                self.edit_idempotent(res, &ns, &name, |obj| {
                    let Some(refs) = obj
                        .pointer_mut("/metadata/ownerReferences")
                        .and_then(Value::as_array_mut)
                    else {
                        return false;
                    };
                    let before = refs.len();
                    refs.retain(|r| r["uid"] != uid);
                    before != refs.len()
                })
                .await?;
            }
        }
        Ok(())
    }
}

/// What a DELETE does to the current object (after any orphaning): removes it, marks it for graceful or
/// foreground deletion, or keeps it (dry run, already marked). Returns the mutation and the object to answer.
fn decide_delete(
    res: &'static ResourceInfo,
    name: &str,
    opts: &DeleteOptions,
    current: Option<Value>,
) -> Result<(Mutation, Value), ApiError> {
    let current = current.ok_or_else(|| ApiError::not_found(res, name))?;
    let has_finalizers = current
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .is_some_and(|f| !f.is_empty());
    if opts.dry_run {
        return Ok((Mutation::Keep, current));
    }
    let foreground = opts.propagation == Propagation::Foreground && res.strategy.propagates();
    let graceful = match res.strategy.deletion(&current, opts.grace_period_seconds) {
        _ if foreground => Some(0),
        Deletion::Graceful(grace) => Some(grace),
        Deletion::Immediate if has_finalizers => Some(0),
        Deletion::Immediate => None,
    };
    match graceful {
        None => Ok((Mutation::Delete, current)),
        Some(grace) => {
            if current.pointer("/metadata/deletionTimestamp").is_some() {
                return Ok((Mutation::Keep, current));
            }
            let mut marked = current;
            if foreground {
                let finalizers = marked["metadata"]["finalizers"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                if !finalizers.iter().any(|f| f == FOREGROUND_FINALIZER) {
                    let mut finalizers = finalizers;
                    finalizers.push(json!(FOREGROUND_FINALIZER));
                    marked["metadata"]["finalizers"] = json!(finalizers);
                }
            }
            let at = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(grace);
            marked["metadata"]["deletionTimestamp"] =
                json!(at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string());
            marked["metadata"]["deletionGracePeriodSeconds"] = json!(grace);
            res.strategy.terminating(&mut marked);
            Ok((Mutation::Put(marked.clone()), marked))
        }
    }
}

/// The uids of an object's owners.
pub fn owner_uids(obj: &Value) -> impl Iterator<Item = &str> {
    obj.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|r| r["uid"].as_str())
}

/// Applies a patch document to `doc` (an object of `kind`).
pub fn apply_patch(mut doc: Value, patch: Patch, kind: &str) -> Result<Value, ApiError> {
    match patch {
        Patch::Merge(p) => herd_api::patch::merge_patch(&mut doc, &p),
        Patch::Strategic(p) => {
            doc = herd_api::patch::strategic_merge(&doc, &p, kind).map_err(patch_error)?;
        }
        Patch::Apply {
            config,
            manager,
            force,
        } => {
            doc = herd_api::patch::server_side_apply(
                Some(&doc),
                &config,
                &manager,
                force,
                kind,
                &now(),
            )
            .map_err(apply_error)?;
        }
        Patch::Json(p) => {
            use herd_api::patch::JsonPatchError;
            herd_api::patch::json_patch(&mut doc, p).map_err(|e| match e {
                JsonPatchError::Decode(_) => ApiError::BadRequest(e.to_string()),
                JsonPatchError::Apply(e) => ApiError::Invalid {
                    message: format!(
                        "the server rejected our request due to an error in our request: {e}"
                    ),
                    group: String::new(),
                    kind: kind.into(),
                    name: String::new(),
                    causes: vec![],
                },
            })?;
        }
    }
    Ok(doc)
}

fn patch_error(e: herd_api::patch::PatchError) -> ApiError {
    match e.code() {
        400 => ApiError::BadRequest(e.to_string()),
        415 => ApiError::UnsupportedMediaType(e.to_string()),
        422 => ApiError::Invalid {
            message: e.to_string(),
            group: String::new(),
            kind: String::new(),
            name: String::new(),
            causes: vec![],
        },
        _ => ApiError::Internal(e.to_string()),
    }
}

fn apply_error(e: herd_api::patch::ApplyError) -> ApiError {
    match e {
        herd_api::patch::ApplyError::Conflicts(c) => ApiError::ApplyConflict {
            message: c.to_string(),
            causes: c.causes(),
        },
        other if other.code() == 400 => ApiError::BadRequest(other.to_string()),
        other => ApiError::Internal(other.to_string()),
    }
}

/// The object as committed (with its new resourceVersion), or `fallback` when nothing was written.
fn committed(fallback: Value, change: Option<Arc<Change>>) -> Value {
    change.map_or(fallback, |c| (*c.object).clone())
}

/// Keeps the fields a client may not change: identity, creation time, deletion marks.
fn preserve_metadata(
    current: &Value,
    desired: &mut Value,
    ns: &str,
    name: &str,
    namespaced: bool,
) -> Result<(), ApiError> {
    let md = desired
        .as_object_mut()
        .ok_or_else(|| ApiError::BadRequest("the body is not an object".into()))?
        .entry("metadata")
        .or_insert_with(|| json!({}));
    let md = md
        .as_object_mut()
        .ok_or_else(|| ApiError::BadRequest("metadata is not an object".into()))?;
    if let Some(uid) = md.get("uid").and_then(Value::as_str)
        && Some(uid) != current.pointer("/metadata/uid").and_then(Value::as_str)
    {
        return Err(ApiError::BadRequest(format!(
            "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
            current
                .pointer("/metadata/uid")
                .and_then(Value::as_str)
                .unwrap_or_default()
        )));
    }
    for field in [
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "generation",
    ] {
        match current.pointer(&format!("/metadata/{field}")) {
            Some(v) => md.insert(field.into(), v.clone()),
            None => md.remove(field),
        };
    }
    md.insert("name".into(), json!(name));
    if namespaced {
        md.insert("namespace".into(), json!(ns));
    }
    // Server-side apply writes managedFields; a client that sends none keeps the current ones.
    if !md.contains_key("managedFields")
        && let Some(mf) = current.pointer("/metadata/managedFields")
    {
        md.insert("managedFields".into(), mf.clone());
    }
    md.remove("resourceVersion");
    Ok(())
}

/// A namespace's Pod Security policy and the errors of its labels.
type PodSecurityPolicy = (pod_security::Policy, Vec<pod_security::LabelError>);

/// Pod Security admission (kube's PodSecurity plugin) of a pod about to be created as `name`: 403 Forbidden
/// with kube's message when the namespace's enforce level forbids it, else the warnings its warn level has.
/// A pod of an exempt runtime class is not checked.
fn enforce_pod_security(
    (policy, label_errors): &PodSecurityPolicy,
    config: &pod_security::AdmissionConfig,
    name: &str,
    obj: &Value,
) -> Result<Vec<String>, ApiError> {
    let runtime_class = obj
        .pointer("/spec/runtimeClassName")
        .and_then(Value::as_str);
    if runtime_class.is_some_and(|c| config.exempt_runtime_classes.contains(c)) {
        return Ok(Vec::new());
    }
    if label_errors.is_empty() && policy.fully_privileged() {
        return Ok(Vec::new());
    }
    let pod: k8s_openapi::api::core::v1::Pod = serde_json::from_value(obj.clone())
        .map_err(|e| ApiError::BadRequest(format!("decoding pod: {e}")))?;
    let decision = pod_security::evaluate_pod(
        policy,
        label_errors,
        name,
        &pod.metadata,
        &pod.spec.unwrap_or_default(),
    );
    if let Some(violations) = &decision.audit_violations {
        // herd keeps no audit log: the annotation kube would put on the audit event goes to the log.
        tracing::info!(
            target: "audit",
            pod = name,
            namespace = pod.metadata.namespace.as_deref().unwrap_or_default(),
            "pod-security.kubernetes.io/audit-violations: {violations}"
        );
    }
    match decision.forbidden {
        Some(message) => Err(ApiError::Forbidden {
            message,
            group: String::new(),
            kind: "pods".into(),
            name: name.into(),
        }),
        None => Ok(decision.warnings),
    }
}

/// Pod Security admission of a workload whose pod template is at `template` in `obj`: the `warn` level's
/// warnings, never a refusal (kube's `ValidatePodController`).
fn warn_pod_template(
    (policy, label_errors): &PodSecurityPolicy,
    obj: &Value,
    template: &str,
) -> Vec<String> {
    if label_errors.is_empty() && policy.warn.level == pod_security::Level::Privileged {
        return Vec::new();
    }
    pod_security::pod_template(obj, template).map_or_else(Vec::new, |(meta, spec)| {
        pod_security::evaluate_template(policy, label_errors, &meta, &spec).warnings
    })
}

/// kube's `shouldDeleteDuringUpdate`: an update that takes the last finalizer off an object marked for
/// deletion without a grace period still to run removes it.
fn finalized(current: &Value, updated: &Value) -> bool {
    let finalizers = |v: &Value| {
        v.pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .map_or(0, Vec::len)
    };
    updated.pointer("/metadata/deletionTimestamp").is_some()
        && finalizers(updated) == 0
        && finalizers(current) > 0
        && updated
            .pointer("/metadata/deletionGracePeriodSeconds")
            .and_then(Value::as_i64)
            .unwrap_or(0)
            == 0
}

/// Whether `a` and `b` are equal but for `status` and `metadata.managedFields`.
/// Whether two versions of an object differ at most in their managedFields entries' `time` (and in a
/// `resourceVersion` the write would set anyway).
fn same_but_managed_times(a: &Value, b: &Value) -> bool {
    if a == b {
        return true;
    }
    let without_times = |v: &Value| {
        let mut v = v.clone();
        if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.remove("resourceVersion");
        }
        if let Some(entries) = v
            .pointer_mut("/metadata/managedFields")
            .and_then(Value::as_array_mut)
        {
            for entry in entries.iter_mut().filter_map(Value::as_object_mut) {
                entry.remove("time");
            }
        }
        v
    };
    without_times(a) == without_times(b)
}

fn same_but_status(a: &Value, b: &Value) -> bool {
    let (Some(a), Some(b)) = (a.as_object(), b.as_object()) else {
        return a == b;
    };
    let keys = |m: &serde_json::Map<String, Value>| {
        m.keys()
            .filter(|k| *k != "status")
            .cloned()
            .collect::<BTreeSet<_>>()
    };
    if keys(a) != keys(b) {
        return false;
    }
    a.iter().filter(|(k, _)| *k != "status").all(|(k, v)| {
        if k != "metadata" {
            return Some(v) == b.get(k);
        }
        let (Some(ma), Some(mb)) = (v.as_object(), b.get(k).and_then(Value::as_object)) else {
            return Some(v) == b.get(k);
        };
        ma.len() - usize::from(ma.contains_key("managedFields"))
            == mb.len() - usize::from(mb.contains_key("managedFields"))
            && ma
                .iter()
                .filter(|(k, _)| *k != "managedFields")
                .all(|(k, v)| Some(v) == mb.get(k))
    })
}

/// Whether anything but metadata and status changed: what bumps `metadata.generation`.
fn spec_changed(old: &Value, new: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(m) = v.as_object_mut() {
            m.remove("metadata");
            m.remove("status");
        }
        v
    };
    strip(old) != strip(new)
}

/// Removes strategic-merge directives (`$patch`, `$setElementOrder/…`, `$retainKeys`) so a strategic patch
/// can be applied with merge-patch semantics.
pub fn strip_directives(mut v: Value) -> Value {
    if let Some(map) = v.as_object_mut() {
        map.retain(|k, _| !k.starts_with('$'));
        for val in map.values_mut() {
            *val = strip_directives(val.take());
        }
    } else if let Some(items) = v.as_array_mut() {
        for item in items {
            *item = strip_directives(item.take());
        }
    }
    v
}

/// A resource layer over a new store in a temporary directory (kept while the `TempDir` lives).
#[cfg(test)]
pub(crate) async fn test_objects() -> (tempfile::TempDir, Objects) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(&dir.path().join("herd.db"))
        .await
        .expect("store");
    let objects = Objects::new(
        Arc::new(store),
        Settings {
            service_cidr: "127.10.0.0/16".parse().expect("CIDR"),
            service_node_port_range: crate::node_ports::DEFAULT_RANGE,
            pod_security: herd_api::pod_security::AdmissionConfig::default(),
        },
    );
    (dir, objects)
}

/// [`test_objects`] with the namespace `default`.
#[cfg(test)]
pub(crate) async fn test_objects_in_default() -> (tempfile::TempDir, Objects) {
    let (dir, objects) = test_objects().await;
    let ns = serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}});
    objects
        .create(core("namespaces"), None, ns, false)
        .await
        .expect("namespace default");
    (dir, objects)
}

/// The ServiceAccount a pod runs as when it names none.
const DEFAULT_SERVICE_ACCOUNT: &str = "default";
/// Where kube mounts a pod's ServiceAccount credentials.
pub const SERVICE_ACCOUNT_MOUNT: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// kube's ServiceAccount admission's `kube-api-access-XXXXX` volume and its read-only mounts, unless a
/// container already mounts something at [`SERVICE_ACCOUNT_MOUNT`] (then the pod is left as it is).
fn mount_service_account_token(spec: &mut serde_json::Map<String, Value>) {
    let lists = ["initContainers", "containers"];
    let mounted = lists.iter().any(|list| {
        spec.get(*list)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .flat_map(|c| c["volumeMounts"].as_array().into_iter().flatten())
            .any(|m| m["mountPath"] == SERVICE_ACCOUNT_MOUNT)
    });
    if mounted {
        return;
    }
    // kube's names are `kube-api-access-` and five characters of its random alphabet.
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let suffix: String = (0..5)
        .map(|_| char::from(ALPHABET[rand::random_range(0..ALPHABET.len())]))
        .collect();
    let volume = format!("kube-api-access-{suffix}");
    let volumes = spec
        .entry("volumes")
        .or_insert_with(|| Value::Array(Vec::new()));
    if let Some(volumes) = volumes.as_array_mut() {
        volumes.push(json!({"name": volume, "projected": {
            "sources": [
                {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                {"configMap": {"name": ROOT_CA_CONFIG_MAP, "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [{"path": "namespace",
                    "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}
            ],
            "defaultMode": 420
        }}));
    }
    for list in lists {
        for container in spec
            .get_mut(list)
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
        {
            let mounts = container
                .as_object_mut()
                .map(|c| c.entry("volumeMounts").or_insert_with(|| json!([])));
            if let Some(mounts) = mounts.and_then(Value::as_array_mut) {
                mounts.push(json!({"name": volume, "readOnly": true,
                    "mountPath": SERVICE_ACCOUNT_MOUNT}));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_node_port_repair_records_held_ports_and_frees_orphans_on_the_second_pass() {
        let (_dir, objects) = test_objects_in_default().await;
        let svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
            "spec": {"type": "NodePort", "ports": [{"port": 80, "nodePort": 30080}]}});
        objects
            .create(core("services"), Some("default"), svc, false)
            .await
            .unwrap();
        let record = |port: &'static str| {
            let objects = objects.clone();
            async move {
                objects
                    .store
                    .get(node_ports::RESOURCE, "", port)
                    .await
                    .unwrap()
            }
        };
        assert!(record("30080").await.is_some(), "the create took its port");
        // A lost record (or a Service from before records) is recorded again.
        let mut gone = |_: Option<Value>| Mutation::Delete;
        objects
            .store
            .update(
                node_ports::RESOURCE,
                "",
                "30080",
                &Preconditions::default(),
                &mut gone,
            )
            .await
            .unwrap()
            .unwrap();
        // A record no Service holds (a crash between the record and the Service).
        objects
            .store
            .create(
                node_ports::RESOURCE,
                "",
                "30081",
                node_ports::record(30081, "default", "lost"),
                None,
            )
            .await
            .unwrap()
            .unwrap();
        let mut orphans = std::collections::BTreeMap::new();
        objects.repair_node_ports(&mut orphans).await.unwrap();
        assert!(record("30080").await.is_some(), "recorded again");
        assert!(record("30081").await.is_some(), "an orphan stays one pass");
        objects.repair_node_ports(&mut orphans).await.unwrap();
        assert!(record("30081").await.is_none(), "freed on the second pass");
        assert!(record("30080").await.is_some());
    }

    #[tokio::test]
    async fn an_apply_that_changes_nothing_writes_nothing() {
        let (_dir, objects) = test_objects_in_default().await;
        let apply = || Patch::Apply {
            config: json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "cfg"}, "data": {"a": "1"}}),
            manager: "herd".into(),
            force: false,
        };
        let res = core("configmaps");
        let first = objects
            .patch(res, Some("default"), "cfg", apply(), false, false)
            .await
            .unwrap();
        let revision = objects.revision();
        let again = objects
            .patch(res, Some("default"), "cfg", apply(), false, false)
            .await
            .unwrap();
        assert_eq!(again, first, "the object as it was");
        assert_eq!(objects.revision(), revision, "no write");
    }

    #[tokio::test]
    async fn a_pod_without_image_pull_secrets_gets_its_service_accounts() {
        let (_dir, objects) = test_objects_in_default().await;
        for (name, secrets) in [
            ("default", json!([{"name": "d"}])),
            ("puller", json!([{"name": "regcred"}, {"name": "more"}])),
        ] {
            let sa = json!({"apiVersion": "v1", "kind": "ServiceAccount",
                "metadata": {"name": name}, "imagePullSecrets": secrets});
            objects
                .create(core("serviceaccounts"), Some("default"), sa, false)
                .await
                .unwrap();
        }
        let pod = |name: &str, spec: Value| {
            let mut spec = spec;
            spec["containers"] = json!([{"name": "c", "image": "127.0.0.1:5000/app:v1"}]);
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec})
        };
        let create = |obj: Value| objects.create(core("pods"), Some("default"), obj, false);
        let secrets = |pod: &Value| pod["spec"]["imagePullSecrets"].clone();

        let named = create(pod("named", json!({"serviceAccountName": "puller"})))
            .await
            .unwrap();
        assert_eq!(
            secrets(&named),
            json!([{"name": "regcred"}, {"name": "more"}])
        );
        let default = create(pod("default-sa", json!({}))).await.unwrap();
        assert_eq!(secrets(&default), json!([{"name": "d"}]));
        // A pod's own list is kept as it is.
        let own = create(pod(
            "own",
            json!({"serviceAccountName": "puller", "imagePullSecrets": [{"name": "mine"}]}),
        ))
        .await
        .unwrap();
        assert_eq!(secrets(&own), json!([{"name": "mine"}]));
        // A ServiceAccount that does not exist (yet) adds nothing.
        let missing = create(pod("missing", json!({"serviceAccountName": "nobody"})))
            .await
            .unwrap();
        assert_eq!(secrets(&missing), Value::Null);
        // Controllers' pods too.
        let made = objects
            .create_many(
                core("pods"),
                vec![(
                    Some("default".into()),
                    pod("from-rs", json!({"serviceAccountName": "puller"})),
                )],
            )
            .await
            .unwrap();
        assert_eq!(
            secrets(made[0].as_ref().unwrap()),
            json!([{"name": "regcred"}, {"name": "more"}])
        );
    }

    #[tokio::test]
    async fn create_many_writes_each_object_and_reports_each_failure_in_its_slot() {
        let (_dir, objects) = test_objects().await;
        let table = |path| resources::by_path("", "v1", path).unwrap();
        let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}});
        objects
            .create(table("namespaces"), None, ns, false)
            .await
            .unwrap();
        let cm = |name: &str| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}});
        let res = table("configmaps");
        objects
            .create(res, Some("default"), cm("old"), false)
            .await
            .unwrap();
        let out = objects
            .create_many(
                res,
                vec![
                    (Some("default".into()), cm("new")),
                    (Some("default".into()), cm("old")),
                    (Some("nowhere".into()), cm("lost")),
                ],
            )
            .await
            .unwrap();
        assert!(out[0].as_ref().ok().and_then(|v| meta(v, "uid")).is_some());
        assert!(
            matches!(&out[1], Err(ApiError::AlreadyExists { name, .. }) if name == "old"),
            "{:?}",
            out[1]
        );
        assert!(
            matches!(&out[2], Err(ApiError::NotFound { .. })),
            "{:?}",
            out[2]
        );
        objects.get(res, Some("default"), "new").await.unwrap();
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_generated_name_that_is_taken_is_generated_again() {
        let (_dir, objects) = test_objects_in_default().await;
        let cm = |name: Option<&str>| {
            let mut cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"generateName": "web-"}});
            if let Some(name) = name {
                cm["metadata"]["name"] = json!(name);
            }
            cm
        };
        let maps = core("configmaps");
        objects
            .create(maps, Some("default"), cm(Some("web-aaaaa")), false)
            .await
            .unwrap();
        // The next suffixes are taken first ("aaaaa"), then free; popped from the end.
        SUFFIXES.with(|s| *s.borrow_mut() = vec!["ccccc".into(), "aaaaa".into()]);
        let one = objects
            .create(maps, Some("default"), cm(None), false)
            .await
            .unwrap();
        assert_eq!(one["metadata"]["name"], "web-ccccc");
        SUFFIXES.with(|s| {
            *s.borrow_mut() = vec![
                "eeeee".into(),
                "ddddd".into(),
                "aaaaa".into(),
                "ccccc".into(),
            ]
        });
        let many = objects
            .create_many(
                maps,
                vec![
                    (Some("default".into()), cm(None)),
                    (Some("default".into()), cm(None)),
                ],
            )
            .await
            .unwrap();
        let names: Vec<String> = many
            .iter()
            .map(|r| {
                r.as_ref().unwrap()["metadata"]["name"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        assert_eq!(names, ["web-ddddd", "web-eeeee"]);
        // A name the client chose is not changed: taken is AlreadyExists.
        let taken = objects
            .create(maps, Some("default"), cm(Some("web-aaaaa")), false)
            .await;
        assert!(
            matches!(taken, Err(ApiError::AlreadyExists { .. })),
            "{taken:?}"
        );
    }
}
