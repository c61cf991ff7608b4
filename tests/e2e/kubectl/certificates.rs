//! CertificateSigningRequests with stock kubectl, the way kube's docs give a new user a certificate: a key and
//! CSR made with openssl, `kubectl apply` of the CertificateSigningRequest (signer
//! `kubernetes.io/kube-apiserver-client`), `kubectl get csr` with kube's columns, `kubectl certificate
//! approve` and the issued certificate authenticating the user; `kubectl certificate deny` issues nothing.
//! Runs against `herd control` alone.

use std::time::Duration;

use super::*;

/// `openssl req` for a key and a CSR of CN=`user`, O=`group` in `dir`: (key path, CSR PEM).
fn key_and_csr(dir: &std::path::Path, user: &str, group: &str) -> (std::path::PathBuf, String) {
    let key = dir.join(format!("{user}.key"));
    let csr = dir.join(format!("{user}.csr"));
    let out = std::process::Command::new("openssl")
        .args([
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-subj", &format!("/CN={user}/O={group}")])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&csr)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (key, std::fs::read_to_string(&csr).expect("the CSR"))
}

fn csr_manifest(name: &str, csr_pem: &str) -> String {
    use base64::Engine as _;
    json!({
        "apiVersion": "certificates.k8s.io/v1",
        "kind": "CertificateSigningRequest",
        "metadata": {"name": name},
        "spec": {
            "request": base64::engine::general_purpose::STANDARD.encode(csr_pem),
            "signerName": "kubernetes.io/kube-apiserver-client",
            "expirationSeconds": 86400,
            "usages": ["client auth"],
        },
    })
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_approves_a_users_certificate_signing_request() {
    let herd = &Herd::up(HerdOptions::control()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (key, csr) = key_and_csr(dir.path(), "jane", "devs");
    kubectl_stdin(herd, &["apply", "-f", "-"], &csr_manifest("jane", &csr))
        .await
        .ok()
        .stdout_has("certificatesigningrequest.certificates.k8s.io/jane created");

    // kube's columns; the requestor is who created it, whatever the body said.
    let out = kubectl(herd, &["get", "csr"]).await.ok();
    let table = Table::parse(&out.stdout).expect("a table");
    assert_eq!(
        table.columns,
        [
            "NAME",
            "AGE",
            "SIGNERNAME",
            "REQUESTOR",
            "REQUESTEDDURATION",
            "CONDITION"
        ]
    );
    let row = table.row("jane");
    assert_eq!(
        (
            row.get("SIGNERNAME"),
            row.get("REQUESTOR"),
            row.get("REQUESTEDDURATION"),
            row.get("CONDITION")
        ),
        (
            "kubernetes.io/kube-apiserver-client",
            "kubernetes-admin",
            "24h",
            "Pending"
        )
    );

    kubectl(herd, &["certificate", "approve", "jane"])
        .await
        .ok()
        .stdout_has("certificatesigningrequest.certificates.k8s.io/jane approved");
    let certificate = wait_for("jane's certificate", Duration::from_secs(30), || async {
        let out = kubectl(
            herd,
            &["get", "csr", "jane", "-o", "jsonpath={.status.certificate}"],
        )
        .await
        .ok();
        if out.stdout.is_empty() {
            Err("not issued yet".to_string())
        } else {
            Ok(out.stdout)
        }
    })
    .await;
    let out = kubectl(herd, &["get", "csr", "jane"]).await.ok();
    assert_eq!(
        Table::parse(&out.stdout)
            .expect("a table")
            .row("jane")
            .get("CONDITION"),
        "Approved,Issued"
    );

    // The certificate is jane's identity: a kubeconfig of its own, kube's SelfSubjectReview, and RBAC (nothing
    // granted yet) refusing in kube's words.
    use base64::Engine as _;
    let cert_pem = base64::engine::general_purpose::STANDARD
        .decode(certificate.trim())
        .expect("base64");
    let cert = dir.path().join("jane.crt");
    std::fs::write(&cert, cert_pem).expect("write the certificate");
    let kubeconfig = dir.path().join("jane.kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: herd\n  cluster:\n    server: {}\n    \
             certificate-authority: {}\nusers:\n- name: jane\n  user:\n    client-certificate: {}\n    \
             client-key: {}\ncontexts:\n- name: jane\n  context:\n    cluster: herd\n    user: jane\n\
             current-context: jane\n",
            herd.api,
            herd.data_dir.join("pki/ca.crt").display(),
            cert.display(),
            key.display()
        ),
    )
    .expect("write the kubeconfig");
    let kc = kubeconfig.display().to_string();
    let whoami = kubectl(herd, &["--kubeconfig", &kc, "auth", "whoami"])
        .await
        .ok();
    whoami.stdout_has("jane").stdout_has("devs");
    kubectl(herd, &["--kubeconfig", &kc, "get", "pods"])
        .await
        .fails()
        .stderr_has(
            "Error from server (Forbidden): pods is forbidden: User \"jane\" cannot list resource \"pods\" \
             in API group \"\" in the namespace \"default\"",
        );

    // A denied request gets no certificate.
    let (_, csr) = key_and_csr(dir.path(), "mallory", "system:masters");
    kubectl_stdin(herd, &["apply", "-f", "-"], &csr_manifest("mallory", &csr))
        .await
        .ok();
    kubectl(herd, &["certificate", "deny", "mallory"])
        .await
        .ok()
        .stdout_has("certificatesigningrequest.certificates.k8s.io/mallory denied");
    let out = kubectl(herd, &["get", "csr", "mallory"]).await.ok();
    assert_eq!(
        Table::parse(&out.stdout)
            .expect("a table")
            .row("mallory")
            .get("CONDITION"),
        "Denied"
    );
    let (_, csr_object) = herd
        .get("/apis/certificates.k8s.io/v1/certificatesigningrequests/mallory")
        .await;
    assert_eq!(csr_object["status"]["certificate"], serde_json::Value::Null);
}
