//! A control plane on a real loopback socket, shared by this crate's integration tests. Each test file adds
//! the request helpers it needs in its own `impl Plane`.

// Each test binary compiles this module and uses a different part of it.
#![allow(dead_code)]

use herd_control::{ControlConfig, ControlPlane};
use tokio_util::sync::CancellationToken;

pub struct Plane {
    pub base: String,
    pub http: reqwest::Client,
    shutdown: CancellationToken,
    plane: Option<ControlPlane>,
    _dir: tempfile::TempDir,
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
        configure(&mut cfg);
        let shutdown = CancellationToken::new();
        let plane = ControlPlane::start(cfg, shutdown.clone()).await.unwrap();
        Self {
            base: format!("http://{}", plane.addr()),
            http: reqwest::Client::new(),
            shutdown,
            plane: Some(plane),
            _dir: dir,
        }
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

    pub async fn stop(mut self) {
        self.shutdown.cancel();
        self.plane.take().unwrap().wait().await.unwrap();
    }
}
