//! `timing`: measures the time the request spends in the rest of the chain (inner middleware, their
//! resends and the network) and records it in the response metadata.
//!
//! ```yaml
//! middleware:
//!   - type: timing
//!     key: elapsed_ms      # the response_metadata key (default elapsed_ms)
//! ```

use serde::Deserialize;
use sparkwasm_plugin::{Action, Error, Hooks, Middleware, Outcome, Request, Response, now_ns};

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

const STARTED: &str = "started";

impl Middleware for Timing {
    type Config = Config;

    fn new(config: Config) -> Result<Self, String> {
        Ok(Timing { key: config.key })
    }

    fn hooks(&self) -> Hooks {
        Hooks::ON_REQUEST | Hooks::ON_RESPONSE
    }

    fn on_request(&self, request: &Request) -> Result<Action, Error> {
        request.set_scratch(STARTED, &now_ns().to_string());
        Ok(Action::Continue)
    }

    fn on_response(&self, request: &Request, response: &Response) -> Outcome {
        if let Some(started) = request.scratch(STARTED).and_then(|s| s.parse::<u64>().ok()) {
            let ms = now_ns().saturating_sub(started) as f64 / 1e6;
            response.set_metadata(&self.key, &format!("{ms:.3}"));
        }
        Outcome::Done
    }
}

sparkwasm_plugin::export_middleware!(Timing);
