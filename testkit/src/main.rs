//! `testkit serve` runs the loopback API (demo, benchmarks); `testkit rows` writes a Parquet input.

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    about = "Local API server and data generator for sparkwasm's demo and benchmarks (loopback only)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the test API on 127.0.0.1 until killed; prints the base URL on stdout.
    Serve {
        #[arg(long, default_value_t = 0)]
        port: u16,
    },
    /// Write N rows (id, name, score) to a Parquet file.
    Rows {
        rows: usize,
        out: std::path::PathBuf,
    },
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Serve { port } => tokio::runtime::Runtime::new()?.block_on(async {
            let server = testkit::ApiServer::start(port).await?;
            println!("{}", server.url());
            tokio::signal::ctrl_c().await?;
            Ok(())
        }),
        Command::Rows { rows, out } => testkit::write_rows_parquet(&out, rows),
    }
}
