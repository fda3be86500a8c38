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
use sparkwasm_plugin_v2::{Error, ErrorKind, Middleware, Request, Response, error, next};

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
        let c: Config = sparkwasm_plugin_v2::config()?;
        let _ = REQUIRE.set(c.require);
        Ok(())
    }

    fn handle(request: Request) -> Result<Response, Error> {
        if request.header("content-type").is_none() && request.body().is_some() {
            request.set_header("content-type", "application/json");
        }
        if request.header("accept").is_none() {
            request.set_header("accept", "application/json");
        }
        let response = next(&request)?;
        let status = response.status();
        if (200..300).contains(&status) {
            let valid = serde_json::from_slice::<IgnoredAny>(&response.body()).is_ok();
            response.set_metadata("json_valid", &valid.to_string());
            if !valid && *REQUIRE.get().expect("init ran") {
                return Err(error(
                    ErrorKind::Rejected,
                    format!("response {status} body is not JSON"),
                ));
            }
        }
        Ok(response)
    }
}

sparkwasm_plugin_v2::export_middleware!(JsonBody);
