//! Where a row becomes a request: the endpoint template and column_mapping, applied to one row.
//!
//! `{column}` in `url_path` takes the row's value, percent-encoded as one path segment. The mapped
//! columns go to the query string for GET/DELETE and to a JSON body for POST/PUT/PATCH, typed (a number
//! column is a JSON number). The plan is compiled once against the source schema; per row it only reads.

use std::collections::BTreeMap;

use arrow::datatypes::Schema;
use bytes::Bytes;
use http::Method;
use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};

use crate::api::{ApiRequest, RequestError, json_object};
use crate::config::{Endpoint, Pipeline};
use crate::source::RowView;

/// The endpoint template does not fit the source's schema.
#[derive(Debug, thiserror::Error)]
#[error("endpoint: {0}")]
pub struct RenderError(String);

/// Characters escaped in a path segment: everything but RFC 3986's unreserved set.
const SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'/')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'`')
    .add(b'{')
    .add(b'}')
    .add(b'[')
    .add(b']')
    .add(b'\\')
    .add(b'^')
    .add(b'|')
    .add(b':')
    .add(b';')
    .add(b'=')
    .add(b'@')
    .add(b'&')
    .add(b'+')
    .add(b',')
    .add(b'$')
    .add(b'!')
    .add(b'\'')
    .add(b'(')
    .add(b')')
    .add(b'*');

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

/// The endpoint template compiled against the source's schema.
pub struct RequestPlan {
    method: Method,
    /// `base_url` + the literal start of `url_path`, without a trailing `/` duplicate.
    path: Vec<PathPart>,
    base_query: Option<String>,
    params: Vec<(String, usize)>,
    headers: Vec<(String, String)>,
    json_body: bool,
}

impl RequestPlan {
    /// The columns the endpoint reads (placeholders and column_mapping), for the schema check.
    pub fn used_columns(pipeline: &Pipeline) -> Vec<String> {
        let mut cols: Vec<String> = placeholders(&pipeline.endpoint.url_path)
            .into_iter()
            .map(|s| s.to_owned())
            .collect();
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
            ..
        } = &pipeline.endpoint;
        let index = |name: &str| {
            schema
                .index_of(name)
                .map_err(|_| format!("column `{name}` is not in the source"))
        };
        let mut base = base_url.clone();
        let base_query = base.query().map(str::to_owned);
        base.set_query(None);
        let mut root = base.as_str().trim_end_matches('/').to_owned();
        if !url_path.is_empty() && !url_path.starts_with('/') {
            root.push('/');
        }
        let mut path = vec![PathPart::Literal(root)];
        let mut rest = url_path.as_str();
        while let Some(open) = rest.find('{') {
            let close = open + rest[open..].find('}').ok_or("unbalanced `{` in url_path")?;
            path.push(PathPart::Literal(rest[..open].to_owned()));
            let name = rest[open + 1..close].trim();
            path.push(PathPart::Column {
                index: index(name)?,
                name: name.to_owned(),
            });
            rest = &rest[close + 1..];
        }
        path.push(PathPart::Literal(rest.to_owned()));
        let params = pipeline
            .column_mapping
            .iter()
            .map(|m| Ok((m.endpoint_param.clone(), index(&m.source_column)?)))
            .collect::<Result<_, String>>()?;
        let json_body = matches!(*method, Method::POST | Method::PUT | Method::PATCH);
        let mut headers: Vec<(String, String)> = headers
            .iter()
            .map(|h| (h.name.clone(), h.value.clone()))
            .collect();
        if json_body
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
            json_body,
        })
    }

    /// Renders the request for one row. A null in a path placeholder fails the row.
    pub fn render(&self, row: &RowView) -> Result<Rendered, RequestError> {
        let mut url = String::with_capacity(96);
        for part in &self.path {
            match part {
                PathPart::Literal(s) => url.push_str(s),
                PathPart::Column { index, name } => match row.cell(*index).to_text() {
                    Some(v) => url.extend(utf8_percent_encode(&v, SEGMENT)),
                    None => {
                        return Err(RequestError::new(format!(
                            "url_path placeholder {{{name}}} is null in this row"
                        )));
                    }
                },
            }
        }
        let params_json = json_object(
            self.params
                .iter()
                .map(|(param, index)| (param.as_str(), row.cell(*index).to_json())),
        );
        let mut query = url::form_urlencoded::Serializer::for_suffix(
            self.base_query.clone().unwrap_or_default(),
            0,
        );
        if !self.json_body {
            for (param, index) in &self.params {
                if let Some(v) = row.cell(*index).to_text() {
                    query.append_pair(param, &v);
                }
            }
        }
        let query = query.finish();
        if !query.is_empty() {
            url.push('?');
            url.push_str(&query);
        }
        let body = self.json_body.then(|| Bytes::from(params_json.clone()));
        let request = ApiRequest {
            method: self.method.clone(),
            url,
            headers: self.headers.clone(),
            body,
            metadata: BTreeMap::new(),
        };
        Ok(Rendered {
            request,
            params_json,
        })
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
        let dir = std::env::temp_dir();
        std::fs::write(dir.join("sw_request_test.csv"), "id\n1\n").unwrap();
        let yaml = format!(
            "endpoint:\n  method: {method}\n  base_url: http://127.0.0.1:9/v1/?key=k\n  url_path: users/{{name}}/orders\n  headers: {{X-Test: \"yes\"}}\n\
             tables:\n  source: {{path: sw_request_test.csv}}\n  sink: {{path: out}}\n  column_mapping:\n    - {{source_column: id, endpoint_param: user_id}}\n    - {{source_column: score}}\n"
        );
        load_str(
            &yaml,
            "t",
            &LoadOptions {
                secrets: &SecretStore::default(),
                base_dir: dir,
                shard: None,
            },
        )
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
    fn post_sends_a_typed_json_body() {
        let p = pipeline("post");
        let r = RequestPlan::new(&p, &row().batch.schema())
            .unwrap()
            .render(&row())
            .unwrap();
        assert_eq!(r.request.method, Method::POST);
        assert_eq!(
            r.request.body.as_deref(),
            Some(&br#"{"user_id":42,"score":0.5}"#[..])
        );
        assert!(
            r.request
                .headers
                .contains(&("content-type".to_owned(), "application/json".to_owned()))
        );
        assert_eq!(
            r.request.url,
            "http://127.0.0.1:9/v1/users/a%2Fb%20c/orders?key=k"
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
