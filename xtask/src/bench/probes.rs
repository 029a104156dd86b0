//! Probes: hand-written proxy-wasm modules that each add one thing to the one before, so that
//! their instruction counts (`--instructions`) split a wasm filter's cost in Envoy into its parts:
//! the stream context, a callback, a host call, a request-header write.
//!
//! They are written in the WebAssembly text format, without an SDK: every export and every host
//! call is in plain sight, and nothing else runs. The benchmark compiles them (with the `wat`
//! crate) into its run directory; each runs as the one filter in front of B's route, so what it
//! adds over B is its own cost.

use std::fs;
use std::path::Path;

use anyhow::{Context, Result};

/// One probe: its configuration id and what its `proxy_on_request_headers` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe {
    pub id: &'static str,
    pub title: &'static str,
    /// The callback's body (WAT instructions), or `None` for a module without the callback.
    on_request_headers: Option<&'static str>,
}

/// Where the probes' data is in their memory: the header names they write, `x-p0` to `x-p9`
/// (four bytes each), and the one value.
const HEADER_NAMES_AT: u32 = 64;
const VALUE_AT: u32 = 48;

pub const PROBES: [Probe; 6] = [
    Probe {
        id: "P-context",
        title: "probe: a wasm filter with no callback of its own (the stream context alone)",
        on_request_headers: None,
    },
    Probe {
        id: "P-callback",
        title: "probe: + proxy_on_request_headers, returning Continue",
        on_request_headers: Some(""),
    },
    Probe {
        id: "P-clock-10",
        title: "probe: + 10 host calls (clock reads) in the callback",
        on_request_headers: Some("(call $repeat_clock (i32.const 10))"),
    },
    Probe {
        id: "P-replace-1",
        title: "probe: + 1 request-header write (proxy_replace_header_map_value)",
        on_request_headers: Some("(call $replace_headers (i32.const 1))"),
    },
    Probe {
        id: "P-replace-10",
        title: "probe: + 10 request-header writes (proxy_replace_header_map_value)",
        on_request_headers: Some("(call $replace_headers (i32.const 10))"),
    },
    Probe {
        id: "P-add-10",
        title: "probe: + 10 request-header writes (proxy_add_header_map_value)",
        on_request_headers: Some("(call $add_headers (i32.const 10))"),
    },
];

/// The module of `probe` in the WebAssembly text format.
pub fn wat(probe: &Probe) -> String {
    let callback = probe.on_request_headers.map_or(String::new(), |body| {
        format!(
            "(func (export \"proxy_on_request_headers\") (param i32 i32 i32) (result i32)\n    \
             {body}\n    (i32.const 0))"
        )
    });
    // A bump allocator for what the host hands to the module: nothing per request in these.
    format!(
        r#"(module
  (import "env" "proxy_get_current_time_nanoseconds" (func $now (param i32) (result i32)))
  (import "env" "proxy_replace_header_map_value" (func $replace (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_add_header_map_value" (func $add (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 2)
  (global $next_free (mut i32) (i32.const 4096))
  (data (i32.const {VALUE_AT}) "probe")
  (data (i32.const {HEADER_NAMES_AT}) "x-p0x-p1x-p2x-p3x-p4x-p5x-p6x-p7x-p8x-p9")
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_memory_allocate") (param $size i32) (result i32)
    (local $at i32)
    (local.set $at (global.get $next_free))
    (global.set $next_free (i32.add (local.get $at)
      (i32.and (i32.add (local.get $size) (i32.const 15)) (i32.const -16))))
    (local.get $at))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func $repeat_clock (param $n i32)
    (loop $again
      (local.set $n (i32.sub (local.get $n) (i32.const 1)))
      (drop (call $now (i32.const 1024)))
      (br_if $again (local.get $n))))
  (func $replace_headers (param $n i32)
    (loop $again
      (local.set $n (i32.sub (local.get $n) (i32.const 1)))
      (drop (call $replace (i32.const 0) (call $name_at (local.get $n)) (i32.const 4)
        (i32.const {VALUE_AT}) (i32.const 5)))
      (br_if $again (local.get $n))))
  (func $add_headers (param $n i32)
    (loop $again
      (local.set $n (i32.sub (local.get $n) (i32.const 1)))
      (drop (call $add (i32.const 0) (call $name_at (local.get $n)) (i32.const 4)
        (i32.const {VALUE_AT}) (i32.const 5)))
      (br_if $again (local.get $n))))
  (func $name_at (param $index i32) (result i32)
    (i32.add (i32.const {HEADER_NAMES_AT}) (i32.mul (local.get $index) (i32.const 4))))
  {callback}
)
"#
    )
}

/// The module file of `probe` in `dir`.
pub fn wasm_file(dir: &Path, probe: &Probe) -> std::path::PathBuf {
    dir.join(format!("{}.wasm", probe.id))
}

/// Compiles every probe into `dir`.
pub fn write_all(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir)?;
    for probe in &PROBES {
        let bytes = wat::parse_str(wat(probe)).with_context(|| format!("probe {}", probe.id))?;
        fs::write(wasm_file(dir, probe), bytes)?;
    }
    Ok(())
}

pub fn find(id: &str) -> Option<Probe> {
    PROBES
        .iter()
        .copied()
        .find(|p| p.id.eq_ignore_ascii_case(id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_probe_compiles_and_adds_only_its_callback() {
        let dir = std::env::temp_dir().join(format!("wasmgate-probes-{}", std::process::id()));
        write_all(&dir).unwrap();
        for probe in &PROBES {
            let bytes = fs::read(wasm_file(&dir, probe)).unwrap();
            assert!(bytes.starts_with(b"\0asm"), "{}", probe.id);
            let text = wat(probe);
            assert_eq!(
                text.contains("\"proxy_on_request_headers\""),
                probe.on_request_headers.is_some(),
                "{}",
                probe.id
            );
        }
        fs::remove_dir_all(&dir).unwrap();
    }
}
