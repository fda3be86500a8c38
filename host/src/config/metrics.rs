//! `metrics`: the Prometheus endpoint a run serves (the same as `--metrics-addr`, which overrides it).

use std::net::SocketAddr;

use super::keys::{KeySpec, Kind};
use super::walk::{Section, Walker};

/// The `metrics` section.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Metrics {
    /// Where to serve `/metrics` for the whole run (`--metrics-addr` overrides it).
    pub addr: Option<SocketAddr>,
    /// Seconds to keep serving after the run ends, so that a last scrape sees the final values.
    pub hold_seconds: u64,
}

/// The keys of `metrics`.
pub(crate) const KEYS: &[KeySpec] = &[
    KeySpec::new(
        "addr",
        Kind::Text,
        "Serve Prometheus metrics at http://ADDR/metrics for the whole run (e.g. 127.0.0.1:9464); --metrics-addr overrides it.",
    ),
    KeySpec::new(
        "hold_seconds",
        Kind::Int { min: 0, max: 3600 },
        "Keep serving the metrics this many seconds after the run ends.",
    )
    .default(|| 0.into()),
];

/// Reads `metrics` (absent: no endpoint unless the command line gives one).
pub(crate) fn read(w: &mut Walker, s: &Section<'_>) -> Metrics {
    let addr = match (s.get("addr"), w.name(s.get("addr"))) {
        (Some(f), Some(text)) => match text.parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                w.error(
                    f.path,
                    f.node.pos,
                    format!("`{text}` is not an address HOST:PORT (e.g. 127.0.0.1:9464)"),
                );
                None
            }
        },
        _ => None,
    };
    let hold_seconds = w.int_of(s, "hold_seconds").unwrap_or(0) as u64;
    Metrics { addr, hold_seconds }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{errors, load_full};

    #[test]
    fn an_address_is_host_and_port() {
        let p = load_full(
            "endpoint: {base_url: \"http://127.0.0.1:1\"}\nmetrics: {addr: \"127.0.0.1:9464\", hold_seconds: 5}\ntables:\n  source: {path: rows.csv}\n  sink: {path: out}\n",
        );
        assert_eq!(p.metrics.addr.unwrap().port(), 9464);
        assert_eq!(p.metrics.hold_seconds, 5);
        assert!(
            errors("metrics: {addr: \"localhost\"}\n")
                .iter()
                .any(|e| e.starts_with("1:17: metrics.addr: `localhost` is not an address")),
        );
    }
}
