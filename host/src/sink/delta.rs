//! The bronze table as a Delta table: each batch is ONE commit carrying txn(app_id, version), so a
//! rerun knows exactly which batches landed. delta-rs does not refuse a txn version it has seen: the
//! version counter is kept here, from the version `resume` read.

use deltalake::kernel::transaction::{CommitBuilder, CommitProperties};
use deltalake::kernel::{Action, Transaction};
use deltalake::protocol::{DeltaOperation, SaveMode};
use deltalake::writer::{DeltaWriter, RecordBatchWriter};
use deltalake::{DeltaTable, DeltaTableError};

use super::SinkError;
use super::record::{self, Record, to_batch};
use crate::bronze::bronze_schema;
use crate::delta;
use crate::resume::{Resume, finished_app_id};
use crate::store::{self, Cloud, Location};

/// Columns whose value is, as a rule, different in every row (an id, a hash, the URL and body of
/// each row's own request and answer): a dictionary of them costs CPU for nothing (each value is
/// hashed into a table that does not repeat, until the writer gives up on it for the page). Where
/// they do repeat (one fixed URL, identical bodies), snappy still compresses runs of them.
pub(super) const UNIQUE_COLUMNS: [&str; 6] = [
    "request_id",
    "row_hash",
    "source_row_hash",
    "url",
    "body_text",
    "request_params",
];

/// How data files are written: delta-rs's own defaults (snappy, its `created_by`), without a
/// dictionary for the columns that as a rule do not repeat. The others (method, headers, metadata,
/// outcome, status, error) keep theirs.
fn writer_properties() -> parquet::file::properties::WriterProperties {
    let mut builder = parquet::file::properties::WriterProperties::builder()
        .set_created_by(format!("delta-rs version {}", deltalake::crate_version()))
        .set_compression(parquet::basic::Compression::SNAPPY);
    for column in UNIQUE_COLUMNS {
        builder = builder.set_column_dictionary_enabled(column.into(), false);
    }
    builder.build()
}

/// Two writers of one table are kept apart by the store refusing to create a commit file that
/// exists (on S3 a `PUT` with `If-None-Match: *`); Azure and GCS always do, an S3-compatible store
/// may not. Tried once per run on S3, unless DynamoDB locking is on or the options say the table has
/// one writer (`AWS_S3_ALLOW_UNSAFE_RENAME: true`): if the store ignores it, a sharded run
/// (`shards` writers at once) stops here, before any request, and a single writer is warned.
pub(super) async fn check_concurrent_commits(
    path: &Location,
    shards: u32,
) -> Result<(), SinkError> {
    let Location::Remote(remote) = path else {
        return Ok(());
    };
    let options = path.storage_options();
    if !matches!(remote.cloud, Cloud::S3)
        || store::wants_dynamodb(&options)
        || store::declares_single_writer(&options)
    {
        return Ok(());
    }
    let remedy = "use DynamoDB locking (a build with --features dynamodb and \
                  AWS_S3_LOCKING_PROVIDER: dynamodb), or, if each writer has a table of its own, \
                  say so with AWS_S3_ALLOW_UNSAFE_RENAME: true in the sink's storage_options; see \
                  docs/object-stores.md";
    let problem = match store::refuses_overwrite(remote).await {
        Ok(true) => return Ok(()),
        Ok(false) => {
            "the store ignores conditional writes (If-None-Match), so two writers of this \
                      table at once could overwrite each other's commits"
                .to_owned()
        }
        Err(e) => format!(
            "cannot check that the store refuses a second writer of a commit (If-None-Match): {e}"
        ),
    };
    if shards > 1 {
        return Err(SinkError {
            path: path.to_string(),
            message: format!("{problem}; this run is one of {shards} shards: {remedy}"),
        });
    }
    crate::say::warning(&format!(
        "sink {path}: {problem}; run one writer at a time, or {remedy}"
    ));
    Ok(())
}

/// The bronze Delta table, opened for one pipeline's commits.
pub struct DeltaSink {
    table: DeltaTable,
    path: Location,
    app_id: String,
    next_version: i64,
    /// On an overwrite run's first commit, the files of the previous runs are removed in the same commit.
    replace_on_first_commit: bool,
    /// The table's schema, which every batch is written in.
    target: arrow::datatypes::SchemaRef,
}

impl DeltaSink {
    /// Opens (or creates, laid out as `layout` says) the table at `path` for the commits of the run
    /// `resume` describes.
    pub async fn open(
        path: &Location,
        resume: &Resume,
        layout: &Layout,
    ) -> Result<Self, SinkError> {
        let error = |message: String| SinkError {
            path: path.to_string(),
            message,
        };
        // (A remote location was checked by `Resume::read`, before any request.)
        if let Location::Local(dir) = path {
            std::fs::create_dir_all(dir)
                .map_err(|e| error(format!("cannot create the folder: {e}")))?;
        }
        let table = match delta::open_raw(path).await {
            Ok(t) => t,
            Err(DeltaTableError::NotATable(_)) | Err(DeltaTableError::InvalidTableLocation(_)) => {
                match create(path, layout).await {
                    Ok(t) => t,
                    // Another host (a shard) created it first: use theirs.
                    Err(e) => delta::open_raw(path)
                        .await
                        .map_err(|_| error(format!("cannot create the table: {e}")))?,
                }
            }
            Err(e) => return Err(error(format!("cannot open the table: {e}"))),
        };
        // The table's own schema: sparkwasm's, an older sparkwasm's, or the legacy framework's
        // (string status_code/success/attempts, no batch_id). Batches are written in it.
        let target = table
            .snapshot()
            .map_err(|e| error(e.to_string()))?
            .snapshot()
            .arrow_schema();
        record::check_target(&target).map_err(|m| {
            error(format!(
                "the table exists but {m}: it is not a bronze table"
            ))
        })?;
        Ok(DeltaSink {
            table,
            path: path.clone(),
            app_id: resume.app_id.clone(),
            next_version: resume.last_version + 1,
            replace_on_first_commit: resume.replace,
            target,
        })
    }

    /// Writes one batch of results as one commit with txn(app_id, version). Returns the table version.
    pub async fn commit(&mut self, records: &[Record]) -> Result<i64, SinkError> {
        let batch = to_batch(records, self.next_version)
            .and_then(|b| record::conform(&b, &self.target))
            .map_err(|e| self.error(format!("cannot build the batch: {e}")))?;
        let mut writer = RecordBatchWriter::for_table(&self.table)
            .map_err(|e| self.error(e.to_string()))?
            .with_writer_properties(writer_properties());
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

    /// The version of the last batch this run committed (0 if none).
    pub fn last_batch(&self) -> i64 {
        self.next_version - 1
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
                Transaction::new(finished_app_id(&self.app_id), last),
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
            path: self.path.to_string(),
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

/// How a new table is laid out (`tables.sink.partition_by`, `table_properties`).
#[derive(Clone, Debug, Default)]
pub struct Layout {
    /// Partition columns (bronze columns).
    pub partition_by: Vec<String>,
    /// Table properties (`delta.appendOnly`, ...), set when the table is created.
    pub properties: Vec<(String, String)>,
}

async fn create(location: &Location, layout: &Layout) -> Result<DeltaTable, DeltaTableError> {
    use deltalake::kernel::engine::arrow_conversion::TryIntoKernel;
    let schema: deltalake::kernel::StructType = bronze_schema().as_ref().try_into_kernel()?;
    let url = location
        .table_url()
        .map_err(|e| DeltaTableError::generic(format!("{location}: {e}")))?;
    let mut create = DeltaTable::try_from_url_with_storage_options(url, location.storage_options())
        .await?
        .create()
        .with_columns(schema.fields().cloned())
        .with_table_name("bronze");
    if !layout.partition_by.is_empty() {
        create = create.with_partition_columns(layout.partition_by.clone());
    }
    if !layout.properties.is_empty() {
        create = create.with_configuration(
            layout
                .properties
                .iter()
                .map(|(k, v)| (k.clone(), Some(v.clone()))),
        );
    }
    create.await
}
