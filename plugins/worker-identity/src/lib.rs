//! `worker_identity`: tells the API which worker sent each request — a header and request metadata
//! `worker_id` = `<host>/<pipeline>/p<partition>-c<consumer>`.
//!
//! ```yaml
//! middleware:
//!   - type: worker_identity
//!     header: X-Worker-Id    # default; null sends no header (metadata only)
//! ```

use std::sync::OnceLock;

use serde::Deserialize;
use sparkwasm_plugin_v2::{Error, Middleware, Request, Response, host, next};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default = "default_header")]
    header: Option<String>,
}

fn default_header() -> Option<String> {
    Some("X-Worker-Id".into())
}

static HEADER: OnceLock<Option<String>> = OnceLock::new();

struct WorkerIdentity;

impl Middleware for WorkerIdentity {
    fn init() -> Result<(), String> {
        let c: Config = sparkwasm_plugin_v2::config()?;
        let _ = HEADER.set(c.header);
        Ok(())
    }

    fn handle(request: Request) -> Result<Response, Error> {
        let me = host::whoami();
        let id = format!("{}/p{}-c{}", me.process, me.partition, me.consumer);
        if let Some(name) = HEADER.get().expect("init ran") {
            request.set_header(name, &id);
        }
        request.set_metadata("worker_id", &id);
        next(&request)
    }
}

sparkwasm_plugin_v2::export_middleware!(WorkerIdentity);
