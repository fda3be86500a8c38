//! The legacy framework's pipelines and tables, end to end: fixtures in the shapes of its six
//! published examples (tests/legacy/) validated as they are and run against local servers with the
//! rows given at run time; a bronze table the legacy framework created (its string columns, no
//! batch_id) taking new rows exactly once; the outcome rules (failures for good, in-run passes, a
//! response schema); `{{secret...}}` from a Databricks secrets API; the legacy TLS settings.

use std::collections::HashSet;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::Ordering;

use sha2::{Digest, Sha256};
use testkit::ApiServer;

use crate::support::{
    Case, assert_exit, pipeline, read_bronze, repo_root, served, skip_allowed, sparkwasm,
    successes_per_id,
};

/// `run FILE --source rows.parquet --id-column id` (and `extra` arguments) in `dir`.
fn run_with_rows(dir: &Path, file: &str, extra: &[&str]) -> Output {
    sparkwasm(dir)
        .args(["run", file, "--source", "rows.parquet", "--id-column", "id"])
        .args(extra)
        .output()
        .unwrap()
}

/// The fixture `name` with its hosts pointed at `server` (and its guarded paths at testkit's).
fn fixture_for(name: &str, server: &ApiServer, token: &str) -> String {
    let text = std::fs::read_to_string(repo_root().join("tests/legacy").join(name)).unwrap();
    text.replace(
        "http://keycloak:8080/realms/distributed-etl/protocol/openid-connect/token",
        &format!("{}/oauth/token", server.url()),
    )
    .replace("/api/basic/", "/basic/api/")
    .replace("/api/bearer/", "/secure/api/")
    .replace("/api/oauth2/", "/secure/api/")
    .replace("http://mock-api:8000", &server.url())
    .replace(
        "https://naas.example.dev/no",
        &format!("{}/naas/no", server.url()),
    )
    .replace("https://naas.example.dev/", &format!("{}/", server.url()))
    .replace("my-static-api-key-12345", token)
}

#[test]
fn the_legacy_example_shapes_validate_as_they_are() {
    let root = repo_root();
    for entry in std::fs::read_dir(root.join("tests/legacy")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "yml") {
            continue;
        }
        let out = sparkwasm(&root)
            .arg("validate")
            .arg(&path)
            .output()
            .unwrap();
        assert_exit(&out, 0);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.contains("no tables.source: give the rows at run time with --source"),
            "{stdout}"
        );
        // The only warning: a plain-http token URL off loopback (the OAuth2 examples).
        let stderr = String::from_utf8_lossy(&out.stderr);
        for line in stderr.lines().filter(|l| l.starts_with("warning:")) {
            assert!(
                line.contains("auth.token_url: plain http to keycloak"),
                "{}: {line}",
                path.display()
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_legacy_example_shapes_land_every_row_against_local_servers() {
    for name in [
        "basic_auth.yml",
        "bearer_token.yml",
        "noauth.yml",
        "naas.yml",
        "oauth2_client_credentials.yml",
        "oauth2_password.yml",
    ] {
        let server = ApiServer::start(0).await.unwrap();
        // The credentials the fixtures carry are the ones this server takes.
        server.counters.auth.configure(|s| {
            s.username = "etl-service".into();
            s.password = "etl-password".into();
            s.client_id = "etl-client".into();
            s.client_secret = "etl-client-secret".into();
        });
        if name == "basic_auth.yml" {
            server.counters.auth.configure(|s| {
                s.username = "test-user".into();
                s.password = "test-password".into();
            });
        }
        let (_, minted) = server.counters.auth.token(
            Some(&format!(
                "Basic {}",
                base64_encode("etl-client:etl-client-secret")
            )),
            b"grant_type=client_credentials",
        );
        let token: serde_json::Value = serde_json::from_str(&minted).unwrap();
        let token = token["access_token"].as_str().unwrap().to_owned();
        let minted = server.counters.auth.token_requests.load(Ordering::SeqCst);
        let case = Case::new(100, "");
        std::fs::write(
            case.dir.path().join("legacy.yml"),
            fixture_for(name, &server, &token),
        )
        .unwrap();
        server.counters.keep_arrivals();
        let out = run_with_rows(case.dir.path(), "legacy.yml", &[]);
        assert_exit(&out, 0);
        // The full URL in url_path is the request URL (appended to base_url it would be
        // /http://...): the server saw the fixture's path, with no query (no column_mappings).
        let path = match name {
            "basic_auth.yml" => "/basic/api/data",
            "noauth.yml" => "/api/noauth/data",
            "naas.yml" => "/naas/no",
            _ => "/secure/api/",
        };
        for a in server.counters.arrivals() {
            if a.target != "/oauth/token" {
                assert!(
                    a.target.starts_with(path) && !a.target.contains("://"),
                    "{name}: {}",
                    a.target
                );
            }
        }
        // Guarded paths took every request: the credential was sent, and right.
        assert_eq!(
            server.counters.auth.refused.load(Ordering::SeqCst),
            0,
            "{name}"
        );
        // The token requests (OAuth2) are not a row's.
        let tokens = server.counters.auth.token_requests.load(Ordering::SeqCst) - minted;
        assert_eq!(
            server.counters.row_requests.load(Ordering::SeqCst) - tokens,
            100,
            "{name}"
        );
        if name.starts_with("oauth2") {
            assert!(
                tokens >= 1,
                "{name}: the token came from the token endpoint"
            );
        }
        // tcp_connection.limit 2 is per partition, as in the legacy framework: 5 partitions, 10.
        let most = server.counters.max_open_connections.load(Ordering::SeqCst);
        assert!(most <= 10, "{name}: {most} connections open at once");
        let sink = fixture_sink(name);
        let rows = read_bronze(&case.dir.path().join(sink));
        assert_eq!(successes_per_id(&rows).len(), 100, "{name}");
        for row in &rows {
            // The legacy table's columns, with the legacy meanings.
            let body = row.body_text.as_deref().unwrap();
            assert_eq!(
                row.row_hash.as_deref(),
                Some(format!("{:x}", Sha256::digest(body.as_bytes())).as_str()),
                "{name}: row_hash is the SHA-256 of the body"
            );
            let meta: serde_json::Value =
                serde_json::from_str(row.request_metadata.as_deref().unwrap()).unwrap();
            let vendor = if name == "naas.yml" {
                "NaaS"
            } else {
                "mock-api"
            };
            assert_eq!(meta["vendor"], vendor, "{name}");
        }
    }
}

/// Where a fixture's sink lands (no path: ./warehouse/<namespace>/<name>).
fn fixture_sink(name: &str) -> &'static str {
    match name {
        "basic_auth.yml" => "warehouse/demo/basic_auth_demo_response",
        "bearer_token.yml" => "warehouse/demo/bearer_token_demo_response",
        "noauth.yml" => "warehouse/demo/noauth_demo_response",
        "naas.yml" => "warehouse/naas/naas_api_response",
        "oauth2_client_credentials.yml" => "warehouse/demo/oauth2_client_credentials_demo_response",
        _ => "warehouse/demo/oauth2_user_credentials_demo_response",
    }
}

fn base64_encode(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn python() -> Option<String> {
    match std::env::var("SPARKWASM_PYTHON") {
        Ok(p) => Some(p),
        Err(_) => {
            skip_allowed("SPARKWASM_PYTHON (a Python with deltalake, to make a legacy table)");
            None
        }
    }
}

fn legacy_table(python: &str, verb: &str, path: &Path) -> String {
    let out = Command::new(python)
        .arg(repo_root().join("tests/legacy_table.py"))
        .arg(verb)
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "legacy_table.py {verb}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_table_the_legacy_framework_created_takes_new_rows_in_its_own_schema() {
    let Some(python) = python() else { return };
    let server = ApiServer::start(0).await.unwrap();
    let case = Case::new(
        100,
        &pipeline(&server.url(), "/items/{id}", "").replace(
            "sink: {path: out/bronze}",
            "sink: {location: legacy_bronze}",
        ),
    );
    let table = case.dir.path().join("legacy_bronze");
    // 70 rows: 0-49 succeeded, 50-59 got a 503, 60-69 a 404 (which the legacy framework counted as
    // success, as its table says).
    legacy_table(&python, "create", &table);
    server.counters.keep_arrivals();
    assert_exit(&case.run(), 0);
    // Sent: the 503s (retryable) and the ids the table lacks; not the successes.
    let mut sent: Vec<u64> = server
        .counters
        .arrivals()
        .iter()
        .map(|a| {
            let path = a.target.split('?').next().unwrap();
            path.strip_prefix("/items/").unwrap().parse().unwrap()
        })
        .collect();
    sent.sort();
    let expected: Vec<u64> = (50..60).chain(70..100).collect();
    assert_eq!(sent, expected);
    // Read back by the Python deltalake package: its schema unchanged, the new rows in its types.
    let text = legacy_table(&python, "read", &table);
    let (rows, schema) = text.split_once("schema:\n").unwrap();
    assert!(
        !schema.contains("batch_id") && !schema.contains("outcome"),
        "{schema}"
    );
    assert!(schema.contains("status_code: string") && schema.contains("success: string"));
    let rows: Vec<serde_json::Value> = rows
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 110);
    let new: Vec<&serde_json::Value> = rows
        .iter()
        .filter(|r| r["url"].as_str().unwrap().contains("/items/"))
        .collect();
    assert_eq!(new.len(), 40);
    for r in &new {
        assert_eq!(r["status_code"], "200", "{r}");
        assert_eq!(r["success"], "true", "{r}");
        assert_eq!(r["attempts"], "1", "{r}");
    }
    // Exactly once through sparkwasm's own transaction ids in the legacy table's log.
    let txns = crate::support::txn_versions(&table, "sparkwasm/e2e");
    assert_eq!(txns, [1]);
    let before = server.counters.row_requests.load(Ordering::SeqCst);
    assert_exit(&case.run(), 0);
    assert_eq!(server.counters.row_requests.load(Ordering::SeqCst), before);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failure_for_good_is_recorded_once_and_sent_again_only_when_asked() {
    let (server, case) = served(20, "/status/404/{id}", "").await;
    let out = case.run();
    assert_exit(&out, 2);
    let summary = String::from_utf8_lossy(&out.stdout);
    assert!(
        summary.contains("failed    20 (0 to send again, 20 for good)"),
        "{summary}"
    );
    // The next run sends nothing: a 404 is not retried by default.
    let again = case.run();
    assert_exit(&again, 0);
    assert_eq!(server.counters.row_requests.load(Ordering::SeqCst), 20);
    // Unless asked.
    let out = sparkwasm(case.dir.path())
        .args(["run", "p.yaml", "--retry-failed"])
        .output()
        .unwrap();
    assert_exit(&out, 2);
    assert_eq!(server.counters.row_requests.load(Ordering::SeqCst), 40);
    // Rules can say otherwise: 404 is success for this API.
    let (server, case) = served(
        20,
        "/status/404/{id}",
        "execution: {outcomes: {success: [2xx, 404]}}\n",
    )
    .await;
    assert_exit(&case.run(), 0);
    assert_eq!(server.counters.row_requests.load(Ordering::SeqCst), 20);
    let rows = read_bronze(&case.bronze());
    assert!(rows.iter().all(|r| r.success && r.status_code == Some(404)));
}

#[tokio::test(flavor = "multi_thread")]
async fn later_passes_send_again_what_failed_retryably_in_the_same_run() {
    // No retry plugin: every row's first attempt fails (503, 429, or a dropped connection); the
    // second pass (execution.max_attempts: 3) lands them all, and stops there.
    let (server, case) = served(
        60,
        "/flaky/{id}",
        "execution: {max_attempts: 3, concurrency_limit: 10}\n",
    )
    .await;
    let out = case.run();
    assert_exit(&out, 0);
    let summary = String::from_utf8_lossy(&out.stdout);
    assert!(summary.contains("passes    2"), "{summary}");
    assert!(summary.contains("failed    0 "), "{summary}");
    assert_eq!(server.counters.row_requests.load(Ordering::SeqCst), 120);
    let rows = read_bronze(&case.bronze());
    // Each first attempt is recorded too (60 failures), beside its success.
    assert_eq!(rows.len(), 120);
    let per_id = successes_per_id(&rows);
    assert_eq!(per_id.len(), 60);
    assert!(per_id.values().all(|n| *n == 1));
    // With one pass (the default) the failures wait for the next run.
    let (server, case) = served(60, "/flaky/{id}", "").await;
    assert_exit(&case.run(), 2);
    assert_eq!(server.counters.row_requests.load(Ordering::SeqCst), 60);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_body_that_breaks_the_response_schema_fails_its_row_naming_the_pointer() {
    // testkit's echo has method, uri, version, headers, body: no `customer`.
    let schema = "  response_schema: {type: object, required: [method, customer], properties: {method: {const: GET}}}\n";
    let server = ApiServer::start(0).await.unwrap();
    let case = Case::new(
        5,
        &pipeline(&server.url(), "/items/{id}", "").replacen(
            "\ntables:",
            &format!("\n{schema}tables:"),
            1,
        ),
    );
    let out = case.run();
    assert_exit(&out, 2);
    let rows = read_bronze(&case.bronze());
    assert_eq!(rows.len(), 5);
    for row in &rows {
        assert!(!row.success);
        let why = row.error_message.as_deref().unwrap();
        assert!(
            why.starts_with("response_schema: at /: ") && why.contains("customer"),
            "{why}"
        );
    }
    // Failed for good: the next run sends nothing.
    assert_exit(&case.run(), 0);
    assert_eq!(server.counters.row_requests.load(Ordering::SeqCst), 5);
}

#[tokio::test(flavor = "multi_thread")]
async fn secrets_come_from_a_databricks_workspace_when_one_is_named() {
    // testkit emulates the Databricks secrets API (GET /api/2.0/secrets/get, documented shapes):
    // not Databricks itself, which cannot run here.
    let server = ApiServer::start(0).await.unwrap();
    *server.counters.databricks_token.lock().unwrap() = Some("dapi-0xD00D".into());
    let s = server.counters.auth.settings.lock().unwrap().clone();
    server
        .counters
        .databricks_secrets
        .lock()
        .unwrap()
        .insert(("acme".into(), "password".into()), s.password.clone());
    let yaml = pipeline(
        &server.url(),
        "/basic/{id}",
        &format!(
            "auth: {{type: basic, username: {}, password: \"{{{{secret.acme:password}}}}\"}}\n",
            s.username
        ),
    );
    let case = Case::new(10, &yaml);
    let run = |token: &str| {
        sparkwasm(case.dir.path())
            .args(["run", "p.yaml"])
            .env("DATABRICKS_HOST", server.url())
            .env("DATABRICKS_TOKEN", token)
            .env("RUST_LOG", "debug")
            .output()
            .unwrap()
    };
    let out = run("dapi-0xD00D");
    assert_exit(&out, 0);
    assert_eq!(server.counters.auth.refused.load(Ordering::SeqCst), 0);
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!printed.contains(&s.password) && !printed.contains("dapi-0xD00D"));
    // A token the workspace refuses: the run stops before any request, naming the secret, not the
    // token.
    let before = server.counters.row_requests.load(Ordering::SeqCst);
    let out = run("dapi-wrong");
    assert_exit(&out, 1);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "secret acme:password is not set (Databricks secrets API at http://127.0.0.1 answered 401 Unauthorized UNAUTHENTICATED)"
        ),
        "{stderr}"
    );
    assert!(!stderr.contains("dapi-wrong"));
    // One request: the secret lookup; none to the API.
    assert_eq!(
        server.counters.row_requests.load(Ordering::SeqCst),
        before + 1
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_legacy_tls_settings_are_honoured_and_verify_false_is_said_out_loud() {
    let certs = testkit::test_certs();
    let server = ApiServer::start_tls(certs.server.clone()).await.unwrap();
    let dir_case = |tls: &str| {
        let case = Case::new(
            5,
            &pipeline(
                &server.url(),
                "/x/{id}",
                &format!("transport:\n  tcp_connection:\n    limit: 4\n    tls: {tls}\n"),
            ),
        );
        std::fs::write(case.dir.path().join("ca.pem"), &certs.ca_pem).unwrap();
        case
    };
    // ca_bundle: the server's CA is trusted.
    let case = dir_case("{enabled: true, ca_bundle: ca.pem}");
    assert_exit(&case.run(), 0);
    // Without it, the certificate is refused, as before.
    let case = dir_case("{enabled: true}");
    assert_exit(&case.run(), 2);
    // verify: false takes any certificate, and says so on every run.
    let case = dir_case("{enabled: true, verify: false}");
    let out = case.run();
    assert_exit(&out, 0);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("transport.tcp_connection.tls.verify: TLS certificate verification is OFF"),
        "{stderr}"
    );
    // enabled: false (the legacy default): the settings are ignored, as they were, with a warning.
    let case = dir_case("{enabled: false, verify: false}");
    let out = case.run();
    assert_exit(&out, 2);
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("transport.tcp_connection.tls: has no effect without enabled: true")
    );
    let landed: HashSet<String> = read_bronze(&case.bronze())
        .into_iter()
        .map(|r| r.request_id)
        .collect();
    assert_eq!(landed.len(), 5);
}
