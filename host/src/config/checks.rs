//! The rules that span sections (or come from the command line): a Spark sink or source needs
//! `spark`, a mirror needs a Delta path and no overwrite, `--shard` needs a Spark source with an
//! id column and an appending sink. Each error points at the key it is about.

use super::Shard;
use super::error::ConfigError;
use super::tables::{Sink, SinkMode, Source, SourceLocation};
use super::tree::{Node, Pos};

/// The sections the rules look at, as far as they could be read.
pub(crate) struct Parts<'a> {
    /// `tables.source`.
    pub(crate) source: Option<&'a Source>,
    /// `tables.sink`.
    pub(crate) sink: Option<&'a Sink>,
    /// The pipeline has `spark`.
    pub(crate) has_spark: bool,
}

/// Checks `p` (read from `root`, run as `shard`) and records what breaks a rule.
pub(crate) fn run(p: Parts<'_>, root: &Node, shard: Option<Shard>, errors: &mut Vec<ConfigError>) {
    let at = |key: &str| -> Pos {
        let mut path = key;
        loop {
            if let Some(node) = root.find(path) {
                return node.pos;
            }
            match path.rsplit_once('.') {
                Some((parent, _)) => path = parent,
                None => return root.pos,
            }
        }
    };
    let mut error = |key: &str, message: &str| {
        errors.push(ConfigError::new(key, at(key), message));
    };
    let has_spark = p.has_spark;
    if let Some(sink) = p.sink {
        sink_rules(sink, has_spark, root, &mut error);
    }
    if let Some(SourceLocation::Spark { table, query }) = p.source.map(|s| &s.location) {
        if !has_spark {
            error(
                "tables.source.path",
                "missing required key: path (a local file or folder), or set spark.remote to read a table through Spark",
            );
        } else if table.is_none() && query.is_none() {
            error(
                "tables.source",
                "a Spark source needs identifier, name (with namespace) or query",
            );
        }
    }
    if let Some(shard) = shard {
        if let Some(source) = p.source
            && source.id_column.is_none()
        {
            error(
                "tables.source",
                &format!(
                    "--shard {shard} needs tables.source.id_column: a row's shard is the hash of its id"
                ),
            );
        }
        if let Some(sink) = p.sink
            && sink.mode == SinkMode::Overwrite
            && sink.spark_table.is_none()
        {
            error(
                "tables.sink.mode",
                &format!(
                    "--shard {shard} with mode: overwrite: each shard would replace the rows the others landed; use mode: append (empty the table before the first shard starts)"
                ),
            );
        }
    }
}

/// A mirror needs Spark, a Delta path and no overwrite; a Spark sink only appends.
fn sink_rules(sink: &Sink, has_spark: bool, root: &Node, error: &mut impl FnMut(&str, &str)) {
    if sink.mirror.is_some() {
        let key = "tables.sink.also_spark_table";
        if sink.mode == SinkMode::Overwrite {
            error(
                key,
                "an overwrite would replace the Delta table but not the Spark table: use mode: append",
            );
        }
        if !has_spark {
            error(key, "a Spark table needs spark.remote");
        } else if root.find("tables.sink.path").is_none() {
            error(
                key,
                "also_spark_table goes with path (a Delta table written as well); without path, name the Spark table with namespace and name",
            );
        }
    }
    if sink.spark_table.is_some() && sink.mode == SinkMode::Overwrite {
        error(
            "tables.sink.mode",
            "a Spark sink is append-only (a rerun resumes from the rows in it); give path: for a Delta table that can be overwritten",
        );
    }
}
