//! Deployment -> ReplicaSet -> Pods, with ownerReferences, and replacement of a deleted pod.

use std::time::Duration;

use serde_json::Value;

use crate::harness::*;

fn items(list: &Value) -> Vec<Value> {
    list["items"].as_array().cloned().unwrap_or_default()
}

fn owner<'a>(obj: &'a Value, kind: &str) -> Option<&'a Value> {
    obj.pointer("/metadata/ownerReferences")?
        .as_array()?
        .iter()
        .find(|r| s(r, "/kind") == kind)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployment_creates_replicaset_and_pods_and_replaces_a_deleted_pod() {
    let registry = Registry::start().await;
    let image = registry.image("http-hello:v1");
    push("http-hello", &image).await;
    let herd = Herd::up(HerdOptions::default()).await;

    let deployment = herd
        .create(DEPLOYMENTS, &http_hello_deployment("web", &image, 2))
        .await;
    let deployment_uid = s(&deployment, "/metadata/uid").to_string();

    let rs = wait_for(
        "one ReplicaSet owned by deployment web",
        Duration::from_secs(30),
        || async {
            let all = items(&herd.get_ok(REPLICASETS).await);
            let owned: Vec<Value> = all
                .into_iter()
                .filter(|rs| {
                    owner(rs, "Deployment").is_some_and(|o| s(o, "/uid") == deployment_uid)
                })
                .collect();
            if owned.len() == 1 {
                Ok(owned[0].clone())
            } else {
                Err(format!("{} owned replicasets", owned.len()))
            }
        },
    )
    .await;
    let reference = owner(&rs, "Deployment").expect("owner");
    assert_eq!(s(reference, "/name"), "web");
    assert_eq!(reference["controller"], true, "{reference}");
    assert_eq!(s(reference, "/apiVersion"), "apps/v1");
    assert_eq!(rs["spec"]["replicas"], 2, "{}", rs["spec"]);
    let rs_uid = s(&rs, "/metadata/uid").to_string();

    let running_pods = || async {
        let pods = items(
            &herd
                .get_ok(&format!("{PODS}?labelSelector=app%3Dweb"))
                .await,
        );
        let live: Vec<Value> = pods
            .into_iter()
            .filter(|p| s(p, "/metadata/deletionTimestamp").is_empty())
            .collect();
        let running = live.iter().filter(|p| phase(p) == "Running").count();
        if live.len() == 2 && running == 2 {
            Ok(live)
        } else {
            Err(live
                .iter()
                .map(|p| format!("{}: {}", s(p, "/metadata/name"), pod_summary(p)))
                .collect::<Vec<_>>()
                .join("; "))
        }
    };
    let pods = wait_for("2 running pods of web", START_TIMEOUT, running_pods).await;
    for pod in &pods {
        let reference = owner(pod, "ReplicaSet")
            .unwrap_or_else(|| panic!("pod without ReplicaSet owner: {pod}"));
        assert_eq!(s(reference, "/uid"), rs_uid);
        assert_eq!(reference["controller"], true);
        assert!(
            s(pod, "/metadata/name").starts_with("web-"),
            "pod name {}",
            s(pod, "/metadata/name")
        );
    }

    // Delete one pod: it goes away and a new one takes its place.
    let victim = s(&pods[0], "/metadata/name").to_string();
    let victim_uid = s(&pods[0], "/metadata/uid").to_string();
    herd.delete(&format!("{PODS}/{victim}")).await;
    herd.wait_pod_gone(&victim, Duration::from_secs(15)).await;
    let pods = wait_for("2 running pods of web again", START_TIMEOUT, running_pods).await;
    assert!(
        pods.iter().all(|p| s(p, "/metadata/uid") != victim_uid),
        "the deleted pod is back"
    );
    assert!(
        pods.iter()
            .all(|p| owner(p, "ReplicaSet").is_some_and(|o| s(o, "/uid") == rs_uid))
    );

    // Scaling down to 1 removes one.
    herd.update(&format!("{DEPLOYMENTS}/web"), |d| {
        d["spec"]["replicas"] = 1.into()
    })
    .await;
    wait_for(
        "1 pod of web after scaling down",
        Duration::from_secs(30),
        || async {
            let pods = items(
                &herd
                    .get_ok(&format!("{PODS}?labelSelector=app%3Dweb"))
                    .await,
            );
            if pods.len() == 1 {
                Ok(())
            } else {
                Err(format!("{} pods", pods.len()))
            }
        },
    )
    .await;
}

/// A rolling update (maxSurge 1, maxUnavailable 1) never drops below replicas − maxUnavailable Ready pods
/// while it rolls, sampled throughout; `kubectl rollout undo` brings the old image back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_update_keeps_enough_ready_pods_and_undo_restores_the_image() {
    let registry = Registry::start().await;
    let v1 = registry.image("http-hello:v1");
    let v2 = registry.image("http-hello:v2");
    push("http-hello", &v1).await;
    push("http-hello", &v2).await;
    let herd = Herd::up(HerdOptions::default()).await;
    herd.wait_node_ready("e2e-node").await;
    let mut deploy = http_hello_deployment("roll", &v1, 4);
    deploy["spec"]["strategy"] = serde_json::json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 1}});
    herd.create("/apis/apps/v1/namespaces/default/deployments", &deploy)
        .await;
    let ready_images = || async {
        let list = herd
            .get_ok("/api/v1/namespaces/default/pods?labelSelector=app%3Droll")
            .await;
        list["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p.pointer("/metadata/deletionTimestamp").is_none())
            .filter(|p| condition(p, "Ready").is_some_and(|c| c["status"] == "True"))
            .map(|p| s(p, "/spec/containers/0/image").to_string())
            .collect::<Vec<_>>()
    };
    wait_for("4 ready v1 pods", Duration::from_secs(60), || async {
        let ready = ready_images().await;
        if ready.len() == 4 {
            Ok(())
        } else {
            Err(format!("{ready:?}"))
        }
    })
    .await;

    let patch = serde_json::json!({"spec": {"template": {"spec": {"containers": [{"name": "http-hello", "image": v2}]}}}});
    let (code, _) = herd
        .send_raw(
            reqwest::Method::PATCH,
            "/apis/apps/v1/namespaces/default/deployments/roll",
            Some(("application/strategic-merge-patch+json", patch.to_string())),
        )
        .await;
    assert_eq!(code, 200);
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    let mut fewest = usize::MAX;
    loop {
        let ready = ready_images().await;
        fewest = fewest.min(ready.len());
        if ready.len() == 4 && ready.iter().all(|i| *i == v2) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "rollout did not finish: {ready:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        fewest >= 3,
        "Ready pods fell to {fewest} during the rollout (replicas 4, maxUnavailable 1)"
    );

    kubectl(&herd, &["rollout", "undo", "deployment/roll"])
        .await
        .ok();
    wait_for(
        "4 ready v1 pods after undo",
        Duration::from_secs(90),
        || async {
            let ready = ready_images().await;
            if ready.len() == 4 && ready.iter().all(|i| *i == v1) {
                Ok(())
            } else {
                Err(format!("{ready:?}"))
            }
        },
    )
    .await;
}
