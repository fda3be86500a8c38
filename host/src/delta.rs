//! Delta tables as the stages read them, local or on an object store: a location's table, its data
//! files, and the version a writer committed under a transaction id.

use deltalake::{DeltaTable, DeltaTableError};

use crate::store::{DataFile, Location};

/// A Delta table that could not be opened or read.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct TableError {
    path: String,
    message: String,
}

impl TableError {
    /// An error about the table at `location`.
    pub fn new(location: &Location, message: impl Into<String>) -> Self {
        TableError {
            path: location.to_string(),
            message: one_line(&message.into()),
        }
    }

    /// What went wrong, without the path.
    pub fn message(&self) -> &str {
        &self.message
    }
}

/// The table at `location` as delta-rs opens it (the object-store schemes registered first), or the
/// error delta-rs gave.
pub async fn open_raw(location: &Location) -> Result<DeltaTable, DeltaTableError> {
    crate::store::register_schemes();
    let url = location
        .table_url()
        .map_err(|e| DeltaTableError::generic(format!("{location}: {e}")))?;
    deltalake::open_table_with_storage_options(url, location.storage_options()).await
}

/// An error in one line, at most 400 characters: a store's error may carry its XML answer on
/// further lines.
fn one_line(text: &str) -> String {
    let mut line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.len() > 400 {
        let cut = (0..=400)
            .rev()
            .find(|i| line.is_char_boundary(*i))
            .unwrap_or(0);
        line.truncate(cut);
        line.push('…');
    }
    line
}

/// The table at `location`, or `None` when there is none (no folder, or no `_delta_log` in it).
/// On an object store, the bucket or container is checked first: a missing one, refused
/// credentials or an unreachable store stop the run here, before any request.
pub async fn open(location: &Location) -> Result<Option<DeltaTable>, TableError> {
    match location {
        Location::Local(path) if !path.join("_delta_log").is_dir() => return Ok(None),
        Location::Local(_) => {}
        Location::Remote(remote) => crate::store::preflight(remote)
            .await
            .map_err(|e| TableError::new(location, e))?,
    }
    match open_raw(location).await {
        Ok(t) => Ok(Some(t)),
        Err(DeltaTableError::NotATable(_)) | Err(DeltaTableError::InvalidTableLocation(_)) => {
            Ok(None)
        }
        Err(e) => Err(TableError::new(
            location,
            format!("cannot open the table: {e}"),
        )),
    }
}

/// The version the writer `app_id` last committed (a `txn` action), 0 if none.
pub async fn txn_version(
    table: &DeltaTable,
    path: &Location,
    app_id: &str,
) -> Result<i64, TableError> {
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
pub async fn data_files(path: &Location) -> Result<Vec<DataFile>, TableError> {
    let fail = |message: String| TableError::new(path, message);
    let table = open_raw(path)
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
    // Each file's URI with its size from the log: both walk the same snapshot's files in order.
    let sizes = snapshot
        .log_data()
        .into_iter()
        .map(|add| u64::try_from(add.size()).ok());
    let uris = table
        .get_file_uris()
        .map_err(|e| fail(e.to_string()))?
        .zip(sizes)
        .collect();
    crate::store::table_files(path, uris).map_err(fail)
}
