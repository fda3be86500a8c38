//! Which worker runs the current code. The executor runs partitions on worker threads; each keeps
//! its own pools (connections, plugin instances), found by the thread's index; each consumer task
//! carries its slot (partition, consumer), which plugins see through `host.whoami`.

use std::cell::Cell;

thread_local! {
    /// The worker index of the current thread (1-based): 0 outside the executor's worker threads.
    static THREAD: Cell<usize> = const { Cell::new(0) };
}

tokio::task_local! {
    /// The (partition, consumer) slot running the current task's rows.
    static SLOT: (u32, u32);
}

/// Makes the current thread worker `index` (1-based) for every per-worker pool.
pub fn enter_thread(index: usize) {
    THREAD.with(|t| t.set(index));
}

/// The pool of the current thread among `pools` (pool 0 for threads that are not workers).
pub fn pool_index(pools: usize) -> usize {
    THREAD.with(|t| t.get()).min(pools.saturating_sub(1))
}

/// Runs `task` as the consumer `slot` (partition, consumer).
pub async fn as_slot<F: std::future::Future>(slot: (u32, u32), task: F) -> F::Output {
    SLOT.scope(slot, task).await
}

/// The slot of the current task; (0, 0) outside a consumer.
pub fn slot() -> (u32, u32) {
    SLOT.try_with(|s| *s).unwrap_or((0, 0))
}
