//! The middleware chain, as the host drives it: layers with hooks on the way in and on the way out
//! (wit/plugin.wit), a [`Terminal`] at the end. Nothing here knows about WebAssembly: a plugin is a
//! [`Layer`], and so is a test's stand-in.
//!
//! One row's trip: each layer's `on-request` in order (each may edit its own copy of the request,
//! answer it, or fail the row), the terminal, then each layer's `on-response` / `on-error` in
//! reverse order. A layer that asks for a `resend` has its request sent through the inner layers
//! and the terminal again, after the delay it asked for; the wait holds no plugin instance, so
//! memory does not grow with the rows in flight.
//!
//! The request moves through the chain as an `Arc<ApiRequest>`: a layer that only reads it shares
//! the outer layer's copy; one that edits it copies it first (`Arc::make_mut`), so no edit reaches
//! an outer layer. Every change of the request's origin is checked against the grants of the layer
//! that made it ([`egress`]); the terminal learns whether the pipeline's credentials may go along.

pub mod egress;

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;

pub use egress::{Destination, Egress, NotAnOrigin, Origin};

use crate::api::{ApiRequest, ApiResponse, ErrorKind, RequestError};

/// The longest wait a layer may ask for before a resend.
pub const MAX_RESEND_DELAY: Duration = Duration::from_secs(900);

/// The hooks a layer asks the host to call.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Hooks {
    /// `on-request` is called.
    pub request: bool,
    /// `on-response` is called.
    pub response: bool,
    /// `on-error` is called.
    pub error: bool,
}

/// What to do with a request after `on-request`.
pub enum RequestAction {
    /// Send it on to the inner layers.
    Continue,
    /// Answer it without the inner layers.
    Respond(ApiResponse),
}

/// What to do with an outcome after `on-response` / `on-error`.
pub enum OutcomeAction {
    /// Pass the response on outward.
    Done,
    /// Send this layer's request through the inner layers again after the delay.
    Resend(Duration),
    /// Fail the row with this error.
    Fail(RequestError),
    /// Replace the outcome with this response.
    Respond(ApiResponse),
}

/// A layer's own state for one row: its notes (`scratch`), how many times it sent the request on,
/// and when it last did ([`monotonic_ns`]; 0 before the first send).
#[derive(Debug, Default)]
pub struct LayerState {
    /// How many times the layer sent the row's request on.
    pub sends: u32,
    /// When it last did ([`monotonic_ns`]).
    pub sent_at: u64,
    /// The layer's own notes on the row (`request.scratch`).
    pub scratch: Vec<(String, String)>,
}

/// Nanoseconds on the run's monotonic clock (the one plugins read with `host.monotonic-now`), never
/// 0.
pub fn monotonic_ns() -> u64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    START
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_nanos() as u64
        + 1
}

/// A layer's failure in one of its hooks (a trap, a deadline, a broken rule, an error it
/// returned), without its name: the chain names it.
pub type LayerError = RequestError;

/// One layer of the chain: a plugin, as the host calls it.
pub trait Layer: Send + Sync {
    /// The name error messages give for this layer.
    fn name(&self) -> &str;
    /// The hooks it asked for (the others are not called).
    fn hooks(&self) -> Hooks;
    /// Where it may send a request besides the endpoint's origin.
    fn egress(&self) -> &Egress;
    /// The most times it may send one row's request on (`limits.max_requests`).
    fn max_requests(&self) -> u32;

    /// The row's request on its way in: edit it, answer it, or fail the row.
    fn on_request<'a>(
        &'a self,
        request: &'a mut Arc<ApiRequest>,
        state: &'a mut LayerState,
    ) -> BoxFuture<'a, Result<RequestAction, LayerError>>;

    /// `Done` passes `response` on as the hook left it.
    fn on_response<'a>(
        &'a self,
        request: &'a mut Arc<ApiRequest>,
        response: &'a mut ApiResponse,
        state: &'a mut LayerState,
    ) -> BoxFuture<'a, Result<OutcomeAction, LayerError>>;

    /// `Done` passes `error` on unchanged.
    fn on_error<'a>(
        &'a self,
        request: &'a mut Arc<ApiRequest>,
        error: RequestError,
        state: &'a mut LayerState,
    ) -> BoxFuture<'a, Result<OutcomeAction, LayerError>>;
}

/// The end of the chain: adds the pipeline's credentials where `destination` allows, and sends.
/// The request is shared with the record of what was sent: a terminal that changes it copies it.
pub trait Terminal: Send + Sync {
    /// Sends `request` to `destination`.
    fn send(
        &self,
        request: Arc<ApiRequest>,
        destination: Destination,
    ) -> BoxFuture<'_, Result<ApiResponse, RequestError>>;
}

/// The configured middleware, outermost first, and the endpoint's origin.
#[derive(Clone)]
pub struct Chain {
    layers: Arc<[Arc<dyn Layer>]>,
    endpoint: Option<Origin>,
    /// The most requests one row may send: the largest `max_requests` of the layers.
    row_limit: u32,
}

/// What one row's trip through the chain produced.
pub struct Outcome {
    /// The answer, or why there is none.
    pub result: Result<ApiResponse, RequestError>,
    /// How many times the request reached the terminal.
    pub attempts: u32,
    /// The request as the last attempt sent it (before the terminal's credentials), or as it
    /// entered the chain when nothing was sent.
    pub sent: Arc<ApiRequest>,
    /// The plugin whose failure (a trap, a broken rule, an error of its own) ended the row.
    pub blamed: Option<String>,
}

/// One layer's part of a trip: its request and state, and where its request is bound.
struct Frame {
    request: Arc<ApiRequest>,
    state: LayerState,
    /// Where the request goes, as of this layer's edits.
    route: Route,
}

#[derive(Clone, Copy)]
struct Route {
    destination: Destination,
    /// Whether the request is still for the endpoint's origin (no layer moved it).
    at_endpoint: bool,
}

const AT_ENDPOINT: Route = Route {
    destination: Destination::Endpoint,
    at_endpoint: true,
};

fn named(layer: &dyn Layer, error: LayerError) -> RequestError {
    RequestError::of(
        error.kind,
        format!("plugin `{}`: {}", layer.name(), error.message),
    )
}

impl Chain {
    /// A chain of `layers` for requests to `endpoint` (`None`: no origin is checked; for a chain
    /// without layers or in tests).
    pub fn new(layers: Vec<Arc<dyn Layer>>, endpoint: Option<Origin>) -> Self {
        Chain {
            row_limit: layers.iter().map(|l| l.max_requests()).max().unwrap_or(1),
            layers: layers.into(),
            endpoint,
        }
    }

    /// No layers.
    pub fn is_empty(&self) -> bool {
        self.layers.is_empty()
    }

    /// Where `after` (edited by `layer`) goes, given where `before` went: a change of origin
    /// must be the endpoint's or one the layer's grants list.
    fn route(
        &self,
        layer: &dyn Layer,
        before: &ApiRequest,
        previous: Route,
        after: &ApiRequest,
    ) -> Result<Route, RequestError> {
        if before.url == after.url {
            return Ok(previous);
        }
        let Some(endpoint) = &self.endpoint else {
            return Ok(previous);
        };
        let origin = Origin::of(&after.url).map_err(|e| {
            named(
                layer,
                RequestError::of(ErrorKind::InvalidRequest, format!("set-url: {e}")),
            )
        })?;
        if &origin == endpoint {
            return Ok(AT_ENDPOINT);
        }
        // Within the origin a layer before it chose: still that route.
        if !previous.at_endpoint && Origin::of(&before.url).is_ok_and(|o| o == origin) {
            return Ok(previous);
        }
        let egress = layer.egress();
        if egress.allows(&origin) {
            return Ok(Route {
                destination: Destination::Granted {
                    credentials: egress.forward_credentials,
                },
                at_endpoint: false,
            });
        }
        Err(named(
            layer,
            RequestError::of(
                ErrorKind::Rejected,
                // The grants are not listed: one may be written with a secret, and this message
                // reaches the enclosing plugins' error hooks (`validate` shows the grants).
                format!(
                    "sent the request to {origin}, which is neither the endpoint's origin ({endpoint}) nor in its grants.outbound_hosts; not sent"
                ),
            ),
        ))
    }

    /// Sends `request` through every layer to `terminal`.
    pub async fn call(&self, request: ApiRequest, terminal: &dyn Terminal) -> Outcome {
        let entry = Arc::new(request);
        let layers = &*self.layers;
        let mut frames: Vec<Frame> = Vec::with_capacity(layers.len());
        let mut attempts = 0u32;
        let mut sent: Option<Arc<ApiRequest>> = None;
        // The layer whose failure the result is, if it is one.
        let mut blamed: Option<&dyn Layer> = None;
        loop {
            // Inward, from the first layer without a frame. One clock read for the pass: the time
            // each layer sends at differs by the inner layers' hooks, microseconds.
            let mut early: Option<(usize, Result<ApiResponse, RequestError>)> = None;
            let now = if layers.is_empty() { 0 } else { monotonic_ns() };
            while frames.len() < layers.len() {
                let i = frames.len();
                let layer = &*layers[i];
                let (before, route) = match frames.last() {
                    Some(f) => (&f.request, f.route),
                    None => (&entry, AT_ENDPOINT),
                };
                let mut frame = Frame {
                    request: before.clone(),
                    state: LayerState::default(),
                    route,
                };
                if layer.hooks().request {
                    match layer.on_request(&mut frame.request, &mut frame.state).await {
                        Ok(RequestAction::Continue) => {
                            if !Arc::ptr_eq(before, &frame.request) {
                                match self.route(layer, before, route, &frame.request) {
                                    Ok(r) => frame.route = r,
                                    Err(e) => {
                                        blamed = Some(layer);
                                        early = Some((i, Err(e)));
                                    }
                                }
                            }
                        }
                        Ok(RequestAction::Respond(response)) => early = Some((i, Ok(response))),
                        Err(e) => {
                            blamed = Some(layer);
                            early = Some((i, Err(named(layer, e))));
                        }
                    }
                }
                if early.is_some() {
                    break;
                }
                frame.state.sends = 1;
                frame.state.sent_at = now;
                frames.push(frame);
            }
            // The terminal, unless a layer answered or failed on the way in.
            let (mut at, mut result) = match early {
                Some(e) => e,
                None => {
                    let (request, route) = match frames.last() {
                        Some(f) => (f.request.clone(), f.route),
                        None => (entry.clone(), AT_ENDPOINT),
                    };
                    attempts += 1;
                    sent = Some(request.clone());
                    blamed = None;
                    let result = terminal.send(request, route.destination).await;
                    (layers.len(), result)
                }
            };
            // Outward, from the layer inside of which the outcome arose.
            let mut resend: Option<usize> = None;
            while at > 0 {
                at -= 1;
                let layer = &*layers[at];
                let hooks = layer.hooks();
                let frame = &mut frames[at];
                let before = frame.request.clone();
                let action = match &mut result {
                    Ok(response) if hooks.response => {
                        layer
                            .on_response(&mut frame.request, response, &mut frame.state)
                            .await
                    }
                    Err(error) if hooks.error => {
                        let incoming = error.clone();
                        match layer
                            .on_error(&mut frame.request, error.clone(), &mut frame.state)
                            .await
                        {
                            // Passed on unchanged: not this layer's error.
                            Ok(OutcomeAction::Fail(e)) if e == incoming => Ok(OutcomeAction::Done),
                            other => other,
                        }
                    }
                    _ => continue,
                };
                match action {
                    Ok(OutcomeAction::Done) => {}
                    Ok(OutcomeAction::Fail(e)) | Err(e) => {
                        blamed = Some(layer);
                        result = Err(named(layer, e));
                    }
                    Ok(OutcomeAction::Respond(response)) => result = Ok(response),
                    Ok(OutcomeAction::Resend(delay)) => {
                        match self.resend(layer, &frames[at], &before, delay, attempts) {
                            Ok(route) => {
                                let frame = &mut frames[at];
                                frame.route = route;
                                frame.state.sends += 1;
                                resend = Some(at);
                                tokio::time::sleep(delay).await;
                                frames[at].state.sent_at = monotonic_ns();
                                break;
                            }
                            Err(e) => {
                                blamed = Some(layer);
                                result = Err(e);
                            }
                        }
                    }
                }
            }
            match resend {
                Some(at) => frames.truncate(at + 1),
                None => {
                    return Outcome {
                        blamed: blamed
                            .filter(|_| result.is_err())
                            .map(|l| l.name().to_owned()),
                        result,
                        attempts,
                        sent: sent.unwrap_or(entry),
                    };
                }
            }
        }
    }

    /// Checks a layer's `resend`: within its `limits.max_requests` and its wait cap, and to where
    /// its grants allow if it moved its request.
    ///
    /// A layer's own sends are bounded by its `max_requests`, and the row's by the largest
    /// `max_requests` of the chain, whichever layers asked: otherwise plugins nested inside each
    /// other would multiply their limits (a retry around two plugins that each resend: forty
    /// requests for one row with every limit at ten).
    fn resend(
        &self,
        layer: &dyn Layer,
        frame: &Frame,
        before: &ApiRequest,
        delay: Duration,
        attempts: u32,
    ) -> Result<Route, RequestError> {
        if frame.state.sends >= layer.max_requests() {
            return Err(named(
                layer,
                RequestError::of(
                    ErrorKind::Rejected,
                    format!(
                        "asked to send the row's request more than {} times (limits.max_requests)",
                        layer.max_requests()
                    ),
                ),
            ));
        }
        if attempts >= self.row_limit {
            return Err(named(
                layer,
                RequestError::of(
                    ErrorKind::Rejected,
                    format!(
                        "asked to send the row's request again after its {attempts} requests, the most its chain allows (the largest limits.max_requests)"
                    ),
                ),
            ));
        }
        if delay > MAX_RESEND_DELAY {
            return Err(named(
                layer,
                RequestError::of(
                    ErrorKind::Rejected,
                    format!(
                        "asked to wait {:.0} s before a resend, more than the {} s allowed",
                        delay.as_secs_f64(),
                        MAX_RESEND_DELAY.as_secs()
                    ),
                ),
            ));
        }
        self.route(layer, before, frame.route, &frame.request)
    }
}

#[cfg(test)]
mod tests;
