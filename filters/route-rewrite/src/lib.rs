//! route-rewrite: mod_rewrite-style rules for Envoy as a proxy-wasm filter.
//!
//! Everything but `adapter` is plain Rust that knows nothing of proxy-wasm: the configuration is
//! compiled once (`config::load`) into a `RuleSet`, which turns each request's headers into an
//! `Evaluation` (rewrite, proxy to a cluster, or answer). `adapter` reads headers from the host and
//! carries the evaluation out. The rule language is documented in docs/filters/route-rewrite.md.

pub mod condition;
pub mod config;
pub mod engine;
pub mod flags;
pub mod literal;
pub mod reply;
pub mod rule;
pub mod shortcut;
pub mod syntax;
pub mod template;
pub mod url;
pub mod variables;

// On the host nothing calls into the adapter but the one-module chain (its entry point is wasm-only,
// see the adapter), yet it is compiled and linted there.
#[cfg_attr(not(target_family = "wasm"), allow(dead_code))]
mod adapter;

pub use adapter::{Root, Stream, root_context};

pub use config::load;
pub use engine::{Evaluation, Outcome, RequestHeaders, Rewrite, RuleSet};
pub use reply::Reply;

/// Set by the filter to the Envoy cluster a `[P]` rule selected; the route reads it with
/// `cluster_header`. Always removed from the incoming request first, so a client cannot pick one.
pub const UPSTREAM_HEADER: &str = "x-wasmgate-upstream";
/// The path (with query) the client sent, kept for the upstream and the logs when a rule changed it.
pub const ORIGINAL_PATH_HEADER: &str = "x-wasmgate-original-path";
