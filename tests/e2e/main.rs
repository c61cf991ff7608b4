//! End-to-end tests of the real `herd` binary: each test starts its own herd (and, when it needs images,
//! Debian's `docker-registry`) on its own data dir and loopback ranges, and talks to it the way a user would:
//! Kubernetes REST over HTTP, a kube-rs client, and the herd CLI.
//!
//! Needs: `sample-apps/build.sh` run first, `/usr/bin/docker-registry` (Debian package `docker-registry`),
//! and for the unprivileged test root plus `runuser`. `scripts/test.sh` does the building.

mod harness;

mod agent;
mod api;
mod api_proxy;
mod cli;
mod cronjobs;
mod deployments;
mod dns;
mod embedded_registry;
mod encryption;
mod kubectl;
mod logs;
mod node_identity;
mod node_join;
mod node_ports;
mod nodes;
mod persistence;
mod pod_identity;
mod private_registry;
mod python_client;
mod runtime;
mod scale_to_zero;
mod scheduler;
mod security;
mod services;
mod socket_lb;
mod status;
mod unprivileged;
mod up;
mod volumes;
mod workloads;
