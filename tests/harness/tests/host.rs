//! Self-tests of the host, driving the fixture filter (tests/harness/fixture-filter) compiled to
//! wasm32-wasip1 with the real proxy-wasm Rust SDK.

// Test code: a failed expectation should stop the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::LazyLock;
use std::thread;
use std::time::Duration;

use wasmgate_harness::{
    Action, CallResponse, Error, FilterModule, Host, LogLevel, MetricValue, filter_wasm,
};

/// Compiled once per test binary; each test makes its own `Host`.
static FIXTURE: LazyLock<FilterModule> = LazyLock::new(|| {
    let path = filter_wasm("wasmgate-harness-fixture").unwrap();
    FilterModule::from_file(path).unwrap()
});

fn host() -> Host {
    Host::new(&FIXTURE)
}

fn get(path: &str) -> Vec<(&str, &str)> {
    vec![
        (":method", "GET"),
        (":path", path),
        (":authority", "gateway.test"),
        (":scheme", "https"),
    ]
}

fn shared_u64(host: &Host, key: &str) -> u64 {
    let (bytes, _) = host.shared_data().get(key).expect("key is set");
    u64::from_le_bytes(bytes[..8].try_into().unwrap())
}

#[test]
fn cas_counting_is_exact_across_8_vms_on_4_threads() {
    const PER_VM: u64 = 400;
    let host = host();
    host.set_contention(true);
    // No seeding: the VMs also race to create the key (the fixture creates it with a non-zero
    // CAS, so a second creator gets CasMismatch instead of overwriting the first).
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let host = host.clone();
            thread::spawn(move || {
                // Two VMs per OS thread, their requests interleaved.
                let mut vms = [host.plugin("{}").unwrap(), host.plugin("{}").unwrap()];
                for _ in 0..PER_VM {
                    for vm in &mut vms {
                        let mut s = vm.http_stream().unwrap();
                        assert_eq!(
                            s.request_headers(&get("/count"), true).unwrap(),
                            Action::Continue
                        );
                        s.finish().unwrap();
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(shared_u64(&host, "fixture.count"), 8 * PER_VM);
    assert_eq!(host.counter("fixture_requests_total"), Some(8 * PER_VM));
    // The retry loop really was exercised: some writes lost the race and were retried.
    let mismatches = host.shared_data().cas_mismatches();
    assert!(mismatches > 0, "no CAS contention happened");
    assert_eq!(host.shared_data().writes(), 8 * PER_VM);
    eprintln!(
        "CAS mismatches (retries) over {} increments: {mismatches}",
        8 * PER_VM
    );
}

#[test]
fn the_clock_drives_token_bucket_refill() {
    let host = host();
    let mut vm = host
        .plugin(r#"{"capacity": 3, "refill_per_second": 1}"#)
        .unwrap();
    let status = |vm: &mut wasmgate_harness::Vm| {
        let mut s = vm.http_stream().unwrap();
        let action = s.request_headers(&get("/bucket"), true).unwrap();
        let local = s.local_response();
        match (action, local) {
            (Action::Continue, None) => 200,
            (Action::Pause, Some(reply)) => reply.status,
            other => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!(
        [status(&mut vm), status(&mut vm), status(&mut vm)],
        [200; 3]
    );
    assert_eq!(status(&mut vm), 429);
    host.clock().advance(Duration::from_millis(999));
    assert_eq!(status(&mut vm), 429, "one token needs a full second");
    host.clock().advance(Duration::from_millis(1));
    assert_eq!(status(&mut vm), 200);
    assert_eq!(status(&mut vm), 429);
    host.clock().advance(Duration::from_secs(60));
    let burst: Vec<u32> = (0..4).map(|_| status(&mut vm)).collect();
    assert_eq!(
        burst,
        [200, 200, 200, 429],
        "refill is capped at the capacity"
    );
}

#[test]
fn the_429_carries_its_headers_and_body() {
    let host = host();
    let mut vm = host.plugin(r#"{"capacity": 0}"#).unwrap();
    let mut s = vm.http_stream().unwrap();
    assert_eq!(
        s.request_headers(&get("/bucket"), true).unwrap(),
        Action::Pause
    );
    let reply = s.local_response().unwrap();
    assert_eq!(reply.status, 429);
    assert_eq!(reply.header("retry-after"), Some("1"));
    assert_eq!(reply.body_text(), "slow down");
}

#[test]
fn both_clocks_read_the_test_clock() {
    let host = host();
    let mut vm = host.plugin("{}").unwrap();
    host.clock().advance(Duration::from_millis(1234));
    let expected = host.clock().now_nanos().to_string();
    let mut s = vm.http_stream().unwrap();
    s.request_headers(&get("/time"), true).unwrap();
    assert_eq!(s.request().header("x-proxy-time"), Some(expected.as_str()));
    assert_eq!(s.request().header("x-wasi-time"), Some(expected.as_str()));
}

#[test]
fn metrics_are_shared_by_the_vms_of_a_host_and_readable_by_the_filter() {
    let host = host();
    let mut vms = [host.plugin("{}").unwrap(), host.plugin("{}").unwrap()];
    let mut totals = Vec::new();
    for i in [0, 1, 0] {
        let mut s = vms[i].http_stream().unwrap();
        s.request_headers(&get("/count"), true).unwrap();
        totals.push(s.request().header("x-requests-total").unwrap().to_owned());
    }
    assert_eq!(totals, ["1", "2", "3"]);
    assert_eq!(
        host.metric("fixture_requests_total"),
        Some(MetricValue::Counter(3))
    );
    assert_eq!(
        host.metric("fixture_body_bytes"),
        Some(MetricValue::Histogram(vec![]))
    );
}

#[test]
fn wasi_stdout_stderr_and_environment() {
    let host = host();
    host.set_environment(&[("FIXTURE_GREETING", "hello"), ("OTHER", "x")]);
    let mut vm = host.plugin("{}").unwrap();
    let mut s = vm.http_stream().unwrap();
    s.request_headers(&get("/wasi"), true).unwrap();
    assert_eq!(s.request().header("x-env"), Some("hello"));
    assert!(
        host.logs_at(LogLevel::Info)
            .contains(&"fixture: to stdout".to_owned())
    );
    assert_eq!(host.logs_at(LogLevel::Error), ["fixture: to stderr"]);
}

#[test]
fn a_callout_pauses_the_request_and_its_answer_resumes_it() {
    let host = host();
    let mut vm = host.plugin("{}").unwrap();
    let mut s = vm.http_stream().unwrap();
    assert_eq!(
        s.request_headers(&get("/callout"), true).unwrap(),
        Action::Pause
    );
    assert!(!s.request_resumed());

    let callouts = s.callouts();
    assert_eq!(callouts.len(), 1);
    let call = &callouts[0];
    assert_eq!(call.cluster, "backend");
    assert_eq!(call.header(":method"), Some("POST"));
    assert_eq!(call.header(":path"), Some("/check"));
    assert_eq!(call.body, b"ping");
    assert_eq!(call.timeout, Duration::from_millis(2500));
    assert_eq!(call.context_id, s.id());

    s.respond(call.token, CallResponse::new(200).body("pong"))
        .unwrap();
    assert!(s.request_resumed());
    assert!(s.callouts().is_empty());
    assert_eq!(s.local_response(), None);
    assert_eq!(s.request().header("x-callout-status"), Some("200"));
    assert_eq!(s.request().header("x-callout-body"), Some("pong"));
}

#[test]
fn a_failed_callout_is_delivered_without_headers() {
    let host = host();
    let mut vm = host.plugin("{}").unwrap();
    let mut s = vm.http_stream().unwrap();
    assert_eq!(
        s.request_headers(&get("/callout"), true).unwrap(),
        Action::Pause
    );
    let token = s.callouts()[0].token;
    s.fail_callout(token).unwrap();
    assert!(!s.request_resumed());
    let reply = s.local_response().unwrap();
    assert_eq!(
        (reply.status, reply.body_text().as_str()),
        (503, "callout failed")
    );
    // Answering it twice is a test bug, reported as such.
    assert!(matches!(s.fail_callout(token), Err(Error::Misuse(_))));
}

#[test]
fn a_callout_times_out_when_the_clock_passes_its_timeout() {
    let host = host();
    let mut vm = host.plugin("{}").unwrap();
    let mut s = vm.http_stream().unwrap();
    s.request_headers(&get("/callout"), true).unwrap();
    s.vm().run_for(Duration::from_millis(2499)).unwrap();
    assert_eq!(s.callouts().len(), 1, "still within its 2.5 s timeout");
    assert_eq!(s.local_response(), None);
    s.vm().run_for(Duration::from_millis(1)).unwrap();
    assert!(s.callouts().is_empty());
    assert_eq!(s.local_response().unwrap().status, 503);
}

#[test]
fn a_callout_to_an_unknown_cluster_is_refused() {
    let host = host();
    host.set_clusters(&["authz"]);
    let mut vm = host.plugin("{}").unwrap();
    let mut s = vm.http_stream().unwrap();
    s.request_headers(&get("/callout"), true).unwrap();
    assert_eq!(s.local_response().unwrap().status, 500);
    assert!(s.callouts().is_empty());
    assert!(
        host.logs_at(LogLevel::Warn)
            .iter()
            .any(|l| l.contains("unknown cluster `backend`"))
    );
}

#[test]
fn streams_of_one_vm_interleave_and_answer_in_any_order() {
    let host = host();
    let mut vm = host.plugin("{}").unwrap();
    let first = {
        let mut s = vm.http_stream().unwrap();
        s.request_headers(&get("/callout"), true).unwrap();
        let id = s.id();
        std::mem::forget(s); // keep it open: Drop would finish it
        id
    };
    let mut second = vm.http_stream().unwrap();
    second.request_headers(&get("/callout"), true).unwrap();
    let second_token = second.callouts()[0].token;
    let first_token = second
        .vm()
        .callouts()
        .into_iter()
        .find(|c| c.context_id == first)
        .unwrap()
        .token;
    second.respond(first_token, CallResponse::new(204)).unwrap();
    assert!(
        !second.request_resumed(),
        "the first stream's answer went to the second"
    );
    second
        .respond(second_token, CallResponse::new(200))
        .unwrap();
    assert!(second.request_resumed());
    drop(second);
    let first = vm.stream(first).unwrap();
    assert!(first.request_resumed());
    assert_eq!(first.request().header("x-callout-status"), Some("204"));
}

#[test]
fn a_local_response_is_recorded() {
    let host = host();
    let mut vm = host.plugin("{}").unwrap();
    let mut s = vm.http_stream().unwrap();
    assert_eq!(
        s.request_headers(&get("/local"), true).unwrap(),
        Action::Pause
    );
    let reply = s.local_response().unwrap();
    assert_eq!(reply.status, 403);
    assert_eq!(reply.header("x-reason"), Some("fixture"));
    assert_eq!(reply.header("content-type"), Some("text/plain"));
    assert_eq!(reply.body, b"denied");
    assert_eq!(reply.grpc_status, -1);
}

#[test]
fn properties_come_from_the_request_the_stream_and_the_host() {
    let host = host();
    host.set_property("route_name", "api");
    let mut vm = host.plugin("{}").unwrap();
    let mut s = vm.http_stream().unwrap();
    s.set_property("source.address", "203.0.113.7:52000");
    s.request_headers(&get("/props"), true).unwrap();
    let req = s.request();
    assert_eq!(req.header("x-prop-source"), Some("203.0.113.7:52000"));
    assert_eq!(req.header("x-prop-path"), Some("/props"));
    assert_eq!(req.header("x-prop-host"), Some("gateway.test"));
    assert_eq!(req.header("x-prop-route"), Some("api"));
    drop(s);
    // A property nobody set is absent, not empty.
    let mut s = vm.http_stream().unwrap();
    s.request_headers(&get("/props"), true).unwrap();
    assert_eq!(s.request().header("x-prop-source"), Some("<none>"));
}

#[test]
fn bodies_are_buffered_while_paused_and_can_be_rewritten() {
    let host = host();
    let mut vm = host.plugin("{}").unwrap();
    let mut s = vm.http_stream().unwrap();
    let mut headers = get("/upper");
    headers[0] = (":method", "POST");
    assert_eq!(
        s.request_headers(&headers, false).unwrap(),
        Action::Continue
    );
    assert_eq!(s.request_body(b"ab", false).unwrap(), Action::Pause);
    assert_eq!(s.request_body(b"cd", true).unwrap(), Action::Continue);
    assert_eq!(s.request().body, b"ABCD");
    assert_eq!(
        host.metric("fixture_body_bytes"),
        Some(MetricValue::Histogram(vec![4]))
    );
    assert_eq!(
        s.request_trailers(&[("x-sum", "1")]).unwrap(),
        Action::Continue
    );
    assert_eq!(s.request().trailers.get("x-fixture-trailer"), Some("seen"));

    assert_eq!(
        s.response_headers(&[(":status", "200")], false).unwrap(),
        Action::Continue
    );
    assert_eq!(s.response().header("x-fixture-response"), Some("1"));
    assert_eq!(s.response_body(b"ok", false).unwrap(), Action::Pause);
    assert_eq!(s.response_body(b"!", true).unwrap(), Action::Continue);
    assert_eq!(s.response().body_text(), "OK!");
    s.finish().unwrap();
}

#[test]
fn ticks_follow_the_clock() {
    let host = host();
    let mut vm = host.plugin(r#"{"tick_ms": 1000}"#).unwrap();
    assert_eq!(vm.tick_period(), Some(Duration::from_secs(1)));
    let start = host.clock().now_nanos();
    assert_eq!(vm.run_for(Duration::from_millis(3500)).unwrap(), 3);
    assert_eq!(host.clock().now_nanos() - start, 3_500_000_000);
    assert_eq!(shared_u64(&host, "fixture.ticks"), 3);
    assert_eq!(host.logs_at(LogLevel::Debug), vec!["fixture: tick"; 3]);
}

#[test]
fn a_root_context_callout_from_a_tick() {
    let host = host();
    let mut vm = host
        .plugin(r#"{"tick_ms": 500, "fetch_on_tick": true}"#)
        .unwrap();
    vm.tick().unwrap();
    let calls = vm.callouts();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].context_id, 1, "dispatched by the root context");
    assert_eq!(calls[0].header(":path"), Some("/data"));
    vm.respond(calls[0].token, CallResponse::new(200).body("keys"))
        .unwrap();
    assert_eq!(
        host.shared_data().get("fixture.fetched").unwrap().0,
        b"keys"
    );
}

#[test]
fn a_bad_config_is_refused_and_the_log_names_the_field() {
    let host = host();
    let Err(Error::ConfigRefused(logs)) = host.plugin(r#"{"capacity": "three"}"#) else {
        panic!("config accepted");
    };
    assert_eq!(logs.len(), 1, "{logs:?}");
    assert_eq!(logs[0].0, LogLevel::Error);
    assert!(
        logs[0]
            .1
            .starts_with("fixture: invalid configuration: field `capacity`: "),
        "{logs:?}"
    );
    // configure() itself reports the verdict without failing.
    let mut vm = host.start_vm().unwrap();
    assert!(!vm.configure(r#"{"nope": 1}"#).unwrap());
    assert!(vm.configure("{}").unwrap());
}

#[test]
fn the_vm_start_is_logged_through_proxy_log() {
    let host = host();
    let vm = host.start_vm().unwrap();
    assert!(
        vm.logs()
            .iter()
            .any(|r| r.level == LogLevel::Info && r.message == "fixture: vm started")
    );
}

#[test]
fn a_panic_is_a_trap_carrying_the_panic_message_and_kills_the_vm() {
    let host = host();
    let mut vm = host.plugin("{}").unwrap();
    let mut s = vm.http_stream().unwrap();
    let err = s.request_headers(&get("/panic"), true).unwrap_err();
    let Error::Trap { call, logs, .. } = &err else {
        panic!("not a trap: {err}");
    };
    assert_eq!(*call, "proxy_on_request_headers");
    assert!(
        logs.iter().any(|(level, m)| *level == LogLevel::Critical
            && m.contains("fixture: panic")
            && m.contains("fixture asked to panic")),
        "{logs:?}"
    );
    drop(s);
    assert!(vm.is_dead());
    assert!(matches!(vm.http_stream(), Err(Error::VmDead)));
}

/// A minimal wasm module with a single function import `module.name` (type `() -> ()`).
fn module_importing(module: &str, name: &str) -> Vec<u8> {
    fn string(out: &mut Vec<u8>, s: &str) {
        out.push(u8::try_from(s.len()).unwrap());
        out.extend_from_slice(s.as_bytes());
    }
    let mut import = vec![1]; // one import
    string(&mut import, module);
    string(&mut import, name);
    import.extend_from_slice(&[0x00, 0x00]); // a function of type 0
    let mut wasm = b"\0asm\x01\0\0\0".to_vec();
    wasm.extend_from_slice(&[0x01, 0x04, 0x01, 0x60, 0x00, 0x00]); // type 0: () -> ()
    wasm.push(0x02);
    wasm.push(u8::try_from(import.len()).unwrap());
    wasm.extend_from_slice(&import);
    wasm
}

#[test]
fn an_unknown_import_is_refused_with_its_name() {
    let cases = [
        (
            "env",
            "proxy_get_everything",
            "not a proxy-wasm 0.2.1 host function",
        ),
        (
            "wasi_snapshot_preview1",
            "path_open",
            "not among the WASI calls",
        ),
        (
            "env",
            "proxy_get_header_map_size",
            "not a proxy-wasm 0.2.1 host function",
        ),
        ("wasi:io/streams", "read", "neither proxy-wasm"),
    ];
    for (module, name, reason) in cases {
        let err = FilterModule::from_bytes(&module_importing(module, name)).unwrap_err();
        let text = err.to_string();
        assert!(
            matches!(&err, Error::UnsupportedImport { module: m, name: n, .. } if m == module && n == name),
            "{text}"
        );
        assert!(text.contains(&format!("`{module}.{name}`")), "{text}");
        assert!(text.contains(reason), "{text}");
    }
}

#[test]
fn a_module_without_the_abi_export_is_refused() {
    // The empty module imports nothing, so it fails on the first required export.
    let err = FilterModule::from_bytes(b"\0asm\x01\0\0\0").unwrap_err();
    assert!(err.to_string().contains("proxy_abi_version_0_2_1"), "{err}");
    let err = FilterModule::from_bytes(b"not wasm").unwrap_err();
    assert!(matches!(err, Error::Load(_)), "{err}");
}

#[test]
fn parallel_hosts_do_not_interfere() {
    let run = |requests: u64, contention: bool| {
        thread::spawn(move || {
            let host = host();
            host.set_contention(contention);
            host.clock().advance(Duration::from_secs(requests));
            let mut vm = host.plugin("{}").unwrap();
            for _ in 0..requests {
                vm.http_stream()
                    .unwrap()
                    .request_headers(&get("/count"), true)
                    .unwrap();
            }
            (host, requests)
        })
    };
    let handles = [run(50, true), run(120, false), run(7, true)];
    for handle in handles {
        let (host, requests) = handle.join().unwrap();
        assert_eq!(shared_u64(&host, "fixture.count"), requests);
        assert_eq!(host.counter("fixture_requests_total"), Some(requests));
        assert_eq!(
            host.clock().unix_seconds(),
            wasmgate_harness::Clock::default().unix_seconds() + requests
        );
        assert_eq!(host.logs().len(), 1, "only this host's VM start is logged");
    }
}
