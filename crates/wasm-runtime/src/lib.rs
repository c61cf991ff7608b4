//! herd-wasm-runtime
