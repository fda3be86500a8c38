//! The WASM plugin host: middleware components of the `sparkwasm:plugin/middleware` world (wit/).
//!
//! One [`Engine`] per run: component model, the pooling allocator, epoch interruption (a ticker thread
//! advances the epoch every [`TICK`]) and wasmtime's on-disk compile cache, so a second run does not
//! recompile. Each plugin is compiled once into an `InstancePre`; instances are made on demand, one per
//! concurrently running row, and reused for later rows (never one per row). A trapped instance is
//! dropped, the next row gets a fresh one.
//!
//! Sandbox, per instance: a linear-memory cap, a deadline on the time spent running guest code (time
//! waiting in `next` or `sleep` does not count), and a WASI context with nothing in it: no preopened
//! directories, no sockets, no environment, a wall clock frozen at the epoch, no stdin; stdout and
//! stderr go to the log. `grants` add the environment variables and the wall clock a plugin may see.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use sha2::{Digest, Sha256};
use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{Engine, Store, UpdateDeadline};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::{Middleware, Next, builtin};
use crate::auth::{Authenticator, Fresh};
use crate::config::{Auth, MiddlewareSpec, Pipeline, PluginLimits, PluginSource};
use crate::executor::Redactor;
use crate::request::{ApiRequest, ApiResponse, ErrorKind, RequestError};
use crate::transport::HttpTransport;

/// Host imports are plain calls on the guest's fiber, except the ones that wait (`next`, `sleep`,
/// `fetch`): those are async and let other rows run meanwhile.
mod bindings {
    wasmtime::component::bindgen!({
        world: "middleware",
        path: "../wit",
        imports: {
            "sparkwasm:plugin/chain.next": async,
            "sparkwasm:plugin/host.sleep": async,
        },
        exports: { default: async },
    });
}

/// The `auth` world, sharing the middleware world's `types` and `host` (one implementation serves both).
mod auth_bindings {
    wasmtime::component::bindgen!({
        world: "auth",
        path: "../wit",
        imports: {
            "sparkwasm:plugin/outbound.fetch": async,
        },
        exports: { default: async },
        with: {
            "sparkwasm:plugin/types": super::bindings::sparkwasm::plugin::types,
            "sparkwasm:plugin/host": super::bindings::sparkwasm::plugin::host,
        },
    });
}

use auth_bindings::exports::sparkwasm::plugin::authenticator;
use auth_bindings::sparkwasm::plugin::outbound;
use bindings::sparkwasm::plugin::{chain, host, types};

mod v2;

/// How often the epoch advances: the granularity of the CPU deadline, and how long a busy guest runs
/// before it yields its thread to other rows.
const TICK: Duration = Duration::from_millis(2);

/// Most elements of one table (the pool reserves this much for each).
const TABLE_ELEMENTS: usize = 100_000;

/// The longest one `sleep` may wait, and the most `next` calls one `handle` may make.
const MAX_SLEEP: Duration = Duration::from_secs(60);
const MAX_NEXT_CALLS: u32 = 100;

/// Most entries a plugin may hold in its resource table (WASI streams, pollables).
const MAX_RESOURCES: usize = 1024;

/// A plugin that could not be loaded: the run stops before its first request.
#[derive(Debug, thiserror::Error)]
#[error("{path}: plugin `{name}`: {message}")]
pub struct PluginError {
    pub path: String,
    pub name: String,
    pub message: String,
}

/// Which worker runs the current row (set by the executor around each row).
pub type WorkerSlot = (u32, u32);

tokio::task_local! {
    /// The (partition, consumer) running the current task's rows; plugins ask with `whoami`.
    pub static WORKER: WorkerSlot;
}

/// The plugins of a run, loaded.
pub struct Plugins {
    pub chain: super::Chain,
    /// A custom auth strategy (`auth: {type: wasm}`).
    pub auth: Option<WasmAuth>,
}

/// Loads a pipeline's plugins: every one verified, compiled (or taken from the compile cache), checked
/// against its WIT world and initialised once, before any row is read. An auth plugin's outbound
/// fetches go through `transport`; whatever plugins log passes through `redactor`.
pub async fn load(
    pipeline: &Pipeline,
    concurrency: usize,
    transport: &Arc<HttpTransport>,
    redactor: &Arc<Redactor>,
) -> Result<Plugins, PluginError> {
    let auth_spec = match &pipeline.auth {
        Auth::Wasm { plugin, .. } => Some(plugin),
        _ => None,
    };
    let specs: Vec<&MiddlewareSpec> = pipeline.middleware.iter().chain(auth_spec).collect();
    if specs.is_empty() {
        return Ok(Plugins {
            chain: super::Chain::default(),
            auth: None,
        });
    }
    let host_error = |message: String| PluginError {
        path: specs[0].path.clone(),
        name: "host".into(),
        message,
    };
    let (engine, cache) = engine(&specs, concurrency)
        .map_err(|e| host_error(format!("cannot start the WASM engine: {e:#}")))?;
    let process = format!("{}/{}", hostname(), pipeline.id);
    let mut middleware_linker = Linker::<PluginState>::new(&engine);
    let mut auth_linker = Linker::<PluginState>::new(&engine);
    let mut v2_linker = Linker::<PluginState>::new(&engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut middleware_linker)
        .and_then(|()| {
            bindings::Middleware::add_to_linker::<_, HasSelf<PluginState>>(
                &mut middleware_linker,
                |s| s,
            )
        })
        .and_then(|()| wasmtime_wasi::p2::add_to_linker_async(&mut auth_linker))
        .and_then(|()| {
            auth_bindings::Auth::add_to_linker::<_, HasSelf<PluginState>>(&mut auth_linker, |s| s)
        })
        .and_then(|()| wasmtime_wasi::p2::add_to_linker_async(&mut v2_linker))
        .and_then(|()| {
            v2::bindings::Middleware::add_to_linker::<_, HasSelf<PluginState>>(
                &mut v2_linker,
                |s| s,
            )
        })
        .map_err(|e| host_error(format!("cannot link the host interfaces: {e:#}")))?;
    let mut layers: Vec<Arc<dyn Middleware>> = Vec::new();
    let mut auth = None;
    for spec in specs {
        let is_auth = auth_spec.is_some_and(|a| std::ptr::eq(a, spec));
        let fail = |message: String| PluginError {
            path: spec.path.clone(),
            name: spec.name.clone(),
            message,
        };
        let bytes = component_bytes(spec).map_err(fail)?;
        let started = Instant::now();
        let misses = cache.cache_misses();
        let component = Component::new(&engine, &bytes)
            .map_err(|e| fail(format!("not a valid WebAssembly component: {e:#}")))?;
        let load_time = started.elapsed();
        let compiled = cache.cache_misses() > misses;
        // A middleware of the 0.2 contract exports its handler under that version.
        let contract_v2 = !is_auth
            && component
                .component_type()
                .exports(&engine)
                .any(|(name, _)| name == v2::HANDLER);
        let pre = if is_auth {
            auth_linker
                .instantiate_pre(&component)
                .and_then(auth_bindings::AuthPre::new)
                .map(Pre::Auth)
        } else if contract_v2 {
            v2_linker
                .instantiate_pre(&component)
                .and_then(v2::bindings::MiddlewarePre::new)
                .map(Pre::MiddlewareV2)
        } else {
            middleware_linker
                .instantiate_pre(&component)
                .and_then(bindings::MiddlewarePre::new)
                .map(Pre::Middleware)
        }
        .map_err(|e| {
            let world = if is_auth { "auth" } else { "middleware" };
            let wit = if contract_v2 {
                "@0.2.0 (wit/v0.2/plugin.wit)"
            } else {
                " (wit/plugin.wit)"
            };
            fail(format!(
                "does not match the sparkwasm:plugin/{world} world{wit}: {e:#}"
            ))
        })?;
        let plugin = WasmPlugin {
            info: Arc::new(PluginInfo {
                name: spec.name.clone(),
                config: plugin_config(spec, pipeline),
                limits: spec.limits,
                env: spec
                    .grants
                    .env
                    .iter()
                    .filter_map(|k| std::env::var(k).ok().map(|v| (k.clone(), v)))
                    .collect(),
                wall_clock: spec.grants.wall_clock,
                process: process.clone(),
                redactor: redactor.clone(),
                outbound_hosts: spec.grants.outbound_hosts.clone(),
                transport: transport.clone(),
            }),
            engine: engine.clone(),
            pre,
            idle: (0..transport.shards())
                .map(|_| Mutex::new(Vec::new()))
                .collect(),
        };
        // One instance now: proves it instantiates and that its config is good; it is kept for reuse.
        let instance = plugin.instantiate().await.map_err(fail)?;
        plugin.give_back(instance);
        tracing::info!(
            plugin = %spec.name,
            compiled,
            load_ms = load_time.as_secs_f64() * 1e3,
            "plugin ready"
        );
        if is_auth {
            auth = Some(WasmAuth {
                what: format!("auth plugin `{}`", spec.name),
                plugin,
            });
        } else {
            layers.push(Arc::new(plugin));
        }
    }
    Ok(Plugins {
        chain: super::Chain::new(layers),
        auth,
    })
}

/// One engine for all plugins of the run, and its compile cache (whose counters tell whether a
/// component was compiled or loaded).
fn engine(
    specs: &[&MiddlewareSpec],
    concurrency: usize,
) -> wasmtime::Result<(Engine, wasmtime::Cache)> {
    let plugins = specs.len() as u32;
    // Every consumer may hold one instance of each plugin at once (nested calls), plus the ones made
    // at load time. A component holds several core instances, memories and tables (a Rust guest a
    // few, a componentize-py guest about twenty core instances): the pool is sized for the larger.
    let instances = u32::try_from(concurrency)
        .ok()
        .and_then(|c| c.checked_add(1)?.checked_mul(plugins)?.checked_add(8))
        .filter(|n| *n <= 100_000)
        .ok_or_else(|| wasmtime::Error::msg("too many consumers for the plugin instance pool"))?;
    let max_memory = specs
        .iter()
        .map(|m| m.limits.memory_mb as usize)
        .max()
        .unwrap_or(32)
        << 20;
    let mut pool = wasmtime::PoolingAllocationConfig::default();
    pool.total_component_instances(instances)
        .total_core_instances(instances * 32)
        .total_memories(instances * 8)
        .total_tables(instances * 32)
        .total_stacks(instances)
        .max_memory_size(max_memory)
        .max_memories_per_module(2)
        .max_memories_per_component(8)
        .max_core_instances_per_component(64)
        .max_tables_per_module(8)
        .table_elements(TABLE_ELEMENTS)
        // Every call runs on a fiber stack from the pool; returning it with madvise and faulting it
        // back in on the next call would cost more than the call itself.
        .async_stack_keep_resident(256 << 10);
    let cache = compile_cache()?;
    let mut config = wasmtime::Config::new();
    config
        .wasm_component_model(true)
        .epoch_interruption(true)
        .allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pool))
        // Reserve address space for the cap, not wasmtime's default 4 GiB per memory slot.
        .memory_reservation(max_memory as u64)
        .cache(Some(cache.clone()));
    let engine = Engine::new(&config)?;
    let ticker = engine.weak();
    std::thread::Builder::new()
        .name("sparkwasm-epoch".into())
        .spawn(move || {
            while let Some(engine) = ticker.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(TICK);
            }
        })
        .map_err(wasmtime::Error::from)?;
    Ok((engine, cache))
}

/// wasmtime's compile cache, under `$SPARKWASM_CACHE_DIR` or `~/.cache/sparkwasm/wasmtime`, created
/// private to the user (cached artifacts are native code that is loaded without being re-verified).
fn compile_cache() -> wasmtime::Result<wasmtime::Cache> {
    let dir = std::env::var_os("SPARKWASM_CACHE_DIR")
        .map(std::path::PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".cache/sparkwasm"))
        })
        .ok_or_else(|| {
            wasmtime::Error::msg("no cache directory: set SPARKWASM_CACHE_DIR (or HOME)")
        })?
        .join("wasmtime");
    {
        use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(wasmtime::Error::from)?;
        let meta = std::fs::metadata(&dir).map_err(wasmtime::Error::from)?;
        // /proc/self belongs to the user this process runs as.
        let me = std::fs::metadata("/proc/self")
            .map_err(wasmtime::Error::from)?
            .uid();
        if meta.uid() != me || meta.permissions().mode() & 0o022 != 0 {
            return Err(wasmtime::Error::msg(format!(
                "compile cache {} must belong to this user and not be writable by others",
                dir.display()
            )));
        }
    }
    let mut config = wasmtime::CacheConfig::new();
    config.with_directory(dir);
    wasmtime::Cache::new(config)
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// The component's bytes: embedded for built-ins; for a file, read and checked against its sha256.
fn component_bytes(spec: &MiddlewareSpec) -> Result<Cow<'static, [u8]>, String> {
    match &spec.source {
        PluginSource::Builtin => builtin::find(&spec.kind)
            .map(|b| Cow::Borrowed(b.component))
            .ok_or_else(|| format!("no built-in plugin `{}`", spec.kind)),
        PluginSource::File { path, sha256 } => {
            let bytes =
                std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            let actual = format!("{:x}", Sha256::digest(&bytes));
            if &actual != sha256 {
                return Err(format!(
                    "{} does not match its sha256: expected {sha256}, the file has {actual}",
                    path.display()
                ));
            }
            Ok(Cow::Owned(bytes))
        }
    }
}

/// The JSON config a plugin's `config()` returns. `retry` takes `max_attempts` from
/// `execution.max_attempts` (the legacy place for it) unless its entry sets one.
fn plugin_config(spec: &MiddlewareSpec, pipeline: &Pipeline) -> String {
    let mut config = spec.config.clone();
    if spec.kind == "retry"
        && let Some(map) = config.as_object_mut()
    {
        map.entry("max_attempts")
            .or_insert(pipeline.execution.max_attempts.into());
    }
    config.to_string()
}

/// What every instance of one plugin shares.
struct PluginInfo {
    name: String,
    config: String,
    limits: PluginLimits,
    env: Vec<(String, String)>,
    wall_clock: bool,
    process: String,
    /// Secret values of the pipeline, removed from whatever the plugin logs.
    redactor: Arc<Redactor>,
    /// `host` or `host:port` entries `outbound.fetch` may reach (`grants.outbound_hosts`).
    outbound_hosts: Vec<String>,
    transport: Arc<HttpTransport>,
}

/// A component (of either world) and its idle instances.
struct WasmPlugin {
    info: Arc<PluginInfo>,
    engine: Engine,
    pre: Pre,
    /// Idle instances, one pool per worker thread (as the transport's connection pools,
    /// [`crate::transport::shard_of`]): an instance goes back to the worker that used it, so its
    /// store, memory and stack stay in that core's caches instead of moving between cores at every
    /// call.
    idle: Box<[Mutex<Vec<Instance>>]>,
}

enum Pre {
    Middleware(bindings::MiddlewarePre<PluginState>),
    MiddlewareV2(v2::bindings::MiddlewarePre<PluginState>),
    Auth(auth_bindings::AuthPre<PluginState>),
}

enum Guest {
    Middleware(bindings::Middleware),
    MiddlewareV2(v2::bindings::Middleware),
    Auth(auth_bindings::Auth),
}

struct Instance {
    store: Store<PluginState>,
    guest: Guest,
}

/// A store's data: the WASI context of the sandbox and the state of the call in progress.
struct PluginState {
    wasi: WasiCtx,
    table: ResourceTable,
    memory: MemoryCap,
    info: Arc<PluginInfo>,
    /// The rest of the chain for the call in progress.
    next: Option<Next>,
    worker: WorkerSlot,
    /// Guest running time of the call in progress, counted slice by slice at each epoch tick (time
    /// spent queued behind other rows after a yield is not counted).
    ran: Duration,
    /// When `ran` was last brought up to date.
    last_check: Instant,
    /// Since when the guest has held its thread: the call's start, its last yield, or the end of a
    /// wait that gave the thread to other rows. The epoch callback yields a guest that has held it
    /// for half a tick or more.
    holding_since: Instant,
    /// The call's waits, shared with the watchdog that bounds its wall time outside them.
    waits: Arc<Waits>,
    /// `next` calls made by the call in progress.
    next_calls: u32,
    /// Set when the deadline stopped the guest.
    deadline_hit: bool,
    /// The last error `next` returned in this call: passed through unchanged, it is not blamed on
    /// this plugin.
    last_next_error: Option<String>,
    /// What the guest last wrote to stderr (a panic message), for the error of a trap.
    stderr: Arc<Mutex<String>>,
}

impl WasiView for PluginState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Caps the instance's linear memories together; remembers that it refused, so the trap is reported
/// as out-of-memory.
struct MemoryCap {
    bytes: usize,
    /// Bytes of all the instance's memories.
    used: usize,
    refused: bool,
}

impl wasmtime::ResourceLimiter for MemoryCap {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let total = self.used + desired.saturating_sub(current);
        if total > self.bytes {
            self.refused = true;
            return Err(wasmtime::Error::msg(format!(
                "out of memory: the plugin wanted {} MiB, its cap is {} MiB (limits.memory_mb)",
                total >> 20,
                self.bytes >> 20
            )));
        }
        self.used = total;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= TABLE_ELEMENTS)
    }
}

impl WasmPlugin {
    /// A fresh instance, initialised (its `init` export run once).
    async fn instantiate(&self) -> Result<Instance, String> {
        let info = self.info.clone();
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut wasi = WasiCtx::builder();
        wasi.allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .socket_addr_check(|_, _| Box::pin(async { false }))
            .stdout(LogStream::new(&info, None))
            .stderr(LogStream::new(&info, Some(stderr.clone())));
        for (k, v) in &info.env {
            wasi.env(k, v);
        }
        if !info.wall_clock {
            wasi.wall_clock(FrozenClock);
        }
        let state = PluginState {
            wasi: wasi.build(),
            table: {
                let mut table = ResourceTable::new();
                table.set_max_capacity(MAX_RESOURCES);
                table
            },
            memory: MemoryCap {
                bytes: (info.limits.memory_mb as usize) << 20,
                used: 0,
                refused: false,
            },
            info: info.clone(),
            next: None,
            worker: (0, 0),
            ran: Duration::ZERO,
            last_check: Instant::now(),
            holding_since: Instant::now(),
            waits: Arc::default(),
            next_calls: 0,
            deadline_hit: false,
            last_next_error: None,
            stderr,
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.memory);
        // What the host allocates for one guest-to-host call's arguments, at most.
        store.set_hostcall_fuel((info.limits.memory_mb as usize) << 20);
        let limit = Duration::from_millis(info.limits.timeout_ms);
        store.epoch_deadline_callback(move |mut cx| {
            let s = cx.data_mut();
            let now = Instant::now();
            s.book_run(now);
            if s.ran > limit {
                s.deadline_hit = true;
                return Err(wasmtime::Error::msg("deadline"));
            }
            // A guest that has held its thread for half a tick or more gives it to the other rows.
            // One that has just got it back from a wait in `next` (the epoch moved on while the
            // rest of the chain worked) runs on: yielding it would only suspend and resume every
            // plugin's fiber on the way down once more.
            if now - s.holding_since >= TICK / 2 {
                s.holding_since = now;
                Ok(UpdateDeadline::Yield(1))
            } else {
                Ok(UpdateDeadline::Continue(1))
            }
        });
        store.data_mut().begin_call();
        store.set_epoch_deadline(1);
        let bound = watchdog(&info, store.data());
        let instantiated = async {
            match &self.pre {
                Pre::Middleware(pre) => pre
                    .instantiate_async(&mut store)
                    .await
                    .map(Guest::Middleware),
                Pre::MiddlewareV2(pre) => pre
                    .instantiate_async(&mut store)
                    .await
                    .map(Guest::MiddlewareV2),
                Pre::Auth(pre) => pre.instantiate_async(&mut store).await.map(Guest::Auth),
            }
        };
        let guest = bound
            .run(instantiated)
            .await
            .ok_or_else(|| stuck(&info, "instantiation"))?
            .map_err(|e| describe_failure(&e, store.data(), "instantiation"))?;
        store.data_mut().begin_call();
        let bound = watchdog(&info, store.data());
        let init = async {
            match &guest {
                Guest::Middleware(g) => g.sparkwasm_plugin_handler().call_init(&mut store).await,
                Guest::MiddlewareV2(g) => g.sparkwasm_plugin_handler().call_init(&mut store).await,
                Guest::Auth(g) => {
                    g.sparkwasm_plugin_authenticator()
                        .call_init(&mut store)
                        .await
                }
            }
        };
        let result = bound.run(init).await.ok_or_else(|| stuck(&info, "init"))?;
        match result {
            Ok(Ok(())) => Ok(Instance { store, guest }),
            Ok(Err(message)) => Err(format!("init refused: {message}")),
            Err(e) => Err(describe_failure(&e, store.data(), "init")),
        }
    }

    fn shard(&self) -> usize {
        crate::transport::shard_of(self.idle.len())
    }

    /// An idle instance, from this worker's pool first, then from the others (starting with the next
    /// one, so that workers do not all look at the same pool first).
    fn take_idle(&self) -> Option<Instance> {
        let mine = self.shard();
        (0..self.idle.len())
            .map(|k| (mine + k) % self.idle.len())
            .find_map(|k| self.idle[k].lock().expect("pool lock").pop())
    }

    async fn checkout(&self) -> Result<Instance, String> {
        if let Some(instance) = self.take_idle() {
            return Ok(instance);
        }
        // Rare (no idle instance anywhere): boxed, so that its large future does not widen every
        // call's. If the engine's instance pool is full, an instance another worker gave back
        // meanwhile will do.
        match Box::pin(self.instantiate()).await {
            Ok(instance) => Ok(instance),
            Err(e) => self.take_idle().ok_or(e),
        }
    }

    fn give_back(&self, instance: Instance) {
        self.idle[self.shard()]
            .lock()
            .expect("pool lock")
            .push(instance);
    }

    /// An instance ready for a call: from the pool (or new), its per-call state reset.
    async fn ready(&self) -> Result<Instance, String> {
        let mut instance = self.checkout().await?;
        instance.store.data_mut().begin_call();
        instance.store.set_epoch_deadline(1);
        Ok(instance)
    }

    /// A finished call: the instance goes back to the pool, unless the guest trapped (then it is
    /// dropped, and the trap described; the next row gets a fresh instance).
    fn settle<T>(
        &self,
        instance: Instance,
        result: wasmtime::Result<T>,
        during: &str,
    ) -> Result<T, String> {
        match result {
            Ok(value) => {
                self.give_back(instance);
                Ok(value)
            }
            Err(e) => Err(describe_failure(&e, instance.store.data(), during)),
        }
    }

    async fn call(
        &self,
        request: Arc<ApiRequest>,
        next: Next,
    ) -> Result<ApiResponse, RequestError> {
        let name = &self.info.name;
        let mut instance = self
            .ready()
            .await
            .map_err(|e| RequestError::new(format!("plugin `{name}`: {e}")))?;
        let state = instance.store.data_mut();
        state.next = Some(next);
        state.worker = WORKER.try_with(|w| *w).unwrap_or((0, 0));
        let bound = watchdog(&self.info, instance.store.data());
        let stuck_error = || {
            RequestError::of(
                ErrorKind::Other,
                format!("plugin `{name}`: {}", stuck(&self.info, "handle")),
            )
        };
        // The guest's answer: a response, or the error it returned (kind, message).
        let result: wasmtime::Result<Result<ApiResponse, (ErrorKind, String)>> = match &instance
            .guest
        {
            Guest::Middleware(guest) => {
                let wit_request = to_wit_request(Arc::unwrap_or_clone(request));
                // Stuck outside guest code (a blocking WASI call): the instance is dropped.
                bound
                    .run(
                        guest
                            .sparkwasm_plugin_handler()
                            .call_handle(&mut instance.store, &wit_request),
                    )
                    .await
                    .ok_or_else(stuck_error)?
                    .map(|r| {
                        r.map(from_wit_response)
                            .map_err(|e| (from_wit_kind(e.kind), e.message))
                    })
            }
            Guest::MiddlewareV2(guest) => {
                let handle = v2::lend(instance.store.data_mut(), request);
                match handle {
                    Err(e) => Err(e),
                    Ok(handle) => bound
                        .run(
                            guest
                                .sparkwasm_plugin_handler()
                                .call_handle(&mut instance.store, handle),
                        )
                        .await
                        .ok_or_else(stuck_error)?
                        .and_then(|r| match r {
                            Ok(response) => v2::take(instance.store.data_mut(), response).map(Ok),
                            Err(e) => Ok(Err((v2::from_wit_kind(e.kind), e.message))),
                        }),
                }
            }
            Guest::Auth(_) => {
                unreachable!("a middleware plugin's instances are of a middleware world")
            }
        };
        let state = instance.store.data_mut();
        state.next = None;
        let passed_through = state.last_next_error.take();
        match self.settle(instance, result, "handle") {
            Ok(Ok(response)) => Ok(response),
            Ok(Err((kind, message))) => {
                if passed_through.is_some_and(|m| m == message) {
                    Err(RequestError::of(kind, message))
                } else {
                    Err(RequestError::of(
                        kind,
                        format!("plugin `{name}`: {message}"),
                    ))
                }
            }
            Err(trap) => Err(RequestError::of(
                ErrorKind::Other,
                format!("plugin `{name}`: {trap}"),
            )),
        }
    }
}

impl Middleware for WasmPlugin {
    fn name(&self) -> &str {
        &self.info.name
    }

    fn handle(
        self: Arc<Self>,
        request: Arc<ApiRequest>,
        next: Next,
    ) -> BoxFuture<'static, Result<ApiResponse, RequestError>> {
        Box::pin(async move { self.call(request, next).await })
    }
}

/// A custom auth strategy: a component of the `auth` world. The host's [`crate::auth::CredentialCache`]
/// calls `acquire` (one call at a time for all workers); `apply` runs per request on a pooled instance.
pub struct WasmAuth {
    what: String,
    plugin: WasmPlugin,
}

impl WasmAuth {
    async fn acquire_credential(&self) -> Result<Fresh, String> {
        let p = &self.plugin;
        let mut instance = p.ready().await?;
        let Guest::Auth(guest) = &instance.guest else {
            unreachable!("an auth plugin's instances are of the auth world")
        };
        let bound = watchdog(&p.info, instance.store.data());
        let result = bound
            .run(
                guest
                    .sparkwasm_plugin_authenticator()
                    .call_acquire(&mut instance.store),
            )
            .await
            .ok_or_else(|| stuck(&p.info, "acquire"))?;
        let credential = p
            .settle(instance, result, "acquire")?
            .map_err(|e| e.message)?;
        Ok(Fresh {
            secret: credential.secret,
            expires_in: credential.expires_in.map(Duration::from_secs),
        })
    }

    async fn apply_credential(
        &self,
        request: ApiRequest,
        credential: &crate::auth::Credential,
    ) -> Result<ApiRequest, RequestError> {
        let p = &self.plugin;
        let fail =
            |kind, message: String| RequestError::of(kind, format!("{}: {message}", self.what));
        let mut instance = p.ready().await.map_err(|e| fail(ErrorKind::Other, e))?;
        let Guest::Auth(guest) = &instance.guest else {
            unreachable!("an auth plugin's instances are of the auth world")
        };
        let wit_credential = authenticator::Credential {
            secret: credential.secret.clone(),
            expires_in: credential.expires_in().map(|d| d.as_secs()),
        };
        let (method, url, metadata) = (
            request.method.clone(),
            request.url.clone(),
            request.metadata.clone(),
        );
        let wit_request = to_wit_request(request);
        let bound = watchdog(&p.info, instance.store.data());
        let result = bound
            .run(guest.sparkwasm_plugin_authenticator().call_apply(
                &mut instance.store,
                &wit_request,
                &wit_credential,
            ))
            .await
            .ok_or_else(|| fail(ErrorKind::Other, stuck(&p.info, "apply")))?;
        let applied = p
            .settle(instance, result, "apply")
            .map_err(|trap| fail(ErrorKind::Other, trap))?
            .map_err(|e| fail(from_wit_kind(e.kind), e.message))?;
        let mut applied = from_wit_request(applied).map_err(|m| {
            fail(
                ErrorKind::InvalidRequest,
                format!("apply returned a bad request: {m}"),
            )
        })?;
        // A credential changes headers and the query, never where the request goes: the plugin
        // reaches other hosts only through its granted outbound fetch.
        if applied.method != method || target(&applied.url) != target(&url) {
            return Err(fail(
                ErrorKind::Rejected,
                "apply changed the request's method, host or path; it may only add headers or query parameters".into(),
            ));
        }
        // Annotations are the chain's: metadata set here does not reach the table.
        applied.metadata = metadata;
        Ok(applied)
    }
}

/// Scheme, host, port and path of a URL: where a request goes.
fn target(url: &str) -> Option<(String, Option<String>, Option<u16>, String)> {
    let u = url::Url::parse(url).ok()?;
    Some((
        u.scheme().to_owned(),
        u.host_str().map(str::to_owned),
        u.port_or_known_default(),
        u.path().to_owned(),
    ))
}

impl Authenticator for WasmAuth {
    fn what(&self) -> &str {
        &self.what
    }

    fn acquire(&self) -> BoxFuture<'_, Result<Fresh, String>> {
        Box::pin(self.acquire_credential())
    }

    fn apply<'a>(
        &'a self,
        request: ApiRequest,
        credential: &'a crate::auth::Credential,
    ) -> BoxFuture<'a, Result<ApiRequest, RequestError>> {
        Box::pin(self.apply_credential(request, credential))
    }
}

impl PluginState {
    /// Resets the per-call state before a call into the guest.
    fn begin_call(&mut self) {
        self.ran = Duration::ZERO;
        self.last_check = Instant::now();
        self.holding_since = self.last_check;
        self.waits.reset();
        self.next_calls = 0;
        self.last_next_error = None;
        self.stderr.lock().expect("stderr lock").clear();
    }

    /// Awaits `wait` (the rest of the chain, a sleep, a fetch) as a wait of the guest: the guest
    /// ran until it began (booked now), the time in it is neither guest running time nor counted
    /// against the wall bound, and if it gave the thread to other rows the guest holds it afresh
    /// when it returns.
    async fn wait<T>(&mut self, wait: impl std::future::Future<Output = T>) -> T {
        let started = Instant::now();
        self.book_run(started);
        self.waits.begin(started);
        let mut wait = std::pin::pin!(wait);
        let mut suspended = false;
        let result = std::future::poll_fn(|cx| {
            let poll = wait.as_mut().poll(cx);
            suspended |= poll.is_pending();
            poll
        })
        .await;
        let now = Instant::now();
        self.waits.end(started, now);
        self.last_check = now;
        if suspended {
            self.holding_since = now;
        }
        result
    }

    /// Books the guest's running time up to `now`. A slice longer than two ticks means the guest
    /// was parked (yielded, or its thread preempted): two ticks count, not the time it waited for a
    /// thread.
    fn book_run(&mut self, now: Instant) {
        self.ran += (now - self.last_check).min(TICK * 2);
        self.last_check = now;
    }
}

/// The waits of a call in `next`, `sleep` and `fetch`: what the wall bound does not count.
#[derive(Default)]
struct Waits {
    /// Wall time (ns) of the waits that ended.
    waited_ns: AtomicU64,
    /// When the wait in progress began ([`clock_ns`]), 0 when none.
    since: AtomicU64,
}

impl Waits {
    fn reset(&self) {
        self.waited_ns.store(0, Ordering::Relaxed);
        self.since.store(0, Ordering::Relaxed);
    }

    fn begin(&self, now: Instant) {
        self.since.store(clock_ns_at(now), Ordering::Relaxed);
    }

    fn end(&self, started: Instant, now: Instant) {
        self.waited_ns
            .fetch_add((now - started).as_nanos() as u64, Ordering::Relaxed);
        self.since.store(0, Ordering::Relaxed);
    }

    fn in_progress(&self) -> bool {
        self.since.load(Ordering::Relaxed) != 0
    }

    /// All the call's waiting so far, the one in progress included.
    fn total(&self) -> Duration {
        let since = self.since.load(Ordering::Relaxed);
        let ongoing = if since == 0 {
            0
        } else {
            clock_ns().saturating_sub(since)
        };
        Duration::from_nanos(self.waited_ns.load(Ordering::Relaxed) + ongoing)
    }
}

/// The wall-time bound of one call into a guest, outside its waits in `next`, `sleep` and `fetch` (a guest
/// blocked in a WASI call, where the epoch deadline cannot reach it).
struct Bound {
    limit: Duration,
    /// When the call began (its state was reset by `begin_call`): no clock read here.
    started: Instant,
    waits: Arc<Waits>,
}

fn watchdog(info: &PluginInfo, state: &PluginState) -> Bound {
    Bound {
        limit: wall_bound(info),
        started: state.last_check,
        waits: state.waits.clone(),
    }
}

impl Bound {
    /// Runs `call` to its end, or `None` once it spent more than the limit outside its waits.
    ///
    /// The timer is armed only when the call is pending outside a wait: a call that ends in its
    /// first poll, or that is pending only while the rest of the chain works, never touches the
    /// runtime's timer wheel (four plugins would otherwise register and cancel four timers per
    /// request).
    async fn run<T>(self, call: impl std::future::Future<Output = T>) -> Option<T> {
        let timer = self.expired();
        let (mut call, mut timer) = (std::pin::pin!(call), std::pin::pin!(timer));
        std::future::poll_fn(|cx| {
            if let Poll::Ready(result) = call.as_mut().poll(cx) {
                return Poll::Ready(Some(result));
            }
            if !self.waits.in_progress() && timer.as_mut().poll(cx).is_ready() {
                return Poll::Ready(None);
            }
            Poll::Pending
        })
        .await
    }

    /// Ready once the call has spent more than the limit outside its waits.
    async fn expired(&self) {
        // Nothing to check before the bound could have passed (most calls end long before).
        tokio::time::sleep_until((self.started + self.limit).into()).await;
        loop {
            let outside = self.started.elapsed().saturating_sub(self.waits.total());
            if outside > self.limit {
                return;
            }
            tokio::time::sleep((self.limit - outside).max(Duration::from_millis(10))).await;
        }
    }
}

/// Nanoseconds since the first call, never 0 (0 means "not waiting").
fn clock_ns() -> u64 {
    clock_ns_at(Instant::now())
}

/// [`clock_ns`] at `now`.
fn clock_ns_at(now: Instant) -> u64 {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    now.saturating_duration_since(*START.get_or_init(Instant::now))
        .as_nanos() as u64
        + 1
}

/// A call's wall-time bound outside `next`, `sleep` and `fetch`: ten times `timeout_ms`, at least five seconds
/// more than it. The epoch deadline stops guest code; this stops a call blocked in a WASI wait, where
/// epochs are not checked.
fn wall_bound(info: &PluginInfo) -> Duration {
    let timeout = Duration::from_millis(info.limits.timeout_ms);
    (timeout * 10).max(timeout + Duration::from_secs(5))
}

fn stuck(info: &PluginInfo, during: &str) -> String {
    let bound = wall_bound(info);
    format!(
        "blocked in {during} for more than {:.1} s outside next(), sleep() and fetch(); stopped",
        bound.as_secs_f64()
    )
}

/// Why a call into the guest failed, in words: deadline, memory cap, or the trap and what the guest
/// printed before it.
fn describe_failure(e: &wasmtime::Error, state: &PluginState, during: &str) -> String {
    if state.deadline_hit {
        return format!(
            "ran past its deadline of {} ms in {during} (limits.timeout_ms); stopped",
            state.info.limits.timeout_ms
        );
    }
    if state.memory.refused {
        return format!(
            "out of memory in {during}: its cap is {} MiB (limits.memory_mb)",
            state.info.limits.memory_mb
        );
    }
    let stderr = state.stderr.lock().expect("stderr lock");
    let printed = stderr
        .lines()
        .filter(|l| !l.starts_with("note: run with"))
        .collect::<Vec<_>>()
        .join(" ");
    let what = match e.downcast_ref::<wasmtime::Trap>() {
        Some(trap) => format!("trapped in {during}: {trap}"),
        // Not a trap: the guest's answer could not be read (a string that is not UTF-8, an
        // out-of-range enum, a pointer outside its memory).
        None => format!(
            "returned a malformed result from {during}: {}",
            first_line(&format!("{e:#}"))
        ),
    };
    if printed.is_empty() {
        what
    } else {
        format!("{what} (it printed: {printed})")
    }
}

fn first_line(s: &str) -> &str {
    s.lines().find(|l| !l.trim().is_empty()).unwrap_or(s).trim()
}

impl types::Host for PluginState {}

/// Whether the run's log shows a plugin's lines at `level`.
fn log_enabled(level: host::Level) -> bool {
    match level {
        host::Level::Trace => tracing::enabled!(tracing::Level::TRACE),
        host::Level::Debug => tracing::enabled!(tracing::Level::DEBUG),
        host::Level::Info => tracing::enabled!(tracing::Level::INFO),
        host::Level::Warn => tracing::enabled!(tracing::Level::WARN),
        host::Level::Error => tracing::enabled!(tracing::Level::ERROR),
    }
}

impl host::Host for PluginState {
    fn log(&mut self, level: host::Level, message: String) {
        let plugin = self.info.name.as_str();
        if !log_enabled(level) {
            return;
        }
        let message = self.info.redactor.text(&message);
        match level {
            host::Level::Trace => tracing::trace!(plugin, "{message}"),
            host::Level::Debug => tracing::debug!(plugin, "{message}"),
            host::Level::Info => tracing::info!(plugin, "{message}"),
            host::Level::Warn => tracing::warn!(plugin, "{message}"),
            host::Level::Error => tracing::error!(plugin, "{message}"),
        }
    }

    fn monotonic_now(&mut self) -> u64 {
        static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        START.get_or_init(Instant::now).elapsed().as_nanos() as u64
    }

    async fn sleep(&mut self, ms: u64) {
        self.wait(tokio::time::sleep(Duration::from_millis(ms).min(MAX_SLEEP)))
            .await;
    }

    fn config(&mut self) -> String {
        self.info.config.clone()
    }

    fn whoami(&mut self) -> host::Identity {
        host::Identity {
            process: self.info.process.clone(),
            partition: self.worker.0,
            consumer: self.worker.1,
        }
    }
}

impl PluginState {
    /// A middleware's `next`: sends `request` on through the rest of the chain (both contracts).
    async fn forward(&mut self, request: Arc<ApiRequest>) -> Result<ApiResponse, RequestError> {
        if self.next.is_none() {
            return Err(RequestError::of(
                ErrorKind::Other,
                "next() called outside of handle()",
            ));
        }
        self.next_calls += 1;
        if self.next_calls > MAX_NEXT_CALLS {
            return Err(RequestError::of(
                ErrorKind::Rejected,
                format!(
                    "plugin `{}` called next() more than {MAX_NEXT_CALLS} times for one row",
                    self.info.name
                ),
            ));
        }
        // The rest of the chain (`run` owns what it needs).
        let sent = self.next.as_ref().expect("checked above").run(request);
        let result = self.wait(sent).await;
        if let Err(e) = &result {
            self.last_next_error = Some(e.message.clone());
        }
        result
    }
}

impl chain::Host for PluginState {
    async fn next(&mut self, request: types::Request) -> Result<types::Response, types::Error> {
        let request = match from_wit_request(request) {
            Ok(r) => r,
            Err(message) => {
                return Err(types::Error {
                    kind: types::ErrorKind::InvalidRequest,
                    message: format!("plugin `{}` sent a bad request: {message}", self.info.name),
                });
            }
        };
        self.forward(Arc::new(request))
            .await
            .map(to_wit_response)
            .map_err(|e| types::Error {
                kind: to_wit_kind(e.kind),
                message: e.message,
            })
    }
}

impl outbound::Host for PluginState {
    /// An auth plugin's own HTTP request (a token or key fetch): only to the granted hosts, through
    /// the run's transport (its TLS settings apply). Waiting for it is not guest running time.
    async fn fetch(&mut self, request: types::Request) -> Result<types::Response, types::Error> {
        let name = self.info.name.clone();
        let refuse = |kind, message: String| types::Error {
            kind,
            message: format!("plugin `{name}`: {message}"),
        };
        self.next_calls += 1;
        if self.next_calls > MAX_NEXT_CALLS {
            return Err(refuse(
                types::ErrorKind::Rejected,
                format!("more than {MAX_NEXT_CALLS} outbound fetches in one call"),
            ));
        }
        let request = from_wit_request(request).map_err(|m| {
            refuse(
                types::ErrorKind::InvalidRequest,
                format!("bad outbound request: {m}"),
            )
        })?;
        let target = url::Url::parse(&request.url)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https"))
            .and_then(|u| Some((u.host_str()?.to_owned(), u.port_or_known_default()?)));
        let Some((host, port)) = target else {
            return Err(refuse(
                types::ErrorKind::InvalidRequest,
                "outbound fetch: not an http(s) URL".to_owned(),
            ));
        };
        let with_port = format!("{host}:{port}");
        if !self.info.outbound_hosts.iter().any(|g| {
            // A grant without a port is that host on the web ports only.
            g.eq_ignore_ascii_case(&with_port)
                || (g.eq_ignore_ascii_case(&host) && matches!(port, 80 | 443))
        }) {
            return Err(refuse(
                types::ErrorKind::Rejected,
                format!(
                    "outbound fetch to {with_port} refused: it is not in the plugin's grants.outbound_hosts {:?}",
                    self.info.outbound_hosts
                ),
            ));
        }
        let transport = self.info.transport.clone();
        let result = self.wait(transport.send(Arc::new(request))).await;
        result.map(to_wit_response).map_err(|e| types::Error {
            kind: to_wit_kind(e.kind),
            message: e.message,
        })
    }
}

fn to_wit_request(r: ApiRequest) -> types::Request {
    types::Request {
        method: r.method.to_string(),
        url: r.url,
        headers: r.headers,
        body: r.body.map(|b| b.to_vec()),
        metadata: r.metadata.into_iter().collect(),
    }
}

fn from_wit_request(r: types::Request) -> Result<ApiRequest, String> {
    let method = http::Method::from_bytes(r.method.as_bytes())
        .map_err(|_| format!("`{}` is not an HTTP method", r.method))?;
    Ok(ApiRequest {
        method,
        url: r.url,
        headers: r.headers,
        body: r.body.map(bytes::Bytes::from),
        metadata: r.metadata.into_iter().collect::<BTreeMap<_, _>>(),
    })
}

fn to_wit_response(r: ApiResponse) -> types::Response {
    types::Response {
        status: r.status,
        headers: r.headers,
        body: r.body.to_vec(),
        metadata: r.metadata.into_iter().collect(),
    }
}

fn from_wit_response(r: types::Response) -> ApiResponse {
    ApiResponse {
        status: r.status,
        headers: r.headers,
        body: bytes::Bytes::from(r.body),
        metadata: r.metadata.into_iter().collect(),
    }
}

/// `to_wit_kind` and `from_wit_kind` for a contract's `error-kind` enum (the same names in every
/// version).
macro_rules! error_kind_conversions {
    ($wit:path) => {
        pub(super) fn to_wit_kind(kind: ErrorKind) -> $wit {
            use $wit as K;
            match kind {
                ErrorKind::Connect => K::Connect,
                ErrorKind::Tls => K::Tls,
                ErrorKind::Reset => K::Reset,
                ErrorKind::Timeout => K::Timeout,
                ErrorKind::InvalidRequest => K::InvalidRequest,
                ErrorKind::Rejected => K::Rejected,
                ErrorKind::Other => K::Other,
            }
        }

        pub(super) fn from_wit_kind(kind: $wit) -> ErrorKind {
            use $wit as K;
            match kind {
                K::Connect => ErrorKind::Connect,
                K::Tls => ErrorKind::Tls,
                K::Reset => ErrorKind::Reset,
                K::Timeout => ErrorKind::Timeout,
                K::InvalidRequest => ErrorKind::InvalidRequest,
                K::Rejected => ErrorKind::Rejected,
                K::Other => ErrorKind::Other,
            }
        }
    };
}
use error_kind_conversions;

error_kind_conversions!(types::ErrorKind);

/// The wall clock of a plugin without the `wall_clock` grant: always 1970-01-01T00:00:00Z.
struct FrozenClock;

impl wasmtime_wasi::HostWallClock for FrozenClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

/// A plugin's stdout or stderr: each line goes to the log under the plugin's name; stderr's last
/// lines are also kept for the error message of a trap (a Rust guest's panic message).
#[derive(Clone)]
struct LogStream {
    info: Arc<PluginInfo>,
    keep: Option<Arc<Mutex<String>>>,
}

impl LogStream {
    fn new(info: &Arc<PluginInfo>, keep: Option<Arc<Mutex<String>>>) -> Self {
        LogStream {
            info: info.clone(),
            keep,
        }
    }
}

impl wasmtime_wasi::cli::IsTerminal for LogStream {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl wasmtime_wasi::cli::StdoutStream for LogStream {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(LogWriter {
            stream: self.clone(),
            line: Vec::new(),
        })
    }
}

struct LogWriter {
    stream: LogStream,
    line: Vec<u8>,
}

/// At most this much of a line is kept (a guest printing without newlines cannot grow the host).
const MAX_LINE: usize = 4096;

impl LogWriter {
    fn emit(&mut self) {
        let raw = String::from_utf8_lossy(&self.line).into_owned();
        self.line.clear();
        if raw.trim().is_empty() {
            return;
        }
        let text = self.stream.info.redactor.text(&raw);
        tracing::info!(plugin = %self.stream.info.name, "{text}");
        if let Some(keep) = &self.stream.keep {
            let mut kept = keep.lock().expect("stderr lock");
            if kept.len() + text.len() > MAX_LINE {
                kept.clear();
            }
            kept.push_str(text.trim());
            kept.push('\n');
        }
    }
}

impl tokio::io::AsyncWrite for LogWriter {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        for &b in buf {
            if b == b'\n' {
                self.emit();
            } else if self.line.len() < MAX_LINE {
                self.line.push(b);
            }
        }
        std::task::Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        if !self.line.is_empty() {
            self.emit();
        }
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        self.poll_flush(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bound(ms: u64, waiting: bool) -> Bound {
        Bound {
            limit: Duration::from_millis(ms),
            started: Instant::now(),
            waits: Arc::new(Waits {
                waited_ns: AtomicU64::new(0),
                since: AtomicU64::new(if waiting { clock_ns() } else { 0 }),
            }),
        }
    }

    #[tokio::test]
    async fn the_wall_bound_stops_a_call_stuck_outside_its_waits() {
        let stuck = bound(50, false)
            .run(tokio::time::sleep(Duration::from_secs(5)))
            .await;
        assert!(stuck.is_none());
    }

    #[tokio::test]
    async fn the_wall_bound_does_not_count_a_wait_in_next() {
        // Waiting on the rest of the chain (a slow API) for four times the bound is not being stuck.
        let waited = bound(50, true)
            .run(tokio::time::sleep(Duration::from_millis(200)))
            .await;
        assert_eq!(waited, Some(()));
    }

    #[tokio::test]
    async fn the_wall_bound_counts_only_the_time_outside_waits() {
        // 100 ms waiting, then 100 ms stuck outside any wait, against a bound of 150 ms: the wait is
        // not counted, so the call runs to its end; the same call with no wait is stopped.
        let b = bound(150, false);
        let waits = b.waits.clone();
        let call = async move {
            let started = Instant::now();
            waits.begin(started);
            tokio::time::sleep(Duration::from_millis(100)).await;
            waits.end(started, Instant::now());
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert_eq!(b.run(call).await, Some(()));
        let stuck = bound(150, false)
            .run(tokio::time::sleep(Duration::from_millis(250)))
            .await;
        assert!(stuck.is_none());
    }
}
