//! A loaded workload and how it is run.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use wasmtime::InstancePre;
use wasmtime_wasi::p2::bindings::CommandPre;
use wasmtime_wasi_http::p2::bindings::ProxyPre;

use crate::error::RuntimeError;
use crate::limits::Limits;
use crate::network::NetworkPolicy;
use crate::runtime::Shared;
use crate::sinks::Output;
use crate::state::{ComponentState, GuestEnv, ModuleState, Preopen};
use crate::{guest, http_proxy};

/// What kind of program a [`Workload`] is, detected by [`Runtime::load`](crate::Runtime::load).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkloadKind {
    /// A WASI preview 1 core module; runs `_start`.
    Module,
    /// A WASI 0.2 component exporting `wasi:cli/run`.
    Command,
    /// A WASI 0.2 component exporting `wasi:http/incoming-handler`; the host
    /// serves HTTP/1.1 and instantiates it once per request.
    HttpProxy,
}

/// How to run a workload once. Build it with [`RunSpec::new`] and set the
/// fields you use.
#[derive(Debug)]
pub struct RunSpec {
    /// The guest's arguments; `argv[0]` is the program name.
    pub argv: Vec<String>,
    /// The guest's environment variables.
    pub env: Vec<(String, String)>,
    /// Where the guest's stdout goes (written through, in order).
    pub stdout: Output,
    /// Where the guest's stderr goes; may be a clone of `stdout`'s file.
    pub stderr: Output,
    /// [`WorkloadKind::HttpProxy`] only: the address the host serves on.
    pub http_listen: Option<SocketAddr>,
    /// Memory and CPU limits; none by default.
    pub limits: Limits,
    /// Host directories the guest sees; no file system access by default.
    pub preopens: Vec<Preopen>,
    /// Where components may bind and connect; anywhere by default.
    pub network: NetworkPolicy,
    /// Cancelled to begin a graceful stop (a pod's deletion: the kubelet's
    /// SIGTERM): an HTTP proxy stops accepting connections and ends with
    /// [`Exit::Stopped`] once its in-flight requests are answered. A module
    /// or command, which cannot install a signal handler, ends at once with
    /// [`Exit::Terminated`], as a process does by SIGTERM's default action.
    pub drain: Option<CancellationToken>,
}

impl RunSpec {
    /// A spec with these arguments, environment and outputs, and defaults
    /// for the rest: no listen address, no limits, no preopens, network
    /// allowed, no drain token.
    pub fn new(
        argv: Vec<String>,
        env: Vec<(String, String)>,
        stdout: impl Into<Output>,
        stderr: impl Into<Output>,
    ) -> Self {
        Self {
            argv,
            env,
            stdout: stdout.into(),
            stderr: stderr.into(),
            http_listen: None,
            limits: Limits::default(),
            preopens: Vec::new(),
            network: NetworkPolicy::default(),
            drain: None,
        }
    }
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    /// The guest exited with this status (0 on a normal return).
    Exited(i32),
    /// The guest trapped or a host call it made failed; the message says why.
    Trapped(String),
    /// The stop token was cancelled, or an HTTP proxy finished draining.
    Stopped,
    /// A module or command was ended by [`RunSpec::drain`] (SIGTERM's
    /// default action: a container runtime reports exit code 143).
    Terminated,
    /// The guest grew a memory or table past [`Limits::memory_bytes`] and was
    /// killed (for an HTTP proxy: any request did); the message says what it asked for.
    OutOfMemory(String),
}

/// A compiled, linked workload, ready to be run any number of times
/// (concurrently too). Cheap to clone.
#[derive(Clone)]
pub struct Workload {
    /// Keeps the engine and its epoch ticker alive while the workload exists.
    shared: Arc<Shared>,
    compiled: Compiled,
}

/// The pre-instantiated form of each kind of workload.
#[derive(Clone)]
pub(crate) enum Compiled {
    Module(InstancePre<ModuleState>),
    Command(CommandPre<ComponentState>),
    HttpProxy(ProxyPre<ComponentState>),
}

impl Workload {
    pub(crate) fn new(shared: Arc<Shared>, compiled: Compiled) -> Self {
        Self { shared, compiled }
    }

    /// What kind of workload this is.
    pub fn kind(&self) -> WorkloadKind {
        match self.compiled {
            Compiled::Module(_) => WorkloadKind::Module,
            Compiled::Command(_) => WorkloadKind::Command,
            Compiled::HttpProxy(_) => WorkloadKind::HttpProxy,
        }
    }

    /// Whether `other` runs the very same compiled code as this workload (one copy in memory),
    /// not merely code compiled from the same wasm.
    pub fn shares_code_with(&self, other: &Workload) -> bool {
        self.code_image() == other.code_image()
    }

    /// Where the compiled code lies in memory.
    fn code_image(&self) -> std::ops::Range<*const u8> {
        match &self.compiled {
            Compiled::Module(pre) => pre.module().image_range(),
            Compiled::Command(pre) => pre.instance_pre().component().image_range(),
            Compiled::HttpProxy(pre) => pre.instance_pre().component().image_range(),
        }
    }

    /// The engine the workload was compiled for.
    #[cfg(test)]
    pub(crate) fn engine(&self) -> &wasmtime::Engine {
        match &self.compiled {
            Compiled::Module(pre) => pre.module().engine(),
            Compiled::Command(pre) => pre.engine(),
            Compiled::HttpProxy(pre) => pre.engine(),
        }
    }

    /// Runs the workload until it exits or `stop` is cancelled.
    ///
    /// Modules and commands run once: the result is how the guest exited. An
    /// HTTP proxy first binds `spec.http_listen`, then serves until `stop`,
    /// until `spec.drain` is cancelled and its in-flight requests are done,
    /// or until a request exceeds the memory limit ([`Exit::OutOfMemory`]).
    /// Either way a cancelled `stop` ends the run within a few epoch ticks
    /// (even a guest spinning in a loop) with [`Exit::Stopped`].
    ///
    /// # Errors
    ///
    /// [`RuntimeError::Bind`] when an HTTP proxy has no listen address or
    /// cannot bind it; [`RuntimeError::Preopen`] when a preopened directory
    /// cannot be opened; [`RuntimeError::Instantiate`] when instantiation
    /// fails for a reason other than a trap, an exit or the memory limit.
    pub async fn run(&self, spec: RunSpec, stop: CancellationToken) -> Result<Exit, RuntimeError> {
        let http_listen = spec.http_listen;
        let drain = spec.drain.clone();
        let env = GuestEnv::new(spec, self.shared.outbound_tls.clone())?;
        match &self.compiled {
            Compiled::Module(pre) => {
                until_stopped(guest::run_module(pre, &env), &stop, drain.as_ref()).await
            }
            Compiled::Command(pre) => {
                until_stopped(guest::run_command(pre, &env), &stop, drain.as_ref()).await
            }
            Compiled::HttpProxy(pre) => {
                let server = http_proxy::Server::bind(pre.clone(), env, http_listen).await?;
                Ok(server.serve(stop, drain).await)
            }
        }
    }
}

/// Drives a guest until it finishes, `stop` is cancelled or `drain` is (the
/// guest is terminated, as by SIGTERM). Dropping the guest future drops its
/// store; a guest only runs while it is polled, so it ends within an epoch
/// tick even when it is spinning.
async fn until_stopped(
    guest: impl Future<Output = Result<Exit, RuntimeError>>,
    stop: &CancellationToken,
    drain: Option<&CancellationToken>,
) -> Result<Exit, RuntimeError> {
    let terminated = async {
        match drain {
            Some(drain) => drain.cancelled().await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        biased;
        () = stop.cancelled() => Ok(Exit::Stopped),
        () = terminated => Ok(Exit::Terminated),
        exit = guest => exit,
    }
}
