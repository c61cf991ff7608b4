//! herd-oci-fetch
