//! PersistentVolumeClaims on the real binary with stock kubectl: a pod writes to a claim of the default
//! StorageClass (herd's local provisioner), is deleted and created again and finds its data; the claim
//! deleted, Delete removes the volume and its directory under the node's data dir, while a Retain class
//! keeps both, Released.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::*;

const CLAIMS: &str = "/api/v1/namespaces/default/persistentvolumeclaims";
const PVS: &str = "/api/v1/persistentvolumes";

fn writer(name: &str, image: &str, claim: &str, line: &str, extra: &[&str]) -> Value {
    let mut args = vec![format!("--append=/data/notes.txt={line}")];
    args.extend(extra.iter().map(|a| a.to_string()));
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {"restartPolicy": "Never", "containers": [{"name": "hello", "image": image,
            "args": args, "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": claim}}]}})
}

fn claim(name: &str, class: Option<&str>) -> Value {
    let mut c = json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "64Mi"}}}});
    if let Some(class) = class {
        c["spec"]["storageClassName"] = json!(class);
    }
    c
}

async fn claim_of(herd: &Herd, name: &str) -> Value {
    herd.get_ok(&format!("{CLAIMS}/{name}")).await
}

/// Where `herd up`'s node keeps a local volume.
fn volume_dir(herd: &Herd, pv: &str) -> PathBuf {
    herd.data_dir.join("node/volumes").join(pv)
}

/// Runs a writer pod to completion and returns its log; the pod is deleted afterwards.
async fn run_writer(herd: &Herd, pod: Value) -> String {
    let name = s(&pod, "/metadata/name").to_string();
    kubectl_stdin(herd, &["apply", "-f", "-"], &to_yaml(&pod))
        .await
        .ok();
    herd.wait_phase(&name, "Succeeded").await;
    let log = kubectl(herd, &["logs", &name]).await.ok().stdout;
    kubectl(herd, &["delete", "pod", &name, "--wait=true"])
        .await
        .ok();
    herd.wait_pod_gone(&name, Duration::from_secs(30)).await;
    log
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_keeps_a_pods_data_until_it_is_deleted() {
    let registry = Registry::start().await;
    let image = registry.image("hello:v1");
    push("hello", &image).await;
    let herd = Herd::up(HerdOptions::default()).await;
    herd.wait_node_ready("e2e-node").await;

    // The default StorageClass, in kubectl's columns.
    let classes = kubectl(&herd, &["get", "storageclass"]).await.ok().table();
    assert_eq!(
        classes.columns,
        [
            "NAME",
            "PROVISIONER",
            "RECLAIMPOLICY",
            "VOLUMEBINDINGMODE",
            "ALLOWVOLUMEEXPANSION",
            "AGE"
        ]
    );
    let standard = classes.row("standard (default)");
    assert_eq!(
        (
            standard.get("PROVISIONER"),
            standard.get("RECLAIMPOLICY"),
            standard.get("VOLUMEBINDINGMODE"),
            standard.get("ALLOWVOLUMEEXPANSION")
        ),
        ("herd.dev/local", "Delete", "WaitForFirstConsumer", "false")
    );

    // A claim without a class waits for its first pod.
    kubectl_stdin(
        &herd,
        &["apply", "-f", "-"],
        &to_yaml(&claim("notes", None)),
    )
    .await
    .ok();
    let pending = kubectl(&herd, &["get", "pvc", "notes"]).await.ok().table();
    assert_eq!(
        pending.columns,
        [
            "NAME",
            "STATUS",
            "VOLUME",
            "CAPACITY",
            "ACCESS MODES",
            "STORAGECLASS",
            "VOLUMEATTRIBUTESCLASS",
            "AGE"
        ]
    );
    assert_eq!(pending.row("notes").get("STATUS"), "Pending");
    assert_eq!(pending.row("notes").get("STORAGECLASS"), "standard");

    let first = run_writer(&herd, writer("w1", &image, "notes", "first run", &[])).await;
    assert!(
        first.contains("file /data/notes.txt:\nfirst run\n"),
        "{first}"
    );
    let bound = claim_of(&herd, "notes").await;
    assert_eq!(s(&bound, "/status/phase"), "Bound");
    let pv = s(&bound, "/spec/volumeName").to_string();
    assert_eq!(pv, format!("pvc-{}", s(&bound, "/metadata/uid")));
    let claims = kubectl(&herd, &["get", "pvc"]).await.ok().table();
    let row = claims.row("notes");
    assert_eq!(
        (
            row.get("STATUS"),
            row.get("VOLUME"),
            row.get("CAPACITY"),
            row.get("ACCESS MODES")
        ),
        ("Bound", pv.as_str(), "64Mi", "RWO")
    );
    let volumes = kubectl(&herd, &["get", "pv"]).await.ok().table();
    assert_eq!(
        volumes.columns,
        [
            "NAME",
            "CAPACITY",
            "ACCESS MODES",
            "RECLAIM POLICY",
            "STATUS",
            "CLAIM",
            "STORAGECLASS",
            "VOLUMEATTRIBUTESCLASS",
            "REASON",
            "AGE"
        ]
    );
    let row = volumes.row(&pv);
    assert_eq!(
        (
            row.get("RECLAIM POLICY"),
            row.get("STATUS"),
            row.get("CLAIM"),
            row.get("STORAGECLASS")
        ),
        ("Delete", "Bound", "default/notes", "standard")
    );
    let dir = volume_dir(&herd, &pv);
    assert_eq!(
        std::fs::read_to_string(dir.join("notes.txt")).expect("the volume's file on the node"),
        "first run\n"
    );

    // The pod is gone; a new one finds what the first wrote.
    let second = run_writer(&herd, writer("w2", &image, "notes", "second run", &[])).await;
    assert!(
        second.contains("file /data/notes.txt:\nfirst run\nsecond run\n"),
        "{second}"
    );

    // pvc-protection: deleting the claim while a pod runs on it leaves it Terminating.
    let sleeper = writer("w3", &image, "notes", "third run", &["--forever"]);
    kubectl_stdin(&herd, &["apply", "-f", "-"], &to_yaml(&sleeper))
        .await
        .ok();
    herd.wait_phase("w3", "Running").await;
    kubectl(&herd, &["delete", "pvc", "notes", "--wait=false"])
        .await
        .ok();
    let terminating = kubectl(&herd, &["get", "pvc", "notes"]).await.ok().table();
    assert_eq!(terminating.row("notes").get("STATUS"), "Terminating");
    assert!(dir.exists());
    // The pod goes: the claim goes, then the volume and its directory (reclaim policy Delete).
    kubectl(&herd, &["delete", "pod", "w3"]).await.ok();
    wait_for(
        "the claim, volume and directory to go",
        Duration::from_secs(60),
        || async {
            let claim = herd.get(&format!("{CLAIMS}/notes")).await.0;
            let volume = herd.get(&format!("{PVS}/{pv}")).await.0;
            if claim == 404 && volume == 404 && !dir.exists() {
                Ok(())
            } else {
                Err(format!(
                    "claim {claim}, volume {volume}, directory there: {}",
                    dir.exists()
                ))
            }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retain_class_keeps_the_volume_and_its_data_released() {
    let registry = Registry::start().await;
    let image = registry.image("hello:v1");
    push("hello", &image).await;
    let herd = Herd::up(HerdOptions::default()).await;
    herd.wait_node_ready("e2e-node").await;

    let keep = json!({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
        "metadata": {"name": "keep"}, "provisioner": "herd.dev/local",
        "reclaimPolicy": "Retain", "volumeBindingMode": "WaitForFirstConsumer"});
    kubectl_stdin(&herd, &["apply", "-f", "-"], &to_yaml(&keep))
        .await
        .ok();
    kubectl_stdin(
        &herd,
        &["apply", "-f", "-"],
        &to_yaml(&claim("kept", Some("keep"))),
    )
    .await
    .ok();
    run_writer(&herd, writer("w", &image, "kept", "kept line", &[])).await;
    let pv = s(&claim_of(&herd, "kept").await, "/spec/volumeName").to_string();
    kubectl(&herd, &["delete", "pvc", "kept"]).await.ok();
    wait_for("the volume Released", Duration::from_secs(30), || async {
        let volume = herd.get_ok(&format!("{PVS}/{pv}")).await;
        match s(&volume, "/status/phase") {
            "Released" => Ok(()),
            other => Err(other.to_string()),
        }
    })
    .await;
    let volumes = kubectl(&herd, &["get", "pv", &pv]).await.ok().table();
    assert_eq!(
        (
            volumes.row(&pv).get("STATUS"),
            volumes.row(&pv).get("RECLAIM POLICY"),
            volumes.row(&pv).get("CLAIM")
        ),
        ("Released", "Retain", "default/kept")
    );
    assert_eq!(
        std::fs::read_to_string(volume_dir(&herd, &pv).join("notes.txt")).expect("kept data"),
        "kept line\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stateful_sets_claims_bind_and_follow_their_pods() {
    let registry = Registry::start().await;
    let image = registry.image("hello:v1");
    push("hello", &image).await;
    let herd = Herd::up(HerdOptions::default()).await;
    herd.wait_node_ready("e2e-node").await;

    let set = json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "web"},
        "spec": {"serviceName": "web", "replicas": 2, "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{
                "name": "hello", "image": image,
                "args": ["--append=/data/notes.txt=started", "--forever"],
                "volumeMounts": [{"name": "www", "mountPath": "/data"}]}]}},
            "volumeClaimTemplates": [{"metadata": {"name": "www"}, "spec": {
                "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "16Mi"}}}}]}});
    kubectl_stdin(&herd, &["apply", "-f", "-"], &to_yaml(&set))
        .await
        .ok();
    // One claim per pod, of the default class, each bound to a volume on the pod's node.
    for ordinal in 0..2 {
        herd.wait_phase(&format!("web-{ordinal}"), "Running").await;
        let claim = claim_of(&herd, &format!("www-web-{ordinal}")).await;
        assert_eq!(s(&claim, "/status/phase"), "Bound", "{claim}");
        assert_eq!(s(&claim, "/spec/storageClassName"), "standard");
        let pv = s(&claim, "/spec/volumeName").to_string();
        wait_for(
            "the pod's line in its volume",
            Duration::from_secs(30),
            || async {
                match std::fs::read_to_string(volume_dir(&herd, &pv).join("notes.txt")) {
                    Ok(text) if text == "started\n" => Ok(()),
                    other => Err(format!("{other:?}")),
                }
            },
        )
        .await;
    }
    // web-0 deleted: the StatefulSet makes it again, on the same claim, and it finds its data.
    let uid = s(&herd.pod("web-0").await.expect("web-0"), "/metadata/uid").to_string();
    kubectl(&herd, &["delete", "pod", "web-0"]).await.ok();
    herd.wait_pod(
        "web-0",
        "recreated and Running",
        Duration::from_secs(60),
        |p| s(p, "/metadata/uid") != uid && phase(p) == "Running",
    )
    .await;
    let log = wait_for(
        "web-0's log with both lines",
        Duration::from_secs(30),
        || async {
            let log = herd.pod_log("web-0").await;
            if log.contains("file /data/notes.txt:\nstarted\nstarted\n") {
                Ok(log)
            } else {
                Err(log)
            }
        },
    )
    .await;
    assert!(log.contains("started\nstarted\n"), "{log}");
}
