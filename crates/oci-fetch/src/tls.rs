//! TLS to registries: extra trusted CAs (the cluster CA, so herd's embedded registry verifies), an
//! optional client identity, which registries are spoken to over plain HTTP, and the token flow of a
//! registry whose token endpoint takes a client certificate (herd's embedded registry).

use std::sync::Arc;
use std::time::Duration;

use oci_client::secrets::RegistryAuth;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::FetchError;
use crate::reference::is_loopback_registry;

/// How HTTPS connections to registries are verified, and the identity offered where a token
/// endpoint asks for one.
#[derive(Clone, Default)]
pub struct TlsOptions {
    /// CA certificates (DER) trusted besides the web roots, e.g. the cluster CA.
    pub extra_root_certificates: Vec<Vec<u8>>,
    /// A client certificate and its key (PEM), e.g. the admin kubeconfig's; [`push_with`](crate::push_with)
    /// presents it to the registry's token endpoint when no other credentials are given.
    pub identity: Option<ClientIdentity>,
}

impl std::fmt::Debug for TlsOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsOptions")
            .field(
                "extra_root_certificates",
                &self.extra_root_certificates.len(),
            )
            .field("identity", &self.identity.is_some())
            .finish()
    }
}

/// A client certificate (chain) and its private key, PEM.
#[derive(Clone)]
pub struct ClientIdentity {
    pub cert_pem: String,
    pub key_pem: String,
}

impl TlsOptions {
    /// Trusting the CA certificates of `ca_pem` besides the web roots.
    ///
    /// # Errors
    /// [`FetchError::Tls`] when `ca_pem` holds no certificate.
    pub fn trusting_pem(ca_pem: &str) -> Result<Self, FetchError> {
        use rustls::pki_types::pem::PemObject as _;
        let extra_root_certificates: Vec<Vec<u8>> =
            rustls::pki_types::CertificateDer::pem_slice_iter(ca_pem.as_bytes())
                .map(|c| c.map(|c| c.to_vec()))
                .collect::<Result<_, _>>()
                .map_err(|e| FetchError::Tls(format!("the CA certificates: {e}")))?;
        if extra_root_certificates.is_empty() {
            return Err(FetchError::Tls("the CA PEM holds no certificate".into()));
        }
        Ok(Self {
            extra_root_certificates,
            identity: None,
        })
    }

    pub(crate) fn oci_certificates(&self) -> Vec<oci_client::client::Certificate> {
        self.extra_root_certificates
            .iter()
            .map(|der| oci_client::client::Certificate {
                encoding: oci_client::client::CertificateEncoding::Der,
                data: der.clone(),
            })
            .collect()
    }

    /// A reqwest client trusting the web roots and the extra roots, presenting the identity if
    /// `with_identity` (and one is set).
    fn http_client(&self, with_identity: bool) -> Result<reqwest::Client, FetchError> {
        let tls = |e: reqwest::Error| FetchError::Tls(e.to_string());
        let roots = self
            .extra_root_certificates
            .iter()
            .map(|der| reqwest::Certificate::from_der(der))
            .collect::<Result<Vec<_>, _>>()
            .map_err(tls)?;
        let mut builder = reqwest::Client::builder()
            .tls_certs_merge(roots)
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(60));
        if let (true, Some(identity)) = (with_identity, &self.identity) {
            let pem = format!("{}\n{}", identity.cert_pem, identity.key_pem);
            builder = builder.identity(reqwest::Identity::from_pem(pem.as_bytes()).map_err(tls)?);
        }
        builder.build().map_err(tls)
    }
}

/// Whether `registry` (`host[:port]`) is spoken to over plain HTTP: registries listed as insecure
/// are; loopback registries are unless they answer a TLS handshake (herd's embedded registry does;
/// a plain-HTTP registry on loopback, as in tests, does not); every other registry speaks HTTPS.
pub(crate) async fn uses_plain_http(registry: &str, insecure_registries: &[String]) -> bool {
    if insecure_registries.iter().any(|r| r == registry) {
        return true;
    }
    is_loopback_registry(registry) && !speaks_tls(registry).await
}

/// Whether the server at `host_port` answers a TLS ClientHello with a TLS record (a handshake or an
/// alert). Connection failures count as no: the request that follows reports them.
pub(crate) async fn speaks_tls(host_port: &str) -> bool {
    const PROBE_TIMEOUT: Duration = Duration::from_secs(3);
    let addr = if host_port
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
        && !host_port.ends_with(']')
    {
        host_port.to_string()
    } else {
        format!("{host_port}:443")
    };
    let Some(hello) = client_hello(host_port) else {
        return false;
    };
    let probe = async {
        let mut tcp = tokio::net::TcpStream::connect(&addr).await.ok()?;
        tcp.write_all(&hello).await.ok()?;
        let mut first = [0u8; 1];
        let read = tcp.read(&mut first).await.ok()?;
        // 0x16: handshake record, 0x15: alert record.
        Some(read == 1 && matches!(first[0], 0x15 | 0x16))
    };
    matches!(
        tokio::time::timeout(PROBE_TIMEOUT, probe).await,
        Ok(Some(true))
    )
}

/// A TLS ClientHello for `host_port`'s host, as bytes on the wire.
fn client_hello(host_port: &str) -> Option<Vec<u8>> {
    let host = crate::reference::host_of(host_port).to_string();
    let name = rustls::pki_types::ServerName::try_from(host).ok()?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .ok()?
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    let mut connection = rustls::ClientConnection::new(Arc::new(config), name).ok()?;
    let mut hello = Vec::new();
    connection.write_tls(&mut hello).ok()?;
    Some(hello)
}

/// The token flow with a client certificate: asks `registry`'s `/v2/` (anonymously) for its
/// challenge and, for a `Bearer` challenge, asks its realm for a token with push access to
/// `repository`, presenting the identity. `Anonymous` when the registry does not challenge.
///
/// # Errors
/// [`FetchError::Unauthorized`] when the token endpoint refuses; [`FetchError::Registry`] when the
/// registry cannot be reached or answers nonsense.
pub(crate) async fn identity_token(
    tls: &TlsOptions,
    scheme: &str,
    registry: &str,
    repository: &str,
    image: &str,
) -> Result<RegistryAuth, FetchError> {
    let unreachable = |e: reqwest::Error| FetchError::Registry {
        image: image.to_string(),
        message: crate::error::error_chain(&e),
    };
    let ping = tls
        .http_client(false)?
        .get(format!("{scheme}://{registry}/v2/"))
        .send()
        .await
        .map_err(unreachable)?;
    let Some(challenge) = ping
        .headers()
        .get(reqwest::header::WWW_AUTHENTICATE)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_bearer_challenge)
    else {
        return Ok(RegistryAuth::Anonymous);
    };
    let mut query = vec![("scope", format!("repository:{repository}:pull,push"))];
    if let Some(service) = challenge.service {
        query.push(("service", service));
    }
    let response = tls
        .http_client(true)?
        .get(&challenge.realm)
        .query(&query)
        .send()
        .await
        .map_err(unreachable)?;
    match response.status().as_u16() {
        200 => {}
        401 | 403 => {
            return Err(FetchError::Unauthorized {
                image: image.to_string(),
                status: if response.status().as_u16() == 401 {
                    crate::error::UNAUTHORIZED
                } else {
                    crate::error::FORBIDDEN
                },
            });
        }
        status => {
            return Err(FetchError::Registry {
                image: image.to_string(),
                message: format!("the token endpoint answered HTTP {status}"),
            });
        }
    }
    let body: serde_json::Value = response.json().await.map_err(unreachable)?;
    let token = body["token"]
        .as_str()
        .or_else(|| body["access_token"].as_str())
        .filter(|t| !t.is_empty())
        .ok_or_else(|| FetchError::Registry {
            image: image.to_string(),
            message: "the token endpoint answered without a token".into(),
        })?;
    Ok(RegistryAuth::Bearer(token.to_string()))
}

#[derive(Debug, PartialEq, Eq)]
struct BearerChallenge {
    realm: String,
    service: Option<String>,
}

/// `Bearer realm="…",service="…",…` (quoted values without escapes, as registries write them).
fn parse_bearer_challenge(value: &str) -> Option<BearerChallenge> {
    let (scheme, params) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let mut realm = None;
    let mut service = None;
    for param in params.split(',') {
        let Some((key, value)) = param.trim().split_once('=') else {
            continue;
        };
        let value = value.trim().trim_matches('"').to_string();
        match key.trim().to_ascii_lowercase().as_str() {
            "realm" => realm = Some(value),
            "service" => service = Some(value),
            _ => {}
        }
    }
    Some(BearerChallenge {
        realm: realm?,
        service,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_challenges() {
        assert_eq!(
            parse_bearer_challenge(
                r#"Bearer realm="https://127.0.0.1:5000/token",service="herd-registry",scope="repository:a:pull,push""#
            ),
            Some(BearerChallenge {
                realm: "https://127.0.0.1:5000/token".into(),
                service: Some("herd-registry".into()),
            })
        );
        assert_eq!(parse_bearer_challenge(r#"Basic realm="x""#), None);
        assert_eq!(parse_bearer_challenge("Bearer service=\"x\""), None);
    }

    #[tokio::test]
    async fn a_plain_http_server_does_not_speak_tls() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (mut tcp, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 512];
            let _ = tcp.read(&mut buf).await;
            let _ = tcp
                .write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                .await;
        });
        assert!(!speaks_tls(&addr).await);
        assert!(uses_plain_http(&addr, &[]).await);
        // Nothing listening: plain HTTP, whose request then reports the refusal.
        assert!(!speaks_tls("127.0.0.1:1").await);
    }
}
