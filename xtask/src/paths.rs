//! Where things live in the workspace. Every path is derived from the workspace root so the
//! commands work from any current directory.

use std::path::{Path, PathBuf};

/// The workspace root (the parent of this crate's directory).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// Project-local tools (the Envoy venv, test venvs): git-ignored.
pub fn tools_dir() -> PathBuf {
    root().join(".tools")
}

/// Generated dev certificates: git-ignored.
pub fn certs_dir() -> PathBuf {
    root().join("certs")
}

/// The Envoy template, the filters' configs and the rendered docker-compose config.
pub fn envoy_dir() -> PathBuf {
    root().join("envoy")
}

pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root().join("target"), PathBuf::from)
}

/// The compiled filters (`<name>.wasm`); `WASMGATE_WASM_DIR` overrides.
pub fn wasm_dir() -> PathBuf {
    std::env::var_os("WASMGATE_WASM_DIR").map_or_else(
        || target_dir().join("wasm32-wasip1").join("wasm"),
        PathBuf::from,
    )
}

/// The native binaries (authz-service, wasmgate-demo); `WASMGATE_BIN_DIR` overrides.
pub fn bin_dir() -> PathBuf {
    std::env::var_os("WASMGATE_BIN_DIR").map_or_else(|| target_dir().join("debug"), PathBuf::from)
}

/// The filters' OCI image layouts (`<package>/`, written by `cargo xtask build`);
/// `WASMGATE_OCI_DIR` overrides.
pub fn oci_dir() -> PathBuf {
    std::env::var_os("WASMGATE_OCI_DIR")
        .map_or_else(|| target_dir().join("oci-images"), PathBuf::from)
}

/// Kubernetes manifests (Istio, Envoy Gateway), rendered by `cargo xtask render`.
pub fn deploy_dir() -> PathBuf {
    root().join("deploy")
}

/// Per-run state and logs of stacks (`up` and tests): git-ignored.
pub fn run_dir() -> PathBuf {
    root().join(".run")
}

/// The three filters: (cargo package, wasm file stem).
pub const FILTERS: [(&str, &str); 3] = [
    ("bearer-auth", "bearer_auth"),
    ("rate-limit", "rate_limit"),
    ("route-rewrite", "route_rewrite"),
];

/// The one-module chain of the three filters (package, `.wasm` stem): built in a cargo run of
/// its own, since it links the filters without their entry points (filters/chain).
pub const CHAIN: (&str, &str) = ("chain", "chain");

/// The benchmark's floor filter (bench/floor-filter): what any wasm filter costs.
pub const FLOOR: (&str, &str) = ("wasmgate-bench-floor", "wasmgate_bench_floor");
