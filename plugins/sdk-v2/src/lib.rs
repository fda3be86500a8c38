//! Write a sparkwasm middleware plugin of the 0.2 contract (wit/v0.2) in Rust: implement
//! [`Middleware`] and export it.
//!
//! In 0.2 the request and the response stay in the host; [`Request`] and [`Response`] are handles
//! whose methods read or change one field at a time, so a plugin pays only for what it touches.
//!
//! ```ignore
//! use sparkwasm_plugin_v2::{Error, Middleware, Request, Response, next};
//!
//! struct Stamp;
//!
//! impl Middleware for Stamp {
//!     fn handle(request: Request) -> Result<Response, Error> {
//!         request.set_header("x-stamp", "1");
//!         next(&request)
//!     }
//! }
//!
//! sparkwasm_plugin_v2::export_middleware!(Stamp);
//! ```
//!
//! Build with `cargo build --release --target wasm32-wasip2` (crate-type `cdylib`); load the `.wasm`
//! with `type: wasm`, as a 0.1 plugin.

// The generated code names this crate by its external path, also from inside it.
extern crate self as sparkwasm_plugin_v2;

#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "middleware",
        path: "../../wit/v0.2",
        pub_export_macro: true,
        export_macro_name: "__export_middleware_world",
        default_bindings_module: "sparkwasm_plugin_v2::bindings",
        runtime_path: "sparkwasm_plugin_v2::__wit_bindgen::rt",
    });
}

#[doc(hidden)]
pub use wit_bindgen as __wit_bindgen;

pub use bindings::sparkwasm::plugin::chain::next;
pub use bindings::sparkwasm::plugin::host::{self, Identity, Level};
pub use bindings::sparkwasm::plugin::types::{Error, ErrorKind, Fields, Request, Response};

include!("../../sdk/src/common.rs");

/// Exports a [`Middleware`] implementation as the component's `handler`.
#[macro_export]
macro_rules! export_middleware {
    ($ty:ident) => {
        const _: () = {
            struct __Export;
            impl $crate::bindings::exports::sparkwasm::plugin::handler::Guest for __Export {
                fn init() -> Result<(), String> {
                    <$ty as $crate::Middleware>::init()
                }
                fn handle(request: $crate::Request) -> Result<$crate::Response, $crate::Error> {
                    <$ty as $crate::Middleware>::handle(request)
                }
            }
            $crate::bindings::__export_middleware_world!(__Export);
        };
    };
}

/// Whether the run's log shows lines at `level` (build a costly message only then).
pub fn log_enabled(level: Level) -> bool {
    host::enabled(level)
}
