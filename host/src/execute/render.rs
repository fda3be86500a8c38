//! Where a row becomes a request: the endpoint template and column_mapping, applied to one row.
//!
//! `{column}` in `url_path` takes the row's value, percent-encoded as one path segment. The query
//! string is `url_path`'s own, then `endpoint.params`, then the mapped columns, for every method (as
//! the legacy framework sent them). A body is sent only when `endpoint.request_template` asks for
//! one: its strings that are exactly `{column}` take the row's typed value (a number column is a
//! JSON number), `{column}` inside text takes its text. The plan is compiled once against the source
//! schema; per row it only reads.

use std::collections::BTreeMap;

use arrow::datatypes::Schema;
use bytes::Bytes;
use http::Method;
use percent_encoding::utf8_percent_encode;

use crate::api::{ApiRequest, PATH_SEGMENT, RequestError, json_object};
use crate::config::{Endpoint, Pipeline};
use crate::source::RowView;

/// The endpoint template does not fit the source's schema.
#[derive(Debug, thiserror::Error)]
#[error("endpoint: {0}")]
pub struct RenderError(String);

/// A request rendered from a row, with the parameters that went into it (for `request_params`).
#[derive(Debug)]
pub struct Rendered {
    /// The request.
    pub request: ApiRequest,
    /// `{"param": value, ...}` in column_mapping order (the `request_params` column).
    pub params_json: String,
}

enum PathPart {
    Literal(String),
    Column { index: usize, name: String },
}

/// The body template, compiled: literals kept, placeholders resolved to column indexes.
enum Body {
    Literal(serde_json::Value),
    /// A string that is exactly `{column}`: the cell's typed JSON value (null for a null).
    Column(usize),
    /// A string with `{column}` among text: the cells' text interpolated.
    Text(Vec<PathPart>),
    Array(Vec<Body>),
    Object(Vec<(String, Body)>),
}

/// The endpoint template compiled against the source's schema.
pub struct RequestPlan {
    method: Method,
    /// `base_url` + the literal start of `url_path`, without a trailing `/` duplicate.
    path: Vec<PathPart>,
    /// `url_path`'s own query and `endpoint.params`, encoded once.
    base_query: Option<String>,
    params: Vec<(String, usize)>,
    headers: Vec<(String, String)>,
    body: Option<Body>,
    /// `endpoint.vendor`: in every request's metadata, as the legacy table has it.
    vendor: Option<String>,
}

impl RequestPlan {
    /// The columns the endpoint reads (placeholders and column_mapping), for the schema check.
    pub fn used_columns(pipeline: &Pipeline) -> Vec<String> {
        let mut cols: Vec<String> = placeholders(&pipeline.endpoint.url_path)
            .into_iter()
            .map(|s| s.to_owned())
            .collect();
        if let Some(template) = &pipeline.endpoint.request_template {
            template_columns(template, &mut cols);
        }
        cols.extend(
            pipeline
                .column_mapping
                .iter()
                .map(|m| m.source_column.clone()),
        );
        cols
    }

    /// Compiles the plan. The schema must already hold every used column (checked by the source).
    pub fn new(pipeline: &Pipeline, schema: &Schema) -> Result<Self, RenderError> {
        Self::compile(pipeline, schema).map_err(RenderError)
    }

    fn compile(pipeline: &Pipeline, schema: &Schema) -> Result<Self, String> {
        let Endpoint {
            method,
            base_url,
            url_path,
            headers,
            params: static_params,
            request_template,
            vendor,
            ..
        } = &pipeline.endpoint;
        let index = |name: &str| {
            schema
                .index_of(name)
                .map_err(|_| format!("column `{name}` is not in the source"))
        };
        let mut base = base_url.clone();
        let mut base_query = base.query().map(str::to_owned);
        base.set_query(None);
        if !static_params.is_empty() {
            let mut query =
                url::form_urlencoded::Serializer::new(base_query.take().unwrap_or_default());
            for (name, value) in static_params {
                query.append_pair(name, value);
            }
            base_query = Some(query.finish());
        }
        let mut root = base.as_str().trim_end_matches('/').to_owned();
        if !url_path.is_empty() && !url_path.starts_with('/') {
            root.push('/');
        }
        let mut path = vec![PathPart::Literal(root)];
        path.extend(compile_text(url_path, &index).map_err(|e| format!("url_path: {e}"))?);
        let params = pipeline
            .column_mapping
            .iter()
            .map(|m| Ok((m.endpoint_param.clone(), index(&m.source_column)?)))
            .collect::<Result<_, String>>()?;
        let body = request_template
            .as_ref()
            .map(|t| compile_body(t, &index))
            .transpose()?;
        let mut headers: Vec<(String, String)> = headers
            .iter()
            .map(|h| (h.name.clone(), h.value.clone()))
            .collect();
        if body.is_some()
            && !headers
                .iter()
                .any(|(n, _)| n.eq_ignore_ascii_case("content-type"))
        {
            headers.push(("content-type".into(), "application/json".into()));
        }
        Ok(RequestPlan {
            method: method.clone(),
            path,
            base_query,
            params,
            headers,
            body,
            vendor: vendor.clone(),
        })
    }

    /// Renders the request for one row. A null in a path placeholder fails the row.
    pub fn render(&self, row: &RowView) -> Result<Rendered, RequestError> {
        let mut url = String::with_capacity(96);
        fill(&self.path, row, &mut url, "url_path", |url, v| {
            url.extend(utf8_percent_encode(v, PATH_SEGMENT))
        })?;
        let params_json = json_object(
            self.params
                .iter()
                .map(|(param, index)| (param.as_str(), row.cell(*index).to_json())),
        );
        let mut query = url::form_urlencoded::Serializer::for_suffix(
            self.base_query.clone().unwrap_or_default(),
            0,
        );
        for (param, index) in &self.params {
            if let Some(v) = row.cell(*index).to_text() {
                query.append_pair(param, &v);
            }
        }
        let query = query.finish();
        if !query.is_empty() {
            // url_path may carry a query of its own: the rest joins it.
            url.push(if url.contains('?') { '&' } else { '?' });
            url.push_str(&query);
        }
        let body = match &self.body {
            Some(template) => Some(Bytes::from(render_body(template, row)?.to_string())),
            None => None,
        };
        let request = ApiRequest {
            method: self.method.clone(),
            url,
            headers: self.headers.clone(),
            body,
            metadata: self
                .vendor
                .iter()
                .map(|v| ("vendor".to_owned(), v.clone()))
                .collect::<BTreeMap<_, _>>(),
        };
        Ok(Rendered {
            request,
            params_json,
        })
    }
}

/// Appends `parts` with the row's values (each through `push`); a null fails the row, naming `what`.
fn fill(
    parts: &[PathPart],
    row: &RowView,
    out: &mut String,
    what: &str,
    push: impl Fn(&mut String, &str),
) -> Result<(), RequestError> {
    for part in parts {
        match part {
            PathPart::Literal(s) => out.push_str(s),
            PathPart::Column { index, name } => match row.cell(*index).to_text() {
                Some(v) => push(out, &v),
                None => {
                    return Err(RequestError::new(format!(
                        "{what} placeholder {{{name}}} is null in this row"
                    )));
                }
            },
        }
    }
    Ok(())
}

/// `text` as literal parts and `{column}` parts.
fn compile_text(
    text: &str,
    index: &dyn Fn(&str) -> Result<usize, String>,
) -> Result<Vec<PathPart>, String> {
    let mut parts = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        let close = open + rest[open..].find('}').ok_or("unbalanced `{`")?;
        parts.push(PathPart::Literal(rest[..open].to_owned()));
        let name = rest[open + 1..close].trim();
        parts.push(PathPart::Column {
            index: index(name)?,
            name: name.to_owned(),
        });
        rest = &rest[close + 1..];
    }
    parts.push(PathPart::Literal(rest.to_owned()));
    Ok(parts)
}

fn compile_body(
    template: &serde_json::Value,
    index: &dyn Fn(&str) -> Result<usize, String>,
) -> Result<Body, String> {
    use serde_json::Value;
    Ok(match template {
        Value::String(text) => {
            let trimmed = text.trim();
            let exact = trimmed
                .strip_prefix('{')
                .and_then(|t| t.strip_suffix('}'))
                .filter(|name| !name.contains(['{', '}']));
            match exact {
                Some(name) => Body::Column(index(name.trim())?),
                None if text.contains('{') => Body::Text(compile_text(text, index)?),
                None => Body::Literal(template.clone()),
            }
        }
        Value::Array(items) => Body::Array(
            items
                .iter()
                .map(|v| compile_body(v, index))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(map) => Body::Object(
            map.iter()
                .map(|(k, v)| Ok((k.clone(), compile_body(v, index)?)))
                .collect::<Result<_, String>>()?,
        ),
        other => Body::Literal(other.clone()),
    })
}

fn render_body(body: &Body, row: &RowView) -> Result<serde_json::Value, RequestError> {
    use serde_json::Value;
    Ok(match body {
        Body::Literal(v) => v.clone(),
        Body::Column(index) => row.cell(*index).to_json(),
        Body::Text(parts) => {
            let mut text = String::new();
            fill(parts, row, &mut text, "request_template", |out, v| {
                out.push_str(v)
            })?;
            Value::String(text)
        }
        Body::Array(items) => Value::Array(
            items
                .iter()
                .map(|b| render_body(b, row))
                .collect::<Result<_, _>>()?,
        ),
        Body::Object(fields) => Value::Object(
            fields
                .iter()
                .map(|(k, b)| Ok((k.clone(), render_body(b, row)?)))
                .collect::<Result<_, RequestError>>()?,
        ),
    })
}

/// The columns a body template names, into `out`.
fn template_columns(template: &serde_json::Value, out: &mut Vec<String>) {
    match template {
        serde_json::Value::String(text) => {
            out.extend(placeholders(text).into_iter().map(str::to_owned))
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| template_columns(v, out)),
        serde_json::Value::Object(map) => map.values().for_each(|v| template_columns(v, out)),
        _ => {}
    }
}

/// The column names written `{name}` in a url_path.
fn placeholders(template: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}') else {
            break;
        };
        out.push(rest[open + 1..open + close].trim());
        rest = &rest[open + close + 1..];
    }
    out
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Float64Array, Int64Array, StringArray};
    use arrow::record_batch::RecordBatch;

    use super::*;
    use crate::config::{LoadOptions, SecretStore, load_str};

    fn pipeline(method: &str) -> Pipeline {
        pipeline_with(
            method,
            "base_url: http://127.0.0.1:9/v1/?key=k\n  url_path: users/{name}/orders",
            "",
        )
    }

    fn pipeline_with(method: &str, url: &str, extra: &str) -> Pipeline {
        let dir = std::env::temp_dir();
        std::fs::write(dir.join("sw_request_test.csv"), "id\n1\n").unwrap();
        let yaml = format!(
            "endpoint:\n  method: {method}\n  {url}\n  headers: {{X-Test: \"yes\"}}\n{extra}\
             tables:\n  source: {{path: sw_request_test.csv}}\n  sink: {{path: out}}\n  column_mapping:\n    - {{source_column: id, endpoint_param: user_id}}\n    - {{source_column: score}}\n"
        );
        load_str(
            &yaml,
            "t",
            &LoadOptions {
                secrets: &SecretStore::default(),
                base_dir: dir,
                shard: None,
                source: Default::default(),
                retry_failed: false,
                allow_unpinned: false,
            },
        )
        .unwrap()
    }

    fn render(p: &Pipeline) -> Rendered {
        RequestPlan::new(p, &row().batch.schema())
            .unwrap()
            .render(&row())
            .unwrap()
    }

    fn row() -> RowView {
        let batch = RecordBatch::try_from_iter([
            ("id", Arc::new(Int64Array::from(vec![42])) as _),
            ("name", Arc::new(StringArray::from(vec!["a/b c"])) as _),
            ("score", Arc::new(Float64Array::from(vec![0.5])) as _),
        ])
        .unwrap();
        RowView {
            batch: Arc::new(batch),
            row: 0,
        }
    }

    #[test]
    fn get_puts_mapped_columns_in_the_query_and_encodes_the_path() {
        let p = pipeline("GET");
        let r = RequestPlan::new(&p, &row().batch.schema())
            .unwrap()
            .render(&row())
            .unwrap();
        assert_eq!(
            r.request.url,
            "http://127.0.0.1:9/v1/users/a%2Fb%20c/orders?key=k&user_id=42&score=0.5"
        );
        assert_eq!(r.request.body, None);
        assert_eq!(
            r.request.headers,
            vec![("X-Test".to_owned(), "yes".to_owned())]
        );
    }

    #[test]
    fn every_method_puts_mapped_columns_in_the_query_and_sends_no_body_unasked() {
        for method in ["POST", "PUT", "PATCH", "DELETE"] {
            let r = render(&pipeline(method));
            assert_eq!(
                r.request.url,
                "http://127.0.0.1:9/v1/users/a%2Fb%20c/orders?key=k&user_id=42&score=0.5",
                "{method}"
            );
            assert_eq!(r.request.body, None, "{method}");
            assert!(
                !r.request
                    .headers
                    .iter()
                    .any(|(n, _)| n.eq_ignore_ascii_case("content-type")),
                "{method}"
            );
        }
    }

    #[test]
    fn a_request_template_is_the_body_with_typed_values() {
        let p = pipeline_with(
            "POST",
            "url_path: \"http://127.0.0.1:9/v1/u/{id}\"",
            "  request_template: {user: \"{id}\", score: \"{score}\", label: \"n={name}!\", tags: [\"{name}\", 7], fixed: {a: null}}\n",
        );
        let r = render(&p);
        let body: serde_json::Value =
            serde_json::from_slice(r.request.body.as_deref().unwrap()).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"user": 42, "score": 0.5, "label": "n=a/b c!", "tags": ["a/b c", 7], "fixed": {"a": null}})
        );
        assert!(
            r.request
                .headers
                .contains(&("content-type".to_owned(), "application/json".to_owned()))
        );
        assert_eq!(
            RequestPlan::used_columns(&p),
            vec!["id", "id", "score", "name", "name", "id", "score"]
        );
    }

    #[test]
    fn a_full_url_in_url_path_is_the_request_url_and_params_come_first() {
        let p = pipeline_with(
            "GET",
            "base_url: http://ignored.example:1\n  url_path: \"http://127.0.0.1:9/api/{name}?v=2\"",
            "  params: {format: json, page_size: \"100\"}\n",
        );
        assert_eq!(p.endpoint.base_url.as_str(), "http://127.0.0.1:9/");
        assert_eq!(
            render(&p).request.url,
            "http://127.0.0.1:9/api/a%2Fb%20c?v=2&format=json&page_size=100&user_id=42&score=0.5"
        );
        assert!(
            p.warnings[0]
                .to_string()
                .contains("endpoint.base_url: has no effect: url_path is a full URL"),
            "{:?}",
            p.warnings
        );
    }

    #[test]
    fn used_columns_cover_placeholders_and_mapping() {
        assert_eq!(
            RequestPlan::used_columns(&pipeline("GET")),
            vec!["name", "id", "score"]
        );
    }
}
