//! Stage 3: rows as a stream of Arrow record batches.
//!
//! A reader runs on tokio's blocking pool and hands batches over a channel of two slots: the source is
//! read at most two batches ahead of the executor, so memory follows the batch size, not the input size.

mod cell;
mod files;
mod spark;

use std::sync::Arc;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, SchemaRef};
use arrow::record_batch::RecordBatch;
use tokio::sync::mpsc;

pub use cell::{Cell, RowView};

use crate::config::{self, SourceLocation};

/// Rows read per Arrow batch (the store's reading size, shared with the bronze table's read-back).
pub const READ_BATCH_ROWS: usize = crate::store::READ_ROWS;

/// Why a source cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// It could not be opened.
    #[error("source {path}: {message}")]
    Open {
        /// The file, folder or table.
        path: String,
        /// Why.
        message: String,
    },
    /// It failed while being read.
    #[error("source {path}: {message}")]
    Read {
        /// The file, folder or table.
        path: String,
        /// Why.
        message: String,
    },
    /// Columns the pipeline uses are missing.
    #[error("source column check: {0}")]
    Columns(String),
    /// The pipeline asks what the source cannot do.
    #[error("source: {0}")]
    Unsupported(String),
}

/// An opened source: its schema (known before any request) and its batches.
pub struct RowStream {
    /// The source's columns, known before any request.
    pub schema: SchemaRef,
    /// The rows, batch by batch.
    pub batches: mpsc::Receiver<Result<RecordBatch, SourceError>>,
    /// Rows in the source, where the format records it (Parquet footers, hence Delta): the progress
    /// bar's total and ETA.
    pub total_rows: Option<u64>,
}

/// Opens the pipeline's source (this host's shard of it) and checks `required_columns`, `id_column` and
/// the columns the endpoint uses against its schema, before anything is sent.
pub async fn open(
    pipeline: &config::Pipeline,
    used_columns: &[String],
) -> Result<RowStream, SourceError> {
    let source = pipeline.source.as_ref().ok_or_else(|| {
        SourceError::Unsupported(
            "no tables.source: give the rows with --source or --source-query".into(),
        )
    })?;
    let mut stream = match &source.location {
        SourceLocation::File { path, format } => files::open(path.clone(), *format).await?,
        SourceLocation::Spark { table, query } => {
            let remote = pipeline
                .spark
                .as_ref()
                .map(|s| s.remote.as_str())
                .ok_or_else(|| {
                    SourceError::Unsupported("a Spark source needs spark.remote".into())
                })?;
            // config checked that a shard goes with an id column.
            let shard = pipeline
                .shard
                .zip(source.id_column.as_deref())
                .map(|(s, id)| (s.index, s.count, id));
            spark::open(spark::SparkRead {
                remote,
                table: table.as_deref(),
                query: query.as_deref(),
                shard,
            })
            .await?
        }
    };
    check_columns(&stream.schema, source, used_columns)?;
    // A file source is read whole by every host; each keeps its shard's rows (a Spark source was
    // split by Spark). config checked that a shard goes with an id column.
    if let (SourceLocation::File { .. }, Some(shard), Some(id)) = (
        &source.location,
        pipeline.shard,
        source.id_column.as_deref(),
    ) {
        let column = stream
            .schema
            .index_of(id)
            .map_err(|e| SourceError::Columns(format!("id_column `{id}`: {e}")))?;
        stream = keep_shard(stream, column, shard.index, shard.count);
    }
    Ok(stream)
}

/// Which of `count` shards a row whose id reads `id` belongs to (a null id: shard 0, where it is
/// recorded as failed once). Stable across runs, hosts and versions: xxh3-64 of the id's text.
pub fn file_shard(id: Option<&str>, count: u32) -> u32 {
    match id {
        Some(id) => (xxhash_rust::xxh3::xxh3_64(id.as_bytes()) % u64::from(count)) as u32,
        None => 0,
    }
}

/// The stream's rows of shard `index` of `count`, by the id in `column`.
fn keep_shard(mut stream: RowStream, column: usize, index: u32, count: u32) -> RowStream {
    let (tx, rx) = mpsc::channel(2);
    tokio::spawn(async move {
        while let Some(item) = stream.batches.recv().await {
            let item = item.and_then(|batch| {
                let ids = arrow::compute::cast(batch.column(column), &DataType::Utf8)
                    .map_err(|e| SourceError::Unsupported(format!("id_column as text: {e}")))?;
                let ids = ids.as_string::<i32>();
                let keep: arrow::array::BooleanArray = (0..batch.num_rows())
                    .map(|i| {
                        let id = ids.is_valid(i).then(|| ids.value(i));
                        Some(file_shard(id, count) == index)
                    })
                    .collect();
                arrow::compute::filter_record_batch(&batch, &keep)
                    .map_err(|e| SourceError::Unsupported(e.to_string()))
            });
            let failed = item.is_err();
            if tx.send(item).await.is_err() || failed {
                return;
            }
        }
    });
    RowStream {
        schema: stream.schema,
        batches: rx,
        // Unknown until read: the footers count every shard's rows.
        total_rows: None,
    }
}

fn check_columns(
    schema: &SchemaRef,
    source: &config::Source,
    used_columns: &[String],
) -> Result<(), SourceError> {
    let mut missing = Vec::new();
    let named = source
        .required_columns
        .iter()
        .map(|c| (c, "required_columns"))
        .chain(source.id_column.iter().map(|c| (c, "id_column")))
        .chain(used_columns.iter().map(|c| (c, "endpoint/column_mapping")));
    for (column, why) in named {
        if schema.index_of(column).is_err() {
            missing.push(format!("`{column}` (from {why})"));
        }
    }
    for column in &source.table_schema {
        let Ok(field) = schema.field_with_name(&column.name) else {
            missing.push(format!("`{}` (from table_schema)", column.name));
            continue;
        };
        if !schema_type_fits(&column.kind, field.data_type()) {
            return Err(SourceError::Columns(format!(
                "table_schema says column `{}` is {}, the source has {}",
                column.name,
                column.kind,
                field.data_type()
            )));
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    let have: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    missing.dedup();
    Err(SourceError::Columns(format!(
        "missing column{} {}; the source has: {}",
        if missing.len() == 1 { "" } else { "s" },
        missing.join(", "),
        have.join(", ")
    )))
}

/// Whether an Arrow type is what `table_schema` calls `kind`.
fn schema_type_fits(kind: &str, t: &DataType) -> bool {
    use DataType::*;
    match kind {
        "string" => matches!(t, Utf8 | LargeUtf8 | Utf8View),
        "integer" => matches!(t, Int8 | Int16 | Int32 | UInt8 | UInt16),
        "long" => matches!(t, Int8 | Int16 | Int32 | Int64 | UInt8 | UInt16 | UInt32),
        "float" => matches!(t, Float16 | Float32),
        "double" => matches!(t, Float16 | Float32 | Float64),
        "boolean" => matches!(t, Boolean),
        "timestamp" => matches!(t, Timestamp(..)),
        "date" => matches!(t, Date32 | Date64),
        "binary" => matches!(t, Binary | LargeBinary | BinaryView | FixedSizeBinary(_)),
        "array" => matches!(t, List(_) | LargeList(_) | FixedSizeList(..) | ListView(_)),
        "map" => matches!(t, Map(..)),
        "struct" => matches!(t, Struct(_)),
        _ => false,
    }
}

/// Runs a blocking batch iterator on the blocking pool, feeding a two-slot channel.
fn spawn_reader<I>(
    schema: SchemaRef,
    make: impl FnOnce() -> Result<I, SourceError> + Send + 'static,
) -> RowStream
where
    I: Iterator<Item = Result<RecordBatch, SourceError>>,
{
    let (tx, rx) = mpsc::channel(2);
    tokio::task::spawn_blocking(move || {
        let iter = match make() {
            Ok(iter) => iter,
            Err(e) => {
                let _ = tx.blocking_send(Err(e));
                return;
            }
        };
        for item in iter {
            let failed = item.is_err();
            if tx.blocking_send(item).is_err() || failed {
                return;
            }
        }
    });
    RowStream {
        schema,
        batches: rx,
        total_rows: None,
    }
}

/// A batch shared by the consumers working on its rows.
pub type SharedBatch = Arc<RecordBatch>;
