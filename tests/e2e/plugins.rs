//! WASM plugins end to end: the legacy middleware list against a flaky server, hostile guests contained
//! row by row, plugins that cannot load stopping the run before any request, the compile cache.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use testkit::ApiServer;

use crate::support::{
    Case, assert_exit, pipeline, read_bronze, served, sha256_of, skip_allowed, sparkwasm,
};

/// A guest built by host/build.rs from plugins/ (fixtures included).
fn guest(file: &str) -> PathBuf {
    Path::new(env!("SPARKWASM_PLUGIN_DIR")).join(file)
}

/// A JSON column of a bronze row (metadata, headers, an echoed body), parsed.
fn json(column: &Option<String>) -> serde_json::Value {
    serde_json::from_str(column.as_deref().unwrap()).unwrap()
}

/// A `middleware:` block with one custom plugin from `file`, its config given inline.
fn custom(file: &Path, config: &str, limits: &str) -> String {
    format!(
        "middleware:\n  - type: wasm\n    name: guest\n    path: {}\n    sha256: \"{}\"\n    config: {config}\n    limits: {limits}\n",
        file.display(),
        sha256_of(file)
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_legacy_middleware_list_recovers_from_a_flaky_endpoint() {
    // Every row's first attempt fails: a 503, a 429 with Retry-After: 1, or a dropped connection.
    let middleware = "middleware:\n  - type: retry\n    max_attempts: 4\n    base_delay: 0.01\n    max_delay: 2\n  - type: logging\n  - type: timing\n  - type: json_body\n  - type: worker_identity\n";
    let (server, case) = served(
        90,
        "/flaky/{id}",
        &format!("execution: {{concurrency_limit: 30, partitions: 2}}\n{middleware}"),
    )
    .await;
    server.counters.keep_arrivals();
    let out = case.run();
    assert_exit(&out, 0);
    let rows = read_bronze(&case.bronze());
    assert_eq!(rows.len(), 90);
    // Retry-After honoured, as the server saw it: the rows answered 429 with `Retry-After: 1` (ids
    // 1, 4, 7, ...) came back at least a second later; the others (backoff of at most 10 ms) did not
    // wait a second.
    let arrivals = server.counters.arrivals();
    for id in 0..90u32 {
        let target = format!("/flaky/{id}?");
        let at: Vec<Instant> = arrivals
            .iter()
            .filter(|a| a.target.starts_with(&target))
            .map(|a| a.at)
            .collect();
        assert_eq!(at.len(), 2, "row {id}");
        let gap = at[1] - at[0];
        if id % 3 == 1 {
            assert!(
                gap >= Duration::from_secs(1),
                "row {id}: resent after {gap:?}"
            );
        } else {
            assert!(
                gap < Duration::from_secs(1),
                "row {id}: resent after {gap:?}"
            );
        }
    }
    for row in &rows {
        assert!(row.success, "{row:?}", row = row.error_message);
        assert_eq!(row.attempts, 2, "row {}", row.request_id);
        let meta = json(&row.response_metadata);
        assert_eq!(meta["retry.attempts"], "2", "{meta}");
        assert_eq!(meta["json_valid"], "true", "{meta}");
        let elapsed: f64 = meta["elapsed_ms"].as_str().unwrap().parse().unwrap();
        assert!(elapsed > 0.0);
        // worker_identity's header reached the server, and its metadata the table.
        let body = json(&row.body_text);
        let sent = body["headers"]["x-worker-id"].as_str().unwrap();
        let request_meta = json(&row.request_metadata);
        assert_eq!(request_meta["worker_id"], sent);
        assert!(sent.contains("/p") && sent.contains("-c"), "{sent}");
    }
    // 90 first attempts + 90 retries (warm-up HEADs aside).
    assert_eq!(server.counters.row_requests.load(Ordering::SeqCst), 180);
}

#[tokio::test(flavor = "multi_thread")]
async fn plugins_nested_inside_each_other_do_not_multiply_max_requests() {
    // retry (10 attempts) around two editors that each ask for one resend after a 503: counted
    // per plugin alone, each of the retry's attempts became 4 requests, 40 per row.
    let editor = guest("editor.wasm");
    let entry = |name: &str| {
        format!(
            "  - {{type: wasm, name: {name}, path: {}, sha256: \"{}\"}}\n",
            editor.display(),
            sha256_of(&editor)
        )
    };
    let middleware = format!(
        "middleware:\n  - {{type: retry, max_attempts: 10, base_delay: 0.001, max_delay: 0.001}}\n{}{}",
        entry("ed"),
        entry("ed2")
    );
    let (server, case) = served(4, "/status/503/{id}", &middleware).await;
    assert_exit(&case.run(), 2);
    // From the server's side: 10 requests per row, the retry's limit, not 40.
    assert_eq!(server.counters.row_requests.load(Ordering::SeqCst), 40);
    let rows = read_bronze(&case.bronze());
    assert_eq!(rows.len(), 4);
    for row in &rows {
        assert_eq!(row.attempts, 10, "{:?}", row.error_message);
        assert!(!row.success);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plugin_edits_requests_and_responses_through_handles_and_resends() {
    // editor (plugins/fixtures/editor) behind the built-in timing and the passthrough fixture. It
    // marks each request, asks for a resend after the flaky endpoint's 503 or 429 (the host sends
    // its request through the inner layers again), notes the status it saw, and marks its request
    // once more after the last response, which must not reach the record of what was sent.
    let (editor, passthrough) = (guest("editor.wasm"), guest("passthrough.wasm"));
    let middleware = format!(
        "middleware:\n  - type: timing\n  - {{type: wasm, name: pass, path: {}, sha256: \"{}\"}}\n  - {{type: wasm, name: editor, path: {}, sha256: \"{}\"}}\n",
        passthrough.display(),
        sha256_of(&passthrough),
        editor.display(),
        sha256_of(&editor)
    );
    let (server, case) = served(
        60,
        "/flaky/{id}",
        &format!("execution: {{concurrency_limit: 20}}\n{middleware}"),
    )
    .await;
    let out = case.run();
    // No retry plugin: the rows whose first connection was dropped fail (exit 2).
    assert_exit(&out, 2);
    let rows = read_bronze(&case.bronze());
    assert_eq!(rows.len(), 60);
    let mut resent = 0;
    for row in &rows {
        let id: u64 = row.request_id.parse().unwrap();
        let request_meta = json(&row.request_metadata);
        assert_eq!(request_meta["edited_by"], "editor", "{request_meta}");
        assert!(request_meta["late"].is_null(), "{request_meta}");
        // The flaky endpoint drops the first connection of every third id: no response to edit.
        if id % 3 == 2 {
            assert!(!row.success);
            continue;
        }
        assert!(row.success, "{:?}", row.error_message);
        let meta = json(&row.response_metadata);
        assert!(meta["elapsed_ms"].is_string(), "timing around it: {meta}");
        assert_eq!(meta["seen_status"], "200", "{meta}");
        assert_eq!(request_meta["resent"], "true", "{request_meta}");
        assert_eq!(row.attempts, 2);
        resent += 1;
        // The header it set reached the server (the echo) and the request_headers column.
        let body = json(&row.body_text);
        assert_eq!(body["headers"]["x-edited"], "v1", "{body}");
        assert!(
            row.request_headers
                .as_deref()
                .unwrap()
                .contains(r#""x-edited":"v1""#)
        );
    }
    assert_eq!(resent, 40);
    // 60 first attempts, and one resend for each of the 40 rows answered 503 or 429.
    assert_eq!(server.counters.row_requests.load(Ordering::SeqCst), 100);
    // A DELETE is answered by the plugin itself (a response it made): nothing reaches the server.
    let before = server.counters.row_requests.load(Ordering::SeqCst);
    let case = Case::new(
        10,
        &(pipeline(&server.url(), "/echo/{id}", "").replace("method: GET", "method: DELETE")
            + &middleware),
    );
    assert_exit(&case.run(), 0);
    let rows = read_bronze(&case.bronze());
    assert_eq!(rows.len(), 10);
    assert!(rows.iter().all(|r| {
        r.success
            && r.status_code == Some(204)
            && r.attempts == 0
            && r.response_metadata
                .as_deref()
                .unwrap()
                .contains(r#""answered_by":"editor""#)
    }));
    assert_eq!(server.counters.row_requests.load(Ordering::SeqCst), before);
}

#[tokio::test(flavor = "multi_thread")]
async fn retry_gives_up_after_max_attempts_and_says_so() {
    let (server, case) = served(
        4,
        "/drop/{id}",
        "transport: {warmup_timeout: 0.5}\nmiddleware:\n  - type: retry\n    max_attempts: 3\n    base_delay: 0.01\n  - type: transport_diagnostics\n",
    )
    .await;
    let out = case.run();
    assert_exit(&out, 2);
    for row in read_bronze(&case.bronze()) {
        let err = row.error_message.unwrap();
        assert_eq!(row.attempts, 3, "the retry plugin's own max_attempts");
        assert!(
            err.contains("connection closed before a complete response")
                && err.contains("[reset after")
                && err.contains("(after 3 attempts)")
                && err.starts_with("plugin `retry`:"),
            "{err}"
        );
    }
    assert_eq!(server.counters.row_requests.load(Ordering::SeqCst), 12);
}

/// The ways `plugins/fixtures/hostile` attacks, with its config, its limits and what the row's
/// error must say.
const ATTACKS: [(&str, &str, &str, &str); 13] = [
    (
        "spin",
        "{}",
        "{timeout_ms: 200}",
        "ran past its deadline of 200 ms in on-request",
    ),
    (
        "grow",
        "{}",
        "{memory_mb: 16}",
        "out of memory in on-request: its cap is 16 MiB",
    ),
    ("trap", "{}", "{}", "hostile plugin panics on purpose"),
    // A hook runs first on the worker's own stack: the guest's stack limit holds there too.
    (
        "recurse",
        "{}",
        "{}",
        "trapped in on-request: wasm trap: call stack exhausted",
    ),
    (
        "bad-result",
        "{}",
        "{}",
        "returned a malformed result from on-request: invalid utf-8",
    ),
    ("file", "{}", "{}", "file denied"),
    ("env", "{}", "{}", "env empty"),
    ("clock", "{}", "{}", "clock frozen at 0"),
    (
        "block",
        "{}",
        "{timeout_ms: 200}",
        "blocked in on-request for more than 5.2 s",
    ),
    (
        "crlf",
        "{}",
        "{}",
        "broke a rule in on-request: set-header x-note: the value has a character HTTP does not allow",
    ),
    (
        "big-body",
        "{bytes: 5000}",
        "{max_body_bytes: 1000}",
        "broke a rule in on-request: response: a body of 5000 bytes is over its limits.max_body_bytes (1000)",
    ),
    (
        "resend-forever",
        "{}",
        "{max_requests: 3}",
        "asked to send the row's request more than 3 times (limits.max_requests)",
    ),
    (
        "rewrite",
        "{target: \"http://127.0.0.1:9\"}",
        "{}",
        "sent the request to http://127.0.0.1:9, which is neither the endpoint's origin",
    ),
];

/// `config` for the hostile fixture in `mode`, with `extra` keys (a flow mapping's inside).
fn attack(mode: &str, extra: &str) -> String {
    let extra = extra.trim_matches(['{', '}']);
    if extra.is_empty() {
        format!("{{mode: {mode}}}")
    } else {
        format!("{{mode: {mode}, {extra}}}")
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_plugins_fail_their_rows_and_the_run_goes_on() {
    let server = ApiServer::start(0).await.unwrap();
    let trap_door = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    trap_door.set_nonblocking(true).unwrap();
    let door = trap_door.local_addr().unwrap();
    let hostile = guest("hostile.wasm");
    let socket = format!("{{target: \"{door}\"}}");
    let cases = ATTACKS
        .iter()
        .map(|&(mode, extra, limits, expected)| (mode, extra.to_owned(), limits, expected))
        .chain([("socket", socket, "{}", "socket denied")]);
    for (mode, extra, limits, expected) in cases {
        let yaml = pipeline(&server.url(), "/echo/{id}", "")
            + &custom(&hostile, &attack(mode, &extra), limits);
        let case = Case::new(3, &yaml);
        let out = case.run();
        assert_exit(&out, 2);
        let rows = read_bronze(&case.bronze());
        assert_eq!(rows.len(), 3, "{mode}: every row is recorded");
        for row in rows {
            let err = row.error_message.unwrap_or_default();
            assert!(!row.success, "{mode}");
            assert!(
                err.starts_with("plugin `guest`: ") && err.contains(expected),
                "{mode}: error_message was {err:?}"
            );
            assert!(!err.contains("ESCAPED"), "{mode}: {err}");
        }
    }
    assert!(
        trap_door.accept().is_err(),
        "a plugin reached a socket it was not granted"
    );
    // Only resend-forever lets requests out: 3 rows, 3 sends each.
    assert_eq!(server.counters.row_requests.load(Ordering::SeqCst), 9);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hostile_plugin_among_healthy_rows_fails_exactly_its_rows() {
    // Every 10th row is attacked, 200 rows, two consumers: each failure forces the next row onto
    // another instance (or a fresh one after a trap), and the healthy rows around it must land.
    let server = ApiServer::start(0).await.unwrap();
    let hostile = guest("hostile.wasm");
    for &(mode, extra, limits, expected) in &ATTACKS {
        if mode == "block" {
            continue; // 20 rows × 5 s of watchdog: its containment is shown above
        }
        let every = match extra.trim_matches(['{', '}']) {
            "" => "every: 10".to_owned(),
            keys => format!("{keys}, every: 10"),
        };
        let yaml = pipeline(
            &server.url(),
            "/echo/{id}",
            "execution: {partitions: 1, concurrency_limit: 2}\n",
        ) + &custom(&hostile, &attack(mode, &every), limits);
        let case = Case::new(200, &yaml);
        let out = case.run();
        assert_exit(&out, 2);
        let rows = read_bronze(&case.bronze());
        assert_eq!(rows.len(), 200, "{mode}");
        let mut instances = std::collections::HashSet::new();
        for row in &rows {
            let id: u64 = row.request_id.parse().unwrap();
            if id.is_multiple_of(10) {
                let err = row.error_message.as_deref().unwrap_or_default();
                assert!(!row.success, "{mode}: row {id}");
                assert!(
                    err.starts_with("plugin `guest`: ") && err.contains(expected),
                    "{mode}: {err}"
                );
            } else {
                assert!(row.success, "{mode}: row {id}: {:?}", row.error_message);
                instances.insert(
                    json(&row.response_metadata)["instance"]
                        .as_str()
                        .unwrap()
                        .to_owned(),
                );
            }
        }
        // A guest that trapped is replaced by a fresh instance; one that only broke a rule or
        // returned an error is reused. Either way a few instances serve the run, not one per row.
        let trapped = matches!(mode, "spin" | "grow" | "trap" | "bad-result" | "recurse");
        if trapped {
            assert!(
                instances.len() > 1,
                "{mode}: trapped instances were reused: {instances:?}"
            );
        }
        assert!(
            instances.len() <= 25,
            "{mode}: {} instances",
            instances.len()
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_spinning_plugin_does_not_starve_the_healthy_rows_on_its_worker() {
    // Row 0 spins for its whole 4 s deadline on the only worker thread; the other consumer's 99
    // healthy rows must be answered meanwhile (a guest yields its thread every tick), not after.
    let (server, case) = served(
        100,
        "/echo/{id}",
        &format!(
            "execution: {{partitions: 1, concurrency_limit: 2}}\n{}",
            custom(
                &guest("hostile.wasm"),
                "{mode: spin, every: 1000}",
                "{timeout_ms: 4000}"
            )
        ),
    )
    .await;
    let started = Instant::now();
    let mut child = case.spawn();
    let deadline = started + Duration::from_secs(60);
    while server.counters.row_requests.load(Ordering::SeqCst) < 99 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let healthy_done = started.elapsed();
    let status = child.wait().unwrap();
    let spinner_done = started.elapsed();
    assert_eq!(status.code(), Some(2));
    // The run ends when the spinner's 4 s deadline stops it: the healthy rows were all answered
    // well before that (a starved worker would answer them only once the spinner is stopped).
    // Measured against the run's own end, not a fixed time, so a loaded machine does not matter.
    assert!(
        healthy_done + Duration::from_secs(1) < spinner_done,
        "the healthy rows took {healthy_done:?}, the spinner ended at {spinner_done:?}: they waited for it"
    );
    let rows = read_bronze(&case.bronze());
    assert_eq!(rows.iter().filter(|r| r.success).count(), 99);
    assert!(rows.iter().any(|r| {
        r.request_id == "0"
            && r.error_message
                .as_deref()
                .unwrap_or_default()
                .contains("ran past its deadline of 4000 ms")
    }));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hook_preempted_on_the_workers_stack_runs_again_and_its_edits_count_once() {
    // A hook is first called on the worker's own stack. slow-edit edits the response's metadata,
    // its note on the row and the log, then computes for 30 ms: past its slice, so the call is
    // preempted and the hook runs again from its start on a fiber. What the first run changed must
    // be gone: every row shows each edit once (`+`, never `++`), and the log one line per row.
    // The same in on-request, whose edits are to the row's request.
    for hook in ["response", "request"] {
        let (_server, case) = served(
            6,
            "/echo/{id}",
            &format!(
                "execution: {{partitions: 1, concurrency_limit: 2}}\n{}",
                custom(
                    &guest("hostile.wasm"),
                    &format!("{{mode: slow-edit, ms: 30, hook: {hook}}}"),
                    "{}"
                )
            ),
        )
        .await;
        let out = case.run();
        assert_exit(&out, 0);
        let rows = read_bronze(&case.bronze());
        assert_eq!(rows.len(), 6);
        for row in &rows {
            let id = &row.request_id;
            if hook == "response" {
                let meta = json(&row.response_metadata);
                assert_eq!(meta["edits"], "+", "row {id}: {meta}");
                assert_eq!(meta["note"], "1+", "row {id}: {meta}");
            } else {
                let meta = json(&row.request_metadata);
                assert_eq!(meta["edits"], "+", "row {id}: {meta}");
            }
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            stderr.matches("slow-edit http").count(),
            6,
            "{hook}: {stderr}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn rows_in_flight_share_a_few_instances_of_each_plugin() {
    // 400 rows, 200 in flight at once against an endpoint that answers after a second: the plugin's
    // instances are held only while a hook runs, so a few per worker thread serve them all (the 0.2
    // contract held one per row in flight: 200 here, 4,000 at the legacy default).
    let (server, case) = served(
        400,
        "/slow/1000/{id}",
        &format!(
            "execution: {{partitions: 2, concurrency_limit: 100}}\ntransport: {{tcp_connection: {{limit: 0}}}}\n{}",
            custom(&guest("hostile.wasm"), "{mode: pass}", "{}")
        ),
    )
    .await;
    let out = case.run();
    assert_exit(&out, 0);
    let rows = read_bronze(&case.bronze());
    assert_eq!(rows.len(), 400);
    let instances: std::collections::HashSet<String> = rows
        .iter()
        .map(|r| {
            json(&r.response_metadata)["instance"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    // Two worker threads × at most 4 instances each, plus the one made at load.
    assert!(
        instances.len() <= 9,
        "{} instances served 400 rows",
        instances.len()
    );
    // And the rows really were in flight together: the server held at least 150 at once.
    let most = server.counters.max_active.load(Ordering::SeqCst);
    assert!(most >= 150, "only {most} requests were in flight at once");
}

#[tokio::test(flavor = "multi_thread")]
async fn plugins_that_cannot_load_stop_the_run_before_any_request() {
    let server = ApiServer::start(0).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let not_wasm = dir.path().join("not.wasm");
    std::fs::write(&not_wasm, "this is not a component").unwrap();
    let hostile = guest("hostile.wasm");
    let tampered = custom(&hostile, "{mode: spin}", "{}").replace(
        &sha256_of(&hostile),
        "0000000000000000000000000000000000000000000000000000000000000000",
    );
    let cases = [
        (tampered, "does not match its sha256: expected 0000"),
        (
            custom(&guest("wrong_contract.wasm"), "{}", "{}"),
            "is not a plugin of the sparkwasm:plugin/middleware@1.0.0 world (wit/plugin.wit): it does not export sparkwasm:plugin/handler@1.0.0",
        ),
        (
            custom(&guest("auth_hmac.wasm"), "{}", "{}"),
            "is not a plugin of the sparkwasm:plugin/middleware@1.0.0 world",
        ),
        (
            custom(&not_wasm, "{}", "{}"),
            "not a valid WebAssembly component",
        ),
        (
            custom(&hostile, "{mode: init-fails}", "{}"),
            "init refused: this plugin refuses to start",
        ),
        (
            "middleware:\n  - type: retry\n    max_attempts: 0\n".to_owned(),
            "plugin `retry`: init refused: max_attempts must be at least 1",
        ),
    ];
    for (middleware, expected) in cases {
        let case = Case::new(
            5,
            &(pipeline(&server.url(), "/echo/{id}", "") + &middleware),
        );
        let out = case.run();
        assert_exit(&out, 1);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("middleware[0]: plugin `") && stderr.contains(expected),
            "expected {expected:?} in: {stderr}"
        );
        assert!(!case.bronze().exists(), "nothing may be written");
    }
    assert_eq!(server.counters.requests.load(Ordering::SeqCst), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_run_takes_the_plugins_from_the_compile_cache() {
    let (_server, case) = served(
        5,
        "/echo/{id}",
        "middleware:\n  - type: retry\n  - type: timing\n",
    )
    .await;
    let cache = case.dir.path().join("cache");
    let run = || {
        let out = run_with_cache(&case, &cache);
        assert_exit(&out, 0);
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let first = run();
    assert!(first.contains("compiled=true"), "{first}");
    let entries = cached_modules(&cache);
    assert!(entries.len() >= 2, "the cache holds the compiled plugins");
    let second = run();
    assert!(
        second.contains("compiled=false") && !second.contains("compiled=true"),
        "{second}"
    );
    assert_eq!(
        cached_modules(&cache),
        entries,
        "nothing was compiled again"
    );
}

/// Runs the case with its own compile cache folder and the info log (which says whether each plugin
/// was compiled or loaded).
fn run_with_cache(case: &Case, cache: &Path) -> std::process::Output {
    sparkwasm(case.dir.path())
        .args(["run", "p.yaml"])
        .env("SPARKWASM_CACHE_DIR", cache)
        .env("RUST_LOG", "sparkwasm=info")
        .output()
        .unwrap()
}

/// The compiled artifacts in a wasmtime cache folder (not its usage statistics).
fn cached_modules(dir: &Path) -> Vec<(PathBuf, std::time::SystemTime)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_none_or(|x| x != "stats") {
                out.push((p.clone(), e.metadata().unwrap().modified().unwrap()));
            }
        }
    }
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn credential_middleware_is_added_by_the_host_and_never_lands() {
    // `bearer` and `header_auth` entries are credentials the host adds after the chain: the guarded
    // path accepts the real token (so it was sent), no plugin sees it (the `peek` guest records the
    // header names it saw), and the table never holds it, not even under a redacted key.
    let server = ApiServer::start(0).await.unwrap();
    let s = server.counters.auth.settings.lock().unwrap().clone();
    let (_, minted) = server.counters.auth.token(
        Some(&format!(
            "Basic {}",
            base64_encode(&format!("{}:{}", s.client_id, s.client_secret))
        )),
        b"grant_type=client_credentials",
    );
    let token: serde_json::Value = serde_json::from_str(&minted).unwrap();
    let token = token["access_token"].as_str().unwrap().to_owned();
    let middleware = format!(
        "middleware:\n  - type: bearer\n    token: \"{{{{secret.api:token}}}}\"\n  - type: header_auth\n    header: X-Extra-Key\n    value: \"{{{{secret.api:key}}}}\"\n{}",
        custom(&guest("hostile.wasm"), "{mode: peek}", "{}").replace("middleware:\n", "")
    );
    // And an endpoint header named like a credential, written literally: a credential too.
    let case = Case::new(
        3,
        &with_credential(
            pipeline(&server.url(), "/secure/{id}", &middleware),
            "  headers: {X-Api-Key: literal-key-3141592653}\n",
        ),
    );
    let out = sparkwasm(case.dir.path())
        .args(["run", "p.yaml"])
        .env("SPARKWASM_SECRET_API_TOKEN", &token)
        .env("SPARKWASM_SECRET_API_KEY", "key-2718281828")
        .env("RUST_LOG", "debug")
        .output()
        .unwrap();
    assert_exit(&out, 0);
    assert_eq!(server.counters.row_requests.load(Ordering::SeqCst), 3);
    assert_eq!(server.counters.auth.refused.load(Ordering::Relaxed), 0);
    let mut seen = String::from_utf8_lossy(&out.stderr).into_owned();
    seen.push_str(&String::from_utf8_lossy(&out.stdout));
    for row in read_bronze(&case.bronze()) {
        assert!(row.success);
        let headers = json(&row.request_headers);
        assert!(headers.get("authorization").is_none(), "{headers}");
        assert!(headers.get("X-Extra-Key").is_none(), "{headers}");
        assert!(headers.get("X-Api-Key").is_none(), "{headers}");
        let peeked = json(&row.request_metadata)["seen_headers"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(
            !peeked.to_ascii_lowercase().contains("authorization")
                && !peeked.to_ascii_lowercase().contains("x-extra-key")
                && !peeked.to_ascii_lowercase().contains("x-api-key"),
            "a plugin saw a credential header: {peeked}"
        );
        // The echo shows what the server got: the credentials, redacted in the table.
        let body = json(&row.body_text);
        assert_eq!(body["headers"]["authorization"], "***", "{body}");
        assert_eq!(body["headers"]["x-extra-key"], "***", "{body}");
        assert_eq!(body["headers"]["x-api-key"], "***", "{body}");
        seen.push_str(&row.body_text.unwrap());
        seen.push_str(&headers.to_string());
    }
    assert!(
        !seen.contains(&token)
            && !seen.contains("key-2718281828")
            && !seen.contains("literal-key-3141592653"),
        "a secret leaked"
    );
}

fn base64_encode(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// The pipeline's credential for each way it can be given, the guarded path that checks it, and
/// what it looks like on the wire (a header name, or a query parameter).
fn credential_cases(server: &ApiServer) -> Vec<(&'static str, String, &'static str, &'static str)> {
    let s = server.counters.auth.settings.lock().unwrap().clone();
    let (_, minted) = server.counters.auth.token(
        Some(&format!(
            "Basic {}",
            base64_encode(&format!("{}:{}", s.client_id, s.client_secret))
        )),
        b"grant_type=client_credentials",
    );
    let token: serde_json::Value = serde_json::from_str(&minted).unwrap();
    let token = token["access_token"].as_str().unwrap().to_owned();
    vec![
        (
            "basic",
            format!(
                "auth: {{type: basic, username: {}, password: {}}}\n",
                s.username, s.password
            ),
            "/basic/{id}",
            "authorization",
        ),
        (
            "bearer",
            format!("auth: {{type: bearer, token: {token}}}\n"),
            "/secure/{id}",
            "authorization",
        ),
        (
            "api_key header",
            format!("auth: {{type: api_key, api_key: {}}}\n", s.api_key),
            "/apikey/{id}",
            "x-api-key",
        ),
        (
            "api_key query",
            format!(
                "auth: {{type: api_key, api_key: {}, query_param: api_key}}\n",
                s.api_key
            ),
            "/apikey/{id}",
            "api_key=",
        ),
        (
            "oauth2",
            format!(
                "auth:\n  type: oauth2_client_credentials\n  token_url: {}/oauth/token\n  client_id: {}\n  client_secret: {}\n",
                server.url(),
                s.client_id,
                s.client_secret
            ),
            "/secure/{id}",
            "authorization",
        ),
        (
            "bearer middleware",
            format!("middleware:\n  - {{type: bearer, token: {token}}}\n"),
            "/secure/{id}",
            "authorization",
        ),
        (
            "header_auth middleware",
            format!(
                "middleware:\n  - {{type: header_auth, header: X-API-Key, value: {}}}\n",
                s.api_key
            ),
            "/apikey/{id}",
            "x-api-key",
        ),
        // Endpoint headers named like a credential, written literally (or from `{{env.X}}`):
        // credentials too, whatever their source.
        (
            "endpoint header Authorization",
            format!("  headers: {{Authorization: \"Bearer {token}\"}}\n"),
            "/secure/{id}",
            "authorization",
        ),
        (
            "endpoint header X-API-Key",
            format!("  headers: {{X-API-Key: {}}}\n", s.api_key),
            "/apikey/{id}",
            "x-api-key",
        ),
    ]
}

/// `yaml` (from [`pipeline`]) with `credential` in place: endpoint headers (`  headers: ...`) go
/// into the endpoint section, anything else (a section) at the end.
fn with_credential(yaml: String, credential: &str) -> String {
    if credential.starts_with("  headers:") {
        yaml.replacen("\ntables:", &format!("\n{credential}tables:"), 1)
    } else {
        yaml + credential
    }
}

/// Whether a request the server got carries the credential (`on_wire`: a header name, or
/// `name=` for a query parameter).
fn carries(arrival: &testkit::Arrival, on_wire: &str) -> bool {
    match on_wire.strip_suffix('=') {
        Some(param) => arrival.target.contains(&format!("{param}=")),
        None => arrival.headers.iter().any(|(k, _)| k == on_wire),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plugin_that_moves_the_request_elsewhere_never_takes_the_credentials_along() {
    // The attack that broke the old host: a plugin with no grant points every request at another
    // host; the host used to add the pipeline's credential after the chain and send it there. Now,
    // for every way a pipeline gives a credential: without a grant the rows fail before anything is
    // sent; with a grant the requests go there without the credential; with `forward_credentials`
    // they take it.
    let api = ApiServer::start(0).await.unwrap();
    api.counters.keep_arrivals();
    let other = ApiServer::start(0).await.unwrap();
    other.counters.keep_arrivals();
    let hostile = guest("hostile.wasm");
    let target = format!("{{target: \"{}\"}}", other.url());
    let grant = format!("127.0.0.1:{}", other.addr.port());
    for (what, auth, path, on_wire) in credential_cases(&api) {
        let (credential, chain) = match auth.strip_prefix("middleware:\n") {
            Some(entry) => (String::new(), entry.to_owned()),
            None => (auth.clone(), String::new()),
        };
        let plugin = |grants: &str| {
            let entry =
                custom(&hostile, &attack("rewrite", &target), "{}").replace("middleware:\n", "");
            format!("middleware:\n{chain}{entry}    grants: {grants}\n")
        };
        let pipeline = |path: &str, extra: &str| {
            with_credential(pipeline(&api.url(), path, extra), &credential)
        };
        // No grant: every row fails naming the plugin, the target and the grant; nothing is sent.
        let case = Case::new(5, &pipeline(path, &plugin("{}")));
        let out = case.run();
        assert_exit(&out, 2);
        for row in read_bronze(&case.bronze()) {
            let err = row.error_message.unwrap();
            assert!(
                err.starts_with(&format!("plugin `guest`: sent the request to http://{grant}, which is neither the endpoint's origin"))
                    && err.contains("grants.outbound_hosts"),
                "{what}: {err}"
            );
            assert_eq!(row.attempts, 0, "{what}");
        }
        assert!(
            other.counters.arrivals().is_empty(),
            "{what}: a request reached the other host"
        );
        // Granted: the requests go there, without the pipeline's credential (the other host's
        // guarded path refuses them: exit 2, every row recorded).
        let case = Case::new(
            5,
            &pipeline(path, &plugin(&format!("{{outbound_hosts: [\"{grant}\"]}}"))),
        );
        assert_exit(&case.run(), 2);
        assert!(
            read_bronze(&case.bronze())
                .iter()
                .all(|r| r.status_code == Some(401)),
            "{what}"
        );
        let arrivals = other.counters.arrivals();
        assert_eq!(arrivals.len(), 5, "{what}");
        assert!(
            arrivals.iter().all(|a| !carries(a, on_wire)),
            "{what}: the credential went to a host that is not the endpoint: {arrivals:?}"
        );
        other.counters.arrivals.lock().unwrap().clear();
        // Granted with forward_credentials: they take it along.
        let case = Case::new(
            5,
            &pipeline(
                path,
                &plugin(&format!(
                    "{{outbound_hosts: [\"{grant}\"], forward_credentials: true}}"
                )),
            ),
        );
        let out = case.run();
        assert!(matches!(out.status.code(), Some(0 | 2)), "{what}: {out:?}");
        let arrivals = other.counters.arrivals();
        assert_eq!(arrivals.len(), 5, "{what}");
        assert!(
            arrivals.iter().all(|a| carries(a, on_wire)),
            "{what}: {arrivals:?}"
        );
        other.counters.arrivals.lock().unwrap().clear();
    }
    // The endpoint saw token requests (OAuth2) and nothing else: every row went elsewhere or nowhere.
    let rows_at_api: Vec<_> = api
        .counters
        .arrivals()
        .into_iter()
        .filter(|a| a.target != "/oauth/token")
        .collect();
    assert!(rows_at_api.is_empty(), "{rows_at_api:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn validate_shows_each_plugin_with_its_digest_contract_limits_and_grants() {
    let hostile = guest("hostile.wasm");
    let yaml = pipeline(
        "http://127.0.0.1:9",
        "/echo/{id}",
        "middleware:\n  - type: retry\n    max_attempts: 12\n",
    ) + &custom(&hostile, "{mode: pass}", "{memory_mb: 16, max_requests: 2}")
        .replace("middleware:\n", "")
        + "    grants: {outbound_hosts: [\"mirror.example.com:443\"]}\n";
    let case = Case::new(1, &yaml);
    let out = sparkwasm(case.dir.path())
        .args(["validate", "p.yaml"])
        .output()
        .unwrap();
    assert_exit(&out, 0);
    let text = String::from_utf8_lossy(&out.stdout);
    let retry = sha256_of(&Path::new(env!("SPARKWASM_PLUGIN_DIR")).join("retry.wasm"));
    assert!(
        text.contains("plugin `retry` (built-in, ") && text.contains(&format!("sha256 {retry}, sparkwasm:plugin/middleware@1.0.0, hooks on-response on-error (called on the stack); limits: memory 32 MiB, 1000 ms per call, 12 requests per row")),
        "{text}"
    );
    assert!(
        text.contains(&format!("sha256 {}, sparkwasm:plugin/middleware@1.0.0, hooks on-request on-response (called on the stack); limits: memory 16 MiB, 1000 ms per call, 2 requests per row", sha256_of(&hostile)))
            && text.contains("grants: outbound_hosts [\"mirror.example.com:443\"]"),
        "{text}"
    );
}

/// An example plugin in another language, built by scripts/test.sh (`var` names its .wasm). A
/// test without it fails, unless SPARKWASM_ALLOW_SKIP=1 says skipping is meant.
fn built_example(var: &str) -> Option<PathBuf> {
    let path = std::env::var_os(var).map(PathBuf::from);
    if path.is_none() {
        skip_allowed(&format!(
            "{var} (the example plugin scripts/test.sh builds)"
        ));
    }
    path
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plugin_written_in_python_runs_and_its_second_load_comes_from_the_cache() {
    let Some(wasm) = built_example("SPARKWASM_PYTHON_PLUGIN") else {
        return;
    };
    let server = ApiServer::start(0).await.unwrap();
    let entry = |fields: &str| {
        format!(
            "middleware:\n  - type: retry\n  - type: wasm\n    name: require_fields\n    path: {}\n    sha256: \"{}\"\n    config: {{fields: {fields}}}\n    limits: {{memory_mb: 256}}\n",
            wasm.display(),
            sha256_of(&wasm)
        )
    };
    let cache = tempfile::tempdir().unwrap();
    let run = |case: &Case| run_with_cache(case, cache.path());
    // The echo answers carry method, uri and headers: the check passes.
    let good = Case::new(
        20,
        &(pipeline(&server.url(), "/echo/{id}", "") + &entry("[method, uri]")),
    );
    let out = run(&good);
    assert_exit(&out, 0);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("plugin=require_fields compiled=true"), "{log}");
    for row in read_bronze(&good.bronze()) {
        assert!(row.success);
        assert!(
            row.response_metadata
                .unwrap()
                .contains(r#""checked_by":"python""#)
        );
    }
    // A field the answers lack: every row fails, named by the plugin; the component is not compiled
    // again.
    let bad = Case::new(
        5,
        &(pipeline(&server.url(), "/echo/{id}", "") + &entry("[method, customer_tier]")),
    );
    let out = run(&bad);
    assert_exit(&out, 2);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        log.contains("plugin=require_fields compiled=false"),
        "{log}"
    );
    for row in read_bronze(&bad.bronze()) {
        assert_eq!(
            row.error_message.as_deref(),
            Some("plugin `require_fields`: answer lacks customer_tier")
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plugin_written_in_javascript_runs_end_to_end() {
    let Some(wasm) = built_example("SPARKWASM_JS_PLUGIN") else {
        return;
    };
    let (_server, case) = served(
        20,
        "/echo/{id}",
        &format!(
            "middleware:\n  - type: wasm\n    name: traceparent\n    path: {}\n    sha256: \"{}\"\n    config: {{header: traceparent}}\n    limits: {{memory_mb: 256}}\n",
            wasm.display(),
            sha256_of(&wasm)
        ),
    )
    .await;
    let out = case.run();
    assert_exit(&out, 0);
    let rows = read_bronze(&case.bronze());
    assert_eq!(rows.len(), 20);
    let mut traces = std::collections::HashSet::new();
    for row in &rows {
        assert!(row.success);
        // The header the plugin set reached the server (the echo), and its trace id is the one it
        // noted on the request and copied onto the response.
        let sent = json(&row.body_text)["headers"]["traceparent"]
            .as_str()
            .unwrap()
            .to_owned();
        let parts: Vec<&str> = sent.split('-').collect();
        assert_eq!(
            (parts.len(), parts[0], parts[1].len()),
            (4, "00", 32),
            "{sent}"
        );
        assert_eq!(json(&row.request_metadata)["trace_id"], parts[1]);
        assert_eq!(json(&row.response_metadata)["trace_id"], parts[1]);
        traces.insert(parts[1].to_owned());
    }
    assert_eq!(traces.len(), 20, "each row has its own trace");
}
