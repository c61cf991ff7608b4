//! The one error type of this crate.

use std::io;
use std::net::SocketAddr;

/// Why the runtime could not load or run a workload.
///
/// A guest that runs and then fails (a trap, a non-zero exit) is not an error:
/// it is an [`Exit`](crate::Exit). These are the failures of the host side.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The wasmtime engine or its linkers could not be set up.
    #[error("cannot set up the wasm engine: {0}")]
    Engine(String),
    /// The bytes are not a workload this runtime can run: not WebAssembly,
    /// invalid, or a module/component without a supported entry point.
    #[error("invalid workload: {0}")]
    InvalidWasm(String),
    /// The workload is valid but cannot be linked or instantiated, e.g. it
    /// imports something the host does not provide.
    #[error("cannot instantiate workload: {0}")]
    Instantiate(String),
    /// An HTTP proxy workload has no listen address, or binding it failed.
    #[error("cannot serve HTTP on {}: {source}", listen_addr(.addr))]
    Bind {
        /// The requested address; `None` when the run spec had none.
        addr: Option<SocketAddr>,
        /// What went wrong.
        source: io::Error,
    },
    /// A preopened directory of the run spec cannot be opened.
    #[error("cannot preopen {}: {message}", host.display())]
    Preopen {
        /// The host directory.
        host: std::path::PathBuf,
        /// What went wrong.
        message: String,
    },
    /// A host I/O operation failed.
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
}

fn listen_addr(addr: &Option<SocketAddr>) -> String {
    match addr {
        Some(addr) => addr.to_string(),
        None => "<no address>".to_owned(),
    }
}

/// Renders a wasmtime error with its causes on one line.
pub(crate) fn describe(e: &wasmtime::Error) -> String {
    format!("{e:#}")
}
