//! herd-proxy
