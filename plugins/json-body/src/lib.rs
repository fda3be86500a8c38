//! `json_body`: JSON in, JSON out. Marks a request body as JSON (content-type, accept) and checks that
//! a successful response's body parses as JSON, recording `json_valid` in the response metadata.
//!
//! ```yaml
//! middleware:
//!   - type: json_body
//!     require: false       # true: a 2xx answer whose body is not JSON fails the row (kind rejected)
//! ```

use std::sync::OnceLock;

use serde::Deserialize;
use serde::de::IgnoredAny;
use sparkwasm_plugin::{
    Error, ErrorKind, Middleware, Request, Response, error, header, next, set_header, set_meta,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default)]
    require: bool,
}

static REQUIRE: OnceLock<bool> = OnceLock::new();

struct JsonBody;

impl Middleware for JsonBody {
    fn init() -> Result<(), String> {
        let c: Config = sparkwasm_plugin::config()?;
        let _ = REQUIRE.set(c.require);
        Ok(())
    }

    fn handle(mut request: Request) -> Result<Response, Error> {
        if request.body.is_some() && header(&request.headers, "content-type").is_none() {
            set_header(&mut request.headers, "content-type", "application/json");
        }
        if header(&request.headers, "accept").is_none() {
            set_header(&mut request.headers, "accept", "application/json");
        }
        let mut response = next(&request)?;
        if (200..300).contains(&response.status) {
            let valid = serde_json::from_slice::<IgnoredAny>(&response.body).is_ok();
            set_meta(&mut response.metadata, "json_valid", valid.to_string());
            if !valid && *REQUIRE.get().expect("init ran") {
                return Err(error(
                    ErrorKind::Rejected,
                    format!("response {} body is not JSON", response.status),
                ));
            }
        }
        Ok(response)
    }
}

sparkwasm_plugin::export_middleware!(JsonBody);
