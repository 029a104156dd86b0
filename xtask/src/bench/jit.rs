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

/// What a dump counted in JIT code, event by event (`Ir` alone, or with the cache simulation the
/// misses too).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JitCosts {
    /// The dump's events, in the order of its cost columns.
    events: Vec<String>,
    /// The sum of each column over JIT code.
    sums: Vec<u64>,
}

impl JitCosts {
    /// The sum of `event` in JIT code; `None` if the dump did not count that event.
    pub fn get(&self, event: &str) -> Option<u64> {
        let at = self.events.iter().position(|e| e == event)?;
        Some(self.sums.get(at).copied().unwrap_or(0))
    }
}

/// Sums every event column of `dump` (a callgrind output file's text) over the cost lines spent
/// in JIT code: `get("Ir")` is the instructions that ran there.
pub fn jit_costs(dump: &str) -> JitCosts {
    let mut objects = Names::default();
    let mut functions = Names::default();
    // How many position columns come before the costs (`positions: line` is one).
    let mut positions = 1;
    let mut in_jit = (false, false);
    let mut next_is_a_call = false;
    let mut costs = JitCosts::default();
    for line in dump.lines() {
        if let Some(spec) = line.strip_prefix("positions:") {
            positions = spec.split_whitespace().count().max(1);
        } else if let Some(spec) = line.strip_prefix("events:") {
            costs.events = spec.split_whitespace().map(str::to_owned).collect();
            costs.sums = vec![0; costs.events.len()];
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
            // Callgrind leaves out trailing zero columns.
            for (sum, cost) in costs
                .sums
                .iter_mut()
                .zip(line.split_whitespace().skip(positions))
            {
                *sum = sum.saturating_add(cost.parse().unwrap_or(0));
            }
        }
    }
    costs
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
        assert_eq!(jit_costs(dump).get("Ir"), Some(70));
    }

    #[test]
    fn positions_with_instruction_addresses_shift_the_cost_column() {
        let dump = "positions: instr line\nevents: Ir\nob=???\nfn=0x0000400000000000\n\
                    0x400000000010 7 25\n";
        assert_eq!(jit_costs(dump).get("Ir"), Some(25));
    }

    #[test]
    fn every_event_is_summed_over_jit_code_and_trailing_zeros_may_be_left_out() {
        let dump = "\
positions: line
events: Ir I1mr D1mr
ob=(1) ???
fn=(1) 0x0000400000000000
0 100 7 3
+1 50 2
fn=(2) 0x0000000000a00000
0 900 40 30
";
        let costs = jit_costs(dump);
        assert_eq!(costs.get("Ir"), Some(150));
        assert_eq!(costs.get("I1mr"), Some(9));
        assert_eq!(costs.get("D1mr"), Some(3));
        assert_eq!(costs.get("DLmw"), None);
        // A dump without an events line counts nothing.
        assert_eq!(
            jit_costs("ob=???\nfn=0x0000400000000000\n0 5\n").get("Ir"),
            None
        );
    }
}
