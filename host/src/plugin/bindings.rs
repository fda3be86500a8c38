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

/// Adds the host's side of the contract (and WASI, whose calls the sandbox answers) to the linkers
/// of the two worlds, and to `on_stack`: the middleware's linker for calls on the worker's own
/// stack, in which every WASI function that may wait preempts the call instead.
pub(super) fn link(
    middleware: &mut wasmtime::component::Linker<PluginState>,
    on_stack: &mut wasmtime::component::Linker<PluginState>,
    auth: &mut wasmtime::component::Linker<PluginState>,
) -> wasmtime::Result<()> {
    use wasmtime::component::HasSelf;
    for linker in [&mut *middleware, &mut *on_stack] {
        wasmtime_wasi::p2::add_to_linker_async(linker)?;
        Middleware::add_to_linker::<_, HasSelf<PluginState>>(linker, |s| s)?;
    }
    never_wait(on_stack)?;
    wasmtime_wasi::p2::add_to_linker_async(auth)?;
    Auth::add_to_linker::<_, HasSelf<PluginState>>(auth, |s| s)?;
    Ok(())
}

/// The WASI version wasmtime-wasi defines its interfaces at (a guest's import of an earlier 0.2.x
/// resolves to it). It must be wasmtime-wasi's: bump it with wasmtime (Cargo.toml). A mismatch
/// replaces nothing, and every plugin is called on fibers only (`validate`'s line says so; its
/// e2e test fails).
const WASI: &str = "0.2.12";

/// The WASI functions that may wait, by interface: the ones wasmtime-wasi defines `async`.
const MAY_WAIT: &[(&str, &[&str])] = &[
    (
        "wasi:io/poll",
        &["poll", "[method]pollable.block", "[method]pollable.ready"],
    ),
    (
        "wasi:io/streams",
        &[
            "[method]input-stream.blocking-read",
            "[method]input-stream.blocking-skip",
            "[method]output-stream.blocking-splice",
            "[method]output-stream.blocking-flush",
            "[method]output-stream.blocking-write-and-flush",
            "[method]output-stream.blocking-write-zeroes-and-flush",
        ],
    ),
    (
        "wasi:filesystem/types",
        &[
            "[method]descriptor.advise",
            "[method]descriptor.create-directory-at",
            "[method]descriptor.get-flags",
            "[method]descriptor.get-type",
            "[method]descriptor.is-same-object",
            "[method]descriptor.link-at",
            "[method]descriptor.metadata-hash",
            "[method]descriptor.metadata-hash-at",
            "[method]descriptor.open-at",
            "[method]descriptor.read",
            "[method]descriptor.read-directory",
            "[method]descriptor.readlink-at",
            "[method]descriptor.remove-directory-at",
            "[method]descriptor.rename-at",
            "[method]descriptor.set-size",
            "[method]descriptor.set-times",
            "[method]descriptor.set-times-at",
            "[method]descriptor.stat",
            "[method]descriptor.stat-at",
            "[method]descriptor.symlink-at",
            "[method]descriptor.sync",
            "[method]descriptor.sync-data",
            "[method]descriptor.unlink-file-at",
            "[method]descriptor.write",
            "[method]directory-entry-stream.read-directory-entry",
        ],
    ),
    ("wasi:sockets/udp-create-socket", &["create-udp-socket"]),
    (
        "wasi:sockets/tcp",
        &[
            "[method]tcp-socket.start-bind",
            "[method]tcp-socket.start-listen",
        ],
    ),
    (
        "wasi:sockets/udp",
        &["[method]udp-socket.start-bind", "[method]udp-socket.stream"],
    ),
];

/// Replaces, in a linker that has WASI, every function that may wait by one that preempts the call
/// (it runs again on a fiber, where the wait is allowed and bounded), and the streams' destructors
/// by synchronous ones: no import is left `async`, so a call needs no fiber. Should wasmtime-wasi
/// add a waiting function this list misses, the instance would need a fiber; `stack` then finds the
/// plugin cannot be called on the stack, and calls it on fibers only.
fn never_wait(linker: &mut wasmtime::component::Linker<PluginState>) -> wasmtime::Result<()> {
    use wasmtime::component::ResourceType;
    use wasmtime_wasi::p2::{DynInputStream, DynOutputStream};
    linker.allow_shadowing(true);
    for (interface, functions) in MAY_WAIT {
        let mut instance = linker.instance(&format!("{interface}@{WASI}"))?;
        for function in *functions {
            instance.func_new(function, preempt)?;
        }
    }
    let mut streams = linker.instance(&format!("wasi:io/streams@{WASI}"))?;
    dropped_at_once::<DynInputStream>(&mut streams, "input-stream")?;
    dropped_at_once::<DynOutputStream>(&mut streams, "output-stream")?;
    // A UDP socket's outgoing stream has an async destructor and a type wasmtime-wasi keeps
    // private. None can exist in a call on the stack (making a UDP socket, or its streams,
    // preempts it), so a stand-in type takes its place, and its methods preempt too.
    let mut udp = linker.instance(&format!("wasi:sockets/udp@{WASI}"))?;
    udp.resource(
        "outgoing-datagram-stream",
        ResourceType::host::<NoDatagramStream>(),
        |_, _| Ok(()),
    )?;
    for method in ["check-send", "send", "subscribe"] {
        udp.func_new(
            &format!("[method]outgoing-datagram-stream.{method}"),
            preempt,
        )?;
    }
    linker.allow_shadowing(false);
    Ok(())
}

/// Defines resource `name` of host type `T` with a synchronous destructor: the table entry is
/// dropped at once.
fn dropped_at_once<T: Send + 'static>(
    instance: &mut wasmtime::component::LinkerInstance<'_, PluginState>,
    name: &str,
) -> wasmtime::Result<()> {
    use wasmtime::component::{Resource, ResourceType};
    instance.resource(name, ResourceType::host::<T>(), |mut store, rep| {
        drop(store.data_mut().table.delete(Resource::<T>::new_own(rep))?);
        Ok(())
    })
}

/// Stands in for a UDP socket's outgoing stream in the linker of calls on the stack (never made).
struct NoDatagramStream;

/// A WASI function that would wait, called on the stack: the call is preempted.
fn preempt(
    mut store: wasmtime::StoreContextMut<'_, PluginState>,
    _: wasmtime::component::types::ComponentFunc,
    _: &[wasmtime::component::Val],
    _: &mut [wasmtime::component::Val],
) -> wasmtime::Result<()> {
    store.data_mut().budget.preempted = true;
    Err(wasmtime::Error::msg("preempted: would wait in WASI"))
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
