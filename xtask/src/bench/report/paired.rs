//! The paired bursts' part of the report: each configuration's bursts, and its ratio to the first
//! one, cycle by cycle.

use std::fmt::Write as _;

use serde_json::{Value, json};

use super::{cell, opt, outcome_json};
use crate::bench::paired::{Burst, PairedRuns};
use crate::bench::stats::{Spread, median_interval, quartiles};

/// One configuration's numbers over its bursts, and its throughput against the base's.
struct Summary {
    rps: Option<Spread>,
    cpu: Option<Spread>,
    p99_ms: Option<Spread>,
    /// Cycle by cycle (empty for the base itself).
    ratios: Vec<f64>,
    of_medians: Option<f64>,
}

fn rate(b: &Burst) -> f64 {
    b.saturation.rate()
}

fn summary(p: &PairedRuns, i: usize) -> Summary {
    let is_base = i == 0;
    Summary {
        rps: p.spread(i, rate),
        cpu: p.spread(i, |b| b.cpu_us_per_request),
        p99_ms: p.spread(i, |b| b.saturation.latency_us.p99 / 1000.0),
        ratios: if is_base {
            Vec::new()
        } else {
            p.ratios(i, 0, rate)
        },
        of_medians: if is_base {
            None
        } else {
            p.ratio_of_medians(i, 0, rate)
        },
    }
}

pub fn json(p: &PairedRuns) -> Value {
    let spread = |s: Option<Spread>| s.map_or(Value::Null, Spread::to_json);
    let results: Vec<Value> = p
        .scenarios
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let sum = summary(p, i);
            let cycles = Spread::of(&sum.ratios);
            let bursts: Vec<Value> = p
                .bursts(i)
                .iter()
                .map(|b| {
                    let mut v = outcome_json(&b.saturation);
                    if let Some(o) = v.as_object_mut() {
                        o.insert("cpu_us_per_request".to_owned(), json!(b.cpu_us_per_request));
                    }
                    v
                })
                .collect();
            json!({
                "id": s.id,
                "title": s.title,
                "requests_per_second": spread(sum.rps),
                "cpu_us_per_request": spread(sum.cpu),
                "p99_ms": spread(sum.p99_ms),
                "ratio_to_base": if i == 0 { Value::Null } else {
                    json!({
                        "of_medians": sum.of_medians,
                        "cycles": sum.ratios,
                        "median": cycles.map(|c| c.median),
                        "min": cycles.map(|c| c.min),
                        "max": cycles.map(|c| c.max),
                        "quartiles": quartiles(&sum.ratios).map(|(a, b)| [a, b]),
                        "median_interval_95": median_interval(&sum.ratios).map(|(a, b)| [a, b]),
                    })
                },
                "bursts": bursts,
            })
        })
        .collect();
    json!({
        "base": p.scenarios.first().map(|s| s.id),
        "cycles": p.pacing.cycles,
        "burst_seconds": p.pacing.burst.as_secs_f64(),
        "error": p.cycles.as_ref().err(),
        "results": results,
    })
}

pub fn markdown(p: &PairedRuns, md: &mut String) {
    let base = p.scenarios.first().map_or("?", |s| s.id);
    let _ = writeln!(
        md,
        "\n## Paired bursts\n\nThe Envoys of these configurations ran at once on the server core \
         and were driven in turn at saturation, {:?} each, {} cycle(s), the order reversed every \
         other cycle: the sides of each ratio were measured seconds apart, not minutes. Median of \
         the bursts, (min–max) below it. \"× {base}\" is the throughput's ratio to {base} cycle by \
         cycle: the median of the cycles, a 95 % confidence interval for it (from the cycles' \
         order statistics; six cycles at least), the middle half of the cycles (first to third \
         quartile) and all of them; then the ratio of the two medians.\n",
        p.pacing.burst, p.pacing.cycles
    );
    if let Err(e) = &p.cycles {
        let _ = writeln!(md, "Failed: {e}\n");
    }
    let _ = writeln!(
        md,
        "| config | req/s | CPU µs/req | p99 ms | × {base}, median of the cycles | 95 % interval of the median | middle half | all cycles | of the medians |\n\
         |---|---|---|---|---|---|---|---|---|"
    );
    for (i, s) in p.scenarios.iter().enumerate() {
        let sum = summary(p, i);
        let cycles = Spread::of(&sum.ratios);
        let (median, middle, all) = match (cycles, quartiles(&sum.ratios)) {
            (Some(c), Some((q1, q3))) => (
                format!("{:.3}", c.median),
                format!("{q1:.3}–{q3:.3}"),
                format!("{:.3}–{:.3}", c.min, c.max),
            ),
            _ => ("–".to_owned(), "–".to_owned(), "–".to_owned()),
        };
        let interval = median_interval(&sum.ratios)
            .map_or("–".to_owned(), |(lo, hi)| format!("{lo:.3}–{hi:.3}"));
        let _ = writeln!(
            md,
            "| **{}** {} | {} | {} | {} | {median} | {interval} | {middle} | {all} | {} |",
            s.id,
            s.title,
            cell(sum.rps, 0),
            cell(sum.cpu, 1),
            cell(sum.p99_ms, 2),
            opt(sum.of_medians, 3)
        );
    }
}
