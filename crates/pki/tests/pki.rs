//! The PKI end to end inside the crate: files on a temporary data dir, real TLS handshakes on loopback
//! sockets (tokio-rustls), and openssl as the independent judge of kubeadm's CA hash and of CSRs.

use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use herd_pki::tls::{self, UserInfo};
use herd_pki::{
    ADMIN_USER, CLIENT_VALIDITY, CaCertHash, ClusterCa, IssuedCert, Kubeconfig, MASTERS_GROUP,
    NODES_GROUP, PkiError, SERVING_VALIDITY, node_user, serving_sans,
};
use rustls_pki_types::ServerName;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).expect("stat").permissions().mode() & 0o777
}

fn serving(ca: &ClusterCa) -> IssuedCert {
    let sans = serving_sans(
        &[IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1))],
        Some(IpAddr::V4(Ipv4Addr::new(10, 96, 0, 1))),
        &["control.example".to_owned()],
    );
    ca.issue_serving("kube-apiserver", &sans, SERVING_VALIDITY)
        .expect("serving cert")
}

/// One TLS connection on a loopback socket: the server (presenting `server_cert`, trusting `server_ca`)
/// answers one byte; the client (trusting `client_ca`, presenting `client`) names the server `name`.
/// Returns the identity the server read from the client, or the first side's error.
async fn handshake(
    server_ca: &ClusterCa,
    server_cert: &IssuedCert,
    client_ca: &ClusterCa,
    client: Option<&IssuedCert>,
    name: &str,
) -> Result<Option<UserInfo>, String> {
    let server = tls::server_config(server_ca.cert_pem(), server_cert).expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let served = tokio::spawn(async move {
        let (socket, _) = listener.accept().await.map_err(|e| e.to_string())?;
        let mut stream = acceptor
            .accept(socket)
            .await
            .map_err(|e| format!("server: {e}"))?;
        let identity = tls::connection_identity(stream.get_ref().1);
        let mut byte = [0u8; 1];
        stream
            .read_exact(&mut byte)
            .await
            .map_err(|e| format!("server read: {e}"))?;
        stream
            .write_all(&byte)
            .await
            .map_err(|e| format!("server write: {e}"))?;
        stream.shutdown().await.map_err(|e| e.to_string())?;
        Ok::<_, String>(identity)
    });
    let config = tls::client_config(client_ca.cert_pem(), client).expect("client config");
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let socket = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let name = ServerName::try_from(name.to_owned()).expect("server name");
    let client_side = async {
        let mut stream = connector
            .connect(name, socket)
            .await
            .map_err(|e| format!("client: {e}"))?;
        stream
            .write_all(b"x")
            .await
            .map_err(|e| format!("client write: {e}"))?;
        let mut byte = [0u8; 1];
        stream
            .read_exact(&mut byte)
            .await
            .map_err(|e| format!("client read: {e}"))?;
        Ok::<_, String>(())
    }
    .await;
    let server_side = served.await.expect("server task");
    // With TLS 1.3 the client finishes its handshake before the server judges its certificate: the
    // server's verdict comes first.
    let identity = server_side?;
    client_side?;
    Ok(identity)
}

#[test]
fn the_ca_is_created_once_and_loaded_afterwards() {
    let dir = tempfile::tempdir().expect("temp dir");
    let created = ClusterCa::load_or_create(dir.path()).expect("create");
    let pki = dir.path().join("pki");
    assert_eq!(mode(&pki.join("ca.key")), 0o600);
    assert_eq!(mode(&pki), 0o700);
    let key = std::fs::read_to_string(pki.join("ca.key")).expect("key");
    assert!(key.contains("PRIVATE KEY"), "{key}");

    let loaded = ClusterCa::load_or_create(dir.path()).expect("load");
    assert_eq!(loaded.cert_pem(), created.cert_pem());
    assert_eq!(loaded.ca_cert_hash(), created.ca_cert_hash());
    assert_eq!(
        std::fs::read_to_string(pki.join("ca.key")).expect("key"),
        key
    );
    assert_eq!(loaded.not_after(), created.not_after());

    // The certificate: CN herd-ca, a CA, about ten years.
    let pem = std::fs::read_to_string(pki.join("ca.crt")).expect("cert");
    let text = openssl(
        &["x509", "-noout", "-subject", "-ext", "basicConstraints"],
        &pem,
    );
    assert!(
        text.contains("CN=herd-ca") || text.contains("CN = herd-ca"),
        "{text}"
    );
    assert!(text.contains("CA:TRUE"), "{text}");
    let days = (created.not_after() - time::OffsetDateTime::now_utc()).whole_days();
    assert!((3649..=3650).contains(&days), "{days} days");
}

#[tokio::test]
async fn a_reloaded_ca_signs_certificates_the_first_one_trusts() {
    let dir = tempfile::tempdir().expect("temp dir");
    let created = ClusterCa::load_or_create(dir.path()).expect("create");
    let loaded = ClusterCa::load_or_create(dir.path()).expect("load");
    let admin = loaded
        .issue_client(ADMIN_USER, &[MASTERS_GROUP], CLIENT_VALIDITY)
        .expect("admin");
    let identity = handshake(
        &created,
        &serving(&loaded),
        &created,
        Some(&admin),
        "localhost",
    )
    .await
    .expect("handshake");
    assert!(identity.is_some());
}

#[test]
fn a_certificate_without_its_key_is_refused_and_a_key_without_certificate_replaced() {
    let dir = tempfile::tempdir().expect("temp dir");
    let first = ClusterCa::load_or_create(dir.path()).expect("create");
    let pki = dir.path().join("pki");

    // A creation that stopped after the key: a new CA.
    std::fs::remove_file(pki.join("ca.crt")).expect("rm");
    let second = ClusterCa::load_or_create(dir.path()).expect("recreate");
    assert_ne!(second.ca_cert_hash(), first.ca_cert_hash());

    // A damaged key, then another CA's key beside the certificate.
    std::fs::write(pki.join("ca.key"), "not a key").expect("write");
    assert!(matches!(
        ClusterCa::load_or_create(dir.path()),
        Err(PkiError::Invalid { .. })
    ));
    let other = tempfile::tempdir().expect("temp dir");
    ClusterCa::load_or_create(other.path()).expect("other");
    std::fs::copy(other.path().join("pki/ca.key"), pki.join("ca.key")).expect("copy");
    assert!(matches!(
        ClusterCa::load_or_create(dir.path()),
        Err(PkiError::CaKeyMismatch { path }) if path == pki.join("ca.key")
    ));

    // No key at all: refused, never a new CA over a certificate that may have been handed out.
    std::fs::remove_file(pki.join("ca.key")).expect("rm");
    let err = ClusterCa::load_or_create(dir.path()).expect_err("no key");
    assert!(matches!(err, PkiError::MissingCaKey { .. }), "{err}");
    assert!(pki.join("ca.crt").exists());
}

fn openssl(args: &[&str], stdin: &str) -> String {
    use std::io::Write as _;
    let mut child = Command::new("openssl")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("openssl");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("openssl");
    assert!(out.status.success(), "openssl {args:?} failed");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_ca_hash_is_kubeadms() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = ClusterCa::load_or_create(dir.path()).expect("create");
    // kubeadm's documented recipe:
    // openssl x509 -pubkey -in ca.crt | openssl rsa -pubin -outform der | openssl dgst -sha256 -hex
    let cert = dir.path().join("pki/ca.crt");
    let out = Command::new("sh")
        .arg("-c")
        .arg(
            "openssl x509 -pubkey -noout -in \"$1\" | openssl pkey -pubin -outform der | sha256sum",
        )
        .arg("sh")
        .arg(&cert)
        .output()
        .expect("sh");
    assert!(out.status.success());
    let hex = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .expect("digest")
        .to_owned();
    assert_eq!(ca.ca_cert_hash().to_string(), format!("sha256:{hex}"));

    let pinned: CaCertHash = format!("sha256:{hex}").parse().expect("parse");
    pinned.verify_pem(ca.cert_pem()).expect("the same CA");
    let other = ClusterCa::generate().expect("other CA");
    let err = pinned.verify_pem(other.cert_pem()).expect_err("another CA");
    assert!(matches!(err, PkiError::CaHashMismatch { .. }), "{err}");
}

#[tokio::test]
async fn the_server_reads_the_admin_from_its_client_certificate() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = ClusterCa::load_or_create(dir.path()).expect("create");
    let admin = ca
        .issue_client(ADMIN_USER, &[MASTERS_GROUP], CLIENT_VALIDITY)
        .expect("admin");
    let identity = handshake(&ca, &serving(&ca), &ca, Some(&admin), "localhost")
        .await
        .expect("handshake");
    assert_eq!(
        identity,
        Some(UserInfo {
            name: "kubernetes-admin".into(),
            groups: vec!["system:masters".into()],
        })
    );
}

#[tokio::test]
async fn a_client_without_a_certificate_connects_with_no_identity() {
    let ca = ClusterCa::generate().expect("ca");
    let identity = handshake(&ca, &serving(&ca), &ca, None, "localhost")
        .await
        .expect("handshake");
    assert_eq!(identity, None);
}

#[tokio::test]
async fn a_client_certificate_from_another_ca_is_refused() {
    let ca = ClusterCa::generate().expect("ca");
    let other = ClusterCa::generate().expect("other ca");
    let intruder = other
        .issue_client(ADMIN_USER, &[MASTERS_GROUP], CLIENT_VALIDITY)
        .expect("intruder");
    let err = handshake(&ca, &serving(&ca), &ca, Some(&intruder), "localhost")
        .await
        .expect_err("refused");
    assert!(err.starts_with("server:"), "{err}");
}

#[tokio::test]
async fn a_server_from_another_ca_is_refused_by_the_client() {
    let ca = ClusterCa::generate().expect("ca");
    let other = ClusterCa::generate().expect("other ca");
    let err = handshake(&other, &serving(&other), &ca, None, "localhost")
        .await
        .expect_err("refused");
    // Both CAs are named herd-ca: the client finds the name among its roots and refuses the signature
    // (rustls alerts decrypt_error), where an unknown name would be UnknownIssuer.
    assert!(
        err.contains("DecryptError")
            || err.contains("BadSignature")
            || err.contains("UnknownIssuer"),
        "{err}"
    );
}

#[tokio::test]
async fn the_serving_certificate_names_the_api_server_as_pods_and_hosts_reach_it() {
    let ca = ClusterCa::generate().expect("ca");
    let cert = serving(&ca);
    for name in [
        "localhost",
        "127.0.0.1",
        "10.96.0.1",
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
        "control.example",
    ] {
        handshake(&ca, &cert, &ca, None, name)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    let err = handshake(&ca, &cert, &ca, None, "elsewhere.example")
        .await
        .expect_err("a name not in the certificate");
    assert!(
        err.starts_with("client:") || err.starts_with("server:"),
        "{err}"
    );
}

#[test]
fn serving_names_are_listed_once_and_unspecified_addresses_left_out() {
    let sans = serving_sans(
        &[
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            IpAddr::V4(Ipv4Addr::new(192, 168, 1, 5)),
        ],
        Some(IpAddr::V4(Ipv4Addr::new(10, 96, 0, 1))),
        &["localhost".to_owned(), "host.example".to_owned()],
    );
    let shown: Vec<String> = sans
        .iter()
        .map(|san| match san {
            rcgen::SanType::DnsName(name) => name.as_str().to_owned(),
            rcgen::SanType::IpAddress(ip) => ip.to_string(),
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(
        shown,
        [
            "localhost",
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
            "host.example",
            "127.0.0.1",
            "10.96.0.1",
            "192.168.1.5",
        ]
    );
}

#[tokio::test]
async fn a_csr_is_signed_with_its_subject_and_works_as_a_node_identity() {
    let ca = ClusterCa::generate().expect("ca");
    // The node's request, as openssl writes it (independent of rcgen), asking for more than it gets.
    let dir = tempfile::tempdir().expect("temp dir");
    let key_path = dir.path().join("node.key");
    let out = Command::new("openssl")
        .args([
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ])
        .args(["-subj", "/O=system:nodes/CN=system:node:node-a"])
        .args(["-addext", "subjectAltName=DNS:evil.example"])
        .arg("-keyout")
        .arg(&key_path)
        .output()
        .expect("openssl req");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let csr = String::from_utf8(out.stdout).expect("pem");

    let cert_pem = ca.sign_csr(&csr, CLIENT_VALIDITY).expect("signed");
    let text = openssl(&["x509", "-noout", "-text"], &cert_pem);
    assert!(!text.contains("evil.example"), "{text}");
    assert!(text.contains("TLS Web Client Authentication"), "{text}");
    assert!(!text.contains("CA:TRUE"), "{text}");

    let node = IssuedCert {
        cert_pem,
        key_pem: std::fs::read_to_string(&key_path).expect("key"),
    };
    let identity = handshake(&ca, &serving(&ca), &ca, Some(&node), "localhost")
        .await
        .expect("handshake");
    assert_eq!(
        identity,
        Some(UserInfo {
            name: node_user("node-a"),
            groups: vec![NODES_GROUP.to_owned()],
        })
    );
}

#[test]
fn a_csr_with_a_bad_signature_or_no_csr_at_all_is_refused() {
    let ca = ClusterCa::generate().expect("ca");
    let key = rcgen::KeyPair::generate().expect("key");
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "system:node:node-a");
    let csr = params.serialize_request(&key).expect("csr");
    let mut der = csr.der().to_vec();
    let at = der
        .windows(6)
        .position(|w| w == b"node-a")
        .expect("the CN in the request");
    der[at + 5] = b'b';
    let tampered = pem_of("CERTIFICATE REQUEST", &der);
    let err = ca
        .sign_csr(&tampered, CLIENT_VALIDITY)
        .expect_err("tampered");
    assert!(matches!(err, PkiError::CsrSignature), "{err}");

    for junk in [
        "",
        "not pem",
        "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
    ] {
        let err = ca.sign_csr(junk, CLIENT_VALIDITY).expect_err("junk");
        assert!(matches!(err, PkiError::Invalid { .. }), "{junk}: {err}");
    }
}

fn pem_of(label: &str, der: &[u8]) -> String {
    use base64::Engine as _;
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = body
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).expect("ascii"))
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}

#[test]
fn client_certificates_need_a_user_and_carry_at_most_one_group() {
    let ca = ClusterCa::generate().expect("ca");
    assert!(ca.issue_client("", &[], CLIENT_VALIDITY).is_err());
    assert!(ca.issue_client("u", &["a", "b"], CLIENT_VALIDITY).is_err());
    let plain = ca.issue_client("jane", &[], CLIENT_VALIDITY).expect("jane");
    let identity = tls::peer_identity(&plain.cert_der().expect("der")).expect("identity");
    assert_eq!((identity.name.as_str(), identity.groups.len()), ("jane", 0));
}

#[test]
fn no_certificate_outlives_the_ca() {
    let ca = ClusterCa::generate().expect("ca");
    let long = ca
        .issue_client(
            "jane",
            &[],
            std::time::Duration::from_secs(100 * 365 * 24 * 3600),
        )
        .expect("issued");
    assert_eq!(long.not_after().expect("not after"), ca.not_after());
}

#[test]
fn the_admin_kubeconfig_is_private_and_carries_the_credentials() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = ClusterCa::load_or_create(dir.path()).expect("ca");
    let admin = ca
        .issue_client(ADMIN_USER, &[MASTERS_GROUP], CLIENT_VALIDITY)
        .expect("admin");
    let path = dir.path().join("kubeconfig");
    let config = Kubeconfig {
        server: "https://127.0.0.1:6443".into(),
        cluster_name: "herd".into(),
        user_name: "herd-admin".into(),
        context_name: "herd".into(),
        namespace: Some("default".into()),
        ca_pem: ca.cert_pem().to_owned(),
        client: admin.clone(),
    };
    config.write(&path).expect("write");
    assert_eq!(mode(&path), 0o600);

    // kube-rs reads it as kubectl does.
    let text = std::fs::read_to_string(&path).expect("read");
    let parsed = kube::config::Kubeconfig::from_yaml(&text).expect("a kubeconfig");
    assert_eq!(parsed.current_context.as_deref(), Some("herd"));
    let cluster = parsed.clusters[0].cluster.as_ref().expect("cluster");
    assert_eq!(cluster.server.as_deref(), Some("https://127.0.0.1:6443"));
    let decode = |data: &str| {
        use base64::Engine as _;
        String::from_utf8(
            base64::engine::general_purpose::STANDARD
                .decode(data)
                .expect("base64"),
        )
        .expect("utf-8")
    };
    assert_eq!(
        decode(
            cluster
                .certificate_authority_data
                .as_deref()
                .expect("ca data")
        ),
        ca.cert_pem()
    );
    let user = parsed.auth_infos[0].auth_info.as_ref().expect("user");
    assert_eq!(parsed.auth_infos[0].name, "herd-admin");
    assert_eq!(
        decode(user.client_certificate_data.as_deref().expect("cert data")),
        admin.cert_pem
    );
    let context = parsed.contexts[0].context.as_ref().expect("context");
    assert_eq!(
        (context.cluster.as_str(), context.user.as_deref()),
        ("herd", Some("herd-admin"))
    );
    assert_eq!(context.namespace.as_deref(), Some("default"));

    // herd reads it back whole; a kubeconfig without embedded credentials is refused, not half-read.
    let back = Kubeconfig::read(&path).expect("read back");
    assert_eq!(
        back.to_yaml().expect("yaml"),
        config.to_yaml().expect("yaml")
    );
    let bare = "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://h:1\n\
        users:\n- name: u\n  user: {}\ncontexts:\n- name: x\n  context:\n    cluster: c\n    user: u\n\
        current-context: x\n";
    let err = Kubeconfig::parse(bare)
        .expect_err("no credentials")
        .to_string();
    assert!(err.contains("certificate-authority-data"), "{err}");
    let err = Kubeconfig::parse("current-context: y\n")
        .expect_err("no context")
        .to_string();
    assert!(err.contains("no context \"y\""), "{err}");
}

#[tokio::test]
async fn a_node_joins_with_a_request_the_api_recognises_and_renews_before_expiry() {
    use herd_pki::{CertificateRequest, RequestedSubject};
    let ca = ClusterCa::generate().expect("ca");
    let request = CertificateRequest::node("node-b").expect("request");
    let asked = RequestedSubject::of(&request.csr_pem).expect("subject");
    assert!(asked.is_node_client(), "{asked:?}");
    assert_eq!(asked.node_name(), Some("node-b"));

    let validity = std::time::Duration::from_secs(3600);
    let node = IssuedCert {
        cert_pem: ca.sign_csr(&request.csr_pem, validity).expect("signed"),
        key_pem: request.key_pem,
    };
    let identity = handshake(&ca, &serving(&ca), &ca, Some(&node), "localhost")
        .await
        .expect("handshake");
    assert_eq!(
        identity,
        Some(UserInfo {
            name: "system:node:node-b".into(),
            groups: vec!["system:nodes".into()],
        })
    );

    // client-go's deadline: 70 to 90 % of the lifetime, counted from the issue (notBefore is backdated 5
    // minutes) to notAfter.
    let not_after = node.not_after().expect("not after");
    let issued = not_after - validity;
    for _ in 0..20 {
        let deadline = node.rotation_deadline().expect("deadline");
        assert!(deadline >= issued + validity * 7 / 10, "{deadline}");
        assert!(deadline <= issued + validity * 9 / 10, "{deadline}");
    }
    // A certificate of 40 seconds (the backdate is longer than its life) is renewed after some 30 seconds,
    // not at once.
    let request = CertificateRequest::node("node-b").expect("request");
    let short = IssuedCert {
        cert_pem: ca
            .sign_csr(&request.csr_pem, std::time::Duration::from_secs(40))
            .expect("signed"),
        key_pem: request.key_pem,
    };
    let now = time::OffsetDateTime::now_utc();
    for _ in 0..20 {
        let deadline = short.rotation_deadline().expect("deadline");
        assert!(
            deadline > now + std::time::Duration::from_secs(25),
            "{deadline}"
        );
        assert!(
            deadline < short.not_after().expect("not after"),
            "{deadline}"
        );
    }
    assert_ne!(
        short.serial().expect("serial"),
        node.serial().expect("serial")
    );
}

#[test]
fn a_self_signed_kubelet_certificate_is_not_one_of_the_cluster_ca() {
    let cert = herd_pki::self_signed_serving(
        "node-b",
        &["node-b".to_string()],
        &["127.0.0.1".parse().expect("ip")],
    )
    .expect("self-signed");
    assert!(cert.not_after().is_ok());
    let ca = ClusterCa::generate().expect("ca");
    let roots = herd_pki::tls::roots(ca.cert_pem()).expect("roots");
    let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
        std::sync::Arc::new(roots),
        std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider()),
    )
    .build()
    .expect("verifier");
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1").expect("name");
    let refused = rustls::client::danger::ServerCertVerifier::verify_server_cert(
        verifier.as_ref(),
        &cert.cert_der().expect("der"),
        &[],
        &name,
        &[],
        rustls_pki_types::UnixTime::now(),
    );
    assert!(refused.is_err());
    // kube-rs's DER roots back as PEM.
    let der = ca.cert_der().to_vec();
    let pem = herd_pki::tls::pem_of_certificates(std::slice::from_ref(&der));
    assert_eq!(
        herd_pki::tls::certificates(&pem).expect("parses")[0].to_vec(),
        der
    );
}

#[test]
fn only_a_plain_system_nodes_request_is_a_node_client_request() {
    use herd_pki::{CertificateRequest, RequestedSubject};
    for (user, group) in [
        ("system:node:", Some("system:nodes")),
        ("system:node:n", Some("system:masters")),
        ("system:node:n", None),
        ("jane", Some("system:nodes")),
    ] {
        let request = CertificateRequest::client(user, group).expect("request");
        let asked = RequestedSubject::of(&request.csr_pem).expect("subject");
        assert!(!asked.is_node_client(), "{asked:?}");
        assert_eq!(asked.node_name(), None);
    }
    // A request naming a host as well (openssl, with a SAN): not a node client certificate request.
    let out = Command::new("openssl")
        .args([
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ])
        .args(["-subj", "/O=system:nodes/CN=system:node:n"])
        .args([
            "-addext",
            "subjectAltName=DNS:n.example",
            "-keyout",
            "/dev/null",
        ])
        .output()
        .expect("openssl req");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let asked =
        RequestedSubject::of(&String::from_utf8(out.stdout).expect("pem")).expect("subject");
    assert!(asked.has_subject_alt_names);
    assert!(!asked.is_node_client());
}

#[test]
fn openssl_verifies_each_certificate_for_its_purpose_only() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = ClusterCa::load_or_create(dir.path()).expect("ca");
    serving(&ca).write(dir.path(), "apiserver").expect("write");
    ca.issue_client(ADMIN_USER, &[MASTERS_GROUP], CLIENT_VALIDITY)
        .expect("admin")
        .write(dir.path(), "admin")
        .expect("write");
    assert_eq!(mode(&dir.path().join("admin.key")), 0o600);
    let read = IssuedCert::read(dir.path(), "admin")
        .expect("read")
        .expect("there");
    assert!(read.cert_der().is_ok() && read.key_der().is_ok());
    assert!(
        IssuedCert::read(dir.path(), "absent")
            .expect("read")
            .is_none()
    );

    let verify = |purpose: &str, cert: &str| {
        Command::new("openssl")
            .args(["verify", "-purpose", purpose, "-CAfile"])
            .arg(dir.path().join("pki/ca.crt"))
            .arg(dir.path().join(cert))
            .output()
            .expect("openssl verify")
            .status
            .success()
    };
    assert!(verify("sslserver", "apiserver.crt"));
    assert!(verify("sslclient", "admin.crt"));
    assert!(!verify("sslclient", "apiserver.crt"));
    assert!(!verify("sslserver", "admin.crt"));
}

#[test]
fn a_kubelet_serving_request_is_signed_for_server_auth_with_its_names_only() {
    let ca = ClusterCa::generate().expect("ca");
    let ip: std::net::IpAddr = "127.0.0.9".parse().expect("ip");
    let request =
        herd_pki::CertificateRequest::node_serving("node-a", &["node-a".to_owned()], &[ip])
            .expect("request");
    let asked = herd_pki::RequestedSubject::of(&request.csr_pem).expect("parsed");
    assert_eq!(asked.dns_names, ["node-a"]);
    assert_eq!(asked.ip_addresses, [ip]);
    assert!(!asked.has_other_alt_names);
    assert!(!asked.is_node_client(), "a serving request has names");
    let cert_pem = ca
        .sign_serving_csr(&request.csr_pem, CLIENT_VALIDITY)
        .expect("signed");
    let text = openssl(&["x509", "-noout", "-text"], &cert_pem);
    assert!(text.contains("TLS Web Server Authentication"), "{text}");
    assert!(!text.contains("TLS Web Client Authentication"), "{text}");
    assert!(text.contains("DNS:node-a"), "{text}");
    assert!(text.contains("IP Address:127.0.0.9"), "{text}");
    assert!(
        text.contains("CN=system:node:node-a") || text.contains("CN = system:node:node-a"),
        "{text}"
    );
}
