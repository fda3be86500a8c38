//! `param_injector`: adds fixed parameters to every request — query parameters, and fields of a JSON
//! object body (POST/PUT/PATCH with a column_mapping).
//!
//! ```yaml
//! middleware:
//!   - type: param_injector
//!     params: {api_version: "2024-01", region: eu}   # added to the query string
//!     body: {source: sparkwasm}                      # merged into a JSON object body (row values win)
//! ```

use serde::Deserialize;
use serde_json::{Map, Value};
use sparkwasm_plugin::{Action, Error, ErrorKind, Hooks, Middleware, Request, error};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default)]
    params: Map<String, Value>,
    #[serde(default)]
    body: Map<String, Value>,
}

struct ParamInjector {
    /// `k=v&k=v`, percent-encoded.
    query: String,
    body: Map<String, Value>,
}

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

impl Middleware for ParamInjector {
    type Config = Config;

    fn new(config: Config) -> Result<Self, String> {
        let mut query = String::new();
        for (k, v) in &config.params {
            let v = scalar(v)
                .ok_or_else(|| format!("params.{k}: expected a string, number or boolean"))?;
            if !query.is_empty() {
                query.push('&');
            }
            encode(k, &mut query);
            query.push('=');
            encode(&v, &mut query);
        }
        Ok(ParamInjector {
            query,
            body: config.body,
        })
    }

    fn hooks(&self) -> Hooks {
        Hooks::ON_REQUEST
    }

    fn on_request(&self, request: &Request) -> Result<Action, Error> {
        if !self.query.is_empty() {
            let url = request.url();
            let (base, fragment) = match url.split_once('#') {
                Some((b, f)) => (b, Some(f)),
                None => (url.as_str(), None),
            };
            let sep = if base.contains('?') { '&' } else { '?' };
            let mut with_query = format!("{base}{sep}{}", self.query);
            if let Some(f) = fragment {
                with_query = format!("{with_query}#{f}");
            }
            request.set_url(&with_query);
        }
        if !self.body.is_empty()
            && let Some(body) = request.body()
        {
            let mut object: Map<String, Value> = serde_json::from_slice(&body).map_err(|e| {
                error(
                    ErrorKind::Rejected,
                    format!("body is not a JSON object: {e}"),
                )
            })?;
            for (k, v) in &self.body {
                object.entry(k.clone()).or_insert_with(|| v.clone());
            }
            request.set_body(Some(&serde_json::to_vec(&object).expect("serializable")));
        }
        Ok(Action::Continue)
    }
}

sparkwasm_plugin::export_middleware!(ParamInjector);
