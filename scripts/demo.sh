#!/usr/bin/env bash
# Quick start: builds herd and the sample apps, runs `herd up`, pushes the samples to its embedded registry,
# applies their manifests and shows how to reach the HTTP sample through its Service IP. Ctrl-C stops herd.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

# The sample apps are built for WASI preview 1 (modules) and preview 2 (components).
installed_targets="$(rustup target list --installed)"
for wasm_target in wasm32-wasip1 wasm32-wasip2; do
  grep -qx "$wasm_target" <<<"$installed_targets" || rustup target add "$wasm_target"
done
# protoc and the well-known .proto files it imports build the etcd client's gRPC code (Debian's
# protobuf-compiler and libprotobuf-dev; apt leaves the second out without recommends).
if ! command -v protoc >/dev/null || [ ! -f /usr/include/google/protobuf/descriptor.proto ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends protobuf-compiler libprotobuf-dev
  else
    echo "herd's build needs protoc. Run: sudo apt-get install -y protobuf-compiler libprotobuf-dev; then $0 again." >&2
    exit 1
  fi
fi
cargo build --bin herd
sample-apps/build.sh
herd="$root/target/debug/herd"
data="${HERD_DATA_DIR:-$(mktemp -d -t herd-demo.XXXXXX)}"
export KUBECONFIG="$data/kubeconfig.yaml"

"$herd" up --data-dir "$data" --listen 127.0.0.1:6443 --registry-listen 127.0.0.1:5000 &
herd_pid=$!
trap 'kill -TERM $herd_pid 2>/dev/null; wait $herd_pid' EXIT INT TERM

for _ in $(seq 1 600); do
  if [ -f "$KUBECONFIG" ] && "$herd" get nodes >/dev/null 2>&1 && \
     "$herd" get nodes | grep -q ' Ready'; then break; fi
  kill -0 $herd_pid || { echo "herd up exited" >&2; exit 1; }
  sleep 0.1
done

for app in hello http-hello spin; do
  "$herd" push "sample-apps/dist/$app.wasm" "127.0.0.1:5000/$app:v1"
done
"$herd" apply -f sample-apps/hello/manifest.yaml
"$herd" apply -f sample-apps/http-hello/manifest.yaml

echo "waiting for the http-hello pods to run..."
for _ in $(seq 1 300); do
  if [ "$("$herd" get pods -l app=http-hello | grep -c Running)" -ge 2 ]; then break; fi
  sleep 0.2
done
"$herd" get pods -o wide
"$herd" get services
ip="$("$herd" get services http-hello | awk 'NR==2 {print $3}')"
port="$("$herd" get services http-hello | awk 'NR==2 {split($5, p, "/"); print p[1]}')"
cat <<TXT

herd is up (data in $data). Try:
  export KUBECONFIG=$KUBECONFIG
  curl http://$ip:$port/
  $herd logs hello
  kubectl get pods -o wide        # stock kubectl works with the same kubeconfig
Ctrl-C stops herd.
TXT
wait $herd_pid
