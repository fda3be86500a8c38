//! Write a sparkwasm middleware plugin in Rust: implement [`Middleware`] and export it.
//!
//! ```ignore
//! use sparkwasm_plugin::{Error, Middleware, Request, Response, next};
//!
//! struct Stamp;
//!
//! impl Middleware for Stamp {
//!     fn handle(mut request: Request) -> Result<Response, Error> {
//!         sparkwasm_plugin::set_header(&mut request.headers, "x-stamp", "1");
//!         next(&request)
//!     }
//! }
//!
//! sparkwasm_plugin::export_middleware!(Stamp);
//! ```
//!
//! Build with `cargo build --release --target wasm32-wasip2` (crate-type `cdylib`); the `.wasm` is a
//! component of the `sparkwasm:plugin/middleware` world (wit/plugin.wit), loaded with `type: wasm`.

// The generated code names this crate by its external path, also from inside it.
extern crate self as sparkwasm_plugin;

#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "middleware",
        path: "../../wit",
        pub_export_macro: true,
        export_macro_name: "__export_middleware_world",
        default_bindings_module: "sparkwasm_plugin::bindings",
        runtime_path: "sparkwasm_plugin::__wit_bindgen::rt",
    });
}

#[doc(hidden)]
pub use wit_bindgen as __wit_bindgen;

pub use bindings::sparkwasm::plugin::chain::next as next_raw;
pub use bindings::sparkwasm::plugin::host::{self, Identity, Level};
pub use bindings::sparkwasm::plugin::types::{Error, ErrorKind, Fields, Request, Response};

include!("common.rs");

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

/// Sends the request on through the rest of the chain (inner middleware, then the network).
pub fn next(request: &Request) -> Result<Response, Error> {
    next_raw(request)
}

/// The first value of header `name` (case-insensitive).
pub fn header<'a>(fields: &'a Fields, name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Replaces every value of header `name` with `value`.
pub fn set_header(fields: &mut Fields, name: &str, value: &str) {
    fields.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
    fields.push((name.to_owned(), value.to_owned()));
}

/// Sets metadata entry `key` (exact match), replacing a previous value.
pub fn set_meta(fields: &mut Fields, key: &str, value: impl Into<String>) {
    let value = value.into();
    match fields.iter_mut().find(|(k, _)| k == key) {
        Some(entry) => entry.1 = value,
        None => fields.push((key.to_owned(), value)),
    }
}
