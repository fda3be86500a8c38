//! Where tables and files live: a local path, or an object-store URL (`s3://`, `s3a://`, `az://`,
//! `abfss://`, `gs://`, ...) with its storage options.
//!
//! The clients are `object_store`'s own (the crate and version delta-rs uses; its AWS, Azure and GCP
//! code is already in the build through delta-rs's kernel), registered with delta-rs for each scheme
//! ([`register_schemes`]) — not delta-rs's `s3` feature, which would pull the AWS SDK. Delta commits on
//! S3 use a conditional put (`If-None-Match: *`), which AWS S3 and most compatible stores honour, so
//! no lock service is needed.
//!
//! Options come from the pipeline (`storage_options`) over the standard environment variables
//! (`AWS_*`, `AZURE_*`, `GOOGLE_*`) and the credential chains `object_store` implements (instance and
//! web-identity credentials, Azure managed identity and CLI, GCP application default credentials).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Once};

use deltalake::logstore::{
    LogStore, LogStoreFactory, ObjectStoreFactory, ObjectStoreRef, StorageConfig,
};
use deltalake::{DeltaResult, DeltaTableError};
use object_store::ObjectStore;
use object_store::path::Path as StorePath;
use url::Url;

mod read;
pub use read::{BLOCK, Batches, ParquetFile, READ_ROWS, ReadSeek};

/// The object stores this build reaches, by URL scheme.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cloud {
    /// Amazon S3 and S3-compatible stores.
    S3,
    /// Azure Blob Storage and ADLS Gen2.
    Azure,
    /// Google Cloud Storage.
    Gcs,
}

/// Each scheme and its store.
pub const SCHEMES: &[(&str, Cloud)] = &[
    ("s3", Cloud::S3),
    ("s3a", Cloud::S3),
    ("az", Cloud::Azure),
    ("azure", Cloud::Azure),
    ("adl", Cloud::Azure),
    ("abfs", Cloud::Azure),
    ("abfss", Cloud::Azure),
    ("gs", Cloud::Gcs),
];

impl Cloud {
    /// The store a URL scheme names.
    pub fn of_scheme(scheme: &str) -> Option<Cloud> {
        SCHEMES.iter().find(|(s, _)| *s == scheme).map(|(_, c)| *c)
    }

    /// Whether `key` is one of this store's options (as `object_store` names them, with or without
    /// the `aws_` / `azure_` / `google_` prefix, or a client option such as `allow_http`, `timeout`),
    /// or, on S3, one of delta-rs's DynamoDB locking options ([`LOCKING_OPTIONS`]).
    pub fn knows_option(self, key: &str) -> bool {
        if self == Cloud::S3 && is_locking_option(key) {
            return true;
        }
        use object_store::aws::AmazonS3ConfigKey;
        use object_store::azure::AzureConfigKey;
        use object_store::gcp::GoogleConfigKey;
        let key = key.to_ascii_lowercase();
        match self {
            Cloud::S3 => key.parse::<AmazonS3ConfigKey>().is_ok(),
            Cloud::Azure => key.parse::<AzureConfigKey>().is_ok(),
            Cloud::Gcs => key.parse::<GoogleConfigKey>().is_ok(),
        }
    }
}

/// delta-rs's options of the DynamoDB locking provider for S3 (`AWS_S3_LOCKING_PROVIDER: dynamodb`),
/// the `*_DYNAMODB` variants of the AWS settings for the lock table's client, and
/// `AWS_S3_ALLOW_UNSAFE_RENAME` (delta-rs's way of saying a table has one writer at a time).
pub const LOCKING_OPTIONS: &[&str] = &[
    "aws_s3_locking_provider",
    "aws_s3_allow_unsafe_rename",
    "delta_dynamo_table_name",
    "delta_dynamo_billing_mode",
    "delta_dynamo_max_elapsed_request_time",
    "aws_endpoint_url_dynamodb",
    "aws_region_dynamodb",
    "aws_access_key_id_dynamodb",
    "aws_secret_access_key_dynamodb",
    "aws_session_token_dynamodb",
];

/// Whether `key` is one of [`LOCKING_OPTIONS`].
pub fn is_locking_option(key: &str) -> bool {
    LOCKING_OPTIONS.contains(&key.to_ascii_lowercase().as_str())
}

/// Whether the options (or the environment) ask for the DynamoDB locking provider.
pub fn wants_dynamodb(options: &HashMap<String, String>) -> bool {
    delta_option(options, "AWS_S3_LOCKING_PROVIDER")
        .is_some_and(|v| v.eq_ignore_ascii_case("dynamodb"))
}

/// Whether the options (or the environment) say, as delta-rs has users say it, that the table has
/// one writer at a time (`AWS_S3_ALLOW_UNSAFE_RENAME: true`).
pub fn declares_single_writer(options: &HashMap<String, String>) -> bool {
    delta_option(options, "AWS_S3_ALLOW_UNSAFE_RENAME")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

/// One of delta-rs's S3 options ([`LOCKING_OPTIONS`]): from the options (any case), else from the
/// environment variable of that name, as delta-rs reads it.
fn delta_option(options: &HashMap<String, String>, name: &str) -> Option<String> {
    options
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.clone())
        .or_else(|| std::env::var(name).ok())
}

/// Whether this build has the DynamoDB locking provider (`--features dynamodb`).
pub const HAS_DYNAMODB: bool = cfg!(feature = "dynamodb");

/// Whether an option's value is a secret (kept out of every output, like `{{secret...}}` values):
/// names with `secret`, `token`, `password`, `sas`, `credential`, or ending in `_key` / `key_base64`
/// (`account_key`, `master_key`, `service_account_key`, `sse_customer_key_base64`), but not a key id.
pub fn is_secret_option(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    if key.contains("key_id") {
        return false;
    }
    ["secret", "token", "password", "sas", "credential"]
        .iter()
        .any(|s| key.contains(s))
        || key.ends_with("_key")
        || key == "key"
        || key.ends_with("key_base64")
}

/// The environment variables whose values are secrets when a pipeline reaches an object store.
pub const SECRET_ENV: &[&str] = &[
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AZURE_STORAGE_ACCOUNT_KEY",
    "AZURE_STORAGE_ACCESS_KEY",
    "AZURE_STORAGE_SAS_KEY",
    "AZURE_STORAGE_TOKEN",
    "AZURE_CLIENT_SECRET",
    "AZURE_STORAGE_CLIENT_SECRET",
    "AZURE_STORAGE_MASTER_KEY",
    "AZURE_STORAGE_SAS_TOKEN",
    "AZURE_FABRIC_SESSION_TOKEN",
    "AWS_SSE_CUSTOMER_KEY_BASE64",
    "AWS_SECRET_ACCESS_KEY_DYNAMODB",
    "AWS_SESSION_TOKEN_DYNAMODB",
    "GOOGLE_SERVICE_ACCOUNT_KEY",
];

/// Options that send the machine's own cloud identity (instance, workload or managed-identity
/// tokens, client secrets) to the address they give, or turn off TLS checks: accepted, with a
/// warning, since a pipeline file can point them anywhere.
pub const CREDENTIAL_ROUTES: &[&str] = &[
    "proxy_url",
    "allow_invalid_certificates",
    "metadata_endpoint",
    "container_credentials_relative_uri",
    "container_credentials_full_uri",
    "endpoint_url_sts",
    "authority_host",
    "msi_endpoint",
    "federated_token_file",
    "base_url",
];

/// An object-store location: its URL and the pipeline's options for it. Its `Debug` shows the
/// options' names, never their values (they may be secrets, and logs print `Debug`).
#[derive(Clone, PartialEq, Eq)]
pub struct Remote {
    /// `scheme://bucket/path`, without a trailing slash.
    pub url: Url,
    /// Its store.
    pub cloud: Cloud,
    /// `storage_options` from the pipeline (values already resolved from `{{secret...}}`).
    pub options: BTreeMap<String, String>,
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remote")
            .field("url", &self.url.as_str())
            .field("options", &self.options.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Where a table or file is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    /// A local file or folder.
    Local(PathBuf),
    /// An object-store URL.
    Remote(Remote),
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Local(p) => write!(f, "{}", p.display()),
            Location::Remote(r) => write!(f, "{}", r.url),
        }
    }
}

/// Why a written location cannot be used.
#[derive(Debug, PartialEq, Eq)]
pub struct LocationError(pub String);

impl Location {
    /// Reads a written location: a path (relative to `base_dir`), a `file://` URL, or an object-store
    /// URL. A user name, password or query in an object-store URL is refused (credentials go in
    /// `storage_options` or the environment, where they are redacted).
    pub fn parse(written: &str, base_dir: &Path) -> Result<Location, LocationError> {
        let Some((scheme, rest)) = written.split_once("://") else {
            return Ok(Location::Local(base_dir.join(written)));
        };
        if scheme == "file" {
            return Ok(Location::Local(base_dir.join(rest)));
        }
        let Some(cloud) = Cloud::of_scheme(&scheme.to_ascii_lowercase()) else {
            let known: Vec<&str> = SCHEMES.iter().map(|(s, _)| *s).collect();
            return Err(LocationError(format!(
                "`{scheme}://` is not a store this build reaches: give a local path, file://, or one of {}",
                known
                    .iter()
                    .map(|s| format!("{s}://"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        };
        let mut url = Url::parse(written).map_err(|e| LocationError(format!("not a URL: {e}")))?;
        if url.password().is_some() || url.query().is_some() || url.fragment().is_some() {
            return Err(LocationError(
                "a password, query or fragment in a storage URL is refused: give credentials in storage_options or the environment".into(),
            ));
        }
        // `abfss://container@account.dfs.core.windows.net/` names the container as a user; S3 and GCS
        // have no user part.
        if !url.username().is_empty() && cloud != Cloud::Azure {
            return Err(LocationError(
                "a user name in an s3:// or gs:// URL is refused: give credentials in storage_options or the environment".into(),
            ));
        }
        // The bucket is not a host: a port here would be silently dropped, and the requests would
        // go to the store's usual endpoint rather than the one the user meant.
        if url.port().is_some() {
            let option = match cloud {
                Cloud::Gcs => "base_url",
                Cloud::S3 | Cloud::Azure => "endpoint",
            };
            return Err(LocationError(format!(
                "a port in a storage URL is refused: the URL names a bucket or container, not a server; give the store's address as storage_options `{option}` (e.g. http://127.0.0.1:9000)"
            )));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(LocationError(
                "the URL names no bucket or container (scheme://bucket/path)".into(),
            ));
        }
        let path = url.path().trim_end_matches('/').to_owned();
        url.set_path(&path);
        Ok(Location::Remote(Remote {
            url,
            cloud,
            options: BTreeMap::new(),
        }))
    }

    /// The location with `options` (only an object store takes them).
    pub fn with_options(mut self, options: BTreeMap<String, String>) -> Location {
        if let Location::Remote(r) = &mut self {
            r.options = options;
        }
        self
    }

    /// The URL delta-rs opens the table at this location by (a local folder made absolute).
    pub fn table_url(&self) -> Result<Url, String> {
        match self {
            Location::Local(path) => {
                let absolute = std::path::absolute(path).map_err(|e| e.to_string())?;
                Url::from_directory_path(absolute).map_err(|()| "not a local folder".to_owned())
            }
            Location::Remote(r) => Ok(r.url.clone()),
        }
    }

    /// The storage options delta-rs is given for this location.
    pub fn storage_options(&self) -> HashMap<String, String> {
        match self {
            Location::Local(_) => HashMap::new(),
            Location::Remote(r) => effective_options(r),
        }
    }

    /// The local path, if local.
    pub fn local(&self) -> Option<&Path> {
        match self {
            Location::Local(p) => Some(p),
            Location::Remote(_) => None,
        }
    }

    /// The file extension of the location's last segment, lowercased.
    pub fn extension(&self) -> Option<String> {
        let name = match self {
            Location::Local(p) => p.file_name()?.to_str()?.to_owned(),
            Location::Remote(r) => r.url.path().rsplit('/').next()?.to_owned(),
        };
        let (_, ext) = name.rsplit_once('.')?;
        Some(ext.to_ascii_lowercase())
    }
}

/// The pipeline's options plus what a loopback endpoint needs: plain HTTP is allowed for an endpoint
/// on 127.0.0.1 / localhost (an emulator in a test or on a laptop), never elsewhere unless asked.
fn effective_options(r: &Remote) -> HashMap<String, String> {
    // object_store's keys in lower case; delta-rs reads its locking options in upper case.
    let mut options: HashMap<String, String> = r
        .options
        .iter()
        .map(|(k, v)| match is_locking_option(k) {
            true => (k.to_ascii_uppercase(), v.clone()),
            false => (k.to_ascii_lowercase(), v.clone()),
        })
        .collect();
    let endpoint_keys = [
        "endpoint",
        "aws_endpoint",
        "aws_endpoint_url",
        "endpoint_url",
        "azure_storage_endpoint",
        "azure_endpoint",
    ];
    let endpoint = endpoint_keys
        .iter()
        .find_map(|k| options.get(*k).cloned())
        .or_else(|| {
            [
                "AWS_ENDPOINT_URL",
                "AWS_ENDPOINT",
                "AZURITE_BLOB_STORAGE_URL",
            ]
            .iter()
            .find_map(|k| std::env::var(k).ok())
        });
    let loopback = endpoint
        .as_deref()
        .and_then(|e| Url::parse(e).ok())
        .is_some_and(|u| {
            u.scheme() == "http"
                && matches!(
                    u.host_str(),
                    Some("127.0.0.1" | "localhost" | "[::1]" | "::1")
                )
        });
    if loopback && !options.keys().any(|k| k.ends_with("allow_http")) {
        options.insert("allow_http".into(), "true".into());
    }
    options
}

/// Builds the store for `url` (rooted at its bucket or container) from the standard environment and
/// `options`, and the path of `url` in it.
pub fn object_store_for(
    url: &Url,
    options: &HashMap<String, String>,
) -> Result<(Arc<dyn ObjectStore>, StorePath), String> {
    let cloud = Cloud::of_scheme(url.scheme())
        .ok_or_else(|| format!("`{}://` is not an object store", url.scheme()))?;
    let root = format!(
        "{}://{}{}",
        url.scheme(),
        match url.username() {
            "" => String::new(),
            user => format!("{user}@"),
        },
        url.host_str().unwrap_or_default()
    );
    let unknown = |k: &str| format!("unknown storage option `{k}`");
    let store: Arc<dyn ObjectStore> = match cloud {
        Cloud::S3 => {
            use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
            let mut b = AmazonS3Builder::from_env().with_url(&root);
            for (k, v) in options.iter().filter(|(k, _)| !is_locking_option(k)) {
                let key: AmazonS3ConfigKey = k.parse().map_err(|_| unknown(k))?;
                b = b.with_config(key, v);
            }
            Arc::new(b.build().map_err(|e| e.to_string())?)
        }
        Cloud::Azure => {
            use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
            let mut b = MicrosoftAzureBuilder::from_env().with_url(&root);
            for (k, v) in options {
                let key: AzureConfigKey = k.parse().map_err(|_| unknown(k))?;
                b = b.with_config(key, v);
            }
            Arc::new(b.build().map_err(|e| e.to_string())?)
        }
        Cloud::Gcs => {
            use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};
            let mut b = GoogleCloudStorageBuilder::from_env().with_url(&root);
            for (k, v) in options {
                let key: GoogleConfigKey = k.parse().map_err(|_| unknown(k))?;
                b = b.with_config(key, v);
            }
            Arc::new(b.build().map_err(|e| e.to_string())?)
        }
    };
    let path = StorePath::from_url_path(url.path()).map_err(|e| e.to_string())?;
    Ok((store, path))
}

/// The factory delta-rs asks for a store and a log store for each scheme of [`SCHEMES`]. With
/// `--features dynamodb`, an S3 table whose options ask for the DynamoDB locking provider goes to
/// delta-rs's own S3 factories (its AWS SDK client and `S3DynamoDbLogStore`), kept aside here.
struct CloudFactory {
    #[cfg(feature = "dynamodb")]
    aws: Option<AwsFactories>,
}

/// delta-rs's own S3 factories (object store, log store).
#[cfg(feature = "dynamodb")]
type AwsFactories = (Arc<dyn ObjectStoreFactory>, Arc<dyn LogStoreFactory>);

impl CloudFactory {
    /// delta-rs's S3 factories, when the table asks for DynamoDB locking.
    #[cfg(feature = "dynamodb")]
    fn dynamodb(&self, url: &Url, config: &StorageConfig) -> Option<&AwsFactories> {
        (Cloud::of_scheme(url.scheme()) == Some(Cloud::S3) && wants_dynamodb(&config.raw))
            .then_some(self.aws.as_ref())
            .flatten()
    }
}

impl ObjectStoreFactory for CloudFactory {
    fn parse_url_opts(
        &self,
        url: &Url,
        config: &StorageConfig,
    ) -> DeltaResult<(ObjectStoreRef, StorePath)> {
        #[cfg(feature = "dynamodb")]
        if let Some((stores, _)) = self.dynamodb(url, config) {
            return stores.parse_url_opts(url, config);
        }
        let (store, path) = object_store_for(url, &config.raw)
            .map_err(|message| DeltaTableError::generic(format!("{url}: {message}")))?;
        let store = match &config.runtime {
            Some(runtime) => Arc::new(deltalake::logstore::DeltaIOStorageBackend::new(
                store,
                runtime.clone(),
            )) as ObjectStoreRef,
            None => store,
        };
        Ok((store, path))
    }
}

impl LogStoreFactory for CloudFactory {
    fn with_options(
        &self,
        prefixed_store: ObjectStoreRef,
        root_store: ObjectStoreRef,
        location: &Url,
        options: &StorageConfig,
    ) -> DeltaResult<Arc<dyn LogStore>> {
        #[cfg(feature = "dynamodb")]
        if let Some((_, logs)) = self.dynamodb(location, options) {
            return logs.with_options(prefixed_store, root_store, location, options);
        }
        // Commits are conditional puts (`PutMode::Create`), which object_store sends as
        // `If-None-Match: *`: the default log store is safe on every store here.
        Ok(deltalake::logstore::default_logstore(
            prefixed_store,
            root_store,
            location,
            options,
        ))
    }
}

/// Registers the object-store schemes with delta-rs (once per process).
pub fn register_schemes() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        #[cfg(feature = "dynamodb")]
        let factory = {
            let s3 = Url::parse("s3://").expect("a scheme is a URL");
            let stores = deltalake::logstore::object_store_factories()
                .get(&s3)
                .map(|f| f.value().clone());
            let logs = deltalake::logstore::logstore_factories()
                .get(&s3)
                .map(|f| f.value().clone());
            Arc::new(CloudFactory {
                aws: stores.zip(logs),
            })
        };
        #[cfg(not(feature = "dynamodb"))]
        let factory = Arc::new(CloudFactory {});
        for (scheme, _) in SCHEMES {
            let url = Url::parse(&format!("{scheme}://")).expect("a scheme is a URL");
            deltalake::logstore::object_store_factories().insert(url.clone(), factory.clone());
            deltalake::logstore::logstore_factories().insert(url, factory.clone());
        }
    });
}

/// Checks that a remote location can be reached before any request: the bucket or container exists
/// and the credentials may list it. The error names the URL, never an option's value.
pub async fn preflight(remote: &Remote) -> Result<(), String> {
    let (store, path) = object_store_for(&remote.url, &effective_options(remote))?;
    use futures::StreamExt;
    let mut listing = store.list(Some(&path));
    match listing.next().await {
        None | Some(Ok(_)) => Ok(()),
        Some(Err(e)) => Err(describe(&e)),
    }
}

/// Whether the store at `remote` refuses to create an object that exists (on S3 a `PUT` with
/// `If-None-Match: *`), which is what keeps two writers of one Delta table from both creating the
/// same commit. Found out by trying: a probe object beside the table (`_sparkwasm_probe_…`, a name
/// Delta and Spark readers skip) is created twice, then deleted.
pub async fn refuses_overwrite(remote: &Remote) -> Result<bool, String> {
    use object_store::{ObjectStoreExt as _, PutMode, PutOptions};
    let (store, path) = object_store_for(&remote.url, &effective_options(remote))?;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let probe = path
        .clone()
        .join(format!("_sparkwasm_probe_{}_{nanos}", std::process::id()));
    let create = || PutOptions {
        mode: PutMode::Create,
        ..Default::default()
    };
    store
        .put_opts(&probe, "probe".into(), create())
        .await
        .map_err(|e| describe(&e))?;
    let again = store.put_opts(&probe, "probe".into(), create()).await;
    // Best effort: a role without delete permission leaves a small object Delta ignores.
    let _ = store.delete(&probe).await;
    match again {
        Err(object_store::Error::AlreadyExists { .. }) => Ok(true),
        Ok(_) => Ok(false),
        Err(e) => Err(describe(&e)),
    }
}

/// An object-store error in one line: what it means for the user, then the store's own words.
pub fn describe(e: &object_store::Error) -> String {
    let text = e.to_string();
    let lower = text.to_ascii_lowercase();
    let hint = if lower.contains("nosuchbucket")
        || lower.contains("containernotfound")
        || lower.contains("bucket does not exist")
        || lower.contains("the specified container does not exist")
    {
        "the bucket or container does not exist"
    } else if lower.contains("403")
        || lower.contains("forbidden")
        || lower.contains("accessdenied")
        || lower.contains("authorization")
        || lower.contains("signature")
        || lower.contains("invalidaccesskeyid")
        || lower.contains("authentication")
    {
        "access denied: check the credentials and their permissions"
    } else if matches!(e, object_store::Error::NotFound { .. }) {
        "not found"
    } else {
        "the store cannot be reached"
    };
    // The store's own words, without the XML body some stores answer with.
    let first_line = text.lines().next().unwrap_or_default();
    let words = first_line
        .split_once(": <?xml")
        .map_or(first_line, |(before, _)| before);
    format!("{hint} ({words})")
}

/// One data file of a source or a table.
#[derive(Clone, Debug)]
pub enum DataFile {
    /// A local file.
    Local(PathBuf),
    /// An object in a store.
    Remote {
        /// Its store.
        store: Arc<dyn ObjectStore>,
        /// Its path in the store.
        path: StorePath,
        /// Its URL, for messages.
        url: String,
        /// Its size in bytes, when a listing gave it (else asked for when it is read).
        size: Option<u64>,
    },
}

impl std::fmt::Display for DataFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DataFile::Local(p) => write!(f, "{}", p.display()),
            DataFile::Remote { url, .. } => f.write_str(url),
        }
    }
}

/// Every object below a remote folder whose name ends in one of `extensions`, in name order,
/// skipping `_`/`.` entries (logs, markers).
pub async fn list_files(remote: &Remote, extensions: &[&str]) -> Result<Vec<DataFile>, String> {
    use futures::TryStreamExt;
    let (store, path) = object_store_for(&remote.url, &effective_options(remote))?;
    let objects: Vec<_> = store
        .list(Some(&path))
        .try_collect()
        .await
        .map_err(|e| describe(&e))?;
    let mut files: Vec<DataFile> = objects
        .into_iter()
        .filter(|o| {
            let relative: Vec<_> = o
                .location
                .prefix_match(&path)
                .into_iter()
                .flatten()
                .collect();
            !relative
                .iter()
                .any(|p| p.as_ref().starts_with('_') || p.as_ref().starts_with('.'))
                && extensions.iter().any(|e| {
                    o.location
                        .as_ref()
                        .to_ascii_lowercase()
                        .ends_with(&format!(".{e}"))
                })
        })
        .map(|o| remote_file(&store, &remote.url, o.location, Some(o.size)))
        .collect();
    files.sort_by_key(ToString::to_string);
    Ok(files)
}

/// The remote file at `path` of the store rooted at `url`'s bucket.
fn remote_file(
    store: &Arc<dyn ObjectStore>,
    url: &Url,
    path: StorePath,
    size: Option<u64>,
) -> DataFile {
    let mut u = url.clone();
    u.set_path(&format!("/{path}"));
    DataFile::Remote {
        store: store.clone(),
        path,
        url: u.to_string(),
        size,
    }
}

/// The object at a remote location (one file).
pub fn remote_object(remote: &Remote) -> Result<DataFile, String> {
    let (store, path) = object_store_for(&remote.url, &effective_options(remote))?;
    Ok(DataFile::Remote {
        store,
        path,
        url: remote.url.to_string(),
        size: None,
    })
}

/// The data files of a table given as delta-rs's URIs (local paths or URLs in `location`'s store).
/// Each comes with its size from the log, when known (an object's size is then not asked for).
pub fn table_files(
    location: &Location,
    uris: Vec<(String, Option<u64>)>,
) -> Result<Vec<DataFile>, String> {
    let store = match location {
        Location::Local(_) => None,
        Location::Remote(r) => Some(object_store_for(&r.url, &effective_options(r))?.0),
    };
    let mut files = Vec::with_capacity(uris.len());
    for (uri, size) in uris {
        match (Url::parse(&uri), &store, location) {
            (Ok(u), None, _) if u.scheme() == "file" => files.push(DataFile::Local(
                u.to_file_path()
                    .map_err(|()| format!("data file {uri} is not local"))?,
            )),
            (Err(_), None, _) => files.push(DataFile::Local(PathBuf::from(uri))),
            (Ok(u), Some(store), Location::Remote(r))
                if u.scheme() == r.url.scheme()
                    && u.host_str() == r.url.host_str()
                    && u.username() == r.url.username() =>
            {
                let path = StorePath::from_url_path(u.path()).map_err(|e| e.to_string())?;
                files.push(remote_file(store, &r.url, path, size));
            }
            _ => return Err(format!("data file {uri} is outside the table's store")),
        }
    }
    files.sort_by_key(ToString::to_string);
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_are_paths_file_urls_or_store_urls() {
        let base = Path::new("/base");
        assert_eq!(
            Location::parse("out/t", base).unwrap(),
            Location::Local(PathBuf::from("/base/out/t"))
        );
        assert_eq!(
            Location::parse("file:///abs/t", base).unwrap(),
            Location::Local(PathBuf::from("/abs/t"))
        );
        let Location::Remote(r) = Location::parse("s3a://bucket/bronze/t/", base).unwrap() else {
            panic!("remote")
        };
        assert_eq!(
            (r.cloud, r.url.as_str()),
            (Cloud::S3, "s3a://bucket/bronze/t")
        );
        let Location::Remote(r) =
            Location::parse("abfss://c@acct.dfs.core.windows.net/t", base).unwrap()
        else {
            panic!("remote")
        };
        assert_eq!(r.cloud, Cloud::Azure);
        for bad in [
            "ftp://host/t",
            "s3://key:secret@bucket/t",
            "s3://bucket/t?sig=abc",
            "s3:///t",
            "gs://user@bucket/t",
            "s3://bucket:9000/t",
            "az://container:443/t",
        ] {
            assert!(Location::parse(bad, base).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn options_are_checked_against_the_store_and_secret_ones_known() {
        assert!(Cloud::S3.knows_option("aws_secret_access_key"));
        assert!(Cloud::S3.knows_option("endpoint"));
        assert!(Cloud::S3.knows_option("allow_http"));
        assert!(!Cloud::S3.knows_option("azure_storage_account_key"));
        assert!(Cloud::Azure.knows_option("azure_storage_account_key"));
        assert!(Cloud::Azure.knows_option("use_emulator"));
        assert!(Cloud::Gcs.knows_option("google_service_account_key"));
        assert!(is_secret_option("aws_secret_access_key"));
        assert!(is_secret_option("azure_storage_sas_key"));
        assert!(is_secret_option("AZURE_STORAGE_ACCOUNT_KEY"));
        assert!(!is_secret_option("aws_access_key_id"));
        assert!(is_secret_option("azure_storage_master_key"));
        assert!(is_secret_option("master_key"));
        assert!(is_secret_option("aws_sse_customer_key_base64"));
        assert!(is_secret_option("access_key"));
        assert!(!is_secret_option("aws_sse_kms_key_id"));
        assert!(!is_secret_option("aws_sse_bucket_key_enabled"));
        assert!(!is_secret_option("endpoint"));
    }

    #[test]
    fn a_single_writer_is_declared_in_the_sink_options_as_delta_rs_reads_it() {
        // Accepted as an S3 storage option (not refused as unknown), in any case, and read from
        // the options as they reach the store (upper case, like delta-rs's locking options).
        assert!(Cloud::S3.knows_option("aws_s3_allow_unsafe_rename"));
        assert!(!Cloud::Azure.knows_option("aws_s3_allow_unsafe_rename"));
        let remote = |value: &str| Remote {
            url: Url::parse("s3://b/t").unwrap(),
            cloud: Cloud::S3,
            options: [("aws_s3_allow_unsafe_rename".to_owned(), value.to_owned())].into(),
        };
        let options = effective_options(&remote("True"));
        assert_eq!(
            options
                .get("AWS_S3_ALLOW_UNSAFE_RENAME")
                .map(String::as_str),
            Some("True")
        );
        assert!(declares_single_writer(&options));
        assert!(!declares_single_writer(&effective_options(&remote(
            "false"
        ))));
    }

    #[test]
    fn loopback_endpoints_may_use_plain_http_others_must_say_so() {
        let remote = |endpoint: &str| Remote {
            url: Url::parse("s3://b/t").unwrap(),
            cloud: Cloud::S3,
            options: [("endpoint".to_owned(), endpoint.to_owned())].into(),
        };
        assert_eq!(
            effective_options(&remote("http://127.0.0.1:9000")).get("allow_http"),
            Some(&"true".to_owned())
        );
        assert_eq!(
            effective_options(&remote("http://minio.internal:9000")).get("allow_http"),
            None
        );
    }
}
