//! Stage 6: the bronze table. Outcomes come in from the executor, become records (their secrets
//! redacted, [`record`]) and land in batches of `batch_size`: one Delta commit per batch carrying
//! txn(app_id, version) ([`delta`]), or one Spark append ([`spark`]), or both. A batch is committed
//! while the next one fills; the channel between them holds one batch, so a slow sink holds the
//! executor (and the source) back.

mod delta;
mod record;
mod spark;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc;

pub use delta::DeltaSink;
pub use record::{Record, to_batch};
pub use spark::SparkSink;

use crate::bronze;
use crate::config::Pipeline;
use crate::events::{Event, Events};
use crate::execute::RowOutcome;
use crate::redact::Redactor;
use crate::resume::{Resume, spark_landed};

/// Where the bronze batches go: a Delta table (commits with txn ids), a Spark catalog table, or both.
pub enum BronzeSink {
    /// A Delta table.
    Delta(DeltaSink),
    /// A Spark catalog table.
    Spark(Box<SparkSink>),
    /// The Delta table is the record (resume, exactly-once); each batch committed there is then
    /// appended to the Spark table with the same batch_id. On open, successful rows the Delta table
    /// has and the Spark table lacks (a run killed between the two) are appended to the Spark table.
    Both {
        /// The record.
        delta: DeltaSink,
        /// Its copy in the Spark catalog.
        mirror: Box<SparkSink>,
    },
}

/// The sink could not be opened or written.
#[derive(Debug, thiserror::Error)]
#[error("sink {path}: {message}")]
pub struct SinkError {
    path: String,
    message: String,
}

/// The pipeline's Delta table, once the store is known to keep its writers apart (see
/// [`delta::check_concurrent_commits`]).
async fn open_delta(pipeline: &Pipeline, resume: &Resume) -> Result<DeltaSink, SinkError> {
    let sink = &pipeline.sink;
    let shards = pipeline.shard.as_ref().map_or(1, |s| s.count);
    delta::check_concurrent_commits(&sink.location, shards).await?;
    DeltaSink::open(&sink.location, resume, &layout(sink)).await
}

impl BronzeSink {
    /// Opens the pipeline's sink for the run `resume` describes (creating the table if it is not
    /// there: a missing namespace or a refused permission stops the run before any request).
    pub async fn open(pipeline: &Pipeline, resume: &Resume) -> Result<Self, SinkError> {
        let sink = &pipeline.sink;
        match (&sink.spark_table, &sink.mirror, &pipeline.spark) {
            (Some(table), _, Some(spark)) => Ok(BronzeSink::Spark(Box::new(
                SparkSink::open(&spark.remote, table, resume.last_version + 1).await?,
            ))),
            (None, Some(table), Some(spark)) => {
                let delta = open_delta(pipeline, resume).await?;
                let mirror = SparkSink::open(&spark.remote, table, 1).await?;
                let (mirrored, _) =
                    spark_landed(&spark.remote, table, &crate::resume::landed_rule(pipeline))
                        .await
                        .map_err(|e| SinkError {
                            path: table.clone(),
                            message: e.to_string(),
                        })?;
                let missing: std::collections::HashSet<u128> = resume
                    .landed
                    .keys()
                    .difference(mirrored.keys())
                    .copied()
                    .collect();
                if !missing.is_empty() {
                    let fail = |message: String| SinkError {
                        path: sink.location.to_string(),
                        message,
                    };
                    let files = crate::delta::data_files(&sink.location)
                        .await
                        .map_err(|e| fail(e.message().to_owned()))?;
                    let batches = tokio::task::spawn_blocking(move || {
                        bronze::successful_rows(&files, &missing)
                    })
                    .await
                    .map_err(|e| fail(e.to_string()))?
                    .map_err(|e| fail(e.to_string()))?;
                    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
                    for batch in batches {
                        mirror.append(batch).await?;
                    }
                    tracing::info!(rows, table = %table, "rows landed in Delta but missing from the Spark table appended to it");
                }
                Ok(BronzeSink::Both {
                    delta,
                    mirror: Box::new(mirror),
                })
            }
            _ => Ok(BronzeSink::Delta(open_delta(pipeline, resume).await?)),
        }
    }

    /// Lands one batch (one Delta commit, or one Spark append); returns its version or batch_id.
    pub async fn commit(&mut self, records: &[Record]) -> Result<i64, SinkError> {
        match self {
            BronzeSink::Delta(s) => s.commit(records).await,
            BronzeSink::Spark(s) => s.commit(records).await,
            BronzeSink::Both { delta, mirror } => {
                let version = delta.commit(records).await?;
                mirror.commit_as(records, delta.last_batch()).await?;
                Ok(version)
            }
        }
    }

    /// Marks the run finished (after every row was handled): the next run of an overwrite
    /// pipeline starts afresh; a Delta table gets a checkpoint.
    pub async fn finish(&mut self) -> Result<(), SinkError> {
        match self {
            BronzeSink::Delta(s) | BronzeSink::Both { delta: s, .. } => s.finish().await,
            BronzeSink::Spark(_) => Ok(()),
        }
    }

    /// Lands every outcome that arrives on `outcomes` until it closes, in batches of `batch_size`,
    /// each committed while the next fills. Returns the sink (to be finished once the executor
    /// ended well) and how many batches it committed.
    pub async fn land(
        self,
        mut outcomes: mpsc::Receiver<Vec<RowOutcome>>,
        batch_size: usize,
        redactor: Arc<Redactor>,
        events: Events,
    ) -> Result<(Self, u64), SinkError> {
        let (batches_tx, mut batches) = mpsc::channel::<Vec<Record>>(1);
        let mut sink = self;
        let slow = commit_delay();
        let committer = tokio::spawn(async move {
            let mut commits = 0u64;
            while let Some(batch) = batches.recv().await {
                let started = Instant::now();
                if let Some(delay) = slow {
                    tokio::time::sleep(delay).await;
                }
                let version = sink.commit(&batch).await?;
                commits += 1;
                events.emit(Event::BatchCommitted {
                    rows: batch.len(),
                    version,
                    took: started.elapsed(),
                });
            }
            Ok::<_, SinkError>((sink, commits))
        });
        let mut batch = Vec::with_capacity(batch_size);
        'collect: while let Some(chunk) = outcomes.recv().await {
            for outcome in chunk {
                batch.push(Record::from_outcome(outcome, &redactor));
                if batch.len() >= batch_size
                    && batches_tx
                        .send(std::mem::replace(
                            &mut batch,
                            Vec::with_capacity(batch_size),
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
        committer.await.map_err(|e| SinkError {
            path: "sink".into(),
            message: format!("the commit task stopped: {e}"),
        })?
    }
}

/// A test hook: `SPARKWASM_TEST_COMMIT_DELAY_MS` makes every commit wait that long first, a sink as
/// slow as a distant object store, so that the tests can show the backpressure from the sink back to
/// the source. Unset (always, outside tests) it costs nothing.
fn commit_delay() -> Option<std::time::Duration> {
    std::env::var("SPARKWASM_TEST_COMMIT_DELAY_MS")
        .ok()
        .and_then(|ms| ms.parse().ok())
        .map(std::time::Duration::from_millis)
}

fn layout(sink: &crate::config::Sink) -> delta::Layout {
    delta::Layout {
        partition_by: sink.partition_by.clone(),
        properties: sink.table_properties.clone(),
    }
}
