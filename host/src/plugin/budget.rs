//! What one call into a guest may spend: guest running time (the CPU deadline, `limits.timeout_ms`,
//! counted at each epoch tick), and wall time outside its waits (a guest blocked in a WASI call,
//! where epochs are not checked). A guest on a fiber that holds its worker thread for half a tick
//! gives it to the other rows (an async yield), so a spinning plugin slows its own rows, not its
//! neighbours'. A hook called on the worker's own stack (see `stack`) cannot yield: at the
//! [`STACK_TICKS`]th epoch tick it sees it is preempted, and runs again from its start on a fiber.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::Poll;
use std::time::{Duration, Instant};

use wasmtime::{Store, UpdateDeadline};

use super::sandbox::{PluginInfo, PluginState};

/// How often the epoch advances: the granularity of the CPU deadline, and how long a busy guest runs
/// before it yields its thread to other rows.
pub(crate) const TICK: Duration = Duration::from_millis(2);

/// The epoch tick at which a call on the worker's own stack is preempted: the 2nd it sees, after
/// 2-4 ms on the thread (ticks come every [`TICK`]; the first may come right after it began).
pub(super) const STACK_TICKS: u32 = 2;

/// Where a call runs, for the epoch callback.
#[derive(Clone, Copy)]
enum On {
    /// On a fiber: it yields every half tick and has its deadline.
    Fiber,
    /// A hook on the worker's stack: counts the ticks down, preempted when none are left (no clock
    /// is read to arm it; the deadline is kept by the run on a fiber that follows a preemption).
    Stack { ticks_left: u32 },
    /// Loading on the stack: its deadline only.
    Load,
}

/// The budget state of the call in progress.
pub(super) struct Budget {
    /// Guest running time of the call, counted slice by slice at each epoch tick (time spent queued
    /// behind other rows after a yield is not counted).
    ran: Duration,
    /// When `ran` was last brought up to date.
    last_check: Instant,
    /// Since when the guest has held its thread: the call's start, its last yield, or the end of a
    /// wait that gave the thread to other rows.
    holding_since: Instant,
    /// The call's waits (an auth plugin's outbound fetch), shared with the watchdog.
    waits: Arc<Waits>,
    /// Set when the deadline stopped the guest.
    pub deadline_hit: bool,
    /// Where the call runs.
    on: On,
    /// Set when the call was preempted: it held the thread past its slice, or would have waited.
    pub preempted: bool,
}

impl Default for Budget {
    fn default() -> Self {
        let now = Instant::now();
        Budget {
            ran: Duration::ZERO,
            last_check: now,
            holding_since: now,
            waits: Arc::default(),
            deadline_hit: false,
            on: On::Fiber,
            preempted: false,
        }
    }
}

impl Budget {
    /// Resets the budget before a call into the guest.
    pub(crate) fn begin(&mut self) {
        self.ran = Duration::ZERO;
        self.last_check = Instant::now();
        self.holding_since = self.last_check;
        self.waits.reset();
        self.deadline_hit = false;
        self.preempted = false;
    }

    /// Books the guest's running time up to `now`. A slice longer than two ticks means the guest
    /// was parked (yielded, or its thread preempted): two ticks count, not the time it waited for a
    /// thread.
    fn book_run(&mut self, now: Instant) {
        self.ran += (now - self.last_check).min(TICK * 2);
        self.last_check = now;
    }
}

/// Installs the epoch callback on a new store: the deadline, and the yields.
pub(super) fn install(store: &mut Store<PluginState>, info: &PluginInfo) {
    let limit = Duration::from_millis(info.limits.timeout_ms);
    store.epoch_deadline_callback(move |mut cx| {
        let b = &mut cx.data_mut().budget;
        if let On::Stack { ticks_left } = &mut b.on {
            if *ticks_left <= 1 {
                b.preempted = true;
                return Err(wasmtime::Error::msg(
                    "preempted: held its thread past its slice",
                ));
            }
            *ticks_left -= 1;
            return Ok(UpdateDeadline::Continue(1));
        }
        let now = Instant::now();
        b.book_run(now);
        if b.ran > limit {
            b.deadline_hit = true;
            return Err(wasmtime::Error::msg("deadline"));
        }
        if let On::Load = b.on {
            return Ok(UpdateDeadline::Continue(1));
        }
        if now - b.holding_since >= TICK / 2 {
            b.holding_since = now;
            // tokio's yield polls the I/O driver before the guest runs again: a plain self-wake
            // would keep the run queue busy, and the other rows' answers would wait for the
            // driver's turn (every 61 tasks).
            Ok(UpdateDeadline::YieldCustom(
                1,
                Box::pin(tokio::task::yield_now()),
            ))
        } else {
            Ok(UpdateDeadline::Continue(1))
        }
    });
}

/// Readies a store for a call on a fiber: the budget reset, the first epoch check one tick away.
pub(super) fn arm(store: &mut Store<PluginState>) {
    store.data_mut().budget.begin();
    store.data_mut().budget.on = On::Fiber;
    store.set_epoch_deadline(1);
}

/// Readies a store for a hook on the worker's own stack, preempted at its [`STACK_TICKS`]th tick. Reads no
/// clock: this is on every hook's path.
pub(super) fn arm_on_stack(store: &mut Store<PluginState>) {
    let b = &mut store.data_mut().budget;
    b.preempted = false;
    b.deadline_hit = false;
    b.on = On::Stack {
        ticks_left: STACK_TICKS,
    };
    store.set_epoch_deadline(1);
}

/// Readies a store for loading on the stack (instantiation, `init`): its deadline, no preemption.
pub(super) fn arm_to_load(store: &mut Store<PluginState>) {
    store.data_mut().budget.begin();
    store.data_mut().budget.on = On::Load;
    store.set_epoch_deadline(1);
}

impl PluginState {
    /// Awaits `wait` (an outbound fetch) as a wait of the guest: the guest ran until it began
    /// (booked now), the time in it is neither guest running time nor counted against the wall
    /// bound, and if it gave the thread to other rows the guest holds it afresh when it returns.
    pub(super) async fn wait<T>(&mut self, wait: impl std::future::Future<Output = T>) -> T {
        let started = Instant::now();
        self.budget.book_run(started);
        self.budget.waits.begin(started);
        let mut wait = std::pin::pin!(wait);
        let mut suspended = false;
        let result = std::future::poll_fn(|cx| {
            let poll = wait.as_mut().poll(cx);
            suspended |= poll.is_pending();
            poll
        })
        .await;
        let now = Instant::now();
        let b = &mut self.budget;
        b.waits.end(started, now);
        b.last_check = now;
        if suspended {
            b.holding_since = now;
        }
        result
    }
}

/// The waits of a call in `fetch`: what the wall bound does not count.
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

/// The wall-time bound of one call into a guest, outside its waits.
pub(super) struct Bound {
    limit: Duration,
    /// When the call began (its budget was reset by `arm`): no clock read here.
    started: Instant,
    waits: Arc<Waits>,
}

/// The wall bound of the call `state` was armed for.
pub(super) fn watchdog(state: &PluginState) -> Bound {
    Bound {
        limit: wall_bound(&state.info),
        started: state.budget.last_check,
        waits: state.budget.waits.clone(),
    }
}

impl Bound {
    /// Runs `call` to its end, or `None` once it spent more than the limit outside its waits.
    ///
    /// The timer is armed only when the call is pending outside a wait: a call that ends in its
    /// first poll (nearly every hook) never touches the runtime's timer wheel.
    pub(crate) async fn run<T>(self, call: impl std::future::Future<Output = T>) -> Option<T> {
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

/// A call's wall-time bound outside its waits: ten times `timeout_ms`, at least five seconds more
/// than it. The epoch deadline stops guest code; this stops a call blocked in a WASI wait, where
/// epochs are not checked.
fn wall_bound(info: &PluginInfo) -> Duration {
    let timeout = Duration::from_millis(info.limits.timeout_ms);
    (timeout * 10).max(timeout + Duration::from_secs(5))
}

/// The message for a call the wall bound stopped.
pub(super) fn stuck(info: &PluginInfo, during: &str) -> String {
    format!(
        "blocked in {during} for more than {:.1} s (a WASI wait, not guest code); stopped",
        wall_bound(info).as_secs_f64()
    )
}

/// Why a call into the guest failed, in words: deadline, memory cap, or the trap and what the guest
/// printed before it.
pub(super) fn describe_failure(e: &wasmtime::Error, state: &PluginState, during: &str) -> String {
    if state.budget.deadline_hit {
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
    let stderr = state.stderr.text.lock().expect("stderr lock");
    let printed = stderr
        .lines()
        .filter(|l| !l.starts_with("note: run with"))
        .collect::<Vec<_>>()
        .join(" ");
    let what = match e.downcast_ref::<wasmtime::Trap>() {
        Some(trap) => format!("trapped in {during}: {trap}"),
        // Not a trap: the guest's answer could not be read (a string that is not UTF-8, an
        // out-of-range enum, a handle it does not own).
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
    async fn the_wall_bound_does_not_count_a_wait() {
        // Waiting on a fetch for four times the bound is not being stuck.
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
