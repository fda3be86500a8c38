//! `tables`: where the rows come from (`source`: a local file or folder, or a Spark table or
//! query), where the bronze table goes (`sink`), and which columns become request parameters
//! (`column_mapping`).

use std::path::{Path, PathBuf};

use crate::store::Location;

use super::keys::{KeySpec, Kind};
use super::probe::Probe;
use super::walk::{Field, Section, Walker};

/// `tables.source`.
#[derive(Clone, Debug)]
pub struct Source {
    /// Where the rows are.
    pub location: SourceLocation,
    /// The column whose value is a row's request_id; without it, a hash of the whole row.
    pub id_column: Option<String>,
    /// Columns that must be in the source (checked before any request).
    pub required_columns: Vec<String>,
    /// Columns the source must have, with their types (legacy `table_schema`).
    pub table_schema: Vec<SchemaColumn>,
}

/// A column of `tables.source.table_schema`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SchemaColumn {
    /// Its name.
    pub name: String,
    /// Its type, as the legacy format names it: string, integer, long, float, double, boolean,
    /// timestamp, date, binary, array, map, struct.
    pub kind: String,
    /// Whether it may hold nulls (legacy default true).
    pub nullable: bool,
}

/// The column types `table_schema` names.
pub const SCHEMA_TYPES: &[&str] = &[
    "string",
    "integer",
    "long",
    "float",
    "double",
    "boolean",
    "timestamp",
    "date",
    "binary",
    "array",
    "map",
    "struct",
];

/// Where a source's rows are.
#[derive(Clone, Debug)]
pub enum SourceLocation {
    /// A file or folder, local or on an object store.
    File {
        /// The file or folder.
        path: Location,
        /// How to read it.
        format: FileFormat,
    },
    /// A table or a query read through Spark Connect.
    Spark {
        /// `namespace.name`, or an identifier.
        table: Option<String>,
        /// A SQL query instead of a table.
        query: Option<String>,
    },
}

/// The formats of a local source. One table ([`FORMATS`]): a format's name in the file and the
/// extensions that imply it; the source stage opens each (`source/files.rs`, an exhaustive match, so
/// a new variant here is one more arm there). The table lives here, not in `source/`, because the
/// validator needs the names and extensions before any source exists, and a stage never imports a
/// later one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileFormat {
    /// A Parquet file, or a folder of them.
    Parquet,
    /// CSV with a header line.
    Csv,
    /// JSON lines.
    Jsonl,
    /// A Delta table's current version.
    Delta,
}

/// Each format, its name and its extensions.
pub(crate) const FORMATS: [(FileFormat, &str, &[&str]); 4] = [
    (FileFormat::Parquet, "parquet", &["parquet", "pq"]),
    (FileFormat::Csv, "csv", &["csv"]),
    (FileFormat::Jsonl, "jsonl", &["jsonl", "ndjson", "json"]),
    (FileFormat::Delta, "delta", &[]),
];

/// The names of [`FORMATS`], in its order.
pub(crate) const FORMAT_NAMES: [&str; FORMATS.len()] = {
    let mut names = [""; FORMATS.len()];
    let mut i = 0;
    while i < FORMATS.len() {
        names[i] = FORMATS[i].1;
        i += 1;
    }
    names
};

impl FileFormat {
    /// The format named `name` in a pipeline file.
    fn named(name: &str) -> Option<Self> {
        FORMATS
            .iter()
            .find(|(_, n, _)| *n == name)
            .map(|(f, ..)| *f)
    }

    /// The format a local file's extension implies.
    pub(crate) fn of_extension(path: &Path) -> Option<Self> {
        Self::of_location(&Location::Local(path.to_owned()))
    }

    /// The format a file's extension implies, local or remote.
    pub(crate) fn of_location(location: &Location) -> Option<Self> {
        let ext = location.extension()?;
        FORMATS
            .iter()
            .find(|(_, _, exts)| exts.contains(&ext.as_str()))
            .map(|(f, ..)| *f)
    }
}

/// `tables.sink`.
#[derive(Clone, Debug)]
pub struct Sink {
    /// The Delta table's location: a local folder or an object-store URL (unused when
    /// `spark_table` is set).
    pub location: Location,
    /// Append or overwrite.
    pub mode: SinkMode,
    /// With `spark.remote` and no `path`: the Spark catalog table (`namespace.name`) the bronze
    /// batches are appended to instead.
    pub spark_table: Option<String>,
    /// With `path`: a Spark catalog table every committed batch is also appended to
    /// (`tables.sink.also_spark_table`).
    pub mirror: Option<String>,
    /// Partition columns of a new Delta table (bronze columns).
    pub partition_by: Vec<String>,
    /// Properties of a new Delta table.
    pub table_properties: Vec<(String, String)>,
}

impl std::fmt::Display for Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.spark_table {
            Some(table) => write!(f, "Spark table {table}"),
            None => match &self.mirror {
                Some(table) => write!(f, "{} and Spark table {table}", self.location),
                None => write!(f, "{}", self.location),
            },
        }
    }
}

/// How a run writes the sink.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SinkMode {
    /// Add to what is there.
    #[default]
    Append,
    /// A run that follows a finished one replaces the table's rows (a killed run resumes).
    Overwrite,
}

/// One `column_mapping` entry: a source column sent as a request parameter.
#[derive(Clone, Debug)]
pub struct ColumnMapping {
    /// The column.
    pub source_column: String,
    /// The parameter's name (default: the column's).
    pub endpoint_param: String,
}

/// The keys of `tables`.
pub(crate) const KEYS: &[KeySpec] = &[
    KeySpec::new(
        "source",
        Kind::Section(SOURCE_KEYS),
        "Where the rows come from.",
    ),
    KeySpec::new(
        "sink",
        Kind::Section(SINK_KEYS),
        "Where the bronze table goes.",
    ),
    KeySpec::new(
        "column_mapping",
        Kind::Sections(MAPPING_KEYS),
        "Columns sent as request parameters (query for GET/DELETE, JSON body otherwise).",
    )
    .alias(&["column_mappings"]),
];

const SOURCE_KEYS: &[KeySpec] = &[
    KeySpec::new("name", Kind::Text, "A Spark table's name."),
    KeySpec::new("namespace", Kind::Text, "A Spark table's namespace."),
    KeySpec::new("identifier", Kind::Text, "A Spark table's full identifier."),
    KeySpec::new(
        "id_column",
        Kind::Text,
        "The column whose value is a row's request_id (else a hash of the row).",
    ),
    KeySpec::new(
        "required_columns",
        Kind::TextList,
        "Columns that must be in the source.",
    ),
    KeySpec::new(
        "path",
        Kind::Text,
        "A file or folder: a local path, file://, or s3://, s3a://, az://, abfss://, gs:// (docs/object-stores.md).",
    ),
    KeySpec::new(
        "storage_options",
        Kind::TextMap,
        "Object-store options for path (endpoint, region, credentials, allow_http, ...); over the AWS_*/AZURE_*/GOOGLE_* environment.",
    ),
    KeySpec::new(
        "format",
        Kind::Choice(&FORMAT_NAMES),
        "How to read path; default: from its extension (a folder: delta if it holds _delta_log, else parquet).",
    ),
    KeySpec::new("query", Kind::Text, "A SQL query read through Spark."),
    KeySpec::new(
        "table_schema",
        Kind::Section(TABLE_SCHEMA_KEYS),
        "Columns the source must have, with their types (checked before any request).",
    ),
];

const TABLE_SCHEMA_KEYS: &[KeySpec] = &[KeySpec::new(
    "columns",
    Kind::Sections(SCHEMA_COLUMN_KEYS),
    "The columns.",
)];

const SCHEMA_COLUMN_KEYS: &[KeySpec] = &[
    KeySpec::new("name", Kind::Text, "The column."),
    KeySpec::new("type", Kind::Choice(SCHEMA_TYPES), "Its type."),
    KeySpec::new("nullable", Kind::Bool, "Whether it may hold nulls.").default(|| true.into()),
    KeySpec::new(
        "description",
        Kind::NoEffect("documentation only (the legacy framework did not use it either)"),
        "Legacy: a description.",
    ),
    KeySpec::new(
        "element_type",
        Kind::NoEffect("the element type of an array is not checked"),
        "Legacy: an array's element type.",
    ),
    KeySpec::new(
        "key_type",
        Kind::NoEffect("the key type of a map is not checked"),
        "Legacy: a map's key type.",
    ),
    KeySpec::new(
        "value_type",
        Kind::NoEffect("the value type of a map is not checked"),
        "Legacy: a map's value type.",
    ),
];

const SINK_KEYS: &[KeySpec] = &[
    KeySpec::new("name", Kind::Text, "The table's name."),
    KeySpec::new("namespace", Kind::Text, "The table's namespace."),
    KeySpec::new(
        "mode",
        Kind::Choice(&["append", "overwrite"]),
        "append, or overwrite (a run after a finished one replaces the rows).",
    )
    .default(|| "append".into()),
    KeySpec::new(
        "path",
        Kind::Text,
        "The Delta table's folder or object-store URL (s3://, az://, abfss://, gs://); default ./warehouse/<namespace>/<name>.",
    ),
    KeySpec::new(
        "storage_options",
        Kind::TextMap,
        "Object-store options for path (endpoint, region, credentials, allow_http, ...); over the AWS_*/AZURE_*/GOOGLE_* environment.",
    ),
    KeySpec::new(
        "also_spark_table",
        Kind::Text,
        "A Spark catalog table every committed batch is also appended to.",
    ),
    KeySpec::new(
        "location",
        Kind::Text,
        "The Delta table's folder (legacy: the catalog table's LOCATION); the same as path.",
    ),
    KeySpec::new(
        "partition_by",
        Kind::TextList,
        "Partition columns of a new table (bronze columns).",
    ),
    KeySpec::new(
        "table_properties",
        Kind::TextMap,
        "Properties of a new Delta table (e.g. delta.appendOnly: \"true\").",
    ),
];

const MAPPING_KEYS: &[KeySpec] = &[
    KeySpec::new("source_column", Kind::Text, "The column."),
    KeySpec::new(
        "endpoint_param",
        Kind::Text,
        "The parameter's name (default: the column's).",
    ),
    KeySpec::new(
        "transform",
        Kind::NoEffect(
            "values are sent as they are (the legacy framework ignored it too); transform them in the source query or in a plugin",
        ),
        "Legacy: a transformation.",
    ),
];

/// Rows given on the command line (`--source`, `--source-query`, `--id-column`): they replace the
/// file's `tables.source` location (the legacy framework took its rows at run time).
#[derive(Clone, Debug, Default)]
pub struct SourceOverride {
    /// A local file or folder (also as a `file://` URL), or a Spark table name.
    pub source: Option<String>,
    /// A SQL query read through Spark.
    pub query: Option<String>,
    /// The column whose value is a row's request_id.
    pub id_column: Option<String>,
}

impl SourceOverride {
    /// Whether it gives the rows.
    pub fn gives_rows(&self) -> bool {
        self.source.is_some() || self.query.is_some()
    }
}

/// Reads `tables.source`, or takes the rows from `given` (the command line); a local path is
/// checked afterwards (`probes`). `None` without an error: no source yet, one must be given at run
/// time.
pub(crate) fn source(
    w: &mut Walker,
    tables: &Section<'_>,
    given: &SourceOverride,
    has_spark: bool,
    base_dir: &Path,
    probes: &mut Vec<Probe>,
) -> Option<Source> {
    let s = w.section(
        tables.get("source"),
        &tables.child("source"),
        tables.pos,
        SOURCE_KEYS,
    );
    let written_id = w.name(s.get("id_column"));
    let required_columns = w.string_list(s.get("required_columns"));
    let table_schema = table_schema(w, &s);
    if given.gives_rows() {
        let location = given_location(w, given, has_spark, base_dir, probes)?;
        // The legacy framework's tables.source default (`tracking_id`) applies to its own form only.
        let id_column = given.id_column.clone().or(written_id);
        return Some(Source {
            location,
            id_column,
            required_columns,
            table_schema,
        });
    }
    if !tables.has("source") {
        return None;
    }
    // A Spark table named the legacy way (namespace + name) keeps the legacy default id column.
    let legacy_form = s.has("name") && s.has("namespace") && !s.has("identifier");
    let id_column = given
        .id_column
        .clone()
        .or(written_id)
        .or_else(|| legacy_form.then(|| "tracking_id".to_owned()));
    let format = w.choice_of(&s, "format").and_then(FileFormat::named);
    let location = match s.get("path") {
        Some(f) => {
            let written = w.name(Some(f))?;
            let path = match Location::parse(&written, base_dir) {
                Ok(l) => storage_options(w, &s, l),
                Err(e) => {
                    w.error(f.path, f.node.pos, e.0);
                    return None;
                }
            };
            if s.has("query") {
                w.error(
                    &s.child("query"),
                    s.pos,
                    "query reads through Spark; it does not go with path",
                );
            }
            if path.local().is_some() {
                probes.push(Probe::Source {
                    key: f.path.to_owned(),
                    pos: f.node.pos,
                    written,
                    format_given: format.is_some(),
                });
            }
            SourceLocation::File {
                format: format
                    .or_else(|| FileFormat::of_location(&path))
                    .unwrap_or(FileFormat::Parquet),
                path,
            }
        }
        None => SourceLocation::Spark {
            table: match (
                w.name(s.get("identifier")),
                w.name(s.get("name")),
                w.name(s.get("namespace")),
            ) {
                (Some(identifier), _, _) => Some(identifier),
                (None, Some(name), Some(ns)) => Some(format!("{ns}.{name}")),
                (None, Some(name), None) => Some(name),
                (None, None, _) => None,
            },
            query: w.name(s.get("query")),
        },
    };
    Some(Source {
        location,
        id_column,
        required_columns,
        table_schema,
    })
}

fn table_schema(w: &mut Walker, s: &Section<'_>) -> Vec<SchemaColumn> {
    let Some(f) = s.get("table_schema") else {
        return Vec::new();
    };
    let t = w.section(Some(f), f.path, f.node.pos, TABLE_SCHEMA_KEYS);
    let mut out: Vec<SchemaColumn> = Vec::new();
    for (path, node) in w.list(t.get("columns")) {
        let c = w.section(
            Some(Field { path: &path, node }),
            &path,
            node.pos,
            SCHEMA_COLUMN_KEYS,
        );
        let name = w.require(&c, "name", "name").and_then(|f| w.name(Some(f)));
        let kind = w
            .require(&c, "type", "type")
            .and_then(|_| w.choice_of(&c, "type"));
        let nullable = w.boolean(c.get("nullable")).unwrap_or(true);
        if let (Some(name), Some(kind)) = (name, kind) {
            if out.iter().any(|o| o.name == name) {
                w.error(&path, node.pos, format!("column `{name}` is listed twice"));
                continue;
            }
            out.push(SchemaColumn {
                name,
                kind: kind.to_owned(),
                nullable,
            });
        }
    }
    out
}

/// Where `--source` / `--source-query` point. A value with `/`, a leading `.`, a file extension or a
/// `file://` scheme is a local path; otherwise, with a `spark` section, a Spark table.
fn given_location(
    w: &mut Walker,
    given: &SourceOverride,
    has_spark: bool,
    base_dir: &Path,
    probes: &mut Vec<Probe>,
) -> Option<SourceLocation> {
    if let Some(query) = &given.query {
        if given.source.is_some() {
            w.error(
                "--source-query",
                Default::default(),
                "give --source or --source-query, not both",
            );
            return None;
        }
        return Some(SourceLocation::Spark {
            table: None,
            query: Some(query.clone()),
        });
    }
    let written = given.source.clone()?;
    let is_url = written.contains("://");
    let looks_like_path = is_url
        || written.contains('/')
        || written.starts_with('.')
        || FileFormat::of_extension(Path::new(&written)).is_some()
        || !has_spark;
    if !looks_like_path {
        return Some(SourceLocation::Spark {
            table: Some(written),
            query: None,
        });
    }
    let path = match Location::parse(&written, base_dir) {
        Ok(l) => l,
        Err(e) => {
            w.error("--source", Default::default(), e.0);
            return None;
        }
    };
    if path.local().is_some() {
        probes.push(Probe::Source {
            key: "--source".to_owned(),
            pos: Default::default(),
            written: written
                .strip_prefix("file://")
                .unwrap_or(&written)
                .to_owned(),
            format_given: false,
        });
    }
    Some(SourceLocation::File {
        format: FileFormat::of_location(&path).unwrap_or(FileFormat::Parquet),
        path,
    })
}

/// `storage_options` of a source or sink section, checked against the location's store.
fn storage_options(w: &mut Walker, s: &Section<'_>, location: Location) -> Location {
    let Some(f) = s.get("storage_options") else {
        return location;
    };
    let entries = w.string_map(Some(f));
    let Location::Remote(remote) = &location else {
        w.warn(
            f.path,
            f.node.pos,
            "has no effect: the location is a local path",
        );
        return location;
    };
    for (key, value, from_secret) in &entries {
        if key.eq_ignore_ascii_case("aws_s3_locking_provider")
            && value.eq_ignore_ascii_case("dynamodb")
            && !crate::store::HAS_DYNAMODB
        {
            w.error(
                f.path,
                f.node.pos,
                "the DynamoDB locking provider is not in this build: build sparkwasm with `--features dynamodb` (or rely on conditional puts, docs/object-stores.md)",
            );
        } else if !remote.cloud.knows_option(key) {
            w.error(
                f.path,
                f.node.pos,
                format!(
                    "`{key}` is not an option of {}:// stores (see docs/object-stores.md)",
                    remote.url.scheme()
                ),
            );
        } else if crate::store::CREDENTIAL_ROUTES
            .iter()
            .any(|r| key.to_ascii_lowercase().ends_with(r))
        {
            w.warn(
                f.path,
                f.node.pos,
                format!(
                    "`{key}` sends this machine's cloud credentials (or its storage traffic) where it points, or turns off TLS checks: make sure you trust `{value}`"
                ),
            );
        } else if crate::store::is_secret_option(key) && !from_secret {
            w.warn(
                f.path,
                f.node.pos,
                format!(
                    "`{key}` is written in the file: give it as {{{{secret...}}}} or {{{{env...}}}} (it is redacted either way)"
                ),
            );
        }
    }
    location.with_options(entries.into_iter().map(|(k, v, _)| (k, v)).collect())
}

/// Reads `tables.sink`. A sink named without `path` is the Spark table of that name when the
/// pipeline has `spark`, else a local Delta table under ./warehouse.
pub(crate) fn sink(
    w: &mut Walker,
    tables: &Section<'_>,
    has_spark: bool,
    base_dir: &Path,
) -> Option<Sink> {
    let s = w.section(
        tables.get("sink"),
        &tables.child("sink"),
        tables.pos,
        SINK_KEYS,
    );
    if !tables.has("sink") {
        w.error(&s.path, tables.pos, "missing required section: tables.sink");
        return None;
    }
    let mode = match w.choice_of(&s, "mode") {
        Some("overwrite") => SinkMode::Overwrite,
        _ => SinkMode::Append,
    };
    let mirror = w.name(s.get("also_spark_table"));
    let partition_by = w.string_list(s.get("partition_by"));
    if let Some(f) = s.get("partition_by") {
        let bronze = crate::bronze::bronze_schema();
        for column in &partition_by {
            if bronze.field_with_name(column).is_err() {
                w.error(
                    f.path,
                    f.node.pos,
                    format!(
                        "`{column}` is not a bronze column (partition_by names the table's columns)"
                    ),
                );
            }
        }
    }
    let table_properties = w
        .string_map(s.get("table_properties"))
        .into_iter()
        .map(|(k, v, _)| (k, v))
        .collect();
    let written_path = match (s.get("path"), s.get("location")) {
        (Some(_), Some(l)) => {
            w.error(l.path, l.node.pos, "give path or location, not both");
            None
        }
        (Some(p), None) | (None, Some(p)) => match w.name(Some(p)) {
            Some(text) => match Location::parse(&text, base_dir) {
                Ok(l) => Some(storage_options(w, &s, l)),
                Err(e) => {
                    w.error(p.path, p.node.pos, e.0);
                    return None;
                }
            },
            None => None,
        },
        (None, None) => None,
    };
    let (location, spark_table) = match (written_path, w.name(s.get("name"))) {
        (Some(location), _) => (location, None),
        (None, Some(name)) => {
            let namespace = w.name(s.get("namespace"));
            if has_spark {
                for key in ["partition_by", "table_properties"] {
                    if let Some(f) = s.get(key) {
                        w.warn(
                            f.path,
                            f.node.pos,
                            "has no effect on a Spark catalog table: sparkwasm appends to it through Spark Connect and creates it with Spark's defaults; set it on the table in Spark",
                        );
                    }
                }
                let table = match namespace {
                    Some(ns) => format!("{ns}.{name}"),
                    None => name,
                };
                (Location::Local(PathBuf::new()), Some(table))
            } else {
                let namespace = namespace.unwrap_or_else(|| "default".to_owned());
                let path = base_dir
                    .join("warehouse")
                    .join(namespace.replace('.', "/"))
                    .join(name);
                (Location::Local(path), None)
            }
        }
        (None, None) => {
            w.error(
                &s.path,
                s.pos,
                "missing required key: path (the Delta table's folder) or name",
            );
            return None;
        }
    };
    Some(Sink {
        location,
        mode,
        spark_table,
        mirror,
        partition_by,
        table_properties,
    })
}

/// Reads `tables.column_mapping`.
pub(crate) fn column_mapping(w: &mut Walker, tables: &Section<'_>) -> Vec<ColumnMapping> {
    let mut out = Vec::new();
    for (path, node) in w.list(tables.get("column_mapping")) {
        let m = w.section(
            Some(Field { path: &path, node }),
            &path,
            node.pos,
            MAPPING_KEYS,
        );
        let source_column = w.require(&m, "source_column", "source_column");
        let source_column = w.name(source_column);
        let endpoint_param = w
            .name(m.get("endpoint_param"))
            .or_else(|| source_column.clone());
        if let (Some(source_column), Some(endpoint_param)) = (source_column, endpoint_param) {
            out.push(ColumnMapping {
                source_column,
                endpoint_param,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::tests::{errors, load_full};
    use super::{FileFormat, SinkMode, SourceLocation};

    #[test]
    fn legacy_spellings_and_a_sink_by_name() {
        let p = load_full(
            "endpoint: {base_path: \"http://127.0.0.1:1/api\"}\ntables:\n  source: {path: rows.csv, id_column: id}\n  sink: {name: out, namespace: bronze.demo, mode: overwrite}\n  column_mappings:\n    - {source_column: id, endpoint_param: item}\n",
        );
        assert_eq!(p.column_mapping[0].endpoint_param, "item");
        assert!(
            p.sink
                .location
                .local()
                .unwrap()
                .ends_with("warehouse/bronze/demo/out")
        );
        assert_eq!(p.sink.mode, SinkMode::Overwrite);
        assert!(matches!(
            p.source.unwrap().location,
            SourceLocation::File {
                format: FileFormat::Csv,
                ..
            }
        ));
    }

    #[test]
    fn a_source_path_must_exist_and_name_its_format() {
        let e = errors(
            "endpoint: {base_url: \"http://127.0.0.1:1\"}\ntables:\n  source: {path: nothing.csv}\n  sink: {path: out}\n",
        );
        assert_eq!(
            e,
            ["3:18: tables.source.path: no such file or folder: nothing.csv"]
        );
    }

    #[test]
    fn object_store_sinks_and_sources_take_their_options_checked() {
        let p = load_full(
            "endpoint: {base_url: \"http://127.0.0.1:1\"}\ntables:\n  source: {path: \"s3a://in/rows.csv\", storage_options: {region: eu-west-1}}\n  sink: {location: \"az://bronze/t\", storage_options: {use_emulator: \"true\"}}\n",
        );
        let crate::store::Location::Remote(sink) = &p.sink.location else {
            panic!("remote sink")
        };
        assert_eq!(sink.url.as_str(), "az://bronze/t");
        assert_eq!(sink.options.get("use_emulator").unwrap(), "true");
        let SourceLocation::File { path, format } = p.source.unwrap().location else {
            panic!("file source")
        };
        assert_eq!(format, FileFormat::Csv);
        assert!(
            matches!(path, crate::store::Location::Remote(r) if r.options.contains_key("region"))
        );

        let e = errors(
            "endpoint: {base_url: \"http://127.0.0.1:1\"}\ntables:\n  source: {path: rows.csv}\n  sink: {path: \"s3://b/t\", storage_options: {azure_storage_account_key: x}}\n",
        );
        assert!(
            e.iter().any(|l| l.starts_with("4:")
                && l.contains("tables.sink.storage_options: `azure_storage_account_key` is not an option of s3:// stores")),
            "{e:?}"
        );
        let e = errors(
            "endpoint: {base_url: \"http://127.0.0.1:1\"}\ntables:\n  source: {path: rows.csv}\n  sink: {location: \"ftp://host/bronze\"}\n",
        );
        assert!(
            e.iter()
                .any(|l| l
                    .contains("tables.sink.location: `ftp://` is not a store this build reaches")),
            "{e:?}"
        );
        assert!(
            !e.iter().any(|l| l.contains("missing required key")),
            "{e:?}"
        );
    }
}
