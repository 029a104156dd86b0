//! `cargo xtask bench`: our filter chain against Envoy's native filters, side by side in one run.
//!
//! It builds everything in release mode, starts an nginx upstream and the authz-service (which
//! mints the one token every configuration is driven with and serves the JWKS), then starts
//! Envoy with each configuration of bench/envoy/ in turn, interleaved over the rounds, and
//! drives it with wrk from another core. The authz-service is measured on its own afterwards.
//! The report goes to bench/results/ (JSON + Markdown); BENCHMARKS.md explains it.

mod authz;
mod b64;
mod configs;
mod cpus;
mod http;
mod instructions;
mod jit;
mod measure;
mod paired;
mod probes;
mod procstat;
mod profile;
mod report;
mod stats;
mod upstream;
mod wrk;

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use serde_json::Value;
use xtask::build::build;
use xtask::envoy::ensure_envoy;
use xtask::paths::{CHAIN, FILTERS, bin_dir, root, run_dir, wasm_dir};
use xtask::tools::{ensure_debian_commands, output};

use configs::{FilterConfigs, SCENARIOS, Scenario, Values, bench_dir};
use cpus::Plan;
use measure::{Paced, Settings};
use paired::{Pacing, PairedRuns};
use report::{AuthzRuns, InstructionRuns, Report, RunInfo, ScenarioRuns};

#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// A few seconds, one round: checks that the benchmark still works (its numbers mean nothing).
    #[arg(long)]
    smoke: bool,
    /// Rounds, each running every configuration once (interleaved); 0 runs none, for a run of
    /// only --paired, --instructions or --profile.
    #[arg(long, default_value_t = 3)]
    rounds: u32,
    /// Seconds of load at saturation per configuration and round.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Seconds of warm-up load before each measurement.
    #[arg(long, default_value_t = 3.0)]
    warmup: f64,
    /// Seconds of load at the fixed moderate rate.
    #[arg(long, default_value_t = 5.0)]
    paced_duration: f64,
    /// wrk's connections at saturation.
    #[arg(long, default_value_t = 32)]
    connections: u32,
    /// Only these configurations (e.g. `--only B,C,D`); all by default.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Leave out the authz-service's own measurements.
    #[arg(long)]
    skip_authz: bool,
    /// Use what is built already (target/release, or WASMGATE_BIN_DIR and WASMGATE_WASM_DIR).
    #[arg(long)]
    no_build: bool,
    /// Also compare these configurations in paired bursts (e.g. `--paired F-jwt-authn,F-bearer-auth`):
    /// their Envoys run at once and are driven in turn for a few seconds each, so a drift of the
    /// machine falls on both sides of each ratio; ratios are to the first.
    #[arg(long, value_delimiter = ',')]
    paired: Vec<String>,
    /// With --paired: how many cycles, each driving every paired configuration once.
    #[arg(long, default_value_t = 15, requires = "paired")]
    cycles: u32,
    /// With --paired: seconds of load at saturation per configuration and cycle (whole seconds).
    #[arg(long, default_value_t = 2.0, requires = "paired")]
    burst: f64,
    /// Also profile these configurations with perf (e.g. `--profile D,C`): profile-<id>.txt.
    #[arg(long, value_delimiter = ',')]
    profile: Vec<String>,
    /// Also count these configurations' instructions per request under valgrind's callgrind
    /// (e.g. `--instructions B,C,D1`): exact where the timed rounds are noisy; see BENCHMARKS.md.
    #[arg(long, value_delimiter = ',')]
    instructions: Vec<String>,
    /// With --instructions: also simulate the caches (valgrind's model of this CPU's) and report
    /// the misses per request; about twice as slow.
    #[arg(long, requires = "instructions")]
    cache_sim: bool,
    /// Where to write latest.json and latest.md [default: bench/results].
    #[arg(long)]
    out: Option<PathBuf>,
}

/// The resolved settings of one run.
#[derive(Debug, Clone)]
pub struct Options {
    pub mode: &'static str,
    pub rounds: u32,
    pub duration: Duration,
    pub warmup: Duration,
    pub paced: Paced,
    pub connections: u32,
    pub scenarios: Vec<Scenario>,
    pub paired: Vec<Scenario>,
    pub pacing: Pacing,
    pub profile: Vec<Scenario>,
    pub instructions: Vec<Scenario>,
    pub cache_sim: bool,
    pub authz: bool,
    pub build: bool,
    pub bin_dir: PathBuf,
    pub out_dir: PathBuf,
    pub command: String,
}

/// The fixed moderate rate: 10 connections, one request each every 10 ms (≈ 1,000 req/s, a few
/// percent of what one core serves), so latency is measured without queueing.
const PACED_CONNECTIONS: u32 = 10;
/// Counted windows per configuration under callgrind: two, so the report shows the count
/// repeats.
const INSTRUCTION_WINDOWS: u32 = 2;
const PACED_DELAY_MS: u32 = 10;

impl Options {
    pub fn from_args(args: &BenchArgs) -> Result<Self> {
        let mut scenarios = find_all(&args.only)?;
        if scenarios.is_empty() {
            scenarios = SCENARIOS.to_vec();
        }
        let secs = |s: f64, what: &str| -> Result<Duration> {
            if !(s.is_finite() && s > 0.0 && s <= 3600.0) {
                bail!("--{what} must be between 0 and 3600 seconds");
            }
            Ok(Duration::from_secs_f64(s))
        };
        let (rounds, duration, warmup, paced) = if args.smoke {
            (1, 1.0, 1.0, 1.0)
        } else {
            (args.rounds, args.duration, args.warmup, args.paced_duration)
        };
        let measures_more =
            !(args.paired.is_empty() && args.instructions.is_empty() && args.profile.is_empty());
        if rounds == 0 && !measures_more {
            bail!("--rounds must be at least 1, or 0 with --paired, --instructions or --profile");
        }
        if rounds == 0 {
            // Only what else was asked for: no configuration is run in rounds.
            scenarios.clear();
        }
        if args.connections == 0 {
            bail!("--connections must be at least 1");
        }
        let paired = find_all(&args.paired)?;
        let distinct: std::collections::BTreeSet<&str> = paired.iter().map(|s| s.id).collect();
        if !paired.is_empty() && (paired.len() < 2 || distinct.len() != paired.len()) {
            bail!("--paired needs at least two different configurations");
        }
        let (cycles, burst) = if args.smoke {
            (1, 1.0)
        } else {
            (args.cycles, args.burst)
        };
        if cycles == 0 {
            bail!("--cycles must be at least 1");
        }
        let bin_dir = if args.no_build {
            bin_dir_or_release()
        } else {
            release_dir()
        };
        // The authz-service's targets are about its optimised build: measured on the debug one,
        // which `--no-build` falls back to, they would be wrong by a factor (1,484 tokens/s and
        // 45.5 MiB against 7,514 and 22.2 on the same machine, 2026-12-01).
        let debug_fallback = args.no_build
            && std::env::var_os("WASMGATE_BIN_DIR").is_none()
            && bin_dir != release_dir();
        if debug_fallback && !args.skip_authz && !args.smoke {
            bail!(
                "--no-build found no release build of the authz-service in {}: build it \
                 (`cargo build --release -p authz-service`), point WASMGATE_BIN_DIR at one, or \
                 pass --skip-authz",
                release_dir().display()
            );
        }
        Ok(Self {
            mode: if args.smoke { "smoke" } else { "full" },
            rounds,
            duration: secs(duration, "duration")?,
            warmup: secs(warmup, "warmup")?,
            paced: Paced {
                connections: PACED_CONNECTIONS,
                delay_ms: PACED_DELAY_MS,
                duration: secs(paced, "paced-duration")?,
            },
            connections: args.connections,
            scenarios,
            paired,
            pacing: Pacing {
                cycles,
                burst: secs(burst, "burst")?,
            },
            profile: find_all(&args.profile)?,
            instructions: find_all(&args.instructions)?,
            cache_sim: args.cache_sim,
            authz: !args.skip_authz,
            build: !args.no_build,
            bin_dir,
            out_dir: args
                .out
                .clone()
                .unwrap_or_else(|| bench_dir().join("results")),
            command: std::iter::once("cargo xtask bench".to_owned())
                .chain(std::env::args().skip(2))
                .collect::<Vec<_>>()
                .join(" "),
        })
    }
}

fn find_all(ids: &[String]) -> Result<Vec<Scenario>> {
    ids.iter()
        .map(|id| {
            configs::find(id).with_context(|| {
                let ids: Vec<&str> = SCENARIOS
                    .iter()
                    .map(|s| s.id)
                    .chain(probes::ids())
                    .collect();
                format!("unknown configuration `{id}`; known: {}", ids.join(", "))
            })
        })
        .collect()
}

/// `cargo xtask bench`.
pub fn run(args: &BenchArgs) -> Result<()> {
    let options = Options::from_args(args)?;
    let report = run_with(&options)?;
    println!("\n{}", report.markdown);
    let targets = report.json["targets"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let met = targets
        .iter()
        .filter(|t| t["met"] == Value::Bool(true))
        .count();
    println!("targets met: {met} of {}", targets.len());
    println!(
        "report: {} and {}",
        options.out_dir.join("latest.md").display(),
        options.out_dir.join("latest.json").display()
    );
    Ok(())
}

/// A written report.
pub struct Written {
    pub json: Value,
    pub markdown: String,
}

fn release_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| root().join("target"), PathBuf::from)
        .join("release")
}

/// With `--no-build`: WASMGATE_BIN_DIR if set (the test command sets it), else target/release
/// when it holds the authz-service, else the debug build.
fn bin_dir_or_release() -> PathBuf {
    let release = release_dir();
    if std::env::var_os("WASMGATE_BIN_DIR").is_none() && release.join("authz-service").is_file() {
        release
    } else {
        bin_dir()
    }
}

/// Installs what the benchmark needs: wrk and nginx from Debian, taskset, Envoy; valgrind when
/// instructions are counted.
pub fn ensure_tools(counting: bool) -> Result<PathBuf> {
    let mut wanted = vec![
        ("wrk", "wrk"),
        ("nginx", "nginx-light"),
        ("taskset", "util-linux"),
    ];
    if counting {
        wanted.push(("callgrind_control", "valgrind"));
    }
    ensure_debian_commands(&wanted)?;
    ensure_envoy()
}

/// Runs the benchmark and writes its report into `options.out_dir`.
pub fn run_with(options: &Options) -> Result<Written> {
    if options.build {
        build(true)?;
    }
    let envoy_wrapper = ensure_tools(!options.instructions.is_empty())?;
    let envoy = measure::real_envoy_binary(&envoy_wrapper);
    let authz_bin = options.bin_dir.join("authz-service");
    if !authz_bin.is_file() {
        bail!(
            "{} is missing: run without --no-build, or build it",
            authz_bin.display()
        );
    }
    let wasm = wasm_dir();
    let mut wasm_sizes = Vec::new();
    for (_, stem) in FILTERS.into_iter().chain([CHAIN]) {
        let path = wasm.join(format!("{stem}.wasm"));
        let meta = fs::metadata(&path)
            .with_context(|| format!("{} is missing: build the filters", path.display()))?;
        wasm_sizes.push((format!("{stem}.wasm"), meta.len()));
    }

    let started_unix = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let run_dir = run_dir().join(format!("bench-{}", std::process::id()));
    let _ = fs::remove_dir_all(&run_dir);
    fs::create_dir_all(&run_dir)?;
    let plan = Plan::detect();
    let load_before = procstat::load_average();
    let [listen_port, admin_port, upstream_port, authz_port] = free_ports()?;
    let issuer = format!("http://127.0.0.1:{listen_port}");
    let script = bench_dir().join("wrk").join("report.lua");

    println!(
        "bench: {} run, {} round(s), {} configuration(s); {}; load average {}",
        options.mode,
        options.rounds,
        options.scenarios.len(),
        plan.describe(),
        load_before.map_or("?".to_owned(), |l| format!("{l:.2}"))
    );
    let _nginx = upstream::start(upstream_port, plan.load, &run_dir)?;
    let mut authz_runs = AuthzRuns::default();
    let gateway_authz = authz::start(
        &authz_bin,
        authz_port,
        &issuer,
        &run_dir.join("authz-data"),
        plan.load,
        &run_dir.join("authz.log"),
    )?;
    authz_runs.first_start_ms = Some(gateway_authz.startup.as_secs_f64() * 1000.0);
    let token = authz::mint_token(&gateway_authz)?;

    let filters = FilterConfigs::load(&issuer)?;
    let values = Values {
        listen_port,
        admin_port,
        upstream_port,
        authz_port,
        issuer: issuer.clone(),
        wasm_dir: wasm.clone(),
        probe_dir: run_dir.join("probes"),
    };
    probes::write_all(&values.probe_dir)?;
    let mut config_paths = Vec::new();
    for s in &options.scenarios {
        let path = run_dir.join(format!("{}.yaml", s.id));
        fs::write(&path, configs::render(s, &values, &filters)?)?;
        config_paths.push(path);
    }
    let settings = Settings {
        envoy: envoy.clone(),
        wrk_script: script.clone(),
        cpus: plan,
        listen_port,
        token,
        warmup: options.warmup,
        duration: options.duration,
        connections: options.connections,
        paced: options.paced,
    };

    let mut results: Vec<ScenarioRuns> = options
        .scenarios
        .iter()
        .map(|s| ScenarioRuns {
            scenario: *s,
            rounds: Vec::new(),
        })
        .collect();
    let n = options.scenarios.len();
    for round in 0..options.rounds {
        // Interleaved: every round runs each configuration once, starting one further along, so
        // a drift of the machine during the run spreads over all of them.
        for k in 0..n {
            let i = (k + round as usize) % n;
            let (Some(runs), Some(path)) = (results.get_mut(i), config_paths.get(i)) else {
                continue;
            };
            let id = runs.scenario.id;
            let label = format!("{id}-r{}", round + 1);
            let outcome = measure::measure(&runs.scenario, path, &settings, &run_dir, &label);
            match &outcome {
                Ok(m) => println!(
                    "bench: round {}/{} {id:>15}: {:>8.0} req/s, p99 {:.2} ms, {:.1} µs CPU/req, \
                     first 200 after {:.0} ms",
                    round + 1,
                    options.rounds,
                    m.saturation.rate(),
                    m.saturation.latency_us.p99 / 1000.0,
                    m.cpu_us_per_request,
                    m.first_200_ms
                ),
                Err(e) => eprintln!("bench: round {} {id}: FAILED: {e:#}", round + 1),
            }
            runs.rounds.push(outcome.map_err(|e| format!("{e:#}")));
        }
    }
    let paired = (!options.paired.is_empty()).then(|| {
        let ids: Vec<&str> = options.paired.iter().map(|s| s.id).collect();
        println!(
            "bench: paired bursts of {}: {} cycle(s) of {:?} each",
            ids.join(", "),
            options.pacing.cycles,
            options.pacing.burst
        );
        let cycles = paired::run(
            &options.paired,
            &values,
            &filters,
            &settings,
            &run_dir,
            options.pacing,
        )
        .map_err(|e| format!("{e:#}"));
        match &cycles {
            Ok(cycles) => {
                for (n, cycle) in cycles.iter().enumerate() {
                    let rates: Vec<String> = ids
                        .iter()
                        .zip(cycle)
                        .map(|(id, b)| format!("{id} {:.0} req/s", b.saturation.rate()))
                        .collect();
                    println!("bench: paired cycle {}: {}", n + 1, rates.join(", "));
                }
            }
            Err(e) => eprintln!("bench: paired bursts: FAILED: {e}"),
        }
        PairedRuns {
            scenarios: options.paired.clone(),
            pacing: options.pacing,
            cycles,
        }
    });
    let mut counts = Vec::new();
    for s in &options.instructions {
        let path = run_dir.join(format!("{}.yaml", s.id));
        fs::write(&path, configs::render(s, &values, &filters)?)?;
        let counted = instructions::count(
            s,
            &path,
            &settings,
            &run_dir,
            INSTRUCTION_WINDOWS,
            options.cache_sim,
        );
        match &counted {
            Ok(c) => println!(
                "bench: instructions {:>15}: {} per request",
                s.id,
                c.per_request
                    .iter()
                    .map(|n| format!("{n:.0}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Err(e) => eprintln!("bench: instructions of {}: FAILED: {e:#}", s.id),
        }
        counts.push(InstructionRuns {
            scenario: *s,
            count: counted.map_err(|e| format!("{e:#}")),
        });
    }
    for s in &options.profile {
        let path = run_dir.join(format!("{}.yaml", s.id));
        fs::write(&path, configs::render(s, &values, &filters)?)?;
        fs::create_dir_all(&options.out_dir)?;
        let out = options.out_dir.join(format!("profile-{}.txt", s.id));
        match profile::profile(s, &path, &settings, &run_dir, &out) {
            Ok(summary) => println!("bench: {}\n{summary}", out.display()),
            Err(e) => eprintln!("bench: profile of {}: FAILED: {e:#}", s.id),
        }
    }
    drop(gateway_authz);

    if options.authz
        && let Err(e) = measure_authz(
            options,
            &authz_bin,
            &run_dir,
            plan,
            &script,
            &mut authz_runs,
        )
    {
        eprintln!("bench: authz-service: FAILED: {e:#}");
        authz_runs.error = Some(format!("{e:#}"));
    }

    let info = RunInfo {
        mode: options.mode,
        started_unix,
        command: options.command.clone(),
        machine: machine(),
        cpus: plan.describe(),
        envoy_version: output(Command::new(&envoy).arg("--version"))
            .map(|v| {
                // `<path>  version: <sha>/<release>/...`: the path says nothing about the build.
                let v = v.trim();
                v.split_once("version: ")
                    .map_or(v, |(_, rest)| rest)
                    .to_owned()
            })
            .unwrap_or_default(),
        load_before,
        load_after: procstat::load_average(),
        settings: vec![
            ("rounds".to_owned(), options.rounds.to_string()),
            (
                "saturation".to_owned(),
                format!(
                    "wrk, 1 thread, {} connections, {:?} per run after {:?} of warm-up",
                    options.connections, options.duration, options.warmup
                ),
            ),
            (
                "fixed rate".to_owned(),
                format!(
                    "{} connections, each waiting {} ms between requests (≈ {:.0} req/s), {:?}",
                    options.paced.connections,
                    options.paced.delay_ms,
                    options.paced.target_rate(),
                    options.paced.duration
                ),
            ),
            (
                "Envoy".to_owned(),
                "--concurrency 1, plain HTTP/1.1 on loopback, no access log".to_owned(),
            ),
            (
                "request".to_owned(),
                format!(
                    "GET {} with one EdDSA at+jwt (scope demo) minted by the authz-service",
                    measure::PATH
                ),
            ),
            (
                "upstream".to_owned(),
                "nginx, 1 worker, `return 200 '[]'`".to_owned(),
            ),
        ],
        notes: filters.notes.clone(),
        wasm_sizes,
    };
    let report = Report {
        info: &info,
        scenarios: &results,
        paired: paired.as_ref(),
        instructions: &counts,
        authz: &authz_runs,
    };
    let json = report.json();
    let markdown = report.markdown();
    fs::create_dir_all(&options.out_dir)?;
    fs::write(
        options.out_dir.join("latest.json"),
        serde_json::to_string_pretty(&json)? + "\n",
    )?;
    fs::write(options.out_dir.join("latest.md"), &markdown)?;
    // The run's logs and configs are only useful when something failed.
    let failed = results.iter().any(|r| r.rounds.iter().any(Result::is_err))
        || counts.iter().any(|c| c.count.is_err())
        || paired.as_ref().is_some_and(|p| p.cycles.is_err())
        || authz_runs.error.is_some();
    if !failed {
        let _ = fs::remove_dir_all(&run_dir);
    } else {
        eprintln!("bench: logs and configs kept in {}", run_dir.display());
    }
    Ok(Written { json, markdown })
}

/// The authz-service alone on the server core: start-up on its data, tokens per second with a
/// client secret and with private_key_jwt, memory after the load.
fn measure_authz(
    options: &Options,
    binary: &Path,
    run_dir: &Path,
    plan: Plan,
    script: &Path,
    runs: &mut AuthzRuns,
) -> Result<()> {
    let [port] = free_ports()?;
    let issuer = format!("http://127.0.0.1:{port}");
    let data_dir = run_dir.join("authz-bench-data");
    // First start creates the keys and the demo data; the rounds then restart on that data.
    drop(authz::start(
        binary,
        port,
        &issuer,
        &data_dir,
        plan.server,
        &run_dir.join("authz-bench-0.log"),
    )?);
    for round in 0..options.rounds {
        let log = run_dir.join(format!("authz-bench-{}.log", round + 1));
        let service = authz::start(binary, port, &issuer, &data_dir, plan.server, &log)?;
        runs.restart_ms.push(service.startup.as_secs_f64() * 1000.0);
        authz::token_load(
            &service,
            authz::Method::Secret,
            options.connections,
            options.warmup,
            plan.load,
            script,
        )
        .context("warm-up")?;
        let secret = authz::token_load(
            &service,
            authz::Method::Secret,
            options.connections,
            options.duration,
            plan.load,
            script,
        )?;
        check_outcome("client secret", &secret)?;
        // Enough single-use assertions for private_key_jwt at the client-secret rate and more.
        let count = (secret.rate() * options.duration.as_secs_f64() * 1.5) as usize + 1000;
        let bodies_path = run_dir.join("assertions.txt");
        authz::write_assertion_bodies(&service, count + 1, &bodies_path)?;
        let all = fs::read_to_string(&bodies_path)?;
        let (first, rest) = all.split_once('\n').context("no assertion written")?;
        authz::check_assertion_body(&service, first)?;
        fs::write(&bodies_path, rest)?;
        let pk = authz::token_load(
            &service,
            authz::Method::PrivateKeyJwt(&bodies_path),
            options.connections,
            options.duration,
            plan.load,
            script,
        )?;
        check_outcome("private_key_jwt", &pk)?;
        let memory = authz::memory(&service)?;
        runs.rss_kib = Some(memory.rss_kib);
        runs.peak_rss_kib = Some(
            runs.peak_rss_kib
                .map_or(memory.peak_kib, |p| p.max(memory.peak_kib)),
        );
        println!(
            "bench: round {}/{} authz-service: {:.0} tokens/s (secret), {:.0} tokens/s \
             (private_key_jwt), restart {:.0} ms, peak RSS {:.1} MiB",
            round + 1,
            options.rounds,
            secret.rate(),
            pk.rate(),
            service.startup.as_secs_f64() * 1000.0,
            memory.peak_kib as f64 / 1024.0
        );
        runs.secret.push(secret);
        runs.private_key_jwt.push(pk);
    }
    Ok(())
}

fn check_outcome(what: &str, o: &wrk::Outcome) -> Result<()> {
    if o.errors > 0 || o.requests == 0 {
        bail!(
            "{what}: {} errors ({} non-2xx) in {} token requests",
            o.errors,
            o.non_2xx,
            o.requests
        );
    }
    Ok(())
}

/// `N` distinct free loopback ports (all bound at once, then released for the servers).
fn free_ports<const N: usize>() -> Result<[u16; N]> {
    let listeners = (0..N)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<std::io::Result<Vec<_>>>()?;
    let mut ports = [0u16; N];
    for (port, l) in ports.iter_mut().zip(&listeners) {
        *port = l.local_addr()?.port();
    }
    Ok(ports)
}

/// CPU model, usable cores, memory, kernel and its huge-page mode, for the report.
fn machine() -> String {
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or("unknown CPU", |(_, m)| m.trim())
        .to_owned();
    let meminfo = fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_gib = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|l| l.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or("?".to_owned(), |kb| format!("{:.1}", kb / 1024.0 / 1024.0));
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let thp = procstat::transparent_huge_pages().unwrap_or_else(|| "unknown".to_owned());
    format!(
        "{model}, {} usable CPUs, {mem_gib} GiB RAM, Linux {}, transparent huge pages: {thp}",
        procstat::allowed_cpus().len(),
        kernel.trim()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> BenchArgs {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            bench: BenchArgs,
        }
        let argv = std::iter::once("bench").chain(extra.iter().copied());
        <Cli as clap::Parser>::parse_from(argv).bench
    }

    #[test]
    fn defaults_are_three_rounds_of_every_configuration() {
        let o = Options::from_args(&args(&[])).unwrap();
        assert_eq!(o.rounds, 3);
        assert_eq!(o.scenarios.len(), SCENARIOS.len());
        assert_eq!(o.duration, Duration::from_secs(10));
        assert!(o.build && o.authz);
        assert_eq!(o.out_dir, bench_dir().join("results"));
    }

    #[test]
    fn smoke_is_one_short_round_and_only_picks_configurations() {
        let o = Options::from_args(&args(&["--smoke", "--only", "b,D", "--rounds", "5"])).unwrap();
        assert_eq!((o.mode, o.rounds), ("smoke", 1));
        assert_eq!(o.duration, Duration::from_secs(1));
        let ids: Vec<_> = o.scenarios.iter().map(|s| s.id).collect();
        assert_eq!(ids, ["B", "D"]);
        assert!(Options::from_args(&args(&["--only", "Z"])).is_err());
        // Probes run only when named, with --only or --instructions.
        assert!(o.scenarios.iter().all(|s| !s.id.starts_with("P-")));
        let o = Options::from_args(&args(&["--instructions", "B,p-context"])).unwrap();
        let ids: Vec<_> = o.instructions.iter().map(|s| s.id).collect();
        assert_eq!(ids, ["B", "P-context"]);
        assert!(
            !Options::from_args(&args(&[]))
                .unwrap()
                .scenarios
                .iter()
                .any(|s| s.id == "P-context")
        );
        assert!(Options::from_args(&args(&["--rounds", "0"])).is_err());
        let o = Options::from_args(&args(&["--rounds", "0", "--instructions", "B"])).unwrap();
        assert!(o.scenarios.is_empty());
        // Paired bursts need two different configurations; a smoke run gives them one short cycle.
        assert!(Options::from_args(&args(&["--paired", "B"])).is_err());
        assert!(Options::from_args(&args(&["--paired", "B,b"])).is_err());
        let o = Options::from_args(&args(&["--paired", "C,D1", "--cycles", "4"])).unwrap();
        let ids: Vec<_> = o.paired.iter().map(|s| s.id).collect();
        assert_eq!(
            (ids.as_slice(), o.pacing.cycles),
            (["C", "D1"].as_slice(), 4)
        );
        assert_eq!(o.pacing.burst, Duration::from_secs(2));
        let o = Options::from_args(&args(&["--smoke", "--paired", "B,N"])).unwrap();
        assert_eq!(o.pacing.cycles, 1);
        assert!(Options::from_args(&args(&["--duration", "0"])).is_err());
    }

    /// The smoke mode end to end against the real things (Envoy, nginx, wrk, the authz-service,
    /// the built filters, valgrind): a second of load per configuration, one round. It proves the
    /// benchmark still runs and reports every configuration with error-free load; it checks no
    /// timing.
    #[test]
    fn smoke_run_reports_every_configuration_without_errors() {
        let out = std::env::temp_dir().join(format!("wasmgate-bench-smoke-{}", std::process::id()));
        let out_arg = out.display().to_string();
        // One probe's instructions are counted too, with the cache simulation: it runs Envoy, V8
        // and a wasm module under valgrind, the whole of that path.
        let options = Options::from_args(&args(&[
            "--smoke",
            "--no-build",
            "--out",
            &out_arg,
            "--instructions",
            "P-replace-1",
            "--cache-sim",
            "--paired",
            "B,N",
        ]))
        .unwrap();
        let written = run_with(&options).unwrap();
        let scenarios = written.json["scenarios"].as_array().unwrap();
        assert_eq!(scenarios.len(), SCENARIOS.len());
        for s in scenarios {
            let rounds = s["rounds"].as_array().unwrap();
            assert_eq!(rounds.len(), 1, "{s}");
            let r = &rounds[0];
            assert!(r["error"].is_null(), "{}: {}", s["id"], r["error"]);
            assert!(r["saturation"]["requests"].as_u64().unwrap() > 0, "{s}");
            assert_eq!(r["saturation"]["errors"], 0, "{s}");
            assert!(r["fixed_rate"]["requests"].as_u64().unwrap() > 0, "{s}");
        }
        // The paired bursts: both Envoys at once, one error-free burst each.
        let paired = &written.json["paired"];
        assert!(paired["error"].is_null(), "{paired}");
        let results = paired["results"].as_array().unwrap();
        assert_eq!(results.len(), 2, "{paired}");
        for r in results {
            let bursts = r["bursts"].as_array().unwrap();
            assert_eq!(bursts.len(), 1, "{paired}");
            assert!(bursts[0]["requests"].as_u64().unwrap() > 0, "{paired}");
            assert_eq!(bursts[0]["errors"], 0, "{paired}");
        }
        assert!(results[1]["ratio_to_base"]["of_medians"].as_f64().unwrap() > 0.0);
        let counted = &written.json["instructions"][0];
        assert_eq!(counted["id"], "P-replace-1", "{counted}");
        assert!(counted["error"].is_null(), "{counted}");
        assert_eq!(counted["windows"].as_array().unwrap().len(), 2, "{counted}");
        for (window, requests) in counted["windows"]
            .as_array()
            .unwrap()
            .iter()
            .zip(counted["requests"].as_array().unwrap())
        {
            // Envoy does work for every request: far more than a few thousand instructions.
            assert!(window.as_f64().unwrap() > 10_000.0, "{counted}");
            assert!(requests.as_u64().unwrap() > 0, "{counted}");
        }
        // The probe's callback and its wrappers run in V8's JIT code every request, and are a
        // small part of the whole: the split by address finds them.
        for (jit, window) in counted["jit_windows"]
            .as_array()
            .unwrap()
            .iter()
            .zip(counted["windows"].as_array().unwrap())
        {
            let (jit, window) = (jit.as_f64().unwrap(), window.as_f64().unwrap());
            assert!(jit > 10.0 && jit < window / 4.0, "{counted}");
        }
        // Envoy's code for a request does not fit the first-level caches: every request misses
        // them, hundreds of times.
        let misses = &counted["misses_per_request"];
        assert!(misses["i1"]["min"].as_f64().unwrap() > 100.0, "{counted}");
        assert!(misses["d1"]["min"].as_f64().unwrap() > 100.0, "{counted}");
        assert!(misses["ll"]["min"].as_f64().unwrap() >= 0.0, "{counted}");
        let authz = &written.json["authz_service"];
        assert!(authz["error"].is_null(), "{}", authz["error"]);
        assert_eq!(authz["client_secret_rounds"][0]["errors"], 0, "{authz}");
        assert_eq!(authz["private_key_jwt_rounds"][0]["errors"], 0, "{authz}");
        assert!(authz["peak_rss_kib"].as_u64().unwrap() > 0);
        let md = fs::read_to_string(out.join("latest.md")).unwrap();
        assert!(
            md.contains("| **D** ours") && md.contains("## Targets"),
            "{md}"
        );
        let json: Value =
            serde_json::from_str(&fs::read_to_string(out.join("latest.json")).unwrap()).unwrap();
        assert_eq!(json["mode"], "smoke");
        assert_eq!(json["scenarios"].as_array().unwrap().len(), SCENARIOS.len());
        fs::remove_dir_all(&out).unwrap();
    }

    #[test]
    fn free_ports_are_distinct() {
        let ports: [u16; 4] = free_ports().unwrap();
        for (i, p) in ports.iter().enumerate() {
            assert!(*p > 0);
            assert!(!ports[i + 1..].contains(p));
        }
    }
}
