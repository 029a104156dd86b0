//! Which of a callgrind dump's instructions ran in JIT code: V8's compiled wasm functions and the
//! wrappers between them and Envoy. The rest is Envoy's own work (including what it does for our
//! host calls) and libc's.
//!
//! The Envoy binary is stripped, so callgrind names no function of it, and V8's code has no file
//! behind it: both show as object `???`. They are told apart by address. Envoy is not
//! position-independent and is loaded low; V8 reserves its code space far above 4 GiB. So a
//! function of `???` at an address at or above 4 GiB is JIT code, and one below is part of Envoy
//! (its unnamed pieces, such as its memory copying routines, which B runs too).

use std::collections::HashMap;

/// Where JIT code starts: V8's code space lies above this, the Envoy binary below.
const JIT_FROM: u64 = 1 << 32;

/// The instructions of `dump` (a callgrind output file's text) that ran in JIT code.
pub fn jit_instructions(dump: &str) -> u64 {
    let mut objects = Names::default();
    let mut functions = Names::default();
    // How many position columns come before the costs (`positions: line` is one).
    let mut positions = 1;
    let mut in_jit = (false, false);
    let mut next_is_a_call = false;
    let mut sum = 0u64;
    for line in dump.lines() {
        if let Some(spec) = line.strip_prefix("positions:") {
            positions = spec.split_whitespace().count().max(1);
        } else if let Some(spec) = line.strip_prefix("ob=") {
            in_jit.0 = objects.resolve(spec) == "???";
        } else if let Some(spec) = line.strip_prefix("fn=") {
            in_jit.1 = is_jit_address(functions.resolve(spec));
        } else if let Some(spec) = line.strip_prefix("cob=") {
            objects.resolve(spec);
        } else if let Some(spec) = line.strip_prefix("cfn=") {
            functions.resolve(spec);
        } else if line.starts_with("calls=") {
            // The cost line after it is the call's inclusive cost, counted where it was spent.
            next_is_a_call = true;
        } else if line.starts_with(|c: char| c.is_ascii_digit() || matches!(c, '+' | '-' | '*')) {
            if std::mem::take(&mut next_is_a_call) || in_jit != (true, true) {
                continue;
            }
            let cost = line.split_whitespace().nth(positions);
            sum = sum.saturating_add(cost.and_then(|n| n.parse().ok()).unwrap_or(0));
        }
    }
    sum
}

/// Callgrind's name compression: `(7) name` defines id 7, a later `(7)` means that name.
#[derive(Default)]
struct Names(HashMap<String, String>);

impl Names {
    fn resolve(&mut self, spec: &str) -> &str {
        let spec = spec.trim();
        let Some(rest) = spec.strip_prefix('(') else {
            return self
                .0
                .entry(spec.to_owned())
                .or_insert_with(|| spec.to_owned());
        };
        let (id, name) = rest.split_once(')').unwrap_or((rest, ""));
        let name = name.trim();
        let entry = self.0.entry(id.to_owned()).or_default();
        if !name.is_empty() {
            name.clone_into(entry);
        }
        entry
    }
}

/// `0x0000306e2b46d660`: an address callgrind could not name, in V8's code space.
fn is_jit_address(name: &str) -> bool {
    name.strip_prefix("0x")
        .and_then(|hex| u64::from_str_radix(hex, 16).ok())
        .is_some_and(|address| address >= JIT_FROM)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_unnamed_code_above_4_gib_counts_and_calls_count_where_they_were_spent() {
        let dump = "\
version: 1
positions: line
events: Ir
ob=(1) /usr/bin/envoy
fl=(1) ???
fn=(1) 0x0000000000a00000
0 500
cob=(2) ???
cfn=(2) 0x0000306e2b46d660
calls=1 0
0 70
ob=(2)
fn=(2)
0 40
+3 30
cfn=(3) 0x000000000628d840
calls=2 0
0 9
fn=(3)
0 9
ob=(3) /usr/lib/x86_64-linux-gnu/libc.so.6
fn=(4) memcpy
0 11
totals: 590
";
        // 0x306e2b46d660's own 40 + 30; not the 70 Envoy's call spent in it (counted there), not
        // the call from it to 0x628d840 (9, Envoy's code, low), nor libc's.
        assert_eq!(jit_instructions(dump), 70);
    }

    #[test]
    fn positions_with_instruction_addresses_shift_the_cost_column() {
        let dump = "positions: instr line\nob=???\nfn=0x0000400000000000\n0x400000000010 7 25\n";
        assert_eq!(jit_instructions(dump), 25);
    }
}
