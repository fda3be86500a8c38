//! The `request` and `response` resources on the host side. The row's request (and response) lent
//! to a hook lives in the call's state for the length of the call; one a plugin makes lives in its
//! instance's resource table. The guest's handle methods read or change one field at a time. An edit that breaks a rule (a header with
//! CR/LF, a URL that is not absolute http(s), a body over the plugin's cap) is not applied: it is
//! recorded as the call's violation, and the row fails naming the plugin once the call returns.

use std::sync::Arc;

use wasmtime::component::Resource;

use super::bindings::types;
use super::sandbox::PluginState;
use crate::api::{ApiRequest, ApiResponse};
use crate::chain::Origin;

type Fields = Vec<(String, String)>;

/// A request a plugin made (an auth plugin's `request::new`), in its instance's table: shared until
/// edited (`Arc::make_mut`). Public because the generated bindings name it.
#[allow(unreachable_pub)]
pub struct HeldRequest(pub(super) Arc<ApiRequest>);

/// The handle of the request (and of the response) lent to the call in progress: it lives in the
/// call's state, not in the resource table (whose indices stay far below; see `MAX_RESOURCES`), so
/// lending one costs no allocation.
const LENT: u32 = u32::MAX;

/// Lends `request` to the guest for the call in progress; the handle to pass as `borrow<request>`.
pub(super) fn lend_request(
    state: &mut PluginState,
    request: Arc<ApiRequest>,
) -> Resource<HeldRequest> {
    state.call.request = Some(request);
    Resource::new_borrow(LENT)
}

/// Takes the lent request back, with the guest's edits.
pub(super) fn take_request(state: &mut PluginState) -> Option<Arc<ApiRequest>> {
    state.call.request.take()
}

pub(super) fn lend_response(
    state: &mut PluginState,
    response: ApiResponse,
) -> Resource<ApiResponse> {
    state.call.response = Some(response);
    Resource::new_borrow(LENT)
}

pub(super) fn take_response(state: &mut PluginState) -> Option<ApiResponse> {
    state.call.response.take()
}

/// Takes a response the guest made (and returned) out of its instance's table.
pub(super) fn take_own_response(
    state: &mut PluginState,
    handle: Resource<ApiResponse>,
) -> wasmtime::Result<ApiResponse> {
    Ok(state.table.delete(handle)?)
}

fn not_lent(what: &str) -> wasmtime::Error {
    wasmtime::Error::msg(format!("no {what} is lent to this call"))
}

impl PluginState {
    fn request(&self, r: &Resource<HeldRequest>) -> wasmtime::Result<&ApiRequest> {
        if r.rep() == LENT {
            return self
                .call
                .request
                .as_deref()
                .ok_or_else(|| not_lent("request"));
        }
        Ok(&self.table.get(r)?.0)
    }

    /// The request, shared (to send it).
    pub(super) fn request_arc(
        &self,
        r: &Resource<HeldRequest>,
    ) -> wasmtime::Result<Arc<ApiRequest>> {
        if r.rep() == LENT {
            return self.call.request.clone().ok_or_else(|| not_lent("request"));
        }
        Ok(self.table.get(r)?.0.clone())
    }

    /// The request for an edit: copied first while it is shared.
    fn request_mut(&mut self, r: &Resource<HeldRequest>) -> wasmtime::Result<&mut ApiRequest> {
        let shared = if r.rep() == LENT {
            self.call
                .request
                .as_mut()
                .ok_or_else(|| not_lent("request"))?
        } else {
            &mut self.table.get_mut(r)?.0
        };
        Ok(Arc::make_mut(shared))
    }

    fn response(&self, r: &Resource<ApiResponse>) -> wasmtime::Result<&ApiResponse> {
        if r.rep() == LENT {
            return self
                .call
                .response
                .as_ref()
                .ok_or_else(|| not_lent("response"));
        }
        Ok(self.table.get(r)?)
    }

    fn response_mut(&mut self, r: &Resource<ApiResponse>) -> wasmtime::Result<&mut ApiResponse> {
        if r.rep() == LENT {
            let call = &mut self.call;
            let response = call.response.as_mut().ok_or_else(|| not_lent("response"))?;
            if call.on_stack && call.response_before.is_none() {
                // Kept for a preempted call's second run, which must see the response unchanged.
                call.response_before = Some(response.clone());
            }
            return Ok(response);
        }
        Ok(self.table.get_mut(r)?)
    }
}

/// Whether `name: value` may go on the wire: a token name, a value without CR, LF or NUL.
fn header_rule(name: &str, value: &str) -> Result<(), String> {
    if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
        return Err(format!(
            "set-header: `{}` is not a header name",
            name.escape_debug()
        ));
    }
    if http::HeaderValue::from_str(value).is_err() {
        return Err(format!(
            "set-header {name}: the value has a character HTTP does not allow (CR, LF, NUL or another control character)"
        ));
    }
    Ok(())
}

/// The methods `request` and `response` share (headers, metadata, drop), for the host type `$t`
/// that the resource is, read with `$get` and edited with `$edit`.
macro_rules! fields_and_drop {
    ($t:ty, $get:ident, $edit:ident) => {
        fn headers(&mut self, r: Resource<$t>) -> wasmtime::Result<Fields> {
            Ok(self.$get(&r)?.headers.clone())
        }

        fn header(&mut self, r: Resource<$t>, name: String) -> wasmtime::Result<Option<String>> {
            Ok(self
                .$get(&r)?
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
            if let Err(rule) = header_rule(&name, &value) {
                self.violate(rule);
                return Ok(());
            }
            let headers = &mut self.$edit(&r)?.headers;
            headers.retain(|(k, _): &(String, String)| !k.eq_ignore_ascii_case(&name));
            headers.push((name, value));
            Ok(())
        }

        fn remove_header(&mut self, r: Resource<$t>, name: String) -> wasmtime::Result<()> {
            let named = |(k, _): &(String, String)| k.eq_ignore_ascii_case(&name);
            // Only a change copies a shared request.
            if self.$get(&r)?.headers.iter().any(named) {
                self.$edit(&r)?.headers.retain(|h| !named(h));
            }
            Ok(())
        }

        fn metadata(&mut self, r: Resource<$t>, key: String) -> wasmtime::Result<Option<String>> {
            Ok(self.$get(&r)?.metadata.get(&key).cloned())
        }

        fn set_metadata(
            &mut self,
            r: Resource<$t>,
            key: String,
            value: String,
        ) -> wasmtime::Result<()> {
            self.$edit(&r)?.metadata.insert(key, value);
            Ok(())
        }

        fn all_metadata(&mut self, r: Resource<$t>) -> wasmtime::Result<Fields> {
            Ok(self.$get(&r)?.metadata.clone().into_iter().collect())
        }

        fn drop(&mut self, r: Resource<$t>) -> wasmtime::Result<()> {
            // Only a handle the guest owns (one it made) is dropped; a lent one is only borrowed.
            if r.rep() != LENT {
                self.table.delete(r)?;
            }
            Ok(())
        }
    };
}

impl types::Host for PluginState {}

impl types::HostRequest for PluginState {
    fields_and_drop!(HeldRequest, request, request_mut);

    fn new(&mut self, method: String, url: String) -> wasmtime::Result<Resource<HeldRequest>> {
        let method = http::Method::from_bytes(method.as_bytes()).unwrap_or_else(|_| {
            self.violate(format!("request: `{method}` is not an HTTP method"));
            http::Method::GET
        });
        if let Err(e) = Origin::of(&url) {
            self.violate(format!("request: {e}"));
        }
        Ok(self.table.push(HeldRequest(Arc::new(ApiRequest {
            method,
            url,
            headers: Vec::new(),
            body: None,
            metadata: Default::default(),
        })))?)
    }

    fn method(&mut self, r: Resource<HeldRequest>) -> wasmtime::Result<String> {
        Ok(self.request(&r)?.method.to_string())
    }

    fn set_method(&mut self, r: Resource<HeldRequest>, method: String) -> wasmtime::Result<()> {
        match http::Method::from_bytes(method.as_bytes()) {
            Ok(m) => self.request_mut(&r)?.method = m,
            Err(_) => self.violate(format!("set-method: `{method}` is not an HTTP method")),
        }
        Ok(())
    }

    fn url(&mut self, r: Resource<HeldRequest>) -> wasmtime::Result<String> {
        Ok(self.request(&r)?.url.clone())
    }

    fn set_url(&mut self, r: Resource<HeldRequest>, url: String) -> wasmtime::Result<()> {
        // Where it may go is the chain's to check (the layer's grants); here only that it is a URL
        // the transport can send to.
        match Origin::of(&url) {
            Ok(_) => self.request_mut(&r)?.url = url,
            Err(e) => self.violate(format!("set-url: {e}")),
        }
        Ok(())
    }

    fn body(&mut self, r: Resource<HeldRequest>) -> wasmtime::Result<Option<Vec<u8>>> {
        Ok(self.request(&r)?.body.as_ref().map(|b| b.to_vec()))
    }

    fn set_body(
        &mut self,
        r: Resource<HeldRequest>,
        body: Option<Vec<u8>>,
    ) -> wasmtime::Result<()> {
        if let Some(b) = &body
            && !self.body_fits(b.len(), "set-body")
        {
            return Ok(());
        }
        self.request_mut(&r)?.body = body.map(bytes::Bytes::from);
        Ok(())
    }

    fn scratch(
        &mut self,
        _: Resource<HeldRequest>,
        key: String,
    ) -> wasmtime::Result<Option<String>> {
        Ok(self
            .call
            .layer
            .scratch
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.clone()))
    }

    fn set_scratch(
        &mut self,
        _: Resource<HeldRequest>,
        key: String,
        value: String,
    ) -> wasmtime::Result<()> {
        if self.call.on_stack && self.call.scratch_before.is_none() {
            // Kept for a preempted call's second run.
            self.call.scratch_before = Some(self.call.layer.scratch.clone());
        }
        let scratch = &mut self.call.layer.scratch;
        if key.len() + value.len() > MAX_SCRATCH {
            self.violate(format!(
                "set-scratch: a note of {} bytes; at most {MAX_SCRATCH}",
                key.len() + value.len()
            ));
            return Ok(());
        }
        if let Some(entry) = scratch.iter_mut().find(|(k, _)| *k == key) {
            entry.1 = value;
        } else if scratch.len() < MAX_SCRATCH_ENTRIES {
            scratch.push((key, value));
        } else {
            self.violate(format!(
                "set-scratch: more than {MAX_SCRATCH_ENTRIES} notes on one row"
            ));
        }
        Ok(())
    }

    fn sends(&mut self, _: Resource<HeldRequest>) -> wasmtime::Result<u32> {
        Ok(self.call.layer.sends)
    }

    fn sent_at(&mut self, _: Resource<HeldRequest>) -> wasmtime::Result<u64> {
        Ok(self.call.layer.sent_at)
    }
}

/// The largest note a plugin may keep on a row, and how many.
const MAX_SCRATCH: usize = 4096;
const MAX_SCRATCH_ENTRIES: usize = 32;

impl types::HostResponse for PluginState {
    fields_and_drop!(ApiResponse, response, response_mut);

    fn new(&mut self, status: u16, body: Vec<u8>) -> wasmtime::Result<Resource<ApiResponse>> {
        let body = if self.body_fits(body.len(), "response") {
            body
        } else {
            Vec::new()
        };
        Ok(self.table.push(ApiResponse {
            status,
            headers: Vec::new(),
            body: bytes::Bytes::from(body),
            metadata: Default::default(),
        })?)
    }

    fn status(&mut self, r: Resource<ApiResponse>) -> wasmtime::Result<u16> {
        Ok(self.response(&r)?.status)
    }

    fn set_status(&mut self, r: Resource<ApiResponse>, status: u16) -> wasmtime::Result<()> {
        self.response_mut(&r)?.status = status;
        Ok(())
    }

    fn body(&mut self, r: Resource<ApiResponse>) -> wasmtime::Result<Vec<u8>> {
        Ok(self.response(&r)?.body.to_vec())
    }

    fn set_body(&mut self, r: Resource<ApiResponse>, body: Vec<u8>) -> wasmtime::Result<()> {
        if self.body_fits(body.len(), "set-body") {
            self.response_mut(&r)?.body = bytes::Bytes::from(body);
        }
        Ok(())
    }
}
