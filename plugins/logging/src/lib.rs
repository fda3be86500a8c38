//! `logging`: one log line per request on the way in and one per outcome on the way out.
//!
//! ```yaml
//! middleware:
//!   - type: logging
//!     level: info          # trace | debug | info (default) | warn | error
//! ```
//! Lines go to sparkwasm's log under the plugin's name (filter with RUST_LOG); headers are not logged.

use std::sync::OnceLock;

use serde::Deserialize;
use sparkwasm_plugin_v2::{
    Error, Level, Middleware, Request, Response, log, log_enabled, next, now_ns,
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

static LEVEL: OnceLock<Level> = OnceLock::new();

struct Logging;

impl Middleware for Logging {
    fn init() -> Result<(), String> {
        let c: Config = sparkwasm_plugin_v2::config()?;
        let level = match c.level.as_str() {
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
        let _ = LEVEL.set(level);
        Ok(())
    }

    fn handle(request: Request) -> Result<Response, Error> {
        let level = *LEVEL.get().expect("init ran");
        // Nothing is read from the request or the response unless a line will be written.
        let (on, warn) = (log_enabled(level), log_enabled(Level::Warn));
        if !on && !warn {
            return next(&request);
        }
        let url = request.url();
        if on {
            log(level, &format!("-> {} {url}", request.method()));
        }
        let started = now_ns();
        let result = next(&request);
        let ms = (now_ns() - started) as f64 / 1e6;
        match &result {
            Ok(r) if on => log(level, &format!("<- {} {url} in {ms:.1} ms", r.status())),
            Ok(_) => {}
            Err(e) => log(
                Level::Warn,
                &format!("<- failed {url} in {ms:.1} ms: {}", e.message),
            ),
        }
        result
    }
}

sparkwasm_plugin_v2::export_middleware!(Logging);
