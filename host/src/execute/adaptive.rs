//! The API's say in how fast a run goes.
//!
//! [`Gate`]: adaptive concurrency (`execution.concurrency: adaptive`), written after Vector's adaptive
//! request concurrency. How many requests may be on the network at once starts at 1 and is adjusted
//! once per round trip: one more while the round trip time holds at its average and the limit was
//! used; a tenth less (at least one less) on back-pressure — a 429, a 503, a timeout — or on a round
//! trip time above its average by more than 2.5 deviations (the API is queueing). The ceiling is the
//! run's consumers (`partitions × concurrency_limit`).
//!
//! [`Pause`]: the API's rate-limit headers. An answer that says to come back later (`Retry-After` on
//! a 429 or 503; `RateLimit` / `RateLimit-Remaining` + `RateLimit-Reset` (IETF httpapi draft) or
//! `X-RateLimit-Remaining` + `X-RateLimit-Reset` with nothing remaining) holds every request to the
//! host until then, capped by `execution.max_pause_seconds`.

use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::api::{ApiResponse, ErrorKind, RequestError};

/// Vector's defaults: the weight of a new round trip time in its average, how many deviations above
/// the average count as the API queueing, and the cut on back-pressure.
const EWMA_ALPHA: f64 = 0.4;
const RTT_DEVIATION_SCALE: f64 = 2.5;
const DECREASE_RATIO: f64 = 0.9;
/// Calm round trips before the limit goes back to where it met back-pressure.
const CALM_BEFORE_PROBE: u32 = 4;

/// How a request went, for the gate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Signal {
    /// An answer that is not back-pressure: its round trip time counts.
    Answered,
    /// A 429, a 503, a timeout: the API asks for less.
    BackPressure,
    /// Anything else (a refused connection, a reset): says nothing about load.
    Other,
}

impl Signal {
    /// The signal of a request's result.
    pub(crate) fn of(result: &Result<ApiResponse, RequestError>) -> Signal {
        match result {
            Ok(r) if matches!(r.status, 429 | 503) => Signal::BackPressure,
            Ok(_) => Signal::Answered,
            Err(e) if e.kind == ErrorKind::Timeout => Signal::BackPressure,
            Err(_) => Signal::Other,
        }
    }
}

/// The adaptive concurrency limit, shared by every worker.
pub(crate) struct Gate {
    ceiling: usize,
    slots: Semaphore,
    state: Mutex<State>,
}

struct State {
    /// Requests allowed at once.
    limit: usize,
    /// Slots in existence (free in the semaphore or taken); above `limit` after a cut, until
    /// enough requests return theirs.
    slots: usize,
    in_flight: usize,
    /// The limit was used in full during this period.
    reached: bool,
    back_pressure: bool,
    /// When the limit was last cut: back-pressure on requests sent before it was already answered
    /// by that cut (one cut per round of requests, as TCP cuts once per window).
    last_cut: Option<Instant>,
    /// The limit that met back-pressure last, and the calm periods since: the limit climbs back to
    /// it one step per round trip, but probes it again only after a few calm ones (fewer 429s
    /// at a steady capacity).
    pressed_at: Option<usize>,
    calm: u32,
    period_start: Instant,
    rtt_sum: f64,
    rtt_count: u32,
    /// The average round trip time (seconds) and its mean deviation, over past periods.
    past: Option<(f64, f64)>,
}

/// A taken slot: give it back with [`Gate::done`]. Dropped without (a request future cancelled
/// mid-flight), it goes back on its own, counting as no signal: a slot is never lost.
pub(crate) struct Slot<'a> {
    gate: &'a Gate,
    started: Instant,
    returned: bool,
}

impl Slot<'_> {
    /// The round trip starts now (after waits that are not the API's).
    pub(crate) fn restart(&mut self) {
        self.started = Instant::now();
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        if !self.returned {
            self.returned = true;
            self.gate.give_back(self.started, Signal::Other);
        }
    }
}

impl Gate {
    /// A gate starting at one request at a time, growing to at most `ceiling`.
    pub(crate) fn new(ceiling: usize) -> Self {
        Gate {
            ceiling: ceiling.max(1),
            slots: Semaphore::new(1),
            state: Mutex::new(State {
                limit: 1,
                slots: 1,
                in_flight: 0,
                reached: false,
                back_pressure: false,
                last_cut: None,
                pressed_at: None,
                calm: 0,
                period_start: Instant::now(),
                rtt_sum: 0.0,
                rtt_count: 0,
                past: None,
            }),
        }
    }

    /// The current limit.
    pub(crate) fn limit(&self) -> usize {
        self.state.lock().expect("gate lock").limit
    }

    /// Waits for a slot.
    pub(crate) async fn acquire(&self) -> Slot<'_> {
        self.slots
            .acquire()
            .await
            .expect("the gate's semaphore is never closed")
            .forget();
        let mut s = self.state.lock().expect("gate lock");
        s.in_flight += 1;
        if s.in_flight >= s.limit {
            s.reached = true;
        }
        Slot {
            gate: self,
            started: Instant::now(),
            returned: false,
        }
    }

    /// Gives `slot` back with how its request went; the new limit if it changed.
    pub(crate) fn done(&self, mut slot: Slot<'_>, signal: Signal) -> Option<usize> {
        slot.returned = true;
        self.give_back(slot.started, signal)
    }

    fn give_back(&self, started: Instant, signal: Signal) -> Option<usize> {
        let now = Instant::now();
        let rtt = (now - started).as_secs_f64();
        let mut s = self.state.lock().expect("gate lock");
        s.in_flight -= 1;
        match signal {
            Signal::Answered => {
                s.rtt_sum += rtt;
                s.rtt_count += 1;
            }
            Signal::BackPressure if s.last_cut.is_none_or(|cut| started >= cut) => {
                s.back_pressure = true
            }
            Signal::BackPressure => {}
            Signal::Other => {}
        }
        let before = s.limit;
        // A period lasts one average round trip (the first: this one).
        let period = s.past.map_or(rtt, |(mean, _)| mean);
        if (now - s.period_start).as_secs_f64() >= period || s.back_pressure {
            self.adjust(&mut s, now);
        }
        // The slot goes back, unless a cut left more slots than the limit.
        if s.slots > s.limit {
            s.slots -= 1;
        } else {
            self.slots.add_permits(1);
        }
        (s.limit != before).then_some(s.limit)
    }

    fn adjust(&self, s: &mut State, now: Instant) {
        let current = (s.rtt_count > 0).then(|| s.rtt_sum / f64::from(s.rtt_count));
        // Queueing: the period's round trips well above their average (by 2.5 deviations, at least a
        // tenth of the average and a millisecond: below that, the client's own jitter speaks).
        let queueing = match (current, s.past) {
            (Some(c), Some((mean, dev))) => {
                c > mean + (RTT_DEVIATION_SCALE * dev).max(mean * 0.1).max(0.001)
            }
            _ => false,
        };
        if s.back_pressure || queueing {
            if s.back_pressure {
                s.pressed_at = Some(s.limit);
            }
            let cut = ((s.limit as f64) * DECREASE_RATIO).floor() as usize;
            s.limit = cut.min(s.limit - 1).max(1);
            s.last_cut = Some(now);
            s.calm = 0;
        } else {
            s.calm += 1;
            let probing = s.pressed_at.is_some_and(|p| s.limit + 1 >= p);
            if s.reached && s.limit < self.ceiling && (!probing || s.calm >= CALM_BEFORE_PROBE) {
                s.limit += 1;
                s.slots += 1;
                self.slots.add_permits(1);
            }
        }
        if let (Some(c), false) = (current, s.back_pressure) {
            s.past = Some(match s.past {
                None => (c, c / 2.0),
                Some((mean, dev)) => (
                    EWMA_ALPHA * c + (1.0 - EWMA_ALPHA) * mean,
                    EWMA_ALPHA * (c - mean).abs() + (1.0 - EWMA_ALPHA) * dev,
                ),
            });
        }
        s.period_start = now;
        s.rtt_sum = 0.0;
        s.rtt_count = 0;
        s.reached = s.in_flight >= s.limit;
        s.back_pressure = false;
    }
}

/// A pause of every request to the host, as the API's rate-limit headers ask.
pub(crate) struct Pause {
    max: Duration,
    until: Mutex<Option<Instant>>,
}

impl Pause {
    /// Pauses of at most `max`.
    pub(crate) fn new(max: Duration) -> Self {
        Pause {
            max,
            until: Mutex::new(None),
        }
    }

    /// When requests may go again, if they are held now.
    pub(crate) fn until(&self) -> Option<Instant> {
        let until = *self.until.lock().expect("pause lock");
        until.filter(|u| *u > Instant::now())
    }

    /// Reads `response`'s rate-limit headers: the pause they ask for (capped), if it starts or
    /// lengthens one.
    pub(crate) fn observe(&self, response: &ApiResponse) -> Option<Duration> {
        let wait = asked_wait(response, SystemTime::now())?.min(self.max);
        if wait.is_zero() {
            return None;
        }
        let until = Instant::now() + wait;
        let mut held = self.until.lock().expect("pause lock");
        match *held {
            Some(u) if u >= until => None,
            _ => {
                *held = Some(until);
                Some(wait)
            }
        }
    }
}

/// How long `response` asks the client to wait before the next request, if it does: `Retry-After`
/// on a 429 or 503, or a rate-limit window with nothing remaining (on any answer).
pub(crate) fn asked_wait(response: &ApiResponse, now: SystemTime) -> Option<Duration> {
    let header = |name: &str| {
        response
            .headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim())
    };
    if matches!(response.status, 429 | 503)
        && let Some(v) = header("retry-after")
    {
        if let Ok(seconds) = v.parse::<u64>() {
            return Some(Duration::from_secs(seconds));
        }
        if let Ok(at) = httpdate::parse_http_date(v) {
            return Some(at.duration_since(now).unwrap_or_default());
        }
    }
    // The draft's structured field: `RateLimit: "default";r=0;t=30` (also `remaining=0, reset=30`).
    if let Some(v) = header("ratelimit") {
        let param = |keys: &[&str]| {
            v.split([';', ','])
                .filter_map(|p| p.trim().split_once('='))
                .find(|(k, _)| keys.contains(&k.trim()))
                .and_then(|(_, n)| n.trim().parse::<u64>().ok())
        };
        if param(&["r", "remaining"]) == Some(0)
            && let Some(t) = param(&["t", "reset"])
        {
            return Some(Duration::from_secs(t));
        }
    }
    for prefix in ["ratelimit-", "x-ratelimit-"] {
        let remaining = header(&format!("{prefix}remaining")).and_then(|v| v.parse::<u64>().ok());
        let reset = header(&format!("{prefix}reset")).and_then(|v| v.parse::<u64>().ok());
        if let (Some(0), Some(reset)) = (remaining, reset) {
            // A reset this large is a Unix time (GitHub's, Twitter's), not seconds to wait.
            let since_epoch = now
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs();
            return Some(Duration::from_secs(if reset > 1_000_000_000 {
                reset.saturating_sub(since_epoch)
            } else {
                reset
            }));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, headers: &[(&str, &str)]) -> ApiResponse {
        ApiResponse {
            status,
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            body: Default::default(),
            metadata: Default::default(),
        }
    }

    #[test]
    fn each_header_form_asks_for_its_wait() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let secs = |r: ApiResponse| asked_wait(&r, now).map(|d| d.as_secs());
        assert_eq!(secs(answer(429, &[("Retry-After", "7")])), Some(7));
        assert_eq!(secs(answer(200, &[("Retry-After", "7")])), None);
        let date = httpdate::fmt_http_date(now + Duration::from_secs(20));
        assert_eq!(secs(answer(503, &[("retry-after", &date)])), Some(20));
        assert_eq!(
            secs(answer(200, &[("RateLimit", "\"default\";r=0;t=30")])),
            Some(30)
        );
        assert_eq!(
            secs(answer(200, &[("RateLimit", "\"default\";r=5;t=30")])),
            None
        );
        assert_eq!(
            secs(answer(
                429,
                &[("RateLimit-Remaining", "0"), ("RateLimit-Reset", "12")]
            )),
            Some(12)
        );
        assert_eq!(
            secs(answer(
                200,
                &[
                    ("X-RateLimit-Remaining", "0"),
                    ("X-RateLimit-Reset", "1800000045")
                ]
            )),
            Some(45)
        );
        assert_eq!(secs(answer(429, &[])), None);
    }

    #[test]
    fn a_pause_is_capped_and_only_lengthens() {
        let p = Pause::new(Duration::from_secs(5));
        assert_eq!(
            p.observe(&answer(429, &[("retry-after", "60")])),
            Some(Duration::from_secs(5))
        );
        assert!(p.until().is_some());
        assert_eq!(p.observe(&answer(429, &[("retry-after", "1")])), None);
    }

    #[tokio::test]
    async fn the_limit_grows_while_answers_hold_and_is_cut_on_back_pressure() {
        let gate = Gate::new(8);
        // Round trips of about 0 ms come back at once: every period ends at its first answer. (A
        // loaded machine may stretch one round trip enough to count as queueing: the limit then
        // climbs back.)
        let mut highest = 0;
        for _ in 0..200 {
            let slots: Vec<Slot<'_>> =
                futures::future::join_all((0..gate.limit()).map(|_| gate.acquire())).await;
            for s in slots {
                gate.done(s, Signal::Answered);
            }
            highest = highest.max(gate.limit());
            if gate.limit() == 8 {
                break;
            }
        }
        assert_eq!(highest, 8, "grows to the ceiling and no further");
        let s = gate.acquire().await;
        assert_eq!(gate.done(s, Signal::BackPressure), Some(7));
        let s = gate.acquire().await;
        assert_eq!(gate.done(s, Signal::BackPressure), Some(6));
        for _ in 0..10 {
            let s = gate.acquire().await;
            gate.done(s, Signal::BackPressure);
        }
        assert_eq!(gate.limit(), 1, "never below one");
        // A request cancelled mid-flight gives its slot back.
        drop(gate.acquire().await);
        let again = tokio::time::timeout(Duration::from_secs(1), gate.acquire()).await;
        assert!(again.is_ok(), "the dropped slot came back");
    }
}
