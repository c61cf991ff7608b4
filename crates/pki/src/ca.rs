//! The cluster CA and the certificates it issues.

use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::fs::DirBuilderExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, DnValue,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
    PublicKeyData, SanType, SerialNumber, SubjectPublicKeyInfo,
};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use time::OffsetDateTime;

use crate::{CaCertHash, PkiError};

/// The CA certificate's subject CN.
pub const CA_COMMON_NAME: &str = "herd-ca";
/// The CA's lifetime: 10 years, as kubeadm's and k3s's.
pub const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// A serving certificate's lifetime: one year, as kubeadm's.
pub const SERVING_VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);
/// A client certificate's lifetime: one year, as kubeadm's (and the CSR API's default).
pub const CLIENT_VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);
/// How far before "now" a certificate starts, for clocks a little behind: kube's CSR signer backdates 5 minutes.
const BACKDATE: Duration = Duration::from_secs(5 * 60);

/// The cluster CA: its certificate and the key that signs with it.
pub struct ClusterCa {
    cert_pem: String,
    cert_der: CertificateDer<'static>,
    not_after: OffsetDateTime,
    hash: CaCertHash,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for ClusterCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterCa")
            .field("hash", &self.ca_cert_hash().to_string())
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

/// A certificate with its private key, both PEM.
#[derive(Clone)]
pub struct IssuedCert {
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for IssuedCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedCert")
            .field("cert_pem", &self.cert_pem)
            .finish_non_exhaustive()
    }
}

impl IssuedCert {
    /// The certificate, DER.
    ///
    /// # Errors
    /// [`PkiError::Invalid`] if `cert_pem` holds no certificate.
    pub fn cert_der(&self) -> Result<CertificateDer<'static>, PkiError> {
        cert_der_of(&self.cert_pem)
    }

    /// The private key, DER.
    ///
    /// # Errors
    /// [`PkiError::Invalid`] if `key_pem` holds no private key.
    pub fn key_der(&self) -> Result<PrivateKeyDer<'static>, PkiError> {
        PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes())
            .map_err(|e| PkiError::invalid("the private key PEM", e))
    }

    /// Writes `<dir>/<name>.crt` and `<dir>/<name>.key` (mode 0600) atomically.
    ///
    /// # Errors
    /// [`PkiError::Io`] naming the file that could not be written.
    pub fn write(&self, dir: &Path, name: &str) -> Result<(), PkiError> {
        let key = dir.join(format!("{name}.key"));
        herd_atomic_file::write_private(&key, self.key_pem.as_bytes())
            .map_err(PkiError::io(&key))?;
        let cert = dir.join(format!("{name}.crt"));
        herd_atomic_file::write(&cert, self.cert_pem.as_bytes()).map_err(PkiError::io(&cert))
    }

    /// Reads what [`IssuedCert::write`] wrote; `None` if either file is absent.
    ///
    /// # Errors
    /// [`PkiError::Io`] for any other read failure.
    pub fn read(dir: &Path, name: &str) -> Result<Option<Self>, PkiError> {
        let cert = read_optional(&dir.join(format!("{name}.crt")))?;
        let key = read_optional(&dir.join(format!("{name}.key")))?;
        Ok(cert
            .zip(key)
            .map(|(cert_pem, key_pem)| Self { cert_pem, key_pem }))
    }

    /// When to ask for a new certificate, as client-go's certificate manager (the kubelet's) picks it: a random
    /// moment between 70 % and 90 % of the certificate's lifetime. The lifetime is counted from when the
    /// certificate was issued, `notBefore` plus the signer's 5-minute backdate (kube's signer and herd's CA
    /// backdate every certificate), not from `notBefore` itself: for a certificate of a few minutes (a short
    /// `--cluster-signing-duration`) the backdate would otherwise put the deadline in the past and the
    /// certificate would be renewed again at once. For a year's certificate the difference is nothing.
    ///
    /// # Errors
    /// [`PkiError::Invalid`] if the certificate does not parse.
    pub fn rotation_deadline(&self) -> Result<OffsetDateTime, PkiError> {
        let der = self.cert_der()?;
        let (_, cert) = x509_parser::parse_x509_certificate(&der)
            .map_err(|e| PkiError::invalid("the certificate", e))?;
        let not_after = cert.validity().not_after.to_datetime();
        let issued = (cert.validity().not_before.to_datetime() + BACKDATE).min(not_after);
        let total = not_after - issued;
        Ok(issued + total * rand::random_range(0.7..0.9))
    }

    /// The certificate's serial number, hex (as `openssl x509 -serial` prints it, lower case): what tells one
    /// renewal from the next.
    ///
    /// # Errors
    /// [`PkiError::Invalid`] if the certificate does not parse.
    pub fn serial(&self) -> Result<String, PkiError> {
        let der = self.cert_der()?;
        let (_, cert) = x509_parser::parse_x509_certificate(&der)
            .map_err(|e| PkiError::invalid("the certificate", e))?;
        Ok(hex::encode(cert.raw_serial()))
    }

    /// When the certificate expires.
    ///
    /// # Errors
    /// [`PkiError::Invalid`] if the certificate does not parse.
    pub fn not_after(&self) -> Result<OffsetDateTime, PkiError> {
        let der = self.cert_der()?;
        let (_, cert) = x509_parser::parse_x509_certificate(&der)
            .map_err(|e| PkiError::invalid("the certificate", e))?;
        Ok(cert.validity().not_after.to_datetime())
    }
}

/// The subject alternative names of a kube-apiserver serving certificate: `localhost`, `127.0.0.1`, the
/// `kubernetes.default.svc` names, the first Service IP, then `ips` and `dns_names` (the listen addresses and
/// the host's names), without duplicates.
#[must_use]
pub fn serving_sans(
    ips: &[IpAddr],
    first_service_ip: Option<IpAddr>,
    dns_names: &[String],
) -> Vec<SanType> {
    let mut names: Vec<String> = [
        "localhost",
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    for name in dns_names {
        if !names.contains(name) {
            names.push(name.clone());
        }
    }
    let mut addresses = vec![IpAddr::V4(Ipv4Addr::LOCALHOST)];
    for ip in first_service_ip.iter().chain(ips) {
        // An unspecified listen address (0.0.0.0) names no host; a certificate cannot carry it usefully.
        if !ip.is_unspecified() && !addresses.contains(ip) {
            addresses.push(*ip);
        }
    }
    names
        .into_iter()
        .filter_map(|n| n.try_into().ok().map(SanType::DnsName))
        .chain(addresses.into_iter().map(SanType::IpAddress))
        .collect()
}

impl ClusterCa {
    /// Loads the CA from `<data_dir>/pki/ca.crt` and `ca.key`, or creates it there (the directory mode 0700,
    /// the key 0600) when there is no certificate yet.
    ///
    /// # Errors
    /// [`PkiError::MissingCaKey`] when the certificate is there without its key (a new CA would orphan every
    /// certificate already issued), [`PkiError::CaKeyMismatch`] or [`PkiError::Invalid`] for damaged files,
    /// [`PkiError::Io`] for file failures.
    pub fn load_or_create(data_dir: &Path) -> Result<Self, PkiError> {
        let dir = data_dir.join("pki");
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(PkiError::io(&dir))?;
        let cert_path = dir.join("ca.crt");
        let key_path = dir.join("ca.key");
        match (read_optional(&cert_path)?, read_optional(&key_path)?) {
            (Some(cert), Some(key)) => Self::from_pem(&cert, &key).map_err(|e| match e {
                PkiError::CaKeyMismatch { .. } => PkiError::CaKeyMismatch { path: key_path },
                e => e,
            }),
            (Some(_), None) => Err(PkiError::MissingCaKey {
                cert: cert_path,
                key: key_path,
            }),
            // The key is written first: a key without a certificate is a creation that did not finish.
            (None, _) => {
                let ca = Self::generate()?;
                herd_atomic_file::write_private(
                    &key_path,
                    ca.issuer.key().serialize_pem().as_bytes(),
                )
                .map_err(PkiError::io(&key_path))?;
                herd_atomic_file::write(&cert_path, ca.cert_pem.as_bytes())
                    .map_err(PkiError::io(&cert_path))?;
                Ok(ca)
            }
        }
    }

    /// A new CA, in memory: ECDSA P-256, CN [`CA_COMMON_NAME`], valid for [`CA_VALIDITY`].
    ///
    /// # Errors
    /// [`PkiError::Generate`] if key generation or signing fails.
    pub fn generate() -> Result<Self, PkiError> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, CA_COMMON_NAME);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
        ];
        let now = whole_seconds(OffsetDateTime::now_utc());
        params.not_before = now - BACKDATE;
        params.not_after = now + CA_VALIDITY;
        params.serial_number = Some(random_serial());
        let cert = params.self_signed(&key)?;
        let not_after = params.not_after;
        let cert_der = cert.der().clone();
        Ok(Self {
            cert_pem: cert.pem(),
            hash: CaCertHash::of_cert(&cert_der)?,
            cert_der,
            not_after,
            issuer: Issuer::new(params, key),
        })
    }

    /// The CA from its certificate and key, PEM.
    ///
    /// # Errors
    /// [`PkiError::Invalid`] if either does not parse or the certificate is not a CA's,
    /// [`PkiError::CaKeyMismatch`] (with an empty path) if the key is not the certificate's.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, PkiError> {
        let cert_der = cert_der_of(cert_pem)?;
        let key = KeyPair::from_pem(key_pem).map_err(|e| PkiError::invalid("the CA key", e))?;
        let (_, cert) = x509_parser::parse_x509_certificate(&cert_der)
            .map_err(|e| PkiError::invalid("the CA certificate", e))?;
        if !cert.is_ca() {
            return Err(PkiError::invalid(
                "the CA certificate",
                "its basic constraints do not make it a CA",
            ));
        }
        if cert.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
            return Err(PkiError::CaKeyMismatch {
                path: PathBuf::new(),
            });
        }
        let not_after = cert.validity().not_after.to_datetime();
        let issuer = Issuer::from_ca_cert_der(&cert_der, key)?;
        Ok(Self {
            cert_pem: cert_pem.to_owned(),
            hash: CaCertHash::of_cert(&cert_der)?,
            cert_der,
            not_after,
            issuer,
        })
    }

    /// The CA certificate, PEM (what kubeconfigs and `ca.crt` in pods carry).
    #[must_use]
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA certificate, DER.
    #[must_use]
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    /// When the CA expires; no certificate it issues outlives it.
    #[must_use]
    pub fn not_after(&self) -> OffsetDateTime {
        self.not_after
    }

    /// kubeadm's `--discovery-token-ca-cert-hash` of this CA.
    #[must_use]
    pub fn ca_cert_hash(&self) -> CaCertHash {
        self.hash
    }

    /// A serving certificate (server auth) with a new P-256 key, subject CN `common_name` (kube-apiserver's is
    /// `kube-apiserver`), the given subject alternative names (see [`serving_sans`]).
    ///
    /// # Errors
    /// [`PkiError::Generate`] if key generation or signing fails.
    pub fn issue_serving(
        &self,
        common_name: &str,
        sans: &[SanType],
        validity: Duration,
    ) -> Result<IssuedCert, PkiError> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.subject_alt_names = sans.to_vec();
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = self.sign(params, &key, validity)?;
        Ok(IssuedCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// A kubelet serving certificate straight from the CA, as the `kubernetes.io/kubelet-serving` signer
    /// would issue it for the node's CSR: CN `system:node:<name>`, O `system:nodes`, the node's name and
    /// addresses as subject alternative names, server auth only. For a node in the control plane's own
    /// process (`herd up`), which needs no CSR.
    ///
    /// # Errors
    /// [`PkiError::Generate`] if key generation or signing fails, or the name is not a DNS name.
    pub fn issue_kubelet_serving(
        &self,
        node_name: &str,
        addresses: &[IpAddr],
        validity: Duration,
    ) -> Result<IssuedCert, PkiError> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::OrganizationName, crate::NODES_GROUP);
        params
            .distinguished_name
            .push(DnType::CommonName, crate::node_user(node_name));
        params.subject_alt_names = vec![SanType::DnsName(node_name.to_string().try_into()?)];
        params
            .subject_alt_names
            .extend(addresses.iter().map(|ip| SanType::IpAddress(*ip)));
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = self.sign(params, &key, validity)?;
        Ok(IssuedCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// A client certificate (client auth) with a new P-256 key: CN `user`, O `groups` — kube's x509
    /// authenticator reads the user and groups back from them ([`crate::tls::peer_identity`]).
    ///
    /// # Errors
    /// [`PkiError::Invalid`] for an empty user or more than one group (herd's certificate writer puts at most
    /// one O in a subject; kube's admins and nodes each have one), [`PkiError::Generate`] if signing fails.
    pub fn issue_client(
        &self,
        user: &str,
        groups: &[&str],
        validity: Duration,
    ) -> Result<IssuedCert, PkiError> {
        if user.is_empty() {
            return Err(PkiError::invalid("the user", "it is empty"));
        }
        if groups.len() > 1 {
            return Err(PkiError::invalid(
                "the groups",
                "a certificate carries at most one organization (group)",
            ));
        }
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        for group in groups {
            params
                .distinguished_name
                .push(DnType::OrganizationName, *group);
        }
        params.distinguished_name.push(DnType::CommonName, user);
        let cert = self.sign(client_params(params), &key, validity)?;
        Ok(IssuedCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// Signs a PEM `CERTIFICATE REQUEST` for the CertificateSigningRequest API: the request's signature must
    /// verify; the certificate takes the request's subject and public key, and nothing else it asks for (as
    /// kube's `kubernetes.io/kube-apiserver-client*` signers: client auth only, no SANs, never a CA), and
    /// lives `validity` (no longer than the CA). Who may get which subject is the caller's check.
    ///
    /// # Errors
    /// [`PkiError::Invalid`] for a request that does not parse, a subject with a repeated attribute, or a
    /// key type herd cannot sign for; [`PkiError::CsrSignature`] if its signature does not verify.
    pub fn sign_csr(&self, csr_pem: &str, validity: Duration) -> Result<String, PkiError> {
        let (public_key, subject) = crate::csr::with_verified(csr_pem, |csr| {
            let info = &csr.certification_request_info;
            let public_key = SubjectPublicKeyInfo::from_der(info.subject_pki.raw)
                .map_err(|e| PkiError::invalid("the request's public key", e))?;
            Ok((public_key, subject_of(&info.subject)?))
        })?;
        let mut params = CertificateParams::default();
        params.distinguished_name = subject;
        Ok(self
            .sign(client_params(params), &public_key, validity)?
            .pem())
    }

    /// Signs a PEM `CERTIFICATE REQUEST` for a serving certificate (kube's `kubernetes.io/kubelet-serving`
    /// signer): the request's subject, public key and its DNS and IP subject alternative names (nothing
    /// else), server auth only, `validity` (no longer than the CA). Who may get which names is the caller's
    /// check.
    ///
    /// # Errors
    /// As [`ClusterCa::sign_csr`]; [`PkiError::Invalid`] also for a DNS name rcgen refuses.
    pub fn sign_serving_csr(&self, csr_pem: &str, validity: Duration) -> Result<String, PkiError> {
        let (public_key, subject) = crate::csr::with_verified(csr_pem, |csr| {
            let info = &csr.certification_request_info;
            let public_key = SubjectPublicKeyInfo::from_der(info.subject_pki.raw)
                .map_err(|e| PkiError::invalid("the request's public key", e))?;
            Ok((public_key, subject_of(&info.subject)?))
        })?;
        let requested = crate::RequestedSubject::of(csr_pem)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = subject;
        for dns in requested.dns_names {
            params
                .subject_alt_names
                .push(SanType::DnsName(dns.try_into().map_err(|e| {
                    PkiError::invalid("the request's DNS name", e)
                })?));
        }
        for ip in requested.ip_addresses {
            params.subject_alt_names.push(SanType::IpAddress(ip));
        }
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        Ok(self.sign(params, &public_key, validity)?.pem())
    }

    fn sign(
        &self,
        mut params: CertificateParams,
        public_key: &impl PublicKeyData,
        validity: Duration,
    ) -> Result<rcgen::Certificate, PkiError> {
        let now = whole_seconds(OffsetDateTime::now_utc());
        params.not_before = now - BACKDATE;
        params.not_after = (now + validity).min(self.not_after);
        params.serial_number = Some(random_serial());
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.use_authority_key_identifier_extension = true;
        Ok(params.signed_by(public_key, &self.issuer)?)
    }
}

/// A self-signed serving certificate, as the kubelet makes one for its port when it has no certificate of the
/// cluster CA yet (`<host>-ca@<unix time>` signing `<host>@<unix time>` in kube; here one certificate, CN
/// `<host>@<unix time>`), with the given DNS names and IP addresses as subject alternative names, valid for a
/// year. No client that trusts only the cluster CA accepts it.
///
/// # Errors
/// [`PkiError::Generate`] if key generation or signing fails, or a DNS name rcgen refuses.
pub fn self_signed_serving(
    host: &str,
    dns_names: &[String],
    ip_addresses: &[IpAddr],
) -> Result<IssuedCert, PkiError> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let now = whole_seconds(OffsetDateTime::now_utc());
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(
        DnType::CommonName,
        format!("{host}@{}", now.unix_timestamp()),
    );
    for dns in dns_names {
        params
            .subject_alt_names
            .push(SanType::DnsName(dns.clone().try_into()?));
    }
    for ip in ip_addresses {
        params.subject_alt_names.push(SanType::IpAddress(*ip));
    }
    params.not_before = now - BACKDATE;
    params.not_after = now + SERVING_VALIDITY;
    params.serial_number = Some(random_serial());
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let cert = params.self_signed(&key)?;
    Ok(IssuedCert {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

fn client_params(mut params: CertificateParams) -> CertificateParams {
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params
}

/// A request's subject as rcgen's name: each attribute once, as a UTF-8 string.
fn subject_of(name: &x509_parser::x509::X509Name<'_>) -> Result<DistinguishedName, PkiError> {
    let mut subject = DistinguishedName::new();
    for attribute in name.iter_attributes() {
        let oid: Vec<u64> = attribute
            .attr_type()
            .iter()
            .ok_or_else(|| {
                PkiError::invalid("the request's subject", "an attribute type too long")
            })?
            .collect();
        let kind = DnType::from_oid(&oid);
        if subject.get(&kind).is_some() {
            return Err(PkiError::invalid(
                "the request's subject",
                format!(
                    "{} appears more than once (herd signs at most one of each)",
                    attribute.attr_type()
                ),
            ));
        }
        let value = attribute
            .as_str()
            .map_err(|e| PkiError::invalid("the request's subject", e))?;
        subject.push(kind, DnValue::Utf8String(value.to_owned()));
    }
    Ok(subject)
}

/// `t` without its fraction of a second, as a certificate holds it.
fn whole_seconds(t: OffsetDateTime) -> OffsetDateTime {
    t - Duration::from_nanos(u64::from(t.nanosecond()))
}

/// A positive, random 127-bit serial number (RFC 5280: at most 20 octets, positive; kube's are random too).
fn random_serial() -> SerialNumber {
    let mut bytes: [u8; 16] = rand::random();
    bytes[0] &= 0x7f;
    bytes[0] |= 0x40;
    SerialNumber::from_slice(&bytes)
}

fn cert_der_of(pem: &str) -> Result<CertificateDer<'static>, PkiError> {
    CertificateDer::from_pem_slice(pem.as_bytes())
        .map_err(|e| PkiError::invalid("the certificate PEM", e))
}

fn read_optional(path: &Path) -> Result<Option<String>, PkiError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(PkiError::Io {
            path: path.to_owned(),
            source: e,
        }),
    }
}
