//! Stage 7: live progress and the final summary, as a consumer of the run's events.
//!
//! On a terminal: a progress bar (rows, rows/s, ok/failed, ETA). Otherwise: a tracing line every few
//! seconds. At the end: rows, ok, failed, retries, p50/p99 latency, rows/s, elapsed.

use std::fmt;
use std::io::IsTerminal;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};

use crate::events::{Event, Observer};

pub mod metrics;

/// The run's counters, kept from its events.
pub struct Progress {
    ok: AtomicU64,
    failed: AtomicU64,
    /// Rows sent (or failed before sending), over every pass.
    sent: AtomicU64,
    /// Failures of the current pass that a later pass or run sends again.
    to_retry: AtomicU64,
    skipped: AtomicU64,
    retries: AtomicU64,
    /// Passes over the rows so far (`execution.max_attempts`).
    passes: AtomicU64,
    /// The adaptive concurrency limit (0: fixed concurrency), and whether the API's rate-limit
    /// headers hold every request now (until when, µs since `started`).
    limit: AtomicU64,
    paused_until_us: AtomicU64,
    /// Latency per row (µs), 1 µs to 1 h.
    latency: Mutex<Histogram<u64>>,
    started: Instant,
}

impl Default for Progress {
    fn default() -> Self {
        Progress {
            ok: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            to_retry: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            passes: AtomicU64::new(1),
            limit: AtomicU64::new(0),
            paused_until_us: AtomicU64::new(0),
            latency: Mutex::new(
                Histogram::new_with_bounds(1, 3_600_000_000, 2).expect("valid histogram bounds"),
            ),
            started: Instant::now(),
        }
    }
}

impl Observer for Progress {
    fn observe(&self, event: &Event<'_>) {
        match *event {
            // A later pass skips every row that landed: only the first pass's count is news.
            Event::RowSkipped if self.passes.load(Ordering::Relaxed) == 1 => {
                self.skipped.fetch_add(1, Ordering::Relaxed);
            }
            Event::ConcurrencyLimit { limit } => {
                self.limit.store(limit as u64, Ordering::Relaxed);
            }
            Event::PauseStarted { wait } => {
                let until = self.started.elapsed() + wait;
                self.paused_until_us
                    .fetch_max(until.as_micros() as u64, Ordering::Relaxed);
            }
            Event::RowDone {
                success,
                retryable,
                retries,
                latency,
            } => {
                (if success { &self.ok } else { &self.failed }).fetch_add(1, Ordering::Relaxed);
                self.sent.fetch_add(1, Ordering::Relaxed);
                if retryable {
                    self.to_retry.fetch_add(1, Ordering::Relaxed);
                }
                self.retries.fetch_add(retries.into(), Ordering::Relaxed);
                if let Some(l) = latency {
                    let _ = self
                        .latency
                        .lock()
                        .expect("histogram lock")
                        .record((l.as_micros() as u64).max(1));
                }
            }
            _ => {}
        }
    }
}

impl Progress {
    /// What paces the run now, for the progress line: the adaptive limit, a pause the API asked
    /// for (empty with fixed concurrency and no pause).
    pub fn pacing(&self) -> String {
        let mut out = String::new();
        let limit = self.limit.load(Ordering::Relaxed);
        if limit > 0 {
            out.push_str(&format!("  limit {limit}"));
        }
        let until = Duration::from_micros(self.paused_until_us.load(Ordering::Relaxed));
        if let Some(left) = until.checked_sub(self.started.elapsed()) {
            out.push_str(&format!(
                "  paused {:.1}s (the API asked)",
                left.as_secs_f64()
            ));
        }
        out
    }

    /// A new pass begins: the failures the last one will send again are no longer failures (they
    /// are about to be tried again).
    pub fn next_pass(&self) {
        let again = self.to_retry.swap(0, Ordering::Relaxed);
        self.failed.fetch_sub(again, Ordering::Relaxed);
        self.passes.fetch_add(1, Ordering::Relaxed);
    }

    /// Failures of the pass so far that a later pass (or run) sends again.
    pub fn to_retry(&self) -> u64 {
        self.to_retry.load(Ordering::Relaxed)
    }

    /// The numbers so far.
    pub fn summary(&self) -> Summary {
        let h = self.latency.lock().expect("histogram lock");
        let (ok, failed) = (
            self.ok.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        );
        let to_retry = self.to_retry.load(Ordering::Relaxed);
        Summary {
            rows: self.sent.load(Ordering::Relaxed),
            ok,
            failed,
            failed_retryable: to_retry,
            passes: self.passes.load(Ordering::Relaxed),
            skipped: self.skipped.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
            p50: Duration::from_micros(h.value_at_quantile(0.5)),
            p99: Duration::from_micros(h.value_at_quantile(0.99)),
            elapsed: self.started.elapsed(),
        }
    }

    /// Shows progress until the returned guard is dropped.
    pub fn show(self: &std::sync::Arc<Self>, total: Option<u64>) -> Display {
        let progress = self.clone();
        // Not with --log-format json: every line of stderr is then a JSON object.
        let bar = (std::io::stderr().is_terminal() && !crate::say::is_json()).then(|| {
            // With a known total: a bar and an ETA; without (CSV, JSON lines): a counter.
            let (bar, template) = match total {
                Some(n) => (ProgressBar::new(n), "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} rows  {per_sec}  {msg}  ETA {eta}"),
                None => (ProgressBar::new_spinner(), "{spinner} [{elapsed_precise}] {pos} rows  {per_sec}  {msg}"),
            };
            bar.set_style(ProgressStyle::with_template(template).expect("valid template"));
            bar
        });
        let task_bar = bar.clone();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(if task_bar.is_some() {
                Duration::from_millis(200)
            } else {
                Duration::from_secs(5)
            });
            tick.tick().await;
            loop {
                tick.tick().await;
                let s = progress.summary();
                match &task_bar {
                    Some(bar) => {
                        bar.set_position(s.rows + s.skipped);
                        bar.set_message(format!(
                            "ok {} failed {}{}",
                            s.ok,
                            s.failed,
                            progress.pacing()
                        ));
                    }
                    None => tracing::info!(
                        rows = s.rows,
                        ok = s.ok,
                        failed = s.failed,
                        skipped = s.skipped,
                        rows_per_s = format!("{:.0}", s.rate()),
                        pacing = progress.pacing().trim(),
                        "progress"
                    ),
                }
            }
        });
        Display { task, bar }
    }
}

/// The live display; stops when dropped.
pub struct Display {
    task: tokio::task::JoinHandle<()>,
    bar: Option<ProgressBar>,
}

impl Drop for Display {
    fn drop(&mut self) {
        self.task.abort();
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// The numbers of a finished run.
#[derive(Clone, Debug)]
pub struct Summary {
    /// Rows sent (or failed before sending).
    pub rows: u64,
    /// Rows that ended with a 2xx.
    pub ok: u64,
    /// Rows that did not (recorded with success=false), as they stand at the end.
    pub failed: u64,
    /// Of those, the ones the next run sends again (the rest failed for good).
    pub failed_retryable: u64,
    /// Passes over the rows (`execution.max_attempts`).
    pub passes: u64,
    /// Rows that had already landed: not sent.
    pub skipped: u64,
    /// Sends beyond each row's first.
    pub retries: u64,
    /// Median row latency.
    pub p50: Duration,
    /// 99th percentile row latency.
    pub p99: Duration,
    /// Since the run began.
    pub elapsed: Duration,
}

impl Summary {
    /// Rows per second.
    pub fn rate(&self) -> f64 {
        self.rows as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "  rows      {} sent ({} already landed, skipped)",
            self.rows, self.skipped
        )?;
        writeln!(f, "  ok        {}", self.ok)?;
        writeln!(
            f,
            "  failed    {} ({} to send again, {} for good)",
            self.failed,
            self.failed_retryable,
            self.failed - self.failed_retryable.min(self.failed)
        )?;
        if self.passes > 1 {
            writeln!(f, "  passes    {}", self.passes)?;
        }
        writeln!(f, "  retries   {}", self.retries)?;
        writeln!(
            f,
            "  latency   p50 {:.1} ms, p99 {:.1} ms",
            self.p50.as_secs_f64() * 1e3,
            self.p99.as_secs_f64() * 1e3
        )?;
        writeln!(f, "  rate      {:.0} rows/s", self.rate())?;
        write!(f, "  elapsed   {:.2} s", self.elapsed.as_secs_f64())
    }
}
