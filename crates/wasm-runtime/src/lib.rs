//! herd's wasmtime embedding: the only crate in herd that knows wasmtime.
//!
//! A [`Runtime`] owns one wasmtime engine (async, epoch interruption) and a
//! ticker thread that advances the epoch every 10 ms. [`Runtime::load`]
//! compiles wasm once into a [`Workload`] of one of three kinds:
//!
//! - [`WorkloadKind::Module`]: a WASI preview 1 core module, run via `_start`;
//! - [`WorkloadKind::Command`]: a WASI 0.2 component exporting `wasi:cli/run`;
//! - [`WorkloadKind::HttpProxy`]: a WASI 0.2 component exporting
//!   `wasi:http/incoming-handler`, served by the host over HTTP/1.1 with a
//!   fresh instance per request.
//!
//! [`Workload::run`] runs it with a [`RunSpec`] (argv, env, log files, listen
//! address) until it exits or a `CancellationToken` is cancelled. Every store
//! yields to the executor on each epoch tick, so stopping works even for a
//! guest spinning in `loop {}`.
//!
//! ```no_run
//! # async fn example(wasm: &[u8], log: std::fs::File) -> Result<(), herd_wasm_runtime::RuntimeError> {
//! use herd_wasm_runtime::{Exit, RunSpec, Runtime};
//! use tokio_util::sync::CancellationToken;
//!
//! let runtime = Runtime::new()?;
//! let workload = runtime.load(wasm)?;
//! let spec = RunSpec {
//!     argv: vec!["hello".into()],
//!     env: vec![("GREETING".into(), "hi".into())],
//!     stdout: log.try_clone()?,
//!     stderr: log,
//!     http_listen: None,
//! };
//! let exit = workload.run(spec, CancellationToken::new()).await?;
//! assert_eq!(exit, Exit::Exited(0));
//! # Ok(())
//! # }
//! ```

mod error;
mod guest;
mod http_proxy;
mod runtime;
mod state;
mod workload;

pub use error::RuntimeError;
pub use runtime::Runtime;
pub use workload::{Exit, RunSpec, Workload, WorkloadKind};
