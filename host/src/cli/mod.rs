//! The command line: `sparkwasm run` and `sparkwasm validate`. Thin: it parses, loads, runs, reports,
//! and maps the outcome to an exit status (0 all landed, 2 some rows failed, 1 could not run).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{self, LoadOptions, Pipeline, SecretStore};

/// Send one HTTP request per row of a table through sandboxed middleware, and land every response in a
/// Delta table (the bronze layer), exactly once, batch by batch.
#[derive(Parser, Debug)]
#[command(
    name = "sparkwasm",
    version,
    after_help = "Exit status: 0 every row landed successfully; 2 the run finished but some rows failed (they are recorded with success=false and retried by the next run); 1 the run could not start or go on (bad config, source, sink or plugin).\n\nLogs: RUST_LOG (e.g. RUST_LOG=sparkwasm=debug). A progress bar is drawn when stderr is a terminal."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run a pipeline: read the rows, call the API for each, land the results in the Delta sink.
    /// A rerun resumes: rows already landed with success are not sent again.
    Run {
        /// Pipeline file (YAML or JSON; the legacy PySpark framework's format is accepted as is).
        pipeline: PathBuf,
        #[command(flatten)]
        secrets: SecretsArg,
        /// Run only shard I of N (0-based): the rows with pmod(xxhash64(id_column), N) = I, as
        /// computed by Spark. N hosts, one per shard, land one table together, each committing under
        /// its own transaction id; a killed shard resumes on its own. Spark sources only.
        #[arg(long, value_name = "I/N")]
        shard: Option<config::Shard>,
    },
    /// Check a pipeline file and report every error with its key path and line:col; sends nothing.
    Validate {
        pipeline: PathBuf,
        #[command(flatten)]
        secrets: SecretsArg,
    },
}

#[derive(clap::Args, Debug)]
pub struct SecretsArg {
    /// YAML/JSON file of secrets, `scope: {key: value}`, for `{{secret.scope:key}}` in the pipeline.
    /// Without it (or for keys it lacks) secrets come from SPARKWASM_SECRET_<SCOPE>_<KEY>.
    #[arg(long, value_name = "FILE")]
    pub secrets_file: Option<PathBuf>,
}

/// glibc gives each thread that allocates its own malloc arena and keeps what they free: with the
/// worker threads, the sink and tokio's blocking pool, a long run's RSS crept up with every commit
/// (2M rows: 82 -> 140 MiB). Two arenas hold it flat (84 MiB) at the same rows/s (`just bench`).
/// A `MALLOC_ARENA_MAX` set by the user wins.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only sets an allocator parameter; called before any other thread exists.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 2);
        }
    }
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

pub fn main() -> ExitCode {
    limit_malloc_arenas();
    raise_open_files_limit();
    let cli = Cli::parse();
    init_logging();
    // deltalake links two rustls crypto providers; pick one for the process before any TLS config.
    let _ = rustls::crypto::ring::default_provider().install_default();
    match cli.command {
        Command::Validate { pipeline, secrets } => {
            let p = match load(&pipeline, &secrets) {
                Ok(p) => p,
                Err(message) => return fail(&message),
            };
            // The plugins are loaded as a run loads them (digest, world, init): a plugin that
            // would stop the run stops validate too. Nothing is sent.
            let summaries = match runtime().block_on(plugin_summaries(&p)) {
                Ok(s) => s,
                Err(message) => return fail(&message),
            };
            println!(
                "{}: valid (pipeline `{}`, {} middleware, sink {})",
                pipeline.display(),
                p.id,
                p.middleware.len(),
                p.sink
            );
            for s in summaries {
                println!("  {s}");
            }
            ExitCode::SUCCESS
        }
        Command::Run {
            pipeline,
            secrets,
            shard,
        } => {
            let mut p = match load(&pipeline, &secrets) {
                Ok(p) => p,
                Err(message) => return fail(&message),
            };
            p.shard = shard;
            if shard.is_some()
                && p.sink.mode == config::SinkMode::Overwrite
                && p.sink.spark_table.is_none()
            {
                return fail(
                    "--shard with tables.sink.mode: overwrite: each shard would replace the rows the others landed; use mode: append (empty the table before the first shard starts)",
                );
            }
            match runtime().block_on(crate::run(&p)) {
                Ok(report) => {
                    let s = &report.summary;
                    println!(
                        "sparkwasm: pipeline `{}` finished, {} batch commit(s) to {}",
                        p.id, report.commits, p.sink
                    );
                    println!("{s}");
                    if s.failed > 0 {
                        ExitCode::from(2)
                    } else {
                        ExitCode::SUCCESS
                    }
                }
                Err(e) => fail(&crate::redact::Redactor::for_pipeline(&p).text(&e.to_string())),
            }
        }
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// The pipeline's plugins, loaded, as `validate` shows them.
async fn plugin_summaries(p: &Pipeline) -> Result<Vec<crate::plugin::PluginSummary>, String> {
    let transport = std::sync::Arc::new(
        crate::transport::HttpTransport::new(&p.transport, &[1]).map_err(|e| e.to_string())?,
    );
    let redactor = std::sync::Arc::new(crate::redact::Redactor::for_pipeline(p));
    crate::plugin::load(p, &transport, &redactor)
        .await
        .map(|plugins| plugins.summaries)
        .map_err(|e| redactor.text(&e.to_string()).into_owned())
}

fn load(path: &std::path::Path, secrets: &SecretsArg) -> Result<Pipeline, String> {
    let store = match &secrets.secrets_file {
        Some(f) => SecretStore::from_file(f)?,
        None => SecretStore::default(),
    };
    let base_dir =
        std::env::current_dir().map_err(|e| format!("cannot read the working directory: {e}"))?;
    config::load(
        path,
        &LoadOptions {
            secrets: &store,
            base_dir,
        },
    )
    .map_err(|e| e.to_string())
}

fn fail(message: &str) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(1)
}

fn init_logging() {
    use std::io::IsTerminal;
    // Dependencies (delta-rs, hyper) log at info; only sparkwasm's own info lines are shown by default.
    let tty = std::io::stderr().is_terminal();
    let default = if tty {
        "warn"
    } else {
        "warn,buoyant_kernel=off,sparkwasm=info"
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(tty)
        .init();
}
