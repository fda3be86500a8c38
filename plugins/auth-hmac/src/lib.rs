//! `auth-hmac`: an example auth plugin (world `sparkwasm:plugin/auth@1.0.0`, wit/plugin.wit).
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

use serde::Deserialize;
use sha2::{Digest, Sha256};
use sparkwasm_plugin::{Auth, Credential, Error, ErrorKind, Level, Request, fetch, log};

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

fn fail(message: impl Into<String>) -> Error {
    Error {
        kind: ErrorKind::Rejected,
        message: message.into(),
    }
}

struct Hmac(Config);

impl Auth for Hmac {
    type Config = Config;

    fn new(config: Config) -> Result<Self, String> {
        if !config.key_url.starts_with("http://") && !config.key_url.starts_with("https://") {
            return Err(format!(
                "key_url must be an http(s) URL, got `{}`",
                config.key_url
            ));
        }
        Ok(Hmac(config))
    }

    fn acquire(&self) -> Result<Credential, Error> {
        let c = &self.0;
        let sep = if c.key_url.contains('?') { '&' } else { '?' };
        let request = Request::new(
            "GET",
            &format!("{}{sep}client_id={}", c.key_url, c.client_id),
        );
        request.set_header("accept", "application/json");
        let response = fetch(&request)?;
        if response.status() != 200 {
            return Err(fail(format!(
                "key service answered HTTP {}",
                response.status()
            )));
        }
        let key: Key = serde_json::from_slice(&response.body()).map_err(|e| {
            fail(format!(
                "key service answered something else than a key: {e}"
            ))
        })?;
        if hex_decode(&key.key).is_none() {
            return Err(fail("key service answered a key that is not hex"));
        }
        log(Level::Info, &format!("signing key {} acquired", key.key_id));
        Ok(Credential {
            secret: format!("{}:{}", key.key_id, key.key),
            expires_in: key.expires_in,
        })
    }

    fn apply(&self, request: &Request, credential: Credential) -> Result<(), Error> {
        let (key_id, key) = credential
            .secret
            .split_once(':')
            .ok_or_else(|| fail("malformed credential"))?;
        let key = hex_decode(key).ok_or_else(|| fail("malformed credential"))?;
        let url = request.url();
        let target = path_and_query(&url);
        let body_hash = hex(&Sha256::digest(request.body().unwrap_or_default()));
        let message = format!("{}\n{target}\n{body_hash}", request.method());
        let signature = hex(&hmac_sha256(&key, message.as_bytes()));
        request.set_header("x-key-id", key_id);
        request.set_header("x-signature", &signature);
        Ok(())
    }
}

sparkwasm_plugin::export_auth!(Hmac);

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
