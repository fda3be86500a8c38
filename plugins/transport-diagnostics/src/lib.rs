//! `transport_diagnostics`: what the network did, per row. On success the response metadata gets
//! `transport.elapsed_ms` and `transport.status_class`; a failure's message is completed with the error
//! kind and the time spent, e.g. `connection refused [connect after 1.2 ms]`.
//!
//! ```yaml
//! middleware:
//!   - type: transport_diagnostics
//! ```

use serde::Deserialize;
use sparkwasm_plugin::{Error, Hooks, Middleware, Outcome, Request, Response, kind_name, now_ns};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {}

struct TransportDiagnostics;

/// Milliseconds since this layer sent the request on (the host notes when).
fn elapsed_ms(request: &Request) -> f64 {
    now_ns().saturating_sub(request.sent_at()) as f64 / 1e6
}

impl Middleware for TransportDiagnostics {
    type Config = Config;

    fn new(_: Config) -> Result<Self, String> {
        Ok(TransportDiagnostics)
    }

    fn hooks(&self) -> Hooks {
        Hooks::ON_RESPONSE | Hooks::ON_ERROR
    }

    fn on_response(&self, request: &Request, response: &Response) -> Outcome {
        let ms = elapsed_ms(request);
        response.set_metadata("transport.elapsed_ms", &format!("{ms:.3}"));
        let class = format!("{}xx", response.status() / 100);
        response.set_metadata("transport.status_class", &class);
        Outcome::Done
    }

    fn on_error(&self, request: &Request, mut error: Error) -> Outcome {
        let ms = elapsed_ms(request);
        error.message = format!(
            "{} [{} after {ms:.1} ms]",
            error.message,
            kind_name(error.kind)
        );
        Outcome::Fail(error)
    }
}

sparkwasm_plugin::export_middleware!(TransportDiagnostics);
