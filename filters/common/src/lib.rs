//! Code shared by the wasmgate filters.
//!
//! `config`, `headers` and `matcher` are plain Rust (no proxy-wasm types) so every filter's logic can use
//! them and be tested on the host; `host` is the only module that talks to the proxy-wasm ABI.
//! `schema` (feature `schema`, host only) generates the filters' config JSON Schemas.

pub mod config;
pub mod headers;
pub mod host;
pub mod matcher;
#[cfg(feature = "schema")]
pub mod schema;

pub use config::{ConfigError, parse_config};
pub use matcher::{RequestInfo, RequestMatch};
