//! The bronze table as a Spark catalog table (`spark.remote` and a sink `namespace.name` without
//! `path`): each batch is appended through Spark Connect (SaveAsTable, append; the table is created by
//! the first batch in the catalog's default format — Delta on a cluster configured for it).
//!
//! A Spark append carries no transaction id, so resuming reads the table itself: the request_ids that
//! landed with success are skipped, whichever run or batch wrote them. A run killed between two
//! appends loses nothing and sends nothing twice; an append is one Spark job, committed whole or not.

use std::collections::HashSet;

use arrow::array::{Array, AsArray};
use arrow::record_batch::RecordBatch;
use spark_connect_core::SparkConnectClient;

use super::{Record, Resume, SinkError, bronze, id_key};
use crate::config::quote_identifier;
use crate::spark;

/// Appends above this size of Arrow data are split (Spark Connect refuses messages over 128 MiB).
const MAX_APPEND_BYTES: usize = 48 << 20;

pub struct SparkSink {
    client: SparkConnectClient,
    table: String,
    what: String,
    next_batch: i64,
}

impl SparkSink {
    pub async fn open(remote: &str, table: &str) -> Result<(Self, Resume), SinkError> {
        let what = format!("Spark table {table} at {}", spark::display_remote(remote));
        let error = |message: String| SinkError {
            path: what.clone(),
            message,
        };
        let client = spark::connect(remote).await.map_err(error)?;
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
        let existing = spark::schema(&client, &spark::table(table))
            .await
            .map_err(|e| error(format!("cannot read the table: {e}")))?;
        for wanted in bronze::bronze_schema().fields() {
            if existing.field_with_name(wanted.name()).is_err() {
                return Err(error(format!(
                    "the table exists but has no column `{}`: it is not a bronze table",
                    wanted.name()
                )));
            }
        }
        let mut landed = HashSet::new();
        let ids = spark::sql(&format!(
            "SELECT CAST(request_id AS STRING) FROM {} WHERE success",
            quote_identifier(table)
        ));
        let mut results = spark::query(&client, ids).await.map_err(error)?;
        while let Some(batch) = results
            .next()
            .await
            .map_err(|e| error(format!("cannot read what already landed: {e}")))?
        {
            let column = batch
                .column(0)
                .as_string_opt::<i32>()
                .ok_or_else(|| error("request_id did not come back as a string".into()))?;
            for i in 0..column.len() {
                if column.is_valid(i) {
                    landed.insert(id_key(column.value(i)));
                }
            }
        }
        let max = spark::sql(&format!(
            "SELECT CAST(coalesce(max(batch_id), 0) AS BIGINT) FROM {}",
            quote_identifier(table)
        ));
        let mut last = 0;
        let mut results = spark::query(&client, max).await.map_err(error)?;
        while let Some(batch) = results.next().await.map_err(error)? {
            if let Some(column) = batch
                .column(0)
                .as_primitive_opt::<arrow::datatypes::Int64Type>()
                && !column.is_empty()
            {
                last = column.value(0);
            }
        }
        let sink = SparkSink {
            client,
            table: table.to_owned(),
            what,
            next_batch: last + 1,
        };
        Ok((
            sink,
            Resume {
                landed,
                last_version: last,
                resuming: false,
            },
        ))
    }

    /// Appends one batch of results; returns its batch_id.
    pub async fn commit(&mut self, records: &[Record]) -> Result<i64, SinkError> {
        let batch = bronze::to_batch(records, self.next_batch)
            .map_err(|e| self.error(format!("cannot build the batch: {e}")))?;
        self.append(batch).await?;
        self.next_batch += 1;
        Ok(self.next_batch - 1)
    }

    /// Appends a batch committed to the Delta table under `batch_id` (the Delta sink's mirror).
    pub async fn commit_as(&mut self, records: &[Record], batch_id: i64) -> Result<(), SinkError> {
        let batch = bronze::to_batch(records, batch_id)
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
    bronze::bronze_schema()
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
