//! Stage 5: rows → requests → outcomes, with bounded concurrency and backpressure.
//!
//! A dispatcher deals rows round-robin into `partitions` bounded queues; each partition has
//! `concurrency_limit` consumers. A consumer renders the row's request ([`render`]), sends it through
//! the middleware chain to the chain's end ([`end`]: credentials, rate limit, transport) and hands
//! the outcome to the sink's channel. Every queue is bounded, so a slow API or a slow sink holds the
//! source back instead of filling memory.
//!
//! Partitions run on worker threads, each a single-threaded tokio runtime with its own shard of the
//! connection pool (as each legacy partition ran its own asyncio loop): a request, its connection and
//! its consumer stay on one thread, so sending a row wakes no other thread. Rows reach a worker and
//! outcomes leave it in chunks, the only traffic between threads.

mod adaptive;
pub mod auth;
pub mod classify;
pub mod dry;
pub mod end;
mod rate;
pub mod render;
pub mod transport;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc;

use crate::api::{ApiRequest, ApiResponse, RequestError};
use crate::chain::Chain;
use crate::config::Pipeline;
use crate::events::{Event, Events};
use crate::resume::Landed;
use crate::source::{RowStream, RowView, SourceError};
use end::ChainEnd;
use render::{RenderError, RequestPlan};

/// A worker thread's stack (reserved, touched as used).
const WORKER_STACK: usize = 4 << 20;

/// How a run's rows are spread over threads: partition `p` runs on worker `p % workers`, each
/// partition with `concurrency_limit` consumers (requests in flight).
#[derive(Clone, Debug)]
pub struct Layout {
    /// Partitions (event loops), as configured.
    pub partitions: usize,
    /// Consumers per partition.
    pub consumers: usize,
    /// Requests in flight on each worker thread (one entry per thread).
    pub in_flight: Vec<usize>,
    /// Partitions on each worker thread.
    pub partitions_on: Vec<usize>,
}

impl Layout {
    /// The layout of `pipeline` on this machine: one worker thread per partition, at most one per
    /// core.
    pub fn of(pipeline: &Pipeline) -> Self {
        let exec = &pipeline.execution;
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let workers = exec.partitions.min(cores).max(1);
        let on = |w: usize| (0..exec.partitions).filter(|p| p % workers == w).count();
        Layout {
            partitions: exec.partitions,
            consumers: exec.concurrency_limit,
            in_flight: (0..workers)
                .map(|w| on(w) * exec.concurrency_limit)
                .collect(),
            partitions_on: (0..workers).map(on).collect(),
        }
    }

    /// Worker threads.
    pub fn workers(&self) -> usize {
        self.in_flight.len()
    }
}

/// Everything a consumer needs, shared.
pub struct Work {
    /// The endpoint template compiled against the source's schema.
    pub plan: RequestPlan,
    /// The middleware.
    pub chain: Arc<Chain>,
    /// Where requests leave the chain.
    pub end: Arc<ChainEnd>,
    /// The source column whose value is the request_id (else the row's hash).
    pub id_column: Option<usize>,
    /// What landed in earlier runs: skipped.
    pub landed: Landed,
    /// Where the executor reports rows and requests.
    pub events: Events,
    /// How a result counts (success, sent again, failed for good).
    pub classifier: Arc<classify::Classifier>,
}

/// One row's result, for the sink.
pub struct RowOutcome {
    /// The row's id (the id_column's value, else its content hash).
    pub request_id: String,
    /// The hash of the row's content.
    pub row_hash: String,
    /// When the row started, µs since the Unix epoch (UTC).
    pub request_time_us: i64,
    /// The rendered request's parameters (`request_params`); `None` when no request could be
    /// rendered (the result then says why).
    pub params_json: Option<String>,
    /// The request as the chain's last attempt sent it (or as rendered, when nothing was sent).
    pub sent: Option<Arc<ApiRequest>>,
    /// The API's answer, or why there is none.
    pub result: Result<ApiResponse, RequestError>,
    /// Sends to the network.
    pub attempts: u32,
    /// How the result counts.
    pub verdict: classify::Verdict,
    /// Why an answer the status calls success does not count (a body that breaks the response
    /// schema).
    pub rejection: Option<String>,
}

/// Why the executor stopped early. Rows already sent are still delivered to the sink; the rest are
/// sent by the next run.
#[derive(Debug, thiserror::Error)]
pub enum ExecuteError {
    /// The source failed mid-way.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// A worker thread or its runtime could not start: its partitions' rows could not be sent.
    #[error("executor: cannot start worker {worker}: {source}")]
    Worker {
        /// Which worker (1-based).
        worker: usize,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The endpoint template does not fit the source.
    #[error(transparent)]
    Render(#[from] RenderError),
}

/// How the connections are warmed up before the first row (see [`warm_up`]).
pub struct WarmUp {
    /// The URL HEAD requests go to (the endpoint's root).
    pub base_url: String,
    /// The longest the warm-up may take.
    pub timeout: Duration,
    /// Connections to open on each worker (one entry per worker thread).
    pub connections: Vec<usize>,
}

/// Rows travel to a worker in chunks of up to this many (one cross-thread wake per chunk, not per row).
const CHUNK: usize = 32;

/// Runs every row of `rows` and sends each result to `results`. Returns when the source is exhausted
/// and every consumer is done, or with the source's error (already-sent rows are still delivered).
pub async fn run(
    work: Arc<Work>,
    mut rows: RowStream,
    layout: &Layout,
    warm: WarmUp,
    results: mpsc::Sender<Vec<RowOutcome>>,
) -> Result<(), ExecuteError> {
    let (workers, partitions, consumers) = (layout.workers(), layout.partitions, layout.consumers);
    let warm = Arc::new(warm);
    let mut queues = Vec::with_capacity(partitions);
    let mut receivers: Vec<Vec<(usize, async_channel::Receiver<Vec<RowView>>)>> =
        (0..workers).map(|_| Vec::new()).collect();
    for partition in 0..partitions {
        // Two chunks in flight per partition: one being worked, one waiting.
        let (tx, rx) = async_channel::bounded::<Vec<RowView>>(2);
        queues.push(tx);
        receivers[partition % workers].push((partition, rx));
    }
    let mut done = Vec::with_capacity(workers);
    for (index, mine) in receivers.into_iter().enumerate() {
        let (work, results, warm) = (work.clone(), results.clone(), warm.clone());
        let (finished, finished_rx) = tokio::sync::oneshot::channel::<Result<(), ExecuteError>>();
        done.push(finished_rx);
        std::thread::Builder::new()
            .name(format!("sparkwasm-worker-{}", index + 1))
            // Plugin hooks run on this stack (see plugin::stack): wasmtime lets a guest use 512
            // KiB of it below the call, and the host's frames need room around that.
            .stack_size(WORKER_STACK)
            .spawn(move || {
                let _ = finished.send(worker(index + 1, mine, consumers, work, warm, results));
            })
            .map_err(|source| ExecuteError::Worker {
                worker: index + 1,
                source,
            })?;
    }
    drop(results);
    let mut outcome: Result<(), ExecuteError> = Ok(());
    let mut turn = 0;
    let mut pending: Vec<Vec<RowView>> = (0..partitions).map(|_| Vec::new()).collect();
    'read: while let Some(batch) = rows.batches.recv().await {
        let batch = match batch {
            Ok(b) => Arc::new(b),
            Err(e) => {
                outcome = Err(e.into());
                break;
            }
        };
        for row in 0..batch.num_rows() {
            pending[turn].push(RowView {
                batch: batch.clone(),
                row,
            });
            if pending[turn].len() == CHUNK {
                let chunk = std::mem::replace(&mut pending[turn], Vec::with_capacity(CHUNK));
                if queues[turn].send(chunk).await.is_err() {
                    break 'read;
                }
            }
            turn = (turn + 1) % partitions;
        }
        // The end of a source batch: what is left goes now, so that a slow source does not hold
        // rows back.
        for (queue, chunk) in queues.iter().zip(pending.iter_mut()) {
            if !chunk.is_empty() && queue.send(std::mem::take(chunk)).await.is_err() {
                break 'read;
            }
        }
    }
    drop(queues);
    // A worker that could not start dropped its queues (the dispatch above stopped there): its
    // error is the run's.
    for finished in done {
        if let Ok(Err(e)) = finished.await {
            outcome = outcome.and(Err(e));
        }
    }
    outcome
}

/// One worker thread: a single-threaded runtime running the consumers of its partitions.
fn worker(
    index: usize,
    partitions: Vec<(usize, async_channel::Receiver<Vec<RowView>>)>,
    consumers: usize,
    work: Arc<Work>,
    warm: Arc<WarmUp>,
    results: mpsc::Sender<Vec<RowOutcome>>,
) -> Result<(), ExecuteError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| ExecuteError::Worker {
            worker: index,
            source,
        })?;
    crate::worker::enter_thread(index);
    runtime.block_on(async move {
        warm_up(&work.end, &warm, index).await;
        let mut tasks = tokio::task::JoinSet::new();
        // Results leave the thread in chunks: whatever the consumers finished since the last send.
        let (local, mut finished) =
            mpsc::channel::<RowOutcome>(partitions.len() * consumers + CHUNK);
        let forward = tokio::spawn(async move {
            let mut chunk = Vec::with_capacity(CHUNK * 4);
            while finished.recv_many(&mut chunk, CHUNK * 4).await > 0 {
                let full = std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK * 4));
                if results.send(full).await.is_err() {
                    return;
                }
            }
        });
        for (partition, chunks) in partitions {
            // The partition's rows, one at a time, to its consumers (same thread: no wake-up cost).
            let (tx, rx) = async_channel::bounded::<RowView>(consumers);
            tasks.spawn(async move {
                while let Ok(chunk) = chunks.recv().await {
                    for row in chunk {
                        if tx.send(row).await.is_err() {
                            return;
                        }
                    }
                }
            });
            for consumer in 0..consumers {
                let (rx, work, results) = (rx.clone(), work.clone(), local.clone());
                let slot = (partition as u32, consumer as u32);
                tasks.spawn(crate::worker::as_slot(slot, async move {
                    while let Ok(row) = rx.recv().await {
                        if let Some(outcome) = process(&work, partition, row).await
                            && results.send(outcome).await.is_err()
                        {
                            return;
                        }
                    }
                }));
            }
        }
        drop(local);
        while tasks.join_next().await.is_some() {}
        let _ = forward.await;
    });
    Ok(())
}

/// Opens this worker's connections before its first row, within `warmup_timeout`: one HEAD request
/// first; if the server speaks HTTP/2 that one connection carries everything, else as many HEAD
/// requests at once as connections the worker will use. A failure here is only logged; the rows
/// report their own errors.
async fn warm_up(end: &ChainEnd, warm: &WarmUp, worker: usize) {
    if warm.connections.is_empty() {
        return; // a later pass: the connections are open
    }
    let n = warm
        .connections
        .get(worker - 1)
        .copied()
        .unwrap_or(1)
        .max(1);
    let head = || ApiRequest {
        method: http::Method::HEAD,
        url: warm.base_url.clone(),
        headers: vec![],
        body: None,
        metadata: Default::default(),
    };
    let opened = async {
        let first = end.network(Arc::new(head())).await?;
        if first
            .metadata
            .get("http_version")
            .is_some_and(|v| v == "HTTP/2.0")
        {
            return Ok(1);
        }
        let rest = futures::future::join_all((1..n).map(|_| end.network(Arc::new(head())))).await;
        Ok::<_, RequestError>(1 + rest.iter().filter(|r| r.is_ok()).count())
    };
    match tokio::time::timeout(warm.timeout, opened).await {
        Ok(Ok(connections)) => tracing::info!(worker, connections, "warm-up done"),
        Ok(Err(e)) => tracing::warn!(worker, error = %e, "warm-up: no connection could be opened"),
        Err(_) => tracing::warn!(worker, timeout = ?warm.timeout, "warm-up did not finish in time"),
    }
}

/// One row, start to finish. `None` when the row already landed in an earlier run.
async fn process(work: &Work, partition: usize, row: RowView) -> Option<RowOutcome> {
    let identity = identify(work, &row)?;
    let request_time_us = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64);
    let rendered = match identity.problem {
        Some(problem) => Err(RequestError::new(problem)),
        None => work.plan.render(&row),
    };
    let mut outcome = RowOutcome {
        request_id: identity.request_id,
        row_hash: identity.row_hash,
        request_time_us,
        params_json: None,
        sent: None,
        result: Err(RequestError::new("")),
        attempts: 0,
        verdict: classify::Verdict::Final,
        rejection: None,
    };
    let rendered = match rendered {
        Ok(r) => r,
        Err(e) => {
            // It cannot be built (a null id or placeholder): it never will be.
            outcome.result = Err(RequestError::of(
                crate::api::ErrorKind::InvalidRequest,
                format!("row {}: {}", outcome.request_id, e.message),
            ));
            work.events.emit(Event::RowDone {
                success: false,
                retryable: false,
                retries: 0,
                latency: None,
            });
            return Some(outcome);
        }
    };
    let mut request = rendered.request;
    request
        .metadata
        .insert("partition".into(), partition.to_string());
    outcome.params_json = Some(rendered.params_json);
    let started = Instant::now();
    let trip = work.chain.call(request, &*work.end).await;
    let latency = started.elapsed();
    if let Some(plugin) = &trip.blamed {
        work.events.emit(Event::PluginFailed { plugin });
    }
    outcome.attempts = trip.attempts;
    outcome.sent = Some(trip.sent);
    outcome.result = trip.result;
    (outcome.verdict, outcome.rejection) = work
        .classifier
        .judge(&outcome.result, trip.blamed.is_some());
    work.events.emit(Event::RowDone {
        success: outcome.verdict == classify::Verdict::Success,
        retryable: outcome.verdict == classify::Verdict::Retry,
        retries: trip.attempts.saturating_sub(1),
        latency: Some(latency),
    });
    Some(outcome)
}

/// Who a row is: its request_id (the id_column's value, else the content hash) and its content hash,
/// each computed once.
struct Identity {
    request_id: String,
    row_hash: String,
    /// Why the row cannot be sent (a null id): it is recorded as failed under its hash.
    problem: Option<&'static str>,
}

/// The row's identity, or `None` when it already landed in an earlier run. The id column is checked
/// against the landed set before the row is hashed, so resumed rows cost one lookup.
fn identify(work: &Work, row: &RowView) -> Option<Identity> {
    let landed = |id: &str| {
        let done = work.landed.contains(id);
        if done {
            work.events.emit(Event::RowSkipped);
        }
        done
    };
    let (request_id, row_hash, problem) = match work.id_column.map(|i| row.cell(i).to_text()) {
        Some(Some(id)) => {
            if landed(&id) {
                return None;
            }
            (id, row.content_hash(), None)
        }
        Some(None) => {
            let hash = row.content_hash();
            (hash.clone(), hash, Some("id_column is null in this row"))
        }
        None => {
            let hash = row.content_hash();
            if landed(&hash) {
                return None;
            }
            (hash.clone(), hash, None)
        }
    };
    Some(Identity {
        request_id,
        row_hash,
        problem,
    })
}
