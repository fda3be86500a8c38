//! Stage 4: what already landed. A run is identified in the sink by its transaction app id (the
//! pipeline, and the shard); the request_ids that landed with success in earlier runs are skipped,
//! so a killed run resumes without sending anything twice; and the batch versions tell whether the
//! last run of this pipeline finished (an overwrite run that follows a finished one starts afresh).

use std::collections::HashSet;

use arrow::array::AsArray;

use crate::bronze::{LandedRule, id_key, landed_ids, landed_in};
use crate::config::{Pipeline, SinkMode, StatusClass, quote_identifier};
use crate::{delta, spark};

/// The transaction app id a pipeline (and shard) commits under: each shard has its own, so N hosts
/// write one table without sharing a version counter.
pub fn app_id(pipeline: &Pipeline) -> String {
    match pipeline.shard {
        None => format!("sparkwasm/{}", pipeline.id),
        Some(s) => format!("sparkwasm/{}/shard-{}-of-{}", pipeline.id, s.index, s.count),
    }
}

/// The app id a run commits under when it finished (an empty commit carrying the last version).
pub fn finished_app_id(app_id: &str) -> String {
    format!("{app_id}/finished")
}

/// The request_ids that landed with success: the executor's skip predicate. Kept as 128-bit
/// digests ([`id_key`]): 16 bytes a row, whatever the ids.
#[derive(Debug, Default)]
pub struct Landed(HashSet<u128>);

impl Landed {
    /// Whether `request_id` landed with success in an earlier run.
    pub fn contains(&self, request_id: &str) -> bool {
        self.0.contains(&id_key(request_id))
    }

    /// How many request_ids landed.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Nothing landed.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The digests, for a sink that compares two tables.
    pub fn keys(&self) -> &HashSet<u128> {
        &self.0
    }
}

/// Where this pipeline stands in its sink before it sends anything.
#[derive(Debug)]
pub struct Resume {
    /// The transaction app id this run commits under.
    pub app_id: String,
    /// The request_ids not to send again.
    pub landed: Landed,
    /// The last batch version this pipeline committed (0 = none).
    pub last_version: i64,
    /// The last run of this pipeline did not finish: this one resumes it.
    pub resuming: bool,
    /// An overwrite run that starts afresh: its first commit replaces the table's rows.
    pub replace: bool,
}

/// The sink could not be read.
#[derive(Debug, thiserror::Error)]
#[error("sink {what}: {message}")]
pub struct ResumeError {
    what: String,
    message: String,
}

impl Resume {
    /// Reads the pipeline's sink: a Delta table (its txn versions and its successful rows; a Spark
    /// mirror follows it), or a Spark catalog table (its successful rows and its last batch_id).
    /// A sink that does not exist yet holds nothing.
    pub async fn read(pipeline: &Pipeline) -> Result<Resume, ResumeError> {
        let app_id = app_id(pipeline);
        let sink = &pipeline.sink;
        match (&sink.spark_table, &pipeline.spark) {
            (Some(table), Some(spark)) => {
                let (landed, last_version) =
                    spark_landed(&spark.remote, table, &landed_rule(pipeline)).await?;
                Ok(Resume {
                    app_id,
                    landed,
                    last_version,
                    resuming: false,
                    replace: false,
                })
            }
            _ => {
                let path = &sink.location;
                let fail = |e: delta::TableError| ResumeError {
                    what: path.to_string(),
                    message: e.message().to_owned(),
                };
                let Some(table) = delta::open(path).await.map_err(fail)? else {
                    return Ok(Resume {
                        app_id,
                        landed: Landed::default(),
                        last_version: 0,
                        resuming: false,
                        replace: sink.mode == SinkMode::Overwrite,
                    });
                };
                let last_version = delta::txn_version(&table, path, &app_id)
                    .await
                    .map_err(fail)?;
                let finished = delta::txn_version(&table, path, &finished_app_id(&app_id))
                    .await
                    .map_err(fail)?;
                let resuming = last_version > finished;
                let replace = sink.mode == SinkMode::Overwrite && !resuming;
                let landed = if replace {
                    Landed::default()
                } else {
                    let files = delta::data_files(path).await.map_err(fail)?;
                    let rule = landed_rule(pipeline);
                    let ids = tokio::task::spawn_blocking(move || landed_ids(&files, &rule))
                        .await
                        .map_err(|e| ResumeError {
                            what: path.to_string(),
                            message: e.to_string(),
                        })?
                        .map_err(|e| ResumeError {
                            what: path.to_string(),
                            message: e.to_string(),
                        })?;
                    Landed(ids)
                };
                Ok(Resume {
                    app_id,
                    landed,
                    last_version,
                    resuming,
                    replace,
                })
            }
        }
    }
}

/// Which rows of a sink count as landed for `pipeline` (its outcome rules, `--retry-failed`).
pub fn landed_rule(pipeline: &Pipeline) -> LandedRule {
    LandedRule {
        retry_statuses: pipeline
            .execution
            .outcomes
            .retry
            .iter()
            .filter_map(|c| match *c {
                StatusClass::Code(code) => Some((code, code)),
                StatusClass::Range(a, b) => Some((a, b)),
                _ => None,
            })
            .collect(),
        retry_failed: pipeline.retry_failed,
    }
}

/// What landed for good in a Spark catalog table (see [`LandedRule`]), and its last batch_id (0 for
/// a table without one, such as the legacy framework's). A Spark append carries no transaction id:
/// the table itself is the record, whichever run or batch wrote a row.
pub async fn spark_landed(
    remote: &str,
    table: &str,
    rule: &LandedRule,
) -> Result<(Landed, i64), ResumeError> {
    let what = format!("Spark table {table} at {}", spark::display_remote(remote));
    let fail = |message: String| ResumeError {
        what: what.clone(),
        message: format!("cannot read what already landed: {message}"),
    };
    let client = spark::connect(remote).await.map_err(|e| fail(e.0))?;
    let schema = match spark::schema(&client, &spark::table(table)).await {
        Ok(s) => s,
        // Not created yet: nothing landed (the sink creates it before the first request).
        Err(e) if e.is_missing_table() => return Ok((Landed::default(), 0)),
        Err(e) => return Err(fail(e.0)),
    };
    let has = |c: &str| schema.field_with_name(c).is_ok();
    let mut columns = vec!["CAST(request_id AS STRING) AS request_id", "success"];
    columns.extend(["status_code", "outcome"].into_iter().filter(|c| has(c)));
    let rows = spark::sql(&format!(
        "SELECT {} FROM {}",
        columns.join(", "),
        quote_identifier(table)
    ));
    let mut landed = HashSet::new();
    for batch in collect(&client, rows).await.map_err(|e| fail(e.0))? {
        landed_in(&batch, rule, &mut landed).map_err(|e| fail(e.to_string()))?;
    }
    let mut last = 0;
    if has("batch_id") {
        let max = spark::sql(&format!(
            "SELECT CAST(coalesce(max(batch_id), 0) AS BIGINT) FROM {}",
            quote_identifier(table)
        ));
        for batch in collect(&client, max).await.map_err(|e| fail(e.0))? {
            if let Some(column) = batch
                .column(0)
                .as_primitive_opt::<arrow::datatypes::Int64Type>()
                && !column.is_empty()
            {
                last = column.value(0);
            }
        }
    }
    Ok((Landed(landed), last))
}

/// Every batch of a small query's answer.
async fn collect(
    client: &spark_connect_core::SparkConnectClient,
    root: spark::Relation,
) -> Result<Vec<arrow::record_batch::RecordBatch>, spark::Error> {
    let mut results = spark::query(client, root).await?;
    let mut out = Vec::new();
    while let Some(batch) = results.next().await? {
        out.push(batch);
    }
    Ok(out)
}
