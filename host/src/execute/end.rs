//! The end of the chain, where a request leaves the host: the pipeline's credentials (only for a
//! destination that takes them), the global rate limit, then the pooled client.

use std::sync::Arc;
use tokio::time::Instant;

use futures::future::BoxFuture;

use super::adaptive::{Gate, Pause, Signal};
use super::auth::{Static, Strategy};
use super::rate::RateLimiter;
use super::transport::HttpTransport;
use crate::api::{ApiRequest, ApiResponse, RequestError};
use crate::chain::{Destination, Terminal};
use crate::config::Execution;
use crate::events::{Event, Events};

/// Credentials, then the rate limit, then the network.
pub struct ChainEnd {
    strategy: Strategy,
    /// Fixed credential headers (the legacy `bearer` / `header_auth` middleware, secret endpoint
    /// headers), added after the `auth` section's credential.
    credentials: Vec<Static>,
    rate: Option<RateLimiter>,
    /// Adaptive concurrency (`execution.concurrency: adaptive`).
    gate: Option<Gate>,
    /// Pauses the API's rate-limit headers ask for (`execution.rate_limit_headers: pause`).
    pause: Option<Pause>,
    transport: Arc<HttpTransport>,
    events: Events,
}

impl ChainEnd {
    /// The chain's end of a run: `strategy` and `credentials` for the endpoint's origin, the
    /// execution's rate limit, adaptive concurrency and rate-limit pauses for every request,
    /// `transport` to send.
    pub fn new(
        strategy: Strategy,
        credentials: Vec<Static>,
        execution: &Execution,
        transport: Arc<HttpTransport>,
        events: Events,
    ) -> Self {
        let gate = execution
            .adaptive
            .then(|| Gate::new(execution.partitions * execution.concurrency_limit));
        if let Some(g) = &gate {
            events.emit(Event::ConcurrencyLimit { limit: g.limit() });
        }
        ChainEnd {
            strategy,
            credentials,
            rate: execution.max_requests_per_second.map(RateLimiter::new),
            gate,
            pause: execution
                .pause_on_rate_limit
                .then(|| Pause::new(execution.max_pause)),
            transport,
            events,
        }
    }

    /// Sends `request` as it is (no credential): behind the rate limit, over the pooled client.
    /// (The warm-up's HEAD requests, and a plugin's requests to a granted host, come here.)
    pub(crate) async fn network(
        &self,
        request: Arc<ApiRequest>,
    ) -> Result<ApiResponse, RequestError> {
        self.send_paced(request, false).await
    }

    /// A request to the endpoint: also behind the pauses the API asked for and the adaptive limit,
    /// which only the endpoint's answers move.
    async fn to_endpoint(&self, request: Arc<ApiRequest>) -> Result<ApiResponse, RequestError> {
        self.send_paced(request, true).await
    }

    async fn send_paced(
        &self,
        request: Arc<ApiRequest>,
        endpoint: bool,
    ) -> Result<ApiResponse, RequestError> {
        let pause = self.pause.as_ref().filter(|_| endpoint);
        let gate = self.gate.as_ref().filter(|_| endpoint);
        // The adaptive limit, then the rate, then any pause the API asked for (checked last, so that
        // requests already queued at the gate or the rate limit are held too).
        let mut slot = match gate {
            Some(gate) => Some(gate.acquire().await),
            None => None,
        };
        if let Some(rate) = &self.rate {
            let waited = rate.acquire().await;
            if !waited.is_zero() {
                self.events.emit(Event::RateLimited { waited });
            }
        }
        if let Some(until) = pause.and_then(Pause::until) {
            let held = Instant::now();
            tokio::time::sleep_until(until).await;
            self.events.emit(Event::Paused {
                waited: held.elapsed(),
            });
        }
        // The round trip the gate judges starts now, not while waiting for the rate or a pause.
        if let Some(slot) = &mut slot {
            slot.restart();
        }
        self.events.emit(Event::RequestSent);
        let started = Instant::now();
        let result = self.transport.send(request).await;
        self.events.emit(Event::RequestAnswered {
            status: result.as_ref().ok().map(|r| r.status),
            took: started.elapsed(),
        });
        if let (Some(gate), Some(slot)) = (gate, slot)
            && let Some(limit) = gate.done(slot, Signal::of(&result))
        {
            tracing::debug!(limit, "adaptive concurrency limit");
            self.events.emit(Event::ConcurrencyLimit { limit });
        }
        if let (Some(pause), Ok(answer)) = (pause, &result)
            && let Some(wait) = pause.observe(answer)
        {
            tracing::info!(
                status = answer.status,
                wait_ms = wait.as_millis() as u64,
                "the API asked to wait: every request to it is held"
            );
            self.events.emit(Event::PauseStarted { wait });
        }
        result
    }

    /// The `auth` section's credential first (an auth plugin sees no other credential), then the
    /// fixed credential headers, then the network.
    async fn with_credentials(
        &self,
        request: Arc<ApiRequest>,
        endpoint: bool,
    ) -> Result<ApiResponse, RequestError> {
        self.strategy
            .send(request, |r| {
                self.send_paced(self.fixed_credentials(r), endpoint)
            })
            .await
    }

    fn fixed_credentials(&self, request: Arc<ApiRequest>) -> Arc<ApiRequest> {
        if self.credentials.is_empty() {
            return request;
        }
        let mut request = Arc::unwrap_or_clone(request);
        for c in &self.credentials {
            request = c.apply(request);
        }
        Arc::new(request)
    }
}

impl Terminal for ChainEnd {
    fn send(
        &self,
        request: Arc<ApiRequest>,
        destination: Destination,
    ) -> BoxFuture<'_, Result<ApiResponse, RequestError>> {
        let endpoint = matches!(destination, Destination::Endpoint);
        match (destination.takes_credentials(), endpoint) {
            (true, _) => Box::pin(self.with_credentials(request, endpoint)),
            (false, true) => Box::pin(self.to_endpoint(request)),
            (false, false) => Box::pin(self.network(request)),
        }
    }
}
