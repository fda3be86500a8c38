//! Stage 6c: one process-wide pooled HTTP client (hyper-util), HTTP/1.1 and HTTP/2 by ALPN, rustls with
//! the platform's roots (plus an optional CA bundle and client certificate), a per-host connection cap.
//!
//! The pool is sharded by thread: each executor worker thread (a single-threaded runtime, see
//! [`crate::executor`]) has its own hyper-util client, so a connection is driven by the thread whose
//! consumers use it and a request never wakes another thread. The per-host cap is split between the
//! worker shards; shard 0 serves everything outside the workers (credential fetches before the run,
//! plugin loading) and keeps no idle connection, so the cap holds for the process as a whole.
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

use crate::api::{ApiRequest, ApiResponse, ErrorKind, RequestError, Sender};
use crate::config;
use limit::LimitedConnector;

mod insecure {
    //! `tls.verify: false` (the legacy setting): any certificate is taken. The handshake's
    //! signatures are still checked (the peer holds the key of the certificate it showed), but not
    //! who the certificate belongs to: an attacker on the path can pose as the API.

    use std::sync::Arc;

    use rustls::DigitallySignedStruct;
    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::crypto::CryptoProvider;
    use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

    #[derive(Debug)]
    pub(super) struct AnyCertificate(pub(super) Arc<CryptoProvider>);

    impl ServerCertVerifier for AnyCertificate {
        fn verify_server_cert(
            &self,
            _end_entity: &CertificateDer<'_>,
            _intermediates: &[CertificateDer<'_>],
            _server_name: &ServerName<'_>,
            _ocsp: &[u8],
            _now: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            Ok(ServerCertVerified::assertion())
        }

        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(
                message,
                cert,
                dss,
                &self.0.signature_verification_algorithms,
            )
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(
                message,
                cert,
                dss,
                &self.0.signature_verification_algorithms,
            )
        }

        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
    }
}

type Connector = LimitedConnector<hyper_rustls::HttpsConnector<HttpConnector>>;

/// Why the transport cannot be built (bad TLS material): stops the run before any request.
#[derive(Debug, thiserror::Error)]
#[error("transport.tls: {0}")]
pub struct TransportError(String);

/// The pooled client, shared by every consumer: one pool shard per worker thread.
pub struct HttpTransport {
    /// `shards[0]`: outside the workers; `shards[w]`: worker thread `w` (1-based).
    shards: Vec<Client<Connector, Full<Bytes>>>,
    /// Each worker shard's share of `tcp_connection.limit` (0: no cap).
    quotas: Vec<usize>,
    timeout: Duration,
}

impl HttpTransport {
    /// A transport for worker threads that each run `partitions[i]` partitions with `in_flight[i]`
    /// requests in flight (one entry per worker thread, see [`super::Layout`]). A worker may open
    /// `tcp_connection.limit` (or `limit_per_host`, if smaller) connections per partition it runs,
    /// as each legacy partition had its own pool; and never more than it has requests in flight,
    /// whatever the cap: with `limit: 0` and thousands in flight, a pool that raced a new connection
    /// for each waiting request would run out of file descriptors.
    pub fn new(
        config: &config::Transport,
        in_flight: &[usize],
        partitions: &[usize],
    ) -> Result<Self, TransportError> {
        let tls = tls_config(&config.tls)?;
        if config.tls.insecure {
            tracing::warn!(
                "TLS certificate verification is OFF (transport.tcp_connection.tls.verify: false): any server can pretend to be the API"
            );
        }
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
        // Per partition: the smaller of the two caps that are set (0: none).
        let limit = match (config.connection_limit, config.limit_per_host) {
            (0, h) | (h, 0) => h,
            (l, h) => l.min(h),
        };
        let workers = in_flight.len().max(1);
        let quotas: Vec<usize> = (0..workers)
            .map(|w| {
                let needed = in_flight.get(w).copied().unwrap_or(1).max(1);
                let mine = partitions.get(w).copied().unwrap_or(1).max(1);
                if limit == 0 {
                    needed
                } else {
                    (limit * mine).min(needed)
                }
            })
            .collect();
        let force_close = config.force_close;
        let client = |quota: usize, max_idle: usize| {
            Client::builder(TokioExecutor::new())
                .pool_timer(TokioTimer::new())
                .timer(TokioTimer::new())
                .pool_idle_timeout(Duration::from_secs(90))
                // force_close: nothing is kept for the next request.
                .pool_max_idle_per_host(if force_close { 0 } else { max_idle })
                .build(LimitedConnector::new(https.clone(), quota))
        };
        let mut shards = vec![client(limit, 0)];
        shards.extend(quotas.iter().map(|&q| client(q, q)));
        Ok(HttpTransport {
            shards,
            quotas,
            timeout: config.base_timeout,
        })
    }

    /// How many shards: one per worker thread, and shard 0 for every other thread.
    pub fn shards(&self) -> usize {
        self.shards.len()
    }

    /// How many worker threads the transport was made for.
    pub fn workers(&self) -> usize {
        self.shards.len() - 1
    }

    /// How many connections worker `worker` (1-based) may open to one host (0 for a thread that is
    /// not a worker: no cap).
    pub fn quota(&self, worker: usize) -> usize {
        self.quotas
            .get(worker.wrapping_sub(1))
            .copied()
            .unwrap_or(0)
    }

    /// Sends one request and reads the whole response, within `base_timeout`.
    ///
    /// The request is read, not taken: behind middleware it is shared with the chain's record of
    /// what was sent (its metadata, which the response carries on, is then copied); without
    /// middleware it is the only reference and its metadata moves into the response.
    pub async fn send(&self, request: Arc<ApiRequest>) -> Result<ApiResponse, RequestError> {
        let client = &self.shards[crate::worker::pool_index(self.shards.len())];
        let mut builder = http::Request::builder()
            .method(request.method.clone())
            .uri(&request.url);
        for (name, value) in &request.headers {
            builder = builder.header(name, value);
        }
        let http_request = builder
            .body(Full::new(request.body.clone().unwrap_or_default()))
            .map_err(|e| {
                RequestError::of(
                    ErrorKind::InvalidRequest,
                    format!("cannot build the request: {e}"),
                )
            })?;
        let exchange = async {
            let response = client.request(http_request).await.map_err(|e| {
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
            let body = own_small(body);
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
            let mut metadata = ApiRequest::into_metadata(request);
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
impl Sender for HttpTransport {
    fn send(
        &self,
        request: Arc<ApiRequest>,
    ) -> futures::future::BoxFuture<'_, Result<ApiResponse, RequestError>> {
        Box::pin(HttpTransport::send(self, request))
    }
}

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
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TransportError(e.to_string()))?;
    let builder = if tls.insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(insecure::AnyCertificate(provider)))
    } else {
        builder.with_root_certificates(roots)
    };
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

/// A body of one read is a slice of the connection's read buffer (8 KiB or more), and that whole
/// buffer stays allocated as long as the row holds its body (until its batch is committed); the
/// connection meanwhile allocates a new buffer for its next response. A small body is copied out,
/// so the connection reuses its buffer and each row holds only its own bytes: at 4,000 requests in
/// flight that is tens of MiB fewer, and fewer fresh pages for the kernel to zero.
fn own_small(body: Bytes) -> Bytes {
    const SMALL: usize = 16 << 10;
    if body.len() <= SMALL {
        Bytes::copy_from_slice(&body)
    } else {
        body
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transport(limit: usize, per_host: usize, load: &[(usize, usize)]) -> HttpTransport {
        let config = config::Transport {
            connection_limit: limit,
            limit_per_host: per_host,
            ..Default::default()
        };
        let in_flight: Vec<usize> = load.iter().map(|l| l.0).collect();
        let partitions: Vec<usize> = load.iter().map(|l| l.1).collect();
        HttpTransport::new(&config, &in_flight, &partitions).unwrap()
    }

    #[test]
    fn each_partition_has_its_own_cap_and_no_more_than_it_has_in_flight() {
        // (requests in flight, partitions) per worker.
        let quotas = |limit, per_host, load: &[(usize, usize)]| {
            let t = transport(limit, per_host, load);
            (1..=load.len()).map(|w| t.quota(w)).collect::<Vec<_>>()
        };
        assert_eq!(quotas(3, 0, &[(40, 2), (20, 1)]), [6, 3]);
        assert_eq!(
            quotas(2, 0, &[(60, 3), (40, 2)]),
            [6, 4],
            "legacy: limit 2 × 5 partitions"
        );
        assert_eq!(
            quotas(10, 4, &[(40, 2)]),
            [8],
            "limit_per_host when smaller"
        );
        assert_eq!(quotas(0, 4, &[(40, 2)]), [8], "limit_per_host alone");
        // No more connections than requests in flight, with or without a cap.
        assert_eq!(quotas(0, 0, &[(500, 1), (300, 1)]), [500, 300], "no cap");
        assert_eq!(quotas(100, 0, &[(20, 1), (20, 1)]), [20, 20]);
    }
}
