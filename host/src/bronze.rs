//! The bronze table's shape, as every stage that reads or writes it knows it: its columns (the
//! legacy table's names, typed), the key of a request_id in the resume set, and readers of what
//! landed in a table's data files.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock};

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

/// A data file of a bronze table that could not be read.
#[derive(Debug, thiserror::Error)]
#[error("reading {file}: {message}")]
pub struct ReadError {
    file: PathBuf,
    message: String,
}

fn read_error(file: &Path, e: impl std::fmt::Display) -> ReadError {
    ReadError {
        file: file.to_path_buf(),
        message: e.to_string(),
    }
}

static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let text = |name: &str, nullable: bool| Field::new(name, DataType::Utf8, nullable);
    Arc::new(Schema::new(vec![
        text("request_id", false),
        text("row_hash", true),
        text("url", true),
        text("method", true),
        text("request_headers", true),
        text("request_params", true),
        text("request_metadata", true),
        Field::new("status_code", DataType::Int32, true),
        text("response_headers", true),
        text("body_text", true),
        Field::new("success", DataType::Boolean, false),
        text("error_message", true),
        Field::new("attempts", DataType::Int32, true),
        text("response_metadata", true),
        Field::new(
            "_request_time",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
        Field::new("batch_id", DataType::Int64, true),
    ]))
});

/// The bronze table's schema (legacy column names, typed).
pub fn bronze_schema() -> SchemaRef {
    SCHEMA.clone()
}

/// The in-memory key of a request_id (a 128-bit digest keeps the resume set small).
pub fn id_key(request_id: &str) -> u128 {
    xxhash_rust::xxh3::xxh3_128(request_id.as_bytes())
}

/// The keys of request_ids that landed with success=true in the given data files.
pub fn successful_ids(files: &[PathBuf]) -> Result<HashSet<u128>, ReadError> {
    let mut landed = HashSet::new();
    for file in files {
        let err = |e: &dyn std::fmt::Display| read_error(file, e);
        let f = std::fs::File::open(file).map_err(|e| err(&e))?;
        let builder = ParquetRecordBatchReaderBuilder::try_new(f).map_err(|e| err(&e))?;
        let schema = builder.schema().clone();
        let (id, ok) = match (schema.index_of("request_id"), schema.index_of("success")) {
            (Ok(id), Ok(ok)) => (id, ok),
            _ => return Err(err(&"no request_id/success columns")),
        };
        let mask = ProjectionMask::roots(builder.parquet_schema(), [id, ok]);
        for batch in builder.with_projection(mask).build().map_err(|e| err(&e))? {
            let batch = batch.map_err(|e| err(&e))?;
            let ids =
                arrow::compute::cast(batch.column(0), &DataType::Utf8).map_err(|e| err(&e))?;
            let ids = ids.as_string::<i32>();
            let ok = batch.column(1).as_boolean();
            for i in 0..batch.num_rows() {
                if ok.is_valid(i) && ok.value(i) && ids.is_valid(i) {
                    landed.insert(id_key(ids.value(i)));
                }
            }
        }
    }
    Ok(landed)
}

/// The successful rows of the given data files whose request_id key is in `wanted`, whole (every
/// bronze column), batch by batch.
pub fn successful_rows(
    files: &[PathBuf],
    wanted: &HashSet<u128>,
) -> Result<Vec<RecordBatch>, ReadError> {
    let mut out = Vec::new();
    for file in files {
        let err = |e: &dyn std::fmt::Display| read_error(file, e);
        let f = std::fs::File::open(file).map_err(|e| err(&e))?;
        let reader = ParquetRecordBatchReaderBuilder::try_new(f)
            .and_then(|b| b.build())
            .map_err(|e| err(&e))?;
        for batch in reader {
            let batch = batch.map_err(|e| err(&e))?;
            let column = |name: &str| {
                batch
                    .column_by_name(name)
                    .cloned()
                    .ok_or_else(|| err(&format!("no {name} column")))
            };
            let ids = arrow::compute::cast(&column("request_id")?, &DataType::Utf8)
                .map_err(|e| err(&e))?;
            let ids = ids.as_string::<i32>();
            let ok = column("success")?;
            let ok = ok.as_boolean();
            let keep: arrow::array::BooleanArray = (0..batch.num_rows())
                .map(|i| {
                    Some(
                        ok.is_valid(i)
                            && ok.value(i)
                            && ids.is_valid(i)
                            && wanted.contains(&id_key(ids.value(i))),
                    )
                })
                .collect();
            let kept = arrow::compute::filter_record_batch(&batch, &keep).map_err(|e| err(&e))?;
            if kept.num_rows() > 0 {
                out.push(kept);
            }
        }
    }
    Ok(out)
}
