//! The registry embedded in `herd up`: a full OCI registry over HTTPS (a certificate of the cluster CA)
//! that the admin (`herd push --kubeconfig`) or a ServiceAccount allowed to push can push to, and pods
//! pull from over TLS.

use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_to_embedded_registry_and_run_a_pod_from_it() {
    let herd = Herd::up(HerdOptions::with_registry()).await;
    let registry = herd.registry.clone().expect("embedded registry address");
    let image = format!("{registry}/demo/hello:v1");
    let digest = herd.push("hello", &image).await;

    // The distribution API serves it: by tag and by digest, with the same digest.
    for reference in ["v1", digest.as_str()] {
        let url = format!("https://{registry}/v2/demo/hello/manifests/{reference}");
        let resp = herd
            .http
            .get(&url)
            .header("accept", "application/vnd.oci.image.manifest.v1+json")
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {url}: {e}"));
        assert_eq!(resp.status().as_u16(), 200, "GET {url}");
        let served = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        assert_eq!(
            served.as_deref(),
            Some(digest.as_str()),
            "Docker-Content-Digest of {url}"
        );
        let manifest: serde_json::Value = resp.json().await.expect("manifest JSON");
        assert_eq!(manifest["schemaVersion"], 2, "{manifest}");
        assert!(
            manifest["layers"].as_array().is_some_and(|l| !l.is_empty()),
            "{manifest}"
        );
    }
    let tags = herd
        .get_ok_abs(&format!("https://{registry}/v2/demo/hello/tags/list"))
        .await;
    assert_eq!(tags["tags"], serde_json::json!(["v1"]), "{tags}");

    herd.create(
        PODS,
        &hello_pod("from-embedded", &image, &["embedded"], "Never"),
    )
    .await;
    let pod = herd.wait_phase("from-embedded", "Succeeded").await;
    assert!(
        s(container_status(&pod), "/imageID").contains("sha256:"),
        "{}",
        pod_summary(&pod)
    );
    assert!(
        herd.pod_log("from-embedded")
            .await
            .contains(r#"args: ["embedded"]"#)
    );

    // Unknown manifests are a 404 with an OCI error code.
    let url = format!("https://{registry}/v2/nothing/here/manifests/v1");
    let resp = herd
        .http
        .get(&url)
        .send()
        .await
        .expect("GET unknown manifest");
    assert_eq!(resp.status().as_u16(), 404, "GET {url}");
    let body: serde_json::Value = resp.json().await.unwrap_or_default();
    assert!(
        ["MANIFEST_UNKNOWN", "NAME_UNKNOWN"].contains(&s(&body, "/errors/0/code")),
        "{body}"
    );
}

/// Every file under `dir`.
fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_need_credentials_and_plain_http_gets_nothing() {
    let herd = Herd::up(HerdOptions::with_registry()).await;
    let registry = herd.registry.clone().expect("embedded registry address");
    let image = format!("{registry}/demo/anonymous:v1");

    // Without the kubeconfig, herd push neither trusts the cluster CA nor has credentials.
    let out = cli(&[
        "push".to_string(),
        sample("hello").display().to_string(),
        image.clone(),
    ])
    .await;
    assert!(!out.status.success(), "anonymous push succeeded: {out:?}");
    assert!(out.stderr.contains("cannot push"), "{}", out.stderr);

    // Trusting the CA but without credentials (the kubeconfig's CA given to curl-like clients): 401.
    let ca = herd_pki::Kubeconfig::read(&herd.kubeconfig)
        .expect("kubeconfig")
        .ca_pem;
    let tls = herd_pki::tls::client_config(&ca, None).expect("client TLS");
    let anonymous = reqwest::Client::builder()
        .no_proxy()
        .use_preconfigured_tls(tls)
        .build()
        .expect("client");
    let resp = anonymous
        .post(format!(
            "https://{registry}/v2/demo/anonymous/blobs/uploads/"
        ))
        .send()
        .await
        .expect("POST an upload");
    assert_eq!(resp.status().as_u16(), 401);
    let challenge = resp
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(
        challenge.starts_with(&format!("Bearer realm=\"https://{registry}/token\"")),
        "{challenge}"
    );
    let body: serde_json::Value = resp.json().await.unwrap_or_default();
    assert_eq!(s(&body, "/errors/0/code"), "UNAUTHORIZED", "{body}");
    let stored = files_under(&herd.data_dir.join("registry"));
    assert!(stored.is_empty(), "the refused pushes stored {stored:?}");

    // Plain HTTP gets no registry answer.
    let plain = reqwest::Client::builder().no_proxy().build().unwrap();
    let result = plain.get(format!("http://{registry}/v2/")).send().await;
    assert!(
        result.is_err(),
        "plain HTTP answered {:?}",
        result.map(|r| r.status())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_account_allowed_to_create_repositories_pushes_with_its_token() {
    let herd = Herd::up(HerdOptions::with_registry()).await;
    let registry = herd.registry.clone().expect("embedded registry address");
    let kubeconfig = herd.kubeconfig.display().to_string();
    kubectl(&herd, &["create", "serviceaccount", "pusher"])
        .await
        .ok();
    kubectl(&herd, &["create", "serviceaccount", "viewer"])
        .await
        .ok();
    // The virtual resource the registry asks the API server about (SelfSubjectAccessReview).
    kubectl_stdin(
        &herd,
        &["apply", "-f", "-"],
        r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: registry-pusher}
rules:
- apiGroups: ["herd.dev"]
  resources: ["repositories"]
  verbs: ["create"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: registry-pusher}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: registry-pusher}
subjects:
- {kind: ServiceAccount, name: pusher, namespace: default}
"#,
    )
    .await
    .ok();
    let token = |sa: &'static str| {
        let herd = &herd;
        async move {
            kubectl(herd, &["create", "token", sa])
                .await
                .ok()
                .stdout
                .trim()
                .to_string()
        }
    };
    let pusher = token("pusher").await;
    let viewer = token("viewer").await;
    let image = format!("{registry}/team/app:v1");

    // The token as the password (the kubeconfig only for trust in the CA: credentials come first).
    let digest = push_with(
        "hello",
        &image,
        &["-u", "pusher", "-p", &pusher, "--kubeconfig", &kubeconfig],
    )
    .await;

    // A valid token without the permission, and a wrong one, are refused.
    for (user, password) in [("viewer", viewer.as_str()), ("pusher", "not-a-token")] {
        let out = cli(&[
            "push".to_string(),
            sample("hello").display().to_string(),
            format!("{registry}/team/other:v1"),
            "-u".into(),
            user.into(),
            "-p".into(),
            password.into(),
            "--kubeconfig".into(),
            kubeconfig.clone(),
        ])
        .await;
        assert!(!out.status.success(), "{user} pushed: {out:?}");
        assert!(
            out.stderr.contains("401 Unauthorized"),
            "{user}: {}",
            out.stderr
        );
    }

    // A pod of the pushed image runs: the node pulls over TLS.
    herd.create(PODS, &hello_pod("pushed-by-sa", &image, &["sa"], "Never"))
        .await;
    let pod = herd.wait_phase("pushed-by-sa", "Succeeded").await;
    assert!(
        s(container_status(&pod), "/imageID").ends_with(&digest),
        "{}",
        pod_summary(&pod)
    );
}
