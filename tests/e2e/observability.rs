//! Watching a run from outside: a real Prometheus server (Debian's package) scrapes
//! `--metrics-addr` and its query API agrees with the table; `--report` agrees with the server's
//! count and the table, also for failed rows and for a run that cannot start.

use std::path::Path;
use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::Duration;

use testkit::ApiServer;

use crate::support::*;

/// Prometheus on 127.0.0.1, scraping `target` every second, its data in a temp dir; killed on drop.
struct Prometheus {
    child: std::process::Child,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    fn start(target: &str) -> Option<Prometheus> {
        let found = Command::new("prometheus")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            skip_allowed("Debian's prometheus");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("prometheus.yml"),
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\nscrape_configs:\n  - job_name: sparkwasm\n    static_configs:\n      - targets: [\"{target}\"]\n"
            ),
        )
        .unwrap();
        let addr = format!("127.0.0.1:{}", free_port());
        let child = Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.path().join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let p = Prometheus {
            child,
            addr,
            _dir: dir,
        };
        let ready = wait_until(Duration::from_secs(30), || {
            std::net::TcpStream::connect(&p.addr).is_ok()
                && http_get(&p.addr, "/-/ready", &[]).0.contains("200")
        });
        assert!(ready, "prometheus did not become ready");
        // Its scrape loop starts a few seconds after it is ready (target discovery is batched):
        // wait until it has tried the target once (it is down: nothing serves it yet).
        let scraping = wait_until(Duration::from_secs(30), || {
            let (_, body) = http_get(&p.addr, "/api/v1/targets", &[]);
            serde_json::from_slice::<serde_json::Value>(&body).is_ok_and(|v| {
                v["data"]["activeTargets"]
                    .as_array()
                    .is_some_and(|t| t.iter().any(|t| t["health"] != "unknown"))
            })
        });
        assert!(scraping, "prometheus never scraped {target}");
        Some(p)
    }

    /// The value of an instant PromQL query with one sample, if any.
    fn query(&self, promql: &str) -> Option<f64> {
        let q = percent_encoding::utf8_percent_encode(promql, percent_encoding::NON_ALPHANUMERIC);
        let (_, body) = http_get(&self.addr, &format!("/api/v1/query?query={q}"), &[]);
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        v["data"]["result"][0]["value"][1]
            .as_str()
            .map(|s| s.parse().unwrap())
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn prometheus_scrapes_a_run_and_its_counts_agree_with_the_table_and_the_report() {
    let server = ApiServer::start(0).await.unwrap();
    let metrics = format!("127.0.0.1:{}", free_port());
    let Some(prometheus) = Prometheus::start(&metrics) else {
        return;
    };
    // About 3 s of work (300 rows, 30 ms each, 4 at a time), so that scrapes happen during the run.
    let case = Case::new(
        300,
        &pipeline(
            &server.url(),
            "/slow/30/{id}",
            "execution: {concurrency_limit: 4, batch_size: 100}\n",
        ),
    );
    let out = sparkwasm(case.dir.path())
        .args([
            "run",
            "p.yaml",
            "--metrics-addr",
            &metrics,
            "--metrics-hold",
            "3",
        ])
        .args(["--report", "report.json"])
        .output()
        .unwrap();
    assert_exit(&out, 0);
    let landed = read_bronze(&case.bronze()).len();
    assert_eq!(landed, 300);
    let sent = server.counters.row_requests.load(Ordering::SeqCst);
    // Every request the server saw, the connection warm-up's HEADs included.
    let all = server.counters.requests.load(Ordering::SeqCst);
    // Prometheus' own view (the last value it scraped in the last minute).
    let q = |metric: &str| {
        prometheus
            .query(&format!("max_over_time({metric}[1m])"))
            .unwrap_or_else(|| panic!("prometheus has no {metric}"))
    };
    assert_eq!(q("sparkwasm_rows_landed_total") as usize, landed);
    assert_eq!(
        q("sparkwasm_rows_total{outcome=\"success\"}") as usize,
        landed
    );
    assert_eq!(q("sparkwasm_requests_total") as u64, all);
    assert_eq!(q("sparkwasm_responses_total{class=\"2xx\"}") as u64, all);
    // Batch commits: the log's commits that add data files (not the create, not the end marker).
    let batches = batch_versions(&case.bronze());
    assert_eq!(q("sparkwasm_commits_total") as usize, batches.len());
    assert_eq!(
        q("sparkwasm_last_batch_version") as i64,
        *batches.last().unwrap()
    );
    assert_eq!(q("sparkwasm_request_duration_seconds_count") as u64, all);
    // More than one scrape saw the run (the rows grew while it ran).
    let samples = prometheus
        .query("count_over_time(sparkwasm_rows_landed_total[1m])")
        .unwrap();
    assert!(samples >= 3.0, "{samples} scrapes");

    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(case.dir.path().join("report.json")).unwrap())
            .unwrap();
    assert_eq!(report["status"], "ok");
    assert_eq!(report["exit_code"], 0);
    assert_eq!(report["rows"]["ok"], 300);
    assert_eq!(report["rows"]["sent"].as_u64().unwrap(), sent);
    assert_eq!(report["requests"].as_u64().unwrap(), all);
    assert_eq!(report["rows_landed"], 300);
    assert_eq!(
        report["last_batch_version"].as_i64().unwrap(),
        *batches.last().unwrap()
    );
    assert_eq!(report["commits"].as_u64().unwrap() as usize, batches.len());
    assert!(
        report["latency_ms"]["p50"].as_f64().unwrap() >= 30.0,
        "{report}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_report_is_written_for_failed_rows_and_for_a_run_that_cannot_start() {
    let server = ApiServer::start(0).await.unwrap();
    let case = Case::new(7, &pipeline(&server.url(), "/status/404/{id}", ""));
    let report = |dir: &Path| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(dir.join("report.json")).unwrap()).unwrap()
    };
    let out = sparkwasm(case.dir.path())
        .args(["run", "p.yaml", "--report", "report.json"])
        .output()
        .unwrap();
    assert_exit(&out, 2);
    let r = report(case.dir.path());
    assert_eq!(r["status"], "rows_failed");
    assert_eq!(r["exit_code"], 2);
    assert_eq!(r["rows"]["failed"], 7);
    assert_eq!(r["rows"]["failed_final"], 7, "a 404 fails for good: {r}");
    assert_eq!(
        read_bronze(&case.bronze())
            .iter()
            .filter(|row| !row.success)
            .count(),
        7
    );
    // A source that is not there: no request, and the report says why.
    std::fs::remove_file(case.dir.path().join("rows.parquet")).unwrap();
    let before = server.counters.row_requests.load(Ordering::SeqCst);
    let out = sparkwasm(case.dir.path())
        .args(["run", "p.yaml", "--report", "report.json"])
        .output()
        .unwrap();
    assert_exit(&out, 1);
    let r = report(case.dir.path());
    assert_eq!(r["status"], "error");
    assert_eq!(r["exit_code"], 1);
    assert!(r["error"].as_str().unwrap().contains("rows.parquet"), "{r}");
    assert_eq!(server.counters.row_requests.load(Ordering::SeqCst), before);
}

/// The versions of the Delta log at `table` whose commit adds data files, read from the log files.
fn batch_versions(table: &Path) -> Vec<i64> {
    (0..)
        .map_while(|v: i64| {
            std::fs::read_to_string(table.join(format!("_delta_log/{v:020}.json")))
                .ok()
                .map(|text| (v, text))
        })
        .filter(|(_, text)| text.lines().any(|l| l.starts_with("{\"add\"")))
        .map(|(v, _)| v)
        .collect()
}

/// The schema, generated from the validator's key descriptions, accepts every example and every
/// legacy-shaped fixture and refuses what the validator refuses, as an independent validator (the
/// Python `jsonschema` package) reads it, in both drafts.
#[test]
fn the_schema_accepts_every_example_and_legacy_fixture_and_refuses_unknown_keys() {
    let Ok(python) = std::env::var("SPARKWASM_PYTHON") else {
        skip_allowed("SPARKWASM_PYTHON (a Python with jsonschema and pyyaml)");
        return;
    };
    let root = repo_root();
    let dir = tempfile::tempdir().unwrap();
    let mut files: Vec<String> = Vec::new();
    for folder in ["configs", "tests/legacy"] {
        for e in std::fs::read_dir(root.join(folder)).unwrap().flatten() {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "yaml" || x == "yml") {
                files.push(p.display().to_string());
            }
        }
    }
    assert!(files.len() >= 12, "{files:?}");
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "endpoint: {base_url: \"http://x\"}\nexecution:\n  partitons: 2\n  batch_size: -1\ntables: {sink: {path: out}}\n",
    )
    .unwrap();
    for draft in ["2020-12", "7"] {
        let out = sparkwasm(dir.path())
            .args(["schema", "--draft", draft])
            .output()
            .unwrap();
        assert_exit(&out, 0);
        let schema = dir.path().join(format!("schema-{draft}.json"));
        std::fs::write(&schema, &out.stdout).unwrap();
        let check = |files: &[String]| {
            let out = Command::new(&python)
                .arg(repo_root().join("tests/check_schema.py"))
                .arg(&schema)
                .args(files)
                .output()
                .unwrap();
            assert!(out.status.success(), "{out:?}");
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        let said = check(&files);
        assert!(
            said.ends_with(&format!("{} files, 0 invalid\n", files.len())),
            "draft {draft}:\n{said}"
        );
        let said = check(&[bad.display().to_string()]);
        assert!(said.contains("partitons"), "draft {draft}:\n{said}");
        assert!(
            said.contains("execution/batch_size"),
            "draft {draft}:\n{said}"
        );
        assert!(
            said.ends_with("1 files, 1 invalid\n"),
            "draft {draft}:\n{said}"
        );
    }
}

/// `--log-format json`: every line a log shipper reads is one JSON object (the command's own
/// warnings and notices too); the run's first line names the pipeline, the sink, the plugins and
/// the limits.
#[tokio::test(flavor = "multi_thread")]
async fn json_logs_are_one_object_per_line_and_the_start_line_names_the_run() {
    let (server, case) = served(
        5,
        "/items/{id}",
        "execution: {concurrency_limit: 3, batch_size: 2}\nmiddleware:\n  - type: timing\n",
    )
    .await;
    // A key with no effect (a warning the command prints before logging starts) and a metrics
    // address (the line saying where they are served): those lines are JSON too.
    let file = case.dir.path().join("p.yaml");
    let text = std::fs::read_to_string(&file).unwrap().replace(
        "{source_column: name}",
        "{source_column: name, transform: upper}",
    );
    std::fs::write(&file, text).unwrap();
    let metrics = format!("127.0.0.1:{}", free_port());
    let out = sparkwasm(case.dir.path())
        .args([
            "--log-format",
            "json",
            "run",
            "p.yaml",
            "--metrics-addr",
            &metrics,
        ])
        .env("RUST_LOG", "sparkwasm=info")
        .output()
        .unwrap();
    assert_exit(&out, 0);
    assert_eq!(server.counters.row_requests.load(Ordering::SeqCst), 5);
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stderr)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let said = |level: &str, part: &str| {
        lines.iter().any(|l| {
            l["level"] == level && l["fields"]["message"].as_str().unwrap_or("").contains(part)
        })
    };
    assert!(said("WARN", "transform: has no effect"), "{lines:#?}");
    assert!(
        said("INFO", &format!("metrics at http://{metrics}/metrics")),
        "{lines:#?}"
    );
    let start = lines
        .iter()
        .find(|l| l["fields"]["message"] == "run starts")
        .expect("a start line");
    assert_eq!(start["fields"]["pipeline"], "e2e");
    assert_eq!(start["fields"]["concurrency_limit"], 3);
    assert_eq!(start["fields"]["batch_size"], 2);
    assert!(
        start["fields"]["sink"]
            .as_str()
            .unwrap()
            .ends_with("out/bronze"),
        "{start}"
    );
    assert!(
        start["fields"]["plugins"]
            .as_str()
            .unwrap()
            .contains("timing"),
        "{start}"
    );
    // The error that stops a run is one JSON object too.
    let out = sparkwasm(case.dir.path())
        .args(["--log-format", "json", "run", "missing.yaml"])
        .output()
        .unwrap();
    assert_exit(&out, 1);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let error: serde_json::Value = serde_json::from_str(stderr.trim())
        .unwrap_or_else(|e| panic!("not one JSON object ({e}): {stderr}"));
    assert_eq!(error["level"], "ERROR", "{error}");
    assert!(
        error["fields"]["message"]
            .as_str()
            .unwrap()
            .contains("missing.yaml"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_grafana_dashboard_queries_only_metrics_a_run_exports() {
    // The exposition a run serves, scraped here while it runs; tests/check_dashboard.py then finds
    // every metric of docs/grafana/sparkwasm-dashboard.json's queries in it.
    let Ok(python) = std::env::var("SPARKWASM_PYTHON") else {
        skip_allowed("SPARKWASM_PYTHON");
        return;
    };
    let server = ApiServer::start(0).await.unwrap();
    let metrics = format!("127.0.0.1:{}", free_port());
    let case = Case::new(
        200,
        &pipeline(
            &server.url(),
            "/slow/20/{id}",
            // The file's `metrics` section this time (the other test gives --metrics-addr).
            &format!(
                "execution: {{concurrency_limit: 4, batch_size: 50}}\nmetrics: {{addr: \"{metrics}\", hold_seconds: 2}}\n"
            ),
        ),
    );
    let mut child = sparkwasm(case.dir.path())
        .args(["run", "p.yaml"])
        .spawn()
        .unwrap();
    let mut exposition = String::new();
    while child.try_wait().unwrap().is_none() {
        // The server goes away when the run ends: a refused or cut scrape is skipped.
        if let Some((head, body)) = try_http_get(&metrics, "/metrics", &[])
            && head.contains(" 200 ")
        {
            exposition = String::from_utf8(body).unwrap();
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(child.wait().unwrap().success());
    assert!(
        exposition.contains("sparkwasm_rows_landed_total 200"),
        "{exposition}"
    );
    let file = case.dir.path().join("metrics.txt");
    std::fs::write(&file, &exposition).unwrap();
    let out = Command::new(python)
        .arg(repo_root().join("tests/check_dashboard.py"))
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dry_run_shows_each_request_as_the_chain_and_auth_leave_it_and_sends_nothing() {
    // The editor fixture adds a header; OAuth2 would fetch a token from the same server. The dry
    // run shows three requests with the header and a placeholder credential, and the server sees
    // nothing: neither the rows' requests nor the token request.
    let server = ApiServer::start(0).await.unwrap();
    let editor = Path::new(env!("SPARKWASM_PLUGIN_DIR")).join("editor.wasm");
    let s = server.counters.auth.settings.lock().unwrap().clone();
    let extra = format!(
        "middleware:\n  - {{type: wasm, name: editor, path: \"{}\", sha256: \"{}\"}}\nauth:\n  type: oauth2_client_credentials\n  token_url: {}/oauth/token\n  client_id: {}\n  client_secret: {}\n",
        editor.display(),
        sha256_of(&editor),
        server.url(),
        s.client_id,
        s.client_secret
    );
    let case = Case::new(10, &pipeline(&server.url(), "/items/{id}", &extra));
    let out = sparkwasm(case.dir.path())
        .args(["run", "p.yaml", "--dry-run", "3"])
        .env("RUST_LOG", "debug")
        .output()
        .unwrap();
    assert_exit(&out, 0);
    let stdout = String::from_utf8_lossy(&out.stdout);
    for id in 0..3 {
        let line = format!("row {id}\n  GET {}/items/{id}?name=", server.url());
        assert!(stdout.contains(&line), "{line} in\n{stdout}");
    }
    assert!(!stdout.contains("row 3"), "{stdout}");
    assert_eq!(stdout.matches("\n  x-edited: v1\n").count(), 3, "{stdout}");
    assert_eq!(
        stdout.matches("\n  authorization: ***\n").count(),
        3,
        "{stdout}"
    );
    let everything = format!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(!everything.contains(&s.client_secret));
    assert_eq!(server.counters.requests.load(Ordering::SeqCst), 0);
    assert!(!case.bronze().exists());
}

#[test]
fn with_json_logs_a_usage_error_and_a_panic_are_json_lines_too() {
    let dir = tempfile::tempdir().unwrap();
    let json_lines = |stderr: &[u8]| -> Vec<serde_json::Value> {
        String::from_utf8_lossy(stderr)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
            .collect()
    };
    // A flag the parser does not know: one ERROR object naming it, clap's exit status.
    let out = sparkwasm(dir.path())
        .args(["--log-format", "json", "run", "p.yaml", "--no-such-flag"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let lines = json_lines(&out.stderr);
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert_eq!(lines[0]["level"], "ERROR");
    let message = lines[0]["fields"]["message"].as_str().unwrap();
    assert!(message.contains("--no-such-flag"), "{message}");
    // A panic (a test hook raises one): its message as one ERROR object; the process still ends
    // as a panic does.
    let out = sparkwasm(dir.path())
        .args(["--log-format=json", "run", "p.yaml"])
        .env("SPARKWASM_TEST_PANIC", "1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(101), "{out:?}");
    let lines = json_lines(&out.stderr);
    assert!(
        lines.iter().any(|l| l["level"] == "ERROR"
            && l["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("panic: ") && m.contains("SPARKWASM_TEST_PANIC"))),
        "{lines:#?}"
    );
    // Without JSON, the usage error is clap's own text; --help is help, on stdout.
    let out = sparkwasm(dir.path())
        .args(["run", "p.yaml", "--no-such-flag"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("error: unexpected argument"));
    let out = sparkwasm(dir.path())
        .args(["--log-format", "json", "--help"])
        .output()
        .unwrap();
    assert_exit(&out, 0);
    assert!(String::from_utf8_lossy(&out.stdout).contains("Usage: sparkwasm"));
}
