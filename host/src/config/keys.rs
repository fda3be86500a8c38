//! What each section of a pipeline file accepts, described once: each key's name, legacy spellings,
//! kind (with its bounds or choices), default and meaning. The validator reads sections through these
//! descriptions (unknown keys, spellings, bounds); the docs and a JSON Schema can be generated from
//! the same tables. Defaults come from the sections' `Default` impls, never written twice.

/// One key a section accepts.
#[derive(Clone, Copy, Debug)]
pub struct KeySpec {
    /// The canonical name.
    pub name: &'static str,
    /// Other spellings the legacy format uses.
    pub aliases: &'static [&'static str],
    /// What its value is.
    pub kind: Kind,
    /// What it means, for the docs and the schema.
    pub doc: &'static str,
    /// Its default, read from the section's `Default` impl; `None`: no default (required, or absent
    /// means "none").
    pub default: Option<fn() -> serde_json::Value>,
}

/// The kind of a key's value.
#[derive(Clone, Copy, Debug)]
pub enum Kind {
    /// A string (numbers and booleans are taken as their text).
    Text,
    /// An integer in `min..=max`.
    Int {
        /// The smallest value.
        min: i64,
        /// The largest value.
        max: i64,
    },
    /// A number greater than `above`.
    Number {
        /// The value must exceed it.
        above: f64,
    },
    /// Seconds, from 0 to `max`.
    Seconds {
        /// The largest value.
        max: f64,
    },
    /// `true` or `false`.
    Bool,
    /// An http(s) URL.
    Url,
    /// One of these words (case-insensitive).
    Choice(&'static [&'static str]),
    /// A list of strings.
    TextList,
    /// A mapping of names to strings.
    TextMap,
    /// A mapping with these keys.
    Section(&'static [KeySpec]),
    /// A list of mappings, each with these keys.
    Sections(&'static [KeySpec]),
    /// The middleware list: each entry's keys depend on its `type`.
    Middleware,
    /// Anything (a plugin's own config, checked by the plugin).
    Any,
    /// A key the legacy format accepts that has no effect here (the text says why): accepted with
    /// one warning, never an error.
    NoEffect(&'static str),
}

impl KeySpec {
    /// A key named `name` of `kind`, meaning `doc`.
    pub const fn new(name: &'static str, kind: Kind, doc: &'static str) -> Self {
        KeySpec {
            name,
            aliases: &[],
            kind,
            doc,
            default: None,
        }
    }

    /// The same key, also spelled `aliases`.
    pub const fn alias(mut self, aliases: &'static [&'static str]) -> Self {
        self.aliases = aliases;
        self
    }

    /// The same key, defaulting to what `default` reads from the section's `Default`.
    pub const fn default(mut self, default: fn() -> serde_json::Value) -> Self {
        self.default = Some(default);
        self
    }

    /// Whether `written` is one of its spellings.
    pub fn is(&self, written: &str) -> bool {
        self.name == written || self.aliases.contains(&written)
    }
}

/// The keys of a pipeline file's top level.
pub const TOP: &[KeySpec] = &[
    KeySpec::new(
        "endpoint",
        Kind::Section(super::endpoint::KEYS),
        "The API every row calls.",
    ),
    KeySpec::new(
        "execution",
        Kind::Section(super::execution::KEYS),
        "How many requests at once, in how many partitions, how fast, batch size.",
    ),
    KeySpec::new(
        "transport",
        Kind::Section(super::transport::KEYS),
        "Timeouts, connections, TLS.",
    ),
    KeySpec::new(
        "auth",
        Kind::Section(super::auth::KEYS),
        "The pipeline's credential, added by the host after the middleware chain.",
    ),
    KeySpec::new(
        "middleware",
        Kind::Middleware,
        "The middleware chain, outermost first: built-in plugins, credentials, custom plugins.",
    ),
    KeySpec::new(
        "plugins",
        Kind::Section(super::plugins::KEYS),
        "Which plugin signatures are trusted, and whether every custom plugin must be signed.",
    ),
    KeySpec::new(
        "tables",
        Kind::Section(super::tables::KEYS),
        "Where the rows come from and where the bronze table goes.",
    ),
    KeySpec::new(
        "spark",
        Kind::Section(super::spark::KEYS),
        "A Spark Connect server to read from or write to.",
    ),
    KeySpec::new(
        "metrics",
        Kind::Section(super::metrics::KEYS),
        "The Prometheus endpoint the run serves (as --metrics-addr).",
    ),
];
