//! Probes: hand-written proxy-wasm modules that each add one thing to the one before, so that
//! their instruction counts (`--instructions`) split a wasm filter's cost in Envoy into its parts:
//! the stream context, a callback, a host call, a request-header write, and the other host calls
//! our filters make per request (reading the request headers, shared data, a property, response
//! headers), and what writing the whole request-header map at once would cost instead.
//!
//! More probes (`P-host-*`) make, with no logic at all, exactly the host calls one of our
//! modules makes per request: what any module with that policy must ask of Envoy. Timed next to
//! the native configuration (`--paired`), they tell whether a target is within reach of
//! proxy-wasm at all, and how much of the gap is our own code. `P-host-three` runs three of them
//! as D runs its three modules, one filter and one VM each ([`PROBE_CHAINS`]).
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
/// The request header the single-read probes ask for: `authorization` (13 bytes), which the
/// benchmark's request has and which Envoy keeps among its inline headers.
const READ_NAME_AT: u32 = 160;
/// Where host calls return their results (pointers, sizes, CAS): scratch words.
const RETURNS_AT: u32 = 1024;
/// A zeroed value of the size of rate-limit's shared-data group, for the probes that write what
/// rate-limit writes.
const GROUP_AT: u32 = 2048;
const GROUP_LEN: u32 = rate_limit::table::GROUP_LEN as u32;

/// The headers the one-module chain writes for the benchmark's request, with values of the
/// lengths it writes (the demo client `123`, a limit of 10^9): Envoy copies a name or value longer
/// than its inline strings hold to the heap, so what a host call costs depends on them. Request
/// headers first (bearer-auth's three, route-rewrite's one), then rate-limit's response headers.
const NAMED: [(&str, &str); 7] = [
    ("x-auth-subject", "123"),
    ("x-auth-client-id", "123"),
    ("x-auth-scope", "demo"),
    ("x-wasmgate-upstream", "notes_api"),
    ("x-ratelimit-limit", "1000000000"),
    ("x-ratelimit-remaining", "999999999"),
    ("x-ratelimit-reset", "1"),
];
/// A shared-data key of the form rate-limit uses for the benchmark's table (`gateway`).
const NAMED_KEY: &str = "wasmgate.rate-limit.gateway.4711";
/// Where the named headers are: a table of (name, name length, value, value length) words, one
/// entry per header, then the key's address and length, then the text they point to.
const NAMED_AT: u32 = 3072;

/// A probe with a request-headers callback doing `body`.
const fn on_request(id: &'static str, title: &'static str, body: &'static str) -> Probe {
    Probe {
        id,
        title,
        on_request_headers: Some(body),
        on_response_headers: None,
    }
}

pub const PROBES: [Probe; 21] = [
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
    // A filter that needs one or two headers could read them one by one instead of the whole map:
    // what one such read costs, of a header the request has and of one it does not.
    on_request(
        "P-get-10",
        "probe: + 10 reads of one request header the request has (proxy_get_header_map_value, \
         `authorization`)",
        "(call $get_present (i32.const 10))",
    ),
    on_request(
        "P-get-absent-10",
        "probe: + 10 reads of a request header the request does not have \
         (proxy_get_header_map_value, `x-p0`)",
        "(call $get_absent (i32.const 10))",
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
    // rate-limit replaces its three X-RateLimit response headers by default and adds them with
    // `append_action: append_if_exists_or_add`, as local_ratelimit does: what each way costs
    // with the headers' own names (long enough that Envoy copies each to the heap).
    Probe {
        id: "P-response-named-replace",
        title: "probe: P-response-callback + the 3 X-RateLimit response headers replaced \
                (proxy_replace_header_map_value)",
        on_request_headers: Some(""),
        on_response_headers: Some(
            "(call $replace_named (i32.const 2) (i32.const 4) (i32.const 3))",
        ),
    },
    Probe {
        id: "P-response-named-add",
        title: "probe: P-response-callback + the 3 X-RateLimit response headers added \
                (proxy_add_header_map_value)",
        on_request_headers: Some(""),
        on_response_headers: Some("(call $add_named (i32.const 2) (i32.const 4) (i32.const 3))"),
    },
    // What bearer-auth asks of Envoy for a request with a cached token (F-bearer-auth): the
    // request-header map read once, one clock read, the three identity headers added.
    on_request(
        "P-host-bearer-auth",
        "probe: bearer-auth's host calls and nothing else: 1 read of the request-header map, \
         1 clock read, 3 request-header adds",
        "(call $read_map) (call $repeat_clock (i32.const 1)) (call $add_headers (i32.const 3))",
    ),
    // What the one-module chain asks of Envoy per request (D1): the map read and the clock
    // shared by the stages; bearer-auth's three identity headers; rate-limit's group read and
    // written back with its CAS; route-rewrite's `x-wasmgate-upstream` added (with the
    // benchmark's `preserve_host` and `send_original_path: false`, C's policy, `:authority` and
    // `x-wasmgate-original-path` are not written; `:path` keeps its value, so it is not either);
    // and rate-limit's three X-RateLimit response headers added (the benchmark's
    // `append_action`, local_ratelimit's way).
    Probe {
        id: "P-host-chain",
        title: "probe: the one-module chain's host calls and nothing else: 1 read of the \
                request-header map, 1 clock read, 1 shared-data read and compare-and-swap \
                write of a rate-limit group, 4 request-header adds; 3 response-header adds",
        on_request_headers: Some(
            "(call $read_map) (call $repeat_clock (i32.const 1)) (call $shared_group) \
             (call $add_headers (i32.const 4))",
        ),
        on_response_headers: Some(
            "(call $add_headers_from (i32.const 2) (i32.const 0) (i32.const 3))",
        ),
    },
    // P-host-chain with the chain's own header names and values and a shared-data key of
    // rate-limit's form, where P-host-chain writes `x-p0`..`x-p3` with `probe`: the same host
    // calls, as Envoy handles them for the chain.
    Probe {
        id: "P-host-chain-named",
        title: "probe: P-host-chain's host calls with the chain's header names, values and \
                shared-data key",
        on_request_headers: Some(
            "(call $read_map) (call $repeat_clock (i32.const 1)) (call $shared_group_named) \
             (call $add_named (i32.const 0) (i32.const 0) (i32.const 4))",
        ),
        on_response_headers: Some("(call $add_named (i32.const 2) (i32.const 4) (i32.const 3))"),
    },
    // What rate-limit asks of Envoy as the second of D's three modules (F-rate-limit keys on the
    // client address instead): the request-header map read for `x-auth-client-id`, one clock
    // read, the group read and written back with its CAS, and the three X-RateLimit response
    // headers added (the benchmark's `append_action`).
    Probe {
        id: "P-host-rate-limit",
        title: "probe: rate-limit's host calls in D and nothing else: 1 read of the request-header \
                map, 1 clock read, 1 shared-data read and compare-and-swap write of a rate-limit \
                group; 3 response-header adds",
        on_request_headers: Some(
            "(call $read_map) (call $repeat_clock (i32.const 1)) (call $shared_group)",
        ),
        on_response_headers: Some(
            "(call $add_headers_from (i32.const 2) (i32.const 0) (i32.const 3))",
        ),
    },
    // What route-rewrite asks of Envoy as the last of D's modules, with the benchmark's C policy
    // (`preserve_host`, no original path): the request-header map read and `x-wasmgate-upstream`
    // added (here `x-p3`, after bearer-auth's three).
    on_request(
        "P-host-route-rewrite",
        "probe: route-rewrite's host calls and nothing else: 1 read of the request-header map, \
         1 request-header add",
        "(call $read_map) (call $add_headers_from (i32.const 0) (i32.const 3) (i32.const 1))",
    ),
];

/// Probes run together, each as a filter and a VM of its own, in this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeChain {
    pub id: &'static str,
    pub title: &'static str,
    pub probes: [&'static str; 3],
}

/// What D's three modules ask of Envoy per request, each module's host calls made by its probe.
pub const PROBE_CHAINS: [ProbeChain; 1] = [ProbeChain {
    id: "P-host-three",
    title: "probes: the host calls of D's three modules and nothing else, three filters and three \
            VMs: P-host-bearer-auth, P-host-rate-limit, P-host-route-rewrite",
    probes: [
        "P-host-bearer-auth",
        "P-host-rate-limit",
        "P-host-route-rewrite",
    ],
}];

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
  (import "env" "proxy_get_header_map_value" (func $get_value (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_get_property" (func $get_property (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 2)
  (global $next_free (mut i32) (i32.const 4096))
  (data (i32.const {VALUE_AT}) "probe")
  (data (i32.const {HEADER_NAMES_AT}) "x-p0x-p1x-p2x-p3x-p4x-p5x-p6x-p7x-p8x-p9")
  (data (i32.const {PROPERTY_AT}) "source\00address")
  (data (i32.const {READ_NAME_AT}) "authorization")
  (data (i32.const {NAMED_AT}) "{named}")
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
    (call $add_headers_from (i32.const 0) (i32.const 0) (local.get $n)))
  (func $add_headers_from (param $map i32) (param $first i32) (param $n i32)
    (loop $again
      (local.set $n (i32.sub (local.get $n) (i32.const 1)))
      (drop (call $add (local.get $map)
        (call $name_at (i32.add (local.get $first) (local.get $n)))
        (i32.const 4) (i32.const {VALUE_AT}) (i32.const 5)))
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
  (func $shared_group
    (drop (call $get_shared (i32.const {VALUE_AT}) (i32.const 5)
      (i32.const {RETURNS_AT}) (i32.const {returns_4}) (i32.const {returns_8})))
    (drop (call $set_shared (i32.const {VALUE_AT}) (i32.const 5) (i32.const {GROUP_AT})
      (i32.const {GROUP_LEN}) (i32.load (i32.const {returns_8})))))
  (func $shared_group_named
    (drop (call $get_shared (i32.load (i32.const {named_key})) (i32.load (i32.const {named_key_len}))
      (i32.const {RETURNS_AT}) (i32.const {returns_4}) (i32.const {returns_8})))
    (drop (call $set_shared (i32.load (i32.const {named_key})) (i32.load (i32.const {named_key_len}))
      (i32.const {GROUP_AT}) (i32.const {GROUP_LEN}) (i32.load (i32.const {returns_8})))))
  (func $replace_named (param $map i32) (param $first i32) (param $n i32)
    (call $write_named (i32.const 1) (local.get $map) (local.get $first) (local.get $n)))
  (func $add_named (param $map i32) (param $first i32) (param $n i32)
    (call $write_named (i32.const 0) (local.get $map) (local.get $first) (local.get $n)))
  (func $write_named (param $replace i32) (param $map i32) (param $first i32) (param $n i32)
    (local $entry i32)
    (loop $again
      (local.set $n (i32.sub (local.get $n) (i32.const 1)))
      (local.set $entry (i32.add (i32.const {NAMED_AT})
        (i32.mul (i32.add (local.get $first) (local.get $n)) (i32.const 16))))
      (if (local.get $replace)
        (then (drop (call $replace (local.get $map)
          (i32.load (local.get $entry)) (i32.load offset=4 (local.get $entry))
          (i32.load offset=8 (local.get $entry)) (i32.load offset=12 (local.get $entry)))))
        (else (drop (call $add (local.get $map)
          (i32.load (local.get $entry)) (i32.load offset=4 (local.get $entry))
          (i32.load offset=8 (local.get $entry)) (i32.load offset=12 (local.get $entry))))))
      (br_if $again (local.get $n))))
  (func $get_header (param $name i32) (param $len i32) (param $n i32)
    (loop $again
      (local.set $n (i32.sub (local.get $n) (i32.const 1)))
      (drop (call $get_value (i32.const 0) (local.get $name) (local.get $len)
        (i32.const {RETURNS_AT}) (i32.const {returns_4})))
      (br_if $again (local.get $n))))
  (func $get_present (param $n i32)
    (call $get_header (i32.const {READ_NAME_AT}) (i32.const 13) (local.get $n)))
  (func $get_absent (param $n i32)
    (call $get_header (i32.const {HEADER_NAMES_AT}) (i32.const 4) (local.get $n)))
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
        named = named_data(),
        named_key = NAMED_AT + 16 * NAMED.len() as u32,
        named_key_len = NAMED_AT + 16 * NAMED.len() as u32 + 4,
    )
}

/// The named headers' table and text (`NAMED_AT`), as the bytes of a WAT string.
fn named_data() -> String {
    let table_len = 16 * (NAMED.len() + 1);
    let mut text: Vec<u8> = Vec::new();
    let mut table: Vec<u8> = Vec::new();
    let mut place = |bytes: &str, table: &mut Vec<u8>| {
        let at = NAMED_AT as usize + table_len + text.len();
        table.extend((at as u32).to_le_bytes());
        table.extend((bytes.len() as u32).to_le_bytes());
        text.extend(bytes.as_bytes());
    };
    for (name, value) in NAMED {
        place(name, &mut table);
        place(value, &mut table);
    }
    place(NAMED_KEY, &mut table);
    table.resize(table_len, 0);
    table.extend(text);
    table.iter().map(|b| format!("\\{b:02x}")).collect()
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

pub fn find_chain(id: &str) -> Option<ProbeChain> {
    PROBE_CHAINS
        .iter()
        .copied()
        .find(|c| c.id.eq_ignore_ascii_case(id))
}

/// Every configuration id the probes add: each probe's and each chain's.
pub fn ids() -> impl Iterator<Item = &'static str> {
    PROBES
        .iter()
        .map(|p| p.id)
        .chain(PROBE_CHAINS.iter().map(|c| c.id))
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};
    use wasmgate_harness::{Action, FilterModule, Host, Message, TokenSigner, filter_wasm};

    use super::*;
    use crate::bench::configs::{AUDIENCE, FilterConfigs};

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

    const ISSUER: &str = "https://issuer.example";

    /// One request through `module` configured with `config` after one to warm up (the token
    /// cached, the bucket made), as Envoy's listener would send it: the request and response it
    /// ends with, and how many calls it made to the host.
    fn second_request(
        module: &FilterModule,
        config: &str,
        authorization: &str,
    ) -> (Message, Message, u64, Host) {
        requests_through(module, config, authorization, &[], 2)
    }

    /// `times` requests through `module` with `more` request headers (in D, what the filters
    /// before a module added): the last one's request, response and host calls.
    fn requests_through(
        module: &FilterModule,
        config: &str,
        authorization: &str,
        more: &[(&str, &str)],
        times: u32,
    ) -> (Message, Message, u64, Host) {
        let host = Host::new(module);
        let mut vm = host.plugin(config).unwrap();
        let mut request = vec![
            (":method", "GET"),
            (":path", "/api/notes"),
            (":authority", "127.0.0.1:8080"),
            (":scheme", "http"),
            ("authorization", authorization),
        ];
        request.extend_from_slice(more);
        let mut last = None;
        for _ in 0..times {
            let before = vm.crossings();
            let mut stream = vm.http_stream().unwrap();
            assert_eq!(
                stream.request_headers(&request, true).unwrap(),
                Action::Continue
            );
            let response = [(":status", "200"), ("content-length", "2")];
            assert_eq!(
                stream.response_headers(&response, false).unwrap(),
                Action::Continue
            );
            let (sent, answered) = (stream.request(), stream.response());
            stream.finish().unwrap();
            last = Some((sent, answered, (vm.crossings() - before).to_host));
        }
        let (sent, answered, calls) = last.unwrap();
        (sent, answered, calls, host)
    }

    fn probe_module(id: &str) -> FilterModule {
        let probe = find(id).unwrap();
        FilterModule::from_bytes(&wat::parse_str(wat(&probe)).unwrap()).unwrap()
    }

    /// The benchmark's filter configurations, with the signer's key inline instead of fetched.
    fn bench_configs(signer: &TokenSigner) -> FilterConfigs {
        let mut configs = FilterConfigs::load(ISSUER).unwrap();
        let jwks: Value = serde_json::from_str(&signer.jwks().unwrap()).unwrap();
        configs.bearer_auth["jwks"] = json!({ "inline": jwks });
        configs
    }

    fn bearer(signer: &TokenSigner) -> String {
        let now = wasmgate_harness::Clock::default().unix_seconds();
        let claims = json!({"iss": ISSUER, "sub": "bench", "aud": AUDIENCE, "client_id": "bench",
                            "scope": "demo", "iat": now, "jti": "1", "exp": now + 3600});
        format!("Bearer {}", signer.access_token(claims).unwrap())
    }

    /// A probe standing for rate-limit wrote its three response headers and a value of the size
    /// of rate-limit's group.
    fn assert_made_rate_limit_writes(response: &Message, host: &Host) {
        for name in ["x-p0", "x-p1", "x-p2"] {
            assert_eq!(response.header(name), Some("probe"), "{name}");
        }
        let group = host
            .shared_data()
            .get("probe")
            .map(|(value, _)| value.len());
        assert_eq!(group, Some(GROUP_LEN as usize));
    }

    /// The host-call probes do what their titles say, and as many host calls per request as the
    /// module they stand for makes with the benchmark's configuration: a probe that made fewer
    /// would make the floor look lower than it is.
    #[test]
    fn host_probes_make_the_host_calls_of_what_they_stand_for() {
        let signer = TokenSigner::new("bench");
        let configs = bench_configs(&signer);
        let authorization = bearer(&signer);

        let (request, response, probe_calls, host) =
            second_request(&probe_module("P-host-bearer-auth"), "", &authorization);
        for name in ["x-p0", "x-p1", "x-p2"] {
            assert_eq!(request.header(name), Some("probe"), "{name}");
        }
        assert_eq!(request.header("x-p3"), None);
        assert_eq!(request.header(":authority"), Some("127.0.0.1:8080"));
        assert_eq!(response.header("x-p0"), None);
        assert_eq!(host.shared_data().get("probe"), None);
        let bearer_auth = FilterModule::from_file(filter_wasm("bearer-auth").unwrap()).unwrap();
        let (request, _, calls, _) = second_request(
            &bearer_auth,
            &configs.bearer_auth.to_string(),
            &authorization,
        );
        assert_eq!(
            request.header("x-auth-client-id"),
            Some("bench"),
            "the token was accepted"
        );
        assert_eq!(
            probe_calls, calls,
            "host calls per request, probe against bearer-auth"
        );

        let (request, response, probe_calls, host) =
            second_request(&probe_module("P-host-chain"), "", &authorization);
        for name in ["x-p0", "x-p1", "x-p2", "x-p3"] {
            assert_eq!(request.header(name), Some("probe"), "{name}");
        }
        assert_eq!(request.header("x-p4"), None);
        assert_eq!(request.header(":authority"), Some("127.0.0.1:8080"));
        assert_made_rate_limit_writes(&response, &host);
        let chain = FilterModule::from_file(filter_wasm("chain").unwrap()).unwrap();
        let config = configs.chain(&configs.bearer_auth);
        let (request, response, calls, _) =
            second_request(&chain, &config.to_string(), &authorization);
        assert_eq!(request.header("x-wasmgate-upstream"), Some("notes_api"));
        assert!(response.header("x-ratelimit-remaining").is_some());
        assert_eq!(
            probe_calls, calls,
            "host calls per request, probe against the chain"
        );
    }

    /// The single-read probes make their ten reads and nothing else: each one's host calls are
    /// P-callback's and ten more.
    #[test]
    fn the_single_read_probes_make_ten_reads_more_than_the_callback() {
        let callback = second_request(&probe_module("P-callback"), "", "Bearer x").2;
        for id in ["P-get-10", "P-get-absent-10"] {
            let (request, _, calls, _) = second_request(&probe_module(id), "", "Bearer x");
            assert_eq!(calls, callback + 10, "{id}");
            assert_eq!(request.header("authorization"), Some("Bearer x"), "{id}");
        }
    }

    /// The named response probes write the three X-RateLimit headers the chain writes, each by
    /// its own call, with three host calls more than P-response-callback.
    #[test]
    fn the_named_response_probes_write_the_rate_limit_headers() {
        let callback = second_request(&probe_module("P-response-callback"), "", "Bearer x").2;
        for id in ["P-response-named-replace", "P-response-named-add"] {
            let (_, response, calls, _) = second_request(&probe_module(id), "", "Bearer x");
            assert_eq!(calls, callback + 3, "{id}");
            for (name, value) in &NAMED[4..] {
                assert_eq!(response.header(name), Some(*value), "{id}: {name}");
            }
        }
    }

    /// P-host-chain-named writes what the chain writes for the benchmark's request: the same
    /// request and response header names (values of the demo client's lengths), a group under a
    /// key of rate-limit's form, and as many host calls.
    #[test]
    fn the_named_probe_writes_the_headers_the_chain_writes() {
        let signer = TokenSigner::new("bench");
        let configs = bench_configs(&signer);
        let authorization = bearer(&signer);
        let (probe_request, probe_response, probe_calls, host) =
            second_request(&probe_module("P-host-chain-named"), "", &authorization);
        let chain = FilterModule::from_file(filter_wasm("chain").unwrap()).unwrap();
        let config = configs.chain(&configs.bearer_auth).to_string();
        let (request, response, calls, _) = second_request(&chain, &config, &authorization);

        let names = |m: &Message| {
            let mut names: Vec<String> = m.headers.0.iter().map(|(n, _)| n.clone()).collect();
            names.sort();
            names
        };
        assert_eq!(names(&probe_request), names(&request), "request headers");
        assert_eq!(names(&probe_response), names(&response), "response headers");
        let (on_request, on_response) = NAMED.split_at(4);
        for (name, value) in on_request {
            assert_eq!(probe_request.header(name), Some(*value), "{name}");
        }
        for (name, value) in on_response {
            assert_eq!(probe_response.header(name), Some(*value), "{name}");
        }
        assert_eq!(
            probe_request.header(":authority"),
            request.header(":authority")
        );
        // The benchmark's token is the demo client's: it is the subject and the client id.
        let client = crate::bench::authz::DEMO_CLIENT.0;
        assert_eq!((NAMED[0].1, NAMED[1].1), (client, client));
        let prefix = "wasmgate.rate-limit.gateway.";
        assert!(NAMED_KEY.starts_with(prefix));
        let group = host.shared_data().get(NAMED_KEY).map(|(v, _)| v.len());
        assert_eq!(group, Some(GROUP_LEN as usize));
        assert_eq!(
            probe_calls, calls,
            "host calls per request, probe against the chain"
        );
    }

    /// The same for D's second and third modules, each sent what the modules before it added.
    #[test]
    fn host_probes_of_d_make_the_host_calls_of_its_modules() {
        let signer = TokenSigner::new("bench");
        let configs = bench_configs(&signer);
        let authorization = bearer(&signer);
        let identity = [
            ("x-auth-subject", "bench"),
            ("x-auth-client-id", "bench"),
            ("x-auth-scopes", "demo"),
        ];

        let (request, response, probe_calls, host) =
            second_request(&probe_module("P-host-rate-limit"), "", &authorization);
        assert_eq!(request.header("x-p0"), None);
        assert_made_rate_limit_writes(&response, &host);
        let rate_limit = FilterModule::from_file(filter_wasm("rate-limit").unwrap()).unwrap();
        // Keyed on the client id header: without it rate-limit would read the client's address,
        // a host call more.
        let config = configs.rate_limit.to_string();
        let (_, response, calls, _) =
            requests_through(&rate_limit, &config, &authorization, &identity, 2);
        assert!(response.header("x-ratelimit-remaining").is_some());
        assert_eq!(
            probe_calls, calls,
            "host calls per request, probe against rate-limit"
        );

        let (request, _, probe_calls, _) =
            second_request(&probe_module("P-host-route-rewrite"), "", &authorization);
        assert_eq!(request.header("x-p3"), Some("probe"));
        assert_eq!(request.header("x-p4"), None);
        assert_eq!(request.header("x-p0"), None);
        assert_eq!(request.header(":authority"), Some("127.0.0.1:8080"));
        let route_rewrite = FilterModule::from_file(filter_wasm("route-rewrite").unwrap()).unwrap();
        let config = configs.route_rewrite.to_string();
        let (request, _, calls, _) =
            requests_through(&route_rewrite, &config, &authorization, &identity, 2);
        assert_eq!(request.header("x-wasmgate-upstream"), Some("notes_api"));
        assert_eq!(
            probe_calls, calls,
            "host calls per request, probe against route-rewrite"
        );
    }

    /// Not a test: D1's requests as the benchmark sends them, with its configuration, in a loop
    /// for a profile of our own code in the harness (BENCHMARKS.md, "Our own code, function by
    /// function"; `tests/harness/README.md` has the settings).
    /// `PROFILE_REQUESTS` requests, 2,000 by default.
    #[test]
    #[ignore = "a profiling loop, run by hand"]
    fn profile_loop_d1() {
        let signer = TokenSigner::new("bench");
        let configs = bench_configs(&signer);
        let authorization = bearer(&signer);
        let chain = FilterModule::from_file(filter_wasm("chain").unwrap()).unwrap();
        let config = configs.chain(&configs.bearer_auth).to_string();
        let requests = std::env::var("PROFILE_REQUESTS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(2_000);
        let (_, response, _, _) = requests_through(&chain, &config, &authorization, &[], requests);
        assert!(response.header("x-ratelimit-remaining").is_some());
    }

    #[test]
    fn the_three_module_probe_runs_the_host_probes_of_d_in_its_order() {
        let chain = find_chain("p-host-three").unwrap();
        assert_eq!(
            chain.probes,
            [
                "P-host-bearer-auth",
                "P-host-rate-limit",
                "P-host-route-rewrite"
            ]
        );
        assert!(chain.probes.iter().all(|id| find(id).is_some()));
        assert!(ids().any(|id| id == "P-host-three"));
    }
}
