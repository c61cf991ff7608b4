//! Certificate signing requests: what a joining node sends (kubelet's bootstrap: a new key and a CSR for
//! `system:node:NAME` in `system:nodes`), and what the CSR API reads from one before it is signed
//! ([`crate::ClusterCa::sign_csr`]).

use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, PKCS_ECDSA_P256_SHA256};
use rustls_pki_types::CertificateSigningRequestDer;
use rustls_pki_types::pem::PemObject as _;
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::FromDer as _;

use crate::{NODE_USER_PREFIX, NODES_GROUP, PkiError, node_user};

/// A new private key and the PEM CSR signed with it.
#[derive(Clone)]
pub struct CertificateRequest {
    pub csr_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for CertificateRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertificateRequest")
            .field("csr_pem", &self.csr_pem)
            .finish_non_exhaustive()
    }
}

impl CertificateRequest {
    /// A new P-256 key and a CSR for subject CN `user`, O `group`.
    ///
    /// # Errors
    /// [`PkiError::Generate`] if key generation or signing fails.
    pub fn client(user: &str, group: Option<&str>) -> Result<Self, PkiError> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        if let Some(group) = group {
            params
                .distinguished_name
                .push(DnType::OrganizationName, group);
        }
        params.distinguished_name.push(DnType::CommonName, user);
        let csr = params.serialize_request(&key)?;
        Ok(Self {
            csr_pem: csr.pem()?,
            key_pem: key.serialize_pem(),
        })
    }

    /// A node's request, as the kubelet makes it: CN `system:node:<name>`, O `system:nodes`.
    ///
    /// # Errors
    /// As [`CertificateRequest::client`].
    pub fn node(name: &str) -> Result<Self, PkiError> {
        Self::client(&node_user(name), Some(NODES_GROUP))
    }

    /// A kubelet serving certificate's request, as the kubelet makes it: CN `system:node:<name>`,
    /// O `system:nodes`, the node's DNS names and IP addresses as subject alternative names.
    ///
    /// # Errors
    /// [`PkiError::Generate`] if key generation or signing fails, or a DNS name rcgen refuses.
    pub fn node_serving(
        name: &str,
        dns_names: &[String],
        ip_addresses: &[std::net::IpAddr],
    ) -> Result<Self, PkiError> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::OrganizationName, NODES_GROUP);
        params
            .distinguished_name
            .push(DnType::CommonName, node_user(name));
        for dns in dns_names {
            params
                .subject_alt_names
                .push(rcgen::SanType::DnsName(dns.clone().try_into()?));
        }
        for ip in ip_addresses {
            params
                .subject_alt_names
                .push(rcgen::SanType::IpAddress(*ip));
        }
        let csr = params.serialize_request(&key)?;
        Ok(Self {
            csr_pem: csr.pem()?,
            key_pem: key.serialize_pem(),
        })
    }
}

/// What a CSR whose signature verifies asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestedSubject {
    /// The subject's CN (the last one, as Go reads it); empty when absent.
    pub common_name: String,
    /// The subject's O values.
    pub organizations: Vec<String>,
    /// Whether it requests any subject alternative name (DNS, IP, email, URI …).
    pub has_subject_alt_names: bool,
    /// The DNS names among them.
    pub dns_names: Vec<String>,
    /// The IP addresses among them.
    pub ip_addresses: Vec<std::net::IpAddr>,
    /// Whether it requests a subject alternative name of another type (email, URI, …).
    pub has_other_alt_names: bool,
}

impl RequestedSubject {
    /// Parses `csr_pem` and checks its signature.
    ///
    /// # Errors
    /// [`PkiError::Invalid`] if it does not parse, [`PkiError::CsrSignature`] if its signature does not verify.
    pub fn of(csr_pem: &str) -> Result<Self, PkiError> {
        with_verified(csr_pem, |csr| {
            let subject = &csr.certification_request_info.subject;
            let mut has_subject_alt_names = false;
            let (mut dns_names, mut ip_addresses, mut has_other_alt_names) =
                (Vec::new(), Vec::new(), false);
            for extension in csr.requested_extensions().into_iter().flatten() {
                let ParsedExtension::SubjectAlternativeName(san) = extension else {
                    continue;
                };
                for name in &san.general_names {
                    has_subject_alt_names = true;
                    match name {
                        GeneralName::DNSName(dns) => dns_names.push((*dns).to_owned()),
                        GeneralName::IPAddress(bytes) => match ip_of(bytes) {
                            Some(ip) => ip_addresses.push(ip),
                            None => has_other_alt_names = true,
                        },
                        _ => has_other_alt_names = true,
                    }
                }
            }
            Ok(Self {
                common_name: subject
                    .iter_common_name()
                    .filter_map(|cn| cn.as_str().ok())
                    .last()
                    .unwrap_or_default()
                    .to_owned(),
                organizations: subject
                    .iter_organization()
                    .filter_map(|o| o.as_str().ok().map(str::to_owned))
                    .collect(),
                has_subject_alt_names,
                dns_names,
                ip_addresses,
                has_other_alt_names,
            })
        })
    }

    /// kube's `isNodeClientCert` on the request's content (the CSR approver also checks the signer name and
    /// the usages, which live in the API object): O exactly `[system:nodes]`, CN `system:node:<name>`, no
    /// subject alternative names.
    #[must_use]
    pub fn is_node_client(&self) -> bool {
        self.organizations == [NODES_GROUP]
            && !self.has_subject_alt_names
            && self
                .common_name
                .strip_prefix(NODE_USER_PREFIX)
                .is_some_and(|name| !name.is_empty())
    }

    /// The node name of a node client request (see [`RequestedSubject::is_node_client`]).
    #[must_use]
    pub fn node_name(&self) -> Option<&str> {
        self.is_node_client()
            .then(|| self.common_name.strip_prefix(NODE_USER_PREFIX))
            .flatten()
    }
}

/// An IP address SAN's bytes (4 or 16).
fn ip_of(bytes: &[u8]) -> Option<std::net::IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(std::net::IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(std::net::IpAddr::from),
        _ => None,
    }
}

/// Runs `f` on the parsed request once its signature verified.
pub(crate) fn with_verified<T>(
    csr_pem: &str,
    f: impl FnOnce(&X509CertificationRequest<'_>) -> Result<T, PkiError>,
) -> Result<T, PkiError> {
    let der = CertificateSigningRequestDer::from_pem_slice(csr_pem.as_bytes())
        .map_err(|e| PkiError::invalid("the certificate signing request PEM", e))?;
    let (rest, csr) = X509CertificationRequest::from_der(&der)
        .map_err(|e| PkiError::invalid("the certificate signing request", e))?;
    if !rest.is_empty() {
        return Err(PkiError::invalid(
            "the certificate signing request",
            "trailing bytes after it",
        ));
    }
    csr.verify_signature().map_err(|_| PkiError::CsrSignature)?;
    f(&csr)
}
