//! The end-to-end harness: the binary, a case folder, the bronze table read back by two readers.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use testkit::ApiServer;

pub(crate) fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repo root")
        .to_path_buf()
}

pub(crate) fn sparkwasm(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_sparkwasm"));
    c.current_dir(dir).env("RUST_LOG", "warn");
    c
}

/// A temp folder with `rows.parquet` (ids 0..rows) and a pipeline file.
pub(crate) struct Case {
    pub(crate) dir: tempfile::TempDir,
}

impl Case {
    pub(crate) fn new(rows: usize, pipeline: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        testkit::write_rows_parquet(&dir.path().join("rows.parquet"), rows).expect("rows");
        std::fs::write(dir.path().join("p.yaml"), pipeline).expect("pipeline");
        Case { dir }
    }

    pub(crate) fn run(&self) -> Output {
        sparkwasm(self.dir.path())
            .args(["run", "p.yaml"])
            .output()
            .expect("run sparkwasm")
    }

    /// Runs with `RUST_LOG` at `level`, so that a test can scan everything the run logs.
    pub(crate) fn run_logging(&self, level: &str) -> Output {
        sparkwasm(self.dir.path())
            .args(["run", "p.yaml"])
            .env("RUST_LOG", level)
            .output()
            .expect("run sparkwasm")
    }

    /// Starts a run in the background (to be killed), its output discarded.
    pub(crate) fn spawn(&self) -> std::process::Child {
        self.spawn_with(Stdio::null)
    }

    /// Starts a run in the background, its output kept for `wait_with_output`.
    pub(crate) fn spawn_captured(&self) -> std::process::Child {
        self.spawn_with(Stdio::piped)
    }

    pub(crate) fn spawn_with(&self, output: fn() -> Stdio) -> std::process::Child {
        sparkwasm(self.dir.path())
            .args(["run", "p.yaml"])
            .stdout(output())
            .stderr(output())
            .spawn()
            .expect("start sparkwasm")
    }

    pub(crate) fn bronze(&self) -> PathBuf {
        self.dir.path().join("out/bronze")
    }
}

/// The run ended with `code`; on a mismatch, shows what the binary printed.
pub(crate) fn assert_exit(out: &Output, code: i32) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "stderr: {}\nstdout: {}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
}

/// A fresh local API, and a case of `rows` rows whose pipeline calls `url_path` on it.
pub(crate) async fn served(rows: usize, url_path: &str, extra: &str) -> (ApiServer, Case) {
    let server = ApiServer::start(0).await.unwrap();
    let case = Case::new(rows, &pipeline(&server.url(), url_path, extra));
    (server, case)
}

/// A file's sha256, as a pipeline pins a plugin by.
pub(crate) fn sha256_of(path: &Path) -> String {
    use sha2::Digest;
    format!("{:x}", sha2::Sha256::digest(std::fs::read(path).unwrap()))
}

pub(crate) fn pipeline(base_url: &str, url_path: &str, extra: &str) -> String {
    format!(
        "endpoint:\n  name: e2e\n  method: GET\n  base_url: {base_url}\n  url_path: {url_path}\n\
         tables:\n  source: {{path: rows.parquet, id_column: id}}\n  sink: {{path: out/bronze}}\n  column_mapping:\n    - {{source_column: name}}\n    - {{source_column: score, endpoint_param: s}}\n{extra}"
    )
}

/// One row of the bronze table, as the tests look at it.
pub(crate) struct Landed {
    pub(crate) request_id: String,
    pub(crate) row_hash: Option<String>,
    pub(crate) success: bool,
    pub(crate) status_code: Option<i32>,
    pub(crate) error_message: Option<String>,
    pub(crate) response_metadata: Option<String>,
    pub(crate) request_metadata: Option<String>,
    pub(crate) request_headers: Option<String>,
    pub(crate) body_text: Option<String>,
    pub(crate) attempts: i32,
}

/// The record batches of the table's active files, read with delta-rs (which files) and the parquet
/// reader.
pub(crate) fn bronze_batches(path: &Path) -> Vec<arrow::record_batch::RecordBatch> {
    // Tests run inside a tokio runtime; delta-rs gets its own on a plain thread.
    let owned = sparkwasm::store::Location::Local(path.to_path_buf());
    let files = std::thread::spawn(move || {
        tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(sparkwasm::delta::data_files(&owned))
    })
    .join()
    .unwrap()
    .expect("data files");
    files
        .into_iter()
        .flat_map(|f| {
            f.parquet()
                .unwrap()
                .batches(None, 4096)
                .unwrap()
                .map(Result::unwrap)
        })
        .collect()
}

/// Every row of the table.
pub(crate) fn read_bronze(path: &Path) -> Vec<Landed> {
    use arrow::array::{Array, AsArray};
    let mut out = Vec::new();
    for b in bronze_batches(path) {
        let col = |n: &str| b.column(b.schema().index_of(n).unwrap()).clone();
        let (ids, ok, status) = (col("request_id"), col("success"), col("status_code"));
        let row_hash = col("row_hash");
        let (err, meta) = (col("error_message"), col("response_metadata"));
        let (req_meta, req_headers) = (col("request_metadata"), col("request_headers"));
        let (body, attempts) = (col("body_text"), col("attempts"));
        let attempts = attempts.as_primitive::<arrow::datatypes::Int32Type>();
        let text = |a: &arrow::array::ArrayRef, i: usize| {
            let a = a.as_string::<i32>();
            a.is_valid(i).then(|| a.value(i).to_owned())
        };
        let status = status.as_primitive::<arrow::datatypes::Int32Type>();
        for i in 0..b.num_rows() {
            out.push(Landed {
                request_id: ids.as_string::<i32>().value(i).to_owned(),
                row_hash: text(&row_hash, i),
                success: ok.as_boolean().value(i),
                status_code: status.is_valid(i).then(|| status.value(i)),
                error_message: text(&err, i),
                response_metadata: text(&meta, i),
                request_metadata: text(&req_meta, i),
                request_headers: text(&req_headers, i),
                body_text: text(&body, i),
                attempts: attempts.value(i),
            });
        }
    }
    out
}

/// The same table through the Python `deltalake` package: (rows, distinct successful ids, schema text).
/// Without SPARKWASM_PYTHON (a Python with `deltalake`; scripts/test.sh sets it) the test fails,
/// unless SPARKWASM_ALLOW_SKIP=1 says that skipping the second reader is meant.
pub(crate) fn read_bronze_with_python(path: &Path) -> Option<String> {
    let Ok(python) = std::env::var("SPARKWASM_PYTHON") else {
        skip_allowed("SPARKWASM_PYTHON (a Python with the deltalake package, the second reader)");
        return None;
    };
    let out = Command::new(python)
        .arg(repo_root().join("tests/read_delta.py"))
        .arg(path)
        .output()
        .expect("python");
    assert!(
        out.status.success(),
        "python reader failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(String::from_utf8(out.stdout).unwrap())
}

/// The bronze schema as docs/architecture.md documents it, as pyarrow prints a schema: one
/// `name: type[ not null]` line per column, in the documented order.
pub(crate) fn documented_bronze_schema() -> Vec<String> {
    let doc = std::fs::read_to_string(repo_root().join("docs/architecture.md")).unwrap();
    let table = doc
        .split("## The bronze table")
        .nth(1)
        .expect("docs/architecture.md has a bronze table section");
    let mut lines = vec![];
    for row in table.lines().skip_while(|l| !l.starts_with("|---")).skip(1) {
        let Some(row) = row.strip_prefix('|') else {
            break;
        };
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let (names, kind) = (cells[0], cells[1]);
        let not_null = if kind.contains("not null") {
            " not null"
        } else {
            ""
        };
        let arrow = match kind.split([',', ' ']).next().unwrap() {
            "string" => "string",
            "int" => "int32",
            "long" => "int64",
            "boolean" => "bool",
            "timestamp" => "timestamp[us, tz=UTC]",
            other => panic!("docs/architecture.md: unknown type `{other}`"),
        };
        for name in names.split(',') {
            lines.push(format!("{}: {arrow}{not_null}", name.trim()));
        }
    }
    lines
}

/// Checks the schema the Python reader printed against [`documented_bronze_schema`].
pub(crate) fn assert_documented_shape(python_output: &str) {
    let printed: Vec<&str> = python_output
        .lines()
        .skip(1)
        .take_while(|l| !l.starts_with("url=") && !l.starts_with("-- schema metadata"))
        .collect();
    assert_eq!(
        printed,
        documented_bronze_schema(),
        "the table's schema differs from docs/architecture.md"
    );
}

pub(crate) fn successes_per_id(rows: &[Landed]) -> HashMap<&str, usize> {
    let mut m = HashMap::new();
    for row in rows.iter().filter(|r| r.success) {
        *m.entry(row.request_id.as_str()).or_insert(0) += 1;
    }
    m
}

/// A test that lacks `what` may skip it only when SPARKWASM_ALLOW_SKIP=1; otherwise it fails here.
pub(crate) fn skip_allowed(what: &str) {
    assert!(
        std::env::var_os("SPARKWASM_ALLOW_SKIP").is_some_and(|v| v == "1"),
        "{what} is not set: run the tests with scripts/test.sh (it provides it), or set \
         SPARKWASM_ALLOW_SKIP=1 to skip what needs it"
    );
    eprintln!("{what} is not set: skipped (SPARKWASM_ALLOW_SKIP=1)");
}

/// The process's resident memory now (Linux: VmRSS), in bytes.
pub(crate) fn current_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS");
    kb * 1024
}

/// How many commits the Delta table at `table` holds (its `_delta_log/*.json`; the table's creation
/// is one).
pub(crate) fn commits(table: &Path) -> usize {
    std::fs::read_dir(table.join("_delta_log")).map_or(0, |d| {
        d.filter_map(Result::ok)
            .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
            .count()
    })
}

/// The txn versions of `app_id` in the Delta log at `table`, in commit order.
pub(crate) fn txn_versions(table: &Path, app_id: &str) -> Vec<i64> {
    let mut versions = vec![];
    for version in 0.. {
        let file = table.join(format!("_delta_log/{version:020}.json"));
        let Ok(text) = std::fs::read_to_string(&file) else {
            break;
        };
        for line in text.lines() {
            let action: serde_json::Value = serde_json::from_str(line).unwrap();
            if action["txn"]["appId"] == app_id {
                versions.push(action["txn"]["version"].as_i64().unwrap());
            }
        }
    }
    versions
}

/// Waits (polling every 20 ms, at most `limit`) until `ready` holds; false if it never did.
pub(crate) fn wait_until(limit: std::time::Duration, mut ready: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + limit;
    while std::time::Instant::now() < deadline {
        if ready() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    ready()
}

/// The process's peak resident memory so far (Linux: VmHWM), in bytes.
pub(crate) fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM");
    kb * 1024
}

/// A free port on 127.0.0.1 for a server a test starts (it binds it a moment later).
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// GET `path` from `host` over plain http with std only, with `headers`: (status line, body). For
/// reading a server's own API (Prometheus, the OCI registry) from the test's side.
pub(crate) fn http_get(host: &str, path: &str, headers: &[(&str, &str)]) -> (String, Vec<u8>) {
    try_http_get(host, path, headers).unwrap_or_else(|| panic!("GET http://{host}{path} failed"))
}

/// [`http_get`], `None` when the server is not there, or goes away mid-answer.
pub(crate) fn try_http_get(
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Option<(String, Vec<u8>)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(host).ok()?;
    let extra: String = headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect();
    write!(s, "GET {path} HTTP/1.0\r\nHost: {host}\r\n{extra}\r\n").ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).ok()?;
    let at = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&buf[..at])
        .lines()
        .next()?
        .to_owned();
    Some((head, buf[at + 4..].to_vec()))
}
