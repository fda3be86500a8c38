//! `endpoint`: the API every row calls. `url_path` is a template: `{column}` takes the row's value.
//! A full URL in `url_path` is the request URL (the legacy framework's rule: its `base_url` was
//! never used); a path is joined to `base_url`.

use std::path::Path;

use super::keys::{KeySpec, Kind};
use super::probe::Probe;
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
    /// The API's origin (and root path): `base_url`, or the origin of a full-URL `url_path`.
    pub base_url: url::Url,
    /// Path template appended to `base_url`; `{column}` is replaced by the row's value,
    /// percent-encoded as one path segment.
    pub url_path: String,
    /// Headers sent with every request (those given as secrets or named like a credential are
    /// credentials: see `Pipeline::credentials`).
    pub headers: Vec<Header>,
    /// Static query parameters sent with every request, before the mapped columns.
    pub params: Vec<(String, String)>,
    /// The JSON body template: a string value that is exactly `{column}` takes the row's typed
    /// value; `{column}` inside other text takes its text. Without it no body is sent.
    pub request_template: Option<serde_json::Value>,
    /// A JSON Schema every successful (2xx) response body must satisfy; a body that does not fails
    /// its row, naming the JSON pointer.
    pub response_schema: Option<serde_json::Value>,
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
    KeySpec::new(
        "base_url",
        Kind::Url,
        "The API's root URL (not needed when url_path is a full URL).",
    )
    .alias(&["base_path"]),
    KeySpec::new(
        "url_path",
        Kind::Text,
        "The request URL: a full URL, or a path joined to base_url; {column} takes the row's value, percent-encoded.",
    ),
    KeySpec::new(
        "headers",
        Kind::TextMap,
        "Headers sent with every request; values given as secrets are credentials.",
    ),
    KeySpec::new(
        "params",
        Kind::TextMap,
        "Static query parameters sent with every request (before the mapped columns).",
    ),
    KeySpec::new(
        "request_template",
        Kind::Any,
        "The JSON body: \"{column}\" alone takes the row's typed value, {column} in text its text. Without it, no body.",
    ),
    KeySpec::new(
        "response_schema",
        Kind::Any,
        "A JSON Schema (inline, as JSON text, or a file path) every 2xx response body must satisfy; else the row fails.",
    ),
];

/// Reads `endpoint` (required).
pub(crate) fn read(
    w: &mut Walker,
    e: &Section<'_>,
    present: bool,
    base_dir: &Path,
    probes: &mut Vec<Probe>,
) -> Option<Endpoint> {
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
    let written_base = e.get("base_url").and_then(|f| url(w, f));
    let mut url_path = w.string(e.get("url_path")).unwrap_or_default();
    if let Some(f) = e.get("url_path") {
        check_placeholders(w, f, &url_path);
        if url_path.contains('#') {
            w.error(f.path, f.node.pos, FRAGMENT);
        }
    }
    let base_url = match e.get("url_path").map(|f| (f, full_url(&url_path))) {
        // A full URL: its origin is the endpoint's, the rest the path template.
        Some((f, Some((origin, path)))) => {
            if origin.contains(['{', '}']) {
                w.error(
                    f.path,
                    f.node.pos,
                    "placeholders go in the path or the query, not in the scheme, host or port",
                );
            }
            let origin = url::Url::parse(origin).ok().filter(|u| u.host().is_some());
            if origin.is_none() {
                w.error(f.path, f.node.pos, "not a URL: no host after the scheme");
            }
            if let (Some(written), Some(origin), Some(bf)) =
                (&written_base, &origin, e.get("base_url"))
                && written.origin() != origin.origin()
            {
                w.warn(
                    bf.path,
                    bf.node.pos,
                    "has no effect: url_path is a full URL (on another host), and it is the request URL",
                );
            }
            url_path = path.to_owned();
            origin
        }
        Some((f, None)) if url_path.contains("://") => {
            w.error(
                f.path,
                f.node.pos,
                "holds a URL after other text (a doubled scheme): write the full URL alone, or a path relative to base_url",
            );
            None
        }
        _ => {
            if e.get("base_url").is_none() {
                w.require(
                    e,
                    "base_url",
                    "base_url (or base_path), the API's root URL, unless url_path is a full URL",
                );
            }
            written_base
        }
    };
    let params = w
        .string_map(e.get("params"))
        .into_iter()
        .map(|(name, value, _)| (name, value))
        .collect();
    let request_template = e.get("request_template").map(|f| {
        let template = f.node.to_json();
        check_template(w, f, &template);
        template
    });
    let response_schema = e
        .get("response_schema")
        .and_then(|f| response_schema(w, f, base_dir, probes));
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
            let path = format!("{}.{}", f.path, h.name);
            if w.header_name(&path, f.node.pos, &h.name) {
                w.header_value(&path, f.node.pos, &h.value);
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
        params,
        request_template,
        response_schema,
    })
}

/// `(origin, rest)` of a full http(s) URL: `https://h:8443/a/{id}` → (`https://h:8443`, `/a/{id}`).
fn full_url(text: &str) -> Option<(&str, &str)> {
    let lower = text.get(..8)?.to_ascii_lowercase();
    let after_scheme = if lower.starts_with("https://") {
        8
    } else if lower.starts_with("http://") {
        7
    } else {
        return None;
    };
    let end = text[after_scheme..]
        .find(['/', '?'])
        .map_or(text.len(), |i| after_scheme + i);
    Some((&text[..end], &text[end..]))
}

/// Every `{...}` in the template's strings names something (checked against the source later).
fn check_template(w: &mut Walker, f: Field<'_>, template: &serde_json::Value) {
    match template {
        serde_json::Value::String(text) => check_placeholders(w, f, text),
        serde_json::Value::Array(items) => items.iter().for_each(|v| check_template(w, f, v)),
        serde_json::Value::Object(map) => map.values().for_each(|v| check_template(w, f, v)),
        _ => {}
    }
}

/// The schema: a mapping, or JSON text; any other string is a file path, read by the probe step. A
/// schema that does not compile is an error here, not on the first row.
fn response_schema(
    w: &mut Walker,
    f: Field<'_>,
    base_dir: &Path,
    probes: &mut Vec<Probe>,
) -> Option<serde_json::Value> {
    let schema = match f.node.to_json() {
        serde_json::Value::String(text) if !text.trim_start().starts_with('{') => {
            probes.push(Probe::ResponseSchema {
                key: f.path.to_owned(),
                pos: f.node.pos,
                path: base_dir.join(&text),
                written: text,
            });
            return None;
        }
        serde_json::Value::String(text) => match serde_json::from_str(&text) {
            Ok(v) => v,
            Err(e) => {
                w.error(f.path, f.node.pos, format!("not valid JSON: {e}"));
                return None;
            }
        },
        other => other,
    };
    if let Err(e) = jsonschema::validator_for(&schema) {
        w.error(f.path, f.node.pos, format!("not a valid JSON Schema: {e}"));
        return None;
    }
    Some(schema)
}

/// A `#` in a request's URL: everything after it is a fragment, which no HTTP client sends.
const FRAGMENT: &str = "has a `#`: what follows it would never be sent (a URL's fragment stays with the client); write it %23 if it belongs to a value";

/// An http(s) URL with a host, without a fragment (a value from a secret is never shown).
pub(crate) fn url(w: &mut Walker, f: Field<'_>) -> Option<url::Url> {
    let text = w.name(Some(f))?;
    match url::Url::parse(&text) {
        Ok(u) if u.fragment().is_some() => {
            w.error(f.path, f.node.pos, FRAGMENT);
            None
        }
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

    #[test]
    fn a_fragment_is_refused_in_the_url_it_would_cut() {
        // A `#` (as a secret may hold) would cut the URL there: the API would get a part of it.
        let cut = "has a `#`: what follows it would never be sent";
        let e = errors("endpoint: {base_url: \"http://x/#a\", url_path: \"/a/{id}?k=v#1\"}\n");
        assert_eq!(e.len(), 2, "{e:#?}");
        assert!(
            e[0].starts_with(&format!("1:22: endpoint.base_url: {cut}")),
            "{e:#?}"
        );
        assert!(
            e[1].starts_with(&format!("1:47: endpoint.url_path: {cut}")),
            "{e:#?}"
        );
        let e = errors("endpoint: {url_path: \"http://x/a/{id}#top\"}\n");
        assert!(
            e[0].starts_with(&format!("1:22: endpoint.url_path: {cut}")),
            "{e:#?}"
        );
        assert!(
            errors("endpoint: {base_url: \"http://x/\", url_path: \"/a/%23/{id}\"}\n").is_empty()
        );
    }
}
