//! The contract (wit/plugin.wit) on the host side: the generated bindings, kept private to the
//! plugin host behind the few names the rest of it uses, the linker setup, and the conversions of
//! error values. The host's implementations of the imports are in `resources` and `services`.

use super::sandbox::PluginState;
use crate::api::{ErrorKind, RequestError};

mod generated {
    wasmtime::component::bindgen!({
        world: "middleware",
        path: "../wit",
        imports: { default: trappable },
        exports: { default: async },
        with: {
            "sparkwasm:plugin/types.request": crate::plugin::resources::HeldRequest,
            "sparkwasm:plugin/types.response": crate::api::ApiResponse,
        },
    });
}

mod generated_auth {
    wasmtime::component::bindgen!({
        world: "auth",
        path: "../wit",
        imports: {
            "sparkwasm:plugin/outbound.fetch": async | trappable,
            default: trappable,
        },
        exports: { default: async },
        with: {
            "sparkwasm:plugin/types": super::generated::sparkwasm::plugin::types,
            "sparkwasm:plugin/host": super::generated::sparkwasm::plugin::host,
        },
    });
}

pub(super) use generated::exports::sparkwasm::plugin::handler::{
    Hooks as WitHooks, OutcomeAction as WitOutcome, RequestAction as WitAction,
};
pub(super) use generated::sparkwasm::plugin::types::{Error as WitError, ErrorKind as WitKind};
pub(super) use generated::{Middleware, MiddlewarePre};
pub(super) use generated_auth::exports::sparkwasm::plugin::authenticator::Credential as WitCredential;
pub(super) use generated_auth::{Auth, AuthPre};

pub(super) use generated::sparkwasm::plugin::{host, types};
pub(super) use generated_auth::sparkwasm::plugin::outbound;

/// The export that tells a middleware of this contract.
pub(super) const MIDDLEWARE_EXPORT: &str = "sparkwasm:plugin/handler@1.0.0";
/// The export that tells an auth plugin of this contract.
pub(super) const AUTH_EXPORT: &str = "sparkwasm:plugin/authenticator@1.0.0";

/// Adds the host's side of the contract (and WASI, whose calls the sandbox answers) to a linker.
pub(super) fn link(
    middleware: &mut wasmtime::component::Linker<PluginState>,
    auth: &mut wasmtime::component::Linker<PluginState>,
) -> wasmtime::Result<()> {
    use wasmtime::component::HasSelf;
    wasmtime_wasi::p2::add_to_linker_async(middleware)?;
    Middleware::add_to_linker::<_, HasSelf<PluginState>>(middleware, |s| s)?;
    wasmtime_wasi::p2::add_to_linker_async(auth)?;
    Auth::add_to_linker::<_, HasSelf<PluginState>>(auth, |s| s)?;
    Ok(())
}

pub(super) fn to_wit_kind(kind: ErrorKind) -> WitKind {
    match kind {
        ErrorKind::Connect => WitKind::Connect,
        ErrorKind::Tls => WitKind::Tls,
        ErrorKind::Reset => WitKind::Reset,
        ErrorKind::Timeout => WitKind::Timeout,
        ErrorKind::InvalidRequest => WitKind::InvalidRequest,
        ErrorKind::Rejected => WitKind::Rejected,
        ErrorKind::Other => WitKind::Other,
    }
}

pub(super) fn from_wit_kind(kind: WitKind) -> ErrorKind {
    match kind {
        WitKind::Connect => ErrorKind::Connect,
        WitKind::Tls => ErrorKind::Tls,
        WitKind::Reset => ErrorKind::Reset,
        WitKind::Timeout => ErrorKind::Timeout,
        WitKind::InvalidRequest => ErrorKind::InvalidRequest,
        WitKind::Rejected => ErrorKind::Rejected,
        WitKind::Other => ErrorKind::Other,
    }
}

pub(super) fn to_wit_error(e: RequestError) -> WitError {
    WitError {
        kind: to_wit_kind(e.kind),
        message: e.message,
    }
}

pub(super) fn from_wit_error(e: WitError) -> RequestError {
    RequestError::of(from_wit_kind(e.kind), e.message)
}
