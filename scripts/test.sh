#!/usr/bin/env bash
# THE test command: builds the sample Wasm apps, then runs every test of the workspace (unit, crate
# integration, and the end-to-end tests in tests/e2e that drive the real `herd` binary).
# Works from any directory. Needs: rustup targets wasm32-wasip1 and wasm32-wasip2, and Debian's
# docker-registry (/usr/bin/docker-registry) for the end-to-end tests.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

"$repo/sample-apps/build.sh"

# Each e2e test runs its own herd on its own loopback ranges, so tests may run in parallel; most of their
# time is spent waiting, so 4 threads are fine even on 2 cores.
cargo test --workspace --all-targets -- --test-threads="${HERD_TEST_THREADS:-4}"
