//! The built-in middleware: guest components from plugins/, built by host/build.rs and embedded here,
//! so that `- type: retry` in a legacy pipeline needs no file. One table serves the validator (types
//! and keys) and the plugin host (bytes). (`bearer` and `header_auth`, the legacy credential
//! middleware, are not plugins: they are credentials the host adds after the chain, see
//! `config::Credential`, so that no plugin ever sees them.)

/// One built-in middleware.
pub struct Builtin {
    /// The `type` as the config spells it.
    pub kind: &'static str,
    /// The keys its entry takes besides `type` and `limits` (the plugin checks the values).
    pub keys: &'static [&'static str],
    /// The component, embedded.
    pub component: &'static [u8],
}

macro_rules! builtin {
    ($kind:literal, $file:literal, [$($key:literal),* $(,)?]) => {
        Builtin {
            kind: $kind,
            keys: &[$($key),*],
            component: include_bytes!(concat!(env!("SPARKWASM_PLUGIN_DIR"), "/", $file, ".wasm")),
        }
    };
}

/// Every built-in middleware.
pub const BUILTINS: [Builtin; 7] = [
    builtin!(
        "retry",
        "retry",
        [
            "max_attempts",
            "retry_status_codes",
            "base_delay",
            "max_delay",
            "retry_errors",
        ]
    ),
    builtin!("logging", "logging", ["level"]),
    builtin!("timing", "timing", ["key"]),
    builtin!("json_body", "json_body", ["require"]),
    builtin!("param_injector", "param_injector", ["params", "body"]),
    builtin!("worker_identity", "worker_identity", ["header"]),
    builtin!("transport_diagnostics", "transport_diagnostics", []),
];

/// Other spellings of built-in types: the legacy framework's names.
pub const ALIASES: [(&str, &str); 1] = [("worker_diag", "worker_identity")];

/// The built-in type `kind` stands for (itself, unless it is an alias).
pub fn canonical(kind: &str) -> &str {
    ALIASES
        .iter()
        .find(|(alias, _)| *alias == kind)
        .map_or(kind, |(_, builtin)| builtin)
}

/// The built-in middleware of a `type` (or of its legacy spelling).
pub fn find(kind: &str) -> Option<&'static Builtin> {
    let kind = canonical(kind);
    BUILTINS.iter().find(|b| b.kind == kind)
}
