//! Delta on object stores: S3 through moto's server (an emulation of S3, from PyPI; it checks
//! conditional puts and, once told to, credentials) and Azure Blob Storage through Azurite (the
//! official emulator, from npm), each started on 127.0.0.1 by its test and stopped when dropped.
//! Tables are read back by the Python `deltalake` package (tests/store_fixture.py), which also
//! creates buckets and containers and uploads source files: sparkwasm never does.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::Ordering;
use std::time::Duration;

use testkit::ApiServer;

use crate::support::*;

const ROWS: usize = 1200;

/// A Python with deltalake (and boto3, from moto), or a skip where allowed.
fn python() -> Option<String> {
    let python = std::env::var("SPARKWASM_PYTHON").ok();
    if python.is_none() {
        skip_allowed("SPARKWASM_PYTHON (a Python with deltalake and moto)");
    }
    python
}

/// Runs tests/store_fixture.py with `env`, whatever its exit.
fn fixture_output(python: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(python)
        .arg(repo_root().join("tests/store_fixture.py"))
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("python")
}

/// Runs tests/store_fixture.py with `env`; its stdout (it must succeed).
fn fixture_in(python: &str, args: &[&str], env: &[(&str, &str)]) -> String {
    let out = fixture_output(python, args, env);
    assert!(
        out.status.success(),
        "store_fixture {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// Runs tests/store_fixture.py; its stdout.
fn fixture(python: &str, args: &[&str]) -> String {
    fixture_in(python, args, &[])
}

/// What a process needs to reach `azurite` (the standard emulator variables).
fn azurite_env(azurite: &Server) -> [(&'static str, &str); 2] {
    [
        ("AZURE_STORAGE_USE_EMULATOR", "true"),
        ("AZURITE_BLOB_STORAGE_URL", azurite.endpoint.as_str()),
    ]
}

/// Python deltalake's options for Azurite (the endpoint comes from [`azurite_env`]).
const AZURITE_OPTIONS: &str = "{\"use_emulator\": \"true\"}";

/// A server process, killed when dropped.
struct Server {
    child: Child,
    endpoint: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts an emulator; `log`: a file for its stderr (moto's access log), else it is dropped.
fn start(mut command: Command, port: u16, ready_path: &str, log: Option<&Path>) -> Server {
    let stderr = log.map_or_else(Stdio::null, |p| std::fs::File::create(p).unwrap().into());
    let child = command
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("start the emulator");
    let endpoint = format!("http://127.0.0.1:{port}");
    let server = Server { child, endpoint };
    assert!(
        wait_until(Duration::from_secs(60), || {
            try_http_get(&format!("127.0.0.1:{port}"), ready_path, &[])
                .is_some_and(|(head, _)| head.starts_with("HTTP/"))
        }),
        "the emulator did not answer on port {port} in 60 s"
    );
    server
}

/// moto's server (S3), from the venv of `python`.
fn moto(python: &str) -> Option<Server> {
    moto_logged(python, None)
}

/// moto's server, its access log (one line per request, with the status) written to `log`.
fn moto_logged(python: &str, log: Option<&Path>) -> Option<Server> {
    moto_at(&Path::new(python).with_file_name("moto_server"), log)
}

/// The moto server at `bin`.
fn moto_at(bin: &Path, log: Option<&Path>) -> Option<Server> {
    if !bin.exists() {
        skip_allowed(&format!("{} (pip install 'moto[server]')", bin.display()));
        return None;
    }
    let port = free_port();
    let mut c = Command::new(bin);
    c.args(["-H", "127.0.0.1", "-p", &port.to_string()]);
    Some(start(c, port, "/moto-api/", log))
}

/// An API server and a bucket `lake` on `moto` (`None`: its server is missing and skipped).
async fn lake(python: &str, moto: Option<Server>) -> Option<(Server, ApiServer)> {
    let moto = moto?;
    fixture(python, &["s3-bucket", &moto.endpoint, "lake"]);
    Some((moto, ApiServer::start(0).await.unwrap()))
}

/// Azurite's blob service (in memory), from SPARKWASM_AZURITE (its `azurite-blob` script).
fn azurite() -> Option<Server> {
    let Ok(bin) = std::env::var("SPARKWASM_AZURITE") else {
        skip_allowed("SPARKWASM_AZURITE (Azurite's azurite-blob, from npm)");
        return None;
    };
    let port = free_port();
    let dir = std::env::temp_dir();
    let mut c = Command::new(bin);
    c.current_dir(dir).args([
        "--blobHost",
        "127.0.0.1",
        "--blobPort",
        &port.to_string(),
        "--inMemoryPersistence",
        "--skipApiVersionCheck",
        "--loose",
        "--silent",
        "--disableTelemetry",
    ]);
    Some(start(c, port, "/devstoreaccount1?comp=list", None))
}

/// A pipeline sending one GET per row of `source` to `api`, landing in `sink`.
fn pipeline(api: &str, url_path: &str, source: &str, sink: &str) -> String {
    format!(
        "endpoint: {{name: stores_e2e, method: GET, base_url: \"{api}\", url_path: \"{url_path}\"}}\n\
         execution: {{batch_size: 200, concurrency_limit: 16}}\n\
         tables:\n  source: {source}\n  sink: {sink}\n"
    )
}

fn case(yaml: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    testkit::write_rows_parquet(&dir.path().join("rows.parquet"), ROWS).unwrap();
    std::fs::write(dir.path().join("p.yaml"), yaml).unwrap();
    dir
}

fn run(dir: &Path, env: &[(&str, &str)], args: &[&str]) -> Output {
    sparkwasm(dir)
        .args(["run", "p.yaml"])
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

/// `rows=N successful_ids=M` of the table at `uri`, read by Python deltalake.
fn read_back(python: &str, uri: &str, options: &str) -> String {
    fixture(python, &["read", uri, options])
}

/// The environment a process needs for moto at `endpoint` (the standard AWS variables).
fn aws_env(endpoint: &str) -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ENDPOINT_URL", endpoint.to_owned()),
        ("AWS_REGION", "us-east-1".to_owned()),
        ("AWS_ACCESS_KEY_ID", "testing".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "testing".to_owned()),
    ]
}

fn s3_options(endpoint: &str) -> String {
    format!(
        "{{\"AWS_ENDPOINT_URL\": \"{endpoint}\", \"AWS_REGION\": \"us-east-1\", \"AWS_ACCESS_KEY_ID\": \"testing\", \"AWS_SECRET_ACCESS_KEY\": \"testing\", \"AWS_ALLOW_HTTP\": \"true\"}}"
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pipeline_reads_from_and_lands_in_s3_and_a_rerun_sends_nothing() {
    let Some(python) = python() else { return };
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("moto.log");
    let Some((moto, server)) = lake(&python, moto_logged(&python, Some(&log))).await else {
        return;
    };
    let dir = case("");
    let local = dir.path().join("rows.parquet");
    fixture(
        &python,
        &[
            "s3-put",
            &moto.endpoint,
            "lake",
            "in/rows.parquet",
            local.to_str().unwrap(),
        ],
    );
    std::fs::remove_file(&local).unwrap();
    // Endpoint and region in storage_options, the keys from the standard environment.
    let options = format!("{{endpoint: \"{}\", region: us-east-1}}", moto.endpoint);
    std::fs::write(
        dir.path().join("p.yaml"),
        pipeline(
            &server.url(),
            "/items/{id}",
            // The source's secret key from the environment: redacted everywhere, logs included.
            &format!(
                "{{path: \"s3://lake/in/rows.parquet\", id_column: id, storage_options: {{endpoint: \"{}\", region: us-east-1, aws_secret_access_key: \"{{{{env.LAKE_SECRET}}}}\"}}}}",
                moto.endpoint
            ),
            &format!("{{path: \"s3a://lake/bronze/items\", storage_options: {options}}}"),
        ),
    )
    .unwrap();
    let secret = "source-secret-0123456789abcdef";
    let env: Vec<(&str, String)> = vec![
        ("AWS_ACCESS_KEY_ID", "testing".into()),
        ("AWS_SECRET_ACCESS_KEY", "testing".into()),
        ("LAKE_SECRET", secret.into()),
        ("RUST_LOG", "debug".into()),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let out = run(dir.path(), &env, &[]);
    assert_exit(&out, 0);
    let everything = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(everything.contains("run starts"), "debug logs were on");
    // The sink's probe of conditional writes, seen from moto: created, refused the second time
    // (moto 5 honours If-None-Match), and gone afterwards; so no warning about concurrent writers.
    assert_eq!(
        requests_of(&log, "lake", "bronze/items/_sparkwasm_probe_", 0),
        ["PUT 200", "PUT 412"]
    );
    let keys = fixture(
        &python,
        &["s3-list", &moto.endpoint, "lake", "bronze/items/"],
    );
    assert!(
        keys.contains("_delta_log/") && !keys.contains("_sparkwasm_probe_"),
        "{keys}"
    );
    assert!(
        !everything.contains("ignores conditional writes"),
        "{everything}"
    );
    assert!(
        !everything.contains(secret),
        "a storage secret in the output"
    );
    assert_eq!(
        server.counters.row_requests.load(Ordering::Relaxed),
        ROWS as u64
    );
    assert_eq!(
        read_back(
            &python,
            "s3://lake/bronze/items",
            &s3_options(&moto.endpoint)
        ),
        format!("rows={ROWS} successful_ids={ROWS}")
    );
    // Nothing was written locally.
    assert!(!dir.path().join("warehouse").exists() && !dir.path().join("lake").exists());
    // A rerun reads what landed from the store and sends nothing.
    let again = run(dir.path(), &env, &[]);
    assert_exit(&again, 0);
    assert!(
        String::from_utf8_lossy(&again.stdout).contains(&format!("{ROWS} already landed")),
        "{}",
        String::from_utf8_lossy(&again.stdout)
    );
    assert_eq!(
        server.counters.row_requests.load(Ordering::Relaxed),
        ROWS as u64
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_bucket_or_refused_credentials_stop_the_run_before_any_request() {
    let Some(python) = python() else { return };
    let Some((moto, server)) = lake(&python, moto(&python)).await else {
        return;
    };
    let dir = case(&pipeline(
        &server.url(),
        "/items/{id}",
        "{path: rows.parquet, id_column: id}",
        "{path: \"s3://nosuchbucket/bronze\"}",
    ));
    let env = aws_env(&moto.endpoint);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let out = run(dir.path(), &env, &[]);
    assert_exit(&out, 1);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("s3://nosuchbucket/bronze")
            && stderr.contains("the bucket or container does not exist"),
        "{stderr}"
    );

    // moto checks keys from here on: a wrong secret is refused, and never printed.
    let keys = fixture(&python, &["s3-enforce-auth", &moto.endpoint]);
    let (key_id, secret) = keys.split_once(' ').unwrap();
    std::fs::write(
        dir.path().join("p.yaml"),
        pipeline(
            &server.url(),
            "/items/{id}",
            "{path: rows.parquet, id_column: id}",
            "{path: \"s3://lake/bronze\", storage_options: {aws_secret_access_key: \"{{env.LAKE_SECRET}}\"}}",
        ),
    )
    .unwrap();
    let wrong = "wrongSecretValue1234567890";
    let mut env = aws_env(&moto.endpoint);
    env.retain(|(k, _)| *k != "AWS_SECRET_ACCESS_KEY" && *k != "AWS_ACCESS_KEY_ID");
    env.push(("AWS_ACCESS_KEY_ID", key_id.to_owned()));
    env.push(("LAKE_SECRET", wrong.to_owned()));
    let env_ref: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let out = run(dir.path(), &env_ref, &[]);
    assert_exit(&out, 1);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("s3://lake/bronze") && stderr.contains("access denied"),
        "{stderr}"
    );
    assert!(!stderr.contains(wrong) && !String::from_utf8_lossy(&out.stdout).contains(wrong));
    assert_eq!(server.counters.row_requests.load(Ordering::Relaxed), 0);

    // With the right secret the same pipeline lands.
    env.retain(|(k, _)| *k != "LAKE_SECRET");
    env.push(("LAKE_SECRET", secret.to_owned()));
    let env_ref: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    assert_exit(&run(dir.path(), &env_ref, &[]), 0);
    assert_eq!(
        server.counters.row_requests.load(Ordering::Relaxed),
        ROWS as u64
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pipeline_reads_from_and_lands_in_azurite() {
    let Some(python) = python() else { return };
    let Some(azurite) = azurite() else { return };
    let server = ApiServer::start(0).await.unwrap();
    fixture(&python, &["az-container", &azurite.endpoint, "lake"]);
    let dir = case("");
    let csv = dir.path().join("rows.csv");
    let mut text = String::from("id,name\n");
    for i in 0..ROWS {
        text.push_str(&format!("{i},name-{i}\n"));
    }
    std::fs::write(&csv, text).unwrap();
    fixture(
        &python,
        &[
            "az-put",
            &azurite.endpoint,
            "lake",
            "in/rows.csv",
            csv.to_str().unwrap(),
        ],
    );
    std::fs::remove_file(&csv).unwrap();
    std::fs::write(
        dir.path().join("p.yaml"),
        pipeline(
            &server.url(),
            "/items/{id}",
            "{path: \"az://lake/in/rows.csv\", id_column: id}",
            "{path: \"abfss://lake@devstoreaccount1.dfs.core.windows.net/bronze/items\"}",
        ),
    )
    .unwrap();
    let env = azurite_env(&azurite);
    assert_exit(&run(dir.path(), &env, &[]), 0);
    assert_eq!(
        server.counters.row_requests.load(Ordering::Relaxed),
        ROWS as u64
    );
    assert_eq!(
        fixture_in(
            &python,
            &["read", "az://lake/bronze/items", AZURITE_OPTIONS],
            &env
        ),
        format!("rows={ROWS} successful_ids={ROWS}")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn two_shards_share_one_azurite_table_and_a_killed_one_resumes() {
    let Some(python) = python() else { return };
    let Some(azurite) = azurite() else { return };
    let server = ApiServer::start(0).await.unwrap();
    fixture(&python, &["az-container", &azurite.endpoint, "lake"]);
    let dir = case(&pipeline(
        &server.url(),
        "/slow/20/{id}",
        "{path: rows.parquet, id_column: id}",
        "{path: \"az://lake/bronze/shared\"}",
    ));
    let env = azurite_env(&azurite);
    let shard = |i: u32| {
        sparkwasm(dir.path())
            .args(["run", "p.yaml", "--shard", &format!("{i}/2")])
            .envs(env)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let (mut zero, mut one) = (shard(0), shard(1));
    let txn = |app_id: &str| -> i64 {
        // Before the table's first commit the reader fails: nothing landed yet.
        let out = fixture_output(
            &python,
            &["txn", "az://lake/bronze/shared", AZURITE_OPTIONS, app_id],
            &env,
        );
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or(0)
    };
    let shard_one = "sparkwasm/stores_e2e/shard-1-of-2";
    assert!(
        wait_until(Duration::from_secs(120), || txn(shard_one) > 0),
        "shard 1 landed nothing in 120 s"
    );
    one.kill().unwrap();
    one.wait().unwrap();
    assert!(zero.wait().unwrap().success());
    assert_eq!(
        txn(&format!("{shard_one}/finished")),
        0,
        "shard 1 finished before it was killed"
    );
    let landed_by_one = txn(shard_one);
    let rerun = run(dir.path(), &env, &["--shard", "1/2"]);
    assert_exit(&rerun, 0);
    assert!(
        !String::from_utf8_lossy(&rerun.stdout).contains("(0 already landed"),
        "{}",
        String::from_utf8_lossy(&rerun.stdout)
    );
    assert!(txn(shard_one) > landed_by_one);
    assert_eq!(
        fixture_in(
            &python,
            &["read", "az://lake/bronze/shared", AZURITE_OPTIONS],
            &env
        ),
        format!("rows={ROWS} successful_ids={ROWS}")
    );
}

/// With `--features dynamodb` (scripts/test.sh runs this test so): delta-rs's DynamoDB locking
/// provider, for S3 stores without conditional writes. The lock table, read by boto3 from moto's
/// DynamoDB, holds one entry per commit: the commits went through it.
#[cfg(feature = "dynamodb")]
#[tokio::test(flavor = "multi_thread")]
async fn the_dynamodb_locking_provider_commits_through_its_lock_table() {
    let Some(python) = python() else { return };
    let Some((moto, server)) = lake(&python, moto(&python)).await else {
        return;
    };
    fixture(&python, &["dynamo-table", &moto.endpoint, "delta_locks"]);
    let dir = case(&pipeline(
        &server.url(),
        "/items/{id}",
        "{path: rows.parquet, id_column: id}",
        &format!(
            "{{path: \"s3://lake/bronze/locked\", storage_options: {{AWS_S3_LOCKING_PROVIDER: dynamodb, DELTA_DYNAMO_TABLE_NAME: delta_locks, AWS_ENDPOINT_URL_DYNAMODB: \"{e}\", AWS_ENDPOINT_URL: \"{e}\", AWS_ALLOW_HTTP: \"true\"}}}}",
            e = moto.endpoint
        ),
    ));
    let env = aws_env(&moto.endpoint);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    assert_exit(&run(dir.path(), &env, &[]), 0);
    assert_eq!(
        server.counters.row_requests.load(Ordering::Relaxed),
        ROWS as u64
    );
    assert_eq!(
        read_back(
            &python,
            "s3://lake/bronze/locked",
            &s3_options(&moto.endpoint)
        ),
        format!("rows={ROWS} successful_ids={ROWS}")
    );
    // The table's creation, ROWS / 200 batches, and the run's closing commit.
    let commits = ROWS / 200 + 2;
    assert_eq!(
        fixture(&python, &["dynamo-count", &moto.endpoint, "delta_locks"]),
        commits.to_string()
    );
}

/// `METHOD status` of moto's answers to requests for objects of `bucket` whose key starts with
/// `key`, logged after the first `from` lines, read from its access log.
fn requests_of(log: &Path, bucket: &str, key: &str, from: usize) -> Vec<String> {
    let text = std::fs::read_to_string(log).unwrap();
    let wanted = format!("/{bucket}/{key}");
    text.lines()
        .skip(from)
        .filter_map(|l| {
            let mut quoted = l.split('"');
            let request = quoted.nth(1)?;
            let status = quoted.next()?.split_whitespace().next()?;
            let (method, rest) = request
                .trim_start_matches(|c: char| !c.is_ascii_uppercase())
                .split_once(' ')?;
            rest.starts_with(&wanted)
                .then(|| format!("{method} {status}"))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn source_objects_are_read_by_ranges_never_fetched_whole() {
    // A Parquet object of 40 row groups and a 12 MiB CSV object on moto. Seen from the store's own
    // access log: every GET of them is a ranged one (206), a dry run of the first rows reads a few
    // row groups (a few ranges of the CSV), and the full run reads the Parquet object one row group
    // per request. Without ranged reads each would be one 200 of the whole object.
    let Some(python) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("moto.log");
    let Some((moto, server)) = lake(&python, moto_logged(&python, Some(&log))).await else {
        return;
    };
    const PARQUET_ROWS: usize = 8000;
    let (pq, csv) = (dir.path().join("rows.parquet"), dir.path().join("rows.csv"));
    fixture(
        &python,
        &[
            "parquet",
            pq.to_str().unwrap(),
            &PARQUET_ROWS.to_string(),
            "200",
        ],
    );
    fixture(&python, &["csv", csv.to_str().unwrap(), "12000"]);
    for (file, key) in [(&pq, "in/rows.parquet"), (&csv, "in/rows.csv")] {
        fixture(
            &python,
            &[
                "s3-put",
                &moto.endpoint,
                "lake",
                key,
                file.to_str().unwrap(),
            ],
        );
    }
    let env = aws_env(&moto.endpoint);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let lines = || std::fs::read_to_string(&log).unwrap().lines().count();
    // The log's length once it stops growing: moto writes a request's line when it has answered
    // it, so a read-ahead request of a run that has just ended (a dry run stops reading mid-way)
    // can be logged after the process exits; it must not be counted as the next run's.
    let settled = || {
        let mut seen = lines();
        for _ in 0..20 {
            std::thread::sleep(std::time::Duration::from_millis(250));
            let now = lines();
            if now == seen {
                break;
            }
            seen = now;
        }
        seen
    };
    let with_source = |key: &str| {
        let yaml = pipeline(
            &server.url(),
            "/items/{id}",
            &format!("{{path: \"s3://lake/{key}\", id_column: id}}"),
            "{path: bronze}",
        );
        std::fs::write(dir.path().join("p.yaml"), yaml).unwrap();
    };

    // The CSV: a dry run asks for its first block only (its size comes with it; the schema is
    // inferred from it too).
    with_source("in/rows.csv");
    let before = settled();
    let out = run(dir.path(), &env, &["--dry-run", "3"]);
    assert_exit(&out, 0);
    let csv = requests_of(&log, "lake", "in/rows.csv", before);
    assert_eq!(csv, ["GET 206"], "a dry run of a 12 MiB CSV object");

    // The Parquet object: its size (HEAD), its footer, and the row groups the reader got to
    // before the dry run ended (the source reads at most a few batches ahead).
    with_source("in/rows.parquet");
    let before = settled();
    let out = run(dir.path(), &env, &["--dry-run", "3"]);
    assert_exit(&out, 0);
    let dry = requests_of(&log, "lake", "in/rows.parquet", before);
    assert!(
        dry.len() >= 3
            && dry.len() <= 6
            && dry[0] == "HEAD 200"
            && dry[1..].iter().all(|s| s == "GET 206"),
        "a dry run of 3 rows of a 40-row-group object: {dry:?}"
    );
    // The full run: size, footer, then one request per row group; every row lands.
    let before = settled();
    let out = run(dir.path(), &env, &[]);
    assert_exit(&out, 0);
    let full = requests_of(&log, "lake", "in/rows.parquet", before);
    eprintln!("requests: CSV dry run {csv:?}; Parquet dry run {dry:?}; full run {full:?}");
    assert!(
        full.len() == 42 && full[0] == "HEAD 200" && full[1..].iter().all(|s| s == "GET 206"),
        "the full run of a 40-row-group object: {full:?}"
    );
    assert_eq!(
        server.counters.row_requests.load(Ordering::Relaxed),
        PARQUET_ROWS as u64
    );
    let bronze = dir.path().join("bronze");
    assert_eq!(
        read_back(&python, bronze.to_str().unwrap(), "{}"),
        format!("rows={PARQUET_ROWS} successful_ids={PARQUET_ROWS}")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_store_that_ignores_conditional_writes_stops_a_sharded_run_and_warns_a_single_writer() {
    // moto 4.2 (a real S3 emulator, from PyPI, in its own venv: SPARKWASM_OLD_MOTO) answers a PUT
    // with `If-None-Match: *` on an existing key by overwriting it, as older S3-compatible stores
    // do: two writers of one table could then both create the same commit.
    let Some(python) = python() else { return };
    let Ok(old) = std::env::var("SPARKWASM_OLD_MOTO") else {
        skip_allowed("SPARKWASM_OLD_MOTO (moto 4.2's moto_server, which ignores If-None-Match)");
        return;
    };
    let Some((moto, server)) = lake(&python, moto_at(Path::new(&old), None)).await else {
        return;
    };
    let dir = case(&pipeline(
        &server.url(),
        "/items/{id}",
        "{path: rows.parquet, id_column: id}",
        "{path: \"s3://lake/bronze/items\"}",
    ));
    let env = aws_env(&moto.endpoint);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    // One of two shards: stopped before any request, saying why and what to do.
    let out = run(dir.path(), &env, &["--shard", "0/2"]);
    assert_exit(&out, 1);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("s3://lake/bronze/items")
            && stderr.contains("ignores conditional writes")
            && stderr.contains("one of 2 shards")
            && stderr.contains("dynamodb")
            && stderr.contains("AWS_S3_ALLOW_UNSAFE_RENAME"),
        "{stderr}"
    );
    assert_eq!(server.counters.row_requests.load(Ordering::Relaxed), 0);
    // A shard whose options say it is its table's only writer (delta-rs's word for it) runs, with
    // no probe and no warning.
    let mut single = env.clone();
    single.push(("AWS_S3_ALLOW_UNSAFE_RENAME", "true"));
    let out = run(dir.path(), &single, &["--shard", "0/2"]);
    assert_exit(&out, 0);
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("conditional writes"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let shard_rows = server.counters.row_requests.load(Ordering::Relaxed);
    assert!(shard_rows > 0 && shard_rows < ROWS as u64, "{shard_rows}");
    // A single writer runs, warned; the rest of the rows land (read back by Python deltalake).
    let out = run(dir.path(), &env, &[]);
    assert_exit(&out, 0);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr
            .contains("warning: sink s3://lake/bronze/items: the store ignores conditional writes"),
        "{stderr}"
    );
    assert_eq!(
        read_back(
            &python,
            "s3://lake/bronze/items",
            &s3_options(&moto.endpoint)
        ),
        format!("rows={ROWS} successful_ids={ROWS}")
    );
}
