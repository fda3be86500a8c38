//! Keeps secrets out of everything sparkwasm writes: the table, logs, errors and reports. One
//! [`Redactor`] per run, built from the pipeline's secret values (`Pipeline::secret_values`),
//! taught every credential acquired later.

use std::borrow::Cow;
use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap, HashSet};

use crate::api::json_str_object;

/// Keeps secrets out of the sink and the logs: credentials in sensitive headers, any secret value
/// from the config and every credential acquired during the run are replaced by `***`.
#[derive(Default)]
pub struct Redactor {
    /// Every form of every secret (see [`forms`]), longest first.
    secrets: Vec<String>,
    /// Credentials acquired at run time (OAuth2 tokens, auth plugin secrets), newest last: each
    /// one's forms, the credential as it is first.
    learned: std::sync::RwLock<Vec<Vec<String>>>,
}

/// The forms a secret takes in what sparkwasm writes: as it is, escaped inside a JSON string (the
/// `request_params` column is a JSON object), percent-encoded as a URL's query or path segment
/// carries it (a secret with `"`, `+`, `/`, `=` or a space is not found as it is in those), and
/// lowercased, as a URL's host is.
fn forms(secret: &str) -> Vec<String> {
    let mut json = String::new();
    crate::api::push_json_str(&mut json, secret);
    let json = json[1..json.len() - 1].to_owned();
    let query: String = url::form_urlencoded::byte_serialize(secret.as_bytes()).collect();
    let path = percent_encoding::utf8_percent_encode(secret, crate::api::PATH_SEGMENT).to_string();
    // A URL's host is lowercased when it is parsed (a secret in `base_url`, or in a target a plugin
    // named, shows up so in the url column and in errors). Not for a short secret: `Admin` would
    // also hide the `admin` of `administrator`.
    let lower = (secret.len() >= LOWERCASED_FROM).then(|| secret.to_ascii_lowercase());
    let mut out = vec![secret.to_owned()];
    for form in [Some(json), Some(query), Some(path), lower]
        .into_iter()
        .flatten()
    {
        if !out.contains(&form) {
            out.push(form);
        }
    }
    out
}

/// The shortest secret whose lowercased form is searched for too.
const LOWERCASED_FROM: usize = 8;

/// How many run-time credentials are remembered (a long run renews its token many times; a token
/// older than the last few is no longer in anything the run reads). Each is searched for in every
/// redacted text, so the list stays short; the config's secrets are kept apart, for the whole run.
const LEARNED: usize = 8;

const SENSITIVE_HEADERS: [&str; 6] = [
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "x-api-key",
    "api-key",
];

/// Whether a header of this name carries a credential (its value is shown as `***`).
pub fn sensitive_header(name: &str) -> bool {
    SENSITIVE_HEADERS
        .iter()
        .any(|h| name.eq_ignore_ascii_case(h))
}

impl Redactor {
    /// A redactor of `secrets` (empty ones ignored).
    pub fn new(secrets: impl IntoIterator<Item = String>) -> Self {
        let mut secrets: Vec<String> = secrets
            .into_iter()
            .filter(|s| !s.is_empty())
            .flat_map(|s| forms(&s))
            .collect();
        // Longest first, so a secret containing another is replaced whole.
        secrets.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        secrets.dedup();
        Redactor {
            secrets,
            learned: Default::default(),
        }
    }

    /// Adds a secret obtained while running (too short to be a secret: ignored, it would mask noise).
    pub fn learn(&self, secret: &str) {
        if secret.len() < 4 {
            return;
        }
        let mut learned = self.learned.write().expect("redactor lock");
        if learned.iter().any(|s| s[0] == secret) {
            return;
        }
        if learned.len() == LEARNED {
            learned.remove(0);
        }
        learned.push(forms(secret));
    }

    /// `text` with every secret replaced by `***`; borrowed when there is nothing to replace.
    pub fn text<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let mut out = Cow::Borrowed(text);
        let learned = self.learned.read().expect("redactor lock");
        for s in self.secrets.iter().chain(learned.iter().rev().flatten()) {
            if out.contains(s.as_str()) {
                out = Cow::Owned(out.replace(s.as_str(), "***"));
            }
        }
        out
    }

    /// Metadata as a JSON object, secrets redacted.
    pub fn metadata(&self, metadata: &BTreeMap<String, String>) -> String {
        json_str_object(metadata.iter().map(|(k, v)| (k, self.text(v))))
    }

    /// Headers as a JSON object, sensitive values redacted.
    ///
    /// A name that comes more than once (`Link`, `Vary`, `Set-Cookie`, or two spellings of one
    /// name) is one key: its values in order, joined with ", " as HTTP combines repeated fields
    /// (RFC 9110, 5.3), under the name's first spelling. An object with a key twice loses values
    /// in every reader, and not the same ones: Python's json and Spark's `from_json` keep the
    /// last, Spark's `get_json_object` the first (tried with pyspark 4).
    pub fn headers(&self, headers: &[(String, String)]) -> String {
        if !repeats(headers) {
            return json_str_object(
                headers
                    .iter()
                    .map(|(name, value)| (name, self.header(name, value))),
            );
        }
        // Each name once, its values joined as they came (and how many), then redacted once: a
        // secret with ", " in it that came in two fields is found in the joined value.
        let mut merged: Vec<(&str, String, usize)> = Vec::with_capacity(headers.len());
        let mut index: HashMap<String, usize> = HashMap::new();
        for (name, value) in headers {
            match index.entry(name.to_ascii_lowercase()) {
                Entry::Occupied(at) => {
                    let (_, joined, count) = &mut merged[*at.get()];
                    joined.push_str(", ");
                    joined.push_str(value);
                    *count += 1;
                }
                Entry::Vacant(at) => {
                    at.insert(merged.len());
                    merged.push((name, value.clone(), 1));
                }
            }
        }
        json_str_object(merged.into_iter().map(|(name, joined, count)| {
            let shown = if sensitive_header(name) {
                vec!["***"; count].join(", ")
            } else {
                self.text(&joined).into_owned()
            };
            (name, shown)
        }))
    }

    /// One header's value as shown: `***` for a sensitive header, else with secrets redacted.
    pub fn header<'a>(&self, name: &str, value: &'a str) -> Cow<'a, str> {
        if sensitive_header(name) {
            Cow::Borrowed("***")
        } else {
            self.text(value)
        }
    }
}

/// Whether a header name comes twice (case-insensitively). Header lists are short as a rule: they
/// are compared pairwise (mostly lengths); a long one (a plugin may set thousands) through a set.
fn repeats(headers: &[(String, String)]) -> bool {
    const PAIRWISE: usize = 32;
    if headers.len() <= PAIRWISE {
        return headers.iter().enumerate().any(|(i, (a, _))| {
            headers[..i]
                .iter()
                .any(|(b, _)| a.len() == b.len() && a.eq_ignore_ascii_case(b))
        });
    }
    let mut seen = HashSet::with_capacity(headers.len());
    !headers
        .iter()
        .all(|(name, _)| seen.insert(name.to_ascii_lowercase()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redactor_hides_secrets_and_credential_headers() {
        let r = Redactor::new(["tok123".to_owned()]);
        assert_eq!(r.text("url?key=tok123&x=1"), "url?key=***&x=1");
        r.learn("fresh-token");
        assert_eq!(r.text("Bearer fresh-token."), "Bearer ***.");
        assert_eq!(
            r.headers(&[
                ("Authorization".into(), "Basic abc".into()),
                ("X-Trace".into(), "tok123".into())
            ]),
            r#"{"Authorization":"***","X-Trace":"***"}"#
        );
    }

    #[test]
    fn a_repeated_header_is_one_key_with_its_values_joined_in_order() {
        let r = Redactor::new(["tok123".to_owned()]);
        let pairs = |names: &[&str]| -> Vec<(String, String)> {
            names
                .iter()
                .enumerate()
                .map(|(i, n)| (n.to_string(), format!("v{i}")))
                .collect()
        };
        assert_eq!(
            r.headers(&pairs(&["link", "vary", "Link", "x", "LINK"])),
            r#"{"link":"v0, v2, v4","vary":"v1","x":"v3"}"#
        );
        // Sensitive and secret values are redacted before they are joined.
        assert_eq!(
            r.headers(&[
                ("authorization".into(), "Bearer a".into()),
                ("Authorization".into(), "Bearer b".into()),
                ("x-trace".into(), "tok123".into()),
                ("X-Trace".into(), "plain".into()),
            ]),
            r#"{"authorization":"***, ***","x-trace":"***, plain"}"#
        );
        // A long list (past the pairwise check) is merged too, and parses with unique keys.
        let mut long: Vec<String> = (0..100).map(|i| format!("h{i}")).collect();
        long.push("H7".into());
        let names: Vec<&str> = long.iter().map(String::as_str).collect();
        let json: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&r.headers(&pairs(&names))).unwrap();
        assert_eq!(json.len(), 100);
        assert_eq!(json["h7"], "v7, v100");
        // No repeat: as they came.
        assert_eq!(r.headers(&pairs(&["a", "b"])), r#"{"a":"v0","b":"v1"}"#);
        // A secret with ", " in it, split over two fields, is found once they are joined.
        let split = Redactor::new(["tok, en".to_owned()]);
        assert_eq!(
            split.headers(&[("x".into(), "tok".into()), ("x".into(), "en".into())]),
            r#"{"x":"***"}"#
        );
    }

    #[test]
    fn a_secret_is_hidden_in_its_json_escaped_and_percent_encoded_forms_too() {
        let secret = r#"ab"c d+/=\x"#;
        let r = Redactor::new([secret.to_owned()]);
        let params = crate::api::json_object([("token", serde_json::Value::from(secret))]);
        assert_eq!(r.text(&params), r#"{"token":"***"}"#);
        let query: String = url::form_urlencoded::byte_serialize(secret.as_bytes()).collect();
        assert_eq!(
            r.text(&format!("https://h/p?k={query}&n=1")),
            "https://h/p?k=***&n=1"
        );
        let path = percent_encoding::utf8_percent_encode(secret, crate::api::PATH_SEGMENT);
        assert_eq!(
            r.text(&format!("https://h/items/{path}/x")),
            "https://h/items/***/x"
        );
        r.learn("fresh token+1");
        assert_eq!(r.text("?t=fresh+token%2B1&u=2"), "?t=***&u=2");
        // As a URL's host: lowercased by the parser.
        let host = Redactor::new(["Us3rS3CRET".to_owned(), "Admin".to_owned()]);
        let url = url::Url::parse("http://Us3rS3CRET.invalid:1/x").unwrap();
        assert_eq!(host.text(url.as_str()), "http://***.invalid:1/x");
        // Not a short one: its lowercased form is a common word.
        assert_eq!(host.text("Admin, administrator"), "***, administrator");
    }
}
