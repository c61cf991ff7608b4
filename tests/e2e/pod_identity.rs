//! Workload identity (issue 12): every pod gets its ServiceAccount's token, the cluster CA and its namespace
//! projected read-only at /var/run/secrets/kubernetes.io/serviceaccount, and a guest calls the API server with
//! them over TLS (the `kubernetes` Service); RBAC then decides, with kube's wording. A ServiceAccount bound to
//! `view` lists but cannot create, through stock kubectl and the Python client with its token.

use std::time::Duration;

use serde_json::json;

use crate::harness::*;

const SA_DIR: &str = "var/run/secrets/kubernetes.io/serviceaccount";

/// GET `url`: status and body.
async fn get(herd: &Herd, url: &str) -> (u16, String) {
    let resp = herd
        .http
        .get(url)
        .timeout(Duration::from_secs(20))
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pods_projected_token_reaches_the_api_from_the_guest_over_tls() {
    let registry = Registry::start().await;
    let image = registry.image("http-hello:v1");
    push("http-hello", &image).await;
    let herd = Herd::up(HerdOptions::default()).await;

    // The pods' ServiceAccount (default/default) may read pods, as `kubectl create role` makes it.
    kubectl(
        &herd,
        &[
            "create",
            "role",
            "pod-reader",
            "--verb=get,list",
            "--resource=pods",
        ],
    )
    .await
    .ok();
    kubectl(
        &herd,
        &[
            "create",
            "rolebinding",
            "pod-reader",
            "--role=pod-reader",
            "--serviceaccount=default:default",
        ],
    )
    .await
    .ok();

    herd.create(PODS, &http_hello_pod("caller", "caller", &image))
        .await;
    let mut no_token = http_hello_pod("no-token", "no-token", &image);
    no_token["spec"]["automountServiceAccountToken"] = json!(false);
    herd.create(PODS, &no_token).await;

    // kube's ServiceAccount admission: the kube-api-access volume, mounted read-only.
    let pod = herd.wait_phase("caller", "Running").await;
    assert_eq!(s(&pod, "/spec/serviceAccountName"), "default");
    let volume = pod["spec"]["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|v| s(v, "/name").starts_with("kube-api-access-"))
        .unwrap_or_else(|| panic!("no kube-api-access volume: {}", pod["spec"]));
    let mount = &pod["spec"]["containers"][0]["volumeMounts"][0];
    assert_eq!(
        (
            s(mount, "/name"),
            s(mount, "/mountPath"),
            &mount["readOnly"]
        ),
        (
            s(volume, "/name"),
            "/var/run/secrets/kubernetes.io/serviceaccount",
            &json!(true)
        )
    );
    let ip = s(&pod, "/status/podIP").to_string();
    let pod_url = |path: &str| format!("http://{ip}:8080{path}");

    // The files as the guest reads them: the namespace, the cluster CA, a token.
    herd.wait_http(&pod_url("/direct"), "pod=caller", START_TIMEOUT)
        .await;
    let (status, namespace) = get(&herd, &pod_url(&format!("/file/{SA_DIR}/namespace"))).await;
    assert_eq!((status, namespace.as_str()), (200, "default"));
    let (status, ca) = get(&herd, &pod_url(&format!("/file/{SA_DIR}/ca.crt"))).await;
    let cluster_ca = std::fs::read_to_string(herd.data_dir.join("pki/ca.crt")).expect("ca.crt");
    assert_eq!((status, ca.trim()), (200, cluster_ca.trim()));
    let (status, token) = get(&herd, &pod_url(&format!("/file/{SA_DIR}/token"))).await;
    assert_eq!(status, 200, "{token}");
    assert_eq!(token.split('.').count(), 3, "a JWT: {token}");

    // The guest's outbound https to $KUBERNETES_SERVICE_HOST:443 trusts the cluster CA and authenticates with
    // the token: its ServiceAccount may list pods ...
    let body = herd
        .wait_http(
            &pod_url("/api/api/v1/namespaces/default/pods"),
            "\"PodList\"",
            Duration::from_secs(30),
        )
        .await;
    let list: serde_json::Value = serde_json::from_str(&body).expect("a PodList");
    let names: Vec<&str> = list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| s(p, "/metadata/name"))
        .collect();
    assert!(names.contains(&"caller"), "{names:?}");

    // ... but not secrets: kube's 403 for the ServiceAccount's user name.
    let (status, body) = get(&herd, &pod_url("/api/api/v1/namespaces/default/secrets")).await;
    let refusal: serde_json::Value = serde_json::from_str(&body).expect("a Status");
    assert_eq!(
        (status, s(&refusal, "/reason"), s(&refusal, "/message")),
        (
            403,
            "Forbidden",
            "secrets is forbidden: User \"system:serviceaccount:default:default\" cannot list \
             resource \"secrets\" in API group \"\" in the namespace \"default\""
        )
    );

    // automountServiceAccountToken: false — no volume, no files, no way in.
    let pod = herd.wait_phase("no-token", "Running").await;
    assert!(
        !pod["spec"]["volumes"]
            .to_string()
            .contains("kube-api-access"),
        "{}",
        pod["spec"]
    );
    let ip = s(&pod, "/status/podIP").to_string();
    herd.wait_http(
        &format!("http://{ip}:8080/direct"),
        "pod=no-token",
        START_TIMEOUT,
    )
    .await;
    let (status, _) = get(&herd, &format!("http://{ip}:8080/file/{SA_DIR}/token")).await;
    assert_eq!(status, 404);
    let (status, body) = get(
        &herd,
        &format!("http://{ip}:8080/api/api/v1/namespaces/default/pods"),
    )
    .await;
    assert_eq!(status, 502, "{body}");
}

/// A kubeconfig for the API server of `herd` with only a bearer token.
fn token_kubeconfig(herd: &Herd, token: &str) -> std::path::PathBuf {
    let ca = herd.data_dir.join("pki/ca.crt").display().to_string();
    let path = herd.data_dir.with_file_name("viewer.kubeconfig");
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: herd\n  cluster:\n    server: {}\n    \
         certificate-authority: {ca}\nusers:\n- name: viewer\n  user:\n    token: {token}\n\
         contexts:\n- name: viewer\n  context:\n    cluster: herd\n    user: viewer\n    namespace: default\n\
         current-context: viewer\n",
        herd.api
    );
    std::fs::write(&path, text).expect("write kubeconfig");
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_account_bound_to_view_lists_but_cannot_create() {
    let herd = Herd::up(HerdOptions::control()).await;
    kubectl(&herd, &["create", "serviceaccount", "viewer"])
        .await
        .ok();
    kubectl(
        &herd,
        &[
            "create",
            "rolebinding",
            "viewer-view",
            "--clusterrole=view",
            "--serviceaccount=default:viewer",
        ],
    )
    .await
    .ok();
    // kubectl create token: the TokenRequest API.
    let token = kubectl(&herd, &["create", "token", "viewer", "--duration=1h"])
        .await
        .ok()
        .stdout
        .trim()
        .to_string();
    assert_eq!(token.split('.').count(), 3, "a JWT: {token}");
    let kubeconfig = token_kubeconfig(&herd, &token);
    let kc = kubeconfig.display().to_string();
    let as_viewer = |args: &[&str]| {
        let mut all = vec!["--kubeconfig", kc.as_str()];
        all.extend_from_slice(args);
        all.into_iter().map(str::to_owned).collect::<Vec<_>>()
    };
    let run = |args: Vec<String>| {
        let herd = &herd;
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            kubectl(herd, &args).await
        }
    };

    // Who am I: kube's SelfSubjectReview.
    let whoami = run(as_viewer(&[
        "auth",
        "whoami",
        "-o",
        "jsonpath={.status.userInfo.username}",
    ]))
    .await
    .ok();
    assert_eq!(whoami.stdout, "system:serviceaccount:default:viewer");

    // view: list yes, create no — kubectl auth can-i answers yes/no (exit 0/1) from SelfSubjectAccessReview.
    let can_list = run(as_viewer(&["auth", "can-i", "list", "pods"])).await;
    assert_eq!(
        (can_list.status.success(), can_list.stdout.trim()),
        (true, "yes")
    );
    let can_create = run(as_viewer(&["auth", "can-i", "create", "configmaps"])).await;
    assert_eq!(
        (can_create.status.success(), can_create.stdout.trim()),
        (false, "no")
    );
    run(as_viewer(&["get", "pods"])).await.ok();
    let refused = run(as_viewer(&[
        "create",
        "configmap",
        "nope",
        "--from-literal=a=b",
    ]))
    .await;
    assert!(!refused.status.success(), "{}", refused.stdout);
    assert_eq!(
        refused.stderr.trim(),
        "error: failed to create configmap: configmaps is forbidden: User \
         \"system:serviceaccount:default:viewer\" cannot create resource \"configmaps\" in API group \"\" \
         in the namespace \"default\""
    );
    // Nothing was stored.
    let (status, _) = herd.get("/api/v1/namespaces/default/configmaps/nope").await;
    assert_eq!(status, 404);

    // The official Python client with the same token.
    crate::python_client::run_script_as(
        &herd,
        &kubeconfig,
        "service_account.py",
        &["--namespace", "default"],
    )
    .await;
}
