#!/usr/bin/env bash
# Build the sample apps in release and copy them to sample-apps/dist/:
#   hello.wasm       WASI preview 1 module   (wasm32-wasip1)
#   spin.wasm        WASI preview 1 module   (wasm32-wasip1)
#   http-hello.wasm  WASI preview 2 component exporting wasi:http/incoming-handler (wasm32-wasip2)
#   netcheck.wasm    WASI preview 2 command component (wasm32-wasip2)
#   echo-tcp.wasm    WASI preview 2 command component (wasm32-wasip2)
#   echo-udp.wasm    WASI preview 2 command component (wasm32-wasip2)
#   loadgen.wasm     WASI preview 2 command component (wasm32-wasip2)
# Works from any directory. Needs: rustup target add wasm32-wasip1 wasm32-wasip2
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
target_dir="$here/target"
dist="$here/dist"

cd "$here"
cargo build --locked --release --target-dir "$target_dir" --target wasm32-wasip1 -p hello -p spin
cargo build --locked --release --target-dir "$target_dir" --target wasm32-wasip2 -p http-hello -p netcheck -p echo-tcp -p echo-udp -p loadgen

mkdir -p "$dist"
cp "$target_dir/wasm32-wasip1/release/hello.wasm" "$dist/hello.wasm"
cp "$target_dir/wasm32-wasip1/release/spin.wasm" "$dist/spin.wasm"
cp "$target_dir/wasm32-wasip2/release/http_hello.wasm" "$dist/http-hello.wasm"
cp "$target_dir/wasm32-wasip2/release/netcheck.wasm" "$dist/netcheck.wasm"
cp "$target_dir/wasm32-wasip2/release/echo-tcp.wasm" "$dist/echo-tcp.wasm"
cp "$target_dir/wasm32-wasip2/release/echo-udp.wasm" "$dist/echo-udp.wasm"
cp "$target_dir/wasm32-wasip2/release/loadgen.wasm" "$dist/loadgen.wasm"

for app in hello spin http-hello netcheck echo-tcp echo-udp loadgen; do
    printf '%-16s %8d bytes\n' "$app.wasm" "$(wc -c <"$dist/$app.wasm")"
done
