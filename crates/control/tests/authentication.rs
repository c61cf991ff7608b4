//! The API server speaks only HTTPS, with a serving certificate from the cluster CA, and knows who asks: a
//! client certificate from that CA is its user; a request without credentials is 401 except on kube's
//! public paths; a certificate from another CA never completes the handshake.

mod common;
use common::Plane;

#[tokio::test]
async fn only_clients_with_a_certificate_from_the_cluster_ca_get_in() {
    let p = Plane::start().await;
    assert!(p.base.starts_with("https://127.0.0.1:"), "{}", p.base);

    // The cluster CA's certificate verifies the server; without a client certificate, kube's 401.
    let anonymous = p.client_as(None);
    let resp = anonymous
        .get(format!("{}/api/v1/namespaces/default/pods", p.base))
        .send()
        .await
        .expect("a TLS connection with the CA trusted");
    assert_eq!(resp.status().as_u16(), 401);
    let status: serde_json::Value = resp.json().await.expect("a Status");
    assert_eq!(
        status,
        serde_json::json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Failure", "message": "Unauthorized", "reason": "Unauthorized", "code": 401})
    );
    // What kube serves anonymously stays open.
    for open in ["/healthz", "/livez", "/readyz", "/version"] {
        let code = anonymous
            .get(format!("{}{open}", p.base))
            .send()
            .await
            .expect("answer")
            .status();
        assert_eq!(code.as_u16(), 200, "{open}");
    }

    // Any user with a certificate from the cluster CA is authenticated.
    let (code, _) = p
        .request(reqwest::Method::GET, "/api/v1/namespaces", &[], None)
        .await;
    assert_eq!(code, 200);

    // A client that trusts no cluster CA refuses the server; a server refuses a certificate from
    // another CA.
    let stranger = reqwest::Client::new();
    let err = stranger
        .get(format!("{}/healthz", p.base))
        .send()
        .await
        .expect_err("the server's certificate is not in the web PKI");
    assert!(err.is_connect(), "{err:?}");
    let other_dir = tempfile::tempdir().unwrap();
    let other_ca = herd_pki::ClusterCa::load_or_create(other_dir.path()).unwrap();
    let forged = other_ca
        .issue_client(
            "kubernetes-admin",
            &["system:masters"],
            herd_pki::CLIENT_VALIDITY,
        )
        .unwrap();
    let tls = herd_pki::tls::client_config(p.ca_pem(), Some(&forged)).unwrap();
    let forger = reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .build()
        .unwrap();
    let refused = forger
        .get(format!("{}/api/v1/namespaces", p.base))
        .send()
        .await;
    assert!(
        refused.is_err(),
        "a certificate from another CA got an answer: {refused:?}"
    );
    p.stop().await;
}

#[tokio::test]
async fn the_ca_and_its_key_persist_in_the_data_dir_private_to_its_owner() {
    use std::os::unix::fs::PermissionsExt as _;
    let p = Plane::start().await;
    let pki = p.data_dir().join("pki");
    let mode = |name: &str| {
        std::fs::metadata(pki.join(name))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode("ca.key"), 0o600);
    assert_eq!(mode("."), 0o700);
    let first = std::fs::read_to_string(pki.join("ca.crt")).unwrap();
    assert_eq!(first, p.ca_pem());
    // A restart on the same data dir keeps the CA, so every issued certificate stays valid.
    let p = p.restart().await;
    assert_eq!(p.ca_pem(), first);
    let (code, _) = p
        .request(reqwest::Method::GET, "/api/v1/namespaces", &[], None)
        .await;
    assert_eq!(code, 200);
    p.stop().await;
}
