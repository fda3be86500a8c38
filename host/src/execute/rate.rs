//! A global rate limit shared by every consumer: a token bucket of depth one (GCRA). Each send reserves
//! the next slot on a virtual schedule `1/rate` apart, so the rate holds over any window, with no burst.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// The limit: one slot every `1/rate` seconds, shared by every worker.
pub(crate) struct RateLimiter {
    interval: Duration,
    next_slot: Mutex<Instant>,
}

impl RateLimiter {
    /// A limit of `per_second` requests per second.
    pub(crate) fn new(per_second: f64) -> Self {
        RateLimiter {
            interval: Duration::from_secs_f64(1.0 / per_second),
            next_slot: Mutex::new(Instant::now()),
        }
    }

    /// Waits for this caller's slot; how long it waited.
    pub(crate) async fn acquire(&self) -> Duration {
        let now = Instant::now();
        let slot = self.reserve(now);
        if slot <= now {
            return Duration::ZERO;
        }
        tokio::time::sleep_until(slot).await;
        slot - now
    }

    /// Books the next free slot at or after `now`.
    fn reserve(&self, now: Instant) -> Instant {
        let mut next = self.next_slot.lock().expect("rate limiter lock");
        let slot = (*next).max(now);
        *next = slot + self.interval;
        slot
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_evenly_spaced_and_idle_time_gives_no_burst() {
        let limiter = RateLimiter::new(100.0);
        let t0 = Instant::now();
        let slots: Vec<Instant> = (0..201).map(|_| limiter.reserve(t0)).collect();
        assert_eq!(slots[200] - slots[0], Duration::from_secs(2));
        assert!(
            slots
                .windows(2)
                .all(|w| w[1] - w[0] == Duration::from_millis(10))
        );
        // After an idle second, the next caller goes at once but the one after waits a full interval.
        let later = slots[200] + Duration::from_secs(1);
        assert_eq!(limiter.reserve(later), later);
        assert_eq!(limiter.reserve(later), later + Duration::from_millis(10));
    }
}
