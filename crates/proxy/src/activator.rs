//! Holds connections to a Service that scales to zero while it has no endpoint, instead of closing
//! them (Knative's activator, in the proxy itself), and wakes the Service up on the shortest path:
//! - the first connection held for a Service on this node makes the proxy **scale its Deployment
//!   from 0 to 1 itself**: one JSON patch of the `scale` subresource whose `test` operation makes it
//!   a 0 → 1 only (proxies of several nodes, or the controller, may race; the first wins, the others'
//!   precondition fails). RBAC's `system:herd:activator` lets a proxy (and a node) patch
//!   `deployments/scale`, and the API server admits such a write only as 0 → 1 of a Deployment that
//!   scales to zero: every other decision (to zero, scale-out by concurrency) stays the scale-to-zero
//!   controller's. The node still publishes the held connection in its Lease
//!   ([`crate::Activity::hold`]), so the controller scales the Deployment up when this write cannot;
//! - while it holds connections for the Service, the proxy **watches the Service's selected pods**
//!   (a label-selector watch, as Knative's activator watches the revision's pods) and forwards a
//!   held connection to the first pod whose `Ready` condition is `True` (readiness is never
//!   bypassed), at its Service port's target port ([`herd_api::endpoints::resolve_target_port`],
//!   the Endpoints controllers' resolution), or to an endpoint of the [`Balancer`] if its
//!   EndpointSlice lists one first;
//! - a connection that found neither after [`HOLD_TIMEOUT`] is closed.
//!
//! Which Services scale to zero the proxy learns from their annotation
//! [`herd_api::autoscaling::ACTIVATOR`] (naming the Deployment), which the controller writes;
//! connections to any other Service without endpoints are closed at once, as kube-proxy rejects
//! them.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use futures::StreamExt as _;
use herd_api::autoscaling::ACTIVATOR;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::runtime::{WatchStreamExt as _, reflector, watcher};
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::balancer::Balancer;
use crate::routes::ServiceRef;

/// How long a held connection waits for an endpoint before it is closed: long enough for a node
/// that must pull and compile the image first (the KEDA HTTP add-on's interceptor waits 20 s).
pub const HOLD_TIMEOUT: Duration = Duration::from_secs(20);

/// How often a wake-up checks whether connections are still held for its Service.
const WAKE_CHECK: Duration = Duration::from_millis(100);

/// What every activator of one [`Balancer`] shares (kept in its [`crate::Activity`]).
#[derive(Debug)]
pub(crate) struct Shared {
    /// The Services that scale to zero (their selector, ports and, in [`ACTIVATOR`], Deployment).
    services: RwLock<HashMap<ServiceRef, Arc<Service>>>,
    /// The Services being woken by this proxy now.
    waking: Mutex<HashSet<ServiceRef>>,
    /// Hands wake-ups to the task that holds the API client ([`Activator::run`]).
    wakes: Mutex<Option<mpsc::UnboundedSender<ServiceRef>>>,
    /// The Ready pods (as JSON) of the Services being woken, from their pod watches.
    ready: watch::Sender<HashMap<ServiceRef, Vec<Value>>>,
    /// The pods of this proxy's node that its kubelet found Ready and a Service that scales to zero
    /// selects (as JSON, with the status being written), by UID: see [`LocalReadiness`].
    local: watch::Sender<HashMap<String, Arc<Value>>>,
}

impl Default for Shared {
    fn default() -> Self {
        Self {
            services: RwLock::default(),
            waking: Mutex::default(),
            wakes: Mutex::default(),
            ready: watch::channel(HashMap::new()).0,
            local: watch::channel(HashMap::new()).0,
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Shared {
    fn service(&self, service: &ServiceRef) -> Option<Arc<Service>> {
        self.services
            .read()
            .ok()
            .and_then(|s| s.get(service).cloned())
    }

    /// Starts a wake-up of `service` unless one runs; whether one runs now.
    fn wake(&self, service: &ServiceRef) -> bool {
        if !lock(&self.waking).insert(service.clone()) {
            return true;
        }
        let sent = lock(&self.wakes)
            .as_ref()
            .is_some_and(|wakes| wakes.send(service.clone()).is_ok());
        if !sent {
            // No API client (a proxy without [`Activator::run`]): the controller wakes it.
            lock(&self.waking).remove(service);
        }
        sent
    }

    /// The backends of `frontend` among the Ready pods a wake-up's watch saw or this node's kubelet
    /// found, once there is one.
    async fn ready_backends(&self, service: &ServiceRef, frontend: SocketAddr) -> Vec<SocketAddr> {
        let mut ready = self.ready.subscribe();
        let mut local = self.local.subscribe();
        loop {
            let backends = self.service(service).map_or_else(Vec::new, |svc| {
                let mut pods: Vec<Value> = ready
                    .borrow_and_update()
                    .get(service)
                    .cloned()
                    .unwrap_or_default();
                pods.extend(
                    local
                        .borrow_and_update()
                        .values()
                        .filter(|pod| selects(&svc, pod))
                        .map(|pod| Value::clone(pod)),
                );
                let mut backends = backends_of(&svc, frontend, &pods);
                backends.dedup();
                backends
            });
            if !backends.is_empty() {
                return backends;
            }
            tokio::select! {
                changed = ready.changed() => if changed.is_err() {
                    return std::future::pending().await;
                },
                changed = local.changed() => if changed.is_err() {
                    return std::future::pending().await;
                },
            }
        }
    }

    /// Whether a Service that scales to zero selects a pod of `namespace` labelled `labels`.
    fn selected(&self, namespace: Option<&str>, labels: impl Fn(&str, &str) -> bool) -> bool {
        self.services.read().is_ok_and(|services| {
            services
                .values()
                .any(|svc| selects_labels(svc, namespace, &labels))
        })
    }
}

/// Whether `svc` selects `pod` (JSON).
fn selects(svc: &Service, pod: &Value) -> bool {
    selects_labels(
        svc,
        pod.pointer("/metadata/namespace").and_then(Value::as_str),
        |key, value| {
            pod.pointer("/metadata/labels")
                .and_then(|labels| labels.get(key))
                .and_then(Value::as_str)
                == Some(value)
        },
    )
}

/// Whether `svc` selects a pod of `namespace` whose labels are those `labels(key, value)` holds for:
/// the same namespace, and each pair of its selector among the labels; a Service without a selector
/// selects no pod (its endpoints are managed by hand).
fn selects_labels(
    svc: &Service,
    namespace: Option<&str>,
    labels: impl Fn(&str, &str) -> bool,
) -> bool {
    let Some(selector) = svc
        .spec
        .as_ref()
        .and_then(|s| s.selector.as_ref())
        .filter(|s| !s.is_empty())
    else {
        return false;
    };
    namespace.is_some()
        && namespace == svc.metadata.namespace.as_deref()
        && selector.iter().all(|(key, value)| labels(key, value))
}

/// What this proxy's node's kubelet finds about its pods' readiness, handed to the activator as the
/// kubelet decides it, before its status write reaches the API server and a watch brings it back:
/// a connection held for a Service waking from zero goes to a pod of this node as soon as the
/// kubelet calls it Ready (the very verdict the status will publish; readiness is never bypassed),
/// one write and one watch sooner. Kept only for pods a Service that scales to zero selects.
#[derive(Clone, Debug)]
pub struct LocalReadiness {
    balancer: Balancer,
}

impl LocalReadiness {
    /// The readiness of the node of `balancer`'s proxy.
    pub fn new(balancer: &Balancer) -> Self {
        Self {
            balancer: balancer.clone(),
        }
    }

    fn shared(&self) -> &Shared {
        self.balancer.activity().activator()
    }

    /// The kubelet's status of pod `pod` is now `status` (about to be written).
    pub fn update(&self, pod: &Pod, status: &k8s_openapi::api::core::v1::PodStatus) {
        let Some(uid) = pod.metadata.uid.as_deref() else {
            return;
        };
        let shared = self.shared();
        let known = shared.local.borrow().contains_key(uid);
        let ready = status
            .conditions
            .iter()
            .flatten()
            .any(|c| c.type_ == "Ready" && c.status == "True");
        let labels = pod.metadata.labels.as_ref();
        let selected = ready
            && shared.selected(pod.metadata.namespace.as_deref(), |key, value| {
                labels.and_then(|l| l.get(key)).is_some_and(|v| v == value)
            });
        if !selected {
            if known {
                self.forget(uid);
            }
            return;
        }
        let pod = serde_json::to_value(pod).ok().map(|mut pod| {
            pod["status"] = serde_json::to_value(status).unwrap_or_default();
            pod
        });
        match pod.filter(is_ready) {
            Some(pod) => {
                shared.local.send_modify(|local| {
                    local.insert(uid.to_string(), Arc::new(pod));
                });
            }
            None if known => self.forget(uid),
            None => {}
        }
    }

    /// Pod `uid` left the node.
    pub fn forget(&self, uid: &str) {
        self.shared()
            .local
            .send_if_modified(|local| local.remove(uid).is_some());
    }
}

/// The `podIP:targetPort`s of `pods` for the port of `svc` that `frontend` (a cluster IP's port or
/// a NodePort) serves.
fn backends_of(svc: &Service, frontend: SocketAddr, pods: &[Value]) -> Vec<SocketAddr> {
    let ports = svc
        .spec
        .as_ref()
        .and_then(|s| s.ports.as_deref())
        .unwrap_or_default();
    let tcp = |p: &&k8s_openapi::api::core::v1::ServicePort| {
        p.protocol.as_deref().unwrap_or("TCP") == "TCP"
    };
    let port = i32::from(frontend.port());
    let Some(svc_port) = ports
        .iter()
        .filter(tcp)
        .find(|p| p.port == port || p.node_port == Some(port))
    else {
        return Vec::new();
    };
    pods.iter()
        .filter_map(|pod| {
            let ip: IpAddr = pod.pointer("/status/podIP")?.as_str()?.parse().ok()?;
            let port = herd_api::endpoints::resolve_target_port(pod, svc_port)?;
            Some(SocketAddr::new(ip, u16::try_from(port).ok()?))
        })
        .collect()
}

/// Whether `pod` may take traffic: Running, not terminating, with an IP and `Ready=True`.
fn is_ready(pod: &Value) -> bool {
    pod.pointer("/status/phase").and_then(Value::as_str) == Some("Running")
        && pod.pointer("/metadata/deletionTimestamp").is_none()
        && pod
            .pointer("/status/podIP")
            .and_then(Value::as_str)
            .is_some_and(|ip| !ip.is_empty())
        && pod
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .is_some_and(|conditions| {
                conditions
                    .iter()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            })
}

/// Decides which connections are held, holds them and wakes their Services. Cheap to make: every
/// activator of one [`Balancer`] shares its state (kept in the balancer's [`crate::Activity`]).
#[derive(Clone, Debug)]
pub struct Activator {
    balancer: Balancer,
    timeout: Duration,
}

impl Activator {
    /// An activator that waits on `balancer`'s table for endpoints.
    pub fn new(balancer: Balancer) -> Self {
        Self {
            balancer,
            timeout: HOLD_TIMEOUT,
        }
    }

    /// Holds connections for at most `timeout` instead of [`HOLD_TIMEOUT`].
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    fn shared(&self) -> &Shared {
        self.balancer.activity().activator()
    }

    /// Takes the Services that scale to zero from the current Service objects.
    pub fn update<'a>(&self, services: impl IntoIterator<Item = &'a Service>) {
        let now: HashMap<ServiceRef, Arc<Service>> = services
            .into_iter()
            .filter(|s| {
                s.metadata
                    .annotations
                    .as_ref()
                    .is_some_and(|a| a.contains_key(ACTIVATOR))
            })
            .filter_map(|s| {
                let service = ServiceRef {
                    namespace: s.metadata.namespace.clone()?,
                    name: s.metadata.name.clone()?,
                };
                Some((service, Arc::new(s.clone())))
            })
            .collect();
        self.balancer
            .activity()
            .set_scaling_to_zero(now.keys().cloned().collect());
        if let Ok(mut services) = self.shared().services.write() {
            *services = now;
        }
    }

    /// For a connection from `client` to `frontend` that found no endpoint: `None` when its Service
    /// does not scale to zero (close the connection); else a future that holds it while the Service
    /// wakes up and gives the backends to try, in order: an endpoint of the [`Balancer`]'s table or
    /// a Ready pod of the Service, whichever comes first; none when the hold timed out or the
    /// Service went (close it).
    pub fn hold(
        &self,
        frontend: SocketAddr,
        client: IpAddr,
    ) -> Option<impl Future<Output = Vec<SocketAddr>> + Send + 'static> {
        let service = self.balancer.service(frontend)?;
        if !self.balancer.activity().scales_to_zero(&service) {
            return None;
        }
        let woken_here = self.shared().wake(&service);
        let held = self.balancer.activity().hold(&service, woken_here);
        let (activator, timeout) = (self.clone(), self.timeout);
        Some(async move {
            let balancer = &activator.balancer;
            let woken = tokio::time::timeout(timeout, async {
                tokio::select! {
                    biased;
                    listed = balancer.wait_for_backends(frontend) => if listed {
                        balancer.candidates(frontend, client)
                    } else {
                        Vec::new()
                    },
                    ready = activator.shared().ready_backends(&service, frontend) => ready,
                }
            })
            .await;
            drop(held);
            woken.unwrap_or_else(|_| {
                tracing::info!(%frontend, service = %format!("{}/{}", service.namespace, service.name),
                    ?timeout, "no endpoint came up while the connection was held; closing it");
                Vec::new()
            })
        })
    }

    /// Wakes Services up with `client` until `shutdown`: for each Service a connection is first held
    /// for, the 0 → 1 write of its Deployment's scale and a watch of its pods while connections are
    /// held.
    pub async fn run(self, client: kube::Client, shutdown: CancellationToken) {
        let (sender, mut wakes) = mpsc::unbounded_channel();
        *lock(&self.shared().wakes) = Some(sender);
        // A connection in the pool for the first wake-up's write (see [`Activator::wake`]).
        let warm = client.clone();
        tokio::spawn(async move { warm.apiserver_version().await });
        let mut tasks = tokio::task::JoinSet::new();
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                Some(service) = wakes.recv() => {
                    tasks.spawn(self.clone().wake(client.clone(), service));
                }
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            }
        }
        lock(&self.shared().wakes).take();
        tasks.abort_all();
    }

    /// One wake-up of `service`: runs while connections are held for it.
    async fn wake(self, client: kube::Client, service: ServiceRef) {
        tracing::debug!(service = %format!("{}/{}", service.namespace, service.name), "waking");
        let shared = self.shared();
        if let Some(svc) = shared.service(&service) {
            let deployment = svc
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(ACTIVATOR))
                .cloned()
                .unwrap_or_default();
            // The scale first; the node's Lease (for the controller) right after it.
            let writer = client.clone();
            let scaling = async {
                scale_from_zero(writer, service.namespace.clone(), deployment).await;
                self.balancer.activity().publish_now();
            };
            let selector = svc
                .spec
                .as_ref()
                .and_then(|s| s.selector.as_ref())
                .filter(|s| !s.is_empty())
                .map(|s| {
                    s.iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect::<Vec<_>>()
                        .join(",")
                });
            let watching = async {
                match selector {
                    Some(selector) => self.watch_pods(client.clone(), &service, &selector).await,
                    None => self.while_held(&service).await,
                }
            };
            // One after the other: the pods are not Ready before the scale's ReplicaSet, pod, binding
            // and start, and the watch's list would otherwise take a connection beside the write's.
            scaling.await;
            watching.await;
            // Dropping the watch closed its connection to the API server: open a fresh one now (a
            // GET of /version, which every authenticated user may read) so that the next wake-up's
            // scale write finds one in the client's pool instead of waiting for a TLS handshake.
            if let Err(error) = client.apiserver_version().await {
                tracing::debug!(%error, "warming the API connection after a wake-up");
            }
        }
        shared.ready.send_modify(|ready| {
            ready.remove(&service);
        });
        lock(&shared.waking).remove(&service);
        // A connection held just before the wake-up ended starts the next one.
        if self.balancer.activity().service(&service).held() > 0 {
            shared.wake(&service);
        }
    }

    /// Returns once no connection is held for `service`.
    async fn while_held(&self, service: &ServiceRef) {
        let counters = self.balancer.activity().service(service);
        while counters.held() > 0 {
            tokio::time::sleep(WAKE_CHECK).await;
        }
    }

    /// Keeps the Ready pods selected by `selector` in the shared state while connections are held
    /// for `service`.
    async fn watch_pods(&self, client: kube::Client, service: &ServiceRef, selector: &str) {
        let pods: kube::Api<Pod> = kube::Api::namespaced(client, &service.namespace);
        let (store, writer) = reflector::store::<Pod>();
        let events = reflector(
            writer,
            watcher(pods, watcher::Config::default().labels(selector)),
        )
        .default_backoff();
        let mut events = std::pin::pin!(events);
        let held = self.while_held(service);
        let mut held = std::pin::pin!(held);
        loop {
            tokio::select! {
                () = &mut held => return,
                event = events.next() => match event {
                    None => return,
                    Some(Err(watcher::Error::InitialListFailed(kube::Error::Api(status))))
                        if status.code == 403 =>
                    {
                        // A node's identity sees only its own pods: wait for the EndpointSlice.
                        tracing::debug!(%status, "not allowed to watch a waking Service's pods");
                        return held.await;
                    }
                    Some(Err(error)) => {
                        tracing::debug!(%error, "watching a waking Service's pods failed, retrying");
                    }
                    Some(Ok(_)) => {
                        let ready: Vec<Value> = store
                            .state()
                            .iter()
                            .filter_map(|pod| serde_json::to_value(&**pod).ok())
                            .filter(is_ready)
                            .collect();
                        if !ready.is_empty() {
                            tracing::debug!(ready = ready.len(), "a waking Service's pod is Ready");
                        }
                        self.shared().ready.send_modify(|all| {
                            all.insert(service.clone(), ready);
                        });
                    }
                },
            }
        }
    }
}

/// Scales Deployment `name` of `namespace` from 0 to 1 replica: one JSON patch of its `scale`
/// subresource whose `test` makes it a no-op (422) unless the Deployment is at zero. A failure only
/// costs time: the controller scales it up from the node's published counts.
async fn scale_from_zero(client: kube::Client, namespace: String, name: String) {
    if name.is_empty() {
        return;
    }
    let patch = json!([
        {"op": "test", "path": "/spec/replicas", "value": 0},
        {"op": "replace", "path": "/spec/replicas", "value": 1},
    ]);
    let request = http::Request::patch(format!(
        "/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale"
    ))
    .header(http::header::CONTENT_TYPE, "application/json-patch+json")
    .body(patch.to_string().into_bytes());
    let request = match request {
        Ok(request) => request,
        Err(error) => {
            tracing::warn!(%error, "building the scale patch");
            return;
        }
    };
    match client.request::<Value>(request).await {
        Ok(_) => tracing::debug!(%namespace, deployment = %name, "scaled from zero to 1"),
        // Woken already (by another node's proxy or the controller).
        Err(kube::Error::Api(status)) if status.code == 422 || status.code == 409 => {}
        Err(error) => tracing::info!(%namespace, deployment = %name, %error,
            "waking the Deployment failed; the scale-to-zero controller wakes it"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routes::RoutingTable;

    fn web() -> Service {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "default",
                "annotations": {ACTIVATOR: "web"}},
            "spec": {"clusterIP": "127.10.0.1", "selector": {"app": "web"},
                "ports": [{"port": 80, "targetPort": "http"}]}
        }))
        .expect("service")
    }

    #[tokio::test]
    async fn holds_only_services_that_scale_to_zero_until_an_endpoint_comes() {
        let balancer = Balancer::new();
        let activator = Activator::new(balancer.clone()).with_timeout(Duration::from_secs(5));
        let service = web();
        let frontend: SocketAddr = "127.10.0.1:80".parse().expect("addr");
        let client: IpAddr = "127.0.0.1".parse().expect("ip");
        let empty = RoutingTable::from_objects([&service], []);
        balancer.update(empty.clone());
        assert!(
            activator.hold(frontend, client).is_none(),
            "not yet known to scale to zero"
        );
        activator.update([&service]);
        let held = tokio::spawn(activator.hold(frontend, client).expect("held"));
        tokio::task::yield_now().await;
        assert_eq!(balancer.activity().snapshot()["default/web"].held, 1);
        let mut ready = empty;
        ready.insert(frontend, vec!["127.1.0.5:8080".parse().expect("addr")]);
        balancer.update(ready);
        assert_eq!(
            held.await.expect("joined"),
            vec!["127.1.0.5:8080".parse::<SocketAddr>().expect("addr")]
        );
        assert_eq!(balancer.activity().snapshot()["default/web"].held, 0);
    }

    #[tokio::test]
    async fn a_held_connection_goes_to_a_ready_pod_before_its_endpoint_slice_lists_it() {
        let balancer = Balancer::new();
        let activator = Activator::new(balancer.clone()).with_timeout(Duration::from_secs(5));
        let service = web();
        let frontend: SocketAddr = "127.10.0.1:80".parse().expect("addr");
        balancer.update(RoutingTable::from_objects([&service], []));
        activator.update([&service]);
        let held = tokio::spawn(
            activator
                .hold(frontend, "127.0.0.1".parse().expect("ip"))
                .expect("held"),
        );
        let pod = |ip: &str, ready: &str| {
            json!({
                "metadata": {"name": format!("web-{ip}"), "labels": {"app": "web"}},
                "spec": {"containers": [{"name": "c", "ports": [{"name": "http", "containerPort": 8080}]}]},
                "status": {"phase": "Running", "podIP": ip,
                    "conditions": [{"type": "Ready", "status": ready}]},
            })
        };
        let service_ref = ServiceRef {
            namespace: "default".into(),
            name: "web".into(),
        };
        // What a wake-up's pod watch keeps: only pods whose Ready condition is True.
        let watched: Vec<Value> = [pod("127.1.0.7", "False"), pod("127.1.0.8", "True")]
            .into_iter()
            .filter(is_ready)
            .collect();
        activator.shared().ready.send_modify(|all| {
            all.insert(service_ref, watched);
        });
        // The EndpointSlice still lists nothing; the Ready pod's target port is resolved by name.
        assert_eq!(
            held.await.expect("joined"),
            vec!["127.1.0.8:8080".parse::<SocketAddr>().expect("addr")]
        );
        let mut leaving = pod("127.1.0.9", "True");
        leaving["metadata"]["deletionTimestamp"] = json!("2026-12-07T00:00:00Z");
        assert!(
            !is_ready(&leaving),
            "a terminating pod takes no new connection"
        );
    }

    #[tokio::test]
    async fn a_held_connection_goes_to_a_pod_its_node_found_ready_before_the_status_is_written() {
        let balancer = Balancer::new();
        let activator = Activator::new(balancer.clone()).with_timeout(Duration::from_secs(5));
        let local = LocalReadiness::new(&balancer);
        let service = web();
        let frontend: SocketAddr = "127.10.0.1:80".parse().expect("addr");
        balancer.update(RoutingTable::from_objects([&service], []));
        activator.update([&service]);
        let pod = |name: &str, namespace: &str, app: &str| -> Pod {
            serde_json::from_value(json!({
                "metadata": {"name": name, "namespace": namespace, "uid": format!("uid-{name}"),
                    "labels": {"app": app}},
                "spec": {"containers": [{"name": "c", "ports": [{"name": "http", "containerPort": 8080}]}]},
            }))
            .expect("pod")
        };
        let status = |ip: &str, ready: &str| -> k8s_openapi::api::core::v1::PodStatus {
            serde_json::from_value(json!({"phase": "Running", "podIP": ip,
                "conditions": [{"type": "Ready", "status": ready}]}))
            .expect("status")
        };
        let held = tokio::spawn(
            activator
                .hold(frontend, "127.0.0.1".parse().expect("ip"))
                .expect("held"),
        );
        // Not selected (another app, the same labels in another namespace) or not Ready: not kept.
        local.update(
            &pod("other", "default", "other"),
            &status("127.1.0.2", "True"),
        );
        local.update(
            &pod("elsewhere", "prod", "web"),
            &status("127.1.0.3", "True"),
        );
        local.update(
            &pod("web-1", "default", "web"),
            &status("127.1.0.4", "False"),
        );
        assert!(activator.shared().local.borrow().is_empty());
        tokio::task::yield_now().await;
        assert!(!held.is_finished(), "no Ready pod of the Service yet");
        // The kubelet finds it Ready: the held connection goes there, its target port resolved by name.
        local.update(
            &pod("web-1", "default", "web"),
            &status("127.1.0.4", "True"),
        );
        assert_eq!(
            held.await.expect("joined"),
            vec!["127.1.0.4:8080".parse::<SocketAddr>().expect("addr")]
        );
        // No longer Ready, or gone: forgotten.
        local.update(
            &pod("web-1", "default", "web"),
            &status("127.1.0.4", "False"),
        );
        assert!(activator.shared().local.borrow().is_empty());
        local.update(
            &pod("web-2", "default", "web"),
            &status("127.1.0.5", "True"),
        );
        assert_eq!(activator.shared().local.borrow().len(), 1);
        local.forget("uid-web-2");
        assert!(activator.shared().local.borrow().is_empty());
    }
}
