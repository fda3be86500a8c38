//! Prometheus metrics of a run, kept from its events (one more [`Observer`]) and served as the
//! Prometheus text exposition format (0.0.4) at `/metrics` by a small HTTP server
//! (`sparkwasm run --metrics-addr 127.0.0.1:9464`). Names follow Prometheus' conventions
//! (`sparkwasm_` prefix, `_total` counters, base units); labels are bounded (outcome, status class,
//! plugin name). No secret reaches a metric: labels are a fixed vocabulary and plugin names.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use crate::events::{Event, Observer};

/// Request latency buckets, seconds.
const REQUEST_BUCKETS: [f64; 12] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Commit latency buckets, seconds.
const COMMIT_BUCKETS: [f64; 10] = [0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// A histogram with fixed buckets (cumulative at render time).
struct Histogram {
    bounds: &'static [f64],
    counts: Vec<AtomicU64>,
    /// Sum in microseconds (an integer, so it can be atomic).
    sum_us: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_us: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    fn record(&self, d: Duration) {
        let s = d.as_secs_f64();
        let i = self
            .bounds
            .iter()
            .position(|b| s <= *b)
            .unwrap_or(self.bounds.len());
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        self.sum_us
            .fetch_add(d.as_micros() as u64, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} histogram");
        let mut cumulative = 0;
        for (i, bound) in self.bounds.iter().enumerate() {
            cumulative += self.counts[i].load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        cumulative += self.counts[self.bounds.len()].load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
        let _ = writeln!(
            out,
            "{name}_sum {}",
            self.sum_us.load(Ordering::Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "{name}_count {cumulative}");
    }
}

/// The run's metrics.
pub struct Metrics {
    rows_success: AtomicU64,
    rows_retry: AtomicU64,
    rows_final: AtomicU64,
    rows_skipped: AtomicU64,
    rows_landed: AtomicU64,
    retries: AtomicU64,
    requests_sent: AtomicU64,
    /// Answers by class: 1xx..5xx (index 1..=5), transport errors (index 0).
    answers: [AtomicU64; 6],
    request_seconds: Histogram,
    rate_limited: AtomicU64,
    rate_limit_wait_us: AtomicU64,
    /// The adaptive concurrency limit (-1: fixed concurrency).
    concurrency_limit: AtomicI64,
    pauses: AtomicU64,
    pause_wait_us: AtomicU64,
    credentials_acquired: AtomicU64,
    credential_failures: AtomicU64,
    plugin_failures: Mutex<BTreeMap<String, u64>>,
    commits: AtomicU64,
    commit_seconds: Histogram,
    last_batch_version: AtomicI64,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            rows_success: AtomicU64::new(0),
            rows_retry: AtomicU64::new(0),
            rows_final: AtomicU64::new(0),
            rows_skipped: AtomicU64::new(0),
            rows_landed: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            requests_sent: AtomicU64::new(0),
            answers: Default::default(),
            request_seconds: Histogram::new(&REQUEST_BUCKETS),
            rate_limited: AtomicU64::new(0),
            rate_limit_wait_us: AtomicU64::new(0),
            concurrency_limit: AtomicI64::new(-1),
            pauses: AtomicU64::new(0),
            pause_wait_us: AtomicU64::new(0),
            credentials_acquired: AtomicU64::new(0),
            credential_failures: AtomicU64::new(0),
            plugin_failures: Mutex::new(BTreeMap::new()),
            commits: AtomicU64::new(0),
            commit_seconds: Histogram::new(&COMMIT_BUCKETS),
            last_batch_version: AtomicI64::new(-1),
        }
    }
}

impl Observer for Metrics {
    fn observe(&self, event: &Event<'_>) {
        let add = |c: &AtomicU64, n: u64| {
            c.fetch_add(n, Ordering::Relaxed);
        };
        match *event {
            Event::RowDone {
                success,
                retryable,
                retries,
                ..
            } => {
                add(
                    match (success, retryable) {
                        (true, _) => &self.rows_success,
                        (false, true) => &self.rows_retry,
                        (false, false) => &self.rows_final,
                    },
                    1,
                );
                add(&self.retries, retries.into());
            }
            Event::RowSkipped => add(&self.rows_skipped, 1),
            Event::RequestSent => add(&self.requests_sent, 1),
            Event::RequestAnswered { status, took } => {
                let class = status.map_or(0, |s| usize::from((s / 100).clamp(1, 5)));
                add(&self.answers[class], 1);
                self.request_seconds.record(took);
            }
            Event::RateLimited { waited } => {
                add(&self.rate_limited, 1);
                add(&self.rate_limit_wait_us, waited.as_micros() as u64);
            }
            Event::ConcurrencyLimit { limit } => {
                self.concurrency_limit
                    .store(limit as i64, Ordering::Relaxed);
            }
            Event::PauseStarted { .. } => add(&self.pauses, 1),
            Event::Paused { waited } => add(&self.pause_wait_us, waited.as_micros() as u64),
            Event::BatchCommitted {
                rows,
                version,
                took,
            } => {
                add(&self.commits, 1);
                add(&self.rows_landed, rows as u64);
                self.commit_seconds.record(took);
                self.last_batch_version
                    .fetch_max(version, Ordering::Relaxed);
            }
            Event::CredentialAcquired { .. } => add(&self.credentials_acquired, 1),
            Event::CredentialFailed { .. } => add(&self.credential_failures, 1),
            Event::PluginFailed { plugin } => {
                *self
                    .plugin_failures
                    .lock()
                    .expect("metrics lock")
                    .entry(plugin.to_owned())
                    .or_default() += 1;
            }
        }
    }
}

/// A label value, escaped as the exposition format wants.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The counters a run report needs, read at once.
#[derive(Clone, Debug)]
pub struct Counts {
    /// Rows that succeeded.
    pub rows_success: u64,
    /// Rows that failed retryably.
    pub rows_retry: u64,
    /// Rows that failed for good.
    pub rows_final: u64,
    /// Rows not sent (landed before).
    pub rows_skipped: u64,
    /// Rows committed.
    pub rows_landed: u64,
    /// Requests sent.
    pub requests: u64,
    /// Batch commits.
    pub commits: u64,
    /// The last committed version (-1: none).
    pub last_batch_version: i64,
}

impl Metrics {
    /// The counters, now.
    pub fn counts(&self) -> Counts {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Counts {
            rows_success: get(&self.rows_success),
            rows_retry: get(&self.rows_retry),
            rows_final: get(&self.rows_final),
            rows_skipped: get(&self.rows_skipped),
            rows_landed: get(&self.rows_landed),
            requests: get(&self.requests_sent),
            commits: get(&self.commits),
            last_batch_version: self.last_batch_version.load(Ordering::Relaxed),
        }
    }

    /// The metrics in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut counter = |name: &str, help: &str, samples: &[(&str, u64)]| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} counter");
            for (labels, v) in samples {
                let _ = writeln!(out, "{name}{labels} {v}");
            }
        };
        counter(
            "sparkwasm_rows_total",
            "Rows sent through the chain, by outcome (success; retry: failed, sent again by a later pass or run; final: failed for good).",
            &[
                ("{outcome=\"success\"}", get(&self.rows_success)),
                ("{outcome=\"retry\"}", get(&self.rows_retry)),
                ("{outcome=\"final\"}", get(&self.rows_final)),
            ],
        );
        counter(
            "sparkwasm_rows_skipped_total",
            "Rows not sent: they landed in an earlier run.",
            &[("", get(&self.rows_skipped))],
        );
        counter(
            "sparkwasm_rows_landed_total",
            "Rows committed to the sink.",
            &[("", get(&self.rows_landed))],
        );
        counter(
            "sparkwasm_retries_total",
            "Sends beyond each row's first (plugin resends, the 401 renewal).",
            &[("", get(&self.retries))],
        );
        counter(
            "sparkwasm_requests_total",
            "Requests sent to the network.",
            &[("", get(&self.requests_sent))],
        );
        counter(
            "sparkwasm_responses_total",
            "Answers from the network by status class; transport_error: no HTTP answer.",
            &[
                ("{class=\"transport_error\"}", get(&self.answers[0])),
                ("{class=\"1xx\"}", get(&self.answers[1])),
                ("{class=\"2xx\"}", get(&self.answers[2])),
                ("{class=\"3xx\"}", get(&self.answers[3])),
                ("{class=\"4xx\"}", get(&self.answers[4])),
                ("{class=\"5xx\"}", get(&self.answers[5])),
            ],
        );
        counter(
            "sparkwasm_rate_limited_total",
            "Requests the global rate limit held back.",
            &[("", get(&self.rate_limited))],
        );
        counter(
            "sparkwasm_credentials_acquired_total",
            "Credentials acquired (OAuth2 tokens, auth plugins).",
            &[("", get(&self.credentials_acquired))],
        );
        counter(
            "sparkwasm_credential_failures_total",
            "Failed attempts to acquire a credential.",
            &[("", get(&self.credential_failures))],
        );
        counter(
            "sparkwasm_commits_total",
            "Batch commits to the sink.",
            &[("", get(&self.commits))],
        );
        let plugins: Vec<(String, u64)> = self
            .plugin_failures
            .lock()
            .expect("metrics lock")
            .iter()
            .map(|(k, v)| (format!("{{plugin=\"{}\"}}", label(k)), *v))
            .collect();
        let plugins: Vec<(&str, u64)> = plugins.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        counter(
            "sparkwasm_plugin_failures_total",
            "Rows a plugin failed (trap, deadline, memory, a broken rule, its own error), by plugin.",
            &plugins,
        );
        counter(
            "sparkwasm_rate_limit_pauses_total",
            "Pauses of every request to the API that its rate-limit headers asked for (Retry-After, RateLimit, X-RateLimit-*).",
            &[("", get(&self.pauses))],
        );
        let _ = writeln!(
            out,
            "# HELP sparkwasm_rate_limit_wait_seconds_total Time requests waited for the rate limit.\n# TYPE sparkwasm_rate_limit_wait_seconds_total counter\nsparkwasm_rate_limit_wait_seconds_total {}",
            get(&self.rate_limit_wait_us) as f64 / 1e6
        );
        let _ = writeln!(
            out,
            "# HELP sparkwasm_rate_limit_pause_seconds_total Time requests were held by those pauses.\n# TYPE sparkwasm_rate_limit_pause_seconds_total counter\nsparkwasm_rate_limit_pause_seconds_total {}",
            get(&self.pause_wait_us) as f64 / 1e6
        );
        // Declared always; a sample only with adaptive concurrency.
        let _ = writeln!(
            out,
            "# HELP sparkwasm_concurrency_limit Requests allowed on the network at once (execution.concurrency: adaptive).\n# TYPE sparkwasm_concurrency_limit gauge"
        );
        let limit = self.concurrency_limit.load(Ordering::Relaxed);
        if limit >= 0 {
            let _ = writeln!(out, "sparkwasm_concurrency_limit {limit}");
        }
        let in_flight = get(&self.requests_sent)
            .saturating_sub(self.answers.iter().map(|a| a.load(Ordering::Relaxed)).sum());
        let _ = writeln!(
            out,
            "# HELP sparkwasm_requests_in_flight Requests sent and not yet answered.\n# TYPE sparkwasm_requests_in_flight gauge\nsparkwasm_requests_in_flight {in_flight}"
        );
        let _ = writeln!(
            out,
            "# HELP sparkwasm_last_batch_version The table version (Delta) or batch id (Spark) of the last batch committed (-1: none yet).\n# TYPE sparkwasm_last_batch_version gauge\nsparkwasm_last_batch_version {}",
            self.last_batch_version.load(Ordering::Relaxed)
        );
        self.request_seconds.render(
            &mut out,
            "sparkwasm_request_duration_seconds",
            "Time on the network per request.",
        );
        self.commit_seconds.render(
            &mut out,
            "sparkwasm_commit_duration_seconds",
            "Time to write and commit a batch.",
        );
        out
    }
}

/// Serves `metrics` at `http://ADDR/metrics` until the returned task is aborted. Returns the address
/// it listens on (a port of 0 picks a free one).
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    use http_body_util::Full;
    use hyper::body::Bytes;
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                // Out of file descriptors, most likely: wait instead of spinning.
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            };
            let metrics = metrics.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: hyper::Request<_>| {
                    let metrics = metrics.clone();
                    async move {
                        let response = if req.uri().path() == "/metrics" {
                            hyper::Response::builder()
                                .header("content-type", "text/plain; version=0.0.4; charset=utf-8")
                                .body(Full::new(Bytes::from(metrics.render())))
                        } else {
                            hyper::Response::builder()
                                .status(404)
                                .body(Full::new(Bytes::from_static(b"see /metrics\n")))
                        };
                        Ok::<_, hyper::http::Error>(response.expect("a valid response"))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok((local, task))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_become_samples() {
        let m = Metrics::default();
        m.observe(&Event::RowDone {
            success: true,
            retryable: false,
            retries: 2,
            latency: None,
        });
        m.observe(&Event::RowDone {
            success: false,
            retryable: true,
            retries: 0,
            latency: None,
        });
        m.observe(&Event::RequestSent);
        m.observe(&Event::RequestAnswered {
            status: Some(503),
            took: Duration::from_millis(20),
        });
        m.observe(&Event::PluginFailed { plugin: "a\"b" });
        m.observe(&Event::BatchCommitted {
            rows: 2,
            version: 3,
            took: Duration::from_millis(70),
        });
        let text = m.render();
        for line in [
            "sparkwasm_rows_total{outcome=\"success\"} 1",
            "sparkwasm_rows_total{outcome=\"retry\"} 1",
            "sparkwasm_retries_total 2",
            "sparkwasm_responses_total{class=\"5xx\"} 1",
            "sparkwasm_plugin_failures_total{plugin=\"a\\\"b\"} 1",
            "sparkwasm_rows_landed_total 2",
            "sparkwasm_last_batch_version 3",
            "sparkwasm_request_duration_seconds_bucket{le=\"0.01\"} 0",
            "sparkwasm_request_duration_seconds_bucket{le=\"0.025\"} 1",
            "sparkwasm_commit_duration_seconds_count 1",
            "sparkwasm_requests_in_flight 0",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} not in:\n{text}");
        }
    }
}
