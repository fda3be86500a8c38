//! sparkwasm: one HTTP request per row, through a middleware chain, landed exactly once in Delta.
//!
//! [`run`] reads top to bottom as the stages of a run: config → plugins → source → resume → execute →
//! sink → report. Each stage is a module of the same name.

pub mod api;
pub mod auth;
pub mod chain;
pub mod cli;
pub mod config;
pub mod executor;
pub mod plugin;
pub mod redact;
pub mod render;
pub mod report;
pub mod sink;
pub mod source;
pub mod spark;
pub mod transport;

use std::sync::Arc;

use tokio::sync::mpsc;

use chain::{Chain, Origin};
use config::Pipeline;
use executor::{Gate, RateLimiter, Work};
use redact::Redactor;
use render::RequestPlan;
use report::{Progress, Summary};
use sink::{BronzeSink, Record};

/// Why a run could not go on. Nothing was sent unless the source failed mid-way.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Plugin(#[from] plugin::PluginError),
    /// The first credential could not be acquired (token endpoint down, refused, garbage).
    #[error(transparent)]
    Auth(#[from] auth::AuthError),
    #[error(transparent)]
    Source(#[from] source::SourceError),
    #[error(transparent)]
    Execute(#[from] executor::ExecuteError),
    #[error(transparent)]
    Sink(#[from] sink::SinkError),
    #[error(transparent)]
    Transport(#[from] transport::TransportError),
    #[error("endpoint: {0}")]
    Endpoint(String),
    /// A task of the run panicked or was cancelled: a bug, reported rather than hidden.
    #[error("internal error: {0}")]
    Task(String),
}

/// What a finished run did.
pub struct RunReport {
    pub summary: Summary,
    /// How many batch commits the run made.
    pub commits: u64,
}

/// Runs a validated pipeline to the end.
pub async fn run(pipeline: &Pipeline) -> Result<RunReport, RunError> {
    // 2. plugins: verified, compiled (or from the cache), initialised before any row is read
    let exec = &pipeline.execution;
    let workers = transport::worker_threads(exec.partitions, pipeline.transport.connection_limit);
    // Partition p runs on worker p % workers, with concurrency_limit requests in flight.
    let in_flight: Vec<usize> = (0..workers)
        .map(|w| (0..exec.partitions).filter(|p| p % workers == w).count() * exec.concurrency_limit)
        .collect();
    let transport = Arc::new(transport::HttpTransport::new(
        &pipeline.transport,
        &in_flight,
    )?);
    // One redactor for the run: the config's secrets, and every credential acquired later.
    let redactor = Arc::new(Redactor::for_pipeline(pipeline));
    let plugins = plugin::load(pipeline, &transport, &redactor).await?;
    // auth: the first credential before anything else (a token endpoint that is down stops the run)
    let strategy = auth::Strategy::new(
        &pipeline.auth,
        transport.clone(),
        plugins
            .auth
            .map(|a| Box::new(a) as Box<dyn auth::Authenticator>),
        redactor.clone(),
    )?;
    strategy.prepare().await?;
    // 3. source: schema checked before any request
    let rows = source::open(pipeline, &RequestPlan::used_columns(pipeline)).await?;
    let plan = RequestPlan::new(pipeline, &rows.schema).map_err(RunError::Endpoint)?;
    let id_column = pipeline
        .source
        .id_column
        .as_ref()
        .and_then(|c| rows.schema.index_of(c).ok());
    // 4. resume: what already landed is skipped
    // Each shard commits under its own txn app id: N hosts write one table without sharing a version.
    let app_id = match pipeline.shard {
        None => format!("sparkwasm/{}", pipeline.id),
        Some(s) => format!("sparkwasm/{}/shard-{}-of-{}", pipeline.id, s.index, s.count),
    };
    let (mut sink, resume) = BronzeSink::open(pipeline, &app_id).await?;
    if resume.resuming || !resume.landed.is_empty() {
        tracing::info!(
            landed = resume.landed.len(),
            last_batch = resume.last_version,
            resuming = resume.resuming,
            "resuming: rows already landed are skipped"
        );
    }
    // 6. execute: middleware chain -> auth -> rate limit -> transport
    let gate = Arc::new(Gate {
        rate: exec.max_requests_per_second.map(RateLimiter::new),
        transport,
    });
    let warm = executor::WarmUp {
        gate: gate.clone(),
        base_url: pipeline.endpoint.base_url.to_string(),
        timeout: pipeline.transport.warmup_timeout,
        max: exec.max_requests_per_second.map(|r| r.ceil() as usize),
    };
    let terminal = Arc::new(auth::AuthGate {
        strategy,
        credentials: auth::Static::headers(&pipeline.credentials),
        next: gate,
    });
    let endpoint = Origin::of(pipeline.endpoint.base_url.as_str()).ok();
    let progress = Arc::new(Progress::default());
    let display = progress.show(rows.total_rows);
    let work = Arc::new(Work {
        plan,
        chain: Chain::new(plugins.layers, endpoint),
        terminal,
        id_column,
        landed: resume.landed,
        redactor,
        progress: progress.clone(),
    });
    // Chunks of results from the worker threads (a few per worker in flight).
    let (results_tx, mut results) = mpsc::channel::<Vec<Record>>(workers * 4);
    let executor = tokio::spawn(executor::run(
        work,
        rows,
        exec.partitions,
        exec.concurrency_limit,
        warm,
        results_tx,
    ));

    // 7. sink: batches of batch_size results, committed while the next batch fills
    let (batches_tx, mut batches) = mpsc::channel::<Vec<Record>>(1);
    let committer = tokio::spawn(async move {
        let mut commits = 0u64;
        while let Some(batch) = batches.recv().await {
            let version = sink.commit(&batch).await?;
            commits += 1;
            tracing::debug!(rows = batch.len(), version, "batch committed");
        }
        Ok::<_, sink::SinkError>((sink, commits))
    });
    let mut batch = Vec::with_capacity(exec.batch_size);
    'collect: while let Some(chunk) = results.recv().await {
        for record in chunk {
            batch.push(record);
            if batch.len() >= exec.batch_size
                && batches_tx
                    .send(std::mem::replace(
                        &mut batch,
                        Vec::with_capacity(exec.batch_size),
                    ))
                    .await
                    .is_err()
            {
                break 'collect;
            }
        }
    }
    if !batch.is_empty() {
        let _ = batches_tx.send(batch).await;
    }
    drop(batches_tx);
    let (mut sink, commits) = committer
        .await
        .map_err(|e| RunError::Task(format!("the sink task stopped: {e}")))??;
    executor
        .await
        .map_err(|e| RunError::Task(format!("the executor task stopped: {e}")))??;
    sink.finish().await?;
    drop(display);
    // 8. report
    Ok(RunReport {
        summary: progress.summary(),
        commits,
    })
}
