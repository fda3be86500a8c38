//! sparkwasm: one HTTP request per row, through sandboxed middleware, landed exactly once in Delta.

pub mod config;
pub mod source;
