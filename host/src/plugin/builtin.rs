//! The built-in middleware: guest components from plugins/, built by host/build.rs and embedded here,
//! so that `- type: retry` in a legacy pipeline needs no file.

/// `(middleware type as the config spells it, component bytes)`.
pub const BUILTIN: [(&str, &[u8]); 9] = [
    (
        "retry",
        include_bytes!(concat!(env!("SPARKWASM_PLUGIN_DIR"), "/retry.wasm")),
    ),
    (
        "logging",
        include_bytes!(concat!(env!("SPARKWASM_PLUGIN_DIR"), "/logging.wasm")),
    ),
    (
        "timing",
        include_bytes!(concat!(env!("SPARKWASM_PLUGIN_DIR"), "/timing.wasm")),
    ),
    (
        "json_body",
        include_bytes!(concat!(env!("SPARKWASM_PLUGIN_DIR"), "/json_body.wasm")),
    ),
    (
        "param_injector",
        include_bytes!(concat!(
            env!("SPARKWASM_PLUGIN_DIR"),
            "/param_injector.wasm"
        )),
    ),
    (
        "worker_identity",
        include_bytes!(concat!(
            env!("SPARKWASM_PLUGIN_DIR"),
            "/worker_identity.wasm"
        )),
    ),
    (
        "transport_diagnostics",
        include_bytes!(concat!(
            env!("SPARKWASM_PLUGIN_DIR"),
            "/transport_diagnostics.wasm"
        )),
    ),
    (
        "bearer",
        include_bytes!(concat!(env!("SPARKWASM_PLUGIN_DIR"), "/bearer.wasm")),
    ),
    (
        "header_auth",
        include_bytes!(concat!(env!("SPARKWASM_PLUGIN_DIR"), "/header_auth.wasm")),
    ),
];

/// The embedded component for a built-in middleware type.
pub fn component(kind: &str) -> Option<&'static [u8]> {
    BUILTIN.iter().find(|(k, _)| *k == kind).map(|(_, b)| *b)
}
