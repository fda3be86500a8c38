//! `bearer`: sends `Authorization: Bearer <token>` with every request. Give the token as a secret
//! (`token: "{{secret.api:token}}"`): the host redacts it from logs and the bronze table.
//!
//! ```yaml
//! middleware:
//!   - type: bearer
//!     token: "{{secret.api:token}}"
//! ```

use std::sync::OnceLock;

use serde::Deserialize;
use sparkwasm_plugin_v2::{Error, Middleware, Request, Response, next};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    token: String,
}

static VALUE: OnceLock<String> = OnceLock::new();

struct Bearer;

impl Middleware for Bearer {
    fn init() -> Result<(), String> {
        let c: Config = sparkwasm_plugin_v2::config()?;
        if c.token.trim().is_empty() {
            return Err("token is empty".into());
        }
        let _ = VALUE.set(format!("Bearer {}", c.token.trim()));
        Ok(())
    }

    fn handle(request: Request) -> Result<Response, Error> {
        request.set_header("authorization", VALUE.get().expect("init ran"));
        next(&request)
    }
}

sparkwasm_plugin_v2::export_middleware!(Bearer);
