//! The Delta sink's version counter and what a later run reads back from it (`Resume`): one commit
//! per batch under txn(app_id, n) with batch_id n, a resumed run that continues the count, and an
//! overwrite run that replaces a finished run's rows but resumes a killed one; and how the data files
//! are written (no dictionary for the columns that do not repeat).

use std::path::Path;

use arrow::array::AsArray;

use super::delta::DeltaSink;
use super::record::Record;
use crate::config::Pipeline;
use crate::config::tests::load;
use crate::resume::{Resume, finished_app_id};

fn pipeline(sink: &Path, mode: &str) -> Pipeline {
    load(&format!(
        "tables: {{source: {{path: rows.csv, id_column: id}}, sink: {{path: \"{}\", mode: {mode}}}}}\n",
        sink.display()
    ))
}

fn records(ids: std::ops::Range<u32>, success: bool) -> Vec<Record> {
    ids.map(|i| Record {
        request_id: i.to_string(),
        success,
        outcome: if success { "success" } else { "retry" },
        status_code: Some(if success { 200 } else { 500 }),
        ..Record::default()
    })
    .collect()
}

/// (request_id, batch_id) of every row of the table's active files, sorted.
async fn rows(path: &Path) -> Vec<(String, i64)> {
    let mut out = Vec::new();
    for file in crate::delta::data_files(&local(path)).await.unwrap() {
        let reader = file.parquet().unwrap().batches(None, 4096).unwrap();
        for batch in reader {
            let batch = batch.unwrap();
            let ids = batch
                .column_by_name("request_id")
                .unwrap()
                .as_string::<i32>()
                .clone();
            let batch_ids = batch.column_by_name("batch_id").unwrap().clone();
            let batch_ids = batch_ids.as_primitive::<arrow::datatypes::Int64Type>();
            for i in 0..batch.num_rows() {
                out.push((ids.value(i).to_owned(), batch_ids.value(i)));
            }
        }
    }
    out.sort();
    out
}

fn local(path: &Path) -> crate::store::Location {
    crate::store::Location::Local(path.to_owned())
}

/// A sink on the local table at `path`, for a run that starts as `resume` says.
async fn open(path: &Path, resume: &Resume) -> DeltaSink {
    DeltaSink::open(&local(path), resume, &Default::default())
        .await
        .unwrap()
}

async fn txn(path: &Path, app_id: &str) -> i64 {
    let table = crate::delta::open(&local(path)).await.unwrap().unwrap();
    crate::delta::txn_version(&table, &local(path), app_id)
        .await
        .unwrap()
}

#[tokio::test]
async fn each_batch_is_one_commit_and_a_resumed_run_continues_the_count() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bronze");
    let p = pipeline(&path, "append");

    let first = Resume::read(&p).await.unwrap();
    assert_eq!(
        (first.last_version, first.resuming, first.replace),
        (0, false, false)
    );
    let mut sink = open(&path, &first).await;
    let v1 = sink.commit(&records(0..3, true)).await.unwrap();
    let v2 = sink.commit(&records(3..5, false)).await.unwrap();
    assert_eq!(v2, v1 + 1, "one table version per batch");
    assert_eq!(sink.last_batch(), 2);
    assert_eq!(txn(&path, &first.app_id).await, 2);
    drop(sink); // killed: never finished

    let second = Resume::read(&p).await.unwrap();
    assert_eq!(
        (second.last_version, second.resuming, second.replace),
        (2, true, false)
    );
    // The successful rows are skipped, the failed ones are sent again.
    assert_eq!(second.landed.len(), 3);
    assert!(second.landed.contains("2") && !second.landed.contains("3"));
    let mut sink = open(&path, &second).await;
    sink.commit(&records(3..5, true)).await.unwrap();
    sink.finish().await.unwrap();
    assert_eq!(txn(&path, &second.app_id).await, 3);
    assert_eq!(txn(&path, &finished_app_id(&second.app_id)).await, 3);
    let landed = rows(&path).await;
    let batch_of = |id: &str| {
        landed
            .iter()
            .filter(|r| r.0 == id)
            .map(|r| r.1)
            .collect::<Vec<_>>()
    };
    assert_eq!(batch_of("0"), [1]);
    assert_eq!(
        batch_of("3"),
        [2, 3],
        "the failed attempt and the retry both stay"
    );

    let third = Resume::read(&p).await.unwrap();
    assert_eq!(
        (third.last_version, third.resuming, third.replace),
        (3, false, false)
    );
    assert_eq!(third.landed.len(), 5);
}

#[tokio::test]
async fn overwrite_replaces_a_finished_run_but_resumes_a_killed_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bronze");
    let p = pipeline(&path, "overwrite");

    let first = Resume::read(&p).await.unwrap();
    assert!(
        first.replace,
        "a new table: the first commit replaces nothing, harmlessly"
    );
    let mut sink = open(&path, &first).await;
    sink.commit(&records(0..4, true)).await.unwrap();
    sink.commit(&records(4..6, true)).await.unwrap();
    sink.finish().await.unwrap();

    // After a finished run: start afresh, nothing counts as landed, the first commit removes the rows.
    let second = Resume::read(&p).await.unwrap();
    assert_eq!(
        (second.last_version, second.resuming, second.replace),
        (2, false, true)
    );
    assert!(second.landed.is_empty());
    let mut sink = open(&path, &second).await;
    sink.commit(&records(0..2, true)).await.unwrap();
    assert_eq!(
        rows(&path).await,
        [("0".to_owned(), 3), ("1".to_owned(), 3)]
    );
    drop(sink); // killed

    // After a killed overwrite run: resume it (its rows stay, the old run's stay gone).
    let third = Resume::read(&p).await.unwrap();
    assert_eq!(
        (third.last_version, third.resuming, third.replace),
        (3, true, false)
    );
    assert_eq!(third.landed.len(), 2);
    let mut sink = open(&path, &third).await;
    sink.commit(&records(2..6, true)).await.unwrap();
    sink.finish().await.unwrap();
    let landed = rows(&path).await;
    assert_eq!(landed.len(), 6);
    assert_eq!(landed.iter().filter(|r| r.1 == 4).count(), 4);
}

#[tokio::test]
async fn data_files_carry_no_dictionary_for_the_columns_that_do_not_repeat() {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bronze");
    let p = pipeline(&path, "append");
    let resume = Resume::read(&p).await.unwrap();
    let mut sink = open(&path, &resume).await;
    let mut batch = records(0..50, true);
    for (i, r) in batch.iter_mut().enumerate() {
        r.method = "GET".into();
        r.url = format!("http://api/items/{i}");
        r.body_text = Some(format!("{{\"id\":{i}}}"));
    }
    sink.commit(&batch).await.unwrap();
    let files = crate::delta::data_files(&local(&path)).await.unwrap();
    assert_eq!(files.len(), 1);
    let crate::store::DataFile::Local(file) = &files[0] else {
        panic!("a local table has local files")
    };
    let reader = SerializedFileReader::new(std::fs::File::open(file).unwrap()).unwrap();
    let dictionary: std::collections::BTreeMap<String, bool> = reader
        .metadata()
        .row_group(0)
        .columns()
        .iter()
        .map(|c| {
            (
                c.column_descr().name().to_owned(),
                c.dictionary_page_offset().is_some(),
            )
        })
        .collect();
    for column in super::delta::UNIQUE_COLUMNS {
        assert_eq!(
            dictionary.get(column),
            Some(&false),
            "{column}: {dictionary:?}"
        );
    }
    // The repeating ones keep theirs.
    assert_eq!(dictionary.get("method"), Some(&true), "{dictionary:?}");
    assert_eq!(dictionary.get("outcome"), Some(&true), "{dictionary:?}");
}
