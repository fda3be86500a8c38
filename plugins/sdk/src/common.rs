// What the guest SDKs of both contracts share, written once: `plugins/sdk` (0.1) and `plugins/sdk-v2`
// (0.2) each `include!` this file, so the names below (`Request`, `Response`, `Error`, `ErrorKind`,
// `Level`, `host`) resolve to that crate's own generated bindings. (The contracts are different WIT
// packages, so their generated types cannot be shared; the code that uses them can.)

/// A middleware: sees each row's request, calls [`next`] zero or more times, returns the response.
pub trait Middleware {
    /// Once per instance before the first `handle`; check the config here. An error stops the run
    /// before its first request.
    fn init() -> Result<(), String> {
        Ok(())
    }

    fn handle(request: Request) -> Result<Response, Error>;
}

/// The plugin's config (the pipeline entry's keys, or a custom plugin's `config`), deserialized.
/// Unknown keys are the plugin's to refuse (`#[serde(deny_unknown_fields)]`).
pub fn config<T: serde::de::DeserializeOwned>() -> Result<T, String> {
    serde_json::from_str(&host::config()).map_err(|e| format!("bad config: {e}"))
}

/// Every error kind by its WIT name, in declaration order.
pub const ERROR_KINDS: [&str; 7] = [
    "connect",
    "tls",
    "reset",
    "timeout",
    "invalid-request",
    "rejected",
    "other",
];

/// The WIT name of an error kind (`connect`, `reset`, ...), as configs spell it.
pub fn kind_name(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::Connect => "connect",
        ErrorKind::Tls => "tls",
        ErrorKind::Reset => "reset",
        ErrorKind::Timeout => "timeout",
        ErrorKind::InvalidRequest => "invalid-request",
        ErrorKind::Rejected => "rejected",
        ErrorKind::Other => "other",
    }
}

/// A row-failing error of the given kind.
pub fn error(kind: ErrorKind, message: impl Into<String>) -> Error {
    Error {
        kind,
        message: message.into(),
    }
}

/// Writes to the run's log under the plugin's name.
pub fn log(level: Level, message: &str) {
    host::log(level, message)
}

/// Waits without holding up other rows.
pub fn sleep_ms(ms: u64) {
    host::sleep(ms)
}

/// Monotonic nanoseconds.
pub fn now_ns() -> u64 {
    host::monotonic_now()
}
