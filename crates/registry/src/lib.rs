//! herd-registry
