//! Stage 6c: one process-wide pooled HTTP client (hyper-util), HTTP/1.1 and HTTP/2 by ALPN, rustls with
//! the platform's roots (plus an optional CA bundle and client certificate), a per-host connection cap.
//!
//! Every failure (refused, reset, timeout, TLS) comes back as a [`RequestError`] with a readable
//! message: it fails the row, never the process.

mod limit;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config;
use crate::request::{ApiRequest, ApiResponse, ErrorKind, RequestError};
use limit::LimitedConnector;

type Connector = LimitedConnector<hyper_rustls::HttpsConnector<HttpConnector>>;

/// Why the transport cannot be built (bad TLS material): stops the run before any request.
#[derive(Debug, thiserror::Error)]
#[error("transport.tls: {0}")]
pub struct TransportError(String);

/// The pooled client, shared by every consumer.
pub struct HttpTransport {
    client: Client<Connector, Full<Bytes>>,
    timeout: Duration,
}

impl HttpTransport {
    pub fn new(config: &config::Transport) -> Result<Self, TransportError> {
        let tls = tls_config(&config.tls)?;
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(config.base_timeout));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http);
        let connector = LimitedConnector::new(https, config.connection_limit);
        let max_idle = if config.connection_limit == 0 {
            usize::MAX
        } else {
            config.connection_limit
        };
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(max_idle)
            .build(connector);
        Ok(HttpTransport {
            client,
            timeout: config.base_timeout,
        })
    }

    /// Sends one request and reads the whole response, within `base_timeout`.
    pub async fn send(&self, request: ApiRequest) -> Result<ApiResponse, RequestError> {
        let mut builder = http::Request::builder()
            .method(request.method)
            .uri(&request.url);
        for (name, value) in &request.headers {
            builder = builder.header(name, value);
        }
        let http_request = builder
            .body(Full::new(request.body.unwrap_or_default()))
            .map_err(|e| {
                RequestError::of(
                    ErrorKind::InvalidRequest,
                    format!("cannot build the request: {e}"),
                )
            })?;
        let exchange = async {
            let response = self.client.request(http_request).await.map_err(|e| {
                let unclassified = if e.is_connect() {
                    ErrorKind::Connect
                } else {
                    ErrorKind::Other
                };
                describe(&e, unclassified, "")
            })?;
            let (parts, body) = response.into_parts();
            let body = body
                .collect()
                .await
                .map_err(|e| describe(&e, ErrorKind::Reset, "response body: "))?
                .to_bytes();
            let headers = parts
                .headers
                .iter()
                .map(|(n, v)| {
                    (
                        n.as_str().to_owned(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect();
            let mut metadata = request.metadata;
            metadata.insert("http_version".into(), format!("{:?}", parts.version));
            Ok(ApiResponse {
                status: parts.status.as_u16(),
                headers,
                body,
                metadata,
            })
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Ok(result) => result,
            Err(_) => Err(RequestError::of(
                ErrorKind::Timeout,
                format!(
                    "timed out after {:.1}s (transport.base_timeout)",
                    self.timeout.as_secs_f64()
                ),
            )),
        }
    }
}

/// A transport failure as a [`RequestError`]: one line (`prefix`, what happened first, then the chain
/// of causes) and its kind — from the first cause that tells, else `unclassified`.
fn describe(
    error: &(dyn std::error::Error + 'static),
    unclassified: ErrorKind,
    prefix: &str,
) -> RequestError {
    let mut causes: Vec<String> = Vec::new();
    let mut kind = None;
    let mut next = Some(error);
    while let Some(e) = next {
        kind = kind.or_else(|| classify(e));
        let text = e.to_string();
        if !causes.iter().any(|c| c.contains(&text)) {
            causes.push(text);
        }
        next = cause_of(e);
    }
    let chain = causes.join(": ");
    match kind {
        Some((kind, what)) => RequestError::of(kind, format!("{prefix}{what}: {chain}")),
        None => RequestError::of(unclassified, format!("{prefix}{chain}")),
    }
}

/// The next error down the chain. An `io::Error` carrying another error (hyper-rustls wraps
/// tokio-rustls's io::Error, which wraps the rustls::Error) is stepped into: its `source()` skips
/// the payload itself.
fn cause_of<'a>(
    e: &'a (dyn std::error::Error + 'static),
) -> Option<&'a (dyn std::error::Error + 'static)> {
    match e
        .downcast_ref::<std::io::Error>()
        .and_then(|io| io.get_ref())
    {
        Some(payload) => Some(payload),
        None => e.source(),
    }
}

fn classify(e: &(dyn std::error::Error + 'static)) -> Option<(ErrorKind, &'static str)> {
    if e.is::<rustls::Error>() {
        return Some((ErrorKind::Tls, "TLS handshake failed"));
    }
    if let Some(h) = e.downcast_ref::<hyper::Error>() {
        return h.is_incomplete_message().then_some((
            ErrorKind::Reset,
            "connection closed before a complete response",
        ));
    }
    let io = e.downcast_ref::<std::io::Error>()?;
    // tokio-rustls hands an alert from the server over as text (its rustls::Error is not kept).
    if io.kind() == std::io::ErrorKind::InvalidData {
        let text = io.to_string();
        if text.contains("CertificateRequired") {
            return Some((
                ErrorKind::Tls,
                "TLS: the server requires a client certificate (transport.tls.client_cert_file and client_key_file)",
            ));
        }
        if text.starts_with("received fatal alert") {
            return Some((ErrorKind::Tls, "TLS: the server ended the session"));
        }
    }
    match io.kind() {
        std::io::ErrorKind::ConnectionRefused => Some((ErrorKind::Connect, "connection refused")),
        std::io::ErrorKind::ConnectionReset => Some((ErrorKind::Reset, "connection reset by peer")),
        std::io::ErrorKind::ConnectionAborted => Some((ErrorKind::Reset, "connection aborted")),
        std::io::ErrorKind::TimedOut => Some((ErrorKind::Timeout, "connect timed out")),
        _ => None,
    }
}

fn tls_config(tls: &config::Tls) -> Result<rustls::ClientConfig, TransportError> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(native.certs);
    if let Some(ca) = &tls.ca_file {
        let certs = CertificateDer::pem_file_iter(ca)
            .and_then(|it| it.collect::<Result<Vec<_>, _>>())
            .map_err(|e| TransportError(format!("ca_file {}: {e}", ca.display())))?;
        if certs.is_empty() {
            return Err(TransportError(format!(
                "ca_file {}: no certificate in it",
                ca.display()
            )));
        }
        for cert in certs {
            roots
                .add(cert)
                .map_err(|e| TransportError(format!("ca_file {}: {e}", ca.display())))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TransportError(e.to_string()))?
        .with_root_certificates(roots);
    match (&tls.client_cert_file, &tls.client_key_file) {
        (Some(cert), Some(key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .map_err(|e| TransportError(format!("client_cert_file {}: {e}", cert.display())))?;
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| TransportError(format!("client_key_file {}: {e}", key.display())))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| TransportError(format!("client certificate: {e}")))
        }
        _ => Ok(builder.with_no_client_auth()),
    }
}
