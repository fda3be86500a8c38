//! sparkwasm: one HTTP request per row, through a chain of sandboxed WebAssembly middleware, landed
//! exactly once in a Delta table.
//!
//! [`run`] reads top to bottom as the stages of a run, each a module: [`config`] (a validated
//! pipeline) → [`plugin`] (the middleware, loaded) → [`source`] (rows) → [`resume`] (what already
//! landed) → [`execute`] (rows → requests → outcomes) → [`sink`] (outcomes → the bronze table) →
//! [`report`] (progress and summary). A stage imports earlier stages and the vocabulary every stage
//! shares ([`api`], [`chain`], [`credential`], [`redact`], [`say`], [`events`], [`worker`],
//! [`builtins`], [`bronze`], [`delta`], [`store`], [`spark`]), never a later stage.

#![warn(missing_docs, unreachable_pub)]

pub mod api;
pub mod bronze;
pub mod builtins;
pub mod chain;
pub mod config;
pub mod credential;
pub mod delta;
pub mod events;
pub mod execute;
pub mod plugin;
pub mod redact;
pub mod report;
pub mod resume;
pub mod say;
pub mod sink;
pub mod source;
pub mod spark;
pub mod store;
pub mod worker;

use std::sync::Arc;

use tokio::sync::mpsc;

use api::Sender;
use chain::{Chain, Origin};
use config::Pipeline;
use events::Events;
use execute::auth::{Static, Strategy};
use execute::end::ChainEnd;
use execute::render::RequestPlan;
use execute::transport::HttpTransport;
use execute::{Layout, WarmUp, Work};
use redact::Redactor;
use report::{Progress, Summary};
use resume::Resume;
use sink::BronzeSink;

/// Why a run could not go on. Nothing was sent unless the source failed mid-way.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A plugin could not be loaded.
    #[error(transparent)]
    Plugin(#[from] plugin::PluginError),
    /// The first credential could not be acquired (token endpoint down, refused, garbage).
    #[error(transparent)]
    Auth(#[from] execute::auth::AuthError),
    /// The source could not be opened or read.
    #[error(transparent)]
    Source(#[from] source::SourceError),
    /// The sink could not be read.
    #[error(transparent)]
    Resume(#[from] resume::ResumeError),
    /// The executor stopped.
    #[error(transparent)]
    Execute(#[from] execute::ExecuteError),
    /// The sink could not be opened or written.
    #[error(transparent)]
    Sink(#[from] sink::SinkError),
    /// The TLS material could not be read.
    #[error(transparent)]
    Transport(#[from] execute::transport::TransportError),
    /// The endpoint template does not fit the source's schema.
    #[error(transparent)]
    Render(#[from] execute::render::RenderError),
    /// A task of the run panicked or was cancelled: a bug, reported rather than hidden.
    #[error("internal error: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// What a finished run did.
pub struct RunReport {
    /// Rows, outcomes, latency, rate.
    pub summary: Summary,
    /// How many batch commits the run made.
    pub commits: u64,
    /// The plugins it ran (name, source, digest, signature).
    pub plugins: Vec<plugin::PluginSummary>,
}

/// A dry run of a validated pipeline: the first `rows` rows' requests rendered and sent through the
/// middleware chain and the auth stage to an end that sends nothing; what each would have sent, secrets
/// redacted. Plugins are loaded (and may be pulled from a registry) as for a run; no credential is
/// acquired, the sink is neither read nor written, the API sees no request.
pub async fn dry_run(
    pipeline: &Pipeline,
    rows: usize,
) -> Result<Vec<execute::dry::DryRow>, RunError> {
    let events = Events::new(Vec::new());
    let redactor = Arc::new(Redactor::new(pipeline.secret_values()));
    let layout = Layout::of(pipeline);
    // Plugins (an auth plugin's init and apply) and OAuth2 get a sender that refuses everything.
    let sender: Arc<dyn Sender> = Arc::new(execute::dry::Refuse);
    let plugins = plugin::load(pipeline, layout.workers(), &sender, &redactor).await?;
    let strategy = Strategy::new(
        &pipeline.auth,
        sender,
        plugins.auth.map(|a| Box::new(a) as _),
        redactor.clone(),
        events,
    )?;
    let mut stream = source::open(pipeline, &RequestPlan::used_columns(pipeline)).await?;
    let plan = RequestPlan::new(pipeline, &stream.schema)?;
    let id_column = pipeline
        .source
        .as_ref()
        .and_then(|s| s.id_column.as_ref())
        .and_then(|c| stream.schema.index_of(c).ok());
    let mut first = Vec::with_capacity(rows.min(source::READ_BATCH_ROWS));
    while first.len() < rows {
        let Some(batch) = stream.batches.recv().await else {
            break;
        };
        let batch = Arc::new(batch?);
        let take = batch.num_rows().min(rows - first.len());
        first.extend((0..take).map(|row| source::RowView {
            batch: batch.clone(),
            row,
        }));
    }
    let chain = Chain::new(
        plugins.layers,
        Origin::of(pipeline.endpoint.base_url.as_str()).ok(),
    );
    let end = execute::dry::DryEnd::new(strategy, Static::headers(&pipeline.credentials));
    Ok(execute::dry::run(&plan, &chain, &end, id_column, first, &redactor).await)
}

/// Runs a validated pipeline to the end; `observers` get the run's events besides its own
/// progress display.
pub async fn run(
    pipeline: &Pipeline,
    observers: Vec<Arc<dyn events::Observer>>,
) -> Result<RunReport, RunError> {
    let progress = Arc::new(Progress::default());
    let events = Events::new(
        std::iter::once(progress.clone() as Arc<dyn events::Observer>)
            .chain(observers)
            .collect(),
    );
    // One redactor for the run: the config's secrets, and every credential acquired later.
    let redactor = Arc::new(Redactor::new(pipeline.secret_values()));
    let layout = Layout::of(pipeline);
    let transport = Arc::new(HttpTransport::new(
        &pipeline.transport,
        &layout.in_flight,
        &layout.partitions_on,
    )?);
    let sender: Arc<dyn Sender> = transport.clone();

    // 2. plugins: verified, compiled (or from the cache), initialised before any row is read
    let plugins = plugin::load(pipeline, transport.shards(), &sender, &redactor).await?;
    let plugin_summaries = plugins.summaries.clone();
    let exec = &pipeline.execution;
    tracing::info!(
        pipeline = %pipeline.id,
        source = ?pipeline.source.as_ref().map(|s| &s.location),
        sink = %pipeline.sink,
        partitions = exec.partitions,
        concurrency_limit = exec.concurrency_limit,
        max_requests_per_second = ?exec.max_requests_per_second,
        batch_size = exec.batch_size,
        plugins = ?plugin_summaries.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
        "run starts"
    );
    // The first credential before anything else: a token endpoint that is down stops the run.
    let strategy = Strategy::new(
        &pipeline.auth,
        sender,
        plugins.auth.map(|a| Box::new(a) as _),
        redactor.clone(),
        events.clone(),
    )?;
    strategy.prepare().await?;

    // 4. resume: what already landed is skipped
    let mut resume = Resume::read(pipeline).await?;
    if resume.resuming || !resume.landed.is_empty() {
        tracing::info!(
            landed = resume.landed.len(),
            last_batch = resume.last_version,
            resuming = resume.resuming,
            "resuming: rows already landed are skipped"
        );
    }
    let mut sink = BronzeSink::open(pipeline, &resume).await?;

    // 5. execute: middleware chain → credentials → rate limit → transport
    let chain = Arc::new(Chain::new(
        plugins.layers,
        Origin::of(pipeline.endpoint.base_url.as_str()).ok(),
    ));
    let end = Arc::new(ChainEnd::new(
        strategy,
        Static::headers(&pipeline.credentials),
        exec,
        transport.clone(),
        events.clone(),
    ));
    let classifier = Arc::new(execute::classify::Classifier::new(pipeline));
    let mut commits = 0;
    // Passes over the rows (execution.max_attempts): each skips what landed, so a later pass sends
    // exactly the rows that failed retryably in the one before.
    for pass in 1..=exec.max_attempts {
        // 3. source: the schema checked before any request
        let rows = source::open(pipeline, &RequestPlan::used_columns(pipeline)).await?;
        let plan = RequestPlan::new(pipeline, &rows.schema)?;
        let id_column = pipeline
            .source
            .as_ref()
            .and_then(|s| s.id_column.as_ref())
            .and_then(|c| rows.schema.index_of(c).ok());
        let warm = WarmUp {
            base_url: pipeline.endpoint.base_url.to_string(),
            timeout: pipeline.transport.warmup_timeout,
            connections: if pass > 1 {
                Vec::new()
            } else {
                (1..=layout.workers())
                    .map(|w| {
                        let n = transport.quota(w);
                        exec.max_requests_per_second
                            .map_or(n, |r| n.min((r.ceil() as usize).max(1)))
                    })
                    .collect()
            },
        };
        let work = Arc::new(Work {
            plan,
            chain: chain.clone(),
            end: end.clone(),
            id_column,
            landed: std::mem::take(&mut resume.landed),
            events: events.clone(),
            classifier: classifier.clone(),
        });
        let display = progress.show(rows.total_rows);
        // Outcomes leave the worker threads in chunks (a few per worker in flight).
        let (outcomes_tx, outcomes) = mpsc::channel(layout.workers() * 4);
        let executor = {
            let layout = layout.clone();
            tokio::spawn(async move { execute::run(work, rows, &layout, warm, outcomes_tx).await })
        };

        // 6. sink: batches of batch_size, each committed while the next fills
        let (landed, n) = sink
            .land(outcomes, exec.batch_size, redactor.clone(), events.clone())
            .await?;
        sink = landed;
        commits += n;
        executor.await??;
        drop(display);
        if pass == exec.max_attempts || progress.to_retry() == 0 {
            break;
        }
        tracing::info!(
            pass = pass + 1,
            rows = progress.to_retry(),
            "another pass: sending again the rows that failed retryably"
        );
        progress.next_pass();
        resume = Resume::read(pipeline).await?;
    }
    sink.finish().await?;

    // 7. report
    Ok(RunReport {
        summary: progress.summary(),
        commits,
        plugins: plugin_summaries,
    })
}

#[cfg(test)]
mod layers {
    //! The module house, checked: a stage imports earlier stages and the vocabulary, never a later
    //! stage; the vocabulary imports no stage.

    /// The stages in run order, then the vocabulary (rank 0).
    const STAGES: [&str; 7] = [
        "config", "plugin", "source", "resume", "execute", "sink", "report",
    ];
    const VOCABULARY: [&str; 12] = [
        "api",
        "bronze",
        "builtins",
        "chain",
        "credential",
        "delta",
        "events",
        "redact",
        "say",
        "spark",
        "store",
        "worker",
    ];

    fn rank(module: &str) -> Option<usize> {
        if VOCABULARY.contains(&module) {
            return Some(0);
        }
        STAGES.iter().position(|s| *s == module).map(|i| i + 1)
    }

    #[test]
    fn no_module_imports_a_later_stage() {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut back_edges = Vec::new();
        let mut stack = vec![src.clone()];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    stack.push(path);
                    continue;
                }
                let rel = path.strip_prefix(&src).unwrap();
                let top = rel
                    .components()
                    .next()
                    .unwrap()
                    .as_os_str()
                    .to_string_lossy()
                    .trim_end_matches(".rs")
                    .to_owned();
                // The binary and the crate root wire everything together.
                let Some(own) = rank(&top) else { continue };
                let text = std::fs::read_to_string(&path).unwrap();
                for (n, line) in text.lines().enumerate() {
                    for (i, _) in line.match_indices("crate::") {
                        let target: String = line[i + 7..]
                            .chars()
                            .take_while(|c| c.is_alphanumeric() || *c == '_')
                            .collect();
                        let Some(theirs) = rank(&target) else {
                            continue;
                        };
                        let back = if own == 0 { theirs > 0 } else { theirs > own };
                        if back && target != top {
                            back_edges.push(format!(
                                "{}:{}: {top} -> {target}",
                                rel.display(),
                                n + 1
                            ));
                        }
                    }
                }
            }
        }
        assert!(
            back_edges.is_empty(),
            "imports of a later stage:\n{}",
            back_edges.join("\n")
        );
    }
}
