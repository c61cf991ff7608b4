//! Guests find Services by name, without a DNS server, as CoreDNS and the kubelet's resolv.conf
//! would give it: ordinary guests — `netcheck` (Rust `std::net`: wasi-libc's `getaddrinfo` over
//! `wasi:sockets/ip-name-lookup`) and `http-hello`'s outbound `wasi:http` client — reach `web`,
//! `web.other` and `web.other.svc.cluster.local`; a headless Service resolves to each ready pod and
//! its StatefulSet-style `POD.SVC` names; an ExternalName is its external name; names outside the
//! cluster are the host's; unknown cluster names are NXDOMAIN. And the kubelet's Service variables,
//! honouring `enableServiceLinks`.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::*;

const OTHER_PODS: &str = "/api/v1/namespaces/other/pods";
const OTHER_SERVICES: &str = "/api/v1/namespaces/other/services";

/// Creates `body` at `path`, retrying while the namespace's ServiceAccount is not there yet.
async fn create_when_possible(herd: &Herd, path: &str, body: &Value) {
    wait_for(&format!("POST {path}"), Duration::from_secs(30), || async {
        match herd.send(reqwest::Method::POST, path, Some(body)).await {
            (200 | 201, _) => Ok(()),
            (status, answer) => Err(format!("{status}: {answer}")),
        }
    })
    .await;
}

/// An `http-hello` pod in namespace `namespace` labelled `app`, with `extra` merged into its spec.
fn http_pod(name: &str, app: &str, image: &str, extra: Value) -> Value {
    let mut pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": app}},
        "spec": {
            "terminationGracePeriodSeconds": TEST_GRACE_SECONDS,
            "containers": [{
                "name": "web", "image": image,
                "ports": [{"containerPort": 8080}],
                "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
            }],
        },
    });
    if let (Some(spec), Some(extra)) = (pod["spec"].as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            spec.insert(k.clone(), v.clone());
        }
    }
    pod
}

/// Waits for a pod to be Running and Ready; returns it.
async fn wait_ready(herd: &Herd, pods: &str, name: &str) -> Value {
    wait_for(&format!("pod {name} ready"), START_TIMEOUT, || async {
        let pod = herd.get_ok(&format!("{pods}/{name}")).await;
        let ready = condition(&pod, "Ready").is_some_and(|c| c["status"] == "True");
        if ready && !s(&pod, "/status/podIP").is_empty() {
            Ok(pod)
        } else {
            Err(pod_summary(&pod))
        }
    })
    .await
}

/// GET `http://<pod IP>:8080<path>` from the host: status and body.
async fn pod_get(pod: &Value, path: &str) -> Result<(u16, String), String> {
    let url = format!("http://{}:8080{path}", s(pod, "/status/podIP"));
    let resp = http_client()
        .get(&url)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    let status = resp.status().as_u16();
    Ok((status, resp.text().await.unwrap_or_default()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guests_find_services_by_name_through_the_search_list_of_their_namespace() {
    let registry = Registry::start().await;
    let http_image = registry.image("http-hello:v1");
    let netcheck_image = registry.image("netcheck:v1");
    push("http-hello", &http_image).await;
    push("netcheck", &netcheck_image).await;
    let herd = Herd::up(HerdOptions::default()).await;
    herd.wait_node_ready("e2e-node").await;
    herd.create(NAMESPACES, &json!({"metadata": {"name": "other"}}))
        .await;

    // web.other: a ClusterIP Service on port 80 of one pod.
    create_when_possible(
        &herd,
        OTHER_SERVICES,
        &json!({"metadata": {"name": "web"},
                "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}}),
    )
    .await;
    create_when_possible(
        &herd,
        OTHER_PODS,
        &http_pod("web-a", "web", &http_image, json!({})),
    )
    .await;
    // ext.other: an ExternalName to a host name.
    create_when_possible(
        &herd,
        OTHER_SERVICES,
        &json!({"metadata": {"name": "ext"},
                "spec": {"type": "ExternalName", "externalName": "localhost"}}),
    )
    .await;
    // pg.default: headless, two StatefulSet-style pods (hostname + subdomain) and one never ready.
    herd.create(
        SERVICES,
        &json!({"metadata": {"name": "pg"},
                "spec": {"clusterIP": "None", "selector": {"app": "pg"}, "ports": [{"port": 8080}]}}),
    )
    .await;
    for name in ["pg-0", "pg-1"] {
        let extra = json!({"hostname": name, "subdomain": "pg"});
        herd.create(PODS, &http_pod(name, "pg", &http_image, extra))
            .await;
    }
    let never_ready = json!({"hostname": "pg-2", "subdomain": "pg", "containers": [{
        "name": "web", "image": http_image,
        "readinessProbe": {"httpGet": {"path": "/status/503", "port": 8080}, "periodSeconds": 1},
    }]});
    herd.create(PODS, &http_pod("pg-2", "pg", &http_image, never_ready))
        .await;

    wait_ready(&herd, OTHER_PODS, "web-a").await;
    let mut pg_ips = BTreeSet::new();
    for name in ["pg-0", "pg-1"] {
        let pod = wait_ready(&herd, PODS, name).await;
        pg_ips.insert(s(&pod, "/status/podIP").to_string());
    }
    let web_svc = herd.get_ok(&format!("{OTHER_SERVICES}/web")).await;
    let web_ip = s(&web_svc, "/spec/clusterIP").to_string();

    // A wasi:http client in namespace other: `web` is its namespace's, then the longer names.
    create_when_possible(
        &herd,
        OTHER_PODS,
        &http_pod("client", "client", &http_image, json!({})),
    )
    .await;
    let client = wait_ready(&herd, OTHER_PODS, "client").await;
    for name in ["web", "web.other", "web.other.svc.cluster.local"] {
        let body = wait_for(
            &format!("the wasi:http client to reach http://{name}/"),
            Duration::from_secs(30),
            || async {
                match pod_get(&client, &format!("/fetch/{name}/via-name")).await? {
                    (200, body) => Ok(body),
                    (status, body) => Err(format!("{status}: {body}")),
                }
            },
        )
        .await;
        assert_eq!(
            body, "upstream 200: Hello from herd! pod=web-a path=/via-name\n",
            "{name}"
        );
    }
    // An unknown cluster name is NXDOMAIN; a name outside the cluster is the host's (localhost is the pod).
    let (status, body) = pod_get(&client, "/fetch/nope.other.svc.cluster.local/x")
        .await
        .expect("client answers");
    assert_eq!(status, 502, "{body}");
    assert!(body.contains("NXDOMAIN"), "{body}");

    // An ordinary std::net program in namespace other.
    let netcheck = json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "netcheck"},
        "spec": {"restartPolicy": "Never", "containers": [{
            "name": "netcheck", "image": netcheck_image,
            "args": ["resolve=web", "resolve=web.other", "resolve=web.other.svc.cluster.local",
                     "resolve=web.other.svc.cluster.local.", "get=web:80/a", "get=web.other:80/b",
                     "get=web.other.svc.cluster.local:80/c",
                     "resolve=pg.default", "resolve=pg-0.pg.default.svc.cluster.local", "resolve=pg-1.pg.default",
                     "resolve=pg-2.pg.default", "resolve=ext",
                     "resolve=nope.other.svc.cluster.local", "resolve=localhost"],
        }]},
    });
    create_when_possible(&herd, OTHER_PODS, &netcheck).await;
    wait_for("netcheck to finish", START_TIMEOUT, || async {
        let pod = herd.get_ok(&format!("{OTHER_PODS}/netcheck")).await;
        if phase(&pod) == "Succeeded" {
            Ok(())
        } else {
            Err(pod_summary(&pod))
        }
    })
    .await;
    let logs = kubectl(&herd, &["logs", "-n", "other", "netcheck"])
        .await
        .ok()
        .stdout;
    let line = |prefix: &str| {
        logs.lines()
            .find_map(|l| l.strip_prefix(prefix))
            .unwrap_or_else(|| panic!("no {prefix:?} line in:\n{logs}"))
            .to_string()
    };
    for name in [
        "web",
        "web.other",
        "web.other.svc.cluster.local",
        "web.other.svc.cluster.local.",
    ] {
        assert_eq!(line(&format!("resolve {name}: ")), web_ip, "{name}\n{logs}");
    }
    for (target, path) in [
        ("web:80/a", "/a"),
        ("web.other:80/b", "/b"),
        ("web.other.svc.cluster.local:80/c", "/c"),
    ] {
        let answer = line(&format!("get {target}: "));
        assert!(
            answer.starts_with("HTTP/1.")
                && answer.ends_with(&format!(" 200 OK | Hello from herd! pod=web-a path={path}")),
            "{target}: {answer}\n{logs}"
        );
    }
    // The headless Service: each ready pod, and each by its own name; the never-ready one has none.
    let pg: BTreeSet<String> = line("resolve pg.default: ")
        .split(' ')
        .map(str::to_owned)
        .collect();
    assert_eq!(pg, pg_ips, "{logs}");
    let pg0 = herd.get_ok(&format!("{PODS}/pg-0")).await;
    let pg1 = herd.get_ok(&format!("{PODS}/pg-1")).await;
    assert_eq!(
        line("resolve pg-0.pg.default.svc.cluster.local: "),
        s(&pg0, "/status/podIP")
    );
    assert_eq!(line("resolve pg-1.pg.default: "), s(&pg1, "/status/podIP"));
    assert!(
        line("resolve pg-2.pg.default: ").starts_with("error"),
        "{logs}"
    );
    // The ExternalName and other host names: the host's resolver (loopback for localhost).
    for name in ["ext", "localhost"] {
        let ips = line(&format!("resolve {name}: "));
        assert!(
            ips.split(' ').all(|ip| ip
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())),
            "{name}: {ips}\n{logs}"
        );
    }
    assert!(
        line("resolve nope.other.svc.cluster.local: ").starts_with("error"),
        "{logs}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_variables_are_the_kubelets_and_honour_enable_service_links() {
    let registry = Registry::start().await;
    let image = registry.image("http-hello:v1");
    push("http-hello", &image).await;
    let herd = Herd::up(HerdOptions::default()).await;
    herd.wait_node_ready("e2e-node").await;
    herd.create(
        SERVICES,
        &json!({"metadata": {"name": "web-api"},
                "spec": {"selector": {"app": "web"},
                         "ports": [{"name": "http", "port": 80, "targetPort": 8080},
                                   {"name": "metrics", "port": 9090, "protocol": "UDP"}]}}),
    )
    .await;
    // Headless Services and ExternalNames have no variables.
    herd.create(
        SERVICES,
        &json!({"metadata": {"name": "headless"},
                "spec": {"clusterIP": "None", "selector": {"app": "web"}, "ports": [{"port": 80}]}}),
    )
    .await;
    let svc = wait_for("web-api's cluster IP", Duration::from_secs(20), || async {
        let svc = herd.get_ok(&format!("{SERVICES}/web-api")).await;
        if s(&svc, "/spec/clusterIP").is_empty() {
            Err(svc.to_string())
        } else {
            Ok(svc)
        }
    })
    .await;
    let ip = s(&svc, "/spec/clusterIP").to_string();
    let kubernetes = herd.get_ok(&format!("{SERVICES}/kubernetes")).await;
    let api_ip = s(&kubernetes, "/spec/clusterIP").to_string();
    herd.create(PODS, &http_pod("linked", "web", &image, json!({})))
        .await;
    herd.create(
        PODS,
        &http_pod(
            "unlinked",
            "web",
            &image,
            json!({"enableServiceLinks": false}),
        ),
    )
    .await;
    let env = |pod: Value| async move {
        let (status, body) = pod_get(&pod, "/env").await.expect("the pod answers");
        assert_eq!(status, 200, "{body}");
        body.lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect::<std::collections::BTreeMap<String, String>>()
    };
    let linked = env(wait_ready(&herd, PODS, "linked").await).await;
    let expected = [
        ("WEB_API_SERVICE_HOST", ip.clone()),
        ("WEB_API_SERVICE_PORT", "80".into()),
        ("WEB_API_SERVICE_PORT_HTTP", "80".into()),
        ("WEB_API_SERVICE_PORT_METRICS", "9090".into()),
        ("WEB_API_PORT", format!("tcp://{ip}:80")),
        ("WEB_API_PORT_80_TCP", format!("tcp://{ip}:80")),
        ("WEB_API_PORT_80_TCP_PROTO", "tcp".into()),
        ("WEB_API_PORT_80_TCP_PORT", "80".into()),
        ("WEB_API_PORT_80_TCP_ADDR", ip.clone()),
        ("WEB_API_PORT_9090_UDP", format!("udp://{ip}:9090")),
        ("WEB_API_PORT_9090_UDP_PROTO", "udp".into()),
        ("KUBERNETES_SERVICE_HOST", api_ip.clone()),
        ("KUBERNETES_SERVICE_PORT", "443".into()),
        ("KUBERNETES_PORT_443_TCP", format!("tcp://{api_ip}:443")),
    ];
    for (name, value) in &expected {
        assert_eq!(linked.get(*name), Some(value), "{name} in {linked:?}");
    }
    assert!(
        !linked.keys().any(|k| k.starts_with("HEADLESS_")),
        "{linked:?}"
    );
    // enableServiceLinks: false keeps only the API server's own variables.
    let unlinked = env(wait_ready(&herd, PODS, "unlinked").await).await;
    assert_eq!(unlinked.get("KUBERNETES_SERVICE_HOST"), Some(&api_ip));
    assert!(
        !unlinked.keys().any(|k| k.starts_with("WEB_API_")),
        "{unlinked:?}"
    );
}
