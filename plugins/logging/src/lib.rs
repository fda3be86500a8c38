//! `logging`: one log line per request on the way in and one per outcome on the way out.
//!
//! ```yaml
//! middleware:
//!   - type: logging
//!     level: info          # trace | debug | info (default) | warn | error
//! ```
//! Lines go to sparkwasm's log under the plugin's name (filter with RUST_LOG); headers are not
//! logged. Failures are logged at warn whatever the level. The plugin asks only for the hooks whose
//! lines the run's log shows: none when it shows neither level.

use serde::Deserialize;
use sparkwasm_plugin::{
    Action, Error, Hooks, Level, Middleware, Outcome, Request, Response, log, log_enabled, now_ns,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default = "default_level")]
    level: String,
}

fn default_level() -> String {
    "info".into()
}

struct Logging {
    level: Level,
    /// Whether lines at `level` are written (fixed for the run).
    on: bool,
}

const STARTED: &str = "started";

/// Milliseconds since this layer's `on-request` for the row (when it was called).
fn elapsed(request: &Request) -> String {
    match request.scratch(STARTED).and_then(|s| s.parse::<u64>().ok()) {
        Some(started) => format!(
            " in {:.1} ms",
            now_ns().saturating_sub(started) as f64 / 1e6
        ),
        None => String::new(),
    }
}

impl Middleware for Logging {
    type Config = Config;

    fn new(config: Config) -> Result<Self, String> {
        let level = match config.level.as_str() {
            "trace" => Level::Trace,
            "debug" => Level::Debug,
            "info" => Level::Info,
            "warn" => Level::Warn,
            "error" => Level::Error,
            other => {
                return Err(format!(
                    "level: unknown level `{other}` (one of: trace, debug, info, warn, error)"
                ));
            }
        };
        Ok(Logging {
            level,
            on: log_enabled(level),
        })
    }

    fn hooks(&self) -> Hooks {
        match (self.on, log_enabled(Level::Warn)) {
            (true, _) => Hooks::ON_REQUEST | Hooks::ON_RESPONSE | Hooks::ON_ERROR,
            (false, true) => Hooks::ON_ERROR,
            (false, false) => Hooks::empty(),
        }
    }

    fn on_request(&self, request: &Request) -> Result<Action, Error> {
        log(
            self.level,
            &format!("-> {} {}", request.method(), request.url()),
        );
        Ok(Action::Continue)
    }

    fn on_response(&self, request: &Request, response: &Response) -> Outcome {
        log(
            self.level,
            &format!(
                "<- {} {}{}",
                response.status(),
                request.url(),
                elapsed(request)
            ),
        );
        Outcome::Done
    }

    fn on_error(&self, request: &Request, error: Error) -> Outcome {
        log(
            Level::Warn,
            &format!(
                "<- failed {}{}: {}",
                request.url(),
                elapsed(request),
                error.message
            ),
        );
        Outcome::Fail(error)
    }
}

sparkwasm_plugin::export_middleware!(Logging);
