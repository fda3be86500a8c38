//! Config errors: each names its key path and line:col; a failed load carries all of them.

use std::fmt;

use super::tree::Pos;

/// One problem in a pipeline file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// Dotted key path, e.g. `execution.partitions` or `middleware[2].type`.
    pub path: String,
    /// Where the key (or value) is written.
    pub pos: Pos,
    /// What is wrong.
    pub message: String,
}

impl ConfigError {
    /// An error about `path` at `pos`.
    pub fn new(path: impl Into<String>, pos: Pos, message: impl Into<String>) -> Self {
        ConfigError {
            path: path.into(),
            pos,
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.pos.line == 0 {
            // Not written in the file (a command-line value, the file as a whole).
            if self.path.is_empty() {
                write!(f, " {}", self.message)
            } else {
                write!(f, " {}: {}", self.path, self.message)
            }
        } else if self.path.is_empty() {
            write!(f, "{}: {}", self.pos, self.message)
        } else {
            write!(f, "{}: {}: {}", self.pos, self.path, self.message)
        }
    }
}

/// Every error found in one pipeline file, printed one per line as `FILE:LINE:COL: PATH: MESSAGE`.
#[derive(Debug, thiserror::Error)]
pub struct ConfigErrors {
    /// The file, as it was named.
    pub file: String,
    /// Every error, in file order.
    pub errors: Vec<ConfigError>,
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.errors.len();
        writeln!(
            f,
            "{} has {n} error{}:",
            self.file,
            if n == 1 { "" } else { "s" }
        )?;
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "  {}:{e}", self.file)?;
        }
        Ok(())
    }
}

/// The closest of `candidates` to `word`, if it is close enough to be what the user meant.
pub(crate) fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(word, c), c))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_near_misses_only() {
        let keys = ["partitions", "batch_size", "concurrency_limit"];
        assert_eq!(did_you_mean("partitons", keys), Some("partitions"));
        assert_eq!(did_you_mean("batchsize", keys), Some("batch_size"));
        assert_eq!(did_you_mean("colour", keys), None);
    }
}
