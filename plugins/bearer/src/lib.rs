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
use sparkwasm_plugin::{Error, Middleware, Request, Response, next, set_header};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    token: String,
}

static VALUE: OnceLock<String> = OnceLock::new();

struct Bearer;

impl Middleware for Bearer {
    fn init() -> Result<(), String> {
        let c: Config = sparkwasm_plugin::config()?;
        if c.token.trim().is_empty() {
            return Err("token is empty".into());
        }
        let _ = VALUE.set(format!("Bearer {}", c.token.trim()));
        Ok(())
    }

    fn handle(mut request: Request) -> Result<Response, Error> {
        set_header(
            &mut request.headers,
            "authorization",
            VALUE.get().expect("init ran"),
        );
        next(&request)
    }
}

sparkwasm_plugin::export_middleware!(Bearer);
