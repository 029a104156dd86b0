//! The report: every number of a run as JSON, and the same as a Markdown table with the ratios
//! and the targets of issue 9, both computed from this run only.

use std::fmt::Write as _;

use serde_json::{Value, json};

use crate::bench::configs::Scenario;

mod paired;
use crate::bench::instructions::{Count, Misses};
use crate::bench::measure::Measurement;
use crate::bench::paired::{Burst, PairedRuns};
use crate::bench::stats::{Spread, median_interval, ratio};
use crate::bench::wrk::Outcome;

/// One configuration's measurements, one per round (an `Err` is a failed round, with why).
#[derive(Debug, Clone)]
pub struct ScenarioRuns {
    pub scenario: Scenario,
    pub rounds: Vec<Result<Measurement, String>>,
}

impl ScenarioRuns {
    fn ok(&self) -> impl Iterator<Item = &Measurement> {
        self.rounds.iter().filter_map(|r| r.as_ref().ok())
    }

    fn spread(&self, metric: impl Fn(&Measurement) -> f64) -> Option<Spread> {
        Spread::of(&self.ok().map(metric).collect::<Vec<_>>())
    }

    fn rps(&self) -> Option<Spread> {
        self.spread(|m| m.saturation.rate())
    }

    fn p99_ms(&self) -> Option<Spread> {
        self.spread(|m| m.saturation.latency_us.p99 / 1000.0)
    }
}

/// One configuration's instruction count under callgrind (an `Err` says why it failed).
#[derive(Debug, Clone)]
pub struct InstructionRuns {
    pub scenario: Scenario,
    pub count: Result<Count, String>,
}

impl InstructionRuns {
    fn per_request(&self) -> Option<Spread> {
        Spread::of(&self.count.as_ref().ok()?.per_request)
    }

    fn jit_per_request(&self) -> Option<Spread> {
        Spread::of(&self.count.as_ref().ok()?.jit_per_request)
    }

    /// One kind of simulated cache miss per request, over the windows (`None` without the cache
    /// simulation).
    fn misses(&self, kind: impl Fn(&Misses) -> f64) -> Option<Spread> {
        let count = self.count.as_ref().ok()?;
        Spread::of(
            &count
                .misses_per_request
                .iter()
                .map(kind)
                .collect::<Vec<_>>(),
        )
    }
}

/// The authz-service's numbers.
#[derive(Debug, Clone, Default)]
pub struct AuthzRuns {
    pub first_start_ms: Option<f64>,
    pub restart_ms: Vec<f64>,
    pub secret: Vec<Outcome>,
    pub private_key_jwt: Vec<Outcome>,
    pub rss_kib: Option<u64>,
    pub peak_rss_kib: Option<u64>,
    pub error: Option<String>,
}

/// Everything about the run that is not a measurement.
#[derive(Debug, Clone)]
pub struct RunInfo {
    pub mode: &'static str,
    pub started_unix: u64,
    pub command: String,
    pub machine: String,
    pub cpus: String,
    pub envoy_version: String,
    pub load_before: Option<f64>,
    pub load_after: Option<f64>,
    pub settings: Vec<(String, String)>,
    pub notes: Vec<String>,
    pub wasm_sizes: Vec<(String, u64)>,
}

pub struct Report<'a> {
    pub info: &'a RunInfo,
    pub scenarios: &'a [ScenarioRuns],
    /// The paired bursts, when the run had them (`--paired`).
    pub paired: Option<&'a PairedRuns>,
    pub instructions: &'a [InstructionRuns],
    pub authz: &'a AuthzRuns,
}

/// A target of the issue, as measured.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub name: String,
    pub measured: String,
    /// `None`: not measured in this run.
    pub met: Option<bool>,
}

/// A ratio between two configurations of the run.
#[derive(Debug, Clone, Default)]
struct Comparison {
    /// The ratio of the two medians: what the tables show.
    of_medians: Option<f64>,
    /// The ratio in each round both configurations completed. A round runs every configuration
    /// once, interleaved, so within a round the two were measured minutes apart at most; on a
    /// noisy machine the ratio of the medians can pass where most rounds do not. For paired
    /// bursts, the ratio in each cycle (seconds apart).
    rounds: Vec<f64>,
    /// What one of `rounds` is: a "round", or a "cycle" of paired bursts.
    per: &'static str,
    /// For paired bursts, a 95 % confidence interval for the median of the cycles' ratios.
    interval: Option<(f64, f64)>,
}

impl Comparison {
    /// Met when the ratio of the medians and the median of the rounds' ratios both meet it.
    /// With an interval (paired bursts), only when all of it meets it as well; without one
    /// (rounds), only when every round meets it.
    fn met(&self, ok: &dyn Fn(f64) -> bool) -> Option<bool> {
        let of_rounds = Spread::of(&self.rounds).map(|s| s.median);
        Some(
            ok(self.of_medians?)
                && of_rounds.is_none_or(ok)
                && self.interval_meets(ok) != Some(false)
                && !self.rounds_straddle(ok),
        )
    }

    /// Whether some rounds meet it and some do not, with no interval to weigh them: three
    /// rounds on a machine whose speed moves between them (2026-12-01: C at 53 µs of CPU per
    /// request in one round and 110 in another) can put the ratio of the medians on either side
    /// of a target, so neither side is claimed. Paired bursts have their interval instead.
    fn rounds_straddle(&self, ok: &dyn Fn(f64) -> bool) -> bool {
        self.interval.is_none()
            && self.rounds.iter().any(|r| ok(*r))
            && self.rounds.iter().any(|r| !ok(*r))
    }

    /// Whether all of the interval meets it (`Some(true)`), none of it (`None`), or only a part:
    /// then the cycles do not decide the target (`Some(false)`).
    fn interval_meets(&self, ok: &dyn Fn(f64) -> bool) -> Option<bool> {
        let (lo, hi) = self.interval?;
        match (ok(lo), ok(hi)) {
            (true, true) => Some(true),
            (false, false) => None,
            _ => Some(false),
        }
    }
}

impl std::fmt::Display for Comparison {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Some(value) = self.of_medians else {
            return f.write_str("not measured");
        };
        write!(f, "{value:.3}")?;
        match Spread::of(&self.rounds) {
            Some(s) if self.rounds.len() > 1 => {
                write!(
                    f,
                    " ({per} by {per} {:.3}–{:.3}, median {:.3}",
                    s.min,
                    s.max,
                    s.median,
                    per = self.per
                )?;
                if let Some((lo, hi)) = self.interval {
                    write!(f, ", 95 % interval of the median {lo:.3}–{hi:.3}")?;
                }
                f.write_str(")")
            }
            _ => Ok(()),
        }
    }
}

const MIB: f64 = 1024.0 * 1024.0;
/// Issue 9: each `.wasm` at most 1 MiB.
const MAX_WASM_BYTES: u64 = 1024 * 1024;

impl Report<'_> {
    fn runs(&self, id: &str) -> Option<&ScenarioRuns> {
        self.scenarios.iter().find(|s| s.scenario.id == id)
    }

    fn median_rps(&self, id: &str) -> Option<f64> {
        self.runs(id)?.rps().map(|s| s.median)
    }

    /// `metric` of `a` against `b`: the ratio of the run's medians, and the same ratio round by
    /// round, from the rounds both completed.
    fn compare(&self, a: &str, b: &str, metric: impl Fn(&Measurement) -> f64) -> Comparison {
        let (Some(a), Some(b)) = (self.runs(a), self.runs(b)) else {
            return Comparison::default();
        };
        let median = |runs: &ScenarioRuns| runs.spread(&metric).map(|s| s.median);
        let rounds = a
            .rounds
            .iter()
            .zip(&b.rounds)
            .filter_map(|(x, y)| ratio(metric(x.as_ref().ok()?), metric(y.as_ref().ok()?)))
            .collect();
        Comparison {
            of_medians: median(a).zip(median(b)).and_then(|(x, y)| ratio(x, y)),
            rounds,
            per: "round",
            interval: None,
        }
    }

    /// `metric` of `a` against `b` in the paired bursts, if both were paired: the ratio of their
    /// medians over the bursts, and the same ratio cycle by cycle.
    fn compare_paired(
        &self,
        a: &str,
        b: &str,
        metric: impl Fn(&Burst) -> f64,
    ) -> Option<Comparison> {
        let p = self.paired?;
        let (a, b) = (p.position(a)?, p.position(b)?);
        let rounds = p.ratios(a, b, &metric);
        Some(Comparison {
            of_medians: p.ratio_of_medians(a, b, &metric),
            interval: median_interval(&rounds),
            rounds,
            per: "cycle",
        })
    }

    /// The targets, each with what this run measured.
    pub fn targets(&self) -> Vec<Target> {
        let mut t = Vec::new();
        let rps = |a: &str, b: &str| self.compare(a, b, |m| m.saturation.rate());
        let p99 = |a: &str, b: &str| self.compare(a, b, |m| m.saturation.latency_us.p99);
        let rps_paired = |a: &str, b: &str| self.compare_paired(a, b, |x| x.saturation.rate());
        let p99_paired =
            |a: &str, b: &str| self.compare_paired(a, b, |x| x.saturation.latency_us.p99);
        let mut ratio_target = |name: &str,
                                measured: Comparison,
                                paired: Option<Comparison>,
                                ok: &dyn Fn(f64) -> bool| {
            let undecided = if measured.rounds_straddle(ok) {
                "; not decided: the rounds lie on both sides of the target"
            } else {
                ""
            };
            t.push(Target {
                name: name.to_owned(),
                met: measured.met(ok),
                measured: format!("{measured}{undecided}"),
            });
            // The same target measured in paired bursts is a row of its own: a different method,
            // seconds apart instead of minutes.
            if let Some(paired) = paired {
                let undecided = if paired.interval_meets(ok) == Some(false) {
                    "; not decided: the interval lies on both sides of the target"
                } else {
                    ""
                };
                t.push(Target {
                    name: format!("{name}, in paired bursts"),
                    met: paired.met(ok),
                    measured: format!("{paired}{undecided}"),
                });
            }
        };
        // D is the gateway's chain of three modules, D1 the same filters as one module's stages:
        // the targets are checked for both.
        for d in ["D", "D1"] {
            ratio_target(
                &format!("{d} ≥ 0.95 × C in req/s ({d}/C)"),
                rps(d, "C"),
                rps_paired(d, "C"),
                &|v| v >= 0.95,
            );
            ratio_target(
                &format!("{d}'s p99 ≤ 1.1 × C's p99 ({d}/C)"),
                p99(d, "C"),
                p99_paired(d, "C"),
                &|v| v <= 1.1,
            );
            ratio_target(
                &format!("{d} ≥ 2 × C0 in req/s ({d}/C0)"),
                rps(d, "C0"),
                rps_paired(d, "C0"),
                &|v| v >= 2.0,
            );
        }
        ratio_target(
            "bearer-auth alone ≥ 0.95 × jwt_authn (cache) alone (F-bearer-auth/F-jwt-authn)",
            rps("F-bearer-auth", "F-jwt-authn"),
            rps_paired("F-bearer-auth", "F-jwt-authn"),
            &|v| v >= 0.95,
        );
        for (name, bytes) in &self.info.wasm_sizes {
            t.push(Target {
                name: format!("{name} ≤ 1 MiB"),
                measured: format!("{bytes} bytes ({:.3} MiB)", *bytes as f64 / MIB),
                met: Some(*bytes <= MAX_WASM_BYTES),
            });
        }
        let a = self.authz;
        let secret = Spread::of(&a.secret.iter().map(Outcome::rate).collect::<Vec<_>>());
        t.push(Target {
            name: "authz-service ≥ 5,000 client_credentials tokens/s (client secret)".to_owned(),
            measured: secret.map_or("not measured".to_owned(), |s| format!("{:.0}/s", s.median)),
            met: secret.map(|s| s.median >= 5000.0),
        });
        let peak = a.peak_rss_kib.map(|k| k as f64 / 1024.0);
        t.push(Target {
            name: "authz-service RSS ≤ 50 MB (peak, after the token load)".to_owned(),
            measured: peak.map_or("not measured".to_owned(), |m| format!("{m:.1} MiB")),
            met: peak.map(|m| m * 1.048_576 <= 50.0),
        });
        let restart = Spread::of(&a.restart_ms);
        t.push(Target {
            name: "authz-service start-up ≤ 1 s (restart on its data)".to_owned(),
            measured: restart.map_or("not measured".to_owned(), |s| format!("{:.0} ms", s.median)),
            met: restart.map(|s| s.median <= 1000.0),
        });
        t
    }

    pub fn json(&self) -> Value {
        let b = self.median_rps("B");
        let c = self.median_rps("C");
        let spread = |s: Option<Spread>| s.map_or(Value::Null, Spread::to_json);
        let scenarios: Vec<Value> = self
            .scenarios
            .iter()
            .map(|runs| {
                let rps = runs.rps();
                let rounds: Vec<Value> = runs
                    .rounds
                    .iter()
                    .map(|r| match r {
                        Ok(m) => measurement_json(m),
                        Err(e) => json!({ "error": e }),
                    })
                    .collect();
                json!({
                    "id": runs.scenario.id,
                    "title": runs.scenario.title,
                    "requests_per_second": spread(rps),
                    "ratio_to_B": rps.and_then(|r| ratio(r.median, b?)),
                    "ratio_to_C": rps.and_then(|r| ratio(r.median, c?)),
                    "latency_ms": {
                        "p50": spread(runs.spread(|m| m.saturation.latency_us.p50 / 1000.0)),
                        "p99": spread(runs.p99_ms()),
                        "p999": spread(runs.spread(|m| m.saturation.latency_us.p999 / 1000.0)),
                    },
                    "fixed_rate": {
                        "requests_per_second": spread(runs.spread(|m| m.paced.rate())),
                        "p50_ms": spread(runs.spread(|m| m.paced.latency_us.p50 / 1000.0)),
                        "p99_ms": spread(runs.spread(|m| m.paced.latency_us.p99 / 1000.0)),
                        "p999_ms": spread(runs.spread(|m| m.paced.latency_us.p999 / 1000.0)),
                    },
                    "cpu_us_per_request": spread(runs.spread(|m| m.cpu_us_per_request)),
                    "rss_mib": spread(runs.spread(|m| m.rss_kib as f64 / 1024.0)),
                    "first_200_ms": spread(runs.spread(|m| m.first_200_ms)),
                    "rounds": rounds,
                })
            })
            .collect();
        let a = self.authz;
        let rates =
            |o: &[Outcome]| spread(Spread::of(&o.iter().map(Outcome::rate).collect::<Vec<_>>()));
        let outcomes = |o: &[Outcome]| o.iter().map(outcome_json).collect::<Vec<_>>();
        let targets: Vec<Value> = self
            .targets()
            .into_iter()
            .map(|t| json!({ "target": t.name, "measured": t.measured, "met": t.met }))
            .collect();
        let i = self.info;
        json!({
            "mode": i.mode,
            "started_unix": i.started_unix,
            "command": i.command,
            "machine": i.machine,
            "cpus": i.cpus,
            "envoy": i.envoy_version,
            "load_average": { "before": i.load_before, "after": i.load_after },
            "settings": i.settings.iter().map(|(k, v)| (k.clone(), json!(v))).collect::<serde_json::Map<_, _>>(),
            "notes": i.notes,
            "wasm_bytes": i.wasm_sizes.iter().map(|(k, v)| (k.clone(), json!(v))).collect::<serde_json::Map<_, _>>(),
            "scenarios": scenarios,
            "paired": self.paired.map_or(Value::Null, paired::json),
            "instructions": self.instructions_json(),
            "authz_service": {
                "first_start_ms": a.first_start_ms,
                "restart_ms": spread(Spread::of(&a.restart_ms)),
                "client_secret_tokens_per_second": rates(&a.secret),
                "private_key_jwt_tokens_per_second": rates(&a.private_key_jwt),
                "client_secret_rounds": outcomes(&a.secret),
                "private_key_jwt_rounds": outcomes(&a.private_key_jwt),
                "rss_kib": a.rss_kib,
                "peak_rss_kib": a.peak_rss_kib,
                "error": a.error,
            },
            "targets": targets,
        })
    }

    pub fn markdown(&self) -> String {
        let i = self.info;
        let mut md = String::new();
        let _ = writeln!(md, "# wasmgate benchmark ({} run)\n", i.mode);
        let _ = writeln!(md, "- command: `{}`", i.command);
        let _ = writeln!(md, "- machine: {}", i.machine);
        let _ = writeln!(md, "- pinning: {}", i.cpus);
        let _ = writeln!(md, "- Envoy: {}", i.envoy_version);
        let _ = writeln!(
            md,
            "- load average (1 min) before / after: {} / {}",
            opt(i.load_before, 2),
            opt(i.load_after, 2)
        );
        for (k, v) in &i.settings {
            let _ = writeln!(md, "- {k}: {v}");
        }
        for n in &i.notes {
            let _ = writeln!(md, "- {n}");
        }
        if !self.scenarios.is_empty() {
            self.rounds_markdown(&mut md);
        }
        if let Some(p) = self.paired {
            paired::markdown(p, &mut md);
        }
        self.instructions_markdown(&mut md);
        let a = self.authz;
        let _ = writeln!(md, "\n## authz-service\n");
        if let Some(e) = &a.error {
            let _ = writeln!(md, "Failed: {e}\n");
        }
        let rates = |o: &[Outcome]| {
            cell(
                Spread::of(&o.iter().map(Outcome::rate).collect::<Vec<_>>()),
                0,
            )
        };
        let _ = writeln!(md, "| what | value |\n|---|---|");
        let _ = writeln!(
            md,
            "| client_credentials tokens/s, client secret (Basic) | {} |",
            rates(&a.secret)
        );
        let _ = writeln!(
            md,
            "| client_credentials tokens/s, private_key_jwt (EdDSA assertion, single-use jti) | {} |",
            rates(&a.private_key_jwt)
        );
        let _ = writeln!(
            md,
            "| RSS after the token load / peak, MiB | {} / {} |",
            opt(a.rss_kib.map(|k| k as f64 / 1024.0), 1),
            opt(a.peak_rss_kib.map(|k| k as f64 / 1024.0), 1)
        );
        let _ = writeln!(
            md,
            "| start-up, first start (creates keys and demo data), ms | {} |",
            opt(a.first_start_ms, 0)
        );
        let _ = writeln!(
            md,
            "| start-up, restart on its data, ms | {} |",
            cell(Spread::of(&a.restart_ms), 0)
        );
        let _ = writeln!(md, "\n## .wasm sizes\n");
        for (name, bytes) in &i.wasm_sizes {
            let _ = writeln!(
                md,
                "- {name}: {bytes} bytes ({:.1} KiB)",
                *bytes as f64 / 1024.0
            );
        }
        let _ = writeln!(
            md,
            "\n## Targets (issue 9)\n\n| target | measured | met |\n|---|---|---|"
        );
        for t in self.targets() {
            let met = match t.met {
                Some(true) => "yes",
                Some(false) => "**no**",
                None => "–",
            };
            let _ = writeln!(md, "| {} | {} | {met} |", t.name, t.measured);
        }
        md
    }
}

impl Report<'_> {
    /// The rounds' table, and the rounds that failed.
    fn rounds_markdown(&self, md: &mut String) {
        let _ = writeln!(
            md,
            "\nMedian of the rounds, (min–max) below it where there are several; ratios use \
             the medians of this run. Latency in ms at saturation; \"fixed rate\" is p50 / p99 / \
             p99.9 at the moderate rate; CPU is Envoy's (all threads) per request at saturation.\n"
        );
        let _ = writeln!(
            md,
            "| config | req/s | × B | × C | p50 | p99 | p99.9 | fixed rate p50 / p99 / p99.9 | CPU µs/req | RSS MiB | first 200 ms |"
        );
        let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|---|---|");
        let b = self.median_rps("B");
        let c = self.median_rps("C");
        for runs in self.scenarios {
            let s = &runs.scenario;
            let failed = runs.rounds.iter().filter(|r| r.is_err()).count();
            let rps = runs.rps();
            let lat = |f: &dyn Fn(&Measurement) -> f64| runs.spread(f);
            let paced = [
                lat(&|m| m.paced.latency_us.p50 / 1000.0),
                lat(&|m| m.paced.latency_us.p99 / 1000.0),
                lat(&|m| m.paced.latency_us.p999 / 1000.0),
            ]
            .map(|s| s.map_or("–".to_owned(), |s| format!("{:.2}", s.median)))
            .join(" / ");
            let failed_note = if failed > 0 {
                format!(" ({failed} round(s) failed)")
            } else {
                String::new()
            };
            let _ = writeln!(
                md,
                "| **{}** {}{} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                s.id,
                s.title,
                failed_note,
                cell(rps, 0),
                ratio_cell(rps, b),
                ratio_cell(rps, c),
                cell(lat(&|m| m.saturation.latency_us.p50 / 1000.0), 2),
                cell(runs.p99_ms(), 2),
                cell(lat(&|m| m.saturation.latency_us.p999 / 1000.0), 2),
                paced,
                cell(lat(&|m| m.cpu_us_per_request), 1),
                cell(lat(&|m| m.rss_kib as f64 / 1024.0), 1),
                cell(lat(&|m| m.first_200_ms), 0),
            );
        }
        let errors: Vec<String> = self
            .scenarios
            .iter()
            .flat_map(|r| {
                r.rounds
                    .iter()
                    .filter_map(|x| x.as_ref().err())
                    .map(move |e| format!("- {}: {e}", r.scenario.id))
            })
            .collect();
        if !errors.is_empty() {
            let _ = writeln!(md, "\nFailed rounds:\n\n{}", errors.join("\n"));
        }
    }

    /// The median instruction count per request of `id`, if it was counted.
    fn instructions_of(&self, id: &str) -> Option<f64> {
        let runs = self.instructions.iter().find(|r| r.scenario.id == id)?;
        runs.per_request().map(|s| s.median)
    }

    /// What `runs` adds over B, and that as a multiple of what C adds: the terms of BENCHMARKS.md's
    /// "where the time goes".
    fn over_b_and_c(&self, runs: &InstructionRuns) -> (Option<f64>, Option<f64>) {
        let b = self.instructions_of("B");
        let over = |id: &str| Some(self.instructions_of(id)? - b?);
        let own = over(runs.scenario.id).filter(|_| runs.scenario.id != "B");
        let of_c = own.zip(over("C")).and_then(|(x, c)| ratio(x, c));
        (own, of_c)
    }

    fn instructions_json(&self) -> Value {
        let runs: Vec<Value> = self
            .instructions
            .iter()
            .map(|r| {
                let (over_b, of_c) = self.over_b_and_c(r);
                match &r.count {
                    Ok(c) => json!({
                        "id": r.scenario.id,
                        "per_request": r.per_request().map_or(Value::Null, Spread::to_json),
                        "over_B": over_b,
                        "over_B_in_units_of_C": of_c,
                        "jit_per_request": r.jit_per_request().map_or(Value::Null, Spread::to_json),
                        "windows": c.per_request,
                        "jit_windows": c.jit_per_request,
                        "requests": c.requests,
                        "misses_per_request": if c.misses_per_request.is_empty() {
                            Value::Null
                        } else {
                            json!({
                                "i1": r.misses(|m| m.i1).map_or(Value::Null, Spread::to_json),
                                "d1": r.misses(|m| m.d1).map_or(Value::Null, Spread::to_json),
                                "ll": r.misses(|m| m.ll).map_or(Value::Null, Spread::to_json),
                                "i1_jit": r.misses(|m| m.i1_jit).map_or(Value::Null, Spread::to_json),
                                "d1_jit": r.misses(|m| m.d1_jit).map_or(Value::Null, Spread::to_json),
                            })
                        },
                    }),
                    Err(e) => json!({ "id": r.scenario.id, "error": e }),
                }
            })
            .collect();
        Value::Array(runs)
    }

    fn instructions_markdown(&self, md: &mut String) {
        if self.instructions.is_empty() {
            return;
        }
        let _ = writeln!(
            md,
            "\n## Instructions per request\n\nEnvoy under valgrind's callgrind, user space only \
             (the kernel is left out), one request after the other on one connection; the median of the counted \
             windows, (min–max) below it. A count, not a time; it does not move with the machine. \
             \"In JIT code\": the part of it in V8's compiled wasm and its wrappers; the rest is \
             Envoy's own work (including what it does for the filters' host calls) and libc's.\n\n\
             | config | instructions per request | over B | × C's | in JIT code |\n|---|---|---|---|---|"
        );
        for r in self.instructions {
            let (over_b, of_c) = self.over_b_and_c(r);
            match &r.count {
                Ok(_) => {
                    let _ = writeln!(
                        md,
                        "| **{}** {} | {} | {} | {} | {} |",
                        r.scenario.id,
                        r.scenario.title,
                        cell(r.per_request(), 0),
                        opt(over_b, 0),
                        opt(of_c, 2),
                        cell(r.jit_per_request(), 0)
                    );
                }
                Err(e) => {
                    let _ = writeln!(md, "| **{}** | failed: {e} | – | – | – |", r.scenario.id);
                }
            }
        }
        self.misses_markdown(md);
    }

    /// The simulated cache misses per request, when the run simulated them (`--cache-sim`).
    fn misses_markdown(&self, md: &mut String) {
        let simulated: Vec<&InstructionRuns> = self
            .instructions
            .iter()
            .filter(|r| r.misses(|m| m.i1).is_some())
            .collect();
        if simulated.is_empty() {
            return;
        }
        let _ = writeln!(
            md,
            "\nSimulated cache misses per request (`--cache-sim`: valgrind's model of this CPU's \
             first-level instruction and data caches and its last-level cache, the process alone \
             on them): how much code and data a request walks through, not what a miss costs.\n\n\
             \"In JIT code\": the misses of our compiled wasm and V8's wrappers; the rest are \
             Envoy's and libc's.\n\n\
             | config | L1 instruction misses | in JIT code | L1 data misses | in JIT code | last-level misses |\n\
             |---|---|---|---|---|---|"
        );
        for r in simulated {
            let _ = writeln!(
                md,
                "| **{}** | {} | {} | {} | {} | {} |",
                r.scenario.id,
                cell(r.misses(|m| m.i1), 0),
                cell(r.misses(|m| m.i1_jit), 0),
                cell(r.misses(|m| m.d1), 0),
                cell(r.misses(|m| m.d1_jit), 0),
                cell(r.misses(|m| m.ll), 0)
            );
        }
    }
}

fn outcome_json(o: &Outcome) -> Value {
    json!({
        "requests": o.requests,
        "seconds": o.seconds,
        "requests_per_second": o.rate(),
        "errors": o.errors,
        "non_2xx": o.non_2xx,
        "latency_us": {
            "p50": o.latency_us.p50, "p99": o.latency_us.p99,
            "p999": o.latency_us.p999, "max": o.latency_us.max,
        },
    })
}

fn measurement_json(m: &Measurement) -> Value {
    json!({
        "first_200_ms": m.first_200_ms,
        "saturation": outcome_json(&m.saturation),
        "fixed_rate": outcome_json(&m.paced),
        "cpu_us_per_request": m.cpu_us_per_request,
        "rss_kib": m.rss_kib,
        "peak_rss_kib": m.peak_rss_kib,
        "load_average": m.load_average,
    })
}

fn opt(v: Option<f64>, decimals: usize) -> String {
    v.map_or("–".to_owned(), |v| format!("{v:.decimals$}"))
}

/// `median` with `(min–max)` when the rounds differ.
fn cell(s: Option<Spread>, decimals: usize) -> String {
    match s {
        None => "–".to_owned(),
        Some(s) if s.min == s.max => format!("{:.decimals$}", s.median),
        Some(s) => format!(
            "{:.decimals$}<br>({:.decimals$}–{:.decimals$})",
            s.median, s.min, s.max
        ),
    }
}

fn ratio_cell(rps: Option<Spread>, base: Option<f64>) -> String {
    rps.and_then(|r| ratio(r.median, base?))
        .map_or("–".to_owned(), |r| format!("{r:.2}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::configs::find;
    use crate::bench::paired::{bearer_auth_against_jwt_authn, burst_at};
    use crate::bench::wrk::Latency;

    fn outcome(rps: f64, p99_us: f64) -> Outcome {
        Outcome {
            requests: (rps * 10.0) as u64,
            seconds: 10.0,
            errors: 0,
            non_2xx: 0,
            latency_us: Latency {
                p50: p99_us / 2.0,
                p99: p99_us,
                p999: p99_us * 2.0,
                max: p99_us * 3.0,
            },
        }
    }

    fn runs(id: &str, rates: &[f64], p99_us: f64) -> ScenarioRuns {
        ScenarioRuns {
            scenario: find(id).unwrap(),
            rounds: rates
                .iter()
                .map(|r| {
                    Ok(Measurement {
                        first_200_ms: 100.0,
                        saturation: outcome(*r, p99_us),
                        paced: outcome(900.0, 300.0),
                        cpu_us_per_request: 30.0,
                        rss_kib: 40_000,
                        peak_rss_kib: 41_000,
                        load_average: Some(0.5),
                    })
                })
                .collect(),
        }
    }

    fn info() -> RunInfo {
        RunInfo {
            mode: "test",
            started_unix: 0,
            command: "cargo xtask bench".to_owned(),
            machine: "m".to_owned(),
            cpus: "c".to_owned(),
            envoy_version: "e".to_owned(),
            load_before: Some(0.1),
            load_after: None,
            settings: vec![],
            notes: vec![],
            wasm_sizes: vec![
                ("a.wasm".to_owned(), 500_000),
                ("b.wasm".to_owned(), 2_000_000),
            ],
        }
    }

    /// One round below the target is enough to leave it undecided, however the medians fall:
    /// three rounds have no interval to say which side the truth is on.
    #[test]
    fn a_target_met_by_the_medians_but_missed_in_a_round_is_not_decided() {
        let authz = AuthzRuns::default();
        let info = info();
        let d_against_c = |d: &[f64]| {
            let scenarios = vec![
                runs("C", &[20_000.0, 20_000.0, 20_000.0], 2000.0),
                runs("D", d, 2000.0),
            ];
            let r = Report {
                info: &info,
                scenarios: &scenarios,
                paired: None,
                instructions: &[],
                authz: &authz,
            };
            r.targets()
                .into_iter()
                .find(|t| t.name.starts_with("D ≥ 0.95"))
                .unwrap()
        };
        let mixed = d_against_c(&[19_800.0, 19_600.0, 18_000.0]);
        assert_eq!(mixed.met, Some(false));
        assert_eq!(
            mixed.measured,
            "0.980 (round by round 0.900–0.990, median 0.980); not decided: the rounds lie on \
             both sides of the target"
        );
        let all = d_against_c(&[19_800.0, 19_600.0, 19_100.0]);
        assert_eq!(all.met, Some(true));
        assert_eq!(
            all.measured,
            "0.980 (round by round 0.955–0.990, median 0.980)"
        );
        let none = d_against_c(&[18_000.0, 18_500.0, 17_000.0]);
        assert_eq!(none.met, Some(false));
        assert!(!none.measured.contains("not decided"), "{none:?}");
    }

    #[test]
    fn ratios_come_from_the_medians_and_targets_also_hold_round_by_round() {
        let scenarios = vec![
            runs("B", &[30_000.0, 31_000.0, 29_000.0], 2000.0),
            runs("C", &[20_000.0, 21_000.0, 19_000.0], 2000.0),
            runs("C0", &[9_000.0], 5000.0),
            runs("D", &[19_500.0, 19_000.0, 100.0], 2100.0),
        ];
        let authz = AuthzRuns {
            secret: vec![outcome(6000.0, 1.0)],
            peak_rss_kib: Some(60 * 1024),
            restart_ms: vec![20.0],
            ..AuthzRuns::default()
        };
        let info = info();
        let r = Report {
            info: &info,
            scenarios: &scenarios,
            paired: None,
            instructions: &[],
            authz: &authz,
        };
        let t = r.targets();
        let find_t = |prefix: &str| t.iter().find(|t| t.name.starts_with(prefix)).unwrap();
        // D's median is 19,000 (not the mean): 19,000 / 20,000 = 0.95. Round by round it is
        // 0.975, 0.905 and 0.005: the medians pass, most rounds do not, so the target is missed,
        // and with rounds on both sides it is not decided either way.
        assert_eq!(
            find_t("D ≥ 0.95").measured,
            "0.950 (round by round 0.005–0.975, median 0.905); not decided: the rounds lie on \
             both sides of the target"
        );
        assert_eq!(find_t("D ≥ 0.95").met, Some(false));
        assert_eq!(find_t("D's p99").met, Some(true));
        assert_eq!(find_t("D ≥ 2 × C0").met, Some(true));
        // C0 ran one round: one ratio per round is no spread to show.
        assert_eq!(find_t("D ≥ 2 × C0").measured, "2.111");
        assert_eq!(find_t("bearer-auth alone").met, None);
        assert_eq!(find_t("a.wasm").met, Some(true));
        assert_eq!(find_t("b.wasm").met, Some(false));
        assert_eq!(find_t("authz-service ≥ 5,000").met, Some(true));
        assert_eq!(find_t("authz-service RSS").met, Some(false));
        let json = r.json();
        let d = &json["scenarios"][3];
        assert_eq!(d["ratio_to_C"], json!(0.95));
        assert_eq!(d["requests_per_second"]["min"], json!(100.0));
        let md = r.markdown();
        assert!(md.contains("| **D** ours"), "{md}");
        assert!(md.contains("19000<br>(100–19500)"), "{md}");
        assert!(
            md.contains("| b.wasm ≤ 1 MiB | 2000000 bytes (1.907 MiB) | **no** |"),
            "{md}"
        );
    }

    #[test]
    fn paired_bursts_get_target_rows_and_a_table_of_their_own() {
        let scenarios = vec![
            runs("F-jwt-authn", &[20_000.0, 21_000.0, 20_000.0], 2000.0),
            runs("F-bearer-auth", &[18_000.0, 18_000.0, 19_000.0], 2000.0),
        ];
        // The machine halves its speed for the second cycle: each cycle's ratio does not move.
        let paired = bearer_auth_against_jwt_authn(vec![
            vec![burst_at(20_000.0), burst_at(19_200.0)],
            vec![burst_at(10_000.0), burst_at(9_600.0)],
            vec![burst_at(20_000.0), burst_at(19_400.0)],
        ]);
        let info = info();
        let r = Report {
            info: &info,
            scenarios: &scenarios,
            paired: Some(&paired),
            instructions: &[],
            authz: &AuthzRuns::default(),
        };
        let t = r.targets();
        let bearer: Vec<&Target> = t
            .iter()
            .filter(|t| t.name.starts_with("bearer-auth alone"))
            .collect();
        assert_eq!(bearer.len(), 2, "{t:?}");
        assert_eq!(bearer[0].met, Some(false));
        assert!(bearer[1].name.ends_with(", in paired bursts"), "{t:?}");
        assert_eq!(
            bearer[1].measured,
            "0.960 (cycle by cycle 0.960–0.970, median 0.960)"
        );
        assert_eq!(bearer[1].met, Some(true));
        // Only paired configurations get a paired row.
        assert!(
            !t.iter()
                .any(|t| t.name.starts_with("D ≥ 0.95") && t.name.contains("paired"))
        );
        let json = r.json();
        let ours = &json["paired"]["results"][1];
        assert_eq!(ours["id"], "F-bearer-auth");
        assert_eq!(ours["ratio_to_base"]["cycles"].as_array().unwrap().len(), 3);
        assert!(json["paired"]["results"][0]["ratio_to_base"].is_null());
        let md = r.markdown();
        assert!(md.contains("## Paired bursts"), "{md}");
        assert!(
            md.contains("| 0.960 | – | 0.960–0.965 | 0.960–0.970 | 0.960 |"),
            "{md}"
        );
    }

    /// The targets and the Markdown of a run of only `paired`.
    fn paired_only(paired: &PairedRuns) -> (Vec<Target>, String) {
        let info = info();
        let r = Report {
            info: &info,
            scenarios: &[],
            paired: Some(paired),
            instructions: &[],
            authz: &AuthzRuns::default(),
        };
        (r.targets(), r.markdown())
    }

    #[test]
    fn paired_targets_are_met_only_when_the_median_s_interval_is() {
        let target = |ratios: &[f64]| {
            let cycles = ratios
                .iter()
                .map(|r| vec![burst_at(10_000.0), burst_at(10_000.0 * r)])
                .collect();
            paired_only(&bearer_auth_against_jwt_authn(cycles))
                .0
                .into_iter()
                .find(|t| t.name.ends_with("in paired bursts"))
                .unwrap()
        };
        // Ten cycles: the interval of the median runs from the second smallest to the second
        // largest. Each case: the cycles' ratios, met, and what the measured text says.
        let cases: [(&[f64], bool, &str); 3] = [
            (
                &[0.96, 0.97, 0.955, 0.98, 0.96, 0.99, 0.965, 0.94, 0.97, 0.96],
                true,
                "95 % interval of the median 0.955–0.980)",
            ),
            (
                &[0.96, 0.97, 0.93, 0.98, 0.94, 0.99, 0.965, 0.90, 0.97, 0.96],
                false,
                "); not decided: the interval lies on both sides of the target",
            ),
            (
                &[0.90, 0.91, 0.92, 0.93, 0.90, 0.91, 0.92, 0.93, 0.94, 0.90],
                false,
                "95 % interval of the median 0.900–0.930)",
            ),
        ];
        for (ratios, met, says) in cases {
            let t = target(ratios);
            assert_eq!(t.met, Some(met), "{t:?}");
            assert!(t.measured.ends_with(says), "{t:?}");
        }
    }

    #[test]
    fn a_run_without_rounds_has_no_rounds_table() {
        let paired = bearer_auth_against_jwt_authn(vec![vec![burst_at(1.0), burst_at(1.0)]]);
        let (_, md) = paired_only(&paired);
        assert!(!md.contains("| config | req/s | × B"), "{md}");
        assert!(md.contains("## Paired bursts"), "{md}");
    }

    #[test]
    fn a_failed_round_is_reported_and_left_out_of_the_medians() {
        let mut d = runs("D", &[10_000.0], 1000.0);
        d.rounds.push(Err("Envoy exited".to_owned()));
        let scenarios = vec![d];
        let info = info();
        let authz = AuthzRuns::default();
        let r = Report {
            info: &info,
            scenarios: &scenarios,
            paired: None,
            instructions: &[],
            authz: &authz,
        };
        let md = r.markdown();
        assert!(md.contains("(1 round(s) failed)"), "{md}");
        assert!(md.contains("- D: Envoy exited"), "{md}");
        assert_eq!(
            r.json()["scenarios"][0]["requests_per_second"]["median"],
            json!(10_000.0)
        );
    }

    /// The JSON and Markdown reports of a run that only counted instructions.
    fn instructions_only(instructions: &[InstructionRuns]) -> (Value, String) {
        let info = info();
        let authz = AuthzRuns::default();
        let r = Report {
            info: &info,
            scenarios: &[],
            paired: None,
            instructions,
            authz: &authz,
        };
        (r.json(), r.markdown())
    }

    #[test]
    fn instruction_counts_are_given_over_b_and_in_units_of_c() {
        let counted = |id: &str, windows: &[f64]| InstructionRuns {
            scenario: find(id).unwrap(),
            count: Ok(Count {
                per_request: windows.to_vec(),
                jit_per_request: windows.iter().map(|w| w / 10.0).collect(),
                requests: vec![1000; windows.len()],
                misses_per_request: Vec::new(),
            }),
        };
        let instructions = vec![
            counted("B", &[160_000.0, 160_100.0]),
            counted("C", &[180_000.0, 180_000.0]),
            counted("D1", &[220_000.0, 220_200.0]),
            InstructionRuns {
                scenario: find("D").unwrap(),
                count: Err("Envoy exited".to_owned()),
            },
        ];
        let (json, md) = instructions_only(&instructions);
        let d1 = &json["instructions"][2];
        // B's median is 160,050: D1 adds 60,050, C 19,950, so D1 costs 3.01 × what C adds.
        assert_eq!(d1["over_B"], json!(60_050.0));
        assert!((d1["over_B_in_units_of_C"].as_f64().unwrap() - 3.01).abs() < 0.001);
        assert!(json["instructions"][0]["over_B"].is_null());
        assert_eq!(json["instructions"][3]["error"], "Envoy exited");
        assert!(
            md.contains("| 220100<br>(220000–220200) | 60050 | 3.01 | 22010<br>(22000–22020) |"),
            "{md}"
        );
        assert!(md.contains("| **D** | failed: Envoy exited |"), "{md}");
        assert_eq!(d1["jit_windows"], json!([22_000.0, 22_020.0]));
        // Without the cache simulation there are no misses, in neither report.
        assert!(d1["misses_per_request"].is_null());
        assert!(!md.contains("Simulated cache misses"), "{md}");
    }

    #[test]
    fn simulated_misses_get_a_table_of_their_own() {
        let misses = |i1: f64| Misses {
            i1,
            d1: 2.0 * i1,
            ll: 10.0,
            i1_jit: i1 / 5.0,
            d1_jit: 100.0,
        };
        let instructions = vec![InstructionRuns {
            scenario: find("F-bearer-auth").unwrap(),
            count: Ok(Count {
                per_request: vec![230_000.0, 230_400.0],
                jit_per_request: vec![14_000.0, 14_000.0],
                requests: vec![1000, 1000],
                misses_per_request: vec![misses(800.0), misses(820.0)],
            }),
        }];
        let (json, md) = instructions_only(&instructions);
        let counted = &json["instructions"][0]["misses_per_request"];
        assert_eq!(counted["i1"]["median"], json!(810.0));
        assert_eq!(counted["d1"]["max"], json!(1640.0));
        assert_eq!(counted["i1_jit"]["median"], json!(162.0));
        assert!(
            md.contains(
                "| **F-bearer-auth** | 810<br>(800–820) | 162<br>(160–164) | 1620<br>(1600–1640) \
                 | 100 | 10 |"
            ),
            "{md}"
        );
    }
}
