//! rate-limit filter: token buckets per client (or user, IP, path…) shared by every Envoy worker.
//!
//! - `config`: the JSON configuration, checked once into a ready structure.
//! - `bucket`: exact fixed-point token-bucket arithmetic.
//! - `table`: the bounded table of buckets in shared data (slots, fingerprints, reuse, eviction).
//! - `store`: the shared-data interface (and an in-memory twin with Envoy's semantics for tests).
//! - `limiter`: taking and returning tokens with a bounded compare-and-swap loop.
//! - `keys`: reading a policy's key from the request and hashing it to a slot.
//! - `headers`: `RateLimit-Policy`/`RateLimit`, `X-RateLimit-*`, `Retry-After`, problem bodies.
//! - `engine`: the decision for one request.
//! - `adapter`: the only module that talks to the proxy-wasm host.
//!
//! Everything but `adapter` is plain Rust, tested on the host with `cargo test`.

pub mod bucket;
pub mod config;
pub mod engine;
pub mod headers;
pub mod keys;
pub mod limiter;
pub mod store;
pub mod table;

// On the host nothing calls into the adapter but the one-module chain (its entry point is wasm-only,
// see the adapter), yet it is compiled and linted there.
#[cfg_attr(not(target_family = "wasm"), allow(dead_code))]
mod adapter;

pub use adapter::{Http, Root, root_context};

/// The name used in logs and metrics.
pub const FILTER_NAME: &str = "rate-limit";
