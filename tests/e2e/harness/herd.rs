//! `Herd`: one herd cluster (`herd up`, or `herd control` plus `herd node` processes) on its own data dir
//! and loopback ranges, with the clients a test needs.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use tempfile::TempDir;

use super::cidr::{Cidrs, unique_cidrs};
use super::process::{HerdProcess, ReadyLine};
use super::{http_client, is_root};

/// Which half (or both) of herd to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `herd up`: control plane, node agent, proxy and (unless disabled) the embedded registry.
    Up,
    /// `herd control`: control plane only.
    Control,
}

#[derive(Debug, Clone)]
pub struct HerdOptions {
    pub mode: Mode,
    pub node_name: String,
    /// Run the embedded registry (`--registry-listen 127.0.0.1:0`) or not (`--no-registry`).
    pub registry: bool,
    pub insecure_registries: Vec<String>,
    /// Run herd as `nobody` through `runuser` (only possible as root).
    pub unprivileged: bool,
    /// More flags for `herd up` / `herd control` (e.g. `--node-monitor-grace-period 2s`).
    pub extra_args: Vec<String>,
}

impl Default for HerdOptions {
    fn default() -> Self {
        HerdOptions {
            mode: Mode::Up,
            node_name: "e2e-node".into(),
            registry: false,
            insecure_registries: Vec::new(),
            unprivileged: false,
            extra_args: Vec::new(),
        }
    }
}

impl HerdOptions {
    pub fn control() -> Self {
        HerdOptions {
            mode: Mode::Control,
            ..Default::default()
        }
    }
    pub fn with_registry() -> Self {
        HerdOptions {
            registry: true,
            ..Default::default()
        }
    }
}

/// A running herd cluster. Stopped with SIGTERM on drop (the temp dir is kept if the test panicked).
pub struct Herd {
    pub opts: HerdOptions,
    pub cidrs: Cidrs,
    root: Option<TempDir>,
    pub data_dir: PathBuf,
    process: Option<HerdProcess>,
    /// `https://127.0.0.1:PORT` (changes on restart).
    pub api: String,
    /// The embedded registry's `127.0.0.1:PORT`.
    pub registry: Option<String>,
    pub kubeconfig: PathBuf,
    /// A client with the admin's credentials from the kubeconfig (renewed at each start).
    pub http: reqwest::Client,
}

impl Herd {
    /// Starts herd and waits for its ready line.
    pub async fn up(opts: HerdOptions) -> Herd {
        if opts.unprivileged {
            assert!(
                is_root(),
                "unprivileged mode needs root (runuser -u nobody)"
            );
        }
        let root = tempfile::Builder::new()
            .prefix("herd-e2e-")
            .tempdir_in(std::env::temp_dir())
            .expect("create a temp dir");
        let data_dir = root.path().join("data");
        std::fs::create_dir(&data_dir).expect("create the data dir");
        if opts.unprivileged {
            chmod(root.path(), 0o755);
            chmod(&data_dir, 0o777);
            let home = root.path().join("home");
            std::fs::create_dir(&home).expect("create home");
            chmod(&home, 0o777);
        }
        let kubeconfig = data_dir.join("kubeconfig.yaml");
        let mut herd = Herd {
            cidrs: unique_cidrs(),
            opts,
            root: Some(root),
            data_dir,
            process: None,
            api: String::new(),
            registry: None,
            kubeconfig,
            http: http_client(),
        };
        herd.start().await;
        herd
    }

    fn root_path(&self) -> &Path {
        self.root.as_ref().expect("root dir").path()
    }

    fn args(&self) -> Vec<String> {
        let mut args: Vec<String> = match self.opts.mode {
            Mode::Up => vec!["up".into()],
            Mode::Control => vec!["control".into()],
        };
        args.extend(["--data-dir".into(), self.data_dir.display().to_string()]);
        // A fixed `--listen ADDR` in extra_args keeps the API's address over restarts (nodes that joined
        // know it); otherwise a free port at each start.
        if !self.opts.extra_args.iter().any(|a| a == "--listen") {
            args.extend(["--listen".into(), "127.0.0.1:0".into()]);
        }
        args.extend([
            "--service-cidr".into(),
            self.cidrs.service.to_string(),
            "--cluster-cidr".into(),
            self.cidrs.cluster.to_string(),
        ]);
        // The cluster CIDR is a /22: four node pod CIDRs of /24 (see cidr.rs), not herd's default /18.
        if !self
            .opts
            .extra_args
            .iter()
            .any(|a| a == "--node-cidr-mask-size")
        {
            args.extend(["--node-cidr-mask-size".into(), "24".into()]);
        }
        args.extend(self.opts.extra_args.iter().cloned());
        if self.opts.mode == Mode::Up {
            args.extend(["--node-name".into(), self.opts.node_name.clone()]);
            if self.opts.registry {
                args.extend(["--registry-listen".into(), "127.0.0.1:0".into()]);
            } else {
                args.push("--no-registry".into());
            }
            for r in &self.opts.insecure_registries {
                args.extend(["--insecure-registry".into(), r.clone()]);
            }
        }
        args
    }

    /// Starts herd on its data dir (again, after `stop`) and waits for its ready line.
    pub async fn start(&mut self) {
        let label = match self.opts.mode {
            Mode::Up => "herd-up",
            Mode::Control => "herd-control",
        };
        let home = self
            .opts
            .unprivileged
            .then(|| self.root_path().join("home"));
        let mut process =
            HerdProcess::spawn(label, &self.args(), self.root_path(), home.as_deref());
        let ready: ReadyLine = process.wait_ready().await;
        self.api = ready.api;
        self.registry = ready.registry;
        if let Some(kubeconfig) = ready.kubeconfig {
            self.kubeconfig = kubeconfig;
        }
        self.http = super::api_client(&self.kubeconfig);
        self.process = Some(process);
    }

    /// The herd process (its pid, logs).
    pub fn process(&mut self) -> &mut HerdProcess {
        self.process.as_mut().expect("herd is not running")
    }

    /// SIGTERM; asserts exit status 0 and returns how long the exit took.
    pub fn stop(&mut self) -> Duration {
        let mut process = self.process.take().expect("herd is not running");
        let took = process.stop();
        // Keep the output files around for `restart`; the process is gone, so dropping it does nothing more.
        drop(process);
        took
    }

    /// Stops herd (asserting a clean exit) and starts it again on the same data dir.
    pub async fn restart(&mut self) {
        self.stop();
        self.start().await;
    }

    /// The logs of the running (or last) process, for failure messages.
    pub fn logs(&self) -> String {
        self.process
            .as_ref()
            .map(HerdProcess::logs)
            .unwrap_or_default()
    }

    /// A kube client built from herd's kubeconfig.
    pub async fn client(&self) -> kube::Client {
        // More than one rustls provider is linked into this test binary: pick the one herd uses.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let kubeconfig = kube::config::Kubeconfig::read_from(&self.kubeconfig)
            .unwrap_or_else(|e| panic!("read {}: {e}", self.kubeconfig.display()));
        let config = kube::Config::from_custom_kubeconfig(
            kubeconfig,
            &kube::config::KubeConfigOptions::default(),
        )
        .await
        .expect("kubeconfig to client config");
        kube::Client::try_from(config).expect("kube client")
    }

    /// Starts `herd node --name NAME` against this control plane.
    pub async fn start_node(&self, name: &str) -> NodeProcess {
        self.start_node_with(name, &[]).await
    }

    /// Starts `herd node --name NAME EXTRA…` against this control plane.
    pub async fn start_node_with(&self, name: &str, extra: &[&str]) -> NodeProcess {
        let dir = self.root_path().join(format!("node-{name}"));
        std::fs::create_dir_all(&dir).expect("node data dir");
        let mut args: Vec<String> = vec![
            "node".into(),
            "--kubeconfig".into(),
            self.kubeconfig.display().to_string(),
            "--name".into(),
            name.into(),
            "--data-dir".into(),
            dir.display().to_string(),
        ];
        for r in &self.opts.insecure_registries {
            args.extend(["--insecure-registry".into(), r.clone()]);
        }
        args.extend(extra.iter().map(|a| a.to_string()));
        NodeProcess {
            process: HerdProcess::spawn(
                &format!("herd-node-{name}"),
                &args,
                self.root_path(),
                None,
            ),
        }
    }

    /// `API + path`
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.api)
    }

    /// GET `path`: `(status, JSON body or Null)`.
    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.send(reqwest::Method::GET, path, None).await
    }

    /// GET `path`, which must answer 200.
    pub async fn get_ok(&self, path: &str) -> Value {
        let (status, body) = self.get(path).await;
        assert_eq!(status, 200, "GET {path} -> {status}: {body}");
        body
    }

    /// Sends `body` as JSON.
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> (u16, Value) {
        let body = body.map(|b| ("application/json", b.to_string()));
        self.send_raw(method, path, body).await
    }

    /// Sends a body with the given content type; returns status and the body parsed as JSON (Null if not).
    pub async fn send_raw(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<(&str, String)>,
    ) -> (u16, Value) {
        let mut req = self
            .http
            .request(method.clone(), self.url(path))
            .header("accept", "application/json");
        if let Some((content_type, body)) = body {
            req = req.header("content-type", content_type).body(body);
        }
        let resp = tokio::time::timeout(Duration::from_secs(30), req.send())
            .await
            .unwrap_or_else(|_| panic!("{method} {path} took over 30 s\n{}", self.logs()))
            .unwrap_or_else(|e| panic!("{method} {path}: {e}\n{}", self.logs()));
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// POST `body` to `path`; must answer 201 (or 200). Returns the stored object.
    pub async fn create(&self, path: &str, body: &Value) -> Value {
        let (status, obj) = self.send(reqwest::Method::POST, path, Some(body)).await;
        assert!(
            status == 201 || status == 200,
            "POST {path} -> {status}: {obj}\nbody: {body}"
        );
        obj
    }

    /// DELETE `path`; must answer 200 (or 202).
    pub async fn delete(&self, path: &str) -> Value {
        let (status, obj) = self.send(reqwest::Method::DELETE, path, None).await;
        assert!(
            status == 200 || status == 202,
            "DELETE {path} -> {status}: {obj}"
        );
        obj
    }

    /// Runs the herd CLI with `--kubeconfig` pointing at this cluster.
    /// `herd push --kubeconfig KUBECONFIG sample-apps/dist/<sample>.wasm IMAGE`: with the admin's client
    /// certificate, which herd's embedded registry (HTTPS, the cluster CA) requires of pushes; returns the
    /// manifest digest.
    pub async fn push(&self, sample: &str, image: &str) -> String {
        let kubeconfig = self.kubeconfig.display().to_string();
        super::push_with(sample, image, &["--kubeconfig", &kubeconfig]).await
    }

    pub async fn cli(&self, args: &[&str]) -> super::CliOutput {
        let mut all: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        all.extend(["--kubeconfig".into(), self.kubeconfig.display().to_string()]);
        super::cli(&all).await
    }
}

impl Drop for Herd {
    fn drop(&mut self) {
        // Stop the process first (it prints its logs if the test panicked).
        drop(self.process.take());
        if std::thread::panicking()
            && let Some(root) = self.root.take()
        {
            eprintln!(
                "kept herd's temp dir for debugging: {}",
                root.keep().display()
            );
        }
    }
}

/// A `herd node` process; stopped with SIGTERM on drop.
pub struct NodeProcess {
    pub process: HerdProcess,
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
}
