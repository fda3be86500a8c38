//! Rows through Spark Connect: a table (`identifier`, or `namespace.name`) or a SQL `query`, optionally
//! only this host's shard (`pmod(xxhash64(id_column), N) = I`, computed by Spark).
//!
//! The async client of `apache-spark-connect-core` is used directly from tokio (the high-level crate's
//! calls block on a runtime of their own). The schema comes from the same plan with `LIMIT 0` executed
//! first: it is exactly the Arrow schema the stream will carry, and a missing table, a missing column or
//! bad SQL fails there, before any request. Rows then stream with a non-reattachable ExecutePlan (a
//! reattachable stream may end early without an error in client 4.2.0), one Arrow IPC message per
//! response, into the same two-slot channel as the file sources: the client holds at most a few
//! batches, whatever the size of the result. (Spark itself runs the query to the end and keeps what the
//! client has not read yet in its driver; for very large tables, shard.)

use spark_connect_core::SparkConnectClient;
use tokio::sync::mpsc;

use super::{RowStream, SourceError};
use crate::spark::{self, Relation, one_line};

/// What to read.
pub(crate) struct SparkRead<'a> {
    pub remote: &'a str,
    pub table: Option<&'a str>,
    pub query: Option<&'a str>,
    /// (index, count) and the column to hash.
    pub shard: Option<(u32, u32, &'a str)>,
}

impl SparkRead<'_> {
    /// How errors name the source: the table or the query, and the server.
    fn what(&self) -> String {
        let what = match (self.table, self.query) {
            (Some(t), _) => format!("table `{t}`"),
            (None, Some(q)) => format!("query `{}`", one_line(q, 80)),
            (None, None) => "nothing".into(),
        };
        format!("Spark {what} at {}", spark::display_remote(self.remote))
    }

    fn relation(&self) -> Relation {
        let base = match (self.table, self.query) {
            (Some(table), _) => spark::table(table),
            _ => spark::sql(self.query.unwrap_or_default()),
        };
        match self.shard {
            None => base,
            Some((index, count, column)) => {
                let column = format!("`{}`", column.replace('`', "``"));
                spark::filter(base, format!("pmod(xxhash64({column}), {count}) = {index}"))
            }
        }
    }
}

/// Connects, reads the schema, and starts streaming the rows into a two-slot channel.
pub(crate) async fn open(read: SparkRead<'_>) -> Result<RowStream, SourceError> {
    let what = read.what();
    let fail = |e: spark::Error| SourceError::Open {
        path: what.clone(),
        message: e.0,
    };
    let client: SparkConnectClient = spark::connect(read.remote).await.map_err(fail)?;
    let relation = read.relation();
    let schema = spark::schema(&client, &relation).await.map_err(fail)?;
    let (tx, rx) = mpsc::channel(2);
    tokio::spawn(async move {
        let failed = |e: spark::Error| SourceError::Read {
            path: what.clone(),
            message: e.0,
        };
        let mut results = match spark::query(&client, relation).await {
            Ok(r) => r,
            Err(e) => {
                let _ = tx.send(Err(failed(e))).await;
                return;
            }
        };
        loop {
            let item = match results.next().await {
                Ok(Some(batch)) => Ok(batch),
                Ok(None) => return,
                Err(e) => Err(failed(e)),
            };
            let stop = item.is_err();
            if tx.send(item).await.is_err() || stop {
                return;
            }
        }
    });
    Ok(RowStream {
        schema,
        batches: rx,
        total_rows: None,
    })
}
