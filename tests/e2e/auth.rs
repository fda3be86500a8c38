//! Auth end to end, each strategy against the local API's real token endpoint, key service and guarded
//! paths (testkit::auth): OAuth2 single-flight and renewal, 401 renewal, a token endpoint that is down,
//! answers garbage or breaks mid-run, the static strategies, mTLS, a custom auth plugin and its grant,
//! the four legacy auth examples, and no secret anywhere in the table or the output.

use std::path::Path;
use std::process::Output;
use std::sync::atomic::Ordering;
use std::time::Duration;

use sha2::{Digest, Sha256};
use testkit::ApiServer;
use testkit::auth::{ClientAuth, TokenMode};

use crate::support::{
    Case, assert_exit, bronze_batches, pipeline, read_bronze, repo_root, served, sparkwasm,
};

/// Every string value of every row of the table, and its transaction log: what a secret must not be in.
fn everything_in(table: &Path) -> String {
    use arrow::array::{Array, AsArray};
    let mut text = String::new();
    for batch in bronze_batches(table) {
        for column in batch.columns() {
            if let Some(strings) = column.as_string_opt::<i32>() {
                for i in 0..strings.len() {
                    if strings.is_valid(i) {
                        text.push_str(strings.value(i));
                        text.push('\n');
                    }
                }
            }
        }
    }
    for entry in std::fs::read_dir(table.join("_delta_log")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "json") {
            text.push_str(&std::fs::read_to_string(path).unwrap());
        }
    }
    text
}

/// Fails if any of `secrets` shows up in the table or in what the run printed.
fn assert_no_secret(table: &Path, out: &Output, secrets: &[String]) {
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let stored = if table.join("_delta_log").exists() {
        everything_in(table)
    } else {
        String::new()
    };
    for secret in secrets {
        assert!(
            !printed.contains(secret.as_str()),
            "secret `{secret}` printed:\n{printed}"
        );
        assert!(
            !stored.contains(secret.as_str()),
            "secret `{secret}` stored in the table"
        );
    }
}

/// Everything the test server issued (tokens, signing keys) plus its configured secrets, and the
/// Basic forms (base64 of `user:password`, `client_id:client_secret`) that carry them on the wire.
fn server_secrets(server: &ApiServer) -> Vec<String> {
    let s = server.counters.auth.settings.lock().unwrap().clone();
    let mut all = server.counters.auth.issued.lock().unwrap().clone();
    all.extend([
        base64_encode(&format!("{}:{}", s.username, s.password)),
        base64_encode(&format!("{}:{}", s.client_id, s.client_secret)),
        s.client_secret,
        s.password,
        s.api_key,
    ]);
    all
}

/// Runs `case` with every log line on (RUST_LOG=debug): all of it is scanned for secrets.
fn run(case: &Case) -> Output {
    case.run_logging("debug")
}

fn oauth2(server: &ApiServer, kind: &str, extra: &str) -> String {
    let s = server.counters.auth.settings.lock().unwrap().clone();
    let mut out = format!(
        "auth:\n  type: {kind}\n  token_url: {}/oauth/token\n  client_id: {}\n  client_secret: {}\n  scope: rows.read\n",
        server.url(),
        s.client_id,
        s.client_secret
    );
    if kind == "oauth2_password" {
        out.push_str(&format!(
            "  username: {}\n  password: {}\n",
            s.username, s.password
        ));
    }
    out.push_str(extra);
    out
}

/// A case of `rows` rows calling `url_path` on `server` with OAuth2 of `kind` (`auth_extra`: more
/// auth keys) and the given `execution` section.
fn oauth2_case(
    server: &ApiServer,
    kind: &str,
    auth_extra: &str,
    execution: &str,
    rows: usize,
    url_path: &str,
) -> Case {
    let extra = format!(
        "execution: {execution}\n{}",
        oauth2(server, kind, auth_extra)
    );
    Case::new(rows, &pipeline(&server.url(), url_path, &extra))
}

#[tokio::test(flavor = "multi_thread")]
async fn one_oauth2_token_serves_every_worker_and_is_renewed_before_it_expires() {
    let server = ApiServer::start(0).await.unwrap();
    server.counters.auth.configure(|s| {
        s.token_ttl = Duration::from_secs(3);
        s.announced_ttl = Some(3.0);
    });
    // 200 consumers, 4000 rows of 300 ms each: about 6 s, two to three token lifetimes. Tokens live
    // 3 s and are renewed 1 s before they expire (the margin covers the time between taking the
    // token and the server checking it): one every ~2 s. No connection cap: a request does not
    // wait for a connection with its token in hand.
    let case = oauth2_case(
        &server,
        "oauth2_client_credentials",
        "  refresh_margin: 1\n",
        "{partitions: 2, concurrency_limit: 100, batch_size: 1000}\ntransport: {tcp_connection: {limit: 0}}",
        4000,
        "/secure/slow/300/{id}",
    );
    let started = std::time::Instant::now();
    let out = run(&case);
    let elapsed = started.elapsed().as_secs_f64();
    assert_exit(&out, 0);
    let rows = read_bronze(&case.bronze());
    assert_eq!(rows.len(), 4000);
    assert!(rows.iter().all(|r| r.success));
    // Renewed before expiry, never after: not one request met a dead token (a 401 renewal would
    // have hidden a broken refresh_margin).
    assert_eq!(server.counters.auth.refused.load(Ordering::Relaxed), 0);
    // Renewed at expiry minus the margin, not earlier and not at expiry: successive tokens 2 s
    // apart (1.8 to 2.9), one per lifetime, not one per consumer.
    let issued = server.counters.auth.issued_at.lock().unwrap().clone();
    let gaps: Vec<f64> = issued
        .windows(2)
        .map(|w| (w[1] - w[0]).as_secs_f64())
        .collect();
    assert!(
        gaps.iter().all(|g| *g >= 1.8 && *g <= 2.9),
        "token renewals {gaps:.2?} s apart (a token lives 3 s, renewed 1 s early) over {elapsed:.1} s"
    );
    let tokens = server.counters.auth.token_requests.load(Ordering::Relaxed);
    assert_eq!(tokens as usize, issued.len());
    assert!(
        tokens as f64 <= elapsed / 1.8 + 1.0 && tokens >= 2,
        "{tokens} token requests over {elapsed:.1} s"
    );
    assert_no_secret(&case.bronze(), &out, &server_secrets(&server));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_401_renews_the_token_once_and_sends_the_request_again() {
    let server = ApiServer::start(0).await.unwrap();
    // The endpoint announces an hour but its tokens die after one second, and it wants the client
    // credentials in the form body: only 401s tell that a token is dead.
    server.counters.auth.configure(|s| {
        s.token_ttl = Duration::from_secs(1);
        s.announced_ttl = Some(3600.0);
        s.client_auth = ClientAuth::Body;
    });
    let case = oauth2_case(
        &server,
        "oauth2_password",
        "",
        "{concurrency_limit: 100}",
        1000,
        "/secure/slow/200/{id}",
    );
    let out = run(&case);
    assert_exit(&out, 0);
    let rows = read_bronze(&case.bronze());
    assert_eq!(rows.len(), 1000);
    assert!(rows.iter().all(|r| r.success));
    let refused = server.counters.auth.refused.load(Ordering::Relaxed);
    let renewed = rows
        .iter()
        .filter(|r| {
            r.response_metadata
                .as_deref()
                .is_some_and(|m| m.contains(r#""auth_renewed_after_401":"true""#))
        })
        .count() as u64;
    assert!(refused > 0, "the tokens should have died during the run");
    assert_eq!(
        renewed, refused,
        "each 401 is answered by one renewal and one resend"
    );
    let issued = server.counters.auth.tokens_issued.load(Ordering::Relaxed);
    assert!(
        (2..=6).contains(&issued),
        "{issued} tokens for {refused} rejected requests"
    );
    assert_no_secret(&case.bronze(), &out, &server_secrets(&server));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_endpoint_down_or_answering_garbage_stops_the_run_before_any_request() {
    for (mode, expected) in [
        (
            TokenMode::Down,
            "answered HTTP 503: token service unavailable",
        ),
        (
            TokenMode::Garbage,
            "answered HTTP 200 but not with JSON (expected an access_token): <html>maintenance</html>",
        ),
    ] {
        let server = ApiServer::start(0).await.unwrap();
        server.counters.auth.configure(|s| s.token_mode = mode);
        let auth = oauth2(&server, "oauth2_client_credentials", "");
        let case = Case::new(10, &pipeline(&server.url(), "/secure/{id}", &auth));
        let out = run(&case);
        assert_exit(&out, 1);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let url = format!("{}/oauth/token", server.url());
        assert!(
            stderr.contains(&format!(
                "auth (oauth2_client_credentials): token endpoint {url}: {expected}"
            )),
            "{stderr}"
        );
        let all = server.counters.requests.load(Ordering::Relaxed);
        let tokens = server.counters.auth.token_requests.load(Ordering::Relaxed);
        assert_eq!(all, tokens, "only the token endpoint was asked");
        assert!(!case.bronze().exists());
        assert_no_secret(&case.bronze(), &out, &server_secrets(&server));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_endpoint_that_breaks_mid_run_fails_rows_not_the_process() {
    let server = ApiServer::start(0).await.unwrap();
    server.counters.auth.configure(|s| {
        s.token_ttl = Duration::from_secs(1);
        s.announced_ttl = Some(1.0);
    });
    // 600 rows of 100 ms on 20 consumers: 3 s; the endpoint goes down after 0.5 s.
    let case = oauth2_case(
        &server,
        "oauth2_client_credentials",
        "  refresh_margin: 0.2\n",
        "{concurrency_limit: 20}",
        600,
        "/secure/slow/100/{id}",
    );
    let counters = server.counters.clone();
    let breaker = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        counters.auth.configure(|s| s.token_mode = TokenMode::Down);
    });
    let out = run(&case);
    breaker.await.unwrap();
    assert_exit(&out, 2);
    let rows = read_bronze(&case.bronze());
    assert_eq!(rows.len(), 600, "every row landed, failed or not");
    let ok = rows.iter().filter(|r| r.success).count();
    let failed: Vec<_> = rows.iter().filter(|r| !r.success).collect();
    assert!(
        ok > 0 && !failed.is_empty(),
        "{ok} ok, {} failed",
        failed.len()
    );
    for row in &failed {
        let message = row.error_message.as_deref().unwrap();
        assert!(
            message.contains("token endpoint") && message.contains("answered HTTP 503"),
            "{message}"
        );
    }
    // Failures are shared for a second, not retried once per row.
    let tokens = server.counters.auth.token_requests.load(Ordering::Relaxed);
    assert!(tokens < 20, "{tokens} token requests");
    assert_no_secret(&case.bronze(), &out, &server_secrets(&server));
}

#[tokio::test(flavor = "multi_thread")]
async fn basic_bearer_and_api_keys_reach_their_guarded_paths() {
    let server = ApiServer::start(0).await.unwrap();
    let s = server.counters.auth.settings.lock().unwrap().clone();
    // A token the server accepts, as a user would paste it into the pipeline.
    let (_, minted) = server.counters.auth.token(
        Some(&format!(
            "Basic {}",
            base64_encode(&format!("{}:{}", s.client_id, s.client_secret))
        )),
        b"grant_type=client_credentials",
    );
    let token: serde_json::Value = serde_json::from_str(&minted).unwrap();
    let token = token["access_token"].as_str().unwrap().to_owned();
    let cases = [
        (
            "/basic/{id}",
            format!(
                "auth: {{type: basic, username: {}, password: {}}}\n",
                s.username, s.password
            ),
        ),
        (
            "/secure/{id}",
            format!("auth: {{type: bearer, token: {token}}}\n"),
        ),
        (
            "/apikey/{id}",
            format!("auth: {{type: api_key, api_key: {}}}\n", s.api_key),
        ),
        (
            "/apikey-query/{id}",
            format!(
                "auth: {{type: api_key, api_key: {}, query_param: api_key}}\n",
                s.api_key
            ),
        ),
    ];
    for (path, auth) in &cases {
        let case = Case::new(20, &pipeline(&server.url(), path, auth));
        let out = run(&case);
        assert_exit(&out, 0);
        let rows = read_bronze(&case.bronze());
        assert_eq!(rows.len(), 20, "{auth}");
        assert!(rows.iter().all(|r| r.success), "{auth}");
        // The host applied the credential after the chain: what the table shows as sent has no
        // credential under any name, and the echo shows the server got it (redacted in the table).
        for row in &rows {
            let headers: serde_json::Value =
                serde_json::from_str(row.request_headers.as_deref().unwrap()).unwrap();
            for key in ["authorization", "Authorization", "x-api-key", "X-API-Key"] {
                assert!(headers.get(key).is_none(), "{auth}: {headers}");
            }
        }
        assert_no_secret(&case.bronze(), &out, &server_secrets(&server));
    }
    // Without a credential, the same paths refuse; a key in the header does not pass where the query
    // is checked, nor one in the query where the header is.
    let (server, case) = served(5, "/basic/{id}", "").await;
    let out = run(&case);
    assert_exit(&out, 2);
    assert_eq!(server.counters.auth.refused.load(Ordering::Relaxed), 5);
    assert_no_secret(&case.bronze(), &out, &server_secrets(&server));
    for (path, auth) in [
        (
            "/apikey-query/{id}",
            format!("auth: {{type: api_key, api_key: {}}}\n", s.api_key),
        ),
        (
            "/apikey/{id}",
            format!(
                "auth: {{type: api_key, api_key: {}, query_param: api_key}}\n",
                s.api_key
            ),
        ),
    ] {
        let wrong = ApiServer::start(0).await.unwrap();
        let case = Case::new(5, &pipeline(&wrong.url(), path, &auth));
        let out = run(&case);
        assert_exit(&out, 2);
        assert_eq!(
            wrong.counters.auth.refused.load(Ordering::Relaxed),
            5,
            "{auth}"
        );
        assert_no_secret(&case.bronze(), &out, &server_secrets(&wrong));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_api_that_refuses_every_token_does_not_get_one_token_request_per_row() {
    let server = ApiServer::start(0).await.unwrap();
    // Tokens the API never accepts (dead on arrival): every request is answered 401.
    server
        .counters
        .auth
        .configure(|s| s.token_ttl = Duration::ZERO);
    // 50 consumers, 600 rows (refused before the slow part: the run takes well under a second).
    let case = oauth2_case(
        &server,
        "oauth2_client_credentials",
        "",
        "{concurrency_limit: 50}",
        600,
        "/secure/slow/200/{id}",
    );
    let out = run(&case);
    assert_exit(&out, 2);
    let rows = read_bronze(&case.bronze());
    assert_eq!(rows.len(), 600);
    assert!(
        rows.iter()
            .all(|r| !r.success && r.error_message.as_deref() == Some("HTTP 401 Unauthorized"))
    );
    // Renewing on each 401 would ask for a token once per round of consumers (dozens); a token the
    // API never took is renewed at most once a second.
    let requests = server.counters.auth.token_requests.load(Ordering::Relaxed);
    assert!((1..=5).contains(&requests), "{requests} token requests");
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("the API answered 401 to a credential it has not accepted yet"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_no_secret(&case.bronze(), &out, &server_secrets(&server));
}

fn base64_encode(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

#[tokio::test(flavor = "multi_thread")]
async fn mtls_reaches_a_server_that_requires_a_client_certificate() {
    let certs = testkit::test_certs();
    let server = ApiServer::start_tls(certs.server_mtls.clone())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, pem: &str| {
        std::fs::write(dir.path().join(name), pem).unwrap();
        dir.path().join(name).display().to_string()
    };
    let ca = write("ca.pem", &certs.ca_pem);
    let cert = write("client.pem", &certs.client_cert_pem);
    let key = write("client.key", &certs.client_key_pem);
    let url = server.url().replace("127.0.0.1", "localhost");
    // The client's private key must not show up in anything a run prints or lands.
    let key_secret = vec![certs.client_key_pem.lines().nth(1).unwrap().to_owned()];

    let with_cert = format!(
        "transport:\n  tls: {{ca_file: {ca}, client_cert_file: {cert}, client_key_file: {key}}}\n"
    );
    let case = Case::new(30, &pipeline(&url, "/items/{id}", &with_cert));
    let out = run(&case);
    assert_exit(&out, 0);
    assert_no_secret(&case.bronze(), &out, &key_secret);
    let rows = read_bronze(&case.bronze());
    assert_eq!(rows.iter().filter(|r| r.success).count(), 30);

    // The CA alone: the server refuses the handshake; each row says so.
    let without = format!("transport:\n  tls: {{ca_file: {ca}}}\n");
    let case = Case::new(3, &pipeline(&url, "/items/{id}", &without));
    let out = run(&case);
    assert_exit(&out, 2);
    assert_no_secret(&case.bronze(), &out, &key_secret);
    // TLS 1.3 reports a missing client certificate after the handshake: the row whose request met
    // the server's alert says so; rows sent on the same connection meanwhile see it close.
    let rows = read_bronze(&case.bronze());
    assert!(rows.iter().all(|r| !r.success));
    assert!(
        rows.iter().any(|r| r.error_message.as_deref().unwrap().starts_with(
            "TLS: the server requires a client certificate (transport.tls.client_cert_file and client_key_file)"
        )),
        "{:?}",
        rows.iter().map(|r| &r.error_message).collect::<Vec<_>>()
    );

    // A key file that is not PEM: the run does not start.
    let bad = write("bad.key", "not a key\n");
    let bad_key = format!(
        "transport:\n  tls: {{ca_file: {ca}, client_cert_file: {cert}, client_key_file: {bad}}}\n"
    );
    let case = Case::new(3, &pipeline(&url, "/items/{id}", &bad_key));
    let out = run(&case);
    assert_exit(&out, 1);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("transport.tls: client_key_file {bad}")),
        "{stderr}"
    );
    // A missing certificate file is named too.
    let missing = format!(
        "transport:\n  tls: {{ca_file: {ca}, client_cert_file: /nonexistent/c.pem, client_key_file: {key}}}\n"
    );
    let case = Case::new(3, &pipeline(&url, "/items/{id}", &missing));
    let out = run(&case);
    assert_exit(&out, 1);
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/c.pem"));
    assert_no_secret(&case.bronze(), &out, &key_secret);
}

fn hmac_plugin(server: &ApiServer, grant: &str) -> String {
    let file = Path::new(env!("SPARKWASM_PLUGIN_DIR")).join("auth_hmac.wasm");
    let digest = format!("{:x}", Sha256::digest(std::fs::read(&file).unwrap()));
    format!(
        "auth:\n  type: wasm\n  name: signer\n  path: {}\n  sha256: \"{digest}\"\n  refresh_margin: 0.2\n  config: {{key_url: \"{}/keys\", client_id: etl}}\n  grants: {{outbound_hosts: [\"{grant}\"]}}\n",
        file.display(),
        server.url()
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_custom_auth_plugin_signs_requests_with_a_key_fetched_through_its_grant() {
    let server = ApiServer::start(0).await.unwrap();
    // Keys live one second; the run takes about two.
    server
        .counters
        .auth
        .configure(|s| s.key_ttl = Duration::from_secs(1));
    // POST: the signature covers the JSON body too.
    let extra = format!(
        "execution: {{concurrency_limit: 20}}\n{}",
        hmac_plugin(&server, &server.addr.to_string())
    );
    let case = Case::new(
        400,
        &pipeline(&server.url(), "/signed/slow/100/{id}", &extra)
            .replace("method: GET", "method: POST")
            .replacen(
                "\ntables:",
                "\n  request_template: {name: \"{name}\", score: \"{score}\", id: \"{id}\"}\ntables:",
                1,
            ),
    );
    let out = run(&case);
    assert_exit(&out, 0);
    let rows = read_bronze(&case.bronze());
    assert_eq!(rows.len(), 400);
    assert!(rows.iter().all(|r| r.success));
    // The body the server got (its echo) is the template, typed, for that row.
    for row in &rows {
        let echo: serde_json::Value =
            serde_json::from_str(row.body_text.as_deref().unwrap()).unwrap();
        let body: serde_json::Value = serde_json::from_str(echo["body"].as_str().unwrap()).unwrap();
        assert_eq!(body["id"].to_string(), row.request_id, "{body}");
        assert!(body["score"].is_number(), "{body}");
    }
    let keys = server.counters.auth.key_requests.load(Ordering::Relaxed);
    assert!((2..=6).contains(&keys), "{keys} key requests");
    assert_no_secret(&case.bronze(), &out, &server_secrets(&server));

    // The same plugin whose key service is not in its grant: it cannot get a key, and the run stops
    // before its first request with an error naming the grant.
    let other = ApiServer::start(0).await.unwrap();
    let case = Case::new(
        5,
        &pipeline(
            &other.url(),
            "/signed/{id}",
            &hmac_plugin(&server, "keys.example.com:443"),
        ),
    );
    let out = run(&case);
    assert_exit(&out, 1);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "outbound fetch to http://{} refused: it is not in the plugin's grants.outbound_hosts",
            server.addr
        )),
        "{stderr}"
    );
    assert_eq!(other.counters.requests.load(Ordering::Relaxed), 0);
    assert_no_secret(&case.bronze(), &out, &server_secrets(&server));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_auth_examples_run_against_local_servers() {
    let root = repo_root();
    for kind in [
        "basic",
        "bearer",
        "oauth2_client_credentials",
        "oauth2_password",
    ] {
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
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("configs/data")).unwrap();
        std::fs::copy(
            root.join("configs/data/quickstart.csv"),
            dir.path().join("configs/data/quickstart.csv"),
        )
        .unwrap();
        let config = root.join(format!("configs/auth_{kind}.yaml"));
        let out = sparkwasm(dir.path())
            .arg("run")
            .arg(&config)
            .env("ACME_API", server.url())
            .env("ACME_TOKEN_URL", format!("{}/oauth/token", server.url()))
            .env("SPARKWASM_SECRET_ACME_USERNAME", &s.username)
            .env("SPARKWASM_SECRET_ACME_PASSWORD", &s.password)
            .env("SPARKWASM_SECRET_ACME_CLIENT_ID", &s.client_id)
            .env("SPARKWASM_SECRET_ACME_CLIENT_SECRET", &s.client_secret)
            .env(
                "SPARKWASM_SECRET_ACME_TOKEN",
                token["access_token"].as_str().unwrap(),
            )
            .env("RUST_LOG", "debug")
            .output()
            .unwrap();
        assert_exit(&out, 0);
        let table = dir
            .path()
            .join(format!("warehouse/bronze/acme/customers_{kind}"));
        let rows = read_bronze(&table);
        assert_eq!(rows.len(), 200, "{kind}");
        assert!(rows.iter().all(|r| r.success), "{kind}");
        assert_eq!(server.counters.auth.refused.load(Ordering::Relaxed), 0);
        assert_no_secret(&table, &out, &server_secrets(&server));
    }
}

/// Runs `args` in `case`'s folder, with `secrets.yaml` as the secrets file and every log line on;
/// returns what it printed (stdout and stderr).
fn printed(case: &Case, args: &[&str]) -> (Output, String) {
    let out = sparkwasm(case.dir.path())
        .args(args)
        .args(["--secrets-file", "secrets.yaml"])
        .env("RUST_LOG", "debug")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out, text)
}

/// No form of `secrets` (as written, or lowercased) in `text`.
fn assert_hidden(text: &str, secrets: &[&str], what: &str) {
    for s in secrets {
        for form in [s.to_string(), s.to_ascii_lowercase()] {
            assert!(!text.contains(&form), "{what} shows `{form}`:\n{text}");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_secret_is_not_shown_by_a_config_error_a_grant_or_a_host_the_url_parser_lowercased() {
    let server = ApiServer::start(0).await.unwrap();
    let secrets = "acme: {method: M3thodS3CRET, grant: Gr4ntS3CRET, host: H0stS3CRET}\n";
    let all = ["M3thodS3CRET", "Gr4ntS3CRET", "H0stS3CRET"];
    let case = |pipeline: String| {
        let case = Case::new(2, &pipeline);
        std::fs::write(case.dir.path().join("secrets.yaml"), secrets).unwrap();
        case
    };

    // A check that quotes the value it refuses: validate, the run and its report.
    let bad = case(
        pipeline(&server.url(), "/items/{id}", "")
            .replace("method: GET", "method: \"{{secret.acme:method}}\""),
    );
    let (out, text) = printed(&bad, &["validate", "p.yaml"]);
    assert_ne!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("endpoint.method: `***` is not one of"),
        "{text}"
    );
    assert_hidden(&text, &all, "validate");
    let (_, text) = printed(&bad, &["run", "p.yaml", "--report", "report.json"]);
    let report = std::fs::read_to_string(bad.dir.path().join("report.json")).unwrap();
    assert!(report.contains("endpoint.method"), "{report}");
    assert_hidden(&format!("{text}{report}"), &all, "the run and its report");

    // A grant written with a secret: the plugin's load line (validate prints it, a run logs it).
    let plugin = Path::new(env!("SPARKWASM_PLUGIN_DIR")).join("passthrough.wasm");
    let digest = format!("{:x}", Sha256::digest(std::fs::read(&plugin).unwrap()));
    let granted = case(pipeline(
        &server.url(),
        "/items/{id}",
        &format!(
            "middleware:\n  - {{type: wasm, name: pass, path: {}, sha256: \"{digest}\", grants: {{outbound_hosts: [\"{{{{secret.acme:grant}}}}:9\"]}}}}\n",
            plugin.display()
        ),
    ));
    let (out, text) = printed(&granted, &["validate", "p.yaml"]);
    assert_exit(&out, 0);
    assert!(text.contains("grants: outbound_hosts"), "{text}");
    assert_hidden(&text, &all, "validate");
    let (out, text) = printed(&granted, &["run", "p.yaml"]);
    assert_exit(&out, 0);
    assert!(text.contains("grants: outbound_hosts"), "{text}");
    assert_hidden(&text, &all, "the run's log");

    // A host from a secret, lowercased by the URL parser: the dry run and the table.
    let host = case(pipeline(
        "http://{{secret.acme:host}}.invalid:1",
        "/items/{id}",
        "",
    ));
    let (_, text) = printed(&host, &["run", "p.yaml", "--dry-run", "1"]);
    assert!(text.contains("http://***.invalid:1/items/"), "{text}");
    assert_hidden(&text, &all, "the dry run");
    let (_, text) = printed(&host, &["run", "p.yaml"]);
    assert_hidden(&text, &all, "the run");
    let table = everything_in(&host.bronze());
    assert!(table.contains("http://***.invalid:1/items/"), "{table}");
    assert_hidden(&table, &all, "the table");
}
