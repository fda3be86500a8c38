//! Hooks called on the worker's own stack. A call on a fiber (wasmtime's `call_async`: a stack of
//! its own, so the call can pause) can yield and wait, and costs a fiber's set-up and two stack
//! switches: about half of what wasmtime spends on a hook that does little (measured: 0.44-0.61 µs
//! for a passthrough `on-request` called on the stack, 1.02-1.25 µs on a fiber). A middleware hook
//! rarely needs either: so each hook is first called on the stack, on an instance of a second pool
//! whose linker has no waiting import, and is preempted when it would need a fiber: at its
//! [`budget::STACK_TICKS`]th epoch tick (a slow or spinning guest) or when it calls a WASI function
//! that may wait. A preempted call leaves nothing behind: its instance is dropped, the row's
//! response and notes are put back as they were, its log lines are not written; the hook then runs
//! again from its start on a fiber, as every hook did before, where it yields every half tick and
//! may wait within its bounds. For a second after a preemption the plugin's hooks on that worker go
//! to fibers directly, so a plugin that always needs one pays the preemption once a second.
//!
//! Where the parts are: the linker that never waits, `bindings::never_wait`; the tick countdown,
//! `budget::On::Stack`; the copies made before a first edit, `resources` (the response, the notes;
//! an edited request is always a copy, `Arc::make_mut`); the held log lines, `services`; the
//! callers and their fallback, `middleware::*_on_stack`; load and `validate`'s line, `mod.rs`
//! (`OnStack::new`); the worker threads' stack, `execute::WORKER_STACK`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use wasmtime::Store;
use wasmtime::component::{
    Component, ComponentExportIndex, InstancePre, Linker, Resource, TypedFunc,
};

use super::bindings::{MIDDLEWARE_EXPORT, WitAction, WitError, WitHooks, WitOutcome};
use super::budget;
use super::component::World;
use super::instance::{Contract, Instance, Lease, WasmPlugin};
use super::resources::HeldRequest;
use super::sandbox::{PluginInfo, PluginState};
use crate::api::ApiResponse;
use crate::chain::LayerState;

/// How long a worker calls a plugin on fibers only after one of its calls was preempted.
const FIBERS_AFTER_PREEMPTION: Duration = Duration::from_secs(1);

/// The middleware world, called on the stack: its exports as typed functions.
pub(super) struct StackWorld;

/// The component pre-instantiated with the linker that never waits, and where its exports are.
pub(super) struct StackPre {
    pre: InstancePre<PluginState>,
    init: ComponentExportIndex,
    on_request: ComponentExportIndex,
    on_response: ComponentExportIndex,
    on_error: ComponentExportIndex,
}

/// One instance's exports.
pub(super) struct Exports {
    init: TypedFunc<(), (Result<WitHooks, String>,)>,
    pub on_request: TypedFunc<(Resource<HeldRequest>,), (Result<WitAction, WitError>,)>,
    pub on_response: TypedFunc<(Resource<HeldRequest>, Resource<ApiResponse>), (WitOutcome,)>,
    pub on_error: TypedFunc<(Resource<HeldRequest>, WitError), (WitOutcome,)>,
}

impl Contract for StackWorld {
    const WORLD: World = World::Middleware;
    /// Calls on the stack never overlap on a worker: one instance each (a row that finds it being
    /// made waits for it).
    const POOL: usize = 1;
    type Pre = StackPre;
    type Guest = Exports;
    type Init = WitHooks;

    fn pre(linker: &Linker<PluginState>, component: &Component) -> wasmtime::Result<StackPre> {
        let handler = component
            .get_export_index(None, MIDDLEWARE_EXPORT)
            .ok_or_else(|| wasmtime::Error::msg(format!("no export {MIDDLEWARE_EXPORT}")))?;
        let export = |name: &str| {
            component
                .get_export_index(Some(&handler), name)
                .ok_or_else(|| wasmtime::Error::msg(format!("no export {name}")))
        };
        Ok(StackPre {
            pre: linker.instantiate_pre(component)?,
            init: export("init")?,
            on_request: export("on-request")?,
            on_response: export("on-response")?,
            on_error: export("on-error")?,
        })
    }

    /// A new instance for a worker's pool is made on a fiber (it may take a while: it yields).
    async fn instantiate(
        pre: &StackPre,
        store: &mut Store<PluginState>,
    ) -> wasmtime::Result<Exports> {
        let instance = pre.pre.instantiate_async(&mut *store).await?;
        exports(pre, &instance, store)
    }

    async fn init(
        guest: &Exports,
        store: &mut Store<PluginState>,
    ) -> wasmtime::Result<Result<WitHooks, String>> {
        Ok(guest.init.call_async(store, ()).await?.0)
    }
}

fn exports(
    pre: &StackPre,
    instance: &wasmtime::component::Instance,
    store: &mut Store<PluginState>,
) -> wasmtime::Result<Exports> {
    Ok(Exports {
        init: instance.get_typed_func(&mut *store, pre.init)?,
        on_request: instance.get_typed_func(&mut *store, pre.on_request)?,
        on_response: instance.get_typed_func(&mut *store, pre.on_response)?,
        on_error: instance.get_typed_func(&mut *store, pre.on_error)?,
    })
}

/// A middleware's hooks on the stack: the pool of instances and, per worker, until when its calls
/// go to fibers.
pub(super) struct OnStack {
    plugin: WasmPlugin<StackWorld>,
    /// Per worker pool: [`crate::chain::monotonic_ns`] until which the hooks go to fibers; 0 when
    /// never preempted.
    fibers_until: Box<[AtomicU64]>,
}

impl OnStack {
    /// The stack pool of a loaded middleware, with its first instance made and initialised on the
    /// stack; `Err` says why the plugin cannot be called on the stack (an import that may wait, or
    /// an instantiation or `init` that waits), and its hooks then all run on fibers.
    pub(super) fn new(
        info: &std::sync::Arc<PluginInfo>,
        engine: &wasmtime::Engine,
        linker: &Linker<PluginState>,
        component: &Component,
        shards: usize,
    ) -> Result<Self, String> {
        let slice = budget::TICK * budget::STACK_TICKS;
        if u128::from(info.limits.timeout_ms) < slice.as_millis() {
            // A call on the stack is stopped at its slice, not at a shorter deadline.
            return Err(format!(
                "its limits.timeout_ms is below the {} ms a call on the stack may take",
                slice.as_millis()
            ));
        }
        let pre = StackWorld::pre(linker, component).map_err(|e| format!("{e:#}"))?;
        let plugin = WasmPlugin::<StackWorld>::new(info.clone(), engine.clone(), pre, shards);
        let mut store = plugin.store();
        // No preemption while loading (nothing else runs yet): only the deadline.
        budget::arm_to_load(&mut store);
        // Fails at once, before any guest code, if an import needs a fiber.
        let instance = plugin
            .pre()
            .pre
            .instantiate(&mut store)
            .map_err(|e| format!("{e:#}"))?;
        let guest = exports(plugin.pre(), &instance, &mut store).map_err(|e| format!("{e:#}"))?;
        budget::arm_to_load(&mut store);
        match guest.init.call(&mut store, ()) {
            Ok((Ok(_),)) => {}
            Ok((Err(refused),)) => return Err(format!("init refused: {refused}")),
            Err(e) => return Err(format!("{e:#}")),
        }
        plugin.keep(Instance { store, guest });
        Ok(OnStack {
            plugin,
            fibers_until: (0..shards.max(1)).map(|_| AtomicU64::new(0)).collect(),
        })
    }

    /// This worker's "fibers until".
    fn fibers_until_here(&self) -> &AtomicU64 {
        &self.fibers_until[crate::worker::pool_index(self.fibers_until.len())]
    }

    /// An instance for a hook of the row whose layer state is `state`, armed for a call on the
    /// stack; `None` when this worker calls the plugin on fibers now, or no instance could be made
    /// (the fiber path then makes its own, and says why if it cannot).
    pub(super) async fn begin(&self, state: &mut LayerState) -> Option<Lease<'_, StackWorld>> {
        let until = self.fibers_until_here().load(Ordering::Relaxed);
        // 0 (never preempted) needs no clock read.
        if until > 0 && until > crate::chain::monotonic_ns() {
            return None;
        }
        // Gives way once, as `WasmMiddleware::begin` explains. After a preemption the fiber path
        // gives way again: the row goes back to the end of the worker's queue, as a yielding
        // guest does.
        tokio::task::yield_now().await;
        let mut lease = match self.plugin.lease().await {
            Ok(lease) => lease,
            Err(why) => {
                // The fiber path makes its own instance (and says why if it cannot either).
                tracing::debug!(plugin = %self.plugin.info.name, "no instance for the stack: {why}");
                self.to_fibers();
                return None;
            }
        };
        let store = &mut lease.instance().store;
        let data = store.data_mut();
        data.begin_call(std::mem::take(state), crate::worker::slot());
        data.call.on_stack = true;
        budget::arm_on_stack(store);
        Some(lease)
    }

    /// After a call: whether it was preempted. If so the row is put back as it was before it:
    /// its layer state (`state`) and the `response` lent to the call (from its copy made before
    /// the first edit, else as lent); the caller drops the lease, and with it the instance; this
    /// worker's calls go to fibers for a while. (The request needs nothing: an edited one is a
    /// copy, dropped with the instance.)
    pub(super) fn undo_if_preempted(
        &self,
        lease: &mut Lease<'_, StackWorld>,
        state: &mut LayerState,
        response: Option<&mut ApiResponse>,
    ) -> bool {
        let data = lease.instance().store.data_mut();
        if !data.budget.preempted {
            return false;
        }
        *state = data.end_call();
        if let Some(before) = data.call.scratch_before.take() {
            state.scratch = before;
        }
        if let Some(response) = response {
            let before = data.call.response_before.take();
            if let Some(lent) = before.or_else(|| data.call.response.take()) {
                *response = lent;
            }
        }
        self.to_fibers();
        // The caller drops the lease, and with it the instance: its guest stopped mid-call.
        true
    }

    /// This worker calls the plugin on fibers for a while.
    fn to_fibers(&self) {
        let until = crate::chain::monotonic_ns() + FIBERS_AFTER_PREEMPTION.as_nanos() as u64;
        self.fibers_until_here().store(until, Ordering::Relaxed);
    }
}
