//! Loopback servers and data for sparkwasm's tests, demo and benchmarks.
//!
//! [`ApiServer`] answers on 127.0.0.1 (plain or TLS, HTTP/1.1 and HTTP/2) and counts what it sees:
//! requests, open connections and the most open at once. Paths choose the behaviour:
//! `/status/{code}` answers that status, `/slow/{ms}` waits first, `/drop` closes the connection without
//! answering, `/twice/...` echoes with a `Link` field sent twice, `/flaky/{id}` fails each path's first attempt (by id % 3: a 503, a 429 with
//! `Retry-After: 1`, a dropped connection) and echoes from the second on; anything else echoes the
//! request (method, uri, version, headers, body) as JSON with 200. While [`Counters::failing`] is set
//! to N, a request whose last path segment is an integer id with id % N == 0 loses its connection and
//! one with id % N == 1 gets a 503 (a run against a failing API, then a rerun against a healthy one).
//! The server records the HTTP version of every request and the ALPN protocol of every TLS connection;
//! [`ApiServer::start_resetting`] answers every request with a TCP reset. [`auth`] adds an OAuth2 token
//! endpoint, a signing-key service and path prefixes that demand a credential (`/secure`, `/basic`,
//! `/apikey`, `/signed`).

pub mod auth;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arrow::array::{Float64Array, Int64Array, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

/// What the server has seen.
#[derive(Default)]
pub struct Counters {
    pub requests: AtomicU64,
    pub open_connections: AtomicU64,
    pub max_open_connections: AtomicU64,
    pub connections: AtomicU64,
    /// Requests whose method was not HEAD (warm-up sends HEAD).
    pub row_requests: AtomicU64,
    /// Attempts seen per `/flaky/...` path.
    pub flaky: std::sync::Mutex<std::collections::HashMap<String, u32>>,
    /// The token endpoint, the key service and the guarded paths (see [`auth`]).
    pub auth: auth::AuthState,
    /// Set to keep every non-HEAD request in `arrivals` (off by default: the bench's server keeps
    /// nothing).
    pub record: std::sync::atomic::AtomicBool,
    pub arrivals: std::sync::Mutex<Vec<Arrival>>,
    /// While N > 0: ids % N == 0 lose their connection, ids % N == 1 get a 503 (see the module docs).
    pub failing: AtomicU64,
    /// Requests (HEAD included) per HTTP version as hyper parsed it: "HTTP/1.1", "HTTP/2.0".
    pub versions: std::sync::Mutex<std::collections::BTreeMap<String, u64>>,
    /// `/capacity/{C}/{ms}/{id}`: requests in service there now, answered 429 there (over
    /// capacity), served there, and the sum over served requests of the requests in service when each
    /// began (÷ served: the mean concurrency the server saw).
    pub capacity_active: AtomicU64,
    pub capacity_refused: AtomicU64,
    pub capacity_served: AtomicU64,
    pub capacity_active_sum: AtomicU64,
    /// While N > 1, `/capacity/` serves C / N at a time (a capacity that drops mid-run).
    pub capacity_divisor: AtomicU64,
    /// `/window/{N}/{id}`: the current second and the requests it served.
    pub window: std::sync::Mutex<(u64, u64)>,
    /// Requests being answered now (arrived, not yet answered), and the most at once.
    pub active: AtomicU64,
    pub max_active: AtomicU64,
    /// The ALPN protocol each TLS connection negotiated ("h2", "http/1.1", or "none").
    pub alpn: std::sync::Mutex<Vec<String>>,
    /// An emulation of Databricks' secrets API (`GET /api/2.0/secrets/get?scope=&key=`, bearer
    /// token): the token it accepts and its secrets by (scope, key). Not Databricks: its documented
    /// request and answer shapes, for the tests of sparkwasm's Databricks secrets lookup.
    pub databricks_token: std::sync::Mutex<Option<String>>,
    pub databricks_secrets: std::sync::Mutex<std::collections::HashMap<(String, String), String>>,
}

/// A request as the server received it (kept when [`Counters::record`] is set).
#[derive(Clone, Debug)]
pub struct Arrival {
    pub at: std::time::Instant,
    pub method: String,
    /// Path and query.
    pub target: String,
    /// Header names in lower case, with their values.
    pub headers: Vec<(String, String)>,
}

impl Counters {
    /// Starts keeping every request (see [`Arrival`]).
    pub fn keep_arrivals(&self) {
        self.record.store(true, Ordering::SeqCst);
    }

    /// The requests kept so far.
    pub fn arrivals(&self) -> Vec<Arrival> {
        self.arrivals.lock().expect("arrivals lock").clone()
    }

    /// How many requests came over `version` ("HTTP/1.1", "HTTP/2.0").
    pub fn requests_over(&self, version: &str) -> u64 {
        self.versions
            .lock()
            .expect("versions lock")
            .get(version)
            .copied()
            .unwrap_or(0)
    }
}

/// A running local API; stops when dropped.
pub struct ApiServer {
    pub addr: SocketAddr,
    pub counters: Arc<Counters>,
    pub scheme: &'static str,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ApiServer {
    /// Plain HTTP on 127.0.0.1, an ephemeral port (0) or the given one.
    pub async fn start(port: u16) -> std::io::Result<Self> {
        Self::start_with(port, None).await
    }

    /// HTTPS with the given certificate; ALPN offers h2 and http/1.1.
    pub async fn start_tls(tls: Arc<rustls::ServerConfig>) -> std::io::Result<Self> {
        Self::start_with(0, Some(tokio_rustls::TlsAcceptor::from(tls))).await
    }

    async fn start_with(
        port: u16,
        tls: Option<tokio_rustls::TlsAcceptor>,
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", port)).await?;
        let addr = listener.local_addr()?;
        let counters = Arc::new(Counters::default());
        let scheme = if tls.is_some() { "https" } else { "http" };
        let c = counters.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let c = c.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    c.connections.fetch_add(1, Ordering::Relaxed);
                    let open = c.open_connections.fetch_add(1, Ordering::SeqCst) + 1;
                    c.max_open_connections.fetch_max(open, Ordering::SeqCst);
                    let service = hyper::service::service_fn({
                        let c = c.clone();
                        move |req| handle(c.clone(), req)
                    });
                    let builder =
                        hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    match tls {
                        Some(acceptor) => {
                            match acceptor.accept(stream).into_fallible().await {
                                Ok(stream) => {
                                    let alpn = stream.get_ref().1.alpn_protocol().map_or_else(
                                        || "none".to_owned(),
                                        |p| String::from_utf8_lossy(p).into_owned(),
                                    );
                                    c.alpn.lock().expect("alpn lock").push(alpn);
                                    let _ = builder
                                        .serve_connection(TokioIo::new(stream), service)
                                        .await;
                                }
                                // The handshake failed (a client without the required
                                // certificate): its alert is written; close as nginx's lingering
                                // close does, so that the kernel does not answer the client's
                                // already-sent request with a reset that discards the alert.
                                Err((_, tcp)) => lingering_close(tcp).await,
                            }
                        }
                        None => {
                            let _ = builder
                                .serve_connection(TokioIo::new(stream), service)
                                .await;
                        }
                    }
                    c.open_connections.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        Ok(ApiServer {
            addr,
            counters,
            scheme,
            task,
        })
    }

    pub fn url(&self) -> String {
        format!("{}://{}", self.scheme, self.addr)
    }

    /// Plain HTTP on an ephemeral port where every connection is reset (RST, `SO_LINGER` 0) as soon
    /// as a request's head has arrived: a peer that crashed or a middlebox that killed the flow, not
    /// a clean close (FIN). Counts requests and connections.
    pub async fn start_resetting() -> std::io::Result<Self> {
        use tokio::io::AsyncReadExt;
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let counters = Arc::new(Counters::default());
        let c = counters.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    continue;
                };
                c.connections.fetch_add(1, Ordering::Relaxed);
                let c = c.clone();
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 4096];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    c.requests.fetch_add(1, Ordering::Relaxed);
                    if !head.starts_with(b"HEAD ") {
                        c.row_requests.fetch_add(1, Ordering::Relaxed);
                    }
                    let _ = stream.set_zero_linger();
                    drop(stream);
                });
            }
        });
        Ok(ApiServer {
            addr,
            counters,
            scheme: "http",
            task,
        })
    }
}

/// Half-closes `tcp` and reads what the peer still sends (for at most a second) before closing it.
async fn lingering_close(mut tcp: tokio::net::TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _ = tcp.shutdown().await;
    let mut sink = [0u8; 4096];
    let drain = async {
        while let Ok(n) = tcp.read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), drain).await;
}

/// Marker error that makes hyper drop the connection without a response.
#[derive(Debug)]
struct Dropped;

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("dropped on purpose")
    }
}

impl std::error::Error for Dropped {}

async fn handle(
    c: Arc<Counters>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Dropped> {
    /// Counts the request as active until it is answered (or dropped).
    struct Active(Arc<Counters>);
    impl Drop for Active {
        fn drop(&mut self) {
            self.0.active.fetch_sub(1, Ordering::SeqCst);
        }
    }
    let now = c.active.fetch_add(1, Ordering::SeqCst) + 1;
    c.max_active.fetch_max(now, Ordering::SeqCst);
    let _active = Active(c.clone());
    answer(c, req).await
}

async fn answer(
    c: Arc<Counters>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Dropped> {
    c.requests.fetch_add(1, Ordering::Relaxed);
    if req.method() != hyper::Method::HEAD {
        c.row_requests.fetch_add(1, Ordering::Relaxed);
    }
    let (parts, body) = req.into_parts();
    *c.versions
        .lock()
        .expect("versions lock")
        .entry(format!("{:?}", parts.version))
        .or_default() += 1;
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    if c.record.load(Ordering::Relaxed) && parts.method != hyper::Method::HEAD {
        c.arrivals.lock().expect("arrivals lock").push(Arrival {
            at: std::time::Instant::now(),
            method: parts.method.to_string(),
            target: parts
                .uri
                .path_and_query()
                .map_or("/", |p| p.as_str())
                .to_owned(),
            headers: parts
                .headers
                .iter()
                .map(|(k, v)| (k.to_string(), String::from_utf8_lossy(v.as_bytes()).into()))
                .collect(),
        });
    }
    let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
    let mut path = parts.uri.path().to_owned();
    let reply = |status: u16, body: String| {
        Ok(Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .expect("valid response"))
    };
    if path == "/oauth/token" {
        let (status, body) = c.auth.token(header("authorization"), &body);
        return reply(status, body);
    }
    if path == "/api/2.0/secrets/get" {
        let (status, body) = databricks_secret(&c, header("authorization"), parts.uri.query());
        return reply(status, body);
    }
    if path == "/keys" {
        let (status, body) = c.auth.key(parts.uri.query());
        return reply(status, body);
    }
    let seen = auth::Seen {
        method: parts.method.as_str(),
        target: parts.uri.path_and_query().map_or("/", |p| p.as_str()),
        query: parts.uri.query(),
        headers: &parts.headers,
        body: &body,
    };
    if let Some((rest, ok)) = c.auth.guard(&path, &seen) {
        if !ok {
            return reply(401, r#"{"error":"invalid_token"}"#.into());
        }
        path = if rest.is_empty() {
            "/".into()
        } else {
            rest.to_owned()
        };
    }
    let failing = c.failing.load(Ordering::SeqCst);
    if failing > 0 && parts.method != hyper::Method::HEAD {
        let id = path.rsplit('/').next().and_then(|i| i.parse::<u64>().ok());
        match id.map(|i| i % failing) {
            Some(0) => return Err(Dropped),
            Some(1) => return reply(503, r#"{"error":"failing on purpose"}"#.into()),
            _ => {}
        }
    }
    if let Some(id) = path.strip_prefix("/customers/") {
        return reply(200, customer(id, parts.uri.query()));
    }
    let mut status = 200u16;
    if let Some(code) = path.strip_prefix("/status/") {
        status = code
            .split('/')
            .next()
            .and_then(|c| c.parse().ok())
            .unwrap_or(500);
    } else if let Some(ms) = path.strip_prefix("/slow/") {
        let ms: u64 = ms
            .split('/')
            .next()
            .and_then(|m| m.parse().ok())
            .unwrap_or(100);
        tokio::time::sleep(Duration::from_millis(ms)).await;
    } else if let Some(rest) = path.strip_prefix("/capacity/") {
        // A server that serves C requests at a time, each taking `ms`, and answers 429 at once
        // beyond (no queue): the capacity an adaptive client must find.
        let mut parts = rest.split('/').map(|p| p.parse::<u64>().unwrap_or(1));
        let (capacity, ms) = (parts.next().unwrap_or(1), parts.next().unwrap_or(10));
        let capacity = (capacity / c.capacity_divisor.load(Ordering::SeqCst).max(1)).max(1);
        let active = c.capacity_active.fetch_add(1, Ordering::SeqCst) + 1;
        if active > capacity {
            c.capacity_active.fetch_sub(1, Ordering::SeqCst);
            c.capacity_refused.fetch_add(1, Ordering::SeqCst);
            return reply(429, r#"{"error":"over capacity"}"#.into());
        }
        c.capacity_active_sum.fetch_add(active, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(ms)).await;
        c.capacity_active.fetch_sub(1, Ordering::SeqCst);
        c.capacity_served.fetch_add(1, Ordering::SeqCst);
    } else if let Some(rest) = path.strip_prefix("/window/") {
        // A fixed-window rate limit of N requests per second: beyond, 429 with Retry-After and the
        // IETF draft's RateLimit fields, telling when the window resets.
        let limit: u64 = rest
            .split('/')
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or(10);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let window = now.as_secs();
        let used = {
            let mut w = c.window.lock().expect("window lock");
            if w.0 != window {
                *w = (window, 0);
            }
            w.1 += 1;
            w.1
        };
        if used > limit {
            c.capacity_refused.fetch_add(1, Ordering::SeqCst);
            // The window ends within the second: whole seconds round it up to one.
            let reset = 1;
            return Ok(Response::builder()
                .status(429)
                .header("retry-after", reset.to_string())
                .header("ratelimit", format!("\"default\";r=0;t={reset}"))
                .header("ratelimit-policy", format!("\"default\";q={limit};w=1"))
                .body(Full::new(Bytes::from_static(b"rate limited")))
                .expect("valid response"));
        }
        c.capacity_served.fetch_add(1, Ordering::SeqCst);
    } else if path.starts_with("/drop") {
        return Err(Dropped);
    } else if let Some(id) = path.strip_prefix("/flaky/") {
        let attempt = {
            let mut seen = c.flaky.lock().expect("flaky lock");
            let n = seen.entry(path.clone()).or_default();
            *n += 1;
            *n
        };
        if attempt == 1 {
            let id: u64 = id
                .split('/')
                .next()
                .and_then(|i| i.parse().ok())
                .unwrap_or(0);
            match id % 3 {
                0 => status = 503,
                1 => {
                    return Ok(Response::builder()
                        .status(429)
                        .header("retry-after", "1")
                        .body(Full::new(Bytes::from_static(b"slow down")))
                        .expect("valid response"));
                }
                _ => return Err(Dropped),
            }
        }
    }
    let method = parts.method.to_string();
    let uri = parts.uri.to_string();
    let version = format!("{:?}", parts.version);
    let headers: serde_json::Map<String, serde_json::Value> = parts
        .headers
        .iter()
        .map(|(k, v)| (k.to_string(), String::from_utf8_lossy(v.as_bytes()).into()))
        .collect();
    let echo = serde_json::json!({"method": method, "uri": uri, "version": version, "headers": headers, "body": String::from_utf8_lossy(&body)});
    let mut response = Response::builder()
        .status(status)
        .header("content-type", "application/json");
    if path.starts_with("/twice/") {
        // Fields that come more than once, as `Link` and `Vary` often do.
        response = response
            .header("link", "</p/2>; rel=\"next\"")
            .header("vary", "accept")
            .header("link", "</p/9>; rel=\"last\"");
    }
    Ok(response
        .body(Full::new(Bytes::from(echo.to_string())))
        .expect("valid response"))
}

/// The Databricks secrets API as its documentation shows it: 401 without the token, 404
/// `RESOURCE_DOES_NOT_EXIST` for an unknown secret, else `{"key": ..., "value": base64}`.
fn databricks_secret(
    c: &Counters,
    authorization: Option<&str>,
    query: Option<&str>,
) -> (u16, String) {
    use base64::Engine;
    let expected = c.databricks_token.lock().expect("token lock").clone();
    let bearer = authorization.and_then(|a| a.strip_prefix("Bearer "));
    if expected.is_none() || bearer != expected.as_deref() {
        return (
            401,
            r#"{"error_code":"UNAUTHENTICATED","message":"Invalid access token."}"#.into(),
        );
    }
    let pairs: std::collections::HashMap<String, String> =
        url::form_urlencoded::parse(query.unwrap_or("").as_bytes())
            .into_owned()
            .collect();
    let wanted = (
        pairs.get("scope").cloned().unwrap_or_default(),
        pairs.get("key").cloned().unwrap_or_default(),
    );
    match c
        .databricks_secrets
        .lock()
        .expect("secrets lock")
        .get(&wanted)
    {
        Some(value) => (
            200,
            serde_json::json!({
                "key": wanted.1,
                "value": base64::engine::general_purpose::STANDARD.encode(value),
            })
            .to_string(),
        ),
        None => (
            404,
            r#"{"error_code":"RESOURCE_DOES_NOT_EXIST","message":"Secret does not exist."}"#.into(),
        ),
    }
}

/// `/customers/{id}`: a made-up CRM record (with personal data, for the demo's masking plugin), the
/// same for the same id. The query's `country_code`, when given, is echoed as the country.
fn customer(id: &str, query: Option<&str>) -> String {
    let n: u64 = id
        .bytes()
        .fold(0, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
    let country = query
        .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("country_code=")))
        .unwrap_or("US");
    let tiers = ["bronze", "silver", "gold"];
    serde_json::json!({
        "id": id,
        "name": format!("Customer {id}"),
        "email": format!("{}@example.com", id.to_lowercase()),
        "phone": format!("+1-555-{:04}", n % 10_000),
        "country": country,
        "tier": tiers[(n % 3) as usize],
        "open_orders": n % 7,
    })
    .to_string()
}

/// A self-signed CA, a server certificate for 127.0.0.1/localhost and a client certificate, as PEM,
/// plus two server configs: one that asks nothing of the client, one that requires a client
/// certificate signed by the CA (mTLS).
pub struct TestCerts {
    pub ca_pem: String,
    /// The server certificate (127.0.0.1, localhost) and its key, for servers the tests run
    /// themselves (the OCI registry).
    pub server_cert_pem: String,
    pub server_key_pem: String,
    pub client_cert_pem: String,
    pub client_key_pem: String,
    pub server: Arc<rustls::ServerConfig>,
    pub server_mtls: Arc<rustls::ServerConfig>,
}

pub fn test_certs() -> TestCerts {
    let ca_key = rcgen::KeyPair::generate().expect("key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "sparkwasm test CA");
    let ca = ca_params.self_signed(&ca_key).expect("ca cert");
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate().expect("key");
    let params =
        rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .expect("params");
    let cert = params.signed_by(&key, &issuer).expect("server cert");
    let client_key = rcgen::KeyPair::generate().expect("key");
    let mut client_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    client_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "sparkwasm test client");
    client_params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let client_cert = client_params
        .signed_by(&client_key, &issuer)
        .expect("client cert");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server_config = |client_auth: Option<
        Arc<dyn rustls::server::danger::ClientCertVerifier>,
    >| {
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("versions");
        let builder = match client_auth {
            Some(verifier) => builder.with_client_cert_verifier(verifier),
            None => builder.with_no_client_auth(),
        };
        let mut server = builder
            .with_single_cert(
                vec![cert.der().clone()],
                rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).expect("key der"),
            )
            .expect("server config");
        server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Arc::new(server)
    };
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der().clone()).expect("ca into roots");
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .expect("client verifier");
    TestCerts {
        ca_pem: ca.pem(),
        server_cert_pem: cert.pem(),
        server_key_pem: key.serialize_pem(),
        client_cert_pem: client_cert.pem(),
        client_key_pem: client_key.serialize_pem(),
        server: server_config(None),
        server_mtls: server_config(Some(verifier)),
    }
}

/// Writes `rows` rows (`id` int64, `name` string, `score` float64) to a Parquet file, in row groups of
/// 65,536 rows (so that a reader can stream a large file group by group, as it would a Spark-written one).
pub fn write_rows_parquet(path: &Path, rows: usize) -> anyhow::Result<()> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, false),
        Field::new("score", DataType::Float64, false),
    ]));
    let file = std::fs::File::create(path)?;
    let chunk = 65_536;
    let props = parquet::file::properties::WriterProperties::builder()
        .set_max_row_group_row_count(Some(chunk))
        .build();
    let mut writer = parquet::arrow::ArrowWriter::try_new(file, schema.clone(), Some(props))?;
    let mut start = 0;
    while start < rows {
        let end = (start + chunk).min(rows);
        let ids: Vec<i64> = (start as i64..end as i64).collect();
        let names: Vec<String> = ids.iter().map(|i| format!("user {i}")).collect();
        let scores: Vec<f64> = ids.iter().map(|i| *i as f64 / 4.0).collect();
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from(ids)),
                Arc::new(StringArray::from(names)),
                Arc::new(Float64Array::from(scores)),
            ],
        )?;
        writer.write(&batch)?;
        start = end;
    }
    writer.close()?;
    Ok(())
}
