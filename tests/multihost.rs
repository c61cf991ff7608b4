//! Multi-host end to end (issue 13): nine "hosts", each a network namespace of its own with its own address
//! on a Linux bridge (veth pairs; the bridge and the test's side, 10.213.0.1, in the root namespace): three
//! etcd members (Debian's `/usr/bin/etcd`, a static cluster), three `herd control --store etcd` and three
//! `herd node`, each on a host of its own, so every control plane reaches etcd, and every node the control
//! planes and the other nodes, only across the bridge. Each host's loopback is its own, so pod IPs
//! (127.64.0.0/10) do not reach across hosts: what does, does through herd.
//!
//! Its own test binary (not a module of `tests/e2e`): it needs root, takes a few minutes and shares no state
//! with the other end-to-end tests, so the usual e2e run stays as fast as it was. Not root: it says why and
//! passes without running. Everything it makes (namespaces, bridge, processes, temp dirs) is removed on drop,
//! also when an assertion fails.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Endpoints, Node, Pod, Service};
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};

const HERD: &str = env!("CARGO_BIN_EXE_herd");
const ETCD: &str = "/usr/bin/etcd";
/// Members, control planes and nodes: three of each.
const HOSTS: usize = 3;

/// The host (namespace) of etcd member `i`.
/// The NodePort of the Service `web`.
const NODE_PORT: u16 = 30080;

fn etcd_host(i: usize) -> usize {
    i
}

/// The host of control plane `i`.
fn control_host(i: usize) -> usize {
    HOSTS + i
}

/// The host of node `i` (its Node is `host-<i>`).
fn node_host(i: usize) -> usize {
    2 * HOSTS + i
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nine_hosts_etcd_control_planes_and_nodes_ride_over_losing_the_leader() {
    if !is_root() {
        eprintln!(
            "multihost: skipped — it makes network namespaces, veth pairs and a bridge, which needs root \
             (run the test command as root, as CI does)"
        );
        return;
    }
    if !Path::new(ETCD).exists() {
        panic!("{ETCD} is missing: install Debian's etcd-server (scripts/test.sh does)");
    }
    let dir = tempfile::Builder::new()
        .prefix("herd-multihost-")
        .tempdir()
        .expect("temp dir");
    let mut world = World {
        procs: Vec::new(),
        net: Net::create(3 * HOSTS),
        dir: dir.path().to_path_buf(),
    };

    // 1. A 3-member etcd cluster, one member per host, reached across the bridge.
    let etcd_urls: Vec<String> = (0..HOSTS)
        .map(|i| format!("http://{}:2379", world.net.addr(etcd_host(i))))
        .collect();
    let initial: Vec<String> = (0..HOSTS)
        .map(|i| format!("e{i}=http://{}:2380", world.net.addr(etcd_host(i))))
        .collect();
    let mut etcd = Vec::new();
    for i in 0..HOSTS {
        let addr = world.net.addr(etcd_host(i));
        let data = world.dir.join(format!("etcd-{i}"));
        etcd.push(world.spawn(
            etcd_host(i),
            &format!("etcd-{i}"),
            ETCD,
            &[
                format!("--name=e{i}"),
                format!("--data-dir={}", data.display()),
                format!("--listen-client-urls=http://{addr}:2379"),
                format!("--advertise-client-urls=http://{addr}:2379"),
                format!("--listen-peer-urls=http://{addr}:2380"),
                format!("--initial-advertise-peer-urls=http://{addr}:2380"),
                format!("--initial-cluster={}", initial.join(",")),
                "--initial-cluster-state=new".to_string(),
                "--initial-cluster-token=herd-multihost".to_string(),
            ],
        ));
    }
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("http client");
    for url in &etcd_urls {
        let health = format!("{url}/health");
        eventually(&world, Duration::from_secs(30), &health, || async {
            let body = http.get(&health).send().await.ok()?.text().await.ok()?;
            body.contains(r#""health":"true""#).then_some(())
        })
        .await;
    }

    // 2. Three control planes, each on a host of its own, all on the one etcd: the first publishes the
    //    cluster's PKI, the others adopt it.
    let mut controls = Vec::new();
    for i in 0..HOSTS {
        let addr = world.net.addr(control_host(i));
        let data = world.dir.join(format!("control-{i}"));
        let proc = world.spawn(
            control_host(i),
            &format!("control-{i}"),
            HERD,
            &[
                "control".to_string(),
                "--data-dir".to_string(),
                data.display().to_string(),
                "--listen".to_string(),
                format!("{addr}:6443"),
                "--advertise-address".to_string(),
                addr.to_string(),
                "--store".to_string(),
                "etcd".to_string(),
                "--etcd-servers".to_string(),
                etcd_urls.join(","),
            ],
        );
        let ready = world
            .wait_log(proc, "herd is ready", Duration::from_secs(60))
            .await;
        controls.push((proc, ready));
    }
    let kubeconfig =
        PathBuf::from(field(&controls[0].1, "kubeconfig=").expect("kubeconfig= in the ready line"));
    let clients: Vec<kube::Client> = futures::future::join_all((0..HOSTS).map(|i| {
        client(
            &kubeconfig,
            format!("https://{}:6443", world.net.addr(control_host(i))),
        )
    }))
    .await;

    // A write through one control plane is read through every other (one store underneath).
    let written: Api<ConfigMap> = Api::namespaced(clients[0].clone(), "default");
    let cm: ConfigMap = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "written-on-host-0"}, "data": {"k": "v"}
    }))
    .expect("configmap");
    written
        .create(&PostParams::default(), &cm)
        .await
        .expect("create on host 0");
    for client in &clients[1..] {
        let read: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
        let got = read
            .get("written-on-host-0")
            .await
            .expect("read on another host");
        assert_eq!(
            got.data.unwrap_or_default().get("k").map(String::as_str),
            Some("v")
        );
    }

    // The `kubernetes` Endpoints name every live API server; one replica leads the controllers.
    let endpoints: Api<Endpoints> = Api::namespaced(clients[1].clone(), "default");
    let want: Vec<String> = (0..HOSTS)
        .map(|i| world.net.addr(control_host(i)).to_string())
        .collect();
    eventually(
        &world,
        Duration::from_secs(30),
        "the kubernetes Endpoints",
        || async {
            let ep = endpoints.get("kubernetes").await.ok()?;
            let mut ips: Vec<String> = ep
                .subsets
                .unwrap_or_default()
                .iter()
                .flat_map(|s| s.addresses.clone().unwrap_or_default())
                .map(|a| a.ip)
                .collect();
            ips.sort();
            (ips == want).then_some(())
        },
    )
    .await;
    let leader = leading_control(&world, &clients[2], &controls).await;
    eprintln!("multihost: control-{leader} leads kube-controller-manager");

    // 3. A registry on the test's side of the bridge, which every host reaches; the sample HTTP app in it
    //    under two tags (the rolling update's old and new image).
    let registry = world.start_registry().await;
    let wasm = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("sample-apps/dist/http-hello.wasm"),
    )
    .expect("sample-apps/dist/http-hello.wasm: run sample-apps/build.sh");
    let mut images = Vec::new();
    for tag in ["v1", "v2"] {
        let image = format!("{registry}/http-hello:{tag}");
        herd_oci_fetch::push(&wasm, &image, std::slice::from_ref(&registry))
            .await
            .unwrap_or_else(|e| panic!("pushing {image}: {e}"));
        images.push(image);
    }

    // 4. Three nodes, each on a host of its own, given every API server; each reports Ready.
    for i in 0..HOSTS {
        let addr = world.net.addr(node_host(i));
        let data = world.dir.join(format!("node-{i}"));
        let mut args = vec![
            "--kubeconfig".to_string(),
            kubeconfig.display().to_string(),
            "node".to_string(),
            "--name".to_string(),
            format!("host-{i}"),
            "--data-dir".to_string(),
            data.display().to_string(),
            "--address".to_string(),
            addr.to_string(),
            "--insecure-registry".to_string(),
            registry.clone(),
        ];
        for j in 0..HOSTS {
            args.push("--server".to_string());
            args.push(format!("https://{}:6443", world.net.addr(control_host(j))));
        }
        world.spawn(node_host(i), &format!("node-{i}"), HERD, &args);
    }
    let nodes: Api<Node> = Api::all(clients[0].clone());
    eventually(&world, Duration::from_secs(60), "3 Ready nodes", || async {
        let list = nodes.list(&Default::default()).await.ok()?;
        let ready = list
            .items
            .iter()
            .filter(|n| {
                n.status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
            })
            .count();
        (ready == HOSTS).then_some(())
    })
    .await;

    // 5. A Deployment of the HTTP app (it answers with its pod's name) over the three nodes, and a Service.
    let deployments: Api<Deployment> = Api::namespaced(clients[0].clone(), "default");
    deployments
        .create(&PostParams::default(), &web(&images[0]))
        .await
        .expect("create the Deployment");
    let services: Api<Service> = Api::namespaced(clients[0].clone(), "default");
    let service: Service = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
        "spec": {"type": "NodePort", "selector": {"app": "web"},
            "ports": [{"port": 80, "targetPort": 8080, "nodePort": NODE_PORT}]}
    }))
    .expect("service");
    let service = services
        .create(&PostParams::default(), &service)
        .await
        .expect("create the Service");
    let cluster_ip = service
        .spec
        .and_then(|s| s.cluster_ip)
        .expect("the Service's cluster IP");
    rolled_out(&world, &deployments, 1).await;

    // Through each node, the Service answers from pods on the other hosts too.
    let pods: Api<Pod> = Api::namespaced(clients[0].clone(), "default");
    let node_of: std::collections::HashMap<String, String> = pods
        .list(&Default::default())
        .await
        .expect("list pods")
        .items
        .into_iter()
        .filter_map(|p| Some((p.metadata.name?, p.spec?.node_name?)))
        .collect();
    let mut per_node = std::collections::BTreeMap::new();
    for node in node_of.values() {
        *per_node.entry(node.clone()).or_insert(0) += 1;
    }
    eprintln!("multihost: pods per node {per_node:?}");
    for i in 0..HOSTS {
        let mut seen = std::collections::BTreeSet::new();
        let here = format!("host-{i}");
        eventually(
            &world,
            Duration::from_secs(60),
            &format!("through host-{i}, answers from pods on both other hosts"),
            || {
                if let Some(pod) = world.curl(node_host(i), &cluster_ip)
                    && let Some(node) = node_of.get(&pod)
                {
                    seen.insert(node.clone());
                }
                let others = seen.iter().filter(|n| **n != here).count();
                std::future::ready((others >= HOSTS - 1).then_some(()))
            },
        )
        .await;
        eprintln!("multihost: through host-{i} the Service answered from pods on {seen:?}");
    }
    // The NodePort answers on every node's address, asked from another host.
    for i in 0..HOSTS {
        let from = node_host((i + 1) % HOSTS);
        let target = format!("{}:{NODE_PORT}", world.net.addr(node_host(i)));
        eventually(
            &world,
            Duration::from_secs(30),
            &format!("the NodePort on host-{i}'s node"),
            || std::future::ready(world.curl(from, &target)),
        )
        .await;
    }

    // 6. A rolling update to the new tag while a writer creates ConfigMaps; meanwhile the leading control
    //    plane and then one etcd member are killed (-9). The rollout completes, every create the writer saw
    //    acknowledged is there afterwards, and the Service answers through a surviving node.
    let leader = leading_control(&world, &clients[2], &controls).await;
    let survivors: Vec<usize> = (0..HOSTS).filter(|i| *i != leader).collect();
    let writer = {
        let clients: Vec<kube::Client> = survivors.iter().map(|i| clients[*i].clone()).collect();
        let stop = tokio_util::sync::CancellationToken::new();
        let task = tokio::spawn(write_until(clients, stop.clone()));
        (task, stop)
    };
    // Through a node on a surviving host, the Service is asked every 250 ms for the whole update: it answers
    // every time.
    let answering = survivors[0];
    let prober = {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (ns, ip, flag) = (
            world.net.hosts[node_host(answering)].clone(),
            cluster_ip.clone(),
            stop.clone(),
        );
        let thread = std::thread::spawn(move || {
            let (mut answered, mut failed) = (0usize, 0usize);
            while !flag.load(std::sync::atomic::Ordering::SeqCst) {
                match curl_in(&ns, &ip) {
                    Some(_) => answered += 1,
                    None => failed += 1,
                }
                std::thread::sleep(Duration::from_millis(250));
            }
            (answered, failed)
        });
        (thread, stop)
    };
    let deployments: Api<Deployment> = Api::namespaced(clients[survivors[0]].clone(), "default");
    let patch = serde_json::json!({"spec": {"template": {"spec": {"containers": [
        {"name": "web", "image": images[1]}
    ]}}}});
    deployments
        .patch("web", &PatchParams::default(), &Patch::Strategic(&patch))
        .await
        .expect("the rolling update");
    tokio::time::sleep(Duration::from_millis(500)).await;
    world.kill(controls[leader].0);
    eprintln!("multihost: killed control-{leader} (the leader)");
    let member = survivors[1];
    world.kill(etcd[member]);
    eprintln!("multihost: killed etcd member e{member}");
    rolled_out(&world, &deployments, 2).await;
    prober.1.store(true, std::sync::atomic::Ordering::SeqCst);
    let (answered, failed) = prober.0.join().expect("the prober");
    eprintln!(
        "multihost: during the update the Service answered {answered} of {} requests through host-{answering}",
        answered + failed
    );
    assert!(
        answered > 0 && failed == 0,
        "through host-{answering} the Service answered {answered} requests and failed {failed} during the update"
    );
    eventually(
        &world,
        Duration::from_secs(30),
        "the Service through a surviving node",
        || async { world.curl(node_host(answering), &cluster_ip) },
    )
    .await;
    writer.1.cancel();
    let acknowledged = writer.0.await.expect("the writer");
    assert!(
        !acknowledged.is_empty(),
        "the writer got no create acknowledged"
    );
    let configmaps: Api<ConfigMap> = Api::namespaced(clients[survivors[0]].clone(), "default");
    let stored: std::collections::HashSet<String> = configmaps
        .list(&Default::default())
        .await
        .expect("list ConfigMaps")
        .items
        .into_iter()
        .filter_map(|c| c.metadata.name)
        .collect();
    let lost: Vec<&String> = acknowledged
        .iter()
        .filter(|n| !stored.contains(*n))
        .collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged creates are gone: {lost:?}",
        lost.len(),
        acknowledged.len()
    );
    eprintln!(
        "multihost: {} acknowledged creates all found after the kills",
        acknowledged.len()
    );
}

/// Replicas of the Deployment `web`.
const REPLICAS: i32 = 100;

/// The Deployment `web` of `image`: the HTTP app, its pod name in POD_NAME (it answers with it).
fn web(image: &str) -> Deployment {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {
            "replicas": REPLICAS,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{
                    "name": "web", "image": image,
                    "ports": [{"containerPort": 8080}],
                    "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]
                }]}
            }
        }
    }))
    .expect("deployment")
}

/// Waits until the Deployment's generation `generation` is rolled out as `kubectl rollout status` sees it:
/// observed, every replica updated and available, no old one left.
async fn rolled_out(world: &World, deployments: &Api<Deployment>, generation: i64) {
    eventually(world, Duration::from_secs(180), "the rollout", || async {
        let d = deployments.get("web").await.ok()?;
        let status = d.status?;
        let done = status.observed_generation? >= generation
            && status.updated_replicas == Some(REPLICAS)
            && status.replicas == Some(REPLICAS)
            && status.available_replicas == Some(REPLICAS);
        done.then_some(())
    })
    .await
}

/// Creates ConfigMaps one after another through `clients` in turn (a failed create moves on to the next
/// API server) until `stop`; returns the names whose create was acknowledged (201).
async fn write_until(
    clients: Vec<kube::Client>,
    stop: tokio_util::sync::CancellationToken,
) -> Vec<String> {
    let mut acknowledged = Vec::new();
    let mut turn = 0usize;
    let mut n = 0usize;
    while !stop.is_cancelled() {
        let api: Api<ConfigMap> = Api::namespaced(clients[turn % clients.len()].clone(), "default");
        let name = format!("writer-{n}");
        n += 1;
        let cm: ConfigMap = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}
        }))
        .expect("configmap");
        let params = PostParams::default();
        let create = tokio::time::timeout(Duration::from_secs(10), api.create(&params, &cm));
        match create.await {
            Ok(Ok(_)) => acknowledged.push(name),
            _ => turn += 1,
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    acknowledged
}

/// The control plane (index into `controls`) whose identity holds the kube-controller-manager Lease.
async fn leading_control(
    world: &World,
    client: &kube::Client,
    controls: &[(usize, String)],
) -> usize {
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-system");
    eventually(
        world,
        Duration::from_secs(30),
        "the controller-manager's leader",
        || async {
            let lease = leases.get("kube-controller-manager").await.ok()?;
            let holder = lease.spec?.holder_identity?;
            controls
                .iter()
                .position(|(proc, _)| world.log(*proc).contains(&holder))
        },
    )
    .await
}

/// Everything the test made; dropped in field order: the processes first (a namespace with a process in
/// it outlives its name), then the network, then the files.
struct World {
    procs: Vec<Proc>,
    net: Net,
    dir: PathBuf,
}

struct Proc {
    label: String,
    child: Child,
    log: PathBuf,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl World {
    /// Starts `program args…` inside host `host`'s namespace, its output in `<dir>/<label>.log`; returns
    /// its index.
    fn spawn(&mut self, host: usize, label: &str, program: &str, args: &[String]) -> usize {
        let log = self.dir.join(format!("{label}.log"));
        let file = std::fs::File::create(&log).expect("log file");
        // `ip netns exec` enters the namespace and execs the program: the child is the program itself.
        let child = Command::new("ip")
            .args(["netns", "exec", &self.net.hosts[host]])
            .arg(program)
            .args(args)
            .env("NO_COLOR", "1")
            .env("HERD_LOG", "info")
            .env_remove("KUBECONFIG")
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log file"))
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {label}: {e}"));
        self.procs.push(Proc {
            label: label.to_string(),
            child,
            log,
        });
        self.procs.len() - 1
    }

    /// Kills process `proc` with SIGKILL (as a host dying would) and reaps it.
    fn kill(&mut self, proc: usize) {
        let child = &mut self.procs[proc].child;
        let _ = child.kill();
        let _ = child.wait();
    }

    /// `GET http://IP/` from inside host `host`'s namespace (through its node's proxy); the pod that
    /// answered, from the app's `pod=NAME` answer.
    fn curl(&self, host: usize, ip: &str) -> Option<String> {
        curl_in(&self.net.hosts[host], ip)
    }

    /// Debian's docker-registry on the bridge address (10.213.0.1), storing in the test's dir; its
    /// `HOST:PORT`.
    async fn start_registry(&mut self) -> String {
        let port = std::net::TcpListener::bind("10.213.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port on the bridge")
            .port();
        let addr = format!("10.213.0.1:{port}");
        let config = self.dir.join("registry.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n\
                 http:\n  addr: {addr}\n",
                self.dir.join("registry").display()
            ),
        )
        .expect("registry config");
        let log = self.dir.join("registry.log");
        let file = std::fs::File::create(&log).expect("log file");
        let child = Command::new("/usr/bin/docker-registry")
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log file"))
            .stderr(file)
            .spawn()
            .expect("/usr/bin/docker-registry (Debian's docker-registry)");
        self.procs.push(Proc {
            label: "registry".to_string(),
            child,
            log,
        });
        let http = reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("http client");
        let url = format!("http://{addr}/v2/");
        eventually(self, Duration::from_secs(20), "the registry", || async {
            http.get(&url)
                .send()
                .await
                .ok()?
                .status()
                .is_success()
                .then_some(())
        })
        .await;
        addr
    }

    fn log(&self, proc: usize) -> String {
        std::fs::read_to_string(&self.procs[proc].log).unwrap_or_default()
    }

    /// Waits for a log line of `proc` containing `text`; returns the line.
    async fn wait_log(&mut self, proc: usize, text: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(line) = self.log(proc).lines().find(|l| l.contains(text)) {
                return line.to_string();
            }
            if let Ok(Some(status)) = self.procs[proc].child.try_wait() {
                panic!(
                    "{} exited with {status} before {text:?}:\n{}",
                    self.procs[proc].label,
                    self.log(proc)
                );
            }
            if Instant::now() > deadline {
                panic!(
                    "{} did not log {text:?} within {timeout:?}:\n{}",
                    self.procs[proc].label,
                    self.log(proc)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The last lines of every process's log, for a failure message.
    fn logs(&self) -> String {
        let mut out = String::new();
        for (i, proc) in self.procs.iter().enumerate() {
            let log = self.log(i);
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(15)..];
            out.push_str(&format!(
                "--- {} (last {} lines)\n{}\n",
                proc.label,
                tail.len(),
                tail.join("\n")
            ));
        }
        out
    }
}

/// Polls `check` every 200 ms until it returns `Some`, or panics after `timeout` naming `what` with the
/// processes' logs.
async fn eventually<T, F, Fut>(world: &World, timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if Instant::now() > deadline {
            panic!("{what}: not within {timeout:?}\n{}", world.logs());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The test's network: a bridge in the root namespace (10.213.0.1/24) and one namespace per host, joined to
/// it by a veth pair, with 10.213.0.(10+i)/24 and its own loopback. Names carry this process's id, so two
/// runs never meet; removed on drop.
struct Net {
    bridge: String,
    hosts: Vec<String>,
}

impl Net {
    fn create(hosts: usize) -> Net {
        let tag = format!("hmh{}", std::process::id() % 100_000);
        let mut net = Net {
            bridge: format!("{tag}br"),
            hosts: Vec::new(),
        };
        ip(&["link", "add", &net.bridge, "type", "bridge"]);
        ip(&["addr", "add", "10.213.0.1/24", "dev", &net.bridge]);
        ip(&["link", "set", &net.bridge, "up"]);
        for i in 0..hosts {
            let ns = format!("{tag}h{i}");
            let outside = format!("{tag}v{i}");
            let inside = format!("{tag}e{i}");
            ip(&["netns", "add", &ns]);
            net.hosts.push(ns.clone());
            ip(&[
                "link", "add", &outside, "type", "veth", "peer", "name", &inside,
            ]);
            ip(&["link", "set", &inside, "netns", &ns]);
            ip(&["link", "set", &outside, "master", &net.bridge, "up"]);
            ip(&["-n", &ns, "link", "set", "lo", "up"]);
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{}/24", net.addr(i)),
                "dev",
                &inside,
            ]);
            ip(&["-n", &ns, "link", "set", &inside, "up"]);
        }
        net
    }

    /// Host `i`'s address.
    fn addr(&self, i: usize) -> Ipv4Addr {
        Ipv4Addr::new(10, 213, 0, 10 + i as u8)
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        // Deleting a namespace destroys its end of the veth pair, and with it the pair.
        for ns in &self.hosts {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .status();
    }
}

/// `GET http://IP/` from inside namespace `ns`; the pod that answered, from the app's `pod=NAME` answer.
fn curl_in(ns: &str, ip: &str) -> Option<String> {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "curl", "-s", "-m", "3"])
        .arg(format!("http://{ip}/"))
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .find_map(|w| w.strip_prefix("pod="))
        .map(str::to_string)
}

/// Runs `ip ARGS`; panics with its error output if it fails.
fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("ip (iproute2) is needed: {e}"));
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A client with the admin kubeconfig's credentials for the API server at `url`.
async fn client(kubeconfig: &Path, url: String) -> kube::Client {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig).expect("admin kubeconfig");
    let mut config =
        kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
            .await
            .expect("client config");
    config.cluster_url = url.parse().expect("API server URL");
    kube::Client::try_from(config).expect("kube client")
}

/// `name=value` out of a ready line.
fn field(line: &str, name: &str) -> Option<String> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(name))
        .map(str::to_string)
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(|u| u == "0"))
        })
        .unwrap_or(false)
}
