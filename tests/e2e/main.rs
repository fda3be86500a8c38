//! End-to-end: the `sparkwasm` binary against real loopback servers (testkit), landing real Delta tables
//! that are read back by delta-rs and, when SPARKWASM_PYTHON names a Python with `deltalake`, by the
//! Python deltalake package as an independent second reader.

mod auth;
mod distribution;
mod legacy;
mod observability;
mod pacing;
mod plugins;
mod runs;
mod spark;
mod stores;
mod support;
