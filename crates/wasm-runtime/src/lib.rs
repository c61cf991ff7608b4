//! herd's wasmtime embedding: the only crate in herd that knows wasmtime.
//!
//! A [`Runtime`] owns two wasmtime engines (async, epoch interruption) and a
//! ticker thread that advances their epochs every 10 ms: one with on-demand
//! instance allocation for modules and commands, one with a pooling
//! allocator ([`HttpPool`]) for wasi-http proxies. [`Runtime::load`]
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
//! let spec = RunSpec::new(
//!     vec!["hello".into()],
//!     vec![("GREETING".into(), "hi".into())],
//!     log.try_clone()?,
//!     log,
//! );
//! let exit = workload.run(spec, CancellationToken::new()).await?;
//! assert_eq!(exit, Exit::Exited(0));
//! # Ok(())
//! # }
//! ```

mod cache;
mod detect;
mod error;
mod guest;
mod http_proxy;
mod limits;
mod name_lookup;
mod network;
mod outbound_tls;
mod pooling;
mod runtime;
mod sinks;
mod sockets;
mod state;
mod workload;

pub use cache::CacheOutcome;
pub use error::RuntimeError;
pub use ipnet::IpNet;
pub use limits::Limits;
pub use network::{Answer, ConnectRedirect, NameLookup, NetworkPolicy, Outbound};
pub use pooling::HttpPool;
pub use runtime::{Runtime, RuntimeConfig};
pub use sinks::{Output, OutputSink};
pub use state::Preopen;
pub use wasmtime_wasi::sockets::SocketAddrUse;
pub use workload::{Exit, RunSpec, Workload, WorkloadKind};
