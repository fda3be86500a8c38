//! The API's say in how fast a run goes: adaptive concurrency against a server whose capacity the
//! test sets (`/capacity/{C}/{ms}/...`: C requests at a time, 429 beyond, no queue), its rate-limit
//! headers pausing every worker (`/window/{N}/...`: N requests per second, then 429 with
//! Retry-After and RateLimit), and the global rate limit in every one-second window, the first
//! included. Every figure is the server's.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use testkit::ApiServer;

use crate::support::*;

/// (requests served, sum of the requests in service as each began, answered 429) at the server.
fn capacity_counts(server: &ApiServer) -> (u64, u64, u64) {
    let c = &server.counters;
    (
        c.capacity_served.load(Ordering::SeqCst),
        c.capacity_active_sum.load(Ordering::SeqCst),
        c.capacity_refused.load(Ordering::SeqCst),
    )
}

/// Runs `case` in the background; once the server has served `settle` requests, calls `at_settle`,
/// and when `steady` more have been served, takes a snapshot. Returns (snapshot at settle, snapshot
/// at the end of the steady stretch, exit status).
fn watch_run(
    server: &ApiServer,
    case: &Case,
    settle: u64,
    at_settle: impl FnOnce(),
    wait_after: Duration,
) -> ((u64, u64, u64), (u64, u64, u64), std::process::ExitStatus) {
    let mut child = case.spawn();
    assert!(
        wait_until(Duration::from_secs(120), || capacity_counts(server).0
            >= settle),
        "the server served fewer than {settle} requests in 120 s"
    );
    at_settle();
    std::thread::sleep(wait_after);
    let from = capacity_counts(server);
    let status = child.wait().unwrap();
    (from, capacity_counts(server), status)
}

fn adaptive(extra: &str) -> String {
    format!(
        "execution: {{concurrency: adaptive, concurrency_limit: 64, partitions: 2, batch_size: 1000, max_attempts: 10}}\n{extra}"
    )
}

/// The mean concurrency the server saw and its share of 429s, past the first 1,500 requests, for a
/// run of `rows` rows with `execution`.
async fn at_capacity(rows: usize, execution: &str) -> (f64, f64) {
    let (server, case) = served(rows, "/capacity/20/20/{id}", execution).await;
    let (from, to, status) = watch_run(&server, &case, 1500, || {}, Duration::ZERO);
    assert!(status.success(), "{status:?}");
    assert_eq!(
        successes_per_id(&read_bronze(&case.bronze())).len(),
        rows,
        "every row lands"
    );
    let (served, active, refused) = (to.0 - from.0, to.1 - from.1, to.2 - from.2);
    (
        active as f64 / served as f64,
        refused as f64 / (served + refused) as f64,
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn adaptive_concurrency_settles_near_the_servers_capacity_with_few_429s() {
    // Capacity 20 at 20 ms each; a ceiling of 128. Rows answered 429 fail and are sent again by
    // the next pass. The yardstick is the best fixed setting, exactly the capacity (2 × 10), run
    // the same way: the server's mean concurrency also counts what the client's own overhead costs
    // on this machine, whatever the algorithm.
    let (fixed, fixed_share) = at_capacity(
        6000,
        "execution: {concurrency_limit: 10, partitions: 2, batch_size: 1000}\n",
    )
    .await;
    assert_eq!(fixed_share, 0.0);
    let (mean, share) = at_capacity(6000, &adaptive("")).await;
    eprintln!(
        "server's mean concurrency: fixed 2 × 10 {fixed:.1}; adaptive {mean:.1} with {:.2}% 429s",
        share * 100.0
    );
    // 0.85: the gate's hand-over of a slot costs a wake-up the fixed setting does not pay, and
    // this debug build shares two cores with the server; `just bench` measures the release build
    // against the capacity itself.
    assert!(
        mean >= 0.85 * fixed,
        "adaptive kept {mean:.1} requests in service at the server, fixed at the capacity {fixed:.1}"
    );
    assert!(
        share < 0.05,
        "{:.1}% of the requests answered 429",
        share * 100.0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn adaptive_concurrency_follows_a_capacity_that_halves_mid_run() {
    let (server, case) = served(8000, "/capacity/20/20/{id}", &adaptive("")).await;
    let halve = || server.counters.capacity_divisor.store(2, Ordering::SeqCst);
    // Two seconds after the capacity fell to 10, the run has followed it.
    let (from, to, status) = watch_run(&server, &case, 2000, halve, Duration::from_secs(2));
    assert!(status.success(), "{status:?}");
    let (served, active, refused) = (to.0 - from.0, to.1 - from.1, to.2 - from.2);
    let mean = active as f64 / served as f64;
    let share = refused as f64 / (served + refused) as f64;
    eprintln!(
        "after the halving: mean concurrency {mean:.1}, {:.2}% 429s",
        share * 100.0
    );
    // At most the capacity, and not far below it (the client's overhead on this machine costs
    // about a fifth at the server even at the best fixed setting; see the test above).
    assert!(
        (6.0..=10.0).contains(&mean),
        "mean concurrency {mean:.1} of a capacity of 10"
    );
    assert!(
        share < 0.05,
        "{refused} of {} requests answered 429 ({:.1}%)",
        served + refused,
        share * 100.0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn rate_limit_headers_pause_every_worker_not_just_the_row() {
    // 50 requests a second, then 429 with Retry-After: 1 and RateLimit. Without a retry plugin a
    // 429 fails its row at once (sent again by the next pass). Ignoring the headers, the workers
    // burn through the rest of each second's rows with 429s; pausing, only the requests already on
    // their way when the first 429 came back are refused.
    let mut refused = Vec::new();
    for headers in ["ignore", "pause"] {
        let extra = format!(
            "execution: {{concurrency_limit: 20, partitions: 2, max_attempts: 20, rate_limit_headers: {headers}}}\n"
        );
        let (server, case) = served(300, "/window/50/{id}", &extra).await;
        let out = case.run();
        if headers == "pause" {
            assert_exit(&out, 0);
            assert_eq!(successes_per_id(&read_bronze(&case.bronze())).len(), 300);
        }
        refused.push(server.counters.capacity_refused.load(Ordering::SeqCst));
    }
    let (ignored, paused) = (refused[0], refused[1]);
    assert!(
        paused * 3 < ignored,
        "429s: {paused} pausing, {ignored} ignoring the headers"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_rate_limit_holds_in_every_one_second_window_the_first_included() {
    let (server, case) = served(
        700,
        "/r/{id}",
        "execution: {max_requests_per_second: 200, partitions: 2, concurrency_limit: 50}\n",
    )
    .await;
    server.counters.keep_arrivals();
    assert_exit(&case.run(), 0);
    let at: Vec<Instant> = server.counters.arrivals().iter().map(|a| a.at).collect();
    assert_eq!(at.len(), 700);
    // Every window of one second that starts at an arrival, the very first one included.
    let most = (0..at.len())
        .map(|i| {
            at[i..]
                .iter()
                .take_while(|t| **t - at[i] < Duration::from_secs(1))
                .count()
        })
        .max()
        .unwrap();
    assert!(
        most <= 204,
        "{most} requests in one second against a limit of 200"
    );
}
