//! The shared engine: configuration, linkers, the epoch ticker, and `load`
//! (the one place where wasm is compiled).

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
use crate::error::{RuntimeError, describe};
use crate::state::{ComponentState, ModuleState};
use crate::workload::{Compiled, Workload};

/// How often the epoch advances. Guests yield to the executor once per tick,
/// so this bounds how long a busy guest can hold a worker thread and how long
/// stopping it takes.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(10);

/// The prefix of every WASI 0.2.x `wasi:cli/run` export name.
const CLI_RUN_0_2: &str = "wasi:cli/run@0.2.";
/// The prefix of every WASI 0.2.x `wasi:http/incoming-handler` export name.
const HTTP_HANDLER_0_2: &str = "wasi:http/incoming-handler@0.2.";

/// The wasmtime engine the node agent runs every workload in.
///
/// Cloning is cheap: clones share one [`Engine`], its linkers and one epoch
/// ticker thread. The ticker stops once the last `Runtime` clone and the last
/// [`Workload`] loaded from it are dropped.
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<Shared>,
}

/// State shared by a runtime and every workload loaded from it.
pub(crate) struct Shared {
    pub(crate) engine: Engine,
    module_linker: Linker<ModuleState>,
    component_linker: ComponentLinker<ComponentState>,
    disk_cache: Option<DiskCache>,
    memory_cache: MemoryCache,
    _ticker: Ticker,
}

/// How to set up a [`Runtime`].
#[derive(Debug, Clone, Default)]
pub struct RuntimeConfig {
    /// Where [`Runtime::load_cached`] keeps compiled code; `None` keeps it in
    /// memory only. Created if missing.
    pub cache_dir: Option<PathBuf>,
}

impl Runtime {
    /// Creates the engine (async, epoch interruption, Cranelift optimising
    /// for speed, parallel compilation), the WASI linkers and the ticker
    /// thread that advances the epoch every 10 ms.
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
        let mut config = Config::new();
        // Async support is implied by using the `*_async` APIs in wasmtime 48
        // (`Config::async_support` is deprecated and has no effect).
        config
            .epoch_interruption(true)
            .cranelift_opt_level(OptLevel::Speed)
            .parallel_compilation(true)
            .wasm_component_model(true);
        let engine = Engine::new(&config).map_err(|e| RuntimeError::Engine(describe(&e)))?;

        let mut module_linker = Linker::new(&engine);
        wasmtime_wasi::p1::add_to_linker_async(&mut module_linker, |state: &mut ModuleState| {
            &mut state.wasi
        })
        .map_err(|e| RuntimeError::Engine(describe(&e)))?;

        // One component linker serves both commands and HTTP proxies: all of
        // WASI 0.2 plus wasi:http, so a command may make outbound requests too.
        let mut component_linker = ComponentLinker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut component_linker)
            .map_err(|e| RuntimeError::Engine(describe(&e)))?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut component_linker)
            .map_err(|e| RuntimeError::Engine(describe(&e)))?;

        let disk_cache = match runtime_config.cache_dir {
            Some(dir) => Some(DiskCache::open(dir, &engine)?),
            None => None,
        };
        let ticker = Ticker::start(engine.clone())?;
        Ok(Self {
            inner: Arc::new(Shared {
                engine,
                module_linker,
                component_linker,
                disk_cache,
                memory_cache: MemoryCache::default(),
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
    ///   it also exports `wasi:cli/run`);
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
        let compiled = self.link(compile(&self.inner.engine, wasm)?)?;
        Ok(Workload::new(self.inner.clone(), compiled))
    }

    /// Like [`Runtime::load`], but reuses compiled code: `key` names the
    /// wasm (the caller's image digest). A key loaded before by this runtime
    /// is returned at once ([`CacheOutcome::FromMemory`]); otherwise, with a
    /// cache directory, a valid entry for the key and this engine's
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
        if let Some(compiled) = self.inner.memory_cache.get(key) {
            return Ok((
                Workload::new(self.inner.clone(), compiled),
                CacheOutcome::FromMemory,
            ));
        }
        let engine = &self.inner.engine;
        let (code, outcome) = match self
            .inner
            .disk_cache
            .as_ref()
            .and_then(|d| d.get(engine, key))
        {
            Some(code) => (code, CacheOutcome::FromDisk),
            None => {
                let code = compile(engine, wasm)?;
                if let Some(disk) = &self.inner.disk_cache {
                    disk.put(key, &code);
                }
                (code, CacheOutcome::Compiled)
            }
        };
        let compiled = self.link(code)?;
        self.inner.memory_cache.insert(key, compiled.clone());
        Ok((Workload::new(self.inner.clone(), compiled), outcome))
    }

    fn link(&self, code: Code) -> Result<Compiled, RuntimeError> {
        match code {
            Code::Module(module) => self.link_module(&module),
            Code::Component(component) => self.link_component(&component),
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

    fn link_component(&self, component: &Component) -> Result<Compiled, RuntimeError> {
        let engine = &self.inner.engine;
        let exports: Vec<String> = component
            .component_type()
            .exports(engine)
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

        let pre = self
            .inner
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
}

/// Compiled code not yet linked.
pub(crate) enum Code {
    Module(Module),
    Component(Component),
}

/// Compiles wasm (or WAT) for `engine`.
fn compile(engine: &Engine, wasm: &[u8]) -> Result<Code, RuntimeError> {
    let binary = to_binary(wasm)?;
    let invalid = |e: wasmtime::Error| RuntimeError::InvalidWasm(describe(&e));
    Ok(match binary_layer(&binary)? {
        Layer::Module => Code::Module(Module::from_binary(engine, &binary).map_err(invalid)?),
        Layer::Component => {
            Code::Component(Component::from_binary(engine, &binary).map_err(invalid)?)
        }
    })
}

/// Which layer of the WebAssembly binary format some bytes are.
#[derive(Debug, PartialEq, Eq)]
enum Layer {
    Module,
    Component,
}

const WASM_MAGIC: &[u8; 4] = b"\0asm";

/// Returns the bytes as a wasm binary, translating WebAssembly text.
fn to_binary(wasm: &[u8]) -> Result<std::borrow::Cow<'_, [u8]>, RuntimeError> {
    if wasm.starts_with(WASM_MAGIC) {
        return Ok(wasm.into());
    }
    if wasm.is_empty() {
        return Err(RuntimeError::InvalidWasm("empty input".to_owned()));
    }
    if std::str::from_utf8(wasm).is_err() {
        return Err(RuntimeError::InvalidWasm(
            "not a WebAssembly binary (no \\0asm magic) nor WebAssembly text".to_owned(),
        ));
    }
    wat::parse_bytes(wasm).map_err(|e| {
        RuntimeError::InvalidWasm(format!(
            "not a WebAssembly binary (no \\0asm magic) and not valid WebAssembly text: {e}"
        ))
    })
}

/// Reads the binary header: magic, then a 16-bit version and a 16-bit layer
/// (0 for core modules, 1 for components).
fn binary_layer(binary: &[u8]) -> Result<Layer, RuntimeError> {
    let header = binary.get(..8).ok_or_else(|| {
        RuntimeError::InvalidWasm("truncated WebAssembly header (fewer than 8 bytes)".to_owned())
    })?;
    match [header[6], header[7]] {
        [0, 0] => Ok(Layer::Module),
        [1, 0] => Ok(Layer::Component),
        layer => Err(RuntimeError::InvalidWasm(format!(
            "unknown WebAssembly binary layer {}",
            u16::from_le_bytes(layer)
        ))),
    }
}

/// A thread that advances the engine's epoch every [`EPOCH_TICK`]; it exits
/// (and is joined) when the `Ticker` is dropped.
struct Ticker {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Ticker {
    fn start(engine: Engine) -> Result<Self, RuntimeError> {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("herd-wasm-epoch".to_owned())
            .spawn(move || {
                // Nothing is ever sent: the channel disconnecting is the signal.
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(EPOCH_TICK) {
                    engine.increment_epoch();
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

    #[test]
    fn header_layers() {
        let module = wat::parse_str("(module)").expect("valid wat");
        let component = wat::parse_str("(component)").expect("valid wat");
        assert_eq!(binary_layer(&module).ok(), Some(Layer::Module));
        assert_eq!(binary_layer(&component).ok(), Some(Layer::Component));
        assert!(matches!(
            binary_layer(b"\0asm\x01\0"),
            Err(RuntimeError::InvalidWasm(_))
        ));
        assert!(matches!(
            binary_layer(b"\0asm\x01\0\x07\0"),
            Err(RuntimeError::InvalidWasm(_))
        ));
    }

    #[test]
    fn text_is_translated_and_junk_rejected() {
        assert!(to_binary(b"(module)").is_ok_and(|b| b.starts_with(WASM_MAGIC)));
        for junk in [&b""[..], b"\xff\xfe\x00garbage", b"hello world"] {
            assert!(
                matches!(to_binary(junk), Err(RuntimeError::InvalidWasm(_))),
                "{junk:?}"
            );
        }
    }

    #[test]
    fn ticker_thread_exits_with_the_last_clone() {
        let runtime = Runtime::new().expect("runtime");
        let workload = runtime
            .load(b"(module (func (export \"_start\")))")
            .expect("load");
        let engine = runtime.inner.engine.weak();
        let clone = runtime.clone();
        drop(runtime);
        drop(clone);
        // A loaded workload keeps the engine and its ticker alive.
        assert!(engine.upgrade().is_some());
        drop(workload);
        // The ticker thread held a strong reference to the engine until it
        // was joined; nothing references it any more.
        assert!(engine.upgrade().is_none());
    }
}
