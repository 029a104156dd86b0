//! The compiled chain (`chain.wasm`) in the wasmtime proxy-wasm host: the three stages in order
//! in one VM, a request paused for keys passing the later stages before it resumes, responses
//! going back through the stages that ran, configuration errors, and the host traffic of one
//! request against the three separate modules with the same configuration.
//!
//! Set `WASMGATE_WASM_DIR` to a directory holding the `.wasm` files to test prebuilt ones;
//! otherwise the harness builds them.

#![cfg(not(target_arch = "wasm32"))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::LazyLock;

use serde_json::{Value, json};
use wasmgate_harness::{
    Action, CallResponse, Crossings, FilterModule, Host, LogLevel, TokenSigner, Vm, filter_wasm,
};

static CHAIN: LazyLock<FilterModule> =
    LazyLock::new(|| FilterModule::from_file(filter_wasm("chain").unwrap()).unwrap());

const ISSUER: &str = "https://localhost:8443";
const AUDIENCE: &str = "wasmgate-api";

fn bearer_auth() -> Value {
    json!({
        "issuer": ISSUER, "audiences": [AUDIENCE], "required_typ": "at+jwt",
        "jwks": {"remote": {"cluster": "authz", "path": "/.well-known/jwks.json",
                            "authority": "authz", "refresh_interval_seconds": 300,
                            "unknown_kid_min_interval_seconds": 30, "retry_interval_seconds": 2}},
        "rules": [{"match": {"path_prefix": "/api/"}, "require": {"scopes": ["demo"]}}],
        "default": "anonymous"
    })
}

fn rate_limit(limit: u32) -> Value {
    json!({
        "policies": [{"name": "per-client", "match": {"path_prefix": "/api/"},
                      "key": [{"header": "x-auth-client-id"}],
                      "on_missing_key": {"fallback": ["client_ip"]},
                      "limit": limit, "interval": "60s"}],
        "headers": "both", "failure_mode": "deny", "table": {"name": "chain-test", "slots": 1024}
    })
}

fn route_rewrite() -> Value {
    json!({
        "rules": [{"name": "notes_api", "rule": "^/api/(.*)$ http://localhost:3002/api/v1/$1 [P]"}],
        "upstreams": {"localhost:3002": "notes_api"}
    })
}

fn chain_config(limit: u32) -> String {
    json!({"bearer_auth": bearer_auth(), "rate_limit": rate_limit(limit),
           "route_rewrite": route_rewrite()})
    .to_string()
}

/// The key the chain's bearer-auth stage trusts (`k1`), and its tokens.
struct Signer(TokenSigner);

impl Signer {
    fn new() -> Self {
        Self(TokenSigner::new("k1"))
    }

    fn jwks(&self) -> String {
        self.0.jwks().unwrap()
    }

    /// `Bearer <token>` for client `123` with scope `demo`, issued at the host's `now`.
    fn bearer(&self, host: &Host) -> String {
        let now = host.clock().unix_seconds();
        let claims = json!({"iss": ISSUER, "sub": "bob", "aud": AUDIENCE, "client_id": "123",
                            "scope": "demo", "iat": now, "exp": now + 300});
        format!("Bearer {}", self.0.access_token(claims).unwrap())
    }
}

fn get<'a>(path: &'a str, auth: Option<&'a str>) -> Vec<(&'a str, &'a str)> {
    let mut h = vec![
        (":method", "GET"),
        (":path", path),
        (":authority", "localhost:8443"),
        (":scheme", "https"),
    ];
    if let Some(a) = auth {
        h.push(("authorization", a));
    }
    h
}

/// Answers the pending JWKS callouts of `vm`; returns how many there were.
fn answer_jwks(vm: &mut Vm, body: &str) -> usize {
    let calls = vm.callouts();
    for c in &calls {
        assert_eq!(c.cluster, "authz");
        vm.respond(
            c.token,
            CallResponse::new(200).body(body.as_bytes().to_vec()),
        )
        .unwrap();
    }
    calls.len()
}

/// A chain VM with keys.
fn ready(host: &Host, signer: &Signer, limit: u32) -> Vm {
    let mut vm = host.plugin(&chain_config(limit)).unwrap();
    vm.tick().unwrap();
    assert_eq!(answer_jwks(&mut vm, &signer.jwks()), 1);
    vm
}

#[test]
fn a_good_token_passes_all_three_stages_in_order() {
    let host = Host::new(&CHAIN);
    let signer = Signer::new();
    let mut vm = ready(&host, &signer, 2);
    let auth = signer.bearer(&host);

    let mut s = vm.http_stream().unwrap();
    let mut headers = get("/api/notes?x=1", Some(&auth));
    headers.push(("x-wasmgate-upstream", "admin_cluster"));
    headers.push(("x-auth-client-id", "spoofed"));
    assert_eq!(s.request_headers(&headers, true).unwrap(), Action::Continue);
    let up = s.request();
    // bearer-auth: identity from the token, the spoof gone.
    assert_eq!(up.header("x-auth-client-id"), Some("123"));
    assert_eq!(up.header("x-auth-subject"), Some("bob"));
    // route-rewrite: path rewritten, its [P] upstream chosen, the client's choice ignored.
    assert_eq!(up.header(":path"), Some("/api/v1/notes?x=1"));
    assert_eq!(up.header("x-wasmgate-upstream"), Some("notes_api"));
    assert_eq!(
        up.header("x-wasmgate-original-path"),
        Some("/api/notes?x=1")
    );
    // rate-limit: keyed on the identity bearer-auth set, its headers on the response.
    s.response_headers(&[(":status", "200")], false).unwrap();
    let down = s.response();
    assert_eq!(down.header("x-ratelimit-limit"), Some("2"));
    assert_eq!(down.header("x-ratelimit-remaining"), Some("1"));
    assert!(down.header("ratelimit").is_some(), "{down:?}");
    s.finish().unwrap();

    // Second request allowed, third limited by the rate-limit stage (client 123's bucket).
    let mut s = vm.http_stream().unwrap();
    assert_eq!(
        s.request_headers(&get("/api/notes", Some(&auth)), true)
            .unwrap(),
        Action::Continue
    );
    s.finish().unwrap();
    let mut s = vm.http_stream().unwrap();
    assert_eq!(
        s.request_headers(&get("/api/notes", Some(&auth)), true)
            .unwrap(),
        Action::Pause
    );
    let reply = s.local_response().unwrap();
    assert_eq!(reply.status, 429);
    assert!(reply.header("retry-after").is_some());
    // The stage after the one that answered never ran: no rewrite.
    assert_eq!(s.request().header(":path"), Some("/api/notes"));
    s.finish().unwrap();

    // No token: bearer-auth answers 401, and the later stages do not run (no bucket taken).
    let mut s = vm.http_stream().unwrap();
    assert_eq!(
        s.request_headers(&get("/api/notes", None), true).unwrap(),
        Action::Pause
    );
    assert_eq!(s.local_response().unwrap().status, 401);
    s.response_headers(&[(":status", "401")], true).unwrap();
    assert_eq!(s.response().header("x-ratelimit-limit"), None);
    s.finish().unwrap();
    // bearer-auth's counts reach the host on the chain's tick, which the stage asked for.
    vm.tick().unwrap();
    assert_eq!(host.counter("bearer_auth.allowed"), Some(3));
    assert_eq!(
        host.counter("rate-limit.policy.per-client.limited"),
        Some(1)
    );
    assert_eq!(host.counter("route_rewrite.rule.notes_api.hits"), Some(2));
}

#[test]
fn a_request_paused_for_keys_passes_the_later_stages_before_it_resumes() {
    let host = Host::new(&CHAIN);
    let signer = Signer::new();
    let mut vm = host.plugin(&chain_config(1)).unwrap();
    let auth = signer.bearer(&host);

    // Two requests before any keys: both paused by bearer-auth.
    let mut ids = Vec::new();
    for _ in 0..2 {
        let mut s = vm.http_stream().unwrap();
        assert_eq!(
            s.request_headers(&get("/api/notes", Some(&auth)), true)
                .unwrap(),
            Action::Pause
        );
        assert!(s.local_response().is_none());
        ids.push(s.id());
        std::mem::forget(s);
    }
    vm.tick().unwrap();
    assert_eq!(answer_jwks(&mut vm, &signer.jwks()), 1);

    // The first went through rate-limit and route-rewrite, then was resumed.
    let mut first = vm.stream(ids[0]).unwrap();
    assert!(first.request_resumed());
    assert_eq!(first.request().header(":path"), Some("/api/v1/notes"));
    assert_eq!(
        first.request().header("x-wasmgate-upstream"),
        Some("notes_api")
    );
    // Its response goes back through every stage it passed, the later ones included: the chain
    // keeps the stages of a paused request elsewhere than those of the others.
    first
        .response_headers(&[(":status", "200")], false)
        .unwrap();
    assert_eq!(first.response().header("x-ratelimit-remaining"), Some("0"));
    first.finish().unwrap();
    // The second met the limit of 1 in the rate-limit stage: answered 429, never resumed.
    let second = vm.stream(ids[1]).unwrap();
    assert!(!second.request_resumed());
    assert_eq!(second.local_response().map(|r| r.status), Some(429));
    assert_eq!(second.request().header(":path"), Some("/api/notes"));
}

#[test]
fn a_bad_section_stops_start_up_and_names_the_field_under_its_section() {
    let host = Host::new(&CHAIN);
    let mut vm = host.start_vm().unwrap();
    let mut bad = json!({"bearer_auth": bearer_auth(), "route_rewrite": route_rewrite()});
    bad["bearer_auth"]["issuer"] = json!("");
    assert!(!vm.configure(&bad.to_string()).unwrap());
    assert!(!vm.configure(r#"{"rate-limit": {}}"#).unwrap());
    assert!(!vm.configure("{}").unwrap());
    let errors = host.logs_at(LogLevel::Error);
    for expected in [
        "chain: invalid configuration: field `bearer_auth.issuer`: must not be empty",
        "chain: invalid configuration: field `rate-limit`: unknown section",
        "chain: invalid configuration: no section",
    ] {
        assert!(
            errors.iter().any(|l| l.starts_with(expected)),
            "{expected}: {errors:?}"
        );
    }
}

#[test]
fn one_section_alone_runs_that_filter_alone() {
    let host = Host::new(&CHAIN);
    let mut vm = host
        .plugin(&json!({"route_rewrite": route_rewrite()}).to_string())
        .unwrap();
    let mut s = vm.http_stream().unwrap();
    assert_eq!(
        s.request_headers(&get("/api/x", None), true).unwrap(),
        Action::Continue
    );
    assert_eq!(s.request().header(":path"), Some("/api/v1/x"));
}

/// One cached-token request through the three separate modules, one VM each, in Envoy's order:
/// the crossings, and the wasm operators the modules executed.
fn cost_of_three_modules(signer: &Signer) -> (Crossings, u64) {
    let mut total = Crossings::default();
    let mut operators = 0;
    let configs = [
        ("bearer-auth", bearer_auth()),
        ("rate-limit", rate_limit(1000)),
        ("route-rewrite", route_rewrite()),
    ];
    let modules: Vec<FilterModule> = configs
        .iter()
        .map(|(package, _)| FilterModule::from_file(filter_wasm(package).unwrap()).unwrap())
        .collect();
    let mut headers: Vec<(String, String)> = Vec::new();
    for ((package, config), module) in configs.iter().zip(&modules) {
        let host = Host::new(module);
        let mut vm = host.plugin(&config.to_string()).unwrap();
        if *package == "bearer-auth" {
            vm.tick().unwrap();
            answer_jwks(&mut vm, &signer.jwks());
            headers = get("/api/notes", Some(&signer.bearer(&host)))
                .into_iter()
                .map(|(n, v)| (n.to_owned(), v.to_owned()))
                .collect();
        }
        // Warm-up: the token cache and the bucket exist, as in steady state.
        for measured in [false, true] {
            let before = vm.crossings();
            let operators_before = vm.wasm_operators();
            let mut s = vm.http_stream().unwrap();
            let pairs: Vec<(&str, &str)> = headers
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_str()))
                .collect();
            assert_eq!(s.request_headers(&pairs, true).unwrap(), Action::Continue);
            let next = s.request().headers.0;
            s.response_headers(&[(":status", "200")], false).unwrap();
            s.response_body(b"[]", true).unwrap();
            s.finish().unwrap();
            if measured {
                total = Crossings {
                    into_wasm: total.into_wasm + (vm.crossings() - before).into_wasm,
                    to_host: total.to_host + (vm.crossings() - before).to_host,
                };
                operators += vm.wasm_operators() - operators_before;
                headers = next;
            }
        }
    }
    (total, operators)
}

#[test]
fn one_request_crosses_the_vm_boundary_far_less_often_than_through_three_modules() {
    let signer = Signer::new();
    let (three, three_operators) = cost_of_three_modules(&signer);

    let host = Host::new(&CHAIN);
    let mut vm = ready(&host, &signer, 1000);
    let auth = signer.bearer(&host);
    let mut chain = Crossings::default();
    let mut chain_operators = 0;
    // The second request is measured: the token cache and the bucket exist, as in steady state.
    for _ in 0..2 {
        let before = vm.crossings();
        let operators_before = vm.wasm_operators();
        let_through(&mut vm, &auth);
        chain = vm.crossings() - before;
        chain_operators = vm.wasm_operators() - operators_before;
    }
    eprintln!(
        "crossings per request: chain {} ({} into the VM, {} to the host); \
         three modules {} ({} into, {} to the host); wasm operators: chain {chain_operators}, \
         three modules {three_operators}",
        chain.total(),
        chain.into_wasm,
        chain.to_host,
        three.total(),
        three.into_wasm,
        three.to_host
    );
    // Three modules are entered three times per callback, the chain once; and the chain reads
    // the request headers once where each module reads them itself.
    assert!(
        chain.into_wasm * 2 <= three.into_wasm,
        "chain {chain:?} against three modules {three:?}"
    );
    assert!(
        chain.to_host < three.to_host,
        "chain {chain:?} against three modules {three:?}"
    );
    // The same policy, with one copy of the headers and one dispatch instead of three.
    assert!(
        chain_operators < three_operators,
        "chain {chain_operators} against three modules {three_operators} wasm operators"
    );
}

#[test]
fn the_stages_of_one_request_share_one_read_of_the_clock() {
    let signer = Signer::new();
    let host = Host::new(&CHAIN);
    let mut vm = ready(&host, &signer, 1000);
    let auth = signer.bearer(&host);
    // The first request verifies the token; the second finds it in the cache. bearer-auth reads
    // the clock for either, rate-limit for its bucket: one read between them.
    for _ in 0..2 {
        let before = host.clock().host_reads();
        let_through(&mut vm, &auth);
        assert_eq!(host.clock().host_reads() - before, 1);
    }
    // Outside a request's callback each read still goes to the host: the tick reads it anew.
    let before = host.clock().host_reads();
    vm.tick().unwrap();
    vm.tick().unwrap();
    assert!(host.clock().host_reads() - before >= 2);
}

/// Not a test: a loop to profile the chain's own code under `perf` (tests/harness/README.md).
/// `cargo test -p chain --test wasm profile_loop -- --ignored` with `WASMGATE_HARNESS_PERFMAP=1`.
#[test]
#[ignore = "a profiling loop, run by hand"]
fn profile_loop() {
    let host = Host::new(&CHAIN);
    let signer = Signer::new();
    let mut vm = ready(&host, &signer, 1_000_000_000);
    let auth = signer.bearer(&host);
    for _ in 0..profile_requests() {
        let_through(&mut vm, &auth);
    }
}

/// Not a test: the same loop through bearer-auth's own module, for its share of the work
/// (BENCHMARKS.md, "Our own code, function by function").
#[test]
#[ignore = "a profiling loop, run by hand"]
fn profile_loop_bearer_auth_alone() {
    let module = FilterModule::from_file(filter_wasm("bearer-auth").unwrap()).unwrap();
    let host = Host::new(&module);
    let signer = Signer::new();
    let mut vm = host.plugin(&bearer_auth().to_string()).unwrap();
    vm.tick().unwrap();
    assert_eq!(answer_jwks(&mut vm, &signer.jwks()), 1);
    let auth = signer.bearer(&host);
    for _ in 0..profile_requests() {
        let_through(&mut vm, &auth);
    }
}

/// How many requests a profiling loop sends: `PROFILE_REQUESTS`, 100,000 by default.
fn profile_requests() -> u32 {
    std::env::var("PROFILE_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000)
}

/// One request with a good token, through to the end of its response.
fn let_through(vm: &mut Vm, auth: &str) {
    let mut s = vm.http_stream().unwrap();
    assert_eq!(
        s.request_headers(&get("/api/notes", Some(auth)), true)
            .unwrap(),
        Action::Continue
    );
    s.response_headers(&[(":status", "200")], false).unwrap();
    s.response_body(b"[]", true).unwrap();
    s.finish().unwrap();
}
