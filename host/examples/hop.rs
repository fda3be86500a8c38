//! The CPU one plugin hop costs, in isolation (part of `just bench`; not a test).
//!
//!     cargo run --release --example hop -- PIPELINE [--requests N] [--concurrency C] [--yields Y]
//!
//! Loads PIPELINE's middleware chain exactly as `sparkwasm run` does (same engine, compile cache,
//! instance pool, sandbox limits) and sends N requests through it to a terminal that answers with a
//! small 200 at once, or after giving way Y times (as a network exchange wakes its task; no network,
//! no sink), C at a time on one single-threaded runtime, as a worker thread runs them. Prints one JSON line: CPU µs per request over the timed requests (a warm-up
//! round first fills the instance pool). `bench/run.py` runs it with no middleware, the legacy chain
//! and four passthrough guests: (CPU with - CPU without) / 4 is the cost of a hop.

use std::sync::Arc;

use futures::future::BoxFuture;
use sparkwasm::api::{ApiRequest, ApiResponse, RequestError};
use sparkwasm::chain::{Chain, Destination, Terminal};
use sparkwasm::config::{self, LoadOptions, SecretStore};
use sparkwasm::execute::transport::HttpTransport;
use sparkwasm::plugin;
use sparkwasm::redact::Redactor;

/// The allocator the `sparkwasm` binary runs with.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Answers every request with the same small JSON document, as the bench's endpoint does, after
/// giving way `.0` times (each a wake-up, as a network exchange has: the row task is suspended
/// and resumed that many times).
struct Canned(usize);

impl Terminal for Canned {
    fn send(
        &self,
        request: Arc<ApiRequest>,
        _: Destination,
    ) -> BoxFuture<'_, Result<ApiResponse, RequestError>> {
        Box::pin(async move {
            for _ in 0..self.0 {
                tokio::task::yield_now().await;
            }
            Ok(ApiResponse {
                status: 200,
                headers: vec![
                    ("content-type".into(), "application/json".into()),
                    ("content-length".into(), "27".into()),
                ],
                body: bytes::Bytes::from_static(br#"{"id":"1","echo":"/items/1"}"#),
                // As the transport does: the metadata is copied only when the request is shared.
                metadata: ApiRequest::into_metadata(request),
            })
        })
    }
}

fn cpu_seconds() -> f64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::uninit();
    // SAFETY: getrusage fills the struct it is given.
    let usage = unsafe {
        libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr());
        usage.assume_init()
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let pipeline = args
        .next()
        .expect("usage: hop PIPELINE [--requests N] [--concurrency C] [--yields Y]");
    let (mut requests, mut concurrency, mut yields) = (200_000usize, 32usize, 0usize);
    while let Some(flag) = args.next() {
        let value: usize = args
            .next()
            .and_then(|v| v.parse().ok())
            .expect("a number after the flag");
        match flag.as_str() {
            "--requests" => requests = value,
            "--concurrency" => concurrency = value,
            "--yields" => yields = value,
            other => panic!("unknown flag {other}"),
        }
    }
    let _ = rustls::crypto::ring::default_provider().install_default();
    let store = SecretStore::default();
    let pipeline = config::load(
        std::path::Path::new(&pipeline),
        &LoadOptions {
            secrets: &store,
            base_dir: std::env::current_dir().expect("working directory"),
            shard: None,
            source: Default::default(),
            retry_failed: false,
            allow_unpinned: false,
        },
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let report = runtime.block_on(async {
        let transport = Arc::new(HttpTransport::new(&pipeline.transport, &[concurrency], &[1]).expect("transport"));
        let redactor = Arc::new(Redactor::default());
        let sender: Arc<dyn sparkwasm::api::Sender> = transport.clone();
        let plugins = plugin::load(&pipeline, transport.shards(), &sender, &redactor)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let endpoint = sparkwasm::chain::Origin::of("http://127.0.0.1:9/").ok();
        let chain = Arc::new(Chain::new(plugins.layers, endpoint));
        let terminal: Arc<dyn Terminal> = Arc::new(Canned(yields));
        let round = |n: usize| {
            let (chain, terminal) = (chain.clone(), terminal.clone());
            async move {
                let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
                let mut tasks = tokio::task::JoinSet::new();
                for _ in 0..concurrency {
                    let (chain, terminal, next) = (chain.clone(), terminal.clone(), next.clone());
                    tasks.spawn(async move {
                        let mut failed = 0usize;
                        while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < n {
                            let request = ApiRequest {
                                method: http::Method::GET,
                                url: "http://127.0.0.1:9/items/1".into(),
                                headers: vec![],
                                body: None,
                                metadata: [("partition".to_owned(), "0".to_owned())].into(),
                            };
                            let outcome = chain.call(request, &*terminal).await;
                            failed += usize::from(outcome.result.is_err());
                        }
                        failed
                    });
                }
                let mut failed = 0;
                while let Some(f) = tasks.join_next().await {
                    failed += f.expect("a request task");
                }
                failed
            }
        };
        round(concurrency * 10).await;
        let cpu = cpu_seconds();
        let wall = std::time::Instant::now();
        let failed = round(requests).await;
        let (cpu, wall) = (cpu_seconds() - cpu, wall.elapsed().as_secs_f64());
        format!(
            "{{\"middleware\": {}, \"requests\": {requests}, \"failed\": {failed}, \"cpu_us_per_request\": {:.3}, \"wall_s\": {wall:.3}}}",
            pipeline.middleware.len(),
            cpu / requests as f64 * 1e6
        )
    });
    println!("{report}");
}
