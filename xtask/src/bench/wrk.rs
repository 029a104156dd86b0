//! The load generator: wrk, driven through bench/wrk/report.lua, which prints its results as one
//! JSON line that is parsed here.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::bench::cpus::pinned;

/// One load run.
#[derive(Debug, Clone)]
pub struct Load {
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub connections: u32,
    pub duration: Duration,
    /// Each connection waits this long between requests (`None`: as fast as possible).
    pub delay_ms: Option<u32>,
    /// POST bodies, one per line, each sent once.
    pub bodies: Option<PathBuf>,
    /// Fixed POST body (sent with every request).
    pub body: Option<String>,
    /// The CPU wrk runs on.
    pub cpu: Option<usize>,
}

/// What wrk measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Outcome {
    pub requests: u64,
    pub seconds: f64,
    /// Connect, read, write and timeout errors plus non-2xx/3xx answers.
    pub errors: u64,
    pub non_2xx: u64,
    pub latency_us: Latency,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Latency {
    pub p50: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

impl Outcome {
    /// Requests per second over the run.
    pub fn rate(&self) -> f64 {
        if self.seconds > 0.0 {
            self.requests as f64 / self.seconds
        } else {
            0.0
        }
    }
}

/// Runs wrk and returns its results. `script` is bench/wrk/report.lua.
pub fn run(load: &Load, script: &Path) -> Result<Outcome> {
    let mut command = pinned(load.cpu, "wrk");
    // One wrk thread: the load generator has one core, and single-use bodies need one Lua state.
    command
        .args(["-t1", "-c", &load.connections.to_string()])
        .arg(format!("-d{}s", whole_seconds(load.duration)))
        .args(["--timeout", "5s", "-s"])
        .arg(script);
    for (name, value) in &load.headers {
        command.arg("-H").arg(format!("{name}: {value}"));
    }
    if let Some(ms) = load.delay_ms {
        command.env("BENCH_DELAY_MS", ms.to_string());
    }
    if let Some(bodies) = &load.bodies {
        command.env("BENCH_BODIES", bodies);
    }
    if let Some(body) = &load.body {
        command.env("BENCH_BODY", body);
    }
    command.arg(&load.url);
    let out = command
        .output()
        .with_context(|| format!("cannot run wrk: {command:?}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "wrk failed ({}): {}{}",
            out.status,
            stdout,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    parse(&stdout).with_context(|| format!("unexpected wrk output:\n{stdout}"))
}

/// wrk takes whole seconds only: at least one.
fn whole_seconds(d: Duration) -> u64 {
    d.as_secs_f64().ceil().max(1.0) as u64
}

/// Reads the `BENCH_JSON {...}` line report.lua prints.
pub fn parse(stdout: &str) -> Result<Outcome> {
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("BENCH_JSON "))
        .context("no BENCH_JSON line")?;
    let v: Value = serde_json::from_str(line).context("BENCH_JSON is not JSON")?;
    let num = |path: &[&str]| -> Result<f64> {
        let mut at = &v;
        for key in path {
            at = at
                .get(key)
                .with_context(|| format!("missing `{}`", path.join(".")))?;
        }
        at.as_f64()
            .with_context(|| format!("`{}` is not a number", path.join(".")))
    };
    let count = |path: &[&str]| -> Result<u64> {
        let n = num(path)?;
        if n < 0.0 {
            bail!("`{}` is negative", path.join("."));
        }
        Ok(n as u64)
    };
    let non_2xx = count(&["errors", "status"])?;
    let errors = ["connect", "read", "write", "timeout"]
        .iter()
        .map(|k| count(&["errors", k]))
        .sum::<Result<u64>>()?
        + non_2xx;
    Ok(Outcome {
        requests: count(&["requests"])?,
        seconds: num(&["duration_us"])? / 1e6,
        errors,
        non_2xx,
        latency_us: Latency {
            p50: num(&["latency_us", "p50"])?,
            p99: num(&["latency_us", "p99"])?,
            p999: num(&["latency_us", "p999"])?,
            max: num(&["latency_us", "max"])?,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "Running 1s test @ http://127.0.0.1:1/api/notes\n\
        BENCH_JSON {\"requests\":30000,\"duration_us\":1500000,\"bytes\":1,\
        \"errors\":{\"connect\":1,\"read\":2,\"write\":0,\"status\":4,\"timeout\":0},\
        \"latency_us\":{\"mean\":900.5,\"p50\":800,\"p90\":1000,\"p99\":2100,\"p999\":5300,\"max\":9000}}\n";

    #[test]
    fn reads_the_json_line_among_wrk_text() {
        let o = parse(SAMPLE).unwrap();
        assert_eq!(o.requests, 30000);
        assert_eq!(o.rate(), 20000.0);
        assert_eq!(o.errors, 7);
        assert_eq!(o.non_2xx, 4);
        assert_eq!(o.latency_us.p50, 800.0);
        assert_eq!(o.latency_us.p99, 2100.0);
        assert_eq!(o.latency_us.p999, 5300.0);
    }

    #[test]
    fn durations_round_up_to_whole_seconds() {
        assert_eq!(whole_seconds(Duration::from_millis(300)), 1);
        assert_eq!(whole_seconds(Duration::from_millis(2500)), 3);
        assert_eq!(whole_seconds(Duration::from_secs(10)), 10);
    }

    #[test]
    fn refuses_output_without_results() {
        assert!(parse("Running 1s test\n").is_err());
        assert!(parse("BENCH_JSON {\"requests\":1}").is_err());
        assert!(parse("BENCH_JSON not json").is_err());
    }
}
