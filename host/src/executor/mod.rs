//! Stage 6: rows → requests → results, with bounded concurrency and backpressure.
//!
//! A dispatcher deals rows round-robin into `partitions` bounded queues; each partition has
//! `concurrency_limit` consumers. A consumer renders the row's request, sends it through the middleware
//! chain to the transport (behind the global rate limit) and hands the result to the sink channel. Every
//! queue is bounded, so a slow API or a slow sink holds the source back instead of filling memory.

mod rate;

use std::borrow::Cow;
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use futures::future::BoxFuture;
use tokio::sync::mpsc;

pub use rate::RateLimiter;

use crate::plugin::{Chain, Terminal, WORKER};
use crate::report::Progress;
use crate::request::{ApiRequest, ApiResponse, RequestError, RequestPlan, json_object};
use crate::sink::{Record, id_key};
use crate::source::{RowStream, RowView, SourceError};
use crate::transport::HttpTransport;

/// The end of the chain: rate limit, then the pooled client.
pub struct Gate {
    pub rate: Option<RateLimiter>,
    pub transport: Arc<HttpTransport>,
}

impl Terminal for Gate {
    fn send(&self, request: ApiRequest) -> BoxFuture<'_, Result<ApiResponse, RequestError>> {
        Box::pin(async move {
            if let Some(rate) = &self.rate {
                rate.acquire().await;
            }
            self.transport.send(request).await
        })
    }
}

/// Everything a consumer needs, shared.
pub struct Work {
    pub plan: RequestPlan,
    pub chain: Chain,
    /// The end of the chain: the rate limit, then the transport.
    pub terminal: Arc<dyn Terminal>,
    pub id_column: Option<usize>,
    pub landed: HashSet<u128>,
    pub redactor: Arc<Redactor>,
    pub progress: Arc<Progress>,
}

/// Runs every row of `rows` and sends each result to `results`. Returns when the source is exhausted
/// and every consumer is done, or with the source's error (already-sent rows are still delivered).
pub async fn run(
    work: Arc<Work>,
    mut rows: RowStream,
    partitions: usize,
    consumers: usize,
    results: mpsc::Sender<Record>,
) -> Result<(), SourceError> {
    let mut queues = Vec::with_capacity(partitions);
    let mut tasks = tokio::task::JoinSet::new();
    for partition in 0..partitions {
        let (tx, rx) = async_channel::bounded::<RowView>(consumers);
        queues.push(tx);
        for consumer in 0..consumers {
            let (rx, work, results) = (rx.clone(), work.clone(), results.clone());
            let slot = (partition as u32, consumer as u32);
            tasks.spawn(WORKER.scope(slot, async move {
                while let Ok(row) = rx.recv().await {
                    if let Some(record) = process(&work, partition, row).await
                        && results.send(record).await.is_err()
                    {
                        return;
                    }
                }
            }));
        }
    }
    drop(results);
    let mut outcome = Ok(());
    let mut turn = 0;
    'read: while let Some(batch) = rows.batches.recv().await {
        let batch = match batch {
            Ok(b) => Arc::new(b),
            Err(e) => {
                outcome = Err(e);
                break;
            }
        };
        for row in 0..batch.num_rows() {
            if queues[turn]
                .send(RowView {
                    batch: batch.clone(),
                    row,
                })
                .await
                .is_err()
            {
                break 'read;
            }
            turn = (turn + 1) % partitions;
        }
    }
    drop(queues);
    while tasks.join_next().await.is_some() {}
    outcome
}

/// One row, start to finish. `None` when the row already landed in an earlier run.
async fn process(work: &Work, partition: usize, row: RowView) -> Option<Record> {
    let identity = identify(work, &row)?;
    let request_time_us = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64);
    let mut record = Record {
        request_id: identity.request_id,
        row_hash: identity.row_hash,
        request_time_us,
        ..Default::default()
    };
    let rendered = match identity.problem {
        Some(problem) => Err(RequestError::new(problem)),
        None => work.plan.render(&row),
    };
    let rendered = match rendered {
        Ok(r) => r,
        Err(e) => {
            let message = format!("row {}: {}", record.request_id, e.message);
            record.error_message = Some(work.redactor.text(&message).into_owned());
            record.request_headers = "{}".into();
            record.request_metadata = "{}".into();
            work.progress.done(false, 0, None);
            return Some(record);
        }
    };
    let mut request = rendered.request;
    request
        .metadata
        .insert("partition".into(), partition.to_string());
    record.method = request.method.to_string();
    record.request_params = work.redactor.text(&rendered.params_json).into_owned();
    if work.chain.is_empty() {
        record_sent(work, &mut record, &request);
    }
    let started = Instant::now();
    let outcome = work.chain.call(request, &work.terminal).await;
    let latency = started.elapsed();
    record.attempts = outcome.attempts as i32;
    if let Some(sent) = &outcome.sent {
        // With middleware: what it actually sent (url, headers, metadata), not what the row rendered.
        record_sent(work, &mut record, sent);
    }
    match outcome.result {
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
            record.response_headers = Some(work.redactor.headers(&response.headers));
            record.body_text = Some(
                work.redactor
                    .text(&String::from_utf8_lossy(&response.body))
                    .into_owned(),
            );
            record.response_metadata = Some(work.redactor.metadata(&response.metadata));
        }
        Err(e) => record.error_message = Some(work.redactor.text(&e.message).into_owned()),
    }
    work.progress.done(
        record.success,
        outcome.attempts.saturating_sub(1),
        Some(latency),
    );
    Some(record)
}

/// The request columns of the record (url, request_headers, request_metadata), redacted.
fn record_sent(work: &Work, record: &mut Record, request: &ApiRequest) {
    record.url = work.redactor.text(&request.url).into_owned();
    record.request_headers = work.redactor.headers(&request.headers);
    record.request_metadata = work.redactor.metadata(&request.metadata);
}

/// Who a row is: its request_id (the id_column's value, else the content hash) and its content hash,
/// each computed once.
struct Identity {
    request_id: String,
    row_hash: String,
    /// Why the row cannot be sent (a null id): it is recorded as failed under its hash.
    problem: Option<&'static str>,
}

/// The row's identity, or `None` when it already landed in an earlier run. The id column is checked
/// against the landed set before the row is hashed, so resumed rows cost one lookup.
fn identify(work: &Work, row: &RowView) -> Option<Identity> {
    let landed = |id: &str| {
        let done = work.landed.contains(&id_key(id));
        if done {
            work.progress.skipped();
        }
        done
    };
    let (request_id, row_hash, problem) = match work.id_column.map(|i| row.cell(i).to_text()) {
        Some(Some(id)) => {
            if landed(&id) {
                return None;
            }
            (id, row.content_hash(), None)
        }
        Some(None) => {
            let hash = row.content_hash();
            (hash.clone(), hash, Some("id_column is null in this row"))
        }
        None => {
            let hash = row.content_hash();
            if landed(&hash) {
                return None;
            }
            (hash.clone(), hash, None)
        }
    };
    Some(Identity {
        request_id,
        row_hash,
        problem,
    })
}

/// Keeps secrets out of the sink and the logs: credentials in sensitive headers, any secret value
/// from the config and every credential acquired during the run are replaced by `***`.
#[derive(Default)]
pub struct Redactor {
    secrets: Vec<String>,
    /// Credentials acquired at run time (OAuth2 tokens, auth plugin secrets), newest last.
    learned: std::sync::RwLock<Vec<String>>,
}

/// How many run-time credentials are remembered (a long run renews its token many times; a token
/// older than the last few is no longer in anything the run reads). Each is searched for in every
/// redacted text, so the list stays short; the config's secrets are kept apart, for the whole run.
const LEARNED: usize = 8;

const SENSITIVE_HEADERS: [&str; 6] = [
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "x-api-key",
    "api-key",
];

impl Redactor {
    pub fn new(secrets: impl IntoIterator<Item = String>) -> Self {
        let mut secrets: Vec<String> = secrets.into_iter().filter(|s| !s.is_empty()).collect();
        // Longest first, so a secret containing another is replaced whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        Redactor {
            secrets,
            learned: Default::default(),
        }
    }

    /// Adds a secret obtained while running (too short to be a secret: ignored, it would mask noise).
    pub fn learn(&self, secret: &str) {
        if secret.len() < 4 {
            return;
        }
        let mut learned = self.learned.write().expect("redactor lock");
        if learned.iter().any(|s| s == secret) {
            return;
        }
        if learned.len() == LEARNED {
            learned.remove(0);
        }
        learned.push(secret.to_owned());
    }

    /// `text` with every secret replaced by `***`; borrowed when there is nothing to replace.
    pub fn text<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let mut out = Cow::Borrowed(text);
        let learned = self.learned.read().expect("redactor lock");
        for s in self.secrets.iter().chain(learned.iter().rev()) {
            if out.contains(s.as_str()) {
                out = Cow::Owned(out.replace(s.as_str(), "***"));
            }
        }
        out
    }

    /// Metadata as a JSON object, secrets redacted.
    pub fn metadata(&self, metadata: &BTreeMap<String, String>) -> String {
        json_object(
            metadata
                .iter()
                .map(|(k, v)| (k.as_str(), serde_json::Value::from(self.text(v).as_ref()))),
        )
    }

    /// Headers as a JSON object, sensitive values redacted.
    pub fn headers(&self, headers: &[(String, String)]) -> String {
        json_object(headers.iter().map(|(name, value)| {
            let shown = if SENSITIVE_HEADERS
                .iter()
                .any(|h| name.eq_ignore_ascii_case(h))
            {
                Cow::Borrowed("***")
            } else {
                self.text(value)
            };
            (name.as_str(), serde_json::Value::from(shown.as_ref()))
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redactor_hides_secrets_and_credential_headers() {
        let r = Redactor::new(["tok123".to_owned()]);
        assert_eq!(r.text("url?key=tok123&x=1"), "url?key=***&x=1");
        r.learn("fresh-token");
        assert_eq!(r.text("Bearer fresh-token."), "Bearer ***.");
        assert_eq!(
            r.headers(&[
                ("Authorization".into(), "Basic abc".into()),
                ("X-Trace".into(), "tok123".into())
            ]),
            r#"{"Authorization":"***","X-Trace":"***"}"#
        );
    }
}
