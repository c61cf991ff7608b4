//! `herd bench scheduler`: scheduling throughput against a real store in a temporary directory.

use std::time::Instant;

use herd_api::resources;
use serde_json::json;

use super::{Binds, list_snapshot, pass};
use crate::error::ApiError;
use crate::events::{EventQueue, Recorder};
use crate::objects::{Objects, Settings};
use crate::objects::{StoreError, StoreSync};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BenchReport {
    pub binds: usize,
    /// Time spent in scheduling passes (creating the objects is not counted).
    pub seconds: f64,
    pub binds_per_second: f64,
    /// Until every Scheduled event was written too (they are written in the background, as
    /// kube-scheduler's are, so they are not in `seconds`).
    pub seconds_with_events: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("temporary directory {path}: {source}")]
    TempDir {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("API: {0}")]
    Api(#[from] ApiError),
    #[error("{pods} pods still unbound after {passes} passes")]
    Stuck { pods: usize, passes: usize },
}

/// Creates `nodes` Ready nodes (API objects only) and `pods` pods in a fresh store, then runs scheduling
/// passes until every pod is bound.
///
/// # Errors
/// When the store cannot be set up or written, or a pass binds nothing while pods remain.
pub async fn bench(nodes: usize, pods: usize) -> Result<BenchReport, BenchError> {
    let dir = std::env::temp_dir().join(format!("herd-bench-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).map_err(|source| BenchError::TempDir {
        path: dir.clone(),
        source,
    })?;
    let result = run_bench(&dir, nodes, pods).await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn run_bench(
    dir: &std::path::Path,
    nodes: usize,
    pods: usize,
) -> Result<BenchReport, BenchError> {
    let objects = Objects::open(
        &dir.join("herd.db"),
        StoreSync::Full,
        Settings {
            service_cidr: "127.10.0.0/16".parse().expect("valid CIDR"),
            service_node_port_range: crate::node_ports::DEFAULT_RANGE,
            pod_security: herd_api::pod_security::AdmissionConfig::default(),
        },
    )
    .await?;
    let report = populate_and_schedule(&objects, nodes, pods).await;
    objects.close().await;
    report
}

async fn populate_and_schedule(
    objects: &Objects,
    nodes: usize,
    pods: usize,
) -> Result<BenchReport, BenchError> {
    populate(objects, nodes, pods).await?;
    schedule(objects, pods).await
}

/// The `default` namespace, `nodes` Ready nodes and `pods` pending pods (10m CPU, 16Mi each).
pub(super) async fn populate(
    objects: &Objects,
    nodes: usize,
    pods: usize,
) -> Result<(), BenchError> {
    let table = |path| resources::by_path("", "v1", path).expect("core kinds are in the table");
    let (ns_res, node_res, pod_res) = (table("namespaces"), table("nodes"), table("pods"));
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}});
    match objects.create(ns_res, None, ns, false).await {
        Ok(_) | Err(ApiError::AlreadyExists { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    for i in 0..nodes {
        let name = format!("node-{i:05}");
        let node = json!({"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}}});
        objects.create(node_res, None, node, false).await?;
        objects
            .edit(node_res, "", &name, |n| {
                n["status"] = json!({
                    "allocatable": {"cpu": "8", "memory": "32Gi", "pods": "110"},
                    "capacity": {"cpu": "8", "memory": "32Gi", "pods": "110"},
                    "conditions": [{"type": "Ready", "status": "True"}],
                });
                true
            })
            .await?;
    }
    for i in 0..pods {
        let pod = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": format!("pod-{i:06}"), "labels": {"app": format!("app-{}", i % 50)}},
            "spec": {"containers": [{"name": "c", "image": "example/app:v1",
                "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}]}});
        objects.create(pod_res, Some("default"), pod, false).await?;
    }
    Ok(())
}

async fn schedule(objects: &Objects, pods: usize) -> Result<BenchReport, BenchError> {
    let recorder = Recorder::new(objects.clone(), "default-scheduler");
    let events = EventQueue::spawn(recorder.clone());
    let start = Instant::now();
    let mut binds = 0;
    let mut passes = 0;
    while binds < pods {
        passes += 1;
        let (listed_nodes, listed_pods) = list_snapshot(objects).await?;
        let n = pass(
            objects,
            &recorder,
            &events,
            &listed_nodes,
            listed_pods.iter().collect(),
            &super::volumes::Volumes::default(),
            &mut Binds::default(),
        )
        .await?;
        if n == 0 {
            return Err(BenchError::Stuck {
                pods: pods - binds,
                passes,
            });
        }
        binds += n;
    }
    let seconds = start.elapsed().as_secs_f64();
    events.flush().await;
    let seconds_with_events = start.elapsed().as_secs_f64();
    Ok(BenchReport {
        binds,
        seconds,
        binds_per_second: if seconds > 0.0 {
            binds as f64 / seconds
        } else {
            0.0
        },
        seconds_with_events,
    })
}
