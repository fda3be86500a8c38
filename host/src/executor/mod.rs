//! Stage 6: rows → requests → results, with bounded concurrency and backpressure.
//!
//! A dispatcher deals rows round-robin into `partitions` bounded queues; each partition has
//! `concurrency_limit` consumers. A consumer renders the row's request, sends it through the middleware
//! chain to the transport (behind the global rate limit) and hands the result to the sink channel. Every
//! queue is bounded, so a slow API or a slow sink holds the source back instead of filling memory.
//!
//! Partitions run on worker threads, each a single-threaded tokio runtime with its own shard of the
//! connection pool (as each legacy partition ran its own asyncio loop): a request, its connection and
//! its consumer stay on one thread, so sending a row wakes no other thread. Rows reach a worker and
//! results leave it in chunks, the only traffic between threads.

mod rate;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use futures::future::BoxFuture;
use tokio::sync::mpsc;

pub use rate::RateLimiter;

use crate::api::{ApiRequest, ApiResponse, RequestError};
use crate::chain::{Chain, Destination, Terminal, WORKER};
use crate::redact::Redactor;
use crate::render::RequestPlan;
use crate::report::Progress;
use crate::sink::{Record, id_key};
use crate::source::{RowStream, RowView, SourceError};
use crate::transport::HttpTransport;

/// The end of the chain: rate limit, then the pooled client.
pub struct Gate {
    pub rate: Option<RateLimiter>,
    pub transport: Arc<HttpTransport>,
}

impl Terminal for Gate {
    fn send(
        &self,
        request: Arc<ApiRequest>,
        _: Destination,
    ) -> BoxFuture<'_, Result<ApiResponse, RequestError>> {
        Box::pin(async move {
            if let Some(rate) = &self.rate {
                rate.acquire().await;
            }
            self.transport.send(request).await
        })
    }
}

/// Everything a consumer needs, shared.
pub struct Work {
    pub plan: RequestPlan,
    pub chain: Chain,
    /// The end of the chain: the rate limit, then the transport.
    pub terminal: Arc<dyn Terminal>,
    pub id_column: Option<usize>,
    pub landed: HashSet<u128>,
    pub redactor: Arc<Redactor>,
    pub progress: Arc<Progress>,
}

/// Why the executor stopped early. Rows already sent are still delivered to the sink; the rest are
/// sent by the next run.
#[derive(Debug, thiserror::Error)]
pub enum ExecuteError {
    #[error(transparent)]
    Source(#[from] SourceError),
    /// A worker thread or its runtime could not start: its partitions' rows could not be sent.
    #[error("executor: {0}")]
    Worker(String),
}

/// How the connections are warmed up before the first row (see [`warm_up`]).
pub struct WarmUp {
    pub gate: Arc<Gate>,
    pub base_url: String,
    pub timeout: std::time::Duration,
    /// At most this many connections (the rate limit's burst).
    pub max: Option<usize>,
}

/// Rows travel to a worker in chunks of up to this many (one cross-thread wake per chunk, not per row).
const CHUNK: usize = 32;

/// Runs every row of `rows` and sends each result to `results`. Returns when the source is exhausted
/// and every consumer is done, or with the source's error (already-sent rows are still delivered).
pub async fn run(
    work: Arc<Work>,
    mut rows: RowStream,
    partitions: usize,
    consumers: usize,
    warm: WarmUp,
    results: mpsc::Sender<Vec<Record>>,
) -> Result<(), ExecuteError> {
    // One worker thread per shard of the transport's connection pool.
    let workers = warm.gate.transport.workers();
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
        let (finished, finished_rx) = tokio::sync::oneshot::channel::<Result<(), String>>();
        done.push(finished_rx);
        std::thread::Builder::new()
            .name(format!("sparkwasm-worker-{}", index + 1))
            .spawn(move || {
                let _ = finished.send(worker(index + 1, mine, consumers, work, warm, results));
            })
            .map_err(|e| ExecuteError::Worker(format!("cannot start a worker thread: {e}")))?;
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
            outcome = outcome.and(Err(ExecuteError::Worker(e)));
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
    results: mpsc::Sender<Vec<Record>>,
) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime of worker {index}: {e}"))?;
    crate::transport::enter_worker(index);
    runtime.block_on(async move {
        warm_up(&warm, index, partitions.len() * consumers).await;
        let mut tasks = tokio::task::JoinSet::new();
        // Results leave the thread in chunks: whatever the consumers finished since the last send.
        let (local, mut finished) = mpsc::channel::<Record>(partitions.len() * consumers + CHUNK);
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
                tasks.spawn(WORKER.scope(slot, async move {
                    while let Ok(row) = rx.recv().await {
                        if let Some(record) = process(&work, partition, row).await
                            && results.send(record).await.is_err()
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
async fn warm_up(warm: &WarmUp, worker: usize, consumers: usize) {
    let quota = warm.gate.transport.quota(worker);
    let mut n = if quota == 0 {
        consumers
    } else {
        consumers.min(quota)
    };
    if let Some(max) = warm.max {
        n = n.min(max.max(1));
    }
    let head = || ApiRequest {
        method: http::Method::HEAD,
        url: warm.base_url.clone(),
        headers: vec![],
        body: None,
        metadata: Default::default(),
    };
    let opened = async {
        let first = warm
            .gate
            .send(Arc::new(head()), Destination::Endpoint)
            .await?;
        if first
            .metadata
            .get("http_version")
            .is_some_and(|v| v == "HTTP/2.0")
        {
            return Ok(1);
        }
        let rest = futures::future::join_all(
            (1..n).map(|_| warm.gate.send(Arc::new(head()), Destination::Endpoint)),
        )
        .await;
        Ok::<_, RequestError>(1 + rest.iter().filter(|r| r.is_ok()).count())
    };
    match tokio::time::timeout(warm.timeout, opened).await {
        Ok(Ok(connections)) => tracing::info!(worker, connections, "warm-up done"),
        Ok(Err(e)) => tracing::warn!(worker, error = %e, "warm-up: no connection could be opened"),
        Err(_) => tracing::warn!(worker, timeout = ?warm.timeout, "warm-up did not finish in time"),
    }
}

/// One row, start to finish. `None` when the row already landed in an earlier run.
async fn process(work: &Work, partition: usize, row: RowView) -> Option<Record> {
    let identity = identify(work, &row)?;
    let request_time_us = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64);
    let mut record = Record {
        request_id: identity.request_id,
        row_hash: identity.row_hash,
        request_time_us,
        ..Default::default()
    };
    let rendered = match identity.problem {
        Some(problem) => Err(RequestError::new(problem)),
        None => work.plan.render(&row),
    };
    let rendered = match rendered {
        Ok(r) => r,
        Err(e) => {
            let message = format!("row {}: {}", record.request_id, e.message);
            record.error_message = Some(work.redactor.text(&message).into_owned());
            record.request_headers = "{}".into();
            record.request_metadata = "{}".into();
            work.progress.done(false, 0, None);
            return Some(record);
        }
    };
    let mut request = rendered.request;
    request
        .metadata
        .insert("partition".into(), partition.to_string());
    record.method = request.method.to_string();
    record.request_params = work.redactor.text(&rendered.params_json).into_owned();
    if work.chain.is_empty() {
        record_sent(work, &mut record, &request);
    }
    let started = Instant::now();
    let outcome = work.chain.call(request, &*work.terminal).await;
    let latency = started.elapsed();
    record.attempts = outcome.attempts as i32;
    if let Some(sent) = &outcome.sent {
        // With middleware: what it actually sent (url, headers, metadata), not what the row rendered.
        record_sent(work, &mut record, sent);
    }
    match outcome.result {
        Ok(response) => {
            record.success = response.is_success();
            record.status_code = Some(response.status as i32);
            if !record.success {
                let reason = http::StatusCode::from_u16(response.status)
                    .ok()
                    .and_then(|s| s.canonical_reason())
                    .unwrap_or("");
                record.error_message = Some(
                    format!("HTTP {} {reason}", response.status)
                        .trim_end()
                        .to_owned(),
                );
            }
            record.response_headers = Some(work.redactor.headers(&response.headers));
            record.body_text = Some(
                work.redactor
                    .text(&String::from_utf8_lossy(&response.body))
                    .into_owned(),
            );
            record.response_metadata = Some(work.redactor.metadata(&response.metadata));
        }
        Err(e) => record.error_message = Some(work.redactor.text(&e.message).into_owned()),
    }
    work.progress.done(
        record.success,
        outcome.attempts.saturating_sub(1),
        Some(latency),
    );
    Some(record)
}

/// The request columns of the record (url, request_headers, request_metadata), redacted.
fn record_sent(work: &Work, record: &mut Record, request: &ApiRequest) {
    record.url = work.redactor.text(&request.url).into_owned();
    record.request_headers = work.redactor.headers(&request.headers);
    record.request_metadata = work.redactor.metadata(&request.metadata);
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
        let done = work.landed.contains(&id_key(id));
        if done {
            work.progress.skipped();
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
