//! File sources, local or on an object store: a Parquet file or folder, CSV, JSON lines, and a Delta
//! table (its active Parquet files). An object is read by ranges as its rows are taken (a Parquet
//! object one row group at a time; see `store::read`), never fetched whole.

use std::path::Path;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;

use super::{READ_BATCH_ROWS, RowStream, SourceError, spawn_reader};
use crate::config::FileFormat;
use crate::store::{DataFile, Location, ParquetFile};

/// The most objects of a Parquet folder whose footers are read before the first row (for the
/// run's row count); a larger folder's are read as their turn comes.
const FOOTERS_AHEAD: usize = 64;

/// Rows read to infer a CSV or JSON schema.
const INFER_ROWS: usize = 1000;

pub(crate) async fn open(location: Location, format: FileFormat) -> Result<RowStream, SourceError> {
    let format = match (&location, format) {
        // A remote folder named without a format: a Delta table if it holds a log, else Parquet files.
        (Location::Remote(remote), FileFormat::Parquet) if location.extension().is_none() => {
            let mut log = remote.clone();
            log.url
                .set_path(&format!("{}/_delta_log", remote.url.path()));
            let entries = crate::store::list_files(&log, &["json", "parquet"])
                .await
                .map_err(|e| open_error(&location, e))?;
            if entries.is_empty() {
                FileFormat::Parquet
            } else {
                FileFormat::Delta
            }
        }
        (_, f) => f,
    };
    match format {
        FileFormat::Parquet => {
            let files = match &location {
                Location::Local(path) if path.is_dir() => parquet_files_in(path)?,
                Location::Local(path) => vec![DataFile::Local(path.clone())],
                Location::Remote(remote) if location.extension().is_none() => {
                    let files = crate::store::list_files(remote, &["parquet", "pq"])
                        .await
                        .map_err(|e| open_error(&location, e))?;
                    if files.is_empty() {
                        return Err(open_error(&location, "the folder holds no .parquet files"));
                    }
                    files
                }
                Location::Remote(remote) => vec![
                    crate::store::remote_object(remote).map_err(|e| open_error(&location, e))?,
                ],
            };
            parquet_stream(files).await
        }
        FileFormat::Delta => {
            let files = crate::delta::data_files(&location)
                .await
                .map_err(|e| open_error(&location, e.message()))?;
            parquet_stream(files).await
        }
        FileFormat::Csv | FileFormat::Jsonl => {
            let file = match &location {
                Location::Local(path) => DataFile::Local(path.clone()),
                Location::Remote(remote) => {
                    crate::store::remote_object(remote).map_err(|e| open_error(&location, e))?
                }
            };
            text_stream(file, format).await
        }
    }
}

/// A CSV (with a header line) or JSON-lines reader over one file. The schema is inferred on the
/// blocking pool: an object's reader waits there for each block it fetches.
async fn text_stream(file: DataFile, format: FileFormat) -> Result<RowStream, SourceError> {
    let (schema, batches) = tokio::task::spawn_blocking(move || text_batches(file, format))
        .await
        .map_err(|e| SourceError::Unsupported(e.to_string()))??;
    Ok(spawn_reader(schema, move || Ok(batches)))
}

/// What reads a text file: its schema (from its first [`INFER_ROWS`] rows), and its batches.
type TextBatches = Box<dyn Iterator<Item = Result<RecordBatch, SourceError>> + Send>;

fn text_batches(
    file: DataFile,
    format: FileFormat,
) -> Result<(SchemaRef, TextBatches), SourceError> {
    let mut reader = file.reader().map_err(|e| file_error(&file, e))?;
    let schema = match format {
        FileFormat::Csv => {
            arrow::csv::reader::Format::default()
                .with_header(true)
                .infer_schema(&mut reader, Some(INFER_ROWS))
                .map_err(|e| file_error(&file, e))?
                .0
        }
        _ => {
            arrow::json::reader::infer_json_schema_from_seekable(&mut reader, Some(INFER_ROWS))
                .map_err(|e| file_error(&file, e))?
                .0
        }
    };
    reader.rewind().map_err(|e| file_error(&file, e))?;
    let schema = Arc::new(schema);
    let batches: Box<dyn Iterator<Item = Result<RecordBatch, arrow::error::ArrowError>> + Send> =
        match format {
            FileFormat::Csv => Box::new(
                arrow::csv::ReaderBuilder::new(schema.clone())
                    .with_header(true)
                    .with_batch_size(READ_BATCH_ROWS)
                    .build(reader)
                    .map_err(|e| file_error(&file, e))?,
            ),
            _ => Box::new(
                arrow::json::ReaderBuilder::new(schema.clone())
                    .with_batch_size(READ_BATCH_ROWS)
                    .build(reader)
                    .map_err(|e| file_error(&file, e))?,
            ),
        };
    Ok((
        schema,
        Box::new(batches.map(move |b| b.map_err(|e| read_error(&file, e)))),
    ))
}

fn open_error(location: &Location, e: impl ToString) -> SourceError {
    SourceError::Open {
        path: location.to_string(),
        message: e.to_string(),
    }
}

fn file_error(file: &DataFile, e: impl ToString) -> SourceError {
    SourceError::Open {
        path: file.to_string(),
        message: e.to_string(),
    }
}

fn read_error(file: &DataFile, e: impl ToString) -> SourceError {
    SourceError::Read {
        path: file.to_string(),
        message: e.to_string(),
    }
}

/// Every `.parquet` file below a folder, in name order, skipping `_`/`.` entries (logs, markers).
fn parquet_files_in(dir: &Path) -> Result<Vec<DataFile>, SourceError> {
    let local_error = |d: &Path, e: std::io::Error| SourceError::Open {
        path: d.display().to_string(),
        message: e.to_string(),
    };
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        for entry in std::fs::read_dir(&d).map_err(|e| local_error(&d, e))? {
            let p = entry.map_err(|e| local_error(&d, e))?.path();
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if name.starts_with('_') || name.starts_with('.') {
                continue;
            }
            if p.is_dir() {
                pending.push(p);
            } else if name.ends_with(".parquet") {
                files.push(p);
            }
        }
    }
    files.sort();
    if files.is_empty() {
        return Err(SourceError::Open {
            path: dir.display().to_string(),
            message: "the folder holds no .parquet files".into(),
        });
    }
    Ok(files.into_iter().map(DataFile::Local).collect())
}

/// Streams the Parquet files one after the other; all must share the first one's schema. The
/// footers are read first (on the blocking pool) for the schema and the row count.
async fn parquet_stream(files: Vec<DataFile>) -> Result<RowStream, SourceError> {
    let Some(first) = files.first().cloned() else {
        let schema: SchemaRef = Arc::new(arrow::datatypes::Schema::empty());
        return Ok(spawn_reader(schema, || Ok(std::iter::empty())));
    };
    // Footers first, for the schema and the row count: every local file's, and a folder's objects'
    // when there are at most FOOTERS_AHEAD of them (one ranged request each). What was opened here
    // is read from (not opened again), except local files after the first (their handles are not
    // kept open).
    let listed = files.clone();
    let (schema, total, mut opened) = tokio::task::spawn_blocking(move || {
        let first_opened = first.parquet().map_err(|e| file_error(&first, e))?;
        let schema = first_opened.schema().clone();
        let mut opened: Vec<Option<ParquetFile>> = vec![Some(first_opened)];
        let remote = listed
            .iter()
            .filter(|f| matches!(f, DataFile::Remote { .. }))
            .count();
        if remote > FOOTERS_AHEAD {
            return Ok::<_, SourceError>((schema, None, opened));
        }
        let mut total = opened[0].as_ref().map_or(0, ParquetFile::num_rows);
        for file in &listed[1..] {
            let parquet = file.parquet().map_err(|e| file_error(file, e))?;
            total += parquet.num_rows();
            opened.push(matches!(file, DataFile::Remote { .. }).then_some(parquet));
        }
        Ok((schema, Some(total), opened))
    })
    .await
    .map_err(|e| SourceError::Unsupported(e.to_string()))??;
    opened.resize_with(files.len(), || None);
    let expected = schema.clone();
    let mut stream = spawn_reader(schema, move || {
        Ok(files
            .into_iter()
            .zip(opened)
            .flat_map(move |(file, opened)| {
                let reader = opened
                    .map_or_else(|| file.parquet(), Ok)
                    .map_err(|e| read_error(&file, e))
                    .and_then(|p| {
                        if p.schema().fields() != expected.fields() {
                            return Err(read_error(
                                &file,
                                "its schema differs from the first file's",
                            ));
                        }
                        p.batches(None, READ_BATCH_ROWS)
                            .map_err(|e| read_error(&file, e))
                    });
                let boxed: Box<dyn Iterator<Item = Result<RecordBatch, SourceError>> + Send> =
                    match reader {
                        Ok(r) => Box::new(r.map(move |b| b.map_err(|e| read_error(&file, e)))),
                        Err(e) => Box::new(std::iter::once(Err(e))),
                    };
                boxed
            }))
    });
    stream.total_rows = total;
    Ok(stream)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn parquet_streams_in_read_batches_and_knows_its_row_count() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rows.parquet");
        testkit::write_rows_parquet(&path, 10_000).unwrap();
        let mut stream = open(Location::Local(path), FileFormat::Parquet)
            .await
            .unwrap();
        assert_eq!(stream.total_rows, Some(10_000));
        let mut rows = 0;
        while let Some(batch) = stream.batches.recv().await {
            let batch = batch.unwrap();
            assert!(batch.num_rows() <= READ_BATCH_ROWS);
            rows += batch.num_rows();
        }
        assert_eq!(rows, 10_000);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_json_object_whose_schema_rows_span_several_blocks_is_read_from_a_worker() {
        // 1,000 rows of 9 KiB: inferring the schema reads past the first 8 MiB block, so the
        // reader fetches from the store while inferring (on the blocking pool, not this worker).
        use object_store::{ObjectStore, ObjectStoreExt as _, memory::InMemory};
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let path = object_store::path::Path::from("in/rows.jsonl");
        let note = "x".repeat(9 << 10);
        let text: String = (0..1500)
            .map(|i| format!("{{\"id\": {i}, \"note\": \"{note}\"}}\n"))
            .collect();
        assert!(text.len() as u64 > crate::store::BLOCK);
        store.put(&path, text.into()).await.unwrap();
        let file = DataFile::Remote {
            store,
            path,
            url: "memory:///in/rows.jsonl".into(),
            size: None,
        };
        let mut stream = text_stream(file, FileFormat::Jsonl).await.unwrap();
        let mut rows = 0;
        while let Some(batch) = stream.batches.recv().await {
            rows += batch.unwrap().num_rows();
        }
        assert_eq!(rows, 1500);
    }
}
