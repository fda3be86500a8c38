//! Stage 7: the bronze table. Each batch of results is ONE Delta commit carrying
//! txn(app_id, version); a rerun reads back the last version and the request_ids already landed with
//! success, and skips them. delta-rs does not refuse a txn version it has seen, so the version counter
//! is kept here, read from the table at start.

mod bronze;
mod spark;

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use deltalake::kernel::transaction::{CommitBuilder, CommitProperties};
use deltalake::kernel::{Action, Transaction};
use deltalake::protocol::{DeltaOperation, SaveMode};
use deltalake::writer::{DeltaWriter, RecordBatchWriter};
use deltalake::{DeltaTable, DeltaTableError};

pub use bronze::{Record, bronze_schema, id_key};
pub use spark::SparkSink;

use crate::config::{self, SinkMode};

/// Where the bronze batches go: a Delta table (commits with txn ids), a Spark catalog table, or both.
pub enum BronzeSink {
    Delta(DeltaSink),
    Spark(Box<SparkSink>),
    /// The Delta table is the record (resume, exactly-once); each batch committed there is then
    /// appended to the Spark table with the same batch_id. On open, successful rows the Delta table
    /// has and the Spark table lacks (a run killed between the two) are appended to the Spark table.
    Both {
        delta: DeltaSink,
        mirror: Box<SparkSink>,
    },
}

impl BronzeSink {
    /// Opens the pipeline's sink; `app_id` names this pipeline (and shard) in a Delta table's log.
    pub async fn open(
        pipeline: &config::Pipeline,
        app_id: &str,
    ) -> Result<(Self, Resume), SinkError> {
        let sink = &pipeline.sink;
        match (&sink.spark_table, &sink.mirror, &pipeline.spark) {
            (Some(table), _, Some(spark)) => {
                let (s, resume) = SparkSink::open(&spark.remote, table).await?;
                Ok((BronzeSink::Spark(Box::new(s)), resume))
            }
            (None, Some(table), Some(spark)) => {
                let (delta, resume) = DeltaSink::open(&sink.path, app_id, sink.mode).await?;
                let (mirror, mirrored) = SparkSink::open(&spark.remote, table).await?;
                let missing: HashSet<u128> = resume
                    .landed
                    .difference(&mirrored.landed)
                    .copied()
                    .collect();
                if !missing.is_empty() {
                    let batches =
                        landed_rows(&sink.path, missing)
                            .await
                            .map_err(|message| SinkError {
                                path: sink.path.display().to_string(),
                                message,
                            })?;
                    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
                    for batch in batches {
                        mirror.append(batch).await?;
                    }
                    tracing::info!(rows, table = %table, "rows landed in Delta but missing from the Spark table appended to it");
                }
                Ok((
                    BronzeSink::Both {
                        delta,
                        mirror: Box::new(mirror),
                    },
                    resume,
                ))
            }
            _ => {
                let (s, resume) = DeltaSink::open(&sink.path, app_id, sink.mode).await?;
                Ok((BronzeSink::Delta(s), resume))
            }
        }
    }

    /// Lands one batch (one Delta commit, or one Spark append); returns its version or batch_id.
    pub async fn commit(&mut self, records: &[Record]) -> Result<i64, SinkError> {
        match self {
            BronzeSink::Delta(s) => s.commit(records).await,
            BronzeSink::Spark(s) => s.commit(records).await,
            BronzeSink::Both { delta, mirror } => {
                let version = delta.commit(records).await?;
                mirror.commit_as(records, delta.next_version - 1).await?;
                Ok(version)
            }
        }
    }

    pub async fn finish(&mut self) -> Result<(), SinkError> {
        match self {
            BronzeSink::Delta(s) | BronzeSink::Both { delta: s, .. } => s.finish().await,
            BronzeSink::Spark(_) => Ok(()),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("sink {path}: {message}")]
pub struct SinkError {
    path: String,
    message: String,
}

/// What a run finds in the table before it sends anything.
pub struct Resume {
    /// Keys ([`id_key`]) of the request_ids already landed with success: not sent again.
    pub landed: HashSet<u128>,
    /// The last batch version this pipeline committed (0 = none).
    pub last_version: i64,
    /// A killed run is being resumed (its last run did not finish).
    pub resuming: bool,
}

/// The bronze Delta table, opened for one pipeline's commits.
pub struct DeltaSink {
    table: DeltaTable,
    path: PathBuf,
    app_id: String,
    next_version: i64,
    /// On an overwrite run's first commit, the files of the previous runs are removed in the same commit.
    replace_on_first_commit: bool,
}

impl DeltaSink {
    /// Opens (or creates) the table and works out where this pipeline stands in it.
    pub async fn open(
        path: &Path,
        app_id: &str,
        mode: SinkMode,
    ) -> Result<(Self, Resume), SinkError> {
        let error = |message: String| SinkError {
            path: path.display().to_string(),
            message,
        };
        std::fs::create_dir_all(path)
            .map_err(|e| error(format!("cannot create the folder: {e}")))?;
        let url = url::Url::from_directory_path(
            std::path::absolute(path).map_err(|e| error(e.to_string()))?,
        )
        .map_err(|()| error("not a local folder".into()))?;
        let table = match deltalake::open_table(url.clone()).await {
            Ok(t) => t,
            Err(DeltaTableError::NotATable(_)) | Err(DeltaTableError::InvalidTableLocation(_)) => {
                match create(url.clone()).await {
                    Ok(t) => t,
                    // Another host (a shard) created it first: use theirs.
                    Err(e) => deltalake::open_table(url)
                        .await
                        .map_err(|_| error(format!("cannot create the table: {e}")))?,
                }
            }
            Err(e) => return Err(error(format!("cannot open the table: {e}"))),
        };
        let fields = table.snapshot().map_err(|e| error(e.to_string()))?.schema();
        for wanted in bronze_schema().fields() {
            if fields.field(wanted.name()).is_none() {
                return Err(error(format!(
                    "the table exists but has no column `{}`: it is not a bronze table",
                    wanted.name()
                )));
            }
        }
        let log_store = table.log_store();
        let snapshot = table.snapshot().map_err(|e| error(e.to_string()))?;
        let last_version = snapshot
            .transaction_version(log_store.as_ref(), app_id)
            .await
            .map_err(|e| error(e.to_string()))?
            .unwrap_or(0);
        let done_version = snapshot
            .transaction_version(log_store.as_ref(), done_app_id(app_id))
            .await
            .map_err(|e| error(e.to_string()))?
            .unwrap_or(0);
        let resuming = last_version > done_version;
        let replace = mode == SinkMode::Overwrite && !resuming;
        let landed = if replace {
            HashSet::new()
        } else {
            landed_ids(path).await.map_err(error)?
        };
        let sink = DeltaSink {
            table,
            path: path.to_path_buf(),
            app_id: app_id.to_owned(),
            next_version: last_version + 1,
            replace_on_first_commit: replace,
        };
        Ok((
            sink,
            Resume {
                landed,
                last_version,
                resuming,
            },
        ))
    }

    /// Writes one batch of results as one commit with txn(app_id, version). Returns the table version.
    pub async fn commit(&mut self, records: &[Record]) -> Result<i64, SinkError> {
        let batch = bronze::to_batch(records, self.next_version)
            .map_err(|e| self.error(format!("cannot build the batch: {e}")))?;
        let mut writer =
            RecordBatchWriter::for_table(&self.table).map_err(|e| self.error(e.to_string()))?;
        writer
            .write(batch)
            .await
            .map_err(|e| self.error(format!("cannot write data files: {e}")))?;
        let mut actions: Vec<Action> = writer
            .flush()
            .await
            .map_err(|e| self.error(format!("cannot write data files: {e}")))?
            .into_iter()
            .map(Action::Add)
            .collect();
        let mode = if self.replace_on_first_commit {
            let snapshot = self
                .table
                .snapshot()
                .map_err(|e| self.error(e.to_string()))?;
            actions.extend(
                snapshot
                    .log_data()
                    .iter()
                    .map(|f| Action::Remove(f.remove_action(true))),
            );
            SaveMode::Overwrite
        } else {
            SaveMode::Append
        };
        let version = self
            .commit_actions(
                actions,
                mode,
                Transaction::new(&self.app_id, self.next_version),
            )
            .await?;
        self.replace_on_first_commit = false;
        self.next_version += 1;
        Ok(version)
    }

    /// Marks the run finished (the next run of an overwrite pipeline starts afresh) and writes a
    /// checkpoint, so readers and the next run do not replay this run's commits one by one. Commits
    /// during the run write none: delta-rs's snapshot grows with each checkpoint it loads (measured:
    /// peak RSS 161 MiB with them over 200 commits, 108 MiB without).
    pub async fn finish(&mut self) -> Result<(), SinkError> {
        let last = self.next_version - 1;
        if last > 0 {
            self.commit_actions(
                Vec::new(),
                SaveMode::Append,
                Transaction::new(done_app_id(&self.app_id), last),
            )
            .await?;
            deltalake::protocol::checkpoints::create_checkpoint(&self.table, None)
                .await
                .map_err(|e| self.error(format!("cannot write a checkpoint: {e}")))?;
        }
        Ok(())
    }

    async fn commit_actions(
        &mut self,
        actions: Vec<Action>,
        mode: SaveMode,
        txn: Transaction,
    ) -> Result<i64, SinkError> {
        use deltalake::kernel::transaction::{CommitConflictError, TransactionError};
        // Once more on a newer snapshot if another writer changed the table's metadata meanwhile
        // (two hosts creating a new table at the same moment: delta-rs may land the second create as
        // a later version). A writer under the same txn app id is still refused then.
        let mut retried = false;
        loop {
            let snapshot = self
                .table
                .snapshot()
                .map_err(|e| self.error(e.to_string()))?;
            let operation = DeltaOperation::Write {
                mode,
                partition_by: None,
                predicate: None,
            };
            let result = CommitBuilder::from(
                CommitProperties::default()
                    .with_application_transaction(txn.clone())
                    .with_create_checkpoint(false),
            )
            .with_actions(actions.clone())
            .build(Some(snapshot), self.table.log_store(), operation)
            .await;
            match result {
                Ok(finalized) => {
                    self.table.state = Some(finalized.snapshot());
                    return Ok(finalized.version() as i64);
                }
                Err(DeltaTableError::Transaction {
                    source: TransactionError::CommitConflict(CommitConflictError::MetadataChanged),
                }) if !retried => {
                    retried = true;
                    self.table
                        .update_state()
                        .await
                        .map_err(|e| self.error(format!("cannot reload the table: {e}")))?;
                }
                Err(e) => return Err(self.commit_error(e)),
            }
        }
    }

    fn error(&self, message: String) -> SinkError {
        SinkError {
            path: self.path.display().to_string(),
            message,
        }
    }

    /// A failed commit in words. Another process committing under this run's transaction id (the same
    /// pipeline, or the same shard, started twice) is named as such: delta-rs refuses the commit
    /// because the winning one carries the same app id.
    fn commit_error(&self, e: DeltaTableError) -> SinkError {
        use deltalake::kernel::transaction::{CommitConflictError, TransactionError};
        match e {
            DeltaTableError::Transaction {
                source: TransactionError::CommitConflict(CommitConflictError::ConcurrentTransaction),
            } => self.error(format!(
                "another run committed to this table under the same transaction id `{}` while this run was going (the same pipeline or shard started twice); this run stops without committing its last batch, whose rows the next run sends again",
                self.app_id
            )),
            e => self.error(format!("commit failed: {e}")),
        }
    }
}

fn done_app_id(app_id: &str) -> String {
    format!("{app_id}/finished")
}

async fn create(url: url::Url) -> Result<DeltaTable, DeltaTableError> {
    use deltalake::kernel::engine::arrow_conversion::TryIntoKernel;
    let schema: deltalake::kernel::StructType = bronze_schema().as_ref().try_into_kernel()?;
    DeltaTable::try_from_url(url)
        .await?
        .create()
        .with_columns(schema.fields().cloned())
        .with_table_name("bronze")
        .await
}

/// The successful rows of the table whose request_ids are in `wanted` (keys), as bronze batches.
async fn landed_rows(
    path: &Path,
    wanted: HashSet<u128>,
) -> Result<Vec<arrow::record_batch::RecordBatch>, String> {
    let files = crate::source::delta_data_files(path).await?;
    tokio::task::spawn_blocking(move || bronze::successful_rows(&files, &wanted))
        .await
        .map_err(|e| e.to_string())?
}

/// Reads the request_id and success columns of the table's data files.
async fn landed_ids(path: &Path) -> Result<HashSet<u128>, String> {
    let files = crate::source::delta_data_files(path).await?;
    tokio::task::spawn_blocking(move || bronze::successful_ids(&files))
        .await
        .map_err(|e| e.to_string())?
}
