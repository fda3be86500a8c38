//! The 0.2 contract (wit/v0.2): the `middleware` world with requests and responses as resources.
//!
//! A request or a response a 0.2 plugin holds lives in its instance's resource table as a host value
//! (a [`HeldRequest`], an [`ApiResponse`]); the guest's handle methods read or change one field at a
//! time. Between plugins (and to the transport) the values move as host values: a hop copies nothing
//! into the guest unless the guest asks for it. `next` borrows the request: the plugin keeps it for a
//! retry while the rest of the chain gets the same request, shared; whoever edits it while it is
//! shared gets a copy of its own.

use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use wasmtime::component::Resource;

use super::{PluginState, host as host_v1};
use crate::request::{ApiRequest, ApiResponse, ErrorKind};

pub(super) mod bindings {
    wasmtime::component::bindgen!({
        world: "middleware",
        path: "../wit/v0.2",
        imports: {
            "sparkwasm:plugin/chain.next": async | trappable,
            "sparkwasm:plugin/host.sleep": async | trappable,
            default: trappable,
        },
        exports: { default: async },
        with: {
            "sparkwasm:plugin/types.request": crate::plugin::wasm::v2::HeldRequest,
            "sparkwasm:plugin/types.response": crate::request::ApiResponse,
        },
    });
}

use bindings::sparkwasm::plugin::{chain, host, types};

/// The export name that tells a 0.2 middleware from a 0.1 one.
pub(super) const HANDLER: &str = "sparkwasm:plugin/handler@0.2.0";

type Fields = Vec<(String, String)>;

/// A request as a 0.2 plugin holds it: shared with the rest of the chain (and the record of what
/// was sent) until someone changes it. Reads go to the shared request; the first write copies it
/// (`Arc::make_mut`), so a plugin that passes the request on unchanged copies nothing, and one that
/// edits it after `next` (a retry that adds a header) never changes what the inner layers saw.
pub struct HeldRequest(Arc<ApiRequest>);

impl Deref for HeldRequest {
    type Target = ApiRequest;

    fn deref(&self) -> &ApiRequest {
        &self.0
    }
}

impl DerefMut for HeldRequest {
    fn deref_mut(&mut self) -> &mut ApiRequest {
        Arc::make_mut(&mut self.0)
    }
}

/// The methods `request` and `response` share (headers, metadata, drop), for the host type `$t`
/// that the resource is.
macro_rules! fields_and_drop {
    ($t:ty) => {
        fn headers(&mut self, r: Resource<$t>) -> wasmtime::Result<Fields> {
            Ok(self.table.get(&r)?.headers.clone())
        }

        fn header(&mut self, r: Resource<$t>, name: String) -> wasmtime::Result<Option<String>> {
            Ok(self
                .table
                .get(&r)?
                .headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(&name))
                .map(|(_, v)| v.clone()))
        }

        fn set_header(
            &mut self,
            r: Resource<$t>,
            name: String,
            value: String,
        ) -> wasmtime::Result<()> {
            let headers = &mut self.table.get_mut(&r)?.headers;
            headers.retain(|(k, _)| !k.eq_ignore_ascii_case(&name));
            headers.push((name, value));
            Ok(())
        }

        fn remove_header(&mut self, r: Resource<$t>, name: String) -> wasmtime::Result<()> {
            let named = |(k, _): &(String, String)| k.eq_ignore_ascii_case(&name);
            // Only a change copies a shared request.
            if self.table.get(&r)?.headers.iter().any(named) {
                self.table.get_mut(&r)?.headers.retain(|h| !named(h));
            }
            Ok(())
        }

        fn metadata(&mut self, r: Resource<$t>, key: String) -> wasmtime::Result<Option<String>> {
            Ok(self.table.get(&r)?.metadata.get(&key).cloned())
        }

        fn set_metadata(
            &mut self,
            r: Resource<$t>,
            key: String,
            value: String,
        ) -> wasmtime::Result<()> {
            self.table.get_mut(&r)?.metadata.insert(key, value);
            Ok(())
        }

        fn all_metadata(&mut self, r: Resource<$t>) -> wasmtime::Result<Fields> {
            Ok(self.table.get(&r)?.metadata.clone().into_iter().collect())
        }

        fn drop(&mut self, r: Resource<$t>) -> wasmtime::Result<()> {
            self.table.delete(r)?;
            Ok(())
        }
    };
}

/// Puts a request in the instance's table for a call of `handle`.
pub(super) fn lend(
    state: &mut PluginState,
    request: Arc<ApiRequest>,
) -> wasmtime::Result<Resource<HeldRequest>> {
    Ok(state.table.push(HeldRequest(request))?)
}

/// Takes the response `handle` returned out of the instance's table.
pub(super) fn take(
    state: &mut PluginState,
    response: Resource<ApiResponse>,
) -> wasmtime::Result<ApiResponse> {
    Ok(state.table.delete(response)?)
}

super::error_kind_conversions!(types::ErrorKind);

impl types::Host for PluginState {}

impl types::HostRequest for PluginState {
    fields_and_drop!(HeldRequest);

    fn method(&mut self, r: Resource<HeldRequest>) -> wasmtime::Result<String> {
        Ok(self.table.get(&r)?.method.to_string())
    }

    fn set_method(
        &mut self,
        r: Resource<HeldRequest>,
        method: String,
    ) -> wasmtime::Result<Result<(), String>> {
        match http::Method::from_bytes(method.as_bytes()) {
            Ok(m) => {
                self.table.get_mut(&r)?.method = m;
                Ok(Ok(()))
            }
            Err(_) => Ok(Err(format!("`{method}` is not an HTTP method"))),
        }
    }

    fn url(&mut self, r: Resource<HeldRequest>) -> wasmtime::Result<String> {
        Ok(self.table.get(&r)?.url.clone())
    }

    fn set_url(&mut self, r: Resource<HeldRequest>, url: String) -> wasmtime::Result<()> {
        self.table.get_mut(&r)?.url = url;
        Ok(())
    }

    fn body(&mut self, r: Resource<HeldRequest>) -> wasmtime::Result<Option<Vec<u8>>> {
        Ok(self.table.get(&r)?.body.as_ref().map(|b| b.to_vec()))
    }

    fn set_body(
        &mut self,
        r: Resource<HeldRequest>,
        body: Option<Vec<u8>>,
    ) -> wasmtime::Result<()> {
        self.table.get_mut(&r)?.body = body.map(bytes::Bytes::from);
        Ok(())
    }
}

impl types::HostResponse for PluginState {
    fields_and_drop!(ApiResponse);

    fn new(&mut self, status: u16, body: Vec<u8>) -> wasmtime::Result<Resource<ApiResponse>> {
        Ok(self.table.push(ApiResponse {
            status,
            headers: Vec::new(),
            body: bytes::Bytes::from(body),
            metadata: Default::default(),
        })?)
    }

    fn status(&mut self, r: Resource<ApiResponse>) -> wasmtime::Result<u16> {
        Ok(self.table.get(&r)?.status)
    }

    fn set_status(&mut self, r: Resource<ApiResponse>, status: u16) -> wasmtime::Result<()> {
        self.table.get_mut(&r)?.status = status;
        Ok(())
    }

    fn body(&mut self, r: Resource<ApiResponse>) -> wasmtime::Result<Vec<u8>> {
        Ok(self.table.get(&r)?.body.to_vec())
    }

    fn set_body(&mut self, r: Resource<ApiResponse>, body: Vec<u8>) -> wasmtime::Result<()> {
        self.table.get_mut(&r)?.body = bytes::Bytes::from(body);
        Ok(())
    }
}

impl chain::Host for PluginState {
    async fn next(
        &mut self,
        request: Resource<HeldRequest>,
    ) -> wasmtime::Result<Result<Resource<ApiResponse>, types::Error>> {
        let request = self.table.get(&request)?.0.clone();
        match self.forward(request).await {
            Ok(response) => match self.table.push(response) {
                Ok(handle) => Ok(Ok(handle)),
                Err(_) => Ok(Err(types::Error {
                    kind: types::ErrorKind::Rejected,
                    message: format!(
                        "plugin `{}` holds too many responses (handles it never drops)",
                        self.info.name
                    ),
                })),
            },
            Err(e) => Ok(Err(types::Error {
                kind: to_wit_kind(e.kind),
                message: e.message,
            })),
        }
    }
}

fn level_v1(level: host::Level) -> host_v1::Level {
    match level {
        host::Level::Trace => host_v1::Level::Trace,
        host::Level::Debug => host_v1::Level::Debug,
        host::Level::Info => host_v1::Level::Info,
        host::Level::Warn => host_v1::Level::Warn,
        host::Level::Error => host_v1::Level::Error,
    }
}

impl host::Host for PluginState {
    fn log(&mut self, level: host::Level, message: String) -> wasmtime::Result<()> {
        host_v1::Host::log(self, level_v1(level), message);
        Ok(())
    }

    fn enabled(&mut self, level: host::Level) -> wasmtime::Result<bool> {
        Ok(super::log_enabled(level_v1(level)))
    }

    fn monotonic_now(&mut self) -> wasmtime::Result<u64> {
        Ok(host_v1::Host::monotonic_now(self))
    }

    async fn sleep(&mut self, ms: u64) -> wasmtime::Result<()> {
        host_v1::Host::sleep(self, ms).await;
        Ok(())
    }

    fn config(&mut self) -> wasmtime::Result<String> {
        Ok(host_v1::Host::config(self))
    }

    fn whoami(&mut self) -> wasmtime::Result<host::Identity> {
        let who = host_v1::Host::whoami(self);
        Ok(host::Identity {
            process: who.process,
            partition: who.partition,
            consumer: who.consumer,
        })
    }
}
