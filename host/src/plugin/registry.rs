//! Plugins in an OCI registry: `oci://host[:port]/ns/name:tag@sha256:<digest>`.
//!
//! A plugin is pushed in the CNCF Wasm artifact layout (config `application/vnd.wasm.config.v0+json`,
//! one layer `application/wasm`: the component's bytes). Its minisign signature, when it has one, is
//! pushed beside it as its own small artifact under the tag `sha256-<manifest hex>.sig` (a
//! registry without the referrers API, such as the CNCF distribution registry, still serves it).
//!
//! A pull verifies what it fetched with sha256 itself: the manifest against the pinned digest, the
//! layer against the manifest. What it pulled is cached by manifest digest
//! (`~/.cache/sparkwasm/plugins`, or `SPARKWASM_PLUGIN_CACHE`), so a pinned plugin needs no registry
//! once fetched; cached bytes are checked again on every use.
//!
//! Registries are reached over https. Plain http only for registries listed in
//! `SPARKWASM_PLAIN_HTTP_REGISTRIES` (`host:port,...`; as Docker's insecure-registries), and only on
//! loopback. Extra CA: `SPARKWASM_REGISTRY_CA_FILE` (PEM). Credentials: `SPARKWASM_REGISTRY_USERNAME`
//! / `SPARKWASM_REGISTRY_PASSWORD`, else the registry's entry in the Docker config
//! (`$DOCKER_CONFIG/config.json` or `~/.docker/config.json`, `auths.<host>.auth`), else anonymous.
//! Credentials are never logged or printed.

use std::path::{Path, PathBuf};

use oci_client::client::{ClientConfig, ClientProtocol, Config, ImageLayer};
use oci_client::manifest::{OCI_IMAGE_MEDIA_TYPE, OciImageManifest};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use sha2::{Digest, Sha256};

/// The component layer's media type (CNCF Wasm OCI artifact).
pub const WASM_LAYER: &str = "application/wasm";
/// The config's media type (CNCF Wasm OCI artifact).
pub const WASM_CONFIG: &str = "application/vnd.wasm.config.v0+json";
/// The signature artifact's layer: a `.minisig` file.
pub const SIGNATURE_LAYER: &str = "application/vnd.sparkwasm.minisig";
/// The signature artifact's config.
pub const SIGNATURE_CONFIG: &str = "application/vnd.sparkwasm.signature.config.v1+json";

/// A plugin fetched from a registry (or the cache).
#[derive(Debug)]
pub struct Pulled {
    /// The reference, resolved: `host/ns/name:tag@sha256:...`.
    pub resolved: String,
    /// The manifest's digest, `sha256:<hex>`.
    pub digest: String,
    /// The component's bytes.
    pub component: Vec<u8>,
    /// Its minisign signature, if one was pushed beside it.
    pub signature: Option<String>,
    /// Read from the cache (no registry contacted).
    pub from_cache: bool,
}

/// Parses `oci://...` (or a bare reference) into a registry reference.
pub fn parse(reference: &str) -> Result<Reference, String> {
    let bare = reference.strip_prefix("oci://").unwrap_or(reference);
    bare.parse::<Reference>()
        .map_err(|e| format!("`{reference}` is not an OCI reference: {e}"))
}

fn is_loopback(registry: &str) -> bool {
    let host = registry
        .rsplit_once(':')
        .filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()))
        .map_or(registry, |(h, _)| h);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// A registry client, configured from the environment.
fn client() -> Result<Client, String> {
    let plain: Vec<String> = std::env::var("SPARKWASM_PLAIN_HTTP_REGISTRIES")
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    if let Some(off) = plain.iter().find(|r| !is_loopback(r)) {
        return Err(format!(
            "SPARKWASM_PLAIN_HTTP_REGISTRIES lists {off}: plain http is allowed for loopback registries only"
        ));
    }
    let mut config = ClientConfig {
        protocol: if plain.is_empty() {
            ClientProtocol::Https
        } else {
            ClientProtocol::HttpsExcept(plain)
        },
        ..Default::default()
    };
    if let Some(ca) = std::env::var_os("SPARKWASM_REGISTRY_CA_FILE") {
        let data = std::fs::read(&ca).map_err(|e| {
            format!(
                "SPARKWASM_REGISTRY_CA_FILE {}: {e}",
                Path::new(&ca).display()
            )
        })?;
        config
            .extra_root_certificates
            .push(oci_client::client::Certificate {
                encoding: oci_client::client::CertificateEncoding::Pem,
                data,
            });
    }
    Ok(Client::new(config))
}

/// The credentials for `registry`: the environment's (only for the registry
/// `SPARKWASM_REGISTRY_HOST` names: credentials never go to a registry they are not for), else the
/// registry's own entry in the Docker config, else none.
fn auth(registry: &str) -> Result<RegistryAuth, String> {
    if let (Ok(user), Ok(password)) = (
        std::env::var("SPARKWASM_REGISTRY_USERNAME"),
        std::env::var("SPARKWASM_REGISTRY_PASSWORD"),
    ) {
        match std::env::var("SPARKWASM_REGISTRY_HOST") {
            Ok(host) if host.trim().eq_ignore_ascii_case(registry) => {
                return Ok(RegistryAuth::Basic(user, password));
            }
            Ok(_) => {}
            Err(_) => {
                return Err(
                    "SPARKWASM_REGISTRY_USERNAME/PASSWORD are set without SPARKWASM_REGISTRY_HOST: name the registry (host:port) they are for"
                        .into(),
                );
            }
        }
    }
    let config = std::env::var_os("DOCKER_CONFIG")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker")))
        .map(|d| d.join("config.json"));
    let entry = config
        .and_then(|p| std::fs::read(p).ok())
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| {
            v.get("auths")?
                .get(registry)?
                .get("auth")?
                .as_str()
                .map(str::to_owned)
        })
        .and_then(|a| base64::Engine::decode(&base64::engine::general_purpose::STANDARD, a).ok())
        .and_then(|raw| String::from_utf8(raw).ok());
    Ok(match entry.as_deref().and_then(|s| s.split_once(':')) {
        Some((user, password)) => RegistryAuth::Basic(user.to_owned(), password.to_owned()),
        None => RegistryAuth::Anonymous,
    })
}

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(bytes))
}

/// Files the cache holds are at most this big (a component is far smaller).
const CACHE_FILE_LIMIT: u64 = 256 << 20;

/// The cache directory, created private (0700) and refused when another user owns it or others
/// may write to it: whoever writes the cache chooses what a pinned plugin's signature file says
/// (its bytes are checked again on every use; its signature is held to the trust policy).
fn private_cache_dir() -> Result<PathBuf, String> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
    let dir = cache_dir();
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(|e| format!("cannot create the plugin cache {}: {e}", dir.display()))?;
    let meta = std::fs::symlink_metadata(&dir)
        .map_err(|e| format!("the plugin cache {}: {e}", dir.display()))?;
    let me = std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(u32::MAX);
    if !meta.is_dir() || meta.uid() != me || meta.permissions().mode() & 0o022 != 0 {
        return Err(format!(
            "the plugin cache {} must be a directory of this user that others cannot write",
            dir.display()
        ));
    }
    Ok(dir)
}

/// Reads a cache file: a regular file (never through a symlink), at most [`CACHE_FILE_LIMIT`].
fn read_cached(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)?;
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    let mut out = Vec::new();
    file.take(CACHE_FILE_LIMIT + 1).read_to_end(&mut out)?;
    if out.len() as u64 > CACHE_FILE_LIMIT {
        return Err(std::io::Error::other("larger than a plugin can be"));
    }
    Ok(out)
}

/// Writes a cache file whole or not at all: a new file of its own (never following a link that
/// someone left there), then renamed over the name.
fn write_cached(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, dir.join(name))
}

/// Where pulled plugins are kept, by manifest digest.
pub fn cache_dir() -> PathBuf {
    std::env::var_os("SPARKWASM_PLUGIN_CACHE")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/sparkwasm/plugins"))
        })
        .unwrap_or_else(|| PathBuf::from(".sparkwasm-plugins"))
}

fn cached(digest: &str) -> Result<PathBuf, String> {
    Ok(private_cache_dir()?.join(digest.replace(':', "/")))
}

/// The layer of a wasm artifact's manifest that holds the component.
fn component_layer(
    manifest: &OciImageManifest,
) -> Result<&oci_client::manifest::OciDescriptor, String> {
    manifest
        .layers
        .iter()
        .find(|l| {
            l.media_type == WASM_LAYER
                || l.media_type == oci_client::manifest::WASM_LAYER_MEDIA_TYPE
        })
        .ok_or_else(|| {
            format!(
                "is not a Wasm artifact: no layer of type {WASM_LAYER} (found {})",
                manifest
                    .layers
                    .iter()
                    .map(|l| l.media_type.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
}

/// Reads a cached pull of `digest`, checking the component against the cached manifest.
fn from_cache(reference: &Reference, digest: &str) -> Option<Result<Pulled, String>> {
    let dir = match cached(digest) {
        Ok(d) => d,
        Err(e) => return Some(Err(e)),
    };
    let manifest = read_cached(&dir.join("manifest.json")).ok()?;
    Some((|| {
        if sha256(&manifest) != digest {
            return Err(format!(
                "the cached manifest {} does not match its digest: remove it and pull again",
                dir.display()
            ));
        }
        let parsed: OciImageManifest = serde_json::from_slice(&manifest)
            .map_err(|e| format!("the cached manifest {}: {e}", dir.display()))?;
        let layer = component_layer(&parsed)?;
        let component = read_cached(&dir.join("plugin.wasm"))
            .map_err(|e| format!("the cache {}: {e}", dir.display()))?;
        if sha256(&component) != layer.digest {
            return Err(format!(
                "the cached component in {} does not match its manifest: remove it and pull again",
                dir.display()
            ));
        }
        Ok(Pulled {
            resolved: resolved(reference, digest),
            digest: digest.to_owned(),
            component,
            signature: read_cached(&dir.join("plugin.wasm.minisig"))
                .ok()
                .and_then(|b| String::from_utf8(b).ok()),
            from_cache: true,
        })
    })())
}

fn resolved(reference: &Reference, digest: &str) -> String {
    let tag = reference.tag().map(|t| format!(":{t}")).unwrap_or_default();
    format!(
        "{}/{}{tag}@{digest}",
        reference.registry(),
        reference.repository()
    )
}

/// Fetches the plugin `reference` names. A pinned reference (`@sha256:`) is served from the cache
/// when there; otherwise the registry is asked, and what it returns is checked and cached.
/// Unpinned references resolve the tag as it is now.
pub async fn pull(reference: &str) -> Result<Pulled, String> {
    let r = parse(reference)?;
    if let Some(digest) = r.digest()
        && let Some(hit) = from_cache(&r, digest)
    {
        return hit;
    }
    let client = client()?;
    let auth = auth(r.registry())?;
    let (raw, _) = client
        .pull_manifest_raw(&r, &auth, &[OCI_IMAGE_MEDIA_TYPE])
        .await
        .map_err(|e| format!("cannot fetch its manifest from {}: {e}", r.registry()))?;
    let digest = sha256(&raw);
    if let Some(pinned) = r.digest()
        && pinned != digest
    {
        return Err(format!(
            "the registry served a manifest with digest {digest}, not the pinned {pinned}"
        ));
    }
    let manifest: OciImageManifest =
        serde_json::from_slice(&raw).map_err(|e| format!("its manifest: {e}"))?;
    let layer = component_layer(&manifest)?;
    let mut component = Vec::new();
    client
        .pull_blob(&r, layer, &mut component)
        .await
        .map_err(|e| format!("cannot fetch its component: {e}"))?;
    if sha256(&component) != layer.digest {
        return Err(format!(
            "the component served does not match its manifest's digest {}",
            layer.digest
        ));
    }
    let signature = pull_signature(&client, &auth, &r, &digest).await?;
    let dir = cached(&digest)?;
    let stored = std::fs::create_dir_all(&dir)
        .and_then(|()| write_cached(&dir, "plugin.wasm", &component))
        .and_then(|()| match &signature {
            Some(s) => write_cached(&dir, "plugin.wasm.minisig", s.as_bytes()),
            None => Ok(()),
        })
        // The manifest last: an entry is complete when its manifest is there.
        .and_then(|()| write_cached(&dir, "manifest.json", &raw));
    if let Err(e) = stored {
        tracing::warn!("cannot cache the plugin in {}: {e}", dir.display());
    }
    Ok(Pulled {
        resolved: resolved(&r, &digest),
        digest,
        component,
        signature,
        from_cache: false,
    })
}

/// The tag a signature of the artifact `digest` is pushed under: `sha256-<hex>.sig`.
pub(crate) fn signature_tag(digest: &str) -> String {
    format!("{}.sig", digest.replace(':', "-"))
}

/// Where the signature of the artifact `digest` in `r`'s repository is pushed.
fn signature_ref(r: &Reference, digest: &str) -> Reference {
    Reference::with_tag(
        r.registry().to_owned(),
        r.repository().to_owned(),
        signature_tag(digest),
    )
}

async fn pull_signature(
    client: &Client,
    auth: &RegistryAuth,
    r: &Reference,
    digest: &str,
) -> Result<Option<String>, String> {
    let sig_ref = signature_ref(r, digest);
    let raw = match client
        .pull_manifest_raw(&sig_ref, auth, &[OCI_IMAGE_MEDIA_TYPE])
        .await
    {
        Ok((raw, _)) => raw,
        // Unsigned: the registry has no such tag.
        Err(oci_client::errors::OciDistributionError::ImageManifestNotFoundError(_)) => {
            return Ok(None);
        }
        Err(oci_client::errors::OciDistributionError::RegistryError { envelope, .. })
            if envelope
                .errors
                .iter()
                .any(|e| format!("{:?}", e.code).contains("ManifestUnknown")) =>
        {
            return Ok(None);
        }
        Err(e) => return Err(format!("cannot fetch its signature: {e}")),
    };
    let manifest: OciImageManifest =
        serde_json::from_slice(&raw).map_err(|e| format!("its signature's manifest: {e}"))?;
    let Some(layer) = manifest
        .layers
        .iter()
        .find(|l| l.media_type == SIGNATURE_LAYER)
    else {
        return Err(format!(
            "the tag {} is not a sparkwasm signature",
            signature_tag(digest)
        ));
    };
    let mut body = Vec::new();
    client
        .pull_blob(&sig_ref, layer, &mut body)
        .await
        .map_err(|e| format!("cannot fetch its signature: {e}"))?;
    if sha256(&body) != layer.digest {
        return Err("its signature does not match its manifest's digest".into());
    }
    let text = String::from_utf8(body).map_err(|_| "its signature is not text".to_string())?;
    super::trust::well_formed(&text).map_err(|e| format!("its signature: {e}"))?;
    Ok(Some(text))
}

/// Pushes `component` (and its `signature`) to `reference`; returns the reference pinned by digest.
pub async fn push(
    reference: &str,
    component: &[u8],
    signature: Option<&str>,
    anatomy: &super::manifest::Anatomy,
) -> Result<String, String> {
    let r = parse(reference)?;
    if r.digest().is_some() {
        return Err(format!(
            "`{reference}`: push to a tag (the registry computes the digest)"
        ));
    }
    let client = client()?;
    let auth = auth(r.registry())?;
    let layer = ImageLayer::new(component.to_vec(), WASM_LAYER.to_owned(), None);
    // The CNCF Wasm artifact config: what the component is, for tools that read it.
    let config = serde_json::json!({
        "architecture": "wasm",
        "os": "wasip2",
        "layerDigests": [sha256(component)],
        "component": {"exports": anatomy.exports, "imports": anatomy.imports},
    });
    let config = Config::new(
        serde_json::to_vec(&config).map_err(|e| e.to_string())?,
        WASM_CONFIG.to_owned(),
        None,
    );
    let manifest = OciImageManifest::build(std::slice::from_ref(&layer), &config, None);
    let raw = serde_json::to_vec(&manifest).map_err(|e| e.to_string())?;
    let digest = sha256(&raw);
    let fail = |e: oci_client::errors::OciDistributionError| {
        format!("cannot push to {}: {e}", r.registry())
    };
    client.store_auth_if_needed(r.registry(), &auth).await;
    client
        .push_blob(&r, layer.data.clone(), &manifest.layers[0].digest)
        .await
        .map_err(fail)?;
    client
        .push_blob(&r, config.data.clone(), &manifest.config.digest)
        .await
        .map_err(fail)?;
    // The manifest as these bytes: its digest is theirs, whatever the registry answers.
    client
        .push_manifest_raw(
            &r,
            raw.clone(),
            http::HeaderValue::from_static(OCI_IMAGE_MEDIA_TYPE),
        )
        .await
        .map_err(fail)?;
    // Read back: a registry that serves other bytes under the tag is caught here.
    let (served, _) = client
        .pull_manifest_raw(&r, &auth, &[OCI_IMAGE_MEDIA_TYPE])
        .await
        .map_err(|e| format!("pushed, but cannot read the manifest back: {e}"))?;
    if sha256(&served) != digest {
        return Err(format!(
            "pushed manifest {digest}, but the registry serves {} under the tag: not signing that",
            sha256(&served)
        ));
    }
    if let Some(sig) = signature {
        let sig_ref = signature_ref(&r, &digest);
        let layer = ImageLayer::new(sig.as_bytes().to_vec(), SIGNATURE_LAYER.to_owned(), None);
        let config = Config::new(b"{}".to_vec(), SIGNATURE_CONFIG.to_owned(), None);
        client
            .push(&sig_ref, &[layer], config, &auth, None)
            .await
            .map_err(|e| format!("pushed the plugin, but not its signature: {e}"))?;
    }
    Ok(format!("oci://{}", resolved(&r, &digest)))
}
