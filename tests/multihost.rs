//! Multi-host end to end (issue 13): three "hosts", each a network namespace of its own with its own address
//! on a Linux bridge (veth pairs; the bridge and the test's side, 10.213.0.1, in the root namespace), each
//! running one etcd member (Debian's `/usr/bin/etcd`, a static cluster), one `herd control --store etcd` and
//! one `herd node`. Each host's loopback is its own, so pod IPs (127.64.0.0/10) do not reach across hosts:
//! what does, does through herd.
//!
//! Its own test binary (not a module of `tests/e2e`): it needs root, takes a few minutes and shares no state
//! with the other end-to-end tests, so the usual e2e run stays as fast as it was. Not root: it says why and
//! passes without running. Everything it makes (namespaces, bridge, processes, temp dirs) is removed on drop,
//! also when an assertion fails.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Endpoints, Node};
use kube::Api;
use kube::api::PostParams;

const HERD: &str = env!("CARGO_BIN_EXE_herd");
const ETCD: &str = "/usr/bin/etcd";
const HOSTS: usize = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hosts_etcd_control_planes_and_nodes_ride_over_losing_the_leader() {
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
        net: Net::create(HOSTS),
        dir: dir.path().to_path_buf(),
    };

    // 1. A 3-member etcd cluster, one member per host, reached across the bridge.
    let etcd_urls: Vec<String> = (0..HOSTS)
        .map(|i| format!("http://{}:2379", world.net.addr(i)))
        .collect();
    let initial: Vec<String> = (0..HOSTS)
        .map(|i| format!("e{i}=http://{}:2380", world.net.addr(i)))
        .collect();
    let mut etcd = Vec::new();
    for i in 0..HOSTS {
        let addr = world.net.addr(i);
        let data = world.dir.join(format!("etcd-{i}"));
        etcd.push(world.spawn(
            i,
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

    // 2. A control plane on each host, all on the one etcd: the first publishes the cluster's PKI, the
    //    others adopt it.
    let mut controls = Vec::new();
    for i in 0..HOSTS {
        let addr = world.net.addr(i);
        let data = world.dir.join(format!("control-{i}"));
        let proc = world.spawn(
            i,
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
    let clients: Vec<kube::Client> = futures::future::join_all(
        (0..HOSTS).map(|i| client(&kubeconfig, format!("https://{}:6443", world.net.addr(i)))),
    )
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
    let want: Vec<String> = (0..HOSTS).map(|i| world.net.addr(i).to_string()).collect();
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

    // 3. A node on each host, given every API server; each reports Ready.
    for i in 0..HOSTS {
        let addr = world.net.addr(i);
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
        ];
        for j in 0..HOSTS {
            args.push("--server".to_string());
            args.push(format!("https://{}:6443", world.net.addr(j)));
        }
        world.spawn(i, &format!("node-{i}"), HERD, &args);
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
    let _ = etcd;
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
