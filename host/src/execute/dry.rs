//! A dry run: the first rows' requests rendered, sent through the middleware chain and the auth stage
//! to an end that sends nothing, and shown (secrets redacted). A refreshing credential (OAuth2, an auth
//! plugin) is never acquired: its place on the request is held by `***`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::future::BoxFuture;

use super::auth::{Static, Strategy};
use super::render::RequestPlan;
use crate::api::{ApiRequest, ApiResponse, RequestError};
use crate::chain::{Chain, Destination, Terminal};
use crate::redact::Redactor;
use crate::source::RowView;

/// The most body bytes a dry run prints per request.
const BODY_SHOWN: usize = 4096;

/// The answer the dry end gives every request, so that the chain can finish the row: a 200 without a
/// body, marked as not sent.
fn not_sent() -> ApiResponse {
    ApiResponse {
        status: 200,
        headers: vec![("x-sparkwasm-dry-run".into(), "not sent".into())],
        body: Bytes::new(),
        metadata: BTreeMap::from([("dry_run".to_owned(), "true".to_owned())]),
    }
}

/// What a dry run gives plugins (an auth plugin's `init` and `apply` may ask for requests) and
/// OAuth2 in place of the network: every request refused.
pub struct Refuse;

impl crate::api::Sender for Refuse {
    fn send(&self, request: Arc<ApiRequest>) -> BoxFuture<'_, Result<ApiResponse, RequestError>> {
        let message = format!(
            "dry run: {} {} is not sent",
            request.method,
            request.url.split('?').next().unwrap_or_default()
        );
        Box::pin(async move {
            Err(RequestError::of(
                crate::api::ErrorKind::InvalidRequest,
                message,
            ))
        })
    }
}

/// The end of the chain in a dry run: the credentials a real run would add (placeholders for a
/// refreshing one), then nothing sent; every request that reaches it is kept.
pub struct DryEnd {
    strategy: Strategy,
    credentials: Vec<Static>,
    seen: Mutex<Vec<(ApiRequest, bool)>>,
}

impl DryEnd {
    /// The dry end of a run with `strategy` and the fixed `credentials`.
    pub fn new(strategy: Strategy, credentials: Vec<Static>) -> Self {
        DryEnd {
            strategy,
            credentials,
            seen: Mutex::new(Vec::new()),
        }
    }

    fn take(&self) -> Vec<(ApiRequest, bool)> {
        std::mem::take(&mut *self.seen.lock().expect("dry end lock"))
    }
}

impl Terminal for DryEnd {
    fn send(
        &self,
        request: Arc<ApiRequest>,
        destination: Destination,
    ) -> BoxFuture<'_, Result<ApiResponse, RequestError>> {
        Box::pin(async move {
            let mut request = Arc::unwrap_or_clone(request);
            let credentials = destination.takes_credentials();
            if credentials {
                request = self.strategy.placeholder(request).await?;
                for c in &self.credentials {
                    request = c.apply(request);
                }
            }
            self.seen
                .lock()
                .expect("dry end lock")
                .push((request, credentials));
            Ok(not_sent())
        })
    }
}

/// One row of a dry run, as shown (secrets already replaced by `***`).
pub struct DryRow {
    /// The row's request_id.
    pub request_id: String,
    /// The requests the chain would have sent, in order: method, URL, headers, body, whether the
    /// pipeline's credentials went along.
    pub requests: Vec<ShownRequest>,
    /// How the row ended without a request, if it did: a plugin's answer or failure, a request that
    /// cannot be built.
    pub ended: Option<String>,
}

/// A request as a dry run shows it.
pub struct ShownRequest {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The URL.
    pub url: String,
    /// Headers, sensitive values as `***`.
    pub headers: Vec<(String, String)>,
    /// The body as text (at most 4 KiB), if any.
    pub body: Option<String>,
    /// Whether the pipeline's credentials were added.
    pub credentials: bool,
}

impl std::fmt::Display for DryRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "row {}", self.request_id)?;
        for r in &self.requests {
            writeln!(f, "  {} {}", r.method, r.url)?;
            for (name, value) in &r.headers {
                writeln!(f, "  {name}: {value}")?;
            }
            if let Some(body) = &r.body {
                writeln!(f, "  body: {body}")?;
            }
            if !r.credentials {
                writeln!(
                    f,
                    "  (another origin: the pipeline's credentials are not added)"
                )?;
            }
        }
        if let Some(ended) = &self.ended {
            writeln!(f, "  {ended}")?;
        }
        Ok(())
    }
}

/// Renders `rows` and sends each through `chain` to `end`, one at a time; what each would have sent.
pub async fn run(
    plan: &RequestPlan,
    chain: &Chain,
    end: &DryEnd,
    id_column: Option<usize>,
    rows: Vec<RowView>,
    redactor: &Redactor,
) -> Vec<DryRow> {
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let request_id = id_column
            .and_then(|i| row.cell(i).to_text())
            .unwrap_or_else(|| row.content_hash());
        let rendered = match plan.render(&row) {
            Ok(r) => r,
            Err(e) => {
                out.push(DryRow {
                    request_id,
                    requests: Vec::new(),
                    ended: Some(format!("cannot be built: {}", redactor.text(&e.message))),
                });
                continue;
            }
        };
        let trip = chain.call(rendered.request, end).await;
        let requests: Vec<ShownRequest> = end
            .take()
            .into_iter()
            .map(|(r, credentials)| show(&r, credentials, redactor))
            .collect();
        let ended = match (&trip.result, requests.is_empty()) {
            (Err(e), _) => Some(format!(
                "fails{}: {}",
                trip.blamed
                    .as_deref()
                    .map(|p| format!(" (plugin `{p}`)"))
                    .unwrap_or_default(),
                redactor.text(&e.message)
            )),
            (Ok(answer), true) => Some(format!(
                "answered by the chain without a request: status {}",
                answer.status
            )),
            (Ok(_), false) => None,
        };
        out.push(DryRow {
            request_id: redactor.text(&request_id).into_owned(),
            requests,
            ended,
        });
    }
    out
}

fn show(r: &ApiRequest, credentials: bool, redactor: &Redactor) -> ShownRequest {
    let headers = r
        .headers
        .iter()
        .map(|(name, value)| (name.clone(), redactor.header(name, value).into_owned()))
        .collect();
    // Redacted whole, then cut: a secret across the cut is never shown in part.
    let body = r.body.as_ref().map(|b| {
        let text = String::from_utf8_lossy(b);
        let redacted = redactor.text(&text);
        let cut = (0..=BODY_SHOWN.min(redacted.len()))
            .rev()
            .find(|i| redacted.is_char_boundary(*i))
            .unwrap_or(0);
        let mut shown = redacted[..cut].to_owned();
        if redacted.len() > cut {
            shown.push_str(&format!(" … ({} bytes in all)", b.len()));
        }
        shown
    });
    ShownRequest {
        method: r.method.to_string(),
        url: redactor.text(&r.url).into_owned(),
        headers,
        body,
        credentials,
    }
}
