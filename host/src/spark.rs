//! The Spark Connect client shared by the Spark source and the Spark sink: the async client of
//! `apache-spark-connect-core`, used directly from tokio (the high-level crate's calls block on a runtime
//! of their own), with plans built from the protocol's messages.

use arrow::datatypes::SchemaRef;
use arrow::ipc::reader::StreamReader;
use arrow::record_batch::RecordBatch;
use spark_connect_core::{ChannelBuilder, RetryPolicy, SparkConnectClient, SparkError};
use spark_connect_proto as proto;

pub use proto::Relation;

/// What Spark Connect answered instead of a result, on one line (its first sentence, and where in
/// a query): see [`message`].
#[derive(Clone, Debug, thiserror::Error)]
#[error("{0}")]
pub struct Error(pub String);

impl Error {
    /// Whether Spark said the table or view does not exist.
    pub fn is_missing_table(&self) -> bool {
        self.0.contains("TABLE_OR_VIEW_NOT_FOUND")
    }
}

impl From<String> for Error {
    fn from(message: String) -> Self {
        Error(message)
    }
}

/// The address for messages: `sc://host:port`, without its `;key=value` parameters (a token may be
/// among them).
pub fn display_remote(remote: &str) -> &str {
    remote
        .split(';')
        .next()
        .unwrap_or(remote)
        .trim_end_matches('/')
}

/// A connected client, failing fast: the crate's default retries an unreachable server for about ten
/// minutes.
pub async fn connect(remote: &str) -> Result<SparkConnectClient, Error> {
    let builder = ChannelBuilder::parse(remote)
        .map_err(|e| Error(format!("not a Spark Connect address: {}", message(&e))))?;
    let mut client = SparkConnectClient::connect(&builder)
        .await
        .map_err(|e| Error(format!("cannot connect: {}", message(&e))))?;
    client.set_retry_policy(RetryPolicy {
        max_retries: Some(2),
        initial_backoff_ms: 200,
        max_backoff_ms: Some(1000),
        ..RetryPolicy::default()
    });
    Ok(client)
}

/// A relation of `rel_type`.
pub fn rel(rel_type: proto::relation::RelType) -> Relation {
    Relation {
        rel_type: Some(rel_type),
        ..Default::default()
    }
}

/// A read of the table `identifier`.
pub fn table(identifier: &str) -> Relation {
    rel(proto::relation::RelType::Read(proto::Read {
        read_type: Some(proto::read::ReadType::NamedTable(proto::read::NamedTable {
            unparsed_identifier: identifier.to_owned(),
            ..Default::default()
        })),
        ..Default::default()
    }))
}

/// A SQL query.
pub fn sql(query: &str) -> Relation {
    rel(proto::relation::RelType::Sql(proto::Sql {
        query: query.to_owned(),
        ..Default::default()
    }))
}

/// `input` filtered by a Spark SQL boolean expression.
pub fn filter(input: Relation, condition: String) -> Relation {
    rel(proto::relation::RelType::Filter(Box::new(proto::Filter {
        input: Some(Box::new(input)),
        condition: Some(proto::Expression {
            expr_type: Some(proto::expression::ExprType::ExpressionString(
                proto::expression::ExpressionString {
                    expression: condition,
                },
            )),
            ..Default::default()
        }),
    })))
}

/// `input`, its first `n` rows.
pub fn limit(input: Relation, n: i32) -> Relation {
    rel(proto::relation::RelType::Limit(Box::new(proto::Limit {
        input: Some(Box::new(input)),
        limit: n,
    })))
}

/// A result being streamed: Arrow batches as the server sends them.
pub struct Results {
    stream: tonic::Streaming<proto::ExecutePlanResponse>,
    pending: std::vec::IntoIter<RecordBatch>,
    /// The schema, once the first batch told it.
    pub schema: Option<SchemaRef>,
}

impl Results {
    /// The next batch, or `None` at the end. A non-reattachable stream: the server never cuts it short
    /// (a reattachable one may end early without an error in client 4.2.0).
    pub async fn next(&mut self) -> Result<Option<RecordBatch>, Error> {
        loop {
            if let Some(batch) = self.pending.next() {
                return Ok(Some(batch));
            }
            let response = match self.stream.message().await {
                Ok(Some(r)) => r,
                Ok(None) => return Ok(None),
                Err(status) => return Err(Error(message(&SparkError::from_grpc_status(status)))),
            };
            let Some(proto::execute_plan_response::ResponseType::ArrowBatch(b)) =
                response.response_type
            else {
                continue;
            };
            let reader = StreamReader::try_new(std::io::Cursor::new(b.data), None)
                .map_err(|e| Error(format!("unreadable Arrow data from Spark: {e}")))?;
            self.schema.get_or_insert(reader.schema());
            let batches = reader
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| Error(format!("unreadable Arrow data from Spark: {e}")))?;
            self.pending = batches.into_iter();
        }
    }
}

/// Runs a SQL statement (DDL) to its end.
pub async fn run_sql(client: &SparkConnectClient, statement: &str) -> Result<(), Error> {
    let mut results = query(client, sql(statement)).await?;
    while results.next().await?.is_some() {}
    Ok(())
}

/// Runs a relation and streams its rows.
pub async fn query(client: &SparkConnectClient, root: Relation) -> Result<Results, Error> {
    let stream = execute(client, proto::plan::OpType::Root(root)).await?;
    Ok(Results {
        stream,
        pending: Vec::new().into_iter(),
        schema: None,
    })
}

/// The exact Arrow schema of a relation's result: the relation run with `LIMIT 0` (a missing table or
/// column, or bad SQL, fails here).
pub async fn schema(client: &SparkConnectClient, root: &Relation) -> Result<SchemaRef, Error> {
    let mut results = query(client, limit(root.clone(), 0)).await?;
    while results.next().await?.is_some() {}
    results
        .schema
        .ok_or_else(|| Error("the server sent no schema for the result".into()))
}

/// A batch as one Arrow IPC stream (what a local relation carries).
pub fn to_ipc(batch: &RecordBatch) -> Result<Vec<u8>, Error> {
    let mut ipc = Vec::new();
    let mut writer = arrow::ipc::writer::StreamWriter::try_new(&mut ipc, &batch.schema())
        .map_err(|e| Error(e.to_string()))?;
    writer.write(batch).map_err(|e| Error(e.to_string()))?;
    writer.finish().map_err(|e| Error(e.to_string()))?;
    drop(writer);
    Ok(ipc)
}

/// Appends Arrow IPC data to a catalog table (created on the first append, columns matched by name).
pub async fn append(client: &SparkConnectClient, table: &str, ipc: Vec<u8>) -> Result<(), Error> {
    let write = proto::WriteOperation {
        input: Some(rel(proto::relation::RelType::LocalRelation(
            proto::LocalRelation {
                data: Some(ipc.into()),
                ..Default::default()
            },
        ))),
        mode: proto::write_operation::SaveMode::Append as i32,
        save_type: Some(proto::write_operation::SaveType::Table(
            proto::write_operation::SaveTable {
                table_name: table.to_owned(),
                save_method: proto::write_operation::save_table::TableSaveMethod::SaveAsTable
                    as i32,
            },
        )),
        ..Default::default()
    };
    let command = proto::Command {
        command_type: Some(proto::command::CommandType::WriteOperation(write)),
    };
    let mut stream = execute(client, proto::plan::OpType::Command(command)).await?;
    loop {
        match stream.message().await {
            Ok(Some(_)) => {}
            Ok(None) => return Ok(()),
            Err(status) => return Err(Error(message(&SparkError::from_grpc_status(status)))),
        }
    }
}

async fn execute(
    client: &SparkConnectClient,
    op: proto::plan::OpType,
) -> Result<tonic::Streaming<proto::ExecutePlanResponse>, Error> {
    let request = proto::ExecutePlanRequest {
        session_id: client.session_id().to_owned(),
        user_context: Some(proto::UserContext::default()),
        plan: Some(proto::Plan { op_type: Some(op) }),
        ..Default::default()
    };
    client
        .execute_plan(request)
        .await
        .map_err(|e| Error(message(&e)))
}

/// The server's own message, short and on one line: its first sentence (Spark's messages go on with
/// advice and the plan) and, for SQL, where in the query. The crate's Display repeats the error class.
pub fn message(e: &SparkError) -> String {
    let text = if e.message.trim().is_empty() {
        e.to_string()
    } else {
        e.message.clone()
    };
    let text = one_line(&text, 2000);
    if text.contains("tcp connect error") || text.contains("service is currently unavailable") {
        return format!("{text} (is a Spark Connect server listening there?)");
    }
    let mut short = match text.find(". ") {
        Some(end) => text[..=end].to_owned(),
        None => text.clone(),
    };
    // A misspelt column: Spark's suggestions are the useful part.
    if let Some(at) = text.find("Did you mean")
        && let Some(len) = text[at..].find("].")
    {
        short.push(' ');
        short.push_str(&text[at..at + len + 2]);
    }
    if let Some(at) = text.find("(line ")
        && let Some(len) = text[at..].find(')')
        && !short.contains("(line ")
    {
        short.push(' ');
        short.push_str(&text[at..=at + len]);
    }
    one_line(&short, 400)
}

/// `s` on one line, at most `max` characters.
pub fn one_line(s: &str, max: usize) -> String {
    let line = s.split_whitespace().collect::<Vec<_>>().join(" ");
    match line.char_indices().nth(max) {
        Some((at, _)) => format!("{}...", &line[..at]),
        None => line,
    }
}
