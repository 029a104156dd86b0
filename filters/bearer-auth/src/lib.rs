//! bearer-auth: checks OAuth 2.0 JWT access tokens (RFC 9068) at the edge and answers as RFC 6750
//! says. Plain-Rust logic in the modules below; `adapter` is the only one that talks to the host.

// On the host nothing calls into the adapter but the one-module chain (its entry point is wasm-only,
// see the adapter), yet it is compiled and linted there.
#[cfg_attr(not(target_family = "wasm"), allow(dead_code))]
mod adapter;

pub use adapter::{Request, Root, root_context};
pub mod b64;
pub mod cache;
pub mod challenge;
pub mod config;
pub mod engine;
pub mod extract;
pub mod jwks;
pub mod metrics;
pub mod policy;
pub mod refresh;
pub mod verify;

// Unit tests run on the host only: their keys come from the harness, which wasmtime keeps off wasm.
#[cfg(test)]
#[cfg(not(target_arch = "wasm32"))]
pub mod testkit;

/// The name in log lines and metric names.
pub const FILTER_NAME: &str = "bearer-auth";
