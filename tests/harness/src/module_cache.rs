//! An on-disk cache of compiled modules. Compiling a 1.5 MB filter with cranelift takes tens of
//! seconds in a debug build of the tests; every test binary that loads the same `.wasm` would pay
//! it again. The cache keeps wasmtime's own serialized form next to the build output.

use std::hash::{Hash, Hasher};
use std::path::PathBuf;

use wasmtime::{Engine, Module};

/// Where compiled modules are kept: `WASMGATE_HARNESS_CACHE_DIR`, else
/// `target/harness-wasm/compiled` of the workspace. `WASMGATE_HARNESS_NO_CACHE=1` turns it off.
fn cache_dir() -> Option<PathBuf> {
    if std::env::var_os("WASMGATE_HARNESS_NO_CACHE").is_some_and(|v| v != "0") {
        return None;
    }
    Some(std::env::var_os("WASMGATE_HARNESS_CACHE_DIR").map_or_else(
        || {
            crate::wasm_build::workspace_root()
                .join("target")
                .join("harness-wasm")
                .join("compiled")
        },
        PathBuf::from,
    ))
}

/// The file name for `bytes` compiled by `engine`: the module's content and the engine's
/// configuration and version, so a stale entry is never picked.
fn entry_name(engine: &Engine, bytes: &[u8]) -> String {
    let mut content = std::hash::DefaultHasher::new();
    bytes.hash(&mut content);
    let mut config = std::hash::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut config);
    env!("CARGO_PKG_VERSION").hash(&mut config);
    format!(
        "{:016x}-{:08x}-{:016x}.cwasm",
        content.finish(),
        bytes.len(),
        config.finish()
    )
}

/// Compiles `bytes`, or loads the result of an earlier compilation of the same bytes.
pub(crate) fn compile(engine: &Engine, bytes: &[u8]) -> wasmtime::Result<Module> {
    // Small modules compile in moments; caching them would only fill the directory.
    const WORTH_CACHING: usize = 64 * 1024;
    let Some(dir) = cache_dir().filter(|_| bytes.len() >= WORTH_CACHING) else {
        return Module::new(engine, bytes);
    };
    let path = dir.join(entry_name(engine, bytes));
    if path.is_file() {
        // SAFETY: wasmtime requires that the file hold a module serialized by a compatible
        // wasmtime and not be altered since. It does: only `compile` below writes these files,
        // with `Module::serialize`, under a name that includes the engine's compatibility hash;
        // and wasmtime itself refuses a file from another version or configuration, in which
        // case we compile afresh.
        if let Ok(module) = unsafe { Module::deserialize_file(engine, &path) } {
            return Ok(module);
        }
    }
    let module = Module::new(engine, bytes)?;
    // The cache is only a speed-up: failing to write it is not an error.
    if let Ok(serialized) = module.serialize()
        && std::fs::create_dir_all(&dir).is_ok()
    {
        // Write then rename, so a test binary running in parallel never reads half a file.
        let tmp = dir.join(format!(
            "{}.{}.tmp",
            entry_name(engine, bytes),
            std::process::id()
        ));
        if std::fs::write(&tmp, serialized).is_ok() && std::fs::rename(&tmp, &path).is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
    }
    Ok(module)
}
