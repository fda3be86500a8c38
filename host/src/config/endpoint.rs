//! `endpoint`: the API every row calls. `url_path` is a template: `{column}` takes the row's value.

use super::keys::{KeySpec, Kind};
use super::walk::{Field, Section, Walker};

/// The `endpoint` section.
#[derive(Clone, Debug)]
pub struct Endpoint {
    /// Names the pipeline (its transaction id in the sink); else the file's stem.
    pub name: Option<String>,
    /// Informational (legacy).
    pub vendor: Option<String>,
    /// `GET`, `POST`, `PUT`, `PATCH` or `DELETE`.
    pub method: http::Method,
    /// The API's root URL.
    pub base_url: url::Url,
    /// Path template appended to `base_url`; `{column}` is replaced by the row's value,
    /// percent-encoded as one path segment.
    pub url_path: String,
    /// Headers sent with every request (those given as secrets are credentials: see
    /// `Pipeline::credentials`).
    pub headers: Vec<Header>,
}

/// A header of the endpoint.
#[derive(Clone, Debug)]
pub struct Header {
    /// Its name.
    pub name: String,
    /// Its value.
    pub value: String,
    /// The value came from a secret: it is a credential, added by the host after the chain.
    pub secret: bool,
}

/// The methods an endpoint may use.
const METHODS: &[&str] = &["GET", "POST", "PUT", "PATCH", "DELETE"];

/// The keys of `endpoint`.
pub(crate) const KEYS: &[KeySpec] = &[
    KeySpec::new(
        "name",
        Kind::Text,
        "Names the pipeline (its transaction id in the sink); default: the file's name.",
    ),
    KeySpec::new("vendor", Kind::Text, "Informational (legacy)."),
    KeySpec::new("method", Kind::Choice(METHODS), "The HTTP method.").default(|| "GET".into()),
    KeySpec::new("base_url", Kind::Url, "The API's root URL.").alias(&["base_path"]),
    KeySpec::new(
        "url_path",
        Kind::Text,
        "Path appended to base_url; {column} takes the row's value, percent-encoded.",
    ),
    KeySpec::new(
        "headers",
        Kind::TextMap,
        "Headers sent with every request; values given as secrets are credentials.",
    ),
];

/// Reads `endpoint` (required).
pub(crate) fn read(w: &mut Walker, e: &Section<'_>, present: bool) -> Option<Endpoint> {
    if !present {
        w.error(
            &e.path,
            e.pos,
            "missing required section: endpoint (with base_url)",
        );
        return None;
    }
    let name = w.name(e.get("name"));
    let vendor = w.name(e.get("vendor"));
    let method = match e.get("method") {
        Some(_) => w
            .choice_of(e, "method")
            .map(|m| m.parse().expect("listed methods parse")),
        None => Some(http::Method::GET),
    };
    let base_url = w
        .require(e, "base_url", "base_url (or base_path), the API's root URL")
        .and_then(|f| url(w, f));
    let url_path = w.string(e.get("url_path")).unwrap_or_default();
    if let Some(f) = e.get("url_path") {
        check_placeholders(w, f, &url_path);
    }
    let headers = w
        .string_map(e.get("headers"))
        .into_iter()
        .map(|(name, value, secret)| Header {
            name,
            value,
            secret,
        })
        .collect::<Vec<_>>();
    if let Some(f) = e.get("headers") {
        for h in &headers {
            if http::HeaderName::from_bytes(h.name.as_bytes()).is_err()
                || http::HeaderValue::from_str(&h.value).is_err()
            {
                w.error(
                    &format!("{}.{}", f.path, h.name),
                    f.node.pos,
                    "not a valid HTTP header",
                );
            }
        }
    }
    Some(Endpoint {
        name,
        vendor,
        method: method?,
        base_url: base_url?,
        url_path,
        headers,
    })
}

/// An http(s) URL with a host (a value from a secret is never shown).
pub(crate) fn url(w: &mut Walker, f: Field<'_>) -> Option<url::Url> {
    let text = w.name(Some(f))?;
    match url::Url::parse(&text) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Some(u),
        Ok(u) => {
            w.error(
                f.path,
                f.node.pos,
                format!(
                    "expected an http:// or https:// URL, found scheme `{}`",
                    u.scheme()
                ),
            );
            None
        }
        Err(e) => {
            let shown = if f.node.secret {
                "(from a secret, not shown)".to_owned()
            } else {
                format!("`{text}`")
            };
            w.error(f.path, f.node.pos, format!("not a URL {shown}: {e}"));
            None
        }
    }
}

/// Balanced `{...}` placeholders, each naming something.
fn check_placeholders(w: &mut Walker, f: Field<'_>, template: &str) {
    let mut rest = template;
    while let Some(open) = rest.find(['{', '}']) {
        if rest.as_bytes()[open] == b'}' {
            w.error(
                f.path,
                f.node.pos,
                "`}` without `{` (placeholders are written {column})",
            );
            return;
        }
        let Some(close) = rest[open..].find('}') else {
            w.error(
                f.path,
                f.node.pos,
                "`{` without `}` (placeholders are written {column})",
            );
            return;
        };
        if rest[open + 1..open + close].trim().is_empty() {
            w.error(
                f.path,
                f.node.pos,
                "empty placeholder `{}`: name a column, e.g. {customer_id}",
            );
        }
        rest = &rest[open + close + 1..];
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::errors;

    #[test]
    fn the_url_and_placeholders_are_checked() {
        assert_eq!(
            errors("endpoint: {base_url: \"ftp://x\", url_path: \"/a/{id\"}\n"),
            [
                "1:22: endpoint.base_url: expected an http:// or https:// URL, found scheme `ftp`",
                "1:43: endpoint.url_path: `{` without `}` (placeholders are written {column})"
            ]
        );
    }
}
