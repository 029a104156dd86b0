//! The compiled filter (`rate_limit.wasm`, profile `wasm`) in the proxy-wasm harness host:
//! configuration refusals, the seed scenario under the test clock, response headers, several VMs
//! on several OS threads contending for one key, and a million distinct keys.

// The harness runs on the host only.
#![cfg(not(target_arch = "wasm32"))]
// Helpers of these tests fail loudly, like the tests themselves (clippy only exempts #[test] fns).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::OnceLock;
use std::time::Duration;

use wasmgate_harness::{Action, CasRules, Error, FilterModule, Host, LogLevel, filter_wasm};

fn module() -> &'static FilterModule {
    static MODULE: OnceLock<FilterModule> = OnceLock::new();
    MODULE.get_or_init(|| FilterModule::from_file(filter_wasm("rate-limit").unwrap()).unwrap())
}

/// The stack's configuration, as shipped.
fn stack_config() -> String {
    std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../envoy/filters/rate-limit.json"
    ))
    .unwrap()
}

fn long_interval_config(slots: u32) -> String {
    format!(
        r#"{{"table":{{"slots":{slots}}},"policies":[{{"name":"per-client",
        "key":[{{"header":"x-auth-client-id"}}],"limit":100,"interval":"1h"}}]}}"#
    )
}

/// What happened to one request: the status and the headers the client would see.
struct Answer {
    status: u32,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    fn number(&self, name: &str) -> u64 {
        self.header(name).unwrap().parse().unwrap()
    }
}

/// Sends one request through the VM; if the filter lets it through, an upstream answers 200.
fn send(vm: &mut wasmgate_harness::Vm, path: &str, client: Option<&str>) -> Answer {
    send_answered_with(vm, path, client, &[])
}

/// `send`, with `upstream_headers` in the upstream's 200 besides its status and content type.
fn send_answered_with(
    vm: &mut wasmgate_harness::Vm,
    path: &str,
    client: Option<&str>,
    upstream_headers: &[(&str, &str)],
) -> Answer {
    let mut stream = vm.http_stream().unwrap();
    let mut headers = vec![
        (":method", "GET"),
        (":scheme", "https"),
        (":authority", "localhost:8443"),
        (":path", path),
    ];
    if let Some(id) = client {
        headers.push(("x-auth-client-id", id));
    }
    let action = stream.request_headers(&headers, true).unwrap();
    let answer = match action {
        Action::Continue => {
            let mut response = vec![(":status", "200"), ("content-type", "text/plain")];
            response.extend_from_slice(upstream_headers);
            let action = stream.response_headers(&response, true).unwrap();
            assert_eq!(action, Action::Continue);
            let response = stream.response();
            Answer {
                status: 200,
                headers: response.headers.0.clone(),
                body: String::new(),
            }
        }
        _ => {
            let local = stream.local_response().expect("paused without answering");
            Answer {
                status: local.status,
                headers: local.headers.0.clone(),
                body: local.body_text(),
            }
        }
    };
    stream.finish().unwrap();
    answer
}

#[test]
fn a_bad_configuration_is_refused_and_the_log_names_the_field() {
    let host = Host::new(module());
    let bad = r#"{"policies":[{"name":"p","key":["path"],"limit":10,"interval":"ten seconds"}]}"#;
    match host.plugin(bad) {
        Err(Error::ConfigRefused(logs)) => {
            let line = logs
                .iter()
                .map(|(_, l)| l.as_str())
                .find(|l| l.contains("invalid configuration"))
                .unwrap();
            assert!(
                line.starts_with(
                    "rate-limit: invalid configuration: field `policies[0].interval`: "
                ),
                "{line}"
            );
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn the_stack_configuration_loads() {
    let host = Host::new(module());
    host.plugin(&stack_config()).unwrap();
    assert!(
        host.logs_at(LogLevel::Info)
            .iter()
            .any(|l| l.contains("configured 1 policies"))
    );
}

#[test]
fn seed_scenario_under_the_test_clock() {
    let host = Host::new(module());
    let mut vm = host.plugin(&stack_config()).unwrap();
    let mut statuses = Vec::new();
    for i in 0..150u64 {
        let a = send(&mut vm, "/api/notes", Some("123"));
        let remaining = a.number("x-ratelimit-remaining");
        assert_eq!(a.header("x-ratelimit-limit"), Some("100"));
        assert_eq!(
            a.header("ratelimit-policy"),
            Some("\"per-client\";q=100;w=60")
        );
        assert_eq!(
            a.header("ratelimit"),
            Some(
                format!(
                    "\"per-client\";r={remaining};t={}",
                    a.number("x-ratelimit-reset")
                )
                .as_str()
            )
        );
        if i < 100 {
            assert_eq!((a.status, remaining), (200, 99 - i), "request {i}");
        } else {
            assert_eq!((a.status, remaining), (429, 0), "request {i}");
            assert_eq!(a.header("retry-after"), Some("1"));
            assert_eq!(a.header("content-type"), Some("application/problem+json"));
            assert!(a.body.contains("\"status\":429"));
        }
        statuses.push(a.status);
    }
    // The counts reach the host on the root context's tick.
    assert_eq!(vm.tick_period(), Some(Duration::from_secs(1)));
    vm.tick().unwrap();
    assert_eq!(
        host.counter("wasmcustom.rate-limit.policy.per-client.allowed")
            .or(host.counter("rate-limit.policy.per-client.allowed")),
        Some(100)
    );
    assert_eq!(
        host.counter("rate-limit.policy.per-client.limited"),
        Some(50)
    );

    // Refill under the test clock: one token every 600 ms.
    host.clock().advance(Duration::from_millis(599));
    assert_eq!(send(&mut vm, "/api/notes", Some("123")).status, 429);
    host.clock().advance(Duration::from_millis(1));
    assert_eq!(send(&mut vm, "/api/notes", Some("123")).status, 200);
    assert_eq!(send(&mut vm, "/api/notes", Some("123")).status, 429);
    // A full interval later: the bucket is full again, and no fuller.
    host.clock().advance(Duration::from_secs(60));
    let passed = (0..120)
        .filter(|_| send(&mut vm, "/api/notes", Some("123")).status == 200)
        .count();
    assert_eq!(passed, 100);

    // Another client has its own bucket; paths outside /api/ are not limited.
    assert_eq!(
        send(&mut vm, "/api/notes", Some("456")).number("x-ratelimit-remaining"),
        99
    );
    let me = send(&mut vm, "/me", Some("123"));
    assert_eq!(me.status, 200);
    assert_eq!(me.header("x-ratelimit-remaining"), None);
}

/// An upstream with rate limits of its own: by default the client sees only the gateway's
/// numbers; with `append_if_exists_or_add` both, the upstream's first, as from Envoy's
/// `local_ratelimit`.
#[test]
fn the_upstream_s_rate_limit_headers_are_replaced_or_kept_before_ours() {
    let upstream = [
        ("x-ratelimit-limit", "5000"),
        ("x-ratelimit-remaining", "4999"),
        ("ratelimit", "\"upstream\";r=4999;t=3600"),
    ];
    let values = |a: &Answer, name: &str| -> Vec<String> {
        a.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
            .collect()
    };
    let host = Host::new(module());
    let mut vm = host.plugin(&stack_config()).unwrap();
    let replaced = send_answered_with(&mut vm, "/api/notes", Some("123"), &upstream);
    assert_eq!(values(&replaced, "x-ratelimit-limit"), ["100"]);
    assert_eq!(values(&replaced, "x-ratelimit-remaining"), ["99"]);
    assert_eq!(values(&replaced, "ratelimit"), ["\"per-client\";r=99;t=1"]);
    assert_eq!(values(&replaced, "x-ratelimit-reset"), ["1"]);

    let appending =
        stack_config().replacen('{', r#"{"append_action": "append_if_exists_or_add","#, 1);
    let host = Host::new(module());
    let mut vm = host.plugin(&appending).unwrap();
    let both = send_answered_with(&mut vm, "/api/notes", Some("123"), &upstream);
    assert_eq!(values(&both, "x-ratelimit-limit"), ["5000", "100"]);
    assert_eq!(values(&both, "x-ratelimit-remaining"), ["4999", "99"]);
    assert_eq!(
        values(&both, "ratelimit"),
        ["\"upstream\";r=4999;t=3600", "\"per-client\";r=99;t=1"]
    );
    assert_eq!(values(&both, "x-ratelimit-reset"), ["1"]);
    // A local reply has no upstream headers to meet: a refusal is the same either way.
    for _ in 0..99 {
        send(&mut vm, "/api/notes", Some("123"));
    }
    let refused = send_answered_with(&mut vm, "/api/notes", Some("123"), &upstream);
    assert_eq!(refused.status, 429);
    assert_eq!(values(&refused, "x-ratelimit-limit"), ["100"]);
}

#[test]
fn requests_without_a_client_id_fall_back_to_the_source_address() {
    let host = Host::new(module());
    host.set_property("source.address", "192.0.2.7:51000");
    let mut vm = host.plugin(&stack_config()).unwrap();
    for _ in 0..100 {
        assert_eq!(send(&mut vm, "/api/notes", None).status, 200);
    }
    assert_eq!(send(&mut vm, "/api/notes", None).status, 429);
    // The client id "192.0.2.7" is a different bucket from the address 192.0.2.7.
    assert_eq!(send(&mut vm, "/api/notes", Some("192.0.2.7")).status, 200);
}

/// Envoy at --concurrency 4 with a VM per worker, two plugins per thread: every VM reads and
/// writes one shared store, and reads yield the thread so the CAS loops really interleave.
#[test]
fn eight_vms_on_four_threads_let_exactly_the_limit_through() {
    exactly_the_limit_through_eight_vms(CasRules::Envoy);
}

/// The same under Kong's ngx_wasm_module's shared data, which creates a missing key only with
/// CAS 0 (our filters create with a non-zero one, which Envoy needs to stay race-free).
#[test]
fn eight_vms_under_ngx_wasm_module_cas_rules_let_exactly_the_limit_through() {
    exactly_the_limit_through_eight_vms(CasRules::NgxWasm);
}

fn exactly_the_limit_through_eight_vms(rules: CasRules) {
    let host = Host::new(module());
    host.set_cas_rules(rules);
    host.set_contention(true);
    let config = long_interval_config(65_536);
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let host = host.clone();
            let config = config.clone();
            std::thread::spawn(move || {
                let mut vms = [host.plugin(&config).unwrap(), host.plugin(&config).unwrap()];
                let mut statuses = Vec::new();
                for i in 0..50 {
                    let vm = &mut vms[i % 2];
                    statuses.push(send(vm, "/api/notes", Some("123")).status);
                }
                // No tick came: each VM hands its counts over when its plugin goes away.
                for vm in &mut vms {
                    assert!(vm.shutdown().unwrap());
                }
                statuses
            })
        })
        .collect();
    let statuses: Vec<u32> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    let count = |s: u32| statuses.iter().filter(|x| **x == s).count();
    assert_eq!(
        (count(200), count(429)),
        (100, 100),
        "200 requests, limit 100; failures: {:?}, warnings: {:?}",
        host.counter("rate-limit.policy.per-client.failures"),
        host.logs_at(LogLevel::Warn)
    );
    assert_eq!(
        host.counter("rate-limit.policy.per-client.allowed"),
        Some(100)
    );
    assert_eq!(
        host.counter("rate-limit.policy.per-client.limited"),
        Some(100)
    );
    assert!(
        host.shared_data().cas_mismatches() > 0,
        "the VMs never raced: this run proves nothing"
    );
    let retries = host.counter("rate-limit.cas_retries").unwrap_or(0);
    match rules {
        CasRules::Envoy => assert_eq!(retries, host.shared_data().cas_mismatches()),
        // Refused creates are redone with CAS 0 at the host boundary, not retried by the limiter.
        CasRules::NgxWasm => assert!(retries < host.shared_data().cas_mismatches()),
    }
}

/// A million distinct clients through a table of 4,096 slots while five real clients keep
/// using the API: the table never grows beyond its 512 values and the real clients' limits
/// stay exact.
/// About a minute: a million requests through wasmtime, with Cranelift and wasmtime optimised
/// in dev builds (root Cargo.toml).
#[test]
fn a_million_distinct_keys_stay_within_the_table() {
    let host = Host::new(module());
    let mut vm = host.plugin(&long_interval_config(4_096)).unwrap();
    let active = ["alice", "bob", "carol", "dave", "erin"];
    let mut passed = [0u32; 5];
    for i in 0..1_000_000u32 {
        if i % 1_000 == 0 {
            host.clock().advance(Duration::from_millis(1));
        }
        let id = format!("scanner-{i}");
        assert_eq!(send(&mut vm, "/api/notes", Some(&id)).status, 200);
        if i % 5_000 == 0 {
            for (n, name) in active.iter().enumerate() {
                if send(&mut vm, "/api/notes", Some(name)).status == 200 {
                    passed[n] += 1;
                }
            }
        }
    }
    assert_eq!(passed, [100; 5], "200 requests each, limit 100");
    // Every value the filter wrote is one of the table's 512 groups, each of a fixed size.
    let groups: Vec<_> = (0..512)
        .filter_map(|g| {
            host.shared_data()
                .get(&format!("wasmgate.rate-limit.default.{g}"))
        })
        .collect();
    assert!(groups.len() <= 512);
    assert!(
        groups
            .iter()
            .all(|(v, _)| v.len() == rate_limit::table::GROUP_LEN)
    );
    vm.tick().unwrap();
    assert!(host.counter("rate-limit.evictions").unwrap() > 900_000);
}
