//! `timing`: measures the time the request spends in the rest of the chain (inner middleware, retries
//! and the network) and records it in the response metadata.
//!
//! ```yaml
//! middleware:
//!   - type: timing
//!     key: elapsed_ms      # the response_metadata key (default elapsed_ms)
//! ```

use std::sync::OnceLock;

use serde::Deserialize;
use sparkwasm_plugin_v2::{Error, Middleware, Request, Response, next, now_ns};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default = "default_key")]
    key: String,
}

fn default_key() -> String {
    "elapsed_ms".into()
}

static KEY: OnceLock<String> = OnceLock::new();

struct Timing;

impl Middleware for Timing {
    fn init() -> Result<(), String> {
        let c: Config = sparkwasm_plugin_v2::config()?;
        let _ = KEY.set(c.key);
        Ok(())
    }

    fn handle(request: Request) -> Result<Response, Error> {
        let started = now_ns();
        let response = next(&request)?;
        let ms = (now_ns() - started) as f64 / 1e6;
        response.set_metadata(KEY.get().expect("init ran"), &format!("{ms:.3}"));
        Ok(response)
    }
}

sparkwasm_plugin_v2::export_middleware!(Timing);
