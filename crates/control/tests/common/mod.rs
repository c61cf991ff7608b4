//! A control plane on a real loopback socket, shared by this crate's integration tests. Each test file adds
//! the request helpers it needs in its own `impl Plane`.

// Each test binary compiles this module and uses a different part of it.
#![allow(dead_code)]

use herd_control::{ControlConfig, ControlPlane, EtcdConfig, StoreBackend};
use tokio_util::sync::CancellationToken;

/// The test etcd: `HERD_TEST_ETCD`, or a `/usr/bin/etcd` this test process starts (one per process).
#[path = "../../src/etcd/testing.rs"]
pub mod etcd;

/// An etcd store under a key prefix no other plane uses, on the test etcd.
pub fn etcd_store() -> StoreBackend {
    StoreBackend::Etcd(EtcdConfig {
        servers: vec![etcd::endpoint()],
        prefix: etcd::prefix(),
        ..EtcdConfig::default()
    })
}

/// The store a test plane uses: etcd (a prefix of its own) when `HERD_TEST_ETCD` names one, else SQLite
/// in the plane's data dir.
pub fn test_store() -> StoreBackend {
    match std::env::var(etcd::ENDPOINT_VAR) {
        Ok(url) if !url.is_empty() => etcd_store(),
        _ => StoreBackend::Sqlite,
    }
}

pub struct Plane {
    pub base: String,
    pub http: reqwest::Client,
    shutdown: CancellationToken,
    plane: Option<ControlPlane>,
    cfg: ControlConfig,
    dir: tempfile::TempDir,
}

impl Plane {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// [`Plane::start`] with the configuration adjusted by `configure` first.
    pub async fn start_with(configure: impl FnOnce(&mut ControlConfig)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = ControlConfig::new(dir.path().to_path_buf(), "127.0.0.1:0".parse().unwrap());
        cfg.service_cidr = "127.250.0.0/24".parse().unwrap();
        cfg.store = test_store();
        configure(&mut cfg);
        Self::start_in(dir, cfg).await
    }

    async fn start_in(dir: tempfile::TempDir, cfg: ControlConfig) -> Self {
        let shutdown = CancellationToken::new();
        let plane = ControlPlane::start(cfg.clone(), shutdown.clone())
            .await
            .unwrap();
        let http = client_of(&plane, Some(("kubernetes-admin", "system:masters")));
        Self {
            base: plane.url(),
            http,
            shutdown,
            plane: Some(plane),
            cfg,
            dir,
        }
    }

    /// Stops the plane and starts it again on the same data dir and configuration.
    pub async fn restart(self) -> Self {
        self.restart_with(|_| {}).await
    }

    /// [`Plane::restart`] with the configuration adjusted by `configure` first.
    pub async fn restart_with(self, configure: impl FnOnce(&mut ControlConfig)) -> Self {
        let (dir, cfg) = self.stop_keeping(configure).await;
        Self::start_in(dir, cfg).await
    }

    /// Stops the plane; its data dir and its configuration adjusted by `configure` for a start of one's
    /// own.
    pub async fn stop_keeping(
        mut self,
        configure: impl FnOnce(&mut ControlConfig),
    ) -> (tempfile::TempDir, ControlConfig) {
        self.shutdown.cancel();
        self.plane.take().unwrap().wait().await.unwrap();
        let Plane { mut cfg, dir, .. } = self;
        configure(&mut cfg);
        (dir, cfg)
    }

    pub fn data_dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// The cluster CA's certificate, PEM.
    pub fn ca_pem(&self) -> &str {
        self.plane.as_ref().unwrap().ca().cert_pem()
    }

    /// One request: `headers` added, `body` as (content type, text); the status code and the JSON answer
    /// (`Null` when the answer is not JSON).
    pub async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<(&str, String)>,
    ) -> (u16, serde_json::Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        if let Some((ct, b)) = body {
            req = req.header("content-type", ct).body(b);
        }
        let resp = req.send().await.unwrap();
        let code = resp.status().as_u16();
        (code, resp.json().await.unwrap_or(serde_json::Value::Null))
    }

    /// A client of this plane as `user` in `group` (a client certificate from the cluster CA); `None`: a
    /// client with no credentials.
    pub fn client_as(&self, user: Option<(&str, &str)>) -> reqwest::Client {
        client_of(self.plane.as_ref().unwrap(), user)
    }

    pub async fn stop(mut self) {
        self.shutdown.cancel();
        self.plane.take().unwrap().wait().await.unwrap();
    }
}

/// An HTTPS client trusting `plane`'s CA, presenting a client certificate for `user` (name, group) if given.
fn client_of(plane: &ControlPlane, user: Option<(&str, &str)>) -> reqwest::Client {
    let ca = plane.ca();
    let cert = user.map(|(name, group)| {
        ca.issue_client(name, &[group], herd_pki::CLIENT_VALIDITY)
            .unwrap()
    });
    let tls = herd_pki::tls::client_config(ca.cert_pem(), cert.as_ref()).unwrap();
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .build()
        .unwrap()
}
