//! `auth`: the pipeline's credential, added by the host to requests for the endpoint's origin after
//! the middleware chain: a fixed one (basic, bearer, an API key), an OAuth2 token, or an auth plugin.

use std::time::Duration;

use super::keys::{KeySpec, Kind};
use super::middleware::{self, MiddlewareSpec};
use super::probe::Probe;
use super::tree::Value;
use super::walk::{Field, Walker};

/// The `auth` section.
#[derive(Clone, Debug, Default)]
pub enum Auth {
    /// No credential.
    #[default]
    None,
    /// HTTP Basic.
    Basic {
        /// The user.
        username: String,
        /// The password (a secret).
        password: String,
    },
    /// `Authorization: Bearer <token>`.
    Bearer {
        /// The token (a secret).
        token: String,
    },
    /// A fixed key in a header (default `X-API-Key`) or a query parameter.
    ApiKey {
        /// The key (a secret).
        key: String,
        /// The header it goes in.
        header: String,
        /// The query parameter it goes in instead.
        query_param: Option<String>,
    },
    /// An OAuth2 token, fetched and renewed at run time.
    OAuth2(OAuth2Settings),
    /// A component of the `auth` world; its credential is renewed `refresh_margin` before it expires.
    Wasm {
        /// The plugin.
        plugin: MiddlewareSpec,
        /// Renew the credential this long before it expires.
        refresh_margin: Duration,
    },
}

/// An OAuth2 grant's settings.
#[derive(Clone, Debug)]
pub struct OAuth2Settings {
    /// Client credentials or password.
    pub grant: OAuth2Grant,
    /// The token endpoint.
    pub token_url: url::Url,
    /// The client's id.
    pub client_id: String,
    /// The client's secret.
    pub client_secret: String,
    /// The scope asked for.
    pub scope: Option<String>,
    /// Renew the token this long before it expires (at most half its lifetime).
    pub refresh_margin: Duration,
    /// How the client authenticates to the token endpoint.
    pub client_auth: ClientAuth,
}

/// The OAuth2 grant.
#[derive(Clone, Debug)]
pub enum OAuth2Grant {
    /// RFC 6749 §4.4.
    ClientCredentials,
    /// RFC 6749 §4.3.
    Password {
        /// The resource owner.
        username: String,
        /// Their password.
        password: String,
    },
}

/// How the client authenticates to the token endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientAuth {
    /// HTTP Basic first; the form body if the server refuses the client.
    Auto,
    /// HTTP Basic.
    Basic,
    /// `client_id` and `client_secret` in the form body.
    Body,
}

/// The default `refresh_margin`: a minute.
const REFRESH_MARGIN: Duration = Duration::from_secs(60);

/// The longest `refresh_margin` (a day): renewing earlier than that is a typo.
const MAX_REFRESH_MARGIN: f64 = 86_400.0;

const AUTH_TYPES: &[&str] = &[
    "none",
    "basic",
    "bearer",
    "api_key",
    "oauth2_client_credentials",
    "oauth2_password",
    "wasm",
];

/// The keys of `auth` (a `type: wasm` entry takes a custom plugin's keys and `refresh_margin`).
pub(crate) const KEYS: &[KeySpec] = &[
    KeySpec::new("type", Kind::Choice(AUTH_TYPES), "The kind of credential.")
        .default(|| "none".into()),
    KeySpec::new(
        "token",
        Kind::Text,
        "bearer: the token (give it as a secret).",
    ),
    KeySpec::new("username", Kind::Text, "basic, oauth2_password: the user."),
    KeySpec::new(
        "password",
        Kind::Text,
        "basic, oauth2_password: the password (a secret).",
    ),
    KeySpec::new("token_url", Kind::Url, "OAuth2: the token endpoint."),
    KeySpec::new("client_id", Kind::Text, "OAuth2: the client id."),
    KeySpec::new(
        "client_secret",
        Kind::Text,
        "OAuth2: the client secret (a secret).",
    ),
    KeySpec::new("scope", Kind::Text, "OAuth2: the scope asked for."),
    KeySpec::new(
        "refresh_margin",
        Kind::Seconds {
            max: MAX_REFRESH_MARGIN,
        },
        "OAuth2, wasm: renew the credential this many seconds before it expires.",
    )
    .default(|| REFRESH_MARGIN.as_secs().into()),
    KeySpec::new(
        "client_auth",
        Kind::Choice(&["basic", "body"]),
        "OAuth2: how the client authenticates; default: Basic, then the body if refused.",
    ),
    KeySpec::new(
        "require_https",
        Kind::Bool,
        "OAuth2: refuse a plain-http token_url off loopback (default: allowed, with a warning).",
    )
    .default(|| false.into()),
    KeySpec::new("api_key", Kind::Text, "api_key: the key (a secret)."),
    KeySpec::new(
        "header_name",
        Kind::Text,
        "api_key: the header it goes in (default X-API-Key).",
    ),
    KeySpec::new(
        "query_param",
        Kind::Text,
        "api_key: the query parameter it goes in instead of a header.",
    ),
];

/// Reads `auth` (absent: none).
pub(crate) fn read(
    w: &mut Walker,
    entry: Option<Field<'_>>,
    base_dir: &std::path::Path,
    probes: &mut Vec<Probe>,
) -> Option<Auth> {
    let Some(entry) = entry else {
        return Some(Auth::None);
    };
    // A custom auth plugin has the keys of a custom middleware entry, and refresh_margin.
    let is_wasm = matches!(&entry.node.value, Value::Map(entries)
        if entries.iter().any(|(k, v)| k.name == "type" && v.to_json() == "wasm"));
    if is_wasm {
        let margin = match &entry.node.value {
            Value::Map(entries) => entries
                .iter()
                .find(|(k, _)| k.name == "refresh_margin")
                .map(|(k, node)| (format!("auth.{}", k.name), node)),
            _ => None,
        };
        let refresh_margin = margin.and_then(|(path, node)| {
            w.seconds(Some(Field { path: &path, node }), MAX_REFRESH_MARGIN)
        });
        let plugin = middleware::custom_plugin(w, entry, base_dir, probes, &[REFRESH_MARGIN_KEY])?;
        return Some(Auth::Wasm {
            plugin,
            refresh_margin: refresh_margin.unwrap_or(REFRESH_MARGIN),
        });
    }
    let a = w.section(Some(entry), "auth", entry.node.pos, KEYS);
    let kind = w.require(
        &a,
        "type",
        "type (none, basic, bearer, api_key, oauth2_client_credentials, oauth2_password, wasm)",
    );
    kind?;
    let kind = w.choice_of(&a, "type")?;
    let need = |w: &mut Walker, key: &str| {
        let f = w.require(&a, key, &format!("{key} (for auth type {kind})"));
        w.name(f)
    };
    Some(match kind {
        "none" => Auth::None,
        "basic" => Auth::Basic {
            username: need(w, "username")?,
            password: need(w, "password")?,
        },
        "bearer" => {
            let token = need(w, "token")?;
            if let Some(f) = a.get("token") {
                w.header_value(f.path, f.node.pos, &format!("Bearer {token}"));
            }
            Auth::Bearer { token }
        }
        "api_key" => {
            let key = need(w, "api_key");
            let query_param = w.name(a.get("query_param"));
            let header = w.name(a.get("header_name"));
            if let (Some(_), Some(f)) = (&header, a.get("query_param")) {
                w.error(
                    f.path,
                    f.node.pos,
                    "give header_name or query_param, not both",
                );
            }
            if let (Some(h), Some(f)) = (&header, a.get("header_name")) {
                w.header_name(f.path, f.node.pos, h);
            }
            if let (Some(k), None, Some(f)) = (&key, &query_param, a.get("api_key")) {
                w.header_value(f.path, f.node.pos, k);
            }
            Auth::ApiKey {
                key: key?,
                header: header.unwrap_or_else(|| "X-API-Key".into()),
                query_param,
            }
        }
        _ => {
            let token_url = w
                .require(&a, "token_url", "token_url (for OAuth2)")
                .and_then(|f| {
                    let u = super::endpoint::url(w, f)?;
                    let loopback = matches!(u.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"));
                    if u.scheme() != "https" && !loopback {
                        let host = u.host_str().unwrap_or_default();
                        if w.boolean(a.get("require_https")) == Some(true) {
                            w.error(
                                f.path,
                                f.node.pos,
                                format!("plain http to {host}: the client secret would travel in clear text (auth.require_https is set)"),
                            );
                            return None;
                        }
                        // As curl and aiohttp (the legacy framework) do: allowed, said out loud.
                        w.warn(
                            f.path,
                            f.node.pos,
                            format!("plain http to {host}: the client secret and the tokens travel in clear text, readable by anyone on the path; use https, or set auth.require_https: true to refuse this"),
                        );
                    }
                    Some(u)
                });
            let client_id = need(w, "client_id");
            let client_secret = need(w, "client_secret");
            let grant = if kind == "oauth2_password" {
                OAuth2Grant::Password {
                    username: need(w, "username")?,
                    password: need(w, "password")?,
                }
            } else {
                OAuth2Grant::ClientCredentials
            };
            let scope = w.name(a.get("scope"));
            let refresh_margin = w.seconds_of(&a, "refresh_margin").unwrap_or(REFRESH_MARGIN);
            let client_auth = match a.get("client_auth") {
                None => Some(ClientAuth::Auto),
                Some(_) => match w.choice_of(&a, "client_auth")? {
                    "basic" => Some(ClientAuth::Basic),
                    _ => Some(ClientAuth::Body),
                },
            };
            Auth::OAuth2(OAuth2Settings {
                grant,
                token_url: token_url?,
                client_id: client_id?,
                client_secret: client_secret?,
                scope,
                refresh_margin,
                client_auth: client_auth?,
            })
        }
    })
}

/// `refresh_margin` on a `type: wasm` auth entry.
const REFRESH_MARGIN_KEY: KeySpec = KeySpec::new(
    "refresh_margin",
    Kind::Seconds {
        max: MAX_REFRESH_MARGIN,
    },
    "Renew the plugin's credential this many seconds before it expires.",
);

impl Auth {
    /// The header the section's credential goes in, if it is a header the config names
    /// (`authorization`, or an API key's header); a plugin's is not known before it runs.
    pub fn header_name(&self) -> Option<&str> {
        match self {
            Auth::Basic { .. } | Auth::Bearer { .. } | Auth::OAuth2(_) => Some("authorization"),
            Auth::ApiKey {
                header,
                query_param: None,
                ..
            } => Some(header),
            Auth::None | Auth::ApiKey { .. } | Auth::Wasm { .. } => None,
        }
    }

    /// The section's secret values, as configured and as they travel (form- and percent-encoded,
    /// inside a Basic header): an API that echoes a request shows them encoded.
    pub fn secret_forms(&self) -> Vec<String> {
        let (raw, derived) = match self {
            Auth::None | Auth::Wasm { .. } => (vec![], vec![]),
            Auth::Basic { username, password } => (
                vec![password.clone()],
                vec![basic_header(username, password)],
            ),
            Auth::Bearer { token } => (vec![token.clone()], vec![]),
            Auth::ApiKey { key, .. } => (vec![key.clone()], vec![]),
            Auth::OAuth2(s) => {
                let mut raw = vec![s.client_secret.clone()];
                if let OAuth2Grant::Password { password, .. } = &s.grant {
                    raw.push(password.clone());
                }
                (raw, vec![s.basic_client_auth()])
            }
        };
        raw.iter()
            .flat_map(|secret| encodings(secret))
            .chain(derived)
            .collect()
    }
}

impl OAuth2Settings {
    /// `Basic base64(urlencode(client_id):urlencode(client_secret))` (RFC 6749 §2.3.1).
    pub fn basic_client_auth(&self) -> String {
        use base64::Engine;
        let enc = |v: &str| url::form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>();
        let pair = format!("{}:{}", enc(&self.client_id), enc(&self.client_secret));
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(pair)
        )
    }
}

/// The `Authorization` value of HTTP Basic for `username` and `password`.
pub fn basic_header(username: &str, password: &str) -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"))
    )
}

/// A secret and the forms it takes in a URL or a form body.
fn encodings(secret: &str) -> Vec<String> {
    let form: String = url::form_urlencoded::byte_serialize(secret.as_bytes()).collect();
    let percent = form.replace('+', "%20");
    let mut all = vec![secret.to_owned(), form, percent];
    all.dedup();
    all
}

#[cfg(test)]
mod tests {
    use super::super::tests::{errors, load};
    use super::Auth;

    #[test]
    fn each_type_takes_its_keys() {
        assert!(matches!(
            load("auth: {type: api_key, api_key: k, query_param: key}\n").auth,
            Auth::ApiKey {
                query_param: Some(_),
                ..
            }
        ));
        assert_eq!(
            errors("auth: {type: bearer}\n"),
            ["1:7: auth.token: missing required key: token (for auth type bearer)"]
        );
    }

    #[test]
    fn a_credential_that_cannot_be_a_header_is_refused_at_load() {
        let bad = "not a valid HTTP header value (a line break or another control character?)";
        assert_eq!(
            errors("auth: {type: bearer, token: \"t0k\\r\\nX-Evil: 1\"}\n"),
            [format!("1:29: auth.token: {bad}")]
        );
        assert_eq!(
            errors("auth: {type: api_key, api_key: \"k\\ny\"}\n"),
            [format!("1:32: auth.api_key: {bad}")]
        );
        // In the query it is percent-encoded: any text goes.
        assert!(errors("auth: {type: api_key, api_key: \"k\\ny\", query_param: key}\n").is_empty());
        assert_eq!(
            errors("auth: {type: api_key, api_key: k, header_name: \"X Key\"}\n"),
            ["1:48: auth.header_name: not a valid header name"]
        );
    }

    #[test]
    fn plain_http_off_loopback_is_said_out_loud_or_refused() {
        let yaml = "auth: {type: oauth2_client_credentials, token_url: \"http://idp.example.com/t\", client_id: a, client_secret: b}\n";
        assert_eq!(errors(yaml), Vec::<String>::new());
        let warnings: Vec<String> = load(yaml).warnings.iter().map(|w| w.to_string()).collect();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].contains("auth.token_url: plain http to idp.example.com: the client secret and the tokens travel in clear text"),
            "{warnings:?}"
        );
        let e = errors(&yaml.replace(
            "client_secret: b}",
            "client_secret: b, require_https: true}",
        ));
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].contains("auth.token_url: plain http to idp.example.com: the client secret would travel in clear text (auth.require_https is set)"),
            "{e:?}"
        );
    }

    #[test]
    fn secrets_are_known_in_the_forms_they_travel_in() {
        let forms = load("auth: {type: basic, username: u, password: \"p w\"}\n")
            .auth
            .secret_forms();
        assert!(forms.contains(&"p w".to_owned()) && forms.contains(&"p+w".to_owned()));
        assert!(forms.contains(&super::basic_header("u", "p w")));
    }
}
