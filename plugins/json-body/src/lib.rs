//! `json_body`: JSON in, JSON out. Marks a request body as JSON (content-type, accept) and checks that
//! a successful response's body parses as JSON, recording `json_valid` in the response metadata.
//!
//! ```yaml
//! middleware:
//!   - type: json_body
//!     require: false       # true: a 2xx answer whose body is not JSON fails the row (kind rejected)
//! ```

use serde::Deserialize;
use serde::de::IgnoredAny;
use sparkwasm_plugin::{
    Action, Error, ErrorKind, Hooks, Middleware, Outcome, Request, Response, error,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default)]
    require: bool,
}

struct JsonBody {
    require: bool,
}

impl Middleware for JsonBody {
    type Config = Config;

    fn new(config: Config) -> Result<Self, String> {
        Ok(JsonBody {
            require: config.require,
        })
    }

    fn hooks(&self) -> Hooks {
        Hooks::ON_REQUEST | Hooks::ON_RESPONSE
    }

    fn on_request(&self, request: &Request) -> Result<Action, Error> {
        if request.header("content-type").is_none() && request.body().is_some() {
            request.set_header("content-type", "application/json");
        }
        if request.header("accept").is_none() {
            request.set_header("accept", "application/json");
        }
        Ok(Action::Continue)
    }

    fn on_response(&self, _request: &Request, response: &Response) -> Outcome {
        let status = response.status();
        if (200..300).contains(&status) {
            let valid = serde_json::from_slice::<IgnoredAny>(&response.body()).is_ok();
            response.set_metadata("json_valid", if valid { "true" } else { "false" });
            if !valid && self.require {
                return Outcome::Fail(error(
                    ErrorKind::Rejected,
                    format!("response {status} body is not JSON"),
                ));
            }
        }
        Outcome::Done
    }
}

sparkwasm_plugin::export_middleware!(JsonBody);
