//! Reading a data file. A local file is opened; an object in a store is read by ranges as the reader
//! advances, never fetched whole: a CSV or JSON-lines object [`BLOCK`] bytes at a time, a Parquet
//! object its footer first and then one row group at a time, only the columns asked for (one
//! request per row group, its column chunks coalesced by the parquet crate's object reader). So the
//! memory a source or a resume needs does not grow with the size of its files, and a dry run of a
//! large file reads only its beginning.
//!
//! Everything here blocks: it runs on a blocking-pool thread, which waits on the runtime for each
//! request.

use std::fs::File;
use std::io::{self, BufRead, Read, Seek, SeekFrom};
use std::ops::Range;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use bytes::Bytes;
use futures::StreamExt;
use object_store::path::Path as StorePath;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt as _};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder,
};
use parquet::arrow::async_reader::{ParquetObjectReader, ParquetRecordBatchStreamBuilder};
use parquet::errors::ParquetError;
use tokio::runtime::Handle;

use super::{DataFile, describe};

/// Rows per Arrow batch when a file is read. Small enough that two in flight stay cheap, large
/// enough to amortise.
pub const READ_ROWS: usize = 4096;

/// How much of a text object one request reads.
pub const BLOCK: u64 = 8 << 20;

/// How much of a Parquet object's end the first request reads: the footer of most files at once.
const FOOTER_HINT: usize = 512 << 10;

/// What CSV and JSON readers need.
pub trait ReadSeek: BufRead + Seek + Send {}
impl<T: BufRead + Seek + Send> ReadSeek for T {}

/// A file's record batches, in order.
pub type Batches = Box<dyn Iterator<Item = Result<RecordBatch, String>> + Send>;

impl DataFile {
    /// A reader of the file's bytes (for CSV and JSON lines): a local file, buffered; an object,
    /// read [`BLOCK`] bytes at a time as the reader advances.
    pub fn reader(&self) -> Result<Box<dyn ReadSeek>, String> {
        match self {
            DataFile::Local(p) => File::open(p)
                .map(|f| Box::new(io::BufReader::new(f)) as Box<dyn ReadSeek>)
                .map_err(|e| e.to_string()),
            DataFile::Remote { store, path, .. } => Ok(Box::new(RangeReader::open(
                store.clone(),
                path.clone(),
                BLOCK,
            )?)),
        }
    }

    /// The Parquet file, its footer read (for an object: by a ranged request of its end).
    pub fn parquet(&self) -> Result<ParquetFile, String> {
        let options = ArrowReaderOptions::default;
        match self {
            DataFile::Local(p) => {
                let file = File::open(p).map_err(|e| e.to_string())?;
                let meta =
                    ArrowReaderMetadata::load(&file, options()).map_err(|e| parquet_error(&e))?;
                Ok(ParquetFile {
                    meta,
                    input: Input::Local(file),
                })
            }
            DataFile::Remote {
                store, path, size, ..
            } => {
                let handle = Handle::current();
                let size = match size {
                    Some(size) => *size,
                    None => {
                        handle
                            .block_on(store.head(path))
                            .map_err(|e| describe(&e))?
                            .size
                    }
                };
                let mut reader = ParquetObjectReader::new(store.clone(), path.clone())
                    .with_file_size(size)
                    .with_footer_size_hint(FOOTER_HINT);
                let meta = handle
                    .block_on(ArrowReaderMetadata::load_async(&mut reader, options()))
                    .map_err(|e| parquet_error(&e))?;
                Ok(ParquetFile {
                    meta,
                    input: Input::Remote(reader, handle),
                })
            }
        }
    }
}

/// A Parquet file whose footer was read.
pub struct ParquetFile {
    meta: ArrowReaderMetadata,
    input: Input,
}

enum Input {
    Local(File),
    Remote(ParquetObjectReader, Handle),
}

impl ParquetFile {
    /// The file's Arrow schema.
    pub fn schema(&self) -> &SchemaRef {
        self.meta.schema()
    }

    /// The file's Parquet schema (to build a projection).
    pub fn parquet_schema(&self) -> &parquet::schema::types::SchemaDescriptor {
        self.meta.parquet_schema()
    }

    /// Rows in the file, from its footer.
    pub fn num_rows(&self) -> u64 {
        u64::try_from(self.meta.metadata().file_metadata().num_rows()).unwrap_or(0)
    }

    /// The file's rows (`projection`: only these columns), `batch_size` rows at a time; an object's
    /// row groups are fetched one at a time, as the batches are taken.
    pub fn batches(
        self,
        projection: Option<ProjectionMask>,
        batch_size: usize,
    ) -> Result<Batches, String> {
        let projection = projection.unwrap_or(ProjectionMask::all());
        match self.input {
            Input::Local(file) => {
                let reader = ParquetRecordBatchReaderBuilder::new_with_metadata(file, self.meta)
                    .with_projection(projection)
                    .with_batch_size(batch_size)
                    .build()
                    .map_err(|e| parquet_error(&e))?;
                Ok(Box::new(reader.map(|b| b.map_err(|e| e.to_string()))))
            }
            Input::Remote(reader, handle) => {
                let mut stream =
                    ParquetRecordBatchStreamBuilder::new_with_metadata(reader, self.meta)
                        .with_projection(projection)
                        .with_batch_size(batch_size)
                        .build()
                        .map_err(|e| parquet_error(&e))?;
                Ok(Box::new(std::iter::from_fn(move || {
                    handle
                        .block_on(stream.next())
                        .map(|b| b.map_err(|e| parquet_error(&e)))
                })))
            }
        }
    }
}

/// A Parquet error; a store's error inside it described as the store's errors are.
fn parquet_error(e: &ParquetError) -> String {
    if let ParquetError::External(inner) = e
        && let Some(store) = inner.downcast_ref::<object_store::Error>()
    {
        return describe(store);
    }
    e.to_string()
}

/// An object read by ranges of `block` bytes as the reader advances. When the store gave an ETag,
/// every request after the first is conditional on it, so an object replaced while it is read
/// fails the read instead of mixing two versions (a store without ETags: the object is read up to
/// the size it had at the first request).
pub(super) struct RangeReader {
    store: Arc<dyn ObjectStore>,
    path: StorePath,
    handle: Handle,
    block: u64,
    size: u64,
    e_tag: Option<String>,
    pos: u64,
    /// The bytes read last and where they start.
    buffer: Bytes,
    buffer_start: u64,
}

impl RangeReader {
    /// Opens the object with its first block (its size and ETag come with it).
    pub(super) fn open(
        store: Arc<dyn ObjectStore>,
        path: StorePath,
        block: u64,
    ) -> Result<Self, String> {
        let handle = Handle::current();
        let first = ranged_get(&handle, &store, &path, 0..block, None).map_err(|e| describe(&e));
        let (meta, buffer) = match first {
            Ok(got) => got,
            // An object no larger than a block is read whole when the range failed: an empty one
            // has no range to ask for, and some stores answer a range covering the whole object
            // with a 200, which object_store refuses as "not partial".
            Err(e) => match handle.block_on(store.head(&path)) {
                Ok(meta) if meta.size <= block => {
                    let whole = handle
                        .block_on(async { store.get(&path).await?.bytes().await })
                        .map_err(|e| describe(&e))?;
                    (meta, whole)
                }
                _ => return Err(e),
            },
        };
        Ok(RangeReader {
            store,
            path,
            handle,
            block,
            size: meta.size,
            e_tag: meta.e_tag,
            pos: 0,
            buffer,
            buffer_start: 0,
        })
    }

    /// The bytes of `range`, if the object still has the ETag it had when it was opened.
    fn fetch(&self, range: Range<u64>) -> io::Result<Bytes> {
        ranged_get(
            &self.handle,
            &self.store,
            &self.path,
            range,
            self.e_tag.clone(),
        )
        .map(|(_, bytes)| bytes)
        .map_err(|e| match e {
            object_store::Error::Precondition { .. } => {
                io::Error::other("the object changed while it was being read")
            }
            e => io::Error::other(describe(&e)),
        })
    }
}

/// One ranged GET (conditional on `if_match`): the object's metadata and the bytes.
fn ranged_get(
    handle: &Handle,
    store: &Arc<dyn ObjectStore>,
    path: &StorePath,
    range: Range<u64>,
    if_match: Option<String>,
) -> object_store::Result<(object_store::ObjectMeta, Bytes)> {
    let options = GetOptions {
        range: Some(GetRange::Bounded(range)),
        if_match,
        ..Default::default()
    };
    handle.block_on(async {
        let got = store.get_opts(path, options).await?;
        let meta = got.meta.clone();
        Ok((meta, got.bytes().await?))
    })
}

impl BufRead for RangeReader {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.pos >= self.size {
            return Ok(&[]);
        }
        let end = self.buffer_start + self.buffer.len() as u64;
        if self.pos < self.buffer_start || self.pos >= end {
            let got = self.fetch(self.pos..(self.pos + self.block).min(self.size))?;
            if got.is_empty() {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the object ended before its size",
                ));
            }
            self.buffer = got;
            self.buffer_start = self.pos;
        }
        Ok(&self.buffer[(self.pos - self.buffer_start) as usize..])
    }

    fn consume(&mut self, amount: usize) {
        self.pos += amount as u64;
    }
}

impl Read for RangeReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let available = self.fill_buf()?;
        let n = available.len().min(out.len());
        out[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl Seek for RangeReader {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let target = match to {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::End(d) => self.size.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos = target.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "seek before the object's start",
            )
        })?;
        Ok(self.pos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;

    /// `bytes` as an object in object_store's in-memory store (a real implementation of the trait).
    async fn stored(bytes: Vec<u8>) -> (Arc<dyn ObjectStore>, StorePath) {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let path = StorePath::from("data/file.csv");
        store.put(&path, bytes.into()).await.unwrap();
        (store, path)
    }

    fn content(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 % 251) as u8).collect()
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_range_reader_reads_the_whole_object_across_blocks_and_seeks() {
        let data = content(100_003);
        let (store, path) = stored(data.clone()).await;
        tokio::task::spawn_blocking(move || {
            let mut r = RangeReader::open(store.clone(), path.clone(), 4096).unwrap();
            let mut all = vec![];
            r.read_to_end(&mut all).unwrap();
            assert_eq!(all, data, "read across 25 blocks");
            // Back to the start (a CSV reader rewinds after inferring the schema), and to the end.
            r.rewind().unwrap();
            let mut first = [0u8; 10];
            r.read_exact(&mut first).unwrap();
            assert_eq!(first[..], data[..10]);
            r.seek(SeekFrom::End(-3)).unwrap();
            let mut last = vec![];
            r.read_to_end(&mut last).unwrap();
            assert_eq!(last, data[data.len() - 3..]);
            assert!(r.seek(SeekFrom::Current(-200_000)).is_err());
            // Lines across a block boundary come out whole.
            let lines: Vec<u8> = (0..5000)
                .flat_map(|i| format!("{i}\n").into_bytes())
                .collect();
            let rt = Handle::current();
            let (store, path) = rt.block_on(stored(lines.clone()));
            let r = RangeReader::open(store, path, 1000).unwrap();
            let read: Vec<String> = r.lines().map(Result::unwrap).collect();
            assert_eq!(read.len(), 5000);
            assert!(read.iter().enumerate().all(|(i, l)| *l == i.to_string()));
        })
        .await
        .unwrap();
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn an_object_replaced_while_it_is_read_fails_the_read() {
        let (store, path) = stored(content(10_000)).await;
        let writer = store.clone();
        let at = path.clone();
        tokio::task::spawn_blocking(move || {
            let mut r = RangeReader::open(store, path, 4096).unwrap();
            let mut first = vec![0u8; 4096];
            r.read_exact(&mut first).unwrap();
            Handle::current()
                .block_on(writer.put(&at, content(10_000).into()))
                .unwrap();
            let err = r.read_to_end(&mut vec![]).unwrap_err();
            assert!(err.to_string().contains("changed while"), "{err}");
        })
        .await
        .unwrap();
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn an_empty_object_reads_as_empty() {
        let (store, path) = stored(vec![]).await;
        tokio::task::spawn_blocking(move || {
            let mut r = RangeReader::open(store, path, 4096).unwrap();
            let mut all = vec![];
            assert_eq!(r.read_to_end(&mut all).unwrap(), 0);
        })
        .await
        .unwrap();
    }
}
