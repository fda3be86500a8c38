//! The bronze row: the legacy table's columns, typed.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, LazyLock};

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanBuilder, Int32Builder, Int64Builder, StringBuilder,
    TimestampMicrosecondBuilder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

/// One result, as it lands.
#[derive(Clone, Debug, Default)]
pub struct Record {
    pub request_id: String,
    pub row_hash: String,
    pub url: String,
    pub method: String,
    /// JSON objects, secrets redacted.
    pub request_headers: String,
    pub request_params: String,
    pub request_metadata: String,
    pub status_code: Option<i32>,
    pub response_headers: Option<String>,
    pub body_text: Option<String>,
    pub success: bool,
    pub error_message: Option<String>,
    pub attempts: i32,
    pub response_metadata: Option<String>,
    /// When the request started, µs since the Unix epoch (UTC).
    pub request_time_us: i64,
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

pub fn to_batch(records: &[Record], batch_id: i64) -> Result<RecordBatch, ArrowError> {
    let n = records.len();
    let strings = |get: &dyn Fn(&Record) -> Option<&str>| -> ArrayRef {
        let mut b = StringBuilder::with_capacity(n, n * 16);
        for r in records {
            b.append_option(get(r));
        }
        Arc::new(b.finish())
    };
    let mut status = Int32Builder::with_capacity(n);
    let mut success = BooleanBuilder::with_capacity(n);
    let mut attempts = Int32Builder::with_capacity(n);
    let mut time = TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC");
    let mut batch = Int64Builder::with_capacity(n);
    for r in records {
        status.append_option(r.status_code);
        success.append_value(r.success);
        attempts.append_value(r.attempts);
        time.append_value(r.request_time_us);
        batch.append_value(batch_id);
    }
    let columns: Vec<ArrayRef> = vec![
        strings(&|r| Some(&r.request_id)),
        strings(&|r| Some(&r.row_hash)),
        strings(&|r| Some(&r.url)),
        strings(&|r| Some(&r.method)),
        strings(&|r| Some(&r.request_headers)),
        strings(&|r| Some(&r.request_params)),
        strings(&|r| Some(&r.request_metadata)),
        Arc::new(status.finish()),
        strings(&|r| r.response_headers.as_deref()),
        strings(&|r| r.body_text.as_deref()),
        Arc::new(success.finish()),
        strings(&|r| r.error_message.as_deref()),
        Arc::new(attempts.finish()),
        strings(&|r| r.response_metadata.as_deref()),
        Arc::new(time.finish()),
        Arc::new(batch.finish()),
    ];
    RecordBatch::try_new(bronze_schema(), columns)
}

/// The keys of request_ids that landed with success=true in the given data files.
pub fn successful_ids(files: &[PathBuf]) -> Result<HashSet<u128>, String> {
    let mut landed = HashSet::new();
    for file in files {
        let err = |e: &dyn std::fmt::Display| format!("reading {}: {e}", file.display());
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
) -> Result<Vec<RecordBatch>, String> {
    let mut out = Vec::new();
    for file in files {
        let err = |e: &dyn std::fmt::Display| format!("reading {}: {e}", file.display());
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
