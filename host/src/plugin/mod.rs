//! Stage 2: the middleware chain a request passes through before the transport (onion order).
//!
//! Each [`Middleware`] gets the request and a [`Next`] handle to the rest of the chain. It may call
//! `next` zero times (a cache, a validator), once (a listener) or several times (retry); the innermost
//! `next` is the transport. The WASM plugin host implements this trait, so the executor never changes
//! when plugins are added.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use futures::future::BoxFuture;

use crate::request::{ApiRequest, ApiResponse, RequestError};

/// One layer of the onion.
pub trait Middleware: Send + Sync {
    /// The name error messages give for this layer.
    fn name(&self) -> &str;

    fn handle<'a>(
        &'a self,
        request: ApiRequest,
        next: Next<'a>,
    ) -> BoxFuture<'a, Result<ApiResponse, RequestError>>;
}

/// The end of the chain: sends a request over the network.
pub trait Terminal: Send + Sync {
    fn send<'a>(&'a self, request: ApiRequest) -> BoxFuture<'a, Result<ApiResponse, RequestError>>;
}

/// The rest of the chain, as seen from one layer. Copy: a layer may call it any number of times.
#[derive(Clone, Copy)]
pub struct Next<'a> {
    rest: &'a [Arc<dyn Middleware>],
    terminal: &'a dyn Terminal,
    attempts: &'a AtomicU32,
}

impl<'a> Next<'a> {
    pub fn run(self, request: ApiRequest) -> BoxFuture<'a, Result<ApiResponse, RequestError>> {
        match self.rest.split_first() {
            Some((layer, rest)) => layer.handle(request, Next { rest, ..self }),
            None => {
                self.attempts.fetch_add(1, Ordering::Relaxed);
                self.terminal.send(request)
            }
        }
    }
}

/// The configured middleware, outermost first.
#[derive(Clone, Default)]
pub struct Chain {
    layers: Vec<Arc<dyn Middleware>>,
}

/// What one row's trip through the chain produced.
pub struct Outcome {
    pub result: Result<ApiResponse, RequestError>,
    /// How many times the request reached the transport.
    pub attempts: u32,
}

impl Chain {
    pub fn new(layers: Vec<Arc<dyn Middleware>>) -> Self {
        Chain { layers }
    }

    /// Sends `request` through every layer to `terminal`.
    pub async fn call(&self, request: ApiRequest, terminal: &dyn Terminal) -> Outcome {
        let attempts = AtomicU32::new(0);
        let result = Next {
            rest: &self.layers,
            terminal,
            attempts: &attempts,
        }
        .run(request)
        .await;
        Outcome {
            result,
            attempts: attempts.into_inner(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    use super::*;

    /// Answers 503 twice, then 200; records the order in which layers saw the request.
    struct Flaky(Mutex<u32>);

    impl Terminal for Flaky {
        fn send<'a>(
            &'a self,
            request: ApiRequest,
        ) -> BoxFuture<'a, Result<ApiResponse, RequestError>> {
            let mut calls = self.0.lock().unwrap();
            *calls += 1;
            let status = if *calls < 3 { 503 } else { 200 };
            let metadata = request.metadata;
            Box::pin(async move {
                Ok(ApiResponse {
                    status,
                    headers: vec![],
                    body: Default::default(),
                    metadata,
                })
            })
        }
    }

    struct Tag(&'static str);

    impl Middleware for Tag {
        fn name(&self) -> &str {
            self.0
        }
        fn handle<'a>(
            &'a self,
            mut request: ApiRequest,
            next: Next<'a>,
        ) -> BoxFuture<'a, Result<ApiResponse, RequestError>> {
            let order = request.metadata.entry("order".into()).or_default();
            order.push_str(self.0);
            next.run(request)
        }
    }

    struct RetryUntilOk;

    impl Middleware for RetryUntilOk {
        fn name(&self) -> &str {
            "retry"
        }
        fn handle<'a>(
            &'a self,
            request: ApiRequest,
            next: Next<'a>,
        ) -> BoxFuture<'a, Result<ApiResponse, RequestError>> {
            Box::pin(async move {
                loop {
                    let response = next.run(request.clone()).await?;
                    if response.is_success() {
                        return Ok(response);
                    }
                }
            })
        }
    }

    #[tokio::test]
    async fn layers_run_in_onion_order_and_may_call_next_again() {
        let chain = Chain::new(vec![
            Arc::new(Tag("a")),
            Arc::new(RetryUntilOk),
            Arc::new(Tag("b")),
        ]);
        let request = ApiRequest {
            method: http::Method::GET,
            url: "http://x/".into(),
            headers: vec![],
            body: None,
            metadata: BTreeMap::new(),
        };
        let outcome = chain.call(request, &Flaky(Mutex::new(0))).await;
        assert_eq!(outcome.attempts, 3);
        let response = outcome.result.unwrap();
        assert_eq!(response.status, 200);
        // `a` ran once, outside the retry; `b` ran inside it on the last attempt's copy.
        assert_eq!(response.metadata["order"], "ab");
    }
}
