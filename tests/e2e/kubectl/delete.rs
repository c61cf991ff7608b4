//! `kubectl delete`: waits until the object is gone, `--cascade=background|foreground|orphan`,
//! `--force --grace-period=0`, `-l`, and NotFound.

use std::time::{Duration, Instant};

use super::*;

/// The ReplicaSets labelled `app=<app>`.
async fn replicasets(herd: &Herd, app: &str) -> Vec<Value> {
    items(
        &herd
            .get_ok(&format!("{REPLICASETS}?labelSelector=app%3D{app}"))
            .await,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_delete_waits_and_honours_cascade_policies() {
    let c = Cluster::up(&[("hello", "v1"), ("spin", "v1")]).await;
    let herd = &c.herd;
    let hello = c.image("hello", "v1");
    let spin = c.image("spin", "v1");

    herd.create(PODS, &sleeper_pod("sleeper", &hello)).await;
    herd.create(PODS, &sleeper_pod("forced", &hello)).await;
    let mut spinner = spin_pod("spinner", &spin);
    spinner["metadata"]["labels"] = json!({"app": "spinner"});
    herd.create(PODS, &spinner).await;
    for name in ["bg", "fg", "orphan"] {
        herd.create(DEPLOYMENTS, &sleeper_deployment(name, &hello, 2))
            .await;
    }
    for app in ["sleeper", "forced", "spinner"] {
        wait_ready_pods(herd, "default", &format!("app={app}"), 1).await;
    }
    for app in ["bg", "fg", "orphan"] {
        wait_ready_pods(herd, "default", &format!("app={app}"), 2).await;
    }

    // A plain delete returns once the pod is gone, not when it is merely marked.
    let out = kubectl(herd, &["delete", "pod", "sleeper"]).await.ok();
    assert_eq!(
        out.lines(),
        [r#"pod "sleeper" deleted from default namespace"#]
    );
    assert_eq!(
        herd.get(&format!("{PODS}/sleeper")).await.0,
        404,
        "kubectl delete returned before the pod was gone"
    );

    // Even a guest that never yields is stopped promptly.
    let started = Instant::now();
    kubectl(herd, &["delete", "pod", "spinner"]).await.ok();
    assert_eq!(herd.get(&format!("{PODS}/spinner")).await.0, 404);
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "deleting the spinning pod took {:?}",
        started.elapsed()
    );

    // --force --grace-period=0: removed at once, with kubectl's warning.
    let out = kubectl(
        herd,
        &["delete", "pod", "forced", "--force", "--grace-period=0"],
    )
    .await
    .ok();
    out.stderr_has("Immediate deletion does not wait for confirmation that the running resource has been terminated");
    assert_eq!(
        out.lines(),
        [r#"pod "forced" force deleted from default namespace"#]
    );
    assert_eq!(herd.get(&format!("{PODS}/forced")).await.0, 404);

    // background (the default): the Deployment goes at once, the garbage collector takes the rest.
    let out = kubectl(
        herd,
        &["delete", "deployment", "bg", "--cascade=background"],
    )
    .await
    .ok();
    assert_eq!(
        out.lines(),
        [r#"deployment.apps "bg" deleted from default namespace"#]
    );
    assert_eq!(herd.get(&format!("{DEPLOYMENTS}/bg")).await.0, 404);
    wait_for(
        "ReplicaSet and pods of bg collected",
        Duration::from_secs(60),
        || async {
            let sets = replicasets(herd, "bg").await.len();
            let pods = pod_names(herd, "default", "app%3Dbg").await;
            if sets == 0 && pods.is_empty() {
                Ok(())
            } else {
                Err(format!("{sets} replicasets, pods {pods:?}"))
            }
        },
    )
    .await;

    // foreground: kubectl returns only when the Deployment is gone, which is after its dependents.
    let out = kubectl(
        herd,
        &["delete", "deployment", "fg", "--cascade=foreground"],
    )
    .await
    .ok();
    assert_eq!(
        out.lines(),
        [r#"deployment.apps "fg" deleted from default namespace"#]
    );
    assert_eq!(herd.get(&format!("{DEPLOYMENTS}/fg")).await.0, 404);
    assert_eq!(
        replicasets(herd, "fg").await.len(),
        0,
        "foreground deletion left the ReplicaSet"
    );
    assert_eq!(
        pod_names(herd, "default", "app%3Dfg").await,
        Vec::<String>::new(),
        "foreground deletion left pods"
    );

    // orphan: the ReplicaSet and its pods stay, without an owner.
    let rs_before = replicasets(herd, "orphan").await;
    assert_eq!(rs_before.len(), 1);
    let out = kubectl(
        herd,
        &["delete", "deployment", "orphan", "--cascade=orphan"],
    )
    .await
    .ok();
    assert_eq!(
        out.lines(),
        [r#"deployment.apps "orphan" deleted from default namespace"#]
    );
    assert_eq!(herd.get(&format!("{DEPLOYMENTS}/orphan")).await.0, 404);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rs_after = replicasets(herd, "orphan").await;
    assert_eq!(rs_after.len(), 1, "the orphaned ReplicaSet was deleted");
    assert_eq!(
        rs_after[0]["metadata"]["uid"],
        rs_before[0]["metadata"]["uid"]
    );
    let owners = rs_after[0]["metadata"]["ownerReferences"]
        .as_array()
        .map(Vec::len)
        .unwrap_or(0);
    assert_eq!(
        owners, 0,
        "orphaned ReplicaSet still has owners: {}",
        rs_after[0]["metadata"]
    );
    wait_ready_pods(herd, "default", "app=orphan", 2).await;

    // -l deletes every match; a missing name is NotFound unless --ignore-not-found.
    let out = kubectl(herd, &["delete", "pods", "-l", "app=orphan"])
        .await
        .ok();
    assert_eq!(out.lines().len(), 2, "{}", out.stdout);
    // The orphaned ReplicaSet replaces them; the originals are gone.
    kubectl(herd, &["delete", "pod", "nope"])
        .await
        .fails()
        .stderr_has(r#"Error from server (NotFound): pods "nope" not found"#);
    let out = kubectl(herd, &["delete", "pod", "nope", "--ignore-not-found"])
        .await
        .ok();
    assert_eq!(out.stdout, "");
}
