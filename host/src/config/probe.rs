//! The filesystem step after the pure one: the files a pipeline names exist (its source, TLS
//! material, plugin components) and a source folder's format is read off its contents. Errors have
//! the same form as the pure step's: key path and line:col.

use std::path::PathBuf;

use super::Pipeline;
use super::error::ConfigError;
use super::tables::{FORMAT_NAMES, FileFormat, SourceLocation};
use super::tree::Pos;
use crate::store::Location;

/// A check of the filesystem the pure step left for later.
pub(crate) enum Probe {
    /// A file that must exist (TLS material, a plugin).
    File {
        /// Its key path.
        key: String,
        /// Where the key is.
        pos: Pos,
        /// The file.
        path: PathBuf,
        /// As the file wrote it.
        written: String,
    },
    /// The local source: it must exist; its format comes from its extension, or, for a folder, from
    /// what it holds, unless the file gives one.
    Source {
        /// Its key path.
        key: String,
        /// Where the key is.
        pos: Pos,
        /// As the file wrote it.
        written: String,
        /// `tables.source.format` was given.
        format_given: bool,
    },
    /// `endpoint.response_schema` given as a file: read and compiled here.
    ResponseSchema {
        /// Its key path.
        key: String,
        /// Where the key is.
        pos: Pos,
        /// The file.
        path: PathBuf,
        /// As the file wrote it.
        written: String,
    },
}

/// Runs the probes against `pipeline` (if the pure step made one), completing what they find (a
/// folder's format).
pub(crate) fn run(
    probes: Vec<Probe>,
    mut pipeline: Option<&mut Pipeline>,
    errors: &mut Vec<ConfigError>,
) {
    for probe in probes {
        match probe {
            Probe::File {
                key,
                pos,
                path,
                written,
            } => {
                if !path.is_file() {
                    errors.push(ConfigError::new(
                        key,
                        pos,
                        format!("no such file: {written}"),
                    ));
                }
            }
            Probe::ResponseSchema {
                key,
                pos,
                path,
                written,
            } => {
                let read = std::fs::read_to_string(&path)
                    .map_err(|e| format!("cannot read the schema file {written}: {e}"))
                    .and_then(|t| {
                        serde_json::from_str::<serde_json::Value>(&t)
                            .map_err(|e| format!("the schema file {written} is not JSON: {e}"))
                    })
                    .and_then(|schema| {
                        jsonschema::validator_for(&schema)
                            .map(|_| schema)
                            .map_err(|e| format!("{written} is not a valid JSON Schema: {e}"))
                    });
                match read {
                    Ok(schema) => {
                        if let Some(p) = pipeline.as_deref_mut() {
                            p.endpoint.response_schema = Some(schema);
                        }
                    }
                    Err(message) => errors.push(ConfigError::new(key, pos, message)),
                }
            }
            Probe::Source {
                key,
                pos,
                written,
                format_given,
            } => {
                let Some(SourceLocation::File {
                    path: Location::Local(path),
                    format,
                }) = pipeline
                    .as_deref_mut()
                    .and_then(|p| p.source.as_mut())
                    .map(|s| &mut s.location)
                else {
                    continue;
                };
                if !path.exists() {
                    errors.push(ConfigError::new(
                        key,
                        pos,
                        format!("no such file or folder: {written}"),
                    ));
                    continue;
                }
                if format_given {
                    continue;
                }
                if path.is_dir() {
                    *format = if path.join("_delta_log").is_dir() {
                        FileFormat::Delta
                    } else {
                        FileFormat::Parquet
                    };
                } else if FileFormat::of_extension(path).is_none() {
                    errors.push(ConfigError::new(
                        key,
                        pos,
                        format!(
                            "cannot tell the format from the name: give tables.source.format ({})",
                            FORMAT_NAMES.join(", ")
                        ),
                    ));
                }
            }
        }
    }
}
