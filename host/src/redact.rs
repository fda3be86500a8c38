//! Keeps secrets out of everything sparkwasm writes: the table, logs, errors and reports. One
//! [`Redactor`] per run, built from the pipeline's secret values (`Pipeline::secret_values`),
//! taught every credential acquired later.

use std::borrow::Cow;
use std::collections::BTreeMap;

use crate::api::json_str_object;

/// Keeps secrets out of the sink and the logs: credentials in sensitive headers, any secret value
/// from the config and every credential acquired during the run are replaced by `***`.
#[derive(Default)]
pub struct Redactor {
    secrets: Vec<String>,
    /// Credentials acquired at run time (OAuth2 tokens, auth plugin secrets), newest last.
    learned: std::sync::RwLock<Vec<String>>,
}

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

impl Redactor {
    /// A redactor of `secrets` (empty ones ignored).
    pub fn new(secrets: impl IntoIterator<Item = String>) -> Self {
        let mut secrets: Vec<String> = secrets.into_iter().filter(|s| !s.is_empty()).collect();
        // Longest first, so a secret containing another is replaced whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
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
        if learned.iter().any(|s| s == secret) {
            return;
        }
        if learned.len() == LEARNED {
            learned.remove(0);
        }
        learned.push(secret.to_owned());
    }

    /// `text` with every secret replaced by `***`; borrowed when there is nothing to replace.
    pub fn text<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let mut out = Cow::Borrowed(text);
        let learned = self.learned.read().expect("redactor lock");
        for s in self.secrets.iter().chain(learned.iter().rev()) {
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
    pub fn headers(&self, headers: &[(String, String)]) -> String {
        json_str_object(
            headers
                .iter()
                .map(|(name, value)| (name, self.header(name, value))),
        )
    }

    /// One header's value as shown: `***` for a sensitive header, else with secrets redacted.
    pub fn header<'a>(&self, name: &str, value: &'a str) -> Cow<'a, str> {
        if SENSITIVE_HEADERS
            .iter()
            .any(|h| name.eq_ignore_ascii_case(h))
        {
            Cow::Borrowed("***")
        } else {
            self.text(value)
        }
    }
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
}
