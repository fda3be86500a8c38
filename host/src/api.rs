//! The HTTP values every stage shares: a request, a response, and why a request got no response.
//! Plain data, no behaviour of any stage.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use http::Method;

/// An HTTP request as middleware sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct ApiRequest {
    pub method: Method,
    pub url: String,
    pub headers: Vec<(String, String)>,
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
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
    /// Lands in `response_metadata`.
    pub metadata: BTreeMap<String, String>,
}

impl ApiResponse {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// Why a request got no response: a transport failure, a timeout, or a middleware's refusal.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct RequestError {
    pub kind: ErrorKind,
    pub message: String,
}

/// What kind of failure a [`RequestError`] is (the WIT's `error-kind`): retry policies decide on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    Connect,
    Tls,
    Reset,
    Timeout,
    InvalidRequest,
    Rejected,
    Other,
}

impl RequestError {
    pub fn new(message: impl Into<String>) -> Self {
        Self::of(ErrorKind::Other, message)
    }

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
