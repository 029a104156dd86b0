//! Finding (and if needed building) a filter's `.wasm` for the tests.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{Error, Result};

/// The workspace root (this crate lives in `tests/harness`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// The `.wasm` of workspace package `package` (e.g. `rate-limit`).
///
/// If `WASMGATE_WASM_DIR` is set and holds `<crate_name>.wasm` (e.g. `rate_limit.wasm`, as CI's
/// build step leaves them), that file is used. Otherwise the package is built now with
/// `cargo build -p <package> --target wasm32-wasip1 --profile wasm` in a target directory of its
/// own (`target/harness-wasm`, or `WASMGATE_WASM_TARGET_DIR`), so the nested cargo never waits
/// for the lock of the `cargo test` that runs us; an up-to-date build costs about a second.
pub fn filter_wasm(package: &str) -> Result<PathBuf> {
    let file = format!("{}.wasm", package.replace('-', "_"));
    if let Some(dir) = std::env::var_os("WASMGATE_WASM_DIR") {
        let path = PathBuf::from(dir).join(&file);
        if path.is_file() {
            return Ok(path);
        }
    }
    let root = workspace_root();
    let target_dir = std::env::var_os("WASMGATE_WASM_TARGET_DIR")
        .map_or_else(|| root.join("target").join("harness-wasm"), PathBuf::from);
    // The one-module chain links the filters without their entry points: its own profile keeps
    // it from rebuilding their `.wasm` files in the shared output directory (Cargo.toml).
    let profile = if package == "chain" {
        "wasm-chain"
    } else {
        "wasm"
    };
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(cargo)
        .current_dir(&root)
        .env("CARGO_TARGET_DIR", &target_dir)
        .args(["build", "--quiet", "-p", package])
        .args(["--target", "wasm32-wasip1", "--profile", profile])
        .output()
        .map_err(|e| Error::Build {
            package: package.to_owned(),
            reason: format!("cannot run cargo: {e}"),
        })?;
    if !output.status.success() {
        return Err(Error::Build {
            package: package.to_owned(),
            reason: String::from_utf8_lossy(&output.stderr).into_owned(),
        });
    }
    Ok(target_dir.join("wasm32-wasip1").join(profile).join(file))
}
