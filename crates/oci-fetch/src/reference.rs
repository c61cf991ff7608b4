//! Image references: parsing, and which registries are spoken to over plain HTTP.

use std::net::IpAddr;

use oci_client::Reference;
use oci_client::client::{ClientConfig, ClientProtocol};

use crate::FetchError;
use crate::tls::TlsOptions;

/// Whether `host_port` (`localhost`, `127.0.0.1:5000`, `[::1]:5000`, `::1`, …) names a loopback
/// address: `localhost`, `127.0.0.0/8` or `::1`, with or without a port.
pub fn is_loopback_registry(host_port: &str) -> bool {
    let host = host_of(host_port);
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The host part of `host[:port]`, `[v6]:port` or a bare IPv6 address.
pub(crate) fn host_of(host_port: &str) -> &str {
    if let Some(rest) = host_port.strip_prefix('[') {
        return rest.split_once(']').map_or(rest, |(host, _)| host);
    }
    if host_port.parse::<IpAddr>().is_ok() {
        return host_port;
    }
    match host_port.rsplit_once(':') {
        Some((host, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => host_port,
    }
}

/// Parses `image` as an OCI reference (`registry/repo:tag`, `repo@sha256:…`; the tag defaults to
/// `latest`, the registry to `docker.io`).
pub(crate) fn parse(image: &str) -> Result<Reference, FetchError> {
    image
        .parse::<Reference>()
        .map_err(|e| FetchError::InvalidReference {
            image: image.to_string(),
            message: e.to_string(),
        })
}

/// An oci-client for one protocol, trusting `tls`'s extra roots besides the web roots. Pulls of
/// image indexes pick the `wasm` platform entry.
pub(crate) fn client(plain_http: bool, tls: &TlsOptions) -> oci_client::Client {
    let protocol = if plain_http {
        ClientProtocol::Http
    } else {
        ClientProtocol::Https
    };
    oci_client::Client::new(ClientConfig {
        protocol,
        platform_resolver: Some(Box::new(wasm_platform_resolver)),
        connect_timeout: Some(std::time::Duration::from_secs(10)),
        read_timeout: Some(std::time::Duration::from_secs(60)),
        extra_root_certificates: tls.oci_certificates(),
        ..ClientConfig::default()
    })
}

/// Picks the first index entry whose platform architecture is `wasm`.
pub(crate) fn wasm_platform_resolver(
    entries: &[oci_client::manifest::ImageIndexEntry],
) -> Option<String> {
    entries
        .iter()
        .find(|e| {
            e.platform
                .as_ref()
                .is_some_and(|p| p.architecture.to_string() == "wasm")
        })
        .map(|e| e.digest.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_registries() {
        for yes in [
            "localhost",
            "localhost:5000",
            "LOCALHOST:1",
            "127.0.0.1",
            "127.0.0.1:5000",
            "127.8.9.10:80",
            "::1",
            "[::1]",
            "[::1]:5000",
        ] {
            assert!(is_loopback_registry(yes), "{yes}");
        }
        for no in [
            "ghcr.io",
            "ghcr.io:443",
            "10.0.0.1:5000",
            "128.0.0.1",
            "[::2]:5000",
            "localhost.example.com",
            "mylocalhost:5000",
            "",
        ] {
            assert!(!is_loopback_registry(no), "{no}");
        }
    }

    #[test]
    fn bad_reference_is_an_error_not_a_panic() {
        let err = parse("Not A Reference!").unwrap_err();
        assert!(matches!(err, FetchError::InvalidReference { .. }), "{err}");
        let ok = parse("127.0.0.1:5000/a/b/c:v1").unwrap();
        assert_eq!(ok.registry(), "127.0.0.1:5000");
        assert_eq!(ok.repository(), "a/b/c");
        assert_eq!(ok.tag(), Some("v1"));
    }
}
