//! `timing`: measures the time the request spends in the rest of the chain (inner middleware, their
//! resends and the network) and records it in the response metadata.
//!
//! ```yaml
//! middleware:
//!   - type: timing
//!     key: elapsed_ms      # the response_metadata key (default elapsed_ms)
//! ```

use serde::Deserialize;
use sparkwasm_plugin::{Hooks, Middleware, Outcome, Request, Response, now_ns};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default = "default_key")]
    key: String,
}

fn default_key() -> String {
    "elapsed_ms".into()
}

struct Timing {
    key: String,
}

impl Middleware for Timing {
    type Config = Config;

    fn new(config: Config) -> Result<Self, String> {
        Ok(Timing { key: config.key })
    }

    fn hooks(&self) -> Hooks {
        Hooks::ON_RESPONSE
    }

    fn on_response(&self, request: &Request, response: &Response) -> Outcome {
        // The host notes when this layer sent the request on: no `on-request` needed to time it.
        let ms = now_ns().saturating_sub(request.sent_at()) as f64 / 1e6;
        response.set_metadata(&self.key, &format!("{ms:.3}"));
        Outcome::Done
    }
}

sparkwasm_plugin::export_middleware!(Timing);
