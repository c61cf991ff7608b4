//! Secure by default (issue 12): the API speaks only TLS with a certificate from the cluster CA `herd up`
//! made, the admin kubeconfig is private to its owner, and a request without credentials gets kube's 401.

use std::os::unix::fs::PermissionsExt as _;

use crate::harness::*;

/// `curl ARGS` (as `user` through runuser when given): exit success, stdout, stderr.
async fn curl(user: Option<&str>, args: &[&str]) -> (bool, String, String) {
    let mut cmd = match user {
        Some(user) => {
            let mut cmd = tokio::process::Command::new("runuser");
            cmd.args(["-u", user, "--", "curl"]);
            cmd
        }
        None => tokio::process::Command::new("curl"),
    };
    let out = cmd
        .args(["-sS", "--max-time", "10"])
        .args(args)
        .output()
        .await
        .expect("run curl");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_speaks_only_tls_and_answers_401_without_credentials() {
    let herd = Herd::up(HerdOptions::default()).await;
    let ca = herd.data_dir.join("pki/ca.crt");
    assert!(herd.api.starts_with("https://"), "{}", herd.api);

    // curl trusting the cluster CA, without a client certificate: kube's 401 Status.
    let (ok, body, err) = curl(
        None,
        &[
            "--cacert",
            &ca.display().to_string(),
            &herd.url("/api/v1/namespaces/default/pods"),
        ],
    )
    .await;
    assert!(ok, "curl: {err}");
    let status: serde_json::Value = serde_json::from_str(&body).expect("a Status");
    assert_eq!(
        (&status["code"], &status["reason"], &status["message"]),
        (
            &serde_json::json!(401),
            &serde_json::json!("Unauthorized"),
            &serde_json::json!("Unauthorized")
        ),
        "{body}"
    );
    // What kube serves anonymously stays open, verified against the cluster CA.
    let (ok, body, err) = curl(
        None,
        &["--cacert", &ca.display().to_string(), &herd.url("/version")],
    )
    .await;
    assert!(ok, "curl /version: {err}");
    assert!(body.contains("gitVersion"), "{body}");
    // Plain HTTP gets no API at all.
    let plain = herd
        .url("/api/v1/namespaces")
        .replace("https://", "http://");
    let (ok, body, _) = curl(None, &["-f", &plain]).await;
    assert!(!ok, "plain HTTP answered: {body}");

    // The admin kubeconfig carries the CA and a client certificate, readable by its owner only, as is
    // the CA's key.
    assert_eq!(mode(&herd.kubeconfig), 0o600);
    assert_eq!(mode(&herd.data_dir.join("pki/ca.key")), 0o600);
    let text = std::fs::read_to_string(&herd.kubeconfig).expect("kubeconfig");
    for field in [
        "certificate-authority-data",
        "client-certificate-data",
        "client-key-data",
    ] {
        assert!(text.contains(field), "no {field} in\n{text}");
    }
    // Stock kubectl uses it as is.
    kubectl(&herd, &["get", "namespaces", "-o", "name"])
        .await
        .ok()
        .stdout_has("namespace/kube-system");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_unix_user_without_the_kubeconfig_can_do_nothing() {
    if !is_root() {
        eprintln!("skipped: needs root to act as a second user (runuser)");
        return;
    }
    let herd = Herd::up(HerdOptions::default()).await;
    // The data dir's parent may be open to others; the files that grant access are not.
    for secret in [herd.kubeconfig.clone(), herd.data_dir.join("pki/ca.key")] {
        assert_eq!(mode(&secret), 0o600, "{}", secret.display());
        let (ok, _, _) = curl(Some("nobody"), &[&format!("file://{}", secret.display())]).await;
        assert!(!ok, "nobody read {}", secret.display());
    }
    // Without credentials, nobody reads nothing and creates nothing.
    let pod = serde_json::json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "intruder"},
        "spec": {"containers": [{"name": "c", "image": "example/intruder:v1"}]}});
    let (ok, body, err) = curl(
        Some("nobody"),
        &[
            "-k",
            "-X",
            "POST",
            "-H",
            "content-type: application/json",
            "-d",
            &pod.to_string(),
            &herd.url(PODS),
        ],
    )
    .await;
    assert!(ok, "curl: {err}");
    assert!(body.contains("\"code\":401"), "{body}");
    let (ok, body, err) = curl(Some("nobody"), &["-k", &herd.url("/api/v1/secrets")]).await;
    assert!(ok, "curl: {err}");
    assert!(body.contains("\"code\":401"), "{body}");
    let (code, _) = herd.get(&format!("{PODS}/intruder")).await;
    assert_eq!(code, 404, "the unauthenticated create was stored");
}
