//! `transport`: timeouts, the per-host connection cap, and TLS material (a CA bundle, a client
//! certificate for mTLS).

use std::path::PathBuf;
use std::time::Duration;

use super::keys::{KeySpec, Kind};
use super::probe::Probe;
use super::walk::{Section, Walker};

/// The `transport` section.
#[derive(Clone, Debug)]
pub struct Transport {
    /// Per request, from connect to the last byte of the body.
    pub base_timeout: Duration,
    /// The longest the connections' warm-up before the first row may take.
    pub warmup_timeout: Duration,
    /// Open connections per host; 0 = no cap beyond one per request in flight.
    pub connection_limit: usize,
    /// TLS material.
    pub tls: Tls,
}

impl Default for Transport {
    fn default() -> Self {
        Transport {
            base_timeout: Duration::from_secs(30),
            warmup_timeout: Duration::from_secs(10),
            connection_limit: 100,
            tls: Tls::default(),
        }
    }
}

/// `transport.tls`: PEM files.
#[derive(Clone, Debug, Default)]
pub struct Tls {
    /// CA certificates added to the platform's roots.
    pub ca_file: Option<PathBuf>,
    /// The client certificate for mTLS.
    pub client_cert_file: Option<PathBuf>,
    /// The client certificate's private key.
    pub client_key_file: Option<PathBuf>,
}

/// The keys of `transport`.
pub(crate) const KEYS: &[KeySpec] = &[
    KeySpec::new(
        "base_timeout",
        Kind::Number { above: 0.0 },
        "Seconds per request, from connect to the last byte of the body.",
    )
    .default(|| Transport::default().base_timeout.as_secs_f64().into()),
    KeySpec::new(
        "warmup_timeout",
        Kind::Number { above: 0.0 },
        "Seconds the connections' warm-up before the first row may take.",
    )
    .default(|| Transport::default().warmup_timeout.as_secs_f64().into()),
    KeySpec::new(
        "tcp_connection",
        Kind::Section(TCP_KEYS),
        "Connection settings.",
    ),
    KeySpec::new("tls", Kind::Section(TLS_KEYS), "TLS material (PEM files)."),
];

/// The keys of `transport.tcp_connection`.
const TCP_KEYS: &[KeySpec] = &[KeySpec::new(
    "limit",
    Kind::Int {
        min: 0,
        max: 100_000,
    },
    "Open connections per host; 0 = no cap (beyond one per request in flight).",
)
.default(|| Transport::default().connection_limit.into())];

/// The keys of `transport.tls`.
const TLS_KEYS: &[KeySpec] = &[
    KeySpec::new(
        "ca_file",
        Kind::Text,
        "CA certificates (PEM) added to the platform's roots.",
    ),
    KeySpec::new(
        "client_cert_file",
        Kind::Text,
        "The client certificate (PEM) for mTLS; goes with client_key_file.",
    ),
    KeySpec::new(
        "client_key_file",
        Kind::Text,
        "The client certificate's private key (PEM).",
    ),
];

/// Reads `transport`; the TLS files are checked afterwards (`probes`).
pub(crate) fn read(
    w: &mut Walker,
    t: &Section<'_>,
    base_dir: &std::path::Path,
    probes: &mut Vec<Probe>,
) -> Transport {
    let d = Transport::default();
    let secs = |w: &mut Walker, key: &str, default: Duration| {
        w.number_of(t, key).map_or(default, Duration::from_secs_f64)
    };
    let base_timeout = secs(w, "base_timeout", d.base_timeout);
    let warmup_timeout = secs(w, "warmup_timeout", d.warmup_timeout);
    let tcp = w.section(
        t.get("tcp_connection"),
        &t.child("tcp_connection"),
        t.pos,
        TCP_KEYS,
    );
    let connection_limit = w
        .int_of(&tcp, "limit")
        .map_or(d.connection_limit, |v| v as usize);
    let tls_section = w.section(t.get("tls"), &t.child("tls"), t.pos, TLS_KEYS);
    let mut file = |key: &str| {
        let f = tls_section.get(key)?;
        let written = w.name(Some(f))?;
        let p = base_dir.join(&written);
        probes.push(Probe::File {
            key: f.path.to_owned(),
            pos: f.node.pos,
            path: p.clone(),
            written,
        });
        Some(p)
    };
    let tls = Tls {
        ca_file: file("ca_file"),
        client_cert_file: file("client_cert_file"),
        client_key_file: file("client_key_file"),
    };
    if tls.client_cert_file.is_some() != tls.client_key_file.is_some() {
        w.error(
            &tls_section.path,
            tls_section.pos,
            "client_cert_file and client_key_file go together",
        );
    }
    Transport {
        base_timeout,
        warmup_timeout,
        connection_limit,
        tls,
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{errors, load};

    #[test]
    fn defaults_and_the_connection_cap() {
        let p = load("");
        assert_eq!(p.transport.base_timeout.as_secs(), 30);
        assert_eq!(p.transport.connection_limit, 100);
        let p = load("transport: {tcp_connection: {limit: 0}, base_timeout: 2.5}\n");
        assert_eq!(p.transport.connection_limit, 0);
        assert_eq!(p.transport.base_timeout.as_millis(), 2500);
    }

    #[test]
    fn a_client_certificate_needs_its_key_and_files_must_exist() {
        assert_eq!(
            errors("transport:\n  tls: {client_cert_file: nope.pem}\n"),
            [
                "2:8: transport.tls: client_cert_file and client_key_file go together",
                "2:27: transport.tls.client_cert_file: no such file: nope.pem"
            ]
        );
    }
}
