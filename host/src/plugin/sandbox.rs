//! One instance's world: its store data. A WASI context with nothing in it (no preopened
//! directories, no sockets, no environment, a wall clock frozen at the epoch, no stdin; stdout and
//! stderr go to the log), a cap on its linear memory, and the state of the call in progress.
//! `grants` add the environment variables and the wall clock a plugin may see.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::budget::Budget;
use crate::api::Sender;
use crate::chain::{Egress, LayerState};
use crate::config::PluginLimits;
use crate::redact::Redactor;

/// Most elements of one table (the pool reserves this much for each).
pub(super) const TABLE_ELEMENTS: usize = 100_000;

/// Most entries a plugin may hold in its resource table (WASI streams, requests, responses).
const MAX_RESOURCES: usize = 1024;

/// Which worker runs the current row: (partition, consumer).
pub type WorkerSlot = (u32, u32);

/// What every instance of one plugin shares.
pub(super) struct PluginInfo {
    pub name: String,
    /// The plugin's settings as JSON, for `host.config`.
    pub config: String,
    pub limits: PluginLimits,
    pub env: Vec<(String, String)>,
    pub wall_clock: bool,
    /// `<host name>/<pipeline>`, for `host.whoami`.
    pub process: String,
    /// Secret values of the pipeline, removed from whatever the plugin logs.
    pub redactor: Arc<Redactor>,
    pub egress: Egress,
    /// For an auth plugin's outbound fetches.
    pub sender: Arc<dyn Sender>,
}

/// What the call in progress carries besides the guest's own arguments.
#[derive(Default)]
pub(super) struct CallState {
    /// The row's request lent to the guest (its handle is `borrow<request>`), with the guest's edits.
    pub request: Option<Arc<crate::api::ApiRequest>>,
    /// The row's response lent to `on-response`.
    pub response: Option<crate::api::ApiResponse>,
    /// The layer's state for the row (scratch notes, sends), moved in for the call.
    pub layer: LayerState,
    pub worker: WorkerSlot,
    /// The first rule the call broke; the row fails with it once the call returns.
    pub violation: Option<String>,
    /// Outbound fetches made by the call (auth plugins).
    pub fetches: u32,
    /// The call runs on the worker's own stack and may be preempted and run again on a fiber:
    /// what it would change for good is kept until it returns (see `stack`).
    pub on_stack: bool,
    /// The lent response as it was before the call's first edit (a call on the stack).
    pub response_before: Option<crate::api::ApiResponse>,
    /// The layer's notes as they were before the call's first edit (a call on the stack).
    pub scratch_before: Option<Vec<(String, String)>>,
    /// What the call logged (a call on the stack): written once it returns, dropped if preempted.
    pub logs: Vec<(super::bindings::host::Level, String)>,
}

/// A store's data.
pub(super) struct PluginState {
    wasi: WasiCtx,
    pub table: ResourceTable,
    pub memory: MemoryCap,
    pub info: Arc<PluginInfo>,
    pub budget: Budget,
    pub call: CallState,
    /// What the guest last wrote to stderr (a panic message), for the error of a trap.
    pub stderr: Arc<Stderr>,
}

/// The last lines a guest wrote to stderr in the call in progress.
#[derive(Default)]
pub(super) struct Stderr {
    pub text: Mutex<String>,
    /// Something was written since the last clear (checked at each call without a lock).
    written: std::sync::atomic::AtomicBool,
}

impl WasiView for PluginState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl PluginState {
    /// The data of a new store of `info`'s plugin.
    pub(crate) fn new(info: &Arc<PluginInfo>) -> Self {
        let stderr = Arc::new(Stderr::default());
        let mut wasi = WasiCtx::builder();
        wasi.allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .socket_addr_check(|_, _| Box::pin(async { false }))
            .stdout(LogStream::new(info, None))
            .stderr(LogStream::new(info, Some(stderr.clone())));
        for (k, v) in &info.env {
            wasi.env(k, v);
        }
        if !info.wall_clock {
            wasi.wall_clock(FrozenClock);
        }
        let mut table = ResourceTable::new();
        table.set_max_capacity(MAX_RESOURCES);
        PluginState {
            wasi: wasi.build(),
            table,
            memory: MemoryCap {
                bytes: (info.limits.memory_mb as usize) << 20,
                used: 0,
                refused: false,
            },
            info: info.clone(),
            budget: Budget::default(),
            call: CallState::default(),
            stderr,
        }
    }

    /// Readies the state for a call into the guest (the budget is armed apart, see `budget::arm`).
    pub(crate) fn begin_call(&mut self, layer: LayerState, worker: WorkerSlot) {
        self.call = CallState {
            layer,
            worker,
            ..CallState::default()
        };
        if self
            .stderr
            .written
            .swap(false, std::sync::atomic::Ordering::Relaxed)
        {
            self.stderr.text.lock().expect("stderr lock").clear();
        }
    }

    /// Ends a call: the layer's state goes back to the row.
    pub(crate) fn end_call(&mut self) -> LayerState {
        std::mem::take(&mut self.call.layer)
    }
}

/// Caps the instance's linear memories together; remembers that it refused, so the trap is reported
/// as out-of-memory.
pub(super) struct MemoryCap {
    bytes: usize,
    /// Bytes of all the instance's memories.
    used: usize,
    pub refused: bool,
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
    keep: Option<Arc<Stderr>>,
}

impl LogStream {
    fn new(info: &Arc<PluginInfo>, keep: Option<Arc<Stderr>>) -> Self {
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
            keep.written
                .store(true, std::sync::atomic::Ordering::Relaxed);
            let mut kept = keep.text.lock().expect("stderr lock");
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
