//! Write a sparkwasm plugin in Rust: implement [`Middleware`] (or [`Auth`]) and export it.
//!
//! A middleware is driven by the host in phases (wit/plugin.wit): [`Middleware::on_request`] sees
//! the row's request on its way in, [`Middleware::on_response`] and [`Middleware::on_error`] see the
//! outcome on its way out. No hook waits: to try again, return [`Outcome::Resend`] and the host
//! sends the request once more after the delay; to answer without the network, return
//! [`Action::Respond`].
//!
//! ```ignore
//! use serde::Deserialize;
//! use sparkwasm_plugin::{Action, Error, Hooks, Middleware, Request};
//!
//! #[derive(Deserialize)]
//! #[serde(deny_unknown_fields)]
//! struct Config {
//!     value: String,
//! }
//!
//! struct Stamp(Config);
//!
//! impl Middleware for Stamp {
//!     type Config = Config;
//!
//!     fn new(config: Config) -> Result<Self, String> {
//!         Ok(Stamp(config))
//!     }
//!
//!     fn hooks(&self) -> Hooks {
//!         Hooks::ON_REQUEST
//!     }
//!
//!     fn on_request(&self, request: &Request) -> Result<Action, Error> {
//!         request.set_header("x-stamp", &self.0.value);
//!         Ok(Action::Continue)
//!     }
//! }
//!
//! sparkwasm_plugin::export_middleware!(Stamp);
//! ```
//!
//! Build with `cargo build --release --target wasm32-wasip2` (crate-type `cdylib`); the `.wasm` is a
//! component of the `sparkwasm:plugin/middleware@1.0.0` world, loaded with `type: wasm`.
//!
//! One plugin value serves every row an instance handles (the host reuses instances): keep per-row
//! state in [`Request::scratch`], not in fields.

// The generated code names this crate by its external path, also from inside it.
extern crate self as sparkwasm_plugin;

#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "middleware",
        pub_export_macro: true,
        export_macro_name: "__export_middleware_world",
        default_bindings_module: "sparkwasm_plugin::bindings",
        runtime_path: "sparkwasm_plugin::__wit_bindgen::rt",
    });
}

#[doc(hidden)]
pub mod auth_bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "auth",
        pub_export_macro: true,
        export_macro_name: "__export_auth_world",
        default_bindings_module: "sparkwasm_plugin::auth_bindings",
        runtime_path: "sparkwasm_plugin::__wit_bindgen::rt",
        with: {
            "sparkwasm:plugin/types@1.0.0": crate::bindings::sparkwasm::plugin::types,
            "sparkwasm:plugin/host@1.0.0": crate::bindings::sparkwasm::plugin::host,
        },
    });
}

#[doc(hidden)]
pub use wit_bindgen as __wit_bindgen;

pub use auth_bindings::exports::sparkwasm::plugin::authenticator::Credential;
pub use auth_bindings::sparkwasm::plugin::outbound::fetch;
pub use bindings::exports::sparkwasm::plugin::handler::{
    Hooks, OutcomeAction as Outcome, RequestAction as Action,
};
pub use bindings::sparkwasm::plugin::host::{self, Identity, Level};
pub use bindings::sparkwasm::plugin::types::{Error, ErrorKind, Fields, Request, Response};

/// A middleware layer. The host makes one value per instance with [`Middleware::new`] and calls
/// the hooks [`Middleware::hooks`] names for every row the instance handles.
pub trait Middleware: Sized + 'static {
    /// The plugin's settings (the pipeline entry's keys, or a custom plugin's `config`), read from
    /// JSON. Refuse unknown keys with `#[serde(deny_unknown_fields)]`.
    type Config: serde::de::DeserializeOwned;

    /// Once per instance, before any hook: check the config. An error stops the run before its
    /// first request.
    fn new(config: Self::Config) -> Result<Self, String>;

    /// The hooks the host calls (asked once per instance, after [`Middleware::new`]); the others
    /// are skipped, and each call skipped saves the host about a microsecond per row.
    fn hooks(&self) -> Hooks {
        Hooks::ON_REQUEST | Hooks::ON_RESPONSE | Hooks::ON_ERROR
    }

    /// The row's request on its way in: edit it, answer it ([`Action::Respond`]), or fail the row.
    fn on_request(&self, request: &Request) -> Result<Action, Error> {
        let _ = request;
        Ok(Action::Continue)
    }

    /// A response on its way out (any status).
    fn on_response(&self, request: &Request, response: &Response) -> Outcome {
        let _ = (request, response);
        Outcome::Done
    }

    /// An error on its way out (from the network or an inner layer); passed on by default.
    fn on_error(&self, request: &Request, error: Error) -> Outcome {
        let _ = request;
        Outcome::Fail(error)
    }
}

/// An auth strategy: obtains credentials (the host caches and shares them) and applies one to each
/// request after the middleware chain.
pub trait Auth: Sized + 'static {
    /// The plugin's `config`, read from JSON.
    type Config: serde::de::DeserializeOwned;

    /// Once per instance: check the config. An error stops the run.
    fn new(config: Self::Config) -> Result<Self, String>;

    /// A fresh credential; [`fetch`] reaches the hosts in the plugin's `grants.outbound_hosts`.
    fn acquire(&self) -> Result<Credential, Error>;

    /// Puts the credential on one request (headers, query parameters).
    fn apply(&self, request: &Request, credential: Credential) -> Result<(), Error>;
}

/// The plugin's config, read from the host as JSON into `T`.
pub fn config<T: serde::de::DeserializeOwned>() -> Result<T, String> {
    serde_json::from_str(&host::config()).map_err(|e| format!("bad config: {e}"))
}

#[doc(hidden)]
pub mod __export {
    /// Holds the plugin value of this instance (a component instance runs one thread).
    pub struct Slot<T>(std::cell::OnceCell<T>);

    // SAFETY: a component instance runs on one thread; the slot is never shared with another.
    unsafe impl<T> Sync for Slot<T> {}

    impl<T> Default for Slot<T> {
        fn default() -> Self {
            Self::new()
        }
    }

    impl<T> Slot<T> {
        pub const fn new() -> Self {
            Slot(std::cell::OnceCell::new())
        }

        pub fn set(&self, value: T) {
            let _ = self.0.set(value);
        }

        pub fn get(&self) -> &T {
            self.0.get().expect("the host calls init before any hook")
        }
    }
}

/// Exports a [`Middleware`] implementation as the component's `handler`.
#[macro_export]
macro_rules! export_middleware {
    ($ty:ty) => {
        const _: () = {
            use $crate::bindings::exports::sparkwasm::plugin::handler as __handler;
            static __PLUGIN: $crate::__export::Slot<$ty> = $crate::__export::Slot::new();
            struct __Export;
            impl __handler::Guest for __Export {
                fn init() -> Result<$crate::Hooks, String> {
                    let config = $crate::config()?;
                    __PLUGIN.set(<$ty as $crate::Middleware>::new(config)?);
                    Ok($crate::Middleware::hooks(__PLUGIN.get()))
                }
                fn on_request(request: &$crate::Request) -> Result<$crate::Action, $crate::Error> {
                    $crate::Middleware::on_request(__PLUGIN.get(), request)
                }
                fn on_response(
                    request: &$crate::Request,
                    response: &$crate::Response,
                ) -> $crate::Outcome {
                    $crate::Middleware::on_response(__PLUGIN.get(), request, response)
                }
                fn on_error(request: &$crate::Request, error: $crate::Error) -> $crate::Outcome {
                    $crate::Middleware::on_error(__PLUGIN.get(), request, error)
                }
            }
            $crate::bindings::__export_middleware_world!(__Export);
        };
    };
}

/// Exports an [`Auth`] implementation as the component's `authenticator`.
#[macro_export]
macro_rules! export_auth {
    ($ty:ty) => {
        const _: () = {
            use $crate::auth_bindings::exports::sparkwasm::plugin::authenticator as __auth;
            static __PLUGIN: $crate::__export::Slot<$ty> = $crate::__export::Slot::new();
            struct __Export;
            impl __auth::Guest for __Export {
                fn init() -> Result<(), String> {
                    let config = $crate::config()?;
                    __PLUGIN.set(<$ty as $crate::Auth>::new(config)?);
                    Ok(())
                }
                fn acquire() -> Result<$crate::Credential, $crate::Error> {
                    $crate::Auth::acquire(__PLUGIN.get())
                }
                fn apply(
                    request: &$crate::Request,
                    credential: $crate::Credential,
                ) -> Result<(), $crate::Error> {
                    $crate::Auth::apply(__PLUGIN.get(), request, credential)
                }
            }
            $crate::auth_bindings::__export_auth_world!(__Export);
        };
    };
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

/// Whether the run's log shows lines at `level` (build a costly message only then).
pub fn log_enabled(level: Level) -> bool {
    host::enabled(level)
}

/// Monotonic nanoseconds.
pub fn now_ns() -> u64 {
    host::monotonic_now()
}
