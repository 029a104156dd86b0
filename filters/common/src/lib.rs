//! Code shared by the wasmgate filters.
//!
//! `config`, `headers` and `matcher` are plain Rust (no proxy-wasm types) so every filter's logic can use
//! them and be tested on the host; `host` is the only module that talks to the proxy-wasm ABI.
//! `schema` (feature `schema`, host only) generates the filters' config JSON Schemas.

pub mod allocator;
pub mod config;
pub mod headers;
pub mod host;
pub mod matcher;
#[cfg(feature = "schema")]
pub mod schema;
pub mod text;

pub use config::{ConfigError, parse_config};
pub use matcher::{Reads, RequestInfo, RequestMatch};

/// Every filter's allocator in wasm, where a VM has one thread (`allocator` says why).
#[cfg(all(target_family = "wasm", not(target_feature = "atomics")))]
#[global_allocator]
static ALLOCATOR: allocator::SizeClassCache = allocator::SizeClassCache::new();
