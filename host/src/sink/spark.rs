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
        let what = format!("Spark table {table} at {remote}");
        let error = |message: String| SinkError {
            path: what.clone(),
            message,
        };
        let client = spark::connect(remote).await.map_err(error)?;
        let mut landed = HashSet::new();
        let mut last = 0;
        let ids = spark::sql(&format!("SELECT request_id FROM {table} WHERE success"));
        match spark::query(&client, ids).await {
            Ok(mut results) => loop {
                match results.next().await {
                    Ok(Some(batch)) => {
                        let column = batch.column(0).as_string::<i32>();
                        for i in 0..column.len() {
                            if column.is_valid(i) {
                                landed.insert(id_key(column.value(i)));
                            }
                        }
                    }
                    Ok(None) => break,
                    Err(e) if e.contains("TABLE_OR_VIEW_NOT_FOUND") => break,
                    Err(e) => return Err(error(format!("cannot read what already landed: {e}"))),
                }
            },
            Err(e) if e.contains("TABLE_OR_VIEW_NOT_FOUND") => {}
            Err(e) => return Err(error(format!("cannot read what already landed: {e}"))),
        }
        if !landed.is_empty() {
            let max = spark::sql(&format!(
                "SELECT coalesce(max(batch_id), 0) AS last FROM {table}"
            ));
            let mut results = spark::query(&client, max).await.map_err(error)?;
            while let Some(batch) = results.next().await.map_err(error)? {
                if batch.num_rows() > 0 {
                    let column = batch
                        .column(0)
                        .as_primitive::<arrow::datatypes::Int64Type>();
                    last = column.value(0);
                }
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

    /// Appends `batch`, in halves while it is too large for one message.
    async fn append(&self, batch: RecordBatch) -> Result<(), SinkError> {
        let mut pending = vec![batch];
        while let Some(batch) = pending.pop() {
            if batch.get_array_memory_size() > MAX_APPEND_BYTES && batch.num_rows() > 1 {
                let half = batch.num_rows() / 2;
                pending.push(batch.slice(half, batch.num_rows() - half));
                pending.push(batch.slice(0, half));
                continue;
            }
            spark::append(&self.client, &self.table, &batch)
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
