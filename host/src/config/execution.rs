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
    /// Passes over the rows within one run (the legacy meaning): after a pass, the rows that failed
    /// retryably are sent again, up to this many passes in all.
    pub max_attempts: u32,
    /// How an answer (or its absence) is classified.
    pub outcomes: Outcomes,
    /// `concurrency: adaptive`: requests on the network at once follow the API's answers (AIMD),
    /// up to partitions × concurrency_limit.
    pub adaptive: bool,
    /// Rate-limit headers (Retry-After on a 429/503, RateLimit, X-RateLimit-*) pause every request
    /// to the host (`rate_limit_headers: pause`; the default with `concurrency: adaptive`).
    pub pause_on_rate_limit: bool,
    /// The longest such a pause lasts.
    pub max_pause: std::time::Duration,
}

/// What counts as success, as a failure worth sending again, and (everything else) as a failure for
/// good (recorded once, not sent again unless `--retry-failed`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcomes {
    /// Statuses that are success.
    pub success: Vec<StatusClass>,
    /// Statuses and failures without an answer that are sent again (by a later pass or run).
    pub retry: Vec<StatusClass>,
}

impl Default for Outcomes {
    fn default() -> Self {
        use super::StatusClass::*;
        Outcomes {
            success: vec![Range(200, 299)],
            retry: vec![Code(429), Range(500, 599), Transport, Plugin],
        }
    }
}

/// One entry of an outcome list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatusClass {
    /// One status.
    Code(u16),
    /// A range of statuses, inclusive (`5xx` is 500..=599).
    Range(u16, u16),
    /// No answer: the connection was refused, reset, timed out, or TLS failed.
    Transport,
    /// A plugin failed the row (a trap, a deadline, a broken rule, its own error).
    Plugin,
}

impl StatusClass {
    /// Reads `404`, `4xx`, `500-504`, `transport`, `plugin`.
    pub fn parse(text: &str) -> Option<Self> {
        let t = text.trim().to_ascii_lowercase();
        match t.as_str() {
            "transport" => return Some(StatusClass::Transport),
            "plugin" => return Some(StatusClass::Plugin),
            _ => {}
        }
        if let Some(d) = t.strip_suffix("xx") {
            let d: u16 = d.parse().ok().filter(|d| (1..=5).contains(d))?;
            return Some(StatusClass::Range(d * 100, d * 100 + 99));
        }
        if let Some((a, b)) = t.split_once('-') {
            let (a, b): (u16, u16) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
            return ((100..=599).contains(&a) && (a..=599).contains(&b))
                .then_some(StatusClass::Range(a, b));
        }
        t.parse()
            .ok()
            .filter(|c| (100..=599).contains(c))
            .map(StatusClass::Code)
    }

    /// Whether `status` is in this class.
    pub fn holds(&self, status: u16) -> bool {
        match *self {
            StatusClass::Code(c) => c == status,
            StatusClass::Range(a, b) => (a..=b).contains(&status),
            _ => false,
        }
    }
}

impl Default for Execution {
    fn default() -> Self {
        Execution {
            partitions: 1,
            batch_size: 10_000,
            max_requests_per_second: None,
            concurrency_limit: 20,
            max_attempts: 1,
            outcomes: Outcomes::default(),
            adaptive: false,
            pause_on_rate_limit: false,
            max_pause: std::time::Duration::from_secs(60),
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
        "Passes over the rows in one run: rows that failed retryably are sent again, up to this many passes in all.",
    )
    .default(|| Execution::default().max_attempts.into()),
    KeySpec::new(
        "concurrency",
        Kind::Choice(&["fixed", "adaptive"]),
        "fixed: concurrency_limit requests per partition; adaptive: found from the API's answers (grows while latency holds, backs off on 429/503/timeouts and rising latency), concurrency_limit × partitions as the ceiling.",
    )
    .default(|| "fixed".into()),
    KeySpec::new(
        "rate_limit_headers",
        Kind::Choice(&["pause", "ignore"]),
        "pause: Retry-After on a 429/503, or RateLimit / X-RateLimit-* with nothing remaining, hold every request to the host until then; default pause with concurrency: adaptive, else ignore (plugins such as retry still honour Retry-After per row).",
    ),
    KeySpec::new(
        "max_pause_seconds",
        Kind::Int {
            min: 1,
            max: 86_400,
        },
        "The longest pause rate-limit headers may ask for.",
    )
    .default(|| 60.into()),
    KeySpec::new(
        "outcomes",
        Kind::Section(OUTCOME_KEYS),
        "Which answers are success, which failures are sent again; the rest fail for good.",
    ),
];

const OUTCOME_KEYS: &[KeySpec] = &[
    KeySpec::new(
        "success",
        Kind::TextList,
        "Statuses that are success: codes (200), classes (2xx), ranges (200-204).",
    )
    .default(|| serde_json::json!(["2xx"])),
    KeySpec::new(
        "retry",
        Kind::TextList,
        "Failures sent again by a later pass or run: statuses, `transport` (no answer), `plugin` (a plugin failed the row).",
    )
    .default(|| serde_json::json!(["429", "5xx", "transport", "plugin"])),
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
        outcomes: outcomes(w, x),
        adaptive: w.choice_of(x, "concurrency") == Some("adaptive"),
        pause_on_rate_limit: match w.choice_of(x, "rate_limit_headers") {
            Some(choice) => choice == "pause",
            None => w.choice_of(x, "concurrency") == Some("adaptive"),
        },
        max_pause: w
            .int_of(x, "max_pause_seconds")
            .map_or(d.max_pause, |v| std::time::Duration::from_secs(v as u64)),
    }
}

fn outcomes(w: &mut Walker, x: &Section<'_>) -> Outcomes {
    let mut o = Outcomes::default();
    let Some(f) = x.get("outcomes") else {
        return o;
    };
    let s = w.section(Some(f), f.path, f.node.pos, OUTCOME_KEYS);
    for (key, list) in [("success", &mut o.success), ("retry", &mut o.retry)] {
        let Some(field) = s.get(key) else { continue };
        let mut read = Vec::new();
        for text in w.string_list(Some(field)) {
            match StatusClass::parse(&text) {
                Some(StatusClass::Transport | StatusClass::Plugin) if key == "success" => w.error(
                    field.path,
                    field.node.pos,
                    format!("`{text}` is a failure; it cannot be success"),
                ),
                Some(c) => read.push(c),
                None => w.error(
                    field.path,
                    field.node.pos,
                    format!(
                        "`{text}` is not a status (200), a class (2xx), a range (500-504), `transport` or `plugin`"
                    ),
                ),
            }
        }
        *list = read;
    }
    o
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
        assert_eq!(p.execution.max_attempts, 1);
        assert_eq!(p.execution.max_requests_per_second, None);
        assert_eq!(p.execution.outcomes, super::Outcomes::default());
    }

    #[test]
    fn outcome_rules_are_read_and_checked() {
        let p = load(
            "execution:\n  outcomes: {success: [2xx, 404], retry: [503, 520-529, transport]}\n",
        );
        use super::StatusClass::*;
        assert_eq!(
            p.execution.outcomes,
            super::Outcomes {
                success: vec![Range(200, 299), Code(404)],
                retry: vec![Code(503), Range(520, 529), Transport],
            }
        );
        assert_eq!(
            errors("execution:\n  outcomes: {success: [2xx, transport], retry: [6xx]}\n"),
            [
                "2:23: execution.outcomes.success: `transport` is a failure; it cannot be success",
                "2:48: execution.outcomes.retry: `6xx` is not a status (200), a class (2xx), a range (500-504), `transport` or `plugin`"
            ]
        );
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
