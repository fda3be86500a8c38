//! `header_auth`: sends a fixed credential header (an API key) with every request. Give the value as a
//! secret; the host redacts it from logs and the bronze table (the header name is redacted too when it
//! is one of the usual credential headers, or listed here).
//!
//! ```yaml
//! middleware:
//!   - type: header_auth
//!     header: X-API-Key
//!     value: "{{secret.api:key}}"
//! ```

use std::sync::OnceLock;

use serde::Deserialize;
use sparkwasm_plugin_v2::{Error, Middleware, Request, Response, next};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    header: String,
    value: String,
}

static HEADER: OnceLock<Config> = OnceLock::new();

struct HeaderAuth;

impl Middleware for HeaderAuth {
    fn init() -> Result<(), String> {
        let c: Config = sparkwasm_plugin_v2::config()?;
        if c.header.is_empty() || !c.header.bytes().all(|b| b.is_ascii_graphic() && b != b':') {
            return Err(format!("header: `{}` is not a valid header name", c.header));
        }
        let _ = HEADER.set(c);
        Ok(())
    }

    fn handle(request: Request) -> Result<Response, Error> {
        let c = HEADER.get().expect("init ran");
        request.set_header(&c.header, &c.value);
        next(&request)
    }
}

sparkwasm_plugin_v2::export_middleware!(HeaderAuth);
