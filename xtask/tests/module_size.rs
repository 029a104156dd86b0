//! Every module `cargo xtask build` makes for users stays within 1 MiB, the size issue 9 sets:
//! V8 compiles a module once per Envoy process before its first request, in time that grows with
//! its size (docs/build-profile.md). The chain keeps to it through binaryen (`xtask::shrink`), the
//! filters on their own.
//!
//! Needs the build: `cargo xtask test` runs it first (or `cargo xtask build`).
// Test code states its expectations bluntly; the no-panic rule is for filter and service code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use xtask::paths::{CHAIN, FILTERS, wasm_dir};

const LIMIT: u64 = 1024 * 1024;

#[test]
fn every_module_is_at_most_one_mebibyte() {
    for (_, stem) in FILTERS.into_iter().chain([CHAIN]) {
        let path = wasm_dir().join(format!("{stem}.wasm"));
        let size = std::fs::metadata(&path)
            .unwrap_or_else(|e| panic!("{}: {e} (run `cargo xtask build` first)", path.display()))
            .len();
        assert!(
            size <= LIMIT,
            "{stem}.wasm is {size} bytes, over 1 MiB ({LIMIT}); docs/build-profile.md says where \
             the bytes go"
        );
    }
}
