//! `worker_identity`: tells the API which worker sent each request — a header and request metadata
//! `worker_id` = `<host>/<pipeline>/p<partition>-c<consumer>`.
//!
//! ```yaml
//! middleware:
//!   - type: worker_identity
//!     header: X-Worker-Id    # default; null sends no header (metadata only)
//! ```

use serde::Deserialize;
use sparkwasm_plugin::{Action, Error, Hooks, Middleware, Request, host};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default = "default_header")]
    header: Option<String>,
}

fn default_header() -> Option<String> {
    Some("X-Worker-Id".into())
}

struct WorkerIdentity {
    header: Option<String>,
}

impl Middleware for WorkerIdentity {
    type Config = Config;

    fn new(config: Config) -> Result<Self, String> {
        Ok(WorkerIdentity {
            header: config.header,
        })
    }

    fn hooks(&self) -> Hooks {
        Hooks::ON_REQUEST
    }

    fn on_request(&self, request: &Request) -> Result<Action, Error> {
        let me = host::whoami();
        let id = format!("{}/p{}-c{}", me.process, me.partition, me.consumer);
        if let Some(name) = &self.header {
            request.set_header(name, &id);
        }
        request.set_metadata("worker_id", &id);
        Ok(Action::Continue)
    }
}

sparkwasm_plugin::export_middleware!(WorkerIdentity);
