//! `auth-hmac`: an example auth plugin (world `sparkwasm:plugin/auth`, wit/plugin.wit).
//!
//! `acquire` asks a key service for a short-lived signing key, through the host's `outbound.fetch`
//! (which reaches only the hosts in the pipeline's `grants.outbound_hosts`); the host caches the key,
//! shares it between every worker and asks again before it expires or after a 401. `apply` signs each
//! request: `X-Key-Id` and `X-Signature = hex(HMAC-SHA256(key, METHOD \n path?query \n sha256hex(body)))`.
//!
//! ```yaml
//! auth:
//!   type: wasm
//!   name: signer
//!   path: auth_hmac.wasm
//!   sha256: "..."
//!   config: {key_url: "https://keys.example.com/keys", client_id: "etl"}
//!   grants: {outbound_hosts: ["keys.example.com:443"]}
//! ```

wit_bindgen::generate!({ world: "auth", path: "../../wit" });

use exports::sparkwasm::plugin::authenticator::{Credential, Guest};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use sparkwasm::plugin::host;
use sparkwasm::plugin::outbound::fetch;
use sparkwasm::plugin::types::{Error, ErrorKind, Request};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    /// The key service: `GET key_url?client_id=...` answers `{"key_id", "key", "expires_in"}`.
    key_url: String,
    client_id: String,
}

/// The key service's answer.
#[derive(Deserialize)]
struct Key {
    key_id: String,
    /// Hex.
    key: String,
    expires_in: Option<u64>,
}

fn config() -> Result<Config, String> {
    serde_json::from_str(&host::config()).map_err(|e| format!("bad config: {e}"))
}

fn fail(message: impl Into<String>) -> Error {
    Error {
        kind: ErrorKind::Rejected,
        message: message.into(),
    }
}

struct Hmac;

impl Guest for Hmac {
    fn init() -> Result<(), String> {
        let c = config()?;
        if !c.key_url.starts_with("http://") && !c.key_url.starts_with("https://") {
            return Err(format!(
                "key_url must be an http(s) URL, got `{}`",
                c.key_url
            ));
        }
        Ok(())
    }

    fn acquire() -> Result<Credential, Error> {
        let c = config().map_err(fail)?;
        let sep = if c.key_url.contains('?') { '&' } else { '?' };
        let response = fetch(&Request {
            method: "GET".into(),
            url: format!("{}{sep}client_id={}", c.key_url, c.client_id),
            headers: vec![("accept".into(), "application/json".into())],
            body: None,
            metadata: vec![],
        })?;
        if response.status != 200 {
            return Err(fail(format!(
                "key service answered HTTP {}",
                response.status
            )));
        }
        let key: Key = serde_json::from_slice(&response.body).map_err(|e| {
            fail(format!(
                "key service answered something else than a key: {e}"
            ))
        })?;
        if hex_decode(&key.key).is_none() {
            return Err(fail("key service answered a key that is not hex"));
        }
        host::log(
            host::Level::Info,
            &format!("signing key {} acquired", key.key_id),
        );
        Ok(Credential {
            secret: format!("{}:{}", key.key_id, key.key),
            expires_in: key.expires_in,
        })
    }

    fn apply(mut request: Request, credential: Credential) -> Result<Request, Error> {
        let (key_id, key) = credential
            .secret
            .split_once(':')
            .ok_or_else(|| fail("malformed credential"))?;
        let key = hex_decode(key).ok_or_else(|| fail("malformed credential"))?;
        let target = path_and_query(&request.url);
        let body_hash = hex(&Sha256::digest(request.body.as_deref().unwrap_or_default()));
        let message = format!("{}\n{target}\n{body_hash}", request.method);
        let signature = hex(&hmac_sha256(&key, message.as_bytes()));
        request.headers.retain(|(k, _)| {
            !k.eq_ignore_ascii_case("x-key-id") && !k.eq_ignore_ascii_case("x-signature")
        });
        request.headers.push(("x-key-id".into(), key_id.into()));
        request.headers.push(("x-signature".into(), signature));
        Ok(request)
    }
}

export!(Hmac);

/// `/path?query` of an absolute URL.
fn path_and_query(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.find('/').map_or("/", |i| &rest[i..])
}

/// HMAC (RFC 2104) over SHA-256.
fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.map(|b| b ^ byte);
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .into()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn hex_decode(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || s.is_empty() {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}
