//! Running a WASI p1 module or a WASI p2 command once, and turning how it
//! ended into an [`Exit`].

use wasmtime::{InstancePre, Store, Trap, WasmBacktrace};
use wasmtime_wasi::I32Exit;
use wasmtime_wasi::p2::bindings::CommandPre;

use crate::error::{RuntimeError, describe};
use crate::limits::{HasLimiter, limited_store};
use crate::state::{ComponentState, GuestEnv, ModuleState};
use crate::workload::Exit;

/// Instantiates the module and calls `_start`.
pub(crate) async fn run_module(
    pre: &InstancePre<ModuleState>,
    env: &GuestEnv,
) -> Result<Exit, RuntimeError> {
    let mut store = limited_store(
        pre.module().engine(),
        ModuleState::new(env)?,
        env.cpu.as_ref(),
    );
    let instance = match pre.instantiate_async(&mut store).await {
        Ok(instance) => instance,
        Err(e) => return instantiate_failure(&mut store, e),
    };
    // `load` checked that `_start` exists with this type.
    let start = instance
        .get_typed_func::<(), ()>(&mut store, "_start")
        .map_err(|e| RuntimeError::Instantiate(describe(&e)))?;
    Ok(match start.call_async(&mut store, ()).await {
        Ok(()) => Exit::Exited(0),
        Err(e) => exit_from_error(&mut store, &e),
    })
}

/// Instantiates the component and calls `wasi:cli/run#run`.
pub(crate) async fn run_command(
    pre: &CommandPre<ComponentState>,
    env: &GuestEnv,
) -> Result<Exit, RuntimeError> {
    let mut store = limited_store(pre.engine(), ComponentState::new(env)?, env.cpu.as_ref());
    let command = match pre.instantiate_async(&mut store).await {
        Ok(command) => command,
        Err(e) => return instantiate_failure(&mut store, e),
    };
    Ok(match command.wasi_cli_run().call_run(&mut store).await {
        Ok(Ok(())) => Exit::Exited(0),
        Ok(Err(())) => Exit::Exited(1),
        Err(e) => exit_from_error(&mut store, &e),
    })
}

/// A failed instantiation is an exit when the guest's start code exited or
/// trapped or its memory exceeded the limit, and a host error otherwise.
fn instantiate_failure<T: HasLimiter>(
    store: &mut Store<T>,
    e: wasmtime::Error,
) -> Result<Exit, RuntimeError> {
    if e.downcast_ref::<I32Exit>().is_some()
        || e.downcast_ref::<Trap>().is_some()
        || store.data_mut().limiter().refused().is_some()
    {
        Ok(exit_from_error(store, &e))
    } else {
        Err(RuntimeError::Instantiate(describe(&e)))
    }
}

/// The memory limiter refusing a growth is an out-of-memory kill;
/// `proc_exit`/`wasi:cli/exit` surface as an [`I32Exit`] error; anything
/// else that aborted the guest (a trap, a failing host call) is a trap.
pub(crate) fn exit_from_error<T: HasLimiter>(store: &mut Store<T>, e: &wasmtime::Error) -> Exit {
    if let Some(message) = store.data_mut().limiter().refused() {
        return Exit::OutOfMemory(message.to_owned());
    }
    match e.downcast_ref::<I32Exit>() {
        Some(I32Exit(status)) => Exit::Exited(*status),
        None => {
            tracing::debug!(error = ?e, "guest trapped");
            Exit::Trapped(trap_message(e))
        }
    }
}

/// The trap first (what a pod status should show), then the wasm backtrace.
fn trap_message(e: &wasmtime::Error) -> String {
    match (e.downcast_ref::<Trap>(), e.downcast_ref::<WasmBacktrace>()) {
        (Some(trap), Some(backtrace)) => format!("{trap}\n{backtrace}"),
        (Some(trap), None) => trap.to_string(),
        (None, _) => describe(e),
    }
}
