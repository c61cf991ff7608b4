//! kubeadm's CA pin: `--discovery-token-ca-cert-hash sha256:<hex>`, the SHA-256 of the CA certificate's
//! DER SubjectPublicKeyInfo (RFC 7469's public key pin). A joining node fetches the CA over an unverified
//! connection and trusts it only if its hash is the one it was given.

use std::fmt;
use std::str::FromStr;

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject as _;
use sha2::{Digest as _, Sha256};

use crate::PkiError;

/// A CA public key pin, displayed and parsed as `sha256:<64 hex digits>`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct CaCertHash([u8; 32]);

impl CaCertHash {
    /// The pin of a CA certificate (DER).
    ///
    /// # Errors
    /// [`PkiError::Invalid`] if the certificate does not parse.
    pub fn of_cert(cert_der: &CertificateDer<'_>) -> Result<Self, PkiError> {
        let (_, cert) = x509_parser::parse_x509_certificate(cert_der)
            .map_err(|e| PkiError::invalid("the CA certificate", e))?;
        Ok(Self(Sha256::digest(cert.public_key().raw).into()))
    }

    /// Checks that the CA certificate a node was shown (PEM, the first certificate counts) is the pinned one.
    ///
    /// # Errors
    /// [`PkiError::CaHashMismatch`] if it is another CA, [`PkiError::Invalid`] if it does not parse.
    pub fn verify_pem(&self, ca_pem: &str) -> Result<(), PkiError> {
        let der = CertificateDer::from_pem_slice(ca_pem.as_bytes())
            .map_err(|e| PkiError::invalid("the CA certificate PEM", e))?;
        self.verify(&der)
    }

    /// [`CaCertHash::verify_pem`] for a DER certificate.
    ///
    /// # Errors
    /// As [`CaCertHash::verify_pem`].
    pub fn verify(&self, ca_der: &CertificateDer<'_>) -> Result<(), PkiError> {
        let actual = Self::of_cert(ca_der)?;
        if actual == *self {
            Ok(())
        } else {
            Err(PkiError::CaHashMismatch {
                expected: self.to_string(),
                actual: actual.to_string(),
            })
        }
    }
}

impl fmt::Display for CaCertHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", hex::encode(self.0))
    }
}

impl fmt::Debug for CaCertHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for CaCertHash {
    type Err = PkiError;

    /// `sha256:<hex>` as kubeadm takes it (the hex in either case); kubeadm's other form, a bare hex string,
    /// is refused as kubeadm refuses it.
    fn from_str(s: &str) -> Result<Self, PkiError> {
        let what = "the CA certificate hash";
        let hex = s
            .split_once(':')
            .filter(|(format, _)| *format == "sha256")
            .map(|(_, hex)| hex)
            .ok_or_else(|| {
                PkiError::invalid(what, format!("{s:?} is not of the form sha256:<hex>"))
            })?;
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(hex, &mut bytes)
            .map_err(|e| PkiError::invalid(what, format!("{s:?}: {e} (64 hex digits expected)")))?;
        Ok(Self(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_it_prints_and_refuses_other_forms() {
        let hash: CaCertHash = format!("sha256:{}", "aB".repeat(32))
            .parse()
            .expect("parse");
        assert_eq!(hash.to_string(), format!("sha256:{}", "ab".repeat(32)));
        for bad in [
            "ab".repeat(32),
            format!("sha1:{}", "ab".repeat(32)),
            format!("sha256:{}", "ab".repeat(31)),
            format!("sha256:{}zz", "ab".repeat(31)),
            "sha256:".to_owned(),
        ] {
            assert!(bad.parse::<CaCertHash>().is_err(), "{bad} parsed");
        }
    }
}
