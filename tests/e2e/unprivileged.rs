//! herd needs no root: the hello flow, the README's demo and a Service on a low port, with herd running as
//! `nobody`.

use std::time::Duration;

use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hello_flow_as_nobody() {
    if !is_root() {
        eprintln!("skipped: running as an unprivileged user already, and runuser needs root");
        return;
    }
    let registry = Registry::start().await;
    let image = registry.image("hello:v1");
    push("hello", &image).await;

    let mut herd = Herd::up(HerdOptions {
        unprivileged: true,
        registry: true,
        ..Default::default()
    })
    .await;
    let pid = herd.process().pid;
    let uid = real_uid(pid).expect("herd's /proc status");
    assert_ne!(uid, 0, "herd (pid {pid}) runs as root");
    assert_eq!(uid, 65534, "herd (pid {pid}) is not nobody");

    herd.create(
        PODS,
        &hello_pod("hello", &image, &["unprivileged"], "Never"),
    )
    .await;
    let pod = herd.wait_phase("hello", "Succeeded").await;
    assert_eq!(container_status(&pod)["state"]["terminated"]["exitCode"], 0);
    let log = herd.pod_log("hello").await;
    assert!(
        log.contains("Hello from herd!") && log.contains(r#"args: ["unprivileged"]"#),
        "log:\n{log}"
    );

    // The embedded registry works unprivileged too.
    let embedded = herd.registry.clone().expect("embedded registry");
    let local = format!("{embedded}/hello:v1");
    herd.push("hello", &local).await;
    herd.create(PODS, &hello_pod("local", &local, &[], "Never"))
        .await;
    herd.wait_phase("local", "Succeeded").await;

    let took = herd.stop();
    assert!(
        took < std::time::Duration::from_secs(10),
        "herd as nobody took {took:?} to stop"
    );
}

/// Whether the test can run herd as `nobody` and the kernel keeps low ports for root, as it does on most
/// distributions (`net.ipv4.ip_unprivileged_port_start` 1024).
fn low_ports_need_root() -> bool {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
        .ok()
        .and_then(|s| s.trim().parse::<u16>().ok())
        .is_some_and(|start| start > 80)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_on_port_80_as_nobody_warns_and_pods_still_reach_it() {
    if !is_root() || !low_ports_need_root() {
        eprintln!(
            "skipped: needs root (for runuser) and net.ipv4.ip_unprivileged_port_start above 80"
        );
        return;
    }
    let mut herd = Herd::up(HerdOptions {
        unprivileged: true,
        registry: true,
        ..Default::default()
    })
    .await;
    let image = format!("{}/http-hello:v1", herd.registry.clone().expect("registry"));
    herd.push("http-hello", &image).await;
    herd.create(SERVICES, &service("web", "web", 80, 8080))
        .await;
    herd.create(PODS, &http_hello_pod("web-a", "web", &image))
        .await;
    let pod = herd.wait_phase("web-a", "Running").await;
    let pod_ip = s(&pod, "/status/podIP").to_string();
    let svc = herd.get_ok(&format!("{SERVICES}/web")).await;
    let cluster_ip = s(&svc, "/spec/clusterIP").to_string();

    // The Service says why host clients cannot reach port 80, and what to do.
    let condition = wait_for(
        "Service web's Listening=False condition",
        Duration::from_secs(30),
        || async {
            let svc = herd.get_ok(&format!("{SERVICES}/web")).await;
            match condition(&svc, "Listening") {
                Some(c) if c["status"] == "False" => Ok(c.clone()),
                _ => Err(svc["status"].to_string()),
            }
        },
    )
    .await;
    assert_eq!(condition["reason"], "PrivilegedPort", "{condition}");
    let message = s(&condition, "/message");
    for wanted in [
        format!("cannot listen on {cluster_ip}:80 (Permission denied"),
        format!("it is served on {cluster_ip}:8080 instead"),
        "`sysctl -w net.ipv4.ip_unprivileged_port_start=80`".to_string(),
        "a port of 1024 or more".to_string(),
    ] {
        assert!(message.contains(&wanted), "{wanted:?} not in {message:?}");
    }
    assert!(
        !s(&condition, "/lastTransitionTime").is_empty(),
        "{condition}"
    );

    // A Warning event, as `kubectl describe service` shows.
    let event = wait_for(
        "a FailedToListen event",
        Duration::from_secs(30),
        || async {
            let events = herd.get_ok("/api/v1/namespaces/default/events").await;
            let items = events["items"].as_array().cloned().unwrap_or_default();
            items
                .iter()
                .find(|e| {
                    e["involvedObject"]["kind"] == "Service"
                        && e["involvedObject"]["name"] == "web"
                        && e["reason"] == "FailedToListen"
                })
                .cloned()
                .ok_or_else(|| format!("{} events", items.len()))
        },
    )
    .await;
    assert_eq!(event["type"], "Warning", "{event}");
    assert_eq!(event["source"]["component"], "kube-proxy", "{event}");
    assert_eq!(s(&event, "/message"), message);

    // A pod reaches the Service on its own port (the node redirects the connection to the fallback), and a
    // host client on the fallback port named in the message.
    herd.wait_http(
        &format!("http://{pod_ip}:8080/fetch/{cluster_ip}:80/through-the-service"),
        "upstream 200: Hello from herd! pod=web-a path=/through-the-service",
        START_TIMEOUT,
    )
    .await;
    herd.wait_http(
        &format!("http://{cluster_ip}:8080/from-the-host"),
        "Hello from herd! pod=web-a path=/from-the-host",
        START_TIMEOUT,
    )
    .await;
    herd.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_demo_works_as_nobody() {
    if !is_root() {
        eprintln!("skipped: running as an unprivileged user already, and runuser needs root");
        return;
    }
    // What scripts/demo.sh does, with herd as nobody: push the samples to the embedded registry, apply
    // their manifests as they are (but for the registry's address), and curl the Service from the host.
    let mut herd = Herd::up(HerdOptions {
        unprivileged: true,
        registry: true,
        ..Default::default()
    })
    .await;
    let registry = herd.registry.clone().expect("registry");
    let dir = tempfile::tempdir().expect("temp dir");
    for app in ["hello", "http-hello"] {
        herd.push(app, &format!("{registry}/{app}:v1")).await;
        let manifest = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(format!("sample-apps/{app}/manifest.yaml"));
        let text = std::fs::read_to_string(&manifest).expect("sample manifest");
        let file = dir.path().join(format!("{app}.yaml"));
        std::fs::write(
            &file,
            text.replace("127.0.0.1:5000/", &format!("{registry}/")),
        )
        .expect("write manifest");
        herd.cli(&["apply", "-f", &file.display().to_string()])
            .await
            .ok();
    }
    herd.wait_phase("hello", "Succeeded").await;
    let svc = herd.get_ok(&format!("{SERVICES}/http-hello")).await;
    let url = format!(
        "http://{}:{}/",
        s(&svc, "/spec/clusterIP"),
        svc["spec"]["ports"][0]["port"]
    );
    // Both replicas answer through the Service.
    let seen = std::sync::Mutex::new(std::collections::BTreeSet::new());
    let (seen, url) = (&seen, &url);
    wait_for(
        &format!("both http-hello replicas answering {url}"),
        START_TIMEOUT,
        move || async move {
            if let Ok(resp) = http_client()
                .get(url)
                .timeout(Duration::from_secs(5))
                .send()
                .await
                && let Ok(body) = resp.text().await
                && let Some(pod) = body.split_whitespace().find(|w| w.starts_with("pod="))
            {
                seen.lock().expect("seen").insert(pod.to_string());
            }
            let seen = seen.lock().expect("seen");
            if seen.len() == 2 {
                Ok(())
            } else {
                Err(format!("answers from {seen:?}"))
            }
        },
    )
    .await;
    let svc = herd.get_ok(&format!("{SERVICES}/http-hello")).await;
    assert!(
        condition(&svc, "Listening").is_none_or(|c| c["status"] == "True"),
        "{svc}"
    );
    herd.stop();
}
