//! The test API's auth side: an OAuth2 token endpoint (`POST /oauth/token`, client credentials and
//! password grants) and path prefixes that demand a credential before the rest of the path is served:
//! `/secure/...` a live bearer token from the token endpoint, `/basic/...` HTTP Basic, `/apikey/...` an
//! API key in the `X-API-Key` header (and not in the query), `/apikey-query/...` one in the `api_key` query
//! parameter (and not in a header), `/signed/...` an HMAC-SHA256
//! request signature made with a key from the key service (`GET /keys?client_id=...`, for the example
//! auth plugin plugins/auth-hmac). A refused request gets 401.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use sha2::{Digest, Sha256};

/// How the token endpoint wants the client to authenticate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientAuth {
    /// HTTP Basic header only.
    Basic,
    /// client_id and client_secret in the form body only.
    Body,
}

/// What the token endpoint does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenMode {
    Issue,
    /// Answers 503.
    Down,
    /// Answers 200 with a body that is not a token response.
    Garbage,
}

#[derive(Clone, Debug)]
pub struct AuthSettings {
    /// How long an issued token is accepted.
    pub token_ttl: Duration,
    /// The `expires_in` the token response announces (seconds); `None` leaves it out. Defaults to
    /// the real lifetime.
    pub announced_ttl: Option<f64>,
    pub client_auth: ClientAuth,
    pub token_mode: TokenMode,
    pub client_id: String,
    pub client_secret: String,
    pub username: String,
    pub password: String,
    pub api_key: String,
    /// How long a signing key from `/keys` is accepted (and the `expires_in` it is announced with).
    pub key_ttl: Duration,
}

impl Default for AuthSettings {
    fn default() -> Self {
        AuthSettings {
            token_ttl: Duration::from_secs(3600),
            announced_ttl: Some(3600.0),
            client_auth: ClientAuth::Basic,
            token_mode: TokenMode::Issue,
            client_id: "test-client".into(),
            client_secret: "client-secret-0xC0FFEE".into(),
            username: "alice".into(),
            password: "alice-password-0xBEEF".into(),
            api_key: "api-key-0xF00D".into(),
            key_ttl: Duration::from_secs(3600),
        }
    }
}

/// The auth state of one server.
#[derive(Default)]
pub struct AuthState {
    pub settings: Mutex<AuthSettings>,
    tokens: Mutex<HashMap<String, Instant>>,
    /// Requests to the token endpoint.
    pub token_requests: AtomicU64,
    /// Tokens issued.
    pub tokens_issued: AtomicU64,
    /// When each token was issued.
    pub issued_at: Mutex<Vec<Instant>>,
    /// Requests refused with 401 on a guarded path.
    pub refused: AtomicU64,
    /// Every token and signing key issued so far (for tests that look for them where they must not be).
    pub issued: Mutex<Vec<String>>,
    /// Requests to the key service.
    pub key_requests: AtomicU64,
    keys: Mutex<HashMap<String, (Vec<u8>, Instant)>>,
}

impl AuthState {
    /// Changes the settings (e.g. `|s| s.token_ttl = Duration::from_secs(2)`).
    pub fn configure(&self, change: impl FnOnce(&mut AuthSettings)) {
        change(&mut self.settings.lock().expect("auth settings"));
    }

    fn settings(&self) -> AuthSettings {
        self.settings.lock().expect("auth settings").clone()
    }

    /// The token endpoint: (status, JSON body).
    pub fn token(&self, authorization: Option<&str>, body: &[u8]) -> (u16, String) {
        self.token_requests.fetch_add(1, Ordering::Relaxed);
        let s = self.settings();
        match s.token_mode {
            TokenMode::Down => return (503, "token service unavailable".into()),
            TokenMode::Garbage => return (200, "<html>maintenance</html>".into()),
            TokenMode::Issue => {}
        }
        let form: HashMap<String, String> =
            url::form_urlencoded::parse(body).into_owned().collect();
        let error = |status, code: &str, description: &str| {
            (
                status,
                serde_json::json!({"error": code, "error_description": description}).to_string(),
            )
        };
        let basic = authorization
            .and_then(|a| a.strip_prefix("Basic "))
            .map(|b| {
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(b.trim())
                    .unwrap_or_default();
                String::from_utf8_lossy(&decoded).into_owned()
            });
        let expected = format!("{}:{}", s.client_id, s.client_secret);
        let client_ok = match s.client_auth {
            ClientAuth::Basic => basic.as_deref() == Some(expected.as_str()),
            ClientAuth::Body => {
                basic.is_none()
                    && form.get("client_id") == Some(&s.client_id)
                    && form.get("client_secret") == Some(&s.client_secret)
            }
        };
        if !client_ok {
            return error(401, "invalid_client", "client authentication failed");
        }
        match form.get("grant_type").map(String::as_str) {
            Some("client_credentials") => {}
            Some("password") => {
                if form.get("username") != Some(&s.username)
                    || form.get("password") != Some(&s.password)
                {
                    return error(400, "invalid_grant", "bad username or password");
                }
            }
            _ => return error(400, "unsupported_grant_type", "unknown grant_type"),
        }
        let n = self.tokens_issued.fetch_add(1, Ordering::Relaxed) + 1;
        let token = format!(
            "tok{n}-{:x}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        );
        self.tokens
            .lock()
            .expect("tokens")
            .insert(token.clone(), Instant::now() + s.token_ttl);
        self.issued.lock().expect("issued").push(token.clone());
        self.issued_at
            .lock()
            .expect("issued_at")
            .push(Instant::now());
        let mut response = serde_json::json!({"access_token": token, "token_type": "Bearer"});
        if let Some(ttl) = s.announced_ttl {
            response["expires_in"] = ttl.into();
        }
        if let Some(scope) = form.get("scope") {
            response["scope"] = scope.clone().into();
        }
        (200, response.to_string())
    }

    /// The key service: a fresh signing key as `{"key_id", "key" (hex), "expires_in"}`.
    pub fn key(&self, query: Option<&str>) -> (u16, String) {
        self.key_requests.fetch_add(1, Ordering::Relaxed);
        let s = self.settings();
        let client = query.and_then(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .find(|(k, _)| k == "client_id")
                .map(|(_, v)| v.into_owned())
        });
        if client.is_none() {
            return (400, r#"{"error":"client_id missing"}"#.into());
        }
        let n = self.key_requests.load(Ordering::Relaxed);
        let seed = format!(
            "{n}-{:?}",
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)
        );
        let key = Sha256::digest(seed.as_bytes()).to_vec();
        let key_hex = hex(&key);
        let key_id = format!("k{n}");
        self.keys
            .lock()
            .expect("keys")
            .insert(key_id.clone(), (key, Instant::now() + s.key_ttl));
        self.issued.lock().expect("issued").push(key_hex.clone());
        let body = serde_json::json!({"key_id": key_id, "key": key_hex, "expires_in": s.key_ttl.as_secs()});
        (200, body.to_string())
    }

    /// Whether a request to a guarded path may pass; `None` if `path` is not guarded, else the path
    /// without its guard prefix and the verdict.
    pub fn guard<'p>(&self, path: &'p str, request: &Seen<'_>) -> Option<(&'p str, bool)> {
        let s = self.settings();
        let authorization = request.header("authorization");
        let query = request.query;
        let (rest, ok) = if let Some(rest) = path.strip_prefix("/signed") {
            (rest, self.signature_ok(request))
        } else if let Some(rest) = path.strip_prefix("/secure") {
            let ok = authorization
                .and_then(|a| a.strip_prefix("Bearer "))
                .and_then(|t| self.tokens.lock().expect("tokens").get(t).copied())
                .is_some_and(|expiry| Instant::now() < expiry);
            (rest, ok)
        } else if let Some(rest) = path.strip_prefix("/basic") {
            let expected = format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD
                    .encode(format!("{}:{}", s.username, s.password))
            );
            (rest, authorization == Some(expected.as_str()))
        } else if let Some(rest) = path.strip_prefix("/apikey-query") {
            let in_query = query.is_some_and(|q| {
                url::form_urlencoded::parse(q.as_bytes())
                    .any(|(k, v)| k == "api_key" && v == s.api_key)
            });
            (rest, in_query && request.header("x-api-key").is_none())
        } else if let Some(rest) = path.strip_prefix("/apikey") {
            let in_query = query.is_some_and(|q| q.contains("api_key="));
            (
                rest,
                !in_query && request.header("x-api-key") == Some(s.api_key.as_str()),
            )
        } else {
            return None;
        };
        if !ok {
            self.refused.fetch_add(1, Ordering::Relaxed);
        }
        Some((rest, ok))
    }

    fn signature_ok(&self, request: &Seen<'_>) -> bool {
        let (Some(key_id), Some(signature)) =
            (request.header("x-key-id"), request.header("x-signature"))
        else {
            return false;
        };
        let Some((key, expiry)) = self.keys.lock().expect("keys").get(key_id).cloned() else {
            return false;
        };
        let message = format!(
            "{}\n{}\n{}",
            request.method,
            request.target,
            hex(&Sha256::digest(request.body))
        );
        Instant::now() < expiry && hex(&hmac_sha256(&key, message.as_bytes())) == signature
    }
}

/// What a guard looks at in a request.
pub struct Seen<'a> {
    pub method: &'a str,
    /// path?query
    pub target: &'a str,
    pub query: Option<&'a str>,
    pub headers: &'a http::HeaderMap,
    pub body: &'a [u8],
}

impl Seen<'_> {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// HMAC-SHA256 (RFC 2104), the verifier's own implementation.
fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(block.map(|b| b ^ 0x36));
    inner.update(message);
    let mut outer = Sha256::new();
    outer.update(block.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().to_vec()
}
