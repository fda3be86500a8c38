//! The command line: `sparkwasm run` and `sparkwasm validate`, the binary's only module. Thin: it
//! parses, loads, runs, reports, and maps the outcome to an exit status (0 all landed, 2 some rows
//! failed, 1 could not run). Errors reach the user with their chain of causes, secrets redacted.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use sparkwasm::config::{self, LoadOptions, Pipeline, SecretStore};
use sparkwasm::redact::Redactor;
use sparkwasm::report::metrics::{self, Metrics};
use sparkwasm::say;

mod plugin;

/// Send one HTTP request per row of a table through sandboxed middleware, and land every response in a
/// Delta table (the bronze layer), exactly once, batch by batch.
#[derive(Parser, Debug)]
#[command(
    name = "sparkwasm",
    version,
    after_help = "Exit status: 0 every row landed successfully; 2 the run finished but some rows failed (recorded with success=false; those that failed retryably are sent again by the next run, those that failed for good only with --retry-failed); 1 the run could not start or go on (bad config, source, sink or plugin).\n\nLogs: RUST_LOG (e.g. RUST_LOG=sparkwasm=debug). A progress bar is drawn when stderr is a terminal."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log lines as text (default) or as JSON objects, one per line, for log shippers.
    #[arg(long, global = true, default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a pipeline: read the rows, call the API for each, land the results in the Delta sink.
    /// A rerun resumes: rows already landed with success are not sent again.
    Run {
        /// Pipeline file (YAML or JSON; the legacy PySpark framework's format is accepted as is).
        pipeline: PathBuf,
        #[command(flatten)]
        secrets: SecretsArg,
        /// Run only shard I of N (0-based): for a Spark source the rows with
        /// pmod(xxhash64(id_column), N) = I, computed by Spark; for a file source those whose
        /// xxh3_64(id as text) mod N = I. N hosts, one per shard, land one table together, each
        /// committing under its own transaction id; a killed shard resumes on its own.
        #[arg(long, value_name = "I/N")]
        shard: Option<config::Shard>,
        /// Show the first N rows' requests as the middleware chain and the auth stage leave them
        /// (secrets as ***), and stop: nothing is sent, no credential fetched, nothing written.
        #[arg(long, value_name = "N", conflicts_with_all = ["metrics_addr", "report"])]
        dry_run: Option<usize>,
        #[command(flatten)]
        rows: RowsArg,
        #[command(flatten)]
        watch: WatchArg,
    },
    /// Check a pipeline file and report every error with its key path and line:col; sends nothing.
    Validate {
        pipeline: PathBuf,
        #[command(flatten)]
        secrets: SecretsArg,
        #[command(flatten)]
        rows: RowsArg,
    },
    /// Plugins: inspect a file, sign it, embed its manifest, push and pull, list the built-ins.
    #[command(subcommand)]
    Plugin(plugin::PluginCommand),
    /// Print the pipeline file's JSON Schema (generated from the validator's key descriptions), for
    /// editors: `# yaml-language-server: $schema=pipeline.schema.json`.
    Schema {
        /// The JSON Schema draft: 2020-12 (default) or 7 for older editors.
        #[arg(long, default_value = "2020-12", value_parser = ["2020-12", "7"])]
        draft: String,
    },
}

/// Rows given at run time (the legacy framework took its rows as a DataFrame when it ran): they
/// replace the file's `tables.source`, or stand in for it when the file has none.
#[derive(clap::Args, Debug)]
struct RowsArg {
    /// The rows: a local file or folder (Parquet, CSV, JSON lines, Delta; also as file://...), or,
    /// with a `spark` section, a Spark table (`namespace.name`).
    #[arg(long, value_name = "PATH|URL|TABLE")]
    source: Option<String>,
    /// The rows: a SQL query read through Spark (needs a `spark` section).
    #[arg(long, value_name = "SQL", conflicts_with = "source")]
    source_query: Option<String>,
    /// The column whose value is a row's request_id (else tables.source.id_column, else a hash of
    /// the row).
    #[arg(long, value_name = "COLUMN")]
    id_column: Option<String>,
    /// Send again the rows that failed for good in earlier runs (e.g. a 404 the API has since
    /// fixed), not only those that failed retryably.
    #[arg(long)]
    retry_failed: bool,
    /// Take `oci://` plugin sources without a digest at their tag's current digest (printed, to pin).
    #[arg(long)]
    allow_unpinned: bool,
}

impl RowsArg {
    fn to_override(&self) -> config::SourceOverride {
        config::SourceOverride {
            source: self.source.clone(),
            query: self.source_query.clone(),
            id_column: self.id_column.clone(),
        }
    }
}

/// Watching a run from outside: metrics and a report file.
#[derive(clap::Args, Debug)]
struct WatchArg {
    /// Serve Prometheus metrics at http://ADDR/metrics for the whole run (e.g. 127.0.0.1:9464).
    #[arg(long, value_name = "ADDR")]
    metrics_addr: Option<std::net::SocketAddr>,
    /// Keep serving the metrics this many seconds after the run ends, so that a scrape sees the
    /// final values.
    #[arg(
        long,
        value_name = "SECONDS",
        default_value_t = 0,
        requires = "metrics_addr"
    )]
    metrics_hold: u64,
    /// Write the run's report (rows, outcomes, latency, rate, commits, table version, plugins with
    /// digests) as JSON to FILE, also when the run fails.
    #[arg(long, value_name = "FILE")]
    report: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
struct SecretsArg {
    /// YAML/JSON file of secrets, `scope: {key: value}`, for `{{secret.scope:key}}` in the pipeline.
    /// Without it (or for keys it lacks) secrets come from SPARKWASM_SECRET_<SCOPE>_<KEY>.
    #[arg(long, value_name = "FILE")]
    secrets_file: Option<PathBuf>,
}

/// Every request in flight holds a connection, and a stock Linux gives a process 1,024 file
/// descriptors (soft limit): the legacy default of 4,000 in flight would fail its rows with
/// "too many open files". The soft limit is raised to the hard one (as Go's runtime and most
/// servers do); the hard limit is the administrator's.
fn raise_open_files_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read and write the struct they are given.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

/// Parses the command line, runs the command, and turns its outcome into the exit status.
pub(crate) fn main() -> ExitCode {
    raise_open_files_limit();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // A usage error asked for in JSON is one JSON line (exit 2, as clap's); --help, --version
        // and text usage errors are printed as clap prints them.
        Err(e) if e.use_stderr() && asks_for_json(std::env::args_os()) => {
            say::json(true);
            say::error(e.render().to_string().trim_end());
            return ExitCode::from(2);
        }
        Err(e) => e.exit(),
    };
    init_logging(cli.log_format == "json");
    // A test hook: a panic, to check how one is reported (tests/e2e/observability.rs).
    if std::env::var_os("SPARKWASM_TEST_PANIC").is_some() {
        panic!("a panic asked for by SPARKWASM_TEST_PANIC");
    }
    // deltalake links two rustls crypto providers; pick one for the process before any TLS config.
    let _ = rustls::crypto::ring::default_provider().install_default();
    match cli.command {
        Command::Plugin(command) => plugin::main(command),
        Command::Schema { draft } => {
            let draft = if draft == "7" {
                config::schema::Draft::Draft7
            } else {
                config::schema::Draft::Draft2020
            };
            let schema = config::schema::json_schema(draft);
            println!(
                "{}",
                serde_json::to_string_pretty(&schema).expect("a JSON value")
            );
            ExitCode::SUCCESS
        }
        Command::Validate {
            pipeline,
            secrets,
            rows,
        } => {
            let p = match load(&pipeline, &secrets, None, &rows) {
                Ok(p) => p,
                Err(e) => return fail(&e, None),
            };
            warn(&pipeline, &p);
            // The plugins are loaded as a run loads them (digest, world, init): a plugin that
            // would stop the run stops validate too. Nothing is sent.
            match runtime().block_on(plugin_summaries(&p)) {
                Ok(summaries) => {
                    println!(
                        "{}: valid (pipeline `{}`, {} middleware, sink {})",
                        pipeline.display(),
                        p.id,
                        p.middleware.len(),
                        p.sink
                    );
                    if p.source.is_none() {
                        println!(
                            "  no tables.source: give the rows at run time with --source PATH|TABLE or --source-query SQL"
                        );
                    }
                    for s in &summaries {
                        println!("  {s}");
                    }
                    for w in summaries.iter().filter_map(|s| s.grant_warning()) {
                        say::warning(&format!("{}: {w}", pipeline.display()));
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => fail(&e, Some(&p)),
            }
        }
        Command::Run {
            pipeline,
            secrets,
            shard,
            dry_run,
            rows,
            watch,
        } => {
            let p = match load(&pipeline, &secrets, shard, &rows) {
                Ok(p) => p,
                Err(e) => {
                    write_report(&watch, None, None, Err(&e));
                    return fail(&e, None);
                }
            };
            warn(&pipeline, &p);
            if p.source.is_none() {
                let e = anyhow::anyhow!(
                    "{}: no rows to send: the file has no tables.source; give them with --source PATH|TABLE or --source-query SQL",
                    pipeline.display()
                );
                write_report(&watch, Some(&p), None, Err(&e));
                return fail(&e, Some(&p));
            }
            let rt = runtime();
            if let Some(n) = dry_run {
                return match rt.block_on(sparkwasm::dry_run(&p, n)) {
                    Ok(shown) => {
                        println!(
                            "dry run of pipeline `{}`: the first {} row(s); nothing sent, no credential fetched, nothing written (secrets shown as ***)\n",
                            p.id,
                            shown.len()
                        );
                        for row in shown {
                            println!("{row}");
                        }
                        ExitCode::SUCCESS
                    }
                    Err(e) => fail(&e.into(), Some(&p)),
                };
            }
            // The command line over the file's `metrics` section.
            let metrics_addr = watch.metrics_addr.or(p.metrics.addr);
            let metrics_hold = match watch.metrics_hold {
                0 => p.metrics.hold_seconds,
                given => given,
            };
            // Counted only when someone reads the counts: no per-row cost otherwise.
            let metrics = (metrics_addr.is_some() || watch.report.is_some())
                .then(|| Arc::new(Metrics::default()));
            let server = match (metrics_addr, &metrics) {
                (Some(addr), Some(m)) => match rt.block_on(metrics::serve(addr, m.clone())) {
                    Ok((at, task)) => {
                        say::info(&format!("metrics at http://{at}/metrics"));
                        Some(task)
                    }
                    Err(e) => {
                        let e = anyhow::anyhow!("cannot serve metrics at {addr}: {e}");
                        return fail(&e, Some(&p));
                    }
                },
                _ => None,
            };
            let observers = metrics
                .iter()
                .map(|m| m.clone() as Arc<dyn sparkwasm::events::Observer>)
                .collect();
            let outcome = rt.block_on(sparkwasm::run(&p, observers));
            if server.is_some() && metrics_hold > 0 {
                let hold = std::time::Duration::from_secs(metrics_hold);
                rt.block_on(async move { tokio::time::sleep(hold).await });
            }
            match outcome {
                Ok(report) => {
                    let s = &report.summary;
                    println!(
                        "sparkwasm: pipeline `{}` finished, {} batch commit(s) to {}",
                        p.id, report.commits, p.sink
                    );
                    println!("{s}");
                    write_report(&watch, Some(&p), metrics.as_deref(), Ok(&report));
                    if s.failed > 0 {
                        ExitCode::from(2)
                    } else {
                        ExitCode::SUCCESS
                    }
                }
                Err(e) => {
                    let e = anyhow::Error::new(e);
                    write_report(&watch, Some(&p), metrics.as_deref(), Err(&e));
                    fail(&e, Some(&p))
                }
            }
        }
    }
}

pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// The pipeline's plugins, loaded, as `validate` shows them.
async fn plugin_summaries(p: &Pipeline) -> anyhow::Result<Vec<sparkwasm::plugin::PluginSummary>> {
    let transport = Arc::new(sparkwasm::execute::transport::HttpTransport::new(
        &p.transport,
        &[1],
        &[1],
    )?);
    let sender: Arc<dyn sparkwasm::api::Sender> = transport.clone();
    let redactor = Arc::new(Redactor::new(p.secret_values()));
    let plugins = sparkwasm::plugin::load(p, transport.shards(), &sender, &redactor).await?;
    Ok(plugins.summaries)
}

/// Prints the pipeline's warnings, one line each, as `warning: FILE:LINE:COL: PATH: MESSAGE`.
fn warn(file: &std::path::Path, p: &Pipeline) {
    let redactor = Redactor::new(p.secret_values());
    for w in &p.warnings {
        say::warning(&redactor.text(&format!("{}:{w}", file.display())));
    }
}

fn load(
    path: &std::path::Path,
    secrets: &SecretsArg,
    shard: Option<config::Shard>,
    rows: &RowsArg,
) -> anyhow::Result<Pipeline> {
    let store = match &secrets.secrets_file {
        Some(f) => SecretStore::from_file(f)?,
        None => SecretStore::default(),
    };
    let base_dir = std::env::current_dir().context("cannot read the working directory")?;
    Ok(config::load(
        path,
        &LoadOptions {
            secrets: &store,
            base_dir,
            shard,
            source: rows.to_override(),
            retry_failed: rows.retry_failed,
            allow_unpinned: rows.allow_unpinned,
        },
    )?)
}

/// Prints `error` with its causes (each once), every secret of `pipeline` redacted; exit status 1.
pub(crate) fn fail(error: &anyhow::Error, pipeline: Option<&Pipeline>) -> ExitCode {
    let mut text = error.to_string();
    for cause in error.chain().skip(1) {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            text = format!("{text}: {cause}");
        }
    }
    let text = match pipeline {
        Some(p) => Redactor::new(p.secret_values()).text(&text).into_owned(),
        None => text,
    };
    say::error(&text);
    ExitCode::from(1)
}

/// Whether the command line asks for `--log-format json` (read before it is parsed, for a usage
/// error).
fn asks_for_json(args: impl Iterator<Item = std::ffi::OsString>) -> bool {
    let args: Vec<_> = args.map(|a| a.to_string_lossy().into_owned()).collect();
    args.iter().any(|a| a == "--log-format=json")
        || args
            .windows(2)
            .any(|w| w[0] == "--log-format" && w[1] == "json")
}

/// The log's subscriber, and the form of the few lines said outside it ([`say`]): one choice.
fn init_logging(json: bool) {
    use std::io::IsTerminal;
    say::json(json);
    // Dependencies (delta-rs, hyper) log at info; only sparkwasm's own info lines are shown by default.
    let tty = std::io::stderr().is_terminal();
    // The Delta kernel logs as errors what it also returns as errors (which the run reports once).
    let default = if tty {
        "warn,buoyant_kernel=off"
    } else {
        "warn,buoyant_kernel=off,sparkwasm=info"
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        logs.json().with_current_span(false).init();
        // A panic's message as one JSON line too (the process still exits as a panic does).
        std::panic::set_hook(Box::new(|info| say::error(&format!("panic: {info}"))));
    } else {
        logs.with_ansi(tty).init();
    }
}

/// Writes `--report FILE` (when asked): what the run did, or why it could not, as JSON. A report
/// that cannot be written is said on stderr; it never changes the exit status.
fn write_report(
    watch: &WatchArg,
    pipeline: Option<&Pipeline>,
    metrics: Option<&Metrics>,
    outcome: Result<&sparkwasm::RunReport, &anyhow::Error>,
) {
    let Some(file) = &watch.report else { return };
    let redact = |text: String| match pipeline {
        Some(p) => Redactor::new(p.secret_values()).text(&text).into_owned(),
        None => text,
    };
    let counts = metrics.map(|m| m.counts());
    let mut json = serde_json::json!({
        "report_version": 1,
        "pipeline": pipeline.map(|p| p.id.clone()),
        "sink": pipeline.map(|p| p.sink.to_string()),
        "finished_at_unix": std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default(),
        "last_batch_version": counts.as_ref().and_then(|c| (c.last_batch_version >= 0).then_some(c.last_batch_version)),
        "commits": counts.as_ref().map(|c| c.commits),
        "requests": counts.as_ref().map(|c| c.requests),
        "rows_landed": counts.as_ref().map(|c| c.rows_landed),
    });
    match outcome {
        Ok(report) => {
            let s = &report.summary;
            json["status"] = if s.failed > 0 { "rows_failed" } else { "ok" }.into();
            json["exit_code"] = if s.failed > 0 { 2 } else { 0 }.into();
            json["rows"] = serde_json::json!({
                "sent": s.rows,
                "ok": s.ok,
                "failed": s.failed,
                "failed_retryable": s.failed_retryable,
                "failed_final": s.failed - s.failed_retryable.min(s.failed),
                "skipped": s.skipped,
            });
            json["retries"] = s.retries.into();
            json["passes"] = s.passes.into();
            json["latency_ms"] = serde_json::json!({
                "p50": s.p50.as_secs_f64() * 1e3,
                "p99": s.p99.as_secs_f64() * 1e3,
            });
            json["rows_per_s"] = s.rate().into();
            json["elapsed_s"] = s.elapsed.as_secs_f64().into();
            json["plugins"] = report
                .plugins
                .iter()
                .map(|p| {
                    serde_json::json!({
                        "name": p.name,
                        "source": p.source,
                        "sha256": p.sha256,
                        "world": p.world.name(),
                        "signature": p.signature.to_string(),
                    })
                })
                .collect();
        }
        Err(e) => {
            json["status"] = "error".into();
            json["exit_code"] = 1.into();
            json["error"] = redact(format!("{e:#}")).into();
            if let Some(c) = &counts {
                json["rows"] = serde_json::json!({
                    "sent": c.rows_success + c.rows_retry + c.rows_final,
                    "ok": c.rows_success,
                    "failed": c.rows_retry + c.rows_final,
                    "failed_retryable": c.rows_retry,
                    "failed_final": c.rows_final,
                    "skipped": c.rows_skipped,
                });
            }
        }
    }
    let text = serde_json::to_string_pretty(&json).expect("a JSON value");
    if let Err(e) = std::fs::write(file, text + "\n") {
        say::warning(&format!("cannot write the report {}: {e}", file.display()));
    }
}
