//! `kubectl scale`, `rollout status`, `set image`, `rollout history` and `rollout undo` on a Deployment.

use serde_json::Value;

use super::*;

/// The images of the live pods of `app=web`, once there are exactly `n`, all ready and on one image.
async fn wait_pods_on_image(herd: &Herd, n: usize, image: &str) {
    wait_for(
        &format!("{n} ready web pods on {image}"),
        START_TIMEOUT,
        || async {
            let pods: Vec<Value> = items(
                &herd
                    .get_ok(&format!("{PODS}?labelSelector=app%3Dweb"))
                    .await,
            );
            let images: Vec<String> = pods
                .iter()
                .map(|p| format!("{} {}", s(p, "/spec/containers/0/image"), pod_summary(p)))
                .collect();
            let ok = pods.len() == n
                && pods
                    .iter()
                    .all(|p| running_and_ready(p) && s(p, "/spec/containers/0/image") == image);
            if ok { Ok(()) } else { Err(images.join("; ")) }
        },
    )
    .await;
}

async fn rollout_status(herd: &Herd) {
    let out = kubectl(
        herd,
        &["rollout", "status", "deployment/web", "--timeout=90s"],
    )
    .await
    .ok();
    assert_eq!(
        out.lines().last().copied(),
        Some(r#"deployment "web" successfully rolled out"#),
        "{}",
        out.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_scale_rollout_status_and_undo() {
    let c = Cluster::up(&[("http-hello", "v1"), ("http-hello", "v2")]).await;
    let herd = &c.herd;
    let v1 = c.image("http-hello", "v1");
    let v2 = c.image("http-hello", "v2");
    let path = format!("{DEPLOYMENTS}/web");

    herd.create(DEPLOYMENTS, &http_hello_deployment("web", &v1, 1))
        .await;

    // rollout status waits for the rollout and says so.
    rollout_status(herd).await;
    let d = herd.get_ok(&path).await;
    assert_eq!(d["status"]["availableReplicas"], 1, "{}", d["status"]);
    assert_eq!(
        d["status"]["observedGeneration"],
        d["metadata"]["generation"]
    );
    assert_eq!(
        s(
            &d,
            "/metadata/annotations/deployment.kubernetes.io~1revision"
        ),
        "1"
    );

    // scale goes through deployments/scale; rollout status then waits for the new replicas.
    kubectl(herd, &["scale", "deployment", "web", "--replicas=3"])
        .await
        .ok()
        .stdout_has("deployment.apps/web scaled");
    assert_eq!(herd.get_ok(&path).await["spec"]["replicas"], 3);
    rollout_status(herd).await;
    let d = herd.get_ok(&path).await;
    assert_eq!(
        (
            &d["status"]["replicas"],
            &d["status"]["readyReplicas"],
            &d["status"]["availableReplicas"]
        ),
        (&3.into(), &3.into(), &3.into()),
        "{}",
        d["status"]
    );
    let table = kubectl(herd, &["get", "deployment", "web"])
        .await
        .ok()
        .table();
    assert_eq!(table.row("web").get("READY"), "3/3");
    // With a precondition (--current-replicas) kubectl reads and updates the Scale object.
    kubectl(
        herd,
        &[
            "scale",
            "deployment/web",
            "--replicas=2",
            "--current-replicas=3",
        ],
    )
    .await
    .ok()
    .stdout_has("deployment.apps/web scaled");
    assert_eq!(herd.get_ok(&path).await["spec"]["replicas"], 2);
    kubectl(
        herd,
        &[
            "scale",
            "deployment/web",
            "--replicas=1",
            "--current-replicas=3",
        ],
    )
    .await
    .fails()
    .stderr_has("Expected replicas to be 3, was 2");
    wait_pods_on_image(herd, 2, &v1).await;

    // A new image is a new revision.
    kubectl(
        herd,
        &[
            "set",
            "image",
            "deployment/web",
            &format!("http-hello={v2}"),
        ],
    )
    .await
    .ok()
    .stdout_has("deployment.apps/web image updated");
    rollout_status(herd).await;
    wait_pods_on_image(herd, 2, &v2).await;
    let d = herd.get_ok(&path).await;
    assert_eq!(
        s(
            &d,
            "/metadata/annotations/deployment.kubernetes.io~1revision"
        ),
        "2"
    );
    let history = kubectl(herd, &["rollout", "history", "deployment/web"])
        .await
        .ok();
    let revisions: Vec<&str> = history
        .lines()
        .iter()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| w.chars().all(|c| c.is_ascii_digit()))
        .collect();
    assert_eq!(revisions, ["1", "2"], "{}", history.stdout);

    // undo brings back revision 1's template as revision 3.
    kubectl(herd, &["rollout", "undo", "deployment/web"])
        .await
        .ok()
        .stdout_has("deployment.apps/web rolled back");
    let d = herd.get_ok(&path).await;
    assert_eq!(s(&d, "/spec/template/spec/containers/0/image"), v1);
    rollout_status(herd).await;
    wait_pods_on_image(herd, 2, &v1).await;
    let d = herd.get_ok(&path).await;
    assert_eq!(
        s(
            &d,
            "/metadata/annotations/deployment.kubernetes.io~1revision"
        ),
        "3"
    );
    // Old ReplicaSets are kept, scaled to 0.
    let sets = items(
        &herd
            .get_ok(&format!("{REPLICASETS}?labelSelector=app%3Dweb"))
            .await,
    );
    assert_eq!(sets.len(), 2, "one ReplicaSet per distinct template");
    let mut replicas: Vec<i64> = sets
        .iter()
        .map(|rs| rs["spec"]["replicas"].as_i64().unwrap_or(-1))
        .collect();
    replicas.sort();
    assert_eq!(replicas, [0, 2]);
    // The first ReplicaSet came back: revision 3, remembering it was revision 1.
    let mut revisions: Vec<(String, String)> = sets
        .iter()
        .map(|rs| {
            (
                s(
                    rs,
                    "/metadata/annotations/deployment.kubernetes.io~1revision",
                )
                .to_string(),
                s(
                    rs,
                    "/metadata/annotations/deployment.kubernetes.io~1revision-history",
                )
                .to_string(),
            )
        })
        .collect();
    revisions.sort();
    assert_eq!(
        revisions,
        [("2".into(), String::new()), ("3".into(), "1".into())]
    );

    // Undo again: back to the second ReplicaSet (revision 4), still two ReplicaSets.
    kubectl(herd, &["rollout", "undo", "deployment/web"])
        .await
        .ok()
        .stdout_has("deployment.apps/web rolled back");
    rollout_status(herd).await;
    wait_pods_on_image(herd, 2, &v2).await;
    let sets = items(
        &herd
            .get_ok(&format!("{REPLICASETS}?labelSelector=app%3Dweb"))
            .await,
    );
    assert_eq!(
        sets.len(),
        2,
        "rollout undo reuses the ReplicaSet of that template"
    );
    let history = kubectl(herd, &["rollout", "history", "deployment/web"])
        .await
        .ok();
    let revisions: Vec<&str> = history
        .lines()
        .iter()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| w.chars().all(|c| c.is_ascii_digit()))
        .collect();
    assert_eq!(revisions, ["3", "4"], "{}", history.stdout);
}
