//! Stage 2: the middleware chain a request passes through before the transport (onion order).
//!
//! Each [`Middleware`] gets the request and a [`Next`] handle to the rest of the chain. It may call
//! `next` zero times (a cache, a validator), once (a listener) or several times (retry); the innermost
//! `next` is the transport. The WASM plugin host implements this trait, so the executor never changes
//! when plugins are added.
//!
//! A request moves through the chain as an `Arc<ApiRequest>`: a layer that only passes it on, and the
//! record of what was sent, share one copy; a layer that edits it while it is shared copies it first
//! (`Arc::make_mut`), so no edit reaches another layer's request.

pub mod builtin;
mod wasm;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;

pub use wasm::{PluginError, Plugins, WORKER, WasmAuth, load};

use crate::request::{ApiRequest, ApiResponse, RequestError};

/// One layer of the onion.
pub trait Middleware: Send + Sync {
    /// The name error messages give for this layer.
    fn name(&self) -> &str;

    /// Takes the layer by `Arc` so that its future owns it: the chain hands that future on as it
    /// is, without wrapping it in another allocation per hop.
    fn handle(
        self: Arc<Self>,
        request: Arc<ApiRequest>,
        next: Next,
    ) -> BoxFuture<'static, Result<ApiResponse, RequestError>>;
}

/// The end of the chain: sends a request over the network. Behind middleware the request is shared
/// (with the record of what was sent): a terminal that changes it copies it first.
pub trait Terminal: Send + Sync {
    fn send(&self, request: Arc<ApiRequest>) -> BoxFuture<'_, Result<ApiResponse, RequestError>>;
}

/// The rest of the chain, as seen from one layer. Cheap to clone; a layer may call it any number of
/// times, and may hand it to code that outlives the call (a plugin's `next` import).
#[derive(Clone)]
pub struct Next {
    layers: Arc<[Arc<dyn Middleware>]>,
    index: usize,
    terminal: Arc<dyn Terminal>,
    trip: Arc<Trip>,
}

/// What one row's trip through the chain left at the terminal.
#[derive(Default)]
struct Trip {
    attempts: AtomicU32,
    /// The request as the last attempt sent it (middleware may change url, headers and metadata), or
    /// as it entered the chain when nothing was sent; kept only when the chain has layers.
    last_sent: Mutex<Option<Arc<ApiRequest>>>,
}

impl Next {
    pub fn run(
        &self,
        request: Arc<ApiRequest>,
    ) -> BoxFuture<'static, Result<ApiResponse, RequestError>> {
        match self.layers.get(self.index) {
            Some(layer) => {
                let next = Next {
                    index: self.index + 1,
                    ..self.clone()
                };
                layer.clone().handle(request, next)
            }
            None => {
                self.trip.attempts.fetch_add(1, Ordering::Relaxed);
                if !self.layers.is_empty() {
                    *self.trip.last_sent.lock().expect("trip lock") = Some(request.clone());
                }
                let terminal = self.terminal.clone();
                Box::pin(async move { terminal.send(request).await })
            }
        }
    }
}

/// The configured middleware, outermost first.
#[derive(Clone, Default)]
pub struct Chain {
    layers: Arc<[Arc<dyn Middleware>]>,
}

/// What one row's trip through the chain produced.
pub struct Outcome {
    pub result: Result<ApiResponse, RequestError>,
    /// How many times the request reached the transport.
    pub attempts: u32,
    /// When the chain has layers: the request as middleware last sent it, or as it entered the chain
    /// if nothing was sent. `None` for an empty chain: the request went out as given.
    pub sent: Option<Arc<ApiRequest>>,
}

impl Chain {
    pub fn new(layers: Vec<Arc<dyn Middleware>>) -> Self {
        Chain {
            layers: layers.into(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.layers.is_empty()
    }

    /// Sends `request` through every layer to `terminal`.
    pub async fn call(&self, request: ApiRequest, terminal: &Arc<dyn Terminal>) -> Outcome {
        let trip = Arc::new(Trip::default());
        let request = Arc::new(request);
        if !self.layers.is_empty() {
            *trip.last_sent.lock().expect("trip lock") = Some(request.clone());
        }
        let result = Next {
            layers: self.layers.clone(),
            index: 0,
            terminal: terminal.clone(),
            trip: trip.clone(),
        }
        .run(request)
        .await;
        let sent = trip.last_sent.lock().expect("trip lock").take();
        Outcome {
            result,
            attempts: trip.attempts.load(Ordering::Relaxed),
            sent,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    /// Answers 503 twice, then 200; records the order in which layers saw the request.
    struct Flaky(Mutex<u32>);

    impl Terminal for Flaky {
        fn send(
            &self,
            request: Arc<ApiRequest>,
        ) -> BoxFuture<'_, Result<ApiResponse, RequestError>> {
            let mut calls = self.0.lock().unwrap();
            *calls += 1;
            let status = if *calls < 3 { 503 } else { 200 };
            let metadata = request.metadata.clone();
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
        fn handle(
            self: Arc<Self>,
            mut request: Arc<ApiRequest>,
            next: Next,
        ) -> BoxFuture<'static, Result<ApiResponse, RequestError>> {
            let order = Arc::make_mut(&mut request)
                .metadata
                .entry("order".into())
                .or_default();
            order.push_str(self.0);
            next.run(request)
        }
    }

    struct RetryUntilOk;

    impl Middleware for RetryUntilOk {
        fn name(&self) -> &str {
            "retry"
        }
        fn handle(
            self: Arc<Self>,
            request: Arc<ApiRequest>,
            next: Next,
        ) -> BoxFuture<'static, Result<ApiResponse, RequestError>> {
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

    fn get(url: &str) -> ApiRequest {
        ApiRequest {
            method: http::Method::GET,
            url: url.into(),
            headers: vec![],
            body: None,
            metadata: BTreeMap::new(),
        }
    }

    /// Sends the request on, then edits its own (as a retry that adds a header would).
    struct EditAfterNext;

    impl Middleware for EditAfterNext {
        fn name(&self) -> &str {
            "edit-after-next"
        }
        fn handle(
            self: Arc<Self>,
            mut request: Arc<ApiRequest>,
            next: Next,
        ) -> BoxFuture<'static, Result<ApiResponse, RequestError>> {
            Box::pin(async move {
                let response = next.run(request.clone()).await;
                Arc::make_mut(&mut request).url.push_str("?edited");
                Arc::make_mut(&mut request)
                    .metadata
                    .insert("edited".into(), "yes".into());
                response
            })
        }
    }

    #[tokio::test]
    async fn an_edit_made_after_next_reaches_neither_inner_layers_nor_the_record() {
        let chain = Chain::new(vec![Arc::new(EditAfterNext), Arc::new(Tag("inner"))]);
        let request = get("http://x/");
        let terminal: Arc<dyn Terminal> = Arc::new(Flaky(Mutex::new(2)));
        let outcome = chain.call(request, &terminal).await;
        let sent = outcome.sent.unwrap();
        assert_eq!(sent.url, "http://x/");
        assert_eq!(
            sent.metadata.get("order").map(String::as_str),
            Some("inner")
        );
        assert!(!sent.metadata.contains_key("edited"));
        let response = outcome.result.unwrap();
        assert!(!response.metadata.contains_key("edited"));
    }

    #[tokio::test]
    async fn layers_run_in_onion_order_and_may_call_next_again() {
        let chain = Chain::new(vec![
            Arc::new(Tag("a")),
            Arc::new(RetryUntilOk),
            Arc::new(Tag("b")),
        ]);
        let request = get("http://x/");
        let terminal: Arc<dyn Terminal> = Arc::new(Flaky(Mutex::new(0)));
        let outcome = chain.call(request, &terminal).await;
        assert_eq!(outcome.attempts, 3);
        let response = outcome.result.unwrap();
        assert_eq!(response.status, 200);
        // `a` ran once, outside the retry; `b` ran inside it on the last attempt's copy.
        assert_eq!(response.metadata["order"], "ab");
        assert_eq!(outcome.sent.unwrap().metadata["order"], "ab");
    }
}
