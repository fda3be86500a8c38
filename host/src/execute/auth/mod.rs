//! The pipeline's credentials, applied by the host to every request for the endpoint's origin after
//! the middleware chain and before the rate limit and the transport: no plugin sees them, a request a
//! plugin sent elsewhere never carries them (unless its grant forwards them), and a retry's second
//! attempt carries a fresh credential too.
//!
//! Static strategies (basic, bearer, API key) add a header or a query parameter. Refreshing strategies
//! (OAuth2, a WASM auth plugin: a [`CredentialSource`]) get their credential from a
//! [`CredentialCache`] that every consumer
//! shares: one acquisition at a time no matter how many requests wait for it (single-flight), renewed
//! `refresh_margin` before it expires, and after an API answers 401 the credential that request used is
//! dropped, a new one acquired once, and the request sent again once.
//!
//! Credentials never reach the sink or the logs: each acquired secret is taught to the run's
//! [`Redactor`], and the auth stage's headers are added after the request columns are recorded.

mod oauth2;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

pub(crate) use oauth2::OAuth2;

use crate::api::{ApiRequest, ApiResponse, ErrorKind, RequestError, Sender};
use crate::config;
use crate::credential::{AcquireError, CredentialSource};
use crate::events::{Event, Events};
use crate::redact::Redactor;

/// After a failed acquisition, requests fail with its error for this long before one tries again.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(1);

/// A credential the API refused before ever accepting it is renewed at most this often.
const RENEW_UNACCEPTED_AFTER: Duration = Duration::from_secs(1);

/// Lifetimes are taken as at least this (a token said to last 0 s would be fetched for every request)
/// and at most a year (longer is "no expiry" in practice, and would overflow the clock).
const MIN_LIFETIME: Duration = Duration::from_secs(1);
const MAX_LIFETIME: Duration = Duration::from_secs(365 * 86_400);

/// One acquired credential.
pub struct Credential {
    /// The secret (never logged).
    pub secret: String,
    /// Counts acquisitions; a 401 drops the credential only if it is still the one that was used.
    generation: u64,
    /// When to acquire the next one (expiry minus the margin).
    refresh_at: Option<Instant>,
    /// When it stops working.
    expires_at: Option<Instant>,
    acquired_at: Instant,
    /// An API answered a request carrying it with something else than 401.
    accepted: std::sync::atomic::AtomicBool,
}

impl Credential {
    /// Notes that an API took it. Read before written: every worker reads this flag on every
    /// request, and a write per request would take its cache line from the other cores each time.
    pub fn accept(&self) {
        if !self.accepted.load(Ordering::Relaxed) {
            self.accepted.store(true, Ordering::Relaxed);
        }
    }

    /// How long it stays good from now; `None`: until an API rejects it.
    pub fn expires_in(&self) -> Option<Duration> {
        self.expires_at
            .map(|e| e.saturating_duration_since(Instant::now()))
    }
}

struct Failure {
    at: Instant,
    message: String,
}

/// The shared credential of a refreshing strategy.
pub struct CredentialCache {
    auth: Box<dyn CredentialSource>,
    margin: Duration,
    current: RwLock<Option<Arc<Credential>>>,
    /// Held while acquiring (single-flight); remembers the last failed acquisition, so that the
    /// requests that waited for it fail with it instead of each trying again.
    acquiring: tokio::sync::Mutex<Option<Failure>>,
    generation: AtomicU64,
    /// The last generation a refused-while-fresh warning was logged for.
    warned: AtomicU64,
    redactor: Arc<Redactor>,
    events: Events,
}

impl CredentialCache {
    /// A cache of `auth`'s credentials, renewed `margin` before they expire, every secret taught to `redactor`.
    pub fn new(
        auth: Box<dyn CredentialSource>,
        margin: Duration,
        redactor: Arc<Redactor>,
        events: Events,
    ) -> Self {
        CredentialCache {
            auth,
            margin,
            current: RwLock::new(None),
            acquiring: tokio::sync::Mutex::new(None),
            generation: AtomicU64::new(0),
            warned: AtomicU64::new(0),
            redactor,
            events,
        }
    }

    /// How many credentials were acquired so far.
    pub fn acquisitions(&self) -> u64 {
        self.generation.load(Ordering::Relaxed)
    }

    fn fresh(&self) -> Option<Arc<Credential>> {
        let current = self.current.read().expect("credential lock");
        current
            .as_ref()
            .filter(|c| c.refresh_at.is_none_or(|r| Instant::now() < r))
            .cloned()
    }

    /// The current credential, acquired first if there is none or it is due for renewal.
    pub async fn get(&self) -> Result<Arc<Credential>, AcquireError> {
        if let Some(c) = self.fresh() {
            return Ok(c);
        }
        let arrived = Instant::now();
        // Due for renewal but still good: one request renews, the others go on with it meanwhile.
        let mut last_failure = match self.acquiring.try_lock() {
            Ok(guard) => guard,
            Err(_) => match self.unexpired() {
                Some(c) => return Ok(c),
                None => self.acquiring.lock().await,
            },
        };
        // Someone else renewed it while this request waited.
        if let Some(c) = self.fresh() {
            return Ok(c);
        }
        // A failure while this request waited, or a moment ago: the same answer (or the current
        // credential while it still works), without asking a source that is down once per request.
        if let Some(f) = last_failure.as_ref()
            && (f.at >= arrived || f.at.elapsed() < RETRY_AFTER_FAILURE)
        {
            return self
                .unexpired()
                .ok_or_else(|| AcquireError(f.message.clone()));
        }
        match self.auth.acquire().await {
            Ok(fresh) => {
                self.events.emit(Event::CredentialAcquired {
                    by: self.auth.what(),
                });
                let now = Instant::now();
                let generation = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
                // A margin as long as the lifetime would renew on every request: at most half.
                let life = fresh
                    .expires_in
                    .filter(|l| *l <= MAX_LIFETIME)
                    .map(|l| l.max(MIN_LIFETIME));
                let (refresh_at, expires_at) = match life {
                    Some(life) => (
                        Some(now + life - self.margin.min(life / 2)),
                        Some(now + life),
                    ),
                    None => (None, None),
                };
                self.redactor.learn(&fresh.secret);
                let credential = Arc::new(Credential {
                    secret: fresh.secret,
                    generation,
                    refresh_at,
                    expires_at,
                    acquired_at: now,
                    accepted: Default::default(),
                });
                *self.current.write().expect("credential lock") = Some(credential.clone());
                *last_failure = None;
                tracing::debug!(generation, expires_in = ?fresh.expires_in, "credential acquired");
                Ok(credential)
            }
            Err(AcquireError(message)) => {
                self.events.emit(Event::CredentialFailed {
                    by: self.auth.what(),
                });
                let message = self
                    .redactor
                    .text(&format!("{}: {message}", self.auth.what()))
                    .into_owned();
                *last_failure = Some(Failure {
                    at: Instant::now(),
                    message: message.clone(),
                });
                // Renewal failed inside the margin: the current credential works until it expires.
                match self.unexpired() {
                    Some(c) => {
                        tracing::warn!(error = %message, "credential renewal failed; the current one is still valid");
                        Ok(c)
                    }
                    None => Err(AcquireError(message)),
                }
            }
        }
    }

    /// The current credential if it has not expired (it may be due for renewal).
    fn unexpired(&self) -> Option<Arc<Credential>> {
        let current = self.current.read().expect("credential lock");
        current
            .as_ref()
            .filter(|c| c.expires_at.is_none_or(|e| Instant::now() < e))
            .cloned()
    }

    /// An API answered 401 to a request that carried `used`: unless a newer one exists, drop it.
    ///
    /// A credential the API has not accepted once and that is younger than a second is kept: when
    /// the API refuses every fresh credential (a wrong scope or audience), renewing on each 401 would
    /// ask the token endpoint once per request. Such a credential is renewed at most once a second,
    /// and the 401s fail their rows meanwhile.
    pub fn reject(&self, used: &Credential) {
        if !used.accepted.load(Ordering::Relaxed)
            && used.acquired_at.elapsed() < RENEW_UNACCEPTED_AFTER
        {
            if self.warned.fetch_max(used.generation, Ordering::Relaxed) < used.generation {
                tracing::warn!(
                    generation = used.generation,
                    "the API answered 401 to a credential it has not accepted yet ({}); it is renewed at most once a second meanwhile",
                    self.auth.what()
                );
            }
            return;
        }
        let mut current = self.current.write().expect("credential lock");
        if current
            .as_ref()
            .is_some_and(|c| c.generation == used.generation)
        {
            *current = None;
        }
    }

    /// Where the credentials come from.
    pub fn source(&self) -> &dyn CredentialSource {
        self.auth.as_ref()
    }
}

/// A header or a query parameter that never changes.
#[derive(Clone, Debug)]
pub enum Static {
    /// A header.
    Header {
        /// Its name.
        name: String,
        /// Its value (a secret).
        value: String,
    },
    /// A query parameter.
    Query {
        /// Its name.
        name: String,
        /// Its value (a secret).
        value: String,
    },
}

impl Static {
    /// The credential headers the host adds (see [`config::HostCredential`]).
    pub fn headers(credentials: &[config::HostCredential]) -> Vec<Static> {
        credentials
            .iter()
            .map(|c| Static::Header {
                name: c.name.clone(),
                value: c.value.clone(),
            })
            .collect()
    }

    pub(crate) fn apply(&self, mut request: ApiRequest) -> ApiRequest {
        match self {
            Static::Header { name, value } => {
                request
                    .headers
                    .retain(|(n, _)| !n.eq_ignore_ascii_case(name));
                request.headers.push((name.clone(), value.clone()));
            }
            Static::Query { name, value } => {
                let pair = url::form_urlencoded::Serializer::new(String::new())
                    .append_pair(name, value)
                    .finish();
                let sep = if request.url.contains('?') { '&' } else { '?' };
                request.url.push(sep);
                request.url.push_str(&pair);
            }
        }
        request
    }
}

/// How the pipeline authenticates.
pub enum Strategy {
    /// No credential.
    None,
    /// A fixed header or query parameter.
    Static(Static),
    /// A credential acquired at run time and renewed.
    Refreshing(Arc<CredentialCache>),
}

/// Why the auth stage could not start.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// `auth: {type: wasm}` without its loaded plugin.
    #[error("auth: the auth plugin was not loaded")]
    MissingPlugin,
    /// The first credential could not be acquired (token endpoint down, refused, garbage).
    #[error(transparent)]
    Acquire(#[from] AcquireError),
}

impl Strategy {
    /// The strategy of a pipeline's `auth` section. OAuth2 token requests go through `sender`
    /// (the run's transport: its TLS settings apply), not through the API's rate limit; `plugin`
    /// is the loaded auth plugin of `type: wasm`.
    pub fn new(
        auth: &config::Auth,
        sender: Arc<dyn Sender>,
        plugin: Option<Box<dyn CredentialSource>>,
        redactor: Arc<Redactor>,
        events: Events,
    ) -> Result<Self, AuthError> {
        // The section's own secrets are in the run's redactor from the start (see `secrets`).
        Ok(match auth {
            config::Auth::None => Strategy::None,
            config::Auth::Basic { username, password } => Strategy::Static(Static::Header {
                name: "authorization".into(),
                value: config::basic_header(username, password),
            }),
            config::Auth::Bearer { token } => Strategy::Static(Static::Header {
                name: "authorization".into(),
                value: format!("Bearer {token}"),
            }),
            config::Auth::ApiKey {
                key,
                header,
                query_param,
            } => Strategy::Static(match query_param {
                Some(name) => Static::Query {
                    name: name.clone(),
                    value: key.clone(),
                },
                None => Static::Header {
                    name: header.clone(),
                    value: key.clone(),
                },
            }),
            config::Auth::OAuth2(settings) => {
                let margin = settings.refresh_margin;
                let auth = OAuth2::new(settings.clone(), sender);
                Strategy::Refreshing(Arc::new(CredentialCache::new(
                    Box::new(auth),
                    margin,
                    redactor,
                    events,
                )))
            }
            config::Auth::Wasm { refresh_margin, .. } => {
                let plugin = plugin.ok_or(AuthError::MissingPlugin)?;
                Strategy::Refreshing(Arc::new(CredentialCache::new(
                    plugin,
                    *refresh_margin,
                    redactor,
                    events,
                )))
            }
        })
    }

    /// The request with this strategy's credential on it, without acquiring one: a refreshing
    /// credential (OAuth2, an auth plugin) is applied as the placeholder `***`. For a dry run.
    pub async fn placeholder(&self, request: ApiRequest) -> Result<ApiRequest, RequestError> {
        match self {
            Strategy::None => Ok(request),
            Strategy::Static(s) => Ok(s.apply(request)),
            Strategy::Refreshing(cache) => cache.source().apply(request, "***", None).await,
        }
    }

    /// Acquires the first credential before any row is read: a token endpoint that is down or
    /// answers garbage stops the run here.
    pub async fn prepare(&self) -> Result<(), AuthError> {
        match self {
            Strategy::Refreshing(cache) => Ok(cache.get().await.map(|_| ())?),
            _ => Ok(()),
        }
    }

    /// Sends `request` with the credential on it through `send` (the rate limit and the network).
    /// For a refreshing credential an API's 401 drops the credential that request carried (once,
    /// however many requests carried it), and the request goes once more with a new one.
    pub async fn send<F, Fut>(
        &self,
        request: Arc<ApiRequest>,
        send: F,
    ) -> Result<ApiResponse, RequestError>
    where
        F: Fn(Arc<ApiRequest>) -> Fut,
        Fut: std::future::Future<Output = Result<ApiResponse, RequestError>>,
    {
        let cache = match self {
            Strategy::None => return send(request).await,
            Strategy::Static(s) => {
                return send(Arc::new(s.apply(Arc::unwrap_or_clone(request)))).await;
            }
            Strategy::Refreshing(cache) => cache,
        };
        let failed = |e: AcquireError| RequestError::of(ErrorKind::Rejected, e.0);
        let used = cache.get().await.map_err(failed)?;
        let source = cache.source();
        let first = source
            .apply(ApiRequest::clone(&request), &used.secret, used.expires_in())
            .await?;
        let response = send(Arc::new(first)).await?;
        if response.status != 401 {
            used.accept();
            return Ok(response);
        }
        cache.reject(&used);
        let renewed = cache.get().await.map_err(failed)?;
        if renewed.generation == used.generation {
            return Ok(response);
        }
        let second = source
            .apply(
                Arc::unwrap_or_clone(request),
                &renewed.secret,
                renewed.expires_in(),
            )
            .await?;
        let mut response = send(Arc::new(second)).await?;
        if response.status != 401 {
            renewed.accept();
        }
        response
            .metadata
            .insert("auth_renewed_after_401".into(), "true".into());
        Ok(response)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU32;

    use futures::future::BoxFuture;

    use super::*;
    use crate::credential::Fresh;

    /// Counts acquisitions; each takes 50 ms and lives `life`. (The end-to-end tests run the real
    /// token endpoint; this checks the cache's bookkeeping alone.)
    struct Counting {
        calls: AtomicU32,
        life: Option<Duration>,
    }

    impl CredentialSource for Counting {
        fn what(&self) -> &str {
            "counting"
        }
        fn acquire(&self) -> BoxFuture<'_, Result<Fresh, AcquireError>> {
            Box::pin(async move {
                let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
                Ok(Fresh {
                    secret: format!("secret-{n}"),
                    expires_in: self.life,
                })
            })
        }
        fn apply<'a>(
            &'a self,
            request: ApiRequest,
            _: &'a str,
            _: Option<Duration>,
        ) -> BoxFuture<'a, Result<ApiRequest, RequestError>> {
            Box::pin(async move { Ok(request) })
        }
    }

    fn cache(life: Option<Duration>) -> Arc<CredentialCache> {
        Arc::new(CredentialCache::new(
            Box::new(Counting {
                calls: AtomicU32::new(0),
                life,
            }),
            Duration::from_secs(60),
            Arc::new(Redactor::default()),
            Events::default(),
        ))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn waiters_share_one_acquisition_and_a_401_drops_only_the_credential_it_used() {
        let cache = cache(None);
        let all = futures::future::join_all((0..500).map(|_| {
            let cache = cache.clone();
            tokio::spawn(async move { cache.get().await.unwrap().secret.clone() })
        }))
        .await;
        assert!(all.iter().all(|s| s.as_ref().unwrap() == "secret-1"));
        assert_eq!(cache.acquisitions(), 1);
        let used = cache.get().await.unwrap();
        // The API took it for a while, then many requests were rejected with it: one renewal.
        used.accept();
        for _ in 0..100 {
            cache.reject(&used);
        }
        let renewed = cache.get().await.unwrap();
        assert_eq!(renewed.secret, "secret-2");
        cache.reject(&used);
        assert_eq!(cache.get().await.unwrap().secret, "secret-2");
        assert_eq!(cache.acquisitions(), 2);
    }

    #[tokio::test]
    async fn a_credential_refused_before_the_api_ever_took_it_is_renewed_at_most_once_a_second() {
        let cache = cache(None);
        let first = cache.get().await.unwrap();
        // Refused at once (a wrong scope): renewing would not help; the same one is kept.
        for _ in 0..50 {
            cache.reject(&first);
            assert_eq!(cache.get().await.unwrap().secret, "secret-1");
        }
        assert_eq!(cache.acquisitions(), 1);
        // A second later, a refusal renews it once.
        tokio::time::sleep(Duration::from_millis(1050)).await;
        cache.reject(&first);
        let second = cache.get().await.unwrap();
        assert_eq!(second.secret, "secret-2");
        cache.reject(&second);
        assert_eq!(cache.get().await.unwrap().secret, "secret-2");
        assert_eq!(cache.acquisitions(), 2);
    }

    #[tokio::test]
    async fn a_short_lifetime_renews_at_half_of_it_not_every_request() {
        // Margin 60 s, lifetime 0.4 s (counted as the 1 s floor): renewed after half of it, 0.5 s.
        let cache = cache(Some(Duration::from_millis(400)));
        assert_eq!(cache.get().await.unwrap().secret, "secret-1");
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(cache.get().await.unwrap().secret, "secret-1");
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(cache.get().await.unwrap().secret, "secret-2");
    }

    #[test]
    fn static_credentials_go_in_a_header_or_the_query() {
        let request = ApiRequest {
            method: http::Method::GET,
            url: "http://h/x?a=1".into(),
            headers: vec![("X-API-Key".into(), "old".into())],
            body: None,
            metadata: Default::default(),
        };
        let header = Static::Header {
            name: "x-api-key".into(),
            value: "k".into(),
        }
        .apply(request.clone());
        assert_eq!(header.headers, vec![("x-api-key".into(), "k".into())]);
        let query = Static::Query {
            name: "api key".into(),
            value: "a&b".into(),
        }
        .apply(request);
        assert_eq!(query.url, "http://h/x?a=1&api+key=a%26b");
    }
}
