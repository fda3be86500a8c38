//! The lines written on stderr outside the log (a warning about the pipeline file or an unpinned
//! plugin, the error that stops the command, where metrics are served): plain text, or with
//! `--log-format json` one JSON object per line in the log lines' own shape (`timestamp`,
//! `level`, `fields.message`, `target`), so that a log shipper parses every line of stderr. They
//! are written whatever `RUST_LOG` filters: an error that ends the run is never filtered out.

use std::sync::atomic::{AtomicBool, Ordering};

static JSON: AtomicBool = AtomicBool::new(false);

/// Chooses the form of every later line.
pub fn json(on: bool) {
    JSON.store(on, Ordering::Relaxed);
}

/// Whether lines are JSON objects (`--log-format json`).
pub fn is_json() -> bool {
    JSON.load(Ordering::Relaxed)
}

/// `warning: TEXT`.
pub fn warning(text: &str) {
    line("WARN", "warning: ", text);
}

/// `error: TEXT`.
pub fn error(text: &str) {
    line("ERROR", "error: ", text);
}

/// `sparkwasm: TEXT`.
pub fn info(text: &str) {
    line("INFO", "sparkwasm: ", text);
}

fn line(level: &str, prefix: &str, text: &str) {
    if is_json() {
        eprintln!("{}", json_line(level, text));
    } else {
        eprintln!("{prefix}{text}");
    }
}

fn json_line(level: &str, text: &str) -> String {
    use tracing_subscriber::fmt::format::Writer;
    use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
    let mut timestamp = String::new();
    // Writing into a String cannot fail.
    let _ = SystemTime.format_time(&mut Writer::new(&mut timestamp));
    serde_json::json!({
        "timestamp": timestamp,
        "level": level,
        "fields": { "message": text },
        "target": "sparkwasm",
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_json_line_is_one_object_in_the_log_lines_shape() {
        let line = json_line("WARN", "p.yaml:3:1: a \"quoted\"\nline");
        assert!(!line.contains('\n'), "{line}");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["level"], "WARN");
        assert_eq!(v["fields"]["message"], "p.yaml:3:1: a \"quoted\"\nline");
        assert_eq!(v["target"], "sparkwasm");
        assert!(v["timestamp"].as_str().unwrap().starts_with("20"), "{v}");
    }
}
