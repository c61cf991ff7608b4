//! Volumes as WASI preopened directories: a ConfigMap volume follows the object, a Secret's keys are files,
//! a hostPath is seen as it is, and a guest can reach no file outside its mounts.

use std::time::Duration;

use serde_json::json;

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn volumes_are_the_only_files_a_guest_sees_and_configmaps_follow_updates() {
    let (_registry, images) = registry_with(&["http-hello"]).await;
    let herd = Herd::up(HerdOptions::default()).await;
    herd.wait_node_ready("e2e-node").await;
    // herd enforces Pod Security `baseline` where a namespace says nothing: a hostPath pod needs its namespace
    // labelled `privileged`.
    kubectl(
        &herd,
        &[
            "label",
            "namespace",
            "default",
            "pod-security.kubernetes.io/enforce=privileged",
        ],
    )
    .await
    .ok();
    herd.create(
        "/api/v1/namespaces/default/configmaps",
        &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "site"},
                "data": {"greeting": "v1", "other": "x"}}),
    )
    .await;
    herd.create(
        "/api/v1/namespaces/default/secrets",
        &json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "tls"},
                "stringData": {"key.pem": "not really a key"}}),
    )
    .await;
    let host_dir = tempfile::tempdir().expect("host dir");
    std::fs::write(host_dir.path().join("motd"), "from the host\n").expect("host file");
    let mut pod = http_hello_pod("mounted", "web", &images[0]);
    pod["spec"]["volumes"] = json!([
        {"name": "site", "configMap": {"name": "site", "items": [{"key": "greeting", "path": "hello.txt"}]}},
        {"name": "tls", "secret": {"secretName": "tls"}},
        {"name": "host", "hostPath": {"path": host_dir.path().display().to_string(), "type": "Directory"}},
        {"name": "scratch", "emptyDir": {}},
    ]);
    pod["spec"]["containers"][0]["volumeMounts"] = json!([
        {"name": "site", "mountPath": "/etc/site"},
        {"name": "tls", "mountPath": "/etc/tls"},
        {"name": "host", "mountPath": "/host", "readOnly": true},
        {"name": "scratch", "mountPath": "/scratch"},
    ]);
    herd.create(PODS, &pod).await;
    let pod = wait_running(&herd, "mounted").await;
    assert_eq!(
        wait_answer(&pod, 8080, "/file/etc/site/hello.txt", 200).await,
        "v1"
    );
    assert_eq!(
        pod_get(&pod, 8080, "/file/etc/tls/key.pem").await,
        (200, "not really a key".into())
    );
    assert_eq!(
        pod_get(&pod, 8080, "/file/host/motd").await,
        (200, "from the host\n".into())
    );
    // Keys not listed in items are not projected.
    assert_eq!(pod_get(&pod, 8080, "/file/etc/site/other").await.0, 404);
    // Nothing outside the mounts: not the host's files, not another pod's, not the agent's data.
    for outside in [
        "/file/etc/passwd".to_string(),
        "/file/etc/hostname".into(),
        format!("/file{}", herd.data_dir.join("herd.db").display()),
    ] {
        let (status, body) = pod_get(&pod, 8080, &outside).await;
        assert_eq!(status, 404, "{outside} must be out of reach, got {body}");
    }

    let patch = json!({"data": {"greeting": "v2"}}).to_string();
    let (status, body) = herd
        .send_raw(
            reqwest::Method::PATCH,
            "/api/v1/namespaces/default/configmaps/site",
            Some(("application/merge-patch+json", patch)),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    wait_for(
        "the guest to read the updated ConfigMap",
        Duration::from_secs(30),
        || async {
            match pod_get(&pod, 8080, "/file/etc/site/hello.txt").await {
                (200, body) if body == "v2" => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
    // The emptyDir lives in the agent's data dir while the pod exists, and goes with it.
    let uid = s(&pod, "/metadata/uid").to_string();
    let pod_dirs = || {
        walk(&herd.data_dir)
            .into_iter()
            .filter(|p| p.to_string_lossy().contains(&uid) && p.ends_with("scratch"))
            .collect::<Vec<_>>()
    };
    assert!(
        !pod_dirs().is_empty(),
        "the emptyDir exists under the data dir"
    );
    herd.delete(&format!("{PODS}/mounted")).await;
    wait_for(
        "the pod's volumes to be removed",
        Duration::from_secs(40),
        || async {
            let left = pod_dirs();
            if left.is_empty() {
                Ok(())
            } else {
                Err(format!("{left:?}"))
            }
        },
    )
    .await;
}

/// Every path under `dir`.
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(path.clone());
            }
            out.push(path);
        }
    }
    out
}
