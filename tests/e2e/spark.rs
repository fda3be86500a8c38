//! Spark Connect end to end, against the real server of the `pyspark` package (scripts/spark.sh). The
//! first Spark test to run starts one server for the whole test process, on its own port with a fresh state
//! folder and a 3,000-row table `default.rows`; the process stops it (and deletes its state) when it exits.
//! One test per scenario; each writes its own tables and talks to its own API server.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::sync::atomic::Ordering;
use std::time::Duration;

use testkit::ApiServer;

use crate::support::{
    assert_exit, peak_rss, read_bronze, repo_root, sparkwasm, successes_per_id, txn_versions,
    wait_until,
};

const PORT: u16 = 15123;

/// The server of this test process.
struct Spark {
    state: PathBuf,
}

static SPARK: OnceLock<Spark> = OnceLock::new();

/// The shared server, started (with `default.rows` created) by the first caller.
fn spark() -> &'static Spark {
    SPARK.get_or_init(|| {
        let state = tempfile::tempdir().unwrap().keep();
        let spark = Spark { state };
        let out = spark.script("up");
        // Registered before the check so that a server that half-started is still stopped.
        // SAFETY: `stop_at_exit` is an `extern "C" fn()` that does not unwind.
        unsafe { libc::atexit(stop_at_exit) };
        assert!(
            out.status.success(),
            "spark.sh up failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(spark.fixture(&["create", "default.rows", "3000"]), "3000");
        spark
    })
}

/// Runs when the test process exits: stops the server and deletes its state.
extern "C" fn stop_at_exit() {
    if let Some(spark) = SPARK.get() {
        let _ = std::panic::catch_unwind(|| {
            let _ = spark.script("down");
            let _ = std::fs::remove_dir_all(&spark.state);
        });
    }
}

impl Spark {
    fn script(&self, verb: &str) -> Output {
        Command::new("bash")
            .arg(repo_root().join("scripts/spark.sh"))
            .arg(verb)
            .env("SPARKWASM_SPARK_PORT", PORT.to_string())
            .env("SPARKWASM_SPARK_STATE", &self.state)
            .output()
            .expect("run scripts/spark.sh")
    }

    fn remote(&self) -> String {
        format!("sc://127.0.0.1:{PORT}")
    }

    /// tests/spark_fixture.py with the server's venv: `create TABLE N` or `count TABLE`.
    fn fixture(&self, args: &[&str]) -> String {
        let home = std::env::var("SPARKWASM_SPARK_HOME").map_or_else(
            |_| PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/sparkwasm/spark"),
            PathBuf::from,
        );
        let out = Command::new(home.join("venv/bin/python"))
            .arg(repo_root().join("tests/spark_fixture.py"))
            .arg(self.remote())
            .args(args)
            .output()
            .expect("run the Spark fixture");
        assert!(
            out.status.success(),
            "spark_fixture {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }
}

/// A fresh folder holding `p.yaml`: `spark_pipeline` of the arguments.
fn spark_dir(
    api: &str,
    remote: &str,
    url_path: &str,
    source: &str,
    sink: &str,
) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        &spark_pipeline(api, remote, url_path, source, sink),
    );
    dir
}

fn write(dir: &Path, yaml: &str) {
    std::fs::write(dir.join("p.yaml"), yaml).unwrap();
}

fn run(dir: &Path, args: &[&str]) -> Output {
    sparkwasm(dir)
        .args(["run", "p.yaml"])
        .args(args)
        .output()
        .unwrap()
}

fn spark_pipeline(api: &str, remote: &str, url_path: &str, source: &str, sink: &str) -> String {
    format!(
        "endpoint: {{name: spark_e2e, method: GET, base_url: \"{api}\", url_path: \"{url_path}\"}}\n\
         spark: {{remote: \"{remote}\"}}\n\
         execution: {{batch_size: 250, concurrency_limit: 10}}\n\
         tables:\n  source: {source}\n  sink: {sink}\n"
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_spark_table_lands_in_a_local_delta_table() {
    // required_columns and id_column are checked against Spark's schema first.
    let spark = spark();
    let server = ApiServer::start(0).await.unwrap();
    let dir = spark_dir(
        &server.url(),
        &spark.remote(),
        "/items/{id}",
        "{identifier: default.rows, id_column: id, required_columns: [name, score]}",
        "{path: out/bronze}",
    );
    assert_exit(&run(dir.path(), &[]), 0);
    let rows = read_bronze(&dir.path().join("out/bronze"));
    let per_id = successes_per_id(&rows);
    assert_eq!(per_id.len(), 3000);
    assert!(per_id.values().all(|n| *n == 1));
    assert_eq!(server.counters.row_requests.load(Ordering::Relaxed), 3000);
}

#[tokio::test(flavor = "multi_thread")]
async fn two_shards_one_killed_and_rerun_land_every_id_once() {
    // Two shards in parallel into one Delta table, shard 1 killed mid-run and rerun on its own.
    let spark = spark();
    let server = ApiServer::start(0).await.unwrap();
    let dir = spark_dir(
        &server.url(),
        &spark.remote(),
        "/slow/30/{id}",
        "{namespace: default, name: rows, id_column: id}",
        "{path: out/bronze}",
    );
    let shard = |i: u32| {
        sparkwasm(dir.path())
            .args(["run", "p.yaml", "--shard", &format!("{i}/2")])
            .spawn()
            .unwrap()
    };
    let (mut zero, mut one) = (shard(0), shard(1));
    // Killed once it has landed a batch (so that the rerun resumes it rather than starting afresh),
    // and before it finished.
    let bronze = dir.path().join("out/bronze");
    let shard_one = "sparkwasm/spark_e2e/shard-1-of-2";
    assert!(
        wait_until(Duration::from_secs(120), || !txn_versions(
            &bronze, shard_one
        )
        .is_empty()),
        "shard 1 landed nothing in 120 s"
    );
    one.kill().unwrap();
    one.wait().unwrap();
    assert!(zero.wait().unwrap().success());
    let landed_by_one = txn_versions(&bronze, shard_one).len();
    assert!(
        txn_versions(&bronze, &format!("{shard_one}/finished")).is_empty(),
        "shard 1 finished before it was killed"
    );
    let before = read_bronze(&bronze).len();
    // Shard 0 alone (plus the part of shard 1 that landed before the kill) is not the whole table.
    assert!(before < 3000, "{before} rows before shard 1's rerun");
    let rerun = run(dir.path(), &["--shard", "1/2"]);
    assert_exit(&rerun, 0);
    // The rerun resumed shard 1: it skipped what shard 1 had landed, and its batches continue the
    // count.
    let summary = String::from_utf8_lossy(&rerun.stdout);
    assert!(!summary.contains("(0 already landed"), "{summary}");
    let versions = txn_versions(&bronze, shard_one);
    assert!(versions.len() > landed_by_one);
    assert!(
        versions.windows(2).all(|w| w[1] == w[0] + 1),
        "{versions:?}"
    );
    let rows = read_bronze(&dir.path().join("out/bronze"));
    let per_id = successes_per_id(&rows);
    assert_eq!(per_id.len(), 3000, "{before} rows before the rerun");
    assert!(per_id.values().all(|n| *n == 1));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_query_lands_in_a_spark_bronze_table_and_a_rerun_sends_nothing() {
    let spark = spark();
    let server = ApiServer::start(0).await.unwrap();
    let dir = spark_dir(
        &server.url(),
        &spark.remote(),
        "/items/{id}",
        "{query: \"SELECT id, name FROM default.rows WHERE id < 1000\", id_column: id}",
        "{namespace: default, name: bronze_e2e}",
    );
    assert_exit(&run(dir.path(), &[]), 0);
    let before = server.counters.row_requests.load(Ordering::Relaxed);
    assert_eq!(before, 1000);
    let again = run(dir.path(), &[]);
    assert_exit(&again, 0);
    assert!(String::from_utf8_lossy(&again.stdout).contains("1000 already landed"));
    assert_eq!(server.counters.row_requests.load(Ordering::Relaxed), before);
    // Read back by Spark itself: rows, distinct ids, columns.
    let counted = spark.fixture(&["count", "default.bronze_e2e"]);
    let mut parts = counted.split(' ');
    assert_eq!(parts.next(), Some("1000"), "{counted}");
    assert_eq!(parts.next(), Some("1000"), "{counted}");
    let columns = parts.next().unwrap();
    for column in [
        "request_id",
        "url",
        "status_code",
        "body_text",
        "success",
        "error_message",
        "_request_time",
        "batch_id",
    ] {
        assert!(columns.split(',').any(|c| c == column), "{columns}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_delta_table_mirrored_to_spark_catches_up_at_the_next_run() {
    // Delta and Spark in one run: each committed batch also appended to a Spark table. A Spark table
    // that lacks rows the Delta table has (a run killed between the two; here: a new table) gets them
    // at the next run's start, which sends nothing.
    let spark = spark();
    let server = ApiServer::start(0).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let both = |table: &str| {
        spark_pipeline(
            &server.url(),
            &spark.remote(),
            "/items/{id}",
            "{query: \"SELECT id, name FROM default.rows WHERE id < 500\", id_column: id}",
            &format!("{{path: out/bronze, also_spark_table: {table}}}"),
        )
    };
    write(dir.path(), &both("default.mirror_e2e"));
    assert_exit(&run(dir.path(), &[]), 0);
    assert_eq!(
        successes_per_id(&read_bronze(&dir.path().join("out/bronze"))).len(),
        500
    );
    assert!(
        spark
            .fixture(&["count", "default.mirror_e2e"])
            .starts_with("500 500 ")
    );
    let before = server.counters.row_requests.load(Ordering::Relaxed);
    write(dir.path(), &both("default.mirror2_e2e"));
    assert_exit(&run(dir.path(), &[]), 0);
    assert_eq!(server.counters.row_requests.load(Ordering::Relaxed), before);
    assert!(
        spark
            .fixture(&["count", "default.mirror2_e2e"])
            .starts_with("500 500 ")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_spark_table_the_legacy_framework_created_takes_rows_in_its_own_schema() {
    // Its columns are strings (status_code "200", success "true"), it has no batch_id: sparkwasm
    // appends in that schema, skips what landed for good, and sends the 503s again.
    let spark = spark();
    assert_eq!(
        spark.fixture(&["legacy", "default.legacy_bronze_e2e"]),
        "15"
    );
    let server = ApiServer::start(0).await.unwrap();
    let dir = spark_dir(
        &server.url(),
        &spark.remote(),
        "/items/{id}",
        "{query: \"SELECT id, name FROM default.rows WHERE id < 30\", id_column: id}",
        "{namespace: default, name: legacy_bronze_e2e}",
    );
    assert_exit(&run(dir.path(), &[]), 0);
    assert_eq!(server.counters.row_requests.load(Ordering::Relaxed), 20);
    let dump = spark.fixture(&["dump", "default.legacy_bronze_e2e"]);
    let mut lines = dump.lines();
    let columns = lines.next().unwrap();
    assert!(
        columns.contains("status_code:string")
            && columns.contains("success:string")
            && !columns.contains("batch_id"),
        "{columns}"
    );
    let rows: Vec<serde_json::Value> = lines.map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(rows.len(), 35);
    let landed_ok: std::collections::HashSet<&str> = rows
        .iter()
        .filter(|r| r["success"] == "true")
        .map(|r| r["request_id"].as_str().unwrap())
        .collect();
    assert_eq!(landed_ok.len(), 30);
    assert!(rows.iter().all(|r| r["attempts"] == "1"));
    // A rerun sends nothing.
    assert_exit(&run(dir.path(), &[]), 0);
    assert_eq!(server.counters.row_requests.load(Ordering::Relaxed), 20);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_five_million_row_query_is_read_with_bounded_memory() {
    // 5M rows from Spark against a slow endpoint: after 4 s the client holds no more than with 50k.
    let spark = spark();
    let server = ApiServer::start(0).await.unwrap();
    let mut peaks = vec![];
    for n in [50_000, 5_000_000] {
        let query = format!(
            "{{query: \"SELECT id, concat('n', id) AS name FROM range({n})\", id_column: id}}"
        );
        let dir = spark_dir(
            &server.url(),
            &spark.remote(),
            "/slow/20/{id}",
            &query,
            "{path: out/bronze}",
        );
        let sent_before = server.counters.row_requests.load(Ordering::SeqCst);
        let mut child = sparkwasm(dir.path())
            .args(["run", "p.yaml"])
            .spawn()
            .unwrap();
        // Measured once rows flow (the query planned, the first batches streaming), then 4 s on.
        assert!(
            wait_until(Duration::from_secs(60), || {
                server.counters.row_requests.load(Ordering::SeqCst) > sent_before + 100
            }),
            "{n} rows: no rows sent in 60 s"
        );
        let flowing = server.counters.row_requests.load(Ordering::SeqCst);
        std::thread::sleep(Duration::from_secs(4));
        peaks.push(peak_rss(child.id()) as f64 / 1048576.0);
        let sent = server.counters.row_requests.load(Ordering::SeqCst) - flowing;
        child.kill().unwrap();
        child.wait().unwrap();
        // 10 consumers on a 20 ms endpoint: about 500 rows/s while the memory was watched.
        assert!(sent >= 400, "{n} rows: only {sent} rows sent in 4 s");
    }
    eprintln!(
        "spark source peak RSS after 4 s: {:.1} MiB (50k rows), {:.1} MiB (5M rows)",
        peaks[0], peaks[1]
    );
    assert!(
        peaks[1] < peaks[0] + 16.0,
        "peak RSS {:.1} MiB on 50k rows, {:.1} MiB on 5M",
        peaks[0],
        peaks[1]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn spark_errors_stop_the_run_before_any_request_and_name_what_was_asked() {
    let spark = spark();
    let remote = spark.remote();
    let server = ApiServer::start(0).await.unwrap();
    for (source, remote, expected) in [
        (
            "{identifier: default.missing, id_column: id}",
            remote.as_str(),
            "source Spark table `default.missing` at sc://127.0.0.1:15123: [TABLE_OR_VIEW_NOT_FOUND] The table or view `default`.`missing` cannot be found.",
        ),
        (
            "{identifier: default.rows, id_column: nope}",
            remote.as_str(),
            "source column check: missing column `nope` (from id_column); the source has: id, name, score",
        ),
        (
            "{query: \"selec * form x\", id_column: id}",
            remote.as_str(),
            "source Spark query `selec * form x` at sc://127.0.0.1:15123: [PARSE_SYNTAX_ERROR] Syntax error at or near 'selec'. (line 1, pos 0)",
        ),
        (
            "{identifier: default.rows, id_column: id}",
            "sc://127.0.0.1:9",
            "source Spark table `default.rows` at sc://127.0.0.1:9: [The service is currently unavailable] tcp connect error (is a Spark Connect server listening there?)",
        ),
    ] {
        let dir = spark_dir(
            &server.url(),
            remote,
            "/items/{id}",
            source,
            "{path: out/bronze}",
        );
        let out = run(dir.path(), &[]);
        assert_exit(&out, 1);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            stderr.trim().lines().last(),
            Some(format!("error: {expected}").as_str())
        );
    }
    assert_eq!(server.counters.requests.load(Ordering::Relaxed), 0);
}

#[test]
fn the_spark_script_refuses_a_port_it_did_not_start() {
    // A stale server (another state folder, an old catalog) must not pass for the test's own.
    let squatter = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = squatter.local_addr().unwrap().port();
    let state = tempfile::tempdir().unwrap();
    let out = Command::new("bash")
        .arg(repo_root().join("scripts/spark.sh"))
        .arg("up")
        .env("SPARKWASM_SPARK_PORT", port.to_string())
        .env("SPARKWASM_SPARK_STATE", state.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "127.0.0.1:{port} is in use by a process this script did not start"
        )),
        "{stderr}"
    );
}
