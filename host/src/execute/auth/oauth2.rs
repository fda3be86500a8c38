//! OAuth2 client credentials and resource owner password grants (RFC 6749 §4.3, §4.4): a form-encoded
//! POST to `token_url`, the client authenticated by an HTTP Basic header or by `client_id` and
//! `client_secret` in the body. Unless the pipeline says which (`client_auth`), Basic is tried first
//! (the method every server must support) and the body method once if the server refuses the client;
//! whichever worked is kept for the rest of the run.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;

use crate::api::{ApiRequest, ApiResponse, RequestError, Sender};
use crate::config::{ClientAuth, OAuth2Grant, OAuth2Settings};
use crate::credential::{AcquireError, CredentialSource, Fresh};

const AUTO: u8 = 0;
const BASIC: u8 = 1;
const BODY: u8 = 2;

pub(crate) struct OAuth2 {
    settings: OAuth2Settings,
    transport: Arc<dyn Sender>,
    /// AUTO until a method has worked, then BASIC or BODY.
    client_auth: AtomicU8,
    what: String,
}

impl OAuth2 {
    pub(crate) fn new(settings: OAuth2Settings, transport: Arc<dyn Sender>) -> Self {
        let grant = match settings.grant {
            OAuth2Grant::ClientCredentials => "oauth2_client_credentials",
            OAuth2Grant::Password { .. } => "oauth2_password",
        };
        let mut shown = settings.token_url.clone();
        let _ = shown.set_username("");
        let _ = shown.set_password(None);
        shown.set_query(None);
        let what = format!("auth ({grant}): token endpoint {shown}");
        let client_auth = match settings.client_auth {
            ClientAuth::Auto => AUTO,
            ClientAuth::Basic => BASIC,
            ClientAuth::Body => BODY,
        };
        OAuth2 {
            settings,
            transport,
            client_auth: AtomicU8::new(client_auth),
            what,
        }
    }

    fn token_request(&self, basic: bool) -> ApiRequest {
        let s = &self.settings;
        let mut form = url::form_urlencoded::Serializer::new(String::new());
        match &s.grant {
            OAuth2Grant::ClientCredentials => {
                form.append_pair("grant_type", "client_credentials");
            }
            OAuth2Grant::Password { username, password } => {
                form.append_pair("grant_type", "password")
                    .append_pair("username", username)
                    .append_pair("password", password);
            }
        }
        if let Some(scope) = &s.scope {
            form.append_pair("scope", scope);
        }
        let mut headers = vec![
            (
                "content-type".to_owned(),
                "application/x-www-form-urlencoded".to_owned(),
            ),
            ("accept".to_owned(), "application/json".to_owned()),
        ];
        if basic {
            headers.push(("authorization".to_owned(), s.basic_client_auth()));
        } else {
            form.append_pair("client_id", &s.client_id)
                .append_pair("client_secret", &s.client_secret);
        }
        ApiRequest {
            method: http::Method::POST,
            url: s.token_url.to_string(),
            headers,
            body: Some(Bytes::from(form.finish())),
            metadata: Default::default(),
        }
    }

    async fn post(&self, basic: bool) -> Result<ApiResponse, String> {
        self.transport
            .send(Arc::new(self.token_request(basic)))
            .await
            .map_err(|e| e.message)
    }

    async fn fetch(&self) -> Result<Fresh, String> {
        let mode = self.client_auth.load(Ordering::Relaxed);
        let mut response = self.post(mode != BODY).await?;
        if mode == AUTO {
            if refused_client(&response) {
                let second = self.post(false).await?;
                if second.is_success() {
                    self.client_auth.store(BODY, Ordering::Relaxed);
                    tracing::info!(
                        "auth: the token endpoint wants the client credentials in the body"
                    );
                }
                response = second;
            } else if response.is_success() {
                self.client_auth.store(BASIC, Ordering::Relaxed);
            }
        }
        parse_token(&response)
    }
}

impl CredentialSource for OAuth2 {
    fn what(&self) -> &str {
        &self.what
    }

    fn acquire(&self) -> BoxFuture<'_, Result<Fresh, AcquireError>> {
        Box::pin(async move { self.fetch().await.map_err(AcquireError) })
    }

    fn apply<'a>(
        &'a self,
        mut request: ApiRequest,
        secret: &'a str,
        _: Option<Duration>,
    ) -> BoxFuture<'a, Result<ApiRequest, RequestError>> {
        request
            .headers
            .retain(|(n, _)| !n.eq_ignore_ascii_case("authorization"));
        request
            .headers
            .push(("authorization".into(), format!("Bearer {secret}")));
        Box::pin(async move { Ok(request) })
    }
}

/// The server refused how the client authenticated (RFC 6749 §5.2: 401, or 400 `invalid_client`).
fn refused_client(response: &ApiResponse) -> bool {
    response.status == 401
        || (response.status == 400
            && serde_json::from_slice::<serde_json::Value>(&response.body)
                .ok()
                .and_then(|v| v.get("error")?.as_str().map(|e| e == "invalid_client"))
                .unwrap_or(false))
}

/// The access token and its lifetime from a token response, or what is wrong with it.
fn parse_token(response: &ApiResponse) -> Result<Fresh, String> {
    let json = serde_json::from_slice::<serde_json::Value>(&response.body).ok();
    if !response.is_success() {
        let detail = json
            .as_ref()
            .and_then(|v| {
                let error = v.get("error")?.as_str()?;
                Some(match v.get("error_description").and_then(|d| d.as_str()) {
                    Some(d) => excerpt(format!("{error}: {d}").as_bytes()),
                    None => excerpt(error.as_bytes()),
                })
            })
            .unwrap_or_else(|| excerpt(&response.body));
        return Err(format!("answered HTTP {}: {detail}", response.status));
    }
    let Some(json) = json else {
        return Err(format!(
            "answered HTTP {} but not with JSON (expected an access_token): {}",
            response.status,
            excerpt(&response.body)
        ));
    };
    let token = json
        .get("access_token")
        .and_then(|t| t.as_str())
        .filter(|t| !t.is_empty())
        .ok_or("answered without an access_token")?;
    let expires_in = match json.get("expires_in") {
        None | Some(serde_json::Value::Null) => None,
        Some(v) => {
            let seconds = v
                .as_f64()
                .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
                .filter(|s: &f64| s.is_finite() && *s >= 0.0)
                .ok_or_else(|| format!("answered an expires_in that is not a number: {v}"))?;
            // Beyond what a Duration holds: as good as no expiry.
            Duration::try_from_secs_f64(seconds).ok()
        }
    };
    Ok(Fresh {
        secret: token.to_owned(),
        expires_in,
    })
}

/// The start of a body, on one line, for an error message.
fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match line.char_indices().nth(120) {
        Some((at, _)) => format!("{}...", &line[..at]),
        None if line.is_empty() => "(empty body)".into(),
        None => line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(status: u16, body: &str) -> ApiResponse {
        ApiResponse {
            status,
            headers: vec![],
            body: Bytes::from(body.to_owned()),
            metadata: Default::default(),
        }
    }

    #[test]
    fn token_responses_are_read_or_explained() {
        let ok = parse_token(&response(
            200,
            r#"{"access_token":"t1","token_type":"Bearer","expires_in":"2"}"#,
        ))
        .unwrap();
        assert_eq!(ok.secret, "t1");
        assert_eq!(ok.expires_in, Some(Duration::from_secs(2)));
        let forever = parse_token(&response(200, r#"{"access_token":"t2"}"#)).unwrap();
        assert_eq!(forever.expires_in, None);
        let err = |s, b| parse_token(&response(s, b)).err().unwrap();
        assert_eq!(
            err(200, "<html>oops</html>"),
            "answered HTTP 200 but not with JSON (expected an access_token): <html>oops</html>"
        );
        assert_eq!(
            err(200, r#"{"token":"x"}"#),
            "answered without an access_token"
        );
        assert_eq!(
            err(
                401,
                r#"{"error":"invalid_client","error_description":"bad secret"}"#
            ),
            "answered HTTP 401: invalid_client: bad secret"
        );
        assert_eq!(err(503, ""), "answered HTTP 503: (empty body)");
        assert!(refused_client(&response(
            400,
            r#"{"error":"invalid_client"}"#
        )));
        assert!(!refused_client(&response(
            400,
            r#"{"error":"invalid_grant"}"#
        )));
    }
}
