//! wasmgate's developer commands, as a library shared by the `xtask` binary and the end-to-end
//! tests, so that `cargo xtask up` and the tests start the very same stack from the same config.

pub mod build;
pub mod certs;
pub mod compose;
pub mod deploy;
pub mod ecds;
pub mod envoy;
pub mod exports;
pub mod oci;
pub mod one_module;
pub mod paths;
pub mod process;
pub mod render;
pub mod schemas;
pub mod shrink;
pub mod stack;
pub mod tools;
