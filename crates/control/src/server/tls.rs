//! The API server's HTTPS listener: herd's shared one (`herd_tls_listener`), whose connections carry the
//! identity their verified client certificate names to every request ([`Peer`], read by [`super::authn`]).

pub use herd_tls_listener::{Peer, TlsListener};
