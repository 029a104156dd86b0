//! The decision for one request: which policies apply, which buckets they use, whether every
//! bucket has a token, and what to answer.
//!
//! A request passes only if every enforcing policy that applies has a token for it, and then takes
//! one from each; when any denies, it takes none. Buckets live in separate shared-data values, so
//! "take from all or none" is done by taking in order and giving back what was taken if a later
//! bucket is empty. When several enforcing policies apply, a read-only look first refuses requests
//! that would be denied anyway, so denied requests do not hold other policies' tokens even briefly.

use std::borrow::Cow;

use wasmgate_filter_common::RequestInfo;

use crate::config::{Config, FailureMode, OnMissingKey, Policy};
use crate::headers::{self, Header, Report, ResponseHeaders};
use crate::keys::{self, KeySource, RequestView};
use crate::limiter::{self, Effort, LimiterError, Outcome, Snapshot};
use crate::store::SharedStore;
use crate::table::SlotRef;

/// Counted events, reported through the adapter's metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// The policy applied and the request passed it (dry-run policies: had a token).
    Allowed(usize),
    /// The policy denied the request (429).
    Limited(usize),
    /// A dry-run policy would have denied the request.
    DryRunLimited(usize),
    /// The request had no value for the policy's key and was refused (403).
    MissingKey(usize),
    /// The policy's bucket could not be updated (retries exhausted or a host error).
    Failure(usize),
    CasRetries(u32),
    Evictions(u32),
}

pub trait Metrics {
    fn count(&self, event: Event);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    Debug,
    Info,
    Warn,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Let the request through and add these headers to its response.
    Allow {
        response_headers: Option<ResponseHeaders>,
    },
    /// Answer the request here.
    Deny {
        status: u16,
        headers: Vec<Header>,
        body: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub decision: Decision,
    /// A line for the proxy's log, with the reason.
    pub log: Option<(LogLevel, String)>,
}

struct Applied<'c> {
    index: usize,
    policy: &'c Policy,
    slot: SlotRef,
}

/// Decides what happens to `request` at time `now` (nanoseconds since the epoch).
pub fn decide(
    config: &Config,
    store: &dyn SharedStore,
    request: &dyn RequestView,
    now: u64,
    metrics: &dyn Metrics,
) -> Verdict {
    let context = Context {
        store,
        now,
        metrics,
    };
    decide_by(Path::ForTheConfiguration, config, request, context)
}

/// Which code decides: the one for the configuration, or the general one whatever the
/// configuration (for the tests that hold `decide_one` to it).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Path {
    ForTheConfiguration,
    #[cfg(test)]
    General,
}

/// `decide` by the general path alone.
#[cfg(test)]
fn decide_generally(
    config: &Config,
    store: &dyn SharedStore,
    request: &dyn RequestView,
    now: u64,
    metrics: &dyn Metrics,
) -> Verdict {
    let context = Context {
        store,
        now,
        metrics,
    };
    decide_by(Path::General, config, request, context)
}

fn decide_by(
    path: Path,
    config: &Config,
    request: &dyn RequestView,
    context: Context<'_>,
) -> Verdict {
    let mut effort = Effort::default();
    // The method and the host are read only for matchers on them.
    let reads = config.matchers_read;
    let method = if reads.method {
        request.method()
    } else {
        Cow::Borrowed("")
    };
    let host = if reads.host {
        request
            .header(":authority")
            .or_else(|| request.header("host"))
            .unwrap_or_default()
    } else {
        Cow::Borrowed("")
    };
    let info = RequestInfo {
        method: &method,
        path: request.path(),
        host: &host,
    };
    let verdict = match config.policies.as_slice() {
        [policy] if path == Path::ForTheConfiguration => {
            decide_one(config, policy, request, &info, context, &mut effort)
        }
        _ => decide_any(config, request, &info, context, &mut effort),
    };
    if effort.cas_retries > 0 {
        context.metrics.count(Event::CasRetries(effort.cas_retries));
    }
    if effort.evictions > 0 {
        context.metrics.count(Event::Evictions(effort.evictions));
    }
    verdict
}

/// The decision for any number of policies.
fn decide_any(
    config: &Config,
    request: &dyn RequestView,
    info: &RequestInfo<'_>,
    context: Context<'_>,
    effort: &mut Effort,
) -> Verdict {
    let Context {
        store,
        now,
        metrics,
    } = context;
    let mut applied = Vec::new();
    for (index, policy) in config.policies.iter().enumerate() {
        if !policy.matcher.matches(info) {
            continue;
        }
        match slot_for(config, policy, request) {
            Ok(Some(slot)) => applied.push(Applied {
                index,
                policy,
                slot,
            }),
            Ok(None) => {}
            Err(missing) => {
                metrics.count(Event::MissingKey(index));
                return missing;
            }
        }
    }
    if applied.is_empty() {
        return allow(None, None);
    }

    if applied.iter().filter(|a| !a.policy.dry_run).count() > 1 {
        for a in applied.iter().filter(|a| !a.policy.dry_run) {
            // A failed look is not a decision: the take below applies the failure mode.
            if let Ok(snapshot) = limiter::peek(store, &a.slot, &a.policy.rate, now)
                && snapshot.remaining == 0
            {
                metrics.count(Event::Limited(a.index));
                return too_many_requests(config, a.policy, snapshot);
            }
        }
    }

    let retries = config.max_cas_retries;
    let mut taken: Vec<&Applied<'_>> = Vec::new();
    let mut reports: Vec<Report<'_>> = Vec::new();
    let mut dry_run_hits = Vec::new();
    let mut failures = Vec::new();
    for a in &applied {
        let rate = &a.policy.rate;
        match limiter::take(store, &a.slot, rate, now, retries, effort) {
            Ok(Outcome::Taken(snapshot)) => {
                taken.push(a);
                reports.push(report(a.policy, snapshot));
            }
            Ok(Outcome::Empty(snapshot)) if a.policy.dry_run => {
                dry_run_hits.push(a);
                reports.push(report(a.policy, snapshot));
            }
            Ok(Outcome::Empty(snapshot)) => {
                give_back(config, store, &taken, now, metrics, effort);
                metrics.count(Event::Limited(a.index));
                return too_many_requests(config, a.policy, snapshot);
            }
            Err(error) => {
                metrics.count(Event::Failure(a.index));
                let reason = failure_reason(&a.policy.name, &error);
                match config.failure_mode {
                    FailureMode::Allow => failures.push(reason),
                    FailureMode::Deny => {
                        give_back(config, store, &taken, now, metrics, effort);
                        return unavailable(reason);
                    }
                }
            }
        }
    }

    for a in &taken {
        metrics.count(Event::Allowed(a.index));
    }
    for a in &dry_run_hits {
        metrics.count(Event::DryRunLimited(a.index));
    }
    let headers =
        headers::closest_to_exhaustion(&reports).and_then(|r| response_headers(config, r));
    let log = if !failures.is_empty() {
        Some(let_through_despite(&failures))
    } else if !dry_run_hits.is_empty() {
        let names: Vec<&str> = dry_run_hits
            .iter()
            .map(|a| a.policy.name.as_str())
            .collect();
        Some(would_have_limited(&names))
    } else {
        None
    };
    allow(headers, log)
}

/// `decide_any` for a configuration of one policy, the usual one: the same decision without
/// the lists several policies need (the ones that apply, the tokens taken, the reports to choose
/// the headers from), which are most of the code a request runs through here
/// (bench/NOTEBOOK.md, "Shortcuts for the usual configuration"). The tests hold both to the same
/// verdicts.
fn decide_one(
    config: &Config,
    policy: &Policy,
    request: &dyn RequestView,
    info: &RequestInfo<'_>,
    context: Context<'_>,
    effort: &mut Effort,
) -> Verdict {
    const INDEX: usize = 0;
    let Context {
        store,
        now,
        metrics,
    } = context;
    if !policy.matcher.matches(info) {
        return allow(None, None);
    }
    let slot = match slot_for(config, policy, request) {
        Ok(Some(slot)) => slot,
        Ok(None) => return allow(None, None),
        Err(missing) => {
            metrics.count(Event::MissingKey(INDEX));
            return missing;
        }
    };
    let retries = config.max_cas_retries;
    match limiter::take(store, &slot, &policy.rate, now, retries, effort) {
        Ok(Outcome::Taken(snapshot)) => {
            metrics.count(Event::Allowed(INDEX));
            allow(response_headers(config, &report(policy, snapshot)), None)
        }
        Ok(Outcome::Empty(snapshot)) if policy.dry_run => {
            metrics.count(Event::DryRunLimited(INDEX));
            let headers = response_headers(config, &report(policy, snapshot));
            allow(headers, Some(would_have_limited(&[policy.name.as_str()])))
        }
        Ok(Outcome::Empty(snapshot)) => {
            metrics.count(Event::Limited(INDEX));
            too_many_requests(config, policy, snapshot)
        }
        Err(error) => {
            metrics.count(Event::Failure(INDEX));
            let reason = failure_reason(&policy.name, &error);
            match config.failure_mode {
                FailureMode::Allow => allow(None, Some(let_through_despite(&[reason]))),
                FailureMode::Deny => unavailable(reason),
            }
        }
    }
}

/// What a request is decided against besides the configuration and the request itself.
#[derive(Clone, Copy)]
struct Context<'a> {
    store: &'a dyn SharedStore,
    now: u64,
    metrics: &'a dyn Metrics,
}

/// The headers describing `report`, as the configuration asks for them.
fn response_headers(config: &Config, report: &Report<'_>) -> Option<ResponseHeaders> {
    ResponseHeaders::new(config.headers, report)
}

/// The log line for a request let through although its buckets could not be counted.
fn let_through_despite(failures: &[String]) -> (LogLevel, String) {
    (
        LogLevel::Warn,
        format!(
            "{}; letting the request through (failure_mode allow)",
            failures.join("; ")
        ),
    )
}

/// The log line for dry-run policies that would have refused the request.
fn would_have_limited(names: &[&str]) -> (LogLevel, String) {
    (
        LogLevel::Info,
        format!(
            "rate-limit: dry run: policy {} would have limited this request",
            names.join(", ")
        ),
    )
}

/// The bucket a policy uses for this request; `Ok(None)` if the policy is skipped, `Err` with
/// the answer if the request must be refused for lack of a key.
fn slot_for(
    config: &Config,
    policy: &Policy,
    request: &dyn RequestView,
) -> Result<Option<SlotRef>, Verdict> {
    let hops = config.xff_trusted_hops;
    if let Some(values) = keys::key_values(&policy.key, request, hops) {
        return Ok(Some(keys::locate(
            &config.table,
            policy,
            KeySource::Primary,
            &values,
        )));
    }
    match &policy.on_missing_key {
        OnMissingKey::Skip => Ok(None),
        OnMissingKey::Fallback(parts) => match keys::key_values(parts, request, hops) {
            Some(values) => Ok(Some(keys::locate(
                &config.table,
                policy,
                KeySource::Fallback,
                &values,
            ))),
            None => Err(missing_key(policy)),
        },
        OnMissingKey::Deny => Err(missing_key(policy)),
    }
}

fn report(policy: &Policy, snapshot: Snapshot) -> Report<'_> {
    Report {
        policy: &policy.name,
        rate: policy.rate,
        snapshot,
    }
}

/// Returns the tokens taken for a request that is denied after all. A failure here loses a token
/// (the client is limited slightly early), which is the safe side; it is counted and logged.
fn give_back(
    config: &Config,
    store: &dyn SharedStore,
    taken: &[&Applied<'_>],
    now: u64,
    metrics: &dyn Metrics,
    effort: &mut Effort,
) {
    for a in taken {
        let result = limiter::give_back(
            store,
            &a.slot,
            &a.policy.rate,
            now,
            config.max_cas_retries,
            effort,
        );
        if result.is_err() {
            metrics.count(Event::Failure(a.index));
        }
    }
}

fn allow(response_headers: Option<ResponseHeaders>, log: Option<(LogLevel, String)>) -> Verdict {
    Verdict {
        decision: Decision::Allow { response_headers },
        log,
    }
}

const PROBLEM_JSON: (&str, &str) = ("content-type", "application/problem+json");

fn too_many_requests(config: &Config, policy: &Policy, snapshot: Snapshot) -> Verdict {
    let r = report(policy, snapshot);
    let mut headers = headers::rate_limit_headers(config.headers, &r);
    let retry = headers::retry_after(&r);
    let detail = match retry {
        Some(secs) => {
            headers.push(("retry-after", secs.to_string()));
            format!(
                "rate limit `{}` exceeded ({} requests per {} s); retry in {secs} s",
                policy.name,
                policy.rate.limit,
                crate::bucket::ceil_secs(policy.rate.interval_ns)
            )
        }
        None => format!("policy `{}` refuses every request (limit 0)", policy.name),
    };
    headers.push((PROBLEM_JSON.0, PROBLEM_JSON.1.to_owned()));
    let log = format!("rate-limit: 429: {detail}");
    Verdict {
        decision: Decision::Deny {
            status: 429,
            headers,
            body: headers::problem(429, "Too Many Requests", &detail),
        },
        log: Some((LogLevel::Debug, log)),
    }
}

fn missing_key(policy: &Policy) -> Verdict {
    let detail = format!(
        "the request carries no value for the key of rate-limit policy `{}`",
        policy.name
    );
    Verdict {
        decision: Decision::Deny {
            status: 403,
            headers: vec![(PROBLEM_JSON.0, PROBLEM_JSON.1.to_owned())],
            body: headers::problem(403, "Forbidden", &detail),
        },
        log: Some((LogLevel::Info, format!("rate-limit: 403: {detail}"))),
    }
}

fn failure_reason(policy: &str, error: &LimiterError) -> String {
    match error {
        LimiterError::RetriesExhausted => format!(
            "rate-limit: policy `{policy}`: shared data too contended, compare-and-swap retries exhausted"
        ),
        LimiterError::Store(reason) => {
            format!("rate-limit: policy `{policy}`: shared data error: {reason}")
        }
    }
}

fn unavailable(reason: String) -> Verdict {
    Verdict {
        decision: Decision::Deny {
            status: 503,
            headers: vec![
                ("retry-after", "1".to_owned()),
                (PROBLEM_JSON.0, PROBLEM_JSON.1.to_owned()),
            ],
            body: headers::problem(
                503,
                "Service Unavailable",
                "the rate limiter could not count this request; try again shortly",
            ),
        },
        log: Some((
            LogLevel::Warn,
            format!("{reason}; refusing the request (failure_mode deny)"),
        )),
    }
}

#[cfg(test)]
#[path = "engine_tests.rs"]
mod tests;
