//! herd-control
