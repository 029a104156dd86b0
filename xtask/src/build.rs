//! `build`: the three filters for wasm32-wasip1 and the native binaries.

use std::process::Command;

use anyhow::{Context, Result};

use crate::paths::{CHAIN, FILTERS, FLOOR, target_dir, wasm_dir};
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

/// The rustflags of every wasm build: source paths under `CARGO_HOME` (the registry crates,
/// whose paths end up in panic-location strings) are written as `/cargo-home/...`, so the
/// `.wasm`, and with it the digest the manifests under `deploy/` pin, is the same on any
/// machine with the same toolchain and `Cargo.lock` (workspace paths are relative already;
/// the standard library's are `/rustc/<commit>/...`). docs/loading.md has the measurement.
/// A `RUSTFLAGS` set by the user takes precedence over these and changes the digests.
pub fn wasm_rustflags() -> String {
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|home| std::path::PathBuf::from(home).join(".cargo"))
        })
        .unwrap_or_default();
    format!("--remap-path-prefix={}=/cargo-home", cargo_home.display())
}

/// `cargo build --target wasm32-wasip1 --profile wasm` of `packages`, with [`wasm_rustflags`].
fn build_wasm(packages: &[&str]) -> Result<()> {
    build_wasm_with("wasm", packages)
}

fn build_wasm_with(profile: &str, packages: &[&str]) -> Result<()> {
    let mut wasm = cargo();
    wasm.args(["build", "--target", WASM_TARGET, "--profile", profile])
        .env("CARGO_TARGET_WASM32_WASIP1_RUSTFLAGS", wasm_rustflags());
    for package in packages {
        wasm.args(["-p", package]);
    }
    run(&mut wasm)
}

/// Builds the three filters with the `wasm` profile (what Envoy loads) in one cargo run of their
/// own, so their features never unify with another package's and the `.wasm` depends on the
/// filters alone; then the one-module chain, with its own profile and binaryen's `wasm-opt` after.
pub fn build_filters() -> Result<()> {
    ensure_wasm_target()?;
    build_wasm(&FILTERS.map(|(package, _)| package))?;
    // The chain links the filters without the `entry-point` feature, so it gets a run and a
    // profile (an output directory) of its own; its module joins the others in `wasm_dir`.
    build_wasm_with("wasm-chain", &[CHAIN.0])?;
    let file = format!("{}.wasm", CHAIN.1);
    let built = target_dir()
        .join(WASM_TARGET)
        .join("wasm-chain")
        .join(&file);
    std::fs::create_dir_all(wasm_dir())?;
    // Removed first: the destination may be a hard link cargo made to its own output.
    let _ = std::fs::remove_file(wasm_dir().join(&file));
    std::fs::copy(&built, wasm_dir().join(&file))
        .with_context(|| format!("cannot copy {}", built.display()))?;
    for (_, stem) in FILTERS.into_iter().chain([CHAIN]) {
        trim_exports(stem)?;
    }
    // Without it the chain is over the 1 MiB the filters keep to (docs/build-profile.md).
    crate::shrink::shrink(&wasm_dir().join(&file))
}

/// Leaves out the exports of callbacks the module's filter does not handle (`exports`), so the
/// host does not enter the VM for them.
fn trim_exports(stem: &str) -> Result<()> {
    let path = wasm_dir().join(format!("{stem}.wasm"));
    let module = std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let trimmed = crate::exports::without_exports(&module, &crate::exports::unhandled(stem))
        .with_context(|| format!("cannot trim the exports of {}", path.display()))?;
    // A new file, not a write through the hard link cargo keeps to its own output.
    let _ = std::fs::remove_file(&path);
    std::fs::write(&path, trimmed).with_context(|| format!("cannot write {}", path.display()))
}

/// Builds the filters, packages them as OCI image layouts (`target/oci-images/`), builds the
/// harness's fixture filter and the native binaries (debug unless `release`). Cargo makes this
/// quick when nothing changed.
pub fn build(release: bool) -> Result<()> {
    build_filters()?;
    crate::oci::package_all()?;
    // The harness's self-test filter and the benchmark's floor, built here with the others
    // rather than by the tests.
    build_wasm(&["wasmgate-harness-fixture", FLOOR.0])?;
    trim_exports(FLOOR.1)?;
    let mut native = cargo();
    native.args(["build", "-p", "authz-service", "-p", "wasmgate-demo"]);
    if release {
        native.arg("--release");
    }
    run(&mut native)
}
