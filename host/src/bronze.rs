//! The bronze table's shape, as every stage that reads or writes it knows it: its columns (the
//! legacy table's names, typed), the key of a request_id in the resume set, and readers of what
//! landed in a table's data files.

use std::collections::HashSet;
use std::sync::{Arc, LazyLock};

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;
use parquet::arrow::ProjectionMask;

use crate::store::{DataFile, READ_ROWS};

/// A data file of a bronze table that could not be read.
#[derive(Debug, thiserror::Error)]
#[error("reading {file}: {message}")]
pub struct ReadError {
    file: String,
    message: String,
}

fn read_error(file: &DataFile, e: impl std::fmt::Display) -> ReadError {
    ReadError {
        file: file.to_string(),
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
        text("outcome", true),
        text("source_row_hash", true),
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

/// Which rows count as landed, for the resume set.
#[derive(Clone, Debug)]
pub struct LandedRule {
    /// The statuses sent again (inclusive ranges): a table without an `outcome` column (the legacy
    /// table, a first-wave one) is classified by its status_code.
    pub retry_statuses: Vec<(u16, u16)>,
    /// `--retry-failed`: failures for good are sent again too.
    pub retry_failed: bool,
}

/// A boolean column as written: Boolean, or the legacy table's "true"/"false" strings.
fn truth(column: &dyn Array, i: usize) -> bool {
    if column.is_null(i) {
        return false;
    }
    match column.data_type() {
        DataType::Boolean => column.as_boolean().value(i),
        DataType::Utf8 => column
            .as_string::<i32>()
            .value(i)
            .eq_ignore_ascii_case("true"),
        _ => false,
    }
}

/// A status column as written: Int32, or the legacy table's strings ("200").
fn status(column: &dyn Array, i: usize) -> Option<u16> {
    if column.is_null(i) {
        return None;
    }
    match column.data_type() {
        DataType::Int32 => u16::try_from(
            column
                .as_primitive::<arrow::datatypes::Int32Type>()
                .value(i),
        )
        .ok(),
        DataType::Utf8 => column.as_string::<i32>().value(i).trim().parse().ok(),
        _ => None,
    }
}

/// Whether row `i` landed for good: success, or (unless `--retry-failed`) a failure for good. A table
/// without an `outcome` column: success, else an answer whose status is not a retryable one.
fn landed_for_good(
    rule: &LandedRule,
    outcome: Option<&dyn Array>,
    success: &dyn Array,
    status_code: Option<&dyn Array>,
    i: usize,
) -> bool {
    if let Some(o) = outcome.filter(|o| o.is_valid(i)) {
        return match o.as_string::<i32>().value(i) {
            "success" => true,
            "final" => !rule.retry_failed,
            _ => false,
        };
    }
    if truth(success, i) {
        return true;
    }
    if rule.retry_failed {
        return false;
    }
    match status_code.and_then(|c| status(c, i)) {
        Some(code) => !rule
            .retry_statuses
            .iter()
            .any(|(a, b)| (*a..=*b).contains(&code)),
        None => false,
    }
}

/// The keys of request_ids that landed for good (see [`LandedRule`]) in the given data files.
pub fn landed_ids(files: &[DataFile], rule: &LandedRule) -> Result<HashSet<u128>, ReadError> {
    let mut landed = HashSet::new();
    for file in files {
        let err = |e: &dyn std::fmt::Display| read_error(file, e);
        let parquet = file.parquet().map_err(|e| err(&e))?;
        let schema = parquet.schema().clone();
        let (id, ok) = match (schema.index_of("request_id"), schema.index_of("success")) {
            (Ok(id), Ok(ok)) => (id, ok),
            _ => return Err(err(&"no request_id/success columns")),
        };
        let optional = ["outcome", "status_code"].map(|n| schema.index_of(n).ok());
        let mut roots = vec![id, ok];
        roots.extend(optional.iter().flatten());
        // Only these columns are read (of an object: only their byte ranges are fetched).
        let mask = ProjectionMask::roots(parquet.parquet_schema(), roots);
        for batch in parquet
            .batches(Some(mask), READ_ROWS)
            .map_err(|e| err(&e))?
        {
            let batch = batch.map_err(|e| err(&e))?;
            landed_in(&batch, rule, &mut landed).map_err(|e| err(&e))?;
        }
    }
    Ok(landed)
}

/// Adds to `landed` the request_ids of `batch` that landed for good. `batch` has `request_id` and
/// `success`, and `outcome` / `status_code` when the table does (read from Delta files or from Spark).
pub fn landed_in(
    batch: &RecordBatch,
    rule: &LandedRule,
    landed: &mut HashSet<u128>,
) -> Result<(), arrow::error::ArrowError> {
    let column = |name: &str| {
        batch
            .column_by_name(name)
            .ok_or_else(|| arrow::error::ArrowError::SchemaError(format!("no {name} column")))
    };
    let ids = arrow::compute::cast(column("request_id")?, &DataType::Utf8)?;
    let ids = ids.as_string::<i32>();
    let ok = column("success")?;
    let outcome = batch
        .column_by_name("outcome")
        .filter(|c| c.data_type() == &DataType::Utf8);
    let status_code = batch.column_by_name("status_code");
    for i in 0..batch.num_rows() {
        if ids.is_valid(i)
            && landed_for_good(
                rule,
                outcome.map(|c| c.as_ref()),
                ok.as_ref(),
                status_code.map(|c| c.as_ref()),
                i,
            )
        {
            landed.insert(id_key(ids.value(i)));
        }
    }
    Ok(())
}

/// The successful rows of the given data files whose request_id key is in `wanted`, whole (every
/// bronze column), batch by batch.
pub fn successful_rows(
    files: &[DataFile],
    wanted: &HashSet<u128>,
) -> Result<Vec<RecordBatch>, ReadError> {
    let mut out = Vec::new();
    for file in files {
        let err = |e: &dyn std::fmt::Display| read_error(file, e);
        let reader = file
            .parquet()
            .map_err(|e| err(&e))?
            .batches(None, READ_ROWS)
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
            let keep: arrow::array::BooleanArray = (0..batch.num_rows())
                .map(|i| {
                    Some(
                        truth(ok.as_ref(), i)
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
