//! The pooling allocator of the HTTP engine: wasi-http proxies get a fresh
//! instance per request, so their instances come from pre-reserved slots
//! (as with `wasmtime serve`) instead of being mapped and unmapped for every
//! request. Modules and commands stay on the on-demand allocator: they live
//! long, may be thousands per node and may be allowed large memories.

use wasmtime::{Config, InstanceAllocationStrategy, PoolingAllocationConfig};

/// Sizes the HTTP engine's instance pool. The pool is shared by every HTTP
/// proxy workload of a [`Runtime`](crate::Runtime); one request in flight
/// holds one component instance (and its core instances, memories, tables
/// and a fiber stack) until it has answered. A request that finds the pool
/// full gets `503 Service Unavailable` from the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpPool {
    /// Component instances (requests in flight across all HTTP proxies),
    /// and also the number of core instances, linear memories, tables and
    /// fiber stacks. A typical wasi-http component instantiates 2–5 core
    /// modules with 1–2 memories, so the default of 1000 serves a few
    /// hundred concurrent requests per node. `0` turns the pool off: HTTP
    /// proxies are then allocated on demand, like modules and commands.
    pub slots: u32,
    /// The largest a linear memory of a request may grow to, in bytes; a
    /// memory slot reserves this much address space (plus a guard). An HTTP
    /// proxy's [`Limits::memory_bytes`](crate::Limits::memory_bytes) above
    /// it is clamped to it.
    pub memory_bytes: u64,
}

/// Guard region after each memory slot: lets Cranelift drop the bounds
/// check of accesses with small static offsets (wasmtime's default guard on
/// 64-bit hosts).
const MEMORY_GUARD_BYTES: u64 = 32 << 20;

impl Default for HttpPool {
    /// 1000 slots of 256 MiB.
    ///
    /// Address-space arithmetic (reserved `PROT_NONE`, not resident): each
    /// memory slot is `memory_reservation` (= `memory_bytes`, 256 MiB) plus
    /// a 32 MiB guard = 288 MiB, so 1000 slots reserve ~281 GiB; tables add
    /// 1000 × 20 000 elements × 8 B ≈ 153 MiB, fiber stacks 1000 × ~2 MiB ≈
    /// 2 GiB and instance metadata 2 × 1000 × 1 MiB = 2 GiB — about 286 GiB
    /// per runtime, ~0.2% of the 128 TiB user address space of x86-64 Linux
    /// (so even dozens of runtimes in one test process fit). wasmtime's
    /// default 4 GiB reservation would need ~4 TiB for the same slots; the
    /// price of the smaller reservation is explicit bounds checks in the
    /// guest's compiled code.
    fn default() -> Self {
        Self {
            slots: 1000,
            memory_bytes: 256 << 20,
        }
    }
}

impl HttpPool {
    /// Sets up `config` to allocate instances from this pool.
    pub(crate) fn apply(&self, config: &mut Config) {
        if self.slots == 0 {
            return;
        }
        let memory_bytes = usize::try_from(self.memory_bytes).unwrap_or(usize::MAX);
        let mut pool = PoolingAllocationConfig::new();
        pool.total_component_instances(self.slots)
            .total_core_instances(self.slots)
            .total_memories(self.slots)
            .total_tables(self.slots)
            .total_stacks(self.slots)
            .max_memory_size(memory_bytes);
        config
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
            // A pooled memory never moves, so its reservation is its slot.
            .memory_reservation(self.memory_bytes)
            .memory_guard_size(MEMORY_GUARD_BYTES);
    }
}
