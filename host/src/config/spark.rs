//! `spark`: a Spark Connect server to read the rows from (a table or a query) or to write the bronze
//! table to.

use super::keys::{KeySpec, Kind};
use super::walk::{Section, Walker};

/// The `spark` section.
#[derive(Clone, Debug)]
pub struct Spark {
    /// `sc://host:port`.
    pub remote: String,
}

/// The keys of `spark`.
pub(crate) const KEYS: &[KeySpec] = &[KeySpec::new(
    "remote",
    Kind::Text,
    "The Spark Connect address, sc://host:port.",
)];

/// Reads `spark` (absent: no Spark).
pub(crate) fn read(w: &mut Walker, s: &Section<'_>, present: bool) -> Option<Spark> {
    if !present {
        return None;
    }
    let remote = w.require(s, "remote", "remote (e.g. \"sc://127.0.0.1:15002\")");
    let remote = w.name(remote)?;
    if !remote.starts_with("sc://") {
        let f = s.get("remote")?;
        w.error(
            f.path,
            f.node.pos,
            "a Spark Connect address starts with sc:// (e.g. sc://127.0.0.1:15002)",
        );
        return None;
    }
    Some(Spark { remote })
}

/// A table name (`name`, `ns.name`, `catalog.ns.name`) as a Spark SQL identifier, each part
/// backtick-quoted: names with hyphens or reserved words work, and nothing else can ride along.
pub fn quote_identifier(name: &str) -> String {
    name.split('.')
        .map(|part| format!("`{}`", part.trim().trim_matches('`').replace('`', "``")))
        .collect::<Vec<_>>()
        .join(".")
}

#[cfg(test)]
mod tests {
    use super::super::tests::errors;

    #[test]
    fn a_remote_is_a_spark_connect_address() {
        assert_eq!(
            errors("spark: {remote: \"http://x:1\"}\n"),
            [
                "1:17: spark.remote: a Spark Connect address starts with sc:// (e.g. sc://127.0.0.1:15002)"
            ]
        );
    }

    #[test]
    fn identifiers_are_quoted_part_by_part() {
        assert_eq!(super::quote_identifier("a.b-c"), "`a`.`b-c`");
        assert_eq!(super::quote_identifier("x`y"), "`x``y`");
    }
}
