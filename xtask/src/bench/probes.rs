//! Probes: hand-written proxy-wasm modules that each add one thing to the one before, so that
//! their instruction counts (`--instructions`) split a wasm filter's cost in Envoy into its parts:
//! the stream context, a callback, a host call, a request-header write, and the other host calls
//! our filters make per request (reading the request headers, shared data, a property, response
//! headers), and what writing the whole request-header map at once would cost instead.
//!
//! They are written in the WebAssembly text format, without an SDK: every export and every host
//! call is in plain sight, and nothing else runs. The benchmark compiles them (with the `wat`
//! crate) into its run directory; each runs as the one filter in front of B's route, so what it
//! adds over B is its own cost.

use std::fs;
use std::path::Path;

use anyhow::{Context, Result};

/// One probe: its configuration id and what its callbacks do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe {
    pub id: &'static str,
    pub title: &'static str,
    /// The request-headers callback's body (WAT instructions), or `None` for a module without it.
    on_request_headers: Option<&'static str>,
    /// The response-headers callback's body, or `None` for a module without it.
    on_response_headers: Option<&'static str>,
}

/// Where the probes' data is in their memory: the header names they write, `x-p0` to `x-p9`
/// (four bytes each), and the one value.
const HEADER_NAMES_AT: u32 = 64;
const VALUE_AT: u32 = 48;
/// The shared-data key (`probe`, 5 bytes; it shares the value's bytes) and the property path
/// (`source` NUL `address`, 14 bytes).
const PROPERTY_AT: u32 = 112;
/// Where host calls return their results (pointers, sizes, CAS): scratch words.
const RETURNS_AT: u32 = 1024;

/// A probe with a request-headers callback doing `body`.
const fn on_request(id: &'static str, title: &'static str, body: &'static str) -> Probe {
    Probe {
        id,
        title,
        on_request_headers: Some(body),
        on_response_headers: None,
    }
}

pub const PROBES: [Probe; 12] = [
    Probe {
        id: "P-context",
        title: "probe: a wasm filter with no callback of its own (the stream context alone)",
        on_request_headers: None,
        on_response_headers: None,
    },
    on_request(
        "P-callback",
        "probe: + proxy_on_request_headers, returning Continue",
        "",
    ),
    on_request(
        "P-clock-10",
        "probe: + 10 host calls (clock reads) in the callback",
        "(call $repeat_clock (i32.const 10))",
    ),
    on_request(
        "P-replace-1",
        "probe: + 1 request-header write (proxy_replace_header_map_value)",
        "(call $replace_headers (i32.const 0) (i32.const 1))",
    ),
    on_request(
        "P-replace-10",
        "probe: + 10 request-header writes (proxy_replace_header_map_value)",
        "(call $replace_headers (i32.const 0) (i32.const 10))",
    ),
    on_request(
        "P-add-10",
        "probe: + 10 request-header writes (proxy_add_header_map_value)",
        "(call $add_headers (i32.const 10))",
    ),
    on_request(
        "P-read-map",
        "probe: + 1 read of the whole request-header map (proxy_get_header_map_pairs)",
        "(call $read_map)",
    ),
    on_request(
        "P-set-map",
        "probe: P-read-map + 1 write of the whole request-header map, the same pairs back \
         (proxy_set_header_map_pairs)",
        "(call $read_map) (call $write_map)",
    ),
    on_request(
        "P-shared-10",
        "probe: + 10 shared-data reads, each followed by a compare-and-swap write",
        "(call $shared (i32.const 10))",
    ),
    on_request(
        "P-property-10",
        "probe: + 10 property reads (source.address, proxy_get_property)",
        "(call $property (i32.const 10))",
    ),
    Probe {
        id: "P-response-callback",
        title: "probe: P-callback + proxy_on_response_headers, returning Continue",
        on_request_headers: Some(""),
        on_response_headers: Some(""),
    },
    Probe {
        id: "P-response-replace-3",
        title: "probe: + 3 response-header writes (proxy_replace_header_map_value)",
        on_request_headers: Some(""),
        on_response_headers: Some("(call $replace_headers (i32.const 2) (i32.const 3))"),
    },
];

/// The module of `probe` in the WebAssembly text format.
pub fn wat(probe: &Probe) -> String {
    // Each callback starts the bump allocator over: what the host handed over before is garbage.
    let callback = |export: &str, body: Option<&str>| {
        body.map_or(String::new(), |body| {
            format!(
                "(func (export \"{export}\") (param i32 i32 i32) (result i32)\n    \
                 (global.set $next_free (i32.const 4096))\n    {body}\n    (i32.const 0))"
            )
        })
    };
    let callbacks = [
        callback("proxy_on_request_headers", probe.on_request_headers),
        callback("proxy_on_response_headers", probe.on_response_headers),
    ]
    .join("\n  ");
    // A bump allocator for what the host hands to the module, reset by every callback.
    format!(
        r#"(module
  (import "env" "proxy_get_current_time_nanoseconds" (func $now (param i32) (result i32)))
  (import "env" "proxy_replace_header_map_value" (func $replace (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_add_header_map_value" (func $add (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_get_header_map_pairs" (func $pairs (param i32 i32 i32) (result i32)))
  (import "env" "proxy_set_header_map_pairs" (func $set_pairs (param i32 i32 i32) (result i32)))
  (import "env" "proxy_get_shared_data" (func $get_shared (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_set_shared_data" (func $set_shared (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_get_property" (func $get_property (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 2)
  (global $next_free (mut i32) (i32.const 4096))
  (data (i32.const {VALUE_AT}) "probe")
  (data (i32.const {HEADER_NAMES_AT}) "x-p0x-p1x-p2x-p3x-p4x-p5x-p6x-p7x-p8x-p9")
  (data (i32.const {PROPERTY_AT}) "source\00address")
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
  (func $replace_headers (param $map i32) (param $n i32)
    (loop $again
      (local.set $n (i32.sub (local.get $n) (i32.const 1)))
      (drop (call $replace (local.get $map) (call $name_at (local.get $n)) (i32.const 4)
        (i32.const {VALUE_AT}) (i32.const 5)))
      (br_if $again (local.get $n))))
  (func $add_headers (param $n i32)
    (loop $again
      (local.set $n (i32.sub (local.get $n) (i32.const 1)))
      (drop (call $add (i32.const 0) (call $name_at (local.get $n)) (i32.const 4)
        (i32.const {VALUE_AT}) (i32.const 5)))
      (br_if $again (local.get $n))))
  (func $read_map
    (drop (call $pairs (i32.const 0) (i32.const {RETURNS_AT}) (i32.const {returns_4}))))
  (func $write_map
    (drop (call $set_pairs (i32.const 0) (i32.load (i32.const {RETURNS_AT}))
      (i32.load (i32.const {returns_4})))))
  (func $shared (param $n i32)
    (loop $again
      (local.set $n (i32.sub (local.get $n) (i32.const 1)))
      (drop (call $get_shared (i32.const {VALUE_AT}) (i32.const 5)
        (i32.const {RETURNS_AT}) (i32.const {returns_4}) (i32.const {returns_8})))
      (drop (call $set_shared (i32.const {VALUE_AT}) (i32.const 5) (i32.const {VALUE_AT}) (i32.const 5)
        (i32.load (i32.const {returns_8}))))
      (br_if $again (local.get $n))))
  (func $property (param $n i32)
    (loop $again
      (local.set $n (i32.sub (local.get $n) (i32.const 1)))
      (drop (call $get_property (i32.const {PROPERTY_AT}) (i32.const 14)
        (i32.const {RETURNS_AT}) (i32.const {returns_4})))
      (br_if $again (local.get $n))))
  (func $name_at (param $index i32) (result i32)
    (i32.add (i32.const {HEADER_NAMES_AT}) (i32.mul (local.get $index) (i32.const 4))))
  {callbacks}
)
"#,
        returns_4 = RETURNS_AT + 4,
        returns_8 = RETURNS_AT + 8,
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
            assert_eq!(
                text.contains("\"proxy_on_response_headers\""),
                probe.on_response_headers.is_some(),
                "{}",
                probe.id
            );
        }
        fs::remove_dir_all(&dir).unwrap();
    }
}
