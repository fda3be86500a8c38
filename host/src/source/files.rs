//! Local sources: a Parquet file or folder, CSV, JSON lines, and a Delta table (its active Parquet files).

use std::fs::File;
use std::io::{BufReader, Seek};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::{READ_BATCH_ROWS, RowStream, SourceError, spawn_reader};
use crate::config::FileFormat;

/// Rows read to infer a CSV or JSON schema.
const INFER_ROWS: usize = 1000;

pub(crate) async fn open(path: PathBuf, format: FileFormat) -> Result<RowStream, SourceError> {
    match format {
        FileFormat::Parquet => {
            let files = if path.is_dir() {
                parquet_files_in(&path)?
            } else {
                vec![path.clone()]
            };
            parquet_stream(files)
        }
        FileFormat::Delta => {
            let files = crate::delta::data_files(&path)
                .await
                .map_err(|e| open_error(&path, e.message()))?;
            parquet_stream(files)
        }
        FileFormat::Csv => {
            let mut file = File::open(&path).map_err(|e| open_error(&path, e))?;
            let (schema, _) = arrow::csv::reader::Format::default()
                .with_header(true)
                .infer_schema(&mut file, Some(INFER_ROWS))
                .map_err(|e| open_error(&path, e))?;
            file.rewind().map_err(|e| open_error(&path, e))?;
            let schema = Arc::new(schema);
            let reader = arrow::csv::ReaderBuilder::new(schema.clone())
                .with_header(true)
                .with_batch_size(READ_BATCH_ROWS)
                .build(file)
                .map_err(|e| open_error(&path, e))?;
            Ok(spawn_reader(schema, move || {
                Ok(reader.map(move |b| b.map_err(|e| read_error(&path, e))))
            }))
        }
        FileFormat::Jsonl => {
            let mut file = BufReader::new(File::open(&path).map_err(|e| open_error(&path, e))?);
            let (schema, _) =
                arrow::json::reader::infer_json_schema_from_seekable(&mut file, Some(INFER_ROWS))
                    .map_err(|e| open_error(&path, e))?;
            let schema = Arc::new(schema);
            let reader = arrow::json::ReaderBuilder::new(schema.clone())
                .with_batch_size(READ_BATCH_ROWS)
                .build(file)
                .map_err(|e| open_error(&path, e))?;
            Ok(spawn_reader(schema, move || {
                Ok(reader.map(move |b| b.map_err(|e| read_error(&path, e))))
            }))
        }
    }
}

fn open_error(path: &Path, e: impl ToString) -> SourceError {
    SourceError::Open {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

fn read_error(path: &Path, e: impl ToString) -> SourceError {
    SourceError::Read {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

/// Every `.parquet` file below a folder, in name order, skipping `_`/`.` entries (logs, markers).
fn parquet_files_in(dir: &Path) -> Result<Vec<PathBuf>, SourceError> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        for entry in std::fs::read_dir(&d).map_err(|e| open_error(&d, e))? {
            let p = entry.map_err(|e| open_error(&d, e))?.path();
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
        return Err(open_error(dir, "the folder holds no .parquet files"));
    }
    Ok(files)
}

/// Streams the Parquet files one after the other; all must share the first one's schema.
fn parquet_stream(files: Vec<PathBuf>) -> Result<RowStream, SourceError> {
    let Some(first) = files.first() else {
        let schema: SchemaRef = Arc::new(arrow::datatypes::Schema::empty());
        return Ok(spawn_reader(schema, || Ok(std::iter::empty())));
    };
    let schema = parquet_builder(first)?.schema().clone();
    let mut total = 0u64;
    for file in &files {
        let rows = parquet_builder(file)?.metadata().file_metadata().num_rows();
        total += u64::try_from(rows).unwrap_or(0);
    }
    let expected = schema.clone();
    let mut stream = spawn_reader(schema, move || {
        Ok(files.into_iter().flat_map(move |file| {
            let reader = parquet_builder(&file).and_then(|b| {
                if b.schema().fields() != expected.fields() {
                    return Err(read_error(
                        &file,
                        "its schema differs from the first file's",
                    ));
                }
                b.with_batch_size(READ_BATCH_ROWS)
                    .build()
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
    stream.total_rows = Some(total);
    Ok(stream)
}

fn parquet_builder(file: &Path) -> Result<ParquetRecordBatchReaderBuilder<File>, SourceError> {
    let f = File::open(file).map_err(|e| open_error(file, e))?;
    ParquetRecordBatchReaderBuilder::try_new(f).map_err(|e| open_error(file, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn parquet_streams_in_read_batches_and_knows_its_row_count() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rows.parquet");
        testkit::write_rows_parquet(&path, 10_000).unwrap();
        let mut stream = open(path, FileFormat::Parquet).await.unwrap();
        assert_eq!(stream.total_rows, Some(10_000));
        let mut rows = 0;
        while let Some(batch) = stream.batches.recv().await {
            let batch = batch.unwrap();
            assert!(batch.num_rows() <= READ_BATCH_ROWS);
            rows += batch.num_rows();
        }
        assert_eq!(rows, 10_000);
    }
}
