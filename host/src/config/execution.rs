//! `execution`: how many requests at once, in how many partitions, how fast, and how many results
//! per commit.

use super::keys::{KeySpec, Kind};
use super::walk::{Section, Walker};

/// The `execution` section.
#[derive(Clone, Debug)]
pub struct Execution {
    /// Partitions: independent event loops, each on a worker thread (at most one thread per core).
    pub partitions: usize,
    /// Results per Delta commit.
    pub batch_size: usize,
    /// A global limit on requests per second across every partition; `None`: no limit.
    pub max_requests_per_second: Option<f64>,
    /// Requests in flight per partition (its consumers).
    pub concurrency_limit: usize,
    /// The built-in retry plugin's default `max_attempts`.
    pub max_attempts: u32,
}

impl Default for Execution {
    fn default() -> Self {
        Execution {
            partitions: 1,
            batch_size: 10_000,
            max_requests_per_second: None,
            concurrency_limit: 20,
            max_attempts: 3,
        }
    }
}

/// The keys of `execution`.
pub(crate) const KEYS: &[KeySpec] = &[
    KeySpec::new(
        "partitions",
        Kind::Int { min: 1, max: 1024 },
        "Partitions: each an event loop on a worker thread (at most one thread per core).",
    )
    .alias(&["num_partitions"])
    .default(|| Execution::default().partitions.into()),
    KeySpec::new(
        "batch_size",
        Kind::Int {
            min: 1,
            max: 10_000_000,
        },
        "Results per Delta commit: memory follows it, not the input.",
    )
    .default(|| Execution::default().batch_size.into()),
    KeySpec::new(
        "max_requests_per_second",
        Kind::Number { above: 0.0 },
        "A global limit on requests per second, across every partition.",
    ),
    KeySpec::new(
        "concurrency_limit",
        Kind::Int {
            min: 1,
            max: 100_000,
        },
        "Requests in flight per partition.",
    )
    .alias(&["max_concurrent_requests"])
    .default(|| Execution::default().concurrency_limit.into()),
    KeySpec::new(
        "max_attempts",
        Kind::Int { min: 1, max: 100 },
        "The built-in retry plugin's default max_attempts.",
    )
    .default(|| Execution::default().max_attempts.into()),
];

/// Reads `execution` (absent: the defaults).
pub(crate) fn read(w: &mut Walker, x: &Section<'_>) -> Execution {
    let d = Execution::default();
    Execution {
        partitions: w
            .int_of(x, "partitions")
            .map_or(d.partitions, |v| v as usize),
        batch_size: w
            .int_of(x, "batch_size")
            .map_or(d.batch_size, |v| v as usize),
        max_requests_per_second: w.number_of(x, "max_requests_per_second"),
        concurrency_limit: w
            .int_of(x, "concurrency_limit")
            .map_or(d.concurrency_limit, |v| v as usize),
        max_attempts: w
            .int_of(x, "max_attempts")
            .map_or(d.max_attempts, |v| v as u32),
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{errors, load};

    #[test]
    fn defaults_and_legacy_spellings() {
        let p = load("execution: {num_partitions: 3, max_concurrent_requests: 7}\n");
        assert_eq!(
            (
                p.execution.partitions,
                p.execution.concurrency_limit,
                p.execution.batch_size
            ),
            (3, 7, 10_000)
        );
        let p = load("");
        assert_eq!(p.execution.max_attempts, 3);
        assert_eq!(p.execution.max_requests_per_second, None);
    }

    #[test]
    fn bounds_are_checked() {
        assert_eq!(
            errors("execution: {batch_size: 0, max_requests_per_second: 0}\n"),
            [
                "1:25: execution.batch_size: must be between 1 and 10000000, found 0",
                "1:53: execution.max_requests_per_second: must be greater than 0, found 0"
            ]
        );
    }
}
