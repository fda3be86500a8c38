//! Where a refreshing credential comes from: an OAuth2 token endpoint or an auth plugin. The host's
//! credential cache (`execute::auth`) asks a [`CredentialSource`] for a credential, one at a time
//! for all workers, and has it applied to each request after the middleware chain.

use std::time::Duration;

use futures::future::BoxFuture;

use crate::api::{ApiRequest, RequestError};

/// A credential as its source hands it over.
pub struct Fresh {
    /// Opaque to the host (a token, a key); never logged, taught to the run's redactor.
    pub secret: String,
    /// How long it stays good; `None`: until an API rejects it.
    pub expires_in: Option<Duration>,
}

/// Why no credential could be had: the source's own words (a token endpoint's answer, a plugin's
/// error), without any secret.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct AcquireError(pub String);

/// A source of credentials that expire or can be refused.
pub trait CredentialSource: Send + Sync {
    /// Names the source in errors: `auth (oauth2_client_credentials, http://...)`.
    fn what(&self) -> &str;

    /// Obtains a new credential. The cache calls it one at a time.
    fn acquire(&self) -> BoxFuture<'_, Result<Fresh, AcquireError>>;

    /// Puts the credential (`secret`, with `expires_in` left) on one request.
    fn apply<'a>(
        &'a self,
        request: ApiRequest,
        secret: &'a str,
        expires_in: Option<Duration>,
    ) -> BoxFuture<'a, Result<ApiRequest, RequestError>>;
}
