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
    /// The hash of the row's content.
    pub row_hash: String,
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
    /// The answer was a 2xx.
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

impl Record {
    /// The record of one row's outcome, every text column passed through `redactor` (secret values,
    /// credentials acquired during the run, credential headers).
    pub fn from_outcome(o: RowOutcome, redactor: &Redactor) -> Record {
        let mut record = Record {
            request_id: o.request_id,
            row_hash: o.row_hash,
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
        match o.result {
            Ok(response) => {
                record.success = response.is_success();
                record.status_code = Some(response.status as i32);
                if !record.success {
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
                record.body_text = Some(
                    redactor
                        .text(&String::from_utf8_lossy(&response.body))
                        .into_owned(),
                );
                record.response_metadata = Some(redactor.metadata(&response.metadata));
            }
            Err(e) => record.error_message = Some(redactor.text(&e.message).into_owned()),
        }
        record
    }
}
