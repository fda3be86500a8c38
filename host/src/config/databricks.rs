//! `{{secret.SCOPE:KEY}}` from a Databricks workspace's secrets API (`GET /api/2.0/secrets/get`,
//! the call behind `dbutils.secrets.get`), for pipelines that ran on Databricks. Used only when
//! `DATABRICKS_HOST` and `DATABRICKS_TOKEN` are set and neither the secrets file nor the environment
//! has the secret. The token is never printed; an answer's body is never quoted (it could hold the
//! value).

use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// How long one lookup may take.
const TIMEOUT: Duration = Duration::from_secs(30);

/// The value of `scope`/`key` in the workspace at `host` (`https://adb-....azuredatabricks.net`,
/// or a bare host name), or why it could not be read.
pub(crate) fn secret(host: &str, token: &str, scope: &str, key: &str) -> Result<String, String> {
    let base = if host.contains("://") {
        host.trim_end_matches('/').to_owned()
    } else {
        format!("https://{}", host.trim_end_matches('/'))
    };
    let mut url = url::Url::parse(&format!("{base}/api/2.0/secrets/get"))
        .map_err(|e| format!("DATABRICKS_HOST is not a URL: {e}"))?;
    url.query_pairs_mut()
        .append_pair("scope", scope)
        .append_pair("key", key);
    let shown = format!("{}://{}", url.scheme(), url.host_str().unwrap_or_default());
    let (host_text, token) = (url.to_string(), token.to_owned());
    // Config loading is synchronous and may already run inside a runtime: a thread of its own.
    let fetched = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        rt.block_on(async move {
            let https = hyper_rustls::HttpsConnectorBuilder::new()
                .with_native_roots()
                .map_err(|e| e.to_string())?
                .https_or_http()
                .enable_http1()
                .build();
            let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build(https);
            let request = http::Request::get(host_text)
                .header("authorization", format!("Bearer {token}"))
                .header("accept", "application/json")
                .body(Full::new(Bytes::new()))
                .map_err(|e| e.to_string())?;
            let response = tokio::time::timeout(TIMEOUT, client.request(request))
                .await
                .map_err(|_| format!("no answer within {}s", TIMEOUT.as_secs()))?
                .map_err(|e| format!("cannot reach it: {e}"))?;
            let status = response.status();
            let body = tokio::time::timeout(TIMEOUT, response.into_body().collect())
                .await
                .map_err(|_| "the answer did not finish in time".to_owned())?
                .map_err(|e| e.to_string())?
                .to_bytes();
            Ok::<_, String>((status, body))
        })
    })
    .join()
    .map_err(|_| "the lookup thread failed".to_owned())?
    .map_err(|e| format!("Databricks secrets API at {shown}: {e}"))?;
    let (status, body) = fetched;
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    if !status.is_success() {
        // Databricks answers {"error_code": "RESOURCE_DOES_NOT_EXIST", "message": ...}.
        let code = json["error_code"].as_str().unwrap_or("");
        return Err(format!(
            "Databricks secrets API at {shown} answered {status}{}",
            if code.is_empty() {
                String::new()
            } else {
                format!(" {code}")
            }
        ));
    }
    let encoded = json["value"]
        .as_str()
        .ok_or_else(|| format!("Databricks secrets API at {shown} answered without a value"))?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|_| format!("Databricks secrets API at {shown}: the value is not base64"))?;
    String::from_utf8(bytes)
        .map_err(|_| format!("Databricks secrets API at {shown}: the value is not UTF-8 text"))
}
