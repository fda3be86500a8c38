//! Delta tables on the local filesystem, as the stages read them: a folder's table, its data files,
//! and the version a writer committed under a transaction id.

use std::path::{Path, PathBuf};

use deltalake::{DeltaTable, DeltaTableError};

/// A Delta table that could not be opened or read.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct TableError {
    path: String,
    message: String,
}

impl TableError {
    /// An error about the table at `path`.
    pub fn new(path: &Path, message: impl Into<String>) -> Self {
        TableError {
            path: path.display().to_string(),
            message: message.into(),
        }
    }

    /// What went wrong, without the path.
    pub fn message(&self) -> &str {
        &self.message
    }
}

/// The URL delta-rs opens a local folder by.
pub fn table_url(path: &Path) -> Result<url::Url, TableError> {
    let absolute = std::path::absolute(path).map_err(|e| TableError::new(path, e.to_string()))?;
    url::Url::from_directory_path(absolute)
        .map_err(|()| TableError::new(path, "not a local folder"))
}

/// The table at `path`, or `None` when there is none (no folder, or no `_delta_log` in it).
pub async fn open(path: &Path) -> Result<Option<DeltaTable>, TableError> {
    if !path.join("_delta_log").is_dir() {
        return Ok(None);
    }
    match deltalake::open_table(table_url(path)?).await {
        Ok(t) => Ok(Some(t)),
        Err(DeltaTableError::NotATable(_)) | Err(DeltaTableError::InvalidTableLocation(_)) => {
            Ok(None)
        }
        Err(e) => Err(TableError::new(path, format!("cannot open the table: {e}"))),
    }
}

/// The version the writer `app_id` last committed (a `txn` action), 0 if none.
pub async fn txn_version(table: &DeltaTable, path: &Path, app_id: &str) -> Result<i64, TableError> {
    let snapshot = table
        .snapshot()
        .map_err(|e| TableError::new(path, e.to_string()))?;
    Ok(snapshot
        .transaction_version(table.log_store().as_ref(), app_id)
        .await
        .map_err(|e| TableError::new(path, e.to_string()))?
        .unwrap_or(0))
}

/// The Parquet files of a Delta table's current version. Refuses what reading raw files would get
/// wrong (partition values kept in the log, deletion vectors).
pub async fn data_files(path: &Path) -> Result<Vec<PathBuf>, TableError> {
    let fail = |message: String| TableError::new(path, message);
    let table = deltalake::open_table(table_url(path)?)
        .await
        .map_err(|e| fail(format!("cannot open the Delta table: {e}")))?;
    let snapshot = table.snapshot().map_err(|e| fail(e.to_string()))?;
    if !snapshot.metadata().partition_columns().is_empty() {
        return Err(fail("partitioned Delta tables are not supported as a source yet (their partition values live in the log)".into()));
    }
    if snapshot
        .log_data()
        .iter()
        .any(|f| f.deletion_vector_descriptor().is_some())
    {
        return Err(fail(
            "the table has deletion vectors, which this reader does not apply".into(),
        ));
    }
    let mut files = Vec::new();
    for uri in table.get_file_uris().map_err(|e| fail(e.to_string()))? {
        // Local tables give plain paths; object stores give URLs, which this reader does not fetch.
        match url::Url::parse(&uri) {
            Ok(u) if u.scheme() == "file" => files.push(
                u.to_file_path()
                    .map_err(|()| fail(format!("data file {uri} is not local")))?,
            ),
            Ok(_) => {
                return Err(fail(format!(
                    "data file {uri} is not on the local filesystem"
                )));
            }
            Err(_) => files.push(PathBuf::from(uri)),
        }
    }
    files.sort();
    Ok(files)
}
