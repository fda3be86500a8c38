//! What the host offers plugins besides the values they handle: `host` (log, clock, config,
//! identity) for every plugin, `outbound` (a fetch to granted hosts) for auth plugins, and the rule
//! checks the resources share.

use wasmtime::component::Resource;

use super::bindings::{WitError, WitKind, host, outbound, to_wit_kind};
use super::resources::HeldRequest;
use super::sandbox::PluginState;
use crate::api::ApiResponse;
use crate::chain::Origin;

/// Whether the run's log shows a plugin's lines at `level`.
fn log_enabled(level: host::Level) -> bool {
    match level {
        host::Level::Trace => tracing::enabled!(tracing::Level::TRACE),
        host::Level::Debug => tracing::enabled!(tracing::Level::DEBUG),
        host::Level::Info => tracing::enabled!(tracing::Level::INFO),
        host::Level::Warn => tracing::enabled!(tracing::Level::WARN),
        host::Level::Error => tracing::enabled!(tracing::Level::ERROR),
    }
}

/// The most log text a call on the stack holds until it returns.
const MAX_HELD_LOG: usize = 64 << 10;

/// What a held line counts for besides its text (so that empty lines are bounded too).
const HELD_LINE_COST: usize = 64;

/// Writes a plugin's log line (already redacted) under its name.
pub(super) fn write_log(plugin: &str, level: host::Level, message: &str) {
    match level {
        host::Level::Trace => tracing::trace!(plugin, "{message}"),
        host::Level::Debug => tracing::debug!(plugin, "{message}"),
        host::Level::Info => tracing::info!(plugin, "{message}"),
        host::Level::Warn => tracing::warn!(plugin, "{message}"),
        host::Level::Error => tracing::error!(plugin, "{message}"),
    }
}

impl host::Host for PluginState {
    fn log(&mut self, level: host::Level, message: String) -> wasmtime::Result<()> {
        if !log_enabled(level) {
            return Ok(());
        }
        let message = self.info.redactor.text(&message);
        if self.call.on_stack {
            // A preempted call runs again on a fiber: its lines are written once it returns. One
            // that logs more than the buffer holds runs on a fiber, which writes as it goes.
            let held: usize = (self.call.logs.iter())
                .map(|(_, line)| line.len() + HELD_LINE_COST)
                .sum();
            if held + message.len() + HELD_LINE_COST > MAX_HELD_LOG {
                self.budget.preempted = true;
                return Err(wasmtime::Error::msg(
                    "preempted: logs more than a call on the stack holds",
                ));
            }
            self.call.logs.push((level, message.into_owned()));
        } else {
            write_log(&self.info.name, level, &message);
        }
        Ok(())
    }

    fn enabled(&mut self, level: host::Level) -> wasmtime::Result<bool> {
        Ok(log_enabled(level))
    }

    fn monotonic_now(&mut self) -> wasmtime::Result<u64> {
        Ok(crate::chain::monotonic_ns())
    }

    fn config(&mut self) -> wasmtime::Result<String> {
        Ok(self.info.config.clone())
    }

    fn whoami(&mut self) -> wasmtime::Result<host::Identity> {
        Ok(host::Identity {
            process: self.info.process.clone(),
            partition: self.call.worker.0,
            consumer: self.call.worker.1,
        })
    }
}

/// The most outbound fetches one call of an auth plugin may make.
const MAX_FETCHES: u32 = 10;

impl outbound::Host for PluginState {
    /// An auth plugin's own HTTP request (a token or key fetch): only to the granted hosts, through
    /// the run's transport (its TLS settings apply). Waiting for it is not guest running time.
    async fn fetch(
        &mut self,
        request: Resource<HeldRequest>,
    ) -> wasmtime::Result<Result<Resource<ApiResponse>, WitError>> {
        let refuse = |kind, message: String| Ok(Err(WitError { kind, message }));
        if let Some(rule) = self.call.violation.take() {
            return refuse(WitKind::InvalidRequest, rule);
        }
        self.call.fetches += 1;
        if self.call.fetches > MAX_FETCHES {
            return refuse(
                WitKind::Rejected,
                format!("more than {MAX_FETCHES} outbound fetches in one call"),
            );
        }
        let request = self.request_arc(&request)?;
        let origin = match Origin::of(&request.url) {
            Ok(o) => o,
            Err(e) => return refuse(WitKind::InvalidRequest, format!("outbound fetch: {e}")),
        };
        if !self.info.egress.allows(&origin) {
            return refuse(
                WitKind::Rejected,
                // The grants are not listed: one may be written with a secret (`validate` shows
                // them, redacted).
                format!(
                    "outbound fetch to {origin} refused: it is not in the plugin's grants.outbound_hosts"
                ),
            );
        }
        let sender = self.info.sender.clone();
        match self.wait(sender.send(request)).await {
            Ok(response) => {
                if !self.body_fits(response.body.len(), "outbound fetch") {
                    let rule = self.call.violation.take().unwrap_or_default();
                    return refuse(WitKind::Rejected, rule);
                }
                Ok(Ok(self.table.push(response)?))
            }
            Err(e) => refuse(to_wit_kind(e.kind), e.message),
        }
    }
}

impl PluginState {
    /// Records a broken rule of the call in progress (the first one is reported).
    pub(super) fn violate(&mut self, rule: String) {
        self.call.violation.get_or_insert(rule);
    }

    /// Whether a body of `len` bytes is within the plugin's `limits.max_body_bytes`; records the
    /// violation if not.
    pub(super) fn body_fits(&mut self, len: usize, what: &str) -> bool {
        let cap = self.info.limits.max_body_bytes;
        if len as u64 > cap {
            self.violate(format!(
                "{what}: a body of {len} bytes is over its limits.max_body_bytes ({cap})"
            ));
            return false;
        }
        true
    }
}
