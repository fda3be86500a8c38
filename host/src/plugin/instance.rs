//! A plugin's instances: made from its pre-instantiated component, initialised once, and pooled per
//! worker thread. A hook holds an instance only while it runs (microseconds), so a pool of at most
//! [`PER_WORKER`] instances per worker thread serves every row in flight on that thread; a call
//! that finds all of them busy (guests that yield because they spin, or block in WASI) waits for
//! one. An instance goes back to the pool it came from, so its store, memory and stack stay in
//! that core's caches; one whose guest trapped, ran out of time or memory is dropped, and the next
//! call gets a fresh one.

use std::future::Future;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;
use wasmtime::Store;
use wasmtime::component::{Component, Linker};

use super::bindings::{Auth, AuthPre, Middleware, MiddlewarePre, WitHooks};
use super::budget::{self, describe_failure, stuck, watchdog};
use super::component::World;
use super::sandbox::{PluginInfo, PluginState};

/// The most instances of one plugin a worker thread keeps (and has alive at once).
pub(super) const PER_WORKER: usize = 4;

/// A contract world as the host instantiates it.
pub(super) trait Contract: Send + Sync + 'static {
    const WORLD: World;
    /// The most instances a worker thread's pool holds.
    const POOL: usize = PER_WORKER;
    type Pre: Send + Sync;
    type Guest: Send + Sync;
    /// What `init` answers.
    type Init: Send;

    fn pre(linker: &Linker<PluginState>, component: &Component) -> wasmtime::Result<Self::Pre>;

    fn instantiate(
        pre: &Self::Pre,
        store: &mut Store<PluginState>,
    ) -> impl Future<Output = wasmtime::Result<Self::Guest>> + Send;

    fn init(
        guest: &Self::Guest,
        store: &mut Store<PluginState>,
    ) -> impl Future<Output = wasmtime::Result<Result<Self::Init, String>>> + Send;
}

/// The `middleware` world.
pub(super) struct MiddlewareWorld;

impl Contract for MiddlewareWorld {
    const WORLD: World = World::Middleware;
    type Pre = MiddlewarePre<PluginState>;
    type Guest = Middleware;
    type Init = WitHooks;

    fn pre(linker: &Linker<PluginState>, component: &Component) -> wasmtime::Result<Self::Pre> {
        MiddlewarePre::new(linker.instantiate_pre(component)?)
    }

    async fn instantiate(
        pre: &Self::Pre,
        store: &mut Store<PluginState>,
    ) -> wasmtime::Result<Self::Guest> {
        pre.instantiate_async(store).await
    }

    async fn init(
        guest: &Self::Guest,
        store: &mut Store<PluginState>,
    ) -> wasmtime::Result<Result<WitHooks, String>> {
        guest.sparkwasm_plugin_handler().call_init(store).await
    }
}

/// The `auth` world.
pub(super) struct AuthWorld;

impl Contract for AuthWorld {
    const WORLD: World = World::Auth;
    type Pre = AuthPre<PluginState>;
    type Guest = Auth;
    type Init = ();

    fn pre(linker: &Linker<PluginState>, component: &Component) -> wasmtime::Result<Self::Pre> {
        AuthPre::new(linker.instantiate_pre(component)?)
    }

    async fn instantiate(
        pre: &Self::Pre,
        store: &mut Store<PluginState>,
    ) -> wasmtime::Result<Self::Guest> {
        pre.instantiate_async(store).await
    }

    async fn init(
        guest: &Self::Guest,
        store: &mut Store<PluginState>,
    ) -> wasmtime::Result<Result<(), String>> {
        guest
            .sparkwasm_plugin_authenticator()
            .call_init(store)
            .await
    }
}

/// One instance: its store and the guest's exports.
pub(super) struct Instance<C: Contract> {
    pub store: Store<PluginState>,
    pub guest: C::Guest,
}

/// One worker thread's pool of a plugin.
struct Shard<C: Contract> {
    pool: Mutex<Pool<C>>,
    /// Wakes a call waiting for an instance when one is given back.
    returned: Notify,
}

struct Pool<C: Contract> {
    idle: Vec<Instance<C>>,
    /// Instances lent to calls now.
    lent: usize,
    /// Calls waiting for an instance.
    waiting: usize,
}

/// A loaded plugin: what its instances share, its component, its pools.
pub(super) struct WasmPlugin<C: Contract> {
    pub info: Arc<PluginInfo>,
    engine: wasmtime::Engine,
    pre: C::Pre,
    shards: Box<[Shard<C>]>,
}

/// An instance lent to one call; [`Lease::give_back`] returns it to its pool, dropping the lease
/// discards it (its guest trapped, or it could not be made) and frees its place.
pub(super) struct Lease<'a, C: Contract> {
    pub instance: Option<Instance<C>>,
    shard: &'a Shard<C>,
    /// Given back: its place is freed already.
    returned: bool,
}

impl<C: Contract> Lease<'_, C> {
    pub(crate) fn instance(&mut self) -> &mut Instance<C> {
        self.instance
            .as_mut()
            .expect("a lease holds its instance until it ends")
    }

    pub(crate) fn give_back(mut self) {
        let instance = self.instance.take();
        self.end(instance);
        self.returned = true;
    }

    /// Ends the lease: `instance` back to the pool (or none: it was discarded), a waiter woken.
    fn end(&self, instance: Option<Instance<C>>) {
        let mut pool = self.shard.pool.lock().expect("pool lock");
        pool.idle.extend(instance);
        pool.lent -= 1;
        let wake = pool.waiting > 0;
        drop(pool);
        if wake {
            self.shard.returned.notify_one();
        }
    }
}

impl<C: Contract> Drop for Lease<'_, C> {
    fn drop(&mut self) {
        // Also when it never held an instance: one that could not be made frees its place too
        // (else a pool whose instantiations fail fills with places no one holds, and its next
        // call waits for ever).
        if !self.returned {
            self.instance = None;
            self.end(None);
        }
    }
}

impl<C: Contract> WasmPlugin<C> {
    /// The plugin, with one pool per worker thread of the run (`shards`, as the transport's
    /// connection pools: [`crate::worker::pool_index`]).
    pub(crate) fn new(
        info: Arc<PluginInfo>,
        engine: wasmtime::Engine,
        pre: C::Pre,
        shards: usize,
    ) -> Self {
        WasmPlugin {
            info,
            engine,
            pre,
            shards: (0..shards.max(1))
                .map(|_| Shard {
                    pool: Mutex::new(Pool {
                        idle: Vec::new(),
                        lent: 0,
                        waiting: 0,
                    }),
                    returned: Notify::new(),
                })
                .collect(),
        }
    }

    /// The plugin's pre-instantiated component.
    pub(crate) fn pre(&self) -> &C::Pre {
        &self.pre
    }

    /// A store for a new instance: the sandbox's data, the memory cap, the budget's callback.
    pub(crate) fn store(&self) -> Store<PluginState> {
        let info = &self.info;
        let mut store = Store::new(&self.engine, PluginState::new(info));
        store.limiter(|s| &mut s.memory);
        // What the host allocates for one guest-to-host call's arguments, at most.
        store.set_hostcall_fuel((info.limits.memory_mb as usize) << 20);
        budget::install(&mut store, info);
        store
    }

    /// A fresh instance, initialised (its `init` export run once), and what `init` answered.
    pub(crate) async fn instantiate(&self) -> Result<(Instance<C>, C::Init), String> {
        let info = &self.info;
        let mut store = self.store();
        budget::arm(&mut store);
        let bound = watchdog(store.data());
        let guest = match bound.run(C::instantiate(&self.pre, &mut store)).await {
            None => return Err(stuck(info, "instantiation")),
            Some(Ok(guest)) => guest,
            Some(Err(e)) if e.downcast_ref::<wasmtime::Trap>().is_some() => {
                return Err(describe_failure(&e, store.data(), "instantiation"));
            }
            // Not the guest's doing: the engine could not make the instance.
            Some(Err(e)) => return Err(format!("cannot create an instance: {e:#}")),
        };
        budget::arm(&mut store);
        let bound = watchdog(store.data());
        match bound.run(C::init(&guest, &mut store)).await {
            None => Err(stuck(info, "init")),
            Some(Ok(Ok(init))) => Ok((Instance { store, guest }, init)),
            Some(Ok(Err(message))) => Err(format!("init refused: {message}")),
            Some(Err(e)) => Err(describe_failure(&e, store.data(), "init")),
        }
    }

    /// An instance of this worker's pool for one call: an idle one, else a new one while the pool
    /// has room, else the first one given back.
    pub(crate) async fn lease(&self) -> Result<Lease<'_, C>, String> {
        let shard = &self.shards[crate::worker::pool_index(self.shards.len())];
        loop {
            let returned = shard.returned.notified();
            let idle = {
                let mut pool = shard.pool.lock().expect("pool lock");
                if pool.lent < C::POOL {
                    pool.lent += 1;
                    Some(pool.idle.pop())
                } else {
                    pool.waiting += 1;
                    None
                }
            };
            let Some(idle) = idle else {
                // Every instance of this worker is in a call (guests that yield or block): wait
                // for one to come back.
                returned.await;
                shard.pool.lock().expect("pool lock").waiting -= 1;
                continue;
            };
            let mut lease = Lease {
                instance: None,
                shard,
                returned: false,
            };
            lease.instance = Some(match idle {
                Some(instance) => instance,
                // Rare (a new instance): boxed, so that its large future does not widen every
                // call's. On failure the lease's drop frees its place.
                None => Box::pin(self.instantiate()).await?.0,
            });
            return Ok(lease);
        }
    }

    /// Puts an instance made at load time in the pool of shard 0.
    pub(crate) fn keep(&self, instance: Instance<C>) {
        self.shards[0]
            .pool
            .lock()
            .expect("pool lock")
            .idle
            .push(instance);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::api::{ApiRequest, ApiResponse, ErrorKind, RequestError};

    /// An auth plugin's way out, unused here.
    struct NoNetwork;

    impl crate::api::Sender for NoNetwork {
        fn send(
            &self,
            _: Arc<ApiRequest>,
        ) -> futures::future::BoxFuture<'_, Result<ApiResponse, RequestError>> {
            Box::pin(async { Err(RequestError::of(ErrorKind::Connect, "no network")) })
        }
    }

    #[tokio::test]
    async fn an_instance_that_cannot_be_made_frees_its_place_in_the_pool() {
        // The hostile fixture refuses to start: every lease fails. Each failure must free its
        // place: one that kept it filled the pool after PER_WORKER failures, and the next call
        // waited for ever for an instance no one held.
        let (engine, _cache) = super::super::engine::start(16, 32).unwrap();
        let mut linkers = [(); 3].map(|_| Linker::new(&engine));
        let [middleware, on_stack, auth] = &mut linkers;
        super::super::bindings::link(middleware, on_stack, auth).unwrap();
        let bytes = std::fs::read(concat!(env!("SPARKWASM_PLUGIN_DIR"), "/hostile.wasm")).unwrap();
        let component = Component::new(&engine, bytes).unwrap();
        let pre = MiddlewareWorld::pre(&linkers[0], &component).unwrap();
        let info = Arc::new(PluginInfo {
            name: "hostile".into(),
            config: r#"{"mode": "init-fails"}"#.into(),
            limits: Default::default(),
            env: Vec::new(),
            wall_clock: false,
            process: "test".into(),
            redactor: Default::default(),
            egress: crate::chain::Egress {
                hosts: Vec::new(),
                forward_credentials: false,
            },
            sender: Arc::new(NoNetwork),
        });
        let plugin = WasmPlugin::<MiddlewareWorld>::new(info, engine, pre, 1);
        for attempt in 0..PER_WORKER * 3 {
            let lease = tokio::time::timeout(Duration::from_secs(30), plugin.lease())
                .await
                .unwrap_or_else(|_| panic!("lease {attempt} waited for a place no one holds"));
            assert!(lease.is_err_and(|e| e.contains("refuses to start")));
        }
    }
}
