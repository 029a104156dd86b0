//! Every filter's compiled `.wasm` imports nothing outside the proxy-wasm 0.2.1 host functions and
//! the WASI calls Envoy offers: the proof that the filters run in any proxy-wasm host.

// Test code: a failed expectation should stop the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use wasmgate_harness::{
    FilterModule, PROXY_WASM_IMPORTS, PROXY_WASM_MODULE, WASI_IMPORTS, WASI_MODULE, filter_wasm,
};

/// The filters of the product, and the harness's own fixture.
const PACKAGES: &[&str] = &[
    "bearer-auth",
    "rate-limit",
    "route-rewrite",
    "wasmgate-harness-fixture",
];

fn allowed(module: &str, name: &str) -> bool {
    (module == PROXY_WASM_MODULE && PROXY_WASM_IMPORTS.contains(&name))
        || (module == WASI_MODULE && WASI_IMPORTS.contains(&name))
}

#[test]
fn every_filter_imports_only_proxy_wasm_0_2_1_and_the_envoy_wasi_set() {
    let mut failures = Vec::new();
    for package in PACKAGES {
        let path = filter_wasm(package).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        // Loading refuses a foreign import by name; the explicit list below says which ones.
        let started = std::time::Instant::now();
        match FilterModule::from_bytes(&bytes) {
            Ok(module) => {
                let imports = module.imports();
                eprintln!(
                    "{package}: {} bytes, compiled in {:?}, {} imports: {:?}",
                    bytes.len(),
                    started.elapsed(),
                    imports.len(),
                    imports
                        .iter()
                        .map(|(m, n)| format!("{m}.{n}"))
                        .collect::<Vec<_>>()
                );
                for (module, name) in imports {
                    if !allowed(&module, &name) {
                        failures.push(format!("{package}: {module}.{name}"));
                    }
                }
            }
            Err(err) => failures.push(format!("{package}: {err}")),
        }
    }
    assert!(
        failures.is_empty(),
        "imports outside the allowed set: {failures:#?}"
    );
}
