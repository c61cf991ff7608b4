//! Resource limits enforced inside the sandbox: a per-store memory limiter
//! that remembers when it refused, and epoch-based CPU time slicing.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use wasmtime::{Engine, ResourceLimiter, Store, UpdateDeadline};

use crate::runtime::EPOCH_TICK;

/// Resource limits of one run (the container's `resources.limits`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// Cap on every linear memory of the guest, in bytes. Tables are capped
    /// at one element per 8 bytes of it. Growing past it traps and the run
    /// ends [`Exit::OutOfMemory`](crate::Exit::OutOfMemory).
    ///
    /// For an HTTP proxy the cap is at most the memory slot of the runtime's
    /// instance pool ([`HttpPool::memory_bytes`](crate::HttpPool::memory_bytes),
    /// 256 MiB by default): a larger value, or none, is clamped to the slot,
    /// so a request growing past the slot also ends the run
    /// [`Exit::OutOfMemory`](crate::Exit::OutOfMemory).
    pub memory_bytes: Option<u64>,
    /// CPU share in Kubernetes millicores (1000 = one core). The guest runs
    /// at most `cpu_millis / 1000` of each period and waits otherwise.
    pub cpu_millis: Option<u64>,
}

impl Limits {
    /// These limits with the memory cap lowered to at most `cap` bytes.
    pub(crate) fn clamp_memory(self, cap: u64) -> Self {
        Self {
            memory_bytes: Some(self.memory_bytes.map_or(cap, |bytes| bytes.min(cap))),
            ..self
        }
    }
}

/// Bytes of memory limit per table element allowed.
const BYTES_PER_TABLE_ELEMENT: u64 = 8;

/// A [`ResourceLimiter`] for one store that records the growth it refused,
/// so a trap can be told apart as an out-of-memory kill without string
/// matching.
#[derive(Debug, Default)]
pub(crate) struct MemoryLimiter {
    memory_bytes: Option<usize>,
    table_elements: Option<usize>,
    refused: Option<String>,
}

impl MemoryLimiter {
    pub(crate) fn new(limits: &Limits) -> Self {
        let memory_bytes = limits
            .memory_bytes
            .map(|bytes| usize::try_from(bytes).unwrap_or(usize::MAX));
        let table_elements = limits
            .memory_bytes
            .map(|bytes| usize::try_from(bytes / BYTES_PER_TABLE_ELEMENT).unwrap_or(usize::MAX));
        Self {
            memory_bytes,
            table_elements,
            refused: None,
        }
    }

    /// Why the limiter refused a growth, if it did.
    pub(crate) fn refused(&self) -> Option<&str> {
        self.refused.as_deref()
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        match self.memory_bytes {
            Some(limit) if desired > limit => {
                let message = format!(
                    "memory limit exceeded: the guest asked for {desired} bytes of linear memory, \
                     the limit is {limit} bytes"
                );
                self.refused = Some(message.clone());
                Err(wasmtime::Error::msg(message))
            }
            _ => Ok(true),
        }
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        match self.table_elements {
            Some(limit) if desired > limit => {
                let message = format!(
                    "memory limit exceeded: the guest asked for a table of {desired} elements, \
                     the limit is {limit} elements"
                );
                self.refused = Some(message.clone());
                Err(wasmtime::Error::msg(message))
            }
            _ => Ok(true),
        }
    }
}

/// Store data that carries a [`MemoryLimiter`].
pub(crate) trait HasLimiter: 'static {
    fn limiter(&mut self) -> &mut MemoryLimiter;
}

/// Ticks per time-slicing period when the limit is at least 100m.
const PERIOD_TICKS: u64 = 10;

/// Shares a CPU budget among every store of one run (all the request
/// instances of an HTTP proxy draw on the same budget).
///
/// Each epoch tick a guest runs counts against the current period; once the
/// period's budget is used up the guest yields until the period ends.
#[derive(Debug)]
pub(crate) struct CpuThrottle {
    period: Duration,
    ticks_per_period: u64,
    current: Mutex<Period>,
}

#[derive(Debug)]
struct Period {
    start: Instant,
    used: u64,
}

impl CpuThrottle {
    /// `None` when the limit does not restrict a single-threaded guest.
    pub(crate) fn new(cpu_millis: u64) -> Option<Arc<Self>> {
        if cpu_millis >= 1000 {
            return None;
        }
        let cpu_millis = cpu_millis.max(1);
        let (period_ticks, ticks_per_period) = match cpu_millis * PERIOD_TICKS / 1000 {
            // Under 100m: one tick per longer period.
            0 => (1000_u64.div_ceil(cpu_millis), 1),
            ticks => (PERIOD_TICKS, ticks),
        };
        let period = EPOCH_TICK * u32::try_from(period_ticks).unwrap_or(u32::MAX);
        Some(Arc::new(Self {
            period,
            ticks_per_period,
            current: Mutex::new(Period {
                start: Instant::now(),
                used: 0,
            }),
        }))
    }

    /// Accounts one tick of running and decides whether the guest may go on
    /// or must wait for the next period.
    fn on_tick(&self) -> UpdateDeadline {
        let now = Instant::now();
        let mut period = match self.current.lock() {
            Ok(period) => period,
            Err(poisoned) => poisoned.into_inner(),
        };
        if now.duration_since(period.start) >= self.period {
            period.start = now;
            period.used = 0;
        }
        period.used += 1;
        if period.used >= self.ticks_per_period {
            let wake = period.start + self.period;
            UpdateDeadline::YieldCustom(
                1,
                Box::pin(tokio::time::sleep_until(tokio::time::Instant::from_std(
                    wake,
                ))),
            )
        } else {
            UpdateDeadline::Yield(1)
        }
    }
}

/// A store with the memory limiter installed whose guest yields to the
/// executor on every epoch tick (so it can always be stopped by dropping the
/// future that drives it) and, with a CPU limit, sleeps out the rest of each
/// period once its share is used.
pub(crate) fn limited_store<T: HasLimiter>(
    engine: &Engine,
    data: T,
    cpu: Option<&Arc<CpuThrottle>>,
) -> Store<T> {
    let mut store = Store::new(engine, data);
    store.limiter(|data| data.limiter());
    store.set_epoch_deadline(1);
    match cpu {
        None => store.epoch_deadline_async_yield_and_update(1),
        Some(throttle) => {
            let throttle = throttle.clone();
            store.epoch_deadline_callback(move |_| Ok(throttle.on_tick()));
        }
    }
    store
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limiter_records_refusal_only_over_the_limit() {
        let mut limiter = MemoryLimiter::new(&Limits {
            memory_bytes: Some(65536),
            cpu_millis: None,
        });
        assert!(limiter.memory_growing(0, 65536, None).is_ok_and(|ok| ok));
        assert!(limiter.refused().is_none());
        assert!(limiter.memory_growing(65536, 131072, None).is_err());
        assert!(limiter.refused().is_some_and(|m| m.contains("131072")));

        let mut unlimited = MemoryLimiter::new(&Limits::default());
        assert!(
            unlimited
                .memory_growing(0, usize::MAX, None)
                .is_ok_and(|ok| ok)
        );
        assert!(
            unlimited
                .table_growing(0, usize::MAX, None)
                .is_ok_and(|ok| ok)
        );
        assert!(unlimited.refused().is_none());
    }

    #[test]
    fn clamping_lowers_or_sets_the_memory_cap() {
        let limits = |memory_bytes| Limits {
            memory_bytes,
            cpu_millis: Some(5),
        };
        assert_eq!(limits(None).clamp_memory(100), limits(Some(100)));
        assert_eq!(limits(Some(500)).clamp_memory(100), limits(Some(100)));
        assert_eq!(limits(Some(50)).clamp_memory(100), limits(Some(50)));
    }

    #[test]
    fn throttle_periods() {
        assert!(CpuThrottle::new(1000).is_none());
        let t = CpuThrottle::new(250).expect("throttle");
        assert_eq!((t.period, t.ticks_per_period), (EPOCH_TICK * 10, 2));
        let t = CpuThrottle::new(50).expect("throttle");
        assert_eq!((t.period, t.ticks_per_period), (EPOCH_TICK * 20, 1));
        let t = CpuThrottle::new(0).expect("throttle");
        assert_eq!(t.ticks_per_period, 1);
    }
}
