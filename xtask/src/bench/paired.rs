//! Paired bursts: two or more configurations served at once by their own Envoys on the server
//! core, driven in turn for a few seconds each, cycle after cycle.
//!
//! The rounds of a run measure one configuration minutes after another, and on a VM whose speed
//! drifts by a tenth within minutes a ratio of two of them moves as much. Here the sides of a
//! ratio are measured seconds apart, in an order reversed every other cycle (A B, B A, A B, …),
//! so a drift falls on both alike. What moves faster than that is averaged over the cycles: the
//! report gives each cycle's ratio, and a confidence interval for their median that says whether
//! there were enough of them (bench/NOTEBOOK.md, "Paired bursts").

use std::fs;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use xtask::process::ManagedProcess;

use crate::bench::configs::{self, FilterConfigs, Scenario, Values};
use crate::bench::measure::{self, Launch, Settings};
use crate::bench::stats::{Spread, ratio};
use crate::bench::wrk::{self, Outcome};
use crate::bench::{free_ports, procstat};

/// How a paired comparison runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pacing {
    pub cycles: u32,
    /// Load at saturation per configuration and cycle (wrk takes whole seconds).
    pub burst: Duration,
}

/// One configuration's share of one cycle.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Burst {
    pub saturation: Outcome,
    /// Envoy's CPU time (all threads) during the burst, per request.
    pub cpu_us_per_request: f64,
}

/// A paired comparison as run: the configurations (the first is the base of the ratios) and,
/// per cycle, one burst of each in the order of `scenarios`.
#[derive(Debug, Clone)]
pub struct PairedRuns {
    pub scenarios: Vec<Scenario>,
    pub pacing: Pacing,
    pub cycles: Result<Vec<Vec<Burst>>, String>,
}

impl PairedRuns {
    /// Configuration `i`'s bursts, one per cycle.
    pub fn bursts(&self, i: usize) -> Vec<Burst> {
        self.cycles
            .as_ref()
            .map(|cycles| cycles.iter().filter_map(|c| c.get(i).copied()).collect())
            .unwrap_or_default()
    }

    /// `metric` over configuration `i`'s bursts.
    pub fn spread(&self, i: usize, metric: impl Fn(&Burst) -> f64) -> Option<Spread> {
        Spread::of(&self.bursts(i).iter().map(metric).collect::<Vec<_>>())
    }

    /// The median of `metric` over `a`'s bursts against the same over `b`'s.
    pub fn ratio_of_medians(
        &self,
        a: usize,
        b: usize,
        metric: impl Fn(&Burst) -> f64,
    ) -> Option<f64> {
        let (x, y) = (self.spread(a, &metric)?, self.spread(b, &metric)?);
        ratio(x.median, y.median)
    }

    /// `metric` of configuration `a` over configuration `b`, cycle by cycle.
    pub fn ratios(&self, a: usize, b: usize, metric: impl Fn(&Burst) -> f64) -> Vec<f64> {
        self.bursts(a)
            .iter()
            .zip(&self.bursts(b))
            .filter_map(|(x, y)| ratio(metric(x), metric(y)))
            .collect()
    }

    /// Where configuration `id` is in the comparison.
    pub fn position(&self, id: &str) -> Option<usize> {
        self.scenarios.iter().position(|s| s.id == id)
    }
}

/// Which configuration goes when in cycle `cycle`: in the given order, reversed every other cycle.
pub fn order(n: usize, cycle: u32) -> Vec<usize> {
    if cycle.is_multiple_of(2) {
        (0..n).collect()
    } else {
        (0..n).rev().collect()
    }
}

/// Starts one Envoy per configuration (each on its own ports, all pinned to the server core),
/// checks and warms up each as the rounds do, then runs the cycles. Every Envoy is stopped before
/// this returns.
pub fn run(
    scenarios: &[Scenario],
    base: &Values,
    filters: &FilterConfigs,
    settings: &Settings,
    run_dir: &Path,
    pacing: Pacing,
) -> Result<Vec<Vec<Burst>>> {
    let mut envoys: Vec<(ManagedProcess, Settings, &Scenario)> = Vec::new();
    for s in scenarios {
        let [listen_port, admin_port] = free_ports()?;
        let values = Values {
            listen_port,
            admin_port,
            ..base.clone()
        };
        let path = run_dir.join(format!("paired-{}.yaml", s.id));
        fs::write(&path, configs::render(s, &values, filters)?)?;
        let own = Settings {
            listen_port,
            ..settings.clone()
        };
        let label = format!("paired-{}", s.id);
        let (envoy, _, _) =
            measure::start_envoy(&Launch::direct(), s, &path, &own, run_dir, &label)
                .with_context(|| format!("starting {}", s.id))?;
        envoys.push((envoy, own, s));
    }
    let mut cycles = Vec::new();
    for cycle in 0..pacing.cycles {
        let mut bursts: Vec<Option<Burst>> = vec![None; envoys.len()];
        for i in order(envoys.len(), cycle) {
            let (Some((envoy, own, s)), Some(slot)) = (envoys.get(i), bursts.get_mut(i)) else {
                continue;
            };
            let pid = envoy.pid();
            let before = procstat::cpu_time_us(pid)?;
            let saturation = wrk::run(&own.saturation_load(pacing.burst), &settings.wrk_script)
                .with_context(|| format!("{}: burst {} of {}", s.id, cycle + 1, pacing.cycles))?;
            let after = procstat::cpu_time_us(pid)?;
            if saturation.errors > 0 || saturation.requests == 0 {
                bail!(
                    "{}: burst {} had {} errors ({} non-2xx answers) in {} requests",
                    s.id,
                    cycle + 1,
                    saturation.errors,
                    saturation.non_2xx,
                    saturation.requests
                );
            }
            *slot = Some(Burst {
                cpu_us_per_request: after.saturating_sub(before) as f64
                    / saturation.requests as f64,
                saturation,
            });
        }
        cycles.push(bursts.into_iter().flatten().collect());
    }
    for (mut envoy, _, _) in envoys {
        envoy.stop(Duration::from_secs(5));
    }
    Ok(cycles)
}

/// A burst of `rps` requests per second for two seconds, for tests.
#[cfg(test)]
pub fn burst_at(rps: f64) -> Burst {
    use crate::bench::wrk::Latency;
    Burst {
        saturation: Outcome {
            requests: (rps * 2.0) as u64,
            seconds: 2.0,
            errors: 0,
            non_2xx: 0,
            latency_us: Latency {
                p50: 1000.0,
                p99: 2000.0,
                p999: 3000.0,
                max: 4000.0,
            },
        },
        cpu_us_per_request: 1e6 / rps,
    }
}

/// bearer-auth paired with jwt_authn (the base), two-second bursts, for tests.
#[cfg(test)]
pub fn bearer_auth_against_jwt_authn(cycles: Vec<Vec<Burst>>) -> PairedRuns {
    use crate::bench::configs::find;
    let scenarios = ["F-jwt-authn", "F-bearer-auth"]
        .into_iter()
        .filter_map(find)
        .collect();
    PairedRuns {
        scenarios,
        pacing: Pacing {
            cycles: u32::try_from(cycles.len()).unwrap_or(u32::MAX),
            burst: Duration::from_secs(2),
        },
        cycles: Ok(cycles),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_order_turns_round_every_other_cycle() {
        assert_eq!(order(2, 0), [0, 1]);
        assert_eq!(order(2, 1), [1, 0]);
        assert_eq!(order(3, 2), [0, 1, 2]);
        assert_eq!(order(3, 3), [2, 1, 0]);
    }

    #[test]
    fn ratios_pair_the_bursts_of_one_cycle() {
        // The machine got faster between the cycles; each cycle's ratio stays the same.
        let runs = bearer_auth_against_jwt_authn(vec![
            vec![burst_at(10_000.0), burst_at(9_500.0)],
            vec![burst_at(20_000.0), burst_at(19_000.0)],
        ]);
        let r = runs.ratios(1, 0, |b| b.saturation.rate());
        assert_eq!(r.len(), 2);
        assert!(r.iter().all(|x| (x - 0.95).abs() < 1e-9), "{r:?}");
        assert_eq!(runs.position("F-bearer-auth"), Some(1));
        assert_eq!(runs.position("B"), None);
        let failed = PairedRuns {
            cycles: Err("no".to_owned()),
            ..runs
        };
        assert!(failed.bursts(0).is_empty());
        assert!(failed.ratios(1, 0, |b| b.saturation.rate()).is_empty());
    }
}
