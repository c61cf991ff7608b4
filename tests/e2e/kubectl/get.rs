//! `kubectl get`: the Table columns kube-apiserver gives for pods, deployments, services, nodes and more;
//! `-o wide|json|yaml|jsonpath|name`; `-A`; `-l` and `--field-selector`; chunked lists; `get all`; `-w`.

use std::time::Duration;

use serde_json::{Value, json};

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_get_prints_kube_apiserver_columns_and_formats() {
    let c = Cluster::up(&[("hello", "v1"), ("http-hello", "v1")]).await;
    let herd = &c.herd;
    let hello = c.image("hello", "v1");
    let http_hello = c.image("http-hello", "v1");

    herd.create(DEPLOYMENTS, &http_hello_deployment("web", &http_hello, 2))
        .await;
    herd.create(SERVICES, &service("web", "web", 80, 8080))
        .await;
    herd.create(PODS, &sleeper_pod("sleeper", &hello)).await;
    herd.create(NAMESPACES, &json!({"metadata": {"name": "kc-other"}}))
        .await;
    herd.create(
        &ns_path("kc-other", "pods"),
        &sleeper_pod("other-sleeper", &hello),
    )
    .await;
    herd.create(
        &ns_path("default", "configmaps"),
        &json!({"metadata": {"name": "cfg"}, "data": {"a": "1", "b": "2"}}),
    )
    .await;
    herd.create(
        &ns_path("default", "secrets"),
        &json!({"metadata": {"name": "sec"}, "type": "Opaque", "data": {"password": "c2VjcmV0"}}),
    )
    .await;
    let web_pods = wait_ready_pods(herd, "default", "app=web", 2).await;
    let sleeper = wait_ready_pods(herd, "default", "app=sleeper", 1)
        .await
        .remove(0);
    wait_ready_pods(herd, "kc-other", "app=other-sleeper", 1).await;
    let deployment = wait_object(
        herd,
        &format!("{DEPLOYMENTS}/web"),
        "deployment web 2 available",
        START_TIMEOUT,
        |d| d["status"]["availableReplicas"] == 2,
    )
    .await;
    assert_eq!(deployment["status"]["readyReplicas"], 2, "{deployment}");

    // Pods: NAME READY STATUS RESTARTS AGE.
    let pods = kubectl(herd, &["get", "pods"]).await.ok().table();
    assert_eq!(pods.columns, ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]);
    let row = pods.row("sleeper");
    assert_eq!(row.get("READY"), "1/1", "{pods:?}");
    assert_eq!(row.get("STATUS"), "Running", "{pods:?}");
    assert_eq!(row.get("RESTARTS"), "0", "{pods:?}");
    assert!(is_age(row.get("AGE")), "AGE {:?}", row.get("AGE"));
    assert_eq!(
        pods.rows.len(),
        3,
        "default has sleeper and 2 web pods: {pods:?}"
    );

    // -o wide adds IP NODE NOMINATED NODE READINESS GATES.
    let wide = kubectl(herd, &["get", "pods", "-o", "wide"])
        .await
        .ok()
        .table();
    assert_eq!(
        wide.columns,
        [
            "NAME",
            "READY",
            "STATUS",
            "RESTARTS",
            "AGE",
            "IP",
            "NODE",
            "NOMINATED NODE",
            "READINESS GATES"
        ]
    );
    let row = wide.row("sleeper");
    assert_eq!(row.get("IP"), s(&sleeper, "/status/podIP"));
    assert_eq!(row.get("NODE"), "e2e-node");
    assert_eq!(row.get("NOMINATED NODE"), "<none>");
    assert_eq!(row.get("READINESS GATES"), "<none>");

    // Deployments: NAME READY UP-TO-DATE AVAILABLE AGE; wide adds CONTAINERS IMAGES SELECTOR.
    let deploys = kubectl(herd, &["get", "deployments"]).await.ok().table();
    assert_eq!(
        deploys.columns,
        ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    );
    let row = deploys.row("web");
    assert_eq!(
        (
            row.get("READY"),
            row.get("UP-TO-DATE"),
            row.get("AVAILABLE")
        ),
        ("2/2", "2", "2")
    );
    let deploys = kubectl(herd, &["get", "deploy", "-o", "wide"])
        .await
        .ok()
        .table();
    let row = deploys.row("web");
    assert_eq!(row.get("CONTAINERS"), "http-hello");
    assert_eq!(row.get("IMAGES"), http_hello);
    assert_eq!(row.get("SELECTOR"), "app=web");

    // ReplicaSets: NAME DESIRED CURRENT READY AGE.
    let rs = kubectl(herd, &["get", "rs"]).await.ok().table();
    assert_eq!(rs.columns, ["NAME", "DESIRED", "CURRENT", "READY", "AGE"]);
    assert_eq!(rs.rows.len(), 1, "{rs:?}");
    assert!(rs.rows[0][0].starts_with("web-"), "{rs:?}");
    assert_eq!(rs.rows[0][1..4], ["2", "2", "2"], "{rs:?}");

    // Services: NAME TYPE CLUSTER-IP EXTERNAL-IP PORT(S) AGE.
    let svc = herd.get_ok(&format!("{SERVICES}/web")).await;
    let services = kubectl(herd, &["get", "services"]).await.ok().table();
    assert_eq!(
        services.columns,
        [
            "NAME",
            "TYPE",
            "CLUSTER-IP",
            "EXTERNAL-IP",
            "PORT(S)",
            "AGE"
        ]
    );
    let row = services.row("web");
    assert_eq!(row.get("TYPE"), "ClusterIP");
    assert_eq!(row.get("CLUSTER-IP"), s(&svc, "/spec/clusterIP"));
    assert!(herd.cidrs.service.contains(row.get("CLUSTER-IP")));
    assert_eq!(row.get("EXTERNAL-IP"), "<none>");
    assert_eq!(row.get("PORT(S)"), "80/TCP");

    // Nodes: NAME STATUS ROLES AGE VERSION.
    let node = herd.get_ok(&format!("{NODES}/e2e-node")).await;
    let nodes = kubectl(herd, &["get", "nodes"]).await.ok().table();
    assert_eq!(nodes.columns, ["NAME", "STATUS", "ROLES", "AGE", "VERSION"]);
    let row = nodes.row("e2e-node");
    assert_eq!(row.get("STATUS"), "Ready");
    assert_eq!(row.get("ROLES"), "<none>");
    assert_eq!(
        row.get("VERSION"),
        s(&node, "/status/nodeInfo/kubeletVersion")
    );
    assert!(row.get("VERSION").starts_with('v'), "{nodes:?}");

    // Namespaces, ConfigMaps, Secrets.
    let namespaces = kubectl(herd, &["get", "namespaces"]).await.ok().table();
    assert_eq!(namespaces.columns, ["NAME", "STATUS", "AGE"]);
    assert_eq!(namespaces.row("default").get("STATUS"), "Active");
    assert_eq!(namespaces.row("kc-other").get("STATUS"), "Active");
    let configmaps = kubectl(herd, &["get", "configmaps"]).await.ok().table();
    assert_eq!(configmaps.columns, ["NAME", "DATA", "AGE"]);
    assert_eq!(configmaps.row("cfg").get("DATA"), "2");
    let secrets = kubectl(herd, &["get", "secrets"]).await.ok().table();
    assert_eq!(secrets.columns, ["NAME", "TYPE", "DATA", "AGE"]);
    assert_eq!(secrets.row("sec").get("TYPE"), "Opaque");
    assert_eq!(secrets.row("sec").get("DATA"), "1");

    // -A: a NAMESPACE column first, objects of every namespace.
    let all = kubectl(herd, &["get", "pods", "-A"]).await.ok().table();
    assert_eq!(
        all.columns,
        ["NAMESPACE", "NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    );
    let pairs: Vec<(String, String)> = all
        .rows
        .iter()
        .map(|r| (r[0].clone(), r[1].clone()))
        .collect();
    assert!(
        pairs.contains(&("default".into(), "sleeper".into())),
        "{pairs:?}"
    );
    assert!(
        pairs.contains(&("kc-other".into(), "other-sleeper".into())),
        "{pairs:?}"
    );
    let other = kubectl(herd, &["get", "pods", "-n", "kc-other", "-o", "name"])
        .await
        .ok();
    assert_eq!(other.lines(), ["pod/other-sleeper"]);

    // -l: equality, set-based, inequality and existence selectors.
    let mut web_names: Vec<String> = web_pods
        .iter()
        .map(|p| format!("pod/{}", s(p, "/metadata/name")))
        .collect();
    web_names.sort();
    let out = kubectl(herd, &["get", "pods", "-l", "app=web", "-o", "name"])
        .await
        .ok();
    let mut got = out.lines();
    got.sort();
    assert_eq!(got, web_names);
    let out = kubectl(
        herd,
        &[
            "get",
            "pods",
            "-l",
            "app in (sleeper,nothing)",
            "-o",
            "name",
        ],
    )
    .await
    .ok();
    assert_eq!(out.lines(), ["pod/sleeper"]);
    let out = kubectl(herd, &["get", "pods", "-l", "app!=web", "-o", "name"])
        .await
        .ok();
    assert_eq!(out.lines(), ["pod/sleeper"]);
    let out = kubectl(herd, &["get", "pods", "-l", "app", "-o", "name"])
        .await
        .ok();
    assert_eq!(out.lines().len(), 3, "{}", out.stdout);
    let out = kubectl(herd, &["get", "pods", "-l", "app=nothing"])
        .await
        .ok();
    assert_eq!(out.stdout, "");
    assert!(
        out.stderr
            .contains("No resources found in default namespace."),
        "{}",
        out.stderr
    );

    // --field-selector: metadata.name, status.phase, spec.nodeName.
    let out = kubectl(
        herd,
        &[
            "get",
            "pods",
            "--field-selector",
            "metadata.name=sleeper",
            "-o",
            "name",
        ],
    )
    .await
    .ok();
    assert_eq!(out.lines(), ["pod/sleeper"]);
    let out = kubectl(
        herd,
        &[
            "get",
            "pods",
            "--field-selector",
            "status.phase=Running",
            "-o",
            "name",
        ],
    )
    .await
    .ok();
    assert_eq!(out.lines().len(), 3, "{}", out.stdout);
    let out = kubectl(
        herd,
        &[
            "get",
            "pods",
            "-A",
            "--field-selector",
            "spec.nodeName=e2e-node",
            "-o",
            "name",
        ],
    )
    .await
    .ok();
    assert_eq!(out.lines().len(), 4, "{}", out.stdout);

    // Chunked lists (limit/continue) give the same rows.
    let chunked = kubectl(herd, &["get", "pods", "-A", "--chunk-size=1", "-o", "name"])
        .await
        .ok();
    let whole = kubectl(herd, &["get", "pods", "-A", "-o", "name"])
        .await
        .ok();
    assert_eq!(chunked.lines(), whole.lines());
    assert_eq!(whole.lines().len(), 4, "{}", whole.stdout);

    // -o json / yaml / jsonpath.
    let json = kubectl(herd, &["get", "pod", "sleeper", "-o", "json"])
        .await
        .ok()
        .json();
    assert_eq!(json["kind"], "Pod");
    assert_eq!(json["apiVersion"], "v1");
    assert_eq!(json["metadata"]["uid"], sleeper["metadata"]["uid"]);
    assert_eq!(json["status"]["podIP"], sleeper["status"]["podIP"]);
    let list = kubectl(herd, &["get", "pods", "-o", "json"])
        .await
        .ok()
        .json();
    assert_eq!(list["kind"], "List");
    assert_eq!(list["items"].as_array().map(Vec::len), Some(3), "{list}");
    let yaml = kubectl(herd, &["get", "pod", "sleeper", "-o", "yaml"])
        .await
        .ok();
    assert!(
        yaml.stdout
            .starts_with("apiVersion: v1\nkind: Pod\nmetadata:\n"),
        "{}",
        yaml.stdout
    );
    yaml.stdout_has("\n  name: sleeper\n")
        .stdout_has(&format!("podIP: {}", s(&sleeper, "/status/podIP")));
    let ip = kubectl(
        herd,
        &["get", "pod", "sleeper", "-o", "jsonpath={.status.podIP}"],
    )
    .await
    .ok();
    assert_eq!(ip.stdout, s(&sleeper, "/status/podIP"));
    let names = kubectl(
        herd,
        &[
            "get",
            "pods",
            "-l",
            "app=web",
            "-o",
            "jsonpath={.items[*].metadata.name}",
        ],
    )
    .await
    .ok();
    let mut names: Vec<String> = names
        .stdout
        .split_whitespace()
        .map(|n| format!("pod/{n}"))
        .collect();
    names.sort();
    assert_eq!(names, web_names);

    // `get all` goes through the "all" category.
    let everything = kubectl(herd, &["get", "all"]).await.ok();
    everything
        .stdout_has("pod/sleeper")
        .stdout_has("service/web")
        .stdout_has("deployment.apps/web")
        .stdout_has("replicaset.apps/web-");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_get_watch_prints_added_modified_deleted() {
    let c = Cluster::up(&[("hello", "v1")]).await;
    let herd = &c.herd;
    let hello = c.image("hello", "v1");

    let mut watch = kubectl_spawn(
        herd,
        &[
            "get",
            "pods",
            "-l",
            "app=watched",
            "-w",
            "--output-watch-events",
        ],
    );
    // Give kubectl time to list and open its watch before the pod appears.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(watch.running(), "kubectl get -w exited: {}", watch.stderr());

    herd.create(PODS, &sleeper_pod("watched", &hello)).await;
    let added = watch
        .wait_line("an ADDED row for watched", Duration::from_secs(20), |l| {
            l.starts_with("ADDED") && l.contains("watched")
        })
        .await;
    assert!(
        watch.seen.iter().any(|l| l.starts_with("EVENT")
            && l.contains("NAME")
            && l.contains("READY")
            && l.contains("STATUS")),
        "no EVENT/NAME/READY/STATUS header before {added:?}: {:?}",
        watch.seen
    );
    watch
        .wait_line("a MODIFIED row with Running 1/1", START_TIMEOUT, |l| {
            l.starts_with("MODIFIED")
                && l.contains("watched")
                && l.contains("1/1")
                && l.contains("Running")
        })
        .await;

    herd.delete(&format!("{PODS}/watched")).await;
    watch
        .wait_line("a DELETED row for watched", Duration::from_secs(30), |l| {
            l.starts_with("DELETED") && l.contains("watched")
        })
        .await;
    assert!(watch.running(), "kubectl get -w exited: {}", watch.stderr());

    // A plain `get -o json -w` streams whole objects too.
    let mut json_watch = kubectl_spawn(
        herd,
        &[
            "get",
            "pods",
            "-w",
            "-o",
            "jsonpath={.metadata.name} {.status.phase}{\"\\n\"}",
        ],
    );
    herd.create(PODS, &sleeper_pod("watched2", &hello)).await;
    json_watch
        .wait_line("watched2 Running", START_TIMEOUT, |l| {
            l.trim() == "watched2 Running"
        })
        .await;
    let _: Value = herd.delete(&format!("{PODS}/watched2")).await;
}
