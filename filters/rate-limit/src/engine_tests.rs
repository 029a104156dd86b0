//! The engine against the in-memory store with Envoy's shared-data semantics.

use super::*;
use crate::config::load;
use crate::keys::tests::FakeRequest;
use crate::store::{MemoryStore, SetError};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

const SEC: u64 = 1_000_000_000;
/// A realistic wall-clock start (2026), so nothing depends on time starting at 0.
const T0: u64 = 1_795_000_000 * SEC;

#[derive(Default)]
struct Counts(Mutex<HashMap<String, i64>>);

impl Metrics for Counts {
    fn count(&self, event: Event) {
        let (name, by) = match event {
            Event::Allowed(i) => (format!("allowed.{i}"), 1),
            Event::Limited(i) => (format!("limited.{i}"), 1),
            Event::DryRunLimited(i) => (format!("dry_run_limited.{i}"), 1),
            Event::MissingKey(i) => (format!("missing_key.{i}"), 1),
            Event::Failure(i) => (format!("failures.{i}"), 1),
            Event::CasRetries(n) => ("cas_retries".to_owned(), i64::from(n)),
            Event::Evictions(n) => ("evictions".to_owned(), i64::from(n)),
        };
        *self.0.lock().unwrap().entry(name).or_default() += by;
    }
}

impl Counts {
    fn get(&self, name: &str) -> i64 {
        self.0.lock().unwrap().get(name).copied().unwrap_or(0)
    }
}

const SEED: &str = r#"{"policies":[{"name":"per-client","match":{"path_prefix":"/api/"},
    "key":[{"header":"x-auth-client-id"}],"on_missing_key":{"fallback":["client_ip"]},
    "limit":100,"interval":"60s"}]}"#;

fn client(id: &str) -> FakeRequest {
    FakeRequest::new("GET", "/api/notes").with("x-auth-client-id", id)
}

fn header<'a>(headers: &'a [Header], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.as_str())
}

/// Status and headers of a decision (200 for "let through").
fn outcome(v: &Verdict) -> (u16, Vec<Header>) {
    match &v.decision {
        Decision::Allow { response_headers } => (
            200,
            response_headers
                .as_ref()
                .map_or_else(Vec::new, ResponseHeaders::to_vec),
        ),
        Decision::Deny {
            status, headers, ..
        } => (*status, headers.clone()),
    }
}

#[test]
fn the_seed_scenario_150_requests_100_pass_then_429_with_retry_after() {
    let config = load(SEED.as_bytes()).unwrap();
    let store = MemoryStore::new();
    let metrics = Counts::default();
    let mut passed = 0;
    for i in 0..150u64 {
        // One request every 10 ms: 1.5 s in all, during which 2 tokens are earned back
        // (one per 600 ms), so 102 pass, exactly as the arithmetic says.
        let now = T0 + i * 10_000_000;
        let v = decide(&config, &store, &client("123"), now, &metrics);
        let (status, headers) = outcome(&v);
        let remaining: u64 = header(&headers, "x-ratelimit-remaining")
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(header(&headers, "x-ratelimit-limit"), Some("100"));
        assert_eq!(
            header(&headers, "ratelimit-policy"),
            Some("\"per-client\";q=100;w=60")
        );
        let draft = header(&headers, "ratelimit").unwrap();
        let reset = header(&headers, "x-ratelimit-reset").unwrap();
        assert_eq!(draft, format!("\"per-client\";r={remaining};t={reset}"));
        if status == 200 {
            passed += 1;
            assert!(header(&headers, "retry-after").is_none());
        } else {
            assert_eq!(status, 429, "request {i}");
            assert_eq!(remaining, 0);
            let retry: u64 = header(&headers, "retry-after").unwrap().parse().unwrap();
            assert!(
                (1..=1).contains(&retry),
                "a token every 0.6 s: retry in 1 s, got {retry}"
            );
            assert_eq!(
                header(&headers, "content-type"),
                Some("application/problem+json")
            );
            let Decision::Deny { body, .. } = &v.decision else {
                unreachable!()
            };
            let body: serde_json::Value = serde_json::from_str(body).unwrap();
            assert_eq!(body["status"], 429);
            assert!(body["detail"].as_str().unwrap().contains("per-client"));
        }
        if i < 100 {
            assert_eq!(status, 200, "request {i}");
            // Counts down by one per request, plus the tokens earned so far.
            let earned = (i * 10_000_000) / 600_000_000;
            assert_eq!(remaining, 99 - i + earned, "request {i}");
        }
    }
    assert_eq!(passed, 102);
    assert_eq!(metrics.get("allowed.0"), 102);
    assert_eq!(metrics.get("limited.0"), 48);
}

#[test]
fn two_clients_are_limited_independently() {
    let config = load(SEED.as_bytes()).unwrap();
    let store = MemoryStore::new();
    let m = Counts::default();
    for _ in 0..100 {
        assert_eq!(
            outcome(&decide(&config, &store, &client("123"), T0, &m)).0,
            200
        );
    }
    assert_eq!(
        outcome(&decide(&config, &store, &client("123"), T0, &m)).0,
        429
    );
    for _ in 0..100 {
        assert_eq!(
            outcome(&decide(&config, &store, &client("456"), T0, &m)).0,
            200
        );
    }
    assert_eq!(
        outcome(&decide(&config, &store, &client("456"), T0, &m)).0,
        429
    );
}

#[test]
fn tokens_come_back_with_time() {
    let config = load(SEED.as_bytes()).unwrap();
    let store = MemoryStore::new();
    let m = Counts::default();
    for _ in 0..100 {
        decide(&config, &store, &client("123"), T0, &m);
    }
    let at = |ns| outcome(&decide(&config, &store, &client("123"), T0 + ns, &m)).0;
    assert_eq!(at(599_999_999), 429);
    assert_eq!(at(600_000_000), 200);
    assert_eq!(at(600_000_000), 429);
    // A whole interval later the bucket is full again: 100 more, not more.
    let passed = (0..150).filter(|_| at(61 * SEC) == 200).count();
    assert_eq!(passed, 100);
}

#[test]
fn requests_outside_every_policy_get_no_headers() {
    let config = load(SEED.as_bytes()).unwrap();
    let store = MemoryStore::new();
    let v = decide(
        &config,
        &store,
        &FakeRequest::new("GET", "/me"),
        T0,
        &Counts::default(),
    );
    assert_eq!(
        v.decision,
        Decision::Allow {
            response_headers: None
        }
    );
    assert_eq!(store.footprint().0, 0, "nothing stored");
}

#[test]
fn missing_key_falls_back_to_the_client_ip_in_its_own_bucket() {
    let config = load(SEED.as_bytes()).unwrap();
    let store = MemoryStore::new();
    let m = Counts::default();
    let anonymous = FakeRequest::new("GET", "/api/notes"); // source 10.0.0.1
    for _ in 0..100 {
        assert_eq!(outcome(&decide(&config, &store, &anonymous, T0, &m)).0, 200);
    }
    assert_eq!(outcome(&decide(&config, &store, &anonymous, T0, &m)).0, 429);
    // A client whose id is the same text as the IP has its own bucket.
    assert_eq!(
        outcome(&decide(&config, &store, &client("10.0.0.1"), T0, &m)).0,
        200
    );
    // Another address: another bucket.
    let other = FakeRequest {
        source: Some("10.0.0.2:1".into()),
        ..anonymous.clone()
    };
    assert_eq!(outcome(&decide(&config, &store, &other, T0, &m)).0, 200);
    // No address either: refused.
    let nothing = FakeRequest {
        source: None,
        ..anonymous
    };
    let v = decide(&config, &store, &nothing, T0, &m);
    assert_eq!(outcome(&v).0, 403);
    assert_eq!(m.get("missing_key.0"), 1);
}

#[test]
fn missing_key_skip_and_deny() {
    let cfg = |mode: &str| {
        load(
            format!(
                r#"{{"policies":[{{"name":"p","key":[{{"header":"x-user"}}],
                "on_missing_key":"{mode}","limit":1,"interval":"1h"}}]}}"#
            )
            .as_bytes(),
        )
        .unwrap()
    };
    let store = MemoryStore::new();
    let m = Counts::default();
    let r = FakeRequest::new("GET", "/x");
    let skip = cfg("skip");
    for _ in 0..5 {
        let v = decide(&skip, &store, &r, T0, &m);
        assert_eq!(
            v.decision,
            Decision::Allow {
                response_headers: None
            }
        );
    }
    let v = decide(&cfg("deny"), &store, &r, T0, &m);
    let Decision::Deny { status, body, .. } = &v.decision else {
        panic!("{v:?}")
    };
    assert_eq!(*status, 403);
    assert!(body.contains("no value for the key"));
    assert!(matches!(v.log, Some((LogLevel::Info, _))));
}

fn two_policies(extra: &str) -> Config {
    load(
        format!(
            r#"{{"policies":[
            {{"name":"global","key":[{{"constant":"all"}}],"limit":1000,"interval":"1h"}},
            {{"name":"per-user","key":[{{"header":"x-user"}}],"limit":2,"interval":"1h"{extra}}}]}}"#
        )
        .as_bytes(),
    )
    .unwrap()
}

fn global_remaining(config: &Config, store: &MemoryStore) -> u64 {
    let p = &config.policies[0];
    let slot = keys::locate(&config.table, p, KeySource::Primary, &["all".to_owned()]);
    limiter::peek(store, &slot, &p.rate, T0).unwrap().remaining
}

#[test]
fn every_policy_must_have_a_token_and_a_denied_request_takes_none() {
    let config = two_policies("");
    let store = MemoryStore::new();
    let m = Counts::default();
    let alice = FakeRequest::new("GET", "/").with("x-user", "alice");
    let bob = FakeRequest::new("GET", "/").with("x-user", "bob");
    assert_eq!(outcome(&decide(&config, &store, &alice, T0, &m)).0, 200);
    assert_eq!(outcome(&decide(&config, &store, &alice, T0, &m)).0, 200);
    for _ in 0..10 {
        let v = decide(&config, &store, &alice, T0, &m);
        let (status, headers) = outcome(&v);
        assert_eq!(status, 429);
        // The 429 describes the policy that denied.
        assert_eq!(
            header(&headers, "ratelimit-policy"),
            Some("\"per-user\";q=2;w=3600")
        );
    }
    assert_eq!(
        global_remaining(&config, &store),
        998,
        "denied requests took no global token"
    );
    let v = decide(&config, &store, &bob, T0, &m);
    // The headers describe the policy closest to exhaustion: bob has 1 left, global 997.
    assert_eq!(header(&outcome(&v).1, "x-ratelimit-remaining"), Some("1"));
    assert_eq!(header(&outcome(&v).1, "x-ratelimit-limit"), Some("2"));
    assert_eq!(m.get("allowed.0"), 3);
    assert_eq!(m.get("limited.1"), 10);
}

/// Another worker's actions, run in the middle of ours.
type Rival<'a> = Box<dyn FnOnce(&MemoryStore) + 'a>;

/// A store that runs `hook` before its `n`-th write.
struct HookStore<'a> {
    inner: &'a MemoryStore,
    writes: Cell<u32>,
    at: u32,
    hook: RefCell<Option<Rival<'a>>>,
}

impl SharedStore for HookStore<'_> {
    fn get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, String> {
        self.inner.get(key)
    }
    fn set(&self, key: &str, value: &[u8], cas: u32) -> Result<(), SetError> {
        self.writes.set(self.writes.get() + 1);
        if self.writes.get() == self.at
            && let Some(hook) = self.hook.borrow_mut().take()
        {
            hook(self.inner);
        }
        self.inner.set(key, value, cas)
    }
}

#[test]
fn a_bucket_emptied_between_the_look_and_the_take_gives_back_earlier_tokens() {
    let config = two_policies("");
    let store = MemoryStore::new();
    let m = Counts::default();
    let alice = FakeRequest::new("GET", "/").with("x-user", "alice");
    // Both buckets have tokens when the engine looks; another worker then spends alice's last
    // two tokens just before the engine writes the global bucket.
    let racing = HookStore {
        inner: &store,
        writes: Cell::new(0),
        at: 1,
        hook: RefCell::new(Some(Box::new(|s: &MemoryStore| {
            for _ in 0..2 {
                let v = decide(
                    &config,
                    s,
                    &FakeRequest::new("GET", "/").with("x-user", "alice"),
                    T0,
                    &Counts::default(),
                );
                assert_eq!(outcome(&v).0, 200);
            }
        }))),
    };
    let v = decide(&config, &racing, &alice, T0, &m);
    assert_eq!(outcome(&v).0, 429);
    // The rival's two requests took two global tokens; ours was given back.
    assert_eq!(global_remaining(&config, &store), 998);
}

#[test]
fn dry_run_counts_and_reports_but_never_denies() {
    let config = two_policies(r#","dry_run":true"#);
    let store = MemoryStore::new();
    let m = Counts::default();
    let alice = FakeRequest::new("GET", "/").with("x-user", "alice");
    for i in 0..5 {
        let v = decide(&config, &store, &alice, T0, &m);
        let (status, headers) = outcome(&v);
        assert_eq!(status, 200);
        let expected = if i < 2 { 1 - i } else { 0 };
        assert_eq!(
            header(&headers, "x-ratelimit-remaining"),
            Some(expected.to_string().as_str())
        );
        if i >= 2 {
            assert!(matches!(&v.log, Some((LogLevel::Info, l)) if l.contains("dry run")));
        }
    }
    assert_eq!(m.get("allowed.1"), 2);
    assert_eq!(m.get("dry_run_limited.1"), 3);
    assert_eq!(
        global_remaining(&config, &store),
        995,
        "the enforcing policy counted all five"
    );
}

/// A store whose writes always lose the race.
struct AlwaysContended(MemoryStore);

impl SharedStore for AlwaysContended {
    fn get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, String> {
        self.0.get(key)
    }
    fn set(&self, _: &str, _: &[u8], _: u32) -> Result<(), SetError> {
        Err(SetError::CasMismatch)
    }
}

#[test]
fn exhausted_retries_fail_closed_by_default() {
    let config = load(SEED.as_bytes()).unwrap();
    let m = Counts::default();
    let v = decide(
        &config,
        &AlwaysContended(MemoryStore::new()),
        &client("123"),
        T0,
        &m,
    );
    let Decision::Deny {
        status, headers, ..
    } = &v.decision
    else {
        panic!("{v:?}")
    };
    assert_eq!(*status, 503);
    assert_eq!(header(headers, "retry-after"), Some("1"));
    assert!(matches!(&v.log, Some((LogLevel::Warn, l)) if l.contains("retries exhausted")));
    assert_eq!(m.get("failures.0"), 1);
    assert_eq!(m.get("cas_retries"), i64::from(config.max_cas_retries));
}

#[test]
fn failure_mode_allow_lets_requests_through_without_headers() {
    let config = load(
        SEED.replace("}]}", r#"}],"failure_mode":"allow"}"#)
            .as_bytes(),
    )
    .unwrap();
    let m = Counts::default();
    let v = decide(
        &config,
        &AlwaysContended(MemoryStore::new()),
        &client("123"),
        T0,
        &m,
    );
    assert_eq!(
        v.decision,
        Decision::Allow {
            response_headers: None
        }
    );
    assert!(matches!(&v.log, Some((LogLevel::Warn, l)) if l.contains("failure_mode allow")));
    assert_eq!(m.get("failures.0"), 1);
}

#[test]
fn header_modes() {
    let with = |mode: &str| {
        load(
            SEED.replace("}]}", &format!(r#"}}],"headers":"{mode}"}}"#))
                .as_bytes(),
        )
        .unwrap()
    };
    let store = MemoryStore::new();
    let m = Counts::default();
    let names = |c: &Config| -> Vec<&str> {
        outcome(&decide(c, &store, &client("h"), T0, &m))
            .1
            .iter()
            .map(|(k, _)| *k)
            .collect()
    };
    assert!(names(&with("none")).is_empty());
    assert_eq!(names(&with("draft10")), ["ratelimit-policy", "ratelimit"]);
    assert_eq!(
        names(&with("x_ratelimit")),
        [
            "x-ratelimit-limit",
            "x-ratelimit-remaining",
            "x-ratelimit-reset"
        ]
    );
    // On a 429 with no rate-limit headers, Retry-After and the problem body remain.
    let none = with("none");
    for _ in 0..200 {
        decide(&none, &store, &client("h2"), T0, &m);
    }
    let v = decide(&none, &store, &client("h2"), T0, &m);
    let (status, headers) = outcome(&v);
    assert_eq!(status, 429);
    let names: Vec<&str> = headers.iter().map(|(k, _)| *k).collect();
    assert_eq!(names, ["retry-after", "content-type"]);
}

#[test]
fn limit_zero_refuses_everything_without_a_retry_after() {
    let config = load(
        br#"{"policies":[{"name":"blocked","match":{"methods":["DELETE"]},"key":["method"],
        "limit":0,"interval":"1s"}]}"#,
    )
    .unwrap();
    let store = MemoryStore::new();
    let m = Counts::default();
    let v = decide(&config, &store, &FakeRequest::new("DELETE", "/x"), T0, &m);
    let (status, headers) = outcome(&v);
    assert_eq!(status, 429);
    assert_eq!(header(&headers, "retry-after"), None);
    assert_eq!(header(&headers, "x-ratelimit-remaining"), Some("0"));
    assert_eq!(
        outcome(&decide(
            &config,
            &store,
            &FakeRequest::new("GET", "/x"),
            T0,
            &m
        ))
        .0,
        200
    );
}

/// Envoy's workers: one VM (with its own parsed configuration) per thread, one shared store.
#[test]
fn eight_workers_on_eight_threads_let_exactly_the_limit_through() {
    for round in 0..5 {
        let store = Arc::new(MemoryStore::new());
        let metrics = Arc::new(Counts::default());
        let workers: Vec<_> = (0..8)
            .map(|_| {
                let store = Arc::clone(&store);
                let metrics = Arc::clone(&metrics);
                std::thread::spawn(move || {
                    let config = load(SEED.as_bytes()).unwrap();
                    (0..25)
                        .filter(|_| {
                            let v = decide(&config, &*store, &client("123"), T0, &*metrics);
                            outcome(&v).0 == 200
                        })
                        .count()
                })
            })
            .collect();
        let passed: usize = workers.into_iter().map(|w| w.join().unwrap()).sum();
        assert_eq!(passed, 100, "round {round}: 200 requests, limit 100");
        assert_eq!(metrics.get("allowed.0"), 100);
        assert_eq!(metrics.get("limited.0"), 100);
        assert_eq!(metrics.get("failures.0"), 0);
    }
}

/// A million distinct clients (say, a scan from many addresses) pass through a small table while
/// a few real clients keep using the API: shared data stays within its bound and the real
/// clients' limits stay exact.
#[test]
fn a_million_distinct_keys_stay_within_the_bound_and_active_limits_stay_exact() {
    let config = load(
        br#"{"table":{"slots":4096},"policies":[{"name":"per-client",
        "key":[{"header":"x-auth-client-id"}],"limit":100,"interval":"1h"}]}"#,
    )
    .unwrap();
    let store = MemoryStore::new();
    let m = Counts::default();
    let active = ["alice", "bob", "carol", "dave", "erin"];
    let mut passed = HashMap::new();
    let mut now = T0;
    for i in 0..1_000_000u32 {
        now += 1_000; // a microsecond per request: 1 s in all, far less than one token per client
        let v = decide(&config, &store, &client(&format!("scanner-{i}")), now, &m);
        assert_eq!(outcome(&v).0, 200, "each scanner sends one request");
        if i % 5_000 == 0 {
            for name in active {
                if outcome(&decide(&config, &store, &client(name), now, &m)).0 == 200 {
                    *passed.entry(name).or_insert(0) += 1;
                }
            }
        }
    }
    for name in active {
        assert_eq!(
            passed.get(name),
            Some(&100),
            "{name}: 200 requests, limit 100"
        );
    }
    let (keys, bytes) = store.footprint();
    let groups = 4096 / crate::table::WAYS;
    assert!(
        keys <= groups,
        "{keys} shared-data keys for {groups} groups"
    );
    let longest_key = "wasmgate.rate-limit.default.511".len();
    assert!(
        bytes <= groups * (crate::table::GROUP_LEN + longest_key),
        "{bytes} bytes"
    );
    assert!(
        m.get("evictions") > 900_000,
        "the scan overflowed the table and was evicted"
    );
}

/// `decide_one` against the general path, on generated single-policy configurations and request
/// sequences: the same verdicts, logs and counts, request after request.
mod one_policy {
    use super::*;
    use proptest::collection::vec;
    use proptest::prelude::*;
    use proptest::sample::select;

    fn policy() -> impl Strategy<Value = String> {
        let matcher = select(vec![
            r#"{"path_prefix":"/api/"}"#,
            r#"{"methods":["POST"]}"#,
            "{}",
        ]);
        let on_missing = select(vec![
            r#""skip""#,
            r#""deny""#,
            r#"{"fallback":["client_ip"]}"#,
        ]);
        let limit = select(vec![0u64, 1, 3]);
        let dry_run = any::<bool>();
        let headers = select(vec!["none", "draft10", "x_ratelimit", "both"]);
        let failure_mode = select(vec!["allow", "deny"]);
        (matcher, on_missing, limit, dry_run, headers, failure_mode).prop_map(
            |(matcher, on_missing, limit, dry_run, headers, failure_mode)| {
                format!(
                    r#"{{"policies":[{{"name":"p","match":{matcher},
                    "key":[{{"header":"x-auth-client-id"}}],"on_missing_key":{on_missing},
                    "limit":{limit},"interval":"2s","dry_run":{dry_run}}}],
                    "headers":"{headers}","failure_mode":"{failure_mode}"}}"#
                )
            },
        )
    }

    /// A request: method, path, client id (none: the header is missing), ms since the last one.
    fn request() -> impl Strategy<Value = (&'static str, &'static str, Option<&'static str>, u64)> {
        (
            select(vec!["GET", "POST"]),
            select(vec!["/api/notes", "/health"]),
            select(vec![Some("a"), Some("b"), None]),
            select(vec![0u64, 300, 2_500]),
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(500))]
        #[test]
        fn one_policy_is_decided_as_the_general_path_decides_it(
            config in policy(),
            requests in vec(request(), 1..12),
            contended in any::<bool>(),
        ) {
            let config = load(config.as_bytes()).unwrap();
            let (one_store, general_store) = (MemoryStore::new(), MemoryStore::new());
            let (one_counts, general_counts) = (Counts::default(), Counts::default());
            let mut now = T0;
            for (method, path, id, after_ms) in requests {
                now += after_ms * 1_000_000;
                let mut request = FakeRequest::new(method, path);
                if let Some(id) = id {
                    request = request.with("x-auth-client-id", id);
                }
                let (one, general) = if contended {
                    (
                        decide(&config, &AlwaysContended(MemoryStore::new()), &request, now, &one_counts),
                        decide_generally(&config, &AlwaysContended(MemoryStore::new()), &request, now, &general_counts),
                    )
                } else {
                    (
                        decide(&config, &one_store, &request, now, &one_counts),
                        decide_generally(&config, &general_store, &request, now, &general_counts),
                    )
                };
                prop_assert_eq!(one, general);
            }
            prop_assert_eq!(&*one_counts.0.lock().unwrap(), &*general_counts.0.lock().unwrap());
        }
    }
}

/// A policy on a host applies by `:authority` (without its port), or by `host` where the request
/// has no `:authority`; configurations without one never read the host at all.
#[test]
fn a_policy_on_a_host_reads_the_authority_or_the_host_header() {
    let config = load(
        br#"{"policies":[{"name":"admin","match":{"host":"admin.example.com"},
        "key":[{"constant":"all"}],"limit":1,"interval":"1h"}]}"#,
    )
    .unwrap();
    assert!(config.matchers_read.host && !config.matchers_read.method);
    assert_eq!(
        load(SEED.as_bytes()).unwrap().matchers_read,
        wasmgate_filter_common::Reads::default()
    );
    let store = MemoryStore::new();
    let metrics = Counts::default();
    let request = |authority: Option<&str>, host: Option<&str>| {
        let mut r = FakeRequest::new("GET", "/");
        if let Some(a) = authority {
            r = r.with(":authority", a);
        }
        if let Some(h) = host {
            r = r.with("host", h);
        }
        r
    };
    let status = |r: &FakeRequest| outcome(&decide(&config, &store, r, T0, &metrics)).0;

    let elsewhere = request(Some("api.example.com"), None);
    assert_eq!(status(&elsewhere), 200);
    assert_eq!(
        metrics.get("allowed.0"),
        0,
        "another host: the policy does not apply"
    );
    assert_eq!(status(&request(Some("Admin.Example.com:8443"), None)), 200);
    assert_eq!(status(&request(Some("admin.example.com"), None)), 429);
    assert_eq!(status(&request(None, Some("admin.example.com"))), 429);
    assert_eq!(status(&elsewhere), 200);
    assert_eq!(metrics.get("allowed.0"), 1);
}

/// A policy on methods applies by `:method`, which configurations without one never read; a key
/// on the method reads it whatever the matchers.
#[test]
fn a_policy_on_methods_reads_the_method_and_so_does_a_key_on_it() {
    let config = load(
        br#"{"policies":[{"name":"writes","match":{"methods":["POST","DELETE"]},
        "key":[{"constant":"all"}],"limit":1,"interval":"1h"}]}"#,
    )
    .unwrap();
    assert!(config.matchers_read.method && !config.matchers_read.host);
    let store = MemoryStore::new();
    let metrics = Counts::default();
    let status = |method: &str| {
        let r = FakeRequest::new(method, "/api/notes");
        outcome(&decide(&config, &store, &r, T0, &metrics)).0
    };
    assert_eq!(status("GET"), 200);
    assert_eq!(status("POST"), 200);
    assert_eq!(status("DELETE"), 429);
    assert_eq!(status("GET"), 200);
    assert_eq!(metrics.get("allowed.0"), 1);

    let by_method = load(
        br#"{"policies":[{"name":"per-method","key":["method"],"limit":1,
        "interval":"1h"}]}"#,
    );
    let by_method = by_method.unwrap();
    assert_eq!(
        by_method.matchers_read,
        wasmgate_filter_common::Reads::default()
    );
    let store = MemoryStore::new();
    let status = |method: &str| {
        let r = FakeRequest::new(method, "/");
        outcome(&decide(&by_method, &store, &r, T0, &metrics)).0
    };
    assert_eq!(status("GET"), 200);
    assert_eq!(status("POST"), 200, "another method, another bucket");
    assert_eq!(status("GET"), 429);
}
