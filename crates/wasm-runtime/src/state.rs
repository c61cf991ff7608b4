//! Per-store host state and the WASI context every guest gets.

use wasmtime::component::ResourceTable;
use wasmtime::{Engine, Store};
use wasmtime_wasi::cli::OutputFile;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

/// What a guest sees of its environment: argv, env and where stdout/stderr
/// go. Cheap to clone (the files are shared), so an HTTP proxy can give each
/// request's store the same streams.
#[derive(Clone)]
pub(crate) struct GuestEnv {
    argv: Vec<String>,
    env: Vec<(String, String)>,
    stdout: OutputFile,
    stderr: OutputFile,
}

impl GuestEnv {
    pub(crate) fn new(
        argv: Vec<String>,
        env: Vec<(String, String)>,
        stdout: std::fs::File,
        stderr: std::fs::File,
    ) -> Self {
        Self {
            argv,
            env,
            stdout: OutputFile::new(stdout),
            stderr: OutputFile::new(stderr),
        }
    }

    /// A WASI context builder with this environment and the network policy
    /// (for now: any address, TCP, UDP and name lookups allowed).
    pub(crate) fn wasi_builder(&self) -> WasiCtxBuilder {
        let mut builder = WasiCtxBuilder::new();
        builder
            .args(&self.argv)
            .envs(&self.env)
            .stdout(self.stdout.clone())
            .stderr(self.stderr.clone())
            .inherit_network()
            .allow_tcp(true)
            .allow_udp(true)
            .allow_ip_name_lookup(true);
        builder
    }
}

/// The `T` of every component store: WASI 0.2 and wasi:http state.
pub(crate) struct ComponentState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
}

impl ComponentState {
    pub(crate) fn new(env: &GuestEnv) -> Self {
        Self {
            wasi: env.wasi_builder().build(),
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
        }
    }
}

impl WasiView for ComponentState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for ComponentState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: wasmtime_wasi_http::default_hooks(),
        }
    }
}

/// A store whose guest yields to the async executor on every epoch tick, so
/// it can always be stopped by dropping the future that drives it.
pub(crate) fn yielding_store<T: 'static>(engine: &Engine, data: T) -> Store<T> {
    let mut store = Store::new(engine, data);
    store.set_epoch_deadline(1);
    store.epoch_deadline_async_yield_and_update(1);
    store
}
