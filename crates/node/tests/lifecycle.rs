//! The node agent against a real control plane and registry: crash back-off, init containers,
//! an agent restarted on the same data dir picking its pod up again, and configMap/secret volumes and
//! environments fed by the node's one shared cache.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::Request;
use axum::http::Method;
use axum::middleware::Next;

use herd_control::{ControlConfig, ControlPlane};
use herd_node::NodeConfig;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

struct Cluster {
    client: kube::Client,
    registry: SocketAddr,
    /// Trusting the cluster CA (the registry's serving certificate) and offering the admin's certificate.
    registry_tls: herd_oci_fetch::TlsOptions,
    /// How many blob downloads (`GET /v2/<repository>/blobs/<digest>`) the registry has answered.
    blob_downloads: Arc<AtomicUsize>,
    /// Every request the node agent sent to the API server, as `METHOD path?query`.
    node_requests: Arc<Mutex<Vec<String>>>,
    shutdown: CancellationToken,
    plane: Option<ControlPlane>,
    /// The node agent started by `start_node`, and its stop token.
    agent: Option<(CancellationToken, JoinHandle<()>)>,
    dir: tempfile::TempDir,
}

impl Cluster {
    async fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut cfg = ControlConfig::new(
            dir.path().join("control"),
            "127.0.0.1:0".parse().expect("addr"),
        );
        // The tests of this file run at once in one process: each cluster gets its own ranges, or their
        // pods would get the same IPs and one pod's listener would take another's port.
        static CLUSTERS: AtomicUsize = AtomicUsize::new(0);
        let n = CLUSTERS.fetch_add(1, Ordering::SeqCst);
        cfg.service_cidr = format!("127.251.{n}.0/24").parse().expect("cidr");
        cfg.cluster_cidr = format!("127.{}.0.0/16", 200 + n).parse().expect("cidr");
        let shutdown = CancellationToken::new();
        let plane = ControlPlane::start(cfg, shutdown.clone())
            .await
            .expect("control plane");
        let admin = plane
            .kubeconfig("kubernetes-admin", Some("system:masters"))
            .expect("admin credentials");
        let config = herd_node::kube_config(&admin).await.expect("admin config");
        let client = kube::Client::try_from(config).expect("client");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let registry = listener.local_addr().expect("addr");
        let blob_downloads = Arc::new(AtomicUsize::new(0));
        let counted = blob_downloads.clone();
        let serving = plane
            .ca()
            .issue_serving(
                "herd-registry",
                &herd_pki::serving_sans(&[registry.ip()], None, &[]),
                Duration::from_secs(3600),
            )
            .expect("registry certificate");
        let registry_tls = herd_oci_fetch::TlsOptions {
            identity: Some(herd_oci_fetch::ClientIdentity {
                cert_pem: admin.client.cert_pem.clone(),
                key_pem: admin.client.key_pem.clone(),
            }),
            ..herd_oci_fetch::TlsOptions::trusting_pem(plane.ca().cert_pem()).expect("CA")
        };
        let tls = herd_pki::tls::server_config(plane.ca().cert_pem(), &serving).expect("TLS");
        let router = herd_registry::router(dir.path().join("registry"), None).layer(
            axum::middleware::from_fn(move |request: Request, next: Next| {
                if request.method() == Method::GET && request.uri().path().contains("/blobs/") {
                    counted.fetch_add(1, Ordering::SeqCst);
                }
                next.run(request)
            }),
        );
        let stop = shutdown.clone();
        tokio::spawn(herd_registry::serve_router(
            listener,
            router,
            Arc::new(tls),
            stop,
        ));
        Self {
            client,
            registry,
            registry_tls,
            blob_downloads,
            node_requests: Arc::default(),
            shutdown,
            plane: Some(plane),
            agent: None,
            dir,
        }
    }

    /// Pushes a sample app, returning its image reference.
    async fn push(&self, app: &str) -> String {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join(format!("../../sample-apps/dist/{app}.wasm"));
        let wasm = std::fs::read(&path).expect("sample app built");
        let image = format!("{}/{app}:v1", self.registry);
        herd_oci_fetch::push_with(&wasm, &image, &[], None, &self.registry_tls)
            .await
            .expect("push");
        image
    }

    async fn node(&self, shutdown: &CancellationToken) -> JoinHandle<()> {
        let mut cfg = NodeConfig::new("lifecycle-node", self.dir.path().join("node"));
        cfg.crash_loop_back_off_base = Duration::from_millis(100);
        cfg.lease_renew_interval = Duration::from_secs(1);
        cfg.trusted_ca_certificates = self.registry_tls.extra_root_certificates.clone();
        let plane = self.plane.as_ref().expect("control plane running");
        cfg.kubelet_tls = herd_node::KubeletTls {
            client_ca_pem: plane.ca().cert_pem().to_string(),
            serving: Some(
                plane
                    .ca()
                    .issue_kubelet_serving(
                        "lifecycle-node",
                        &[cfg.address],
                        Duration::from_secs(3600),
                    )
                    .expect("kubelet serving certificate"),
            ),
            approve_own_serving_csr: false,
        };
        let credentials = plane
            .kubeconfig("system:node:lifecycle-node", Some("system:nodes"))
            .expect("node credentials");
        let config = herd_node::kube_config(&credentials)
            .await
            .expect("node config");
        let recorded = self.node_requests.clone();
        let record = tower::util::MapRequestLayer::new(
            move |request: axum::http::Request<kube::client::Body>| {
                let line = format!("{} {}", request.method(), request.uri());
                recorded.lock().expect("requests").push(line);
                request
            },
        );
        let client = kube::client::ClientBuilder::try_from(config)
            .expect("client")
            .with_layer(&record)
            .build();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            herd_node::run(client, cfg, shutdown)
                .await
                .expect("node runs")
        })
    }

    fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), "default")
    }

    async fn create(&self, pod: Value) {
        let pod: Pod = serde_json::from_value(pod).expect("pod");
        self.pods()
            .create(&PostParams::default(), &pod)
            .await
            .expect("created");
    }

    /// Polls the pod until `done` holds (as JSON), for at most `timeout`.
    async fn wait(
        &self,
        name: &str,
        timeout: Duration,
        mut done: impl FnMut(&Value) -> bool,
    ) -> Value {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let pod = self
                .pods()
                .get(name)
                .await
                .map(|p| serde_json::to_value(p).expect("json"));
            if let Ok(pod) = &pod
                && done(pod)
            {
                return pod.clone();
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {name}: {pod:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Runs the node agent until [`Cluster::stop`].
    async fn start_node(&mut self) {
        let stop = CancellationToken::new();
        self.agent = Some((stop.clone(), self.node(&stop).await));
    }

    async fn stop(mut self) {
        if let Some((stop, agent)) = self.agent.take() {
            stop.cancel();
            agent.await.expect("node task");
        }
        self.shutdown.cancel();
        if let Some(plane) = self.plane.take() {
            let _ = plane.wait().await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_of_a_new_image_starting_at_once_download_it_once() {
    let mut cluster = Cluster::start().await;
    let image = cluster.push("http-hello").await;
    let names: Vec<String> = (0..24).map(|i| format!("web-{i}")).collect();
    // Every pod is there before the node agent starts: its first list hands it all of them at once.
    for name in &names {
        cluster
            .create(pod(
                name,
                json!({"containers": [{"name": "web", "image": image,
                                       "ports": [{"containerPort": 8080}]}]}),
            ))
            .await;
    }
    let before = cluster.blob_downloads.load(Ordering::SeqCst);
    cluster.start_node().await;
    for name in &names {
        cluster
            .wait(name, Duration::from_secs(60), |pod| {
                pod["status"]["phase"] == "Running"
            })
            .await;
    }
    // The Wasm layer, once (the manifest's config blob is never fetched: oci-client reads only the
    // manifest and the layer).
    assert_eq!(
        cluster.blob_downloads.load(Ordering::SeqCst) - before,
        1,
        "one download of the image for {} pods",
        names.len()
    );
    cluster.stop().await;
}

fn pod(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"},
           "spec": spec})
}

fn waiting(pod: &Value, index: usize) -> (String, String) {
    let w = &pod["status"]["containerStatuses"][index]["state"]["waiting"];
    (
        w["reason"].as_str().unwrap_or_default().to_owned(),
        w["message"].as_str().unwrap_or_default().to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_loop_back_off_doubles_and_keeps_the_last_state() {
    let mut cluster = Cluster::start().await;
    let image = cluster.push("hello").await;
    cluster.start_node().await;
    cluster
        .create(pod(
            "crasher",
            json!({"containers": [{"name": "c", "image": image, "args": ["--exit=3"]}]}),
        ))
        .await;
    let mut delays: Vec<String> = Vec::new();
    let pod = cluster
        .wait("crasher", Duration::from_secs(60), |pod| {
            let (reason, message) = waiting(pod, 0);
            if reason == "CrashLoopBackOff" {
                let delay = message
                    .split_whitespace()
                    .nth(1)
                    .unwrap_or_default()
                    .to_owned();
                if delays.last() != Some(&delay) {
                    delays.push(delay);
                }
            }
            delays.len() >= 3
        })
        .await;
    // A poll may miss a short delay; the ones seen are in order and never shrink.
    let order = ["100ms", "200ms", "400ms", "800ms", "1.6s", "3.2s"];
    let seen: Vec<usize> = delays
        .iter()
        .map(|d| order.iter().position(|o| o == d).expect("a doubling delay"))
        .collect();
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "{delays:?}");
    let (_, message) = waiting(&pod, 0);
    let uid = pod["metadata"]["uid"].as_str().unwrap_or_default();
    assert!(
        message.ends_with(&format!(
            "restarting failed container=c pod=crasher_default({uid})"
        )),
        "{message}"
    );
    let status = &pod["status"]["containerStatuses"][0];
    assert!(
        status["restartCount"].as_i64().unwrap_or(0) >= 2,
        "{status}"
    );
    let last = &status["lastState"]["terminated"];
    assert_eq!(
        (last["exitCode"].as_i64(), last["reason"].as_str()),
        (Some(3), Some("Error"))
    );
    assert_eq!(pod["status"]["phase"], "Running");
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_containers_run_in_order_before_the_app() {
    let mut cluster = Cluster::start().await;
    let image = cluster.push("hello").await;
    cluster.start_node().await;
    cluster
        .create(pod(
            "staged",
            json!({
                "restartPolicy": "Never",
                "initContainers": [
                    {"name": "first", "image": image, "args": ["--sleep-ms=300"]},
                    {"name": "second", "image": image},
                ],
                "containers": [{"name": "app", "image": image}],
            }),
        ))
        .await;
    let mut saw_initializing = false;
    let pod = cluster
        .wait("staged", Duration::from_secs(60), |pod| {
            if waiting(pod, 0).0 == "PodInitializing" {
                assert_eq!(pod["status"]["phase"], "Pending");
                saw_initializing = true;
            }
            pod["status"]["phase"] == "Succeeded"
        })
        .await;
    assert!(saw_initializing, "the app waited as PodInitializing");
    let inits = pod["status"]["initContainerStatuses"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let term = |i: usize, field: &str| {
        inits[i]["state"]["terminated"][field]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(
        (term(0, "reason"), term(1, "reason")),
        ("Completed".into(), "Completed".into())
    );
    assert!(term(1, "startedAt") >= term(0, "finishedAt"), "{inits:?}");
    let app = &pod["status"]["containerStatuses"][0]["state"]["terminated"];
    assert!(
        app["startedAt"].as_str().unwrap_or_default() >= term(1, "finishedAt").as_str(),
        "{pod}"
    );
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_agent_resumes_its_pod_with_the_restart_count() {
    let cluster = Cluster::start().await;
    let image = cluster.push("hello").await;
    let first = CancellationToken::new();
    let node = cluster.node(&first).await;
    cluster
        .create(pod(
            "survivor",
            json!({"containers": [{"name": "c", "image": image, "args": ["--sleep-ms=600000"]}]}),
        ))
        .await;
    let running =
        |pod: &Value| pod["status"]["containerStatuses"][0]["state"]["running"].is_object();
    let before = cluster
        .wait("survivor", Duration::from_secs(60), running)
        .await;
    first.cancel();
    node.await.expect("first agent");

    let second = CancellationToken::new();
    let node = cluster.node(&second).await;
    let after = cluster
        .wait("survivor", Duration::from_secs(60), |pod| {
            running(pod) && pod["status"]["containerStatuses"][0]["restartCount"] == 1
        })
        .await;
    assert_eq!(after["status"]["podIP"], before["status"]["podIP"]);
    let last = &after["status"]["containerStatuses"][0]["lastState"]["terminated"];
    assert_eq!(last["reason"], "Unknown", "{last}");
    // One log file per run, the first one kept.
    let uid = after["metadata"]["uid"].as_str().unwrap_or_default();
    let logs = cluster
        .dir
        .path()
        .join(format!("node/pods/default_survivor_{uid}/c"));
    let mut files: Vec<String> = std::fs::read_dir(&logs)
        .expect("log dir")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    files.sort();
    assert_eq!(files, ["0.log", "1.log"]);
    let first_log = std::fs::read_to_string(logs.join("0.log")).expect("first run's log");
    assert!(first_log.contains("Hello from herd!"), "{first_log}");
    second.cancel();
    node.await.expect("second agent");
    cluster.stop().await;
}

fn condition(pod: &Value, type_: &str) -> String {
    pod["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == type_)
        .and_then(|c| c["status"].as_str())
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wasi_http_pod_is_reported_running_and_ready_in_one_write() {
    use futures::StreamExt;
    use kube::api::{WatchEvent, WatchParams};
    let mut cluster = Cluster::start().await;
    let image = cluster.push("http-hello").await;
    // Warm: the image is pulled and compiled, so the first status of each pod below finds it Running.
    cluster
        .create(pod(
            "warm",
            json!({"containers": [{"name": "web", "image": image,
                                   "ports": [{"containerPort": 8080}]}]}),
        ))
        .await;
    cluster.start_node().await;
    cluster
        .wait("warm", Duration::from_secs(60), |pod| {
            condition(pod, "Ready") == "True"
        })
        .await;
    let names: Vec<String> = (0..8).map(|i| format!("web-{i}")).collect();
    let mut events = cluster
        .pods()
        .watch(&WatchParams::default(), "0")
        .await
        .expect("watch")
        .boxed();
    for name in &names {
        cluster
            .create(pod(
                name,
                json!({"containers": [{"name": "web", "image": image,
                                       "ports": [{"containerPort": 8080}]}]}),
            ))
            .await;
    }
    // Every status the node writes for these pods, until all are Ready.
    let mut written: std::collections::HashMap<String, Vec<Value>> = Default::default();
    let mut ready = std::collections::HashSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while ready.len() < names.len() {
        let event = tokio::time::timeout_at(deadline, events.next())
            .await
            .expect("all ready in time")
            .expect("watch open")
            .expect("event");
        let WatchEvent::Modified(pod) = event else {
            continue;
        };
        let pod = serde_json::to_value(pod).expect("json");
        let name = pod["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if !names.contains(&name) || pod["status"]["containerStatuses"].is_null() {
            continue;
        }
        let seen = written.entry(name.clone()).or_default();
        if seen.last() != Some(&pod["status"]) {
            seen.push(pod["status"].clone());
        }
        if condition(&pod, "Ready") == "True" {
            ready.insert(name);
        }
    }
    // The listener is bound by the run's first poll: Running is never reported without Ready.
    for (name, statuses) in &written {
        for status in statuses {
            let running = !status["containerStatuses"][0]["state"]["running"].is_null();
            assert!(
                !running || status["containerStatuses"][0]["ready"] == true,
                "{name} was reported Running but not Ready: {status}"
            );
        }
    }
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_restart_the_unhealthy_and_gate_readiness() {
    let mut cluster = Cluster::start().await;
    let image = cluster.push("http-hello").await;
    cluster.start_node().await;
    let web = |probe: &str, check: Value| {
        let mut container =
            json!({"name": "web", "image": image, "ports": [{"containerPort": 8080}]});
        container[probe] = check;
        json!({"containers": [container]})
    };
    cluster
        .create(pod("unhealthy", web("livenessProbe", json!({
            "httpGet": {"path": "/status/500", "port": 8080}, "periodSeconds": 1, "failureThreshold": 2
        }))))
        .await;
    cluster
        .create(pod(
            "unready",
            web(
                "readinessProbe",
                json!({
                    "httpGet": {"path": "/status/503", "port": 8080}, "periodSeconds": 1
                }),
            ),
        ))
        .await;
    cluster
        .create(pod("plain", web("readinessProbe", json!(null))))
        .await;
    let pod = cluster
        .wait("unhealthy", Duration::from_secs(60), |pod| {
            pod["status"]["containerStatuses"][0]["restartCount"]
                .as_i64()
                .unwrap_or(0)
                >= 1
        })
        .await;
    let last = &pod["status"]["containerStatuses"][0]["lastState"]["terminated"];
    assert_eq!(last["exitCode"], 137, "{last}");

    let plain = cluster
        .wait("plain", Duration::from_secs(30), |pod| {
            condition(pod, "Ready") == "True"
        })
        .await;
    assert_eq!(plain["status"]["containerStatuses"][0]["ready"], true);
    // Probed three times by now, never ready, never restarted.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let unready = cluster
        .wait("unready", Duration::from_secs(1), |_| true)
        .await;
    assert_eq!(unready["status"]["phase"], "Running", "{unready}");
    assert_eq!(condition(&unready, "Ready"), "False");
    assert_eq!(condition(&unready, "ContainersReady"), "False");
    let status = &unready["status"]["containerStatuses"][0];
    assert_eq!(
        (status["ready"].as_bool(), status["restartCount"].as_i64()),
        (Some(false), Some(0))
    );
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_module_pod_ends_at_once_as_by_sigterm() {
    // A guest cannot handle SIGTERM, whose default action ends a process: the pod goes at once instead of
    // running out its 30 s grace period.
    let mut cluster = Cluster::start().await;
    let image = cluster.push("hello").await;
    cluster.start_node().await;
    cluster
        .create(pod(
            "graceful",
            json!({
                "terminationGracePeriodSeconds": 30,
                "containers": [{"name": "c", "image": image, "args": ["--sleep-ms=600000"]}]
            }),
        ))
        .await;
    cluster
        .wait("graceful", Duration::from_secs(60), |pod| {
            pod["status"]["containerStatuses"][0]["state"]["running"].is_object()
        })
        .await;
    let began = tokio::time::Instant::now();
    cluster
        .pods()
        .delete("graceful", &kube::api::DeleteParams::default())
        .await
        .expect("delete");
    while cluster
        .pods()
        .get_opt("graceful")
        .await
        .expect("get")
        .is_some()
    {
        assert!(
            began.elapsed() < Duration::from_secs(20),
            "still there: the module ran on into its grace period"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    cluster.stop().await;
}

impl Cluster {
    /// A file of pod `name`'s volume on the node (`<volume>/<file>`), `None` while absent.
    fn volume_file(&self, pod: &Value, volume_file: &str) -> Option<String> {
        let (name, uid) = (
            pod["metadata"]["name"].as_str().unwrap_or_default(),
            pod["metadata"]["uid"].as_str().unwrap_or_default(),
        );
        let path = self.dir.path().join(format!(
            "node/pods/default_{name}_{uid}/volumes/{volume_file}"
        ));
        std::fs::read_to_string(path).ok()
    }

    /// Waits until every pod's `volume_file` holds `want`.
    async fn wait_files(&self, pods: &[Value], volume_file: &str, want: &str) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        for pod in pods {
            while self.volume_file(pod, volume_file).as_deref() != Some(want) {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "{volume_file} of {} is {:?}, not {want:?}",
                    pod["metadata"]["name"],
                    self.volume_file(pod, volume_file)
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }

    /// The node agent's requests whose path contains `part`.
    fn node_requests_to(&self, part: &str) -> Vec<String> {
        let requests = self.node_requests.lock().expect("requests");
        requests
            .iter()
            .filter(|r| r.contains(part))
            .cloned()
            .collect()
    }

    /// The node read each (collection, object) pair through its shared watch: no GET of the object itself,
    /// and fewer requests to the collection (one list and one watch, resumed when the server ends it) than
    /// there are `pods`.
    fn assert_watched_not_fetched(&self, objects: &[(&str, &str)], pods: usize) {
        for (kind, named) in objects {
            assert_eq!(
                self.node_requests_to(named),
                Vec::<String>::new(),
                "no GET of the object itself"
            );
            let all = self.node_requests_to(kind);
            assert!(
                all.len() < pods,
                "{} requests for {pods} pods: {all:#?}",
                all.len(),
            );
        }
    }

    async fn apply_json<K>(&self, object: Value)
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + serde::de::DeserializeOwned
            + serde::Serialize
            + std::fmt::Debug,
    {
        let api: Api<K> = Api::namespaced(self.client.clone(), "default");
        let name = object["metadata"]["name"]
            .as_str()
            .expect("name")
            .to_owned();
        let params = kube::api::PatchParams::apply("lifecycle-test").force();
        api.patch(&name, &params, &kube::api::Patch::Apply(object))
            .await
            .expect("applied");
    }
}

fn config_map(name: &str, data: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
           "metadata": {"name": name, "namespace": "default"}, "data": data})
}

fn secret(name: &str, string_data: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Secret",
           "metadata": {"name": name, "namespace": "default"}, "stringData": string_data})
}

/// The kubelet's watch-based ConfigMap/Secret manager: the pods of a node that mount one ConfigMap and
/// one Secret make the node watch each once — no GET of either per pod, however many pods — and an
/// update of either reaches every pod's files.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_mounting_one_config_map_and_secret_share_one_watch_of_each() {
    use k8s_openapi::api::core::v1::{ConfigMap, Secret};
    let mut cluster = Cluster::start().await;
    let image = cluster.push("hello").await;
    cluster
        .apply_json::<ConfigMap>(config_map("shared", json!({"greeting": "hello"})))
        .await;
    cluster
        .apply_json::<Secret>(secret("creds", json!({"password": "hunter2"})))
        .await;
    cluster.start_node().await;
    let names: Vec<String> = (0..8).map(|i| format!("reader-{i}")).collect();
    for name in &names {
        cluster
            .create(pod(
                name,
                json!({
                    "containers": [{"name": "c", "image": image, "args": ["--sleep-ms=600000"],
                                    "volumeMounts": [{"name": "config", "mountPath": "/etc/config"},
                                                     {"name": "creds", "mountPath": "/etc/creds"}]}],
                    "volumes": [{"name": "config", "configMap": {"name": "shared"}},
                                {"name": "creds", "secret": {"secretName": "creds"}}],
                }),
            ))
            .await;
    }
    let mut pods = Vec::new();
    for name in &names {
        let running =
            |pod: &Value| pod["status"]["containerStatuses"][0]["state"]["running"].is_object();
        pods.push(cluster.wait(name, Duration::from_secs(60), running).await);
    }
    cluster.wait_files(&pods, "config/greeting", "hello").await;
    cluster.wait_files(&pods, "creds/password", "hunter2").await;

    cluster
        .apply_json::<ConfigMap>(config_map("shared", json!({"greeting": "bonjour"})))
        .await;
    cluster
        .apply_json::<Secret>(secret("creds", json!({"password": "correct horse"})))
        .await;
    cluster
        .wait_files(&pods, "config/greeting", "bonjour")
        .await;
    cluster
        .wait_files(&pods, "creds/password", "correct horse")
        .await;

    cluster.assert_watched_not_fetched(
        &[
            ("/configmaps", "/configmaps/shared"),
            ("/secrets", "/secrets/creds"),
        ],
        names.len(),
    );
    cluster.stop().await;
}

/// A pod whose ConfigMap does not exist waits in ContainerCreating with the kubelet's FailedMount event,
/// and starts once the ConfigMap is created (the node's watch of it sees the creation).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_waits_for_its_missing_config_map_and_starts_once_it_is_created() {
    use k8s_openapi::api::core::v1::{ConfigMap, Event};
    let mut cluster = Cluster::start().await;
    let image = cluster.push("hello").await;
    cluster.start_node().await;
    cluster
        .create(pod(
            "patient",
            json!({
                "containers": [{"name": "c", "image": image, "args": ["--sleep-ms=600000"],
                                "volumeMounts": [{"name": "config", "mountPath": "/etc/config"}]}],
                "volumes": [{"name": "config", "configMap": {"name": "late"}}],
            }),
        ))
        .await;
    let events: Api<Event> = Api::namespaced(cluster.client.clone(), "default");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let list = events.list(&Default::default()).await.expect("events");
        let failed_mount = list.items.iter().find(|e| {
            e.reason.as_deref() == Some("FailedMount")
                && e.involved_object.name.as_deref() == Some("patient")
        });
        if let Some(event) = failed_mount {
            let message = event.message.as_deref().unwrap_or_default();
            assert!(
                message.contains("configmap \"late\" not found"),
                "{message}"
            );
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no FailedMount event"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let waiting_pod = cluster
        .wait("patient", Duration::from_secs(60), |pod| {
            waiting(pod, 0).0 == "ContainerCreating"
        })
        .await;
    assert_eq!(waiting_pod["status"]["phase"], "Pending");

    cluster
        .apply_json::<ConfigMap>(config_map("late", json!({"greeting": "finally"})))
        .await;
    let running = cluster
        .wait("patient", Duration::from_secs(60), |pod| {
            pod["status"]["containerStatuses"][0]["state"]["running"].is_object()
        })
        .await;
    assert_eq!(
        cluster.volume_file(&running, "config/greeting").as_deref(),
        Some("finally")
    );
    assert_eq!(
        cluster.node_requests_to("/configmaps/late"),
        Vec::<String>::new(),
        "the wait reads the cache, not the API"
    );
    cluster.stop().await;
}

impl Cluster {
    /// What the program of `pod`'s container `c` printed in its first run, as `env NAME=value` lines
    /// (the `hello` app prints its environment so), sorted.
    fn printed_env(&self, pod: &Value) -> Vec<String> {
        let (name, uid) = (
            pod["metadata"]["name"].as_str().unwrap_or_default(),
            pod["metadata"]["uid"].as_str().unwrap_or_default(),
        );
        let path = self
            .dir
            .path()
            .join(format!("node/pods/default_{name}_{uid}/c/0.log"));
        let log = std::fs::read_to_string(&path).unwrap_or_default();
        // CRI records: `<time> <stream> <P|F> <text>`.
        let mut env: Vec<String> = log
            .lines()
            .filter_map(|line| line.splitn(4, ' ').nth(3))
            .filter_map(|text| text.strip_prefix("env "))
            .map(str::to_owned)
            .collect();
        env.sort();
        env
    }
}

/// The kubelet's configmap/secret managers serve environments as they serve volumes: the pods of a
/// node that take their environment from one ConfigMap and one Secret (`envFrom` with a prefix,
/// `configMapKeyRef`, `secretKeyRef`, optional references to what does not exist) get it from the
/// node's shared cache — no GET of either per pod, however many pods.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_taking_env_from_one_config_map_and_secret_share_one_watch_of_each() {
    use k8s_openapi::api::core::v1::{ConfigMap, Secret};
    let mut cluster = Cluster::start().await;
    let image = cluster.push("hello").await;
    cluster
        .apply_json::<ConfigMap>(config_map(
            "settings",
            json!({"MODE": "fast", "LEVEL": "3"}),
        ))
        .await;
    cluster
        .apply_json::<Secret>(secret("db", json!({"PASSWORD": "hunter2"})))
        .await;
    cluster.start_node().await;
    let names: Vec<String> = (0..8).map(|i| format!("env-{i}")).collect();
    for name in &names {
        cluster
            .create(pod(
                name,
                json!({
                    "restartPolicy": "Never",
                    "containers": [{"name": "c", "image": image,
                        "envFrom": [
                            {"configMapRef": {"name": "settings"}, "prefix": "APP_"},
                            {"secretRef": {"name": "absent", "optional": true}},
                        ],
                        "env": [
                            {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "db", "key": "PASSWORD"}}},
                            {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "MODE"}}},
                            {"name": "GONE", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "nope", "optional": true}}},
                            {"name": "URL", "value": "db://$(PASSWORD)@$(APP_LEVEL)"},
                        ]}],
                }),
            ))
            .await;
    }
    for name in &names {
        let pod = cluster
            .wait(name, Duration::from_secs(60), |pod| {
                pod["status"]["phase"] == "Succeeded"
            })
            .await;
        let env = cluster.printed_env(&pod);
        // Every container also gets the `kubernetes` Service's variables, as the kubelet gives them.
        let (services, own): (Vec<String>, Vec<String>) =
            env.into_iter().partition(|v| v.starts_with("KUBERNETES_"));
        assert_eq!(
            own,
            [
                "APP_LEVEL=3",
                "APP_MODE=fast",
                "MODE=fast",
                "PASSWORD=hunter2",
                "URL=db://hunter2@3"
            ],
            "{name}"
        );
        assert!(
            services.contains(&"KUBERNETES_SERVICE_PORT=443".to_owned()),
            "{name}: {services:?}"
        );
    }
    cluster.assert_watched_not_fetched(
        &[
            ("/configmaps", "/configmaps/settings"),
            ("/secrets", "/secrets/db"),
        ],
        names.len(),
    );
    cluster.stop().await;
}

/// A container whose environment names a ConfigMap that does not exist waits as the kubelet's
/// CreateContainerConfigError with its message, and starts once the ConfigMap is created (the node's
/// watch of it sees the creation; nothing GETs it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_whose_env_config_map_is_missing_starts_once_it_is_created() {
    use k8s_openapi::api::core::v1::ConfigMap;
    let mut cluster = Cluster::start().await;
    let image = cluster.push("hello").await;
    cluster.start_node().await;
    cluster
        .create(pod(
            "configless",
            json!({
                "containers": [{"name": "c", "image": image, "args": ["--sleep-ms=600000"],
                    "env": [{"name": "GREETING",
                             "valueFrom": {"configMapKeyRef": {"name": "late-env", "key": "greeting"}}}]}],
            }),
        ))
        .await;
    let waiting_pod = cluster
        .wait("configless", Duration::from_secs(60), |pod| {
            waiting(pod, 0).0 == "CreateContainerConfigError"
        })
        .await;
    assert_eq!(
        waiting(&waiting_pod, 0).1,
        "configmap \"late-env\" not found"
    );
    assert_eq!(waiting_pod["status"]["phase"], "Pending");

    // A ConfigMap without the key: still a config error, now naming the key.
    cluster
        .apply_json::<ConfigMap>(config_map("late-env", json!({"other": "x"})))
        .await;
    cluster
        .wait("configless", Duration::from_secs(60), |pod| {
            waiting(pod, 0).1 == "couldn't find key greeting in ConfigMap default/late-env"
        })
        .await;

    cluster
        .apply_json::<ConfigMap>(config_map("late-env", json!({"greeting": "finally"})))
        .await;
    let running = cluster
        .wait("configless", Duration::from_secs(60), |pod| {
            pod["status"]["containerStatuses"][0]["state"]["running"].is_object()
        })
        .await;
    let restart = running["status"]["containerStatuses"][0]["restartCount"]
        .as_i64()
        .unwrap_or_default();
    assert_eq!(restart, 0, "a config error is no restart");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !cluster
        .printed_env(&running)
        .contains(&"GREETING=finally".to_owned())
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "printed {:?}",
            cluster.printed_env(&running)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        cluster.node_requests_to("/configmaps/late-env"),
        Vec::<String>::new(),
        "the wait reads the cache, not the API"
    );
    cluster.stop().await;
}

impl Cluster {
    /// The `count` of pod `name`'s events with `reason`, summed (the correlator bumps one Event's count
    /// for each repeat).
    async fn event_count(&self, name: &str, reason: &str) -> i32 {
        use k8s_openapi::api::core::v1::Event;
        let events: Api<Event> = Api::namespaced(self.client.clone(), "default");
        let list = events.list(&Default::default()).await.expect("events");
        list.items
            .iter()
            .filter(|e| {
                e.reason.as_deref() == Some(reason)
                    && e.involved_object.name.as_deref() == Some(name)
            })
            .map(|e| e.count.unwrap_or(1))
            .sum()
    }

    /// Waits until pod `name` has had at least `count` events with `reason`.
    async fn wait_event_count(&self, name: &str, reason: &str, count: i32) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let seen = self.event_count(name, reason).await;
            if seen >= count {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{name} has {seen} {reason} events, not {count}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A start that fails for want of a ConfigMap is retried on a back-off doubling from 1 s, but the wait
/// ends as soon as the node's cache sees one of the pod's objects change: a ConfigMap created once the
/// back-off has grown to 8 s starts the container well before that back-off would be over, for an
/// environment (`CreateContainerConfigError`, one `Failed` event per attempt) and a volume
/// (`ContainerCreating`, one `FailedMount` event per attempt) alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_map_created_after_a_long_wait_starts_its_waiting_container_at_once() {
    use k8s_openapi::api::core::v1::ConfigMap;
    let mut cluster = Cluster::start().await;
    let image = cluster.push("hello").await;
    cluster.start_node().await;
    // A pod whose ConfigMap never comes keeps its back-off, however many other ConfigMaps are
    // created meanwhile: its attempts (after failures 1 s, 2 s, 4 s… apart) are counted below.
    cluster
        .create(pod(
            "still-waiting",
            json!({"containers": [{"name": "c", "image": image,
                "env": [{"name": "GREETING",
                         "valueFrom": {"configMapKeyRef": {"name": "never", "key": "greeting"}}}]}]}),
        ))
        .await;
    let still_waiting_since = std::time::Instant::now();
    cluster.wait_event_count("still-waiting", "Failed", 1).await;
    let waiters = [
        (
            "env-waiter",
            "CreateContainerConfigError",
            "Failed",
            "env-late",
            json!({"containers": [{"name": "c", "image": image, "args": ["--sleep-ms=600000"],
                "env": [{"name": "GREETING",
                         "valueFrom": {"configMapKeyRef": {"name": "env-late", "key": "greeting"}}}]}]}),
        ),
        (
            "mount-waiter",
            "ContainerCreating",
            "FailedMount",
            "mount-late",
            json!({"containers": [{"name": "c", "image": image, "args": ["--sleep-ms=600000"],
                                   "volumeMounts": [{"name": "config", "mountPath": "/etc/config"}]}],
                   "volumes": [{"name": "config", "configMap": {"name": "mount-late"}}]}),
        ),
    ];
    for (name, reason, event, config_map_name, spec) in waiters {
        cluster.create(pod(name, spec)).await;
        // Attempts 1, 2, 3 and 4 are followed by back-offs of 1, 2, 4 and 8 s: after the fourth
        // failure, nothing would try again for 8 s.
        cluster.wait_event_count(name, event, 4).await;
        let waiting_pod = cluster
            .wait(name, Duration::from_secs(60), |pod| {
                waiting(pod, 0).0 == reason
            })
            .await;
        assert!(
            waiting(&waiting_pod, 0)
                .1
                .contains(&format!("configmap \"{config_map_name}\" not found")),
            "{:?}",
            waiting(&waiting_pod, 0)
        );
        cluster
            .apply_json::<ConfigMap>(config_map(config_map_name, json!({"greeting": "at last"})))
            .await;
        // Not a benchmark: a bound well below the 8 s back-off in force, which only a wake on the
        // ConfigMap's creation meets.
        let running = cluster
            .wait(name, Duration::from_secs(3), |pod| {
                pod["status"]["containerStatuses"][0]["state"]["running"].is_object()
            })
            .await;
        assert_eq!(
            running["status"]["containerStatuses"][0]["restartCount"], 0,
            "{name}: a config error is no restart"
        );
    }
    // No busy retries: in T seconds, attempts 1 s, 2 s, 4 s… apart number at most log2(T + 1) + 1
    // (and one more for a change seen as the first attempt read the cache).
    let attempts = cluster.event_count("still-waiting", "Failed").await;
    let seconds = still_waiting_since.elapsed().as_secs_f64();
    assert!(
        f64::from(attempts) <= (seconds + 1.0).log2().floor() + 2.0,
        "{attempts} attempts in {seconds:.1} s"
    );
    cluster.stop().await;
}
