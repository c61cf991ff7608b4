//! Outbound `https` requests of wasi-http guests, over a TLS client that trusts the usual web roots
//! (Mozilla's, as `webpki-roots`) and the runtime's extra roots (a cluster CA, so a pod reaches its
//! API server at `https://$KUBERNETES_SERVICE_HOST`). wasmtime-wasi-http's `default_send_request`
//! trusts the web roots only; plain `http` requests still go through it.
//!
//! The certificate is checked against the host the guest wrote, not the address a
//! [`ConnectRedirect`](crate::ConnectRedirect) sent the connection to (a Service port the proxy serves
//! on another port is still that Service).

use std::sync::Arc;
use std::time::Duration;

use http_body_util::BodyExt;
use hyper::http::uri::Scheme;
use hyper::{Request, Response, Uri};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::net::TcpStream;
use wasmtime_wasi_http::io::TokioIo;
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody};

use crate::error::RuntimeError;

/// wasmtime-wasi-http's default timeouts (600 s each).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

/// The TLS client configuration of outbound requests: the web roots plus `extra_roots` (DER
/// certificates), with the aws-lc-rs provider named explicitly.
///
/// # Errors
///
/// [`RuntimeError::Engine`] when an extra root is not a usable CA certificate.
pub(crate) fn client_config(extra_roots: &[Vec<u8>]) -> Result<Arc<ClientConfig>, RuntimeError> {
    let mut roots = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.into(),
    };
    for der in extra_roots {
        roots
            .add(CertificateDer::from(der.clone()))
            .map_err(|e| RuntimeError::Engine(format!("an extra root certificate: {e}")))?;
    }
    let config = ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| RuntimeError::Engine(format!("TLS client configuration: {e}")))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Arc::new(config))
}

type IoFuture = Box<dyn Future<Output = Result<(), HttpError>> + Send>;

/// Sends `request` to `connect_to` (the request URI's authority after the policy's translation):
/// over TLS with `tls` when the scheme is `https`, the server's certificate checked against
/// `server_name`'s host; else through wasmtime-wasi-http's default sender.
///
/// Returns the response and the future that drives the connection to its end, as wasmtime's.
pub(crate) async fn send(
    mut request: Request<WasiBody>,
    options: Option<RequestOptions>,
    tls: Arc<ClientConfig>,
    server_name: &Uri,
) -> Result<(Response<WasiBody>, IoFuture), HttpError> {
    if request.uri().scheme() != Some(&Scheme::HTTPS) {
        let (response, io) = wasmtime_wasi_http::default_send_request(request, options).await?;
        return Ok((
            response.map(BodyExt::boxed_unsync),
            Box::new(io) as IoFuture,
        ));
    }
    let connect_timeout = options
        .and_then(|o| o.connect_timeout)
        .unwrap_or(DEFAULT_TIMEOUT);
    let first_byte_timeout = options
        .and_then(|o| o.first_byte_timeout)
        .unwrap_or(DEFAULT_TIMEOUT);
    let authority = request
        .uri()
        .authority()
        .ok_or(HttpError::HttpRequestUriInvalid)?;
    let connect_to = format!(
        "{}:{}",
        authority.host(),
        authority.port_u16().unwrap_or(443)
    );
    let name = tls_server_name(server_name)?;

    let tcp = tokio::time::timeout(connect_timeout, TcpStream::connect(&connect_to))
        .await
        .map_err(|_| HttpError::ConnectionTimeout)?
        .map_err(HttpError::Connect)?;
    let stream = tokio::time::timeout(
        connect_timeout,
        tokio_rustls::TlsConnector::from(tls).connect(name, tcp),
    )
    .await
    .map_err(|_| HttpError::ConnectionTimeout)?
    .map_err(HttpError::Tls)?;
    let (mut sender, conn) = tokio::time::timeout(
        connect_timeout,
        hyper::client::conn::http1::Builder::new().handshake(TokioIo::new(stream)),
    )
    .await
    .map_err(|_| HttpError::ConnectionTimeout)??;
    let conn = tokio::spawn(conn);

    // The request line carries the path only (the authority is for proxies).
    let path = request
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    *request.uri_mut() = Uri::builder()
        .path_and_query(path)
        .build()
        .map_err(|_| HttpError::HttpRequestUriInvalid)?;
    let response = tokio::time::timeout(first_byte_timeout, sender.send_request(request))
        .await
        .map_err(|_| HttpError::ConnectionReadTimeout)??;
    let io: IoFuture = Box::new(async move {
        match conn.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(HttpError::from(e)),
            Err(_) => Err(HttpError::HttpProtocolError),
        }
    });
    Ok((
        response.map(|body| body.map_err(HttpError::from).boxed_unsync()),
        io,
    ))
}

/// The name a server's certificate must carry: the host of the URI the guest asked for (an IP
/// address or a DNS name).
fn tls_server_name(uri: &Uri) -> Result<ServerName<'static>, HttpError> {
    let host = uri.host().ok_or(HttpError::HttpRequestUriInvalid)?;
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<std::net::IpAddr>() {
        return Ok(ServerName::from(ip));
    }
    Ok(ServerName::try_from(bare)?.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_names_are_the_guests_host() {
        let name = |s: &str| tls_server_name(&s.parse::<Uri>().expect("uri")).expect("name");
        assert_eq!(
            name("https://kubernetes.default.svc/api"),
            ServerName::try_from("kubernetes.default.svc").expect("dns name")
        );
        assert_eq!(
            name("https://127.10.0.1:443/"),
            ServerName::from(std::net::IpAddr::from([127, 10, 0, 1]))
        );
        assert_eq!(
            name("https://[::1]:8443/"),
            ServerName::from(std::net::Ipv6Addr::LOCALHOST)
        );
    }

    #[test]
    fn a_bad_extra_root_is_an_error() {
        assert!(client_config(&[]).is_ok());
        assert!(client_config(&[b"not a certificate".to_vec()]).is_err());
    }
}
