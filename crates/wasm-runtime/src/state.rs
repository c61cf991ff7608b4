//! Per-store host state and the WASI context every guest gets.

use std::path::PathBuf;
use std::sync::Arc;

use wasmtime::component::ResourceTable;
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::error::{RuntimeError, describe};
use crate::limits::{CpuThrottle, HasLimiter, Limits, MemoryLimiter};
use crate::network::{NetworkPolicy, PolicyHooks};
use crate::sinks::GuestOutput;
use crate::sockets::Ipv6Views;
use crate::workload::RunSpec;

/// A host directory the guest sees as a WASI preopened directory; the guest
/// can reach no file outside its preopens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preopen {
    /// The directory on the host.
    pub host: PathBuf,
    /// Where the guest sees it, e.g. `/data`.
    pub guest: String,
    /// Files and directories under it cannot be created, written or removed.
    pub read_only: bool,
}

/// What a guest sees of its environment: argv, env, output streams,
/// preopens, network policy, limits. Cheap to clone (the streams are
/// shared), so an HTTP proxy can give each request's store the same ones.
#[derive(Clone)]
pub(crate) struct GuestEnv {
    argv: Vec<String>,
    env: Vec<(String, String)>,
    stdout: GuestOutput,
    stderr: GuestOutput,
    preopens: Arc<[Preopen]>,
    network: Arc<NetworkPolicy>,
    /// The TLS client of outbound `https` requests (the runtime's).
    outbound_tls: Arc<rustls::ClientConfig>,
    limits: Limits,
    pub(crate) cpu: Option<Arc<CpuThrottle>>,
}

impl GuestEnv {
    /// The environment of a run, whose outbound `https` requests use `outbound_tls`; checks every
    /// preopen can be opened.
    pub(crate) fn new(
        spec: RunSpec,
        outbound_tls: Arc<rustls::ClientConfig>,
    ) -> Result<Self, RuntimeError> {
        let env = Self {
            argv: spec.argv,
            env: spec.env,
            stdout: spec.stdout.into(),
            stderr: spec.stderr.into(),
            preopens: spec.preopens.into(),
            network: Arc::new(spec.network),
            outbound_tls,
            limits: spec.limits,
            cpu: spec.limits.cpu_millis.and_then(CpuThrottle::new),
        };
        env.wasi_builder()?;
        Ok(env)
    }

    /// This environment with the memory limit clamped to `cap` bytes (the
    /// memory slot of a pooled instance).
    pub(crate) fn with_memory_cap(mut self, cap: u64) -> Self {
        self.limits = self.limits.clamp_memory(cap);
        self
    }

    /// A WASI context builder with this environment and network policy.
    pub(crate) fn wasi_builder(&self) -> Result<WasiCtxBuilder, RuntimeError> {
        let mut builder = WasiCtxBuilder::new();
        builder.args(&self.argv).envs(&self.env);
        self.stdout.set_stdout(&mut builder);
        self.stderr.set_stderr(&mut builder);
        builder
            .inherit_network()
            .allow_tcp(true)
            .allow_udp(true)
            .allow_ip_name_lookup(true);
        self.network.apply(&mut builder);
        for preopen in self.preopens.iter() {
            let perms = if preopen.read_only {
                FsPerms::ReadOnly
            } else {
                FsPerms::ReadWrite
            };
            builder
                .preopened_dir(&preopen.host, &preopen.guest, perms)
                .map_err(|e| RuntimeError::Preopen {
                    host: preopen.host.clone(),
                    message: describe(&e),
                })?;
        }
        Ok(builder)
    }
}

/// The `T` of every core module store.
pub(crate) struct ModuleState {
    pub(crate) wasi: WasiP1Ctx,
    pub(crate) limiter: MemoryLimiter,
}

impl ModuleState {
    pub(crate) fn new(env: &GuestEnv) -> Result<Self, RuntimeError> {
        Ok(Self {
            wasi: env.wasi_builder()?.build_p1(),
            limiter: MemoryLimiter::new(&env.limits),
        })
    }
}

impl HasLimiter for ModuleState {
    fn limiter(&mut self) -> &mut MemoryLimiter {
        &mut self.limiter
    }
}

/// The `T` of every component store: WASI 0.2 and wasi:http state.
pub(crate) struct ComponentState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    hooks: PolicyHooks,
    table: ResourceTable,
    /// Sockets the guest sees as IPv6 that are IPv4 underneath (see `sockets`).
    pub(crate) ipv6_views: Ipv6Views,
    pub(crate) limiter: MemoryLimiter,
}

impl ComponentState {
    pub(crate) fn new(env: &GuestEnv) -> Result<Self, RuntimeError> {
        Ok(Self {
            wasi: env.wasi_builder()?.build(),
            http: WasiHttpCtx::new(),
            hooks: PolicyHooks {
                policy: env.network.clone(),
                tls: env.outbound_tls.clone(),
            },
            table: ResourceTable::new(),
            ipv6_views: Ipv6Views::default(),
            limiter: MemoryLimiter::new(&env.limits),
        })
    }

    /// The run's network policy.
    pub(crate) fn network(&self) -> &Arc<NetworkPolicy> {
        &self.hooks.policy
    }
}

impl HasLimiter for ComponentState {
    fn limiter(&mut self) -> &mut MemoryLimiter {
        &mut self.limiter
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
            hooks: &mut self.hooks,
        }
    }
}
