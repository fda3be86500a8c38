//! The bronze table as a Spark catalog table (`spark.remote` and a sink `namespace.name` without
//! `path`): each batch is appended through Spark Connect (SaveAsTable, append; the table is created by
//! the first batch in the catalog's default format — Delta on a cluster configured for it).
//!
//! A Spark append carries no transaction id, so resuming reads the table itself (`resume`): the
//! request_ids that landed with success are skipped, whichever run or batch wrote them. A run killed
//! between two appends loses nothing and sends nothing twice; an append is one Spark job, committed
//! whole or not.

use arrow::record_batch::RecordBatch;
use spark_connect_core::SparkConnectClient;

use super::SinkError;
use super::record::{self, Record, to_batch};
use crate::bronze::bronze_schema;
use crate::config::quote_identifier;
use crate::spark;

/// Appends above this size of Arrow data are split (Spark Connect refuses messages over 128 MiB).
const MAX_APPEND_BYTES: usize = 48 << 20;

/// A Spark catalog table, opened for appends.
pub struct SparkSink {
    client: SparkConnectClient,
    table: String,
    what: String,
    next_batch: i64,
    /// The table's schema, which every batch is written in.
    target: arrow::datatypes::SchemaRef,
}

impl SparkSink {
    /// Opens the Spark catalog table `table` (creating it) for batches from `next_batch` on.
    pub async fn open(remote: &str, table: &str, next_batch: i64) -> Result<Self, SinkError> {
        let what = format!("Spark table {table} at {}", spark::display_remote(remote));
        let error = |message: String| SinkError {
            path: what.clone(),
            message,
        };
        let client = spark::connect(remote).await.map_err(|e| error(e.0))?;
        // Created now, not by the first append: a missing namespace or a refused permission stops the
        // run before any request, and shards starting together do not race to create it.
        let ddl = format!(
            "CREATE TABLE IF NOT EXISTS {} ({})",
            quote_identifier(table),
            bronze_ddl()
        );
        spark::run_sql(&client, &ddl)
            .await
            .map_err(|e| error(format!("cannot create the table: {e}")))?;
        // The table's own schema (sparkwasm's, an older one, or the legacy framework's string
        // columns): batches are appended in it.
        let target = spark::schema(&client, &spark::table(table))
            .await
            .map_err(|e| error(format!("cannot read the table: {e}")))?;
        record::check_target(&target).map_err(|m| {
            error(format!(
                "the table exists but {m}: it is not a bronze table"
            ))
        })?;
        Ok(SparkSink {
            client,
            table: table.to_owned(),
            what,
            next_batch,
            target,
        })
    }

    /// Appends one batch of results; returns its batch_id.
    pub async fn commit(&mut self, records: &[Record]) -> Result<i64, SinkError> {
        let batch = to_batch(records, self.next_batch)
            .and_then(|b| record::conform(&b, &self.target))
            .map_err(|e| self.error(format!("cannot build the batch: {e}")))?;
        self.append(batch).await?;
        self.next_batch += 1;
        Ok(self.next_batch - 1)
    }

    /// Appends a batch committed to the Delta table under `batch_id` (the Delta sink's mirror).
    pub async fn commit_as(&mut self, records: &[Record], batch_id: i64) -> Result<(), SinkError> {
        let batch = to_batch(records, batch_id)
            .and_then(|b| record::conform(&b, &self.target))
            .map_err(|e| self.error(format!("cannot build the batch: {e}")))?;
        self.append(batch).await
    }

    /// Appends `batch`, in halves while its Arrow data is too large for one message (measured
    /// encoded: a slice shares its parent's buffers, so its in-memory size says nothing).
    pub async fn append(&self, batch: RecordBatch) -> Result<(), SinkError> {
        let mut pending = vec![batch];
        while let Some(batch) = pending.pop() {
            let ipc = spark::to_ipc(&batch)
                .map_err(|e| self.error(format!("cannot encode the batch: {e}")))?;
            if ipc.len() > MAX_APPEND_BYTES && batch.num_rows() > 1 {
                let half = batch.num_rows() / 2;
                pending.push(batch.slice(half, batch.num_rows() - half));
                pending.push(batch.slice(0, half));
                continue;
            }
            spark::append(&self.client, &self.table, ipc)
                .await
                .map_err(|e| self.error(format!("append failed: {e}")))?;
        }
        Ok(())
    }

    fn error(&self, message: String) -> SinkError {
        SinkError {
            path: self.what.clone(),
            message,
        }
    }
}

/// The bronze schema as Spark DDL columns.
fn bronze_ddl() -> String {
    use arrow::datatypes::DataType;
    bronze_schema()
        .fields()
        .iter()
        .map(|f| {
            let ty = match f.data_type() {
                DataType::Utf8 => "STRING",
                DataType::Int32 => "INT",
                DataType::Int64 => "BIGINT",
                DataType::Boolean => "BOOLEAN",
                DataType::Timestamp(..) => "TIMESTAMP",
                other => unreachable!("bronze column type {other}"),
            };
            format!("`{}` {ty}", f.name())
        })
        .collect::<Vec<_>>()
        .join(", ")
}
