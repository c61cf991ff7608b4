//! The engines: configuration, linkers, the epoch ticker, and `load` (the
//! one place where wasm is compiled).
//!
//! A runtime has two engines sharing one epoch ticker: the default one, with
//! the on-demand instance allocator, for modules and commands (long-running,
//! possibly thousands per node, possibly with large memory limits), and the
//! HTTP engine, with the pooling allocator ([`HttpPool`]), for wasi-http
//! proxies, which instantiate once per request. Which engine compiles a
//! component is decided before compiling, from its top-level exports.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::Duration;

use wasmtime::component::{Component, Linker as ComponentLinker};
use wasmtime::{Config, Engine, Linker, Module, OptLevel};
use wasmtime_wasi::p2::bindings::CommandPre;
use wasmtime_wasi_http::p2::bindings::ProxyPre;

use crate::cache::{CacheOutcome, DiskCache, MemoryCache};
use crate::detect::{HTTP_HANDLER_0_2, Layer, binary_layer, exports_http_handler, to_binary};
use crate::error::{RuntimeError, describe};
use crate::pooling::HttpPool;
use crate::state::{ComponentState, ModuleState};
use crate::workload::{Compiled, Workload};

/// How often the epoch advances. Guests yield to the executor once per tick,
/// so this bounds how long a busy guest can hold a worker thread and how long
/// stopping it takes.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(10);

/// The prefix of every WASI 0.2.x `wasi:cli/run` export name.
const CLI_RUN_0_2: &str = "wasi:cli/run@0.2.";

/// The disk-cache label of the HTTP engine's entries (the default engine's
/// have none), on top of the engines' differing compatibility hashes.
const HTTP_CACHE_LABEL: &str = "http";

/// The wasmtime engines the node agent runs every workload in.
///
/// Cloning is cheap: clones share the engines, their linkers and one epoch
/// ticker thread. The ticker stops once the last `Runtime` clone and the last
/// [`Workload`] loaded from it are dropped.
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<Shared>,
}

/// State shared by a runtime and every workload loaded from it.
pub(crate) struct Shared {
    /// On-demand allocation: modules and commands.
    default: EngineSet,
    /// Pooling allocation: wasi-http proxies.
    http: EngineSet,
    module_linker: Linker<ModuleState>,
    memory_cache: MemoryCache,
    /// The TLS client of the guests' outbound `https` requests.
    pub(crate) outbound_tls: Arc<rustls::ClientConfig>,
    _ticker: Ticker,
}

/// An engine with its component linker and disk cache.
struct EngineSet {
    engine: Engine,
    component_linker: ComponentLinker<ComponentState>,
    disk_cache: Option<DiskCache>,
}

impl EngineSet {
    fn new(
        config: &Config,
        cache_dir: Option<&PathBuf>,
        cache_label: &str,
    ) -> Result<Self, RuntimeError> {
        let engine = Engine::new(config).map_err(|e| RuntimeError::Engine(describe(&e)))?;
        // One component linker serves both commands and HTTP proxies: all of
        // WASI 0.2 plus wasi:http, so a command may make outbound requests too.
        let mut component_linker = ComponentLinker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut component_linker)
            .map_err(|e| RuntimeError::Engine(describe(&e)))?;
        // Socket addresses as in a pod's network namespace (over the above).
        crate::sockets::add_to_linker(&mut component_linker)?;
        // Name lookups through the run's NameLookup (the cluster's names), then the host's resolver.
        crate::name_lookup::add_to_linker(&mut component_linker)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut component_linker)
            .map_err(|e| RuntimeError::Engine(describe(&e)))?;
        let disk_cache = match cache_dir {
            Some(dir) => Some(DiskCache::open(dir.clone(), &engine, cache_label)?),
            None => None,
        };
        Ok(Self {
            engine,
            component_linker,
            disk_cache,
        })
    }
}

/// How to set up a [`Runtime`].
#[derive(Debug, Clone, Default)]
pub struct RuntimeConfig {
    /// Where [`Runtime::load_cached`] keeps compiled code; `None` keeps it in
    /// memory only. Created if missing.
    pub cache_dir: Option<PathBuf>,
    /// CA certificates (DER) that guests' outbound `https` requests trust besides the web roots
    /// (Mozilla's, as `webpki-roots`): the node gives its cluster CA, so a pod reaches the API
    /// server at `https://$KUBERNETES_SERVICE_HOST`.
    pub extra_root_certificates: Vec<Vec<u8>>,
}

impl Runtime {
    /// Creates the engines (async, epoch interruption, Cranelift optimising
    /// for speed, parallel compilation; the HTTP engine with the default
    /// [`HttpPool`]), the WASI linkers and the ticker thread that advances
    /// the epoch every 10 ms.
    ///
    /// # Errors
    ///
    /// [`RuntimeError::Engine`] if wasmtime rejects the configuration or the
    /// linkers, [`RuntimeError::Io`] if the ticker thread cannot be spawned.
    pub fn new() -> Result<Self, RuntimeError> {
        Self::with_config(RuntimeConfig::default())
    }

    /// Like [`Runtime::new`], with a compiled-code cache directory.
    ///
    /// # Errors
    ///
    /// As [`Runtime::new`]; [`RuntimeError::Io`] if the cache directory cannot
    /// be created.
    pub fn with_config(runtime_config: RuntimeConfig) -> Result<Self, RuntimeError> {
        Self::with_http_pool(runtime_config, HttpPool::default())
    }

    /// Like [`Runtime::with_config`], with the HTTP engine's instance pool
    /// sized by `pool`.
    ///
    /// # Errors
    ///
    /// As [`Runtime::with_config`]; [`RuntimeError::Engine`] also when the
    /// pool cannot be reserved (e.g. not enough address space).
    pub fn with_http_pool(
        runtime_config: RuntimeConfig,
        pool: HttpPool,
    ) -> Result<Self, RuntimeError> {
        let mut config = Config::new();
        // Async support is implied by using the `*_async` APIs in wasmtime 48
        // (`Config::async_support` is deprecated and has no effect).
        config
            .epoch_interruption(true)
            .cranelift_opt_level(OptLevel::Speed)
            .parallel_compilation(true)
            .wasm_component_model(true);
        let outbound_tls =
            crate::outbound_tls::client_config(&runtime_config.extra_root_certificates)?;
        let cache_dir = runtime_config.cache_dir.as_ref();
        let default = EngineSet::new(&config, cache_dir, "")?;
        pool.apply(&mut config);
        let http = EngineSet::new(&config, cache_dir, HTTP_CACHE_LABEL)?;

        let mut module_linker = Linker::new(&default.engine);
        wasmtime_wasi::p1::add_to_linker_async(&mut module_linker, |state: &mut ModuleState| {
            &mut state.wasi
        })
        .map_err(|e| RuntimeError::Engine(describe(&e)))?;

        let ticker = Ticker::start(vec![default.engine.clone(), http.engine.clone()])?;
        Ok(Self {
            inner: Arc::new(Shared {
                default,
                http,
                module_linker,
                memory_cache: MemoryCache::default(),
                outbound_tls,
                _ticker: ticker,
            }),
        })
    }

    /// Compiles `wasm` and prepares it for running, detecting what it is:
    ///
    /// - a core module exporting `_start` (WASI preview 1) is a
    ///   [`WorkloadKind::Module`](crate::WorkloadKind::Module);
    /// - a component exporting `wasi:http/incoming-handler@0.2.x` is a
    ///   [`WorkloadKind::HttpProxy`](crate::WorkloadKind::HttpProxy) (even if
    ///   it also exports `wasi:cli/run`), compiled for the pooling engine;
    /// - a component exporting `wasi:cli/run@0.2.x` is a
    ///   [`WorkloadKind::Command`](crate::WorkloadKind::Command).
    ///
    /// WebAssembly text (WAT) is accepted too. Compilation is CPU-heavy: call
    /// this from `tokio::task::spawn_blocking` in async code.
    ///
    /// # Errors
    ///
    /// [`RuntimeError::InvalidWasm`] for bytes that are not valid wasm or have
    /// no supported entry point; [`RuntimeError::Instantiate`] when the wasm
    /// imports something the host does not provide.
    pub fn load(&self, wasm: &[u8]) -> Result<Workload, RuntimeError> {
        let (binary, layer, set) = self.classify(wasm)?;
        let code = compile(&set.engine, &binary, layer)?;
        let compiled = self.link(code, set)?;
        Ok(Workload::new(self.inner.clone(), compiled))
    }

    /// The workload this runtime has already loaded under `key`, if any: no bytes, no disk, no
    /// compilation (the way a second pod of an image starts).
    pub fn loaded(&self, key: &str) -> Option<Workload> {
        self.inner
            .memory_cache
            .get(key)
            .map(|compiled| Workload::new(self.inner.clone(), compiled))
    }

    /// Like [`Runtime::load`], but reuses compiled code: `key` names the
    /// wasm (the caller's image digest). A key loaded before by this runtime
    /// is returned at once ([`CacheOutcome::FromMemory`]); otherwise, with a
    /// cache directory, a valid entry for the key and the chosen engine's
    /// configuration is mapped from disk ([`CacheOutcome::FromDisk`]);
    /// otherwise the wasm is compiled and the entry (re)written
    /// ([`CacheOutcome::Compiled`]). A corrupt entry is removed and rebuilt.
    /// Failing to write the cache is logged, not an error.
    ///
    /// # Errors
    ///
    /// As [`Runtime::load`].
    pub fn load_cached(
        &self,
        wasm: &[u8],
        key: &str,
    ) -> Result<(Workload, CacheOutcome), RuntimeError> {
        if let Some(workload) = self.loaded(key) {
            return Ok((workload, CacheOutcome::FromMemory));
        }
        let (binary, layer, set) = self.classify(wasm)?;
        let (code, outcome) = match set
            .disk_cache
            .as_ref()
            .and_then(|d| d.get(&set.engine, key))
        {
            Some(code) => (code, CacheOutcome::FromDisk),
            None => {
                let code = compile(&set.engine, &binary, layer)?;
                if let Some(disk) = &set.disk_cache {
                    disk.put(key, &code);
                }
                (code, CacheOutcome::Compiled)
            }
        };
        let compiled = self.link(code, set)?;
        self.inner.memory_cache.insert(key, compiled.clone());
        Ok((Workload::new(self.inner.clone(), compiled), outcome))
    }

    /// The binary form of `wasm`, its layer, and the engine that must
    /// compile it: the HTTP (pooling) engine for a component exporting a
    /// wasi-http handler, the default engine otherwise.
    fn classify<'w>(
        &self,
        wasm: &'w [u8],
    ) -> Result<(std::borrow::Cow<'w, [u8]>, Layer, &EngineSet), RuntimeError> {
        let binary = to_binary(wasm)?;
        let layer = binary_layer(&binary)?;
        let set = if layer == Layer::Component && exports_http_handler(&binary) {
            &self.inner.http
        } else {
            &self.inner.default
        };
        Ok((binary, layer, set))
    }

    fn link(&self, code: Code, set: &EngineSet) -> Result<Compiled, RuntimeError> {
        match code {
            Code::Module(module) => self.link_module(&module),
            Code::Component(component) => link_component(&component, set),
        }
    }

    fn link_module(&self, module: &Module) -> Result<Compiled, RuntimeError> {
        let has_start = module
            .get_export("_start")
            .and_then(|export| export.func().cloned())
            .is_some_and(|func| func.params().len() == 0 && func.results().len() == 0);
        if !has_start {
            return Err(RuntimeError::InvalidWasm(
                "core module does not export a `_start` function taking and returning nothing \
                 (only WASI preview 1 commands are supported)"
                    .to_owned(),
            ));
        }
        let pre = self
            .inner
            .module_linker
            .instantiate_pre(module)
            .map_err(|e| RuntimeError::Instantiate(describe(&e)))?;
        Ok(Compiled::Module(pre))
    }
}

/// Links a component compiled by `set`'s engine with that engine's linker.
fn link_component(component: &Component, set: &EngineSet) -> Result<Compiled, RuntimeError> {
    let exports: Vec<String> = component
        .component_type()
        .exports(&set.engine)
        .map(|(name, _)| name.to_owned())
        .collect();
    let exports_http = exports.iter().any(|n| n.starts_with(HTTP_HANDLER_0_2));
    let exports_run = exports.iter().any(|n| n.starts_with(CLI_RUN_0_2));
    if !exports_http && !exports_run {
        return Err(RuntimeError::InvalidWasm(format!(
            "component exports neither wasi:cli/run@0.2.x nor \
             wasi:http/incoming-handler@0.2.x (it exports: [{}])",
            exports.join(", ")
        )));
    }

    let pre = set
        .component_linker
        .instantiate_pre(component)
        .map_err(|e| RuntimeError::Instantiate(describe(&e)))?;
    if exports_http {
        let pre = ProxyPre::new(pre).map_err(|e| {
            RuntimeError::InvalidWasm(format!(
                "wasi:http/incoming-handler export does not match WASI 0.2: {}",
                describe(&e)
            ))
        })?;
        Ok(Compiled::HttpProxy(pre))
    } else {
        let pre = CommandPre::new(pre).map_err(|e| {
            RuntimeError::InvalidWasm(format!(
                "wasi:cli/run export does not match WASI 0.2: {}",
                describe(&e)
            ))
        })?;
        Ok(Compiled::Command(pre))
    }
}

/// Compiled code not yet linked.
pub(crate) enum Code {
    Module(Module),
    Component(Component),
}

/// Compiles a wasm binary of `layer` for `engine`.
fn compile(engine: &Engine, binary: &[u8], layer: Layer) -> Result<Code, RuntimeError> {
    let invalid = |e: wasmtime::Error| RuntimeError::InvalidWasm(describe(&e));
    Ok(match layer {
        Layer::Module => Code::Module(Module::from_binary(engine, binary).map_err(invalid)?),
        Layer::Component => {
            Code::Component(Component::from_binary(engine, binary).map_err(invalid)?)
        }
    })
}

/// A thread that advances the engines' epochs every [`EPOCH_TICK`]; it exits
/// (and is joined) when the `Ticker` is dropped.
struct Ticker {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Ticker {
    fn start(engines: Vec<Engine>) -> Result<Self, RuntimeError> {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("herd-wasm-epoch".to_owned())
            .spawn(move || {
                // Nothing is ever sent: the channel disconnecting is the signal.
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(EPOCH_TICK) {
                    for engine in &engines {
                        engine.increment_epoch();
                    }
                }
            })?;
        Ok(Self {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            // The thread wakes up as soon as the channel disconnects.
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::WorkloadKind;

    #[test]
    fn ticker_thread_exits_with_the_last_clone() {
        let runtime = Runtime::new().expect("runtime");
        let workload = runtime
            .load(b"(module (func (export \"_start\")))")
            .expect("load");
        let engines = [
            runtime.inner.default.engine.weak(),
            runtime.inner.http.engine.weak(),
        ];
        let clone = runtime.clone();
        drop(runtime);
        drop(clone);
        // A loaded workload keeps the engines and their ticker alive.
        assert!(engines.iter().all(|e| e.upgrade().is_some()));
        drop(workload);
        // The ticker thread held strong references to the engines until it
        // was joined; nothing references them any more.
        assert!(engines.iter().all(|e| e.upgrade().is_none()));
    }

    fn sample_app(name: &str) -> Vec<u8> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../sample-apps/dist")
            .join(name);
        std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    #[test]
    fn http_proxies_are_compiled_for_the_pooling_engine_only() {
        let runtime = Runtime::new().expect("runtime");
        let http = runtime.load(&sample_app("http-hello.wasm")).expect("load");
        assert_eq!(http.kind(), WorkloadKind::HttpProxy);
        assert!(Engine::same(http.engine(), &runtime.inner.http.engine));
        let pool = http.engine().get_pooling_config().expect("pooling engine");
        assert_eq!(pool.get_total_component_instances(), 1000);
        assert_eq!(pool.get_max_memory_size(), 256 << 20);
        assert_eq!(http.engine().get_memory_reservation(), 256 << 20);

        let command = runtime
            .load(
                br#"(component
                    (core module $m (func (export "run") (result i32) i32.const 0))
                    (core instance $i (instantiate $m))
                    (func $run (result (result)) (canon lift (core func $i "run")))
                    (instance $r (export "run" (func $run)))
                    (export "wasi:cli/run@0.2.0" (instance $r)))"#,
            )
            .expect("load");
        assert_eq!(command.kind(), WorkloadKind::Command);
        let module = runtime.load(&sample_app("hello.wasm")).expect("load");
        assert_eq!(module.kind(), WorkloadKind::Module);
        for on_demand in [&command, &module] {
            assert!(Engine::same(
                on_demand.engine(),
                &runtime.inner.default.engine
            ));
            assert!(on_demand.engine().get_pooling_config().is_none());
        }
    }

    #[test]
    fn the_engines_cache_entries_never_share_a_name() {
        let dir = tempfile::tempdir().expect("temp dir");
        let runtime = Runtime::with_config(RuntimeConfig {
            cache_dir: Some(dir.path().to_owned()),
            ..RuntimeConfig::default()
        })
        .expect("runtime");
        let default = runtime.inner.default.disk_cache.as_ref().expect("cache");
        let http = runtime.inner.http.disk_cache.as_ref().expect("cache");
        assert_ne!(default.paths("k").0, http.paths("k").0);
    }
}
