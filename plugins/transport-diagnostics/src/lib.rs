//! `transport_diagnostics`: what the network did, per row. On success the response metadata gets
//! `transport.elapsed_ms` and `transport.status_class`; a failure's message is completed with the error
//! kind and the time spent, e.g. `connection refused [connect after 1.2 ms]`.
//!
//! ```yaml
//! middleware:
//!   - type: transport_diagnostics
//! ```

use serde::Deserialize;
use sparkwasm_plugin_v2::{Error, Middleware, Request, Response, kind_name, next, now_ns};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {}

struct TransportDiagnostics;

impl Middleware for TransportDiagnostics {
    fn init() -> Result<(), String> {
        sparkwasm_plugin_v2::config::<Config>().map(|_| ())
    }

    fn handle(request: Request) -> Result<Response, Error> {
        let started = now_ns();
        let result = next(&request);
        let ms = (now_ns() - started) as f64 / 1e6;
        match result {
            Ok(response) => {
                response.set_metadata("transport.elapsed_ms", &format!("{ms:.3}"));
                let class = format!("{}xx", response.status() / 100);
                response.set_metadata("transport.status_class", &class);
                Ok(response)
            }
            Err(mut e) => {
                e.message = format!("{} [{} after {ms:.1} ms]", e.message, kind_name(e.kind));
                Err(e)
            }
        }
    }
}

sparkwasm_plugin_v2::export_middleware!(TransportDiagnostics);
