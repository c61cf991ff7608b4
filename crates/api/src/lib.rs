//! herd-api
