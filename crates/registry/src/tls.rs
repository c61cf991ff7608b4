//! The registry's HTTPS listener: herd's shared one (`herd_tls_listener`), as the API server's; each
//! connection carries the identity its verified client certificate names ([`Peer`]).

pub use herd_tls_listener::{Peer, TlsListener};
