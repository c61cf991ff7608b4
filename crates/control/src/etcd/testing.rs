//! A real etcd for tests: the `HERD_TEST_ETCD` endpoint when it is set, else one `/usr/bin/etcd` per test
//! process on free loopback ports, its data in a directory of its own under /dev/shm (or the temp dir).
//! It is started from a thread that lives as long as the process, with `setpriv --pdeathsig KILL`, so it
//! dies with the test process; data directories of test processes gone are removed at the next start.
//! Each test takes a key prefix of its own ([`prefix`]), so tests in parallel (and test processes sharing
//! one `HERD_TEST_ETCD`) never see each other's objects.
//!
//! Compiled into the crate's unit tests and, by path, into its integration tests (tests/common).

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The environment variable naming an etcd to use instead of starting one.
pub const ENDPOINT_VAR: &str = "HERD_TEST_ETCD";

/// The client URL of the test etcd (started at the first call).
pub fn endpoint() -> String {
    if let Ok(url) = std::env::var(ENDPOINT_VAR)
        && !url.is_empty()
    {
        return url;
    }
    static STARTED: OnceLock<String> = OnceLock::new();
    STARTED.get_or_init(start).clone()
}

/// A key prefix no other test (of this process or another) uses.
pub fn prefix() -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "/herd-test-{}-{nanos}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    )
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

fn base_dir() -> PathBuf {
    let shm = PathBuf::from("/dev/shm");
    if shm.is_dir() {
        shm
    } else {
        std::env::temp_dir()
    }
}

/// Removes the data directories of test processes that are gone.
fn remove_stale(base: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(rest) = name.strip_prefix("herd-test-etcd-")
            && let Some(pid) = rest.split('-').next()
            && !PathBuf::from(format!("/proc/{pid}")).exists()
        {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

fn start() -> String {
    let base = base_dir();
    remove_stale(&base);
    let dir = base.join(format!("herd-test-etcd-{}", std::process::id()));
    launch(&dir, true, None).0
}

/// Certificates for an etcd serving TLS that requires client certificates (`--client-cert-auth`), and a
/// client's, all files.
pub struct Tls {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

/// An etcd of one test's own (for what would disturb others, such as compaction), killed when dropped.
pub struct Dedicated {
    pub url: String,
    child: std::process::Child,
    dir: PathBuf,
}

impl Dedicated {
    pub fn start() -> Self {
        Self::start_with(None)
    }

    /// An etcd of its own serving HTTPS with `tls`'s certificates, requiring client certificates.
    pub fn start_tls(tls: &Tls) -> Self {
        Self::start_with(Some(tls))
    }

    fn start_with(tls: Option<&Tls>) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let base = base_dir();
        remove_stale(&base);
        let dir = base.join(format!(
            "herd-test-etcd-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        ));
        let (url, child) = launch(&dir, false, tls);
        Self {
            url,
            child: child.expect("the dedicated etcd"),
            dir,
        }
    }
}

impl Drop for Dedicated {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Starts etcd with its data in `dir`; `persistent`: forked from a thread that lives as long as the
/// process (no child handed back), else from this thread (the child handed back).
fn launch(
    dir: &std::path::Path,
    persistent: bool,
    tls: Option<&Tls>,
) -> (String, Option<std::process::Child>) {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).expect("the test etcd's directory");
    let (client, peer) = (free_port(), free_port());
    let scheme = if tls.is_some() { "https" } else { "http" };
    let client_url = format!("{scheme}://127.0.0.1:{client}");
    let peer_url = format!("http://127.0.0.1:{peer}");
    let log = std::fs::File::create(dir.join("etcd.log")).expect("the test etcd's log");
    let mut args: Vec<String> = vec![
        "--pdeathsig".into(),
        "KILL".into(),
        "--".into(),
        "/usr/bin/etcd".into(),
        "--name".into(),
        "test".into(),
        "--data-dir".into(),
        dir.join("data").display().to_string(),
        "--listen-client-urls".into(),
        client_url.clone(),
        "--advertise-client-urls".into(),
        client_url.clone(),
        "--listen-peer-urls".into(),
        peer_url.clone(),
        "--initial-advertise-peer-urls".into(),
        peer_url.clone(),
        "--initial-cluster".into(),
        format!("test={peer_url}"),
        "--log-level".into(),
        "warn".into(),
    ];
    if let Some(tls) = tls {
        for (flag, path) in [
            ("--trusted-ca-file", &tls.ca),
            ("--cert-file", &tls.cert),
            ("--key-file", &tls.key),
        ] {
            args.push(flag.into());
            args.push(path.display().to_string());
        }
        args.push("--client-cert-auth".into());
    }
    let spawn = move |args: &[String], log: std::fs::File| {
        std::process::Command::new("/usr/bin/setpriv")
            .args(args)
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
    };
    let mut own = None;
    if persistent {
        // PDEATHSIG fires when the thread that forked dies: fork from one that lives as long as the process.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("test-etcd".into())
            .spawn(move || {
                let child = spawn(&args, log);
                let ok = child.is_ok();
                let _ = tx.send(child.map(|_| ()).map_err(|e| e.to_string()));
                if ok {
                    loop {
                        std::thread::park();
                    }
                }
            })
            .expect("the test etcd's thread");
        rx.recv()
            .expect("the test etcd's thread answers")
            .unwrap_or_else(|e| panic!("starting /usr/bin/etcd: {e}"));
    } else {
        own = Some(spawn(&args, log).unwrap_or_else(|e| panic!("starting /usr/bin/etcd: {e}")));
    }
    let addr: SocketAddr = format!("127.0.0.1:{client}").parse().expect("address");
    let deadline = Instant::now() + Duration::from_secs(30);
    let ready = || match tls {
        None => healthy(addr),
        Some(tls) => healthy_tls(&client_url, tls),
    };
    while !ready() {
        assert!(
            Instant::now() < deadline,
            "the test etcd did not become healthy; see {}",
            dir.join("etcd.log").display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    (client_url, own)
}

/// Whether etcd's `/health` says it serves.
fn healthy(addr: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    if stream
        .write_all(b"GET /health HTTP/1.0\r\nHost: etcd\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer.contains("\"health\":\"true\"")
}

/// Whether etcdctl, with the client certificate, finds the member healthy.
fn healthy_tls(url: &str, tls: &Tls) -> bool {
    std::process::Command::new("/usr/bin/etcdctl")
        .env("ETCDCTL_API", "3")
        .args(["--endpoints", url, "--dial-timeout", "1s", "--cacert"])
        .arg(&tls.ca)
        .arg("--cert")
        .arg(&tls.client_cert)
        .arg("--key")
        .arg(&tls.client_key)
        .args(["endpoint", "health"])
        .output()
        .is_ok_and(|out| out.status.success())
}

/// An etcd cluster of several members of one test's own (plain HTTP on loopback ports); a member can be
/// killed; all are killed when it is dropped.
pub struct Members {
    pub urls: Vec<String>,
    children: Vec<Option<std::process::Child>>,
    dir: PathBuf,
}

impl Members {
    pub fn start(count: usize) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let base = base_dir();
        remove_stale(&base);
        let dir = base.join(format!(
            "herd-test-etcd-{}-members{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("the test etcd's directory");
        let ports: Vec<(u16, u16)> = (0..count).map(|_| (free_port(), free_port())).collect();
        let initial = ports
            .iter()
            .enumerate()
            .map(|(i, (_, peer))| format!("m{i}=http://127.0.0.1:{peer}"))
            .collect::<Vec<_>>()
            .join(",");
        let mut children = Vec::with_capacity(count);
        let mut urls = Vec::with_capacity(count);
        for (i, (client, peer)) in ports.iter().enumerate() {
            let client_url = format!("http://127.0.0.1:{client}");
            let peer_url = format!("http://127.0.0.1:{peer}");
            let log = std::fs::File::create(dir.join(format!("m{i}.log"))).expect("log");
            let child = std::process::Command::new("/usr/bin/setpriv")
                .args(["--pdeathsig", "KILL", "--", "/usr/bin/etcd", "--name"])
                .arg(format!("m{i}"))
                .arg("--data-dir")
                .arg(dir.join(format!("m{i}")))
                .args(["--listen-client-urls", &client_url])
                .args(["--advertise-client-urls", &client_url])
                .args(["--listen-peer-urls", &peer_url])
                .args(["--initial-advertise-peer-urls", &peer_url])
                .args(["--initial-cluster", &initial])
                .args(["--initial-cluster-state", "new", "--log-level", "warn"])
                .stdout(log.try_clone().expect("log"))
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("starting /usr/bin/etcd: {e}"));
            children.push(Some(child));
            urls.push(client_url);
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        for (client, _) in &ports {
            let addr: SocketAddr = format!("127.0.0.1:{client}").parse().expect("address");
            while !healthy(addr) {
                assert!(
                    Instant::now() < deadline,
                    "the test etcd cluster did not become healthy; see {}",
                    dir.display()
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Self {
            urls,
            children,
            dir,
        }
    }

    /// Kills member `i` (SIGKILL).
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.children[i].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Members {
    fn drop(&mut self) {
        for i in 0..self.children.len() {
            self.kill(i);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
