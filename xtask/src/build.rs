//! `build`: the three filters for wasm32-wasip1 and the native binaries.

use std::process::Command;

use anyhow::{Context, Result};

use crate::paths::FILTERS;
use crate::tools::{cargo, output, run};

pub const WASM_TARGET: &str = "wasm32-wasip1";

/// Installs the wasm target with rustup if this toolchain lacks it.
pub fn ensure_wasm_target() -> Result<()> {
    let installed = output(Command::new("rustup").args(["target", "list", "--installed"]))
        .context("rustup is needed to add the wasm32-wasip1 target; install Rust with rustup")?;
    if !installed.lines().any(|l| l.trim() == WASM_TARGET) {
        eprintln!("xtask: installing the {WASM_TARGET} target");
        run(Command::new("rustup").args(["target", "add", WASM_TARGET]))?;
    }
    Ok(())
}

/// Builds the filters with the `wasm` profile (what Envoy loads) and the native binaries
/// (debug unless `release`). Cargo makes this quick when nothing changed.
pub fn build(release: bool) -> Result<()> {
    ensure_wasm_target()?;
    let mut wasm = cargo();
    wasm.args(["build", "--target", WASM_TARGET, "--profile", "wasm"]);
    for (package, _) in FILTERS {
        wasm.args(["-p", package]);
    }
    // The harness's self-test filter, built here with the others rather than by the tests.
    wasm.args(["-p", "wasmgate-harness-fixture"]);
    run(&mut wasm)?;
    let mut native = cargo();
    native.args(["build", "-p", "authz-service", "-p", "wasmgate-demo"]);
    if release {
        native.arg("--release");
    }
    run(&mut native)
}
