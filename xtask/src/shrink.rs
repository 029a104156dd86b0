//! Shrinks a built module with binaryen's `wasm-opt`, for the one module over the 1 MiB the
//! others keep to without it: the chain (docs/build-profile.md, "The chain's build").
//!
//! Why binaryen: rustc's size levels barely move our modules (most of their code is generic code
//! compiled into our own crates, which stay at `opt-level = 3` for the request path), while
//! `wasm-opt -Oz` over the linked module takes a fifth off the chain for 1.3 % more instructions
//! per request. It runs after the export trim, so the callbacks no filter handles are gone with
//! their code.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result};

use crate::tools::{ensure_debian_commands, output, run};

/// The binaryen release `deploy/` was rendered with: `wasm-opt` of another release writes other
/// bytes, so the chain's digest (and the manifests that pin it) would differ. Debian bookworm's,
/// as on CI and in the Docker image's build stage.
pub const BINARYEN_VERSION: &str = "108";

/// The WebAssembly features rustc's `wasm32-wasip1` target enables. The stripped module carries no
/// `target_features` section, so `wasm-opt` must be told, or it rejects the first bulk-memory or
/// sign-extension instruction.
const FEATURES: [&str; 6] = [
    "--enable-bulk-memory",
    "--enable-sign-ext",
    "--enable-nontrapping-float-to-int",
    "--enable-mutable-globals",
    "--enable-multivalue",
    "--enable-reference-types",
];

/// Rewrites `path` with `wasm-opt -Oz`, installing binaryen from Debian if it is missing.
pub fn shrink(path: &Path) -> Result<()> {
    ensure_debian_commands(&[("wasm-opt", "binaryen")]).context(
        "chain.wasm is shrunk with binaryen's `wasm-opt`, which is missing and could not be \
         installed with apt-get: install binaryen (e.g. `brew install binaryen`) and build again",
    )?;
    warn_on_other_version();
    // A new file, then a rename: the module is never half-written.
    let shrunk = path.with_extension("wasm-opt.wasm");
    let mut command = Command::new("wasm-opt");
    command
        .args(FEATURES)
        .arg("-Oz")
        .arg(path)
        .arg("-o")
        .arg(&shrunk);
    run(&mut command)?;
    std::fs::rename(&shrunk, path)
        .with_context(|| format!("cannot replace {} with its shrunk build", path.display()))
}

/// The build goes on with another binaryen, but says why the chain's digest will not match the
/// manifests under `deploy/`.
fn warn_on_other_version() {
    let version = output(Command::new("wasm-opt").arg("--version")).unwrap_or_default();
    if version_number(&version) != Some(BINARYEN_VERSION) {
        eprintln!(
            "xtask: wasm-opt reports `{}`, not binaryen {BINARYEN_VERSION}: chain.wasm will work, \
             but its digest will differ from the one the manifests under deploy/ pin",
            version.trim()
        );
    }
}

/// `wasm-opt version 108` (or `… version 116 (version_116)`) → `108`.
fn version_number(version: &str) -> Option<&str> {
    version
        .split_whitespace()
        .skip_while(|word| *word != "version")
        .nth(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_version_number_is_read_from_wasm_opt_s_banner() {
        assert_eq!(version_number("wasm-opt version 108\n"), Some("108"));
        assert_eq!(
            version_number("wasm-opt version 116 (version_116)"),
            Some("116")
        );
        assert_eq!(version_number("garbage"), None);
    }
}
