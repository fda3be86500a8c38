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
    /// Open connections per partition (the legacy meaning: aiohttp's pool per partition); 0 = no
    /// cap beyond one per request in flight.
    pub connection_limit: usize,
    /// Open connections per partition to one host; 0 = only `connection_limit`.
    pub limit_per_host: usize,
    /// No keep-alive: a connection per request (legacy `force_close`).
    pub force_close: bool,
    /// Add the transport's diagnostics (the `transport_diagnostics` plugin, innermost) to every
    /// row's response_metadata.
    pub diagnostics: bool,
    /// TLS material.
    pub tls: Tls,
}

impl Default for Transport {
    fn default() -> Self {
        Transport {
            base_timeout: Duration::from_secs(30),
            warmup_timeout: Duration::from_secs(10),
            connection_limit: 100,
            limit_per_host: 0,
            force_close: false,
            diagnostics: false,
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
    /// `verify: false` (legacy `tcp_connection.tls`): the server's certificate is not checked.
    /// Dangerous; warned about on every run.
    pub insecure: bool,
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
    KeySpec::new(
        "diagnostics",
        Kind::Bool,
        "Add the transport's diagnostics (the transport_diagnostics plugin) to every row's response_metadata.",
    )
    .default(|| Transport::default().diagnostics.into()),
    KeySpec::new(
        "type",
        Kind::NoEffect("sparkwasm has one HTTP client (hyper, HTTP/1.1 and HTTP/2); the legacy framework always used aiohttp whatever this said"),
        "Legacy: the HTTP client library.",
    ),
];

/// The keys of `transport.tcp_connection`.
const TCP_KEYS: &[KeySpec] = &[
    KeySpec::new(
        "limit",
        Kind::Int {
            min: 0,
            max: 100_000,
        },
        "Open connections per partition (as the legacy aiohttp pool); 0 = no cap (beyond one per request in flight).",
    )
    .default(|| Transport::default().connection_limit.into()),
    KeySpec::new(
        "limit_per_host",
        Kind::Int {
            min: 0,
            max: 100_000,
        },
        "Open connections per partition to one host; 0 = only limit.",
    )
    .default(|| Transport::default().limit_per_host.into()),
    KeySpec::new(
        "force_close",
        Kind::Bool,
        "No keep-alive: one connection per request.",
    )
    .default(|| Transport::default().force_close.into()),
    KeySpec::new(
        "ttl_dns_cache",
        Kind::NoEffect("sparkwasm asks the system resolver when it opens a connection and keeps connections alive; the system's DNS cache (systemd-resolved, nscd) applies"),
        "Legacy: aiohttp's DNS cache lifetime.",
    ),
    KeySpec::new(
        "enable_cleanup_closed",
        Kind::NoEffect("a workaround for aborted SSL transports in old Python versions; nothing to clean up here"),
        "Legacy: aiohttp's cleanup of closed SSL transports.",
    ),
    KeySpec::new(
        "tls",
        Kind::Section(LEGACY_TLS_KEYS),
        "Legacy TLS settings (transport.tls is the same with other names).",
    ),
];

/// The keys of the legacy `transport.tcp_connection.tls`.
const LEGACY_TLS_KEYS: &[KeySpec] = &[
    KeySpec::new(
        "enabled",
        Kind::Bool,
        "Legacy: without it (false, the default) the other keys are ignored, as the legacy framework did.",
    ),
    KeySpec::new(
        "verify",
        Kind::Bool,
        "false: the server's certificate is not checked (dangerous; warned about on every run).",
    ),
    KeySpec::new("ca_bundle", Kind::Text, "transport.tls.ca_file."),
    KeySpec::new("client_cert", Kind::Text, "transport.tls.client_cert_file."),
    KeySpec::new("client_key", Kind::Text, "transport.tls.client_key_file."),
];

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
    let limit_per_host = w
        .int_of(&tcp, "limit_per_host")
        .map_or(d.limit_per_host, |v| v as usize);
    let force_close = w.boolean(tcp.get("force_close")).unwrap_or(d.force_close);
    let diagnostics = w.boolean(t.get("diagnostics")).unwrap_or(d.diagnostics);
    let tls_section = w.section(t.get("tls"), &t.child("tls"), t.pos, TLS_KEYS);
    let legacy = w.section(tcp.get("tls"), &tcp.child("tls"), tcp.pos, LEGACY_TLS_KEYS);
    let legacy_on = w.boolean(legacy.get("enabled")) == Some(true);
    if tcp.has("tls") && !legacy_on {
        w.warn(
            &legacy.path,
            legacy.pos,
            "has no effect without enabled: true (as in the legacy framework)",
        );
    }
    if legacy_on && t.has("tls") {
        w.error(
            &legacy.path,
            legacy.pos,
            "give transport.tls or transport.tcp_connection.tls, not both",
        );
    }
    let mut file = |section: &Section<'_>, key: &str| {
        let f = section.get(key)?;
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
    let mut tls = if legacy_on {
        let cert = file(&legacy, "client_cert");
        // The legacy framework took the key from the certificate file when none was named.
        let key = file(&legacy, "client_key").or_else(|| cert.clone());
        Tls {
            ca_file: file(&legacy, "ca_bundle"),
            client_cert_file: cert,
            client_key_file: key,
            insecure: false,
        }
    } else {
        Tls {
            ca_file: file(&tls_section, "ca_file"),
            client_cert_file: file(&tls_section, "client_cert_file"),
            client_key_file: file(&tls_section, "client_key_file"),
            insecure: false,
        }
    };
    if legacy_on && w.boolean(legacy.get("verify")) == Some(false) {
        tls.insecure = true;
        let f = legacy.get("verify").expect("read above");
        w.warn(
            f.path,
            f.node.pos,
            "TLS certificate verification is OFF: any server can pretend to be the API and read every request, credentials included; use ca_bundle with the API's CA instead",
        );
    }
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
        limit_per_host,
        force_close,
        diagnostics,
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
