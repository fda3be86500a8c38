//! How a row's result counts: success, a failure worth sending again (by a later pass or the next
//! run), or a failure for good (recorded once). `execution.outcomes` says which statuses are which;
//! `endpoint.response_schema` can turn a successful answer into a failure for good.

use crate::api::{ApiResponse, ErrorKind, RequestError};
use crate::config::{Outcomes, Pipeline, StatusClass};

/// What a row's result is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// It counts: not sent again.
    Success,
    /// It failed, and sending it again may help (429, 5xx, no answer, a plugin's failure): a later
    /// pass or run sends it again.
    Retry,
    /// It failed for good (other 4xx, a body that breaks the response schema, a request that cannot
    /// be built): recorded once, sent again only with `--retry-failed`.
    Final,
}

impl Verdict {
    /// The word the bronze table's `outcome` column holds.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Success => "success",
            Verdict::Retry => "retry",
            Verdict::Final => "final",
        }
    }
}

/// The pipeline's rules, compiled once.
pub struct Classifier {
    outcomes: Outcomes,
    schema: Option<jsonschema::Validator>,
}

impl Classifier {
    /// The rules of `pipeline` (its response schema compiled; config already checked it compiles).
    pub fn new(pipeline: &Pipeline) -> Self {
        Classifier {
            outcomes: pipeline.execution.outcomes.clone(),
            schema: pipeline
                .endpoint
                .response_schema
                .as_ref()
                .and_then(|s| jsonschema::validator_for(s).ok()),
        }
    }

    /// The verdict on a row's result, and why when it is not plain (a schema mismatch).
    /// `plugin_failed`: a plugin failed the row.
    pub fn judge(
        &self,
        result: &Result<ApiResponse, RequestError>,
        plugin_failed: bool,
    ) -> (Verdict, Option<String>) {
        let has = |list: &[StatusClass], class: StatusClass| list.contains(&class);
        match result {
            Ok(response) => {
                let status = response.status;
                if self.outcomes.success.iter().any(|c| c.holds(status)) {
                    match self.schema_problem(&response.body) {
                        None => (Verdict::Success, None),
                        Some(problem) => (Verdict::Final, Some(problem)),
                    }
                } else if self.outcomes.retry.iter().any(|c| c.holds(status)) {
                    (Verdict::Retry, None)
                } else {
                    (Verdict::Final, None)
                }
            }
            Err(_) if plugin_failed => {
                let retry = has(&self.outcomes.retry, StatusClass::Plugin);
                (
                    if retry {
                        Verdict::Retry
                    } else {
                        Verdict::Final
                    },
                    None,
                )
            }
            Err(e) => match e.kind {
                // The request could not be built (a null id, a null placeholder): it never will be.
                ErrorKind::InvalidRequest | ErrorKind::Rejected => (Verdict::Final, None),
                _ => {
                    let retry = has(&self.outcomes.retry, StatusClass::Transport);
                    (
                        if retry {
                            Verdict::Retry
                        } else {
                            Verdict::Final
                        },
                        None,
                    )
                }
            },
        }
    }

    /// Why `body` breaks the response schema: the first violation, at its JSON pointer.
    fn schema_problem(&self, body: &[u8]) -> Option<String> {
        let schema = self.schema.as_ref()?;
        let doc: serde_json::Value = match serde_json::from_slice(body) {
            Ok(doc) => doc,
            Err(e) => return Some(format!("response_schema: the body is not JSON: {e}")),
        };
        let error = schema.iter_errors(&doc).next()?;
        let pointer = error.instance_path().to_string();
        let at = if pointer.is_empty() { "/" } else { &pointer };
        Some(format!("response_schema: at {at}: {error}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, body: &str) -> Result<ApiResponse, RequestError> {
        Ok(ApiResponse {
            status,
            body: body.as_bytes().to_vec().into(),
            ..Default::default()
        })
    }

    fn classifier(schema: Option<serde_json::Value>) -> Classifier {
        Classifier {
            outcomes: Outcomes::default(),
            schema: schema.map(|s| jsonschema::validator_for(&s).unwrap()),
        }
    }

    #[test]
    fn the_default_rules_sort_statuses_and_failures() {
        let c = classifier(None);
        let verdict = |r| c.judge(&r, false).0;
        assert_eq!(verdict(answer(200, "")), Verdict::Success);
        assert_eq!(verdict(answer(204, "")), Verdict::Success);
        assert_eq!(verdict(answer(429, "")), Verdict::Retry);
        assert_eq!(verdict(answer(503, "")), Verdict::Retry);
        assert_eq!(verdict(answer(404, "")), Verdict::Final);
        assert_eq!(verdict(answer(301, "")), Verdict::Final);
        let err = |kind| Err(RequestError::of(kind, "x"));
        assert_eq!(verdict(err(ErrorKind::Timeout)), Verdict::Retry);
        assert_eq!(verdict(err(ErrorKind::Reset)), Verdict::Retry);
        assert_eq!(verdict(err(ErrorKind::InvalidRequest)), Verdict::Final);
        assert_eq!(c.judge(&err(ErrorKind::Other), true).0, Verdict::Retry);
    }

    #[test]
    fn configured_rules_replace_the_defaults() {
        let c = Classifier {
            outcomes: Outcomes {
                success: vec![StatusClass::Range(200, 299), StatusClass::Code(404)],
                retry: vec![StatusClass::Code(503)],
            },
            schema: None,
        };
        assert_eq!(c.judge(&answer(404, ""), false).0, Verdict::Success);
        assert_eq!(c.judge(&answer(500, ""), false).0, Verdict::Final);
        let timeout = Err(RequestError::of(ErrorKind::Timeout, "t"));
        assert_eq!(c.judge(&timeout, false).0, Verdict::Final);
    }

    #[test]
    fn a_body_that_breaks_the_schema_fails_for_good_naming_the_pointer() {
        let c = classifier(Some(serde_json::json!({
            "type": "object",
            "required": ["items"],
            "properties": {"items": {"type": "array", "items": {"type": "object", "required": ["id"]}}}
        })));
        assert_eq!(
            c.judge(&answer(200, r#"{"items":[{"id":1}]}"#), false),
            (Verdict::Success, None)
        );
        let (verdict, why) = c.judge(&answer(200, r#"{"items":[{"id":1},{"x":2}]}"#), false);
        assert_eq!(verdict, Verdict::Final);
        let why = why.unwrap();
        assert!(why.starts_with("response_schema: at /items/1: "), "{why}");
        assert!(why.contains("\"id\" is a required property"), "{why}");
        let (_, why) = c.judge(&answer(200, "<html>"), false);
        assert!(
            why.unwrap()
                .starts_with("response_schema: the body is not JSON")
        );
        // Only a successful answer is checked.
        assert_eq!(
            c.judge(&answer(503, "<html>"), false),
            (Verdict::Retry, None)
        );
    }
}
