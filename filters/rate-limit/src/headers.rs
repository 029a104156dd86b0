//! What the filter tells clients: the rate-limit response headers and the 429 body.
//!
//! Draft-10 (draft-ietf-httpapi-ratelimit-headers-10) structured fields:
//! `RateLimit-Policy: "per-client";q=100;w=60` and `RateLimit: "per-client";r=42;t=35`,
//! and the widespread `X-RateLimit-Limit` / `-Remaining` / `-Reset` triple with the same numbers.
//! `t` and `X-RateLimit-Reset` are the seconds until the bucket is full again (the quota fully
//! restored); `Retry-After` is the seconds until the next token.

use crate::bucket::{Rate, ceil_secs};
use crate::config::HeaderMode;
use crate::limiter::Snapshot;

/// One policy's state after a request, as the headers report it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report<'a> {
    pub policy: &'a str,
    pub rate: Rate,
    pub snapshot: Snapshot,
}

/// The report the headers describe: the policy closest to exhaustion (fewest requests left; on a
/// tie, the one that takes longer to be full again).
pub fn closest_to_exhaustion<'a, 'b>(reports: &'b [Report<'a>]) -> Option<&'b Report<'a>> {
    reports.iter().min_by(|a, b| {
        a.snapshot
            .remaining
            .cmp(&b.snapshot.remaining)
            .then_with(|| {
                // `None` (never full again) sorts as the longest wait.
                let wait = |r: &Report<'_>| r.snapshot.ns_until_full.unwrap_or(u64::MAX);
                wait(b).cmp(&wait(a))
            })
    })
}

/// A response header: names are fixed, so only values are built per request.
pub type Header = (&'static str, String);

/// The rate-limit headers of a response, kept as the numbers they carry until they are written.
/// A response's headers are set a callback after the decision: written then, the
/// `X-RateLimit-*` values are text on the stack, where each header built at the decision took an
/// allocation and a copy, and the list of them one more.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHeaders {
    mode: HeaderMode,
    /// The policy reported, which the draft-10 items name (`None` when the mode has none).
    policy: Option<String>,
    limit: u64,
    window: u64,
    remaining: u64,
    reset: u64,
}

impl ResponseHeaders {
    /// The headers `mode` asks for, describing `report`; `None` when it asks for none.
    pub fn new(mode: HeaderMode, report: &Report<'_>) -> Option<Self> {
        let (draft10, _) = families(mode);
        // The draft's window is whole seconds; sub-second intervals round up to 1.
        let window = ceil_secs(report.rate.interval_ns).max(1);
        (mode != HeaderMode::None).then(|| Self {
            mode,
            policy: draft10.then(|| report.policy.to_owned()),
            limit: report.rate.limit,
            window,
            remaining: report.snapshot.remaining,
            // A bucket that never refills (limit 0) never resets: report the window, the longest
            // a client may usefully wait before asking again.
            reset: report.snapshot.ns_until_full.map_or(window, ceil_secs),
        })
    }

    /// Hands each header to `set`, by name and value, in a fixed order.
    pub fn write(&self, mut set: impl FnMut(&'static str, &str)) {
        let (draft10, x_ratelimit) = families(self.mode);
        if draft10 {
            let name = self.policy.as_deref().unwrap_or_default();
            let policy = item(name, [("q", self.limit), ("w", self.window)]);
            set("ratelimit-policy", &policy);
            set(
                "ratelimit",
                &item(name, [("r", self.remaining), ("t", self.reset)]),
            );
        }
        if x_ratelimit {
            let mut number = itoa::Buffer::new();
            set("x-ratelimit-limit", number.format(self.limit));
            set("x-ratelimit-remaining", number.format(self.remaining));
            set("x-ratelimit-reset", number.format(self.reset));
        }
    }

    /// The headers as a list.
    pub fn to_vec(&self) -> Vec<Header> {
        let mut out = Vec::with_capacity(5);
        self.write(|name, value| out.push((name, value.to_owned())));
        out
    }
}

/// Whether `mode` sends the draft-10 fields, and the `X-RateLimit-*` triple.
fn families(mode: HeaderMode) -> (bool, bool) {
    (
        matches!(mode, HeaderMode::Draft10 | HeaderMode::Both),
        matches!(mode, HeaderMode::XRatelimit | HeaderMode::Both),
    )
}

/// Headers describing `report`, as a list (for a local reply, which adds its own).
pub fn rate_limit_headers(mode: HeaderMode, report: &Report<'_>) -> Vec<Header> {
    ResponseHeaders::new(mode, report).map_or_else(Vec::new, |headers| headers.to_vec())
}

/// A structured-field item, a policy name with two integer parameters: `"name";q=100;w=60`.
/// Built by hand: this runs on every request, and `format!` costs several times as much in wasm.
/// Policy names are checked at load to be plain tokens, so they need no escaping.
fn item(name: &str, parameters: [(&str, u64); 2]) -> String {
    let mut number = itoa::Buffer::new();
    let mut out = String::with_capacity(name.len() + 32);
    out.push('"');
    out.push_str(name);
    out.push('"');
    for (key, value) in parameters {
        out.push(';');
        out.push_str(key);
        out.push('=');
        out.push_str(number.format(value));
    }
    out
}

/// Seconds a denied client should wait; `None` if no token will ever come (limit 0).
pub fn retry_after(report: &Report<'_>) -> Option<u64> {
    report
        .snapshot
        .ns_until_token
        .map(|ns| ceil_secs(ns).max(1))
}

/// An RFC 9457 problem document.
pub fn problem(status: u16, title: &str, detail: &str) -> String {
    serde_json::json!({
        "type": "about:blank",
        "title": title,
        "status": status,
        "detail": detail,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;

    fn report(policy: &str, remaining: u64, until_full: Option<u64>) -> Report<'_> {
        Report {
            policy,
            rate: Rate {
                limit: 100,
                interval_ns: 60 * SEC,
                burst: 100,
            },
            snapshot: Snapshot {
                remaining,
                ns_until_token: Some(if remaining > 0 { 0 } else { 600_000_000 }),
                ns_until_full: until_full,
            },
        }
    }

    #[test]
    fn both_header_families_carry_the_same_numbers() {
        let r = report("per-client", 42, Some(34_800_000_001));
        let h = rate_limit_headers(HeaderMode::Both, &r);
        let get = |n: &str| h.iter().find(|(k, _)| *k == n).map(|(_, v)| v.as_str());
        assert_eq!(get("ratelimit-policy"), Some("\"per-client\";q=100;w=60"));
        assert_eq!(get("ratelimit"), Some("\"per-client\";r=42;t=35"));
        assert_eq!(get("x-ratelimit-limit"), Some("100"));
        assert_eq!(get("x-ratelimit-remaining"), Some("42"));
        assert_eq!(get("x-ratelimit-reset"), Some("35"));
    }

    #[test]
    fn modes_select_the_families() {
        let r = report("p", 1, Some(SEC));
        let names = |m| -> Vec<&str> {
            rate_limit_headers(m, &r)
                .into_iter()
                .map(|(k, _)| k)
                .collect()
        };
        assert_eq!(
            names(HeaderMode::Draft10),
            ["ratelimit-policy", "ratelimit"]
        );
        assert_eq!(
            names(HeaderMode::XRatelimit),
            [
                "x-ratelimit-limit",
                "x-ratelimit-remaining",
                "x-ratelimit-reset"
            ]
        );
        assert!(names(HeaderMode::None).is_empty());
    }

    #[test]
    fn kept_headers_write_what_the_list_says() {
        let r = report("per-client", 7, Some(3 * SEC));
        assert_eq!(ResponseHeaders::new(HeaderMode::None, &r), None);
        for mode in [
            HeaderMode::Draft10,
            HeaderMode::XRatelimit,
            HeaderMode::Both,
        ] {
            let kept = ResponseHeaders::new(mode, &r).unwrap();
            let mut written = Vec::new();
            kept.write(|name, value| written.push((name, value.to_owned())));
            assert_eq!(written, rate_limit_headers(mode, &r), "{mode:?}");
        }
        let x = ResponseHeaders::new(HeaderMode::XRatelimit, &r).unwrap();
        assert_eq!(x.policy, None, "no name kept where none is sent");
        assert_eq!(
            x.to_vec(),
            [
                ("x-ratelimit-limit", "100".to_owned()),
                ("x-ratelimit-remaining", "7".to_owned()),
                ("x-ratelimit-reset", "3".to_owned())
            ]
        );
    }

    #[test]
    fn sub_second_windows_round_up() {
        let mut r = report("p", 1, Some(1));
        r.rate.interval_ns = 250_000_000;
        let h = rate_limit_headers(HeaderMode::Draft10, &r);
        assert_eq!(h[0].1, "\"p\";q=100;w=1");
        assert_eq!(h[1].1, "\"p\";r=1;t=1");
    }

    #[test]
    fn the_policy_with_fewest_requests_left_is_reported() {
        let reports = [
            report("a", 10, Some(5 * SEC)),
            report("b", 3, Some(50 * SEC)),
            report("c", 3, Some(55 * SEC)),
            report("d", 7, Some(SEC)),
        ];
        assert_eq!(closest_to_exhaustion(&reports).map(|r| r.policy), Some("c"));
        assert_eq!(closest_to_exhaustion(&[]), None);
    }

    #[test]
    fn retry_after_is_whole_seconds_at_least_one() {
        assert_eq!(retry_after(&report("p", 0, Some(60 * SEC))), Some(1));
        let mut r = report("p", 0, Some(60 * SEC));
        r.snapshot.ns_until_token = Some(2 * SEC + 1);
        assert_eq!(retry_after(&r), Some(3));
        r.snapshot.ns_until_token = None;
        assert_eq!(retry_after(&r), None);
    }

    #[test]
    fn problem_bodies_are_json() {
        let body = problem(429, "Too Many Requests", "a \"quoted\" detail");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["status"], 429);
        assert_eq!(v["detail"], "a \"quoted\" detail");
    }
}
