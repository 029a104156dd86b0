//! Trims a built module's exports to the proxy-wasm callbacks its filter handles.
//!
//! The Rust SDK exports every callback of the ABI, and a host calls each one it finds: for every
//! request, Envoy enters the VM for the response body, the log, and so on, even when the filter
//! does nothing there. A host treats a missing callback as "continue" (proxy-wasm-cpp-host's
//! checks, Kong's ngx_wasm_module alike), so a module that does not export it behaves the same and
//! is entered less often; BENCHMARKS.md has the measurement. Only the export entries go: the
//! functions stay in the module, unreachable.

use anyhow::{Context, Result, bail};

/// Callbacks no filter of ours handles (HTTP bodies, trailers and metadata, logs, queues, gRPC,
/// network filters, foreign functions; `done`: bearer-auth forgets a paused request when its
/// context is dropped on `proxy_on_delete` instead).
const NEVER_HANDLED: [&str; 19] = [
    "proxy_on_done",
    "proxy_on_request_body",
    "proxy_on_request_trailers",
    "proxy_on_request_metadata",
    "proxy_on_response_body",
    "proxy_on_response_trailers",
    "proxy_on_response_metadata",
    "proxy_on_log",
    "proxy_on_queue_ready",
    "proxy_on_grpc_call_response_header_metadata",
    "proxy_on_grpc_call_response_message",
    "proxy_on_grpc_call_response_trailing_metadata",
    "proxy_on_grpc_call_close",
    "proxy_on_new_connection",
    "proxy_on_downstream_data",
    "proxy_on_downstream_connection_close",
    "proxy_on_upstream_data",
    "proxy_on_upstream_connection_close",
    "proxy_on_foreign_function",
];

/// The callbacks a module's filter does not handle, by `.wasm` stem: the ones above, plus the
/// response headers, ticks and callout answers where the filter has none of them. Every filter
/// ticks: its root context flushes the counters it adds up in the VM on the tick.
pub fn unhandled(stem: &str) -> Vec<&'static str> {
    let mut drop = NEVER_HANDLED.to_vec();
    let (response_headers, ticks, callouts) = match stem {
        "bearer_auth" => (false, true, true),
        "rate_limit" => (true, true, false),
        "route_rewrite" => (false, true, false),
        "wasmgate_bench_floor" => (false, false, false),
        // The chain runs all three; and anything unknown keeps what it has.
        _ => (true, true, true),
    };
    if !response_headers {
        drop.push("proxy_on_response_headers");
    }
    if !ticks {
        drop.push("proxy_on_tick");
    }
    if !callouts {
        drop.push("proxy_on_http_call_response");
    }
    drop
}

/// The names a module exports.
pub fn exports(module: &[u8]) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for section in sections(module)? {
        if section.id == EXPORT_SECTION {
            for entry in export_entries(section.body)? {
                names.push(entry.name.to_owned());
            }
        }
    }
    Ok(names)
}

/// `module` without the exports named in `drop`; every other byte is kept.
pub fn without_exports(module: &[u8], drop: &[&str]) -> Result<Vec<u8>> {
    let mut out = module.get(..8).context("not a wasm module")?.to_vec();
    for section in sections(module)? {
        if section.id != EXPORT_SECTION {
            out.extend_from_slice(section.whole);
            continue;
        }
        let kept: Vec<ExportEntry<'_>> = export_entries(section.body)?
            .into_iter()
            .filter(|e| !drop.contains(&e.name))
            .collect();
        let mut body = Vec::new();
        write_leb(&mut body, kept.len() as u64);
        for entry in kept {
            body.extend_from_slice(entry.raw);
        }
        out.push(EXPORT_SECTION);
        write_leb(&mut out, body.len() as u64);
        out.extend_from_slice(&body);
    }
    Ok(out)
}

const EXPORT_SECTION: u8 = 7;
const MAGIC: &[u8] = b"\0asm\x01\0\0\0";

struct Section<'a> {
    id: u8,
    body: &'a [u8],
    /// id, size and body, as in the file.
    whole: &'a [u8],
}

fn sections(module: &[u8]) -> Result<Vec<Section<'_>>> {
    if module.get(..8) != Some(MAGIC) {
        bail!("not a wasm module (version 1)");
    }
    let mut at = 8;
    let mut out = Vec::new();
    while at < module.len() {
        let start = at;
        let id = module[at];
        at += 1;
        let size = read_leb(module, &mut at)?;
        let end = at
            .checked_add(usize::try_from(size)?)
            .filter(|end| *end <= module.len())
            .context("a section runs past the end of the module")?;
        out.push(Section {
            id,
            body: &module[at..end],
            whole: &module[start..end],
        });
        at = end;
    }
    Ok(out)
}

struct ExportEntry<'a> {
    name: &'a str,
    /// The entry's bytes: name, kind and index.
    raw: &'a [u8],
}

fn export_entries(body: &[u8]) -> Result<Vec<ExportEntry<'_>>> {
    let mut at = 0;
    let count = read_leb(body, &mut at)?;
    let mut out = Vec::new();
    for _ in 0..count {
        let start = at;
        let len = usize::try_from(read_leb(body, &mut at)?)?;
        let name_end = at
            .checked_add(len)
            .filter(|e| *e <= body.len())
            .context("an export name runs past its section")?;
        let name = std::str::from_utf8(&body[at..name_end]).context("export name")?;
        at = name_end + 1; // the kind byte
        read_leb(body, &mut at)?; // the index
        out.push(ExportEntry {
            name,
            raw: body.get(start..at).context("truncated export entry")?,
        });
    }
    if at != body.len() {
        bail!("the export section has trailing bytes");
    }
    Ok(out)
}

fn read_leb(bytes: &[u8], at: &mut usize) -> Result<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *bytes.get(*at).context("truncated LEB128 number")?;
        *at += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    bail!("LEB128 number too long")
}

fn write_leb(out: &mut Vec<u8>, mut value: u64) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A module with a type, a function, a memory and four exports, by hand.
    fn module() -> Vec<u8> {
        let mut m = MAGIC.to_vec();
        m.extend([1, 4, 1, 0x60, 0, 0]); // type section: () -> ()
        m.extend([3, 2, 1, 0]); // function section: one function of type 0
        m.extend([5, 3, 1, 0, 1]); // memory section: one memory, min 1 page
        let mut exports = vec![4];
        for (name, kind) in [("memory", 2u8), ("keep", 0), ("proxy_on_log", 0), ("x", 0)] {
            exports.push(u8::try_from(name.len()).unwrap());
            exports.extend(name.as_bytes());
            exports.extend([kind, 0]);
        }
        m.push(EXPORT_SECTION);
        m.push(u8::try_from(exports.len()).unwrap());
        m.extend(exports);
        m.extend([10, 4, 1, 2, 0, 0x0b]); // code section: one empty body
        m
    }

    #[test]
    fn drops_only_the_named_exports_and_keeps_every_other_section() {
        let original = module();
        let trimmed = without_exports(&original, &["proxy_on_log", "absent"]).unwrap();
        assert_eq!(exports(&trimmed).unwrap(), ["memory", "keep", "x"]);
        let ids = |m: &[u8]| {
            sections(m)
                .unwrap()
                .iter()
                .map(|s| s.id)
                .collect::<Vec<_>>()
        };
        assert_eq!(ids(&trimmed), ids(&original));
        assert_eq!(without_exports(&original, &[]).unwrap(), original);
    }

    #[test]
    fn leb128_round_trips_and_malformed_modules_are_errors() {
        for v in [0, 1, 127, 128, 300, 16_384, u64::from(u32::MAX)] {
            let mut b = Vec::new();
            write_leb(&mut b, v);
            assert_eq!(read_leb(&b, &mut 0).unwrap(), v);
        }
        assert!(exports(b"not wasm").is_err());
        let mut cut = module();
        cut.truncate(cut.len() - 2);
        assert!(exports(&cut).is_err());
    }

    #[test]
    fn each_filter_keeps_the_callbacks_it_handles() {
        let bearer = unhandled("bearer_auth");
        assert!(!bearer.contains(&"proxy_on_http_call_response"));
        assert!(!bearer.contains(&"proxy_on_tick"));
        assert!(bearer.contains(&"proxy_on_response_headers"));
        assert!(!unhandled("rate_limit").contains(&"proxy_on_response_headers"));
        assert!(!unhandled("rate_limit").contains(&"proxy_on_tick"));
        assert!(!unhandled("route_rewrite").contains(&"proxy_on_tick"));
        assert!(unhandled("route_rewrite").contains(&"proxy_on_http_call_response"));
        assert!(unhandled("wasmgate_bench_floor").contains(&"proxy_on_tick"));
        let chain = unhandled("chain");
        assert!(!chain.contains(&"proxy_on_response_headers"));
        for never in [
            "proxy_on_request_headers",
            "proxy_on_context_create",
            "proxy_on_delete",
        ] {
            for stem in ["bearer_auth", "rate_limit", "route_rewrite", "chain"] {
                assert!(!unhandled(stem).contains(&never), "{stem} {never}");
            }
        }
    }
}
