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

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use sha2::{Digest, Sha256};
use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{Engine, Store, UpdateDeadline};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::{Middleware, Next, builtin};
use crate::config::{MiddlewareSpec, Pipeline, PluginLimits, PluginSource};
use crate::request::{ApiRequest, ApiResponse, ErrorKind, RequestError};

mod bindings {
    wasmtime::component::bindgen!({
        world: "middleware",
        path: "../wit",
        imports: { default: async },
        exports: { default: async },
    });
}

use bindings::sparkwasm::plugin::{chain, host, types};

/// How often the epoch advances: the granularity of the CPU deadline, and how long a busy guest runs
/// before it yields its thread to other rows.
const TICK: Duration = Duration::from_millis(2);

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

/// Builds the middleware chain of a pipeline: every plugin verified, compiled (or taken from the
/// compile cache), checked against the WIT and initialised once, before any row is read.
pub async fn load_chain(
    pipeline: &Pipeline,
    concurrency: usize,
) -> Result<super::Chain, PluginError> {
    if pipeline.middleware.is_empty() {
        return Ok(super::Chain::default());
    }
    let (engine, cache) = engine(pipeline, concurrency).map_err(|e| PluginError {
        path: "middleware".into(),
        name: "host".into(),
        message: format!("cannot start the WASM engine: {e:#}"),
    })?;
    let process = format!("{}/{}", hostname(), pipeline.id);
    let mut layers: Vec<Arc<dyn Middleware>> = Vec::new();
    for spec in &pipeline.middleware {
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
        let mut linker = Linker::<PluginState>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .and_then(|()| {
                bindings::Middleware::add_to_linker::<_, HasSelf<PluginState>>(&mut linker, |s| s)
            })
            .map_err(|e| fail(format!("cannot link the host interfaces: {e:#}")))?;
        let pre = linker
            .instantiate_pre(&component)
            .and_then(bindings::MiddlewarePre::new)
            .map_err(|e| {
                fail(format!(
                    "does not match the sparkwasm:plugin/middleware world (wit/plugin.wit): {e:#}"
                ))
            })?;
        let plugin = WasmMiddleware {
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
            }),
            engine: engine.clone(),
            pre,
            idle: Mutex::new(Vec::new()),
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
        layers.push(Arc::new(plugin));
    }
    Ok(super::Chain::new(layers))
}

/// One engine for all plugins of the run, and its compile cache (whose counters tell whether a
/// component was compiled or loaded).
fn engine(pipeline: &Pipeline, concurrency: usize) -> wasmtime::Result<(Engine, wasmtime::Cache)> {
    let plugins = pipeline.middleware.len() as u32;
    // Every consumer may hold one instance of each plugin at once (nested calls), plus the ones made
    // at load time; each component instance has a few core instances and memories.
    let instances = (concurrency as u32 + 1) * plugins + 8;
    let max_memory = pipeline
        .middleware
        .iter()
        .map(|m| m.limits.memory_mb as usize)
        .max()
        .unwrap_or(32)
        << 20;
    let mut pool = wasmtime::PoolingAllocationConfig::default();
    pool.total_component_instances(instances)
        .total_core_instances(instances * 16)
        .total_memories(instances * 4)
        .total_tables(instances * 8)
        .total_stacks(instances)
        .max_memory_size(max_memory)
        .max_memories_per_module(2)
        .max_tables_per_module(4);
    let cache = compile_cache()?;
    let mut config = wasmtime::Config::new();
    config
        .wasm_component_model(true)
        .epoch_interruption(true)
        .allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pool))
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

/// wasmtime's compile cache, under `$SPARKWASM_CACHE_DIR` or `~/.cache/sparkwasm/wasmtime`.
fn compile_cache() -> wasmtime::Result<wasmtime::Cache> {
    let dir = std::env::var_os("SPARKWASM_CACHE_DIR")
        .map(std::path::PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".cache/sparkwasm"))
        })
        .unwrap_or_else(|| std::env::temp_dir().join("sparkwasm-cache"))
        .join("wasmtime");
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
fn component_bytes(spec: &MiddlewareSpec) -> Result<Vec<u8>, String> {
    match &spec.source {
        PluginSource::Builtin => builtin::component(&spec.kind)
            .map(<[u8]>::to_vec)
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
            Ok(bytes)
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
}

/// A middleware component and its idle instances.
struct WasmMiddleware {
    info: Arc<PluginInfo>,
    engine: Engine,
    pre: bindings::MiddlewarePre<PluginState>,
    idle: Mutex<Vec<Instance>>,
}

struct Instance {
    store: Store<PluginState>,
    guest: bindings::Middleware,
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
    call_started: Instant,
    /// Time the call in progress spent waiting in `next` and `sleep`.
    waited: Duration,
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

/// Caps linear memory growth; remembers that it refused, so the trap is reported as out-of-memory.
struct MemoryCap {
    bytes: usize,
    refused: Arc<AtomicBool>,
}

impl wasmtime::ResourceLimiter for MemoryCap {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.bytes {
            self.refused.store(true, Ordering::Relaxed);
            return Err(wasmtime::Error::msg(format!(
                "out of memory: the plugin wanted {} MiB, its cap is {} MiB (limits.memory_mb)",
                desired >> 20,
                self.bytes >> 20
            )));
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

impl WasmMiddleware {
    /// A fresh instance, initialised (its `init` export run once).
    async fn instantiate(&self) -> Result<Instance, String> {
        let info = self.info.clone();
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut wasi = WasiCtx::builder();
        wasi.allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .socket_addr_check(|_, _| Box::pin(async { false }))
            .stdout(LogStream::new(&info.name, None))
            .stderr(LogStream::new(&info.name, Some(stderr.clone())));
        for (k, v) in &info.env {
            wasi.env(k, v);
        }
        if !info.wall_clock {
            wasi.wall_clock(FrozenClock);
        }
        let state = PluginState {
            wasi: wasi.build(),
            table: ResourceTable::new(),
            memory: MemoryCap {
                bytes: (info.limits.memory_mb as usize) << 20,
                refused: Arc::new(AtomicBool::new(false)),
            },
            info: info.clone(),
            next: None,
            worker: (0, 0),
            call_started: Instant::now(),
            waited: Duration::ZERO,
            deadline_hit: false,
            last_next_error: None,
            stderr,
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.memory);
        let limit = Duration::from_millis(info.limits.timeout_ms);
        store.epoch_deadline_callback(move |mut cx| {
            let s = cx.data_mut();
            let ran = s.call_started.elapsed().saturating_sub(s.waited);
            if ran > limit {
                s.deadline_hit = true;
                return Err(wasmtime::Error::msg("deadline"));
            }
            Ok(UpdateDeadline::Yield(1))
        });
        store.set_epoch_deadline(1);
        store.data_mut().call_started = Instant::now();
        let guest = self
            .pre
            .instantiate_async(&mut store)
            .await
            .map_err(|e| describe_failure(&e, store.data(), "instantiation"))?;
        store.data_mut().call_started = Instant::now();
        match guest.sparkwasm_plugin_handler().call_init(&mut store).await {
            Ok(Ok(())) => Ok(Instance { store, guest }),
            Ok(Err(message)) => Err(format!("init refused: {message}")),
            Err(e) => Err(describe_failure(&e, store.data(), "init")),
        }
    }

    async fn checkout(&self) -> Result<Instance, String> {
        let idle = self.idle.lock().expect("pool lock").pop();
        match idle {
            Some(instance) => Ok(instance),
            None => self.instantiate().await,
        }
    }

    fn give_back(&self, instance: Instance) {
        self.idle.lock().expect("pool lock").push(instance);
    }

    async fn call(&self, request: ApiRequest, next: Next) -> Result<ApiResponse, RequestError> {
        let name = &self.info.name;
        let mut instance = self
            .checkout()
            .await
            .map_err(|e| RequestError::new(format!("plugin `{name}`: {e}")))?;
        let worker = WORKER.try_with(|w| *w).unwrap_or((0, 0));
        let state = instance.store.data_mut();
        state.next = Some(next);
        state.worker = worker;
        state.waited = Duration::ZERO;
        state.last_next_error = None;
        state.stderr.lock().expect("stderr lock").clear();
        state.call_started = Instant::now();
        instance.store.set_epoch_deadline(1);
        let wit_request = to_wit_request(request);
        let result = instance
            .guest
            .sparkwasm_plugin_handler()
            .call_handle(&mut instance.store, &wit_request)
            .await;
        let state = instance.store.data_mut();
        state.next = None;
        let passed_through = state.last_next_error.take();
        match result {
            Ok(Ok(response)) => {
                self.give_back(instance);
                Ok(from_wit_response(response))
            }
            Ok(Err(error)) => {
                self.give_back(instance);
                let kind = from_wit_kind(error.kind);
                if passed_through.is_some_and(|m| m == error.message) {
                    Err(RequestError::of(kind, error.message))
                } else {
                    Err(RequestError::of(
                        kind,
                        format!("plugin `{name}`: {}", error.message),
                    ))
                }
            }
            // A trap: this instance is done for (dropped here); the next row gets a fresh one.
            Err(e) => Err(RequestError::of(
                ErrorKind::Other,
                format!(
                    "plugin `{name}`: {}",
                    describe_failure(&e, instance.store.data(), "handle")
                ),
            )),
        }
    }
}

impl Middleware for WasmMiddleware {
    fn name(&self) -> &str {
        &self.info.name
    }

    fn handle(
        &self,
        request: ApiRequest,
        next: Next,
    ) -> BoxFuture<'_, Result<ApiResponse, RequestError>> {
        Box::pin(self.call(request, next))
    }
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
    if state.memory.refused.load(Ordering::Relaxed) {
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

impl host::Host for PluginState {
    async fn log(&mut self, level: host::Level, message: String) {
        let plugin = self.info.name.as_str();
        match level {
            host::Level::Trace => tracing::trace!(plugin, "{message}"),
            host::Level::Debug => tracing::debug!(plugin, "{message}"),
            host::Level::Info => tracing::info!(plugin, "{message}"),
            host::Level::Warn => tracing::warn!(plugin, "{message}"),
            host::Level::Error => tracing::error!(plugin, "{message}"),
        }
    }

    async fn monotonic_now(&mut self) -> u64 {
        static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        START.get_or_init(Instant::now).elapsed().as_nanos() as u64
    }

    async fn sleep(&mut self, ms: u64) {
        let started = Instant::now();
        tokio::time::sleep(Duration::from_millis(ms)).await;
        self.waited += started.elapsed();
    }

    async fn config(&mut self) -> String {
        self.info.config.clone()
    }

    async fn whoami(&mut self) -> host::Identity {
        host::Identity {
            process: self.info.process.clone(),
            partition: self.worker.0,
            consumer: self.worker.1,
        }
    }
}

impl chain::Host for PluginState {
    async fn next(&mut self, request: types::Request) -> Result<types::Response, types::Error> {
        let Some(next) = self.next.clone() else {
            return Err(types::Error {
                kind: types::ErrorKind::Other,
                message: "next() called outside of handle()".into(),
            });
        };
        let request = match from_wit_request(request) {
            Ok(r) => r,
            Err(message) => {
                return Err(types::Error {
                    kind: types::ErrorKind::InvalidRequest,
                    message: format!("plugin `{}` sent a bad request: {message}", self.info.name),
                });
            }
        };
        let started = Instant::now();
        let result = next.run(request).await;
        self.waited += started.elapsed();
        match result {
            Ok(response) => Ok(to_wit_response(response)),
            Err(e) => {
                let error = types::Error {
                    kind: to_wit_kind(e.kind),
                    message: e.message,
                };
                self.last_next_error = Some(error.message.clone());
                Err(error)
            }
        }
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

fn to_wit_kind(kind: ErrorKind) -> types::ErrorKind {
    match kind {
        ErrorKind::Connect => types::ErrorKind::Connect,
        ErrorKind::Tls => types::ErrorKind::Tls,
        ErrorKind::Reset => types::ErrorKind::Reset,
        ErrorKind::Timeout => types::ErrorKind::Timeout,
        ErrorKind::InvalidRequest => types::ErrorKind::InvalidRequest,
        ErrorKind::Rejected => types::ErrorKind::Rejected,
        ErrorKind::Other => types::ErrorKind::Other,
    }
}

fn from_wit_kind(kind: types::ErrorKind) -> ErrorKind {
    match kind {
        types::ErrorKind::Connect => ErrorKind::Connect,
        types::ErrorKind::Tls => ErrorKind::Tls,
        types::ErrorKind::Reset => ErrorKind::Reset,
        types::ErrorKind::Timeout => ErrorKind::Timeout,
        types::ErrorKind::InvalidRequest => ErrorKind::InvalidRequest,
        types::ErrorKind::Rejected => ErrorKind::Rejected,
        types::ErrorKind::Other => ErrorKind::Other,
    }
}

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
    plugin: Arc<str>,
    keep: Option<Arc<Mutex<String>>>,
}

impl LogStream {
    fn new(plugin: &str, keep: Option<Arc<Mutex<String>>>) -> Self {
        LogStream {
            plugin: plugin.into(),
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
        let text = String::from_utf8_lossy(&self.line).into_owned();
        self.line.clear();
        if text.trim().is_empty() {
            return;
        }
        tracing::info!(plugin = %self.stream.plugin, "{text}");
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
