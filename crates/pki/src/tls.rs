//! rustls configurations on the cluster CA, and kube's x509 authenticator.
//!
//! The server asks every client for a certificate and verifies one against the CA when it is sent, but lets a
//! client without one through: kube-apiserver answers those itself (ServiceAccount or bootstrap tokens, or 401
//! for anonymous requests). A certificate from another CA fails the handshake. Both sides use rustls's
//! aws-lc-rs provider, named explicitly, so no process-wide default provider is needed. ALPN is left to
//! the caller (set `alpn_protocols` to what its HTTP server speaks).

use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig, ServerConnection};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject as _;

use crate::{IssuedCert, PkiError};

/// Who a verified client certificate says its holder is: kube's `user.Info` from x509 (CN = name,
/// O = groups). `system:authenticated` is added by the request authenticator, not here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserInfo {
    pub name: String,
    pub groups: Vec<String>,
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// The certificates in `ca_pem`, in order.
///
/// # Errors
/// [`PkiError::Invalid`] if it holds no certificate or a block that does not parse.
pub fn certificates(ca_pem: &str) -> Result<Vec<CertificateDer<'static>>, PkiError> {
    let certs = CertificateDer::pem_slice_iter(ca_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| PkiError::invalid("the CA certificate PEM", e))?;
    if certs.is_empty() {
        return Err(PkiError::invalid(
            "the CA certificate PEM",
            "it holds no certificate",
        ));
    }
    Ok(certs)
}

/// Certificates (DER, as kube-rs's `Config::root_cert` holds them) as PEM.
#[must_use]
pub fn pem_of_certificates(ders: &[Vec<u8>]) -> String {
    use base64::Engine as _;
    let mut pem = String::new();
    for der in ders {
        let b64 = base64::engine::general_purpose::STANDARD.encode(der);
        pem.push_str("-----BEGIN CERTIFICATE-----\n");
        for line in b64.as_bytes().chunks(64) {
            pem.push_str(&String::from_utf8_lossy(line));
            pem.push('\n');
        }
        pem.push_str("-----END CERTIFICATE-----\n");
    }
    pem
}

/// The trust anchors in `ca_pem` (every certificate in it).
///
/// # Errors
/// [`PkiError::Invalid`] if it holds no certificate or one rustls cannot use as an anchor.
pub fn roots(ca_pem: &str) -> Result<RootCertStore, PkiError> {
    let mut roots = RootCertStore::empty();
    for cert in certificates(ca_pem)? {
        roots
            .add(cert)
            .map_err(|e| PkiError::invalid("the CA certificate", e))?;
    }
    Ok(roots)
}

/// A server presenting `serving`, verifying client certificates against `ca_pem` when a client sends one
/// (TLS 1.2 and 1.3).
///
/// # Errors
/// [`PkiError::Invalid`] for unusable PEM, [`PkiError::Verifier`] / [`PkiError::Tls`] from rustls.
pub fn server_config(ca_pem: &str, serving: &IssuedCert) -> Result<ServerConfig, PkiError> {
    let verifier =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots(ca_pem)?), provider())
            .allow_unauthenticated()
            .build()?;
    Ok(ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![serving.cert_der()?], serving.key_der()?)?)
}

/// A client trusting only `ca_pem`, presenting `client` when given (a node, the admin) and no certificate
/// otherwise (a token-bearing client).
///
/// # Errors
/// [`PkiError::Invalid`] for unusable PEM, [`PkiError::Tls`] from rustls.
pub fn client_config(ca_pem: &str, client: Option<&IssuedCert>) -> Result<ClientConfig, PkiError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots(ca_pem)?);
    Ok(match client {
        Some(client) => {
            builder.with_client_auth_cert(vec![client.cert_der()?], client.key_der()?)?
        }
        None => builder.with_no_client_auth(),
    })
}

/// kube's x509 authenticator (`CommonNameUserConversion`) on a certificate the TLS handshake verified:
/// the subject's CN is the user, its O values the groups. `None` when the CN is empty (kube: not
/// authenticated by this certificate) or the certificate does not parse. Like Go's `pkix.Name`, the last CN
/// counts and non-string values are skipped.
#[must_use]
pub fn peer_identity(cert: &CertificateDer<'_>) -> Option<UserInfo> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert).ok()?;
    let subject = cert.subject();
    let name = subject
        .iter_common_name()
        .filter_map(|cn| cn.as_str().ok())
        .last()?
        .to_owned();
    if name.is_empty() {
        return None;
    }
    let groups = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok().map(str::to_owned))
        .collect();
    Some(UserInfo { name, groups })
}

/// [`peer_identity`] of a server connection's client (its leaf certificate), once the handshake is done;
/// `None` for a client that sent no certificate.
#[must_use]
pub fn connection_identity(connection: &ServerConnection) -> Option<UserInfo> {
    peer_identity(connection.peer_certificates()?.first()?)
}

/// A certificate and key that can be replaced while connections use it: the kubelet's rotating client and
/// serving certificates. Each new TLS handshake takes the current one (rustls asks the resolver at every
/// handshake); connections already made keep theirs.
#[derive(Debug)]
pub struct CurrentCert(std::sync::RwLock<Arc<rustls::sign::CertifiedKey>>);

impl CurrentCert {
    /// Starts with `cert`.
    ///
    /// # Errors
    /// [`PkiError::Invalid`] for unusable PEM, [`PkiError::Tls`] for a key rustls cannot sign with.
    pub fn new(cert: &IssuedCert) -> Result<Self, PkiError> {
        Ok(Self(std::sync::RwLock::new(certified_key(cert)?)))
    }

    /// Makes `cert` the one new handshakes present.
    ///
    /// # Errors
    /// As [`CurrentCert::new`]; the current certificate stays then.
    pub fn set(&self, cert: &IssuedCert) -> Result<(), PkiError> {
        let key = certified_key(cert)?;
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = key;
        Ok(())
    }

    fn get(&self) -> Arc<rustls::sign::CertifiedKey> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl rustls::client::ResolvesClientCert for CurrentCert {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.get())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

impl rustls::server::ResolvesServerCert for CurrentCert {
    fn resolve(
        &self,
        _client_hello: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.get())
    }
}

fn certified_key(cert: &IssuedCert) -> Result<Arc<rustls::sign::CertifiedKey>, PkiError> {
    let key = provider().key_provider.load_private_key(cert.key_der()?)?;
    Ok(Arc::new(rustls::sign::CertifiedKey::new(
        vec![cert.cert_der()?],
        key,
    )))
}

/// [`client_config`] presenting whatever `current` holds at each handshake.
///
/// # Errors
/// [`PkiError::Invalid`] for unusable PEM, [`PkiError::Tls`] from rustls.
pub fn rotating_client_config(
    ca_pem: &str,
    current: Arc<CurrentCert>,
) -> Result<ClientConfig, PkiError> {
    Ok(ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots(ca_pem)?)
        .with_client_cert_resolver(current))
}

/// [`server_config`] presenting whatever `current` holds at each handshake.
///
/// # Errors
/// As [`server_config`].
pub fn rotating_server_config(
    ca_pem: &str,
    current: Arc<CurrentCert>,
) -> Result<ServerConfig, PkiError> {
    let verifier =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots(ca_pem)?), provider())
            .allow_unauthenticated()
            .build()?;
    Ok(ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(current))
}

/// A client that accepts any server certificate (handshake signatures are still checked): ONLY for
/// kubeadm's token discovery, which fetches `cluster-info` without trusting the connection and then
/// verifies what it got (the bootstrap token's JWS over it and the CA's pinned hash).
///
/// # Errors
/// [`PkiError::Tls`] from rustls.
pub fn discovery_client_config() -> Result<ClientConfig, PkiError> {
    Ok(ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServer(provider())))
        .with_no_client_auth())
}

/// The verifier of [`discovery_client_config`].
#[derive(Debug)]
struct AnyServer(Arc<CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &rustls_pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
