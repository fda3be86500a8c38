//! `param_injector`: adds fixed parameters to every request — query parameters, and fields of a JSON
//! object body (POST/PUT/PATCH with a column_mapping).
//!
//! ```yaml
//! middleware:
//!   - type: param_injector
//!     params: {api_version: "2024-01", region: eu}   # added to the query string
//!     body: {source: sparkwasm}                      # merged into a JSON object body (row values win)
//! ```

use std::sync::OnceLock;

use serde::Deserialize;
use serde_json::{Map, Value};
use sparkwasm_plugin_v2::{Error, ErrorKind, Middleware, Request, Response, error, next};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default)]
    params: Map<String, Value>,
    #[serde(default)]
    body: Map<String, Value>,
}

struct Prepared {
    /// `k=v&k=v`, percent-encoded.
    query: String,
    body: Map<String, Value>,
}

static PREPARED: OnceLock<Prepared> = OnceLock::new();

/// Percent-encodes a query component (unreserved characters stay).
fn encode(s: &str, out: &mut String) {
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

struct ParamInjector;

impl Middleware for ParamInjector {
    fn init() -> Result<(), String> {
        let c: Config = sparkwasm_plugin_v2::config()?;
        let mut query = String::new();
        for (k, v) in &c.params {
            let v = scalar(v)
                .ok_or_else(|| format!("params.{k}: expected a string, number or boolean"))?;
            if !query.is_empty() {
                query.push('&');
            }
            encode(k, &mut query);
            query.push('=');
            encode(&v, &mut query);
        }
        let _ = PREPARED.set(Prepared {
            query,
            body: c.body,
        });
        Ok(())
    }

    fn handle(request: Request) -> Result<Response, Error> {
        let p = PREPARED.get().expect("init ran");
        if !p.query.is_empty() {
            let url = request.url();
            let (base, fragment) = match url.split_once('#') {
                Some((b, f)) => (b, Some(f)),
                None => (url.as_str(), None),
            };
            let sep = if base.contains('?') { '&' } else { '?' };
            let mut with_query = format!("{base}{sep}{}", p.query);
            if let Some(f) = fragment {
                with_query = format!("{with_query}#{f}");
            }
            request.set_url(&with_query);
        }
        if !p.body.is_empty()
            && let Some(body) = request.body()
        {
            let mut object: Map<String, Value> = serde_json::from_slice(&body).map_err(|e| {
                error(
                    ErrorKind::Rejected,
                    format!("body is not a JSON object: {e}"),
                )
            })?;
            for (k, v) in &p.body {
                object.entry(k.clone()).or_insert_with(|| v.clone());
            }
            request.set_body(Some(&serde_json::to_vec(&object).expect("serializable")));
        }
        next(&request)
    }
}

sparkwasm_plugin_v2::export_middleware!(ParamInjector);
