//! An auth plugin as the host's credential source: `acquire` (called one at a time for all workers
//! by [`crate::auth::CredentialCache`], on a pooled instance, its outbound fetches excluded from
//! its CPU deadline) and `apply` (per request, after the middleware chain).

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;

use super::bindings::{WitCredential, from_wit_error};
use super::budget::{self, describe_failure, stuck, watchdog};
use super::instance::{AuthWorld, Lease, WasmPlugin};
use super::resources;
use crate::api::{ApiRequest, ErrorKind, RequestError};
use crate::chain::Origin;
use crate::credential::{AcquireError, CredentialSource, Fresh};

/// A custom auth strategy: a component of the `auth` world.
pub struct WasmAuth {
    what: String,
    plugin: WasmPlugin<AuthWorld>,
}

impl WasmAuth {
    pub(super) fn new(plugin: WasmPlugin<AuthWorld>) -> Self {
        WasmAuth {
            what: format!("auth plugin `{}`", plugin.info.name),
            plugin,
        }
    }

    async fn begin(&self) -> Result<Lease<'_, AuthWorld>, String> {
        let mut lease = self.plugin.lease().await?;
        let store = &mut lease.instance().store;
        store.data_mut().begin_call(Default::default(), (0, 0));
        budget::arm(store);
        Ok(lease)
    }

    /// As the middleware's `finish`: the instance back to its pool unless the call failed; a
    /// broken rule is the call's error.
    fn finish<T>(
        &self,
        mut lease: Lease<'_, AuthWorld>,
        result: Option<wasmtime::Result<T>>,
        during: &str,
    ) -> Result<T, String> {
        let data = lease.instance().store.data_mut();
        let violation = data.call.violation.take();
        let value = match result {
            None => return Err(stuck(&self.plugin.info, during)),
            Some(Err(e)) => return Err(describe_failure(&e, data, during)),
            Some(Ok(value)) => value,
        };
        lease.give_back();
        match violation {
            Some(rule) => Err(format!("broke a rule in {during}: {rule}")),
            None => Ok(value),
        }
    }

    async fn acquire_credential(&self) -> Result<Fresh, AcquireError> {
        let mut lease = self.begin().await.map_err(AcquireError)?;
        let instance = lease.instance();
        let result = watchdog(instance.store.data())
            .run(
                instance
                    .guest
                    .sparkwasm_plugin_authenticator()
                    .call_acquire(&mut instance.store),
            )
            .await;
        let credential = self
            .finish(lease, result, "acquire")
            .map_err(AcquireError)?
            .map_err(|e| AcquireError(e.message))?;
        Ok(Fresh {
            secret: credential.secret,
            expires_in: credential.expires_in.map(Duration::from_secs),
        })
    }

    async fn apply_credential(
        &self,
        request: ApiRequest,
        secret: &str,
        expires_in: Option<Duration>,
    ) -> Result<ApiRequest, RequestError> {
        let fail =
            |kind, message: String| RequestError::of(kind, format!("{}: {message}", self.what));
        let mut lease = self.begin().await.map_err(|e| fail(ErrorKind::Other, e))?;
        let instance = lease.instance();
        let store = &mut instance.store;
        let wit_credential = WitCredential {
            secret: secret.to_owned(),
            expires_in: expires_in.map(|d| d.as_secs()),
        };
        let (method, url, metadata) = (
            request.method.clone(),
            request.url.clone(),
            request.metadata.clone(),
        );
        let lent = resources::lend_request(store.data_mut(), Arc::new(request));
        let result = watchdog(store.data())
            .run(instance.guest.sparkwasm_plugin_authenticator().call_apply(
                &mut *store,
                lent,
                &wit_credential,
            ))
            .await;
        let taken = resources::take_request(store.data_mut());
        self.finish(lease, result, "apply")
            .map_err(|trap| fail(ErrorKind::Other, trap))?
            .map_err(|e| {
                let e = from_wit_error(e);
                fail(e.kind, e.message)
            })?;
        let mut applied = Arc::unwrap_or_clone(taken.ok_or_else(|| {
            fail(
                ErrorKind::Other,
                "internal error: the request lent to apply was lost".into(),
            )
        })?);
        // A credential changes headers and the query, never where the request goes: the plugin
        // reaches other hosts only through its granted outbound fetch.
        if applied.method != method || target(&applied.url) != target(&url) {
            return Err(fail(
                ErrorKind::Rejected,
                "apply changed the request's method, host or path; it may only add headers or query parameters".into(),
            ));
        }
        // Annotations are the chain's: metadata set here does not reach the table.
        applied.metadata = metadata;
        Ok(applied)
    }
}

/// Origin and path of a URL, as the transport reads it: where a request goes.
fn target(url: &str) -> Option<(Origin, String)> {
    let uri: http::Uri = url.parse().ok()?;
    Some((Origin::of(url).ok()?, uri.path().to_owned()))
}

impl CredentialSource for WasmAuth {
    fn what(&self) -> &str {
        &self.what
    }

    fn acquire(&self) -> BoxFuture<'_, Result<Fresh, AcquireError>> {
        Box::pin(self.acquire_credential())
    }

    fn apply<'a>(
        &'a self,
        request: ApiRequest,
        secret: &'a str,
        expires_in: Option<Duration>,
    ) -> BoxFuture<'a, Result<ApiRequest, RequestError>> {
        Box::pin(self.apply_credential(request, secret, expires_in))
    }
}
