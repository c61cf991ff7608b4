//! Integration tests of the registry with real sockets: herd-oci-fetch against the embedded
//! registry and against Debian's docker-registry, and the HTTP protocol itself.

mod docker_registry;
mod embedded;
mod protocol;
mod support;
