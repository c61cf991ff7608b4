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
