//! Instructions per request: Envoy run under valgrind's callgrind, which counts every instruction
//! the process executes in user space (its own code, V8's JIT-compiled wasm, libc), exactly.
//!
//! Why, next to the timed rounds: on a shared VM the CPU time of one configuration moves by more
//! between runs than our filters' changes weigh (B measured 36 to 58 µs per request on one day),
//! and there are no hardware counters to read instead. An instruction count does not move with
//! the machine: the same configuration gives the same count to within a few hundredths of a
//! percent, so a change of a few hundred instructions per request shows. It is a count, not a
//! time: it leaves out the kernel (the loopback TCP stack, the same system calls per request in
//! every configuration) and cache misses, and an instruction of V8's is not the same time as one
//! of Envoy's. The report gives it as what a configuration adds over B and as a multiple of what
//! C adds, the same terms as the timed "where the time goes".
//!
//! How: Envoy starts under `valgrind --tool=callgrind`, is warmed up (so valgrind has translated
//! the hot code and V8 compiled the modules), then for each window the counters are zeroed with
//! `callgrind_control -z`, wrk sends requests one after the other on one connection, and
//! `callgrind_control -d` dumps the window's total. One connection, because with many the number
//! of requests Envoy handles per wake-up varies from window to window, and with it the count
//! (by about 1 %; with one, by a few hundredths of a percent). Envoy is many times slower under
//! valgrind, which changes how many requests a window holds, not what each costs.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::bench::configs::Scenario;
use crate::bench::jit;
use crate::bench::measure::{self, Launch, Settings};
use crate::bench::wrk;

/// Envoy under valgrind answers its first 200 after V8 has compiled the modules, tens of times
/// slower than on its own (the chain module takes about a minute).
const FIRST_200_UNDER_VALGRIND: Duration = Duration::from_secs(600);

/// How long a dump may take to appear after `callgrind_control -d` returned.
const DUMP_TIMEOUT: Duration = Duration::from_secs(60);

/// The counted windows of one configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Count {
    /// Instructions per request in each window.
    pub per_request: Vec<f64>,
    /// Of those, the ones in JIT code (V8's compiled wasm and its wrappers, `bench::jit`).
    pub jit_per_request: Vec<f64>,
    /// Requests in each window.
    pub requests: Vec<u64>,
    /// With the cache simulation on: its misses per request in each window.
    pub misses_per_request: Vec<Misses>,
}

/// Cache misses per request in valgrind's model of this CPU's caches (`--cache-sim=yes`: the
/// first-level instruction and data caches and the last-level cache, sized as the machine's).
///
/// Why: where the timed rounds and the count disagree, the time goes somewhere the count does not
/// see, and on this VM there are no hardware counters to read cache misses from. The model is a
/// model: one process alone on its caches, no prefetching, no other tenant of the machine. It
/// shows how much code and data a request walks through, not what a miss costs.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Misses {
    /// Instruction fetches that missed the first-level instruction cache.
    pub i1: f64,
    /// Data reads and writes that missed the first-level data cache.
    pub d1: f64,
    /// Instruction fetches and data accesses that missed the last-level cache as well.
    pub ll: f64,
    /// Of the first-level instruction misses, those in JIT code (`bench::jit`): our compiled
    /// wasm and V8's wrappers around it. The rest are Envoy's and libc's.
    pub i1_jit: f64,
    /// Of the first-level data misses, those in JIT code.
    pub d1_jit: f64,
}

/// Counts `scenario`'s instructions per request in `windows` windows of `settings.duration`, and
/// with `cache_sim` the simulated cache misses too (valgrind runs about twice as slow).
pub fn count(
    scenario: &Scenario,
    config: &Path,
    settings: &Settings,
    run_dir: &Path,
    windows: u32,
    cache_sim: bool,
) -> Result<Count> {
    let out = run_dir.join(format!("callgrind-{}.out", scenario.id));
    let mut under = vec![
        "valgrind".to_owned(),
        "--tool=callgrind".to_owned(),
        // V8 writes and rewrites machine code in memory it maps itself.
        "--smc-check=all-non-file".to_owned(),
        format!("--callgrind-out-file={}", out.display()),
    ];
    if cache_sim {
        under.push("--cache-sim=yes".to_owned());
    }
    let launch = Launch {
        under,
        first_200_timeout: FIRST_200_UNDER_VALGRIND,
    };
    let label = format!("{}-instructions", scenario.id);
    let (mut envoy, _, log) =
        measure::start_envoy(&launch, scenario, config, settings, run_dir, &label)?;
    let pid = envoy.pid().to_string();
    let mut counted = Count {
        per_request: Vec::new(),
        jit_per_request: Vec::new(),
        requests: Vec::new(),
        misses_per_request: Vec::new(),
    };
    let outcome = (1..=windows).try_for_each(|window| {
        control(&pid, "-z")?;
        let load = measure::one_connection_load(settings);
        let outcome = wrk::run(&load, &settings.wrk_script).context("load under valgrind")?;
        control(&pid, "-d")?;
        if outcome.errors > 0 || outcome.requests == 0 {
            bail!(
                "{}: {} errors in {} requests under valgrind; Envoy's log: {}",
                scenario.id,
                outcome.errors,
                outcome.requests,
                log.display()
            );
        }
        let dump = dump_path(&out, window);
        let text = wait_for_dump(&dump)?;
        let per_request = |n: u64| n as f64 / outcome.requests as f64;
        counted.per_request.push(per_request(
            total(&text).context("a dump without its total")?,
        ));
        let jit = jit::jit_costs(&text);
        counted
            .jit_per_request
            .push(per_request(jit.get("Ir").unwrap_or(0)));
        if let (Some(all), Some(in_jit)) = (misses(&text), misses_in(|e| jit.get(e))) {
            counted.misses_per_request.push(Misses {
                i1: per_request(all.i1),
                d1: per_request(all.d1),
                ll: per_request(all.ll),
                i1_jit: per_request(in_jit.i1),
                d1_jit: per_request(in_jit.d1),
            });
        }
        counted.requests.push(outcome.requests);
        Ok(())
    });
    envoy.stop(Duration::from_secs(30));
    outcome?;
    Ok(counted)
}

/// Sends a command (`-z` zero the counters, `-d` dump them) to the callgrind run `pid`.
fn control(pid: &str, command: &str) -> Result<()> {
    let status = Command::new("callgrind_control")
        .args([command, pid])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .context("cannot run callgrind_control")?;
    if !status.success() {
        bail!("callgrind_control {command} {pid} failed ({status})");
    }
    Ok(())
}

/// Callgrind numbers its dumps: `<out>.1` is the first.
fn dump_path(out: &Path, window: u32) -> PathBuf {
    let mut name = out.as_os_str().to_owned();
    name.push(format!(".{window}"));
    PathBuf::from(name)
}

/// Waits for a complete dump (one with its total) and returns its text.
fn wait_for_dump(dump: &Path) -> Result<String> {
    let started = Instant::now();
    loop {
        let text = fs::read_to_string(dump).ok();
        if let Some(text) = text
            && is_complete(&text)
        {
            return Ok(text);
        }
        if started.elapsed() > DUMP_TIMEOUT {
            bail!("no complete callgrind dump at {}", dump.display());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Whether callgrind has written the whole dump: its `totals:` line, written last, is there up
/// to the line's end. Read any earlier and the line may be cut short, its first number included.
/// (Callgrind leaves out trailing zero columns, so the line may hold fewer numbers than there are
/// events, never more.)
fn is_complete(dump: &str) -> bool {
    let events = line(dump, "events:").map_or(0, |e| e.split_whitespace().count());
    let totals = line(dump, "totals:").map_or(0, |t| t.split_whitespace().count());
    dump.ends_with('\n') && total(dump).is_some() && totals <= events
}

/// The rest of the dump's first line that starts with `key` (`events:`, `totals:`).
fn line<'d>(dump: &'d str, key: &str) -> Option<&'d str> {
    dump.lines().find_map(|l| l.strip_prefix(key))
}

/// The instructions a dump counted: its `totals:` line, written last (`summary:` in older
/// versions holds the same number).
fn total(dump: &str) -> Option<u64> {
    line(dump, "totals:").and_then(|n| n.split_whitespace().next()?.parse().ok())
}

/// Whole-dump miss counts, in the units of the dump (not yet per request).
struct MissTotals {
    i1: u64,
    d1: u64,
    ll: u64,
}

/// The simulated misses of a dump, from its `events:` line and its `totals:` line; `None`
/// without the cache simulation (the events are then `Ir` alone).
fn misses(dump: &str) -> Option<MissTotals> {
    let events: Vec<&str> = line(dump, "events:")?.split_whitespace().collect();
    let totals: Vec<u64> = line(dump, "totals:")?
        .split_whitespace()
        .map(|n| n.parse().ok())
        .collect::<Option<_>>()?;
    // A column left out at the end of the line is a zero.
    misses_in(|name| {
        let at = events.iter().position(|e| *e == name)?;
        Some(totals.get(at).copied().unwrap_or(0))
    })
}

/// The misses out of a count of each event by name; `None` if it did not simulate the caches.
fn misses_in(event: impl Fn(&str) -> Option<u64>) -> Option<MissTotals> {
    Some(MissTotals {
        i1: event("I1mr")?,
        d1: event("D1mr")?.checked_add(event("D1mw")?)?,
        ll: event("ILmr")?
            .checked_add(event("DLmr")?)?
            .checked_add(event("DLmw")?)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dump_is_read_only_once_complete() {
        let partial = "version: 1\ncreator: callgrind-3.19.0\nevents: Ir\nsummary: 321499996\n";
        assert!(!is_complete(partial));
        assert_eq!(total(partial), None);
        let whole = format!("{partial}fn=(1)\n0 3\ntotals: 321918558\n");
        assert!(is_complete(&whole));
        assert_eq!(total(&whole), Some(321918558));
        // The last line being written: its first number may be cut short too.
        assert!(!is_complete(&format!("{partial}fn=(1)\n0 3\ntotals: 3219")));
        let simulated =
            "events: Ir Dr Dw I1mr D1mr D1mw ILmr DLmr DLmw\nfn=(1)\n0 1 1 1 1 1 1 1 1 1\n";
        assert!(!is_complete(&format!("{simulated}totals: 1000 400 200 3")));
        assert!(is_complete(&format!(
            "{simulated}totals: 1000 400 200 30 20 10 5 3 2\n"
        )));
        // Trailing zero columns are left out; more numbers than events is not a dump.
        assert!(is_complete(&format!(
            "{simulated}totals: 1000 400 200 30 20 10\n"
        )));
        assert!(!is_complete(&format!(
            "{simulated}totals: 1 2 3 4 5 6 7 8 9 10\n"
        )));
    }

    #[test]
    fn the_simulated_misses_are_read_by_event_name() {
        let dump = "events: Ir Dr Dw I1mr D1mr D1mw ILmr DLmr DLmw\nfn=(1)\n0 9 9 9 9 9 9 9 9 9\n\
                    totals: 1000 400 200 30 20 10 5 3 2\n";
        let m = misses(dump).unwrap();
        assert_eq!((m.i1, m.d1, m.ll), (30, 30, 10));
        assert_eq!(total(dump), Some(1000));
        // Callgrind leaves out trailing zero columns: the last-level misses are then none.
        let m = misses(&dump.replace("30 20 10 5 3 2", "30 20 10")).unwrap();
        assert_eq!((m.i1, m.d1, m.ll), (30, 30, 0));
        // Without the simulation there is nothing to read.
        assert!(misses("events: Ir\ntotals: 1000\n").is_none());
    }

    #[test]
    fn dumps_are_numbered_after_the_out_file() {
        let p = dump_path(Path::new("/run/callgrind-B.out"), 2);
        assert_eq!(p, Path::new("/run/callgrind-B.out.2"));
    }
}
