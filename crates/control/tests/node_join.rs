//! Joining nodes through a real API server: bootstrap tokens authenticate while their Secret allows it,
//! CertificateSigningRequests are created with the requester recorded, auto-approved only for requesters
//! RBAC allows (nodeclient, selfnodeclient; kubelet-serving for a node's own addresses), approved or denied
//! by an admin through `/approval`, and signed by the cluster CA; `cluster-info` is readable anonymously and
//! signed with each signing token.

mod common;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use common::Plane;
use reqwest::Method;
use serde_json::{Value, json};

const CSRS: &str = "/apis/certificates.k8s.io/v1/certificatesigningrequests";

impl Plane {
    /// Creates a bootstrap token Secret as `herd token create` does; `extra` overrides data fields.
    async fn token(&self, extra: &[(&str, &str)]) -> herd_pki::BootstrapToken {
        let token = herd_pki::BootstrapToken::generate();
        let mut data = json!({
            "token-id": token.id, "token-secret": token.secret,
            "usage-bootstrap-authentication": "true", "usage-bootstrap-signing": "true",
            "auth-extra-groups": "system:bootstrappers:herd:default-node-token",
        });
        for (k, v) in extra {
            data[*k] = json!(v);
        }
        let secret = json!({"apiVersion": "v1", "kind": "Secret", "type": "bootstrap.kubernetes.io/token",
            "metadata": {"name": token.secret_name(), "namespace": "kube-system"}, "stringData": data});
        let (code, body) = self
            .request(
                Method::POST,
                "/api/v1/namespaces/kube-system/secrets",
                &[],
                Some(("application/json", secret.to_string())),
            )
            .await;
        assert_eq!(code, 201, "{body}");
        token
    }

    /// A client trusting the CA and presenting no certificate (bearer tokens are added per request).
    fn bare(&self) -> reqwest::Client {
        self.client_as(None)
    }

    async fn whoami(&self, bearer: &str) -> (u16, Value) {
        let review = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"});
        let resp = self
            .bare()
            .post(format!(
                "{}/apis/authentication.k8s.io/v1/selfsubjectreviews",
                self.base
            ))
            .bearer_auth(bearer)
            .json(&review)
            .send()
            .await
            .unwrap();
        (
            resp.status().as_u16(),
            resp.json().await.unwrap_or(Value::Null),
        )
    }

    /// Waits (with a deadline) until the CSR `name` satisfies `done`.
    async fn csr_until(&self, name: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let (code, csr) = self
                .request(Method::GET, &format!("{CSRS}/{name}"), &[], None)
                .await;
            if code == 200 && done(&csr) {
                return csr;
            }
            assert!(tokio::time::Instant::now() < deadline, "CSR {name}: {csr}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn csr_body(name: &str, signer: &str, usages: &[&str], request_pem: &str) -> Value {
    json!({"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
        "metadata": {"name": name},
        "spec": {"request": STANDARD.encode(request_pem), "signerName": signer, "usages": usages,
            "username": "system:admin", "groups": ["system:masters"]}})
}

async fn post(
    client: &reqwest::Client,
    url: String,
    bearer: Option<&str>,
    body: &Value,
) -> (u16, Value) {
    let mut req = client.post(url).json(body);
    if let Some(b) = bearer {
        req = req.bearer_auth(b);
    }
    let resp = req.send().await.unwrap();
    (
        resp.status().as_u16(),
        resp.json().await.unwrap_or(Value::Null),
    )
}

fn has_condition(csr: &Value, type_: &str) -> bool {
    csr.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| cs.iter().any(|c| c["type"] == type_))
}

fn certificate(csr: &Value) -> Option<String> {
    let b64 = csr.pointer("/status/certificate")?.as_str()?;
    String::from_utf8(STANDARD.decode(b64).ok()?).ok()
}

#[tokio::test]
async fn a_bootstrap_token_authenticates_while_its_secret_allows_it() {
    let p = Plane::start().await;
    let token = p.token(&[]).await;
    let (code, review) = p.whoami(&token.to_string()).await;
    assert_eq!(code, 201, "{review}");
    assert_eq!(
        review["status"]["userInfo"]["username"],
        format!("system:bootstrap:{}", token.id)
    );
    assert_eq!(
        review["status"]["userInfo"]["groups"],
        json!([
            "system:bootstrappers",
            "system:bootstrappers:herd:default-node-token",
            "system:authenticated"
        ])
    );
    // The wrong secret, an unknown ID, a token not for authentication: 401.
    let wrong = format!("{}.{}", token.id, "0000000000000000");
    assert_eq!(p.whoami(&wrong).await.0, 401);
    assert_eq!(p.whoami("zzzzzz.0123456789abcdef").await.0, 401);
    let signing_only = p
        .token(&[("usage-bootstrap-authentication", "false")])
        .await;
    assert_eq!(p.whoami(&signing_only.to_string()).await.0, 401);
    // Expired: 401, and the token cleaner deletes the Secret.
    let past = (jiff::Timestamp::now() - jiff::SignedDuration::from_secs(5)).to_string();
    let expired = p.token(&[("expiration", &past)]).await;
    assert_eq!(p.whoami(&expired.to_string()).await.0, 401);
    let path = format!(
        "/api/v1/namespaces/kube-system/secrets/{}",
        expired.secret_name()
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while p.request(Method::GET, &path, &[], None).await.0 != 404 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the expired token was not cleaned up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Deleted: 401.
    let (code, _) = p
        .request(
            Method::DELETE,
            &format!(
                "/api/v1/namespaces/kube-system/secrets/{}",
                token.secret_name()
            ),
            &[],
            None,
        )
        .await;
    assert_eq!(code, 200);
    assert_eq!(p.whoami(&token.to_string()).await.0, 401);
    p.stop().await;
}

#[tokio::test]
async fn node_csrs_are_approved_only_for_allowed_requesters_and_signed_by_the_cluster_ca() {
    let p = Plane::start().await;
    let url = format!("{}{CSRS}", p.base);
    // A random user allowed to file CSRs (kube's system:node-bootstrapper) but not to have node client
    // certificates approved: its request stays pending.
    let grant = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": "jane-files-csrs"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:node-bootstrapper"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "jane"}]});
    assert_eq!(
        post(
            &p.http,
            format!(
                "{}/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
                p.base
            ),
            None,
            &grant
        )
        .await
        .0,
        201
    );
    let jane = p.client_as(Some(("jane", "devs")));
    let janes = herd_pki::CertificateRequest::node("node-j").unwrap();
    let client_usages = ["digital signature", "client auth"];
    let signer = "kubernetes.io/kube-apiserver-client-kubelet";
    let (code, created) = post(
        &jane,
        url.clone(),
        None,
        &csr_body("jane-node", signer, &client_usages, &janes.csr_pem),
    )
    .await;
    assert_eq!(code, 201, "{created}");
    assert_eq!(
        created["spec"]["username"], "jane",
        "the requester, not what the client sent"
    );
    assert_eq!(
        created["spec"]["groups"],
        json!(["devs", "system:authenticated"])
    );

    // A bootstrap token's node client CSR is approved (nodeclient) and signed.
    let token = p.token(&[]).await;
    let request = herd_pki::CertificateRequest::node("node-a").unwrap();
    let (code, created) = post(
        &p.bare(),
        url.clone(),
        Some(&token.to_string()),
        &csr_body("node-a-1", signer, &client_usages, &request.csr_pem),
    )
    .await;
    assert_eq!(code, 201, "{created}");
    assert_eq!(
        created["spec"]["username"],
        format!("system:bootstrap:{}", token.id)
    );
    let signed = p.csr_until("node-a-1", |c| certificate(c).is_some()).await;
    let approved = &signed["status"]["conditions"][0];
    assert_eq!(approved["type"], "Approved");
    assert_eq!(approved["reason"], "AutoApproved");
    assert_eq!(
        approved["message"],
        "Auto approving kubelet client certificate after SubjectAccessReview."
    );
    // Jane's, filed first, is still pending once the later one was signed.
    let (_, janes_now) = p
        .request(Method::GET, &format!("{CSRS}/jane-node"), &[], None)
        .await;
    assert!(
        janes_now.pointer("/status/conditions").is_none(),
        "{janes_now}"
    );

    // The certificate is a node identity the API and the Node authorizer accept.
    let node_cert = herd_pki::IssuedCert {
        cert_pem: certificate(&signed).unwrap(),
        key_pem: request.key_pem.clone(),
    };
    let tls = herd_pki::tls::client_config(p.ca_pem(), Some(&node_cert)).unwrap();
    let node_a = reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .build()
        .unwrap();
    let node = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-a"},
        "status": {"addresses": [{"type": "InternalIP", "address": "127.0.0.1"}, {"type": "Hostname", "address": "node-a"}]}});
    let (code, body) = post(&node_a, format!("{}/api/v1/nodes", p.base), None, &node).await;
    assert_eq!(code, 201, "{body}");
    let other = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-b"}});
    assert_eq!(
        post(&node_a, format!("{}/api/v1/nodes", p.base), None, &other)
            .await
            .0,
        403
    );

    // The node renews its own certificate (selfnodeclient).
    let renewal = herd_pki::CertificateRequest::node("node-a").unwrap();
    assert_eq!(
        post(
            &node_a,
            url.clone(),
            None,
            &csr_body("node-a-2", signer, &client_usages, &renewal.csr_pem)
        )
        .await
        .0,
        201
    );
    let renewed = p.csr_until("node-a-2", |c| certificate(c).is_some()).await;
    assert_eq!(
        renewed["status"]["conditions"][0]["message"],
        "Auto approving self kubelet client certificate after SubjectAccessReview."
    );

    // Its serving certificate for its own addresses is approved (herd's choice); a foreign address is not.
    let serving_signer = "kubernetes.io/kubelet-serving";
    let serving_usages = ["digital signature", "server auth"];
    let own = herd_pki::CertificateRequest::node_serving(
        "node-a",
        &["node-a".into()],
        &["127.0.0.1".parse().unwrap()],
    )
    .unwrap();
    assert_eq!(
        post(
            &node_a,
            url.clone(),
            None,
            &csr_body(
                "node-a-serving",
                serving_signer,
                &serving_usages,
                &own.csr_pem
            )
        )
        .await
        .0,
        201
    );
    let serving = p
        .csr_until("node-a-serving", |c| certificate(c).is_some())
        .await;
    assert!(certificate(&serving).is_some());
    let foreign =
        herd_pki::CertificateRequest::node_serving("node-a", &[], &["10.9.9.9".parse().unwrap()])
            .unwrap();
    assert_eq!(
        post(
            &node_a,
            url.clone(),
            None,
            &csr_body(
                "node-a-foreign",
                serving_signer,
                &serving_usages,
                &foreign.csr_pem
            )
        )
        .await
        .0,
        201
    );

    // The admin approves jane's through /approval: the signer signs it; denying another leaves it unsigned.
    let mut approval = janes_now.clone();
    approval["status"] = json!({"conditions": [{"type": "Approved", "status": "True", "reason": "KubectlApprove", "message": "ok"}]});
    let resp = p
        .http
        .put(format!("{url}/jane-node/approval"))
        .json(&approval)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let signed = p.csr_until("jane-node", |c| certificate(c).is_some()).await;
    assert!(has_condition(&signed, "Approved"));
    let (_, foreign_now) = p
        .request(Method::GET, &format!("{CSRS}/node-a-foreign"), &[], None)
        .await;
    assert!(
        foreign_now.pointer("/status/conditions").is_none(),
        "{foreign_now}"
    );
    let mut denial = foreign_now.clone();
    denial["status"] =
        json!({"conditions": [{"type": "Denied", "status": "True", "reason": "KubectlDeny"}]});
    let resp = p
        .http
        .put(format!("{url}/node-a-foreign/approval"))
        .json(&denial)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    // An approval cannot be added beside a denial, nor the denial dropped through /status.
    let mut both = resp.json::<Value>().await.unwrap();
    both["status"]["conditions"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "Approved", "status": "True"}));
    let resp = p
        .http
        .put(format!("{url}/node-a-foreign/approval"))
        .json(&both)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 422);
    let body: Value = resp.json().await.unwrap();
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("Approved and Denied conditions are mutually exclusive"),
        "{body}"
    );

    // Validation: a request that is no CSR is 422 with kube's cause.
    let (code, body) = post(
        &p.http,
        url.clone(),
        None,
        &csr_body("junk", signer, &client_usages, "hello"),
    )
    .await;
    assert_eq!(code, 422, "{body}");
    assert_eq!(body["details"]["causes"][0]["field"], "spec.request");
    p.stop().await;
}

#[tokio::test]
async fn cluster_info_is_read_anonymously_and_signed_with_each_signing_token() {
    let p = Plane::start().await;
    let token = p.token(&[]).await;
    let anonymous = p.bare();
    let key = format!("jws-kubeconfig-{}", token.id);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let info = loop {
        let resp = anonymous
            .get(format!(
                "{}/api/v1/namespaces/kube-public/configmaps/cluster-info",
                p.base
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        let info: Value = resp.json().await.unwrap();
        if info["data"].get(&key).is_some() {
            break info;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no signature: {info}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let kubeconfig = info["data"]["kubeconfig"].as_str().unwrap();
    assert!(
        kubeconfig.contains(&format!("server: {}", p.base)),
        "{kubeconfig}"
    );
    assert!(
        kubeconfig.contains(&STANDARD.encode(p.ca_pem())),
        "{kubeconfig}"
    );
    let jws = info["data"][&key].as_str().unwrap();
    assert!(herd_pki::bootstrap_token::verify_detached_jws(
        jws, kubeconfig, &token
    ));
    let other = herd_pki::BootstrapToken::generate();
    assert!(!herd_pki::bootstrap_token::verify_detached_jws(
        jws, kubeconfig, &other
    ));
    // Nothing else is open to anonymous requests.
    for path in [
        "/api/v1/namespaces/kube-public/configmaps",
        "/api/v1/namespaces/kube-public/configmaps/cluster-info/",
        "/api/v1/namespaces/kube-system/configmaps/cluster-info",
        "/api/v1/namespaces/kube-system/secrets",
    ] {
        let code = anonymous
            .get(format!("{}{path}", p.base))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(code.as_u16(), 401, "{path}");
    }
    let code = anonymous
        .delete(format!(
            "{}/api/v1/namespaces/kube-public/configmaps/cluster-info",
            p.base
        ))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(code.as_u16(), 401);
    // A deleted token's signature goes.
    let (code, _) = p
        .request(
            Method::DELETE,
            &format!(
                "/api/v1/namespaces/kube-system/secrets/{}",
                token.secret_name()
            ),
            &[],
            None,
        )
        .await;
    assert_eq!(code, 200);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (_, info) = p
            .request(
                Method::GET,
                "/api/v1/namespaces/kube-public/configmaps/cluster-info",
                &[],
                None,
            )
            .await;
        if info["data"].get(&key).is_none() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "signature kept: {info}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    p.stop().await;
}
