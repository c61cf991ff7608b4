//! `kubectl describe` of pods, deployments, services and nodes, with the Events herd writes for
//! scheduling, pulls, starts and failures; `kubectl get events` and its field selectors.

use std::time::Duration;

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_describe_shows_details_and_events() {
    let c = Cluster::up(&[("hello", "v1"), ("http-hello", "v1")]).await;
    let herd = &c.herd;
    let hello = c.image("hello", "v1");
    let http_hello = c.image("http-hello", "v1");

    herd.create(DEPLOYMENTS, &http_hello_deployment("web", &http_hello, 1))
        .await;
    herd.create(SERVICES, &service("web", "web", 80, 8080))
        .await;
    herd.create(PODS, &sleeper_pod("sleeper", &hello)).await;
    // Nothing listens on port 1: the pull fails.
    herd.create(PODS, &sleeper_pod("broken", "127.0.0.1:1/nothing:v1"))
        .await;
    let sleeper = wait_ready_pods(herd, "default", "app=sleeper", 1)
        .await
        .remove(0);
    wait_ready_pods(herd, "default", "app=web", 1).await;
    wait_object(
        herd,
        &format!("{DEPLOYMENTS}/web"),
        "deployment web available",
        START_TIMEOUT,
        |d| d["status"]["availableReplicas"] == 1,
    )
    .await;

    // Pod: the header fields, the container, conditions, and the kubelet/scheduler events. Events are
    // written asynchronously (as by the kubelet's recorder): the pod may be Ready a moment before its
    // Started event is stored.
    let wanted = ["Scheduled", "Pulled", "Started"];
    let text = &wait_for(
        "describe pod sleeper to show its events",
        Duration::from_secs(10),
        || async {
            let text = kubectl(herd, &["describe", "pod", "sleeper"])
                .await
                .ok()
                .stdout;
            let reasons = events_table(&text)
                .map(|t| t.column("Reason"))
                .unwrap_or_default();
            match wanted.iter().all(|w| reasons.iter().any(|r| r == w)) {
                true => Ok(text),
                false => Err(text),
            }
        },
    )
    .await;
    assert_eq!(
        described(text, 0, "Name").as_deref(),
        Some("sleeper"),
        "{text}"
    );
    assert_eq!(
        described(text, 0, "Namespace").as_deref(),
        Some("default"),
        "{text}"
    );
    let node = described(text, 0, "Node").unwrap_or_default();
    assert!(node.starts_with("e2e-node/"), "Node: {node:?}\n{text}");
    assert_eq!(
        described(text, 0, "Status").as_deref(),
        Some("Running"),
        "{text}"
    );
    assert_eq!(
        described(text, 0, "IP").as_deref(),
        Some(s(&sleeper, "/status/podIP")),
        "{text}"
    );
    assert_eq!(
        described(text, 4, "Image").as_deref(),
        Some(hello.as_str()),
        "{text}"
    );
    assert_eq!(
        described(text, 4, "State").as_deref(),
        Some("Running"),
        "{text}"
    );
    assert_eq!(
        described(text, 4, "Ready").as_deref(),
        Some("True"),
        "{text}"
    );
    assert_eq!(
        described(text, 4, "Restart Count").as_deref(),
        Some("0"),
        "{text}"
    );
    assert!(text.contains("\nConditions:\n"), "{text}");
    let events = events_table(text).unwrap_or_else(|| panic!("describe pod: no events\n{text}"));
    assert_eq!(events.columns, ["Type", "Reason", "Age", "From", "Message"]);
    let reasons = events.column("Reason");
    for wanted in wanted {
        assert!(
            reasons.iter().any(|r| r == wanted),
            "no {wanted} event: {events:#?}"
        );
    }
    let scheduled = events
        .rows
        .iter()
        .find(|r| r[1] == "Scheduled")
        .expect("Scheduled row");
    assert_eq!(scheduled[0], "Normal");
    assert_eq!(scheduled[3], "default-scheduler");
    assert_eq!(
        scheduled[4],
        "Successfully assigned default/sleeper to e2e-node"
    );

    // A failed pull is a Warning event, and `get pods` shows why the pod waits.
    let broken = wait_for(
        "a Warning Failed event for broken",
        START_TIMEOUT,
        || async {
            let out = kubectl(herd, &["describe", "pod", "broken"]).await.ok();
            match events_table(&out.stdout) {
                Some(t) if t.rows.iter().any(|r| r[0] == "Warning" && r[1] == "Failed") => {
                    Ok(out.stdout)
                }
                _ => Err(out.stdout),
            }
        },
    )
    .await;
    assert!(broken.contains("nothing:v1"), "{broken}");
    let status = kubectl(herd, &["get", "pod", "broken"]).await.ok().table();
    let reason = status.row("broken").get("STATUS").to_string();
    assert!(
        ["ErrImagePull", "ImagePullBackOff"].contains(&reason.as_str()),
        "STATUS of a pod whose pull fails: {reason:?}"
    );

    // Deployment: replica counts, strategy, new ReplicaSet, ScalingReplicaSet event.
    let out = kubectl(herd, &["describe", "deployment", "web"]).await.ok();
    let text = &out.stdout;
    assert_eq!(
        described(text, 0, "Replicas").as_deref(),
        Some("1 desired | 1 updated | 1 total | 1 available | 0 unavailable"),
        "{text}"
    );
    assert_eq!(
        described(text, 0, "StrategyType").as_deref(),
        Some("RollingUpdate"),
        "{text}"
    );
    assert_eq!(
        described(text, 0, "Selector").as_deref(),
        Some("app=web"),
        "{text}"
    );
    let new_rs = described(text, 0, "NewReplicaSet").unwrap_or_default();
    assert!(
        new_rs.starts_with("web-") && new_rs.ends_with("(1/1 replicas created)"),
        "NewReplicaSet: {new_rs:?}\n{text}"
    );
    let events =
        events_table(text).unwrap_or_else(|| panic!("describe deployment: no events\n{text}"));
    let scaled = events
        .rows
        .iter()
        .find(|r| r[1] == "ScalingReplicaSet")
        .unwrap_or_else(|| panic!("no ScalingReplicaSet event: {events:#?}"));
    assert_eq!(scaled[3], "deployment-controller");
    assert!(
        scaled[4].starts_with("Scaled up replica set web-"),
        "{scaled:?}"
    );

    // Service: type, cluster IP, ports.
    let svc = herd.get_ok(&format!("{SERVICES}/web")).await;
    let out = kubectl(herd, &["describe", "service", "web"]).await.ok();
    let text = &out.stdout;
    assert_eq!(
        described(text, 0, "Type").as_deref(),
        Some("ClusterIP"),
        "{text}"
    );
    assert_eq!(
        described(text, 0, "IP").as_deref(),
        Some(s(&svc, "/spec/clusterIP")),
        "{text}"
    );
    let port = described(text, 0, "Port").unwrap_or_default();
    assert_eq!(
        port.split_whitespace().collect::<Vec<_>>(),
        ["http", "80/TCP"],
        "{text}"
    );
    assert_eq!(
        described(text, 0, "TargetPort").as_deref(),
        Some("8080/TCP"),
        "{text}"
    );

    // Node: roles, the Ready condition, system info.
    let out = kubectl(herd, &["describe", "node", "e2e-node"]).await.ok();
    let text = &out.stdout;
    assert_eq!(
        described(text, 0, "Name").as_deref(),
        Some("e2e-node"),
        "{text}"
    );
    assert_eq!(
        described(text, 0, "Roles").as_deref(),
        Some("<none>"),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.trim_start().starts_with("Ready ")
                && l.split_whitespace().nth(1) == Some("True")),
        "no Ready True condition line:\n{text}"
    );
    assert!(
        described(text, 2, "Kubelet Version").is_some_and(|v| v.starts_with('v')),
        "{text}"
    );

    // `get events`: LAST SEEN TYPE REASON OBJECT MESSAGE, and involvedObject field selectors.
    let events = kubectl(herd, &["get", "events"]).await.ok().table();
    assert_eq!(
        events.columns,
        ["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
    );
    assert!(
        events
            .rows
            .iter()
            .any(|r| r[2] == "Scheduled" && r[3] == "pod/sleeper"),
        "{events:#?}"
    );
    let only = kubectl(
        herd,
        &[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=sleeper,involvedObject.kind=Pod",
        ],
    )
    .await
    .ok()
    .table();
    assert!(!only.rows.is_empty());
    assert!(
        only.column("OBJECT").iter().all(|o| o == "pod/sleeper"),
        "{only:#?}"
    );

    // Deleting the pod records a Killing event for its container.
    herd.delete(&format!("{PODS}/sleeper")).await;
    wait_for(
        "a Killing event for sleeper",
        Duration::from_secs(30),
        || async {
            let out = kubectl(
                herd,
                &[
                    "get",
                    "events",
                    "--field-selector",
                    "involvedObject.name=sleeper,reason=Killing",
                    "-o",
                    "name",
                ],
            )
            .await
            .ok();
            if out.lines().is_empty() {
                Err(out.stderr)
            } else {
                Ok(())
            }
        },
    )
    .await;
}
