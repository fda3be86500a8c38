//! The chain's trip, with stand-in layers and a stand-in server.

use std::collections::BTreeMap;
use std::sync::Mutex;

use super::*;

/// Answers 503 until its `ok_after`th call, then 200; records each request's URL and
/// destination.
#[derive(Default)]
struct Server {
    ok_after: u32,
    seen: Mutex<Vec<(String, Destination)>>,
}

impl Terminal for Server {
    fn send(
        &self,
        request: Arc<ApiRequest>,
        destination: Destination,
    ) -> BoxFuture<'_, Result<ApiResponse, RequestError>> {
        let mut seen = self.seen.lock().unwrap();
        seen.push((request.url.clone(), destination));
        let status = if seen.len() as u32 > self.ok_after {
            200
        } else {
            503
        };
        let metadata = request.metadata.clone();
        Box::pin(async move {
            Ok(ApiResponse {
                status,
                metadata,
                ..Default::default()
            })
        })
    }
}

/// A test layer: what it does in each hook is a closure.
type OnRequest = fn(&mut ApiRequest) -> Result<RequestAction, LayerError>;
type OnResponse = fn(&mut ApiRequest, &mut ApiResponse, &LayerState) -> OutcomeAction;

struct Test {
    name: &'static str,
    request: Option<OnRequest>,
    response: Option<OnResponse>,
    /// Resends on an error (else the error hook is not asked for).
    resend_errors: bool,
    egress: Egress,
    max_requests: u32,
}

fn layer(name: &'static str) -> Test {
    Test {
        name,
        request: None,
        response: None,
        resend_errors: false,
        egress: Egress::default(),
        max_requests: 10,
    }
}

impl Layer for Test {
    fn name(&self) -> &str {
        self.name
    }
    fn hooks(&self) -> Hooks {
        Hooks {
            request: self.request.is_some(),
            response: self.response.is_some(),
            error: self.resend_errors,
        }
    }
    fn egress(&self) -> &Egress {
        &self.egress
    }
    fn max_requests(&self) -> u32 {
        self.max_requests
    }
    fn on_request<'a>(
        &'a self,
        request: &'a mut Arc<ApiRequest>,
        _: &'a mut LayerState,
    ) -> BoxFuture<'a, Result<RequestAction, LayerError>> {
        let f = self.request.expect("asked for");
        Box::pin(async move { f(Arc::make_mut(request)) })
    }
    fn on_response<'a>(
        &'a self,
        request: &'a mut Arc<ApiRequest>,
        response: &'a mut ApiResponse,
        state: &'a mut LayerState,
    ) -> BoxFuture<'a, Result<OutcomeAction, LayerError>> {
        let f = self.response.expect("asked for");
        Box::pin(async move { Ok(f(Arc::make_mut(request), response, state)) })
    }
    fn on_error<'a>(
        &'a self,
        _: &'a mut Arc<ApiRequest>,
        error: RequestError,
        _: &'a mut LayerState,
    ) -> BoxFuture<'a, Result<OutcomeAction, LayerError>> {
        let resend = self.resend_errors;
        Box::pin(async move {
            Ok(if resend {
                OutcomeAction::Resend(Duration::ZERO)
            } else {
                OutcomeAction::Fail(error)
            })
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

fn chain(layers: Vec<Test>) -> Chain {
    Chain::new(
        layers
            .into_iter()
            .map(|l| Arc::new(l) as Arc<dyn Layer>)
            .collect(),
        Origin::of("http://api.test/").ok(),
    )
}

fn tag(r: &mut ApiRequest, name: &str) {
    r.metadata.entry("order".into()).or_default().push_str(name);
}

fn retry_503(_: &mut ApiRequest, response: &mut ApiResponse, _: &LayerState) -> OutcomeAction {
    if response.status == 503 {
        OutcomeAction::Resend(Duration::ZERO)
    } else {
        OutcomeAction::Done
    }
}

#[tokio::test]
async fn layers_run_in_onion_order_and_a_resend_reruns_only_the_inner_layers() {
    let mut a = layer("a");
    a.request = Some(|r| {
        tag(r, "a");
        Ok(RequestAction::Continue)
    });
    let mut retry = layer("retry");
    retry.response = Some(retry_503);
    let mut b = layer("b");
    b.request = Some(|r| {
        tag(r, "b");
        Ok(RequestAction::Continue)
    });
    let server = Server {
        ok_after: 2,
        ..Default::default()
    };
    let outcome = chain(vec![a, retry, b])
        .call(get("http://api.test/x"), &server)
        .await;
    assert_eq!(outcome.attempts, 3);
    let response = outcome.result.unwrap();
    assert_eq!(response.status, 200);
    // `a` ran once, outside the resends; `b` ran on each resend, on a fresh copy of retry's.
    assert_eq!(response.metadata["order"], "ab");
    assert_eq!(outcome.sent.metadata["order"], "ab");
}

#[tokio::test]
async fn an_edit_made_after_the_last_response_reaches_neither_inner_layers_nor_the_record() {
    let mut late = layer("late");
    late.response = Some(|r, _, _| {
        r.url.push_str("?edited");
        r.metadata.insert("edited".into(), "yes".into());
        OutcomeAction::Done
    });
    let mut inner = layer("inner");
    inner.request = Some(|r| {
        tag(r, "inner");
        Ok(RequestAction::Continue)
    });
    let outcome = chain(vec![late, inner])
        .call(get("http://api.test/x"), &Server::default())
        .await;
    let sent = outcome.sent;
    assert_eq!(sent.url, "http://api.test/x");
    assert_eq!(sent.metadata["order"], "inner");
    assert!(!sent.metadata.contains_key("edited"));
    assert!(!outcome.result.unwrap().metadata.contains_key("edited"));
}

#[tokio::test]
async fn an_answer_on_the_way_in_skips_the_inner_layers_and_the_network() {
    let mut outer = layer("outer");
    outer.response = Some(|_, response, _| {
        response
            .metadata
            .insert("outer_saw".into(), response.status.to_string());
        OutcomeAction::Done
    });
    let mut cache = layer("cache");
    cache.request = Some(|_| {
        Ok(RequestAction::Respond(ApiResponse {
            status: 203,
            ..Default::default()
        }))
    });
    let mut inner = layer("inner");
    inner.request = Some(|_| panic!("an inner layer ran"));
    let server = Server::default();
    let outcome = chain(vec![outer, cache, inner])
        .call(get("http://api.test/x"), &server)
        .await;
    assert_eq!(outcome.attempts, 0);
    assert!(server.seen.lock().unwrap().is_empty());
    assert_eq!(outcome.result.unwrap().metadata["outer_saw"], "203");
}

#[tokio::test]
async fn resends_stop_at_max_requests_with_an_error_naming_the_layer() {
    let mut forever = layer("forever");
    forever.response = Some(|_, _, _| OutcomeAction::Resend(Duration::ZERO));
    forever.max_requests = 4;
    let server = Server {
        ok_after: 1000,
        ..Default::default()
    };
    let outcome = chain(vec![forever])
        .call(get("http://api.test/x"), &server)
        .await;
    assert_eq!(outcome.attempts, 4);
    let e = outcome.result.unwrap_err();
    assert_eq!(
        e.message,
        "plugin `forever`: asked to send the row's request more than 4 times (limits.max_requests)"
    );
}

#[tokio::test]
async fn nested_layers_do_not_multiply_their_max_requests() {
    // Each resends on a 503 and on an error: an outer one (5) around an inner one (3). Counted per
    // layer alone, the row would reach the network 5 × 3 = 15 times.
    let forever = |name, max_requests| {
        let mut l = layer(name);
        l.response = Some(|_, _, _| OutcomeAction::Resend(Duration::ZERO));
        l.resend_errors = true;
        l.max_requests = max_requests;
        l
    };
    let server = Server {
        ok_after: 1000,
        ..Default::default()
    };
    let outcome = chain(vec![forever("outer", 5), forever("inner", 3)])
        .call(get("http://api.test/x"), &server)
        .await;
    assert_eq!(outcome.attempts, 5);
    assert_eq!(server.seen.lock().unwrap().len(), 5);
    assert_eq!(
        outcome.result.unwrap_err().message,
        "plugin `outer`: asked to send the row's request again after its 5 requests, the most its chain allows (the largest limits.max_requests)"
    );
}

#[tokio::test]
async fn a_layer_within_its_own_limit_may_resend_after_the_others_sent() {
    // A retry (10) around a layer that resends once after a 503 (its limit: 2). The row's third
    // request is the inner layer's first resend in the retry's second pass: within both limits.
    let mut outer = layer("retry");
    outer.response = Some(retry_503);
    let mut once = layer("once");
    once.response = Some(|_, response, state| {
        if response.status == 503 && state.sends == 1 {
            OutcomeAction::Resend(Duration::ZERO)
        } else {
            OutcomeAction::Done
        }
    });
    once.max_requests = 2;
    let server = Server {
        ok_after: 3,
        ..Default::default()
    };
    let outcome = chain(vec![outer, once])
        .call(get("http://api.test/x"), &server)
        .await;
    assert_eq!(outcome.result.unwrap().status, 200);
    assert_eq!(outcome.attempts, 4);
}

fn to_mirror(r: &mut ApiRequest) -> Result<RequestAction, LayerError> {
    r.url = "http://mirror.test:8080/x".into();
    Ok(RequestAction::Continue)
}

#[tokio::test]
async fn a_request_moved_to_another_origin_needs_a_grant_and_carries_no_credentials() {
    // No grant: the row fails before anything is sent, naming the layer, target and grant.
    let mut thief = layer("thief");
    thief.request = Some(to_mirror);
    let server = Server::default();
    let outcome = chain(vec![thief])
        .call(get("http://api.test/x"), &server)
        .await;
    let e = outcome.result.unwrap_err();
    assert!(
        e.message.starts_with("plugin `thief`: sent the request to http://mirror.test:8080, which is neither the endpoint's origin (http://api.test:80) nor in its grants.outbound_hosts; not sent"),
        "{e}"
    );
    assert_eq!(outcome.attempts, 0);
    assert!(server.seen.lock().unwrap().is_empty());
    // Granted: sent there, without the pipeline's credentials unless the grant forwards them.
    for forward in [false, true] {
        let mut mirror = layer("mirror");
        mirror.request = Some(to_mirror);
        mirror.egress = Egress {
            hosts: vec!["mirror.test:8080".into()],
            forward_credentials: forward,
        };
        // An inner layer that edits the path keeps the route its outer layer chose.
        let mut inner = layer("inner");
        inner.request = Some(|r| {
            r.url.push_str("/more");
            Ok(RequestAction::Continue)
        });
        let server = Server::default();
        let outcome = chain(vec![mirror, inner])
            .call(get("http://api.test/x"), &server)
            .await;
        assert!(outcome.result.is_ok());
        assert_eq!(
            server.seen.lock().unwrap()[0],
            (
                "http://mirror.test:8080/x/more".to_owned(),
                Destination::Granted {
                    credentials: forward
                }
            )
        );
    }
    // Back to the endpoint's origin: credentials again.
    let mut mirror = layer("mirror");
    mirror.request = Some(to_mirror);
    mirror.egress.hosts = vec!["mirror.test:8080".into()];
    let mut back = layer("back");
    back.request = Some(|r| {
        r.url = "http://API.test:80/y".into();
        Ok(RequestAction::Continue)
    });
    let server = Server::default();
    chain(vec![mirror, back])
        .call(get("http://api.test/x"), &server)
        .await
        .result
        .unwrap();
    assert_eq!(server.seen.lock().unwrap()[0].1, Destination::Endpoint);
}
