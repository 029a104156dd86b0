//! chain: bearer-auth, rate-limit and route-rewrite in one module, as stages of one filter.
//!
//! Each wasm filter in Envoy's chain costs a fixed amount per request on top of its own work: a
//! stream context created in its VM, and every callback of the stream entering and leaving that
//! VM (BENCHMARKS.md measures it). Loaded as one filter, the three run in one VM with one stream
//! context per request, and the request headers are read from the host once for all three. The
//! decisions are the filters' own, unchanged: each stage is the filter's own root and stream
//! context, configured from its section of this module's configuration.
//!
//! - `config`: the module's configuration, each section checked by its filter's own loader.
//! - `adapter`: the root and stream contexts that run the stages in order.

pub mod config;

// Without its entry point (on the host, or built without `entry-point`) nothing calls into the
// adapter, but it is compiled and linted.
#[cfg_attr(
    not(all(target_family = "wasm", feature = "entry-point")),
    allow(dead_code)
)]
mod adapter;

/// The name in log lines.
pub const FILTER_NAME: &str = "chain";
