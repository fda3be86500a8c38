//! The HTTP values every stage shares: a request, a response, and why a request got no response.
//! Plain data, no behaviour of any stage.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use futures::future::BoxFuture;
use http::Method;

/// An HTTP request as middleware sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct ApiRequest {
    /// The method.
    pub method: Method,
    /// The absolute URL, query included.
    pub url: String,
    /// Header names and values, in order (names are case-insensitive; duplicates allowed).
    pub headers: Vec<(String, String)>,
    /// The body, if any.
    pub body: Option<Bytes>,
    /// Free-form notes from the host and middleware; lands in `request_metadata`.
    pub metadata: BTreeMap<String, String>,
}

impl ApiRequest {
    /// The request's metadata, moved out when `request` is the only reference, copied otherwise.
    pub fn into_metadata(request: Arc<ApiRequest>) -> BTreeMap<String, String> {
        Arc::try_unwrap(request)
            .map(|r| r.metadata)
            .unwrap_or_else(|shared| shared.metadata.clone())
    }
}

/// An HTTP response as middleware sees it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ApiResponse {
    /// The HTTP status.
    pub status: u16,
    /// Header names and values, in order.
    pub headers: Vec<(String, String)>,
    /// The body, whole.
    pub body: Bytes,
    /// Lands in `response_metadata`.
    pub metadata: BTreeMap<String, String>,
}

impl ApiResponse {
    /// A 2xx status.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// Why a request got no response: a transport failure, a timeout, or a middleware's refusal.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct RequestError {
    /// What kind of failure.
    pub kind: ErrorKind,
    /// What happened, for the row's `error_message`.
    pub message: String,
}

/// What kind of failure a [`RequestError`] is (the WIT's `error-kind`): retry policies decide on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// No connection could be made (refused, DNS, unreachable).
    Connect,
    /// The TLS handshake failed.
    Tls,
    /// The connection broke mid-request.
    Reset,
    /// The request did not complete within its timeout.
    Timeout,
    /// The request could not be built or sent.
    InvalidRequest,
    /// A plugin refused the request or the response.
    Rejected,
    /// Anything else.
    Other,
}

impl RequestError {
    /// An error of kind `Other`.
    pub fn new(message: impl Into<String>) -> Self {
        Self::of(ErrorKind::Other, message)
    }

    /// An error of `kind`.
    pub fn of(kind: ErrorKind, message: impl Into<String>) -> Self {
        RequestError {
            kind,
            message: message.into(),
        }
    }
}

/// A JSON object with its keys in the given order.
pub fn json_object<'a>(pairs: impl IntoIterator<Item = (&'a str, serde_json::Value)>) -> String {
    let mut out = String::from("{");
    for (i, (key, value)) in pairs.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&serde_json::Value::from(key).to_string());
        out.push(':');
        out.push_str(&value.to_string());
    }
    out.push('}');
    out
}

/// Sends a request over the network and reads the whole answer: the run's pooled client, as the
/// stages before the executor see it (an auth plugin's outbound fetch, a token request).
pub trait Sender: Send + Sync {
    /// Sends `request`; a response of any status is `Ok`.
    fn send(&self, request: Arc<ApiRequest>) -> BoxFuture<'_, Result<ApiResponse, RequestError>>;
}
