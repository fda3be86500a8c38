//! The end of the chain, where a request leaves the host: the pipeline's credentials (only for a
//! destination that takes them), the global rate limit, then the pooled client.

use std::sync::Arc;
use std::time::Instant;

use futures::future::BoxFuture;

use super::auth::{Static, Strategy};
use super::rate::RateLimiter;
use super::transport::HttpTransport;
use crate::api::{ApiRequest, ApiResponse, RequestError};
use crate::chain::{Destination, Terminal};
use crate::events::{Event, Events};

/// Credentials, then the rate limit, then the network.
pub struct ChainEnd {
    strategy: Strategy,
    /// Fixed credential headers (the legacy `bearer` / `header_auth` middleware, secret endpoint
    /// headers), added after the `auth` section's credential.
    credentials: Vec<Static>,
    rate: Option<RateLimiter>,
    transport: Arc<HttpTransport>,
    events: Events,
}

impl ChainEnd {
    /// The chain's end of a run: `strategy` and `credentials` for the endpoint's origin,
    /// `max_requests_per_second` for every request, `transport` to send.
    pub fn new(
        strategy: Strategy,
        credentials: Vec<Static>,
        max_requests_per_second: Option<f64>,
        transport: Arc<HttpTransport>,
        events: Events,
    ) -> Self {
        ChainEnd {
            strategy,
            credentials,
            rate: max_requests_per_second.map(RateLimiter::new),
            transport,
            events,
        }
    }

    /// Sends `request` as it is (no credential): behind the rate limit, over the pooled client.
    pub(crate) async fn network(
        &self,
        request: Arc<ApiRequest>,
    ) -> Result<ApiResponse, RequestError> {
        if let Some(rate) = &self.rate {
            let waited = rate.acquire().await;
            if !waited.is_zero() {
                self.events.emit(Event::RateLimited { waited });
            }
        }
        self.events.emit(Event::RequestSent);
        let started = Instant::now();
        let result = self.transport.send(request).await;
        self.events.emit(Event::RequestAnswered {
            status: result.as_ref().ok().map(|r| r.status),
            took: started.elapsed(),
        });
        result
    }

    /// The `auth` section's credential first (an auth plugin sees no other credential), then the
    /// fixed credential headers, then the network.
    async fn with_credentials(
        &self,
        request: Arc<ApiRequest>,
    ) -> Result<ApiResponse, RequestError> {
        self.strategy
            .send(request, |r| self.network(self.fixed_credentials(r)))
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
        if destination.takes_credentials() {
            Box::pin(self.with_credentials(request))
        } else {
            Box::pin(self.network(request))
        }
    }
}
