//! A row's outcome as it lands: the bronze record, its secrets redacted, and a batch of them as
//! an Arrow batch in the bronze schema.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanBuilder, Int32Builder, Int64Builder, StringBuilder,
    TimestampMicrosecondBuilder,
};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;

use crate::bronze::bronze_schema;
use crate::execute::RowOutcome;
use crate::redact::Redactor;

/// One result, as it lands.
#[derive(Clone, Debug, Default)]
pub struct Record {
    /// The row's id.
    pub request_id: String,
    /// SHA-256 (hex) of `body_text` as it lands, the legacy table's `row_hash`; `None` without an
    /// answer.
    pub row_hash: Option<String>,
    /// The hash of the source row's content (xxh3-128 of every column's name, type and value).
    pub source_row_hash: String,
    /// `success`, `retry` (sent again by a later pass or run) or `final` (failed for good).
    pub outcome: &'static str,
    /// The URL sent to, redacted.
    pub url: String,
    /// The method.
    pub method: String,
    /// JSON objects, secrets redacted.
    pub request_headers: String,
    /// The mapped columns sent, as a JSON object, redacted.
    pub request_params: String,
    /// The request's metadata (the host's and the plugins'), as a JSON object, redacted.
    pub request_metadata: String,
    /// The HTTP status, if there was an answer.
    pub status_code: Option<i32>,
    /// The answer's headers, as a JSON object, redacted.
    pub response_headers: Option<String>,
    /// The answer's body as text, redacted.
    pub body_text: Option<String>,
    /// The result counts as success (`execution.outcomes`, `endpoint.response_schema`).
    pub success: bool,
    /// Why the row did not succeed.
    pub error_message: Option<String>,
    /// Sends to the network.
    pub attempts: i32,
    /// The answer's metadata (the transport's and the plugins'), as a JSON object, redacted.
    pub response_metadata: Option<String>,
    /// When the request started, µs since the Unix epoch (UTC).
    pub request_time_us: i64,
}

/// The records as one Arrow batch in the bronze schema, every row tagged `batch_id`.
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
        strings(&|r| r.row_hash.as_deref()),
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
        strings(&|r| Some(r.outcome)),
        strings(&|r| Some(&r.source_row_hash)),
    ];
    RecordBatch::try_new(bronze_schema(), columns)
}

impl Record {
    /// The record of one row's outcome, every text column passed through `redactor` (secret values,
    /// credentials acquired during the run, credential headers).
    pub fn from_outcome(o: RowOutcome, redactor: &Redactor) -> Record {
        let mut record = Record {
            request_id: o.request_id,
            source_row_hash: o.row_hash,
            request_time_us: o.request_time_us,
            attempts: o.attempts as i32,
            request_params: o
                .params_json
                .map(|p| redactor.text(&p).into_owned())
                .unwrap_or_default(),
            ..Default::default()
        };
        match &o.sent {
            Some(sent) => {
                record.method = sent.method.to_string();
                record.url = redactor.text(&sent.url).into_owned();
                record.request_headers = redactor.headers(&sent.headers);
                record.request_metadata = redactor.metadata(&sent.metadata);
            }
            None => {
                record.request_headers = "{}".into();
                record.request_metadata = "{}".into();
            }
        }
        record.success = o.verdict == crate::execute::classify::Verdict::Success;
        record.outcome = o.verdict.as_str();
        match o.result {
            Ok(response) => {
                record.status_code = Some(response.status as i32);
                if let Some(why) = &o.rejection {
                    record.error_message = Some(redactor.text(why).into_owned());
                } else if !record.success {
                    let reason = http::StatusCode::from_u16(response.status)
                        .ok()
                        .and_then(|s| s.canonical_reason())
                        .unwrap_or("");
                    record.error_message = Some(
                        format!("HTTP {} {reason}", response.status)
                            .trim_end()
                            .to_owned(),
                    );
                }
                record.response_headers = Some(redactor.headers(&response.headers));
                let body = redactor
                    .text(&String::from_utf8_lossy(&response.body))
                    .into_owned();
                // The legacy row_hash, of the body as it lands (a hash of a body that held a
                // secret could be brute-forced back to it).
                record.row_hash = Some(body_hash(body.as_bytes()));
                record.body_text = Some(body);
                record.response_metadata = Some(redactor.metadata(&response.metadata));
            }
            Err(e) => record.error_message = Some(redactor.text(&e.message).into_owned()),
        }
        record
    }
}

/// The legacy `row_hash`: SHA-256 of the answer's body bytes, lowercase hex.
fn body_hash(body: &[u8]) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(body);
    let mut hex = String::with_capacity(64);
    for b in digest {
        crate::api::push_hex(&mut hex, b);
    }
    hex
}

/// The columns any bronze table must have for sparkwasm to write it and resume from it.
const REQUIRED: [&str; 4] = ["request_id", "success", "status_code", "_request_time"];

/// Whether sparkwasm can write the table whose schema is `target`; else what is missing.
pub(super) fn check_target(target: &arrow::datatypes::Schema) -> Result<(), String> {
    for name in REQUIRED {
        if target.field_with_name(name).is_err() {
            return Err(format!("has no column `{name}`"));
        }
    }
    let ours = bronze_schema();
    for field in target.fields() {
        if ours.field_with_name(field.name()).is_err() && !field.is_nullable() {
            return Err(format!(
                "has a required column `{}` that a bronze record does not fill",
                field.name()
            ));
        }
    }
    Ok(())
}

/// `batch` (in the bronze schema) in the table's own schema: its columns in its order, each cast to
/// its type (the legacy table's strings: status_code "200", success "true", attempts "1"); a column
/// the table lacks is dropped, one only the table has is null.
pub(super) fn conform(
    batch: &RecordBatch,
    target: &arrow::datatypes::SchemaRef,
) -> Result<RecordBatch, ArrowError> {
    if batch.schema().as_ref() == target.as_ref() {
        return Ok(batch.clone());
    }
    let columns = target
        .fields()
        .iter()
        .map(|field| match batch.column_by_name(field.name()) {
            Some(column) if column.data_type() == field.data_type() => Ok(column.clone()),
            Some(column) => arrow::compute::cast(column, field.data_type()),
            None => Ok(arrow::array::new_null_array(
                field.data_type(),
                batch.num_rows(),
            )),
        })
        .collect::<Result<Vec<_>, _>>()?;
    RecordBatch::try_new(target.clone(), columns)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_row_hash_is_lowercase_hex_sha256_of_the_body() {
        assert_eq!(
            super::body_hash(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            super::body_hash(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
