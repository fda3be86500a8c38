//! `retry`: sends the request again on a retryable status or transport error, with exponential
//! backoff and full jitter, honouring `Retry-After` (seconds) up to a cap. The wait is the host's
//! (`resend` after N ms): no instance is held while a row waits.
//!
//! ```yaml
//! middleware:
//!   - type: retry
//!     max_attempts: 3                               # attempts in all (default 3)
//!     retry_status_codes: [429, 500, 502, 503, 504]
//!     base_delay: 0.5                               # seconds; attempt n waits up to base_delay * 2^(n-1)
//!     max_delay: 30                                 # seconds; cap on any one wait, Retry-After included
//!     retry_errors: [connect, reset, timeout]       # transport error kinds retried (also: tls, other)
//! ```

use std::cell::Cell;

use serde::Deserialize;
use sparkwasm_plugin::{
    ERROR_KINDS, Error, Hooks, Middleware, Outcome, Request, Response, kind_name,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default = "default_attempts")]
    max_attempts: u32,
    #[serde(default = "default_codes")]
    retry_status_codes: Vec<u16>,
    #[serde(default = "default_base")]
    base_delay: f64,
    #[serde(default = "default_max")]
    max_delay: f64,
    #[serde(default = "default_errors")]
    retry_errors: Vec<String>,
}

fn default_attempts() -> u32 {
    3
}
fn default_codes() -> Vec<u16> {
    vec![429, 500, 502, 503, 504]
}
fn default_base() -> f64 {
    0.5
}
fn default_max() -> f64 {
    30.0
}
fn default_errors() -> Vec<String> {
    ["connect", "reset", "timeout"].map(String::from).to_vec()
}

struct Retry {
    config: Config,
    /// splitmix64 state, seeded from the monotonic clock (instances created close together still
    /// diverge after the first mix; jitter needs no more).
    seed: Cell<u64>,
}

impl Retry {
    /// A uniform number in [0, 1).
    fn random(&self) -> f64 {
        let state = self.seed.get().wrapping_add(0x9E37_79B9_7F4A_7C15);
        self.seed.set(state);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }

    /// How long to wait before attempt `attempt + 1` (attempt counts from 1).
    fn backoff(&self, attempt: u32, retry_after: Option<f64>) -> Outcome {
        Outcome::Resend(delay_ms(&self.config, attempt, retry_after, || {
            self.random()
        }))
    }
}

/// The wait before attempt `attempt + 1`, in ms: `Retry-After` when the server sent one, else a uniform
/// draw (`unit` in [0, 1)) below `base_delay * 2^(attempt-1)`; both capped at `max_delay`.
fn delay_ms(c: &Config, attempt: u32, retry_after: Option<f64>, unit: impl FnOnce() -> f64) -> u32 {
    let seconds = match retry_after {
        Some(s) => s.min(c.max_delay),
        None => {
            let exponent = attempt.saturating_sub(1).min(1023) as i32;
            (c.base_delay * 2f64.powi(exponent)).min(c.max_delay) * unit()
        }
    };
    (seconds.max(0.0) * 1000.0).min(u32::MAX as f64) as u32
}

/// `Retry-After: <seconds>`. (The HTTP-date form needs a wall clock, which plugins are not granted;
/// it falls back to the backoff.)
fn retry_after(response: &Response) -> Option<f64> {
    response.header("retry-after")?.trim().parse::<f64>().ok()
}

impl Middleware for Retry {
    type Config = Config;

    fn new(config: Config) -> Result<Self, String> {
        if config.max_attempts == 0 {
            return Err("max_attempts must be at least 1".into());
        }
        if !(config.base_delay >= 0.0 && config.max_delay >= 0.0) {
            return Err("base_delay and max_delay must be zero or more seconds".into());
        }
        if let Some(bad) = config
            .retry_errors
            .iter()
            .find(|k| !ERROR_KINDS.contains(&k.as_str()))
        {
            return Err(format!(
                "retry_errors: unknown error kind `{bad}` (one of: {})",
                ERROR_KINDS.join(", ")
            ));
        }
        Ok(Retry {
            config,
            seed: Cell::new(sparkwasm_plugin::now_ns()),
        })
    }

    fn hooks(&self) -> Hooks {
        Hooks::ON_RESPONSE | Hooks::ON_ERROR
    }

    fn on_response(&self, request: &Request, response: &Response) -> Outcome {
        let attempt = request.sends();
        let c = &self.config;
        if attempt >= c.max_attempts || !c.retry_status_codes.contains(&response.status()) {
            response.set_metadata("retry.attempts", &attempt.to_string());
            return Outcome::Done;
        }
        self.backoff(attempt, retry_after(response))
    }

    fn on_error(&self, request: &Request, mut error: Error) -> Outcome {
        let attempt = request.sends();
        let c = &self.config;
        let retryable = c.retry_errors.iter().any(|k| k == kind_name(error.kind));
        if attempt >= c.max_attempts || !retryable {
            if attempt > 1 {
                error.message = format!("{} (after {attempt} attempts)", error.message);
            }
            return Outcome::Fail(error);
        }
        self.backoff(attempt, None)
    }
}

sparkwasm_plugin::export_middleware!(Retry);

#[cfg(test)]
mod tests {
    use super::*;

    fn config(base_delay: f64, max_delay: f64) -> Config {
        Config {
            max_attempts: 5,
            retry_status_codes: default_codes(),
            base_delay,
            max_delay,
            retry_errors: default_errors(),
        }
    }

    #[test]
    fn the_ceiling_doubles_per_attempt_up_to_max_delay() {
        let c = config(0.5, 3.0);
        // `unit` just below 1 shows the ceiling itself.
        let top = |attempt| delay_ms(&c, attempt, None, || 0.999_999);
        assert_eq!(
            [1, 2, 3, 4, 5, 40].map(top),
            [499, 999, 1999, 2999, 2999, 2999]
        );
        assert_eq!(delay_ms(&c, 3, None, || 0.0), 0);
        assert_eq!(delay_ms(&c, 3, None, || 0.25), 500);
    }

    #[test]
    fn retry_after_is_honoured_and_capped() {
        let c = config(0.5, 30.0);
        let never = || panic!("no jitter when the server says how long to wait");
        assert_eq!(delay_ms(&c, 1, Some(2.5), never), 2500);
        assert_eq!(delay_ms(&c, 1, Some(3600.0), never), 30_000);
        assert_eq!(delay_ms(&c, 1, Some(-4.0), never), 0);
        assert_eq!(delay_ms(&config(0.5, 1e12), 1, Some(1e12), never), u32::MAX);
    }

    #[test]
    fn the_jitter_is_uniform_and_seeds_diverge() {
        let retry = |seed| Retry {
            config: config(1.0, 30.0),
            seed: Cell::new(seed),
        };
        let (a, b) = (retry(1), retry(2));
        let draws: Vec<f64> = (0..10_000).map(|_| a.random()).collect();
        assert!(draws.iter().all(|x| (0.0..1.0).contains(x)));
        let mean = draws.iter().sum::<f64>() / draws.len() as f64;
        assert!((mean - 0.5).abs() < 0.02, "mean {mean}");
        // Ten buckets, each within 20% of its expected 1,000.
        let mut buckets = [0u32; 10];
        for x in &draws {
            buckets[(x * 10.0) as usize] += 1;
        }
        assert!(
            buckets.iter().all(|n| (800..1200).contains(n)),
            "{buckets:?}"
        );
        let other: Vec<f64> = (0..100).map(|_| b.random()).collect();
        assert_ne!(&draws[..100], &other[..]);
    }

    #[test]
    fn bad_settings_are_refused_before_any_row() {
        let refused = |c: Config| Retry::new(c).err().expect("refused");
        let mut c = config(0.5, 30.0);
        c.max_attempts = 0;
        assert_eq!(refused(c), "max_attempts must be at least 1");
        assert!(refused(config(-1.0, 30.0)).contains("zero or more"));
        assert!(refused(config(f64::NAN, 30.0)).contains("zero or more"));
        let mut c = config(0.5, 30.0);
        c.retry_errors = vec!["dns".into()];
        assert!(refused(c).starts_with("retry_errors: unknown error kind `dns`"));
    }
}
