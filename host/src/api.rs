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

/// Characters escaped in a path segment: everything but RFC 3986's unreserved set.
pub const PATH_SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'/')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'`')
    .add(b'{')
    .add(b'}')
    .add(b'[')
    .add(b']')
    .add(b'\\')
    .add(b'^')
    .add(b'|')
    .add(b':')
    .add(b';')
    .add(b'=')
    .add(b'@')
    .add(b'&')
    .add(b'+')
    .add(b',')
    .add(b'$')
    .add(b'!')
    .add(b'\'')
    .add(b'(')
    .add(b')')
    .add(b'*');

/// A JSON object with its keys in the given order.
pub fn json_object<'a>(pairs: impl IntoIterator<Item = (&'a str, serde_json::Value)>) -> String {
    object(pairs, |out, value| match &value {
        serde_json::Value::String(s) => push_json_str(out, s),
        other => out.push_str(&other.to_string()),
    })
}

/// A JSON object of string values with its keys in the given order: what [`json_object`] writes
/// for `Value::String`s, without building a `Value` per entry (it runs for every header and
/// metadata entry of every row).
pub fn json_str_object<K: AsRef<str>, V: AsRef<str>>(
    pairs: impl IntoIterator<Item = (K, V)>,
) -> String {
    object(pairs, |out, value| push_json_str(out, value.as_ref()))
}

/// `{"key":value,...}`, each value written by `value`.
fn object<K: AsRef<str>, V>(
    pairs: impl IntoIterator<Item = (K, V)>,
    mut value: impl FnMut(&mut String, V),
) -> String {
    let mut out = String::with_capacity(64);
    out.push('{');
    for (i, (k, v)) in pairs.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_json_str(&mut out, k.as_ref());
        out.push(':');
        value(&mut out, v);
    }
    out.push('}');
    out
}

/// Appends `byte` as two lowercase hex digits.
pub fn push_hex(out: &mut String, byte: u8) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(HEX[(byte >> 4) as usize] as char);
    out.push(HEX[(byte & 0xf) as usize] as char);
}

/// Appends `s` as a JSON string, escaped as serde_json escapes it (`\"`, `\\`, the short escapes
/// of `\b \f \n \r \t`, other control characters as `\u00xx`; nothing else).
pub fn push_json_str(out: &mut String, s: &str) {
    out.reserve(s.len() + 2);
    out.push('"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let short = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0..=0x1f => "",
            _ => continue,
        };
        // Every byte matched above is ASCII, so `i` is a character boundary.
        out.push_str(&s[start..i]);
        if short.is_empty() {
            out.push_str("\\u00");
            push_hex(out, b);
        } else {
            out.push_str(short);
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

/// Sends a request over the network and reads the whole answer: the run's pooled client, as the
/// stages before the executor see it (an auth plugin's outbound fetch, a token request).
pub trait Sender: Send + Sync {
    /// Sends `request`; a response of any status is `Ok`.
    fn send(&self, request: Arc<ApiRequest>) -> BoxFuture<'_, Result<ApiResponse, RequestError>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_strings_are_escaped_exactly_as_serde_json_escapes_them() {
        let texts = [
            "",
            "plain",
            "quote \" and backslash \\",
            "lines\n\r\ttab",
            "\u{8}\u{c}\u{0}\u{1}\u{1f}\u{7f}",
            "é ü 日本 🦀 </script>",
            "\u{1b}[31mred",
        ];
        let ascii: String = (0u8..128).map(char::from).collect();
        for t in texts.iter().copied().chain([ascii.as_str()]) {
            let mut ours = String::new();
            push_json_str(&mut ours, t);
            assert_eq!(ours, serde_json::Value::from(t).to_string(), "{t:?}");
        }
        let pairs = [("a\"b", "c\nd"), ("k", "\u{2}")];
        let expected = format!(
            "{{{}}}",
            pairs
                .iter()
                .map(|(k, v)| format!(
                    "{}:{}",
                    serde_json::Value::from(*k),
                    serde_json::Value::from(*v)
                ))
                .collect::<Vec<_>>()
                .join(",")
        );
        assert_eq!(json_str_object(pairs), expected);
        let values = [
            ("s", serde_json::json!("x\"y")),
            ("n", serde_json::json!(1.5)),
            ("z", serde_json::Value::Null),
        ];
        assert_eq!(json_object(values), r#"{"s":"x\"y","n":1.5,"z":null}"#);
    }
}
