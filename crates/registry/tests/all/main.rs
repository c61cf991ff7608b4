//! Integration tests of the registry with real sockets: herd-oci-fetch against the embedded
//! registry (over HTTPS, with its access rules) and against Debian's docker-registry, and the HTTP
//! protocol itself.

mod access;
mod docker_registry;
mod embedded;
mod protocol;
mod support;
